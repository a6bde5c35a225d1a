//! Leadline's storage: the [`Store`] trait and its two backends.
//!
//! - [`sqlite`]: the embedded default. One file, WAL, `synchronous=FULL`, every write
//!   a job for one writer thread that commits many jobs per transaction (group
//!   commit, a savepoint each), reads from a pool.
//! - [`postgres`]: for several `leadline` instances sharing one database.
//!
//! Writes go through [`Store::commit`] with a [`ChangeSet`] decided by the domain;
//! the whole set commits in one transaction or not at all. Reads of tenant-owned
//! rows take the tenant id first, and [`Scoped`] binds it once, so a handler
//! cannot forget it.

use async_trait::async_trait;
use chrono::NaiveDate;
use chrono::{DateTime, Utc};
use leadline_core::api_key::ApiKey;
use leadline_core::audit::{AuditEntry, AuditFilter};
use leadline_core::change::ChangeSet;
use leadline_core::change::IdempotentResponse;
use leadline_core::delivery::{AttemptReport, DeadLetter, MailLog, MessageKind, OutboxMessage};
use leadline_core::id::{DeadLetterId, MsgId, WebhookEndpointId};
use leadline_core::id::{LeadId, TenantId};
use leadline_core::id::{QuoteId, YachtId};
use leadline_core::lead::{Lead, LeadFilter};
use leadline_core::page::PageRequest;
use leadline_core::quote::{Booking, Quote, QuoteStatus};
use leadline_core::tenant::Tenant;
use leadline_core::webhook::WebhookEndpoint;
use leadline_core::yacht::Yacht;

mod cache;
mod common;
mod migrate;
pub mod postgres;
pub mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

/// Which database a store uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// What a refused write conflicted with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// A unique value (a slug, an id) is taken; `constraint` names the database
    /// constraint, for logs only.
    #[error("a unique value is taken ({constraint})")]
    Unique {
        /// The constraint (or index) that refused it.
        constraint: String,
    },
    /// The yacht is booked on some of the nights.
    #[error("the yacht is booked on some of these nights")]
    BookingOverlap,
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The write conflicts with what is stored.
    #[error("conflict: {0}")]
    Conflict(Conflict),
    /// The row changed since it was read (optimistic concurrency), or is gone.
    #[error("the row changed concurrently")]
    Stale,
    /// A stored value could not be read back.
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// The database URL or options are wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// The backend cannot do this; the text says what to use instead.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// The writer's queue is full: the database is behind; retry shortly.
    #[error("the database is busy")]
    Busy,
    /// The database cannot take writes now (its last commit failed, or it is
    /// shutting down); the text says why.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The file system under the database is full: nothing of the write is
    /// stored; it succeeds again once space is freed.
    #[error("the disk is full")]
    DiskFull,
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The SQLite writer's connection failed.
    #[error(transparent)]
    Sqlite(rusqlite::Error),
}

impl StoreError {
    /// Whether the write failed because the file system is full (SQLite's
    /// `SQLITE_FULL`, PostgreSQL's SQLSTATE 53100 `disk_full`).
    pub fn is_disk_full(&self) -> bool {
        match self {
            Self::DiskFull => true,
            Self::Database(sqlx::Error::Database(d)) => d.code().as_deref() == Some("53100"),
            Self::Sqlite(e) => sqlite::is_disk_full(e),
            _ => false,
        }
    }

    /// Maps a database error to [`StoreError::Conflict`] by SQLSTATE or SQLite
    /// extended code (never by message text).
    pub(crate) fn from_db(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(d) = &e {
            let code = d.code();
            // 23505: unique_violation; 2067/1555: SQLITE_CONSTRAINT_UNIQUE/PRIMARYKEY.
            if matches!(code.as_deref(), Some("23505") | Some("2067") | Some("1555")) {
                let constraint = d.constraint().map(str::to_owned).unwrap_or_else(|| "unique key".into());
                return Self::Conflict(Conflict::Unique { constraint });
            }
        }
        Self::Database(e)
    }
}

pub use cache::CACHE_TTL;
pub use leadline_core::change::Committed;
pub use sqlite::{WriteFault, WriterOptions, WriterStats};

/// A request made with an `Idempotency-Key`, as it claims its record.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    /// `admin` or the tenant id.
    pub scope: String,
    /// The client's key.
    pub key: String,
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// SHA-256 of the body, hex.
    pub fingerprint: String,
    /// When the request is claimed (the lease and the expiry count from it).
    pub now: DateTime<Utc>,
    /// Until when the claim holds if its process dies (renewed while it runs).
    pub locked_until: DateTime<Utc>,
    /// When the record may be forgotten.
    pub expires_at: DateTime<Utc>,
    /// This claim: `<instance>/<unique>`. An in-flight record held by another
    /// claim of the same instance is taken over: the instance knows it no longer
    /// runs (the caller checks its own running requests first).
    pub holder: String,
    /// This process is the only one serving the database (SQLite's server holds
    /// a lock), so any in-flight record not running here is dead and taken over.
    pub exclusive: bool,
}

impl IdempotencyClaim {
    /// The instance part of [`IdempotencyClaim::holder`].
    pub fn instance(&self) -> &str {
        self.holder.split_once('/').map_or(self.holder.as_str(), |(i, _)| i)
    }

    /// Whether an existing record is this claim's to take over: it expired; or
    /// it is the same request, in flight, and its holder is gone (its lease ran
    /// out, it was this instance's own, or this process serves alone).
    pub fn may_take_over(&self, found: &FoundClaim<'_>) -> bool {
        let holder_gone = found.locked_until <= self.now
            || self.exclusive
            || found
                .holder
                .is_some_and(|h| h.split_once('/').is_some_and(|(i, _)| i == self.instance()));
        found.expires_at <= self.now || (found.in_flight && found.same && holder_gone)
    }
}

/// An existing idempotency record, as a claim finds it.
#[derive(Debug, Clone)]
pub struct FoundClaim<'a> {
    /// Same method, path and body.
    pub same: bool,
    /// Still running (not done).
    pub in_flight: bool,
    /// Its lease.
    pub locked_until: DateTime<Utc>,
    /// Its expiry.
    pub expires_at: DateTime<Utc>,
    /// The instance holding the in-flight claim, if any.
    pub holder: Option<&'a str>,
}

/// What claiming an idempotency record found.
// Returned once per request and matched at once: boxing `Done` would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The request is ours to run.
    Claimed,
    /// The same request is running now.
    InFlight,
    /// The key was used for another request (method, path or body).
    Mismatch,
    /// The request ran already: its response.
    Done(IdempotentResponse),
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The reads both backends share, written once (`reads.rs`, compiled into each
/// backend against its own database type).
#[async_trait]
pub trait Reads: Send + Sync {
    /// A key by the hash of its text, with its tenant.
    async fn find_api_key(&self, hash: &str) -> Result<Option<(ApiKey, Tenant)>>;

    /// A tenant's endpoints, oldest first.
    async fn list_endpoints(&self, tenant: &TenantId) -> Result<Vec<WebhookEndpoint>>;

    /// A tenant by id (admin scope).
    async fn get_tenant(&self, id: &TenantId) -> Result<Option<Tenant>>;

    /// A tenant by slug (admin scope).
    async fn get_tenant_by_slug(&self, slug: &str) -> Result<Option<Tenant>>;

    /// Tenants, newest first.
    async fn list_tenants(&self, page: &PageRequest) -> Result<Vec<Tenant>>;

    /// A tenant's keys, newest first.
    async fn list_api_keys(&self, tenant: &TenantId) -> Result<Vec<ApiKey>>;

    /// A tenant's lead (erased leads are gone).
    async fn get_lead(&self, tenant: &TenantId, id: &LeadId) -> Result<Option<Lead>>;

    /// A tenant's leads, newest first; fetches up to `page.limit + 1`.
    async fn list_leads(&self, tenant: &TenantId, filter: &LeadFilter, page: &PageRequest) -> Result<Vec<Lead>>;

    /// Audit entries, newest first; fetches up to `page.limit + 1`.
    async fn list_audit(&self, filter: &AuditFilter, page: &PageRequest) -> Result<Vec<AuditEntry>>;

    /// A message by id (any tenant; for workers and tests).
    async fn get_message(&self, id: &MsgId) -> Result<Option<OutboxMessage>>;

    /// Pending messages in all.
    async fn outbox_pending(&self) -> Result<i64>;

    /// A tenant's endpoint.
    async fn get_endpoint(&self, tenant: &TenantId, id: &WebhookEndpointId) -> Result<Option<WebhookEndpoint>>;

    /// A tenant's mail logs, newest first; fetches up to `page.limit + 1`.
    async fn list_mail_logs(&self, tenant: &TenantId, page: &PageRequest) -> Result<Vec<MailLog>>;

    /// A tenant's dead letters, newest first, optionally of one kind.
    async fn list_dead_letters(
        &self,
        tenant: &TenantId,
        kind: Option<MessageKind>,
        page: &PageRequest,
    ) -> Result<Vec<DeadLetter>>;

    /// A dead letter, of `tenant` when given.
    async fn get_dead_letter(&self, tenant: Option<&TenantId>, id: &DeadLetterId) -> Result<Option<DeadLetter>>;

    /// A tenant's yacht (archived ones included).
    async fn get_yacht(&self, tenant: &TenantId, id: &YachtId) -> Result<Option<Yacht>>;

    /// A tenant's yachts, newest first; fetches up to `page.limit + 1`.
    async fn list_yachts(&self, tenant: &TenantId, include_archived: bool, page: &PageRequest) -> Result<Vec<Yacht>>;

    /// A tenant's quote.
    async fn get_quote(&self, tenant: &TenantId, id: &QuoteId) -> Result<Option<Quote>>;

    /// A quote by its public token (any tenant).
    async fn get_quote_by_token(&self, token: &str) -> Result<Option<Quote>>;

    /// A tenant's quotes, newest first, optionally of one lead or status.
    async fn list_quotes(
        &self,
        tenant: &TenantId,
        lead: Option<&LeadId>,
        status: Option<QuoteStatus>,
        page: &PageRequest,
    ) -> Result<Vec<Quote>>;

    /// A yacht's bookings with a night in `[from, to)`.
    async fn list_bookings(
        &self,
        tenant: &TenantId,
        yacht: &YachtId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<Booking>>;

    /// A yacht's sent, unexpired quotes with a night in `[from, to)` (holds).
    async fn list_held_quotes(
        &self,
        tenant: &TenantId,
        yacht: &YachtId,
        from: NaiveDate,
        to: NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<Vec<Quote>>;

    /// Sent quotes whose validity ended before `now` (any tenant), at most `limit`.
    async fn stale_quotes(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Quote>>;
}

/// The storage operations Leadline needs, identical on every backend.
#[async_trait]
pub trait Store: Reads + Send + Sync + 'static {
    /// Which database this is.
    fn backend(&self) -> Backend;

    /// Applies pending migrations (safe to run from several instances at once).
    async fn migrate(&self) -> Result<()>;

    /// Whether the database answers and every migration is applied.
    async fn ready(&self) -> Result<bool>;

    /// Why writes cannot commit now, when the store knows (the SQLite writer's
    /// last commit and probe failed); `None` when they can, as far as it knows.
    fn write_fault(&self) -> Option<WriteFault> {
        None
    }

    /// Commits a change set atomically.
    async fn commit(&self, changes: ChangeSet) -> Result<Committed>;

    /// Claims the idempotency record of a request (see [`ClaimOutcome`]). An
    /// expired record, or an in-flight one whose lease ran out (its process died
    /// before committing anything), is taken over.
    async fn claim_idempotency(&self, claim: &IdempotencyClaim) -> Result<ClaimOutcome>;

    /// Forgets an in-flight claim if `holder` still holds it (the request failed
    /// with a 5xx; the client may retry).
    async fn release_idempotency(&self, scope: &str, key: &str, holder: &str) -> Result<()>;

    /// Extends to `until` the lease of these in-flight claims `(scope, key,
    /// holder)`, each only while that holder still holds it.
    async fn renew_idempotency(&self, claims: Vec<(String, String, String)>, until: DateTime<Utc>) -> Result<()>;

    /// Claims up to `limit` due messages of active tenants for `worker` until
    /// `locked_until` (a message whose lease ran out is due again).
    async fn claim_due(
        &self,
        worker: &str,
        now: DateTime<Utc>,
        locked_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>>;

    /// Records an attempt and its consequences (delivered, retry later, or dead
    /// letter; mail log; endpoint disabled on 410), if `report.worker` still holds
    /// the message. Returns whether it did.
    async fn report_attempt(&self, report: &AttemptReport) -> Result<bool>;

    /// [`Store::report_attempt`] for several messages at once (the dispatcher's
    /// batch): all are recorded, or none when the call fails.
    async fn report_attempts(&self, reports: Vec<AttemptReport>) -> Result<Vec<bool>> {
        let mut out = Vec::with_capacity(reports.len());
        for r in &reports {
            out.push(self.report_attempt(r).await?);
        }
        Ok(out)
    }

    /// Takes or renews the lease of job `name` for `holder` until `until`, if it is
    /// free (expired, or already `holder`'s). Returns whether `holder` has it.
    async fn try_lease(&self, name: &str, holder: &str, now: DateTime<Utc>, until: DateTime<Utc>) -> Result<bool>;

    /// Writes a consistent copy of the database to `path` while writes go on.
    /// PostgreSQL answers [`StoreError::Unsupported`].
    async fn backup_to(&self, path: &std::path::Path) -> Result<()>;

    /// Closes connections.
    async fn close(&self);
}

/// Opens the store a database URL names (`sqlite://...` or `postgres://...`).
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>> {
    open_with(url, &WriterOptions::default()).await
}

/// Like [`open`], with the SQLite writer's batching and queue bounds (PostgreSQL
/// has no single writer and ignores them).
pub async fn open_with(url: &str, writer: &WriterOptions) -> Result<std::sync::Arc<dyn Store>> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(sqlite::SqliteStore::open_with(url, writer).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(std::sync::Arc::new(postgres::PgStore::open(url).await?))
    } else {
        Err(StoreError::Config(
            "DATABASE_URL must start with sqlite:// or postgres://".into(),
        ))
    }
}

/// A store bound to one tenant: every read goes through the tenant id given once.
#[derive(Clone, Copy)]
pub struct Scoped<'a> {
    store: &'a dyn Store,
    tenant: &'a TenantId,
}

impl<'a> Scoped<'a> {
    /// Binds `store` to `tenant`.
    pub fn new(store: &'a dyn Store, tenant: &'a TenantId) -> Self {
        Self { store, tenant }
    }

    /// The tenant.
    pub fn tenant(&self) -> &TenantId {
        self.tenant
    }

    /// The tenant's lead.
    pub async fn lead(&self, id: &LeadId) -> Result<Option<Lead>> {
        self.store.get_lead(self.tenant, id).await
    }

    /// The tenant's leads.
    pub async fn leads(&self, filter: &LeadFilter, page: &PageRequest) -> Result<Vec<Lead>> {
        self.store.list_leads(self.tenant, filter, page).await
    }
}
