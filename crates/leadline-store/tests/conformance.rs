//! The Store conformance suite: every operation, the same expectations, on SQLite
//! and on PostgreSQL.

use std::sync::Arc;

use chrono::{Duration, SubsecRound, Utc};
use leadline_core::api_key::{self, KeyKind};
use leadline_core::change::{Change, ChangeSet, Cleanup};
use leadline_core::id::{ApiKeyId, LeadId, TenantId};
use leadline_core::lead::{self, Lead, LeadFilter, LeadStatus, NewLeadRequest};
use leadline_core::page::PageRequest;
use leadline_core::tenant::{NewTenantRequest, Tenant, TenantStatus};
use leadline_store::testing::TestDb;
use leadline_store::{Backend, Store, StoreError};

fn now() -> chrono::DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

async fn open(b: Backend) -> (TestDb, Arc<dyn Store>) {
    let db = TestDb::create(b).await;
    let store = leadline_store::open(&db.url).await.expect("open");
    store.migrate().await.expect("migrate");
    store.migrate().await.expect("migrating twice is a no-op");
    (db, store)
}

fn tenant(name: &str) -> Tenant {
    NewTenantRequest {
        name: name.into(),
        slug: None,
        settings: Default::default(),
    }
    .into_tenant(now())
    .expect("valid")
}

fn new_lead(t: &TenantId, email: &str) -> Lead {
    let body = serde_json::json!({
        "name": "Maria Papadopoulos", "email": email, "phone": "+30 694 123 4567",
        "charter_from": "2099-07-10", "charter_to": "2099-07-17", "guests": {"adults": 2, "children": 1},
        "budget": {"amount": 100, "currency": "EUR"}, "utm": {"source": "x"}, "yacht_type": "gulet",
        "consent": {"privacy_policy": true, "marketing": true}
    });
    let req: NewLeadRequest = serde_json::from_value(body).expect("json");
    req.validate(t, now()).expect("valid")
}

/// Commits one cleanup; how many rows it deleted.
async fn clean(s: &Arc<dyn Store>, c: leadline_core::change::Cleanup) -> u64 {
    s.commit(ChangeSet::one(Change::Cleanup(c)))
        .await
        .expect("cleanup")
        .cleaned
}

fn page(limit: u32) -> PageRequest {
    PageRequest { after: None, limit }
}

leadline_store::both_backends!(
    tenants_round_trip_and_slugs_are_unique,
    keys_are_found_by_hash_and_revoked,
    leads_round_trip_exactly,
    lead_reads_are_scoped_to_the_tenant,
    updates_detect_concurrent_changes,
    a_failed_change_set_commits_nothing,
    concurrent_identical_leads_have_one_first,
    readiness_reports_migrations,
    an_edited_applied_migration_is_refused_and_an_old_history_is_adopted,
    idempotency_claims,
    idempotency_claims_have_holders,
    a_lone_servers_claim_is_written_with_its_outcome,
    audit_entries_list_and_filter,
    cleanups_delete_exactly_what_is_past_retention,
    job_leases_have_one_holder,
    dead_letter_and_delivery_cleanups_respect_their_cutoffs,
    batched_reports_record_what_the_worker_holds,
    a_batch_of_reports_records_attempts_mail_logs_and_dead_letters,
    messages_leased_at_creation_wait_for_their_lease,
);

/// A message inserted with a lease (the server leases the messages it creates to
/// its own dispatcher in the same transaction) is stored with it: no other worker
/// claims it while the lease runs, its holder's report is recorded, and once the
/// lease has run out (its holder stopped before delivering) any worker claims it.
async fn messages_leased_at_creation_wait_for_their_lease(b: Backend) {
    use leadline_core::delivery::{Attempt, AttemptReport, MessageStatus, OutboxMessage, Payload};
    let (_db, s) = open(b).await;
    let t = tenant("Leases");
    s.commit(ChangeSet::one(Change::InsertTenant(t.clone())))
        .await
        .expect("insert");
    let now = now();
    let leased = |worker: &str| {
        let mut m = OutboxMessage::new(&t.id, None, Payload::Erased, now);
        m.locked_by = Some(worker.into());
        m.locked_until = Some(now + Duration::minutes(1));
        m
    };
    let (delivered, abandoned) = (leased("w1"), leased("w1"));
    let free = OutboxMessage::new(&t.id, None, Payload::Erased, now);
    let mut cs = ChangeSet::new();
    for m in [&delivered, &abandoned, &free] {
        cs.push(Change::InsertOutbox(m.clone()));
    }
    s.commit(cs).await.expect("queue");
    let stored = s.get_message(&delivered.id).await.expect("get").expect("stored");
    assert_eq!(stored.locked_by.as_deref(), Some("w1"));
    assert_eq!(stored.locked_until, delivered.locked_until);

    let claimed = s
        .claim_due("w2", now, now + Duration::minutes(1), 10)
        .await
        .expect("claim");
    let ids: Vec<_> = claimed.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids, vec![free.id.clone()], "only the message no one holds");

    let done = s
        .report_attempts(vec![AttemptReport {
            message_id: delivered.id.clone(),
            worker: "w1".into(),
            attempt: Attempt {
                attempt: 1,
                at: now,
                success: true,
                code: None,
                detail: None,
                latency_ms: 1,
            },
            retry_at: None,
            disable_endpoint: false,
        }])
        .await
        .expect("report");
    assert_eq!(done, vec![true], "the holder's report is recorded");
    assert_eq!(
        s.get_message(&delivered.id).await.expect("get").map(|m| m.status),
        Some(MessageStatus::Delivered)
    );

    let later = now + Duration::minutes(2);
    let claimed = s
        .claim_due("w2", later, later + Duration::minutes(1), 10)
        .await
        .expect("claim");
    let mut ids: Vec<_> = claimed.iter().map(|m| m.id.to_string()).collect();
    ids.sort();
    let mut expected = vec![abandoned.id.to_string(), free.id.to_string()];
    expected.sort();
    // w2's own lease of the free message ran out too; the delivered one is done.
    assert_eq!(ids, expected, "claimed once its lease ran out");
}

/// `report_attempts` records each message its worker holds, says which it did, and
/// leaves the others alone.
async fn batched_reports_record_what_the_worker_holds(b: Backend) {
    use leadline_core::delivery::{Attempt, AttemptReport, MessageStatus, OutboxMessage, Payload};
    let (_db, s) = open(b).await;
    let t = tenant("Reports");
    s.commit(ChangeSet::one(Change::InsertTenant(t.clone())))
        .await
        .expect("insert");
    let now = now();
    let mut cs = ChangeSet::new();
    let msgs: Vec<OutboxMessage> = (0..3)
        .map(|_| OutboxMessage::new(&t.id, None, Payload::Erased, now))
        .collect();
    for m in &msgs {
        cs.push(Change::InsertOutbox(m.clone()));
    }
    s.commit(cs).await.expect("queue");
    let claimed = s
        .claim_due("w1", now, now + Duration::minutes(1), 2)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 2);
    let report = |id: &leadline_core::id::MsgId, success: bool| AttemptReport {
        message_id: id.clone(),
        worker: "w1".into(),
        attempt: Attempt {
            attempt: 1,
            at: now,
            success,
            code: None,
            detail: None,
            latency_ms: 1,
        },
        retry_at: (!success).then(|| now + Duration::minutes(5)),
        disable_endpoint: false,
    };
    let unclaimed = msgs
        .iter()
        .find(|m| claimed.iter().all(|c| c.id != m.id))
        .expect("one left");
    let done = s
        .report_attempts(vec![
            report(&claimed[0].id, true),
            report(&unclaimed.id, true),
            report(&claimed[1].id, false),
        ])
        .await
        .expect("report");
    assert_eq!(done, vec![true, false, true], "only what w1 holds is recorded");
    let status = |m: Option<OutboxMessage>| m.map(|m| (m.status, m.attempts));
    assert_eq!(
        status(s.get_message(&claimed[0].id).await.expect("get")),
        Some((MessageStatus::Delivered, 1))
    );
    assert_eq!(
        status(s.get_message(&claimed[1].id).await.expect("get")),
        Some((MessageStatus::Pending, 1)),
        "a failure to retry stays pending"
    );
    assert_eq!(
        status(s.get_message(&unclaimed.id).await.expect("get")),
        Some((MessageStatus::Pending, 0)),
        "not held, not touched"
    );
}

/// An email to `to` queued at `at`, with its mail log.
fn email_with_log(
    tenant: &leadline_core::id::TenantId,
    to: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> (leadline_core::delivery::OutboxMessage, leadline_core::delivery::MailLog) {
    use leadline_core::delivery::{EmailPayload, MailLog, MailStatus, OutboxMessage, Payload};
    let mail_id = leadline_core::id::MailId::generate();
    let payload = Payload::Email(EmailPayload {
        mail_id: mail_id.clone(),
        kind: "k".into(),
        to: to.into(),
        from_name: None,
        reply_to: None,
        subject: "s".into(),
        text: "t".into(),
        html: "h".into(),
    });
    let msg = OutboxMessage::new(tenant, None, payload, at);
    let log = MailLog {
        id: mail_id,
        tenant_id: tenant.clone(),
        message_id: msg.id.clone(),
        lead_id: None,
        kind: "k".into(),
        recipient: to.into(),
        subject: "s".into(),
        status: MailStatus::Queued,
        attempts: 0,
        last_error: None,
        created_at: at,
        updated_at: at,
    };
    (msg, log)
}

/// One batch with every outcome (delivered, to retry, dead, not held, and a message
/// named twice): each recorded as if reported alone — the message, its mail log, its
/// attempt, its dead letter with the whole history.
async fn a_batch_of_reports_records_attempts_mail_logs_and_dead_letters(b: Backend) {
    use leadline_core::delivery::{Attempt, AttemptReport, MailStatus, MessageStatus, OutboxMessage};
    let (_db, s) = open(b).await;
    let t = tenant("Batch");
    s.commit(ChangeSet::one(Change::InsertTenant(t.clone())))
        .await
        .expect("insert");
    let now = now();
    let mut cs = ChangeSet::new();
    let mut msgs = Vec::new();
    for i in 0..5 {
        let (msg, log) = email_with_log(&t.id, &format!("client{i}@example.com"), now);
        cs.push(Change::InsertOutbox(msg.clone()))
            .push(Change::InsertMailLog(log));
        msgs.push(msg);
    }
    s.commit(cs).await.expect("queue");
    let claimed = s
        .claim_due("w1", now, now + Duration::minutes(1), 10)
        .await
        .expect("claim");
    assert_eq!(claimed.len(), 5);
    let at = now + Duration::seconds(2);
    let report = |m: &OutboxMessage, worker: &str, success: bool, retry: bool, detail: Option<&str>| AttemptReport {
        message_id: m.id.clone(),
        worker: worker.into(),
        attempt: Attempt {
            attempt: 1,
            at,
            success,
            code: detail.map(|_| 550),
            detail: detail.map(str::to_owned),
            latency_ms: 7,
        },
        retry_at: retry.then(|| now + Duration::minutes(5)),
        disable_endpoint: false,
    };
    let done = s
        .report_attempts(vec![
            report(&msgs[0], "w1", true, false, None),
            report(&msgs[1], "w1", false, true, Some("421 try later")),
            report(&msgs[2], "w1", false, false, Some("550 no such user")),
            report(&msgs[3], "w2", true, false, None),
        ])
        .await
        .expect("report");
    assert_eq!(done, vec![true, true, true, false]);
    let state = |m: Option<OutboxMessage>| m.map(|m| (m.status, m.attempts, m.last_error));
    let get = |i: usize| {
        let s = s.clone();
        let id = msgs[i].id.clone();
        async move { state(s.get_message(&id).await.expect("get")) }
    };
    assert_eq!(get(0).await, Some((MessageStatus::Delivered, 1, None)));
    assert_eq!(
        get(1).await,
        Some((MessageStatus::Pending, 1, Some("421 try later".into())))
    );
    assert_eq!(
        get(2).await,
        Some((MessageStatus::Dead, 1, Some("550 no such user".into())))
    );
    assert_eq!(
        get(3).await,
        Some((MessageStatus::Pending, 0, None)),
        "not w2's: untouched"
    );
    let logs = s.list_mail_logs(&t.id, &page(50)).await.expect("logs");
    let log = |i: usize| {
        logs.iter()
            .find(|l| l.message_id == msgs[i].id)
            .map(|l| (l.status, l.attempts, l.last_error.clone()))
    };
    assert_eq!(log(0), Some((MailStatus::Sent, 1, None)));
    assert_eq!(log(1), Some((MailStatus::Queued, 1, Some("421 try later".into()))));
    assert_eq!(log(2), Some((MailStatus::Failed, 1, Some("550 no such user".into()))));
    assert_eq!(log(3), Some((MailStatus::Queued, 0, None)));
    let dead = s.list_dead_letters(&t.id, None, &page(10)).await.expect("dead");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message_id, msgs[2].id);
    assert_eq!(dead[0].attempts.len(), 1, "the history holds the attempt of this batch");
    assert_eq!(dead[0].attempts[0].detail.as_deref(), Some("550 no such user"));
    assert_eq!(
        (dead[0].attempts[0].code, dead[0].attempts[0].latency_ms),
        (Some(550), 7)
    );
    // A batch naming a message twice: the first report counts, the second finds the
    // lease given up.
    let twice = s
        .report_attempts(vec![
            report(&msgs[4], "w1", true, false, None),
            report(&msgs[4], "w1", true, false, None),
        ])
        .await
        .expect("report");
    assert_eq!(twice, vec![true, false]);
    assert_eq!(get(4).await, Some((MessageStatus::Delivered, 1, None)));
}

async fn dead_letter_and_delivery_cleanups_respect_their_cutoffs(b: Backend) {
    use leadline_core::delivery::{Attempt, AttemptReport, MessageStatus};
    let (_db, s) = open(b).await;
    let t = tenant("A");
    s.commit(ChangeSet::one(Change::InsertTenant(t.clone())))
        .await
        .expect("insert");
    let now = now();
    let cutoff = now - Duration::days(7);
    // Three messages that die (dead letters created at the attempt's time) and three
    // that are delivered (outbox, mail log and attempt at those times).
    let times = [
        cutoff - Duration::microseconds(1),
        cutoff,
        cutoff + Duration::seconds(1),
    ];
    let mut ids = Vec::new();
    for (i, at) in times.iter().chain(times.iter()).enumerate() {
        let dies = i < 3;
        let (msg, log) = email_with_log(&t.id, "x@example.com", *at);
        let mut cs = ChangeSet::new();
        cs.push(Change::InsertOutbox(msg.clone()))
            .push(Change::InsertMailLog(log));
        s.commit(cs).await.expect("queue");
        let claimed = s
            .claim_due("w", now, now + Duration::minutes(1), 10)
            .await
            .expect("claim");
        assert_eq!(claimed.len(), 1);
        let report = AttemptReport {
            message_id: msg.id.clone(),
            worker: "w".into(),
            attempt: Attempt {
                attempt: 1,
                at: *at,
                success: !dies,
                code: None,
                detail: None,
                latency_ms: 1,
            },
            retry_at: None,
            disable_endpoint: false,
        };
        assert!(s.report_attempt(&report).await.expect("report"));
        ids.push(msg.id);
    }
    assert_eq!(
        s.get_message(&ids[0]).await.expect("get").map(|m| m.status),
        Some(MessageStatus::Dead)
    );
    let page10 = page(10);
    assert_eq!(s.list_dead_letters(&t.id, None, &page10).await.expect("list").len(), 3);
    assert_eq!(
        clean(&s, Cleanup::DeadLetters(cutoff)).await,
        1,
        "only the one before the cutoff"
    );
    let left = s.list_dead_letters(&t.id, None, &page10).await.expect("list");
    assert_eq!(left.len(), 2);
    assert!(left.iter().all(|d| d.created_at >= cutoff));
    // Deliveries: the delivered message before the cutoff goes with its attempt; the
    // mail logs before the cutoff go, failed or sent; dead messages stay whatever
    // their age (their dead letters have a retention of their own).
    let deleted = clean(&s, Cleanup::Deliveries(cutoff)).await;
    assert_eq!(
        s.get_message(&ids[3]).await.expect("get"),
        None,
        "the old delivered message is gone"
    );
    assert!(
        s.get_message(&ids[4]).await.expect("get").is_some(),
        "the one at the cutoff stays"
    );
    assert!(
        s.get_message(&ids[0]).await.expect("get").is_some(),
        "dead messages are never deleted by age"
    );
    let logs = s.list_mail_logs(&t.id, &page10).await.expect("logs");
    assert_eq!(logs.len(), 4, "the two mail logs before the cutoff went");
    assert!(logs.iter().all(|l| l.created_at >= cutoff));
    assert_eq!(deleted, 2 + 1 + 1, "two mail logs, one attempt, one outbox message");
}

async fn cleanups_delete_exactly_what_is_past_retention(b: Backend) {
    use leadline_core::audit::{ActorType, AuditEntry, AuditFilter, AuditScope};
    use leadline_core::id::AuditId;
    let (_db, s) = open(b).await;
    let t = tenant("A");
    s.commit(ChangeSet::one(Change::InsertTenant(t.clone())))
        .await
        .expect("insert");
    let now = now();
    let cutoff = now - Duration::days(365);
    // Audit: one a microsecond before the cutoff, one at it, one after.
    let entry = |at| AuditEntry {
        id: AuditId::generate(),
        tenant_id: Some(t.id.clone()),
        at,
        actor_type: ActorType::System,
        actor_id: None,
        action: "x".into(),
        resource_type: None,
        resource_id: None,
        request_id: None,
        ip: None,
        user_agent: None,
        status: 200,
        details: serde_json::json!({}),
    };
    let mut cs = ChangeSet::new();
    for at in [
        cutoff - Duration::microseconds(1),
        cutoff,
        cutoff + Duration::seconds(1),
        now,
    ] {
        cs.push(Change::InsertAudit(entry(at)));
    }
    s.commit(cs).await.expect("insert");
    assert_eq!(clean(&s, Cleanup::Audit(cutoff)).await, 1);
    let left = s
        .list_audit(
            &AuditFilter {
                scope: AuditScope::All,
                action: None,
                since: None,
                until: None,
                resource_id: None,
            },
            &page(10),
        )
        .await
        .expect("list");
    assert_eq!(left.len(), 3);
    assert!(left.iter().all(|e| e.at >= cutoff));
    assert_eq!(clean(&s, Cleanup::Audit(cutoff)).await, 0, "idempotent");
    // Idempotency records: expired at or before now go; later ones stay.
    for (key, expires) in [
        ("a", now - Duration::seconds(1)),
        ("b", now),
        ("c", now + Duration::seconds(1)),
    ] {
        let mut c = claim(key, "f", now - Duration::hours(24));
        c.expires_at = expires;
        s.claim_idempotency(&c).await.expect("claim");
    }
    assert_eq!(clean(&s, Cleanup::IdempotencyKeys(now)).await, 2);
    assert_eq!(
        s.claim_idempotency(&claim("c", "g", now)).await.expect("claim"),
        leadline_store::ClaimOutcome::Mismatch,
        "the live one stays"
    );
    assert_eq!(clean(&s, Cleanup::DeadLetters(now)).await, 0);
    assert_eq!(clean(&s, Cleanup::Deliveries(now)).await, 0);
}

async fn job_leases_have_one_holder(b: Backend) {
    let (_db, s) = open(b).await;
    let t0 = now();
    let until = t0 + Duration::minutes(55);
    assert!(s.try_lease("cleanup", "a", t0, until).await.expect("lease"));
    assert!(
        !s.try_lease("cleanup", "b", t0 + Duration::minutes(1), until)
            .await
            .expect("lease"),
        "held by a"
    );
    assert!(
        s.try_lease("cleanup", "a", t0 + Duration::minutes(1), until)
            .await
            .expect("lease"),
        "a renews"
    );
    assert!(
        s.try_lease("backup", "b", t0, until).await.expect("lease"),
        "another job is separate"
    );
    assert!(
        s.try_lease("cleanup", "b", until, until + Duration::minutes(55))
            .await
            .expect("lease"),
        "free after it expires"
    );
}

fn claim(key: &str, fingerprint: &str, now: chrono::DateTime<Utc>) -> leadline_store::IdempotencyClaim {
    leadline_store::IdempotencyClaim {
        scope: "ten_x".into(),
        key: key.into(),
        method: "POST".into(),
        path: "/v1/leads".into(),
        fingerprint: fingerprint.into(),
        now,
        locked_until: now + Duration::seconds(60),
        expires_at: now + Duration::hours(24),
        // An instance of its own: only the lease decides between two claims.
        holder: format!("{}/{key}", rand::random::<u64>()),
        exclusive: false,
    }
}

async fn idempotency_claims(b: Backend) {
    use leadline_core::change::IdempotentResponse;
    use leadline_store::ClaimOutcome;
    let (_db, s) = open(b).await;
    let t0 = now();
    assert_eq!(
        s.claim_idempotency(&claim("k", "f1", t0)).await.expect("claim"),
        ClaimOutcome::Claimed
    );
    assert_eq!(
        s.claim_idempotency(&claim("k", "f1", t0)).await.expect("claim"),
        ClaimOutcome::InFlight
    );
    assert_eq!(
        s.claim_idempotency(&claim("k", "f2", t0)).await.expect("claim"),
        ClaimOutcome::Mismatch
    );
    // A lease that ran out (its process died) is taken over by the same request.
    let later = t0 + Duration::seconds(61);
    assert_eq!(
        s.claim_idempotency(&claim("k", "f1", later)).await.expect("claim"),
        ClaimOutcome::Claimed
    );
    let response = IdempotentResponse {
        scope: "ten_x".into(),
        key: "k".into(),
        status: 201,
        content_type: Some("application/json".into()),
        location: None,
        body: b"{\"id\":1}".to_vec(),
        holder: None,
        record: None,
    };
    s.commit(ChangeSet::one(Change::CompleteIdempotency(response.clone())))
        .await
        .expect("complete");
    assert_eq!(
        s.claim_idempotency(&claim("k", "f1", later)).await.expect("claim"),
        ClaimOutcome::Done(response)
    );
    assert_eq!(
        s.claim_idempotency(&claim("k", "f2", later)).await.expect("claim"),
        ClaimOutcome::Mismatch
    );
    // Expired records are forgotten: the key is free again, whatever the request.
    let expired = t0 + Duration::hours(25);
    assert_eq!(
        s.claim_idempotency(&claim("k", "f2", expired)).await.expect("claim"),
        ClaimOutcome::Claimed
    );
    // A released claim (a 5xx) may be claimed again at once.
    let held = claim("r", "f1", t0);
    assert_eq!(s.claim_idempotency(&held).await.expect("claim"), ClaimOutcome::Claimed);
    s.release_idempotency("ten_x", "r", "someone/else")
        .await
        .expect("release");
    assert_eq!(
        s.claim_idempotency(&claim("r", "f1", t0)).await.expect("claim"),
        ClaimOutcome::InFlight,
        "only its holder releases a claim"
    );
    s.release_idempotency("ten_x", "r", &held.holder)
        .await
        .expect("release");
    assert_eq!(
        s.claim_idempotency(&claim("r", "f1", t0)).await.expect("claim"),
        ClaimOutcome::Claimed
    );
    // Scopes are separate.
    let mut other = claim("k", "zz", expired);
    other.scope = "admin".into();
    assert_eq!(s.claim_idempotency(&other).await.expect("claim"), ClaimOutcome::Claimed);
}

/// Claims held by instances: an instance takes over its own dead claims at once,
/// a lone server any claim, others wait for the lease, which holders renew; and a
/// request whose claim was taken over cannot complete it.
async fn idempotency_claims_have_holders(b: Backend) {
    use leadline_core::audit::{ActorType, AuditEntry, AuditFilter, AuditScope};
    use leadline_core::change::IdempotentResponse;
    use leadline_core::id::AuditId;
    use leadline_store::ClaimOutcome;
    let (_db, s) = open(b).await;
    let t0 = now();
    let mut first = claim("h", "f", t0);
    first.holder = "inst-a/1".into();
    assert_eq!(s.claim_idempotency(&first).await.expect("claim"), ClaimOutcome::Claimed);
    let mut other_instance = claim("h", "f", t0);
    other_instance.holder = "inst-b/1".into();
    assert_eq!(
        s.claim_idempotency(&other_instance).await.expect("claim"),
        ClaimOutcome::InFlight,
        "another instance waits for the lease"
    );
    // Renewed by its holder: still held after the first lease would have run out.
    s.renew_idempotency(
        vec![("ten_x".into(), "h".into(), "inst-a/1".into())],
        t0 + Duration::seconds(120),
    )
    .await
    .expect("renew");
    let mut after_first_lease = other_instance.clone();
    after_first_lease.now = t0 + Duration::seconds(90);
    assert_eq!(
        s.claim_idempotency(&after_first_lease).await.expect("claim"),
        ClaimOutcome::InFlight,
        "a renewed lease holds"
    );
    // The same instance knows the first request is gone: it takes over at once.
    let mut same_instance = claim("h", "f", t0);
    same_instance.holder = "inst-a/2".into();
    assert_eq!(
        s.claim_idempotency(&same_instance).await.expect("claim"),
        ClaimOutcome::Claimed
    );
    // The first request cannot complete any more, and nothing of it is stored.
    let response = |holder: &str| IdempotentResponse {
        scope: "ten_x".into(),
        key: "h".into(),
        status: 201,
        content_type: Some("application/json".into()),
        location: None,
        body: b"{}".to_vec(),
        holder: Some(holder.into()),
        record: None,
    };
    let audit_id = AuditId::generate();
    let mut cs = ChangeSet::one(Change::InsertAudit(AuditEntry {
        id: audit_id.clone(),
        tenant_id: None,
        at: t0,
        actor_type: ActorType::System,
        actor_id: None,
        action: "stale.request".into(),
        resource_type: None,
        resource_id: None,
        request_id: None,
        ip: None,
        user_agent: None,
        status: 201,
        details: serde_json::json!({}),
    }));
    cs.push(Change::CompleteIdempotency(response("inst-a/1")));
    let stale = s.commit(cs).await;
    assert!(matches!(stale, Err(leadline_store::StoreError::Stale)), "{stale:?}");
    let audit = s
        .list_audit(
            &AuditFilter {
                scope: AuditScope::All,
                action: Some("stale.request".into()),
                since: None,
                until: None,
                resource_id: None,
            },
            &page(10),
        )
        .await
        .expect("list");
    assert!(audit.is_empty(), "the stale request's audit entry was rolled back too");
    assert_eq!(
        s.claim_idempotency(&other_instance).await.expect("claim"),
        ClaimOutcome::InFlight,
        "still held by the second request"
    );
    s.commit(ChangeSet::one(Change::CompleteIdempotency(response("inst-a/2"))))
        .await
        .expect("the holder completes");
    assert!(matches!(
        s.claim_idempotency(&other_instance).await.expect("claim"),
        ClaimOutcome::Done(_)
    ));
    // A lone server takes over any in-flight claim of the same request.
    let mut lone = claim("x", "f", t0);
    lone.holder = "old-process/1".into();
    assert_eq!(s.claim_idempotency(&lone).await.expect("claim"), ClaimOutcome::Claimed);
    let mut restarted = claim("x", "f", t0);
    restarted.holder = "new-process/1".into();
    restarted.exclusive = true;
    assert_eq!(
        s.claim_idempotency(&restarted).await.expect("claim"),
        ClaimOutcome::Claimed
    );
}

/// A lone server (`exclusive`) claims by reading and writes the record once,
/// with its outcome; a second outcome for the same key is refused as stale, and
/// the stored one is replayed.
async fn a_lone_servers_claim_is_written_with_its_outcome(b: Backend) {
    use leadline_core::change::{IdempotencyRecord, IdempotentResponse};
    use leadline_store::ClaimOutcome;
    if b == Backend::Postgres {
        // PostgreSQL servers share their database: never `exclusive`; their claims
        // are rows, taken over by lease (`idempotency_claims_have_holders`).
        return;
    }
    let (_db, s) = open(b).await;
    let t0 = now();
    let lone = |holder: &str, fingerprint: &str| {
        let mut c = claim("solo", fingerprint, t0);
        c.holder = holder.into();
        c.exclusive = true;
        c
    };
    let first = lone("p/1", "f");
    assert_eq!(s.claim_idempotency(&first).await.expect("claim"), ClaimOutcome::Claimed);
    let outcome = |c: &leadline_store::IdempotencyClaim, body: &[u8]| IdempotentResponse {
        scope: c.scope.clone(),
        key: c.key.clone(),
        status: 201,
        content_type: Some("application/json".into()),
        location: None,
        body: body.to_vec(),
        holder: Some(c.holder.clone()),
        record: Some(IdempotencyRecord {
            method: c.method.clone(),
            path: c.path.clone(),
            fingerprint: c.fingerprint.clone(),
            created_at: c.now,
            expires_at: c.expires_at,
        }),
    };
    // An abandoned request's successor claims the same key while the first has
    // not committed yet (the server knows the first is gone).
    let second = lone("p/2", "f");
    assert_eq!(
        s.claim_idempotency(&second).await.expect("claim"),
        ClaimOutcome::Claimed
    );
    s.commit(ChangeSet::one(Change::CompleteIdempotency(outcome(&first, b"first"))))
        .await
        .expect("the first outcome is stored");
    let late = s
        .commit(ChangeSet::one(Change::CompleteIdempotency(outcome(&second, b"second"))))
        .await;
    assert!(matches!(late, Err(leadline_store::StoreError::Stale)), "{late:?}");
    match s.claim_idempotency(&lone("p/3", "f")).await.expect("claim") {
        ClaimOutcome::Done(r) => assert_eq!(r.body, b"first"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        s.claim_idempotency(&lone("p/4", "other")).await.expect("claim"),
        ClaimOutcome::Mismatch
    );
}

async fn audit_entries_list_and_filter(b: Backend) {
    use leadline_core::audit::{ActorType, AuditEntry, AuditFilter, AuditScope};
    use leadline_core::id::AuditId;
    let (_db, s) = open(b).await;
    let t = tenant("A");
    s.commit(ChangeSet::one(Change::InsertTenant(t.clone())))
        .await
        .expect("insert");
    let t0 = now();
    let entry = |tenant: Option<TenantId>, action: &str, minutes: i64| AuditEntry {
        id: AuditId::generate(),
        tenant_id: tenant,
        at: t0 + Duration::minutes(minutes),
        actor_type: ActorType::SecretKey,
        actor_id: Some("key_x".into()),
        action: action.into(),
        resource_type: Some("lead".into()),
        resource_id: Some(format!("res-{minutes}")),
        request_id: Some("req".into()),
        ip: Some("127.0.0.1".into()),
        user_agent: None,
        status: 201,
        details: serde_json::json!({"k": "v"}),
    };
    let entries = vec![
        entry(Some(t.id.clone()), "lead.create", 0),
        entry(Some(t.id.clone()), "lead.update", 1),
        entry(None, "maintenance.run", 2),
        entry(Some(TenantId::generate()), "lead.create", 3),
    ];
    let mut cs = ChangeSet::new();
    for e in &entries {
        cs.push(Change::InsertAudit(e.clone()));
    }
    s.commit(cs).await.expect("insert");
    let f = |scope: AuditScope| AuditFilter {
        scope,
        action: None,
        since: None,
        until: None,
        resource_id: None,
    };
    let all = s.list_audit(&f(AuditScope::All), &page(10)).await.expect("list");
    assert_eq!(all.len(), 4);
    assert_eq!(all[0], entries[3], "newest first, read back exactly");
    let mine = s
        .list_audit(&f(AuditScope::Tenant(t.id.clone())), &page(10))
        .await
        .expect("list");
    assert_eq!(
        mine.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        ["lead.update", "lead.create"]
    );
    let mut by_action = f(AuditScope::All);
    by_action.action = Some("lead.create".into());
    assert_eq!(s.list_audit(&by_action, &page(10)).await.expect("list").len(), 2);
    let mut window = f(AuditScope::All);
    window.since = Some(t0 + Duration::minutes(1));
    window.until = Some(t0 + Duration::minutes(3));
    assert_eq!(s.list_audit(&window, &page(10)).await.expect("list").len(), 2);
    let mut by_res = f(AuditScope::All);
    by_res.resource_id = Some("res-2".into());
    assert_eq!(s.list_audit(&by_res, &page(10)).await.expect("list")[0].tenant_id, None);
}

async fn tenants_round_trip_and_slugs_are_unique(b: Backend) {
    let (_db, s) = open(b).await;
    let t = tenant("Aegean Blue");
    s.commit(ChangeSet::one(Change::InsertTenant(t.clone())))
        .await
        .expect("insert");
    assert_eq!(s.get_tenant(&t.id).await.expect("get"), Some(t.clone()));
    assert_eq!(s.get_tenant_by_slug("aegean-blue").await.expect("get"), Some(t.clone()));
    let mut dup = tenant("Aegean Blue");
    dup.slug = t.slug.clone();
    let err = s
        .commit(ChangeSet::one(Change::InsertTenant(dup)))
        .await
        .expect_err("slug taken");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let mut ids = vec![t.id.clone()];
    for i in 0..4 {
        let x = tenant(&format!("Co {i}"));
        ids.push(x.id.clone());
        s.commit(ChangeSet::one(Change::InsertTenant(x))).await.expect("insert");
    }
    ids.reverse();
    let first = s.list_tenants(&page(2)).await.expect("list");
    assert_eq!(
        first.iter().map(|t| t.id.clone()).collect::<Vec<_>>(),
        ids[..3].to_vec(),
        "limit + 1, newest first"
    );
    let rest = s
        .list_tenants(&PageRequest {
            after: Some(ids[1].to_string()),
            limit: 10,
        })
        .await
        .expect("list");
    assert_eq!(rest.iter().map(|t| t.id.clone()).collect::<Vec<_>>(), ids[2..].to_vec());
    assert_eq!(s.get_tenant(&TenantId::generate()).await.expect("get"), None);
}

async fn keys_are_found_by_hash_and_revoked(b: Backend) {
    let (_db, s) = open(b).await;
    let t = tenant("Aegean Blue");
    let k = api_key::issue(&t.id, KeyKind::Secret, now());
    let mut cs = ChangeSet::new();
    cs.push(Change::InsertTenant(t.clone()))
        .push(Change::InsertApiKey(k.key.clone()));
    s.commit(cs).await.expect("insert");
    let (found, owner) = s
        .find_api_key(&api_key::hash_key(&k.plaintext))
        .await
        .expect("find")
        .expect("present");
    assert_eq!(found, k.key);
    assert_eq!(owner, t);
    assert!(
        s.find_api_key(&api_key::hash_key("sk_other"))
            .await
            .expect("find")
            .is_none()
    );
    let at = now();
    s.commit(ChangeSet::one(Change::RevokeApiKey {
        tenant_id: t.id.clone(),
        key_id: k.key.id.clone(),
        at,
    }))
    .await
    .expect("revoke");
    let (found, _) = s.find_api_key(&k.key.hash).await.expect("find").expect("present");
    assert_eq!(found.revoked_at, Some(at));
    // Revoking through another tenant changes nothing.
    let u = tenant("Other");
    let uk = api_key::issue(&u.id, KeyKind::Secret, now());
    let mut cs = ChangeSet::new();
    cs.push(Change::InsertTenant(u.clone()))
        .push(Change::InsertApiKey(uk.key.clone()));
    s.commit(cs).await.expect("insert");
    s.commit(ChangeSet::one(Change::RevokeApiKey {
        tenant_id: t.id.clone(),
        key_id: uk.key.id.clone(),
        at,
    }))
    .await
    .expect("no-op");
    assert_eq!(s.list_api_keys(&u.id).await.expect("keys")[0].revoked_at, None);
    assert_eq!(s.list_api_keys(&t.id).await.expect("keys").len(), 1);
    let _ = ApiKeyId::generate();
}

async fn leads_round_trip_exactly(b: Backend) {
    let (_db, s) = open(b).await;
    let t = tenant("Aegean Blue");
    s.commit(ChangeSet::one(Change::InsertTenant(t.clone())))
        .await
        .expect("insert");
    let l = new_lead(&t.id, "maria@example.com");
    let out = s
        .commit(ChangeSet::one(Change::InsertLead {
            lead: l.clone(),
            duplicate_since: now() - Duration::minutes(10),
        }))
        .await
        .expect("insert");
    assert!(out.duplicates.is_empty());
    assert_eq!(s.get_lead(&t.id, &l.id).await.expect("get"), Some(l.clone()));
    let patched = lead::LeadPatch {
        status: Some(LeadStatus::Contacted),
        tags: Some(vec!["vip".into()]),
        ..Default::default()
    }
    .apply(&l, now())
    .expect("legal");
    s.commit(ChangeSet::one(Change::UpdateLead(patched.clone())))
        .await
        .expect("update");
    assert_eq!(s.get_lead(&t.id, &l.id).await.expect("get"), Some(patched.clone()));
    let erased = lead::erase(&patched, now());
    s.commit(ChangeSet::one(Change::UpdateLead(erased)))
        .await
        .expect("erase");
    assert_eq!(
        s.get_lead(&t.id, &l.id).await.expect("get"),
        None,
        "erased leads are gone"
    );
    assert!(
        s.list_leads(&t.id, &LeadFilter::default(), &page(10))
            .await
            .expect("list")
            .is_empty()
    );
}

async fn lead_reads_are_scoped_to_the_tenant(b: Backend) {
    let (_db, s) = open(b).await;
    let (t, u) = (tenant("A"), tenant("B"));
    let l = new_lead(&t.id, "maria@example.com");
    let mut cs = ChangeSet::new();
    cs.push(Change::InsertTenant(t.clone()))
        .push(Change::InsertTenant(u.clone()))
        .push(Change::InsertLead {
            lead: l.clone(),
            duplicate_since: now(),
        });
    s.commit(cs).await.expect("insert");
    assert_eq!(s.get_lead(&u.id, &l.id).await.expect("get"), None);
    assert!(
        s.list_leads(&u.id, &LeadFilter::default(), &page(10))
            .await
            .expect("list")
            .is_empty()
    );
    let q = LeadFilter {
        q: Some("maria".into()),
        ..Default::default()
    };
    assert!(s.list_leads(&u.id, &q, &page(10)).await.expect("list").is_empty());
    assert_eq!(s.list_leads(&t.id, &q, &page(10)).await.expect("list").len(), 1);
    // An update naming the wrong tenant does not apply.
    let mut foreign = l.clone();
    foreign.tenant_id = u.id.clone();
    foreign.version += 1;
    foreign.status = LeadStatus::Lost;
    assert!(matches!(
        s.commit(ChangeSet::one(Change::UpdateLead(foreign))).await,
        Err(StoreError::Stale)
    ));
    assert_eq!(s.get_lead(&t.id, &l.id).await.expect("get"), Some(l));
    let scoped = leadline_store::Scoped::new(s.as_ref(), &u.id);
    assert!(
        scoped
            .leads(&LeadFilter::default(), &page(5))
            .await
            .expect("list")
            .is_empty()
    );
}

async fn updates_detect_concurrent_changes(b: Backend) {
    let (_db, s) = open(b).await;
    let t = tenant("A");
    let l = new_lead(&t.id, "maria@example.com");
    let mut cs = ChangeSet::new();
    cs.push(Change::InsertTenant(t.clone())).push(Change::InsertLead {
        lead: l.clone(),
        duplicate_since: now(),
    });
    s.commit(cs).await.expect("insert");
    let a = lead::LeadPatch {
        status: Some(LeadStatus::Contacted),
        ..Default::default()
    }
    .apply(&l, now())
    .expect("legal");
    let b_ = lead::LeadPatch {
        status: Some(LeadStatus::Lost),
        ..Default::default()
    }
    .apply(&l, now())
    .expect("legal");
    s.commit(ChangeSet::one(Change::UpdateLead(a.clone())))
        .await
        .expect("first wins");
    assert!(matches!(
        s.commit(ChangeSet::one(Change::UpdateLead(b_))).await,
        Err(StoreError::Stale)
    ));
    assert_eq!(
        s.get_lead(&t.id, &l.id).await.expect("get").map(|l| l.status),
        Some(LeadStatus::Contacted)
    );
    let mut t2 = t.clone();
    t2.status = TenantStatus::Suspended;
    t2.version += 1;
    s.commit(ChangeSet::one(Change::UpdateTenant(t2.clone())))
        .await
        .expect("tenant update");
    assert!(matches!(
        s.commit(ChangeSet::one(Change::UpdateTenant(t2))).await,
        Err(StoreError::Stale)
    ));
}

async fn a_failed_change_set_commits_nothing(b: Backend) {
    let (_db, s) = open(b).await;
    let t = tenant("A");
    s.commit(ChangeSet::one(Change::InsertTenant(t.clone())))
        .await
        .expect("insert");
    let l = new_lead(&t.id, "maria@example.com");
    let mut dup = tenant("B");
    dup.slug = t.slug.clone();
    let mut cs = ChangeSet::new();
    cs.push(Change::InsertLead {
        lead: l.clone(),
        duplicate_since: now(),
    })
    .push(Change::InsertTenant(dup.clone()));
    assert!(s.commit(cs).await.is_err());
    assert_eq!(
        s.get_lead(&t.id, &l.id).await.expect("get"),
        None,
        "the lead rolled back with the failed tenant"
    );
    assert_eq!(s.get_tenant(&dup.id).await.expect("get"), None);
    // And the store still works after the rollback.
    s.commit(ChangeSet::one(Change::InsertLead {
        lead: l.clone(),
        duplicate_since: now(),
    }))
    .await
    .expect("insert");
    assert!(s.get_lead(&t.id, &l.id).await.expect("get").is_some());
}

async fn concurrent_identical_leads_have_one_first(b: Backend) {
    let (_db, s) = open(b).await;
    let t = tenant("A");
    s.commit(ChangeSet::one(Change::InsertTenant(t.clone())))
        .await
        .expect("insert");
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let s = s.clone();
        let l = new_lead(&t.id, "maria@example.com");
        tasks.push(tokio::spawn(async move {
            let since = now() - Duration::minutes(10);
            s.commit(ChangeSet::one(Change::InsertLead {
                lead: l.clone(),
                duplicate_since: since,
            }))
            .await
            .map(|c| (l.id, c))
        }));
    }
    let mut firsts = 0;
    for task in tasks {
        let (_, c) = task.await.expect("join").expect("commit");
        if c.duplicates.is_empty() {
            firsts += 1;
        }
    }
    assert_eq!(firsts, 1, "exactly one lead is first; the others point at it");
    let all = s
        .list_leads(&t.id, &LeadFilter::default(), &page(50))
        .await
        .expect("list");
    assert_eq!(all.len(), 16);
    let first: Vec<&LeadId> = all.iter().filter(|l| l.duplicate_of.is_none()).map(|l| &l.id).collect();
    assert_eq!(first.len(), 1);
    assert!(
        all.iter()
            .all(|l| l.duplicate_of.as_ref().is_none_or(|d| d == first[0]))
    );
}

async fn readiness_reports_migrations(b: Backend) {
    let db = TestDb::create(b).await;
    let s = leadline_store::open(&db.url).await.expect("open");
    assert!(
        s.ready().await.is_err() || !s.ready().await.unwrap_or(true),
        "not ready before migrating"
    );
    s.migrate().await.expect("migrate");
    assert!(s.ready().await.expect("ready"));
    assert_eq!(s.backend(), b);
    s.close().await;
}

/// Runs statements straight on the database; returns the first column of the
/// last one's rows as text.
async fn raw(b: Backend, url: &str, statements: &[&str]) -> Vec<String> {
    use sqlx::Row;
    let mut out = Vec::new();
    match b {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(url).await.expect("sqlite");
            for q in statements {
                let rows = sqlx::query(q).fetch_all(&pool).await.expect(q);
                out = rows
                    .iter()
                    .map(|r| r.try_get::<String, _>(0).unwrap_or_default())
                    .collect();
            }
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(url).await.expect("postgres");
            for q in statements {
                let rows = sqlx::query(q).fetch_all(&pool).await.expect(q);
                out = rows
                    .iter()
                    .map(|r| r.try_get::<String, _>(0).unwrap_or_default())
                    .collect();
            }
            pool.close().await;
        }
    }
    out
}

/// Migrations are checksummed: a database on which an applied migration differs
/// from the binary's (here its recorded checksum is changed, as an edited file
/// would make it) is refused at start. A database migrated before checksums were
/// kept (`schema_migrations`) has its history adopted, with the same checksums a
/// fresh database records.
async fn an_edited_applied_migration_is_refused_and_an_old_history_is_adopted(b: Backend) {
    let db = TestDb::create(b).await;
    let s = leadline_store::open(&db.url).await.expect("open");
    s.migrate().await.expect("migrate");
    let checksums = "SELECT CAST(version AS TEXT) || ':' || description || ':' || CAST(success AS TEXT) \
                     FROM _sqlx_migrations ORDER BY version";
    let fresh = raw(b, &db.url, &[checksums]).await;
    let hex = match b {
        Backend::Sqlite => "SELECT hex(checksum) FROM _sqlx_migrations ORDER BY version",
        Backend::Postgres => "SELECT encode(checksum, 'hex') FROM _sqlx_migrations ORDER BY version",
    };
    let fresh_sums = raw(b, &db.url, &[hex]).await;
    assert!(
        fresh.len() >= 6 && fresh_sums.iter().all(|c| c.len() == 96),
        "{fresh:?} {fresh_sums:?}"
    );

    let edit = match b {
        Backend::Sqlite => "UPDATE _sqlx_migrations SET checksum = X'00' WHERE version = 2",
        Backend::Postgres => "UPDATE _sqlx_migrations SET checksum = decode('00', 'hex') WHERE version = 2",
    };
    raw(b, &db.url, &[edit]).await;
    let err = s.migrate().await.expect_err("an edited migration is refused");
    assert!(err.to_string().contains("modified"), "{err}");

    // An old history: schema_migrations only.
    raw(
        b,
        &db.url,
        &[
            "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
            "INSERT INTO schema_migrations (version, name, applied_at) \
             SELECT version, description, 'then' FROM _sqlx_migrations",
            "DROP TABLE _sqlx_migrations",
        ],
    )
    .await;
    assert!(!s.ready().await.unwrap_or(false), "not ready with an old history");
    s.migrate().await.expect("adopted");
    assert!(s.ready().await.expect("ready"));
    assert_eq!(raw(b, &db.url, &[checksums]).await, fresh);
    assert_eq!(raw(b, &db.url, &[hex]).await, fresh_sums, "the binary's checksums");
    let old_table = match b {
        Backend::Sqlite => "SELECT name FROM sqlite_master WHERE name = 'schema_migrations'",
        Backend::Postgres => {
            "SELECT CAST(to_regclass('schema_migrations') AS TEXT) WHERE to_regclass('schema_migrations') IS NOT NULL"
        }
    };
    assert!(raw(b, &db.url, &[old_table]).await.is_empty(), "the old table is gone");
    s.close().await;
}
