//! The test cluster's network and names. The test thread enters, before it
//! starts anything, a network namespace and a mount namespace of its own
//! ([`enter_private_namespaces`]); its runtime's threads, the control plane,
//! `kubectl`, `helm` and every pod inherit both. In that network namespace the
//! whole pod range [`POD_CIDR`] is local on `lo`, so each pod can have an
//! address of its own that the API server accepts (EndpointSlices refuse
//! loopback addresses) without touching the machine's network; nothing
//! leaves the namespace, which ends with the test process. In that mount
//! namespace a hosts file of our own is bind-mounted over `/etc/hosts`; the
//! machine's own `/etc/hosts` is never written.
//!
//! [`HostsFile`] keeps the machine's entries and appends the cluster's: pod
//! hostnames (`<pod>.<subdomain>.<ns>.svc[.cluster.local]`) and Service names
//! (`<svc>.<ns>.svc[.cluster.local]`), from the real EndpointSlices (see
//! `agent::dns`). glibc reads `/etc/hosts` at every lookup, and the file is
//! rewritten in place (same inode), so every process sees a change at its next
//! lookup, as it would see a DNS update.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

/// The cluster's hosts file.
pub struct HostsFile {
    path: PathBuf,
    machine: String,
    written: String,
}

impl HostsFile {
    /// Creates `path` holding the machine's `/etc/hosts` (nothing of the cluster yet).
    pub fn create(path: &Path) -> std::io::Result<HostsFile> {
        let machine = std::fs::read_to_string("/etc/hosts").unwrap_or_else(|_| "127.0.0.1 localhost\n".into());
        std::fs::write(path, &machine)?;
        Ok(HostsFile { path: path.to_path_buf(), machine, written: String::new() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the cluster's entries with `names` (name → address). Written
    /// only when something changed.
    pub fn set(&mut self, names: &BTreeMap<String, String>) -> std::io::Result<()> {
        let mut cluster = String::from("\n# the shoal test cluster (tests/src/k8s/hosts.rs)\n");
        for (name, addr) in names {
            cluster.push_str(&format!("{addr}\t{name}\n"));
        }
        if cluster == self.written {
            return Ok(());
        }
        // In place: a rename would leave the bind mount on the old inode.
        let text = format!("{}{cluster}", self.machine);
        let mut f = std::fs::OpenOptions::new().write(true).open(&self.path)?;
        f.seek(std::io::SeekFrom::Start(0))?;
        f.write_all(text.as_bytes())?;
        f.set_len(text.len() as u64)?;
        self.written = cluster;
        Ok(())
    }
}

/// The pods' addresses: local on `lo` inside the test's network namespace.
pub const POD_CIDR: &str = "10.244.0.0/16";
/// The node's own address in it; pods get the next ones.
pub const NODE_IP: &str = "10.244.0.1";

/// Moves the calling thread into a new network namespace (loopback up,
/// [`POD_CIDR`] local) and a private mount namespace with `hosts`
/// bind-mounted over `/etc/hosts`. Threads and processes it starts later
/// inherit both; the rest of the machine sees nothing. Needs root (or
/// CAP_SYS_ADMIN and CAP_NET_ADMIN), which the test machines and CI have, and
/// `ip` (iproute2).
pub fn enter_private_namespaces(hosts: &Path) -> std::io::Result<()> {
    let src = CString::new(hosts.as_os_str().as_encoded_bytes()).map_err(std::io::Error::other)?;
    #[allow(unsafe_code)]
    // SAFETY: plain syscalls with NUL-terminated strings that outlive them.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWNET) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // Nothing mounted from here on propagates back to the machine.
        if libc::mount(std::ptr::null(), c"/".as_ptr(), std::ptr::null(), libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::mount(src.as_ptr(), c"/etc/hosts".as_ptr(), std::ptr::null(), libc::MS_BIND, std::ptr::null()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    // `ip` runs as a child of this thread, so in the new network namespace.
    for args in [&["link", "set", "lo", "up"][..], &["route", "add", "local", POD_CIDR, "dev", "lo"]] {
        let out = std::process::Command::new("ip").args(args).output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr))));
        }
    }
    Ok(())
}
