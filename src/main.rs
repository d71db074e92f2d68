//! `avatar-gateway`: the command line. Errors are reported with context here (anyhow), typed everywhere else.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use avatar_gateway::config::Config;
use avatar_gateway::engine::Engine;
use avatar_gateway::image::ImageLimits;
use avatar_gateway::migrate::live::{self, SweepPace};
use avatar_gateway::migrate::xep0227;
use avatar_gateway::ops::logs::{self, LogFormat};
use avatar_gateway::ops::{Ops, http, notify};
use avatar_gateway::store::lease::Lease;
use avatar_gateway::store::{DryRunStore, MemoryStore, PostgresStore, RedbStore, Snapshot, Store};
use avatar_gateway::wire::xep0084::AccessModel;
use clap::{Parser, Subcommand};

/// Keeps every account's avatar consistent across XEP-0008, vCard-temp and XEP-0084, as an external component
/// (XEP-0114) beside an XMPP server that grants it XEP-0356 privileges and XEP-0355 delegations.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// How log lines are written to stderr: human, or json (one object per line, for collectors).
    #[arg(long, global = true, value_enum, default_value_t)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// The gateway's configuration, as `run` and `migrate live` read it.
#[derive(clap::Args)]
struct ConfigArgs {
    /// TOML config file (see avatar-gateway.example.toml).
    #[arg(short, long, env = "AVATAR_GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    /// Override a config key, e.g. --set server.address=127.0.0.1:5347 (repeatable).
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    overrides: Vec<String>,
}

impl ConfigArgs {
    fn load(&self) -> anyhow::Result<Config> {
        Config::load(self.config.as_deref(), std::env::vars(), &self.overrides).context("invalid configuration")
    }
}

#[derive(Subcommand)]
enum Command {
    /// Connect to the server and bridge avatars until interrupted (Ctrl-C / SIGTERM).
    ///
    /// Every config key can also be given as AVATAR_GATEWAY_<SECTION>_<KEY> in the environment or with
    /// --set section.key=value; the command line wins over the environment, which wins over the file.
    Run {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Check a deployment before it goes live: connect with these settings, wait for the server's grants, read a
    /// test account (nothing is written), print what works and the config lines to add; exit 0 only if complete.
    Check {
        #[command(flatten)]
        config: ConfigArgs,
        /// An account to read PEP and the vCard of, as the gateway would (a dry run: nothing is written).
        #[arg(long, value_name = "JID")]
        account: Option<String>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// How long to wait for the grants and the reads.
        #[arg(long, value_name = "SECONDS", default_value_t = 20)]
        timeout_secs: u64,
    },
    /// Give dormant accounts their XEP-0084 avatar: servers convert vCard avatars only when an account logs in.
    Migrate {
        #[command(subcommand)]
        command: MigrateCommand,
    },
}

#[derive(Subcommand)]
enum MigrateCommand {
    /// Add XEP-0084 avatar nodes to a XEP-0227 export, offline.
    ///
    /// For each account with a vCard PHOTO or XEP-0008 (storage:client:avatar) data but no usable XEP-0084 avatar,
    /// adds the avatar PEP nodes (configuration and items) as the server's importer reads them; everything else is
    /// copied byte for byte. Accepts one file (XInclude'd files are followed and written next to OUT), or a
    /// directory such as prosody-migrator's one file per user (OUT is then a directory with the same names).
    /// Accounts already having an avatar (or "no avatar") in XEP-0084 are skipped; bad images are refused and the
    /// account copied unchanged. Prints a summary; --report writes every account's outcome as JSON.
    Xep0227 {
        /// The export: a XEP-0227 file, or a directory of them.
        #[arg(value_name = "IN")]
        input: PathBuf,
        /// Where the new export goes; must not exist (nothing is ever overwritten).
        #[arg(value_name = "OUT", required_unless_present = "dry_run")]
        output: Option<PathBuf>,
        /// Read and report only; write no export.
        #[arg(long)]
        dry_run: bool,
        /// Write the per-account report (JSON) to this file.
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// Access model of the avatar nodes created (nodes already configured keep theirs). The default, open,
        /// keeps the exposure the avatar already had: a vCard could be read by anyone.
        #[arg(long, value_name = "MODEL", default_value = "open", value_parser = access_model)]
        access_model: AccessModel,
    },
    /// Sweep accounts on a running server over the component link, and publish what is missing.
    ///
    /// For each account: privileged reads of its vCard and XEP-0084 nodes, then the writes the gateway would make
    /// (vCard PHOTO → XEP-0084 even on a server that converts, since servers convert only when a vCard is set or
    /// its owner logs in; XEP-0084 → vCard on one that does not). Uses the same config as `run`, store included:
    /// stop `avatar-gateway run` first (one connection per component). Each finished account is appended to the
    /// checkpoint; a rerun with the same checkpoint skips them, so Ctrl-C or a crash loses nothing.
    Live(LiveArgs),
}

/// `migrate live`'s arguments.
#[derive(clap::Args)]
struct LiveArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The accounts, one per line ("-": stdin), e.g. the output of `prosodyctl shell user list example.org`
    /// or `ejabberdctl registered_users example.org` (with --domain).
    #[arg(long, value_name = "FILE", required_unless_present = "known")]
    accounts: Option<PathBuf>,
    /// Every account the gateway's store knows (met before by `avatar-gateway run`).
    #[arg(long, conflicts_with = "accounts")]
    known: bool,
    /// Domain for lines that hold a bare localpart (ejabberdctl's format).
    #[arg(long, value_name = "DOMAIN")]
    domain: Option<String>,
    /// Finished accounts, one JSON record per line; created if missing, appended to.
    #[arg(long, value_name = "FILE", default_value = "migrate-live.checkpoint")]
    checkpoint: PathBuf,
    /// Write the JSON report of every account in the checkpoint to this file at the end.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Read and report only: no write to the server, the store or the checkpoint.
    #[arg(long)]
    dry_run: bool,
    /// Accounts started per second at most.
    #[arg(long, value_name = "N", default_value_t = 10.0)]
    rate: f64,
    /// Accounts in flight at once at most.
    #[arg(long, value_name = "N", default_value_t = 8)]
    concurrency: usize,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    logs::init(cli.log_format);
    match cli.command {
        Command::Run { config } => run(&config),
        Command::Check { config, account, json, timeout_secs } => {
            check(&config, account.as_deref(), json, timeout_secs)
        }
        Command::Migrate { command: MigrateCommand::Live(args) } => migrate_live(&args),
        Command::Migrate { command: MigrateCommand::Xep0227 { input, output, dry_run, report, access_model } } => {
            migrate_xep0227(input, output.filter(|_| !dry_run), report, access_model)
        }
    }
}

fn access_model(value: &str) -> Result<AccessModel, String> {
    AccessModel::parse(value).ok_or_else(|| "expected open, presence, roster or whitelist".to_owned())
}

fn migrate_xep0227(
    input: PathBuf,
    output: Option<PathBuf>,
    report: Option<PathBuf>,
    access_model: AccessModel,
) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    let options = xep0227::Options {
        input,
        output,
        report,
        access_model,
        limits: ImageLimits::default(),
        progress: std::io::stdout().is_terminal(),
    };
    let summary = xep0227::run(&options).context("migration stopped")?;
    print!("{summary}");
    match &options.output {
        None => println!("dry run: no export written"),
        Some(out) => println!("new export: {}", out.display()),
    }
    if let Some(report) = &options.report {
        println!("report: {}", report.display());
    }
    Ok(())
}

fn migrate_live(args: &LiveArgs) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    let mut config = args.config.load()?;
    config.engine.dry_run = args.dry_run;
    // The server takes one component session at a time, so `run` is not connected meanwhile; it sends every stored
    // hash to mod_avatar_gateway when it connects again (engine::stamp), the ones swept here included.
    config.engine.stamp_presence = false;
    let pace = SweepPace {
        interval: Duration::from_secs_f64(1.0 / args.rate.max(0.001)),
        concurrency: args.concurrency,
        // The server announces its grants right after the handshake: start once the capability report is out.
        settle_after_connect: config.engine.report_delay + Duration::from_millis(100),
    };
    // Unfenced: like `run`'s, the sweep needs the only component session, so no gateway is active meanwhile.
    let mut store = open_store(&config, None)?;
    let domain = args.domain.as_deref();
    let accounts = match &args.accounts {
        _ if args.known => {
            let known = store.accounts().context("listing the store's accounts")?;
            live::accounts::read(known.join("\n").as_bytes(), None)
        }
        Some(path) if path.as_os_str() == "-" => live::accounts::read(std::io::stdin().lock(), domain),
        Some(path) => {
            let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            live::accounts::read(std::io::BufReader::new(file), domain)
        }
        None => anyhow::bail!("give --accounts FILE or --known"),
    }
    .context("reading the accounts")?;
    for (line, text) in &accounts.ignored {
        tracing::warn!("accounts line {line} names no account, ignored: {text:?}");
    }
    if args.dry_run {
        println!("dry run: reads only; nothing is written to the server, the store or the checkpoint");
        store = Box::new(DryRunStore::new(store, config.blob_budget_bytes));
    }
    let engine = Engine::new(config.engine.clone(), snapshot(&*store)?);
    let options = live::run::LiveOptions {
        accounts: accounts.accounts,
        checkpoint: args.checkpoint.clone(),
        report: args.report.clone(),
        dry_run: args.dry_run,
        pace,
        progress: std::io::stdout().is_terminal(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    let done = runtime
        .block_on(live::run::run(config.link, engine, store, options, shutdown_signal()))
        .context("sweep stopped")?;
    if done.resumed > 0 {
        println!("{} already done (checkpoint)", done.resumed);
    }
    print!("{}", done.summary);
    if done.remaining > 0 {
        println!("interrupted: {} accounts left; run again with the same --checkpoint to resume", done.remaining);
    }
    Ok(())
}

/// The configured store; `epoch`: the lease's fencing token its commits must carry (PostgreSQL only).
fn open_store(config: &Config, epoch: Option<i64>) -> anyhow::Result<Box<dyn Store>> {
    if let Some(url) = postgres_url(config) {
        let store =
            PostgresStore::open(url, config.blob_budget_bytes, epoch).context("opening the PostgreSQL store")?;
        return Ok(Box::new(store));
    }
    Ok(match &config.store {
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
    })
}

/// Everything the store holds but blob bytes, for the engine to start from (it reports corrupt records).
fn snapshot(store: &dyn Store) -> anyhow::Result<Snapshot> {
    Snapshot::read(store).context("reading the store")
}

fn check(args: &ConfigArgs, account: Option<&str>, json: bool, timeout_secs: u64) -> anyhow::Result<()> {
    let mut config = args.load()?;
    config.engine.dry_run = true;
    let account = account.map(str::parse).transpose().context("--account must be a bare JID")?;
    let engine = Engine::new(config.engine.clone(), Snapshot::default());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    let timeout = Duration::from_secs(timeout_secs);
    let report = runtime.block_on(avatar_gateway::link::check::check(&config.link, engine, account, timeout));
    if json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    std::process::exit(if report.complete() { 0 } else { 1 });
}

fn run(args: &ConfigArgs) -> anyhow::Result<()> {
    let config = args.load()?;
    let ops = Ops::new(config.engine.hosts.clone(), config.engine.iq_timeout);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async {
        if let Some(address) = config.ops_listen {
            tokio::spawn(http::serve(http::bind(address).await?, ops.clone()));
        }
        tokio::spawn(notify::watchdog());
        anyhow::Ok(())
    })?;
    loop {
        // On PostgreSQL, only the lease holder connects to the server; a standby waits in `acquire`.
        let lease = match postgres_url(&config) {
            Some(url) => {
                ops.set_standby(true, None);
                // Off the runtime's thread, so that /metrics and /health answer while this instance stands by.
                let (url, name) = (url.to_owned(), instance_name());
                let taken = runtime
                    .block_on(async move { tokio::task::spawn_blocking(move || Lease::acquire(&url, &name)).await });
                let lease = taken.context("waiting for the lease")?.context("taking the lease")?;
                ops.set_standby(false, Some(lease.epoch()));
                Some(lease)
            }
            None => None,
        };
        let store = open_store(&config, lease.as_ref().map(Lease::epoch))?;
        // A standby that takes over warms from the database: the engine starts from what the old leader committed.
        let engine = Engine::new(config.engine.clone(), snapshot(&*store)?);
        let mut shut_down = false;
        let until = async {
            tokio::select! {
                () = shutdown_signal() => {
                    shut_down = true;
                    ops.begin_shutdown();
                }
                () = lease_lost(lease.as_ref()) => {}
            }
        };
        runtime.block_on(avatar_gateway::link::run(config.link.clone(), engine, store, ops.clone(), until));
        if shut_down {
            // An image job abandoned by the drain still holds a blocking thread: do not wait for it.
            runtime.shutdown_timeout(Duration::from_millis(100));
            return Ok(());
        }
        // Its commits are fenced from now on; what it had not committed is redone by the new leader.
        tracing::warn!("lost the lease: disconnected, standing by again");
    }
}

/// The PostgreSQL URL when `gateway.store` is one.
fn postgres_url(config: &Config) -> Option<&str> {
    config.store.as_deref()?.to_str().filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
}

/// This instance's name in the lease row: host and PID.
fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}:{}", host.trim(), std::process::id())
}

/// Resolves once `lease` is lost; never without one.
async fn lease_lost(lease: Option<&Lease>) {
    let Some(lease) = lease else { return std::future::pending().await };
    while !lease.is_lost() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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
