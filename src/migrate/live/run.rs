//! The shell of `migrate live`: the sweep over the component link, a checkpoint that makes it resumable, the report.
//!
//! The checkpoint is the report's records as JSON lines, appended and flushed as each account finishes: a crash or
//! Ctrl-C loses at most the accounts in flight, and a rerun with the same checkpoint skips what is in it. The final
//! report is rebuilt from the checkpoint, so it covers every run that contributed to it.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use xmpp_parsers::jid::BareJid;
use xmpp_parsers::minidom::Element;

use super::{Sweep, SweepPace};
use crate::avatar::AvatarHash;
use crate::engine::account::Scheme;
use crate::engine::{Engine, StoreRequest, SweepOutcome, SyncId, TranscodeJob, TranscodeResult};
use crate::link::{self, Driven, LinkConfig};
use crate::migrate::progress::Progress;
use crate::migrate::report::{AccountReport, Outcome, ReportWriter, Source, Summary, Why};
use crate::store::Store;

/// Why `migrate live` stopped.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The checkpoint could not be read or written.
    #[error("checkpoint {path}: {source}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// A line of the checkpoint is not a report record (not this tool's file, or damaged).
    #[error("checkpoint {path}, line {line}: not a report record ({detail})")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The parser's words.
        detail: String,
    },
    /// The report could not be written.
    #[error("report {path}: {source}")]
    Report {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
}

/// What to sweep and how.
pub struct LiveOptions {
    /// Accounts, in order.
    pub accounts: Vec<BareJid>,
    /// The checkpoint (JSON lines of finished accounts).
    pub checkpoint: PathBuf,
    /// Where to write the JSON report at the end.
    pub report: Option<PathBuf>,
    /// Read only, write nothing to the server, the store or the checkpoint.
    pub dry_run: bool,
    /// Rate and concurrency.
    pub pace: SweepPace,
    /// Draw a progress line (stdout is a terminal).
    pub progress: bool,
}

/// How a run ended.
pub struct LiveSummary {
    /// Every account in the checkpoint (this run and earlier ones); in a dry run, this run's.
    pub summary: Summary,
    /// Accounts left for a next run (interrupted).
    pub remaining: usize,
    /// Accounts skipped because the checkpoint had them.
    pub resumed: usize,
}

/// Sweeps the accounts over the link until done or `shutdown`; writes the report.
pub async fn run(
    link: LinkConfig,
    engine: Engine,
    store: Box<dyn Store>,
    options: LiveOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<LiveSummary, LiveError> {
    let checkpoint_err = |source| LiveError::Checkpoint { path: options.checkpoint.clone(), source };
    let done = read_checkpoint(&options.checkpoint)?;
    let todo: Vec<BareJid> = options.accounts.iter().filter(|a| !done.contains(a.as_str())).cloned().collect();
    let resumed = options.accounts.len() - todo.len();
    let records = if options.dry_run {
        // Nothing to resume from later: the report is written as the accounts finish.
        let report = match &options.report {
            Some(path) => Some((path.clone(), report_writer(path)?)),
            None => None,
        };
        Records::Dry { report, summary: Summary::default() }
    } else {
        let file = OpenOptions::new().create(true).append(true).open(&options.checkpoint).map_err(checkpoint_err)?;
        Records::Checkpoint(options.checkpoint.clone(), BufWriter::new(file))
    };
    let mut migration = Migration {
        progress: Progress::of_accounts(options.progress, todo.len() as u64),
        sweep: Sweep::new(engine, todo, options.pace.clone()),
        records,
        failed: None,
    };
    link::drive(&link, &mut migration, store, shutdown).await;
    migration.progress.finish();
    let remaining = migration.sweep.remaining();
    if let Some(e) = migration.failed {
        return Err(e);
    }
    let summary = match migration.records {
        Records::Dry { report: Some((path, writer)), summary } => {
            writer.finish(&summary).map_err(|source| LiveError::Report { path, source })?;
            summary
        }
        Records::Dry { report: None, summary } => summary,
        Records::Checkpoint(..) => write_report(&options)?,
    };
    Ok(LiveSummary { summary, remaining, resumed })
}

/// Where finished accounts go.
enum Records {
    /// Appended to the checkpoint (the report is rebuilt from it at the end).
    Checkpoint(PathBuf, BufWriter<File>),
    /// A dry run: straight into the report, if any, and counted.
    Dry { report: Option<(PathBuf, ReportWriter<BufWriter<File>>)>, summary: Summary },
}

/// The sweep, with its checkpoint and progress.
struct Migration {
    sweep: Sweep,
    records: Records,
    progress: Progress,
    /// The first failure to record an outcome: it stops the sweep.
    failed: Option<LiveError>,
}

impl Driven for Migration {
    fn handle_connected(&mut self, now: Instant) {
        self.sweep.handle_connected(now);
    }

    fn handle_disconnected(&mut self, now: Instant) {
        self.sweep.handle_disconnected(now);
    }

    fn handle_stanza(&mut self, now: Instant, stanza: Element) {
        self.sweep.handle_stanza(now, stanza);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.sweep.handle_timeout(now);
    }

    fn poll_transmit(&mut self) -> Option<Element> {
        self.sweep.poll_transmit()
    }

    fn poll_transcode(&mut self) -> Option<TranscodeJob> {
        self.sweep.poll_transcode()
    }

    fn handle_transcoded(&mut self, now: Instant, done: TranscodeResult) {
        self.sweep.handle_transcoded(now, done);
    }

    fn poll_store(&mut self) -> Option<StoreRequest> {
        self.sweep.poll_store()
    }

    fn handle_stored(&mut self, now: Instant, id: SyncId, outcome: Result<(), String>) {
        self.sweep.handle_stored(now, id, outcome);
    }

    fn handle_loaded(&mut self, now: Instant, hash: AvatarHash, bytes: Option<Vec<u8>>) {
        self.sweep.handle_loaded(now, hash, bytes);
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.sweep.poll_timeout()
    }

    fn drain(&mut self) {
        while let Some(event) = self.sweep.poll_event() {
            link::log_event(&event);
        }
        while let Some((account, outcome)) = self.sweep.poll_finished() {
            let record = report_of(&account, outcome);
            self.progress.account();
            if let Err(e) = self.records.add(&record) {
                self.failed.get_or_insert(e);
            }
        }
    }

    fn is_done(&self) -> bool {
        self.sweep.is_done() || self.failed.is_some()
    }
}

impl Records {
    fn add(&mut self, record: &AccountReport) -> Result<(), LiveError> {
        match self {
            Records::Checkpoint(path, file) => {
                let line = serde_json::to_string(record).map_err(io::Error::from);
                let written = line.and_then(|l| writeln!(file, "{l}")).and_then(|()| file.flush());
                written.map_err(|source| LiveError::Checkpoint { path: path.clone(), source })
            }
            Records::Dry { report, summary } => {
                summary.add(record);
                match report {
                    Some((path, w)) => {
                        w.record(record).map_err(|source| LiveError::Report { path: path.clone(), source })
                    }
                    None => Ok(()),
                }
            }
        }
    }
}

/// The engine's outcome in the report's terms (shared with the offline migration).
fn report_of(account: &BareJid, outcome: SweepOutcome) -> AccountReport {
    let outcome = match outcome {
        SweepOutcome::Converted { source, hash, wrote } => {
            let source = match source {
                Scheme::Legacy => Source::Xep0008,
                Scheme::Vcard => Source::Vcard,
                Scheme::Pep => Source::Xep0084,
            };
            let wrote = wrote.into_iter().map(|s| s.name().to_owned()).collect();
            Outcome::Converted { source, hash, file: None, wrote }
        }
        SweepOutcome::Skipped { has_avatar: true } => {
            Outcome::Skipped { why: Why::UpToDate, reason: "every scheme already holds the avatar".into() }
        }
        SweepOutcome::Skipped { has_avatar: false } => {
            Outcome::Skipped { why: Why::NoAvatar, reason: "no avatar in the vCard or in PEP".into() }
        }
        SweepOutcome::Refused { reasons } => {
            let why = if reasons.iter().any(|r| r.starts_with("not granted")) { Why::NotGranted } else { Why::Failed };
            Outcome::Refused { why, reason: reasons.join("; ") }
        }
    };
    AccountReport { account: account.to_string(), outcome }
}

fn report_writer(path: &Path) -> Result<ReportWriter<BufWriter<File>>, LiveError> {
    let report_err = |source| LiveError::Report { path: path.to_owned(), source };
    let file = File::create(path).map_err(report_err)?;
    ReportWriter::new(BufWriter::new(file)).map_err(report_err)
}

/// The accounts a previous run finished.
fn read_checkpoint(path: &Path) -> Result<HashSet<String>, LiveError> {
    let mut done = HashSet::new();
    for_each_record(path, |record| {
        done.insert(record.account);
    })?;
    Ok(done)
}

/// Calls `each` for every record of the checkpoint (none if it does not exist yet).
fn for_each_record(path: &Path, mut each: impl FnMut(AccountReport)) -> Result<(), LiveError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(LiveError::Checkpoint { path: path.to_owned(), source }),
    };
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| LiveError::Checkpoint { path: path.to_owned(), source })?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<AccountReport>(&line) {
            Ok(record) => each(record),
            // A crash mid-write leaves at most a torn last line: that account is simply swept again.
            Err(e) if e.is_eof() => {}
            Err(e) => {
                return Err(LiveError::Damaged { path: path.to_owned(), line: n + 1, detail: e.to_string() });
            }
        }
    }
    Ok(())
}

/// Rebuilds the report from the checkpoint (so a resumed run reports every account), and counts it.
fn write_report(options: &LiveOptions) -> Result<Summary, LiveError> {
    let mut summary = Summary::default();
    let Some(path) = &options.report else {
        for_each_record(&options.checkpoint, |record| summary.add(&record))?;
        return Ok(summary);
    };
    let report_err = |source| LiveError::Report { path: path.clone(), source };
    let mut writer = report_writer(path)?;
    let mut failed = None;
    for_each_record(&options.checkpoint, |record| {
        summary.add(&record);
        if let Err(e) = writer.record(&record) {
            failed.get_or_insert(e);
        }
    })?;
    if let Some(e) = failed {
        return Err(report_err(e));
    }
    writer.finish(&summary).map_err(report_err)?;
    Ok(summary)
}
