//! The content-addressed avatar cache: image bytes by hash under a byte budget, remembered failures, and which
//! renditions the gateway derived from which original.
//!
//! Everything is keyed by [`AvatarHash`], the SHA-1 of the bytes, so one entry serves all three schemes (DESIGN
//! rule 2) and a re-insert of the same hash is necessarily the same bytes. Three parts, each bounded on its own:
//!
//! - **Renditions** ([`AvatarCache::insert`], [`AvatarCache::get`]): least-recently-used eviction until the sum of
//!   the held images' byte lengths is within [`CacheLimits::max_bytes`]. An image larger than the whole budget is
//!   refused and the caller is told ([`Inserted::TooLarge`]) rather than silently dropped.
//! - **Failures** ([`AvatarCache::mark_failed`], [`AvatarCache::failure`]): a hash whose fetch or validation
//!   failed for an account is not asked of that account again until [`CacheLimits::negative_ttl_secs`] have passed
//!   (a broken client is not hammered). A mark is held against the account whose source failed, never against the
//!   hash for everyone: otherwise any user could advertise the hash of an image someone else is about to set (a
//!   popular default avatar), answer the fetch with junk, and block that image for every account for the TTL.
//!   Holding a valid [`Rendition`] of a hash is proof against any failure of it: while it is held, no mark counts.
//! - **Derivations** ([`AvatarCache::link`], [`AvatarCache::derived_from`], [`AvatarCache::original_of`]): the PNG
//!   and XEP-0008 renditions made from an original, and the way back, so that when a rendition the gateway
//!   published comes back as a notification it is recognised as our own echo and not taken for a new avatar
//!   (DESIGN rule 5). These are hashes only and outlive the bytes: echo suppression must work after eviction.
//!
//! # Why `lru` with our own byte accounting, not `quick_cache`
//!
//! The cache belongs to the sans-IO engine, which runs on one thread and takes `&mut self` for every step, so a
//! concurrent cache buys nothing and its locks and shards cost determinism. `lru::LruCache::unbounded()` plus a
//! byte counter (a dozen lines, see [`AvatarCache::insert`]) gives an exact, documented eviction order that tests
//! can assert entry by entry. `quick_cache` splits its weight capacity across shards and **silently does not store**
//! an item heavier than one shard's share (crates.md §4.2: 60-byte items in a 100-byte cache were dropped), so an
//! avatar well under the configured budget could vanish without a trace; here the only refusal is an image larger
//! than the whole budget, and it is reported.
//!
//! Nothing here reads a clock or touches I/O: `now` comes from the caller, like every other engine input, so
//! expiry is tested on a simulated [`Instant`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lru::LruCache;
use serde::Deserialize;
use xmpp_parsers::jid::BareJid;

use crate::avatar::AvatarHash;
use crate::image::Rendition;

/// The cache's budgets; the `[cache]` section of the config. Every field has a default, so the section is optional.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheLimits {
    /// Most image bytes held at once (the sum of the renditions' byte lengths; per-entry bookkeeping of about a
    /// hundred bytes is not counted). Default 32 MiB: over a hundred PEP images at the largest default size
    /// (256 KiB), thousands of typical 10–30 KB avatars. An image larger than this is never cached.
    pub max_bytes: usize,
    /// How long, in seconds, a failed hash is not fetched again. Default 600: a broken client is asked at most
    /// every ten minutes, yet a fixed one is picked up soon. 0 disables the negative cache.
    pub negative_ttl_secs: u64,
    /// Most failed hashes remembered at once; beyond it the oldest mark is forgotten first. Default 10 000
    /// (a hash and a short reason each, a couple of MB at most).
    pub max_negative: usize,
    /// Most original → renditions links remembered at once; beyond it the least recently linked original is
    /// forgotten first. Default 50 000 (one per account with an avatar on a large server, ~200 bytes each).
    pub max_derivations: usize,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self { max_bytes: 32 << 20, negative_ttl_secs: 600, max_negative: 10_000, max_derivations: 50_000 }
    }
}

/// The renditions the gateway made from one original avatar: what it publishes to XEP-0084 and serves to
/// XEP-0008 readers. Either may equal the original's own hash when the original already qualified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Derived {
    /// The PNG published to XEP-0084 (and so seen through XEP-0398 vCard conversion).
    pub png: AvatarHash,
    /// The ≤ 64 px, < 8 KB rendition served to XEP-0008 readers.
    pub legacy: AvatarHash,
}

/// What [`AvatarCache::insert`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// Newly stored; these least-recently-used entries were evicted to make room, oldest first.
    Stored {
        /// Hashes evicted by this insert, in eviction order.
        evicted: Vec<AvatarHash>,
    },
    /// The hash was already held (so were the bytes): it is now the most recently used, nothing else changed.
    Refreshed,
    /// Not stored: the image alone is larger than the whole byte budget. Nothing was evicted.
    TooLarge {
        /// The image's size in bytes.
        size: usize,
        /// [`CacheLimits::max_bytes`].
        budget: usize,
    },
}

/// A remembered failure: why, and until when.
#[derive(Debug)]
struct Failure {
    reason: String,
    /// `None` when `now + ttl` is beyond what [`Instant`] can represent: never expires.
    until: Option<Instant>,
}

/// The gateway's in-memory avatar cache. Owned by the engine; see the module documentation.
#[derive(Debug)]
pub struct AvatarCache {
    limits: CacheLimits,
    /// Unbounded by count: the byte budget is enforced by `insert`.
    renditions: LruCache<AvatarHash, Rendition>,
    /// Sum of `bytes().len()` over `renditions`; never above `limits.max_bytes` between calls.
    bytes: usize,
    /// Marked failures in mark order. With one TTL for all, mark order is also expiry order, so the least
    /// recently marked entry is both the first to expire and the first to drop when full. `failure` only peeks,
    /// which keeps that order. Keyed by the account whose source failed (see the module documentation).
    failures: LruCache<(BareJid, AvatarHash), Failure>,
    /// Original → renditions, least recently linked first.
    derived: LruCache<AvatarHash, Derived>,
    /// Rendition → the originals it was derived from, most recent link last. Several originals can share a
    /// rendition (two encodings of one picture, or a PNG that is its own rendition), so forgetting one original
    /// must not forget the others.
    originals: HashMap<AvatarHash, Vec<AvatarHash>>,
    /// Lookups that found the bytes, and those that did not (for the operator's metrics).
    hits: u64,
    misses: u64,
}

impl AvatarCache {
    /// An empty cache with these budgets.
    pub fn new(limits: CacheLimits) -> Self {
        Self {
            limits,
            renditions: LruCache::unbounded(),
            bytes: 0,
            failures: LruCache::unbounded(),
            derived: LruCache::unbounded(),
            originals: HashMap::new(),
            hits: 0,
            misses: 0,
        }
    }

    /// The budgets this cache keeps.
    pub fn limits(&self) -> &CacheLimits {
        &self.limits
    }

    /// Stores `r` under its hash as the most recently used entry, evicting least-recently-used entries until the
    /// byte budget holds again. A hash already held is only refreshed (same hash, same bytes). While `r` is held,
    /// no failure marked for its hash counts, since it is a validated image with exactly that hash.
    pub fn insert(&mut self, r: Rendition) -> Inserted {
        let hash = r.hash();
        if self.renditions.promote(&hash) {
            return Inserted::Refreshed;
        }
        let size = r.bytes().len();
        if size > self.limits.max_bytes {
            return Inserted::TooLarge { size, budget: self.limits.max_bytes };
        }
        self.renditions.put(hash, r);
        self.bytes += size;
        let mut evicted = Vec::new();
        // Terminates before reaching the new entry: it is the most recent and fits the budget on its own.
        while self.bytes > self.limits.max_bytes {
            let Some((old, gone)) = self.renditions.pop_lru() else { break };
            self.bytes -= gone.bytes().len();
            evicted.push(old);
        }
        Inserted::Stored { evicted }
    }

    /// The rendition with this hash, made the most recently used.
    pub fn get(&mut self, h: &AvatarHash) -> Option<Rendition> {
        let found = self.renditions.get(h).cloned();
        match found {
            Some(_) => self.hits += 1,
            None => self.misses += 1,
        }
        found
    }

    /// Lookups by [`AvatarCache::get`] since start: `(hits, misses)`.
    pub fn lookups(&self) -> (u64, u64) {
        (self.hits, self.misses)
    }

    /// Whether the bytes of `h` are held, without touching the eviction order.
    pub fn contains(&self, h: &AvatarHash) -> bool {
        self.renditions.contains(h)
    }

    /// Bytes of image data held (always ≤ [`CacheLimits::max_bytes`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Number of renditions held.
    pub fn len(&self) -> usize {
        self.renditions.len()
    }

    /// Whether no rendition is held.
    pub fn is_empty(&self) -> bool {
        self.renditions.is_empty()
    }

    /// The renditions held, most recently used first, without touching the eviction order (for `inspect` and
    /// tests).
    pub fn iter(&self) -> impl Iterator<Item = &Rendition> {
        self.renditions.iter().map(|(_, r)| r)
    }

    /// Remembers that fetching or validating `h` from `account`'s source failed, so it is not tried again for that
    /// account for [`CacheLimits::negative_ttl_secs`] from `now`. Marking again restarts the period with the new
    /// reason. Bytes already held for `h` stay: they were verified against `h`, a later failed fetch says nothing
    /// against them.
    pub fn mark_failed(&mut self, account: &BareJid, h: AvatarHash, reason: impl Into<String>, now: Instant) {
        if self.limits.negative_ttl_secs == 0 || self.limits.max_negative == 0 {
            return;
        }
        // Expired marks sit at the LRU end (see `failures`): drop them first so they never crowd out live ones.
        while let Some((_, f)) = self.failures.peek_lru() {
            if !f.expired(now) {
                break;
            }
            self.failures.pop_lru();
        }
        let until = now.checked_add(Duration::from_secs(self.limits.negative_ttl_secs));
        self.failures.put((account.clone(), h), Failure { reason: reason.into(), until });
        while self.failures.len() > self.limits.max_negative {
            self.failures.pop_lru();
        }
    }

    /// Why `h` failed for `account`, while the mark has not expired (from `now` equal to the mark time plus the TTL
    /// on, `None`) and no valid rendition of `h` is held.
    pub fn failure(&self, account: &BareJid, h: &AvatarHash, now: Instant) -> Option<&str> {
        if self.renditions.contains(h) {
            return None;
        }
        let key = (account.clone(), *h);
        self.failures.peek(&key).filter(|f| !f.expired(now)).map(|f| f.reason.as_str())
    }

    /// Records that `derived` was made from `original`, replacing any earlier link of `original` (its old
    /// renditions then no longer map back to it). The link becomes the most recent; beyond
    /// [`CacheLimits::max_derivations`] the least recently linked original is forgotten.
    pub fn link(&mut self, original: AvatarHash, derived: Derived) {
        if self.limits.max_derivations == 0 {
            return;
        }
        if let Some(old) = self.derived.put(original, derived) {
            self.unlink_reverse(original, old);
        }
        for rendition in [derived.png, derived.legacy] {
            let back = self.originals.entry(rendition).or_default();
            back.retain(|o| *o != original);
            back.push(original);
        }
        while self.derived.len() > self.limits.max_derivations {
            let Some((gone, old)) = self.derived.pop_lru() else { break };
            self.unlink_reverse(gone, old);
        }
    }

    /// The renditions made from `original`, if it was linked (does not change which link is forgotten first).
    pub fn derived_from(&self, original: &AvatarHash) -> Option<Derived> {
        self.derived.peek(original).copied()
    }

    /// The original that `rendition` was derived from, if it is one of the gateway's own renditions (the most
    /// recently linked one when several originals share it). An original that was its own rendition maps to
    /// itself.
    pub fn original_of(&self, rendition: &AvatarHash) -> Option<AvatarHash> {
        self.originals.get(rendition).and_then(|back| back.last()).copied()
    }

    /// Number of failure marks held, expired ones included until they are swept by the next `mark_failed`.
    pub fn failures_len(&self) -> usize {
        self.failures.len()
    }

    /// Number of originals with a remembered derivation.
    pub fn derivations_len(&self) -> usize {
        self.derived.len()
    }

    /// Removes `original` from the reverse entries of the renditions in `old`.
    fn unlink_reverse(&mut self, original: AvatarHash, old: Derived) {
        for rendition in [old.png, old.legacy] {
            if let Some(back) = self.originals.get_mut(&rendition) {
                back.retain(|o| *o != original);
                if back.is_empty() {
                    self.originals.remove(&rendition);
                }
            }
        }
    }
}

impl Failure {
    fn expired(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| now >= until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ImageLimits;

    fn alice() -> BareJid {
        BareJid::new("alice@example.org").expect("a valid JID")
    }

    /// A `side`×`side` PNG of pseudo-random pixels (incompressible, so its size is predictable: ~3·side² bytes),
    /// different for every `seed`.
    fn noise_png(seed: u32, side: u32) -> Rendition {
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        let img = ::image::RgbImage::from_fn(side, side, |_, _| {
            let mut next = || {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            };
            ::image::Rgb([next(), next(), next()])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, ::image::ImageFormat::Png).expect("encode");
        Rendition::from_bytes(out.into_inner(), &ImageLimits::default()).expect("valid png")
    }

    fn h(name: &str) -> AvatarHash {
        AvatarHash::of(name.as_bytes())
    }

    fn limits(max_bytes: usize) -> CacheLimits {
        CacheLimits { max_bytes, ..CacheLimits::default() }
    }

    #[test]
    fn defaults_deserialise_from_an_empty_section() {
        let parsed: CacheLimits = toml::from_str("").unwrap();
        assert_eq!(parsed, CacheLimits::default());
        assert!(toml::from_str::<CacheLimits>("max_byte = 3").is_err(), "typos are refused");
    }

    #[test]
    fn evicts_least_recently_used_until_within_budget() {
        let [a, b, c] = [1, 2, 3].map(|s| noise_png(s, 16));
        let size = a.bytes().len();
        let mut cache = AvatarCache::new(limits(2 * size + size / 2));
        assert_eq!(cache.insert(a.clone()), Inserted::Stored { evicted: vec![] });
        assert_eq!(cache.insert(b.clone()), Inserted::Stored { evicted: vec![] });
        assert!(cache.get(&a.hash()).is_some()); // a is now more recent than b
        assert_eq!(cache.insert(c.clone()), Inserted::Stored { evicted: vec![b.hash()] });
        assert!(cache.contains(&a.hash()) && cache.contains(&c.hash()) && !cache.contains(&b.hash()));
        assert_eq!(cache.bytes(), a.bytes().len() + c.bytes().len());
    }

    #[test]
    fn refresh_does_not_double_count() {
        let a = noise_png(1, 8);
        let mut cache = AvatarCache::new(CacheLimits::default());
        cache.insert(a.clone());
        assert_eq!(cache.insert(a.clone()), Inserted::Refreshed);
        assert_eq!((cache.len(), cache.bytes()), (1, a.bytes().len()));
    }

    #[test]
    fn oversize_is_refused_and_evicts_nothing() {
        let small = noise_png(1, 4);
        let big = noise_png(2, 32);
        let mut cache = AvatarCache::new(limits(big.bytes().len() - 1));
        cache.insert(small.clone());
        assert_eq!(
            cache.insert(big.clone()),
            Inserted::TooLarge { size: big.bytes().len(), budget: big.bytes().len() - 1 }
        );
        assert!(cache.contains(&small.hash()) && !cache.contains(&big.hash()));
        assert_eq!(cache.bytes(), small.bytes().len());
    }

    #[test]
    fn exactly_the_budget_fits() {
        let a = noise_png(1, 8);
        let mut cache = AvatarCache::new(limits(a.bytes().len()));
        assert_eq!(cache.insert(a.clone()), Inserted::Stored { evicted: vec![] });
        assert_eq!(cache.bytes(), a.bytes().len());
    }

    #[test]
    fn contains_does_not_promote() {
        let [a, b, c] = [1, 2, 3].map(|s| noise_png(s, 8));
        let mut cache = AvatarCache::new(limits(a.bytes().len() + b.bytes().len()));
        cache.insert(a.clone());
        cache.insert(b.clone());
        assert!(cache.contains(&a.hash()));
        assert_eq!(cache.insert(c), Inserted::Stored { evicted: vec![a.hash()] });
    }

    #[test]
    fn failure_expires_at_exactly_the_ttl() {
        let t0 = Instant::now();
        let x = h("x");
        let mut cache = AvatarCache::new(CacheLimits { negative_ttl_secs: 60, ..CacheLimits::default() });
        cache.mark_failed(&alice(), x, "timeout", t0);
        assert_eq!(cache.failure(&alice(), &x, t0), Some("timeout"));
        assert_eq!(cache.failure(&alice(), &x, t0 + Duration::from_millis(59_999)), Some("timeout"));
        assert_eq!(cache.failure(&alice(), &x, t0 + Duration::from_secs(60)), None);
    }

    #[test]
    fn a_huge_ttl_never_expires_instead_of_overflowing() {
        let t0 = Instant::now();
        let x = h("x");
        let mut cache = AvatarCache::new(CacheLimits { negative_ttl_secs: u64::MAX, ..CacheLimits::default() });
        cache.mark_failed(&alice(), x, "gone", t0);
        assert_eq!(cache.failure(&alice(), &x, t0 + Duration::from_secs(100 * 365 * 86_400)), Some("gone"));
    }

    #[test]
    fn zero_ttl_or_zero_capacity_disables_the_negative_cache() {
        let t0 = Instant::now();
        let x = h("x");
        for limits in [
            CacheLimits { negative_ttl_secs: 0, ..CacheLimits::default() },
            CacheLimits { max_negative: 0, ..CacheLimits::default() },
        ] {
            let mut cache = AvatarCache::new(limits);
            cache.mark_failed(&alice(), x, "nope", t0);
            assert_eq!(cache.failure(&alice(), &x, t0), None);
            assert_eq!(cache.failures_len(), 0);
        }
    }

    #[test]
    fn expired_marks_are_swept_before_live_ones_are_dropped() {
        let t0 = Instant::now();
        let [a, b, c] = ["a", "b", "c"].map(h);
        let mut cache =
            AvatarCache::new(CacheLimits { negative_ttl_secs: 10, max_negative: 2, ..CacheLimits::default() });
        cache.mark_failed(&alice(), a, "a", t0);
        cache.mark_failed(&alice(), b, "b", t0 + Duration::from_secs(5));
        // At t0+10, a has expired: it goes, b stays.
        cache.mark_failed(&alice(), c, "c", t0 + Duration::from_secs(10));
        assert_eq!(cache.failures_len(), 2);
        assert_eq!(cache.failure(&alice(), &b, t0 + Duration::from_secs(10)), Some("b"));
        // Full of live marks: the oldest live one (b) makes room.
        let d = h("d");
        cache.mark_failed(&alice(), d, "d", t0 + Duration::from_secs(11));
        assert_eq!(cache.failure(&alice(), &b, t0 + Duration::from_secs(11)), None);
        assert_eq!(cache.failure(&alice(), &c, t0 + Duration::from_secs(11)), Some("c"));
    }

    #[test]
    fn insert_clears_a_failure() {
        let t0 = Instant::now();
        let a = noise_png(1, 4);
        let mut cache = AvatarCache::new(CacheLimits::default());
        cache.mark_failed(&alice(), a.hash(), "bad", t0);
        cache.insert(a.clone());
        assert_eq!(cache.failure(&alice(), &a.hash(), t0), None);
    }

    #[test]
    fn links_both_ways_and_relink_replaces() {
        let [o, p1, l1, p2, l2] = ["o", "p1", "l1", "p2", "l2"].map(h);
        let mut cache = AvatarCache::new(CacheLimits::default());
        cache.link(o, Derived { png: p1, legacy: l1 });
        assert_eq!(cache.derived_from(&o), Some(Derived { png: p1, legacy: l1 }));
        assert_eq!((cache.original_of(&p1), cache.original_of(&l1)), (Some(o), Some(o)));
        cache.link(o, Derived { png: p2, legacy: l2 });
        assert_eq!(cache.derived_from(&o), Some(Derived { png: p2, legacy: l2 }));
        assert_eq!((cache.original_of(&p1), cache.original_of(&l1)), (None, None));
        assert_eq!((cache.original_of(&p2), cache.original_of(&l2)), (Some(o), Some(o)));
        assert_eq!(cache.derivations_len(), 1);
    }

    #[test]
    fn a_shared_rendition_survives_forgetting_one_of_its_originals() {
        let [o1, o2, p, l] = ["o1", "o2", "p", "l"].map(h);
        let mut cache = AvatarCache::new(CacheLimits { max_derivations: 1, ..CacheLimits::default() });
        cache.link(o1, Derived { png: p, legacy: l });
        cache.link(o2, Derived { png: p, legacy: p });
        // o1 was forgotten (capacity 1); p still maps to o2, l to nobody.
        assert_eq!(cache.derived_from(&o1), None);
        assert_eq!(cache.original_of(&p), Some(o2));
        assert_eq!(cache.original_of(&l), None);
    }

    #[test]
    fn zero_derivations_remembers_none() {
        let [o, p] = ["o", "p"].map(h);
        let mut cache = AvatarCache::new(CacheLimits { max_derivations: 0, ..CacheLimits::default() });
        cache.link(o, Derived { png: p, legacy: p });
        assert_eq!((cache.derived_from(&o), cache.original_of(&p)), (None, None));
    }
}
