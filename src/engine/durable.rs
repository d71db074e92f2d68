//! The engine's side of the store: what it asks the shell to write and read, and what waits meanwhile.
//!
//! The engine never calls a store (issue: sans-IO core). It starts from a [`Snapshot`] of what the store held,
//! keeps every account in memory, and asks for effects through [`Engine::poll_store`]:
//!
//! - **Write-behind** for everything derived (account records, renditions, cached originals): the shell commits
//!   them in groups and nothing waits. A crash loses at most the last group, which the next presence rebuilds.
//! - **Write-through** for what only the gateway holds: an owner's `storage:client:avatar` set is answered only
//!   once a [`StoreRequest::Sync`] placed after its writes reports the commit ([`Engine::handle_stored`]), so a
//!   `result` the client saw always survives a crash.
//! - **Reads** of blobs the cache no longer holds ([`StoreRequest::LoadBlob`]): the work that needed the bytes is
//!   parked and resumed by [`Engine::handle_loaded`]. The engine knows which hashes the store may hold (the
//!   snapshot's, plus what it saved since), so a blob the store never had costs no read.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use xmpp_parsers::jid::BareJid;

use super::account::{Account, Seen};
use super::exchange::Waiter;
use super::{Engine, Event};
use crate::avatar::AvatarHash;
use crate::image::Rendition;
use crate::store::{Snapshot, StoredAccount};
use crate::wire::component::{self, Delegated};
use crate::wire::ns;
use crate::wire::stanza::{Condition, Iq};

/// Names one [`StoreRequest::Sync`], answered by [`Engine::handle_stored`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SyncId(u64);

/// What the engine asks of the store. The shell carries the requests out in order: a read or a sync sees every
/// write asked before it.
#[derive(Debug, Clone)]
pub enum StoreRequest {
    /// Replace the account's record (write-behind).
    SaveAccount {
        /// The account (bare JID).
        account: BareJid,
        /// Its new record.
        record: StoredAccount,
    },
    /// Keep validated bytes under their hash (write-behind; the store skips a hash it holds).
    SaveBlob(Rendition),
    /// Answer [`Engine::handle_stored`] once every write asked before this one is committed (or failed).
    Sync(SyncId),
    /// Read a blob back: answer [`Engine::handle_loaded`].
    LoadBlob(AvatarHash),
}

/// Whether a blob is at hand.
pub(super) enum Held {
    /// In the cache.
    Ready(Rendition),
    /// Asked of the store: the caller's work resumes when it arrives.
    Loading,
    /// Neither in the cache nor in the store.
    Missing,
}

/// Work parked until a blob comes back from the store.
#[derive(Debug, Clone)]
pub(super) enum Resume {
    /// Plan the account's writes and answer its readers again.
    Account(BareJid),
    /// Judge this candidate again (if the account still shows it).
    Candidate(Waiter),
}

/// The requests not taken by the shell yet, and what waits on their answers.
#[derive(Debug, Default)]
pub(super) struct Durable {
    requests: VecDeque<StoreRequest>,
    /// Hashes the store may hold (it may have evicted some since: a read then answers `None`).
    on_disk: HashSet<AvatarHash>,
    loading: HashMap<AvatarHash, Vec<Resume>>,
    /// Owners' storage sets answered once their sync reports the commit.
    acks: HashMap<SyncId, (Iq, Delegated)>,
    next_sync: u64,
    /// Blobs read back during the current input (the cache may be too small to keep them).
    loaded: HashMap<AvatarHash, Rendition>,
}

impl Durable {
    /// The engine's knowledge of `snapshot`'s blobs.
    pub(super) fn new(blobs: impl IntoIterator<Item = AvatarHash>) -> Self {
        Self { on_disk: blobs.into_iter().collect(), ..Self::default() }
    }

    /// A new connection: parked work was for the old one (the shell still answers its reads and syncs).
    pub(super) fn disconnected(&mut self) {
        self.loading.values_mut().for_each(Vec::clear);
        self.acks.clear();
    }

    /// The end of an input.
    pub(super) fn input_done(&mut self) {
        self.loaded.clear();
    }
}

impl Account {
    /// The record the store keeps of this account.
    pub(super) fn record(&self) -> StoredAccount {
        StoredAccount { seen: self.seen_all(), current: self.current().copied(), storage: self.storage() }
    }
}

/// The accounts of `snapshot`, restored (a stored name that is no bare JID any more is skipped and reported).
pub(super) fn restore(snapshot: Snapshot, events: &mut VecDeque<Event>) -> HashMap<BareJid, Account> {
    let mut accounts = HashMap::with_capacity(snapshot.accounts.len());
    for (name, record) in snapshot.accounts {
        match name.parse::<BareJid>() {
            Ok(jid) => {
                accounts.insert(jid, Account::restore(record.seen, record.current, record.storage));
            }
            Err(e) => events.push_back(Event::StoreFailed(format!("stored account `{name}` skipped: {e}"))),
        }
    }
    for e in snapshot.corrupt {
        events.push_back(Event::StoreFailed(format!("{e}; that account starts afresh")));
    }
    accounts
}

impl Engine {
    /// The next request for the store (then [`Engine::handle_stored`] or [`Engine::handle_loaded`] for those
    /// that want an answer).
    #[must_use]
    pub fn poll_store(&mut self) -> Option<StoreRequest> {
        self.durable.requests.pop_front()
    }

    /// Everything written before sync `id` is committed (`Ok`) or was lost (`Err`, the store's error): an owner's
    /// storage set waiting for it is answered now, `result` or `internal-server-error`.
    pub fn handle_stored(&mut self, now: Instant, id: SyncId, outcome: Result<(), String>) {
        let Some((outer, delegated)) = self.durable.acks.remove(&id) else { return };
        match outcome {
            Ok(()) => {
                let reply = delegated.inner.result(ns::CLIENT, None);
                self.outbox.push_back(component::delegated_reply(&outer, delegated.version, reply));
            }
            Err(e) => {
                self.events.push_back(Event::StoreFailed(e));
                self.reply_delegated(&outer, &delegated, Condition::InternalServerError);
            }
        }
        self.after_input(now);
    }

    /// A blob read came back, validated by the shell (`None`: the store no longer holds it, or it was unusable):
    /// whatever waited for it goes on.
    pub fn handle_loaded(&mut self, now: Instant, hash: AvatarHash, blob: Option<Rendition>) {
        match blob {
            Some(r) => {
                self.cache.insert(r.clone());
                self.durable.loaded.insert(hash, r);
            }
            None => {
                self.durable.on_disk.remove(&hash);
            }
        }
        for resume in self.durable.loading.remove(&hash).unwrap_or_default() {
            match resume {
                Resume::Account(account) => {
                    self.plan_writes(now, &account);
                    self.answer_readers_if_settled(&account);
                }
                Resume::Candidate(w) => {
                    let a = self.account(&w.account);
                    if a.seen(w.scheme) == Seen::Avatar(w.hash) && !a.current().is_some_and(|c| c.names(w.hash)) {
                        self.candidate(now, &w.account, w.scheme, w.hash, w.legacy_from.as_ref());
                    }
                }
            }
        }
        self.after_input(now);
    }

    /// The bytes of `hash`: from the cache, or asked of the store (then `resume` runs when they arrive).
    /// `resume` is made only when the work has to wait (the cache hit, on every unchanged presence, allocates
    /// nothing).
    pub(super) fn rendition(&mut self, hash: &AvatarHash, resume: impl FnOnce() -> Resume) -> Held {
        if let Some(r) = self.cache.get(hash).or_else(|| self.durable.loaded.get(hash).cloned()) {
            return Held::Ready(r);
        }
        if !self.durable.on_disk.contains(hash) {
            return Held::Missing;
        }
        // One read per hash however many wait (an entry outlives a disconnect: its read is still answered).
        let waiting = self.durable.loading.entry(*hash).or_insert_with(|| {
            self.durable.requests.push_back(StoreRequest::LoadBlob(*hash));
            Vec::new()
        });
        waiting.push(resume());
        Held::Loading
    }

    /// Whether the bytes of `hash` are held, in the cache or (as far as the engine knows) in the store.
    pub(super) fn is_held(&self, hash: &AvatarHash) -> bool {
        self.cache.contains(hash) || self.durable.on_disk.contains(hash)
    }

    /// Saves the account's record if it changed since it was last saved (write-behind).
    pub(super) fn persist(&mut self, jid: &BareJid) {
        let Some(a) = self.accounts.get_mut(jid) else { return };
        if a.take_changed() {
            let record = a.record();
            self.durable.requests.push_back(StoreRequest::SaveAccount { account: jid.clone(), record });
        }
    }

    /// Saves validated bytes (write-behind). Always asked, even for a hash the engine believes stored: the store
    /// may have evicted it since, and skips it if not.
    pub(super) fn save_blob(&mut self, r: &Rendition) {
        self.durable.on_disk.insert(r.hash());
        self.durable.requests.push_back(StoreRequest::SaveBlob(r.clone()));
    }

    /// Answers the owner's storage set once everything asked so far is committed.
    pub(super) fn acknowledge_when_stored(&mut self, outer: &Iq, delegated: &Delegated) {
        let id = SyncId(self.durable.next_sync);
        self.durable.next_sync += 1;
        self.durable.requests.push_back(StoreRequest::Sync(id));
        self.durable.acks.insert(id, (outer.clone(), delegated.clone()));
    }
}
