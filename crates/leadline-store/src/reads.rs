//! The reads both backends share through sqlx, compiled into each of them
//! (`#[path]` module of `sqlite` and `postgres`) against its own `Db`: SQLite
//! accepts PostgreSQL's `$1` placeholders, and both map our column types (TEXT
//! timestamps in SQLite, `timestamptz` in PostgreSQL) through sqlx.

use super::{Db, This};
use crate::StoreError;
use crate::common::{
    DEAD_LETTER_COLUMNS, ENDPOINT_COLUMNS, KEY_COLUMNS, LEAD_COLUMNS, MAIL_LOG_COLUMNS, OUTBOX_COLUMNS, TENANT_COLUMNS,
    like_pattern, text_enum,
};
use leadline_core::api_key::{ApiKey, KeyKind};
use leadline_core::audit::{ActorType, AuditEntry, AuditFilter, AuditScope};
use leadline_core::delivery::{
    Attempt, DeadLetter, MailLog, MailStatus, MessageKind, MessageStatus, OutboxMessage, Payload,
};
use leadline_core::id::AuditId;
use leadline_core::id::QuoteId;
use leadline_core::id::{ApiKeyId, LeadId, TenantId, YachtId};
use leadline_core::id::{DeadLetterId, MailId, MsgId, WebhookEndpointId};
use leadline_core::lead::{Consent, Guests, Lead, LeadFilter, LeadStatus, Utm};
use leadline_core::money::{Currency, Money};
use leadline_core::page::PageRequest;
use leadline_core::quote::{Booking, Quote, QuoteStatus};
use leadline_core::tenant::{Settings, Tenant, TenantStatus};
use leadline_core::text::Email;
use leadline_core::webhook::WebhookEndpoint;
use leadline_core::yacht::Yacht;
use sqlx::Row;
use sqlx::types::Json;

pub(super) type DbRow = <Db as sqlx::Database>::Row;

pub(super) fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(what.to_owned())
}

pub(super) fn tenant_from_row(r: &DbRow) -> crate::Result<Tenant> {
    let status: String = r.try_get("status")?;
    let Json(settings): Json<Settings> = r.try_get("settings")?;
    Ok(Tenant {
        id: TenantId::from_trusted(r.try_get("id")?),
        name: r.try_get("name")?,
        slug: r.try_get("slug")?,
        status: TenantStatus::from_db(&status).ok_or_else(|| corrupt("tenant status"))?,
        settings,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        version: r.try_get("version")?,
    })
}

pub(super) fn key_from_row(r: &DbRow) -> crate::Result<ApiKey> {
    let kind: String = r.try_get("kind")?;
    Ok(ApiKey {
        id: ApiKeyId::from_trusted(r.try_get("id")?),
        tenant_id: TenantId::from_trusted(r.try_get("tenant_id")?),
        kind: KeyKind::from_db(&kind).ok_or_else(|| corrupt("key kind"))?,
        prefix: r.try_get("prefix")?,
        hash: r.try_get("key_hash")?,
        created_at: r.try_get("created_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

pub(super) fn lead_from_row(r: &DbRow) -> crate::Result<Lead> {
    let status: String = r.try_get("status")?;
    let email: String = r.try_get("email")?;
    let adults: Option<i64> = r.try_get("guests_adults")?;
    let children: Option<i64> = r.try_get("guests_children")?;
    let guests = match (adults, children) {
        (Some(a), Some(c)) => Some(Guests {
            adults: u32::try_from(a).map_err(|_| corrupt("guests"))?,
            children: u32::try_from(c).map_err(|_| corrupt("guests"))?,
        }),
        _ => None,
    };
    let amount: Option<i64> = r.try_get("budget_amount")?;
    let currency: Option<String> = r.try_get("budget_currency")?;
    let budget = match (amount, currency) {
        (Some(amount), Some(c)) => Some(Money {
            amount,
            currency: Currency::parse(&c).map_err(|_| corrupt("currency"))?,
        }),
        _ => None,
    };
    let utm: Option<Json<Utm>> = r.try_get("utm")?;
    let Json(tags): Json<Vec<String>> = r.try_get("tags")?;
    let yacht_id: Option<String> = r.try_get("yacht_id")?;
    let duplicate_of: Option<String> = r.try_get("duplicate_of")?;
    Ok(Lead {
        id: LeadId::from_trusted(r.try_get("id")?),
        tenant_id: TenantId::from_trusted(r.try_get("tenant_id")?),
        status: LeadStatus::parse(&status).ok_or_else(|| corrupt("lead status"))?,
        name: r.try_get("name")?,
        email: Email::parse(&email).map_err(|_| corrupt("lead email"))?,
        phone: r.try_get("phone")?,
        phone_e164: r.try_get("phone_e164")?,
        charter_from: r.try_get("charter_from")?,
        charter_to: r.try_get("charter_to")?,
        flexible_dates: r.try_get("flexible_dates")?,
        guests,
        destination: r.try_get("destination")?,
        yacht_type: text_enum(r.try_get("yacht_type")?)?,
        charter_type: text_enum(r.try_get("charter_type")?)?,
        yacht_id: yacht_id.map(YachtId::from_trusted),
        budget,
        experience: r.try_get("experience")?,
        message: r.try_get("message")?,
        locale: r.try_get("locale")?,
        source: r.try_get("source")?,
        utm: utm.map(|j| j.0),
        consent: Consent {
            privacy_policy: r.try_get("consent_privacy")?,
            marketing: r.try_get("consent_marketing")?,
        },
        assigned_to: r.try_get("assigned_to")?,
        notes: r.try_get("notes")?,
        tags,
        duplicate_of: duplicate_of.map(LeadId::from_trusted),
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        version: r.try_get("version")?,
        erased_at: r.try_get("erased_at")?,
    })
}

pub(super) fn audit_from_row(r: &DbRow) -> crate::Result<AuditEntry> {
    let actor: String = r.try_get("actor_type")?;
    let tenant: Option<String> = r.try_get("tenant_id")?;
    let status: i64 = r.try_get("status")?;
    let Json(details): Json<serde_json::Value> = r.try_get("details")?;
    Ok(AuditEntry {
        id: AuditId::from_trusted(r.try_get("id")?),
        tenant_id: tenant.map(TenantId::from_trusted),
        at: r.try_get("at")?,
        actor_type: ActorType::from_db(&actor).ok_or_else(|| corrupt("actor type"))?,
        actor_id: r.try_get("actor_id")?,
        action: r.try_get("action")?,
        resource_type: r.try_get("resource_type")?,
        resource_id: r.try_get("resource_id")?,
        request_id: r.try_get("request_id")?,
        ip: r.try_get("ip")?,
        user_agent: r.try_get("user_agent")?,
        status: u16::try_from(status).map_err(|_| corrupt("audit status"))?,
        details,
    })
}

pub(super) fn endpoint_from_row(r: &DbRow) -> crate::Result<WebhookEndpoint> {
    let Json(events): Json<Vec<String>> = r.try_get("events")?;
    Ok(WebhookEndpoint {
        id: WebhookEndpointId::from_trusted(r.try_get("id")?),
        tenant_id: TenantId::from_trusted(r.try_get("tenant_id")?),
        url: r.try_get("url")?,
        events,
        description: r.try_get("description")?,
        enabled: r.try_get("enabled")?,
        disabled_reason: r.try_get("disabled_reason")?,
        secret: r.try_get("secret")?,
        previous_secret: r.try_get("previous_secret")?,
        previous_secret_until: r.try_get("previous_secret_until")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        version: r.try_get("version")?,
    })
}

pub(super) fn message_from_row(r: &DbRow) -> crate::Result<OutboxMessage> {
    let kind: String = r.try_get("kind")?;
    let status: String = r.try_get("status")?;
    let Json(payload): Json<Payload> = r.try_get("payload")?;
    let lead: Option<String> = r.try_get("lead_id")?;
    let attempts: i64 = r.try_get("attempts")?;
    Ok(OutboxMessage {
        id: MsgId::from_trusted(r.try_get("id")?),
        tenant_id: TenantId::from_trusted(r.try_get("tenant_id")?),
        kind: MessageKind::from_db(&kind).ok_or_else(|| corrupt("message kind"))?,
        lead_id: lead.map(LeadId::from_trusted),
        payload,
        status: MessageStatus::from_db(&status).ok_or_else(|| corrupt("message status"))?,
        attempts: u32::try_from(attempts).map_err(|_| corrupt("attempts"))?,
        next_attempt_at: r.try_get("next_attempt_at")?,
        locked_by: r.try_get("locked_by")?,
        locked_until: r.try_get("locked_until")?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
    })
}

pub(super) fn mail_log_from_row(r: &DbRow) -> crate::Result<MailLog> {
    let status: String = r.try_get("status")?;
    let lead: Option<String> = r.try_get("lead_id")?;
    let attempts: i64 = r.try_get("attempts")?;
    Ok(MailLog {
        id: MailId::from_trusted(r.try_get("id")?),
        tenant_id: TenantId::from_trusted(r.try_get("tenant_id")?),
        message_id: MsgId::from_trusted(r.try_get("message_id")?),
        lead_id: lead.map(LeadId::from_trusted),
        kind: r.try_get("kind")?,
        recipient: r.try_get("recipient")?,
        subject: r.try_get("subject")?,
        status: MailStatus::from_db(&status).ok_or_else(|| corrupt("mail status"))?,
        attempts: u32::try_from(attempts).map_err(|_| corrupt("attempts"))?,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

pub(super) fn dead_letter_from_row(r: &DbRow) -> crate::Result<DeadLetter> {
    let kind: String = r.try_get("kind")?;
    let Json(payload): Json<serde_json::Value> = r.try_get("payload")?;
    let Json(attempts): Json<Vec<Attempt>> = r.try_get("attempts")?;
    Ok(DeadLetter {
        id: DeadLetterId::from_trusted(r.try_get("id")?),
        tenant_id: TenantId::from_trusted(r.try_get("tenant_id")?),
        message_id: MsgId::from_trusted(r.try_get("message_id")?),
        kind: MessageKind::from_db(&kind).ok_or_else(|| corrupt("dead letter kind"))?,
        payload,
        attempts,
        last_error: r.try_get("last_error")?,
        created_at: r.try_get("created_at")?,
        replayed_at: r.try_get("replayed_at")?,
    })
}

pub(super) async fn q_get_message(pool: &sqlx::Pool<Db>, id: &MsgId) -> crate::Result<Option<OutboxMessage>> {
    let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = $1");
    let row = sqlx::query(&sql).bind(id.as_str()).fetch_optional(pool).await?;
    row.as_ref().map(message_from_row).transpose()
}

pub(super) async fn q_outbox_pending(pool: &sqlx::Pool<Db>) -> crate::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE status = 'pending'")
            .fetch_one(pool)
            .await?,
    )
}

pub(super) async fn q_get_endpoint(
    pool: &sqlx::Pool<Db>,
    tenant: &TenantId,
    id: &WebhookEndpointId,
) -> crate::Result<Option<WebhookEndpoint>> {
    let sql = format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL"
    );
    let row = sqlx::query(&sql)
        .bind(tenant.as_str())
        .bind(id.as_str())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(endpoint_from_row).transpose()
}

pub(super) async fn q_list_endpoints(pool: &sqlx::Pool<Db>, tenant: &TenantId) -> crate::Result<Vec<WebhookEndpoint>> {
    let sql = format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND deleted_at IS NULL ORDER BY id"
    );
    let rows = sqlx::query(&sql).bind(tenant.as_str()).fetch_all(pool).await?;
    rows.iter().map(endpoint_from_row).collect()
}

pub(super) async fn q_list_mail_logs(
    pool: &sqlx::Pool<Db>,
    tenant: &TenantId,
    page: &PageRequest,
) -> crate::Result<Vec<MailLog>> {
    let sql = format!(
        "SELECT {MAIL_LOG_COLUMNS} FROM mail_logs WHERE tenant_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY \
         id DESC LIMIT $3"
    );
    let rows = sqlx::query(&sql)
        .bind(tenant.as_str())
        .bind(page.after.as_deref())
        .bind(i64::from(page.limit) + 1)
        .fetch_all(pool)
        .await?;
    rows.iter().map(mail_log_from_row).collect()
}

pub(super) async fn q_list_dead_letters(
    pool: &sqlx::Pool<Db>,
    tenant: &TenantId,
    kind: Option<MessageKind>,
    page: &PageRequest,
) -> crate::Result<Vec<DeadLetter>> {
    let sql = format!(
        "SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE tenant_id = $1 AND ($2 IS NULL OR id < $2) \
         AND ($3 IS NULL OR kind = $3) ORDER BY id DESC LIMIT $4"
    );
    let rows = sqlx::query(&sql)
        .bind(tenant.as_str())
        .bind(page.after.as_deref())
        .bind(kind.map(|k| k.as_str()))
        .bind(i64::from(page.limit) + 1)
        .fetch_all(pool)
        .await?;
    rows.iter().map(dead_letter_from_row).collect()
}

pub(super) async fn q_get_dead_letter(
    pool: &sqlx::Pool<Db>,
    tenant: Option<&TenantId>,
    id: &DeadLetterId,
) -> crate::Result<Option<DeadLetter>> {
    let sql =
        format!("SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE id = $1 AND ($2 IS NULL OR tenant_id = $2)");
    let row = sqlx::query(&sql)
        .bind(id.as_str())
        .bind(tenant.map(|t| t.as_str()))
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(dead_letter_from_row).transpose()
}

pub(super) fn yacht_from_row(r: &DbRow) -> crate::Result<Yacht> {
    let Json(mut y): Json<Yacht> = r.try_get("data")?;
    y.tenant_id = TenantId::from_trusted(r.try_get("tenant_id")?);
    y.version = r.try_get("version")?;
    Ok(y)
}

pub(super) fn quote_from_row(r: &DbRow) -> crate::Result<Quote> {
    let Json(mut q): Json<Quote> = r.try_get("data")?;
    q.tenant_id = TenantId::from_trusted(r.try_get("tenant_id")?);
    q.version = r.try_get("version")?;
    q.token = r.try_get("token")?;
    let status: String = r.try_get("status")?;
    q.status = QuoteStatus::parse(&status).ok_or_else(|| corrupt("quote status"))?;
    Ok(q)
}

pub(super) fn booking_from_row(r: &DbRow) -> crate::Result<Booking> {
    Ok(Booking {
        id: leadline_core::id::BookingId::from_trusted(r.try_get("id")?),
        tenant_id: TenantId::from_trusted(r.try_get("tenant_id")?),
        yacht_id: YachtId::from_trusted(r.try_get("yacht_id")?),
        quote_id: QuoteId::from_trusted(r.try_get("quote_id")?),
        lead_id: LeadId::from_trusted(r.try_get("lead_id")?),
        charter_from: r.try_get("charter_from")?,
        charter_to: r.try_get("charter_to")?,
        created_at: r.try_get("created_at")?,
    })
}

pub(super) const QUOTE_COLUMNS: &str = "id, tenant_id, status, token, data, version";

pub(super) async fn q_get_yacht(
    pool: &sqlx::Pool<Db>,
    tenant: &TenantId,
    id: &YachtId,
) -> crate::Result<Option<Yacht>> {
    let row = sqlx::query("SELECT tenant_id, data, version FROM yachts WHERE tenant_id = $1 AND id = $2")
        .bind(tenant.as_str())
        .bind(id.as_str())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(yacht_from_row).transpose()
}

pub(super) async fn q_list_yachts(
    pool: &sqlx::Pool<Db>,
    tenant: &TenantId,
    archived: bool,
    page: &PageRequest,
) -> crate::Result<Vec<Yacht>> {
    let rows = sqlx::query(
        "SELECT tenant_id, data, version FROM yachts WHERE tenant_id = $1 AND ($2 IS NULL OR id < $2) \
         AND ($3 OR archived_at IS NULL) ORDER BY id DESC LIMIT $4",
    )
    .bind(tenant.as_str())
    .bind(page.after.as_deref())
    .bind(archived)
    .bind(i64::from(page.limit) + 1)
    .fetch_all(pool)
    .await?;
    rows.iter().map(yacht_from_row).collect()
}

pub(super) async fn q_get_quote(
    pool: &sqlx::Pool<Db>,
    tenant: &TenantId,
    id: &QuoteId,
) -> crate::Result<Option<Quote>> {
    let sql = format!("SELECT {QUOTE_COLUMNS} FROM quotes WHERE tenant_id = $1 AND id = $2");
    let row = sqlx::query(&sql)
        .bind(tenant.as_str())
        .bind(id.as_str())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(quote_from_row).transpose()
}

pub(super) async fn q_get_quote_by_token(pool: &sqlx::Pool<Db>, token: &str) -> crate::Result<Option<Quote>> {
    let sql = format!("SELECT {QUOTE_COLUMNS} FROM quotes WHERE token = $1");
    let row = sqlx::query(&sql).bind(token).fetch_optional(pool).await?;
    row.as_ref().map(quote_from_row).transpose()
}

pub(super) async fn q_list_quotes(
    pool: &sqlx::Pool<Db>,
    tenant: &TenantId,
    lead: Option<&LeadId>,
    status: Option<QuoteStatus>,
    page: &PageRequest,
) -> crate::Result<Vec<Quote>> {
    let sql = format!(
        "SELECT {QUOTE_COLUMNS} FROM quotes WHERE tenant_id = $1 AND ($2 IS NULL OR id < $2) \
         AND ($3 IS NULL OR lead_id = $3) AND ($4 IS NULL OR status = $4) ORDER BY id DESC LIMIT $5"
    );
    let rows = sqlx::query(&sql)
        .bind(tenant.as_str())
        .bind(page.after.as_deref())
        .bind(lead.map(|l| l.as_str()))
        .bind(status.map(|s| s.as_str()))
        .bind(i64::from(page.limit) + 1)
        .fetch_all(pool)
        .await?;
    rows.iter().map(quote_from_row).collect()
}

pub(super) async fn q_list_bookings(
    pool: &sqlx::Pool<Db>,
    tenant: &TenantId,
    yacht: &YachtId,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
) -> crate::Result<Vec<Booking>> {
    let rows = sqlx::query(
        "SELECT id, tenant_id, yacht_id, quote_id, lead_id, charter_from, charter_to, created_at FROM bookings \
         WHERE tenant_id = $1 AND yacht_id = $2 AND charter_from < $4 AND charter_to > $3 ORDER BY charter_from",
    )
    .bind(tenant.as_str())
    .bind(yacht.as_str())
    .bind(from)
    .bind(to)
    .fetch_all(pool)
    .await?;
    rows.iter().map(booking_from_row).collect()
}

pub(super) async fn q_list_held_quotes(
    pool: &sqlx::Pool<Db>,
    tenant: &TenantId,
    yacht: &YachtId,
    from: chrono::NaiveDate,
    to: chrono::NaiveDate,
    now: chrono::DateTime<chrono::Utc>,
) -> crate::Result<Vec<Quote>> {
    let sql = format!(
        "SELECT {QUOTE_COLUMNS} FROM quotes WHERE tenant_id = $1 AND yacht_id = $2 AND status = 'sent' \
         AND valid_until >= $5 AND charter_from < $4 AND charter_to > $3 ORDER BY charter_from"
    );
    let rows = sqlx::query(&sql)
        .bind(tenant.as_str())
        .bind(yacht.as_str())
        .bind(from)
        .bind(to)
        .bind(now)
        .fetch_all(pool)
        .await?;
    rows.iter().map(quote_from_row).collect()
}

pub(super) async fn q_stale_quotes(
    pool: &sqlx::Pool<Db>,
    now: chrono::DateTime<chrono::Utc>,
    limit: u32,
) -> crate::Result<Vec<Quote>> {
    let sql = format!(
        "SELECT {QUOTE_COLUMNS} FROM quotes WHERE status = 'sent' AND valid_until < $1 ORDER BY valid_until LIMIT $2"
    );
    let rows = sqlx::query(&sql)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
    rows.iter().map(quote_from_row).collect()
}

pub(super) async fn q_list_audit(
    pool: &sqlx::Pool<Db>,
    f: &AuditFilter,
    page: &PageRequest,
) -> crate::Result<Vec<AuditEntry>> {
    let mut qb = sqlx::QueryBuilder::<Db>::new(
        "SELECT id, tenant_id, at, actor_type, actor_id, action, resource_type, resource_id, request_id, ip, \
         user_agent, status, details FROM audit_logs WHERE 1 = 1",
    );
    if let AuditScope::Tenant(t) = &f.scope {
        qb.push(" AND tenant_id = ").push_bind(t.as_str().to_owned());
    }
    if let Some(after) = &page.after {
        qb.push(" AND id < ").push_bind(after.clone());
    }
    if let Some(a) = &f.action {
        qb.push(" AND action = ").push_bind(a.clone());
    }
    if let Some(t) = f.since {
        qb.push(" AND at >= ").push_bind(t);
    }
    if let Some(t) = f.until {
        qb.push(" AND at < ").push_bind(t);
    }
    if let Some(r) = &f.resource_id {
        qb.push(" AND resource_id = ").push_bind(r.clone());
    }
    qb.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(page.limit) + 1);
    let rows = qb.build().fetch_all(pool).await?;
    rows.iter().map(audit_from_row).collect()
}

pub(super) async fn q_get_tenant(pool: &sqlx::Pool<Db>, id: &TenantId) -> crate::Result<Option<Tenant>> {
    let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1");
    let row = sqlx::query(&sql).bind(id.as_str()).fetch_optional(pool).await?;
    row.as_ref().map(tenant_from_row).transpose()
}

pub(super) async fn q_get_tenant_by_slug(pool: &sqlx::Pool<Db>, slug: &str) -> crate::Result<Option<Tenant>> {
    let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE slug = $1");
    let row = sqlx::query(&sql).bind(slug).fetch_optional(pool).await?;
    row.as_ref().map(tenant_from_row).transpose()
}

pub(super) async fn q_list_tenants(pool: &sqlx::Pool<Db>, page: &PageRequest) -> crate::Result<Vec<Tenant>> {
    let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2");
    let rows = sqlx::query(&sql)
        .bind(page.after.as_deref())
        .bind(i64::from(page.limit) + 1)
        .fetch_all(pool)
        .await?;
    rows.iter().map(tenant_from_row).collect()
}

pub(super) async fn q_find_api_key(pool: &sqlx::Pool<Db>, hash: &str) -> crate::Result<Option<(ApiKey, Tenant)>> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1");
    let Some(row) = sqlx::query(&sql).bind(hash).fetch_optional(pool).await? else {
        return Ok(None);
    };
    let key = key_from_row(&row)?;
    let tenant = q_get_tenant(pool, &key.tenant_id)
        .await?
        .ok_or_else(|| corrupt("key without tenant"))?;
    Ok(Some((key, tenant)))
}

pub(super) async fn q_list_api_keys(pool: &sqlx::Pool<Db>, tenant: &TenantId) -> crate::Result<Vec<ApiKey>> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY id DESC");
    let rows = sqlx::query(&sql).bind(tenant.as_str()).fetch_all(pool).await?;
    rows.iter().map(key_from_row).collect()
}

pub(super) async fn q_get_lead(pool: &sqlx::Pool<Db>, tenant: &TenantId, id: &LeadId) -> crate::Result<Option<Lead>> {
    let sql = format!("SELECT {LEAD_COLUMNS} FROM leads WHERE tenant_id = $1 AND id = $2 AND erased_at IS NULL");
    let row = sqlx::query(&sql)
        .bind(tenant.as_str())
        .bind(id.as_str())
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(lead_from_row).transpose()
}

pub(super) async fn q_list_leads(
    pool: &sqlx::Pool<Db>,
    tenant: &TenantId,
    f: &LeadFilter,
    page: &PageRequest,
) -> crate::Result<Vec<Lead>> {
    let mut qb = sqlx::QueryBuilder::<Db>::new(format!("SELECT {LEAD_COLUMNS} FROM leads WHERE tenant_id = "));
    qb.push_bind(tenant.as_str().to_owned()).push(" AND erased_at IS NULL");
    if let Some(after) = &page.after {
        qb.push(" AND id < ").push_bind(after.clone());
    }
    if let Some(s) = f.status {
        qb.push(" AND status = ").push_bind(s.as_str());
    }
    if let Some(t) = f.created_after {
        qb.push(" AND created_at >= ").push_bind(t);
    }
    if let Some(t) = f.created_before {
        qb.push(" AND created_at < ").push_bind(t);
    }
    if let Some(y) = &f.yacht_id {
        qb.push(" AND yacht_id = ").push_bind(y.as_str().to_owned());
    }
    if let Some(q) = &f.q {
        let text = like_pattern(&q.to_lowercase());
        qb.push(" AND (name_key LIKE ")
            .push_bind(text.clone())
            .push(" ESCAPE '\\'");
        qb.push(" OR email_key LIKE ").push_bind(text).push(" ESCAPE '\\'");
        let digits: String = q.chars().filter(char::is_ascii_digit).collect();
        if digits.len() >= 3 {
            qb.push(" OR phone_e164 LIKE ")
                .push_bind(like_pattern(&digits))
                .push(" ESCAPE '\\'");
        }
        qb.push(")");
    }
    qb.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(page.limit) + 1);
    let rows = qb.build().fetch_all(pool).await?;
    rows.iter().map(lead_from_row).collect()
}

#[async_trait::async_trait]
impl crate::Reads for This {
    async fn find_api_key(&self, hash: &str) -> crate::Result<Option<(ApiKey, Tenant)>> {
        self.cache.key(hash, q_find_api_key(self.read_pool(), hash)).await
    }

    async fn list_endpoints(&self, tenant: &TenantId) -> crate::Result<Vec<WebhookEndpoint>> {
        self.cache
            .endpoints(tenant, q_list_endpoints(self.read_pool(), tenant))
            .await
    }

    async fn get_dead_letter(&self, tenant: Option<&TenantId>, id: &DeadLetterId) -> crate::Result<Option<DeadLetter>> {
        q_get_dead_letter(self.read_pool(), tenant, id).await
    }

    async fn get_endpoint(&self, tenant: &TenantId, id: &WebhookEndpointId) -> crate::Result<Option<WebhookEndpoint>> {
        q_get_endpoint(self.read_pool(), tenant, id).await
    }

    async fn get_lead(&self, tenant: &TenantId, id: &LeadId) -> crate::Result<Option<Lead>> {
        q_get_lead(self.read_pool(), tenant, id).await
    }

    async fn get_message(&self, id: &MsgId) -> crate::Result<Option<OutboxMessage>> {
        q_get_message(self.read_pool(), id).await
    }

    async fn get_quote(&self, tenant: &TenantId, id: &QuoteId) -> crate::Result<Option<Quote>> {
        q_get_quote(self.read_pool(), tenant, id).await
    }

    async fn get_quote_by_token(&self, token: &str) -> crate::Result<Option<Quote>> {
        q_get_quote_by_token(self.read_pool(), token).await
    }

    async fn get_tenant(&self, id: &TenantId) -> crate::Result<Option<Tenant>> {
        q_get_tenant(self.read_pool(), id).await
    }

    async fn get_tenant_by_slug(&self, slug: &str) -> crate::Result<Option<Tenant>> {
        q_get_tenant_by_slug(self.read_pool(), slug).await
    }

    async fn get_yacht(&self, tenant: &TenantId, id: &YachtId) -> crate::Result<Option<Yacht>> {
        q_get_yacht(self.read_pool(), tenant, id).await
    }

    async fn list_api_keys(&self, tenant: &TenantId) -> crate::Result<Vec<ApiKey>> {
        q_list_api_keys(self.read_pool(), tenant).await
    }

    async fn list_audit(&self, filter: &AuditFilter, page: &PageRequest) -> crate::Result<Vec<AuditEntry>> {
        q_list_audit(self.read_pool(), filter, page).await
    }

    async fn list_bookings(
        &self,
        tenant: &TenantId,
        yacht: &YachtId,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    ) -> crate::Result<Vec<Booking>> {
        q_list_bookings(self.read_pool(), tenant, yacht, from, to).await
    }

    async fn list_dead_letters(
        &self,
        tenant: &TenantId,
        kind: Option<MessageKind>,
        page: &PageRequest,
    ) -> crate::Result<Vec<DeadLetter>> {
        q_list_dead_letters(self.read_pool(), tenant, kind, page).await
    }

    async fn list_held_quotes(
        &self,
        tenant: &TenantId,
        yacht: &YachtId,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
        now: chrono::DateTime<chrono::Utc>,
    ) -> crate::Result<Vec<Quote>> {
        q_list_held_quotes(self.read_pool(), tenant, yacht, from, to, now).await
    }

    async fn list_leads(&self, tenant: &TenantId, filter: &LeadFilter, page: &PageRequest) -> crate::Result<Vec<Lead>> {
        q_list_leads(self.read_pool(), tenant, filter, page).await
    }

    async fn list_mail_logs(&self, tenant: &TenantId, page: &PageRequest) -> crate::Result<Vec<MailLog>> {
        q_list_mail_logs(self.read_pool(), tenant, page).await
    }

    async fn list_quotes(
        &self,
        tenant: &TenantId,
        lead: Option<&LeadId>,
        status: Option<QuoteStatus>,
        page: &PageRequest,
    ) -> crate::Result<Vec<Quote>> {
        q_list_quotes(self.read_pool(), tenant, lead, status, page).await
    }

    async fn list_tenants(&self, page: &PageRequest) -> crate::Result<Vec<Tenant>> {
        q_list_tenants(self.read_pool(), page).await
    }

    async fn list_yachts(
        &self,
        tenant: &TenantId,
        include_archived: bool,
        page: &PageRequest,
    ) -> crate::Result<Vec<Yacht>> {
        q_list_yachts(self.read_pool(), tenant, include_archived, page).await
    }

    async fn outbox_pending(&self) -> crate::Result<i64> {
        q_outbox_pending(self.read_pool()).await
    }

    async fn stale_quotes(&self, now: chrono::DateTime<chrono::Utc>, limit: u32) -> crate::Result<Vec<Quote>> {
        q_stale_quotes(self.read_pool(), now, limit).await
    }
}
