//! Prometheus metrics: the recorder, the names of DESIGN §6, and process metrics.
//!
//! The recorder is process-wide (the `metrics` facade), so workers and handlers
//! count with `metrics::counter!` wherever they are.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
/// `process_*` metrics (CPU, memory, file descriptors, threads, start time), read
/// from the operating system at each scrape by `metrics-process`.
static PROCESS: OnceLock<metrics_process::Collector> = OnceLock::new();

/// Request latency buckets, in seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Buckets of the SQLite writer's transaction time (begin to commit, fsync
/// included), in seconds.
const COMMIT_BUCKETS: &[f64] = &[0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0, 5.0];

/// Buckets of the SQLite writer's jobs per transaction.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

/// Installs the recorder (once per process) and registers every metric, so each
/// appears from the first scrape on.
pub fn init() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        let builder = match builder
            .set_buckets_for_metric(Matcher::Full("leadline_http_request_duration_seconds".into()), BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("leadline_writer_commit_duration_seconds".into()),
                    COMMIT_BUCKETS,
                )
            })
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full("leadline_writer_batch_size".into()), BATCH_BUCKETS))
        {
            Ok(b) => b,
            Err(_) => PrometheusBuilder::new(),
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed");
        }
        use metrics::{describe_counter, describe_gauge, describe_histogram};
        describe_counter!(
            "leadline_http_requests_total",
            "HTTP requests by method, route template and status."
        );
        describe_histogram!(
            "leadline_http_request_duration_seconds",
            metrics::Unit::Seconds,
            "HTTP request latency."
        );
        describe_counter!("leadline_leads_created_total", "Leads captured.");
        describe_counter!(
            "leadline_leads_rejected_total",
            "Submissions answered like a success but dropped as spam, by reason (honeypot, too_fast)."
        );
        describe_counter!("leadline_quotes_created_total", "Quotes priced.");
        describe_counter!("leadline_emails_sent_total", "Email delivery attempts by result.");
        describe_counter!(
            "leadline_webhooks_delivered_total",
            "Webhook delivery attempts by result."
        );
        describe_counter!(
            "leadline_errors_total",
            "Error responses by class: 4xx, 5xx (faults), refused (501 and 503, part of the contract)."
        );
        describe_counter!(
            "leadline_ratelimit_fallback_total",
            "Requests limited by the instance's own limiter because Redis did not answer."
        );
        describe_gauge!(
            "leadline_ratelimit_degraded",
            "1 while Redis is configured but does not answer (limiting locally)."
        );
        describe_counter!("leadline_disk_full_total", "Writes refused because the disk is full.");
        describe_counter!("leadline_rate_limited_total", "Requests refused by the rate limiter.");
        describe_counter!(
            "leadline_idempotent_replays_total",
            "Responses replayed for a repeated Idempotency-Key."
        );
        describe_gauge!("leadline_outbox_pending", "Outbox messages waiting for delivery.");
        describe_histogram!(
            "leadline_writer_batch_size",
            "Jobs (change sets, claims, reports) committed together in one SQLite transaction."
        );
        describe_histogram!(
            "leadline_writer_commit_duration_seconds",
            "Time of one SQLite write transaction, from BEGIN to the end of COMMIT (fsync included)."
        );
        describe_gauge!("leadline_writer_queue_depth", "Jobs waiting for the SQLite writer.");
        describe_counter!(
            "leadline_writer_rejected_total",
            "Writes refused with 503 because the SQLite writer's queue was full."
        );
        describe_counter!(
            "leadline_dead_letters_total",
            "Deliveries moved to the dead-letter queue."
        );
        describe_counter!(
            "leadline_outbox_handoffs_total",
            "Outbox messages leased to this process's dispatcher when they were stored and handed to it in memory (no claim)."
        );
        describe_counter!(
            "leadline_mail_file_syncs_total",
            "Syncs of the email files' folders (one for every batch of deliveries written as files)."
        );
        for name in [
            "leadline_leads_created_total",
            "leadline_quotes_created_total",
            "leadline_rate_limited_total",
            "leadline_idempotent_replays_total",
            "leadline_dead_letters_total",
            "leadline_writer_rejected_total",
            "leadline_ratelimit_fallback_total",
            "leadline_disk_full_total",
            "leadline_outbox_handoffs_total",
            "leadline_mail_file_syncs_total",
        ] {
            metrics::counter!(name).increment(0);
        }
        for reason in ["honeypot", "too_fast"] {
            metrics::counter!("leadline_leads_rejected_total", "reason" => reason).increment(0);
        }
        for class in ["4xx", "5xx", "refused"] {
            metrics::counter!("leadline_errors_total", "class" => class).increment(0);
        }
        for result in ["success", "failure"] {
            metrics::counter!("leadline_emails_sent_total", "result" => result).increment(0);
            metrics::counter!("leadline_webhooks_delivered_total", "result" => result).increment(0);
        }
        metrics::gauge!("leadline_outbox_pending").set(0.0);
        handle
    })
}

/// The route label: the matched template with `{id}` written `:id`, since some
/// exposition parsers in the wild stop at a `}` inside a label value.
fn route_label(route: &str) -> String {
    let mut out = String::with_capacity(route.len());
    for c in route.chars() {
        match c {
            '{' => out.push(':'),
            '}' => {}
            c => out.push(c),
        }
    }
    out
}

/// The method label: a standard method, or `other`, so that no request line can
/// make a new series.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    }
}

/// Counts one finished HTTP request.
pub fn record_request(method: &str, route: &str, status: u16, seconds: f64) {
    let method = method_label(method);
    let route = route_label(route);
    let route = route.as_str();
    let status_text = status.to_string();
    metrics::counter!("leadline_http_requests_total", "method" => method, "route" => route.to_owned(), "status" => status_text)
        .increment(1);
    metrics::histogram!("leadline_http_request_duration_seconds", "method" => method, "route" => route.to_owned())
        .record(seconds);
    if (400..500).contains(&status) {
        metrics::counter!("leadline_errors_total", "class" => "4xx").increment(1);
    } else if is_refusal(status) {
        metrics::counter!("leadline_errors_total", "class" => "refused").increment(1);
    } else if status >= 500 {
        metrics::counter!("leadline_errors_total", "class" => "5xx").increment(1);
    }
}

/// A 5xx that is part of the contract, not a fault: 501 (an action this backend
/// does not support) and 503 (backpressure, a full disk, a dependency down: the
/// problem says which, with `Retry-After`). Counted as `refused`, logged at WARN;
/// `5xx` is left for what needs a developer.
pub fn is_refusal(status: u16) -> bool {
    matches!(status, 501 | 503)
}

/// The exposition text, process metrics refreshed.
pub fn render() -> String {
    let handle = init();
    PROCESS
        .get_or_init(|| {
            let c = metrics_process::Collector::default();
            c.describe();
            c
        })
        .collect();
    handle.render()
}
