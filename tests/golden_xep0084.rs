//! XEP-0084 golden tests: every fixture in `fixtures/stanzas/xep0084/` parsed into the model, and every emitter
//! compared byte for byte (indentation aside) with a golden file written by hand from the spec.

mod common;

use avatar_gateway::avatar::AvatarHash;
use avatar_gateway::image::{ImageLimits, PngRendition, Rendition};
use avatar_gateway::wire::b64;
use avatar_gateway::wire::ns;
use avatar_gateway::wire::xep0084::{
    AccessModel, AvatarNode, Event, Generation, Info, Item, Metadata, NodeKind, Payload, Publish, configure,
    parse_event, parse_items, parse_publish, publish_data, publish_metadata, publish_no_avatar, request_items,
};
use common::{assert_covered, assert_golden, covered_stanza};
use xmpp_parsers::minidom::Element;

/// Every fixture and the test that covers it; `every_fixture_is_covered` keeps this list honest.
const COVERED: &[&str] = &[
    "conversations-url-thumbnail.xml",
    "data-item.xml",
    "dino-delete.xml",
    "ejabberd-items-jpeg.xml",
    "event-purge.xml",
    "event-retract.xml",
    "extra-attrs-pointer.xml",
    "gajim-publish-options.xml",
    "metadata-empty.xml",
    "pidgin-0.12-items.xml",
    "prosody-data-wrapped.xml",
    "prosody-event-items.xml",
    "prosody-typeless-info.xml",
    "psi-2006-stop-current.xml",
    "psi-2007-data-ns-space.xml",
    "psi-pixel-bytes.xml",
    "several-infos.xml",
    "spec-metadata.xml",
    "stop-xep0084-1.0.xml",
];

// The real images behind the fixtures: SHA-1 of the decoded bytes.
const PNG_1X1: &str = "4a5eb7171b58e08a6881721e3b43d5a44419a2be"; // 70 bytes
const PNG_2X2: &str = "9bc8fc4b1b9c6733099cdf1246295b9d87408146"; // 86 bytes, RGBA
const PNG_8X8: &str = "3f638d6ef6127e46b28a1612b1a5b593b25e1c88"; // 256 bytes
const JPEG_1X1: &str = "aee380561401c81531bde2beae6609911838c59e"; // 631 bytes
const JPEG_4X4: &str = "66a3726541a456d9af50cd9eb19628b3e9eb18dc"; // 655 bytes

const PNG_1X1_B64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
const JPEG_1X1_B64: &str = "/9j/4AAQSkZJRgABAgAAAQABAAD/wAARCAABAAEDAREAAhEBAxEB/9sAQwAGBAUGBQQGBgUGBwcGCAoQCgoJCQoUDg8MEBcUGBgXFBYWGh0lHxobIxwWFiAsICMmJykqKRkfLTAtKDAlKCko/9sAQwEHBwcKCAoTCgoTKBoWGigoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgoKCgo/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwDl6/RT5g//2Q==";

fn hash(hex: &str) -> AvatarHash {
    AvatarHash::parse(hex).expect("a test constant")
}

fn info(id: &str, bytes: u32, mime: &str, side: u16) -> Info {
    Info { id: hash(id), bytes: Some(bytes), mime: Some(mime.into()), width: Some(side), height: Some(side), url: None }
}

fn fixture(name: &str) -> Element {
    covered_stanza("xep0084", COVERED, name).element
}

/// The `<event/>` of a notification message.
fn event_of(name: &str) -> Event {
    let message = fixture(name);
    let event = message.get_child("event", ns::PUBSUB_EVENT).expect("a pubsub event");
    parse_event(event).expect("parses").expect("an avatar node")
}

/// The `<pubsub/>` of an IQ.
fn pubsub_of(name: &str) -> Element {
    fixture(name).get_child("pubsub", ns::PUBSUB).expect("a pubsub child").clone()
}

/// The single published item of an `Items` event.
fn single_item(event: Event, expected_node: AvatarNode) -> Item {
    let Event::Items { node, mut published, retracted } = event else { panic!("not items: {event:?}") };
    assert_eq!(node, expected_node);
    assert!(retracted.is_empty());
    assert_eq!(published.len(), 1, "{published:?}");
    published.remove(0)
}

fn metadata_of(item: &Item) -> &Metadata {
    match &item.payload {
        Ok(Payload::Metadata(metadata)) => metadata,
        other => panic!("not metadata: {other:?}"),
    }
}

fn data_of(item: &Item) -> &[u8] {
    match &item.payload {
        Ok(Payload::Data(bytes)) => bytes,
        other => panic!("not data: {other:?}"),
    }
}

/// The bytes are a real image whose SHA-1 is the item id (what Gajim and Dino check).
fn assert_real_image(item: &Item, bytes: &[u8], expected: &str) {
    assert_eq!(AvatarHash::of(bytes), hash(expected));
    assert_eq!(item.hash(), Some(hash(expected)));
    Rendition::from_bytes(bytes.to_vec(), &ImageLimits::default()).expect("a valid image");
}

#[test]
fn every_fixture_is_covered() {
    assert_covered("xep0084", COVERED);
    assert!(COVERED.len() >= 14);
}

#[test]
fn spec_metadata() {
    let metadata = Metadata::parse(&fixture("spec-metadata.xml")).unwrap();
    assert_eq!(metadata, Metadata::Avatar(vec![info(PNG_1X1, 70, "image/png", 1)]));
}

#[test]
fn several_infos() {
    let item = single_item(event_of("several-infos.xml"), AvatarNode::METADATA);
    assert_eq!(item.hash(), Some(hash(PNG_1X1)));
    let metadata = metadata_of(&item);
    let url = Info {
        url: Some("https://avatars.capulet.lit/juliet/happy.jpg".into()),
        ..info(JPEG_4X4, 655, "image/jpeg", 4)
    };
    let expected = [info(PNG_1X1, 70, "image/png", 1), info(JPEG_1X1, 631, "image/jpeg", 1), url];
    assert_eq!(metadata.infos(), expected);
    assert_eq!(metadata.inline_info(), Some(&expected[0]));
}

#[test]
fn conversations_url_thumbnail() {
    let item = single_item(event_of("conversations-url-thumbnail.xml"), AvatarNode::METADATA);
    // The item id names the in-band JPEG thumbnail, not a PNG.
    assert_eq!((item.hash(), item.publisher.as_deref()), (Some(hash(JPEG_1X1)), Some("romeo@montague.lit")));
    let metadata = metadata_of(&item);
    assert_eq!(metadata.inline_info(), Some(&info(JPEG_1X1, 631, "image/jpeg", 1)));
    let full = &metadata.infos()[1];
    assert_eq!(
        (full.id, full.url.as_deref()),
        (hash(JPEG_4X4), Some("https://share.montague.lit/upload/0f3c9a/8d2e1b7c.jpg"))
    );
}

#[test]
fn metadata_empty() {
    let item = single_item(event_of("metadata-empty.xml"), AvatarNode::METADATA);
    // Prosody's UUID item id is no hash; the empty payload is the signal.
    assert_eq!(item.id.as_deref(), Some("5f5a7ac6-2b7b-4f4c-9b1e-0c8c1f0d8a11"));
    assert_eq!(item.hash(), None);
    assert_eq!(metadata_of(&item), &Metadata::NoAvatar);
}

#[test]
fn stop_xep0084_1_0() {
    let publish = parse_publish(&pubsub_of("stop-xep0084-1.0.xml")).unwrap().unwrap();
    let item = Item { id: None, publisher: None, payload: Ok(Payload::Metadata(Metadata::NoAvatar)) };
    // Published (by the 1.0 example's mistake) to the data node: the payload still says what it is.
    assert_eq!(publish, Publish { node: AvatarNode::DATA, items: vec![item], access_model: None });
}

#[test]
fn psi_2006_stop_current() {
    let node = AvatarNode { kind: NodeKind::Metadata, generation: Generation::V0_8 };
    let item = single_item(event_of("psi-2006-stop-current.xml"), node);
    assert_eq!((item.id.as_deref(), item.hash()), (Some("current"), None));
    assert_eq!(metadata_of(&item), &Metadata::NoAvatar);
}

#[test]
fn pidgin_0_12_items() {
    let (node, items) = parse_items(&pubsub_of("pidgin-0.12-items.xml")).unwrap().unwrap();
    assert_eq!(node, AvatarNode { kind: NodeKind::Metadata, generation: Generation::V0_12 });
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].hash(), Some(hash(PNG_1X1)));
    assert_eq!(metadata_of(&items[0]), &Metadata::Avatar(vec![info(PNG_1X1, 70, "image/png", 1)]));
}

#[test]
fn psi_pixel_bytes() {
    let item = single_item(event_of("psi-pixel-bytes.xml"), AvatarNode::METADATA);
    // 2×2×4 bytes of decoded pixels, not the 86-byte file: kept as the (wrong) hint it is.
    assert_eq!(metadata_of(&item).infos(), [info(PNG_2X2, 16, "image/png", 2)]);
}

#[test]
fn psi_2007_data_ns_space() {
    let message = fixture("psi-2007-data-ns-space.xml");
    let raw = message.get_child("event", ns::PUBSUB_EVENT).and_then(|e| e.get_child("items", ns::PUBSUB_EVENT));
    let raw_data = raw.and_then(|i| i.children().next()).and_then(|item| item.children().next()).unwrap();
    assert_eq!(raw_data.ns(), format!("{} ", ns::AVATAR_DATA_0_12), "the fixture keeps Psi's trailing space");
    let node = AvatarNode { kind: NodeKind::Data, generation: Generation::V0_12 };
    let item = single_item(event_of("psi-2007-data-ns-space.xml"), node);
    let bytes = data_of(&item);
    assert_eq!(bytes.len(), 86);
    assert_real_image(&item, bytes, PNG_2X2);
}

#[test]
fn prosody_typeless_info() {
    let item = single_item(event_of("prosody-typeless-info.xml"), AvatarNode::METADATA);
    let expected = Info { id: hash(PNG_8X8), bytes: Some(256), mime: None, width: None, height: None, url: None };
    assert_eq!(metadata_of(&item).inline_info(), Some(&expected));
}

#[test]
fn data_item() {
    let (node, items) = parse_items(&pubsub_of("data-item.xml")).unwrap().unwrap();
    assert_eq!((node, items.len()), (AvatarNode::DATA, 1));
    let bytes = data_of(&items[0]);
    assert_eq!(bytes, b64::decode(PNG_1X1_B64).unwrap());
    assert_real_image(&items[0], bytes, PNG_1X1);
}

#[test]
fn prosody_data_wrapped() {
    let (node, items) = parse_items(&pubsub_of("prosody-data-wrapped.xml")).unwrap().unwrap();
    assert_eq!((node, items.len()), (AvatarNode::DATA, 1));
    assert_eq!(items[0].publisher.as_deref(), Some("juliet@capulet.lit"));
    let bytes = data_of(&items[0]);
    assert_eq!(bytes.len(), 256);
    assert_real_image(&items[0], bytes, PNG_8X8);
}

#[test]
fn prosody_event_items() {
    let item = single_item(event_of("prosody-event-items.xml"), AvatarNode::METADATA);
    assert_eq!((item.hash(), item.publisher.as_deref()), (Some(hash(PNG_1X1)), Some("juliet@capulet.lit")));
    assert_eq!(metadata_of(&item), &Metadata::Avatar(vec![info(PNG_1X1, 70, "image/png", 1)]));
}

#[test]
fn event_retract() {
    let event = event_of("event-retract.xml");
    let expected = Event::Items { node: AvatarNode::METADATA, published: vec![], retracted: vec![PNG_1X1.into()] };
    assert_eq!(event, expected);
}

#[test]
fn event_purge() {
    assert_eq!(event_of("event-purge.xml"), Event::Purged { node: AvatarNode::DATA });
}

#[test]
fn dino_delete() {
    assert_eq!(event_of("dino-delete.xml"), Event::Deleted { node: AvatarNode::METADATA });
}

#[test]
fn gajim_publish_options() {
    let publish = parse_publish(&pubsub_of("gajim-publish-options.xml")).unwrap().unwrap();
    assert_eq!((publish.node, publish.access_model), (AvatarNode::METADATA, Some(AccessModel::Presence)));
    assert_eq!(publish.items.len(), 1);
    assert_eq!(publish.items[0].hash(), Some(hash(PNG_1X1)));
    assert_eq!(metadata_of(&publish.items[0]).infos(), [info(PNG_1X1, 70, "image/png", 1)]);
}

#[test]
fn ejabberd_items_jpeg() {
    let (node, items) = parse_items(&pubsub_of("ejabberd-items-jpeg.xml")).unwrap().unwrap();
    assert_eq!((node, items.len()), (AvatarNode::METADATA, 1));
    // A JPEG item id (XEP-0398 conversion): accepted as it is; the engine decides what to derive.
    assert_eq!(items[0].hash(), Some(hash(JPEG_1X1)));
    assert_eq!(metadata_of(&items[0]).inline_info(), Some(&info(JPEG_1X1, 631, "image/jpeg", 1)));
}

#[test]
fn extra_attrs_pointer() {
    let metadata = Metadata::parse(&fixture("extra-attrs-pointer.xml")).unwrap();
    assert_eq!(metadata, Metadata::Avatar(vec![info(PNG_1X1, 70, "image/png", 1)]));
}

fn limits() -> ImageLimits {
    ImageLimits::default()
}

fn png_1x1() -> PngRendition {
    let rendition = Rendition::from_bytes(b64::decode(PNG_1X1_B64).unwrap(), &limits()).unwrap();
    let png = rendition.to_png(&limits()).unwrap();
    assert_eq!(png.hash(), hash(PNG_1X1), "an in-budget PNG is kept byte for byte");
    png
}

fn jpeg_1x1() -> Rendition {
    Rendition::from_bytes(b64::decode(JPEG_1X1_B64).unwrap(), &limits()).unwrap()
}

#[test]
fn emits_data() {
    assert_golden(&publish_data(&png_1x1(), None), "xep0084/publish-data.xml");
    assert_golden(&publish_data(&png_1x1(), Some(AccessModel::Open)), "xep0084/publish-data-open.xml");
}

#[test]
fn emits_metadata() {
    let png = png_1x1();
    assert_golden(&publish_metadata(&png, &[], None), "xep0084/publish-metadata.xml");
    // The PNG listed again among the alternates is not repeated.
    let alternates = [&jpeg_1x1(), &*png];
    let emitted = publish_metadata(&png, &alternates, Some(AccessModel::Presence));
    assert_golden(&emitted, "xep0084/publish-metadata-alternates.xml");
    // What we emit, we read back as we meant it.
    let publish = parse_publish(&emitted).unwrap().unwrap();
    assert_eq!((publish.node, publish.access_model), (AvatarNode::METADATA, Some(AccessModel::Presence)));
    let expected = [info(PNG_1X1, 70, "image/png", 1), info(JPEG_1X1, 631, "image/jpeg", 1)];
    assert_eq!(metadata_of(&publish.items[0]).infos(), expected);
}

#[test]
fn emits_no_avatar() {
    let emitted = publish_no_avatar(None);
    assert_golden(&emitted, "xep0084/publish-no-avatar.xml");
    let publish = parse_publish(&emitted).unwrap().unwrap();
    assert_eq!(metadata_of(&publish.items[0]), &Metadata::NoAvatar);
}

#[test]
fn emits_item_requests() {
    let id = hash(PNG_1X1);
    assert_golden(&request_items(AvatarNode::DATA, Some(&id)), "xep0084/request-items-by-id.xml");
    assert_golden(&request_items(AvatarNode::METADATA, None), "xep0084/request-items-all.xml");
}

#[test]
fn emits_node_configuration() {
    assert_golden(&configure(AvatarNode::DATA, AccessModel::Open, None), "xep0084/configure-open.xml");
    let emitted = configure(AvatarNode::METADATA, AccessModel::Presence, Some(2));
    assert_golden(&emitted, "xep0084/configure-max-items.xml");
}
