//! The audit log: who did what to which resource, when, from where, and with what
//! outcome. Details pass PII redaction before they are stored.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::id::{AuditId, TenantId};

/// Who acted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema, strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum ActorType {
    /// The operator, with the admin key.
    Admin,
    /// A tenant's secret key.
    SecretKey,
    /// A tenant's publishable key.
    PublishableKey,
    /// A client through a public quote link.
    PublicLink,
    /// Leadline itself (workers, janitor, CLI).
    System,
    /// Nobody authenticated (a refused request).
    Anonymous,
}

impl ActorType {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// From the stored form.
    pub fn from_db(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// `aud_` id.
    pub id: AuditId,
    /// The tenant concerned; none for admin-wide actions and unauthenticated failures.
    pub tenant_id: Option<TenantId>,
    /// When.
    pub at: DateTime<Utc>,
    /// Who.
    pub actor_type: ActorType,
    /// The key id, or `admin`, or the worker's name.
    pub actor_id: Option<String>,
    /// What, e.g. `lead.create`.
    pub action: String,
    /// Kind of resource, e.g. `lead`.
    pub resource_type: Option<String>,
    /// Its id.
    pub resource_id: Option<String>,
    /// The request id.
    pub request_id: Option<String>,
    /// Client IP.
    pub ip: Option<String>,
    /// Client user agent (at most 256 characters).
    pub user_agent: Option<String>,
    /// HTTP status of the outcome.
    pub status: u16,
    /// Redacted details; `null` when the action has none.
    #[schema(value_type = Option<Object>)]
    pub details: serde_json::Value,
}

/// Which tenant's entries a listing shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditScope {
    /// Every entry, those of no tenant included (admin view).
    All,
    /// One tenant's entries.
    Tenant(TenantId),
}

/// Filters of an audit listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditFilter {
    /// Whose entries.
    pub scope: AuditScope,
    /// Exact action.
    pub action: Option<String>,
    /// At or after.
    pub since: Option<DateTime<Utc>>,
    /// Before.
    pub until: Option<DateTime<Utc>>,
    /// Exact resource id.
    pub resource_id: Option<String>,
}
