//! The live sweep's scheduling on a simulated clock: accounts start at the configured pace and concurrency, each
//! outcome comes out once, and a lost connection re-sweeps what was in flight instead of reporting it.

mod common;
mod engine_support;

use std::time::{Duration, Instant};

use avatar_gateway::engine::account::Scheme;
use avatar_gateway::engine::{Engine, ServerConverts, SweepOutcome};
use avatar_gateway::link::store_task::{StoreAnswer, carry_out};
use avatar_gateway::migrate::live::{Sweep, SweepPace};
use avatar_gateway::store::{MemoryStore, Snapshot};
use avatar_gateway::wire::ns;
use xmpp_parsers::jid::BareJid;

use engine_support::*;

const SETTLE: Duration = Duration::from_secs(2);

/// The sweep beside the fake server, on a simulated clock; records when each account's first read went out.
struct Sim {
    sweep: Sweep,
    server: FakeServer,
    store: MemoryStore,
    now: Instant,
    started: Vec<(String, Duration)>,
    finished: Vec<(String, SweepOutcome)>,
    t0: Instant,
}

impl Sim {
    fn new(accounts: &[&str], pace: SweepPace, server: FakeServer) -> Self {
        let engine = Engine::new(config(ServerConverts::No), Snapshot::default());
        let jids: Vec<BareJid> = accounts.iter().map(|a| a.parse().unwrap()).collect();
        let now = Instant::now();
        let store = MemoryStore::new(64 << 20);
        Self { sweep: Sweep::new(engine, jids, pace), server, store, now, started: vec![], finished: vec![], t0: now }
    }

    /// Image jobs run at once, as a shell with a free worker would; store requests are carried out at once.
    fn work(&mut self) {
        while let Some(job) = self.sweep.poll_transcode() {
            self.sweep.handle_transcoded(self.now, avatar_gateway::link::workers::run(job));
        }
        let group: Vec<_> = std::iter::from_fn(|| self.sweep.poll_store()).collect();
        for answer in carry_out(&mut self.store, group) {
            match answer {
                StoreAnswer::Stored(id, outcome) => self.sweep.handle_stored(self.now, id, outcome),
                StoreAnswer::Loaded(hash, blob) => self.sweep.handle_loaded(self.now, hash, blob),
                StoreAnswer::Failed(e) => panic!("the test store failed: {e}"),
                StoreAnswer::Committed { .. } => {}
            }
        }
    }

    fn connect(&mut self) {
        self.sweep.handle_connected(self.now);
        self.sweep.handle_stanza(self.now, parse(PROSODY_PRIVILEGES));
        // The version query each connection sends once the server has announced (left unanswered: it only feeds
        // the operator's log).
        let version = self.sweep.poll_transmit().expect("the XEP-0092 query");
        assert_eq!(version.attr("id"), Some("version-localhost"));
    }

    /// Serves everything the sweep sends, moving the clock to each deadline, until the sweep is done or `until`.
    fn run(&mut self, until: Duration) {
        for _ in 0..10_000 {
            self.serve_all();
            while let Some((account, outcome)) = self.sweep.poll_finished() {
                self.finished.push((account.to_string(), outcome));
            }
            if self.sweep.is_done() {
                return;
            }
            match self.sweep.poll_timeout() {
                Some(due) if due <= self.t0 + until => {
                    self.now = self.now.max(due);
                    self.sweep.handle_timeout(self.now);
                }
                _ => return,
            }
        }
        panic!("the sweep never settled");
    }

    fn serve_all(&mut self) {
        self.work();
        while let Some(sent) = self.sweep.poll_transmit() {
            let to = sent.attr("to").unwrap_or_default().to_owned();
            let poll =
                sent.children().flat_map(|c| c.children()).flat_map(|i| i.children()).any(|p| {
                    p.get_child("items", ns::PUBSUB).is_some_and(|i| i.attr("node") == Some(ns::AVATAR_METADATA))
                });
            if poll {
                self.started.push((to, self.now - self.t0));
            }
            for reply in self.server.answer(&sent) {
                self.sweep.handle_stanza(self.now, reply);
            }
            self.work();
        }
    }
}

fn pace(interval_ms: u64, concurrency: usize) -> SweepPace {
    SweepPace { interval: Duration::from_millis(interval_ms), concurrency, settle_after_connect: SETTLE }
}

fn vcard_server(accounts: &[&str]) -> FakeServer {
    let img = Image::fixture("avatar-96x96-alpha.png");
    let mut server = FakeServer::plain();
    for account in accounts {
        let photo = format!("<PHOTO><TYPE>image/png</TYPE><BINVAL>{}</BINVAL></PHOTO>", img.b64);
        server.set_vcard(account, &format!("<vCard xmlns='vcard-temp'>{photo}</vCard>"));
    }
    server
}

const ACCOUNTS: [&str; 4] = ["a@localhost", "b@localhost", "c@localhost", "d@localhost"];

#[test]
fn accounts_start_at_the_configured_pace_after_the_grants_are_in() {
    let mut sim = Sim::new(&ACCOUNTS, pace(500, 8), vcard_server(&ACCOUNTS));
    sim.connect();
    sim.run(Duration::from_secs(60));
    let ms = |d: Duration| d.as_millis();
    let starts: Vec<(String, u128)> = sim.started.iter().map(|(a, d)| (a.clone(), ms(*d))).collect();
    assert_eq!(
        starts,
        vec![
            ("a@localhost".into(), 2000),
            ("b@localhost".into(), 2500),
            ("c@localhost".into(), 3000),
            ("d@localhost".into(), 3500)
        ]
    );
    let png = Image::fixture("avatar-96x96-alpha.png").png();
    let converted = SweepOutcome::Converted { source: Scheme::Vcard, hash: Some(png.hash()), wrote: vec![Scheme::Pep] };
    let expected: Vec<(String, SweepOutcome)> = ACCOUNTS.iter().map(|a| (a.to_string(), converted.clone())).collect();
    assert_eq!(sim.finished, expected);
    // Each account's PEP got the avatar; the one image was transcoded and published per account, fetched never.
    for account in ACCOUNTS {
        assert_eq!(sim.server.item_ids(account, ns::AVATAR_METADATA), vec![png.hash().to_string()]);
    }
}

#[test]
fn no_more_accounts_in_flight_than_the_concurrency() {
    // A server that never answers: the first two wait for their timeouts before the next two may start.
    let mut sim = Sim::new(&ACCOUNTS, pace(0, 2), FakeServer::plain());
    sim.connect();
    let mut silent = Vec::new();
    for _ in 0..4 {
        sim.sweep.handle_timeout(sim.now);
        while let Some(sent) = sim.sweep.poll_transmit() {
            silent.push(sent.attr("to").unwrap_or_default().to_owned());
        }
        sim.now += Duration::from_millis(1);
    }
    sim.now = sim.t0 + SETTLE;
    sim.sweep.handle_timeout(sim.now);
    sim.sweep.handle_timeout(sim.now);
    sim.sweep.handle_timeout(sim.now);
    while let Some(sent) = sim.sweep.poll_transmit() {
        silent.push(sent.attr("to").unwrap_or_default().to_owned());
    }
    // Two accounts, each read in PEP and vCard; nothing for the other two.
    assert_eq!(silent, ["a@localhost", "a@localhost", "b@localhost", "b@localhost"]);
    assert_eq!(sim.sweep.remaining(), 4);
    // Their reads time out: both are refused, and the next two start.
    sim.now += IQ_TIMEOUT;
    sim.sweep.handle_timeout(sim.now);
    let mut refused = Vec::new();
    while let Some((account, outcome)) = sim.sweep.poll_finished() {
        assert!(matches!(outcome, SweepOutcome::Refused { .. }), "{outcome:?}");
        refused.push(account.to_string());
    }
    assert_eq!(refused, ["a@localhost", "b@localhost"]);
    sim.sweep.handle_timeout(sim.now);
    sim.sweep.handle_timeout(sim.now);
    let next: Vec<String> =
        std::iter::from_fn(|| sim.sweep.poll_transmit()).map(|s| s.attr("to").unwrap_or_default().to_owned()).collect();
    assert_eq!(next, ["c@localhost", "c@localhost", "d@localhost", "d@localhost"]);
}

#[test]
fn a_lost_connection_sweeps_the_accounts_in_flight_again_and_reports_each_once() {
    let mut sim = Sim::new(&ACCOUNTS, pace(0, 2), vcard_server(&ACCOUNTS));
    sim.connect();
    sim.now += SETTLE;
    sim.sweep.handle_timeout(sim.now);
    sim.sweep.handle_timeout(sim.now);
    // Two accounts' reads are out when the link drops; nothing is answered.
    assert_eq!(std::iter::from_fn(|| sim.sweep.poll_transmit()).count(), 4);
    sim.sweep.handle_disconnected(sim.now);
    assert!(sim.sweep.poll_finished().is_none());
    assert_eq!(sim.sweep.remaining(), 4);
    // Nothing starts while disconnected.
    assert_eq!(sim.sweep.poll_timeout(), None);

    sim.now += Duration::from_secs(5);
    sim.t0 = sim.now;
    sim.connect();
    sim.run(Duration::from_secs(60));
    let accounts: Vec<&str> = sim.finished.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(accounts.len(), 4, "{accounts:?}");
    for account in ACCOUNTS {
        assert_eq!(accounts.iter().filter(|a| **a == account).count(), 1, "{account} in {accounts:?}");
    }
    assert!(sim.sweep.is_done());
}
