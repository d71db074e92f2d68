//! [`MemoryStore`]: the in-memory backend, with [`RedbStore`](super::RedbStore)'s semantics, budget and pin
//! counts included.

use std::collections::{BTreeMap, HashMap};

use super::{Store, StoreError, StoredAccount, pin_delta};
use crate::avatar::AvatarHash;

/// An in-memory [`Store`] for tests and `--store=memory`: same semantics as [`RedbStore`](super::RedbStore).
#[derive(Debug, Default)]
pub struct MemoryStore {
    budget: u64,
    accounts: BTreeMap<String, StoredAccount>,
    blobs: HashMap<AvatarHash, MemoryBlob>,
    /// Hash → how many accounts reference it; only counts above 0, held blob or not (see the module doc).
    pins: HashMap<AvatarHash, u32>,
    /// Held blobs without a pin, by insertion sequence: the eviction order, so eviction costs O(evicted).
    evictable: BTreeMap<u64, AvatarHash>,
    evictable_bytes: u64,
    next_seq: u64,
}

#[derive(Debug)]
struct MemoryBlob {
    bytes: Vec<u8>,
    seq: u64,
}

impl MemoryStore {
    /// An empty store whose unpinned blobs may total `blob_budget_bytes`.
    pub fn new(blob_budget_bytes: u64) -> Self {
        Self { budget: blob_budget_bytes, ..Self::default() }
    }

    fn pin(&mut self, hash: AvatarHash) {
        let count = self.pins.entry(hash).or_insert(0);
        *count = count.saturating_add(1);
        if *count == 1
            && let Some(blob) = self.blobs.get(&hash)
        {
            self.evictable.remove(&blob.seq);
            self.evictable_bytes = self.evictable_bytes.saturating_sub(blob.bytes.len() as u64);
        }
    }

    fn unpin(&mut self, hash: AvatarHash) {
        let Some(count) = self.pins.get_mut(&hash) else { return };
        *count = count.saturating_sub(1);
        if *count > 0 {
            return;
        }
        self.pins.remove(&hash);
        if let Some(blob) = self.blobs.get(&hash) {
            self.evictable.insert(blob.seq, hash);
            self.evictable_bytes += blob.bytes.len() as u64;
        }
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
        let previous = self.accounts.get(account);
        if previous == Some(state) {
            return Ok(());
        }
        let (released, added) = pin_delta(previous, state);
        self.accounts.insert(account.to_owned(), state.clone());
        added.into_iter().for_each(|hash| self.pin(hash));
        released.into_iter().for_each(|hash| self.unpin(hash));
        self.evict();
        Ok(())
    }

    fn load_blob(&self, hash: &AvatarHash) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.blobs.get(hash).map(|blob| blob.bytes.clone()))
    }

    fn save_blob(&mut self, hash: &AvatarHash, bytes: &[u8]) -> Result<(), StoreError> {
        if self.blobs.contains_key(hash) {
            return Ok(()); // content-addressed: the bytes are already these
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.blobs.insert(*hash, MemoryBlob { bytes: bytes.to_vec(), seq });
        if !self.pins.contains_key(hash) {
            self.evictable.insert(seq, *hash);
            self.evictable_bytes += bytes.len() as u64;
            self.evict();
        }
        Ok(())
    }

    fn pins(&self, hash: &AvatarHash) -> Result<u32, StoreError> {
        Ok(self.pins.get(hash).copied().unwrap_or(0))
    }

    fn accounts(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.accounts.keys().cloned().collect())
    }

    fn blobs(&self) -> Result<Vec<AvatarHash>, StoreError> {
        Ok(self.blobs.keys().copied().collect())
    }
}
