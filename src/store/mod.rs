//! The gateway's durable state: per-account knowledge and image blobs, behind the small [`Store`] trait.
//!
//! The sans-IO engine never calls a store: it asks for writes and blob reads as effects, and the shell carries
//! them out on a thread of their own, committing every write that arrived meanwhile in one transaction
//! ([`Store::commit`]; `link::store_task`). At start-up the shell reads a [`Snapshot`] (every account record and
//! the hashes of the held blobs) and hands it to the engine, which then keeps its accounts in memory. Tests run
//! on [`MemoryStore`], production on [`RedbStore`], and a networked database can replace both without touching
//! the engine. Both backends keep the same semantics, including the blob byte budget and the pin counts, and one
//! test-suite (`tests/store.rs`) holds them to it.
//!
//! # Eviction rule
//!
//! Blobs are content-addressed by [`AvatarHash`]. A blob nobody is served from is a cache entry that can be
//! fetched or derived again, so *unpinned* blobs are evicted oldest-inserted first once their total exceeds the
//! budget (never the newest one, so a blob larger than the budget survives its own save). *Pinned* blobs are
//! never evicted and do not count against the budget: the budget bounds the cache, and what readers are served
//! must neither be lost nor starve it. (An earlier rule pinned only owners' storage data: one user publishing
//! hundreds of avatars then evicted everybody else's renditions, and their XEP-0008 readers got
//! `item-not-found`.)
//!
//! # Pin rule
//!
//! A blob is pinned while at least one stored account *references* it ([`StoredAccount::references`]): its
//! `storage` (the owner's XEP-0008 data, of which the gateway is the only holder) and its current avatar's `png`
//! (published to XEP-0084, re-published on retries) and `legacy` (served to XEP-0008 readers). Not the
//! `original`: it may be large and is never served — unless it *is* the png or legacy rendition, which is then
//! the same blob. Pins are derived from account records only, inside the store: there is no pin flag in the API.
//!
//! Each backend keeps a pin *count* per hash: the number of stored accounts whose record references it (each
//! account counts once, however many of its fields name the hash). [`Store::save_account`] reads the previous
//! record in the same transaction as it writes the new one, decrements the hashes it no longer references and
//! increments the new ones, so a record and the pins it implies change atomically; a count dropping to 0 makes
//! the blob evictable again at its original insertion position, and eviction runs. The counts are kept apart
//! from the blobs, by hash: a record may reference a blob not (yet, or no longer) stored — the engine saves
//! renditions before the record, but a fetch may fail, or an old eviction may have taken it — and a blob saved
//! while its count is above 0 is born pinned. Hashes with a count of 0 have no entry, so the counts are bounded
//! by the accounts' references. A stored record that no longer decodes counts for nothing (it cannot be read,
//! so it serves nothing); if it was readable when saved, its pins stay counted (a conservative leak) until a
//! schema upgrade recounts.

use std::path::PathBuf;

use crate::avatar::AvatarHash;
use crate::engine::account::{Current, Seen};

mod dry_run;
mod encoding;
pub mod lease;
mod ledger;
mod memory;
mod postgres;
mod redb;

pub use self::dry_run::DryRunStore;
pub use self::encoding::DecodeError;
pub use self::memory::MemoryStore;
pub use self::postgres::{PG_SCHEMA_VERSION, PostgresStore};
pub use self::redb::{RedbStore, SCHEMA_VERSION};

/// Per-account durable state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredAccount {
    /// What each scheme was last seen to hold, indexed in [`Scheme::ALL`](crate::engine::account::Scheme::ALL)
    /// order (as in `Account`).
    pub seen: [Seen; 3],
    /// The avatar currently bridged, with its renditions (the png and legacy blobs are pinned).
    pub current: Option<Current>,
    /// The hash of the owner's `storage:client:avatar` data: the gateway is its only holder (its blob is pinned).
    pub storage: Option<AvatarHash>,
}

impl StoredAccount {
    /// The blobs this record pins (see the module doc): `storage`, `current.png` and `current.legacy`, sorted and
    /// without duplicates (an account pins a hash once, however many fields name it).
    pub fn references(&self) -> Vec<AvatarHash> {
        let current = self.current.iter().flat_map(|c| [c.png, c.legacy]);
        let mut refs: Vec<AvatarHash> = self.storage.into_iter().chain(current).collect();
        refs.sort_unstable();
        refs.dedup();
        refs
    }
}

impl StoredAccount {
    /// The record stored for `account` as bytes (`None`: none stored), decoded; bytes that do not decode are
    /// [`StoreError::Corrupt`] naming the account. What every on-disk backend's `load_account` does once it has
    /// read the bytes.
    pub(crate) fn decode_stored(account: &str, bytes: Option<Vec<u8>>) -> Result<Option<Self>, StoreError> {
        let Some(bytes) = bytes else { return Ok(None) };
        Self::decode(&bytes).map(Some).map_err(|reason| StoreError::Corrupt { account: account.to_owned(), reason })
    }
}

/// What one account save does to the pin counts: `(released, added)`, disjoint. `old` is `None` when there was no
/// previous record, or it did not decode (it counted for nothing).
pub(crate) fn pin_delta(old: Option<&StoredAccount>, new: &StoredAccount) -> (Vec<AvatarHash>, Vec<AvatarHash>) {
    let old = old.map(StoredAccount::references).unwrap_or_default();
    let new = new.references();
    let released = old.iter().filter(|h| !new.contains(h)).copied().collect();
    let added = new.iter().filter(|h| !old.contains(h)).copied().collect();
    (released, added)
}

/// One write of a [`Store::commit`] batch.
#[derive(Debug, Clone, Copy)]
pub enum StoreOp<'a> {
    /// [`Store::save_account`].
    Account(&'a str, &'a StoredAccount),
    /// [`Store::save_blob`].
    Blob(AvatarHash, &'a [u8]),
}

/// The gateway's durable state. Every successful write is committed: it survives a crash.
pub trait Store: Send {
    /// The state of `account` (a bare JID), or `None` if nothing was ever saved for it.
    fn load_account(&self, account: &str) -> Result<Option<StoredAccount>, StoreError>;
    /// Replaces the state of `account`, and in the same transaction moves the pins from the blobs the previous
    /// record referenced to those `state` references (blobs released by every account become evictable, and
    /// eviction runs). Saving the record already stored changes nothing and commits nothing.
    fn save_account(&mut self, account: &str, state: &StoredAccount) -> Result<(), StoreError>;
    /// The image bytes stored under `hash`, if still held.
    fn load_blob(&self, hash: &AvatarHash) -> Result<Option<Vec<u8>>, StoreError>;
    /// Stores image bytes under their hash (the caller guarantees hash == SHA-1(bytes)). A blob some stored
    /// account references is born pinned; any other is evictable, and eviction runs (oldest first, never the
    /// newest, so a blob larger than the whole budget still survives its own save). Re-saving a stored hash
    /// changes nothing (its age included) and commits nothing.
    fn save_blob(&mut self, hash: &AvatarHash, bytes: &[u8]) -> Result<(), StoreError>;
    /// How many stored accounts reference `hash` (0: evictable if held), whether or not its blob is held. For
    /// tests and inspection.
    fn pins(&self, hash: &AvatarHash) -> Result<u32, StoreError>;
    /// Every account with stored state, sorted (for a live migration sweep and for start-up).
    fn accounts(&self) -> Result<Vec<String>, StoreError>;
    /// The hashes of every blob held now (for start-up: the engine then knows what a read can bring back).
    fn blobs(&self) -> Result<Vec<AvatarHash>, StoreError>;
    /// Applies `ops` in order, each with the semantics of its `save_*`, and commits them as one: all or none
    /// survive a crash. A backend with costly commits overrides this with a single transaction (one fsync for
    /// the whole group); this default applies them one by one.
    fn commit(&mut self, ops: &[StoreOp<'_>]) -> Result<(), StoreError> {
        ops.iter().try_for_each(|op| match *op {
            StoreOp::Account(account, state) => self.save_account(account, state),
            StoreOp::Blob(hash, bytes) => self.save_blob(&hash, bytes),
        })
    }
}

/// What the store holds when the gateway starts: handed to the engine, which keeps accounts in memory and reads
/// blobs back through the shell.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Every account record that decodes, sorted by account.
    pub accounts: Vec<(String, StoredAccount)>,
    /// Every held blob's hash.
    pub blobs: Vec<AvatarHash>,
    /// Accounts whose record does not decode: they start from nothing (and the record is replaced at their first
    /// change).
    pub corrupt: Vec<StoreError>,
}

impl Snapshot {
    /// Reads everything `store` holds but blob bytes.
    pub fn read(store: &dyn Store) -> Result<Self, StoreError> {
        let mut snapshot = Self { blobs: store.blobs()?, ..Self::default() };
        for account in store.accounts()? {
            match store.load_account(&account) {
                Ok(Some(record)) => snapshot.accounts.push((account, record)),
                Ok(None) => {}
                Err(e @ StoreError::Corrupt { .. }) => snapshot.corrupt.push(e),
                Err(e) => return Err(e),
            }
        }
        Ok(snapshot)
    }
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
        source: Box<::redb::DatabaseError>,
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
        source: Box<::redb::Error>,
    },
    /// The store's schema version is not one this build reads: normally a newer gateway wrote it (0 is never
    /// written to a file). Refusing it protects data this build cannot understand from being misread or
    /// overwritten.
    #[error("the store at {location} has schema version {found}, this gateway reads versions up to {supported}")]
    UnsupportedSchema {
        /// The database file, or the PostgreSQL URL without its password.
        location: String,
        /// The version in its `meta` table.
        found: u64,
        /// The newest version this build reads ([`SCHEMA_VERSION`] or [`PG_SCHEMA_VERSION`]).
        supported: u64,
    },
    /// PostgreSQL refused a connection, a statement or a commit (the server down, a lost session, a conflict).
    #[error("PostgreSQL, {what}: {source}")]
    Postgres {
        /// What the store was doing.
        what: &'static str,
        /// What the client reported (boxed: errors are the cold path).
        #[source]
        source: Box<::postgres::Error>,
    },
    /// The commit was refused because another instance took the lease since this one got it: this instance is
    /// no longer the leader, and its writes must not land over the new leader's.
    #[error("fenced: this instance led at epoch {ours}, the lease is at epoch {current} now")]
    Fenced {
        /// The epoch this store was opened with.
        ours: i64,
        /// The lease's epoch in the database.
        current: i64,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::account::Scheme;

    fn h(n: u8) -> AvatarHash {
        AvatarHash::from_bytes([n; 20])
    }

    fn with(current: Option<(u8, u8, u8)>, storage: Option<u8>) -> StoredAccount {
        StoredAccount {
            seen: [Seen::Avatar(h(99)); 3],
            current: current.map(|(o, p, l)| Current { original: h(o), source: Scheme::Pep, png: h(p), legacy: h(l) }),
            storage: storage.map(h),
        }
    }

    #[test]
    fn references_are_storage_png_and_legacy_once_each() {
        assert_eq!(StoredAccount::default().references(), []);
        // Not the original, nor anything only seen.
        assert_eq!(with(Some((1, 2, 3)), Some(4)).references(), [h(2), h(3), h(4)]);
        // An original that is a rendition is that blob; a hash named twice is one reference.
        assert_eq!(with(Some((2, 2, 2)), Some(2)).references(), [h(2)]);
        assert_eq!(with(None, Some(5)).references(), [h(5)]);
    }

    #[test]
    fn the_delta_is_disjoint_and_ignores_what_stays() {
        let old = with(Some((1, 2, 3)), Some(4));
        let new = with(Some((5, 5, 3)), Some(4));
        assert_eq!(pin_delta(Some(&old), &new), (vec![h(2)], vec![h(5)]));
        assert_eq!(pin_delta(None, &old), (vec![], vec![h(2), h(3), h(4)]));
        assert_eq!(pin_delta(Some(&old), &old), (vec![], vec![]));
        assert_eq!(pin_delta(Some(&old), &StoredAccount::default()), (vec![h(2), h(3), h(4)], vec![]));
    }
}
