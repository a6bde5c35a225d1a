//! Per-client-IP rate limiting (GCRA), one limiter per route class: `public` (quote
//! pages, the OpenAPI document, unknown paths), `tenant` (`/v1`) and `admin`
//! (`/admin`). Health checks are never limited.
//!
//! Each limiter allows its per-minute quota as a burst and refills it evenly, so
//! 60 a minute means: 60 at once, then one a second. With `LEADLINE_REDIS_URL` the
//! quota is shared by every instance (GCRA in a Redis script); otherwise, or while
//! Redis is unreachable, each instance keeps its own (`governor`): every Redis call
//! is bounded by `LEADLINE_REDIS_TIMEOUT`, and one that fails or times out switches
//! the instance to its local limiter at once until a background check finds Redis
//! answering again (counted in `leadline_ratelimit_fallback_total`, logged once per
//! outage). Answers carry
//! the IETF draft headers `RateLimit-Policy: "tenant";q=60;w=60` and
//! `RateLimit: "tenant";r=57;t=3`; a refusal is a 429 problem with `Retry-After`.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::error::Problem;

type Keyed = RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock, StateInformationMiddleware>;

struct Limiter {
    name: &'static str,
    per_minute: u32,
    inner: Keyed,
}

impl Limiter {
    fn new(name: &'static str, per_minute: u32) -> Self {
        let n = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        Self {
            name,
            per_minute: n.get(),
            inner: RateLimiter::keyed(Quota::per_minute(n)).with_middleware::<StateInformationMiddleware>(),
        }
    }
}

/// GCRA in Redis. Redis's own clock decides, so the instances' clocks need not agree.
/// Returns `{allowed, remaining, milliseconds}`: until the quota is full again when
/// allowed, until the next request may pass when not.
const GCRA: &str = r#"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local emission = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + emission
local allow_at = new_tat - emission * limit
if allow_at > now then
  return {0, 0, allow_at - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
return {1, math.floor((now - allow_at) / emission), new_tat - now}
"#;

/// The quota shared through Redis, with a circuit breaker: a call that fails or
/// does not answer within `timeout` opens it; while open no request waits for
/// Redis, each instance limits locally, and one background task tries Redis every
/// [`REDIS_RETRY`] until it answers, then closes it.
struct Shared {
    client: redis::Client,
    conn: std::sync::Mutex<Option<redis::aio::MultiplexedConnection>>,
    script: redis::Script,
    prefix: String,
    timeout: Duration,
    degraded: AtomicBool,
}

/// How often an instance limiting locally checks whether Redis answers again.
pub const REDIS_RETRY: Duration = Duration::from_secs(1);

/// How long start-up waits for Redis before it starts with the local limiter.
const REDIS_START_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a (re)connection to Redis may take; it never delays a request.
const REDIS_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

impl Shared {
    async fn connect(&self) -> Result<redis::aio::MultiplexedConnection, String> {
        let cfg = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(REDIS_CONNECT_TIMEOUT)
            .set_response_timeout(self.timeout.max(Duration::from_millis(200)));
        let attempt = async {
            let mut conn = self
                .client
                .get_multiplexed_async_connection_with_config(&cfg)
                .await
                .map_err(|e| e.to_string())?;
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(conn)
        };
        tokio::time::timeout(REDIS_CONNECT_TIMEOUT * 2, attempt)
            .await
            .map_err(|_| "no answer".to_owned())?
    }

    fn connection(&self) -> Option<redis::aio::MultiplexedConnection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_connection(&self, conn: Option<redis::aio::MultiplexedConnection>) {
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = conn;
    }

    /// Opens the breaker (once per outage: one log line, one recovery task).
    fn degrade(self: &Arc<Self>, why: &str) {
        self.set_connection(None);
        if self.degraded.swap(true, Ordering::AcqRel) {
            return;
        }
        metrics::gauge!("leadline_ratelimit_degraded").set(1.0);
        tracing::warn!(error = %why, "Redis does not answer; each instance limits locally until it does");
        let me = self.clone();
        tokio::spawn(async move { me.recover().await });
    }

    async fn recover(self: Arc<Self>) {
        loop {
            tokio::time::sleep(REDIS_RETRY).await;
            if let Ok(conn) = self.connect().await {
                self.set_connection(Some(conn));
                self.degraded.store(false, Ordering::Release);
                metrics::gauge!("leadline_ratelimit_degraded").set(0.0);
                tracing::info!("Redis answers again; rate limits are shared again");
                return;
            }
        }
    }

    /// One GCRA step in Redis: `None` when Redis cannot answer now.
    async fn check(self: &Arc<Self>, key: String, emission_ms: u64, q: u32) -> Option<(i64, i64, i64)> {
        if self.degraded.load(Ordering::Acquire) {
            return None;
        }
        let Some(mut conn) = self.connection() else {
            self.degrade("no connection");
            return None;
        };
        let mut invocation = self.script.key(key);
        invocation.arg(emission_ms).arg(q);
        let call = invocation.invoke_async(&mut conn);
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(answer)) => Some(answer),
            Ok(Err(e)) => {
                self.degrade(&e.to_string());
                None
            }
            Err(_) => {
                self.degrade(&format!("no answer within {} ms", self.timeout.as_millis()));
                None
            }
        }
    }
}

/// The limiters of one server.
#[derive(Clone)]
pub struct RateLimits {
    local: Arc<[Limiter; 3]>,
    shared: Option<Arc<Shared>>,
}

/// How the rate limits are shared, for `/readyz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedState {
    /// No Redis configured: each instance limits on its own.
    Local,
    /// Redis answers: the quotas are shared.
    Shared,
    /// Redis is configured but does not answer: limiting locally meanwhile.
    Degraded,
}

impl RateLimits {
    /// Limiters with the given per-minute quotas.
    pub fn new(public: u32, tenant: u32, admin: u32) -> Self {
        Self {
            local: Arc::new([
                Limiter::new("public", public),
                Limiter::new("tenant", tenant),
                Limiter::new("admin", admin),
            ]),
            shared: None,
        }
    }

    /// Shares the quotas through Redis at `url`; keys start with `prefix`, and a
    /// Redis call that takes longer than `timeout` falls back to the local limiter.
    /// Redis need not answer now: until it does, each instance limits locally.
    pub async fn shared(self, url: &str, prefix: &str, timeout: Duration) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("LEADLINE_REDIS_URL: {e}"))?;
        let shared = Arc::new(Shared {
            client,
            conn: std::sync::Mutex::new(None),
            script: redis::Script::new(GCRA),
            prefix: prefix.to_owned(),
            timeout,
            degraded: AtomicBool::new(false),
        });
        metrics::gauge!("leadline_ratelimit_degraded").set(0.0);
        // Start at once whatever Redis does: a short try, then the local limiter.
        match tokio::time::timeout(REDIS_START_TIMEOUT, shared.connect()).await {
            Ok(Ok(conn)) => shared.set_connection(Some(conn)),
            Ok(Err(e)) => shared.degrade(&format!("unreachable at start: {e}")),
            Err(_) => shared.degrade("unreachable at start: no answer"),
        }
        Ok(Self {
            shared: Some(shared),
            ..self
        })
    }

    /// Whether the quotas are shared right now.
    pub fn shared_state(&self) -> SharedState {
        match &self.shared {
            None => SharedState::Local,
            Some(s) if s.degraded.load(Ordering::Acquire) => SharedState::Degraded,
            Some(_) => SharedState::Shared,
        }
    }

    /// Forgets clients whose quota is full again (bounded memory).
    pub fn shrink(&self) {
        for l in self.local.iter() {
            l.inner.retain_recent();
            l.inner.shrink_to_fit();
        }
    }
}

/// What the middleware needs: the limiters and whose `X-Forwarded-For` to trust.
#[derive(Clone)]
pub struct Guard {
    /// The limiters.
    pub limits: RateLimits,
    /// Proxies whose `X-Forwarded-For` is honoured.
    pub trusted_proxies: std::sync::Arc<[crate::config::Cidr]>,
}

/// The middleware.
pub async fn rate_limit(State(guard): State<Guard>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path == "/healthz" || path == "/readyz" {
        return next.run(req).await;
    }
    let limits = &guard.limits;
    let limiter = if path.starts_with("/admin/") || path == "/admin" {
        &limits.local[2]
    } else if path.starts_with("/v1/") {
        &limits.local[1]
    } else {
        &limits.local[0]
    };
    let Some(ip) = crate::net::client_ip(&req, &guard.trusted_proxies).map(client_key) else {
        return next.run(req).await;
    };
    let q = limiter.per_minute;
    let policy = format!("\"{}\";q={q};w=60", limiter.name);
    if let Some(shared) = &limits.shared {
        let key = format!("{}:rl:{}:{ip}", shared.prefix, limiter.name);
        let emission_ms = (60_000 / u64::from(q)).max(1);
        match shared.check(key, emission_ms, q).await {
            Some((1, remaining, ms)) => {
                let reset = u64::try_from(ms).unwrap_or(0).div_ceil(1000);
                let remaining = u32::try_from(remaining).unwrap_or(0).min(q);
                return with_headers(next.run(req).await, &policy, limiter.name, remaining, reset);
            }
            Some((_, _, ms)) => {
                return refused(
                    &policy,
                    limiter.name,
                    Duration::from_millis(u64::try_from(ms).unwrap_or(1000)),
                );
            }
            // Redis unreachable: each instance limits on its own until it is back.
            None => metrics::counter!("leadline_ratelimit_fallback_total").increment(1),
        }
    }
    match limiter.inner.check_key(&ip) {
        Ok(snapshot) => {
            let remaining = snapshot.remaining_burst_capacity();
            // Seconds until the whole quota is back: one unit every 60/q seconds.
            let reset = (u64::from(q - remaining.min(q)) * 60).div_ceil(u64::from(q));
            with_headers(next.run(req).await, &policy, limiter.name, remaining, reset)
        }
        Err(not_until) => refused(
            &policy,
            limiter.name,
            not_until.wait_time_from(limiter.inner.clock().now()),
        ),
    }
}

/// Whom a quota belongs to: an IPv4 address, or an IPv6 client's /64 (one
/// subscriber's network: a client that owns a /64 could otherwise use a new
/// address for every request).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

fn with_headers(mut res: Response, policy: &str, name: &str, remaining: u32, reset: u64) -> Response {
    let h = res.headers_mut();
    if let (Ok(p), Ok(r)) = (
        HeaderValue::from_str(policy),
        HeaderValue::from_str(&format!("\"{name}\";r={remaining};t={reset}")),
    ) {
        h.insert("ratelimit-policy", p);
        h.insert("ratelimit", r);
    }
    res
}

fn refused(policy: &str, name: &str, wait: Duration) -> Response {
    let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    metrics::counter!("leadline_rate_limited_total").increment(1);
    let mut res = StatusCode::TOO_MANY_REQUESTS.into_response();
    res.extensions_mut().insert(Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
        format!("Too many requests from this address; retry in {secs} s."),
    ));
    let h = res.headers_mut();
    if let (Ok(p), Ok(r), Ok(ra)) = (
        HeaderValue::from_str(policy),
        HeaderValue::from_str(&format!("\"{name}\";r=0;t={secs}")),
        HeaderValue::from_str(&secs.to_string()),
    ) {
        h.insert("ratelimit-policy", p);
        h.insert("ratelimit", r);
        h.insert(header::RETRY_AFTER, ra);
    }
    res
}
