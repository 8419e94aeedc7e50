//! `shoalctl status --watch`: the stores as the meta leader knows them (state,
//! regions, leaders, used and available bytes) and each store's request rate,
//! refreshed every `--interval` seconds until Ctrl-C (or `--count` frames).
//!
//! The rate is the change of the store's `requests_total` (gRPC requests it
//! served, reported with each heartbeat) between two frames, divided by the
//! time between the two heartbeats that carried them; `-` until a store has
//! heartbeated twice. On a terminal each frame replaces the last; otherwise
//! frames follow each other. `--output json` prints one object per frame.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use serde_json::json;
use shoal_client::Client;
use shoal_proto::StoreDetail;

use crate::cluster::{human, store_cells, store_json, table};
use crate::commands::connect;
use crate::output::{Format, Printer};

/// A store's counter at one heartbeat: `(requests_total, last_heartbeat_ms)`.
type Sample = (u64, u64);

/// Requests per second between two samples, if the heartbeats differ.
fn rate(prev: Option<Sample>, now: Sample) -> Option<f64> {
    let (r0, t0) = prev?;
    let (r1, t1) = now;
    (t1 > t0 && r1 >= r0).then(|| (r1 - r0) as f64 * 1000.0 / (t1 - t0) as f64)
}

fn frame(stores: &[StoreDetail], rates: &HashMap<u64, Option<f64>>) -> String {
    let rows: Vec<Vec<String>> = stores
        .iter()
        .map(|d| {
            let st = d.stats.unwrap_or_default();
            let id = d.store.as_ref().map_or(0, |s| s.id);
            let mut row = store_cells(d);
            row.extend([
                human(st.used_bytes),
                human(st.available_bytes),
                rates.get(&id).copied().flatten().map_or("-".into(), |r| format!("{r:.1}")),
            ]);
            row
        })
        .collect();
    table(
        &["STORE", "NAME", "ADDRESS", "STATE", "REGIONS", "LEADERS", "USED", "AVAILABLE", "REQ/S"],
        &[true, false, false, false, true, true, true, true, true],
        &rows,
    )
}

pub async fn run(endpoints: &[String], p: &Printer, interval: Duration, count: Option<u64>) -> Result<ExitCode> {
    let client: Client = connect(endpoints)?;
    let tty = std::io::stdout().is_terminal() && p.format == Format::Text;
    // Per store: the sample of its last heartbeat seen, and the rate computed
    // when that heartbeat arrived (shown until the next one).
    let mut last: HashMap<u64, Sample> = HashMap::new();
    let mut rates: HashMap<u64, Option<f64>> = HashMap::new();
    let mut shown = 0u64;
    loop {
        let stores = client.list_stores().await?;
        for d in &stores {
            let (id, st) = (d.store.as_ref().map_or(0, |s| s.id), d.stats.unwrap_or_default());
            let now = (st.requests_total, st.last_heartbeat_ms);
            let prev = last.get(&id).copied();
            if prev.is_none_or(|p| p.1 != now.1) {
                rates.insert(id, rate(prev, now));
                last.insert(id, now);
            }
        }
        let taken_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        match p.format {
            Format::Json => {
                let rows: Vec<_> = stores
                    .iter()
                    .map(|d| {
                        let mut v = store_json(d);
                        v["requests_per_sec"] = json!(d.store.as_ref().and_then(|s| rates.get(&s.id).copied().flatten()));
                        v
                    })
                    .collect();
                p.json(&json!({"time_ms": taken_ms, "stores": rows}))?;
            }
            Format::Text => {
                let mut out = std::io::stdout().lock();
                if tty {
                    write!(out, "\x1b[2J\x1b[H")?;
                }
                writeln!(out, "stores, as the meta leader knows them (every {}s; Ctrl-C to stop)", interval.as_secs_f64())?;
                write!(out, "{}", frame(&stores, &rates))?;
                writeln!(out)?;
                out.flush()?;
            }
        }
        shown += 1;
        if count.is_some_and(|n| shown >= n) {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_requests_over_heartbeat_time() {
        assert_eq!(rate(None, (10, 1_000)), None);
        assert_eq!(rate(Some((10, 1_000)), (10, 1_000)), None, "same heartbeat: no new information");
        assert_eq!(rate(Some((10, 1_000)), (510, 3_000)), Some(250.0));
        assert_eq!(rate(Some((500, 1_000)), (3, 2_000)), None, "the store restarted: its counter went back");
    }
}
