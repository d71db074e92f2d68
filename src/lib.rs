//! avatar-gateway: keeps every account's avatar consistent across XEP-0008, vCard-temp and XEP-0084.
//!
//! The library is the pure core (no socket, no clock): [`avatar`] (the hash), [`image`] (validated renditions),
//! [`cache`] (content-addressed, byte-budgeted) and [`wire`] (one codec per scheme). See ARCHITECTURE.md.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod avatar;
pub mod cache;
pub mod config;
pub mod engine;
pub mod image;
pub mod link;
pub mod migrate;
pub mod ops;
pub mod store;
pub mod wire;
