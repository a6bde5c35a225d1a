//! A tenant's settings.

use axum::http::StatusCode;
use leadline_core::change::{Change, ChangeSet};
use leadline_core::tenant::{Settings, SettingsPatch, Tenant};

use crate::clock;
use crate::effects::Effects;
use crate::error::ApiResult;
use crate::state::AppState;

/// Changes the tenant's settings; templates must render (checked on a sample).
pub async fn update(fx: &Effects, s: &AppState, tenant: &Tenant, patch: SettingsPatch) -> ApiResult<Settings> {
    let mut next = tenant.clone();
    next.settings = patch.apply(&tenant.settings, "")?;
    let mut bad = leadline_core::ValidationErrors::new();
    for (kind, locales) in &next.settings.templates {
        for (locale, t) in locales {
            if let Err(e) = crate::mail::check_template(t) {
                bad.add(format!("/templates/{kind}/{locale}"), e);
            }
        }
    }
    if !bad.is_empty() {
        return Err(bad.into());
    }
    next.updated_at = clock::now();
    next.version = tenant.version + 1;
    fx.set_resource(&tenant.id);
    let out = next.settings.clone();
    let cs = ChangeSet::one(Change::UpdateTenant(next));
    let settings = fx.commit(s.store.as_ref(), cs, StatusCode::OK, move |_| out).await?;
    s.origins.invalidate();
    Ok(settings)
}
