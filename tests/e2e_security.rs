//! The security issue's attacks, each made by a real user (mallory, in nobody's roster) against a real Prosody 0.12
//! and the gateway binary: forged delegation wrappers and announcements, deeply nested stanzas, negative-cache
//! poisoning, XEP-0008 reads outside the owner's access model, eviction and a flood by one account. Every test
//! asserts what a real client reads (exact SHA-1s), and that the gateway still runs and converts afterwards.
//!
//! The stanzas as the gateway receives them are in `fixtures/stanzas/security/`.

mod support;

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use support::client::Client;
use support::gateway::Gateway;
use support::images::{avatar_png, large_jpeg, noisy_png, sha1_hex};
use support::prosody::{COMPONENT, Mode, Prosody, password_of};
use support::{PATIENCE, eventually};

/// The per-account rates turned off, for tests of the defences under them.
const NO_RATE_LIMITS: &[&str] = &["rates.avatar_changes_per_minute=0", "rates.image_bytes_per_minute=0"];
const ALICE: &str = "alice@localhost";
const BOB: &str = "bob@localhost";
const MALLORY: &str = "mallory@localhost";
const STORAGE: &str = "storage:client:avatar";
const IQ_AVATAR: &str = "jabber:iq:avatar";

/// A server whose `users` are all mutual contacts, and mallory, registered afterwards: in nobody's roster.
fn server(mode: Mode, users: &[&str]) -> Prosody {
    let server = Prosody::start(mode, users);
    server.register("mallory", &password_of("mallory"));
    server
}

fn file(server: &Prosody, name: &str, bytes: &[u8]) -> String {
    server.write_file(name, bytes).to_str().expect("UTF-8 temp path").to_owned()
}

/// `user` as a XEP-0008 client serving `png` and announcing its hash; the client must stay connected (the gateway
/// fetches from it).
fn legacy_owner(server: &Prosody, user: &str, png: &[u8]) -> (Client, String) {
    let hash = sha1_hex(png);
    let mut client = Client::login(server, user);
    client.ok(json!({"cmd": "serve_iq_avatar", "file": file(server, &format!("{user}-{hash}.png"), png)}));
    client.ok(json!({"cmd": "presence", "x_avatar": hash}));
    (client, hash)
}

/// Waits until `obs` reads `jid`'s XEP-0084 avatar with item id `hash` and data hashing to it.
fn assert_pep(obs: &mut Client, jid: &str, hash: &str) {
    let pep = eventually(
        &format!("{jid}'s PEP avatar"),
        || obs.ok(json!({"cmd": "get_pep", "jid": jid})),
        |p| p["id"] == hash,
    );
    assert_eq!(pep["data_sha1"], hash, "{pep}");
}

/// Waits until `obs` reads `jid`'s vCard PHOTO hashing to `hash`.
fn assert_vcard(obs: &mut Client, jid: &str, hash: &str) {
    eventually(
        &format!("{jid}'s vCard PHOTO"),
        || obs.ok(json!({"cmd": "get_vcard", "jid": jid})),
        |v| v["photo_sha1"] == hash,
    );
}

/// What a reader gets from `jid` over XEP-0008 `ns`: (IQ type, error condition, SHA-1 of the data).
fn legacy_read(reader: &mut Client, jid: &str, ns: &str) -> Value {
    let got = reader.ok(json!({"cmd": "get_legacy", "jid": jid, "ns": ns}));
    json!([got["iq"], got["condition"], got["sha1"]])
}

/// The gateway survived: its process runs on the one connection it opened, and a new XEP-0008 avatar of `user` (a
/// contact of `obs`) still reaches `obs` with its exact hash.
fn assert_still_converting(server: &Prosody, gateway: &mut Gateway, obs: &mut Client, user: &str, seed: u8) {
    gateway.assert_running();
    let (_owner, hash) = legacy_owner(server, user, &avatar_png(seed));
    assert_pep(obs, &format!("{user}@localhost"), &hash);
    gateway.assert_running();
    let log = gateway.log();
    assert_eq!(log.lines().filter(|l| l.contains(" connected ")).count(), 1, "one connection all along:\n{log}");
    assert!(!log.contains("reconnecting"), "{log}");
    gateway.assert_healthy();
}

// ---------------------------------------------------------------------------------------------------------------
// 1. A user forges the server's delegation wrapper (XEP-0355 §7: only the server forwards delegated IQs)

/// The payload of a user's `<iq/>` to the component: the delegation wrapper of an IQ alice never sent.
fn forged_delegation(version: &str, payload: &str) -> String {
    format!(
        "<delegation xmlns='urn:xmpp:delegation:{version}'><forwarded xmlns='urn:xmpp:forward:0'>\
         <iq xmlns='jabber:client' type='set' id='x' from='{ALICE}/x' to='{ALICE}'>{payload}</iq>\
         </forwarded></delegation>"
    )
}

fn forged_delegation_is_forbidden_and_changes_nothing(mode: Mode) {
    let server = server(mode, &["alice", "bob", "obs"]);
    let mut gateway = Gateway::start(&server);
    let (mut alice, mut obs) = (Client::login(&server, "alice"), Client::login(&server, "obs"));
    let own = avatar_png(12);
    let hash = sha1_hex(&own);
    let set = alice.ok(json!({"cmd": "storage_set", "file": file(&server, "own.png", &own), "mimetype": "image/png"}));
    assert_eq!(set["iq"], "result", "{set}");
    assert_pep(&mut obs, ALICE, &hash);
    assert_vcard(&mut obs, ALICE, &hash);

    let data = format!("<data mimetype='image/png'>{}</data>", BASE64.encode(avatar_png(13)));
    let storage = format!("<query xmlns='{STORAGE}'>{data}</query>");
    let private = format!("<query xmlns='jabber:iq:private'>{storage}</query>");
    let mut mallory = Client::login(&server, "mallory");
    let answers: Vec<Value> = [("2", &storage), ("1", &storage), ("2", &private)]
        .into_iter()
        .map(|(version, payload)| {
            let forged = forged_delegation(version, payload);
            let got = mallory.ok(json!({"cmd": "raw_iq", "type": "set", "to": COMPONENT, "payload": forged}));
            json!([version, got["iq"], got["condition"]])
        })
        .collect();
    let expected =
        [json!(["2", "error", "forbidden"]), json!(["1", "error", "forbidden"]), json!(["2", "error", "forbidden"])];
    assert_eq!(answers, expected, "delegation:2, delegation:1, delegation:2 + jabber:iq:private");

    // A later conversion reaches the observer, so whatever the forgeries set in motion is done by now.
    assert_still_converting(&server, &mut gateway, &mut obs, "bob", 14);
    assert_eq!(obs.ok(json!({"cmd": "get_pep", "jid": ALICE}))["id"], hash.as_str(), "alice's PEP is hers");
    assert_eq!(obs.ok(json!({"cmd": "get_vcard", "jid": ALICE}))["photo_sha1"], hash.as_str(), "and her vCard");
    assert_eq!(legacy_read(&mut alice, ALICE, STORAGE), json!(["result", null, hash]), "and her stored avatar");
}

#[test]
fn forged_delegation_from_a_user_is_forbidden_on_a_plain_server() {
    forged_delegation_is_forbidden_and_changes_nothing(Mode::PlainVcard);
}

#[test]
fn forged_delegation_from_a_user_is_forbidden_on_a_converting_server() {
    forged_delegation_is_forbidden_and_changes_nothing(Mode::VcardLegacy);
}

// ---------------------------------------------------------------------------------------------------------------
// 2. A user forges the server's delegation and privilege announcements

/// The capability report lines, without their timestamps.
fn capability_report(gateway: &Gateway) -> Vec<String> {
    let log = gateway.log();
    let at = |l: &str| l.find("ON  ").or_else(|| l.find("OFF "));
    log.lines().filter_map(|l| at(l).map(|i| l[i..].to_owned())).collect()
}

#[test]
fn forged_announcements_from_a_user_are_ignored_and_logged() {
    let server = server(Mode::PlainVcard, &["bob", "obs"]);
    let mut gateway = Gateway::start(&server);
    let mut obs = Client::login(&server, "obs");
    let report = capability_report(&gateway);
    // Privilege in its :1 form: Prosody's mod_privilege bounces a user's <privilege xmlns='urn:xmpp:privilege:2'/>
    // to a component (forbidden, "try to send message without permission"), so only :1 reaches the gateway. Each
    // from its own resource: the gateway may log an untrusted sender only once in a while.
    for (resource, forged) in [
        ("one", "<delegation xmlns='urn:xmpp:delegation:2'><delegated namespace='urn:xmpp:mam:2'/></delegation>"),
        (
            "two",
            "<privilege xmlns='urn:xmpp:privilege:1'><perm access='roster' type='both'/>\
             <perm access='message' type='outgoing'/><perm access='presence' type='roster'/></privilege>",
        ),
    ] {
        let mut mallory = Client::connect_resource(&server, "mallory", &password_of("mallory"), resource);
        mallory.ok(json!({"cmd": "raw_send", "xml": format!("<message to='{COMPONENT}'>{forged}</message>")}));
        // The answer to a ping sent after the message comes after the gateway read it (the server routes in order).
        mallory.ok(json!({"cmd": "raw_iq", "to": COMPONENT, "payload": "<ping xmlns='urn:xmpp:ping'/>"}));
    }

    assert_still_converting(&server, &mut gateway, &mut obs, "bob", 15);
    let log = gateway.log();
    for sender in [format!("{MALLORY}/one"), format!("{MALLORY}/two")] {
        let named = log.lines().any(|l| l.contains("ignored") && l.contains(&sender));
        assert!(named, "no line says {sender}'s announcement was ignored:\n{log}");
    }
    assert_eq!(capability_report(&gateway), report, "the capability report is the server's alone");
}

// ---------------------------------------------------------------------------------------------------------------
// 3. One deeply nested stanza (the server forwards it: it is under the 256 KiB c2s stanza limit)

/// `depth` nested elements as text: `<a><a>…</a></a>`.
fn nested(depth: usize) -> String {
    format!("{}{}", "<a>".repeat(depth), "</a>".repeat(depth))
}

#[test]
fn a_deeply_nested_message_does_not_kill_the_gateway() {
    let server = server(Mode::PlainVcard, &["bob", "obs"]);
    let mut gateway = Gateway::start(&server);
    let mut obs = Client::login(&server, "obs");
    let mut mallory = Client::login(&server, "mallory");
    let deep = format!("<message to='{COMPONENT}' id='deep-m'>{}</message>", nested(15_000));
    assert!(deep.len() < 256 * 1024, "{} bytes", deep.len());
    mallory.ok(json!({"cmd": "raw_send", "xml": deep}));
    // The server routes in order: the answer to a ping sent after the message comes after the gateway read it.
    let ping = json!({"cmd": "raw_iq", "to": COMPONENT, "payload": "<ping xmlns='urn:xmpp:ping'/>", "timeout": 5});
    let pong = mallory.cmd(ping);
    gateway.assert_running();
    assert_eq!(pong["iq"], "result", "the gateway answers a ping after the message: {pong}");
    assert_still_converting(&server, &mut gateway, &mut obs, "bob", 16);
}

#[test]
fn a_deeply_nested_storage_set_is_answered_with_an_error_and_does_not_kill_the_gateway() {
    let server = server(Mode::PlainVcard, &["bob", "obs"]);
    let mut gateway = Gateway::start(&server);
    let mut obs = Client::login(&server, "obs");
    let mut mallory = Client::login(&server, "mallory");
    let deep =
        format!("<iq type='set' id='deep-s' to='{MALLORY}'><query xmlns='{STORAGE}'>{}</query></iq>", nested(20_000));
    assert!(deep.len() < 256 * 1024, "{} bytes", deep.len());
    // Any error: the gateway answers policy-violation, which the server may translate.
    let reply = mallory.cmd(json!({"cmd": "raw_iq_text", "id": "deep-s", "xml": deep}));
    gateway.assert_running();
    assert_eq!(reply["iq"], "error", "{reply}");
    assert_still_converting(&server, &mut gateway, &mut obs, "bob", 17);
}

// ---------------------------------------------------------------------------------------------------------------
// 4. A user poisons the negative cache with the hash of an avatar someone else is about to set

fn a_poisoned_hash_still_converts_for_its_owner(mode: Mode) {
    let server = server(mode, &["alice", "obs"]);
    let gateway = Gateway::start(&server);
    let mut obs = Client::login(&server, "obs");
    let png = avatar_png(18);
    let hash = sha1_hex(&png);
    let mut mallory = Client::login(&server, "mallory");
    mallory.ok(json!({"cmd": "serve_iq_avatar", "file": file(&server, "other.png", &avatar_png(19))}));
    mallory.ok(json!({"cmd": "presence", "x_avatar": hash}));
    eventually("the gateway's fetch from mallory", || mallory.ok(json!({"cmd": "served"})), |s| s["count"] == 1);
    let refused = |log: String| log.lines().any(|l| l.contains("refused") && l.contains(MALLORY) && l.contains(&hash));
    eventually("mallory's bytes refused", || json!(refused(gateway.log())), |r| r == true);

    let (_alice, _) = legacy_owner(&server, "alice", &png);
    assert_pep(&mut obs, ALICE, &hash);
    assert_vcard(&mut obs, ALICE, &hash);
    gateway.assert_healthy();
}

#[test]
fn a_hash_poisoned_by_another_user_still_converts_on_a_plain_server() {
    a_poisoned_hash_still_converts_for_its_owner(Mode::PlainVcard);
}

#[test]
fn a_hash_poisoned_by_another_user_still_converts_on_a_converting_server() {
    a_poisoned_hash_still_converts_for_its_owner(Mode::VcardLegacy);
}

// ---------------------------------------------------------------------------------------------------------------
// 5. XEP-0008 readers get what the server would let them read

fn legacy_reads_follow_the_access_model(mode: Mode) {
    let server = server(mode, &["alice", "carol"]);
    let gateway = Gateway::start(&server);
    let png = avatar_png(20);
    let hash = sha1_hex(&png);
    let mut alice = Client::login(&server, "alice");
    let published = alice.ok(json!({"cmd": "publish_pep", "file": file(&server, "a.png", &png)}));
    assert_eq!(published["iq"], "result", "published with the default access model (presence): {published}");
    let (mut carol, mut mallory) = (Client::login(&server, "carol"), Client::login(&server, "mallory"));

    // What the server itself answers mallory for alice's metadata node (Prosody 0.12: <forbidden/>, type auth).
    let direct = mallory.ok(json!({"cmd": "get_pep", "jid": ALICE}));
    assert_eq!(json!([direct["iq"], direct["condition"]]), json!(["error", "forbidden"]), "{direct}");
    for ns in [STORAGE, IQ_AVATAR] {
        assert_eq!(legacy_read(&mut mallory, ALICE, ns), json!(["error", direct["condition"], null]), "{ns}");
        assert_eq!(legacy_read(&mut carol, ALICE, ns), json!(["result", null, hash]), "a contact, {ns}");
        assert_eq!(legacy_read(&mut alice, ALICE, ns), json!(["result", null, hash]), "the owner, {ns}");
    }
    gateway.assert_healthy();
}

#[test]
fn legacy_reads_follow_the_access_model_on_a_plain_server() {
    legacy_reads_follow_the_access_model(Mode::PlainVcard);
}

#[test]
fn legacy_reads_follow_the_access_model_on_a_converting_server() {
    legacy_reads_follow_the_access_model(Mode::VcardLegacy);
}

// ---------------------------------------------------------------------------------------------------------------
// 6. One account's many avatars do not evict the others' (small budgets)

fn one_account_cannot_evict_the_others(mode: Mode) {
    let server = server(mode, &["alice", "bob", "carol"]);
    // Rates off: the pins must hold under a flood however fast one account may change.
    let budgets = ["cache.max_bytes=204800", "gateway.blob_budget_bytes=204800", NO_RATE_LIMITS[0], NO_RATE_LIMITS[1]];
    let gateway = Gateway::start_with(&server, &budgets);
    let (a_png, b_png) = (avatar_png(21), avatar_png(22));
    let a_hash = sha1_hex(&a_png);
    let mut alice = Client::login(&server, "alice");
    assert_eq!(alice.ok(json!({"cmd": "publish_pep", "file": file(&server, "a.png", &a_png)}))["iq"], "result");
    let (_bob, b_hash) = legacy_owner(&server, "bob", &b_png);
    let mut carol = Client::login(&server, "carol");
    let owners = [(ALICE, a_hash), (BOB, b_hash)];
    for (jid, hash) in &owners {
        let want = json!(["result", null, hash]);
        eventually(&format!("{jid} served"), || legacy_read(&mut carol, jid, STORAGE), |r| *r == want);
    }

    let mut mallory = Client::login(&server, "mallory");
    let mut last = Value::Null;
    for seed in 0..40 {
        let noisy = noisy_png(seed, 128);
        let set = mallory.ok(json!({"cmd": "storage_set", "file": file(&server, "m.png", &noisy)}));
        assert_eq!(set["iq"], "result", "mallory's avatar {seed} ({} bytes): {set}", noisy.len());
        last = set["sha1"].clone();
    }
    eventually("mallory's last avatar in her PEP", || mallory.ok(json!({"cmd": "get_pep"})), |p| p["id"] == last);
    for (jid, hash) in &owners {
        assert_eq!(legacy_read(&mut carol, jid, STORAGE), json!(["result", null, hash]), "{jid} after the 40");
    }
    gateway.assert_healthy();
}

#[test]
fn one_account_cannot_evict_the_others_on_a_plain_server() {
    one_account_cannot_evict_the_others(Mode::PlainVcard);
}

#[test]
fn one_account_cannot_evict_the_others_on_a_converting_server() {
    one_account_cannot_evict_the_others(Mode::VcardLegacy);
}

// ---------------------------------------------------------------------------------------------------------------
// 7. One account's flood does not delay another account's conversion

/// mallory floods 200 presences a second for 3 s, each with the hash of a new 2000×2000 JPEG (served as `serve`
/// says); a second into it, bob (a XEP-0008 client) sets an avatar, and an observer must see it within 2 s.
/// `overrides`: [`NO_RATE_LIMITS`] to see the fairness of the fetches and the image workers alone (the rates would
/// refuse most of the flood first).
/// Returns the server, the gateway and mallory (her flood over) for further checks.
fn flood_then_bob(serve: &str, bursts: u32, overrides: &[&str]) -> (Prosody, Gateway, Client) {
    let server = server(Mode::PlainVcard, &["bob", "obs"]);
    // Info level: hundreds of ~170 KB replies would make a debug log of gigabytes.
    let gateway = Gateway::start_logging(&server, overrides, "avatar_gateway=info");
    // As large as mallory may send: its base64 must fit Prosody's 256 KiB c2s stanza limit.
    let big = large_jpeg(1, 2000, 30);
    assert!(big.len() < 190 * 1024, "{} bytes", big.len());
    let (mut obs, mut mallory) = (Client::login(&server, "obs"), Client::login(&server, "mallory"));
    let png = avatar_png(23);
    let hash = sha1_hex(&png);
    let mut bob = Client::login(&server, "bob");
    bob.ok(json!({"cmd": "serve_iq_avatar", "file": file(&server, "b.png", &png)}));

    let big = file(&server, "big.jpg", &big);
    mallory.ok(json!({"cmd": "flood", "file": big, "rate": 200, "seconds": 3, "bursts": bursts, "serve": serve}));
    std::thread::sleep(Duration::from_secs(1));
    let start = Instant::now();
    bob.ok(json!({"cmd": "presence", "x_avatar": hash}));
    let reached = loop {
        let pep = obs.ok(json!({"cmd": "get_pep", "jid": BOB}));
        if pep["id"] == hash.as_str() {
            assert_eq!(pep["data_sha1"], hash.as_str(), "{pep}");
            break Some(start.elapsed());
        }
        if start.elapsed() > PATIENCE {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let flood = mallory.ok(json!({"cmd": "flood_wait", "timeout": 30}));
    assert!(flood["presences"].as_u64().is_some_and(|n| n >= 500), "the flood happened: {flood}");
    let reached = reached.unwrap_or_else(|| panic!("bob's avatar never reached the observer in {PATIENCE:?}; {flood}"));
    eprintln!("bob's avatar reached the observer {reached:?} after his presence, during {flood}");
    assert!(reached <= Duration::from_secs(2), "bob's avatar took {reached:?} after his presence; {flood}");
    gateway.assert_healthy();
    (server, gateway, mallory)
}

/// Each fetch answered with the oldest hash not served yet: what a gateway fetching every hash in turn asks for.
#[test]
fn a_flood_of_hashes_does_not_delay_another_accounts_conversion() {
    flood_then_bob("oldest", 20, NO_RATE_LIMITS);
}

/// The same flood under the default rates: mallory's changes beyond her rate are refused, which the log says once
/// per window (not once per presence), and bob is not delayed.
#[test]
fn a_flood_over_the_rate_is_refused_told_once_per_window_and_costs_bob_nothing() {
    let (_server, gateway, _mallory) = flood_then_bob("latest", 5, &[]);
    let told = gateway.count("over its rate of avatar changes per minute");
    // 3 s of flood; the window after 12 changes is 5 s (12 a minute): told once, twice if the flood outlived it.
    assert!((1..=2).contains(&told), "told {told} times:\n{}", gateway.log());
    assert!(gateway.log().lines().all(|l| !l.contains("over its rate") || l.contains("mallory@localhost")));
}

/// Each fetch answered with the latest hash, in 5 bursts a second: a gateway that fetches only the last hash an
/// account showed gets matching bytes between bursts and really decodes mallory's images meanwhile.
#[test]
fn a_flood_of_real_decodes_does_not_delay_another_accounts_conversion() {
    let (_server, _gateway, mut mallory) = flood_then_bob("latest", 5, NO_RATE_LIMITS);
    eventually("one of mallory's images converted", || mallory.ok(json!({"cmd": "get_pep"})), |p| p["id"].is_string());
}
