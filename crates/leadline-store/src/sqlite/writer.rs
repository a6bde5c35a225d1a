//! The SQLite writer: one thread owns the write connection, and every write of the
//! process is a job sent to it.
//!
//! The thread drains its queue into batches. A batch is one transaction (`BEGIN
//! IMMEDIATE … COMMIT`, one fsync under `synchronous=FULL`) with a savepoint per
//! job: a job that fails rolls back to its savepoint and answers its own error,
//! the others commit together, and only then does any job of the batch get its
//! answer, so an acknowledged write is on disk. Many requests share one fsync
//! (group commit). The jobs are synchronous calls on the connection (see
//! [`super::write`]), so a statement costs no hop between threads.
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

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

use crate::StoreError;
use leadline_core::change::Settled;

/// How often a failing writer tries a probe write.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// How long a write waits for a lock held by another process before it fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Batching and queue bounds of the writer.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Most jobs in one transaction.
    pub max_batch: usize,
    /// How long the writer waits, once it has a job, for more to join the batch.
    /// Zero: a batch is whatever queued while the previous batch committed (which
    /// is already many under load, and no added latency when idle).
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

/// What a finished job does once its batch has committed.
/// `None`: the batch committed; `Some(error)`: it did not.
type Reply = Box<dyn FnOnce(Option<StoreError>) + Send>;

/// How a job ran.
enum Outcome {
    /// It succeeded; answer once the batch has committed.
    Done(Reply),
    /// It failed and has answered already; whether the disk was full.
    Failed { disk_full: bool },
}

/// A job: runs on the writer's connection inside the batch's transaction, under
/// its own savepoint.
type JobFn = Box<dyn FnOnce(&Connection) -> Outcome + Send>;

/// Why the writer cannot commit, when it cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFault {
    /// The file system is full (`SQLITE_FULL`).
    DiskFull,
    /// Another failure (I/O, a lock held elsewhere, the writer stopped).
    CannotCommit,
}

const FAULT_NONE: u8 = 0;
const FAULT_CANNOT_COMMIT: u8 = 1;
const FAULT_DISK_FULL: u8 = 2;

/// The writer's health, shared by the thread and the handles.
#[derive(Debug, Default)]
struct Health(AtomicU8);

impl Health {
    fn get(&self) -> Option<WriteFault> {
        match self.0.load(Ordering::Acquire) {
            FAULT_NONE => None,
            FAULT_DISK_FULL => Some(WriteFault::DiskFull),
            _ => Some(WriteFault::CannotCommit),
        }
    }

    fn is_failing(&self) -> bool {
        self.0.load(Ordering::Acquire) != FAULT_NONE
    }

    /// Records a fault; logs when it begins or changes.
    fn fail(&self, fault: WriteFault, why: &str) {
        let v = match fault {
            WriteFault::DiskFull => FAULT_DISK_FULL,
            WriteFault::CannotCommit => FAULT_CANNOT_COMMIT,
        };
        if self.0.swap(v, Ordering::AcqRel) != v {
            match fault {
                WriteFault::DiskFull => {
                    tracing::error!(error = %why, "the disk is full: writes are refused (503) until space is freed")
                }
                WriteFault::CannotCommit => {
                    tracing::error!(error = %why, "the database does not accept writes; not ready until it does")
                }
            }
        }
    }

    /// A write committed.
    fn ok(&self) {
        if self.0.swap(FAULT_NONE, Ordering::AcqRel) != FAULT_NONE {
            tracing::info!("the database accepts writes again");
        }
    }
}

/// Whether a SQLite error means the file system is full.
pub(crate) fn is_disk_full(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull)
}

enum Msg {
    Job(JobFn),
    /// Copy the WAL into the main file and truncate it (after an erasure: the
    /// old versions of the erased rows leave the WAL).
    Checkpoint(oneshot::Sender<()>),
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

/// The handle the store keeps: sends jobs to the writer thread.
pub(crate) struct Writer {
    tx: mpsc::Sender<Msg>,
    health: Arc<Health>,
    stats: Arc<WriterStats>,
}

/// Opens the write connection with the durability settings of DESIGN §1.
fn open(path: &PathBuf) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Savepoints journal the pages they change; in memory, not in a temporary file.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Deleted and overwritten content is zeroed, so erased personal data does not
    // linger in free pages of the file.
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.set_prepared_statement_cache_capacity(128);
    Ok(conn)
}

impl Writer {
    /// Opens the database file at `path` (creating it) and starts the writer thread.
    pub(crate) fn start(path: PathBuf, options: &WriterOptions) -> crate::Result<Self> {
        let conn = open(&path)?;
        let (tx, rx) = mpsc::channel(options.queue_capacity.max(1));
        let health = Arc::new(Health::default());
        let stats = Arc::new(WriterStats::default());
        let task = Task {
            rx,
            conn: Some(conn),
            path,
            max_batch: options.max_batch.max(1),
            max_wait: options.max_wait,
            health: health.clone(),
            stats: stats.clone(),
        };
        std::thread::Builder::new()
            .name("leadline-writer".into())
            .spawn(move || task.run())
            .map_err(|e| StoreError::Config(format!("cannot start the writer thread: {e}")))?;
        Ok(Self { tx, health, stats })
    }

    /// Why the writer cannot commit now, if it cannot.
    pub(crate) fn fault(&self) -> Option<WriteFault> {
        if self.tx.is_closed() {
            return Some(WriteFault::CannotCommit);
        }
        self.health.get()
    }

    pub(crate) fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Runs `f` in the writer's next batch and answers once that batch committed.
    pub(crate) async fn run<T, F>(&self, admission: Admission, f: F) -> crate::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> crate::Result<T> + Send + 'static,
    {
        self.run_settled(admission, f, Settled::default()).await
    }

    /// [`Writer::run`], telling `settled` the outcome as soon as it is known, in
    /// the writer thread: even when the caller no longer waits for the answer.
    pub(crate) async fn run_settled<T, F>(&self, admission: Admission, f: F, settled: Settled) -> crate::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> crate::Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<crate::Result<T>>();
        let job: JobFn = Box::new(move |conn| match f(conn) {
            Ok(v) => Outcome::Done(Box::new(move |failed: Option<StoreError>| {
                settled.done(failed.is_none());
                let _ = tx.send(match failed {
                    None => Ok(v),
                    Some(e) => Err(e),
                });
            })),
            Err(e) => {
                settled.done(false);
                let disk_full = matches!(e, StoreError::DiskFull);
                let _ = tx.send(Err(e));
                Outcome::Failed { disk_full }
            }
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
        rx.await.unwrap_or_else(|_| {
            Err(match self.health.get() {
                Some(WriteFault::DiskFull) => StoreError::DiskFull,
                _ => StoreError::Unavailable("the write could not be committed".into()),
            })
        })
    }

    /// Checkpoints the WAL into the main file and truncates it, once the jobs
    /// queued before have committed (best effort: readers may hold old pages).
    pub(crate) async fn checkpoint(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Checkpoint(tx)).await.is_ok() {
            let _ = rx.await;
        }
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
    conn: Option<Connection>,
    path: PathBuf,
    max_batch: usize,
    max_wait: Duration,
    health: Arc<Health>,
    stats: Arc<WriterStats>,
}

/// Why a batch as a whole failed, and whether the disk was full.
struct BatchFailure(String, bool);

impl From<rusqlite::Error> for BatchFailure {
    fn from(e: rusqlite::Error) -> Self {
        Self(e.to_string(), is_disk_full(&e))
    }
}

impl BatchFailure {
    fn fault(&self) -> WriteFault {
        if self.1 {
            WriteFault::DiskFull
        } else {
            WriteFault::CannotCommit
        }
    }
}

impl Task {
    fn run(mut self) {
        loop {
            let first = if self.health.is_failing() {
                // No blocking receive with a timeout on this queue: look for work
                // often, probe every PROBE_INTERVAL.
                match self.rx.try_recv() {
                    Ok(m) => Some(m),
                    Err(mpsc::error::TryRecvError::Empty) => {
                        self.wait_and_probe();
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                }
            } else {
                self.rx.blocking_recv()
            };
            let Some(first) = first else { break };
            let mut jobs = Vec::new();
            let mut close = None;
            let mut checkpoints = Vec::new();
            match first {
                Msg::Job(j) => jobs.push(j),
                Msg::Close(done) => close = Some(done),
                Msg::Checkpoint(done) => checkpoints.push(done),
            }
            if close.is_none() && checkpoints.is_empty() {
                if !self.max_wait.is_zero() {
                    std::thread::sleep(self.max_wait);
                }
                while jobs.len() < self.max_batch {
                    match self.rx.try_recv() {
                        Ok(Msg::Job(j)) => jobs.push(j),
                        Ok(Msg::Close(done)) => {
                            close = Some(done);
                            break;
                        }
                        Ok(Msg::Checkpoint(done)) => {
                            checkpoints.push(done);
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
            metrics::gauge!("leadline_writer_queue_depth").set(self.rx.len() as f64);
            if !jobs.is_empty() {
                self.batch(jobs);
            }
            if !checkpoints.is_empty() {
                if let Some(conn) = &self.conn
                    && let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
                {
                    tracing::warn!(error = %e, "a WAL checkpoint after an erasure failed");
                }
                for done in checkpoints {
                    let _ = done.send(());
                }
            }
            if let Some(done) = close {
                if let Some(conn) = &self.conn {
                    // Folding the WAL into the file at shutdown is a courtesy: no
                    // waiting for a reader that is still open.
                    let _ = conn.busy_timeout(Duration::from_millis(200));
                    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
                }
                let _ = done.send(());
                break;
            }
        }
    }

    fn wait_and_probe(&mut self) {
        let until = Instant::now() + PROBE_INTERVAL;
        while Instant::now() < until {
            if !self.rx.is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.probe();
    }

    /// The connection, reopened when it was lost.
    fn conn(&mut self) -> Result<&Connection, BatchFailure> {
        if self.conn.is_none() {
            let c = open(&self.path)
                .map_err(|e| BatchFailure(format!("cannot reopen the database: {e}"), is_disk_full(&e)))?;
            self.conn = Some(c);
        }
        self.conn
            .as_ref()
            .ok_or_else(|| BatchFailure("no connection".into(), false))
    }

    /// Runs one batch; see the module documentation.
    fn batch(&mut self, jobs: Vec<JobFn>) {
        let size = jobs.len();
        let started = Instant::now();
        let mut replies = Vec::with_capacity(size);
        match self.transaction(jobs, &mut replies) {
            Ok(disk_full) => {
                let committed = replies.len() as u64;
                // Counted before anyone hears of the commit, so a caller that
                // reads the counters after its answer sees its own batch.
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.stats.jobs.fetch_add(committed, Ordering::Relaxed);
                for reply in replies {
                    reply(None);
                }
                metrics::histogram!("leadline_writer_batch_size").record(size as f64);
                metrics::histogram!("leadline_writer_commit_duration_seconds").record(started.elapsed().as_secs_f64());
                if disk_full {
                    // Some jobs did not fit: refuse, and probe until space returns.
                    self.health
                        .fail(WriteFault::DiskFull, "a write did not fit on the disk");
                } else {
                    self.health.ok();
                }
            }
            Err(failure) => {
                // Every job of the batch is answered `DiskFull` when the disk is
                // full, else `Unavailable`; nothing of it is on disk.
                tracing::error!(jobs = size, error = %failure.0, "a write batch could not be committed");
                for reply in replies {
                    reply(Some(match failure.fault() {
                        WriteFault::DiskFull => StoreError::DiskFull,
                        WriteFault::CannotCommit => StoreError::Unavailable("the write could not be committed".into()),
                    }));
                }
                self.health.fail(failure.fault(), &failure.0);
                self.recover();
            }
        }
    }

    /// `BEGIN IMMEDIATE`, a savepoint per job, `COMMIT`; the replies of the jobs
    /// that succeeded, to send once committed, and whether a job found the disk full.
    fn transaction(&mut self, jobs: Vec<JobFn>, replies: &mut Vec<Reply>) -> Result<bool, BatchFailure> {
        let conn = self.conn()?;
        begin(conn)?;
        let mut disk_full = false;
        let result = (|| {
            for job in jobs {
                // Prepared once (a parse per job was 1.5% of a lead's instructions).
                conn.prepare_cached("SAVEPOINT job")?.execute([])?;
                // A job that panics fails alone (its reply is dropped: the caller
                // hears `Unavailable`); the writer and the batch go on.
                let outcome =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(conn))).unwrap_or_else(|_| {
                        tracing::error!("a write job panicked; it was rolled back");
                        Outcome::Failed { disk_full: false }
                    });
                match outcome {
                    Outcome::Done(r) => {
                        replies.push(r);
                        conn.prepare_cached("RELEASE job")?.execute([])?;
                    }
                    Outcome::Failed { disk_full: full } => {
                        disk_full |= full;
                        conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
                    }
                }
            }
            conn.execute_batch("COMMIT")
        })();
        match result {
            Ok(()) => Ok(disk_full),
            Err(e) => {
                // A failure that took the whole transaction with it (I/O, full
                // disk, a lock held elsewhere at COMMIT).
                let _ = conn.execute_batch("ROLLBACK");
                Err(e.into())
            }
        }
    }

    /// After a failed batch: reopen the connection and probe with a write; when
    /// that fails too, the writer is failing until a write commits.
    fn recover(&mut self) {
        self.conn = None;
        self.probe();
    }

    fn probe(&mut self) {
        let result = (|| {
            let conn = self.conn()?;
            begin(conn)?;
            let write = super::write::probe(conn)
                .map_err(|e| BatchFailure(format!("probe write: {e}"), matches!(e, StoreError::DiskFull)))
                .and_then(|()| conn.execute_batch("COMMIT").map_err(BatchFailure::from));
            if write.is_err() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            write
        })();
        match result {
            Ok(()) => self.health.ok(),
            Err(failure) => {
                self.health.fail(failure.fault(), &failure.0);
                self.conn = None;
            }
        }
    }
}

/// Begins a write transaction. A transaction left open on the connection (no path
/// of the writer leaves one, but an error in the middle of a rollback could) is
/// rolled back and logged first.
fn begin(conn: &Connection) -> Result<(), BatchFailure> {
    if !conn.is_autocommit() {
        tracing::warn!("rolled back a transaction left open on the write connection");
        conn.execute_batch("ROLLBACK")?;
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    Ok(())
}
