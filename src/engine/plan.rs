//! From an adopted avatar to the writes each scheme needs, and the answers XEP-0008 readers get.
//!
//! Rules kept here (DESIGN.md §4): never rewrite the scheme an avatar came from; write nothing a target already
//! holds; leave vCard ↔ PEP to a server that converts by itself; publish data before metadata; a vCard is read,
//! modified and written whole.

use std::time::Instant;

use xmpp_parsers::jid::BareJid;

use super::account::{Current, Scheme, Seen};
use super::durable::{Held, Resume};
use super::exchange::{Access, Exchange, Reader};
use super::transcode::Purpose;
use super::{Engine, Event};
use crate::avatar::AvatarHash;
use crate::image::{PngRendition, Rendition, Transcoded};
use crate::wire::component::{self, Delegated};
use crate::wire::stanza::{Condition, Iq, IqType};
use crate::wire::{ns, vcard, xep0008, xep0084};

/// How long a vCard read stands for the vCard as it is when a write follows it: long enough for the fetch and the
/// transcode between the read and the write of one conversion, short enough that a change the owner made
/// meanwhile (to another field) is not overwritten by a stale copy.
pub(super) const RECENT_VCARD: std::time::Duration = std::time::Duration::from_secs(5);

/// vCards kept for that (the least recently read is dropped first: a burst then reads again, which is correct).
pub(super) const RECENT_VCARDS: usize = 256;

/// What the gateway last knew of an account's vCard as a whole.
#[derive(Debug)]
pub(super) enum RecentVcard {
    /// Read at that moment.
    Read(vcard::VCard, Instant),
    /// Written (or found to hold the wish) by the gateway at that moment: a read answered after this was asked
    /// before it, so it is stale and not kept.
    Written(Instant),
}

impl Engine {
    /// A privileged vCard read arrived: kept for the write that may follow, unless the gateway wrote the vCard
    /// since (or is writing it): a read and a write cross, and the read would bring back the old PHOTO.
    pub(super) fn remember_vcard(&mut self, now: Instant, account: &BareJid, vcard: vcard::VCard) {
        let written = matches!(self.recent_vcards.peek(account),
            Some(RecentVcard::Written(at)) if now.saturating_duration_since(*at) <= RECENT_VCARD);
        let writing = self.is_pending(account, |e| e.writes(account, Scheme::Vcard));
        if !written && !writing {
            self.recent_vcards.put(account.clone(), RecentVcard::Read(vcard, now));
        }
    }
}

/// What a vCard read does without the vCard privilege.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum VcardFallback {
    /// Nothing: the read is reported as not granted (a migration sweep, which could not write anyway).
    None,
    /// A plain read, as any entity may read a vCard (serves XEP-0008 readers on ejabberd < 24.10).
    AsAnyone,
}

impl Engine {
    /// Adopts an image already held (cache or store): with the renditions made of it before when they are still
    /// held, else after they are made again (a job for the shell; nothing is decoded here).
    pub(super) fn adopt_held(&mut self, now: Instant, account: &BareJid, scheme: Scheme, original: Rendition) {
        // The derivation map is the cache's: when its renditions are no longer cached, making them again costs
        // less than parking the adoption on two reads.
        let known = self.cache.derived_from(&original.hash()).and_then(|d| {
            let png = self.cache.get(&d.png)?.as_png()?;
            Some(Transcoded { png, legacy: self.cache.get(&d.legacy)?, original: original.clone() })
        });
        match known {
            Some(t) => self.adopt(now, account, scheme, t),
            None => {
                let purpose = Purpose::Adopt { account: account.clone(), scheme };
                self.transcodes.request(original.shared_bytes(), purpose);
            }
        }
    }

    /// Makes a validated image and its renditions the account's avatar: remember them, answer waiting readers,
    /// and write the schemes that lack it.
    pub(super) fn adopt(&mut self, now: Instant, account: &BareJid, scheme: Scheme, transcoded: Transcoded) {
        let Transcoded { original, png, legacy } = transcoded;
        let current = Current { original: original.hash(), source: scheme, png: png.hash(), legacy: legacy.hash() };
        // The record first: it pins the renditions (the store counts an account's references), so they are born
        // pinned and saving one can never evict the other under a small budget.
        self.account(account).adopt(current);
        self.persist(account);
        for r in [&original, &*png, &legacy] {
            self.save_blob(r);
        }
        self.hold(&Transcoded { original, png, legacy });
        self.events.push_back(Event::Adopted { account: account.to_string(), scheme, hash: current.original });
        self.stamp(now, account);
        self.answer_readers_if_settled(account);
        self.plan_writes(now, account);
    }

    /// A vCard read brought its bytes along: observe them, once judged when they are new (a job for the shell).
    pub(super) fn observe_with_bytes(
        &mut self,
        now: Instant,
        account: &BareJid,
        scheme: Scheme,
        hash: AvatarHash,
        bytes: Vec<u8>,
    ) {
        if self.cache.failure(account, &hash, now).is_none() && !self.is_held(&hash) {
            self.rates.spend_bytes(account, bytes.len(), now);
            self.events.push_back(Event::Fetched { account: account.to_string(), scheme, hash });
            return self.transcodes.request(bytes.into(), Purpose::VcardRead { account: account.clone() });
        }
        self.observe(now, account, scheme, Seen::Avatar(hash), None);
    }

    /// The vCard's image was judged: a good one is held with its renditions, a bad one marked failed; either way the
    /// vCard is now observed (a bad image is then refused and changes nothing).
    pub(super) fn vcard_transcoded(
        &mut self,
        now: Instant,
        account: &BareJid,
        hash: AvatarHash,
        result: Result<&Transcoded, &crate::image::ImageError>,
    ) {
        match result {
            Ok(t) => self.hold(t),
            Err(e) => self.cache.mark_failed(account, hash, e.to_string(), now),
        }
        self.observe(now, account, Scheme::Vcard, Seen::Avatar(hash), None);
    }

    /// Keeps an image and its renditions in the cache, linked, so adopting it later needs no image work.
    fn hold(&mut self, t: &Transcoded) {
        for r in [&t.original, &*t.png, &t.legacy] {
            self.cache.insert(r.clone());
        }
        self.cache.link(t.original.hash(), crate::cache::Derived { png: t.png.hash(), legacy: t.legacy.hash() });
    }

    /// The schemes the current avatar must be written to, given where it came from.
    fn targets(source: Scheme, server_converts: bool) -> &'static [Scheme] {
        match (source, server_converts) {
            // The server turns a PEP avatar into the vCard view itself: publishing PEP alone avoids a duplicate.
            (Scheme::Legacy, true) => &[Scheme::Pep],
            (Scheme::Legacy, false) => &[Scheme::Pep, Scheme::Vcard],
            (Scheme::Vcard, false) => &[Scheme::Pep],
            (Scheme::Pep, false) => &[Scheme::Vcard],
            (Scheme::Vcard | Scheme::Pep, true) => &[],
        }
    }

    /// Brings every target scheme to what the account wants now: the current avatar's PNG, or "no avatar" after a
    /// deliberate removal. Idempotent and safe to call after any observation or completed write; a write that was
    /// already in flight when the wish changed is followed by a corrective one when it completes.
    pub(super) fn plan_writes(&mut self, now: Instant, account: &BareJid) {
        let a = self.account(account);
        let Some(converts) = a.server_converts else { return };
        let (current, cleared, seen) = (a.current().copied(), a.cleared(), a.seen_all());
        let (source, png) = match (current, cleared) {
            (Some(current), _) => match self.rendition(&current.png, || Resume::Account(account.clone())) {
                Held::Ready(r) if let Some(png) = r.as_png() => (current.source, Some(png)),
                Held::Loading => return,
                Held::Ready(_) | Held::Missing => {
                    return self.refuse(
                        account,
                        current.source,
                        format!("rendition {} is no longer available", current.png),
                    );
                }
            },
            (None, Some(scheme)) => (scheme, None),
            (None, None) => return,
        };
        let wanted = png.as_ref().map_or(Seen::NoAvatar, |p| Seen::Avatar(p.hash()));
        let converts = converts && !self.sweep_overrides(account, source);
        for &target in Self::targets(source, converts) {
            let held = seen[target as usize];
            // Clearing a scheme that holds nothing (or that we have not read) is not needed.
            let satisfied = held == wanted || (png.is_none() && !matches!(held, Seen::Avatar(_)));
            if satisfied || self.is_pending(account, |e| e.writes(account, target)) {
                continue;
            }
            match (target, &png) {
                // Unknown PEP: read it first, so an avatar already there is not published twice.
                (Scheme::Pep, Some(_)) if held == Seen::Unknown => self.poll_pep(now, account),
                (Scheme::Pep, Some(png)) => self.publish_data(now, account, png.clone()),
                (Scheme::Pep, None) => {
                    let payload = xep0084::publish_no_avatar(self.config.pep_access_model);
                    let exchange = Exchange::PublishMetadata { account: account.clone(), hash: None };
                    self.privileged(now, account, ns::PUBSUB, IqType::Set, payload, exchange);
                }
                (Scheme::Vcard, png) => self.read_vcard_for_write(now, account, png.clone()),
                (Scheme::Legacy, _) => {}
            }
        }
    }

    fn publish_data(&mut self, now: Instant, account: &BareJid, png: PngRendition) {
        let payload = xep0084::publish_data(&png, self.config.pep_access_model);
        let exchange = Exchange::PublishData { account: account.clone(), png };
        self.privileged(now, account, ns::PUBSUB, IqType::Set, payload, exchange);
    }

    /// Second half of a XEP-0084 publication, once the data node holds the bytes.
    pub(super) fn publish_metadata(&mut self, now: Instant, account: &BareJid, png: PngRendition) {
        let payload = xep0084::publish_metadata(&png, &[], self.config.pep_access_model);
        let exchange = Exchange::PublishMetadata { account: account.clone(), hash: Some(png.hash()) };
        self.privileged(now, account, ns::PUBSUB, IqType::Set, payload, exchange);
    }

    /// A vCard is set back whole (XEP-0054 §3.2), so a write starts from the vCard as it is: the one read a
    /// moment ago for this conversion when there is one (one read per conversion), else a fresh read.
    fn read_vcard_for_write(&mut self, now: Instant, account: &BareJid, png: Option<PngRendition>) {
        if let Some(RecentVcard::Read(existing, read_at)) = self.recent_vcards.pop(account)
            && now.saturating_duration_since(read_at) <= RECENT_VCARD
        {
            return self.write_vcard(now, account, existing, png);
        }
        let exchange = Exchange::VcardWrite { account: account.clone(), png };
        self.privileged(now, account, ns::VCARD, IqType::Get, vcard::request(), exchange);
    }

    /// The vCard as it is now arrived: replace its PHOTO unless it already holds this very image.
    pub(super) fn write_vcard(
        &mut self,
        now: Instant,
        account: &BareJid,
        existing: vcard::VCard,
        png: Option<PngRendition>,
    ) {
        let target = png.as_ref().map(|p| p.hash());
        let holds = match existing.photo() {
            Ok(vcard::Photo::Binval { bytes, .. }) => Some(AvatarHash::of(&bytes)) == target,
            Ok(vcard::Photo::None) => target.is_none(),
            _ => false,
        };
        self.recent_vcards.put(account.clone(), RecentVcard::Written(now));
        if holds {
            self.account(account).wrote(Scheme::Vcard, target.map_or(Seen::NoAvatar, Seen::Avatar));
            self.persist(account);
            return self.plan_writes(now, account);
        }
        let updated = existing.with_photo(png.as_deref());
        let exchange = Exchange::VcardSet { account: account.clone(), hash: target };
        self.privileged(now, account, ns::VCARD, IqType::Set, updated.into_element(), exchange);
    }

    pub(super) fn poll_pep(&mut self, now: Instant, account: &BareJid) {
        if self.is_pending(account, |e| matches!(e, Exchange::PepPoll { .. })) {
            return;
        }
        let request = xep0084::request_items(xep0084::AvatarNode::METADATA, None);
        self.privileged(now, account, ns::PUBSUB, IqType::Get, request, Exchange::PepPoll { account: account.clone() });
    }

    /// Reads the account's vCard with the privilege; without it, as `fallback` says.
    pub(super) fn read_vcard(&mut self, now: Instant, account: &BareJid, fallback: VcardFallback) {
        if self.is_pending(account, |e| matches!(e, Exchange::VcardRead { .. })) {
            return;
        }
        let public = !self.grants.allows_iq_at(account.domain().as_str(), ns::VCARD, IqType::Get, now)
            && fallback == VcardFallback::AsAnyone;
        let exchange = Exchange::VcardRead { account: account.clone(), public };
        if public {
            // vCards are public (XEP-0054 §3.2): without the privilege (ejabberd < 24.10) the gateway reads what any
            // entity may read, which is all an XEP-0008 reader needs.
            self.request(now, IqType::Get, account.as_str(), vcard::request(), exchange);
        } else {
            self.privileged(now, account, ns::VCARD, IqType::Get, vcard::request(), exchange);
        }
    }

    /// Reads what the schemes hold when a presence hints at a change, or when nothing is known yet.
    ///
    /// `vouched`: the presence carried a hash (XEP-0008 from the owner's client, or XEP-0153) that names the
    /// current avatar, so nothing is to be done. Without server-side conversion, a presence that vouches for
    /// nothing tells nothing of PEP, so PEP is read then; the vCard is read when its XEP-0153 hash differs from
    /// what we know.
    pub(super) fn refresh(&mut self, now: Instant, account: &BareJid, hint: Option<Seen>, vouched: bool) {
        // An account over its rate is not read again until the window has passed.
        if self.rates.check(account, now).is_err() {
            return;
        }
        let a = self.account(account);
        let (pep, vcard_seen, converts) = (a.seen(Scheme::Pep), a.seen(Scheme::Vcard), a.server_converts);
        let names_current = |seen: Seen| matches!(seen, Seen::Avatar(h) if a.current().is_some_and(|c| c.names(h)));
        let vouched = vouched || hint.is_some_and(names_current);
        let differs = |seen: Seen| hint.is_some_and(|h| h != seen);
        let unvouched_on_plain = converts == Some(false) && !vouched;
        if pep == Seen::Unknown || unvouched_on_plain || (converts == Some(true) && differs(pep)) {
            self.poll_pep(now, account);
        }
        if converts != Some(true) && (vcard_seen == Seen::Unknown || differs(vcard_seen)) {
            self.read_vcard(now, account, VcardFallback::AsAnyone);
        }
    }

    /// Asks the account once whether the server converts vCard ↔ PEP itself (XEP-0398 feature on the account).
    pub(super) fn ensure_converts_known(&mut self, now: Instant, account: &BareJid) {
        if self.account(account).server_converts.is_some()
            || self.is_pending(account, |e| matches!(e, Exchange::Converts { .. }))
        {
            return;
        }
        // Prosody answers an account's disco#info only to contacts, so ask as the account itself when granted
        // (`iq = { ["http://jabber.org/protocol/disco#info"] = "get" }`); otherwise try plainly.
        let query = crate::wire::xml::element("query", ns::DISCO_INFO).build();
        let exchange = Exchange::Converts { account: account.clone() };
        if self.grants.allows_iq_at(account.domain().as_str(), ns::DISCO_INFO, IqType::Get, now) {
            self.privileged(now, account, ns::DISCO_INFO, IqType::Get, query, exchange);
        } else {
            self.request(now, IqType::Get, account.as_str(), query, exchange);
        }
    }

    /// A PEP notification: the last metadata item is authoritative; retract, purge and delete mean "no avatar"
    /// (Dino deletes the node; Prosody purges it).
    pub(super) fn pep_event(&mut self, now: Instant, account: &BareJid, event: xep0084::Event) {
        use xep0084::{Event as E, NodeKind};
        match event {
            E::Items { node, published, .. } if node.kind == NodeKind::Metadata && !published.is_empty() => {
                let last = published.into_iter().next_back().map(|i| i.payload);
                self.observe_pep_item(now, account, last);
            }
            E::Items { node, retracted, .. } if node.kind == NodeKind::Metadata && !retracted.is_empty() => {
                self.observe(now, account, Scheme::Pep, Seen::NoAvatar, None)
            }
            E::Purged { node } | E::Deleted { node } if node.kind == NodeKind::Metadata => {
                self.observe(now, account, Scheme::Pep, Seen::NoAvatar, None)
            }
            _ => {}
        }
    }

    /// What the last metadata item says (`None`: there is no item).
    pub(super) fn observe_pep_item(
        &mut self,
        now: Instant,
        account: &BareJid,
        item: Option<Result<xep0084::Payload, xep0084::Xep0084Error>>,
    ) {
        use xep0084::{Metadata, Payload};
        match item {
            None | Some(Ok(Payload::Metadata(Metadata::NoAvatar))) => {
                self.observe(now, account, Scheme::Pep, Seen::NoAvatar, None)
            }
            Some(Ok(Payload::Metadata(m))) => match m.inline_info() {
                Some(info) => {
                    let id = info.id;
                    self.observe(now, account, Scheme::Pep, Seen::Avatar(id), None)
                }
                None => self.refuse(account, Scheme::Pep, "metadata lists only url infos (no HTTP fetch)".into()),
            },
            Some(Ok(_)) => self.refuse(account, Scheme::Pep, "metadata item without <metadata/>".into()),
            Some(Err(e)) => self.refuse(account, Scheme::Pep, e.to_string()),
        }
    }

    /// A XEP-0008 IQ addressed to an account's bare JID and delegated to us.
    pub(super) fn handle_delegated(&mut self, now: Instant, outer: &Iq, delegated: Delegated) {
        let inner = delegated.inner.clone();
        let Some(sender) = inner.from_bare() else {
            return self.reply_delegated(outer, &delegated, Condition::BadRequest);
        };
        // A user's IQ to its own bare JID arrives without `to` (Prosody).
        let account = inner.to.as_ref().map_or(sender.clone(), |t| t.to_bare());
        // A host delegates only its own accounts' namespaces (XEP-0355 §4): anything else is not ours to answer.
        if outer.from.as_ref().is_none_or(|host| host.domain() != account.domain()) {
            self.note_untrusted(now, outer.from.as_ref(), super::Refusal::ForeignAccount);
            return self.reply_delegated(outer, &delegated, Condition::Forbidden);
        }
        let query = match inner.payload.as_ref().map(xep0008::Query::parse) {
            Some(Ok(q)) => q,
            _ => return self.reply_delegated(outer, &delegated, Condition::BadRequest),
        };
        match (inner.kind, query.store) {
            (IqType::Get, store) => {
                let access = self.reader_access(now, outer, &sender, &account);
                let deadline = now + self.config.iq_timeout;
                let reader =
                    Reader { outer: outer.clone(), version: delegated.version, inner, store, deadline, access };
                self.readers.entry(account.clone()).or_default().push(reader);
                if !matches!(access, Access::Denied(_)) {
                    self.ensure_converts_known(now, &account);
                    self.refresh(now, &account, None, false);
                }
                self.answer_readers_if_settled(&account);
            }
            (IqType::Set, xep0008::Store::Storage) if sender == account => {
                self.storage_set(now, outer, &delegated, &account, query.data)
            }
            (IqType::Set, xep0008::Store::Storage) => self.reply_delegated(outer, &delegated, Condition::Forbidden),
            _ => self.reply_delegated(outer, &delegated, Condition::BadRequest),
        }
    }

    /// The owner stores its XEP-0008 avatar with us: once the image is judged valid (a job for the shell), keep it
    /// durably (we are its only holder), acknowledge, then convert it. "No data" clears at once.
    fn storage_set(
        &mut self,
        now: Instant,
        outer: &Iq,
        delegated: &Delegated,
        account: &BareJid,
        data: Option<xep0008::LegacyData>,
    ) {
        // Over its rate: the client is told to wait, and nothing changes (RFC 6120 §8.3.3.18).
        if let Err((limit, retry_in)) = self.rates.check(account, now) {
            self.over_rate(now, account, limit, retry_in);
            return self.reply_delegated(outer, delegated, Condition::ResourceConstraint);
        }
        match data {
            Some(d) => {
                self.rates.spend_bytes(account, d.bytes.len(), now);
                let set = Box::new((outer.clone(), delegated.clone()));
                let purpose = Purpose::Storage { account: account.clone(), set };
                self.transcodes.request(d.bytes.into(), purpose);
            }
            None => self.storage_transcoded(now, account, outer, delegated, Ok(None)),
        }
    }

    /// The owner's storage set, its image judged (`Ok(None)`: the owner cleared it).
    pub(super) fn storage_transcoded<'t>(
        &mut self,
        now: Instant,
        account: &BareJid,
        outer: &Iq,
        delegated: &Delegated,
        result: Result<impl Into<Option<&'t Transcoded>>, &crate::image::ImageError>,
    ) {
        let stored = match result {
            Ok(t) => t.into(),
            Err(e) => {
                self.refuse(account, Scheme::Legacy, e.to_string());
                return self.reply_delegated(outer, delegated, Condition::NotAcceptable);
            }
        };
        if let Some(t) = stored {
            self.save_blob(&t.original);
        }
        self.account(account).set_storage(stored.map(|t| t.original.hash()));
        self.persist(account);
        self.ensure_converts_known(now, account);
        match stored {
            Some(t) => {
                self.hold(t);
                self.observe(now, account, Scheme::Legacy, Seen::Avatar(t.original.hash()), None);
            }
            None => self.observe(now, account, Scheme::Legacy, Seen::NoAvatar, None),
        }
        // Answered once committed, with the adoption that followed (made at once: its renditions are held), so a
        // client that saw `result` is served its avatar after a crash.
        self.acknowledge_when_stored(outer, delegated);
    }

    pub(super) fn reply_delegated(&mut self, outer: &Iq, delegated: &Delegated, condition: Condition) {
        let reply = delegated.inner.error_reply(ns::CLIENT, condition);
        self.outbox.push_back(component::delegated_reply(outer, delegated.version, reply));
    }

    /// Whether `requester` may have `account`'s avatar, as the server decides for the account's PEP: the owner
    /// always; another local account by the answer the server gives when the gateway reads the metadata node *as
    /// that account* (XEP-0356 privileged IQ from the requester to the account), so the node's access model,
    /// roster groups and subscriptions apply exactly as the server applies them; anyone else not at all (the
    /// gateway cannot ask as a remote user, so it fails closed: SECURITY.md).
    fn reader_access(&mut self, now: Instant, outer: &Iq, requester: &BareJid, account: &BareJid) -> Access {
        if requester == account {
            return Access::Allowed;
        }
        // Without PEP reads the gateway holds only what any entity may read (public vCards, XEP-0008 data), so
        // anyone may have it; an avatar that came from PEP all the same (a notification) is not served then.
        if !self.grants.allows_iq_at(account.domain().as_str(), ns::PUBSUB, IqType::Get, now) {
            return Access::Public;
        }
        let local = self.config.hosts.iter().any(|h| h.domain() == requester.domain());
        if !local || !self.grants.allows_iq_at(requester.domain().as_str(), ns::PUBSUB, IqType::Get, now) {
            return Access::Denied(Condition::Forbidden);
        }
        let request = xep0084::request_items(xep0084::AvatarNode::METADATA, None);
        let exchange = Exchange::ReaderAccess { account: account.clone(), reader: outer.id.clone() };
        self.privileged_as(now, requester, account, ns::PUBSUB, IqType::Get, request, exchange);
        Access::Asking
    }

    /// The server answered the gateway's read as a reader: a result, or an empty node (the avatar then lives only
    /// in schemes every entity may read: a vCard, XEP-0008 storage), lets the reader have it; any other error is
    /// what the reader gets, exactly as the server would have answered its own PEP read.
    pub(super) fn reader_answered(&mut self, account: &BareJid, reader: &str, refusal: Option<Option<&str>>) {
        let access = match refusal {
            None | Some(Some("item-not-found")) => Access::Allowed,
            Some(condition) => Access::Denied(condition.and_then(Condition::from_name).unwrap_or(Condition::Forbidden)),
        };
        if let Some(r) = self.readers.get_mut(account).into_iter().flatten().find(|r| r.outer.id == reader) {
            r.access = access;
        }
        self.answer_readers_if_settled(account);
    }

    /// Answers waiting readers: refused ones at once; allowed ones once the account's avatar is known, or once
    /// nothing more can be learnt.
    pub(super) fn answer_readers_if_settled(&mut self, account: &BareJid) {
        let Some(readers) = self.readers.get_mut(account) else { return };
        let (denied, rest): (Vec<Reader>, Vec<Reader>) =
            std::mem::take(readers).into_iter().partition(|r| matches!(r.access, Access::Denied(_)));
        *readers = rest;
        for reader in denied {
            self.answer_reader(account, reader, None);
        }
        if self.readers.get(account).is_none_or(|rs| rs.iter().any(|r| r.access == Access::Asking)) {
            return self.forget_empty_readers(account);
        }
        let current = self.accounts.get(account).and_then(|a| a.current().copied());
        let from_pep = current.is_some_and(|c| c.source == Scheme::Pep);
        if from_pep && let Some(readers) = self.readers.get_mut(account) {
            for r in readers.iter_mut().filter(|r| r.access == Access::Public) {
                r.access = Access::Denied(Condition::Forbidden);
            }
        }
        let rendition = match current {
            Some(c) => match self.rendition(&c.legacy, || Resume::Account(account.clone())) {
                Held::Ready(r) => Some(r),
                Held::Loading => return,
                Held::Missing => None,
            },
            None if self.is_pending(account, |_| true) || self.transcodes.busy(account) => return,
            None => None,
        };
        for reader in self.readers.remove(account).unwrap_or_default() {
            self.answer_reader(account, reader, rendition.clone());
        }
    }

    fn forget_empty_readers(&mut self, account: &BareJid) {
        if self.readers.get(account).is_some_and(Vec::is_empty) {
            self.readers.remove(account);
        }
    }

    /// Answers one reader: with the rendition if it may have it, else with the refusal (an unanswered access
    /// check counts as a refusal: the gateway fails closed).
    pub(super) fn answer_reader(&mut self, account: &BareJid, reader: Reader, rendition: Option<Rendition>) {
        let rendition = rendition.filter(|_| matches!(reader.access, Access::Allowed | Access::Public));
        let reply = match (&rendition, reader.access) {
            (Some(r), _) => reader.inner.result(ns::CLIENT, Some(xep0008::query(reader.store, Some(r)))),
            (None, Access::Denied(condition)) => reader.inner.error_reply(ns::CLIENT, condition),
            (None, Access::Asking) => reader.inner.error_reply(ns::CLIENT, Condition::InternalServerError),
            (None, Access::Allowed | Access::Public) => reader.inner.error_reply(ns::CLIENT, Condition::ItemNotFound),
        };
        self.outbox.push_back(component::delegated_reply(&reader.outer, reader.version, reply));
        let reader_jid = reader.inner.from.map(|j| j.to_string()).unwrap_or_default();
        self.events.push_back(Event::Served {
            account: account.to_string(),
            reader: reader_jid,
            hash: rendition.map(|r| r.hash()),
        });
    }
}

impl Exchange {
    /// The account this exchange concerns.
    pub(super) fn account(&self) -> &BareJid {
        match self {
            Exchange::Converts { account }
            | Exchange::PepPoll { account }
            | Exchange::PepData { account, .. }
            | Exchange::VcardRead { account, .. }
            | Exchange::IqAvatar { account, .. }
            | Exchange::VcardWrite { account, .. }
            | Exchange::VcardSet { account, .. }
            | Exchange::PublishData { account, .. }
            | Exchange::PublishMetadata { account, .. }
            | Exchange::ReaderAccess { account, .. } => account,
            Exchange::ServerVersion { host } => host,
        }
    }

    /// Whether this exchange is a write (or the read before one) of `scheme` for `account`.
    pub(super) fn writes(&self, account: &BareJid, scheme: Scheme) -> bool {
        let target = match self {
            Exchange::VcardWrite { .. } | Exchange::VcardSet { .. } => Scheme::Vcard,
            Exchange::PublishData { .. } | Exchange::PublishMetadata { .. } | Exchange::PepPoll { .. } => Scheme::Pep,
            _ => return false,
        };
        target == scheme && self.account() == account
    }
}
