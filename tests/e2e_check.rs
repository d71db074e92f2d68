//! `avatar-gateway check` against real servers: a complete deployment passes, and each incomplete one is named with
//! what to change (wrong secret, wrong port, rights not granted).

mod support;

use support::ejabberd::Ejabberd;
use support::gateway;
use support::server::{AnyServer, Mode};

#[test]
fn a_complete_deployment_passes_with_every_direction_on_and_the_test_accounts_reads() {
    let server = AnyServer::start(Mode::PlainVcard, &["alice"]);
    if server.skip_unless_it_converts() {
        return;
    }
    let (code, out) = gateway::check(&server, &[], &["--account", "alice@localhost"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("localhost: ON  XEP-0008 clients -> XEP-0084"), "{out}");
    assert!(!out.contains("OFF XEP"), "{out}");
    assert!(out.contains("test account alice@localhost: reads work"), "{out}");
    assert!(out.trim_end().ends_with("complete") && !out.contains("incomplete"), "{out}");
    // The same as JSON, for scripts.
    let (code, json) = gateway::check(&server, &[], &["--account", "alice@localhost", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&json).expect("check --json prints JSON");
    assert_eq!((code, json["complete"].as_bool()), (0, Some(true)), "{json}");
    assert!(json["directions"].as_array().is_some_and(|d| d.len() == 6 && d.iter().all(|d| d["on"] == true)));
}

#[test]
fn a_wrong_secret_or_port_is_named() {
    let server = AnyServer::start(Mode::PlainVcard, &["alice"]);
    let (code, out) = gateway::check(&server, &["server.secret=not-the-secret"], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAILED") && out.contains("the secret or the component name is wrong"), "{out}");
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (code, out) = gateway::check(&server, &[&format!("server.address=127.0.0.1:{free}")], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("nothing listens on") && out.contains("component_ports"), "{out}");
}

#[test]
fn a_server_without_the_iq_privilege_gets_the_config_lines_to_add() {
    let server = Ejabberd::start(&["alice"]);
    if server.version().has_iq_privilege() {
        // Covered above on every server that grants it; here the point is a server that does not.
        return eprintln!("skipped on ejabberd {}: it grants the IQ privilege", server.reported_version());
    }
    let (code, out) = gateway::check(&server, &["gateway.report_delay_secs=2"], &[]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("localhost: OFF XEP-0008 clients -> XEP-0084"), "{out}");
    assert!(out.contains("add: iq get privilege on http://jabber.org/protocol/pubsub"), "{out}");
    assert!(out.contains("ejabberd 24.10 or later"), "{out}");
    assert!(out.trim_end().ends_with("incomplete"), "{out}");
}
