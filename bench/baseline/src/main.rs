//! The benchmark's baseline: `POST /v1/leads` parses the same JSON body into the
//! same request type as Leadline and answers 201, storing nothing; `POST /hook`
//! answers 200 (a webhook sink for the benchmark). Usage: `leadline-baseline <port>`.

use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use leadline_core::lead::NewLeadRequest;

async fn lead(body: Bytes) -> (StatusCode, &'static str) {
    match serde_json::from_slice::<NewLeadRequest>(&body) {
        Ok(_) => (StatusCode::CREATED, "{}"),
        Err(_) => (StatusCode::UNPROCESSABLE_ENTITY, "{}"),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(8090);
    let app = Router::new()
        .route("/v1/leads", post(lead))
        .route("/hook", post(|| async { StatusCode::OK }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await
}
