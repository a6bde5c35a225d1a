//! Every write of the SQLite backend, run by the [`super::writer`] thread on its
//! connection inside the batch's transaction.
//!
//! These are plain synchronous calls on the connection (rusqlite), with prepared
//! statements cached on it: the writer is the one hot loop of the store, and a call
//! per statement across threads would cost more than the statement. The statements
//! are those PostgreSQL runs (the same tables and columns), with numbered `?N`
//! placeholders where PostgreSQL has `$N`;
//! values are stored as the readers (sqlx) read them: timestamps as RFC 3339 text,
//! dates as `YYYY-MM-DD`, JSON as text, booleans as integers.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use leadline_core::change::{Change, ChangeSet, Cleanup, Committed, IdempotentResponse};
use leadline_core::delivery::{Attempt, AttemptReport, MessageKind, MessageStatus, OutboxMessage, Payload};
use leadline_core::id::{DeadLetterId, LeadId, MsgId, TenantId};
use leadline_core::lead::Lead;
use leadline_core::webhook::WebhookEndpoint;
use rusqlite::types::Value;
use rusqlite::{Connection, ErrorCode, Statement};

use crate::common::{LEAD_COLUMNS, OUTBOX_COLUMNS, enum_text};
use crate::{ClaimOutcome, IdempotencyClaim, StoreError};

type Result<T> = crate::Result<T>;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(f, _) = &e
            && f.code == ErrorCode::ConstraintViolation
            // SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT_PRIMARYKEY
            && matches!(f.extended_code, 2067 | 1555)
        {
            return StoreError::Conflict(crate::Conflict::Unique {
                constraint: f.extended_code.to_string(),
            });
        }
        if super::writer::is_disk_full(&e) {
            return StoreError::DiskFull;
        }
        StoreError::Sqlite(e)
    }
}

// Values, in the encodings the sqlx readers decode.

fn s(v: &str) -> Value {
    Value::Text(v.to_owned())
}

fn os<S: AsRef<str>>(v: Option<S>) -> Value {
    v.map_or(Value::Null, |v| Value::Text(v.as_ref().to_owned()))
}

fn int(v: i64) -> Value {
    Value::Integer(v)
}

fn oint(v: Option<i64>) -> Value {
    v.map_or(Value::Null, Value::Integer)
}

fn flag(v: bool) -> Value {
    Value::Integer(i64::from(v))
}

/// As sqlx encodes a `DateTime<Utc>` for SQLite, so text comparisons agree.
fn ts(v: DateTime<Utc>) -> Value {
    Value::Text(v.to_rfc3339_opts(SecondsFormat::AutoSi, false))
}

fn ots(v: Option<DateTime<Utc>>) -> Value {
    v.map_or(Value::Null, ts)
}

fn date(v: NaiveDate) -> Value {
    Value::Text(v.format("%F").to_string())
}

fn json<T: serde::Serialize + ?Sized>(v: &T) -> Result<Value> {
    serde_json::to_string(v)
        .map(Value::Text)
        .map_err(|e| StoreError::Corrupt(format!("cannot encode JSON: {e}")))
}

fn parse_ts(text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| StoreError::Corrupt(format!("timestamp {text:?}")))
}

fn parse_ots(text: Option<String>) -> Result<Option<DateTime<Utc>>> {
    text.as_deref().map(parse_ts).transpose()
}

/// Binds `args` to a statement written with `?N` placeholders: `?N` takes
/// `args[N - 1]`, wherever and however often it appears (SQLite numbers a `?N`
/// parameter N; no name is looked up, which for a 36-column insert cost a tenth
/// of the writer's time).
fn bind(st: &mut Statement<'_>, args: &[Value]) -> Result<()> {
    let wanted = st.parameter_count();
    if wanted > args.len() {
        return Err(StoreError::Corrupt(format!(
            "a statement takes {wanted} values, {} given",
            args.len()
        )));
    }
    for (i, v) in args.iter().take(wanted).enumerate() {
        st.raw_bind_parameter(i + 1, v)?;
    }
    Ok(())
}

/// Runs a statement; returns the rows it changed.
fn exec(conn: &Connection, sql: &str, args: &[Value]) -> Result<usize> {
    let mut st = conn.prepare_cached(sql)?;
    bind(&mut st, args)?;
    Ok(st.raw_execute()?)
}

/// Runs a query and maps each row.
fn query<T>(
    conn: &Connection,
    sql: &str,
    args: &[Value],
    mut f: impl FnMut(&rusqlite::Row<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut st = conn.prepare_cached(sql)?;
    bind(&mut st, args)?;
    let mut rows = st.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(f(row)?);
    }
    Ok(out)
}

/// Rewrites the writer's probe row (a write that tells whether the disk takes one).
pub(crate) fn probe(conn: &Connection) -> Result<()> {
    exec(
        conn,
        "INSERT INTO writer_probe (id, at) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET at = excluded.at",
        &[ts(Utc::now())],
    )?;
    Ok(())
}

/// Applies a whole change set, its finishing writes last.
pub(crate) fn apply_set(conn: &Connection, cs: ChangeSet) -> Result<Committed> {
    let mut out = Committed::default();
    for c in &cs.changes {
        apply(conn, c, &mut out)?;
    }
    if let Some(finish) = cs.finish {
        for c in finish(&out) {
            apply(conn, &c, &mut out)?;
        }
    }
    Ok(out)
}

fn stale_unless_one(n: usize) -> Result<()> {
    if n == 1 { Ok(()) } else { Err(StoreError::Stale) }
}

/// Every lead column in `LEAD_COLUMNS` order, then `name_key`, `email_key` and
/// `dedupe_key` (?34-?36).
fn lead_args(l: &Lead) -> Result<Vec<Value>> {
    Ok(vec![
        s(l.id.as_str()),
        s(l.tenant_id.as_str()),
        s(l.status.as_str()),
        s(&l.name),
        s(l.email.as_str()),
        os(l.phone.as_deref()),
        os(l.phone_e164.as_deref()),
        l.charter_from.map_or(Value::Null, date),
        l.charter_to.map_or(Value::Null, date),
        flag(l.flexible_dates),
        oint(l.guests.map(|g| i64::from(g.adults))),
        oint(l.guests.map(|g| i64::from(g.children))),
        os(l.destination.as_deref()),
        os(l.yacht_type.as_ref().and_then(enum_text)),
        os(l.charter_type.as_ref().and_then(enum_text)),
        os(l.yacht_id.as_ref().map(|y| y.as_str())),
        oint(l.budget.map(|b| b.amount)),
        os(l.budget.map(|b| b.currency.as_str().to_owned())),
        os(l.experience.as_deref()),
        os(l.message.as_deref()),
        s(&l.locale),
        os(l.source.as_deref()),
        match &l.utm {
            Some(u) => json(u)?,
            None => Value::Null,
        },
        flag(l.consent.privacy_policy),
        flag(l.consent.marketing),
        os(l.assigned_to.as_deref()),
        os(l.notes.as_deref()),
        json(&l.tags)?,
        os(l.duplicate_of.as_ref().map(|d| d.as_str())),
        ts(l.created_at),
        ts(l.updated_at),
        int(l.version),
        ots(l.erased_at),
        s(&l.name.to_lowercase()),
        s(&l.email.match_key()),
        s(&l.dedupe_key()),
    ])
}

/// An endpoint's columns as ?1-?12: id, tenant, url, events, description, enabled,
/// disabled reason, secret, previous secret and its end, updated_at, version.
fn endpoint_args(e: &WebhookEndpoint) -> Result<Vec<Value>> {
    Ok(vec![
        s(e.id.as_str()),
        s(e.tenant_id.as_str()),
        s(&e.url),
        json(&e.events)?,
        os(e.description.as_deref()),
        flag(e.enabled),
        os(e.disabled_reason.as_deref()),
        s(&e.secret),
        os(e.previous_secret.as_deref()),
        ots(e.previous_secret_until),
        ts(e.updated_at),
        int(e.version),
    ])
}

/// Applies one change.
fn apply(conn: &Connection, change: &Change, out: &mut Committed) -> Result<()> {
    match change {
        Change::Cleanup(c) => {
            out.cleaned += match *c {
                Cleanup::IdempotencyKeys(now) => {
                    delete_before(conn, "DELETE FROM idempotency_keys WHERE expires_at <= ?1", now)?
                }
                Cleanup::Audit(before) => delete_before(conn, "DELETE FROM audit_logs WHERE at < ?1", before)?,
                Cleanup::DeadLetters(before) => {
                    delete_before(conn, "DELETE FROM dead_letters WHERE created_at < ?1", before)?
                }
                Cleanup::Deliveries(before) => cleanup_deliveries(conn, before)?,
            };
        }
        Change::InsertTenant(t) => {
            exec(
                conn,
                "INSERT INTO tenants (id, name, slug, status, settings, created_at, updated_at, version) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                &[
                    s(t.id.as_str()),
                    s(&t.name),
                    s(&t.slug),
                    s(t.status.as_str()),
                    json(&t.settings)?,
                    ts(t.created_at),
                    ts(t.updated_at),
                    int(t.version),
                ],
            )?;
        }
        Change::UpdateTenant(t) => {
            let n = exec(
                conn,
                "UPDATE tenants SET name = ?2, status = ?3, settings = ?4, updated_at = ?5, version = ?6 \
                 WHERE id = ?1 AND version = ?7",
                &[
                    s(t.id.as_str()),
                    s(&t.name),
                    s(t.status.as_str()),
                    json(&t.settings)?,
                    ts(t.updated_at),
                    int(t.version),
                    int(t.version - 1),
                ],
            )?;
            stale_unless_one(n)?;
        }
        Change::InsertApiKey(k) => {
            exec(
                conn,
                "INSERT INTO api_keys (id, tenant_id, kind, prefix, key_hash, created_at, revoked_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                &[
                    s(k.id.as_str()),
                    s(k.tenant_id.as_str()),
                    s(k.kind.as_str()),
                    s(&k.prefix),
                    s(&k.hash),
                    ts(k.created_at),
                    ots(k.revoked_at),
                ],
            )?;
        }
        Change::RevokeApiKey { tenant_id, key_id, at } => {
            exec(
                conn,
                "UPDATE api_keys SET revoked_at = ?3 WHERE tenant_id = ?1 AND id = ?2 AND revoked_at IS NULL",
                &[s(tenant_id.as_str()), s(key_id.as_str()), ts(*at)],
            )?;
        }
        Change::InsertLead { lead, duplicate_since } => {
            // SQLite has one writer, so two leads never race for "first".
            let key = lead.dedupe_key();
            // The original, never another duplicate: with commits out of creation
            // order a duplicate can be older than its original.
            let first = query(
                conn,
                "SELECT id FROM leads WHERE tenant_id = ?1 AND dedupe_key = ?2 AND created_at >= ?3 \
                 AND erased_at IS NULL AND duplicate_of IS NULL ORDER BY created_at, id LIMIT 1",
                &[s(lead.tenant_id.as_str()), s(&key), ts(*duplicate_since)],
                |r| Ok(r.get::<_, String>(0)?),
            )?;
            let mut lead = lead.clone();
            if let Some(first) = first.into_iter().next() {
                let first = LeadId::from_trusted(first);
                out.duplicates.push((lead.id.clone(), first.clone()));
                lead.duplicate_of = Some(first);
            }
            let sql = format!(
                "INSERT INTO leads ({LEAD_COLUMNS}, name_key, email_key, dedupe_key) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
                  ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28, ?29, ?30, ?31, ?32, ?33, ?34, ?35, ?36)"
            );
            exec(conn, &sql, &lead_args(&lead)?)?;
        }
        Change::UpdateLead(lead) => {
            let n = exec(
                conn,
                "UPDATE leads SET status = ?3, name = ?4, email = ?5, phone = ?6, phone_e164 = ?7, \
                 charter_from = ?8, charter_to = ?9, flexible_dates = ?10, guests_adults = ?11, \
                 guests_children = ?12, destination = ?13, yacht_type = ?14, charter_type = ?15, \
                 yacht_id = ?16, budget_amount = ?17, budget_currency = ?18, experience = ?19, \
                 message = ?20, locale = ?21, source = ?22, utm = ?23, consent_privacy = ?24, \
                 consent_marketing = ?25, assigned_to = ?26, notes = ?27, tags = ?28, \
                 duplicate_of = ?29, updated_at = ?31, version = ?32, erased_at = ?33, \
                 name_key = ?34, email_key = ?35, dedupe_key = ?36 \
                 WHERE id = ?1 AND tenant_id = ?2 AND version = ?32 - 1",
                &lead_args(lead)?,
            )?;
            stale_unless_one(n)?;
        }
        Change::InsertAudit(a) => {
            exec(
                conn,
                "INSERT INTO audit_logs (id, tenant_id, at, actor_type, actor_id, action, resource_type, \
                 resource_id, request_id, ip, user_agent, status, details) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                &[
                    s(a.id.as_str()),
                    os(a.tenant_id.as_ref().map(|t| t.as_str())),
                    ts(a.at),
                    s(a.actor_type.as_str()),
                    os(a.actor_id.as_deref()),
                    s(&a.action),
                    os(a.resource_type.as_deref()),
                    os(a.resource_id.as_deref()),
                    os(a.request_id.as_deref()),
                    os(a.ip.as_deref()),
                    os(a.user_agent.as_deref()),
                    int(i64::from(a.status)),
                    json(&a.details)?,
                ],
            )?;
        }
        Change::InsertOutbox(m) => {
            let endpoint = match &m.payload {
                Payload::Webhook(w) => Some(w.endpoint_id.as_str()),
                _ => None,
            };
            exec(
                conn,
                "INSERT INTO outbox (id, tenant_id, kind, lead_id, endpoint_id, payload, status, attempts, \
                 next_attempt_at, locked_by, locked_until, last_error, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?11, ?12, NULL, ?10, ?10)",
                &[
                    s(m.id.as_str()),
                    s(m.tenant_id.as_str()),
                    s(m.kind.as_str()),
                    os(m.lead_id.as_ref().map(|l| l.as_str())),
                    os(endpoint),
                    json(&m.payload)?,
                    s(m.status.as_str()),
                    int(i64::from(m.attempts)),
                    ts(m.next_attempt_at),
                    ts(m.created_at),
                    // Leased at creation to the dispatcher of the process that
                    // made it (see the server's worker), or to no one.
                    os(m.locked_by.as_deref()),
                    ots(m.locked_until),
                ],
            )?;
        }
        Change::InsertMailLog(l) => {
            exec(
                conn,
                "INSERT INTO mail_logs (id, tenant_id, message_id, lead_id, kind, recipient, subject, status, \
                 attempts, last_error, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                &[
                    s(l.id.as_str()),
                    s(l.tenant_id.as_str()),
                    s(l.message_id.as_str()),
                    os(l.lead_id.as_ref().map(|x| x.as_str())),
                    s(&l.kind),
                    s(&l.recipient),
                    s(&l.subject),
                    s(l.status.as_str()),
                    int(i64::from(l.attempts)),
                    os(l.last_error.as_deref()),
                    ts(l.created_at),
                    ts(l.updated_at),
                ],
            )?;
        }
        Change::InsertEndpoint(e) => {
            let mut args = endpoint_args(e)?;
            args.push(ts(e.created_at));
            exec(
                conn,
                "INSERT INTO webhook_endpoints (id, tenant_id, url, events, description, enabled, disabled_reason, \
                 secret, previous_secret, previous_secret_until, updated_at, version, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                &args,
            )?;
        }
        Change::UpdateEndpoint(e) => {
            let n = exec(
                conn,
                "UPDATE webhook_endpoints SET url = ?3, events = ?4, description = ?5, enabled = ?6, \
                 disabled_reason = ?7, secret = ?8, previous_secret = ?9, previous_secret_until = ?10, \
                 updated_at = ?11, version = ?12 \
                 WHERE id = ?1 AND tenant_id = ?2 AND version = ?12 - 1 AND deleted_at IS NULL",
                &endpoint_args(e)?,
            )?;
            stale_unless_one(n)?;
        }
        Change::DeleteEndpoint { tenant_id, id, at } => {
            let args = [s(id.as_str()), s(tenant_id.as_str()), ts(*at), flag(false)];
            exec(
                conn,
                "UPDATE webhook_endpoints SET deleted_at = ?3, enabled = ?4 WHERE id = ?1 AND tenant_id = ?2",
                &args,
            )?;
            exec(
                conn,
                "UPDATE outbox SET status = 'cancelled', locked_by = NULL, updated_at = ?3 \
                 WHERE endpoint_id = ?1 AND tenant_id = ?2 AND status = 'pending'",
                &args[..3],
            )?;
        }
        Change::EraseLeadDeliveries { tenant_id, lead_id } => {
            let args = [
                s(tenant_id.as_str()),
                s(lead_id.as_str()),
                json(&Payload::Erased)?,
                json(&Vec::<Attempt>::new())?,
            ];
            exec(
                conn,
                "UPDATE delivery_attempts SET detail = NULL WHERE message_id IN \
                 (SELECT id FROM outbox WHERE tenant_id = ?1 AND lead_id = ?2)",
                &args[..2],
            )?;
            exec(
                conn,
                "UPDATE outbox SET status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE status END, \
                 payload = ?3, locked_by = NULL, last_error = NULL WHERE tenant_id = ?1 AND lead_id = ?2",
                &args[..3],
            )?;
            exec(
                conn,
                "UPDATE mail_logs SET recipient = '[erased]', subject = '[erased]', last_error = NULL, \
                 status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END \
                 WHERE tenant_id = ?1 AND lead_id = ?2",
                &args[..2],
            )?;
            exec(
                conn,
                "UPDATE dead_letters SET payload = ?3, attempts = ?4, last_error = NULL WHERE tenant_id = ?1 AND lead_id = ?2",
                &args,
            )?;
            exec(
                conn,
                "UPDATE idempotency_keys SET response_status = 410, response_content_type = 'application/problem+json', \
                 response_location = NULL, response_body = ?3 \
                 WHERE (scope = ?1 OR scope LIKE ?1 || ':%') AND state = 'done' \
                 AND instr(CAST(response_body AS TEXT), ?2) > 0",
                &[
                    s(tenant_id.as_str()),
                    s(lead_id.as_str()),
                    Value::Blob(leadline_core::change::ERASED_RESPONSE.as_bytes().to_vec()),
                ],
            )?;
        }
        Change::ReplayDeadLetter { tenant_id, id, at } => {
            let found = query(
                conn,
                "SELECT message_id FROM dead_letters WHERE id = ?1 AND tenant_id = ?2 AND replayed_at IS NULL",
                &[s(id.as_str()), s(tenant_id.as_str())],
                |r| Ok(r.get::<_, String>(0)?),
            )?;
            let Some(message_id) = found.into_iter().next() else {
                return Err(StoreError::Stale);
            };
            exec(
                conn,
                "UPDATE dead_letters SET replayed_at = ?2 WHERE id = ?1",
                &[s(id.as_str()), ts(*at)],
            )?;
            let args = [s(&message_id), ts(*at)];
            let n = exec(
                conn,
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?2, locked_by = NULL, \
                 locked_until = NULL, last_error = NULL, updated_at = ?2 WHERE id = ?1 AND status = 'dead'",
                &args,
            )?;
            stale_unless_one(n)?;
            exec(
                conn,
                "UPDATE mail_logs SET status = 'queued', attempts = 0, updated_at = ?2 WHERE message_id = ?1",
                &args,
            )?;
        }
        Change::InsertYacht(y) => {
            exec(
                conn,
                "INSERT INTO yachts (id, tenant_id, data, archived_at, created_at, updated_at, version) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                &[
                    s(y.id.as_str()),
                    s(y.tenant_id.as_str()),
                    json(y)?,
                    ots(y.archived_at),
                    ts(y.created_at),
                    ts(y.updated_at),
                    int(y.version),
                ],
            )?;
        }
        Change::UpdateYacht(y) => {
            let n = exec(
                conn,
                "UPDATE yachts SET data = ?3, archived_at = ?4, updated_at = ?5, version = ?6 \
                 WHERE id = ?1 AND tenant_id = ?2 AND version = ?6 - 1",
                &[
                    s(y.id.as_str()),
                    s(y.tenant_id.as_str()),
                    json(y)?,
                    ots(y.archived_at),
                    ts(y.updated_at),
                    int(y.version),
                ],
            )?;
            stale_unless_one(n)?;
        }
        Change::InsertQuote(q) => {
            exec(
                conn,
                "INSERT INTO quotes (id, tenant_id, lead_id, yacht_id, status, token, valid_until, charter_from, \
                 charter_to, data, created_at, updated_at, version) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                &[
                    s(q.id.as_str()),
                    s(q.tenant_id.as_str()),
                    s(q.lead_id.as_str()),
                    s(q.yacht_id.as_str()),
                    s(q.status.as_str()),
                    os(q.token.as_deref()),
                    ts(q.valid_until),
                    date(q.charter_from),
                    date(q.charter_to),
                    json(q)?,
                    ts(q.created_at),
                    ts(q.updated_at),
                    int(q.version),
                ],
            )?;
        }
        Change::UpdateQuote(q) => {
            let n = exec(
                conn,
                "UPDATE quotes SET status = ?3, token = ?4, valid_until = ?5, data = ?6, updated_at = ?7, version = ?8 \
                 WHERE id = ?1 AND tenant_id = ?2 AND version = ?8 - 1",
                &[
                    s(q.id.as_str()),
                    s(q.tenant_id.as_str()),
                    s(q.status.as_str()),
                    os(q.token.as_deref()),
                    ts(q.valid_until),
                    json(q)?,
                    ts(q.updated_at),
                    int(q.version),
                ],
            )?;
            stale_unless_one(n)?;
        }
        Change::InsertBooking(b) => {
            // One writer: nothing else can book the yacht between the check and the insert.
            // The rule is the core's; the store reads the yacht's stays that end
            // after this one starts (the others cannot share a night).
            let stays = query(
                conn,
                "SELECT charter_from, charter_to FROM bookings WHERE yacht_id = ?1 AND charter_to > ?2",
                &[s(b.yacht_id.as_str()), date(b.charter_from)],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
            )?;
            let new = (b.charter_from, b.charter_to);
            let parse = |d: &str| {
                chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                    .map_err(|_| StoreError::Corrupt(format!("booking date {d:?}")))
            };
            for (from, to) in stays {
                if leadline_core::quote::nights_overlap((parse(&from)?, parse(&to)?), new) {
                    return Err(StoreError::Conflict(crate::Conflict::BookingOverlap));
                }
            }
            exec(
                conn,
                "INSERT INTO bookings (id, tenant_id, yacht_id, quote_id, lead_id, charter_from, charter_to, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                &[
                    s(b.id.as_str()),
                    s(b.tenant_id.as_str()),
                    s(b.yacht_id.as_str()),
                    s(b.quote_id.as_str()),
                    s(b.lead_id.as_str()),
                    date(b.charter_from),
                    date(b.charter_to),
                    ts(b.created_at),
                ],
            )?;
        }
        Change::CompleteIdempotency(r) if r.record.is_some() => {
            // Claimed by reading (a lone server): the record is written once, with
            // its outcome, unless another request's outcome is there already.
            let rec = r.record.as_ref().ok_or_else(|| StoreError::Corrupt("record".into()))?;
            let n = exec(
                conn,
                "INSERT INTO idempotency_keys (scope, key, method, path, fingerprint, state, locked_until, created_at, \
                 expires_at, holder, response_status, response_content_type, response_location, response_body) \
                 VALUES (?1, ?2, ?3, ?4, ?5, 'done', ?6, ?6, ?7, ?8, ?9, ?10, ?11, ?12) \
                 ON CONFLICT (scope, key) DO UPDATE SET method = excluded.method, path = excluded.path, \
                 fingerprint = excluded.fingerprint, state = 'done', locked_until = excluded.locked_until, \
                 created_at = excluded.created_at, expires_at = excluded.expires_at, holder = excluded.holder, \
                 response_status = excluded.response_status, response_content_type = excluded.response_content_type, \
                 response_location = excluded.response_location, response_body = excluded.response_body \
                 WHERE idempotency_keys.state = 'in_flight' OR idempotency_keys.expires_at <= ?6",
                &[
                    s(&r.scope),
                    s(&r.key),
                    s(&rec.method),
                    s(&rec.path),
                    s(&rec.fingerprint),
                    ts(rec.created_at),
                    ts(rec.expires_at),
                    os(r.holder.as_deref()),
                    int(i64::from(r.status)),
                    os(r.content_type.as_deref()),
                    os(r.location.as_deref()),
                    Value::Blob(r.body.clone()),
                ],
            )?;
            if n == 0 {
                // Another request's outcome was stored meanwhile: this one must
                // not take effect (its client gets the stored one on retry).
                return Err(StoreError::Stale);
            }
        }
        Change::CompleteIdempotency(r) => {
            let n = exec(
                conn,
                "UPDATE idempotency_keys SET state = 'done', response_status = ?3, response_content_type = ?4, \
                 response_location = ?5, response_body = ?6 WHERE scope = ?1 AND key = ?2 AND state = 'in_flight' \
                 AND (?7 IS NULL OR holder = ?7)",
                &[
                    s(&r.scope),
                    s(&r.key),
                    int(i64::from(r.status)),
                    os(r.content_type.as_deref()),
                    os(r.location.as_deref()),
                    Value::Blob(r.body.clone()),
                    os(r.holder.as_deref()),
                ],
            )?;
            if n == 0 && r.holder.is_some() {
                // Another request took the key over: this one must not take effect.
                return Err(StoreError::Stale);
            }
        }
    }
    Ok(())
}

/// Claims an idempotency record (see `Store::claim_idempotency`).
pub(crate) fn claim(conn: &Connection, c: &IdempotencyClaim) -> Result<ClaimOutcome> {
    let args = [
        s(&c.scope),
        s(&c.key),
        s(&c.method),
        s(&c.path),
        s(&c.fingerprint),
        ts(c.locked_until),
        ts(c.now),
        ts(c.expires_at),
        s(&c.holder),
    ];
    let inserted = exec(
        conn,
        "INSERT INTO idempotency_keys (scope, key, method, path, fingerprint, state, locked_until, created_at, expires_at, holder) \
         VALUES (?1, ?2, ?3, ?4, ?5, 'in_flight', ?6, ?7, ?8, ?9) ON CONFLICT (scope, key) DO NOTHING",
        &args,
    )?;
    if inserted == 1 {
        return Ok(ClaimOutcome::Claimed);
    }
    let Some(f) = read_claim(conn, c)? else {
        return Ok(ClaimOutcome::InFlight);
    };
    if c.may_take_over(&f.as_found()) {
        exec(
            conn,
            "UPDATE idempotency_keys SET method = ?3, path = ?4, fingerprint = ?5, state = 'in_flight', \
             locked_until = ?6, created_at = ?7, expires_at = ?8, holder = ?9, response_status = NULL, \
             response_content_type = NULL, response_location = NULL, response_body = NULL \
             WHERE scope = ?1 AND key = ?2",
            &args,
        )?;
        return Ok(ClaimOutcome::Claimed);
    }
    f.outcome(c)
}

/// A claim's record as read.
pub(crate) struct ClaimRecord {
    same: bool,
    state: String,
    locked_until: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    status: Option<i64>,
    content_type: Option<String>,
    location: Option<String>,
    body: Option<Vec<u8>>,
    holder: Option<String>,
}

impl ClaimRecord {
    pub(crate) fn as_found(&self) -> crate::FoundClaim<'_> {
        crate::FoundClaim {
            same: self.same,
            in_flight: self.state == "in_flight",
            locked_until: self.locked_until,
            expires_at: self.expires_at,
            holder: self.holder.as_deref(),
        }
    }

    /// What a claim that may not take the record over hears.
    pub(crate) fn outcome(self, c: &IdempotencyClaim) -> Result<ClaimOutcome> {
        if !self.same {
            return Ok(ClaimOutcome::Mismatch);
        }
        if self.state == "in_flight" {
            return Ok(ClaimOutcome::InFlight);
        }
        let status = self
            .status
            .and_then(|s| u16::try_from(s).ok())
            .ok_or_else(|| StoreError::Corrupt("idempotent status".into()))?;
        Ok(ClaimOutcome::Done(IdempotentResponse {
            scope: c.scope.clone(),
            key: c.key.clone(),
            status,
            content_type: self.content_type,
            location: self.location,
            body: self.body.unwrap_or_default(),
            holder: None,
            record: None,
        }))
    }
}

/// The record under a claim's scope and key, if there is one (on any connection:
/// the writer's, or a reader's).
pub(crate) fn read_claim(conn: &Connection, c: &IdempotencyClaim) -> Result<Option<ClaimRecord>> {
    let found = query(
        conn,
        "SELECT method, path, fingerprint, state, locked_until, expires_at, response_status, \
         response_content_type, response_location, response_body, holder FROM idempotency_keys \
         WHERE scope = ?1 AND key = ?2",
        &[s(&c.scope), s(&c.key)],
        |r| {
            Ok(ClaimRecord {
                same: r.get::<_, String>("method")? == c.method
                    && r.get::<_, String>("path")? == c.path
                    && r.get::<_, String>("fingerprint")? == c.fingerprint,
                state: r.get("state")?,
                locked_until: parse_ts(&r.get::<_, String>("locked_until")?)?,
                expires_at: parse_ts(&r.get::<_, String>("expires_at")?)?,
                status: r.get("response_status")?,
                content_type: r.get("response_content_type")?,
                location: r.get("response_location")?,
                body: r.get("response_body")?,
                holder: r.get("holder")?,
            })
        },
    )?;
    Ok(found.into_iter().next())
}

/// Extends the leases of in-flight claims still held by their holders.
pub(crate) fn renew(conn: &Connection, claims: &[(String, String, String)], until: DateTime<Utc>) -> Result<()> {
    for (scope, key, holder) in claims {
        exec(
            conn,
            "UPDATE idempotency_keys SET locked_until = ?4 \
             WHERE scope = ?1 AND key = ?2 AND holder = ?3 AND state = 'in_flight'",
            &[s(scope), s(key), s(holder), ts(until)],
        )?;
    }
    Ok(())
}

/// Forgets an in-flight claim.
pub(crate) fn release(conn: &Connection, scope: &str, key: &str, holder: &str) -> Result<()> {
    exec(
        conn,
        "DELETE FROM idempotency_keys WHERE scope = ?1 AND key = ?2 AND state = 'in_flight' AND holder = ?3",
        &[s(scope), s(key), s(holder)],
    )?;
    Ok(())
}

fn message_from_row(r: &rusqlite::Row<'_>) -> Result<OutboxMessage> {
    let kind: String = r.get("kind")?;
    let status: String = r.get("status")?;
    let payload: String = r.get("payload")?;
    let attempts: i64 = r.get("attempts")?;
    let lead: Option<String> = r.get("lead_id")?;
    Ok(OutboxMessage {
        id: MsgId::from_trusted(r.get::<_, String>("id")?),
        tenant_id: TenantId::from_trusted(r.get::<_, String>("tenant_id")?),
        kind: MessageKind::from_db(&kind).ok_or_else(|| StoreError::Corrupt("message kind".into()))?,
        lead_id: lead.map(LeadId::from_trusted),
        payload: serde_json::from_str(&payload).map_err(|_| StoreError::Corrupt("message payload".into()))?,
        status: MessageStatus::from_db(&status).ok_or_else(|| StoreError::Corrupt("message status".into()))?,
        attempts: u32::try_from(attempts).map_err(|_| StoreError::Corrupt("attempts".into()))?,
        next_attempt_at: parse_ts(&r.get::<_, String>("next_attempt_at")?)?,
        locked_by: r.get("locked_by")?,
        locked_until: parse_ots(r.get("locked_until")?)?,
        last_error: r.get("last_error")?,
        created_at: parse_ts(&r.get::<_, String>("created_at")?)?,
    })
}

/// Claims up to `limit` due messages of active tenants for `worker`.
pub(crate) fn claim_due(
    conn: &Connection,
    worker: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<OutboxMessage>> {
    let sql = format!(
        "UPDATE outbox SET locked_by = ?1, locked_until = ?2, updated_at = ?3 WHERE id IN ( \
         SELECT o.id FROM outbox o JOIN tenants t ON t.id = o.tenant_id \
         WHERE o.status = 'pending' AND o.next_attempt_at <= ?3 \
         AND (o.locked_until IS NULL OR o.locked_until <= ?3) AND t.status = 'active' \
         ORDER BY o.next_attempt_at LIMIT ?4) RETURNING {OUTBOX_COLUMNS}"
    );
    query(
        conn,
        &sql,
        &[s(worker), ts(until), ts(now), int(i64::from(limit))],
        message_from_row,
    )
}

/// Records an attempt and its consequences, if `rep.worker` still holds the message.
pub(crate) fn report(conn: &Connection, rep: &AttemptReport) -> Result<bool> {
    let id = rep.message_id.as_str();
    let a = &rep.attempt;
    let (status, mail_status) = rep.outcome();
    let (status, mail_status): (&str, &str) = (status.as_str(), mail_status.as_str());
    let last_error = if a.success { None } else { a.detail.as_deref() };
    // The update checks the lease itself (only a pending message this worker still
    // holds changes) and says the message's kind (only emails have a mail log); the
    // whole message (its payload parsed) is read only when a dead letter or a
    // disabled endpoint needs it.
    let kind = query(
        conn,
        "UPDATE outbox SET status = ?2, attempts = ?3, next_attempt_at = COALESCE(?4, next_attempt_at), \
         locked_by = NULL, locked_until = NULL, last_error = ?5, updated_at = ?6 \
         WHERE id = ?1 AND status = 'pending' AND locked_by = ?7 RETURNING kind",
        &[
            s(id),
            s(status),
            int(i64::from(a.attempt)),
            ots(rep.retry_at),
            os(last_error),
            ts(a.at),
            s(rep.worker.as_str()),
        ],
        |r| Ok(r.get::<_, String>(0)?),
    )?;
    let Some(kind) = kind.first() else {
        return Ok(false);
    };
    let full = |conn: &Connection| -> Result<OutboxMessage> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = ?1");
        query(conn, &sql, &[s(id)], message_from_row)?
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Corrupt("a reported message vanished".into()))
    };
    exec(
        conn,
        "INSERT INTO delivery_attempts (id, message_id, attempt, at, success, code, detail, latency_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        &[
            s(&format!("{id}-{}", &MsgId::generate().as_str()[4..])),
            s(id),
            int(i64::from(a.attempt)),
            ts(a.at),
            flag(a.success),
            oint(a.code.map(i64::from)),
            os(a.detail.as_deref()),
            int(i64::try_from(a.latency_ms).unwrap_or(i64::MAX)),
        ],
    )?;
    if MessageKind::from_db(kind) == Some(MessageKind::Email) {
        exec(
            conn,
            "UPDATE mail_logs SET status = ?2, attempts = ?3, last_error = ?4, updated_at = ?5 WHERE message_id = ?1",
            &[
                s(id),
                s(mail_status),
                int(i64::from(a.attempt)),
                os(last_error),
                ts(a.at),
            ],
        )?;
    }
    if status == "dead" {
        let msg = full(conn)?;
        let history = query(
            conn,
            "SELECT attempt, at, success, code, detail, latency_ms FROM delivery_attempts \
             WHERE message_id = ?1 ORDER BY at, attempt",
            &[s(id)],
            |r| {
                Ok(Attempt {
                    attempt: u32::try_from(r.get::<_, i64>("attempt")?).unwrap_or(0),
                    at: parse_ts(&r.get::<_, String>("at")?)?,
                    success: r.get("success")?,
                    code: r.get::<_, Option<i64>>("code")?.and_then(|c| u16::try_from(c).ok()),
                    detail: r.get("detail")?,
                    latency_ms: u64::try_from(r.get::<_, i64>("latency_ms")?).unwrap_or(0),
                })
            },
        )?;
        exec(
            conn,
            "INSERT INTO dead_letters (id, tenant_id, message_id, kind, lead_id, payload, attempts, last_error, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            &[
                s(DeadLetterId::generate().as_str()),
                s(msg.tenant_id.as_str()),
                s(id),
                s(msg.kind.as_str()),
                os(msg.lead_id.as_ref().map(|l| l.as_str())),
                json(&msg.payload)?,
                json(&history)?,
                os(last_error),
                ts(a.at),
            ],
        )?;
    }
    if rep.disable_endpoint
        && let Payload::Webhook(w) = &full(conn)?.payload
    {
        exec(
            conn,
            "UPDATE webhook_endpoints SET enabled = ?2, disabled_reason = ?3, updated_at = ?4, version = version + 1 \
             WHERE id = ?1",
            &[
                s(w.endpoint_id.as_str()),
                flag(false),
                s("The receiver answered 410 Gone."),
                ts(a.at),
            ],
        )?;
    }
    Ok(true)
}

/// Runs a `DELETE … WHERE <time column> < ?1`; returns the rows deleted.
pub(crate) fn delete_before(conn: &Connection, sql: &str, t: DateTime<Utc>) -> Result<u64> {
    Ok(exec(conn, sql, &[ts(t)])? as u64)
}

/// Deletes old mail logs, attempts and finished outbox messages.
pub(crate) fn cleanup_deliveries(conn: &Connection, cutoff: DateTime<Utc>) -> Result<u64> {
    let mut n = delete_before(
        conn,
        "DELETE FROM mail_logs WHERE created_at < ?1 AND status <> 'queued'",
        cutoff,
    )?;
    n += delete_before(
        conn,
        "DELETE FROM delivery_attempts WHERE at < ?1 AND message_id IN \
         (SELECT id FROM outbox WHERE status IN ('delivered', 'cancelled'))",
        cutoff,
    )?;
    n += delete_before(
        conn,
        "DELETE FROM outbox WHERE created_at < ?1 AND status IN ('delivered', 'cancelled')",
        cutoff,
    )?;
    Ok(n)
}

/// Takes or renews a job lease (see `Store::try_lease`).
pub(crate) fn try_lease(
    conn: &Connection,
    name: &str,
    holder: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<bool> {
    let n = exec(
        conn,
        "INSERT INTO job_leases (name, holder, until) VALUES (?1, ?2, ?3) \
         ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until = excluded.until \
         WHERE job_leases.until <= ?4 OR job_leases.holder = excluded.holder",
        &[s(name), s(holder), ts(until), ts(now)],
    )?;
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_take_their_numbered_argument_wherever_they_appear() {
        let conn = Connection::open_in_memory().expect("open");
        let sql = "SELECT ?2, ?1, ?2 || ?3";
        let got = query(&conn, sql, &[s("a"), s("b"), s("c")], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
        })
        .expect("query");
        assert_eq!(got, vec![("b".into(), "a".into(), "bc".into())]);
        // Too few arguments is an error, not a panic.
        assert!(query(&conn, sql, &[s("a")], |_| Ok(())).is_err());
    }

    #[test]
    fn every_statement_numbers_its_parameters() {
        // A `$N` parameter is named, not numbered: `bind` would give it the
        // argument of its position, not of its number.
        let src = include_str!("write.rs");
        let dollar = src
            .as_bytes()
            .windows(2)
            .filter(|w| w[0] == b'$' && w[1].is_ascii_digit())
            .count();
        assert_eq!(dollar, 0, "write.rs has $N placeholders; SQLite statements here use ?N");
    }
}
