//! Golden-stanza scenarios of sweeping dormant accounts (`migrate live`) through the sans-IO engine: every scheme
//! is read without waiting for a presence, what is missing is written, and one `Swept` event says how it ended.

mod common;
mod engine_support;

use avatar_gateway::avatar::AvatarHash;
use avatar_gateway::engine::account::Scheme;
use avatar_gateway::engine::{Event, ServerConverts, SweepOutcome};
use avatar_gateway::image::PngRendition;
use avatar_gateway::wire::{ns, xml};

use engine_support::*;

const BOB: &str = "bob@localhost";

fn vcard_with(img: &Image) -> String {
    format!(
        "<vCard xmlns='vcard-temp'><FN>Alice</FN><PHOTO><TYPE>image/png</TYPE><BINVAL>{}</BINVAL></PHOTO></vCard>",
        img.b64
    )
}

fn swept(account: &str, outcome: SweepOutcome) -> Event {
    Event::Swept { account: account.into(), outcome }
}

fn put_pep(h: &mut Harness, account: &str, img: &Image) {
    let data = format!("<data xmlns='urn:xmpp:avatar:data'>{}</data>", img.b64);
    h.server.put_item(account, ns::AVATAR_DATA, &img.hash.to_string(), &data);
    h.server.put_item(account, ns::AVATAR_METADATA, &img.hash.to_string(), &metadata_of(&img.png()));
}

/// Sweeps Alice: the engine reads her metadata node and her vCard at once (ids gw1, gw2), and the server answers.
fn sweep_reads(h: &mut Harness) {
    h.sweep(ALICE);
    h.expect_sent_and_serve(&pep_poll("gw1", ALICE));
    h.expect_sent_and_serve(&vcard_get("gw2", ALICE));
}

/// Alice's old vCard (a PNG) swept: read, then published to PEP (ids gw1–gw4). Returns the harness and the PNG.
fn sweep_old_vcard(converts: ServerConverts, server: FakeServer) -> (Harness, PngRendition) {
    let mut h = Harness::prosody(converts, server);
    let img = Image::fixture("avatar-96x96-alpha.png");
    let png = img.png();
    h.server.set_vcard(ALICE, &vcard_with(&img));
    sweep_reads(&mut h);
    h.expect_sent_and_serve(&publish_data("gw3", ALICE, &png));
    h.expect_sent_and_serve(&publish_metadata("gw4", ALICE, &png));
    (h, png)
}

fn converted_from_vcard(png: &PngRendition) -> SweepOutcome {
    SweepOutcome::Converted { source: Scheme::Vcard, hash: Some(png.hash()), wrote: vec![Scheme::Pep] }
}

#[test]
fn an_old_vcard_is_published_to_pep_without_any_presence() {
    let (mut h, png) = sweep_old_vcard(ServerConverts::No, FakeServer::plain());
    let original = AvatarHash::of(&Image::fixture("avatar-96x96-alpha.png").bytes);
    h.expect_events(vec![
        Event::Fetched { account: ALICE.into(), scheme: Scheme::Vcard, hash: original },
        Event::Adopted { account: ALICE.into(), scheme: Scheme::Vcard, hash: original },
        Event::Wrote { account: ALICE.into(), scheme: Scheme::Pep, hash: Some(png.hash()) },
        swept(ALICE, converted_from_vcard(&png)),
    ]);
    h.expect_nothing_sent();
}

#[test]
fn a_converting_server_gets_pep_from_a_vcard_it_never_converted() {
    // mod_vcard_legacy / mod_avatar convert when a vCard is set or its owner logs in: a dormant account's old vCard
    // stays without PEP until the sweep publishes it. The server's own PEP → vCard conversion then settles quietly.
    let (mut h, png) = sweep_old_vcard(ServerConverts::Yes, FakeServer::converting());
    assert!(h.drive_bounded(10).is_empty());
    assert_eq!(h.take_events().last(), Some(&swept(ALICE, converted_from_vcard(&png))));
    assert_eq!(h.server.item_ids(ALICE, ns::AVATAR_METADATA), vec![png.hash().to_string()]);
    assert_eq!(h.server.writes().len(), 2);
    h.expect_nothing_sent();
}

#[test]
fn an_account_holding_its_avatar_everywhere_is_skipped() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    let img = Image::fixture("avatar-96x96-alpha.png");
    h.server.set_vcard(ALICE, &vcard_with(&img));
    put_pep(&mut h, ALICE, &img);

    sweep_reads(&mut h);
    h.expect_sent_and_serve(&pep_data_get("gw3", ALICE, &img.hash));
    let events = h.take_events();
    assert_eq!(events.last(), Some(&swept(ALICE, SweepOutcome::Skipped { has_avatar: true })));
    assert!(h.server.writes().is_empty());
    h.expect_nothing_sent();
}

#[test]
fn an_account_without_any_avatar_is_skipped() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    sweep_reads(&mut h);
    h.expect_events(vec![swept(ALICE, SweepOutcome::Skipped { has_avatar: false })]);
    h.expect_nothing_sent();
}

#[test]
fn a_broken_photo_is_refused_and_nothing_is_written() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    let junk = Image::from_bytes(b"not an image at all".to_vec());
    h.server.set_vcard(ALICE, &vcard_with(&junk));

    sweep_reads(&mut h);
    let events = h.take_events();
    match events.last() {
        Some(Event::Swept { account, outcome: SweepOutcome::Refused { reasons } }) => {
            assert_eq!(account, ALICE);
            assert_eq!(reasons.len(), 1, "{reasons:?}");
            assert!(reasons[0].starts_with("vcard: "), "{reasons:?}");
        }
        other => panic!("expected a refused sweep, got {other:?}"),
    }
    assert!(h.server.writes().is_empty());
    assert_eq!(h.server.vcard(ALICE), Some(xml::to_string(&parse(&vcard_with(&junk)))));
    h.expect_nothing_sent();
}

#[test]
fn dry_run_reads_but_sends_no_write_and_reports_what_it_would_write() {
    let mut config = config(ServerConverts::No);
    config.dry_run = true;
    let mut h = Harness::with_config(config, FakeServer::plain());
    h.connect_prosody();
    let img = Image::fixture("photo-300x200.jpg");
    let png = img.png();
    h.server.set_vcard(ALICE, &vcard_with(&img));

    sweep_reads(&mut h);
    h.expect_nothing_sent();
    let events = h.take_events();
    assert_eq!(events.last(), Some(&swept(ALICE, converted_from_vcard(&png))));
    assert!(h.server.writes().is_empty());
    assert!(h.server.item_ids(ALICE, ns::AVATAR_DATA).is_empty());
}

#[test]
fn accounts_sharing_an_image_fetch_it_once_and_both_are_converted() {
    // A default avatar many accounts share: the second account waits on the first one's fetch instead of being
    // dropped (before, it was never converted until its PEP changed).
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    let img = Image::fixture("avatar-96x96-alpha.png");
    let png = img.png();
    put_pep(&mut h, ALICE, &img);
    put_pep(&mut h, BOB, &img);

    h.sweep(ALICE);
    h.sweep(BOB);
    let alice_poll = h.expect_sent(&pep_poll("gw1", ALICE));
    let alice_vcard = h.expect_sent(&vcard_get("gw2", ALICE));
    let bob_poll = h.expect_sent(&pep_poll("gw3", BOB));
    let bob_vcard = h.expect_sent(&vcard_get("gw4", BOB));
    for sent in [&alice_poll, &alice_vcard, &bob_poll, &bob_vcard] {
        h.serve(sent);
    }
    h.expect_sent_and_serve(&pep_data_get("gw5", ALICE, &img.hash));
    assert!(h.drive_bounded(10).is_empty());
    let data_gets = h.server.log.iter().filter(|l| l.contains(" get urn:xmpp:avatar:data")).count();
    assert_eq!(data_gets, 1, "{:#?}", h.server.log);
    for account in [ALICE, BOB] {
        let photo = h.server.vcard(account).expect("a vCard written");
        assert!(photo.contains(&avatar_gateway::wire::b64::encode(png.bytes())), "{account}: {photo}");
    }
    let outcomes: Vec<Event> = h.take_events().into_iter().filter(|e| matches!(e, Event::Swept { .. })).collect();
    let converted = |account: &str| {
        swept(
            account,
            SweepOutcome::Converted { source: Scheme::Pep, hash: Some(png.hash()), wrote: vec![Scheme::Vcard] },
        )
    };
    assert_eq!(outcomes, vec![converted(ALICE), converted(BOB)]);
    h.expect_nothing_sent();
}

#[test]
fn a_sweep_cut_by_a_disconnection_reports_nothing() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    h.sweep(ALICE);
    h.expect_sent(&pep_poll("gw1", ALICE));
    h.expect_sent(&vcard_get("gw2", ALICE));
    h.engine.handle_disconnected(h.now);
    h.advance(IQ_TIMEOUT * 2);
    // The caller sweeps it again after reconnecting; no outcome is made up for it.
    h.expect_no_events();
    h.expect_nothing_sent();
}

#[test]
fn without_the_rights_a_sweep_is_refused_naming_them() {
    // Not connected to a server that granted anything: nothing is sent, and the outcome says which rights lack.
    let mut h = Harness::new(ServerConverts::No, FakeServer::plain());
    h.sweep(ALICE);
    h.expect_nothing_sent();
    let not_granted = |what: &str| Event::NotGranted { account: ALICE.into(), what: what.into() };
    h.expect_events(vec![
        not_granted("get http://jabber.org/protocol/pubsub"),
        not_granted("get vcard-temp"),
        swept(
            ALICE,
            SweepOutcome::Refused {
                reasons: vec![
                    "not granted: get http://jabber.org/protocol/pubsub".into(),
                    "not granted: get vcard-temp".into(),
                ],
            },
        ),
    ]);
}
