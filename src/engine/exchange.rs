//! One state per outstanding request, and what its reply (or its absence) means.
//!
//! Every reply is matched to the exchange that asked for it by id; the handler checks that the reply has the
//! shape that exchange expects, so a forged or stray reply cannot change an account.

use std::time::Instant;

use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::minidom::Element;

use super::account::{Scheme, Seen};
use super::{Engine, Event};
use crate::avatar::AvatarHash;
use crate::image::PngRendition;
use crate::wire::component::{self, DelegationVersion, PrivilegedReply};
use crate::wire::stanza::{Condition, Iq, IqType};
use crate::wire::{ns, vcard, xep0008, xep0084};

/// What an outstanding request was for.
#[derive(Debug, Clone)]
pub(super) enum Exchange {
    /// disco#info on the account: does the server convert vCard ↔ PEP itself?
    Converts { account: BareJid },
    /// Privileged items get of the metadata node: what PEP holds.
    PepPoll { account: BareJid },
    /// Privileged items get of one data item.
    PepData { account: BareJid, hash: AvatarHash },
    /// vCard get: what the vCard holds. `public`: a plain (unprivileged) read, which shows only what anyone may see,
    /// so its "no PHOTO" is no proof of absence (mod_vcard_legacy builds it with the asker's PEP access).
    VcardRead { account: BareJid, public: bool },
    /// `jabber:iq:avatar` get to the XEP-0008 owner's client.
    IqAvatar { account: BareJid, hash: AvatarHash },
    /// Privileged vCard get before replacing its PHOTO (vCards are replaced whole).
    VcardWrite { account: BareJid, png: Option<PngRendition> },
    /// Privileged vCard set.
    VcardSet { account: BareJid, hash: Option<AvatarHash> },
    /// Privileged publish to the data node; the metadata follows on success (XEP-0084: data first).
    PublishData { account: BareJid, png: PngRendition },
    /// Privileged publish to the metadata node.
    PublishMetadata { account: BareJid, hash: Option<AvatarHash> },
    /// Privileged read of the account's metadata node as a XEP-0008 reader (`reader`: the delegated IQ's id), so
    /// the server decides whether that reader may see the avatar.
    ReaderAccess { account: BareJid, reader: String },
    /// XEP-0092 software version of a served host, asked once per connection for the operator's log.
    ServerVersion { host: BareJid },
}

impl Exchange {
    /// The hash whose bytes this exchange fetches, if it is a fetch.
    pub(super) fn fetched_hash(&self) -> Option<AvatarHash> {
        match self {
            Exchange::PepData { hash, .. } | Exchange::IqAvatar { hash, .. } => Some(*hash),
            _ => None,
        }
    }
}

/// An account whose fetch of `hash` waits: on another account's fetch of the same hash, or on its own fetch of
/// an older hash.
#[derive(Debug, Clone)]
pub(super) struct Waiter {
    pub(super) account: BareJid,
    pub(super) scheme: Scheme,
    pub(super) hash: AvatarHash,
    /// The XEP-0008 client to ask, when it comes to that.
    pub(super) legacy_from: Option<Jid>,
}

/// An outstanding request.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) exchange: Exchange,
    /// The address asked (normalised): only a reply from it answers this exchange (ids are guessable).
    pub(super) asked: String,
    /// The privilege it was sent under (`None`: a plain request).
    pub(super) privilege: Option<(&'static str, IqType)>,
    /// Sent (not queued behind the limit of requests in flight).
    pub(super) sent: bool,
}

/// A XEP-0008 reader's delegated get, waiting for the account's avatar to be known.
#[derive(Debug)]
pub(super) struct Reader {
    pub(super) outer: Iq,
    pub(super) version: DelegationVersion,
    pub(super) inner: Iq,
    pub(super) store: xep0008::Store,
    pub(super) deadline: Instant,
    pub(super) access: Access,
}

/// Whether a reader may have the avatar it asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Access {
    /// Yes: answer it once the avatar is known.
    Allowed,
    /// Yes, as anyone may: the gateway can read nothing private of the account (no PEP privilege).
    Public,
    /// The server is being asked.
    Asking,
    /// No: answer it with this error.
    Denied(Condition),
}

impl Engine {
    pub(super) fn exchange_reply(&mut self, now: Instant, pending: Pending, reply: &Iq, element: &Element) {
        let Pending { exchange, privilege, .. } = pending;
        let mut answer = component::privileged_reply(reply, element);
        if let (PrivilegedReply::Refused(condition), Some((namespace, kind))) = (&answer, privilege) {
            // The server would not carry a privileged IQ out (a grant withdrawn or never honoured): stop asking
            // it for this right until the next connection, and say so once.
            if let Some(refusal @ ("forbidden" | "not-allowed" | "service-unavailable")) = condition.as_deref() {
                let reason = format!("it answered {refusal}");
                self.refuse_right(now, exchange.account(), namespace, kind, &reason);
            }
            answer = PrivilegedReply::Error(condition.clone());
        }
        if let Exchange::Converts { account } = &exchange {
            // Privileged (the account asking itself) or plain: `privileged_reply` unwraps either.
            let features = match answer {
                PrivilegedReply::Result(payload) => payload,
                _ => return self.exchange_failed(now, exchange, "disco#info refused"),
            };
            let converts = features.is_some_and(|q| {
                q.children().any(|f| f.name() == "feature" && f.attr("var") == Some(ns::PEP_VCARD_CONVERSION))
            });
            self.account(account).server_converts = Some(converts);
            let account = account.clone();
            return self.plan_writes(now, &account);
        }
        if let Exchange::ServerVersion { host } = &exchange {
            let software = answer_version(&answer);
            return self.events.push_back(Event::Server { host: host.to_string(), software });
        }
        if let Exchange::IqAvatar { account, hash } = exchange {
            let data = reply.payload.as_ref().filter(|_| reply.kind == IqType::Result).map(xep0008::Query::parse);
            return match data {
                Some(Ok(xep0008::Query { data: Some(d), .. })) => {
                    self.accept_bytes(now, &account, Scheme::Legacy, Some(hash), d.bytes)
                }
                Some(Err(e)) => self.fail_fetch(now, &account, Scheme::Legacy, hash, e.to_string()),
                _ => self.fail_fetch(now, &account, Scheme::Legacy, hash, describe(reply)),
            };
        }
        if let Exchange::ReaderAccess { account, reader } = &exchange {
            let refusal = match answer {
                PrivilegedReply::Result(_) => None,
                PrivilegedReply::Error(condition) | PrivilegedReply::Refused(condition) => Some(condition),
            };
            return self.reader_answered(account, reader, refusal.as_ref().map(Option::as_deref));
        }
        match answer {
            PrivilegedReply::Result(payload) => self.privileged_result(now, exchange, payload),
            PrivilegedReply::Error(condition) | PrivilegedReply::Refused(condition) => {
                let condition = condition.unwrap_or_else(|| "unknown error".into());
                self.privileged_error(now, exchange, &condition)
            }
        }
    }

    pub(super) fn privileged_result(&mut self, now: Instant, exchange: Exchange, payload: Option<Element>) {
        match exchange {
            Exchange::PepPoll { account } => {
                let state = match payload.as_ref().map(xep0084::parse_items) {
                    Some(Ok(Some((_, items)))) => items.into_iter().next_back().map(|i| i.payload),
                    Some(Err(e)) => return self.refuse(&account, Scheme::Pep, e.to_string()),
                    _ => None,
                };
                match state {
                    None | Some(Ok(xep0084::Payload::Metadata(xep0084::Metadata::NoAvatar))) => {
                        self.observe(now, &account, Scheme::Pep, Seen::NoAvatar, None)
                    }
                    Some(Ok(xep0084::Payload::Metadata(m))) => match m.inline_info() {
                        Some(info) => self.observe(now, &account, Scheme::Pep, Seen::Avatar(info.id), None),
                        None => {
                            self.refuse(&account, Scheme::Pep, "metadata lists only url infos (no HTTP fetch)".into())
                        }
                    },
                    Some(Ok(_)) => self.refuse(&account, Scheme::Pep, "metadata item without metadata".into()),
                    Some(Err(e)) => self.refuse(&account, Scheme::Pep, e.to_string()),
                }
            }
            Exchange::PepData { account, hash } => {
                let item =
                    payload.as_ref().map(xep0084::parse_items).and_then(Result::ok).flatten().and_then(|(_, items)| {
                        items
                            .into_iter()
                            .find(|i| i.id.as_deref().and_then(|id| AvatarHash::parse(id).ok()) == Some(hash))
                    });
                match item.map(|i| i.payload) {
                    Some(Ok(xep0084::Payload::Data(bytes))) => {
                        self.accept_bytes(now, &account, Scheme::Pep, Some(hash), bytes)
                    }
                    Some(Err(e)) => self.fail_fetch(now, &account, Scheme::Pep, hash, e.to_string()),
                    _ => self.fail_fetch(now, &account, Scheme::Pep, hash, "data item missing".into()),
                }
            }
            Exchange::VcardRead { account, public } => {
                let parsed = payload.map(vcard::VCard::parse);
                if let (Some(Ok(v)), false) = (&parsed, public) {
                    self.recent_vcards.put(account.clone(), (v.clone(), now));
                }
                match parsed.map(|v| v.and_then(|v| v.photo())) {
                    Some(Ok(vcard::Photo::Binval { bytes, .. })) => {
                        let hash = AvatarHash::of(&bytes);
                        self.observe_with_bytes(now, &account, Scheme::Vcard, hash, bytes);
                    }
                    Some(Ok(vcard::Photo::Extval(url))) => {
                        self.refuse(&account, Scheme::Vcard, format!("PHOTO is an EXTVAL ({url}); no HTTP fetch"))
                    }
                    Some(Ok(vcard::Photo::None)) | None if !public => {
                        self.observe(now, &account, Scheme::Vcard, Seen::NoAvatar, None)
                    }
                    Some(Ok(vcard::Photo::None)) | None => self.answer_readers_if_settled(&account),
                    Some(Err(e)) => self.refuse(&account, Scheme::Vcard, e.to_string()),
                }
            }
            Exchange::VcardWrite { account, png } => {
                let existing = match payload.map(vcard::VCard::parse) {
                    Some(Ok(v)) => v,
                    None => vcard::VCard::empty(),
                    Some(Err(e)) => return self.refuse(&account, Scheme::Vcard, e.to_string()),
                };
                self.write_vcard(now, &account, existing, png);
            }
            Exchange::VcardSet { account, hash } => self.wrote(now, &account, Scheme::Vcard, hash),
            Exchange::PublishData { account, png } => self.publish_metadata(now, &account, png),
            Exchange::PublishMetadata { account, hash } => self.wrote(now, &account, Scheme::Pep, hash),
            Exchange::Converts { .. }
            | Exchange::IqAvatar { .. }
            | Exchange::ReaderAccess { .. }
            | Exchange::ServerVersion { .. } => {}
        }
    }

    fn privileged_error(&mut self, now: Instant, exchange: Exchange, condition: &str) {
        match exchange {
            // No node or no vCard yet: the account simply has no avatar there.
            Exchange::PepPoll { account } if condition == "item-not-found" => {
                self.observe(now, &account, Scheme::Pep, Seen::NoAvatar, None)
            }
            Exchange::VcardRead { account, public: false } if condition == "item-not-found" => {
                self.recent_vcards.put(account.clone(), (vcard::VCard::empty(), now));
                self.observe(now, &account, Scheme::Vcard, Seen::NoAvatar, None)
            }
            Exchange::VcardWrite { account, png } if condition == "item-not-found" => {
                self.write_vcard(now, &account, vcard::VCard::empty(), png)
            }
            other => self.exchange_failed(now, other, condition),
        }
    }

    /// A request failed or timed out: nothing changes, the reason is told.
    pub(super) fn exchange_failed(&mut self, now: Instant, exchange: Exchange, reason: &str) {
        let (account, scheme) = match &exchange {
            // Unanswered: the reader is refused (fail closed), told to try again later.
            Exchange::ReaderAccess { account, reader } => {
                return self.reader_answered(account, reader, Some(Some("internal-server-error")));
            }
            Exchange::ServerVersion { host } => {
                let software = format!("unknown (no answer to a {} query: {reason})", ns::VERSION);
                return self.events.push_back(Event::Server { host: host.to_string(), software });
            }
            Exchange::Converts { account } => {
                // A server that will not say is treated as not converting: the gateway's writes are idempotent,
                // and the step limit in the tests proves they do not ping-pong with a converting server.
                self.account(account).server_converts = Some(false);
                let account = account.clone();
                return self.plan_writes(now, &account);
            }
            Exchange::PepData { account, hash } | Exchange::IqAvatar { account, hash } => {
                let scheme = if matches!(exchange, Exchange::PepData { .. }) { Scheme::Pep } else { Scheme::Legacy };
                let (account, hash) = (account.clone(), *hash);
                return self.fail_fetch(now, &account, scheme, hash, reason.to_owned());
            }
            Exchange::PepPoll { account }
            | Exchange::PublishData { account, .. }
            | Exchange::PublishMetadata { account, .. } => (account.clone(), Scheme::Pep),
            Exchange::VcardRead { account, .. }
            | Exchange::VcardWrite { account, .. }
            | Exchange::VcardSet { account, .. } => (account.clone(), Scheme::Vcard),
        };
        self.refuse(&account, scheme, format!("{} failed: {reason}", exchange.describe()));
        self.answer_readers_if_settled(&account);
    }

    /// A fetch failed: remember it (negative cache) so a broken client is not asked again and again.
    fn fail_fetch(&mut self, now: Instant, account: &BareJid, scheme: Scheme, hash: AvatarHash, reason: String) {
        self.cache.mark_failed(account, hash, reason.clone(), now);
        self.reject_hash(account, scheme, hash, format!("fetching {hash} failed: {reason}"));
        self.release_waiters(now, hash, Err(reason));
        self.fetch_done(now, account);
        self.answer_readers_if_settled(account);
    }

    fn wrote(&mut self, now: Instant, account: &BareJid, scheme: Scheme, hash: Option<AvatarHash>) {
        let state = hash.map_or(Seen::NoAvatar, Seen::Avatar);
        self.account(account).wrote(scheme, state);
        self.persist(account);
        self.sweep_wrote(account, scheme, hash);
        self.events.push_back(Event::Wrote { account: account.to_string(), scheme, hash });
        // The wish may have changed while this write was in flight.
        self.plan_writes(now, account);
    }
}

impl Exchange {
    fn describe(&self) -> &'static str {
        match self {
            Exchange::Converts { .. } => "conversion discovery",
            Exchange::PepPoll { .. } => "reading the metadata node",
            Exchange::PepData { .. } => "reading the data node",
            Exchange::VcardRead { .. } => "reading the vCard",
            Exchange::IqAvatar { .. } => "jabber:iq:avatar fetch",
            Exchange::VcardWrite { .. } => "reading the vCard before writing it",
            Exchange::VcardSet { .. } => "writing the vCard",
            Exchange::PublishData { .. } => "publishing the data node",
            Exchange::PublishMetadata { .. } => "publishing the metadata node",
            Exchange::ReaderAccess { .. } => "reading the metadata node as a reader",
            Exchange::ServerVersion { .. } => "asking the server's version",
        }
    }
}

/// "Prosody 0.12.3" from a XEP-0092 answer, or why there is none.
fn answer_version(answer: &PrivilegedReply) -> String {
    let PrivilegedReply::Result(Some(query)) = answer else {
        return format!("unknown (it does not answer {})", ns::VERSION);
    };
    let field = |name: &str| query.get_child(name, ns::VERSION).map(|e| e.text().trim().to_owned());
    match (field("name"), field("version")) {
        (Some(name), Some(version)) => format!("{name} {version}"),
        (Some(name), None) => name,
        _ => format!("unknown (an empty {} answer)", ns::VERSION),
    }
}

fn describe(reply: &Iq) -> String {
    match (&reply.kind, &reply.error) {
        (IqType::Error, Some(condition)) => condition.clone(),
        (IqType::Error, None) => "error".into(),
        _ => "result without avatar data".into(),
    }
}
