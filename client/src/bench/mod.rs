//! `shoalctl bench`: a YCSB-like, closed-loop load generator.
//!
//! `bench load --keys N` writes keys `bench/0000000000` .. `bench/{N-1}` once each
//! (values of `--value-size` random lowercase letters) with `--concurrency` workers,
//! prints how many, how long and ops/s, and fails on the first failed write.
//!
//! `bench run --workload W --keys N` then runs `--concurrency` workers for
//! `--duration` seconds, each keeping one request in flight:
//!
//! | workload | operations |
//! |---|---|
//! | `a` | 50% read, 50% update |
//! | `b` | 95% read, 5% update |
//! | `c` | 100% read |
//! | `e` | 95% scan, 5% insert |
//! | `custom` | `--read-ratio` read, the rest update |
//!
//! - read: `get` of a chosen key; linearizable (a ReadIndex round) unless `--stale-reads`.
//! - update: `put` of `--value-size` fresh random letters to a chosen key.
//! - insert: `put` of key `N + i`, where `i` comes from a counter shared by all workers.
//! - scan: `scan` from a chosen key with no end and a limit drawn uniformly from
//!   `1..=--scan-length` (scans are always linearizable).
//!
//! Keys are chosen (see [`keygen`]) by `--distribution`, uniform or YCSB's scrambled
//! zipfian (theta 0.99), over the loaded keys plus the inserts handed out so far. The
//! default is zipfian for `a`..`e`, as in YCSB, and uniform for `custom`.
//!
//! Measurement: against Shoal, `run` first fills the client's region cache from
//! Meta (every region, in pages of [`WARM_PAGE`]), so that it measures a client
//! that knows the cluster rather than one learning it a region at a time. Each operation is timed from just before the client call to just
//! after it returns, so a latency includes the client's retries and redirects. The
//! microseconds go into one HDR histogram (1 µs .. 60 s, 3 significant digits) per
//! operation type and worker; they are merged at the end. Throughput is successful
//! operations divided by the wall time from the start until the last worker has
//! finished its last operation (which may end a little after the deadline). Failed
//! operations are counted in `errors`, not timed, and the last error is printed. A
//! read of a missing key succeeds but is counted in `reads_not_found`: a sign that
//! `bench load` did not run with the same `--keys` and `--cf`. The client shares the
//! machine with the cluster on a playground, so its own CPU use is in the numbers.

mod keygen;
mod load;
mod report;
mod target;
mod workload;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Map, Value, json};
use shoal_client::ReadConsistency;

use crate::output::{Format, Printer};
use keygen::{Distribution, KeyChooser};
use target::{System, Target};
use workload::{Op, Plan, Tally, Workload};

/// Highest `--keys`: keeps `bench/{i:010}` in index order even after many inserts.
const MAX_KEYS: u64 = 1_000_000_000;
/// Highest `--scan-length` (a node's default `max-scan-limit`).
const MAX_SCAN_LENGTH: usize = 10_000;
/// Regions asked of Meta per page when `run` warms the region cache.
const WARM_PAGE: usize = 4096;

#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(clap::Subcommand)]
enum BenchCommand {
    /// Write keys 0..N once each, then print count, seconds and ops/s.
    Load(Common),
    /// Run a workload against loaded keys; report ops/s and latency per operation type.
    Run(RunArgs),
}

#[derive(clap::Args)]
struct Common {
    /// Number of keys: `load` writes indices 0..N; `run` reads and updates them (use the same N).
    #[arg(long)]
    keys: u64,
    /// Bytes per written value.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Requests in flight at once (one per worker).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Column family to write and read.
    #[arg(long, default_value = "default")]
    cf: String,
    /// The system at `--endpoints`: a Shoal cluster, or an etcd cluster driven
    /// with the same workload for comparison.
    #[arg(long, value_enum, default_value_t = System::Shoal)]
    target: System,
}

#[derive(clap::Args)]
struct RunArgs {
    #[arg(long, value_enum)]
    workload: Workload,
    /// Key distribution [default: zipfian for a, b, c, e; uniform for custom].
    #[arg(long, value_enum)]
    distribution: Option<Distribution>,
    /// How long to measure, in seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Longest scan (workload e): each scan reads uniformly 1..=L keys.
    #[arg(long, default_value_t = 100)]
    scan_length: usize,
    /// Fraction of operations that are reads, 0.0..=1.0 (workload custom only; default 0).
    #[arg(long)]
    read_ratio: Option<f64>,
    /// Reads use stale (local) reads instead of linearizable ones; scans stay linearizable.
    #[arg(long)]
    stale_reads: bool,
    #[command(flatten)]
    common: Common,
}

pub async fn run(endpoints: &[String], p: &Printer, args: BenchArgs) -> Result<ExitCode> {
    match args.command {
        BenchCommand::Load(c) => load_keys(endpoints, p, c).await,
        BenchCommand::Run(r) => run_workload(endpoints, p, r).await,
    }
}

fn check_common(c: &Common) -> Result<()> {
    if !(1..=10_000).contains(&c.concurrency) || !(1..=MAX_KEYS).contains(&c.keys) {
        bail!("need --concurrency in 1..=10000 and --keys in 1..={MAX_KEYS}");
    }
    Ok(())
}

async fn load_keys(endpoints: &[String], p: &Printer, c: Common) -> Result<ExitCode> {
    check_common(&c)?;
    let target = Target::connect(c.target, endpoints, &c.cf).await?;
    let started = Instant::now();
    let count = load::load(&target, &c.cf, c.keys, c.value_size, c.concurrency).await?;
    let secs = started.elapsed().as_secs_f64();
    let ops_per_sec = (count as f64 / secs).round();
    match p.format {
        Format::Json => p.json(&json!({
            "count": count, "seconds": (secs * 100.0).round() / 100.0, "ops_per_sec": ops_per_sec,
            "value_size": c.value_size, "concurrency": c.concurrency, "cf": c.cf, "target": c.target.name(),
        }))?,
        Format::Text => println!(
            "loaded {count} keys in {secs:.2} s: {ops_per_sec} ops/s ({} B values, concurrency {}, cf {})",
            c.value_size, c.concurrency, c.cf
        ),
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_workload(endpoints: &[String], p: &Printer, a: RunArgs) -> Result<ExitCode> {
    let c = &a.common;
    check_common(c)?;
    if !(1..=86_400).contains(&a.duration) || !(1..=MAX_SCAN_LENGTH).contains(&a.scan_length) {
        bail!("need --duration in 1..=86400 seconds and --scan-length in 1..={MAX_SCAN_LENGTH}");
    }
    let read_ratio = match (a.workload, a.read_ratio) {
        (Workload::Custom, r) => r.unwrap_or(0.0),
        (_, Some(_)) => bail!("--read-ratio applies to --workload custom only"),
        (_, None) => 0.0,
    };
    if !(0.0..=1.0).contains(&read_ratio) {
        bail!("--read-ratio must be in 0..=1");
    }
    let distribution = a.distribution.unwrap_or(if a.workload == Workload::Custom { Distribution::Uniform } else { Distribution::Zipfian });
    let target = Target::connect(c.target, endpoints, &c.cf).await?;
    // Measure a client that knows the cluster, not one learning it region by
    // region (with thousands of regions a cold cache is a lookup per request).
    if let Target::Shoal(client) = &target {
        client.warm_region_cache(WARM_PAGE).await?;
    }
    // Inserts (workload e) grow the range: cover twice the loaded keys up front so the
    // zipfian's hot keys stay where they are. Built once, before the clock starts.
    let capacity = if a.workload == Workload::E { c.keys.saturating_mul(2) } else { c.keys };
    let chooser = KeyChooser::new(distribution, capacity);
    let started = Instant::now();
    let plan = Arc::new(Plan {
        target,
        cf: c.cf.clone(),
        keys: c.keys,
        value_size: c.value_size,
        scan_length: a.scan_length,
        consistency: if a.stale_reads { ReadConsistency::Stale } else { ReadConsistency::Linearizable },
        mix: a.workload.mix(read_ratio),
        inserted: AtomicU64::new(0),
        until: started + Duration::from_secs(a.duration),
    });
    let tasks: Vec<_> = (0..c.concurrency)
        .map(|_| tokio::spawn(workload::worker(plan.clone(), chooser.clone(), StdRng::from_rng(&mut rand::rng()))))
        .collect();
    let mut tally = Tally::new();
    for t in tasks {
        tally.merge(t.await?)?;
    }
    let secs = started.elapsed().as_secs_f64();
    let mut total = workload::new_hist();
    for h in &tally.hists {
        total.add(h)?;
    }
    let ops: Vec<(Op, &Histogram<u64>)> = Op::ALL.into_iter().zip(&tally.hists).filter(|(_, h)| !h.is_empty()).collect();
    let rows_per_scan = tally.scanned_rows as f64 / tally.hists[Op::Scan.slot()].len().max(1) as f64;
    match p.format {
        Format::Json => {
            let mut report = Map::new();
            report.insert("target".into(), c.target.name().into());
            report.insert("workload".into(), a.workload.name().into());
            report.insert("distribution".into(), distribution.name().into());
            report.insert("concurrency".into(), c.concurrency.into());
            report.insert("keys".into(), c.keys.into());
            report.insert("value_size".into(), c.value_size.into());
            report.insert("duration_secs".into(), ((secs * 10.0).round() / 10.0).into());
            report.insert("stale_reads".into(), a.stale_reads.into());
            if a.workload == Workload::Custom {
                report.insert("read_ratio".into(), read_ratio.into());
            }
            report.insert("errors".into(), tally.errors.into());
            report.insert("last_error".into(), tally.last_error.clone().into());
            report.insert("reads_not_found".into(), tally.reads_not_found.into());
            report.insert("total".into(), report::op_json(&total, secs));
            for (op, h) in &ops {
                let mut v = report::op_json(h, secs);
                if *op == Op::Scan {
                    v["rows_per_scan"] = ((rows_per_scan * 10.0).round() / 10.0).into();
                    v["scan_length"] = a.scan_length.into();
                }
                report.insert(op.name().into(), v);
            }
            p.json(&Value::Object(report))?
        }
        Format::Text => {
            println!(
                "{}: workload {} ({}), {} ops in {:.1} s, concurrency {}, {} keys, {} B values, errors {}",
                c.target.name(),
                a.workload.name(),
                distribution.name(),
                total.len(),
                secs,
                c.concurrency,
                c.keys,
                c.value_size,
                tally.errors
            );
            let mut rows: Vec<(&str, &Histogram<u64>)> = ops.iter().map(|(op, h)| (op.name(), *h)).collect();
            rows.push(("total", &total));
            print!("{}", report::table(&rows, secs));
            if !tally.hists[Op::Scan.slot()].is_empty() {
                println!("scans returned {rows_per_scan:.1} rows on average (limit 1..={})", a.scan_length);
            }
            if tally.reads_not_found > 0 {
                println!("{} reads found no value: was `bench load` run with the same --keys and --cf?", tally.reads_not_found);
            }
            if let Some(e) = &tally.last_error {
                println!("last error: {e}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
