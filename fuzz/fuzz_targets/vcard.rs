//! XEP-0054 / XEP-0153: `VCard::parse` + `photo()` + `with_photo(None)`, and `Update::from_presence`, on arbitrary
//! XML. Whatever parses must also survive the strict emitters.
#![no_main]

use avatar_gateway::wire::vcard::{Photo, Update, VCard};
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let Some(root) = common::element(data) else { return };
    for el in common::all(&root) {
        if let Ok(vcard) = VCard::parse(el.clone()) {
            let _ = vcard.photo();
            // Removing the avatar always leaves "no avatar", whatever else the vCard holds.
            assert_eq!(vcard.with_photo(None).photo(), Ok(Photo::None));
        }
        if let Ok(update) = Update::from_presence(el) {
            // Lenient in, strict out, same meaning: the emitted child reads back as the same state.
            let mut presence = xmpp_parsers::minidom::Element::builder("presence", "jabber:client").build();
            if let Some(x) = update.to_element() {
                presence.append_child(x);
            }
            assert_eq!(Update::from_presence(&presence), Ok(update));
        }
    }
});
