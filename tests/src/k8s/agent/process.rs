//! One pod's container as a real process, in a mount namespace of its own
//! where the pod's volumes are bind-mounted at their `mountPath`s (as a
//! container runtime mounts them into the container), output appended to the
//! pod's log file, SIGKILLed if the test process dies (PR_SET_PDEATHSIG) or
//! when the handle is dropped.

use std::ffi::CString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// A volume mounted into the pod: the directory behind it and where it appears.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// How to start a container.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchPlan {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    /// Parents before children.
    pub mounts: Vec<Mount>,
}

pub struct PodProcess {
    child: Option<Child>,
}

fn cstr(p: &Path) -> Result<CString, String> {
    CString::new(p.as_os_str().as_encoded_bytes()).map_err(|e| format!("{}: {e}", p.display()))
}

impl PodProcess {
    /// Starts `plan`, output appended to `log` (after a header line).
    pub fn spawn(plan: &LaunchPlan, log: &Path) -> Result<PodProcess, String> {
        use std::io::Write;
        let mut file =
            std::fs::OpenOptions::new().create(true).append(true).open(log).map_err(|e| format!("open {}: {e}", log.display()))?;
        let _ = writeln!(file, "==== node agent: start {} {}", plan.program.display(), plan.args.join(" "));
        let err = file.try_clone().map_err(|e| format!("clone the log handle: {e}"))?;
        // Mount points must exist; a container runtime makes them in the
        // image's root, we make them (empty) in the machine's.
        let mut mounts = Vec::new();
        for m in &plan.mounts {
            std::fs::create_dir_all(&m.target).map_err(|e| format!("mount point {}: {e}", m.target.display()))?;
            mounts.push((cstr(&m.source)?, cstr(&m.target)?, m.read_only));
        }
        let mut cmd = Command::new(&plan.program);
        cmd.args(&plan.args)
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .envs(plan.env.iter().cloned())
            .current_dir(&plan.cwd)
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err);
        #[allow(unsafe_code)]
        // SAFETY: between fork and exec only async-signal-safe syscalls run,
        // on strings made before the fork.
        unsafe {
            cmd.pre_exec(move || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let none = std::ptr::null();
                if libc::mount(none, c"/".as_ptr(), none, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                for (source, target, read_only) in &mounts {
                    if libc::mount(source.as_ptr(), target.as_ptr(), none, libc::MS_BIND | libc::MS_REC, std::ptr::null()) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let ro = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY;
                    if *read_only && libc::mount(none, target.as_ptr(), none, ro, std::ptr::null()) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|e| format!("start {}: {e}", plan.program.display()))?;
        Ok(PodProcess { child: Some(child) })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit status if the process has exited (reaping it).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
        if status.is_some() {
            self.child = None;
        }
        status
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
