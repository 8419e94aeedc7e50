//! The operation mixes of `shoalctl bench run` and the closed-loop worker that runs them.
//!
//! Each worker keeps one request in flight until the deadline: it picks an operation
//! by the workload's mix, a key with its own [`KeyChooser`], times the call from just
//! before it is issued to just after it returns, and records the microseconds in that
//! operation's HDR histogram. Failed calls are counted, not timed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, RngCore};
use shoal_client::ReadConsistency;

use super::keygen::KeyChooser;
use super::target::Target;

/// A YCSB core workload, or `custom` (reads and updates in a given ratio).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// 50% reads, 50% updates.
    A,
    /// 95% reads, 5% updates.
    B,
    /// 100% reads.
    C,
    /// 95% short scans, 5% inserts of new keys.
    E,
    /// `--read-ratio` reads, the rest updates.
    Custom,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::A => "a",
            Workload::B => "b",
            Workload::C => "c",
            Workload::E => "e",
            Workload::Custom => "custom",
        }
    }

    /// The operation mix; `read_ratio` is used by `custom` only.
    pub fn mix(self, read_ratio: f64) -> Mix {
        let m = |read, update, scan, insert| Mix { read, update, scan, insert };
        match self {
            Workload::A => m(0.5, 0.5, 0.0, 0.0),
            Workload::B => m(0.95, 0.05, 0.0, 0.0),
            Workload::C => m(1.0, 0.0, 0.0, 0.0),
            Workload::E => m(0.0, 0.0, 0.95, 0.05),
            Workload::Custom => m(read_ratio, 1.0 - read_ratio, 0.0, 0.0),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Read,
    Update,
    Insert,
    Scan,
}

impl Op {
    pub const ALL: [Op; 4] = [Op::Read, Op::Update, Op::Insert, Op::Scan];

    /// Where this operation sits in [`Op::ALL`] and in [`Tally::hists`].
    pub fn slot(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Op::Read => "read",
            Op::Update => "update",
            Op::Insert => "insert",
            Op::Scan => "scan",
        }
    }
}

/// Probabilities of each operation, summing to 1.
#[derive(Clone, Copy, Debug)]
pub struct Mix {
    read: f64,
    update: f64,
    scan: f64,
    insert: f64,
}

impl Mix {
    /// The operation for a uniform `u` in [0, 1).
    pub fn pick(&self, u: f64) -> Op {
        let weights = [(Op::Read, self.read), (Op::Update, self.update), (Op::Scan, self.scan), (Op::Insert, self.insert)];
        let (mut edge, mut last) = (0.0, Op::Read);
        for (op, w) in weights.into_iter().filter(|(_, w)| *w > 0.0) {
            edge += w;
            last = op;
            if u < edge {
                return op;
            }
        }
        // Only when rounding left the weights summing to just under 1.
        last
    }
}

/// What every worker shares.
pub struct Plan {
    pub target: Target,
    pub cf: String,
    /// Keys written by `bench load`: indices `0..keys`.
    pub keys: u64,
    pub value_size: usize,
    pub scan_length: usize,
    pub consistency: ReadConsistency,
    pub mix: Mix,
    /// Inserts handed out so far; insert number `i` writes key `keys + i`.
    pub inserted: AtomicU64,
    pub until: Instant,
}

/// One worker's measurements.
pub struct Tally {
    /// Indexed like [`Op::ALL`].
    pub hists: [Histogram<u64>; 4],
    pub scanned_rows: u64,
    pub reads_not_found: u64,
    pub errors: u64,
    pub last_error: Option<String>,
}

impl Tally {
    pub fn new() -> Tally {
        Tally { hists: std::array::from_fn(|_| new_hist()), scanned_rows: 0, reads_not_found: 0, errors: 0, last_error: None }
    }

    pub fn merge(&mut self, other: Tally) -> anyhow::Result<()> {
        for (h, o) in self.hists.iter_mut().zip(&other.hists) {
            h.add(o)?;
        }
        self.scanned_rows += other.scanned_rows;
        self.reads_not_found += other.reads_not_found;
        self.errors += other.errors;
        self.last_error = other.last_error.or(self.last_error.take());
        Ok(())
    }
}

/// Latencies in microseconds, 1 µs to 60 s, 3 significant digits.
pub fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

pub fn key(i: u64) -> Vec<u8> {
    format!("bench/{i:010}").into_bytes()
}

/// Fills `value` with random lowercase letters, so a benchmarked cluster scans readably.
pub fn fill_value(rng: &mut impl RngCore, value: &mut [u8]) {
    rng.fill_bytes(value);
    for b in value.iter_mut() {
        *b = b'a' + *b % 26;
    }
}

/// Runs operations one at a time until `plan.until`.
pub async fn worker(plan: Arc<Plan>, mut chooser: KeyChooser, mut rng: StdRng) -> Tally {
    let mut tally = Tally::new();
    let mut value = vec![0u8; plan.value_size];
    let mut conn = plan.target.conn();
    while Instant::now() < plan.until {
        let op = plan.mix.pick(rng.random::<f64>());
        let k = if op == Op::Insert {
            key(plan.keys + plan.inserted.fetch_add(1, Ordering::Relaxed))
        } else {
            // Over the loaded keys and every insert handed out so far (workload E).
            key(chooser.next(&mut rng, plan.keys + plan.inserted.load(Ordering::Relaxed)))
        };
        if matches!(op, Op::Update | Op::Insert) {
            fill_value(&mut rng, &mut value);
        }
        let scan_len = if op == Op::Scan { rng.random_range(1..=plan.scan_length) } else { 0 };
        let started = Instant::now();
        let res = match op {
            Op::Read => conn.get(&plan.cf, &k, plan.consistency).await.map(|found| {
                tally.reads_not_found += u64::from(!found);
            }),
            Op::Update | Op::Insert => conn.put(&plan.cf, &k, &value).await,
            Op::Scan => conn.scan(&plan.cf, &k, scan_len).await.map(|rows| {
                tally.scanned_rows += rows as u64;
            }),
        };
        let micros = (started.elapsed().as_micros() as u64).clamp(1, 60_000_000);
        match res {
            Ok(()) => {
                let _ = tally.hists[op.slot()].record(micros);
            }
            Err(e) => {
                tally.errors += 1;
                tally.last_error = Some(format!("{}: {e}", op.name()));
            }
        }
    }
    tally
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn shares(w: Workload, read_ratio: f64) -> [f64; 4] {
        let mix = w.mix(read_ratio);
        let mut rng = StdRng::seed_from_u64(7);
        let mut c = [0u64; 4];
        let draws = 100_000;
        for _ in 0..draws {
            let op = mix.pick(rng.random::<f64>());
            c[op.slot()] += 1;
        }
        c.map(|k| k as f64 / draws as f64)
    }

    fn close(got: [f64; 4], want: [f64; 4]) -> bool {
        got.iter().zip(want).all(|(g, w)| (g - w).abs() < 0.01)
    }

    #[test]
    fn mixes_match_the_ycsb_definitions() {
        // [read, update, insert, scan]
        assert!(close(shares(Workload::A, 0.0), [0.5, 0.5, 0.0, 0.0]));
        assert!(close(shares(Workload::B, 0.0), [0.95, 0.05, 0.0, 0.0]));
        assert_eq!(shares(Workload::C, 0.0), [1.0, 0.0, 0.0, 0.0]);
        assert!(close(shares(Workload::E, 0.0), [0.0, 0.0, 0.05, 0.95]));
        assert_eq!(shares(Workload::Custom, 0.0), [0.0, 1.0, 0.0, 0.0]);
        assert_eq!(shares(Workload::Custom, 1.0), [1.0, 0.0, 0.0, 0.0]);
        assert!(close(shares(Workload::Custom, 0.3), [0.3, 0.7, 0.0, 0.0]));
    }

    #[test]
    fn slots_follow_all() {
        assert!(Op::ALL.iter().enumerate().all(|(i, op)| op.slot() == i));
    }

    #[test]
    fn pick_edges() {
        let e = Workload::E.mix(0.0);
        assert_eq!(e.pick(0.0), Op::Scan);
        assert_eq!(e.pick(0.9499), Op::Scan);
        assert_eq!(e.pick(0.9501), Op::Insert);
        assert_eq!(e.pick(0.999_999_999), Op::Insert);
        assert_eq!(Workload::C.mix(0.0).pick(0.999_999_999), Op::Read);
    }

    #[test]
    fn keys_sort_in_index_order() {
        assert_eq!(key(42), b"bench/0000000042");
        assert!(key(9) < key(10) && key(999_999_999) < key(1_000_000_000));
    }

    #[test]
    fn values_are_letters() {
        let mut v = vec![0u8; 300];
        fill_value(&mut StdRng::seed_from_u64(1), &mut v);
        assert!(v.iter().all(|b| b.is_ascii_lowercase()));
    }
}
