//! The PostgreSQL backend, for several `leadline` instances sharing one database.

use async_trait::async_trait;
use sqlx::PgConnection;
use sqlx::postgres::PgPoolOptions;

use crate::cache::ReadCache;
use crate::migrate::POSTGRES;
use crate::{Backend, Store};

/// The store the shared reads (`reads.rs`) are implemented for.
type This = PgStore;

type Db = sqlx::Postgres;
type Conn = PgConnection;

/// The row-locking clause of this backend.
const ROW_LOCK: &str = " FOR UPDATE";

use crate::{ClaimOutcome, IdempotencyClaim};
use crate::{Committed, StoreError};
use leadline_core::change::ChangeSet;
use leadline_core::delivery::{AttemptReport, OutboxMessage};
// Compiled once per backend, against its own `Db`.
#[allow(clippy::duplicate_mod)]
#[path = "reads.rs"]
mod reads;
mod write;
use write::*;

/// Serialises concurrent inserts of the same duplicate key until the transaction
/// ends, so exactly one of two simultaneous identical leads is first.
async fn lock_dedupe(conn: &mut Conn, key: &str) -> crate::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(key)
        .execute(conn)
        .await?;
    Ok(())
}

/// Advisory lock key held while migrating (any fixed number unique to us).
const MIGRATION_LOCK: i64 = 0x4c45_4144_4c49_4e45; // "LEADLINE"

/// The PostgreSQL store.
pub struct PgStore {
    pool: sqlx::PgPool,
    cache: ReadCache,
}

impl PgStore {
    /// The pool the shared reads use.
    fn read_pool(&self) -> &sqlx::Pool<Db> {
        &self.pool
    }

    /// Connects to the database a `postgres://` URL names.
    pub async fn open(url: &str) -> crate::Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(url)
            .await?;
        Ok(Self {
            pool,
            cache: ReadCache::new(),
        })
    }
}

/// sqlx's migration history table on PostgreSQL (as its migrator makes it).
const PG_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
    success BOOLEAN NOT NULL,
    checksum BYTEA NOT NULL,
    execution_time BIGINT NOT NULL
)";

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn migrate(&self) -> crate::Result<()> {
        {
            // Several instances may start at once: one moves an old history, the
            // others wait (the migrator takes its own lock for the rest).
            let mut tx = self.pool.begin().await?;
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(MIGRATION_LOCK)
                .execute(&mut *tx)
                .await?;
            let legacy: bool = sqlx::query_scalar("SELECT to_regclass('schema_migrations') IS NOT NULL")
                .fetch_one(&mut *tx)
                .await?;
            if legacy {
                let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
                    .fetch_all(&mut *tx)
                    .await?;
                sqlx::query(PG_MIGRATIONS_TABLE).execute(&mut *tx).await?;
                for (version, name, checksum) in crate::migrate::adoption(POSTGRES, &applied) {
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
                tracing::info!(versions = applied.len(), "migration history moved to _sqlx_migrations");
            }
            tx.commit().await?;
        }
        // On a connection of its own, closed afterwards: the migrator's session
        // lock is not released when it refuses to run (an edited migration).
        let mut conn = <PgConnection as sqlx::Connection>::connect_with(&self.pool.connect_options()).await?;
        let ran = crate::migrate::migrator(POSTGRES)
            .await?
            .run_direct(&mut conn)
            .await
            .map_err(|e| StoreError::Config(format!("migrations: {e}")));
        sqlx::Connection::close(conn).await?;
        ran
    }

    async fn ready(&self) -> crate::Result<bool> {
        let v: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(&self.pool)
            .await?;
        Ok(v == Some(crate::migrate::latest(POSTGRES)))
    }

    async fn commit(&self, mut changes: ChangeSet) -> crate::Result<Committed> {
        let touches_cache = ReadCache::touched_by(&changes);
        let settled = std::mem::take(&mut changes.settled);
        let pool = self.pool.clone();
        // A task of its own: a caller that goes away (its client left) does not
        // cut the transaction short, as with SQLite's writer, and `settled` hears
        // the outcome either way.
        let out = tokio::spawn(async move {
            let out = async {
                let mut tx = pool.begin().await?;
                let out = apply_set(&mut tx, changes).await?;
                tx.commit().await?;
                Ok::<_, StoreError>(out)
            }
            .await;
            settled.done(out.is_ok());
            out
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("a commit stopped: {e}")))??;
        if touches_cache {
            self.cache.invalidate();
        }
        Ok(out)
    }

    async fn claim_idempotency(&self, claim: &IdempotencyClaim) -> crate::Result<ClaimOutcome> {
        let mut tx = self.pool.begin().await?;
        let out = claim_in(&mut tx, claim, " FOR UPDATE").await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn release_idempotency(&self, scope: &str, key: &str, holder: &str) -> crate::Result<()> {
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND state = 'in_flight' AND holder = $3",
        )
        .bind(scope)
        .bind(key)
        .bind(holder)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn renew_idempotency(
        &self,
        claims: Vec<(String, String, String)>,
        until: chrono::DateTime<chrono::Utc>,
    ) -> crate::Result<()> {
        let mut tx = self.pool.begin().await?;
        for (scope, key, holder) in &claims {
            sqlx::query(
                "UPDATE idempotency_keys SET locked_until = $4 \
                 WHERE scope = $1 AND key = $2 AND holder = $3 AND state = 'in_flight'",
            )
            .bind(scope)
            .bind(key)
            .bind(holder)
            .bind(until)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn claim_due(
        &self,
        worker: &str,
        now: chrono::DateTime<chrono::Utc>,
        locked_until: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> crate::Result<Vec<OutboxMessage>> {
        let mut tx = self.pool.begin().await?;
        let out = claim_due_in(
            &mut tx,
            worker,
            now,
            locked_until,
            limit,
            " FOR UPDATE OF o SKIP LOCKED",
        )
        .await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn report_attempt(&self, report: &AttemptReport) -> crate::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let out = report_in(&mut tx, report, " FOR UPDATE").await?;
        tx.commit().await?;
        if report.disable_endpoint {
            self.cache.invalidate();
        }
        Ok(out)
    }

    async fn report_attempts(&self, reports: Vec<AttemptReport>) -> crate::Result<Vec<bool>> {
        // One transaction for the dispatcher's batch, a few statements for all of it.
        if reports.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await?;
        let out = report_batch(&mut tx, &reports).await?;
        tx.commit().await?;
        if reports.iter().any(|r| r.disable_endpoint) {
            self.cache.invalidate();
        }
        Ok(out)
    }

    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: chrono::DateTime<chrono::Utc>,
        until: chrono::DateTime<chrono::Utc>,
    ) -> crate::Result<bool> {
        let mut c = self.pool.acquire().await?;
        try_lease_in(&mut c, name, holder, now, until).await
    }

    async fn backup_to(&self, _path: &std::path::Path) -> crate::Result<()> {
        Err(StoreError::Unsupported(
            "PostgreSQL is backed up with its own tools: pg_dump for logical backups, or base backups with WAL archiving (pg_basebackup) for point-in-time recovery",
        ))
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
