//! `avatar-gateway`: the command line. Errors are reported with context here (anyhow), typed everywhere else.

use std::path::PathBuf;

use anyhow::Context as _;
use avatar_gateway::config::Config;
use avatar_gateway::engine::Engine;
use avatar_gateway::store::{MemoryStore, RedbStore, Store};
use clap::{Parser, Subcommand};

/// Keeps every account's avatar consistent across XEP-0008, vCard-temp and XEP-0084, as an external component
/// (XEP-0114) beside an XMPP server that grants it XEP-0356 privileges and XEP-0355 delegations.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Connect to the server and bridge avatars until interrupted (Ctrl-C / SIGTERM).
    ///
    /// Every config key can also be given as AVATAR_GATEWAY_<SECTION>_<KEY> in the environment or with
    /// --set section.key=value; the command line wins over the environment, which wins over the file.
    Run {
        /// TOML config file (see avatar-gateway.example.toml).
        #[arg(short, long, env = "AVATAR_GATEWAY_CONFIG")]
        config: Option<PathBuf>,
        /// Override a config key, e.g. --set server.address=127.0.0.1:5347 (repeatable).
        #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
        overrides: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Run { config, overrides } => run(config, &overrides),
    }
}

fn run(file: Option<PathBuf>, overrides: &[String]) -> anyhow::Result<()> {
    let config = Config::load(file.as_deref(), std::env::vars(), overrides).context("invalid configuration")?;
    let store: Box<dyn Store> = match &config.store {
        Some(path) => Box::new(
            RedbStore::open(path, config.blob_budget_bytes)
                .with_context(|| format!("opening the store {}", path.display()))?,
        ),
        None => {
            tracing::warn!(
                "gateway.store is not set: state lives in memory and storage:client:avatar data is lost on exit"
            );
            Box::new(MemoryStore::new(config.blob_budget_bytes))
        }
    };
    let engine = Engine::new(config.engine.clone(), store);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(avatar_gateway::link::run(config.link, engine, shutdown_signal()));
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return ctrl_c.await.unwrap_or(()),
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
}
