//! Authentication, once per request. The effects middleware calls
//! [`authenticate`] before anything else reads credentials and puts the
//! [`Principal`] in the request's extensions; the audit entry, the idempotency
//! scope and the extractors ([`crate::extract::Admin`], `TenantAuth`,
//! `SecretKey`) only read it. `/admin/` routes take `X-Admin-Key`; every other
//! route `Authorization: Bearer <key>`.

use axum::http::header;
use axum::http::request::Parts;
use leadline_core::api_key::{ApiKey, KeyKind, hash_key, looks_like_key};
use leadline_core::audit::ActorType;
use leadline_core::id::TenantId;
use leadline_core::tenant::Tenant;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// Who a request acts as.
#[derive(Debug, Clone)]
pub enum Principal {
    /// No credentials for this route; the 401 to answer where some are needed.
    Missing(&'static str),
    /// Credentials that do not authenticate; the 401 to answer.
    Invalid(&'static str),
    /// The operator, with the admin key.
    Admin,
    /// A tenant's key, not revoked (the tenant may be suspended: its routes
    /// answer 403, and the audit entry still names it).
    Key {
        /// The key.
        key: Box<ApiKey>,
        /// Its tenant.
        tenant: Box<Tenant>,
    },
}

impl Principal {
    /// The actor of the audit entry: its type, id and tenant.
    pub fn actor(&self) -> (ActorType, Option<String>, Option<TenantId>) {
        match self {
            Self::Missing(_) | Self::Invalid(_) => (ActorType::Anonymous, None, None),
            Self::Admin => (ActorType::Admin, Some("admin".into()), None),
            Self::Key { key, tenant } => {
                let actor = match key.kind {
                    KeyKind::Secret => ActorType::SecretKey,
                    KeyKind::Publishable => ActorType::PublishableKey,
                };
                (actor, Some(key.id.to_string()), Some(tenant.id.clone()))
            }
        }
    }
}

/// Reads the request's credentials and finds who they are. A failed key lookup
/// (the database) is an error; anything wrong with the credentials is a
/// [`Principal`] that the extractors refuse.
pub async fn authenticate(state: &AppState, parts: &Parts) -> Result<Principal, ApiError> {
    let path = parts.uri.path();
    if path.starts_with("/admin/") {
        let Some(given) = parts.headers.get("x-admin-key") else {
            return Ok(Principal::Missing("This route needs the X-Admin-Key header."));
        };
        return Ok(if is_admin_key(state, given.as_bytes()) {
            Principal::Admin
        } else {
            Principal::Invalid("The admin key is not valid.")
        });
    }
    let Some(header) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok(Principal::Missing("This route needs `Authorization: Bearer <key>`."));
    };
    let Some(token) = header
        .to_str()
        .ok()
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
    else {
        return Ok(Principal::Invalid("The Authorization header must be `Bearer <key>`."));
    };
    const NOT_VALID: &str = "The API key is not valid.";
    if !looks_like_key(token) {
        return Ok(Principal::Invalid(NOT_VALID));
    }
    Ok(match state.store.find_api_key(&hash_key(token)).await? {
        // A revoked key answers as one that never existed: no oracle.
        Some((key, _)) if key.revoked_at.is_some() => Principal::Invalid(NOT_VALID),
        Some((key, tenant)) => {
            tracing::Span::current().record("tenant_id", tracing::field::display(&tenant.id));
            Principal::Key {
                key: Box::new(key),
                tenant: Box::new(tenant),
            }
        }
        None => Principal::Invalid(NOT_VALID),
    })
}

/// Whether `given` is the admin key. Hashes are compared, so the comparison takes
/// the same time whatever the length, in constant time.
fn is_admin_key(state: &AppState, given: &[u8]) -> bool {
    sha2_digest(given).ct_eq(&state.admin_key_hash).into()
}

/// SHA-256 of `b`.
pub fn sha2_digest(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}
