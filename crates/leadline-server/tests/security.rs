//! What a hostile client tries, and what it gets: each test here reproduced a
//! defect of an earlier version.

mod common;

use common::Go;

use common::{Backend, TestApp, lead_body, problem};
use reqwest::Method;
use serde_json::{Value, json};

async fn metrics_text(app: &TestApp) -> String {
    app.admin(Method::GET, "/admin/metrics")
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// Invented methods do not make new metric series: they count as `other`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_methods_make_no_new_series() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for i in 0..50 {
        let m = Method::from_bytes(format!("INVENTED{i}X").as_bytes()).expect("method");
        let res = app.client.request(m, app.url("/healthz")).go().await;
        assert!(res.status().is_client_error(), "{}", res.status());
    }
    let text = metrics_text(&app).await;
    assert!(!text.contains("INVENTED"), "no series per invented method");
    assert!(text.contains("method=\"other\""), "counted as other");
}

async fn set_status(app: &TestApp, id: &str, status: &str) {
    let res = app
        .admin(Method::PATCH, &format!("/admin/tenants/{id}"))
        .json(&json!({"status": status}))
        .go()
        .await;
    assert_eq!(res.status(), 200);
}

fn yacht() -> Value {
    json!({
        "name": "Meltemi", "type": "sailing_yacht", "max_guests": 8, "currency": "EUR", "min_nights": 3,
        "rates": [{"season": "high", "from": "2030-07-01", "to": "2030-08-31", "weekly_rate": {"amount": 500000, "currency": "EUR"}}]
    })
}

/// Idempotency comes after authorization: a publishable key never reads what a
/// secret key stored, cannot squat a key with a stored 403, a suspended tenant
/// gets no replays, and a publishable key's replay carries its CORS grant.
async fn idempotency_comes_after_authorization(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.tenant("Keys Apart").await;
    let idem = |m: Method, path: &str, key: &str, k: &str| app.with_key(m, path, key).header("Idempotency-Key", k);

    // A secret key's stored answer holds a webhook signing secret.
    let hook = json!({"url": "http://127.0.0.1:9/hook", "events": ["lead.created"]});
    let res = idem(Method::POST, "/v1/webhook-endpoints", &t.sk, "k1")
        .json(&hook)
        .go()
        .await;
    assert_eq!(res.status(), 201);
    let res = idem(Method::POST, "/v1/webhook-endpoints", &t.pk, "k1")
        .json(&hook)
        .go()
        .await;
    assert!(
        res.headers().get("idempotent-replayed").is_none(),
        "no replay for another key kind"
    );
    let p = problem(res, 403).await;
    assert!(!p.to_string().contains("whsec_"), "{p}");

    // A publishable key's refusal does not stick to the key.
    let res = idem(Method::POST, "/v1/yachts", &t.pk, "k2").json(&yacht()).go().await;
    problem(res, 403).await;
    let res = idem(Method::POST, "/v1/yachts", &t.sk, "k2").json(&yacht()).go().await;
    assert_eq!(res.status(), 201, "the secret key's request runs");

    // A suspended tenant gets no replays.
    let body = lead_body("suspended@example.com");
    let res = idem(Method::POST, "/v1/leads", &t.sk, "k3").json(&body).go().await;
    assert_eq!(res.status(), 201);
    set_status(&app, &t.id, "suspended").await;
    let res = idem(Method::POST, "/v1/leads", &t.sk, "k3").json(&body).go().await;
    problem(res, 403).await;
    set_status(&app, &t.id, "active").await;
    let res = idem(Method::POST, "/v1/leads", &t.sk, "k3").json(&body).go().await;
    assert_eq!(res.status(), 201);
    assert_eq!(
        res.headers().get("idempotent-replayed").map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );

    // A publishable key's replay is readable by the browser like the first answer.
    let res = app
        .with_key(Method::PATCH, "/v1/settings", &t.sk)
        .json(&json!({"allowed_origins": ["https://charters.example"]}))
        .go()
        .await;
    assert_eq!(res.status(), 200);
    let body = lead_body("browser@example.com");
    for replayed in [false, true] {
        let res = idem(Method::POST, "/v1/leads", &t.pk, "k4")
            .header("Origin", "https://charters.example")
            .json(&body)
            .go()
            .await;
        assert_eq!(res.status(), 201);
        assert_eq!(res.headers().get("idempotent-replayed").is_some(), replayed);
        assert_eq!(
            res.headers().get("access-control-allow-origin").map(|v| v.as_bytes()),
            Some(&b"https://charters.example"[..]),
            "replayed: {replayed}"
        );
    }
    let res = idem(Method::POST, "/v1/leads", &t.pk, "k4")
        .header("Origin", "https://evil.example")
        .json(&body)
        .go()
        .await;
    assert!(res.headers().get("access-control-allow-origin").is_none());
    problem(res, 403).await;
}

leadline_store::both_backends!(idempotency_comes_after_authorization);

/// Smaller holes: two credentials headers, a revoked key told apart from an
/// unknown one, a panicking handler answering text, a date that overflows.
async fn smaller_holes_are_closed(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.tenant("Small Holes").await;
    let u = app.tenant("Other").await;
    // Two Authorization headers: 400, whichever comes first.
    let res = app
        .client
        .get(app.url("/v1/leads"))
        .header("Authorization", format!("Bearer {}", t.sk))
        .header("Authorization", format!("Bearer {}", u.sk))
        .go()
        .await;
    problem(res, 400).await;
    let res = app
        .client
        .get(app.url("/admin/tenants"))
        .header("X-Admin-Key", common::ADMIN_KEY)
        .header("X-Admin-Key", "something-else-entirely")
        .go()
        .await;
    problem(res, 400).await;
    // A revoked key and a key that never existed get the same answer.
    let res = app
        .admin(Method::POST, &format!("/admin/tenants/{}/keys", t.id))
        .json(&json!({"kind": "secret"}))
        .go()
        .await;
    assert_eq!(res.status(), 201);
    let issued: Value = res.json().await.expect("json");
    let key = issued["key"].as_str().expect("key").to_owned();
    let key_id = issued["id"].as_str().expect("id").to_owned();
    let res = app
        .admin(Method::DELETE, &format!("/admin/tenants/{}/keys/{key_id}", t.id))
        .go()
        .await;
    assert!(res.status().is_success());
    let revoked = problem(app.with_key(Method::GET, "/v1/leads", &key).go().await, 401).await;
    let mut unknown_key = key.clone();
    unknown_key.pop();
    unknown_key.push(if key.ends_with('A') { 'B' } else { 'A' });
    let unknown = problem(app.with_key(Method::GET, "/v1/leads", &unknown_key).go().await, 401).await;
    assert_eq!(
        revoked["detail"], unknown["detail"],
        "no oracle for keys that once existed"
    );
    // A date at the edge of the calendar: a clear 400, not a panic.
    let y: Value = app
        .with_key(Method::POST, "/v1/yachts", &t.sk)
        .json(&yacht())
        .go()
        .await
        .json()
        .await
        .expect("json");
    let id = y["id"].as_str().expect("id");
    for q in ["from=%2B262142-12-31", "from=1900-01-01", "to=2300-01-01"] {
        let res = app
            .with_key(Method::GET, &format!("/v1/yachts/{id}/availability?{q}"), &t.sk)
            .go()
            .await;
        let p = problem(res, 400).await;
        assert!(p["detail"].as_str().is_some_and(|d| d.contains("2000-01-01")), "{p}");
    }
    let mut body = lead_body("far@example.com");
    body["charter_from"] = json!("2250-07-01");
    body["charter_to"] = json!("2250-07-08");
    let p = problem(
        app.with_key(Method::POST, "/v1/leads", &t.sk).json(&body).go().await,
        422,
    )
    .await;
    assert_eq!(p["errors"][0]["pointer"], "/charter_from", "{p}");
}

leadline_store::both_backends!(smaller_holes_are_closed);

/// IPv6 clients are limited by their /64: new addresses of one network share a
/// quota.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_clients_share_their_64s_quota() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[
            ("LEADLINE_TRUSTED_PROXIES", "127.0.0.1/32"),
            ("LEADLINE_RATE_LIMIT_PUBLIC_PER_MINUTE", "3"),
        ],
    )
    .await;
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for i in 1..=4 {
            let res = app
                .client
                .get(app.url("/openapi.json"))
                .header("X-Forwarded-For", format!("2001:db8:1:2::{i:x}"))
                .go()
                .await;
            v.push(res.status().as_u16());
        }
        v
    };
    assert_eq!(statuses, [200, 200, 200, 429]);
    let other = app
        .client
        .get(app.url("/openapi.json"))
        .header("X-Forwarded-For", "2001:db8:1:3::1")
        .go()
        .await;
    assert_eq!(other.status(), 200, "another /64 has its own quota");
}

/// Text that can spoof what a reader sees, or inject a header, is refused in
/// every kind of text field, and nothing of the request is stored.
async fn spoofing_text_is_refused_everywhere(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.tenant("Plain Text").await;
    let refused = |res: reqwest::Response, pointer: &'static str| async move {
        let p = problem(res, 422).await;
        assert!(
            p["errors"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["pointer"] == pointer)),
            "{pointer}: {p}"
        );
    };
    // A lead whose name reverses what follows it, or reads as an encoded header.
    for name in [
        "Maria \u{202E}gnp.exe",
        "Maria\u{2028}Bcc: x@example.com",
        "=?utf-8?q?Your=20bank?=",
    ] {
        let mut body = lead_body("spoof@example.com");
        body["name"] = json!(name);
        let res = app.with_key(Method::POST, "/v1/leads", &t.sk).json(&body).go().await;
        refused(res, "/name").await;
    }
    assert!(app.lead_ids(&t).await.is_empty(), "nothing stored");
    // Settings, yachts and webhook descriptions.
    let res = app
        .with_key(Method::PATCH, "/v1/settings", &t.sk)
        .json(&json!({"company_name": "Aegean \u{2066}Charters"}))
        .go()
        .await;
    refused(res, "/company_name").await;
    let mut y = yacht();
    y["rates"][0]["season"] = json!("high\u{2029}season");
    let res = app.with_key(Method::POST, "/v1/yachts", &t.sk).json(&y).go().await;
    refused(res, "/rates/0/season").await;
    let res = app
        .with_key(Method::POST, "/v1/webhook-endpoints", &t.sk)
        .json(&json!({"url": "http://127.0.0.1:9/hook", "events": ["lead.created"], "description": "CRM \u{202B}hook"}))
        .go()
        .await;
    refused(res, "/description").await;
    // A quote discount label with a line break.
    let y: Value = app
        .with_key(Method::POST, "/v1/yachts", &t.sk)
        .json(&yacht())
        .go()
        .await
        .json()
        .await
        .expect("json");
    let mut body = lead_body("quote@example.com");
    body["charter_from"] = json!("2030-07-04");
    body["charter_to"] = json!("2030-07-11");
    let lead = app.lead(&t, body).await;
    let res = app
        .with_key(Method::POST, "/v1/quotes", &t.sk)
        .json(&json!({"lead_id": lead["id"], "yacht_id": y["id"],
            "discounts": [{"label": "Loyalty\r\nBcc: everyone@example.com", "percent": "5"}]}))
        .go()
        .await;
    refused(res, "/discounts/0/label").await;
}

leadline_store::both_backends!(spoofing_text_is_refused_everywhere);

/// Erasure reaches everything: a replay of the lead's original POST answers 410
/// without the person's data, the `.eml` files are gone, and (SQLite) no byte
/// of the database or its WAL holds the erased address any more.
async fn erasure_reaches_everything(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.tenant("Forgetful Charters").await;
    let email = "erase.me.please@example.com";
    let mut body = lead_body(email);
    body["name"] = json!("Persephone Erasable");
    let res = app
        .with_key(Method::POST, "/v1/leads", &t.sk)
        .header("Idempotency-Key", "erase-1")
        .json(&body)
        .go()
        .await;
    assert_eq!(res.status(), 201);
    let lead: Value = res.json().await.expect("json");
    let id = lead["id"].as_str().expect("id").to_owned();
    // Another lead of the same day, whose files share the folder and stay.
    let kept = app.lead(&t, lead_body("keep.me@example.com")).await;
    let kept = kept["id"].as_str().expect("id").to_owned();
    common::eventually("the leads' email files", || async {
        (!app.lead_mail_files(&id).is_empty() && !app.lead_mail_files(&kept).is_empty()).then_some(())
    })
    .await;
    // The dispatcher has recorded its deliveries: nothing is in flight.
    common::drain_outbox(&app).await;
    let res = app
        .with_key(Method::DELETE, &format!("/v1/leads/{id}"), &t.sk)
        .go()
        .await;
    assert_eq!(res.status(), 204);

    let res = app
        .with_key(Method::POST, "/v1/leads", &t.sk)
        .header("Idempotency-Key", "erase-1")
        .json(&body)
        .go()
        .await;
    assert_eq!(
        res.headers().get("idempotent-replayed").map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    let p = problem(res, 410).await;
    let text = p.to_string();
    assert!(!text.contains("erase.me") && !text.contains("Persephone"), "{text}");
    assert_eq!(
        app.lead_mail_files(&id),
        Vec::<std::path::PathBuf>::new(),
        "the lead's .eml files are gone"
    );
    assert!(!app.lead_mail_files(&kept).is_empty(), "another lead's files stay");

    if b == Backend::Sqlite {
        let db = app.db_url();
        let path = db
            .strip_prefix("sqlite://")
            .expect("sqlite path")
            .split('?')
            .next()
            .expect("path");
        for file in [path.to_owned(), format!("{path}-wal")] {
            let bytes = std::fs::read(&file).unwrap_or_default();
            for needle in [email.as_bytes(), b"Persephone".as_slice()] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{file} still holds {}",
                    String::from_utf8_lossy(needle)
                );
            }
        }
    }
}

leadline_store::both_backends!(erasure_reaches_everything);
