//! Operations: what an admin watches the gateway through. Metrics and health over HTTP ([`http`]), systemd's
//! readiness and watchdog ([`notify`]), the log format ([`logs`]).
//!
//! All of it lives in the shell, around the engine rather than in it: [`observed::Observed`] passes the link's
//! calls through to the engine and counts what goes by (stanzas, the engine's events, image jobs, the link going
//! up and down), and [`Ops`] is the state it shares with the HTTP server.

pub mod hll;
pub mod http;
pub mod iqs;
pub mod logs;
pub mod metrics;
pub mod notify;
pub mod observed;
pub mod windows;

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::minidom::Element;

use crate::wire::{vcard, xep0008};
use metrics::{ClientLabels, Metrics, WindowLabels};
use windows::{SeenWindows, Window};

/// The gateway's operational state, shared by the link and the HTTP server (cheap to clone).
#[derive(Clone)]
pub struct Ops {
    shared: Arc<Shared>,
}

struct Shared {
    metrics: Metrics,
    sketches: Mutex<Sketches>,
    linked: AtomicBool,
    draining: AtomicBool,
    /// Waiting for the lease another instance holds (PostgreSQL store).
    standby: AtomicBool,
    /// Only their accounts are counted as clients (anyone may send the component a presence).
    hosts: Vec<BareJid>,
    iq_timeout: Duration,
}

/// Distinct accounts, as sketches: memory stays the same however many there are.
#[derive(Default)]
struct Sketches {
    legacy: SeenWindows,
    vcard: SeenWindows,
    any: SeenWindows,
}

/// What `/health` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// The component stream is up and the handshake done.
    Linked,
    /// Not connected to the server (starting, or reconnecting).
    Down,
    /// Shutting down.
    Draining,
    /// A hot standby: another instance holds the lease and serves the server.
    Standby,
}

impl Ops {
    /// State for a gateway serving `hosts`, whose requests time out after `iq_timeout`.
    pub fn new(hosts: Vec<BareJid>, iq_timeout: Duration) -> Self {
        let shared = Shared {
            metrics: Metrics::default(),
            sketches: Mutex::default(),
            linked: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            standby: AtomicBool::new(false),
            hosts,
            iq_timeout,
        };
        Self { shared: Arc::new(shared) }
    }

    /// The link's state, for `/health`.
    pub fn health(&self) -> Health {
        if self.shared.draining.load(Ordering::Relaxed) {
            Health::Draining
        } else if self.shared.standby.load(Ordering::Relaxed) {
            Health::Standby
        } else if self.shared.linked.load(Ordering::Relaxed) {
            Health::Linked
        } else {
            Health::Down
        }
    }

    /// Whether this instance waits for the lease (`true`) or holds it; `epoch` is the lease taken (above 1: an
    /// instance held it before, so this is a takeover, counted).
    pub fn set_standby(&self, standby: bool, epoch: Option<i64>) {
        self.shared.standby.store(standby, Ordering::Relaxed);
        if epoch.is_some_and(|e| e > 1) {
            self.shared.metrics.takeovers.inc();
        }
    }

    /// A shutdown began: health turns 503 so a load balancer or a watcher stops counting on this instance.
    pub fn begin_shutdown(&self) {
        self.shared.draining.store(true, Ordering::Relaxed);
        notify::stopping();
    }

    fn set_linked(&self, linked: bool) {
        self.shared.linked.store(linked, Ordering::Relaxed);
        self.shared.metrics.link_up.set(i64::from(linked));
    }

    /// The metrics as OpenMetrics text, with the estimates computed for `now`.
    pub fn render(&self, now: SystemTime) -> String {
        let unix = unix_secs(now);
        let m = &self.shared.metrics;
        {
            let seen = self.sketches();
            for window in Window::ALL {
                let w = window.label();
                let [legacy, vcard, any] =
                    [&seen.legacy, &seen.vcard, &seen.any].map(|s| s.estimate(window, unix).round() as i64);
                for (scheme, estimate) in [("xep0008", legacy), ("vcard", vcard), ("any", any)] {
                    m.clients.get_or_create(&ClientLabels { scheme, window: w }).set(estimate);
                }
                // The share of the gauges as shown (1 of 2 is 0.5); the estimates of two sets can cross a little,
                // so it is kept within 0..1.
                let share = if any > 0 { (legacy as f64 / any as f64).min(1.0) } else { 0.0 };
                m.legacy_share.get_or_create(&WindowLabels { window: w }).set(share);
            }
        }
        let mut text = String::new();
        // Writing into a String cannot fail; an encoder error would be a bug in a metric's encoding.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &m.registry) {
            tracing::error!("encoding the metrics failed: {e}");
        }
        text
    }

    fn sketches(&self) -> std::sync::MutexGuard<'_, Sketches> {
        // Only sketch updates run under the lock, and they cannot panic: a poisoned lock holds valid sketches.
        self.shared.sketches.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An available presence from a served account: which avatar scheme its client speaks, as it says itself.
    /// XEP-0008 clients put `jabber:x:avatar` in every presence; XEP-0153 is `vcard-temp:x:update` (which a server
    /// converting vCard ↔ PEP adds for every client); XEP-0084 has no presence marker, so it is left out.
    fn presence(&self, presence: &Element) {
        let Some(from) = presence.attr("from").and_then(|f| Jid::new(f).ok()) else { return };
        let served = self.shared.hosts.iter().any(|h| h.domain() == from.domain());
        if from.node().is_none() || !served || presence.attr("type").is_some() {
            return;
        }
        let account = hash(from.to_bare().as_str());
        let now = unix_secs(SystemTime::now());
        let legacy = !matches!(xep0008::XAvatar::from_presence(presence), Ok(xep0008::XAvatar::Absent));
        let vcard = !matches!(vcard::Update::from_presence(presence), Ok(vcard::Update::Unknown));
        let mut seen = self.sketches();
        seen.any.insert(account, now);
        if legacy {
            seen.legacy.insert(account, now);
        }
        if vcard {
            seen.vcard.insert(account, now);
        }
    }
}

/// Seconds since the Unix epoch (0 for a clock set before it), the time the windows count in.
fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// An account's 64-bit hash for the sketches (SipHash with fixed keys: the same account, the same hash).
fn hash(account: &str) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one(account)
}
