//! Migrating accounts that will not log in soon: servers convert vCard avatars to XEP-0084 only at login, so
//! dormant accounts would keep avatars that PEP clients never see.
//!
//! - [`xep0227`]: offline, on a XEP-0227 export (Prosody's migrator, ejabberd's `export_piefxis`): adds the avatar
//!   PEP nodes as text into an otherwise byte-identical copy.
//! - [`live`]: over the component link, for accounts still on a running server: privileged reads, then the
//!   engine's writes, at a bounded pace and resumable from a checkpoint.
//! - [`report`]: the per-account outcome (converted, skipped, refused) every migration reports, as JSON lines and
//!   a human summary.

pub mod live;
mod progress;
pub mod report;
pub mod xep0227;
