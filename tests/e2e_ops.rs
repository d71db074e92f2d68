//! What an admin sees of a gateway at work beside a real server: `/metrics` moving as a XEP-0008 client's avatar is
//! converted, `/health`, systemd's readiness protocol and a clean SIGTERM, and a JSON log with no secret and no
//! image data in it.

mod support;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::json;
use support::client::Client;
use support::eventually;
use support::gateway::{Gateway, Launch};
use support::images::{avatar_png, large_jpeg, sha1_hex};
use support::ops::{get, sample};
use support::server::{AnyServer, Mode, XmppServer};

fn file(server: &AnyServer, name: &str, bytes: &[u8]) -> String {
    server.write_file(name, bytes).to_str().expect("UTF-8 temp path").to_owned()
}

/// Polls `/metrics` until `done` holds for the text.
fn scrape_until(address: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let (status, text) = get(address, "/metrics");
        assert_eq!(status, 200, "{text}");
        if done(&text) {
            return text;
        }
        assert!(start.elapsed() < support::PATIENCE, "{what}: still\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

const TO_PEP: &str = r#"avatar_gateway_conversions_total{from="xep0008",to="xep0084",outcome="written"}"#;
const TO_VCARD: &str = r#"avatar_gateway_conversions_total{from="xep0008",to="vcard",outcome="written"}"#;
const LEGACY_24H: &str = r#"avatar_gateway_clients_seen{scheme="xep0008",window="24h"}"#;
const ANY_24H: &str = r#"avatar_gateway_clients_seen{scheme="any",window="24h"}"#;

#[test]
fn metrics_move_as_a_legacy_client_is_converted_and_count_it() {
    let server = AnyServer::start(Mode::PlainVcard, &["alice", "obs"]);
    if server.skip_unless_it_converts() {
        return;
    }
    let gateway = Gateway::start_with(&server, &["ops.listen=127.0.0.1:0"]);
    let address = gateway.ops_address();
    assert_eq!(get(&address, "/health"), (200, "ok: linked, handshake done\n".to_owned()));
    let before = get(&address, "/metrics").1;
    assert_eq!(sample(&before, TO_PEP), 0.0, "{before}");
    assert_eq!(sample(&before, "avatar_gateway_link_up"), 1.0, "{before}");

    let png = avatar_png(21);
    let hash = sha1_hex(&png);
    let mut alice = Client::login(&server, "alice");
    let mut obs = Client::login(&server, "obs");
    obs.ok(json!({"cmd": "presence"}));
    alice.ok(json!({"cmd": "serve_iq_avatar", "file": file(&server, "a.png", &png), "mimetype": "image/png"}));
    alice.ok(json!({"cmd": "presence", "x_avatar": hash}));
    eventually(
        "PEP avatar",
        || obs.ok(json!({"cmd": "get_pep", "jid": "alice@localhost"})),
        |p| p["id"] == hash.as_str(),
    );

    let after =
        scrape_until(&address, "both conversions counted", |m| sample(m, TO_PEP) >= 1.0 && sample(m, TO_VCARD) >= 1.0);
    let moved = |series: &str| sample(&after, series) > sample(&before, series);
    for series in [
        r#"avatar_gateway_stanzas_total{direction="in",kind="presence"}"#,
        r#"avatar_gateway_stanzas_total{direction="in",kind="iq"}"#,
        r#"avatar_gateway_stanzas_total{direction="out",kind="iq"}"#,
        r#"avatar_gateway_transcodes_total{outcome="ok"}"#,
        "avatar_gateway_transcode_duration_seconds_count",
        "avatar_gateway_iq_latency_seconds_count",
        r#"avatar_gateway_fetches_total{scheme="xep0008"}"#,
        "avatar_gateway_store_commit_duration_seconds_count",
        "avatar_gateway_store_writes_total",
    ] {
        assert!(moved(series), "{series} did not move:\n{after}");
    }
    // One XEP-0008 client among the accounts seen (the observer is a plain client): the legacy share counts it.
    assert_eq!(sample(&after, LEGACY_24H), 1.0, "{after}");
    assert_eq!(sample(&after, ANY_24H), 2.0, "{after}");
    assert_eq!(sample(&after, r#"avatar_gateway_legacy_share{window="30d"}"#), 0.5, "{after}");
    // alice, whose avatar was converted (the observer's presence alone is no account to track).
    assert!(sample(&after, "avatar_gateway_accounts_tracked") >= 1.0, "{after}");
    assert!(sample(&after, "avatar_gateway_cache_bytes") > 0.0, "{after}");
    assert_eq!(sample(&after, "avatar_gateway_iq_timeouts_total"), 0.0, "{after}");
    assert_eq!(get(&address, "/nope").0, 404);
    gateway.assert_healthy();
}

/// Reads one datagram from the notify socket, if one comes within `timeout`.
fn notification(socket: &UnixDatagram, timeout: Duration) -> Option<String> {
    socket.set_read_timeout(Some(timeout)).expect("setting a read timeout");
    let mut buf = [0u8; 4096];
    let n = socket.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

#[test]
fn systemd_is_told_ready_after_the_handshake_and_sigterm_exits_cleanly() {
    let server = AnyServer::start(Mode::PlainVcard, &["alice"]);
    if server.skip_unless_it_converts() {
        return;
    }
    let path = server.dir().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("binding the notify socket");
    let notify = path.to_str().expect("UTF-8 temp path");
    // A watchdog of 0.4 s: pings every 0.2 s.
    let env = [("NOTIFY_SOCKET", notify), ("WATCHDOG_USEC", "400000")];
    let mut gateway =
        Gateway::start_launched(&server, &[], "avatar_gateway=debug", &Launch { env: &env, ..Launch::default() });

    let mut seen: Vec<String> = Vec::new();
    let has = |seen: &[String], what: &str| seen.iter().any(|m| m.contains(what));
    while !(has(&seen, "READY=1") && has(&seen, "WATCHDOG=1")) {
        let Some(m) = notification(&socket, Duration::from_secs(5)) else { break };
        seen.push(m);
    }
    let ready = seen.iter().position(|m| m.contains("READY=1"));
    assert!(ready.is_some(), "no READY=1 in {seen:?}");
    assert!(gateway.log().contains("connected"), "READY=1 comes after the handshake:\n{}", gateway.log());
    assert!(seen.iter().any(|m| m.contains("WATCHDOG=1")), "no watchdog ping in {seen:?}");

    let status = gateway.terminate();
    assert!(status.success(), "SIGTERM exits 0, got {status}:\n{}", gateway.log());
    let mut rest = Vec::new();
    while let Some(m) = notification(&socket, Duration::from_millis(200)) {
        rest.push(m);
    }
    assert!(rest.iter().any(|m| m.contains("STOPPING=1")), "no STOPPING=1 in {rest:?}");
    assert!(gateway.log().contains("shut down"), "{}", gateway.log());
}

#[test]
fn an_owners_storage_set_in_flight_at_sigterm_is_answered_before_the_exit() {
    let server = AnyServer::start(Mode::PlainVcard, &["alice"]);
    if server.skip_unless_it_converts() {
        return;
    }
    let mut gateway = Gateway::start(&server);
    // A 2000×2000 JPEG: tens of milliseconds of decoding and encoding on a worker, and the set is acknowledged
    // only once that is done and stored.
    let jpeg = large_jpeg(3, 2000, 30);
    let path = file(&server, "big.jpg", &jpeg);
    let mut alice = Client::login(&server, "alice");
    let set = std::thread::spawn(move || {
        alice.ok(json!({"cmd": "storage_set", "file": path, "mimetype": "image/jpeg", "timeout": 20}))
    });
    // SIGTERM as soon as the set is in (the debug log shows each stanza as it is read, before it is handled).
    let start = Instant::now();
    while !gateway.log().contains("<query xmlns='storage:client:avatar'><data") {
        assert!(start.elapsed() < support::PATIENCE, "the set never reached the gateway:\n{}", gateway.log());
        std::thread::sleep(Duration::from_millis(2));
    }
    let status = gateway.terminate();
    let set = set.join().expect("the client thread");
    assert_eq!(set["iq"], "result", "the set was acknowledged, not cut off: {set}\n{}", gateway.log());
    assert!(status.success(), "exit 0, got {status}:\n{}", gateway.log());
    // Whether the job was still running when the signal came depends on the machine; say which path ran.
    let drained = gateway.log().contains("waiting up to");
    eprintln!("SIGTERM {} the image job finished", if drained { "waited until" } else { "came after" });
}

#[test]
fn the_json_log_of_a_conversion_holds_no_secret_and_no_image_data() {
    let server = AnyServer::start(Mode::PlainVcard, &["alice", "obs"]);
    if server.skip_unless_it_converts() {
        return;
    }
    // Debug level, where every stanza in and out is logged: the image data crosses the link both ways.
    let launch = Launch { args: &["--log-format", "json"], ..Launch::default() };
    let gateway = Gateway::start_launched(&server, &[], "avatar_gateway=debug", &launch);
    let png = avatar_png(22);
    let hash = sha1_hex(&png);
    let mut alice = Client::login(&server, "alice");
    let mut obs = Client::login(&server, "obs");
    alice.ok(json!({"cmd": "serve_iq_avatar", "file": file(&server, "a.png", &png), "mimetype": "image/png"}));
    alice.ok(json!({"cmd": "presence", "x_avatar": hash}));
    eventually(
        "vCard PHOTO",
        || obs.ok(json!({"cmd": "get_vcard", "jid": "alice@localhost"})),
        |v| v["photo_sha1"] == hash.as_str(),
    );
    // A reader of the XEP-0008 rendition: the gateway's own answer carries image data too.
    let got = obs.ok(json!({"cmd": "get_legacy", "jid": "alice@localhost", "ns": "storage:client:avatar"}));
    assert!(got["sha1"].is_string(), "{got}");
    std::thread::sleep(Duration::from_millis(500));

    let log = gateway.log();
    assert!(log.contains("[") && log.contains("base64 chars]"), "the stanzas were logged, elided:\n{log}");
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }
    assert!(!log.contains(server.secret()), "the component secret is in the log");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&png);
    for chunk in b64.as_bytes().chunks(32).map(|c| std::str::from_utf8(c).expect("ASCII")) {
        assert!(!log.contains(chunk), "image data {chunk:?} is in the log");
    }
    // Nor any other image (the renditions): no long run of base64 characters anywhere.
    let base64_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
    let longest = log.split(|c: char| !base64_char(c)).map(str::len).max().unwrap_or(0);
    assert!(longest < 64, "a base64 run of {longest} characters is in the log");
    gateway.assert_healthy();
}
