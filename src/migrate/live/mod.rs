//! `migrate live`: sweep accounts over the component link (privileged vCard and PEP reads, then whatever the
//! engine writes for them), for accounts whose owners may never log in again.
//!
//! [`sweep`] is the pure scheduler (rate, concurrency, re-sweep after a lost connection) around the engine's
//! [`crate::engine::Engine::sweep`]; [`accounts`] reads the account list; [`run`] is the shell: link, checkpoint,
//! report.

pub mod accounts;
pub mod run;
mod sweep;

pub use sweep::{Sweep, SweepPace};
