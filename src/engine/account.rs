//! What the gateway knows of one account, scheme by scheme, and the rule that turns a new observation into a
//! verdict.
//!
//! Each scheme reports a [`Seen`] state. Only authoritative reads count: the vCard itself (not a XEP-0153 hash
//! in presence, which is a hint to fetch it), the PEP metadata item (not the hash Prosody injects into presence),
//! and the XEP-0008 owner's own client (its presence hash, or its `storage:client:avatar` set). The account's
//! *current* avatar is the last one adopted, together with the renditions the gateway derived from it, so that a
//! scheme holding any of those hashes is recognised as already holding the current avatar (our own writes coming
//! back are echoes, not news).

use crate::avatar::AvatarHash;

/// The three avatar schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    /// XEP-0008: `jabber:x:avatar` + `jabber:iq:avatar` + `storage:client:avatar`.
    Legacy,
    /// XEP-0054 vCard PHOTO (+ XEP-0153 presence hash).
    Vcard,
    /// XEP-0084 PEP data + metadata.
    Pep,
}

impl Scheme {
    /// All schemes, in a fixed order.
    pub const ALL: [Scheme; 3] = [Scheme::Legacy, Scheme::Vcard, Scheme::Pep];

    fn index(self) -> usize {
        self as usize
    }

    /// A short name for logs and reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Legacy => "xep0008",
            Self::Vcard => "vcard",
            Self::Pep => "xep0084",
        }
    }
}

/// What one scheme was last seen to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Seen {
    /// Not read yet.
    #[default]
    Unknown,
    /// The owner deliberately has no avatar there.
    NoAvatar,
    /// An avatar with this hash.
    Avatar(AvatarHash),
}

/// The avatar the gateway currently bridges for an account, and what it derived from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Current {
    /// Hash of the bytes as the source scheme holds them.
    pub original: AvatarHash,
    /// Where it came from (never written back: rule 4).
    pub source: Scheme,
    /// The PNG rendition published to XEP-0084 and the vCard.
    pub png: AvatarHash,
    /// The ≤ 64 px rendition served to XEP-0008 readers.
    pub legacy: AvatarHash,
}

impl Current {
    /// Whether `hash` names this avatar in any of its renditions.
    pub fn names(&self, hash: AvatarHash) -> bool {
        hash == self.original || hash == self.png || hash == self.legacy
    }
}

/// What an observation means for the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing new: same as before, the current avatar, or our own write coming back.
    Unchanged,
    /// The owner set a new avatar in this scheme: fetch and validate it before adopting it.
    Candidate(AvatarHash),
    /// The scheme that held the current avatar now deliberately holds none.
    Removed,
}

/// Everything known about one account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Account {
    seen: [Seen; 3],
    current: Option<Current>,
    /// Whether the server converts vCard ↔ PEP itself (XEP-0398); `None` until known.
    pub server_converts: Option<bool>,
    /// The owner's own `storage:client:avatar` data (XEP-0008), which the gateway alone holds.
    storage: Option<AvatarHash>,
    /// The scheme whose deliberate "no avatar" is still to be propagated (until a new avatar is adopted).
    cleared: Option<Scheme>,
    /// Whether what the store keeps of it (`seen`, `current`, `storage`) changed since [`Account::take_changed`]:
    /// an unchanged presence then costs no write.
    changed: bool,
}

impl Account {
    /// What `scheme` was last seen to hold.
    pub fn seen(&self, scheme: Scheme) -> Seen {
        self.seen[scheme.index()]
    }

    /// The bridged avatar, if any.
    pub fn current(&self) -> Option<&Current> {
        self.current.as_ref()
    }

    /// Records what `scheme` holds now and judges it.
    ///
    /// A "no avatar" is a removal only from the scheme the current avatar came from or one that held it just
    /// before: a scheme that never had it saying "none" is merely behind (rule 7: "no avatar" is only ever a
    /// deliberate signal from the owner).
    pub fn observe(&mut self, scheme: Scheme, state: Seen) -> Verdict {
        let previous = std::mem::replace(&mut self.seen[scheme.index()], state);
        self.changed |= previous != state;
        match state {
            Seen::Unknown => Verdict::Unchanged,
            Seen::Avatar(hash) => {
                // A scheme the gateway reads and writes (vCard, PEP), read for the first time while an avatar is
                // current, is merely behind (an old avatar, say): it gets the current one written, it does not win.
                let behind = previous == Seen::Unknown && scheme != Scheme::Legacy && self.current.is_some();
                if self.current.is_some_and(|c| c.names(hash)) || previous == state || behind {
                    Verdict::Unchanged
                } else {
                    Verdict::Candidate(hash)
                }
            }
            // The scheme the avatar came from, or one that held it, now holding none is a deliberate removal
            // (a refused hash in between does not count: it never replaced the current avatar).
            Seen::NoAvatar => match (previous, self.current) {
                (held, Some(current))
                    if current.source == scheme || matches!(held, Seen::Avatar(h) if current.names(h)) =>
                {
                    self.current = None;
                    self.cleared = Some(scheme);
                    self.changed = true;
                    Verdict::Removed
                }
                _ => Verdict::Unchanged,
            },
        }
    }

    /// Makes a validated avatar the current one.
    pub fn adopt(&mut self, current: Current) {
        self.changed |= self.current != Some(current);
        self.current = Some(current);
        self.cleared = None;
    }

    /// The owner's own `storage:client:avatar` data (XEP-0008), which the gateway alone holds.
    pub fn storage(&self) -> Option<AvatarHash> {
        self.storage
    }

    /// Records the owner's `storage:client:avatar` data (`None`: cleared).
    pub fn set_storage(&mut self, storage: Option<AvatarHash>) {
        self.changed |= self.storage != storage;
        self.storage = storage;
    }

    /// Whether the stored part changed since the last call (and forgets that it did).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// The scheme that last deliberately removed the avatar, while no new one has been adopted.
    pub fn cleared(&self) -> Option<Scheme> {
        self.cleared
    }

    /// Forgets what `scheme` was seen to hold after its candidate was refused, so the same hash is judged
    /// afresh (and fetched again once its negative-cache entry expires).
    pub fn forget(&mut self, scheme: Scheme) {
        self.wrote(scheme, Seen::Unknown);
    }

    /// Records that the gateway itself wrote `state` into `scheme`, so that reading it back is no news.
    pub fn wrote(&mut self, scheme: Scheme, state: Seen) {
        let previous = std::mem::replace(&mut self.seen[scheme.index()], state);
        self.changed |= previous != state;
    }

    /// Restores state loaded from the store (unchanged: the store holds exactly this).
    pub fn restore(seen: [Seen; 3], current: Option<Current>, storage: Option<AvatarHash>) -> Self {
        Self { seen, current, server_converts: None, storage, cleared: None, changed: false }
    }

    /// The per-scheme states, for persisting.
    pub fn seen_all(&self) -> [Seen; 3] {
        self.seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(b: &[u8]) -> AvatarHash {
        AvatarHash::of(b)
    }

    fn current(b: &[u8], source: Scheme) -> Current {
        Current { original: h(b), source, png: h(&[b, b"png"].concat()), legacy: h(&[b, b"64"].concat()) }
    }

    #[test]
    fn first_avatar_is_a_candidate_and_repeats_are_not() {
        let mut a = Account::default();
        assert_eq!(a.observe(Scheme::Legacy, Seen::Avatar(h(b"a"))), Verdict::Candidate(h(b"a")));
        // Not adopted (say the fetch failed): the same hash again is not retried.
        assert_eq!(a.observe(Scheme::Legacy, Seen::Avatar(h(b"a"))), Verdict::Unchanged);
    }

    #[test]
    fn our_renditions_coming_back_are_echoes() {
        let mut a = Account::default();
        a.observe(Scheme::Legacy, Seen::Avatar(h(b"a")));
        a.adopt(current(b"a", Scheme::Legacy));
        let png = a.current().unwrap().png;
        assert_eq!(a.observe(Scheme::Pep, Seen::Avatar(png)), Verdict::Unchanged);
        assert_eq!(a.observe(Scheme::Vcard, Seen::Avatar(png)), Verdict::Unchanged);
    }

    #[test]
    fn removal_only_from_the_scheme_that_held_it() {
        let mut a = Account::default();
        a.observe(Scheme::Pep, Seen::Avatar(h(b"a")));
        a.adopt(current(b"a", Scheme::Pep));
        // The vCard never had it: its "no avatar" is just lag.
        assert_eq!(a.observe(Scheme::Vcard, Seen::NoAvatar), Verdict::Unchanged);
        assert!(a.current().is_some());
        assert_eq!(a.observe(Scheme::Pep, Seen::NoAvatar), Verdict::Removed);
        assert!(a.current().is_none());
    }

    #[test]
    fn a_new_avatar_replaces_the_current_one() {
        let mut a = Account::default();
        a.observe(Scheme::Pep, Seen::Avatar(h(b"a")));
        a.adopt(current(b"a", Scheme::Pep));
        // First read of the vCard: whatever it holds is lag behind the current avatar, not news.
        assert_eq!(a.observe(Scheme::Vcard, Seen::Avatar(h(b"old"))), Verdict::Unchanged);
        // A change after that is the owner's.
        assert_eq!(a.observe(Scheme::Vcard, Seen::Avatar(h(b"b"))), Verdict::Candidate(h(b"b")));
    }

    #[test]
    fn a_refused_candidate_is_judged_again_once_forgotten() {
        let mut a = Account::default();
        assert_eq!(a.observe(Scheme::Legacy, Seen::Avatar(h(b"a"))), Verdict::Candidate(h(b"a")));
        a.forget(Scheme::Legacy);
        assert_eq!(a.observe(Scheme::Legacy, Seen::Avatar(h(b"a"))), Verdict::Candidate(h(b"a")));
    }
}
