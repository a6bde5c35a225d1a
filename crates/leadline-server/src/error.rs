//! The HTTP layer's error type and its RFC 9457 problem documents.
//!
//! A handler returns [`ApiError`]; its response carries a [`Problem`] in the
//! response extensions and no body. The request-id middleware renders it, adding
//! `instance` and `request_id`, so every problem names its request. Error statuses
//! that axum produces itself (404 for no route, 405) are turned into problems there
//! too.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use leadline_core::{FieldError, ValidationErrors};
use leadline_store::StoreError;
use serde::Serialize;

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// URI naming the kind of problem (`urn:leadline:problem:<slug>`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the kind.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What went wrong in this request.
    pub detail: String,
    /// The request path.
    pub instance: String,
    /// The request id (also in `X-Request-Id`).
    pub request_id: String,
    /// Field errors of a validation problem.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl Problem {
    /// The JSON body, built from its strings and numbers (so it cannot fail).
    pub fn to_body(&self) -> Vec<u8> {
        use serde_json::{Map, Value};
        let mut m = Map::new();
        m.insert("type".into(), Value::String(self.kind.clone()));
        m.insert("title".into(), Value::String(self.title.clone()));
        m.insert("status".into(), Value::from(self.status));
        m.insert("detail".into(), Value::String(self.detail.clone()));
        m.insert("instance".into(), Value::String(self.instance.clone()));
        m.insert("request_id".into(), Value::String(self.request_id.clone()));
        if !self.errors.is_empty() {
            let errors = self
                .errors
                .iter()
                .map(|e| {
                    let mut f = Map::new();
                    f.insert("pointer".into(), Value::String(e.pointer.clone()));
                    f.insert("detail".into(), Value::String(e.detail.clone()));
                    Value::Object(f)
                })
                .collect();
            m.insert("errors".into(), Value::Array(errors));
        }
        Value::Object(m).to_string().into_bytes()
    }

    /// A problem of `status` with a slug and detail; instance and request id are
    /// filled in by the middleware.
    pub fn new(status: StatusCode, slug: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("urn:leadline:problem:{slug}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            instance: String::new(),
            request_id: String::new(),
            errors: Vec::new(),
        }
    }

    /// The generic problem for a bare error status.
    pub fn for_status(status: StatusCode) -> Self {
        let (slug, detail) = match status.as_u16() {
            404 => ("not-found", "There is nothing at this address."),
            405 => ("method-not-allowed", "This method is not allowed on this resource."),
            408 => ("timeout", "The request took too long."),
            413 => ("payload-too-large", "The request body is larger than 64 KiB."),
            s if s >= 500 => (
                "internal",
                "Something went wrong on our side; the request id identifies it in our logs.",
            ),
            _ => ("error", "The request failed."),
        };
        Self::new(status, slug, detail)
    }
}

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Field validation failed (422).
    #[error("validation failed: {0}")]
    Validation(ValidationErrors),
    /// Malformed request (400).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// Missing or bad credentials (401).
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// Credentials valid but not allowed here (403).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// Not found, or not yours (404).
    #[error("not found")]
    NotFound,
    /// The state does not allow it (409).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Body over the limit (413).
    #[error("payload too large")]
    PayloadTooLarge,
    /// Not JSON (415).
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// Not implemented on this deployment (501).
    #[error("not implemented: {0}")]
    NotImplemented(String),
    /// The database cannot take the write now (503, with `Retry-After`): its
    /// queue is full, or its last commit failed. Nothing of the request is stored.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The database's disk is full (503, with `Retry-After`); nothing of the
    /// request is stored, and writes succeed again once space is freed.
    #[error("disk full")]
    DiskFull,
    /// A unique value (a slug) is taken (409).
    #[error("taken")]
    Taken,
    /// The resource changed while the request ran: it lost a race (409).
    #[error("stale")]
    Stale,
    /// The yacht is booked on some of the nights (409).
    #[error("booked")]
    Booked,
    /// A bug or an outage (500); the cause, with its whole chain of sources, is
    /// logged with the request id, never sent.
    #[error("internal error: {0}")]
    Internal(Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// An internal error from any cause: an error (its sources are kept) or a
    /// message.
    pub fn internal(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Internal(e.into())
    }

    /// The cause of an internal error and each of its sources, `: `-joined.
    pub fn cause_chain(&self) -> Option<String> {
        let Self::Internal(e) = self else { return None };
        let mut out = e.to_string();
        let mut next = e.source();
        while let Some(s) = next {
            out.push_str(": ");
            out.push_str(&s.to_string());
            next = s.source();
        }
        Some(out)
    }

    /// The problem document for this error.
    pub fn problem(&self) -> Problem {
        match self {
            Self::Validation(e) => {
                let mut p = Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation",
                    "The request has invalid fields; see `errors`.",
                );
                p.errors = e.0.clone();
                p
            }
            Self::BadRequest(d) => Problem::new(StatusCode::BAD_REQUEST, "bad-request", d.clone()),
            Self::Unauthorized(d) => Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", *d),
            Self::Forbidden(d) => Problem::new(StatusCode::FORBIDDEN, "forbidden", d.clone()),
            Self::NotFound => Problem::for_status(StatusCode::NOT_FOUND),
            Self::Conflict(d) => Problem::new(StatusCode::CONFLICT, "conflict", d.clone()),
            Self::Taken => Problem::new(
                StatusCode::CONFLICT,
                "conflict",
                "A resource with the same unique value already exists.",
            ),
            Self::Stale => Problem::new(
                StatusCode::CONFLICT,
                "conflict",
                "The resource changed while this request ran; read it again and retry.",
            ),
            Self::Booked => Problem::new(
                StatusCode::CONFLICT,
                "conflict",
                "The yacht is booked on some of these nights.",
            ),
            Self::PayloadTooLarge => Problem::for_status(StatusCode::PAYLOAD_TOO_LARGE),
            Self::UnsupportedMediaType => Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Send the body as JSON with `Content-Type: application/json`.",
            ),
            Self::NotImplemented(d) => Problem::new(StatusCode::NOT_IMPLEMENTED, "not-implemented", d.clone()),
            Self::Unavailable(d) => Problem::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", d.clone()),
            Self::DiskFull => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "The server cannot store anything right now (its disk is full); nothing was stored. Retry later.",
            ),
            Self::Internal(_) => Problem::for_status(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
}

impl From<leadline_core::quote::QuoteRefusal> for ApiError {
    fn from(r: leadline_core::quote::QuoteRefusal) -> Self {
        Self::Conflict(r.to_string())
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(e: ValidationErrors) -> Self {
        Self::Validation(e)
    }
}

/// When a write last failed on a full disk (seconds since the Unix epoch; 0: never).
static DISK_FULL_AT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Whether a write failed on a full disk within the last `window` and none
/// committed since (PostgreSQL's readiness; the SQLite writer knows by itself).
pub fn disk_full_lately(window: std::time::Duration) -> bool {
    let at = DISK_FULL_AT.load(std::sync::atomic::Ordering::Relaxed);
    at != 0 && unix_now().saturating_sub(at) <= window.as_secs()
}

/// A write committed: the disk takes writes again.
pub fn disk_full_cleared() {
    if DISK_FULL_AT.load(std::sync::atomic::Ordering::Relaxed) != 0 {
        DISK_FULL_AT.store(0, std::sync::atomic::Ordering::Relaxed);
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_disk_full() {
            DISK_FULL_AT.store(unix_now(), std::sync::atomic::Ordering::Relaxed);
            metrics::counter!("leadline_disk_full_total").increment(1);
            tracing::warn!("a write was refused: the disk is full");
            return Self::DiskFull;
        }
        match e {
            StoreError::Conflict(leadline_store::Conflict::Unique { constraint }) => {
                tracing::debug!(constraint, "a unique value is taken");
                Self::Taken
            }
            StoreError::Conflict(leadline_store::Conflict::BookingOverlap) => Self::Booked,
            StoreError::Stale => Self::Stale,
            StoreError::Busy => Self::Unavailable(
                "The server is taking more writes than its database can commit; retry in a second.".into(),
            ),
            StoreError::Unavailable(why) => {
                tracing::error!(cause = %why, "the database did not commit a write");
                Self::Unavailable("The database cannot take writes right now; retry shortly.".into())
            }
            other => Self::Internal(Box::new(other)),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(cause) = self.cause_chain() {
            tracing::error!(cause = %cause, "internal error");
        }
        let problem = self.problem();
        let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut res = status.into_response();
        if matches!(self, Self::Unavailable(_)) {
            res.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        if matches!(self, Self::DiskFull) {
            res.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("5"),
            );
        }
        if matches!(self, Self::Unauthorized(_)) {
            res.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        res.extensions_mut().insert(problem);
        res
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod cause {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("could not render the quote")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn an_internal_error_keeps_its_sources_and_sends_none() {
        let e = ApiError::internal(Outer(std::io::Error::other("disk on fire")));
        assert_eq!(
            e.cause_chain().as_deref(),
            Some("could not render the quote: disk on fire")
        );
        let p = e.problem();
        assert_eq!(p.status, 500);
        assert!(
            !p.detail.contains("disk") && !p.detail.contains("render"),
            "{}",
            p.detail
        );
        let store = ApiError::from(StoreError::Corrupt("lead_x: bad json".into()));
        assert!(store.cause_chain().is_some_and(|c| c.contains("bad json")));
        assert_eq!(
            ApiError::Taken.problem().detail,
            "A resource with the same unique value already exists."
        );
    }
}
