//! XEP-0084: `<metadata/>`, `<data/>`, pubsub `<event/>`, items result and publish request, on arbitrary XML.
#![no_main]

use avatar_gateway::wire::xep0084::{self, AvatarNode, Metadata, Payload};
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let Some(root) = common::element(data) else { return };
    for el in common::all(&root) {
        let _ = AvatarNode::parse(&el.ns());
        if let Ok(metadata) = Metadata::parse(el) {
            // Never an empty avatar: an empty list is `NoAvatar`.
            assert!(matches!(metadata, Metadata::NoAvatar) || !metadata.infos().is_empty());
            let _ = metadata.inline_info();
        }
        let _ = xep0084::parse_data(el);
        if let Ok(Some(xep0084::Event::Items { published, .. })) = xep0084::parse_event(el) {
            for item in &published {
                let _ = item.hash();
                if let Ok(Payload::Metadata(m)) = &item.payload {
                    let _ = m.inline_info();
                }
            }
        }
        if let Ok(Some((_, items))) = xep0084::parse_items(el) {
            for item in &items {
                let _ = item.hash();
            }
        }
        if let Ok(Some(publish)) = xep0084::parse_publish(el) {
            for item in &publish.items {
                let _ = item.hash();
            }
        }
    }
});
