//! Liveness, readiness and the OpenAPI document.

use std::sync::OnceLock;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::AppState;

/// Health answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`, or what is wrong.
    pub status: &'static str,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: whether this instance can do its work, and each dependency's state.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ok`; `degraded` (ready, but an optional dependency is down and a fallback
    /// serves); or `unavailable` (not ready: see `reason`).
    pub status: &'static str,
    /// What makes the instance unready, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    /// The database: `ok`, `unreachable`, `migrations pending`, `disk full` or
    /// `cannot commit`.
    pub database: &'static str,
    /// Redis for shared rate limits: `ok`, `not configured`, or `unreachable`
    /// (each instance limits locally meanwhile; ready).
    pub redis: &'static str,
}

/// PostgreSQL: how long after a write failed on a full disk (with no write
/// committed since) the instance reports the disk full. Then it is ready again,
/// and the next write tells. (The SQLite writer knows by itself: it probes.)
const DISK_FULL_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether this instance can serve: 503 naming the dependency that makes writes
/// impossible (the database unreachable, its disk full, the writer unable to
/// commit, migrations pending); 200 `degraded` when Redis is down (the local
/// rate limiter serves).
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, body = Readiness), (status = 503, body = Readiness)))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    use crate::ratelimit::SharedState;
    let redis = match state.rate_limits.shared_state() {
        SharedState::Local => "not configured",
        SharedState::Shared => "ok",
        SharedState::Degraded => "unreachable",
    };
    let database = match state.store.ready().await {
        Ok(true) => match state.store.write_fault() {
            Some(leadline_store::WriteFault::DiskFull) => "disk full",
            Some(leadline_store::WriteFault::CannotCommit) => "cannot commit",
            None if state.store.backend() == leadline_store::Backend::Postgres
                && crate::error::disk_full_lately(DISK_FULL_WINDOW) =>
            {
                "disk full"
            }
            None => "ok",
        },
        Ok(false) => "migrations pending",
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            "unreachable"
        }
    };
    if database != "ok" {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness {
                status: "unavailable",
                reason: Some(database),
                database,
                redis,
            }),
        );
    }
    let status = if redis == "unreachable" { "degraded" } else { "ok" };
    (
        StatusCode::OK,
        Json(Readiness {
            status,
            reason: None,
            database,
            redis,
        }),
    )
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(healthz)).routes(routes!(readyz))
}

/// Routes outside the document: the document itself.
pub(crate) fn unrouted() -> axum::Router<AppState> {
    axum::Router::new().route("/openapi.json", get(openapi_json))
}

async fn openapi_json() -> impl IntoResponse {
    static DOC: OnceLock<String> = OnceLock::new();
    let body = DOC.get_or_init(|| crate::http::document().to_string());
    ([(header::CONTENT_TYPE, "application/json")], body.as_str())
}
