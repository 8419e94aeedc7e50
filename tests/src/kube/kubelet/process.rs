//! One pod's container as a real process: output appended to the pod's log
//! file, SIGKILLed if the test process dies (PR_SET_PDEATHSIG) or when the
//! handle is dropped.
//!
//! PR_SET_PDEATHSIG fires when the *thread* that spawned the child exits, so
//! processes are only spawned from the kubelet's async task (a runtime worker
//! or the test's thread), never from a `spawn_blocking` thread.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::die_with_parent;
use crate::kube::api::meta::now_rfc3339;

/// How to start a container.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchPlan {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
}

pub struct PodProcess {
    child: Option<Child>,
    pub started_at: String,
}

impl PodProcess {
    /// Starts `plan`, output appended to `log` (after a header line).
    pub fn spawn(plan: &LaunchPlan, log: &Path) -> Result<PodProcess, String> {
        use std::io::Write;
        let mut file =
            std::fs::OpenOptions::new().create(true).append(true).open(log).map_err(|e| format!("open {}: {e}", log.display()))?;
        let started_at = now_rfc3339();
        let _ = writeln!(file, "==== kube stand-in: {started_at} start {} {}", plan.program.display(), plan.args.join(" "));
        let err = file.try_clone().map_err(|e| format!("clone the log handle: {e}"))?;
        let mut cmd = Command::new(&plan.program);
        cmd.args(&plan.args).envs(plan.env.iter().cloned()).current_dir(&plan.cwd).stdin(Stdio::null()).stdout(file).stderr(err);
        die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|e| format!("start {}: {e}", plan.program.display()))?;
        Ok(PodProcess { child: Some(child), started_at })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit status if the process has exited (reaping it).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Sends `sig` if the process has not been reaped.
    pub fn signal(&self, sig: libc::c_int) {
        if let Some(c) = &self.child {
            crate::send_signal(c, sig);
        }
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, up to `grace` for it to exit, then SIGKILL; whether it exited by itself.
    pub async fn terminate(mut self, grace: Duration) -> bool {
        self.signal(libc::SIGTERM);
        let deadline = tokio::time::Instant::now() + grace;
        while tokio::time::Instant::now() < deadline {
            if self.exited().is_some() {
                self.child = None;
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill();
        false
    }
}

impl Drop for PodProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
