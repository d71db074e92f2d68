//! Two gateways on one PostgreSQL beside one Prosody: one is active, the other stands by; `kill -9` the active one
//! in the middle of owners' storage sets, and the standby takes over within 5 s with every set that got `result`.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::client::Client;
use support::eventually;
use support::gateway::{Gateway, Launch};
use support::images::{avatar_png, sha1_hex};
use support::ops;
use support::postgres::Postgres;
use support::prosody::{Flavor, Mode, Prosody, skip_on};

#[test]
fn the_standby_takes_over_after_kill_9_and_serves_every_acknowledged_storage_set() {
    if skip_on(Flavor::Prosody13, "the matrix roots hold no PostgreSQL; this runs under scripts/test (Prosody 0.12)") {
        return;
    }
    let server = Prosody::start(Mode::PlainVcard, &["alice", "bob", "obs"]);
    let store = format!("gateway.store={}", Postgres::shared().database());
    let overrides = [store.as_str()];
    let first = Launch { log: Some("gateway-1.log"), ..Launch::default() };
    let second = Launch { log: Some("gateway-2.log"), ..Launch::default() };
    let active = Gateway::start_until(&server, &overrides, &first, "ON  ");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let ops = format!("127.0.0.1:{port}");
    let listen = format!("ops.listen={ops}");
    let standby_overrides = [store.as_str(), listen.as_str()];
    let standby =
        Gateway::start_until(&server, &standby_overrides, &second, "standby: another instance holds the lease");
    // A load balancer or a watcher sees which instance is which.
    // (The endpoint is bound before the lease is asked for.)
    assert_eq!(ops::get(&ops, "/health"), (503, "standby: another instance holds the lease\n".to_owned()));

    // Owners set their XEP-0008 storage in turn; the active gateway is killed in the middle of the stream. A set
    // made while no gateway is linked is answered with an error by the server (not counted); those answered
    // `result`, before and after the failover, must all be served in the end.
    let mut clients: Vec<(&str, Client)> =
        ["alice", "bob"].into_iter().map(|user| (user, Client::login(&server, user))).collect();
    let mut acknowledged: Vec<(&str, String)> = Vec::new();
    let (mut active, mut took, mut after) = (Some(active), None, 0);
    for round in 0..8u8 {
        for (n, (user, client)) in clients.iter_mut().enumerate() {
            let png = avatar_png(40 + 10 * n as u8 + round);
            let path = server.write_file(&format!("{user}-{round}.png"), &png);
            let set = client.ok(json!({"cmd": "storage_set", "file": path, "mimetype": "image/png"}));
            if set["iq"] == "result" {
                after += usize::from(took.is_some());
                acknowledged.retain(|(u, _)| u != user);
                acknowledged.push((user, sha1_hex(&png)));
            }
        }
        if round == 3 {
            let killed = Instant::now();
            active.take().expect("the first gateway").kill();
            standby.wait_for_log("active: this instance holds the lease", Duration::from_secs(5));
            standby.wait_for_log("ON  ", Duration::from_secs(10));
            took = Some(killed.elapsed());
        }
    }
    let took = took.expect("the failover happened");
    assert_eq!(ops::get(&ops, "/health").0, 200);
    assert_eq!(ops::sample(&ops::get(&ops, "/metrics").1, "avatar_gateway_failovers_total"), 1.0);
    eprintln!("the standby was active and linked {took:?} after kill -9; acknowledged last: {acknowledged:?}");
    assert_eq!(acknowledged.len(), 2, "both owners got `result` at least once");
    assert!(after > 0, "the new active gateway acknowledged sets too");

    // Every owner's last acknowledged avatar is served by the new active gateway.
    let mut obs = Client::login(&server, "obs");
    for (user, hash) in &acknowledged {
        let jid = format!("{user}@localhost");
        eventually(
            &format!("{jid}'s stored avatar after the failover"),
            || obs.ok(json!({"cmd": "get_legacy", "jid": jid, "ns": "storage:client:avatar"})),
            |g| g["sha1"] == hash.as_str(),
        );
    }
    standby.assert_healthy();
}
