//! The presence stamp: telling each host's mod_avatar_gateway (`contrib/prosody`) the hash of every account's
//! XEP-0008 rendition, so that the server stamps it on the account's presence (`wire::legacy_stamp`). XEP-0008
//! clients learn of an avatar only from presence (§3), and a component cannot send presence for a user.
//!
//! On connecting, each host is asked (disco#info) whether the module is loaded; where it is, the hash of every
//! account in the store is sent again, at most [`RESEND_PER_SECOND`] (the module or its storage may have been
//! reset meanwhile; a hash it holds already costs it nothing). After that, an account's hash is sent as soon as
//! its avatar is adopted or removed. Where the module is missing nothing is sent, and the capability report says
//! that legacy clients will not see modern avatars there.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use xmpp_parsers::jid::BareJid;

use super::account::Seen;
use super::{Engine, Event};
use crate::avatar::AvatarHash;
use crate::wire::legacy_stamp;
use crate::wire::ns;
use crate::wire::stanza::{Iq, IqType, iq};

/// How many stored hashes are sent again per second after a connect: the module re-sends a user's presence to all
/// contacts for each one that changed, so a large store must not flood the server.
pub(super) const RESEND_PER_SECOND: u32 = 50;

/// Whether a host stamps presence, as the capability report tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StampStatus {
    /// mod_avatar_gateway answered: legacy clients see every account's avatar in presence.
    Works,
    /// It did not (why): legacy clients do not learn of avatars set with XEP-0084 or vCard.
    Missing(String),
}

impl fmt::Display for StampStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const WHAT: &str = "XEP-0084/vCard -> XEP-0008 presence hashes";
        match self {
            StampStatus::Works => write!(f, "ON  {WHAT} (mod_avatar_gateway)"),
            StampStatus::Missing(why) => write!(
                f,
                "OFF {WHAT}: legacy clients do not see modern avatars here ({why}); needs mod_avatar_gateway — \
                 Prosody: copy contrib/prosody/mod_avatar_gateway.lua into plugin_paths, add \"avatar_gateway\" to \
                 the host's modules_enabled and set avatar_gateway_component; ejabberd has no such module yet (README)"
            ),
        }
    }
}

/// What one host's module did on this connection.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Module {
    /// The disco#info question is out.
    Asking,
    /// It is loaded: hashes go to it.
    Present,
    /// It is not, or it refused an update.
    Missing(String),
}

/// One update or question out to a host.
#[derive(Debug)]
struct Out {
    host: String,
    deadline: Instant,
    /// The account an update was for (`None`: the disco#info question).
    account: Option<BareJid>,
}

/// The presence stamp's state on this connection.
#[derive(Debug, Default)]
pub(super) struct Stamps {
    hosts: BTreeMap<String, Module>,
    out: HashMap<String, Out>,
    /// Stored accounts whose hash is still to be sent again after the connect, oldest first.
    backlog: VecDeque<BareJid>,
    /// When the next of them may go.
    next_resend: Option<Instant>,
    /// What each account was last told on this connection, so a repeat is not sent.
    told: HashMap<BareJid, Option<AvatarHash>>,
    /// Whether the capability report is out; host lines that settle later follow it.
    reported: bool,
    next_id: u64,
}

impl Stamps {
    /// When [`Engine::stamps_due`] must next run.
    pub(super) fn deadline(&self) -> Option<Instant> {
        let resend = self.next_resend.filter(|_| !self.backlog.is_empty());
        self.out.values().map(|o| o.deadline).chain(resend).min()
    }
}

impl Engine {
    /// A connection opened: ask every host whether it stamps presence (held, like the version query, until the
    /// host has announced its privileges: `opening`).
    pub(super) fn stamps_connected(&mut self, now: Instant) {
        self.stamps = Stamps::default();
        if !self.config.stamp_presence || self.config.dry_run {
            return;
        }
        for host in self.config.hosts.clone() {
            let probe = self.stamp_request(now, host.as_str(), None, IqType::Get, legacy_stamp::probe());
            self.stamps.hosts.insert(host.to_string(), Module::Asking);
            self.opening.send(host.as_str(), probe, &mut self.outbox);
        }
    }

    /// The account's avatar was adopted or removed: tell its host's module the new XEP-0008 hash.
    pub(super) fn stamp(&mut self, now: Instant, account: &BareJid) {
        if self.stamps.hosts.get(account.domain().as_str()) == Some(&Module::Present) {
            self.send_stamp(now, account);
        }
    }

    /// Whether a presence's XEP-0008 `hash` is the stamp mod_avatar_gateway put there from what the gateway told it:
    /// the account's own rendition coming back, not news from a XEP-0008 client. Taken for an observation, it would
    /// make the `<x/>` of a XEP-0008 client without an avatar, on another resource, look like the removal of the
    /// current avatar (`Account::observe`).
    pub(super) fn stamped(&self, account: &BareJid, hash: AvatarHash) -> bool {
        self.config.stamp_presence
            && self.accounts.get(account).and_then(|a| a.current()).is_some_and(|c| c.legacy == hash)
    }

    /// A reply to one of the stamp's requests, if it is one (it is then consumed). It counts only from the host
    /// that was asked: ids are predictable.
    pub(super) fn stamp_reply(&mut self, now: Instant, reply: &Iq) -> bool {
        let asked = |out: &Out| reply.from.as_ref().is_some_and(|j| j.to_string() == out.host);
        if !self.stamps.out.get(&reply.id).is_some_and(asked) {
            return false;
        }
        let Some(out) = self.stamps.out.remove(&reply.id) else { return false };
        let answered = match &out.account {
            None => legacy_stamp::probe_answered(reply),
            Some(_) => legacy_stamp::update_answered(reply),
        };
        match answered {
            Ok(()) if out.account.is_none() => self.stamp_module_found(now, &out.host),
            Ok(()) => {}
            Err(e) => {
                let what = match &out.account {
                    None => e.to_string(),
                    Some(account) => format!("it refused the hash of {account}: {e}"),
                };
                self.stamp_module_missing(&out.host, what);
            }
        }
        true
    }

    /// Time passed: an unanswered question means no module; an unanswered update is forgotten, so that the same hash
    /// goes again when it is next due; one more stored hash goes out when its turn has come.
    pub(super) fn stamps_due(&mut self, now: Instant) {
        // In id order, so a run is the same every time.
        let mut late: Vec<String> =
            self.stamps.out.iter().filter(|(_, o)| o.deadline <= now).map(|(id, _)| id.clone()).collect();
        late.sort();
        let late: Vec<Out> = late.iter().filter_map(|id| self.stamps.out.remove(id)).collect();
        for out in late {
            match out.account {
                None => self.stamp_module_missing(&out.host, "it did not answer disco#info".into()),
                Some(account) => {
                    self.stamps.told.remove(&account);
                }
            }
        }
        if self.stamps.next_resend.is_some_and(|at| at <= now) {
            self.stamps.next_resend = None;
            while let Some(account) = self.stamps.backlog.pop_front() {
                if self.stamp_sent(now, &account) {
                    self.stamps.next_resend = Some(now + Duration::from_secs(1) / RESEND_PER_SECOND);
                    break;
                }
            }
        }
    }

    /// The capability report went out: each host's stamp line follows (now, or once its module has answered).
    pub(super) fn stamps_reported(&mut self) {
        self.stamps.reported = true;
        let settled: Vec<(String, StampStatus)> = self
            .stamps
            .hosts
            .iter()
            .filter_map(|(host, m)| match m {
                Module::Asking => None,
                Module::Present => Some((host.clone(), StampStatus::Works)),
                Module::Missing(why) => Some((host.clone(), StampStatus::Missing(why.clone()))),
            })
            .collect();
        for (host, status) in settled {
            self.events.push_back(Event::PresenceStamp { host, status });
        }
    }

    fn stamp_module_found(&mut self, now: Instant, host: &str) {
        self.stamps.hosts.insert(host.to_owned(), Module::Present);
        if self.stamps.reported {
            self.events.push_back(Event::PresenceStamp { host: host.to_owned(), status: StampStatus::Works });
        }
        // Every account is in memory (restored from the store at start): resent in a stable order.
        let queued: HashSet<&BareJid> = self.stamps.backlog.iter().collect();
        let mut fresh: Vec<BareJid> =
            (self.accounts.keys()).filter(|a| a.domain().as_str() == host && !queued.contains(a)).cloned().collect();
        fresh.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        self.stamps.backlog.extend(fresh);
        self.stamps.next_resend.get_or_insert(now);
    }

    fn stamp_module_missing(&mut self, host: &str, why: String) {
        // Told once per connection: a refused update after a good answer changes the line, further ones do not.
        if matches!(self.stamps.hosts.get(host), Some(Module::Missing(_))) {
            return;
        }
        self.stamps.hosts.insert(host.to_owned(), Module::Missing(why.clone()));
        if self.stamps.reported {
            self.events.push_back(Event::PresenceStamp { host: host.to_owned(), status: StampStatus::Missing(why) });
        }
    }

    /// Sends the account's hash unless its module is gone or was told it already; whether it was sent.
    fn stamp_sent(&mut self, now: Instant, account: &BareJid) -> bool {
        let present = self.stamps.hosts.get(account.domain().as_str()) == Some(&Module::Present);
        present && self.send_stamp(now, account)
    }

    fn send_stamp(&mut self, now: Instant, account: &BareJid) -> bool {
        let Some(hash) = self.legacy_hash(account) else { return false };
        if self.stamps.told.get(account) == Some(&hash) {
            return false;
        }
        self.stamps.told.insert(account.clone(), hash);
        let update = legacy_stamp::update(account, hash);
        let stanza = self.stamp_request(now, account.domain().as_str(), Some(account), IqType::Set, update);
        self.outbox.push_back(stanza);
        true
    }

    /// What the module should stamp for `account`: its XEP-0008 rendition's hash, `Some(None)` once an owner
    /// deliberately has no avatar, `None` while the gateway knows nothing either way.
    fn legacy_hash(&self, account: &BareJid) -> Option<Option<AvatarHash>> {
        let a = self.accounts.get(account)?;
        let (current, seen) = (a.current().copied(), a.seen_all());
        match current {
            Some(c) => Some(Some(c.legacy)),
            None if seen.contains(&Seen::NoAvatar) => Some(None),
            None => None,
        }
    }

    fn stamp_request(
        &mut self,
        now: Instant,
        host: &str,
        account: Option<&BareJid>,
        kind: IqType,
        payload: xmpp_parsers::minidom::Element,
    ) -> xmpp_parsers::minidom::Element {
        // Ids of their own, so the gateway's other request ids (`gw<n>`) are the same with or without the stamp.
        self.stamps.next_id += 1;
        let id = format!("stamp{}", self.stamps.next_id);
        let deadline = now + self.config.iq_timeout;
        let out = Out { host: host.to_owned(), deadline, account: account.cloned() };
        self.stamps.out.insert(id.clone(), out);
        iq(ns::COMPONENT, kind, &id, Some(&self.config.component), Some(host), Some(payload))
    }
}
