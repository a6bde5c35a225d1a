//! Maintenance: retention cleanups and SQLite backups, run by `POST
//! /admin/maintenance`, by the CLI, and by the janitor (the cleanups every
//! `LEADLINE_JANITOR_INTERVAL`, the backup daily; one instance at a time, by lease).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use leadline_store::{Store, StoreError};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::config::Config;
use crate::effects::Effects;
use crate::error::{ApiError, ApiResult};

/// The actions.
pub const ACTIONS: &[&str] = &[
    "cleanup_expired_keys",
    "cleanup_old_audit",
    "cleanup_old_dead_letters",
    "cleanup_old_deliveries",
    "backup_database",
    "expire_quotes",
];

/// `POST /admin/maintenance` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceRequest {
    /// One of `cleanup_expired_keys`, `cleanup_old_audit`, `cleanup_old_dead_letters`,
    /// `cleanup_old_deliveries`, `backup_database`.
    pub action: String,
    /// For the cleanups of old rows: the age in days that overrides the configured
    /// retention.
    pub older_than_days: Option<u32>,
}

/// A backup written.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Backup {
    /// Where.
    pub path: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// `ok`: `PRAGMA integrity_check` passed on the copy.
    pub integrity: String,
    /// Older backups removed to keep `LEADLINE_BACKUP_KEEP`.
    pub removed: Vec<String>,
}

/// What an action did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Outcome {
    /// The action run, as asked.
    pub action: String,
    /// Rows deleted, or 1 for a backup.
    pub affected: u64,
    /// Rows from before this time were deleted (cleanups of old rows).
    pub cutoff: Option<DateTime<Utc>>,
    /// The backup (backup_database).
    pub backup: Option<Backup>,
    /// How long it took.
    pub duration_ms: u64,
}

fn cutoff(now: DateTime<Utc>, retention: Duration, older_than_days: Option<u32>) -> DateTime<Utc> {
    let age = match older_than_days {
        Some(d) => chrono::Duration::days(i64::from(d)),
        None => chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(365)),
    };
    now - age
}

/// Runs one action at `now` and commits its audit entry (through `fx`) in the
/// transaction that makes its changes: a cleanup deletes its rows there, so rows
/// never go without the entry that says who removed them, nor the other way round.
pub async fn run(
    fx: &Effects,
    store: &dyn Store,
    config: &Config,
    req: &MaintenanceRequest,
    now: DateTime<Utc>,
) -> ApiResult<Outcome> {
    use leadline_core::change::{Change, ChangeSet, Cleanup};
    let started = Instant::now();
    if req.older_than_days == Some(0) || req.older_than_days.is_some_and(|d| d > 36_500) {
        return Err(leadline_core::ValidationErrors::single("/older_than_days", "must be from 1 to 36500").into());
    }
    if ACTIONS.contains(&req.action.as_str()) {
        fx.set_action(&format!("maintenance.{}", req.action));
    }
    let mut out = Outcome {
        action: req.action.clone(),
        affected: 0,
        cutoff: None,
        backup: None,
        duration_ms: 0,
    };
    let mut before = |retention| {
        let c = cutoff(now, retention, req.older_than_days);
        out.cutoff = Some(c);
        c
    };
    let cleanup = match req.action.as_str() {
        "cleanup_expired_keys" => Some(Cleanup::IdempotencyKeys(now)),
        "cleanup_old_audit" => Some(Cleanup::Audit(before(config.audit_retention))),
        "cleanup_old_dead_letters" => Some(Cleanup::DeadLetters(before(config.dead_letter_retention))),
        "cleanup_old_deliveries" => Some(Cleanup::Deliveries(before(config.delivery_log_retention))),
        "expire_quotes" => {
            // Each quote is expired and audited in a transaction of its own.
            out.affected = expire_quotes(store, now).await?;
            None
        }
        "backup_database" => {
            out.backup = Some(backup(store, config, now).await?);
            out.affected = 1;
            None
        }
        other => {
            return Err(leadline_core::ValidationErrors::single(
                "/action",
                format!("unknown action {other:?}; valid actions: {}", ACTIONS.join(", ")),
            )
            .into());
        }
    };
    let cs = match cleanup {
        Some(c) => ChangeSet::one(Change::Cleanup(c)),
        None => ChangeSet::new(),
    };
    fx.commit_reporting(store, cs, axum::http::StatusCode::OK, move |committed| {
        out.affected += committed.cleaned;
        out.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let details = serde_json::json!({"action": out.action, "affected": out.affected, "cutoff": out.cutoff});
        (out, details)
    })
    .await
}

/// Marks sent quotes whose validity has passed `expired` and tells subscribed
/// endpoints (`quote.expired`). Returns how many.
pub async fn expire_quotes(store: &dyn Store, now: DateTime<Utc>) -> ApiResult<u64> {
    use leadline_core::change::{Change, ChangeSet};
    let mut n = 0;
    loop {
        let batch = store.stale_quotes(now, 100).await?;
        if batch.is_empty() {
            return Ok(n);
        }
        let mut progressed = false;
        for q in batch {
            // The query and the verb agree on what is stale; one answered meanwhile
            // is refused by the commit (its version moved).
            let Ok(next) = q.expire(now) else { continue };
            let endpoints = store.list_endpoints(&next.tenant_id).await?;
            let events = crate::events::webhook(
                &next.tenant_id,
                Some(&next.lead_id),
                &endpoints,
                "quote.expired",
                &next,
                now,
            )
            .map_err(ApiError::internal)?;
            let mut cs = ChangeSet::one(Change::UpdateQuote(next.clone()));
            cs.changes.extend(events);
            cs.push(Change::InsertAudit(expiry_audit(&next, now)));
            match store.commit(cs).await {
                Ok(_) => {
                    n += 1;
                    progressed = true;
                }
                // Answered or changed meanwhile: not stale any more.
                Err(StoreError::Stale) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if !progressed {
            return Ok(n);
        }
    }
}

/// The audit entry of a quote's expiry, committed with it.
fn expiry_audit(q: &leadline_core::quote::Quote, now: DateTime<Utc>) -> leadline_core::audit::AuditEntry {
    use leadline_core::audit::{ActorType, AuditEntry};
    AuditEntry {
        id: leadline_core::id::AuditId::generate(),
        tenant_id: Some(q.tenant_id.clone()),
        at: now,
        actor_type: ActorType::System,
        actor_id: Some("janitor".into()),
        action: "quote.expire".into(),
        resource_type: Some("quote".into()),
        resource_id: Some(q.id.to_string()),
        request_id: None,
        ip: None,
        user_agent: None,
        status: 200,
        details: serde_json::json!({"valid_until": q.valid_until}),
    }
}

/// Writes a checked backup to `<data_dir>/backups/leadline-<UTC time>.db` and keeps
/// the newest `LEADLINE_BACKUP_KEEP`.
pub async fn backup(store: &dyn Store, config: &Config, now: DateTime<Utc>) -> ApiResult<Backup> {
    let dir = config.data_dir.join("backups");
    tokio::fs::create_dir_all(&dir).await.map_err(ApiError::internal)?;
    let stamp = now.format("%Y%m%dT%H%M%SZ").to_string();
    let mut path = dir.join(format!("leadline-{stamp}.db"));
    let mut n = 1;
    while path.exists() {
        path = dir.join(format!("leadline-{stamp}-{n}.db"));
        n += 1;
    }
    let partial = dir.join(format!(
        ".{}.partial",
        path.file_name().and_then(|f| f.to_str()).unwrap_or("backup")
    ));
    let _ = tokio::fs::remove_file(&partial).await;
    match store.backup_to(&partial).await {
        Ok(()) => {}
        Err(StoreError::Unsupported(what)) => return Err(ApiError::NotImplemented(format!("{what}."))),
        Err(e) => return Err(e.into()),
    }
    if let Err(e) = leadline_store::sqlite::check_file(&partial).await {
        let _ = tokio::fs::remove_file(&partial).await;
        return Err(ApiError::internal(format!("the backup failed its check: {e}")));
    }
    tokio::fs::rename(&partial, &path).await.map_err(ApiError::internal)?;
    let (size_bytes, sha256) = hash_file(&path).await?;
    let removed = prune(&dir, config.backup_keep).await;
    tracing::info!(path = %path.display(), size_bytes, "backup written");
    Ok(Backup {
        path: path.display().to_string(),
        size_bytes,
        sha256,
        integrity: "ok".into(),
        removed,
    })
}

async fn hash_file(path: &Path) -> ApiResult<(u64, String)> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || -> std::io::Result<(u64, String)> {
        use std::io::Read;
        let mut f = std::fs::File::open(&path)?;
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut size = 0u64;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            size += n as u64;
            h.update(&buf[..n]);
        }
        Ok((size, hex::encode(h.finalize())))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

/// Deletes all but the newest `keep` backups; returns the removed paths.
async fn prune(dir: &Path, keep: u32) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut backups: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f.starts_with("leadline-") && f.ends_with(".db"))
        })
        .collect();
    // Oldest first, by when they were written (two in one second share the stamp).
    backups.sort_by_key(|p| (std::fs::metadata(p).and_then(|m| m.modified()).ok(), p.clone()));
    let excess = backups.len().saturating_sub(keep as usize);
    let mut removed = Vec::new();
    for p in backups.into_iter().take(excess) {
        if tokio::fs::remove_file(&p).await.is_ok() {
            removed.push(p.display().to_string());
        }
    }
    removed
}

/// Restores a backup file over the SQLite database `target`: checks the file,
/// refuses to replace an existing database unless `force`, copies it beside the
/// target and renames it into place, so the database is never half-written.
pub async fn restore(file: &Path, target: &Path, force: bool) -> Result<i64, String> {
    let version = leadline_store::sqlite::check_file(file)
        .await
        .map_err(|e| format!("{}: {e}", file.display()))?;
    if target.exists() && !force {
        return Err(format!(
            "{} exists; stop the server and pass --force to replace it with {}",
            target.display(),
            file.display()
        ));
    }
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let tmp = dir.join(".leadline-restore.partial");
    std::fs::copy(file, &tmp).map_err(|e| format!("copy: {e}"))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("sync: {e}"))?;
    // A write-ahead log left by the old database must not be applied to the new one.
    for suffix in ["-wal", "-shm"] {
        let mut side = target.as_os_str().to_owned();
        side.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(side));
    }
    std::fs::rename(&tmp, target).map_err(|e| format!("rename: {e}"))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(version)
}

/// The janitor: runs the cleanups every interval and the backup daily, each under a
/// lease so that one instance of several does it. The cleanup lease lasts one
/// interval from its start and is renewed while the jobs run, so whatever the
/// interval (and however long the jobs take), one instance runs them at a time and
/// at most once per interval.
pub async fn janitor(
    store: std::sync::Arc<dyn Store>,
    config: std::sync::Arc<Config>,
    stop: tokio_util::sync::CancellationToken,
) {
    let holder = format!("janitor-{}", ulid::Ulid::new().to_string().to_ascii_lowercase());
    let interval = config.janitor_interval;
    let lease = chrono::Duration::from_std(interval).unwrap_or(chrono::Duration::hours(1));
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {},
            () = stop.cancelled() => return,
        }
        let now = crate::clock::now();
        if matches!(store.try_lease("cleanup", &holder, now, now + lease).await, Ok(true)) {
            let jobs = async {
                for action in [
                    "cleanup_expired_keys",
                    "cleanup_old_audit",
                    "cleanup_old_dead_letters",
                    "cleanup_old_deliveries",
                    "expire_quotes",
                ] {
                    janitor_run(store.as_ref(), &config, action, now).await;
                }
            };
            tokio::pin!(jobs);
            let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + interval / 2, interval / 2);
            loop {
                tokio::select! {
                    () = &mut jobs => break,
                    _ = heartbeat.tick() => {
                        let t = crate::clock::now();
                        if !matches!(store.try_lease("cleanup", &holder, t, t + lease).await, Ok(true)) {
                            tracing::warn!("the janitor could not renew its lease; another instance may start the cleanups");
                        }
                    }
                }
            }
        }
        let day = chrono::Duration::hours(23);
        if store.backend() == leadline_store::Backend::Sqlite
            && matches!(store.try_lease("backup", &holder, now, now + day).await, Ok(true))
        {
            janitor_run(store.as_ref(), &config, "backup_database", now).await;
        }
    }
}

async fn janitor_run(store: &dyn Store, config: &Config, action: &str, now: DateTime<Utc>) {
    let req = MaintenanceRequest {
        action: action.to_owned(),
        older_than_days: None,
    };
    let fx = crate::effects::Effects::system("janitor", &format!("maintenance.{action}"));
    match run(&fx, store, config, &req, now).await {
        Ok(outcome) => tracing::info!(action, affected = outcome.affected, "janitor"),
        Err(e) => tracing::error!(action, error = %e, "janitor action failed"),
    }
}
