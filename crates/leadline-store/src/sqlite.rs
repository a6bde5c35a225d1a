//! The embedded SQLite backend: one file, WAL, `synchronous=FULL`, foreign keys on.
//!
//! SQLite allows one writer at a time. Every write of the process is a job for the
//! [`writer`] thread, which owns the one write connection and commits many jobs in
//! one transaction (group commit, a savepoint per job). Reads use a pool of
//! read-only connections.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection};

use crate::cache::ReadCache;
use crate::migrate::SQLITE;
use crate::{Backend, Store};

mod inline;
mod write;
mod writer;

pub(crate) use writer::is_disk_full;
use writer::{Admission, Writer};
pub use writer::{WriteFault, WriterOptions, WriterStats};

/// The store the shared reads (`reads.rs`) are implemented for.
type This = SqliteStore;

type Db = sqlx::Sqlite;

use crate::{ClaimOutcome, IdempotencyClaim};
use crate::{Committed, StoreError};
use leadline_core::change::ChangeSet;
use leadline_core::delivery::{AttemptReport, OutboxMessage};
// Compiled once per backend, against its own `Db`.
#[allow(clippy::duplicate_mod)]
#[path = "reads.rs"]
mod reads;

/// Checks a database file (a backup, before a restore): it opens read-only, passes
/// `PRAGMA integrity_check`, and is a Leadline database. Returns its schema version.
pub async fn check_file(path: &std::path::Path) -> crate::Result<i64> {
    if !path.is_file() {
        return Err(StoreError::Config(format!("{} is not a file", path.display())));
    }
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .create_if_missing(false);
    let mut conn = SqliteConnection::connect_with(&opts).await?;
    let verdict: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut conn)
        .await?;
    if verdict != "ok" {
        return Err(StoreError::Corrupt(format!("integrity check: {verdict}")));
    }
    // A backup made before the migrator kept checksums has `schema_migrations`.
    let version: Option<i64> = match sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut conn)
        .await
    {
        Ok(v) => v,
        Err(_) => sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
            .fetch_one(&mut conn)
            .await
            .map_err(|_| StoreError::Corrupt("not a Leadline database (no migration history)".into()))?,
    };
    conn.close().await?;
    version.ok_or_else(|| StoreError::Corrupt("not a Leadline database (no migration applied)".into()))
}

/// sqlx's migration history table on SQLite (as its migrator makes it).
const SQLITE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    success BOOLEAN NOT NULL,
    checksum BLOB NOT NULL,
    execution_time BIGINT NOT NULL
)";

/// The SQLite store.
pub struct SqliteStore {
    writer: Writer,
    readers: sqlx::SqlitePool,
    inline: inline::InlineReaders,
    backup_opts: SqliteConnectOptions,
    cache: ReadCache,
}

impl SqliteStore {
    /// The pool the shared reads use.
    fn read_pool(&self) -> &sqlx::Pool<Db> {
        &self.readers
    }

    /// Opens (creating when missing) the database file a `sqlite://` URL names,
    /// with the default writer bounds.
    pub async fn open(url: &str) -> crate::Result<Self> {
        Self::open_with(url, &WriterOptions::default()).await
    }

    /// Opens the database file a `sqlite://` URL names with the writer's bounds.
    pub async fn open_with(url: &str, writer: &WriterOptions) -> crate::Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Config(format!("bad sqlite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        if let Some(dir) = opts.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Config(format!("cannot create {}: {e}", dir.display())))?;
        }
        // The writer opens (creating) the file first; the readers then find it.
        let writer = Writer::start(opts.get_filename().to_path_buf(), writer)?;
        let backup_opts = opts.clone();
        // Connected on first use: a reader connected before the migrations (made
        // by another connection) would hold up the writer's WAL checkpoints.
        let readers = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_lazy_with(opts.clone().read_only(true));
        let inline = inline::InlineReaders::new(opts.get_filename().to_path_buf());
        Ok(Self {
            writer,
            readers,
            inline,
            backup_opts,
            cache: ReadCache::new(),
        })
    }

    /// A lone server's claim (see `IdempotencyClaim::exclusive`): its running
    /// claims are in its memory and an in-flight row can only be a dead process's,
    /// so claiming is a read; the record is written once, with the outcome
    /// (`IdempotentResponse::record`). One writer job per request instead of two.
    async fn claim_by_reading(&self, c: &IdempotencyClaim) -> crate::Result<ClaimOutcome> {
        let found = match self.inline.read(|conn| write::read_claim(conn, c)) {
            Ok(found) => found,
            // A reader that would have to wait (a WAL being recovered): through
            // the pool, whose threads may wait.
            Err(e) => {
                tracing::debug!(error = %e, "an inline read failed; reading through the pool");
                let c2 = c.clone();
                self.inline
                    .read_patiently(move |conn| write::read_claim(conn, &c2))
                    .await?
            }
        };
        match found {
            None => Ok(ClaimOutcome::Claimed),
            Some(f) if c.may_take_over(&f.as_found()) => Ok(ClaimOutcome::Claimed),
            Some(f) => f.outcome(c),
        }
    }

    /// The writer's counters (batches and jobs committed, jobs refused).
    pub fn writer_stats(&self) -> &WriterStats {
        self.writer.stats()
    }

    /// Runs `f` in the writer's next transaction, waiting for room in its queue.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> crate::Result<T> + Send + 'static,
    ) -> crate::Result<T> {
        self.writer.run(Admission::Wait, f).await
    }

    /// Like `write`, refusing with [`StoreError::Busy`] when the queue is full
    /// (the writes of requests, which answer 503 and are retried by the client).
    async fn write_or_refuse<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Connection) -> crate::Result<T> + Send + 'static,
    ) -> crate::Result<T> {
        self.writer.run(Admission::Reject, f).await
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn migrate(&self) -> crate::Result<()> {
        // On a connection of its own: the writer's idles meanwhile (start-up) and
        // sees the new schema on its next statement.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(self.backup_opts.clone())
            .await?;
        let legacy: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
        )
        .fetch_one(&pool)
        .await?;
        if legacy > 0 {
            let mut tx = pool.begin().await?;
            let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
                .fetch_all(&mut *tx)
                .await?;
            sqlx::query(SQLITE_MIGRATIONS_TABLE).execute(&mut *tx).await?;
            for (version, name, checksum) in crate::migrate::adoption(SQLITE, &applied) {
                sqlx::query(
                    "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                     VALUES ($1, $2, TRUE, $3, 0) ON CONFLICT (version) DO NOTHING",
                )
                .bind(version)
                .bind(name)
                .bind(checksum)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query("DROP TABLE schema_migrations").execute(&mut *tx).await?;
            tx.commit().await?;
            tracing::info!(versions = applied.len(), "migration history moved to _sqlx_migrations");
        }
        pool.close().await;
        let mut conn = SqliteConnection::connect_with(&self.backup_opts).await?;
        let ran = crate::migrate::migrator(SQLITE)
            .await?
            .run_direct(&mut conn)
            .await
            .map_err(|e| StoreError::Config(format!("migrations: {e}")));
        sqlx::Connection::close(conn).await?;
        ran
    }

    async fn ready(&self) -> crate::Result<bool> {
        let v: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.readers)
            .await?;
        Ok(v == Some(crate::migrate::latest(SQLITE)))
    }

    fn write_fault(&self) -> Option<WriteFault> {
        self.writer.fault()
    }

    async fn commit(&self, mut changes: ChangeSet) -> crate::Result<Committed> {
        let touches_cache = ReadCache::touched_by(&changes);
        let erases = changes
            .changes
            .iter()
            .any(|c| matches!(c, leadline_core::change::Change::EraseLeadDeliveries { .. }));
        // Told by the writer once its batch has committed or failed, whether or
        // not this future still waits.
        let settled = std::mem::take(&mut changes.settled);
        let committed = self
            .writer
            .run_settled(Admission::Reject, move |conn| write::apply_set(conn, changes), settled)
            .await;
        if touches_cache {
            self.cache.invalidate();
        }
        if erases && committed.is_ok() {
            // The erased rows' old versions leave the WAL (freed pages are zeroed
            // by `secure_delete`).
            self.writer.checkpoint().await;
        }
        committed
    }

    async fn claim_idempotency(&self, claim: &IdempotencyClaim) -> crate::Result<ClaimOutcome> {
        if claim.exclusive {
            return self.claim_by_reading(claim).await;
        }
        let claim = claim.clone();
        self.write_or_refuse(move |conn| write::claim(conn, &claim)).await
    }

    async fn release_idempotency(&self, scope: &str, key: &str, holder: &str) -> crate::Result<()> {
        let (scope, key, holder) = (scope.to_owned(), key.to_owned(), holder.to_owned());
        self.write(move |conn| write::release(conn, &scope, &key, &holder))
            .await
    }

    async fn renew_idempotency(
        &self,
        claims: Vec<(String, String, String)>,
        until: chrono::DateTime<chrono::Utc>,
    ) -> crate::Result<()> {
        self.write(move |conn| write::renew(conn, &claims, until)).await
    }

    async fn claim_due(
        &self,
        worker: &str,
        now: chrono::DateTime<chrono::Utc>,
        locked_until: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> crate::Result<Vec<OutboxMessage>> {
        let worker = worker.to_owned();
        self.write(move |conn| write::claim_due(conn, &worker, now, locked_until, limit))
            .await
    }

    async fn report_attempt(&self, report: &AttemptReport) -> crate::Result<bool> {
        let disables = report.disable_endpoint;
        let report = report.clone();
        let done = self.write(move |conn| write::report(conn, &report)).await;
        if disables {
            self.cache.invalidate();
        }
        done
    }

    async fn report_attempts(&self, reports: Vec<AttemptReport>) -> crate::Result<Vec<bool>> {
        let disables = reports.iter().any(|r| r.disable_endpoint);
        // One job: one savepoint and one reply for the dispatcher's whole batch.
        let done = self
            .write(move |conn| reports.iter().map(|r| write::report(conn, r)).collect())
            .await;
        if disables {
            self.cache.invalidate();
        }
        done
    }

    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: chrono::DateTime<chrono::Utc>,
        until: chrono::DateTime<chrono::Utc>,
    ) -> crate::Result<bool> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(move |c| write::try_lease(c, &name, &holder, now, until))
            .await
    }

    async fn backup_to(&self, path: &std::path::Path) -> crate::Result<()> {
        // A connection of its own: VACUUM INTO reads one consistent snapshot while the
        // writer goes on (WAL), and writes a compact copy.
        let mut conn = SqliteConnection::connect_with(&self.backup_opts).await?;
        let target = path
            .to_str()
            .ok_or(StoreError::Config("the backup path is not UTF-8".into()))?;
        sqlx::query("VACUUM INTO $1").bind(target).execute(&mut conn).await?;
        conn.close().await?;
        Ok(())
    }

    async fn close(&self) {
        self.readers.close().await;
        // Queued writes finish, then the WAL is checkpointed into the main file.
        self.writer.close().await;
    }
}
