//! Delivery visibility: mail logs, dead letters and their replay, for the tenant
//! (`sk_`) and the operator (admin key).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use leadline_core::change::{Change, ChangeSet};
use leadline_core::delivery::{DeadLetter, MailLog, MessageKind};
use leadline_core::id::{DeadLetterId, TenantId};
use leadline_core::page::{Page, PageRequest};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::clock;
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

/// A dead letter as shown: the payload reduced to what identifies it, with the
/// recipient redacted (the body is not shown; replay sends it unchanged).
fn view(mut d: DeadLetter) -> DeadLetter {
    let p = &d.payload;
    d.payload = match p.get("type").and_then(|k| k.as_str()) {
        Some("email") => serde_json::json!({
            "kind": "email", "mail_id": p["mail_id"], "template": p["kind"],
            "to": p["to"].as_str().map(leadline_core::redact::email), "subject": p["subject"],
        }),
        Some("webhook") => {
            serde_json::json!({"kind": "webhook", "endpoint_id": p["endpoint_id"], "event_type": p["event_type"]})
        }
        _ => serde_json::json!({"kind": "erased"}),
    };
    d
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
        data: out.data.into_iter().map(view).collect(),
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
    let id = DeadLetterId::parse(id).map_err(|_| ApiError::NotFound)?;
    let d = s.store.get_dead_letter(tenant, &id).await?.ok_or(ApiError::NotFound)?;
    fx.set_tenant(&d.tenant_id);
    fx.set_resource(&d.id);
    if d.replayed_at.is_some() {
        return Err(ApiError::Conflict("This dead letter was replayed already.".into()));
    }
    let at = clock::now();
    let mut shown = view(d.clone());
    shown.replayed_at = Some(at);
    let out = shown.clone();
    let cs = ChangeSet::one(Change::ReplayDeadLetter {
        tenant_id: d.tenant_id.clone(),
        id: d.id.clone(),
        at,
    });
    fx.commit(s.store.as_ref(), cs, StatusCode::ACCEPTED, move |_| out)
        .await
        .map_err(|e| match e {
            ApiError::Stale | ApiError::Conflict(_) => {
                ApiError::Conflict("This dead letter was replayed already.".into())
            }
            e => e,
        })?;
    Ok((StatusCode::ACCEPTED, Json(shown)))
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
