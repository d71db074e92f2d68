//! Leader election on PostgreSQL: the [`Lease`] row says which instance is active, until when, and at which
//! epoch (the fencing token every [`PostgresStore`](super::PostgresStore) commit checks).
//!
//! A lease row with an expiry rather than a session-level `pg_try_advisory_lock`: an advisory lock is released
//! only when its session ends, and a paused process (SIGSTOP, a frozen VM) keeps its TCP session open, so its
//! standby would wait forever. With a lease, the holder renews every [`RENEW_EVERY`]; a standby tries every
//! [`RENEW_EVERY`] too and takes a lease expired for [`TTL`], bumping the epoch, so a holder that stopped
//! renewing (crash, partition, lost session, pause) is replaced within `TTL + RENEW_EVERY`. The old holder, if
//! it wakes up, is fenced: its commits carry the old epoch and are refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postgres::Client;

use super::StoreError;
use super::postgres::connect;

/// How long a lease lasts without renewal.
pub const TTL: Duration = Duration::from_secs(3);
/// How often the holder renews and a standby retries.
pub const RENEW_EVERY: Duration = Duration::from_secs(1);

/// The lease, held: renewed on a thread of its own until dropped or lost.
pub struct Lease {
    epoch: i64,
    lost: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    renewer: Option<JoinHandle<()>>,
}

fn pg(what: &'static str) -> impl Fn(postgres::Error) -> StoreError {
    move |source| StoreError::Postgres { what, source: Box::new(source) }
}

impl Lease {
    /// Waits until this instance (`holder`: a name for the logs and the row) holds the lease at `url`, trying
    /// every [`RENEW_EVERY`]; logs once that it stands by while another instance is active.
    pub fn acquire(url: &str, holder: &str) -> Result<Lease, StoreError> {
        let mut client = connect(url)?;
        let mut said = false;
        loop {
            if client.is_closed() {
                client = connect(url)?;
            }
            let sql = "UPDATE lease SET epoch = epoch + 1, holder = $1, expires = now() + make_interval(secs => $2)
                       WHERE id = 1 AND expires < now() RETURNING epoch";
            let row = client.query_opt(sql, &[&holder, &TTL.as_secs_f64()]).map_err(pg("taking the lease"))?;
            if let Some(row) = row {
                let epoch: i64 = row.get(0);
                tracing::info!(epoch, "active: this instance holds the lease");
                return Ok(Self::hold(client, epoch));
            }
            if !said {
                let other =
                    client.query_one("SELECT holder FROM lease WHERE id = 1", &[]).map_err(pg("reading the lease"))?;
                tracing::info!(active = other.get::<_, String>(0), "standby: another instance holds the lease");
                said = true;
            }
            std::thread::sleep(RENEW_EVERY);
        }
    }

    fn hold(mut client: Client, epoch: i64) -> Lease {
        let (lost, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let (lost_flag, stop_flag) = (lost.clone(), stop.clone());
        let renewer = std::thread::Builder::new().name("lease".into()).spawn(move || {
            // The lease is ours until `TTL` after the start of the last renewal that succeeded.
            let mut valid_until = Instant::now() + TTL;
            while !stop_flag.load(Ordering::Relaxed) {
                std::thread::sleep(RENEW_EVERY);
                let started = Instant::now();
                let sql = "UPDATE lease SET expires = now() + make_interval(secs => $2) WHERE id = 1 AND epoch = $1";
                match client.execute(sql, &[&epoch, &TTL.as_secs_f64()]) {
                    Ok(1) => valid_until = started + TTL,
                    Ok(_) => break, // another instance took it: fenced from now on
                    Err(e) => tracing::warn!("renewing the lease: {e}"),
                }
                if Instant::now() >= valid_until {
                    break;
                }
            }
            lost_flag.store(true, Ordering::Relaxed);
        });
        Lease { epoch, lost, stop, renewer: renewer.ok() }
    }

    /// The fencing token: the epoch this instance leads at.
    pub fn epoch(&self) -> i64 {
        self.epoch
    }

    /// Whether the lease was lost (or could not be renewed in time): the instance must stop acting as leader.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed) || self.renewer.is_none()
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
    }
}
