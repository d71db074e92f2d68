//! The store's thread: carries out the engine's [`StoreRequest`]s in order, committing writes in groups.
//!
//! Group commit without a timer: the thread takes every request that arrived while the previous commit ran (up
//! to [`MAX_GROUP`]) and commits their writes in one transaction, one fsync for the whole group. An idle gateway
//! therefore commits a lone write at once (no added latency), and a busy one amortises the fsync over everything
//! that queued behind it. Syncs and reads in the group are answered after its commit, so each sees every write
//! asked before it.

use std::collections::HashMap;
use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::mpsc as tokio_mpsc;

use crate::avatar::AvatarHash;
use crate::engine::{StoreRequest, SyncId};
use crate::image::Rendition;
use crate::store::{Store, StoreOp};

/// Requests committed together at most (bounds one transaction's size and a sync's wait).
pub const MAX_GROUP: usize = 4096;

/// What the store thread reports back.
#[derive(Debug)]
pub enum StoreAnswer {
    /// [`StoreRequest::Sync`]: the writes before it are committed (`Ok`) or lost (`Err`).
    Stored(SyncId, Result<(), String>),
    /// [`StoreRequest::LoadBlob`]: the blob, if the store still holds it and it is still what was stored.
    Loaded(AvatarHash, Option<Rendition>),
    /// A group of write-behind writes could not be committed (to log: derived state is rebuilt later).
    Failed(String),
    /// A group of writes was committed: how many, and how long the commit took (for the operator's metrics).
    Committed {
        /// Writes in the group (after an account saved several times was folded into one).
        writes: usize,
        /// Time in the store's commit.
        took: std::time::Duration,
    },
}

/// The store, owned by its thread.
pub struct StoreTask {
    requests: Option<mpsc::Sender<StoreRequest>>,
    answers: tokio_mpsc::UnboundedReceiver<StoreAnswer>,
    thread: Option<JoinHandle<()>>,
}

impl StoreTask {
    /// Moves `store` to a thread of its own.
    pub fn spawn(store: Box<dyn Store>) -> Self {
        let (requests, incoming) = mpsc::channel();
        let (answer, answers) = tokio_mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name("store".into())
            .spawn(move || serve(store, &incoming, &answer))
            .expect("spawning the store thread");
        Self { requests: Some(requests), answers, thread: Some(thread) }
    }

    /// Queues a request (never blocks).
    pub fn submit(&self, request: StoreRequest) {
        if let Some(requests) = &self.requests {
            // The thread only stops once `close` dropped the sender: a send cannot fail before.
            let _ = requests.send(request);
        }
    }

    /// The next answer; never resolves while none is due.
    pub async fn next(&mut self) -> StoreAnswer {
        match self.answers.recv().await {
            Some(answer) => answer,
            None => std::future::pending().await,
        }
    }

    /// An answer already due, if any (for a driver that does not await: the benchmarks).
    pub fn try_next(&mut self) -> Option<StoreAnswer> {
        self.answers.try_recv().ok()
    }

    /// Finishes every queued request (commits included) and stops the thread.
    pub fn close(mut self) {
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    mut store: Box<dyn Store>,
    incoming: &mpsc::Receiver<StoreRequest>,
    answer: &tokio_mpsc::UnboundedSender<StoreAnswer>,
) {
    while let Ok(first) = incoming.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match incoming.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
        for reply in carry_out(&mut *store, group) {
            let _ = answer.send(reply);
        }
    }
}

/// Carries out one group of requests: its writes in one commit, then its syncs and reads answered in order. The
/// store thread's work, and what a test's scripted shell does synchronously.
pub fn carry_out(store: &mut dyn Store, group: Vec<StoreRequest>) -> Vec<StoreAnswer> {
    let ops = writes(&group);
    let started = std::time::Instant::now();
    let committed = store.commit(&ops).map_err(|e| e.to_string());
    let mut answers = Vec::new();
    if committed.is_ok() && !ops.is_empty() {
        answers.push(StoreAnswer::Committed { writes: ops.len(), took: started.elapsed() });
    }
    let mut reported = false;
    for request in group {
        match request {
            StoreRequest::Sync(id) => {
                reported = true;
                answers.push(StoreAnswer::Stored(id, committed.clone()));
            }
            StoreRequest::LoadBlob(hash) => {
                // Only validated bytes are ever stored: reading them back checks the hash and the header (no
                // pixels), here rather than in the engine.
                let blob = store.load_blob(&hash).map_err(|e| e.to_string()).and_then(|bytes| {
                    bytes
                        .map(|b| Rendition::from_stored(b, hash))
                        .transpose()
                        .map_err(|e| format!("stored blob {hash} is unusable: {e}"))
                });
                match blob {
                    Ok(blob) => answers.push(StoreAnswer::Loaded(hash, blob)),
                    Err(e) => {
                        answers.push(StoreAnswer::Failed(e));
                        answers.push(StoreAnswer::Loaded(hash, None));
                    }
                }
            }
            StoreRequest::SaveAccount { .. } | StoreRequest::SaveBlob(_) => {}
        }
    }
    if let (Err(e), false) = (committed, reported) {
        answers.push(StoreAnswer::Failed(e));
    }
    answers
}

/// The group's writes, in order, an account saved several times written once: its last record, at the place of
/// its first (so the renditions an earlier record pinned are still born pinned when the blobs follow it).
fn writes(group: &[StoreRequest]) -> Vec<StoreOp<'_>> {
    let mut last = HashMap::new();
    for request in group {
        if let StoreRequest::SaveAccount { account, record } = request {
            last.insert(account, record);
        }
    }
    group
        .iter()
        .filter_map(|request| match request {
            StoreRequest::SaveAccount { account, .. } => {
                last.remove(account).map(|record| StoreOp::Account(account.as_str(), record))
            }
            StoreRequest::SaveBlob(r) => Some(StoreOp::Blob(r.hash(), r.bytes())),
            StoreRequest::Sync(_) | StoreRequest::LoadBlob(_) => None,
        })
        .collect()
}
