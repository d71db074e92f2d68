//! One `<user/>` element, buffered: its raw bytes, the subtrees that say what avatar it has, and the spots where
//! avatar nodes can be inserted. Memory is bounded by the largest user, never by the export.
//!
//! What is read follows Prosody's XEP-0227 importer (mod_storage_xep0227), which reads only the **first**
//! `pubsub#owner` wrapper and the **first** `pubsub` wrapper among the user's children, the first `<items/>` of a
//! node, the first vCard and the first private XML query.

use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use xmpp_parsers::minidom::Element;

use super::capture::Capture;
use crate::wire::ns;
use crate::wire::xep0084::NodeKind;

/// jabber:iq:private (XEP-0049), where clients keep private XML; XEP-0227 exports it as is.
const PRIVATE: &str = "jabber:iq:private";

/// A place in the buffered `<user/>` where text can go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Spot {
    /// Just before the end tag that starts at this offset.
    Before(usize),
    /// Inside a self-closing tag whose `/>` starts at `at`: it becomes `>`, the text, then `close`.
    Open {
        /// Offset of `/>`.
        at: usize,
        /// The end tag to write, with the prefix as written (`</pubsub>`).
        close: String,
    },
}

impl Spot {
    pub(super) fn offset(&self) -> usize {
        match self {
            Self::Before(at) | Self::Open { at, .. } => *at,
        }
    }

    fn open(at: usize, start: &BytesStart, raw: &[u8]) -> Option<Self> {
        let slash = at + raw.len().checked_sub(2)?;
        raw.ends_with(b"/>").then(|| Self::Open { at: slash, close: format!("</{}>", start.name().as_ref()) })
    }
}

/// One value per avatar node.
#[derive(Debug, Default)]
pub(super) struct PerNode<T> {
    data: T,
    metadata: T,
}

impl<T> PerNode<T> {
    pub(super) fn get(&self, kind: NodeKind) -> &T {
        match kind {
            NodeKind::Data => &self.data,
            NodeKind::Metadata => &self.metadata,
        }
    }

    fn get_mut(&mut self, kind: NodeKind) -> &mut T {
        match kind {
            NodeKind::Data => &mut self.data,
            NodeKind::Metadata => &mut self.metadata,
        }
    }
}

/// An avatar node's `<items/>`, wrapped in a `<pubsub/>` so `xep0084::parse_items` reads it, and where an item
/// can be appended to it.
#[derive(Debug)]
pub(super) struct NodeItems {
    pub(super) pubsub: Element,
    pub(super) spot: Spot,
}

/// The direct child of `<user/>` being read, when its children matter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Within {
    /// The first jabber:iq:private query.
    Private,
    /// The first pubsub#owner wrapper.
    Owner,
    /// The first pubsub wrapper.
    Pubsub,
}

/// Which subtree a capture fills.
#[derive(Debug, Clone, Copy)]
enum Slot {
    VCard,
    Legacy,
    PrivateLegacy,
    Items(NodeKind),
}

/// A buffered `<user/>`, reused from one user to the next (its buffer keeps the largest user's capacity).
#[derive(Default)]
pub(super) struct UserScan {
    /// The `name` attribute (the account's localpart).
    pub(super) name: Option<String>,
    /// The raw bytes so far, from `<user` on.
    pub(super) buf: Vec<u8>,
    /// Elements open below `<user/>`.
    depth: usize,
    within: Option<Within>,
    capture: Option<(Slot, Capture)>,
    seen_private: bool,
    /// The first `<vCard xmlns='vcard-temp'/>`.
    pub(super) vcard: Option<Element>,
    /// The first `storage:client:avatar` `<query/>` or `<storage/>` among the user's children.
    pub(super) legacy: Option<Element>,
    /// The first one in the first private XML query.
    pub(super) private_legacy: Option<Element>,
    /// The end of the first pubsub#owner wrapper.
    pub(super) owner: Option<Spot>,
    /// The end of the first pubsub wrapper.
    pub(super) pubsub: Option<Spot>,
    /// Whether the first owner wrapper has a `<configure/>` for the node.
    pub(super) configured: PerNode<bool>,
    /// The node's first `<items/>` in the first pubsub wrapper.
    pub(super) items: PerNode<Option<NodeItems>>,
    /// An `<xi:include/>` inside the user: its content is elsewhere.
    pub(super) includes: bool,
    /// Where `</user>` starts.
    pub(super) end: usize,
}

impl UserScan {
    /// Starts a user at its start tag.
    pub(super) fn begin(&mut self, start: &BytesStart, raw: &[u8]) {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.extend_from_slice(raw);
        *self = Self { name: attr(start, "name"), buf, ..Self::default() };
    }

    /// Takes one event inside the user, with its namespace and raw bytes; `true` once `</user>` is read.
    pub(super) fn feed(&mut self, ns: Option<&str>, event: &Event, raw: &[u8]) -> bool {
        let at = self.buf.len();
        self.buf.extend_from_slice(raw);
        match event {
            Event::Start(start) => {
                self.depth += 1;
                self.start(ns.unwrap_or(""), start, None);
            }
            Event::Empty(start) => {
                let level = self.depth + 1;
                self.depth = level;
                self.start(ns.unwrap_or(""), start, Spot::open(at, start, raw));
                self.end_tag(at);
            }
            Event::End(_) if self.depth == 0 => {
                self.end = at;
                return true;
            }
            Event::End(_) => self.end_tag(at),
            Event::Text(text) => self.text(&text.xml10_content()),
            Event::CData(text) => self.text(&text.xml10_content()),
            Event::GeneralRef(reference) => {
                if let Some((_, capture)) = &mut self.capture {
                    capture.reference(reference);
                }
            }
            _ => {}
        }
        false
    }

    fn text(&mut self, text: &str) {
        if let Some((_, capture)) = &mut self.capture {
            capture.text(text);
        }
    }

    /// A start tag at `self.depth`; `empty` is the spot inside it when it is self-closing (the caller then calls
    /// `end_tag` right away).
    fn start(&mut self, ns: &str, start: &BytesStart, empty: Option<Spot>) {
        if let Some((_, capture)) = &mut self.capture {
            capture.open(ns, start);
            return;
        }
        let name = start.local_name();
        match (self.depth, self.within, name.as_ref(), ns) {
            (1, _, "vCard", ns::VCARD) if self.vcard.is_none() => self.capture(Slot::VCard, ns, start),
            (1, _, "query" | "storage", ns::STORAGE_AVATAR) if self.legacy.is_none() => {
                self.capture(Slot::Legacy, ns, start)
            }
            (1, _, "query", PRIVATE) if !self.seen_private => {
                self.seen_private = true;
                self.within = Some(Within::Private);
            }
            (1, _, "pubsub", ns::PUBSUB_OWNER) if self.owner.is_none() => {
                self.within = Some(Within::Owner);
                self.owner = empty;
            }
            (1, _, "pubsub", ns::PUBSUB) if self.pubsub.is_none() => {
                self.within = Some(Within::Pubsub);
                self.pubsub = empty;
            }
            (1, ..) => self.within = None,
            (2, Some(Within::Private), "query" | "storage", ns::STORAGE_AVATAR) if self.private_legacy.is_none() => {
                self.capture(Slot::PrivateLegacy, ns, start)
            }
            (2, Some(Within::Owner), "configure", ns::PUBSUB_OWNER) => {
                if let Some(kind) = avatar_node(start) {
                    *self.configured.get_mut(kind) = true;
                }
            }
            (2, Some(Within::Pubsub), "items", ns::PUBSUB) => match avatar_node(start) {
                Some(kind) if self.items.get(kind).is_none() => {
                    let parent = Element::bare("pubsub", ns::PUBSUB);
                    self.capture = Some((Slot::Items(kind), Capture::within(parent, ns, start)));
                    // A self-closing <items/> is complete already, and its spot is inside it.
                    if let Some(spot) = empty {
                        self.finish_capture(spot);
                    }
                }
                _ => {}
            },
            _ => {}
        }
    }

    fn capture(&mut self, slot: Slot, ns: &str, start: &BytesStart) {
        self.capture = Some((slot, Capture::new(ns, start)));
    }

    /// An end tag at `self.depth` starting at `at` (also called right after a self-closing start).
    fn end_tag(&mut self, at: usize) {
        if self.capture.is_some() {
            self.finish_capture(Spot::Before(at));
        } else if self.depth == 1 {
            match self.within.take() {
                Some(Within::Owner) if self.owner.is_none() => self.owner = Some(Spot::Before(at)),
                Some(Within::Pubsub) if self.pubsub.is_none() => self.pubsub = Some(Spot::Before(at)),
                _ => {}
            }
        }
        self.depth = self.depth.saturating_sub(1);
    }

    /// Closes the innermost captured element; when that was the capture's root, files it with `spot` (where its end
    /// tag is).
    fn finish_capture(&mut self, spot: Spot) {
        let Some((slot, capture)) = &mut self.capture else { return };
        let Some(done) = capture.close() else { return };
        let slot = *slot;
        self.capture = None;
        match slot {
            Slot::VCard => self.vcard = Some(done),
            Slot::Legacy => self.legacy = Some(done),
            Slot::PrivateLegacy => self.private_legacy = Some(done),
            Slot::Items(kind) => *self.items.get_mut(kind) = Some(NodeItems { pubsub: done, spot }),
        }
    }
}

/// Which avatar node an element's `node` attribute names: the current namespace only, spelt exactly (Prosody
/// compares node names as strings; older generations are other nodes).
fn avatar_node(start: &BytesStart) -> Option<NodeKind> {
    match attr(start, "node")?.as_str() {
        ns::AVATAR_DATA => Some(NodeKind::Data),
        ns::AVATAR_METADATA => Some(NodeKind::Metadata),
        _ => None,
    }
}

/// An unprefixed attribute's value, unescaped.
pub(super) fn attr(start: &BytesStart, name: &str) -> Option<String> {
    let attribute = start.attributes().flatten().find(|a| a.key.as_ref() == name)?;
    attribute.normalized_value(XmlVersion::default()).ok().map(|v| v.into_owned())
}
