//! The engine as the link drives it, watched from outside: every call is passed through unchanged, and what goes
//! by (stanzas, events, image jobs, the link coming and going) is counted on the way. The engine itself knows
//! nothing of metrics.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::time::Instant;

use lru::LruCache;
use xmpp_parsers::minidom::Element;

use super::iqs::IqClock;
use super::metrics::{ConversionLabels, OutcomeLabels, SchemeLabels, StanzaLabels};
use super::notify;
use super::{Health, Ops};
use crate::avatar::AvatarHash;
use crate::engine::account::Scheme;
use crate::engine::{Engine, EngineStats, Event, JobId, StoreRequest, SyncId, TranscodeJob, TranscodeResult};
use crate::link::{Driven, log_event};

/// Accounts whose latest source scheme is remembered, to label the conversions written from it; an account
/// forgotten meanwhile is labelled `unknown`. Writes follow their adoption within seconds, so this suffices.
const SOURCES: NonZeroUsize = NonZeroUsize::new(4096).expect("non-zero");

/// The engine with its metrics.
pub struct Observed {
    engine: Engine,
    ops: Ops,
    iqs: IqClock,
    /// Image jobs handed to a worker, and when.
    transcodes: HashMap<JobId, Instant>,
    sources: LruCache<String, Scheme>,
    /// The `now` of the latest input: requests the engine sends are timed from it, as its deadlines are.
    now: Option<Instant>,
    connected_before: bool,
    /// The engine's figures at the last look (its cache counters are cumulative).
    seen: EngineStats,
}

impl Observed {
    /// Watches `engine` for `ops`.
    pub fn new(engine: Engine, ops: Ops) -> Self {
        let iqs = IqClock::new(ops.shared.iq_timeout);
        Self {
            engine,
            ops,
            iqs,
            transcodes: HashMap::new(),
            sources: LruCache::new(SOURCES),
            now: None,
            connected_before: false,
            seen: EngineStats { accounts: 0, cache_bytes: 0, cache_hits: 0, cache_misses: 0 },
        }
    }

    fn input(&mut self, now: Instant) {
        self.now = Some(now);
        self.ops.shared.metrics.iq_timeouts.inc_by(self.iqs.expire(now));
    }

    fn count(&self, direction: &'static str, stanza: &Element) {
        let kind = match stanza.name() {
            "iq" => "iq",
            "presence" => "presence",
            "message" => "message",
            _ => "other",
        };
        self.ops.shared.metrics.stanzas.get_or_create(&StanzaLabels { direction, kind }).inc();
    }

    fn on_event(&mut self, event: &Event) {
        let metrics = &self.ops.shared.metrics;
        let conversion = |from: &'static str, to: &'static str, outcome: &'static str| {
            metrics.conversions.get_or_create(&ConversionLabels { from, to, outcome }).inc();
        };
        match event {
            Event::Adopted { account, scheme, .. } | Event::Removed { account, scheme } => {
                self.sources.put(account.clone(), *scheme);
            }
            Event::Wrote { account, scheme, hash } => {
                let from = self.sources.get(account).map_or("unknown", |s| s.name());
                conversion(from, scheme.name(), if hash.is_some() { "written" } else { "removed" });
            }
            Event::Refused { scheme, .. } => {
                conversion(scheme.name(), "none", "refused");
            }
            Event::Fetched { scheme, .. } => {
                metrics.fetches.get_or_create(&SchemeLabels { scheme: scheme.name() }).inc();
            }
            Event::Served { hash, .. } => {
                let outcome = if hash.is_some() { "served" } else { "not_found" };
                metrics.legacy_reads.get_or_create(&OutcomeLabels { outcome }).inc();
            }
            Event::NotGranted { .. } => {
                metrics.not_granted.inc();
            }
            Event::StoreFailed(_) => {
                metrics.store_failures.inc();
            }
            Event::RateLimited { .. } => {
                metrics.rate_limited.inc();
            }
            Event::Capabilities { .. }
            | Event::Untrusted { .. }
            | Event::Server { .. }
            | Event::RightRefused { .. }
            | Event::PresenceStamp { .. }
            | Event::Swept { .. } => {}
        }
    }
}

impl Driven for Observed {
    fn handle_connected(&mut self, now: std::time::Instant) {
        self.input(now);
        self.ops.set_linked(true);
        if self.connected_before {
            self.ops.shared.metrics.reconnects.inc();
            notify::status("linked");
        } else {
            notify::ready("linked");
        }
        self.connected_before = true;
        self.engine.handle_connected(now);
    }

    fn handle_disconnected(&mut self, now: std::time::Instant) {
        self.input(now);
        self.ops.set_linked(false);
        self.iqs.clear();
        if self.ops.health() != Health::Draining {
            notify::status("link lost, reconnecting");
        }
        self.engine.handle_disconnected(now);
    }

    fn handle_stanza(&mut self, now: std::time::Instant, stanza: Element) {
        self.input(now);
        self.count("in", &stanza);
        match (stanza.name(), stanza.attr("type")) {
            ("iq", Some("result" | "error")) => {
                if let Some(latency) = stanza.attr("id").and_then(|id| self.iqs.answered(id, now)) {
                    self.ops.shared.metrics.iq_latency.observe(latency.as_secs_f64());
                }
            }
            ("presence", _) => self.ops.presence(&stanza),
            _ => {}
        }
        self.engine.handle_stanza(now, stanza);
    }

    fn handle_timeout(&mut self, now: std::time::Instant) {
        self.input(now);
        self.engine.handle_timeout(now);
    }

    fn poll_transmit(&mut self) -> Option<Element> {
        let stanza = self.engine.poll_transmit()?;
        self.count("out", &stanza);
        if let (Some(now), "iq", Some("get" | "set"), Some(id)) =
            (self.now, stanza.name(), stanza.attr("type"), stanza.attr("id"))
        {
            self.iqs.sent(id, now);
        }
        Some(stanza)
    }

    fn poll_transcode(&mut self) -> Option<TranscodeJob> {
        let job = self.engine.poll_transcode()?;
        // The link asks only when a worker is free, so from here to the result is the job's run time.
        self.transcodes.insert(job.id(), Instant::now());
        Some(job)
    }

    fn handle_transcoded(&mut self, now: std::time::Instant, done: TranscodeResult) {
        self.input(now);
        if let Some(started) = self.transcodes.remove(&done.id) {
            let metrics = &self.ops.shared.metrics;
            metrics.transcode_seconds.observe(started.elapsed().as_secs_f64());
            let outcome = if done.result.is_ok() { "ok" } else { "refused" };
            metrics.transcodes.get_or_create(&OutcomeLabels { outcome }).inc();
        }
        self.engine.handle_transcoded(now, done);
    }

    fn poll_store(&mut self) -> Option<StoreRequest> {
        self.engine.poll_store()
    }

    fn handle_stored(&mut self, now: std::time::Instant, id: SyncId, outcome: Result<(), String>) {
        self.input(now);
        self.engine.handle_stored(now, id, outcome);
    }

    fn handle_loaded(&mut self, now: std::time::Instant, hash: AvatarHash, blob: Option<crate::image::Rendition>) {
        self.input(now);
        self.engine.handle_loaded(now, hash, blob);
    }

    fn poll_timeout(&self) -> Option<std::time::Instant> {
        self.engine.poll_timeout()
    }

    fn drain(&mut self) {
        while let Some(event) = self.engine.poll_event() {
            self.on_event(&event);
            log_event(&event);
        }
        let stats = self.engine.stats();
        let m = &self.ops.shared.metrics;
        m.accounts.set(i64::try_from(stats.accounts).unwrap_or(i64::MAX));
        m.cache_bytes.set(i64::try_from(stats.cache_bytes).unwrap_or(i64::MAX));
        // The engine counts since start; the counters move by what it counted since the last look.
        m.cache_lookups
            .get_or_create(&OutcomeLabels { outcome: "hit" })
            .inc_by(stats.cache_hits - self.seen.cache_hits);
        m.cache_lookups
            .get_or_create(&OutcomeLabels { outcome: "miss" })
            .inc_by(stats.cache_misses - self.seen.cache_misses);
        self.seen = stats;
    }

    fn handle_committed(&mut self, writes: usize, took: std::time::Duration) {
        let m = &self.ops.shared.metrics;
        m.store_commit_seconds.observe(took.as_secs_f64());
        m.store_writes.inc_by(writes as u64);
    }
}
