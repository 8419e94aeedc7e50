//! `shoalctl` as a user runs it: put/get/delete/scan/status against real nodes,
//! exit codes and output formats, `shoalctl bench load` and `bench run` (against
//! Shoal, and with `--target etcd` against a real etcd member), and
//! `shoalctl playground` from start to Ctrl-C, surviving a node's death.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use shoal_tests::{Cluster, bin_dir, free_ports, send_signal, try_http_get, wait_for, which};

fn shoalctl(endpoints: &[String], args: &[&str]) -> Output {
    Command::new(bin_dir().join("shoalctl"))
        .arg("--endpoints")
        .arg(endpoints.join(","))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run shoalctl")
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_delete_scan_and_status() {
    let cluster = Cluster::start(3, &["--column-family", "users"]).await;
    let eps = cluster.endpoints();

    for (k, v) in [("b", "2"), ("a", "1"), ("c", "3")] {
        let o = shoalctl(&eps, &["put", k, v]);
        assert!(o.status.success(), "put: {}", String::from_utf8_lossy(&o.stderr));
    }
    assert!(shoalctl(&eps, &["put", "a", "in-users", "--cf", "users"]).status.success());

    let o = shoalctl(&eps, &["get", "a"]);
    assert_eq!((o.status.code(), stdout(&o).as_str()), (Some(0), "1\n"));
    let o = shoalctl(&eps, &["get", "a", "--cf", "users"]);
    assert_eq!(stdout(&o), "in-users\n");

    let o = shoalctl(&eps, &["get", "missing"]);
    assert_eq!(o.status.code(), Some(1), "a missing key exits 1");
    assert_eq!(stdout(&o), "", "and prints nothing on stdout");
    assert!(!o.stderr.is_empty(), "but says so on stderr");

    let o = shoalctl(&eps, &["scan"]);
    assert_eq!(stdout(&o), "a\t1\nb\t2\nc\t3\n");
    let o = shoalctl(&eps, &["scan", "--start", "b", "--end", "c"]);
    assert_eq!(stdout(&o), "b\t2\n");
    let o = shoalctl(&eps, &["scan", "--limit", "2"]);
    assert_eq!(stdout(&o), "a\t1\nb\t2\n");

    let o = shoalctl(&eps, &["--output", "json", "scan"]);
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).expect("scan json");
    assert_eq!(rows[2]["key"], "c");
    assert_eq!(rows[2]["value"], "3");

    // Binary keys and values through --hex.
    assert!(shoalctl(&eps, &["--hex", "put", "00ff", "deadbeef"]).status.success());
    let o = shoalctl(&eps, &["--hex", "get", "00ff"]);
    assert_eq!(stdout(&o), "deadbeef\n");
    let o = shoalctl(&eps, &["--hex", "get", "zz"]);
    assert_eq!(o.status.code(), Some(2), "bad hex is an error");

    assert!(shoalctl(&eps, &["delete", "b"]).status.success());
    assert_eq!(shoalctl(&eps, &["get", "b"]).status.code(), Some(1));

    let o = shoalctl(&eps, &["put", "k", "v", "--cf", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown column family"), "{}", String::from_utf8_lossy(&o.stderr));

    let o = shoalctl(&eps, &["--output", "json", "status"]);
    let status: serde_json::Value = serde_json::from_slice(&o.stdout).expect("status json");
    assert_eq!(status["stores"].as_array().map(Vec::len), Some(3));
    let leaders: u64 = status["stores"].as_array().unwrap().iter().map(|s| s["leader_count"].as_u64().unwrap_or(0)).sum();
    assert_eq!(leaders, 2, "exactly one leader for each Raft group: meta and the first data region");
    let o = shoalctl(&eps, &["status"]);
    assert!(stdout(&o).contains("REGION"), "{}", stdout(&o));
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "exit {:?}: {}", o.status.code(), String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(o)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_load_then_run_workloads() {
    let cluster = Cluster::start(3, &[]).await;
    let eps = cluster.endpoints();
    let common = ["--keys", "300", "--value-size", "64", "--concurrency", "4"];
    let bench = |args: &[&str]| shoalctl(&eps, &[&["--output", "json", "bench"], args, &common[..]].concat());

    let load = json(&bench(&["load"]));
    assert_eq!(load["count"], 300, "{load}");
    // Every key is there, in key order, with a value of the asked size.
    let pairs = cluster.client().scan("default", b"bench/", b"bench0", 0).await.expect("scan");
    assert_eq!(pairs.len(), 300);
    assert_eq!(pairs[299].0, b"bench/0000000299");
    assert!(pairs.iter().all(|(_, v)| v.len() == 64));

    for (workload, ops) in [("a", &["read", "update"][..]), ("c", &["read"]), ("e", &["scan", "insert"])] {
        let r = json(&bench(&["run", "--workload", workload, "--duration", "1", "--scan-length", "5"]));
        assert_eq!(
            (r["workload"].as_str(), r["errors"].as_u64(), r["reads_not_found"].as_u64()),
            (Some(workload), Some(0), Some(0)),
            "{r}"
        );
        assert_eq!(r["distribution"], "zipfian", "{r}");
        for op in ops {
            assert!(r[op]["ops"].as_u64().is_some_and(|n| n > 0), "workload {workload} did no {op}: {r}");
        }
        if workload == "e" {
            let rows = r["scan"]["rows_per_scan"].as_f64().expect("rows_per_scan");
            assert!((1.0..=5.0).contains(&rows), "{r}");
        } else {
            assert!(r.get("scan").is_none() && r.get("insert").is_none(), "{r}");
        }
    }
    let r = json(&bench(&["run", "--workload", "custom", "--read-ratio", "0", "--distribution", "uniform", "--duration", "1"]));
    assert!(r["update"]["ops"].as_u64().is_some_and(|n| n > 0) && r.get("read").is_none(), "{r}");

    let o = bench(&["run", "--workload", "a", "--read-ratio", "0.5", "--duration", "1"]);
    assert_eq!(o.status.code(), Some(2), "--read-ratio is for custom only");
    let o = bench(&["load", "--cf", "nope"]);
    assert_eq!(o.status.code(), Some(2), "a failed load write exits 2");
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope"), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The comparison harness's other side: the same bench drives a real etcd
/// member (Debian's `etcd-server`, installed by `scripts/setup.sh`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_drives_etcd_with_the_same_workloads() {
    let etcd = which("etcd").expect("etcd is not installed: run scripts/setup.sh");
    let dir = tempfile::tempdir().expect("tempdir");
    let ports = free_ports(2);
    let client_url = format!("http://127.0.0.1:{}", ports[0]);
    let peer_url = format!("http://127.0.0.1:{}", ports[1]);
    let _etcd = KillOnDrop(
        Command::new(etcd)
            .args(["--name", "bench", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .arg(format!("--initial-cluster=bench={peer_url}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("etcd.log")).expect("log file"))
            .spawn()
            .expect("start etcd"),
    );
    let addr = format!("127.0.0.1:{}", ports[0]);
    wait_for(Duration::from_secs(60), "etcd /health", || async {
        let healthy =
            try_http_get(&addr, "/health", Duration::from_secs(2)).await.is_ok_and(|(code, body)| code == 200 && body.contains("true"));
        healthy.then_some(())
    })
    .await;
    let eps = vec![addr.clone()];
    let common = ["--target", "etcd", "--keys", "200", "--value-size", "64", "--concurrency", "4"];
    let bench = |args: &[&str]| shoalctl(&eps, &[&["--output", "json", "bench"], args, &common[..]].concat());

    let load = json(&bench(&["load"]));
    assert_eq!((load["count"].as_u64(), load["target"].as_str()), (Some(200), Some("etcd")), "{load}");
    for (workload, ops) in [("a", &["read", "update"][..]), ("e", &["scan", "insert"])] {
        let r = json(&bench(&["run", "--workload", workload, "--duration", "1", "--scan-length", "5"]));
        assert_eq!((r["target"].as_str(), r["errors"].as_u64(), r["reads_not_found"].as_u64()), (Some("etcd"), Some(0), Some(0)), "{r}");
        for op in ops {
            assert!(r[op]["ops"].as_u64().is_some_and(|n| n > 0), "workload {workload} did no {op}: {r}");
        }
        if workload == "e" {
            // A scan from a loaded key reads 1..=5 of the keys after it.
            let rows = r["scan"]["rows_per_scan"].as_f64().expect("rows_per_scan");
            assert!((1.0..=5.0).contains(&rows), "{r}");
        }
    }
    let o = bench(&["load", "--cf", "other"]);
    assert_eq!(o.status.code(), Some(2), "etcd has no column families");
    assert!(String::from_utf8_lossy(&o.stderr).contains("column families"), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A running `shoalctl playground` of three nodes, and its output lines.
struct Playground {
    child: KillOnDrop,
    lines: std::sync::mpsc::Receiver<String>,
    base: u16,
    _dir: tempfile::TempDir,
}

impl Playground {
    fn start(extra: &[&str]) -> Playground {
        // Six consecutive free ports for three nodes.
        let base = loop {
            let p = free_ports(1)[0];
            if p < 60000 && (p..p + 6).all(|q| std::net::TcpListener::bind(("127.0.0.1", q)).is_ok()) {
                break p;
            }
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let child = Command::new(bin_dir().join("shoalctl"))
            .args(["playground", "--nodes", "3", "--base-port", &base.to_string(), "--data-dir"])
            .arg(dir.path())
            .args(["--node-arg=--column-family=users"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start playground");
        // Killed on drop if the test fails early; its nodes die with it (PDEATHSIG).
        let mut child = KillOnDrop(child);
        // Read its output on a thread, so that waiting for a line has a deadline.
        let (tx, lines) = std::sync::mpsc::channel();
        let out = child.0.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Playground { child, lines, base, _dir: dir }
    }

    /// The next output line that starts with `prefix` (the rest of it), within 90 s.
    fn line_starting(&self, prefix: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let line = self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("no playground line starting with {prefix:?} before the deadline"));
            if let Some(rest) = line.strip_prefix(prefix) {
                return rest.to_string();
            }
        }
    }

    /// SIGTERM; asserts it exits 0 and frees every node's ports.
    fn stop(mut self) {
        send_signal(&self.child.0, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = self.child.0.try_wait().expect("wait") {
                break s;
            }
            assert!(Instant::now() < deadline, "playground did not stop");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "playground exits 0 on SIGTERM");
        // Its nodes are gone: their ports are free again.
        for q in self.base..self.base + 6 {
            assert!(std::net::TcpListener::bind(("127.0.0.1", q)).is_ok(), "port {q} released");
        }
    }
}

/// `node: n2 pid=123 grpc=127.0.0.1:20162` → ("n2", 123, "127.0.0.1:20162").
fn node_line(rest: &str) -> (String, i32, String) {
    let mut it = rest.split_whitespace();
    let name = it.next().expect("name").to_string();
    let pid = it.next().and_then(|p| p.strip_prefix("pid=")).and_then(|p| p.parse().ok()).expect("pid");
    let grpc = it.next().and_then(|g| g.strip_prefix("grpc=")).expect("grpc").to_string();
    (name, pid, grpc)
}

fn kill9(pid: i32) {
    #[allow(unsafe_code)]
    // SAFETY: kill(2) on a pid of a process this test started; no memory is shared.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

#[test]
fn playground_starts_serves_and_stops_on_sigterm() {
    let pg = Playground::start(&[]);
    let endpoints = pg.line_starting("ready: endpoints=");
    assert_eq!(endpoints.split(',').count(), 3);
    let metrics_line = pg.line_starting("metrics: ");
    assert!(metrics_line.starts_with("http://127.0.0.1:"), "{metrics_line}");

    let eps = vec![endpoints];
    assert!(shoalctl(&eps, &["put", "hello", "world", "--cf", "users"]).status.success());
    assert_eq!(stdout(&shoalctl(&eps, &["get", "hello", "--cf", "users"])), "world\n");
    assert_eq!(stdout(&shoalctl(&eps, &["scan", "--cf", "users"])), "hello\tworld\n");
    pg.stop();
}

/// A newcomer's first experiment: kill a node and watch the cluster fail
/// over. The playground reports the death, the others go on serving, and
/// with `--restart` the node comes back on its data and serves again.
#[test]
fn playground_survives_a_node_killed_and_restarts_it() {
    let pg = Playground::start(&["--restart"]);
    let all = vec![pg.line_starting("ready: endpoints=")];
    let nodes: Vec<(String, i32, String)> = (0..3).map(|_| node_line(&pg.line_starting("node: "))).collect();
    assert!(shoalctl(&all, &["put", "before", "1", "--cf", "users"]).status.success());

    let (victim, pid, victim_grpc) = nodes[2].clone();
    kill9(pid);
    let exited = pg.line_starting("exited: ");
    assert!(exited.starts_with(&format!("{victim} (")), "{exited}");
    // The two others serve writes and linearizable reads meanwhile.
    let others: Vec<String> = vec![nodes[..2].iter().map(|n| n.2.clone()).collect::<Vec<_>>().join(",")];
    let deadline = Instant::now() + Duration::from_secs(60);
    while !shoalctl(&others, &["put", "during", "2", "--cf", "users"]).status.success() {
        assert!(Instant::now() < deadline, "the two surviving nodes never took a write");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(stdout(&shoalctl(&others, &["get", "before", "--cf", "users"])), "1\n");

    let restarted = pg.line_starting("restarted: ");
    let (name, new_pid, _) = node_line(&format!("{restarted} grpc=-"));
    assert_eq!(name, victim);
    assert_ne!(new_pid, pid);
    // The restarted node serves again (the client reaches the cluster through it alone).
    let through_victim = vec![victim_grpc];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let o = shoalctl(&through_victim, &["get", "during", "--cf", "users"]);
        if o.status.success() {
            assert_eq!(stdout(&o), "2\n");
            break;
        }
        assert!(Instant::now() < deadline, "the restarted node never served: {}", String::from_utf8_lossy(&o.stderr));
        std::thread::sleep(Duration::from_millis(200));
    }
    pg.stop();
}

/// `status --watch`: frame after frame of the stores as meta knows them; under
/// load, the store that leads the only data region shows a request rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_watch_shows_stores_and_request_rates() {
    let cluster = Cluster::start(3, &["--heartbeat-interval-ms", "300"]).await;
    let eps = cluster.endpoints();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let (client, stop) = (cluster.client(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = client.put("default", format!("w{}", i % 100).as_bytes(), b"v").await;
                i += 1;
            }
        })
    };
    let watch = {
        let eps = eps.clone();
        tokio::task::spawn_blocking(move || shoalctl(&eps, &["status", "--watch", "--interval", "1", "--count", "4"]))
    };
    let o = watch.await.expect("shoalctl");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = load.await;
    let text = stdout(&o);
    assert!(o.status.success(), "status --watch: {text}{}", String::from_utf8_lossy(&o.stderr));
    let frames: Vec<&str> = text.split("stores, as the meta leader knows them").skip(1).collect();
    assert_eq!(frames.len(), 4, "four frames:\n{text}");
    let last: Vec<Vec<&str>> = frames[3].lines().skip(2).filter(|l| !l.trim().is_empty()).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(last.len(), 3, "three stores in the last frame:\n{}", frames[3]);
    assert!(last.iter().all(|row| row[3] == "up"), "every store up:\n{}", frames[3]);
    // REQ/S is the last column (USED and AVAILABLE print as "4.0 MiB", two words).
    let rates: Vec<f64> = last.iter().filter_map(|row| row.last()?.parse().ok()).collect();
    assert_eq!(rates.len(), 3, "every store has a rate after three heartbeats:\n{}", frames[3]);
    assert!(rates.iter().any(|r| *r > 10.0), "the region leader's store serves the writes:\n{}", frames[3]);

    // JSON: one object per frame, with the counter behind the rate.
    let o = shoalctl(&eps, &["--output", "json", "status", "--watch", "--interval", "0.5", "--count", "2"]);
    let lines: Vec<serde_json::Value> = stdout(&o).lines().map(|l| serde_json::from_str(l).expect("a JSON frame")).collect();
    assert_eq!(lines.len(), 2, "{}", stdout(&o));
    assert!(lines[1]["stores"].as_array().expect("stores").iter().all(|s| s["requests_total"].as_u64().is_some()));
    let o = shoalctl(&eps, &["status", "--interval", "1"]);
    assert!(!o.status.success(), "--interval without --watch is refused");
}

/// `playground --tls`: mutual TLS with throwaway certificates, a `tls:` line
/// right after `ready:` naming the CLI's files, which `--cacert/--cert/--key`
/// (or `SHOAL_CACERT`, …) take; plaintext is refused; the CLI's certificate may
/// make Admin calls.
#[test]
fn playground_tls_serves_the_cli_with_its_certificates_and_refuses_plaintext() {
    let pg = Playground::start(&["--tls"]);
    let eps = vec![pg.line_starting("ready: endpoints=")];
    let tls_line = pg.line_starting("tls: ");
    let files: std::collections::BTreeMap<&str, &str> = tls_line.split(' ').filter_map(|kv| kv.split_once('=')).collect();
    let (ca, cert, key) = (files["ca"], files["cert"], files["key"]);
    for f in [ca, cert, key] {
        assert!(std::path::Path::new(f).is_file(), "{f} from {tls_line:?}");
    }
    let tls = ["--cacert", ca, "--cert", cert, "--key", key];
    let put = shoalctl(&eps, &[&tls[..], &["put", "secure", "yes"]].concat());
    assert!(put.status.success(), "put over TLS: {}", String::from_utf8_lossy(&put.stderr));
    let get = Command::new(bin_dir().join("shoalctl"))
        .args(["--endpoints", &eps[0], "get", "secure"])
        .envs([("SHOAL_CACERT", ca), ("SHOAL_CERT", cert), ("SHOAL_KEY", key)])
        .output()
        .expect("shoalctl");
    assert_eq!(stdout(&get), "yes\n", "the same files from the environment");
    let status = shoalctl(&eps, &[&tls[..], &["store", "status", "1"]].concat());
    assert!(status.status.success(), "an Admin call with the CLI's certificate: {}", String::from_utf8_lossy(&status.stderr));
    let plain = shoalctl(&eps, &["get", "secure"]);
    assert_eq!(plain.status.code(), Some(2), "plaintext is refused");
    let no_cert = shoalctl(&eps, &["--cacert", ca, "get", "secure"]);
    assert_eq!(no_cert.status.code(), Some(2), "a client without a certificate is refused");
    pg.stop();
}
