//! Per-client-IP rate limiting (GCRA), one limiter per route class: `public` (quote
//! pages, the OpenAPI document, unknown paths), `tenant` (`/v1`) and `admin`
//! (`/admin`). Health checks are never limited.
//!
//! Each limiter allows its per-minute quota as a burst and refills it evenly, so
//! 60 a minute means: 60 at once, then one a second. With `LEADLINE_REDIS_URL` the
//! quota is shared by every instance (GCRA in a Redis script); otherwise, or while
//! Redis is unreachable, each instance keeps its own (`governor`). Answers carry
//! the IETF draft headers `RateLimit-Policy: "tenant";q=60;w=60` and
//! `RateLimit: "tenant";r=57;t=3`; a refusal is a 429 problem with `Retry-After`.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::app::AppState;
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

/// The quota shared through Redis.
#[derive(Clone)]
struct Shared {
    conn: redis::aio::ConnectionManager,
    script: Arc<redis::Script>,
    prefix: String,
}

/// The limiters of one server.
#[derive(Clone)]
pub struct RateLimits {
    local: Arc<[Limiter; 3]>,
    shared: Option<Shared>,
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

    /// Shares the quotas through Redis at `url`; keys start with `prefix`.
    pub async fn shared(self, url: &str, prefix: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| format!("LEADLINE_REDIS_URL: {e}"))?;
        let conn = redis::aio::ConnectionManager::new(client)
            .await
            .map_err(|e| format!("LEADLINE_REDIS_URL: cannot connect: {e}"))?;
        let shared = Shared {
            conn,
            script: Arc::new(redis::Script::new(GCRA)),
            prefix: prefix.to_owned(),
        };
        Ok(Self {
            shared: Some(shared),
            ..self
        })
    }

    /// Forgets clients whose quota is full again (bounded memory).
    pub fn shrink(&self) {
        for l in self.local.iter() {
            l.inner.retain_recent();
            l.inner.shrink_to_fit();
        }
    }
}

/// The middleware.
pub async fn rate_limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if path == "/healthz" || path == "/readyz" {
        return next.run(req).await;
    }
    let limits = &state.rate_limits;
    let limiter = if path.starts_with("/admin/") || path == "/admin" {
        &limits.local[2]
    } else if path.starts_with("/v1/") {
        &limits.local[1]
    } else {
        &limits.local[0]
    };
    let Some(ip) = crate::net::client_ip(&req, &state.config.trusted_proxies) else {
        return next.run(req).await;
    };
    let q = limiter.per_minute;
    let policy = format!("\"{}\";q={q};w=60", limiter.name);
    if let Some(shared) = &limits.shared {
        let key = format!("{}:rl:{}:{ip}", shared.prefix, limiter.name);
        let emission_ms = (60_000 / u64::from(q)).max(1);
        let mut conn = shared.conn.clone();
        let answer: Result<(i64, i64, i64), _> = shared
            .script
            .key(key)
            .arg(emission_ms)
            .arg(q)
            .invoke_async(&mut conn)
            .await;
        match answer {
            Ok((1, remaining, ms)) => {
                let reset = u64::try_from(ms).unwrap_or(0).div_ceil(1000);
                let remaining = u32::try_from(remaining).unwrap_or(0).min(q);
                return with_headers(next.run(req).await, &policy, limiter.name, remaining, reset);
            }
            Ok((_, _, ms)) => {
                return refused(
                    &policy,
                    limiter.name,
                    Duration::from_millis(u64::try_from(ms).unwrap_or(1000)),
                );
            }
            // Redis unreachable: each instance limits on its own until it is back.
            Err(e) => tracing::warn!(error = %e, "shared rate limit unavailable; limiting locally"),
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
