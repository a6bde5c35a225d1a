//! Webhook endpoints and Standard Webhooks v1 signing.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::id::{TenantId, WebhookEndpointId};
use crate::text::clean_opt;
use crate::validation::ValidationErrors;

/// Every event type.
pub const EVENTS: &[&str] = &[
    "lead.created",
    "lead.updated",
    "lead.deleted",
    "quote.created",
    "quote.sent",
    "quote.accepted",
    "quote.declined",
    "quote.expired",
    "booking.created",
    "webhook.test",
];

/// How long a rotated-out secret keeps signing.
pub const ROTATION_OVERLAP: chrono::Duration = chrono::Duration::hours(24);

/// A new secret: `whsec_` and the base64 of 32 random bytes.
pub fn new_secret() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    format!("whsec_{}", STANDARD.encode(b))
}

/// `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">` keyed by the secret's bytes.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").unwrap_or(secret)).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
}

/// A tenant's webhook endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct WebhookEndpoint {
    /// `whep_` id.
    pub id: WebhookEndpointId,
    /// Owner.
    #[serde(skip)]
    pub tenant_id: TenantId,
    /// Where events are posted.
    pub url: String,
    /// Event types delivered (`*` for all).
    pub events: Vec<String>,
    /// Free text.
    pub description: Option<String>,
    /// Whether events are delivered.
    pub enabled: bool,
    /// Why it was disabled by Leadline (a 410 answer), if it was.
    pub disabled_reason: Option<String>,
    /// Signing secret (shown once, at creation and rotation).
    #[serde(skip)]
    pub secret: String,
    /// The rotated-out secret, still signing until `previous_secret_until`.
    #[serde(skip)]
    pub previous_secret: Option<String>,
    /// End of the rotation overlap.
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Optimistic-concurrency counter.
    #[serde(skip)]
    pub version: i64,
}

impl WebhookEndpoint {
    /// Whether it receives `event`.
    pub fn wants(&self, event: &str) -> bool {
        self.enabled && self.events.iter().any(|e| e == "*" || e == event)
    }

    /// The secrets that sign at `now`: the current one, and the previous one during
    /// the rotation overlap.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&str> {
        let mut out = vec![self.secret.as_str()];
        if let (Some(prev), Some(until)) = (&self.previous_secret, self.previous_secret_until)
            && now < until
        {
            out.push(prev.as_str());
        }
        out
    }
}

/// `POST /v1/webhook-endpoints` body.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpointRequest {
    /// `https://` URL (`http://` only where allowed).
    pub url: String,
    /// Event types, or `["*"]` for all.
    pub events: Vec<String>,
    /// Free text.
    pub description: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
}

/// `PATCH /v1/webhook-endpoints/{id}` body.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointPatch {
    /// New URL.
    pub url: Option<String>,
    /// New event list.
    pub events: Option<Vec<String>>,
    /// New description.
    pub description: Option<String>,
    /// Enable or disable.
    pub enabled: Option<bool>,
}

/// Checks a URL's form: http(s), a host, at most 2,000 characters. Whether its
/// address is allowed is the server's check (it needs DNS).
pub fn check_url(s: &str, allow_insecure: bool) -> Result<String, String> {
    let t = s.trim();
    if t.len() > 2000 {
        return Err("must be at most 2,000 characters".into());
    }
    let ok_scheme = t.starts_with("https://") || (allow_insecure && t.starts_with("http://"));
    if !ok_scheme {
        return Err(if allow_insecure {
            "must start with https:// or http://"
        } else {
            "must start with https://"
        }
        .into());
    }
    if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("must not contain spaces".into());
    }
    Ok(t.to_owned())
}

fn check_events(events: &[String]) -> Result<Vec<String>, String> {
    if events.is_empty() || events.len() > EVENTS.len() + 1 {
        return Err("list one or more event types, or \"*\"".into());
    }
    let mut out = Vec::new();
    for e in events {
        if e != "*" && !EVENTS.contains(&e.as_str()) {
            return Err(format!("unknown event type {e:?}; known: {}", EVENTS.join(", ")));
        }
        if !out.contains(e) {
            out.push(e.clone());
        }
    }
    Ok(out)
}

impl NewEndpointRequest {
    /// Validates into a new endpoint with a fresh secret.
    pub fn into_endpoint(
        self,
        tenant: &TenantId,
        allow_insecure: bool,
        now: DateTime<Utc>,
    ) -> Result<WebhookEndpoint, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let url = e.check("/url", check_url(&self.url, allow_insecure));
        let events = e.check("/events", check_events(&self.events));
        let description = e
            .check("/description", clean_opt(self.description.as_deref(), 500, false))
            .flatten();
        let (Some(url), Some(events)) = (url, events) else {
            return Err(e);
        };
        e.finish(|| WebhookEndpoint {
            id: WebhookEndpointId::generate(),
            tenant_id: tenant.clone(),
            url,
            events,
            description,
            enabled: self.enabled.unwrap_or(true),
            disabled_reason: None,
            secret: new_secret(),
            previous_secret: None,
            previous_secret_until: None,
            created_at: now,
            updated_at: now,
            version: 1,
        })
    }
}

impl EndpointPatch {
    /// The endpoint after the patch.
    pub fn apply(
        self,
        ep: &WebhookEndpoint,
        allow_insecure: bool,
        now: DateTime<Utc>,
    ) -> Result<WebhookEndpoint, ValidationErrors> {
        let mut e = ValidationErrors::new();
        let mut out = ep.clone();
        if let Some(u) = self.url
            && let Some(u) = e.check("/url", check_url(&u, allow_insecure))
        {
            out.url = u;
        }
        if let Some(ev) = self.events
            && let Some(ev) = e.check("/events", check_events(&ev))
        {
            out.events = ev;
        }
        if let Some(d) = self.description {
            out.description = e.check("/description", clean_opt(Some(&d), 500, false)).flatten();
        }
        if let Some(en) = self.enabled {
            out.enabled = en;
            if en {
                out.disabled_reason = None;
            }
        }
        out.updated_at = now;
        out.version = ep.version + 1;
        e.finish(|| out)
    }
}

/// The endpoint with a new secret; the old one keeps signing for 24 hours.
pub fn rotate(ep: &WebhookEndpoint, now: DateTime<Utc>) -> WebhookEndpoint {
    WebhookEndpoint {
        secret: new_secret(),
        previous_secret: Some(ep.secret.clone()),
        previous_secret_until: Some(now + ROTATION_OVERLAP),
        updated_at: now,
        version: ep.version + 1,
        ..ep.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let sig = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).expect("signs");
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn secrets_and_rotation() {
        let s = new_secret();
        assert!(s.starts_with("whsec_") && STANDARD.decode(&s[6..]).map(|b| b.len()) == Ok(32));
        let now = Utc::now();
        let ep = NewEndpointRequest {
            url: "https://crm.example/hook".into(),
            events: vec!["lead.created".into()],
            description: None,
            enabled: None,
        }
        .into_endpoint(&TenantId::generate(), false, now)
        .expect("valid");
        let r = rotate(&ep, now);
        assert_eq!(r.signing_secrets(now), vec![r.secret.as_str(), ep.secret.as_str()]);
        assert_eq!(
            r.signing_secrets(now + chrono::Duration::hours(25)),
            vec![r.secret.as_str()]
        );
        assert!(r.wants("lead.created") && !r.wants("quote.sent"));
    }

    #[test]
    fn urls_and_events_are_checked() {
        assert!(check_url("http://x.example", false).is_err());
        assert!(check_url("http://x.example", true).is_ok());
        assert!(check_url("ftp://x.example", true).is_err());
        assert!(check_events(&["lead.created".into(), "nope".into()]).is_err());
        assert!(check_events(&[]).is_err());
        assert_eq!(check_events(&["*".into()]), Ok(vec!["*".to_owned()]));
    }
}
