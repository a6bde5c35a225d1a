//! The HTTP API: one module per resource, merged here. The OpenAPI document is
//! generated from the same routes, so it cannot drift from them.

use utoipa::openapi::security::{ApiKey as ApiKeyScheme, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

pub mod admin;
pub mod assets;
pub mod audit;
pub mod deliveries;
pub mod docs;
pub mod health;
pub mod leads;
pub mod public;
pub mod quotes;
mod schema;
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

/// The OpenAPI 3.1 document as the routes declare it (see [`document`]).
pub fn openapi() -> utoipa::openapi::OpenApi {
    api().split_for_parts().1
}

/// The served OpenAPI document: [`openapi`], completed with what every operation
/// shares and its annotations do not repeat: its path parameters, the bounds of
/// `limit`, the `Idempotency-Key` of POST and PATCH, the problem responses the layers
/// around every handler give (400, 401, 403, 404, 409, 413, 415, 422, 429, 503),
/// and `application/problem+json` as the media type of every error.
pub fn document() -> serde_json::Value {
    // utoipa's types are plain data (string keys only): this cannot fail, and a
    // document that did would fail every test that reads it.
    let mut doc = serde_json::to_value(openapi()).unwrap_or_else(|e| serde_json::json!({"error": e.to_string()}));
    complete(&mut doc);
    schema::tighten(&mut doc);
    schema::describe_rules(&mut doc);
    doc
}

/// The methods of every documented route (see [`crate::routes`]).
pub fn route_methods() -> crate::routes::RouteMethods {
    let doc = openapi();
    crate::routes::RouteMethods::new(doc.paths.paths.iter().map(|(path, item)| {
        let methods = serde_json::to_value(item)
            .ok()
            .and_then(|v| {
                v.as_object()
                    .map(|o| o.keys().map(|k| k.to_ascii_uppercase()).collect())
            })
            .unwrap_or_default();
        (path.clone(), methods)
    }))
}

/// The kind of id a path parameter takes (its prefix), where it is one.
fn path_id_kind(template: &str, name: &str) -> Option<&'static str> {
    let collection = template.split('/').nth(2).unwrap_or("");
    Some(match (collection, name) {
        (_, "tenant_id") | ("tenants", "id") => "ten",
        (_, "key_id") => "key",
        ("dead-letters", "id") => "dl",
        ("leads", "id") => "lead",
        ("quotes", "id") => "quote",
        ("webhook-endpoints", "id") => "whep",
        ("yachts", "id") => "yacht",
        _ => return None,
    })
}

fn problem_response(description: &str) -> serde_json::Value {
    serde_json::json!({
        "description": description,
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    })
}

fn complete(doc: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (template, item) in paths.iter_mut() {
        let names: Vec<String> = template
            .split('{')
            .skip(1)
            .filter_map(|rest| rest.split_once('}').map(|(n, _)| n.to_owned()))
            .collect();
        let Some(item) = item.as_object_mut() else { continue };
        let health = template == "/healthz" || template == "/readyz";
        for (method, op) in item.iter_mut() {
            let Some(op) = op.as_object_mut() else { continue };
            let params = op.entry("parameters").or_insert_with(|| json!([]));
            if let Some(list) = params.as_array_mut() {
                for n in &names {
                    let declared = list.iter().any(|p| p["in"] == "path" && p["name"] == n.as_str());
                    if !declared {
                        list.push(json!({"name": n, "in": "path", "required": true,
                            "schema": {"type": "string", "minLength": 1, "maxLength": 100}}));
                    }
                    if let Some(prefix) = path_id_kind(template, n)
                        && let Some(p) = list.iter_mut().find(|p| p["in"] == "path" && p["name"] == n.as_str())
                    {
                        p["schema"] = json!({"type": "string", "pattern": leadline_core::id::id_pattern(prefix)});
                    }
                }
                // Filters a shared parameter struct lists but this route refuses.
                let refused = |name: &str| match name {
                    "tenant_id" => template == "/v1/audit" || template == "/admin/audit/{tenant_id}",
                    "kind" => template == "/v1/mail-logs",
                    _ => false,
                };
                list.retain(|p| !(p["in"] == "query" && p["name"].as_str().is_some_and(refused)));
                // The real shapes and bounds of the query parameters.
                let id = |prefix: &str| json!({"type": "string", "pattern": leadline_core::id::id_pattern(prefix)});
                for p in list.iter_mut() {
                    if p["in"] != "query" {
                        continue;
                    }
                    let schema = match p["name"].as_str().unwrap_or("") {
                        "limit" => json!({"type": "integer", "minimum": 1, "maximum": 200}),
                        "tenant_id" => id("ten"),
                        "lead_id" => id("lead"),
                        "yacht_id" => id("yacht"),
                        "key" => json!({"type": "string", "pattern": "^pk_[A-Za-z0-9_-]{43}$"}),
                        "cursor" => {
                            json!({"type": "string", "pattern": format!("^$|{}", leadline_core::id::ID_PATTERN),
                            "description": "`next_cursor` of the previous page (opaque; any other value is 400; empty: the first page)."})
                        }
                        "since" | "until" | "created_after" | "created_before" => {
                            json!({"type": "string", "format": "date-time"})
                        }
                        "status" if template == "/v1/leads" => {
                            json!({"type": "string", "enum": ["new", "contacted", "quoted", "won", "lost"]})
                        }
                        "status" if template == "/v1/quotes" => json!({"type": "string",
                            "enum": ["draft", "sent", "accepted", "declined", "expired", "cancelled"]}),
                        "kind" => json!({"type": "string", "enum": ["email", "webhook"]}),
                        "q" | "action" | "resource_id" => json!({"type": "string", "pattern": schema::NO_NUL}),
                        _ => continue,
                    };
                    p["schema"] = schema;
                }
                if list.is_empty() {
                    op.remove("parameters");
                }
            }
            let has_query = op
                .get("parameters")
                .and_then(Value::as_array)
                .is_some_and(|l| l.iter().any(|p| p["in"] == "query"));
            let has_body = op.contains_key("requestBody");
            let secured = op
                .get("security")
                .and_then(Value::as_array)
                .is_some_and(|s| !s.is_empty());
            let writes = method == "post" || method == "patch" || method == "delete";
            // The idempotency header of every write that takes one. Reusing a key
            // for another request is 422, a rule no schema can say (the API checks
            // give each generated request a key of its own).
            if (method == "post" || method == "patch")
                && (template.starts_with("/v1/") || template.starts_with("/admin/"))
            {
                let note = "Send `Idempotency-Key` to make the request safe to retry: the same key with the same \
                            request answers the same response for 24 h; with another request it is 422.";
                let d = op.get("description").and_then(Value::as_str).unwrap_or("").to_owned();
                let joined = if d.is_empty() {
                    note.to_owned()
                } else {
                    format!("{d}\n\n{note}")
                };
                op.insert("description".into(), Value::String(joined));
                let params = op.entry("parameters").or_insert_with(|| json!([]));
                if let Some(list) = params.as_array_mut() {
                    list.push(json!({"name": "Idempotency-Key", "in": "header", "required": false,
                        "description": "1 to 255 printable ASCII characters, unique per request: a retry sends the same key.",
                        "schema": {"type": "string", "pattern": "^[\\x21-\\x7e](?:[\\x20-\\x7e]{0,253}[\\x21-\\x7e])?$"}}));
                }
            }
            let responses = op.entry("responses").or_insert_with(|| json!({}));
            let Some(responses) = responses.as_object_mut() else {
                continue;
            };
            // Errors are problem documents.
            for (status, r) in responses.iter_mut() {
                if (status.starts_with('4') || status.starts_with('5'))
                    && let Some(content) = r.get_mut("content").and_then(Value::as_object_mut)
                    && let Some(json) = content.remove("application/json")
                {
                    content.insert("application/problem+json".into(), json);
                }
            }
            let mut add = |status: &str, description: &str| {
                responses
                    .entry(status.to_owned())
                    .or_insert_with(|| problem_response(description));
            };
            if health {
                continue;
            }
            add("429", "Too many requests from this address; retry after `Retry-After`.");
            if has_query || has_body || writes {
                add(
                    "400",
                    "Malformed request: a bad query string, unknown query parameters, malformed JSON, a bad Idempotency-Key, or a repeated credentials header.",
                );
            }
            if secured || template.starts_with("/v1/") || template.starts_with("/admin/") {
                add("401", "No key, or a key that is not valid.");
            }
            if secured && template.starts_with("/v1/") {
                add(
                    "403",
                    "A key of the wrong kind, a suspended tenant, or an origin the tenant does not allow.",
                );
            }
            if !names.is_empty() {
                add("404", "Nothing at this address, or not yours.");
            }
            if has_body {
                add("413", "The body is larger than 64 KiB.");
                add("415", "The body is not sent as JSON.");
                add(
                    "422",
                    "The request has invalid fields (see `errors`), or the Idempotency-Key was used for another request.",
                );
            }
            if (method == "post" || method == "patch")
                && (template.starts_with("/v1/") || template.starts_with("/admin/"))
            {
                add(
                    "422",
                    "The Idempotency-Key was used for another request (method, path or body).",
                );
            }
            if writes && (template.starts_with("/v1/") || template.starts_with("/admin/")) {
                add(
                    "409",
                    "A request with this Idempotency-Key is still running, or the resource changed meanwhile.",
                );
                add(
                    "503",
                    "The database cannot take the write now (busy, or its disk is full); retry after `Retry-After`.",
                );
            }
            // The headers of every answer: the request id and the rate limit (all
            // but the health checks), `Retry-After` on 429 and 503, and
            // `Idempotent-Replayed` on a replayed write.
            let header = |name: &str| json!({"$ref": format!("#/components/headers/{name}")});
            for (status, r) in responses.iter_mut() {
                let Some(r) = r.as_object_mut() else { continue };
                let headers = r.entry("headers").or_insert_with(|| json!({}));
                headers["X-Request-Id"] = header("X-Request-Id");
                headers["RateLimit"] = header("RateLimit");
                headers["RateLimit-Policy"] = header("RateLimit-Policy");
                if status == "429" || status == "503" {
                    headers["Retry-After"] = header(if status == "429" {
                        "Retry-After-Required"
                    } else {
                        "Retry-After"
                    });
                }
                if status.starts_with('2') && (method == "post" || method == "patch") && !template.starts_with("/q/") {
                    headers["Idempotent-Replayed"] = header("Idempotent-Replayed");
                }
            }
        }
    }
    let headers = json!({
        "X-Request-Id": {"description": "The request's id (`req_...`), also in the logs and in problem documents.",
            "schema": {"type": "string"}},
        "RateLimit": {"description": "What is left of this address's limit for the route class: `\"tenant\";r=57;t=3` (57 requests left, the window resets in 3 s).",
            "schema": {"type": "string"}},
        "RateLimit-Policy": {"description": "The limit of the route class: `\"tenant\";q=60;w=60` (60 requests per 60 s per address).",
            "schema": {"type": "string"}},
        "Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer", "minimum": 1}},
        "Retry-After-Required": {"description": "Seconds to wait before retrying.", "required": true,
            "schema": {"type": "integer", "minimum": 1}},
        "Idempotent-Replayed": {"description": "`true` when this is the stored answer to an earlier request with the same `Idempotency-Key`.",
            "schema": {"type": "string", "enum": ["true"]}},
    });
    if let Some(c) = doc.get_mut("components").and_then(Value::as_object_mut) {
        c.insert("headers".into(), headers);
    }
}
