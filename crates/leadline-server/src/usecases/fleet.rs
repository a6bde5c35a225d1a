//! The fleet: add a yacht, change it, archive it.

use axum::http::StatusCode;
use leadline_core::change::{Change, ChangeSet};
use leadline_core::id::YachtId;
use leadline_core::tenant::Tenant;
use leadline_core::yacht::{Yacht, YachtInput};

use crate::clock;
use crate::effects::Effects;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// A tenant's yacht by id text; 404 for a malformed or unknown id.
pub async fn find(s: &AppState, tenant: &Tenant, id: &str) -> ApiResult<Yacht> {
    let id = YachtId::parse(id).map_err(|_| ApiError::NotFound)?;
    s.store.get_yacht(&tenant.id, &id).await?.ok_or(ApiError::NotFound)
}

/// Adds a yacht (validated whole; amounts in its currency, by default the tenant's).
pub async fn add(fx: &Effects, s: &AppState, tenant: &Tenant, input: YachtInput) -> ApiResult<Yacht> {
    let y = input.apply(None, &tenant.id, tenant.settings.currency, clock::now())?;
    fx.set_resource(&y.id);
    let out = y.clone();
    let cs = ChangeSet::one(Change::InsertYacht(y));
    fx.commit(s.store.as_ref(), cs, StatusCode::CREATED, move |_| out).await
}

/// Changes a yacht; the given fields replace the stored ones, and the whole is
/// validated again.
pub async fn update(fx: &Effects, s: &AppState, tenant: &Tenant, id: &str, input: YachtInput) -> ApiResult<Yacht> {
    let y = find(s, tenant, id).await?;
    fx.set_resource(&y.id);
    let next = input.apply(Some(&y), &tenant.id, tenant.settings.currency, clock::now())?;
    let out = next.clone();
    let cs = ChangeSet::one(Change::UpdateYacht(next));
    fx.commit(s.store.as_ref(), cs, StatusCode::OK, move |_| out).await
}

/// Archives a yacht (archiving an archived one changes nothing).
pub async fn archive(fx: &Effects, s: &AppState, tenant: &Tenant, id: &str) -> ApiResult<()> {
    let y = find(s, tenant, id).await?;
    fx.set_resource(&y.id);
    let Some(next) = y.archive(clock::now()) else {
        return Ok(());
    };
    let cs = ChangeSet::one(Change::UpdateYacht(next));
    fx.commit(s.store.as_ref(), cs, StatusCode::NO_CONTENT, |_| ()).await
}
