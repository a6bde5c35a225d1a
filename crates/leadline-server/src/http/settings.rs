//! The tenant's own settings (`sk_`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use leadline_core::change::{Change, ChangeSet};
use leadline_core::tenant::{Settings, SettingsPatch};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::clock;
use crate::effects::Effects;
use crate::error::{ApiResult, Problem};
use crate::extract::{AppJson, SecretKey};
use crate::state::AppState;

/// The settings.
#[utoipa::path(get, path = "/v1/settings", tag = "settings", security(("secret_key" = [])),
    responses((status = 200, body = Settings), (status = 401, body = Problem)))]
pub async fn get_settings(SecretKey(auth): SecretKey) -> Json<Settings> {
    Json(auth.tenant.settings)
}

/// Change settings: the given fields replace the stored ones; `null` clears an
/// optional one. Percentages are decimal strings (`"13"`, `"5.2"`).
#[utoipa::path(patch, path = "/v1/settings", tag = "settings", security(("secret_key" = [])),
    request_body = SettingsPatch,
    responses((status = 200, body = Settings), (status = 422, body = Problem)))]
pub async fn patch_settings(
    SecretKey(auth): SecretKey,
    fx: Effects,
    State(s): State<AppState>,
    AppJson(p): AppJson<SettingsPatch>,
) -> ApiResult<Json<Settings>> {
    let mut next = auth.tenant.clone();
    next.settings = p.apply(&auth.tenant.settings, "")?;
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
    next.version = auth.tenant.version + 1;
    fx.set_resource(&auth.tenant.id);
    let out = next.settings.clone();
    let cs = ChangeSet::one(Change::UpdateTenant(next));
    let settings = fx.commit(s.store.as_ref(), cs, StatusCode::OK, move |_| out).await?;
    s.origins.invalidate();
    Ok(Json(settings))
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_settings, patch_settings))
}
