//! The SQLite writer: one task owns the write connection, and every write of the
//! process is a job sent to it.
//!
//! The task drains its queue into batches. A batch is one transaction (`BEGIN
//! IMMEDIATE … COMMIT`, one fsync under `synchronous=FULL`) with a savepoint per
//! job: a job that fails rolls back to its savepoint and answers its own error,
//! the others commit together, and only then does any job of the batch get its
//! answer, so an acknowledged write is on disk. Many requests share one fsync
//! (group commit), which is what makes the write path as fast as the disk allows.
//!
//! Request futures never touch the connection: a request that is dropped (its
//! client went away, its timeout fired) drops only its reply channel, and its job,
//! once queued, still runs to the end. The queue is bounded; a full queue refuses
//! new request jobs at once ([`StoreError::Busy`]) instead of holding memory.
//!
//! When a batch cannot begin or commit, its jobs fail with
//! [`StoreError::Unavailable`], the writer reopens its connection and probes with
//! a small write; when that fails too, the writer reports itself failing (so
//! `/readyz` answers 503) and probes again every [`PROBE_INTERVAL`] until a write
//! commits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_core::future::BoxFuture;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use crate::StoreError;

/// How often a failing writer tries a probe write.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Batching and queue bounds of the writer.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Most jobs in one transaction.
    pub max_batch: usize,
    /// How long the writer waits for more jobs once it has one. Zero: a batch is
    /// whatever queued while the previous batch committed (which is already many
    /// under load, and no added latency when idle).
    pub max_wait: Duration,
    /// Jobs that may wait; a request arriving at a full queue is refused (503).
    pub queue_capacity: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self {
            max_batch: 256,
            max_wait: Duration::ZERO,
            queue_capacity: 4096,
        }
    }
}

/// What a finished job does once its batch has committed (or failed to).
type Reply = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// A job: runs on the writer's connection inside the batch's transaction, under
/// its own savepoint. `None` means it failed (and has answered already).
type JobFn = Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Option<Reply>> + Send>;

enum Msg {
    Job(JobFn),
    /// Finish the queued jobs, checkpoint the WAL and stop.
    Close(oneshot::Sender<()>),
}

/// Whether a queue that is full refuses the job or waits for room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Refuse at once with [`StoreError::Busy`] (requests: they answer 503).
    Reject,
    /// Wait for room (workers and maintenance, which retry anyway).
    Wait,
}

/// Counters of the writer, for tests and diagnostics.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Transactions committed.
    pub batches: AtomicU64,
    /// Jobs committed.
    pub jobs: AtomicU64,
    /// Jobs refused because the queue was full.
    pub rejected: AtomicU64,
}

/// The handle the store keeps: sends jobs to the writer task.
pub(crate) struct Writer {
    tx: mpsc::Sender<Msg>,
    failing: Arc<AtomicBool>,
    stats: Arc<WriterStats>,
}

impl Writer {
    /// Starts the writer task on `conn`; `opts` reopens it when it breaks.
    pub(crate) fn start(conn: SqliteConnection, opts: SqliteConnectOptions, options: &WriterOptions) -> Self {
        let (tx, rx) = mpsc::channel(options.queue_capacity.max(1));
        let failing = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(WriterStats::default());
        let task = Task {
            rx,
            conn: Some(conn),
            opts,
            max_batch: options.max_batch.max(1),
            max_wait: options.max_wait,
            failing: failing.clone(),
            stats: stats.clone(),
        };
        tokio::spawn(task.run());
        Self { tx, failing, stats }
    }

    /// Whether the writer could not commit lately (its last batch and a probe failed).
    pub(crate) fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    pub(crate) fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Runs `f` in the writer's next batch and answers once that batch committed.
    pub(crate) async fn run<T, F>(&self, admission: Admission, f: F) -> crate::Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, crate::Result<T>> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<crate::Result<T>>();
        let job: JobFn = Box::new(move |conn| {
            Box::pin(async move {
                match f(conn).await {
                    Ok(v) => Some(Box::new(move |r: Result<(), StoreError>| {
                        let _ = tx.send(r.map(|()| v));
                    }) as Reply),
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        None
                    }
                }
            })
        });
        let msg = Msg::Job(job);
        match admission {
            Admission::Reject => self.tx.try_send(msg).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("leadline_writer_rejected_total").increment(1);
                    StoreError::Busy
                }
                mpsc::error::TrySendError::Closed(_) => StoreError::Unavailable("the writer has stopped".into()),
            })?,
            Admission::Wait => self
                .tx
                .send(msg)
                .await
                .map_err(|_| StoreError::Unavailable("the writer has stopped".into()))?,
        }
        // A dropped reply means the batch never committed (it failed, or the
        // writer stopped); the writer has logged why.
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("the write could not be committed".into())))
    }

    /// Lets queued jobs finish, checkpoints the WAL into the main file and stops.
    pub(crate) async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Close(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

struct Task {
    rx: mpsc::Receiver<Msg>,
    conn: Option<SqliteConnection>,
    opts: SqliteConnectOptions,
    max_batch: usize,
    max_wait: Duration,
    failing: Arc<AtomicBool>,
    stats: Arc<WriterStats>,
}

/// Why a batch as a whole failed.
struct BatchFailure(String);

impl Task {
    async fn run(mut self) {
        loop {
            let first = if self.failing.load(Ordering::Relaxed) {
                tokio::select! {
                    m = self.rx.recv() => m,
                    () = tokio::time::sleep(PROBE_INTERVAL) => {
                        self.probe().await;
                        continue;
                    }
                }
            } else {
                self.rx.recv().await
            };
            let Some(first) = first else { break };
            let mut jobs = Vec::new();
            let mut close = None;
            match first {
                Msg::Job(j) => jobs.push(j),
                Msg::Close(done) => close = Some(done),
            }
            if close.is_none() {
                self.gather(&mut jobs, &mut close).await;
            }
            metrics::gauge!("leadline_writer_queue_depth").set(self.rx.len() as f64);
            if !jobs.is_empty() {
                self.batch(jobs).await;
            }
            if let Some(done) = close {
                self.checkpoint().await;
                let _ = done.send(());
                break;
            }
        }
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
    }

    /// Adds what is queued (waiting up to `max_wait` for more) to `jobs`.
    async fn gather(&mut self, jobs: &mut Vec<JobFn>, close: &mut Option<oneshot::Sender<()>>) {
        let deadline = tokio::time::Instant::now() + self.max_wait;
        while jobs.len() < self.max_batch {
            let next = match self.rx.try_recv() {
                Ok(m) => Some(m),
                Err(_) if self.max_wait.is_zero() => None,
                Err(_) => tokio::time::timeout_at(deadline, self.rx.recv()).await.ok().flatten(),
            };
            match next {
                Some(Msg::Job(j)) => jobs.push(j),
                Some(Msg::Close(done)) => {
                    *close = Some(done);
                    return;
                }
                None => return,
            }
        }
    }

    /// The connection, reopened when it was lost.
    async fn conn(&mut self) -> Result<&mut SqliteConnection, BatchFailure> {
        if self.conn.is_none() {
            let c = SqliteConnection::connect_with(&self.opts)
                .await
                .map_err(|e| BatchFailure(format!("cannot reopen the database: {e}")))?;
            self.conn = Some(c);
        }
        self.conn.as_mut().ok_or_else(|| BatchFailure("no connection".into()))
    }

    /// Runs one batch; see the module documentation.
    async fn batch(&mut self, jobs: Vec<JobFn>) {
        let size = jobs.len();
        let started = Instant::now();
        match self.transaction(jobs).await {
            Ok(replies) => {
                let committed = replies.len() as u64;
                for reply in replies {
                    reply(Ok(()));
                }
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.stats.jobs.fetch_add(committed, Ordering::Relaxed);
                metrics::histogram!("leadline_writer_batch_size").record(size as f64);
                metrics::histogram!("leadline_writer_commit_duration_seconds").record(started.elapsed().as_secs_f64());
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("the database accepts writes again");
                }
            }
            Err(BatchFailure(why)) => {
                // Every job of the batch is answered `Unavailable` (their replies
                // were dropped); nothing of it is on disk.
                tracing::error!(jobs = size, error = %why, "a write batch could not be committed");
                self.recover().await;
            }
        }
    }

    /// `BEGIN IMMEDIATE`, a savepoint per job, `COMMIT`; the replies of the jobs
    /// that succeeded, to send once committed.
    async fn transaction(&mut self, jobs: Vec<JobFn>) -> Result<Vec<Reply>, BatchFailure> {
        let conn = self.conn().await?;
        begin(conn).await?;
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs {
            if let Err(e) = exec(conn, "SAVEPOINT job").await {
                rollback(conn).await;
                return Err(e);
            }
            let reply = job(conn).await;
            let end = match reply {
                Some(r) => {
                    replies.push(r);
                    exec(conn, "RELEASE job").await
                }
                None => match exec(conn, "ROLLBACK TO job").await {
                    Ok(()) => exec(conn, "RELEASE job").await,
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = end {
                // A failure that took the whole transaction with it (I/O, full disk).
                rollback(conn).await;
                return Err(e);
            }
        }
        if let Err(e) = exec(conn, "COMMIT").await {
            rollback(conn).await;
            return Err(e);
        }
        Ok(replies)
    }

    /// After a failed batch: reopen the connection and probe with a write; when
    /// that fails too, the writer is failing until a write commits.
    async fn recover(&mut self) {
        if let Some(conn) = self.conn.take() {
            let _ = conn.close().await;
        }
        self.probe().await;
    }

    async fn probe(&mut self) {
        let result = async {
            let conn = self.conn().await?;
            begin(conn).await?;
            let write = sqlx::query(
                "INSERT INTO writer_probe (id, at) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET at = excluded.at",
            )
            .bind(chrono::Utc::now())
            .execute(&mut *conn)
            .await;
            if let Err(e) = write {
                rollback(conn).await;
                return Err(BatchFailure(format!("probe write: {e}")));
            }
            if let Err(e) = exec(conn, "COMMIT").await {
                rollback(conn).await;
                return Err(e);
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::info!("the database accepts writes again");
                }
            }
            Err(BatchFailure(why)) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::error!(error = %why, "the database does not accept writes; not ready until it does");
                }
                if let Some(conn) = self.conn.take() {
                    let _ = conn.close().await;
                }
            }
        }
    }

    async fn checkpoint(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut *conn).await;
        }
    }
}

async fn exec(conn: &mut SqliteConnection, sql: &'static str) -> Result<(), BatchFailure> {
    sqlx::query(sql)
        .execute(&mut *conn)
        .await
        .map(|_| ())
        .map_err(|e| BatchFailure(format!("{sql}: {e}")))
}

/// Begins a write transaction. A transaction left open (which no path of the
/// writer leaves, but a connection can carry after an error in the middle of a
/// rollback) is rolled back and logged first.
async fn begin(conn: &mut SqliteConnection) -> Result<(), BatchFailure> {
    match exec(conn, "BEGIN IMMEDIATE").await {
        Ok(()) => Ok(()),
        Err(first) => {
            if sqlx::query("ROLLBACK").execute(&mut *conn).await.is_ok() {
                tracing::warn!("rolled back a transaction left open on the write connection");
                exec(conn, "BEGIN IMMEDIATE").await
            } else {
                Err(first)
            }
        }
    }
}

async fn rollback(conn: &mut SqliteConnection) {
    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
}
