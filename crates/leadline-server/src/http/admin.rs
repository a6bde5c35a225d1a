//! Admin API: tenants and their keys (`X-Admin-Key`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use leadline_core::api_key::{ApiKey, KeyKind};
use leadline_core::page::{Page, PageRequest};
use leadline_core::tenant::{NewTenantRequest, Tenant, TenantPatch};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::effects::Effects;
use crate::error::{ApiResult, Problem};
use crate::extract::{Admin, AppJson, AppQuery};
use crate::state::AppState;
use crate::usecases::tenants as ops;

/// A new tenant and its first keys; the keys are shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TenantCreated {
    /// The tenant.
    pub tenant: Tenant,
    /// `sk_...`: the whole tenant API.
    pub secret_key: String,
    /// `pk_...`: lead capture from the website.
    pub publishable_key: String,
}

/// A tenant with its keys (prefixes only).
#[derive(Serialize, utoipa::ToSchema)]
pub struct TenantView {
    /// The tenant.
    #[serde(flatten)]
    pub tenant: Tenant,
    /// Its keys, newest first.
    pub keys: Vec<ApiKey>,
}

/// A newly issued key, shown this once.
#[derive(Serialize, utoipa::ToSchema)]
pub struct KeyIssued {
    /// The stored form.
    #[serde(flatten)]
    pub api_key: ApiKey,
    /// The key itself.
    pub key: String,
}

/// `POST /admin/tenants/{id}/keys` body.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueKey {
    /// `secret` or `publishable`.
    pub kind: KeyKind,
}

/// Pagination parameters.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Create a tenant and its first secret and publishable keys.
#[utoipa::path(post, path = "/admin/tenants", tag = "admin", security(("admin_key" = [])),
    request_body = NewTenantRequest,
    responses((status = 201, body = TenantCreated), (status = 409, body = Problem), (status = 422, body = Problem)))]
pub async fn create_tenant(
    _: Admin,
    fx: Effects,
    State(s): State<AppState>,
    AppJson(req): AppJson<NewTenantRequest>,
) -> ApiResult<(StatusCode, Json<TenantCreated>)> {
    let c = ops::create_tenant(&fx, s.store.as_ref(), req).await?;
    Ok((
        StatusCode::CREATED,
        Json(TenantCreated {
            tenant: c.tenant,
            secret_key: c.secret.plaintext,
            publishable_key: c.publishable.plaintext,
        }),
    ))
}

/// List tenants, newest first.
#[utoipa::path(get, path = "/admin/tenants", tag = "admin", security(("admin_key" = [])), params(ListParams),
    responses((status = 200, body = Page<Tenant>)))]
pub async fn list_tenants(
    _: Admin,
    State(s): State<AppState>,
    AppQuery(p): AppQuery<ListParams>,
) -> ApiResult<Json<Page<Tenant>>> {
    // A bad query parameter is 400 on every list, as on every route.
    let page = PageRequest::parse(p.limit, p.cursor.as_deref())
        .map_err(|e| crate::error::ApiError::BadRequest(e.to_string()))?;
    let rows = s.store.list_tenants(&page).await?;
    Ok(Json(Page::from_overfetch(rows, page.limit, |t| t.id.as_str())))
}

/// Read a tenant with its keys.
#[utoipa::path(get, path = "/admin/tenants/{id}", tag = "admin", security(("admin_key" = [])),
    responses((status = 200, body = TenantView), (status = 404, body = Problem)))]
pub async fn get_tenant(
    _: Admin,
    fx: Effects,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<TenantView>> {
    let tenant = ops::tenant(s.store.as_ref(), &id).await?;
    fx.set_tenant(&tenant.id);
    fx.set_resource(&tenant.id);
    let keys = s.store.list_api_keys(&tenant.id).await?;
    Ok(Json(TenantView { tenant, keys }))
}

/// Change a tenant's name, status (`active` or `suspended`) or settings.
#[utoipa::path(patch, path = "/admin/tenants/{id}", tag = "admin", security(("admin_key" = [])),
    request_body = TenantPatch,
    responses((status = 200, body = Tenant), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn patch_tenant(
    _: Admin,
    fx: Effects,
    State(s): State<AppState>,
    Path(id): Path<String>,
    AppJson(p): AppJson<TenantPatch>,
) -> ApiResult<Json<Tenant>> {
    let t = ops::patch_tenant(&fx, s.store.as_ref(), &id, p).await?;
    s.origins.invalidate();
    Ok(Json(t))
}

/// Issue a key; it is shown this once.
#[utoipa::path(post, path = "/admin/tenants/{id}/keys", tag = "admin", security(("admin_key" = [])),
    request_body = IssueKey,
    responses((status = 201, body = KeyIssued), (status = 404, body = Problem)))]
pub async fn issue_key(
    _: Admin,
    fx: Effects,
    State(s): State<AppState>,
    Path(id): Path<String>,
    AppJson(b): AppJson<IssueKey>,
) -> ApiResult<(StatusCode, Json<KeyIssued>)> {
    let issued = ops::issue_key(&fx, s.store.as_ref(), &id, b.kind).await?;
    Ok((
        StatusCode::CREATED,
        Json(KeyIssued {
            api_key: issued.key,
            key: issued.plaintext,
        }),
    ))
}

/// Revoke a key; it is refused from this moment.
#[utoipa::path(delete, path = "/admin/tenants/{id}/keys/{key_id}", tag = "admin", security(("admin_key" = [])),
    responses((status = 200, body = ApiKey), (status = 404, body = Problem)))]
pub async fn revoke_key(
    _: Admin,
    fx: Effects,
    State(s): State<AppState>,
    Path((id, key_id)): Path<(String, String)>,
) -> ApiResult<Json<ApiKey>> {
    Ok(Json(ops::revoke_key(&fx, s.store.as_ref(), &id, &key_id).await?))
}

/// Run a maintenance action: `cleanup_expired_keys`, `cleanup_old_audit`,
/// `cleanup_old_dead_letters`, `cleanup_old_deliveries` (optional `older_than_days`
/// overrides the retention), or `backup_database` (SQLite; 501 on PostgreSQL).
#[utoipa::path(post, path = "/admin/maintenance", tag = "admin", security(("admin_key" = [])),
    request_body = crate::maintenance::MaintenanceRequest,
    responses((status = 200, body = crate::maintenance::Outcome), (status = 422, body = Problem), (status = 501, body = Problem)))]
pub async fn maintenance(
    _: Admin,
    fx: Effects,
    State(s): State<AppState>,
    AppJson(req): AppJson<crate::maintenance::MaintenanceRequest>,
) -> ApiResult<Json<crate::maintenance::Outcome>> {
    let outcome = crate::maintenance::run(&fx, s.store.as_ref(), &s.config, &req, crate::clock::now()).await?;
    Ok(Json(outcome))
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_tenant, list_tenants))
        .routes(routes!(get_tenant, patch_tenant))
        .routes(routes!(issue_key))
        .routes(routes!(revoke_key))
        .routes(routes!(maintenance))
}
