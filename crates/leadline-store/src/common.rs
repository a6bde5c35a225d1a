//! What both backends share: column lists and the conversions of stored text.
//! The shared reads are `reads.rs`, compiled into each backend against its own
//! `Db`; PostgreSQL's writes are `postgres/write.rs`, and SQLite's single writer
//! thread runs the same statements through rusqlite (`sqlite/write.rs`). What
//! differs (locking, transactions, pools) stays in the backend module.

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
