//! Harness for end-to-end tests: real `shoal-node` processes on loopback.
//!
//! [`Cluster`] starts N nodes on free ports in a temp dir, waits (with deadlines,
//! never bare sleeps) until they serve, and kills them all when dropped. Nodes can
//! be SIGKILLed, SIGTERMed and restarted on the same data directory and ports.
//! The binaries are found next to the test executable's `target/<profile>/`
//! directory, or in `$SHOAL_BIN_DIR`.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shoal_client::{Client, ClientOptions};

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

/// Kills the child with SIGKILL when the parent (the test) dies.
fn die_with_parent(cmd: &mut Command) {
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
    args: Vec<String>,
    child: Option<Child>,
}

impl Node {
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open node log");
        let mut cmd = Command::new(bin_dir().join("shoal-node"));
        cmd.args(&self.args).stdin(Stdio::null()).stdout(log.try_clone().expect("clone log")).stderr(log);
        die_with_parent(&mut cmd);
        self.child = Some(cmd.spawn().expect("start shoal-node"));
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
}

impl Cluster {
    /// Starts `n` nodes with `extra` options each and waits until they serve.
    pub async fn start(n: usize, extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = free_ports(2 * n);
        let initial: Vec<String> = (0..n).map(|i| format!("n{}=127.0.0.1:{}", i + 1, ports[2 * i])).collect();
        let mut nodes = Vec::new();
        for i in 0..n {
            let name = format!("n{}", i + 1);
            let grpc = format!("127.0.0.1:{}", ports[2 * i]);
            let status = format!("127.0.0.1:{}", ports[2 * i + 1]);
            let data_dir = dir.path().join(&name);
            let mut args: Vec<String> = vec![
                "--name".into(),
                name.clone(),
                "--data-dir".into(),
                data_dir.display().to_string(),
                "--listen-addr".into(),
                grpc.clone(),
                "--status-addr".into(),
                status.clone(),
                "--initial-cluster".into(),
                initial.join(","),
            ];
            args.extend(extra.iter().map(|s| s.to_string()));
            let log = dir.path().join(format!("{name}.log"));
            nodes.push(Node { name, grpc, status, data_dir, log, args, child: None });
        }
        let mut cluster = Cluster { nodes, dir };
        for node in &mut cluster.nodes {
            node.start();
        }
        cluster.wait_leader(Duration::from_secs(60)).await;
        cluster.wait_leader_of(META_REGION_ID, Duration::from_secs(60)).await;
        cluster
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.grpc.clone()).collect()
    }

    pub fn client(&self) -> Client {
        Client::new(&self.endpoints(), ClientOptions::default()).expect("client")
    }

    /// Restarts node `i` (0-based) on its data directory and ports.
    pub fn restart(&mut self, i: usize) {
        self.nodes[i].start();
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

    /// Waits until every running node agrees on one leader of `region_id`;
    /// returns its index.
    pub async fn wait_leader_of(&mut self, region_id: u64, timeout: Duration) -> usize {
        let client =
            Client::new(&self.endpoints(), ClientOptions { deadline: Duration::from_secs(1), ..Default::default() }).expect("client");
        let running: Vec<usize> = (0..self.nodes.len()).filter(|&i| self.nodes[i].is_running()).collect();
        let nodes: Vec<String> = running.iter().map(|&i| self.nodes[i].grpc.clone()).collect();
        let running_ids: Vec<u64> = running.iter().map(|&i| i as u64 + 1).collect();
        let logs: Vec<String> = self.nodes.iter().map(|n| n.log.display().to_string()).collect();
        let leader_store = wait_for(timeout, &format!("a leader of region {region_id} (logs: {logs:?})"), || {
            let client = &client;
            let nodes = nodes.clone();
            let running_ids = &running_ids;
            async move {
                let mut seen = Vec::new();
                for ep in &nodes {
                    let s = client.status_of(ep).await.ok()?;
                    seen.push(s.regions.iter().find(|r| r.region.as_ref().is_some_and(|r| r.id == region_id))?.leader_store_id);
                }
                let first = *seen.first()?;
                // The leader must be a running node: survivors may still name a dead one.
                let alive = running_ids.contains(&first);
                (alive && seen.iter().all(|&l| l == first)).then_some(first)
            }
        })
        .await;
        leader_store as usize - 1
    }

    /// Index of the node that leads the first data region, as the nodes report it.
    pub async fn leader(&mut self) -> usize {
        self.wait_leader(Duration::from_secs(30)).await
    }

    /// Fetches a status page path from node `i` over plain HTTP.
    pub async fn http_get(&self, i: usize, path: &str) -> (u16, String) {
        http_get(&self.nodes[i].status, path).await
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
        }
    }
}

/// A minimal HTTP/1.0 GET; returns the status code and body.
pub async fn http_get(addr: &str, path: &str) -> (u16, String) {
    tokio::time::timeout(Duration::from_secs(10), http_get_inner(addr, path)).await.expect("status request answered within 10 s")
}

async fn http_get_inner(addr: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect to status address");
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await.expect("send request");
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.expect("read response");
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (code, body)
}
