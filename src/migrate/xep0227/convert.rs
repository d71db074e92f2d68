//! What to do with one buffered user: keep it, or the avatar nodes to insert and where.
//!
//! - A **usable XEP-0084 avatar** (the metadata node's last item has an inline `<info/>` naming a data item whose
//!   id is the SHA-1 of its decoded bytes, as mod_vcard_legacy looks it up) is kept: `skipped`. So is an empty
//!   metadata item (the user's deliberate "no avatar") and a metadata item listing only URL-hosted images.
//! - Otherwise the source is the vCard PHOTO (BINVAL), else XEP-0008 `storage:client:avatar` data (a child of
//!   `<user/>` or kept in private XML). An EXTVAL-only PHOTO is not fetched: `skipped`. Bytes that are not a
//!   usable image are `refused`, and the user is copied unchanged.
//! - The image goes through the live gateway's pipeline (`Rendition::from_bytes`, `to_png`) and is written with
//!   the same item builders the gateway publishes with (`xep0084::data_item`, `metadata_item`, `node_config`).
//! - Nothing is ever removed. Avatar nodes that exist but hold no usable avatar (metadata naming missing data,
//!   items of a node without configuration, a broken item) get the new items **appended** to their first
//!   `<items/>`, where the last item is the current one; a node already configured keeps its configuration (and
//!   access model); a data item already holding the PNG is not added twice.

use std::borrow::Cow;
use std::num::NonZeroUsize;

use lru::LruCache;
use xmpp_parsers::minidom::Element;

use super::user::{Spot, UserScan};
use crate::avatar::AvatarHash;
use crate::image::{ImageError, ImageLimits, PngRendition, Rendition};
use crate::migrate::report::{Outcome, Source, Why};
use crate::wire::ns;
use crate::wire::vcard::{Photo, VCard};
use crate::wire::xep0008::Query;
use crate::wire::xep0084::{
    self, AccessModel, AvatarNode, Generation, Metadata, NodeKind, Payload, data_item, metadata_item, node_config,
};
use crate::wire::xml::{self, Attrs, element};

/// Distinct images whose renditions are remembered: enough for avatars shared by many accounts (a default
/// picture), bounded so that an export of distinct images does not grow memory (at most this many PEP-sized PNGs).
const REMEMBERED_IMAGES: usize = 64;

/// Decides for each user; remembers the renditions of recent images so a shared one is transcoded once.
pub struct Converter {
    access: AccessModel,
    limits: ImageLimits,
    /// Original's SHA-1 → its PNG rendition, or why it has none.
    renditions: LruCache<AvatarHash, Result<PngRendition, ImageError>>,
}

/// The verdict on one user: what to report, and the text to insert (empty unless converted).
pub(super) struct Decision {
    pub(super) outcome: Outcome,
    pub(super) insertions: Vec<(Spot, String)>,
}

/// The state of the user's XEP-0084 avatar, from the first `<items/>` of each node.
enum Pep {
    Usable,
    NoAvatar,
    UrlOnly,
    /// No usable avatar; `current` is the inline info's id when the last metadata item has one (its data missing).
    Unusable {
        current: Option<AvatarHash>,
    },
}

/// Where the avatar comes from.
enum Found {
    Image(Source, Vec<u8>),
    Extval,
    Nothing,
    Bad(Source, String),
}

impl Converter {
    /// Nodes are created with `access` (kept for nodes that are already configured); images are checked and
    /// transcoded within `limits`.
    pub fn new(access: AccessModel, limits: ImageLimits) -> Self {
        let capacity = NonZeroUsize::new(REMEMBERED_IMAGES).unwrap_or(NonZeroUsize::MIN);
        Self { access, limits, renditions: LruCache::new(capacity) }
    }

    /// Decides for `user`, whose changes would go to `file` (the captured subtrees are used up).
    pub(super) fn decide(&mut self, user: &mut UserScan, file: &str) -> Decision {
        let keep = |outcome| Decision { outcome, insertions: Vec::new() };
        let skip = |why, reason: &str| keep(Outcome::Skipped { why, reason: reason.to_owned() });
        if user.includes {
            return keep(Outcome::Refused {
                why: Why::IncludeInUser,
                reason: "the <user/> has an <xi:include/>, so its avatar nodes cannot all be seen".into(),
            });
        }
        let good_data = good_data_ids(user);
        let current = match pep_state(user, &good_data) {
            Pep::Usable => return skip(Why::HasPepAvatar, "the current metadata item names a valid data item"),
            Pep::NoAvatar => return skip(Why::PepNoAvatar, "the current metadata item is empty: no avatar chosen"),
            Pep::UrlOnly => return skip(Why::PepUrlAvatar, "the current metadata item lists only URL-hosted images"),
            Pep::Unusable { current } => current,
        };
        let (source, bytes) = match find_source(user) {
            Found::Image(source, bytes) => (source, bytes),
            Found::Extval => return skip(Why::Extval, "the vCard PHOTO is an EXTVAL URL, which is not fetched"),
            Found::Nothing => return skip(Why::NoAvatar, "no vCard PHOTO and no storage:client:avatar data"),
            Found::Bad(source, reason) => {
                return keep(Outcome::Refused {
                    why: Why::BadImage,
                    reason: format!("{}: {reason}", source.describe()),
                });
            }
        };
        let png = match self.png(bytes) {
            Ok(png) => png,
            Err(e) => {
                return keep(Outcome::Refused { why: Why::BadImage, reason: format!("{}: {e}", source.describe()) });
            }
        };
        let insertions = self.insertions(user, &png, &good_data, current);
        Decision {
            outcome: Outcome::Converted { source, hash: Some(png.hash()), file: Some(file.to_owned()), wrote: vec![] },
            insertions,
        }
    }

    fn png(&mut self, bytes: Vec<u8>) -> Result<PngRendition, ImageError> {
        let original = AvatarHash::of(&bytes);
        if let Some(known) = self.renditions.get(&original) {
            return known.clone();
        }
        let png = Rendition::from_bytes(bytes, &self.limits).and_then(|r| r.to_png(&self.limits));
        self.renditions.put(original, png.clone());
        png
    }

    /// Configuration for nodes that have none, items appended to existing `<items/>` or new ones, new wrappers
    /// before `</user>` (owner first, as XEP-0227 shows them) when the user has none.
    fn insertions(
        &self,
        user: &UserScan,
        png: &PngRendition,
        good_data: &[AvatarHash],
        current: Option<AvatarHash>,
    ) -> Vec<(Spot, String)> {
        let (mut configures, mut new_items, mut insertions) = (Vec::new(), Vec::new(), Vec::new());
        for kind in [NodeKind::Data, NodeKind::Metadata] {
            let node = AvatarNode { kind, generation: Generation::V1 };
            if !user.configured.get(kind) {
                configures.push(node_config(node, self.access, None));
            }
            let item = match kind {
                NodeKind::Data if good_data.contains(&png.hash()) => continue,
                NodeKind::Metadata if current == Some(png.hash()) => continue,
                NodeKind::Data => data_item(png),
                NodeKind::Metadata => metadata_item(png, &[]),
            };
            match user.items.get(kind) {
                Some(items) => insertions.push((items.spot.clone(), xml::to_string(&item))),
                None => {
                    new_items.push(element("items", ns::PUBSUB).with_attr("node", node.name()).append(item).build())
                }
            }
        }
        let mut before_end = String::new();
        for (children, wrapper, existing) in
            [(configures, ns::PUBSUB_OWNER, &user.owner), (new_items, ns::PUBSUB, &user.pubsub)]
        {
            match (children.is_empty(), existing) {
                (true, _) => {}
                (false, Some(spot)) => insertions.push((spot.clone(), children.iter().map(xml::to_string).collect())),
                (false, None) => {
                    before_end.push_str(&xml::to_string(&element("pubsub", wrapper).append_all(children).build()))
                }
            }
        }
        if !before_end.is_empty() {
            insertions.push((Spot::Before(user.end), before_end));
        }
        insertions
    }
}

/// Ids of data items whose bytes hash to their id: what a metadata info can name.
fn good_data_ids(user: &UserScan) -> Vec<AvatarHash> {
    let Some(items) = user.items.get(NodeKind::Data) else { return Vec::new() };
    let Ok(Some((_, items))) = xep0084::parse_items(&items.pubsub) else { return Vec::new() };
    items
        .iter()
        .filter_map(|item| match (item.hash(), &item.payload) {
            (Some(id), Ok(Payload::Data(bytes))) if AvatarHash::of(bytes) == id => Some(id),
            _ => None,
        })
        .collect()
}

fn pep_state(user: &UserScan, good_data: &[AvatarHash]) -> Pep {
    let unusable = Pep::Unusable { current: None };
    let Some(items) = user.items.get(NodeKind::Metadata) else { return unusable };
    let Ok(Some((_, items))) = xep0084::parse_items(&items.pubsub) else { return unusable };
    // Items are exported oldest first: the last one is the current avatar.
    match items.last().map(|item| &item.payload) {
        Some(Ok(Payload::Metadata(Metadata::NoAvatar))) => Pep::NoAvatar,
        Some(Ok(Payload::Metadata(metadata))) => match metadata.inline_info() {
            Some(info) if good_data.contains(&info.id) => Pep::Usable,
            Some(info) => Pep::Unusable { current: Some(info.id) },
            None => Pep::UrlOnly,
        },
        _ => unusable,
    }
}

/// The vCard PHOTO first (what XEP-0153 clients and servers show), then XEP-0008 data, direct or in private XML.
fn find_source(user: &mut UserScan) -> Found {
    let mut extval = false;
    if let Some(vcard) = user.vcard.take() {
        match VCard::parse(vcard).and_then(|v| v.photo()) {
            Ok(Photo::Binval { bytes, .. }) => return Found::Image(Source::Vcard, bytes),
            Ok(Photo::Extval(_)) => extval = true,
            Ok(Photo::None) => {}
            Err(e) => return Found::Bad(Source::Vcard, e.to_string()),
        }
    }
    for legacy in [&user.legacy, &user.private_legacy].into_iter().flatten() {
        match Query::parse(&as_query(legacy)) {
            Ok(Query { data: Some(data), .. }) => return Found::Image(Source::Xep0008, data.bytes),
            Ok(Query { data: None, .. }) => {}
            Err(e) => return Found::Bad(Source::Xep0008, e.to_string()),
        }
    }
    if extval { Found::Extval } else { Found::Nothing }
}

/// Private XML keeps an element as the client stored it: a `<storage/>` in the namespace reads like the `<query/>`
/// the XEP-0008 codec expects.
fn as_query(el: &Element) -> Cow<'_, Element> {
    if el.name() == "query" {
        Cow::Borrowed(el)
    } else {
        Cow::Owned(Element::builder("query", el.ns()).append_all(el.nodes().cloned()).build())
    }
}
