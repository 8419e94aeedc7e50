//! Child `shoal-node` processes: started so they die with their parent, stopped
//! with SIGTERM, then SIGKILL if they do not go in time.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Makes `cmd`'s process receive SIGKILL when this process dies, so a killed
/// playground leaves no nodes behind.
pub fn die_with_parent(cmd: &mut Command) {
    #[allow(unsafe_code)]
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// Sends `signal` to `child`.
pub fn signal(child: &Child, signal: libc::c_int) {
    #[allow(unsafe_code)]
    // SAFETY: kill(2) on a pid we own; no memory is shared.
    unsafe {
        libc::kill(child.id() as libc::pid_t, signal);
    }
}

/// SIGTERM (again, if already sent), then wait up to `grace` for the exit, then SIGKILL.
pub fn stop(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    signal(child, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}
