//! A network of Linux network namespaces, so that a test can partition nodes
//! the way a real network fails: packets silently dropped, connections left
//! open and hanging.
//!
//! [`Network::create`] makes one bridge in a switch namespace of its own
//! (`shoal-<pid>-sw`), joined to the test's namespace by a veth pair whose end
//! here holds `10.213.S.1/24` (S from the test's pid), and, for each node `i`,
//! a namespace `shoal-<pid>-<i>` joined to the bridge by a veth pair, its end
//! in the namespace holding `10.213.S.(i+2)`. The bridge lives apart so that
//! the machine's own firewall never sees the bridged packets: with Docker
//! installed (`br_netfilter` loaded, `FORWARD` policy `DROP`) a bridge in the
//! test's namespace would drop the nodes' traffic to each other. A node runs inside its namespace
//! (`ip netns exec`, [`Network::command`]) and listens on its own address; the
//! test reaches every node through the bridge, and the nodes reach each other
//! the same way.
//!
//! [`Network::partition`] cuts every link between two sides with blackhole
//! routes in the namespaces on both sides (no iptables needed: only
//! iproute2), [`Network::heal`] removes them. The test's own address is never
//! cut: clients keep reaching both sides, as a client next to a partitioned
//! node would.
//!
//! Needs root (CAP_NET_ADMIN) and `ip`. Dropping the network deletes its
//! namespaces (the bridge's too); leftovers of a test that was killed are swept by the
//! next [`Network::create`].

use std::process::Command;

/// Runs `ip` with `args`; the error carries its stderr.
fn ip(args: &[&str]) -> Result<String, String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Deletes the namespaces of test processes that are gone (their veths and
/// bridge go with them).
fn sweep_leftovers() {
    for line in ip(&["netns", "list"]).unwrap_or_default().lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let owner = name.strip_prefix("shoal-").and_then(|r| r.split('-').next()).and_then(|p| p.parse().ok());
        if owner.is_some_and(|pid| !pid_alive(pid)) {
            let _ = ip(&["netns", "delete", name]);
        }
    }
}

/// Namespaces for `size` nodes on one bridge; see the module docs.
#[derive(Debug)]
pub struct Network {
    pid: u32,
    subnet: u32,
    size: usize,
}

impl Network {
    /// Whether this process may create namespaces (root and `ip` present).
    pub fn available() -> bool {
        #[allow(unsafe_code)]
        // SAFETY: geteuid(2) has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        root && ip(&["netns", "list"]).is_ok()
    }

    /// Creates the bridge and one namespace per node.
    pub fn create(size: usize) -> Result<Network, String> {
        assert!(size < 250, "at most 249 nodes");
        sweep_leftovers();
        let pid = std::process::id();
        let net = Network { pid, subnet: pid % 250 + 1, size };
        let (switch, bridge) = (net.switch(), format!("shb{pid}"));
        ip(&["netns", "add", &switch])?;
        ip(&["-n", &switch, "link", "add", &bridge, "type", "bridge"])?;
        ip(&["-n", &switch, "link", "set", &bridge, "up"])?;
        // One port of the bridge per namespace: the veth's other end goes
        // into the switch namespace and onto the bridge.
        let plug = |outer: &str, inner: &str, ns: Option<&str>| -> Result<(), String> {
            ip(&["link", "add", outer, "type", "veth", "peer", "name", inner])?;
            if let Some(ns) = ns {
                ip(&["link", "set", inner, "netns", ns])?;
            }
            ip(&["link", "set", outer, "netns", &switch])?;
            ip(&["-n", &switch, "link", "set", outer, "master", &bridge])?;
            ip(&["-n", &switch, "link", "set", outer, "up"]).map(drop)
        };
        let gateway_link = format!("shg{pid}");
        plug(&format!("shs{pid}"), &gateway_link, None)?;
        ip(&["addr", "add", &format!("10.213.{}.1/24", net.subnet), "dev", &gateway_link])?;
        ip(&["link", "set", &gateway_link, "up"])?;
        for i in 0..size {
            let ns = net.namespace(i);
            let (host, inner) = (format!("shv{pid}n{i}"), format!("shp{pid}n{i}"));
            let addr = format!("{}/24", net.addr(i));
            ip(&["netns", "add", &ns])?;
            plug(&host, &inner, Some(&ns))?;
            ip(&["-n", &ns, "addr", "add", &addr, "dev", &inner])?;
            ip(&["-n", &ns, "link", "set", &inner, "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// The namespace holding the bridge.
    fn switch(&self) -> String {
        format!("shoal-{}-sw", self.pid)
    }

    /// Node `i`'s namespace.
    pub fn namespace(&self, i: usize) -> String {
        format!("shoal-{}-{i}", self.pid)
    }

    /// Node `i`'s address.
    pub fn addr(&self, i: usize) -> String {
        format!("10.213.{}.{}", self.subnet, i + 2)
    }

    /// A command that runs `program` inside node `i`'s namespace.
    pub fn command(&self, i: usize, program: &std::path::Path) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.namespace(i)]).arg(program);
        cmd
    }

    /// Cuts every link between the nodes in `side` and all the others.
    pub fn partition(&self, side: &[usize]) -> Result<(), String> {
        for a in side {
            for b in (0..self.size).filter(|b| !side.contains(b)) {
                for (from, to) in [(*a, b), (b, *a)] {
                    let dest = format!("{}/32", self.addr(to));
                    ip(&["-n", &self.namespace(from), "route", "replace", "blackhole", &dest])?;
                }
            }
        }
        Ok(())
    }

    /// Removes every cut.
    pub fn heal(&self) -> Result<(), String> {
        for i in 0..self.size {
            ip(&["-n", &self.namespace(i), "route", "flush", "type", "blackhole"])?;
        }
        Ok(())
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth ends and their peers.
        for i in 0..self.size {
            let _ = ip(&["netns", "delete", &self.namespace(i)]);
        }
        let _ = ip(&["netns", "delete", &self.switch()]);
    }
}

/// Runs `f` on a thread that has entered namespace `ns`: sockets it opens
/// live there.
pub fn in_namespace<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    use std::os::fd::AsRawFd;
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("open the namespace");
            #[allow(unsafe_code)]
            // SAFETY: setns(2) on an open namespace file; it moves only this thread.
            let entered = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } == 0;
            assert!(entered, "setns {ns}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::time::Duration;

    /// Two namespaces reach each other until partitioned, and again once
    /// healed; the test's own namespace reaches both throughout.
    #[test]
    fn a_partition_cuts_both_ways_until_healed_and_never_cuts_the_test() {
        let net = Network::create(2).expect("create the network (needs root and iproute2)");
        let listen = |i: usize| in_namespace(&net.namespace(i), || TcpListener::bind((net.addr(i).as_str(), 0)).expect("bind"));
        let (l0, l1) = (listen(0), listen(1));
        let (a0, a1) = (l0.local_addr().unwrap(), l1.local_addr().unwrap());
        let reaches = |from: Option<usize>, to: SocketAddr| {
            let connect = || TcpStream::connect_timeout(&to, Duration::from_millis(500)).is_ok();
            match from {
                Some(i) => in_namespace(&net.namespace(i), connect),
                None => connect(),
            }
        };
        assert!(reaches(Some(0), a1) && reaches(Some(1), a0), "linked namespaces reach each other");
        net.partition(&[0]).unwrap();
        assert!(!reaches(Some(0), a1), "node 0 cannot reach node 1 across the partition");
        assert!(!reaches(Some(1), a0), "node 1 cannot reach node 0 across the partition");
        assert!(reaches(None, a0) && reaches(None, a1), "the test reaches both sides");
        net.heal().unwrap();
        assert!(reaches(Some(0), a1) && reaches(Some(1), a0), "healed namespaces reach each other again");
    }
}
