//! The HTTP API of a running gateway, end to end: jigasi's `/about/version`, the shutdown
//! control (only when enabled; it drains and the process exits 0 by itself), and bad requests
//! answered with 4xx while the server goes on.

use anyhow::Result;
use gateway_lab::gateway::{Gateway, GatewayOptions};
use gateway_lab::prosody::Prosody;
use gateway_lab::{http, paths};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_jitsi-sip-gateway");

fn post(gw: &Gateway, path: &str) -> Result<(u16, String)> {
    http::request(
        gw.api_port,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    )
}

#[test]
fn version_and_bad_requests_and_a_disabled_shutdown_leave_the_gateway_running() -> Result<()> {
    let dir = paths::run_dir("api-basics")?;
    let prosody = Prosody::start(&dir)?;
    let mut gw = Gateway::start(Path::new(BIN), &dir, &prosody, &GatewayOptions::default())?;

    let version = gw.api("/about/version")?;
    assert_eq!(
        version,
        json!({ "name": "jitsi-sip-gateway", "version": env!("CARGO_PKG_VERSION"), "os": "linux" })
    );
    // Shutdown over HTTP is off by default, as in jigasi's image.
    let (status, body) = post(&gw, "/about/shutdown")?;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("SHUTDOWN_REST_ENABLED"), "{body}");
    assert_eq!(gw.api("/about/stats")?["graceful_shutdown"], json!(false));

    assert_eq!(http::get(gw.api_port, "/no/such/path")?.0, 404);
    assert_eq!(http::get(gw.api_port, "/about/shutdown")?.0, 405);
    assert_eq!(post(&gw, "/about/version")?.0, 405);
    let (status, _) = http::request(gw.api_port, "NOT HTTP AT ALL\r\n\r\n")?;
    assert_eq!(status, 400);
    let (status, body) = http::request(
        gw.api_port,
        "POST /about/shutdown HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000000\r\n\r\n",
    )?;
    assert_eq!(status, 413, "{body}");
    // Still serving after all that.
    assert_eq!(
        gw.api("/about/version")?["name"],
        json!("jitsi-sip-gateway")
    );
    gw.stop()?;
    Ok(())
}

/// `/metrics` as the official Prometheus client's text-format parser reads it: name → value.
fn parsed_metrics(gw: &Gateway) -> Result<serde_json::Map<String, serde_json::Value>> {
    let (status, text) = http::get(gw.api_port, "/metrics")?;
    anyhow::ensure!(status == 200, "GET /metrics → {status}: {text}");
    let script = "import json, sys\n\
        from prometheus_client.parser import text_string_to_metric_families as parse\n\
        out = {}\n\
        for family in parse(sys.stdin.read()):\n\
        \x20   for s in family.samples:\n\
        \x20       out[s.name] = s.value\n\
        print(json.dumps(out))\n";
    let mut child = std::process::Command::new(paths::python())
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes())?;
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "the Prometheus parser refused /metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[test]
fn metrics_parse_with_the_prometheus_client_parser() -> Result<()> {
    let dir = paths::run_dir("api-metrics")?;
    let prosody = Prosody::start(&dir)?;
    let mut gw = Gateway::start(Path::new(BIN), &dir, &prosody, &GatewayOptions::default())?;
    let m = parsed_metrics(&gw)?;
    assert_eq!(m["jitsi_sip_gateway_calls"], json!(0.0), "{m:?}");
    assert_eq!(m["jitsi_sip_gateway_calls_total"], json!(0.0), "{m:?}");
    assert_eq!(
        m["jitsi_sip_gateway_graceful_shutdown"],
        json!(0.0),
        "{m:?}"
    );
    // No Jicofo made the brewery room, so the gateway is not in it: not healthy.
    assert_eq!(m["jitsi_sip_gateway_healthy"], json!(0.0), "{m:?}");
    assert_eq!(m.len(), 7, "{m:?}");
    gw.stop()?;
    Ok(())
}

#[test]
fn an_enabled_shutdown_drains_and_the_idle_gateway_exits_0() -> Result<()> {
    let dir = paths::run_dir("api-shutdown")?;
    let prosody = Prosody::start(&dir)?;
    let opts = GatewayOptions::default().env("SHUTDOWN_REST_ENABLED", "true");
    let mut gw = Gateway::start(Path::new(BIN), &dir, &prosody, &opts)?;
    let (status, body) = post(&gw, "/about/shutdown")?;
    assert_eq!(status, 200, "{body}");
    let exit = gw.wait_exit(Duration::from_secs(15))?;
    assert!(exit.success());
    gw.wait_log("the drain's cause", Duration::from_secs(1), |l| {
        l["message"] == json!("stopping: no calls in progress")
            && l["by"] == json!("POST /about/shutdown")
    })?;
    Ok(())
}
