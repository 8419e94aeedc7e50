//! `shoalctl playground`: a local cluster of real `shoal-node` processes.
//!
//! Starts N nodes on 127.0.0.1 (gRPC on BASE+2i, status on BASE+2i+1), each with
//! its own data directory and log file, waits until every node reports a leader
//! for every region and a linearizable read goes through, prints `ready: endpoints=...` and
//! the metrics URLs, then stays in the foreground until Ctrl-C or SIGTERM, when it
//! stops the nodes gracefully.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use shoal_client::{Client, ClientOptions};
use tokio::signal::unix::{SignalKind, signal};

use crate::process;

#[derive(clap::Args)]
pub struct PlaygroundArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Where the nodes keep their data and logs (default: a new temporary
    /// directory, removed on exit).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// First port; node i listens on BASE+2i (gRPC) and BASE+2i+1 (status).
    #[arg(long, default_value_t = 20160)]
    base_port: u16,
    /// Extra option for every node, e.g. --node-arg=--column-family=users; repeatable.
    #[arg(long = "node-arg", allow_hyphen_values = true)]
    node_args: Vec<String>,
    /// How long to wait for the cluster to serve.
    #[arg(long, default_value = "60")]
    ready_timeout_secs: u64,
}

struct Node {
    name: String,
    grpc: String,
    status: String,
    log: PathBuf,
    child: Child,
}

/// Everything the playground started; stops the nodes when dropped.
struct Playground {
    nodes: Vec<Node>,
    _temp: Option<tempfile::TempDir>,
}

impl Drop for Playground {
    /// SIGTERM to every node at once, then one shared 10 s grace before SIGKILL.
    fn drop(&mut self) {
        for n in &self.nodes {
            process::signal(&n.child, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for n in &mut self.nodes {
            process::stop(&mut n.child, deadline.saturating_duration_since(Instant::now()));
        }
    }
}

fn node_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding shoalctl's own path")?;
    let node = exe.with_file_name("shoal-node");
    if !node.exists() {
        bail!("{} not found: build it next to shoalctl (cargo build --release --bins)", node.display());
    }
    Ok(node)
}

fn check_port_free(port: u16) -> Result<()> {
    TcpListener::bind(("127.0.0.1", port)).map(drop).with_context(|| format!("port {port} is in use; choose another --base-port"))
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn start(args: &PlaygroundArgs) -> Result<Playground> {
    if args.nodes == 0 || args.nodes > 32 {
        bail!("--nodes must be 1..=32");
    }
    if !(1..=3600).contains(&args.ready_timeout_secs) {
        bail!("--ready-timeout-secs must be 1..=3600");
    }
    let last_port = args.base_port as usize + 2 * args.nodes;
    if last_port > u16::MAX as usize {
        bail!("--base-port {} leaves no room for {} nodes", args.base_port, args.nodes);
    }
    let binary = node_binary()?;
    let (root, temp) = match &args.data_dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::Builder::new().prefix("shoal-playground-").tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let ports: Vec<(u16, u16)> = (0..args.nodes).map(|i| (args.base_port + 2 * i as u16, args.base_port + 2 * i as u16 + 1)).collect();
    for (g, s) in &ports {
        check_port_free(*g)?;
        check_port_free(*s)?;
    }
    let initial: Vec<String> = ports.iter().enumerate().map(|(i, (g, _))| format!("n{}=127.0.0.1:{g}", i + 1)).collect();
    let mut pg = Playground { nodes: Vec::new(), _temp: temp };
    for (i, (g, s)) in ports.iter().enumerate() {
        let name = format!("n{}", i + 1);
        let log = root.join(format!("{name}.log"));
        let log_file =
            std::fs::OpenOptions::new().create(true).append(true).open(&log).with_context(|| format!("opening {}", log.display()))?;
        let mut cmd = Command::new(&binary);
        cmd.arg("--name")
            .arg(&name)
            .arg("--data-dir")
            .arg(root.join(&name))
            .arg("--listen-addr")
            .arg(format!("127.0.0.1:{g}"))
            .arg("--status-addr")
            .arg(format!("127.0.0.1:{s}"))
            .arg("--initial-cluster")
            .arg(initial.join(","))
            .args(&args.node_args)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        process::die_with_parent(&mut cmd);
        let child = cmd.spawn().with_context(|| format!("starting {}", binary.display()))?;
        pg.nodes.push(Node { name, grpc: format!("127.0.0.1:{g}"), status: format!("127.0.0.1:{s}"), log, child });
    }
    Ok(pg)
}

/// Waits until every node answers with a leader for every region and a
/// linearizable read through the client succeeds.
async fn wait_ready(pg: &mut Playground, timeout: Duration) -> Result<()> {
    let endpoints: Vec<String> = pg.nodes.iter().map(|n| n.grpc.clone()).collect();
    let client = Client::new(&endpoints, ClientOptions { deadline: Duration::from_secs(2), ..Default::default() })?;
    let deadline = Instant::now() + timeout;
    loop {
        for n in &mut pg.nodes {
            if let Ok(Some(status)) = n.child.try_wait() {
                bail!("node {} exited ({status}) while starting; its log ends with:\n{}", n.name, tail(&n.log, 20));
            }
        }
        let mut all_led = true;
        for ep in &endpoints {
            match client.status_of(ep).await {
                Ok(s) if !s.regions.is_empty() && s.regions.iter().all(|r| r.leader_store_id != 0) => {}
                _ => all_led = false,
            }
        }
        // A linearizable read needs an elected leader that heard from a quorum.
        if all_led && client.get("default", b"playground-probe").await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the cluster did not become ready within {timeout:?}; see the logs in {}",
                pg.nodes[0].log.parent().map(|p| p.display().to_string()).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

pub async fn run(args: PlaygroundArgs) -> Result<ExitCode> {
    let mut pg = start(&args)?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        res = wait_ready(&mut pg, Duration::from_secs(args.ready_timeout_secs)) => res?,
        _ = term.recv() => return Ok(ExitCode::SUCCESS),
        _ = int.recv() => return Ok(ExitCode::SUCCESS),
    }
    let endpoints: Vec<&str> = pg.nodes.iter().map(|n| n.grpc.as_str()).collect();
    println!("ready: endpoints={}", endpoints.join(","));
    for n in &pg.nodes {
        println!("metrics: http://{}/metrics ({})", n.status, n.name);
    }
    println!("logs: {}", pg.nodes[0].log.parent().map(|p| p.display().to_string()).unwrap_or_default());
    println!("try: shoalctl --endpoints {} put hello world", endpoints.join(","));
    println!("press Ctrl-C to stop");
    let mut check = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = check.tick() => {
                for n in &mut pg.nodes {
                    if let Ok(Some(status)) = n.child.try_wait() {
                        bail!("node {} exited ({status}); its log ends with:\n{}", n.name, tail(&n.log, 20));
                    }
                }
            }
        }
    }
    eprintln!("stopping {} nodes", pg.nodes.len());
    drop(pg);
    Ok(ExitCode::SUCCESS)
}
