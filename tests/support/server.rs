//! What [`Client`](super::client::Client) and [`Gateway`](super::gateway::Gateway) need from a private test
//! server, so that one test helper drives Prosody ([`super::prosody::Prosody`]) or ejabberd
//! ([`super::ejabberd::Ejabberd`]) alike.
//!
//! Both servers also have these as inherent methods (and `c2s_port` / `component_port` as fields), so a test that
//! knows its server never needs to import the trait; generic helpers take `&S where S: XmppServer + ?Sized`, which
//! accepts `&Prosody`, `&Ejabberd` and `&dyn XmppServer`.
//!
//! A test meant for either server starts an [`AnyServer`]: [`SERVER_ENV`] (`E2E_SERVER=prosody|ejabberd`, default
//! prosody) picks which, so the ordinary `cargo test` keeps running against Prosody and
//! `scripts/test-servers` runs the same tests against ejabberd by setting it. [`Mode`] means the same on both:
//! [`Mode::VcardLegacy`] is a server that converts vCard <-> XEP-0084 itself (Prosody `mod_vcard_legacy`, ejabberd
//! `mod_avatar` + `mod_vcard_xupdate`), [`Mode::PlainVcard`] one that stores vCards as they are (`mod_vcard`).

use std::fs;
use std::path::{Path, PathBuf};

use super::ejabberd::Ejabberd;
pub use super::prosody::Mode;
use super::prosody::{Prosody, flavor};

/// Which server [`AnyServer::start`] starts: `prosody` (the default, also when unset or empty) or `ejabberd`.
pub const SERVER_ENV: &str = "E2E_SERVER";

/// The server software behind an [`AnyServer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Prosody,
    Ejabberd,
}

/// The server [`SERVER_ENV`] names; panics on anything else, so that a typo never runs the suite against the
/// wrong server.
pub fn kind() -> Kind {
    let value = std::env::var(SERVER_ENV).unwrap_or_default();
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "prosody" => Kind::Prosody,
        "ejabberd" => Kind::Ejabberd,
        other => panic!("{SERVER_ENV}={other:?}: expected prosody or ejabberd"),
    }
}

/// A private Prosody or ejabberd, whichever [`SERVER_ENV`] names, for the tests that hold for both.
pub enum AnyServer {
    Prosody(Prosody),
    Ejabberd(Ejabberd),
}

impl AnyServer {
    /// Starts [`kind`]'s server with `mode`'s vCard modules, whose `users` are all mutual contacts (the same shape
    /// as [`Prosody::start`] and [`Ejabberd::start_mode`]).
    pub fn start(mode: Mode, users: &[&str]) -> AnyServer {
        match kind() {
            Kind::Prosody => AnyServer::Prosody(Prosody::start(mode, users)),
            Kind::Ejabberd => AnyServer::Ejabberd(Ejabberd::start_mode(mode, users)),
        }
    }

    /// Which server this is.
    pub fn kind(&self) -> Kind {
        match self {
            AnyServer::Prosody(_) => Kind::Prosody,
            AnyServer::Ejabberd(_) => Kind::Ejabberd,
        }
    }

    /// The ejabberd, when it is one (for assertions on what only ejabberd does).
    pub fn ejabberd(&self) -> Option<&Ejabberd> {
        match self {
            AnyServer::Ejabberd(e) => Some(e),
            AnyServer::Prosody(_) => None,
        }
    }

    /// The vCard modules it runs.
    pub fn mode(&self) -> Mode {
        match self {
            AnyServer::Prosody(p) => p.mode(),
            AnyServer::Ejabberd(e) => e.mode(),
        }
    }

    /// What it is, in the spelling of `E2E_SERVER_FLAVOR` and of `skipped on …` lines: `prosody0.12`, `prosody13`,
    /// `ejabberd23.01`, `ejabberd26.07`.
    pub fn flavor_name(&self) -> String {
        match self {
            AnyServer::Prosody(_) => flavor().name().to_owned(),
            AnyServer::Ejabberd(e) => format!("ejabberd{}", e.version()),
        }
    }

    /// Whether the gateway can convert beside this server: it needs the XEP-0356 IQ permissions (privileged PEP
    /// and vCard reads and writes) and the XEP-0355 delegations. The test Prosody grants both; ejabberd before 24.10
    /// has no IQ permission (23.01's mod_privilege knows presence, message and roster only; `tests/e2e_ejabberd.rs`
    /// covers what the gateway does there), and 24.10 to 25.02 have one but mangle privileged IQs and never
    /// activate a delegation ([`Version::has_broken_privilege`](super::ejabberd::Version::has_broken_privilege)).
    pub fn converts(&self) -> bool {
        match self {
            AnyServer::Prosody(_) => true,
            AnyServer::Ejabberd(e) => e.version().has_iq_privilege() && !e.version().has_broken_privilege(),
        }
    }

    /// True, after printing `skipped on <flavor>: …` (which `scripts/test-servers` reports as a skip), when the
    /// gateway cannot convert beside this server ([`AnyServer::converts`]); the test then returns:
    /// `if server.skip_unless_it_converts() { return; }`.
    pub fn skip_unless_it_converts(&self) -> bool {
        let Some(ejabberd) = self.ejabberd() else { return false };
        if ejabberd.skip_on_broken_privilege("the gateway can neither read nor write PEP and vCards for an owner") {
            return true;
        }
        let skip = !self.converts();
        if skip {
            eprintln!(
                "skipped on {}: no XEP-0356 IQ permission before ejabberd 24.10, so the gateway can neither read nor \
                 write PEP nor write vCards (tests/e2e_ejabberd.rs covers what it does there)",
                self.flavor_name()
            );
        }
        skip
    }

    /// The last `lines` lines of the server's log, for panic messages.
    pub fn log_tail(&self, lines: usize) -> String {
        match self {
            AnyServer::Prosody(p) => p.log_tail(lines),
            AnyServer::Ejabberd(e) => e.log_tail(lines),
        }
    }

    fn server(&self) -> &dyn XmppServer {
        match self {
            AnyServer::Prosody(p) => p,
            AnyServer::Ejabberd(e) => e,
        }
    }
}

/// A running private XMPP server with one virtual host and one XEP-0114 component.
pub trait XmppServer {
    /// Client-to-server port on 127.0.0.1.
    fn c2s_port(&self) -> u16;
    /// XEP-0114 component port on 127.0.0.1.
    fn component_port(&self) -> u16;
    /// The component JID the server expects on its component port (`avatars.localhost`).
    fn component_jid(&self) -> &str;
    /// The XEP-0114 handshake secret.
    fn secret(&self) -> &str;
    /// The server's temp dir, for files a test hands to clients and for the clients' and gateway's logs.
    fn dir(&self) -> &Path;

    /// The virtual host.
    fn domain(&self) -> &str {
        super::prosody::DOMAIN
    }

    /// `user@<domain>`.
    fn jid(&self, user: &str) -> String {
        format!("{user}@{}", self.domain())
    }

    /// The password the server gave `user` at start.
    fn password_of(&self, user: &str) -> String {
        super::prosody::password_of(user)
    }

    /// Writes `bytes` to `name` in [`XmppServer::dir`] and returns the absolute path.
    fn write_file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        write_into(self.dir(), name, bytes)
    }

    /// The `gateway.report_delay_secs` a gateway beside this server needs for its capability report to see the
    /// server's announcements. Prosody sends them with the handshake, so 0 (report at once); ejabberd sends them
    /// only after the component has answered its delegation disco#info queries, and a report due before the
    /// privilege announcement has nothing to report on.
    fn report_delay_secs(&self) -> u64 {
        0
    }
}

impl XmppServer for Prosody {
    fn c2s_port(&self) -> u16 {
        self.c2s_port
    }

    fn component_port(&self) -> u16 {
        self.component_port
    }

    fn component_jid(&self) -> &str {
        Prosody::component_jid(self)
    }

    fn secret(&self) -> &str {
        Prosody::secret(self)
    }

    fn dir(&self) -> &Path {
        Prosody::dir(self)
    }

    fn domain(&self) -> &str {
        Prosody::domain(self)
    }

    fn jid(&self, user: &str) -> String {
        Prosody::jid(self, user)
    }

    fn write_file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        Prosody::write_file(self, name, bytes)
    }
}

impl XmppServer for AnyServer {
    fn c2s_port(&self) -> u16 {
        self.server().c2s_port()
    }

    fn component_port(&self) -> u16 {
        self.server().component_port()
    }

    fn component_jid(&self) -> &str {
        self.server().component_jid()
    }

    fn secret(&self) -> &str {
        self.server().secret()
    }

    fn dir(&self) -> &Path {
        self.server().dir()
    }

    fn domain(&self) -> &str {
        self.server().domain()
    }

    fn jid(&self, user: &str) -> String {
        self.server().jid(user)
    }

    fn password_of(&self, user: &str) -> String {
        self.server().password_of(user)
    }

    fn write_file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        self.server().write_file(name, bytes)
    }

    fn report_delay_secs(&self) -> u64 {
        self.server().report_delay_secs()
    }
}

/// A reference to a server is a server (so `&&Prosody` and the like work where `&impl XmppServer` is asked for).
impl<T: XmppServer + ?Sized> XmppServer for &T {
    fn c2s_port(&self) -> u16 {
        (**self).c2s_port()
    }

    fn component_port(&self) -> u16 {
        (**self).component_port()
    }

    fn component_jid(&self) -> &str {
        (**self).component_jid()
    }

    fn secret(&self) -> &str {
        (**self).secret()
    }

    fn dir(&self) -> &Path {
        (**self).dir()
    }

    fn domain(&self) -> &str {
        (**self).domain()
    }

    fn jid(&self, user: &str) -> String {
        (**self).jid(user)
    }

    fn password_of(&self, user: &str) -> String {
        (**self).password_of(user)
    }

    fn write_file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        (**self).write_file(name, bytes)
    }

    fn report_delay_secs(&self) -> u64 {
        (**self).report_delay_secs()
    }
}

/// Writes `bytes` to `name` in `dir` and returns the absolute path (every server's `write_file`).
pub fn write_into(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}
