//! Dial-in end to end, against real Prosody, real SIP peers (SIPp, baresip behind Kamailio) and
//! the conference emulator (Jicofo + videobridge stand-in on aiortc). Every audio check is on the
//! audio itself: a tone's frequency and level at the far end.

use anyhow::{Context, Result};
use gateway_lab::audio::{self, Expect};
use gateway_lab::baresip::{Answer, Baresip};
use gateway_lab::capture::RtpCapture;
use gateway_lab::emulator::Participant;
use gateway_lab::gateway::GatewayOptions;
use gateway_lab::kamailio::RoomProxy;
use gateway_lab::paths;
use gateway_lab::scenario::{self, analyse, DialInLab};
use gateway_lab::sipp::{self, SippCall};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_jitsi-sip-gateway");
const CALLER_HZ: f64 = 440.0;
const ALICE_HZ: f64 = 600.0;
const BOB_HZ: f64 = 1100.0;
const CAROL_HZ: f64 = 900.0;
/// Every tone is sent at -12 dBFS peak; through G.711, Opus and the mixer each must arrive at
/// -30 dBFS or more, in at least 80 % of the seconds analysed.
const HEARD: Expect = Expect {
    min_level_dbfs: -30.0,
    min_coverage: 0.8,
};
const SILENT_DBFS: f64 = -50.0;
const T: Duration = Duration::from_secs(15);
/// The gateway's default `xmpp.pool_size`.
const POOL_SIZE: u64 = 2;

fn participants() -> Vec<Participant> {
    vec![
        Participant::tone("alice", ALICE_HZ),
        Participant::tone("bob", BOB_HZ),
    ]
}

/// The room header as jigasi names it by default.
fn keys<'a>(room: &'a str, pts: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("room_header", "Jitsi-Conference-Room"),
        ("room", room),
        ("caller", "alice"),
        ("caller_name", "Alice Example"),
        ("offer_pts", pts),
    ]
}

/// A pcap of the caller's tone (or of silence) in `dir/caller.pcap`.
fn caller_pcap(dir: &Path, hz: Option<f64>, secs: f64) -> Result<()> {
    let wav = dir.join("caller.wav");
    audio::write_tone_wav(
        &wav,
        hz.unwrap_or(CALLER_HZ),
        secs,
        8000,
        if hz.is_some() { -12.0 } else { -200.0 },
    )?;
    sipp::write_pcmu_pcap(&wav, &dir.join("caller.pcap"))
}

fn lab(name: &str, room: &str, gw: &GatewayOptions) -> Result<DialInLab> {
    let dir = paths::run_dir(name)?;
    DialInLab::start(Path::new(BIN), &dir, room, participants(), |_| {}, gw)
}

/// Sockets and tasks of an idle gateway, to compare with after a call: taken once its brewery is
/// in its room and its warm XMPP pool is full. Both log in in the background after start, and a
/// connection's task starts only at the end of its login, while its socket is open from the
/// beginning: taken earlier, the baseline could lack a task the gateway has at rest.
fn idle_baseline(lab: &DialInLab) -> Result<(usize, Value)> {
    let deadline = std::time::Instant::now() + T;
    loop {
        let (_, health) = lab.gateway.api_with_status("/about/health")?;
        let breweries = health["brewery"].as_array().cloned().unwrap_or_default();
        if !breweries.is_empty() && breweries.iter().all(|b| b["state"] == "joined") {
            // Read after the brewery was seen joined, so its connection's task is counted.
            return resources(lab);
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the brewery never joined: {health}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sockets and tasks of the gateway once its warm XMPP pool is full (the pool fills in the
/// background after start and after each call).
fn resources(lab: &DialInLab) -> Result<(usize, Value)> {
    let deadline = std::time::Instant::now() + T;
    loop {
        let r = lab.gateway.api("/debug/resources")?;
        if r["xmpp_idle"] == json!(POOL_SIZE) {
            return Ok((lab.gateway.open_sockets()?, r));
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the XMPP pool never filled: {r}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the gateway is back to `before` (calls end asynchronously after the last stanza).
fn back_to(lab: &mut DialInLab, before: &(usize, Value)) -> Result<()> {
    let deadline = std::time::Instant::now() + T;
    loop {
        let now = resources(lab)?;
        if now.0 == before.0
            && now.1["tasks"] == before.1["tasks"]
            && now.1["calls"] == json!(0)
            && now.1["xmpp_idle"] == json!(POOL_SIZE)
        {
            return Ok(());
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the gateway did not return to its idle resources: before {before:?}, now {now:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One SIPp call that the caller hangs up after `hold_ms`; returns (what the caller heard, what
/// the room heard, the emulator's session report).
fn sipp_call(
    lab: &mut DialInLab,
    caller_hz: Option<f64>,
    hold_ms: u64,
) -> Result<(PathBuf, PathBuf, Value)> {
    caller_pcap(&lab.dir, caller_hz, hold_ms as f64 / 1000.0 + 2.0)?;
    let room = lab.room.clone();
    let mut call = SippCall::start_with(
        &lab.dir,
        "dialin-call.xml",
        "room",
        &lab.gateway.sip_target(),
        hold_ms,
        &keys(&room, "0 8 101"),
    )?;
    let capture = RtpCapture::start(&lab.dir, "caller-rx", call.media_port)?;
    let nick = lab.gateway_joined()?;
    let sid = lab.session_connected(&nick)?;
    call.wait_success(Duration::from_secs(hold_ms / 1000 + 30))?;
    lab.emulator.control.wait_for(
        "session-terminated",
        json!({"sid": sid, "by": "gateway"}),
        T,
    )?;
    let (heard, packets) = capture.finish(&lab.dir.join("caller-rx.wav"))?;
    anyhow::ensure!(packets > 50, "the caller received only {packets} packets");
    let report = lab.emulator.request("status", Value::Null)?["report"].clone();
    let session = scenario::session(&report, &sid)?.clone();
    Ok((heard, scenario::session_recording(&report, &sid)?, session))
}

#[test]
fn a_sipp_caller_and_the_room_hear_each_other() -> Result<()> {
    let mut lab = lab("dialin-sipp-two-way", "twoway", &GatewayOptions::default())?;
    let idle = idle_baseline(&lab)?;
    let (caller_heard, room_heard, session) = sipp_call(&mut lab, Some(CALLER_HZ), 6000)?;

    let phone = analyse(&caller_heard, 1.5, &[ALICE_HZ, BOB_HZ, CALLER_HZ])?;
    phone
        .check_present(ALICE_HZ, HEARD)
        .context("alice on the phone")?;
    phone
        .check_present(BOB_HZ, HEARD)
        .context("bob on the phone")?;
    phone
        .check_absent(CALLER_HZ, SILENT_DBFS)
        .context("mix-minus: the caller must not hear itself")?;
    let room = analyse(&room_heard, 1.5, &[CALLER_HZ, ALICE_HZ])?;
    room.check_present(CALLER_HZ, HEARD)
        .context("the caller in the room")?;
    room.check_absent(ALICE_HZ, SILENT_DBFS)
        .context("the room must not get its own audio back")?;

    // What Jicofo and the bridge see of the gateway.
    assert_eq!(session["offer"]["contents"], json!(["audio"]), "{session}");
    assert_eq!(session["gateway"]["setup"], json!("active"), "{session}");
    assert!(
        session["rx"]["audio_levels"]["count"].as_u64().unwrap_or(0) > 100,
        "no ssrc-audio-level: {session}"
    );
    let occupant = lab.emulator.request("status", Value::Null)?["report"]["occupants"]
        .as_array()
        .and_then(|o| o.iter().find(|o| o["is_gateway"] == json!(true)).cloned())
        .context("no gateway occupant in the report")?;
    assert_eq!(
        occupant["display_name"],
        json!("Alice Example"),
        "{occupant}"
    );
    assert!(
        occupant["statuses"]
            .to_string()
            .contains("Initializing Call")
            && occupant["statuses"].to_string().contains("Connected"),
        "{occupant}"
    );
    back_to(&mut lab, &idle)?;
    lab.gateway.stop()?;
    Ok(())
}

#[test]
fn silencing_either_direction_fails_the_audio_check() -> Result<()> {
    // The caller sends silence: the room hears no 440 Hz.
    let mut lab = lab(
        "dialin-silent-caller",
        "silentcaller",
        &GatewayOptions::default(),
    )?;
    let (_, room_heard, _) = sipp_call(&mut lab, None, 4000)?;
    let room = analyse(&room_heard, 1.0, &[CALLER_HZ])?;
    assert!(
        room.check_present(CALLER_HZ, HEARD).is_err(),
        "a silent caller passed: {room}"
    );
    lab.gateway.stop()?;

    // The room is silent (no participant speaks): the phone hears neither tone.
    let dir = paths::run_dir("dialin-silent-room")?;
    let mut lab = DialInLab::start(
        Path::new(BIN),
        &dir,
        "silentroom",
        vec![
            Participant {
                level_dbfs: Some(-200.0),
                ..Participant::tone("quiet", ALICE_HZ)
            },
            Participant {
                level_dbfs: Some(-200.0),
                ..Participant::tone("mute", BOB_HZ)
            },
        ],
        |_| {},
        &GatewayOptions::default(),
    )?;
    let (caller_heard, _, _) = sipp_call(&mut lab, Some(CALLER_HZ), 4000)?;
    let phone = analyse(&caller_heard, 1.0, &[ALICE_HZ, BOB_HZ])?;
    assert!(
        phone.check_present(ALICE_HZ, HEARD).is_err()
            && phone.check_present(BOB_HZ, HEARD).is_err(),
        "a silent room passed: {phone}"
    );
    lab.gateway.stop()?;
    Ok(())
}

#[test]
fn baresip_behind_a_pbx_adding_the_room_header_hears_the_room() -> Result<()> {
    // docker-jitsi-meet's jigasi reads the room from X-Room-Name: configured here the same way.
    let gw = GatewayOptions::default().set("sip.room_header", "X-Room-Name");
    let mut lab = lab("dialin-baresip", "viapbx", &gw)?;
    let proxy = RoomProxy::start(&lab.dir, &lab.gateway.sip_target(), "X-Room-Name")?;
    let mic = lab.dir.join("baresip-440.wav");
    audio::write_tone_wav(&mic, CALLER_HZ, 30.0, 8000, -12.0)?;
    let mut phone = Baresip::start(&lab.dir, "carol", &mic, Answer::Manual)?;
    phone.command(&format!("dial {}", proxy.uri_for("viapbx")))?;
    phone.wait_event("CALL_ESTABLISHED", T)?;
    let nick = lab.gateway_joined()?;
    let sid = lab.session_connected(&nick)?;
    lab.wait_recorded(&sid, 5)?;
    phone.command("hangup")?;
    phone.wait_event("CALL_CLOSED", T)?;
    lab.emulator.control.wait_for(
        "session-terminated",
        json!({"sid": sid, "by": "gateway"}),
        T,
    )?;

    let heard = analyse(&phone.received_wav()?, 1.5, &[ALICE_HZ, BOB_HZ])?;
    heard.check_present(ALICE_HZ, HEARD)?;
    heard.check_present(BOB_HZ, HEARD)?;
    let report = lab.emulator.request("status", Value::Null)?["report"].clone();
    analyse(
        &scenario::session_recording(&report, &sid)?,
        1.5,
        &[CALLER_HZ],
    )?
    .check_present(CALLER_HZ, HEARD)?;
    phone.stop();
    lab.gateway.stop()?;
    Ok(())
}

#[test]
fn a_participant_added_mid_call_is_heard_on_the_phone_until_removed() -> Result<()> {
    let mut lab = lab("dialin-source-add", "sourceadd", &GatewayOptions::default())?;
    caller_pcap(&lab.dir, Some(CALLER_HZ), 20.0)?;
    let room = lab.room.clone();
    let mut call = SippCall::start_with(
        &lab.dir,
        "dialin-call.xml",
        "room",
        &lab.gateway.sip_target(),
        13_000,
        &keys(&room, "0"),
    )?;
    let capture = RtpCapture::start(&lab.dir, "caller-rx", call.media_port)?;
    let nick = lab.gateway_joined()?;
    let sid = lab.session_connected(&nick)?;
    lab.wait_recorded(&sid, 3)?;
    let added = lab.emulator.request(
        "add-participant",
        Participant::tone("carol", CAROL_HZ).command_args(&room),
    )?;
    let added_t = lab
        .emulator
        .control
        .wait_for("source-add-sent", json!({"sid": sid}), T)?["t"]
        .as_f64()
        .unwrap();
    lab.wait_recorded(&sid, 8)?;
    lab.emulator
        .request("remove-participant", json!({"name": "carol"}))?;
    let removed_t = lab
        .emulator
        .control
        .wait_for("source-remove-sent", json!({"sid": sid}), T)?["t"]
        .as_f64()
        .unwrap();
    call.wait_success(Duration::from_secs(40))?;
    let (heard, _) = capture.finish(&lab.dir.join("caller-rx.wav"))?;
    assert!(added["participant"]["ssrc"].is_u64());

    // The capture starts with the call; the emulator's clock maps to it through the first
    // session-accept. Margins of 1 s keep the transitions out of each window.
    let report = lab.emulator.request("status", Value::Null)?["report"].clone();
    let accepted_t = scenario::session(&report, &sid)?["t"]["accept_received"]
        .as_f64()
        .context("accept time")?;
    let rec = audio::Recording::read(&heard)?;
    let freqs = [ALICE_HZ, BOB_HZ, CAROL_HZ];
    let before = rec.slice(1.0, added_t - accepted_t).tones(&freqs);
    before
        .check_absent(CAROL_HZ, SILENT_DBFS)
        .context("carol before she joined")?;
    let during = rec
        .slice(added_t - accepted_t + 1.0, removed_t - accepted_t)
        .tones(&freqs);
    during
        .check_present(CAROL_HZ, HEARD)
        .context("carol after source-add")?;
    during.check_present(ALICE_HZ, HEARD)?;
    let after = rec
        .slice(removed_t - accepted_t + 1.0, rec.seconds())
        .tones(&freqs);
    after
        .check_absent(CAROL_HZ, SILENT_DBFS)
        .context("carol after source-remove")?;
    after.check_present(BOB_HZ, HEARD)?;
    lab.gateway.stop()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The hangup matrix: each way a call can end, what the other side saw, and nothing left behind.

/// Starts a call that only the gateway will end (SIPp waits for its BYE).
fn call_waiting_for_bye(lab: &mut DialInLab) -> Result<(SippCall, String, String)> {
    caller_pcap(&lab.dir, Some(CALLER_HZ), 60.0)?;
    let room = lab.room.clone();
    let call = SippCall::start_with(
        &lab.dir,
        "dialin-wait-bye.xml",
        "room",
        &lab.gateway.sip_target(),
        0,
        &keys(&room, "0"),
    )?;
    let nick = lab.gateway_joined()?;
    let sid = lab.session_connected(&nick)?;
    lab.wait_recorded(&sid, 1)?;
    Ok((call, nick, sid))
}

/// The Reason header of the BYE the gateway sent to SIPp.
fn bye_reason(call: &SippCall) -> Result<String> {
    let msgs = call.messages();
    let bye = msgs
        .iter()
        .find(|m| !m.sent && m.first_line().starts_with("BYE "))
        .context("SIPp received no BYE")?;
    Ok(bye
        .header("Reason")
        .context("BYE without a Reason header")?
        .to_string())
}

#[test]
fn caller_bye_terminates_the_jingle_session_and_leaves_the_room() -> Result<()> {
    let mut lab = lab("hangup-caller-bye", "callerbye", &GatewayOptions::default())?;
    let idle = idle_baseline(&lab)?;
    caller_pcap(&lab.dir, Some(CALLER_HZ), 6.0)?;
    let room = lab.room.clone();
    let mut call = SippCall::start_with(
        &lab.dir,
        "dialin-call.xml",
        "room",
        &lab.gateway.sip_target(),
        2000,
        &keys(&room, "0"),
    )?;
    let nick = lab.gateway_joined()?;
    let sid = lab.session_connected(&nick)?;
    call.wait_success(T)?;
    let ended = lab.emulator.control.wait_for(
        "session-terminated",
        json!({"sid": sid, "by": "gateway"}),
        T,
    )?;
    assert_eq!(ended["reason"], json!("success"), "{ended}");
    lab.emulator
        .control
        .wait_for("occupant-left", json!({"nick": nick}), T)?;
    back_to(&mut lab, &idle)?;
    lab.gateway.stop()?;
    Ok(())
}

#[test]
fn caller_cancel_while_ringing_gets_487_and_the_occupant_leaves() -> Result<()> {
    // No offer ever comes (the focus waits for more participants), so the call keeps ringing.
    let dir = paths::run_dir("hangup-cancel")?;
    let mut lab = DialInLab::start(
        Path::new(BIN),
        &dir,
        "cancel",
        participants(),
        |o| o.min_participants = 10,
        &GatewayOptions::default(),
    )?;
    let idle = idle_baseline(&lab)?;
    caller_pcap(&lab.dir, Some(CALLER_HZ), 2.0)?;
    let room = lab.room.clone();
    let mut call = SippCall::start_with(
        &lab.dir,
        "dialin-cancel.xml",
        "room",
        &lab.gateway.sip_target(),
        0,
        &keys(&room, "0"),
    )?;
    let nick = lab.gateway_joined()?;
    call.wait_success(T)?; // the scenario requires 200 to the CANCEL and 487 to the INVITE
    lab.emulator
        .control
        .wait_for("occupant-left", json!({"nick": nick}), T)?;
    back_to(&mut lab, &idle)?;
    lab.gateway.stop()?;
    Ok(())
}

/// Runs a call, makes `end` happen on the conference side, and checks the caller got a BYE whose
/// Reason carries `cause`, and that the gateway is back to idle (after `recover` brings back
/// what `end` took away).
fn conference_side_hangup(
    name: &str,
    gw: GatewayOptions,
    cause: u16,
    end: impl FnOnce(&mut DialInLab, &str, &str) -> Result<()>,
    recover: impl FnOnce(&mut DialInLab) -> Result<()>,
) -> Result<()> {
    let mut lab = lab(name, name.replace('-', "").as_str(), &gw)?;
    let idle = idle_baseline(&lab)?;
    let (mut call, nick, sid) = call_waiting_for_bye(&mut lab)?;
    end(&mut lab, &nick, &sid)?;
    call.wait_success(T)?;
    let reason = bye_reason(&call)?;
    assert!(
        reason.starts_with(&format!("SIP;cause={cause}")) && reason.contains("text="),
        "Reason: {reason}"
    );
    recover(&mut lab)?;
    back_to(&mut lab, &idle)?;
    lab.gateway.stop()?;
    Ok(())
}

#[test]
fn focus_session_terminate_without_reinvite_ends_the_call_with_reason_408() -> Result<()> {
    // jigasi keeps the phone for a re-invite until the invite timeout, then hangs up.
    let gw = GatewayOptions::default().env("JIGASI_JVB_TIMEOUT", "2000");
    conference_side_hangup(
        "hangup-focus-terminate",
        gw,
        408,
        |lab, nick, _| {
            lab.emulator.request(
                "terminate",
                json!({"occupant": nick, "reason": "success", "text": "bye"}),
            )?;
            Ok(())
        },
        |_| Ok(()),
    )
}

#[test]
fn a_kick_ends_the_call_with_bye_and_reason() -> Result<()> {
    conference_side_hangup(
        "hangup-kick",
        GatewayOptions::default(),
        403,
        |lab, nick, _| {
            lab.emulator
                .request("kick", json!({"occupant": nick, "reason": "behave"}))?;
            Ok(())
        },
        |_| Ok(()),
    )
}

#[test]
fn the_room_being_destroyed_ends_the_call_with_bye_and_reason() -> Result<()> {
    conference_side_hangup(
        "hangup-destroyed",
        GatewayOptions::default(),
        410,
        |lab, _, _| {
            let room = lab.room.clone();
            lab.emulator
                .request("destroy-room", json!({"room": room}))?;
            Ok(())
        },
        |_| Ok(()),
    )
}

#[test]
fn losing_the_xmpp_connection_ends_the_call_with_bye_and_reason() -> Result<()> {
    conference_side_hangup(
        "hangup-xmpp-lost",
        GatewayOptions::default(),
        503,
        |lab, _, _| {
            lab.prosody.stop();
            Ok(())
        },
        // The warm XMPP connections die with Prosody too; once it is back, the pool refills
        // and the gateway must be exactly where it was before the call.
        |lab| lab.prosody.restart(),
    )
}

#[test]
fn no_offer_within_the_invite_timeout_refuses_the_ringing_call_with_reason() -> Result<()> {
    let dir = paths::run_dir("hangup-no-offer")?;
    let gw = GatewayOptions::default().env("JIGASI_JVB_TIMEOUT", "1500");
    let mut lab = DialInLab::start(
        Path::new(BIN),
        &dir,
        "nooffer",
        participants(),
        |o| o.min_participants = 10,
        &gw,
    )?;
    let idle = idle_baseline(&lab)?;
    caller_pcap(&lab.dir, Some(CALLER_HZ), 2.0)?;
    let room = lab.room.clone();
    let mut call = SippCall::start_with(
        &lab.dir,
        "dialin-refused.xml",
        "room",
        &lab.gateway.sip_target(),
        0,
        &keys(&room, "0"),
    )?;
    let nick = lab.gateway_joined()?;
    call.wait_success(T)?;
    let last = final_response(&call)?;
    assert_eq!(last.status(), Some(408), "{}", last.text);
    assert!(
        last.header("Reason")
            .is_some_and(|r| r.contains("cause=408")),
        "{}",
        last.text
    );
    lab.emulator
        .control
        .wait_for("occupant-left", json!({"nick": nick}), T)?;
    back_to(&mut lab, &idle)?;
    lab.gateway.stop()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Calls refused before anything reaches XMPP.

/// Calls with `room_header: room` and an offer of `pts`, and checks the gateway refused the call
/// with `status` before anything reached XMPP (no occupant but the emulated ones ever joined).
fn assert_refused(name: &str, room_header: &str, room: &str, pts: &str, status: u16) -> Result<()> {
    assert_refused_by(
        name,
        &GatewayOptions::default(),
        room_header,
        room,
        pts,
        status,
    )
}

/// [`assert_refused`] with a gateway configured by `gw`.
fn assert_refused_by(
    name: &str,
    gw: &GatewayOptions,
    room_header: &str,
    room: &str,
    pts: &str,
    status: u16,
) -> Result<()> {
    let mut lab = lab(name, "refusals", gw)?;
    caller_pcap(&lab.dir, Some(CALLER_HZ), 2.0)?;
    let mut k = keys(room, pts);
    k[0].1 = room_header;
    let mut call = SippCall::start_with(
        &lab.dir,
        "dialin-refused.xml",
        "room",
        &lab.gateway.sip_target(),
        0,
        &k,
    )?;
    call.wait_success(T)?;
    let last = final_response(&call)?;
    assert_eq!(last.status(), Some(status), "{}", last.text);
    let events = lab.emulator.control.events().to_vec();
    let joined: Vec<_> = events
        .iter()
        .filter(|e| e["event"] == json!("occupant-joined") && e["emulated"] == json!(false))
        .collect();
    assert!(
        joined.is_empty(),
        "the gateway joined although it refused the call: {joined:?}"
    );
    lab.gateway.stop()?;
    Ok(())
}

/// The last final response SIPp received.
fn final_response(call: &SippCall) -> Result<sipp::SippMessage> {
    call.messages()
        .into_iter()
        .rfind(|m| !m.sent && m.status().is_some_and(|s| s >= 200))
        .context("no final response")
}

#[test]
fn without_a_room_header_or_default_room_the_call_gets_486() -> Result<()> {
    assert_refused("refuse-no-room", "X-Unrelated", "whatever", "0", 486)
}

#[test]
fn a_trunk_refuses_calls_from_outside_its_listed_peers_with_403() -> Result<()> {
    // SIPp calls from 127.0.0.1; the trunk only takes calls from the PBXs' networks.
    let trunk = GatewayOptions::default()
        .set("sip.register", "false")
        .set("sip.allowed_peers", "192.0.2.0/24, 2001:db8::/32");
    assert_refused_by(
        "refuse-peer",
        &trunk,
        "Jitsi-Conference-Room",
        "refusals",
        "0",
        403,
    )
}

#[test]
fn a_hostile_room_name_gets_400_and_no_presence_is_sent() -> Result<()> {
    assert_refused(
        "refuse-bad-room",
        "Jitsi-Conference-Room",
        "evil'/><presence",
        "0",
        400,
    )
}

#[test]
fn an_offer_with_only_unsupported_codecs_gets_488() -> Result<()> {
    // 18 = G.729 and 3 = GSM: static payload types we do not speak.
    assert_refused(
        "refuse-codecs",
        "Jitsi-Conference-Room",
        "codecs",
        "18 3",
        488,
    )
}
