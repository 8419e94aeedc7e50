//! The real `shoal-operator` binary as the operator tests run it: pointed at
//! the Kubernetes API stand-in ([`crate::kube::KubeApiServer`]) by a
//! kubeconfig, with its metrics on a free port and its log in a file; killed
//! when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{bin_dir, die_with_parent, free_ports, parse_metric, send_signal, try_http_get};

pub struct Operator {
    pub metrics_addr: String,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Operator {
    /// Starts `shoal-operator run` with `kubeconfig` and `extra` arguments.
    pub fn start(kubeconfig: &Path, log: PathBuf, identity: &str, extra: &[&str]) -> Operator {
        let metrics_addr = format!("127.0.0.1:{}", free_ports(1)[0]);
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("open operator log");
        let mut cmd = Command::new(bin_dir().join("shoal-operator"));
        cmd.arg("run")
            .arg(format!("--metrics-addr={metrics_addr}"))
            .arg(format!("--identity={identity}"))
            .args(extra)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", std::env::var("SHOAL_OPERATOR_LOG").unwrap_or_else(|_| "info,shoal_operator=debug".into()))
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("clone log"))
            .stderr(out);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().expect("start shoal-operator (run `cargo build --bins` first)");
        Operator { metrics_addr, log, child: Some(child) }
    }

    /// Metric `name` summed over the series with `labels`; `None` when the
    /// operator does not answer or has no such series.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let (code, body) = try_http_get(&self.metrics_addr, "/metrics", Duration::from_secs(5)).await.ok()?;
        if code != 200 {
            return None;
        }
        parse_metric(&body, name, labels)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// SIGTERM, then SIGKILL after `timeout`; whether it exited by itself.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let Some(mut c) = self.child.take() else { return true };
        send_signal(&c, libc::SIGTERM);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- shoal-operator log (last 60 lines) ---\n{}", self.log_tail(60));
        }
    }
}
