//! The gateway beside a real ejabberd 23.01 (Debian bookworm), with real client connections (a newer ejabberd
//! through the hooks of `support::ejabberd`: the report is then expected to have every direction on, except on 24.10
//! to 25.02, whose mod_privilege never lets a delegation be activated: `Version::has_broken_privilege`; the tests
//! that need one skip themselves there). The conversions themselves are `tests/e2e_gateway.rs`, run with
//! `E2E_SERVER=ejabberd`.
//!
//! 23.01 grants no XEP-0356 IQ permission (`urn:xmpp:privilege:1`: roster, message, presence), so the gateway
//! cannot read or write PEP, nor write vCards. What it can do there, and what is asserted here: answer XEP-0008
//! readers (a `storage:client:avatar` / `jabber:iq:avatar` get to a user's bare JID, delegated to it by
//! mod_delegation) from the account's vCard, which any entity may read with a plain vcard-temp get
//! (`tests/e2e_ejabberd_harness.rs` proves that); keep an owner's `storage:client:avatar` set and serve it back;
//! and say in its start-up report which directions work and what the rest needs.

mod support;

use std::time::Duration;

use avatar_gateway::engine::grants::Direction;
use serde_json::{Value, json};
use support::client::Client;
use support::ejabberd::{Ejabberd, Mode};
use support::gateway::Gateway;
use support::images::{generated_png, sha1_hex};

/// The capability report waits for the delegations, which ejabberd announces only after the gateway answered its
/// disco#info queries (a round trip after the handshake).
const REPORT_AFTER_DELEGATION: &[&str] = &["gateway.report_delay_secs=2"];
const LEGACY_NAMESPACES: [&str; 2] = ["storage:client:avatar", "jabber:iq:avatar"];

fn file(server: &Ejabberd, name: &str, bytes: &[u8]) -> String {
    server.write_file(name, bytes).to_str().expect("UTF-8 temp path").to_owned()
}

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/images").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A XEP-0008 reader's get of `jid`'s avatar in `ns`, asserted to be a XEP-0008 rendition: ≤ 64 px, < 8 KB, the
/// real format named by its mimetype. Returns the answer (`sha1` is the SHA-1 of the bytes served).
fn legacy_read(reader: &mut Client, jid: &str, ns: &str) -> Value {
    let got = reader.ok(json!({"cmd": "get_legacy", "jid": jid, "ns": ns}));
    assert_eq!(got["type"], "result", "{ns} get of {jid}: {got}");
    let (w, h, n) = (got["width"].as_u64(), got["height"].as_u64(), got["bytes"].as_u64());
    assert!(w.is_some_and(|w| w <= 64) && h.is_some_and(|h| h <= 64), "≤ 64 px: {got}");
    assert!(n.is_some_and(|n| n < 8192), "< 8 KB: {got}");
    assert!(got["sha1"].is_string(), "{got}");
    assert_eq!(got["mimetype"], got["sniffed"], "the mimetype names the bytes: {got}");
    got
}

#[test]
fn legacy_reader_gets_a_vcard_photo_as_a_xep0008_rendition() {
    let server = Ejabberd::start_mode(Mode::VcardLegacy, &["alice", "bob", "carol"]);
    if server.skip_on_broken_privilege("XEP-0008 readers' gets are delegated, and no delegation is activated") {
        return;
    }
    let gateway = Gateway::start_reporting(&server, REPORT_AFTER_DELEGATION);
    let jpeg = fixture("photo-300x200.jpg");
    let small = fixture("pixel-1x1.png");
    let mut alice = Client::login(&server, "alice");
    let mut bob = Client::login(&server, "bob");
    let mut carol = Client::login(&server, "carol");
    // Real vCard clients: a JPEG photo (the reader gets a PNG rendition) and a PNG already within XEP-0008's budget
    // (served as it is, so the reader's hash is the vCard's).
    let set = alice.ok(json!({"cmd": "set_vcard_photo", "file": file(&server, "a.jpg", &jpeg), "fn": "Alice"}));
    assert_eq!(set["iq"], "result", "{set}");
    bob.ok(json!({"cmd": "set_vcard_photo", "file": file(&server, "b.png", &small)}));

    let renditions: Vec<Value> =
        LEGACY_NAMESPACES.iter().map(|ns| legacy_read(&mut carol, "alice@localhost", ns)).collect();
    assert_eq!(renditions[0]["sniffed"], "image/png", "{}", renditions[0]);
    assert_ne!(renditions[0]["sha1"], sha1_hex(&jpeg).as_str(), "a rendition, not the JPEG: {}", renditions[0]);
    assert_eq!(renditions[0]["sha1"], renditions[1]["sha1"], "both namespaces serve the same bytes: {renditions:?}");
    assert_served(&gateway, "alice@localhost", renditions[0]["sha1"].as_str().expect("checked"));

    for ns in LEGACY_NAMESPACES {
        let got = legacy_read(&mut carol, "bob@localhost", ns);
        assert_eq!(got["sha1"], sha1_hex(&small).as_str(), "{ns}: SHA-1 of the bytes = the vCard PHOTO's: {got}");
    }
    assert_served(&gateway, "bob@localhost", &sha1_hex(&small));
    gateway.assert_healthy();
}

#[test]
fn storage_set_by_an_owner_is_kept_and_read_back_by_another_user() {
    let server = Ejabberd::start_mode(Mode::PlainVcard, &["bob", "carol"]);
    if server.skip_on_broken_privilege("storage:client:avatar sets are delegated, and no delegation is activated") {
        return;
    }
    let gateway = Gateway::start_reporting(&server, REPORT_AFTER_DELEGATION);
    let png = generated_png(5, 48);
    let hash = sha1_hex(&png);
    let mut bob = Client::login(&server, "bob");
    let mut carol = Client::login(&server, "carol");

    let set = bob.ok(json!({"cmd": "storage_set", "file": file(&server, "b.png", &png), "mimetype": "image/png"}));
    assert_eq!(set["iq"], "result", "the delegated set is acknowledged: {set}");
    // Anyone may read it back from the bare JID, as XEP-0008 storage promises; a 48 px PNG is served as stored.
    for ns in LEGACY_NAMESPACES {
        let got = legacy_read(&mut carol, "bob@localhost", ns);
        assert_eq!(got["sha1"], hash.as_str(), "{ns}: {got}");
    }
    gateway.assert_healthy();
}

#[test]
fn capability_report_has_a_line_per_direction_naming_what_the_iq_privilege_would_add() {
    let server = Ejabberd::start(&["alice"]);
    let gateway = Gateway::start_reporting(&server, REPORT_AFTER_DELEGATION);
    let report = gateway.report();
    eprintln!("capability report beside ejabberd {}:\n{}", server.reported_version(), report.join("\n"));

    for direction in Direction::ALL {
        let lines = gateway.report_lines_for(direction.describe());
        assert_eq!(lines.len(), 1, "one report line for {:?}:\n{}", direction.describe(), gateway.log());
    }
    if server.version().has_broken_privilege() {
        // 24.10 to 25.02: mod_privilege drops the gateway's answers to mod_delegation's disco#info queries (the
        // node logs "IQ not forwarded: Component tried to send not wrapped IQ stanza."), so no delegation is ever
        // announced, and the report says so.
        assert_needs_delegation(&report, "XEP-0008 readers");
        assert_needs_delegation(&report, Direction::LegacyStorage.describe());
        // The IQ privilege it announced does not work either: at the first privileged read (alice's presence), the
        // admin is told which directions are off, why, and what fixes it.
        let mut alice = Client::login(&server, "alice");
        alice.ok(json!({"cmd": "presence"}));
        gateway.wait_for_log("handed the privileged IQ back unprocessed", Duration::from_secs(10));
        let log = gateway.log();
        let told = log.lines().find(|l| l.contains("stay off") && l.contains("XEP-0084")).unwrap_or_default();
        assert!(told.contains("upgrade to 25.03"), "{log}");
    } else {
        assert_works(&report, "XEP-0008 readers");
        assert_works(&report, Direction::LegacyStorage.describe());
    }
    for pep_write in [Direction::LegacyToPep, Direction::VcardToPep] {
        if server.version().has_iq_privilege() {
            assert_works(&report, pep_write.describe()); // ejabberd ≥ 24.10 grants it (support::ejabberd_config)
        } else {
            assert_needs_iq(&report, pep_write.describe());
        }
    }
    gateway.assert_healthy();
}

/// The gateway says it served `account`'s avatar under `hash`, the SHA-1 the reader computed from the bytes.
fn assert_served(gateway: &Gateway, account: &str, hash: &str) {
    let log = gateway.log();
    let served = |l: &&str| l.contains("Served") && l.contains(account) && l.contains(hash);
    assert!(log.lines().any(|l| served(&l)), "no line says {account} was served as {hash}:\n{log}");
}

/// The report line that names `direction` (panics with the whole report when there is none).
fn report_line<'a>(report: &'a [String], direction: &str) -> &'a str {
    report
        .iter()
        .find(|l| l.contains(direction))
        .unwrap_or_else(|| panic!("no report line for {direction:?}:\n{}", report.join("\n")))
}

/// The direction is reported as working (the wording is loose on purpose: "ON" or "works").
fn assert_works(report: &[String], direction: &str) {
    let line = report_line(report, direction);
    assert!(line.contains("ON ") || line.to_lowercase().contains("works"), "{direction} works:\n{line}");
}

/// The direction is reported off for want of the XEP-0355 delegation of `storage:client:avatar`.
fn assert_needs_delegation(report: &[String], direction: &str) {
    let line = report_line(report, direction);
    assert!(
        line.contains("OFF ") && line.contains("needs delegation of storage:client:avatar"),
        "{direction} needs the delegation:\n{line}"
    );
}

/// The direction is reported as needing the XEP-0356 IQ privilege, with the fix named: it "needs" an "iq" grant.
fn assert_needs_iq(report: &[String], direction: &str) {
    let line = report_line(report, direction);
    assert!(
        line.contains("needs") && line.to_lowercase().contains("iq"),
        "{direction} needs the iq privilege:\n{line}"
    );
    assert!(line.contains("24.10"), "{direction}: the fix names the ejabberd release that grants it:\n{line}");
}
