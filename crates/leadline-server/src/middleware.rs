//! The outermost middleware: request ids, the request span and log line, and
//! rendering of problem documents.

use std::time::Instant;

use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::error::Problem;

/// The id of the current request.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Header carrying the request id.
pub const REQUEST_ID: &str = "x-request-id";

/// A client-sent id is kept when it is 1 to 128 of `A-Z a-z 0-9 - _ . :`;
/// anything else is replaced, so logs never carry a hostile value.
fn sane(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Assigns the request id, runs the request in a span, logs one line at the end,
/// and renders error responses as problem documents.
pub async fn request_context(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| sane(v))
        .map(str::to_owned)
        .unwrap_or_else(|| format!("req_{}", ulid::Ulid::new().to_string().to_ascii_lowercase()));
    req.extensions_mut().insert(RequestId(id.clone()));
    // The route template, never the raw path: paths carry ids and public tokens.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route, tenant_id = tracing::field::Empty);
    let started = Instant::now();
    let mut res = next.run(req).instrument(span.clone()).await;
    let status = res.status();
    if status.is_client_error() || status.is_server_error() {
        res = render_problem(res, &id, &route, &path);
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    let elapsed = started.elapsed().as_secs_f64();
    crate::metrics::record_request(method.as_str(), &route, status.as_u16(), elapsed);
    let latency_ms = elapsed * 1000.0;
    span.in_scope(|| {
        if crate::metrics::is_refusal(status.as_u16()) {
            tracing::warn!(status = status.as_u16(), latency_ms, "request refused");
        } else if status.is_server_error() {
            tracing::error!(status = status.as_u16(), latency_ms, "request failed");
        } else {
            tracing::info!(status = status.as_u16(), latency_ms, "request");
        }
    });
    res
}

fn render_problem(res: Response, request_id: &str, route: &str, path: &str) -> Response {
    let (mut parts, body) = res.into_parts();
    let problem = match parts.extensions.remove::<Problem>() {
        Some(p) => p,
        // Already a problem or another body we produced on purpose.
        None if parts.headers.get(header::CONTENT_TYPE).is_some() && parts.status != StatusCode::PAYLOAD_TOO_LARGE => {
            return Response::from_parts(parts, body);
        }
        None => Problem::for_status(parts.status),
    };
    let mut problem = problem;
    problem.request_id = request_id.to_owned();
    // Public quote paths carry the client's token: name the route, not the path.
    problem.instance = if route.starts_with("/q/") {
        route.to_owned()
    } else {
        path.to_owned()
    };
    let body = problem.to_body();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}
