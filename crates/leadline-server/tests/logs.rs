//! The captured logs of a whole scenario hold none of the personal data or secrets
//! the scenario used.

mod common;

use common::Go;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use common::{ADMIN_KEY, Backend, TestApp, lead_body};
use reqwest::Method;
use serde_json::json;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured() -> &'static Buffer {
    static BUF: OnceLock<Buffer> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Buffer::default();
        let writer = buf.clone();
        leadline_server::telemetry::init_with_writer(leadline_server::config::LogFormat::Json, move || writer.clone());
        buf
    })
}

leadline_store::both_backends!(a_full_scenario_logs_no_personal_data_or_secrets);

async fn a_full_scenario_logs_no_personal_data_or_secrets(b: Backend) {
    let buf = captured();
    let app = TestApp::spawn(b).await;
    let res = app
        .admin(Method::POST, "/admin/tenants")
        .json(&json!({"name": "Aegean Blue", "notification_emails": ["staff.alerts@aegean.example"], "reply_to": "sales.desk@aegean.example"}))
        .go().await;
    let created: serde_json::Value = res.json().await.expect("json");
    let sk = created["secret_key"].as_str().expect("sk").to_owned();
    let pk = created["publishable_key"].as_str().expect("pk").to_owned();
    let mut body = lead_body("maria.private@example.com");
    body["phone"] = json!("+30 694 765 4321");
    body["name"] = json!("Maria Secretname");
    let lead: serde_json::Value = app
        .with_key(Method::POST, "/v1/leads", &pk)
        .header("Idempotency-Key", "log-1")
        .json(&body)
        .go()
        .await
        .json()
        .await
        .expect("json");
    let id = lead["id"].as_str().expect("id");
    app.with_key(Method::POST, "/v1/leads", &pk)
        .header("Idempotency-Key", "log-1")
        .json(&body)
        .go()
        .await;
    app.with_key(Method::POST, "/v1/leads", &pk)
        .json(&json!({"name": "Maria Secretname", "email": "maria.private@example"}))
        .go()
        .await;
    app.with_key(Method::GET, "/v1/leads?q=maria.private%40example.com", &sk)
        .go()
        .await;
    app.with_key(Method::GET, "/v1/leads?q=6947654321", &sk).go().await;
    app.with_key(Method::PATCH, &format!("/v1/leads/{id}"), &sk)
        .json(&json!({"status": "contacted", "notes": "call Maria Secretname"}))
        .go()
        .await;
    app.with_key(Method::GET, &format!("/v1/leads/{id}"), &sk).go().await;
    app.with_key(Method::DELETE, &format!("/v1/leads/{id}"), &sk).go().await;
    app.with_key(
        Method::GET,
        "/v1/leads",
        "sk_wrongwrongwrongwrongwrongwrongwrongwrongwro",
    )
    .go()
    .await;
    // A quote sent and accepted through its public page: the token stays out of the logs.
    let yacht: serde_json::Value = app
        .with_key(Method::POST, "/v1/yachts", &sk)
        .json(&json!({"name": "Y", "type": "gulet", "max_guests": 8, "min_nights": 1,
            "rates": [{"season": "s", "from": "2030-01-01", "to": "2030-12-31", "weekly_rate": {"amount": 700000, "currency": "EUR"}}]}))
        .go().await
        .json()
        .await
        .expect("json");
    let lead2: serde_json::Value = app
        .with_key(Method::POST, "/v1/leads", &sk)
        .json(
            &json!({"name": "Quote Client", "email": "quote.client@example.com", "charter_from": "2030-07-01",
            "charter_to": "2030-07-08", "consent": {"privacy_policy": true}}),
        )
        .go()
        .await
        .json()
        .await
        .expect("json");
    let quote: serde_json::Value = app
        .with_key(Method::POST, "/v1/quotes", &sk)
        .json(&json!({"lead_id": lead2["id"], "yacht_id": yacht["id"]}))
        .go()
        .await
        .json()
        .await
        .expect("json");
    let sent: serde_json::Value = app
        .with_key(
            Method::POST,
            &format!("/v1/quotes/{}/send", quote["id"].as_str().expect("id")),
            &sk,
        )
        .go()
        .await
        .json()
        .await
        .expect("json");
    let url = sent["url"].as_str().expect("url").to_owned();
    let token = url.rsplit('/').next().expect("token").to_owned();
    assert_eq!(token.len(), 43);
    app.client.get(app.url(&format!("/q/{token}"))).go().await;
    app.client.post(app.url(&format!("/q/{token}/accept"))).go().await;
    app.client.post(app.url(&format!("/q/{token}/accept"))).go().await;
    app.client
        .get(app.url("/admin/tenants"))
        .header("X-Admin-Key", "not-the-key-but-close")
        .go()
        .await;
    app.admin(Method::GET, "/admin/metrics").go().await;
    app.admin(Method::GET, "/admin/audit").go().await;
    drop(app);

    let logs = String::from_utf8_lossy(&buf.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    assert!(logs.contains("\"request_id\""), "the scenario was logged: {logs}");
    assert!(logs.contains("/v1/leads/{id}"), "request lines name the route");
    for secret in [
        "maria.private",
        "Secretname",
        "694 765",
        "6947654321",
        "staff.alerts",
        "sales.desk",
        sk.as_str(),
        pk.as_str(),
        &sk[3..],
        ADMIN_KEY,
        "not-the-key-but-close",
        "sk_wrongwrong",
        token.as_str(),
        "quote.client",
    ] {
        assert!(!logs.contains(secret), "the logs contain {secret:?}");
    }
}
