//! The write path under abuse: requests abandoned by their clients at random
//! moments, a writer that cannot commit, a full writer queue, and revoked keys
//! seen by other instances.

mod common;

use common::Go;

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
    // Real time: the client goes away at a random moment of its request.
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
    assert_eq!(
        acknowledged.len(),
        60,
        "every lead of the normal traffic during the storm is acknowledged"
    );

    // Every write still succeeds afterwards, for every kind of writer.
    for n in 1000..1020 {
        let id = normal_lead(&tc, n).await;
        assert!(id.is_some(), "a lead after the abandoned requests is acknowledged");
        acknowledged.extend(id);
    }
    let res = app
        .admin(Method::PATCH, &format!("/admin/tenants/{}", t.id))
        .json(&serde_json::json!({"company_name": "Still Writing"}))
        .go()
        .await;
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
    // Nothing half-written: no lead without its audit entry.
    let orphans = app
        .raw_text(
            "SELECT l.id FROM leads l WHERE NOT EXISTS \
             (SELECT 1 FROM audit_logs a WHERE a.resource_id = l.id AND a.action = 'lead.create')",
        )
        .await;
    assert!(orphans.is_empty(), "leads without an audit entry: {orphans:?}");
    // The messages of every stored lead, its request abandoned or not, are
    // delivered within moments, not once a lease runs out (a minute): the store
    // tells the dispatcher of a commit, whether or not its request still waits.
    common::eventually("every message delivered", || async {
        let pending = app.raw_text("SELECT id FROM outbox WHERE status = 'pending'").await;
        pending.is_empty().then_some(())
    })
    .await;
}

leadline_store::both_backends!(abandoned_requests_leave_the_writer_working);

/// Holds SQLite's write lock from another connection, as another process would
/// (a `sqlite3` shell in a transaction, a stuck restore), until dropped.
struct ForeignLock(Option<sqlx::SqliteConnection>);

impl ForeignLock {
    async fn take(db_url: &str) -> Self {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(db_url).await.expect("connect");
        sqlx::query("BEGIN EXCLUSIVE").execute(&mut c).await.expect("lock");
        Self(Some(c))
    }

    async fn release(mut self) {
        if let Some(mut c) = self.0.take() {
            sqlx::query("ROLLBACK").execute(&mut c).await.expect("unlock");
        }
    }
}

async fn readyz(app: &TestApp) -> u16 {
    app.client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz")
        .status()
        .as_u16()
}

/// While the database takes no writes, writes answer 503 with `Retry-After` and
/// `/readyz` turns 503; when it takes them again, both recover by themselves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_the_writer() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let t = app.tenant("Lock Charters").await;
    assert_eq!(readyz(&app).await, 200);

    let lock = ForeignLock::take(&app.db_url()).await;
    // The write waits out the busy timeout, then fails; the writer's probe fails too.
    let res = app
        .with_key(Method::POST, "/v1/leads", &t.sk)
        .json(&lead_body("locked@example.com"))
        .go()
        .await;
    assert_eq!(res.status(), 503);
    assert_eq!(
        res.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    common::problem(res, 503).await;
    common::eventually("readyz 503", || async { (readyz(&app).await == 503).then_some(()) }).await;

    lock.release().await;
    common::eventually("readyz 200", || async { (readyz(&app).await == 200).then_some(()) }).await;
    app.lead(&t, lead_body("unlocked@example.com")).await;
    let stored = app
        .raw_text("SELECT email FROM leads WHERE email IN ('locked@example.com', 'unlocked@example.com')")
        .await;
    assert_eq!(
        stored,
        vec!["unlocked@example.com".to_owned()],
        "the refused lead was not stored"
    );
}

/// A full writer queue refuses at once with 503 and `Retry-After`; what it
/// acknowledged is all stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_and_loses_nothing() {
    let app = TestApp::spawn_with(Backend::Sqlite, &[("LEADLINE_WRITER_QUEUE", "2")]).await;
    let t = app.tenant("Queue Charters").await;
    // Stall the writer behind another connection's lock (released within the
    // busy timeout, so the stalled batch then commits).
    let lock = ForeignLock::take(&app.db_url()).await;
    let tc = TenantClient {
        client: app.client.clone(),
        base: app.base.clone(),
        sk: t.sk.clone(),
    };
    let mut set = tokio::task::JoinSet::new();
    for n in 0..24 {
        let tc = tc.clone();
        set.spawn(async move {
            let res = tc
                .client
                .post(format!("{}/v1/leads", tc.base))
                .bearer_auth(&tc.sk)
                .json(&lead_body(&format!("queued{n}@example.com")))
                .go()
                .await;
            let status = res.status().as_u16();
            let retry_after = res.headers().get("retry-after").is_some();
            let v: Value = res.json().await.expect("json");
            (status, retry_after, v)
        });
    }
    // Real time: the writer is held while requests pile up behind it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    lock.release().await;
    let mut acknowledged = Vec::new();
    let mut refused = 0u32;
    while let Some(r) = set.join_next().await {
        let (status, retry_after, v) = r.expect("task");
        match status {
            201 => acknowledged.push(v["id"].as_str().expect("id").to_owned()),
            503 => {
                assert!(retry_after, "a 503 says when to retry");
                assert_eq!(v["type"], "urn:leadline:problem:unavailable");
                refused += 1;
            }
            s => panic!("unexpected status {s}: {v}"),
        }
    }
    assert!(refused > 0, "the full queue refused some requests");
    assert!(!acknowledged.is_empty(), "the queued requests were committed");
    for id in &acknowledged {
        let sql = format!(
            "SELECT l.id FROM leads l WHERE l.id = '{id}' AND EXISTS \
             (SELECT 1 FROM audit_logs a WHERE a.resource_id = l.id AND a.action = 'lead.create')"
        );
        assert_eq!(
            app.raw_text(&sql).await.len(),
            1,
            "lead {id} is stored with its audit entry"
        );
    }
    let stored = app.raw_text("SELECT id FROM leads").await.len();
    assert_eq!(stored, acknowledged.len(), "nothing refused was stored");
    let m = app
        .admin(Method::GET, "/admin/metrics")
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let rejected: f64 = m
        .lines()
        .find_map(|l| l.strip_prefix("leadline_writer_rejected_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the rejection counter");
    assert!(
        rejected >= f64::from(refused),
        "every refusal is counted ({rejected} < {refused})"
    );
    assert!(
        m.contains("leadline_writer_batch_size_bucket"),
        "a batch-size histogram"
    );
    assert!(
        m.contains("leadline_writer_commit_duration_seconds_bucket"),
        "a commit-time histogram"
    );
}

/// A revoked key is refused at once by the instance that revoked it and, on a
/// shared PostgreSQL database, by another instance within the cache's bound.
async fn revoked_keys_are_refused_everywhere(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let t = app.tenant("Revoke Charters").await;
    let res = app
        .admin(Method::POST, &format!("/admin/tenants/{}/keys", t.id))
        .json(&serde_json::json!({"kind": "secret"}))
        .send()
        .await
        .expect("issue");
    assert_eq!(res.status(), 201);
    let issued: Value = res.json().await.expect("json");
    let key = issued["key"].as_str().expect("key text").to_owned();
    let key_id = issued["id"].as_str().expect("key id").to_owned();

    // A second instance on the same database (PostgreSQL only: SQLite is one process).
    let other = if backend == Backend::Postgres {
        let dir = tempfile::tempdir().expect("dir");
        let config = leadline_server::config::Config::for_tests(&app.db_url(), dir.path(), common::ADMIN_KEY, &[]);
        let b = leadline_server::app::Application::build(config)
            .await
            .expect("second instance");
        let base = format!("http://{}", b.local_addr());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(b.run_until_stopped(async move {
            let _ = rx.await;
        }));
        Some((base, tx, dir))
    } else {
        None
    };
    let get = |base: String, key: String| {
        let client = app.client.clone();
        async move {
            client
                .get(format!("{base}/v1/leads"))
                .bearer_auth(key)
                .go()
                .await
                .status()
                .as_u16()
        }
    };
    // Both instances have used (and cached) the key.
    assert_eq!(get(app.base.clone(), key.clone()).await, 200);
    if let Some((base, _, _)) = &other {
        assert_eq!(get(base.clone(), key.clone()).await, 200);
    }

    let res = app
        .admin(Method::DELETE, &format!("/admin/tenants/{}/keys/{key_id}", t.id))
        .send()
        .await
        .expect("revoke");
    assert!(res.status().is_success(), "revoke: {}", res.status());
    let revoked_at = std::time::Instant::now();
    assert_eq!(get(app.base.clone(), key.clone()).await, 401, "refused at once here");
    if let Some((base, _, _)) = &other {
        loop {
            if get(base.clone(), key.clone()).await == 401 {
                break;
            }
            assert!(
                revoked_at.elapsed() < leadline_store::CACHE_TTL + Duration::from_secs(1),
                "the other instance still accepts the revoked key after the documented bound"
            );
            // Real time: the other instance sees the revocation within the cache's bound.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // The tenant's other key still works.
    assert_eq!(get(app.base.clone(), t.sk.clone()).await, 200);
}

leadline_store::both_backends!(revoked_keys_are_refused_everywhere);
