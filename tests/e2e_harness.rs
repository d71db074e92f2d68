//! Proves the end-to-end harness against a real Prosody 0.12, without the gateway.
//!
//! Each test starts its own private server (tests run in parallel). What is asserted here is Prosody's own
//! behaviour, which the gateway's e2e tests build on; a failure after a Prosody upgrade means the gateway's
//! assumptions need checking too.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::client::Client;
use support::images::{avatar_png, dimensions, sha1_hex};
use support::prosody::{Flavor, Mode, Prosody, skip_on};

const META: &str = "urn:xmpp:avatar:metadata";

/// An avatar as the tests hand it to clients and expect it back.
struct Avatar {
    /// Where the clients read it (the server's temp dir).
    path: String,
    /// Lower-case hex SHA-1, computed here rather than trusted from the client.
    sha1: String,
    len: usize,
    width: u32,
}

fn avatar(server: &Prosody, seed: u8) -> Avatar {
    let png = avatar_png(seed);
    let path = server.write_file(&format!("avatar-{seed}.png"), &png);
    let path = path.to_str().expect("temp paths are UTF-8").to_string();
    Avatar { path, sha1: sha1_hex(&png), len: png.len(), width: dimensions(&png).0 }
}

fn online(server: &Prosody, user: &str) -> Client {
    let mut client = Client::login(server, user);
    client.ok(json!({"cmd": "presence"}));
    client
}

#[test]
fn vcard_legacy_turns_a_vcard_photo_into_pep_avatar() {
    let server = Prosody::start(Mode::VcardLegacy, &["alice", "obs"]);
    let a = avatar(&server, 0);
    let mut alice = Client::login(&server, "alice");
    let mut obs = Client::login(&server, "obs");

    let set = alice.ok(json!({"cmd": "set_vcard_photo", "file": a.path, "fn": "Alice"}));
    assert_eq!(set["iq"], "result", "{set}");
    assert_eq!(set["sha1"], a.sha1.as_str());

    let pep = obs.ok(json!({"cmd": "get_pep", "jid": "alice@localhost"}));
    assert_eq!(pep["iq"], "result", "{pep}");
    assert_eq!(pep["id"], a.sha1.as_str(), "metadata item id = SHA-1 of the vCard BINVAL: {pep}");
    assert_eq!(pep["data_sha1"], a.sha1.as_str(), "data item fetched by that id: {pep}");
    let info = &pep["infos"][0];
    assert_eq!(info["id"], a.sha1.as_str());
    assert_eq!(info["type"], "image/png");
    assert_eq!(info["bytes"], a.len.to_string());
    // mod_vcard_legacy publishes <info/> without width/height (specs.md §5).
    assert_eq!(info.get("width"), None, "{info}");
}

#[test]
fn plain_vcard_server_converts_nothing() {
    let server = Prosody::start(Mode::PlainVcard, &["alice", "obs"]);
    let (in_pep, in_vcard) = (avatar(&server, 1), avatar(&server, 2));
    let mut alice = Client::login(&server, "alice");
    let mut obs = Client::login(&server, "obs");

    let published = alice.ok(json!({"cmd": "publish_pep", "file": in_pep.path}));
    assert_eq!(published["data"]["iq"], "result", "{published}");
    assert_eq!(published["metadata"]["iq"], "result", "{published}");

    let pep = obs.ok(json!({"cmd": "get_pep", "jid": "alice@localhost"}));
    let sha1 = Some(in_pep.sha1.as_str());
    assert_eq!((pep["id"].as_str(), pep["data_sha1"].as_str()), (sha1, sha1), "{pep}");
    assert_eq!(pep["infos"][0]["width"], in_pep.width.to_string(), "width/height go as strings: {pep}");

    // No vCard was ever stored: mod_vcard answers another user's get with item-not-found, not an empty vCard.
    let vcard = obs.ok(json!({"cmd": "get_vcard", "jid": "alice@localhost"}));
    assert_eq!((vcard["iq"].as_str(), vcard["condition"].as_str()), (Some("error"), Some("item-not-found")), "{vcard}");
    assert_eq!(vcard["photo_sha1"], Value::Null);

    alice.ok(json!({"cmd": "set_vcard_photo", "file": in_vcard.path, "fn": "Alice"}));
    let vcard = obs.ok(json!({"cmd": "get_vcard", "jid": "alice@localhost"}));
    assert_eq!(vcard["photo_sha1"], in_vcard.sha1.as_str(), "{vcard}");
    assert_eq!(vcard["type"], "image/png");
    assert_eq!(vcard["other_fields"], json!(["FN"]), "mod_vcard stores the vCard as sent: {vcard}");
    // ... and PEP still holds the other avatar: nothing crossed over.
    let pep = obs.ok(json!({"cmd": "get_pep", "jid": "alice@localhost"}));
    assert_eq!(pep["id"], in_pep.sha1.as_str(), "{pep}");
}

#[test]
fn xep0008_presence_reaches_a_contact_untouched() {
    let server = Prosody::start(Mode::PlainVcard, &["alice", "obs"]);
    let sha1 = avatar(&server, 3).sha1;
    let mut obs = online(&server, "obs");
    let mut alice = Client::login(&server, "alice");

    alice.ok(json!({"cmd": "presence", "x_avatar": sha1}));
    let seen = obs.ok(json!({"cmd": "wait_presence", "jid": "alice@localhost", "type": "available"}));
    assert_eq!(seen["from"], alice.jid());
    assert_eq!(seen["x_avatar"], sha1.as_str(), "{seen}");
    assert_eq!(seen["x_update_element"], false, "mod_vcard adds no XEP-0153 child: {seen}");

    // "Avatar disabled" (<x/> without <hash/>) must stay distinguishable from "no XEP-0008 at all".
    let after = seen["seq"].clone();
    alice.ok(json!({"cmd": "presence", "x_avatar": ""}));
    let seen = obs.ok(json!({"cmd": "wait_presence", "jid": "alice@localhost", "after": after}));
    assert_eq!((seen["x_avatar"].as_str(), seen["x_avatar_element"].as_bool()), (Some(""), Some(true)), "{seen}");
}

#[test]
fn vcard_legacy_injects_the_xep0153_hash_into_presence() {
    let server = Prosody::start(Mode::VcardLegacy, &["alice", "obs"]);
    let a = avatar(&server, 4);
    let mut obs = online(&server, "obs");
    let mut alice = Client::login(&server, "alice");

    // No avatar yet: the server adds <photo/> to a presence that carries only XEP-0008.
    alice.ok(json!({"cmd": "presence", "x_avatar": ""}));
    let seen = obs.ok(json!({"cmd": "wait_presence", "jid": "alice@localhost", "type": "available"}));
    assert_eq!((seen["x_update"].as_str(), seen["x_avatar"].as_str()), (Some(""), Some("")), "{seen}");

    // It injects only into presence the client sends itself: the next presence carries the new hash.
    alice.ok(json!({"cmd": "set_vcard_photo", "file": a.path}));
    alice.ok(json!({"cmd": "presence"}));
    let seen = obs.ok(json!({"cmd": "wait_presence", "jid": "alice@localhost", "x_update": a.sha1}));
    assert_eq!(seen["x_avatar_element"], false, "{seen}");
}

#[test]
fn legacy_namespaces_without_the_component_are_service_unavailable() {
    let server = Prosody::start(Mode::VcardLegacy, &["alice", "obs"]);
    let a = avatar(&server, 5);
    let mut alice = Client::login(&server, "alice");
    let mut obs = Client::login(&server, "obs");

    // Delegation is only active once the component has connected and answered disco#info, so nobody handles
    // these namespaces on bare JIDs: Prosody's own answer is service-unavailable (type cancel).
    for ns in ["storage:client:avatar", "jabber:iq:avatar"] {
        let got = obs.ok(json!({"cmd": "get_legacy", "jid": "alice@localhost", "ns": ns}));
        assert_eq!(
            (got["type"].as_str(), got["condition"].as_str(), got["error_type"].as_str()),
            (Some("error"), Some("service-unavailable"), Some("cancel")),
            "{ns}: {got}"
        );
    }
    let stored = alice.ok(json!({"cmd": "storage_set", "file": a.path}));
    assert_eq!((stored["type"].as_str(), stored["condition"].as_str()), (Some("error"), Some("service-unavailable")));

    // To a full JID, jabber:iq:avatar goes to the client itself (never delegated).
    let got = obs.ok(json!({"cmd": "get_legacy", "jid": alice.jid(), "ns": "jabber:iq:avatar"}));
    assert_eq!(got["condition"], "service-unavailable", "a client not serving yet: {got}");
    alice.ok(json!({"cmd": "serve_iq_avatar", "file": a.path, "mimetype": null}));
    let got = obs.ok(json!({"cmd": "get_legacy", "jid": alice.jid(), "ns": "jabber:iq:avatar"}));
    assert_eq!((got["sha1"].as_str(), got["mimetype"].as_str()), (Some(a.sha1.as_str()), None), "{got}");
    assert_eq!((got["bytes"].as_u64(), got["width"].as_u64()), (Some(a.len as u64), Some(a.width.into())), "{got}");
    let served = alice.ok(json!({"cmd": "served"}));
    assert_eq!(served["count"], 1, "{served}");
}

#[test]
fn observers_with_notify_caps_receive_pep_notifications() {
    let server = Prosody::start(Mode::PlainVcard, &["alice", "obs"]);
    let a = avatar(&server, 6);
    let mut obs = Client::login(&server, "obs");
    // PEP pushes metadata only to contacts whose caps (XEP-0115) include urn:xmpp:avatar:metadata+notify;
    // Prosody asks the client's disco#info what the caps hash means, which the client answers.
    obs.ok(json!({"cmd": "presence", "notify": true}));
    let mut alice = online(&server, "alice");

    alice.ok(json!({"cmd": "publish_pep", "file": a.path}));
    let event = obs.ok(json!({"cmd": "wait_pep_event", "jid": "alice@localhost", "item_id": a.sha1}));
    assert_eq!(event["node"], META, "{event}");
    assert_eq!(event["infos"][0]["id"], a.sha1.as_str(), "{event}");
    // Prosody 13.0's mod_pep drops item@publisher unless the node's pubsub#itemreply is "publisher" (its default is
    // "none"); the gateway does not rely on it (wire::xep0084 parses it, nothing reads it).
    if skip_on(Flavor::Prosody13, "the rest: item@publisher, which 13.0's mod_pep leaves out (pubsub#itemreply none)") {
        return;
    }
    // Prosody puts the publisher's *bare* JID in item@publisher, and pushes to both the bare and the full JID.
    assert_eq!(event["publisher"], alice.bare_jid(), "{event}");
}

#[test]
fn component_port_accepts_the_exposed_name_and_secret() {
    let server = Prosody::start(Mode::VcardLegacy, &["alice"]);
    let mut stream = TcpStream::connect(("127.0.0.1", server.component_port)).expect("connecting the component port");
    stream.set_read_timeout(Some(Duration::from_millis(100))).expect("setting a read timeout");
    let header = format!(
        "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' to='{}'>",
        server.component_jid()
    );
    stream.write_all(header.as_bytes()).expect("sending the stream header");
    let opening = read_until(&mut stream, |t| t.contains(" id='"));
    let id = opening.split(" id='").nth(1).and_then(|r| r.split('\'').next()).expect("a stream id");
    let handshake = sha1_hex(format!("{id}{}", server.secret()).as_bytes());
    stream.write_all(format!("<handshake>{handshake}</handshake>").as_bytes()).expect("sending the handshake");

    // What the gateway relies on right after the handshake (test-servers.md): the privilege:2 announcement and,
    // per delegated namespace, disco#info queries it must answer before mod_delegation activates.
    let node = "urn:xmpp:delegation:2::storage:client:avatar";
    let seen = read_until(&mut stream, |t| {
        t.contains("<handshake/>") && t.contains("urn:xmpp:privilege:2") && t.contains(node)
    });
    assert!(seen.contains("http://jabber.org/protocol/pubsub#owner"), "{seen}");
}

/// Reads the stream until `done` holds for everything read so far (5 s at most, then panics with it).
fn read_until(stream: &mut TcpStream, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    while !done(&text) {
        assert!(Instant::now() < deadline, "the component stream never showed what was expected:\n{text}");
        match stream.read(&mut buf) {
            Ok(0) => panic!("the server closed the component stream:\n{text}"),
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("reading the component stream: {e}\n{text}"),
        }
    }
    text
}

#[test]
fn dropping_the_server_stops_it_and_frees_its_port() {
    let server = Prosody::start(Mode::PlainVcard, &["alice"]);
    let (pid, port) = (server.pid(), server.c2s_port);
    let pidfile = std::fs::read_to_string(server.dir().join("prosody.pid")).expect("Prosody writes its pidfile");
    assert_eq!(pidfile.trim(), pid.to_string(), "the child we hold is the server itself");
    drop(server);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "process {pid} is gone");
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "port {port} is closed");
}
