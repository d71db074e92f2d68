//! The pin and eviction bookkeeping of the on-disk backends, written once: [`Ledger`] runs the rules of the
//! module doc (pins derived from records, unpinned blobs evicted oldest first) over the primitive table operations
//! each backend provides ([`Tables`]), inside that backend's one write transaction. redb and PostgreSQL differ in
//! how a row is read or written, never in what a save does, so the rules cannot drift apart between them.

use super::{StoreOp, StoredAccount, pin_delta};
use crate::avatar::AvatarHash;

/// One write transaction's view of a backend's tables: plain reads and writes, no rule of their own.
pub(crate) trait Tables {
    /// The backend's error.
    type Error;
    /// The stored encoding of `account`'s record.
    fn account(&mut self, account: &str) -> Result<Option<Vec<u8>>, Self::Error>;
    /// Replaces `account`'s encoded record.
    fn put_account(&mut self, account: &str, encoded: &[u8]) -> Result<(), Self::Error>;
    /// `(byte length, insertion sequence)` of a held blob.
    fn blob_meta(&mut self, hash: &AvatarHash) -> Result<Option<(u64, u64)>, Self::Error>;
    /// Stores a new blob with its insertion sequence.
    fn put_blob(&mut self, hash: &AvatarHash, bytes: &[u8], seq: u64) -> Result<(), Self::Error>;
    /// Drops a held blob (bytes and meta).
    fn remove_blob(&mut self, hash: &AvatarHash) -> Result<(), Self::Error>;
    /// How many records reference `hash` (0 when it has no entry).
    fn pin_count(&mut self, hash: &AvatarHash) -> Result<u32, Self::Error>;
    /// Sets the count; 0 removes the entry (counts of 0 are never stored).
    fn set_pin_count(&mut self, hash: &AvatarHash, count: u32) -> Result<(), Self::Error>;
    /// Puts a held blob in the eviction order at `seq`.
    fn add_evictable(&mut self, seq: u64, hash: &AvatarHash) -> Result<(), Self::Error>;
    /// Takes the blob at `seq` out of the eviction order.
    fn remove_evictable(&mut self, seq: u64) -> Result<(), Self::Error>;
    /// Whether the eviction order holds more than one blob (the newest is never evicted).
    fn several_evictable(&mut self) -> Result<bool, Self::Error>;
    /// Removes and returns the oldest blob of the eviction order.
    fn pop_oldest_evictable(&mut self) -> Result<Option<AvatarHash>, Self::Error>;
}

/// The bookkeeping of one write transaction: the tables, and the two counters the backend loads before and stores
/// after (when [`Ledger::apply`] reports a change).
pub(crate) struct Ledger<T> {
    /// The backend's tables in this transaction.
    pub tables: T,
    /// The next blob's insertion sequence.
    pub next_seq: u64,
    /// Bytes of the held, unpinned blobs.
    pub evictable_bytes: u64,
    /// What unpinned blobs may total.
    pub budget: u64,
}

impl<T: Tables> Ledger<T> {
    /// Applies `ops` in order; whether any changed anything (a group that did not is not committed).
    pub fn apply(&mut self, ops: &[StoreOp<'_>]) -> Result<bool, T::Error> {
        let mut changed = false;
        for op in ops {
            changed |= match *op {
                StoreOp::Account(account, state) => self.save_account(account, state)?,
                StoreOp::Blob(hash, bytes) => self.save_blob(&hash, bytes)?,
            };
        }
        Ok(changed)
    }

    /// [`Store::save_account`](super::Store::save_account) inside this transaction; whether it changed anything.
    fn save_account(&mut self, account: &str, state: &StoredAccount) -> Result<bool, T::Error> {
        let encoded = state.encode();
        let previous = self.tables.account(account)?;
        if previous.as_deref() == Some(encoded.as_slice()) {
            return Ok(false); // the encoding is canonical: same bytes, same record
        }
        let previous = previous.and_then(|bytes| StoredAccount::decode(&bytes).ok());
        let (released, added) = pin_delta(previous.as_ref(), state);
        self.tables.put_account(account, &encoded)?;
        for hash in &added {
            self.pin(hash)?;
        }
        for hash in &released {
            self.unpin(hash)?;
        }
        self.evict()?;
        Ok(true)
    }

    /// [`Store::save_blob`](super::Store::save_blob) inside this transaction; whether it changed anything.
    fn save_blob(&mut self, hash: &AvatarHash, bytes: &[u8]) -> Result<bool, T::Error> {
        if self.tables.blob_meta(hash)?.is_some() {
            return Ok(false); // content-addressed: the bytes are already these
        }
        let (len, seq) = (bytes.len() as u64, self.next_seq);
        self.next_seq += 1;
        self.tables.put_blob(hash, bytes, seq)?;
        if self.tables.pin_count(hash)? == 0 {
            self.tables.add_evictable(seq, hash)?;
            self.evictable_bytes += len;
            self.evict()?;
        }
        Ok(true)
    }

    /// One more account references `hash`: a held blob gaining its first pin leaves the eviction order.
    fn pin(&mut self, hash: &AvatarHash) -> Result<(), T::Error> {
        let count = self.tables.pin_count(hash)?;
        self.tables.set_pin_count(hash, count.saturating_add(1))?;
        if count == 0
            && let Some((len, seq)) = self.tables.blob_meta(hash)?
        {
            self.tables.remove_evictable(seq)?;
            self.evictable_bytes = self.evictable_bytes.saturating_sub(len);
        }
        Ok(())
    }

    /// One account fewer references `hash`: a held blob losing its last pin rejoins the eviction order where it
    /// was inserted.
    fn unpin(&mut self, hash: &AvatarHash) -> Result<(), T::Error> {
        match self.tables.pin_count(hash)? {
            0 => {}
            1 => {
                self.tables.set_pin_count(hash, 0)?;
                if let Some((len, seq)) = self.tables.blob_meta(hash)? {
                    self.tables.add_evictable(seq, hash)?;
                    self.evictable_bytes += len;
                }
            }
            count => self.tables.set_pin_count(hash, count - 1)?,
        }
        Ok(())
    }

    /// Evicts oldest-first until within budget, never the newest evictable blob (same rule as
    /// [`MemoryStore`](super::MemoryStore)).
    fn evict(&mut self) -> Result<(), T::Error> {
        while self.evictable_bytes > self.budget && self.tables.several_evictable()? {
            let Some(hash) = self.tables.pop_oldest_evictable()? else { break };
            if let Some((len, _)) = self.tables.blob_meta(&hash)? {
                self.evictable_bytes = self.evictable_bytes.saturating_sub(len);
            }
            self.tables.remove_blob(&hash)?;
        }
        Ok(())
    }
}
