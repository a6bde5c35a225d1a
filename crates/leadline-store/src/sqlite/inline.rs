//! Read-only rusqlite connections for the one read on the intake's path (the
//! lone server's idempotency claim), run on the calling thread: a lookup by
//! primary key takes microseconds, less than the two thread hops a read through
//! sqlx's pool costs (sqlx runs each SQLite connection on a thread of its own).
//! In WAL mode a reader never waits for the writer.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// Idle connections kept for reuse.
const KEEP: usize = 8;

/// A reader that would wait this long for a lock fails instead (the caller then
/// reads through the pool): a request's thread does not sleep on a lock.
const BUSY_TIMEOUT: Duration = Duration::from_millis(50);

/// How long the fallback waits for a lock.
const PATIENT_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct InlineReaders {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl InlineReaders {
    /// Connections are opened on first use (after the migrations).
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` on a blocking thread, on a connection of its own that waits for
    /// locks as long as the writer does (the fallback when [`Self::read`] failed).
    pub(crate) async fn read_patiently<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> crate::Result<T> + Send + 'static,
    ) -> crate::Result<T> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = open(&path)?;
            conn.busy_timeout(PATIENT_TIMEOUT)?;
            f(&conn)
        })
        .await
        .map_err(|e| crate::StoreError::Unavailable(format!("a read did not finish: {e}")))?
    }

    /// Runs `f` on an idle connection (opening one when none is idle). A
    /// connection whose read failed is closed, not kept.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&Connection) -> crate::Result<T>) -> crate::Result<T> {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let conn = match idle {
            Some(c) => c,
            None => open(&self.path)?,
        };
        let out = f(&conn);
        if out.is_ok() {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < KEEP {
                idle.push(conn);
            }
        }
        out
    }
}

fn open(path: &PathBuf) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(16);
    Ok(conn)
}
