//! The server side of the inquiry widget: its settings, its public configuration
//! and the spam signals of lead capture.

mod common;

use common::Go;

use common::{Backend, TestApp, lead_body, problem};
use reqwest::Method;
use serde_json::{Value, json};

leadline_store::both_backends!(widget_settings_and_config, spam_is_answered_like_success_and_dropped);

async fn widget_settings_and_config(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.tenant("Widget Charters").await;
    let bad = json!({"widget": {"fields": ["ssn"], "accent_color": "red", "privacy_url": "http://x.example"}});
    let p = problem(
        app.with_key(Method::PATCH, "/v1/settings", &t.sk).json(&bad).go().await,
        422,
    )
    .await;
    let pointers: Vec<&str> = p["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["pointer"].as_str())
        .collect();
    assert_eq!(
        pointers,
        ["/widget/fields/0", "/widget/accent_color", "/widget/privacy_url"],
        "{p}"
    );
    let good = json!({
        "notification_emails": ["staff@widget.example"],
        "allowed_origins": ["https://widget.example"],
        "widget": {"fields": ["dates", "guests", "message"], "destinations": ["Cyclades", "Ionian"],
            "accent_color": "#AA3300", "success_message": "Efcharistoume!", "privacy_url": "https://widget.example/privacy"}
    });
    let res = app
        .with_key(Method::PATCH, "/v1/settings", &t.sk)
        .json(&good)
        .go()
        .await;
    assert_eq!(res.status(), 200);
    let settings: Value = res.json().await.expect("json");
    assert_eq!(settings["widget"]["accent_color"], "#aa3300");

    let get = |key: &str, origin: Option<&str>| {
        let mut r = app.client.get(app.url(&format!("/v1/widget/config?key={key}")));
        if let Some(o) = origin {
            r = r.header("Origin", o);
        }
        r.send()
    };
    let res = get(&t.pk, Some("https://widget.example")).await.expect("send");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "public, max-age=300");
    assert_eq!(res.headers()["access-control-allow-origin"], "https://widget.example");
    let v: Value = res.json().await.expect("json");
    assert_eq!(v["company_name"], "Widget Charters");
    assert_eq!(v["fields"], json!(["dates", "guests", "message"]));
    assert_eq!(v["destinations"], json!(["Cyclades", "Ionian"]));
    assert_eq!(v["success_message"], "Efcharistoume!");
    assert_eq!(v["min_fill_ms"], 3000);
    let text = v.to_string();
    assert!(
        !text.contains("staff@") && !text.contains("sk_") && !text.contains("templates"),
        "{text}"
    );
    assert_eq!(v["origin_allowed"], true);
    // Another origin may read it (nothing secret), and learns it may not send.
    let res = get(&t.pk, Some("https://evil.example")).await.expect("send");
    assert_eq!(res.headers()["access-control-allow-origin"], "https://evil.example");
    let v: Value = res.json().await.expect("json");
    assert_eq!(v["origin_allowed"], false);
    // A secret key, a wrong key, no key.
    problem(get(&t.sk, None).await.expect("send"), 403).await;
    let mut wrong = t.pk.clone();
    wrong.pop();
    wrong.push(if t.pk.ends_with('A') { 'B' } else { 'A' });
    problem(get(&wrong, None).await.expect("send"), 401).await;
    problem(app.client.get(app.url("/v1/widget/config")).go().await, 400).await;
    // A suspended tenant's widget stops.
    let res = app
        .admin(Method::PATCH, &format!("/admin/tenants/{}", t.id))
        .json(&json!({"status": "suspended"}))
        .go()
        .await;
    assert_eq!(res.status(), 200);
    problem(get(&t.pk, None).await.expect("send"), 403).await;
}

async fn rejected(app: &TestApp, reason: &str) -> u64 {
    let n = app
        .metric(&format!("leadline_leads_rejected_total{{reason=\"{reason}\"}}"))
        .await;
    // A counter: a whole number.
    n as u64
}

async fn spam_is_answered_like_success_and_dropped(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.tenant("Spam Free").await;
    let post = |body: Value, key: &'static str| {
        app.with_key(Method::POST, "/v1/leads", &t.pk)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let mut honeypot = lead_body("bot@example.com");
    honeypot["form"] = json!({"honeypot": "http://spam.example", "elapsed_ms": 9000});
    let res = post(honeypot.clone(), "h1").await.expect("send");
    assert_eq!(res.status(), 201, "looks like a success");
    let v: Value = res.json().await.expect("json");
    assert!(v["id"].as_str().is_some_and(|i| i.starts_with("lead_")));
    let mut fast = lead_body("fastbot@example.com");
    fast["form"] = json!({"elapsed_ms": 400});
    assert_eq!(post(fast, "f1").await.expect("send").status(), 201);
    assert!(app.lead_ids(&t).await.is_empty(), "nothing stored");
    let res = app
        .with_key(
            Method::GET,
            &format!("/v1/leads/{}", v["id"].as_str().expect("id")),
            &t.sk,
        )
        .go()
        .await;
    problem(res, 404).await;
    let logs: Value = app
        .with_key(Method::GET, "/v1/mail-logs", &t.sk)
        .go()
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(logs["data"].as_array().map(Vec::len), Some(0), "nothing sent");
    assert_eq!(rejected(&app, "honeypot").await, 1);
    assert_eq!(rejected(&app, "too_fast").await, 1);
    // A person's submission, with the same signals filled honestly, is stored.
    let mut person = lead_body("person@example.com");
    person["form"] = json!({"honeypot": "", "elapsed_ms": 42000});
    assert_eq!(post(person, "p1").await.expect("send").status(), 201);
    assert_eq!(app.lead_ids(&t).await.len(), 1);
    // A bot's retry with the same key gets the decoy again, not a stored answer.
    let res = post(honeypot, "h1").await.expect("send");
    assert_eq!(res.status(), 201);
    assert!(res.headers().get("idempotent-replayed").is_none());
    assert_eq!(app.lead_ids(&t).await.len(), 1);
}
