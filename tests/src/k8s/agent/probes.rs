//! Container probes as the kubelet runs them: `httpGet` (2xx/3xx is a
//! success) and `tcpSocket`, each on its own period with `timeoutSeconds`,
//! `failureThreshold` and `successThreshold`. The startup probe gates the
//! other two; a failed startup or liveness probe restarts the container; the
//! readiness probe decides the pod's Ready condition.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

/// One probe of a container and what it has seen.
#[derive(Debug, Clone)]
pub struct ProbeState {
    pub kind: Kind,
    probe: Probe,
    next_at: Instant,
    successes: i32,
    failures: i32,
    pub last_error: Option<String>,
}

/// What a probe's result means for the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The threshold of successes was reached.
    Passed,
    /// The threshold of failures was reached.
    Failed,
    /// Neither yet.
    Undecided,
}

/// A probe to run now: what to connect to.
#[derive(Debug, Clone)]
pub struct Check {
    addr: String,
    http_path: Option<String>,
    timeout: Duration,
}

impl ProbeState {
    pub fn new(kind: Kind, probe: Probe, started: Instant) -> ProbeState {
        let delay = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        ProbeState { kind, probe, next_at: started + delay, successes: 0, failures: 0, last_error: None }
    }

    /// The container's probes, startup first.
    pub fn of(container: &Container, started: Instant) -> Vec<ProbeState> {
        [
            (Kind::Startup, &container.startup_probe),
            (Kind::Liveness, &container.liveness_probe),
            (Kind::Readiness, &container.readiness_probe),
        ]
        .into_iter()
        .filter_map(|(k, p)| p.clone().map(|p| ProbeState::new(k, p, started)))
        .collect()
    }

    fn period(&self) -> Duration {
        Duration::from_secs(self.probe.period_seconds.unwrap_or(10).max(1) as u64)
    }

    /// The check to run now, if this probe is due; `Err` if it cannot be run at all.
    pub fn due(&mut self, now: Instant, ip: &str, container: &Container) -> Option<Result<Check, String>> {
        if now < self.next_at {
            return None;
        }
        self.next_at = now + self.period();
        let timeout = Duration::from_secs(self.probe.timeout_seconds.unwrap_or(1).max(1) as u64);
        let (port, http_path) = if let Some(get) = &self.probe.http_get {
            (&get.port, Some(get.path.clone().unwrap_or_else(|| "/".into())))
        } else if let Some(tcp) = &self.probe.tcp_socket {
            (&tcp.port, None)
        } else {
            return Some(Err("only httpGet and tcpSocket probes are supported by the test node agent".into()));
        };
        Some(resolve_port(port, container).map(|port| Check { addr: format!("{ip}:{port}"), http_path, timeout }))
    }

    /// Records a result; what it means now.
    pub fn record(&mut self, result: Result<(), String>) -> Verdict {
        match result {
            Ok(()) => {
                self.successes += 1;
                self.failures = 0;
                self.last_error = None;
            }
            Err(e) => {
                self.failures += 1;
                self.successes = 0;
                self.last_error = Some(e);
            }
        }
        if self.successes >= self.probe.success_threshold.unwrap_or(1).max(1) {
            Verdict::Passed
        } else if self.failures >= self.probe.failure_threshold.unwrap_or(3).max(1) {
            Verdict::Failed
        } else {
            Verdict::Undecided
        }
    }
}

/// A probe's port: a number, or the name of one of the container's ports.
fn resolve_port(port: &IntOrString, container: &Container) -> Result<u16, String> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).map_err(|_| format!("probe port {p} is out of range")),
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| format!("probe port {name}: the container has no such port")),
    }
}

/// Runs one check.
pub async fn run(check: Check) -> Result<(), String> {
    match &check.http_path {
        Some(path) => {
            let (code, body) = crate::try_http_get(&check.addr, path, check.timeout).await?;
            if (200..400).contains(&code) {
                Ok(())
            } else {
                Err(format!("GET {path}: HTTP {code}: {}", body.trim().chars().take(200).collect::<String>()))
            }
        }
        None => tokio::time::timeout(check.timeout, tokio::net::TcpStream::connect(&check.addr))
            .await
            .map_err(|_| format!("connect to {}: timed out", check.addr))?
            .map(drop)
            .map_err(|e| format!("connect to {}: {e}", check.addr)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(failures: i32, successes: i32) -> Probe {
        serde_json::from_value(serde_json::json!({
            "httpGet": { "path": "/readyz", "port": "status" },
            "periodSeconds": 5,
            "failureThreshold": failures,
            "successThreshold": successes,
        }))
        .expect("a probe")
    }

    #[test]
    fn thresholds_decide_and_a_success_resets_the_failures() {
        let mut p = ProbeState::new(Kind::Liveness, probe(3, 1), Instant::now());
        assert_eq!(p.record(Err("down".into())), Verdict::Undecided);
        assert_eq!(p.record(Err("down".into())), Verdict::Undecided);
        assert_eq!(p.record(Ok(())), Verdict::Passed);
        assert_eq!(p.record(Err("down".into())), Verdict::Undecided, "the success started the count again");
        assert_eq!(p.record(Err("down".into())), Verdict::Undecided);
        assert_eq!(p.record(Err("down".into())), Verdict::Failed);
        assert_eq!(p.last_error.as_deref(), Some("down"));

        let mut r = ProbeState::new(Kind::Readiness, probe(1, 2), Instant::now());
        assert_eq!(r.record(Ok(())), Verdict::Undecided, "two successes needed");
        assert_eq!(r.record(Ok(())), Verdict::Passed);
    }

    #[test]
    fn a_probe_is_due_by_its_period_on_the_named_port() {
        let container: Container = serde_json::from_value(serde_json::json!({
            "name": "shoal-node",
            "ports": [{ "name": "grpc", "containerPort": 20160 }, { "name": "status", "containerPort": 20180 }],
        }))
        .expect("a container");
        let t0 = Instant::now();
        let mut p = ProbeState::new(Kind::Readiness, probe(3, 1), t0);
        let check = p.due(t0, "10.244.0.5", &container).expect("due at once").expect("runnable");
        assert_eq!(check.addr, "10.244.0.5:20180");
        assert_eq!(check.http_path.as_deref(), Some("/readyz"));
        assert!(p.due(t0 + Duration::from_secs(4), "10.244.0.5", &container).is_none(), "not before its period");
        assert!(p.due(t0 + Duration::from_secs(5), "10.244.0.5", &container).is_some());
        let unnamed: Container = serde_json::from_value(serde_json::json!({ "name": "x" })).expect("a container");
        let mut q = ProbeState::new(Kind::Readiness, probe(3, 1), t0);
        assert!(q.due(t0, "10.244.0.5", &unnamed).expect("due").is_err(), "a port name the container lacks");
    }
}
