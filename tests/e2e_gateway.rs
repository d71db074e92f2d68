//! The gateway against a real Prosody 0.12 with real client connections: every conversion direction, asserted by
//! the SHA-1 an observer client receives.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::client::Client;
use support::gateway::Gateway;
use support::images::{avatar_png, sha1_hex};
use support::prosody::{Mode, Prosody};

/// Polls `probe` until `done` holds or 15 s pass; returns the last value seen.
fn eventually(what: &str, mut probe: impl FnMut() -> Value, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let v = probe();
        if done(&v) {
            return v;
        }
        if start.elapsed() > Duration::from_secs(15) {
            panic!("{what}: still {v} after 15 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn file(server: &Prosody, name: &str, bytes: &[u8]) -> String {
    server.write_file(name, bytes).to_str().expect("UTF-8 temp path").to_owned()
}

#[test]
fn legacy_client_avatar_reaches_pep_and_vcard_on_a_plain_server() {
    let server = Prosody::start(Mode::PlainVcard, &["alice", "obs"]);
    let gateway = Gateway::start(&server);
    let png = avatar_png(7);
    let hash = sha1_hex(&png);
    let mut alice = Client::login(&server, "alice");
    let mut obs = Client::login(&server, "obs");
    alice.ok(json!({"cmd": "serve_iq_avatar", "file": file(&server, "a.png", &png), "mimetype": "image/png"}));
    alice.ok(json!({"cmd": "presence", "x_avatar": hash}));

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
    let server = Prosody::start(Mode::VcardLegacy, &["alice", "obs"]);
    let gateway = Gateway::start(&server);
    let png = avatar_png(8);
    let hash = sha1_hex(&png);
    let mut alice = Client::login(&server, "alice");
    let mut obs = Client::login(&server, "obs");
    alice.ok(json!({"cmd": "serve_iq_avatar", "file": file(&server, "a.png", &png), "mimetype": null}));
    alice.ok(json!({"cmd": "presence", "x_avatar": hash}));

    let pep = eventually(
        "PEP avatar",
        || obs.ok(json!({"cmd": "get_pep", "jid": "alice@localhost"})),
        |p| p["id"] == hash.as_str(),
    );
    assert_eq!(pep["data_sha1"], hash.as_str(), "{pep}");
    // mod_vcard_legacy makes the vCard a view of PEP: the same bytes, without the gateway writing the vCard.
    let vcard = obs.ok(json!({"cmd": "get_vcard", "jid": "alice@localhost"}));
    assert_eq!(vcard["photo_sha1"], hash.as_str(), "{vcard}");
    std::thread::sleep(Duration::from_millis(500));
    let log = gateway.log();
    assert_eq!(gateway.count("Wrote {"), 1, "exactly one write (PEP), no vCard write, no ping-pong:\n{log}");
    assert!(log.contains("scheme: Pep"), "{log}");
    gateway.assert_healthy();
}
