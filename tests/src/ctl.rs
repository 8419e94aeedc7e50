//! `shoalctl` as the tests run it, and typed views of its JSON output.

use std::time::Duration;

use serde_json::Value;

use crate::bin_dir;

/// How long one `shoalctl` run may take before it is killed.
pub const CTL_TIMEOUT: Duration = Duration::from_secs(60);

/// What one `shoalctl` run did.
#[derive(Clone, Debug)]
pub struct CtlOutput {
    pub args: Vec<String>,
    /// The exit code; `None` when it was killed (by a signal or for running
    /// longer than [`CTL_TIMEOUT`]).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CtlOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The parsed stdout of a successful run; otherwise an error that says
    /// what the command was and what it printed.
    pub fn json(&self) -> Result<Value, String> {
        if !self.success() {
            return Err(format!("`shoalctl {}` exited {:?}: {}", self.args.join(" "), self.code, self.stderr.trim()));
        }
        serde_json::from_str(&self.stdout).map_err(|e| format!("`shoalctl {}` printed no JSON ({e}): {}", self.args.join(" "), self.stdout))
    }

    /// Like [`CtlOutput::json`], panicking on failure.
    pub fn expect_json(&self) -> Value {
        self.json().unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Runs `shoalctl --endpoints A,B,.. ARGS...` without blocking the runtime;
/// kills it after [`CTL_TIMEOUT`].
pub async fn shoalctl(endpoints: &[String], args: &[&str]) -> CtlOutput {
    shoalctl_with_timeout(endpoints, args, CTL_TIMEOUT).await
}

/// Like [`shoalctl`], killed after `timeout` (for long runs: `bench load`).
pub async fn shoalctl_with_timeout(endpoints: &[String], args: &[&str], timeout: Duration) -> CtlOutput {
    shoalctl_with_env(endpoints, args, &[], timeout).await
}

/// Like [`shoalctl_with_timeout`], with `env` added to its environment.
pub async fn shoalctl_with_env(endpoints: &[String], args: &[&str], env: &[(&str, &str)], timeout: Duration) -> CtlOutput {
    let mut all: Vec<String> = vec!["--endpoints".into(), endpoints.join(",")];
    all.extend(args.iter().map(|a| a.to_string()));
    let child = tokio::process::Command::new(bin_dir().join("shoalctl"))
        .args(&all)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(timeout, child).await {
        Ok(Ok(out)) => CtlOutput {
            args: all,
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        },
        Ok(Err(e)) => panic!("cannot run shoalctl: {e}"),
        Err(_) => CtlOutput { args: all, code: None, stdout: String::new(), stderr: format!("killed after {timeout:?}") },
    }
}

/// One store as `shoalctl store list --output json` shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreView {
    pub id: u64,
    pub address: String,
    /// `up`, `pending`, `joining`, `draining`, `tombstone` or `down`.
    pub state: String,
    pub region_count: u64,
    pub leader_count: u64,
    /// The whole JSON object.
    pub raw: Value,
}

impl StoreView {
    pub fn from_json(v: &Value) -> Result<StoreView, String> {
        let num = |k: &str| v.get(k).and_then(Value::as_u64).ok_or_else(|| format!("store without a numeric {k:?}: {v}"));
        let text =
            |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string).ok_or_else(|| format!("store without a string {k:?}: {v}"));
        Ok(StoreView {
            id: num("id")?,
            address: text("address")?,
            state: text("state")?,
            region_count: num("region_count")?,
            leader_count: num("leader_count")?,
            raw: v.clone(),
        })
    }

    /// `id=state rREGIONS/lLEADERS`, for progress lines.
    pub fn brief(&self) -> String {
        format!("{}={} r{}/l{}", self.id, self.state, self.region_count, self.leader_count)
    }
}

/// Stores in brief, for progress lines.
pub fn brief(stores: &[StoreView]) -> String {
    stores.iter().map(StoreView::brief).collect::<Vec<_>>().join(" ")
}

/// Peers of `store_id` in a `region list --output json` answer: (voters, learners).
pub fn peers_on_store(regions: &[Value], store_id: u64) -> (usize, usize) {
    let mut voters = 0;
    let mut learners = 0;
    for r in regions {
        for p in r["peers"].as_array().into_iter().flatten() {
            if p["store_id"].as_u64() == Some(store_id) {
                if p["is_learner"].as_bool() == Some(true) {
                    learners += 1;
                } else {
                    voters += 1;
                }
            }
        }
    }
    (voters, learners)
}

/// Region id → store ids of its peers (learners marked with `+`), for
/// comparing a `region list` before and after.
pub fn placement(regions: &[Value]) -> Vec<(u64, Vec<String>)> {
    let mut out: Vec<(u64, Vec<String>)> = regions
        .iter()
        .map(|r| {
            let mut peers: Vec<String> = r["peers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    let learner = if p["is_learner"].as_bool() == Some(true) { "+" } else { "" };
                    format!("{}{learner}", p["store_id"].as_u64().unwrap_or(0))
                })
                .collect();
            peers.sort();
            (r["id"].as_u64().unwrap_or(0), peers)
        })
        .collect();
    out.sort();
    out
}
