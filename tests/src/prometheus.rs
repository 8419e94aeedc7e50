//! A real Prometheus server (Debian's `prometheus` package) for end-to-end
//! tests: [`Prometheus::start`] writes its configuration, starts it on a free
//! port with its own TSDB directory, waits until it is ready, and kills it when
//! dropped. [`Prometheus::query`], [`Prometheus::rules`] and
//! [`Prometheus::alerts`] ask its HTTP API (`/api/v1/…`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::{die_with_parent, free_ports, try_http_get, wait_until, which};

pub struct Prometheus {
    pub addr: String,
    child: Child,
    log: std::path::PathBuf,
}

/// One sample of an instant query: its labels and value.
#[derive(Clone, Debug)]
pub struct Sample {
    pub labels: serde_json::Map<String, Value>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).and_then(Value::as_str).unwrap_or("")
    }
}

/// Percent-encodes a query parameter (RFC 3986 unreserved characters stay).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Prometheus {
    /// Starts Prometheus with `config` (its YAML) in `dir`; panics if it is not
    /// installed or not ready within 60 s.
    pub async fn start(dir: &Path, config: &str) -> Prometheus {
        let bin = which("prometheus").expect("prometheus is not installed (apt-get install prometheus; .ci/run installs it)");
        std::fs::create_dir_all(dir).expect("prometheus dir");
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let addr = format!("127.0.0.1:{}", free_ports(1)[0]);
        let log = dir.join("prometheus.log");
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(std::fs::File::create(dir.join("prometheus.err")).expect("log"));
        die_with_parent(&mut cmd);
        let child = cmd.spawn().expect("start prometheus");
        let p = Prometheus { addr, child, log: dir.join("prometheus.err") };
        wait_until(Duration::from_secs(60), Duration::from_millis(200), "prometheus ready", || async {
            match try_http_get(&p.addr, "/-/ready", Duration::from_secs(2)).await {
                Ok((200, _)) => Ok(()),
                Ok((code, body)) => Err(format!("/-/ready: {code} {body}")),
                Err(e) => Err(e),
            }
        })
        .await;
        p
    }

    /// `GET path`, the JSON answer's `data` (an error if the status is not success).
    pub async fn api(&self, path: &str) -> Result<Value, String> {
        let (code, body) = try_http_get(&self.addr, path, Duration::from_secs(10)).await?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{path}: HTTP {code}, not JSON ({e}): {body}"))?;
        if v["status"] != "success" {
            return Err(format!("{path}: HTTP {code}: {body}"));
        }
        Ok(v["data"].clone())
    }

    /// An instant query's vector (an error for a query that does not parse).
    pub async fn query(&self, expr: &str) -> Result<Vec<Sample>, String> {
        let data = self.api(&format!("/api/v1/query?query={}", encode(expr))).await?;
        let result = data["result"].as_array().ok_or_else(|| format!("{expr}: no vector in {data}"))?;
        let samples = match data["resultType"].as_str() {
            Some("vector") => result
                .iter()
                .map(|s| Sample {
                    labels: s["metric"].as_object().cloned().unwrap_or_default(),
                    value: s["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN),
                })
                .collect(),
            other => return Err(format!("{expr}: result type {other:?}")),
        };
        Ok(samples)
    }

    /// Every loaded rule (`/api/v1/rules`), flattened over the groups.
    pub async fn rules(&self) -> Result<Vec<Value>, String> {
        let data = self.api("/api/v1/rules").await?;
        Ok(data["groups"].as_array().into_iter().flatten().flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default()).collect())
    }

    /// The alerts pending or firing now (`/api/v1/alerts`).
    pub async fn alerts(&self) -> Result<Vec<Value>, String> {
        let data = self.api("/api/v1/alerts").await?;
        Ok(data["alerts"].as_array().cloned().unwrap_or_default())
    }

    /// The server's log (stderr), for a failed test's message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- prometheus log ----\n{}", self.log_tail());
        }
    }
}
