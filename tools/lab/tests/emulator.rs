//! The conference emulator against a real Prosody, with the echo occupant standing in for the
//! gateway: the emulated participants' tones must come back, and the checks must fail when they
//! do not.

use anyhow::Result;
use gateway_lab::audio::Expect;
use gateway_lab::emulator::{EchoOptions, Participant};
use gateway_lab::scenario::{self, analyse, EchoRoom};
use gateway_lab::{net, paths};
use serde_json::json;
use std::time::Duration;

const ALICE_HZ: f64 = 600.0;
const BOB_HZ: f64 = 1100.0;
const CAROL_HZ: f64 = 900.0;
/// Participants play their tones at -12 dBFS peak; the echo must bring each back at -30 dBFS or
/// more, in at least 90 % of the seconds analysed.
const HEARD: Expect = Expect {
    min_level_dbfs: -30.0,
    min_coverage: 0.9,
};
/// A tone that should not be there must stay below this.
const SILENT_DBFS: f64 = -50.0;

fn participants() -> Vec<Participant> {
    vec![
        Participant::tone("alice", ALICE_HZ),
        Participant::tone("bob", BOB_HZ),
    ]
}

#[test]
fn the_emulator_hears_both_participants_echoed_back() -> Result<()> {
    let dir = paths::run_dir("emulator-echo")?;
    let mut room = EchoRoom::start(&dir, "echotest", participants(), EchoOptions::default())?;
    room.wait_recorded(5)?;
    let (report, echo_report) = room.finish()?;

    // Jicofo's offer shape, tailored to the features the occupant announced in disco#info.
    let session = scenario::session(&report, &room.sid)?;
    assert_eq!(session["is_gateway"], json!(true), "{session}");
    assert_eq!(session["offer"]["contents"], json!(["audio"]), "{session}");
    assert_eq!(session["gateway"]["setup"], json!("active"), "{session}");
    // The occupant received both participants' streams.
    let ssrcs: Vec<_> = report["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["ssrc"].clone())
        .collect();
    for ssrc in &ssrcs {
        let rx = scenario::echo_rx(&echo_report, ssrc);
        assert!(
            rx["packets"].as_u64().unwrap_or(0) > 100,
            "echo occupant got too little from {ssrc}: {echo_report}"
        );
    }

    let tones = analyse(
        &scenario::session_recording(&report, &room.sid)?,
        1.0,
        &[ALICE_HZ, BOB_HZ, 440.0],
    )?;
    assert!(tones.frames() >= 3, "too little recorded: {tones}");
    tones.check_present(ALICE_HZ, HEARD)?;
    tones.check_present(BOB_HZ, HEARD)?;
    tones.check_absent(440.0, SILENT_DBFS)?;
    Ok(())
}

#[test]
fn a_silent_echo_fails_the_tone_check() -> Result<()> {
    let dir = paths::run_dir("emulator-silent-echo")?;
    let opts = EchoOptions {
        silent: true,
        ..Default::default()
    };
    let mut room = EchoRoom::start(&dir, "silenttest", participants(), opts)?;
    room.wait_recorded(4)?;
    let (report, _) = room.finish()?;

    let tones = analyse(
        &scenario::session_recording(&report, &room.sid)?,
        1.0,
        &[ALICE_HZ, BOB_HZ],
    )?;
    assert!(
        tones.frames() >= 2,
        "the silent occupant still sends packets, so seconds are recorded: {tones}"
    );
    let alice = tones.check_present(ALICE_HZ, HEARD);
    let bob = tones.check_present(BOB_HZ, HEARD);
    assert!(
        alice.is_err() && bob.is_err(),
        "a silent echo passed the check: {tones}"
    );
    Ok(())
}

#[test]
fn an_occupant_that_ignores_disco_is_offered_audio_video_and_data() -> Result<()> {
    let dir = paths::run_dir("emulator-default-features")?;
    let opts = EchoOptions {
        no_disco: true,
        ..Default::default()
    };
    let mut room = EchoRoom::start(&dir, "discotest", participants(), opts)?;
    room.wait_recorded(3)?;
    let (report, _) = room.finish()?;

    // Jicofo assumes audio, video and SCTP when disco#info goes unanswered; the occupant still
    // gets audio through the one bundled transport.
    let session = scenario::session(&report, &room.sid)?;
    assert_eq!(
        session["offer"]["contents"],
        json!(["audio", "video", "data"]),
        "{session}"
    );
    let tones = analyse(
        &scenario::session_recording(&report, &room.sid)?,
        1.0,
        &[ALICE_HZ, BOB_HZ],
    )?;
    tones.check_present(ALICE_HZ, HEARD)?;
    tones.check_present(BOB_HZ, HEARD)?;
    Ok(())
}

#[test]
fn a_participant_added_mid_call_is_heard_until_removed() -> Result<()> {
    let dir = paths::run_dir("emulator-source-add")?;
    let mut room = EchoRoom::start(&dir, "addtest", participants(), EchoOptions::default())?;
    let t = Duration::from_secs(15);

    let before_add = room.wait_recorded(2)?["seconds"].as_f64().unwrap();
    room.emulator.request(
        "add-participant",
        Participant::tone("carol", CAROL_HZ).command_args("addtest"),
    )?;
    room.emulator
        .control
        .wait_for("source-add-sent", json!({"sid": room.sid}), t)?;
    let before_remove = room.wait_recorded(before_add as u64 + 4)?["seconds"]
        .as_f64()
        .unwrap();
    room.emulator
        .request("remove-participant", json!({"name": "carol"}))?;
    room.emulator
        .control
        .wait_for("source-remove-sent", json!({"sid": room.sid}), t)?;
    let end = room.wait_recorded(before_remove as u64 + 4)?["seconds"]
        .as_f64()
        .unwrap();
    let (report, _) = room.finish()?;

    let recording = scenario::session_recording(&report, &room.sid)?;
    let freqs = [ALICE_HZ, BOB_HZ, CAROL_HZ];
    // Margins of 1.5 s keep the echo path's latency out of each window.
    let with_carol = analyse_span(&recording, before_add + 1.5, before_remove, &freqs)?;
    with_carol.check_present(CAROL_HZ, HEARD)?;
    with_carol.check_present(ALICE_HZ, HEARD)?;
    let after_carol = analyse_span(&recording, before_remove + 1.5, end, &freqs)?;
    after_carol.check_absent(CAROL_HZ, SILENT_DBFS)?;
    after_carol.check_present(BOB_HZ, HEARD)?;
    let before_carol = analyse_span(&recording, 1.0, before_add, &freqs)?;
    before_carol.check_absent(CAROL_HZ, SILENT_DBFS)?;
    Ok(())
}

fn analyse_span(
    path: &std::path::Path,
    from: f64,
    to: f64,
    freqs: &[f64],
) -> Result<gateway_lab::audio::ToneReport> {
    let rec = gateway_lab::audio::Recording::read(path)?;
    let report = rec.slice(from, to).tones(freqs);
    anyhow::ensure!(
        report.frames() >= 1,
        "no whole second between {from} and {to} s ({} s recorded)",
        rec.seconds()
    );
    Ok(report)
}

#[test]
fn the_lab_listens_and_connects_on_loopback_only() -> Result<()> {
    let dir = paths::run_dir("emulator-loopback")?;
    let mut room = EchoRoom::start(&dir, "looptest", participants(), EchoOptions::default())?;
    let pgids = [
        room.prosody.pid(),
        room.emulator.proc.pid(),
        room.echo.proc.pid(),
    ];
    let sockets = net::sockets_of_groups(&pgids)?;
    assert!(
        sockets.len() >= 4,
        "expected Prosody's and the media sockets, found {sockets:?}"
    );
    let foreign: Vec<_> = sockets
        .iter()
        .filter(|s| !s.local_is_loopback() || !s.peer_is_loopback())
        .collect();
    assert!(foreign.is_empty(), "lab sockets off loopback: {foreign:?}");
    let (report, _) = room.finish()?;

    // Every ICE candidate the bridge offered is a loopback one.
    let session = scenario::session(&report, &room.sid)?;
    let candidates = session["offer"]["candidates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !candidates.is_empty(),
        "no candidates in the report: {session}"
    );
    for c in candidates {
        assert_eq!(c["ip"], json!("127.0.0.1"), "{c}");
    }
    Ok(())
}

#[test]
fn the_focus_mutes_and_terminates_the_occupant_as_jicofo_does() -> Result<()> {
    let dir = paths::run_dir("emulator-focus-commands")?;
    let mut room = EchoRoom::start(&dir, "cmdtest", participants(), EchoOptions::default())?;
    let t = Duration::from_secs(10);
    let nick = room.echo_nick.clone();

    let mute = room
        .emulator
        .request("mute", json!({"occupant": nick, "mute": true}))?;
    assert_eq!(mute["answer"]["type"], json!("result"), "{mute}");
    let seen = room.echo.control.wait_for("mute-received", json!({}), t)?;
    assert_eq!(seen["mute"], json!(true), "{seen}");

    room.emulator.request(
        "terminate",
        json!({"occupant": nick, "reason": "success", "text": "bye"}),
    )?;
    let ended = room
        .echo
        .control
        .wait_for("session-terminated", json!({"by": "focus"}), t)?;
    assert_eq!(
        (&ended["reason"], &ended["text"]),
        (&json!("success"), &json!("bye")),
        "{ended}"
    );
    room.emulator.control.wait_for(
        "session-terminated",
        json!({"sid": room.sid, "by": "emulator"}),
        t,
    )?;
    let (report, _) = room.finish()?;
    let session = scenario::session(&report, &room.sid)?;
    assert_eq!(
        session["termination"]["reason"],
        json!("success"),
        "{session}"
    );
    Ok(())
}

#[test]
fn the_focus_can_kick_an_occupant_and_destroy_the_room() -> Result<()> {
    let dir = paths::run_dir("emulator-kick-destroy")?;
    let mut room = EchoRoom::start(&dir, "kicktest", participants(), EchoOptions::default())?;
    let t = Duration::from_secs(10);
    let nick = room.echo_nick.clone();

    let kick = room
        .emulator
        .request("kick", json!({"occupant": nick, "reason": "bye"}))?;
    assert_eq!(kick["answer"]["type"], json!("result"), "{kick}");
    room.emulator
        .control
        .wait_for("occupant-left", json!({"nick": nick}), t)?;
    room.emulator.control.wait_for(
        "session-terminated",
        json!({"sid": room.sid, "by": "left"}),
        t,
    )?;

    let destroy = room
        .emulator
        .request("destroy-room", json!({"room": "kicktest"}))?;
    assert_eq!(destroy["answer"]["type"], json!("result"), "{destroy}");
    room.emulator.control.wait_for(
        "room-destroyed",
        json!({"room": "kicktest@muc.meet.jitsi"}),
        t,
    )?;
    room.finish()?;
    Ok(())
}
