//! The requests the engine has sent and not seen answered, indexed so that the questions it asks about them on
//! every stanza ("is this account's vCard being read?", "is this hash being fetched?", "what times out next?") cost
//! the same however many are outstanding. A gateway (re)connecting beside a busy server gets every online user's
//! presence at once: a scan of all exchanges per stanza made such a burst quadratic.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use xmpp_parsers::jid::BareJid;

use super::exchange::{Exchange, Pending};
use crate::avatar::AvatarHash;

/// Outstanding exchanges by id, by account and by fetched hash, and their deadlines in the order they were sent.
#[derive(Debug, Default)]
pub(super) struct Outstanding {
    by_id: HashMap<String, Pending>,
    by_account: HashMap<BareJid, Vec<String>>,
    fetching: HashMap<AvatarHash, usize>,
    /// Ids in sending order. Every exchange waits the same `iq_timeout` from a `now` that never goes back, so this
    /// is also deadline order; ids already answered are dropped from the front as they are met.
    order: VecDeque<(Instant, String)>,
}

impl Outstanding {
    pub(super) fn insert(&mut self, id: String, pending: Pending) {
        self.by_account.entry(pending.exchange.account().clone()).or_default().push(id.clone());
        if let Some(hash) = pending.exchange.fetched_hash() {
            *self.fetching.entry(hash).or_default() += 1;
        }
        self.order.push_back((pending.deadline, id.clone()));
        if let Some(old) = self.by_id.insert(id, pending) {
            self.unindex(&old);
        }
    }

    pub(super) fn get(&self, id: &str) -> Option<&Pending> {
        self.by_id.get(id)
    }

    pub(super) fn remove(&mut self, id: &str) -> Option<Pending> {
        let pending = self.by_id.remove(id)?;
        if let Some(ids) = self.by_account.get_mut(pending.exchange.account()) {
            ids.retain(|i| i != id);
            if ids.is_empty() {
                self.by_account.remove(pending.exchange.account());
            }
        }
        self.unindex(&pending);
        self.drop_answered_front();
        Some(pending)
    }

    /// Everything, in sending order (the link went away).
    pub(super) fn take_all(&mut self) -> Vec<Pending> {
        let mut by_id = std::mem::take(&mut self.by_id);
        let all = self.order.drain(..).filter_map(|(_, id)| by_id.remove(&id)).collect();
        *self = Self::default();
        all
    }

    /// Whether one of `account`'s exchanges matches.
    pub(super) fn any_for(&self, account: &BareJid, matches: impl Fn(&Exchange) -> bool) -> bool {
        let ids = self.by_account.get(account).into_iter().flatten();
        ids.filter_map(|id| self.by_id.get(id)).any(|p| matches(&p.exchange))
    }

    /// Whether the bytes of `hash` are being fetched (by any account).
    pub(super) fn fetching(&self, hash: &AvatarHash) -> bool {
        self.fetching.contains_key(hash)
    }

    /// The ids whose deadline is reached, in sending order (the exchanges stay until removed).
    pub(super) fn expired(&self, now: Instant) -> Vec<String> {
        let due = self.order.iter().take_while(|(deadline, _)| *deadline <= now);
        due.filter(|(_, id)| self.by_id.contains_key(id)).map(|(_, id)| id.clone()).collect()
    }

    /// The earliest deadline of an outstanding exchange.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.order.front().map(|(deadline, _)| *deadline)
    }

    fn unindex(&mut self, pending: &Pending) {
        if let Some(hash) = pending.exchange.fetched_hash()
            && let Some(count) = self.fetching.get_mut(&hash)
        {
            *count -= 1;
            if *count == 0 {
                self.fetching.remove(&hash);
            }
        }
    }

    fn drop_answered_front(&mut self) {
        while self.order.front().is_some_and(|(_, id)| !self.by_id.contains_key(id)) {
            self.order.pop_front();
        }
    }
}
