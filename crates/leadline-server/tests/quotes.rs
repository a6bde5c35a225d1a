//! The charter business over HTTP, on both backends: the fleet, quotes, the
//! client's page, acceptance and bookings.

mod common;

use common::Go;

use common::smtp::{SmtpServer, part};
use common::{Backend, Tenant, TestApp, eventually, problem};
use reqwest::Method;
use serde_json::{Value, json};

leadline_store::both_backends!(
    yachts_are_validated_scoped_and_archived,
    a_quote_is_priced_sent_and_accepted_into_a_booking,
    concurrent_accepts_for_overlapping_dates_book_once_and_say_why,
    only_sent_unexpired_quotes_can_be_answered,
    another_tenants_yacht_or_lead_cannot_be_quoted,
    a_suspended_tenants_quote_pages_stop,
    amounts_beyond_the_maximum_are_refused,
);

fn yacht_body() -> Value {
    json!({
        "name": "Thalassa", "type": "catamaran", "max_guests": 10, "currency": "EUR", "min_nights": 3, "home_port": "Lavrion",
        "charter_types": ["bareboat", "crewed"],
        "rates": [
            {"season": "mid", "from": "2030-06-01", "to": "2030-06-30", "weekly_rate": {"amount": 630000, "currency": "EUR"}},
            {"season": "high", "from": "2030-07-01", "to": "2030-08-31", "weekly_rate": {"amount": 840000, "currency": "EUR"}}
        ],
        "extras": [
            {"code": "transit_log", "name": "Transit log", "price": {"amount": 15000, "currency": "EUR"}, "unit": "per_charter", "mandatory": true, "paid": "with_booking"},
            {"code": "skipper", "name": "Skipper", "price": {"amount": 18000, "currency": "EUR"}, "unit": "per_day", "paid": "with_booking", "taxable": true}
        ]
    })
}

async fn json_of(res: reqwest::Response) -> Value {
    res.json().await.expect("json")
}

async fn yacht(app: &TestApp, t: &Tenant) -> String {
    let res = app
        .with_key(Method::POST, "/v1/yachts", &t.sk)
        .json(&yacht_body())
        .go()
        .await;
    assert_eq!(res.status(), 201);
    json_of(res).await["id"].as_str().expect("id").to_owned()
}

async fn lead(app: &TestApp, t: &Tenant, email: &str, from: &str, to: &str) -> String {
    let body = json!({"name": "Maria <Client>", "email": email, "charter_from": from, "charter_to": to,
        "guests": {"adults": 4}, "consent": {"privacy_policy": true}});
    app.lead(t, body).await["id"].as_str().expect("id").to_owned()
}

async fn quote(app: &TestApp, t: &Tenant, lead: &str, yacht: &str, extra: Value) -> Value {
    let mut body = json!({"lead_id": lead, "yacht_id": yacht});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let res = app.with_key(Method::POST, "/v1/quotes", &t.sk).json(&body).go().await;
    let status = res.status();
    let v = json_of(res).await;
    assert_eq!(status, 201, "{v}");
    v
}

async fn send(app: &TestApp, t: &Tenant, quote_id: &str) -> String {
    let res = app
        .with_key(Method::POST, &format!("/v1/quotes/{quote_id}/send"), &t.sk)
        .go()
        .await;
    assert_eq!(res.status(), 200);
    json_of(res).await["url"].as_str().expect("url").to_owned()
}

/// The path of a quote page URL (the test server's base differs from the configured one).
fn path_of(url: &str) -> String {
    url.find("/q/").map(|i| url[i..].to_owned()).expect("a /q/ url")
}

async fn yachts_are_validated_scoped_and_archived(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.tenant("A").await;
    let u = app.tenant("B").await;
    let id = yacht(&app, &t).await;
    let y = json_of(app.with_key(Method::GET, &format!("/v1/yachts/{id}"), &t.sk).go().await).await;
    assert_eq!(y["rates"].as_array().map(Vec::len), Some(2));
    assert_eq!(y["type"], "catamaran");
    let mut overlapping = yacht_body();
    overlapping["rates"][1]["from"] = json!("2030-06-30");
    let mut wrong_currency = yacht_body();
    wrong_currency["rates"][0]["weekly_rate"]["currency"] = json!("USD");
    let mut bad_unit = yacht_body();
    bad_unit["extras"][0]["unit"] = json!("per_fortnight");
    let mut dup = yacht_body();
    dup["extras"][1]["code"] = json!("transit_log");
    let mut free = yacht_body();
    free["rates"][0]["weekly_rate"]["amount"] = json!(0);
    for (body, ptr) in [
        (overlapping, "/rates/0"),
        (wrong_currency, "/rates/0/weekly_rate"),
        (bad_unit, "/extras/0/unit"),
        (dup, "/extras/1/code"),
        (free, "/rates/0/weekly_rate"),
    ] {
        let p = problem(
            app.with_key(Method::POST, "/v1/yachts", &t.sk).json(&body).go().await,
            422,
        )
        .await;
        assert!(
            p["errors"]
                .as_array()
                .expect("errors")
                .iter()
                .any(|e| e["pointer"] == ptr),
            "{ptr}: {p}"
        );
    }
    let path = format!("/v1/yachts/{id}");
    for (m, p) in [
        (Method::GET, path.clone()),
        (Method::PATCH, path.clone()),
        (Method::DELETE, path.clone()),
        (Method::GET, format!("{path}/availability")),
    ] {
        problem(app.with_key(m, &p, &u.sk).json(&json!({})).go().await, 404).await;
    }
    let patched = json_of(
        app.with_key(Method::PATCH, &path, &t.sk)
            .json(&json!({"min_nights": 7}))
            .go()
            .await,
    )
    .await;
    assert_eq!(patched["min_nights"], 7);
    assert_eq!(app.with_key(Method::DELETE, &path, &t.sk).go().await.status(), 204);
    let list = json_of(app.with_key(Method::GET, "/v1/yachts", &t.sk).go().await).await;
    assert_eq!(list["data"], json!([]), "archived yachts leave the list");
    let all = json_of(
        app.with_key(Method::GET, "/v1/yachts?include_archived=true", &t.sk)
            .go()
            .await,
    )
    .await;
    assert!(all["data"][0]["archived_at"].is_string());
    let l = lead(&app, &t, "m@example.com", "2030-06-26", "2030-07-06").await;
    let p = problem(
        app.with_key(Method::POST, "/v1/quotes", &t.sk)
            .json(&json!({"lead_id": l, "yacht_id": id}))
            .go()
            .await,
        422,
    )
    .await;
    assert_eq!(p["errors"][0]["pointer"], "/yacht_id");
}

async fn a_quote_is_priced_sent_and_accepted_into_a_booking(b: Backend) {
    let smtp = SmtpServer::start().await;
    let app = TestApp::spawn_with(b, &[("LEADLINE_SMTP_URL", &smtp.url())]).await;
    let t = app.tenant("Aegean Blue").await;
    app.with_key(Method::PATCH, "/v1/settings", &t.sk)
        .json(&json!({"vat_percent": "13", "notification_emails": ["desk@aegean.example"]}))
        .go()
        .await;
    let rx = common::receiver::Receiver::start(&[], 200).await;
    let res = app
        .with_key(Method::POST, "/v1/webhook-endpoints", &t.sk)
        .json(&json!({"url": rx.url, "events": ["*"]}))
        .go()
        .await;
    assert_eq!(res.status(), 201);
    let y = yacht(&app, &t).await;
    let l = lead(&app, &t, "maria@example.com", "2030-06-26", "2030-07-06").await;
    let q = quote(
        &app,
        &t,
        &l,
        &y,
        json!({"extras": ["skipper"], "discounts": [{"label": "Early booking", "percent": "10"}]}),
    )
    .await;
    assert_eq!(q["status"], "draft");
    let amounts: Vec<i64> = q["lines"]
        .as_array()
        .expect("lines")
        .iter()
        .map(|l| l["amount"].as_i64().expect("amount"))
        .collect();
    // 5 mid + 5 high nights; 10 % off; transit log; skipper 10 days; VAT 13 % of 945,000 + 180,000.
    assert_eq!(amounts, [1_050_000, -105_000, 15_000, 180_000, 146_250]);
    assert_eq!(q["total"], json!({"amount": 1_286_250, "currency": "EUR"}));
    let sched: i64 = q["payment_schedule"]
        .as_array()
        .expect("schedule")
        .iter()
        .map(|p| p["amount"]["amount"].as_i64().expect("amount"))
        .sum();
    assert_eq!(sched, 1_286_250);
    assert_eq!(q["url"], Value::Null, "no link before it is sent");
    let qid = q["id"].as_str().expect("id").to_owned();
    let url = send(&app, &t, &qid).await;
    let lead_now = json_of(app.with_key(Method::GET, &format!("/v1/leads/{l}"), &t.sk).go().await).await;
    assert_eq!(lead_now["status"], "quoted");
    // The client gets the link by email.
    let mail = eventually("the quote email", || async {
        smtp.received()
            .into_iter()
            .find(|m| m.to == ["maria@example.com"] && m.data.contains("Subject: Your charter quote"))
    })
    .await;
    assert!(
        part(&mail.data, "text/plain").is_some_and(|t| t.contains(&url)),
        "the email holds the link"
    );
    // The page, in the tenant's name, with the lines, the total and the two buttons.
    let page_path = path_of(&url);
    let page = app.client.get(app.url(&page_path)).go().await;
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/html")
    );
    let html = page.text().await.expect("text");
    for needle in [
        "Aegean Blue",
        "Thalassa",
        "12,862.50 EUR",
        "Early booking",
        "action=\"/q/",
        "Accept and book",
        "Decline",
        "@media print",
        "viewport",
    ] {
        assert!(html.contains(needle), "the page shows {needle:?}");
    }
    assert!(
        html.contains("Maria &lt;Client&gt;") && !html.contains("<Client>"),
        "values are escaped"
    );
    // Held while sent.
    let avail = json_of(
        app.with_key(
            Method::GET,
            &format!("/v1/yachts/{y}/availability?from=2030-06-01&to=2030-08-01"),
            &t.sk,
        )
        .go()
        .await,
    )
    .await;
    assert_eq!(avail["held"][0]["quote_id"], qid.as_str());
    assert_eq!(avail["booked"], json!([]));
    // Accept: booked, lead won, page says so; a second answer is refused.
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let res = no_redirect
        .post(app.url(&format!("{page_path}/accept")))
        .form(&[("x", "1")])
        .go()
        .await;
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], page_path.as_str());
    let q = json_of(
        app.with_key(Method::GET, &format!("/v1/quotes/{qid}"), &t.sk)
            .go()
            .await,
    )
    .await;
    assert_eq!(q["status"], "accepted");
    assert!(q["booking_id"].as_str().is_some_and(|b| b.starts_with("bkg_")));
    let avail = json_of(
        app.with_key(
            Method::GET,
            &format!("/v1/yachts/{y}/availability?from=2030-06-01&to=2030-08-01"),
            &t.sk,
        )
        .go()
        .await,
    )
    .await;
    assert_eq!(avail["booked"][0]["from"], "2030-06-26");
    assert_eq!(avail["booked"][0]["to"], "2030-07-06");
    assert_eq!(avail["held"], json!([]));
    let lead_now = json_of(app.with_key(Method::GET, &format!("/v1/leads/{l}"), &t.sk).go().await).await;
    assert_eq!(lead_now["status"], "won");
    assert!(
        app.client
            .get(app.url(&page_path))
            .go()
            .await
            .text()
            .await
            .expect("text")
            .contains("You accepted this quote")
    );
    problem(app.client.post(app.url(&format!("{page_path}/accept"))).go().await, 409).await;
    problem(
        app.client.post(app.url(&format!("{page_path}/decline"))).go().await,
        409,
    )
    .await;
    let types = eventually("the webhook events", || async {
        let types: Vec<String> = rx
            .received()
            .iter()
            .filter_map(|d| serde_json::from_str::<Value>(&d.body).ok())
            .filter_map(|v| v["type"].as_str().map(str::to_owned))
            .collect();
        types.contains(&"booking.created".to_owned()).then_some(types)
    })
    .await;
    for t in [
        "lead.created",
        "quote.created",
        "quote.sent",
        "quote.accepted",
        "booking.created",
    ] {
        assert!(types.iter().any(|x| x == t), "{t} in {types:?}");
    }
    eventually("staff told of the acceptance", || async {
        smtp.received()
            .into_iter()
            .find(|m| m.to == ["desk@aegean.example"] && m.data.contains("accepted"))
    })
    .await;
    // Audit: the client's answer is recorded as the public link's.
    let audit = json_of(app.admin(Method::GET, "/admin/audit?action=quote.accept").go().await).await;
    assert_eq!(audit["data"][0]["actor_type"], "public_link");
    assert_eq!(audit["data"][0]["resource_id"], qid.as_str());
    let listed = json_of(
        app.with_key(Method::GET, &format!("/v1/quotes?lead_id={l}&status=accepted"), &t.sk)
            .go()
            .await,
    )
    .await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1));
}

async fn concurrent_accepts_for_overlapping_dates_book_once_and_say_why(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.tenant("Aegean Blue").await;
    let y = yacht(&app, &t).await;
    let mut pages = Vec::new();
    for i in 0..20 {
        // Overlapping windows: every one shares the night of 10 July.
        let from = format!("2030-07-{:02}", 4 + (i % 6));
        let to = format!("2030-07-{:02}", 11 + (i % 6));
        let l = lead(&app, &t, &format!("c{i}@example.com"), &from, &to).await;
        let q = quote(&app, &t, &l, &y, json!({})).await;
        pages.push(path_of(&send(&app, &t, q["id"].as_str().expect("id")).await));
    }
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    // Each quote twice: a lost race on the same quote and a booking taken by
    // another quote are refused, each saying which.
    let mut tasks = Vec::new();
    for p in pages.iter().chain(pages.iter()) {
        let req = client.post(app.url(&format!("{p}/accept")));
        tasks.push(tokio::spawn(async move {
            let r = req.send().await?;
            let status = r.status().as_u16();
            let detail = r
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v["detail"].as_str().map(str::to_owned));
            Ok::<_, reqwest::Error>((status, detail.unwrap_or_default()))
        }));
    }
    let mut statuses = Vec::new();
    let mut details = Vec::new();
    for task in tasks {
        let (status, detail) = task.await.expect("join").expect("send");
        statuses.push(status);
        details.push(detail);
    }
    let winner = statuses.iter().position(|s| *s == 303).expect("a winner");
    let twin = if winner < 20 { winner + 20 } else { winner - 20 };
    for (i, d) in details.iter().enumerate() {
        if i == winner {
            continue;
        }
        let expected = if i == twin {
            ["answered already", "it is accepted"].as_slice()
        } else {
            ["no longer available", "cannot be answered"].as_slice()
        };
        assert!(expected.iter().any(|e| d.contains(e)), "{i}: {d:?}");
    }
    assert!(
        details.iter().any(|d| d.contains("no longer available")),
        "a booking lost to another quote says so: {details:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 303).count(),
        1,
        "exactly one accept wins: {statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        39,
        "the others are refused: {statuses:?}"
    );
    let avail = json_of(
        app.with_key(
            Method::GET,
            &format!("/v1/yachts/{y}/availability?from=2030-07-01&to=2030-08-01"),
            &t.sk,
        )
        .go()
        .await,
    )
    .await;
    assert_eq!(avail["booked"].as_array().map(Vec::len), Some(1));
    let accepted = json_of(
        app.with_key(Method::GET, "/v1/quotes?status=accepted", &t.sk)
            .go()
            .await,
    )
    .await;
    assert_eq!(
        accepted["data"].as_array().map(Vec::len),
        Some(1),
        "the losers' quotes did not change"
    );
    // A charter starting on the booked one's last day does not overlap it.
    let booked_to = avail["booked"][0]["to"].as_str().expect("to").to_owned();
    let next_to = (chrono::NaiveDate::parse_from_str(&booked_to, "%Y-%m-%d").expect("date")
        + chrono::Duration::days(7))
    .to_string();
    let l = lead(&app, &t, "next@example.com", &booked_to, &next_to).await;
    let q = quote(&app, &t, &l, &y, json!({})).await;
    let p = path_of(&send(&app, &t, q["id"].as_str().expect("id")).await);
    assert_eq!(
        client.post(app.url(&format!("{p}/accept"))).go().await.status(),
        303,
        "turnover day is free"
    );
}

async fn only_sent_unexpired_quotes_can_be_answered(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.tenant("Aegean Blue").await;
    let y = yacht(&app, &t).await;
    // An unknown token looks like any other missing page.
    let missing = problem(app.client.get(app.url("/nothing-here")).go().await, 404).await;
    for path in ["/q/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "/q/short"] {
        let p = problem(app.client.get(app.url(path)).go().await, 404).await;
        assert_eq!((&p["type"], &p["detail"]), (&missing["type"], &missing["detail"]));
        assert!(
            !p["instance"].as_str().expect("instance").contains("AAAA"),
            "the token is not echoed"
        );
        problem(app.client.post(app.url(&format!("{path}/accept"))).go().await, 404).await;
    }
    // Cancelled.
    let l = lead(&app, &t, "a@example.com", "2030-07-01", "2030-07-08").await;
    let q = quote(&app, &t, &l, &y, json!({})).await;
    let qid = q["id"].as_str().expect("id");
    let p = path_of(&send(&app, &t, qid).await);
    assert_eq!(
        app.with_key(Method::POST, &format!("/v1/quotes/{qid}/cancel"), &t.sk)
            .go()
            .await
            .status(),
        200
    );
    problem(app.client.post(app.url(&format!("{p}/accept"))).go().await, 409).await;
    problem(
        app.with_key(Method::POST, &format!("/v1/quotes/{qid}/send"), &t.sk)
            .go()
            .await,
        409,
    )
    .await;
    // Declined, then not acceptable.
    let l = lead(&app, &t, "b@example.com", "2030-07-01", "2030-07-08").await;
    let q = quote(&app, &t, &l, &y, json!({})).await;
    let p = path_of(&send(&app, &t, q["id"].as_str().expect("id")).await);
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    assert_eq!(client.post(app.url(&format!("{p}/decline"))).go().await.status(), 303);
    problem(app.client.post(app.url(&format!("{p}/accept"))).go().await, 409).await;
    // A draft has no link at all; an expired quote is refused and the janitor marks it.
    let l = lead(&app, &t, "c@example.com", "2030-07-01", "2030-07-08").await;
    let soon = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let q = quote(&app, &t, &l, &y, json!({"valid_until": soon})).await;
    let qid = q["id"].as_str().expect("id").to_owned();
    let p = path_of(&send(&app, &t, &qid).await);
    // Two hours later, without waiting them.
    leadline_server::clock::test::advance(std::time::Duration::from_secs(2 * 3600));
    let refused = problem(app.client.post(app.url(&format!("{p}/accept"))).go().await, 409).await;
    assert!(refused["detail"].as_str().is_some_and(|d| d.contains("expired")));
    assert!(
        app.client
            .get(app.url(&p))
            .go()
            .await
            .text()
            .await
            .expect("text")
            .contains("expired")
    );
    let res = app
        .admin(Method::POST, "/admin/maintenance")
        .json(&json!({"action": "expire_quotes"}))
        .go()
        .await;
    assert_eq!(json_of(res).await["affected"], 1);
    let q = json_of(
        app.with_key(Method::GET, &format!("/v1/quotes/{qid}"), &t.sk)
            .go()
            .await,
    )
    .await;
    assert_eq!(q["status"], "expired");
    // The expiry is audited in the same transaction, as the janitor's.
    let entries = json_of(
        app.admin(
            Method::GET,
            &format!("/admin/audit?action=quote.expire&resource_id={qid}"),
        )
        .go()
        .await,
    )
    .await;
    let entries = entries["data"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(
        (entries[0]["actor_type"].as_str(), entries[0]["tenant_id"].as_str()),
        (Some("system"), Some(t.id.as_str()))
    );
    let avail = json_of(
        app.with_key(
            Method::GET,
            &format!("/v1/yachts/{y}/availability?from=2030-06-01&to=2030-08-01"),
            &t.sk,
        )
        .go()
        .await,
    )
    .await;
    assert_eq!(avail["booked"], json!([]));
}

async fn another_tenants_yacht_or_lead_cannot_be_quoted(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.tenant("A").await;
    let u = app.tenant("B").await;
    let my_yacht = yacht(&app, &t).await;
    let their_yacht = yacht(&app, &u).await;
    let my_lead = lead(&app, &t, "a@example.com", "2030-07-01", "2030-07-08").await;
    let their_lead = lead(&app, &u, "b@example.com", "2030-07-01", "2030-07-08").await;
    // A lead naming a yacht of another fleet is refused like one naming no yacht at all.
    for y in [&their_yacht, "yacht_01jd6c8m2f0000000000000000"] {
        let body = json!({"name": "X", "email": "x@example.com", "yacht_id": y, "consent": {"privacy_policy": true}});
        let p = problem(
            app.with_key(Method::POST, "/v1/leads", &t.sk).json(&body).go().await,
            422,
        )
        .await;
        assert_eq!(p["errors"][0]["pointer"], "/yacht_id");
    }
    let body =
        json!({"name": "X", "email": "x@example.com", "yacht_id": my_yacht, "consent": {"privacy_policy": true}});
    assert_eq!(
        app.with_key(Method::POST, "/v1/leads", &t.sk)
            .json(&body)
            .go()
            .await
            .status(),
        201
    );
    for (l, y) in [(&my_lead, &their_yacht), (&their_lead, &my_yacht)] {
        let p = problem(
            app.with_key(Method::POST, "/v1/quotes", &t.sk)
                .json(&json!({"lead_id": l, "yacht_id": y}))
                .go()
                .await,
            404,
        )
        .await;
        assert_eq!(p["type"], "urn:leadline:problem:not-found");
    }
    let q = quote(&app, &t, &my_lead, &my_yacht, json!({})).await;
    let qid = q["id"].as_str().expect("id");
    for (m, p) in [
        (Method::GET, format!("/v1/quotes/{qid}")),
        (Method::POST, format!("/v1/quotes/{qid}/send")),
        (Method::POST, format!("/v1/quotes/{qid}/cancel")),
    ] {
        problem(app.with_key(m, &p, &u.sk).go().await, 404).await;
    }
    assert_eq!(
        json_of(app.with_key(Method::GET, "/v1/quotes", &u.sk).go().await).await["data"],
        json!([])
    );
    // Bad requests: a night without a rate, too short, unknown extra.
    for (body, ptr) in [
        (
            json!({"lead_id": my_lead, "yacht_id": my_yacht, "charter_from": "2030-08-28", "charter_to": "2030-09-04"}),
            "/charter_from",
        ),
        (
            json!({"lead_id": my_lead, "yacht_id": my_yacht, "charter_from": "2030-07-01", "charter_to": "2030-07-02"}),
            "/charter_to",
        ),
        (
            json!({"lead_id": my_lead, "yacht_id": my_yacht, "extras": ["jacuzzi"]}),
            "/extras/0",
        ),
        (json!({"lead_id": "nope", "yacht_id": my_yacht}), "/lead_id"),
    ] {
        let p = problem(
            app.with_key(Method::POST, "/v1/quotes", &t.sk).json(&body).go().await,
            422,
        )
        .await;
        assert_eq!(p["errors"][0]["pointer"], ptr, "{p}");
    }
}

async fn set_status(app: &TestApp, t: &Tenant, status: &str) {
    let res = app
        .admin(Method::PATCH, &format!("/admin/tenants/{}", t.id))
        .json(&json!({"status": status}))
        .go()
        .await;
    assert_eq!(res.status(), 200);
}

/// A suspended tenant's quote page answers as an unknown quote, and its quotes
/// cannot be accepted or declined; the page sends headers that keep its token
/// private and forbid scripts and frames.
async fn a_suspended_tenants_quote_pages_stop(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.tenant("Suspended Sails").await;
    let y = yacht(&app, &t).await;
    let l = lead(&app, &t, "client@example.com", "2030-07-04", "2030-07-11").await;
    let q = quote(&app, &t, &l, &y, json!({})).await;
    let path = path_of(&send(&app, &t, q["id"].as_str().expect("id")).await);
    let res = app.client.get(app.url(&path)).go().await;
    assert_eq!(res.status(), 200);
    let h = res.headers();
    let csp = h
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(h.get("x-frame-options").map(|v| v.as_bytes()), Some(&b"DENY"[..]));
    assert_eq!(
        h.get("x-content-type-options").map(|v| v.as_bytes()),
        Some(&b"nosniff"[..])
    );
    assert_eq!(
        h.get("referrer-policy").map(|v| v.as_bytes()),
        Some(&b"no-referrer"[..])
    );

    set_status(&app, &t, "suspended").await;
    problem(app.client.get(app.url(&path)).go().await, 404).await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    for action in ["accept", "decline"] {
        problem(no_redirects.post(app.url(&format!("{path}/{action}"))).go().await, 404).await;
    }
    let got = json_of(app.admin(Method::GET, &format!("/admin/tenants/{}", t.id)).go().await).await;
    assert_eq!(got["status"], "suspended");
    set_status(&app, &t, "active").await;
    let res = app.client.get(app.url(&path)).go().await;
    assert_eq!(res.status(), 200, "back with the tenant");
    let html = res.text().await.expect("html");
    assert!(html.contains("action=\"/q/"), "still answerable");
}

/// Amounts beyond 10^13 minor units are refused where they enter, so pricing can
/// never overflow into a wrong (negative) total.
async fn amounts_beyond_the_maximum_are_refused(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.tenant("Big Numbers").await;
    let mut body = yacht_body();
    body["rates"][0]["weekly_rate"]["amount"] = json!(i64::MAX);
    body["extras"][1]["price"]["amount"] = json!(10_000_000_000_001i64);
    let p = problem(
        app.with_key(Method::POST, "/v1/yachts", &t.sk).json(&body).go().await,
        422,
    )
    .await;
    let pointers: Vec<&str> = p["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .filter_map(|e| e["pointer"].as_str())
        .collect();
    assert!(pointers.contains(&"/rates/0/weekly_rate"), "{p}");
    assert!(pointers.contains(&"/extras/1/price"), "{p}");
    let mut lead_body = common::lead_body("rich@example.com");
    lead_body["budget"]["amount"] = json!(i64::MAX);
    problem(
        app.with_key(Method::POST, "/v1/leads", &t.sk)
            .json(&lead_body)
            .go()
            .await,
        422,
    )
    .await;
    let y = yacht(&app, &t).await;
    let l = lead(&app, &t, "client@example.com", "2030-07-04", "2030-07-11").await;
    let res = app
        .with_key(Method::POST, "/v1/quotes", &t.sk)
        .json(&json!({"lead_id": l, "yacht_id": y, "delivery_fee": i64::MAX}))
        .go()
        .await;
    let p = problem(res, 422).await;
    assert_eq!(p["errors"][0]["pointer"], "/delivery_fee", "{p}");
}
