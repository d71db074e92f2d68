//! The engine against a hostile user (SECURITY.md): exact stanzas in, exact stanzas out, nothing else sent.
//!
//! Users reach the component directly and the server stamps their `from`; only the server's domain JID may
//! announce grants or forward delegated IQs. Each scenario is one attack of the security issue.

mod common;
mod engine_support;

use std::time::Duration;

use avatar_gateway::engine::account::Scheme;
use avatar_gateway::engine::{Event, LimitKind, Refusal, ServerConverts};
use avatar_gateway::link::stray_text::StrayTextFilter;
use avatar_gateway::wire::ns;
use engine_support::*;

const MALLORY: &str = "mallory@localhost";
const MALLORY_PC: &str = "mallory@localhost/pc";
const CAROL: &str = "carol@localhost";
const PANDION: &str = "alice@localhost/pandion";

fn adopted(account: &str, scheme: Scheme, hash: avatar_gateway::avatar::AvatarHash) -> Event {
    Event::Adopted { account: account.into(), scheme, hash }
}

/// A user's IQ set to the component carrying a delegation wrapper that claims to forward Alice's storage set.
fn forged_delegation(delegation_ns: &str, payload: &str) -> String {
    format!(
        "<iq xmlns='jabber:component:accept' type='set' id='f1' from='{MALLORY_PC}' to='{COMPONENT}'>\
         <delegation xmlns='{delegation_ns}'><forwarded xmlns='urn:xmpp:forward:0'>\
         <iq xmlns='jabber:client' type='set' id='x' from='alice@localhost/x' to='alice@localhost'>{payload}</iq>\
         </forwarded></delegation></iq>"
    )
}

fn forbidden_to_mallory(id: &str) -> String {
    format!(
        "<iq xmlns='jabber:component:accept' type='error' id='{id}' from='{COMPONENT}' to='{MALLORY_PC}'>\
         <error type='auth'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
    )
}

fn untrusted(from: &str, what: Refusal) -> Event {
    Event::Untrusted { from: from.into(), what }
}

#[test]
fn a_delegation_wrapper_from_a_user_is_forbidden_in_both_versions_and_every_payload_form() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    let img = Image::fixture("pixel-1x1.png");
    let data = format!("<data mimetype='image/png'>{}</data>", img.b64);
    let storage = format!("<query xmlns='storage:client:avatar'>{data}</query>");
    let private = format!("<query xmlns='jabber:iq:private'>{storage}</query>");
    for (version, payload) in [
        (ns::DELEGATION_2, &storage),
        (ns::DELEGATION_1, &storage),
        (ns::DELEGATION_2, &private),
        (ns::DELEGATION_1, &private),
    ] {
        h.recv(&forged_delegation(version, payload));
        h.expect_sent(&forbidden_to_mallory("f1"));
        h.expect_nothing_sent();
    }
    // Told once, however often Mallory tries within the quiet period.
    h.expect_events(vec![untrusted(MALLORY_PC, Refusal::Delegation)]);
    assert!(h.server.log.is_empty(), "nothing read or written for Alice: {:?}", h.server.log);
    assert!(h.server.vcard(ALICE).is_none());
    // Told again once the period is over.
    h.advance(Duration::from_secs(61));
    h.recv(&forged_delegation(ns::DELEGATION_2, &storage));
    h.expect_sent(&forbidden_to_mallory("f1"));
    h.expect_events(vec![untrusted(MALLORY_PC, Refusal::Delegation)]);
}

#[test]
fn a_delegated_iq_about_an_account_of_another_host_is_forbidden() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    h.recv(&delegated(
        "d1",
        "<iq xmlns='jabber:client' type='get' id='r1' from='bob@localhost/pc' to='alice@elsewhere.example'>\
         <query xmlns='storage:client:avatar'/></iq>",
    ));
    h.expect_sent(&delegated_reply(
        "d1",
        "<iq xmlns='jabber:client' type='error' id='r1' from='alice@elsewhere.example' to='bob@localhost/pc'>\
         <error type='auth'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
    ));
    h.expect_events(vec![untrusted(DOMAIN, Refusal::ForeignAccount)]);
    h.expect_nothing_sent();
}

#[test]
fn announcements_count_only_from_the_servers_domain_jid() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    let before = format!("{:?}", h.engine.grants());
    h.recv(&format!(
        "<message xmlns='jabber:component:accept' from='{MALLORY_PC}' to='{COMPONENT}'>\
         <delegation xmlns='urn:xmpp:delegation:2'><delegated namespace='urn:xmpp:mam:2'/></delegation></message>"
    ));
    // Another component of the same server is a domain JID too, but not a served host.
    h.recv(&format!(
        "<message xmlns='jabber:component:accept' from='evil.localhost' to='{COMPONENT}'>\
         <privilege xmlns='urn:xmpp:privilege:2'><perm access='presence' type='roster'/></privilege></message>"
    ));
    h.recv(&format!(
        "<message xmlns='jabber:component:accept' from='localhost/res' to='{COMPONENT}'>\
         <delegation xmlns='urn:xmpp:delegation:2'><delegated namespace='vcard-temp'/></delegation></message>"
    ));
    assert_eq!(format!("{:?}", h.engine.grants()), before, "grants unchanged");
    h.expect_events(vec![
        untrusted(MALLORY_PC, Refusal::DelegationAnnouncement),
        untrusted("evil.localhost", Refusal::PrivilegeAnnouncement),
        untrusted("localhost/res", Refusal::DelegationAnnouncement),
    ]);
    h.expect_nothing_sent();
}

#[test]
fn an_over_limit_stanza_is_answered_policy_violation_and_changes_nothing() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    // What the link hands over in place of a 20,000-deep storage set (the server delegated it).
    h.recv(&format!(
        "<iq xmlns='jabber:component:accept' type='set' id='d9' from='{DOMAIN}' to='{COMPONENT}'>\
         <limit-exceeded xmlns='urn:avatar-gateway:stanza-limit' reason='depth'/></iq>"
    ));
    h.expect_sent(&format!(
        "<iq xmlns='jabber:component:accept' type='error' id='d9' from='{COMPONENT}' to='{DOMAIN}'>\
         <error type='modify'><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
    ));
    // And of a 15,000-deep message from a user: dropped.
    h.recv(&format!(
        "<message xmlns='jabber:component:accept' from='{MALLORY_PC}' to='{COMPONENT}'>\
         <limit-exceeded xmlns='urn:avatar-gateway:stanza-limit' reason='size'/></message>"
    ));
    h.expect_events(vec![
        untrusted(DOMAIN, Refusal::OverLimit(LimitKind::Depth)),
        untrusted(MALLORY_PC, Refusal::OverLimit(LimitKind::Size)),
    ]);
    h.expect_nothing_sent();
    assert!(h.server.log.is_empty());
}

#[test]
fn an_over_limit_reply_fails_its_exchange_and_nothing_is_adopted() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    let img = Image::fixture("pixel-1x1.png");
    h.recv(&presence(MALLORY_PC, &x_avatar(&img.hash)));
    let to_client = h.drive_bounded(10);
    let id = to_client[0].attr("id").unwrap().to_owned();
    h.take_events();
    h.recv(&format!(
        "<iq xmlns='jabber:component:accept' type='result' id='{id}' from='{MALLORY_PC}' to='{COMPONENT}'>\
         <limit-exceeded xmlns='urn:avatar-gateway:stanza-limit' reason='size'/></iq>"
    ));
    let events = h.take_events();
    assert_eq!(events[0], untrusted(MALLORY_PC, Refusal::OverLimit(LimitKind::Size)));
    assert!(
        matches!(&events[1], Event::Refused { reason, .. } if reason.contains("larger than the stanza limit")),
        "{events:?}"
    );
    assert_eq!(events.len(), 2);
    h.expect_nothing_sent();
}

fn storage_get(outer: &str, from_full: &str) -> String {
    delegated(
        outer,
        &format!(
            "<iq xmlns='jabber:client' type='get' id='r1' from='{from_full}' to='alice@localhost'>\
             <query xmlns='storage:client:avatar'/></iq>"
        ),
    )
}

#[test]
fn a_reader_the_server_refuses_gets_the_servers_refusal_and_a_contact_gets_the_avatar() {
    let mut h = Harness::prosody(ServerConverts::Yes, FakeServer::plain());
    alice_with_pep_avatar(&mut h);
    h.server.account(ALICE).subscribers.push(CAROL.into());

    h.recv(&storage_get("d1", MALLORY_PC));
    h.expect_sent_and_serve(&reader_access("gw1", MALLORY, ALICE));
    let others = h.drive_bounded(10);
    assert_eq!(others.len(), 1, "{others:?}");
    assert_eq!(
        avatar_gateway::wire::xml::to_string(&others[0]),
        avatar_gateway::wire::xml::to_string(&parse(&delegated_reply(
            "d1",
            "<iq xmlns='jabber:client' type='error' id='r1' from='alice@localhost' to='mallory@localhost/pc'>\
             <error type='auth'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
        )))
    );
    let served: Vec<Event> = h.take_events().into_iter().filter(|e| matches!(e, Event::Served { .. })).collect();
    assert_eq!(served, vec![Event::Served { account: ALICE.into(), reader: MALLORY_PC.into(), hash: None }]);

    h.recv(&storage_get("d2", "carol@localhost/pc"));
    let others = h.drive_bounded(10);
    assert_eq!(others.len(), 1);
    let reply = avatar_gateway::wire::xml::to_string(&others[0]);
    assert!(
        reply.contains("id='r1' to='carol@localhost/pc' type='result'") && reply.contains("<data mimetype="),
        "{reply}"
    );

    // The owner always may.
    h.recv(&storage_get("d3", "alice@localhost/home"));
    let others = h.drive_bounded(10);
    assert!(avatar_gateway::wire::xml::to_string(&others[0]).contains("<data mimetype="));
    assert!(!h.server.log.iter().any(|l| l.starts_with("alice@localhost get alice")), "{:?}", h.server.log);
}

#[test]
fn a_reader_on_another_server_is_refused_since_the_gateway_cannot_ask_as_them() {
    let mut h = Harness::prosody(ServerConverts::Yes, FakeServer::plain());
    alice_with_pep_avatar(&mut h);
    h.recv(&storage_get("d1", "eve@elsewhere.example/pc"));
    h.expect_sent(&delegated_reply(
        "d1",
        "<iq xmlns='jabber:client' type='error' id='r1' from='alice@localhost' to='eve@elsewhere.example/pc'>\
         <error type='auth'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
    ));
    h.expect_nothing_sent();
}

#[test]
fn a_poisoned_shared_fetch_does_not_fail_the_account_that_waited_for_it() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    let victim = Image::fixture("pixel-1x1.png");
    let junk = Image::fixture("tiny-5x3.jpg");
    // Mallory advertises the hash Alice is about to set…
    h.recv(&presence(MALLORY_PC, &x_avatar(&victim.hash)));
    let to_mallory = h.drive_bounded(10);
    let mallory_fetch = to_mallory[0].attr("id").unwrap().to_owned();
    // …Alice sets it while Mallory's fetch is out: she waits on it rather than fetching twice…
    h.recv(&presence(PANDION, &x_avatar(&victim.hash)));
    assert!(h.drive_bounded(10).is_empty());
    // …and Mallory answers with other bytes: Alice's own client is asked, and her avatar converted.
    h.recv(&iq_avatar_result(&mallory_fetch, MALLORY_PC, "image/png", &junk.b64));
    let to_alice = h.drive_bounded(10);
    assert_eq!(to_alice.len(), 1, "{to_alice:?}");
    let id = to_alice[0].attr("id").unwrap().to_owned();
    assert_eq!(
        avatar_gateway::wire::xml::to_string(&to_alice[0]),
        avatar_gateway::wire::xml::to_string(&parse(&iq_avatar_get(&id, PANDION)))
    );
    h.recv(&iq_avatar_result(&id, PANDION, "image/png", &victim.b64));
    assert!(h.drive_bounded(20).is_empty());
    assert!(h.take_events().contains(&adopted(ALICE, Scheme::Legacy, victim.hash)));
    assert_eq!(h.server.item_ids(ALICE, ns::AVATAR_DATA), vec![victim.png().hash().to_string()]);
    assert!(h.server.item_ids(MALLORY, ns::AVATAR_DATA).is_empty());
}

#[test]
fn a_flood_of_new_hashes_costs_one_fetch_at_a_time_and_the_latest_wins() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    let images: Vec<Image> = ["pixel-1x1.png", "tiny-5x3.jpg", "avatar-96x96-alpha.png", "noisy-64x64.png"]
        .into_iter()
        .map(Image::fixture)
        .collect();
    h.recv(&presence(MALLORY_PC, &x_avatar(&images[0].hash)));
    let first = h.drive_bounded(10);
    assert_eq!(first.len(), 1, "one fetch out");
    for img in &images[1..] {
        h.recv(&presence(MALLORY_PC, &x_avatar(&img.hash)));
        assert!(h.drive_bounded(10).is_empty(), "no second fetch while one is out");
    }
    // The first answer arrives: superseded, it is not decoded or adopted; only the latest hash is fetched next.
    let id = first[0].attr("id").unwrap().to_owned();
    h.recv(&iq_avatar_result(&id, MALLORY_PC, "image/png", &images[0].b64));
    let next = h.drive_bounded(10);
    assert_eq!(next.len(), 1, "{next:?}");
    let id = next[0].attr("id").unwrap().to_owned();
    h.recv(&iq_avatar_result(&id, MALLORY_PC, "image/png", &images[3].b64));
    assert!(h.drive_bounded(20).is_empty());
    let adopted_hashes: Vec<_> = h
        .take_events()
        .into_iter()
        .filter_map(|e| if let Event::Adopted { hash, .. } = e { Some(hash) } else { None })
        .collect();
    assert_eq!(adopted_hashes, vec![images[3].hash], "only the latest avatar is adopted");
}

#[test]
fn image_work_is_handed_out_so_other_accounts_go_on_and_take_turns() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    h.hold_transcodes = true;
    let big = Image::fixture("large-1600x1200.jpg");
    let small = Image::fixture("pixel-1x1.png");
    // Mallory's image arrives: the engine asks for a transcode and does no image work itself.
    h.recv(&presence(MALLORY_PC, &x_avatar(&big.hash)));
    let id = h.drive_bounded(10)[0].attr("id").unwrap().to_owned();
    h.recv(&iq_avatar_result(&id, MALLORY_PC, "image/jpeg", &big.b64));
    assert_eq!(h.held.len(), 1, "one job out");
    // Meanwhile Alice's presence is handled at once: her client is asked, her answer becomes a job too.
    h.recv(&presence(PANDION, &x_avatar(&small.hash)));
    let to_alice = h.drive_bounded(10);
    assert_eq!(to_alice.len(), 1, "{to_alice:?}");
    let id = to_alice[0].attr("id").unwrap().to_owned();
    h.recv(&iq_avatar_result(&id, PANDION, "image/png", &small.b64));
    assert_eq!(h.held.len(), 2);
    // Results come back in any order; Alice's, finished first, is adopted and written without waiting.
    let mallory_job = h.held.pop_front().unwrap();
    h.run_held();
    assert!(h.drive_bounded(20).is_empty());
    assert_eq!(h.server.item_ids(ALICE, ns::AVATAR_DATA), vec![small.png().hash().to_string()]);
    assert!(h.server.item_ids(MALLORY, ns::AVATAR_DATA).is_empty());
    h.engine.handle_transcoded(h.now, avatar_gateway::link::workers::run(mallory_job));
    h.hold_transcodes = false;
    assert!(h.drive_bounded(20).is_empty());
    assert_eq!(h.server.item_ids(MALLORY, ns::AVATAR_DATA), vec![big.png().hash().to_string()]);
}

// ---- the stanzas captured from the hostile client of tests/e2e_security.rs ----------------------------------------

#[test]
fn the_captured_forgeries_are_refused_exactly() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    for (name, id) in [
        ("security/forged-delegation-v2.xml", "forged-2"),
        ("security/forged-delegation-v1.xml", "forged-1"),
        ("security/forged-delegation-private.xml", "forged-2"),
    ] {
        h.recv_element(common::stanza(name).element);
        h.expect_sent(&format!(
            "<iq xmlns='jabber:component:accept' type='error' id='{id}' from='{COMPONENT}' to='mallory@localhost/harness'>\
             <error type='auth'><forbidden xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        ));
    }
    h.recv_element(common::stanza("security/forged-delegation-announcement.xml").element);
    h.recv_element(common::stanza("security/forged-privilege-announcement.xml").element);
    // One note for the sender, however many forgeries (all within the quiet minute).
    h.expect_events(vec![untrusted("mallory@localhost/harness", Refusal::Delegation)]);
    h.expect_nothing_sent();
    assert!(h.server.log.is_empty(), "{:?}", h.server.log);
}

/// The bytes the link's filter lets through for one fixture stanza, after a stream header.
fn through_the_link(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/stanzas").join(name);
    let text = std::fs::read_to_string(&path).expect("fixture");
    let stanza = text.split_once('\n').map_or(text.as_str(), |(_, rest)| rest);
    let mut filter = StrayTextFilter::new();
    let mut out = Vec::new();
    let header = "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams'>";
    filter.feed(header.as_bytes(), &mut out);
    out.clear();
    filter.feed(stanza.as_bytes(), &mut out);
    String::from_utf8(out).expect("UTF-8")
}

#[test]
fn the_deep_stanzas_reach_the_engine_as_small_refusals() {
    let mut h = Harness::prosody(ServerConverts::No, FakeServer::plain());
    // 20,000 levels inside a storage set the server delegated: a short replacement, answered policy-violation.
    let replaced = through_the_link("security/deep-storage-set.xml");
    assert!(replaced.len() < 512, "{replaced}");
    h.recv(&replaced);
    h.expect_sent(&format!(
        "<iq xmlns='jabber:component:accept' type='error' id='deep-d' from='{COMPONENT}' to='{DOMAIN}'>\
         <error type='modify'><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
    ));
    // 15,000 levels in a message: dropped.
    let replaced = through_the_link("security/deep-message.xml");
    assert!(replaced.len() < 512, "{replaced}");
    h.recv(&replaced);
    h.expect_nothing_sent();
    let events = h.take_events();
    assert!(
        events.iter().all(|e| matches!(e, Event::Untrusted { what: Refusal::OverLimit(LimitKind::Depth), .. })),
        "{events:?}"
    );
    assert_eq!(events.len(), 2);
}

#[test]
fn a_malformed_storage_set_is_bad_request_and_clears_nothing() {
    let mut h = Harness::prosody(ServerConverts::Yes, FakeServer::plain());
    let img = Image::fixture("pixel-1x1.png");
    let set = |id: &str, query: &str| {
        delegated(
            id,
            &format!(
                "<iq xmlns='jabber:client' type='set' id='s{id}' from='alice@localhost/x' to='alice@localhost'>\
                 <query xmlns='storage:client:avatar'>{query}</query></iq>"
            ),
        )
    };
    h.recv(&set("d1", &format!("<data mimetype='image/png'>{}</data>", img.b64)));
    h.drive_bounded(20);
    h.take_events();
    let before = h.server.item_ids(ALICE, ns::AVATAR_METADATA);
    assert_eq!(before, vec![img.hash.to_string()]);
    // An empty <data/>, text junk, a stray element, base64 that does not decode: none of them is "no avatar".
    for (id, junk) in
        [("d2", "<data mimetype='image/png'/>"), ("d3", "junk"), ("d4", "<x xmlns='y'/>"), ("d5", "<data>!!</data>")]
    {
        h.recv(&set(id, junk));
        h.expect_sent(&delegated_reply(
            id,
            &format!(
                "<iq xmlns='jabber:client' type='error' id='s{id}' from='alice@localhost' to='alice@localhost/x'>\
                 <error type='modify'><bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
            ),
        ));
        h.expect_nothing_sent();
    }
    h.expect_no_events();
    assert_eq!(h.server.item_ids(ALICE, ns::AVATAR_METADATA), before, "the avatar is where it was");
}

#[test]
fn an_account_over_its_rate_is_refused_told_once_and_costs_the_others_nothing() {
    let mut h = Harness::prosody(ServerConverts::Yes, FakeServer::converting());
    // Mallory changes her XEP-0008 avatar 40 times at once: the default rate lets 12 through.
    for n in 0..40u32 {
        let hash = avatar_gateway::avatar::AvatarHash::of(&n.to_le_bytes());
        h.recv(&presence(MALLORY_PC, &x_avatar(&hash)));
    }
    let limited: Vec<Event> = h.take_events().into_iter().filter(|e| matches!(e, Event::RateLimited { .. })).collect();
    assert!(
        matches!(&limited[..], [Event::RateLimited { account, retry_in, .. }] if account == MALLORY
            && *retry_in <= Duration::from_secs(5)),
        "told once: {limited:?}"
    );
    let fetches = |sent: &[xmpp_parsers::minidom::Element], to: &str| {
        sent.iter().filter(|s| s.attr("to") == Some(to) && s.get_child("query", ns::IQ_AVATAR).is_some()).count()
    };
    let sent: Vec<_> = std::iter::from_fn(|| h.next_sent()).collect();
    assert_eq!(fetches(&sent, MALLORY_PC), 1, "one fetch in flight for her, the rest deferred or refused");
    // Her storage set waits too (resource-constraint); nothing is stored.
    let img = Image::fixture("pixel-1x1.png");
    h.recv(&delegated(
        "d1",
        &format!(
            "<iq xmlns='jabber:client' type='set' id='s1' from='{MALLORY_PC}'>\
             <query xmlns='storage:client:avatar'><data mimetype='image/png'>{}</data></query></iq>",
            img.b64
        ),
    ));
    h.expect_sent(&delegated_reply(
        "d1",
        &format!(
            "<iq xmlns='jabber:client' type='error' id='s1' to='{MALLORY_PC}'><error type='wait'>\
             <resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
        ),
    ));
    h.expect_no_events();
    // Alice is not slowed: her presence is fetched at once.
    h.recv(&presence(PANDION, &x_avatar(&img.hash)));
    let sent: Vec<_> = std::iter::from_fn(|| h.next_sent()).collect();
    assert_eq!(fetches(&sent, PANDION), 1, "{sent:?}");
}
