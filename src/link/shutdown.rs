//! The end of a session on SIGTERM or Ctrl-C: take no new work, finish what runs, then close the stream.
//!
//! No stanza is read any more and no queued image job is started, but the jobs already on a worker may finish
//! within `drain_timeout`, and what their results lead to is carried out before the stream closes: store writes
//! and the syncs the engine waits for, and the stanzas it then sends. An owner's `storage:client:avatar` set is
//! acknowledged only once its image is validated and durably stored, so cutting that short would leave the
//! owner's client waiting for an answer that never comes. The store is closed (every write committed) when the
//! link returns.

use tokio::time::Instant;
use tracing::{info, warn};

use super::store_task::StoreTask;
use super::workers::ImageWorkers;
use super::{Driven, LinkConfig, LinkError, Stream, answered, flush, now};

/// Drains `driven`'s running image jobs and the store answers they lead to (`due` are still awaited), bounded by
/// `config.drain_timeout`, and closes `stream`.
pub(super) async fn drain(
    config: &LinkConfig,
    driven: &mut impl Driven,
    store: &mut StoreTask,
    mut due: usize,
    mut stream: Stream,
    mut workers: ImageWorkers,
) -> Result<(), LinkError> {
    let deadline = Instant::now() + config.drain_timeout;
    if workers.running() > 0 || due > 0 {
        info!(
            "shutting down: waiting up to {:?} for {} image job(s) and {due} store answer(s)",
            config.drain_timeout,
            workers.running()
        );
    }
    while workers.running() > 0 || due > 0 {
        tokio::select! {
            done = workers.next() => driven.handle_transcoded(now(), done),
            answer = store.next() => answered(driven, answer, &mut due),
            () = tokio::time::sleep_until(deadline) => {
                warn!("shutting down: {} image job(s) and {due} store answer(s) abandoned after {:?}",
                    workers.running(), config.drain_timeout);
                break;
            }
        }
        flush(driven, store, &mut due, &mut stream).await?;
    }
    let _ = stream.shutdown().await;
    Ok(())
}
