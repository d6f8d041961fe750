//! The benchmark's conference side against the real thing: a lab Prosody, the gateway binary built
//! from this checkout, and concurrent SIPp callers into different rooms. Needs the lab (run it
//! in `tests/lab/in-netns.sh`) and `cargo build --bin jitsi-sip-gateway` first.

mod support;

// loadgen is a binary crate: its conference module is compiled into this test by path.
#[path = "../src/conference/mod.rs"]
mod conference;
#[allow(dead_code)]
#[path = "../src/procstat.rs"]
mod procstat;

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use conference::{Conference, ConferenceOptions, EndedBy, SpeakerSignal};
use gateway_lab::capture::RtpCapture;
use gateway_lab::gateway::{Gateway, GatewayOptions};
use gateway_lab::prosody::Prosody;
use gateway_lab::scenario::analyse;
use gateway_lab::sipp::{self, SippCall};
use gateway_lab::{audio, paths};

const CALLER_HZ: f64 = 440.0;
const SPEAKERS: usize = 3;
const HOLD: Duration = Duration::from_secs(6);

/// Concurrent calls: 4, or `BENCH_CALLS` to see how the conference side's CPU scales (the lab
/// gateway's 100 media ports allow 50).
fn calls() -> usize {
    std::env::var("BENCH_CALLS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(4)
}

/// A SIPp caller in `dir/call-<i>` (its own pcap and logs) into `room`, playing 440 Hz.
fn call(dir: &Path, i: usize, room: &str, target: &str) -> Result<SippCall> {
    let dir = dir.join(format!("call-{i}"));
    std::fs::create_dir_all(&dir)?;
    let wav = dir.join("caller.wav");
    audio::write_tone_wav(&wav, CALLER_HZ, HOLD.as_secs_f64() + 4.0, 8000, -12.0)?;
    sipp::write_pcmu_pcap(&wav, &dir.join("caller.pcap"))?;
    SippCall::start_with(
        &dir,
        "dialin-call.xml",
        "room",
        target,
        HOLD.as_millis() as u64,
        &[
            ("room_header", "Jitsi-Conference-Room"),
            ("room", room),
            ("caller", "bench"),
            ("caller_name", "Bench Caller"),
            ("offer_pts", "0 8 101"),
        ],
    )
}

#[test]
fn concurrent_calls_each_get_a_connected_session_that_hears_the_caller() -> Result<()> {
    let dir = paths::run_dir("bench-conference")?;
    let prosody = Prosody::start(&dir)?;
    // Two media threads, so sessions are spread over both; speech-like speakers, so the
    // gateway decodes what it would decode from browsers.
    let conference = Conference::start(ConferenceOptions {
        media_threads: 2,
        speaker_signal: SpeakerSignal::VoiceAndTone,
        ..ConferenceOptions::for_prosody(&prosody, SPEAKERS)
    })?;
    let calls_n = calls();
    let mut gw_opts = GatewayOptions::default();
    if calls_n > 40 {
        // Two media ports per call; the lab's default block has 100.
        gw_opts = gw_opts
            .env("JIGASI_PORT_MIN", "30000")
            .env("JIGASI_PORT_MAX", &(30_000 + 4 * calls_n).to_string());
    }
    let mut gateway = Gateway::start(&support::gateway_bin()?, &dir, &prosody, &gw_opts)?;
    // The brewery the focus created lets a gateway that can dial out be healthy too.
    gateway.wait_health(200, Duration::from_secs(15))?;

    let rooms: Vec<String> = (0..calls_n).map(|i| format!("bench{i}")).collect();
    // Each room's phone tone is known, but the last room's: that one finds it as the dominant
    // frequency.
    let (blind, told) = rooms.split_last().context("no calls")?;
    for room in told {
        conference.expect_tone(room, CALLER_HZ);
    }
    let mut calls = Vec::new();
    for (i, room) in rooms.iter().enumerate() {
        calls.push(call(&dir, i, room, &gateway.sip_target())?);
    }
    // What the first caller hears: the speakers, each on its own tone.
    let capture = RtpCapture::start(&dir, "caller-rx", calls[0].media_port)?;
    let all_connected = |s: &conference::Snapshot| {
        let n = rooms
            .iter()
            .filter(|r| s.session(r, None).is_some_and(|x| x.connected.is_some()))
            .count();
        (n == calls_n).then(|| s.clone())
    };
    let up = conference.wait_for(
        "every session connected",
        Duration::from_secs(30),
        all_connected,
    )?;
    // Half a second of what the first gateway sends, as a latency measurement would take it.
    let recording = conference
        .record(&rooms[0], Duration::from_millis(500))?
        .recv_timeout(Duration::from_secs(5))
        .context("no recording")?;
    ensure!(
        recording.frame_arrivals.len() == 25 && recording.samples.len() == 25 * 160,
        "recorded {} frames, {} samples",
        recording.frame_arrivals.len(),
        recording.samples.len()
    );
    // Until the first hangup every session is up: the steady state, without setup costs.
    let first_end =
        conference.wait_for("a session ending", HOLD + Duration::from_secs(30), |s| {
            s.sessions
                .iter()
                .any(|x| x.ended.is_some())
                .then(|| s.clone())
        })?;
    for c in &mut calls {
        c.wait_success(HOLD + Duration::from_secs(30))?;
    }
    let (heard, _) = capture.finish(&dir.join("caller-rx.wav"))?;
    let phone = analyse(&heard, 1.5, conference.speaker_tones())?;
    let levels: Vec<String> = conference
        .speaker_tones()
        .iter()
        .map(|&hz| format!("{hz} Hz at {:.1} dBFS", phone.level_dbfs(hz)))
        .collect();
    println!("the first phone heard the speakers: {}", levels.join(", "));
    for &hz in conference.speaker_tones() {
        phone
            .check_present(
                hz,
                audio::Expect {
                    min_level_dbfs: -30.0,
                    min_coverage: 0.8,
                },
            )
            .with_context(|| format!("speaker at {hz} Hz on the first phone"))?;
    }
    // The callers hung up: the gateway ends each session (terminate, then leaves the room).
    let snap = conference.wait_for("every session ended", Duration::from_secs(15), |s| {
        let ended = rooms
            .iter()
            .filter(|r| s.session(r, None).is_some_and(|x| x.ended.is_some()))
            .count();
        (ended == calls_n).then(|| s.clone())
    })?;

    for room in &rooms {
        let s = snap.session(room, None).context("no session")?;
        let rx = &s.rx;
        println!(
            "{room}: from session-initiate: answered {:?}, transport-info {:?}, accept {:?}, connected {:?}; rx {} of {} packets, {} late (max gap {:?}), tone {:?}, tx {} packets, datagrams in/out {:?}, ended {:?}",
            s.initiate_answer
                .as_ref()
                .and_then(|a| a.as_ref().ok())
                .map(|t| *t - s.initiate_sent),
            s.transport_info.map(|t| t - s.initiate_sent),
            s.accepted.map(|t| t - s.initiate_sent),
            s.connected.map(|c| c - s.initiate_sent),
            rx.packets,
            rx.expected,
            rx.late,
            rx.max_interarrival,
            s.tone.as_ref().map(|t| (t.dbfs, t.dominant, t.rms_dbfs)),
            s.tx_packets,
            s.datagrams,
            s.ended.as_ref().map(|e| &e.1),
        );
        ensure!(
            s.initiate_answer.as_ref().is_some_and(|a| a.is_ok()),
            "{s:#?}"
        );
        ensure!(s.accepted.is_some(), "no session-accept: {s:#?}");
        // The caller's tone, through G.711, the gateway's Opus at 8 kHz, and ours.
        let tone = s.tone.as_ref().context("no complete second of audio")?;
        let level = if room == blind {
            let (hz, level) = tone.dominant.context("no dominant frequency")?;
            ensure!((hz - CALLER_HZ).abs() <= 2.0, "{room}: dominant {hz} Hz");
            level
        } else {
            tone.dbfs.unwrap_or(f64::NEG_INFINITY)
        };
        ensure!(
            level >= -30.0,
            "{room}: {CALLER_HZ} Hz at {level:.1} dBFS: {s:#?}"
        );
        ensure!(
            rx.expected as f64 >= 0.9 * 50.0 * HOLD.as_secs_f64(),
            "{room}: the gateway sent for too short a time: {rx:?}"
        );
        ensure!(
            rx.packets as f64 >= 0.9 * rx.expected as f64,
            "{room}: {} of {} packets",
            rx.packets,
            rx.expected
        );
        // The speakers reached the gateway: a loaded machine may make us skip a few frames.
        ensure!(
            s.tx_packets as f64 >= 0.9 * (SPEAKERS * 50) as f64 * HOLD.as_secs_f64()
                && s.tx_skipped * 20 <= s.tx_packets,
            "{room}: {s:#?}"
        );
        ensure!(
            matches!(s.ended, Some((_, EndedBy::Gateway(_) | EndedBy::Left))),
            "{room}: {:?}",
            s.ended
        );
    }
    ensure!(
        snap.errors.is_empty(),
        "conference errors: {:?}",
        snap.errors
    );
    let per = snap.cpu_per_session_second().unwrap_or(0.0);
    println!(
        "conference side CPU, {calls_n} calls of {HOLD:?} with {SPEAKERS} speakers: {:?} XMPP + {:?} media for {:.1} session-seconds = {:.2} ms per session-second, setup included",
        snap.cpu.xmpp,
        snap.cpu.media,
        snap.session_seconds(),
        per * 1e3,
    );
    let steady_cpu = first_end.cpu.total().saturating_sub(up.cpu.total());
    let steady_s = first_end.session_seconds() - up.session_seconds();
    if steady_s > 0.0 {
        let per = steady_cpu.as_secs_f64() / steady_s;
        println!(
            "  steady state (all {calls_n} up): {steady_cpu:?} for {steady_s:.1} session-seconds = {:.2} ms per session-second ({:.3} % of a core per session)",
            per * 1e3,
            per * 100.0
        );
    }
    let started = Instant::now();
    conference.stop();
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "stopping took too long"
    );
    gateway.stop()?;
    Ok(())
}
