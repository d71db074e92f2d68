//! End-to-end support: a private, real Prosody per test and scripted real XMPP clients.
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
//! of `tests/clients/xmpp_client.py`; its commands are listed in [`client`].
#![allow(dead_code)] // each test crate uses its own subset

pub mod client;
pub mod gateway;
pub mod images;
pub mod migrator;
pub mod process;
pub mod prosody;
pub mod prosody_config;
