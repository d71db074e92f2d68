//! XEP-0356 / XEP-0355 / the IQ envelope: `Privileges::from_message`, `delegated_namespaces`, `delegated` (+ its
//! reply), `Iq::parse`, `privileged_reply`, and the delegation disco node parser, on arbitrary XML.
#![no_main]

use avatar_gateway::wire::component::{self, Privileges};
use avatar_gateway::wire::stanza::Iq;
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let Some(root) = common::element(data) else { return };
    for el in common::all(&root) {
        let _ = Privileges::from_message(el);
        let _ = component::delegated_namespaces(el);
        for (_, value) in el.attrs().iter() {
            let _ = component::delegation_disco_namespace(value);
        }
        if let Ok(iq) = Iq::parse(el) {
            let _ = iq.from_bare();
            let _ = component::privileged_reply(&iq, el);
            if let Some(d) = component::delegated(el) {
                let reply = d.inner.result(avatar_gateway::wire::ns::CLIENT, None);
                let _ = component::delegated_reply(&iq, d.version, reply);
            }
        }
    }
});
