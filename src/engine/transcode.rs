//! Image work as jobs: the engine asks, the shell runs them off the link's thread and hands the results back.
//!
//! Validating, decoding and re-encoding a large photo takes tens to hundreds of milliseconds; done inside a stanza
//! handler, it would hold up every other account's stanzas (one user sending a stream of 16-megapixel avatars
//! delayed everyone else's conversions by seconds). So the engine never runs the image pipeline itself: it queues
//! a [`TranscodeJob`] (the bytes and the limits), the shell runs [`TranscodeJob::run`] on a worker and feeds the
//! [`TranscodeResult`] to [`Engine::handle_transcoded`](super::Engine::handle_transcoded).
//!
//! Two rules keep it fair and cheap: jobs are handed out round-robin by account, so an account's images queue
//! behind each other and never in front of another account's; and there is one job per distinct image (by hash),
//! however many accounts and purposes wait for it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use xmpp_parsers::jid::BareJid;

use super::account::Scheme;
use crate::avatar::AvatarHash;
use crate::image::{ImageError, ImageLimits, Transcoded};
use crate::wire::component::Delegated;
use crate::wire::stanza::Iq;

/// Names one job, so its result finds what waited for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct JobId(u64);

/// Image work for the shell to run: validate the bytes, decode them once, derive both renditions.
#[derive(Debug)]
pub struct TranscodeJob {
    id: JobId,
    bytes: Arc<[u8]>,
    limits: ImageLimits,
}

impl TranscodeJob {
    /// Which job this is.
    pub fn id(&self) -> JobId {
        self.id
    }

    /// What to transcode, and under which limits: the shell does the work (`link::workers::run`), so that no
    /// image is decoded inside the engine.
    pub fn into_input(self) -> (JobId, Arc<[u8]>, ImageLimits) {
        (self.id, self.bytes, self.limits)
    }
}

/// What a job produced.
#[derive(Debug)]
pub struct TranscodeResult {
    /// The job.
    pub id: JobId,
    /// The renditions, or why the image was refused.
    pub result: Result<Transcoded, ImageError>,
}

/// What waits for a job's result.
#[derive(Debug, Clone)]
pub(super) enum Purpose {
    /// Bytes fetched from `scheme` (or held already but never derived): adopt them, and release the accounts
    /// waiting on the same fetch.
    Adopt { account: BareJid, scheme: Scheme },
    /// A vCard read brought these bytes: observe the vCard once they are known good or bad.
    VcardRead { account: BareJid },
    /// An owner's `storage:client:avatar` set, acknowledged only once the image is valid and stored (the IQ
    /// boxed: it is far larger than the other purposes).
    Storage { account: BareJid, set: Box<(Iq, Delegated)> },
}

impl Purpose {
    fn account(&self) -> &BareJid {
        match self {
            Purpose::Adopt { account, .. } | Purpose::VcardRead { account } | Purpose::Storage { account, .. } => {
                account
            }
        }
    }
}

#[derive(Debug)]
struct Job {
    hash: AvatarHash,
    /// `None` once handed to the shell.
    bytes: Option<Arc<[u8]>>,
    purposes: Vec<Purpose>,
}

/// The jobs asked for and not yet answered, and the round-robin queue of those not yet handed out.
#[derive(Debug, Default)]
pub(super) struct Transcodes {
    next: u64,
    jobs: HashMap<JobId, Job>,
    by_hash: HashMap<AvatarHash, JobId>,
    /// Accounts with queued jobs, in turn order (each at most once).
    turns: VecDeque<BareJid>,
    queued: HashMap<BareJid, VecDeque<JobId>>,
    /// Per account, how many purposes wait (all, and adoptions): answers `busy` and `adopting` without a scan.
    waiting: HashMap<BareJid, (usize, usize)>,
    /// Bytes of the jobs not handed out yet: the backlog the engine paces its fetches by.
    queued_bytes: usize,
}

impl Transcodes {
    /// Asks for `bytes` to be transcoded for `purpose`; joins the job already asked for the same image.
    pub(super) fn request(&mut self, bytes: Arc<[u8]>, purpose: Purpose) {
        let hash = AvatarHash::of(&bytes);
        let count = self.waiting.entry(purpose.account().clone()).or_default();
        *count = (count.0 + 1, count.1 + usize::from(matches!(purpose, Purpose::Adopt { .. })));
        if let Some(job) = self.by_hash.get(&hash).and_then(|id| self.jobs.get_mut(id)) {
            return job.purposes.push(purpose);
        }
        self.next += 1;
        let id = JobId(self.next);
        let account = purpose.account().clone();
        self.queued_bytes += bytes.len();
        self.jobs.insert(id, Job { hash, bytes: Some(bytes), purposes: vec![purpose] });
        self.by_hash.insert(hash, id);
        let queue = self.queued.entry(account.clone()).or_default();
        if queue.is_empty() {
            self.turns.push_back(account);
        }
        queue.push_back(id);
    }

    /// The next job, taking accounts in turn.
    pub(super) fn poll(&mut self, limits: &ImageLimits) -> Option<TranscodeJob> {
        while let Some(account) = self.turns.pop_front() {
            let Some(queue) = self.queued.get_mut(&account) else { continue };
            let Some(id) = queue.pop_front() else { continue };
            if queue.is_empty() {
                self.queued.remove(&account);
            } else {
                self.turns.push_back(account);
            }
            if let Some(bytes) = self.jobs.get_mut(&id).and_then(|job| job.bytes.take()) {
                self.queued_bytes -= bytes.len();
                return Some(TranscodeJob { id, bytes, limits: limits.clone() });
            }
        }
        None
    }

    /// A job's result came back: the image's hash and what waited for it (`None`: a job nobody waits for any more,
    /// e.g. from before a reconnect).
    pub(super) fn finish(&mut self, id: JobId) -> Option<(AvatarHash, Vec<Purpose>)> {
        let job = self.jobs.remove(&id)?;
        self.by_hash.remove(&job.hash);
        for purpose in &job.purposes {
            if let Some(count) = self.waiting.get_mut(purpose.account()) {
                *count = (count.0 - 1, count.1 - usize::from(matches!(purpose, Purpose::Adopt { .. })));
                if count.0 == 0 {
                    self.waiting.remove(purpose.account());
                }
            }
        }
        Some((job.hash, job.purposes))
    }

    /// Whether anything of `account` waits for image work.
    pub(super) fn busy(&self, account: &BareJid) -> bool {
        self.waiting.contains_key(account)
    }

    /// Whether `account` waits for the adoption of fetched bytes (a fetch is not over before its transcode is).
    pub(super) fn adopting(&self, account: &BareJid) -> bool {
        self.waiting.get(account).is_some_and(|&(_, adopts)| adopts > 0)
    }

    /// Whether the image with this hash is being transcoded for an adoption (so a new asker waits for it).
    pub(super) fn adopts_hash(&self, hash: &AvatarHash) -> bool {
        let job = self.by_hash.get(hash).and_then(|id| self.jobs.get(id));
        job.is_some_and(|j| j.purposes.iter().any(|p| matches!(p, Purpose::Adopt { .. })))
    }

    /// Bytes of image work asked for and not handed to a worker yet.
    pub(super) fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// The link went away: nothing waits any more (results still in flight are dropped when they come back).
    pub(super) fn clear(&mut self) {
        self.queued_bytes = 0;
        self.jobs.clear();
        self.by_hash.clear();
        self.turns.clear();
        self.queued.clear();
        self.waiting.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> BareJid {
        BareJid::new(s).expect("a valid JID")
    }

    fn adopt(account: &str) -> Purpose {
        Purpose::Adopt { account: jid(account), scheme: Scheme::Legacy }
    }

    fn bytes(b: &[u8]) -> Arc<[u8]> {
        Arc::from(b)
    }

    #[test]
    fn accounts_take_turns_however_many_jobs_one_of_them_queued() {
        let mut t = Transcodes::default();
        for i in 0..5u8 {
            t.request(bytes(&[b'm', i]), adopt("mallory@example.org"));
        }
        t.request(bytes(b"bob"), adopt("bob@example.org"));
        let limits = ImageLimits::default();
        let order: Vec<Arc<[u8]>> = std::iter::from_fn(|| t.poll(&limits)).map(|j| j.bytes).collect();
        assert_eq!(order[0].as_ref(), &[b'm', 0]);
        assert_eq!(order[1].as_ref(), b"bob", "Bob's job is second, not sixth");
        assert_eq!(order.len(), 6);
    }

    #[test]
    fn one_job_per_image_whoever_asks() {
        let mut t = Transcodes::default();
        t.request(bytes(b"logo"), adopt("alice@example.org"));
        t.request(bytes(b"logo"), Purpose::VcardRead { account: jid("bob@example.org") });
        let job = t.poll(&ImageLimits::default()).expect("one job");
        assert!(t.poll(&ImageLimits::default()).is_none());
        assert!(t.busy(&jid("bob@example.org")) && t.adopts_hash(&AvatarHash::of(b"logo")));
        let (hash, purposes) = t.finish(job.id()).expect("waited for");
        assert_eq!((hash, purposes.len()), (AvatarHash::of(b"logo"), 2));
        assert!(!t.busy(&jid("alice@example.org")));
        assert!(t.finish(job.id()).is_none(), "a result comes once");
    }
}
