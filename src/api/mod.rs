//! HTTP API on `api.host:api.port`, jigasi's endpoints and ours: `/about/health` (brewery, SIP
//! registration, SIP health check), `/about/stats` (jigasi's names plus per-call figures),
//! `/about/version`, `POST /about/shutdown` (drain), `/metrics` (Prometheus) and
//! `/debug/resources` (tasks and sockets, to see that calls leave nothing behind).

mod metrics;

use crate::call::{CallPhase, LiveCall, Registry};
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

/// Jigasi's `/about/stats` names (those that mean nothing without a transcriber are there, at 0,
/// so dashboards and the autoscaler read this as they read jigasi's), then our own figures:
/// calls by state, setup-time percentiles, RTP counters per leg and each call in progress.
async fn stats(State(state): State<ApiState>) -> Json<Value> {
    let s = state.registry.snapshot();
    let mut body = json!({
        "conferences": s.conferences,
        "participants": s.participants,
        "stress_level": s.stress_level,
        "conference_sizes": s.conference_sizes,
        "threads": threads(),
        "current_timestamp": timestamp(std::time::SystemTime::now()),
        "total_conferences_completed": s.total_conferences_completed,
        "total_participants": s.total_participants,
        // Jigasi sums conference durations; with one call per room that is the call seconds.
        "total_conference_seconds": s.total_call_seconds.round() as u64,
        "total_calls_with_dropped_media": s.total_calls_with_dropped_media,
        "total_count_dropped_media": s.total_count_dropped_media,
        "total_calls_with_connection_failed": s.total_calls_with_connection_failed,
        "total_calls_with_sip_call_waiting": 0,
        "total_calls_with_sip_call_reconnected": 0,
        "total_calls_with_jvb_migrate": s.total_calls_with_jvb_migrate,
        "total_calls_jvb_no_media": s.total_calls_jvb_no_media,
        "total_calls_no_heartbeat_response": 0,
        "graceful_shutdown": (state.draining)(),
        "total_calls": s.total_calls,
        "total_calls_with_connected_media": s.total_calls_with_connected_media,
        "calls": s.calls,
        "calls_by_state": s.by_phase.iter()
            .filter(|(p, _)| *p != CallPhase::Ended)
            .map(|(p, n)| (p.name().to_string(), json!(n)))
            .collect::<serde_json::Map<_, _>>(),
        "setup_ms": { "dial_in": s.setup_in, "dial_out": s.setup_out },
        "media": {
            "phone": with_loss(json!(s.media.phone)),
            "conference": with_loss(json!(s.media.conference)),
        },
        "live_calls": s.live.iter().map(live_call).collect::<Vec<_>>(),
    });
    if let Value::Object(b) = &mut body {
        for name in TRANSCRIBER_TOTALS {
            b.insert(name.to_string(), json!(0));
        }
    }
    round_floats(&mut body);
    Json(body)
}

/// Three decimals are more than any of these figures means (a microsecond in milliseconds, a
/// millisecond in seconds); more only makes the JSON harder to read.
fn round_floats(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(r) = n.as_f64().map(|f| (f * 1000.0).round() / 1000.0) {
                *v = json!(r);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(round_floats),
        Value::Object(fields) => fields.values_mut().for_each(round_floats),
        _ => {}
    }
}

/// Jigasi's transcriber counters: no transcriber here.
const TRANSCRIBER_TOTALS: [&str; 14] = [
    "total_transcriber_g_requests",
    "total_transcriber_g_minutes",
    "total_transcriber_ggl_millis",
    "total_transcriber_oci_millis",
    "total_transcriber_wsp_millis",
    "total_transcriber_vsk_millis",
    "total_transcriber_started",
    "total_transcriber_stopped",
    "total_transcriber_failed",
    "total_transcriber_connection_errors",
    "total_transcriber_connection_retries",
    "total_transcriber_no_result_errors",
    "total_transcriber_send_errors",
    "total_transcriber_session_creation_errors",
];

/// Lost packets over those expected, in percent (0 before any arrived).
fn loss_percent(received: u64, lost: u64) -> f64 {
    let expected = received + lost;
    if expected == 0 {
        0.0
    } else {
        lost as f64 * 100.0 / expected as f64
    }
}

/// A leg's counters as JSON, with their loss as a share of the packets expected.
fn with_loss(mut leg: Value) -> Value {
    let count = |k: &str| leg[k].as_u64().unwrap_or(0);
    let loss = loss_percent(count("packets_in"), count("lost"));
    leg["loss_percent"] = json!(loss);
    leg
}

fn live_call(c: &LiveCall) -> Value {
    json!({
        "call_id": c.call_id,
        "direction": c.direction,
        "room": c.room,
        "state": c.state,
        "duration_s": c.duration_s,
        "setup_ms": c.setup_ms,
        "phone": c.media.as_ref().map(|m| with_loss(json!(m.phone))),
        "conference": c.media.as_ref().map(|m| with_loss(json!(m.conference))),
    })
}

/// Threads of this process (jigasi's `threads`), from /proc; 0 where there is none.
fn threads() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// `yyyy-MM-dd HH:mm:ss.SSS` in UTC, as jigasi's `current_timestamp`.
fn timestamp(t: std::time::SystemTime) -> String {
    let since = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's days-to-civil algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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
    // Counted after the calls and the warm connections: a connection's task starts before the
    // pool counts it idle, so a reader that sees the pool full also sees all of its tasks
    // (counted first, a login finishing in between showed one task fewer than at rest).
    let calls = state.registry.snapshot().calls;
    let xmpp_idle = (state.xmpp_idle)();
    let sockets = open_sockets();
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    Json(json!({
        "calls": calls,
        "xmpp_idle": xmpp_idle,
        "tasks": tasks,
        "sockets": sockets,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_are_jigasis_format_in_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        assert_eq!(timestamp(t), "2026-11-18 11:06:40.123");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01 00:00:00.000");
        // A leap day.
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(timestamp(leap), "2000-02-29 00:00:00.000");
    }

    #[test]
    fn a_legs_loss_is_added_from_its_own_counters() {
        let leg = with_loss(json!({ "packets_in": 90, "lost": 10, "late": 1 }));
        assert_eq!(leg["loss_percent"], json!(10.0));
        assert_eq!(leg["late"], json!(1));
    }

    #[test]
    fn loss_is_a_share_of_the_expected_packets() {
        assert_eq!(loss_percent(0, 0), 0.0);
        assert_eq!(loss_percent(90, 10), 10.0);
        assert!((loss_percent(2, 1) - 33.333).abs() < 0.001);
    }

    #[test]
    fn floats_are_rounded_to_three_decimals_everywhere_and_integers_kept() {
        let mut v = json!({ "a": 73.806279, "b": [0.073806279, 5], "c": { "d": 1.0 } });
        round_floats(&mut v);
        assert_eq!(
            v,
            json!({ "a": 73.806, "b": [0.074, 5], "c": { "d": 1.0 } })
        );
    }
}
