//! Queries shared through sqlx: the reads of both backends, and PostgreSQL's writes.
//!
//! SQLite accepts PostgreSQL's `$1` placeholders and both map our column types
//! (TEXT timestamps in SQLite, `timestamptz` in PostgreSQL) through sqlx, so the
//! reads are shared: [`common_queries!`] expands them inside each backend module
//! against its own `Db` type. [`common_writes!`] expands the writes in the
//! PostgreSQL module; SQLite's single writer thread runs the same statements through
//! rusqlite (`sqlite/write.rs`). What differs (locking, transactions, pools) stays in
//! the backend module.

/// A snake_case serde enum as its stored text.
pub(crate) fn enum_text<T: serde::Serialize>(v: &T) -> Option<String> {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => Some(s),
        _ => None,
    }
}

/// Stored text back to a serde enum.
pub(crate) fn text_enum<T: serde::de::DeserializeOwned>(s: Option<String>) -> crate::Result<Option<T>> {
    s.map(|s| {
        serde_json::from_value(serde_json::Value::String(s.clone()))
            .map_err(|_| crate::StoreError::Corrupt(format!("enum value {s:?}")))
    })
    .transpose()
}

/// `%text%` for LIKE with `\` as the escape character.
pub(crate) fn like_pattern(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('%');
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

pub(crate) const LEAD_COLUMNS: &str = "id, tenant_id, status, name, email, phone, phone_e164, charter_from, charter_to, \
    flexible_dates, guests_adults, guests_children, destination, yacht_type, charter_type, yacht_id, \
    budget_amount, budget_currency, experience, message, locale, source, utm, consent_privacy, \
    consent_marketing, assigned_to, notes, tags, duplicate_of, created_at, updated_at, version, erased_at";

pub(crate) const ENDPOINT_COLUMNS: &str = "id, tenant_id, url, events, description, enabled, disabled_reason, secret, \
    previous_secret, previous_secret_until, created_at, updated_at, version";
pub(crate) const OUTBOX_COLUMNS: &str = "id, tenant_id, kind, lead_id, payload, status, attempts, next_attempt_at, \
    locked_by, locked_until, last_error, created_at";
pub(crate) const MAIL_LOG_COLUMNS: &str = "id, tenant_id, message_id, lead_id, kind, recipient, subject, status, attempts, \
    last_error, created_at, updated_at";
pub(crate) const DEAD_LETTER_COLUMNS: &str =
    "id, tenant_id, message_id, kind, payload, attempts, last_error, created_at, replayed_at";

pub(crate) const TENANT_COLUMNS: &str = "id, name, slug, status, settings, created_at, updated_at, version";
pub(crate) const KEY_COLUMNS: &str = "id, tenant_id, kind, prefix, key_hash, created_at, revoked_at";

/// Expands the shared reads in a backend module that defines `Db` (the sqlx
/// database).
macro_rules! common_queries {
    () => {
        use leadline_core::api_key::{ApiKey, KeyKind};
        use leadline_core::audit::{ActorType, AuditEntry, AuditFilter, AuditScope};
        use leadline_core::change::ChangeSet;
        use leadline_core::id::AuditId;
        use $crate::{ClaimOutcome, IdempotencyClaim};
        use leadline_core::id::{ApiKeyId, LeadId, TenantId, YachtId};
        use leadline_core::lead::{Consent, Guests, Lead, LeadFilter, LeadStatus, Utm};
        use leadline_core::money::{Currency, Money};
        use leadline_core::page::PageRequest;
        use leadline_core::tenant::{Settings, Tenant, TenantStatus};
        use leadline_core::text::Email;
        use sqlx::Row;
        use sqlx::types::Json;
        use $crate::common::{
            DEAD_LETTER_COLUMNS, ENDPOINT_COLUMNS, KEY_COLUMNS, LEAD_COLUMNS, MAIL_LOG_COLUMNS, OUTBOX_COLUMNS, TENANT_COLUMNS,
            like_pattern, text_enum,
        };
        use leadline_core::delivery::{
            Attempt, AttemptReport, DeadLetter, MailLog, MailStatus, MessageKind, MessageStatus, OutboxMessage, Payload,
        };
        use leadline_core::id::{DeadLetterId, MailId, MsgId, WebhookEndpointId};
        use leadline_core::webhook::WebhookEndpoint;
        use leadline_core::id::QuoteId;
        use leadline_core::quote::{Booking, Quote, QuoteStatus};
        use leadline_core::yacht::Yacht;
        use $crate::{Committed, StoreError};

        type DbRow = <Db as sqlx::Database>::Row;

        fn corrupt(what: &str) -> StoreError {
            StoreError::Corrupt(what.to_owned())
        }

        fn tenant_from_row(r: &DbRow) -> $crate::Result<Tenant> {
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

        fn key_from_row(r: &DbRow) -> $crate::Result<ApiKey> {
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

        fn lead_from_row(r: &DbRow) -> $crate::Result<Lead> {
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
                (Some(amount), Some(c)) => Some(Money { amount, currency: Currency::parse(&c).map_err(|_| corrupt("currency"))? }),
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
                consent: Consent { privacy_policy: r.try_get("consent_privacy")?, marketing: r.try_get("consent_marketing")? },
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

        fn audit_from_row(r: &DbRow) -> $crate::Result<AuditEntry> {
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

        fn endpoint_from_row(r: &DbRow) -> $crate::Result<WebhookEndpoint> {
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

        fn message_from_row(r: &DbRow) -> $crate::Result<OutboxMessage> {
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

        fn mail_log_from_row(r: &DbRow) -> $crate::Result<MailLog> {
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

        fn dead_letter_from_row(r: &DbRow) -> $crate::Result<DeadLetter> {
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

        async fn q_get_message(pool: &sqlx::Pool<Db>, id: &MsgId) -> $crate::Result<Option<OutboxMessage>> {
            let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = $1");
            let row = sqlx::query(&sql).bind(id.as_str()).fetch_optional(pool).await?;
            row.as_ref().map(message_from_row).transpose()
        }

        async fn q_outbox_pending(pool: &sqlx::Pool<Db>) -> $crate::Result<i64> {
            Ok(sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE status = 'pending'").fetch_one(pool).await?)
        }

        async fn q_get_endpoint(pool: &sqlx::Pool<Db>, tenant: &TenantId, id: &WebhookEndpointId) -> $crate::Result<Option<WebhookEndpoint>> {
            let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL");
            let row = sqlx::query(&sql).bind(tenant.as_str()).bind(id.as_str()).fetch_optional(pool).await?;
            row.as_ref().map(endpoint_from_row).transpose()
        }

        async fn q_list_endpoints(pool: &sqlx::Pool<Db>, tenant: &TenantId) -> $crate::Result<Vec<WebhookEndpoint>> {
            let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND deleted_at IS NULL ORDER BY id");
            let rows = sqlx::query(&sql).bind(tenant.as_str()).fetch_all(pool).await?;
            rows.iter().map(endpoint_from_row).collect()
        }

        async fn q_list_mail_logs(pool: &sqlx::Pool<Db>, tenant: &TenantId, page: &PageRequest) -> $crate::Result<Vec<MailLog>> {
            let sql = format!(
                "SELECT {MAIL_LOG_COLUMNS} FROM mail_logs WHERE tenant_id = $1 AND ($2 IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
            );
            let rows = sqlx::query(&sql)
                .bind(tenant.as_str())
                .bind(page.after.as_deref())
                .bind(i64::from(page.limit) + 1)
                .fetch_all(pool)
                .await?;
            rows.iter().map(mail_log_from_row).collect()
        }

        async fn q_list_dead_letters(
            pool: &sqlx::Pool<Db>,
            tenant: &TenantId,
            kind: Option<MessageKind>,
            page: &PageRequest,
        ) -> $crate::Result<Vec<DeadLetter>> {
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

        async fn q_get_dead_letter(pool: &sqlx::Pool<Db>, tenant: Option<&TenantId>, id: &DeadLetterId) -> $crate::Result<Option<DeadLetter>> {
            let sql = format!("SELECT {DEAD_LETTER_COLUMNS} FROM dead_letters WHERE id = $1 AND ($2 IS NULL OR tenant_id = $2)");
            let row = sqlx::query(&sql).bind(id.as_str()).bind(tenant.map(|t| t.as_str())).fetch_optional(pool).await?;
            row.as_ref().map(dead_letter_from_row).transpose()
        }

        fn yacht_from_row(r: &DbRow) -> $crate::Result<Yacht> {
            let Json(mut y): Json<Yacht> = r.try_get("data")?;
            y.tenant_id = TenantId::from_trusted(r.try_get("tenant_id")?);
            y.version = r.try_get("version")?;
            Ok(y)
        }

        fn quote_from_row(r: &DbRow) -> $crate::Result<Quote> {
            let Json(mut q): Json<Quote> = r.try_get("data")?;
            q.tenant_id = TenantId::from_trusted(r.try_get("tenant_id")?);
            q.version = r.try_get("version")?;
            q.token = r.try_get("token")?;
            let status: String = r.try_get("status")?;
            q.status = QuoteStatus::parse(&status).ok_or_else(|| corrupt("quote status"))?;
            Ok(q)
        }

        fn booking_from_row(r: &DbRow) -> $crate::Result<Booking> {
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

        const QUOTE_COLUMNS: &str = "id, tenant_id, status, token, data, version";

        async fn q_get_yacht(pool: &sqlx::Pool<Db>, tenant: &TenantId, id: &YachtId) -> $crate::Result<Option<Yacht>> {
            let row = sqlx::query("SELECT tenant_id, data, version FROM yachts WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_str())
                .bind(id.as_str())
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(yacht_from_row).transpose()
        }

        async fn q_list_yachts(pool: &sqlx::Pool<Db>, tenant: &TenantId, archived: bool, page: &PageRequest) -> $crate::Result<Vec<Yacht>> {
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

        async fn q_get_quote(pool: &sqlx::Pool<Db>, tenant: &TenantId, id: &QuoteId) -> $crate::Result<Option<Quote>> {
            let sql = format!("SELECT {QUOTE_COLUMNS} FROM quotes WHERE tenant_id = $1 AND id = $2");
            let row = sqlx::query(&sql).bind(tenant.as_str()).bind(id.as_str()).fetch_optional(pool).await?;
            row.as_ref().map(quote_from_row).transpose()
        }

        async fn q_get_quote_by_token(pool: &sqlx::Pool<Db>, token: &str) -> $crate::Result<Option<Quote>> {
            let sql = format!("SELECT {QUOTE_COLUMNS} FROM quotes WHERE token = $1");
            let row = sqlx::query(&sql).bind(token).fetch_optional(pool).await?;
            row.as_ref().map(quote_from_row).transpose()
        }

        async fn q_list_quotes(
            pool: &sqlx::Pool<Db>,
            tenant: &TenantId,
            lead: Option<&LeadId>,
            status: Option<QuoteStatus>,
            page: &PageRequest,
        ) -> $crate::Result<Vec<Quote>> {
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

        async fn q_list_bookings(
            pool: &sqlx::Pool<Db>,
            tenant: &TenantId,
            yacht: &YachtId,
            from: chrono::NaiveDate,
            to: chrono::NaiveDate,
        ) -> $crate::Result<Vec<Booking>> {
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

        async fn q_list_held_quotes(
            pool: &sqlx::Pool<Db>,
            tenant: &TenantId,
            yacht: &YachtId,
            from: chrono::NaiveDate,
            to: chrono::NaiveDate,
            now: chrono::DateTime<chrono::Utc>,
        ) -> $crate::Result<Vec<Quote>> {
            let sql = format!(
                "SELECT {QUOTE_COLUMNS} FROM quotes WHERE tenant_id = $1 AND yacht_id = $2 AND status = 'sent' \
                 AND valid_until >= $5 AND charter_from < $4 AND charter_to > $3 ORDER BY charter_from"
            );
            let rows = sqlx::query(&sql).bind(tenant.as_str()).bind(yacht.as_str()).bind(from).bind(to).bind(now).fetch_all(pool).await?;
            rows.iter().map(quote_from_row).collect()
        }

        async fn q_stale_quotes(pool: &sqlx::Pool<Db>, now: chrono::DateTime<chrono::Utc>, limit: u32) -> $crate::Result<Vec<Quote>> {
            let sql = format!("SELECT {QUOTE_COLUMNS} FROM quotes WHERE status = 'sent' AND valid_until < $1 ORDER BY valid_until LIMIT $2");
            let rows = sqlx::query(&sql).bind(now).bind(i64::from(limit)).fetch_all(pool).await?;
            rows.iter().map(quote_from_row).collect()
        }

        async fn q_list_audit(pool: &sqlx::Pool<Db>, f: &AuditFilter, page: &PageRequest) -> $crate::Result<Vec<AuditEntry>> {
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

        async fn q_get_tenant(pool: &sqlx::Pool<Db>, id: &TenantId) -> $crate::Result<Option<Tenant>> {
            let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1");
            let row = sqlx::query(&sql).bind(id.as_str()).fetch_optional(pool).await?;
            row.as_ref().map(tenant_from_row).transpose()
        }

        async fn q_get_tenant_by_slug(pool: &sqlx::Pool<Db>, slug: &str) -> $crate::Result<Option<Tenant>> {
            let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE slug = $1");
            let row = sqlx::query(&sql).bind(slug).fetch_optional(pool).await?;
            row.as_ref().map(tenant_from_row).transpose()
        }

        async fn q_list_tenants(pool: &sqlx::Pool<Db>, page: &PageRequest) -> $crate::Result<Vec<Tenant>> {
            let sql = format!(
                "SELECT {TENANT_COLUMNS} FROM tenants WHERE ($1 IS NULL OR id < $1) ORDER BY id DESC LIMIT $2"
            );
            let rows = sqlx::query(&sql)
                .bind(page.after.as_deref())
                .bind(i64::from(page.limit) + 1)
                .fetch_all(pool)
                .await?;
            rows.iter().map(tenant_from_row).collect()
        }

        async fn q_find_api_key(pool: &sqlx::Pool<Db>, hash: &str) -> $crate::Result<Option<(ApiKey, Tenant)>> {
            let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1");
            let Some(row) = sqlx::query(&sql).bind(hash).fetch_optional(pool).await? else {
                return Ok(None);
            };
            let key = key_from_row(&row)?;
            let tenant = q_get_tenant(pool, &key.tenant_id).await?.ok_or_else(|| corrupt("key without tenant"))?;
            Ok(Some((key, tenant)))
        }

        async fn q_list_api_keys(pool: &sqlx::Pool<Db>, tenant: &TenantId) -> $crate::Result<Vec<ApiKey>> {
            let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY id DESC");
            let rows = sqlx::query(&sql).bind(tenant.as_str()).fetch_all(pool).await?;
            rows.iter().map(key_from_row).collect()
        }

        async fn q_get_lead(pool: &sqlx::Pool<Db>, tenant: &TenantId, id: &LeadId) -> $crate::Result<Option<Lead>> {
            let sql = format!("SELECT {LEAD_COLUMNS} FROM leads WHERE tenant_id = $1 AND id = $2 AND erased_at IS NULL");
            let row = sqlx::query(&sql).bind(tenant.as_str()).bind(id.as_str()).fetch_optional(pool).await?;
            row.as_ref().map(lead_from_row).transpose()
        }

        async fn q_list_leads(
            pool: &sqlx::Pool<Db>,
            tenant: &TenantId,
            f: &LeadFilter,
            page: &PageRequest,
        ) -> $crate::Result<Vec<Lead>> {
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
                qb.push(" AND (name_key LIKE ").push_bind(text.clone()).push(" ESCAPE '\\'");
                qb.push(" OR email_key LIKE ").push_bind(text).push(" ESCAPE '\\'");
                let digits: String = q.chars().filter(char::is_ascii_digit).collect();
                if digits.len() >= 3 {
                    qb.push(" OR phone_e164 LIKE ").push_bind(like_pattern(&digits)).push(" ESCAPE '\\'");
                }
                qb.push(")");
            }
            qb.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(page.limit) + 1);
            let rows = qb.build().fetch_all(pool).await?;
            rows.iter().map(lead_from_row).collect()
        }
    };
}

pub(crate) use common_queries;

/// Expands the shared writes (sqlx, inside the caller's transaction) in a backend
/// module that has expanded [`common_queries!`] and defines `Conn` (its connection),
/// `ROW_LOCK` and `async fn lock_dedupe(&mut Conn, &str)`. PostgreSQL writes
/// through these; SQLite's single writer has its own synchronous port of them
/// (`sqlite/write.rs`).
macro_rules! common_writes {
    () => {
        use leadline_core::change::{Change, IdempotentResponse};
        use $crate::common::enum_text;

        /// Binds every lead column in `LEAD_COLUMNS` order, then `name_key`,
        /// `email_key` and `dedupe_key` ($34-$36).
        fn bind_lead<'q>(
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
        async fn claim_due_in(
            conn: &mut Conn,
            worker: &str,
            now: chrono::DateTime<chrono::Utc>,
            until: chrono::DateTime<chrono::Utc>,
            limit: u32,
            lock: &str,
        ) -> $crate::Result<Vec<OutboxMessage>> {
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

        /// Records an attempt inside the caller's transaction (see `Store::report_attempt`).
        async fn report_in(conn: &mut Conn, rep: &AttemptReport, lock: &str) -> $crate::Result<bool> {
            let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = $1{lock}");
            let Some(row) = sqlx::query(&sql).bind(rep.message_id.as_str()).fetch_optional(&mut *conn).await? else {
                return Ok(false);
            };
            let msg = message_from_row(&row)?;
            if msg.status != MessageStatus::Pending || msg.locked_by.as_deref() != Some(rep.worker.as_str()) {
                return Ok(false);
            }
            let a = &rep.attempt;
            sqlx::query(
                "INSERT INTO delivery_attempts (id, message_id, attempt, at, success, code, detail, latency_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(format!("{}-{}", msg.id, ulid_text()))
            .bind(msg.id.as_str())
            .bind(i64::from(a.attempt))
            .bind(a.at)
            .bind(a.success)
            .bind(a.code.map(i64::from))
            .bind(&a.detail)
            .bind(i64::try_from(a.latency_ms).unwrap_or(i64::MAX))
            .execute(&mut *conn)
            .await?;
            let attempts = i64::from(a.attempt);
            let (status, mail_status) = if a.success {
                ("delivered", "sent")
            } else if rep.retry_at.is_some() {
                ("pending", "queued")
            } else {
                ("dead", "failed")
            };
            let last_error = if a.success { None } else { a.detail.clone() };
            sqlx::query(
                "UPDATE outbox SET status = $2, attempts = $3, next_attempt_at = COALESCE($4, next_attempt_at), \
                 locked_by = NULL, locked_until = NULL, last_error = $5, updated_at = $6 WHERE id = $1",
            )
            .bind(msg.id.as_str())
            .bind(status)
            .bind(attempts)
            .bind(rep.retry_at)
            .bind(&last_error)
            .bind(a.at)
            .execute(&mut *conn)
            .await?;
            sqlx::query("UPDATE mail_logs SET status = $2, attempts = $3, last_error = $4, updated_at = $5 WHERE message_id = $1")
                .bind(msg.id.as_str())
                .bind(mail_status)
                .bind(attempts)
                .bind(&last_error)
                .bind(a.at)
                .execute(&mut *conn)
                .await?;
            if status == "dead" {
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
                    "INSERT INTO dead_letters (id, tenant_id, message_id, kind, lead_id, payload, attempts, last_error, created_at) \
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
            if rep.disable_endpoint {
                if let Payload::Webhook(w) = &msg.payload {
                    sqlx::query(
                        "UPDATE webhook_endpoints SET enabled = $2, disabled_reason = $3, updated_at = $4, version = version + 1 \
                         WHERE id = $1",
                    )
                    .bind(w.endpoint_id.as_str())
                    .bind(false)
                    .bind("The receiver answered 410 Gone.")
                    .bind(a.at)
                    .execute(&mut *conn)
                    .await?;
                }
            }
            Ok(true)
        }

        fn ulid_text() -> String {
            MsgId::generate().as_str()[4..].to_owned()
        }

        /// Claims an idempotency record inside the caller's transaction;
        /// `for_update` locks the row where the backend needs it.
        async fn claim_in(conn: &mut Conn, c: &IdempotencyClaim, for_update: &str) -> $crate::Result<ClaimOutcome> {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (scope, key, method, path, fingerprint, state, locked_until, created_at, expires_at, holder) \
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
            let Some(row) = sqlx::query(&sql).bind(&c.scope).bind(&c.key).fetch_optional(&mut *conn).await? else {
                return Ok(ClaimOutcome::InFlight);
            };
            let expires_at: chrono::DateTime<chrono::Utc> = row.try_get("expires_at")?;
            let locked_until: chrono::DateTime<chrono::Utc> = row.try_get("locked_until")?;
            let state: String = row.try_get("state")?;
            let same = row.try_get::<String, _>("method")? == c.method
                && row.try_get::<String, _>("path")? == c.path
                && row.try_get::<String, _>("fingerprint")? == c.fingerprint;
            let holder: Option<String> = row.try_get("holder")?;
            let take_over = c.may_take_over(&$crate::FoundClaim {
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
            let status: i64 = row.try_get::<Option<i64>, _>("response_status")?.ok_or_else(|| corrupt("idempotent status"))?;
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
        fn bind_endpoint<'q>(
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
        async fn apply(conn: &mut Conn, change: &Change, out: &mut Committed) -> $crate::Result<()> {
            match change {
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
                    bind_lead(sqlx::query(&sql), &lead).execute(&mut *conn).await.map_err(StoreError::from_db)?;
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
                    let done = bind_lead(sqlx::query(sql), lead).execute(&mut *conn).await.map_err(StoreError::from_db)?;
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
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, NULL, NULL, $10, $10)",
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
                    .execute(&mut *conn)
                    .await
                    .map_err(StoreError::from_db)?;
                }
                Change::InsertMailLog(l) => {
                    sqlx::query(
                        "INSERT INTO mail_logs (id, tenant_id, message_id, lead_id, kind, recipient, subject, status, \
                         attempts, last_error, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
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
                    let sql = "INSERT INTO webhook_endpoints (id, tenant_id, url, events, description, enabled, disabled_reason, \
                         secret, previous_secret, previous_secret_until, updated_at, version, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
                    bind_endpoint(sqlx::query(sql), e).bind(e.created_at).execute(&mut *conn).await.map_err(StoreError::from_db)?;
                }
                Change::UpdateEndpoint(e) => {
                    let sql = "UPDATE webhook_endpoints SET url = $3, events = $4, description = $5, enabled = $6, \
                         disabled_reason = $7, secret = $8, previous_secret = $9, previous_secret_until = $10, \
                         updated_at = $11, version = $12 \
                         WHERE id = $1 AND tenant_id = $2 AND version = $12 - 1 AND deleted_at IS NULL";
                    let done = bind_endpoint(sqlx::query(sql), e).execute(&mut *conn).await.map_err(StoreError::from_db)?;
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
                    sqlx::query("UPDATE dead_letters SET payload = $3, attempts = $4, last_error = NULL WHERE tenant_id = $1 AND lead_id = $2")
                        .bind(tenant_id.as_str())
                        .bind(lead_id.as_str())
                        .bind(&erased)
                        .bind(Json(Vec::<Attempt>::new()))
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query(
                        "UPDATE idempotency_keys SET response_status = 410, response_content_type = 'application/problem+json', \
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
                    let row = sqlx::query("SELECT message_id FROM dead_letters WHERE id = $1 AND tenant_id = $2 AND replayed_at IS NULL")
                        .bind(id.as_str())
                        .bind(tenant_id.as_str())
                        .fetch_optional(&mut *conn)
                        .await?;
                    let Some(row) = row else { return Err(StoreError::Stale) };
                    let message_id: String = row.try_get("message_id")?;
                    sqlx::query("UPDATE dead_letters SET replayed_at = $2 WHERE id = $1").bind(id.as_str()).bind(*at).execute(&mut *conn).await?;
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
                         charter_to, data, created_at, updated_at, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
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
                    sqlx::query(&lock).bind(b.yacht_id.as_str()).bind(b.tenant_id.as_str()).fetch_optional(&mut *conn).await?;
                    let taken: Option<String> = sqlx::query_scalar(
                        "SELECT id FROM bookings WHERE yacht_id = $1 AND charter_from < $3 AND charter_to > $2 LIMIT 1",
                    )
                    .bind(b.yacht_id.as_str())
                    .bind(b.charter_from)
                    .bind(b.charter_to)
                    .fetch_optional(&mut *conn)
                    .await?;
                    if taken.is_some() {
                        return Err(StoreError::Conflict(crate::Conflict::BookingOverlap));
                    }
                    sqlx::query(
                        "INSERT INTO bookings (id, tenant_id, yacht_id, quote_id, lead_id, charter_from, charter_to, created_at) \
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
        async fn apply_set(conn: &mut Conn, cs: ChangeSet) -> $crate::Result<Committed> {
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
        async fn delete_before(conn: &mut Conn, sql: &str, t: chrono::DateTime<chrono::Utc>) -> $crate::Result<u64> {
            Ok(sqlx::query(sql).bind(t).execute(&mut *conn).await?.rows_affected())
        }

        async fn cleanup_deliveries_in(conn: &mut Conn, cutoff: chrono::DateTime<chrono::Utc>) -> $crate::Result<u64> {
            let mut n = delete_before(&mut *conn, "DELETE FROM mail_logs WHERE created_at < $1 AND status <> 'queued'", cutoff).await?;
            n += delete_before(
                &mut *conn,
                "DELETE FROM delivery_attempts WHERE at < $1 AND message_id IN \
                 (SELECT id FROM outbox WHERE status IN ('delivered', 'cancelled'))",
                cutoff,
            )
            .await?;
            n += delete_before(&mut *conn, "DELETE FROM outbox WHERE created_at < $1 AND status IN ('delivered', 'cancelled')", cutoff).await?;
            Ok(n)
        }

        async fn try_lease_in(
            conn: &mut Conn,
            name: &str,
            holder: &str,
            now: chrono::DateTime<chrono::Utc>,
            until: chrono::DateTime<chrono::Utc>,
        ) -> $crate::Result<bool> {
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

    };
}

pub(crate) use common_writes;
