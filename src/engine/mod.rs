//! The sans-IO core: stanzas and ticks in, stanzas and events out. No socket, no clock, no spawn.
//!
//! Contract (after quinn-proto): inputs are `handle_*` methods that take `now`; outputs are drained with the
//! `poll_*` methods after every input, in the order [`Engine::poll_transmit`] → [`Engine::poll_event`] →
//! [`Engine::poll_timeout`]. Every request the engine sends is remembered as an [`exchange`] under its id; a
//! reply nobody asked for is dropped, never acted on.
//!
//! Data flow: a presence, PEP event or delegated IQ becomes an observation of one scheme
//! ([`account::Account::observe`]); a new avatar is fetched (cache first), validated into renditions, adopted, and
//! then written to the schemes that lack it ([`plan`]); XEP-0008 readers are answered from the current avatar.

pub mod account;
mod durable;
mod exchange;
pub mod grants;
mod opening;
mod outstanding;
mod plan;
pub mod rates;
mod stamp;
mod sweep;
mod transcode;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Deserialize;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::minidom::Element;

use crate::avatar::AvatarHash;
use crate::cache::{AvatarCache, CacheLimits};
use crate::image::{ImageLimits, Transcoded};
use crate::store::Snapshot;
use crate::wire::component::{self, Privileges};
use crate::wire::stanza::{Condition, Iq, IqType, iq};
use crate::wire::xep0084::AccessModel;
use crate::wire::{ns, vcard, xep0008, xep0084};
use account::{Account, Scheme, Seen, Verdict};
use durable::{Durable, Held, Resume};
pub use durable::{StoreRequest, SyncId};
use exchange::{Exchange, Pending, Reader, Waiter};
use grants::{DirectionStatus, Grants};
use opening::Opening;
use outstanding::Outstanding;
pub use stamp::StampStatus;
use sweep::SweepLog;
pub use sweep::SweepOutcome;
pub use transcode::{JobId, TranscodeJob, TranscodeResult};
use transcode::{Purpose, Transcodes};

/// Whether the server converts vCard ↔ XEP-0084 by itself (XEP-0398; Prosody's mod_vcard_legacy, ejabberd's
/// mod_avatar). When it does, the gateway leaves that pair alone, or each side would re-trigger the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServerConverts {
    /// Ask each account (disco#info for `urn:xmpp:pep-vcard-conversion:0`).
    Auto,
    /// The server converts: never write vCard ↔ PEP.
    Yes,
    /// It does not: the gateway converts vCard ↔ PEP.
    No,
}

/// The engine's settings (the `[gateway]`, `[limits]` and `[cache]` parts of the config).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The component's JID, the `from` of everything it sends.
    pub component: String,
    /// The server's virtual hosts whose accounts the gateway serves. Their domain JIDs are the only senders
    /// trusted with announcements, delegated stanzas and privileged replies (SECURITY.md); stanzas about accounts
    /// of any other domain are ignored.
    pub hosts: Vec<BareJid>,
    /// Image budgets.
    pub limits: ImageLimits,
    /// Cache budgets.
    pub cache: CacheLimits,
    /// How long to wait for any reply.
    pub iq_timeout: Duration,
    /// Requests in flight to the server at most; the others wait their turn (their timeout runs once sent).
    pub max_in_flight: usize,
    /// Per-account rate limits.
    pub rates: rates::RateLimits,
    /// Image bytes fetched and waiting for a worker beyond which no request is sent until the workers catch up.
    pub transcode_backlog_bytes: usize,
    /// How long a privileged IQ the server refused (although it announced the right) is not sent again.
    pub refusal_retry: Duration,
    /// How long after connecting to report the granted capabilities (the server announces them one by one).
    pub report_delay: Duration,
    /// `pubsub#access_model` to publish with; `None` keeps the server's default (XEP-0398 privacy note).
    pub pep_access_model: Option<AccessModel>,
    /// Server-side conversion.
    pub server_converts: ServerConverts,
    /// Send no writes: each privileged set is taken as done, so events and reports show what would be written.
    pub dry_run: bool,
    /// Tell each host's mod_avatar_gateway every account's XEP-0008 hash, for it to stamp on presence ([`stamp`]).
    pub stamp_presence: bool,
}

/// Something worth telling the operator (the shell logs these; tests count them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The rights granted for a host, direction by direction.
    Capabilities {
        /// The host.
        host: String,
        /// Every direction and what it lacks.
        directions: Vec<DirectionStatus>,
    },
    /// Image bytes were fetched from a scheme (each hash at most once while cached).
    Fetched {
        /// Account.
        account: String,
        /// Where from.
        scheme: Scheme,
        /// The bytes' hash.
        hash: AvatarHash,
    },
    /// A new avatar became the account's current one.
    Adopted {
        /// Account.
        account: String,
        /// Where from.
        scheme: Scheme,
        /// Its original hash.
        hash: AvatarHash,
    },
    /// The account's avatar was deliberately removed in the scheme that held it.
    Removed {
        /// Account.
        account: String,
        /// Where.
        scheme: Scheme,
    },
    /// The gateway wrote a scheme (`None`: "no avatar").
    Wrote {
        /// Account.
        account: String,
        /// Which scheme.
        scheme: Scheme,
        /// The hash now there.
        hash: Option<AvatarHash>,
    },
    /// Input refused; the previous avatar stays everywhere.
    Refused {
        /// Account.
        account: String,
        /// Which scheme it came from.
        scheme: Scheme,
        /// Why.
        reason: String,
    },
    /// A XEP-0008 reader was answered.
    Served {
        /// The account asked about.
        account: String,
        /// Who asked.
        reader: String,
        /// The hash served (`None`: item-not-found).
        hash: Option<AvatarHash>,
    },
    /// A write to the store failed (the shell should alert: `storage:client:avatar` data lives only there).
    StoreFailed(String),
    /// A write or read needed a right the server did not grant.
    NotGranted {
        /// Account.
        account: String,
        /// What was skipped.
        what: String,
    },
    /// A stanza that only the server may send came from someone else, or broke a limit; noted at most once a
    /// minute per sender.
    Untrusted {
        /// Who sent it (as the server stamped it).
        from: String,
        /// What was refused.
        what: Refusal,
    },
    /// What software a served host runs (XEP-0092), once per connection. Behaviour follows the grants, never this.
    Server {
        /// The host.
        host: String,
        /// "Prosody 0.12.3", "ejabberd 23.01", or why it is unknown.
        software: String,
    },
    /// The server refused a right it had granted: what needs it is off until `retry_in` has passed (told once per
    /// host and right per connection).
    RightRefused {
        /// The host.
        host: String,
        /// The right.
        right: grants::Right,
        /// Why (the server's answer).
        reason: String,
        /// When it is asked again.
        retry_in: Duration,
    },
    /// Whether a host stamps the XEP-0008 hash on its users' presence (mod_avatar_gateway), after the capabilities.
    PresenceStamp {
        /// The host.
        host: String,
        /// Whether its module answered.
        status: StampStatus,
    },
    /// An account went over its rate ([`rates::RateLimits`]): what it brings and its reads wait `retry_in` (told
    /// once per window).
    RateLimited {
        /// The account.
        account: String,
        /// Which limit.
        limit: rates::Limited,
        /// How long until it is within again.
        retry_in: Duration,
    },
    /// A swept account has nothing outstanding any more ([`Engine::sweep`]).
    Swept {
        /// Account.
        account: String,
        /// How it ended.
        outcome: SweepOutcome,
    },
}

/// What an untrusted or over-limit stanza tried, for [`Event::Untrusted`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A XEP-0356 privilege announcement not from a served host's domain JID.
    PrivilegeAnnouncement,
    /// A XEP-0355 delegation announcement not from a served host's domain JID.
    DelegationAnnouncement,
    /// A XEP-0355 delegation wrapper not from a served host's domain JID (a user forging another user's IQ).
    Delegation,
    /// A delegated IQ about an account outside the delegating host.
    ForeignAccount,
    /// A stanza over the link's depth or size limit (replaced by the link's marker before it was parsed).
    OverLimit(LimitKind),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refusal::PrivilegeAnnouncement => "privilege announcement ignored: only the server's domain JID announces",
            Refusal::DelegationAnnouncement => {
                "delegation announcement ignored: only the server's domain JID announces"
            }
            Refusal::Delegation => "delegation wrapper answered forbidden: only the server forwards delegated IQs",
            Refusal::ForeignAccount => "delegated IQ about an account of another host answered forbidden",
            Refusal::OverLimit(LimitKind::Depth) => "stanza nested deeper than server.max_stanza_depth refused",
            Refusal::OverLimit(LimitKind::Size) => "stanza larger than server.max_stanza_bytes refused",
        })
    }
}

/// Which stanza limit was broken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// Nesting deeper than the link allows.
    Depth,
    /// More bytes than the link allows.
    Size,
}

/// The kind of limit named by the link's over-limit marker, if `stanza` is such a replacement.
fn over_limit(stanza: &Element) -> Option<LimitKind> {
    let marker = stanza.children().find(|c| c.ns() == ns::STANZA_LIMIT)?;
    Some(if marker.attr("reason") == Some("depth") { LimitKind::Depth } else { LimitKind::Size })
}

/// What [`Engine::stats`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    /// Accounts tracked (all in memory).
    pub accounts: usize,
    /// Image bytes in the in-memory cache.
    pub cache_bytes: usize,
    /// Cache lookups that found the bytes since start.
    pub cache_hits: u64,
    /// Cache lookups that did not.
    pub cache_misses: u64,
}

/// How long one sender's refusals stay quiet after one was noted.
const NOTE_EVERY: Duration = Duration::from_secs(60);
/// Senders remembered for that (the least recently noted is forgotten first).
const NOTED_SENDERS: usize = 1024;

/// The gateway's core state machine.
pub struct Engine {
    config: EngineConfig,
    grants: Grants,
    accounts: HashMap<BareJid, Account>,
    cache: AvatarCache,
    /// Store requests for the shell, and what waits on them.
    durable: Durable,
    pending: Outstanding,
    readers: HashMap<BareJid, Vec<Reader>>,
    outbox: VecDeque<Element>,
    events: VecDeque<Event>,
    next_id: u64,
    report_at: Option<Instant>,
    /// What waits for the server's announcements on this connection.
    opening: Opening,
    /// Accounts waiting on another account's fetch of the same hash (the scheme they saw it in, and the client to
    /// ask themselves should that fetch fail).
    fetch_waiters: HashMap<AvatarHash, Vec<Waiter>>,
    /// When each recent untrusted sender was last noted ([`Event::Untrusted`] is rate-limited per sender).
    noted: lru::LruCache<String, Instant>,
    /// Per account, the fetch to start once its current one is over (see [`Engine::fetch`]).
    deferred_fetches: HashMap<BareJid, Waiter>,
    /// Image work asked of the shell and not answered yet.
    transcodes: Transcodes,
    sweeps: HashMap<BareJid, SweepLog>,
    /// Dry run: ids of sets taken as done at the end of the current input.
    dry_done: VecDeque<String>,
    /// The last privileged vCard read (or the gateway's own write) of each account, for the write that follows.
    recent_vcards: lru::LruCache<BareJid, plan::RecentVcard>,
    rates: rates::Rates,
    stamps: stamp::Stamps,
}

impl Engine {
    /// A new engine that starts from what the store held (every account is kept in memory from then on; blobs
    /// are read back through the shell when needed).
    pub fn new(config: EngineConfig, snapshot: Snapshot) -> Self {
        let cache = AvatarCache::new(config.cache.clone());
        let mut events = VecDeque::new();
        let durable = Durable::new(snapshot.blobs.iter().copied());
        let mut accounts = durable::restore(snapshot, &mut events);
        let server_converts = Self::server_converts(&config);
        let pending = Outstanding::new(config.max_in_flight, config.iq_timeout);
        let rates = rates::Rates::new(config.rates.clone());
        accounts.values_mut().for_each(|a| a.server_converts = server_converts);
        Self {
            config,
            grants: Grants::default(),
            accounts,
            cache,
            durable,
            pending,
            readers: HashMap::new(),
            outbox: VecDeque::new(),
            events,
            next_id: 0,
            report_at: None,
            opening: Opening::default(),
            fetch_waiters: HashMap::new(),
            deferred_fetches: HashMap::new(),
            transcodes: Transcodes::default(),
            noted: lru::LruCache::new(std::num::NonZeroUsize::new(NOTED_SENDERS).expect("non-zero")),
            sweeps: HashMap::new(),
            dry_done: VecDeque::new(),
            recent_vcards: lru::LruCache::new(std::num::NonZeroUsize::new(plan::RECENT_VCARDS).expect("non-zero")),
            rates,
            stamps: stamp::Stamps::default(),
        }
    }

    /// The stream is up (handshake done). Grants are re-learnt from the server's announcements.
    pub fn handle_connected(&mut self, now: Instant) {
        self.grants = Grants::default();
        self.report_at = Some(now + self.config.report_delay);
        self.opening = Opening::start(now);
        for host in self.config.hosts.clone() {
            // An id of its own, so the gateway's request ids (`gw<n>`) are the same with or without it.
            let query = crate::wire::xml::element("query", ns::VERSION).build();
            let exchange = Exchange::ServerVersion { host: host.clone() };
            let id = format!("version-{host}");
            let version = self.remembered_request(now, id, IqType::Get, host.as_str(), query, exchange);
            self.opening.send(host.as_str(), version, &mut self.outbox);
        }
        self.stamps_connected(now);
    }

    /// The stream went away: every outstanding exchange is void (its reply can no longer come), and waiting
    /// readers were answered by the server already (component gone → service-unavailable).
    pub fn handle_disconnected(&mut self, _now: Instant) {
        // A fetch in flight is void: forget the hash it was for, so that seeing it again after the reconnect (the
        // server re-sends every presence, XEP-0356) fetches it instead of taking it for old news.
        for p in self.pending.take_all() {
            let (account, scheme, hash) = match p.exchange {
                Exchange::IqAvatar { account, hash } => (account, Scheme::Legacy, hash),
                Exchange::PepData { account, hash } => (account, Scheme::Pep, hash),
                _ => continue,
            };
            let waiters = self.fetch_waiters.remove(&hash).unwrap_or_default();
            let waiting = waiters.into_iter().map(|w| (w.account, w.scheme));
            for (account, scheme) in std::iter::once((account, scheme)).chain(waiting) {
                if self.account(&account).seen(scheme) == Seen::Avatar(hash) {
                    self.account(&account).observe(scheme, Seen::Unknown);
                    self.persist(&account);
                }
            }
        }
        self.fetch_waiters.clear();
        self.deferred_fetches.clear();
        self.transcodes.clear();
        self.dry_done.clear();
        // Cut short: the caller sweeps them again on the next connection.
        self.sweeps.clear();
        self.readers.clear();
        self.durable.disconnected();
        self.report_at = None;
        self.opening = Opening::default();
        self.stamps = stamp::Stamps::default();
    }

    /// One stanza from the component stream.
    pub fn handle_stanza(&mut self, now: Instant, stanza: Element) {
        if let Some(kind) = over_limit(&stanza) {
            self.over_limit(now, &stanza, kind);
            return self.after_input(now);
        }
        match stanza.name() {
            "iq" => self.handle_iq(now, &stanza),
            "presence" => self.handle_presence(now, &stanza),
            "message" => self.handle_message(now, &stanza),
            _ => {}
        }
        self.after_input(now);
    }

    /// Time passed: expire exchanges and readers whose deadline is reached, report capabilities when due.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.report_at.is_some_and(|t| t <= now) {
            self.report_at = None;
            self.report_capabilities();
        }
        self.opening.expire(now, &mut self.outbox);
        self.stamps_due(now);
        // In the order they were sent, so a run is the same every time.
        for id in self.pending.expired(now) {
            if let Some(p) = self.pending.remove(&id) {
                self.exchange_failed(now, p.exchange, "timeout");
            }
        }
        let due: Vec<BareJid> = self
            .readers
            .iter()
            .filter(|(_, rs)| rs.iter().any(|r| r.deadline <= now))
            .map(|(j, _)| j.clone())
            .collect();
        for account in due {
            let (late, waiting): (Vec<Reader>, Vec<Reader>) =
                self.readers.remove(&account).unwrap_or_default().into_iter().partition(|r| r.deadline <= now);
            if !waiting.is_empty() {
                self.readers.insert(account.clone(), waiting);
            }
            for reader in late {
                self.answer_reader(&account, reader, None);
            }
        }
        self.after_input(now);
    }

    /// Work that waits for the end of an input: dry-run sets taken as done, then sweeps that have settled.
    fn after_input(&mut self, now: Instant) {
        self.durable.input_done();
        self.pace();
        let released = self.pending.release(now);
        self.outbox.extend(released);
        while let Some(id) = self.dry_done.pop_front() {
            if let Some(p) = self.pending.remove(&id) {
                self.privileged_result(now, p.exchange, None);
            }
        }
        self.settle_sweeps();
    }

    /// The next stanza to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Element> {
        self.outbox.pop_front()
    }

    /// The next image job for the shell to run (then [`Engine::handle_transcoded`] with its result). Accounts take
    /// turns; ask only when a worker is free, so the queue (and its fairness) stays here.
    #[must_use]
    pub fn poll_transcode(&mut self) -> Option<TranscodeJob> {
        self.transcodes.poll(&self.config.limits)
    }

    /// An image job's result: whatever waited for it goes on (adopt, observe the vCard, acknowledge the owner).
    pub fn handle_transcoded(&mut self, now: Instant, done: TranscodeResult) {
        let Some((hash, purposes)) = self.transcodes.finish(done.id) else { return };
        for purpose in purposes {
            self.transcoded(now, hash, purpose, done.result.as_ref());
        }
        self.after_input(now);
    }

    /// The next event to log.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Engine::handle_timeout`] must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let readers = self.readers.values().flatten().map(|r| r.deadline);
        let others = [self.report_at, self.opening.deadline(), self.stamps.deadline()];
        readers.chain(self.pending.next_deadline()).chain(others.into_iter().flatten()).min()
    }

    /// Figures for the operator's metrics.
    pub fn stats(&self) -> EngineStats {
        let (cache_hits, cache_misses) = self.cache.lookups();
        EngineStats { accounts: self.accounts.len(), cache_bytes: self.cache.bytes(), cache_hits, cache_misses }
    }

    /// What the server has granted so far.
    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    /// Whether `jid` is the domain JID of a served host: the server itself, the only sender trusted with
    /// announcements and delegated stanzas. Users reach the component directly, and the server stamps their
    /// `from` (RFC 6120 §8.1.2.1), so a user can never appear as a domain JID.
    fn is_server(&self, jid: &Jid) -> bool {
        jid.node().is_none() && jid.resource().is_none() && self.serves(jid)
    }

    /// Whether `jid` belongs to a served host (an account, or the host itself).
    fn serves(&self, jid: &Jid) -> bool {
        self.config.hosts.iter().any(|h| h.domain() == jid.domain())
    }

    /// Tells of a refused stanza, at most once per [`NOTE_EVERY`] per sender, so a flood costs one log line.
    fn note_untrusted(&mut self, now: Instant, from: Option<&Jid>, what: Refusal) {
        let from = from.map_or_else(|| "(no from)".to_owned(), Jid::to_string);
        if self.noted.get(&from).is_some_and(|&at| now.saturating_duration_since(at) < NOTE_EVERY) {
            return;
        }
        self.noted.put(from.clone(), now);
        self.events.push_back(Event::Untrusted { from, what });
    }

    /// A stanza the link replaced by its over-limit marker: an IQ request gets `policy-violation` (RFC 6120
    /// §8.3.3.12), a reply fails the exchange it answers, anything else is dropped. The link stays up.
    fn over_limit(&mut self, now: Instant, stanza: &Element, kind: LimitKind) {
        let from = stanza.attr("from").and_then(|f| Jid::new(f).ok());
        self.note_untrusted(now, from.as_ref(), Refusal::OverLimit(kind));
        let Ok(envelope) = Iq::parse(stanza) else { return };
        if envelope.kind.is_request() {
            return self.outbox.push_back(envelope.error_reply(ns::COMPONENT, Condition::PolicyViolation));
        }
        if let Some(p) = self.take_reply(&envelope) {
            let reason = match kind {
                LimitKind::Depth => "the reply nests deeper than the stanza limit",
                LimitKind::Size => "the reply is larger than the stanza limit",
            };
            self.exchange_failed(now, p.exchange, reason);
        }
    }

    fn report_capabilities(&mut self) {
        let hosts: Vec<String> = self.grants.hosts().map(str::to_owned).collect();
        for host in hosts {
            let directions = self.grants.report(&host);
            self.events.push_back(Event::Capabilities { host, directions });
        }
        self.stamps_reported();
    }

    fn handle_message(&mut self, now: Instant, message: &Element) {
        let from = message.attr("from").and_then(|f| Jid::new(f).ok());
        let from_server = from.as_ref().is_some_and(|j| self.is_server(j));
        if let Some(privileges) = Privileges::from_message(message) {
            return match &from {
                Some(host) if from_server => {
                    self.grants.privileges.insert(host.domain().to_string(), privileges);
                    self.opening.announced(host.domain().as_str(), &mut self.outbox);
                }
                _ => self.note_untrusted(now, from.as_ref(), Refusal::PrivilegeAnnouncement),
            };
        }
        if let Some((version, namespaces)) = component::delegated_namespaces(message) {
            if !from_server {
                return self.note_untrusted(now, from.as_ref(), Refusal::DelegationAnnouncement);
            }
            self.grants.delegation_version = Some(version);
            self.grants.delegated.extend(namespaces);
            return;
        }
        // PEP notifications (when the server sends them to us): the metadata item is authoritative. The server
        // stamps `from`, so an event can only ever speak for its sender's own account.
        let (Some(from), Some(event)) = (from, message.get_child("event", ns::PUBSUB_EVENT)) else { return };
        if from.node().is_none() || !self.serves(&from) {
            return;
        }
        let account = from.to_bare();
        match xep0084::parse_event(event) {
            Ok(Some(event)) => self.pep_event(now, &account, event),
            Ok(None) => {}
            Err(e) => self.refuse(&account, Scheme::Pep, e.to_string()),
        }
    }

    fn handle_presence(&mut self, now: Instant, presence: &Element) {
        let Some(from) = presence.attr("from").and_then(|f| Jid::new(f).ok()) else { return };
        if from.node().is_none() || !self.serves(&from) || presence.attr("type").is_some() {
            return; // unavailable, subscriptions, errors (our own bounced presences when the link was down)
        }
        let account = from.to_bare();
        self.ensure_converts_known(now, &account);
        let mut vouched = false;
        match xep0008::XAvatar::from_presence(presence) {
            // The module's own stamp coming back: no news, and the module tells of PEP changes itself.
            Ok(xep0008::XAvatar::Hash(hash)) if self.stamped(&account, hash) => vouched = true,
            Ok(xep0008::XAvatar::Hash(hash)) => {
                self.observe(now, &account, Scheme::Legacy, Seen::Avatar(hash), Some(&from));
                vouched = self.accounts.get(&account).and_then(Account::current).is_some_and(|c| c.names(hash));
            }
            Ok(xep0008::XAvatar::Disabled) => self.observe(now, &account, Scheme::Legacy, Seen::NoAvatar, None),
            Ok(xep0008::XAvatar::Absent) => {}
            Err(e) => self.refuse(&account, Scheme::Legacy, e.to_string()),
        }
        // XEP-0153 hashes are hints (Prosody injects the PEP item id; clients lag): read the real thing when a hint
        // differs from what we know, or when we know nothing yet.
        let hint = match vcard::Update::from_presence(presence) {
            Ok(vcard::Update::Hash(h)) => Some(Seen::Avatar(h)),
            Ok(vcard::Update::NoAvatar) => Some(Seen::NoAvatar),
            Ok(_) => None,
            Err(e) => {
                self.refuse(&account, Scheme::Vcard, e.to_string());
                None
            }
        };
        self.refresh(now, &account, hint, vouched);
    }

    fn handle_iq(&mut self, now: Instant, stanza: &Element) {
        let Ok(envelope) = Iq::parse(stanza) else { return };
        if !envelope.kind.is_request() {
            if self.stamp_reply(now, &envelope) {
                return;
            }
            if let Some(p) = self.take_reply(&envelope) {
                self.exchange_reply(now, p, &envelope, stanza);
            }
            return;
        }
        if component::is_bounced_privileged(stanza)
            && let Some(p) = self.take_reply(&envelope)
        {
            return self.privileged_bounced(now, p);
        }
        let from_server = envelope.from.as_ref().is_some_and(|j| self.is_server(j));
        if let Some(delegated) = component::delegated(stanza) {
            // XEP-0355 §7: only the server forwards delegated IQs. The same wrapper from anyone else is a user
            // trying to speak as another user (the inner `from` is whatever they wrote).
            if !from_server {
                self.note_untrusted(now, envelope.from.as_ref(), Refusal::Delegation);
                return self.outbox.push_back(envelope.error_reply(ns::COMPONENT, Condition::Forbidden));
            }
            return self.handle_delegated(now, &envelope, delegated);
        }
        let reply = match envelope.payload.as_ref() {
            // mod_delegation activates a namespace only on this answer: it must not be lost (see `opening`).
            Some(q) if envelope.kind == IqType::Get && q.is("query", ns::DISCO_INFO) && from_server => {
                let answer = envelope.result(ns::COMPONENT, Some(self.disco_info(q)));
                let host = envelope.from.as_ref().map(|j| j.domain().to_string()).unwrap_or_default();
                return self.opening.send(&host, answer, &mut self.outbox);
            }
            Some(q) if envelope.kind == IqType::Get && q.is("query", ns::DISCO_INFO) => Some(self.disco_info(q)),
            Some(p) if envelope.kind == IqType::Get && p.is("ping", ns::PING) => None,
            _ => {
                self.outbox.push_back(envelope.error_reply(ns::COMPONENT, Condition::ServiceUnavailable));
                return;
            }
        };
        self.outbox.push_back(envelope.result(ns::COMPONENT, reply));
    }

    /// The exchange `envelope` answers, taken out. Our ids are predictable: a reply counts only from the address
    /// that was asked, else anyone could answer a vCard read meant for another account.
    fn take_reply(&mut self, envelope: &Iq) -> Option<Pending> {
        let from = envelope.from.as_ref().map(Jid::to_string);
        if self.pending.get(&envelope.id).is_some_and(|p| from.as_ref() == Some(&p.asked)) {
            return self.pending.remove(&envelope.id);
        }
        None
    }

    /// The server handed a privileged IQ back to the gateway instead of carrying it out (ejabberd 24.10 to 25.02:
    /// fixed in 25.03). The right is as good as refused: not asked again for `refusal_retry`, told once.
    fn privileged_bounced(&mut self, now: Instant, pending: Pending) {
        let reason =
            "the server handed the privileged IQ back unprocessed (ejabberd 24.10 to 25.02 do: upgrade to 25.03)";
        if let Some((namespace, kind)) = pending.privilege {
            self.refuse_right(now, pending.exchange.account(), namespace, kind, reason);
        }
        self.exchange_failed(now, pending.exchange, reason);
    }

    /// The server would not carry out a privileged IQ it had granted: that right is off for `refusal_retry`, and
    /// the operator is told which directions it stops (once per host and right per connection).
    pub(super) fn refuse_right(
        &mut self,
        now: Instant,
        account: &BareJid,
        namespace: &'static str,
        kind: IqType,
        reason: &str,
    ) {
        let host = account.domain().as_str();
        self.grants.refuse(host, namespace, kind, now + self.config.refusal_retry);
        if self.grants.first_miss(host, namespace, kind) {
            let (host, right) = (host.to_owned(), grants::Right::Iq(namespace, kind));
            let (reason, retry_in) = (reason.to_owned(), self.config.refusal_retry);
            self.events.push_back(Event::RightRefused { host, right, reason, retry_in });
        }
    }

    /// Answers disco#info: for a delegation node, the namespace (so the server activates it); otherwise who we are.
    fn disco_info(&self, query: &Element) -> Element {
        let node = query.attr("node").unwrap_or_default();
        if let Some(namespace) = component::delegation_disco_namespace(node) {
            return component::delegation_disco_info(node, namespace);
        }
        use crate::wire::xml::{Attrs, element};
        let feature = |var: &str| element("feature", ns::DISCO_INFO).with_attr("var", var).build();
        element("query", ns::DISCO_INFO)
            .append(
                element("identity", ns::DISCO_INFO)
                    .with_attr("category", "component")
                    .with_attr("type", "generic")
                    .with_attr("name", "avatar-gateway")
                    .build(),
            )
            .append(feature(ns::DISCO_INFO))
            .append(feature(ns::IQ_AVATAR))
            .append(feature(ns::STORAGE_AVATAR))
            .build()
    }

    fn id(&mut self) -> String {
        self.next_id += 1;
        format!("gw{}", self.next_id)
    }

    /// Sends a request from the component and remembers what it was for.
    /// Requests wait while the images already fetched exceed their backlog budget.
    fn pace(&mut self) {
        self.pending.pause(self.transcodes.queued_bytes() > self.config.transcode_backlog_bytes);
    }

    fn request(&mut self, now: Instant, kind: IqType, to: &str, payload: Element, exchange: Exchange) {
        self.pace();
        let id = self.id();
        let (stanza, pending) = self.plain_request(&id, kind, to, payload, exchange);
        self.outbox.extend(self.pending.ask(now, id, pending, Some(stanza)));
    }

    /// A plain request with id `id`, remembered as in flight (not paced); the caller sends it.
    fn remembered_request(
        &mut self,
        now: Instant,
        id: String,
        kind: IqType,
        to: &str,
        payload: Element,
        exchange: Exchange,
    ) -> Element {
        let (stanza, pending) = self.plain_request(&id, kind, to, payload, exchange);
        self.pending.ask(now, id, pending, None);
        stanza
    }

    fn plain_request(
        &self,
        id: &str,
        kind: IqType,
        to: &str,
        payload: Element,
        exchange: Exchange,
    ) -> (Element, Pending) {
        let component = &self.config.component;
        let stanza = iq(ns::COMPONENT, kind, id, Some(component), Some(to), Some(payload));
        let asked = Jid::new(to).map_or_else(|_| to.to_owned(), |j| j.to_string());
        (stanza, Pending { exchange, asked, privilege: None, sent: false })
    }

    /// Sends a XEP-0356 privileged IQ on the account's behalf, about its own data, if that right was granted; says
    /// so if not.
    fn privileged(
        &mut self,
        now: Instant,
        account: &BareJid,
        namespace: &'static str,
        kind: IqType,
        payload: Element,
        exchange: Exchange,
    ) -> bool {
        self.privileged_as(now, account, account, namespace, kind, payload, exchange)
    }

    /// Sends a privileged IQ as `managed` to `target` (another account when the gateway asks as a reader, so that
    /// the server applies `target`'s access model to `managed`).
    #[allow(clippy::too_many_arguments)]
    fn privileged_as(
        &mut self,
        now: Instant,
        managed: &BareJid,
        target: &BareJid,
        namespace: &'static str,
        kind: IqType,
        payload: Element,
        exchange: Exchange,
    ) -> bool {
        if !self.grants.allows_iq_at(managed.domain().as_str(), namespace, kind, now) {
            let what = format!("{} {namespace}", kind.as_str());
            self.sweep_refused(managed, || format!("not granted: {what}"));
            // Once per host and right until the next connection: the capability report already named the fix.
            if self.grants.first_miss(managed.domain().as_str(), namespace, kind) {
                self.events.push_back(Event::NotGranted { account: managed.to_string(), what });
            }
            return false;
        }
        let id = self.id();
        let stanza = if self.config.dry_run && kind == IqType::Set {
            self.dry_done.push_back(id.clone());
            None
        } else {
            Some(component::privileged_iq(&id, &self.config.component, managed, target, kind, payload))
        };
        let pending = Pending { exchange, asked: managed.to_string(), privilege: Some((namespace, kind)), sent: false };
        self.pace();
        self.outbox.extend(self.pending.ask(now, id, pending, stanza));
        true
    }

    /// Whether one of `account`'s outstanding exchanges matches.
    fn is_pending(&self, account: &BareJid, matches: impl Fn(&Exchange) -> bool) -> bool {
        self.pending.any_for(account, matches)
    }

    /// What the configuration says of server-side conversion before any account was asked.
    fn server_converts(config: &EngineConfig) -> Option<bool> {
        match config.server_converts {
            ServerConverts::Yes => Some(true),
            ServerConverts::No => Some(false),
            ServerConverts::Auto => None,
        }
    }

    fn account(&mut self, jid: &BareJid) -> &mut Account {
        // Looked up first: every stanza asks, and `entry` would clone the JID each time.
        if !self.accounts.contains_key(jid) {
            let mut account = Account::default();
            account.server_converts = Self::server_converts(&self.config);
            self.accounts.insert(jid.clone(), account);
        }
        self.accounts.get_mut(jid).expect("inserted above")
    }

    fn refuse(&mut self, account: &BareJid, scheme: Scheme, reason: String) {
        self.sweep_refused(account, || format!("{}: {reason}", scheme.name()));
        self.events.push_back(Event::Refused { account: account.to_string(), scheme, reason });
    }

    /// Refuses a scheme's candidate avatar: nothing changes, and the scheme's state is forgotten so the same
    /// hash is judged again later (fetched anew once the negative cache lets it).
    fn reject(&mut self, account: &BareJid, scheme: Scheme, reason: String) {
        self.account(account).forget(scheme);
        self.persist(account);
        self.refuse(account, scheme, reason);
    }

    /// Refuses `hash` for the scheme; the scheme's state is forgotten only if it still shows that hash (a newer
    /// one seen meanwhile is waiting for its own fetch and must not be lost).
    fn reject_hash(&mut self, account: &BareJid, scheme: Scheme, hash: AvatarHash, reason: String) {
        if self.account(account).seen(scheme) == Seen::Avatar(hash) {
            self.reject(account, scheme, reason);
        } else {
            self.refuse(account, scheme, reason);
        }
    }

    /// Feeds one authoritative observation to the account and acts on the verdict.
    fn observe(&mut self, now: Instant, account: &BareJid, scheme: Scheme, state: Seen, legacy_from: Option<&Jid>) {
        let verdict = self.account(account).observe(scheme, state);
        self.persist(account);
        match verdict {
            // Nothing new here, but a target read may have just become known: finish any write it was waiting for.
            Verdict::Unchanged => {
                self.answer_readers_if_settled(account);
                self.plan_writes(now, account);
            }
            Verdict::Removed => {
                self.events.push_back(Event::Removed { account: account.to_string(), scheme });
                self.stamp(now, account);
                self.plan_writes(now, account);
                self.answer_readers_if_settled(account);
            }
            Verdict::Candidate(hash) => {
                let taken = self.rates.take_change(account, now);
                if self.within_rate(now, account, scheme, taken) {
                    self.candidate(now, account, scheme, hash, legacy_from);
                }
            }
        }
    }

    /// A new hash for the account: known bytes are adopted at once; a hash that failed for this account waits out
    /// its negative TTL; anything else is fetched.
    fn candidate(&mut self, now: Instant, account: &BareJid, scheme: Scheme, hash: AvatarHash, from: Option<&Jid>) {
        let waiter =
            || Resume::Candidate(Waiter { account: account.clone(), scheme, legacy_from: from.cloned(), hash });
        match self.rendition(&hash, waiter) {
            Held::Ready(r) => return self.adopt_held(now, account, scheme, r),
            Held::Loading => return,
            Held::Missing => {}
        }
        if let Some(reason) = self.cache.failure(account, &hash, now) {
            let reason = format!("{hash} failed before ({reason}); not fetched again yet");
            self.reject(account, scheme, reason);
        } else {
            self.fetch(now, account, scheme, hash, from);
        }
    }

    /// Asks the scheme for the bytes of `hash` (once per hash at a time: concurrent askers share the fetch).
    ///
    /// One fetch per account at a time: while one is out, a newer hash of the same account only replaces the
    /// deferred one (the latest wins), so an account that changes its avatar hundreds of times a second costs one
    /// fetch and one transcode per round trip, and the other accounts' work is not queued behind its flood.
    fn fetch(&mut self, now: Instant, account: &BareJid, scheme: Scheme, hash: AvatarHash, legacy_from: Option<&Jid>) {
        let debt = self.rates.debt(account, now);
        if !self.within_rate(now, account, scheme, debt) {
            return;
        }
        let waiter = Waiter { account: account.clone(), scheme, legacy_from: legacy_from.cloned(), hash };
        if self.pending.fetching(&hash) || self.transcodes.adopts_hash(&hash) {
            return self.fetch_waiters.entry(hash).or_default().push(waiter);
        }
        if self.is_pending(account, |e| e.fetched_hash().is_some()) || self.transcodes.adopting(account) {
            self.deferred_fetches.insert(account.clone(), waiter);
            return;
        }
        match (scheme, legacy_from) {
            (Scheme::Legacy, Some(full)) => {
                let query = xep0008::query(xep0008::Store::IqAvatar, None);
                let exchange = Exchange::IqAvatar { account: account.clone(), hash };
                self.request(now, IqType::Get, &full.to_string(), query, exchange);
            }
            (Scheme::Pep, _) => {
                let request = xep0084::request_items(xep0084::AvatarNode::DATA, Some(&hash));
                let exchange = Exchange::PepData { account: account.clone(), hash };
                self.privileged(now, account, ns::PUBSUB, IqType::Get, request, exchange);
            }
            // A vCard's bytes come with the vCard itself; a legacy hash without a client to ask has no source.
            _ => self.refuse(account, scheme, format!("no source to fetch {hash} from")),
        }
    }

    /// Bytes arrived for `scheme`: check them against the claimed hash, validate, derive renditions, adopt.
    fn accept_bytes(
        &mut self,
        now: Instant,
        account: &BareJid,
        scheme: Scheme,
        claimed: Option<AvatarHash>,
        bytes: Vec<u8>,
    ) {
        let hash = AvatarHash::of(&bytes);
        self.rates.spend_bytes(account, bytes.len(), now);
        self.events.push_back(Event::Fetched { account: account.to_string(), scheme, hash });
        if let Some(claimed) = claimed.filter(|c| *c != hash) {
            // Held against this account only: anyone may advertise anyone's hash (see `cache`).
            let reason = format!("advertised {claimed} but the bytes hash to {hash}");
            self.cache.mark_failed(account, claimed, reason.clone(), now);
            self.reject_hash(account, scheme, claimed, reason.clone());
            self.release_waiters(now, claimed, Err(reason));
            return self.fetch_done(now, account);
        }
        // Superseded while in flight, and nobody else waits for it: not worth a decode.
        if self.account(account).seen(scheme) == Seen::Avatar(hash) || self.fetch_waiters.contains_key(&hash) {
            // The fetch is over once its bytes are judged: `fetch_done` follows the transcode.
            return self.transcodes.request(bytes.into(), Purpose::Adopt { account: account.clone(), scheme });
        }
        self.fetch_done(now, account);
    }

    /// An image job ended for one of the things that waited for it.
    fn transcoded(
        &mut self,
        now: Instant,
        hash: AvatarHash,
        purpose: Purpose,
        result: Result<&Transcoded, &crate::image::ImageError>,
    ) {
        match (purpose, result) {
            (Purpose::Adopt { account, scheme }, Ok(t)) => {
                if self.account(&account).seen(scheme) == Seen::Avatar(hash) {
                    self.adopt(now, &account, scheme, t.clone());
                }
                self.release_waiters(now, hash, Ok(t));
                self.fetch_done(now, &account);
            }
            (Purpose::Adopt { account, scheme }, Err(e)) => {
                self.cache.mark_failed(&account, hash, e.to_string(), now);
                self.reject_hash(&account, scheme, hash, e.to_string());
                self.release_waiters(now, hash, Err(e.to_string()));
                self.fetch_done(now, &account);
            }
            (Purpose::VcardRead { account }, result) => self.vcard_transcoded(now, &account, hash, result),
            (Purpose::Storage { account, set }, result) => {
                let (outer, delegated) = *set;
                self.storage_transcoded(now, &account, &outer, &delegated, result)
            }
        }
    }

    /// A shared fetch ended: accounts that still see that hash adopt its bytes. If it failed, each of them asks
    /// its own source: the failure is the fetched account's, not theirs (a user may advertise another's hash and
    /// answer with junk precisely to make a waiting victim fail).
    fn release_waiters(&mut self, now: Instant, hash: AvatarHash, result: Result<&Transcoded, String>) {
        for w in self.fetch_waiters.remove(&hash).unwrap_or_default() {
            if self.account(&w.account).seen(w.scheme) != Seen::Avatar(hash) {
                continue;
            }
            match &result {
                Ok(t) => self.adopt(now, &w.account, w.scheme, (*t).clone()),
                Err(_) => self.candidate(now, &w.account, w.scheme, hash, w.legacy_from.as_ref()),
            }
        }
    }

    /// The account's fetch is over: start the one deferred behind it, if the account still shows that hash.
    pub(super) fn fetch_done(&mut self, now: Instant, account: &BareJid) {
        let Some(w) = self.deferred_fetches.remove(account) else { return };
        if self.account(account).seen(w.scheme) == Seen::Avatar(w.hash) {
            self.candidate(now, account, w.scheme, w.hash, w.legacy_from.as_ref());
        }
    }
}
