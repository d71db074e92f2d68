//! The main job, on one machine: a private Prosody (plain mod_vcard, so nothing converts but the gateway), the
//! gateway beside it, a XEP-0008 client ("oldtimer", 2003-style: hash in presence, image served on request) and a
//! XEP-0084 client ("modern"), each seeing the other's avatar. Run with `scripts/demo`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::client::Client;
use support::gateway::Gateway;
use support::images::sha1_hex;
use support::prosody::{Mode, Prosody};

fn main() {
    let server = Prosody::start(Mode::PlainVcard, &["oldtimer", "modern"]);
    println!(
        "Prosody running privately: c2s 127.0.0.1:{}, component 127.0.0.1:{}",
        server.c2s_port, server.component_port
    );
    let gateway = Gateway::start(&server);
    println!("avatar-gateway connected as {}\n", server.component_jid());

    let images = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/images");
    let old_png = std::fs::read(images.join("pixel-1x1.png")).expect("fixture image");
    let modern_jpeg = std::fs::read(images.join("photo-300x200.jpg")).expect("fixture image");
    let old_file = server.write_file("oldtimer.png", &old_png);
    let modern_file = server.write_file("modern.jpg", &modern_jpeg);

    let mut oldtimer = Client::login(&server, "oldtimer");
    let mut modern = Client::login(&server, "modern");

    println!("oldtimer (XEP-0008) advertises {} in presence and serves it over jabber:iq:avatar", sha1_hex(&old_png));
    oldtimer.ok(json!({"cmd": "serve_iq_avatar", "file": old_file, "mimetype": "image/png"}));
    oldtimer.ok(json!({"cmd": "presence", "x_avatar": sha1_hex(&old_png)}));
    println!("modern (XEP-0084) publishes a 300x200 JPEG photo, {}", sha1_hex(&modern_jpeg));
    modern.ok(json!({"cmd": "publish_pep", "file": modern_file, "mimetype": "image/jpeg"}));
    modern.ok(json!({"cmd": "presence"}));

    let pep =
        wait(|| modern.ok(json!({"cmd": "get_pep", "jid": "oldtimer@localhost"})), |p| p["data_sha1"].is_string());
    println!(
        "\nmodern reads oldtimer over XEP-0084: item {} -> data SHA-1 {} ({})",
        pep["id"],
        pep["data_sha1"],
        check(pep["id"] == pep["data_sha1"])
    );
    let vcard =
        wait(|| modern.ok(json!({"cmd": "get_vcard", "jid": "oldtimer@localhost"})), |v| v["photo_sha1"].is_string());
    println!("modern reads oldtimer's vCard: PHOTO SHA-1 {}", vcard["photo_sha1"]);
    let legacy = oldtimer.ok(json!({"cmd": "get_legacy", "jid": "modern@localhost", "ns": "jabber:iq:avatar"}));
    println!(
        "oldtimer reads modern over XEP-0008: {} {}x{} px, {} bytes, SHA-1 {} ({})",
        legacy["mimetype"],
        legacy["width"],
        legacy["height"],
        legacy["bytes"],
        legacy["sha1"],
        check(legacy["bytes"].as_u64().is_some_and(|b| b < 8192))
    );
    gateway.assert_healthy();
    println!("\nEvery hash above is the SHA-1 of the bytes that client received. Stopping Prosody and the gateway.");
}

fn wait(mut probe: impl FnMut() -> Value, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let v = probe();
        if done(&v) || start.elapsed() > Duration::from_secs(20) {
            return v;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn check(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISMATCH" }
}
