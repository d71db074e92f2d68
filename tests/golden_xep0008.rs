//! Golden tests of `wire::xep0008` (XEP-0008: `jabber:x:avatar`, `jabber:iq:avatar`, `storage:client:avatar`).
//!
//! Every fixture under `fixtures/stanzas/xep0008/` is parsed into its model by a named test; the emitters are
//! compared with golden files written by hand from XEP-0008 in `fixtures/golden/xep0008/`.
//! `every_xep0008_fixture_is_covered` fails when a fixture file has no test.

mod common;

use avatar_gateway::avatar::AvatarHash;
use avatar_gateway::image::{ImageFormat, ImageLimits, Rendition};
use avatar_gateway::wire::ns;
use avatar_gateway::wire::xep0008::{self, LegacyData, Query, Store, XAvatar, Xep0008Error};
use xmpp_parsers::minidom::Element;

use common::inline_images::*;
use common::{assert_covered, assert_golden, covered_stanza, stanza};

/// Every file in `fixtures/stanzas/xep0008/`, each read by the test of the same name.
const XEP0008_FIXTURES: &[&str] = &[
    "iq-avatar-get.xml",
    "iq-avatar-result-vacuum.xml",
    "iq-avatar-result.xml",
    "storage-get.xml",
    "storage-result.xml",
    "storage-set-coccinella.xml",
    "storage-set-empty.xml",
    "x-avatar-disabled.xml",
    "x-avatar-hash.xml",
];

/// Loads `xep0008/<name>`, refusing names missing from the coverage list so the list stays honest.
fn load(name: &str) -> Element {
    covered_stanza("xep0008", XEP0008_FIXTURES, name).element
}

/// The `<query/>` of an IQ fixture, parsed.
fn query_of(name: &str) -> Result<Query, Xep0008Error> {
    let iq = load(name);
    let query = iq.children().find(|c| c.name() == "query").unwrap_or_else(|| panic!("{name}: no <query/>"));
    Query::parse(query)
}

/// Store, mimetype, SHA-1 and bytes of a query fixture that carries data.
fn data_of(name: &str) -> (Store, Option<String>, String, Vec<u8>) {
    match query_of(name) {
        Ok(Query { store, data: Some(LegacyData { mimetype, bytes }) }) => {
            (store, mimetype, AvatarHash::of(&bytes).to_string(), bytes)
        }
        other => panic!("{name}: expected a query with data, got {other:?}"),
    }
}

fn rendition(bytes: &[u8]) -> Rendition {
    Rendition::from_bytes(bytes.to_vec(), &ImageLimits::default()).expect("fixture images are real images")
}

fn parsed(hex: &str) -> AvatarHash {
    AvatarHash::parse(hex).unwrap()
}

#[test]
fn x_avatar_hash() {
    assert_eq!(XAvatar::from_presence(&load("x-avatar-hash.xml")), Ok(XAvatar::Hash(parsed(DOT_PNG))));
    // Emitted in lower case whatever case it was read in.
    let x = XAvatar::Hash(parsed(&GRAD_PNG.to_uppercase())).to_element().unwrap();
    assert_golden(&x, "xep0008/x-avatar-hash.xml");
}

#[test]
fn x_avatar_disabled() {
    assert_eq!(XAvatar::from_presence(&load("x-avatar-disabled.xml")), Ok(XAvatar::Disabled));
    assert_golden(&XAvatar::Disabled.to_element().unwrap(), "xep0008/x-avatar-disabled.xml");
    assert_eq!(XAvatar::Absent.to_element(), None);
}

#[test]
fn iq_avatar_get() {
    assert_eq!(query_of("iq-avatar-get.xml"), Ok(Query { store: Store::IqAvatar, data: None }));
    assert_golden(&xep0008::query(Store::IqAvatar, None), "xep0008/iq-avatar-query-empty.xml");
}

#[test]
fn iq_avatar_result() {
    let (store, mimetype, sha1, bytes) = data_of("iq-avatar-result.xml");
    assert_eq!((store, mimetype.as_deref(), sha1.as_str()), (Store::IqAvatar, Some("image/png"), DOT_PNG));
    let png = rendition(&bytes);
    assert_golden(&xep0008::query(Store::IqAvatar, Some(&png)), "xep0008/iq-avatar-query-png.xml");
}

#[test]
fn iq_avatar_result_vacuum() {
    // Vacuum sends no mimetype; the bytes are what they are.
    let (store, mimetype, sha1, bytes) = data_of("iq-avatar-result-vacuum.xml");
    assert_eq!((store, mimetype, sha1.as_str()), (Store::IqAvatar, None, RED_JPEG));
    assert_eq!(rendition(&bytes).format(), ImageFormat::Jpeg);
}

#[test]
fn storage_get() {
    assert_eq!(query_of("storage-get.xml"), Ok(Query { store: Store::Storage, data: None }));
    assert_golden(&xep0008::query(Store::Storage, None), "xep0008/storage-query-empty.xml");
}

#[test]
fn storage_set_coccinella() {
    // tcllib wraps the base64 at 76 columns with LF.
    let raw = load("storage-set-coccinella.xml");
    let text = raw.get_child("query", ns::STORAGE_AVATAR).and_then(|q| q.get_child("data", ns::STORAGE_AVATAR));
    assert!(text.is_some_and(|d| d.text().lines().count() > 1));
    let (store, mimetype, sha1, bytes) = data_of("storage-set-coccinella.xml");
    assert_eq!((store, mimetype.as_deref(), sha1.as_str()), (Store::Storage, Some("image/jpeg"), RED_JPEG));
    // Served back as one unwrapped line.
    let jpeg = rendition(&bytes);
    assert_golden(&xep0008::query(Store::Storage, Some(&jpeg)), "xep0008/storage-query-jpeg.xml");
}

#[test]
fn storage_set_empty() {
    assert_eq!(query_of("storage-set-empty.xml"), Ok(Query { store: Store::Storage, data: None }));
}

#[test]
fn storage_result() {
    let (store, mimetype, sha1, bytes) = data_of("storage-result.xml");
    assert_eq!((store, mimetype.as_deref(), sha1.as_str()), (Store::Storage, Some("image/gif"), DOT_GIF));
    assert_eq!(rendition(&bytes).format(), ImageFormat::Gif);
}

/// Vacuum's presence (filed under xep0153/) read by this codec: the jabber:x:avatar child carries the same hash.
#[test]
fn vacuum_presence_with_both_schemes() {
    let presence = stanza("xep0153/vacuum-both.xml").element;
    assert_eq!(XAvatar::from_presence(&presence), Ok(XAvatar::Hash(parsed(RED_JPEG))));
}

#[test]
fn every_xep0008_fixture_is_covered() {
    assert_covered("xep0008", XEP0008_FIXTURES);
}
