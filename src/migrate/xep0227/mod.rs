//! Offline migration of a XEP-0227 export: for each account with a vCard PHOTO or XEP-0008 data but no usable
//! XEP-0084 avatar, add the avatar PEP nodes (`pubsub#owner` configure with a chosen access model, and the items),
//! and copy everything else byte for byte.
//!
//! The export is streamed: quick-xml reads through a tee ([`tee`]) that hands over each event's raw bytes, which
//! are copied straight out except inside a `<user/>`, which is buffered whole ([`user`]) until it is known whether
//! and where to insert ([`convert`]). Text is inserted, never re-serialised, since exporters order attributes as
//! they please. Memory holds one user and a few dozen images, whatever the size of the export.
//!
//! Where the nodes go follows Prosody's importer, which reads only a user's first `pubsub#owner` wrapper and first
//! `pubsub` wrapper (and drops items of nodes with no configuration when the user has any): configurations go
//! into the first owner wrapper, items into the first pubsub wrapper, each wrapper is created before `</user>` when
//! missing.
//!
//! [`rewrite`] is the pure core (any reader and writer, includes and reports through [`Hooks`]); [`run`] is the
//! shell that maps the layouts (one file, Prosody's file per user, XInclude) onto the file system.

mod capture;
mod convert;
mod driver;
mod error;
mod layout;
mod rewrite;
mod tee;
mod user;

pub use convert::Converter;
pub use driver::{Options, run};
pub use error::{Error, IncludeProblem};
pub use rewrite::{Document, Hooks, Include, PIE, PIE_OLD, XINCLUDE, rewrite};
