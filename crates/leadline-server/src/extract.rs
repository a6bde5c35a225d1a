//! Extractors: JSON bodies and queries in our error shape, and authentication.

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use leadline_core::api_key::{ApiKey, KeyKind, hash_key, looks_like_key};
use leadline_core::tenant::{Tenant, TenantStatus};
use leadline_store::Scoped;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use leadline_core::audit::ActorType;

use crate::app::AppState;
use crate::effects::Effects;
use crate::error::ApiError;

/// Largest accepted body.
pub const MAX_BODY: usize = 64 * 1024;

/// A JSON body: 415 unless `Content-Type` is JSON, 413 over 64 KiB, 400 when
/// malformed, 422 (with the field's pointer) when it does not fit the type,
/// unknown fields included.
pub struct AppJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|m| {
                let m = m.trim().to_ascii_lowercase();
                m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest("The request body could not be read.".into())
            }
        })?;
        parse_json(&bytes).map(AppJson)
    }
}

/// Parses JSON with the error classes of [`AppJson`].
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.len() > MAX_BODY {
        return Err(ApiError::PayloadTooLarge);
    }
    // Syntax first, so malformed JSON is always 400 even where the shape would
    // also be wrong (`[1,2`).
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(|e| {
        ApiError::BadRequest(format!(
            "The body is not valid JSON: {}.",
            strip_position(&e.to_string())
        ))
    })?;
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize(&mut de) {
        Ok(v) => {
            de.end().map_err(|e| {
                ApiError::BadRequest(format!(
                    "The body is not valid JSON: {}.",
                    strip_position(&e.to_string())
                ))
            })?;
            Ok(v)
        }
        Err(e) => {
            let inner = e.inner();
            if inner.is_data() {
                let pointer = to_pointer(&e.path().to_string());
                Err(ApiError::Validation(leadline_core::ValidationErrors::single(
                    pointer,
                    strip_position(&inner.to_string()),
                )))
            } else {
                Err(ApiError::BadRequest(format!(
                    "The body is not valid JSON: {}.",
                    strip_position(&inner.to_string())
                )))
            }
        }
    }
}

fn strip_position(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// `guests.adults` / `tags[2]` / `.` to `/guests/adults` / `/tags/2` / ``.
fn to_pointer(path: &str) -> String {
    if path == "." {
        return String::new();
    }
    let mut out = String::new();
    for seg in path.split('.') {
        let mut rest = seg;
        while let Some(i) = rest.find('[') {
            if i > 0 {
                out.push('/');
                out.push_str(&rest[..i]);
            }
            let end = rest[i..].find(']').map(|j| i + j).unwrap_or(rest.len());
            out.push('/');
            out.push_str(&rest[i + 1..end]);
            rest = rest.get(end + 1..).unwrap_or("");
        }
        if !rest.is_empty() {
            out.push('/');
            out.push_str(rest);
        }
    }
    out
}

/// A query string, 400 when it does not parse (unknown parameters included).
pub struct AppQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for AppQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(q)
            .map(AppQuery)
            .map_err(|e| ApiError::BadRequest(format!("Bad query string: {e}.")))
    }
}

/// The admin, authenticated by `X-Admin-Key`.
pub struct Admin;

impl<S: Send + Sync> FromRequestParts<S> for Admin
where
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let state = AppState::from_ref(state);
        let given = parts
            .headers
            .get("x-admin-key")
            .ok_or(ApiError::Unauthorized("This route needs the X-Admin-Key header."))?;
        if is_admin_key(&state, given.as_bytes()) {
            if let Some(fx) = parts.extensions.get::<Effects>() {
                fx.set_actor(ActorType::Admin, Some("admin".into()), None);
            }
            Ok(Admin)
        } else {
            Err(ApiError::Unauthorized("The admin key is not valid."))
        }
    }
}

/// Whether `given` is the admin key. Hashes are compared, so the comparison takes
/// the same time whatever the length, in constant time.
pub(crate) fn is_admin_key(state: &AppState, given: &[u8]) -> bool {
    sha2_digest(given).ct_eq(&state.admin_key_hash).into()
}

/// The key a request authenticates with, looked up once per request: the
/// idempotency layer may have found it already.
#[derive(Clone)]
struct ResolvedKey(Option<(ApiKey, Tenant)>);

/// Finds the tenant key `token`, reusing an earlier lookup of the same request.
pub(crate) async fn find_key(
    state: &AppState,
    parts: &mut Parts,
    token: &str,
) -> leadline_store::Result<Option<(ApiKey, Tenant)>> {
    if let Some(ResolvedKey(found)) = parts.extensions.get::<ResolvedKey>() {
        return Ok(found.clone());
    }
    let found = state.store.find_api_key(&hash_key(token)).await?;
    parts.extensions.insert(ResolvedKey(found.clone()));
    Ok(found)
}

pub(crate) fn sha2_digest(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

/// A tenant, authenticated by `Authorization: Bearer sk_...` or `pk_...`.
pub struct TenantAuth {
    /// The tenant.
    pub tenant: Tenant,
    /// The key used.
    pub key: ApiKey,
    state: AppState,
}

impl TenantAuth {
    /// The store bound to this tenant.
    pub fn store(&self) -> Scoped<'_> {
        Scoped::new(self.state.store.as_ref(), &self.tenant.id)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for TenantAuth
where
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let state = AppState::from_ref(state);
        let header = parts.headers.get(header::AUTHORIZATION).ok_or(ApiError::Unauthorized(
            "This route needs `Authorization: Bearer <key>`.",
        ))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or(ApiError::Unauthorized(
                "The Authorization header must be `Bearer <key>`.",
            ))?;
        if !looks_like_key(token) {
            return Err(ApiError::Unauthorized("The API key is not valid."));
        }
        let token = token.to_owned();
        let (key, tenant) = find_key(&state, parts, &token)
            .await?
            .ok_or(ApiError::Unauthorized("The API key is not valid."))?;
        if key.revoked_at.is_some() {
            // The same answer as for a key that never existed: no oracle.
            return Err(ApiError::Unauthorized("The API key is not valid."));
        }
        tracing::Span::current().record("tenant_id", tracing::field::display(&tenant.id));
        if let Some(fx) = parts.extensions.get::<Effects>() {
            let actor = match key.kind {
                KeyKind::Secret => ActorType::SecretKey,
                KeyKind::Publishable => ActorType::PublishableKey,
            };
            fx.set_actor(actor, Some(key.id.to_string()), Some(tenant.id.clone()));
        }
        if tenant.status == TenantStatus::Suspended {
            return Err(ApiError::Forbidden(
                "This account is suspended; contact the operator.".into(),
            ));
        }
        Ok(Self { tenant, key, state })
    }
}

/// Whether a publishable key of `tenant` may be used from `origin` (the `Origin`
/// header): the origin to grant CORS to, if any, or a 403.
pub(crate) fn publishable_origin(tenant: &Tenant, origin: Option<&str>) -> Result<Option<String>, ApiError> {
    let origin = origin.map(|o| o.trim_end_matches('/').to_ascii_lowercase());
    let allowed_list = &tenant.settings.allowed_origins;
    let allowed = match &origin {
        Some(o) => allowed_list.is_empty() || allowed_list.contains(o),
        None => allowed_list.is_empty(),
    };
    if allowed {
        Ok(origin)
    } else {
        Err(ApiError::Forbidden(
            "This publishable key only works from the company's allowed origins.".into(),
        ))
    }
}

/// A tenant authenticated with a secret key: the whole tenant API.
pub struct SecretKey(pub TenantAuth);

impl<S: Send + Sync> FromRequestParts<S> for SecretKey
where
    AppState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let auth = TenantAuth::from_request_parts(parts, state).await?;
        if auth.key.kind != KeyKind::Secret {
            return Err(ApiError::Forbidden(
                "A publishable key can only create leads; use a secret key.".into(),
            ));
        }
        Ok(Self(auth))
    }
}
