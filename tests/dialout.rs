//! Dial-out end to end, and the gateway's SIP account at a real registrar: real Prosody, the
//! conference emulator standing in for Jicofo (its brewery and Rayo `<dial/>`/`<hangup/>`) and the
//! videobridge, the lab Kamailio as registrar and outbound proxy with digest auth, and real SIP
//! peers (baresip registered there, SIPp reached through it). Audio checks are on the audio: a
//! tone's frequency and level at the far end. Run inside the lab namespace:
//! `tests/lab/in-netns.sh cargo test --offline --test dialout`.

use anyhow::{anyhow, Context, Result};
use gateway_lab::audio::{self, Expect};
use gateway_lab::baresip::{Answer, Baresip};
use gateway_lab::emulator::Participant;
use gateway_lab::gateway::GatewayOptions;
use gateway_lab::paths;
use gateway_lab::scenario::{self, analyse, DialOutLab};
use gateway_lab::sipp::{self, SippCall, SippMessage};
use jitsi_sip_gateway::config::Host;
use jitsi_sip_gateway::xmpp::{
    ConnectOptions, Connection, Direction, Element, Inbound, IqError, IqKind, JoinRequest, Login,
    RoomJid, Tls, XmppTimeouts,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_jitsi-sip-gateway");
/// The room's emulated participants.
const ANN_HZ: f64 = 600.0;
const CAROL_HZ: f64 = 1100.0;
/// What the phone's microphone plays.
const PHONE_HZ: f64 = 440.0;
/// What a callee plays as early media, before it answers.
const EARLY_HZ: f64 = 800.0;
/// Every tone is sent at -12 dBFS peak; through G.711, Opus and the mixer each must arrive at
/// -30 dBFS or more in at least 80 % of the seconds analysed (as in the dial-in tests).
const HEARD: Expect = Expect {
    min_level_dbfs: -30.0,
    min_coverage: 0.8,
};
const SILENT_DBFS: f64 = -50.0;
const T: Duration = Duration::from_secs(15);
const MUC: &str = "muc.meet.jitsi";
const BREWERY: &str = "jigasibrewery@internal-muc.meet.jitsi";
/// How long a failed dial-out shows its status in the room before leaving (jigasi's 5 s).
const LINGER_S: f64 = 5.0;

fn participants() -> Vec<Participant> {
    vec![
        Participant::tone("ann", ANN_HZ),
        Participant::tone("carol", CAROL_HZ),
    ]
}

fn lab(name: &str, room: &str, sip_password: &str, gw: &GatewayOptions) -> Result<DialOutLab> {
    let dir = paths::run_dir(name)?;
    DialOutLab::start(Path::new(BIN), &dir, room, participants(), sip_password, gw)
}

/// A baresip phone registered as `user` at the lab registrar, its microphone playing the phone
/// tone; returns once the registrar has its binding.
fn phone(lab: &mut DialOutLab, user: &str, password: &str, answer: Answer) -> Result<Baresip> {
    let mic = lab.dir.join(format!("{user}-mic.wav"));
    audio::write_tone_wav(&mic, PHONE_HZ, 60.0, 8000, -12.0)?;
    let phone =
        Baresip::start_registered(&lab.dir, user, password, lab.registrar.port, &mic, answer)?;
    lab.registrar.wait_aor(user, true, T)?;
    Ok(phone)
}

/// A dial-out call in progress, as the room saw it.
struct Call {
    dial_id: u64,
    nick: String,
    /// The emulator's session with the call's occupant.
    sid: String,
    /// The `occupant-joined` event of the call's occupant.
    joined: Value,
    /// The `dial-answered` event.
    answered: Value,
}

/// The room dials bob (registered at the lab registrar) with `headers`; bob answers (after
/// ringing, when `answer` is manual); returns once the gateway says "Connected" and its bridge
/// session is media-connected.
fn dial_bob(
    lab: &mut DialOutLab,
    bob: &mut Baresip,
    answer: Answer,
    headers: &[(&str, &str)],
) -> Result<Call> {
    lab.registrar.wait_aor("gateway", true, T)?;
    let dial_id = lab.dial("bob", headers, json!({}))?;
    let joined = lab.gateway_joined()?;
    let nick = joined["nick"]
        .as_str()
        .ok_or_else(|| anyhow!("no nick in {joined}"))?
        .to_string();
    let answered = lab.dial_answered(dial_id)?;
    if answer == Answer::Manual {
        bob.wait_event("CALL_INCOMING", T)?;
        lab.wait_status(&nick, "ringing", T)?;
        bob.command("accept")?;
    }
    bob.wait_event("CALL_ESTABLISHED", T)?;
    lab.wait_status(&nick, "Connected", T)?;
    let sid = lab.session_connected(&nick)?;
    Ok(Call {
        dial_id,
        nick,
        sid,
        joined,
        answered,
    })
}

/// Waits until the gateway has no call left (calls end asynchronously after the last stanza).
fn no_calls_left(lab: &DialOutLab) -> Result<()> {
    let deadline = Instant::now() + T;
    loop {
        let r = lab.gateway.api("/debug/resources")?;
        if r["calls"] == json!(0) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "a call remains: {r}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The emulator's `t` of the first event `kind` whose fields include `fields`.
fn event_t(lab: &mut DialOutLab, kind: &str, fields: Value) -> Option<f64> {
    lab.emulator
        .control
        .events()
        .iter()
        .find(|e| {
            e["event"] == json!(kind)
                && fields
                    .as_object()
                    .is_some_and(|f| f.iter().all(|(k, v)| &e[k] == v))
        })
        .and_then(|e| e["t"].as_f64())
}

/// The emulator time at which session `sid`'s recording starts: each `rx-audio` event says how
/// many whole seconds it held at its time, so the earliest `t - seconds` is the start (plus the
/// event's small lag).
fn recording_start(lab: &mut DialOutLab, sid: &str) -> Option<f64> {
    lab.emulator
        .control
        .events()
        .iter()
        .filter(|e| e["event"] == json!("rx-audio") && e["sid"] == json!(sid))
        .filter_map(|e| Some(e["t"].as_f64()? - e["seconds"].as_f64()?))
        .reduce(f64::min)
}

/// The session's recording from the emulator, and how many seconds of it to skip so that only
/// the time after the callee answered (plus a second and a half of start-up) is analysed: the
/// bridge leg connects before the callee is even invited.
fn room_recording(lab: &mut DialOutLab, call: &Call) -> Result<(PathBuf, f64)> {
    let report = lab.emulator.request("status", Value::Null)?["report"].clone();
    let start = recording_start(lab, &call.sid).context("no audio recorded")?;
    let connected = event_t(
        lab,
        "occupant-status",
        json!({"nick": call.nick, "status": "Connected"}),
    )
    .context("no Connected status")?;
    Ok((
        scenario::session_recording(&report, &call.sid)?,
        (connected - start).max(0.0) + 1.5,
    ))
}

/// `expected` appear in `statuses` in this order (others may come between).
fn in_order(statuses: &[String], expected: &[&str]) -> bool {
    let mut rest = statuses.iter();
    expected.iter().all(|want| rest.any(|s| s == want))
}

/// Matches the emulator's event for the gateway's brewery stats saying this load.
fn brewery_load(nick: &str, conferences: u64, participants: u64) -> impl Fn(&Value) -> bool {
    let nick = nick.to_string();
    move |e: &Value| {
        e["event"] == json!("brewery-occupant")
            && e["nick"] == json!(nick)
            && e["stats"]["conferences"] == json!(conferences)
            && e["stats"]["participants"] == json!(participants)
    }
}

fn received<'a>(messages: &'a [SippMessage], start: &str) -> Option<&'a SippMessage> {
    messages
        .iter()
        .find(|m| !m.sent && m.first_line().starts_with(start))
}

#[test]
fn a_dialled_phone_rings_answers_hears_the_room_and_a_rayo_hangup_sends_it_bye() -> Result<()> {
    let mut lab = lab(
        "dialout-room-hangup",
        "dialout",
        "gatewaypw",
        &GatewayOptions::default(),
    )?;
    let mut bob = phone(&mut lab, "bob", "bobpw", Answer::Manual)?;
    let initiator = ("X-Outbound-Call-Initiator-User", "moderator@meet.jitsi");
    let call = dial_bob(&mut lab, &mut bob, Answer::Manual, &[initiator])?;
    let room_jid = format!("{}@{MUC}", lab.room);

    // Jicofo got a ref naming the call's occupant, which presents itself as a dial-out to bob.
    let a = &call.answered;
    assert_eq!(a["answer"]["type"], json!("result"), "{a}");
    assert_eq!(
        a["answer"]["uri"],
        json!(format!("xmpp:{room_jid}/{}", call.nick)),
        "{a}"
    );
    assert_eq!(a["jicofo_answer"]["type"], json!("result"), "{a}");
    let j = &call.joined;
    assert_eq!(j["call_direction"], json!("out"), "{j}");
    assert_eq!(j["display_name"], json!("bob"), "{j}");
    assert_eq!(j["is_gateway"], json!(true), "{j}");
    assert_eq!(
        j["initiator_headers"][initiator.0],
        json!(initiator.1),
        "{j}"
    );

    // Jicofo balances on the brewery stats: the call's room and its members count.
    // ann, carol and the call (the focus does not count).
    let load = brewery_load(&lab.brewery_nick, 1, 3);
    lab.emulator
        .control
        .wait_event("the call in the brewery stats", T, load)?;

    lab.wait_recorded(&call.sid, 8)?;
    // The operator's view of it: one dial-out, connected, its setup (dial → bob's 200 OK).
    let stats = lab.gateway.api("/about/stats")?;
    let live = &stats["live_calls"][0];
    assert_eq!(
        (&live["direction"], &live["state"]),
        (&json!("out"), &json!("connected")),
        "{stats}"
    );
    assert_eq!(stats["setup_ms"]["dial_out"]["count"], json!(1), "{stats}");
    assert_eq!(stats["setup_ms"]["dial_in"]["count"], json!(0), "{stats}");
    let r = lab.emulator.request(
        "hangup",
        json!({"occupant": call.nick, "room": lab.room.clone()}),
    )?;
    assert_eq!(r["answer"]["type"], json!("result"), "{r}");
    bob.wait_event("CALL_CLOSED", T)?;
    lab.emulator
        .control
        .wait_for("occupant-left", json!({"nick": call.nick}), T)?;

    // What bob's phone received: the INVITE through the proxy with the room, the direction and
    // the Rayo header; then a BYE.
    let messages = bob.sip_messages();
    let invite = received(&messages, "INVITE ").context("bob received no INVITE")?;
    assert_eq!(
        invite.header("Jitsi-Conference-Room"),
        Some(room_jid.as_str()),
        "{}",
        invite.text
    );
    assert_eq!(
        invite.header("JigasiCallDirection"),
        Some("out"),
        "{}",
        invite.text
    );
    assert_eq!(
        invite.header(initiator.0),
        Some(initiator.1),
        "{}",
        invite.text
    );
    assert!(
        received(&messages, "BYE ").is_some(),
        "bob received no BYE: {messages:#?}"
    );
    // The proxy challenged the first INVITE (407) and relayed the second to bob.
    let invites: Vec<String> = lab
        .registrar
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("INVITE "))
        .collect();
    assert_eq!(invites.len(), 2, "{invites:?}");
    assert!(
        invites
            .iter()
            .all(|r| r.starts_with("INVITE sip:bob@sip.lab.test ")),
        "{invites:?}"
    );

    // What the web UI showed while the call was set up.
    let statuses = lab.statuses(&call.nick);
    assert!(
        in_order(
            &statuses,
            &["Initializing Call", "calling", "ringing", "Connected"]
        ),
        "{statuses:?}"
    );

    // Audio both ways, each side without its own.
    let (recording, skip) = room_recording(&mut lab, &call)?;
    let room = analyse(&recording, skip, &[PHONE_HZ, ANN_HZ])?;
    room.check_present(PHONE_HZ, HEARD)
        .context("bob in the room")?;
    room.check_absent(ANN_HZ, SILENT_DBFS)
        .context("the room must not get its own audio back")?;
    let heard = analyse(&bob.received_wav()?, 1.5, &[ANN_HZ, CAROL_HZ, PHONE_HZ])?;
    heard
        .check_present(ANN_HZ, HEARD)
        .context("ann on bob's phone")?;
    heard
        .check_present(CAROL_HZ, HEARD)
        .context("carol on bob's phone")?;
    heard
        .check_absent(PHONE_HZ, SILENT_DBFS)
        .context("mix-minus: bob must not hear himself")?;

    // Figures for the report (the emulator's clock): dial → ringing.
    let sent = event_t(&mut lab, "dial-sent", json!({"dial_id": call.dial_id}));
    let ringing = event_t(
        &mut lab,
        "occupant-status",
        json!({"nick": call.nick, "status": "ringing"}),
    );
    if let (Some(sent), Some(ringing)) = (sent, ringing) {
        eprintln!("figure: dial → ringing {:.2} s", ringing - sent);
    }

    no_calls_left(&lab)?;
    lab.emulator.control.wait_event(
        "no call in the brewery stats",
        T,
        brewery_load(&lab.brewery_nick, 0, 0),
    )?;
    lab.gateway.stop()?;
    // Unregistered on the way out.
    lab.registrar.wait_aor("gateway", false, T)?;
    Ok(())
}

#[test]
fn early_media_of_a_ringing_callee_is_heard_in_the_room_before_the_answer() -> Result<()> {
    let mut lab = lab(
        "dialout-early-media",
        "early",
        "gatewaypw",
        &GatewayOptions::default(),
    )?;
    // The callee's pcaps, in its working folder: 4 s of ringback-like tone, then its voice, one
    // RTP stream going on (as a PSTN gateway's does).
    let folder = lab.dir.join("sip-uas-early-media");
    std::fs::create_dir_all(&folder)?;
    for (name, hz, secs, first) in [("early", EARLY_HZ, 4.0, 0), ("answer", PHONE_HZ, 30.0, 200)] {
        let wav = folder.join(format!("{name}.wav"));
        audio::write_tone_wav(&wav, hz, secs, 8000, -12.0)?;
        sipp::write_pcmu_pcap_from(&wav, &folder.join(format!("{name}.pcap")), first)?;
    }
    let (mut callee, port) = SippCall::uas(&lab.dir, "sip-uas-early-media.xml")?;
    lab.registrar.wait_aor("gateway", true, T)?;
    let dial_id = lab.dial(&format!("sip:early@127.0.0.1:{port}"), &[], json!({}))?;
    let joined = lab.gateway_joined()?;
    let nick = joined["nick"].as_str().context("nick")?.to_string();
    lab.dial_answered(dial_id)?;
    let ringing = lab.wait_status(&nick, "ringing", T)?["t"]
        .as_f64()
        .context("t")?;
    let sid = lab.session_connected(&nick)?;
    let connected = lab.wait_status(&nick, "Connected", T)?["t"]
        .as_f64()
        .context("t")?;
    assert!(
        connected - ringing >= 3.5,
        "answered {:.2} s after ringing",
        connected - ringing
    );
    // Four seconds of early media, then at least four of the answered call.
    lab.wait_recorded(&sid, 9)?;
    let r = lab.emulator.request(
        "hangup",
        json!({"occupant": nick, "room": lab.room.clone()}),
    )?;
    assert_eq!(r["answer"]["type"], json!("result"), "{r}");
    callee.wait_success(T)?;

    let report = lab.emulator.request("status", Value::Null)?["report"].clone();
    let rec = audio::Recording::read(&scenario::session_recording(&report, &sid)?)?;
    let start = recording_start(&mut lab, &sid).context("no audio recorded")?;
    let freqs = [EARLY_HZ, PHONE_HZ];
    let early = rec
        .slice(ringing - start + 0.5, connected - start - 0.5)
        .tones(&freqs);
    early
        .check_present(EARLY_HZ, HEARD)
        .context("early media while ringing")?;
    early.check_absent(PHONE_HZ, SILENT_DBFS)?;
    let answered = rec
        .slice(connected - start + 1.0, rec.seconds())
        .tones(&freqs);
    answered
        .check_present(PHONE_HZ, HEARD)
        .context("the callee after answering")?;
    answered.check_absent(EARLY_HZ, SILENT_DBFS)?;
    no_calls_left(&lab)?;
    lab.gateway.stop()?;
    Ok(())
}

#[test]
fn a_rayo_hangup_while_the_callee_rings_cancels_the_invite() -> Result<()> {
    let mut lab = lab(
        "dialout-cancel",
        "cancel",
        "gatewaypw",
        &GatewayOptions::default(),
    )?;
    let mut bob = phone(&mut lab, "bob", "bobpw", Answer::Manual)?;
    lab.registrar.wait_aor("gateway", true, T)?;
    let dial_id = lab.dial("bob", &[], json!({}))?;
    let joined = lab.gateway_joined()?;
    let nick = joined["nick"].as_str().context("nick")?.to_string();
    lab.dial_answered(dial_id)?;
    bob.wait_event("CALL_INCOMING", T)?;
    lab.wait_status(&nick, "ringing", T)?;

    let r = lab.emulator.request(
        "hangup",
        json!({"occupant": nick, "room": lab.room.clone()}),
    )?;
    assert_eq!(r["answer"]["type"], json!("result"), "{r}");
    bob.wait_event("CALL_CLOSED", T)?;
    lab.emulator
        .control
        .wait_for("occupant-left", json!({"nick": nick}), T)?;
    // The CANCEL went through the proxy, and bob answered the INVITE 487.
    assert_eq!(
        lab.registrar.count("CANCEL"),
        1,
        "{:?}",
        lab.registrar.requests()
    );
    let messages = bob.sip_messages();
    assert!(received(&messages, "CANCEL ").is_some(), "{messages:#?}");
    assert!(
        messages.iter().any(|m| m.sent && m.status() == Some(487)),
        "{messages:#?}"
    );
    assert!(received(&messages, "BYE ").is_none(), "{messages:#?}");
    let statuses = lab.statuses(&nick);
    assert!(!statuses.iter().any(|s| s == "Connected"), "{statuses:?}");
    no_calls_left(&lab)?;
    lab.gateway.stop()?;
    Ok(())
}

#[test]
fn the_callee_hanging_up_ends_the_jingle_session_and_the_occupant_leaves() -> Result<()> {
    let mut lab = lab(
        "dialout-callee-hangup",
        "calleebye",
        "gatewaypw",
        &GatewayOptions::default(),
    )?;
    let mut bob = phone(&mut lab, "bob", "bobpw", Answer::Auto)?;
    let call = dial_bob(&mut lab, &mut bob, Answer::Auto, &[])?;
    let sent = event_t(&mut lab, "dial-sent", json!({"dial_id": call.dial_id}));
    let connected = event_t(
        &mut lab,
        "occupant-status",
        json!({"nick": call.nick, "status": "Connected"}),
    );
    if let (Some(sent), Some(connected)) = (sent, connected) {
        eprintln!(
            "figure: dial → Connected (auto-answer) {:.2} s",
            connected - sent
        );
    }
    lab.wait_recorded(&call.sid, 2)?;

    bob.command("hangup")?;
    bob.wait_event("CALL_CLOSED", T)?;
    let ended = lab.emulator.control.wait_for(
        "session-terminated",
        json!({"sid": call.sid, "by": "gateway"}),
        T,
    )?;
    assert_eq!(ended["reason"], json!("success"), "{ended}");
    lab.emulator
        .control
        .wait_for("occupant-left", json!({"nick": call.nick}), T)?;
    // bob's BYE went through the proxy (it record-routed the dialog).
    assert_eq!(
        lab.registrar.count("BYE"),
        1,
        "{:?}",
        lab.registrar.requests()
    );
    no_calls_left(&lab)?;
    lab.gateway.stop()?;
    Ok(())
}

#[test]
fn a_busy_or_unknown_callee_shows_busy_or_rejected_in_the_room_then_the_occupant_leaves(
) -> Result<()> {
    // The prefix goes in front of dialled numbers and names, not of SIP URIs.
    let gw = GatewayOptions::default().set("sip.outbound_prefix", "9");
    let mut lab = lab("dialout-busy", "busy", "gatewaypw", &gw)?;
    // Reached by URI: the proxy relays requests for other hosts.
    let (mut callee, port) = SippCall::uas(&lab.dir, "sip-uas-busy.xml")?;
    lab.registrar.wait_aor("gateway", true, T)?;
    let dial_id = lab.dial(&format!("sip:busy@127.0.0.1:{port}"), &[], json!({}))?;
    let joined = lab.gateway_joined()?;
    let nick = joined["nick"].as_str().context("nick")?.to_string();
    let answered = lab.dial_answered(dial_id)?;
    assert_eq!(answered["answer"]["type"], json!("result"), "{answered}");

    let busy = lab.wait_status(&nick, "busy", T)?;
    let left = lab
        .emulator
        .control
        .wait_for("occupant-left", json!({"nick": nick}), T)?;
    let shown = left["t"].as_f64().unwrap() - busy["t"].as_f64().unwrap();
    assert!(
        (LINGER_S - 0.5..=LINGER_S + 3.0).contains(&shown),
        "busy was shown for {shown:.2} s"
    );
    // The bridge leg was accepted before the INVITE; it ends saying why.
    let ended = lab.emulator.control.wait_for(
        "session-terminated",
        json!({"occupant": nick, "by": "gateway"}),
        T,
    )?;
    assert_eq!(ended["reason"], json!("busy"), "{ended}");
    let statuses = lab.statuses(&nick);
    assert!(in_order(&statuses, &["calling", "busy"]), "{statuses:?}");
    assert!(!statuses.iter().any(|s| s == "Connected"), "{statuses:?}");
    // The callee had its 486 acknowledged.
    callee.wait_success(T)?;
    no_calls_left(&lab)?;

    // Nobody registered under that name (with the prefix): the registrar's 404 is "rejected".
    let dial_id = lab.dial("nobody", &[], json!({}))?;
    let joined = lab.gateway_joined()?;
    let nick = joined["nick"].as_str().context("nick")?.to_string();
    lab.dial_answered(dial_id)?;
    lab.wait_status(&nick, "rejected", T)?;
    lab.emulator
        .control
        .wait_for("occupant-left", json!({"nick": nick}), T)?;
    no_calls_left(&lab)?;
    let invites: Vec<String> = lab
        .registrar
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("INVITE "))
        .collect();
    let busy_uri = format!("INVITE sip:busy@127.0.0.1:{port} ");
    assert!(
        invites.iter().any(|r| r.starts_with(&busy_uri))
            && invites
                .iter()
                .any(|r| r.starts_with("INVITE sip:9nobody@sip.lab.test ")),
        "{invites:?}"
    );
    lab.gateway.stop()?;
    Ok(())
}

#[test]
fn a_stop_signal_drains_new_dials_are_refused_and_the_call_goes_on_until_it_ends() -> Result<()> {
    let mut lab = lab(
        "dialout-drain",
        "drain",
        "gatewaypw",
        &GatewayOptions::default(),
    )?;
    let mut bob = phone(&mut lab, "bob", "bobpw", Answer::Auto)?;
    let call = dial_bob(&mut lab, &mut bob, Answer::Auto, &[])?;
    lab.wait_recorded(&call.sid, 1)?;

    lab.gateway.terminate();
    let nick = lab.brewery_nick.clone();
    lab.emulator
        .control
        .wait_event("graceful_shutdown in the brewery stats", T, |e| {
            e["event"] == json!("brewery-occupant")
                && e["nick"] == json!(nick)
                && e["stats"]["graceful_shutdown"] == json!(true)
        })?;
    // Jicofo no longer picks it; asked anyway, it refuses.
    let err = lab.dial("bob", &[], json!({})).unwrap_err();
    assert!(
        format!("{err:#}").contains("service-unavailable"),
        "{err:#}"
    );
    let id = lab.dial("bob", &[], json!({"target": nick, "retries": 0}))?;
    let a = lab.dial_answered(id)?;
    assert_eq!(a["answer"]["type"], json!("error"), "{a}");
    assert_eq!(
        a["answer"]["condition"],
        json!("service-unavailable"),
        "{a}"
    );

    // The call in progress goes on: its audio keeps coming.
    lab.wait_recorded(&call.sid, 4)?;
    bob.command("hangup")?;
    bob.wait_event("CALL_CLOSED", T)?;
    lab.emulator
        .control
        .wait_for("occupant-left", json!({"nick": call.nick}), T)?;
    // Drained: it exits by itself, unregistered.
    lab.gateway.wait_exit(T)?;
    lab.registrar.wait_aor("gateway", false, T)?;
    Ok(())
}

/// An anonymous client that joins the brewery room as an occupant, so its dials come from the
/// brewery's bare JID as Jicofo's do; it sends `dial` to the gateway's brewery occupant and
/// returns the answer.
fn dial_from_the_brewery(lab: &DialOutLab, dial: Element) -> Result<Result<(), IqError>> {
    let rt = tokio::runtime::Runtime::new()?;
    let c2s = lab.prosody.c2s_port;
    let to = format!("{BREWERY}/{}", lab.brewery_nick);
    rt.block_on(async move {
        let mut conn = Connection::connect(&ConnectOptions {
            host: Host::Ip([127, 0, 0, 1].into()),
            port: c2s,
            login: Login::Anonymous {
                domain: "meet.jitsi".into(),
            },
            tls: Tls::Plain,
            focus_jid: "focus.meet.jitsi".into(),
            focus_nick: "focus".into(),
            timeouts: XmppTimeouts::default(),
        })
        .await?;
        let (node, domain) = BREWERY.split_once('@').unwrap();
        conn.join(JoinRequest {
            room: RoomJid::new(node, domain)?,
            nick: "jicofo-two".into(),
            display_name: "jicofo-two".into(),
            password: None,
            region: None,
            stats_id: None,
            direction: Direction::In,
        })?;
        tokio::time::timeout(T, async {
            loop {
                match conn.next().await? {
                    Inbound::SelfJoined { .. } => return Ok::<_, anyhow::Error>(()),
                    Inbound::JoinFailed(e) => anyhow::bail!("brewery join refused: {e}"),
                    _ => {}
                }
            }
        })
        .await
        .context("joining the brewery")??;
        let answer = conn.send_iq(&to, IqKind::Set, dial)?.await;
        conn.close().await;
        Ok(answer.map(|_| ()))
    })
}

fn rayo_dial(to: &str, headers: &[(&str, &str)]) -> Element {
    let ns = "urn:xmpp:rayo:1";
    let mut dial = Element::builder("dial", ns)
        .attr("to".try_into().unwrap(), to)
        .attr("from".try_into().unwrap(), "fromnumber")
        .build();
    for (name, value) in headers {
        dial.append_child(
            Element::builder("header", ns)
                .attr("name".try_into().unwrap(), *name)
                .attr("value".try_into().unwrap(), *value)
                .build(),
        );
    }
    dial
}

#[test]
fn dials_from_a_sender_not_allowed_or_without_a_valid_room_get_errors_and_no_invite() -> Result<()>
{
    let mut lab = lab(
        "dialout-refused",
        "refused",
        "gatewaypw",
        &GatewayOptions::default(),
    )?;
    lab.registrar.wait_aor("gateway", true, T)?;
    let target = lab.brewery_nick.clone();

    // A room participant straight to the gateway's own JID: not the brewery, so not allowed
    // (`forbidden`, as jigasi's CallControlAuthorizationException answers).
    let id = lab.dial(
        "bob",
        &[],
        json!({"via": "participant:ann", "target": target}),
    )?;
    let a = lab.dial_answered(id)?;
    assert!(
        a["sent_to"]
            .as_str()
            .is_some_and(|s| s.starts_with("jigasi@auth.meet.jitsi/")),
        "{a}"
    );
    assert_eq!(a["answer"]["type"], json!("error"), "{a}");
    assert_eq!(a["answer"]["condition"], json!("forbidden"), "{a}");

    // Through the brewery, but the room is not a valid JID node.
    let id = lab.dial(
        "bob",
        &[],
        json!({"room": "no room", "join": false, "retries": 0, "target": target}),
    )?;
    let a = lab.dial_answered(id)?;
    assert_eq!(a["answer"]["type"], json!("error"), "{a}");
    assert_eq!(a["answer"]["condition"], json!("bad-request"), "{a}");

    // From the brewery room (an occupant there), without JvbRoomName.
    match dial_from_the_brewery(&lab, rayo_dial("bob", &[("X-Other", "1")]))? {
        Err(IqError::Remote { condition, text }) => {
            assert_eq!(condition, "bad-request", "{text:?}");
            assert!(
                text.as_deref().is_some_and(|t| t.contains("JvbRoomName")),
                "{text:?}"
            );
        }
        other => panic!("a dial without JvbRoomName got {other:?}"),
    }

    // Nothing went further: no call, no occupant, no INVITE.
    no_calls_left(&lab)?;
    let joined: Vec<Value> = lab
        .emulator
        .control
        .events()
        .iter()
        .filter(|e| e["event"] == json!("occupant-joined") && e["emulated"] == json!(false))
        .cloned()
        .collect();
    assert!(joined.is_empty(), "{joined:?}");
    assert_eq!(
        lab.registrar.count("INVITE"),
        0,
        "{:?}",
        lab.registrar.requests()
    );
    lab.gateway.stop()?;
    Ok(())
}

/// The gateway's log lines saying a registration attempt failed.
fn registration_failures(lab: &DialOutLab) -> Vec<Value> {
    lab.gateway
        .log_lines()
        .into_iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("SIP registration failed"))
        })
        .collect()
}

#[test]
fn a_wrong_sip_password_is_logged_as_a_registration_failure_and_retried_with_backoff() -> Result<()>
{
    let mut lab = lab(
        "dialout-wrong-password",
        "wrongpw",
        "not-the-password",
        &GatewayOptions::default(),
    )?;
    // Watch the attempts as they are logged: 1, 2 then 4 s apart.
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut seen: Vec<Instant> = Vec::new();
    while seen.len() < 4 {
        let n = registration_failures(&lab).len();
        while seen.len() < n {
            seen.push(Instant::now());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{} registration failures logged: {:?}",
            seen.len(),
            registration_failures(&lab)
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    let spread = seen[3] - seen[0];
    // Each attempt is a challenge and one answer to it, nothing in between (one UDP
    // retransmission is tolerated: a loaded registrar may answer after 500 ms).
    let registers = lab.registrar.count("REGISTER");
    assert!(
        (8..=9).contains(&registers),
        "{registers} REGISTERs: {:?}",
        lab.registrar.requests()
    );
    assert!(
        spread >= Duration::from_secs(6),
        "four attempts in {spread:?}"
    );
    let first = &registration_failures(&lab)[0];
    assert_eq!(first["level"], json!("ERROR"), "{first}");
    assert_eq!(first["status"], json!("401"), "{first}");
    assert_eq!(first["user"], json!("gateway"), "{first}");
    let message = first["message"].as_str().unwrap_or_default();
    assert!(message.contains("wrong password"), "{first}");
    assert!(
        lab.registrar.aors()?.iter().all(|a| a != "gateway"),
        "{:?}",
        lab.registrar.aors()
    );
    lab.gateway.stop()?;
    Ok(())
}

/// `GET /about/health` once its answer satisfies `done` (the registration and the brewery
/// settle in the background); the last answer if it never does.
fn health(lab: &DialOutLab, done: impl Fn(u16, &Value) -> bool) -> Result<(u16, Value)> {
    let deadline = Instant::now() + T;
    loop {
        let (status, body) = lab.gateway.api_with_status("/about/health")?;
        if done(status, &body) || Instant::now() >= deadline {
            return Ok((status, body));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_health_check_follows_the_sip_registration_and_says_why_it_fails() -> Result<()> {
    // Registered and in the brewery: healthy.
    let mut lab = lab(
        "dialout-health-ok",
        "healthok",
        "gatewaypw",
        &GatewayOptions::default(),
    )?;
    lab.registrar.wait_aor("gateway", true, T)?;
    let (status, body) = health(&lab, |s, _| s == 200)?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["healthy"], json!(true), "{body}");
    assert_eq!(body["problems"], json!([]), "{body}");
    assert_eq!(
        body["sip_registration"]["state"],
        json!("registered"),
        "{body}"
    );
    assert_eq!(body["brewery"][0]["state"], json!("joined"), "{body}");
    lab.gateway.stop()?;

    // A wrong password: unhealthy, saying it is the registration, with the registrar's status.
    let mut lab = self::lab(
        "dialout-health-failed",
        "healthfailed",
        "not-the-password",
        &GatewayOptions::default(),
    )?;
    lab.gateway.wait_log("a registration failure", T, |l| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("SIP registration failed"))
    })?;
    let (status, body) = health(&lab, |_, b| {
        b["sip_registration"]["state"] == json!("failed")
    })?;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body["healthy"], json!(false), "{body}");
    let problems = body["problems"].as_array().context("no problems")?;
    assert!(
        problems.iter().any(|p| p
            .as_str()
            .is_some_and(|p| p.to_lowercase().contains("registration"))),
        "{body}"
    );
    let reg = &body["sip_registration"];
    assert_eq!(reg["status"], json!(401), "{body}");
    assert!(reg["reason"].is_string(), "{body}");
    lab.gateway.stop()?;
    Ok(())
}

#[test]
fn a_call_to_the_gateways_registered_address_reaches_the_room_both_ways() -> Result<()> {
    // baresip 1.0 cannot add a header to its INVITE and the lab registrar adds none, so the
    // room comes from the gateway's default room.
    let gw = GatewayOptions::default().env("JIGASI_SIP_DEFAULT_ROOM", "viaregistrar");
    let mut lab = lab("dialout-dialin-registrar", "viaregistrar", "gatewaypw", &gw)?;
    lab.registrar.wait_aor("gateway", true, T)?;
    let mut alice = phone(&mut lab, "alice", "alicepw", Answer::Manual)?;
    let aor = format!("sip:gateway@127.0.0.1:{}", lab.registrar.port);
    alice.command(&format!("dial {aor}"))?;
    alice.wait_event("CALL_ESTABLISHED", T)?;
    let joined = lab.gateway_joined()?;
    assert_eq!(joined["call_direction"], json!("in"), "{joined}");
    let nick = joined["nick"].as_str().context("nick")?.to_string();
    let sid = lab.session_connected(&nick)?;
    lab.wait_recorded(&sid, 6)?;
    alice.command("hangup")?;
    alice.wait_event("CALL_CLOSED", T)?;
    lab.emulator.control.wait_for(
        "session-terminated",
        json!({"sid": sid, "by": "gateway"}),
        T,
    )?;

    // The registrar found the gateway by its binding (after challenging alice).
    let invites: Vec<String> = lab
        .registrar
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("INVITE "))
        .collect();
    assert!(
        invites
            .iter()
            .any(|r| r.starts_with(&format!("INVITE {aor} ")) && r.contains("fU=alice")),
        "{invites:?}"
    );

    let heard = analyse(&alice.received_wav()?, 1.5, &[ANN_HZ, CAROL_HZ, PHONE_HZ])?;
    heard
        .check_present(ANN_HZ, HEARD)
        .context("ann on the phone")?;
    heard
        .check_present(CAROL_HZ, HEARD)
        .context("carol on the phone")?;
    heard
        .check_absent(PHONE_HZ, SILENT_DBFS)
        .context("mix-minus")?;
    let report = lab.emulator.request("status", Value::Null)?["report"].clone();
    let room = analyse(
        &scenario::session_recording(&report, &sid)?,
        1.5,
        &[PHONE_HZ, ANN_HZ],
    )?;
    room.check_present(PHONE_HZ, HEARD)
        .context("alice in the room")?;
    room.check_absent(ANN_HZ, SILENT_DBFS)?;
    no_calls_left(&lab)?;
    lab.gateway.stop()?;
    Ok(())
}
