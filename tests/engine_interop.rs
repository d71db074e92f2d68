//! The engine against the servers people run today: the reply envelopes of ejabberd ≥ 24.10 and prosody-modules of
//! 2026, and ejabberd 23.01 without any IQ privilege. Exact stanzas in and out, nothing else sent.

mod common;
mod engine_support;

use std::time::Duration;

use avatar_gateway::avatar::AvatarHash;
use avatar_gateway::engine::account::Scheme;
use avatar_gateway::engine::grants::Right;
use avatar_gateway::engine::{Event, ServerConverts};
use avatar_gateway::wire::stanza::IqType;
use avatar_gateway::wire::{ns, xml};
use engine_support::*;

const PANDION: &str = "alice@localhost/pandion";
const CAROL_PC: &str = "carol@localhost/pc";

#[test]
fn inner_errors_in_an_outer_error_read_as_the_inner_condition() {
    // ejabberd 26.07 / prosody-modules hg20260723: an empty PEP node and a missing vCard come back as
    // <iq type='error'><privilege><forwarded><iq type='error'><item-not-found/>, no <error/> outside. That is
    // "no avatar there yet", so a XEP-0008 client's avatar is published to both.
    let mut server = FakeServer::plain();
    server.error_envelope = true;
    let mut h = Harness::prosody(ServerConverts::No, server);
    let img = Image::fixture("pixel-1x1.png");
    h.recv(&presence(PANDION, &x_avatar(&img.hash)));
    h.expect_sent(&iq_avatar_get("gw1", PANDION));
    h.expect_sent_and_serve(&pep_poll("gw2", ALICE));
    h.expect_sent_and_serve(&vcard_get("gw3", ALICE));
    h.recv(&iq_avatar_result("gw1", PANDION, "image/png", &img.b64));
    assert!(h.drive_bounded(20).is_empty());
    let png = img.png();
    assert_eq!(h.server.item_ids(ALICE, ns::AVATAR_METADATA), vec![png.hash().to_string()]);
    assert!(h.server.vcard(ALICE).is_some_and(|v| v.contains(&photo(&png))), "{:?}", h.server.vcard(ALICE));
    let events = h.take_events();
    assert!(!events.iter().any(|e| matches!(e, Event::Refused { .. })), "{events:?}");
}

#[test]
fn a_privileged_iq_the_server_refuses_is_told_once_and_not_sent_again() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    h.recv(&presence(PANDION, ""));
    h.expect_sent(&pep_poll("gw1", ALICE));
    h.expect_sent(&vcard_get("gw2", ALICE));
    // mod_privilege refuses outright (no inner IQ): the grant it announced is not honoured.
    h.recv(&format!(
        "<iq xmlns='jabber:component:accept' type='error' id='gw1' from='{ALICE}' to='{COMPONENT}'>\
         <error type='auth'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
    ));
    h.serve(&parse(&vcard_get("gw2", ALICE)));
    let events = h.take_events();
    assert_eq!(events[0], refused_right("it answered forbidden"), "{events:?}");
    assert!(matches!(&events[1], Event::Refused { reason, .. } if reason.contains("forbidden")), "{events:?}");
    // The next presences do not ask again, and the refusal was told once.
    h.recv(&presence(PANDION, ""));
    h.recv(&presence(PANDION, ""));
    h.expect_no_events();
    h.expect_nothing_sent();
    // Once the retry period is over (the admin fixed the config), it is asked again.
    h.advance(REFUSAL_RETRY);
    h.recv(&presence(PANDION, ""));
    assert!(h.next_sent().is_some_and(|s| xml::to_string(&s).contains("urn:xmpp:avatar:metadata")));
}

#[test]
fn ejabberd_23_serves_xep0008_readers_from_the_public_vcard() {
    let mut h = Harness::new(ServerConverts::No, FakeServer::plain());
    h.connect_ejabberd_23();
    h.advance(REPORT_DELAY);
    h.take_events();
    let img = Image::fixture("avatar-96x96-alpha.png");
    let vcard = format!("<vCard xmlns='vcard-temp'><FN>Alice</FN>{}</vCard>", photo(&img.rendition()));

    // Carol, not even a contact, asks for Alice's avatar: with no IQ privilege the gateway can read nothing private,
    // so it reads the vCard as anyone may, and serves that.
    // ejabberd's mod_delegation speaks urn:xmpp:delegation:1.
    h.recv(&format!(
        "<iq xmlns='jabber:component:accept' type='set' id='d1' from='{DOMAIN}' to='{COMPONENT}'>\
         <delegation xmlns='urn:xmpp:delegation:1'><forwarded xmlns='urn:xmpp:forward:0'>\
         <iq xmlns='jabber:client' type='get' id='r1' from='{CAROL_PC}' to='{ALICE}'>\
         <query xmlns='storage:client:avatar'/></iq></forwarded></delegation></iq>"
    ));
    h.expect_sent(&plain_vcard_get("gw1", ALICE));
    h.expect_nothing_sent();
    // ejabberd answers for the account, plainly (no privilege envelope).
    h.recv(&format!(
        "<iq xmlns='jabber:component:accept' type='result' id='gw1' from='{ALICE}' to='{COMPONENT}'>{vcard}</iq>"
    ));
    let reply = h.next_sent().expect("the reader's answer");
    let legacy = img.legacy();
    assert_eq!(
        xml::to_string(&reply),
        xml::to_string(&parse(&format!(
            "<iq xmlns='jabber:component:accept' type='result' id='d1' from='{COMPONENT}' to='{DOMAIN}'>\
             <delegation xmlns='urn:xmpp:delegation:1'><forwarded xmlns='urn:xmpp:forward:0'>\
             <iq xmlns='jabber:client' type='result' id='r1' from='{ALICE}' to='{CAROL_PC}'>\
             <query xmlns='storage:client:avatar'><data mimetype='{}'>{}</data></query></iq>\
             </forwarded></delegation></iq>",
            legacy.mime(),
            avatar_gateway::wire::b64::encode(legacy.bytes())
        )))
    );
    let events = h.take_events();
    assert!(events.contains(&Event::Adopted { account: ALICE.into(), scheme: Scheme::Vcard, hash: img.hash }));
    assert!(events.contains(&Event::Served {
        account: ALICE.into(),
        reader: CAROL_PC.into(),
        hash: Some(legacy.hash())
    }));
    h.expect_nothing_sent();
}

#[test]
fn a_plain_vcard_read_without_photo_never_removes_an_avatar() {
    // mod_vcard_legacy builds a plain read's vCard with the asker's PEP access: "no PHOTO" there proves nothing.
    let mut h = Harness::new(ServerConverts::No, FakeServer::plain());
    h.connect_ejabberd_23();
    h.advance(REPORT_DELAY);
    h.take_events();
    let img = Image::fixture("pixel-1x1.png");
    h.recv(&presence(PANDION, &x_avatar(&img.hash)));
    h.expect_sent(&iq_avatar_get("gw1", PANDION));
    h.expect_sent(&plain_vcard_get("gw2", ALICE));
    h.recv(&iq_avatar_result("gw1", PANDION, "image/png", &img.b64));
    h.recv(&format!(
        "<iq xmlns='jabber:component:accept' type='result' id='gw2' from='{ALICE}' to='{COMPONENT}'>\
         <vCard xmlns='vcard-temp'><FN>Alice</FN></vCard></iq>"
    ));
    let events = h.take_events();
    assert!(events.contains(&Event::Adopted { account: ALICE.into(), scheme: Scheme::Legacy, hash: img.hash }));
    assert!(!events.iter().any(|e| matches!(e, Event::Removed { .. })), "{events:?}");
    h.expect_nothing_sent();
}

#[test]
fn answers_owed_to_the_server_wait_for_its_announcement() {
    // ejabberd 26.07 drops what the component sends before it has recorded its privileges: the answer that
    // activates a delegation, sent too early, would be lost until the next connection.
    let mut h = Harness::new(ServerConverts::No, FakeServer::plain());
    h.engine.handle_connected(h.now);
    let node = format!("urn:xmpp:delegation:2:bare:{}", ns::STORAGE_AVATAR);
    h.recv(&format!(
        "<iq xmlns='jabber:component:accept' type='get' id='q1' from='{DOMAIN}' to='{COMPONENT}'>\
         <query xmlns='http://jabber.org/protocol/disco#info' node='{node}'/></iq>"
    ));
    h.expect_nothing_sent();
    h.recv(PROSODY_PRIVILEGES);
    // The announcement releases the version query (held since connecting), then the answer, in that order.
    assert_eq!(h.next_sent().and_then(|s| s.attr("id").map(str::to_owned)).as_deref(), Some("version-localhost"));
    h.expect_sent(&format!(
        "<iq xmlns='jabber:component:accept' type='result' id='q1' from='{COMPONENT}' to='{DOMAIN}'>\
         <query xmlns='http://jabber.org/protocol/disco#info' node='{node}'><feature var='{}'/></query></iq>",
        ns::STORAGE_AVATAR
    ));
    h.expect_nothing_sent();

    // A server that grants nothing announces nothing: what it is owed goes after two seconds all the same.
    h.engine.handle_connected(h.now);
    h.expect_nothing_sent();
    h.advance(std::time::Duration::from_millis(1999));
    h.expect_nothing_sent();
    h.advance(std::time::Duration::from_millis(1));
    assert!(h.next_sent().is_some_and(|s| s.attr("id") == Some("version-localhost")));
}

#[test]
fn a_privileged_iq_handed_back_unprocessed_is_a_refusal_not_a_request() {
    // ejabberd 24.10 to 25.02 (Debian trixie's 24.12): the component's own privileged IQ comes back to it as a
    // request wrapped like a reply. Answering it would be wrong, and waiting for a reply pointless.
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    h.recv(&presence(PANDION, ""));
    h.expect_sent(&pep_poll("gw1", ALICE));
    h.expect_sent(&vcard_get("gw2", ALICE));
    h.recv(&format!(
        "<iq xmlns='jabber:component:accept' type='get' id='gw1' from='{ALICE}' to='{COMPONENT}'>\
         <privilege xmlns='urn:xmpp:privilege:2'><forwarded xmlns='urn:xmpp:forward:0'>\
         <iq xmlns='jabber:client' type='get' id='gw1' from='{ALICE}' to='{ALICE}'>\
         <pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:avatar:metadata'/></pubsub>\
         </iq></forwarded></privilege></iq>"
    ));
    h.expect_nothing_sent();
    let events = h.take_events();
    let bounced = "the server handed the privileged IQ back unprocessed (ejabberd 24.10 to 25.02 do: upgrade to 25.03)";
    assert_eq!(events[0], refused_right(bounced), "{events:?}");
    assert!(matches!(&events[1..], [Event::Refused { reason, .. }] if reason.ends_with(bounced)), "{events:?}");
    // Not asked again for the retry period; told once.
    h.serve(&parse(&vcard_get("gw2", ALICE)));
    h.take_events();
    h.recv(&presence(PANDION, ""));
    h.expect_no_events();
    h.expect_nothing_sent();
}

/// The report of a refused PEP read: the directions that need it are off for the retry period.
fn refused_right(reason: &str) -> Event {
    Event::RightRefused {
        host: DOMAIN.into(),
        right: Right::Iq(ns::PUBSUB, IqType::Get),
        reason: reason.into(),
        retry_in: REFUSAL_RETRY,
    }
}

#[test]
fn requests_beyond_the_in_flight_limit_wait_their_turn_and_time_out_only_once_sent() {
    let mut config = config(ServerConverts::Yes);
    config.max_in_flight = 2;
    let mut h = Harness::with_config(config, FakeServer::converting());
    h.connect_prosody();
    let hash = AvatarHash::of(b"alice's");
    let bob = "bob@localhost/pandion";
    h.recv(&presence(PANDION, &x_avatar(&hash)));
    h.expect_sent(&iq_avatar_get("gw1", PANDION));
    let alice_poll = h.expect_sent(&pep_poll("gw2", ALICE));
    // Bob's two requests are remembered (not asked twice) but wait: two are in flight already.
    h.recv(&presence(bob, &x_avatar(&AvatarHash::of(b"bob's"))));
    h.recv(&presence(bob, &x_avatar(&AvatarHash::of(b"bob's"))));
    h.expect_nothing_sent();
    h.advance(Duration::from_secs(8));
    h.serve(&alice_poll);
    h.expect_sent(&iq_avatar_get("gw3", bob));
    h.expect_nothing_sent();
    // Alice's client never answers: its fetch times out at 10 s and frees the slot for Bob's poll.
    h.advance(Duration::from_secs(2));
    assert!(h.take_events().iter().any(|e| matches!(e, Event::Refused { account, .. } if account == ALICE)));
    h.expect_sent(&pep_poll("gw4", "bob@localhost"));
    // Bob's fetch was sent at 8 s: it has until 18 s.
    h.advance(Duration::from_secs(7));
    h.expect_no_events();
    h.advance(Duration::from_secs(1));
    assert!(h.take_events().iter().any(|e| matches!(e, Event::Refused { account, .. } if account == "bob@localhost")));
}

#[test]
fn while_fetched_images_wait_for_a_worker_beyond_their_budget_nothing_more_is_asked() {
    let mut config = config(ServerConverts::Yes);
    config.transcode_backlog_bytes = 16;
    let mut h = Harness::with_config(config, FakeServer::converting());
    h.connect_prosody();
    let img = Image::fixture("avatar-96x96-alpha.png");
    h.workers_busy = true;
    h.recv(&presence(PANDION, &x_avatar(&img.hash)));
    h.expect_sent(&iq_avatar_get("gw1", PANDION));
    h.expect_sent_and_serve(&pep_poll("gw2", ALICE));
    h.recv(&iq_avatar_result("gw1", PANDION, "image/png", &img.b64));
    // Alice's image waits for a worker, beyond the budget: Bob's fetch is remembered but not sent.
    let bob = "bob@localhost/pandion";
    h.recv(&presence(bob, &x_avatar(&AvatarHash::of(b"bob's"))));
    h.expect_nothing_sent();
    // A worker takes it: the backlog is within the budget again, and Bob's requests go out.
    h.free_workers();
    let sent: Vec<_> = std::iter::from_fn(|| h.next_sent()).collect();
    assert!(sent.iter().any(|s| s.attr("to") == Some(bob)), "bob's fetch after the backlog cleared: {sent:?}");
}
