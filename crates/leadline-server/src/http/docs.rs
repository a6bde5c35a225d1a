//! The API reference for people, at `/docs`: the served OpenAPI document rendered
//! by Redoc (its standalone bundle, vendored into the binary by
//! `scripts/vendor-redoc`; nothing is fetched from elsewhere).

use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

use crate::http::assets::Asset;
use crate::state::AppState;

const REDOC: &[u8] = include_bytes!("../../assets/redoc.standalone.js");

fn redoc() -> &'static Asset {
    static ASSET: std::sync::OnceLock<Asset> = std::sync::OnceLock::new();
    ASSET.get_or_init(|| Asset::new(REDOC, "text/javascript; charset=utf-8", "public, max-age=86400"))
}

const PAGE: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>Leadline API reference</title></head><body>\
<redoc spec-url=\"/openapi.json\" hide-download-button=\"false\"></redoc>\
<script src=\"/docs/redoc.standalone.js\"></script></body></html>";

async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            // Only this origin; Redoc's search runs in a worker made from a blob.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'self' blob:; worker-src 'self' blob:; \
                 style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
                 frame-ancestors 'none'; base-uri 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        PAGE,
    )
        .into_response()
}

async fn script(headers: HeaderMap) -> Response {
    redoc().serve(&headers)
}

/// `/docs` and its script, outside the API document.
pub(crate) fn unrouted() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/docs", axum::routing::get(page))
        .route("/docs/redoc.standalone.js", axum::routing::get(script))
}
