//! Webhook endpoints of a tenant (`sk_`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use leadline_core::change::{Change, ChangeSet};
use leadline_core::id::{MsgId, WebhookEndpointId};
use leadline_core::page::Page;
use leadline_core::webhook::{self, EndpointPatch, NewEndpointRequest, WebhookEndpoint};
use leadline_core::{FieldError, ValidationErrors};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::clock;
use crate::effects::Effects;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{AppJson, SecretKey, TenantAuth};
use crate::state::AppState;

/// An endpoint with its signing secret, shown at creation and rotation only.
#[derive(Serialize, utoipa::ToSchema)]
pub struct EndpointWithSecret {
    /// The endpoint.
    #[serde(flatten)]
    pub endpoint: WebhookEndpoint,
    /// `whsec_...`: verify signatures with it.
    pub secret: String,
}

/// A queued test event.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TestQueued {
    /// The message id (the `webhook-id` header).
    pub message_id: MsgId,
}

/// The result of a rotation.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Rotated {
    /// The new secret.
    pub secret: String,
    /// Until when the old secret also signs.
    pub previous_secret_until: Option<DateTime<Utc>>,
}

async fn check_target(s: &AppState, url: &str) -> ApiResult<()> {
    crate::outbound::check_target(url, s.config.allow_private_webhook_targets)
        .await
        .map_err(|e| {
            ApiError::Validation(ValidationErrors(vec![FieldError {
                pointer: "/url".into(),
                detail: e,
            }]))
        })
}

async fn find(auth: &TenantAuth, s: &AppState, id: &str) -> ApiResult<WebhookEndpoint> {
    let id = WebhookEndpointId::parse(id).map_err(|_| ApiError::NotFound)?;
    s.store
        .get_endpoint(&auth.tenant.id, &id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// Create an endpoint; its secret is shown this once.
#[utoipa::path(post, path = "/v1/webhook-endpoints", tag = "webhooks", security(("secret_key" = [])),
    request_body = NewEndpointRequest,
    responses((status = 201, body = EndpointWithSecret), (status = 422, body = Problem)))]
pub async fn create_endpoint(
    SecretKey(auth): SecretKey,
    fx: Effects,
    State(s): State<AppState>,
    AppJson(req): AppJson<NewEndpointRequest>,
) -> ApiResult<(StatusCode, Json<EndpointWithSecret>)> {
    let ep = req.into_endpoint(&auth.tenant.id, s.config.allow_insecure_webhooks, clock::now())?;
    check_target(&s, &ep.url).await?;
    fx.set_resource(&ep.id);
    let secret = ep.secret.clone();
    let out = ep.clone();
    // The stored idempotent answer holds no secret.
    fx.commit(
        s.store.as_ref(),
        ChangeSet::one(Change::InsertEndpoint(ep)),
        StatusCode::CREATED,
        move |_| out.clone(),
    )
    .await
    .map(|endpoint| (StatusCode::CREATED, Json(EndpointWithSecret { endpoint, secret })))
}

/// List endpoints.
#[utoipa::path(get, path = "/v1/webhook-endpoints", tag = "webhooks", security(("secret_key" = [])),
    responses((status = 200, body = Page<WebhookEndpoint>)))]
pub async fn list_endpoints(
    SecretKey(auth): SecretKey,
    State(s): State<AppState>,
) -> ApiResult<Json<Page<WebhookEndpoint>>> {
    let data = s.store.list_endpoints(&auth.tenant.id).await?;
    Ok(Json(Page {
        data,
        next_cursor: None,
    }))
}

/// Read an endpoint.
#[utoipa::path(get, path = "/v1/webhook-endpoints/{id}", tag = "webhooks", security(("secret_key" = [])),
    responses((status = 200, body = WebhookEndpoint), (status = 404, body = Problem)))]
pub async fn get_endpoint(
    SecretKey(auth): SecretKey,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<WebhookEndpoint>> {
    Ok(Json(find(&auth, &s, &id).await?))
}

/// Change an endpoint's URL, events, description or `enabled`.
#[utoipa::path(patch, path = "/v1/webhook-endpoints/{id}", tag = "webhooks", security(("secret_key" = [])),
    request_body = EndpointPatch,
    responses((status = 200, body = WebhookEndpoint), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub async fn patch_endpoint(
    SecretKey(auth): SecretKey,
    fx: Effects,
    State(s): State<AppState>,
    Path(id): Path<String>,
    AppJson(p): AppJson<EndpointPatch>,
) -> ApiResult<Json<WebhookEndpoint>> {
    let ep = find(&auth, &s, &id).await?;
    fx.set_resource(&ep.id);
    let next = p.apply(&ep, s.config.allow_insecure_webhooks, clock::now())?;
    if next.url != ep.url {
        check_target(&s, &next.url).await?;
    }
    let out = next.clone();
    Ok(Json(
        fx.commit(
            s.store.as_ref(),
            ChangeSet::one(Change::UpdateEndpoint(next)),
            StatusCode::OK,
            move |_| out,
        )
        .await?,
    ))
}

/// Delete an endpoint; its pending deliveries are cancelled.
#[utoipa::path(delete, path = "/v1/webhook-endpoints/{id}", tag = "webhooks", security(("secret_key" = [])),
    responses((status = 204), (status = 404, body = Problem)))]
pub async fn delete_endpoint(
    SecretKey(auth): SecretKey,
    fx: Effects,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let ep = find(&auth, &s, &id).await?;
    fx.set_resource(&ep.id);
    let cs = ChangeSet::one(Change::DeleteEndpoint {
        tenant_id: auth.tenant.id.clone(),
        id: ep.id,
        at: clock::now(),
    });
    fx.commit(s.store.as_ref(), cs, StatusCode::NO_CONTENT, |_| ()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rotate the signing secret; the old one keeps signing (both signatures are
/// sent) for 24 hours.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/rotate-secret", tag = "webhooks", security(("secret_key" = [])),
    responses((status = 200, body = Rotated), (status = 404, body = Problem)))]
pub async fn rotate_secret(
    SecretKey(auth): SecretKey,
    fx: Effects,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Rotated>> {
    let ep = find(&auth, &s, &id).await?;
    fx.set_resource(&ep.id);
    let next = webhook::rotate(&ep, clock::now());
    let secret = next.secret.clone();
    let until = next.previous_secret_until;
    fx.commit(
        s.store.as_ref(),
        ChangeSet::one(Change::UpdateEndpoint(next)),
        StatusCode::OK,
        move |_| serde_json::json!({"secret": "whsec_...", "previous_secret_until": until}),
    )
    .await?;
    Ok(Json(Rotated {
        secret,
        previous_secret_until: until,
    }))
}

/// Queue a `webhook.test` event to this endpoint.
#[utoipa::path(post, path = "/v1/webhook-endpoints/{id}/test", tag = "webhooks", security(("secret_key" = [])),
    responses((status = 202, body = TestQueued), (status = 404, body = Problem)))]
pub async fn test_endpoint(
    SecretKey(auth): SecretKey,
    fx: Effects,
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<TestQueued>)> {
    let mut ep = find(&auth, &s, &id).await?;
    fx.set_resource(&ep.id);
    // A test goes to this endpoint even when it does not list `webhook.test`.
    ep.events = vec!["webhook.test".into()];
    ep.enabled = true;
    let data = serde_json::json!({"endpoint_id": ep.id, "message": "This is a test event from Leadline."});
    let changes = crate::events::webhook_value(
        &auth.tenant.id,
        None,
        std::slice::from_ref(&ep),
        "webhook.test",
        data,
        clock::now(),
    );
    let message_id = match changes.first() {
        Some(Change::InsertOutbox(m)) => m.id.clone(),
        _ => return Err(ApiError::internal("no test event was built")),
    };
    let out = TestQueued { message_id };
    let queued = fx
        .commit(
            s.store.as_ref(),
            ChangeSet { changes, finish: None },
            StatusCode::ACCEPTED,
            move |_| out,
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(queued)))
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_endpoint, list_endpoints))
        .routes(routes!(get_endpoint, patch_endpoint, delete_endpoint))
        .routes(routes!(rotate_secret))
        .routes(routes!(test_endpoint))
}
