//! Client tasks that write while a scenario runs, and the ledger that proves no
//! acknowledged write was lost.
//!
//! Writer `w` of [`Writers`] writes keys `PREFIX/ww/kkkkkkkk` in turn (its `i`th
//! write goes to key `i % keys_per_writer`, so they are overwritten once every
//! key has been written), one write at a time; write `i` of a key carries the
//! value [`value_of`]`(key, i)`: the key, the sequence number, and bytes derived
//! from both that do not compress, so that a torn, stale or misplaced value
//! never passes for the right one. Per key the ledger keeps the last
//! acknowledged write and the writes tried after it whose outcome is unknown
//! (any error): a read must return the former or one of the latter.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use shoal_client::{Client, ClientError};
use shoal_proto::kv_client::KvClient;
use shoal_proto::{GetRequest, ReadConsistency};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

use crate::wait_until;

/// What the writers write.
#[derive(Clone, Debug)]
pub struct WriterSpec {
    /// Keys are `PREFIX/ww/kkkkkkkk`; `PREFIX` has no `/`, and no other
    /// writers' prefix starts with it.
    pub prefix: String,
    pub cf: String,
    /// Concurrent writer tasks.
    pub writers: usize,
    /// Distinct keys each writer cycles through.
    pub keys_per_writer: u64,
    /// Bytes per value (at least the value's header, about 30 bytes).
    pub value_size: usize,
    /// Each writer stops by itself after this many writes; `None`: when told.
    pub writes_per_writer: Option<u64>,
}

impl WriterSpec {
    /// 8 writers of 1,000 keys each to `default`, until stopped.
    pub fn new(prefix: &str, value_size: usize) -> WriterSpec {
        WriterSpec {
            prefix: prefix.to_string(),
            cf: "default".into(),
            writers: 8,
            keys_per_writer: 1_000,
            value_size,
            writes_per_writer: None,
        }
    }

    pub fn key(&self, writer: usize, k: u64) -> Vec<u8> {
        format!("{}/{writer:02}/{k:08}", self.prefix).into_bytes()
    }

    /// `[start, end)` of every key the writers write.
    pub fn range(&self) -> (Vec<u8>, Vec<u8>) {
        (format!("{}/", self.prefix).into_bytes(), format!("{}0", self.prefix).into_bytes())
    }
}

/// Write `seq` of `key`: `KEY#SEQ#` and then incompressible bytes derived from
/// both, `size` bytes in all (or just the header, if longer).
pub fn value_of(key: &[u8], seq: u64, size: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(size.max(key.len() + 24));
    v.extend_from_slice(key);
    v.extend_from_slice(format!("#{seq}#").as_bytes());
    // FNV-1a of the key, mixed with the sequence number, seeds an xorshift.
    let mut x: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key {
        x = (x ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    x ^= seq.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x |= 1;
    while v.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let n = (size - v.len()).min(8);
        v.extend_from_slice(&x.to_le_bytes()[..n]);
    }
    v
}

/// The sequence number a value says it carries, if it looks like one of ours.
fn seq_in(key: &[u8], value: &[u8]) -> Option<u64> {
    let rest = value.strip_prefix(key)?.strip_prefix(b"#")?;
    let end = rest.iter().position(|b| *b == b'#')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// What the ledger knows of one key.
#[derive(Clone, Debug, Default)]
pub struct KeyLog {
    /// The last acknowledged write.
    pub acked: Option<u64>,
    /// Writes tried after it that failed or whose outcome is unknown.
    pub unknown: Vec<u64>,
}

/// What a read of a key turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// The last acknowledged value.
    Acked,
    /// A value written after it whose outcome was unknown: it was applied.
    UnknownApplied,
    /// Nothing, and no write of the key was acknowledged.
    Absent,
}

/// Every write the writers tried, by key.
#[derive(Clone, Debug)]
pub struct Ledger {
    pub spec: WriterSpec,
    pub keys: BTreeMap<Vec<u8>, KeyLog>,
    pub acked: u64,
    pub failed: u64,
    /// Failed writes by kind of error.
    pub errors: BTreeMap<String, u64>,
}

/// What [`Ledger::verify`] found.
#[derive(Clone, Copy, Debug, Default)]
pub struct Verified {
    /// Keys the scan returned.
    pub scanned: usize,
    pub acked: usize,
    pub unknown_applied: usize,
    pub absent: usize,
    /// Point reads made (a sample of the keys).
    pub gets: usize,
}

impl Ledger {
    /// Checks one read of `key`: `Err` says why it is wrong.
    pub fn check(&self, key: &[u8], got: Option<&[u8]>) -> Result<Found, String> {
        let k = String::from_utf8_lossy(key);
        let Some(log) = self.keys.get(key) else {
            return Err(format!("{k} was never written, yet reads {:?}", got.map(<[u8]>::len)));
        };
        let Some(v) = got else {
            return match log.acked {
                None => Ok(Found::Absent),
                Some(seq) => Err(format!("acknowledged write {seq} of {k} is lost: the key is absent")),
            };
        };
        if let Some(seq) = log.acked
            && v == value_of(key, seq, self.spec.value_size)
        {
            return Ok(Found::Acked);
        }
        if log.unknown.iter().any(|seq| v == value_of(key, *seq, self.spec.value_size)) {
            return Ok(Found::UnknownApplied);
        }
        Err(match seq_in(key, v) {
            Some(seq) if v == value_of(key, seq, self.spec.value_size) => format!(
                "{k} reads write {seq}, but the last acknowledged write is {:?} and only {:?} may have followed it",
                log.acked, log.unknown
            ),
            Some(seq) => format!("{k} reads a damaged value of write {seq} ({} bytes, expected {})", v.len(), self.spec.value_size),
            None => format!("{k} reads a value that is not one written to it ({} bytes)", v.len()),
        })
    }

    /// Keys whose last write was acknowledged.
    pub fn acked_keys(&self) -> impl Iterator<Item = (&Vec<u8>, u64)> {
        self.keys.iter().filter_map(|(k, log)| log.acked.map(|s| (k, s)))
    }

    /// One line: writes acknowledged and failed, by error.
    pub fn summary(&self) -> String {
        format!(
            "{}: {} keys, {} writes acknowledged, {} failed or unknown {:?}",
            self.spec.prefix,
            self.keys.len(),
            self.acked,
            self.failed,
            self.errors
        )
    }

    /// Reads every key of the writers' range back through `client` (a
    /// linearizable scan in pages, and point reads of up to `sample` keys) and
    /// panics at the first acknowledged write that is lost or read wrong, or
    /// a key that was never written.
    pub async fn verify(&self, client: &Client, sample: usize) -> Verified {
        let (start, end) = self.spec.range();
        let page = ((4 << 20) / self.spec.value_size.max(1)).clamp(16, 1_000);
        let mut out = Verified::default();
        let mut seen = std::collections::BTreeSet::new();
        let mut from = start;
        loop {
            let pairs = client.scan(&self.spec.cf, &from, &end, page).await.unwrap_or_else(|e| panic!("scan of {}: {e}", self.spec.prefix));
            let Some((last, _)) = pairs.last() else { break };
            from = [last.as_slice(), &[0]].concat();
            for (k, v) in &pairs {
                assert!(seen.insert(k.clone()), "{} appears twice in the scan", String::from_utf8_lossy(k));
                match self.check(k, Some(v)) {
                    Ok(Found::Acked) => out.acked += 1,
                    Ok(Found::UnknownApplied) => out.unknown_applied += 1,
                    Ok(Found::Absent) => unreachable!("a present key"),
                    Err(e) => panic!("scan: {e}"),
                }
            }
            out.scanned += pairs.len();
        }
        for k in self.keys.keys().filter(|k| !seen.contains(*k)) {
            self.check(k, None).unwrap_or_else(|e| panic!("scan: {e}"));
            out.absent += 1;
        }
        // Point reads of keys spread over the range.
        let step = (self.keys.len() / sample.max(1)).max(1);
        for (k, _) in self.keys.iter().step_by(step) {
            let got = client.get(&self.spec.cf, k).await.unwrap_or_else(|e| panic!("get {}: {e}", String::from_utf8_lossy(k)));
            self.check(k, got.as_deref()).unwrap_or_else(|e| panic!("get: {e}"));
            out.gets += 1;
        }
        eprintln!("verified {}: {out:?}", self.summary());
        out
    }
}

struct WriterLog {
    keys: Vec<KeyLog>,
    acked: u64,
    failed: u64,
    errors: BTreeMap<String, u64>,
}

/// [`WriterSpec::writers`] tasks writing through one client until stopped.
pub struct Writers {
    spec: WriterSpec,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<WriterLog>>,
    started: Instant,
}

fn error_kind(e: &ClientError) -> &'static str {
    match e {
        ClientError::OutcomeUnknown(_) => "outcome_unknown",
        ClientError::Unavailable { .. } => "unavailable",
        ClientError::Server(_) => "server",
        ClientError::InvalidArgument(_) => "invalid_argument",
        ClientError::FailedPrecondition(_) => "failed_precondition",
        ClientError::NotFound(_) => "not_found",
        ClientError::BadEndpoint(..) => "bad_endpoint",
        ClientError::Tls(_) => "tls",
        ClientError::BatchIncomplete { .. } => "batch_incomplete",
    }
}

impl Writers {
    pub fn start(client: Arc<Client>, spec: WriterSpec) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for w in 0..spec.writers {
            let (client, stop, acked, failed, spec) = (client.clone(), stop.clone(), acked.clone(), failed.clone(), spec.clone());
            tasks.push(tokio::spawn(async move {
                let mut log = WriterLog {
                    keys: vec![KeyLog::default(); spec.keys_per_writer as usize],
                    acked: 0,
                    failed: 0,
                    errors: BTreeMap::new(),
                };
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) && spec.writes_per_writer.is_none_or(|n| i < n) {
                    let k = i % spec.keys_per_writer;
                    let key = spec.key(w, k);
                    let value = value_of(&key, i, spec.value_size);
                    let entry = &mut log.keys[k as usize];
                    match client.put(&spec.cf, &key, &value).await {
                        Ok(()) => {
                            entry.acked = Some(i);
                            entry.unknown.clear();
                            log.acked += 1;
                            acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            assert!(!matches!(e, ClientError::InvalidArgument(_)), "a well-formed put was refused: {e}");
                            entry.unknown.push(i);
                            log.failed += 1;
                            *log.errors.entry(error_kind(&e).to_string()).or_default() += 1;
                            failed.fetch_add(1, Ordering::Relaxed);
                            // The client has retried for its whole deadline already; do not spin.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                    i += 1;
                }
                log
            }));
        }
        Writers { spec, stop, acked, failed, tasks, started: Instant::now() }
    }

    /// Writes acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Writes failed (or of unknown outcome) so far.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Whether every writer has finished ([`WriterSpec::writes_per_writer`]).
    pub fn finished(&self) -> bool {
        self.tasks.iter().all(JoinHandle::is_finished)
    }

    /// `N acked, M failed, R/s`, for progress lines.
    pub fn progress(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        format!("{}: {} acked, {} failed ({:.0} acked/s)", self.spec.prefix, self.acked(), self.failed(), self.acked() as f64 / secs)
    }

    /// Waits until `n` more writes than now are acknowledged: the cluster serves writes.
    pub async fn wait_acked_more(&self, n: u64, timeout: Duration, what: &str) {
        let target = self.acked() + n;
        wait_until(timeout, Duration::from_millis(100), &format!("{n} more acknowledged writes {what}"), || async {
            if self.acked() >= target { Ok(()) } else { Err(self.progress()) }
        })
        .await;
    }

    /// Waits until every writer has made its writes, then returns the ledger.
    pub async fn finish(self, timeout: Duration) -> Ledger {
        wait_until(timeout, Duration::from_millis(200), &format!("writers of {} to finish", self.spec.prefix), || async {
            if self.finished() { Ok(()) } else { Err(self.progress()) }
        })
        .await;
        self.stop().await
    }

    /// Stops the writers after their current write and returns the ledger.
    pub async fn stop(self) -> Ledger {
        self.stop.store(true, Ordering::Relaxed);
        let mut ledger = Ledger { spec: self.spec.clone(), keys: BTreeMap::new(), acked: 0, failed: 0, errors: BTreeMap::new() };
        for (w, task) in self.tasks.into_iter().enumerate() {
            let log = task.await.expect("writer task");
            ledger.acked += log.acked;
            ledger.failed += log.failed;
            for (kind, n) in log.errors {
                *ledger.errors.entry(kind).or_default() += n;
            }
            for (k, key_log) in log.keys.into_iter().enumerate() {
                if key_log.acked.is_some() || !key_log.unknown.is_empty() {
                    ledger.keys.insert(self.spec.key(w, k as u64), key_log);
                }
            }
        }
        ledger
    }
}

/// A Kv client for one node, for reads that must be served by that node itself.
pub fn node_kv(addr: &str) -> KvClient<Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("node address")
        .connect_timeout(Duration::from_secs(1))
        .connect_lazy();
    KvClient::new(channel).max_decoding_message_size(usize::MAX)
}

/// A stale read served by the node `kv` talks to from its own replica:
/// `Ok(Some(value))`, `Ok(None)` when the node says the key does not exist,
/// `Err` when it does not serve the key (no replica, region error, transport).
pub async fn stale_get(kv: &mut KvClient<Channel>, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut req = tonic::Request::new(GetRequest { cf: cf.to_string(), key: key.to_vec(), consistency: ReadConsistency::Stale as i32 });
    req.set_timeout(Duration::from_secs(5));
    let resp = kv.get(req).await.map_err(|s| format!("{:?}: {}", s.code(), s.message()))?.into_inner();
    if let Some(err) = resp.header.and_then(|h| h.region_error) {
        return Err(format!("region error: {}", err.message));
    }
    Ok(resp.found.then_some(resp.value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_say_what_they_are_and_differ_by_write() {
        let v = value_of(b"p/00/00000001", 7, 100);
        assert_eq!(v.len(), 100);
        assert_eq!(seq_in(b"p/00/00000001", &v), Some(7));
        assert_ne!(v, value_of(b"p/00/00000001", 8, 100));
        assert_eq!(v, value_of(b"p/00/00000001", 7, 100));
        assert_eq!(value_of(b"k", 1, 0), b"k#1#");
    }

    #[test]
    fn the_ledger_accepts_only_the_last_acknowledged_or_a_later_unknown_write() {
        let spec = WriterSpec::new("p", 64);
        let mut keys = BTreeMap::new();
        keys.insert(b"a".to_vec(), KeyLog { acked: Some(3), unknown: vec![5] });
        keys.insert(b"b".to_vec(), KeyLog { acked: None, unknown: vec![1] });
        let ledger = Ledger { spec, keys, acked: 1, failed: 2, errors: BTreeMap::new() };
        let v = |k: &[u8], s| value_of(k, s, 64);
        assert_eq!(ledger.check(b"a", Some(&v(b"a", 3))), Ok(Found::Acked));
        assert_eq!(ledger.check(b"a", Some(&v(b"a", 5))), Ok(Found::UnknownApplied));
        assert!(ledger.check(b"a", Some(&v(b"a", 1))).is_err(), "an older value is a lost update");
        assert!(ledger.check(b"a", None).is_err(), "an acknowledged key cannot vanish");
        assert!(ledger.check(b"a", Some(&v(b"a", 3)[..40])).is_err(), "a torn value");
        assert_eq!(ledger.check(b"b", None), Ok(Found::Absent));
        assert_eq!(ledger.check(b"b", Some(&v(b"b", 1))), Ok(Found::UnknownApplied));
        assert!(ledger.check(b"c", None).is_err(), "a key never written");
    }
}
