//! One behaviour suite for every [`Store`] backend, plus what only a file can show (reopen, corruption, schema).
//!
//! Each check is written once over `&mut dyn Store`; `suite!` runs it against [`MemoryStore`] and [`RedbStore`],
//! so the in-memory store the engine tests use cannot drift from production.

use std::path::Path;

use avatar_gateway::avatar::AvatarHash;
use avatar_gateway::engine::account::{Current, Scheme, Seen};
use avatar_gateway::store::{DryRunStore, MemoryStore, RedbStore, SCHEMA_VERSION, Store, StoreError, StoredAccount};
use redb::{Database, TableDefinition};

/// Small enough that three 40-byte blobs overflow it.
const BUDGET: u64 = 100;

fn blob(tag: u8, len: usize) -> (AvatarHash, Vec<u8>) {
    let bytes = vec![tag; len];
    (AvatarHash::of(&bytes), bytes)
}

fn hash(n: u8) -> AvatarHash {
    AvatarHash::from_bytes([n; 20])
}

fn held(store: &dyn Store, hash: &AvatarHash) -> bool {
    store.load_blob(hash).unwrap().is_some()
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
    store.save_blob(&h, &bytes, false).unwrap();
    assert_eq!(store.load_blob(&h).unwrap(), Some(bytes.clone()));
    // Content-addressed: saving again changes nothing.
    store.save_blob(&h, &bytes, false).unwrap();
    assert_eq!(store.load_blob(&h).unwrap(), Some(bytes));
    let (empty, nothing) = blob(0, 0);
    store.save_blob(&empty, &nothing, false).unwrap();
    assert_eq!(store.load_blob(&empty).unwrap(), Some(vec![]));
}

fn eviction_is_oldest_first_and_skips_pinned(store: &mut dyn Store) {
    let (a, b, c, d) = (blob(1, 40), blob(2, 40), blob(3, 40), blob(4, 40));
    let (pinned, pinned_bytes) = blob(9, 90);
    store.save_blob(&a.0, &a.1, false).unwrap();
    store.save_blob(&pinned, &pinned_bytes, true).unwrap(); // pinned bytes do not count against the budget
    store.save_blob(&b.0, &b.1, false).unwrap();
    assert!(held(store, &a.0) && held(store, &b.0));
    store.save_blob(&c.0, &c.1, false).unwrap(); // 120 > 100: the oldest unpinned goes
    assert!(!held(store, &a.0) && held(store, &b.0) && held(store, &c.0) && held(store, &pinned));
    // Re-saving does not refresh: b is still the oldest.
    store.save_blob(&b.0, &b.1, false).unwrap();
    store.save_blob(&d.0, &d.1, false).unwrap();
    assert!(!held(store, &b.0) && held(store, &c.0) && held(store, &d.0) && held(store, &pinned));
}

fn pinning_an_existing_blob_protects_it(store: &mut dyn Store) {
    let (a, b, c) = (blob(1, 40), blob(2, 40), blob(3, 40));
    store.save_blob(&a.0, &a.1, false).unwrap();
    store.save_blob(&a.0, &a.1, true).unwrap();
    store.save_blob(&b.0, &b.1, false).unwrap();
    store.save_blob(&c.0, &c.1, false).unwrap(); // only b + c = 80 count: nothing evicted
    assert!(held(store, &a.0) && held(store, &b.0) && held(store, &c.0));
    store.save_blob(&a.0, &a.1, false).unwrap(); // saving unpinned does not unpin
    let d = blob(4, 40);
    store.save_blob(&d.0, &d.1, false).unwrap();
    assert!(held(store, &a.0) && !held(store, &b.0));
}

fn unpin_then_evict(store: &mut dyn Store) {
    let (old, new) = (blob(1, 40), blob(2, 40));
    let (p, p_bytes) = blob(9, 50);
    store.save_blob(&old.0, &old.1, false).unwrap();
    store.save_blob(&p, &p_bytes, true).unwrap();
    store.save_blob(&new.0, &new.1, false).unwrap();
    store.unpin_blob(&hash(7)).unwrap(); // unknown: no-op
    store.unpin_blob(&old.0).unwrap(); // not pinned: no-op
    assert!(held(store, &old.0) && held(store, &p) && held(store, &new.0));
    // 130 > 100: evicts in insertion order, and p was inserted after `old`, so `old` goes first.
    store.unpin_blob(&p).unwrap();
    assert!(!held(store, &old.0) && held(store, &p) && held(store, &new.0));
    // p is an ordinary cache entry now: the next overflow takes it.
    let newest = blob(3, 40);
    store.save_blob(&newest.0, &newest.1, false).unwrap();
    assert!(!held(store, &p) && held(store, &new.0) && held(store, &newest.0));
}

fn oversized_blob_survives_its_own_save(store: &mut dyn Store) {
    let (small, big) = (blob(1, 10), blob(2, 500));
    store.save_blob(&small.0, &small.1, false).unwrap();
    store.save_blob(&big.0, &big.1, false).unwrap();
    assert!(!held(store, &small.0) && held(store, &big.0));
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
    };
}

suite!(
    accounts_round_trip,
    accounts_listing,
    blobs_round_trip,
    eviction_is_oldest_first_and_skips_pinned,
    pinning_an_existing_blob_protects_it,
    unpin_then_evict,
    oversized_blob_survives_its_own_save,
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
        store.save_blob(&a.0, &a.1, false).unwrap();
        store.save_blob(&p.0, &p.1, true).unwrap();
        store.save_blob(&b.0, &b.1, false).unwrap();
    }
    let mut store = RedbStore::open(&path, BUDGET).unwrap();
    assert_eq!(store.accounts().unwrap(), ["a@example.org"]);
    assert_eq!(store.load_account("a@example.org").unwrap(), Some(state));
    assert_eq!(store.load_blob(&p.0).unwrap(), Some(p.1));
    // The eviction order and byte total survived too: one more blob evicts exactly the oldest.
    let c = blob(3, 40);
    store.save_blob(&c.0, &c.1, false).unwrap();
    assert!(!held(&store, &a.0) && held(&store, &b.0) && held(&store, &c.0) && held(&store, &p.0));
}

/// Writes straight into the file with redb, as a damaged disk or a newer gateway would.
fn tamper(path: &Path, write: impl FnOnce(&redb::WriteTransaction)) {
    let db = Database::create(path).unwrap();
    let txn = db.begin_write().unwrap();
    write(&txn);
    txn.commit().unwrap();
}

#[test]
fn corrupt_account_bytes_are_an_error_naming_the_account() {
    const ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("accounts");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    drop(RedbStore::open(&path, BUDGET).unwrap());
    tamper(&path, |txn| {
        let mut table = txn.open_table(ACCOUNTS).unwrap();
        table.insert("bad@example.org", [1u8, 2, 7].as_slice()).unwrap();
        table.insert("ok@example.org", StoredAccount::default().encode().as_slice()).unwrap();
    });
    let store = RedbStore::open(&path, BUDGET).unwrap();
    let err = store.load_account("bad@example.org").unwrap_err();
    assert!(matches!(&err, StoreError::Corrupt { account, .. } if account == "bad@example.org"), "{err:?}");
    assert!(err.to_string().contains("bad@example.org"), "{err}");
    assert_eq!(store.load_account("ok@example.org").unwrap(), Some(StoredAccount::default()));
}

#[test]
fn newer_schema_is_refused() {
    const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
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
        store.save_account("a@example.org", &StoredAccount { storage: Some(h), ..Default::default() }).unwrap();
        store.save_blob(&h, &bytes, true).unwrap();
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
}

#[test]
fn a_dry_run_reads_the_real_store_and_never_writes_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let before = StoredAccount { seen: [Seen::NoAvatar, Seen::Unknown, Seen::Unknown], current: None, storage: None };
    let pinned = blob(1, 40);
    {
        let mut store = RedbStore::open(&path, BUDGET).unwrap();
        store.save_account("a@example.org", &before).unwrap();
        store.save_blob(&pinned.0, &pinned.1, true).unwrap();
    }
    let after = StoredAccount { seen: [Seen::Avatar(hash(2)), Seen::Unknown, Seen::Unknown], ..before.clone() };
    let new_blob = blob(2, 40);
    {
        let base = Box::new(RedbStore::open(&path, BUDGET).unwrap());
        let mut dry = DryRunStore::new(base, BUDGET);
        assert_eq!(dry.load_account("a@example.org").unwrap(), Some(before.clone()));
        assert_eq!(dry.load_blob(&pinned.0).unwrap(), Some(pinned.1.clone()));
        dry.save_account("a@example.org", &after).unwrap();
        dry.save_account("b@example.org", &after).unwrap();
        dry.save_blob(&new_blob.0, &new_blob.1, false).unwrap();
        dry.unpin_blob(&pinned.0).unwrap();
        // The dry run sees its own writes…
        assert_eq!(dry.load_account("a@example.org").unwrap(), Some(after.clone()));
        assert_eq!(dry.accounts().unwrap(), ["a@example.org", "b@example.org"]);
        assert!(held(&dry, &new_blob.0));
    }
    // …and the store on disk has none of them.
    let store = RedbStore::open(&path, BUDGET).unwrap();
    assert_eq!(store.accounts().unwrap(), ["a@example.org"]);
    assert_eq!(store.load_account("a@example.org").unwrap(), Some(before));
    assert!(!held(&store, &new_blob.0));
    assert_eq!(store.load_blob(&pinned.0).unwrap(), Some(pinned.1));
}
