//! Building and running the server: `Application::build(config)` binds the port
//! (0 in tests), opens and migrates the store; `run_until_stopped` serves until
//! the shutdown future resolves, then drains in-flight requests within a bound.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use leadline_store::Store;
use secrecy::{ExposeSecret, SecretString};
use tokio::net::TcpListener;

use crate::auth::sha2_digest;
use crate::config::Config;
use crate::extract::MAX_BODY;
pub use crate::state::AppState;

/// The longest a request's handler may run before it is answered 408.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The longest a request may take in all: its handler, plus rate limiting, the
/// idempotency claim and the audit write around it. Nothing a request holds (an
/// idempotency claim, say) needs to outlive this.
pub const REQUEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(35);

/// A built, bound, not yet serving application.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
    /// Held while serving a SQLite database: the only server on it.
    _lock: Option<crate::claims::ServeLock>,
}

/// Startup failures, each with its cause.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Store(#[from] leadline_store::StoreError),
    /// A file of the data directory could not be made or written.
    #[error("cannot write {path}: {source}")]
    File {
        /// The file or directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Another server holds the SQLite database, or its lock file cannot be taken.
    #[error("{0}")]
    Locked(String),
    /// Redis was named but its URL or connection is wrong.
    #[error("redis: {0}")]
    Redis(String),
    /// The mail settings are wrong.
    #[error("mail: {0}")]
    Mail(String),
}

/// Reads the admin key from the configuration, else from `<data_dir>/admin.key`,
/// creating that file (mode 0600) with a fresh key on first start. The key itself
/// is never logged, only the file's path.
pub fn admin_key(config: &Config) -> Result<SecretString, StartError> {
    if let Some(k) = &config.admin_key {
        return Ok(k.clone());
    }
    let path = config.data_dir.join("admin.key");
    if let Ok(k) = std::fs::read_to_string(&path) {
        let k = k.trim().to_owned();
        if k.len() >= 16 {
            return Ok(k.into());
        }
    }
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::File {
        path: config.data_dir.clone(),
        source,
    })?;
    let key = {
        use base64::Engine;
        use rand::RngCore;
        let mut b = [0u8; 32];
        rand::rng().fill_bytes(&mut b);
        format!("adm_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
    };
    write_private(&path, &key).map_err(|source| StartError::File {
        path: path.clone(),
        source,
    })?;
    tracing::info!(path = %path.display(), "generated an admin key; read it from this file");
    Ok(key.into())
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

/// Opens the store the configuration names and migrates it.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    let store = leadline_store::open_with(config.database_url.expose_secret(), &config.writer).await?;
    store.migrate().await?;
    Ok(store)
}

impl Application {
    /// Opens the store, migrates it and binds the listener.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let admin = admin_key(&config)?;
        // A data directory from before files were made private is made so now.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o700));
        }
        let store = open_store(&config).await?;
        Self::with_store(config, store, &admin).await
    }

    /// Like [`Application::build`] with an open store.
    pub async fn with_store(config: Config, store: Arc<dyn Store>, admin: &SecretString) -> Result<Self, StartError> {
        let lock = match crate::claims::sqlite_path(config.database_url.expose_secret()) {
            Some(path) if store.backend() == leadline_store::Backend::Sqlite => {
                Some(crate::claims::ServeLock::acquire(&path).map_err(StartError::Locked)?)
            }
            _ => None,
        };
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.bind,
                source,
            })?;
        crate::metrics::init();
        let rate_limits = crate::ratelimit::RateLimits::new(
            config.rate_limit_public_per_minute,
            config.rate_limit_tenant_per_minute,
            config.rate_limit_admin_per_minute,
        );
        let rate_limits = match &config.redis_url {
            Some(url) => rate_limits
                .shared(url.expose_secret(), &config.redis_key_prefix, config.redis_timeout)
                .await
                .map_err(StartError::Redis)?,
            None => rate_limits,
        };
        let outbox = crate::worker::Handoff::new(&config);
        let state = AppState {
            store,
            config: Arc::new(config),
            admin_key_hash: sha2_digest(admin.expose_secret().as_bytes()),
            rate_limits,
            outbox,
            claims: crate::claims::Claims::new(lock.is_some()),
            origins: Arc::new(crate::cors::AllowedOrigins::default()),
            routes: Arc::new(crate::http::route_methods()),
            demo_key: Arc::new(std::sync::OnceLock::new()),
        };
        // Fail at start, not at the first email, on a bad mail setting.
        crate::worker::Dispatcher::new(state.store.clone(), state.config.clone(), state.outbox.clone())
            .map_err(StartError::Mail)?;
        Ok(Self {
            listener,
            router: router(state.clone()),
            state,
            _lock: lock,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or_else(|_| self.state.config.bind)
    }

    /// The state (tests use its store).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight
    /// requests finish for at most the configured grace, and closes the store.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let grace = self.state.config.shutdown_grace;
        let stop = tokio_util::sync::CancellationToken::new();
        let dispatcher = crate::worker::Dispatcher::new(
            self.state.store.clone(),
            self.state.config.clone(),
            self.state.outbox.clone(),
        )
        .map_err(std::io::Error::other)?;
        let janitor_task = tokio::spawn(crate::maintenance::janitor(
            self.state.store.clone(),
            self.state.config.clone(),
            stop.child_token(),
        ));
        let dispatcher = tokio::spawn(dispatcher.run(stop.child_token()));
        let renew = tokio::spawn(self.state.claims.clone().renew(self.state.store.clone()));
        let limits = self.state.rate_limits.clone();
        let janitor = tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                limits.shrink();
            }
        });
        let stopping = tokio_util::sync::CancellationToken::new();
        let stopped = stopping.clone();
        let serve = axum::serve(
            self.listener,
            self.router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.await;
            stopping.cancel();
        });
        let bounded = async move {
            stopped.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        let result = tokio::select! {
            r = serve => r,
            () = bounded => {
                tracing::warn!("in-flight requests did not finish within the shutdown grace; stopping anyway");
                Ok(())
            }
        };
        janitor.abort();
        janitor_task.abort();
        renew.abort();
        // Deliveries under way finish and are reported; the rest wait in the outbox.
        stop.cancel();
        if tokio::time::timeout(grace, dispatcher).await.is_err() {
            tracing::warn!("the outbox dispatcher did not stop within the shutdown grace; its leases will expire");
        }
        self.state.store.close().await;
        result
    }
}

/// A handler panicked: a bare 500, which the request-context layer renders as a
/// problem document with the request id (the panic is logged, never sent).
fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    use axum::response::IntoResponse;
    crate::error::ApiError::Internal("a handler panicked".into()).into_response()
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    let (api, _) = crate::http::api().split_for_parts();
    api.merge(crate::http::health::unrouted())
        .merge(crate::http::widget::unrouted())
        .merge(crate::http::docs::unrouted())
        .fallback(|| async { axum::http::StatusCode::NOT_FOUND })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::effects::effects,
        ))
        .layer(axum::middleware::from_fn_with_state(
            crate::ratelimit::Guard {
                limits: state.rate_limits.clone(),
                trusted_proxies: state.config.trusted_proxies.clone().into(),
            },
            crate::ratelimit::rate_limit,
        ))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_DEADLINE,
        ))
        .layer(axum::middleware::from_fn(crate::middleware::request_context))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    /// A handler that panics answers a problem document naming the request, as
    /// every other error does.
    #[tokio::test]
    async fn a_panic_answers_a_problem_document() {
        let app = axum::Router::new()
            .route(
                "/boom",
                axum::routing::get(|| async {
                    let v: Vec<u8> = Vec::new();
                    // An index out of bounds, as a bug would.
                    v[usize::from(v.is_empty())].to_string()
                }),
            )
            .layer(tower_http::catch_panic::CatchPanicLayer::custom(super::panicked))
            .layer(axum::middleware::from_fn(crate::middleware::request_context));
        let res = app
            .oneshot(Request::get("/boom").body(Body::empty()).expect("request"))
            .await
            .expect("answer");
        assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            res.headers().get("content-type").map(|v| v.as_bytes()),
            Some(&b"application/problem+json"[..])
        );
        let id = res.headers().get("x-request-id").cloned().expect("request id");
        let body = axum::body::to_bytes(res.into_body(), 1 << 16).await.expect("body");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["status"], 500);
        assert_eq!(v["request_id"].as_str().map(str::as_bytes), Some(id.as_bytes()));
    }
}
