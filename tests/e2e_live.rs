//! `migrate live` against a real Prosody 0.12 (plain mod_vcard): accounts whose owners set a vCard and never logged
//! in again get their XEP-0084 avatar, as an observer client sees it; a dry run writes nothing; a checkpoint makes a
//! rerun skip what an earlier run did.

mod support;

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use support::client::Client;
use support::gateway;
use support::images::{avatar_png, sha1_hex};
use support::prosody::{Mode, Prosody};

/// Runs `avatar-gateway migrate live` for `server`'s component with `args`; returns stdout, failing on a bad exit.
fn migrate_live(server: &Prosody, args: &[String]) -> String {
    let sets = [
        format!("server.address=127.0.0.1:{}", server.component_port),
        format!("server.component={}", server.component_jid()),
        format!("server.secret={}", server.secret()),
        "gateway.report_delay_secs=0".into(),
        "gateway.iq_timeout_secs=5".into(),
    ];
    let mut command = Command::new(gateway::binary());
    command.args(["migrate", "live", "--rate", "50"]).args(args);
    for s in &sets {
        command.args(["--set", s]);
    }
    let out = command.env("RUST_LOG", "avatar_gateway=debug").output().expect("running avatar-gateway migrate live");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "migrate live failed ({}):\n{stdout}\n{stderr}", out.status);
    stdout.into_owned()
}

fn report(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("the report")).expect("the report is JSON")
}

fn outcome<'a>(report: &'a Value, account: &str) -> &'a Value {
    let accounts = report["accounts"].as_array().expect("an accounts array");
    let mut found = accounts.iter().filter(|a| a["account"] == account);
    let first = found.next().unwrap_or_else(|| panic!("{account} missing from {report}"));
    assert!(found.next().is_none(), "{account} twice in {report}");
    first
}

/// Sets `user`'s vCard PHOTO to `png` and logs out, as an owner who never comes back.
fn dormant_with_photo(server: &Prosody, user: &str, png: &[u8]) {
    let path = server.write_file(&format!("{user}.png"), png);
    let mut client = Client::login(server, user);
    client.ok(json!({"cmd": "set_vcard_photo", "file": path.to_str().expect("UTF-8 path"), "fn": user}));
}

#[test]
fn dormant_vcards_reach_pep_and_a_rerun_resumes_from_the_checkpoint() {
    let server = Prosody::start(Mode::PlainVcard, &["alice", "bob", "carol", "obs"]);
    let (alice_png, bob_png) = (avatar_png(31), avatar_png(32));
    dormant_with_photo(&server, "alice", &alice_png);
    dormant_with_photo(&server, "bob", &bob_png);
    let mut obs = Client::login(&server, "obs");
    let pep = |obs: &mut Client, who: &str| obs.ok(json!({"cmd": "get_pep", "jid": who}));
    assert_eq!(pep(&mut obs, "alice@localhost")["id"], Value::Null, "no PEP before the sweep");

    // `prosodyctl shell user list` style: JIDs one per line and a status line.
    let accounts = server.write_file("accounts.txt", b"alice@localhost\nbob@localhost\ncarol@localhost\nOK: 3 users\n");
    let (checkpoint, report_path) = (server.dir().join("live.checkpoint"), server.dir().join("live.json"));
    let arg = |p: &Path| p.to_str().expect("UTF-8 path").to_owned();
    let common = ["--accounts".to_owned(), arg(&accounts), "--checkpoint".into(), arg(&checkpoint)];

    // Dry run: the report says what would be written; nothing is, and no checkpoint is kept.
    let dry_report = server.dir().join("dry.json");
    let stdout =
        migrate_live(&server, &[&common[..], &["--dry-run".into(), "--report".into(), arg(&dry_report)]].concat());
    assert!(stdout.contains("dry run"), "{stdout}");
    let dry = report(&dry_report);
    assert_eq!(outcome(&dry, "alice@localhost")["outcome"], "converted", "{dry}");
    assert_eq!(outcome(&dry, "alice@localhost")["hash"], sha1_hex(&alice_png).as_str(), "{dry}");
    assert_eq!(dry["summary"], json!({"converted": 2, "skipped": 1, "refused": 0}), "{dry}");
    assert!(!checkpoint.exists(), "a dry run keeps no checkpoint");
    assert_eq!(pep(&mut obs, "alice@localhost")["id"], Value::Null, "a dry run publishes nothing");

    // An earlier, interrupted run had finished bob: this run leaves bob alone and sweeps the others.
    let bob_done =
        json!({"account": "bob@localhost", "outcome": "skipped", "why": "up-to-date", "reason": "earlier run"});
    std::fs::write(&checkpoint, format!("{bob_done}\n")).expect("seeding the checkpoint");
    let real = [&common[..], &["--report".into(), arg(&report_path)]].concat();
    let stdout = migrate_live(&server, &real);
    assert!(stdout.contains("1 already done"), "{stdout}");
    let done = report(&report_path);
    assert_eq!(outcome(&done, "alice@localhost")["outcome"], "converted", "{done}");
    assert_eq!(outcome(&done, "alice@localhost")["source"], "vcard", "{done}");
    assert_eq!(outcome(&done, "carol@localhost")["why"], "no-avatar", "{done}");
    assert_eq!(outcome(&done, "bob@localhost"), &bob_done, "the checkpoint's record is kept");
    assert_eq!(done["summary"], json!({"converted": 1, "skipped": 2, "refused": 0}), "{done}");

    let alice = pep(&mut obs, "alice@localhost");
    assert_eq!(alice["id"], sha1_hex(&alice_png).as_str(), "{alice}");
    assert_eq!(alice["data_sha1"], sha1_hex(&alice_png).as_str(), "{alice}");
    assert_eq!(pep(&mut obs, "bob@localhost")["id"], Value::Null, "bob was in the checkpoint: untouched");

    // Everything is in the checkpoint now: a third run has nothing to do and writes nothing.
    let stdout = migrate_live(&server, &real);
    assert!(stdout.contains("3 already done"), "{stdout}");
    assert_eq!(report(&report_path)["summary"], done["summary"]);
}
