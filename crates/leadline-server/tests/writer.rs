//! The write path under abuse: requests abandoned by their clients at random
//! moments, a writer that cannot commit, a full writer queue, and revoked keys
//! seen by other instances.

mod common;

use std::time::Duration;

use common::{Backend, Tenant, TestApp, lead_body};
use rand::Rng;
use reqwest::Method;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

/// Sends a lead on a raw socket and resets the connection at a random moment:
/// before the body is complete, right after it, or while the server works on it.
async fn abandoned_lead(addr: std::net::SocketAddr, key: String, n: usize) {
    let body = lead_body(&format!("gone{n}@example.com")).to_string();
    let head = format!(
        "POST /v1/leads HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nIdempotency-Key: abandoned-{n}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let (cut, wait_us) = {
        let mut r = rand::rng();
        // From before the body is complete to well after a commit would take,
        // whatever the speed of the build under test.
        (r.random_range(0..10u32), r.random_range(0..30_000u64))
    };
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return;
    };
    let request = if cut > 0 { format!("{head}{body}") } else { head };
    let _ = s.write_all(request.as_bytes()).await;
    tokio::time::sleep(Duration::from_micros(wait_us)).await;
    // SO_LINGER 0: close with a reset, as a client that gives up does.
    #[allow(deprecated)]
    let _ = s.set_linger(Some(Duration::ZERO));
    drop(s);
}

/// Creates a lead with its own idempotency key; returns its id when acknowledged.
async fn normal_lead(app: &TenantClient, n: usize) -> Option<String> {
    let res = app
        .client
        .post(format!("{}/v1/leads", app.base))
        .bearer_auth(&app.sk)
        .header("Idempotency-Key", format!("normal-{n}"))
        .json(&lead_body(&format!("kept{n}@example.com")))
        .send()
        .await
        .ok()?;
    if res.status() != 201 {
        return None;
    }
    let v: Value = res.json().await.ok()?;
    v["id"].as_str().map(str::to_owned)
}

#[derive(Clone)]
struct TenantClient {
    client: reqwest::Client,
    base: String,
    sk: String,
}

async fn abandoned_requests_leave_the_writer_working(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("LEADLINE_RATE_LIMIT_PER_MINUTE", "1000000")]).await;
    let t: Tenant = app.tenant("Abandon Charters").await;
    let addr: std::net::SocketAddr = app.base.trim_start_matches("http://").parse().expect("addr");
    let tc = TenantClient {
        client: app.client.clone(),
        base: app.base.clone(),
        sk: t.sk.clone(),
    };

    // 200 abandoned requests, 16 at a time, while normal traffic goes on.
    let normal = {
        let tc = tc.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for n in 0..60 {
                if let Some(id) = normal_lead(&tc, n).await {
                    ids.push(id);
                }
            }
            ids
        })
    };
    // Waves of 40 at once, so that many are inside the write path when they go.
    for wave in 0..5 {
        let mut set = tokio::task::JoinSet::new();
        for n in wave * 40..(wave + 1) * 40 {
            set.spawn(abandoned_lead(addr, t.pk.clone(), n));
        }
        while set.join_next().await.is_some() {}
    }
    let mut acknowledged = normal.await.expect("normal traffic");

    // Every write still succeeds afterwards, for every kind of writer.
    for n in 1000..1020 {
        let id = normal_lead(&tc, n).await;
        assert!(id.is_some(), "a lead after the abandoned requests is acknowledged");
        acknowledged.extend(id);
    }
    let res = app
        .admin(Method::PATCH, &format!("/admin/tenants/{}", t.id))
        .json(&serde_json::json!({"company_name": "Still Writing"}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 200, "an admin write succeeds");
    let ready = app.client.get(app.url("/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status(), 200);

    // Every acknowledged lead is stored with its audit entry and its outbox rows.
    for id in &acknowledged {
        let sql = format!(
            "SELECT l.id FROM leads l WHERE l.id = '{id}' \
             AND EXISTS (SELECT 1 FROM audit_logs a WHERE a.resource_id = l.id AND a.action = 'lead.create' AND a.status = 201) \
             AND EXISTS (SELECT 1 FROM outbox o WHERE o.lead_id = l.id)"
        );
        assert_eq!(app.raw_text(&sql).await.len(), 1, "lead {id} is stored whole");
    }
    assert!(acknowledged.len() >= 20);
    // Nothing half-written: no lead without its audit entry.
    let orphans = app
        .raw_text(
            "SELECT l.id FROM leads l WHERE NOT EXISTS \
             (SELECT 1 FROM audit_logs a WHERE a.resource_id = l.id AND a.action = 'lead.create')",
        )
        .await;
    assert!(orphans.is_empty(), "leads without an audit entry: {orphans:?}");
}

both_backends!(abandoned_requests_leave_the_writer_working);
