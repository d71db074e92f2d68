//! Namespaces, one constant per name, each with the XEP that defines it.

/// RFC 6120: client stanzas; the inner IQ of XEP-0356/0355 wrappers is in this namespace.
pub const CLIENT: &str = "jabber:client";
/// XEP-0114: Jabber Component Protocol (stanzas on the component stream).
pub const COMPONENT: &str = "jabber:component:accept";
/// RFC 6120: stanza error conditions.
pub const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// XEP-0008: IQ-Based Avatars, presence advertisement.
pub const X_AVATAR: &str = "jabber:x:avatar";
/// XEP-0008: IQ-Based Avatars, client-to-client fetch.
pub const IQ_AVATAR: &str = "jabber:iq:avatar";
/// XEP-0008: IQ-Based Avatars, server-side storage on the owner's bare JID.
pub const STORAGE_AVATAR: &str = "storage:client:avatar";

/// XEP-0054: vcard-temp.
pub const VCARD: &str = "vcard-temp";
/// XEP-0153: vCard-Based Avatars, presence advertisement.
pub const VCARD_UPDATE: &str = "vcard-temp:x:update";

/// XEP-0084: User Avatar, data node and payload.
pub const AVATAR_DATA: &str = "urn:xmpp:avatar:data";
/// XEP-0084: User Avatar, metadata node and payload.
pub const AVATAR_METADATA: &str = "urn:xmpp:avatar:metadata";
/// XEP-0084 0.9–0.12 (pre-1.0) data namespace; Pidgin still deletes these nodes.
pub const AVATAR_DATA_0_12: &str = "http://www.xmpp.org/extensions/xep-0084.html#ns-data";
/// XEP-0084 0.9–0.12 (pre-1.0) metadata namespace.
pub const AVATAR_METADATA_0_12: &str = "http://www.xmpp.org/extensions/xep-0084.html#ns-metadata";
/// XEP-0084 ≤0.8 data namespace (Psi 2006).
pub const AVATAR_DATA_0_8: &str = "http://jabber.org/protocol/avatar#data";
/// XEP-0084 ≤0.8 metadata namespace.
pub const AVATAR_METADATA_0_8: &str = "http://jabber.org/protocol/avatar#metadata";

/// XEP-0060: Publish-Subscribe.
pub const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
/// XEP-0060: pubsub event notifications.
pub const PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
/// XEP-0060: pubsub owner use cases (node configuration, delete, purge).
pub const PUBSUB_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
/// XEP-0060: pubsub error conditions (`precondition-not-met`).
pub const PUBSUB_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
/// XEP-0060: the FORM_TYPE of publish-options.
pub const PUBSUB_PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";
/// XEP-0060: the FORM_TYPE of node configuration.
pub const PUBSUB_NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";
/// XEP-0004: Data Forms.
pub const DATA_FORMS: &str = "jabber:x:data";

/// XEP-0030: Service Discovery, info.
pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
/// XEP-0092: Software Version.
pub const VERSION: &str = "jabber:iq:version";
/// XEP-0199: XMPP Ping.
pub const PING: &str = "urn:xmpp:ping";
/// XEP-0297: Stanza Forwarding.
pub const FORWARD: &str = "urn:xmpp:forward:0";
/// XEP-0356 0.2/0.3: Privileged Entity (ejabberd < 24.10).
pub const PRIVILEGE_1: &str = "urn:xmpp:privilege:1";
/// XEP-0356 0.4: Privileged Entity with the IQ permission (Prosody mod_privilege).
pub const PRIVILEGE_2: &str = "urn:xmpp:privilege:2";
/// XEP-0355 0.2–0.4: Namespace Delegation (ejabberd).
pub const DELEGATION_1: &str = "urn:xmpp:delegation:1";
/// XEP-0355 0.5: Namespace Delegation (Prosody mod_delegation).
pub const DELEGATION_2: &str = "urn:xmpp:delegation:2";
/// XEP-0398: the account feature a server advertises when it converts vCard and PEP avatars itself.
pub const PEP_VCARD_CONVERSION: &str = "urn:xmpp:pep-vcard-conversion:0";
/// This project's marker for a stanza the link refused to parse (over its depth or size limit): the link passes
/// the stanza's start tag on with one `<limit-exceeded reason='depth|size'/>` child in this namespace instead.
pub const STANZA_LIMIT: &str = "urn:avatar-gateway:stanza-limit";
/// This project's IQ from the gateway to a host's mod_avatar_gateway (contrib/prosody): the XEP-0008 rendition
/// hash to stamp on an account's presence, or none (ARCHITECTURE.md, "The presence stamp").
pub const LEGACY_HASH: &str = "urn:avatar-gateway:legacy-hash:0";
