//! The audit log: the operator's view of every tenant (`/admin/audit`) and each
//! tenant's view of its own (`/v1/audit`).

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use leadline_core::audit::{AuditEntry, AuditFilter, AuditScope};
use leadline_core::id::TenantId;
use leadline_core::page::{Page, PageRequest};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::effects::Effects;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Admin, AppQuery, SecretKey};
use crate::state::AppState;

/// Filters and pagination of an audit listing.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Exact action, e.g. `lead.create`.
    pub action: Option<String>,
    /// RFC 3339: at or after.
    pub since: Option<String>,
    /// RFC 3339: before.
    pub until: Option<String>,
    /// Exact resource id.
    pub resource_id: Option<String>,
    /// Only this tenant (admin listing of every entry only).
    pub tenant_id: Option<String>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn time(name: &str, v: Option<&str>) -> ApiResult<Option<DateTime<Utc>>> {
    v.map(|t| {
        DateTime::parse_from_rfc3339(t)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|_| ApiError::BadRequest(format!("`{name}` must be an RFC 3339 timestamp.")))
    })
    .transpose()
}

async fn list(state: &AppState, scope: AuditScope, p: AuditParams) -> ApiResult<Json<Page<AuditEntry>>> {
    let page = PageRequest::parse(p.limit, p.cursor.as_deref()).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let filter = AuditFilter {
        scope,
        action: p.action.filter(|a| !a.is_empty()),
        since: time("since", p.since.as_deref())?,
        until: time("until", p.until.as_deref())?,
        resource_id: p.resource_id.filter(|r| !r.is_empty()),
    };
    let rows = state.store.list_audit(&filter, &page).await?;
    Ok(Json(Page::from_overfetch(rows, page.limit, |e| e.id.as_str())))
}

/// Every audit entry, newest first, those of no tenant included; `tenant_id` narrows.
#[utoipa::path(get, path = "/admin/audit", tag = "admin", security(("admin_key" = [])), params(AuditParams),
    responses((status = 200, body = Page<AuditEntry>), (status = 400, body = Problem)))]
pub async fn admin_audit(
    _: Admin,
    State(s): State<AppState>,
    AppQuery(mut p): AppQuery<AuditParams>,
) -> ApiResult<Json<Page<AuditEntry>>> {
    let scope = match p.tenant_id.take() {
        Some(t) => AuditScope::Tenant(
            TenantId::parse(&t).map_err(|_| ApiError::BadRequest("`tenant_id` is not a tenant id.".into()))?,
        ),
        None => AuditScope::All,
    };
    list(&s, scope, p).await
}

/// One tenant's audit log, newest first.
#[utoipa::path(get, path = "/admin/audit/{tenant_id}", tag = "admin", security(("admin_key" = [])), params(AuditParams),
    responses((status = 200, body = Page<AuditEntry>), (status = 404, body = Problem)))]
pub async fn admin_tenant_audit(
    _: Admin,
    fx: Effects,
    State(s): State<AppState>,
    Path(tenant_id): Path<String>,
    AppQuery(p): AppQuery<AuditParams>,
) -> ApiResult<Json<Page<AuditEntry>>> {
    let t = crate::usecases::tenants::tenant(s.store.as_ref(), &tenant_id).await?;
    fx.set_tenant(&t.id);
    if p.tenant_id.is_some() {
        return Err(ApiError::BadRequest("`tenant_id` is given in the path here.".into()));
    }
    list(&s, AuditScope::Tenant(t.id), p).await
}

/// The tenant's own audit log, newest first.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", security(("secret_key" = [])), params(AuditParams),
    responses((status = 200, body = Page<AuditEntry>), (status = 400, body = Problem)))]
pub async fn tenant_audit(
    SecretKey(auth): SecretKey,
    State(s): State<AppState>,
    AppQuery(p): AppQuery<AuditParams>,
) -> ApiResult<Json<Page<AuditEntry>>> {
    if p.tenant_id.is_some() {
        return Err(ApiError::BadRequest("`tenant_id` is not a filter here.".into()));
    }
    list(&s, AuditScope::Tenant(auth.tenant.id.clone()), p).await
}

/// Prometheus metrics (text exposition format 0.0.4).
#[utoipa::path(get, path = "/admin/metrics", tag = "admin", security(("admin_key" = [])),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn admin_metrics(_: Admin, State(s): State<AppState>) -> impl axum::response::IntoResponse {
    match s.store.outbox_pending().await {
        Ok(n) => metrics::gauge!("leadline_outbox_pending").set(n as f64),
        Err(e) => tracing::warn!(error = %e, "could not count pending outbox messages"),
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(),
    )
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(admin_audit))
        .routes(routes!(admin_tenant_audit))
        .routes(routes!(tenant_audit))
        .routes(routes!(admin_metrics))
}
