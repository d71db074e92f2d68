//! XEP-0084 User Avatar (v1.1.4, 2019-09-20): the PEP `data` and `metadata` nodes.
//!
//! Lenient in: all three namespace generations (1.0 `urn:xmpp:avatar:*`, 0.9–0.12 `xep-0084.html#ns-*`, ≤0.8
//! `jabber.org/protocol/avatar#*`), the deprecated `<stop/>`, several `<info/>` (url-only ones too), missing or
//! odd attributes, `<pointer/>`, wrapped base64, any item id. Strict out: current namespaces only, exactly the
//! spec's shapes. Parsers and emitters handle the pubsub payload; the IQ or message around it is the caller's.

use serde::Deserialize;
use xmpp_parsers::minidom::Element;

use crate::avatar::{AvatarHash, HashError};
use crate::image::{PngRendition, Rendition};
use crate::wire::b64::{self, Base64Error};
use crate::wire::ns;
use crate::wire::xml::{Attrs, element, trimmed_text};

/// The revision of XEP-0084 whose namespaces a node or payload uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Generation {
    /// 1.0 and later: `urn:xmpp:avatar:data|metadata`, the only one emitted.
    V1,
    /// 0.9–0.12: `http://www.xmpp.org/extensions/xep-0084.html#ns-data|#ns-metadata` (Pidgin, Psi 2007).
    V0_12,
    /// 0.8 and before: `http://jabber.org/protocol/avatar#data|#metadata` (Psi 2006).
    V0_8,
}

/// Which of the two avatar nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeKind {
    /// The image bytes, `<data/>`.
    Data,
    /// What the current avatar is, `<metadata/>`.
    Metadata,
}

/// An avatar PEP node. Its name is also its payload's namespace (XEP-0163: one namespace per node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AvatarNode {
    /// Data or metadata.
    pub kind: NodeKind,
    /// Which revision's namespace.
    pub generation: Generation,
}

impl AvatarNode {
    /// `urn:xmpp:avatar:data`.
    pub const DATA: Self = Self { kind: NodeKind::Data, generation: Generation::V1 };
    /// `urn:xmpp:avatar:metadata`.
    pub const METADATA: Self = Self { kind: NodeKind::Metadata, generation: Generation::V1 };

    /// Recognises a node name (or payload namespace) of any generation; `None` for every other node.
    pub fn parse(node_name: &str) -> Option<Self> {
        // Psi 2006 declared its payload namespace as "…#ns-data " (trailing space); XML keeps it verbatim.
        let name = node_name.trim_matches(|c: char| c.is_ascii_whitespace());
        [Generation::V1, Generation::V0_12, Generation::V0_8]
            .into_iter()
            .flat_map(|generation| [NodeKind::Data, NodeKind::Metadata].map(|kind| Self { kind, generation }))
            .find(|node| node.name() == name)
    }

    /// The node name, which is also the payload namespace.
    pub fn name(self) -> &'static str {
        match (self.kind, self.generation) {
            (NodeKind::Data, Generation::V1) => ns::AVATAR_DATA,
            (NodeKind::Metadata, Generation::V1) => ns::AVATAR_METADATA,
            (NodeKind::Data, Generation::V0_12) => ns::AVATAR_DATA_0_12,
            (NodeKind::Metadata, Generation::V0_12) => ns::AVATAR_METADATA_0_12,
            (NodeKind::Data, Generation::V0_8) => ns::AVATAR_DATA_0_8,
            (NodeKind::Metadata, Generation::V0_8) => ns::AVATAR_METADATA_0_8,
        }
    }
}

/// Why an XEP-0084 payload or its pubsub wrapper was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Xep0084Error {
    /// The element is not the one this parser reads (name or namespace).
    #[error("expected {expected}, got <{name} xmlns='{ns}'/>")]
    UnexpectedElement {
        /// What was expected.
        expected: &'static str,
        /// The element's name.
        name: String,
        /// The element's namespace.
        ns: String,
    },
    /// A required child element is absent.
    #[error("expected {expected} in <{parent}/>, found none")]
    MissingChild {
        /// The element searched.
        parent: &'static str,
        /// What was expected in it.
        expected: &'static str,
    },
    /// A pubsub `<items/>`, `<publish/>`, `<purge/>` or `<delete/>` (named here) without the `node` attribute
    /// XEP-0060 requires.
    #[error("expected a node attribute on <{0}/>, found none")]
    MissingNode(String),
    /// An `<info/>` without its REQUIRED `id` (§4.2.1).
    #[error("expected an id attribute (hex SHA-1) on <info/>, found none")]
    MissingInfoId,
    /// An `<info/>` whose `id` is not a hex SHA-1.
    #[error("expected a hex SHA-1 as <info/> id, got {id:?}: {source}")]
    InfoId {
        /// The id as received (at most 48 characters of it).
        id: String,
        /// Why it is not a hash.
        #[source]
        source: HashError,
    },
    /// A `<metadata/>` whose `<info/>` children are all invalid.
    #[error("expected a usable <info/> in <metadata/>, all {count} were invalid; first: {first}")]
    NoValidInfo {
        /// How many `<info/>` there were.
        count: usize,
        /// What was wrong with the first one.
        first: Box<Xep0084Error>,
    },
    /// A `<metadata/>` with children but no `<info/>` and no `<stop/>`: not a "no avatar" signal (§4.2 says a
    /// `<pointer/>` follows at least one `<info/>`), so it must not be read as one. Holds the first child's name.
    #[error("expected <info/> in a non-empty <metadata/>, found only <{0}/>")]
    NoInfo(String),
    /// `<data/>` text that is not base64.
    #[error("expected base64 image bytes in <data/>: {0}")]
    Base64(#[from] Base64Error),
    /// `<data/>` without text.
    #[error("expected base64 image bytes in <data/>, got no text")]
    EmptyData,
}

/// One `<info/>`: an encoding of the avatar, in-band at the data node or at `url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// SHA-1 of that encoding's bytes.
    pub id: AvatarHash,
    /// Claimed size. Only a hint: Psi writes the decoded pixel buffer size; `None` when absent or not an
    /// xs:unsignedInt.
    pub bytes: Option<u32>,
    /// Media type, lower-cased; `None` when absent (Prosody's vcard_legacy copies a vCard without TYPE).
    pub mime: Option<String>,
    /// Width in pixels; `None` when absent or not an xs:unsignedShort.
    pub width: Option<u16>,
    /// Height in pixels; `None` when absent or not an xs:unsignedShort.
    pub height: Option<u16>,
    /// Where to fetch it over HTTP instead of the data node (Conversations' large renditions).
    pub url: Option<String>,
}

/// A `<metadata/>` payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metadata {
    /// The avatar, in document order; never empty.
    Avatar(Vec<Info>),
    /// The owner disabled the avatar: an empty `<metadata/>` (§3.5), or `<stop/>` (1.0, deprecated).
    NoAvatar,
}

impl Metadata {
    /// Reads `<metadata/>` of any generation. An `<info/>` with a bad id is skipped when a sibling is good.
    pub fn parse(el: &Element) -> Result<Self, Xep0084Error> {
        expect_payload(el, NodeKind::Metadata)?;
        let ns = el.ns();
        let (mut infos, mut bad, mut stop) = (Vec::new(), Vec::new(), false);
        for child in el.children().filter(|c| c.ns() == ns) {
            match child.name() {
                "info" => match Info::parse(child) {
                    Ok(info) => infos.push(info),
                    Err(e) => bad.push(e),
                },
                "stop" => stop = true,
                _ => {} // <pointer/> (§4.2.2, third-party services) and later additions: nothing to read
            }
        }
        if !infos.is_empty() {
            // Infos win over a contradictory <stop/>: never turn a usable avatar into "no avatar".
            return Ok(Self::Avatar(infos));
        }
        let count = bad.len();
        if let Some(first) = bad.into_iter().next() {
            return Err(Xep0084Error::NoValidInfo { count, first: Box::new(first) });
        }
        match el.children().next() {
            Some(child) if !stop => Err(Xep0084Error::NoInfo(child.name().to_owned())),
            _ => Ok(Self::NoAvatar),
        }
    }

    /// The infos; empty for [`Metadata::NoAvatar`].
    pub fn infos(&self) -> &[Info] {
        match self {
            Self::Avatar(infos) => infos,
            Self::NoAvatar => &[],
        }
    }

    /// The info whose bytes are at the data node: XEP-0398 (PEP to vCard) "MUST pick the info element that does
    /// not point to an external URL"; the first such, as ejabberd does. `None` when all are url infos.
    pub fn inline_info(&self) -> Option<&Info> {
        self.infos().iter().find(|info| info.url.is_none())
    }
}

impl Info {
    fn parse(el: &Element) -> Result<Self, Xep0084Error> {
        let id = el.attr("id").ok_or(Xep0084Error::MissingInfoId)?;
        let id = AvatarHash::parse(id)
            .map_err(|source| Xep0084Error::InfoId { id: id.chars().take(48).collect(), source })?;
        // Numbers that do not fit their XML Schema type become None rather than failing the info: they are
        // hints, and Psi's `bytes` is a pixel-buffer size that overflows on large images.
        Ok(Self {
            id,
            bytes: number(el, "bytes"),
            mime: text_attr(el, "type").map(|t| t.to_ascii_lowercase()),
            width: number(el, "width"),
            height: number(el, "height"),
            url: text_attr(el, "url"),
        })
    }
}

fn text_attr(el: &Element, name: &str) -> Option<String> {
    let value = el.attr(name)?.trim_matches(|c: char| c.is_ascii_whitespace());
    (!value.is_empty()).then(|| value.to_owned())
}

fn number<T: std::str::FromStr>(el: &Element, name: &str) -> Option<T> {
    text_attr(el, name)?.parse().ok()
}

/// Decodes `<data/>` of any generation. Attributes are ignored (§4.1 forbids them, nothing depends on them) and
/// line breaks accepted (§4.1 "MUST be accepted"; Prosody copies a vCard's wrapped BINVAL verbatim).
pub fn parse_data(el: &Element) -> Result<Vec<u8>, Xep0084Error> {
    expect_payload(el, NodeKind::Data)?;
    let text = trimmed_text(el).ok_or(Xep0084Error::EmptyData)?;
    Ok(b64::decode(&text)?)
}

fn expect_payload(el: &Element, kind: NodeKind) -> Result<Generation, Xep0084Error> {
    let (name, expected) = match kind {
        NodeKind::Data => ("data", "<data/> in an XEP-0084 data namespace"),
        NodeKind::Metadata => ("metadata", "<metadata/> in an XEP-0084 metadata namespace"),
    };
    match AvatarNode::parse(&el.ns()) {
        Some(node) if node.kind == kind && el.name() == name => Ok(node.generation),
        _ => Err(unexpected(el, expected)),
    }
}

fn unexpected(el: &Element, expected: &'static str) -> Xep0084Error {
    Xep0084Error::UnexpectedElement { expected, name: el.name().to_owned(), ns: el.ns() }
}

/// The payload of one pubsub item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// A `<metadata/>`.
    Metadata(Metadata),
    /// The decoded bytes of a `<data/>`.
    Data(Vec<u8>),
    /// No payload (notification without payload, or a bare item id).
    Empty,
}

/// One pubsub item. Its payload is parsed on its own so one bad item does not spoil its siblings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The ItemID as received: a hash by §3.1, but Psi writes `current` and Prosody a UUID for "no avatar".
    pub id: Option<String>,
    /// `publisher` (XEP-0060 §7.1.2.3; Prosody adds it), used to recognise the gateway's own echoes.
    pub publisher: Option<String>,
    /// The payload, or why it was refused.
    pub payload: Result<Payload, Xep0084Error>,
}

impl Item {
    /// The ItemID as a hash, when it is one.
    pub fn hash(&self) -> Option<AvatarHash> {
        AvatarHash::parse(self.id.as_deref()?).ok()
    }

    fn parse(el: &Element) -> Self {
        // The payload's own element decides, not the node: XEP-0084 1.0's §3.5 example published
        // <metadata><stop/></metadata> to the data node.
        let payload = match el.children().next() {
            None => Ok(Payload::Empty),
            Some(p) if p.name() == "metadata" => Metadata::parse(p).map(Payload::Metadata),
            Some(p) if p.name() == "data" => parse_data(p).map(Payload::Data),
            Some(p) => Err(unexpected(p, "an XEP-0084 <data/> or <metadata/> payload")),
        };
        Self { id: text_attr(el, "id"), publisher: text_attr(el, "publisher"), payload }
    }
}

fn items_in(el: &Element) -> Vec<Item> {
    el.children().filter(|c| c.name() == "item" && c.ns() == el.ns()).map(Item::parse).collect()
}

fn node_of(el: &Element) -> Result<Option<AvatarNode>, Xep0084Error> {
    let node = el.attr("node").ok_or_else(|| Xep0084Error::MissingNode(el.name().to_owned()))?;
    Ok(AvatarNode::parse(node))
}

/// A pubsub event (XEP-0060 §7.1.2.1, §7.2.2.1, §8.4, §8.5) on an avatar node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Items published and/or retracted.
    Items {
        /// The node.
        node: AvatarNode,
        /// Published items, in document order.
        published: Vec<Item>,
        /// Ids of retracted items.
        retracted: Vec<String>,
    },
    /// Every item was removed (notified by ejabberd; Prosody purges silently).
    Purged {
        /// The node.
        node: AvatarNode,
    },
    /// The node was deleted: Dino's and Conversations' "no avatar".
    Deleted {
        /// The node.
        node: AvatarNode,
    },
}

/// Reads `<event xmlns='…pubsub#event'>` from a notification message; `Ok(None)` when it is not about an avatar
/// node or is another kind of event (configuration, subscription).
pub fn parse_event(event: &Element) -> Result<Option<Event>, Xep0084Error> {
    if !event.is("event", ns::PUBSUB_EVENT) {
        return Err(unexpected(event, "<event xmlns='http://jabber.org/protocol/pubsub#event'/>"));
    }
    let Some(inner) = event.children().find(|c| c.ns() == ns::PUBSUB_EVENT) else {
        return Err(Xep0084Error::MissingChild { parent: "event", expected: "<items/>, <purge/> or <delete/>" });
    };
    if !matches!(inner.name(), "items" | "purge" | "delete") {
        return Ok(None);
    }
    let Some(node) = node_of(inner)? else { return Ok(None) };
    Ok(Some(match inner.name() {
        "purge" => Event::Purged { node },
        "delete" => Event::Deleted { node },
        _ => Event::Items {
            node,
            published: items_in(inner),
            // A <retract/> without id names nothing; skip it.
            retracted: inner
                .children()
                .filter(|c| c.is("retract", ns::PUBSUB_EVENT))
                .filter_map(|r| text_attr(r, "id"))
                .collect(),
        },
    }))
}

/// The `name` child of `<pubsub xmlns='…pubsub'>`.
fn pubsub_child<'a>(pubsub: &'a Element, name: &str, expected: &'static str) -> Result<&'a Element, Xep0084Error> {
    if !pubsub.is("pubsub", ns::PUBSUB) {
        return Err(unexpected(pubsub, "<pubsub xmlns='http://jabber.org/protocol/pubsub'/>"));
    }
    pubsub.get_child(name, ns::PUBSUB).ok_or(Xep0084Error::MissingChild { parent: "pubsub", expected })
}

/// Reads an items result (`<pubsub><items node=…>`, XEP-0060 §6.5); `Ok(None)` for a non-avatar node.
pub fn parse_items(pubsub: &Element) -> Result<Option<(AvatarNode, Vec<Item>)>, Xep0084Error> {
    let items = pubsub_child(pubsub, "items", "<items/>")?;
    Ok(node_of(items)?.map(|node| (node, items_in(items))))
}

/// A node access model (XEP-0060 §4.5). `authorize` is not offered: PEP need not support it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessModel {
    /// Anyone.
    Open,
    /// Contacts with a presence subscription (PEP's default, XEP-0163).
    Presence,
    /// Contacts in allowed roster groups.
    Roster,
    /// Listed JIDs only.
    Whitelist,
}

impl AccessModel {
    /// The value of `pubsub#access_model`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Presence => "presence",
            Self::Roster => "roster",
            Self::Whitelist => "whitelist",
        }
    }

    /// Reads a `pubsub#access_model` value; `None` for any other.
    pub fn parse(value: &str) -> Option<Self> {
        [Self::Open, Self::Presence, Self::Roster, Self::Whitelist].into_iter().find(|m| m.as_str() == value.trim())
    }
}

/// A publish request (`<pubsub><publish node=…>`), as a client or a XEP-0227 export writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// The node.
    pub node: AvatarNode,
    /// The items.
    pub items: Vec<Item>,
    /// `pubsub#access_model` from publish-options, when given and known.
    pub access_model: Option<AccessModel>,
}

/// Reads a publish request; `Ok(None)` for a non-avatar node.
pub fn parse_publish(pubsub: &Element) -> Result<Option<Publish>, Xep0084Error> {
    let publish = pubsub_child(pubsub, "publish", "<publish/>")?;
    let Some(node) = node_of(publish)? else { return Ok(None) };
    // Only the field is read, whatever the FORM_TYPE: the service, not the gateway, validates the form.
    let access_model = pubsub
        .get_child("publish-options", ns::PUBSUB)
        .and_then(|o| o.get_child("x", ns::DATA_FORMS))
        .and_then(|x| {
            x.children().find(|f| f.is("field", ns::DATA_FORMS) && f.attr("var") == Some("pubsub#access_model"))
        })
        .and_then(|f| f.get_child("value", ns::DATA_FORMS))
        .and_then(|v| AccessModel::parse(&v.text()));
    Ok(Some(Publish { node, items: items_in(publish), access_model }))
}

/// Publishes `png` to the data node (§3.1): the [`data_item`].
pub fn publish_data(png: &PngRendition, access: Option<AccessModel>) -> Element {
    publish(AvatarNode::DATA, data_item(png), access)
}

/// Publishes the metadata (§3.2): the [`metadata_item`].
pub fn publish_metadata(png: &PngRendition, alternates: &[&Rendition], access: Option<AccessModel>) -> Element {
    publish(AvatarNode::METADATA, metadata_item(png, alternates), access)
}

/// Disables the avatar (§3.5): an empty `<metadata/>` in an item without id.
pub fn publish_no_avatar(access: Option<AccessModel>) -> Element {
    publish(AvatarNode::METADATA, item(None, element("metadata", ns::AVATAR_METADATA).build()), access)
}

/// The data node's item (§3.1): item id = the PNG's SHA-1, base64 on one line. The live engine publishes it and
/// the XEP-0227 migration writes it into exports, so both produce the same bytes.
pub fn data_item(png: &PngRendition) -> Element {
    item(Some(png.hash()), element("data", ns::AVATAR_DATA).append(b64::encode(png.bytes())).build())
}

/// The metadata node's item (§3.2): item id = SHA-1 of the PNG (§3.1 "MUST"), its `<info/>` first, then the
/// alternates (same image, other encodings, §4.2.1), each once.
pub fn metadata_item(png: &PngRendition, alternates: &[&Rendition]) -> Element {
    let mut seen = vec![png.hash()];
    let mut metadata = element("metadata", ns::AVATAR_METADATA).append(info(png));
    for alternate in alternates {
        // One id twice would be ambiguous to readers that key by id (Dino).
        if !seen.contains(&alternate.hash()) {
            seen.push(alternate.hash());
            metadata = metadata.append(info(alternate));
        }
    }
    item(Some(png.hash()), metadata.build())
}

fn info(r: &Rendition) -> Element {
    // width/height are xs:unsignedShort (since 1.1.2) and only RECOMMENDED: omitted when they do not fit.
    let side = |v: u32| u16::try_from(v).ok().map(|v| v.to_string());
    element("info", ns::AVATAR_METADATA)
        .with_attr("bytes", r.bytes().len().to_string())
        .with_attr_opt("height", side(r.height()))
        .with_attr("id", r.hash().to_string())
        .with_attr("type", r.mime())
        .with_attr_opt("width", side(r.width()))
        .build()
}

fn item(id: Option<AvatarHash>, payload: Element) -> Element {
    element("item", ns::PUBSUB).with_attr_opt("id", id.map(|h| h.to_string())).append(payload).build()
}

fn publish(node: AvatarNode, item: Element, access: Option<AccessModel>) -> Element {
    let publish = element("publish", ns::PUBSUB).with_attr("node", node.name()).append(item).build();
    let mut pubsub = element("pubsub", ns::PUBSUB).append(publish);
    if let Some(access) = access {
        // XEP-0060 §7.1.5: a precondition; a mismatch on an existing node fails (see `configure`).
        let form = submit_form(ns::PUBSUB_PUBLISH_OPTIONS, &[("pubsub#access_model", access.as_str().to_owned())]);
        pubsub = pubsub.append(element("publish-options", ns::PUBSUB).append(form).build());
    }
    pubsub.build()
}

/// A jabber:x:data submit form (XEP-0004 §3.1) with its hidden FORM_TYPE first (XEP-0068).
fn submit_form(form_type: &str, fields: &[(&'static str, String)]) -> Element {
    let field = |var: &'static str, value: &str| {
        let value = element("value", ns::DATA_FORMS).append(value.to_owned()).build();
        element("field", ns::DATA_FORMS).with_attr("var", var).append(value)
    };
    let mut x = element("x", ns::DATA_FORMS)
        .with_attr("type", "submit")
        .append(field("FORM_TYPE", form_type).with_attr("type", "hidden").build());
    for (var, value) in fields {
        x = x.append(field(var, value).build());
    }
    x.build()
}

/// Retrieves items (§3.4): the one with `id` when given, else all of them.
pub fn request_items(node: AvatarNode, id: Option<&AvatarHash>) -> Element {
    let mut items = element("items", ns::PUBSUB).with_attr("node", node.name());
    if let Some(id) = id {
        items = items.append(element("item", ns::PUBSUB).with_attr("id", id.to_string()).build());
    }
    element("pubsub", ns::PUBSUB).append(items.build()).build()
}

/// Reconfigures a node (XEP-0060 §8.2.4, in the separate pubsub#owner namespace): how the gateway recovers from
/// a publish-options `precondition-not-met` and raises `max_items`.
pub fn configure(node: AvatarNode, access: AccessModel, max_items: Option<u32>) -> Element {
    element("pubsub", ns::PUBSUB_OWNER).append(node_config(node, access, max_items)).build()
}

/// The `<configure node=…>` element with its node_config form: inside [`configure`], and what a XEP-0227 export
/// holds per PEP node (XEP-0227 v1.1).
pub fn node_config(node: AvatarNode, access: AccessModel, max_items: Option<u32>) -> Element {
    let mut fields = vec![("pubsub#access_model", access.as_str().to_owned())];
    fields.extend(max_items.map(|max| ("pubsub#max_items", max.to_string())));
    let form = submit_form(ns::PUBSUB_NODE_CONFIG, &fields);
    element("configure", ns::PUBSUB_OWNER).with_attr("node", node.name()).append(form).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC: &str = "a9993e364706816aba3e25717850c26c9cd0d89d"; // SHA-1("abc"), RFC 3174

    fn el(xml: &str) -> Element {
        xml.parse().unwrap()
    }

    fn metadata(children: &str) -> Result<Metadata, Xep0084Error> {
        Metadata::parse(&el(&format!("<metadata xmlns='urn:xmpp:avatar:metadata'>{children}</metadata>")))
    }

    #[test]
    fn names_nodes_and_access_models() {
        for name in [ns::AVATAR_DATA, ns::AVATAR_METADATA_0_12, ns::AVATAR_DATA_0_8, ns::AVATAR_METADATA_0_8] {
            assert_eq!(AvatarNode::parse(name).map(AvatarNode::name), Some(name));
        }
        assert_eq!(AvatarNode::parse("urn:xmpp:avatar:metadata+notify"), None);
        for model in [AccessModel::Open, AccessModel::Presence, AccessModel::Roster, AccessModel::Whitelist] {
            assert_eq!(AccessModel::parse(model.as_str()), Some(model));
        }
        assert_eq!(AccessModel::parse("authorize"), None);
    }

    #[test]
    fn odd_numbers_and_type_are_only_hints() {
        let info = format!("<info id='{ABC}' bytes='4294967296' width='65536' height='-1' type=' IMAGE/PNG '/>");
        let (id, mime) = (AvatarHash::of(b"abc"), Some("image/png".into()));
        let expected = Info { id, bytes: None, mime, width: None, height: None, url: None };
        assert_eq!(metadata(&info), Ok(Metadata::Avatar(vec![expected])));
    }

    #[test]
    fn skips_a_bad_info_and_picks_the_inline_one() {
        let md = metadata(&format!("<info id='nope'/><info id='{ABC}' url='https://x/a'/><info id='{ABC}'/>")).unwrap();
        assert_eq!((md.infos().len(), md.inline_info()), (2, md.infos().get(1)));
        assert_eq!(metadata(&format!("<info id='{ABC}' url='https://x/a'/>")).unwrap().inline_info(), None);
    }

    #[test]
    fn stop_and_empty_mean_no_avatar_but_infos_win() {
        assert_eq!(metadata(""), Ok(Metadata::NoAvatar));
        assert_eq!(metadata(" <stop/> "), Ok(Metadata::NoAvatar));
        assert!(matches!(metadata(&format!("<stop/><info id='{ABC}'/>")), Ok(Metadata::Avatar(_))));
    }

    #[test]
    fn rejects_wrong_element() {
        let (expected, name, ns) =
            ("<metadata/> in an XEP-0084 metadata namespace", "metadata".into(), ns::AVATAR_DATA.into());
        let err = Metadata::parse(&el("<metadata xmlns='urn:xmpp:avatar:data'/>"));
        assert_eq!(err, Err(Xep0084Error::UnexpectedElement { expected, name, ns }));
        let err = parse_event(&el("<event xmlns='http://jabber.org/protocol/pubsub'/>")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected <event xmlns='http://jabber.org/protocol/pubsub#event'/>, got <event xmlns='http://jabber.org/protocol/pubsub'/>"
        );
    }

    #[test]
    fn rejects_metadata_whose_infos_are_all_invalid() {
        let first = Box::new(Xep0084Error::MissingInfoId);
        assert_eq!(metadata("<info bytes='1'/><info id='abc'/>"), Err(Xep0084Error::NoValidInfo { count: 2, first }));
        // 40 bytes with a non-ASCII char at an odd offset: panics xmpp-parsers 0.23, an error here.
        let evil = format!("0é{}", &ABC[..38]);
        let first = Box::new(Xep0084Error::InfoId { id: evil.clone(), source: HashError::NotHex('é') });
        assert_eq!(metadata(&format!("<info id='{evil}'/>")), Err(Xep0084Error::NoValidInfo { count: 1, first }));
    }

    #[test]
    fn rejects_pointer_without_info() {
        assert_eq!(metadata("<pointer><x xmlns='urn:game'/></pointer>"), Err(Xep0084Error::NoInfo("pointer".into())));
    }

    #[test]
    fn rejects_bad_or_empty_base64() {
        let data = |text: &str| parse_data(&el(&format!("<data xmlns='urn:xmpp:avatar:data'>{text}</data>")));
        assert_eq!(data("iVBO*w0K"), Err(Xep0084Error::Base64(b64::decode("iVBO*w0K").unwrap_err())));
        assert_eq!(data(" \n "), Err(Xep0084Error::EmptyData));
        assert_eq!(data("YW\nJj\n"), Ok(b"abc".to_vec()));
    }

    #[test]
    fn rejects_pubsub_without_node_or_child() {
        let pubsub = el("<pubsub xmlns='http://jabber.org/protocol/pubsub'><items/></pubsub>");
        assert_eq!(parse_items(&pubsub), Err(Xep0084Error::MissingNode("items".into())));
        assert_eq!(
            parse_publish(&pubsub),
            Err(Xep0084Error::MissingChild { parent: "pubsub", expected: "<publish/>" })
        );
        let missing = Xep0084Error::MissingChild { parent: "event", expected: "<items/>, <purge/> or <delete/>" };
        assert_eq!(parse_event(&el("<event xmlns='http://jabber.org/protocol/pubsub#event'/>")), Err(missing));
    }

    #[test]
    fn one_bad_item_does_not_spoil_its_siblings() {
        let xml = format!(
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:avatar:metadata'>\
             <item id='{ABC}'><metadata xmlns='urn:xmpp:avatar:metadata'><info id='{ABC}'/></metadata></item>\
             <item id='x'><metadata xmlns='urn:xmpp:avatar:metadata'><info/></metadata></item>\
             <item id='y'><geoloc xmlns='http://jabber.org/protocol/geoloc'/></item></items></pubsub>"
        );
        let (node, items) = parse_items(&el(&xml)).unwrap().unwrap();
        assert_eq!((node, items[0].hash()), (AvatarNode::METADATA, Some(AvatarHash::of(b"abc"))));
        assert!(matches!(items[0].payload, Ok(Payload::Metadata(Metadata::Avatar(_)))));
        assert!(matches!(items[1].payload, Err(Xep0084Error::NoValidInfo { .. })));
        assert!(matches!(items[2].payload, Err(Xep0084Error::UnexpectedElement { .. })));
    }

    #[test]
    fn other_nodes_and_events_are_none() {
        let event =
            |inner: &str| el(&format!("<event xmlns='http://jabber.org/protocol/pubsub#event'>{inner}</event>"));
        assert_eq!(parse_event(&event("<items node='urn:xmpp:microblog:0'/>")), Ok(None));
        assert_eq!(parse_event(&event("<configuration node='urn:xmpp:avatar:data'/>")), Ok(None));
    }
}
