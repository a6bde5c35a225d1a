//! The web origins some tenant allows, for CORS preflights of lead capture.
//!
//! A preflight carries no key, so it cannot know the tenant: it is granted when
//! any active tenant lists the origin in its `allowed_origins` setting (the real
//! `POST` is then checked against its own tenant's list). A tenant with an empty
//! list takes leads from any origin server to server, but a browser on another
//! origin needs its site listed. The set is read from the tenants at most every
//! [`ORIGINS_TTL`], and at once after a settings change in this process.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leadline_core::page::PageRequest;
use leadline_core::tenant::TenantStatus;
use leadline_store::Store;

/// How long the set is trusted before it is read again.
pub const ORIGINS_TTL: Duration = Duration::from_secs(10);

/// The cached set of allowed origins.
#[derive(Default)]
pub struct AllowedOrigins {
    cache: Mutex<Option<(Instant, Arc<HashSet<String>>)>>,
}

impl AllowedOrigins {
    /// Whether some active tenant allows `origin` (compared as the lead route does:
    /// lower case, no trailing slash).
    pub async fn allows(&self, store: &dyn Store, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .filter(|(at, _)| at.elapsed() < ORIGINS_TTL)
            .map(|(_, set)| set.clone());
        let set = match cached {
            Some(set) => set,
            None => match load(store).await {
                Ok(set) => {
                    let set = Arc::new(set);
                    *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = Some((Instant::now(), set.clone()));
                    set
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not read the allowed origins");
                    return false;
                }
            },
        };
        set.contains(&origin)
    }

    /// A tenant's settings changed: read the set again at the next preflight.
    pub fn invalidate(&self) {
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

async fn load(store: &dyn Store) -> leadline_store::Result<HashSet<String>> {
    let mut set = HashSet::new();
    let mut after = None;
    loop {
        let page = store
            .list_tenants(&PageRequest {
                after: after.clone(),
                limit: 200,
            })
            .await?;
        let more = page.len() > 200;
        for t in page.iter().take(200) {
            if t.status == TenantStatus::Active {
                set.extend(t.settings.allowed_origins.iter().cloned());
            }
        }
        match (more, page.get(199)) {
            (true, Some(last)) => after = Some(last.id.to_string()),
            _ => return Ok(set),
        }
    }
}
