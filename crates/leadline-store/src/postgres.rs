//! The PostgreSQL backend, for several `leadline` instances sharing one database.

use async_trait::async_trait;
use sqlx::PgConnection;
use sqlx::postgres::PgPoolOptions;

use crate::cache::ReadCache;
use crate::migrate::POSTGRES;
use crate::{Backend, Store};

type Db = sqlx::Postgres;
type Conn = PgConnection;

/// The row-locking clause of this backend.
const ROW_LOCK: &str = " FOR UPDATE";

use crate::{ClaimOutcome, IdempotencyClaim};
use crate::{Committed, StoreError};
use leadline_core::api_key::ApiKey;
use leadline_core::audit::{AuditEntry, AuditFilter};
use leadline_core::change::ChangeSet;
use leadline_core::delivery::{AttemptReport, DeadLetter, MailLog, MessageKind, OutboxMessage};
use leadline_core::id::QuoteId;
use leadline_core::id::{DeadLetterId, MsgId, WebhookEndpointId};
use leadline_core::id::{LeadId, TenantId, YachtId};
use leadline_core::lead::{Lead, LeadFilter};
use leadline_core::page::PageRequest;
use leadline_core::quote::{Booking, Quote, QuoteStatus};
use leadline_core::tenant::Tenant;
use leadline_core::webhook::WebhookEndpoint;
use leadline_core::yacht::Yacht;
// Compiled once per backend, against its own `Db`.
#[allow(clippy::duplicate_mod)]
#[path = "reads.rs"]
mod reads;
mod write;
use reads::*;
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

    async fn commit(&self, changes: ChangeSet) -> crate::Result<Committed> {
        let touches_cache = ReadCache::touched_by(&changes);
        let mut tx = self.pool.begin().await?;
        let out = apply_set(&mut tx, changes).await?;
        tx.commit().await?;
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

    async fn list_audit(&self, filter: &AuditFilter, page: &PageRequest) -> crate::Result<Vec<AuditEntry>> {
        q_list_audit(&self.pool, filter, page).await
    }

    async fn get_tenant(&self, id: &TenantId) -> crate::Result<Option<Tenant>> {
        q_get_tenant(&self.pool, id).await
    }

    async fn get_tenant_by_slug(&self, slug: &str) -> crate::Result<Option<Tenant>> {
        q_get_tenant_by_slug(&self.pool, slug).await
    }

    async fn list_tenants(&self, page: &PageRequest) -> crate::Result<Vec<Tenant>> {
        q_list_tenants(&self.pool, page).await
    }

    async fn find_api_key(&self, hash: &str) -> crate::Result<Option<(ApiKey, Tenant)>> {
        self.cache.key(hash, q_find_api_key(&self.pool, hash)).await
    }

    async fn list_api_keys(&self, tenant: &TenantId) -> crate::Result<Vec<ApiKey>> {
        q_list_api_keys(&self.pool, tenant).await
    }

    async fn get_lead(&self, tenant: &TenantId, id: &LeadId) -> crate::Result<Option<Lead>> {
        q_get_lead(&self.pool, tenant, id).await
    }

    async fn list_leads(&self, tenant: &TenantId, filter: &LeadFilter, page: &PageRequest) -> crate::Result<Vec<Lead>> {
        q_list_leads(&self.pool, tenant, filter, page).await
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
        // One transaction for the dispatcher's batch, not one per message; rows are
        // locked in id order, so two instances' batches cannot deadlock on them.
        let mut order: Vec<usize> = (0..reports.len()).collect();
        order.sort_by(|a, b| reports[*a].message_id.as_str().cmp(reports[*b].message_id.as_str()));
        let mut tx = self.pool.begin().await?;
        let mut out = vec![false; reports.len()];
        for i in order {
            out[i] = report_in(&mut tx, &reports[i], " FOR UPDATE").await?;
        }
        tx.commit().await?;
        if reports.iter().any(|r| r.disable_endpoint) {
            self.cache.invalidate();
        }
        Ok(out)
    }

    async fn get_message(&self, id: &MsgId) -> crate::Result<Option<OutboxMessage>> {
        q_get_message(&self.pool, id).await
    }

    async fn outbox_pending(&self) -> crate::Result<i64> {
        q_outbox_pending(&self.pool).await
    }

    async fn get_endpoint(&self, tenant: &TenantId, id: &WebhookEndpointId) -> crate::Result<Option<WebhookEndpoint>> {
        q_get_endpoint(&self.pool, tenant, id).await
    }

    async fn list_endpoints(&self, tenant: &TenantId) -> crate::Result<Vec<WebhookEndpoint>> {
        self.cache.endpoints(tenant, q_list_endpoints(&self.pool, tenant)).await
    }

    async fn list_mail_logs(&self, tenant: &TenantId, page: &PageRequest) -> crate::Result<Vec<MailLog>> {
        q_list_mail_logs(&self.pool, tenant, page).await
    }

    async fn list_dead_letters(
        &self,
        tenant: &TenantId,
        kind: Option<MessageKind>,
        page: &PageRequest,
    ) -> crate::Result<Vec<DeadLetter>> {
        q_list_dead_letters(&self.pool, tenant, kind, page).await
    }

    async fn get_dead_letter(&self, tenant: Option<&TenantId>, id: &DeadLetterId) -> crate::Result<Option<DeadLetter>> {
        q_get_dead_letter(&self.pool, tenant, id).await
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

    async fn get_yacht(&self, tenant: &TenantId, id: &YachtId) -> crate::Result<Option<Yacht>> {
        q_get_yacht(&self.pool, tenant, id).await
    }

    async fn list_yachts(
        &self,
        tenant: &TenantId,
        include_archived: bool,
        page: &PageRequest,
    ) -> crate::Result<Vec<Yacht>> {
        q_list_yachts(&self.pool, tenant, include_archived, page).await
    }

    async fn get_quote(&self, tenant: &TenantId, id: &QuoteId) -> crate::Result<Option<Quote>> {
        q_get_quote(&self.pool, tenant, id).await
    }

    async fn get_quote_by_token(&self, token: &str) -> crate::Result<Option<Quote>> {
        q_get_quote_by_token(&self.pool, token).await
    }

    async fn list_quotes(
        &self,
        tenant: &TenantId,
        lead: Option<&LeadId>,
        status: Option<QuoteStatus>,
        page: &PageRequest,
    ) -> crate::Result<Vec<Quote>> {
        q_list_quotes(&self.pool, tenant, lead, status, page).await
    }

    async fn list_bookings(
        &self,
        tenant: &TenantId,
        yacht: &YachtId,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    ) -> crate::Result<Vec<Booking>> {
        q_list_bookings(&self.pool, tenant, yacht, from, to).await
    }

    async fn list_held_quotes(
        &self,
        tenant: &TenantId,
        yacht: &YachtId,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
        now: chrono::DateTime<chrono::Utc>,
    ) -> crate::Result<Vec<Quote>> {
        q_list_held_quotes(&self.pool, tenant, yacht, from, to, now).await
    }

    async fn stale_quotes(&self, now: chrono::DateTime<chrono::Utc>, limit: u32) -> crate::Result<Vec<Quote>> {
        q_stale_quotes(&self.pool, now, limit).await
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
