//! The sans-IO sweep: a queue of accounts fed to the engine at a bounded rate and concurrency, each one's outcome
//! handed out as soon as nothing about it is outstanding.
//!
//! Same contract as the engine (`handle_*` with `now`, then drain `poll_*`), so the link drives either. A lost
//! connection puts the accounts in flight back at the head of the queue: writes are idempotent (the engine reads
//! before it writes), so sweeping one again is safe, and no outcome is ever made up for a cut-short sweep.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use xmpp_parsers::jid::BareJid;
use xmpp_parsers::minidom::Element;

use crate::engine::{Engine, Event, SweepOutcome};

/// How fast to sweep.
#[derive(Debug, Clone)]
pub struct SweepPace {
    /// Least time between the starts of two accounts (the rate limit).
    pub interval: Duration,
    /// Most accounts in flight at once.
    pub concurrency: usize,
    /// Wait after connecting before the first start, so the server's grant announcements are in.
    pub settle_after_connect: Duration,
}

/// Accounts to sweep, and the engine sweeping them.
pub struct Sweep {
    engine: Engine,
    pace: SweepPace,
    queue: VecDeque<BareJid>,
    in_flight: HashSet<BareJid>,
    /// `None` while disconnected.
    next_start: Option<Instant>,
    finished: VecDeque<(BareJid, SweepOutcome)>,
    events: VecDeque<Event>,
}

impl Sweep {
    /// A sweep of `accounts`, in order, not connected yet.
    pub fn new(engine: Engine, accounts: impl IntoIterator<Item = BareJid>, pace: SweepPace) -> Self {
        Self {
            engine,
            pace,
            queue: accounts.into_iter().collect(),
            in_flight: HashSet::new(),
            next_start: None,
            finished: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// The stream is up.
    pub fn handle_connected(&mut self, now: Instant) {
        self.engine.handle_connected(now);
        self.next_start = Some(now + self.pace.settle_after_connect);
        self.collect();
    }

    /// The stream went away: the accounts in flight are swept again after the reconnection.
    pub fn handle_disconnected(&mut self, now: Instant) {
        self.engine.handle_disconnected(now);
        self.next_start = None;
        for account in self.in_flight.drain() {
            self.queue.push_front(account);
        }
        self.collect();
    }

    /// One stanza from the server.
    pub fn handle_stanza(&mut self, now: Instant, stanza: Element) {
        self.engine.handle_stanza(now, stanza);
        self.collect();
    }

    /// The next image job for the shell ([`Engine::poll_transcode`]).
    pub fn poll_transcode(&mut self) -> Option<crate::engine::TranscodeJob> {
        self.engine.poll_transcode()
    }

    /// An image job's result ([`Engine::handle_transcoded`]).
    pub fn handle_transcoded(&mut self, now: Instant, done: crate::engine::TranscodeResult) {
        self.engine.handle_transcoded(now, done);
        self.collect();
    }

    /// The next request for the store ([`Engine::poll_store`]).
    pub fn poll_store(&mut self) -> Option<crate::engine::StoreRequest> {
        self.engine.poll_store()
    }

    /// A sync's outcome ([`Engine::handle_stored`]).
    pub fn handle_stored(&mut self, now: Instant, id: crate::engine::SyncId, outcome: Result<(), String>) {
        self.engine.handle_stored(now, id, outcome);
        self.collect();
    }

    /// A blob read back ([`Engine::handle_loaded`]).
    pub fn handle_loaded(&mut self, now: Instant, hash: crate::avatar::AvatarHash, bytes: Option<Vec<u8>>) {
        self.engine.handle_loaded(now, hash, bytes);
        self.collect();
    }

    /// Time passed: the engine's deadlines, and the next start when the pace allows it.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.engine.handle_timeout(now);
        self.collect();
        if self.may_start().is_some_and(|t| t <= now)
            && let Some(account) = self.queue.pop_front()
        {
            self.in_flight.insert(account.clone());
            self.next_start = Some(now + self.pace.interval);
            self.engine.sweep(now, &account);
        }
        self.collect();
    }

    /// The next stanza to send.
    pub fn poll_transmit(&mut self) -> Option<Element> {
        self.engine.poll_transmit()
    }

    /// The next engine event to log (outcomes come from [`Sweep::poll_finished`] instead).
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next account whose sweep ended, and how.
    pub fn poll_finished(&mut self) -> Option<(BareJid, SweepOutcome)> {
        self.finished.pop_front()
    }

    /// When [`Sweep::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.engine.poll_timeout(), self.may_start()].into_iter().flatten().min()
    }

    /// Whether every account has been swept.
    pub fn is_done(&self) -> bool {
        self.queue.is_empty() && self.in_flight.is_empty()
    }

    /// Accounts not finished yet (queued or in flight).
    pub fn remaining(&self) -> usize {
        self.queue.len() + self.in_flight.len()
    }

    /// When the next account may start, if one is waiting and there is room.
    fn may_start(&self) -> Option<Instant> {
        let room = self.in_flight.len() < self.pace.concurrency.max(1);
        self.next_start.filter(|_| room && !self.queue.is_empty())
    }

    fn collect(&mut self) {
        while let Some(event) = self.engine.poll_event() {
            match event {
                Event::Swept { account, outcome } => match account.parse::<BareJid>() {
                    Ok(jid) if self.in_flight.remove(&jid) => self.finished.push_back((jid, outcome)),
                    _ => {}
                },
                other => self.events.push_back(other),
            }
        }
    }
}
