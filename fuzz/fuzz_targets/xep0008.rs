//! XEP-0008: `XAvatar::from_presence` and `Query::parse` (jabber:iq:avatar, storage:client:avatar) on arbitrary
//! XML; a parsed presence state must survive the strict emitter.
#![no_main]

use avatar_gateway::wire::xep0008::{Query, XAvatar};
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let Some(root) = common::element(data) else { return };
    for el in common::all(&root) {
        if let Ok(x) = XAvatar::from_presence(el) {
            let mut presence = xmpp_parsers::minidom::Element::builder("presence", "jabber:client").build();
            if let Some(child) = x.to_element() {
                presence.append_child(child);
            }
            assert_eq!(XAvatar::from_presence(&presence), Ok(x));
        }
        if let Ok(query) = Query::parse(el) {
            // "Never empty": an empty <data/> is no data.
            assert!(query.data.is_none_or(|d| !d.bytes.is_empty()));
        }
    }
});
