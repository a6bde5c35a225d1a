//! What a hostile client tries, and what it gets: each test here reproduced a
//! defect of an earlier version.

mod common;

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
        let res = app.client.request(m, app.url("/healthz")).send().await.expect("send");
        assert!(res.status().is_client_error(), "{}", res.status());
    }
    let text = metrics_text(&app).await;
    assert!(!text.contains("INVENTED"), "no series per invented method");
    assert!(text.contains("method=\"other\""), "counted as other");
}
