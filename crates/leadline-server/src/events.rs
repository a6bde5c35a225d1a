//! What a change tells the outside world: the emails and webhook events it
//! queues, as outbox writes committed with it.

use chrono::{DateTime, Utc};
use leadline_core::change::Change;
use leadline_core::delivery::{EmailPayload, MailLog, MailStatus, OutboxMessage, Payload, WebhookPayload};
use leadline_core::id::{LeadId, MailId, TenantId};
use leadline_core::lead::Lead;
use leadline_core::tenant::Tenant;
use leadline_core::webhook::WebhookEndpoint;
use serde::Serialize;

/// An email of `kind` to `to`, rendered now: its outbox message and mail log.
pub fn email<C: Serialize>(
    tenant: &Tenant,
    lead: Option<&LeadId>,
    kind: &str,
    locale: &str,
    to: &str,
    ctx: &C,
    now: DateTime<Utc>,
) -> Vec<Change> {
    let Some((subject, text, html)) = crate::mail::render(&tenant.settings, kind, locale, ctx) else {
        tracing::error!(kind, "no template for an email kind");
        return Vec::new();
    };
    let mail_id = MailId::generate();
    let payload = EmailPayload {
        mail_id: mail_id.clone(),
        kind: kind.to_owned(),
        to: to.to_owned(),
        from_name: Some(
            tenant
                .settings
                .mail_from_name
                .clone()
                .unwrap_or_else(|| tenant.settings.company_name.clone()),
        ),
        reply_to: tenant.settings.reply_to.as_ref().map(|r| r.as_str().to_owned()),
        subject: subject.clone(),
        text,
        html,
    };
    let msg = OutboxMessage::new(&tenant.id, lead, Payload::Email(payload), now);
    let log = MailLog {
        id: mail_id,
        tenant_id: tenant.id.clone(),
        message_id: msg.id.clone(),
        lead_id: lead.cloned(),
        kind: kind.to_owned(),
        recipient: to.to_owned(),
        subject,
        status: MailStatus::Queued,
        attempts: 0,
        last_error: None,
        created_at: now,
        updated_at: now,
    };
    vec![Change::InsertOutbox(msg), Change::InsertMailLog(log)]
}

/// An event for every enabled endpoint that subscribes to it, `data` as its JSON.
/// A value that does not serialise is an error, never an event with `"data": null`.
pub fn webhook<T: Serialize + ?Sized>(
    tenant: &TenantId,
    lead: Option<&LeadId>,
    endpoints: &[WebhookEndpoint],
    event_type: &str,
    data: &T,
    now: DateTime<Utc>,
) -> Result<Vec<Change>, serde_json::Error> {
    let targets: Vec<&WebhookEndpoint> = endpoints.iter().filter(|e| e.wants(event_type)).collect();
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    // Written straight from `data`: through a `serde_json::Value` first, a lead's
    // event cost four times the instructions (a map of owned strings built, then
    // written).
    let body = serde_json::to_string(&Envelope {
        event_type,
        timestamp: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        data,
    })?;
    Ok(targets
        .into_iter()
        .map(|e| {
            let payload = WebhookPayload {
                endpoint_id: e.id.clone(),
                event_type: event_type.to_owned(),
                body: body.clone(),
            };
            Change::InsertOutbox(OutboxMessage::new(tenant, lead, Payload::Webhook(payload), now))
        })
        .collect())
}

/// An event's body: `{"type": …, "timestamp": …, "data": …}`.
#[derive(Serialize)]
struct Envelope<'a, T: ?Sized> {
    #[serde(rename = "type")]
    event_type: &'a str,
    timestamp: String,
    data: &'a T,
}

/// [`webhook`] of a value already made JSON (which cannot fail).
pub fn webhook_value(
    tenant: &TenantId,
    lead: Option<&LeadId>,
    endpoints: &[WebhookEndpoint],
    event_type: &str,
    data: serde_json::Value,
    now: DateTime<Utc>,
) -> Vec<Change> {
    webhook(tenant, lead, endpoints, event_type, &data, now).unwrap_or_else(|e| {
        tracing::error!(error = %e, event_type, "an event could not be made JSON");
        Vec::new()
    })
}

/// What templates see of a lead.
#[derive(Serialize)]
struct LeadView<'a> {
    id: &'a str,
    name: &'a str,
    email: &'a str,
    phone: Option<&'a str>,
    charter_from: Option<String>,
    charter_to: Option<String>,
    guests: Option<String>,
    destination: Option<&'a str>,
    message: Option<&'a str>,
}

#[derive(Serialize)]
struct LeadContext<'a> {
    company_name: &'a str,
    lead: LeadView<'a>,
    duplicate: bool,
}

/// The side effects of a new lead: the acknowledgement to the client (when
/// auto-reply is on and the lead is not a duplicate), a notification to each
/// staff address, and `lead.created` to subscribed endpoints.
pub fn lead_created(
    tenant: &Tenant,
    lead: &Lead,
    endpoints: &[WebhookEndpoint],
    now: DateTime<Utc>,
) -> Result<Vec<Change>, serde_json::Error> {
    let mut out = lead_emails(tenant, lead, lead.duplicate_of.is_some(), now);
    out.extend(webhook(
        &tenant.id,
        Some(&lead.id),
        endpoints,
        "lead.created",
        lead,
        now,
    )?);
    Ok(out)
}

/// The emails of a new lead, rendered from the tenant's templates: the
/// acknowledgement unless it is a `duplicate`, and the staff notifications.
/// Templates see whether it is a duplicate, not of which lead, so both versions
/// can be rendered before the transaction that decides.
pub fn lead_emails(tenant: &Tenant, lead: &Lead, duplicate: bool, now: DateTime<Utc>) -> Vec<Change> {
    let ctx = LeadContext {
        company_name: &tenant.settings.company_name,
        lead: LeadView {
            id: lead.id.as_str(),
            name: &lead.name,
            email: lead.email.as_str(),
            phone: lead.phone_e164.as_deref(),
            charter_from: lead.charter_from.map(|d| d.to_string()),
            charter_to: lead.charter_to.map(|d| d.to_string()),
            guests: lead
                .guests
                .map(|g| format!("{} adults, {} children", g.adults, g.children)),
            destination: lead.destination.as_deref(),
            message: lead.message.as_deref(),
        },
        duplicate,
    };
    let mut out = Vec::new();
    if tenant.settings.auto_reply_enabled && !duplicate {
        out.extend(email(
            tenant,
            Some(&lead.id),
            "lead_acknowledgement",
            &lead.locale,
            lead.email.as_str(),
            &ctx,
            now,
        ));
    }
    for staff in &tenant.settings.notification_emails {
        out.extend(email(
            tenant,
            Some(&lead.id),
            "lead_notification",
            "en",
            staff.as_str(),
            &ctx,
            now,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use leadline_core::change::Change;
    use leadline_core::delivery::Payload;
    use leadline_core::id::{TenantId, WebhookEndpointId};
    use leadline_core::webhook::WebhookEndpoint;

    fn endpoint(tenant: &TenantId, events: &[&str], enabled: bool) -> WebhookEndpoint {
        let at = chrono::Utc
            .with_ymd_and_hms(2026, 11, 29, 8, 0, 0)
            .single()
            .expect("time");
        WebhookEndpoint {
            id: WebhookEndpointId::generate(),
            tenant_id: tenant.clone(),
            url: "https://crm.example.com/hook".into(),
            events: events.iter().map(|e| (*e).to_owned()).collect(),
            description: None,
            enabled,
            disabled_reason: None,
            secret: "whsec_x".into(),
            previous_secret: None,
            previous_secret_until: None,
            created_at: at,
            updated_at: at,
            version: 1,
        }
    }

    #[test]
    fn an_event_is_its_type_timestamp_and_data_for_each_subscribed_endpoint() {
        let tenant = TenantId::generate();
        let eps = vec![
            endpoint(&tenant, &["lead.created"], true),
            endpoint(&tenant, &["*"], true),
            endpoint(&tenant, &["lead.updated"], true),
            endpoint(&tenant, &["*"], false),
        ];
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 11, 29, 9, 30, 15)
            .single()
            .expect("time")
            + chrono::Duration::milliseconds(42);
        let data = serde_json::json!({"id": "lead_1", "name": "Maria", "guests": {"adults": 2}});
        let changes = super::webhook(&tenant, None, &eps, "lead.created", &data, now).expect("event");
        let targets: Vec<_> = changes
            .iter()
            .map(|c| match c {
                Change::InsertOutbox(m) => match &m.payload {
                    Payload::Webhook(w) => {
                        let body: serde_json::Value = serde_json::from_str(&w.body).expect("JSON");
                        assert_eq!(
                            body,
                            serde_json::json!({"type": "lead.created", "timestamp": "2026-11-29T09:30:15.042Z", "data": data})
                        );
                        assert_eq!(w.event_type, "lead.created");
                        w.endpoint_id.clone()
                    }
                    _ => panic!("not a webhook"),
                },
                _ => panic!("not an outbox message"),
            })
            .collect();
        assert_eq!(targets, vec![eps[0].id.clone(), eps[1].id.clone()]);
        // Nobody subscribed: nothing, and nothing made JSON.
        let none = super::webhook(&tenant, None, &eps[2..], "lead.created", &data, now).expect("event");
        assert!(none.is_empty());
        // A value made JSON already gives the same body.
        let same = super::webhook_value(&tenant, None, &eps[..1], "lead.created", data.clone(), now);
        match &same[..] {
            [Change::InsertOutbox(m)] => match &m.payload {
                Payload::Webhook(w) => {
                    let body: serde_json::Value = serde_json::from_str(&w.body).expect("JSON");
                    assert_eq!(body["data"], data);
                }
                _ => panic!("not a webhook"),
            },
            _ => panic!("one message"),
        }
    }
}
