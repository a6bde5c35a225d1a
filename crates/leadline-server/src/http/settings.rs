//! The tenant's own settings (`sk_`).

use axum::Json;
use axum::extract::State;
use leadline_core::tenant::{Settings, SettingsPatch};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::effects::Effects;
use crate::error::{ApiResult, Problem};
use crate::extract::{AppJson, SecretKey};
use crate::state::AppState;
use crate::usecases;

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
    Ok(Json(usecases::settings::update(&fx, &s, &auth.tenant, p).await?))
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_settings, patch_settings))
}
