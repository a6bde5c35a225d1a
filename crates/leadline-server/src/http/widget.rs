//! What the inquiry widget reads before it draws the form: the tenant's widget
//! settings, by its publishable key, with nothing else of the tenant (no staff
//! addresses, no secrets). Public and cacheable: the key is in the query, so a
//! browser needs no preflight and a CDN may cache the answer.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use leadline_core::api_key::{KeyKind, hash_key, looks_like_key};
use leadline_core::money::Currency;
use leadline_core::tenant::TenantStatus;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::AppQuery;

/// The shortest time a person takes to fill the form, in milliseconds: a lead
/// sent sooner after the form was shown is taken for a bot's (see `form` of
/// `POST /v1/leads`).
pub const MIN_FILL_MS: u64 = 3000;

/// `GET /v1/widget/config` parameters.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ConfigParams {
    /// The tenant's publishable key (`pk_...`).
    pub key: String,
}

/// What the widget needs to draw the form.
#[derive(Serialize, utoipa::ToSchema)]
pub struct WidgetConfig {
    /// The company, as the form names it.
    pub company_name: String,
    /// The currency of the budget field.
    pub currency: Currency,
    /// The widget settings (fields, destinations, look, success message, privacy URL).
    #[serde(flatten)]
    pub widget: leadline_core::widget::WidgetSettings,
    /// Submissions sooner than this after the form showed are treated as spam.
    pub min_fill_ms: u64,
}

/// The widget's configuration for a publishable key. Cacheable for five minutes;
/// readable from the tenant's allowed origins (any origin when it lists none).
#[utoipa::path(get, path = "/v1/widget/config", tag = "widget", params(ConfigParams),
    responses((status = 200, body = WidgetConfig), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem)))]
pub async fn config(
    State(s): State<AppState>,
    headers: HeaderMap,
    AppQuery(p): AppQuery<ConfigParams>,
) -> ApiResult<Response> {
    let invalid = || ApiError::Unauthorized("The API key is not valid.");
    if !looks_like_key(&p.key) {
        return Err(invalid());
    }
    let (key, tenant) = s.store.find_api_key(&hash_key(&p.key)).await?.ok_or_else(invalid)?;
    if key.revoked_at.is_some() {
        return Err(invalid());
    }
    if key.kind != KeyKind::Publishable {
        return Err(ApiError::Forbidden(
            "The widget takes the publishable key (pk_...); a secret key must never be in a web page.".into(),
        ));
    }
    if tenant.status != TenantStatus::Active {
        return Err(ApiError::Forbidden(
            "This account is suspended; contact the operator.".into(),
        ));
    }
    let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
    let grant = match origin {
        Some(o) => crate::extract::publishable_origin(&tenant, Some(o)).ok().flatten(),
        None => None,
    };
    let body = WidgetConfig {
        company_name: tenant.settings.company_name.clone(),
        currency: tenant.settings.currency,
        widget: tenant.settings.widget.clone(),
        min_fill_ms: MIN_FILL_MS,
    };
    let mut res = Json(body).into_response();
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(o) = grant.and_then(|o| HeaderValue::from_str(&o).ok()) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
    }
    Ok(res)
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(config))
}
