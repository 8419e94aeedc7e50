//! `shoalctl backup create|list|describe|delete` and `shoalctl restore`: the
//! commands over [`shoal_client::backup`]. A location is `file:///DIR` or
//! `s3://BUCKET/PREFIX` (S3 settings from the `AWS_*` environment); a backup
//! is `LOCATION/NAME`. `create` needs the operator's certificate when the
//! nodes restrict Admin calls (fencing is one).

use std::process::ExitCode;

use anyhow::Result;
use serde_json::{Value, json};
use shoal_client::backup::{self, Location, Manifest};

use crate::commands::connect;
use crate::output::{Format, Printer};

#[derive(clap::Subcommand)]
pub enum BackupCommand {
    /// Back the whole cluster up, consistently and online, into LOCATION/NAME.
    Create {
        /// Where backups are kept: file:///DIR or s3://BUCKET/PREFIX.
        #[arg(long)]
        destination: String,
        /// The backup's name (default: backup-YYYYMMDD-HHMMSS, UTC).
        #[arg(long)]
        name: Option<String>,
    },
    /// List the backups in LOCATION (complete or not).
    List { location: String },
    /// Show a backup's manifest summary: LOCATION/NAME.
    Describe { backup: String },
    /// Delete a backup: LOCATION/NAME.
    Delete { backup: String },
}

/// `shoalctl restore`: into a new, empty cluster.
#[derive(clap::Args)]
pub struct RestoreArgs {
    /// The backup: LOCATION/NAME.
    #[arg(long)]
    source: String,
    /// Where the backup's files are downloaded and checked first.
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    scratch: std::path::PathBuf,
}

fn default_name() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!("backup-{:04}{:02}{:02}-{:02}{:02}{:02}", now.year(), u8::from(now.month()), now.day(), now.hour(), now.minute(), now.second())
}

fn summary(m: &Manifest) -> Value {
    json!({
        "name": m.name,
        "created_unix_ms": m.created_unix_ms,
        "fencing_began_unix_ms": m.fencing_began_unix_ms,
        "all_fenced_unix_ms": m.all_fenced_unix_ms,
        "fence_ms": m.all_fenced_unix_ms.saturating_sub(m.fencing_began_unix_ms),
        "regions": m.regions.len(),
        "files": m.files().count(),
        "keys": m.total_keys(),
        "bytes": m.total_bytes(),
        "column_families": m.column_families(),
    })
}

fn print_summary(p: &Printer, url: &str, m: &Manifest) -> Result<()> {
    if p.format == Format::Json {
        let mut v = summary(m);
        v["url"] = json!(url);
        return p.json(&v);
    }
    println!("backup   {url}");
    println!("regions  {}  files {}  keys {}  bytes {}", m.regions.len(), m.files().count(), m.total_keys(), m.total_bytes());
    println!("fenced   writes held {} ms", m.all_fenced_unix_ms.saturating_sub(m.fencing_began_unix_ms));
    Ok(())
}

pub async fn run(endpoints: &[String], p: &Printer, cmd: BackupCommand) -> Result<ExitCode> {
    match cmd {
        BackupCommand::Create { destination, name } => {
            let dest = Location::parse(&destination)?;
            let name = name.unwrap_or_else(default_name);
            let manifest = backup::create(&connect(endpoints)?, &dest, &name).await?;
            print_summary(p, &dest.child(&name).url, &manifest)?;
        }
        BackupCommand::List { location } => {
            let loc = Location::parse(&location)?;
            let found = backup::list(&loc).await?;
            if p.format == Format::Json {
                let rows: Vec<Value> = found
                    .iter()
                    .map(|b| match &b.manifest {
                        Some(m) => {
                            let mut v = summary(m);
                            v["complete"] = json!(true);
                            v
                        }
                        None => json!({"name": b.name, "complete": false, "problem": b.problem}),
                    })
                    .collect();
                p.json(&json!(rows))?;
            } else {
                println!("{:<32} {:<10} {:>8} {:>12} {:>14}", "NAME", "STATE", "REGIONS", "KEYS", "BYTES");
                for b in &found {
                    match &b.manifest {
                        Some(m) => println!(
                            "{:<32} {:<10} {:>8} {:>12} {:>14}",
                            b.name,
                            "complete",
                            m.regions.len(),
                            m.total_keys(),
                            m.total_bytes()
                        ),
                        None => println!("{:<32} {:<10} {}", b.name, "INCOMPLETE", b.problem.as_deref().unwrap_or_default()),
                    }
                }
            }
        }
        BackupCommand::Describe { backup: url } => {
            let loc = Location::parse(&url)?;
            let m = backup::read_manifest(&loc).await?;
            print_summary(p, &loc.url, &m)?;
            if p.format == Format::Text {
                println!("{:>8} {:>10} {:>8} {:<24} {:<24} FILES", "REGION", "INDEX", "EPOCH", "START", "END");
                for r in &m.regions {
                    let files: Vec<String> = r.files.iter().map(|f| format!("{}:{}keys", f.cf, f.keys)).collect();
                    let epoch = format!("{}/{}", r.conf_ver, r.version);
                    println!("{:>8} {:>10} {:>8} {:<24} {:<24} {}", r.id, r.index, epoch, r.start_key, r.end_key, files.join(" "));
                }
            }
        }
        BackupCommand::Delete { backup: url } => {
            let loc = Location::parse(&url)?;
            let n = backup::delete(&loc).await?;
            if p.format == Format::Json {
                p.json(&json!({"deleted": loc.url, "objects": n}))?;
            } else {
                println!("deleted {} ({n} objects)", loc.url);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn restore(endpoints: &[String], p: &Printer, args: RestoreArgs) -> Result<ExitCode> {
    let source = Location::parse(&args.source)?;
    let report = backup::restore(&connect(endpoints)?, &source, &args.scratch).await?;
    if p.format == Format::Json {
        p.json(&json!({"restored": report.name, "keys": report.keys, "bytes": report.bytes, "seconds": report.seconds}))?;
    } else {
        println!("restored {} keys ({} bytes) from {} in {:.1} s", report.keys, report.bytes, source.url, report.seconds);
    }
    Ok(ExitCode::SUCCESS)
}
