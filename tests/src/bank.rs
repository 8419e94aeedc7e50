//! The bank workload: accounts whose total must never change, moved by
//! atomic batch writes inside one region, read by whole-bank scans.
//!
//! State: `ACCOUNTS` keys `bank/acct/NN` holding balances and `bank/version`
//! holding the number of the last transfer, all in one region (the nemesis
//! never splits), so that one `BatchWrite` is atomic and one `Scan` is one
//! engine snapshot.
//!
//! One writer ([`writer`]) reads the bank linearizably, picks two accounts
//! and an amount, and writes both new balances and `version + 1` in one batch.
//! The batch holds absolute values, so applying it twice changes nothing; a
//! batch whose outcome is unknown is sent again, identical, until it is
//! acknowledged — once it is, no earlier copy can commit after it (an earlier
//! copy either sits before it in the log or in a deposed leader's log that can
//! no longer win an election), so the bank's state is known again before the
//! next transfer. The writer records every version's balances and when it
//! was acknowledged.
//!
//! Readers ([`reader`]) scan the bank linearizably and record what they saw.
//! [`judge`] then requires of every scan: the total is unchanged; the balances
//! are exactly those the writer wrote for the version seen (a half-applied
//! batch, or a read mixing two versions, fails this); and the version is not
//! older than any transfer acknowledged before the scan was called (a stale read).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use shoal_client::{Client, ClientOptions, Mutation};

use crate::rng::Rng;

/// Accounts in the bank.
pub const ACCOUNTS: usize = 8;
/// Each account's opening balance.
pub const OPENING: u64 = 100;

const PREFIX: &[u8] = b"bank/";

fn account_key(i: usize) -> Vec<u8> {
    format!("bank/acct/{i:02}").into_bytes()
}

fn version_key() -> Vec<u8> {
    b"bank/version".to_vec()
}

/// One reading of the whole bank.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reading {
    pub version: u64,
    pub balances: Vec<u64>,
}

/// What the writer did: every version's balances, and when (µs from the
/// start) each was acknowledged.
#[derive(Debug, Default)]
pub struct Ledger {
    pub versions: BTreeMap<u64, (Vec<u64>, Option<u64>)>,
    /// The writer's own reads that were not exactly its last acknowledged
    /// version (after an acknowledgement nothing else can change the bank).
    pub anomalies: Vec<String>,
}

/// A reader's scan: its call time (µs) and what it saw.
#[derive(Debug)]
pub struct Observation {
    pub call: u64,
    pub reading: Reading,
}

fn put(cf: &str, key: Vec<u8>, value: u64) -> Mutation {
    Mutation { op: shoal_client::mutation::Op::Put as i32, cf: cf.to_string(), key, value: value.to_string().into_bytes() }
}

/// Reads the bank in one scan; `Ok(None)` if it has not been opened yet.
async fn read(client: &Client, cf: &str) -> Result<Option<Reading>, String> {
    let mut end = PREFIX.to_vec();
    *end.last_mut().expect("prefix") += 1;
    let pairs = client.scan(cf, PREFIX, &end, 0).await.map_err(|e| e.to_string())?;
    if pairs.is_empty() {
        return Ok(None);
    }
    let number = |v: &[u8]| std::str::from_utf8(v).ok().and_then(|s| s.parse::<u64>().ok());
    let mut balances = vec![None; ACCOUNTS];
    let mut version = None;
    for (key, value) in &pairs {
        let value = number(value).ok_or_else(|| format!("{:?} holds {value:?}", String::from_utf8_lossy(key)))?;
        if *key == version_key() {
            version = Some(value);
        } else if let Some(i) = (0..ACCOUNTS).find(|i| account_key(*i) == *key) {
            balances[i] = Some(value);
        }
    }
    let balances: Option<Vec<u64>> = balances.into_iter().collect();
    match (version, balances) {
        (Some(version), Some(balances)) => Ok(Some(Reading { version, balances })),
        _ => Err(format!("a partial bank: {} keys", pairs.len())),
    }
}

/// Writes `reading` in one batch, again and again until acknowledged or
/// `stop`; returns when (µs from `start`) it was acknowledged.
async fn write_until_acknowledged(client: &Client, cf: &str, reading: &Reading, start: Instant, stop: &AtomicBool) -> Option<u64> {
    let mut batch: Vec<Mutation> = reading.balances.iter().enumerate().map(|(i, b)| put(cf, account_key(i), *b)).collect();
    batch.push(put(cf, version_key(), reading.version));
    loop {
        if client.batch_write(batch.clone()).await.is_ok() {
            return Some(start.elapsed().as_micros() as u64);
        }
        if stop.load(Ordering::Relaxed) {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The writer: opens the bank, then moves money until `stop`.
pub async fn writer(endpoints: Vec<String>, cf: String, seed: u64, start: Instant, stop: Arc<AtomicBool>) -> Ledger {
    let client = Client::new(&endpoints, ClientOptions { deadline: Duration::from_secs(3), ..Default::default() }).expect("client");
    let mut rng = Rng::new(seed ^ 0xba4c);
    let mut ledger = Ledger::default();
    let opening = Reading { version: 0, balances: vec![OPENING; ACCOUNTS] };
    ledger.versions.insert(0, (opening.balances.clone(), None));
    let acked = write_until_acknowledged(&client, &cf, &opening, start, &stop).await;
    ledger.versions.insert(0, (opening.balances.clone(), acked));
    if acked.is_none() {
        return ledger;
    }
    let mut last = 0;
    while !stop.load(Ordering::Relaxed) {
        let now = match read(&client, &cf).await {
            Ok(Some(now)) => now,
            _ => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if ledger.versions.get(&last).is_none_or(|(b, _)| now.version != last || now.balances != *b) {
            ledger
                .anomalies
                .push(format!("the writer read version {} {:?} after version {last} was acknowledged", now.version, now.balances));
        }
        let (from, to) = (rng.below(ACCOUNTS), rng.below(ACCOUNTS));
        let mut balances = now.balances.clone();
        let amount = rng.next_u64() % (balances[from] + 1);
        balances[from] -= amount;
        balances[to] += amount;
        let transfer = Reading { version: now.version + 1, balances };
        ledger.versions.insert(transfer.version, (transfer.balances.clone(), None));
        let acked = write_until_acknowledged(&client, &cf, &transfer, start, &stop).await;
        ledger.versions.insert(transfer.version, (transfer.balances, acked));
        if acked.is_none() {
            break;
        }
        last = transfer.version;
    }
    ledger
}

/// A reader: scans the bank until `stop`; failed scans observed nothing.
pub async fn reader(endpoints: Vec<String>, cf: String, start: Instant, stop: Arc<AtomicBool>) -> Vec<Observation> {
    let client = Client::new(&endpoints, ClientOptions { deadline: Duration::from_secs(3), ..Default::default() }).expect("client");
    let mut seen = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let call = start.elapsed().as_micros() as u64;
        match read(&client, &cf).await {
            Ok(Some(reading)) => seen.push(Observation { call, reading }),
            Ok(None) => {}
            Err(e) if e.starts_with("a partial bank") || e.contains(" holds ") => {
                // Not a transport failure: what the store returned is wrong.
                seen.push(Observation { call, reading: Reading { version: u64::MAX, balances: vec![] } });
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    seen
}

/// Reads the bank once more after the faults; `None` if it cannot be read.
pub async fn final_reading(client: &Client, cf: &str) -> Option<Reading> {
    read(client, cf).await.ok().flatten()
}

/// Whether the bank's final reading is older than its last acknowledged
/// transfer (or it could not be read although a transfer was acknowledged).
pub fn lost(ledger: &Ledger, last: Option<&Reading>) -> bool {
    let newest = ledger.versions.iter().filter(|(_, (_, at))| at.is_some()).map(|(v, _)| *v).max();
    match (newest, last) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(v), Some(r)) => r.version < v,
    }
}

/// Every way `observations` (and the final reading) break the rules in the
/// module docs.
pub fn judge(ledger: &Ledger, observations: &[Observation]) -> Vec<String> {
    let total = OPENING * ACCOUNTS as u64;
    let mut broken = ledger.anomalies.clone();
    // The newest version acknowledged before each time: a scan called after
    // an acknowledgement must see that version or a newer one.
    let acked: Vec<(u64, u64)> = ledger.versions.iter().filter_map(|(v, (_, at))| at.map(|t| (t, *v))).collect();
    for o in observations {
        let r = &o.reading;
        if r.version == u64::MAX {
            broken.push(format!("at {} µs a scan returned a partial or garbled bank", o.call));
            continue;
        }
        if r.balances.iter().sum::<u64>() != total {
            broken.push(format!(
                "at {} µs version {} totals {} (not {total}): {:?}",
                o.call,
                r.version,
                r.balances.iter().sum::<u64>(),
                r.balances
            ));
        }
        match ledger.versions.get(&r.version) {
            None => broken.push(format!("at {} µs a scan saw version {}, never written", o.call, r.version)),
            Some((balances, _)) if *balances != r.balances => {
                broken.push(format!("at {} µs version {} read {:?}, written {balances:?}", o.call, r.version, r.balances))
            }
            Some(_) => {}
        }
        if let Some((at, v)) = acked.iter().filter(|(t, _)| *t < o.call).max_by_key(|(_, v)| *v)
            && r.version < *v
        {
            broken.push(format!("at {} µs a scan saw version {}, older than version {v} acknowledged at {at} µs", o.call, r.version));
        }
    }
    broken
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(versions: &[(u64, Vec<u64>, Option<u64>)]) -> Ledger {
        Ledger { versions: versions.iter().map(|(v, b, at)| (*v, (b.clone(), *at))).collect(), anomalies: vec![] }
    }

    fn seen(call: u64, version: u64, balances: Vec<u64>) -> Observation {
        Observation { call, reading: Reading { version, balances } }
    }

    fn opening() -> Vec<u64> {
        vec![OPENING; ACCOUNTS]
    }

    fn moved(from: usize, to: usize, amount: u64) -> Vec<u64> {
        let mut b = opening();
        b[from] -= amount;
        b[to] += amount;
        b
    }

    #[test]
    fn scans_of_written_versions_in_order_are_accepted() {
        let l = ledger(&[(0, opening(), Some(10)), (1, moved(0, 1, 30), Some(50)), (2, moved(2, 1, 30), None)]);
        let obs = [seen(20, 0, opening()), seen(30, 1, moved(0, 1, 30)), seen(60, 1, moved(0, 1, 30)), seen(70, 2, moved(2, 1, 30))];
        assert_eq!(judge(&l, &obs), Vec::<String>::new());
    }

    #[test]
    fn a_half_applied_transfer_is_caught() {
        let l = ledger(&[(0, opening(), Some(10)), (1, moved(0, 1, 30), Some(50))]);
        let mut half = opening();
        half[0] -= 30;
        let broken = judge(&l, &[seen(60, 1, half)]);
        assert_eq!(broken.len(), 2, "{broken:?}"); // the total, and not what version 1 wrote
    }

    #[test]
    fn a_stale_scan_is_caught() {
        let l = ledger(&[(0, opening(), Some(10)), (1, moved(0, 1, 30), Some(50))]);
        let broken = judge(&l, &[seen(60, 0, opening())]);
        assert_eq!(broken.len(), 1, "{broken:?}");
        assert!(broken[0].contains("older than version 1"), "{broken:?}");
    }

    #[test]
    fn a_version_never_written_or_a_garbled_scan_is_caught() {
        let l = ledger(&[(0, opening(), Some(10))]);
        assert_eq!(judge(&l, &[seen(20, 7, opening())]).len(), 1);
        assert_eq!(judge(&l, &[seen(20, u64::MAX, vec![])]).len(), 1);
    }
}
