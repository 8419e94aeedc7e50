//! `shoalctl playground`: a local cluster of real `shoal-node` processes.
//!
//! Starts N nodes on 127.0.0.1 (gRPC on BASE+2i, status on BASE+2i+1), each with
//! its own data directory and log file, waits until every node reports a leader
//! for every region and a linearizable read goes through, prints `ready:
//! endpoints=...`, the metrics URLs and each node's pid, then stays in the
//! foreground until Ctrl-C or SIGTERM, when it stops the nodes gracefully.
//!
//! A node that dies meanwhile (kill it to watch the cluster fail over) is
//! reported with the end of its log, and the others go on serving. With
//! `--restart` it is started again on its data directory, after a pause that
//! doubles while it keeps dying (1 s up to 30 s).
//!
//! With `--tls`, [`certs::create`] makes a throwaway CA and certificates; the
//! nodes run mutual TLS with Admin calls allowed to the CLI's certificate, and
//! a `tls: ca=... cert=... key=...` line after `ready:` names the CLI's files.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use shoal_client::{Client, ClientOptions, ClientTls};
use tokio::signal::unix::{SignalKind, signal};

use crate::{certs, process};

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
    /// Start a node that dies again, on its data directory.
    #[arg(long)]
    restart: bool,
    /// Mutual TLS everywhere: a throwaway CA and certificates (in the data
    /// directory's `tls/`) for the nodes and for shoalctl, whose files are
    /// printed on a `tls:` line after `ready:`.
    #[arg(long)]
    tls: bool,
}

struct Node {
    name: String,
    grpc: String,
    status: String,
    log: PathBuf,
    /// `shoal-node`'s arguments, to start it again.
    args: Vec<std::ffi::OsString>,
    /// `None` while the node is down.
    child: Option<Child>,
    /// When to start it again (with `--restart`), and the pause after that.
    restart_at: Option<Instant>,
    backoff: Duration,
}

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A node that served this long before dying starts again after the first pause.
const STABLE_FOR: Duration = Duration::from_secs(60);

/// Everything the playground started; stops the nodes when dropped.
struct Playground {
    nodes: Vec<Node>,
    _temp: Option<tempfile::TempDir>,
    /// With `--tls`: the certificates.
    certs: Option<certs::PlaygroundCerts>,
    binary: PathBuf,
}

impl Drop for Playground {
    /// SIGTERM to every node at once, then one shared 10 s grace before SIGKILL.
    fn drop(&mut self) {
        for child in self.nodes.iter().filter_map(|n| n.child.as_ref()) {
            process::signal(child, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for child in self.nodes.iter_mut().filter_map(|n| n.child.as_mut()) {
            process::stop(child, deadline.saturating_duration_since(Instant::now()));
        }
    }
}

/// Starts `shoal-node` with `args`, its output appended to `log`.
fn spawn_node(binary: &Path, args: &[std::ffi::OsString], log: &Path) -> Result<Child> {
    let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log).with_context(|| format!("opening {}", log.display()))?;
    let mut cmd = Command::new(binary);
    cmd.args(args).stdin(Stdio::null()).stdout(log_file.try_clone()?).stderr(log_file);
    process::die_with_parent(&mut cmd);
    cmd.spawn().with_context(|| format!("starting {}", binary.display()))
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
    let certs = if args.tls { Some(certs::create(&root.join("tls"))?) } else { None };
    let mut tls_args: Vec<std::ffi::OsString> = Vec::new();
    if let Some(c) = &certs {
        for (flag, path) in [("--cert-file", &c.node_cert), ("--key-file", &c.node_key), ("--trusted-ca-file", &c.ca)] {
            tls_args.push(flag.into());
            tls_args.push(path.into());
        }
        tls_args.extend(["--client-cert-auth".into(), "--admin-allowed-cn".into(), certs::CLI_CN.into()]);
    }
    let mut pg = Playground { nodes: Vec::new(), _temp: temp, certs, binary: binary.clone() };
    for (i, (g, s)) in ports.iter().enumerate() {
        let name = format!("n{}", i + 1);
        let log = root.join(format!("{name}.log"));
        let mut node_args: Vec<std::ffi::OsString> = vec![
            "--name".into(),
            name.clone().into(),
            "--data-dir".into(),
            root.join(&name).into(),
            "--listen-addr".into(),
            format!("127.0.0.1:{g}").into(),
            "--status-addr".into(),
            format!("127.0.0.1:{s}").into(),
            "--initial-cluster".into(),
            initial.join(",").into(),
        ];
        node_args.extend(tls_args.iter().cloned());
        node_args.extend(args.node_args.iter().map(Into::into));
        let child = spawn_node(&binary, &node_args, &log)?;
        pg.nodes.push(Node {
            name,
            grpc: format!("127.0.0.1:{g}"),
            status: format!("127.0.0.1:{s}"),
            log,
            args: node_args,
            child: Some(child),
            restart_at: None,
            backoff: FIRST_BACKOFF,
        });
    }
    Ok(pg)
}

impl Playground {
    /// Reports nodes that exited since the last call and, with `restart`,
    /// starts those whose pause is over. Never fails: one node's death or a
    /// failed restart must not take the others down.
    fn watch(&mut self, restart: bool, started: &mut [Instant]) {
        for (n, started_at) in self.nodes.iter_mut().zip(started.iter_mut()) {
            if let Some(child) = n.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                n.child = None;
                println!("exited: {} ({status}); the others go on serving. Its log ends with:\n{}", n.name, tail(&n.log, 20));
                if restart {
                    if started_at.elapsed() >= STABLE_FOR {
                        n.backoff = FIRST_BACKOFF;
                    }
                    n.restart_at = Some(Instant::now() + n.backoff);
                    println!("restarting {} in {:?}", n.name, n.backoff);
                    n.backoff = (n.backoff * 2).min(MAX_BACKOFF);
                }
            }
            if n.child.is_none() && n.restart_at.is_some_and(|at| Instant::now() >= at) {
                n.restart_at = None;
                match spawn_node(&self.binary, &n.args, &n.log) {
                    Ok(child) => {
                        println!("restarted: {} pid={}", n.name, child.id());
                        n.child = Some(child);
                        *started_at = Instant::now();
                    }
                    Err(e) => {
                        println!("cannot restart {}: {e:#}; trying again in {:?}", n.name, n.backoff);
                        n.restart_at = Some(Instant::now() + n.backoff);
                    }
                }
            }
        }
    }
}

/// Waits until every node answers with a leader for every region and a
/// linearizable read through the client succeeds.
async fn wait_ready(pg: &mut Playground, timeout: Duration) -> Result<()> {
    let endpoints: Vec<String> = pg.nodes.iter().map(|n| n.grpc.clone()).collect();
    let tls = match &pg.certs {
        Some(c) => Some(ClientTls::from_files(&c.ca, Some(&c.cli_cert), Some(&c.cli_key))?),
        None => None,
    };
    let client = Client::new(&endpoints, ClientOptions { deadline: Duration::from_secs(2), tls, ..Default::default() })?;
    let deadline = Instant::now() + timeout;
    loop {
        for n in &mut pg.nodes {
            if let Some(Ok(Some(status))) = n.child.as_mut().map(Child::try_wait) {
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
    if let Some(c) = &pg.certs {
        println!("tls: ca={} cert={} key={}", c.ca.display(), c.cli_cert.display(), c.cli_key.display());
    }
    for n in &pg.nodes {
        println!("metrics: http://{}/metrics ({})", n.status, n.name);
    }
    for n in &pg.nodes {
        println!("node: {} pid={} grpc={}", n.name, n.child.as_ref().map_or(0, Child::id), n.grpc);
    }
    println!("logs: {}", pg.nodes[0].log.parent().map(|p| p.display().to_string()).unwrap_or_default());
    match &pg.certs {
        None => println!("try: shoalctl --endpoints {} put hello world", endpoints.join(",")),
        Some(c) => println!(
            "try: shoalctl --endpoints {} --cacert {} --cert {} --key {} put hello world",
            endpoints.join(","),
            c.ca.display(),
            c.cli_cert.display(),
            c.cli_key.display()
        ),
    }
    println!("press Ctrl-C to stop");
    let mut check = tokio::time::interval(Duration::from_millis(200));
    let mut started = vec![Instant::now(); pg.nodes.len()];
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = check.tick() => pg.watch(args.restart, &mut started),
        }
    }
    eprintln!("stopping {} nodes", pg.nodes.len());
    drop(pg);
    Ok(ExitCode::SUCCESS)
}
