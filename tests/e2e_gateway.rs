//! The gateway against a real server with real client connections: every conversion direction, asserted by the
//! SHA-1 an observer client receives.
//!
//! The server is Prosody (0.12 here, 13 in `scripts/test-servers`) unless `E2E_SERVER=ejabberd`
//! ([`support::server::AnyServer`]): the same tests then run beside ejabberd, whose `mod_avatar` plays
//! `mod_vcard_legacy`'s part in [`Mode::VcardLegacy`]. ejabberd before 24.10 grants no XEP-0356 IQ permission and
//! 24.10 to 25.02 mangle privileged IQs, so there every test here skips itself (`skipped on ejabberd23.01: …`,
//! [`AnyServer::converts`]); `tests/e2e_ejabberd.rs` covers what the gateway does on such a server.

mod support;

use std::time::Duration;

use serde_json::json;
use support::client::Client;
use support::eventually;
use support::gateway::Gateway;
use support::images::{avatar_png, sha1_hex};
use support::server::{AnyServer, Mode, XmppServer};

fn file(server: &AnyServer, name: &str, bytes: &[u8]) -> String {
    server.write_file(name, bytes).to_str().expect("UTF-8 temp path").to_owned()
}

/// Alice as a XEP-0008 client (Pandion-style: the hash in presence, the image served over `jabber:iq:avatar` with
/// `mimetype`, or without it as Vacuum does), and an observer; returns (alice, obs, the image's SHA-1).
fn legacy_alice(server: &AnyServer, seed: u8, mimetype: Option<&str>) -> (Client, Client, String) {
    let png = avatar_png(seed);
    let hash = sha1_hex(&png);
    let mut alice = Client::login(server, "alice");
    let obs = Client::login(server, "obs");
    alice.ok(json!({"cmd": "serve_iq_avatar", "file": file(server, "a.png", &png), "mimetype": mimetype}));
    alice.ok(json!({"cmd": "presence", "x_avatar": hash}));
    (alice, obs, hash)
}

#[test]
fn legacy_client_avatar_reaches_pep_and_vcard_on_a_plain_server() {
    let server = AnyServer::start(Mode::PlainVcard, &["alice", "obs"]);
    if server.skip_unless_it_converts() {
        return;
    }
    let gateway = Gateway::start(&server);
    let (mut alice, mut obs, hash) = legacy_alice(&server, 7, Some("image/png"));

    let pep = eventually(
        "PEP avatar",
        || obs.ok(json!({"cmd": "get_pep", "jid": "alice@localhost"})),
        |p| p["id"] == hash.as_str(),
    );
    assert_eq!(pep["data_sha1"], hash.as_str(), "{pep}");
    let vcard = eventually(
        "vCard PHOTO",
        || obs.ok(json!({"cmd": "get_vcard", "jid": "alice@localhost"})),
        |v| v["photo_sha1"] == hash.as_str(),
    );
    assert_eq!(vcard["type"], "image/png", "{vcard}");
    assert_eq!(alice.ok(json!({"cmd": "served"}))["count"], 1, "one fetch per hash");
    gateway.assert_healthy();
}

#[test]
fn legacy_client_avatar_is_published_once_on_a_converting_server() {
    let server = AnyServer::start(Mode::VcardLegacy, &["alice", "obs"]);
    if server.skip_unless_it_converts() {
        return;
    }
    let gateway = Gateway::start(&server);
    let (_alice, mut obs, hash) = legacy_alice(&server, 8, None);

    let pep = eventually(
        "PEP avatar",
        || obs.ok(json!({"cmd": "get_pep", "jid": "alice@localhost"})),
        |p| p["id"] == hash.as_str(),
    );
    assert_eq!(pep["data_sha1"], hash.as_str(), "{pep}");
    // mod_vcard_legacy makes the vCard a view of PEP (ejabberd's mod_avatar writes the PHOTO from the data item as the
    // metadata is published, before the publish is answered): the same bytes, without the gateway writing the vCard.
    let vcard = obs.ok(json!({"cmd": "get_vcard", "jid": "alice@localhost"}));
    assert_eq!(vcard["photo_sha1"], hash.as_str(), "{vcard}");
    std::thread::sleep(Duration::from_millis(500));
    let log = gateway.log();
    assert_eq!(gateway.count("Wrote {"), 1, "exactly one write (PEP), no vCard write, no ping-pong:\n{log}");
    assert!(log.contains("scheme: Pep"), "{log}");
    gateway.assert_healthy();
}

#[test]
fn storage_set_by_a_legacy_owner_is_stored_and_converted() {
    let server = AnyServer::start(Mode::PlainVcard, &["alice", "obs"]);
    if server.skip_unless_it_converts() {
        return;
    }
    let gateway = Gateway::start(&server);
    let png = avatar_png(9);
    let hash = sha1_hex(&png);
    let mut alice = Client::login(&server, "alice");
    let mut obs = Client::login(&server, "obs");
    let set = alice.ok(json!({"cmd": "storage_set", "file": file(&server, "a.png", &png), "mimetype": "image/png"}));
    assert_eq!(set["iq"], "result", "the delegated set is acknowledged: {set}");

    let pep = eventually(
        "PEP avatar",
        || obs.ok(json!({"cmd": "get_pep", "jid": "alice@localhost"})),
        |p| p["id"] == hash.as_str(),
    );
    assert_eq!(pep["data_sha1"], hash.as_str(), "{pep}");
    eventually(
        "vCard PHOTO",
        || obs.ok(json!({"cmd": "get_vcard", "jid": "alice@localhost"})),
        |v| v["photo_sha1"] == hash.as_str(),
    );
    // Anyone may read it back from the bare JID, as XEP-0008 storage promises.
    let got = obs.ok(json!({"cmd": "get_legacy", "jid": "alice@localhost", "ns": "storage:client:avatar"}));
    assert_eq!(got["sha1"], hash.as_str(), "{got}");
    gateway.assert_healthy();
}

#[test]
fn a_storage_set_answered_result_survives_kill_9() {
    let server = AnyServer::start(Mode::PlainVcard, &["alice", "obs"]);
    if server.skip_unless_it_converts() {
        return;
    }
    let gateway = Gateway::start(&server);
    let png = avatar_png(12);
    let hash = sha1_hex(&png);
    let mut alice = Client::login(&server, "alice");
    let mut obs = Client::login(&server, "obs");
    let set = alice.ok(json!({"cmd": "storage_set", "file": file(&server, "a.png", &png), "mimetype": "image/png"}));
    assert_eq!(set["iq"], "result", "{set}");
    // At once, before anything else is asked of it: a write acknowledged to the client must already be committed.
    gateway.kill();

    let gateway = Gateway::start(&server);
    let got = eventually(
        "the stored avatar served after the restart",
        || obs.ok(json!({"cmd": "get_legacy", "jid": "alice@localhost", "ns": "storage:client:avatar"})),
        |g| g["sha1"] == hash.as_str(),
    );
    assert_eq!(got["sha1"], hash.as_str(), "{got}");
    gateway.assert_healthy();
}

#[test]
fn vcard_photo_reaches_pep_and_pep_reaches_vcard_on_a_plain_server() {
    let server = AnyServer::start(Mode::PlainVcard, &["alice", "bob", "obs"]);
    if server.skip_unless_it_converts() {
        return;
    }
    let gateway = Gateway::start(&server);
    let (jpeg, png) = (std::fs::read(fixture("photo-300x200.jpg")).expect("fixture"), avatar_png(10));
    let mut alice = Client::login(&server, "alice");
    let mut bob = Client::login(&server, "bob");
    let mut obs = Client::login(&server, "obs");

    // Alice is a vCard client: JPEG in the vCard, its hash in presence.
    alice.ok(
        json!({"cmd": "set_vcard_photo", "file": file(&server, "a.jpg", &jpeg), "type": "image/jpeg", "fn": "Alice"}),
    );
    alice.ok(json!({"cmd": "presence", "x_update": sha1_hex(&jpeg)}));
    let pep = eventually(
        "PEP from vCard",
        || obs.ok(json!({"cmd": "get_pep", "jid": "alice@localhost"})),
        |p| p["id"].is_string(),
    );
    // XEP-0084 requires PNG: the gateway publishes a PNG rendition, and the observer's bytes hash to the item id.
    assert_eq!(pep["infos"][0]["type"], "image/png", "{pep}");
    assert_eq!(pep["data_sha1"], pep["id"], "{pep}");
    let vcard = obs.ok(json!({"cmd": "get_vcard", "jid": "alice@localhost"}));
    assert_eq!(vcard["photo_sha1"], sha1_hex(&jpeg).as_str(), "the source vCard is never rewritten: {vcard}");
    assert!(vcard["other_fields"].as_array().is_some_and(|f| f.iter().any(|n| n == "FN")), "{vcard}");

    // Bob is a XEP-0084 client; the gateway learns of it on his next presence.
    bob.ok(json!({"cmd": "publish_pep", "file": file(&server, "b.png", &png)}));
    bob.ok(json!({"cmd": "presence"}));
    eventually(
        "vCard from PEP",
        || obs.ok(json!({"cmd": "get_vcard", "jid": "bob@localhost"})),
        |v| v["photo_sha1"] == sha1_hex(&png).as_str(),
    );
    gateway.assert_healthy();
}

#[test]
fn legacy_readers_get_a_small_rendition_of_any_scheme() {
    let server = AnyServer::start(Mode::VcardLegacy, &["modern", "old"]);
    if server.skip_unless_it_converts() {
        return;
    }
    let gateway = Gateway::start(&server);
    let big = std::fs::read(fixture("avatar-96x96-alpha.png")).expect("fixture");
    let mut modern = Client::login(&server, "modern");
    let mut old = Client::login(&server, "old");
    modern.ok(json!({"cmd": "publish_pep", "file": file(&server, "m.png", &big)}));

    for ns in ["storage:client:avatar", "jabber:iq:avatar"] {
        let got = old.ok(json!({"cmd": "get_legacy", "jid": "modern@localhost", "ns": ns}));
        assert_eq!(got["type"], "result", "{got}");
        let (w, h, n) = (got["width"].as_u64(), got["height"].as_u64(), got["bytes"].as_u64());
        assert!(w.is_some_and(|w| w <= 64) && h.is_some_and(|h| h <= 64), "≤ 64 px: {got}");
        assert!(n.is_some_and(|n| n < 8192), "< 8 KB: {got}");
        assert!(got["sha1"].is_string(), "{got}");
    }
    // Nobody has an avatar → item-not-found, not a hang.
    let none = old.ok(json!({"cmd": "get_legacy", "jid": "old@localhost", "ns": "storage:client:avatar"}));
    assert_eq!(none["condition"], "item-not-found", "{none}");
    gateway.assert_healthy();
}

#[test]
fn no_avatar_propagates_and_bad_input_keeps_the_previous_avatar() {
    let server = AnyServer::start(Mode::PlainVcard, &["alice", "obs"]);
    if server.skip_unless_it_converts() {
        return;
    }
    let gateway = Gateway::start_with(&server, &["limits.max_input_bytes=100000"]);
    let (mut alice, mut obs, hash) = legacy_alice(&server, 11, Some("image/png"));
    eventually(
        "PEP avatar",
        || obs.ok(json!({"cmd": "get_pep", "jid": "alice@localhost"})),
        |p| p["id"] == hash.as_str(),
    );

    // A hash whose bytes do not match: refused, nothing changes anywhere.
    let liar = sha1_hex(b"not the image");
    alice.ok(json!({"cmd": "presence", "x_avatar": liar}));
    gateway.wait_for_log("refused", Duration::from_secs(10));
    assert_eq!(obs.ok(json!({"cmd": "get_pep", "jid": "alice@localhost"}))["id"], hash.as_str());
    assert_eq!(obs.ok(json!({"cmd": "get_vcard", "jid": "alice@localhost"}))["photo_sha1"], hash.as_str());

    // An oversized storage set is refused with not-acceptable; the avatar stays.
    let large = std::fs::read(fixture("large-1600x1200.jpg")).expect("fixture");
    let big =
        alice.ok(json!({"cmd": "storage_set", "file": file(&server, "big.jpg", &large), "mimetype": "image/jpeg"}));
    assert_eq!(big["condition"], "not-acceptable", "{big}");
    assert_eq!(obs.ok(json!({"cmd": "get_pep", "jid": "alice@localhost"}))["id"], hash.as_str());

    // The owner's deliberate "no avatar" reaches PEP (empty metadata) and the vCard (no PHOTO).
    alice.ok(json!({"cmd": "presence", "x_avatar": ""}));
    eventually(
        "PEP cleared",
        || obs.ok(json!({"cmd": "get_pep", "jid": "alice@localhost"})),
        |p| p["infos"].as_array().is_some_and(Vec::is_empty),
    );
    eventually(
        "vCard cleared",
        || obs.ok(json!({"cmd": "get_vcard", "jid": "alice@localhost"})),
        |v| v["photo_sha1"].is_null(),
    );
    gateway.assert_healthy();
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/images").join(name)
}
