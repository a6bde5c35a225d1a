//! DESIGN §5 with real servers on loopback, on both backends: emails over SMTP,
//! signed webhooks, retries, dead letters, leases, erasure and the SSRF guard.

mod common;

use common::Go;

use common::receiver::Receiver;
use common::smtp::{SmtpServer, header, part};
use common::{Backend, TestApp, eventually, lead_body, problem};
use reqwest::Method;
use serde_json::{Value, json};

leadline_store::both_backends!(
    lead_emails_arrive_over_smtp_and_duplicates_get_no_second_acknowledgement,
    emails_without_smtp_are_written_as_files,
    webhooks_verify_with_standard_webhooks_during_rotation,
    a_receiver_failing_four_times_gets_the_event_on_attempt_five,
    an_always_failing_receiver_yields_one_dead_letter_and_replay_delivers,
    smtp_down_then_up_delivers_every_email_once,
    a_crashed_workers_message_is_delivered_after_its_lease,
    new_messages_are_handed_to_the_dispatcher_with_their_lease,
    without_polling_retries_and_replays_are_still_delivered_at_once,
    gone_disables_the_endpoint,
    erasure_reaches_mail_logs_and_pending_deliveries,
    webhook_endpoints_are_tenant_scoped_and_validated,
    tenant_templates_override_by_locale,
);

async fn tenant_templates_override_by_locale(b: Backend) {
    let smtp = SmtpServer::start().await;
    let app = TestApp::spawn_with(b, &[("LEADLINE_SMTP_URL", &smtp.url())]).await;
    let t = app.tenant("Aegean Blue").await;
    let bad = json!({"templates": {"lead_acknowledgement": {"el": {"subject": "{% if %}", "text": "x", "html": "x"}}}});
    let p = problem(
        app.with_key(Method::PATCH, "/v1/settings", &t.sk).json(&bad).go().await,
        422,
    )
    .await;
    assert_eq!(p["errors"][0]["pointer"], "/templates/lead_acknowledgement/el");
    let good = json!({"templates": {"lead_acknowledgement": {"el": {
        "subject": "Efharisto {{ lead.name }}", "text": "Geia sas {{ lead.name }}", "html": "<p>Geia sas {{ lead.name }}</p>"}}}});
    assert_eq!(
        app.with_key(Method::PATCH, "/v1/settings", &t.sk)
            .json(&good)
            .go()
            .await
            .status(),
        200
    );
    let mut greek = lead_body("eleni@example.com");
    greek["locale"] = json!("el-GR");
    greek["name"] = json!("Eleni");
    app.lead(&t, greek).await;
    app.lead(&t, lead_body("john@example.com")).await;
    let got = eventually("two acknowledgements", || async {
        Some(smtp.received()).filter(|m| m.len() >= 2)
    })
    .await;
    let el = got.iter().find(|m| m.to == ["eleni@example.com"]).expect("greek");
    assert_eq!(
        header(&el.data, "Subject").as_deref(),
        Some("Efharisto Eleni"),
        "the tenant's template for the language of el-GR"
    );
    assert!(part(&el.data, "text/plain").is_some_and(|t| t.contains("Geia sas Eleni")));
    let en = got.iter().find(|m| m.to == ["john@example.com"]).expect("english");
    assert!(
        header(&en.data, "Subject").is_some_and(|s| s.starts_with("We received your charter inquiry")),
        "the built-in template otherwise"
    );
}

const FAST_RETRIES: &[(&str, &str)] = &[
    ("LEADLINE_RETRY_BASE_DELAY", "20ms"),
    ("LEADLINE_RETRY_MAX_DELAY", "80ms"),
];

async fn json_of(res: reqwest::Response) -> Value {
    res.json().await.expect("json")
}

async fn endpoint(app: &TestApp, sk: &str, url: &str, events: &[&str]) -> (String, String) {
    let res = app
        .with_key(Method::POST, "/v1/webhook-endpoints", sk)
        .json(&json!({"url": url, "events": events}))
        .go()
        .await;
    assert_eq!(res.status(), 201);
    let v = json_of(res).await;
    (
        v["id"].as_str().expect("id").to_owned(),
        v["secret"].as_str().expect("secret").to_owned(),
    )
}

async fn mail_logs(app: &TestApp, sk: &str) -> Vec<Value> {
    json_of(app.with_key(Method::GET, "/v1/mail-logs?limit=200", sk).go().await).await["data"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn lead_emails_arrive_over_smtp_and_duplicates_get_no_second_acknowledgement(b: Backend) {
    let smtp = SmtpServer::start().await;
    let app = TestApp::spawn_with(
        b,
        &[
            ("LEADLINE_SMTP_URL", &smtp.url()),
            ("LEADLINE_MAIL_FROM", "Leadline <no-reply@leadline.example>"),
        ],
    )
    .await;
    let res = app
        .admin(Method::POST, "/admin/tenants")
        .json(&json!({"name": "Aegean Blue", "notification_emails": ["desk@aegean.example"], "reply_to": "sales@aegean.example"}))
        .go().await;
    let sk = json_of(res).await["secret_key"].as_str().expect("sk").to_owned();
    let mut body = lead_body("maria@example.com");
    body["name"] = json!("Maria <b>Bold</b> & Co");
    let res = app.with_key(Method::POST, "/v1/leads", &sk).json(&body).go().await;
    assert_eq!(res.status(), 201);
    let got = eventually("two emails", || async {
        Some(smtp.received()).filter(|m| m.len() >= 2)
    })
    .await;
    let ack = got
        .iter()
        .find(|m| m.to == ["maria@example.com"])
        .expect("acknowledgement to the client");
    let note = got
        .iter()
        .find(|m| m.to == ["desk@aegean.example"])
        .expect("notification to staff");
    assert!(header(&ack.data, "Subject").is_some_and(|s| s.contains("Aegean Blue")));
    assert!(header(&ack.data, "Reply-To").is_some_and(|s| s.contains("sales@aegean.example")));
    assert!(
        header(&ack.data, "From").is_some_and(|s| s.contains("no-reply@leadline.example") && s.contains("Aegean Blue"))
    );
    assert!(header(&ack.data, "Message-ID").is_some_and(|s| s.contains("msg_")));
    let html = part(&ack.data, "text/html").expect("an HTML part");
    let text = part(&ack.data, "text/plain").expect("a text part");
    assert!(
        html.contains("Maria &lt;b&gt;Bold&lt;") && html.contains("b&gt; &amp; Co"),
        "the name is escaped in HTML: {html}"
    );
    assert!(!html.contains("<b>Bold</b>"));
    assert!(
        text.contains("Maria <b>Bold</b> & Co"),
        "the text part keeps it as typed"
    );
    assert!(header(&note.data, "Subject").is_some_and(|s| s.starts_with("New lead:")));
    assert!(part(&note.data, "text/plain").is_some_and(|t| t.contains("maria@example.com")));
    // The same email and dates again: a duplicate, staff hear of it, the client gets nothing new.
    app.with_key(Method::POST, "/v1/leads", &sk).json(&body).go().await;
    eventually("every email sent", || async {
        let logs = mail_logs(&app, &sk).await;
        (logs.len() == 3 && logs.iter().all(|l| l["status"] == "sent")).then_some(())
    })
    .await;
    let got = smtp.received();
    assert_eq!(got.len(), 3);
    assert_eq!(
        got.iter().filter(|m| m.to == ["maria@example.com"]).count(),
        1,
        "no second acknowledgement"
    );
    let dup_note = got
        .iter()
        .rfind(|m| m.to == ["desk@aegean.example"])
        .expect("second notification");
    assert!(header(&dup_note.data, "Subject").is_some_and(|s| s.contains("repeat inquiry")));
    // The log shows recipients redacted.
    let logs = mail_logs(&app, &sk).await;
    assert!(
        logs.iter()
            .any(|l| l["recipient"] == "m***@example.com" && l["kind"] == "lead_acknowledgement")
    );
    assert!(!serde_json::to_string(&logs).expect("json").contains("maria@"));
}

async fn emails_without_smtp_are_written_as_files(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.tenant("Aegean Blue").await;
    let lead = app.lead(&t, lead_body("maria@example.com")).await;
    let lead_id = lead["id"].as_str().expect("id").to_owned();
    let files = eventually("an .eml file", || async {
        let files = app.lead_mail_files(&lead_id);
        (!files.is_empty()).then_some(files)
    })
    .await;
    let text = std::fs::read_to_string(&files[0]).expect("read");
    assert!(text.contains("To: maria@example.com"));
    let name = files[0].file_name().expect("name").to_string_lossy().into_owned();
    assert!(
        name.starts_with(&format!("{lead_id}.msg_")) && name.ends_with(".eml"),
        "{name}"
    );
    let day = files[0].parent().and_then(|p| p.file_name()).expect("folder");
    assert_eq!(
        day.to_string_lossy(),
        lead["created_at"]
            .as_str()
            .and_then(|t| t.get(..10))
            .expect("created_at"),
        "in the folder of the lead's day"
    );
    // Recorded as sent only once the files were flushed.
    common::drain_outbox(&app).await;
    let syncs = app.metric("leadline_mail_file_syncs_total").await;
    assert!(
        syncs >= 1.0,
        "the mail folder was synced before the delivery was recorded"
    );
}

async fn webhooks_verify_with_standard_webhooks_during_rotation(b: Backend) {
    let rx = Receiver::start(&[], 200).await;
    let app = TestApp::spawn(b).await;
    let t = app.tenant("Aegean Blue").await;
    let (id, secret) = endpoint(&app, &t.sk, &rx.url, &["lead.created", "lead.updated"]).await;
    assert!(secret.starts_with("whsec_"));
    let lead = app.lead(&t, lead_body("maria@example.com")).await;
    let first = eventually("lead.created", || async { rx.received().first().cloned() }).await;
    standardwebhooks::Webhook::new(&secret)
        .expect("secret")
        .verify(first.body.as_bytes(), &first.headers)
        .expect("a valid signature");
    let event: Value = serde_json::from_str(&first.body).expect("json");
    assert_eq!(event["type"], "lead.created");
    assert_eq!(event["data"]["id"], lead["id"]);
    assert!(first.headers["webhook-id"].to_str().expect("ascii").starts_with("msg_"));
    // Rotation: for 24 h both secrets sign, so receivers on either verify.
    let res = app
        .with_key(
            Method::POST,
            &format!("/v1/webhook-endpoints/{id}/rotate-secret"),
            &t.sk,
        )
        .go()
        .await;
    assert_eq!(res.status(), 200);
    let new_secret = json_of(res).await["secret"].as_str().expect("secret").to_owned();
    assert_ne!(new_secret, secret);
    let res = app
        .with_key(
            Method::PATCH,
            &format!("/v1/leads/{}", lead["id"].as_str().expect("id")),
            &t.sk,
        )
        .json(&json!({"status": "contacted"}))
        .go()
        .await;
    assert_eq!(res.status(), 200);
    let second = eventually("lead.updated", || async { rx.received().get(1).cloned() }).await;
    let sigs = second.headers["webhook-signature"].to_str().expect("ascii").to_owned();
    assert_eq!(sigs.split(' ').count(), 2, "both signatures during rotation: {sigs}");
    for s in [&secret, &new_secret] {
        standardwebhooks::Webhook::new(s)
            .expect("secret")
            .verify(second.body.as_bytes(), &second.headers)
            .expect("verifies");
    }
    let wrong = leadline_core::webhook::new_secret();
    assert!(
        standardwebhooks::Webhook::new(&wrong)
            .expect("secret")
            .verify(second.body.as_bytes(), &second.headers)
            .is_err()
    );
    // The test event reaches the endpoint too.
    let res = app
        .with_key(Method::POST, &format!("/v1/webhook-endpoints/{id}/test"), &t.sk)
        .go()
        .await;
    assert_eq!(res.status(), 202);
    let test = eventually("webhook.test", || async { rx.received().get(2).cloned() }).await;
    assert!(test.body.contains("webhook.test"));
}

async fn a_receiver_failing_four_times_gets_the_event_on_attempt_five(b: Backend) {
    let rx = Receiver::start(&[500, 503, 500, 429], 200).await;
    let app = TestApp::spawn_with(b, FAST_RETRIES).await;
    let t = app.tenant("Aegean Blue").await;
    endpoint(&app, &t.sk, &rx.url, &["lead.created"]).await;
    app.lead(&t, lead_body("maria@example.com")).await;
    let all = eventually("five attempts", || async {
        Some(rx.received()).filter(|r| r.len() >= 5)
    })
    .await;
    let ids: Vec<&str> = all
        .iter()
        .filter_map(|d| d.headers["webhook-id"].to_str().ok())
        .collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "the same webhook-id on every attempt");
    let store = leadline_store::open(&app.db_url()).await.expect("open");
    let msg_id = leadline_core::id::MsgId::parse(ids[0]).expect("id");
    let msg = eventually("delivered", || async {
        store
            .get_message(&msg_id)
            .await
            .ok()
            .flatten()
            .filter(|m| m.status == leadline_core::delivery::MessageStatus::Delivered)
    })
    .await;
    assert_eq!(msg.attempts, 5);
    common::drain_outbox(&app).await;
    assert_eq!(rx.received().len(), 5, "nothing after success");
    let dead = json_of(app.with_key(Method::GET, "/v1/dead-letters", &t.sk).go().await).await;
    assert_eq!(dead["data"], json!([]));
    store.close().await;
}

async fn an_always_failing_receiver_yields_one_dead_letter_and_replay_delivers(b: Backend) {
    let rx = Receiver::start(&[], 500).await;
    let app = TestApp::spawn_with(b, FAST_RETRIES).await;
    let t = app.tenant("Aegean Blue").await;
    endpoint(&app, &t.sk, &rx.url, &["lead.created"]).await;
    app.lead(&t, lead_body("maria@example.com")).await;
    let dead = eventually("a dead letter", || async {
        let v = json_of(
            app.with_key(Method::GET, "/v1/dead-letters?kind=webhook", &t.sk)
                .send()
                .await
                .ok()?,
        )
        .await;
        v["data"].as_array().filter(|d| !d.is_empty()).cloned()
    })
    .await;
    assert_eq!(dead.len(), 1);
    let dl = &dead[0];
    assert_eq!(dl["attempts"].as_array().map(Vec::len), Some(5));
    assert!(
        dl["attempts"]
            .as_array()
            .expect("attempts")
            .iter()
            .all(|a| a["success"] == false && a["code"] == 500)
    );
    assert_eq!(dl["payload"]["event_type"], "lead.created");
    assert_eq!(rx.received().len(), 5);
    // The operator sees it too; another tenant does not.
    let admin = json_of(
        app.admin(Method::GET, &format!("/admin/dead-letters/{}", t.id))
            .go()
            .await,
    )
    .await;
    assert_eq!(admin["data"][0]["id"], dl["id"]);
    let u = app.tenant("Other").await;
    let dl_id = dl["id"].as_str().expect("id");
    problem(
        app.with_key(Method::POST, &format!("/v1/dead-letters/{dl_id}/replay"), &u.sk)
            .go()
            .await,
        404,
    )
    .await;
    assert_eq!(
        json_of(app.with_key(Method::GET, "/v1/dead-letters", &u.sk).go().await).await["data"],
        json!([])
    );
    // Replay once the receiver works again: delivered, with the same webhook-id.
    rx.set_fallback(200);
    let res = app
        .with_key(Method::POST, &format!("/v1/dead-letters/{dl_id}/replay"), &t.sk)
        .go()
        .await;
    assert_eq!(res.status(), 202);
    let all = eventually("the replayed delivery", || async {
        Some(rx.received()).filter(|r| r.len() >= 6)
    })
    .await;
    assert_eq!(all[5].headers["webhook-id"], all[0].headers["webhook-id"]);
    problem(
        app.with_key(Method::POST, &format!("/v1/dead-letters/{dl_id}/replay"), &t.sk)
            .go()
            .await,
        409,
    )
    .await;
    let m: String = app
        .admin(Method::GET, "/admin/metrics")
        .go()
        .await
        .text()
        .await
        .expect("text");
    assert!(
        m.lines()
            .any(|l| l.starts_with("leadline_dead_letters_total ") && !l.ends_with(" 0")),
        "dead letters counted"
    );
}

async fn smtp_down_then_up_delivers_every_email_once(b: Backend) {
    // A port with nothing behind it, for now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let url = format!("smtp://127.0.0.1:{port}");
    let app = TestApp::spawn_with(
        b,
        &[
            ("LEADLINE_SMTP_URL", &url),
            ("LEADLINE_RETRY_BASE_DELAY", "20ms"),
            ("LEADLINE_RETRY_MAX_DELAY", "100ms"),
            ("LEADLINE_RETRY_MAX_ATTEMPTS", "100"),
        ],
    )
    .await;
    let t = app.tenant("Aegean Blue").await;
    for i in 0..5 {
        app.lead(&t, lead_body(&format!("client{i}@example.com"))).await;
    }
    eventually("failed attempts while the server is down", || async {
        let logs = mail_logs(&app, &t.sk).await;
        (logs.len() == 5
            && logs
                .iter()
                .all(|l| l["attempts"].as_u64() >= Some(2) && l["status"] == "queued"))
        .then_some(())
    })
    .await;
    let smtp = SmtpServer::start_on(port).await;
    eventually("every email sent", || async {
        let logs = mail_logs(&app, &t.sk).await;
        logs.iter().all(|l| l["status"] == "sent").then_some(())
    })
    .await;
    common::drain_outbox(&app).await;
    let got = smtp.received();
    assert_eq!(got.len(), 5, "each email once");
    let mut to: Vec<String> = got.iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    assert_eq!(to, (0..5).map(|i| format!("client{i}@example.com")).collect::<Vec<_>>());
}

/// The messages of a captured lead are leased to the server's dispatcher in the
/// transaction that stores them and handed to it in memory: no other worker can
/// claim them meanwhile, and they are delivered without a claim.
async fn new_messages_are_handed_to_the_dispatcher_with_their_lease(b: Backend) {
    let rx = Receiver::start(&[], 200).await;
    let app = TestApp::spawn(b).await;
    let t = app.tenant("Aegean Blue").await;
    endpoint(&app, &t.sk, &rx.url, &["lead.created"]).await;
    let before = app.metric("leadline_outbox_handoffs_total").await;
    let lead = app.lead(&t, lead_body("maria@example.com")).await;
    let id = lead["id"].as_str().expect("id");
    // Leased when stored: another worker's claim finds nothing of this lead.
    let store = leadline_store::open(&app.db_url()).await.expect("open");
    let now = chrono::Utc::now();
    let claimed = store
        .claim_due("another-worker", now, now + chrono::Duration::minutes(1), 100)
        .await
        .expect("claim");
    assert!(
        claimed
            .iter()
            .all(|m| m.lead_id.as_ref().is_none_or(|l| l.as_str() != id)),
        "{claimed:?}"
    );
    let got = eventually("lead.created", || async { rx.received().first().cloned() }).await;
    let event: Value = serde_json::from_str(&got.body).expect("json");
    assert_eq!(event["data"]["id"], lead["id"]);
    assert!(app.metric("leadline_outbox_handoffs_total").await > before);
    let delivered = eventually("recorded as delivered", || async {
        let rows = app
            .raw_text(&format!(
                "SELECT status FROM outbox WHERE lead_id = '{id}' AND kind = 'webhook' AND locked_by IS NULL"
            ))
            .await;
        rows.first().filter(|s| *s == "delivered").cloned()
    })
    .await;
    assert_eq!(delivered, "delivered");
    assert_eq!(rx.received().len(), 1);
    store.close().await;
}

/// The dispatcher asks the store for due messages when something asks for it, not
/// after every batch (new messages are handed over): with a poll interval of an
/// hour, a retry that comes due and a replayed dead letter are still delivered
/// within moments.
async fn without_polling_retries_and_replays_are_still_delivered_at_once(b: Backend) {
    let rx = Receiver::start(&[500, 500], 200).await;
    let mut settings = FAST_RETRIES.to_vec();
    settings.extend([("LEADLINE_WORKER_POLL", "1h"), ("LEADLINE_RETRY_MAX_ATTEMPTS", "2")]);
    let app = TestApp::spawn_with(b, &settings).await;
    let t = app.tenant("Aegean Blue").await;
    endpoint(&app, &t.sk, &rx.url, &["lead.created"]).await;
    app.lead(&t, lead_body("maria@example.com")).await;
    // Handed over, failed, retried when due: a dead letter after two attempts.
    let dl = eventually("a dead letter", || async {
        json_of(app.with_key(Method::GET, "/v1/dead-letters", &t.sk).go().await).await["data"]
            .as_array()
            .and_then(|a| a.first().cloned())
    })
    .await;
    assert_eq!(rx.received().len(), 2);
    let dl_id = dl["id"].as_str().expect("id");
    let res = app
        .with_key(Method::POST, &format!("/v1/dead-letters/{dl_id}/replay"), &t.sk)
        .go()
        .await;
    assert_eq!(res.status(), 202);
    let all = eventually("the replayed delivery", || async {
        Some(rx.received()).filter(|r| r.len() >= 3)
    })
    .await;
    assert_eq!(all[2].headers["webhook-id"], all[0].headers["webhook-id"]);
}

async fn a_crashed_workers_message_is_delivered_after_its_lease(b: Backend) {
    use leadline_core::change::{Change, ChangeSet};
    use leadline_core::delivery::{MessageStatus, OutboxMessage, Payload, WebhookPayload};
    let rx = Receiver::start(&[], 200).await;
    let mut app = TestApp::spawn(b).await;
    let t = app.tenant("Aegean Blue").await;
    let (ep, _) = endpoint(&app, &t.sk, &rx.url, &["lead.created"]).await;
    app.stop().await;
    // A message claimed by a worker that then died mid-delivery.
    let store = leadline_store::open(&app.db_url()).await.expect("open");
    let tenant = leadline_core::id::TenantId::parse(&t.id).expect("id");
    let payload = WebhookPayload {
        endpoint_id: leadline_core::id::WebhookEndpointId::parse(&ep).expect("id"),
        event_type: "lead.created".into(),
        body: "{\"type\":\"lead.created\",\"data\":{}}".into(),
    };
    let now = chrono::Utc::now();
    let msg = OutboxMessage::new(&tenant, None, Payload::Webhook(payload), now);
    store
        .commit(ChangeSet::one(Change::InsertOutbox(msg.clone())))
        .await
        .expect("queue");
    let lease = chrono::Duration::hours(1);
    let claimed = store
        .claim_due("crashed-worker", chrono::Utc::now(), chrono::Utc::now() + lease, 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 1);
    // A new process starts; no worker may take the message before the lease runs
    // out...
    app.restart().await;
    let probe = store
        .claim_due("probe", chrono::Utc::now(), chrono::Utc::now() + lease, 10)
        .await
        .expect("claim");
    assert!(probe.is_empty() && rx.received().is_empty(), "the lease holds");
    // ...and the new process delivers it once the lease has run out.
    leadline_server::clock::test::advance((lease + chrono::Duration::minutes(1)).to_std().expect("positive"));
    let got = eventually("delivery after the lease", || async { rx.received().first().cloned() }).await;
    assert_eq!(got.headers["webhook-id"], msg.id.as_str());
    let m = eventually("delivered", || async {
        store
            .get_message(&msg.id)
            .await
            .ok()
            .flatten()
            .filter(|m| m.status == MessageStatus::Delivered)
    })
    .await;
    assert_eq!(m.attempts, 1);
    // The crashed worker's late report is refused: it no longer holds the message.
    let late = leadline_core::delivery::AttemptReport {
        message_id: msg.id.clone(),
        worker: "crashed-worker".into(),
        attempt: leadline_core::delivery::Attempt {
            attempt: 1,
            at: chrono::Utc::now(),
            success: false,
            code: None,
            detail: None,
            latency_ms: 1,
        },
        retry_at: None,
        disable_endpoint: false,
    };
    assert!(!store.report_attempt(&late).await.expect("report"));
    assert_eq!(rx.received().len(), 1);
    store.close().await;
}

async fn gone_disables_the_endpoint(b: Backend) {
    let rx = Receiver::start(&[410], 200).await;
    let app = TestApp::spawn_with(b, FAST_RETRIES).await;
    let t = app.tenant("Aegean Blue").await;
    let (id, _) = endpoint(&app, &t.sk, &rx.url, &["lead.created"]).await;
    app.lead(&t, lead_body("maria@example.com")).await;
    let ep = eventually("the endpoint disabled", || async {
        let v = json_of(
            app.with_key(Method::GET, &format!("/v1/webhook-endpoints/{id}"), &t.sk)
                .send()
                .await
                .ok()?,
        )
        .await;
        (v["enabled"] == false).then_some(v)
    })
    .await;
    assert!(ep["disabled_reason"].as_str().is_some_and(|r| r.contains("410")));
    assert_eq!(rx.received().len(), 1, "no retry after 410");
    app.lead(&t, lead_body("nikos@example.com")).await;
    common::drain_outbox(&app).await;
    assert_eq!(rx.received().len(), 1, "a disabled endpoint gets nothing");
    let res = app
        .with_key(Method::PATCH, &format!("/v1/webhook-endpoints/{id}"), &t.sk)
        .json(&json!({"enabled": true}))
        .go()
        .await;
    assert_eq!(json_of(res).await["disabled_reason"], Value::Null);
}

async fn erasure_reaches_mail_logs_and_pending_deliveries(b: Backend) {
    use leadline_core::delivery::{MessageStatus, Payload};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let rx = Receiver::start(&[], 200).await;
    let app = TestApp::spawn_with(
        b,
        &[
            ("LEADLINE_SMTP_URL", &format!("smtp://127.0.0.1:{port}")),
            ("LEADLINE_RETRY_BASE_DELAY", "1h"),
            ("LEADLINE_RETRY_MAX_DELAY", "2h"),
        ],
    )
    .await;
    let t = app.tenant("Aegean Blue").await;
    endpoint(&app, &t.sk, &rx.url, &["lead.created", "lead.deleted"]).await;
    let lead = app.lead(&t, lead_body("maria@example.com")).await;
    let id = lead["id"].as_str().expect("id");
    eventually("the acknowledgement failed once and waits", || async {
        mail_logs(&app, &t.sk)
            .await
            .first()
            .filter(|l| l["attempts"] == 1 && l["status"] == "queued")
            .map(|_| ())
    })
    .await;
    eventually("lead.created delivered", || async { rx.received().first().cloned() }).await;
    let res = app
        .with_key(Method::DELETE, &format!("/v1/leads/{id}"), &t.sk)
        .go()
        .await;
    assert_eq!(res.status(), 204);
    let logs = mail_logs(&app, &t.sk).await;
    assert_eq!(logs[0]["recipient"], "[erased]");
    assert_eq!(logs[0]["subject"], "[erased]");
    assert_eq!(logs[0]["status"], "cancelled");
    let deleted = eventually("lead.deleted delivered", || async { rx.received().get(1).cloned() }).await;
    assert!(deleted.body.contains("lead.deleted") && deleted.body.contains(id));
    assert!(!deleted.body.contains("maria"), "the event holds no personal data");
    // Straight from the store: the payloads hold nothing of the lead any more.
    let store = leadline_store::open(&app.db_url()).await.expect("open");
    let rows = app.raw_text("SELECT id FROM outbox").await;
    let mut erased = 0;
    for r in rows {
        let m = store
            .get_message(&leadline_core::id::MsgId::parse(&r).expect("id"))
            .await
            .expect("get")
            .expect("row");
        let text = format!("{:?}", m.payload);
        if text.contains("lead.deleted") {
            continue;
        }
        assert!(!text.contains("maria"), "{text}");
        assert_eq!(m.payload, Payload::Erased);
        assert!(m.status != MessageStatus::Pending);
        erased += 1;
    }
    assert!(erased >= 2, "the acknowledgement and lead.created were erased");
    store.close().await;
}

async fn webhook_endpoints_are_tenant_scoped_and_validated(b: Backend) {
    let app = TestApp::spawn(b).await;
    let t = app.tenant("A").await;
    let u = app.tenant("B").await;
    let (id, _) = endpoint(&app, &t.sk, "http://127.0.0.1:9/hook", &["*"]).await;
    let path = format!("/v1/webhook-endpoints/{id}");
    for (m, p) in [
        (Method::GET, path.clone()),
        (Method::PATCH, path.clone()),
        (Method::DELETE, path.clone()),
        (Method::POST, format!("{path}/rotate-secret")),
        (Method::POST, format!("{path}/test")),
    ] {
        let res = app.with_key(m.clone(), &p, &u.sk).json(&json!({})).go().await;
        problem(res, 404).await;
        let res = app.with_key(m, &p, &t.pk).json(&json!({})).go().await;
        problem(res, 403).await;
    }
    let list = json_of(app.with_key(Method::GET, "/v1/webhook-endpoints", &u.sk).go().await).await;
    assert_eq!(list["data"], json!([]));
    let mine = json_of(app.with_key(Method::GET, "/v1/webhook-endpoints", &t.sk).go().await).await;
    assert_eq!(mine["data"][0]["id"], id.as_str());
    assert!(
        mine["data"][0].get("secret").is_none(),
        "the secret is never shown again"
    );
    for bad in [
        json!({"url": "https://a.example", "events": ["lead.exploded"]}),
        json!({"url": "ftp://a.example", "events": ["*"]}),
        json!({"url": "https://a.example", "events": []}),
    ] {
        problem(
            app.with_key(Method::POST, "/v1/webhook-endpoints", &t.sk)
                .json(&bad)
                .go()
                .await,
            422,
        )
        .await;
    }
    let res = app.with_key(Method::DELETE, &path, &t.sk).go().await;
    assert_eq!(res.status(), 204);
    problem(app.with_key(Method::GET, &path, &t.sk).go().await, 404).await;

    // With the production defaults, private and plain-HTTP targets are refused.
    let strict = TestApp::spawn_with(
        b,
        &[
            ("LEADLINE_ALLOW_PRIVATE_WEBHOOK_TARGETS", "false"),
            ("LEADLINE_ALLOW_INSECURE_WEBHOOKS", "false"),
        ],
    )
    .await;
    let s = strict.tenant("Strict").await;
    for url in [
        "https://127.0.0.1/hook",
        "https://localhost:8443/hook",
        "https://169.254.169.254/latest",
        "https://10.0.0.5/hook",
        "https://[::1]/hook",
    ] {
        let p = problem(
            strict
                .with_key(Method::POST, "/v1/webhook-endpoints", &s.sk)
                .json(&json!({"url": url, "events": ["*"]}))
                .go()
                .await,
            422,
        )
        .await;
        assert_eq!(p["errors"][0]["pointer"], "/url", "{url}");
    }
    let p = problem(
        strict
            .with_key(Method::POST, "/v1/webhook-endpoints", &s.sk)
            .json(&json!({"url": "http://93.184.216.34/hook", "events": ["*"]}))
            .go()
            .await,
        422,
    )
    .await;
    assert!(p["errors"][0]["detail"].as_str().is_some_and(|d| d.contains("https")));
    let ok = strict
        .with_key(Method::POST, "/v1/webhook-endpoints", &s.sk)
        .json(&json!({"url": "https://93.184.216.34/hook", "events": ["*"]}))
        .go()
        .await;
    assert_eq!(ok.status(), 201, "a public address is accepted");
}

/// A webhook receiver that accepts the connection and never answers holds one
/// dispatcher slot for the webhook timeout, and delays no other tenant's delivery.
async fn a_hanging_receiver_delays_no_one_else(b: Backend) {
    let app = TestApp::spawn_with(b, &[("LEADLINE_WEBHOOK_TIMEOUT", "6s")]).await;
    // Accepts and holds every connection, never a byte back.
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hang_url = format!("http://{}/hook", hang.local_addr().expect("addr"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hang.accept().await {
            held.push(s);
        }
    });
    let good = Receiver::start(&[], 200).await;
    let slow = app.tenant("Slow Sails").await;
    let fast = app.tenant("Fast Sails").await;
    endpoint(&app, &slow.sk, &hang_url, &["lead.created"]).await;
    endpoint(&app, &fast.sk, &good.url, &["lead.created"]).await;
    app.lead(&slow, lead_body("slow@example.com")).await;
    eventually("the hanging delivery under way", || async {
        let in_flight = app
            .raw_text("SELECT id FROM outbox WHERE kind = 'webhook' AND status = 'pending' AND locked_by IS NOT NULL")
            .await;
        (!in_flight.is_empty()).then_some(())
    })
    .await;
    let sent = std::time::Instant::now();
    app.lead(&fast, lead_body("fast@example.com")).await;
    common::eventually("the other tenant's webhook", || async {
        (!good.received().is_empty()).then_some(())
    })
    .await;
    let took = sent.elapsed();
    assert!(
        took < std::time::Duration::from_secs(3),
        "another tenant's delivery waited {took:?} behind a receiver that never answers"
    );
}

leadline_store::both_backends!(a_hanging_receiver_delays_no_one_else);

/// A mail server that accepts the connection and never greets holds each email's
/// slot for `LEADLINE_SMTP_TIMEOUT`, then the attempt fails (to be retried); the
/// webhooks of the same leads are delivered meanwhile.
async fn a_hanging_mail_server_holds_a_slot_for_its_timeout_only(b: Backend) {
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("smtp://{}", hang.local_addr().expect("addr"));
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hang.accept().await {
            held.push(s);
        }
    });
    let app = TestApp::spawn_with(
        b,
        &[
            ("LEADLINE_SMTP_URL", &url),
            ("LEADLINE_SMTP_TIMEOUT", "2s"),
            ("LEADLINE_RETRY_BASE_DELAY", "1h"),
        ],
    )
    .await;
    let good = Receiver::start(&[], 200).await;
    let t = app.tenant("Quiet Harbour").await;
    endpoint(&app, &t.sk, &good.url, &["lead.created"]).await;
    let sent = std::time::Instant::now();
    app.lead(&t, lead_body("hang@example.com")).await;
    eventually("the webhook", || async { (!good.received().is_empty()).then_some(()) }).await;
    assert!(
        sent.elapsed() < std::time::Duration::from_millis(1500),
        "the webhook waited {:?} behind a mail server that never answers",
        sent.elapsed()
    );
    let logs = eventually("the email attempt failed", || async {
        let logs = mail_logs(&app, &t.sk).await;
        (!logs.is_empty() && logs.iter().all(|l| l["attempts"].as_u64() >= Some(1))).then_some(logs)
    })
    .await;
    let took = sent.elapsed();
    assert!(
        took >= std::time::Duration::from_secs(2) && took < std::time::Duration::from_secs(6),
        "the attempt ended after the 2 s timeout: {took:?}"
    );
    assert!(logs.iter().all(|l| l["status"] == "queued"), "retried later: {logs:?}");
}

leadline_store::both_backends!(a_hanging_mail_server_holds_a_slot_for_its_timeout_only);

/// A tenant's template cannot run away: one that takes too many steps or writes
/// too much is refused when saved (422 naming the limit); one that fails only on
/// some lead falls back to the built-in template for that lead.
async fn runaway_templates_are_refused_and_failures_fall_back(b: Backend) {
    let smtp = SmtpServer::start().await;
    let app = TestApp::spawn_with(b, &[("LEADLINE_SMTP_URL", &smtp.url())]).await;
    let t = app.tenant("Template Limits").await;
    for (text, limit) in [
        (
            "{% for i in range(1000) %}{% for j in range(1000) %}x{% endfor %}{% endfor %}",
            "steps",
        ),
        ("{% for c in lead.message %}{{ lead.message }}{% endfor %}", ""),
    ] {
        let body = json!({"templates": {"lead_acknowledgement": {"en": {"subject": "s", "text": text, "html": "h"}}}});
        let p = problem(
            app.with_key(Method::PATCH, "/v1/settings", &t.sk)
                .json(&body)
                .go()
                .await,
            422,
        )
        .await;
        let detail = p["errors"][0]["detail"].as_str().unwrap_or_default().to_owned();
        assert!(
            detail.contains(limit) && (detail.contains("steps") || detail.contains("KiB")),
            "{p}"
        );
    }
    // Fails only for one address: saved, and that lead gets the built-in text.
    let fragile = json!({"templates": {"lead_acknowledgement": {"en": {
        "subject": "Thanks {{ lead.name }}",
        "text": "{% if lead.email == 'odd@example.com' %}{{ lead.name + 1 }}{% endif %}Custom thanks",
        "html": "<p>Custom thanks</p>"}}}});
    let res = app
        .with_key(Method::PATCH, "/v1/settings", &t.sk)
        .json(&fragile)
        .go()
        .await;
    assert_eq!(res.status(), 200);
    let odd = lead_body("odd@example.com");
    app.lead(&t, odd).await;
    app.lead(&t, lead_body("even@example.com")).await;
    let got = eventually("two acknowledgements", || async {
        Some(smtp.received()).filter(|m| m.len() >= 2)
    })
    .await;
    let odd = got.iter().find(|m| m.to == ["odd@example.com"]).expect("odd");
    assert!(
        part(&odd.data, "text/plain").is_some_and(|t| t.contains("Thank you for your inquiry")),
        "the built-in template"
    );
    let even = got.iter().find(|m| m.to == ["even@example.com"]).expect("even");
    assert!(part(&even.data, "text/plain").is_some_and(|t| t.contains("Custom thanks")));
}

leadline_store::both_backends!(runaway_templates_are_refused_and_failures_fall_back);
