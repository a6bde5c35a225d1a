//! DESIGN §6 over HTTP on both backends: idempotency keys, the audit log, metrics,
//! rate limiting and CORS.

mod common;

use common::Go;

use common::{ADMIN_KEY, Backend, TestApp, lead_body, problem};
use reqwest::Method;
use serde_json::{Value, json};

leadline_store::both_backends!(
    twenty_concurrent_retries_create_one_lead,
    idempotent_replays_survive_restart_and_refuse_other_requests,
    idempotency_on_admin_and_patch_routes,
    every_mutating_route_is_audited_with_its_request_id,
    a_write_whose_audit_entry_fails_is_not_made,
    audit_listings_filter_and_stay_within_the_tenant,
    metrics_parse_and_move,
    rate_limit_refuses_the_61st_request,
    forwarded_for_is_honoured_only_from_trusted_proxies,
    cors_only_for_lead_capture_from_allowed_origins,
    rate_limits_are_shared_through_redis,
);

/// Two instances with one Redis share each client's quota. Redis is needed: the
/// test fails, never skips, without it.
async fn rate_limits_are_shared_through_redis(b: Backend) {
    let redis = std::env::var("LEADLINE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("leadline-test-{}", leadline_core::id::MsgId::generate());
    let settings = [
        ("LEADLINE_RATE_LIMIT_PER_MINUTE", "5"),
        ("LEADLINE_REDIS_URL", redis.as_str()),
        ("LEADLINE_REDIS_KEY_PREFIX", prefix.as_str()),
    ];
    let one = TestApp::spawn_with(b, &settings).await;
    let two = TestApp::spawn_with(b, &settings).await;
    for (i, app) in [&one, &one, &one, &two, &two].into_iter().enumerate() {
        let res = app.client.get(app.url("/v1/leads")).go().await;
        assert_eq!(res.status(), 401, "request {i} passes");
        let left = res.headers()["ratelimit"].to_str().expect("ascii").to_owned();
        assert!(
            left.starts_with(&format!("\"tenant\";r={};", 4 - i)),
            "request {i}: {left}"
        );
    }
    for app in [&one, &two] {
        let res = app.client.get(app.url("/v1/leads")).go().await;
        assert!(
            res.headers()["retry-after"]
                .to_str()
                .expect("ascii")
                .parse::<u64>()
                .is_ok_and(|s| (1..=12).contains(&s))
        );
        problem(res, 429).await;
    }
}

async fn post_lead_with_key(app: &TestApp, sk: &str, key: &str, body: &Value) -> reqwest::Response {
    app.with_key(Method::POST, "/v1/leads", sk)
        .header("Idempotency-Key", key)
        .json(body)
        .go()
        .await
}

async fn audit(app: &TestApp, query: &str) -> Vec<Value> {
    let v: Value = app
        .admin(Method::GET, &format!("/admin/audit?limit=200{query}"))
        .go()
        .await
        .json()
        .await
        .expect("json");
    v["data"].as_array().cloned().unwrap_or_default()
}

async fn twenty_concurrent_retries_create_one_lead(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.tenant("Aegean Blue").await;
    let body = lead_body("maria@example.com");
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let req = app
            .with_key(Method::POST, "/v1/leads", &t.sk)
            .header("Idempotency-Key", "order-42")
            .json(&body);
        tasks.push(tokio::spawn(async move { req.send().await }));
    }
    let (mut created, mut replayed, mut conflicts) = (Vec::new(), 0, 0);
    for task in tasks {
        let res = task.await.expect("join").expect("send");
        let status = res.status().as_u16();
        let replay = res.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
        match (status, replay) {
            (201, false) => {
                assert_eq!(res.headers()["content-type"], "application/json");
                created.push(res.json::<Value>().await.expect("json"));
            }
            (201, true) => {
                replayed += 1;
                let v: Value = res.json().await.expect("json");
                assert_eq!(v["email"], "maria@example.com");
            }
            (409, _) => {
                conflicts += 1;
                problem(res, 409).await;
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    assert_eq!(created.len(), 1, "exactly one request ran");
    assert_eq!(1 + replayed + conflicts, 20);
    assert_eq!(
        app.lead_ids(&t).await,
        vec![created[0]["id"].as_str().expect("id").to_owned()]
    );
    let entries = audit(&app, "&action=lead.create").await;
    assert_eq!(entries.len(), 1, "one audit entry");
    assert_eq!(entries[0]["resource_id"], created[0]["id"]);
    // After the dust settles every retry is a replay of the same lead.
    let res = post_lead_with_key(&app, &t.sk, "order-42", &body).await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["idempotent-replayed"], "true");
    // The answer (sent as the bytes stored for the key) is the lead, whole, as the
    // replay and a read give it.
    assert_eq!(res.json::<Value>().await.expect("json"), created[0]);
    let id = created[0]["id"].as_str().expect("id");
    let read: Value = app
        .with_key(Method::GET, &format!("/v1/leads/{id}"), &t.sk)
        .go()
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(read, created[0]);
}

async fn idempotent_replays_survive_restart_and_refuse_other_requests(b: Backend) {
    let mut app = TestApp::spawn(b).await;
    let t = app.tenant("Aegean Blue").await;
    let body = lead_body("maria@example.com");
    let first = post_lead_with_key(&app, &t.sk, "k-1", &body).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.expect("json");
    app.restart().await;
    let again = post_lead_with_key(&app, &t.sk, "k-1", &body).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.expect("json"), first);
    // Same key, another body: 422.
    let p = problem(
        post_lead_with_key(&app, &t.sk, "k-1", &lead_body("nikos@example.com")).await,
        422,
    )
    .await;
    assert_eq!(p["type"], "urn:leadline:problem:idempotency-key-reused");
    // Same key, another path: 422.
    let res = app
        .with_key(
            Method::PATCH,
            &format!("/v1/leads/{}", first["id"].as_str().expect("id")),
            &t.sk,
        )
        .header("Idempotency-Key", "k-1")
        .json(&json!({"status": "contacted"}))
        .go()
        .await;
    problem(res, 422).await;
    // Keys are per tenant: another tenant may use the same key for its own lead.
    let u = app.tenant("Other").await;
    let theirs = post_lead_with_key(&app, &u.sk, "k-1", &body).await;
    assert_eq!(theirs.status(), 201);
    assert!(theirs.headers().get("idempotent-replayed").is_none());
    // Bad keys: 400, and nothing is stored.
    for bad in ["x".repeat(256), String::new()] {
        let res = app
            .with_key(Method::POST, "/v1/leads", &t.sk)
            .header("Idempotency-Key", bad.as_str())
            .json(&lead_body("bad@example.com"))
            .go()
            .await;
        problem(res, 400).await;
    }
    let res = app
        .with_key(Method::POST, "/v1/leads", &t.sk)
        .header(
            "Idempotency-Key",
            reqwest::header::HeaderValue::from_bytes(b"caf\xc3\xa9").expect("bytes"),
        )
        .json(&lead_body("bad@example.com"))
        .go()
        .await;
    problem(res, 400).await;
    // A 4xx answer is stored and replayed too.
    let invalid = json!({"name": "x"});
    let p1 = problem(post_lead_with_key(&app, &t.sk, "k-2", &invalid).await, 422).await;
    let res = post_lead_with_key(&app, &t.sk, "k-2", &invalid).await;
    assert_eq!(res.headers()["idempotent-replayed"], "true");
    let p2 = problem(res, 422).await;
    assert_eq!(p1["errors"], p2["errors"]);
    assert_ne!(p1["request_id"], p2["request_id"], "the replay names its own request");
    assert_eq!(app.lead_ids(&t).await.len(), 1);
}

async fn idempotency_on_admin_and_patch_routes(b: Backend) {
    let app = TestApp::spawn(b).await;
    let send = || {
        app.admin(Method::POST, "/admin/tenants")
            .header("Idempotency-Key", "tenant-1")
            .json(&json!({"name": "Cyclades Co"}))
            .send()
    };
    let first = send().await.expect("send");
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.expect("json");
    let replay = send().await.expect("send");
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replay: Value = replay.json().await.expect("json");
    assert_eq!(replay["tenant"], first["tenant"]);
    let sk = first["secret_key"].as_str().expect("sk");
    // The key is never stored: the replay shows its prefix only.
    assert!(
        replay["secret_key"]
            .as_str()
            .is_some_and(|k| k.ends_with("...") && sk.starts_with(k.trim_end_matches("...")))
    );
    let list: Value = app
        .admin(Method::GET, "/admin/tenants")
        .go()
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list["data"].as_array().map(Vec::len), Some(1));
    // PATCH with a key applies once.
    let t = app.tenant("Aegean").await;
    let id = app.lead(&t, lead_body("maria@example.com")).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for _ in 0..3 {
        let res = app
            .with_key(Method::PATCH, &format!("/v1/leads/{id}"), &t.sk)
            .header("Idempotency-Key", "move-1")
            .json(&json!({"status": "contacted"}))
            .go()
            .await;
        assert_eq!(res.status(), 200);
    }
    let entries = audit(&app, &format!("&resource_id={id}&action=lead.update")).await;
    assert_eq!(entries.len(), 1);
}

/// (method, route template, path, body, auth, expected action, expected status)
type AuditCase<'a> = (Method, &'a str, String, Option<Value>, &'a str, &'a str, u16);

/// Every mutating route of the OpenAPI document, with a request that exercises it.
async fn every_mutating_route_is_audited_with_its_request_id(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.tenant("Aegean Blue").await;
    let lead = app.lead(&t, lead_body("maria@example.com")).await;
    let lead_id = lead["id"].as_str().expect("id").to_owned();
    let keys: Value = app
        .admin(Method::GET, &format!("/admin/tenants/{}", t.id))
        .go()
        .await
        .json()
        .await
        .expect("json");
    let pk_id = keys["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kind"] == "publishable")
        .expect("pk")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // (method, route template, path, body, auth, expected action, expected status)
    let admin = "admin";
    let cases: Vec<AuditCase> = vec![
        (
            Method::POST,
            "/admin/tenants",
            "/admin/tenants".into(),
            Some(json!({"name": "New Co"})),
            admin,
            "tenant.create",
            201,
        ),
        (
            Method::PATCH,
            "/admin/tenants/{id}",
            format!("/admin/tenants/{}", t.id),
            Some(json!({"name": "Aegean"})),
            admin,
            "tenant.update",
            200,
        ),
        (
            Method::POST,
            "/admin/tenants/{id}/keys",
            format!("/admin/tenants/{}/keys", t.id),
            Some(json!({"kind": "secret"})),
            admin,
            "key.issue",
            201,
        ),
        (
            Method::DELETE,
            "/admin/tenants/{id}/keys/{key_id}",
            format!("/admin/tenants/{}/keys/{pk_id}", t.id),
            None,
            admin,
            "key.revoke",
            200,
        ),
        (
            Method::PATCH,
            "/v1/settings",
            "/v1/settings".into(),
            Some(json!({"vat_percent": "12"})),
            "sk",
            "settings.update",
            200,
        ),
        (
            Method::POST,
            "/v1/leads",
            "/v1/leads".into(),
            Some(lead_body("nikos@example.com")),
            "sk",
            "lead.create",
            201,
        ),
        (
            Method::PATCH,
            "/v1/leads/{id}",
            format!("/v1/leads/{lead_id}"),
            Some(json!({"status": "contacted"})),
            "sk",
            "lead.update",
            200,
        ),
        (
            Method::DELETE,
            "/v1/leads/{id}",
            format!("/v1/leads/{lead_id}"),
            None,
            "sk",
            "lead.delete",
            204,
        ),
        (
            Method::POST,
            "/v1/webhook-endpoints",
            "/v1/webhook-endpoints".into(),
            Some(json!({"url": "http://127.0.0.1:9/hook", "events": ["lead.created"]})),
            "sk",
            "webhook_endpoint.create",
            201,
        ),
        (
            Method::PATCH,
            "/v1/webhook-endpoints/{id}",
            "/v1/webhook-endpoints/EP".into(),
            Some(json!({"description": "CRM"})),
            "sk",
            "webhook_endpoint.update",
            200,
        ),
        (
            Method::POST,
            "/v1/webhook-endpoints/{id}/rotate-secret",
            "/v1/webhook-endpoints/EP/rotate-secret".into(),
            None,
            "sk",
            "webhook_endpoint.rotate_secret",
            200,
        ),
        (
            Method::POST,
            "/v1/webhook-endpoints/{id}/test",
            "/v1/webhook-endpoints/EP/test".into(),
            None,
            "sk",
            "webhook_endpoint.test",
            202,
        ),
        (
            Method::DELETE,
            "/v1/webhook-endpoints/{id}",
            "/v1/webhook-endpoints/EP".into(),
            None,
            "sk",
            "webhook_endpoint.delete",
            204,
        ),
        (
            Method::POST,
            "/v1/dead-letters/{id}/replay",
            "/v1/dead-letters/dl_01jd6c8m2f0000000000000000/replay".into(),
            None,
            "sk",
            "dead_letter.replay",
            404,
        ),
        (
            Method::POST,
            "/admin/dead-letters/{id}/replay",
            "/admin/dead-letters/dl_01jd6c8m2f0000000000000000/replay".into(),
            None,
            admin,
            "dead_letter.replay",
            404,
        ),
        (
            Method::POST,
            "/admin/maintenance",
            "/admin/maintenance".into(),
            Some(json!({"action": "cleanup_expired_keys"})),
            admin,
            "maintenance.cleanup_expired_keys",
            200,
        ),
        (
            Method::POST,
            "/v1/yachts",
            "/v1/yachts".into(),
            Some(json!({"name": "Y", "type": "gulet", "max_guests": 8})),
            "sk",
            "yacht.create",
            201,
        ),
        (
            Method::PATCH,
            "/v1/yachts/{id}",
            "/v1/yachts/yacht_01jd6c8m2f0000000000000000".into(),
            Some(json!({})),
            "sk",
            "yacht.update",
            404,
        ),
        (
            Method::DELETE,
            "/v1/yachts/{id}",
            "/v1/yachts/yacht_01jd6c8m2f0000000000000000".into(),
            None,
            "sk",
            "yacht.archive",
            404,
        ),
        (
            Method::POST,
            "/v1/quotes",
            "/v1/quotes".into(),
            Some(json!({"lead_id": "lead_01jd6c8m2f0000000000000000", "yacht_id": "yacht_01jd6c8m2f0000000000000000"})),
            "sk",
            "quote.create",
            404,
        ),
        (
            Method::POST,
            "/v1/quotes/{id}/send",
            "/v1/quotes/quote_01jd6c8m2f0000000000000000/send".into(),
            None,
            "sk",
            "quote.send",
            404,
        ),
        (
            Method::POST,
            "/v1/quotes/{id}/cancel",
            "/v1/quotes/quote_01jd6c8m2f0000000000000000/cancel".into(),
            None,
            "sk",
            "quote.cancel",
            404,
        ),
        (
            Method::POST,
            "/q/{token}/accept",
            "/q/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/accept".into(),
            None,
            "none",
            "quote.accept",
            404,
        ),
        (
            Method::POST,
            "/q/{token}/decline",
            "/q/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/decline".into(),
            None,
            "none",
            "quote.decline",
            404,
        ),
        // Failures are audited too.
        (
            Method::POST,
            "/v1/leads",
            "/v1/leads".into(),
            Some(json!({"name": "x"})),
            "sk",
            "lead.create",
            422,
        ),
        (
            Method::PATCH,
            "/v1/settings",
            "/v1/settings".into(),
            Some(json!({})),
            "none",
            "settings.update",
            401,
        ),
    ];
    let doc: Value = app
        .client
        .get(app.url("/openapi.json"))
        .go()
        .await
        .json()
        .await
        .expect("json");
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in ["post", "patch", "put", "delete"] {
            if item.get(m).is_some() {
                assert!(
                    cases
                        .iter()
                        .any(|c| c.0.as_str().eq_ignore_ascii_case(m) && c.1 == path),
                    "{m} {path} has no audit case: add one"
                );
            }
        }
    }
    let mut endpoint = String::new();
    for (i, (method, _, path, body, auth, action, status)) in cases.into_iter().enumerate() {
        let path = path.replace("EP", &endpoint);
        let rid = format!("audit-walk-{i}");
        let mut req = app
            .client
            .request(method.clone(), app.url(&path))
            .header("X-Request-Id", &rid)
            .header("User-Agent", "walker/1");
        req = match auth {
            "admin" => req.header("X-Admin-Key", ADMIN_KEY),
            "sk" => req.bearer_auth(&t.sk),
            _ => req,
        };
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.go().await;
        assert_eq!(res.status().as_u16(), status, "{method} {path}");
        if action == "webhook_endpoint.create" {
            endpoint = res.json::<Value>().await.expect("json")["id"]
                .as_str()
                .expect("id")
                .to_owned();
        }
        let found: Vec<Value> = audit(&app, "")
            .await
            .into_iter()
            .filter(|e| e["request_id"] == rid.as_str())
            .collect();
        assert_eq!(found.len(), 1, "one audit entry for {method} {path}");
        let e = &found[0];
        assert_eq!(e["action"], action);
        assert_eq!(e["status"], status);
        assert_eq!(e["user_agent"], "walker/1");
        assert_eq!(e["ip"], "127.0.0.1");
        let expected_actor = match auth {
            "admin" => "admin",
            "sk" => "secret_key",
            _ => "anonymous",
        };
        assert_eq!(e["actor_type"], expected_actor, "{method} {path}");
        if status < 400 && auth != "admin" {
            assert_eq!(e["tenant_id"], t.id.as_str());
        }
    }
    // Admin reads are audited too; audit details never hold personal data.
    let all = audit(&app, "").await;
    assert!(all.iter().any(|e| e["action"] == "tenant.read"));
    let text = serde_json::to_string(&all).expect("json");
    assert!(
        !text.contains("maria@example.com") && !text.contains("nikos@example.com") && !text.contains("694 123"),
        "{text}"
    );
}

async fn audit_listings_filter_and_stay_within_the_tenant(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.tenant("A").await;
    let u = app.tenant("B").await;
    let lead = app.lead(&t, lead_body("maria@example.com")).await;
    app.lead(&u, lead_body("nikos@example.com")).await;
    let mine: Value = app
        .with_key(Method::GET, "/v1/audit?limit=200", &t.sk)
        .go()
        .await
        .json()
        .await
        .expect("json");
    let mine = mine["data"].as_array().expect("data");
    assert!(!mine.is_empty());
    assert!(
        mine.iter().all(|e| e["tenant_id"] == t.id.as_str()),
        "only the tenant's own entries"
    );
    let by_resource: Value = app
        .with_key(
            Method::GET,
            &format!("/v1/audit?resource_id={}", lead["id"].as_str().expect("id")),
            &t.sk,
        )
        .go()
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(by_resource["data"].as_array().map(Vec::len), Some(1));
    let theirs: Value = app
        .with_key(
            Method::GET,
            &format!("/v1/audit?resource_id={}", lead["id"].as_str().expect("id")),
            &u.sk,
        )
        .go()
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(theirs["data"], json!([]), "another tenant sees nothing of it");
    let admin_view: Value = app
        .admin(Method::GET, &format!("/admin/audit/{}?action=lead.create", u.id))
        .go()
        .await
        .json()
        .await
        .expect("json");
    let entries = admin_view["data"].as_array().expect("data");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["tenant_id"], u.id.as_str());
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let none: Value = app
        .admin(Method::GET, &format!("/admin/audit?since={future}"))
        .go()
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(none["data"], json!([]));
    let until: Value = app
        .admin(Method::GET, &format!("/admin/audit?until={future}&limit=2"))
        .go()
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(until["data"].as_array().map(Vec::len), Some(2));
    assert!(until["next_cursor"].is_string());
    let filtered: Value = app
        .admin(Method::GET, &format!("/admin/audit?tenant_id={}", t.id))
        .go()
        .await
        .json()
        .await
        .expect("json");
    assert!(
        filtered["data"]
            .as_array()
            .expect("data")
            .iter()
            .all(|e| e["tenant_id"] == t.id.as_str())
    );
    problem(
        app.admin(Method::GET, "/admin/audit/ten_01jd6c8m2f0000000000000000")
            .go()
            .await,
        404,
    )
    .await;
    problem(app.with_key(Method::GET, "/v1/audit", &t.pk).go().await, 403).await;
    problem(
        app.with_key(Method::GET, &format!("/v1/audit?tenant_id={}", u.id), &t.sk)
            .go()
            .await,
        400,
    )
    .await;
}

fn scrape(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid Prometheus text")
}

fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

async fn metrics_parse_and_move(b: Backend) {
    let app = TestApp::spawn(b).await;
    let get = || async {
        let res = app.admin(Method::GET, "/admin/metrics").go().await;
        assert_eq!(res.status(), 200);
        assert!(
            res.headers()["content-type"]
                .to_str()
                .expect("ascii")
                .starts_with("text/plain; version=0.0.4")
        );
        res.text().await.expect("text")
    };
    let before = scrape(&get().await);
    problem(app.client.get(app.url("/admin/metrics")).go().await, 401).await;
    let t = app.tenant("Aegean Blue").await;
    let lead = app.lead(&t, lead_body("maria@example.com")).await;
    app.lead(&t, lead_body("nikos@example.com")).await;
    let id = lead["id"].as_str().expect("id");
    app.with_key(Method::GET, &format!("/v1/leads/{id}"), &t.sk).go().await;
    app.with_key(Method::GET, "/v1/leads/lead_01jd6c8m2f0000000000000000", &t.sk)
        .go()
        .await;
    let res = post_lead_with_key(&app, &t.sk, "m-1", &lead_body("x@example.com")).await;
    assert_eq!(res.status(), 201);
    post_lead_with_key(&app, &t.sk, "m-1", &lead_body("x@example.com")).await;
    let text = get().await;
    let after = scrape(&text);
    let delta = |name: &str, labels: &[(&str, &str)]| value(&after, name, labels) - value(&before, name, labels);
    assert_eq!(delta("leadline_leads_created_total", &[]), 3.0);
    assert_eq!(delta("leadline_idempotent_replays_total", &[]), 1.0);
    assert_eq!(
        delta(
            "leadline_http_requests_total",
            &[("route", "/v1/leads/:id"), ("method", "GET"), ("status", "200")]
        ),
        1.0
    );
    assert_eq!(
        delta(
            "leadline_http_requests_total",
            &[("route", "/v1/leads/:id"), ("status", "404")]
        ),
        1.0
    );
    assert!(
        delta("leadline_errors_total", &[("class", "4xx")]) >= 2.0,
        "401 and 404 counted"
    );
    assert!(
        !text.contains(id) && !text.contains("lead_01jd6c8m2f"),
        "labels carry route templates, never ids"
    );
    assert!(!text.contains("maria@"), "no personal data in metrics");
    // A real histogram with buckets.
    assert!(
        after
            .samples
            .iter()
            .any(|s| s.metric == "leadline_http_request_duration_seconds"
                && matches!(&s.value, prometheus_parse::Value::Histogram(h) if h.len() > 5))
    );
    for name in [
        "leadline_quotes_created_total",
        "leadline_rate_limited_total",
        "leadline_outbox_pending",
        "leadline_dead_letters_total",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ] {
        assert!(after.samples.iter().any(|s| s.metric == name), "{name} is exposed");
    }
    assert!(after.samples.iter().any(|s| s.metric == "leadline_emails_sent_total"));
    assert!(
        after
            .samples
            .iter()
            .any(|s| s.metric == "leadline_webhooks_delivered_total")
    );
}

async fn rate_limit_refuses_the_61st_request(b: Backend) {
    let app = TestApp::spawn_with(b, &[("LEADLINE_RATE_LIMIT_PER_MINUTE", "60")]).await;
    let mut last = None;
    for i in 0..60 {
        let res = app.client.get(app.url("/v1/leads")).go().await;
        assert_eq!(res.status(), 401, "request {i} is not limited");
        assert_eq!(res.headers()["ratelimit-policy"], "\"tenant\";q=60;w=60");
        last = Some(res.headers()["ratelimit"].to_str().expect("ascii").to_owned());
    }
    assert!(last.is_some_and(|l| l.starts_with("\"tenant\";r=0;")));
    // A spoofed X-Forwarded-For from an untrusted peer changes nothing.
    let res = app
        .client
        .get(app.url("/v1/leads"))
        .header("X-Forwarded-For", "203.0.113.7")
        .go()
        .await;
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&retry));
    assert!(
        res.headers()["ratelimit"]
            .to_str()
            .expect("ascii")
            .starts_with("\"tenant\";r=0;t=")
    );
    let p = problem(res, 429).await;
    assert_eq!(p["type"], "urn:leadline:problem:rate-limited");
    // Other classes have their own quota; health checks none.
    assert_eq!(app.admin(Method::GET, "/admin/tenants").go().await.status(), 200);
    for _ in 0..100 {
        assert_eq!(app.client.get(app.url("/healthz")).go().await.status(), 200);
    }
    let m: String = app
        .admin(Method::GET, "/admin/metrics")
        .go()
        .await
        .text()
        .await
        .expect("text");
    assert!(value(&scrape(&m), "leadline_rate_limited_total", &[]) >= 1.0);
}

async fn forwarded_for_is_honoured_only_from_trusted_proxies(b: Backend) {
    let app = TestApp::spawn_with(
        b,
        &[
            ("LEADLINE_RATE_LIMIT_PER_MINUTE", "5"),
            ("LEADLINE_TRUSTED_PROXIES", "127.0.0.1/32"),
        ],
    )
    .await;
    let get = |xff: &'static str| {
        app.client
            .get(app.url("/v1/leads"))
            .header("X-Forwarded-For", xff)
            .send()
    };
    for _ in 0..5 {
        assert_eq!(get("203.0.113.1").await.expect("send").status(), 401);
    }
    assert_eq!(get("203.0.113.1").await.expect("send").status(), 429);
    // Behind the trusted proxy, another client has its own quota...
    assert_eq!(get("203.0.113.2").await.expect("send").status(), 401);
    // ...and a client cannot escape by prepending an address of its own choosing.
    assert_eq!(get("198.51.100.9, 203.0.113.1").await.expect("send").status(), 429);
    // The audit log records the client's address, not the proxy's.
    let t = app.tenant("Aegean").await;
    let res = app
        .with_key(Method::POST, "/v1/leads", &t.sk)
        .header("X-Forwarded-For", "203.0.113.50")
        .header("X-Request-Id", "xff-1")
        .json(&lead_body("maria@example.com"))
        .go()
        .await;
    assert_eq!(res.status(), 201);
    let entries = audit(&app, "").await;
    let e = entries.iter().find(|e| e["request_id"] == "xff-1").expect("entry");
    assert_eq!(e["ip"], "203.0.113.50");
}

async fn cors_only_for_lead_capture_from_allowed_origins(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.tenant("Aegean").await;
    app.with_key(Method::PATCH, "/v1/settings", &t.sk)
        .json(&json!({"allowed_origins": ["https://aegean.example"]}))
        .go()
        .await;
    let preflight = app
        .client
        .request(Method::OPTIONS, app.url("/v1/leads"))
        .header("Origin", "https://aegean.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "authorization, content-type")
        .go()
        .await;
    assert_eq!(preflight.status(), 204);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://aegean.example"
    );
    assert!(
        preflight.headers()["access-control-allow-headers"]
            .to_str()
            .expect("ascii")
            .contains("authorization")
    );
    assert!(preflight.headers().get("access-control-allow-credentials").is_none());
    // An origin no tenant allows gets no grant from the preflight.
    let evil_preflight = app
        .client
        .request(Method::OPTIONS, app.url("/v1/leads"))
        .header("Origin", "https://evil.example")
        .header("Access-Control-Request-Method", "POST")
        .go()
        .await;
    assert!(evil_preflight.headers().get("access-control-allow-origin").is_none());
    let post = |origin: &'static str, body: Value| {
        app.with_key(Method::POST, "/v1/leads", &t.pk)
            .header("Origin", origin)
            .json(&body)
            .send()
    };
    let ok = post("https://aegean.example", lead_body("maria@example.com"))
        .await
        .expect("send");
    assert_eq!(ok.status(), 201);
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://aegean.example");
    assert_eq!(ok.headers()["vary"], "Origin");
    // The form can read its validation errors.
    let bad = post("https://aegean.example", json!({"name": "x"}))
        .await
        .expect("send");
    assert_eq!(bad.headers()["access-control-allow-origin"], "https://aegean.example");
    problem(bad, 422).await;
    let evil = post("https://evil.example", lead_body("x@example.com"))
        .await
        .expect("send");
    assert!(evil.headers().get("access-control-allow-origin").is_none());
    problem(evil, 403).await;
    // Secret-key and admin routes grant nothing.
    for (m, p) in [
        (Method::GET, "/v1/leads"),
        (Method::PATCH, "/v1/settings"),
        (Method::GET, "/admin/tenants"),
    ] {
        let res = app
            .client
            .request(m.clone(), app.url(p))
            .header("Origin", "https://aegean.example")
            .bearer_auth(&t.sk)
            .header("X-Admin-Key", ADMIN_KEY)
            .json(&json!({}))
            .go()
            .await;
        assert!(res.headers().get("access-control-allow-origin").is_none(), "{m} {p}");
        let pre = app
            .client
            .request(Method::OPTIONS, app.url(p))
            .header("Origin", "https://aegean.example")
            .header("Access-Control-Request-Method", m.as_str())
            .go()
            .await;
        assert!(
            pre.headers().get("access-control-allow-origin").is_none(),
            "preflight {p}"
        );
    }
    // With a secret key from a browser origin, no grant either.
    let res = app
        .with_key(Method::POST, "/v1/leads", &t.sk)
        .header("Origin", "https://aegean.example")
        .json(&lead_body("s@example.com"))
        .go()
        .await;
    assert_eq!(res.status(), 201);
    assert!(res.headers().get("access-control-allow-origin").is_none());
}

/// Makes every insert into the audit log fail (a trigger), or lets them pass again.
async fn refuse_audit(app: &TestApp, refuse: bool) {
    match (app.backend, refuse) {
        (Backend::Sqlite, true) => {
            app.raw_text(
                "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_logs BEGIN SELECT RAISE(ABORT, 'audit refused'); END",
            )
            .await;
        }
        (Backend::Sqlite, false) => {
            app.raw_text("DROP TRIGGER refuse_audit").await;
        }
        (Backend::Postgres, true) => {
            app.raw_text(
                "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$",
            )
            .await;
            app.raw_text(
                "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_logs FOR EACH ROW EXECUTE FUNCTION refuse_audit()",
            )
            .await;
        }
        (Backend::Postgres, false) => {
            app.raw_text("DROP TRIGGER refuse_audit ON audit_logs").await;
        }
    }
}

/// A write and its audit entry are one transaction: when the entry cannot be
/// written, the write is not made either (a key revocation used to commit first and
/// write its entry afterwards, so a failed entry left a revocation nobody could
/// trace), and the request says it failed.
async fn a_write_whose_audit_entry_fails_is_not_made(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.tenant("Aegean Blue").await;
    let keys: Value = app
        .admin(Method::GET, &format!("/admin/tenants/{}", t.id))
        .go()
        .await
        .json()
        .await
        .expect("json");
    let sk_id = keys["keys"]
        .as_array()
        .and_then(|l| l.iter().find(|k| k["kind"] == "secret"))
        .and_then(|k| k["id"].as_str())
        .expect("secret key")
        .to_owned();
    let leads_with_key = || async {
        app.with_key(Method::GET, "/v1/leads", &t.sk)
            .go()
            .await
            .status()
            .as_u16()
    };
    let revoke = || async {
        app.admin(Method::DELETE, &format!("/admin/tenants/{}/keys/{sk_id}", t.id))
            .go()
            .await
    };

    // Age the audit entries so far (the tenant's creation) past any retention.
    match b {
        Backend::Sqlite => app.raw_text("UPDATE audit_logs SET at = '2001' || substr(at, 5)").await,
        Backend::Postgres => {
            app.raw_text("UPDATE audit_logs SET at = at - interval '25 years'")
                .await
        }
    };
    let old_entries = app.raw_text("SELECT id FROM audit_logs").await.len();
    assert!(old_entries > 0);
    let cleanup = || async {
        app.admin(Method::POST, "/admin/maintenance")
            .json(&json!({"action": "cleanup_old_audit"}))
            .go()
            .await
    };

    refuse_audit(&app, true).await;
    let res = cleanup().await;
    assert!(res.status().is_server_error(), "{}", res.status());
    assert_eq!(
        app.raw_text("SELECT id FROM audit_logs").await.len(),
        old_entries,
        "a cleanup whose audit entry fails deletes nothing"
    );
    let res = revoke().await;
    assert!(res.status().is_server_error(), "{}", res.status());
    assert_eq!(leads_with_key().await, 200, "the key still works: nothing was revoked");
    let mut body = lead_body("audit@example.com");
    body["name"] = json!("Audit Refused");
    let res = app.with_key(Method::POST, "/v1/leads", &t.sk).json(&body).go().await;
    assert!(res.status().is_server_error(), "{}", res.status());
    assert!(
        app.raw_text("SELECT id FROM leads").await.is_empty(),
        "no lead without its audit entry"
    );

    refuse_audit(&app, false).await;
    let done: Value = cleanup().await.json().await.expect("json");
    assert_eq!(done["affected"], old_entries, "{done}");
    let entries = audit(&app, "&action=maintenance.cleanup_old_audit").await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["details"]["affected"], old_entries);
    assert_eq!(revoke().await.status(), 200);
    assert_eq!(leads_with_key().await, 401);
    let entries = audit(&app, &format!("&action=key.revoke&tenant_id={}", t.id)).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["resource_id"], sk_id.as_str());
}
