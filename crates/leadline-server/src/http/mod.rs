//! The HTTP API: one module per resource, merged here. The OpenAPI document is
//! generated from the same routes, so it cannot drift from them.

use utoipa::openapi::security::{ApiKey as ApiKeyScheme, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;

pub mod admin;
pub mod audit;
pub mod deliveries;
pub mod health;
pub mod leads;
pub mod public;
pub mod quotes;
pub mod settings;
pub mod webhooks;
pub mod widget;
pub mod yachts;

#[derive(OpenApi)]
#[openapi(
    info(title = "Leadline API", description = "Leads, quotes and bookings for yacht charter companies."),
    modifiers(&Security),
    components(schemas(crate::error::Problem))
)]
struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "admin_key",
            SecurityScheme::ApiKey(ApiKeyScheme::Header(ApiKeyValue::new("X-Admin-Key"))),
        );
        c.add_security_scheme(
            "secret_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("sk_...")
                    .build(),
            ),
        );
        c.add_security_scheme(
            "publishable_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("pk_...")
                    .build(),
            ),
        );
    }
}

/// Every documented route.
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::router())
        .merge(admin::router())
        .merge(audit::router())
        .merge(settings::router())
        .merge(leads::router())
        .merge(webhooks::router())
        .merge(deliveries::router())
        .merge(yachts::router())
        .merge(quotes::router())
        .merge(public::router())
        .merge(widget::router())
}

/// The OpenAPI 3.1 document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().split_for_parts().1
}
