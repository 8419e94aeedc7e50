//! `shoalctl`: read and write a Shoal cluster, inspect it, run a local
//! playground, benchmark it, back it up and restore it. See `shoalctl --help`.
//!
//! Exit codes: 0 success; 1 `get` of a missing key; 2 any error.

mod backups;
mod bench;
mod certs;
mod cluster;
mod commands;
mod output;
mod playground;
mod process;
mod watch;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use output::Format;

#[derive(Parser)]
#[command(name = "shoalctl", version, about = "Command-line client for Shoal, a distributed key-value store")]
struct Cli {
    /// Comma-separated HOST:PORT of cluster nodes.
    #[arg(long, global = true, env = "SHOAL_ENDPOINTS", value_delimiter = ',', default_value = "127.0.0.1:20160")]
    endpoints: Vec<String>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    output: Format,
    /// Keys and values are hex, on input and output (for binary data).
    #[arg(long, global = true)]
    hex: bool,
    /// TLS: the CA certificate (PEM) that signed the nodes' certificates.
    #[arg(long = "cacert", id = "tls_cacert", global = true, env = "SHOAL_CACERT", value_name = "FILE")]
    cacert: Option<std::path::PathBuf>,
    /// TLS: this client's certificate (PEM), for nodes that ask for one.
    #[arg(long = "cert", id = "tls_cert", global = true, env = "SHOAL_CERT", value_name = "FILE", requires = "tls_cacert")]
    cert: Option<std::path::PathBuf>,
    /// TLS: the private key (PEM) of --cert.
    #[arg(long = "key", id = "tls_key", global = true, env = "SHOAL_KEY", value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write KEY = VALUE.
    Put {
        key: String,
        value: String,
        #[arg(long, default_value = "default")]
        cf: String,
    },
    /// Print the value of KEY (exit 1 when it does not exist).
    Get {
        key: String,
        #[arg(long, default_value = "default")]
        cf: String,
        /// Read whatever the contacted node has applied, without a ReadIndex.
        #[arg(long)]
        stale: bool,
    },
    /// Delete KEY.
    Delete {
        key: String,
        #[arg(long, default_value = "default")]
        cf: String,
    },
    /// Print key<TAB>value for each key in [start, end), in key order.
    Scan {
        #[arg(long, default_value = "")]
        start: String,
        #[arg(long, default_value = "")]
        end: String,
        /// Most pairs to print; 0 prints all.
        #[arg(long, default_value_t = 0)]
        limit: usize,
        #[arg(long, default_value = "default")]
        cf: String,
    },
    /// Show stores, regions and their leaders (each store's own view); with
    /// --watch, the stores as meta knows them with request rates, refreshed.
    Status {
        /// Refresh every --interval seconds until Ctrl-C.
        #[arg(long)]
        watch: bool,
        /// Seconds between two frames of --watch.
        #[arg(long, default_value_t = 2.0, requires = "watch")]
        interval: f64,
        /// Stop --watch after this many frames.
        #[arg(long, requires = "watch")]
        count: Option<u64>,
    },
    /// The region directory (from the Meta service).
    #[command(subcommand)]
    Region(cluster::RegionCommand),
    /// The store registry (from the Meta service).
    #[command(subcommand)]
    Store(cluster::StoreCommand),
    /// Start a local cluster of real shoal-node processes and wait for Ctrl-C.
    Playground(playground::PlaygroundArgs),
    /// Load keys, then run YCSB-like workloads and report throughput and latency.
    Bench(bench::BenchArgs),
    /// Online, consistent backups of the whole cluster (file:// or s3://).
    #[command(subcommand)]
    Backup(backups::BackupCommand),
    /// Restore a backup into this (new, empty) cluster, after checking every file.
    Restore(backups::RestoreArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let fmt = output::Printer { format: cli.output, hex: cli.hex };
    if let Some(ca) = &cli.cacert {
        match shoal_client::ClientTls::from_files(ca, cli.cert.as_deref(), cli.tls_key.as_deref()) {
            Ok(tls) => commands::use_tls(tls),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Put { key, value, cf } => commands::put(&cli.endpoints, &fmt, &cf, &key, &value).await,
            Command::Get { key, cf, stale } => commands::get(&cli.endpoints, &fmt, &cf, &key, stale).await,
            Command::Delete { key, cf } => commands::delete(&cli.endpoints, &fmt, &cf, &key).await,
            Command::Scan { start, end, limit, cf } => commands::scan(&cli.endpoints, &fmt, &cf, &start, &end, limit).await,
            Command::Status { watch: false, .. } => commands::status(&cli.endpoints, &fmt).await,
            Command::Status { watch: true, interval, count } => match Duration::try_from_secs_f64(interval) {
                Ok(every) if interval >= 0.1 => watch::run(&cli.endpoints, &fmt, every, count).await,
                _ => Err(anyhow::anyhow!("--interval must be at least 0.1 seconds, not {interval}")),
            },
            Command::Region(cmd) => cluster::region(&cli.endpoints, &fmt, cmd).await,
            Command::Store(cmd) => cluster::store(&cli.endpoints, &fmt, cmd).await,
            Command::Playground(args) => playground::run(args).await,
            Command::Bench(args) => bench::run(&cli.endpoints, &fmt, args).await,
            Command::Backup(cmd) => backups::run(&cli.endpoints, &fmt, cmd).await,
            Command::Restore(args) => backups::restore(&cli.endpoints, &fmt, args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
