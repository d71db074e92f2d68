//! The engine's image jobs, run on tokio's blocking pool so the link keeps reading and answering meanwhile.
//!
//! At most `limit` jobs run at once (one per core by default): the engine asks for a job only when a worker is
//! free, so its queue, and the round-robin fairness between accounts kept there, decides what runs next. A worker
//! that panics (an image decoder bug on hostile bytes) costs that image only: its job is reported as failed.

use std::collections::HashMap;

use tokio::task::{Id, JoinSet};
use tracing::error;

use super::Driven;
use crate::engine::{JobId, TranscodeJob, TranscodeResult};
use crate::image::{ImageError, Transcoded};

/// Does a job's work: validate the bytes, decode them once, derive both renditions (CPU-bound: run it where a long
/// computation blocks nobody).
pub fn run(job: TranscodeJob) -> TranscodeResult {
    let (id, bytes, limits) = job.into_input();
    TranscodeResult { id, result: Transcoded::from_bytes(bytes, &limits) }
}

/// The result to report when the work itself could not finish (the worker panicked): the image is refused.
fn failed(id: JobId, why: String) -> TranscodeResult {
    TranscodeResult { id, result: Err(ImageError::Encode(format!("the image worker failed: {why}"))) }
}

/// The running image jobs.
pub struct ImageWorkers {
    running: JoinSet<TranscodeResult>,
    jobs: HashMap<Id, JobId>,
    limit: usize,
}

impl ImageWorkers {
    /// Workers for up to `limit` jobs at once (at least one).
    pub fn new(limit: usize) -> Self {
        Self { running: JoinSet::new(), jobs: HashMap::new(), limit: limit.max(1) }
    }

    /// One worker per core the process may use.
    pub fn per_core() -> Self {
        Self::new(std::thread::available_parallelism().map_or(1, usize::from))
    }

    /// Starts as many of `driven`'s queued jobs as there are free workers.
    pub fn start(&mut self, driven: &mut impl Driven) {
        while self.running.len() < self.limit {
            let Some(job) = driven.poll_transcode() else { break };
            let id = job.id();
            let task = self.running.spawn_blocking(move || run(job));
            self.jobs.insert(task.id(), id);
        }
    }

    /// How many jobs run now.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// The next finished job; never resolves while none runs.
    pub async fn next(&mut self) -> TranscodeResult {
        loop {
            match self.running.join_next_with_id().await {
                None => std::future::pending::<()>().await,
                Some(Ok((task, result))) => {
                    self.jobs.remove(&task);
                    return result;
                }
                Some(Err(e)) => {
                    let Some(job) = self.jobs.remove(&e.id()) else { continue };
                    error!("an image worker failed: {e}; that image is refused");
                    return failed(job, e.to_string());
                }
            }
        }
    }
}
