//! Golden stanzas of the presence stamp (issue 13): the gateway tells a host's mod_avatar_gateway the hash of each
//! account's XEP-0008 rendition when it is adopted or removed, sends every stored one again after a reconnect at a
//! bounded rate, and reports whether the module is there. `contrib/prosody/mod_avatar_gateway.lua` is the other side
//! (tests/e2e_legacy_presence.rs runs both against a real Prosody).

mod common;
mod engine_support;

use std::time::Duration;

use avatar_gateway::engine::{Event, ServerConverts, StampStatus};
use avatar_gateway::wire::legacy_stamp::{self, StampError};
use avatar_gateway::wire::ns;
use avatar_gateway::wire::stanza::Iq;
use xmpp_parsers::minidom::Element;

use engine_support::fake_server::metadata_event;
use engine_support::*;

const BOB: &str = "bob@localhost";
const DISCO: &str = "legacy_stamp/prosody-disco-info.xml";

/// The engine beside a converting Prosody, with the stamp on (the other engine tests leave it off).
fn stamping() -> Harness {
    let mut config = config(ServerConverts::Yes);
    config.stamp_presence = true;
    Harness::with_config(config, FakeServer::converting())
}

/// The disco#info question the gateway asks the host on each connection (the first stamp id of the connection).
fn probe() -> String {
    format!(
        "<iq xmlns='jabber:component:accept' type='get' id='stamp1' from='{COMPONENT}' to='{DOMAIN}'>\
         <query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    )
}

/// Prosody 0.12's real answer with the module loaded, and the same answer without its feature: Prosody without it.
fn disco_answer(module_loaded: bool) -> Element {
    let mut answer = common::stanza(DISCO).element;
    if !module_loaded {
        let query = answer.get_child_mut("query", ns::DISCO_INFO).expect("a disco#info query");
        let kept: Vec<Element> = query.children().filter(|f| f.attr("var") != Some(ns::LEGACY_HASH)).cloned().collect();
        *query = kept.into_iter().fold(Element::builder("query", ns::DISCO_INFO).build(), |mut q, f| {
            q.append_child(f);
            q
        });
    }
    answer
}

/// Connects like Prosody (privileges, version), asks whether the module is there, hears `answer` (if any).
fn connect(h: &mut Harness, answer: Option<Element>) {
    h.engine.handle_connected(h.now);
    h.expect_nothing_sent();
    h.recv(PROSODY_PRIVILEGES);
    h.answer_version_query("Prosody", "0.12.3");
    h.expect_sent(&probe());
    if let Some(answer) = answer {
        h.recv_element(answer);
    }
    h.expect_nothing_sent();
}

/// The events of the capability report that are about the stamp.
fn stamp_events(h: &mut Harness) -> Vec<Event> {
    h.take_events().into_iter().filter(|e| matches!(e, Event::PresenceStamp { .. })).collect()
}

fn stamp_event(status: StampStatus) -> Event {
    Event::PresenceStamp { host: DOMAIN.into(), status }
}

/// The update telling the module `account`'s XEP-0008 hash (`None`: no avatar).
fn update(id: &str, account: &str, hash: Option<String>) -> String {
    let payload = match hash {
        Some(h) => format!("<legacy-hash xmlns='{}' jid='{account}'><hash>{h}</hash></legacy-hash>", ns::LEGACY_HASH),
        None => format!("<legacy-hash xmlns='{}' jid='{account}'/>", ns::LEGACY_HASH),
    };
    format!("<iq xmlns='jabber:component:accept' type='set' id='{id}' from='{COMPONENT}' to='{DOMAIN}'>{payload}</iq>")
}

/// The module's answer to an update (an empty result, as mod_avatar_gateway sends).
fn taken(id: &str) -> String {
    format!("<iq xmlns='jabber:component:accept' type='result' id='{id}' from='{DOMAIN}' to='{COMPONENT}'/>")
}

/// `account` publishes `img` with XEP-0084; the gateway hears the notification and reads the data item.
fn publish(h: &mut Harness, account: &str, img: &Image) -> Vec<Element> {
    let id = img.hash.to_string();
    h.server.put_item(account, ns::AVATAR_DATA, &id, &format!("<data xmlns='urn:xmpp:avatar:data'>{}</data>", img.b64));
    let metadata = format!(
        "<metadata xmlns='urn:xmpp:avatar:metadata'><info bytes='{}' id='{id}' type='image/png'/></metadata>",
        img.bytes.len()
    );
    h.server.put_item(account, ns::AVATAR_METADATA, &id, &metadata);
    h.recv_element(metadata_event(account, &id, &parse(&metadata)));
    h.drive_bounded(10)
}

/// `account` empties its metadata node (XEP-0084 §3.5).
fn remove(h: &mut Harness, account: &str) -> Vec<Element> {
    h.recv_element(metadata_event(account, "none", &parse("<metadata xmlns='urn:xmpp:avatar:metadata'/>")));
    h.drive_bounded(10)
}

#[track_caller]
fn assert_sent(sent: &[Element], expected: &[String]) {
    let sent: Vec<String> = sent.iter().map(avatar_gateway::wire::xml::to_string).collect();
    let expected: Vec<String> = expected.iter().map(|e| avatar_gateway::wire::xml::to_string(&parse(e))).collect();
    assert_eq!(sent, expected);
}

#[test]
fn adoption_and_removal_tell_the_module_and_the_report_says_it_works() {
    let mut h = stamping();
    connect(&mut h, Some(disco_answer(true)));
    h.advance(REPORT_DELAY);
    assert_eq!(stamp_events(&mut h), vec![stamp_event(StampStatus::Works)], "after the capabilities");
    h.expect_nothing_sent();

    // The hash is the XEP-0008 rendition's (≤ 64 px), the bytes the gateway serves over jabber:iq:avatar.
    let img = Image::fixture("avatar-96x96-alpha.png");
    let legacy = img.legacy().hash().to_string();
    assert_ne!(legacy, img.hash.to_string());
    let sent = publish(&mut h, ALICE, &img);
    assert_sent(&sent, &[update("stamp2", ALICE, Some(legacy.clone()))]);
    h.recv(&taken("stamp2"));
    h.expect_nothing_sent();

    // The same avatar again is no news: nothing is sent.
    h.recv_element(metadata_event(
        ALICE,
        &img.hash.to_string(),
        &parse(&format!(
            "<metadata xmlns='urn:xmpp:avatar:metadata'><info bytes='{}' id='{}' type='image/png'/></metadata>",
            img.bytes.len(),
            img.hash
        )),
    ));
    assert!(h.drive_bounded(10).is_empty());

    // Removal: the update without a hash, so the module stamps <x xmlns='jabber:x:avatar'/>.
    assert_sent(&remove(&mut h, ALICE), &[update("stamp3", ALICE, None)]);
    // Ids are predictable: an answer from anyone but the host is not the module's (a forged refusal changes nothing).
    h.recv(&format!(
        "<iq xmlns='jabber:component:accept' type='error' id='stamp3' from='{ALICE}/res' to='{COMPONENT}'>\
         <error type='auth'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
    ));
    h.recv(&taken("stamp3"));
    assert_eq!(stamp_events(&mut h), vec![]);
    h.advance(IQ_TIMEOUT * 2);
    assert_eq!(stamp_events(&mut h), vec![]);
    h.expect_nothing_sent();
}

#[test]
fn a_reconnect_sends_every_stored_hash_again_at_a_bounded_rate() {
    let mut h = stamping();
    connect(&mut h, Some(disco_answer(true)));
    let alice = Image::fixture("avatar-96x96-alpha.png");
    let bob = Image::fixture("pixel-1x1.png");
    assert_sent(&publish(&mut h, ALICE, &alice), &[update("stamp2", ALICE, Some(alice.legacy().hash().to_string()))]);
    assert_sent(&publish(&mut h, BOB, &bob), &[update("stamp3", BOB, Some(bob.legacy().hash().to_string()))]);
    assert_sent(&remove(&mut h, BOB), &[update("stamp4", BOB, None)]);
    for id in ["stamp2", "stamp3", "stamp4"] {
        h.recv(&taken(id));
    }

    h.engine.handle_disconnected(h.now);
    h.advance(Duration::from_secs(1));
    connect(&mut h, Some(disco_answer(true)));
    // One stored account per 1/50 s, in the store's order, each as it is now.
    h.advance(Duration::ZERO);
    h.expect_sent(&update("stamp2", ALICE, Some(alice.legacy().hash().to_string())));
    h.advance(Duration::from_millis(19));
    h.expect_nothing_sent();
    h.advance(Duration::from_millis(1));
    h.expect_sent(&update("stamp3", BOB, None));
    h.advance(Duration::from_secs(1));
    h.expect_nothing_sent();
}

#[test]
fn without_the_module_nothing_is_sent_and_the_report_says_why() {
    let mut h = stamping();
    connect(&mut h, Some(disco_answer(false)));
    h.advance(REPORT_DELAY);
    let events = stamp_events(&mut h);
    assert_eq!(events, vec![stamp_event(StampStatus::Missing(StampError::NotListed.to_string()))]);
    let Event::PresenceStamp { status, .. } = &events[0] else { unreachable!() };
    let line = status.to_string();
    assert!(line.starts_with("OFF ") && line.contains("legacy clients do not see modern avatars"), "{line}");
    assert!(line.contains("modules_enabled") && line.contains("ejabberd has no such module yet"), "{line}");
    assert!(publish(&mut h, ALICE, &Image::fixture("avatar-96x96-alpha.png")).is_empty(), "no update to nobody");
}

#[test]
fn an_unanswered_question_is_reported_once_its_time_is_up() {
    let mut h = stamping();
    connect(&mut h, None);
    h.advance(REPORT_DELAY);
    assert_eq!(stamp_events(&mut h), vec![], "still asking when the capabilities are reported");
    h.advance(IQ_TIMEOUT);
    let why = "it did not answer disco#info".to_owned();
    assert_eq!(stamp_events(&mut h), vec![stamp_event(StampStatus::Missing(why))]);
    assert!(publish(&mut h, ALICE, &Image::fixture("avatar-96x96-alpha.png")).is_empty());
}

#[test]
fn a_refused_update_turns_the_stamp_off_and_says_so() {
    let mut h = stamping();
    connect(&mut h, Some(disco_answer(true)));
    h.advance(REPORT_DELAY);
    stamp_events(&mut h);
    let img = Image::fixture("avatar-96x96-alpha.png");
    assert_eq!(publish(&mut h, ALICE, &img).len(), 1);
    // The module answers forbidden when its avatar_gateway_component names another JID (the shape it refuses a
    // user with: fixtures/stanzas/legacy_stamp/forged-update-refused.xml).
    let refusal = common::stanza("legacy_stamp/forged-update-refused.xml").element;
    let refused = Iq::parse(&refusal).expect("an IQ");
    assert_eq!(legacy_stamp::update_answered(&refused), Err(StampError::Refused("forbidden".into())));
    h.recv(&format!(
        "<iq xmlns='jabber:component:accept' type='error' id='stamp2' from='{DOMAIN}' to='{COMPONENT}'>\
         <error type='auth'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
    ));
    let why = format!("it refused the hash of {ALICE}: the server answered forbidden");
    assert_eq!(stamp_events(&mut h), vec![stamp_event(StampStatus::Missing(why))]);
    assert!(remove(&mut h, ALICE).is_empty(), "nothing more is sent on this connection");
}

#[test]
fn the_stamp_coming_back_in_presence_is_not_a_xep0008_observation() {
    let mut h = stamping();
    connect(&mut h, Some(disco_answer(true)));
    let img = Image::fixture("avatar-96x96-alpha.png");
    assert_eq!(publish(&mut h, ALICE, &img).len(), 1);
    h.recv(&taken("stamp2"));
    h.take_events();
    // Dino's presence as the module stamps it, then a XEP-0008 client of alice's without an avatar of its own: the
    // latter is behind, not a removal (it never held the avatar; the stamp was ours).
    h.recv(&presence("alice@localhost/dino", &x_avatar(&img.legacy().hash())));
    h.recv(&presence("alice@localhost/pandion", "<x xmlns='jabber:x:avatar'/>"));
    assert!(h.drive_bounded(10).is_empty());
    h.expect_no_events();
}
