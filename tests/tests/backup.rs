//! Backups end to end, with real processes and real storage: `shoalctl backup
//! create` of a multi-region cluster under write load, restored by `shoalctl
//! restore` into a new cluster, holds every write acknowledged before fencing
//! began and none sent after the last fence, and each writer's acknowledged
//! writes (which jump between regions) as a prefix: a cut across regions,
//! not a blend; a damaged, a partial and a
//! file-less backup are refused before anything is written, and a restore
//! into a cluster that holds keys is refused; the same backup and restore go
//! through S3 (a real S3-compatible server, moto, on loopback).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use shoal_client::{Client, Mutation, mutation};
use shoal_tests::ctl::shoalctl_with_env;
use shoal_tests::s3::S3Server;
use shoal_tests::{Cluster, shoalctl_with_timeout, wait_until};

const CTL_TIMEOUT: Duration = Duration::from_secs(180);
const NODE_ARGS: &[&str] = &["--region-split-size", "262144", "--heartbeat-interval-ms", "300"];

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as u64
}

fn base_key(i: usize) -> Vec<u8> {
    format!("base/{i:06}").into_bytes()
}

fn base_value(i: usize) -> Vec<u8> {
    format!("value-{i:06}-").repeat(16).into_bytes()
}

/// Writes `n` keys of about 200 bytes, so that the cluster splits into regions.
async fn load(client: &Client, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let batch: Vec<Mutation> = chunk
            .iter()
            .map(|&i| Mutation { op: mutation::Op::Put as i32, cf: "default".into(), key: base_key(i), value: base_value(i) })
            .collect();
        client.batch_write(batch).await.expect("load");
    }
}

async fn wait_regions(client: &Client, at_least: usize) {
    wait_until(Duration::from_secs(60), Duration::from_millis(200), "the cluster split into regions", || async {
        let n = client.scan_regions(b"", b"", 0).await.map_err(|e| e.to_string())?.len();
        if n >= at_least { Ok(n) } else { Err(format!("{n} regions")) }
    })
    .await;
}

/// Every pair of `[prefix, prefix + 0xff)`.
async fn scan_prefix(client: &Client, prefix: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut end = prefix.as_bytes().to_vec();
    end.push(0xff);
    client.scan("default", prefix.as_bytes(), &end, 0).await.expect("scan").into_iter().collect()
}

/// One write of a live writer.
#[derive(Clone, Debug)]
struct Write {
    key: Vec<u8>,
    value: Vec<u8>,
    sent_ms: u64,
    /// `None`: it failed (its outcome is unknown).
    acked_ms: Option<u64>,
}

/// Where writer `w`'s write `seq` goes: among the loaded keys, at a slot that
/// jumps across the key space, so that one writer's consecutive writes land
/// in different regions and a per-writer prefix checks a cross-region cut.
fn live_key(w: usize, seq: u64) -> Vec<u8> {
    let slot = (seq * 7919 + w as u64 * 3331) % 20_000;
    format!("base/{slot:06}/live/{w}/{seq:08}").into_bytes()
}

/// Writer `w` puts [`live_key`]`(w, 0)`, `(w, 1)`... one at a time, each key once.
fn start_writers(
    client: Arc<Client>,
    writers: usize,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<Vec<Write>>> {
    (0..writers)
        .map(|w| {
            let (client, stop, done) = (client.clone(), stop.clone(), done.clone());
            tokio::spawn(async move {
                let mut log = Vec::new();
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = live_key(w, seq);
                    let value = format!("w{w}-s{seq}").repeat(8).into_bytes();
                    let sent_ms = now_ms();
                    let acked_ms = client.put("default", &key, &value).await.ok().map(|()| now_ms());
                    log.push(Write { key, value, sent_ms, acked_ms });
                    done.fetch_add(1, Ordering::Relaxed);
                    seq += 1;
                }
                log
            })
        })
        .collect()
}

async fn wait_writes(done: &AtomicU64, at_least: u64) {
    wait_until(Duration::from_secs(60), Duration::from_millis(50), "the writers to write", || async {
        let n = done.load(Ordering::Relaxed);
        if n >= at_least { Ok(()) } else { Err(format!("{n} writes")) }
    })
    .await;
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn ssts(backup: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for region in std::fs::read_dir(backup.join("regions")).expect("regions dir") {
        for f in std::fs::read_dir(region.expect("entry").path()).expect("region dir") {
            out.push(f.expect("entry").path());
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_write_load_restores_every_write_before_its_point_and_none_after() {
    let source = Cluster::start(3, NODE_ARGS).await;
    let client = Arc::new(source.client());
    load(&client, 20_000).await;
    wait_regions(&client, 4).await;

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let writers = start_writers(client.clone(), 4, stop.clone(), done.clone());
    wait_writes(&done, 200).await;

    let dir = tempfile::tempdir().expect("temp dir");
    let location = format!("file://{}/backups", dir.path().display());
    let out = shoalctl_with_timeout(
        &source.endpoints(),
        &["--output", "json", "backup", "create", "--destination", &location, "--name", "b1"],
        CTL_TIMEOUT,
    )
    .await;
    let created = out.expect_json();
    eprintln!("backup: {created}");
    let after_backup = done.load(Ordering::Relaxed);
    wait_writes(&done, after_backup + 200).await;
    stop.store(true, Ordering::Relaxed);
    let mut log: Vec<Vec<Write>> = Vec::new();
    for w in writers {
        log.push(w.await.expect("writer"));
    }
    let began = created["fencing_began_unix_ms"].as_u64().expect("fencing began");
    let fenced = created["all_fenced_unix_ms"].as_u64().expect("all fenced");
    let keys = created["keys"].as_u64().expect("keys");
    assert!(created["regions"].as_u64().expect("regions") >= 4, "{created}");
    assert!(fenced >= began && keys > 20_000, "{created}");
    let failed: usize = log.iter().flatten().filter(|w| w.acked_ms.is_none()).count();
    assert_eq!(failed, 0, "writes failed while the regions were fenced (the client retries ServerIsBusy)");
    assert!(log.iter().flatten().any(|w| w.acked_ms.is_some_and(|a| a < began)), "no write was acknowledged before the backup");
    assert!(log.iter().flatten().any(|w| w.sent_ms > fenced), "no write was sent after the backup point");

    // describe agrees with create.
    let backup_url = format!("{location}/b1");
    let described = shoalctl_with_timeout(&source.endpoints(), &["--output", "json", "backup", "describe", &backup_url], CTL_TIMEOUT)
        .await
        .expect_json();
    assert_eq!(described["keys"], created["keys"]);
    assert_eq!(described["all_fenced_unix_ms"], created["all_fenced_unix_ms"]);

    // Restore into a new cluster.
    let target = Cluster::start(3, NODE_ARGS).await;
    let restored = shoalctl_with_timeout(&target.endpoints(), &["--output", "json", "restore", "--source", &backup_url], CTL_TIMEOUT)
        .await
        .expect_json();
    assert_eq!(restored["keys"].as_u64(), Some(keys), "{restored}");
    let tclient = target.client();
    let (live, base): (BTreeMap<_, _>, BTreeMap<_, _>) =
        scan_prefix(&tclient, "base/").await.into_iter().partition(|(k, _)| k.windows(6).any(|w| w == b"/live/"));
    assert_eq!(base.len(), 20_000);
    assert!((0..20_000).all(|i| base.get(&base_key(i)) == Some(&base_value(i))), "a loaded value differs after the restore");
    assert_eq!(base.len() + live.len(), keys as usize, "the restored cluster holds exactly the backup's keys");
    assert_eq!(scan_prefix(&tclient, "").await.len(), keys as usize, "keys outside base/ after the restore");
    for (w, writes) in log.iter().enumerate() {
        let mut absent_acked: Option<usize> = None;
        for (seq, write) in writes.iter().enumerate() {
            let present = live.get(&write.key);
            if let Some(v) = present {
                assert_eq!(v, &write.value, "writer {w} write {seq}: wrong value");
            }
            if write.acked_ms.is_some_and(|a| a < began) {
                assert!(
                    present.is_some(),
                    "writer {w} write {seq} was acknowledged before fencing began ({:?} < {began}) and is missing",
                    write.acked_ms
                );
            }
            if write.sent_ms > fenced {
                assert!(
                    present.is_none(),
                    "writer {w} write {seq} was sent after the backup point ({} > {fenced}) and is in the backup",
                    write.sent_ms
                );
            }
            match (present, absent_acked) {
                (None, None) => absent_acked = Some(seq),
                (Some(_), Some(gap)) => panic!("writer {w}: write {seq} is in the backup but its earlier write {gap} is not: not a cut"),
                _ => {}
            }
        }
    }

    // A damaged, a partial and a file-less backup are refused, and nothing is written.
    let empty = Cluster::start(1, &[]).await;
    let b1 = dir.path().join("backups/b1");
    let damaged = dir.path().join("backups/b1-damaged");
    copy_dir(&b1, &damaged);
    let victim = ssts(&damaged).into_iter().max_by_key(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)).expect("an SST");
    let mut bytes = std::fs::read(&victim).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(&victim, bytes).expect("write");
    let out = shoalctl_with_timeout(&empty.endpoints(), &["restore", "--source", &format!("{location}/b1-damaged")], CTL_TIMEOUT).await;
    assert!(!out.success() && out.stderr.contains("damaged backup") && out.stderr.contains("SHA-256"), "{out:?}");

    let partial = dir.path().join("backups/b1-partial");
    copy_dir(&b1, &partial);
    std::fs::remove_file(partial.join("manifest.json")).expect("rm manifest");
    let out = shoalctl_with_timeout(&empty.endpoints(), &["restore", "--source", &format!("{location}/b1-partial")], CTL_TIMEOUT).await;
    assert!(!out.success() && out.stderr.contains("incomplete backup"), "{out:?}");

    let fileless = dir.path().join("backups/b1-fileless");
    copy_dir(&b1, &fileless);
    std::fs::remove_file(&ssts(&fileless)[0]).expect("rm sst");
    let out = shoalctl_with_timeout(&empty.endpoints(), &["restore", "--source", &format!("{location}/b1-fileless")], CTL_TIMEOUT).await;
    assert!(!out.success() && out.stderr.contains("is missing"), "{out:?}");
    assert!(scan_prefix(&empty.client(), "").await.is_empty(), "a refused restore wrote keys");

    let out = shoalctl_with_timeout(&target.endpoints(), &["restore", "--source", &backup_url], CTL_TIMEOUT).await;
    assert!(!out.success() && out.stderr.contains("empty cluster"), "{out:?}");

    // list shows which are complete; delete removes one.
    let listed =
        shoalctl_with_timeout(&source.endpoints(), &["--output", "json", "backup", "list", &location], CTL_TIMEOUT).await.expect_json();
    let state = |name: &str| listed.as_array().and_then(|rows| rows.iter().find(|r| r["name"] == name)).map(|r| r["complete"].clone());
    assert_eq!(state("b1"), Some(Value::Bool(true)), "{listed}");
    assert_eq!(state("b1-partial"), Some(Value::Bool(false)), "{listed}");
    let out = shoalctl_with_timeout(&source.endpoints(), &["backup", "delete", &location], CTL_TIMEOUT).await;
    assert!(!out.success() && out.stderr.contains("is not a backup"), "deleting a location of backups: {out:?}");
    let out = shoalctl_with_timeout(&source.endpoints(), &["backup", "delete", &format!("{location}/b1-partial")], CTL_TIMEOUT).await;
    assert!(out.success(), "{out:?}");
    assert!(!partial.exists(), "left after delete: {:?}", std::fs::read_dir(&partial).map(|d| d.count()));
    let listed =
        shoalctl_with_timeout(&source.endpoints(), &["--output", "json", "backup", "list", &location], CTL_TIMEOUT).await.expect_json();
    assert!(listed.as_array().is_some_and(|rows| rows.iter().all(|r| r["name"] != "b1-partial")), "a deleted backup is listed: {listed}");
    let out =
        shoalctl_with_timeout(&source.endpoints(), &["backup", "create", "--destination", &location, "--name", "b1"], CTL_TIMEOUT).await;
    assert!(!out.success() && out.stderr.contains("exists"), "a second b1 overwrote the first: {out:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_go_to_s3_compatible_storage_and_back() {
    let s3 = S3Server::start().await;
    s3.create_bucket("shoal-backups").await;
    let settings = s3.settings();
    let env: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let location = "s3://shoal-backups/nightly";
    let source = Cluster::start(3, NODE_ARGS).await;
    load(&source.client(), 5_000).await;
    wait_regions(&source.client(), 2).await;

    let ctl = |endpoints: Vec<String>, args: Vec<String>| {
        let env = env.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            shoalctl_with_env(&endpoints, &args, &env, CTL_TIMEOUT).await
        }
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    let created = ctl(source.endpoints(), args(&["--output", "json", "backup", "create", "--destination", location, "--name", "s1"]))
        .await
        .expect_json();
    assert_eq!(created["keys"].as_u64(), Some(5_000), "{created}");
    assert!(created["regions"].as_u64().expect("regions") >= 2, "{created}");
    let listed = ctl(source.endpoints(), args(&["--output", "json", "backup", "list", location])).await.expect_json();
    assert_eq!(listed[0]["name"], "s1", "{listed}");
    assert_eq!(listed[0]["complete"], true, "{listed}");

    let target = Cluster::start(3, NODE_ARGS).await;
    let restored =
        ctl(target.endpoints(), args(&["--output", "json", "restore", "--source", &format!("{location}/s1")])).await.expect_json();
    assert_eq!(restored["keys"].as_u64(), Some(5_000), "{restored}");
    let base = scan_prefix(&target.client(), "base/").await;
    assert!(
        base.len() == 5_000 && (0..5_000).all(|i| base.get(&base_key(i)) == Some(&base_value(i))),
        "restored from S3: {} keys",
        base.len()
    );

    let out = ctl(source.endpoints(), args(&["backup", "delete", &format!("{location}/s1")])).await;
    assert!(out.success(), "{out:?}");
    let listed = ctl(source.endpoints(), args(&["--output", "json", "backup", "list", location])).await.expect_json();
    assert_eq!(listed, Value::Array(vec![]), "deleted backups are not listed");
}
