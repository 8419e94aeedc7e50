//! `shoal-node`: one Shoal store. See `shoal-node --help`.

use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use shoal_node::config::{NodeArgs, NodeConfig};
use tokio::signal::unix::{SignalKind, signal};

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,raft=warn,h2=warn".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cfg = NodeConfig::from_args(NodeArgs::parse())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let shutdown = async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        };
        shoal_node::server::run(cfg, shutdown).await.context("shoal-node failed")
    })?;
    tracing::info!("stopped");
    Ok(())
}
