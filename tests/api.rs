//! The HTTP API of a running gateway, end to end: jigasi's `/about/version`, the shutdown
//! control (only when enabled; it drains and the process exits 0 by itself), bad requests
//! answered with 4xx while the server goes on, health following the brewery, and stats and
//! metrics counting a real call while it runs and after it ends.

use anyhow::{Context, Result};
use gateway_lab::emulator::{self, EmulatorOptions, Participant};
use gateway_lab::gateway::{Gateway, GatewayOptions};
use gateway_lab::prosody::Prosody;
use gateway_lab::scenario::DialInLab;
use gateway_lab::sipp::{self, SippCall};
use gateway_lab::{audio, http, paths};
use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};

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

/// `/metrics` as the official Prometheus client's text-format parser reads it: sample → value,
/// a labelled sample keyed `name{label="value",…}` with its labels sorted.
fn parsed_metrics(gw: &Gateway) -> Result<serde_json::Map<String, serde_json::Value>> {
    let (status, text) = http::get(gw.api_port, "/metrics")?;
    anyhow::ensure!(status == 200, "GET /metrics → {status}: {text}");
    let script = "import json, sys\n\
        from prometheus_client.parser import text_string_to_metric_families as parse\n\
        out = {}\n\
        for family in parse(sys.stdin.read()):\n\
        \x20   for s in family.samples:\n\
        \x20       labels = ','.join(f'{k}=\"{v}\"' for k, v in sorted(s.labels.items()))\n\
        \x20       out[s.name + ('{' + labels + '}' if labels else '')] = s.value\n\
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
    assert_eq!(
        m[r#"jitsi_sip_gateway_calls{state="connected"}"#],
        json!(0.0),
        "{m:?}"
    );
    assert_eq!(m["jitsi_sip_gateway_calls_total"], json!(0.0), "{m:?}");
    assert_eq!(
        m[r#"jitsi_sip_gateway_call_setup_seconds_count{direction="in"}"#],
        json!(0.0),
        "{m:?}"
    );
    assert_eq!(
        m["jitsi_sip_gateway_graceful_shutdown"],
        json!(0.0),
        "{m:?}"
    );
    // No Jicofo made the brewery room, so the gateway is not in it; without a SIP account or
    // server it cannot place calls, so Jicofo has no use for it there: healthy all the same.
    assert_eq!(m["jitsi_sip_gateway_healthy"], json!(1.0), "{m:?}");
    let health = gw.api("/about/health")?;
    assert_eq!(health["brewery"][0]["required"], json!(false), "{health}");
    assert_ne!(health["brewery"][0]["state"], json!("joined"), "{health}");
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

const T: Duration = Duration::from_secs(15);

/// Polls an endpoint until `ok` holds for its JSON (the figures change as the call goes; HTTP
/// offers nothing to wait on); returns the body that satisfied it.
fn wait_api(gw: &Gateway, path: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Result<Value> {
    let deadline = Instant::now() + T;
    loop {
        let body = gw.api(path)?;
        if ok(&body) {
            return Ok(body);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what}: never; last {path}: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn health_is_500_until_the_brewery_is_joined_and_follows_prosody_away_and_back() -> Result<()> {
    let dir = paths::run_dir("api-health")?;
    let mut prosody = Prosody::start(&dir)?;
    // Required as it is for a gateway that places calls (a SIP account or a trunk's server).
    let opts = GatewayOptions::default().set("health.require_brewery", "true");
    let mut gw = Gateway::start(Path::new(BIN), &dir, &prosody, &opts)?;
    // Only Jicofo (the emulator) may create the brewery room: until it has, no dial can reach us.
    let before = gw.wait_health(500, T)?;
    assert_eq!(before["healthy"], json!(false), "{before}");
    assert!(
        before["problems"][0]
            .as_str()
            .is_some_and(|p| p.contains("brewery")),
        "{before}"
    );
    let opts = EmulatorOptions::room_with("healthroom", vec![]);
    let mut focus = emulator::start_emulator(&prosody, &dir, &opts)?;
    let joined = gw.wait_health(200, T)?;
    assert_eq!(joined["brewery"][0]["state"], json!("joined"), "{joined}");
    assert_eq!(joined["problems"], json!([]), "{joined}");

    prosody.stop();
    let away = gw.wait_health(500, T)?;
    assert_eq!(away["brewery"][0]["state"], json!("lost"), "{away}");
    focus.proc.stop();

    prosody.restart()?;
    let _focus = emulator::start_emulator(&prosody, &dir.join("after-restart"), &opts)?;
    let back = gw.wait_health(200, T)?;
    assert_eq!(back["brewery"][0]["state"], json!("joined"), "{back}");
    gw.stop()?;
    Ok(())
}

#[test]
fn stats_and_metrics_count_a_real_call_while_it_runs_and_after_it_ends() -> Result<()> {
    let dir = paths::run_dir("api-stats-call")?;
    let participants = vec![
        Participant::tone("alice", 600.0),
        Participant::tone("bob", 1100.0),
    ];
    let mut lab = DialInLab::start(
        Path::new(BIN),
        &dir,
        "statsroom",
        participants,
        |_| {},
        &GatewayOptions::default(),
    )?;
    let idle = lab.gateway.api("/about/stats")?;
    assert_eq!(
        (&idle["calls"], &idle["total_calls"], &idle["conferences"]),
        (&json!(0), &json!(0), &json!(0)),
        "{idle}"
    );
    assert_eq!(idle["conference_sizes"].as_array().map(Vec::len), Some(22));

    let wav = dir.join("caller.wav");
    audio::write_tone_wav(&wav, 440.0, 12.0, 8000, -12.0)?;
    sipp::write_pcmu_pcap(&wav, &dir.join("caller.pcap"))?;
    let mut call = SippCall::start_with(
        &dir,
        "dialin-call.xml",
        "room",
        &lab.gateway.sip_target(),
        8000,
        &[
            ("room_header", "Jitsi-Conference-Room"),
            ("room", "statsroom"),
            ("caller", "carol"),
            ("caller_name", "Carol"),
            ("offer_pts", "0 101"),
        ],
    )?;
    let nick = lab.gateway_joined()?;
    let sid = lab.session_connected(&nick)?;
    lab.wait_recorded(&sid, 2)?;

    // While it runs: the room (alice, bob and the phone) counts, the call is connected, and its
    // media figures move on both legs.
    let during = wait_api(&lab.gateway, "/about/stats", "both legs counting", |s| {
        s["live_calls"][0]["phone"]["packets_in"].as_u64() > Some(50)
            && s["live_calls"][0]["conference"]["packets_in"].as_u64() > Some(50)
    })?;
    assert_eq!(
        (
            &during["conferences"],
            &during["participants"],
            &during["calls"]
        ),
        (&json!(1), &json!(3), &json!(1)),
        "{during}"
    );
    assert_eq!(during["conference_sizes"][3], json!(1), "{during}");
    assert_eq!(during["calls_by_state"]["connected"], json!(1), "{during}");
    assert_eq!(
        during["total_calls_with_connected_media"],
        json!(1),
        "{during}"
    );
    let live = &during["live_calls"][0];
    assert_eq!(live["direction"], json!("in"), "{live}");
    assert_eq!(live["room"], json!("statsroom@muc.meet.jitsi"), "{live}");
    assert_eq!(live["phone"]["loss_percent"], json!(0.0), "{live}");
    assert!(
        live["setup_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{live}"
    );
    assert!(live["phone"]["jitter_ms"].is_number(), "{live}");
    assert!(live["conference"]["concealed_frames"].is_u64(), "{live}");
    let m = parsed_metrics(&lab.gateway)?;
    assert_eq!(
        m[r#"jitsi_sip_gateway_calls{state="connected"}"#],
        json!(1.0),
        "{m:?}"
    );
    assert_eq!(m["jitsi_sip_gateway_conferences"], json!(1.0), "{m:?}");
    assert_eq!(m["jitsi_sip_gateway_participants"], json!(3.0), "{m:?}");
    assert!(
        m[r#"jitsi_sip_gateway_rtp_packets_received_total{leg="phone"}"#]
            .as_f64()
            .is_some_and(|n| n > 50.0),
        "{m:?}"
    );

    call.wait_success(Duration::from_secs(30))?;
    let after = wait_api(&lab.gateway, "/about/stats", "the call gone", |s| {
        s["calls"] == json!(0)
    })?;
    assert_eq!(
        (&after["conferences"], &after["participants"]),
        (&json!(0), &json!(0)),
        "{after}"
    );
    assert_eq!(
        (
            &after["total_calls"],
            &after["total_calls_with_connected_media"],
            &after["total_conferences_completed"],
            &after["total_participants"],
        ),
        (&json!(1), &json!(1), &json!(1), &json!(1)),
        "{after}"
    );
    assert_eq!(after["total_calls_jvb_no_media"], json!(0), "{after}");
    let setup = &after["setup_ms"]["dial_in"];
    assert_eq!(setup["count"], json!(1), "{after}");
    assert!(
        setup["p50_ms"]
            .as_f64()
            .is_some_and(|ms| ms > 0.0 && ms < 5000.0),
        "{after}"
    );
    assert!(
        after["total_conference_seconds"]
            .as_u64()
            .is_some_and(|s| s >= 8),
        "{after}"
    );
    // Eight seconds at 50 packets a second, each way, kept after the call.
    let phone = &after["media"]["phone"];
    let conference = &after["media"]["conference"];
    for (leg, figures) in [("phone", phone), ("conference", conference)] {
        assert!(
            figures["packets_in"].as_u64().is_some_and(|n| n > 300),
            "{leg}: {after}"
        );
        assert!(
            figures["packets_out"].as_u64().is_some_and(|n| n > 300),
            "{leg}: {after}"
        );
    }
    assert_eq!(phone["loss_percent"], json!(0.0), "{after}");
    assert_eq!(after["live_calls"], json!([]), "{after}");

    let m = parsed_metrics(&lab.gateway)?;
    assert_eq!(m["jitsi_sip_gateway_calls_total"], json!(1.0), "{m:?}");
    assert_eq!(
        m["jitsi_sip_gateway_conferences_completed_total"],
        json!(1.0),
        "{m:?}"
    );
    assert_eq!(
        m[r#"jitsi_sip_gateway_call_setup_seconds_count{direction="in"}"#],
        json!(1.0),
        "{m:?}"
    );
    assert_eq!(
        m[r#"jitsi_sip_gateway_call_setup_seconds_bucket{direction="in",le="+Inf"}"#],
        json!(1.0),
        "{m:?}"
    );
    let received = m[r#"jitsi_sip_gateway_rtp_packets_received_total{leg="phone"}"#]
        .as_f64()
        .context("phone packets")?;
    assert_eq!(
        Some(received),
        phone["packets_in"].as_u64().map(|n| n as f64)
    );
    assert_eq!(
        m[r#"jitsi_sip_gateway_calls{state="connected"}"#],
        json!(0.0),
        "{m:?}"
    );

    // The call's own log says the same, in fields a log query can filter on.
    let ended = lab
        .gateway
        .wait_log("the call's end", T, |l| l["message"] == json!("call ended"))?;
    assert_eq!(ended["by"], json!("phone"), "{ended}");
    assert!(ended.get("cause").is_none(), "the phone ended it: {ended}");
    assert!(
        ended["duration_s"].as_f64().is_some_and(|s| s >= 8.0),
        "{ended}"
    );
    let logged = ended["setup_ms"].as_f64().context("setup_ms")?;
    let counted = setup["p50_ms"].as_f64().context("p50")?;
    assert!((logged - counted).abs() <= 1.0, "{ended} vs {setup}");
    let media = lab.gateway.wait_log("the media totals", T, |l| {
        l["message"] == json!("media stopped")
    })?;
    assert_eq!(media["phone_packets_in"], phone["packets_in"], "{media}");
    assert_eq!(media["conference_lost"], conference["lost"], "{media}");
    lab.gateway.stop()?;
    Ok(())
}
