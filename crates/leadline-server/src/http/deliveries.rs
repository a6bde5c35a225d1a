//! Delivery visibility: mail logs, dead letters and their replay, for the tenant
//! (`sk_`) and the operator (admin key).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use leadline_core::delivery::{DeadLetter, MailLog, MessageKind};
use leadline_core::id::TenantId;
use leadline_core::page::{Page, PageRequest};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::effects::Effects;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{Admin, AppQuery, SecretKey};
use crate::state::AppState;

/// Pagination and the kind filter.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// `email` or `webhook` (dead letters only).
    pub kind: Option<String>,
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

fn page(p: &DeliveryParams) -> ApiResult<PageRequest> {
    PageRequest::parse(p.limit, p.cursor.as_deref()).map_err(|e| ApiError::BadRequest(e.to_string()))
}

fn kind(p: &DeliveryParams) -> ApiResult<Option<MessageKind>> {
    p.kind
        .as_deref()
        .map(|k| MessageKind::from_db(k).ok_or_else(|| ApiError::BadRequest("`kind` must be email or webhook.".into())))
        .transpose()
}

/// Email delivery log, newest first; recipients are redacted.
#[utoipa::path(get, path = "/v1/mail-logs", tag = "deliveries", security(("secret_key" = [])), params(DeliveryParams),
    responses((status = 200, body = Page<MailLog>)))]
pub async fn mail_logs(
    SecretKey(auth): SecretKey,
    State(s): State<AppState>,
    AppQuery(p): AppQuery<DeliveryParams>,
) -> ApiResult<Json<Page<MailLog>>> {
    if p.kind.is_some() {
        return Err(ApiError::BadRequest("`kind` is not a filter of mail logs.".into()));
    }
    let page = page(&p)?;
    let rows = s.store.list_mail_logs(&auth.tenant.id, &page).await?;
    let mut out = Page::from_overfetch(rows, page.limit, |l| l.id.as_str());
    for l in &mut out.data {
        if l.recipient != "[erased]" {
            l.recipient = leadline_core::redact::email(&l.recipient);
        }
    }
    Ok(Json(out))
}

async fn dead_letters(s: &AppState, tenant: &TenantId, p: DeliveryParams) -> ApiResult<Json<Page<DeadLetter>>> {
    let page = page(&p)?;
    let rows = s.store.list_dead_letters(tenant, kind(&p)?, &page).await?;
    let out = Page::from_overfetch(rows, page.limit, |d| d.id.as_str());
    Ok(Json(Page {
        data: out.data.into_iter().map(crate::usecases::deliveries::shown).collect(),
        next_cursor: out.next_cursor,
    }))
}

/// The tenant's failed deliveries, newest first.
#[utoipa::path(get, path = "/v1/dead-letters", tag = "deliveries", security(("secret_key" = [])), params(DeliveryParams),
    responses((status = 200, body = Page<DeadLetter>)))]
pub async fn tenant_dead_letters(
    SecretKey(auth): SecretKey,
    State(s): State<AppState>,
    AppQuery(p): AppQuery<DeliveryParams>,
) -> ApiResult<Json<Page<DeadLetter>>> {
    dead_letters(&s, &auth.tenant.id, p).await
}

/// A tenant's failed deliveries (admin).
#[utoipa::path(get, path = "/admin/dead-letters/{tenant_id}", tag = "admin", security(("admin_key" = [])), params(DeliveryParams),
    responses((status = 200, body = Page<DeadLetter>), (status = 404, body = Problem)))]
pub async fn admin_dead_letters(
    _: Admin,
    fx: Effects,
    State(s): State<AppState>,
    Path(tenant_id): Path<String>,
    AppQuery(p): AppQuery<DeliveryParams>,
) -> ApiResult<Json<Page<DeadLetter>>> {
    let t = crate::usecases::tenants::tenant(s.store.as_ref(), &tenant_id).await?;
    fx.set_tenant(&t.id);
    dead_letters(&s, &t.id, p).await
}

async fn replay(
    s: &AppState,
    fx: &Effects,
    tenant: Option<&TenantId>,
    id: &str,
) -> ApiResult<(StatusCode, Json<DeadLetter>)> {
    let replayed = crate::usecases::deliveries::replay(fx, s, tenant, id).await?;
    Ok((StatusCode::ACCEPTED, Json(crate::usecases::deliveries::shown(replayed))))
}

/// Put a dead letter back in the outbox with a fresh attempt count.
#[utoipa::path(post, path = "/v1/dead-letters/{id}/replay", tag = "deliveries", security(("secret_key" = [])),
    responses((status = 202, body = DeadLetter), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn tenant_replay(
    SecretKey(auth): SecretKey,
    fx: Effects,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<DeadLetter>)> {
    replay(&s, &fx, Some(&auth.tenant.id), &id).await
}

/// Put any tenant's dead letter back in the outbox (admin).
#[utoipa::path(post, path = "/admin/dead-letters/{id}/replay", tag = "admin", security(("admin_key" = [])),
    responses((status = 202, body = DeadLetter), (status = 404, body = Problem), (status = 409, body = Problem)))]
pub async fn admin_replay(
    _: Admin,
    fx: Effects,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<DeadLetter>)> {
    replay(&s, &fx, None, &id).await
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(mail_logs))
        .routes(routes!(tenant_dead_letters))
        .routes(routes!(admin_dead_letters))
        .routes(routes!(tenant_replay))
        .routes(routes!(admin_replay))
}
