//! `shoalctl bench`: a closed-loop load generator.
//!
//! `--concurrency` workers each run one request at a time for `--duration`,
//! choosing a read with probability `--read-ratio` (else a put of `--value-size`
//! random bytes) on a uniformly random key among `--keys`. `--prefill` first writes
//! every key once. Latencies go into HDR histograms; the report gives throughput
//! and p50/p95/p99/p99.9 for reads, writes and both.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use hdrhistogram::Histogram;
use rand::{Rng, RngCore};
use serde_json::json;
use shoal_client::{Client, ClientOptions, ReadConsistency};

use crate::output::{Format, Printer};

#[derive(clap::Args, Clone)]
pub struct BenchArgs {
    /// Requests in flight at once (one per worker).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Number of distinct keys.
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Bytes per written value.
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Fraction of requests that are reads, 0.0..=1.0.
    #[arg(long, default_value_t = 0.0)]
    read_ratio: f64,
    /// How long to measure, in seconds.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Write every key once before measuring.
    #[arg(long)]
    prefill: bool,
    /// Reads use stale (local) reads instead of linearizable ones.
    #[arg(long)]
    stale_reads: bool,
    #[arg(long, default_value = "default")]
    cf: String,
}

/// Fills `value` with random printable letters, so a benchmarked cluster scans readably.
fn fill_value(value: &mut [u8]) {
    rand::rng().fill_bytes(value);
    for b in value.iter_mut() {
        *b = b'a' + *b % 26;
    }
}

fn key(i: u64) -> Vec<u8> {
    format!("bench/{i:010}").into_bytes()
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

#[derive(Default)]
struct Tally {
    reads: Option<Histogram<u64>>,
    writes: Option<Histogram<u64>>,
    errors: u64,
    last_error: Option<String>,
}

async fn worker(client: Arc<Client>, args: BenchArgs, until: Instant) -> Tally {
    let mut reads = new_hist();
    let mut writes = new_hist();
    let mut tally = Tally::default();
    let mut value = vec![0u8; args.value_size];
    let consistency = if args.stale_reads { ReadConsistency::Stale } else { ReadConsistency::Linearizable };
    while Instant::now() < until {
        let (k, is_read) = {
            fill_value(&mut value);
            let mut rng = rand::rng();
            (key(rng.random_range(0..args.keys)), rng.random_bool(args.read_ratio))
        };
        let started = Instant::now();
        let res = if is_read { client.get_with(&args.cf, &k, consistency).await.map(drop) } else { client.put(&args.cf, &k, &value).await };
        let micros = started.elapsed().as_micros().max(1) as u64;
        match res {
            Ok(()) => {
                let h = if is_read { &mut reads } else { &mut writes };
                let _ = h.record(micros.min(60_000_000));
            }
            Err(e) => {
                tally.errors += 1;
                tally.last_error = Some(e.to_string());
            }
        }
    }
    tally.reads = Some(reads);
    tally.writes = Some(writes);
    tally
}

async fn prefill(client: &Arc<Client>, args: &BenchArgs) -> Result<()> {
    let mut tasks = Vec::new();
    let workers = args.concurrency.max(1) as u64;
    for w in 0..workers {
        let (client, args) = (client.clone(), args.clone());
        tasks.push(tokio::spawn(async move {
            let mut value = vec![0u8; args.value_size];
            let mut i = w;
            while i < args.keys {
                fill_value(&mut value);
                client.put(&args.cf, &key(i), &value).await?;
                i += workers;
            }
            Ok::<_, shoal_client::ClientError>(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

fn summary(h: &Histogram<u64>, secs: f64) -> serde_json::Value {
    json!({
        "ops": h.len(),
        "ops_per_sec": (h.len() as f64 / secs).round(),
        "p50_us": h.value_at_quantile(0.50),
        "p95_us": h.value_at_quantile(0.95),
        "p99_us": h.value_at_quantile(0.99),
        "p999_us": h.value_at_quantile(0.999),
        "max_us": h.max(),
    })
}

pub async fn run(endpoints: &[String], p: &Printer, args: BenchArgs) -> Result<ExitCode> {
    if args.concurrency == 0 || args.concurrency > 10_000 || args.keys == 0 || !(1..=86_400).contains(&args.duration) {
        bail!("need --concurrency in 1..=10000, --keys above 0 and --duration in 1..=86400 seconds");
    }
    if !(0.0..=1.0).contains(&args.read_ratio) {
        bail!("--read-ratio must be in 0..=1");
    }
    let client = Arc::new(Client::new(endpoints, ClientOptions::default())?);
    if args.prefill {
        let started = Instant::now();
        prefill(&client, &args).await?;
        eprintln!("prefilled {} keys in {:.1}s", args.keys, started.elapsed().as_secs_f64());
    }
    let started = Instant::now();
    let until = started + Duration::from_secs(args.duration);
    let tasks: Vec<_> = (0..args.concurrency).map(|_| tokio::spawn(worker(client.clone(), args.clone(), until))).collect();
    let (mut reads, mut writes, mut errors, mut last_error) = (new_hist(), new_hist(), 0, None);
    for t in tasks {
        let tally = t.await?;
        if let Some(h) = tally.reads {
            reads.add(&h)?;
        }
        if let Some(h) = tally.writes {
            writes.add(&h)?;
        }
        errors += tally.errors;
        last_error = tally.last_error.or(last_error);
    }
    let secs = started.elapsed().as_secs_f64();
    let mut all = reads.clone();
    all.add(&writes)?;
    let report = json!({
        "concurrency": args.concurrency, "keys": args.keys, "value_size": args.value_size, "read_ratio": args.read_ratio,
        "duration_secs": (secs * 10.0).round() / 10.0, "errors": errors,
        "total": summary(&all, secs), "reads": summary(&reads, secs), "writes": summary(&writes, secs),
    });
    match p.format {
        Format::Json => p.json(&report)?,
        Format::Text => {
            println!(
                "{} ops in {:.1}s, concurrency {}, {} keys, {} B values, read ratio {}, errors {}",
                all.len(),
                secs,
                args.concurrency,
                args.keys,
                args.value_size,
                args.read_ratio,
                errors
            );
            println!("{:<7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}", "", "ops/s", "p50 us", "p95 us", "p99 us", "p999 us", "max us");
            for (name, h) in [("total", &all), ("reads", &reads), ("writes", &writes)] {
                if h.is_empty() {
                    continue;
                }
                println!(
                    "{:<7} {:>10.0} {:>9} {:>9} {:>9} {:>9} {:>9}",
                    name,
                    h.len() as f64 / secs,
                    h.value_at_quantile(0.5),
                    h.value_at_quantile(0.95),
                    h.value_at_quantile(0.99),
                    h.value_at_quantile(0.999),
                    h.max()
                );
            }
            if let Some(e) = last_error {
                println!("last error: {e}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
