//! The reads every lead capture makes, kept in memory: the API key with its tenant,
//! and the tenant's webhook endpoints.
//!
//! A commit of this process that changes tenants, keys or endpoints empties the
//! cache at once, so this process never answers from a value older than its own
//! last change. A change made by another instance (PostgreSQL) is seen when an
//! entry ages out: at most [`CACHE_TTL`] later. A revoked key or a suspended tenant
//! is therefore refused by every instance within that bound.
//!
//! A generation counter closes the race between a read that started before a
//! change and its insertion after the change: such a value is not kept. Only found
//! keys are kept (a flood of invented keys cannot grow the cache), and each map is
//! bounded.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use leadline_core::api_key::ApiKey;
use leadline_core::change::{Change, ChangeSet};
use leadline_core::id::TenantId;
use leadline_core::tenant::Tenant;
use leadline_core::webhook::WebhookEndpoint;

/// The longest a cached key, tenant or endpoint list is used without reading it
/// again: the bound on how late a change made by another instance is seen.
pub const CACHE_TTL: Duration = Duration::from_secs(5);

/// Entries a map keeps at most; beyond, it starts over.
const MAX_ENTRIES: usize = 10_000;

struct Map<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash, V: Clone> Map<K, V> {
    fn new() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (Instant, V)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get<Q>(&self, k: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let map = self.lock();
        let (at, v) = map.get(k)?;
        (at.elapsed() < CACHE_TTL).then(|| v.clone())
    }

    fn put(&self, k: K, v: V) {
        let mut map = self.lock();
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(k, (Instant::now(), v));
    }

    fn clear(&self) {
        self.lock().clear();
    }
}

/// See the module documentation.
pub(crate) struct ReadCache {
    generation: AtomicU64,
    keys: Map<String, (ApiKey, Tenant)>,
    endpoints: Map<TenantId, Vec<WebhookEndpoint>>,
}

impl ReadCache {
    pub(crate) fn new() -> Self {
        Self {
            generation: AtomicU64::new(0),
            keys: Map::new(),
            endpoints: Map::new(),
        }
    }

    /// Whether committing `cs` changes what the cache holds.
    pub(crate) fn touched_by(cs: &ChangeSet) -> bool {
        cs.changes.iter().any(|c| {
            matches!(
                c,
                Change::InsertTenant(_)
                    | Change::UpdateTenant(_)
                    | Change::InsertApiKey(_)
                    | Change::RevokeApiKey { .. }
                    | Change::InsertEndpoint(_)
                    | Change::UpdateEndpoint(_)
                    | Change::DeleteEndpoint { .. }
            )
        })
    }

    /// Forgets everything; reads under way when this runs are not kept.
    pub(crate) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.keys.clear();
        self.endpoints.clear();
    }

    /// The key whose hash is `hash`, from the cache or from `load`.
    pub(crate) async fn key<F>(&self, hash: &str, load: F) -> crate::Result<Option<(ApiKey, Tenant)>>
    where
        F: Future<Output = crate::Result<Option<(ApiKey, Tenant)>>>,
    {
        if let Some(hit) = self.keys.get(hash) {
            return Ok(Some(hit));
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let found = load.await?;
        if let Some(v) = &found
            && self.generation.load(Ordering::SeqCst) == generation
        {
            self.keys.put(hash.to_owned(), v.clone());
        }
        Ok(found)
    }

    /// The tenant's endpoints, from the cache or from `load`.
    pub(crate) async fn endpoints<F>(&self, tenant: &TenantId, load: F) -> crate::Result<Vec<WebhookEndpoint>>
    where
        F: Future<Output = crate::Result<Vec<WebhookEndpoint>>>,
    {
        if let Some(hit) = self.endpoints.get(tenant) {
            return Ok(hit);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let found = load.await?;
        if self.generation.load(Ordering::SeqCst) == generation {
            self.endpoints.put(tenant.clone(), found.clone());
        }
        Ok(found)
    }
}
