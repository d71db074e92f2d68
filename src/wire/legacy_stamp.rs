//! This project's IQ to a host's mod_avatar_gateway (`contrib/prosody`): the hash of the XEP-0008 rendition the
//! gateway serves for an account, which the module stamps on that account's presence as `jabber:x:avatar`
//! (XEP-0008 §3). A component may receive presence but not send it for a user (XEP-0356), hence the module.
//!
//! ```xml
//! <iq type='set' to='example.org'>
//!   <legacy-hash xmlns='urn:avatar-gateway:legacy-hash:0' jid='alice@example.org'><hash>…</hash></legacy-hash>
//! </iq>
//! ```
//!
//! No `<hash/>` means "no avatar" (the module then stamps `<x xmlns='jabber:x:avatar'/>`). The module announces the
//! namespace in the host's disco#info (XEP-0030), which is how the gateway learns it is there.

use xmpp_parsers::jid::BareJid;
use xmpp_parsers::minidom::Element;

use crate::avatar::AvatarHash;
use crate::wire::ns;
use crate::wire::stanza::{Iq, IqType};
use crate::wire::xml::{Attrs, element};

/// Why a host cannot stamp presence, as its answers show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StampError {
    /// The host's disco#info does not list the namespace: the module is not loaded there.
    #[error("the server's disco#info does not list {}", ns::LEGACY_HASH)]
    NotListed,
    /// The host answered with an error (a disco#info refused, or an update the module refused).
    #[error("the server answered {0}")]
    Refused(String),
    /// A result without a disco#info `<query/>`.
    #[error("the server's answer to disco#info holds no disco#info query")]
    NotDisco,
}

/// The `<legacy-hash/>` payload that tells the module `account`'s XEP-0008 hash (`None`: no avatar).
pub fn update(account: &BareJid, hash: Option<AvatarHash>) -> Element {
    let mut payload = element("legacy-hash", ns::LEGACY_HASH).with_attr("jid", account.as_str());
    if let Some(hash) = hash {
        payload = payload.append(element("hash", ns::LEGACY_HASH).append(hash.to_string()).build());
    }
    payload.build()
}

/// The disco#info query that asks a host whether the module is loaded.
pub fn probe() -> Element {
    element("query", ns::DISCO_INFO).build()
}

/// Whether a host's answer to [`probe`] shows the module.
pub fn probe_answered(reply: &Iq) -> Result<(), StampError> {
    refused(reply)?;
    let query = reply.payload.as_ref().filter(|q| q.is("query", ns::DISCO_INFO)).ok_or(StampError::NotDisco)?;
    let listed = query.children().any(|f| f.is("feature", ns::DISCO_INFO) && f.attr("var") == Some(ns::LEGACY_HASH));
    if listed { Ok(()) } else { Err(StampError::NotListed) }
}

/// Whether the module took an [`update`]: any result does (the module answers an empty one).
pub fn update_answered(reply: &Iq) -> Result<(), StampError> {
    refused(reply)
}

fn refused(reply: &Iq) -> Result<(), StampError> {
    match reply.kind {
        IqType::Error => Err(StampError::Refused(reply.error.clone().unwrap_or_else(|| "an error".into()))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::xml;

    fn reply(text: &str) -> Iq {
        Iq::parse(&text.parse::<Element>().expect("test XML")).expect("an IQ")
    }

    #[test]
    fn update_names_the_account_and_the_hash_or_none() {
        let alice: BareJid = "alice@example.org".parse().expect("a JID");
        let hash = AvatarHash::of(b"png");
        assert_eq!(
            xml::to_string(&update(&alice, Some(hash))),
            format!(
                "<legacy-hash xmlns='urn:avatar-gateway:legacy-hash:0' jid='alice@example.org'><hash>{hash}</hash></legacy-hash>"
            )
        );
        assert_eq!(
            xml::to_string(&update(&alice, None)),
            "<legacy-hash xmlns='urn:avatar-gateway:legacy-hash:0' jid='alice@example.org'/>"
        );
    }

    #[test]
    fn answers() {
        // The real shapes (fixtures/stanzas/legacy_stamp/) are read in tests/engine_stamp.rs.
        let without = reply(
            "<iq xmlns='jabber:component:accept' type='result' id='s' from='example.org'>\
             <query xmlns='http://jabber.org/protocol/disco#info'><feature var='urn:xmpp:ping'/></query></iq>",
        );
        assert_eq!(probe_answered(&without), Err(StampError::NotListed));
        assert_eq!(
            probe_answered(&reply("<iq xmlns='jabber:client' type='result' id='s'/>")),
            Err(StampError::NotDisco)
        );
        let error = reply(
            "<iq xmlns='jabber:component:accept' type='error' id='s'><error type='cancel'>\
             <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        );
        assert_eq!(probe_answered(&error), Err(StampError::Refused("service-unavailable".into())));
        assert_eq!(update_answered(&reply("<iq xmlns='jabber:client' type='result' id='s'/>")), Ok(()));
    }
}
