//! Legacy clients see modern avatars (issue 13): alice sets her avatar with a real XEP-0084 client (slixmpp), and
//! carol, a raw XEP-0008 client, learns of it from alice's presence — the `jabber:x:avatar` hash that
//! `contrib/prosody/mod_avatar_gateway.lua` stamps with what the gateway told it — and fetches it over
//! `jabber:iq:avatar`. Prosody 0.12 here, 13 in `scripts/test-servers` (the module is loaded from the repository by
//! `support::prosody_config` for every test).

mod support;

use std::time::{Duration, Instant};

use avatar_gateway::image::{ImageLimits, Rendition};
use serde_json::{Value, json};
use support::client::Client;
use support::gateway::Gateway;
use support::images::{generated_png, sha1_hex};
use support::prosody::{Mode, Prosody};

const ALICE: &str = "alice@localhost";
/// The bound on how soon a change reaches a legacy contact.
const FOLLOWS_WITHIN: Duration = Duration::from_secs(5);
/// The capability report's line for a host with the module.
const WORKS: &str = "ON  XEP-0084/vCard -> XEP-0008 presence hashes (mod_avatar_gateway)";

/// A PNG larger than XEP-0008's 64 px, so the rendition (and its hash) differs from what alice published.
fn avatar(seed: u8) -> (Vec<u8>, String) {
    let png = generated_png(seed, 96);
    let limits = ImageLimits::default();
    let legacy = Rendition::from_bytes(png.clone(), &limits).and_then(|r| r.to_legacy(&limits)).expect("a rendition");
    assert_ne!(legacy.hash().to_string(), sha1_hex(&png), "the rendition must be another image");
    (png, legacy.hash().to_string())
}

fn publish(server: &Prosody, alice: &mut Client, name: &str, png: Option<&[u8]>) {
    let file = png.map(|p| server.write_file(name, p).to_str().expect("UTF-8 temp path").to_owned());
    let published = alice.ok(json!({"cmd": "publish_pep", "file": file}));
    assert_eq!(published["iq"], "result", "{published}");
}

/// Waits at most `within` for a presence from alice, newer than `after`, whose `jabber:x:avatar` is `expected`
/// (`""`: the empty element); returns it.
fn alice_stamped(carol: &mut Client, after: u64, expected: &str, within: Duration) -> Value {
    carol.ok(json!({"cmd": "wait_presence", "jid": ALICE, "after": after, "x_avatar": expected,
                    "timeout": within.as_secs_f64()}))
}

/// The number of presences carol has had from alice so far (the `after` of the next wait).
fn seen(carol: &mut Client) -> u64 {
    carol.ok(json!({"cmd": "wait_presence", "jid": ALICE}))["seq"].as_u64().expect("a seq")
}

/// What carol reads from alice's bare JID over `jabber:iq:avatar` (answered by the gateway, XEP-0355).
fn fetched_sha1(carol: &mut Client) -> Value {
    let got = carol.ok(json!({"cmd": "get_legacy", "jid": ALICE, "ns": "jabber:iq:avatar"}));
    assert_eq!(got["type"], "result", "{got}");
    got["sha1"].clone()
}

/// alice on a slixmpp client and carol, a XEP-0008 client without an avatar, both available.
fn alice_and_carol(server: &Prosody) -> (Client, Client) {
    let mut alice = Client::login(server, "alice");
    let mut carol = Client::login(server, "carol");
    carol.ok(json!({"cmd": "presence", "x_avatar": ""}));
    alice.ok(json!({"cmd": "presence"}));
    (alice, carol)
}

#[test]
fn legacy_contact_sees_and_follows_a_modern_avatar() {
    let mut server = Prosody::start(Mode::VcardLegacy, &["alice", "carol"]);
    let gateway = Gateway::start(&server);
    gateway.wait_for_log(WORKS, Duration::from_secs(10));
    let (mut alice, mut carol) = alice_and_carol(&server);

    // The first avatar: carol gets it in presence and reads the very bytes the hash names.
    let (first, first_hash) = avatar(1);
    let after = seen(&mut carol);
    publish(&server, &mut alice, "first.png", Some(&first));
    alice_stamped(&mut carol, after, &first_hash, support::PATIENCE);
    assert_eq!(fetched_sha1(&mut carol), first_hash.as_str());

    // A change reaches carol in a re-sent presence: alice sends none.
    let (second, second_hash) = avatar(2);
    let after = seen(&mut carol);
    let start = Instant::now();
    publish(&server, &mut alice, "second.png", Some(&second));
    alice_stamped(&mut carol, after, &second_hash, FOLLOWS_WITHIN);
    assert!(start.elapsed() <= FOLLOWS_WITHIN, "took {:?}", start.elapsed());
    assert_eq!(fetched_sha1(&mut carol), second_hash.as_str());

    // Removal: the empty element, XEP-0008's "no avatar".
    let after = seen(&mut carol);
    publish(&server, &mut alice, "none", None);
    alice_stamped(&mut carol, after, "", FOLLOWS_WITHIN);

    // A user cannot tell the module a hash: refused, and nothing is stamped because of it.
    let forged = "0123456789abcdef0123456789abcdef01234567";
    let refused = carol.ok(json!({"cmd": "raw_iq_text", "id": "forge", "xml": format!(
        "<iq type='set' id='forge' to='localhost'><legacy-hash xmlns='urn:avatar-gateway:legacy-hash:0' \
         jid='{ALICE}'><hash>{forged}</hash></legacy-hash></iq>")}));
    assert_eq!(
        (refused["iq"].as_str(), refused["condition"].as_str()),
        (Some("error"), Some("forbidden")),
        "{refused}"
    );
    let after = seen(&mut carol);
    alice.ok(json!({"cmd": "presence", "status": "after the forgery"}));
    alice_stamped(&mut carol, after, "", support::PATIENCE);

    // The module keeps what it was told: with the gateway gone and Prosody restarted, the last hash is stamped.
    let (third, third_hash) = avatar(3);
    let after = seen(&mut carol);
    publish(&server, &mut alice, "third.png", Some(&third));
    alice_stamped(&mut carol, after, &third_hash, FOLLOWS_WITHIN);
    gateway.assert_healthy();
    drop(gateway);
    drop((alice, carol));
    server.restart();
    let (_alice, mut carol) = alice_and_carol(&server);
    alice_stamped(&mut carol, 0, &third_hash, support::PATIENCE);
    // And the gateway, started again, serves the bytes of that hash.
    let gateway = Gateway::start(&server);
    gateway.wait_for_log(WORKS, Duration::from_secs(10));
    assert_eq!(fetched_sha1(&mut carol), third_hash.as_str());
    gateway.assert_healthy();
}

#[test]
fn no_avatar_is_still_stamped_after_a_restart() {
    let mut server = Prosody::start(Mode::VcardLegacy, &["alice", "carol"]);
    let gateway = Gateway::start(&server);
    gateway.wait_for_log(WORKS, Duration::from_secs(10));
    let (mut alice, mut carol) = alice_and_carol(&server);
    let (png, hash) = avatar(4);
    let after = seen(&mut carol);
    publish(&server, &mut alice, "a.png", Some(&png));
    alice_stamped(&mut carol, after, &hash, support::PATIENCE);
    let after = seen(&mut carol);
    publish(&server, &mut alice, "none", None);
    alice_stamped(&mut carol, after, "", FOLLOWS_WITHIN);

    // "No avatar" is a record of its own (Prosody's storage drops an empty one): the empty element, not none.
    drop(gateway);
    drop((alice, carol));
    server.restart();
    let (_alice, mut carol) = alice_and_carol(&server);
    let stamped = alice_stamped(&mut carol, 0, "", support::PATIENCE);
    assert_eq!(stamped["x_avatar_element"], true, "{stamped}");
}
