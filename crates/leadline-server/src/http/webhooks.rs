//! Webhook endpoints of a tenant (`sk_`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use leadline_core::id::MsgId;
use leadline_core::page::Page;
use leadline_core::webhook::{EndpointPatch, NewEndpointRequest, WebhookEndpoint};
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::effects::Effects;
use crate::error::{ApiResult, Problem};
use crate::extract::{AppJson, SecretKey, TenantAuth};
use crate::state::AppState;
use crate::usecases;

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

async fn find(auth: &TenantAuth, s: &AppState, id: &str) -> ApiResult<WebhookEndpoint> {
    usecases::webhooks::find(s, &auth.tenant, id).await
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
    let (endpoint, secret) = usecases::webhooks::create(&fx, &s, &auth.tenant, req).await?;
    Ok((StatusCode::CREATED, Json(EndpointWithSecret { endpoint, secret })))
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
    Ok(Json(usecases::webhooks::update(&fx, &s, &auth.tenant, &id, p).await?))
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
    usecases::webhooks::delete(&fx, &s, &auth.tenant, &id).await?;
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
    let (secret, previous_secret_until) = usecases::webhooks::rotate(&fx, &s, &auth.tenant, &id).await?;
    Ok(Json(Rotated {
        secret,
        previous_secret_until,
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
    let message_id = usecases::webhooks::test(&fx, &s, &auth.tenant, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(TestQueued { message_id })))
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_endpoint, list_endpoints))
        .routes(routes!(get_endpoint, patch_endpoint, delete_endpoint))
        .routes(routes!(rotate_secret))
        .routes(routes!(test_endpoint))
}
