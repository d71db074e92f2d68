//! What the server granted this component, and which conversion directions that turns on.
//!
//! A missing right never silently disables a direction: [`Grants::report`] lists every direction with the exact
//! rights it lacks and the configuration line that grants them, and the shell logs it at start-up.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Instant;

use crate::wire::component::{DelegationVersion, PresenceAccess, Privileges};
use crate::wire::ns;
use crate::wire::stanza::IqType;

/// Everything the server announced since the stream opened.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// XEP-0356 announcements, by the host that sent them.
    pub privileges: BTreeMap<String, Privileges>,
    /// XEP-0355 namespaces delegated to us.
    pub delegated: BTreeSet<String>,
    /// The delegation generation the server speaks, once known.
    pub delegation_version: Option<DelegationVersion>,
    /// Privileged IQs the server refused although announced (host, namespace, type), and until when they are not
    /// asked again.
    refused: BTreeMap<(String, &'static str, IqType), Instant>,
    /// Missing rights already told about (host, namespace, type).
    told: BTreeSet<(String, &'static str, IqType)>,
}

/// One right a direction needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Right {
    /// XEP-0356 presence (managed_entity or roster).
    Presence,
    /// XEP-0356 IQ permission for a namespace and type.
    Iq(&'static str, IqType),
    /// XEP-0355 delegation of a namespace.
    Delegation(&'static str),
}

impl Right {
    /// The configuration that grants it, for Prosody (mod_privilege / mod_delegation) and ejabberd.
    pub fn how_to_grant(self) -> String {
        match self {
            Right::Presence => {
                "Prosody: privileged_entities = { [\"<component>\"] = { presence = \"managed_entity\" } }; ejabberd: mod_privilege: presence: managed_entity: all".into()
            }
            Right::Iq(namespace, kind) => format!(
                "Prosody: privileged_entities = {{ [\"<component>\"] = {{ iq = {{ [\"{namespace}\"] = \"both\" }} }} }} (needs {}); ejabberd 24.10 or later: mod_privilege: iq: \"{namespace}\": {{both: <access rule>}}",
                kind.as_str()
            ),
            Right::Delegation(namespace) => format!(
                "Prosody: delegations = {{ [\"{namespace}\"] = {{ jid = \"<component>\" }} }}; ejabberd: mod_delegation: namespaces: \"{namespace}\": {{access: <rule allowing the component>}} (the default access is none)"
            ),
        }
    }
}

impl fmt::Display for Right {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Right::Presence => f.write_str("presence privilege"),
            Right::Iq(namespace, kind) => write!(f, "iq {} privilege on {namespace}", kind.as_str()),
            Right::Delegation(namespace) => write!(f, "delegation of {namespace}"),
        }
    }
}

/// A conversion direction and the rights it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// XEP-0008 client (presence hash + jabber:iq:avatar) → XEP-0084.
    LegacyToPep,
    /// XEP-0008 client → vCard PHOTO.
    LegacyToVcard,
    /// The owner's `storage:client:avatar` set, stored and converted.
    LegacyStorage,
    /// vCard PHOTO → XEP-0084.
    VcardToPep,
    /// XEP-0084 → vCard PHOTO.
    PepToVcard,
    /// XEP-0008 readers (`storage:client:avatar` / `jabber:iq:avatar` on bare JIDs) served from any scheme.
    LegacyReaders,
}

impl Direction {
    /// Every direction, in report order.
    pub const ALL: [Direction; 6] = [
        Direction::LegacyToPep,
        Direction::LegacyToVcard,
        Direction::LegacyStorage,
        Direction::VcardToPep,
        Direction::PepToVcard,
        Direction::LegacyReaders,
    ];

    /// What it does, for the report.
    pub fn describe(self) -> &'static str {
        match self {
            Direction::LegacyToPep => "XEP-0008 clients -> XEP-0084",
            Direction::LegacyToVcard => "XEP-0008 clients -> vCard",
            Direction::LegacyStorage => "XEP-0008 storage:client:avatar (owner sets)",
            Direction::VcardToPep => "vCard -> XEP-0084",
            Direction::PepToVcard => "XEP-0084 -> vCard",
            Direction::LegacyReaders => "XEP-0084/vCard -> XEP-0008 readers",
        }
    }

    /// The rights it needs.
    pub fn needs(self) -> &'static [Right] {
        use IqType::{Get, Set};
        const PEP_GET: Right = Right::Iq(ns::PUBSUB, Get);
        const PEP_SET: Right = Right::Iq(ns::PUBSUB, Set);
        const VCARD_GET: Right = Right::Iq(ns::VCARD, Get);
        const VCARD_SET: Right = Right::Iq(ns::VCARD, Set);
        match self {
            Direction::LegacyToPep => &[Right::Presence, PEP_GET, PEP_SET],
            Direction::LegacyToVcard => &[Right::Presence, VCARD_GET, VCARD_SET],
            // Kept and served with the delegation alone; its way on to PEP and the vCard is the two lines above.
            Direction::LegacyStorage => &[Right::Delegation(ns::STORAGE_AVATAR)],
            Direction::VcardToPep => &[Right::Presence, VCARD_GET, PEP_GET, PEP_SET],
            Direction::PepToVcard => &[Right::Presence, PEP_GET, VCARD_GET, VCARD_SET],
            // vCards are public: without the vCard privilege they are read plainly (ejabberd < 24.10).
            Direction::LegacyReaders => &[Right::Delegation(ns::STORAGE_AVATAR), Right::Delegation(ns::IQ_AVATAR)],
        }
    }

    /// Rights without which the direction still works, but for less, and what is then left out.
    pub fn improved_by(self) -> (&'static [Right], &'static str) {
        match self {
            Direction::LegacyReaders => {
                (&[Right::Iq(ns::PUBSUB, IqType::Get)], "avatars published only with XEP-0084 are not served")
            }
            _ => (&[], ""),
        }
    }
}

/// One line of the capability report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectionStatus {
    /// The direction.
    pub direction: Direction,
    /// The rights it lacks (empty: on).
    pub missing: Vec<Right>,
    /// Rights it works without, for less ([`Direction::improved_by`]).
    pub limited: Vec<Right>,
}

impl Grants {
    /// Whether `right` is granted for accounts of `host`.
    pub fn has(&self, host: &str, right: Right) -> bool {
        let privileges = self.privileges.get(host);
        match right {
            Right::Presence => privileges.is_some_and(|p| p.presence != PresenceAccess::None),
            Right::Iq(namespace, kind) => privileges.is_some_and(|p| p.allows_iq(namespace, kind)),
            Right::Delegation(namespace) => self.delegated.contains(namespace),
        }
    }

    /// Whether the privileged IQ `kind` on `namespace` may be sent for an account of `host`.
    pub fn allows_iq(&self, host: &str, namespace: &'static str, kind: IqType) -> bool {
        self.has(host, Right::Iq(namespace, kind))
    }

    /// Whether that privileged IQ may be sent at `now`: granted, and not refused by the server lately.
    pub fn allows_iq_at(&self, host: &str, namespace: &'static str, kind: IqType, now: Instant) -> bool {
        let refused = self.refused.get(&(host.to_owned(), namespace, kind)).is_some_and(|&until| now < until);
        self.allows_iq(host, namespace, kind) && !refused
    }

    /// The server refused a privileged IQ it had announced: treat that right as not granted until `until` (an
    /// admin who fixes the server's config sees it work again then, without restarting the gateway).
    pub fn refuse(&mut self, host: &str, namespace: &'static str, kind: IqType, until: Instant) {
        self.refused.insert((host.to_owned(), namespace, kind), until);
    }

    /// Whether this is the first time a missing right is met (so it is told once, not on every presence).
    pub fn first_miss(&mut self, host: &str, namespace: &'static str, kind: IqType) -> bool {
        self.told.insert((host.to_owned(), namespace, kind))
    }

    /// Which directions are on for accounts of `host`, and what each one lacks.
    pub fn report(&self, host: &str) -> Vec<DirectionStatus> {
        Direction::ALL
            .iter()
            .map(|&direction| {
                let lacking = |rights: &[Right]| rights.iter().copied().filter(|&r| !self.has(host, r)).collect();
                DirectionStatus {
                    direction,
                    missing: lacking(direction.needs()),
                    limited: lacking(direction.improved_by().0),
                }
            })
            .collect()
    }

    /// The hosts that sent a privilege announcement.
    pub fn hosts(&self) -> impl Iterator<Item = &str> {
        self.privileges.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::component::{Access, PrivilegeVersion};

    #[test]
    fn ejabberd_23_gets_readers_only_with_clear_gaps() {
        let mut g = Grants::default();
        g.privileges.insert(
            "example.org".into(),
            Privileges {
                version: PrivilegeVersion::V1,
                roster: Access::None,
                message_outgoing: true,
                presence: PresenceAccess::ManagedEntity,
                iq: BTreeMap::new(),
            },
        );
        g.delegated.extend([ns::STORAGE_AVATAR.to_owned(), ns::IQ_AVATAR.to_owned()]);
        let report = g.report("example.org");
        let on: Vec<Direction> = report.iter().filter(|s| s.missing.is_empty()).map(|s| s.direction).collect();
        assert_eq!(on, vec![Direction::LegacyStorage, Direction::LegacyReaders], "what delegation alone allows");
        let readers = report.iter().find(|s| s.direction == Direction::LegacyReaders).unwrap();
        assert_eq!(readers.limited, vec![Right::Iq(ns::PUBSUB, IqType::Get)], "from vCards only");
        assert!(readers.limited[0].how_to_grant().contains("24.10"));
    }
}
