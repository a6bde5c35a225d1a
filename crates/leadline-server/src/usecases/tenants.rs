//! Admin operations shared by the HTTP API and the CLI, so both do exactly the
//! same thing.

use leadline_core::api_key::{self, ApiKey, IssuedKey, KeyKind};
use leadline_core::change::{Change, ChangeSet};
use leadline_core::id::{ApiKeyId, TenantId};
use leadline_core::tenant::{NewTenantRequest, Tenant, TenantPatch};
use leadline_store::Store;

use axum::http::StatusCode;

use crate::clock;
use crate::effects::Effects;
use crate::error::{ApiError, ApiResult};

/// A created tenant with its first keys (plaintexts shown once).
pub struct CreatedTenant {
    /// The tenant.
    pub tenant: Tenant,
    /// Its first secret key.
    pub secret: IssuedKey,
    /// Its first publishable key.
    pub publishable: IssuedKey,
}

/// Creates a tenant with one secret and one publishable key, in one transaction.
pub async fn create_tenant(fx: &Effects, store: &dyn Store, req: NewTenantRequest) -> ApiResult<CreatedTenant> {
    let now = clock::now();
    let tenant = req.into_tenant(now)?;
    let secret = api_key::issue(&tenant.id, KeyKind::Secret, now);
    let publishable = api_key::issue(&tenant.id, KeyKind::Publishable, now);
    let mut cs = ChangeSet::new();
    cs.push(Change::InsertTenant(tenant.clone()))
        .push(Change::InsertApiKey(secret.key.clone()))
        .push(Change::InsertApiKey(publishable.key.clone()));
    fx.set_tenant(&tenant.id);
    fx.set_resource(&tenant.id);
    fx.set_details(serde_json::json!({"name": tenant.name, "slug": tenant.slug}));
    // The answer stored for an idempotent replay must not hold the keys: a replay
    // shows their prefixes, as any later read does.
    let view = serde_json::json!({
        "tenant": tenant,
        "secret_key": format!("{}...", secret.key.prefix),
        "publishable_key": format!("{}...", publishable.key.prefix),
    });
    fx.commit(store, cs, StatusCode::CREATED, move |_| view)
        .await
        .map_err(|e| match e {
            ApiError::Taken => ApiError::Conflict(format!("The slug {:?} is taken.", tenant.slug)),
            e => e,
        })?;
    Ok(CreatedTenant {
        tenant,
        secret,
        publishable,
    })
}

/// A tenant by id text, 404 when there is none.
pub async fn tenant(store: &dyn Store, id: &str) -> ApiResult<Tenant> {
    let id = TenantId::parse(id).map_err(|_| ApiError::NotFound)?;
    store.get_tenant(&id).await?.ok_or(ApiError::NotFound)
}

/// Changes a tenant's name, status or settings.
pub async fn patch_tenant(fx: &Effects, store: &dyn Store, id: &str, patch: TenantPatch) -> ApiResult<Tenant> {
    let current = tenant(store, id).await?;
    fx.set_tenant(&current.id);
    fx.set_resource(&current.id);
    let next = patch.apply(&current, clock::now())?;
    fx.set_details(serde_json::json!({"status": next.status}));
    let out = next.clone();
    fx.commit(
        store,
        ChangeSet::one(Change::UpdateTenant(next)),
        StatusCode::OK,
        move |_| out,
    )
    .await
}

/// Issues a key for a tenant.
pub async fn issue_key(fx: &Effects, store: &dyn Store, tenant_id: &str, kind: KeyKind) -> ApiResult<IssuedKey> {
    let t = tenant(store, tenant_id).await?;
    fx.set_tenant(&t.id);
    let issued = api_key::issue(&t.id, kind, clock::now());
    fx.set_resource(&issued.key.id);
    fx.set_details(serde_json::json!({"kind": kind}));
    // As for tenant creation, a replay shows the key's prefix, never the key.
    let mut view = serde_json::to_value(&issued.key).map_err(ApiError::internal)?;
    view["key"] = format!("{}...", issued.key.prefix).into();
    let cs = ChangeSet::one(Change::InsertApiKey(issued.key.clone()));
    fx.commit(store, cs, StatusCode::CREATED, move |_| view).await?;
    Ok(issued)
}

/// Revokes a key of a tenant (revoking a revoked key is a no-op); 404 when the
/// key is not that tenant's.
pub async fn revoke_key(fx: &Effects, store: &dyn Store, tenant_id: &str, key_id: &str) -> ApiResult<ApiKey> {
    let t = tenant(store, tenant_id).await?;
    fx.set_tenant(&t.id);
    let key_id = ApiKeyId::parse(key_id).map_err(|_| ApiError::NotFound)?;
    let mut key = store
        .list_api_keys(&t.id)
        .await?
        .into_iter()
        .find(|k| k.id == key_id)
        .ok_or(ApiError::NotFound)?;
    fx.set_resource(&key.id);
    // The revocation and its audit entry are one transaction; revoking a revoked
    // key changes nothing and is audited as well.
    let mut cs = ChangeSet::new();
    if key.revoked_at.is_none() {
        let at = clock::now();
        cs.push(Change::RevokeApiKey {
            tenant_id: t.id.clone(),
            key_id: key.id.clone(),
            at,
        });
        key.revoked_at = Some(at);
    }
    let out = key.clone();
    fx.commit(store, cs, StatusCode::OK, move |_| out).await
}
