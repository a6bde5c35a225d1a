//! Test harness: the real server on a real port, on a fresh database of either
//! backend (SQLite in a temp dir, or a PostgreSQL database created for the test
//! and dropped after).
#![allow(dead_code)]

use std::path::PathBuf;

use leadline_server::app::Application;
use leadline_server::config::Config;
pub use leadline_store::Backend;
use leadline_store::testing::TestDb;
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

pub mod receiver;
pub mod smtp;

pub const ADMIN_KEY: &str = "test-admin-key-0123456789";

/// `.go().await`: sends a request built for a test, which fails on a network
/// error (the server under test is local: none is expected).
pub trait Go {
    /// Sends the request; panics on a network error.
    fn go(self) -> impl std::future::Future<Output = reqwest::Response> + Send;
}

impl Go for RequestBuilder {
    async fn go(self) -> reqwest::Response {
        self.send().await.expect("send")
    }
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub backend: Backend,
    db: TestDb,
    data_dir: PathBuf,
    extra: Vec<(String, String)>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> Self {
        Self::spawn_with(backend, &[]).await
    }

    /// Starts a server with extra settings (environment names).
    pub async fn spawn_with(backend: Backend, extra: &[(&str, &str)]) -> Self {
        let db = TestDb::create(backend).await;
        let data_dir = std::env::temp_dir().join(format!("leadline-data-{}", ulid_like()));
        std::fs::create_dir_all(&data_dir).expect("data dir");
        let mut app = Self {
            base: String::new(),
            client: reqwest::Client::new(),
            backend,
            db,
            data_dir,
            extra: extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            stop: None,
            task: None,
        };
        app.start().await;
        app
    }

    fn config(&self) -> Config {
        Config::for_tests(
            &self.db.url,
            &self.data_dir,
            ADMIN_KEY,
            &self
                .extra
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect::<Vec<_>>(),
        )
    }

    async fn start(&mut self) {
        let app = Application::build(self.config()).await.expect("server builds");
        self.base = format!("http://{}", app.local_addr());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        self.stop = Some(tx);
        self.task = Some(tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        })));
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("server task").expect("server stopped cleanly");
        }
    }

    /// Stops the server and starts a new one on the same database and data dir.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.start().await;
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// The `.eml` files written for a lead (`mail/<day>/<lead_id>.<msg_id>.eml`).
    pub fn lead_mail_files(&self, lead_id: &str) -> Vec<std::path::PathBuf> {
        let prefix = format!("{lead_id}.");
        let Ok(days) = std::fs::read_dir(self.data_dir.join("mail")) else {
            return Vec::new();
        };
        let mut files: Vec<_> = days
            .flatten()
            .filter(|d| d.path().is_dir())
            .filter_map(|d| std::fs::read_dir(d.path()).ok())
            .flat_map(|d| d.flatten())
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix)))
            .collect();
        files.sort();
        files
    }

    pub fn db_url(&self) -> String {
        self.db.url.clone()
    }

    /// Runs a query straight on the database; returns the first column as text.
    pub async fn raw_text(&self, sql: &str) -> Vec<String> {
        use sqlx::Row;
        match self.backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&self.db.url).await.expect("sqlite");
                let rows = sqlx::query(sql).fetch_all(&pool).await.expect("query");
                let out = rows.iter().map(|r| r.try_get::<String, _>(0).expect("text")).collect();
                pool.close().await;
                out
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&self.db.url).await.expect("postgres");
                let rows = sqlx::query(sql).fetch_all(&pool).await.expect("query");
                let out = rows.iter().map(|r| r.try_get::<String, _>(0).expect("text")).collect();
                pool.close().await;
                out
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The value of an unlabelled metric sample, 0 when absent.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self
            .admin(Method::GET, "/admin/metrics")
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        let prefix = format!("{name} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    }

    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, self.url(path))
            .header("X-Admin-Key", ADMIN_KEY)
    }

    pub fn with_key(&self, method: Method, path: &str, key: &str) -> RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(key)
    }

    /// Creates a tenant and returns it with its keys.
    pub async fn tenant(&self, name: &str) -> Tenant {
        let res = self
            .admin(Method::POST, "/admin/tenants")
            .json(&json!({"name": name}))
            .go()
            .await;
        assert_eq!(res.status(), 201, "create tenant");
        let body: Value = res.json().await.expect("json");
        Tenant {
            id: body["tenant"]["id"].as_str().expect("id").to_owned(),
            sk: body["secret_key"].as_str().expect("sk").to_owned(),
            pk: body["publishable_key"].as_str().expect("pk").to_owned(),
        }
    }

    /// Creates a lead with the secret key and returns its body.
    pub async fn lead(&self, t: &Tenant, body: Value) -> Value {
        let res = self.with_key(Method::POST, "/v1/leads", &t.sk).json(&body).go().await;
        let status = res.status();
        let v: Value = res.json().await.expect("json");
        assert_eq!(status, 201, "create lead: {v}");
        v
    }

    /// Every lead id of a tenant (follows the cursor).
    pub async fn lead_ids(&self, t: &Tenant) -> Vec<String> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/leads?limit=200&cursor={c}"),
                None => "/v1/leads?limit=200".to_owned(),
            };
            let v: Value = self
                .with_key(Method::GET, &path, &t.sk)
                .go()
                .await
                .json()
                .await
                .expect("json");
            for l in v["data"].as_array().expect("data") {
                out.push(l["id"].as_str().expect("id").to_owned());
            }
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

pub struct Tenant {
    pub id: String,
    pub sk: String,
    pub pk: String,
}

fn ulid_like() -> String {
    format!(
        "{:x}{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
}

/// A valid lead body with dates a year ahead.
pub fn lead_body(email: &str) -> Value {
    let from = chrono::Utc::now().date_naive() + chrono::Duration::days(365);
    let to = from + chrono::Duration::days(7);
    json!({
        "name": "Maria Papadopoulos", "email": email, "phone": "+30 694 123 4567",
        "charter_from": from.to_string(), "charter_to": to.to_string(), "flexible_dates": true,
        "guests": {"adults": 6, "children": 2}, "destination": "Cyclades", "yacht_type": "catamaran",
        "charter_type": "crewed", "budget": {"amount": 2500000, "currency": "EUR"},
        "experience": "licensed_skipper", "message": "Anniversary trip", "locale": "en", "source": "website",
        "utm": {"source": "google", "medium": "cpc", "campaign": "summer"},
        "consent": {"privacy_policy": true, "marketing": false}
    })
}

/// Asserts an RFC 9457 problem with `status` and returns it.
pub async fn problem(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status().as_u16(), status, "status");
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert_eq!(ct, "application/problem+json");
    let rid = res
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let v: Value = res.json().await.expect("problem json");
    assert_eq!(v["status"], status);
    assert!(
        v["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("urn:leadline:problem:")),
        "{v}"
    );
    assert!(
        v["title"].is_string() && v["detail"].is_string() && v["instance"].is_string(),
        "{v}"
    );
    assert_eq!(v["request_id"], rid.as_str());
    v
}

/// Polls `f` every 20 ms until it returns `Some`, for at most 20 s.
/// Waits for the dispatcher to finish the outbox: every queued message delivered
/// or dead, none in flight (as crates.io's `run_pending_background_jobs`). A
/// message waiting for a retry keeps it waiting: move the clock
/// (`leadline_server::clock::test::advance`) to make it due.
pub async fn drain_outbox(app: &TestApp) {
    eventually("the outbox to drain", || async {
        app.raw_text("SELECT id FROM outbox WHERE status = 'pending'")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
}

pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        // Real time: polling for something a real server does.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
