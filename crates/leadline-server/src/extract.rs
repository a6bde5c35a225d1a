//! Extractors: JSON bodies and queries in our error shape, and authentication.

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use leadline_core::api_key::{ApiKey, KeyKind};
use leadline_core::tenant::{Tenant, TenantStatus};
use leadline_store::Scoped;
use serde::de::DeserializeOwned;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

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
    serde_json::from_slice::<NulFree>(bytes).map_err(|e| {
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
        Err(e) if e.inner().is_data() && e.inner().to_string().starts_with("invalid type: floating point") => {
            // JSON has one number type: `2.0` is the integer 2 to JSON Schema and to
            // most clients' encoders. Only a body that needs it pays for the detour.
            let mut v: serde_json::Value = serde_json::from_slice(bytes)
                .map_err(|_| ApiError::BadRequest("The body is not valid JSON.".into()))?;
            integral_floats_to_integers(&mut v);
            serde_path_to_error::deserialize(v).map_err(|e| {
                ApiError::Validation(leadline_core::ValidationErrors::single(
                    to_pointer(&e.path().to_string()),
                    strip_position(&e.inner().to_string()),
                ))
            })
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

/// Any JSON document whose strings hold no NUL character (`\u0000`), which no
/// field takes and PostgreSQL cannot store: such a body is malformed (400), the
/// same on both backends.
struct NulFree;

impl<'de> serde::Deserialize<'de> for NulFree {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NulFreeVisitor)
    }
}

struct NulFreeVisitor;

impl<'de> serde::de::Visitor<'de> for NulFreeVisitor {
    type Value = NulFree;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("JSON without NUL characters")
    }
    fn visit_bool<E>(self, _: bool) -> Result<NulFree, E> {
        Ok(NulFree)
    }
    fn visit_i64<E>(self, _: i64) -> Result<NulFree, E> {
        Ok(NulFree)
    }
    fn visit_u64<E>(self, _: u64) -> Result<NulFree, E> {
        Ok(NulFree)
    }
    fn visit_f64<E>(self, _: f64) -> Result<NulFree, E> {
        Ok(NulFree)
    }
    fn visit_unit<E>(self) -> Result<NulFree, E> {
        Ok(NulFree)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<NulFree, E> {
        if v.contains('\0') {
            Err(E::custom("a string holds a NUL character (\\u0000)"))
        } else {
            Ok(NulFree)
        }
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<NulFree, A::Error> {
        while seq.next_element::<NulFree>()?.is_some() {}
        Ok(NulFree)
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<NulFree, A::Error> {
        while map.next_entry::<NulFree, NulFree>()?.is_some() {}
        Ok(NulFree)
    }
}

/// Rewrites every number with no fractional part (`3.0`, `1e3`) as an integer,
/// where it fits one.
fn integral_floats_to_integers(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
            {
                // `as` saturates; only values that survive the round trip are kept.
                if f >= 0.0 && f <= u64::MAX as f64 && (f as u64) as f64 == f {
                    *v = Value::from(f as u64);
                } else if f < 0.0 && f >= i64::MIN as f64 && (f as i64) as f64 == f {
                    *v = Value::from(f as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_to_integers),
        Value::Object(map) => map.values_mut().for_each(integral_floats_to_integers),
        _ => {}
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
        if q.contains("%00") {
            return Err(ApiError::BadRequest(
                "Bad query string: a value holds a NUL character (%00).".into(),
            ));
        }
        serde_urlencoded::from_str(q)
            .map(AppQuery)
            .map_err(|e| ApiError::BadRequest(format!("Bad query string: {e}.")))
    }
}

/// The request's [`Principal`], as the authentication layer found it.
fn principal(parts: &Parts) -> Result<&Principal, ApiError> {
    parts
        .extensions
        .get::<Principal>()
        .ok_or_else(|| ApiError::internal("the authentication layer did not run"))
}

/// The admin, authenticated by `X-Admin-Key`.
pub struct Admin;

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match principal(parts)? {
            Principal::Admin => Ok(Admin),
            Principal::Missing(why) | Principal::Invalid(why) => Err(ApiError::Unauthorized(why)),
            Principal::Key { .. } => Err(ApiError::Unauthorized("This route needs the X-Admin-Key header.")),
        }
    }
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
        let (key, tenant) = match principal(parts)? {
            Principal::Key { key, tenant } => (ApiKey::clone(key), Tenant::clone(tenant)),
            Principal::Missing(why) | Principal::Invalid(why) => return Err(ApiError::Unauthorized(why)),
            Principal::Admin => {
                return Err(ApiError::Unauthorized(
                    "This route needs `Authorization: Bearer <key>`.",
                ));
            }
        };
        if tenant.status == TenantStatus::Suspended {
            return Err(ApiError::Forbidden(
                "This account is suspended; contact the operator.".into(),
            ));
        }
        Ok(Self {
            tenant,
            key,
            state: AppState::from_ref(state),
        })
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
