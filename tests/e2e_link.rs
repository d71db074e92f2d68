//! The gateway's link against a real Prosody 0.12: stray text from mod_privilege's error path must not cost the
//! connection, and a server restart must cost nothing but a reconnect.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use avatar_gateway::link::stray_text::StrayTextFilter;
use serde_json::json;
use support::client::Client;
use support::gateway::Gateway;
use support::images::{avatar_png, sha1_hex};
use support::prosody::{COMPONENT, DOMAIN, Mode, Prosody};
use support::{PATIENCE, eventually};

/// Logs `user` in as a XEP-0008 client serving avatar `seed` and announces its hash; returns the client (which must
/// stay connected to answer the gateway's fetch) and the hash.
fn legacy_owner(server: &Prosody, user: &str, seed: u8) -> (Client, String) {
    let png = avatar_png(seed);
    let hash = sha1_hex(&png);
    let file = server.write_file(&format!("{user}-{seed}.png"), &png);
    let mut client = Client::login(server, user);
    client.ok(json!({"cmd": "serve_iq_avatar", "file": file, "mimetype": "image/png"}));
    client.ok(json!({"cmd": "presence", "x_avatar": hash}));
    (client, hash)
}

/// Waits until an observer reads `user`'s PEP avatar with item id `hash` and data whose SHA-1 is `hash`.
fn assert_pep_reaches_observer(obs: &mut Client, user: &str, hash: &str) {
    let jid = format!("{user}@{DOMAIN}");
    let pep = eventually(
        &format!("{user}'s PEP avatar"),
        || obs.ok(json!({"cmd": "get_pep", "jid": jid})),
        |p| p["id"] == hash,
    );
    assert_eq!(pep["data_sha1"], hash, "{pep}");
}

/// Lines of the gateway log where a connection was established.
fn connections(gateway: &Gateway) -> usize {
    gateway.log().lines().filter(|l| l.contains(" connected ")).count()
}

fn wait_for_connections(gateway: &Gateway, n: usize) {
    let start = Instant::now();
    while connections(gateway) < n {
        assert!(start.elapsed() < PATIENCE, "the gateway did not connect {n} times:\n{}", gateway.log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// (a) Stray text between stanzas

/// The test config does not load mod_admin_shell; the revocation below needs it (a restart loads it).
fn enable_admin_shell(server: &mut Prosody) {
    let path = server.config_path().to_owned();
    let config = std::fs::read_to_string(&path).expect("reading the Prosody config");
    let global = "modules_enabled = { \"roster\";";
    assert!(config.contains(global), "tests/support/prosody_config.rs changed: no {global:?} in\n{config}");
    let config = config.replacen(global, "modules_enabled = { \"admin_shell\"; \"roster\";", 1);
    std::fs::write(&path, config).expect("writing the Prosody config");
    server.restart();
}

/// Runs one line of Lua inside the running server (`prosodyctl shell ">…"`) and returns what it printed.
fn shell(server: &Prosody, lua: &str) -> String {
    let out = Command::new("prosodyctl")
        .arg("--config")
        .arg(server.config_path())
        .arg("shell")
        .arg(format!(">{lua}"))
        .output()
        .expect("running prosodyctl shell");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "prosodyctl shell failed ({}): {text}", out.status);
    text
}

/// The component's live session on the server, in the shell's Lua.
fn component_session() -> String {
    format!("prosody.hosts[\"{COMPONENT}\"].modules.component.session")
}

/// A bare XEP-0114 session by hand, to see the exact bytes the server writes.
struct RawComponent {
    tcp: TcpStream,
    received: Vec<u8>,
}

impl RawComponent {
    fn connect(server: &Prosody) -> RawComponent {
        let tcp = TcpStream::connect(("127.0.0.1", server.component_port)).expect("connecting to the component port");
        tcp.set_read_timeout(Some(Duration::from_millis(100))).expect("setting a read timeout");
        let mut raw = RawComponent { tcp, received: Vec::new() };
        raw.send(&format!(
            "<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' \
             to='{COMPONENT}'>"
        ));
        let header = raw.read_until(|r| r.contains("<stream:stream") && r.contains("id='") && r.ends_with('>'));
        let id = header.split("id='").nth(1).and_then(|rest| rest.split('\'').next()).expect("a stream id");
        raw.send(&format!("<handshake>{}</handshake>", sha1_hex(format!("{id}{}", server.secret()).as_bytes())));
        raw.read_until(|r| r.contains("<handshake/>"));
        raw
    }

    fn send(&mut self, xml: &str) {
        self.tcp.write_all(xml.as_bytes()).expect("writing to the server");
    }

    /// Reads until the server has been quiet for 100 ms and `done` holds for everything received so far.
    fn read_until(&mut self, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            match self.tcp.read(&mut buf) {
                Ok(0) => panic!("the server closed the stream: {}", String::from_utf8_lossy(&self.received)),
                Ok(n) => self.received.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    let received = String::from_utf8_lossy(&self.received);
                    if done(&received) {
                        return received.into_owned();
                    }
                }
                Err(e) => panic!("reading from the server: {e}"),
            }
            let received = String::from_utf8_lossy(&self.received);
            assert!(start.elapsed() < PATIENCE, "the server never sent what was awaited; got: {received}");
        }
    }
}

#[test]
fn mod_privilege_writes_a_byte_count_after_its_refusal_and_the_filter_drops_exactly_that() {
    let server = Prosody::start(Mode::PlainVcard, &["alice"]);
    let mut raw = RawComponent::connect(&server);
    // jabber:iq:private is not among the granted IQ namespaces: mod_privilege.lua lines 602–603 refuse it with
    // session.send(session.send(error)), and the outer send writes the inner one's return value, a byte count.
    raw.send(&format!(
        "<iq type='get' id='stray1' from='{COMPONENT}' to='alice@{DOMAIN}'><privileged_iq xmlns='urn:xmpp:privilege:2'>\
         <iq xmlns='jabber:client' type='get' id='in1'><query xmlns='jabber:iq:private'/></iq></privileged_iq></iq>"
    ));
    let stream = raw.read_until(|r| r.split_once("id='stray1'").is_some_and(|(_, reply)| reply.contains("</iq>")));
    let at = stream.find("id='stray1'").expect("the reply");
    let start = stream[..at].rfind("<iq").expect("the reply's start tag");
    let end = start + stream[start..].find("</iq>").expect("the reply's end tag") + "</iq>".len();
    let error = &stream[start..end];
    let count: String = stream[end..].chars().take_while(char::is_ascii_digit).collect();
    assert!(error.contains("type='error'") && error.contains("<forbidden"), "{error}");
    assert_eq!(count, error.len().to_string(), "the stray text is the error's length in bytes: {stream}");

    let expected = format!("{}{}", &stream[..end], &stream[end + count.len()..]);
    for chunk in [stream.len(), 1, 7] {
        let mut filter = StrayTextFilter::new();
        let mut out = Vec::new();
        let mut excerpt = Vec::new();
        for piece in stream.as_bytes().chunks(chunk) {
            if let Some(dropped) = filter.feed(piece, &mut out) {
                excerpt.extend_from_slice(dropped.excerpt());
            }
        }
        filter.finish(&mut out);
        assert_eq!(String::from_utf8_lossy(&out), expected, "chunks of {chunk}");
        assert_eq!(excerpt, count.as_bytes(), "chunks of {chunk}");
    }
}

#[test]
fn stray_text_from_mod_privilege_costs_neither_the_link_nor_later_conversions() {
    let mut server = Prosody::start(Mode::PlainVcard, &["alice", "bob", "obs"]);
    enable_admin_shell(&mut server);
    // A right the server refuses is not asked for again for `refusal_retry_secs`: one second, so the restored
    // right is used again within the test.
    let gateway = Gateway::start_with(&server, &["gateway.refusal_retry_secs=1"]);
    // The gateway asks only for what was granted, so take a right back from its live session, as an operator
    // might: its next privileged IQ then meets mod_privilege.lua lines 547–548, which write the stray byte count.
    let session = component_session();
    let revoked = shell(
        &server,
        &format!(
            "local p = {session}.privileges[\"{DOMAIN}\"]; {session}.e2e_iq = p.iq; p.iq = nil; return \"revoked\""
        ),
    );
    assert!(revoked.contains("revoked"), "{revoked}");

    let (_alice, _) = legacy_owner(&server, "alice", 21);
    gateway.wait_for_log("dropped stray text", PATIENCE);
    let restored = shell(
        &server,
        &format!("local p = {session}.privileges[\"{DOMAIN}\"]; p.iq = {session}.e2e_iq; return p.iq and \"restored\""),
    );
    assert!(restored.contains("restored"), "{restored}");
    std::thread::sleep(Duration::from_secs(1)); // the refusal's retry period

    let mut obs = Client::login(&server, "obs");
    let (_bob, hash) = legacy_owner(&server, "bob", 22);
    assert_pep_reaches_observer(&mut obs, "bob", &hash);
    let log = gateway.log();
    assert!(!log.contains("reconnecting") && !log.contains("stream lost"), "the link survived:\n{log}");
    assert_eq!(connections(&gateway), 1, "one connection all along:\n{log}");
    // mod_privilege's own words for the refusal at lines 547–548: the path that writes the count.
    assert!(log.contains("you are not allowed to send privileged &lt;IQ&gt; stanzas</text>"), "{log}");
}

// ---------------------------------------------------------------------------------------------------------------
// (c) Server restart

#[test]
fn gateway_reconnects_after_a_server_restart_and_converts_again() {
    let mut server = Prosody::start(Mode::PlainVcard, &["alice", "obs"]);
    let gateway = Gateway::start(&server);
    let before = {
        let mut obs = Client::login(&server, "obs");
        let (_alice, hash) = legacy_owner(&server, "alice", 23);
        assert_pep_reaches_observer(&mut obs, "alice", &hash);
        hash
    };

    server.restart();
    wait_for_connections(&gateway, 2);
    // The grants are re-learnt from the new announcement: wait for the capability report of the new connection.
    let start = Instant::now();
    while !gateway.log().rsplit(" connected ").next().is_some_and(|since| since.contains("ON  ")) {
        assert!(start.elapsed() < PATIENCE, "no capability report after the reconnect:\n{}", gateway.log());
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut obs = Client::login(&server, "obs");
    assert_pep_reaches_observer(&mut obs, "alice", &before); // same data dir
    let (_alice, hash) = legacy_owner(&server, "alice", 24);
    assert_pep_reaches_observer(&mut obs, "alice", &hash);
    let log = gateway.log();
    assert!(log.contains("reconnecting"), "the lost stream was noticed:\n{log}");
    assert_eq!(connections(&gateway), 2, "one reconnect, not a loop:\n{log}");
}
