//! `avatar-gateway check`: one connection with the configured settings, the handshake, the server's grants, one
//! read of each kind for a test account (a dry-run sweep: nothing is written), then a verdict an admin can act on.

use std::time::{Duration, Instant};

use serde_json::json;
use xmpp_parsers::jid::BareJid;
use xmpp_parsers::minidom::Element;

use super::{Driven, LinkConfig, LinkError};
use crate::avatar::AvatarHash;
use crate::engine::grants::{DirectionStatus, Right};
use crate::engine::{Engine, Event, StampStatus, StoreRequest, SweepOutcome, SyncId, TranscodeJob, TranscodeResult};
use crate::image::Rendition;
use crate::store::MemoryStore;

/// What the check found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// What the server says it runs (XEP-0092), per host.
    pub servers: Vec<(String, String)>,
    /// The capability report, per host.
    pub hosts: Vec<(String, Vec<DirectionStatus>)>,
    /// Whether the host stamps XEP-0008 hashes in presence (mod_avatar_gateway).
    pub stamps: Vec<(String, StampStatus)>,
    /// The test account and what its reads gave.
    pub account: Option<(BareJid, Option<SweepOutcome>)>,
    /// Why the check could not run to the end.
    pub failure: Option<String>,
}

impl CheckReport {
    /// Whether the deployment is complete: connected, every direction on, and the test account's reads (if one
    /// was given) refused nothing.
    pub fn complete(&self) -> bool {
        let all_on = !self.hosts.is_empty() && self.hosts.iter().all(|(_, ds)| ds.iter().all(|d| d.missing.is_empty()));
        let read_ok = match &self.account {
            None => true,
            Some((_, outcome)) => {
                matches!(outcome, Some(SweepOutcome::Converted { .. } | SweepOutcome::Skipped { .. }))
            }
        };
        self.failure.is_none() && all_on && read_ok
    }

    /// The report for a person: one line per direction, the config to add under each line that lacks something.
    pub fn text(&self) -> String {
        let mut out = String::new();
        if let Some(why) = &self.failure {
            out.push_str(&format!("FAILED: {why}\n"));
        }
        for (host, software) in &self.servers {
            out.push_str(&format!("{host}: {software}\n"));
        }
        for (host, directions) in &self.hosts {
            for d in directions {
                let state = if d.missing.is_empty() { "ON " } else { "OFF" };
                out.push_str(&format!("{host}: {state} {}\n", d.direction.describe()));
                for right in d.missing.iter().chain(&d.limited) {
                    out.push_str(&format!("      add: {}\n", how_to(*right)));
                }
            }
        }
        for (host, status) in &self.stamps {
            out.push_str(&format!("{host}: {status}\n"));
        }
        match &self.account {
            Some((account, Some(outcome))) => out.push_str(&format!("test account {account}: {}\n", describe(outcome))),
            Some((account, None)) => out.push_str(&format!("test account {account}: its reads did not finish\n")),
            None => out.push_str("no test account given (--account): reads not tried\n"),
        }
        out.push_str(if self.complete() { "complete\n" } else { "incomplete\n" });
        out
    }

    /// The same as JSON, for scripts.
    pub fn json(&self) -> serde_json::Value {
        let directions: Vec<_> = (self.hosts.iter())
            .flat_map(|(host, ds)| ds.iter().map(move |d| (host, d)))
            .map(|(host, d)| {
                json!({
                    "host": host,
                    "direction": d.direction.describe(),
                    "on": d.missing.is_empty(),
                    "add": d.missing.iter().chain(&d.limited).map(|r| how_to(*r)).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "complete": self.complete(),
            "failure": self.failure,
            "servers": self.servers.iter().map(|(h, s)| json!({"host": h, "software": s})).collect::<Vec<_>>(),
            "directions": directions,
            "presence_hashes": self.stamps.iter().map(|(h, s)| json!({"host": h, "status": s.to_string()})).collect::<Vec<_>>(),
            "account": self.account.as_ref().map(|(a, o)| json!({
                "jid": a.to_string(),
                "result": o.as_ref().map(describe),
            })),
        })
    }
}

fn how_to(right: Right) -> String {
    format!("{right}: {}", right.how_to_grant())
}

fn describe(outcome: &SweepOutcome) -> String {
    match outcome {
        SweepOutcome::Converted { source, wrote, .. } => {
            let wrote: Vec<&str> = wrote.iter().map(|s| s.name()).collect();
            format!("reads work; its avatar ({}) would be written to {}", source.name(), wrote.join(", "))
        }
        SweepOutcome::Skipped { has_avatar: true } => "reads work; every scheme holds its avatar".into(),
        SweepOutcome::Skipped { has_avatar: false } => "reads work; it has no avatar".into(),
        SweepOutcome::Refused { reasons } => format!("refused: {}", reasons.join("; ")),
    }
}

/// The engine in a dry run, watched until the report (and the test account's reads) are in.
struct Check {
    engine: Engine,
    account: Option<BareJid>,
    report: CheckReport,
    reported: bool,
    deadline: Instant,
}

impl Driven for Check {
    fn handle_connected(&mut self, now: Instant) {
        self.engine.handle_connected(now);
    }
    fn handle_disconnected(&mut self, now: Instant) {
        self.engine.handle_disconnected(now);
    }
    fn handle_stanza(&mut self, now: Instant, stanza: Element) {
        self.engine.handle_stanza(now, stanza);
    }
    fn handle_timeout(&mut self, now: Instant) {
        self.engine.handle_timeout(now);
        if now >= self.deadline && self.report.failure.is_none() && !self.is_done() {
            self.report.failure = Some(if self.reported {
                "the test account's reads did not finish in time".into()
            } else {
                "no privilege announcement from the server in time: is mod_privilege loaded and the component \
                 listed in privileged_entities (Prosody) / mod_privilege (ejabberd)?"
                    .into()
            });
        }
    }
    fn poll_transmit(&mut self) -> Option<Element> {
        self.engine.poll_transmit()
    }
    fn poll_transcode(&mut self) -> Option<TranscodeJob> {
        self.engine.poll_transcode()
    }
    fn handle_transcoded(&mut self, now: Instant, done: TranscodeResult) {
        self.engine.handle_transcoded(now, done);
    }
    fn poll_store(&mut self) -> Option<StoreRequest> {
        self.engine.poll_store()
    }
    fn handle_stored(&mut self, now: Instant, id: SyncId, outcome: Result<(), String>) {
        self.engine.handle_stored(now, id, outcome);
    }
    fn handle_loaded(&mut self, now: Instant, hash: AvatarHash, blob: Option<Rendition>) {
        self.engine.handle_loaded(now, hash, blob);
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.engine.poll_timeout().map_or(self.deadline, |t| t.min(self.deadline)))
    }
    fn drain(&mut self) {
        while let Some(event) = self.engine.poll_event() {
            match event {
                Event::Server { host, software } => self.report.servers.push((host, software)),
                Event::Capabilities { host, directions } => {
                    self.report.hosts.push((host, directions));
                    if !self.reported {
                        self.reported = true;
                        if let Some(account) = self.account.clone() {
                            self.engine.sweep(super::now(), &account);
                        }
                    }
                }
                Event::PresenceStamp { host, status } => self.report.stamps.push((host, status)),
                Event::Swept { account, outcome } => {
                    if let Some((a, slot)) = &mut self.report.account
                        && a.as_str() == account
                    {
                        *slot = Some(outcome);
                    }
                }
                other => super::log_event(&other),
            }
        }
    }
    fn is_done(&self) -> bool {
        let read = self.report.account.as_ref().is_none_or(|(_, o)| o.is_some());
        self.report.failure.is_some() || (self.reported && read)
    }
}

/// Runs the check: `engine` must be configured for a dry run (nothing is written to the server).
pub async fn check(config: &LinkConfig, engine: Engine, account: Option<BareJid>, timeout: Duration) -> CheckReport {
    let report = CheckReport { account: account.clone().map(|a| (a, None)), ..CheckReport::default() };
    let mut check = Check { engine, account, report, reported: false, deadline: super::now() + timeout };
    let store = Box::new(MemoryStore::new(1 << 20));
    if let Err(e) = super::drive_once(config, &mut check, store).await {
        check.report.failure = Some(advice(config, &e));
    }
    check.report
}

/// What to do about a link failure.
fn advice(config: &LinkConfig, e: &LinkError) -> String {
    match e {
        LinkError::Io { source, .. } if source.kind() == std::io::ErrorKind::ConnectionRefused => format!(
            "nothing listens on {}: check server.address against the server's component port (Prosody: \
             component_ports, default 5347; ejabberd: a listener with module ejabberd_service)",
            config.address
        ),
        LinkError::Io { .. } => format!("{e}: check server.address"),
        LinkError::Handshake { .. } => format!(
            "{e}: the secret or the component name is wrong (server.secret / server.component against Prosody's \
             Component \"{}\" component_secret, or ejabberd's ejabberd_service hosts/password)",
            config.component
        ),
        LinkError::Lost(_) => format!("{e}: the server closed the stream during the check"),
    }
}
