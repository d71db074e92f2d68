//! The XMPP server's side of XEP-0356 privileged IQs, played in memory.
//!
//! It keeps each account's vCard and avatar PEP nodes, answers the gateway's privileged IQs exactly as Prosody's
//! mod_privilege does (specs.md §6: the inner reply wrapped in `<privilege><forwarded>` inside an outer *result*,
//! errors included), and can behave like Prosody's mod_vcard_legacy (XEP-0398: a metadata publish rewrites the
//! vCard PHOTO, a vCard set purges and republishes both avatar nodes) and notify the component of metadata
//! publications, so that scenarios can check that the gateway and a converting server do not ping-pong.

use std::collections::BTreeMap;

use avatar_gateway::avatar::AvatarHash;
use avatar_gateway::wire::{b64, ns, xml};
use xmpp_parsers::minidom::Element;

use super::{COMPONENT, parse};

/// One account's server-side data.
#[derive(Debug, Default, Clone)]
pub struct ServerAccount {
    /// The stored vCard (`None`: never set; a get answers `item-not-found`).
    pub vcard: Option<Element>,
    /// PEP nodes by name: items in publication order, `(item id, payload)`.
    pub nodes: BTreeMap<String, Vec<(String, Element)>>,
    /// Who else may read the avatar nodes (the `presence` access model: subscribed contacts' bare JIDs).
    pub subscribers: Vec<String>,
}

/// What the server did for the gateway, for assertions (one line per privileged IQ).
pub type Log = Vec<String>;

/// The fake server.
#[derive(Debug, Default)]
pub struct FakeServer {
    /// Behave like mod_vcard_legacy (XEP-0398 both ways).
    pub converts: bool,
    /// Send the component a headline notification for each metadata publication (as if it were subscribed).
    pub notify: bool,
    /// Wrap inner errors in an outer *error*, as ejabberd ≥ 24.10 and prosody-modules of 2026 do (Prosody 0.12's
    /// mod_privilege uses an outer result).
    pub error_envelope: bool,
    accounts: BTreeMap<String, ServerAccount>,
    /// Every privileged IQ served: `"<account> <get|set> <what>"`.
    pub log: Log,
    next_uuid: u32,
}

/// The outer result wrapping an inner reply, exactly as Prosody's mod_privilege sends it (specs.md §6).
pub fn privileged_reply(id: &str, account: &str, inner_type: &str, inner_body: &str) -> String {
    format!(
        "<iq xmlns='jabber:component:accept' type='result' id='{id}' from='{account}' to='{COMPONENT}'>\
         <privilege xmlns='urn:xmpp:privilege:2'><forwarded xmlns='urn:xmpp:forward:0'>\
         <iq xmlns='jabber:client' type='{inner_type}' id='{id}' to='{account}'>{inner_body}</iq>\
         </forwarded></privilege></iq>"
    )
}

/// A privileged result carrying `payload` (may be empty).
pub fn privileged_result(id: &str, account: &str, payload: &str) -> String {
    privileged_reply(id, account, "result", payload)
}

/// A privileged error: Prosody puts it *inside* an outer result.
pub fn privileged_error(id: &str, account: &str, kind: &str, condition: &str) -> String {
    let body = format!("<error type='{kind}'><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>");
    privileged_reply(id, account, "error", &body)
}

/// The items result for `node` holding `items` (`(id, payload xml)`).
pub fn items_result(node: &str, items: &[(String, String)]) -> String {
    let items: String = items.iter().map(|(id, payload)| format!("<item id='{id}'>{payload}</item>")).collect();
    format!("<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='{node}'>{items}</items></pubsub>")
}

impl FakeServer {
    /// A server that neither converts nor notifies.
    pub fn plain() -> Self {
        Self::default()
    }

    /// A mod_vcard_legacy-like server that notifies the component of metadata publications.
    pub fn converting() -> Self {
        Self { converts: true, notify: true, ..Self::default() }
    }

    /// The account's data (created empty).
    pub fn account(&mut self, account: &str) -> &mut ServerAccount {
        self.accounts.entry(account.to_owned()).or_default()
    }

    /// Sets the stored vCard from XML (as a client's earlier set would have), without conversion.
    pub fn set_vcard(&mut self, account: &str, vcard: &str) {
        self.account(account).vcard = Some(parse(vcard));
    }

    /// Stores an item as a client's earlier publish would have, without conversion or notification.
    pub fn put_item(&mut self, account: &str, node: &str, id: &str, payload: &str) {
        store_item(self.account(account), node, id.to_owned(), parse(payload));
    }

    /// The stored vCard, serialised.
    pub fn vcard(&self, account: &str) -> Option<String> {
        self.accounts.get(account).and_then(|a| a.vcard.as_ref()).map(xml::to_string)
    }

    /// The ids of a node's items.
    pub fn item_ids(&self, account: &str, node: &str) -> Vec<String> {
        let items = self.accounts.get(account).and_then(|a| a.nodes.get(node));
        items.map(|items| items.iter().map(|(id, _)| id.clone()).collect()).unwrap_or_default()
    }

    /// The log lines that are writes (`set`).
    pub fn writes(&self) -> Vec<&str> {
        self.log.iter().map(String::as_str).filter(|l| l.contains(" set ")).collect()
    }

    /// Whether `stanza` is a XEP-0356 privileged IQ from the component.
    pub fn is_privileged(stanza: &Element) -> bool {
        stanza.name() == "iq" && stanza.get_child("privileged_iq", ns::PRIVILEGE_2).is_some()
    }

    /// Serves one privileged IQ: the reply, then any notifications it caused.
    pub fn answer(&mut self, stanza: &Element) -> Vec<Element> {
        let id = stanza.attr("id").expect("privileged IQ without id").to_owned();
        let account = stanza.attr("to").expect("privileged IQ without to").to_owned();
        assert_eq!(stanza.attr("from"), Some(COMPONENT), "privileged IQ not from the component");
        let inner = stanza
            .get_child("privileged_iq", ns::PRIVILEGE_2)
            .and_then(|w| w.get_child("iq", ns::CLIENT))
            .expect("privileged_iq without a jabber:client iq");
        let kind = inner.attr("type").expect("inner iq without type").to_owned();
        assert_eq!(stanza.attr("type"), Some(kind.as_str()), "XEP-0356: inner and outer types differ");
        assert_eq!(inner.attr("from"), Some(account.as_str()), "XEP-0356 §4.5: the inner from is the managed account");
        let target = inner.attr("to").expect("XEP-0356 §4.5: the inner IQ needs a to (ejabberd routes by it)");
        let payload = inner.children().next().expect("inner iq without payload").clone();
        if target != account {
            // Asking as another account: the server applies the target's access model to the managed account.
            assert_eq!((kind.as_str(), payload.name()), ("get", "pubsub"), "only reads are made as a reader");
            self.log.push(format!("{account} get {target} pep as reader"));
            let target = target.to_owned();
            let reply = if self.account(&target).subscribers.contains(&account) {
                // What the reader sees does not matter to the gateway, only that it may see it.
                privileged_result(&id, &account, &xml::to_string(&payload))
            } else {
                privileged_error(&id, &account, "auth", "forbidden")
            };
            return vec![parse(&reply)];
        }
        let mut out = Vec::new();
        let mut reply = match (kind.as_str(), payload.name(), payload.ns().as_str()) {
            ("get", "pubsub", ns::PUBSUB) => self.items(&id, &account, &payload),
            ("set", "pubsub", ns::PUBSUB) => self.publish(&id, &account, &payload, &mut out),
            ("get", "vCard", ns::VCARD) => {
                self.log.push(format!("{account} get vcard"));
                match &self.account(&account).vcard {
                    Some(v) => privileged_result(&id, &account, &xml::to_string(v)),
                    None => privileged_error(&id, &account, "cancel", "item-not-found"),
                }
            }
            ("set", "vCard", ns::VCARD) => {
                self.log.push(format!("{account} set vcard"));
                self.account(&account).vcard = Some(payload.clone());
                if self.converts {
                    self.vcard_to_pep(&account, &payload, &mut out);
                }
                privileged_result(&id, &account, "")
            }
            other => panic!("the fake server does not serve {other:?}: {}", xml::to_string(stanza)),
        };
        if self.error_envelope && reply.contains("<iq xmlns='jabber:client' type='error'") {
            reply = reply.replacen("type='result'", "type='error'", 1);
        }
        out.insert(0, parse(&reply));
        out
    }

    fn items(&mut self, id: &str, account: &str, pubsub: &Element) -> String {
        let items = pubsub.get_child("items", ns::PUBSUB).expect("pubsub get without <items/>");
        let node = items.attr("node").expect("items without node").to_owned();
        let wanted: Vec<&str> = items.children().filter_map(|i| i.attr("id")).collect();
        self.log.push(format!("{account} get {node} {}", wanted.join(",")).trim_end().to_owned());
        let Some(stored) = self.account(account).nodes.get(&node) else {
            return privileged_error(id, account, "cancel", "item-not-found");
        };
        let found: Vec<(String, String)> = stored
            .iter()
            .filter(|(item_id, _)| wanted.is_empty() || wanted.contains(&item_id.as_str()))
            .map(|(item_id, payload)| (item_id.clone(), xml::to_string(payload)))
            .collect();
        privileged_result(id, account, &items_result(&node, &found))
    }

    fn publish(&mut self, id: &str, account: &str, pubsub: &Element, out: &mut Vec<Element>) -> String {
        let publish = pubsub.get_child("publish", ns::PUBSUB).expect("pubsub set without <publish/>");
        let node = publish.attr("node").expect("publish without node").to_owned();
        let item = publish.get_child("item", ns::PUBSUB).expect("publish without item");
        let item_id = match item.attr("id") {
            Some(i) => i.to_owned(),
            None => {
                // Prosody assigns a UUID to an item published without id (specs.md §4).
                self.next_uuid += 1;
                format!("uuid-{}", self.next_uuid)
            }
        };
        let payload = item.children().next().expect("item without payload").clone();
        self.log.push(format!("{account} set {node} {item_id}"));
        self.store_and_convert(account, &node, item_id.clone(), payload, out);
        let body = format!(
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='{node}'><item id='{item_id}'/></publish></pubsub>"
        );
        privileged_result(id, account, &body)
    }

    fn store_and_convert(&mut self, account: &str, node: &str, id: String, payload: Element, out: &mut Vec<Element>) {
        store_item(self.account(account), node, id.clone(), payload.clone());
        if node != ns::AVATAR_METADATA {
            return;
        }
        if self.notify {
            out.push(metadata_event(account, &id, &payload));
        }
        if self.converts {
            self.pep_to_vcard(account, &payload);
        }
    }

    /// mod_vcard_legacy, PEP → vCard: the first inline info's data item becomes PHOTO; an empty metadata removes it.
    fn pep_to_vcard(&mut self, account: &str, metadata: &Element) {
        let info = metadata.children().find(|i| i.name() == "info" && i.attr("url").is_none());
        let photo = info.and_then(|info| {
            let id = info.attr("id")?;
            let a = self.account(account);
            let data = a.nodes.get(ns::AVATAR_DATA)?.iter().find(|(i, _)| i == id)?.1.text();
            let mime = info.attr("type").unwrap_or("image/png");
            Some(format!("<PHOTO><TYPE>{mime}</TYPE><BINVAL>{data}</BINVAL></PHOTO>"))
        });
        let a = self.account(account);
        let kept: String =
            a.vcard.iter().flat_map(|v| v.children()).filter(|c| c.name() != "PHOTO").map(xml::to_string).collect();
        a.vcard = Some(parse(&format!("<vCard xmlns='vcard-temp'>{kept}{}</vCard>", photo.unwrap_or_default())));
    }

    /// mod_vcard_legacy, vCard → PEP: purge both nodes; with a BINVAL, publish data (verbatim) then metadata
    /// `<info bytes id type>` without width/height; without one, nothing is published and nobody is notified.
    fn vcard_to_pep(&mut self, account: &str, vcard: &Element, out: &mut Vec<Element>) {
        let a = self.account(account);
        a.nodes.remove(ns::AVATAR_DATA);
        a.nodes.remove(ns::AVATAR_METADATA);
        let Some(photo) = vcard.get_child("PHOTO", ns::VCARD) else { return };
        let Some(binval) = photo.get_child("BINVAL", ns::VCARD).map(Element::text) else { return };
        let bytes = b64::decode(&binval).expect("the fake server got undecodable BINVAL");
        let hash = AvatarHash::of(&bytes);
        let mime = photo.get_child("TYPE", ns::VCARD).map(Element::text).unwrap_or_default();
        let data = parse(&format!("<data xmlns='urn:xmpp:avatar:data'>{binval}</data>"));
        store_item(self.account(account), ns::AVATAR_DATA, hash.to_string(), data);
        let metadata = parse(&format!(
            "<metadata xmlns='urn:xmpp:avatar:metadata'><info bytes='{}' id='{hash}' type='{mime}'/></metadata>",
            bytes.len()
        ));
        store_item(self.account(account), ns::AVATAR_METADATA, hash.to_string(), metadata.clone());
        if self.notify {
            out.push(metadata_event(account, &hash.to_string(), &metadata));
        }
    }
}

/// Replaces an item with the same id, else appends; the metadata node keeps only its last item (max_items 1).
fn store_item(account: &mut ServerAccount, node: &str, id: String, payload: Element) {
    let items = account.nodes.entry(node.to_owned()).or_default();
    items.retain(|(i, _)| *i != id);
    if node == ns::AVATAR_METADATA {
        items.clear();
    }
    items.push((id, payload));
}

/// The headline notification Prosody sends for a metadata publication (with `publisher`, specs.md §4).
pub fn metadata_event(account: &str, id: &str, payload: &Element) -> Element {
    parse(&format!(
        "<message xmlns='jabber:component:accept' type='headline' from='{account}' to='{COMPONENT}'>\
         <event xmlns='http://jabber.org/protocol/pubsub#event'><items node='urn:xmpp:avatar:metadata'>\
         <item id='{id}' publisher='{account}'>{}</item></items></event></message>",
        xml::to_string(payload)
    ))
}
