//! `shoalctl` as a user runs it: put/get/delete/scan/status against real nodes,
//! exit codes and output formats, `shoalctl bench load` and `bench run`, and
//! `shoalctl playground` from start to Ctrl-C.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use shoal_tests::{Cluster, bin_dir, free_ports, send_signal};

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

#[test]
fn playground_starts_serves_and_stops_on_sigterm() {
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
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start playground");
    // Killed on drop if the test fails early; its nodes die with it (PDEATHSIG).
    let mut child = KillOnDrop(child);
    // Read its output on a thread, so that waiting for a line has a deadline.
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.0.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(90);
    let next_line = || rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).expect("playground output before the deadline");
    let endpoints = loop {
        if let Some(eps) = next_line().strip_prefix("ready: endpoints=") {
            break eps.to_string();
        }
    };
    assert_eq!(endpoints.split(',').count(), 3);
    let metrics_line = next_line();
    assert!(metrics_line.starts_with("metrics: http://127.0.0.1:"), "{metrics_line}");

    let eps = vec![endpoints];
    assert!(shoalctl(&eps, &["put", "hello", "world", "--cf", "users"]).status.success());
    assert_eq!(stdout(&shoalctl(&eps, &["get", "hello", "--cf", "users"])), "world\n");
    assert_eq!(stdout(&shoalctl(&eps, &["scan", "--cf", "users"])), "hello\tworld\n");

    send_signal(&child.0, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.0.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "playground did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "playground exits 0 on SIGTERM");
    // Its nodes are gone: their ports are free again.
    for q in base..base + 6 {
        assert!(std::net::TcpListener::bind(("127.0.0.1", q)).is_ok(), "port {q} released");
    }
}
