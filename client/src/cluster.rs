//! `shoalctl region list|show` and `shoalctl store list`: the region directory
//! and the store registry, as the Meta service knows them; `shoalctl store
//! join|drain|cancel-drain|remove|status ID`: the store lifecycle (Admin);
//! `shoalctl store label ID KEY=VALUE...`: its topology labels (`zone`). A
//! refusal exits nonzero with the server's reason.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::{Value, json};
use shoal_client::{RegionInfo, RegionLocation, StoreDetail, StoreMeta, StoreState, StoreStatus};

use crate::commands::connect;
use crate::output::{Format, Printer};

#[derive(clap::Subcommand)]
pub enum RegionCommand {
    /// List the regions overlapping [start, end), in key order.
    List {
        #[arg(long, default_value = "")]
        start: String,
        #[arg(long, default_value = "")]
        end: String,
        /// Most regions to list; 0 lists all.
        #[arg(long, default_value_t = 0)]
        limit: usize,
    },
    /// Show the region holding KEY, its leader and the stores of its peers.
    Show { key: String },
}

#[derive(clap::Subcommand)]
pub enum StoreCommand {
    /// List every store with its address, state and last reported stats.
    List,
    /// Admit a PENDING store: placement seeds it with its share of regions.
    Join { id: u64 },
    /// Move every peer and leader off a store (refused below the replication factor).
    Drain { id: u64 },
    /// Stop draining a store; it stays where it is, UP.
    CancelDrain { id: u64 },
    /// Tombstone a drained store (refused while it holds peers).
    Remove { id: u64 },
    /// Show a store's state, what it holds and what is left to move.
    Status { id: u64 },
    /// Replace a store's topology labels, KEY=VALUE each (`zone=…`: placement
    /// keeps each region's replicas in distinct zones); none clears them.
    Label { id: u64, labels: Vec<String> },
}

pub async fn region(endpoints: &[String], p: &Printer, cmd: RegionCommand) -> Result<ExitCode> {
    let client = connect(endpoints)?;
    match cmd {
        RegionCommand::List { start, end, limit } => {
            let (start, end) = (p.input("start", &start)?, p.input("end", &end)?);
            let regions = client.scan_regions(&start, &end, limit).await?;
            match p.format {
                Format::Json => p.json(&Value::Array(regions.iter().map(|r| region_json(p, r)).collect()))?,
                Format::Text => print_regions(p, &regions),
            }
        }
        RegionCommand::Show { key } => {
            let key = p.input("key", &key)?;
            let loc = client.region_by_key(&key).await?;
            match p.format {
                Format::Json => p.json(&location_json(p, &loc))?,
                Format::Text => {
                    print_regions(p, std::slice::from_ref(&loc.info));
                    println!();
                    print_table(
                        &["STORE", "NAME", "ADDRESS", "STATE"],
                        &[true, false, false, false],
                        loc.stores.iter().map(|s| vec![s.id.to_string(), s.name.clone(), s.address.clone(), state(s.state)]).collect(),
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn store(endpoints: &[String], p: &Printer, cmd: StoreCommand) -> Result<ExitCode> {
    let client = connect(endpoints)?;
    match cmd {
        StoreCommand::List => {
            let stores = client.list_stores().await?;
            match p.format {
                Format::Json => p.json(&Value::Array(stores.iter().map(store_json).collect()))?,
                Format::Text => print_stores(&stores),
            }
        }
        StoreCommand::Join { id } => show_status(p, client.join_store(id).await?)?,
        StoreCommand::Drain { id } => show_status(p, client.drain_store(id).await?)?,
        StoreCommand::CancelDrain { id } => show_status(p, client.cancel_drain(id).await?)?,
        StoreCommand::Remove { id } => show_status(p, client.remove_store(id).await?)?,
        StoreCommand::Status { id } => show_status(p, client.store_status(id).await?)?,
        StoreCommand::Label { id, labels } => {
            let mut map = std::collections::BTreeMap::new();
            for l in &labels {
                let (k, v) = l.split_once('=').ok_or_else(|| anyhow::anyhow!("label {l:?} is not KEY=VALUE"))?;
                map.insert(k.to_string(), v.to_string());
            }
            show_status(p, client.set_store_labels(id, &map).await?)?
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show_status(p: &Printer, s: StoreStatus) -> Result<()> {
    match p.format {
        Format::Json => p.json(&status_json(&s)),
        Format::Text => {
            let store = s.store.clone().unwrap_or_default();
            print_table(
                &["STORE", "NAME", "ADDRESS", "STATE", "REGIONS", "LEADERS", "LEARNERS", "TO MOVE", "LAST HEARTBEAT"],
                &[true, false, false, false, true, true, true, true, false],
                vec![vec![
                    store.id.to_string(),
                    store.name,
                    store.address,
                    state(s.state),
                    s.region_count.to_string(),
                    s.leader_count.to_string(),
                    s.learner_count.to_string(),
                    human(s.bytes_to_move),
                    if s.last_heartbeat_ms == 0 { "-".into() } else { s.last_heartbeat_ms.to_string() },
                ]],
            );
            Ok(())
        }
    }
}

/// A store's status as JSON: the state shown (DOWN included), lowercase.
pub fn status_json(s: &StoreStatus) -> Value {
    let store = s.store.clone().unwrap_or_default();
    let st = s.stats.unwrap_or_default();
    json!({
        "id": store.id,
        "name": store.name,
        "address": store.address,
        "labels": store.labels,
        "state": state(s.state),
        "region_count": s.region_count,
        "leader_count": s.leader_count,
        "learner_count": s.learner_count,
        "bytes_to_move": s.bytes_to_move,
        "last_heartbeat_ms": s.last_heartbeat_ms,
        "capacity_bytes": st.capacity_bytes,
        "available_bytes": st.available_bytes,
        "used_bytes": st.used_bytes,
    })
}

fn state(s: i32) -> String {
    match StoreState::try_from(s) {
        Ok(StoreState::Up) => "up".into(),
        Ok(StoreState::Pending) => "pending".into(),
        Ok(StoreState::Joining) => "joining".into(),
        Ok(StoreState::Draining) => "draining".into(),
        Ok(StoreState::Tombstone) => "tombstone".into(),
        Ok(StoreState::Down) => "down".into(),
        Ok(StoreState::Unknown) => "unknown".into(),
        Err(_) => s.to_string(),
    }
}

/// A region as JSON; keys as text, or hex with `--hex`.
pub fn region_json(p: &Printer, info: &RegionInfo) -> Value {
    let region = info.region.clone().unwrap_or_default();
    let epoch = region.epoch.unwrap_or_default();
    json!({
        "id": region.id,
        "start_key": p.text(&region.start_key),
        "end_key": p.text(&region.end_key),
        "epoch": {"conf_ver": epoch.conf_ver, "version": epoch.version},
        "peers": region.peers.iter().map(|x| json!({"id": x.id, "store_id": x.store_id, "is_learner": x.is_learner})).collect::<Vec<_>>(),
        "leader_store_id": info.leader_store_id,
        "leader_term": info.leader_term,
        "approximate_size": info.approximate_size,
        "approximate_keys": info.approximate_keys,
        "written_bytes_per_sec": info.written_bytes_per_sec,
    })
}

fn store_meta_json(s: &StoreMeta) -> Value {
    json!({"id": s.id, "name": s.name, "address": s.address, "client_address": s.client_address, "state": state(s.state)})
}

fn location_json(p: &Printer, loc: &RegionLocation) -> Value {
    let mut v = region_json(p, &loc.info);
    v["stores"] = Value::Array(loc.stores.iter().map(store_meta_json).collect());
    v
}

pub fn store_json(d: &StoreDetail) -> Value {
    let s = d.store.clone().unwrap_or_default();
    let st = d.stats.unwrap_or_default();
    let mut v = store_meta_json(&s);
    // Which data directory registered it (empty for bootstrapped stores): tells
    // apart two stores of one name, the older one having lost its data.
    v["instance"] = json!(s.instance);
    v["labels"] = json!(s.labels);
    for (k, n) in [
        ("region_count", st.region_count),
        ("leader_count", st.leader_count),
        ("capacity_bytes", st.capacity_bytes),
        ("available_bytes", st.available_bytes),
        ("used_bytes", st.used_bytes),
        ("last_heartbeat_ms", st.last_heartbeat_ms),
        ("requests_total", st.requests_total),
    ] {
        v[k] = json!(n);
    }
    v
}

/// A key for a table cell: quoted and escaped, with the key space's ends named.
fn key_cell(p: &Printer, key: &[u8], empty: &str) -> String {
    if key.is_empty() { empty.to_string() } else { format!("{:?}", p.text(key)) }
}

/// Bytes in binary units, for people.
pub(crate) fn human(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[unit]) }
}

fn dash_if_zero(n: u64) -> String {
    if n == 0 { "-".into() } else { n.to_string() }
}

fn print_regions(p: &Printer, regions: &[RegionInfo]) {
    let rows = regions
        .iter()
        .map(|info| {
            let r = info.region.clone().unwrap_or_default();
            let epoch = r.epoch.unwrap_or_default();
            let peers: Vec<String> =
                r.peers.iter().map(|x| if x.is_learner { format!("{}(learner)", x.store_id) } else { x.store_id.to_string() }).collect();
            vec![
                r.id.to_string(),
                key_cell(p, &r.start_key, "-inf"),
                key_cell(p, &r.end_key, "+inf"),
                epoch.version.to_string(),
                epoch.conf_ver.to_string(),
                dash_if_zero(info.leader_store_id),
                peers.join(","),
                human(info.approximate_size),
                info.approximate_keys.to_string(),
            ]
        })
        .collect();
    print_table(
        &["REGION", "START", "END", "VERSION", "CONF_VER", "LEADER", "STORES", "SIZE", "KEYS"],
        &[true, false, false, true, true, true, false, true, true],
        rows,
    );
}

/// A store's first table cells: STORE, NAME, ADDRESS, STATE, REGIONS, LEADERS.
pub(crate) fn store_cells(d: &StoreDetail) -> Vec<String> {
    let s = d.store.clone().unwrap_or_default();
    let st = d.stats.unwrap_or_default();
    vec![s.id.to_string(), s.name, s.address, state(s.state), st.region_count.to_string(), st.leader_count.to_string()]
}

fn print_stores(stores: &[StoreDetail]) {
    let rows = stores
        .iter()
        .map(|d| {
            let st = d.stats.unwrap_or_default();
            let mut row = store_cells(d);
            row.extend([human(st.capacity_bytes), human(st.available_bytes)]);
            row
        })
        .collect();
    print_table(
        &["STORE", "NAME", "ADDRESS", "STATE", "REGIONS", "LEADERS", "CAPACITY", "AVAILABLE"],
        &[true, false, false, false, true, true, true, true],
        rows,
    );
}

/// Prints `rows` under `headers`, each column as wide as its widest cell,
/// right-aligned where `right` says so.
fn print_table(headers: &[&str], right: &[bool], rows: Vec<Vec<String>>) {
    print!("{}", table(headers, right, &rows));
}

pub(crate) fn table(headers: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let padded: Vec<String> =
            cells.iter().zip(&widths).zip(right).map(|((c, &w), &r)| if r { format!("{c:>w$}") } else { format!("{c:<w$}") }).collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use shoal_client::{Peer, Region, RegionEpoch, StoreStats};

    use super::*;

    fn printer(hex: bool) -> Printer {
        Printer { format: Format::Json, hex }
    }

    fn info() -> RegionInfo {
        RegionInfo {
            region: Some(Region {
                id: 7,
                start_key: b"a\x00".to_vec(),
                end_key: vec![],
                epoch: Some(RegionEpoch { conf_ver: 3, version: 5 }),
                peers: vec![Peer { id: 71, store_id: 1, is_learner: false }, Peer { id: 72, store_id: 2, is_learner: true }],
            }),
            leader_store_id: 1,
            leader_term: 9,
            approximate_size: 2048,
            approximate_keys: 10,
            written_bytes_per_sec: 0,
        }
    }

    #[test]
    fn region_json_has_the_documented_fields() {
        let v = region_json(&printer(false), &info());
        assert_eq!(v["id"], 7);
        assert_eq!(v["start_key"], "a\u{0}");
        assert_eq!(v["end_key"], "");
        assert_eq!(v["epoch"], json!({"conf_ver": 3, "version": 5}));
        assert_eq!(v["peers"][1], json!({"id": 72, "store_id": 2, "is_learner": true}));
        assert_eq!(v["leader_store_id"], 1);
        assert_eq!(v["approximate_size"], 2048);
        assert_eq!(v["approximate_keys"], 10);
        let hex = region_json(&printer(true), &info());
        assert_eq!(hex["start_key"], "6100", "--hex shows keys as hex");
    }

    #[test]
    fn store_json_has_the_documented_fields() {
        let d = StoreDetail {
            store: Some(StoreMeta {
                id: 2,
                name: "n2".into(),
                address: "127.0.0.1:2".into(),
                state: StoreState::Up as i32,
                instance: "ab12".into(),
                client_address: "127.0.0.1:3".into(),
                labels: [("zone".to_string(), "a".to_string())].into(),
            }),
            stats: Some(StoreStats { capacity_bytes: 100, available_bytes: 40, region_count: 3, leader_count: 1, ..Default::default() }),
        };
        let v = store_json(&d);
        for (k, want) in [
            ("id", json!(2)),
            ("address", json!("127.0.0.1:2")),
            ("client_address", json!("127.0.0.1:3")),
            ("labels", json!({"zone": "a"})),
            ("instance", json!("ab12")),
            ("state", json!("up")),
            ("region_count", json!(3)),
            ("leader_count", json!(1)),
            ("capacity_bytes", json!(100)),
            ("available_bytes", json!(40)),
        ] {
            assert_eq!(v[k], want, "{k}");
        }
    }

    #[test]
    fn status_json_shows_the_state_in_lowercase() {
        let s = StoreStatus {
            store: Some(StoreMeta { id: 4, name: "n4".into(), address: "h:4".into(), state: StoreState::Up as i32, ..Default::default() }),
            state: StoreState::Down as i32,
            region_count: 5,
            leader_count: 2,
            learner_count: 1,
            bytes_to_move: 77,
            last_heartbeat_ms: 9,
            stats: None,
        };
        let v = status_json(&s);
        assert_eq!(v["state"], "down", "the shown state, not the stored one");
        for (k, want) in [("id", 4), ("region_count", 5), ("leader_count", 2), ("learner_count", 1), ("bytes_to_move", 77)] {
            assert_eq!(v[k], want, "{k}");
        }
    }

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["ID", "NAME", "N"],
            &[true, false, true],
            &[vec!["1".into(), "alpha".into(), "10".into()], vec!["200".into(), "b".into(), "7".into()]],
        );
        assert_eq!(t, " ID  NAME    N\n  1  alpha  10\n200  b       7\n");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(2048), "2.0 KiB");
        assert_eq!(human(5 * 1024 * 1024 * 1024), "5.0 GiB");
    }
}
