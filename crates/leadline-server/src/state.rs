//! The state every handler and middleware can reach.

use std::sync::Arc;

use leadline_store::Store;

use crate::config::Config;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The database.
    pub store: Arc<dyn Store>,
    /// The configuration.
    pub config: Arc<Config>,
    /// SHA-256 of the admin key.
    pub admin_key_hash: [u8; 32],
    /// Per-IP rate limiters.
    pub rate_limits: crate::ratelimit::RateLimits,
    /// Wakes the outbox dispatcher and hands it the messages this process creates.
    pub outbox: Arc<crate::worker::Handoff>,
    /// The idempotency claims of this process's running requests.
    pub claims: Arc<crate::claims::Claims>,
    /// The web origins some tenant allows (CORS preflights).
    pub origins: Arc<crate::cors::AllowedOrigins>,
    /// The methods of each documented route (405 before any claim).
    pub routes: Arc<crate::routes::RouteMethods>,
    /// The demo company's publishable key, in demo mode (the widget demo page).
    pub demo_key: Arc<std::sync::OnceLock<String>>,
}
