//! The data and status commands: put, get, delete, scan, status.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;
use shoal_client::{Client, ClientOptions, ReadConsistency};

use crate::output::{Format, Printer};

/// TLS settings from the global `--cacert`/`--cert`/`--key`, set once in `main`.
static TLS: std::sync::OnceLock<shoal_client::ClientTls> = std::sync::OnceLock::new();

pub(crate) fn use_tls(tls: shoal_client::ClientTls) {
    let _ = TLS.set(tls);
}

/// The options every command's client uses: the defaults, with TLS if asked.
pub(crate) fn client_options() -> ClientOptions {
    ClientOptions { tls: TLS.get().cloned(), ..ClientOptions::default() }
}

pub(crate) fn connect(endpoints: &[String]) -> Result<Client> {
    Ok(Client::new(endpoints, client_options())?)
}

pub async fn put(endpoints: &[String], p: &Printer, cf: &str, key: &str, value: &str) -> Result<ExitCode> {
    let (key, value) = (p.input("key", key)?, p.input("value", value)?);
    connect(endpoints)?.put(cf, &key, &value).await?;
    if p.format == Format::Json {
        p.json(&json!({"ok": true}))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn get(endpoints: &[String], p: &Printer, cf: &str, key: &str, stale: bool) -> Result<ExitCode> {
    let key = p.input("key", key)?;
    let consistency = if stale { ReadConsistency::Stale } else { ReadConsistency::Linearizable };
    let value = connect(endpoints)?.get_with(cf, &key, consistency).await?;
    match (value, p.format) {
        (Some(v), Format::Text) => {
            let mut out = std::io::stdout().lock();
            p.raw(&mut out, &v)?;
            out.write_all(b"\n")?;
            Ok(ExitCode::SUCCESS)
        }
        (Some(v), Format::Json) => {
            p.json(&json!({"found": true, "key": p.text(&key), "value": p.text(&v)}))?;
            Ok(ExitCode::SUCCESS)
        }
        (None, format) => {
            if format == Format::Json {
                p.json(&json!({"found": false, "key": p.text(&key)}))?;
            }
            eprintln!("key not found");
            Ok(ExitCode::from(1))
        }
    }
}

pub async fn delete(endpoints: &[String], p: &Printer, cf: &str, key: &str) -> Result<ExitCode> {
    let key = p.input("key", key)?;
    connect(endpoints)?.delete(cf, &key).await?;
    if p.format == Format::Json {
        p.json(&json!({"ok": true}))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn scan(endpoints: &[String], p: &Printer, cf: &str, start: &str, end: &str, limit: usize) -> Result<ExitCode> {
    let (start, end) = (p.input("start", start)?, p.input("end", end)?);
    let pairs = connect(endpoints)?.scan(cf, &start, &end, limit).await?;
    match p.format {
        Format::Text => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for (k, v) in &pairs {
                p.raw(&mut out, k)?;
                out.write_all(b"\t")?;
                p.raw(&mut out, v)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
        }
        Format::Json => {
            let rows: Vec<_> = pairs.iter().map(|(k, v)| json!({"key": p.text(k), "value": p.text(v)})).collect();
            p.json(&serde_json::Value::Array(rows))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn status(endpoints: &[String], p: &Printer) -> Result<ExitCode> {
    let client = connect(endpoints)?;
    let mut stores = Vec::new();
    let mut regions = Vec::new();
    let mut any = false;
    for ep in client.endpoints() {
        match client.status_of(ep).await {
            Ok(s) => {
                any = true;
                let store = s.store.unwrap_or_default();
                stores.push(json!({"id": store.id, "name": store.name, "address": store.address, "up": true,
                    "region_count": s.regions.len(), "leader_count": s.regions.iter().filter(|r| r.is_leader).count()}));
                for r in s.regions {
                    let region = r.region.unwrap_or_default();
                    let epoch = region.epoch.unwrap_or_default();
                    regions.push(json!({"id": region.id, "store_id": store.id, "start_key": p.text(&region.start_key), "end_key": p.text(&region.end_key),
                        "epoch": {"conf_ver": epoch.conf_ver, "version": epoch.version}, "peers": region.peers.iter().map(|x| json!({"id": x.id, "store_id": x.store_id})).collect::<Vec<_>>(),
                        "leader_store_id": r.leader_store_id, "is_leader": r.is_leader, "term": r.term, "commit_index": r.commit_index, "applied_index": r.applied_index}));
                }
            }
            Err(e) => stores.push(json!({"address": ep, "up": false, "error": e.to_string()})),
        }
    }
    match p.format {
        Format::Json => p.json(&json!({"stores": stores, "regions": regions}))?,
        Format::Text => {
            let show = |v: &serde_json::Value| match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => "-".to_string(),
                other => other.to_string(),
            };
            println!("{:<6} {:<12} {:<24} {:<5} {:>7} {:>7}", "STORE", "NAME", "ADDRESS", "UP", "REGIONS", "LEADERS");
            for s in &stores {
                println!(
                    "{:<6} {:<12} {:<24} {:<5} {:>7} {:>7}",
                    show(&s["id"]),
                    show(&s["name"]),
                    show(&s["address"]),
                    show(&s["up"]),
                    show(&s["region_count"]),
                    show(&s["leader_count"])
                );
            }
            println!();
            println!(
                "{:<7} {:<6} {:<24} {:>12} {:>6} {:>9} {:>9}",
                "REGION", "STORE", "RANGE", "LEADER-STORE", "TERM", "COMMIT", "APPLIED"
            );
            for r in &regions {
                let range = format!("[{:?}, {:?})", show(&r["start_key"]), show(&r["end_key"]));
                println!(
                    "{:<7} {:<6} {:<24} {:>12} {:>6} {:>9} {:>9}",
                    show(&r["id"]),
                    show(&r["store_id"]),
                    range,
                    show(&r["leader_store_id"]),
                    show(&r["term"]),
                    show(&r["commit_index"]),
                    show(&r["applied_index"])
                );
            }
        }
    }
    Ok(if any { ExitCode::SUCCESS } else { ExitCode::from(2) })
}
