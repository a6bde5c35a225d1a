//! PostgreSQL's writes, inside the caller's transaction. SQLite's single writer
//! thread runs the same statements through rusqlite (`sqlite/write.rs`).

use super::reads::*;
use super::{Conn, Db, ROW_LOCK, lock_dedupe};
use crate::common::enum_text;
use crate::common::{LEAD_COLUMNS, OUTBOX_COLUMNS};
use crate::{ClaimOutcome, IdempotencyClaim};
use crate::{Committed, StoreError};
use leadline_core::change::ChangeSet;
use leadline_core::change::{Change, Cleanup, IdempotentResponse};
use leadline_core::delivery::{Attempt, AttemptReport, MessageKind, MessageStatus, OutboxMessage, Payload};
use leadline_core::id::LeadId;
use leadline_core::id::{DeadLetterId, MsgId};
use leadline_core::lead::Lead;
use leadline_core::webhook::WebhookEndpoint;
use sqlx::Row;
use sqlx::types::Json;

/// Binds every lead column in `LEAD_COLUMNS` order, then `name_key`,
/// `email_key` and `dedupe_key` ($34-$36).
pub(super) fn bind_lead<'q>(
    q: sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments<'q>>,
    l: &'q Lead,
) -> sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments<'q>> {
    q.bind(l.id.as_str())
        .bind(l.tenant_id.as_str())
        .bind(l.status.as_str())
        .bind(&l.name)
        .bind(l.email.as_str())
        .bind(&l.phone)
        .bind(&l.phone_e164)
        .bind(l.charter_from)
        .bind(l.charter_to)
        .bind(l.flexible_dates)
        .bind(l.guests.map(|g| i64::from(g.adults)))
        .bind(l.guests.map(|g| i64::from(g.children)))
        .bind(&l.destination)
        .bind(l.yacht_type.as_ref().and_then(enum_text))
        .bind(l.charter_type.as_ref().and_then(enum_text))
        .bind(l.yacht_id.as_ref().map(|y| y.as_str()))
        .bind(l.budget.map(|b| b.amount))
        .bind(l.budget.map(|b| b.currency.as_str().to_owned()))
        .bind(&l.experience)
        .bind(&l.message)
        .bind(&l.locale)
        .bind(&l.source)
        .bind(l.utm.as_ref().map(Json))
        .bind(l.consent.privacy_policy)
        .bind(l.consent.marketing)
        .bind(&l.assigned_to)
        .bind(&l.notes)
        .bind(Json(&l.tags))
        .bind(l.duplicate_of.as_ref().map(|d| d.as_str()))
        .bind(l.created_at)
        .bind(l.updated_at)
        .bind(l.version)
        .bind(l.erased_at)
        .bind(l.name.to_lowercase())
        .bind(l.email.match_key())
        .bind(l.dedupe_key())
}

/// Claims due messages inside the caller's transaction; `lock` is the
/// row-locking clause where the backend has one.
pub(super) async fn claim_due_in(
    conn: &mut Conn,
    worker: &str,
    now: chrono::DateTime<chrono::Utc>,
    until: chrono::DateTime<chrono::Utc>,
    limit: u32,
    lock: &str,
) -> crate::Result<Vec<OutboxMessage>> {
    let sql = format!(
        "UPDATE outbox SET locked_by = $1, locked_until = $2, updated_at = $3 WHERE id IN ( \
         SELECT o.id FROM outbox o JOIN tenants t ON t.id = o.tenant_id \
         WHERE o.status = 'pending' AND o.next_attempt_at <= $3 \
         AND (o.locked_until IS NULL OR o.locked_until <= $3) AND t.status = 'active' \
         ORDER BY o.next_attempt_at LIMIT $4{lock}) RETURNING {OUTBOX_COLUMNS}"
    );
    let rows = sqlx::query(&sql)
        .bind(worker)
        .bind(until)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(message_from_row).collect()
}

/// Records one attempt inside the caller's transaction; `false` when the message
/// is no longer this worker's (its lease ran out and another took it).
pub(super) async fn report_in(conn: &mut Conn, rep: &AttemptReport, lock: &str) -> crate::Result<bool> {
    // The lease first; the whole message (its payload parsed) only when a dead
    // letter or a disabled endpoint needs it, not for every delivery.
    let sql = format!("SELECT status, locked_by FROM outbox WHERE id = $1{lock}");
    let Some(row) = sqlx::query(&sql)
        .bind(rep.message_id.as_str())
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(false);
    };
    let status: String = row.try_get("status")?;
    let locked_by: Option<String> = row.try_get("locked_by")?;
    if MessageStatus::from_db(&status) != Some(MessageStatus::Pending)
        || locked_by.as_deref() != Some(rep.worker.as_str())
    {
        return Ok(false);
    }
    let id = rep.message_id.as_str();
    let a = &rep.attempt;
    sqlx::query(
        "INSERT INTO delivery_attempts (id, message_id, attempt, at, success, code, detail, latency_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(format!("{id}-{}", ulid_text()))
    .bind(id)
    .bind(i64::from(a.attempt))
    .bind(a.at)
    .bind(a.success)
    .bind(a.code.map(i64::from))
    .bind(&a.detail)
    .bind(i64::try_from(a.latency_ms).unwrap_or(i64::MAX))
    .execute(&mut *conn)
    .await?;
    let attempts = i64::from(a.attempt);
    let (status, mail_status) = rep.outcome();
    let last_error = if a.success { None } else { a.detail.clone() };
    sqlx::query(
        "UPDATE outbox SET status = $2, attempts = $3, next_attempt_at = COALESCE($4, next_attempt_at), \
         locked_by = NULL, locked_until = NULL, last_error = $5, updated_at = $6 WHERE id = $1",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(attempts)
    .bind(rep.retry_at)
    .bind(&last_error)
    .bind(a.at)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE mail_logs SET status = $2, attempts = $3, last_error = $4, updated_at = $5 WHERE message_id = $1",
    )
    .bind(id)
    .bind(mail_status.as_str())
    .bind(attempts)
    .bind(&last_error)
    .bind(a.at)
    .execute(&mut *conn)
    .await?;
    dead_or_gone(conn, rep).await?;
    Ok(true)
}

/// Records a batch of attempts inside the caller's transaction in four statements
/// whatever its size (one per message and table before: the lease read, the
/// attempt, the message, its mail log); the answer per report as [`report_in`]'s.
/// A batch that names a message twice is recorded one report at a time.
pub(super) async fn report_batch(conn: &mut Conn, reports: &[AttemptReport]) -> crate::Result<Vec<bool>> {
    let ids: Vec<&str> = reports.iter().map(|r| r.message_id.as_str()).collect();
    let distinct: std::collections::HashSet<&str> = ids.iter().copied().collect();
    if distinct.len() != ids.len() {
        let mut out = Vec::with_capacity(reports.len());
        for r in reports {
            out.push(report_in(conn, r, ROW_LOCK).await?);
        }
        return Ok(out);
    }
    // Row locks in id order, so two instances' batches cannot deadlock on them.
    sqlx::query("SELECT id FROM outbox WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
    let last_error = |r: &AttemptReport| {
        if r.attempt.success {
            None
        } else {
            r.attempt.detail.clone()
        }
    };
    let kept = sqlx::query(
        "UPDATE outbox o SET status = u.status, attempts = u.attempts, \
         next_attempt_at = COALESCE(u.retry_at, o.next_attempt_at), locked_by = NULL, locked_until = NULL, \
         last_error = u.last_error, updated_at = u.at \
         FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::timestamptz[], $5::text[], $6::timestamptz[], $7::text[]) \
         AS u(id, status, attempts, retry_at, last_error, at, worker) \
         WHERE o.id = u.id AND o.status = 'pending' AND o.locked_by = u.worker RETURNING o.id, o.kind",
    )
    .bind(&ids)
    .bind(reports.iter().map(|r| r.outcome().0.as_str()).collect::<Vec<_>>())
    .bind(reports.iter().map(|r| i64::from(r.attempt.attempt)).collect::<Vec<_>>())
    .bind(reports.iter().map(|r| r.retry_at).collect::<Vec<_>>())
    .bind(reports.iter().map(last_error).collect::<Vec<_>>())
    .bind(reports.iter().map(|r| r.attempt.at).collect::<Vec<_>>())
    .bind(reports.iter().map(|r| r.worker.as_str()).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?;
    let mut kinds = std::collections::HashMap::new();
    for row in &kept {
        kinds.insert(row.try_get::<String, _>("id")?, row.try_get::<String, _>("kind")?);
    }
    let done: Vec<&AttemptReport> = reports
        .iter()
        .filter(|r| kinds.contains_key(r.message_id.as_str()))
        .collect();
    if !done.is_empty() {
        sqlx::query(
            "INSERT INTO delivery_attempts (id, message_id, attempt, at, success, code, detail, latency_ms) \
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::timestamptz[], $5::bool[], \
             $6::bigint[], $7::text[], $8::bigint[])",
        )
        .bind(
            done.iter()
                .map(|r| format!("{}-{}", r.message_id.as_str(), ulid_text()))
                .collect::<Vec<_>>(),
        )
        .bind(done.iter().map(|r| r.message_id.as_str()).collect::<Vec<_>>())
        .bind(done.iter().map(|r| i64::from(r.attempt.attempt)).collect::<Vec<_>>())
        .bind(done.iter().map(|r| r.attempt.at).collect::<Vec<_>>())
        .bind(done.iter().map(|r| r.attempt.success).collect::<Vec<_>>())
        .bind(done.iter().map(|r| r.attempt.code.map(i64::from)).collect::<Vec<_>>())
        .bind(done.iter().map(|r| r.attempt.detail.clone()).collect::<Vec<_>>())
        .bind(
            done.iter()
                .map(|r| i64::try_from(r.attempt.latency_ms).unwrap_or(i64::MAX))
                .collect::<Vec<_>>(),
        )
        .execute(&mut *conn)
        .await?;
    }
    let mails: Vec<&&AttemptReport> = done
        .iter()
        .filter(|r| {
            kinds
                .get(r.message_id.as_str())
                .is_some_and(|k| MessageKind::from_db(k) == Some(MessageKind::Email))
        })
        .collect();
    if !mails.is_empty() {
        sqlx::query(
            "UPDATE mail_logs m SET status = u.status, attempts = u.attempts, last_error = u.last_error, \
             updated_at = u.at FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::timestamptz[]) \
             AS u(id, status, attempts, last_error, at) WHERE m.message_id = u.id",
        )
        .bind(mails.iter().map(|r| r.message_id.as_str()).collect::<Vec<_>>())
        .bind(mails.iter().map(|r| r.outcome().1.as_str()).collect::<Vec<_>>())
        .bind(mails.iter().map(|r| i64::from(r.attempt.attempt)).collect::<Vec<_>>())
        .bind(mails.iter().map(|r| last_error(r)).collect::<Vec<_>>())
        .bind(mails.iter().map(|r| r.attempt.at).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    for r in &done {
        dead_or_gone(conn, r).await?;
    }
    Ok(reports
        .iter()
        .map(|r| kinds.contains_key(r.message_id.as_str()))
        .collect())
}

/// After a recorded attempt: the dead letter of a message out of attempts, and
/// the endpoint disabled by a 410 answer.
async fn dead_or_gone(conn: &mut Conn, rep: &AttemptReport) -> crate::Result<()> {
    let id = rep.message_id.as_str();
    let a = &rep.attempt;
    async fn full(conn: &mut Conn, id: &str) -> crate::Result<OutboxMessage> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = $1");
        let row = sqlx::query(&sql).bind(id).fetch_one(&mut *conn).await?;
        message_from_row(&row)
    }
    let last_error = if a.success { None } else { a.detail.clone() };
    if rep.outcome().0 == MessageStatus::Dead {
        let msg = full(conn, id).await?;
        let rows = sqlx::query(
            "SELECT attempt, at, success, code, detail, latency_ms FROM delivery_attempts \
             WHERE message_id = $1 ORDER BY at, attempt",
        )
        .bind(msg.id.as_str())
        .fetch_all(&mut *conn)
        .await?;
        let mut history = Vec::new();
        for r in &rows {
            let attempt: i64 = r.try_get("attempt")?;
            let code: Option<i64> = r.try_get("code")?;
            let latency: i64 = r.try_get("latency_ms")?;
            history.push(Attempt {
                attempt: u32::try_from(attempt).unwrap_or(0),
                at: r.try_get("at")?,
                success: r.try_get("success")?,
                code: code.and_then(|c| u16::try_from(c).ok()),
                detail: r.try_get("detail")?,
                latency_ms: u64::try_from(latency).unwrap_or(0),
            });
        }
        sqlx::query(
            "INSERT INTO dead_letters (id, tenant_id, message_id, kind, lead_id, payload, attempts, \
             last_error, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(DeadLetterId::generate().as_str())
        .bind(msg.tenant_id.as_str())
        .bind(msg.id.as_str())
        .bind(msg.kind.as_str())
        .bind(msg.lead_id.as_ref().map(|l| l.as_str()))
        .bind(Json(&msg.payload))
        .bind(Json(&history))
        .bind(&last_error)
        .bind(a.at)
        .execute(&mut *conn)
        .await?;
    }
    if rep.disable_endpoint
        && let Payload::Webhook(w) = &full(conn, id).await?.payload
    {
        sqlx::query(
            "UPDATE webhook_endpoints SET enabled = $2, disabled_reason = $3, updated_at = $4, \
             version = version + 1 WHERE id = $1",
        )
        .bind(w.endpoint_id.as_str())
        .bind(false)
        .bind("The receiver answered 410 Gone.")
        .bind(a.at)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub(super) fn ulid_text() -> String {
    MsgId::generate().as_str()[4..].to_owned()
}

/// Claims an idempotency record inside the caller's transaction;
/// `for_update` locks the row where the backend needs it.
pub(super) async fn claim_in(conn: &mut Conn, c: &IdempotencyClaim, for_update: &str) -> crate::Result<ClaimOutcome> {
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, method, path, fingerprint, state, locked_until, \
         created_at, expires_at, holder) \
         VALUES ($1, $2, $3, $4, $5, 'in_flight', $6, $7, $8, $9) ON CONFLICT (scope, key) DO NOTHING",
    )
    .bind(&c.scope)
    .bind(&c.key)
    .bind(&c.method)
    .bind(&c.path)
    .bind(&c.fingerprint)
    .bind(c.locked_until)
    .bind(c.now)
    .bind(c.expires_at)
    .bind(&c.holder)
    .execute(&mut *conn)
    .await?;
    if inserted.rows_affected() == 1 {
        return Ok(ClaimOutcome::Claimed);
    }
    let sql = format!(
        "SELECT method, path, fingerprint, state, locked_until, expires_at, response_status, \
         response_content_type, response_location, response_body, holder FROM idempotency_keys \
         WHERE scope = $1 AND key = $2{for_update}"
    );
    let Some(row) = sqlx::query(&sql)
        .bind(&c.scope)
        .bind(&c.key)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(ClaimOutcome::InFlight);
    };
    let expires_at: chrono::DateTime<chrono::Utc> = row.try_get("expires_at")?;
    let locked_until: chrono::DateTime<chrono::Utc> = row.try_get("locked_until")?;
    let state: String = row.try_get("state")?;
    let same = row.try_get::<String, _>("method")? == c.method
        && row.try_get::<String, _>("path")? == c.path
        && row.try_get::<String, _>("fingerprint")? == c.fingerprint;
    let holder: Option<String> = row.try_get("holder")?;
    let take_over = c.may_take_over(&crate::FoundClaim {
        same,
        in_flight: state == "in_flight",
        locked_until,
        expires_at,
        holder: holder.as_deref(),
    });
    if take_over {
        sqlx::query(
            "UPDATE idempotency_keys SET method = $3, path = $4, fingerprint = $5, state = 'in_flight', \
             locked_until = $6, created_at = $7, expires_at = $8, holder = $9, response_status = NULL, \
             response_content_type = NULL, response_location = NULL, response_body = NULL \
             WHERE scope = $1 AND key = $2",
        )
        .bind(&c.scope)
        .bind(&c.key)
        .bind(&c.method)
        .bind(&c.path)
        .bind(&c.fingerprint)
        .bind(c.locked_until)
        .bind(c.now)
        .bind(c.expires_at)
        .bind(&c.holder)
        .execute(&mut *conn)
        .await?;
        return Ok(ClaimOutcome::Claimed);
    }
    if !same {
        return Ok(ClaimOutcome::Mismatch);
    }
    if state == "in_flight" {
        return Ok(ClaimOutcome::InFlight);
    }
    let status: i64 = row
        .try_get::<Option<i64>, _>("response_status")?
        .ok_or_else(|| corrupt("idempotent status"))?;
    Ok(ClaimOutcome::Done(IdempotentResponse {
        scope: c.scope.clone(),
        key: c.key.clone(),
        status: u16::try_from(status).map_err(|_| corrupt("idempotent status"))?,
        content_type: row.try_get("response_content_type")?,
        location: row.try_get("response_location")?,
        body: row.try_get::<Option<Vec<u8>>, _>("response_body")?.unwrap_or_default(),
        holder: None,
        record: None,
    }))
}

/// Binds an endpoint's columns as $1-$12: id, tenant, url, events, description,
/// enabled, disabled reason, secret, previous secret and its end, updated_at, version.
pub(super) fn bind_endpoint<'q>(
    q: sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments<'q>>,
    e: &'q WebhookEndpoint,
) -> sqlx::query::Query<'q, Db, <Db as sqlx::Database>::Arguments<'q>> {
    q.bind(e.id.as_str())
        .bind(e.tenant_id.as_str())
        .bind(&e.url)
        .bind(Json(&e.events))
        .bind(&e.description)
        .bind(e.enabled)
        .bind(&e.disabled_reason)
        .bind(&e.secret)
        .bind(&e.previous_secret)
        .bind(e.previous_secret_until)
        .bind(e.updated_at)
        .bind(e.version)
}

/// Applies one change inside the caller's transaction.
pub(super) async fn apply(conn: &mut Conn, change: &Change, out: &mut Committed) -> crate::Result<()> {
    match change {
        Change::Cleanup(c) => {
            out.cleaned += match *c {
                Cleanup::IdempotencyKeys(now) => {
                    delete_before(conn, "DELETE FROM idempotency_keys WHERE expires_at <= $1", now).await?
                }
                Cleanup::Audit(before) => delete_before(conn, "DELETE FROM audit_logs WHERE at < $1", before).await?,
                Cleanup::DeadLetters(before) => {
                    delete_before(conn, "DELETE FROM dead_letters WHERE created_at < $1", before).await?
                }
                Cleanup::Deliveries(before) => cleanup_deliveries_in(conn, before).await?,
            };
        }
        Change::InsertTenant(t) => {
            sqlx::query(
                "INSERT INTO tenants (id, name, slug, status, settings, created_at, updated_at, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(t.id.as_str())
            .bind(&t.name)
            .bind(&t.slug)
            .bind(t.status.as_str())
            .bind(Json(&t.settings))
            .bind(t.created_at)
            .bind(t.updated_at)
            .bind(t.version)
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from_db)?;
        }
        Change::UpdateTenant(t) => {
            let done = sqlx::query(
                "UPDATE tenants SET name = $2, status = $3, settings = $4, updated_at = $5, version = $6 \
                 WHERE id = $1 AND version = $7",
            )
            .bind(t.id.as_str())
            .bind(&t.name)
            .bind(t.status.as_str())
            .bind(Json(&t.settings))
            .bind(t.updated_at)
            .bind(t.version)
            .bind(t.version - 1)
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from_db)?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Stale);
            }
        }
        Change::InsertApiKey(k) => {
            sqlx::query(
                "INSERT INTO api_keys (id, tenant_id, kind, prefix, key_hash, created_at, revoked_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(k.id.as_str())
            .bind(k.tenant_id.as_str())
            .bind(k.kind.as_str())
            .bind(&k.prefix)
            .bind(&k.hash)
            .bind(k.created_at)
            .bind(k.revoked_at)
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from_db)?;
        }
        Change::RevokeApiKey { tenant_id, key_id, at } => {
            sqlx::query("UPDATE api_keys SET revoked_at = $3 WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL")
                .bind(tenant_id.as_str())
                .bind(key_id.as_str())
                .bind(*at)
                .execute(&mut *conn)
                .await
                .map_err(StoreError::from_db)?;
        }
        Change::InsertLead { lead, duplicate_since } => {
            let key = lead.dedupe_key();
            lock_dedupe(&mut *conn, &format!("{}|{key}", lead.tenant_id)).await?;
            let first: Option<String> = sqlx::query_scalar(
                // The original, never another duplicate: with commits out of
                // creation order a duplicate can be older than its original.
                "SELECT id FROM leads WHERE tenant_id = $1 AND dedupe_key = $2 AND created_at >= $3 \
                 AND erased_at IS NULL AND duplicate_of IS NULL ORDER BY created_at, id LIMIT 1",
            )
            .bind(lead.tenant_id.as_str())
            .bind(&key)
            .bind(*duplicate_since)
            .fetch_optional(&mut *conn)
            .await?;
            let mut lead = lead.clone();
            if let Some(first) = first {
                let first = LeadId::from_trusted(first);
                out.duplicates.push((lead.id.clone(), first.clone()));
                lead.duplicate_of = Some(first);
            }
            let sql = format!(
                "INSERT INTO leads ({LEAD_COLUMNS}, name_key, email_key, dedupe_key) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
                  $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34, $35, $36)"
            );
            bind_lead(sqlx::query(&sql), &lead)
                .execute(&mut *conn)
                .await
                .map_err(StoreError::from_db)?;
        }
        Change::UpdateLead(lead) => {
            let sql = "UPDATE leads SET status = $3, name = $4, email = $5, phone = $6, phone_e164 = $7, \
                 charter_from = $8, charter_to = $9, flexible_dates = $10, guests_adults = $11, \
                 guests_children = $12, destination = $13, yacht_type = $14, charter_type = $15, \
                 yacht_id = $16, budget_amount = $17, budget_currency = $18, experience = $19, \
                 message = $20, locale = $21, source = $22, utm = $23, consent_privacy = $24, \
                 consent_marketing = $25, assigned_to = $26, notes = $27, tags = $28, \
                 duplicate_of = $29, updated_at = $31, version = $32, erased_at = $33, \
                 name_key = $34, email_key = $35, dedupe_key = $36 \
                 WHERE id = $1 AND tenant_id = $2 AND version = $32 - 1";
            let done = bind_lead(sqlx::query(sql), lead)
                .execute(&mut *conn)
                .await
                .map_err(StoreError::from_db)?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Stale);
            }
        }
        Change::InsertAudit(a) => {
            sqlx::query(
                "INSERT INTO audit_logs (id, tenant_id, at, actor_type, actor_id, action, resource_type, \
                 resource_id, request_id, ip, user_agent, status, details) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(a.id.as_str())
            .bind(a.tenant_id.as_ref().map(|t| t.as_str()))
            .bind(a.at)
            .bind(a.actor_type.as_str())
            .bind(&a.actor_id)
            .bind(&a.action)
            .bind(&a.resource_type)
            .bind(&a.resource_id)
            .bind(&a.request_id)
            .bind(&a.ip)
            .bind(&a.user_agent)
            .bind(i64::from(a.status))
            .bind(Json(&a.details))
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from_db)?;
        }
        Change::InsertOutbox(m) => {
            let endpoint = match &m.payload {
                Payload::Webhook(w) => Some(w.endpoint_id.as_str().to_owned()),
                _ => None,
            };
            sqlx::query(
                "INSERT INTO outbox (id, tenant_id, kind, lead_id, endpoint_id, payload, status, attempts, \
                 next_attempt_at, locked_by, locked_until, last_error, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $11, $12, NULL, $10, $10)",
            )
            .bind(m.id.as_str())
            .bind(m.tenant_id.as_str())
            .bind(m.kind.as_str())
            .bind(m.lead_id.as_ref().map(|l| l.as_str()))
            .bind(endpoint)
            .bind(Json(&m.payload))
            .bind(m.status.as_str())
            .bind(i64::from(m.attempts))
            .bind(m.next_attempt_at)
            .bind(m.created_at)
            // Leased at creation to the dispatcher of the process that made it
            // (see the server's worker), or to no one.
            .bind(m.locked_by.as_deref())
            .bind(m.locked_until)
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from_db)?;
        }
        Change::InsertMailLog(l) => {
            sqlx::query(
                "INSERT INTO mail_logs (id, tenant_id, message_id, lead_id, kind, recipient, subject, status, \
                 attempts, last_error, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(l.id.as_str())
            .bind(l.tenant_id.as_str())
            .bind(l.message_id.as_str())
            .bind(l.lead_id.as_ref().map(|x| x.as_str()))
            .bind(&l.kind)
            .bind(&l.recipient)
            .bind(&l.subject)
            .bind(l.status.as_str())
            .bind(i64::from(l.attempts))
            .bind(&l.last_error)
            .bind(l.created_at)
            .bind(l.updated_at)
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from_db)?;
        }
        Change::InsertEndpoint(e) => {
            let sql = "INSERT INTO webhook_endpoints (id, tenant_id, url, events, description, enabled, \
                       disabled_reason, \
                 secret, previous_secret, previous_secret_until, updated_at, version, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
            bind_endpoint(sqlx::query(sql), e)
                .bind(e.created_at)
                .execute(&mut *conn)
                .await
                .map_err(StoreError::from_db)?;
        }
        Change::UpdateEndpoint(e) => {
            let sql = "UPDATE webhook_endpoints SET url = $3, events = $4, description = $5, enabled = $6, \
                 disabled_reason = $7, secret = $8, previous_secret = $9, previous_secret_until = $10, \
                 updated_at = $11, version = $12 \
                 WHERE id = $1 AND tenant_id = $2 AND version = $12 - 1 AND deleted_at IS NULL";
            let done = bind_endpoint(sqlx::query(sql), e)
                .execute(&mut *conn)
                .await
                .map_err(StoreError::from_db)?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Stale);
            }
        }
        Change::DeleteEndpoint { tenant_id, id, at } => {
            let now = *at;
            sqlx::query("UPDATE webhook_endpoints SET deleted_at = $3, enabled = $4 WHERE id = $1 AND tenant_id = $2")
                .bind(id.as_str())
                .bind(tenant_id.as_str())
                .bind(now)
                .bind(false)
                .execute(&mut *conn)
                .await?;
            sqlx::query(
                "UPDATE outbox SET status = 'cancelled', locked_by = NULL, updated_at = $3 \
                 WHERE endpoint_id = $1 AND tenant_id = $2 AND status = 'pending'",
            )
            .bind(id.as_str())
            .bind(tenant_id.as_str())
            .bind(now)
            .execute(&mut *conn)
            .await?;
        }
        Change::EraseLeadDeliveries { tenant_id, lead_id } => {
            let erased = Json(Payload::Erased);
            sqlx::query(
                "UPDATE delivery_attempts SET detail = NULL WHERE message_id IN \
                 (SELECT id FROM outbox WHERE tenant_id = $1 AND lead_id = $2)",
            )
            .bind(tenant_id.as_str())
            .bind(lead_id.as_str())
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE outbox SET status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE status END, \
                 payload = $3, locked_by = NULL, last_error = NULL WHERE tenant_id = $1 AND lead_id = $2",
            )
            .bind(tenant_id.as_str())
            .bind(lead_id.as_str())
            .bind(&erased)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE mail_logs SET recipient = '[erased]', subject = '[erased]', last_error = NULL, \
                 status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END \
                 WHERE tenant_id = $1 AND lead_id = $2",
            )
            .bind(tenant_id.as_str())
            .bind(lead_id.as_str())
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE dead_letters SET payload = $3, attempts = $4, last_error = NULL WHERE \
                         tenant_id = $1 AND lead_id = $2",
            )
            .bind(tenant_id.as_str())
            .bind(lead_id.as_str())
            .bind(&erased)
            .bind(Json(Vec::<Attempt>::new()))
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE idempotency_keys SET response_status = 410, response_content_type = \
                 'application/problem+json', \
                 response_location = NULL, response_body = $3 \
                 WHERE (scope = $1 OR scope LIKE $1 || ':%') AND state = 'done' \
                 AND position(convert_to($2, 'UTF8') in response_body) > 0",
            )
            .bind(tenant_id.as_str())
            .bind(lead_id.as_str())
            .bind(leadline_core::change::ERASED_RESPONSE.as_bytes())
            .execute(&mut *conn)
            .await?;
        }
        Change::ReplayDeadLetter { tenant_id, id, at } => {
            let row = sqlx::query(
                "SELECT message_id FROM dead_letters WHERE id = $1 AND tenant_id = $2 AND replayed_at IS NULL",
            )
            .bind(id.as_str())
            .bind(tenant_id.as_str())
            .fetch_optional(&mut *conn)
            .await?;
            let Some(row) = row else { return Err(StoreError::Stale) };
            let message_id: String = row.try_get("message_id")?;
            sqlx::query("UPDATE dead_letters SET replayed_at = $2 WHERE id = $1")
                .bind(id.as_str())
                .bind(*at)
                .execute(&mut *conn)
                .await?;
            let done = sqlx::query(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = $2, locked_by = NULL, \
                 locked_until = NULL, last_error = NULL, updated_at = $2 WHERE id = $1 AND status = 'dead'",
            )
            .bind(&message_id)
            .bind(*at)
            .execute(&mut *conn)
            .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Stale);
            }
            sqlx::query("UPDATE mail_logs SET status = 'queued', attempts = 0, updated_at = $2 WHERE message_id = $1")
                .bind(&message_id)
                .bind(*at)
                .execute(&mut *conn)
                .await?;
        }
        Change::InsertYacht(y) => {
            sqlx::query(
                "INSERT INTO yachts (id, tenant_id, data, archived_at, created_at, updated_at, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(y.id.as_str())
            .bind(y.tenant_id.as_str())
            .bind(Json(y))
            .bind(y.archived_at)
            .bind(y.created_at)
            .bind(y.updated_at)
            .bind(y.version)
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from_db)?;
        }
        Change::UpdateYacht(y) => {
            let done = sqlx::query(
                "UPDATE yachts SET data = $3, archived_at = $4, updated_at = $5, version = $6 \
                 WHERE id = $1 AND tenant_id = $2 AND version = $6 - 1",
            )
            .bind(y.id.as_str())
            .bind(y.tenant_id.as_str())
            .bind(Json(y))
            .bind(y.archived_at)
            .bind(y.updated_at)
            .bind(y.version)
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from_db)?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Stale);
            }
        }
        Change::InsertQuote(q) => {
            sqlx::query(
                "INSERT INTO quotes (id, tenant_id, lead_id, yacht_id, status, token, valid_until, charter_from, \
                 charter_to, data, created_at, updated_at, version) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(q.id.as_str())
            .bind(q.tenant_id.as_str())
            .bind(q.lead_id.as_str())
            .bind(q.yacht_id.as_str())
            .bind(q.status.as_str())
            .bind(&q.token)
            .bind(q.valid_until)
            .bind(q.charter_from)
            .bind(q.charter_to)
            .bind(Json(q))
            .bind(q.created_at)
            .bind(q.updated_at)
            .bind(q.version)
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from_db)?;
        }
        Change::UpdateQuote(q) => {
            let done = sqlx::query(
                "UPDATE quotes SET status = $3, token = $4, valid_until = $5, data = $6, updated_at = $7, version = $8 \
                 WHERE id = $1 AND tenant_id = $2 AND version = $8 - 1",
            )
            .bind(q.id.as_str())
            .bind(q.tenant_id.as_str())
            .bind(q.status.as_str())
            .bind(&q.token)
            .bind(q.valid_until)
            .bind(Json(q))
            .bind(q.updated_at)
            .bind(q.version)
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from_db)?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Stale);
            }
        }
        Change::InsertBooking(b) => {
            // Serialise bookings of one yacht: lock its row (PostgreSQL); SQLite
            // has one writer.
            let lock = format!("SELECT id FROM yachts WHERE id = $1 AND tenant_id = $2{ROW_LOCK}");
            sqlx::query(&lock)
                .bind(b.yacht_id.as_str())
                .bind(b.tenant_id.as_str())
                .fetch_optional(&mut *conn)
                .await?;
            // The rule is the core's; the store reads the yacht's stays that end
            // after this one starts (the others cannot share a night).
            let stays: Vec<(chrono::NaiveDate, chrono::NaiveDate)> =
                sqlx::query_as("SELECT charter_from, charter_to FROM bookings WHERE yacht_id = $1 AND charter_to > $2")
                    .bind(b.yacht_id.as_str())
                    .bind(b.charter_from)
                    .fetch_all(&mut *conn)
                    .await?;
            let new = (b.charter_from, b.charter_to);
            if stays
                .into_iter()
                .any(|stay| leadline_core::quote::nights_overlap(stay, new))
            {
                return Err(StoreError::Conflict(crate::Conflict::BookingOverlap));
            }
            sqlx::query(
                "INSERT INTO bookings (id, tenant_id, yacht_id, quote_id, lead_id, charter_from, \
                 charter_to, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(b.id.as_str())
            .bind(b.tenant_id.as_str())
            .bind(b.yacht_id.as_str())
            .bind(b.quote_id.as_str())
            .bind(b.lead_id.as_str())
            .bind(b.charter_from)
            .bind(b.charter_to)
            .bind(b.created_at)
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from_db)?;
        }
        Change::CompleteIdempotency(r) => {
            let done = sqlx::query(
                "UPDATE idempotency_keys SET state = 'done', response_status = $3, response_content_type = $4, \
                 response_location = $5, response_body = $6 WHERE scope = $1 AND key = $2 AND state = 'in_flight' \
                 AND ($7::text IS NULL OR holder = $7)",
            )
            .bind(&r.scope)
            .bind(&r.key)
            .bind(i64::from(r.status))
            .bind(&r.content_type)
            .bind(&r.location)
            .bind(&r.body)
            .bind(&r.holder)
            .execute(&mut *conn)
            .await
            .map_err(StoreError::from_db)?;
            if done.rows_affected() == 0 && r.holder.is_some() {
                // Another request took the key over: this one must not take effect.
                return Err(StoreError::Stale);
            }
        }
    }
    Ok(())
}

/// Applies a whole change set, its finishing writes last.
pub(super) async fn apply_set(conn: &mut Conn, cs: ChangeSet) -> crate::Result<Committed> {
    let mut out = Committed::default();
    for c in &cs.changes {
        apply(&mut *conn, c, &mut out).await?;
    }
    if let Some(finish) = cs.finish {
        for c in finish(&out) {
            apply(&mut *conn, &c, &mut out).await?;
        }
    }
    Ok(out)
}

/// Runs a cleanup `DELETE` with one timestamp parameter.
pub(super) async fn delete_before(conn: &mut Conn, sql: &str, t: chrono::DateTime<chrono::Utc>) -> crate::Result<u64> {
    Ok(sqlx::query(sql).bind(t).execute(&mut *conn).await?.rows_affected())
}

pub(super) async fn cleanup_deliveries_in(
    conn: &mut Conn,
    cutoff: chrono::DateTime<chrono::Utc>,
) -> crate::Result<u64> {
    let mut n = delete_before(
        &mut *conn,
        "DELETE FROM mail_logs WHERE created_at < $1 AND status <> 'queued'",
        cutoff,
    )
    .await?;
    n += delete_before(
        &mut *conn,
        "DELETE FROM delivery_attempts WHERE at < $1 AND message_id IN \
         (SELECT id FROM outbox WHERE status IN ('delivered', 'cancelled'))",
        cutoff,
    )
    .await?;
    n += delete_before(
        &mut *conn,
        "DELETE FROM outbox WHERE created_at < $1 AND status IN ('delivered', 'cancelled')",
        cutoff,
    )
    .await?;
    Ok(n)
}

pub(super) async fn try_lease_in(
    conn: &mut Conn,
    name: &str,
    holder: &str,
    now: chrono::DateTime<chrono::Utc>,
    until: chrono::DateTime<chrono::Utc>,
) -> crate::Result<bool> {
    let done = sqlx::query(
        "INSERT INTO job_leases (name, holder, until) VALUES ($1, $2, $3) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until \
         WHERE job_leases.until <= $4 OR job_leases.holder = excluded.holder",
    )
    .bind(name)
    .bind(holder)
    .bind(until)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
