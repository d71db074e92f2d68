//! The end of a session on SIGTERM or Ctrl-C: take no new work, finish what runs, then close the stream.
//!
//! No stanza is read any more and no queued image job is started, but the jobs already on a worker may finish
//! within `drain_timeout`, and what their results lead to is sent before the stream closes: an owner's
//! `storage:client:avatar` set is acknowledged only once its image is validated and stored, so cutting that
//! short would leave the owner's client waiting for an answer that never comes. The engine is dropped after the
//! link returns, which closes the store.

use tokio::time::Instant;
use tracing::{info, warn};

use super::workers::ImageWorkers;
use super::{Driven, LinkConfig, LinkError, Stream, flush, now};

/// Drains `driven`'s running image jobs (bounded by `config.drain_timeout`) and closes `stream`.
pub(super) async fn drain(
    config: &LinkConfig,
    driven: &mut impl Driven,
    mut stream: Stream,
    mut workers: ImageWorkers,
) -> Result<(), LinkError> {
    let deadline = Instant::now() + config.drain_timeout;
    if workers.running() > 0 {
        info!("shutting down: waiting up to {:?} for {} image job(s)", config.drain_timeout, workers.running());
    }
    while workers.running() > 0 {
        tokio::select! {
            done = workers.next() => driven.handle_transcoded(now(), done),
            () = tokio::time::sleep_until(deadline) => {
                warn!("shutting down: {} image job(s) still running after {:?} abandoned", workers.running(),
                    config.drain_timeout);
                break;
            }
        }
        flush(driven, &mut stream).await?;
    }
    let _ = stream.shutdown().await;
    Ok(())
}
