//! The nemesis over real processes: SIGKILL-and-restart, SIGSTOP/SIGCONT,
//! network partitions (each node in its own network namespace) and a slow
//! disk (a failpoint on synced writes) on a 3-node cluster, one fault at a
//! time, while register clients and a bank record histories; the
//! linearizability checker and the bank's rules judge them, and no
//! acknowledged write may be lost.
//!
//! CI runs one short run (`SHOAL_NEMESIS_SECS`, default 45 s) with a seed from
//! the clock, printed first so a failure can be replayed
//! (`SHOAL_NEMESIS_SEED`); `scripts/nemesis.sh` runs more and longer ones.
//! Needs root and iproute2 (the namespaces), which CI has.

use std::time::Duration;

use shoal_tests::Cluster;
use shoal_tests::nemesis::{self, NemesisSpec};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kills_pauses_partitions_and_slow_disks_lose_no_write_and_stay_linearizable() {
    let secs = env_u64("SHOAL_NEMESIS_SECS").unwrap_or(45);
    let seed = env_u64("SHOAL_NEMESIS_SEED")
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64));
    println!("nemesis: seed={seed} duration={secs}s");
    let mut cluster = Cluster::start_partitionable(3, &["--enable-failpoints"]).await;
    cluster.wait_leader(Duration::from_secs(60)).await;
    let status = cluster.nodes[0].status.clone();
    let bad = shoal_tests::try_http("PUT", &status, "/failpoints/slow-sync?ms=soon", Duration::from_secs(10)).await.unwrap();
    assert_eq!(bad, (400, "expected ?ms=N with N at most 60000\n".to_string()), "a malformed failpoint is refused");
    let report = nemesis::run(&mut cluster, &NemesisSpec::new(Duration::from_secs(secs), seed)).await;
    for f in &report.faults {
        println!("fault: {f}");
    }
    println!("{report}");
    assert!(report.acked_writes > 100, "the cluster must keep serving through single faults: {report}");
    assert!(report.transfers > 10, "the bank must keep moving money through single faults: {report}");
    assert!(!report.faults.is_empty(), "no fault was injected: {report}");
    assert_eq!(report.lost, 0, "acknowledged writes lost (seed {seed}): {report}");
    assert!(report.violations.is_empty(), "not linearizable (seed {seed}): {:?}", report.violations);
    assert!(report.bank_violations.is_empty(), "the bank broke its rules (seed {seed}): {:?}", report.bank_violations);
}
