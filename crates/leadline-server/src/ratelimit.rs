//! Per-client-IP rate limiting (GCRA, `governor`), one limiter per route class:
//! `public` (quote pages, the OpenAPI document, unknown paths), `tenant` (`/v1`)
//! and `admin` (`/admin`). Health checks are never limited.
//!
//! Each limiter allows its per-minute quota as a burst and refills it evenly, so
//! 60 a minute means: 60 at once, then one a second. Answers carry the IETF
//! draft headers `RateLimit-Policy: "tenant";q=60;w=60` and
//! `RateLimit: "tenant";r=57;t=3`; a refusal is a 429 problem with `Retry-After`.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

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

/// The limiters of one server.
#[derive(Clone)]
pub struct RateLimits(Arc<[Limiter; 3]>);

impl RateLimits {
    /// Limiters with the given per-minute quotas.
    pub fn new(public: u32, tenant: u32, admin: u32) -> Self {
        Self(Arc::new([
            Limiter::new("public", public),
            Limiter::new("tenant", tenant),
            Limiter::new("admin", admin),
        ]))
    }

    /// Forgets clients whose quota is full again (bounded memory).
    pub fn shrink(&self) {
        for l in self.0.iter() {
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
    let limiter = if path.starts_with("/admin/") || path == "/admin" {
        &state.rate_limits.0[2]
    } else if path.starts_with("/v1/") {
        &state.rate_limits.0[1]
    } else {
        &state.rate_limits.0[0]
    };
    let Some(ip) = crate::net::client_ip(&req, &state.config.trusted_proxies) else {
        return next.run(req).await;
    };
    let q = limiter.per_minute;
    let policy = format!("\"{}\";q={q};w=60", limiter.name);
    match limiter.inner.check_key(&ip) {
        Ok(snapshot) => {
            let remaining = snapshot.remaining_burst_capacity();
            // Seconds until the whole quota is back: one unit every 60/q seconds.
            let reset = (u64::from(q - remaining.min(q)) * 60).div_ceil(u64::from(q));
            let mut res = next.run(req).await;
            let h = res.headers_mut();
            if let (Ok(p), Ok(r)) = (
                HeaderValue::from_str(&policy),
                HeaderValue::from_str(&format!("\"{}\";r={remaining};t={reset}", limiter.name)),
            ) {
                h.insert("ratelimit-policy", p);
                h.insert("ratelimit", r);
            }
            res
        }
        Err(not_until) => {
            let wait = not_until.wait_time_from(limiter.inner.clock().now());
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            metrics::counter!("leadline_rate_limited_total").increment(1);
            let mut res = StatusCode::TOO_MANY_REQUESTS.into_response();
            res.extensions_mut().insert(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate-limited",
                format!("Too many requests from this address; retry in {secs} s."),
            ));
            let h = res.headers_mut();
            if let (Ok(p), Ok(r), Ok(ra)) = (
                HeaderValue::from_str(&policy),
                HeaderValue::from_str(&format!("\"{}\";r=0;t={secs}", limiter.name)),
                HeaderValue::from_str(&secs.to_string()),
            ) {
                h.insert("ratelimit-policy", p);
                h.insert("ratelimit", r);
                h.insert(header::RETRY_AFTER, ra);
            }
            res
        }
    }
}
