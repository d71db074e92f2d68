//! The requests the engine has asked and not seen answered, indexed so that the questions it asks about them on
//! every stanza ("is this account's vCard being read?", "is this hash being fetched?", "what times out next?") cost
//! the same however many are outstanding. A gateway (re)connecting beside a busy server gets every online user's
//! presence at once: a scan of all exchanges per stanza made such a burst quadratic.
//!
//! Pacing: at most `limit` requests are in flight; the others wait here, already remembered (so nothing asks them
//! twice), and go out as answers come in. A request's timeout runs from when it is sent, so a burst of 20,000
//! accounts is worked through at the server's pace instead of timing out in the server's queue. And while the
//! images already fetched wait for a worker beyond their budget, nothing more is asked: memory stays bounded
//! however slow the transcodes are.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use xmpp_parsers::jid::BareJid;
use xmpp_parsers::minidom::Element;

use super::exchange::{Exchange, Pending};
use crate::avatar::AvatarHash;

/// Outstanding exchanges by id, by account and by fetched hash, and their deadlines in the order they were sent.
#[derive(Debug)]
pub(super) struct Outstanding {
    by_id: HashMap<String, Pending>,
    by_account: HashMap<BareJid, Vec<String>>,
    fetching: HashMap<AvatarHash, usize>,
    /// Ids in sending order. Every exchange waits the same `timeout` from a `now` that never goes back, so this is
    /// also deadline order; ids already answered are dropped from the front as they are met.
    order: VecDeque<(Instant, String)>,
    /// Requests remembered but not sent yet, oldest first.
    queued: VecDeque<(String, Element)>,
    in_flight: usize,
    limit: usize,
    timeout: Duration,
    /// Nothing is sent while set (the image backlog is over its budget): see [`Outstanding::pause`].
    paused: bool,
}

impl Outstanding {
    /// At most `limit` requests in flight (at least one), each waiting `timeout` for its answer once sent.
    pub(super) fn new(limit: usize, timeout: Duration) -> Self {
        Self {
            by_id: HashMap::new(),
            by_account: HashMap::new(),
            fetching: HashMap::new(),
            order: VecDeque::new(),
            queued: VecDeque::new(),
            in_flight: 0,
            limit: limit.max(1),
            timeout,
            paused: false,
        }
    }

    /// Holds every new request back while `paused` (they queue as beyond the limit), so that answers carrying
    /// images do not pile up faster than the workers turn them into renditions.
    pub(super) fn pause(&mut self, paused: bool) {
        self.paused = paused;
    }

    /// Remembers `pending` under `id`: its `stanza` is returned to be sent now if fewer than the limit are in
    /// flight, else it is queued ([`Outstanding::release`]). `None`: nothing to send (a dry-run set), in flight at
    /// once all the same.
    pub(super) fn ask(
        &mut self,
        now: Instant,
        id: String,
        pending: Pending,
        stanza: Option<Element>,
    ) -> Option<Element> {
        self.index(&id, &pending);
        let queue = stanza.is_some() && (self.in_flight >= self.limit || self.paused);
        if let Some(old) = self.by_id.insert(id.clone(), pending) {
            self.unindex(&old);
        }
        match stanza {
            Some(stanza) if queue => {
                self.queued.push_back((id, stanza));
                None
            }
            stanza => {
                self.sent(now, &id);
                stanza
            }
        }
    }

    /// The queued requests that may go out now, their timeouts starting now.
    pub(super) fn release(&mut self, now: Instant) -> Vec<Element> {
        let mut out = Vec::new();
        while self.in_flight < self.limit && !self.paused {
            let Some((id, stanza)) = self.queued.pop_front() else { break };
            if self.by_id.get(&id).is_some_and(|p| !p.sent) {
                self.sent(now, &id);
                out.push(stanza);
            }
        }
        out
    }

    fn sent(&mut self, now: Instant, id: &str) {
        let Some(pending) = self.by_id.get_mut(id) else { return };
        pending.sent = true;
        self.in_flight += 1;
        self.order.push_back((now + self.timeout, id.to_owned()));
    }

    fn index(&mut self, id: &str, pending: &Pending) {
        self.by_account.entry(pending.exchange.account().clone()).or_default().push(id.to_owned());
        if let Some(hash) = pending.exchange.fetched_hash() {
            *self.fetching.entry(hash).or_default() += 1;
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
        if pending.sent {
            self.in_flight -= 1;
        }
        self.drop_answered_front();
        Some(pending)
    }

    /// Everything, sent ones in sending order, then the queued ones (the link went away).
    pub(super) fn take_all(&mut self) -> Vec<Pending> {
        let mut by_id = std::mem::take(&mut self.by_id);
        let sent = self.order.drain(..).map(|(_, id)| id);
        let queued = self.queued.drain(..).map(|(id, _)| id);
        let all = sent.chain(queued).filter_map(|id| by_id.remove(&id)).collect();
        *self = Self::new(self.limit, self.timeout);
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
