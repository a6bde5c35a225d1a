//! Test support: a fresh database per test on either backend, removed afterwards.
//!
//! PostgreSQL is reached at `LEADLINE_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). A test that needs it fails when
//! it is not there: it never skips silently.

use sqlx::Connection;

use crate::Backend;

/// The server URL used to create and drop test databases.
pub fn pg_admin_url() -> String {
    std::env::var("LEADLINE_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database that exists for one test.
pub struct TestDb {
    /// URL to hand to [`crate::open`] or the server.
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile_dir::TempDir>,
}

mod tempfile_dir {
    /// A temporary directory removed on drop.
    pub struct TempDir(pub std::path::PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl TestDb {
    /// A fresh, empty database of `backend`. For SQLite, the file lives in
    /// `dir` when given (so a test can restart a server on it), else in a new
    /// temporary directory.
    pub async fn create(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(format!("leadline-test-{}", random_suffix()));
                std::fs::create_dir_all(&dir).expect("temp dir");
                let url = format!("sqlite://{}/leadline.db", dir.display());
                Self {
                    url,
                    pg_name: None,
                    _dir: Some(tempfile_dir::TempDir(dir)),
                }
            }
            Backend::Postgres => {
                let name = format!("leadline_test_{}", random_suffix());
                let admin = pg_admin_url();
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .unwrap_or_else(|e| panic!("PostgreSQL is needed for this test at {admin}: {e}"));
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let _ = conn.close().await;
                let base = admin.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap_or(admin);
                Self {
                    url: format!("{base}/{name}"),
                    pg_name: Some(name),
                    _dir: None,
                }
            }
        }
    }
}

fn random_suffix() -> String {
    use rand::Rng;
    let n: u64 = rand::rng().random();
    format!("{n:016x}")
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        // Drop runs outside any async context we can rely on: use a thread with its
        // own runtime.
        let admin = pg_admin_url();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
            if let Ok(rt) = rt {
                rt.block_on(async move {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                            .execute(&mut conn)
                            .await;
                        let _ = conn.close().await;
                    }
                });
            }
        })
        .join();
    }
}

/// Runs async test bodies on both backends: `both_backends!(name, ...)` makes
/// `name::sqlite` and `name::postgres` from each `async fn name(backend: Backend)`.
/// The store's conformance suite and the server's HTTP tests share it.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::Backend::Postgres).await
                }
            }
        )*
    };
}
