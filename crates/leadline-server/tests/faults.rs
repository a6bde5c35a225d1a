//! Faults of the world around Leadline, on real `leadline serve` processes: Redis
//! cut and restored (through a TCP relay the test controls), Redis unreachable at
//! start, a full disk (a small tmpfs), kill -9 in the middle of requests, three
//! instances sharing the janitor.

mod common;

use common::Go;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{ADMIN_KEY, Backend, lead_body};
use leadline_store::testing::TestDb;
use reqwest::Method;
use serde_json::{Value, json};

/// A `leadline serve` process, killed (SIGKILL) when dropped.
struct Proc {
    child: Child,
    base: String,
    env: Vec<(String, String)>,
    log: PathBuf,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Proc {
    /// Starts `leadline serve` with these settings and waits until it answers
    /// `/healthz`.
    async fn start(env: &[(&str, &str)], log_dir: &Path) -> Self {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Self::start_owned(env, log_dir).await
    }

    async fn start_owned(mut env: Vec<(String, String)>, log_dir: &Path) -> Self {
        let port = free_port();
        env.retain(|(k, _)| k != "LEADLINE_BIND");
        env.push(("LEADLINE_BIND".into(), format!("127.0.0.1:{port}")));
        let log = log_dir.join(format!("leadline-{port}.log"));
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_leadline"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::from(out.try_clone().expect("log")))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("spawn leadline");
        let p = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            env,
            log,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.get(p.url("/healthz")).send().await
                && r.status() == 200
            {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "leadline did not start: {}",
                std::fs::read_to_string(&p.log).unwrap_or_default()
            );
            // Real time: polling a real process until it listens.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the process (SIGKILL) and starts a new one with the same settings.
    async fn restart_after_kill(mut self, log_dir: &Path) -> Self {
        self.kill();
        let env = std::mem::take(&mut self.env);
        Self::start_owned(env, log_dir).await
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn readyz(client: &reqwest::Client, p: &Proc) -> (u16, Value) {
    match client.get(p.url("/readyz")).send().await {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

async fn create_tenant(client: &reqwest::Client, p: &Proc) -> (String, String) {
    let res = client
        .post(p.url("/admin/tenants"))
        .header("X-Admin-Key", ADMIN_KEY)
        .json(&json!({"name": "Aegean Charters"}))
        .go()
        .await;
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.expect("json");
    (
        v["tenant"]["id"].as_str().expect("id").to_owned(),
        v["secret_key"].as_str().expect("sk").to_owned(),
    )
}

async fn post_lead(
    client: &reqwest::Client,
    p: &Proc,
    sk: &str,
    key: &str,
    n: usize,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(p.url("/v1/leads"))
        .bearer_auth(sk)
        .header("Idempotency-Key", key)
        .json(&lead_body(&format!("guest{n}@example.com")))
        .send()
        .await
}

async fn eventually<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        // Real time: polling real processes.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------
// Redis

/// A TCP relay to Redis that the test can cut: cut, it drops every relayed
/// connection and then accepts new ones without ever answering (the worst kind
/// of outage: no error, no reply).
struct Relay {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    generation: Arc<std::sync::atomic::AtomicU64>,
}

impl Relay {
    async fn start(target: &'static str, open: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("addr");
        let open = Arc::new(AtomicBool::new(open));
        let generation = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (o, g) = (open.clone(), generation.clone());
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !o.load(Ordering::SeqCst) {
                    held.push(inbound); // accepted, never answered
                    continue;
                }
                let (o, g) = (o.clone(), g.clone());
                let born = g.load(Ordering::SeqCst);
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                    tokio::pin!(copy);
                    loop {
                        tokio::select! {
                            _ = &mut copy => return,
                            // Real time: the relay checks for a cut every 20 ms.
                            () = tokio::time::sleep(Duration::from_millis(20)) => {
                                if !o.load(Ordering::SeqCst) || g.load(Ordering::SeqCst) != born {
                                    return; // cut: both sockets close
                                }
                            }
                        }
                    }
                });
            }
        });
        Self { addr, open, generation }
    }

    fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

/// `n` requests to the public limiter from client `ip` (through the trusted
/// proxy header), spread over the instances: how many were refused (429), and
/// the slowest answer.
async fn burst(client: &reqwest::Client, procs: &[Proc], ip: &str, n: usize) -> (usize, Duration, Vec<Duration>) {
    let mut refused = 0;
    let mut lat = Vec::new();
    for i in 0..n {
        let p = &procs[i % procs.len()];
        let started = Instant::now();
        let res = client
            .get(p.url("/openapi.json"))
            .header("X-Forwarded-For", ip)
            .send()
            .await
            .expect("answered");
        lat.push(started.elapsed());
        match res.status().as_u16() {
            200 => {}
            429 => refused += 1,
            s => panic!("unexpected status {s}"),
        }
    }
    lat.sort();
    let max = lat.last().copied().unwrap_or_default();
    (refused, max, lat)
}

fn p99(sorted: &[Duration]) -> Duration {
    let i = ((sorted.len() as f64) * 0.99).ceil() as usize;
    sorted[i.saturating_sub(1).min(sorted.len() - 1)]
}

fn redis_env(db: &TestDb, dir: &Path, redis: &str, prefix: &str) -> Vec<(String, String)> {
    [
        ("DATABASE_URL", db.url.as_str()),
        ("LEADLINE_ADMIN_KEY", ADMIN_KEY),
        ("LEADLINE_DATA_DIR", dir.to_str().expect("utf8")),
        ("LEADLINE_LOG_FORMAT", "json"),
        ("LEADLINE_REDIS_URL", redis),
        ("LEADLINE_REDIS_KEY_PREFIX", prefix),
        ("LEADLINE_TRUSTED_PROXIES", "127.0.0.1/32"),
        ("LEADLINE_RATE_LIMIT_PER_MINUTE", "100000"),
        ("LEADLINE_RATE_LIMIT_PUBLIC_PER_MINUTE", "30"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect()
}

/// Three instances share a limiter through Redis; Redis is cut: every instance
/// keeps answering fast with local limits and says it is degraded but ready;
/// Redis is back: within 10 s the shared limit applies again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_redis_degrades_to_local_limits_and_recovers() {
    let db = TestDb::create(Backend::Postgres).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = Relay::start("127.0.0.1:6379", true).await;
    let prefix = format!("faults-{}", ulid::Ulid::new());
    let env = redis_env(&db, dir.path(), &relay.url(), &prefix);
    let mut procs = Vec::new();
    for _ in 0..3 {
        procs.push(Proc::start_owned(env.clone(), dir.path()).await);
    }
    let client = reqwest::Client::new();
    for p in &procs {
        let (s, v) = readyz(&client, p).await;
        assert_eq!((s, v["redis"].as_str()), (200, Some("ok")), "{v}");
    }
    // Shared: 45 requests from one client over three instances, 30 a minute in all.
    let (refused, _, _) = burst(&client, &procs, "198.51.100.1", 45).await;
    assert!(refused >= 10, "the quota is shared: {refused} refused");

    relay.cut();
    // The relay closes its connections within 20 ms.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (refused, _, lat) = burst(&client, &procs, "198.51.100.2", 150).await;
    assert!(
        p99(&lat) < Duration::from_millis(100),
        "p99 {:?} with Redis cut",
        p99(&lat)
    );
    assert!(
        (150 - 3 * 30 - 6..=150 - 3 * 30).contains(&refused),
        "each instance limits on its own, 30 each: {refused} refused"
    );
    for p in &procs {
        let (s, v) = readyz(&client, p).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["status"], "degraded", "{v}");
        assert_eq!(v["redis"], "unreachable", "{v}");
    }
    let metrics = client
        .get(procs[0].url("/admin/metrics"))
        .header("X-Admin-Key", ADMIN_KEY)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let fallbacks: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("leadline_ratelimit_fallback_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("leadline_ratelimit_fallback_total");
    assert!(fallbacks >= 50.0, "fallbacks counted: {fallbacks}");
    let warnings = std::fs::read_to_string(&procs[0].log)
        .unwrap_or_default()
        .matches("Redis does not answer")
        .count();
    assert_eq!(warnings, 1, "one log line per outage, not per request");

    relay.restore();
    let back = Instant::now();
    for p in &procs {
        eventually("Redis used again", Duration::from_secs(10), || async {
            let (s, v) = readyz(&client, p).await;
            (s == 200 && v["redis"] == "ok").then_some(())
        })
        .await;
    }
    assert!(back.elapsed() < Duration::from_secs(10));
    let (refused, _, _) = burst(&client, &procs, "198.51.100.3", 45).await;
    assert!(refused >= 10, "shared again: {refused} refused");
}

/// Redis unreachable at start: the instance serves at once with local limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_with_redis_unreachable() {
    let db = TestDb::create(Backend::Sqlite).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let relay = Relay::start("127.0.0.1:6379", false).await;
    let env = redis_env(&db, dir.path(), &relay.url(), "faults-start");
    let started = Instant::now();
    let p = Proc::start_owned(env, dir.path()).await;
    let client = reqwest::Client::new();
    let (s, v) = readyz(&client, &p).await;
    assert!(started.elapsed() < Duration::from_secs(10), "started at once");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "degraded", "{v}");
    let procs = [p];
    let (refused, _, lat) = burst(&client, &procs, "198.51.100.9", 40).await;
    assert!((8..=10).contains(&refused), "limited locally: {refused} refused");
    assert!(p99(&lat) < Duration::from_millis(100), "{:?}", p99(&lat));
    let log = std::fs::read_to_string(&procs[0].log).unwrap_or_default();
    assert!(log.contains("unreachable at start"), "it says so: {log}");
}

// ---------------------------------------------------------------------------
// A full disk

/// A tmpfs of `size` mounted on a new directory, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Self {
        Self::mount_with(&format!("size={size},mode=0700"))
    }

    /// A tmpfs whose root belongs to `uid:gid` (PostgreSQL's tablespace).
    fn mount_for(size: &str, uid: &str, gid: &str) -> Self {
        Self::mount_with(&format!("size={size},mode=0755,uid={uid},gid={gid}"))
    }

    fn mount_with(options: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs (needs root, as on CI): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes zeros into `fill` until the file system is full.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.dir.path().join("fill");
        let mut f = std::fs::File::create(&path).expect("fill file");
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        // Byte by byte for the last partial chunk.
        while f.write_all(&[0]).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

/// The data directory fills up: writes answer 503 with `Retry-After`, `/readyz`
/// answers 503 naming the disk; space freed: writes succeed without a restart,
/// and a key refused during the outage is free for an immediate retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_and_recovers() {
    let disk = SmallDisk::mount("24m");
    let logs = tempfile::tempdir().expect("tempdir");
    let db_url = format!("sqlite://{}/leadline.db", disk.path().display());
    let data = disk.path().to_str().expect("utf8").to_owned();
    let p = Proc::start(
        &[
            ("DATABASE_URL", db_url.as_str()),
            ("LEADLINE_ADMIN_KEY", ADMIN_KEY),
            ("LEADLINE_DATA_DIR", data.as_str()),
            ("LEADLINE_LOG_FORMAT", "json"),
            ("LEADLINE_RATE_LIMIT_PER_MINUTE", "1000000"),
        ],
        logs.path(),
    )
    .await;
    let client = reqwest::Client::new();
    let (_, sk) = create_tenant(&client, &p).await;
    let res = post_lead(&client, &p, &sk, "before", 0).await.expect("send");
    assert_eq!(res.status(), 201);

    let fill = disk.fill();
    let mut refused_key = None;
    for n in 1..400 {
        let key = format!("during-{n}");
        let res = post_lead(&client, &p, &sk, &key, n).await.expect("send");
        match res.status().as_u16() {
            201 => continue,
            503 => {
                assert!(res.headers().get("retry-after").is_some(), "Retry-After");
                let v = common::problem(res, 503).await;
                assert_eq!(v["type"], "urn:leadline:problem:unavailable", "{v}");
                refused_key = Some((key, n));
                break;
            }
            s => panic!("a full disk answered {s}: {}", res.text().await.unwrap_or_default()),
        }
    }
    let (key, n) = refused_key.expect("writes are refused once the disk is full");
    let v = eventually("readyz names the disk", Duration::from_secs(10), || async {
        let (s, v) = readyz(&client, &p).await;
        (s == 503).then_some(v)
    })
    .await;
    assert_eq!(v["database"], "disk full", "{v}");
    assert_eq!(v["status"], "unavailable", "{v}");

    std::fs::remove_file(&fill).expect("free the space");
    eventually("ready again", Duration::from_secs(10), || async {
        (readyz(&client, &p).await.0 == 200).then_some(())
    })
    .await;
    let res = post_lead(&client, &p, &sk, &key, n).await.expect("send");
    assert_eq!(res.status(), 201, "the refused key is free for an immediate retry");
    let res = post_lead(&client, &p, &sk, "after", 9999).await.expect("send");
    assert_eq!(res.status(), 201, "writes succeed without a restart");
    let metrics = client
        .get(p.url("/admin/metrics"))
        .header("X-Admin-Key", ADMIN_KEY)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("leadline_disk_full_total ") && !l.ends_with(" 0")),
        "counted"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("leadline_errors_total{class=\"refused\"}") && !l.ends_with(" 0")),
        "a 503 is a refusal, not a fault"
    );
    drop(p);
}

// ---------------------------------------------------------------------------
// kill -9 in the middle of requests

async fn in_flight_keys(backend: Backend, url: &str) -> Vec<String> {
    use sqlx::Row;
    let sql = "SELECT key FROM idempotency_keys WHERE state = 'in_flight'";
    match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(url).await.expect("sqlite");
            let rows = sqlx::query(sql).fetch_all(&pool).await.expect("query");
            pool.close().await;
            rows.iter().map(|r| r.get::<String, _>(0)).collect()
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(url).await.expect("postgres");
            let rows = sqlx::query(sql).fetch_all(&pool).await.expect("query");
            pool.close().await;
            rows.iter().map(|r| r.get::<String, _>(0)).collect()
        }
    }
}

/// The process dies (SIGKILL) while requests with `Idempotency-Key` run: after a
/// restart each key is answered (created or replayed) at once on SQLite, whose
/// server is alone on its database, and within the claim lease (10 s) on
/// PostgreSQL; and no key made two leads.
async fn killed_mid_request_keys_are_answered_after_restart(backend: Backend) {
    let db = TestDb::create(backend).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf8").to_owned();
    let mut p = Proc::start(
        &[
            ("DATABASE_URL", db.url.as_str()),
            ("LEADLINE_ADMIN_KEY", ADMIN_KEY),
            ("LEADLINE_DATA_DIR", data.as_str()),
            ("LEADLINE_LOG_FORMAT", "json"),
            ("LEADLINE_RATE_LIMIT_PER_MINUTE", "1000000"),
        ],
        dir.path(),
    )
    .await;
    let client = reqwest::Client::new();
    let (_, sk) = create_tenant(&client, &p).await;
    let mut sent = Vec::new();
    let mut caught = Vec::new();
    // On PostgreSQL, hold the leads table so that requests stop after their claim
    // is committed: the kill then surely finds claims in flight.
    let mut blocker = match backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.expect("postgres");
            let mut tx = pool.begin().await.expect("begin");
            sqlx::query("LOCK TABLE leads IN EXCLUSIVE MODE")
                .execute(&mut *tx)
                .await
                .expect("lock");
            Some((pool, tx))
        }
        Backend::Sqlite => None,
    };
    for round in 0..8 {
        // 48 concurrent requests, then the kill while they run.
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..48 {
            let n = round * 1000 + i;
            let key = format!("kill-{n}");
            sent.push((key.clone(), n));
            let (client, url, sk) = (client.clone(), p.url("/v1/leads"), sk.clone());
            tasks.spawn(async move {
                client
                    .post(url)
                    .bearer_auth(sk)
                    .header("Idempotency-Key", key.clone())
                    .json(&lead_body(&format!("guest{n}@example.com")))
                    .send()
                    .await
                    .err()
                    .map(|_| key)
            });
        }
        if backend == Backend::Postgres {
            eventually("claims in flight", Duration::from_secs(10), || async {
                (in_flight_keys(backend, &db.url).await.len() >= 10).then_some(())
            })
            .await;
        } else {
            // Real time: each round kills the process a little later into the requests.
            tokio::time::sleep(Duration::from_millis(15 + 10 * round as u64)).await;
        }
        p.kill();
        if let Some((pool, tx)) = blocker.take() {
            let _ = tx.rollback().await;
            pool.close().await;
        }
        let mut unanswered = Vec::new();
        while let Some(r) = tasks.join_next().await {
            if let Ok(Some(key)) = r {
                unanswered.push(key);
            }
        }
        let rows = in_flight_keys(backend, &db.url).await;
        caught = match backend {
            // A lone SQLite server writes a claim only with its outcome: a crash
            // leaves no in-flight row at all, only requests without an answer.
            Backend::Sqlite => {
                assert!(rows.is_empty(), "no claim row outlives its request: {rows:?}");
                unanswered
            }
            Backend::Postgres => rows,
        };
        p = p.restart_after_kill(dir.path()).await;
        if !caught.is_empty() {
            break;
        }
    }
    assert!(!caught.is_empty(), "some requests were caught in flight by the kill");
    let started = Instant::now();
    let bound = match backend {
        Backend::Sqlite => Duration::from_millis(500),
        Backend::Postgres => leadline_server::claims::CLAIM_LEASE + Duration::from_secs(3),
    };
    for (key, n) in &sent {
        loop {
            let res = post_lead(&client, &p, &sk, key, *n).await.expect("send");
            match res.status().as_u16() {
                201 => break,
                // Real time: retrying within the documented bound of a dead claim.
                409 if started.elapsed() < bound => tokio::time::sleep(Duration::from_millis(100)).await,
                s => panic!("key {key} answered {s} {:?} after the restart", started.elapsed()),
            }
        }
    }
    // One lead per key: every email once.
    let mut emails = std::collections::HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/leads?limit=200&cursor={c}"),
            None => "/v1/leads?limit=200".to_owned(),
        };
        let v: Value = client
            .request(Method::GET, p.url(&path))
            .bearer_auth(&sk)
            .go()
            .await
            .json()
            .await
            .expect("json");
        for l in v["data"].as_array().expect("data") {
            let email = l["email"].as_str().expect("email").to_owned();
            assert!(emails.insert(email.clone()), "two leads for {email}");
        }
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(emails.len(), sent.len(), "every key made exactly one lead");
}

mod killed_mid_request {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::killed_mid_request_keys_are_answered_after_restart(super::Backend::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::killed_mid_request_keys_are_answered_after_restart(super::Backend::Postgres).await
    }
}

// ---------------------------------------------------------------------------
// The janitor

/// Three instances with a 3 s janitor interval: the cleanups run once per
/// interval in all, never by two instances at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_a_short_janitor_interval() {
    let db = TestDb::create(Backend::Postgres).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf8").to_owned();
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("LEADLINE_ADMIN_KEY", ADMIN_KEY),
        ("LEADLINE_DATA_DIR", data.as_str()),
        ("LEADLINE_LOG_FORMAT", "json"),
        ("LEADLINE_RATE_LIMIT_PER_MINUTE", "1000000"),
        ("LEADLINE_JANITOR_INTERVAL", "3s"),
    ];
    let mut procs = Vec::new();
    for _ in 0..3 {
        procs.push(Proc::start(&env, dir.path()).await);
        // Real time: the instances start apart, as a deployment would.
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let started = Instant::now();
    // Real time: the test is about janitor runs spaced over real seconds.
    tokio::time::sleep(Duration::from_secs(13)).await;
    let window = started.elapsed();
    drop(procs);
    let store = leadline_store::open(&db.url).await.expect("open");
    let f = leadline_core::audit::AuditFilter {
        scope: leadline_core::audit::AuditScope::All,
        action: Some("maintenance.cleanup_expired_keys".into()),
        since: None,
        until: None,
        resource_id: None,
    };
    let mut runs: Vec<_> = store
        .list_audit(
            &f,
            &leadline_core::page::PageRequest {
                after: None,
                limit: 200,
            },
        )
        .await
        .expect("list")
        .into_iter()
        .map(|e| e.at)
        .collect();
    store.close().await;
    runs.sort();
    // Over ~15 s of three instances at a 3 s interval: about five runs in all,
    // not fifteen.
    let most = (window.as_secs() / 3 + 3) as usize;
    assert!(
        (2..=most).contains(&runs.len()),
        "{} runs in {:?}: {runs:?}",
        runs.len(),
        window
    );
    for pair in runs.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= chrono::Duration::milliseconds(2500),
            "two runs {gap} apart: {runs:?}"
        );
    }
}

/// `restore --force` refuses while a server runs on the database (the server
/// holds `<db>.lock`), and works once it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_refuses_under_a_running_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf8").to_owned();
    let db_url = format!("sqlite://{data}/leadline.db");
    let env = [
        ("DATABASE_URL", db_url.as_str()),
        ("LEADLINE_ADMIN_KEY", ADMIN_KEY),
        ("LEADLINE_DATA_DIR", data.as_str()),
        ("LEADLINE_LOG_FORMAT", "json"),
    ];
    let mut p = Proc::start(&env, dir.path()).await;
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_leadline"))
            .env_clear()
            .envs(env.iter().copied())
            .args(args)
            .output()
            .expect("run")
    };
    let out = cli(&["backup"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let backup = v["backup"]["path"].as_str().expect("path").to_owned();
    let out = cli(&["restore", &backup, "--force"]);
    assert!(!out.status.success(), "refused while the server runs");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another Leadline server is running"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    p.kill();
    let out = cli(&["restore", &backup, "--force"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// PostgreSQL's disk fills up (the test database lives in a tablespace on a small
/// tmpfs): writes answer 503 with `Retry-After` (SQLSTATE 53100), `/readyz` names
/// the disk; space freed: writes succeed without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_postgres_disk_refuses_writes_and_recovers() {
    let uid = |flag: &str| {
        let out = Command::new("id").args([flag, "postgres"]).output().expect("id");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let disk = SmallDisk::mount_for("16m", &uid("-u"), &uid("-g"));
    let name = format!("leadline_full_{}", ulid::Ulid::new().to_string().to_ascii_lowercase());
    let admin_url =
        std::env::var("LEADLINE_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let admin = sqlx::PgPool::connect(&admin_url).await.expect("postgres");
    // The tablespace's directory must be PostgreSQL's own and empty.
    let ts_dir = disk.path().join("ts");
    std::fs::create_dir(&ts_dir).expect("mkdir");
    let chown = Command::new("chown")
        .arg(format!("{}:{}", uid("-u"), uid("-g")))
        .arg(&ts_dir)
        .status()
        .expect("chown");
    assert!(chown.success());
    sqlx::query(&format!("CREATE TABLESPACE {name} LOCATION '{}'", ts_dir.display()))
        .execute(&admin)
        .await
        .expect("create tablespace");
    sqlx::query(&format!("CREATE DATABASE {name} TABLESPACE {name}"))
        .execute(&admin)
        .await
        .expect("create database");
    let db_url = admin_url
        .rsplit_once('/')
        .map(|(b, _)| format!("{b}/{name}"))
        .expect("url");
    let logs = tempfile::tempdir().expect("tempdir");
    let data = logs.path().to_str().expect("utf8").to_owned();
    let mut p = Proc::start(
        &[
            ("DATABASE_URL", db_url.as_str()),
            ("LEADLINE_ADMIN_KEY", ADMIN_KEY),
            ("LEADLINE_DATA_DIR", data.as_str()),
            ("LEADLINE_LOG_FORMAT", "json"),
            ("LEADLINE_RATE_LIMIT_PER_MINUTE", "1000000"),
        ],
        logs.path(),
    )
    .await;
    let client = reqwest::Client::new();
    let (_, sk) = create_tenant(&client, &p).await;
    let fill = disk.fill();
    let mut refused = None;
    for n in 1..2000 {
        let key = format!("pg-during-{n}");
        let res = post_lead(&client, &p, &sk, &key, n).await.expect("send");
        match res.status().as_u16() {
            201 => continue,
            503 => {
                assert_eq!(res.headers().get("retry-after").map(|v| v.as_bytes()), Some(&b"5"[..]));
                common::problem(res, 503).await;
                refused = Some((key, n));
                break;
            }
            s => panic!("a full disk answered {s}: {}", res.text().await.unwrap_or_default()),
        }
    }
    let (key, n) = refused.expect("writes are refused once the disk is full");
    let (s, v) = readyz(&client, &p).await;
    assert_eq!((s, v["database"].as_str()), (503, Some("disk full")), "{v}");
    std::fs::remove_file(&fill).expect("free the space");
    let res = post_lead(&client, &p, &sk, &key, n).await.expect("send");
    assert_eq!(res.status(), 201, "the refused key is free for an immediate retry");
    let (s, v) = readyz(&client, &p).await;
    assert_eq!(s, 200, "{v}");
    p.kill();
    drop(p);
    let _ = sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&admin)
        .await;
    let _ = sqlx::query(&format!("DROP TABLESPACE {name}")).execute(&admin).await;
    admin.close().await;
}

/// Everything the server and the CLI create in the data directory is the
/// owner's alone (0700 directories, 0600 files), whatever the umask they got.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let data = data_dir.to_str().expect("utf8").to_owned();
    let db_url = format!("sqlite://{data}/leadline.db");
    let env = [
        ("DATABASE_URL", db_url.as_str()),
        ("LEADLINE_DATA_DIR", data.as_str()),
        ("LEADLINE_LOG_FORMAT", "json"),
    ];
    // The usual umask (022) made 0644 files and 0755 directories before.
    let p = Proc::start(&env, dir.path()).await;
    let admin_key = std::fs::read_to_string(data_dir.join("admin.key")).expect("admin key");
    let client = reqwest::Client::new();
    let res = client
        .post(p.url("/admin/tenants"))
        .header("X-Admin-Key", admin_key.trim())
        .json(&json!({"name": "Private Files"}))
        .go()
        .await;
    assert_eq!(res.status(), 201);
    let v: Value = res.json().await.expect("json");
    let sk = v["secret_key"].as_str().expect("sk").to_owned();
    let res = post_lead(&client, &p, &sk, "private-1", 1).await.expect("send");
    assert_eq!(res.status(), 201);
    eventually("the acknowledgement email", Duration::from_secs(10), || async {
        std::fs::read_dir(data_dir.join("mail"))
            .ok()
            .and_then(|d| d.flatten().next())
            .map(|_| ())
    })
    .await;
    let out = Command::new(env!("CARGO_BIN_EXE_leadline"))
        .env_clear()
        .envs(env.iter().copied())
        .arg("backup")
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut checked = 0;
    let mut stack = vec![data_dir.clone()];
    while let Some(d) = stack.pop() {
        let mode = std::fs::metadata(&d).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is {mode:o}", d.display());
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            let path = entry.path();
            let meta = entry.metadata().expect("meta");
            if meta.is_dir() {
                stack.push(path);
            } else {
                let mode = meta.permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{} is {mode:o}", path.display());
                checked += 1;
            }
        }
    }
    assert!(checked >= 5, "database, WAL, key, email and backup: {checked} files");
}

// ---------------------------------------------------------------------------
// Transport security for managed services

/// `sslmode=require` reaches PostgreSQL over TLS (the local server has Debian's
/// self-signed certificate), and every connection of the instance is encrypted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls() {
    use sqlx::Row;
    let db = TestDb::create(Backend::Postgres).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf8").to_owned();
    let url = format!("{}?sslmode=require", db.url);
    let p = Proc::start(
        &[
            ("DATABASE_URL", url.as_str()),
            ("LEADLINE_ADMIN_KEY", ADMIN_KEY),
            ("LEADLINE_DATA_DIR", data.as_str()),
            ("LEADLINE_LOG_FORMAT", "json"),
        ],
        dir.path(),
    )
    .await;
    let client = reqwest::Client::new();
    let (s, v) = readyz(&client, &p).await;
    assert_eq!(s, 200, "{v}");
    let (_, sk) = create_tenant(&client, &p).await;
    let res = post_lead(&client, &p, &sk, "tls-1", 1).await.expect("send");
    assert_eq!(res.status(), 201);
    let name = db.url.rsplit('/').next().expect("database name").to_owned();
    let pool = sqlx::PgPool::connect(&db.url).await.expect("postgres");
    let row = sqlx::query(
        "SELECT count(*) AS n, coalesce(bool_and(s.ssl), false) AS all_ssl FROM pg_stat_ssl s \
         JOIN pg_stat_activity a USING (pid) WHERE a.datname = $1 AND a.pid <> pg_backend_pid()",
    )
    .bind(&name)
    .fetch_one(&pool)
    .await
    .expect("query");
    pool.close().await;
    let (n, all_ssl): (i64, bool) = (row.get("n"), row.get("all_ssl"));
    assert!(n > 0 && all_ssl, "{n} connections, all over TLS: {all_ssl}");
}

/// A Redis that speaks only TLS, on a self-signed certificate made for the test.
struct TlsRedis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl TlsRedis {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=localhost",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--save",
                "",
                "--appendonly",
                "no",
                "--tls-auth-clients",
                "no",
            ])
            .args(["--tls-port", &port.to_string()])
            .arg("--tls-cert-file")
            .arg(&cert)
            .arg("--tls-key-file")
            .arg(&key)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "the TLS Redis did not start");
            // Real time: polling a real Redis until it listens.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self { child, port, _dir: dir }
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `rediss://` URLs work: the shared limiter talks to a TLS-only Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls() {
    let redis = TlsRedis::start().await;
    let db = TestDb::create(Backend::Sqlite).await;
    let dir = tempfile::tempdir().expect("tempdir");
    // A self-signed certificate: `#insecure` skips its verification (a managed
    // Redis has a real one and needs no fragment).
    let url = format!("rediss://127.0.0.1:{}/#insecure", redis.port);
    let env = redis_env(&db, dir.path(), &url, "faults-tls");
    let p = Proc::start_owned(env, dir.path()).await;
    let client = reqwest::Client::new();
    let (s, v) = readyz(&client, &p).await;
    assert_eq!((s, v["redis"].as_str()), (200, Some("ok")), "{v}");
    let procs = [p];
    let (refused, _, _) = burst(&client, &procs, "198.51.100.77", 35).await;
    assert!((4..=5).contains(&refused), "limited through Redis: {refused} refused");
}
