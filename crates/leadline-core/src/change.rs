//! Change sets: everything one request changes, committed by a store in one
//! transaction or not at all.
//!
//! The domain decides what changes and builds a [`ChangeSet`]; the store only
//! writes it. Later parts (audit entries, outbox messages, idempotency records)
//! join the same set, so no change is committed without them.

use chrono::{DateTime, Utc};

use crate::api_key::ApiKey;
use crate::audit::AuditEntry;
use crate::delivery::{MailLog, OutboxMessage};
use crate::id::{ApiKeyId, TenantId};
use crate::id::{DeadLetterId, LeadId, WebhookEndpointId};
use crate::lead::Lead;
use crate::tenant::Tenant;
use crate::webhook::WebhookEndpoint;

/// One write.
#[derive(Debug, Clone)]
pub enum Change {
    /// A new tenant; its slug must be unique.
    InsertTenant(Tenant),
    /// A tenant's new state; applies only if the stored version is `version - 1`
    /// (optimistic concurrency: a concurrent change makes this one fail).
    UpdateTenant(Tenant),
    /// A new key.
    InsertApiKey(ApiKey),
    /// Revokes a key of a tenant (no-op if already revoked).
    RevokeApiKey {
        /// Owner.
        tenant_id: TenantId,
        /// Key.
        key_id: ApiKeyId,
        /// When.
        at: DateTime<Utc>,
    },
    /// A new lead. The store marks it `duplicate_of` the earliest original (not itself
    /// a duplicate) lead of the same
    /// tenant with the same [`Lead::dedupe_key`] created at or after
    /// `duplicate_since`, deciding inside the transaction so that two concurrent
    /// submissions cannot both be first.
    InsertLead {
        /// The lead.
        lead: Lead,
        /// Start of the duplicate window.
        duplicate_since: DateTime<Utc>,
    },
    /// A lead's new state (erasure included); applies only if the stored version
    /// is `version - 1`.
    UpdateLead(Lead),
    /// An audit entry.
    InsertAudit(AuditEntry),
    /// Deletes rows past their retention, in the transaction that audits it; how
    /// many is added to [`Committed::cleaned`].
    Cleanup(Cleanup),
    /// Completes a claimed idempotency record with the response of its request.
    CompleteIdempotency(IdempotentResponse),
    /// A new yacht.
    InsertYacht(crate::yacht::Yacht),
    /// A yacht's new state; applies only if the stored version is `version - 1`.
    UpdateYacht(crate::yacht::Yacht),
    /// A new quote.
    InsertQuote(crate::quote::Quote),
    /// A quote's new state; applies only if the stored version is `version - 1`.
    UpdateQuote(crate::quote::Quote),
    /// A booking; refused (a conflict) when the yacht is booked on any of its
    /// nights, decided under a lock on the yacht so that of concurrent bookings
    /// exactly one wins.
    InsertBooking(crate::quote::Booking),
    /// A message to deliver (email or webhook).
    InsertOutbox(OutboxMessage),
    /// The delivery log of an email (with its outbox message).
    InsertMailLog(MailLog),
    /// A new webhook endpoint.
    InsertEndpoint(WebhookEndpoint),
    /// An endpoint's new state; applies only if the stored version is `version - 1`.
    UpdateEndpoint(WebhookEndpoint),
    /// Deletes an endpoint and cancels its pending deliveries.
    DeleteEndpoint {
        /// Owner.
        tenant_id: TenantId,
        /// Endpoint.
        id: WebhookEndpointId,
        /// When.
        at: DateTime<Utc>,
    },
    /// Erasure of a lead in the delivery stores: its pending messages are
    /// cancelled, and the personal data leaves outbox payloads, mail logs and dead
    /// letters. Messages added later in the same change set are untouched.
    /// (It also replaces every stored idempotent response of the tenant that
    /// holds the lead by [`ERASED_RESPONSE`], so a replay shows nothing of it.)
    EraseLeadDeliveries {
        /// Owner.
        tenant_id: TenantId,
        /// The lead.
        lead_id: LeadId,
    },
    /// Puts a dead letter's message back in the outbox with a fresh attempt count.
    ReplayDeadLetter {
        /// Owner.
        tenant_id: TenantId,
        /// The dead letter.
        id: DeadLetterId,
        /// When.
        at: DateTime<Utc>,
    },
}

/// The stored outcome of a request made with an `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentResponse {
    /// `admin` or the tenant id.
    pub scope: String,
    /// The client's key.
    pub key: String,
    /// HTTP status.
    pub status: u16,
    /// `Content-Type` of the body.
    pub content_type: Option<String>,
    /// `Location`, if any.
    pub location: Option<String>,
    /// The body.
    pub body: Vec<u8>,
    /// The claim this response completes (see `IdempotencyClaim::holder`): the
    /// record is completed only if that claim still holds it; otherwise (another
    /// request took it over) the whole change set is refused as stale. `None`
    /// completes whoever holds it.
    pub holder: Option<String>,
    /// The whole record, for a claim that was never written (a server alone on
    /// its SQLite database claims by reading, and writes the record once, with
    /// the outcome); `None` when the claim row exists.
    pub record: Option<IdempotencyRecord>,
}

/// What an idempotency record holds besides its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// SHA-256 of the body, hex.
    pub fingerprint: String,
    /// When the request was claimed.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When the record may be forgotten.
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// Writes decided inside the transaction from what the first part decided (for
/// example the response stored with an idempotency key, which names the lead a new
/// lead duplicates).
pub type Finish = Box<dyn FnOnce(&Committed) -> Vec<Change> + Send>;

/// What a commit decided inside its transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// New leads found to be duplicates: (lead, original lead).
    pub duplicates: Vec<(crate::id::LeadId, crate::id::LeadId)>,
    /// Rows deleted by [`Change::Cleanup`]s.
    pub cleaned: u64,
}

/// Rows past their retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cleanup {
    /// Idempotency records that expired at or before this time.
    IdempotencyKeys(DateTime<Utc>),
    /// Audit entries from before this time.
    Audit(DateTime<Utc>),
    /// Dead letters created before this time.
    DeadLetters(DateTime<Utc>),
    /// Mail logs, delivery attempts and finished (delivered or cancelled) outbox
    /// messages from before this time; pending and dead messages stay.
    Deliveries(DateTime<Utc>),
}

/// Everything one request changes.
#[derive(Default)]
pub struct ChangeSet {
    /// The writes, in order.
    pub changes: Vec<Change>,
    /// Writes made last, in the same transaction, from what the first ones decided.
    pub finish: Option<Finish>,
    /// Told whether the set committed, once the store knows.
    pub settled: Settled,
}

/// Told once, by the store, whether its change set committed: as soon as that is
/// known, even when the caller no longer waits for the answer (a store finishes a
/// change set it was given). Dropped untold (the set never reached a store), it
/// is told `false`.
#[derive(Default)]
pub struct Settled(Option<Box<dyn FnOnce(bool) + Send>>);

impl Settled {
    /// Calls `f` with the outcome.
    pub fn new(f: impl FnOnce(bool) + Send + 'static) -> Self {
        Self(Some(Box::new(f)))
    }

    /// Tells the outcome.
    pub fn done(mut self, committed: bool) {
        if let Some(f) = self.0.take() {
            f(committed);
        }
    }
}

impl Drop for Settled {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(false);
        }
    }
}

impl std::fmt::Debug for ChangeSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeSet")
            .field("changes", &self.changes)
            .field("finish", &self.finish.is_some())
            .finish()
    }
}

impl ChangeSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a write.
    pub fn push(&mut self, c: Change) -> &mut Self {
        self.changes.push(c);
        self
    }

    /// A set of one write.
    pub fn one(c: Change) -> Self {
        Self {
            changes: vec![c],
            ..Self::default()
        }
    }
}

/// The stored answer of an idempotent request whose lead was erased: a replay
/// answers 410 with this problem instead of the lead.
pub const ERASED_RESPONSE: &str = r#"{"type":"urn:leadline:problem:erased","title":"Gone","status":410,"detail":"This lead was erased at the data subject's request."}"#;
