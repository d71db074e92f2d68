//! [`PostgresStore`]: the shared backend, for several gateways (one active, standbys) over one PostgreSQL.
//!
//! The synchronous `postgres` client, not tokio-postgres with a pool: the store already runs on a thread of its
//! own (`link::store_task`) and carries out one request group at a time, so one connection used in order is all
//! it needs, and a blocking call there blocks nothing else. A pool would only let writes race each other.
//!
//! Same semantics as [`RedbStore`](super::RedbStore), by the same code ([`Ledger`]): one transaction per
//! [`Store::commit`] group; a group that changes nothing is rolled back. When the store was opened with a fencing
//! token (the leader epoch of `store::lease`), each commit first checks, under a share lock on the lease row, that
//! the epoch is still its own: a paused old leader that wakes up after a standby took over is refused
//! ([`StoreError::Fenced`]) instead of overwriting the new leader's writes.

use std::cell::RefCell;

use postgres::{Client, NoTls, Transaction};

use super::ledger::{self, Ledger};
use super::{Store, StoreError, StoreOp, StoredAccount};
use crate::avatar::AvatarHash;

/// The schema version this build writes and reads. Each step `N → N+1` is one entry of [`MIGRATIONS`], run in
/// one transaction at start-up under an advisory lock (two gateways starting together do not both migrate); a
/// database at a newer version is refused.
pub const PG_SCHEMA_VERSION: i64 = 1;

/// `MIGRATIONS[N]` takes version N to N+1 (0: an empty database).
const MIGRATIONS: [&str; 1] = ["
    CREATE TABLE accounts (account text PRIMARY KEY, record bytea NOT NULL);
    CREATE TABLE blobs (hash bytea PRIMARY KEY, seq bigint NOT NULL, len bigint NOT NULL, bytes bytea NOT NULL);
    CREATE TABLE blob_evictable (seq bigint PRIMARY KEY, hash bytea NOT NULL);
    CREATE TABLE blob_pins (hash bytea PRIMARY KEY, count integer NOT NULL);
    CREATE TABLE lease (id integer PRIMARY KEY CHECK (id = 1), epoch bigint NOT NULL, holder text NOT NULL,
        expires timestamptz NOT NULL);
    INSERT INTO lease VALUES (1, 0, '', '-infinity');
    INSERT INTO meta VALUES ('next_blob_seq', 0), ('evictable_bytes', 0);
"];
const _: () = assert!(MIGRATIONS.len() as i64 == PG_SCHEMA_VERSION, "one migration per version");

/// Key of the transaction-level advisory lock that serialises migrations.
const MIGRATION_LOCK: i64 = 0x6176_6174_6172_0001;

/// Connects to `url` and brings its schema to [`PG_SCHEMA_VERSION`]; shared by the store and the lease.
pub(crate) fn connect(url: &str) -> Result<Client, StoreError> {
    let fail = |what| move |e| pg(what, e);
    let mut client = Client::connect(url, NoTls).map_err(fail("connecting"))?;
    // A session paused inside a transaction (SIGSTOP, a stalled VM) must not hold the lease row's lock forever.
    client.batch_execute("SET idle_in_transaction_session_timeout = '2s'").map_err(fail("configuring"))?;
    let mut txn = client.transaction().map_err(fail("migrating"))?;
    txn.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).map_err(fail("migrating"))?;
    txn.batch_execute("CREATE TABLE IF NOT EXISTS meta (key text PRIMARY KEY, value bigint NOT NULL)")
        .map_err(fail("migrating"))?;
    let found = txn
        .query_opt("SELECT value FROM meta WHERE key = 'schema_version'", &[])
        .map_err(fail("migrating"))?
        .map_or(0, |row| row.get::<_, i64>(0));
    if !(0..=PG_SCHEMA_VERSION).contains(&found) {
        return Err(StoreError::UnsupportedSchema {
            location: redact(url),
            found: found as u64,
            supported: PG_SCHEMA_VERSION as u64,
        });
    }
    for step in MIGRATIONS.iter().skip(found as usize) {
        txn.batch_execute(step).map_err(fail("migrating"))?;
    }
    txn.execute(
        "INSERT INTO meta VALUES ('schema_version', $1) ON CONFLICT (key) DO UPDATE SET value = $1",
        &[&PG_SCHEMA_VERSION],
    )
    .map_err(fail("migrating"))?;
    txn.commit().map_err(fail("migrating"))?;
    Ok(client)
}

/// `url` without its password, for messages.
fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://…{}", &url[at..]),
        _ => url.to_owned(),
    }
}

fn pg(what: &'static str, source: postgres::Error) -> StoreError {
    StoreError::Postgres { what, source: Box::new(source) }
}

/// The shared [`Store`]: tables in one PostgreSQL database (give the gateway a database of its own).
pub struct PostgresStore {
    /// `RefCell`: the client needs `&mut` even to read, and the store lives on one thread.
    client: RefCell<Client>,
    budget: u64,
    /// The leader epoch every commit must still hold, if fenced.
    epoch: Option<i64>,
}

impl PostgresStore {
    /// Opens the store at `url` (migrating its schema), whose unpinned blobs may total `blob_budget_bytes`; with
    /// `epoch`, every commit is refused once the lease has moved to a later epoch.
    pub fn open(url: &str, blob_budget_bytes: u64, epoch: Option<i64>) -> Result<Self, StoreError> {
        Ok(Self { client: RefCell::new(connect(url)?), budget: blob_budget_bytes, epoch })
    }

    fn query_opt<T: for<'a> postgres::types::FromSql<'a>>(
        &self,
        what: &'static str,
        sql: &str,
        param: &(dyn postgres::types::ToSql + Sync),
    ) -> Result<Option<T>, StoreError> {
        let row = self.client.borrow_mut().query_opt(sql, &[param]).map_err(|e| pg(what, e))?;
        Ok(row.map(|row| row.get(0)))
    }
}

/// One commit transaction's tables.
struct PgTables<'a, 'c>(&'a mut Transaction<'c>);

fn counter(txn: &mut Transaction<'_>, key: &str) -> Result<u64, postgres::Error> {
    let row = txn.query_opt("SELECT value FROM meta WHERE key = $1", &[&key])?;
    Ok(row.map_or(0, |row| row.get::<_, i64>(0)).max(0) as u64)
}

fn set_counter(txn: &mut Transaction<'_>, key: &str, value: u64) -> Result<(), postgres::Error> {
    txn.execute("UPDATE meta SET value = $2 WHERE key = $1", &[&key, &(value as i64)])?;
    Ok(())
}

impl ledger::Tables for PgTables<'_, '_> {
    type Error = postgres::Error;

    fn account(&mut self, account: &str) -> Result<Option<Vec<u8>>, postgres::Error> {
        Ok(self.0.query_opt("SELECT record FROM accounts WHERE account = $1", &[&account])?.map(|r| r.get(0)))
    }

    fn put_account(&mut self, account: &str, encoded: &[u8]) -> Result<(), postgres::Error> {
        let sql = "INSERT INTO accounts VALUES ($1, $2) ON CONFLICT (account) DO UPDATE SET record = $2";
        self.0.execute(sql, &[&account, &encoded]).map(drop)
    }

    fn blob_meta(&mut self, hash: &AvatarHash) -> Result<Option<(u64, u64)>, postgres::Error> {
        let row = self.0.query_opt("SELECT len, seq FROM blobs WHERE hash = $1", &[&hash.as_bytes().as_slice()])?;
        Ok(row.map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, i64>(1) as u64)))
    }

    fn put_blob(&mut self, hash: &AvatarHash, bytes: &[u8], seq: u64) -> Result<(), postgres::Error> {
        let params: [&(dyn postgres::types::ToSql + Sync); 4] =
            [&hash.as_bytes().as_slice(), &(seq as i64), &(bytes.len() as i64), &bytes];
        self.0.execute("INSERT INTO blobs VALUES ($1, $2, $3, $4)", &params).map(drop)
    }

    fn remove_blob(&mut self, hash: &AvatarHash) -> Result<(), postgres::Error> {
        self.0.execute("DELETE FROM blobs WHERE hash = $1", &[&hash.as_bytes().as_slice()]).map(drop)
    }

    fn pin_count(&mut self, hash: &AvatarHash) -> Result<u32, postgres::Error> {
        let row = self.0.query_opt("SELECT count FROM blob_pins WHERE hash = $1", &[&hash.as_bytes().as_slice()])?;
        Ok(row.map_or(0, |r| r.get::<_, i32>(0).max(0) as u32))
    }

    fn set_pin_count(&mut self, hash: &AvatarHash, count: u32) -> Result<(), postgres::Error> {
        let key = hash.as_bytes().as_slice();
        match i32::try_from(count).unwrap_or(i32::MAX) {
            0 => self.0.execute("DELETE FROM blob_pins WHERE hash = $1", &[&key]),
            count => self.0.execute(
                "INSERT INTO blob_pins VALUES ($1, $2) ON CONFLICT (hash) DO UPDATE SET count = $2",
                &[&key, &count],
            ),
        }
        .map(drop)
    }

    fn add_evictable(&mut self, seq: u64, hash: &AvatarHash) -> Result<(), postgres::Error> {
        let params: [&(dyn postgres::types::ToSql + Sync); 2] = [&(seq as i64), &hash.as_bytes().as_slice()];
        self.0.execute("INSERT INTO blob_evictable VALUES ($1, $2)", &params).map(drop)
    }

    fn remove_evictable(&mut self, seq: u64) -> Result<(), postgres::Error> {
        self.0.execute("DELETE FROM blob_evictable WHERE seq = $1", &[&(seq as i64)]).map(drop)
    }

    fn several_evictable(&mut self) -> Result<bool, postgres::Error> {
        let row = self.0.query_one("SELECT count(*) FROM (SELECT 1 FROM blob_evictable LIMIT 2) AS two", &[])?;
        Ok(row.get::<_, i64>(0) > 1)
    }

    fn pop_oldest_evictable(&mut self) -> Result<Option<AvatarHash>, postgres::Error> {
        let sql = "DELETE FROM blob_evictable WHERE seq = (SELECT min(seq) FROM blob_evictable) RETURNING hash";
        let row = self.0.query_opt(sql, &[])?;
        Ok(row.and_then(|r| <[u8; 20]>::try_from(r.get::<_, &[u8]>(0)).ok()).map(AvatarHash::from_bytes))
    }
}

impl Store for PostgresStore {
    fn load_account(&self, account: &str) -> Result<Option<StoredAccount>, StoreError> {
        let bytes: Option<Vec<u8>> =
            self.query_opt("reading an account", "SELECT record FROM accounts WHERE account = $1", &account)?;
        StoredAccount::decode_stored(account, bytes)
    }

    fn save_account(&mut self, account: &str, state: &StoredAccount) -> Result<(), StoreError> {
        self.commit(&[StoreOp::Account(account, state)])
    }

    fn load_blob(&self, hash: &AvatarHash) -> Result<Option<Vec<u8>>, StoreError> {
        self.query_opt("reading a blob", "SELECT bytes FROM blobs WHERE hash = $1", &hash.as_bytes().as_slice())
    }

    fn save_blob(&mut self, hash: &AvatarHash, bytes: &[u8]) -> Result<(), StoreError> {
        self.commit(&[StoreOp::Blob(*hash, bytes)])
    }

    fn pins(&self, hash: &AvatarHash) -> Result<u32, StoreError> {
        let count: Option<i32> =
            self.query_opt("reading pins", "SELECT count FROM blob_pins WHERE hash = $1", &hash.as_bytes().as_slice())?;
        Ok(count.map_or(0, |c| c.max(0) as u32))
    }

    fn accounts(&self) -> Result<Vec<String>, StoreError> {
        let rows = self.client.borrow_mut().query("SELECT account FROM accounts ORDER BY account COLLATE \"C\"", &[]);
        Ok(rows.map_err(|e| pg("listing accounts", e))?.iter().map(|r| r.get(0)).collect())
    }

    fn blobs(&self) -> Result<Vec<AvatarHash>, StoreError> {
        let rows = self.client.borrow_mut().query("SELECT hash FROM blobs", &[]).map_err(|e| pg("listing blobs", e))?;
        Ok(rows
            .iter()
            .filter_map(|r| <[u8; 20]>::try_from(r.get::<_, &[u8]>(0)).ok())
            .map(AvatarHash::from_bytes)
            .collect())
    }

    /// One transaction for the whole group, fenced by the epoch when there is one.
    fn commit(&mut self, ops: &[StoreOp<'_>]) -> Result<(), StoreError> {
        let (budget, epoch) = (self.budget, self.epoch);
        let mut client = self.client.borrow_mut();
        let fail = |e| pg("committing", e);
        let mut txn = client.transaction().map_err(fail)?;
        if let Some(ours) = epoch {
            let row = txn.query_one("SELECT epoch FROM lease WHERE id = 1 FOR SHARE", &[]).map_err(fail)?;
            let current: i64 = row.get(0);
            if current != ours {
                return Err(StoreError::Fenced { ours, current });
            }
        }
        let next_seq = counter(&mut txn, "next_blob_seq").map_err(fail)?;
        let evictable_bytes = counter(&mut txn, "evictable_bytes").map_err(fail)?;
        let mut ledger = Ledger { tables: PgTables(&mut txn), next_seq, evictable_bytes, budget };
        let changed = ledger.apply(ops).map_err(fail)?;
        let (next_seq, evictable_bytes) = (ledger.next_seq, ledger.evictable_bytes);
        if !changed {
            return txn.rollback().map_err(fail);
        }
        set_counter(&mut txn, "next_blob_seq", next_seq).map_err(fail)?;
        set_counter(&mut txn, "evictable_bytes", evictable_bytes).map_err(fail)?;
        txn.commit().map_err(fail)
    }
}
