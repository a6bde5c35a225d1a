//! The outbox dispatcher: claims due messages by lease, delivers them outside any
//! transaction, and reports each attempt. Woken at once after a commit that queued
//! something, and every poll interval otherwise (retries, other instances).

use std::sync::Arc;
use std::time::Duration;

use leadline_core::delivery::{Attempt, AttemptReport, OutboxMessage, Payload};
use leadline_core::retry::RetryPolicy;
use leadline_store::Store;
use lettre::message::Mailbox;
use rand::Rng;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::config::Config;
use crate::mail::Mailer;

/// Deliveries under way at once (and so the most messages claimed at once).
/// Each claim waits for a writer commit, which under load takes milliseconds:
/// at 64 the dispatcher fell behind an intake of 5,000+ leads/s (two messages
/// each) and took 16 s to drain after the load; at 128 it keeps within seconds
/// (BENCHMARKS.md).
const BATCH: u32 = 128;

/// The dispatcher of one process.
#[derive(Clone)]
pub struct Dispatcher {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    mailer: Mailer,
    from: Mailbox,
    http: reqwest::Client,
    notify: Arc<Notify>,
    id: String,
    policy: RetryPolicy,
}

impl Dispatcher {
    /// A dispatcher with its own worker id.
    pub fn new(store: Arc<dyn Store>, config: Arc<Config>, notify: Arc<Notify>) -> Result<Self, String> {
        let mailer = Mailer::from_config(&config)?;
        let from: Mailbox = config
            .mail_from
            .parse()
            .map_err(|e| format!("LEADLINE_MAIL_FROM: {e}"))?;
        let mut http = reqwest::Client::builder();
        if !config.allow_private_webhook_targets {
            http = http.dns_resolver(Arc::new(crate::outbound::PublicOnly));
        }
        let http = http
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.webhook_timeout)
            .user_agent(concat!("Leadline-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        let policy = RetryPolicy {
            max_attempts: config.retry_max_attempts,
            base: config.retry_base_delay,
            factor: 4,
            cap: config.retry_max_delay,
        };
        let id = format!("worker-{}", ulid::Ulid::new().to_string().to_ascii_lowercase());
        Ok(Self {
            store,
            config,
            mailer,
            from,
            http,
            notify,
            id,
            policy,
        })
    }

    /// The lease: longer than any one delivery may take.
    fn lease(&self) -> Duration {
        self.config.webhook_timeout.max(self.config.smtp_timeout) + Duration::from_secs(45)
    }

    /// Runs until `stop` is cancelled; deliveries under way are finished and reported.
    ///
    /// Up to [`BATCH`] deliveries run at once, each bounded by its timeout. As soon
    /// as some finish, their reports are recorded together and their slots are
    /// filled with new claims, so a target that never answers holds one slot for
    /// its timeout and delays nobody else's delivery.
    pub async fn run(self, stop: CancellationToken) {
        tracing::info!(worker = %self.id, "outbox dispatcher started");
        let mut running: tokio::task::JoinSet<AttemptReport> = tokio::task::JoinSet::new();
        let mut reporting = tokio::task::JoinSet::new();
        let mut finished: Vec<AttemptReport> = Vec::new();
        loop {
            if !finished.is_empty() {
                // Recorded while the next claim runs (they share a commit); the
                // messages stay leased to this worker until then, so none is
                // claimed twice.
                let me = self.clone();
                let reports = std::mem::take(&mut finished);
                reporting.spawn(async move { me.report(reports).await });
            }
            while reporting.try_join_next().is_some() {}
            if stop.is_cancelled() {
                break;
            }
            let free = BATCH.saturating_sub(u32::try_from(running.len()).unwrap_or(BATCH));
            if free > 0 {
                let now = clock::now();
                let until = now + self.lease();
                match self.store.claim_due(&self.id, now, until, free).await {
                    Ok(batch) => {
                        for m in batch {
                            let me = self.clone();
                            running.spawn(async move { me.deliver(m).await });
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "could not claim outbox messages"),
                }
            }
            tokio::select! {
                Some(r) = running.join_next(), if !running.is_empty() => {
                    if let Ok(r) = r {
                        finished.push(r);
                    }
                    while let Some(r) = running.try_join_next() {
                        if let Ok(r) = r {
                            finished.push(r);
                        }
                    }
                }
                () = self.notify.notified() => {},
                () = tokio::time::sleep(self.config.worker_poll) => {},
                () = stop.cancelled() => {},
            }
        }
        while let Some(r) = running.join_next().await {
            if let Ok(r) = r {
                finished.push(r);
            }
        }
        if !finished.is_empty() {
            self.report(finished).await;
        }
        while reporting.join_next().await.is_some() {}
        tracing::info!(worker = %self.id, "outbox dispatcher stopped");
    }

    /// Records a batch's attempts in one write, and wakes the dispatcher for the
    /// retries due before the next poll.
    async fn report(&self, reports: Vec<AttemptReport>) {
        let ids: Vec<_> = reports.iter().map(|r| r.message_id.clone()).collect();
        let soonest = reports
            .iter()
            .filter_map(|r| r.retry_at.and_then(|t| (t - r.attempt.at).to_std().ok()))
            .filter(|d| *d < self.config.worker_poll)
            .min();
        // A message recorded as sent is on disk: the files written for this batch
        // are flushed first (one sync for all of them). When that fails they are
        // not recorded; their leases run out and they are written again.
        if reports.iter().any(|r| r.attempt.success)
            && let Err(e) = self.mailer.flush().await
        {
            tracing::error!(messages = ids.len(), error = %e, "could not flush the email files; the deliveries will be retried");
            return;
        }
        match self.store.report_attempts(reports).await {
            Ok(done) => {
                for (id, kept) in ids.iter().zip(done) {
                    if !kept {
                        tracing::warn!(message_id = %id, "lost the lease of a message before reporting; another worker has it");
                    }
                }
            }
            Err(e) => tracing::error!(messages = ids.len(), error = %e, "could not record delivery attempts"),
        }
        // A short retry delay should not wait for the poll interval.
        if let Some(d) = soonest {
            let notify = self.notify.clone();
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                notify.notify_one();
            });
        }
    }

    /// Makes one attempt at `m`; the report to record.
    async fn deliver(&self, m: OutboxMessage) -> AttemptReport {
        let attempt_no = m.attempts + 1;
        let started = std::time::Instant::now();
        let (success, code, detail, retryable, retry_after, gone, kind) = match &m.payload {
            Payload::Email(p) => {
                match tokio::time::timeout(
                    self.config.smtp_timeout,
                    self.mailer
                        .send(&self.from, m.id.as_str(), m.lead_id.as_ref().map(|l| l.as_str()), p),
                )
                .await
                .unwrap_or_else(|_| {
                    Err(crate::mail::SendError {
                        permanent: false,
                        code: None,
                        detail: format!("no answer within {} s", self.config.smtp_timeout.as_secs()),
                    })
                }) {
                    Ok(reply) => (
                        true,
                        Some(250),
                        Some(crate::mail::short(&reply)),
                        false,
                        None,
                        false,
                        "email",
                    ),
                    Err(e) => (false, e.code, Some(e.detail), !e.permanent, None, false, "email"),
                }
            }
            // From the tenant's endpoints, which the store keeps in memory.
            Payload::Webhook(w) => match self
                .store
                .list_endpoints(&m.tenant_id)
                .await
                .map(|eps| eps.into_iter().find(|e| e.id == w.endpoint_id))
            {
                Ok(Some(ep)) if ep.enabled => {
                    let o = crate::outbound::deliver(
                        &self.http,
                        &ep,
                        m.id.as_str(),
                        &w.body,
                        self.config.allow_private_webhook_targets,
                    )
                    .await;
                    (
                        o.success,
                        o.code,
                        Some(o.detail),
                        o.retryable,
                        o.retry_after,
                        o.gone,
                        "webhook",
                    )
                }
                Ok(Some(_)) => (
                    false,
                    None,
                    Some("the endpoint is disabled".into()),
                    false,
                    None,
                    false,
                    "webhook",
                ),
                Ok(None) => (
                    false,
                    None,
                    Some("the endpoint was deleted".into()),
                    false,
                    None,
                    false,
                    "webhook",
                ),
                Err(e) => (false, None, Some(format!("store: {e}")), true, None, false, "webhook"),
            },
            Payload::Erased => (false, None, Some("erased".into()), false, None, false, "email"),
        };
        let now = clock::now();
        let retry_at = if success || !retryable {
            None
        } else {
            self.policy
                .next_delay(attempt_no, rand::rng().random::<f64>(), retry_after)
                .and_then(|d| chrono::Duration::from_std(d).ok())
                .map(|d| now + d)
        };
        let result = if success { "success" } else { "failure" };
        match kind {
            "email" => metrics::counter!("leadline_emails_sent_total", "result" => result).increment(1),
            _ => metrics::counter!("leadline_webhooks_delivered_total", "result" => result).increment(1),
        }
        if !success && retry_at.is_none() {
            metrics::counter!("leadline_dead_letters_total").increment(1);
        }
        AttemptReport {
            message_id: m.id.clone(),
            worker: self.id.clone(),
            attempt: Attempt {
                attempt: attempt_no,
                at: now,
                success,
                code,
                detail,
                latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            },
            retry_at,
            disable_endpoint: gone,
        }
    }
}
