//! Change sets: everything one request changes, committed by a store in one
//! transaction or not at all.
//!
//! The domain decides what changes and builds a [`ChangeSet`]; the store only
//! writes it. Later parts (audit entries, outbox messages, idempotency records)
//! join the same set, so no change is committed without them.

use chrono::{DateTime, Utc};

use crate::api_key::ApiKey;
use crate::id::{ApiKeyId, TenantId};
use crate::lead::Lead;
use crate::tenant::Tenant;

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
}

/// Everything one request changes.
#[derive(Debug, Clone, Default)]
pub struct ChangeSet {
    /// The writes, in order.
    pub changes: Vec<Change>,
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
        Self { changes: vec![c] }
    }
}
