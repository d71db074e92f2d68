//! The stanza envelope: IQ type, id and addresses, and stanza errors (RFC 6120 §8).
//!
//! The codecs deal in payloads; this module reads and writes the `<iq/>` around them. JIDs are normalised with
//! the `jid` crate (stringprep), so `Alice@Example.org` and `alice@example.org` key the same account.

use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::minidom::Element;

use super::ns;
use super::xml::{Attrs, element};

/// The four IQ types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum IqType {
    /// A request for information.
    Get,
    /// A request to change something.
    Set,
    /// A successful answer.
    Result,
    /// A failed answer.
    Error,
}

impl IqType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "get" => Self::Get,
            "set" => Self::Set,
            "result" => Self::Result,
            "error" => Self::Error,
            _ => return None,
        })
    }

    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Set => "set",
            Self::Result => "result",
            Self::Error => "error",
        }
    }

    /// Whether this IQ is a request that must be answered.
    pub fn is_request(self) -> bool {
        matches!(self, Self::Get | Self::Set)
    }
}

/// An IQ as received: envelope plus its first payload child (and the error child of an error).
#[derive(Debug, Clone, PartialEq)]
pub struct Iq {
    /// `type`.
    pub kind: IqType,
    /// `id` (required by RFC 6120; an IQ without one is refused at parse).
    pub id: String,
    /// `from`, normalised.
    pub from: Option<Jid>,
    /// `to`, normalised.
    pub to: Option<Jid>,
    /// The first child that is not `<error/>`.
    pub payload: Option<Element>,
    /// The `<error/>` child's defined condition, for `type='error'`.
    pub error: Option<String>,
}

/// Why a stanza envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StanzaError {
    /// Not an `<iq/>`.
    #[error("expected an <iq/>, got <{0}/>")]
    NotIq(String),
    /// `type` missing or not one of get/set/result/error.
    #[error("iq type {0:?} is not get, set, result or error")]
    BadType(Option<String>),
    /// No `id`.
    #[error("iq without an id")]
    MissingId,
    /// An address that is not a valid JID.
    #[error("invalid JID {0:?}")]
    BadJid(String),
}

impl Iq {
    /// Reads the envelope of an IQ in any stanza namespace (`jabber:component:accept` on the stream,
    /// `jabber:client` inside XEP-0356/0355 wrappers).
    pub fn parse(el: &Element) -> Result<Self, StanzaError> {
        if el.name() != "iq" {
            return Err(StanzaError::NotIq(el.name().to_owned()));
        }
        let kind = el
            .attr("type")
            .and_then(IqType::parse)
            .ok_or_else(|| StanzaError::BadType(el.attr("type").map(str::to_owned)))?;
        let id = el.attr("id").ok_or(StanzaError::MissingId)?.to_owned();
        let from = jid_attr(el, "from")?;
        let to = jid_attr(el, "to")?;
        let payload = el.children().find(|c| c.name() != "error").cloned();
        let error = el
            .children()
            .find(|c| c.name() == "error")
            .and_then(|e| e.children().find(|c| c.ns() == ns::STANZAS && c.name() != "text"))
            .map(|c| c.name().to_owned());
        Ok(Self { kind, id, from, to, payload, error })
    }

    /// The bare JID of the sender, if any.
    pub fn from_bare(&self) -> Option<BareJid> {
        self.from.as_ref().map(Jid::to_bare)
    }
}

/// Reads an optional JID attribute.
pub fn jid_attr(el: &Element, name: &str) -> Result<Option<Jid>, StanzaError> {
    el.attr(name).map(|s| Jid::new(s).map_err(|_| StanzaError::BadJid(s.to_owned()))).transpose()
}

/// Builds an IQ in namespace `stanza_ns` (the component namespace on the stream, `jabber:client` when wrapped).
pub fn iq(
    stanza_ns: &str,
    kind: IqType,
    id: &str,
    from: Option<&str>,
    to: Option<&str>,
    payload: Option<Element>,
) -> Element {
    let mut b = element("iq", stanza_ns)
        .with_attr("type", kind.as_str())
        .with_attr("id", id)
        .with_attr_opt("from", from)
        .with_attr_opt("to", to);
    if let Some(p) = payload {
        b = b.append(p);
    }
    b.build()
}

/// Stanza error conditions the gateway sends, with their RFC 6120 error types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// `modify`/`bad-request`: the request was malformed.
    BadRequest,
    /// `cancel`/`item-not-found`: no avatar stored.
    ItemNotFound,
    /// `cancel`/`not-acceptable`: the image was refused (size, format, hash).
    NotAcceptable,
    /// `auth`/`forbidden`: not the owner.
    Forbidden,
    /// `cancel`/`service-unavailable`: not something we answer.
    ServiceUnavailable,
    /// `wait`/`internal-server-error`: storing failed.
    InternalServerError,
    /// `wait`/`remote-server-timeout`: the data could not be fetched in time.
    RemoteServerTimeout,
    /// RFC 6120 §8.3.3.12: the stanza breaks a local policy (here: the link's depth or size limit).
    PolicyViolation,
    /// RFC 6120 §8.3.3.14: credentials or a subscription are missing (XEP-0060 §6.5.9 presence access model).
    NotAuthorized,
    /// RFC 6120 §8.3.3.18 `wait`/`resource-constraint`: the account is over its rate limit; retry later.
    ResourceConstraint,
}

impl Condition {
    fn parts(self) -> (&'static str, &'static str) {
        match self {
            Self::BadRequest => ("modify", "bad-request"),
            Self::ItemNotFound => ("cancel", "item-not-found"),
            Self::NotAcceptable => ("modify", "not-acceptable"),
            Self::Forbidden => ("auth", "forbidden"),
            Self::ServiceUnavailable => ("cancel", "service-unavailable"),
            Self::InternalServerError => ("wait", "internal-server-error"),
            Self::RemoteServerTimeout => ("wait", "remote-server-timeout"),
            Self::PolicyViolation => ("modify", "policy-violation"),
            Self::NotAuthorized => ("auth", "not-authorized"),
            Self::ResourceConstraint => ("wait", "resource-constraint"),
        }
    }

    /// The condition named `name` (the element name of a defined condition), if it is one of these.
    pub fn from_name(name: &str) -> Option<Self> {
        const ALL: [Condition; 10] = [
            Condition::BadRequest,
            Condition::ItemNotFound,
            Condition::NotAcceptable,
            Condition::Forbidden,
            Condition::ServiceUnavailable,
            Condition::InternalServerError,
            Condition::RemoteServerTimeout,
            Condition::PolicyViolation,
            Condition::NotAuthorized,
            Condition::ResourceConstraint,
        ];
        ALL.into_iter().find(|c| c.parts().1 == name)
    }
}

/// An `<error/>` child for an IQ of type error.
pub fn error_child(stanza_ns: &str, condition: Condition) -> Element {
    let (kind, name) = condition.parts();
    element("error", stanza_ns).with_attr("type", kind).append(element(name, ns::STANZAS).build()).build()
}

fn to_str(jid: &Option<Jid>) -> Option<String> {
    jid.as_ref().map(Jid::to_string)
}

impl Iq {
    /// The result answering this request, addresses swapped (RFC 6120 §8.2.3).
    pub fn result(&self, stanza_ns: &str, payload: Option<Element>) -> Element {
        iq(stanza_ns, IqType::Result, &self.id, to_str(&self.to).as_deref(), to_str(&self.from).as_deref(), payload)
    }

    /// The error answering this request, addresses swapped.
    pub fn error_reply(&self, stanza_ns: &str, condition: Condition) -> Element {
        let mut el =
            iq(stanza_ns, IqType::Error, &self.id, to_str(&self.to).as_deref(), to_str(&self.from).as_deref(), None);
        el.append_child(error_child(stanza_ns, condition));
        el
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_envelope_and_error_condition() {
        let el: Element = "<iq xmlns='jabber:client' type='error' id='a1' from='Alice@Example.org/Phone' to='c.example.org'><vCard xmlns='vcard-temp'/><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>x</text></error></iq>".parse().unwrap();
        let iq = Iq::parse(&el).unwrap();
        assert_eq!(iq.kind, IqType::Error);
        assert_eq!(iq.from.unwrap().to_string(), "alice@example.org/Phone");
        assert_eq!(iq.payload.unwrap().name(), "vCard");
        assert_eq!(iq.error.as_deref(), Some("item-not-found"));
    }

    #[test]
    fn rejects_missing_id_and_bad_type() {
        let el: Element = "<iq xmlns='jabber:client' type='get'/>".parse().unwrap();
        assert_eq!(Iq::parse(&el), Err(StanzaError::MissingId));
        let el: Element = "<iq xmlns='jabber:client' type='fetch' id='1'/>".parse().unwrap();
        assert_eq!(Iq::parse(&el), Err(StanzaError::BadType(Some("fetch".into()))));
    }

    #[test]
    fn error_reply_swaps_addresses() {
        let el: Element =
            "<iq xmlns='jabber:client' type='get' id='q' from='a@x/r' to='b@x'><query xmlns='jabber:iq:avatar'/></iq>"
                .parse()
                .unwrap();
        let reply = Iq::parse(&el).unwrap().error_reply(ns::CLIENT, Condition::ItemNotFound);
        assert_eq!(
            super::super::xml::to_string(&reply),
            "<iq xmlns='jabber:client' from='b@x' id='q' to='a@x/r' type='error'><error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        );
    }
}
