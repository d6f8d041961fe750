//! HTTP API on `api.host:api.port`. For now what the lab and a first operator need: jigasi's
//! `/about/stats` figures, `/about/health` (brewery and SIP registration) and `/debug/resources`
//! (tasks and sockets, to see that calls leave nothing behind). Metrics and the drain control
//! arrive with the operations work.

mod metrics;

use crate::call::Registry;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Clone)]
pub struct ApiState {
    pub registry: Arc<Registry>,
    /// Logged-in XMPP connections waiting for calls (the warm pool).
    pub xmpp_idle: Arc<dyn Fn() -> usize + Send + Sync>,
    /// What stands in the way of taking calls, asked afresh on each request.
    pub health: Arc<dyn Fn() -> HealthReport + Send + Sync>,
    /// Whether the gateway is draining (jigasi's `graceful_shutdown`).
    pub draining: Arc<dyn Fn() -> bool + Send + Sync>,
    /// Where `POST /about/shutdown` asks for a drain; `None` when `api.shutdown_enabled` is off.
    pub shutdown: Option<tokio::sync::mpsc::UnboundedSender<&'static str>>,
}

/// The gateway's health: healthy when `problems` is empty; `detail` is added to the answer.
#[derive(Debug, Clone)]
pub struct HealthReport {
    pub problems: Vec<String>,
    pub detail: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Binds the API; the returned future serves it until dropped.
pub async fn bind(
    addr: SocketAddr,
    state: ApiState,
) -> Result<(SocketAddr, impl std::future::Future<Output = ()>), ApiError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ApiError::Bind { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    let app = Router::new()
        .route("/about/health", get(health))
        .route("/about/version", get(version))
        .route("/about/shutdown", post(shutdown))
        .route("/metrics", get(prometheus))
        .route("/about/stats", get(stats))
        .route("/debug/resources", get(resources))
        .layer(axum::middleware::from_fn(refuse_large_bodies))
        .with_state(state);
    let serve = async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "HTTP API stopped");
        }
    };
    Ok((local, serve))
}

async fn stats(State(state): State<ApiState>) -> Json<Value> {
    let s = state.registry.snapshot();
    Json(json!({
        "conferences": s.conferences,
        "participants": s.participants,
        "total_calls": s.total_calls,
        "total_calls_with_connected_media": s.total_calls_with_connected_media,
        "graceful_shutdown": (state.draining)(),
    }))
}

/// No request here needs a body; one announced larger than this is refused before it is read.
const MAX_BODY: u64 = 64 * 1024;

async fn refuse_large_bodies(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let announced = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY) {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            Json(json!({ "error": format!("request bodies are limited to {MAX_BODY} bytes") })),
        )
            .into_response();
    }
    next.run(request).await
}

/// Prometheus' text format.
async fn prometheus(State(state): State<ApiState>) -> impl axum::response::IntoResponse {
    let calls = state.registry.snapshot();
    let text = metrics::render(&metrics::Sample {
        calls: &calls,
        draining: (state.draining)(),
        problems: (state.health)().problems.len(),
    });
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}

/// As jigasi's, with our name.
async fn version() -> Json<Value> {
    Json(json!({
        "name": env!("CARGO_PKG_NAME"),
        "version": env!("CARGO_PKG_VERSION"),
        "os": std::env::consts::OS,
    }))
}

/// A graceful shutdown, as the first SIGTERM: drain, then exit once the calls have ended. 403
/// unless `api.shutdown_enabled` (SHUTDOWN_REST_ENABLED); asking again while draining changes
/// nothing (only a signal ends the calls at once).
async fn shutdown(State(state): State<ApiState>) -> (StatusCode, Json<Value>) {
    let Some(shutdown) = &state.shutdown else {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({ "error": "shutdown over HTTP is disabled (SHUTDOWN_REST_ENABLED)" })),
        );
    };
    if !(state.draining)() && shutdown.send("POST /about/shutdown").is_err() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": "the gateway is stopping" })),
        );
    }
    (StatusCode::OK, Json(json!({ "graceful_shutdown": true })))
}

/// 200 when nothing is wrong, else 500; the body names each problem either way.
async fn health(State(state): State<ApiState>) -> (StatusCode, Json<Value>) {
    let report = (state.health)();
    let healthy = report.problems.is_empty();
    let mut body = json!({ "healthy": healthy, "problems": report.problems });
    if let (Value::Object(body), Value::Object(detail)) = (&mut body, report.detail) {
        body.extend(detail);
    }
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    (status, Json(body))
}

async fn resources(State(state): State<ApiState>) -> Json<Value> {
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    Json(json!({
        "calls": state.registry.snapshot().calls,
        "xmpp_idle": (state.xmpp_idle)(),
        "tasks": tasks,
        "sockets": open_sockets(),
    }))
}

/// Open sockets of this process, from /proc (Linux); None elsewhere.
fn open_sockets() -> Option<usize> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    Some(
        dir.filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read_link(e.path()).ok())
            .filter(|t| t.to_string_lossy().starts_with("socket:"))
            .count(),
    )
}
