//! Admin API, tenant settings and the HTTP conventions every route shares, on both
//! backends.

mod common;

use common::Go;

use common::{ADMIN_KEY, Backend, TestApp, problem};
use reqwest::Method;
use serde_json::{Value, json};

leadline_store::both_backends!(
    admin_key_is_required,
    tenants_are_created_listed_read_and_patched,
    settings_read_patch_and_validation,
    conventions_request_ids_and_error_documents,
    health_readiness_and_openapi,
);

async fn admin_key_is_required(b: Backend) {
    let app = TestApp::spawn(b).await;
    for (m, p) in [
        (Method::GET, "/admin/tenants"),
        (Method::POST, "/admin/tenants"),
        (Method::GET, "/admin/tenants/ten_01jd6c8m2f0000000000000000"),
    ] {
        problem(app.client.request(m.clone(), app.url(p)).go().await, 401).await;
        let wrong = app
            .client
            .request(m.clone(), app.url(p))
            .header("X-Admin-Key", format!("{ADMIN_KEY}x"));
        problem(wrong.go().await, 401).await;
        let short = app.client.request(m, app.url(p)).header("X-Admin-Key", &ADMIN_KEY[..5]);
        problem(short.go().await, 401).await;
    }
    // A tenant key is not an admin key.
    let t = app.tenant("Aegean Blue").await;
    problem(app.with_key(Method::GET, "/admin/tenants", &t.sk).go().await, 401).await;
    let res = app
        .client
        .get(app.url("/admin/tenants"))
        .header("X-Admin-Key", &t.sk)
        .go()
        .await;
    problem(res, 401).await;
}

async fn tenants_are_created_listed_read_and_patched(b: Backend) {
    let app = TestApp::spawn(b).await;
    let res = app
        .admin(Method::POST, "/admin/tenants")
        .json(&json!({"name": "Aegean Blue Charters", "notification_emails": ["ops@aegean.example"], "vat_percent": "13", "currency": "EUR"}))
        .go().await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.expect("json");
    let t = &created["tenant"];
    assert_eq!(t["slug"], "aegean-blue-charters");
    assert_eq!(t["status"], "active");
    assert_eq!(t["settings"]["vat_percent"], "13");
    assert_eq!(t["settings"]["company_name"], "Aegean Blue Charters");
    assert_eq!(t["settings"]["notification_emails"], json!(["ops@aegean.example"]));
    assert_eq!(t["settings"]["auto_reply_enabled"], true);
    assert_eq!(t["settings"]["quote_validity_days"], 7);
    assert!(
        created["secret_key"]
            .as_str()
            .is_some_and(|k| k.starts_with("sk_") && k.len() > 40)
    );
    assert!(
        created["publishable_key"]
            .as_str()
            .is_some_and(|k| k.starts_with("pk_"))
    );
    let id = t["id"].as_str().expect("id").to_owned();

    // The same slug again: 409, nothing created.
    let res = app
        .admin(Method::POST, "/admin/tenants")
        .json(&json!({"name": "Aegean Blue Charters"}))
        .go()
        .await;
    problem(res, 409).await;
    // Bad bodies.
    for (body, status) in [
        (json!({}), 422),
        (json!({"name": ""}), 422),
        (json!({"name": "X Y", "slug": "Bad Slug"}), 422),
        (json!({"name": "X Y", "notification_emails": ["nope"]}), 422),
        (json!({"name": "X Y", "vat_percent": 13}), 422),
        (json!({"name": "X Y", "vat_percent": "13.333"}), 422),
        (json!({"name": "X Y", "colour": "blue"}), 422),
    ] {
        problem(app.admin(Method::POST, "/admin/tenants").json(&body).go().await, status).await;
    }
    for i in 0..3 {
        app.tenant(&format!("Company {i}")).await;
    }
    let page: Value = app
        .admin(Method::GET, "/admin/tenants?limit=2")
        .go()
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(page["data"].as_array().map(Vec::len), Some(2));
    let next = page["next_cursor"].as_str().expect("more");
    let page2: Value = app
        .admin(Method::GET, &format!("/admin/tenants?limit=2&cursor={next}"))
        .go()
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(page2["data"].as_array().map(Vec::len), Some(2));
    assert_eq!(page2["next_cursor"], Value::Null);
    assert_eq!(page2["data"][1]["id"], id.as_str(), "oldest last");

    let res = app
        .admin(Method::PATCH, &format!("/admin/tenants/{id}"))
        .json(&json!({"name": "Aegean Blue", "quote_validity_days": 14, "reply_to": "sales@aegean.example"}))
        .go()
        .await;
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.expect("json");
    assert_eq!(v["name"], "Aegean Blue");
    assert_eq!(v["settings"]["quote_validity_days"], 14);
    assert_eq!(v["settings"]["vat_percent"], "13", "untouched settings stay");
    let read: Value = app
        .admin(Method::GET, &format!("/admin/tenants/{id}"))
        .go()
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(read["settings"]["reply_to"], "sales@aegean.example");
    assert_eq!(read["keys"].as_array().map(Vec::len), Some(2));
    problem(
        app.admin(Method::PATCH, &format!("/admin/tenants/{id}"))
            .json(&json!({"status": "deleted"}))
            .go()
            .await,
        422,
    )
    .await;
    problem(
        app.admin(Method::PATCH, &format!("/admin/tenants/{id}"))
            .json(&json!({"quote_validity_days": 0}))
            .go()
            .await,
        422,
    )
    .await;
    problem(
        app.admin(Method::GET, "/admin/tenants/ten_01jd6c8m2f0000000000000000")
            .go()
            .await,
        404,
    )
    .await;
    problem(
        app.admin(Method::PATCH, "/admin/tenants/nope")
            .json(&json!({}))
            .go()
            .await,
        404,
    )
    .await;
    problem(
        app.admin(Method::POST, "/admin/tenants/nope/keys")
            .json(&json!({"kind": "secret"}))
            .go()
            .await,
        404,
    )
    .await;
    problem(
        app.admin(Method::POST, &format!("/admin/tenants/{id}/keys"))
            .json(&json!({"kind": "master"}))
            .go()
            .await,
        422,
    )
    .await;
}

async fn settings_read_patch_and_validation(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.tenant("Aegean Blue").await;
    let u = app.tenant("Other Co").await;
    let s: Value = app
        .with_key(Method::GET, "/v1/settings", &t.sk)
        .go()
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(s["currency"], "EUR");
    assert_eq!(
        s["payment_schedule"],
        json!([{"percent": "50", "due": "at_booking"}, {"percent": "50", "due": "days_before_embarkation", "days": 30}])
    );
    let patch = json!({
        "company_name": "Aegean Blue Yachting", "notification_emails": ["a@aegean.example", "b@aegean.example"],
        "mail_from_name": "Aegean Blue", "reply_to": "sales@aegean.example", "auto_reply_enabled": false,
        "allowed_origins": ["https://aegean.example"], "currency": "USD", "vat_percent": "5.2", "apa_percent": "25",
        "quote_validity_days": 10,
        "payment_schedule": [{"percent": "30", "due": "at_booking"}, {"percent": "70", "due": "days_before_embarkation", "days": 45}],
        "templates": {"lead_acknowledgement": {"el": {"subject": "Ευχαριστούμε", "text": "Γεια {{ name }}", "html": "<p>Γεια {{ name }}</p>"}}}
    });
    let res = app
        .with_key(Method::PATCH, "/v1/settings", &t.sk)
        .json(&patch)
        .go()
        .await;
    assert_eq!(res.status(), 200);
    let s: Value = res.json().await.expect("json");
    for k in [
        "company_name",
        "notification_emails",
        "mail_from_name",
        "reply_to",
        "auto_reply_enabled",
        "allowed_origins",
        "currency",
        "vat_percent",
        "apa_percent",
        "quote_validity_days",
        "payment_schedule",
        "templates",
    ] {
        assert_eq!(s[k], patch[k], "{k}");
    }
    let again: Value = app
        .with_key(Method::GET, "/v1/settings", &t.sk)
        .go()
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(again, s, "stored");
    // Null clears an optional field; absent fields stay.
    let s: Value = app
        .with_key(Method::PATCH, "/v1/settings", &t.sk)
        .json(&json!({"reply_to": null}))
        .go()
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(s["reply_to"], Value::Null);
    assert_eq!(s["mail_from_name"], "Aegean Blue");
    for bad in [
        json!({"vat_percent": "101"}),
        json!({"vat_percent": "5.255"}),
        json!({"currency": "EURO"}),
        json!({"reply_to": "nope"}),
        json!({"allowed_origins": ["*"]}),
        json!({"allowed_origins": ["https://a.example/path"]}),
        json!({"payment_schedule": [{"percent": "50", "due": "at_booking"}]}),
        json!({"payment_schedule": [{"percent": "100", "due": "days_before_embarkation"}]}),
        json!({"templates": {"newsletter": {"en": {"subject": "s", "text": "t", "html": "h"}}}}),
        json!({"quote_validity_days": 400}),
        json!({"company_name": ""}),
        json!({"auto_reply": true}),
    ] {
        let res = app.with_key(Method::PATCH, "/v1/settings", &t.sk).json(&bad).go().await;
        problem(res, 422).await;
    }
    let after: Value = app
        .with_key(Method::GET, "/v1/settings", &t.sk)
        .go()
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(after, s, "refused patches change nothing");
    // The other tenant's settings were never touched.
    let other: Value = app
        .with_key(Method::GET, "/v1/settings", &u.sk)
        .go()
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(other["company_name"], "Other Co");
    assert_eq!(other["currency"], "EUR");
    problem(
        app.with_key(Method::PATCH, "/v1/settings", &t.pk)
            .json(&json!({"currency": "GBP"}))
            .go()
            .await,
        403,
    )
    .await;
}

async fn conventions_request_ids_and_error_documents(b: Backend) {
    let app = TestApp::spawn(b).await;
    // A sane request id is echoed; an unsafe one is replaced.
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("X-Request-Id", "abc-123.x_y")
        .go()
        .await;
    assert_eq!(res.headers()["x-request-id"], "abc-123.x_y");
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("X-Request-Id", "a b\"<script>")
        .go()
        .await;
    let rid = res.headers()["x-request-id"].to_str().expect("ascii").to_owned();
    assert!(rid.starts_with("req_"), "{rid}");
    let res = app
        .client
        .get(app.url("/healthz"))
        .header("X-Request-Id", "x".repeat(200))
        .go()
        .await;
    assert!(
        res.headers()["x-request-id"]
            .to_str()
            .expect("ascii")
            .starts_with("req_")
    );
    // Unknown routes and methods are problems too.
    let p = problem(app.client.get(app.url("/v1/nothing-here")).go().await, 404).await;
    assert_eq!(p["instance"], "/v1/nothing-here");
    let res = app
        .client
        .put(app.url("/v1/leads"))
        .header("X-Request-Id", "put-1")
        .go()
        .await;
    let p = problem(res, 405).await;
    assert_eq!(p["request_id"], "put-1");
    problem(
        app.client
            .delete(app.url("/admin/tenants"))
            .header("X-Admin-Key", ADMIN_KEY)
            .go()
            .await,
        405,
    )
    .await;
}

async fn health_readiness_and_openapi(b: Backend) {
    let app = TestApp::spawn(b).await;
    let res = app.client.get(app.url("/healthz")).go().await;
    assert_eq!(res.status(), 200);
    let res = app.client.get(app.url("/readyz")).go().await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.expect("json")["status"], "ok");
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .go()
        .await
        .json()
        .await
        .expect("json");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")));
    let paths = doc["paths"].as_object().expect("paths");
    for p in [
        "/v1/leads",
        "/v1/leads/{id}",
        "/v1/settings",
        "/admin/tenants",
        "/admin/tenants/{id}",
        "/admin/tenants/{id}/keys",
        "/admin/tenants/{id}/keys/{key_id}",
        "/healthz",
        "/readyz",
    ] {
        assert!(paths.contains_key(p), "{p} documented");
    }
    for m in ["post", "get"] {
        assert!(doc["paths"]["/v1/leads"][m].is_object(), "{m} /v1/leads");
    }
    for m in ["get", "patch", "delete"] {
        assert!(doc["paths"]["/v1/leads/{id}"][m].is_object(), "{m} /v1/leads/{{id}}");
    }
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    assert!(doc["components"]["schemas"]["NewLeadRequest"].is_object());
}

/// The served document says what the server does: every templated path declares
/// its parameters, every error is `application/problem+json`, every operation
/// documents the statuses the layers around its handler give (the path's 404,
/// the key's 401, the body's 400/413/415/422, the rate limiter's 429), and a
/// method a route does not have is 405 even with an `Idempotency-Key`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_describes_every_status_and_parameter() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .go()
        .await
        .json()
        .await
        .expect("json");
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let names: Vec<&str> = path
            .split('{')
            .skip(1)
            .filter_map(|r| r.split_once('}').map(|(n, _)| n))
            .collect();
        for (method, op) in item.as_object().expect("item") {
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            for n in &names {
                assert!(
                    params.iter().any(|p| p["in"] == "path" && p["name"] == *n),
                    "{method} {path} declares {n}"
                );
            }
            let responses = op["responses"].as_object().expect("responses");
            for (status, r) in responses {
                if (status.starts_with('4') || status.starts_with('5'))
                    && let Some(content) = r["content"].as_object()
                {
                    assert!(
                        content.keys().all(|k| k == "application/problem+json"),
                        "{method} {path} {status} is a problem document"
                    );
                }
            }
            if path == "/healthz" || path == "/readyz" {
                continue;
            }
            let mut need = vec!["429"];
            if path.starts_with("/v1/") || path.starts_with("/admin/") {
                need.push("401");
            }
            if !names.is_empty() {
                need.push("404");
            }
            if op.get("requestBody").is_some() {
                need.extend(["400", "413", "415", "422"]);
            }
            for s in need {
                assert!(responses.contains_key(s), "{method} {path} documents {s}");
            }
            // Which key the operation takes.
            // (The widget's configuration takes a publishable key as its `key` parameter.)
            if (path.starts_with("/v1/") || path.starts_with("/admin/")) && path != "/v1/widget/config" {
                let schemes: Vec<&str> = op["security"]
                    .as_array()
                    .map(|l| {
                        l.iter()
                            .flat_map(|r| r.as_object().into_iter().flat_map(|o| o.keys()))
                            .map(String::as_str)
                            .collect()
                    })
                    .unwrap_or_default();
                let expected: &[&str] = if path.starts_with("/admin/") {
                    &["admin_key"]
                } else {
                    &["secret_key", "publishable_key"]
                };
                assert!(
                    !schemes.is_empty() && schemes.iter().all(|s| expected.contains(s)),
                    "{method} {path} names its key: {schemes:?}"
                );
            }
            // The rate-limit headers on every answer, Retry-After on 429.
            for (status, r) in responses {
                assert!(
                    r["headers"]["RateLimit"].is_object(),
                    "{method} {path} {status} RateLimit"
                );
            }
            assert_eq!(
                responses["429"]["headers"]["Retry-After"]["$ref"], "#/components/headers/Retry-After-Required",
                "{method} {path}"
            );
            checked += 1;
        }
    }
    assert!(checked > 40, "{checked} operations");
    let t = app.tenant("Methods").await;
    let res = app
        .with_key(reqwest::Method::PATCH, "/v1/quotes/quote_x/send", &t.sk)
        .header("Idempotency-Key", "not-a-method-here")
        .go()
        .await;
    problem(res, 405).await;
}

/// `/docs` is the API reference for people, with its renderer served from the
/// binary (compressed, cacheable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_serve_the_reference_page_and_its_renderer() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let res = app.client.get(app.url("/docs")).go().await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-security-policy"]
            .to_str()
            .is_ok_and(|c| c.contains("default-src 'self'"))
    );
    let html = res.text().await.expect("html");
    assert!(html.contains("spec-url=\"/openapi.json\"") && html.contains("src=\"/docs/redoc.standalone.js\""));
    let res = app
        .client
        .get(app.url("/docs/redoc.standalone.js"))
        .header("accept-encoding", "gzip")
        .go()
        .await;
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("etag").is_some());
    assert!(res.bytes().await.expect("body").len() > 100_000);
}
