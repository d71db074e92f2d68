//! The first moments of a connection: what the gateway sends the server waits for the server's announcement.
//!
//! ejabberd 26.07 records a component's privileges in a step of its own after the handshake, and drops what the
//! component sends before that (`IQ not forwarded: Component seems disconnected`): the answers to mod_delegation's
//! disco#info queries are lost, and the delegations stay off until the next connection (seen on 2 of ~45
//! connections). So the stanzas the gateway owes the server at the start — those answers, its XEP-0092 query —
//! are held until that host's privilege announcement arrives, or for at most [`HOLD_AT_MOST`] when none comes (a
//! server that grants nothing announces nothing). Prosody announces first, so nothing waits there.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use xmpp_parsers::minidom::Element;

/// How long stanzas wait for an announcement that may never come.
pub(super) const HOLD_AT_MOST: Duration = Duration::from_secs(2);

/// What waits for which host's announcement on this connection.
#[derive(Debug, Default)]
pub(super) struct Opening {
    announced: HashSet<String>,
    held: Vec<(String, Element)>,
    /// `None`: nothing is held any more (the period is over, or there is no connection).
    until: Option<Instant>,
}

impl Opening {
    /// A connection opened at `now`.
    pub(super) fn start(now: Instant) -> Self {
        Self { until: Some(now + HOLD_AT_MOST), ..Self::default() }
    }

    /// Sends `stanza` for `host` now, or once the host has announced (or the period is over).
    pub(super) fn send(&mut self, host: &str, stanza: Element, outbox: &mut impl Extend<Element>) {
        if self.until.is_some() && !self.announced.contains(host) {
            self.held.push((host.to_owned(), stanza));
        } else {
            outbox.extend([stanza]);
        }
    }

    /// `host` announced its privileges: what waited for it goes.
    pub(super) fn announced(&mut self, host: &str, outbox: &mut impl Extend<Element>) {
        self.announced.insert(host.to_owned());
        let (go, wait) = std::mem::take(&mut self.held).into_iter().partition(|(h, _)| h == host);
        self.held = wait;
        outbox.extend(go.into_iter().map(|(_, stanza)| stanza));
    }

    /// Time passed: once the period is over, everything held goes.
    pub(super) fn expire(&mut self, now: Instant, outbox: &mut impl Extend<Element>) {
        if self.until.is_some_and(|until| until <= now) {
            self.until = None;
            outbox.extend(std::mem::take(&mut self.held).into_iter().map(|(_, stanza)| stanza));
        }
    }

    /// When [`Opening::expire`] must be called, while something is held.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.until.filter(|_| !self.held.is_empty())
    }
}
