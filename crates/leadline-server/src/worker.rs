//! The outbox dispatcher: claims due messages by lease, delivers them outside any
//! transaction, and reports each attempt. Woken at once after a commit that queued
//! something, and every poll interval otherwise (retries, other instances).
//!
//! A message this process creates does not wait for a claim: the transaction that
//! inserts it already leases it to this process's dispatcher ([`Handoff::lease`]),
//! and once that transaction has committed, the message is handed over in memory
//! ([`Handoff::settle`]). A claim is a query and an update of every claimed row in
//! a transaction of its own; handed over, a new message costs neither. The lease
//! in the row keeps the crash safety of a claim: should the process stop before it
//! delivers the message, the lease runs out and any dispatcher claims it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use leadline_core::change::Change;
use leadline_core::delivery::{Attempt, AttemptReport, MessageStatus, OutboxMessage, Payload};
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

/// Messages leased at creation and not yet taken by the dispatcher, at most; past
/// that, new messages wait in the outbox for a claim, as they would without it.
const HANDOFF_CAPACITY: usize = 2 * BATCH as usize;

/// The dispatcher's lease: longer than any one delivery may take.
fn lease(config: &Config) -> Duration {
    config.webhook_timeout.max(config.smtp_timeout) + Duration::from_secs(45)
}

/// Between the transactions that create messages and this process's dispatcher:
/// its worker id and lease, its wake-up, and the messages handed over in memory.
#[derive(Debug)]
pub struct Handoff {
    worker: String,
    lease: chrono::Duration,
    notify: Notify,
    queue: std::sync::Mutex<VecDeque<OutboxMessage>>,
    /// Messages leased and not yet taken (in a transaction, or queued).
    reserved: AtomicUsize,
    /// Whether a dispatcher takes handed-over messages (leases are only given then).
    running: AtomicBool,
    /// A commit may have made messages due that were not handed over: claim.
    claim_wanted: AtomicBool,
}

impl Handoff {
    /// The handoff of a new worker id.
    pub fn new(config: &Config) -> Arc<Self> {
        Arc::new(Self {
            worker: format!("worker-{}", ulid::Ulid::new().to_string().to_ascii_lowercase()),
            lease: chrono::Duration::from_std(lease(config)).unwrap_or(chrono::Duration::MAX),
            notify: Notify::new(),
            queue: std::sync::Mutex::new(VecDeque::new()),
            reserved: AtomicUsize::new(0),
            running: AtomicBool::new(false),
            claim_wanted: AtomicBool::new(false),
        })
    }

    /// Wakes the dispatcher to claim: a commit may have made messages due that were
    /// not handed over (queued past the handoff's room, a replayed dead letter, a
    /// reactivated tenant or endpoint), or a retry came due.
    pub fn wake(&self) {
        self.claim_wanted.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// Leases the new messages among `changes` that are due now to this process's
    /// dispatcher, while it runs and there is room; returns them, to hand over once
    /// the changes have committed ([`Handoff::settle`], which must follow).
    pub fn lease(&self, changes: &mut [Change], now: DateTime<Utc>) -> Vec<OutboxMessage> {
        let mut out = Vec::new();
        if !self.running.load(Ordering::Acquire) {
            return out;
        }
        for change in changes {
            let Change::InsertOutbox(m) = change else { continue };
            if m.status != MessageStatus::Pending || m.locked_by.is_some() || m.next_attempt_at > now {
                continue;
            }
            if self.reserved.fetch_add(1, Ordering::AcqRel) >= HANDOFF_CAPACITY {
                self.reserved.fetch_sub(1, Ordering::AcqRel);
                break;
            }
            let Some(until) = now.checked_add_signed(self.lease) else {
                self.reserved.fetch_sub(1, Ordering::AcqRel);
                break;
            };
            m.locked_by = Some(self.worker.clone());
            m.locked_until = Some(until);
            out.push(m.clone());
        }
        out
    }

    /// After the transaction of [`Handoff::lease`]: hands the messages to the
    /// dispatcher when it `committed`, else gives their room back (nothing of them
    /// was stored). Should a stored message never be handed over (the process
    /// stopped first), it is claimed when its lease runs out.
    pub fn settle(&self, leased: Vec<OutboxMessage>, committed: bool) {
        if leased.is_empty() {
            return;
        }
        if committed {
            metrics::counter!("leadline_outbox_handoffs_total").increment(leased.len() as u64);
            self.queue
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(leased);
            self.notify.notify_one();
        } else {
            self.reserved.fetch_sub(leased.len(), Ordering::AcqRel);
        }
    }

    /// Drops the handed-over messages of erased leads that the dispatcher has not
    /// taken yet: the erasure that committed withdrew them in the outbox, and they
    /// must not be sent from memory, where they could wait while every delivery
    /// slot is busy. (A message whose delivery is already under way is the same
    /// race as one claimed just before an erasure: its report is refused.)
    pub fn forget(&self, leads: &[leadline_core::id::LeadId]) {
        if leads.is_empty() {
            return;
        }
        let mut q = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = q.len();
        q.retain(|m| m.lead_id.as_ref().is_none_or(|l| !leads.contains(l)));
        let dropped = before - q.len();
        drop(q);
        self.reserved.fetch_sub(dropped, Ordering::AcqRel);
    }

    /// Up to `n` handed-over messages.
    fn take(&self, n: usize) -> Vec<OutboxMessage> {
        let mut q = self.queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let k = n.min(q.len());
        let taken: Vec<_> = q.drain(..k).collect();
        drop(q);
        self.reserved.fetch_sub(taken.len(), Ordering::AcqRel);
        taken
    }
}

/// The dispatcher of one process.
#[derive(Clone)]
pub struct Dispatcher {
    store: Arc<dyn Store>,
    config: Arc<Config>,
    mailer: Mailer,
    from: Mailbox,
    http: reqwest::Client,
    handoff: Arc<Handoff>,
    id: String,
    policy: RetryPolicy,
}

impl Dispatcher {
    /// The dispatcher of `handoff`'s worker id.
    pub fn new(store: Arc<dyn Store>, config: Arc<Config>, handoff: Arc<Handoff>) -> Result<Self, String> {
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
        let id = handoff.worker.clone();
        Ok(Self {
            store,
            config,
            mailer,
            from,
            http,
            handoff,
            id,
            policy,
        })
    }

    /// The lease: longer than any one delivery may take.
    fn lease(&self) -> Duration {
        lease(&self.config)
    }

    /// The longest one delivery may take.
    fn margin(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.config.webhook_timeout.max(self.config.smtp_timeout))
            .unwrap_or(chrono::Duration::MAX)
    }

    /// Runs until `stop` is cancelled; deliveries under way are finished and reported.
    ///
    /// Up to [`BATCH`] deliveries run at once, each bounded by its timeout. As soon
    /// as some finish, their reports are recorded together and their slots are
    /// filled with new claims, so a target that never answers holds one slot for
    /// its timeout and delays nobody else's delivery.
    pub async fn run(self, stop: CancellationToken) {
        tracing::info!(worker = %self.id, "outbox dispatcher started");
        self.handoff.running.store(true, Ordering::Release);
        // The store is asked for due messages when a commit or a retry asks for it,
        // when the last claim took all it asked for (more may be due), and every
        // poll interval (retries, other instances, the janitor); not after every
        // batch: new messages of this process are handed over, not claimed.
        let mut last_claim: Option<std::time::Instant> = None;
        let mut more_due = true;
        let mut running: tokio::task::JoinSet<AttemptReport> = tokio::task::JoinSet::new();
        let mut reporting = tokio::task::JoinSet::new();
        let mut finished: Vec<AttemptReport> = Vec::new();
        loop {
            while reporting.try_join_next().is_some() {}
            if !finished.is_empty() && reporting.is_empty() {
                // Recorded while the next claim runs (they share a commit); the
                // messages stay leased to this worker until then, so none is
                // claimed twice. One report at a time: the deliveries that finish
                // while it commits are recorded together by the next (reported as
                // each finished, a report held one or two messages, each a writer
                // job, a task and a flush of its own).
                let me = self.clone();
                let reports = std::mem::take(&mut finished);
                reporting.spawn(async move { me.report(reports).await });
            }
            if stop.is_cancelled() {
                break;
            }
            let mut free = BATCH.saturating_sub(u32::try_from(running.len()).unwrap_or(BATCH));
            for m in self.handoff.take(free as usize) {
                free -= 1;
                // Kept in memory until too little of its lease is left, it waits
                // for the lease to run out and a claim, as after a crash.
                let enough = clock::now().checked_add_signed(self.margin());
                if m.locked_until.zip(enough).is_some_and(|(until, enough)| until > enough) {
                    let me = self.clone();
                    running.spawn(async move { me.deliver(m).await });
                }
            }
            let polled = last_claim.is_none_or(|t| t.elapsed() >= self.config.worker_poll);
            if free > 0 && (self.handoff.claim_wanted.swap(false, Ordering::AcqRel) || more_due || polled) {
                last_claim = Some(std::time::Instant::now());
                let now = clock::now();
                let until = now + self.lease();
                match self.store.claim_due(&self.id, now, until, free).await {
                    Ok(batch) => {
                        more_due = batch.len() == free as usize;
                        for m in batch {
                            let me = self.clone();
                            running.spawn(async move { me.deliver(m).await });
                        }
                    }
                    Err(e) => {
                        more_due = false;
                        tracing::error!(error = %e, "could not claim outbox messages");
                    }
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
                Some(_) = reporting.join_next(), if !reporting.is_empty() => {},
                () = self.handoff.notify.notified() => {},
                () = tokio::time::sleep(self.config.worker_poll) => {},
                () = stop.cancelled() => {},
            }
        }
        // No more leases at creation; those handed over already are delivered now.
        self.handoff.running.store(false, Ordering::Release);
        for m in self.handoff.take(HANDOFF_CAPACITY) {
            let me = self.clone();
            running.spawn(async move { me.deliver(m).await });
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
            let handoff = self.handoff.clone();
            tokio::spawn(async move {
                tokio::time::sleep(d).await;
                handoff.wake();
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

#[cfg(test)]
mod tests {
    use super::*;
    use leadline_core::id::TenantId;

    fn messages(n: usize, now: DateTime<Utc>) -> Vec<Change> {
        let t = TenantId::generate();
        (0..n)
            .map(|_| Change::InsertOutbox(OutboxMessage::new(&t, None, Payload::Erased, now)))
            .collect()
    }

    fn leased(changes: &[Change]) -> usize {
        changes
            .iter()
            .filter(|c| matches!(c, Change::InsertOutbox(m) if m.locked_by.is_some()))
            .count()
    }

    /// Leases are given only while a dispatcher runs, to at most the capacity of
    /// messages not yet taken; a commit that failed gives its room back, one that
    /// committed hands its messages over, and taking them frees their room.
    #[test]
    fn leases_are_bounded_and_settled() {
        let config = Config::for_tests(
            "sqlite://unused",
            std::path::Path::new("/nonexistent"),
            "an-admin-key-for-tests",
            &[],
        );
        let h = Handoff::new(&config);
        let now = chrono::Utc::now();
        let mut idle = messages(3, now);
        assert!(h.lease(&mut idle, now).is_empty(), "no dispatcher, no lease");
        assert_eq!(leased(&idle), 0);

        h.running.store(true, Ordering::Release);
        let mut first = messages(HANDOFF_CAPACITY - 1, now);
        let a = h.lease(&mut first, now);
        assert_eq!((a.len(), leased(&first)), (HANDOFF_CAPACITY - 1, HANDOFF_CAPACITY - 1));
        assert!(
            a.iter()
                .all(|m| m.locked_by.as_deref() == Some(h.worker.as_str()) && m.locked_until.is_some_and(|u| u > now))
        );
        let mut second = messages(3, now);
        let b = h.lease(&mut second, now);
        assert_eq!((b.len(), leased(&second)), (1, 1), "the rest waits for a claim");

        h.settle(b, false);
        let mut third = messages(2, now);
        let c = h.lease(&mut third, now);
        assert_eq!(c.len(), 1, "a failed commit's room is given back");

        h.settle(a, true);
        h.settle(c, true);
        assert_eq!(h.take(10).len(), 10);
        // An erased lead's messages leave the queue and give their room back.
        let lead = leadline_core::id::LeadId::generate();
        let mut erased = vec![Change::InsertOutbox(OutboxMessage::new(
            &TenantId::generate(),
            Some(&lead),
            Payload::Erased,
            now,
        ))];
        h.settle(h.lease(&mut erased, now), true);
        assert_eq!(h.reserved.load(Ordering::Acquire), HANDOFF_CAPACITY - 9);
        h.forget(std::slice::from_ref(&lead));
        assert_eq!(h.reserved.load(Ordering::Acquire), HANDOFF_CAPACITY - 10);
        assert!(h.queue.lock().expect("queue").iter().all(|m| m.lead_id.is_none()));
        let mut fourth = messages(20, now);
        assert_eq!(h.lease(&mut fourth, now).len(), 10, "taken messages free their room");
        assert_eq!(h.take(usize::MAX).len(), HANDOFF_CAPACITY - 10);
    }
}
