//! Golden-stanza scenarios of the sans-IO engine on a simulated clock (style.md "What to absorb" 9–10).
//!
//! Each scenario connects like Prosody does (privilege announcement with the nested `<namespace/>` bug, the
//! delegation disco#info checks, the delegation announcement), feeds stanzas with `recv`, compares every stanza the
//! engine sends exactly with `expect_sent`, lets a [`FakeServer`] answer privileged IQs the way mod_privilege does,
//! and ends with `expect_nothing_sent`. Hashes and base64 are computed here from the fixture images; transcoded
//! outputs are compared with the renditions the image module makes.

mod common;
mod engine_support;

use std::time::Duration;

use avatar_gateway::avatar::AvatarHash;
use avatar_gateway::engine::account::Scheme;
use avatar_gateway::engine::grants::{Direction, DirectionStatus, Right};
use avatar_gateway::engine::{Event, ServerConverts};
use avatar_gateway::image::{ImageLimits, Rendition};
use avatar_gateway::link::store_task::StoreAnswer;
use avatar_gateway::store::Store;
use avatar_gateway::wire::stanza::IqType;
use avatar_gateway::wire::{b64, ns, xml};
use xmpp_parsers::minidom::Element;

use engine_support::fake_server::metadata_event;
use engine_support::*;

const PANDION: &str = "alice@localhost/pandion";
const GAJIM: &str = "alice@localhost/gajim";
const DINO: &str = "alice@localhost/dino";
const BOB: &str = "bob@localhost";
const BOB_PC: &str = "bob@localhost/pc";

/// Alice's vCard before the gateway touches it: the fields a PHOTO rewrite must keep.
const ALICE_VCARD_FIELDS: &str =
    "<FN>Alice Liddell</FN><NICKNAME>al</NICKNAME><EMAIL><INTERNET/><USERID>alice@localhost</USERID></EMAIL>";

fn alice_vcard(photo: &str) -> String {
    format!("<vCard xmlns='vcard-temp'>{ALICE_VCARD_FIELDS}{photo}</vCard>")
}

/// Events of one kind are checked by account, scheme and the start of their reason.
#[track_caller]
fn assert_refused(event: &Event, account: &str, scheme: Scheme, reason_contains: &str) {
    match event {
        Event::Refused { account: a, scheme: s, reason } => {
            assert_eq!((a.as_str(), *s), (account, scheme), "{event:?}");
            assert!(reason.contains(reason_contains), "reason {reason:?} lacks {reason_contains:?}");
        }
        other => panic!("expected Refused, got {other:?}"),
    }
}

fn fetched(account: &str, scheme: Scheme, hash: AvatarHash) -> Event {
    Event::Fetched { account: account.into(), scheme, hash }
}

fn adopted(account: &str, scheme: Scheme, hash: AvatarHash) -> Event {
    Event::Adopted { account: account.into(), scheme, hash }
}

fn wrote(account: &str, scheme: Scheme, hash: Option<AvatarHash>) -> Event {
    Event::Wrote { account: account.into(), scheme, hash }
}

/// The `<data/>` base64 in a delegated XEP-0008 reply, decoded.
fn served_bytes(reply: &Element) -> Vec<u8> {
    let inner = reply
        .get_child("delegation", ns::DELEGATION_2)
        .and_then(|d| d.get_child("forwarded", ns::FORWARD))
        .and_then(|f| f.get_child("iq", ns::CLIENT))
        .expect("a delegated reply");
    let query = inner.children().next().expect("a query in the reply");
    let data = query.get_child("data", query.ns().as_str()).expect("<data/> in the query");
    b64::decode(&data.text()).expect("base64 in <data/>")
}

/// Runs the XEP-0008 → XEP-0084 + vCard flow for Alice's Pandion on a plain server (ids gw1–gw7), without
/// asserting the stanzas (that is [`legacy_presence_is_fetched_and_written_to_pep_and_vcard`]'s job).
fn bridged_from_legacy(img: &Image) -> Harness {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    h.server.set_vcard(ALICE, &alice_vcard(""));
    h.recv(&presence(PANDION, &x_avatar(&img.hash)));
    let to_client = h.drive_bounded(10);
    assert_eq!(to_client.len(), 1, "one jabber:iq:avatar get");
    h.recv(&iq_avatar_result("gw1", PANDION, "image/jpeg", &img.b64));
    assert!(h.drive_bounded(10).is_empty());
    let png = img.png();
    assert_eq!(h.server.item_ids(ALICE, ns::AVATAR_METADATA), vec![png.hash().to_string()]);
    assert_eq!(h.server.vcard(ALICE), Some(xml::to_string(&parse(&alice_vcard(&photo(&png))))));
    h.take_events();
    h
}

/// Runs the XEP-0084 → vCard flow for Alice on a plain server (ids gw1–gw5).
fn bridged_from_pep(img: &Image) -> Harness {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    h.server.set_vcard(ALICE, &alice_vcard(""));
    h.server.put_item(
        ALICE,
        ns::AVATAR_DATA,
        &img.hash.to_string(),
        &format!("<data xmlns='urn:xmpp:avatar:data'>{}</data>", img.b64),
    );
    h.server.put_item(ALICE, ns::AVATAR_METADATA, &img.hash.to_string(), &metadata_of(&img.png()));
    h.recv(&presence(DINO, ""));
    assert!(h.drive_bounded(10).is_empty());
    assert_eq!(h.server.vcard(ALICE), Some(xml::to_string(&parse(&alice_vcard(&photo(&img.png()))))));
    h.take_events();
    h
}

// ---- connecting ------------------------------------------------------------------------------------------------

#[test]
fn prosody_grants_turn_every_direction_on() {
    // `Harness::prosody` asserts the exact report: one Capabilities event, every direction with nothing missing.
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    let grants = h.engine.grants();
    for namespace in [ns::PUBSUB, ns::PUBSUB_OWNER, ns::VCARD] {
        for kind in [IqType::Get, IqType::Set] {
            assert!(grants.allows_iq(DOMAIN, namespace, kind), "nested <namespace/> {namespace} lost");
        }
    }
    // Prosody's empty <privilege/> to every user on initial presence is no announcement and changes nothing.
    h.recv("<message xmlns='jabber:component:accept' from='alice@localhost' to='avatars.localhost'><privilege xmlns='urn:xmpp:privilege:2'/></message>");
    assert!(h.engine.grants().allows_iq(DOMAIN, ns::VCARD, IqType::Set));
    h.advance(Duration::from_secs(60));
    h.expect_no_events();
    h.expect_nothing_sent();
}

#[test]
fn ejabberd_privilege_1_turns_directions_off_and_names_the_missing_rights() {
    let mut h = Harness::new(ServerConverts::No, FakeServer::plain());
    h.connect_ejabberd_23();
    h.advance(REPORT_DELAY - Duration::from_millis(1));
    h.expect_no_events();
    h.advance(Duration::from_millis(1));
    use IqType::{Get, Set};
    let pep_get = Right::Iq(ns::PUBSUB, Get);
    let pep_set = Right::Iq(ns::PUBSUB, Set);
    let vcard_get = Right::Iq(ns::VCARD, Get);
    let vcard_set = Right::Iq(ns::VCARD, Set);
    let status = |direction, missing: Vec<Right>| DirectionStatus { direction, missing, limited: vec![] };
    h.expect_events(vec![Event::Capabilities {
        host: DOMAIN.into(),
        directions: vec![
            status(Direction::LegacyToPep, vec![pep_get, pep_set]),
            status(Direction::LegacyToVcard, vec![vcard_get, vcard_set]),
            // Delegation alone keeps owners' data and serves readers, from the public vCards.
            status(Direction::LegacyStorage, vec![]),
            status(Direction::VcardToPep, vec![vcard_get, pep_get, pep_set]),
            status(Direction::PepToVcard, vec![pep_get, vcard_get, vcard_set]),
            DirectionStatus { direction: Direction::LegacyReaders, missing: vec![], limited: vec![pep_get] },
        ],
    }]);
    assert_eq!(pep_get.to_string(), "iq get privilege on http://jabber.org/protocol/pubsub");
    assert!(pep_set.how_to_grant().contains("ejabberd 24.10"), "{}", pep_set.how_to_grant());

    // A legacy client still gets asked (no privilege needed), and the vCard is read as anyone may read it; every
    // privileged read or write is reported once as not granted instead of being sent to be refused.
    let img = Image::fixture("pixel-1x1.png");
    h.recv(&presence(PANDION, &x_avatar(&img.hash)));
    h.expect_sent(&iq_avatar_get("gw1", PANDION));
    h.expect_sent(&plain_vcard_get("gw2", ALICE));
    h.expect_nothing_sent();
    let not_granted = |what: &str| Event::NotGranted { account: ALICE.into(), what: what.into() };
    h.expect_events(vec![not_granted("get http://jabber.org/protocol/pubsub")]);
    h.recv(&iq_avatar_result("gw1", PANDION, "image/png", &img.b64));
    h.expect_events(vec![
        fetched(ALICE, Scheme::Legacy, img.hash),
        adopted(ALICE, Scheme::Legacy, img.hash),
        // Writing the vCard needs the privilege (told once); PEP's missing read was told already.
        not_granted("get vcard-temp"),
    ]);
    h.expect_nothing_sent();
    // The same presence again: nothing new to tell.
    h.recv(&presence(PANDION, &x_avatar(&img.hash)));
    h.expect_no_events();
}

#[test]
fn delegation_disco_info_answers() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    // Both generations, both the server node (`::`) and the bare-JID node (`:bare:`).
    for (version, sep) in [(1, "::"), (1, ":bare:"), (2, "::"), (2, ":bare:")] {
        for namespace in [ns::STORAGE_AVATAR, ns::IQ_AVATAR] {
            let node = format!("urn:xmpp:delegation:{version}{sep}{namespace}");
            answers_delegation_disco(&mut h, &format!("d{version}"), &node, namespace);
        }
    }
    // Prosody asks the component itself (no node) to nest its features into the bare-JID disco.
    h.recv(
        "<iq xmlns='jabber:component:accept' type='get' id='i1' from='localhost' to='avatars.localhost'>
           <query xmlns='http://jabber.org/protocol/disco#info'/>
         </iq>",
    );
    h.expect_sent(
        "<iq xmlns='jabber:component:accept' type='result' id='i1' from='avatars.localhost' to='localhost'>
           <query xmlns='http://jabber.org/protocol/disco#info'>
             <identity category='component' name='avatar-gateway' type='generic'/>
             <feature var='http://jabber.org/protocol/disco#info'/>
             <feature var='jabber:iq:avatar'/>
             <feature var='storage:client:avatar'/>
           </query>
         </iq>",
    );
    // XEP-0199 keep-alive from the server.
    h.recv(
        "<iq xmlns='jabber:component:accept' type='get' id='p1' from='localhost' to='avatars.localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
    );
    h.expect_sent(
        "<iq xmlns='jabber:component:accept' type='result' id='p1' from='avatars.localhost' to='localhost'/>",
    );
    // Anything else addressed to the component itself.
    h.recv(
        "<iq xmlns='jabber:component:accept' type='get' id='v1' from='bob@localhost/pc' to='avatars.localhost'><vCard xmlns='vcard-temp'/></iq>",
    );
    h.expect_sent(
        "<iq xmlns='jabber:component:accept' type='error' id='v1' from='avatars.localhost' to='bob@localhost/pc'>
           <error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>
         </iq>",
    );
    h.expect_no_events();
    h.expect_nothing_sent();
}

// ---- XEP-0008 clients ------------------------------------------------------------------------------------------

#[test]
fn legacy_presence_is_fetched_and_written_to_pep_and_vcard() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    h.server.set_vcard(ALICE, &alice_vcard(""));
    // A JPEG: XEP-0084 and the vCard get the PNG the image module makes of it (one hash for both).
    let img = Image::fixture("tiny-5x3.jpg");
    let png = img.png();
    assert_ne!(png.hash(), img.hash);

    h.recv(&presence(PANDION, &x_avatar(&img.hash)));
    h.expect_sent(&iq_avatar_get("gw1", PANDION));
    // Nothing is known of the account yet: read what PEP and the vCard hold (no node, no PHOTO).
    h.expect_sent_and_serve(&pep_poll("gw2", ALICE));
    h.expect_sent_and_serve(&vcard_get("gw3", ALICE));
    h.expect_nothing_sent();
    h.expect_no_events();

    h.recv(&iq_avatar_result("gw1", PANDION, "image/jpeg", &img.b64));
    h.expect_events(vec![fetched(ALICE, Scheme::Legacy, img.hash), adopted(ALICE, Scheme::Legacy, img.hash)]);
    // XEP-0084: data first, metadata once the data is there. The vCard read a moment ago is the one written back
    // (one read per conversion): its PHOTO set, the rest kept.
    h.expect_sent_and_serve(&publish_data("gw4", ALICE, &png));
    h.expect_sent_and_serve(&vcard_set("gw5", ALICE, &format!("{ALICE_VCARD_FIELDS}{}", photo(&png))));
    h.expect_sent_and_serve(&publish_metadata("gw6", ALICE, &png));
    h.expect_events(vec![wrote(ALICE, Scheme::Vcard, Some(png.hash())), wrote(ALICE, Scheme::Pep, Some(png.hash()))]);
    assert_eq!(
        h.server.writes(),
        vec![
            format!("{ALICE} set urn:xmpp:avatar:data {}", png.hash()),
            format!("{ALICE} set vcard"),
            format!("{ALICE} set urn:xmpp:avatar:metadata {}", png.hash()),
        ]
    );
    h.expect_nothing_sent();
}

#[test]
fn legacy_avatar_reaches_pep_when_the_image_arrives_before_the_pep_read() {
    // Same flow, but the client answers before the server: the PEP read that was outstanding when the avatar was
    // adopted must still lead to the publication.
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    h.server.set_vcard(ALICE, &alice_vcard(""));
    let img = Image::fixture("tiny-5x3.jpg");
    let png = img.png();
    h.recv(&presence(PANDION, &x_avatar(&img.hash)));
    h.expect_sent(&iq_avatar_get("gw1", PANDION));
    let poll = h.expect_sent(&pep_poll("gw2", ALICE));
    let read = h.expect_sent(&vcard_get("gw3", ALICE));
    h.recv(&iq_avatar_result("gw1", PANDION, "image/jpeg", &img.b64));
    h.expect_events(vec![fetched(ALICE, Scheme::Legacy, img.hash), adopted(ALICE, Scheme::Legacy, img.hash)]);
    // PEP is being read already; the vCard write starts with its own read.
    let read_for_write = h.expect_sent(&vcard_get("gw4", ALICE));
    h.expect_nothing_sent();
    h.serve(&poll);
    h.expect_sent_and_serve(&publish_data("gw5", ALICE, &png));
    h.serve(&read);
    h.serve(&read_for_write);
    assert!(h.drive_bounded(10).is_empty());
    assert_eq!(h.server.item_ids(ALICE, ns::AVATAR_METADATA), vec![png.hash().to_string()]);
    assert_eq!(h.server.vcard(ALICE), Some(xml::to_string(&parse(&alice_vcard(&photo(&png))))));
    h.expect_events(vec![wrote(ALICE, Scheme::Pep, Some(png.hash())), wrote(ALICE, Scheme::Vcard, Some(png.hash()))]);
    h.expect_nothing_sent();
}

#[test]
fn a_vcard_read_that_crossed_the_gateways_write_is_not_reused_for_a_later_write() {
    // The image arrives before the first vCard read is answered: the write reads again (gw4) and sets the PHOTO;
    // the first read's answer (no PHOTO) comes after and must not stand for the vCard when "no avatar" follows.
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    h.server.set_vcard(ALICE, &alice_vcard(""));
    let img = Image::fixture("tiny-5x3.jpg");
    h.recv(&presence(PANDION, &x_avatar(&img.hash)));
    h.expect_sent(&iq_avatar_get("gw1", PANDION));
    let poll = h.expect_sent(&pep_poll("gw2", ALICE));
    let first_read = h.expect_sent(&vcard_get("gw3", ALICE));
    h.recv(&iq_avatar_result("gw1", PANDION, "image/jpeg", &img.b64));
    let read_for_write = h.expect_sent(&vcard_get("gw4", ALICE));
    h.serve(&read_for_write);
    h.serve(&first_read);
    h.serve(&poll);
    h.drive_bounded(10);
    assert_eq!(h.server.vcard(ALICE), Some(xml::to_string(&parse(&alice_vcard(&photo(&img.png()))))));
    h.take_events();

    h.recv(&presence(PANDION, "<x xmlns='jabber:x:avatar'/>"));
    h.drive_bounded(10);
    assert_eq!(h.server.vcard(ALICE), Some(xml::to_string(&parse(&alice_vcard("")))), "the PHOTO is removed");
    h.expect_nothing_sent();
}

#[test]
fn legacy_presence_repeated_fetches_nothing_and_writes_nothing() {
    let img = Image::fixture("tiny-5x3.jpg");
    let mut h = bridged_from_legacy(&img);
    let writes = h.server.writes().len();
    h.recv(&presence(PANDION, &x_avatar(&img.hash)));
    // The hash in presence is the current avatar's: nothing to do, not even a read.
    h.expect_nothing_sent();
    h.expect_no_events();
    assert_eq!(h.server.writes().len(), writes);
    // A presence that vouches for nothing (a client without XEP-0008 or XEP-0153) tells nothing of PEP on a server
    // that does not convert: PEP is read (metadata only); it holds our own publication, so nothing follows.
    h.recv(&presence(DINO, ""));
    h.expect_sent_and_serve(&pep_poll("gw7", ALICE));
    h.expect_nothing_sent();
    h.expect_no_events();
}

#[test]
fn legacy_presence_repeated_on_a_converting_server_sends_nothing() {
    let img = Image::fixture("tiny-5x3.jpg");
    let mut h = Harness::prosody(ServerConverts::Yes, FakeServer::converting());
    h.recv(&presence(PANDION, &x_avatar(&img.hash)));
    assert_eq!(h.drive_bounded(10).len(), 1);
    h.recv(&iq_avatar_result("gw1", PANDION, "image/jpeg", &img.b64));
    assert!(h.drive_bounded(10).is_empty());
    h.take_events();
    for _ in 0..3 {
        h.recv(&presence(PANDION, &format!("{}{}", x_avatar(&img.hash), x_update(&img.png().hash()))));
        h.expect_nothing_sent();
        h.expect_no_events();
    }
}

#[test]
fn legacy_hash_mismatch_is_refused_for_that_account_only() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    let advertised = Image::fixture("pixel-1x1.png");
    let sent = Image::fixture("avatar-96x96-alpha.png");
    h.recv(&presence(PANDION, &x_avatar(&advertised.hash)));
    let to_client = h.drive_bounded(10);
    assert_eq!(xml::to_string(&to_client[0]), xml::to_string(&parse(&iq_avatar_get("gw1", PANDION))));
    h.recv(&iq_avatar_result("gw1", PANDION, "image/png", &sent.b64));
    let events = h.take_events();
    assert_eq!(events[0], fetched(ALICE, Scheme::Legacy, sent.hash));
    assert_refused(
        &events[1],
        ALICE,
        Scheme::Legacy,
        &format!("advertised {} but the bytes hash to {}", advertised.hash, sent.hash),
    );
    assert_eq!(events.len(), 2);
    h.expect_nothing_sent();
    assert!(h.server.writes().is_empty(), "nothing published: {:?}", h.server.log);

    // The same presence again: the client is not asked again (only PEP is re-read, see the repeat scenario).
    h.recv(&presence(PANDION, &x_avatar(&advertised.hash)));
    assert!(h.drive_bounded(10).is_empty());
    let events = h.take_events();
    assert!(
        matches!(events.as_slice(), [Event::Refused { reason, .. }] if reason.contains("failed before")),
        "{events:?}"
    );

    // Another account advertising the same hash is asked itself: Alice's failure is held against Alice only,
    // or any user could block an image for everyone by advertising its hash and answering with junk.
    let bob_client = "bob@localhost/pandion";
    h.recv(&presence(bob_client, &x_avatar(&advertised.hash)));
    let to_client = h.drive_bounded(10);
    assert_eq!(to_client.len(), 1, "the jabber:iq:avatar get to Bob: {to_client:?}");
    let id = to_client[0].attr("id").unwrap().to_owned();
    assert_eq!(xml::to_string(&to_client[0]), xml::to_string(&parse(&iq_avatar_get(&id, bob_client))));
    h.recv(&iq_avatar_result(&id, bob_client, "image/png", &advertised.b64));
    assert!(h.drive_bounded(20).is_empty());
    let events = h.take_events();
    assert_eq!(events[0], fetched(BOB, Scheme::Legacy, advertised.hash));
    assert_eq!(events[1], adopted(BOB, Scheme::Legacy, advertised.hash));
    assert_eq!(h.server.item_ids(BOB, ns::AVATAR_DATA), vec![advertised.png().hash().to_string()]);
}

#[test]
fn legacy_fetch_timeout_is_refused_and_nothing_published() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    let img = Image::fixture("pixel-1x1.png");
    h.recv(&presence(PANDION, &x_avatar(&img.hash)));
    assert_eq!(h.drive_bounded(10).len(), 1, "the jabber:iq:avatar get");
    h.advance(IQ_TIMEOUT - Duration::from_millis(1));
    h.expect_no_events();
    h.advance(Duration::from_millis(1));
    let events = h.take_events();
    assert_refused(&events[0], ALICE, Scheme::Legacy, &format!("fetching {} failed: timeout", img.hash));
    assert_eq!(events.len(), 1);
    assert_eq!(h.engine.poll_timeout(), None);
    // The answer that comes too late is nobody's reply any more.
    h.recv(&iq_avatar_result("gw1", PANDION, "image/png", &img.b64));
    h.expect_no_events();
    assert!(h.server.writes().is_empty());
    h.expect_nothing_sent();
}

#[test]
fn bad_images_are_refused_and_the_previous_avatar_kept() {
    let good = Image::fixture("avatar-96x96-alpha.png");
    let mut h = bridged_from_legacy(&good);
    h.server.account(ALICE).subscribers.push(BOB.into());
    let writes = h.server.writes().len();
    let mut oversized = Image::fixture("pixel-1x1.png").bytes;
    oversized.resize(600 * 1024, 0);
    let bad = [
        ("truncated.png", Image::fixture("invalid/truncated.png"), "undecodable"),
        ("not-an-image.png", Image::fixture("invalid/not-an-image.png"), "not a PNG, JPEG, GIF or WebP"),
        ("bomb-10000x10000.png", Image::fixture("invalid/bomb-10000x10000.png"), "pixel budget"),
        ("600 KiB", Image::from_bytes(oversized), "over the 524288-byte limit"),
    ];
    for (name, img, reason) in bad {
        h.recv(&presence(PANDION, &x_avatar(&img.hash)));
        let to_client = h.drive_bounded(10);
        assert_eq!(to_client.len(), 1, "{name}: one jabber:iq:avatar get");
        let id = to_client[0].attr("id").unwrap().to_owned();
        h.recv(&iq_avatar_result(&id, PANDION, "image/png", &img.b64));
        let events = h.take_events();
        assert_eq!(events[0], fetched(ALICE, Scheme::Legacy, img.hash), "{name}");
        assert_refused(&events[1], ALICE, Scheme::Legacy, reason);
        assert_eq!(events.len(), 2, "{name}: {events:?}");
        h.expect_nothing_sent();
    }
    assert_eq!(h.server.writes().len(), writes, "nothing written over the good avatar: {:?}", h.server.log);
    assert_eq!(h.server.item_ids(ALICE, ns::AVATAR_METADATA), vec![good.png().hash().to_string()]);

    // A reader still gets the good avatar.
    h.recv(&delegated(
        "d1",
        "<iq xmlns='jabber:client' type='get' id='r1' from='bob@localhost/pc' to='alice@localhost'><query xmlns='jabber:iq:avatar'/></iq>",
    ));
    let others = h.drive_bounded(10);
    let legacy = good.legacy();
    assert_eq!(
        xml::to_string(&others[0]),
        xml::to_string(&parse(&delegated_reply(
            "d1",
            &format!(
                "<iq xmlns='jabber:client' type='result' id='r1' from='alice@localhost' to='bob@localhost/pc'>\
                 <query xmlns='jabber:iq:avatar'><data mimetype='{}'>{}</data></query></iq>",
                legacy.mime(),
                b64::encode(legacy.bytes())
            )
        )))
    );
    assert_eq!(others.len(), 1);
    h.expect_nothing_sent();
}

// ---- storage:client:avatar (delegated) -------------------------------------------------------------------------

#[test]
fn storage_set_by_the_owner_is_acknowledged_then_converted() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    h.server.set_vcard(ALICE, &alice_vcard(""));
    let img = Image::fixture("avatar-96x96-alpha.png");
    // The owner's IQ to its own bare JID arrives without `to` (Prosody).
    h.recv(&storage_set("d1", "s1", "alice@localhost/coccinella", &img));
    h.expect_events(vec![adopted(ALICE, Scheme::Legacy, img.hash)]);
    let png = img.png();
    assert_eq!(png.hash(), img.hash, "a small PNG is published as it is");
    let poll = h.expect_sent(&pep_poll("gw1", ALICE));
    let read = h.expect_sent(&vcard_get("gw2", ALICE));
    // Acknowledged once the store reported the commit (here at once), with the adoption that followed the set.
    h.expect_sent(&delegated_reply(
        "d1",
        "<iq xmlns='jabber:client' type='result' id='s1' to='alice@localhost/coccinella'/>",
    ));
    let record = h.store.load_account(ALICE).unwrap().expect("alice's record");
    assert_eq!(record.storage, Some(img.hash));
    assert_eq!(record.current.map(|c| c.legacy), Some(img.legacy().hash()));
    assert!(h.store.load_blob(&img.hash).unwrap().is_some());
    h.serve(&poll);
    h.serve(&read);
    h.expect_sent_and_serve(&publish_data("gw3", ALICE, &png));
    h.expect_sent_and_serve(&vcard_set("gw4", ALICE, &format!("{ALICE_VCARD_FIELDS}{}", photo(&png))));
    h.expect_sent_and_serve(&publish_metadata("gw5", ALICE, &png));
    h.expect_events(vec![wrote(ALICE, Scheme::Vcard, Some(png.hash())), wrote(ALICE, Scheme::Pep, Some(png.hash()))]);

    // A contact reading the storage now gets the ≤ 64 px rendition.
    h.server.account(ALICE).subscribers.push(BOB.into());
    h.recv(&delegated(
        "d2",
        "<iq xmlns='jabber:client' type='get' id='r1' from='bob@localhost/pc' to='alice@localhost'><query xmlns='storage:client:avatar'/></iq>",
    ));
    let legacy = good_legacy_reply(&img, "d2", "r1", "storage:client:avatar");
    let others = h.drive_bounded(10);
    assert_eq!(others.len(), 1);
    assert_eq!(xml::to_string(&others[0]), xml::to_string(&parse(&legacy)));
    h.expect_nothing_sent();
}

#[test]
fn storage_set_is_answered_only_once_committed_and_an_error_if_the_commit_failed() {
    let mut h = Harness::prosody(ServerConverts::Yes, FakeServer::plain());
    h.hold_syncs = true;
    let img = Image::fixture("pixel-1x1.png");
    let set = |id: &str| storage_set(id, &format!("s-{id}"), "alice@localhost/coccinella", &img);
    h.recv(&set("d1"));
    let publish = h.expect_sent(&pep_poll("gw1", ALICE));
    h.expect_nothing_sent();
    h.release_sync();
    h.expect_sent(&delegated_reply(
        "d1",
        "<iq xmlns='jabber:client' type='result' id='s-d1' to='alice@localhost/coccinella'/>",
    ));
    h.serve(&publish);
    h.drive_bounded(10);

    // The store could not commit: the owner is told, never `result`.
    h.recv(&set("d2"));
    h.expect_nothing_sent();
    let Some(StoreAnswer::Stored(id, Ok(()))) = h.held_syncs.pop_front() else { panic!("a held sync") };
    h.engine.handle_stored(h.now, id, Err("disk full".into()));
    h.expect_sent(&delegated_reply(
        "d2",
        "<iq xmlns='jabber:client' type='error' id='s-d2' to='alice@localhost/coccinella'>\
         <error type='wait'><internal-server-error xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
    ));
    h.expect_nothing_sent();
}

#[test]
fn after_a_restart_readers_are_served_from_the_store_and_nothing_is_fetched_or_written_again() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    h.server.set_vcard(ALICE, &alice_vcard(""));
    let img = Image::fixture("avatar-96x96-alpha.png");
    h.recv(&storage_set("d1", "s1", "alice@localhost/coccinella", &img));
    h.drive_bounded(10);
    let writes = h.server.writes().len();
    h.take_events();

    h.restart();
    h.connect_prosody();
    h.server.account(ALICE).subscribers.push(BOB.into());
    h.recv(&delegated(
        "d2",
        "<iq xmlns='jabber:client' type='get' id='r1' from='bob@localhost/pc' to='alice@localhost'><query xmlns='storage:client:avatar'/></iq>",
    ));
    // The legacy rendition comes back from the store (the cache is empty after the restart), validated again.
    let others = h.drive_bounded(10);
    assert_eq!(others.len(), 1);
    let legacy = good_legacy_reply(&img, "d2", "r1", "storage:client:avatar");
    assert_eq!(xml::to_string(&others[0]), xml::to_string(&parse(&legacy)));
    assert_eq!(h.server.writes().len(), writes, "nothing written again");
    let events = h.take_events();
    assert!(!events.iter().any(|e| matches!(e, Event::Fetched { .. } | Event::Adopted { .. })), "{events:?}");
    h.expect_nothing_sent();
}

fn good_legacy_reply(img: &Image, outer: &str, inner: &str, namespace: &str) -> String {
    let legacy = img.legacy();
    delegated_reply(
        outer,
        &format!(
            "<iq xmlns='jabber:client' type='result' id='{inner}' from='alice@localhost' to='bob@localhost/pc'>\
             <query xmlns='{namespace}'><data mimetype='{}'>{}</data></query></iq>",
            legacy.mime(),
            b64::encode(legacy.bytes())
        ),
    )
}

#[test]
fn storage_set_by_another_user_is_forbidden() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    let img = Image::fixture("pixel-1x1.png");
    h.recv(&delegated(
        "d1",
        &format!(
            "<iq xmlns='jabber:client' type='set' id='s1' from='bob@localhost/pc' to='alice@localhost'>\
             <query xmlns='storage:client:avatar'><data mimetype='image/png'>{}</data></query></iq>",
            img.b64
        ),
    ));
    h.expect_sent(&delegated_reply(
        "d1",
        "<iq xmlns='jabber:client' type='error' id='s1' from='alice@localhost' to='bob@localhost/pc'>\
         <error type='auth'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
    ));
    h.expect_no_events();
    h.expect_nothing_sent();
}

#[test]
fn storage_set_with_a_bad_image_is_not_acceptable() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    let img = Image::fixture("invalid/truncated.png");
    h.recv(&storage_set("d1", "s1", "alice@localhost/coccinella", &img));
    h.expect_sent(&delegated_reply(
        "d1",
        "<iq xmlns='jabber:client' type='error' id='s1' to='alice@localhost/coccinella'>\
         <error type='modify'><not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
    ));
    let events = h.take_events();
    assert_refused(&events[0], ALICE, Scheme::Legacy, "undecodable");
    assert_eq!(events.len(), 1);
    h.expect_nothing_sent();
}

// ---- XEP-0008 readers (delegated gets on bare JIDs) ------------------------------------------------------------

#[test]
fn reader_gets_a_small_rendition_of_the_pep_png() {
    let mut h = Harness::prosody(ServerConverts::Yes, FakeServer::plain());
    h.server.account(ALICE).subscribers.push(BOB.into());
    let img = alice_with_pep_avatar(&mut h);

    h.recv(&delegated(
        "d1",
        "<iq xmlns='jabber:client' type='get' id='r1' from='bob@localhost/pc' to='alice@localhost'><query xmlns='storage:client:avatar'/></iq>",
    ));
    // May Bob see it? The server says, for the metadata node read as Bob.
    h.expect_sent_and_serve(&reader_access("gw1", BOB, ALICE));
    h.expect_sent_and_serve(&pep_poll("gw2", ALICE));
    h.expect_sent_and_serve(&pep_data_get("gw3", ALICE, &img.hash));
    let reply = h.expect_sent(&good_legacy_reply(&img, "d1", "r1", "storage:client:avatar"));
    // What the reader gets checks out on its own: ≤ 64 px, < 8 KB, and its SHA-1 is the hash reported as served.
    let bytes = served_bytes(&reply);
    let served = Rendition::from_bytes(bytes.clone(), &ImageLimits::default()).unwrap();
    assert!(served.width() <= 64 && served.height() <= 64, "{served:?}");
    assert!(bytes.len() < 8 * 1024, "{} bytes", bytes.len());
    assert_ne!(AvatarHash::of(&bytes), img.hash, "96 px is too large for XEP-0008: a rendition is served");
    h.expect_events(vec![
        fetched(ALICE, Scheme::Pep, img.hash),
        adopted(ALICE, Scheme::Pep, img.hash),
        Event::Served { account: ALICE.into(), reader: BOB_PC.into(), hash: Some(AvatarHash::of(&bytes)) },
    ]);
    // The server converts PEP → vCard itself: the gateway writes nothing.
    h.expect_nothing_sent();

    // The same through jabber:iq:avatar, answered from what is known once the server allows it again.
    h.recv(&delegated(
        "d2",
        "<iq xmlns='jabber:client' type='get' id='r2' from='bob@localhost/pc' to='alice@localhost'><query xmlns='jabber:iq:avatar'/></iq>",
    ));
    h.expect_sent_and_serve(&reader_access("gw4", BOB, ALICE));
    let reply = h.expect_sent(&good_legacy_reply(&img, "d2", "r2", "jabber:iq:avatar"));
    assert_eq!(AvatarHash::of(&served_bytes(&reply)), AvatarHash::of(&bytes));
    h.expect_events(vec![Event::Served {
        account: ALICE.into(),
        reader: BOB_PC.into(),
        hash: Some(AvatarHash::of(&bytes)),
    }]);
    assert!(h.server.writes().is_empty());
    h.expect_nothing_sent();
}

#[test]
fn reader_of_an_account_without_any_avatar_gets_item_not_found() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    h.server.account(ALICE).subscribers.push(BOB.into());
    h.recv(&delegated(
        "d1",
        "<iq xmlns='jabber:client' type='get' id='r1' from='bob@localhost/pc' to='alice@localhost'><query xmlns='storage:client:avatar'/></iq>",
    ));
    // No PEP node and no vCard: both come back as errors inside outer results (Prosody).
    h.expect_sent_and_serve(&reader_access("gw1", BOB, ALICE));
    h.expect_sent_and_serve(&pep_poll("gw2", ALICE));
    // Not answered yet: the vCard might still hold one.
    h.expect_sent_and_serve(&vcard_get("gw3", ALICE));
    h.expect_sent(&delegated_reply(
        "d1",
        "<iq xmlns='jabber:client' type='error' id='r1' from='alice@localhost' to='bob@localhost/pc'>\
         <error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
    ));
    h.expect_events(vec![Event::Served { account: ALICE.into(), reader: BOB_PC.into(), hash: None }]);
    assert!(h.server.writes().is_empty());
    h.expect_nothing_sent();
}

// ---- vCard ↔ XEP-0084 ------------------------------------------------------------------------------------------

#[test]
fn vcard_to_pep_on_a_plain_server() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    let img = Image::fixture("photo-300x200.jpg");
    // Gajim's vCard: a JPEG, BINVAL wrapped at 76 columns.
    let wrapped: Vec<String> = img.b64.as_bytes().chunks(76).map(|c| String::from_utf8(c.to_vec()).unwrap()).collect();
    let vcard = alice_vcard(&format!("<PHOTO><TYPE>image/jpeg</TYPE><BINVAL>{}</BINVAL></PHOTO>", wrapped.join("\n")));
    h.server.set_vcard(ALICE, &vcard);
    let png = img.png();
    assert_eq!((png.width(), png.height()), (300, 200));

    h.recv(&presence(GAJIM, &x_update(&img.hash)));
    h.expect_sent_and_serve(&pep_poll("gw1", ALICE));
    h.expect_sent_and_serve(&vcard_get("gw2", ALICE));
    h.expect_events(vec![fetched(ALICE, Scheme::Vcard, img.hash), adopted(ALICE, Scheme::Vcard, img.hash)]);
    h.expect_sent_and_serve(&publish_data("gw3", ALICE, &png));
    h.expect_sent_and_serve(&publish_metadata("gw4", ALICE, &png));
    h.expect_events(vec![wrote(ALICE, Scheme::Pep, Some(png.hash()))]);
    // Rule 4: the vCard the avatar came from is never rewritten.
    assert_eq!(h.server.vcard(ALICE), Some(xml::to_string(&parse(&vcard))));
    assert_eq!(h.server.writes().len(), 2);
    h.expect_nothing_sent();
}

#[test]
fn pep_to_vcard_on_a_plain_server() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    h.server.set_vcard(ALICE, &alice_vcard(""));
    let img = alice_with_pep_avatar(&mut h);
    let png = img.png();

    h.recv(&presence(DINO, ""));
    h.expect_sent_and_serve(&pep_poll("gw1", ALICE));
    h.expect_sent_and_serve(&vcard_get("gw2", ALICE));
    h.expect_sent_and_serve(&pep_data_get("gw3", ALICE, &img.hash));
    h.expect_events(vec![fetched(ALICE, Scheme::Pep, img.hash), adopted(ALICE, Scheme::Pep, img.hash)]);
    // The vCard just read (gw2) is the one written back: one read per conversion.
    h.expect_sent_and_serve(&vcard_set("gw4", ALICE, &format!("{ALICE_VCARD_FIELDS}{}", photo(&png))));
    h.expect_events(vec![wrote(ALICE, Scheme::Vcard, Some(png.hash()))]);
    assert_eq!(h.server.writes(), vec![format!("{ALICE} set vcard")]);
    h.expect_nothing_sent();
}

#[test]
fn a_vcard_read_seconds_before_the_write_is_read_again() {
    // The owner may have changed another field meanwhile: a vCard is set back whole, so it must be fresh.
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    h.server.set_vcard(ALICE, &alice_vcard(""));
    let img = alice_with_pep_avatar(&mut h);
    let png = img.png();
    h.recv(&presence(DINO, ""));
    h.expect_sent_and_serve(&pep_poll("gw1", ALICE));
    h.expect_sent_and_serve(&vcard_get("gw2", ALICE));
    let data = h.expect_sent(&pep_data_get("gw3", ALICE, &img.hash));
    h.advance(Duration::from_secs(6));
    h.server.set_vcard(ALICE, &alice_vcard("<TITLE>changed meanwhile</TITLE>"));
    h.serve(&data);
    h.expect_events(vec![fetched(ALICE, Scheme::Pep, img.hash), adopted(ALICE, Scheme::Pep, img.hash)]);
    h.expect_sent_and_serve(&vcard_get("gw4", ALICE));
    h.expect_sent_and_serve(&vcard_set(
        "gw5",
        ALICE,
        &format!("{ALICE_VCARD_FIELDS}<TITLE>changed meanwhile</TITLE>{}", photo(&png)),
    ));
    h.expect_events(vec![wrote(ALICE, Scheme::Vcard, Some(png.hash()))]);
    h.expect_nothing_sent();
}

#[test]
fn converting_server_gets_the_legacy_avatar_in_pep_only_and_settles() {
    let mut h = Harness::prosody(ServerConverts::Yes, FakeServer::converting());
    let img = Image::fixture("tiny-5x3.jpg");
    let png = img.png();
    h.recv(&presence(PANDION, &x_avatar(&img.hash)));
    h.expect_sent(&iq_avatar_get("gw1", PANDION));
    // The server converts vCard ↔ PEP: only PEP is read, never the vCard.
    h.expect_sent_and_serve(&pep_poll("gw2", ALICE));
    h.expect_nothing_sent();
    h.recv(&iq_avatar_result("gw1", PANDION, "image/jpeg", &img.b64));
    h.expect_sent_and_serve(&publish_data("gw3", ALICE, &png));
    // The metadata publication makes the server write the vCard and notify us of our own item.
    h.expect_sent_and_serve(&publish_metadata("gw4", ALICE, &png));
    assert!(h.drive_bounded(20).is_empty());
    // Prosody now injects the PEP id into the legacy client's presence.
    h.recv(&presence(PANDION, &format!("{}{}", x_avatar(&img.hash), x_update(&png.hash()))));
    assert!(h.drive_bounded(20).is_empty());
    h.expect_events(vec![
        fetched(ALICE, Scheme::Legacy, img.hash),
        adopted(ALICE, Scheme::Legacy, img.hash),
        wrote(ALICE, Scheme::Pep, Some(png.hash())),
    ]);
    assert_eq!(
        h.server.writes(),
        vec![
            format!("{ALICE} set urn:xmpp:avatar:data {}", png.hash()),
            format!("{ALICE} set urn:xmpp:avatar:metadata {}", png.hash()),
        ],
        "published once, and no vCard write by the gateway"
    );
    assert_eq!(
        h.server.vcard(ALICE),
        Some(xml::to_string(&parse(&format!("<vCard xmlns='vcard-temp'>{}</vCard>", photo(&png)))))
    );
    h.expect_nothing_sent();
}

#[test]
fn gateway_that_thinks_the_server_does_not_convert_still_settles() {
    // Misconfiguration (server_converts = "no" on a converting Prosody): both write the vCard, but each side sees
    // the other's write as the avatar it already has, so nothing ping-pongs.
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::converting());
    let img = Image::fixture("tiny-5x3.jpg");
    let png = img.png();
    h.recv(&presence(PANDION, &x_avatar(&img.hash)));
    assert_eq!(h.drive_bounded(20).len(), 1);
    h.recv(&iq_avatar_result("gw1", PANDION, "image/jpeg", &img.b64));
    assert!(h.drive_bounded(20).is_empty());
    for _ in 0..3 {
        h.recv(&presence(PANDION, &format!("{}{}", x_avatar(&img.hash), x_update(&png.hash()))));
        assert!(h.drive_bounded(20).is_empty());
    }
    assert_eq!(h.server.item_ids(ALICE, ns::AVATAR_METADATA), vec![png.hash().to_string()]);
    assert_eq!(
        h.server.vcard(ALICE),
        Some(xml::to_string(&parse(&format!("<vCard xmlns='vcard-temp'>{}</vCard>", photo(&png)))))
    );
    let data_writes = h.server.writes().iter().filter(|l| l.contains(ns::AVATAR_DATA)).count();
    assert_eq!(data_writes, 1, "{:?}", h.server.log);
    h.expect_nothing_sent();
}

// ---- "no avatar" -----------------------------------------------------------------------------------------------

#[test]
fn legacy_avatar_disabled_empties_pep_and_removes_the_vcard_photo() {
    let img = Image::fixture("tiny-5x3.jpg");
    let mut h = bridged_from_legacy(&img);
    h.recv(&presence(PANDION, "<x xmlns='jabber:x:avatar'/>"));
    h.expect_events(vec![Event::Removed { account: ALICE.into(), scheme: Scheme::Legacy }]);
    h.expect_sent_and_serve(&publish_no_avatar("gw7", ALICE));
    h.expect_sent_and_serve(&vcard_get("gw8", ALICE));
    h.expect_sent_and_serve(&pep_poll("gw9", ALICE));
    h.expect_sent_and_serve(&vcard_set("gw10", ALICE, ALICE_VCARD_FIELDS));
    h.expect_events(vec![wrote(ALICE, Scheme::Pep, None), wrote(ALICE, Scheme::Vcard, None)]);
    assert_eq!(h.server.vcard(ALICE), Some(xml::to_string(&parse(&alice_vcard("")))));
    // The same "no avatar" again is no news.
    h.recv(&presence(PANDION, "<x xmlns='jabber:x:avatar'/>"));
    assert!(h.drive_bounded(10).is_empty());
    h.expect_no_events();
    h.expect_nothing_sent();
}

#[test]
fn pep_metadata_emptied_removes_the_vcard_photo() {
    let img = Image::fixture("avatar-96x96-alpha.png");
    let mut h = bridged_from_pep(&img);
    h.recv(
        "<message xmlns='jabber:component:accept' type='headline' from='alice@localhost' to='avatars.localhost'>
           <event xmlns='http://jabber.org/protocol/pubsub#event'>
             <items node='urn:xmpp:avatar:metadata'>
               <item id='3f6a1e5c-0c2b-4a7e-9f3d-1b2c3d4e5f60'><metadata xmlns='urn:xmpp:avatar:metadata'/></item>
             </items>
           </event>
         </message>",
    );
    expect_pep_removal_clears_the_vcard(&mut h);
}

#[test]
fn pep_metadata_node_deleted_removes_the_vcard_photo() {
    // Dino and Conversations delete the node to say "no avatar".
    let img = Image::fixture("avatar-96x96-alpha.png");
    let mut h = bridged_from_pep(&img);
    h.recv(
        "<message xmlns='jabber:component:accept' from='alice@localhost' to='avatars.localhost'>
           <event xmlns='http://jabber.org/protocol/pubsub#event'><delete node='urn:xmpp:avatar:metadata'/></event>
         </message>",
    );
    expect_pep_removal_clears_the_vcard(&mut h);
}

// ---- echoes ----------------------------------------------------------------------------------------------------

#[test]
fn own_writes_echoing_back_cause_nothing() {
    let img = Image::fixture("tiny-5x3.jpg");
    let png = img.png();
    let mut h = bridged_from_legacy(&img);
    // Our own metadata item coming back as a notification (with the publisher Prosody adds).
    h.recv_element(metadata_event(ALICE, &png.hash().to_string(), &parse(&metadata_of(&png))));
    h.expect_no_events();
    h.expect_nothing_sent();

    // On a converting server, the XEP-0153 hash Prosody injects is our PEP id: no read, no write.
    let mut h = Harness::prosody(ServerConverts::Yes, FakeServer::converting());
    h.recv(&presence(PANDION, &x_avatar(&img.hash)));
    assert_eq!(h.drive_bounded(10).len(), 1);
    h.recv(&iq_avatar_result("gw1", PANDION, "image/jpeg", &img.b64));
    assert!(h.drive_bounded(10).is_empty());
    h.take_events();
    let writes = h.server.writes().len();
    h.recv(&presence(GAJIM, &x_update(&png.hash())));
    h.recv_element(metadata_event(ALICE, &png.hash().to_string(), &parse(&metadata_of(&png))));
    // Prosody's own conversion republishes with its info (no width/height): still our hash.
    h.recv_element(metadata_event(
        ALICE,
        &png.hash().to_string(),
        &parse(&format!(
            "<metadata xmlns='urn:xmpp:avatar:metadata'><info bytes='{}' id='{}' type='image/png'/></metadata>",
            png.bytes().len(),
            png.hash()
        )),
    ));
    h.expect_no_events();
    h.expect_nothing_sent();
    assert_eq!(h.server.writes().len(), writes);
}

// ---- the link --------------------------------------------------------------------------------------------------

#[test]
fn disconnect_voids_exchanges_and_reconnect_relearns_grants() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    let img = Image::fixture("tiny-5x3.jpg");
    h.recv(&presence(PANDION, &x_avatar(&img.hash)));
    h.expect_sent(&iq_avatar_get("gw1", PANDION));
    let poll = h.expect_sent(&pep_poll("gw2", ALICE));
    h.expect_sent(&vcard_get("gw3", ALICE));
    assert!(h.engine.poll_timeout().is_some());

    h.engine.handle_disconnected(h.now);
    assert_eq!(h.engine.poll_timeout(), None, "no exchange left to time out");
    // Replies that straggle in are nobody's.
    h.recv(&iq_avatar_result("gw1", PANDION, "image/jpeg", &img.b64));
    h.serve(&poll);
    h.expect_no_events();
    h.expect_nothing_sent();

    // Reconnected, nothing is granted until the server says so again: privileged IQs are not even tried.
    h.engine.handle_connected(h.now);
    assert!(!h.engine.grants().allows_iq(DOMAIN, ns::PUBSUB, IqType::Get));
    h.recv(&presence("bob@localhost/pandion", ""));
    h.expect_events(vec![Event::NotGranted {
        account: BOB.into(),
        what: "get http://jabber.org/protocol/pubsub".into(),
    }]);
    // Bob's vCard read as anyone may read it (its answer would be no proof of anything: a plain read never removes
    // an avatar). The version query waits for the server's announcement.
    let plain = h.next_sent().expect("a plain vCard read");
    assert_eq!((plain.attr("to"), plain.get_child("vCard", ns::VCARD).is_some()), (Some(BOB), true));
    h.expect_nothing_sent();
    h.connect_prosody();

    // The server re-sends the current presences (XEP-0356): the fetch the disconnect voided happens again.
    h.recv(&presence(PANDION, &x_avatar(&img.hash)));
    let to_client = h.drive_bounded(10);
    assert_eq!(to_client.len(), 1, "the image is asked for again");
    let id = to_client[0].attr("id").unwrap().to_owned();
    assert_eq!(xml::to_string(&to_client[0]), xml::to_string(&parse(&iq_avatar_get(&id, PANDION))));
    h.recv(&iq_avatar_result(&id, PANDION, "image/jpeg", &img.b64));
    assert!(h.drive_bounded(10).is_empty());
    assert_eq!(h.server.item_ids(ALICE, ns::AVATAR_METADATA), vec![img.png().hash().to_string()]);
    h.expect_nothing_sent();
}

#[test]
fn unsolicited_and_forged_results_are_ignored() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    let evil = Image::fixture("avatar-96x96-alpha.png");
    let evil_vcard = format!("<vCard xmlns='vcard-temp'>{}</vCard>", photo(&evil.rendition()));
    // A result nobody asked for.
    h.recv(&privileged_result("gw99", ALICE, &evil_vcard));
    h.recv(
        "<iq xmlns='jabber:component:accept' type='result' id='gw1' from='alice@localhost' to='avatars.localhost'/>",
    );
    h.recv("<iq xmlns='jabber:component:accept' type='error' id='x' from='alice@localhost' to='avatars.localhost'/>");
    h.expect_no_events();
    h.expect_nothing_sent();

    // A result with an id we did ask for, but from someone else: Mallory answers the vCard read meant for Alice.
    h.recv(&presence(DINO, ""));
    h.expect_sent(&pep_poll("gw1", ALICE));
    let read = h.expect_sent(&vcard_get("gw2", ALICE));
    h.recv(&privileged_result("gw2", "mallory@localhost", &evil_vcard).replace(
        "from='mallory@localhost' to='avatars.localhost'",
        "from='mallory@localhost/x' to='avatars.localhost'",
    ));
    h.expect_no_events();
    h.expect_nothing_sent();
    // Alice's real answer still counts.
    h.serve(&read);
    h.expect_no_events();
    h.expect_nothing_sent();
    assert!(h.server.writes().is_empty());
}

#[test]
fn malformed_presences_do_not_panic_and_change_nothing() {
    let mut h = Harness::prosody(ServerConverts::Yes, FakeServer::plain());
    h.recv(&presence(DINO, ""));
    h.expect_sent_and_serve(&pep_poll("gw1", ALICE));
    h.expect_nothing_sent();
    // 40 bytes with a non-ASCII char at an odd offset: the input that panics xmpp-parsers 0.23's FixedHex.
    let evil = format!("0é{}", &"4a5eb7171b58e08a6881721e3b43d5a44419a2be"[..37]);
    assert_eq!(evil.len(), 40);
    h.recv(&presence(PANDION, &format!("<x xmlns='jabber:x:avatar'><hash>{evil}</hash></x>")));
    h.recv(&presence(GAJIM, &format!("<x xmlns='vcard-temp:x:update'><photo>{evil}</photo></x>")));
    h.recv(&presence(PANDION, &format!("<x xmlns='jabber:x:avatar'><hash>{}</hash></x>", "z".repeat(40))));
    h.recv("<presence xmlns='jabber:component:accept' from='@@@' to='avatars.localhost'/>");
    h.recv("<presence xmlns='jabber:component:accept' to='avatars.localhost'/>");
    let events = h.take_events();
    assert_eq!(events.len(), 3, "{events:?}");
    assert_refused(&events[0], ALICE, Scheme::Legacy, "this one has 39 characters");
    assert_refused(&events[1], ALICE, Scheme::Vcard, "this one has 39 characters");
    assert_refused(&events[2], ALICE, Scheme::Legacy, "is hexadecimal, this one has 'z' in it");
    h.expect_nothing_sent();
    // What was known stays known: a plain presence reads nothing again.
    h.recv(&presence(DINO, ""));
    h.expect_no_events();
    h.expect_nothing_sent();
}

#[test]
fn pep_items_answer_is_read_through_prosody_inner_errors() {
    // An outer result whose inner IQ is an error is an error (specs.md §6): a PEP read refused with
    // <forbidden/> tells nothing about the account, so nothing is adopted or written.
    let mut h = Harness::prosody(ServerConverts::Yes, FakeServer::plain());
    h.recv(&delegated(
        "d1",
        "<iq xmlns='jabber:client' type='get' id='r1' from='bob@localhost/pc' to='alice@localhost'><query xmlns='jabber:iq:avatar'/></iq>",
    ));
    h.expect_sent(&reader_access("gw1", BOB, ALICE));
    h.expect_sent(&pep_poll("gw2", ALICE));
    h.recv(&privileged_result("gw1", BOB, ""));
    h.recv(&privileged_error("gw2", ALICE, "auth", "forbidden"));
    let events = h.take_events();
    assert_refused(&events[0], ALICE, Scheme::Pep, "reading the metadata node failed: forbidden");
    assert_eq!(events[1], Event::Served { account: ALICE.into(), reader: BOB_PC.into(), hash: None });
    h.expect_sent(&delegated_reply(
        "d1",
        "<iq xmlns='jabber:client' type='error' id='r1' from='alice@localhost' to='bob@localhost/pc'>\
         <error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
    ));
    h.expect_nothing_sent();
}

#[test]
fn storage_set_is_not_overridden_by_the_older_pep_avatar_read_afterwards() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    h.server.set_vcard(ALICE, &alice_vcard(""));
    let old = Image::fixture("pixel-1x1.png");
    h.server.put_item(
        ALICE,
        ns::AVATAR_DATA,
        &old.hash.to_string(),
        &format!("<data xmlns='urn:xmpp:avatar:data'>{}</data>", old.b64),
    );
    h.server.put_item(ALICE, ns::AVATAR_METADATA, &old.hash.to_string(), &metadata_of(&old.png()));
    let img = Image::fixture("avatar-96x96-alpha.png");
    h.recv(&storage_set("d1", "s1", "alice@localhost/coccinella", &img));
    assert_eq!(h.drive_bounded(20).len(), 1, "the delegated result");
    let png = img.png();
    assert_eq!(h.server.item_ids(ALICE, ns::AVATAR_METADATA), vec![png.hash().to_string()], "{:?}", h.server.log);
    assert_eq!(h.server.vcard(ALICE), Some(xml::to_string(&parse(&alice_vcard(&photo(&png))))));
    assert!(!h.server.log.iter().any(|l| l.contains("get urn:xmpp:avatar:data")), "the old image is not fetched");
    h.expect_nothing_sent();
}

#[test]
fn failed_fetch_is_retried_once_the_negative_cache_expires() {
    let mut h = Harness::prosody(ServerConverts::Yes, FakeServer::plain());
    let img = Image::fixture("pixel-1x1.png");
    h.recv(&presence(PANDION, &x_avatar(&img.hash)));
    assert_eq!(h.drive_bounded(10).len(), 1);
    h.advance(IQ_TIMEOUT);
    h.take_events();
    h.advance(Duration::from_secs(601));
    h.recv(&presence(PANDION, &x_avatar(&img.hash)));
    h.expect_sent(&iq_avatar_get("gw3", PANDION));
    h.expect_nothing_sent();
}

#[test]
fn auto_detects_server_conversion_on_the_account() {
    let mut h = Harness::prosody(ServerConverts::Auto, FakeServer::converting());
    let img = Image::fixture("tiny-5x3.jpg");
    let png = img.png();
    h.recv(&presence(PANDION, &x_avatar(&img.hash)));
    // Not granted disco#info as the account (Prosody config has no such iq namespace here): asked plainly.
    h.expect_sent(
        "<iq xmlns='jabber:component:accept' type='get' id='gw1' from='avatars.localhost' to='alice@localhost'>
           <query xmlns='http://jabber.org/protocol/disco#info'/>
         </iq>",
    );
    h.expect_sent(&iq_avatar_get("gw2", PANDION));
    // Until the answer comes, both schemes are read.
    h.expect_sent_and_serve(&pep_poll("gw3", ALICE));
    h.expect_sent_and_serve(&vcard_get("gw4", ALICE));
    h.expect_nothing_sent();
    h.recv(
        "<iq xmlns='jabber:component:accept' type='result' id='gw1' from='alice@localhost' to='avatars.localhost'>
           <query xmlns='http://jabber.org/protocol/disco#info'>
             <identity category='account' type='registered'/>
             <feature var='urn:xmpp:pep-vcard-conversion:0'/>
           </query>
         </iq>",
    );
    h.expect_nothing_sent();
    h.recv(&iq_avatar_result("gw2", PANDION, "image/jpeg", &img.b64));
    // The server converts: PEP only.
    h.expect_sent_and_serve(&publish_data("gw5", ALICE, &png));
    h.expect_sent_and_serve(&publish_metadata("gw6", ALICE, &png));
    assert!(h.drive_bounded(10).is_empty());
    assert_eq!(h.server.writes().len(), 2, "{:?}", h.server.log);
    // Asked once per account.
    h.recv(&presence(PANDION, &format!("{}{}", x_avatar(&img.hash), x_update(&png.hash()))));
    h.expect_nothing_sent();
}

#[test]
fn reader_waiting_on_a_silent_server_is_answered_at_the_timeout() {
    let mut h = Harness::prosody(ServerConverts::Yes, FakeServer::plain());
    h.recv(&delegated(
        "d1",
        "<iq xmlns='jabber:client' type='get' id='r1' from='bob@localhost/pc' to='alice@localhost'><query xmlns='jabber:iq:avatar'/></iq>",
    ));
    h.expect_sent(&reader_access("gw1", BOB, ALICE));
    h.expect_sent(&pep_poll("gw2", ALICE));
    h.advance(IQ_TIMEOUT - Duration::from_millis(1));
    h.expect_nothing_sent();
    h.advance(Duration::from_millis(1));
    // Whether Bob may see it was never established: refused, to be asked again later (fail closed).
    h.expect_sent(&delegated_reply(
        "d1",
        "<iq xmlns='jabber:client' type='error' id='r1' from='alice@localhost' to='bob@localhost/pc'>\
         <error type='wait'><internal-server-error xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
    ));
    let events = h.take_events();
    assert_eq!(events[0], Event::Served { account: ALICE.into(), reader: BOB_PC.into(), hash: None });
    assert_refused(&events[1], ALICE, Scheme::Pep, "reading the metadata node failed: timeout");
    assert_eq!(events.len(), 2);
    assert_eq!(h.engine.poll_timeout(), None);
    h.expect_nothing_sent();
}

#[test]
fn vcard_photo_removed_empties_pep() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    let img = Image::fixture("avatar-96x96-alpha.png");
    h.server.set_vcard(ALICE, &alice_vcard(&photo(&img.rendition())));
    h.recv(&presence(GAJIM, &x_update(&img.hash)));
    assert!(h.drive_bounded(10).is_empty());
    assert_eq!(h.server.item_ids(ALICE, ns::AVATAR_METADATA), vec![img.hash.to_string()]);
    h.take_events();
    // The owner's client removes the PHOTO and says so in presence (XEP-0153 <photo/>).
    h.server.set_vcard(ALICE, &alice_vcard(""));
    h.recv(&presence(GAJIM, "<x xmlns='vcard-temp:x:update'><photo/></x>"));
    h.expect_sent_and_serve(&pep_poll("gw5", ALICE));
    h.expect_sent_and_serve(&vcard_get("gw6", ALICE));
    h.expect_events(vec![Event::Removed { account: ALICE.into(), scheme: Scheme::Vcard }]);
    h.expect_sent_and_serve(&publish_no_avatar("gw7", ALICE));
    h.expect_events(vec![wrote(ALICE, Scheme::Pep, None)]);
    // Rule 4: the vCard is the owner's; it is not touched.
    assert_eq!(h.server.writes().iter().filter(|l| l.contains("vcard")).count(), 0);
    h.expect_nothing_sent();
}

/// After PEP said "no avatar": the removal event, then the vCard read, rewritten without PHOTO (other fields kept),
/// and nothing else.
fn expect_pep_removal_clears_the_vcard(h: &mut Harness) {
    h.expect_events(vec![Event::Removed { account: ALICE.into(), scheme: Scheme::Pep }]);
    h.expect_sent_and_serve(&vcard_get("gw5", ALICE));
    h.expect_sent_and_serve(&vcard_set("gw6", ALICE, ALICE_VCARD_FIELDS));
    h.expect_events(vec![wrote(ALICE, Scheme::Vcard, None)]);
    h.expect_nothing_sent();
}
