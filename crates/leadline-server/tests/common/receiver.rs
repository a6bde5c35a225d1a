//! A real HTTP server that receives webhooks, answering from a plan.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

#[derive(Debug, Clone)]
pub struct Delivery {
    pub headers: HeaderMap,
    pub body: String,
}

#[derive(Default)]
struct Inner {
    plan: VecDeque<u16>,
    fallback: u16,
    received: Vec<Delivery>,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl Receiver {
    /// Answers the planned statuses in order, then `fallback`.
    pub async fn start(plan: &[u16], fallback: u16) -> Self {
        let inner = Arc::new(Mutex::new(Inner {
            plan: plan.iter().copied().collect(),
            fallback,
            received: Vec::new(),
        }));
        let app = axum::Router::new().route("/hook", post(hook)).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, inner }
    }

    pub fn received(&self) -> Vec<Delivery> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).received.clone()
    }

    pub fn set_fallback(&self, status: u16) {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).fallback = status;
    }
}

async fn hook(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
    g.received.push(Delivery {
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let status = g.plan.pop_front().unwrap_or(g.fallback);
    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
}
