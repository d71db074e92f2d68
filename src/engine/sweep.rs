//! Sweeping an account that may never log in (`migrate live`): read every scheme now, convert as usual, and say
//! how it ended once nothing about the account is outstanding.
//!
//! A server that converts vCard ↔ PEP by itself (XEP-0398) does so when a vCard is *set* or the owner logs in, so
//! an old vCard of a dormant account has no PEP avatar however long one waits: for a swept account the gateway
//! publishes PEP from the vCard even on a converting server.

use std::time::Instant;

use xmpp_parsers::jid::BareJid;

use super::account::Scheme;
use super::{Engine, Event};
use crate::avatar::AvatarHash;

/// How a swept account ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SweepOutcome {
    /// The gateway wrote the account's avatar (or its removal) into `wrote`.
    Converted {
        /// Where the avatar came from.
        source: Scheme,
        /// The hash now in the written schemes (`None`: "no avatar" was propagated).
        hash: Option<AvatarHash>,
        /// The schemes written.
        wrote: Vec<Scheme>,
    },
    /// Nothing needed writing.
    Skipped {
        /// `true`: every scheme already holds the avatar; `false`: the account has no avatar anywhere.
        has_avatar: bool,
    },
    /// Something was refused or failed, and nothing was written.
    Refused {
        /// Each refusal, in order (the scheme and why).
        reasons: Vec<String>,
    },
}

/// What happened to one swept account so far.
#[derive(Debug, Default)]
pub(super) struct SweepLog {
    wrote: Vec<(Scheme, Option<AvatarHash>)>,
    refused: Vec<String>,
}

impl Engine {
    /// Reads `account`'s vCard and PEP now (no presence needed) and converts whatever is missing; an
    /// [`Event::Swept`] tells how it ended. The account must not be swept twice at once.
    pub fn sweep(&mut self, now: Instant, account: &BareJid) {
        self.sweeps.insert(account.clone(), SweepLog::default());
        self.ensure_converts_known(now, account);
        self.poll_pep(now, account);
        self.read_vcard(now, account, super::plan::VcardFallback::None);
        self.after_input(now);
    }

    /// Whether `account` is being swept and the vCard → PEP direction must be written even on a converting server.
    pub(super) fn sweeping(&self, account: &BareJid) -> bool {
        self.sweeps.contains_key(account)
    }

    pub(super) fn sweep_wrote(&mut self, account: &BareJid, scheme: Scheme, hash: Option<AvatarHash>) {
        if let Some(log) = self.sweeps.get_mut(account) {
            log.wrote.push((scheme, hash));
        }
    }

    /// Notes why a swept account could not be converted (a refusal, or a right the server did not grant).
    pub(super) fn sweep_refused(&mut self, account: &BareJid, why: impl FnOnce() -> String) {
        if let Some(log) = self.sweeps.get_mut(account) {
            log.refused.push(why());
        }
    }

    /// Ends the sweeps of accounts with nothing outstanding (their state stays: the engine keeps every account).
    pub(super) fn settle_sweeps(&mut self) {
        let mut settled: Vec<BareJid> = self.sweeps.keys().filter(|a| !self.busy(a)).cloned().collect();
        // Outcomes in a stable order, whatever the map's.
        settled.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        for account in settled {
            let Some(log) = self.sweeps.remove(&account) else { continue };
            let current = self.accounts.get(&account).and_then(|a| a.current().copied());
            let outcome = match (log.wrote.last(), log.refused.is_empty()) {
                (Some(&(_, hash)), _) => {
                    let source = current.map_or_else(|| self.cleared_source(&account), |c| c.source);
                    let mut wrote: Vec<Scheme> = log.wrote.iter().map(|(s, _)| *s).collect();
                    wrote.dedup();
                    SweepOutcome::Converted { source, hash, wrote }
                }
                (None, false) => SweepOutcome::Refused { reasons: log.refused },
                (None, true) => SweepOutcome::Skipped { has_avatar: current.is_some() },
            };
            self.events.push_back(Event::Swept { account: account.to_string(), outcome });
        }
    }

    fn cleared_source(&self, account: &BareJid) -> Scheme {
        self.accounts.get(account).and_then(|a| a.cleared()).unwrap_or(Scheme::Vcard)
    }

    /// Whether anything about `account` is still outstanding: a request, or a fetch it waits on.
    fn busy(&self, account: &BareJid) -> bool {
        self.is_pending(account, |_| true)
            || self.deferred_fetches.contains_key(account)
            || self.transcodes.busy(account)
            || self.fetch_waiters.values().flatten().any(|w| &w.account == account)
    }

    /// Whether an avatar from `source` must reach PEP although the server converts (a swept vCard: see the module).
    pub(super) fn sweep_overrides(&self, account: &BareJid, source: Scheme) -> bool {
        source == Scheme::Vcard && self.sweeping(account)
    }
}
