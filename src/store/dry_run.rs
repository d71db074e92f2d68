//! [`DryRunStore`]: a dry run sees the real state and leaves it untouched.

use std::collections::HashMap;

use super::{MemoryStore, Store, StoreError, StoredAccount};
use crate::avatar::AvatarHash;

/// A dry run's store: reads fall through to `base`, writes stay in an in-memory overlay, so a dry run sees the
/// real state and leaves it untouched.
///
/// Pins: the overlay is its own world. Its pin counts derive from the overlay's account records only, and its
/// eviction only ever drops the overlay's copies. The alternative — taking the delta of an account's first
/// overlay save against its *base* record — would decrement overlay counts that base records never incremented,
/// wrongly releasing blobs other overlay records still pin. Its own world keeps "the dry run never evicts a blob
/// the base has pinned" true, and simply: nothing writes to the base, so every blob it holds (pinned or not)
/// stays readable for the whole dry run, through the fall-through.
///
/// [`pins`](Store::pins) answers for the merged view (an account's overlay record if it has one, else its base
/// record): the base's count, minus the base records the overlay shadows, plus the overlay's count.
pub struct DryRunStore {
    base: Box<dyn Store>,
    overlay: MemoryStore,
    /// Hash → how many base records referencing it are shadowed by an overlay record.
    shadowed: HashMap<AvatarHash, u32>,
}

impl DryRunStore {
    /// Over `base`, whose contents are never changed.
    pub fn new(base: Box<dyn Store>, blob_budget_bytes: u64) -> Self {
        Self { base, overlay: MemoryStore::new(blob_budget_bytes), shadowed: HashMap::new() }
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
        if self.overlay.load_account(account)?.is_none() {
            // First overlay record: the base record (if any) stops counting in the merged view. One that does
            // not decode counts for nothing in the base either.
            let base = match self.base.load_account(account) {
                Ok(base) => base,
                Err(StoreError::Corrupt { .. }) => None,
                Err(e) => return Err(e),
            };
            for hash in base.as_ref().map(StoredAccount::references).unwrap_or_default() {
                *self.shadowed.entry(hash).or_insert(0) += 1;
            }
        }
        self.overlay.save_account(account, state)
    }

    fn load_blob(&self, hash: &AvatarHash) -> Result<Option<Vec<u8>>, StoreError> {
        match self.overlay.load_blob(hash)? {
            Some(bytes) => Ok(Some(bytes)),
            None => self.base.load_blob(hash),
        }
    }

    fn save_blob(&mut self, hash: &AvatarHash, bytes: &[u8]) -> Result<(), StoreError> {
        self.overlay.save_blob(hash, bytes)
    }

    fn pins(&self, hash: &AvatarHash) -> Result<u32, StoreError> {
        let base = self.base.pins(hash)?.saturating_sub(self.shadowed.get(hash).copied().unwrap_or(0));
        Ok(base.saturating_add(self.overlay.pins(hash)?))
    }

    fn accounts(&self) -> Result<Vec<String>, StoreError> {
        let mut all = self.base.accounts()?;
        all.extend(self.overlay.accounts()?);
        all.sort();
        all.dedup();
        Ok(all)
    }

    fn blobs(&self) -> Result<Vec<AvatarHash>, StoreError> {
        let mut all = self.base.blobs()?;
        all.extend(self.overlay.blobs()?);
        all.sort_unstable();
        all.dedup();
        Ok(all)
    }
}
