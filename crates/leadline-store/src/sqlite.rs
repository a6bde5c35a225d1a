//! The embedded SQLite backend: one file, WAL, `synchronous=FULL`, foreign keys on.
//!
//! SQLite allows one writer at a time, so every write goes through one connection
//! behind a mutex and opens with `BEGIN IMMEDIATE` (it takes the write lock at
//! once, so a transaction never fails half-way for want of it). Reads use a pool.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection};
use tokio::sync::Mutex;

use crate::common::common_queries;
use crate::migrate::{CREATE_TABLE, Migration, SQLITE};
use crate::{Backend, Store};

type Db = sqlx::Sqlite;
type Conn = SqliteConnection;

common_queries!();

/// SQLite has one writer, so two leads can never race for "first".
async fn lock_dedupe(_conn: &mut Conn, _key: &str) -> crate::Result<()> {
    Ok(())
}

/// The SQLite store.
pub struct SqliteStore {
    writer: Mutex<SqliteConnection>,
    readers: sqlx::SqlitePool,
}

impl SqliteStore {
    /// Opens (creating when missing) the database file a `sqlite://` URL names.
    pub async fn open(url: &str) -> crate::Result<Self> {
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
        let writer = SqliteConnection::connect_with(&opts).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .connect_with(opts.read_only(true))
            .await?;
        Ok(Self {
            writer: Mutex::new(writer),
            readers,
        })
    }

    /// Runs `f` in a write transaction on the writer connection.
    async fn write<T>(
        &self,
        f: impl for<'c> FnOnce(&'c mut Conn) -> futures_core::future::BoxFuture<'c, crate::Result<T>>,
    ) -> crate::Result<T> {
        let mut conn = self.writer.lock().await;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        match f(&mut conn).await {
            Ok(v) => match sqlx::query("COMMIT").execute(&mut *conn).await {
                Ok(_) => Ok(v),
                Err(e) => {
                    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                    Err(e.into())
                }
            },
            Err(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                Err(e)
            }
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn migrate(&self) -> crate::Result<()> {
        self.write(|conn| {
            Box::pin(async move {
                sqlx::query(CREATE_TABLE).execute(&mut *conn).await?;
                let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations")
                    .fetch_all(&mut *conn)
                    .await?;
                let pending: Vec<&Migration> = SQLITE.iter().filter(|m| !applied.contains(&m.version)).collect();
                for m in pending {
                    sqlx::Executor::execute(&mut *conn, m.sql).await?;
                    sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                        .bind(m.version)
                        .bind(m.name)
                        .bind(chrono::Utc::now().to_rfc3339())
                        .execute(&mut *conn)
                        .await?;
                    tracing::info!(version = m.version, name = m.name, "applied migration");
                }
                Ok(())
            })
        })
        .await
    }

    async fn ready(&self) -> crate::Result<bool> {
        let latest = SQLITE.last().map(|m| m.version).unwrap_or(0);
        let v: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM schema_migrations")
            .fetch_one(&self.readers)
            .await?;
        Ok(v == Some(latest))
    }

    async fn commit(&self, changes: ChangeSet) -> crate::Result<Committed> {
        self.write(|conn| Box::pin(apply_set(conn, changes))).await
    }

    async fn claim_idempotency(&self, claim: &IdempotencyClaim) -> crate::Result<ClaimOutcome> {
        let claim = claim.clone();
        self.write(|conn| Box::pin(async move { claim_in(conn, &claim, "").await }))
            .await
    }

    async fn release_idempotency(&self, scope: &str, key: &str) -> crate::Result<()> {
        let (scope, key) = (scope.to_owned(), key.to_owned());
        self.write(|conn| {
            Box::pin(async move {
                sqlx::query("DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND state = 'in_flight'")
                    .bind(scope)
                    .bind(key)
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            })
        })
        .await
    }

    async fn list_audit(&self, filter: &AuditFilter, page: &PageRequest) -> crate::Result<Vec<AuditEntry>> {
        q_list_audit(&self.readers, filter, page).await
    }

    async fn get_tenant(&self, id: &TenantId) -> crate::Result<Option<Tenant>> {
        q_get_tenant(&self.readers, id).await
    }

    async fn get_tenant_by_slug(&self, slug: &str) -> crate::Result<Option<Tenant>> {
        q_get_tenant_by_slug(&self.readers, slug).await
    }

    async fn list_tenants(&self, page: &PageRequest) -> crate::Result<Vec<Tenant>> {
        q_list_tenants(&self.readers, page).await
    }

    async fn find_api_key(&self, hash: &str) -> crate::Result<Option<(ApiKey, Tenant)>> {
        q_find_api_key(&self.readers, hash).await
    }

    async fn list_api_keys(&self, tenant: &TenantId) -> crate::Result<Vec<ApiKey>> {
        q_list_api_keys(&self.readers, tenant).await
    }

    async fn get_lead(&self, tenant: &TenantId, id: &LeadId) -> crate::Result<Option<Lead>> {
        q_get_lead(&self.readers, tenant, id).await
    }

    async fn list_leads(&self, tenant: &TenantId, filter: &LeadFilter, page: &PageRequest) -> crate::Result<Vec<Lead>> {
        q_list_leads(&self.readers, tenant, filter, page).await
    }

    async fn claim_due(
        &self,
        worker: &str,
        now: chrono::DateTime<chrono::Utc>,
        locked_until: chrono::DateTime<chrono::Utc>,
        limit: u32,
    ) -> crate::Result<Vec<OutboxMessage>> {
        let worker = worker.to_owned();
        self.write(|conn| Box::pin(async move { claim_due_in(conn, &worker, now, locked_until, limit, "").await }))
            .await
    }

    async fn report_attempt(&self, report: &AttemptReport) -> crate::Result<bool> {
        let report = report.clone();
        self.write(|conn| Box::pin(async move { report_in(conn, &report, "").await }))
            .await
    }

    async fn get_message(&self, id: &MsgId) -> crate::Result<Option<OutboxMessage>> {
        q_get_message(&self.readers, id).await
    }

    async fn outbox_pending(&self) -> crate::Result<i64> {
        q_outbox_pending(&self.readers).await
    }

    async fn get_endpoint(&self, tenant: &TenantId, id: &WebhookEndpointId) -> crate::Result<Option<WebhookEndpoint>> {
        q_get_endpoint(&self.readers, tenant, id).await
    }

    async fn list_endpoints(&self, tenant: &TenantId) -> crate::Result<Vec<WebhookEndpoint>> {
        q_list_endpoints(&self.readers, tenant).await
    }

    async fn list_mail_logs(&self, tenant: &TenantId, page: &PageRequest) -> crate::Result<Vec<MailLog>> {
        q_list_mail_logs(&self.readers, tenant, page).await
    }

    async fn list_dead_letters(
        &self,
        tenant: &TenantId,
        kind: Option<MessageKind>,
        page: &PageRequest,
    ) -> crate::Result<Vec<DeadLetter>> {
        q_list_dead_letters(&self.readers, tenant, kind, page).await
    }

    async fn get_dead_letter(&self, tenant: Option<&TenantId>, id: &DeadLetterId) -> crate::Result<Option<DeadLetter>> {
        q_get_dead_letter(&self.readers, tenant, id).await
    }

    async fn close(&self) {
        self.readers.close().await;
        let conn = self.writer.lock().await;
        // Checkpoint so the main file holds everything; the connection closes on drop.
        let mut conn = conn;
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut *conn).await;
    }
}
