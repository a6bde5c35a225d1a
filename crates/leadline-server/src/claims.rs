//! Idempotency claims held by this process.
//!
//! A request with an `Idempotency-Key` holds its claim twice: here, in memory, for
//! as long as its future lives, and in the database with a short lease
//! ([`CLAIM_LEASE`]) that a background task renews while the request runs. So:
//!
//! - a second request with the same key on this instance is answered 409 at once,
//!   without a write;
//! - a claim whose request is gone (its client went away, or releasing it after a
//!   5xx failed because the database could not write) is taken over by the next
//!   request with that key on this instance at once, since the instance knows the
//!   first one no longer runs; on SQLite, whose server is the only process on its
//!   database (it holds a lock), also every claim left by a process that died;
//! - other instances (PostgreSQL) take over a dead instance's claim once its lease
//!   ran out: at most [`CLAIM_LEASE`] after the crash;
//! - a server alone on its SQLite database does not write claims at all: it claims
//!   by reading, and writes the record once, with the outcome, in the transaction
//!   of the change (`IdempotentResponse::record`); a crash leaves nothing behind.
//!
//! A request whose claim was taken over cannot complete it: its commit is refused
//! as stale and nothing of it is stored (see `IdempotentResponse::holder`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use leadline_store::Store;

/// How long a claim holds in the database without renewal: the longest a key
/// stays "in flight" (409) for other instances after its process died.
pub const CLAIM_LEASE: Duration = Duration::from_secs(10);

/// How often the leases of claims still running are renewed.
pub const CLAIM_RENEW_EVERY: Duration = Duration::from_secs(3);

type Key = (String, String);

/// The claims of this process.
pub struct Claims {
    instance: String,
    exclusive: bool,
    running: Mutex<HashMap<Key, (String, Instant)>>,
}

/// A claim held by a running request; dropping it (the request finished, or was
/// dropped) forgets it here.
pub struct Held {
    claims: Arc<Claims>,
    /// `admin` or the tenant id.
    pub scope: String,
    /// The client's key.
    pub key: String,
    /// This claim's holder name (`<instance>/<unique>`).
    pub holder: String,
    /// The record to write with the outcome, when the claim was only read (a
    /// lone server: see `IdempotentResponse::record`).
    pub record: Option<leadline_core::change::IdempotencyRecord>,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held").field("holder", &self.holder).finish()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut running = self.claims.running.lock().unwrap_or_else(|p| p.into_inner());
        let k = (std::mem::take(&mut self.scope), std::mem::take(&mut self.key));
        if running.get(&k).is_some_and(|(h, _)| *h == self.holder) {
            running.remove(&k);
        }
    }
}

impl Claims {
    /// The claims of a new process; `exclusive` when it is the only server on its
    /// database.
    pub fn new(exclusive: bool) -> Arc<Self> {
        Arc::new(Self {
            instance: ulid::Ulid::new().to_string().to_ascii_lowercase(),
            exclusive,
            running: Mutex::new(HashMap::new()),
        })
    }

    /// Whether any in-flight claim not running here is dead (see the module docs).
    pub fn exclusive(&self) -> bool {
        self.exclusive
    }

    /// Holds `(scope, key)` for a request, unless a request of this process
    /// holds it already.
    pub fn hold(self: &Arc<Self>, scope: &str, key: &str) -> Option<Held> {
        let holder = format!(
            "{}/{}",
            self.instance,
            ulid::Ulid::new().to_string().to_ascii_lowercase()
        );
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let k = (scope.to_owned(), key.to_owned());
        if running.contains_key(&k) {
            return None;
        }
        running.insert(k, (holder.clone(), Instant::now()));
        Some(Held {
            claims: self.clone(),
            scope: scope.to_owned(),
            key: key.to_owned(),
            holder,
            record: None,
        })
    }

    /// The claims running longer than `age`.
    fn older_than(&self, age: Duration) -> Vec<(String, String, String)> {
        let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running
            .iter()
            .filter(|(_, (_, since))| since.elapsed() >= age)
            .map(|((scope, key), (holder, _))| (scope.clone(), key.clone(), holder.clone()))
            .collect()
    }

    /// Renews, every [`CLAIM_RENEW_EVERY`], the leases of the claims still running
    /// (most requests finish long before their first renewal).
    pub async fn renew(self: Arc<Self>, store: Arc<dyn Store>) {
        if self.exclusive {
            // A lone server writes no claim rows: there is no lease to renew.
            return;
        }
        let mut tick = tokio::time::interval(CLAIM_RENEW_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let due = self.older_than(CLAIM_RENEW_EVERY);
            if due.is_empty() {
                continue;
            }
            let until =
                crate::clock::now() + chrono::Duration::from_std(CLAIM_LEASE).unwrap_or(chrono::Duration::seconds(10));
            if let Err(e) = store.renew_idempotency(due, until).await {
                tracing::warn!(error = %e, "could not renew the leases of running idempotency claims");
            }
        }
    }
}

/// The lock a server holds on its SQLite database, so that it is the only server
/// on it (its claims are exclusive) and `restore` refuses while it runs.
pub struct ServeLock(#[allow(dead_code)] std::fs::File);

impl ServeLock {
    /// Takes the lock beside the database file `db` (`<db>.lock`), or says that
    /// another process holds it.
    pub fn acquire(db: &std::path::Path) -> Result<Self, String> {
        let mut path = db.as_os_str().to_owned();
        path.push(".lock");
        let path = std::path::PathBuf::from(path);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let mut opts = std::fs::OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let file = opts
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Self(file)),
            Err(std::fs::TryLockError::WouldBlock) => Err(format!(
                "another Leadline server is running on {} (it holds {})",
                db.display(),
                path.display()
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
        }
    }
}

/// The file of a `sqlite:` database URL.
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next().unwrap_or(path);
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}
