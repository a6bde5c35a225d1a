//! Lead capture, reading, the pipeline, erasure and tenant isolation, over HTTP,
//! on both backends.

mod common;

use common::Go;

use common::{Backend, TestApp, lead_body, problem};
use reqwest::Method;
use serde_json::{Value, json};

leadline_store::both_backends!(
    capture_stores_every_field,
    duplicates_are_marked_not_refused,
    bad_lead_bodies_get_problems_and_store_nothing,
    list_filters_and_pagination,
    pipeline_moves_and_illegal_moves,
    erasure_removes_personal_data,
    other_tenants_get_404_and_change_nothing,
    publishable_keys_only_capture,
    revoked_and_suspended_keys,
    restart_keeps_every_lead,
    json_numbers_nul_characters_and_cursors,
);

async fn capture_stores_every_field(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.tenant("Aegean Blue").await;
    let lead = app.lead(&t, lead_body("maria@example.com")).await;
    assert!(lead["id"].as_str().is_some_and(|i| i.starts_with("lead_")));
    assert_eq!(lead["status"], "new");
    assert_eq!(lead["phone"], "+30 694 123 4567");
    assert_eq!(lead["phone_e164"], "+306941234567");
    assert_eq!(lead["guests"], json!({"adults": 6, "children": 2}));
    assert_eq!(lead["budget"], json!({"amount": 2500000, "currency": "EUR"}));
    assert_eq!(lead["utm"]["campaign"], "summer");
    assert_eq!(lead["yacht_type"], "catamaran");
    assert_eq!(lead["duplicate_of"], Value::Null);
    let id = lead["id"].as_str().expect("id");
    let read: Value = app
        .with_key(Method::GET, &format!("/v1/leads/{id}"), &t.sk)
        .go()
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(read, lead, "what is read back is what was answered");
}

async fn duplicates_are_marked_not_refused(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.tenant("Aegean Blue").await;
    let res = app
        .with_key(Method::POST, "/v1/webhook-endpoints", &t.sk)
        .json(&json!({"url": "http://127.0.0.1:9/hook", "events": ["lead.created"]}))
        .go()
        .await;
    assert_eq!(res.status(), 201);
    let first = app.lead(&t, lead_body("maria@example.com")).await;
    // Same email in another case, same dates: a duplicate of the first.
    let second = app.lead(&t, lead_body("MARIA@example.com")).await;
    assert_eq!(second["duplicate_of"], first["id"]);
    // Each has its `lead.created` event, whose data is the lead as answered.
    for lead in [&first, &second] {
        let id = lead["id"].as_str().expect("id");
        let payloads = app
            .raw_text(&format!(
                "SELECT CAST(payload AS TEXT) FROM outbox WHERE kind = 'webhook' AND lead_id = '{id}'"
            ))
            .await;
        assert_eq!(payloads.len(), 1, "{payloads:?}");
        let payload: Value = serde_json::from_str(&payloads[0]).expect("payload");
        let event: Value = serde_json::from_str(payload["body"].as_str().expect("body")).expect("event");
        assert_eq!(event["type"], "lead.created");
        assert_eq!(&event["data"], lead);
    }
    // Other dates: not a duplicate.
    let mut other = lead_body("maria@example.com");
    other["charter_to"] = json!((chrono::Utc::now().date_naive() + chrono::Duration::days(380)).to_string());
    let third = app.lead(&t, other).await;
    assert_eq!(third["duplicate_of"], Value::Null);
    // Another tenant's identical lead is not a duplicate.
    let u = app.tenant("Other").await;
    let fourth = app.lead(&u, lead_body("maria@example.com")).await;
    assert_eq!(fourth["duplicate_of"], Value::Null);
    assert_eq!(app.lead_ids(&t).await.len(), 3);
}

async fn bad_lead_bodies_get_problems_and_store_nothing(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.tenant("Aegean Blue").await;
    let today = chrono::Utc::now().date_naive();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut v = lead_body("maria@example.com");
        f(&mut v);
        v
    };
    // (body, status, pointer of the error)
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            with(&|v| {
                v.as_object_mut().map(|o| o.remove("name"));
            }),
            422,
            "/name",
        ),
        (with(&|v| v["name"] = json!("   ")), 422, "/name"),
        (with(&|v| v["name"] = json!("x".repeat(201))), 422, "/name"),
        (with(&|v| v["name"] = json!("Maria\u{0007}")), 422, "/name"),
        (
            with(&|v| {
                v.as_object_mut().map(|o| o.remove("email"));
            }),
            422,
            "/email",
        ),
        (with(&|v| v["email"] = json!("not-an-email")), 422, "/email"),
        (with(&|v| v["phone"] = json!("694 123 4567")), 422, "/phone"),
        (with(&|v| v["phone"] = json!("+30 abc")), 422, "/phone"),
        (
            with(&|v| v["charter_from"] = json!((today - chrono::Duration::days(1)).to_string())),
            422,
            "/charter_from",
        ),
        (
            with(&|v| v["charter_to"] = v["charter_from"].clone()),
            422,
            "/charter_to",
        ),
        (
            with(&|v| {
                v.as_object_mut().map(|o| o.remove("charter_to"));
            }),
            422,
            "/charter_to",
        ),
        (with(&|v| v["charter_from"] = json!("2027-02-30")), 422, "/charter_from"),
        (
            with(&|v| v["guests"] = json!({"adults": 0, "children": 0})),
            422,
            "/guests",
        ),
        (
            with(&|v| v["guests"] = json!({"adults": 50, "children": 11})),
            422,
            "/guests",
        ),
        (with(&|v| v["guests"] = json!({"adults": -1})), 422, "/guests/adults"),
        (with(&|v| v["message"] = json!("m".repeat(5001))), 422, "/message"),
        (with(&|v| v["yacht_type"] = json!("canoe")), 422, "/yacht_type"),
        (with(&|v| v["charter_type"] = json!("party")), 422, "/charter_type"),
        (
            with(&|v| v["budget"] = json!({"amount": 12.5, "currency": "EUR"})),
            422,
            "/budget/amount",
        ),
        (
            with(&|v| v["budget"] = json!({"amount": 100, "currency": "XXX"})),
            422,
            "/budget/currency",
        ),
        (
            with(&|v| v["budget"] = json!({"amount": 0, "currency": "EUR"})),
            422,
            "/budget/amount",
        ),
        (with(&|v| v["yacht_id"] = json!("boat_1")), 422, "/yacht_id"),
        (with(&|v| v["locale"] = json!("english please")), 422, "/locale"),
        (
            with(&|v| v["consent"] = json!({"privacy_policy": false})),
            422,
            "/consent/privacy_policy",
        ),
        (
            with(&|v| {
                v.as_object_mut().map(|o| o.remove("consent"));
            }),
            422,
            "/consent/privacy_policy",
        ),
        (with(&|v| v["emial"] = json!("typo@example.com")), 422, "/emial"),
        (with(&|v| v["utm"]["sorce"] = json!("x")), 422, "/utm/sorce"),
    ];
    for (body, status, pointer) in cases {
        let res = app.with_key(Method::POST, "/v1/leads", &t.sk).json(&body).go().await;
        let p = problem(res, status).await;
        let pointers: Vec<&str> = p["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .filter_map(|e| e["pointer"].as_str())
            .collect();
        assert!(pointers.contains(&pointer), "expected {pointer} in {p}");
    }
    // Malformed JSON, trailing garbage, an empty body: 400.
    for raw in ["{\"name\": ", "{} {}", "", "[1,2", "nul"] {
        let res = app
            .with_key(Method::POST, "/v1/leads", &t.sk)
            .header("content-type", "application/json")
            .body(raw)
            .go()
            .await;
        problem(res, 400).await;
    }
    // Wrong type at the top: 422.
    let res = app
        .with_key(Method::POST, "/v1/leads", &t.sk)
        .json(&json!([1, 2]))
        .go()
        .await;
    problem(res, 422).await;
    // Another content type: 415.
    let res = app
        .with_key(Method::POST, "/v1/leads", &t.sk)
        .header("content-type", "text/plain")
        .body(lead_body("a@example.com").to_string())
        .go()
        .await;
    problem(res, 415).await;
    // Over 64 KiB: 413.
    let mut huge = lead_body("a@example.com");
    huge["message"] = json!("x".repeat(70 * 1024));
    let res = app.with_key(Method::POST, "/v1/leads", &t.sk).json(&huge).go().await;
    problem(res, 413).await;
    assert!(app.lead_ids(&t).await.is_empty(), "nothing was stored");
}

async fn list_filters_and_pagination(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.tenant("Aegean Blue").await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let mut body = lead_body(&format!("client{i}@example.com"));
        body["name"] = json!(format!("Client Number{i}"));
        body["phone"] = json!(format!("+44 7700 90012{i}"));
        ids.push(app.lead(&t, body).await["id"].as_str().expect("id").to_owned());
    }
    // Pages of 3, newest first, covering every lead once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/leads?limit=3&cursor={c}"),
            None => "/v1/leads?limit=3".into(),
        };
        let v: Value = app
            .with_key(Method::GET, &path, &t.sk)
            .go()
            .await
            .json()
            .await
            .expect("json");
        let data = v["data"].as_array().expect("data");
        assert!(data.len() <= 3);
        seen.extend(data.iter().map(|l| l["id"].as_str().expect("id").to_owned()));
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut expected = ids.clone();
    expected.reverse();
    assert_eq!(seen, expected);

    let count = |v: Value| v["data"].as_array().map(Vec::len).unwrap_or(usize::MAX);
    let get = |path: String| {
        let req = app.with_key(Method::GET, &path, &t.sk);
        async move { req.go().await.json::<Value>().await.expect("json") }
    };
    assert_eq!(
        count(get("/v1/leads?q=number3".into()).await),
        1,
        "name search ignores case"
    );
    assert_eq!(
        count(get("/v1/leads?q=CLIENT5%40example".into()).await),
        1,
        "email search"
    );
    assert_eq!(count(get("/v1/leads?q=900126".into()).await), 1, "phone digits search");
    assert_eq!(
        count(get("/v1/leads?q=%25".into()).await),
        0,
        "LIKE wildcards are literal"
    );
    assert_eq!(count(get("/v1/leads?status=new".into()).await), 7);
    assert_eq!(count(get("/v1/leads?status=won".into()).await), 0);
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(count(get(format!("/v1/leads?created_after={future}")).await), 0);
    assert_eq!(count(get(format!("/v1/leads?created_before={future}")).await), 7);
    assert_eq!(
        count(get("/v1/leads?yacht_id=yacht_01jd6c8m2f0000000000000000".into()).await),
        0
    );
    for bad in [
        "limit=0",
        "limit=201",
        "cursor=%%%",
        "cursor=bGVhZF8wMQ",
        "cursor=LEAD_01JD6C8M2F0000000000000000",
        "action=%00",
        "q=a%00b",
        "status=open",
        "created_after=yesterday",
        "yacht_id=x",
        "colour=blue",
    ] {
        let res = app.with_key(Method::GET, &format!("/v1/leads?{bad}"), &t.sk).go().await;
        problem(res, 400).await;
    }
}

async fn pipeline_moves_and_illegal_moves(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.tenant("Aegean Blue").await;
    let id = app.lead(&t, lead_body("maria@example.com")).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let path = format!("/v1/leads/{id}");
    let patch = |body: Value| app.with_key(Method::PATCH, &path, &t.sk).json(&body).send();
    // new → won is not allowed.
    let p = problem(patch(json!({"status": "won"})).await.expect("send"), 409).await;
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("new")), "{p}");
    for (to, ok) in [
        ("contacted", true),
        ("quoted", true),
        ("contacted", true),
        ("quoted", true),
        ("won", true),
        ("lost", false),
        ("contacted", false),
    ] {
        let res = patch(json!({"status": to})).await.expect("send");
        if ok {
            assert_eq!(res.status(), 200, "to {to}");
            assert_eq!(res.json::<Value>().await.expect("json")["status"], to);
        } else {
            problem(res, 409).await;
        }
    }
    let res = patch(json!({"assigned_to": "Nikos", "notes": "VIP\nrepeat client", "tags": ["vip", "repeat", "vip"]}))
        .await
        .expect("send");
    assert_eq!(res.status(), 200);
    let v: Value = res.json().await.expect("json");
    assert_eq!(v["tags"], json!(["vip", "repeat"]));
    assert_eq!(v["status"], "won");
    let v: Value = patch(json!({"assigned_to": null}))
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(v["assigned_to"], Value::Null);
    assert_eq!(v["notes"], "VIP\nrepeat client");
    problem(patch(json!({"tags": ["x".repeat(51)]})).await.expect("send"), 422).await;
    problem(patch(json!({"status": "archived"})).await.expect("send"), 422).await;
    problem(patch(json!({"name": "new name"})).await.expect("send"), 422).await;
    // Lost may reopen.
    let id2 = app.lead(&t, lead_body("nikos@example.com")).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for to in ["lost", "contacted", "lost"] {
        let res = app
            .with_key(Method::PATCH, &format!("/v1/leads/{id2}"), &t.sk)
            .json(&json!({"status": to}))
            .go()
            .await;
        assert_eq!(res.status(), 200, "to {to}");
    }
}

async fn erasure_removes_personal_data(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.tenant("Aegean Blue").await;
    let id = app.lead(&t, lead_body("maria@example.com")).await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let mut other = lead_body("nikos@example.com");
    other["name"] = json!("Nikos Pappas");
    other["phone"] = json!("+30 210 555 0100");
    let keep = app.lead(&t, other).await["id"].as_str().expect("id").to_owned();
    let res = app
        .with_key(Method::DELETE, &format!("/v1/leads/{id}"), &t.sk)
        .go()
        .await;
    assert_eq!(res.status(), 204);
    problem(
        app.with_key(Method::GET, &format!("/v1/leads/{id}"), &t.sk).go().await,
        404,
    )
    .await;
    problem(
        app.with_key(Method::DELETE, &format!("/v1/leads/{id}"), &t.sk)
            .go()
            .await,
        404,
    )
    .await;
    assert_eq!(app.lead_ids(&t).await, vec![keep]);
    // The stored row holds no personal data any more.
    let row = app
        .raw_text(&format!("SELECT name || '|' || email || '|' || COALESCE(phone, '') || COALESCE(message, '') FROM leads WHERE id = '{id}'"))
        .await;
    assert_eq!(row, vec!["[erased]|erased@erased.invalid|".to_owned()]);
    let all = app
        .raw_text("SELECT name || email || COALESCE(phone, '') || COALESCE(phone_e164, '') FROM leads")
        .await
        .join(" ");
    assert!(
        !all.contains("maria") && !all.contains("Maria") && all.contains("nikos"),
        "{all}"
    );
    let list: Value = app
        .with_key(Method::GET, "/v1/leads?q=maria", &t.sk)
        .go()
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list["data"], json!([]));
}

async fn other_tenants_get_404_and_change_nothing(b: Backend) {
    let app = TestApp::spawn(b).await;
    let a = app.tenant("Tenant A").await;
    let b_ = app.tenant("Tenant B").await;
    let lead = app.lead(&a, lead_body("maria@example.com")).await;
    let id = lead["id"].as_str().expect("id");
    let path = format!("/v1/leads/{id}");
    problem(app.with_key(Method::GET, &path, &b_.sk).go().await, 404).await;
    problem(
        app.with_key(Method::PATCH, &path, &b_.sk)
            .json(&json!({"status": "lost"}))
            .go()
            .await,
        404,
    )
    .await;
    problem(app.with_key(Method::DELETE, &path, &b_.sk).go().await, 404).await;
    // The 404 for another tenant's lead is the 404 of a lead that never existed.
    let missing = problem(
        app.with_key(Method::GET, "/v1/leads/lead_01jd6c8m2f0000000000000000", &b_.sk)
            .go()
            .await,
        404,
    )
    .await;
    let theirs = problem(app.with_key(Method::GET, &path, &b_.sk).go().await, 404).await;
    assert_eq!(missing["detail"], theirs["detail"]);
    assert_eq!(missing["type"], theirs["type"]);
    let list: Value = app
        .with_key(Method::GET, "/v1/leads", &b_.sk)
        .go()
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list["data"], json!([]));
    let list: Value = app
        .with_key(Method::GET, "/v1/leads?q=maria", &b_.sk)
        .go()
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(list["data"], json!([]));
    // Unchanged for its owner.
    let read: Value = app
        .with_key(Method::GET, &path, &a.sk)
        .go()
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(read, lead);
    // Malformed ids are 404 too.
    problem(app.with_key(Method::GET, "/v1/leads/not-an-id", &a.sk).go().await, 404).await;
    problem(
        app.with_key(Method::GET, "/v1/leads/ten_01jd6c8m2f0000000000000000", &a.sk)
            .go()
            .await,
        404,
    )
    .await;
}

async fn publishable_keys_only_capture(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.tenant("Aegean Blue").await;
    let res = app
        .with_key(Method::POST, "/v1/leads", &t.pk)
        .json(&lead_body("maria@example.com"))
        .go()
        .await;
    assert_eq!(res.status(), 201);
    let id = res.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for (m, p) in [
        (Method::GET, "/v1/leads".to_owned()),
        (Method::GET, format!("/v1/leads/{id}")),
        (Method::DELETE, format!("/v1/leads/{id}")),
        (Method::GET, "/v1/settings".to_owned()),
    ] {
        problem(app.with_key(m, &p, &t.pk).go().await, 403).await;
    }
    problem(
        app.with_key(Method::PATCH, &format!("/v1/leads/{id}"), &t.pk)
            .json(&json!({"status": "lost"}))
            .go()
            .await,
        403,
    )
    .await;
    // With allowed origins set, only those origins may use the publishable key.
    let res = app
        .with_key(Method::PATCH, "/v1/settings", &t.sk)
        .json(&json!({"allowed_origins": ["https://charter.example"]}))
        .go()
        .await;
    assert_eq!(res.status(), 200);
    let post = |origin: Option<&str>| {
        let mut r = app
            .with_key(Method::POST, "/v1/leads", &t.pk)
            .json(&lead_body("nikos@example.com"));
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.send()
    };
    problem(post(None).await.expect("send"), 403).await;
    problem(post(Some("https://evil.example")).await.expect("send"), 403).await;
    assert_eq!(post(Some("https://charter.example")).await.expect("send").status(), 201);
    // The secret key is not bound to origins (it is for servers).
    assert_eq!(
        app.with_key(Method::POST, "/v1/leads", &t.sk)
            .json(&lead_body("x@example.com"))
            .go()
            .await
            .status(),
        201
    );
    assert_eq!(app.lead_ids(&t).await.len(), 3);
}

async fn revoked_and_suspended_keys(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.tenant("Aegean Blue").await;
    // Garbage and unknown keys: 401 with a problem.
    for key in [
        "nope",
        "sk_",
        "sk_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        &format!("{}x", t.sk),
    ] {
        problem(app.with_key(Method::GET, "/v1/leads", key).go().await, 401).await;
    }
    problem(app.client.get(app.url("/v1/leads")).go().await, 401).await;
    // A second key, then revoke the first: refused at once, the second still works.
    let res = app
        .admin(Method::POST, &format!("/admin/tenants/{}/keys", t.id))
        .json(&json!({"kind": "secret"}))
        .go()
        .await;
    assert_eq!(res.status(), 201);
    let issued: Value = res.json().await.expect("json");
    let sk2 = issued["key"].as_str().expect("key").to_owned();
    let tv: Value = app
        .admin(Method::GET, &format!("/admin/tenants/{}", t.id))
        .go()
        .await
        .json()
        .await
        .expect("json");
    let keys = tv["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 3);
    assert!(
        keys.iter().all(|k| k.get("key").is_none() && k.get("hash").is_none()),
        "keys are never shown again"
    );
    let first_id = keys
        .iter()
        .find(|k| k["kind"] == "secret" && k["id"] != issued["id"])
        .and_then(|k| k["id"].as_str())
        .expect("first key")
        .to_owned();
    assert!(
        t.sk.starts_with(
            keys.iter()
                .find(|k| k["id"] == first_id.as_str())
                .and_then(|k| k["prefix"].as_str())
                .expect("prefix")
        )
    );
    assert_eq!(app.with_key(Method::GET, "/v1/leads", &t.sk).go().await.status(), 200);
    let res = app
        .admin(Method::DELETE, &format!("/admin/tenants/{}/keys/{first_id}", t.id))
        .go()
        .await;
    assert_eq!(res.status(), 200);
    assert!(res.json::<Value>().await.expect("json")["revoked_at"].is_string());
    problem(app.with_key(Method::GET, "/v1/leads", &t.sk).go().await, 401).await;
    assert_eq!(app.with_key(Method::GET, "/v1/leads", &sk2).go().await.status(), 200);
    // Another tenant's key id under this tenant: 404.
    let u = app.tenant("Other").await;
    let uv: Value = app
        .admin(Method::GET, &format!("/admin/tenants/{}", u.id))
        .go()
        .await
        .json()
        .await
        .expect("json");
    let their_key = uv["keys"][0]["id"].as_str().expect("key id").to_owned();
    problem(
        app.admin(Method::DELETE, &format!("/admin/tenants/{}/keys/{their_key}", t.id))
            .go()
            .await,
        404,
    )
    .await;
    assert_eq!(
        app.with_key(Method::GET, "/v1/leads", &u.sk).go().await.status(),
        200,
        "untouched"
    );
    // Suspension: 403 with a problem saying so; reactivation restores access.
    let res = app
        .admin(Method::PATCH, &format!("/admin/tenants/{}", t.id))
        .json(&json!({"status": "suspended"}))
        .go()
        .await;
    assert_eq!(res.status(), 200);
    let p = problem(app.with_key(Method::GET, "/v1/leads", &sk2).go().await, 403).await;
    assert!(p["detail"].as_str().is_some_and(|d| d.contains("suspended")));
    problem(
        app.with_key(Method::POST, "/v1/leads", &t.pk)
            .json(&lead_body("a@example.com"))
            .go()
            .await,
        403,
    )
    .await;
    app.admin(Method::PATCH, &format!("/admin/tenants/{}", t.id))
        .json(&json!({"status": "active"}))
        .go()
        .await;
    assert_eq!(app.with_key(Method::GET, "/v1/leads", &sk2).go().await.status(), 200);
}

async fn restart_keeps_every_lead(b: Backend) {
    let mut app = TestApp::spawn(b).await;
    let t = app.tenant("Aegean Blue").await;
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            app.lead(&t, lead_body(&format!("c{i}@example.com"))).await["id"]
                .as_str()
                .expect("id")
                .to_owned(),
        );
    }
    app.restart().await;
    let mut after = app.lead_ids(&t).await;
    after.sort();
    ids.sort();
    assert_eq!(after, ids);
    // Keys survive too, and writes go on.
    app.lead(&t, lead_body("after@example.com")).await;
}

/// What JSON Schema says of a request the server takes too: `2.0` is an integer;
/// a NUL character is in no field (PostgreSQL could not store it: it answered 500
/// there) and is refused alike on both backends; a cursor is any id-shaped value.
async fn json_numbers_nul_characters_and_cursors(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.tenant("Aegean Blue").await;
    let mut body = lead_body("floats@example.com");
    body["guests"] = json!({"adults": 2.0, "children": 1e0});
    let lead = app.lead(&t, body).await;
    assert_eq!(lead["guests"], json!({"adults": 2, "children": 1}));

    let mut body = lead_body("halves@example.com");
    body["guests"] = json!({"adults": 2.5});
    let res = app.with_key(Method::POST, "/v1/leads", &t.sk).json(&body).go().await;
    let p = problem(res, 422).await;
    assert_eq!(p["errors"][0]["pointer"], "/guests/adults", "{p}");

    for (field, value) in [("name", "Ma\u{0}ria"), ("message", "a\u{0}"), ("unknown", "\u{0}")] {
        // serde_json writes the NUL as `\u0000`.
        let mut v = lead_body("nul@example.com");
        v[field] = json!(value);
        let raw = v.to_string();
        assert!(raw.contains("\\u0000"), "{raw}");
        let res = app
            .with_key(Method::POST, "/v1/leads", &t.sk)
            .header("content-type", "application/json")
            .body(raw)
            .go()
            .await;
        let p = problem(res, 400).await;
        assert!(p["detail"].as_str().is_some_and(|d| d.contains("NUL")), "{field}: {p}");
    }
    let listed: Value = app
        .with_key(Method::GET, "/v1/leads", &t.sk)
        .go()
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        listed["data"].as_array().map(Vec::len),
        Some(1),
        "nothing stored from refused bodies"
    );

    // A cursor is a position: any id-shaped value pages from there.
    let res = app
        .with_key(Method::GET, "/v1/leads?cursor=lead_7zzzzzzzzzzzzzzzzzzzzzzzzz", &t.sk)
        .go()
        .await;
    assert_eq!(res.status(), 200);
    let page: Value = res.json().await.expect("json");
    assert_eq!(page["data"].as_array().map(Vec::len), Some(1));
    let res = app
        .with_key(Method::GET, "/v1/leads?cursor=lead_00000000000000000000000000", &t.sk)
        .go()
        .await;
    let page: Value = res.json().await.expect("json");
    assert_eq!(page["data"].as_array().map(Vec::len), Some(0));
}
