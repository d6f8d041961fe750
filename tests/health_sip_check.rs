//! jigasi's periodic SIP health check (`JIGASI_HEALTH_CHECK_SIP_URI`) end to end: the gateway,
//! without a SIP account, calls a SIPp callee straight at its address; `/about/health` follows
//! what the checks find. Real Prosody and the conference emulator as Jicofo (it makes the
//! brewery room, without which the gateway is never healthy). Run inside the lab namespace:
//! `tests/lab/in-netns.sh cargo test --offline --test health_sip_check`.

use anyhow::{Context, Result};
use gateway_lab::audio;
use gateway_lab::emulator::{self, EmulatorOptions, PyService};
use gateway_lab::gateway::{Gateway, GatewayOptions};
use gateway_lab::prosody::Prosody;
use gateway_lab::sipp::{self, SippCall, SippMessage};
use gateway_lab::{net, paths};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_jitsi-sip-gateway");
const T: Duration = Duration::from_secs(20);
/// A check that waits for RTP takes 10 s after the answer; then some slack.
const CHECK: Duration = Duration::from_secs(25);
const PASSED: &str = "SIP health check passed";
const FAILED: &str = "SIP health check failed";

struct Lab {
    dir: PathBuf,
    prosody: Prosody,
    emulator: PyService,
}

impl Lab {
    fn start(name: &str) -> Result<Self> {
        let dir = paths::run_dir(name)?;
        let prosody = Prosody::start(&dir)?;
        let opts = EmulatorOptions {
            rooms: Vec::new(),
            participants: Vec::new(),
            min_participants: 2,
            focus_component: true,
        };
        let mut emulator = emulator::start_emulator(&prosody, &dir, &opts)?;
        let status = emulator.request("status", json!({}))?;
        anyhow::ensure!(
            status["report"]["brewery"]["joined_t"].is_number(),
            "the emulator is not in the brewery: {status}"
        );
        Ok(Self {
            dir,
            prosody,
            emulator,
        })
    }

    /// A gateway checking `sip:check@127.0.0.1:<port>`, configured the docker way, every
    /// `interval_ms`.
    fn gateway(&self, port: u16, interval_ms: u64) -> Result<Gateway> {
        let opts = GatewayOptions::default()
            .env("JIGASI_HEALTH_CHECK_SIP_URI", &target(port))
            .env("JIGASI_HEALTH_CHECK_INTERVAL", &interval_ms.to_string());
        Gateway::start(Path::new(BIN), &self.dir, &self.prosody, &opts)
    }

    /// Prepares the folder of a SIPp callee running `scenario` with the `answer.pcap` it plays:
    /// a 700 Hz µ-law tone of `seconds`.
    fn callee_folder_with_audio(&self, scenario: &str, seconds: f64) -> Result<()> {
        let folder = self.dir.join(scenario.trim_end_matches(".xml"));
        std::fs::create_dir_all(&folder)?;
        let wav = folder.join("answer.wav");
        audio::write_tone_wav(&wav, 700.0, seconds, 8000, -12.0)?;
        sipp::write_pcmu_pcap(&wav, &folder.join("answer.pcap"))
    }

    fn stop(mut self) {
        self.emulator.proc.stop();
        self.prosody.stop();
    }
}

fn target(port: u16) -> String {
    format!("sip:check@127.0.0.1:{port}")
}

/// Polls `/about/health` until `pred` holds for its status and body; returns the body.
fn wait_health_where(
    gw: &Gateway,
    what: &str,
    timeout: Duration,
    pred: impl Fn(u16, &Value) -> bool,
) -> Result<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, body) = gw.api_with_status("/about/health")?;
        if pred(status, &body) {
            return Ok(body);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "no {what} within {timeout:?}: last {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn message(line: &Value) -> &str {
    line["message"].as_str().unwrap_or("")
}

/// The first message SIPp sent or received that starts with `start`.
fn find<'a>(messages: &'a [SippMessage], sent: bool, start: &str) -> Option<&'a SippMessage> {
    messages
        .iter()
        .find(|m| m.sent == sent && m.first_line().starts_with(start))
}

/// The port of our SDP offer's audio stream.
fn offered_port(invite: &SippMessage) -> Option<u16> {
    let line = invite.text.lines().find(|l| l.starts_with("m=audio "))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn a_callee_that_answers_with_audio_passes_the_check_and_is_hung_up() -> Result<()> {
    let lab = Lab::start("health-sip-check-passes")?;
    lab.callee_folder_with_audio("sip-uas-answer-audio.xml", 15.0)?;
    let (mut callee, port) = SippCall::uas(&lab.dir, "sip-uas-answer-audio.xml")?;
    let mut gw = lab.gateway(port, 600_000)?;

    let passed = gw.wait_log("the check's result", CHECK, |l| message(l) == PASSED)?;
    assert_eq!(passed["uri"], json!(target(port)), "{passed}");
    // On loopback the answer is immediate and SIPp starts playing right after the ACK.
    for figure in ["answer_ms", "rtp_ms"] {
        let ms = passed[figure].as_u64().context(figure)?;
        assert!(ms < 2000, "{figure} = {ms}: {passed}");
    }
    let health = gw.wait_health(200, T)?;
    let check = &health["sip_health_check"];
    assert_eq!(check["state"], json!("passing"), "{health}");
    assert_eq!(check["target"], json!(target(port)), "{health}");
    assert_eq!(check["last"]["result"], json!("success"), "{health}");
    assert_eq!(check["last"]["rtp_ms"], passed["rtp_ms"], "{health}");
    assert_eq!(
        (check["checks"].as_u64(), check["failures"].as_u64()),
        (Some(1), Some(0))
    );
    assert_eq!(health["problems"], json!([]), "{health}");
    assert_eq!(health["sip_registration"]["state"], json!("disabled"));

    // The callee got a BYE (the scenario ends with it), long before its audio ran out.
    callee.wait_success(T)?;
    let messages = callee.messages();
    let invite = find(&messages, false, "INVITE ").context("no INVITE")?;
    assert!(
        invite
            .first_line()
            .starts_with(&format!("INVITE {}", target(port))),
        "{}",
        invite.text
    );
    // Our offer: G.711 on a port of the media range.
    let rtp_port = offered_port(invite).context("no m=audio in the offer")?;
    assert!(
        (gw.media_ports.0..=gw.media_ports.1).contains(&rtp_port),
        "offer port {rtp_port} outside {:?}",
        gw.media_ports
    );
    assert!(
        invite.text.contains("a=rtpmap:0 PCMU/8000"),
        "{}",
        invite.text
    );
    let ok = find(&messages, true, "SIP/2.0 200").context("no 200 OK")?;
    let bye = find(&messages, false, "BYE ").context("no BYE")?;
    assert!(
        bye.time - ok.time < 5.0,
        "BYE {:.1} s after the answer",
        bye.time - ok.time
    );
    assert_eq!(bye.header("Reason"), None, "a passed check ends plainly");
    gw.stop()?;
    lab.stop();
    Ok(())
}

/// The same silent callee as below, but echoing the RTP it receives: it passes only because the
/// gateway sends audio once answered (as jigasi plays a prompt: echo targets and NATs need it).
#[test]
fn a_callee_that_only_echoes_passes_on_the_gateway_s_own_audio() -> Result<()> {
    let lab = Lab::start("health-sip-check-echo")?;
    let port = net::free_udp_tcp_port()?;
    let mut callee = SippCall::uas_on(&lab.dir, "sip-uas-answer.xml", port, &["-rtp_echo"])?;
    let mut gw = lab.gateway(port, 600_000)?;
    let passed = gw.wait_log("the check's result", CHECK, |l| message(l) == PASSED)?;
    let rtp_ms = passed["rtp_ms"].as_u64().context("rtp_ms")?;
    assert!(rtp_ms < 1000, "the echo came {rtp_ms} ms after the answer");
    let health = gw.wait_health(200, T)?;
    assert_eq!(
        health["sip_health_check"]["state"],
        json!("passing"),
        "{health}"
    );
    callee.wait_success(T)?;
    gw.stop()?;
    lab.stop();
    Ok(())
}

#[test]
fn a_callee_that_answers_without_audio_fails_the_check_10_s_after_the_answer() -> Result<()> {
    let lab = Lab::start("health-sip-check-no-rtp")?;
    let (mut callee, port) = SippCall::uas(&lab.dir, "sip-uas-answer.xml")?;
    let mut gw = lab.gateway(port, 600_000)?;

    // While the first check waits for RTP, it is pending: no problem yet.
    let health = gw.wait_health(200, Duration::from_secs(8))?;
    assert_eq!(
        health["sip_health_check"]["state"],
        json!("pending"),
        "{health}"
    );
    assert_eq!(
        health["sip_health_check"]["running"],
        json!(true),
        "{health}"
    );

    let failed = gw.wait_log("the check's result", CHECK, |l| message(l) == FAILED)?;
    assert_eq!(
        failed["reason"],
        json!("no RTP within 10 s of the answer"),
        "{failed}"
    );
    let health = gw.wait_health(500, T)?;
    let expected = format!(
        "SIP health check to {}: no RTP within 10 s of the answer (no success yet)",
        target(port)
    );
    assert_eq!(health["problems"], json!([expected]), "{health}");
    let check = &health["sip_health_check"];
    assert_eq!(check["state"], json!("failed"), "{health}");
    assert_eq!(check["last"]["result"], json!("failure"), "{health}");
    assert!(check["last"]["answer_ms"].is_u64(), "{health}");

    // The BYE came 10 s after the callee's 200 OK, saying why.
    callee.wait_success(T)?;
    let messages = callee.messages();
    let ok = find(&messages, true, "SIP/2.0 200").context("no 200 OK")?;
    let bye = find(&messages, false, "BYE ").context("no BYE")?;
    let waited = bye.time - ok.time;
    assert!(
        (9.8..12.0).contains(&waited),
        "BYE {waited:.2} s after the answer"
    );
    let reason = bye.header("Reason").context("no Reason on the BYE")?;
    assert!(reason.contains("cause=408"), "{reason}");
    gw.stop()?;
    lab.stop();
    Ok(())
}

#[test]
fn a_refusing_callee_fails_the_check_and_a_later_answer_with_audio_recovers_it() -> Result<()> {
    let lab = Lab::start("health-sip-check-recovers")?;
    lab.callee_folder_with_audio("sip-uas-answer-audio.xml", 15.0)?;
    let port = net::free_udp_tcp_port()?;
    let mut busy = SippCall::uas_on(&lab.dir, "sip-uas-busy.xml", port, &[])?;
    // The retry comes after the interval here, not jigasi's 60 s: checks at 0, 8, 16 s… The
    // first is refused; the callee at that address answers with audio from the second on.
    let mut gw = lab.gateway(port, 8000)?;

    let failed = gw.wait_log("the first check's result", CHECK, |l| message(l) == FAILED)?;
    assert_eq!(failed["status"], json!(486), "{failed}");
    assert_eq!(
        failed["reason"],
        json!("refused: 486 Busy Here"),
        "{failed}"
    );
    let expected = format!(
        "SIP health check to {}: refused: 486 Busy Here (no success yet)",
        target(port)
    );
    // Until the next check; the brewery may still be joining.
    let health = wait_health_where(&gw, "the refusal in /about/health", T, |status, body| {
        status == 500
            && body["problems"]
                .as_array()
                .is_some_and(|p| p.contains(&json!(expected)))
    })?;
    assert_eq!(
        health["sip_health_check"]["state"],
        json!("failed"),
        "{health}"
    );
    assert_eq!(
        health["sip_health_check"]["last"]["status"],
        json!(486),
        "{health}"
    );
    busy.wait_success(T)?;

    // The same address now answers with audio: the next check passes and health is back.
    let mut callee = SippCall::uas_on(&lab.dir, "sip-uas-answer-audio.xml", port, &[])?;
    gw.wait_log("a passed check", CHECK, |l| message(l) == PASSED)?;
    let health = gw.wait_health(200, T)?;
    let check = &health["sip_health_check"];
    assert_eq!(check["state"], json!("passing"), "{health}");
    assert!(check["failures"].as_u64() >= Some(1), "{health}");
    assert!(check["checks"].as_u64() >= Some(2), "{health}");
    callee.wait_success(T)?;
    gw.stop()?;
    lab.stop();
    Ok(())
}
