//! [`RedbStore`]: the production backend, one redb file with a versioned schema.

use std::path::{Path, PathBuf};

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition, WriteTransaction,
};

use super::ledger::{self, Ledger};
use super::{Store, StoreError, StoreOp, StoredAccount};
use crate::avatar::AvatarHash;

/// The schema version this build writes and reads.
///
/// Upgrade path: a build that introduces version N+1 keeps every step `N → N+1` as a function in [`UPGRADES`], run
/// inside the single write transaction of [`RedbStore::open`] (rewriting tables, then bumping `schema_version`),
/// so an old file is upgraded atomically on first open and a crash mid-upgrade leaves it at the old version. A file
/// with a version above this one is refused ([`StoreError::UnsupportedSchema`]) rather than read or overwritten.
///
/// History: 1 kept a `pinned` flag in `blob_meta`, set and cleared by the engine for owners' storage data only.
/// 2 derives pins from account records: a `blob_pins` count per hash, and `blob_meta` without the flag
/// ([`upgrade_1_to_2`]).
pub const SCHEMA_VERSION: u64 = 2;

/// A schema step `N → N+1`, run inside [`RedbStore::open`]'s write transaction.
type Upgrade = fn(&WriteTransaction) -> Result<(), redb::Error>;

/// `UPGRADES[N - 1]` upgrades version N to N+1.
const UPGRADES: [Upgrade; 1] = [upgrade_1_to_2];
const _: () = assert!(UPGRADES.len() as u64 + 1 == SCHEMA_VERSION, "one upgrade step per older version");

const META_NAME: &str = "meta";
const ACCOUNTS_NAME: &str = "accounts";
const BLOBS_NAME: &str = "blobs";
const BLOB_META_NAME: &str = "blob_meta";
const EVICTABLE_NAME: &str = "blob_evictable";
const PINS_NAME: &str = "blob_pins";
/// Named `u64`s: `schema_version` and the blob counters (kept here so opening needs no scan).
const META: TableDefinition<&str, u64> = TableDefinition::new(META_NAME);
/// Bare JID → [`StoredAccount::encode`] bytes.
const ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new(ACCOUNTS_NAME);
/// Raw SHA-1 → image bytes.
const BLOBS: TableDefinition<&[u8; 20], &[u8]> = TableDefinition::new(BLOBS_NAME);
/// Raw SHA-1 → (byte length, insertion sequence) of each held blob: what eviction needs without reading the bytes.
const BLOB_META: TableDefinition<&[u8; 20], (u64, u64)> = TableDefinition::new(BLOB_META_NAME);
/// Insertion sequence → raw SHA-1 of each held blob without a pin: the eviction order.
const EVICTABLE: TableDefinition<u64, &[u8; 20]> = TableDefinition::new(EVICTABLE_NAME);
/// Raw SHA-1 → how many account records reference it (only counts above 0), whether or not its blob is held: so a
/// blob saved after the record that names it is born pinned.
const PINS: TableDefinition<&[u8; 20], u32> = TableDefinition::new(PINS_NAME);
const KEY_VERSION: &str = "schema_version";
const KEY_NEXT_SEQ: &str = "next_blob_seq";
const KEY_EVICTABLE_BYTES: &str = "evictable_bytes";

/// The production [`Store`]: one redb file. Every commit (one save, or a whole group of them) is one transaction
/// committed with redb's default immediate durability (fsync), so a save that returned `Ok` survives a crash; a
/// group that changes nothing is aborted instead, costing no fsync.
#[derive(Debug)]
pub struct RedbStore {
    db: Database,
    path: PathBuf,
    budget: u64,
}

impl RedbStore {
    /// Opens (creating if needed, upgrading an older schema) the store at `path`, whose unpinned blobs may total
    /// `blob_budget_bytes`.
    pub fn open(path: &Path, blob_budget_bytes: u64) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(|e| StoreError::Open { path: path.to_owned(), source: Box::new(e) })?;
        let store = Self { db, path: path.to_owned(), budget: blob_budget_bytes };
        match store.init().map_err(|e| store.fail(META_NAME, e))? {
            None => Ok(store),
            Some(found) => Err(StoreError::UnsupportedSchema {
                location: store.path.display().to_string(),
                found,
                supported: SCHEMA_VERSION,
            }),
        }
    }

    /// Creates a new file's tables, or upgrades an older schema, in one write transaction. `Some(version)`: a
    /// version this build does not read (nothing was written).
    fn init(&self) -> Result<Option<u64>, redb::Error> {
        let txn = self.db.begin_write()?;
        let found = txn.open_table(META)?.get(KEY_VERSION)?.map(|v| v.value());
        match found {
            Some(SCHEMA_VERSION) => {
                txn.abort()?;
                return Ok(None);
            }
            Some(found) if found == 0 || found > SCHEMA_VERSION => {
                txn.abort()?;
                return Ok(Some(found));
            }
            Some(found) => {
                for step in UPGRADES.iter().skip((found - 1) as usize) {
                    step(&txn)?;
                }
            }
            None => {
                // A new file: create every table now so readers never meet a missing one.
                txn.open_table(ACCOUNTS)?;
                txn.open_table(BLOBS)?;
                txn.open_table(BLOB_META)?;
                txn.open_table(EVICTABLE)?;
                txn.open_table(PINS)?;
            }
        }
        txn.open_table(META)?.insert(KEY_VERSION, SCHEMA_VERSION)?;
        txn.commit()?;
        Ok(None)
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

    /// Runs `body` in one write transaction, naming `table` if it fails; commits it if `body` says it changed
    /// anything (a no-op save then costs no fsync), aborts it otherwise.
    fn write(
        &self,
        table: &'static str,
        body: impl FnOnce(&mut Ledger<Tables<'_>>) -> Result<bool, redb::Error>,
    ) -> Result<(), StoreError> {
        let run = || -> Result<(), redb::Error> {
            let txn = self.db.begin_write()?;
            let changed = {
                let mut ledger = Tables::open(&txn, self.budget)?;
                let changed = body(&mut ledger)?;
                if changed {
                    ledger.tables.counters.insert(KEY_NEXT_SEQ, ledger.next_seq)?;
                    ledger.tables.counters.insert(KEY_EVICTABLE_BYTES, ledger.evictable_bytes)?;
                }
                changed
            };
            if changed {
                txn.commit()?;
            } else {
                txn.abort()?;
            }
            Ok(())
        };
        run().map_err(|e| self.fail(table, e))
    }
}

/// Version 1 → 2: pins become counts derived from account records. Recounts every blob's pins from all readable
/// account records (version 1's flag pinned the owners' storage, which the recount covers; a record that does not
/// decode counts for nothing, as in [`Store::save_account`]), drops the flag from `blob_meta`, and rebuilds the
/// eviction order (same insertion sequences) and its byte total. Evicts nothing: that is the next save's job.
fn upgrade_1_to_2(txn: &WriteTransaction) -> Result<(), redb::Error> {
    const BLOB_META_V1: TableDefinition<&[u8; 20], (u64, u64, bool)> = TableDefinition::new(BLOB_META_NAME);
    let mut pins = txn.open_table(PINS)?;
    for entry in txn.open_table(ACCOUNTS)?.iter()? {
        let (_, bytes) = entry?;
        let Ok(record) = StoredAccount::decode(bytes.value()) else { continue };
        for hash in record.references() {
            let count = pins.get(hash.as_bytes())?.map_or(0, |v| v.value());
            pins.insert(hash.as_bytes(), count.saturating_add(1))?;
        }
    }
    let mut held = Vec::new();
    for entry in txn.open_table(BLOB_META_V1)?.iter()? {
        let (hash, (len, seq, _pinned)) = entry.map(|(k, v)| (*k.value(), v.value()))?;
        held.push((hash, len, seq));
    }
    txn.delete_table(BLOB_META_V1)?;
    txn.delete_table(EVICTABLE)?;
    let (mut meta, mut evictable) = (txn.open_table(BLOB_META)?, txn.open_table(EVICTABLE)?);
    let mut evictable_bytes = 0;
    for (hash, len, seq) in held {
        meta.insert(&hash, (len, seq))?;
        if pins.get(&hash)?.is_none() {
            evictable.insert(seq, &hash)?;
            evictable_bytes += len;
        }
    }
    txn.open_table(META)?.insert(KEY_EVICTABLE_BYTES, evictable_bytes)?;
    Ok(())
}

/// Every table inside one write transaction: the primitives [`Ledger`] runs the bookkeeping over.
struct Tables<'txn> {
    counters: Table<'txn, &'static str, u64>,
    accounts: Table<'txn, &'static str, &'static [u8]>,
    blobs: Table<'txn, &'static [u8; 20], &'static [u8]>,
    meta: Table<'txn, &'static [u8; 20], (u64, u64)>,
    evictable: Table<'txn, u64, &'static [u8; 20]>,
    pins: Table<'txn, &'static [u8; 20], u32>,
}

impl<'txn> Tables<'txn> {
    /// The tables, in a ledger with the counters as stored.
    fn open(txn: &'txn WriteTransaction, budget: u64) -> Result<Ledger<Self>, redb::Error> {
        let counters = txn.open_table(META)?;
        let counter = |key| counters.get(key).map(|v| v.map_or(0, |v| v.value()));
        let (next_seq, evictable_bytes) = (counter(KEY_NEXT_SEQ)?, counter(KEY_EVICTABLE_BYTES)?);
        let tables = Self {
            counters,
            accounts: txn.open_table(ACCOUNTS)?,
            blobs: txn.open_table(BLOBS)?,
            meta: txn.open_table(BLOB_META)?,
            evictable: txn.open_table(EVICTABLE)?,
            pins: txn.open_table(PINS)?,
        };
        Ok(Ledger { tables, next_seq, evictable_bytes, budget })
    }
}

impl ledger::Tables for Tables<'_> {
    type Error = redb::Error;

    fn account(&mut self, account: &str) -> Result<Option<Vec<u8>>, redb::Error> {
        Ok(self.accounts.get(account)?.map(|v| v.value().to_vec()))
    }

    fn put_account(&mut self, account: &str, encoded: &[u8]) -> Result<(), redb::Error> {
        self.accounts.insert(account, encoded)?;
        Ok(())
    }

    fn blob_meta(&mut self, hash: &AvatarHash) -> Result<Option<(u64, u64)>, redb::Error> {
        Ok(self.meta.get(hash.as_bytes())?.map(|v| v.value()))
    }

    fn put_blob(&mut self, hash: &AvatarHash, bytes: &[u8], seq: u64) -> Result<(), redb::Error> {
        self.blobs.insert(hash.as_bytes(), bytes)?;
        self.meta.insert(hash.as_bytes(), (bytes.len() as u64, seq))?;
        Ok(())
    }

    fn remove_blob(&mut self, hash: &AvatarHash) -> Result<(), redb::Error> {
        self.meta.remove(hash.as_bytes())?;
        self.blobs.remove(hash.as_bytes())?;
        Ok(())
    }

    fn pin_count(&mut self, hash: &AvatarHash) -> Result<u32, redb::Error> {
        Ok(self.pins.get(hash.as_bytes())?.map_or(0, |v| v.value()))
    }

    fn set_pin_count(&mut self, hash: &AvatarHash, count: u32) -> Result<(), redb::Error> {
        match count {
            0 => self.pins.remove(hash.as_bytes())?.map(drop),
            _ => self.pins.insert(hash.as_bytes(), count)?.map(drop),
        };
        Ok(())
    }

    fn add_evictable(&mut self, seq: u64, hash: &AvatarHash) -> Result<(), redb::Error> {
        self.evictable.insert(seq, hash.as_bytes())?;
        Ok(())
    }

    fn remove_evictable(&mut self, seq: u64) -> Result<(), redb::Error> {
        self.evictable.remove(seq)?;
        Ok(())
    }

    fn several_evictable(&mut self) -> Result<bool, redb::Error> {
        Ok(self.evictable.len()? > 1)
    }

    fn pop_oldest_evictable(&mut self) -> Result<Option<AvatarHash>, redb::Error> {
        Ok(self.evictable.pop_first()?.map(|(_, hash)| AvatarHash::from_bytes(*hash.value())))
    }
}

impl Store for RedbStore {
    fn load_account(&self, account: &str) -> Result<Option<StoredAccount>, StoreError> {
        let bytes =
            self.read(ACCOUNTS_NAME, |txn| Ok(txn.open_table(ACCOUNTS)?.get(account)?.map(|v| v.value().to_vec())));
        StoredAccount::decode_stored(account, bytes?)
    }

    fn save_account(&mut self, account: &str, state: &StoredAccount) -> Result<(), StoreError> {
        self.commit(&[StoreOp::Account(account, state)])
    }

    fn load_blob(&self, hash: &AvatarHash) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(BLOBS_NAME, |txn| Ok(txn.open_table(BLOBS)?.get(hash.as_bytes())?.map(|v| v.value().to_vec())))
    }

    fn save_blob(&mut self, hash: &AvatarHash, bytes: &[u8]) -> Result<(), StoreError> {
        self.commit(&[StoreOp::Blob(*hash, bytes)])
    }

    fn pins(&self, hash: &AvatarHash) -> Result<u32, StoreError> {
        self.read(PINS_NAME, |txn| Ok(txn.open_table(PINS)?.get(hash.as_bytes())?.map_or(0, |v| v.value())))
    }

    fn accounts(&self) -> Result<Vec<String>, StoreError> {
        self.read(ACCOUNTS_NAME, |txn| {
            txn.open_table(ACCOUNTS)?.iter()?.map(|entry| Ok(entry?.0.value().to_owned())).collect()
        })
    }

    fn blobs(&self) -> Result<Vec<AvatarHash>, StoreError> {
        self.read(BLOB_META_NAME, |txn| {
            txn.open_table(BLOB_META)?.iter()?.map(|entry| Ok(AvatarHash::from_bytes(*entry?.0.value()))).collect()
        })
    }

    /// One write transaction for the whole group: one fsync however many writes (group commit).
    fn commit(&mut self, ops: &[StoreOp<'_>]) -> Result<(), StoreError> {
        let table = match ops {
            [StoreOp::Blob(..)] => BLOBS_NAME,
            _ => ACCOUNTS_NAME,
        };
        self.write(table, |ledger| ledger.apply(ops))
    }
}
