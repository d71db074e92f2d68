//! The wire: one module per XEP, each parsing leniently into the model and emitting strictly.
//!
//! Codecs work on payload elements (a `<vCard/>`, a `<metadata/>`, a presence's children); the stanza envelope
//! is the link's and engine's business.

pub mod b64;
pub mod component;
pub mod legacy_stamp;
pub mod ns;
pub mod stanza;
pub mod vcard;
pub mod xep0008;
pub mod xep0084;
pub mod xml;
