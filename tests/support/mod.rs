//! End-to-end support: a private, real Prosody or ejabberd per test and scripted real XMPP clients.
//!
//! ```ignore
//! let server = Prosody::start(Mode::VcardLegacy, &["alice", "obs"]);
//! let mut alice = Client::login(&server, "alice");
//! let png = images::avatar_png(1);
//! let file = server.write_file("a.png", &png);
//! alice.ok(json!({"cmd": "set_vcard_photo", "file": file}));
//! ```
//!
//! Every user listed at start is registered (password [`prosody::password_of`]) and is a mutual contact of every
//! other one, so PEP's default `presence` access model lets observers read. Clients speak the JSON-lines protocol
//! of `tests/clients/xmpp_client.py`; its commands are listed in [`client`]. [`Client`](client::Client) and
//! [`Gateway`](gateway::Gateway) take any [`server::XmppServer`]: [`prosody::Prosody`] or [`ejabberd::Ejabberd`]
//! (`Ejabberd::start(&["alice", "obs"])`, the same shape).
#![allow(dead_code)] // each test crate uses its own subset

pub mod client;
pub mod component;
pub mod ejabberd;
pub mod ejabberd_config;
pub mod gateway;
pub mod images;
pub mod migrator;
pub mod ops;
pub mod postgres;
pub mod process;
pub mod prosody;
pub mod prosody_config;
pub mod server;

use serde_json::Value;
use std::time::{Duration, Instant};

/// How long an e2e expectation may take to come true.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// Polls `probe` until `done` holds or [`PATIENCE`] runs out; returns the last value seen.
pub fn eventually(what: &str, mut probe: impl FnMut() -> Value, done: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let v = probe();
        if done(&v) {
            return v;
        }
        assert!(start.elapsed() < PATIENCE, "{what}: still {v} after {PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
