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

use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::AppQuery;
use crate::state::AppState;

pub use leadline_core::lead::MIN_FILL_MS;

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
    /// Whether the page asking (its `Origin`) may send leads with this key; the
    /// widget tells the visitor at once when it may not.
    pub origin_allowed: bool,
}

/// The widget's configuration for a publishable key. Cacheable for five minutes
/// (per `Origin`); readable from any origin (it holds nothing secret), and says
/// whether the asking origin may send leads.
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
    let origin_allowed = crate::extract::publishable_origin(&tenant, origin).is_ok();
    let body = WidgetConfig {
        company_name: tenant.settings.company_name.clone(),
        currency: tenant.settings.currency,
        widget: tenant.settings.widget.clone(),
        min_fill_ms: MIN_FILL_MS,
        origin_allowed,
    };
    let mut res = Json(body).into_response();
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(o) = origin.and_then(|o| HeaderValue::from_str(o).ok()) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
    }
    Ok(res)
}

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(config))
}

/// The widget script, embedded in the binary.
const SCRIPT: &str = include_str!("../../widget/v1.js");

fn asset() -> &'static crate::http::assets::Asset {
    static ASSET: std::sync::OnceLock<crate::http::assets::Asset> = std::sync::OnceLock::new();
    ASSET.get_or_init(|| {
        crate::http::assets::Asset::new(
            SCRIPT.as_bytes(),
            "text/javascript; charset=utf-8",
            "public, max-age=604800",
        )
    })
}

/// `GET /widget/v1.js`: the script, gzip-compressed when the client takes it,
/// cached for a week and revalidated by its `ETag`.
async fn script(headers: HeaderMap) -> Response {
    asset().serve(&headers)
}

/// `GET /widget/demo` (demo mode only): a page with the widget of the demo company.
async fn demo(State(s): State<AppState>) -> Response {
    let Some(pk) = s.demo_key.get() else {
        return axum::http::StatusCode::NOT_FOUND.into_response();
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Charter inquiry: widget demo</title></head>\
         <body><main><h1>Plan your charter</h1>\
         <p>This page embeds the Leadline inquiry widget with the demo company's publishable key.</p>\
         <div data-leadline-form></div>\
         <script src=\"/widget/v1.js\" data-leadline-key=\"{pk}\" async></script></main></body></html>"
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        html,
    )
        .into_response()
}

/// The widget's routes outside the API document.
pub(crate) fn unrouted() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/widget/v1.js", axum::routing::get(script))
        .route("/widget/demo", axum::routing::get(demo))
}

#[cfg(test)]
mod tests {
    /// The widget stays within its size budget: 15 KB gzipped.
    #[test]
    fn the_script_is_under_15_kb_gzipped() {
        let size = super::asset().gzip_len();
        assert!(size > 1000 && size < 15 * 1024, "{size} bytes gzipped");
    }
}
