//! Deliveries: outbox messages (emails and webhooks), their attempts, mail logs
//! and dead letters.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::id::{DeadLetterId, LeadId, MailId, MsgId, TenantId, WebhookEndpointId};

/// What a message is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, strum::IntoStaticStr, strum::EnumString,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// An email.
    Email,
    /// A webhook event.
    Webhook,
}

impl MessageKind {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// From the stored form.
    pub fn from_db(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

/// A rendered email, ready to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailPayload {
    /// The mail log entry.
    pub mail_id: MailId,
    /// Template kind, e.g. `lead_acknowledgement`.
    pub kind: String,
    /// Recipient address.
    pub to: String,
    /// Sender display name.
    pub from_name: Option<String>,
    /// Reply-To address.
    pub reply_to: Option<String>,
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// A webhook event for one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookPayload {
    /// The endpoint.
    pub endpoint_id: WebhookEndpointId,
    /// Event type.
    pub event_type: String,
    /// The exact JSON body sent (and signed).
    pub body: String,
}

/// The payload of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Payload {
    /// An email.
    Email(EmailPayload),
    /// A webhook.
    Webhook(WebhookPayload),
    /// Erased (GDPR) or never to be sent.
    Erased,
}

/// Where a message is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, strum::IntoStaticStr, strum::EnumString,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Waiting for (another) attempt.
    Pending,
    /// Delivered.
    Delivered,
    /// Out of attempts: in the dead letters.
    Dead,
    /// Withdrawn (the lead was erased, the endpoint deleted).
    Cancelled,
}

impl MessageStatus {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// From the stored form.
    pub fn from_db(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

/// An outbox message.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    /// `msg_` id, stable across retries (the `webhook-id`).
    pub id: MsgId,
    /// Owner.
    pub tenant_id: TenantId,
    /// Email or webhook.
    pub kind: MessageKind,
    /// The lead it concerns (erasure reaches it through this).
    pub lead_id: Option<LeadId>,
    /// What to send.
    pub payload: Payload,
    /// Where it is.
    pub status: MessageStatus,
    /// Attempts made.
    pub attempts: u32,
    /// When the next attempt is due.
    pub next_attempt_at: DateTime<Utc>,
    /// The worker holding it.
    pub locked_by: Option<String>,
    /// Until when it holds it.
    pub locked_until: Option<DateTime<Utc>>,
    /// Last failure.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl OutboxMessage {
    /// A new pending message, due now.
    pub fn new(tenant_id: &TenantId, lead_id: Option<&LeadId>, payload: Payload, now: DateTime<Utc>) -> Self {
        let kind = match &payload {
            Payload::Webhook(_) => MessageKind::Webhook,
            _ => MessageKind::Email,
        };
        Self {
            id: MsgId::generate(),
            tenant_id: tenant_id.clone(),
            kind,
            lead_id: lead_id.cloned(),
            payload,
            status: MessageStatus::Pending,
            attempts: 0,
            next_attempt_at: now,
            locked_by: None,
            locked_until: None,
            last_error: None,
            created_at: now,
        }
    }
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Attempt {
    /// 1 for the first.
    pub attempt: u32,
    /// When it ended.
    pub at: DateTime<Utc>,
    /// Whether it delivered.
    pub success: bool,
    /// HTTP status or SMTP reply code.
    pub code: Option<u16>,
    /// Receiver's answer or the error, shortened.
    pub detail: Option<String>,
    /// How long it took.
    pub latency_ms: u64,
}

/// What became of an attempt, as the worker reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptReport {
    /// The message.
    pub message_id: MsgId,
    /// The worker that held it.
    pub worker: String,
    /// The attempt.
    pub attempt: Attempt,
    /// When to try again; `None` after a failure means: dead letter.
    pub retry_at: Option<DateTime<Utc>>,
    /// A 410 answer: disable the endpoint.
    pub disable_endpoint: bool,
}

impl AttemptReport {
    /// What the attempt leaves the message and its mail log as: delivered (sent),
    /// waiting for `retry_at` (queued), or dead (failed), which makes it a dead
    /// letter. The retry policy (`crate::retry`) chose `retry_at`.
    pub fn outcome(&self) -> (MessageStatus, MailStatus) {
        if self.attempt.success {
            (MessageStatus::Delivered, MailStatus::Sent)
        } else if self.retry_at.is_some() {
            (MessageStatus::Pending, MailStatus::Queued)
        } else {
            (MessageStatus::Dead, MailStatus::Failed)
        }
    }
}

/// Where an email is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, strum::IntoStaticStr, strum::EnumString,
)]
#[strum(serialize_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum MailStatus {
    /// Waiting or being retried.
    Queued,
    /// Accepted by the mail server (or written to a file).
    Sent,
    /// Out of attempts.
    Failed,
    /// Withdrawn.
    Cancelled,
}

impl MailStatus {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// From the stored form.
    pub fn from_db(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

/// An email's delivery log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MailLog {
    /// `mail_` id.
    pub id: MailId,
    /// Owner.
    #[serde(skip)]
    pub tenant_id: TenantId,
    /// The outbox message.
    pub message_id: MsgId,
    /// The lead it concerns.
    pub lead_id: Option<LeadId>,
    /// Which email: `lead_acknowledgement`, `lead_notification`, `quote` or `quote_accepted`.
    pub kind: String,
    /// Recipient (redacted in every API view).
    pub recipient: String,
    pub subject: String,
    pub status: MailStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A delivery that ran out of attempts.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeadLetter {
    /// `dl_` id.
    pub id: DeadLetterId,
    /// Owner.
    pub tenant_id: TenantId,
    /// The outbox message (replay puts it back).
    pub message_id: MsgId,
    /// Email or webhook.
    pub kind: MessageKind,
    /// What was to be sent (erased with its lead).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    /// Every attempt.
    pub attempts: Vec<Attempt>,
    /// The last failure.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When it was put back in the outbox.
    pub replayed_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_delivers_waits_or_makes_a_dead_letter() {
        let now = Utc::now();
        let report = |success: bool, retry_at: Option<DateTime<Utc>>| AttemptReport {
            message_id: MsgId::generate(),
            worker: "w".into(),
            attempt: Attempt {
                attempt: 3,
                at: now,
                success,
                code: None,
                detail: None,
                latency_ms: 1,
            },
            retry_at,
            disable_endpoint: false,
        };
        assert_eq!(
            report(true, None).outcome(),
            (MessageStatus::Delivered, MailStatus::Sent)
        );
        assert_eq!(
            report(true, Some(now)).outcome(),
            (MessageStatus::Delivered, MailStatus::Sent)
        );
        assert_eq!(
            report(false, Some(now)).outcome(),
            (MessageStatus::Pending, MailStatus::Queued)
        );
        assert_eq!(report(false, None).outcome(), (MessageStatus::Dead, MailStatus::Failed));
    }
}
