//! Property tests of the codecs and of the rule every avatar reader enforces.
//!
//! - Round trips: for every model with an emitter, reading what the strict emitter wrote (serialised to text and
//!   parsed again, as it crosses the wire) gives back the model. Hashes and base64 also round-trip through the
//!   lenient shapes clients really send (upper case, surrounding whitespace, wrapped, unpadded base64).
//! - The hash rule (DESIGN §4 rule 3): for random images in PNG, JPEG and GIF, every rendition's hash is the SHA-1
//!   of its bytes, and what each scheme advertises decodes, through that same scheme's XML, to bytes with the
//!   advertised SHA-1.
//! - No panics: arbitrary bytes and arbitrary text (put where each parser looks) never panic a parser.
//!
//! Case counts are kept modest so the whole file runs in seconds in a debug build.

use std::io::Cursor;
use std::sync::LazyLock;

use avatar_gateway::avatar::AvatarHash;
use avatar_gateway::image::{ImageFormat, ImageLimits, PngRendition, Rendition};
use avatar_gateway::wire::component::{self, Privileges};
use avatar_gateway::wire::stanza::Iq;
use avatar_gateway::wire::vcard::{Photo, Update, VCard};
use avatar_gateway::wire::xep0008::{self, LegacyData, Query, Store, XAvatar};
use avatar_gateway::wire::xep0084::{self, AccessModel, AvatarNode, Info, Item, Metadata, Payload, Publish};
use avatar_gateway::wire::{b64, ns, xml};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use xmpp_parsers::minidom::Element;

// ---------------------------------------------------------------------------------------------------------------
// Helpers

/// `cases` cases, and no regression file: a failure prints its minimal input, which belongs in a named test.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

/// What crosses the wire: the element serialised, then parsed back from text.
fn over_the_wire(el: &Element) -> Element {
    let text = xml::to_string(el);
    text.parse().unwrap_or_else(|e| panic!("emitted XML does not parse back ({e}): {text}"))
}

/// A presence in `stanza_ns` carrying `child`, if any.
fn presence(stanza_ns: &str, child: Option<Element>) -> Element {
    let mut p = Element::builder("presence", stanza_ns).build();
    if let Some(child) = child {
        p.append_child(child);
    }
    p
}

/// XML escaping good for both text and attribute values. CR is escaped too, as serialisers do: rxml 0.14 refuses
/// a literal CR followed by a non-ASCII character in an attribute value (`b='\ré'`, well-formed XML).
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
        .replace('\r', "&#13;")
}

/// XML whitespace as clients scatter it.
fn ws() -> impl Strategy<Value = String> {
    "[ \t\r\n]{0,4}"
}

fn any_hash() -> impl Strategy<Value = AvatarHash> {
    any::<[u8; 20]>().prop_map(AvatarHash::from_bytes)
}

fn stanza_ns() -> impl Strategy<Value = &'static str> {
    select(vec![ns::CLIENT, ns::COMPONENT])
}

fn any_access() -> impl Strategy<Value = Option<AccessModel>> {
    proptest::option::of(select(vec![
        AccessModel::Open,
        AccessModel::Presence,
        AccessModel::Roster,
        AccessModel::Whitelist,
    ]))
}

/// A deterministic pixel source, so a case is (size, seed, kind) rather than 160 KB of shrinkable bytes.
fn pixels(width: u32, height: u32, seed: u64, kind: u8) -> image::RgbaImage {
    let mut state = seed | 1;
    let mut next = move || {
        // xorshift64
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let base = next().to_le_bytes();
    image::RgbaImage::from_fn(width, height, |x, y| {
        let r = next().to_le_bytes();
        image::Rgba(match kind {
            // Noise with random alpha: the worst case for every encoder and budget.
            0 => [r[0], r[1], r[2], r[3]],
            // Opaque noise.
            1 => [r[0], r[1], r[2], 255],
            // Gradient with translucent edges: compressible, alpha matters.
            2 => [(x * 255 / width) as u8, (y * 255 / height) as u8, base[0], if x % 7 == 0 { 128 } else { 255 }],
            // Flat blocks with a little noise.
            _ => [base[((x / 8 + y / 8) % 8) as usize], base[1], r[0] & 0x0f, 255],
        })
    })
}

/// `image` encoded as `format` by the `image` crate (JPEG without alpha, which it cannot carry).
fn encode(image: image::RgbaImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    let image = image::DynamicImage::ImageRgba8(image);
    match format {
        ImageFormat::Png => image.write_to(&mut out, image::ImageFormat::Png),
        ImageFormat::Jpeg => {
            image::DynamicImage::ImageRgb8(image.to_rgb8()).write_to(&mut out, image::ImageFormat::Jpeg)
        }
        ImageFormat::Gif => image.write_to(&mut out, image::ImageFormat::Gif),
        ImageFormat::Webp => image.write_to(&mut out, image::ImageFormat::WebP),
    }
    .unwrap_or_else(|e| panic!("encoding {format:?}: {e}"));
    out.into_inner()
}

/// The hash rule for one rendition: hash of exactly these bytes, and the bytes are the claimed format.
fn assert_honest(what: &str, r: &Rendition) {
    assert_eq!(r.hash(), AvatarHash::of(r.bytes()), "{what} {r:?}: hash is not SHA-1 of the bytes");
    assert_eq!(ImageFormat::sniff(r.bytes()), Some(r.format()), "{what} {r:?}: bytes are not the claimed format");
    assert_eq!(r.mime(), r.format().mime());
}

/// A few small, valid renditions of every format, made once, for the XML round trips.
static POOL: LazyLock<Vec<Rendition>> = LazyLock::new(|| {
    let limits = ImageLimits::default();
    [
        (1, 1, 0, ImageFormat::Png),
        (16, 9, 2, ImageFormat::Png),
        (5, 3, 1, ImageFormat::Jpeg),
        (40, 30, 3, ImageFormat::Jpeg),
        (12, 12, 2, ImageFormat::Gif),
        (8, 20, 3, ImageFormat::Webp),
    ]
    .into_iter()
    .enumerate()
    .map(|(seed, (w, h, kind, format))| {
        let r = Rendition::from_bytes(encode(pixels(w, h, seed as u64, kind), format), &limits).unwrap();
        assert_eq!(r.format(), format);
        r
    })
    .collect()
});

fn pooled() -> impl Strategy<Value = Rendition> {
    (0..POOL.len()).prop_map(|i| POOL[i].clone())
}

fn pooled_png() -> impl Strategy<Value = PngRendition> {
    pooled().prop_map(|r| r.to_png(&ImageLimits::default()).unwrap())
}

/// The `<info/>` XEP-0084 readers must get for `r`.
fn info_of(r: &Rendition) -> Info {
    Info {
        id: r.hash(),
        bytes: Some(r.bytes().len() as u32),
        mime: Some(r.mime().to_owned()),
        width: Some(r.width() as u16),
        height: Some(r.height() as u16),
        url: None,
    }
}

/// Calls every parser of the crate on every element of `root` (walked without recursion). Only panics matter.
fn run_every_parser(root: &Element) {
    let mut stack = vec![root];
    while let Some(el) = stack.pop() {
        stack.extend(el.children());
        let _ = AvatarNode::parse(&el.ns());
        if let Ok(m) = Metadata::parse(el) {
            let _ = m.inline_info();
        }
        let _ = xep0084::parse_data(el);
        let _ = xep0084::parse_event(el);
        let _ = xep0084::parse_items(el).map(|o| o.map(|(_, items)| items.iter().map(Item::hash).count()));
        let _ = xep0084::parse_publish(el);
        if let Ok(v) = VCard::parse(el.clone()) {
            let _ = v.photo();
            assert_eq!(v.with_photo(None).photo(), Ok(Photo::None));
        }
        let _ = Update::from_presence(el);
        let _ = XAvatar::from_presence(el);
        let _ = Query::parse(el);
        let _ = Privileges::from_message(el);
        let _ = component::delegated_namespaces(el);
        if let Some(d) = component::delegated(el) {
            let reply = d.inner.result(ns::CLIENT, None);
            if let Ok(outer) = Iq::parse(el) {
                let _ = component::delegated_reply(&outer, d.version, reply);
            }
        }
        if let Ok(iq) = Iq::parse(el) {
            let _ = component::privileged_reply(&iq, el);
        }
        for (_, value) in el.attrs().iter() {
            let _ = component::delegation_disco_namespace(value);
            let _ = AvatarHash::parse(value);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Hash and base64

proptest! {
    #![proptest_config(config(256))]

    /// Display is 40 lower-case hex digits, and parse reads it back in lower, upper or mixed case with any XML
    /// whitespace around it.
    #[test]
    fn hash_display_parses_back_in_any_case_and_whitespace(
        hash in any_hash(),
        upper in vec(any::<bool>(), 40),
        (before, after) in (ws(), ws()),
    ) {
        let shown = hash.to_string();
        prop_assert_eq!(shown.len(), 40);
        prop_assert!(shown.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{}", shown);
        let cased: String =
            shown.chars().zip(&upper).map(|(c, &up)| if up { c.to_ascii_uppercase() } else { c }).collect();
        prop_assert_eq!(AvatarHash::parse(&format!("{before}{shown}{after}")), Ok(hash));
        prop_assert_eq!(AvatarHash::parse(&format!("{before}{}{after}", shown.to_uppercase())), Ok(hash));
        prop_assert_eq!(AvatarHash::parse(&format!("{before}{cased}{after}")), Ok(hash));
    }

    /// Encoded base64 decodes back whatever clients do to it on the way: wrapping at any column with LF, CRLF or
    /// spaces, dropping the padding, scattering whitespace.
    #[test]
    fn base64_decodes_back_wrapped_spaced_and_unpadded(
        bytes in vec(any::<u8>(), 0..600),
        wrap in proptest::option::of(1usize..100),
        separator in select(vec!["\n", "\r\n", " ", "\t", "\r\n "]),
        strip_padding in any::<bool>(),
        scatter in vec((any::<prop::sample::Index>(), select(vec![" ", "\t", "\n", "\r"])), 0..6),
        (before, after) in (ws(), ws()),
    ) {
        let strict = b64::encode(&bytes);
        prop_assert!(!strict.contains(|c: char| c.is_ascii_whitespace()));
        prop_assert_eq!(b64::decode(&strict), Ok(bytes.clone()));
        let mut text = if strip_padding { strict.trim_end_matches('=').to_owned() } else { strict.clone() };
        if let Some(width) = wrap {
            let lines: Vec<&str> =
                text.as_bytes().chunks(width).map(|c| std::str::from_utf8(c).unwrap()).collect();
            text = lines.join(separator);
        }
        for (at, space) in &scatter {
            let at = if text.is_empty() { 0 } else { at.index(text.len() + 1) };
            text.insert_str(at, space);
        }
        let text = format!("{before}{text}{after}");
        prop_assert_eq!(b64::decode(&text), Ok(bytes), "{:?}", text);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Codec round trips: parse(emit(x)) == x

fn any_xavatar() -> impl Strategy<Value = XAvatar> {
    prop_oneof![any_hash().prop_map(XAvatar::Hash), Just(XAvatar::Disabled), Just(XAvatar::Absent)]
}

fn any_update() -> impl Strategy<Value = Update> {
    prop_oneof![
        any_hash().prop_map(Update::Hash),
        Just(Update::NoAvatar),
        Just(Update::NotReady),
        Just(Update::Unknown)
    ]
}

/// vCard children other than the PHOTO: common fields, a lower-case `<photo/>` (not a PHOTO), whitespace, and
/// existing PHOTOs to be replaced.
fn vcard_children() -> impl Strategy<Value = Vec<String>> {
    let child = prop_oneof![
        ("[A-Za-z0-9 .@]{0,12}").prop_map(|t| format!("<FN>{t}</FN>")),
        ("[A-Za-z0-9]{0,8}").prop_map(|t| format!("<NICKNAME>{t}</NICKNAME>")),
        Just("<EMAIL><INTERNET/><USERID>a@b.example</USERID></EMAIL>".to_owned()),
        Just("<photo><binval>AAAA</binval></photo>".to_owned()),
        Just("<X-EXT xmlns='urn:example:ext' a='1'>x</X-EXT>".to_owned()),
        ws(),
        Just("<PHOTO><EXTVAL>https://example.org/old.png</EXTVAL></PHOTO>".to_owned()),
        Just("<PHOTO><TYPE>image/png</TYPE><BINVAL>iVBO\nRw0K</BINVAL></PHOTO>".to_owned()),
        Just("<PHOTO/>".to_owned()),
    ];
    vec(child, 0..6)
}

fn non_photo_children(v: &VCard) -> Vec<Element> {
    v.element().children().filter(|c| !c.is("PHOTO", ns::VCARD)).cloned().collect()
}

proptest! {
    #![proptest_config(config(256))]

    /// XEP-0008 presence: `<x xmlns='jabber:x:avatar'>` (or its absence) reads back as the same state.
    #[test]
    fn xep0008_x_avatar_round_trips(x in any_xavatar(), stanza_ns in stanza_ns()) {
        let p = over_the_wire(&presence(stanza_ns, x.to_element()));
        prop_assert_eq!(XAvatar::from_presence(&p), Ok(x));
    }

    /// XEP-0008 `<query/>` in both namespaces, empty or with data: reads back as the same store and bytes, with
    /// the rendition's real media type as `mimetype`.
    #[test]
    fn xep0008_query_round_trips(
        store in select(vec![Store::IqAvatar, Store::Storage]),
        r in proptest::option::of(pooled()),
    ) {
        let back = Query::parse(&over_the_wire(&xep0008::query(store, r.as_ref())));
        let data = r.map(|r| LegacyData { mimetype: Some(r.mime().to_owned()), bytes: r.bytes().to_vec() });
        prop_assert_eq!(back, Ok(Query { store, data }));
    }

    /// XEP-0153 presence: the four `vcard-temp:x:update` states read back as themselves.
    #[test]
    fn xep0153_update_round_trips(u in any_update(), stanza_ns in stanza_ns()) {
        let p = over_the_wire(&presence(stanza_ns, u.to_element()));
        prop_assert_eq!(Update::from_presence(&p), Ok(u));
    }

    /// vCard: `with_photo(r)` then `photo()` gives r's bytes with its real type, and every other child survives
    /// in order; `with_photo(None)` leaves no avatar.
    #[test]
    fn vcard_photo_round_trips_and_keeps_the_rest(children in vcard_children(), r in pooled()) {
        let text = format!("<vCard xmlns='vcard-temp'>{}</vCard>", children.concat());
        let original = VCard::parse(text.parse().unwrap()).unwrap();
        let with = VCard::parse(over_the_wire(original.with_photo(Some(&r)).element())).unwrap();
        prop_assert_eq!(
            with.photo(),
            Ok(Photo::Binval { type_hint: Some(r.mime().to_owned()), bytes: r.bytes().to_vec() })
        );
        prop_assert_eq!(with.element().children().filter(|c| c.is("PHOTO", ns::VCARD)).count(), 1);
        prop_assert_eq!(non_photo_children(&with), non_photo_children(&original));
        let without = VCard::parse(over_the_wire(original.with_photo(None).element())).unwrap();
        prop_assert_eq!(without.photo(), Ok(Photo::None));
        prop_assert_eq!(non_photo_children(&without), non_photo_children(&original));
    }

    /// XEP-0084 data publish: one item, id = SHA-1 of the PNG, payload = the PNG's bytes; options read back.
    #[test]
    fn xep0084_publish_data_round_trips(png in pooled_png(), access in any_access()) {
        let back = xep0084::parse_publish(&over_the_wire(&xep0084::publish_data(&png, access))).unwrap();
        let payload = Ok(Payload::Data(png.bytes().to_vec()));
        let item = Item { id: Some(png.hash().to_string()), publisher: None, payload };
        prop_assert_eq!(back, Some(Publish { node: AvatarNode::DATA, items: vec![item], access_model: access }));
    }

    /// XEP-0084 metadata publish: item id = SHA-1 of the PNG, the PNG's `<info/>` first, then each distinct
    /// alternate once, in order; `Metadata::parse` of the payload alone agrees. The "no avatar" publish reads back
    /// as `NoAvatar` in an item without id.
    #[test]
    fn xep0084_publish_metadata_round_trips(
        png in pooled_png(),
        alternates in vec(pooled(), 0..5),
        access in any_access(),
    ) {
        let refs: Vec<&Rendition> = alternates.iter().collect();
        let emitted = over_the_wire(&xep0084::publish_metadata(&png, &refs, access));
        let mut expected = vec![info_of(&png)];
        for a in &alternates {
            if !expected.iter().any(|i| i.id == a.hash()) {
                expected.push(info_of(a));
            }
        }
        let metadata = Metadata::Avatar(expected);
        let payload = Ok(Payload::Metadata(metadata.clone()));
        let item = Item { id: Some(png.hash().to_string()), publisher: None, payload };
        prop_assert_eq!(
            xep0084::parse_publish(&emitted).unwrap(),
            Some(Publish { node: AvatarNode::METADATA, items: vec![item], access_model: access })
        );
        let payload = emitted.get_child("publish", ns::PUBSUB).and_then(|p| p.get_child("item", ns::PUBSUB))
            .and_then(|i| i.get_child("metadata", ns::AVATAR_METADATA)).unwrap();
        prop_assert_eq!(Metadata::parse(payload), Ok(metadata.clone()));
        prop_assert_eq!(metadata.inline_info().map(|i| i.id), Some(png.hash()));

        let none = xep0084::parse_publish(&over_the_wire(&xep0084::publish_no_avatar(access))).unwrap();
        let item = Item { id: None, publisher: None, payload: Ok(Payload::Metadata(Metadata::NoAvatar)) };
        prop_assert_eq!(none, Some(Publish { node: AvatarNode::METADATA, items: vec![item], access_model: access }));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// THE hash rule (DESIGN §4 rule 3), on random images

/// A random image: RGBA pixels of 1..=200 px a side, encoded by the `image` crate as PNG, JPEG or GIF.
fn random_image() -> impl Strategy<Value = (ImageFormat, u32, u32, Vec<u8>)> {
    (select(vec![ImageFormat::Png, ImageFormat::Jpeg, ImageFormat::Gif]), 1u32..=200, 1u32..=200, any::<u64>(), 0u8..4)
        .prop_map(|(format, w, h, seed, kind)| (format, w, h, encode(pixels(w, h, seed, kind), format)))
}

/// Every hash a scheme advertises for `r` equals the SHA-1 of the bytes a reader gets through that same scheme's
/// XML (serialised and parsed back).
fn assert_every_scheme_serves_its_hash(r: &Rendition, png: &PngRendition, legacy: &Rendition) {
    // XEP-0084: data item id, metadata item id and the inline <info/> id all name the bytes at the data node.
    let data = xep0084::parse_publish(&over_the_wire(&xep0084::publish_data(png, None))).unwrap().unwrap();
    let [Item { id: Some(data_id), payload: Ok(Payload::Data(bytes)), .. }] = &data.items[..] else {
        panic!("publish_data: {data:?}")
    };
    assert_eq!(AvatarHash::parse(data_id), Ok(AvatarHash::of(bytes)), "data item id");
    let meta = xep0084::parse_publish(&over_the_wire(&xep0084::publish_metadata(png, &[r], None))).unwrap().unwrap();
    let [Item { id: Some(meta_id), payload: Ok(Payload::Metadata(metadata)), .. }] = &meta.items[..] else {
        panic!("publish_metadata: {meta:?}")
    };
    assert_eq!(AvatarHash::parse(meta_id), Ok(AvatarHash::of(bytes)), "metadata item id");
    let inline = metadata.inline_info().unwrap();
    assert_eq!(inline.id, AvatarHash::of(bytes), "inline <info/> id");
    assert_eq!(inline.bytes, Some(bytes.len() as u32));
    assert_eq!(inline.mime.as_deref(), Some("image/png"));
    // Each other <info/> names the SHA-1 of the original's bytes.
    for info in metadata.infos() {
        assert!(info.id == png.hash() || info.id == AvatarHash::of(r.bytes()), "{info:?}");
    }

    // XEP-0008: the presence hash names the bytes both queries serve.
    let x = XAvatar::from_presence(&over_the_wire(&presence(ns::CLIENT, XAvatar::Hash(legacy.hash()).to_element())));
    let Ok(XAvatar::Hash(advertised)) = x else { panic!("{x:?}") };
    for store in [Store::IqAvatar, Store::Storage] {
        let q = Query::parse(&over_the_wire(&xep0008::query(store, Some(legacy)))).unwrap();
        let served = q.data.unwrap().bytes;
        assert_eq!(AvatarHash::of(&served), advertised, "{store:?}");
    }

    // vCard + XEP-0153: the presence photo hash names the BINVAL's bytes, whichever rendition is put there.
    for photo in [r, &**png] {
        let u = Update::from_presence(&over_the_wire(&presence(ns::CLIENT, Update::Hash(photo.hash()).to_element())));
        let Ok(Update::Hash(advertised)) = u else { panic!("{u:?}") };
        let vcard = VCard::parse(over_the_wire(VCard::empty().with_photo(Some(photo)).element())).unwrap();
        let Ok(Photo::Binval { bytes, .. }) = vcard.photo() else { panic!("{vcard:?}") };
        assert_eq!(AvatarHash::of(&bytes), advertised, "vCard BINVAL");
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn every_rendition_and_every_scheme_keeps_the_hash_rule((format, width, height, encoded) in random_image()) {
        let limits = ImageLimits::default();
        let r = Rendition::from_bytes(encoded.clone(), &limits)
            .unwrap_or_else(|e| panic!("{format:?} {width}×{height}: {e}"));
        assert_honest("original", &r);
        prop_assert_eq!(r.bytes(), &encoded[..]);
        prop_assert_eq!((r.format(), r.width(), r.height()), (format, width, height));

        let png = r.to_png(&limits).unwrap_or_else(|e| panic!("{r:?}: to_png: {e}"));
        assert_honest("png", &png);
        prop_assert_eq!(png.format(), ImageFormat::Png);
        prop_assert!(png.width().max(png.height()) <= limits.pep_max_side && png.bytes().len() <= limits.pep_max_bytes);
        if format == ImageFormat::Png {
            // A PNG within the budgets is published as it is, so every scheme can share one hash.
            prop_assert_eq!(png.hash(), r.hash());
        }

        let legacy = r.to_legacy(&limits).unwrap_or_else(|e| panic!("{r:?}: to_legacy: {e}"));
        assert_honest("legacy", &legacy);
        prop_assert!(legacy.width().max(legacy.height()) <= 64, "{:?}", legacy);
        prop_assert!(legacy.bytes().len() <= limits.legacy_max_bytes, "{:?}", legacy);
        prop_assert_ne!(legacy.format(), ImageFormat::Webp);
        // Never upscaled.
        prop_assert!(legacy.width() <= width && legacy.height() <= height, "{:?}", legacy);

        // What we made validates again from its own bytes, as a reader would.
        for made in [&*png, &legacy] {
            let again = Rendition::from_bytes(made.bytes().to_vec(), &limits).unwrap();
            prop_assert_eq!((again.hash(), again.format(), again.width(), again.height()),
                (made.hash(), made.format(), made.width(), made.height()));
        }

        assert_every_scheme_serves_its_hash(&r, &png, &legacy);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// No input panics a parser

/// A 1×1 PNG, its base64 and its SHA-1: the valid values of data and hash holes.
const PNG_B64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
const PNG_SHA1: &str = "4a5eb7171b58e08a6881721e3b43d5a44419a2be";

/// The kinds of hole in a template, each marked `§` + a letter, with the values a parser accepts there.
fn valid_values(kind: char) -> &'static [&'static str] {
    match kind {
        // a hash: item ids, info ids, <photo/>, <hash/>
        'h' => &[
            PNG_SHA1,
            "4A5EB7171B58E08A6881721E3B43D5A44419A2BE",
            "\n 4a5eb7171b58e08a6881721e3b43d5a44419a2be\t",
            "current",
            "",
        ],
        // base64 image data
        'b' => &[
            PNG_B64,
            "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk\n+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg",
            "",
            " ",
        ],
        // a namespace or node name
        'n' => &[
            ns::AVATAR_DATA,
            ns::AVATAR_METADATA,
            ns::AVATAR_DATA_0_12,
            ns::AVATAR_METADATA_0_12,
            ns::AVATAR_DATA_0_8,
            ns::AVATAR_METADATA_0_8,
            ns::VCARD,
            ns::IQ_AVATAR,
            ns::STORAGE_AVATAR,
            ns::PUBSUB,
            ns::PRIVILEGE_1,
            ns::PRIVILEGE_2,
            ns::DELEGATION_1,
            ns::DELEGATION_2,
            "urn:xmpp:avatar:metadata ",
        ],
        // an enumerated attribute value
        'v' => &[
            "get",
            "set",
            "result",
            "error",
            "both",
            "none",
            "roster",
            "presence",
            "message",
            "iq",
            "outgoing",
            "managed_entity",
            "open",
            "whitelist",
            "image/png",
            "IMAGE/PNG",
            "1",
            "70",
            "65535",
            "65536",
            "4294967296",
            "-1",
        ],
        // the namespace of a XEP-0356 / XEP-0355 wrapper
        'd' => &[ns::PRIVILEGE_1, ns::PRIVILEGE_2, ns::DELEGATION_1, ns::DELEGATION_2, "urn:xmpp:privilege:3"],
        // an IQ type
        'q' => &["get", "set", "result", "error", "fetch"],
        // a JID
        'j' => &["alice@example.org", "Alice@Example.ORG/Res", "localhost", "a@b@c", "@x", "x/", ""],
        // free text
        _ => &["", " ", "x", " image/png ", "https://example.org/a.png", "urn:xmpp:delegation:2:bare:jabber:iq:avatar"],
    }
}

/// One hole's filling: either a valid value for its kind (so the tree reaches deep code, not just the first
/// check) or random text shaped like that kind.
#[derive(Debug, Clone)]
struct Hole {
    valid: bool,
    pick: prop::sample::Index,
    random: String,
}

fn hole() -> impl Strategy<Value = Hole> {
    let random = prop_oneof![
        "[\\PC\t\r\n]{0,40}",
        "[ \t\n]{0,2}[0-9a-fA-Fé ]{38,42}[ \t\n]{0,2}",
        "[A-Za-z0-9+/= \r\n*é]{0,64}",
    ];
    (prop::bool::weighted(0.7), any::<prop::sample::Index>(), random).prop_map(|(valid, pick, random)| Hole {
        valid,
        pick,
        random,
    })
}

/// Element shapes each parser expects, with typed holes (`§h` hash, `§b` base64, `§n` namespace, `§d` wrapper
/// namespace, `§v` value, `§q` IQ type, `§j` JID, `§t` text) and element-name holes (`<§e`).
const TEMPLATES: &[&str] = &[
    "<metadata xmlns='§n'><info id='§h' bytes='§v' type='§v' width='§v' height='§v' url='§t'/>§t<info id='§h'/>\
     <stop/></metadata>",
    "<metadata xmlns='§n'>§t<pointer>§t</pointer><info id='§h' bytes='§v' type='§v'/></metadata>",
    "<data xmlns='§n'>§b</data>",
    "<message xmlns='jabber:client'><event xmlns='http://jabber.org/protocol/pubsub#event'><items node='§n'>\
     <item id='§h' publisher='§j'><metadata xmlns='§n'><info id='§h' bytes='§v'/></metadata></item>\
     <item id='§h'><data xmlns='§n'>§b</data></item><retract id='§h'/><retract/></items></event></message>",
    "<event xmlns='http://jabber.org/protocol/pubsub#event'><§e node='§n'/></event>",
    "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='§n'><item id='§h'><data xmlns='§n'>§b</data>\
     </item><item/></items></pubsub>",
    "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='§n'><item id='§h'><metadata xmlns='§n'>\
     <info id='§h'/></metadata></item></publish><publish-options><x xmlns='jabber:x:data'>\
     <field var='pubsub#access_model'><value>§v</value></field></x></publish-options></pubsub>",
    "<vCard xmlns='vcard-temp'><FN>§t</FN><PHOTO><TYPE>§v</TYPE><BINVAL>§b</BINVAL><EXTVAL>§t</EXTVAL></PHOTO>\
     <PHOTO>§t</PHOTO></vCard>",
    "<presence xmlns='jabber:client'><x xmlns='vcard-temp:x:update'><photo>§h</photo></x><x xmlns='jabber:x:avatar'>\
     <hash>§h</hash></x></presence>",
    "<iq xmlns='jabber:client' type='§q' id='§t'><query xmlns='§n'><data mimetype='§v'>§b</data></query></iq>",
    "<message xmlns='jabber:component:accept'><privilege xmlns='§d'><perm access='§v' type='§v'/>\
     <perm access='iq'><namespace ns='§n' type='§v'><namespace ns='§n' type='§v'/></namespace></perm>§t\
     </privilege></message>",
    "<iq xmlns='jabber:component:accept' type='§q' id='§t' from='§j' to='§j'><privilege xmlns='§d'>\
     <forwarded xmlns='urn:xmpp:forward:0'><iq xmlns='jabber:client' type='§q' id='§t' from='§j'>§t\
     <vCard xmlns='vcard-temp'/><error type='§v'><§e xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>\
     </forwarded></privilege></iq>",
    "<iq xmlns='jabber:component:accept' type='set' id='d1' from='example.org'><delegation xmlns='§d'>\
     <forwarded xmlns='urn:xmpp:forward:0'><iq xmlns='jabber:client' type='§q' id='§t' from='§j' to='a@example.org'>\
     <query xmlns='§n'/></iq></forwarded></delegation></iq>",
    "<message xmlns='jabber:component:accept'><delegation xmlns='§d'><delegated namespace='§n'/></delegation></message>",
];

/// Fills the holes of a template in order, each with a valid value of its kind or random text (escaped).
/// Element-name holes take a name from a list (a random name would only make the XML malformed).
fn fill(template: &str, holes: &[Hole]) -> String {
    let mut out = String::new();
    for (i, part) in template.split('§').enumerate() {
        let part = if i == 0 {
            part
        } else {
            let hole = &holes[(i - 1) % holes.len()];
            let mut chars = part.chars();
            let kind = chars.next().expect("a hole kind after §");
            if kind == 'e' {
                let names = ["items", "purge", "delete", "configuration", "conflict", "item-not-found", "text"];
                out.push_str(hole.pick.get::<&str>(&names));
            } else if hole.valid {
                out.push_str(&escape(hole.pick.get::<&str>(valid_values(kind))));
            } else {
                out.push_str(&escape(&hole.random));
            }
            chars.as_str()
        };
        out.push_str(part);
    }
    out
}

proptest! {
    #![proptest_config(config(512))]

    /// Arbitrary text, put where each parser looks, never panics any parser.
    #[test]
    fn arbitrary_text_in_expected_elements_never_panics(t in 0..TEMPLATES.len(), holes in vec(hole(), 1..32)) {
        let text = fill(TEMPLATES[t], &holes);
        let el: Element = text.parse().unwrap_or_else(|e| panic!("template {t} did not parse ({e}): {text}"));
        run_every_parser(&el);
    }

    /// Arbitrary bytes and strings never panic: the XML parsers (when the bytes happen to be XML), the hash and
    /// base64 readers.
    #[test]
    fn arbitrary_bytes_and_strings_never_panic(bytes in vec(any::<u8>(), 0..512), text in "\\PC{0,80}") {
        if let Ok(el) = std::str::from_utf8(&bytes).unwrap_or_default().parse::<Element>() {
            run_every_parser(&el);
        }
        for s in [&text, &String::from_utf8_lossy(&bytes).into_owned()] {
            let _ = AvatarHash::parse(s);
            let _ = b64::decode(s);
            let _ = AvatarNode::parse(s);
            let _ = AccessModel::parse(s);
            let _ = component::delegation_disco_namespace(s);
        }
    }
}

/// Each format's magic bytes, bare or with the start of a header.
const MAGIC: &[&[u8]] = &[
    b"",
    b"\x89PNG\r\n\x1a\n",
    b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR",
    b"\xff\xd8\xff",
    b"\xff\xd8\xff\xe0\0\x10JFIF\0",
    b"GIF89a",
    b"GIF87a\x10\0\x10\0",
    b"RIFF\0\0\0\0WEBPVP8L",
    b"RIFF\0\0\0\0WEBPVP8 ",
];

proptest! {
    #![proptest_config(config(128))]

    /// Arbitrary bytes, alone or behind each format's magic bytes (so they reach the header and pixel decoders),
    /// never panic the image pipeline; whatever is accepted keeps the hash rule.
    #[test]
    fn arbitrary_bytes_never_panic_the_image_pipeline(
        magic in select(MAGIC),
        tail in vec(any::<u8>(), 0..1024),
    ) {
        let limits = ImageLimits { max_input_bytes: 4096, max_pixels: 128 * 128, ..ImageLimits::default() };
        let bytes = [magic, &tail[..]].concat();
        if let Ok(r) = Rendition::from_bytes(bytes, &limits) {
            assert_honest("original", &r);
            if let Ok(png) = r.to_png(&limits) {
                assert_honest("png", &png);
            }
            if let Ok(legacy) = r.to_legacy(&limits) {
                assert_honest("legacy", &legacy);
            }
        }
    }
}
