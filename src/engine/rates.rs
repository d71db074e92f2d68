//! Per-account rate limits: one account changing its avatar a hundred times a second, or pushing megabytes of
//! images, must cost the other accounts nothing. Token buckets on the `now` the engine is given (no clock here),
//! one pair per recently active account (least recently active forgotten first, so memory stays bounded).

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use serde::Deserialize;
use xmpp_parsers::jid::BareJid;

use super::account::Scheme;
use super::{Engine, Event};

/// The `[rates]` section of the config. 0 turns a limit off.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    /// New avatars one account may bring per minute, from any scheme (a burst of that many is allowed).
    pub avatar_changes_per_minute: u32,
    /// Image bytes the gateway takes in for one account per minute (fetched, read from a vCard, or set).
    pub image_bytes_per_minute: u64,
}

impl Default for RateLimits {
    fn default() -> Self {
        // Far above what a person does (a client that re-publishes on every login changes nothing: same hash).
        Self { avatar_changes_per_minute: 12, image_bytes_per_minute: 8 << 20 }
    }
}

/// Accounts whose buckets are kept.
const TRACKED: usize = 100_000;

/// What an account ran out of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// `avatar_changes_per_minute`.
    Changes,
    /// `image_bytes_per_minute`.
    Bytes,
}

impl std::fmt::Display for Limited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Limited::Changes => "avatar changes per minute (rates.avatar_changes_per_minute)",
            Limited::Bytes => "image bytes per minute (rates.image_bytes_per_minute)",
        })
    }
}

/// Tokens refilled continuously at `per_minute`, holding at most that many.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(per_minute: f64, now: Instant) -> Self {
        Self { tokens: per_minute, at: now }
    }

    fn refill(&mut self, per_minute: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * per_minute / 60.0).min(per_minute);
        self.at = now;
    }

    /// How long until `level` tokens are there.
    fn wait(&self, per_minute: f64, level: f64) -> Duration {
        Duration::from_secs_f64((level - self.tokens).max(0.0) * 60.0 / per_minute)
    }
}

#[derive(Debug, Clone, Copy)]
struct Buckets {
    changes: Bucket,
    bytes: Bucket,
    /// Until when the account's limit is not told again.
    told_until: Option<Instant>,
}

/// Every tracked account's buckets.
#[derive(Debug)]
pub(super) struct Rates {
    limits: RateLimits,
    accounts: lru::LruCache<BareJid, Buckets>,
}

impl Rates {
    pub(super) fn new(limits: RateLimits) -> Self {
        Self { limits, accounts: lru::LruCache::new(NonZeroUsize::new(TRACKED).expect("non-zero")) }
    }

    fn buckets(&mut self, account: &BareJid, now: Instant) -> &mut Buckets {
        let (changes, bytes) =
            (f64::from(self.limits.avatar_changes_per_minute), self.limits.image_bytes_per_minute as f64);
        let b = self.accounts.get_or_insert_mut(account.clone(), || Buckets {
            changes: Bucket::full(changes, now),
            bytes: Bucket::full(bytes, now),
            told_until: None,
        });
        b.changes.refill(changes, now);
        b.bytes.refill(bytes, now);
        b
    }

    /// Takes one avatar change for `account`, or says which limit it is over and for how long.
    pub(super) fn take_change(&mut self, account: &BareJid, now: Instant) -> Result<(), (Limited, Duration)> {
        let per_minute = f64::from(self.limits.avatar_changes_per_minute);
        if per_minute == 0.0 {
            return Ok(());
        }
        let b = &mut self.buckets(account, now).changes;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err((Limited::Changes, b.wait(per_minute, 1.0)))
        }
    }

    /// Charges `bytes` of image input that arrived for `account`. They are charged after the fact (they are here
    /// already): an account in debt is not read again until the debt is paid off ([`Rates::check`]).
    pub(super) fn spend_bytes(&mut self, account: &BareJid, bytes: usize, now: Instant) {
        if self.limits.image_bytes_per_minute > 0 {
            self.buckets(account, now).bytes.tokens -= bytes as f64;
        }
    }

    /// Whether `account` may bring anything now: a change left, and no byte debt.
    pub(super) fn check(&mut self, account: &BareJid, now: Instant) -> Result<(), (Limited, Duration)> {
        let changes = f64::from(self.limits.avatar_changes_per_minute);
        let b = self.buckets(account, now);
        if changes > 0.0 && b.changes.tokens < 1.0 {
            return Err((Limited::Changes, b.changes.wait(changes, 1.0)));
        }
        self.debt(account, now)
    }

    /// Whether `account` owes image bytes (then nothing more is fetched or read for it until it does not).
    pub(super) fn debt(&mut self, account: &BareJid, now: Instant) -> Result<(), (Limited, Duration)> {
        let bytes = self.limits.image_bytes_per_minute as f64;
        let b = self.buckets(account, now);
        if bytes > 0.0 && b.bytes.tokens < 0.0 {
            return Err((Limited::Bytes, b.bytes.wait(bytes, 0.0)));
        }
        Ok(())
    }

    /// Whether the account's limit is to be told now (once per window: then quiet until `retry_in` has passed).
    pub(super) fn tell(&mut self, account: &BareJid, now: Instant, retry_in: Duration) -> bool {
        let b = self.buckets(account, now);
        if b.told_until.is_some_and(|t| now < t) {
            return false;
        }
        b.told_until = Some(now + retry_in);
        true
    }
}

impl Engine {
    /// Lets through what `account` brought within its rate (`Ok`), or refuses it: told once per window, and the
    /// scheme's state forgotten, so the same hash is judged again once the window has passed.
    pub(super) fn within_rate(
        &mut self,
        now: Instant,
        account: &BareJid,
        scheme: Scheme,
        verdict: Result<(), (Limited, Duration)>,
    ) -> bool {
        let Err((limit, retry_in)) = verdict else { return true };
        self.over_rate(now, account, limit, retry_in);
        self.account(account).forget(scheme);
        self.persist(account);
        self.sweep_refused(account, || format!("{}: over its rate of {limit}", scheme.name()));
        false
    }

    /// `account` is over `limit` for `retry_in`: told once per window.
    pub(super) fn over_rate(&mut self, now: Instant, account: &BareJid, limit: Limited, retry_in: Duration) {
        if self.rates.tell(account, now, retry_in) {
            self.events.push_back(Event::RateLimited { account: account.to_string(), limit, retry_in });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> BareJid {
        s.parse().unwrap()
    }

    #[test]
    fn a_burst_of_changes_then_one_per_refill() {
        let mut rates = Rates::new(RateLimits { avatar_changes_per_minute: 6, image_bytes_per_minute: 0 });
        let (a, t0) = (jid("a@x"), Instant::now());
        for _ in 0..6 {
            assert_eq!(rates.take_change(&a, t0), Ok(()));
        }
        let (what, wait) = rates.take_change(&a, t0).unwrap_err();
        assert_eq!((what, wait), (Limited::Changes, Duration::from_secs(10)));
        // Another account is not affected.
        assert_eq!(rates.take_change(&jid("b@x"), t0), Ok(()));
        assert_eq!(rates.take_change(&a, t0 + Duration::from_secs(10)), Ok(()));
        assert!(rates.take_change(&a, t0 + Duration::from_secs(11)).is_err());
        assert_eq!(rates.check(&a, t0 + Duration::from_secs(11)).unwrap_err().0, Limited::Changes);
    }

    #[test]
    fn bytes_are_charged_after_the_fact_and_a_debt_stops_the_account_until_paid() {
        let mut rates = Rates::new(RateLimits { avatar_changes_per_minute: 0, image_bytes_per_minute: 600 });
        let (a, t0) = (jid("a@x"), Instant::now());
        rates.spend_bytes(&a, 500, t0);
        assert_eq!(rates.check(&a, t0), Ok(()));
        rates.spend_bytes(&a, 700, t0);
        assert_eq!(rates.check(&a, t0), Err((Limited::Bytes, Duration::from_secs(60))));
        assert!(rates.check(&a, t0 + Duration::from_secs(59)).is_err());
        assert_eq!(rates.check(&a, t0 + Duration::from_secs(60)), Ok(()));
        assert_eq!(rates.check(&jid("b@x"), t0), Ok(()));
    }

    #[test]
    fn a_limit_is_told_once_per_window() {
        let mut rates = Rates::new(RateLimits::default());
        let (a, t0) = (jid("a@x"), Instant::now());
        assert!(rates.tell(&a, t0, Duration::from_secs(5)));
        assert!(!rates.tell(&a, t0 + Duration::from_secs(4), Duration::from_secs(5)));
        assert!(rates.tell(&a, t0 + Duration::from_secs(5), Duration::from_secs(5)));
    }
}
