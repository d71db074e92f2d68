//! One behaviour suite for every [`Store`] backend, plus what only a file can show (reopen, corruption, schema
//! upgrade, commits).
//!
//! Each check is written once over `&mut dyn Store`; `suite!` runs it against [`MemoryStore`], [`RedbStore`], `PostgresStore` (on a private server) and a
//! [`DryRunStore`] over an empty base, so the in-memory store the engine tests use cannot drift from production.

use std::path::Path;

use avatar_gateway::avatar::AvatarHash;
use avatar_gateway::engine::account::{Current, Scheme, Seen};
use avatar_gateway::store::{
    DryRunStore, MemoryStore, PG_SCHEMA_VERSION, PostgresStore, RedbStore, SCHEMA_VERSION, Store, StoreError,
    StoredAccount,
};
use redb::{Database, ReadableDatabase, TableDefinition};

mod support;

/// Small enough that three 40-byte blobs overflow it.
const BUDGET: u64 = 100;

fn blob(tag: u8, len: usize) -> (AvatarHash, Vec<u8>) {
    let bytes = vec![tag; len];
    (AvatarHash::of(&bytes), bytes)
}

/// The `n`th of many distinct blobs (more than `blob`'s 256 tags).
fn nth_blob(n: u32, len: usize) -> (AvatarHash, Vec<u8>) {
    let mut bytes = n.to_le_bytes().to_vec();
    bytes.resize(len, 0xa5);
    (AvatarHash::of(&bytes), bytes)
}

fn hash(n: u8) -> AvatarHash {
    AvatarHash::from_bytes([n; 20])
}

fn held(store: &dyn Store, hash: &AvatarHash) -> bool {
    store.load_blob(hash).unwrap().is_some()
}

fn pins(store: &dyn Store, hash: &AvatarHash) -> u32 {
    store.pins(hash).unwrap()
}

fn save(store: &mut dyn Store, (hash, bytes): &(AvatarHash, Vec<u8>)) {
    store.save_blob(hash, bytes).unwrap();
}

/// A current avatar from a PNG source (its original is its png rendition).
fn showing(png: &AvatarHash, legacy: &AvatarHash) -> StoredAccount {
    let current = Current { original: *png, source: Scheme::Pep, png: *png, legacy: *legacy };
    StoredAccount { current: Some(current), ..Default::default() }
}

fn storing(hash: &AvatarHash) -> StoredAccount {
    StoredAccount { storage: Some(*hash), ..Default::default() }
}

fn accounts_round_trip(store: &mut dyn Store) {
    assert_eq!(store.load_account("nobody@example.org").unwrap(), None);
    let mut states = vec![StoredAccount::default()];
    for source in Scheme::ALL {
        states.push(StoredAccount {
            seen: [Seen::Avatar(hash(1)), Seen::NoAvatar, Seen::Unknown],
            current: Some(Current { original: hash(2), source, png: hash(3), legacy: hash(4) }),
            storage: Some(hash(5)),
        });
    }
    states.push(StoredAccount { seen: [Seen::NoAvatar, Seen::Unknown, Seen::Avatar(hash(9))], ..Default::default() });
    for (i, state) in states.iter().enumerate() {
        let account = format!("user{i}@example.org");
        store.save_account(&account, state).unwrap();
        assert_eq!(store.load_account(&account).unwrap().as_ref(), Some(state), "{account}");
    }
    // Saving again replaces.
    store.save_account("user0@example.org", &states[1]).unwrap();
    assert_eq!(store.load_account("user0@example.org").unwrap().as_ref(), Some(&states[1]));
}

fn accounts_listing(store: &mut dyn Store) {
    assert!(store.accounts().unwrap().is_empty());
    for account in ["b@example.org", "a@example.org", "c@example.org", "a@example.org"] {
        store.save_account(account, &StoredAccount::default()).unwrap();
    }
    assert_eq!(store.accounts().unwrap(), ["a@example.org", "b@example.org", "c@example.org"]);
}

fn blobs_round_trip(store: &mut dyn Store) {
    let (h, bytes) = blob(1, 30);
    assert_eq!(store.load_blob(&h).unwrap(), None);
    store.save_blob(&h, &bytes).unwrap();
    assert_eq!(store.load_blob(&h).unwrap(), Some(bytes.clone()));
    // Content-addressed: saving again changes nothing.
    store.save_blob(&h, &bytes).unwrap();
    assert_eq!(store.load_blob(&h).unwrap(), Some(bytes));
    let (empty, nothing) = blob(0, 0);
    store.save_blob(&empty, &nothing).unwrap();
    assert_eq!(store.load_blob(&empty).unwrap(), Some(vec![]));
}

fn eviction_is_oldest_first_and_skips_pinned(store: &mut dyn Store) {
    let (a, b, c, d) = (blob(1, 40), blob(2, 40), blob(3, 40), blob(4, 40));
    let pinned = blob(9, 90);
    save(store, &a);
    store.save_account("owner@example.org", &storing(&pinned.0)).unwrap();
    save(store, &pinned); // pinned bytes do not count against the budget
    save(store, &b);
    assert!(held(store, &a.0) && held(store, &b.0));
    save(store, &c); // 120 > 100: the oldest unpinned goes
    assert!(!held(store, &a.0) && held(store, &b.0) && held(store, &c.0) && held(store, &pinned.0));
    // Re-saving does not refresh: b is still the oldest.
    save(store, &b);
    save(store, &d);
    assert!(!held(store, &b.0) && held(store, &c.0) && held(store, &d.0) && held(store, &pinned.0));
}

fn pinning_an_existing_blob_protects_it(store: &mut dyn Store) {
    let (a, b, c, d) = (blob(1, 40), blob(2, 40), blob(3, 40), blob(4, 40));
    save(store, &a);
    store.save_account("owner@example.org", &storing(&a.0)).unwrap();
    save(store, &b);
    save(store, &c); // only b + c = 80 count: nothing evicted
    assert!(held(store, &a.0) && held(store, &b.0) && held(store, &c.0));
    save(store, &a); // re-saving changes nothing, its pin included
    save(store, &d);
    assert!(held(store, &a.0) && !held(store, &b.0));
    assert_eq!(pins(store, &a.0), 1);
}

fn released_blob_rejoins_the_eviction_order_where_it_was(store: &mut dyn Store) {
    let (old, p, new) = (blob(1, 40), blob(9, 50), blob(2, 40));
    save(store, &old);
    store.save_account("owner@example.org", &storing(&p.0)).unwrap();
    save(store, &p);
    save(store, &new);
    // References to nothing stored, and records that keep their references, change nothing.
    store.save_account("other@example.org", &storing(&hash(7))).unwrap();
    store.save_account("other@example.org", &StoredAccount::default()).unwrap();
    store.save_account("owner@example.org", &storing(&p.0)).unwrap();
    assert!(held(store, &old.0) && held(store, &p.0) && held(store, &new.0));
    assert_eq!((pins(store, &hash(7)), pins(store, &p.0)), (0, 1));
    // 130 > 100: evicts in insertion order, and p was inserted after `old`, so `old` goes first.
    store.save_account("owner@example.org", &StoredAccount::default()).unwrap();
    assert!(!held(store, &old.0) && held(store, &p.0) && held(store, &new.0));
    // p is an ordinary cache entry now: the next overflow takes it.
    let newest = blob(3, 40);
    save(store, &newest);
    assert!(!held(store, &p.0) && held(store, &new.0) && held(store, &newest.0));
}

fn oversized_blob_survives_its_own_save(store: &mut dyn Store) {
    let (small, big) = (blob(1, 10), blob(2, 500));
    save(store, &small);
    save(store, &big);
    assert!(!held(store, &small.0) && held(store, &big.0));
}

fn shared_current_stays_pinned_until_every_account_moves_on(store: &mut dyn Store) {
    let (logo, logo_small) = (blob(1, 40), blob(2, 10));
    save(store, &logo);
    save(store, &logo_small);
    store.save_account("alice@example.org", &showing(&logo.0, &logo_small.0)).unwrap();
    store.save_account("bob@example.org", &showing(&logo.0, &logo_small.0)).unwrap();
    assert_eq!((pins(store, &logo.0), pins(store, &logo_small.0)), (2, 2));
    let cache: Vec<_> = (10..20).map(|n| blob(n, 40)).collect();
    cache.iter().take(3).for_each(|b| save(store, b));
    assert!(held(store, &logo.0) && held(store, &logo_small.0));
    // Alice moves on: Bob still shows the logo.
    let (own, own_small) = (blob(3, 30), blob(4, 10));
    save(store, &own);
    save(store, &own_small);
    store.save_account("alice@example.org", &showing(&own.0, &own_small.0)).unwrap();
    assert_eq!((pins(store, &logo.0), pins(store, &own.0)), (1, 1));
    cache.iter().skip(3).take(3).for_each(|b| save(store, b));
    assert!(held(store, &logo.0) && held(store, &logo_small.0));
    // Bob too: the logo is a cache entry again, the oldest one, so the next overflows take it.
    store.save_account("bob@example.org", &StoredAccount::default()).unwrap();
    assert_eq!((pins(store, &logo.0), pins(store, &logo_small.0)), (0, 0));
    cache.iter().skip(6).for_each(|b| save(store, b));
    assert!(!held(store, &logo.0) && !held(store, &logo_small.0));
    assert!(held(store, &own.0) && held(store, &own_small.0));
}

fn replacing_current_unpins_old_renditions_and_they_are_evicted(store: &mut dyn Store) {
    let (old, old_small, new, new_small) = (blob(1, 40), blob(2, 10), blob(3, 40), blob(4, 10));
    save(store, &old);
    save(store, &old_small);
    store.save_account("alice@example.org", &showing(&old.0, &old_small.0)).unwrap();
    save(store, &new);
    save(store, &new_small);
    store.save_account("alice@example.org", &showing(&new.0, &new_small.0)).unwrap();
    assert_eq!((pins(store, &old.0), pins(store, &old_small.0)), (0, 0));
    assert_eq!((pins(store, &new.0), pins(store, &new_small.0)), (1, 1));
    assert!(held(store, &old.0) && held(store, &old_small.0)); // 50 bytes: within budget
    for n in 10..13 {
        save(store, &blob(n, 40));
    }
    assert!(!held(store, &old.0) && !held(store, &old_small.0));
    assert!(held(store, &new.0) && held(store, &new_small.0));
}

fn the_original_is_pinned_only_as_a_rendition(store: &mut dyn Store) {
    let (original, png, legacy) = (blob(1, 60), blob(2, 30), blob(3, 10));
    [&original, &png, &legacy].into_iter().for_each(|b| save(store, b));
    let current = Current { original: original.0, source: Scheme::Vcard, png: png.0, legacy: legacy.0 };
    store.save_account("alice@example.org", &StoredAccount { current: Some(current), ..Default::default() }).unwrap();
    assert_eq!((pins(store, &original.0), pins(store, &png.0), pins(store, &legacy.0)), (0, 1, 1));
    save(store, &blob(4, 50)); // 110 > 100: the unpinned original goes
    assert!(!held(store, &original.0) && held(store, &png.0) && held(store, &legacy.0));
    // An account naming one hash in several fields pins it once.
    store.save_account("bob@example.org", &StoredAccount { storage: Some(png.0), ..showing(&png.0, &png.0) }).unwrap();
    assert_eq!(pins(store, &png.0), 2);
    store.save_account("bob@example.org", &showing(&png.0, &png.0)).unwrap();
    assert_eq!(pins(store, &png.0), 2);
    store.save_account("bob@example.org", &StoredAccount::default()).unwrap();
    assert_eq!(pins(store, &png.0), 1);
}

/// The incident: one account publishing 450 distinct avatars evicted everybody else's renditions.
fn one_account_churning_avatars_never_evicts_other_accounts_current(store: &mut dyn Store) {
    let others = ["alice@example.org", "bob@example.org"];
    let mut served = Vec::new();
    for (i, account) in (0..).zip(others) {
        let (png, legacy) = (nth_blob(100_000 + i, 40), nth_blob(200_000 + i, 10));
        save(store, &png);
        save(store, &legacy);
        store.save_account(account, &showing(&png.0, &legacy.0)).unwrap();
        served.extend([png, legacy]);
    }
    let owner = blob(7, 30);
    store.save_account("carol@example.org", &storing(&owner.0)).unwrap();
    save(store, &owner);
    served.push(owner);
    let mut churned = Vec::new();
    for n in 0..450 {
        let (original, png, legacy) = (nth_blob(n, 60), nth_blob(1_000 + n, 40), nth_blob(2_000 + n, 10));
        [&original, &png, &legacy].into_iter().for_each(|b| save(store, b));
        let current = Current { original: original.0, source: Scheme::Legacy, png: png.0, legacy: legacy.0 };
        let state = StoredAccount { current: Some(current), ..Default::default() };
        store.save_account("mallory@example.org", &state).unwrap();
        churned.extend([original, png, legacy]);
    }
    for (hash, bytes) in &served {
        assert_eq!(store.load_blob(hash).unwrap().as_ref(), Some(bytes));
    }
    let latest = store.load_account("mallory@example.org").unwrap().and_then(|a| a.current).unwrap();
    assert!(held(store, &latest.png) && held(store, &latest.legacy));
    // And the cache stayed bounded: what is still held of the churn, latest renditions aside, fits the budget.
    let cached: u64 = churned
        .iter()
        .filter(|(hash, _)| held(store, hash) && pins(store, hash) == 0)
        .map(|(_, bytes)| bytes.len() as u64)
        .sum();
    assert!(cached <= BUDGET, "{cached} cached bytes");
}

fn storage_pin_survives_a_current_change(store: &mut dyn Store) {
    let (data, png, legacy) = (blob(1, 40), blob(2, 30), blob(3, 10));
    [&data, &png, &legacy].into_iter().for_each(|b| save(store, b));
    let converted = Current { original: data.0, source: Scheme::Legacy, png: png.0, legacy: legacy.0 };
    let alice = StoredAccount { current: Some(converted), storage: Some(data.0), ..Default::default() };
    store.save_account("alice@example.org", &alice).unwrap();
    // A newer avatar arrives by PEP; the owner's storage data is untouched.
    let (pep, pep_small) = (blob(4, 30), blob(5, 10));
    save(store, &pep);
    save(store, &pep_small);
    let alice = StoredAccount { storage: Some(data.0), ..showing(&pep.0, &pep_small.0) };
    store.save_account("alice@example.org", &alice).unwrap();
    assert_eq!((pins(store, &data.0), pins(store, &png.0), pins(store, &legacy.0)), (1, 0, 0));
    (10..14).for_each(|n| save(store, &blob(n, 40)));
    assert!(held(store, &data.0) && held(store, &pep.0) && held(store, &pep_small.0));
    assert!(!held(store, &png.0) && !held(store, &legacy.0));
    // Cleared storage: the data is a cache entry like any other.
    store.save_account("alice@example.org", &showing(&pep.0, &pep_small.0)).unwrap();
    assert_eq!(pins(store, &data.0), 0);
    (14..17).for_each(|n| save(store, &blob(n, 40)));
    assert!(!held(store, &data.0) && held(store, &pep.0));
}

fn a_reference_saved_before_its_blob_pins_it_at_birth(store: &mut dyn Store) {
    let (png, legacy) = (blob(1, 40), blob(2, 10));
    store.save_account("alice@example.org", &showing(&png.0, &legacy.0)).unwrap();
    assert_eq!((pins(store, &png.0), held(store, &png.0)), (1, false));
    save(store, &png);
    (10..14).for_each(|n| save(store, &blob(n, 40)));
    save(store, &legacy);
    (14..18).for_each(|n| save(store, &blob(n, 40)));
    assert!(held(store, &png.0) && held(store, &legacy.0));
    // Released, it becomes evictable like any blob.
    store.save_account("alice@example.org", &StoredAccount::default()).unwrap();
    (18..21).for_each(|n| save(store, &blob(n, 40)));
    assert!(!held(store, &png.0) && !held(store, &legacy.0));
}

fn saving_the_same_record_again_counts_once(store: &mut dyn Store) {
    let (png, legacy) = (blob(1, 40), blob(2, 10));
    for _ in 0..3 {
        store.save_account("alice@example.org", &showing(&png.0, &legacy.0)).unwrap();
    }
    assert_eq!(pins(store, &png.0), 1);
    store.save_account("alice@example.org", &StoredAccount::default()).unwrap();
    assert_eq!(pins(store, &png.0), 0);
}

macro_rules! suite {
    ($($check:ident),* $(,)?) => {
        mod memory {
            $(#[test] fn $check() { super::$check(&mut super::MemoryStore::new(super::BUDGET)); })*
        }
        mod redb_file {
            $(#[test] fn $check() {
                let dir = tempfile::tempdir().unwrap();
                super::$check(&mut super::RedbStore::open(&dir.path().join("s.redb"), super::BUDGET).unwrap());
            })*
        }
        mod postgres {
            $(#[test] fn $check() {
                let url = super::support::postgres::Postgres::shared().database();
                super::$check(&mut avatar_gateway::store::PostgresStore::open(&url, super::BUDGET, None).unwrap());
            })*
        }
        mod dry_run {
            $(#[test] fn $check() {
                let base = Box::new(super::MemoryStore::new(super::BUDGET));
                super::$check(&mut super::DryRunStore::new(base, super::BUDGET));
            })*
        }
    };
}

suite!(
    accounts_round_trip,
    accounts_listing,
    blobs_round_trip,
    eviction_is_oldest_first_and_skips_pinned,
    pinning_an_existing_blob_protects_it,
    released_blob_rejoins_the_eviction_order_where_it_was,
    oversized_blob_survives_its_own_save,
    shared_current_stays_pinned_until_every_account_moves_on,
    replacing_current_unpins_old_renditions_and_they_are_evicted,
    the_original_is_pinned_only_as_a_rendition,
    one_account_churning_avatars_never_evicts_other_accounts_current,
    storage_pin_survives_a_current_change,
    a_reference_saved_before_its_blob_pins_it_at_birth,
    saving_the_same_record_again_counts_once,
);

#[test]
fn reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let state = StoredAccount {
        seen: [Seen::Avatar(hash(1)), Seen::NoAvatar, Seen::Unknown],
        current: Some(Current { original: hash(1), source: Scheme::Legacy, png: hash(2), legacy: hash(3) }),
        storage: Some(hash(1)),
    };
    let (a, b, p) = (blob(1, 40), blob(2, 40), blob(9, 90));
    {
        let mut store = RedbStore::open(&path, BUDGET).unwrap();
        store.save_account("a@example.org", &state).unwrap();
        save(&mut store, &a);
        store.save_account("owner@example.org", &storing(&p.0)).unwrap();
        save(&mut store, &p);
        save(&mut store, &b);
    }
    let mut store = RedbStore::open(&path, BUDGET).unwrap();
    assert_eq!(store.accounts().unwrap(), ["a@example.org", "owner@example.org"]);
    assert_eq!(store.load_account("a@example.org").unwrap(), Some(state));
    assert_eq!(store.load_blob(&p.0).unwrap(), Some(p.1));
    // The eviction order and byte total survived too: one more blob evicts exactly the oldest.
    let c = blob(3, 40);
    save(&mut store, &c);
    assert!(!held(&store, &a.0) && held(&store, &b.0) && held(&store, &c.0) && held(&store, &p.0));
}

#[test]
fn reopen_keeps_pin_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let (logo, logo_small, later) = (blob(1, 40), blob(2, 10), blob(3, 40));
    {
        let mut store = RedbStore::open(&path, BUDGET).unwrap();
        save(&mut store, &logo);
        save(&mut store, &logo_small);
        store.save_account("alice@example.org", &showing(&logo.0, &logo_small.0)).unwrap();
        store.save_account("bob@example.org", &showing(&logo.0, &logo_small.0)).unwrap();
        store.save_account("carol@example.org", &storing(&later.0)).unwrap(); // its blob comes after the reopen
    }
    let mut store = RedbStore::open(&path, BUDGET).unwrap();
    assert_eq!((pins(&store, &logo.0), pins(&store, &logo_small.0), pins(&store, &later.0)), (2, 2, 1));
    save(&mut store, &later);
    store.save_account("alice@example.org", &StoredAccount::default()).unwrap();
    (10..14).for_each(|n| save(&mut store, &blob(n, 40)));
    assert!(held(&store, &logo.0) && held(&store, &logo_small.0) && held(&store, &later.0));
    store.save_account("bob@example.org", &StoredAccount::default()).unwrap();
    drop(store);
    let mut store = RedbStore::open(&path, BUDGET).unwrap();
    assert_eq!((pins(&store, &logo.0), pins(&store, &logo_small.0)), (0, 0));
    (14..17).for_each(|n| save(&mut store, &blob(n, 40)));
    assert!(!held(&store, &logo.0) && !held(&store, &logo_small.0) && held(&store, &later.0));
}

/// Saves that change nothing abort their transaction: the file is not written (no commit, no fsync).
#[test]
fn a_no_op_save_does_not_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let mut store = RedbStore::open(&path, BUDGET).unwrap();
    let (png, legacy) = (blob(1, 40), blob(2, 10));
    save(&mut store, &png);
    store.save_account("alice@example.org", &showing(&png.0, &legacy.0)).unwrap();
    let before = std::fs::read(&path).unwrap();
    store.save_account("alice@example.org", &showing(&png.0, &legacy.0)).unwrap();
    save(&mut store, &png);
    assert!(std::fs::read(&path).unwrap() == before, "a no-op save wrote the file");
    // The control: a save that changes something does write it.
    save(&mut store, &legacy);
    assert!(std::fs::read(&path).unwrap() != before, "a real save left the file as it was");
}

/// Writes straight into the file with redb, as a damaged disk or a newer gateway would.
fn tamper(path: &Path, write: impl FnOnce(&redb::WriteTransaction)) {
    let db = Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    write(&txn);
    txn.commit().unwrap();
}

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("accounts");

#[test]
fn corrupt_account_bytes_are_an_error_naming_the_account() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    drop(RedbStore::open(&path, BUDGET).unwrap());
    tamper(&path, |txn| {
        let mut table = txn.open_table(ACCOUNTS).unwrap();
        table.insert("bad@example.org", [1u8, 2, 7].as_slice()).unwrap();
        table.insert("ok@example.org", StoredAccount::default().encode().as_slice()).unwrap();
    });
    let mut store = RedbStore::open(&path, BUDGET).unwrap();
    let err = store.load_account("bad@example.org").unwrap_err();
    assert!(matches!(&err, StoreError::Corrupt { account, .. } if account == "bad@example.org"), "{err:?}");
    assert!(err.to_string().contains("bad@example.org"), "{err}");
    assert_eq!(store.load_account("ok@example.org").unwrap(), Some(StoredAccount::default()));
    // A corrupt record counts for nothing and can be overwritten.
    store.save_account("bad@example.org", &storing(&hash(1))).unwrap();
    assert_eq!(store.load_account("bad@example.org").unwrap(), Some(storing(&hash(1))));
    assert_eq!(pins(&store, &hash(1)), 1);
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    drop(RedbStore::open(&path, BUDGET).unwrap());
    tamper(&path, |txn| {
        txn.open_table(META).unwrap().insert("schema_version", SCHEMA_VERSION + 1).unwrap();
    });
    let err = RedbStore::open(&path, BUDGET).unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedSchema { found, .. } if found == SCHEMA_VERSION + 1), "{err:?}");
    assert!(err.to_string().contains(&path.display().to_string()), "{err}");
}

/// A version-1 file, written table by table as the version-1 gateway left it, opened by this build: the pins are
/// recounted from the account records, and nothing is lost.
#[test]
fn schema_1_is_upgraded_by_recounting_pins_from_the_records() {
    const BLOBS: TableDefinition<&[u8; 20], &[u8]> = TableDefinition::new("blobs");
    const BLOB_META_V1: TableDefinition<&[u8; 20], (u64, u64, bool)> = TableDefinition::new("blob_meta");
    const EVICTABLE: TableDefinition<u64, &[u8; 20]> = TableDefinition::new("blob_evictable");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    // Insertion order; version 1 pinned only owners' storage data (and `stale`: a storage set whose record was
    // never saved, or a crash before the engine unpinned it).
    let (cache, data, png, legacy, logo, logo_small, stale) =
        (blob(1, 40), blob(2, 40), blob(3, 30), blob(4, 10), blob(5, 20), blob(6, 10), blob(7, 40));
    let v1_blobs = [(&cache, false), (&data, true), (&png, false), (&legacy, false)];
    let v1_blobs = v1_blobs.into_iter().chain([(&logo, false), (&logo_small, false), (&stale, true)]);
    let missing = hash(9); // referenced, never fetched
    let alice = StoredAccount { storage: Some(data.0), ..showing(&png.0, &legacy.0) };
    let (bob, dave) = (showing(&logo.0, &logo_small.0), showing(&missing, &legacy.0));
    let records = [("alice@example.org", &alice), ("bob@example.org", &bob), ("carol@example.org", &bob)];
    let records = records.into_iter().chain([("dave@example.org", &dave)]);
    tamper(&path, |txn| {
        let (mut blobs, mut meta) = (txn.open_table(BLOBS).unwrap(), txn.open_table(BLOB_META_V1).unwrap());
        let mut evictable = txn.open_table(EVICTABLE).unwrap();
        let (mut seq, mut evictable_bytes) = (0, 0);
        for ((hash, bytes), pinned) in v1_blobs {
            blobs.insert(hash.as_bytes(), bytes.as_slice()).unwrap();
            meta.insert(hash.as_bytes(), (bytes.len() as u64, seq, pinned)).unwrap();
            if !pinned {
                evictable.insert(seq, hash.as_bytes()).unwrap();
                evictable_bytes += bytes.len() as u64;
            }
            seq += 1;
        }
        let mut accounts = txn.open_table(ACCOUNTS).unwrap();
        for (account, state) in records.clone() {
            accounts.insert(account, state.encode().as_slice()).unwrap();
        }
        accounts.insert("bad@example.org", [1u8, 2, 7].as_slice()).unwrap();
        let mut counters = txn.open_table(META).unwrap();
        counters.insert("schema_version", 1).unwrap();
        counters.insert("next_blob_seq", seq).unwrap();
        counters.insert("evictable_bytes", evictable_bytes).unwrap();
    });

    let mut store = RedbStore::open(&path, BUDGET).unwrap();
    let counts =
        [&cache.0, &data.0, &png.0, &legacy.0, &logo.0, &logo_small.0, &stale.0, &missing].map(|h| pins(&store, h));
    assert_eq!(counts, [0, 1, 1, 2, 2, 2, 0, 1]);
    // Nothing lost: every record and every blob.
    for (account, state) in records {
        assert_eq!(store.load_account(account).unwrap().as_ref(), Some(state), "{account}");
    }
    assert!(matches!(store.load_account("bad@example.org"), Err(StoreError::Corrupt { .. })));
    for (hash, bytes) in [&cache, &data, &png, &legacy, &logo, &logo_small, &stale] {
        assert_eq!(store.load_blob(hash).unwrap().as_ref(), Some(bytes));
    }
    // The eviction order kept its sequence: `cache` first, then `stale`, now evictable at its place.
    save(&mut store, &blob(10, 40)); // 120 > 100
    assert!(!held(&store, &cache.0) && held(&store, &stale.0));
    save(&mut store, &blob(11, 40));
    assert!(!held(&store, &stale.0));
    assert!([&data, &png, &legacy, &logo, &logo_small].iter().all(|(hash, _)| held(&store, hash)));
    // A reference without its blob was counted: the blob is born pinned.
    save(&mut store, &(missing, Vec::new()));
    (12..14).for_each(|n| save(&mut store, &blob(n, 40)));
    assert!(held(&store, &missing));
    drop(store);
    let db = Database::create(&path).unwrap();
    let version = db.begin_read().unwrap().open_table(META).unwrap().get("schema_version").unwrap().unwrap().value();
    assert_eq!(version, SCHEMA_VERSION);
}

#[test]
fn open_failure_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-dir").join("s.redb");
    let err = RedbStore::open(&path, BUDGET).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(err.to_string().contains("missing-dir"), "{err}");
}

/// A save that returned `Ok` survives the process dying without any destructor running: the test re-runs its own
/// binary as a child that saves, then aborts.
#[test]
fn committed_writes_survive_an_abort() {
    const CHILD: &str = "AVATAR_GATEWAY_STORE_CRASH_CHILD";
    let (h, bytes) = blob(7, 30);
    if let Some(path) = std::env::var_os(CHILD) {
        let mut store = RedbStore::open(Path::new(&path), BUDGET).unwrap();
        store.save_blob(&h, &bytes).unwrap();
        store.save_account("a@example.org", &storing(&h)).unwrap();
        std::process::abort();
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "committed_writes_survive_an_abort", "--test-threads=1"])
        .env(CHILD, &path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child must have aborted");
    let store = RedbStore::open(&path, BUDGET).unwrap();
    assert_eq!(store.load_account("a@example.org").unwrap().and_then(|a| a.storage), Some(h));
    assert_eq!(store.load_blob(&h).unwrap(), Some(bytes));
    assert_eq!(pins(&store, &h), 1);
}

#[test]
fn a_dry_run_reads_the_real_store_and_never_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let pinned = blob(1, 40);
    let before = StoredAccount { seen: [Seen::NoAvatar, Seen::Unknown, Seen::Unknown], ..storing(&pinned.0) };
    {
        let mut store = RedbStore::open(&path, BUDGET).unwrap();
        store.save_account("a@example.org", &before).unwrap();
        save(&mut store, &pinned);
    }
    let after =
        StoredAccount { seen: [Seen::Avatar(hash(2)), Seen::Unknown, Seen::Unknown], storage: None, ..before.clone() };
    let new_blob = blob(2, 40);
    {
        let base = Box::new(RedbStore::open(&path, BUDGET).unwrap());
        let mut dry = DryRunStore::new(base, BUDGET);
        assert_eq!(dry.load_account("a@example.org").unwrap(), Some(before.clone()));
        assert_eq!(dry.load_blob(&pinned.0).unwrap(), Some(pinned.1.clone()));
        dry.save_account("a@example.org", &after).unwrap();
        dry.save_account("b@example.org", &after).unwrap();
        save(&mut dry, &new_blob);
        // The dry run sees its own writes…
        assert_eq!(dry.load_account("a@example.org").unwrap(), Some(after.clone()));
        assert_eq!(dry.accounts().unwrap(), ["a@example.org", "b@example.org"]);
        assert!(held(&dry, &new_blob.0));
        assert_eq!(pins(&dry, &pinned.0), 0);
    }
    // …and the store on disk has none of them.
    let store = RedbStore::open(&path, BUDGET).unwrap();
    assert_eq!(store.accounts().unwrap(), ["a@example.org"]);
    assert_eq!(store.load_account("a@example.org").unwrap(), Some(before));
    assert!(!held(&store, &new_blob.0));
    assert_eq!(store.load_blob(&pinned.0).unwrap(), Some(pinned.1));
    assert_eq!(pins(&store, &pinned.0), 1);
}

/// The dry run's pins are those of its merged view; its overlay evicts only its own copies, so whatever the base
/// holds stays readable.
#[test]
fn a_dry_run_counts_pins_over_the_base_and_never_loses_its_blobs() {
    let (logo, logo_small) = (blob(1, 40), blob(2, 10));
    let mut base = MemoryStore::new(BUDGET);
    save(&mut base, &logo);
    save(&mut base, &logo_small);
    base.save_account("alice@example.org", &showing(&logo.0, &logo_small.0)).unwrap();
    base.save_account("bob@example.org", &showing(&logo.0, &logo_small.0)).unwrap();
    let mut dry = DryRunStore::new(Box::new(base), BUDGET);
    assert_eq!(pins(&dry, &logo.0), 2);
    // Carol (overlay only) shows it too, then Alice (base) moves on, twice: each account counts once.
    dry.save_account("carol@example.org", &showing(&logo.0, &logo_small.0)).unwrap();
    assert_eq!(pins(&dry, &logo.0), 3);
    let own = blob(3, 40);
    save(&mut dry, &own);
    dry.save_account("alice@example.org", &showing(&own.0, &own.0)).unwrap();
    dry.save_account("alice@example.org", &StoredAccount::default()).unwrap();
    assert_eq!((pins(&dry, &logo.0), pins(&dry, &own.0)), (2, 0));
    // Pressure in the overlay, the logo saved there too and released by Carol: the base still serves it.
    save(&mut dry, &logo);
    dry.save_account("carol@example.org", &StoredAccount::default()).unwrap();
    (10..15).for_each(|n| save(&mut dry, &blob(n, 40)));
    assert_eq!(pins(&dry, &logo.0), 1);
    assert!(held(&dry, &logo.0) && held(&dry, &logo_small.0));
}

/// A store opened at a leader epoch commits while the lease is at that epoch, and is refused once another
/// instance took the lease (a later epoch): a paused old leader cannot overwrite the new one's writes.
#[test]
fn postgres_a_fenced_stale_writer_is_refused() {
    let url = support::postgres::Postgres::shared().database();
    let mut store = PostgresStore::open(&url, BUDGET, Some(0)).unwrap();
    store.save_account("a@example.org", &storing(&hash(1))).unwrap();
    let mut admin = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    admin.execute("UPDATE lease SET epoch = epoch + 1", &[]).unwrap();
    let err = store.save_account("a@example.org", &storing(&hash(2))).unwrap_err();
    assert!(matches!(err, StoreError::Fenced { ours: 0, current: 1 }), "{err:?}");
    assert_eq!(store.load_account("a@example.org").unwrap(), Some(storing(&hash(1))), "nothing of it landed");
    let mut leader = PostgresStore::open(&url, BUDGET, Some(1)).unwrap();
    leader.save_account("a@example.org", &storing(&hash(3))).unwrap();
}

#[test]
fn postgres_newer_schema_is_refused_and_reopen_keeps_everything() {
    let url = support::postgres::Postgres::shared().database();
    let (a, p) = (blob(1, 40), blob(9, 90));
    {
        let mut store = PostgresStore::open(&url, BUDGET, None).unwrap();
        store.save_account("owner@example.org", &storing(&p.0)).unwrap();
        save(&mut store, &p);
        save(&mut store, &a);
    }
    let mut store = PostgresStore::open(&url, BUDGET, None).unwrap();
    assert_eq!(store.load_blob(&p.0).unwrap(), Some(p.1));
    save(&mut store, &blob(2, 40));
    save(&mut store, &blob(3, 40)); // the eviction order survived: `a`, the oldest, goes
    assert!(!held(&store, &a.0) && held(&store, &p.0));
    let mut admin = ::postgres::Client::connect(&url, ::postgres::NoTls).unwrap();
    admin.execute("UPDATE meta SET value = $1 WHERE key = 'schema_version'", &[&(PG_SCHEMA_VERSION + 1)]).unwrap();
    let err = PostgresStore::open(&url, BUDGET, None).err().expect("a newer schema is refused");
    assert!(matches!(err, StoreError::UnsupportedSchema { .. }), "{err:?}");
}

/// Two contenders: the second stands by while the first renews, and takes over within 5 s once the first stops
/// renewing (its session gone), at a later epoch.
#[test]
fn postgres_a_standby_takes_over_the_lease_within_5_s() {
    use avatar_gateway::store::lease::Lease;
    let url = support::postgres::Postgres::shared().database();
    let first = Lease::acquire(&url, "first").unwrap();
    let standby_url = url.clone();
    let standby = std::thread::spawn(move || Lease::acquire(&standby_url, "second").unwrap());
    std::thread::sleep(std::time::Duration::from_secs(4)); // longer than the TTL: renewals keep it held
    assert!(!standby.is_finished() && !first.is_lost());
    let (epoch, lost_at) = (first.epoch(), std::time::Instant::now());
    drop(first);
    let second = standby.join().unwrap();
    assert!(lost_at.elapsed() <= std::time::Duration::from_secs(5), "took {:?}", lost_at.elapsed());
    assert!(second.epoch() > epoch);
}
