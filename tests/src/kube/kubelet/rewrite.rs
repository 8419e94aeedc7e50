//! What stands in for DNS and for the container filesystem: pod IPs on
//! loopback, and rewriting of `$(VAR)`s, pod hostnames, `0.0.0.0` and mount
//! paths in container args and env values.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use rand::Rng;

/// Pod IPs: one random `127.X.Y.0/24` per kubelet; pod `i` of the `k`-th
/// StatefulSet seen (or named in an arg) gets `127.X.Y.(10k+i+1)`, so at most
/// 25 StatefulSets of at most 10 pods each.
#[derive(Debug)]
pub struct IpAllocator {
    x: u8,
    y: u8,
    /// (namespace, StatefulSet) → k
    sets: HashMap<(String, String), u8>,
}

impl Default for IpAllocator {
    fn default() -> Self {
        IpAllocator::new()
    }
}

impl IpAllocator {
    pub fn new() -> IpAllocator {
        let mut rng = rand::rng();
        IpAllocator { x: rng.random_range(1..=250), y: rng.random_range(1..=250), sets: HashMap::new() }
    }

    /// The IP of pod `ordinal` of StatefulSet `sts` in `ns`.
    pub fn ip(&mut self, ns: &str, sts: &str, ordinal: u32) -> Ipv4Addr {
        let next = self.sets.len() as u8;
        let k = *self.sets.entry((ns.to_string(), sts.to_string())).or_insert(next);
        let last = 10 * u32::from(k) + ordinal + 1;
        assert!(ordinal < 10 && last < 255, "the kube stand-in gives IPs to 10 pods of 25 StatefulSets at most ({sts}-{ordinal})");
        Ipv4Addr::new(127, self.x, self.y, last as u8)
    }

    /// The IP of pod `<sts>-<ordinal>` in `ns`, if the name has that form.
    pub fn pod_ip(&mut self, ns: &str, pod: &str) -> Option<Ipv4Addr> {
        let (sts, ordinal) = split_pod_name(pod)?;
        Some(self.ip(ns, sts, ordinal))
    }
}

/// `demo-2` → (`demo`, 2).
pub fn split_pod_name(pod: &str) -> Option<(&str, u32)> {
    let (sts, ordinal) = pod.rsplit_once('-')?;
    if sts.is_empty() || ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((sts, ordinal.parse().ok()?))
}

/// Expands `$(VAR)` from `vars` (unknown names stay as written; `$$(` is a
/// literal `$(`), as the kubelet does for command, args and env values.
pub fn expand_vars(s: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(tail) = after.strip_prefix("$$(") {
            out.push_str("$(");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("$(")
            && let Some(end) = tail.find(')')
        {
            let name = &tail[..end];
            match vars.get(name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&after[..end + 3]),
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    out
}

/// Resolves a Service name (`<svc>.<ns>.svc`): (namespace, service) → an IP.
pub type ServiceResolver<'a> = &'a dyn Fn(&str, &str) -> Option<Ipv4Addr>;

/// Replaces pod hostnames (`<sts>-<i>.<svc>.<ns>.svc[.cluster.local]`) with
/// their IPs, Service names (`<svc>.<ns>.svc[.cluster.local]`) with what
/// `services` gives (unchanged if nothing) and `0.0.0.0` with `own_ip`.
pub fn rewrite_hosts(s: &str, own_ip: Ipv4Addr, ips: &mut IpAllocator, services: ServiceResolver<'_>) -> String {
    let is_host_char = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
    let mut out = String::new();
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String, ips: &mut IpAllocator| {
        out.push_str(&rewrite_host(run, own_ip, ips, services).unwrap_or_else(|| run.clone()));
        run.clear();
    };
    for c in s.chars() {
        if is_host_char(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out, ips);
            out.push(c);
        }
    }
    flush(&mut run, &mut out, ips);
    out
}

fn rewrite_host(host: &str, own_ip: Ipv4Addr, ips: &mut IpAllocator, services: ServiceResolver<'_>) -> Option<String> {
    if host == "0.0.0.0" {
        return Some(own_ip.to_string());
    }
    let labels: Vec<&str> = host.strip_suffix('.').unwrap_or(host).split('.').collect();
    match labels.as_slice() {
        [pod, _svc, ns, "svc"] | [pod, _svc, ns, "svc", "cluster", "local"] => ips.pod_ip(ns, pod).map(|ip| ip.to_string()),
        [svc, ns, "svc"] | [svc, ns, "svc", "cluster", "local"] => services(ns, svc).map(|ip| ip.to_string()),
        _ => None,
    }
}

/// Rewrites `s` — or the value after its first `=` — when it starts with one
/// of the mount paths: `mounts` is (mountPath, directory), longest first.
pub fn rewrite_paths(s: &str, mounts: &[(String, String)]) -> String {
    let map = |v: &str| -> Option<String> {
        mounts.iter().find_map(|(mount, dir)| {
            let mount = mount.trim_end_matches('/');
            let rest = v.strip_prefix(mount)?;
            (rest.is_empty() || rest.starts_with('/')).then(|| format!("{dir}{rest}"))
        })
    };
    if let Some(whole) = map(s) {
        return whole;
    }
    if let Some((flag, value)) = s.split_once('=')
        && let Some(v) = map(value)
    {
        return format!("{flag}={v}");
    }
    s.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vars_hosts_and_paths_are_rewritten() {
        let vars: HashMap<String, String> = [("POD_NAME".to_string(), "demo-1".to_string())].into();
        assert_eq!(expand_vars("--name=$(POD_NAME) $(NOPE) $$(POD_NAME) $", &vars), "--name=demo-1 $(NOPE) $(POD_NAME) $");

        let mut ips = IpAllocator { x: 9, y: 8, sets: HashMap::new() };
        let own = ips.ip("default", "demo", 1);
        let none = |_: &str, _: &str| None;
        let svc = |ns: &str, svc: &str| (ns == "default" && svc == "demo-peer").then_some(Ipv4Addr::new(127, 9, 8, 1));
        assert_eq!(
            rewrite_hosts("--join=demo-peer.default.svc:20160,x.default.svc:1", own, &mut ips, &svc),
            "--join=127.9.8.1:20160,x.default.svc:1"
        );
        assert_eq!(own, Ipv4Addr::new(127, 9, 8, 2));
        assert_eq!(rewrite_hosts("--listen-addr=0.0.0.0:20160", own, &mut ips, &none), "--listen-addr=127.9.8.2:20160");
        assert_eq!(
            rewrite_hosts(
                "--initial-cluster=demo-0=demo-0.demo-peer.default.svc:20160,demo-2=demo-2.demo-peer.default.svc.cluster.local:1",
                own,
                &mut ips,
                &none
            ),
            "--initial-cluster=demo-0=127.9.8.1:20160,demo-2=127.9.8.3:1"
        );
        assert_eq!(rewrite_hosts("other-0.x.default.svc", own, &mut ips, &none), "127.9.8.11", "a future StatefulSet gets the next block");
        assert_eq!(rewrite_hosts("example.com:80 demo.svc", own, &mut ips, &none), "example.com:80 demo.svc");

        let mounts = vec![("/var/lib/shoal/data".to_string(), "/d2".to_string()), ("/var/lib/shoal".to_string(), "/tmp/pvc".to_string())];
        assert_eq!(rewrite_paths("--data-dir=/var/lib/shoal/db", &mounts), "--data-dir=/tmp/pvc/db");
        assert_eq!(rewrite_paths("/var/lib/shoal/data/x", &mounts), "/d2/x");
        assert_eq!(rewrite_paths("--x=/var/lib/shoalish", &mounts), "--x=/var/lib/shoalish");
        assert_eq!(split_pod_name("my-set-12"), Some(("my-set", 12)));
        assert_eq!(split_pod_name("demo"), None);
    }
}
