//! Harness for end-to-end tests: real `shoal-node` processes on loopback.
//!
//! [`Cluster`] starts N nodes on free ports in a temp dir, waits (with deadlines,
//! never bare sleeps) until they serve, and kills them all when dropped. Nodes can
//! be SIGKILLed, SIGTERMed and restarted on the same data directory and ports,
//! or on an empty one ([`Cluster::restart_empty`], a lost volume); more nodes
//! can be started with `--join` ([`Cluster::join_node`]).
//! The binaries are found next to the test executable's `target/<profile>/`
//! directory, or in `$SHOAL_BIN_DIR`. A failed test prints the last lines of
//! each node's log; `SHOAL_TEST_KEEP_LOGS=DIR` also copies the whole logs there.
//!
//! Also here: [`shoalctl`] and typed views of its JSON ([`ctl`]), a reader of
//! one metric from a node's `/metrics` ([`parse_metric`], [`Cluster::metric`]),
//! waits that say what they last saw when they time out ([`wait_until`]), and
//! writers that keep a ledger of every acknowledged write ([`writers`]), a
//! linearizability checker ([`linearizability`]) and the nemesis whose
//! histories it judges ([`nemesis`]). [`Cluster::start_partitionable`] runs
//! each node in a network namespace of its own ([`netns`]) so that a test can
//! cut the network between nodes.
//!
//! [`k8s`] runs tests on a real Kubernetes control plane with our own node
//! agent; [`kvcluster`] reads the status and Events of the `KvCluster` they drive.
//! [`prometheus`] runs a real Prometheus server and asks it over its HTTP API;
//! [`pki`] makes throwaway CAs and certificates for the TLS tests.

pub mod bank;
pub mod ctl;
pub mod k8s;
pub mod kvcluster;
pub mod linearizability;
pub mod nemesis;
pub mod netns;
pub mod pki;
pub mod prometheus;
pub mod rng;
pub mod s3;
pub mod writers;

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shoal_client::{Client, ClientOptions, ClientTls, StatusResponse};

pub use ctl::{CtlOutput, StoreView, shoalctl, shoalctl_with_timeout};

/// The directory holding `shoal-node` and `shoalctl`.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SHOAL_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>
    let dir = exe.parent().and_then(Path::parent).expect("target dir").to_path_buf();
    for bin in ["shoal-node", "shoalctl"] {
        assert!(dir.join(bin).exists(), "{} is missing: run `cargo build --bins` first (or set SHOAL_BIN_DIR)", dir.join(bin).display());
    }
    dir
}

/// `n` distinct free ports on 127.0.0.1, held until all are chosen.
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port")).collect();
    listeners.iter().map(|l| l.local_addr().expect("local addr").port()).collect()
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `f` every `poll` until it returns `Ok`; `Err` says what it saw instead.
/// Prints that state every 15 s, and panics with it after `timeout`, so a slow
/// or failed wait explains itself.
pub async fn wait_until<T, F, Fut>(timeout: Duration, poll: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    let deadline = start + timeout;
    let mut next_report = start + Duration::from_secs(15);
    loop {
        let last = match f().await {
            Ok(v) => return v,
            Err(last) => last,
        };
        let now = Instant::now();
        assert!(now < deadline, "timed out after {timeout:?} waiting for {what}; last seen: {last}");
        if now >= next_report {
            eprintln!("  ... still waiting for {what} after {:.0?}: {last}", now - start);
            next_report = now + Duration::from_secs(15);
        }
        tokio::time::sleep(poll).await;
    }
}

/// Kills the child with SIGKILL when the parent (the test) dies.
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

/// Sends `sig` to a child process.
pub fn send_signal(child: &Child, sig: libc::c_int) {
    #[allow(unsafe_code)]
    // SAFETY: kill(2) on a pid this process owns.
    unsafe {
        libc::kill(child.id() as libc::pid_t, sig);
    }
}

/// The Raft group holding the cluster's metadata.
pub const META_REGION_ID: u64 = 1;
/// The data region a new cluster starts with (the whole key space until it splits).
pub const FIRST_REGION_ID: u64 = 2;

pub struct Node {
    pub name: String,
    pub grpc: String,
    pub status: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// The node's store id: `i + 1` for the nodes a cluster bootstraps with;
    /// for a node started with `--join`, learned from the registry or from the
    /// node's Status ([`Cluster::wait_registered`], [`Cluster::wait_leader_of`]).
    pub store_id: Option<u64>,
    /// Whether the node was started with `--join` (not a bootstrap member).
    pub joined: bool,
    args: Vec<String>,
    child: Option<Child>,
    /// The command that starts the node: `shoal-node`, or `ip netns exec … shoal-node`.
    launcher: Option<std::sync::Arc<netns::Network>>,
    index: usize,
}

impl Node {
    /// Whether the process is alive.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Whether the harness started the node and has not stopped it since (it
    /// may have died by itself: see [`Node::is_running`]).
    pub fn is_started(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The command-line options the node is started with.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open node log");
        let program = bin_dir().join("shoal-node");
        let mut cmd = match &self.launcher {
            Some(net) => net.command(self.index, &program),
            None => Command::new(program),
        };
        cmd.args(&self.args).stdin(Stdio::null()).stdout(log.try_clone().expect("clone log")).stderr(log);
        die_with_parent(&mut cmd);
        self.child = Some(cmd.spawn().expect("start shoal-node"));
    }

    /// Sends `sig` to the running process (SIGSTOP/SIGCONT to pause it).
    pub fn signal(&self, sig: libc::c_int) {
        if let Some(c) = &self.child {
            send_signal(c, sig);
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a graceful exit; returns whether it exited cleanly.
    pub fn terminate(&mut self, timeout: Duration) -> bool {
        let Some(mut c) = self.child.take() else { return true };
        send_signal(&c, libc::SIGTERM);
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        false
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    pub dir: tempfile::TempDir,
    /// The options every node was started with (besides identity and addresses).
    node_args: Vec<String>,
    /// The nodes' network namespaces, if started by [`Cluster::start_partitionable`].
    pub network: Option<std::sync::Arc<netns::Network>>,
    /// TLS of the harness's own clients, for a cluster started with [`Cluster::start_tls`].
    pub client_tls: Option<ClientTls>,
}

impl Node {
    /// A node (not started) named `name` under `dir` (data directory and log),
    /// with its identity and address flags and `membership` (how it finds the
    /// cluster: `--initial-cluster` or `--join`).
    fn new(dir: &std::path::Path, name: String, grpc: String, status: String, membership: (&str, String)) -> Node {
        let data_dir = dir.join(&name);
        let log = dir.join(format!("{name}.log"));
        let args: Vec<String> = vec![
            "--name".into(),
            name.clone(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--listen-addr".into(),
            grpc.clone(),
            "--status-addr".into(),
            status.clone(),
            membership.0.into(),
            membership.1,
        ];
        Node { name, grpc, status, data_dir, log, store_id: None, joined: false, args, child: None, launcher: None, index: 0 }
    }
}

impl Cluster {
    /// Starts `n` nodes with `extra` options each and waits until they serve.
    pub async fn start(n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_in(None, n, extra, None).await
    }

    /// Like [`Cluster::start`] for nodes whose `extra` options turn TLS on:
    /// the harness's clients (readiness, status, [`Cluster::client`]) use `tls`.
    pub async fn start_tls(n: usize, extra: &[&str], tls: ClientTls) -> Cluster {
        Cluster::start_in(None, n, extra, Some(tls)).await
    }

    /// Client options with the cluster's TLS (if any).
    pub fn client_options(&self) -> ClientOptions {
        ClientOptions { tls: self.client_tls.clone(), ..ClientOptions::default() }
    }

    /// Like [`Cluster::start`], but each node runs in a network namespace of
    /// its own on one bridge ([`netns::Network`]), so that `cluster.network`
    /// can partition them. Needs root and iproute2. Nodes cannot join such a
    /// cluster later.
    pub async fn start_partitionable(n: usize, extra: &[&str]) -> Cluster {
        let net = netns::Network::create(n).expect("network namespaces for the nodes (needs root and iproute2)");
        Cluster::start_in(Some(std::sync::Arc::new(net)), n, extra, None).await
    }

    async fn start_in(network: Option<std::sync::Arc<netns::Network>>, n: usize, extra: &[&str], client_tls: Option<ClientTls>) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = free_ports(2 * n);
        let host = |i: usize| network.as_ref().map_or_else(|| "127.0.0.1".to_string(), |net| net.addr(i));
        let initial: Vec<String> = (0..n).map(|i| format!("n{}={}:{}", i + 1, host(i), ports[2 * i])).collect();
        let mut nodes = Vec::new();
        for i in 0..n {
            let name = format!("n{}", i + 1);
            let grpc = format!("{}:{}", host(i), ports[2 * i]);
            let status = format!("{}:{}", host(i), ports[2 * i + 1]);
            let mut node = Node::new(dir.path(), name, grpc, status, ("--initial-cluster", initial.join(",")));
            node.args.extend(extra.iter().map(|s| s.to_string()));
            node.store_id = Some(i as u64 + 1);
            node.launcher = network.clone();
            node.index = i;
            nodes.push(node);
        }
        let node_args = extra.iter().map(|s| s.to_string()).collect();
        let mut cluster = Cluster { nodes, dir, node_args, network, client_tls };
        for node in &mut cluster.nodes {
            node.start();
        }
        for i in 0..n {
            cluster.wait_serving(i, Duration::from_secs(60)).await;
        }
        cluster.wait_leader(Duration::from_secs(60)).await;
        cluster.wait_leader_of(META_REGION_ID, Duration::from_secs(60)).await;
        cluster
    }

    /// Starts one more node, empty, on new free ports and its own data
    /// directory, with `--join` naming every other node. It gets the options the
    /// cluster was started with, except those `extra` gives again (`extra`
    /// replaces them), plus the rest of `extra`. Returns its index; does not
    /// wait for anything (see [`Cluster::wait_registered`]).
    pub fn join_node(&mut self, extra: &[&str]) -> usize {
        assert!(self.network.is_none(), "nodes cannot join a partitionable cluster");
        let i = self.nodes.len();
        let name = format!("n{}", i + 1);
        let ports = free_ports(2);
        let grpc = format!("127.0.0.1:{}", ports[0]);
        let status = format!("127.0.0.1:{}", ports[1]);
        let join: Vec<String> = self.nodes.iter().map(|n| n.grpc.clone()).collect();
        let mut node = Node::new(self.dir.path(), name, grpc, status, ("--join", join.join(",")));
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        node.args.extend(merge_args(&self.node_args, &extra));
        node.joined = true;
        self.nodes.push(node);
        self.nodes[i].start();
        i
    }

    /// Every node's client address, started or not.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.grpc.clone()).collect()
    }

    /// The client addresses of the nodes the harness has started and not stopped.
    pub fn live_endpoints(&self) -> Vec<String> {
        self.nodes.iter().filter(|n| n.is_started()).map(|n| n.grpc.clone()).collect()
    }

    pub fn client(&self) -> Client {
        Client::new(&self.endpoints(), self.client_options()).expect("client")
    }

    /// A client for the started nodes only.
    pub fn live_client(&self) -> Client {
        Client::new(&self.live_endpoints(), self.client_options()).expect("client")
    }

    /// Restarts node `i` (0-based) on its data directory and ports.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].start();
    }

    /// Starts node `i` again on its data directory and ports with its
    /// options, those `extra` gives again replaced by `extra` (see
    /// [`merge_args`]). The node must be stopped. Does not wait.
    pub fn restart_with(&mut self, i: usize, extra: &[&str]) {
        let node = &mut self.nodes[i];
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        node.args = merge_args(&node.args, &extra);
        node.start();
    }

    /// SIGKILLs node `i`, deletes its data directory (a lost volume) and starts
    /// it again on the same name and ports with its options, those `extra`
    /// gives again replaced by `extra` (see [`merge_args`]). Does not wait.
    pub fn restart_empty(&mut self, i: usize, extra: &[&str]) {
        let node = &mut self.nodes[i];
        node.kill9();
        std::fs::remove_dir_all(&node.data_dir).expect("delete the data directory");
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        node.args = merge_args(&node.args, &extra);
        node.store_id = None;
        node.start();
    }

    /// SIGKILLs node `i`.
    pub fn kill9(&mut self, i: usize) {
        self.nodes[i].kill9();
    }

    /// SIGTERMs node `i` and waits for it to exit; whether it exited 0 in time.
    pub fn terminate(&mut self, i: usize, timeout: Duration) -> bool {
        self.nodes[i].terminate(timeout)
    }

    /// Index of the node whose store is `store_id`, if known.
    pub fn index_of_store(&self, store_id: u64) -> Option<usize> {
        self.nodes.iter().position(|n| n.store_id == Some(store_id))
    }

    /// The store id of node `i`, which must be known.
    pub fn store_id(&self, i: usize) -> u64 {
        self.nodes[i].store_id.unwrap_or_else(|| panic!("the store id of {} is not known yet (wait_registered)", self.nodes[i].name))
    }

    /// Waits until every running node agrees on one leader of the first data
    /// region; returns its index.
    pub async fn wait_leader(&mut self, timeout: Duration) -> usize {
        self.wait_leader_of(FIRST_REGION_ID, timeout).await
    }

    /// Index of the node whose store leads the meta group, once all running nodes agree.
    pub async fn meta_leader(&mut self) -> usize {
        self.wait_leader_of(META_REGION_ID, Duration::from_secs(30)).await
    }

    /// Waits until every running node whose store is a voter of `region_id`
    /// reports the region with one and the same leader, a running node;
    /// returns that node's index. (Running nodes without a voter of the region
    /// — a store that joined and holds none of it — are not asked to agree.)
    /// Learns the store ids of joined nodes from their Status on the way.
    pub async fn wait_leader_of(&mut self, region_id: u64, timeout: Duration) -> usize {
        let client =
            Client::new(&self.endpoints(), ClientOptions { deadline: Duration::from_secs(1), ..self.client_options() }).expect("client");
        let running: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].is_running()).collect();
        let nodes: Vec<(usize, String)> = running.iter().map(|&i| (i, self.nodes[i].grpc.clone())).collect();
        let logs: Vec<String> = self.nodes.iter().map(|n| n.log.display().to_string()).collect();
        let (leader_store, ids) = wait_for(timeout, &format!("a leader of region {region_id} (logs: {logs:?})"), || {
            let client = &client;
            let nodes = &nodes;
            async move {
                // (node index, its store id, what it says of the region)
                let mut reports = Vec::new();
                for (i, ep) in nodes {
                    let s = client.status_of(ep).await.ok()?;
                    let store_id = s.store.as_ref().map_or(0, |st| st.id);
                    let region = s.regions.into_iter().find(|r| r.region.as_ref().is_some_and(|r| r.id == region_id));
                    reports.push((*i, store_id, region));
                }
                // The voters, as the replica with the newest membership sees them.
                let newest = reports
                    .iter()
                    .filter_map(|(_, _, r)| r.as_ref()?.region.as_ref())
                    .max_by_key(|r| r.epoch.as_ref().map_or(0, |e| e.conf_ver))?;
                let voters: Vec<u64> = newest.peers.iter().filter(|p| !p.is_learner).map(|p| p.store_id).collect();
                let mut leader = None;
                for (_, store_id, region) in &reports {
                    if !voters.contains(store_id) {
                        continue;
                    }
                    let l = region.as_ref()?.leader_store_id;
                    if *leader.get_or_insert(l) != l {
                        return None;
                    }
                }
                let leader = leader?;
                // The leader must be a running node: survivors may still name a dead one.
                let alive = reports.iter().any(|(_, id, _)| *id == leader && leader != 0);
                let ids: Vec<(usize, u64)> = reports.iter().filter(|(_, id, _)| *id != 0).map(|(i, id, _)| (*i, *id)).collect();
                alive.then_some((leader, ids))
            }
        })
        .await;
        for (i, id) in ids {
            self.nodes[i].store_id.get_or_insert(id);
        }
        self.index_of_store(leader_store).expect("the leader's node is known")
    }

    /// Index of the node that leads the first data region, as the nodes report it.
    pub async fn leader(&mut self) -> usize {
        self.wait_leader(Duration::from_secs(30)).await
    }

    /// Fetches a status page path from node `i` over plain HTTP.
    pub async fn http_get(&self, i: usize, path: &str) -> (u16, String) {
        http_get(&self.nodes[i].status, path).await
    }

    /// The Status RPC of node `i`.
    pub async fn status(&self, i: usize) -> Result<StatusResponse, String> {
        let opts = ClientOptions { deadline: Duration::from_secs(5), attempt_timeout: Duration::from_secs(5), ..self.client_options() };
        let client = Client::new(&[self.nodes[i].grpc.clone()], opts).map_err(|e| e.to_string())?;
        client.status_of(&self.nodes[i].grpc).await.map_err(|e| e.to_string())
    }

    /// The value of metric `name` on node `i` summed over the series that have
    /// `labels` (each `(name, value)`; other labels may be anything); `None`
    /// when the node does not answer or has no such series.
    pub async fn metric(&self, i: usize, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let (code, body) = try_http_get(&self.nodes[i].status, "/metrics", Duration::from_secs(5)).await.ok()?;
        if code != 200 {
            return None;
        }
        parse_metric(&body, name, labels)
    }

    /// Like [`Cluster::metric`], 0 when absent (a counter not yet incremented).
    pub async fn metric_or_zero(&self, i: usize, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.metric(i, name, labels).await.unwrap_or(0.0)
    }

    /// Runs `shoalctl --endpoints <started nodes> ARGS...`.
    pub async fn ctl(&self, args: &[&str]) -> CtlOutput {
        shoalctl(&self.live_endpoints(), args).await
    }

    /// Like [`Cluster::ctl`], killed after `timeout` rather than [`ctl::CTL_TIMEOUT`].
    pub async fn ctl_with_timeout(&self, args: &[&str], timeout: Duration) -> CtlOutput {
        shoalctl_with_timeout(&self.live_endpoints(), args, timeout).await
    }

    /// `shoalctl store list --output json`.
    pub async fn store_list(&self) -> Result<Vec<StoreView>, String> {
        let v = self.ctl(&["store", "list", "--output", "json"]).await.json()?;
        let rows = v.as_array().ok_or_else(|| format!("store list is not a JSON array: {v}"))?;
        rows.iter().map(StoreView::from_json).collect()
    }

    /// `shoalctl store status ID --output json`.
    pub async fn store_status(&self, store_id: u64) -> Result<serde_json::Value, String> {
        self.ctl(&["store", "status", &store_id.to_string(), "--output", "json"]).await.json()
    }

    /// `shoalctl store VERB ID --output json` (join, drain, cancel-drain, remove, status).
    pub async fn store_cmd(&self, verb: &str, store_id: u64) -> CtlOutput {
        self.ctl(&["store", verb, &store_id.to_string(), "--output", "json"]).await
    }

    /// `shoalctl region list --output json`.
    pub async fn region_list(&self) -> Result<Vec<serde_json::Value>, String> {
        let v = self.ctl(&["region", "list", "--output", "json"]).await.json()?;
        v.as_array().cloned().ok_or_else(|| format!("region list is not a JSON array: {v}"))
    }

    /// Waits until node `i` answers the Status RPC; panics with its log if it
    /// exits first (a refused option, a failed start).
    pub async fn wait_serving(&mut self, i: usize, timeout: Duration) {
        let start = Instant::now();
        loop {
            assert!(self.nodes[i].is_running(), "{} exited; its log:\n{}", self.nodes[i].name, self.nodes[i].log_tail());
            let last = match self.status(i).await {
                Ok(_) => return,
                Err(e) => e,
            };
            assert!(start.elapsed() < timeout, "{} does not serve after {timeout:?}: {last}", self.nodes[i].name);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the registry lists a store at node `i`'s address; records
    /// its id in the node and returns it. Panics with the node's log if it exits.
    pub async fn wait_registered(&mut self, i: usize, timeout: Duration) -> StoreView {
        let addr = self.nodes[i].grpc.clone();
        let start = Instant::now();
        let mut next_report = start + Duration::from_secs(15);
        loop {
            assert!(self.nodes[i].is_running(), "{} exited before registering; its log:\n{}", self.nodes[i].name, self.nodes[i].log_tail());
            let last = match self.store_list().await {
                Ok(stores) => match stores.iter().find(|s| s.address == addr) {
                    Some(view) => {
                        self.nodes[i].store_id = Some(view.id);
                        return view.clone();
                    }
                    None => ctl::brief(&stores),
                },
                Err(e) => e,
            };
            let what = format!("{} ({addr}) in the store list", self.nodes[i].name);
            assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}; last seen: {last}");
            if Instant::now() >= next_report {
                eprintln!("  ... still waiting for {what} after {:.0?}: {last}", start.elapsed());
                next_report = Instant::now() + Duration::from_secs(15);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill9();
        }
        if std::thread::panicking() {
            for n in &self.nodes {
                eprintln!("---- log of {} ----\n{}", n.name, n.log_tail());
            }
            if let Some(dir) = std::env::var_os("SHOAL_TEST_KEEP_LOGS") {
                let name = self.dir.path().file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
                let dir = Path::new(&dir).join(format!("{}-{name}", std::process::id()));
                let _ = std::fs::create_dir_all(&dir);
                for n in &self.nodes {
                    let _ = std::fs::copy(&n.log, dir.join(format!("{}.log", n.name)));
                }
                eprintln!("---- whole logs kept in {} ----", dir.display());
            }
        }
    }
}

/// `base` options with those that `over` names removed, then `over`: an option
/// is `--flag value`, `--flag=value` or a lone `--flag`.
pub fn merge_args(base: &[String], over: &[String]) -> Vec<String> {
    /// (flag name, the tokens of the option)
    fn options(args: &[String]) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for a in args {
            match out.last_mut() {
                // The value of a `--flag value` option.
                Some((_, tokens)) if !a.starts_with("--") && tokens.len() == 1 && !tokens[0].contains('=') => tokens.push(a.clone()),
                _ => out.push((a.split('=').next().unwrap_or(a).to_string(), vec![a.clone()])),
            }
        }
        out
    }
    let replaced: Vec<String> = options(over).into_iter().map(|(name, _)| name).collect();
    let mut out: Vec<String> =
        options(base).into_iter().filter(|(name, _)| !replaced.contains(name)).flat_map(|(_, tokens)| tokens).collect();
    out.extend(over.iter().cloned());
    out
}

/// The value of metric `name` in Prometheus text `text`, summed over the
/// series whose labels include every `(label, value)` of `labels`; `None` when
/// no series matches.
pub fn parse_metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut total: Option<f64> = None;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((series_name, series_labels, rest)) = split_series(line) else { continue };
        if series_name != name || !labels.iter().all(|(k, v)| series_labels.iter().any(|(sk, sv)| sk == k && sv == v)) {
            continue;
        }
        let Some(value) = rest.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) else { continue };
        *total.get_or_insert(0.0) += value;
    }
    total
}

/// A series' labels: (name, value) pairs.
type Labels = Vec<(String, String)>;

/// `name{a="x",b="y"} 1 [ts]` → (name, labels, "1 [ts]").
fn split_series(line: &str) -> Option<(&str, Labels, &str)> {
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    if !line[name_end..].starts_with('{') {
        return Some((name, Vec::new(), &line[name_end..]));
    }
    let mut labels = Vec::new();
    let mut chars = line[name_end + 1..].char_indices();
    let mut key = String::new();
    loop {
        let (pos, c) = chars.next()?;
        match c {
            '}' => return Some((name, labels, &line[name_end + 1 + pos + 1..])),
            ',' | ' ' => {}
            '=' => {
                if chars.next()?.1 != '"' {
                    return None;
                }
                let mut value = String::new();
                loop {
                    match chars.next()?.1 {
                        '"' => break,
                        '\\' => match chars.next()?.1 {
                            'n' => value.push('\n'),
                            other => value.push(other),
                        },
                        other => value.push(other),
                    }
                }
                labels.push((std::mem::take(&mut key), value));
            }
            other => key.push(other),
        }
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// Helm: `$SHOAL_HELM`, else `~/.cache/shoal-tools/bin/helm` (where
/// `scripts/setup.sh` puts it), else `helm` on `PATH`.
pub fn helm() -> &'static Path {
    static HELM: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    HELM.get_or_init(|| {
        let mut tried = Vec::new();
        if let Some(p) = std::env::var_os("SHOAL_HELM") {
            let p = PathBuf::from(p);
            assert!(is_executable(&p), "SHOAL_HELM={} is not an executable file", p.display());
            return p;
        }
        if let Some(home) = std::env::var_os("HOME") {
            let p = PathBuf::from(home).join(".cache/shoal-tools/bin/helm");
            if is_executable(&p) {
                return p;
            }
            tried.push(p.display().to_string());
        }
        if let Some(path) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&path) {
                let p = dir.join("helm");
                if is_executable(&p) {
                    return p;
                }
            }
        }
        tried.push("helm on PATH".into());
        panic!(
            "Helm is not installed (tried $SHOAL_HELM, {}): run scripts/setup.sh, which puts Helm v3.17.2 in ~/.cache/shoal-tools/bin/helm, or set SHOAL_HELM",
            tried.join(", ")
        );
    })
}

/// Where `bin` is on the PATH.
pub fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|p| p.join(bin)).find(|p| p.exists()))
}

/// Runs `promtool check metrics` on a scraped `/metrics` text; `Err` with
/// promtool's findings when it is not clean.
pub fn promtool_check(metrics: &str) -> Result<(), String> {
    use std::io::Write as _;
    let promtool = which("promtool").ok_or("promtool is not installed (apt-get install prometheus; .ci/run installs it)")?;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("run promtool: {e}"))?;
    child.stdin.take().ok_or("promtool's stdin")?.write_all(metrics.as_bytes()).map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("promtool check metrics: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

/// A minimal HTTP/1.0 GET; returns the status code and body.
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    tokio::time::timeout(Duration::from_secs(10), http_get_inner(addr, path)).await.expect("status request answered within 10 s")
}

/// Like [`http_get`], but an error instead of a panic when the node does not
/// answer within `timeout`.
pub async fn try_http_get(addr: &str, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    try_http("GET", addr, path, timeout).await
}

/// A minimal HTTP/1.0 request with no body (`GET`, `PUT`, …); the status code
/// and body, or an error when the node does not answer within `timeout`.
pub async fn try_http(method: &str, addr: &str, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect to {addr}: {e}"))?;
        let head = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n");
        stream.write_all(head.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        Ok(parse_http(&buf))
    };
    tokio::time::timeout(timeout, request).await.map_err(|_| format!("{method} http://{addr}{path}: no answer within {timeout:?}"))?
}

async fn http_get_inner(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect to status address");
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await.expect("send request");
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.expect("read response");
    parse_http(&buf)
}

fn parse_http(buf: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(buf).into_owned();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_found_by_name_and_labels() {
        let text = "# HELP shoal_snapshots_total Snapshots\n\
                    # TYPE shoal_snapshots_total counter\n\
                    shoal_snapshots_total{event=\"applied\"} 2\n\
                    shoal_snapshots_total{event=\"sent\"} 5\n\
                    shoal_snapshot_bytes_total{direction=\"received\",peer=\"a,b}\\\"c\"} 1048576\n\
                    shoal_snapshot_bytes_total{direction=\"received\",peer=\"d\"} 1\n\
                    shoal_store_regions 7\n\
                    shoal_store_regions_other 9\n";
        assert_eq!(parse_metric(text, "shoal_snapshots_total", &[("event", "applied")]), Some(2.0));
        assert_eq!(parse_metric(text, "shoal_snapshots_total", &[]), Some(7.0), "summed over series");
        assert_eq!(parse_metric(text, "shoal_snapshots_total", &[("event", "failed")]), None);
        assert_eq!(parse_metric(text, "shoal_snapshot_bytes_total", &[("direction", "received")]), Some(1048577.0));
        assert_eq!(parse_metric(text, "shoal_snapshot_bytes_total", &[("peer", "a,b}\"c")]), Some(1048576.0));
        assert_eq!(parse_metric(text, "shoal_store_regions", &[]), Some(7.0));
        assert_eq!(parse_metric(text, "shoal_store", &[]), None);
    }

    #[test]
    fn merged_options_replace_those_given_again() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let base = s(&["--region-split-size", "1048576", "--verbose", "--heartbeat-interval-ms=500", "--column-family", "users"]);
        assert_eq!(
            merge_args(&base, &s(&["--heartbeat-interval-ms", "200", "--region-split-size=2"])),
            s(&["--verbose", "--column-family", "users", "--heartbeat-interval-ms", "200", "--region-split-size=2"])
        );
        assert_eq!(merge_args(&base, &[]), base);
    }
}
