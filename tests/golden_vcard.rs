//! Golden tests of `wire::vcard` (XEP-0054 PHOTO, XEP-0153 `vcard-temp:x:update`).
//!
//! Every fixture under `fixtures/stanzas/vcard/` and `fixtures/stanzas/xep0153/` is parsed into its model by a
//! named test; the emitters are compared with golden files written by hand from the specs in
//! `fixtures/golden/{vcard,xep0153}/`. The `*_fixture_is_covered` tests fail when a fixture file has no test.

mod common;

use avatar_gateway::avatar::{AvatarHash, HashError};
use avatar_gateway::image::{ImageFormat, ImageLimits, Rendition};
use avatar_gateway::wire::vcard::{self, Photo, Update, VCard, VCardError};
use avatar_gateway::wire::{ns, xml};
use xmpp_parsers::minidom::{Element, Node};

use common::inline_images::*;
use common::{assert_covered, assert_golden, covered_stanza};

/// Every file in `fixtures/stanzas/vcard/`, each read by the test of the same name.
const VCARD_FIXTURES: &[&str] = &[
    "atalk-png-as-jpeg.xml",
    "binval-no-type.xml",
    "empty-binval.xml",
    "empty-photo.xml",
    "empty-vcard.xml",
    "extval.xml",
    "lowercase-photo.xml",
    "no-photo.xml",
    "rich-type-binval.xml",
    "spaces-unpadded.xml",
    "two-photos.xml",
    "wrapped-crlf-entity.xml",
    "wrapped-crlf.xml",
];

/// Every file in `fixtures/stanzas/xep0153/`, each read by the test of the same name.
const XEP0153_FIXTURES: &[&str] = &[
    "hash.xml",
    "no-avatar.xml",
    "no-x.xml",
    "non-ascii-hash.xml",
    "not-ready.xml",
    "upper-case-whitespace.xml",
    "vacuum-both.xml",
];

/// Loads `<dir>/<name>`, refusing names missing from the coverage list so the list stays honest.
fn load(dir: &str, name: &str) -> common::Fixture {
    let list = match dir {
        "vcard" => VCARD_FIXTURES,
        "xep0153" => XEP0153_FIXTURES,
        _ => panic!("{dir} is not covered by this file"),
    };
    covered_stanza(dir, list, name)
}

/// The `<vCard/>` payload of an IQ fixture, as it arrived (indentation included).
fn raw_vcard(name: &str) -> Element {
    let fixture = load("vcard", name);
    fixture.element.get_child("vCard", ns::VCARD).unwrap_or_else(|| panic!("{name}: no <vCard/>")).clone()
}

fn vcard(name: &str) -> VCard {
    VCard::parse(raw_vcard(name)).unwrap()
}

/// The vCard with indentation-only text dropped, so emitted XML compares with an indented golden file.
fn vcard_unindented(name: &str) -> VCard {
    VCard::parse(common::xml(&xml::to_string(&raw_vcard(name)))).unwrap()
}

/// Type hint and bytes of a BINVAL photo, with the bytes' SHA-1.
fn binval(name: &str) -> (Option<String>, String, Vec<u8>) {
    match vcard(name).photo() {
        Ok(Photo::Binval { type_hint, bytes }) => (type_hint, AvatarHash::of(&bytes).to_string(), bytes),
        other => panic!("{name}: expected a BINVAL photo, got {other:?}"),
    }
}

fn rendition(bytes: &[u8]) -> Rendition {
    Rendition::from_bytes(bytes.to_vec(), &ImageLimits::default()).expect("fixture images are real images")
}

fn update(name: &str) -> Result<Update, VCardError> {
    Update::from_presence(&load("xep0153", name).element)
}

fn parsed(hex: &str) -> AvatarHash {
    AvatarHash::parse(hex).unwrap()
}

fn non_photo_nodes(vcard: &Element) -> Vec<&Node> {
    vcard.nodes().filter(|n| !n.as_element().is_some_and(|e| e.is("PHOTO", ns::VCARD))).collect()
}

fn photos(vcard: &Element) -> Vec<&Element> {
    vcard.children().filter(|e| e.is("PHOTO", ns::VCARD)).collect()
}

// ---- fixtures/stanzas/vcard/ ----

#[test]
fn rich_type_binval() {
    let (type_hint, sha1, bytes) = binval("rich-type-binval.xml");
    assert_eq!(type_hint.as_deref(), Some("image/jpeg"));
    assert_eq!(sha1, RED_JPEG);
    assert_eq!(rendition(&bytes).format(), ImageFormat::Jpeg);
}

/// The key golden: a rich vCard whose PHOTO is replaced keeps every other child, attribute and order.
#[test]
fn rich_type_binval_photo_replaced_keeps_the_rest() {
    let png = rendition(&binval("two-photos.xml").2);
    assert_eq!(png.hash().to_string(), DOT_PNG);
    let out = vcard_unindented("rich-type-binval.xml").with_photo(Some(&png));
    assert_golden(out.element(), "vcard/rich-photo-replaced.xml");

    // On the vCard exactly as it arrived, indentation text nodes included: same attributes, every non-PHOTO node
    // identical and in order, one PHOTO holding the new image.
    let before = raw_vcard("rich-type-binval.xml");
    let after = VCard::parse(before.clone()).unwrap().with_photo(Some(&png)).into_element();
    assert_eq!(after.attrs(), before.attrs());
    assert_eq!(non_photo_nodes(&after), non_photo_nodes(&before));
    assert_eq!(photos(&after).len(), 1);
    let position = |e: &Element| e.nodes().position(|n| n.as_element().is_some_and(|c| c.is("PHOTO", ns::VCARD)));
    assert_eq!(position(&after), position(&before), "the PHOTO stays where it was");
    assert_eq!(
        VCard::parse(after).unwrap().photo(),
        Ok(Photo::Binval { type_hint: Some("image/png".into()), bytes: png.bytes().to_vec() })
    );
}

#[test]
fn rich_type_binval_photo_removed() {
    let out = vcard_unindented("rich-type-binval.xml").with_photo(None);
    assert_golden(out.element(), "vcard/rich-photo-removed.xml");
    assert_eq!(out.photo(), Ok(Photo::None));
}

#[test]
fn binval_no_type() {
    let (type_hint, sha1, bytes) = binval("binval-no-type.xml");
    assert_eq!(type_hint, None);
    assert_eq!(sha1, GRAD_PNG);
    // Re-setting the same bytes adds the TYPE and keeps emite's prodid, version and xdbns attributes.
    let out = vcard_unindented("binval-no-type.xml").with_photo(Some(&rendition(&bytes)));
    assert_golden(out.element(), "vcard/binval-no-type-set.xml");
}

#[test]
fn extval() {
    assert_eq!(vcard("extval.xml").photo(), Ok(Photo::Extval("https://cdn.example.com/avatars/foo.jpg".into())));
}

#[test]
fn empty_photo() {
    assert_eq!(vcard("empty-photo.xml").photo(), Ok(Photo::None));
}

#[test]
fn empty_binval() {
    assert_eq!(vcard("empty-binval.xml").photo(), Ok(Photo::None));
}

#[test]
fn no_photo() {
    let v = vcard("no-photo.xml");
    assert_eq!(v.photo(), Ok(Photo::None));
    // Removing a PHOTO that is not there changes nothing at all.
    assert_eq!(v.with_photo(None), v);
}

#[test]
fn wrapped_crlf() {
    let (type_hint, sha1, bytes) = binval("wrapped-crlf.xml");
    assert_eq!(type_hint.as_deref(), Some("image/jpeg"));
    assert_eq!(sha1, RED_JPEG);
    rendition(&bytes);
}

#[test]
fn wrapped_crlf_entity() {
    // The escaped CRs survive XML parsing: the fixture really carries them to the decoder.
    let raw = raw_vcard("wrapped-crlf-entity.xml");
    let text = raw.get_child("PHOTO", ns::VCARD).and_then(|p| p.get_child("BINVAL", ns::VCARD)).unwrap().text();
    assert!(text.contains("\r\n"), "{text:?}");
    let (type_hint, sha1, _) = binval("wrapped-crlf-entity.xml");
    assert_eq!(type_hint.as_deref(), Some("image/png"));
    assert_eq!(sha1, GRAD_PNG);
}

#[test]
fn spaces_unpadded() {
    let raw = raw_vcard("spaces-unpadded.xml");
    let text = raw.get_child("PHOTO", ns::VCARD).and_then(|p| p.get_child("BINVAL", ns::VCARD)).unwrap().text();
    assert!(text.contains(' ') && text.contains('\t') && !text.contains('='), "{text:?}");
    let (type_hint, sha1, bytes) = binval("spaces-unpadded.xml");
    assert_eq!(type_hint.as_deref(), Some("image/gif"));
    assert_eq!(sha1, DOT_GIF);
    assert_eq!(rendition(&bytes).format(), ImageFormat::Gif);
}

#[test]
fn atalk_png_as_jpeg() {
    // The hint is kept as given; the bytes are PNG, which the image module sniffs.
    let (type_hint, sha1, bytes) = binval("atalk-png-as-jpeg.xml");
    assert_eq!(type_hint.as_deref(), Some("image/jpeg"));
    assert_eq!(sha1, GRAD_PNG);
    let png = rendition(&bytes);
    assert_eq!(png.format(), ImageFormat::Png);
    // Written back, the PHOTO says what the bytes are, in the DTD's order (TYPE, BINVAL).
    let out = vcard_unindented("atalk-png-as-jpeg.xml").with_photo(Some(&png));
    assert_golden(out.element(), "vcard/atalk-relabelled.xml");
}

#[test]
fn empty_vcard() {
    let v = vcard("empty-vcard.xml");
    assert_eq!(v.photo(), Ok(Photo::None));
    assert_eq!(v, VCard::empty());
    let jpeg = rendition(&binval("rich-type-binval.xml").2);
    assert_golden(v.with_photo(Some(&jpeg)).element(), "vcard/empty-vcard-with-photo.xml");
}

#[test]
fn two_photos() {
    let (type_hint, sha1, _) = binval("two-photos.xml");
    assert_eq!(type_hint.as_deref(), Some("image/png"));
    assert_eq!(sha1, DOT_PNG);
    // One PHOTO is left, where the first was.
    let grad = rendition(&binval("binval-no-type.xml").2);
    let out = vcard_unindented("two-photos.xml").with_photo(Some(&grad));
    assert_golden(out.element(), "vcard/two-photos-replaced.xml");
    let removed = vcard("two-photos.xml").with_photo(None);
    assert!(photos(removed.element()).is_empty());
}

#[test]
fn lowercase_photo() {
    // XEP-0054 §8: names are case-sensitive; a lower-case <photo/> is an unknown child, kept as is.
    let v = vcard("lowercase-photo.xml");
    assert_eq!(v.photo(), Ok(Photo::None));
    let png = rendition(&binval("two-photos.xml").2);
    assert_golden(
        vcard_unindented("lowercase-photo.xml").with_photo(Some(&png)).element(),
        "vcard/lowercase-photo-set.xml",
    );
}

#[test]
fn request_golden() {
    assert_golden(&vcard::request(), "vcard/request.xml");
}

// ---- fixtures/stanzas/xep0153/ ----

#[test]
fn hash() {
    assert_eq!(update("hash.xml"), Ok(Update::Hash(parsed(DOT_PNG))));
    let png = rendition(&binval("two-photos.xml").2);
    assert_golden(&Update::Hash(png.hash()).to_element().unwrap(), "xep0153/hash.xml");
}

#[test]
fn no_avatar() {
    assert_eq!(update("no-avatar.xml"), Ok(Update::NoAvatar));
    assert_golden(&Update::NoAvatar.to_element().unwrap(), "xep0153/no-avatar.xml");
}

#[test]
fn not_ready() {
    assert_eq!(update("not-ready.xml"), Ok(Update::NotReady));
    assert_golden(&Update::NotReady.to_element().unwrap(), "xep0153/not-ready.xml");
}

#[test]
fn no_x() {
    assert_eq!(update("no-x.xml"), Ok(Update::Unknown));
    assert_eq!(Update::Unknown.to_element(), None);
}

#[test]
fn upper_case_whitespace() {
    assert_eq!(update("upper-case-whitespace.xml"), Ok(Update::Hash(parsed(GRAD_PNG))));
}

#[test]
fn vacuum_both() {
    assert_eq!(update("vacuum-both.xml"), Ok(Update::Hash(parsed(RED_JPEG))));
}

#[test]
fn non_ascii_hash() {
    // 40 bytes but 39 chars: the input that panics xmpp-parsers 0.23 is a plain error here.
    assert_eq!(update("non-ascii-hash.xml"), Err(VCardError::PhotoHash(HashError::Length(39))));
}

// ---- coverage ----

#[test]
fn every_vcard_fixture_is_covered() {
    assert_covered("vcard", VCARD_FIXTURES);
}

#[test]
fn every_xep0153_fixture_is_covered() {
    assert_covered("xep0153", XEP0153_FIXTURES);
}
