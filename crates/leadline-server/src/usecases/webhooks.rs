//! Webhook endpoints: create, change, delete, rotate the secret, send a test.

use axum::http::StatusCode;
use leadline_core::change::{Change, ChangeSet};
use leadline_core::id::{MsgId, WebhookEndpointId};
use leadline_core::tenant::Tenant;
use leadline_core::validation::{FieldError, ValidationErrors};
use leadline_core::webhook::{self, EndpointPatch, NewEndpointRequest, WebhookEndpoint};

use crate::clock;
use crate::effects::Effects;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Whether the URL's host may be reached (resolves to a public address, unless
/// private targets are allowed); 422 on `/url` otherwise.
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

/// A tenant's endpoint by id text; 404 for a malformed or unknown id.
pub async fn find(s: &AppState, tenant: &Tenant, id: &str) -> ApiResult<WebhookEndpoint> {
    let id = WebhookEndpointId::parse(id).map_err(|_| ApiError::NotFound)?;
    s.store.get_endpoint(&tenant.id, &id).await?.ok_or(ApiError::NotFound)
}

/// Creates an endpoint with a fresh secret (returned; the stored idempotent
/// answer holds none).
pub async fn create(
    fx: &Effects,
    s: &AppState,
    tenant: &Tenant,
    req: NewEndpointRequest,
) -> ApiResult<(WebhookEndpoint, String)> {
    let ep = req.into_endpoint(&tenant.id, s.config.allow_insecure_webhooks, clock::now())?;
    check_target(s, &ep.url).await?;
    fx.set_resource(&ep.id);
    let secret = ep.secret.clone();
    let out = ep.clone();
    let cs = ChangeSet::one(Change::InsertEndpoint(ep));
    let endpoint = fx
        .commit(s.store.as_ref(), cs, StatusCode::CREATED, move |_| out)
        .await?;
    Ok((endpoint, secret))
}

/// Changes an endpoint's URL, events, description or `enabled`.
pub async fn update(
    fx: &Effects,
    s: &AppState,
    tenant: &Tenant,
    id: &str,
    patch: EndpointPatch,
) -> ApiResult<WebhookEndpoint> {
    let ep = find(s, tenant, id).await?;
    fx.set_resource(&ep.id);
    let next = patch.apply(&ep, s.config.allow_insecure_webhooks, clock::now())?;
    if next.url != ep.url {
        check_target(s, &next.url).await?;
    }
    let out = next.clone();
    let cs = ChangeSet::one(Change::UpdateEndpoint(next));
    fx.commit(s.store.as_ref(), cs, StatusCode::OK, move |_| out).await
}

/// Deletes an endpoint; its pending deliveries are cancelled.
pub async fn delete(fx: &Effects, s: &AppState, tenant: &Tenant, id: &str) -> ApiResult<()> {
    let ep = find(s, tenant, id).await?;
    fx.set_resource(&ep.id);
    let cs = ChangeSet::one(Change::DeleteEndpoint {
        tenant_id: tenant.id.clone(),
        id: ep.id,
        at: clock::now(),
    });
    fx.commit(s.store.as_ref(), cs, StatusCode::NO_CONTENT, |_| ()).await
}

/// Rotates the signing secret; the old one keeps signing for 24 hours. Returns
/// the new secret and until when the old one signs.
pub async fn rotate(
    fx: &Effects,
    s: &AppState,
    tenant: &Tenant,
    id: &str,
) -> ApiResult<(String, Option<chrono::DateTime<chrono::Utc>>)> {
    let ep = find(s, tenant, id).await?;
    fx.set_resource(&ep.id);
    let next = webhook::rotate(&ep, clock::now());
    let secret = next.secret.clone();
    let until = next.previous_secret_until;
    let cs = ChangeSet::one(Change::UpdateEndpoint(next));
    // The stored idempotent answer holds no secret.
    fx.commit(
        s.store.as_ref(),
        cs,
        StatusCode::OK,
        move |_| serde_json::json!({"secret": "whsec_...", "previous_secret_until": until}),
    )
    .await?;
    Ok((secret, until))
}

/// Queues a `webhook.test` event to this endpoint (even when it does not list
/// `webhook.test`, or is disabled); returns its message id.
pub async fn test(fx: &Effects, s: &AppState, tenant: &Tenant, id: &str) -> ApiResult<MsgId> {
    let mut ep = find(s, tenant, id).await?;
    fx.set_resource(&ep.id);
    ep.events = vec!["webhook.test".into()];
    ep.enabled = true;
    let data = serde_json::json!({"endpoint_id": ep.id, "message": "This is a test event from Leadline."});
    let changes = crate::events::webhook_value(
        &tenant.id,
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
    let cs = ChangeSet {
        changes,
        ..ChangeSet::default()
    };
    let out = serde_json::json!({"message_id": message_id});
    fx.commit(s.store.as_ref(), cs, StatusCode::ACCEPTED, move |_| out)
        .await?;
    Ok(message_id)
}
