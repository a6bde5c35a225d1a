//! Failed deliveries: put a dead letter back in the outbox.

use axum::http::StatusCode;
use leadline_core::change::{Change, ChangeSet};
use leadline_core::delivery::DeadLetter;
use leadline_core::id::{DeadLetterId, TenantId};

use crate::clock;
use crate::effects::Effects;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// A dead letter as shown: the payload reduced to what identifies it, with the
/// recipient redacted (the body is not shown; replay sends it unchanged).
pub fn shown(mut d: DeadLetter) -> DeadLetter {
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

/// Puts a dead letter (of `tenant`, when given: the tenant API; any, for the
/// admin) back in the outbox with a fresh attempt count; once only.
pub async fn replay(fx: &Effects, s: &AppState, tenant: Option<&TenantId>, id: &str) -> ApiResult<DeadLetter> {
    let id = DeadLetterId::parse(id).map_err(|_| ApiError::NotFound)?;
    let d = s.store.get_dead_letter(tenant, &id).await?.ok_or(ApiError::NotFound)?;
    fx.set_tenant(&d.tenant_id);
    fx.set_resource(&d.id);
    if d.replayed_at.is_some() {
        return Err(ApiError::Conflict("This dead letter was replayed already.".into()));
    }
    let at = clock::now();
    let mut replayed = d.clone();
    replayed.replayed_at = Some(at);
    let out = shown(replayed.clone());
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
    Ok(replayed)
}
