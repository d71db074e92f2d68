//! The metric families, registered once under the `avatar_gateway_` prefix and encoded by prometheus-client
//! (OpenMetrics text, which Prometheus scrapes as is).
//!
//! Every label takes a value from a short fixed set (stanza kinds, scheme names, outcomes, windows): no label
//! holds an account or a hash, so the number of series stays the same however many users the server has.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// `direction` and `kind` of a stanza through the link.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StanzaLabels {
    /// `in` (from the server) or `out`.
    pub direction: &'static str,
    /// `iq`, `presence`, `message` or `other`.
    pub kind: &'static str,
}

/// One conversion step: the scheme an avatar came from, the one written, and how it went.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConversionLabels {
    /// Source scheme (`xep0008`, `vcard`, `xep0084`), `unknown` when the account's source was forgotten.
    pub from: &'static str,
    /// Written scheme, or `none` when the input was refused and nothing was written.
    pub to: &'static str,
    /// `written`, `removed` (the owner's "no avatar" carried over) or `refused`.
    pub outcome: &'static str,
}

/// A plain outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// What happened.
    pub outcome: &'static str,
}

/// A scheme label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SchemeLabels {
    /// `xep0008`, `vcard` or `xep0084`.
    pub scheme: &'static str,
}

/// Clients seen per scheme and window.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClientLabels {
    /// `xep0008`, `vcard` or `any`.
    pub scheme: &'static str,
    /// `24h`, `7d` or `30d`.
    pub window: &'static str,
}

/// A window label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WindowLabels {
    /// `24h`, `7d` or `30d`.
    pub window: &'static str,
}

/// Handles to every metric (cheap clones of shared atomics) and the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    /// What `/metrics` encodes.
    pub registry: Registry,
    /// Stanzas through the link.
    pub stanzas: Family<StanzaLabels, Counter>,
    /// Conversion steps.
    pub conversions: Family<ConversionLabels, Counter>,
    /// Time from a request the gateway sent to its answer.
    pub iq_latency: Histogram,
    /// Requests that got no answer in `gateway.iq_timeout_secs`.
    pub iq_timeouts: Counter,
    /// Image jobs run, by outcome (`ok`, `refused`).
    pub transcodes: Family<OutcomeLabels, Counter>,
    /// Their run time.
    pub transcode_seconds: Histogram,
    /// Image bytes fetched, by the scheme they came from.
    pub fetches: Family<SchemeLabels, Counter>,
    /// XEP-0008 readers answered (`served`, `not_found`).
    pub legacy_reads: Family<OutcomeLabels, Counter>,
    /// Writes or reads skipped for a right the server did not grant.
    pub not_granted: Counter,
    /// Store failures.
    pub store_failures: Counter,
    /// Times an account went over its rate (told once per window: accounts × windows, not refusals).
    pub rate_limited: Counter,
    /// Connections re-established after the link was lost.
    pub reconnects: Counter,
    /// Times this instance took the lease over from another (failovers it served).
    pub takeovers: Counter,
    /// 1 while the component stream is up and authenticated.
    pub link_up: Gauge,
    /// Accounts the engine tracks (every one it met since start, and those restored from the store).
    pub accounts: Gauge,
    /// Image bytes in the in-memory cache.
    pub cache_bytes: Gauge,
    /// Cache lookups by outcome (`hit`, `miss`).
    pub cache_lookups: Family<OutcomeLabels, Counter>,
    /// Time in the store's commit of one group of writes.
    pub store_commit_seconds: Histogram,
    /// Writes committed.
    pub store_writes: Counter,
    /// Distinct accounts seen per client scheme and window (estimates).
    pub clients: Family<ClientLabels, Gauge>,
    /// XEP-0008 clients' share of all accounts seen, per window.
    pub legacy_share: Family<WindowLabels, Gauge<f64, AtomicU64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Self {
            registry: Registry::with_prefix("avatar_gateway"),
            stanzas: Family::default(),
            conversions: Family::default(),
            // 1 ms to ~16 s: a local server answers in milliseconds, a remote client's iq:avatar in seconds.
            iq_latency: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            iq_timeouts: Counter::default(),
            transcodes: Family::default(),
            // 1 ms to ~4 s: a small PNG to a 16-megapixel photo (release build).
            transcode_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 13)),
            fetches: Family::default(),
            legacy_reads: Family::default(),
            not_granted: Counter::default(),
            rate_limited: Counter::default(),
            store_failures: Counter::default(),
            reconnects: Counter::default(),
            takeovers: Counter::default(),
            link_up: Gauge::default(),
            accounts: Gauge::default(),
            cache_bytes: Gauge::default(),
            cache_lookups: Family::default(),
            // 0.1 ms to ~3 s: an fsync on an SSD takes about a millisecond, on a busy disk much more.
            store_commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 15)),
            store_writes: Counter::default(),
            clients: Family::default(),
            legacy_share: Family::default(),
        };
        let r = &mut m.registry;
        r.register("stanzas", "Stanzas through the component link", m.stanzas.clone());
        r.register("conversions", "Avatar conversion steps by source, target and outcome", m.conversions.clone());
        r.register_with_unit(
            "iq_latency",
            "Time from a request the gateway sent to its answer",
            Unit::Seconds,
            m.iq_latency.clone(),
        );
        r.register("iq_timeouts", "Requests the gateway sent that got no answer in time", m.iq_timeouts.clone());
        r.register("transcodes", "Image jobs run (validate, decode, renditions) by outcome", m.transcodes.clone());
        r.register_with_unit(
            "transcode_duration",
            "Run time of image jobs",
            Unit::Seconds,
            m.transcode_seconds.clone(),
        );
        r.register("fetches", "Images fetched, by the scheme they came from", m.fetches.clone());
        r.register("legacy_reads", "XEP-0008 readers answered", m.legacy_reads.clone());
        r.register(
            "not_granted",
            "Reads or writes skipped for a right the server did not grant",
            m.not_granted.clone(),
        );
        r.register("store_failures", "Store reads or writes that failed", m.store_failures.clone());
        r.register(
            "rate_limited",
            "Times an account went over its rate limit (once per account and window)",
            m.rate_limited.clone(),
        );
        r.register("link_reconnects", "Component connections re-established after a loss", m.reconnects.clone());
        r.register("failovers", "Times this instance took the lease over from another instance", m.takeovers.clone());
        r.register("link_up", "1 while the component stream is up and authenticated", m.link_up.clone());
        r.register("accounts_tracked", "Accounts the engine tracks (met since start or restored)", m.accounts.clone());
        r.register("cache_bytes", "Image bytes in the in-memory cache", m.cache_bytes.clone());
        r.register("cache_lookups", "In-memory image cache lookups by outcome", m.cache_lookups.clone());
        r.register_with_unit(
            "store_commit_duration",
            "Time in the store's commit of one group of writes",
            Unit::Seconds,
            m.store_commit_seconds.clone(),
        );
        r.register("store_writes", "Writes committed to the store", m.store_writes.clone());
        r.register(
            "clients_seen",
            "Distinct accounts whose presence carried the scheme (any: every presence), per window (estimate)",
            m.clients.clone(),
        );
        r.register(
            "legacy_share",
            "Share of the accounts seen whose client speaks XEP-0008, per window: when it nears 0, XEP-0008 can go",
            m.legacy_share.clone(),
        );
        m
    }
}
