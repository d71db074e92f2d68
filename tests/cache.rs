//! Behaviour of `src/cache.rs` with renditions made from the images in `fixtures/images/`.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use avatar_gateway::avatar::AvatarHash;
use avatar_gateway::cache::{AvatarCache, CacheLimits, Derived, Inserted};
use avatar_gateway::image::{ImageLimits, Rendition};
use proptest::prelude::*;
use xmpp_parsers::jid::BareJid;

fn alice() -> BareJid {
    BareJid::new("alice@example.org").expect("a valid JID")
}

fn load(name: &str) -> Rendition {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/images").join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Rendition::from_bytes(bytes, &ImageLimits::default()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The valid fixtures, smallest first, plus the PNG and legacy renditions of the photo (distinct hashes all).
fn pool() -> &'static [Rendition] {
    static POOL: OnceLock<Vec<Rendition>> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut pool: Vec<Rendition> = [
            "pixel-1x1.png",
            "tiny-5x3.jpg",
            "avatar-96x96-alpha.png",
            "anim-80x60.gif",
            "photo-progressive-300x200.jpg",
            "photo-300x200.jpg",
            "noisy-64x64.png",
            "lossless-128x128.webp",
        ]
        .into_iter()
        .map(load)
        .collect();
        let photo = load("photo-300x200.jpg");
        let limits = ImageLimits::default();
        pool.push(Rendition::clone(&photo.to_png(&limits).unwrap()));
        pool.push(photo.to_legacy(&limits).unwrap());
        pool
    })
}

fn size(r: &Rendition) -> usize {
    r.bytes().len()
}

fn budget(max_bytes: usize) -> CacheLimits {
    CacheLimits { max_bytes, ..CacheLimits::default() }
}

/// What must hold between any two calls: the byte count is exact and within budget.
fn assert_accounting(cache: &AvatarCache) {
    let held: usize = cache.iter().map(size).sum();
    assert_eq!(cache.bytes(), held, "byte count drifted from the entries held");
    assert_eq!(cache.len(), cache.iter().count());
    assert!(
        cache.bytes() <= cache.limits().max_bytes,
        "{} bytes over a {} budget",
        cache.bytes(),
        cache.limits().max_bytes
    );
    for r in cache.iter() {
        assert_eq!(AvatarHash::of(r.bytes()), r.hash(), "an entry is keyed by the hash of its bytes");
        assert!(cache.contains(&r.hash()));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Bytes

#[test]
fn stores_and_returns_by_hash() {
    let mut cache = AvatarCache::new(CacheLimits::default());
    assert!(cache.is_empty());
    let photo = load("photo-300x200.jpg");
    assert_eq!(cache.insert(photo.clone()), Inserted::Stored { evicted: vec![] });
    assert_eq!(cache.get(&photo.hash()), Some(photo.clone()));
    assert_eq!(cache.get(&AvatarHash::of(b"nothing")), None);
    assert_eq!((cache.len(), cache.bytes()), (1, size(&photo)));
}

#[test]
fn re_inserting_a_hash_is_a_refresh_not_a_second_entry() {
    let mut cache = AvatarCache::new(CacheLimits::default());
    let gif = load("anim-80x60.gif");
    cache.insert(gif.clone());
    // The same file read again: another buffer, the same hash.
    assert_eq!(cache.insert(load("anim-80x60.gif")), Inserted::Refreshed);
    assert_eq!((cache.len(), cache.bytes()), (1, size(&gif)));
    assert_accounting(&cache);
}

#[test]
fn eviction_frees_the_least_recently_used_and_no_more_than_needed() {
    let pool = pool();
    let small = &pool[..6]; // pixel … photo: about 24 KB together
    let noisy = load("noisy-64x64.png");
    let total: usize = small.iter().map(size).sum();
    let mut cache = AvatarCache::new(budget(total + 100));
    for r in small {
        assert_eq!(cache.insert(r.clone()), Inserted::Stored { evicted: vec![] });
        assert_accounting(&cache);
    }
    // Use the oldest one: it is now the most recent and must survive.
    assert!(cache.get(&small[0].hash()).is_some());
    // The noisy PNG (~12 KB) needs room: entries go in LRU order (small[1], small[2], …) until it fits, then stop
    // (here after four of them: the photo stays).
    let mut expect = Vec::new();
    let mut freed = 100; // free space before the insert
    for r in &small[1..] {
        if freed >= size(&noisy) {
            break;
        }
        freed += size(r);
        expect.push(r.hash());
    }
    let Inserted::Stored { evicted } = cache.insert(noisy.clone()) else { panic!("the PNG fits the budget") };
    assert_eq!(evicted, expect);
    assert!(cache.contains(&small[0].hash()), "the recently used entry survives");
    assert!(cache.contains(&noisy.hash()));
    assert!(cache.contains(&small[5].hash()), "eviction stops as soon as the new entry fits");
    assert_eq!(expect.len(), 4);
    for h in &expect {
        assert!(!cache.contains(h));
    }
    assert_accounting(&cache);
}

#[test]
fn an_image_larger_than_the_whole_budget_is_refused_and_evicts_nothing() {
    let large = load("large-1600x1200.jpg");
    let photo = load("photo-300x200.jpg");
    let mut cache = AvatarCache::new(budget(100_000));
    cache.insert(photo.clone());
    assert_eq!(cache.insert(large.clone()), Inserted::TooLarge { size: size(&large), budget: 100_000 });
    assert!(!cache.contains(&large.hash()));
    assert!(cache.contains(&photo.hash()));
    assert_eq!(cache.get(&large.hash()), None);
    assert_accounting(&cache);
    // One byte more budget than the image: stored, and everything else makes room for it.
    let mut cache = AvatarCache::new(budget(size(&large)));
    cache.insert(photo.clone());
    assert_eq!(cache.insert(large.clone()), Inserted::Stored { evicted: vec![photo.hash()] });
    assert_eq!(cache.bytes(), size(&large));
}

#[test]
fn contains_does_not_change_what_is_evicted_but_get_does() {
    let [a, b, c] = ["avatar-96x96-alpha.png", "anim-80x60.gif", "photo-300x200.jpg"].map(load);
    let limits = budget(size(&a) + size(&b) + size(&c) - 1);
    let mut cache = AvatarCache::new(limits.clone());
    cache.insert(a.clone());
    cache.insert(b.clone());
    assert!(cache.contains(&a.hash()));
    assert_eq!(cache.insert(c.clone()), Inserted::Stored { evicted: vec![a.hash()] });

    let mut cache = AvatarCache::new(limits);
    cache.insert(a.clone());
    cache.insert(b.clone());
    assert!(cache.get(&a.hash()).is_some());
    assert_eq!(cache.insert(c), Inserted::Stored { evicted: vec![b.hash()] });
}

#[derive(Debug, Clone)]
enum Op {
    Insert(usize),
    Get(usize),
    Contains(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let n = pool().len();
    prop_oneof![(0..n).prop_map(Op::Insert), (0..n).prop_map(Op::Get), (0..n).prop_map(Op::Contains)]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Against a plain list kept in recency order: same entries, same evictions, budget held after every call.
    #[test]
    fn matches_a_reference_lru_and_keeps_the_budget(max_bytes in 0usize..60_000, ops in prop::collection::vec(op(), 1..60)) {
        let pool = pool();
        let mut cache = AvatarCache::new(budget(max_bytes));
        let mut model: Vec<usize> = Vec::new(); // pool indices, least recent first
        for op in ops {
            match op {
                Op::Insert(i) => {
                    let got = cache.insert(pool[i].clone());
                    let want = if let Some(at) = model.iter().position(|&m| m == i) {
                        model.remove(at);
                        model.push(i);
                        Inserted::Refreshed
                    } else if size(&pool[i]) > max_bytes {
                        Inserted::TooLarge { size: size(&pool[i]), budget: max_bytes }
                    } else {
                        model.push(i);
                        let mut evicted = Vec::new();
                        while model.iter().map(|&m| size(&pool[m])).sum::<usize>() > max_bytes {
                            evicted.push(pool[model.remove(0)].hash());
                        }
                        Inserted::Stored { evicted }
                    };
                    prop_assert_eq!(got, want);
                }
                Op::Get(i) => {
                    let got = cache.get(&pool[i].hash());
                    let want = model.iter().position(|&m| m == i).map(|at| {
                        model.remove(at);
                        model.push(i);
                        pool[i].clone()
                    });
                    prop_assert_eq!(got, want);
                }
                Op::Contains(i) => prop_assert_eq!(cache.contains(&pool[i].hash()), model.contains(&i)),
            }
            assert_accounting(&cache);
            let held: Vec<AvatarHash> = cache.iter().map(Rendition::hash).collect();
            let want: Vec<AvatarHash> = model.iter().rev().map(|&m| pool[m].hash()).collect();
            prop_assert_eq!(held, want, "most recent first");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Failures

#[test]
fn a_failure_holds_until_exactly_the_ttl() {
    let t0 = Instant::now(); // an origin only; the cache itself never reads the clock
    let ttl = Duration::from_secs(600);
    let h = load("photo-300x200.jpg").hash();
    let mut cache = AvatarCache::new(CacheLimits { negative_ttl_secs: 600, ..CacheLimits::default() });
    assert_eq!(cache.failure(&alice(), &h, t0), None);
    cache.mark_failed(&alice(), h, "iq:avatar timed out", t0);
    assert_eq!(cache.failure(&alice(), &h, t0), Some("iq:avatar timed out"));
    assert_eq!(cache.failure(&alice(), &h, t0 + ttl - Duration::from_nanos(1)), Some("iq:avatar timed out"));
    assert_eq!(cache.failure(&alice(), &h, t0 + ttl), None, "expired at exactly the TTL");
    assert_eq!(cache.failure(&alice(), &h, t0 + ttl * 2), None);
    // Other hashes were never marked.
    assert_eq!(cache.failure(&alice(), &AvatarHash::of(b"other"), t0), None);
}

#[test]
fn marking_again_restarts_the_period_with_the_new_reason() {
    let t0 = Instant::now();
    let h = AvatarHash::of(b"broken");
    let mut cache = AvatarCache::new(CacheLimits { negative_ttl_secs: 10, ..CacheLimits::default() });
    cache.mark_failed(&alice(), h, "timeout", t0);
    cache.mark_failed(&alice(), h, "hash mismatch", t0 + Duration::from_secs(8));
    assert_eq!(cache.failure(&alice(), &h, t0 + Duration::from_secs(12)), Some("hash mismatch"));
    assert_eq!(cache.failure(&alice(), &h, t0 + Duration::from_secs(18)), None);
    assert_eq!(cache.failures_len(), 1);
}

#[test]
fn a_failure_is_held_against_the_account_whose_source_failed_only() {
    // A user who advertises someone else's hash and answers the fetch with junk must not block that image for
    // the account that really has it.
    let t0 = Instant::now();
    let h = load("photo-300x200.jpg").hash();
    let mallory = BareJid::new("mallory@example.org").expect("a valid JID");
    let mut cache = AvatarCache::new(CacheLimits::default());
    cache.mark_failed(&mallory, h, "advertised it but the bytes hash to something else", t0);
    assert!(cache.failure(&mallory, &h, t0).is_some());
    assert_eq!(cache.failure(&alice(), &h, t0), None);
}

#[test]
fn a_successful_insert_clears_the_failure() {
    let t0 = Instant::now();
    let photo = load("photo-300x200.jpg");
    let mut cache = AvatarCache::new(CacheLimits::default());
    cache.mark_failed(&alice(), photo.hash(), "timeout", t0);
    cache.insert(photo.clone());
    assert_eq!(cache.failure(&alice(), &photo.hash(), t0), None);
    assert!(cache.contains(&photo.hash()));
}

#[test]
fn a_failure_mark_does_not_drop_bytes_already_verified() {
    let t0 = Instant::now();
    let photo = load("photo-300x200.jpg");
    let mut cache = AvatarCache::new(CacheLimits::default());
    cache.insert(photo.clone());
    cache.mark_failed(&alice(), photo.hash(), "a client sent other bytes for it", t0);
    assert_eq!(cache.get(&photo.hash()), Some(photo));
}

#[test]
fn negative_entries_are_bounded() {
    let t0 = Instant::now();
    let mut cache = AvatarCache::new(CacheLimits { max_negative: 3, ..CacheLimits::default() });
    let hashes: Vec<AvatarHash> = (0..5u8).map(|i| AvatarHash::of(&[i])).collect();
    for (i, h) in hashes.iter().enumerate() {
        cache.mark_failed(&alice(), *h, format!("failure {i}"), t0 + Duration::from_secs(i as u64));
        assert!(cache.failures_len() <= 3);
    }
    let now = t0 + Duration::from_secs(5);
    // The two oldest marks made room; the three newest are kept.
    assert_eq!(cache.failure(&alice(), &hashes[0], now), None);
    assert_eq!(cache.failure(&alice(), &hashes[1], now), None);
    assert_eq!(cache.failure(&alice(), &hashes[4], now), Some("failure 4"));
    assert_eq!(cache.failure(&alice(), &hashes[2], now), Some("failure 2"));
}

// ---------------------------------------------------------------------------------------------------------------
// Derivations

#[test]
fn derivations_are_known_in_both_directions() {
    let limits = ImageLimits::default();
    let photo = load("photo-300x200.jpg");
    let png = photo.to_png(&limits).unwrap();
    let legacy = photo.to_legacy(&limits).unwrap();
    let derived = Derived { png: png.hash(), legacy: legacy.hash() };
    let mut cache = AvatarCache::new(CacheLimits::default());
    assert_eq!(cache.derived_from(&photo.hash()), None);
    cache.link(photo.hash(), derived);
    assert_eq!(cache.derived_from(&photo.hash()), Some(derived));
    // A notification carrying either rendition is recognised as the gateway's own echo.
    assert_eq!(cache.original_of(&png.hash()), Some(photo.hash()));
    assert_eq!(cache.original_of(&legacy.hash()), Some(photo.hash()));
    // The original itself is not one of our renditions (it was transcoded), nor is an unrelated hash.
    assert_eq!(cache.original_of(&photo.hash()), None);
    assert_eq!(cache.original_of(&AvatarHash::of(b"unrelated")), None);
    assert_eq!(cache.derivations_len(), 1);
}

#[test]
fn a_passthrough_original_is_its_own_rendition() {
    let limits = ImageLimits::default();
    let avatar = load("avatar-96x96-alpha.png");
    let png = avatar.to_png(&limits).unwrap();
    assert_eq!(png.hash(), avatar.hash(), "a small PNG is published as is");
    let legacy = avatar.to_legacy(&limits).unwrap();
    let mut cache = AvatarCache::new(CacheLimits::default());
    cache.link(avatar.hash(), Derived { png: png.hash(), legacy: legacy.hash() });
    assert_eq!(cache.original_of(&avatar.hash()), Some(avatar.hash()));
    assert_eq!(cache.original_of(&legacy.hash()), Some(avatar.hash()));
}

#[test]
fn re_linking_an_original_replaces_its_renditions() {
    let photo = load("photo-300x200.jpg");
    let default = ImageLimits::default();
    let smaller = ImageLimits { legacy_max_side: 32, ..ImageLimits::default() };
    let png = photo.to_png(&default).unwrap().hash();
    let (legacy_64, legacy_32) = (photo.to_legacy(&default).unwrap().hash(), photo.to_legacy(&smaller).unwrap().hash());
    assert_ne!(legacy_64, legacy_32);
    let mut cache = AvatarCache::new(CacheLimits::default());
    cache.link(photo.hash(), Derived { png, legacy: legacy_64 });
    // The budgets changed: the same original gets a new legacy rendition.
    cache.link(photo.hash(), Derived { png, legacy: legacy_32 });
    assert_eq!(cache.derived_from(&photo.hash()), Some(Derived { png, legacy: legacy_32 }));
    assert_eq!(cache.original_of(&legacy_32), Some(photo.hash()));
    assert_eq!(cache.original_of(&legacy_64), None, "the replaced rendition is no longer ours");
    assert_eq!(cache.original_of(&png), Some(photo.hash()), "the kept rendition still is");
    assert_eq!(cache.derivations_len(), 1);
}

#[test]
fn derivations_outlive_the_bytes() {
    let limits = ImageLimits::default();
    let photo = load("photo-300x200.jpg");
    let png = Rendition::clone(&photo.to_png(&limits).unwrap());
    let legacy = photo.to_legacy(&limits).unwrap();
    let mut cache = AvatarCache::new(budget(size(&png)));
    cache.insert(photo.clone());
    cache.insert(legacy.clone());
    cache.link(photo.hash(), Derived { png: png.hash(), legacy: legacy.hash() });
    // The PNG fills the whole budget and evicts the rest; the echo of any of them is still recognised.
    assert_eq!(cache.insert(png.clone()), Inserted::Stored { evicted: vec![photo.hash(), legacy.hash()] });
    assert_eq!(cache.original_of(&legacy.hash()), Some(photo.hash()));
    assert_eq!(cache.derived_from(&photo.hash()).map(|d| d.png), Some(png.hash()));
}

#[test]
fn derivations_are_bounded_least_recently_linked_first() {
    let pool = pool();
    let mut cache = AvatarCache::new(CacheLimits { max_derivations: 2, ..CacheLimits::default() });
    let link = |cache: &mut AvatarCache, i: usize| {
        cache.link(pool[i].hash(), Derived { png: pool[i + 4].hash(), legacy: pool[i + 4].hash() })
    };
    link(&mut cache, 0);
    link(&mut cache, 1);
    link(&mut cache, 0); // re-linking makes 0 the most recent
    link(&mut cache, 2);
    assert_eq!(cache.derivations_len(), 2);
    assert!(cache.derived_from(&pool[1].hash()).is_none());
    assert_eq!(cache.original_of(&pool[5].hash()), None);
    assert_eq!(cache.original_of(&pool[4].hash()), Some(pool[0].hash()));
    assert_eq!(cache.original_of(&pool[6].hash()), Some(pool[2].hash()));
}
