//! What the server grants a component, and the wrappers that use it.
//!
//! - XEP-0356 Privileged Entity: the announcement (`urn:xmpp:privilege:1` from ejabberd < 24.10, `:2` with the
//!   IQ permission from Prosody's mod_privilege) and the `<privileged_iq/>` wrapper with its `<privilege><forwarded>`
//!   reply. Prosody nests the `<namespace/>` elements of the iq permission inside each other, so every descendant
//!   counts; and it returns errors *inside* an outer result, so the inner IQ's type is what matters.
//! - XEP-0355 Namespace Delegation (`urn:xmpp:delegation:1` ejabberd, `:2` Prosody), admin mode: the announcement,
//!   the disco#info queries the server sends before it activates a delegation, and the forwarded IQs.
//!
//! The XEP-0114 handshake itself is tokio-xmpp's (see `link`).

use std::collections::BTreeMap;

use xmpp_parsers::jid::BareJid;
use xmpp_parsers::minidom::Element;

use super::ns;
use super::stanza::{Iq, IqType, iq};
use super::xml::{Attrs, element};

/// Which XEP-0356 namespace the server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivilegeVersion {
    /// `urn:xmpp:privilege:1` (XEP-0356 0.2/0.3): roster, message and presence only.
    V1,
    /// `urn:xmpp:privilege:2` (XEP-0356 0.4): adds per-namespace IQ permissions.
    V2,
}

/// Access granted for one IQ namespace (or the roster).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nothing.
    None,
    /// Reading only.
    Get,
    /// Writing only.
    Set,
    /// Reading and writing.
    Both,
}

impl Access {
    fn parse(s: Option<&str>) -> Self {
        match s {
            Some("get") => Self::Get,
            Some("set") => Self::Set,
            Some("both") => Self::Both,
            _ => Self::None,
        }
    }

    /// Whether IQs of `kind` are allowed.
    pub fn allows(self, kind: IqType) -> bool {
        matches!((self, kind), (Self::Both, _) | (Self::Get, IqType::Get) | (Self::Set, IqType::Set))
    }
}

/// What the presence permission delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceAccess {
    /// No presence.
    None,
    /// The managed users' own presence.
    ManagedEntity,
    /// Also their contacts' presence.
    Roster,
}

/// A XEP-0356 announcement: what this component may do for the users of one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Privileges {
    /// The namespace generation the server used (and expects on wrappers).
    pub version: PrivilegeVersion,
    /// `jabber:iq:roster` access.
    pub roster: Access,
    /// Whether the component may send messages on users' behalf.
    pub message_outgoing: bool,
    /// Presence delivery.
    pub presence: PresenceAccess,
    /// IQ access per payload namespace (XEP-0356 0.4).
    pub iq: BTreeMap<String, Access>,
}

impl Privileges {
    /// Reads the `<privilege/>` child of a message; `None` when it has none, or an empty one (Prosody sends an
    /// empty `<privilege xmlns='urn:xmpp:privilege:2'/>` to every user on initial presence: not an announcement).
    pub fn from_message(message: &Element) -> Option<Self> {
        let (privilege, version) = message.children().find_map(|c| match (c.name(), c.ns().as_str()) {
            ("privilege", ns::PRIVILEGE_1) => Some((c, PrivilegeVersion::V1)),
            ("privilege", ns::PRIVILEGE_2) => Some((c, PrivilegeVersion::V2)),
            _ => None,
        })?;
        privilege.children().next()?;
        let mut out = Self {
            version,
            roster: Access::None,
            message_outgoing: false,
            presence: PresenceAccess::None,
            iq: BTreeMap::new(),
        };
        for perm in privilege.children().filter(|c| c.name() == "perm") {
            match perm.attr("access") {
                Some("roster") => out.roster = Access::parse(perm.attr("type")),
                Some("message") => out.message_outgoing = perm.attr("type") == Some("outgoing"),
                Some("presence") => {
                    out.presence = match perm.attr("type") {
                        Some("managed_entity") => PresenceAccess::ManagedEntity,
                        Some("roster") => PresenceAccess::Roster,
                        _ => PresenceAccess::None,
                    }
                }
                Some("iq") => collect_namespaces(perm, &mut out.iq),
                _ => {}
            }
        }
        Some(out)
    }

    /// Whether privileged IQs of `kind` in namespace `ns` are allowed.
    pub fn allows_iq(&self, namespace: &str, kind: IqType) -> bool {
        self.version == PrivilegeVersion::V2 && self.iq.get(namespace).is_some_and(|a| a.allows(kind))
    }
}

/// Every `<namespace/>` below `el`, however Prosody nested them (one level per granted namespace), down to a
/// depth no real announcement reaches, so a hostile tree cannot exhaust the stack.
fn collect_namespaces(el: &Element, into: &mut BTreeMap<String, Access>) {
    const MAX_DEPTH: usize = 64;
    let mut level: Vec<&Element> = vec![el];
    for _ in 0..MAX_DEPTH {
        let children: Vec<&Element> = level.iter().flat_map(|e| e.children()).collect();
        for child in &children {
            if child.name() == "namespace"
                && let Some(namespace) = child.attr("ns")
            {
                into.insert(namespace.to_owned(), Access::parse(child.attr("type")));
            }
        }
        if children.is_empty() {
            break;
        }
        level = children;
    }
}

/// Wraps a request payload in a XEP-0356 0.4 privileged IQ from the component, sent as `managed` (a local
/// account's bare JID). The inner IQ carries `from` = `managed` and `to` = `target` explicitly (§4.5): ejabberd
/// routes the inner IQ by its `to` and fails without one (`{badrecord,undefined}`, 24.12–26.07); Prosody's
/// mod_privilege accepts either. `target` is `managed` itself for the account's own data, or another account
/// when the gateway asks *as* `managed` (a reader) so that the server applies that account's access model.
pub fn privileged_iq(
    outer_id: &str,
    component: &str,
    managed: &BareJid,
    target: &BareJid,
    kind: IqType,
    payload: Element,
) -> Element {
    let inner = iq(ns::CLIENT, kind, outer_id, Some(managed.as_str()), Some(target.as_str()), Some(payload));
    let wrapper = element("privileged_iq", ns::PRIVILEGE_2).append(inner).build();
    iq(ns::COMPONENT, kind, outer_id, Some(component), Some(managed.as_str()), Some(wrapper))
}

/// What came back for a privileged IQ.
#[derive(Debug, Clone, PartialEq)]
pub enum PrivilegedReply {
    /// The inner IQ's result payload (if any).
    Result(Option<Element>),
    /// The inner IQ's error: the answer to the request itself (`None`: no defined condition given).
    Error(Option<String>),
    /// An outer error with no inner IQ: the server did not carry the request out at all (mod_privilege refusing
    /// an ungranted namespace, or a plain request's own error).
    Refused(Option<String>),
}

/// Unwraps the reply to a privileged IQ, whatever the envelope. The inner IQ in `<privilege><forwarded><iq/>`
/// decides when there is one: Prosody 0.12's mod_privilege puts an inner error inside an outer `result`; ejabberd
/// ≥ 24.10 and prosody-modules of 2026 put it inside an outer `error` that has no `<error/>` of its own. Without
/// a wrapper, the outer IQ speaks for itself (a refusal by mod_privilege, or an older server's bare result).
pub fn privileged_reply(reply: &Iq, reply_element: &Element) -> PrivilegedReply {
    let inner = reply_element
        .children()
        .find(|c| c.name() == "privilege" && (c.ns() == ns::PRIVILEGE_2 || c.ns() == ns::PRIVILEGE_1))
        .and_then(|p| p.get_child("forwarded", ns::FORWARD))
        .and_then(|f| f.children().find(|c| c.name() == "iq"));
    match inner.map(Iq::parse) {
        Some(Ok(inner)) if inner.kind == IqType::Result => PrivilegedReply::Result(inner.payload),
        Some(Ok(inner)) => PrivilegedReply::Error(inner.error.or_else(|| reply.error.clone())),
        Some(Err(_)) => PrivilegedReply::Error(Some("bad-request".into())),
        None if reply.kind == IqType::Error => PrivilegedReply::Refused(reply.error.clone()),
        None => PrivilegedReply::Result(reply.payload.clone().filter(|p| p.name() != "privilege")),
    }
}

/// Whether a *request* IQ carries a privileged IQ wrapped as a reply would be (`<privilege><forwarded><iq/>`): what
/// ejabberd 24.10 to 25.02 send back instead of carrying the component's privileged IQ out.
pub fn is_bounced_privileged(stanza: &Element) -> bool {
    stanza
        .children()
        .find(|c| c.name() == "privilege" && (c.ns() == ns::PRIVILEGE_2 || c.ns() == ns::PRIVILEGE_1))
        .and_then(|p| p.get_child("forwarded", ns::FORWARD))
        .is_some_and(|f| f.children().any(|c| c.name() == "iq"))
}

/// Which XEP-0355 namespace generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelegationVersion {
    /// `urn:xmpp:delegation:1` (ejabberd 23.01).
    V1,
    /// `urn:xmpp:delegation:2` (Prosody mod_delegation).
    V2,
}

impl DelegationVersion {
    fn ns(self) -> &'static str {
        match self {
            Self::V1 => ns::DELEGATION_1,
            Self::V2 => ns::DELEGATION_2,
        }
    }

    fn from_ns(namespace: &str) -> Option<Self> {
        match namespace {
            ns::DELEGATION_1 => Some(Self::V1),
            ns::DELEGATION_2 => Some(Self::V2),
            _ => None,
        }
    }
}

/// The namespaces a XEP-0355 announcement message delegates to us.
pub fn delegated_namespaces(message: &Element) -> Option<(DelegationVersion, Vec<String>)> {
    let delegation = message.children().find(|c| c.name() == "delegation")?;
    let version = DelegationVersion::from_ns(&delegation.ns())?;
    let namespaces = delegation
        .children()
        .filter(|c| c.name() == "delegated")
        .filter_map(|c| c.attr("namespace").map(str::to_owned))
        .collect();
    Some((version, namespaces))
}

/// The namespace a server's disco#info query asks about before activating a delegation: node
/// `urn:xmpp:delegation:2::NS` (server) or `urn:xmpp:delegation:2:bare:NS` (bare JIDs), likewise for `:1`.
pub fn delegation_disco_namespace(node: &str) -> Option<&str> {
    [ns::DELEGATION_1, ns::DELEGATION_2].iter().find_map(|prefix| {
        let rest = node.strip_prefix(prefix)?;
        rest.strip_prefix("::").or_else(|| rest.strip_prefix(":bare:"))
    })
}

/// The disco#info answer for such a node: the delegated namespace as a feature, so the server activates it.
pub fn delegation_disco_info(node: &str, namespace: &str) -> Element {
    element("query", ns::DISCO_INFO)
        .with_attr("node", node)
        .append(element("feature", ns::DISCO_INFO).with_attr("var", namespace).build())
        .build()
}

/// A delegated IQ as forwarded by the server: the outer envelope and the user's IQ inside it.
#[derive(Debug, Clone, PartialEq)]
pub struct Delegated {
    /// The generation the server used (the reply must use the same).
    pub version: DelegationVersion,
    /// The user's IQ.
    pub inner: Iq,
}

/// Unwraps `<iq><delegation><forwarded><iq/></forwarded></delegation></iq>`.
pub fn delegated(outer: &Element) -> Option<Delegated> {
    let delegation = outer.children().find(|c| c.name() == "delegation")?;
    let version = DelegationVersion::from_ns(&delegation.ns())?;
    let inner = delegation.get_child("forwarded", ns::FORWARD)?.children().find(|c| c.name() == "iq")?;
    Some(Delegated { version, inner: Iq::parse(inner).ok()? })
}

/// Answers a delegated IQ: `inner_reply` (built in `jabber:client`, addresses swapped relative to the user's IQ)
/// goes back wrapped in a result to the outer IQ, as XEP-0355 §7 requires.
pub fn delegated_reply(outer: &Iq, version: DelegationVersion, inner_reply: Element) -> Element {
    let wrapper = element("delegation", version.ns())
        .append(element("forwarded", ns::FORWARD).append(inner_reply).build())
        .build();
    outer.result(ns::COMPONENT, Some(wrapper))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::xml::to_string;

    fn el(s: &str) -> Element {
        s.parse().unwrap()
    }

    #[test]
    fn reads_prosody_nested_namespaces() {
        // Observed on Prosody 0.12 + mod_privilege: the iq namespaces nest inside each other.
        let m = el(
            "<message xmlns='jabber:component:accept' from='localhost' to='avatars.localhost'><privilege xmlns='urn:xmpp:privilege:2'><perm access='roster' type='both'/><perm access='message' type='outgoing'/><perm access='presence' type='roster'/><perm access='iq'><namespace ns='vcard-temp' type='both'><namespace ns='http://jabber.org/protocol/pubsub' type='both'><namespace ns='http://jabber.org/protocol/pubsub#owner' type='set'/></namespace></namespace></perm></privilege></message>",
        );
        let p = Privileges::from_message(&m).unwrap();
        assert_eq!(p.version, PrivilegeVersion::V2);
        assert_eq!(p.presence, PresenceAccess::Roster);
        assert!(p.allows_iq(ns::VCARD, IqType::Get) && p.allows_iq(ns::PUBSUB, IqType::Set));
        assert!(p.allows_iq(ns::PUBSUB_OWNER, IqType::Set) && !p.allows_iq(ns::PUBSUB_OWNER, IqType::Get));
    }

    #[test]
    fn ejabberd_v1_has_no_iq_permission() {
        let m = el(
            "<message xmlns='jabber:component:accept' from='example.org' to='c.example.org'><privilege xmlns='urn:xmpp:privilege:1'><perm access='message' type='outgoing'/><perm access='roster' type='none'/><perm access='presence' type='managed_entity'/></privilege></message>",
        );
        let p = Privileges::from_message(&m).unwrap();
        assert_eq!(
            (p.version, p.roster, p.presence),
            (PrivilegeVersion::V1, Access::None, PresenceAccess::ManagedEntity)
        );
        assert!(!p.allows_iq(ns::VCARD, IqType::Get));
    }

    #[test]
    fn empty_privilege_is_not_an_announcement() {
        let m = el(
            "<message xmlns='jabber:component:accept' from='alice@localhost' to='avatars.localhost'><privilege xmlns='urn:xmpp:privilege:2'/></message>",
        );
        assert_eq!(Privileges::from_message(&m), None);
    }

    #[test]
    fn wraps_privileged_iq_with_the_inner_addresses() {
        let alice = BareJid::new("alice@localhost").unwrap();
        let payload = element("vCard", ns::VCARD).build();
        assert_eq!(
            to_string(&privileged_iq("o1", "avatars.localhost", &alice, &alice, IqType::Get, payload)),
            "<iq xmlns='jabber:component:accept' from='avatars.localhost' id='o1' to='alice@localhost' type='get'><privileged_iq xmlns='urn:xmpp:privilege:2'><iq xmlns='jabber:client' from='alice@localhost' id='o1' to='alice@localhost' type='get'><vCard xmlns='vcard-temp'/></iq></privileged_iq></iq>"
        );
    }

    #[test]
    fn inner_error_inside_outer_error_is_the_inner_condition() {
        // ejabberd 26.07 and prosody-modules hg20260723 (Prosody 13.0.6): outer error, no <error/> of its own.
        let r = el(
            "<iq xmlns='jabber:component:accept' type='error' from='alice@localhost' to='avatars.localhost' id='priv-2'><privilege xmlns='urn:xmpp:privilege:2'><forwarded xmlns='urn:xmpp:forward:0'><iq xmlns='jabber:client' type='error' to='alice@localhost' id='wrapped-3'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq></forwarded></privilege></iq>",
        );
        assert_eq!(
            privileged_reply(&Iq::parse(&r).unwrap(), &r),
            PrivilegedReply::Error(Some("item-not-found".into()))
        );
    }

    #[test]
    fn a_refusal_without_a_wrapper_is_the_outer_condition() {
        let r = el(
            "<iq xmlns='jabber:component:accept' type='error' from='alice@localhost' to='avatars.localhost' id='o1'><error type='auth'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        );
        assert_eq!(privileged_reply(&Iq::parse(&r).unwrap(), &r), PrivilegedReply::Refused(Some("forbidden".into())));
    }

    #[test]
    fn inner_error_inside_outer_result_is_an_error() {
        let r = el(
            "<iq xmlns='jabber:component:accept' type='result' id='o1' from='alice@localhost' to='avatars.localhost'><privilege xmlns='urn:xmpp:privilege:2'><forwarded xmlns='urn:xmpp:forward:0'><iq xmlns='jabber:client' type='error' id='i1'><error type='cancel'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><precondition-not-met xmlns='http://jabber.org/protocol/pubsub#errors'/></error></iq></forwarded></privilege></iq>",
        );
        assert_eq!(privileged_reply(&Iq::parse(&r).unwrap(), &r), PrivilegedReply::Error(Some("conflict".into())));
    }

    #[test]
    fn unwraps_inner_result() {
        let r = el(
            "<iq xmlns='jabber:component:accept' type='result' id='o1' from='alice@localhost' to='avatars.localhost'><privilege xmlns='urn:xmpp:privilege:2'><forwarded xmlns='urn:xmpp:forward:0'><iq xmlns='jabber:client' type='result' id='i1'><vCard xmlns='vcard-temp'><FN>A</FN></vCard></iq></forwarded></privilege></iq>",
        );
        match privileged_reply(&Iq::parse(&r).unwrap(), &r) {
            PrivilegedReply::Result(Some(v)) => assert_eq!(v.name(), "vCard"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn delegation_round_trip() {
        let ann = el(
            "<message xmlns='jabber:component:accept' from='localhost' to='avatars.localhost'><delegation xmlns='urn:xmpp:delegation:2'><delegated namespace='storage:client:avatar'/><delegated namespace='jabber:iq:avatar'/></delegation></message>",
        );
        assert_eq!(
            delegated_namespaces(&ann),
            Some((DelegationVersion::V2, vec!["storage:client:avatar".into(), "jabber:iq:avatar".into()]))
        );
        assert_eq!(
            delegation_disco_namespace("urn:xmpp:delegation:2:bare:storage:client:avatar"),
            Some("storage:client:avatar")
        );
        assert_eq!(delegation_disco_namespace("urn:xmpp:delegation:1::jabber:iq:avatar"), Some("jabber:iq:avatar"));
        assert_eq!(delegation_disco_namespace("http://jabber.org/protocol/commands"), None);

        let fwd = el(
            "<iq xmlns='jabber:component:accept' type='set' id='d1' from='localhost' to='avatars.localhost'><delegation xmlns='urn:xmpp:delegation:2'><forwarded xmlns='urn:xmpp:forward:0'><iq xmlns='jabber:client' type='get' id='u1' from='bob@localhost/pc' to='alice@localhost'><query xmlns='storage:client:avatar'/></iq></forwarded></delegation></iq>",
        );
        let d = delegated(&fwd).unwrap();
        assert_eq!(d.inner.id, "u1");
        let inner_reply = d.inner.result(ns::CLIENT, None);
        assert_eq!(
            to_string(&delegated_reply(&Iq::parse(&fwd).unwrap(), d.version, inner_reply)),
            "<iq xmlns='jabber:component:accept' from='avatars.localhost' id='d1' to='localhost' type='result'><delegation xmlns='urn:xmpp:delegation:2'><forwarded xmlns='urn:xmpp:forward:0'><iq xmlns='jabber:client' from='alice@localhost' id='u1' to='bob@localhost/pc' type='result'/></forwarded></delegation></iq>"
        );
    }
}
