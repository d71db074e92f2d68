//! The gateway's durable state: per-account knowledge and image blobs, behind the small [`Store`] trait.
//!
//! The sans-IO engine only ever talks to `dyn Store`, so tests run on [`MemoryStore`], production on
//! [`RedbStore`], and a networked database can replace both later (DESIGN §6) without touching the engine.
//! Both backends keep the same semantics, including the blob byte budget, and one test-suite
//! (`tests/store.rs`) holds them to it.
//!
//! Blobs are content-addressed by [`AvatarHash`]. *Pinned* blobs are owners' `storage:client:avatar` data, of
//! which the gateway is the only holder: they are never evicted. Every other blob is a cache entry that can be
//! fetched again, so unpinned blobs are evicted oldest-inserted first once their total exceeds the budget. Pinned
//! bytes do not count against the budget: the budget bounds the cache, and owners' data must not starve it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition};

use crate::avatar::AvatarHash;
use crate::engine::account::{Current, Scheme, Seen};

/// Per-account durable state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredAccount {
    /// What each scheme was last seen to hold, indexed in [`Scheme::ALL`] order (as in `Account`).
    pub seen: [Seen; 3],
    /// The avatar currently bridged, with its renditions.
    pub current: Option<Current>,
    /// The hash of the owner's `storage:client:avatar` data: the gateway is its only holder (its blob is pinned).
    pub storage: Option<AvatarHash>,
}

/// The gateway's durable state. Every successful write is committed: it survives a crash.
pub trait Store {
    /// The state of `account` (a bare JID), or `None` if nothing was ever saved for it.
    fn load_account(&self, account: &str) -> Result<Option<StoredAccount>, StoreError>;
    /// Replaces the state of `account`.
    fn save_account(&mut self, account: &str, state: &StoredAccount) -> Result<(), StoreError>;
    /// The image bytes stored under `hash`, if still held.
    fn load_blob(&self, hash: &AvatarHash) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores image bytes under their hash (the caller guarantees hash == SHA-1(bytes)); `pinned` blobs
    /// (storage:client:avatar data) are never evicted; unpinned ones are evicted oldest-first when over the byte
    /// budget. Re-saving a stored hash changes nothing, except that `pinned = true` pins it. The newest unpinned
    /// blob is never evicted, so a blob larger than the whole budget still survives its own save.
    fn save_blob(&mut self, hash: &AvatarHash, bytes: &[u8], pinned: bool) -> Result<(), StoreError>;
    /// Unpins (e.g. when the owner replaces or clears its storage data); the blob becomes evictable, at its
    /// original insertion position. Unknown or unpinned hashes are left alone.
    fn unpin_blob(&mut self, hash: &AvatarHash) -> Result<(), StoreError>;
    /// Every account with stored state, sorted (for a live migration sweep and for start-up).
    fn accounts(&self) -> Result<Vec<String>, StoreError>;
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be created or opened (bad directory, permissions, already open elsewhere,
    /// or a file format from a newer redb).
    #[error("cannot open the store at {path}: {source}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// What redb reported (boxed: it is large, and errors are the cold path).
        #[source]
        source: Box<redb::DatabaseError>,
    },
    /// A read or write failed in the database (I/O error, storage corruption detected by redb).
    #[error("store {path}, table `{table}`: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// The table being used.
        table: &'static str,
        /// What redb reported (boxed: it is large, and errors are the cold path).
        #[source]
        source: Box<redb::Error>,
    },
    /// The file's schema version is not one this build reads: normally a newer gateway wrote it (0 is never
    /// written). Refusing it protects data this build cannot understand from being misread or overwritten.
    #[error("the store at {path} has schema version {found}, this gateway reads versions 1 to {supported}")]
    UnsupportedSchema {
        /// The database file.
        path: PathBuf,
        /// The version in its `meta` table.
        found: u64,
        /// The newest version this build reads ([`SCHEMA_VERSION`]).
        supported: u64,
    },
    /// One account's stored bytes do not decode: that account is unreadable, the rest of the store is fine.
    #[error("the stored state of account `{account}` is corrupt: {reason}")]
    Corrupt {
        /// The account (bare JID).
        account: String,
        /// What is wrong with its bytes.
        reason: DecodeError,
    },
}

/// Why a [`StoredAccount`] encoding was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end before the record does.
    #[error("truncated record")]
    Truncated,
    /// A version byte no gateway ever wrote.
    #[error("unknown encoding version {0}")]
    UnknownVersion(u8),
    /// A tag byte outside its enumeration.
    #[error("invalid tag {tag} for {field}")]
    BadTag {
        /// Which field.
        field: &'static str,
        /// The byte found.
        tag: u8,
    },
    /// Bytes left after a complete record: a writer we do not know, so do not guess.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
}

/// The account encoding's version byte. A future layout gets version 2 and `decode` keeps reading version 1.
const ENCODING_V1: u8 = 1;

impl StoredAccount {
    /// The stable binary encoding, version 1: the version byte; then `seen` in [`Scheme::ALL`] order, each a tag
    /// (0 unknown, 1 no avatar, 2 avatar + 20-byte hash); then `current` (0 none, or 1 + original hash + source
    /// tag (0 legacy, 1 vCard, 2 PEP) + png hash + legacy hash); then `storage` (0 none, or 1 + hash). Tags are
    /// written by explicit `match`, never `as u8`, so reordering an enum cannot silently change the format.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![ENCODING_V1];
        let mut tagged = |tag: u8, hashes: &[&AvatarHash]| {
            out.push(tag);
            hashes.iter().for_each(|hash| out.extend_from_slice(hash.as_bytes()));
        };
        for seen in &self.seen {
            match seen {
                Seen::Unknown => tagged(0, &[]),
                Seen::NoAvatar => tagged(1, &[]),
                Seen::Avatar(hash) => tagged(2, &[hash]),
            }
        }
        match &self.current {
            None => tagged(0, &[]),
            Some(current) => {
                tagged(1, &[&current.original]);
                let source = match current.source {
                    Scheme::Legacy => 0,
                    Scheme::Vcard => 1,
                    Scheme::Pep => 2,
                };
                tagged(source, &[&current.png, &current.legacy]);
            }
        }
        match &self.storage {
            None => tagged(0, &[]),
            Some(hash) => tagged(1, &[hash]),
        }
        out
    }

    /// Decodes [`encode`](Self::encode)'s output. Never panics: any other input is a [`DecodeError`].
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(bytes);
        match r.byte()? {
            ENCODING_V1 => {}
            other => return Err(DecodeError::UnknownVersion(other)),
        }
        let mut seen = [Seen::Unknown; 3];
        for slot in &mut seen {
            *slot = match r.byte()? {
                0 => Seen::Unknown,
                1 => Seen::NoAvatar,
                2 => Seen::Avatar(r.hash()?),
                tag => return Err(DecodeError::BadTag { field: "seen", tag }),
            };
        }
        let current = match r.byte()? {
            0 => None,
            1 => {
                let original = r.hash()?;
                let source = match r.byte()? {
                    0 => Scheme::Legacy,
                    1 => Scheme::Vcard,
                    2 => Scheme::Pep,
                    tag => return Err(DecodeError::BadTag { field: "current.source", tag }),
                };
                Some(Current { original, source, png: r.hash()?, legacy: r.hash()? })
            }
            tag => return Err(DecodeError::BadTag { field: "current", tag }),
        };
        let storage = match r.byte()? {
            0 => None,
            1 => Some(r.hash()?),
            tag => return Err(DecodeError::BadTag { field: "storage", tag }),
        };
        match r.0.len() {
            0 => Ok(Self { seen, current, storage }),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

/// A cursor that only hands out bytes it has (slice methods, no indexing), so decoding cannot panic.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let (&byte, rest) = self.0.split_first().ok_or(DecodeError::Truncated)?;
        self.0 = rest;
        Ok(byte)
    }

    fn hash(&mut self) -> Result<AvatarHash, DecodeError> {
        let (hash, rest) = self.0.split_first_chunk::<20>().ok_or(DecodeError::Truncated)?;
        self.0 = rest;
        Ok(AvatarHash::from_bytes(*hash))
    }
}

/// A dry run's store: reads fall through to `base`, writes stay in memory, so a dry run sees the real state and
/// leaves it untouched.
pub struct DryRunStore {
    base: Box<dyn Store>,
    overlay: MemoryStore,
}

impl DryRunStore {
    /// Over `base`, whose contents are never changed.
    pub fn new(base: Box<dyn Store>, blob_budget_bytes: u64) -> Self {
        Self { base, overlay: MemoryStore::new(blob_budget_bytes) }
    }
}

impl Store for DryRunStore {
    fn load_account(&self, account: &str) -> Result<Option<StoredAccount>, StoreError> {
        match self.overlay.load_account(account)? {
            Some(state) => Ok(Some(state)),
            None => self.base.load_account(account),
        }
    }

    fn save_account(&mut self, account: &str, state: &StoredAccount) -> Result<(), StoreError> {
        self.overlay.save_account(account, state)
    }

    fn load_blob(&self, hash: &AvatarHash) -> Result<Option<Vec<u8>>, StoreError> {
        match self.overlay.load_blob(hash)? {
            Some(bytes) => Ok(Some(bytes)),
            None => self.base.load_blob(hash),
        }
    }

    fn save_blob(&mut self, hash: &AvatarHash, bytes: &[u8], pinned: bool) -> Result<(), StoreError> {
        self.overlay.save_blob(hash, bytes, pinned)
    }

    fn unpin_blob(&mut self, hash: &AvatarHash) -> Result<(), StoreError> {
        self.overlay.unpin_blob(hash)
    }

    fn accounts(&self) -> Result<Vec<String>, StoreError> {
        let mut all = self.base.accounts()?;
        all.extend(self.overlay.accounts()?);
        all.sort();
        all.dedup();
        Ok(all)
    }
}

/// An in-memory [`Store`] for tests and `--store=memory`: same semantics as [`RedbStore`], budget included.
#[derive(Debug, Default)]
pub struct MemoryStore {
    budget: u64,
    accounts: BTreeMap<String, StoredAccount>,
    blobs: HashMap<AvatarHash, MemoryBlob>,
    /// Unpinned blobs by insertion sequence: the eviction order, so eviction costs O(evicted).
    evictable: BTreeMap<u64, AvatarHash>,
    evictable_bytes: u64,
    next_seq: u64,
}

#[derive(Debug)]
struct MemoryBlob {
    bytes: Vec<u8>,
    seq: u64,
    pinned: bool,
}

impl MemoryStore {
    /// An empty store whose unpinned blobs may total `blob_budget_bytes`.
    pub fn new(blob_budget_bytes: u64) -> Self {
        Self { budget: blob_budget_bytes, ..Self::default() }
    }

    fn evict(&mut self) {
        while self.evictable_bytes > self.budget && self.evictable.len() > 1 {
            let Some((_, hash)) = self.evictable.pop_first() else { break };
            if let Some(blob) = self.blobs.remove(&hash) {
                self.evictable_bytes = self.evictable_bytes.saturating_sub(blob.bytes.len() as u64);
            }
        }
    }
}

impl Store for MemoryStore {
    fn load_account(&self, account: &str) -> Result<Option<StoredAccount>, StoreError> {
        Ok(self.accounts.get(account).cloned())
    }

    fn save_account(&mut self, account: &str, state: &StoredAccount) -> Result<(), StoreError> {
        self.accounts.insert(account.to_owned(), state.clone());
        Ok(())
    }

    fn load_blob(&self, hash: &AvatarHash) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.blobs.get(hash).map(|blob| blob.bytes.clone()))
    }

    fn save_blob(&mut self, hash: &AvatarHash, bytes: &[u8], pinned: bool) -> Result<(), StoreError> {
        if let Some(blob) = self.blobs.get_mut(hash) {
            if pinned && !blob.pinned {
                blob.pinned = true;
                self.evictable.remove(&blob.seq);
                self.evictable_bytes = self.evictable_bytes.saturating_sub(blob.bytes.len() as u64);
            }
            return Ok(());
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.blobs.insert(*hash, MemoryBlob { bytes: bytes.to_vec(), seq, pinned });
        if !pinned {
            self.evictable.insert(seq, *hash);
            self.evictable_bytes += bytes.len() as u64;
            self.evict();
        }
        Ok(())
    }

    fn unpin_blob(&mut self, hash: &AvatarHash) -> Result<(), StoreError> {
        if let Some(blob) = self.blobs.get_mut(hash).filter(|blob| blob.pinned) {
            blob.pinned = false;
            self.evictable.insert(blob.seq, *hash);
            self.evictable_bytes += blob.bytes.len() as u64;
            self.evict();
        }
        Ok(())
    }

    fn accounts(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.accounts.keys().cloned().collect())
    }
}

/// The schema version this build writes and reads.
///
/// Upgrade path: a build that introduces version N+1 keeps every step `N → N+1` as a function run inside the
/// single write transaction of [`RedbStore::open`] (rewriting tables, then bumping `schema_version`), so an old
/// file is upgraded atomically on first open and a crash mid-upgrade leaves it at the old version. A file with a
/// version above this one is refused ([`StoreError::UnsupportedSchema`]) rather than read or overwritten.
pub const SCHEMA_VERSION: u64 = 1;

const META_NAME: &str = "meta";
const ACCOUNTS_NAME: &str = "accounts";
const BLOBS_NAME: &str = "blobs";
const BLOB_META_NAME: &str = "blob_meta";
const EVICTABLE_NAME: &str = "blob_evictable";
/// Named `u64`s: `schema_version` and the blob counters (kept here so opening needs no scan).
const META: TableDefinition<&str, u64> = TableDefinition::new(META_NAME);
/// Bare JID → [`StoredAccount::encode`] bytes.
const ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new(ACCOUNTS_NAME);
/// Raw SHA-1 → image bytes.
const BLOBS: TableDefinition<&[u8; 20], &[u8]> = TableDefinition::new(BLOBS_NAME);
/// Raw SHA-1 → (byte length, insertion sequence, pinned): what eviction needs without reading the bytes.
const BLOB_META: TableDefinition<&[u8; 20], (u64, u64, bool)> = TableDefinition::new(BLOB_META_NAME);
/// Insertion sequence → raw SHA-1 of each unpinned blob: the eviction order.
const EVICTABLE: TableDefinition<u64, &[u8; 20]> = TableDefinition::new(EVICTABLE_NAME);
const KEY_VERSION: &str = "schema_version";
const KEY_NEXT_SEQ: &str = "next_blob_seq";
const KEY_EVICTABLE_BYTES: &str = "evictable_bytes";

/// The production [`Store`]: one redb file. Every write is one transaction committed with redb's default
/// immediate durability (fsync), so a save that returned `Ok` survives a crash.
#[derive(Debug)]
pub struct RedbStore {
    db: Database,
    path: PathBuf,
    budget: u64,
}

impl RedbStore {
    /// Opens (creating if needed) the store at `path`, whose unpinned blobs may total `blob_budget_bytes`.
    pub fn open(path: &Path, blob_budget_bytes: u64) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(|e| StoreError::Open { path: path.to_owned(), source: Box::new(e) })?;
        let store = Self { db, path: path.to_owned(), budget: blob_budget_bytes };
        let init = || -> Result<Option<u64>, redb::Error> {
            let txn = store.db.begin_write()?;
            let found = txn.open_table(META)?.get(KEY_VERSION)?.map(|v| v.value());
            if found.is_some() {
                return Ok(found); // dropping `txn` aborts it: nothing to write
            }
            // A new file: create every table now so readers never meet a missing one.
            txn.open_table(META)?.insert(KEY_VERSION, SCHEMA_VERSION)?;
            txn.open_table(ACCOUNTS)?;
            txn.open_table(BLOBS)?;
            txn.open_table(BLOB_META)?;
            txn.open_table(EVICTABLE)?;
            txn.commit()?;
            Ok(None)
        };
        match init().map_err(|e| store.fail(META_NAME, e))? {
            None | Some(SCHEMA_VERSION) => Ok(store),
            Some(found) => Err(StoreError::UnsupportedSchema { path: store.path, found, supported: SCHEMA_VERSION }),
        }
    }

    /// Runs `body` on a read snapshot, naming `table` if it fails.
    fn read<T>(
        &self,
        table: &'static str,
        body: impl FnOnce(redb::ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        self.db.begin_read().map_err(redb::Error::from).and_then(body).map_err(|e| self.fail(table, e))
    }

    fn fail(&self, table: &'static str, source: redb::Error) -> StoreError {
        StoreError::Database { path: self.path.clone(), table, source: Box::new(source) }
    }

    /// Runs `body` in one write transaction over the blob tables; commits it if `body` says it changed anything
    /// (a no-op re-save then costs no fsync).
    fn write_blobs(
        &self,
        body: impl FnOnce(&mut BlobTables<'_>) -> Result<bool, redb::Error>,
    ) -> Result<(), StoreError> {
        let run = || -> Result<(), redb::Error> {
            let txn = self.db.begin_write()?;
            {
                let mut meta = txn.open_table(META)?;
                let counter = |meta: &Table<&str, u64>, key| meta.get(key).map(|v| v.map_or(0, |v| v.value()));
                let mut tables = BlobTables {
                    next_seq: counter(&meta, KEY_NEXT_SEQ)?,
                    evictable_bytes: counter(&meta, KEY_EVICTABLE_BYTES)?,
                    blobs: txn.open_table(BLOBS)?,
                    meta: txn.open_table(BLOB_META)?,
                    evictable: txn.open_table(EVICTABLE)?,
                    budget: self.budget,
                };
                if !body(&mut tables)? {
                    drop((tables, meta));
                    return Ok(txn.abort()?);
                }
                meta.insert(KEY_NEXT_SEQ, tables.next_seq)?;
                meta.insert(KEY_EVICTABLE_BYTES, tables.evictable_bytes)?;
            }
            Ok(txn.commit()?)
        };
        run().map_err(|e| self.fail(BLOBS_NAME, e))
    }
}

/// The blob tables and counters inside one write transaction.
struct BlobTables<'txn> {
    blobs: Table<'txn, &'static [u8; 20], &'static [u8]>,
    meta: Table<'txn, &'static [u8; 20], (u64, u64, bool)>,
    evictable: Table<'txn, u64, &'static [u8; 20]>,
    next_seq: u64,
    evictable_bytes: u64,
    budget: u64,
}

impl BlobTables<'_> {
    /// Evicts oldest-first until within budget, never the newest evictable blob (same rule as [`MemoryStore`]).
    fn evict(&mut self) -> Result<(), redb::Error> {
        while self.evictable_bytes > self.budget && self.evictable.len()? > 1 {
            let hash = match self.evictable.pop_first()? {
                Some((_, hash)) => *hash.value(),
                None => break,
            };
            if let Some(meta) = self.meta.remove(&hash)? {
                self.evictable_bytes = self.evictable_bytes.saturating_sub(meta.value().0);
            }
            self.blobs.remove(&hash)?;
        }
        Ok(())
    }
}

impl Store for RedbStore {
    fn load_account(&self, account: &str) -> Result<Option<StoredAccount>, StoreError> {
        let bytes =
            self.read(ACCOUNTS_NAME, |txn| Ok(txn.open_table(ACCOUNTS)?.get(account)?.map(|v| v.value().to_vec())));
        let Some(bytes) = bytes? else { return Ok(None) };
        StoredAccount::decode(&bytes)
            .map(Some)
            .map_err(|reason| StoreError::Corrupt { account: account.to_owned(), reason })
    }

    fn save_account(&mut self, account: &str, state: &StoredAccount) -> Result<(), StoreError> {
        let write = || -> Result<(), redb::Error> {
            let txn = self.db.begin_write()?;
            txn.open_table(ACCOUNTS)?.insert(account, state.encode().as_slice())?;
            Ok(txn.commit()?)
        };
        write().map_err(|e| self.fail(ACCOUNTS_NAME, e))
    }

    fn load_blob(&self, hash: &AvatarHash) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(BLOBS_NAME, |txn| Ok(txn.open_table(BLOBS)?.get(hash.as_bytes())?.map(|v| v.value().to_vec())))
    }

    fn save_blob(&mut self, hash: &AvatarHash, bytes: &[u8], pinned: bool) -> Result<(), StoreError> {
        let key = hash.as_bytes();
        self.write_blobs(|t| {
            let existing = t.meta.get(key)?.map(|v| v.value());
            match existing {
                Some((len, seq, false)) if pinned => {
                    t.meta.insert(key, (len, seq, true))?;
                    t.evictable.remove(seq)?;
                    t.evictable_bytes = t.evictable_bytes.saturating_sub(len);
                }
                Some(_) => return Ok(false), // content-addressed: the bytes are already these
                None => {
                    let (len, seq) = (bytes.len() as u64, t.next_seq);
                    t.next_seq += 1;
                    t.blobs.insert(key, bytes)?;
                    t.meta.insert(key, (len, seq, pinned))?;
                    if !pinned {
                        t.evictable.insert(seq, key)?;
                        t.evictable_bytes += len;
                        t.evict()?;
                    }
                }
            }
            Ok(true)
        })
    }

    fn unpin_blob(&mut self, hash: &AvatarHash) -> Result<(), StoreError> {
        let key = hash.as_bytes();
        self.write_blobs(|t| {
            let Some((len, seq, true)) = t.meta.get(key)?.map(|v| v.value()) else { return Ok(false) };
            t.meta.insert(key, (len, seq, false))?;
            t.evictable.insert(seq, key)?;
            t.evictable_bytes += len;
            t.evict()?;
            Ok(true)
        })
    }

    fn accounts(&self) -> Result<Vec<String>, StoreError> {
        self.read(ACCOUNTS_NAME, |txn| {
            txn.open_table(ACCOUNTS)?.iter()?.map(|entry| Ok(entry?.0.value().to_owned())).collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> AvatarHash {
        AvatarHash::from_bytes([n; 20])
    }

    fn full() -> StoredAccount {
        StoredAccount {
            seen: [Seen::Unknown, Seen::NoAvatar, Seen::Avatar(h(1))],
            current: Some(Current { original: h(2), source: Scheme::Pep, png: h(3), legacy: h(4) }),
            storage: Some(h(5)),
        }
    }

    #[test]
    fn layout_is_pinned_down() {
        let mut expected = vec![1, 0, 1, 2];
        expected.extend([1; 20]);
        expected.push(1);
        expected.extend([2; 20]);
        expected.push(2);
        expected.extend([3; 20].into_iter().chain([4; 20]));
        expected.push(1);
        expected.extend([5; 20]);
        assert_eq!(full().encode(), expected);
        assert_eq!(StoredAccount::default().encode(), [1, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn every_variant_round_trips() {
        for source in Scheme::ALL {
            let mut account = full();
            account.current.as_mut().unwrap().source = source;
            assert_eq!(StoredAccount::decode(&account.encode()), Ok(account));
        }
        let empty = StoredAccount::default();
        assert_eq!(StoredAccount::decode(&empty.encode()), Ok(empty));
    }

    #[test]
    fn damage_is_an_error_never_a_panic() {
        let bytes = full().encode();
        for cut in 0..bytes.len() {
            assert_eq!(StoredAccount::decode(&bytes[..cut]), Err(DecodeError::Truncated), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(StoredAccount::decode(&long), Err(DecodeError::TrailingBytes(1)));
        assert_eq!(StoredAccount::decode(&[2]), Err(DecodeError::UnknownVersion(2)));
        assert_eq!(StoredAccount::decode(&[1, 3]), Err(DecodeError::BadTag { field: "seen", tag: 3 }));
        let mut bad_source = bytes;
        bad_source[1 + 1 + 1 + 21 + 1 + 20] = 9;
        assert_eq!(StoredAccount::decode(&bad_source), Err(DecodeError::BadTag { field: "current.source", tag: 9 }));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_decode_canonically(bytes in proptest::collection::vec(0u8..4, 0..160)) {
            if let Ok(account) = StoredAccount::decode(&bytes) {
                proptest::prop_assert_eq!(account.encode(), bytes);
            }
        }
    }
}
