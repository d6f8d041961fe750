//! Scale-out and resilience of dial-out, end to end: two gateway processes in one brewery with
//! the emulator acting as Jicofo (reading their stats, picking the least-loaded), a drain that
//! keeps the call in progress, and Prosody killed mid-call. Real Prosody, real Kamailio as the
//! registrar/proxy (digest auth), real baresip callees registered on it.

use anyhow::{Context, Result};
use gateway_lab::audio::{self, Expect};
use gateway_lab::baresip::{Answer, Baresip};
use gateway_lab::emulator::{self, EmulatorOptions, Participant, PyService};
use gateway_lab::gateway::{Gateway, GatewayOptions};
use gateway_lab::kamailio::Registrar;
use gateway_lab::paths;
use gateway_lab::prosody::Prosody;
use gateway_lab::scenario::{self, analyse};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_jitsi-sip-gateway");
const ROOM: &str = "scaleout";
/// The room's emulated participant, and the two callees' microphones.
const DAVE_HZ: f64 = 600.0;
const BOB_HZ: f64 = 1100.0;
const ALICE_HZ: f64 = 900.0;
/// As in the dial-in tests: -12 dBFS tones must arrive at -30 dBFS or more in 80 % of seconds.
const HEARD: Expect = Expect {
    min_level_dbfs: -30.0,
    min_coverage: 0.8,
};
const T: Duration = Duration::from_secs(20);

struct Lab {
    dir: PathBuf,
    prosody: Prosody,
    registrar: Registrar,
    emulator: PyService,
}

impl Lab {
    /// Prosody, the registrar and the emulator (in the brewery, and in ROOM with dave).
    fn start(name: &str) -> Result<Self> {
        let dir = paths::run_dir(name)?;
        let prosody = Prosody::start(&dir)?;
        let registrar = Registrar::start(&dir)?;
        let emulator = start_emulator(&prosody, &dir)?;
        Ok(Self {
            dir,
            prosody,
            registrar,
            emulator,
        })
    }

    /// A gateway registered as `gateway` on the registrar, the docker way; returns it once
    /// healthy (in the brewery and registered) with its brewery nick, as the emulator saw it.
    fn gateway(&mut self) -> Result<(Gateway, String)> {
        let port = self.registrar.port.to_string();
        let opts = GatewayOptions::default()
            .env("JIGASI_SIP_URI", "sip:gateway@sip.lab.test")
            .env("JIGASI_SIP_PASSWORD", "gatewaypw")
            .env("JIGASI_SIP_SERVER", "127.0.0.1")
            .env("JIGASI_SIP_PORT", &port)
            .env("JIGASI_SIP_TRANSPORT", "UDP");
        let mut gw = Gateway::start(Path::new(BIN), &self.dir, &self.prosody, &opts)?;
        let health = gw.wait_health(200, T)?;
        let nick = health["brewery"][0]["nick"]
            .as_str()
            .with_context(|| format!("no brewery nick in {health}"))?
            .to_string();
        // Jicofo's view of a fresh instance: idle, not draining, able to dial out.
        let idle = json!({ "conferences": 0, "participants": 0, "graceful_shutdown": false,
            "supports_sip": true, "supports_transcription": false });
        self.wait_stats(&nick, idle)?;
        Ok((gw, nick))
    }

    /// A baresip callee registered on the registrar, answering at once with a tone.
    fn callee(&self, user: &str, hz: f64) -> Result<Baresip> {
        let mic = self.dir.join(format!("{user}-mic.wav"));
        audio::write_tone_wav(&mic, hz, 60.0, 8000, -12.0)?;
        Baresip::start_registered(
            &self.dir,
            user,
            &format!("{user}pw"),
            self.registrar.port,
            &mic,
            Answer::Auto,
        )
    }

    /// Jicofo's dial: the emulator picks the instance (`target`: least-loaded or a nick) and
    /// waits for its answer.
    fn dial(&mut self, to: &str, extra: Value) -> Result<Value> {
        let mut req = json!({ "room": ROOM, "to": to, "retries": 0 });
        for (k, v) in extra.as_object().context("dial arguments")? {
            req[k] = v.clone();
        }
        self.emulator
            .request_with_timeout("dial", req, Duration::from_secs(60))
    }

    /// The Jingle session the emulator opened with the occupant `nick`, once its media is up.
    fn session(&mut self, nick: &str) -> Result<String> {
        let sent = self.emulator.control.wait_for(
            "session-initiate-sent",
            json!({ "occupant": nick }),
            T,
        )?;
        let sid = sent["sid"].as_str().context("sid")?.to_string();
        self.emulator
            .control
            .wait_for("dtls-connected", json!({ "sid": sid }), T)?;
        Ok(sid)
    }

    /// Waits until the emulator has seen `nick` publish stats containing every field of `stats`:
    /// its current view first (events from before the control connection are not sent to
    /// it), then the updates.
    fn wait_stats(&mut self, nick: &str, stats: Value) -> Result<Value> {
        let matches = |seen: &Value| {
            stats
                .as_object()
                .is_some_and(|o| o.iter().all(|(k, v)| &seen[k] == v))
        };
        let report = self.report()?;
        let current = report["brewery"]["instances"]
            .as_array()
            .and_then(|all| all.iter().find(|i| i["nick"] == json!(nick)));
        if let Some(instance) = current.filter(|i| matches(&i["stats"])) {
            return Ok(instance.clone());
        }
        self.emulator
            .control
            .wait_event(&format!("{nick}'s stats {stats}"), T, |e| {
                e["event"] == json!("brewery-occupant")
                    && e["nick"] == json!(nick)
                    && matches(&e["stats"])
            })
    }

    fn report(&mut self) -> Result<Value> {
        Ok(self.emulator.request("status", Value::Null)?["report"].clone())
    }
}

fn start_emulator(prosody: &Prosody, dir: &Path) -> Result<PyService> {
    std::fs::create_dir_all(dir)?;
    let mut emulator = emulator::start_emulator(
        prosody,
        dir,
        &EmulatorOptions::room_with(ROOM, vec![Participant::tone("dave", DAVE_HZ)]),
    )?;
    // Only the focus may create the brewery room: the gateways join once it has.
    let status = emulator.request("status", json!({}))?;
    anyhow::ensure!(
        status["report"]["brewery"]["joined_t"].is_number(),
        "the emulator is not in the brewery: {status}"
    );
    Ok(emulator)
}

/// What a callee heard from the room, and what the room heard from it, from `from_s` seconds
/// into the call on.
fn check_two_way(
    lab: &mut Lab,
    phone: &Baresip,
    sid: &str,
    mic_hz: f64,
    from_s: f64,
) -> Result<()> {
    analyse(&phone.received_wav()?, from_s, &[DAVE_HZ])?
        .check_present(DAVE_HZ, HEARD)
        .with_context(|| format!("{} hearing the room", phone.uri()))?;
    let report = lab.report()?;
    analyse(
        &scenario::session_recording(&report, sid)?,
        from_s,
        &[mic_hz],
    )?
    .check_present(mic_hz, HEARD)
    .with_context(|| format!("the room hearing {}", phone.uri()))
}

#[test]
fn jicofo_picks_the_less_loaded_gateway_and_a_drained_one_finishes_its_call_then_exits(
) -> Result<()> {
    let mut lab = Lab::start("scaleout-two-gateways")?;
    let (mut gw_a, nick_a) = lab.gateway()?;
    let (mut gw_b, nick_b) = lab.gateway()?;
    let mut bob = lab.callee("bob", BOB_HZ)?;
    let mut alice = lab.callee("alice", ALICE_HZ)?;

    // Both idle: either may take the first call; the one that did then counts the room (dave and
    // its own occupant) while the other still counts nothing.
    let first = lab.dial("bob", json!({}))?;
    assert_eq!(first["answer"]["type"], json!("result"), "{first}");
    let first_nick = first["target"].as_str().context("target")?.to_string();
    let second_nick = if first_nick == nick_a {
        nick_b.clone()
    } else {
        nick_a.clone()
    };
    bob.wait_event("CALL_ESTABLISHED", T)?;
    let bob_occupant = first["occupant"].as_str().context("occupant")?.to_string();
    let bob_sid = lab.session(&bob_occupant)?;
    lab.wait_stats(&first_nick, json!({ "conferences": 1, "participants": 2 }))?;

    // The second dial goes to the gateway with fewer participants.
    let second = lab.dial("alice", json!({}))?;
    assert_eq!(second["target"], json!(second_nick), "{second}");
    assert_eq!(second["answer"]["type"], json!("result"), "{second}");
    alice.wait_event("CALL_ESTABLISHED", T)?;
    let established = Instant::now();
    let alice_occupant = second["occupant"].as_str().context("occupant")?.to_string();
    let alice_sid = lab.session(&alice_occupant)?;
    // dave and both gateways' occupants, as each gateway sees the room.
    lab.wait_stats(&second_nick, json!({ "conferences": 1, "participants": 3 }))?;
    lab.wait_stats(&first_nick, json!({ "participants": 3 }))?;

    // Drain the second gateway: Jicofo sees graceful_shutdown, and a dial sent to it anyway is
    // refused without a call being placed.
    let (drained, other) = if second_nick == nick_a {
        (&mut gw_a, &mut gw_b)
    } else {
        (&mut gw_b, &mut gw_a)
    };
    let drain_started = established.elapsed().as_secs_f64();
    drained.terminate();
    lab.wait_stats(&second_nick, json!({ "graceful_shutdown": true }))?;
    assert_eq!(
        drained.api("/about/stats")?["graceful_shutdown"],
        json!(true)
    );
    let invites = lab.registrar.count("INVITE");
    let refused = lab.dial("carol", json!({ "target": second_nick, "join": false }))?;
    assert_eq!(refused["answer"]["type"], json!("error"), "{refused}");
    assert_eq!(
        refused["answer"]["condition"],
        json!("service-unavailable"),
        "{refused}"
    );
    assert_eq!(lab.registrar.count("INVITE"), invites, "no INVITE for it");

    // The call in progress on the draining gateway goes on, both ways, until alice hangs up;
    // then the drained gateway exits 0 by itself.
    lab.emulator
        .control
        .wait_event("5 s more of alice", T, |e| {
            e["event"] == json!("rx-audio")
                && e["sid"] == json!(alice_sid)
                && e["seconds"]
                    .as_f64()
                    .is_some_and(|s| s >= drain_started + 5.0)
        })?;
    alice.command("hangup")?;
    alice.wait_event("CALL_CLOSED", T)?;
    let status = drained.wait_exit(T)?;
    assert!(status.success(), "the drained gateway exited with {status}");
    check_two_way(&mut lab, &alice, &alice_sid, ALICE_HZ, drain_started + 0.5)?;

    // The other gateway's stats follow: its call is alone in the room again, then ends.
    lab.wait_stats(&first_nick, json!({ "participants": 2 }))?;
    bob.command("hangup")?;
    bob.wait_event("CALL_CLOSED", T)?;
    check_two_way(&mut lab, &bob, &bob_sid, BOB_HZ, 1.5)?;
    lab.wait_stats(&first_nick, json!({ "conferences": 0, "participants": 0 }))?;
    other.stop()?;
    bob.stop();
    alice.stop();
    Ok(())
}

#[test]
fn prosody_killed_mid_call_ends_the_call_on_both_sides_and_the_brewery_is_back_within_10_s(
) -> Result<()> {
    let mut lab = Lab::start("scaleout-prosody-restart")?;
    let (mut gw, nick) = lab.gateway()?;
    let mut bob = lab.callee("bob", BOB_HZ)?;
    let dial = lab.dial("bob", json!({ "target": nick }))?;
    assert_eq!(dial["answer"]["type"], json!("result"), "{dial}");
    bob.wait_event("CALL_ESTABLISHED", T)?;
    let occupant = dial["occupant"].as_str().context("occupant")?.to_string();
    let sid = lab.session(&occupant)?;
    lab.emulator.control.wait_event("2 s of bob", T, |e| {
        e["event"] == json!("rx-audio")
            && e["sid"] == json!(sid)
            && e["seconds"].as_u64().is_some_and(|s| s >= 2)
    })?;

    // SIGKILL: no stream close, the sockets just go. The call's MUC occupancy and its bridge
    // session are gone with it, so the gateway ends the call: the phone gets a BYE.
    lab.prosody.kill();
    let ended = gw.wait_log("the call's end", T, |l| l["message"] == json!("call ended"))?;
    assert_eq!(ended["cause"], json!(503), "{ended}");
    // The BYE goes through the proxy (it record-routes) to bob, who ends the call.
    anyhow::ensure!(
        lab.registrar
            .requests()
            .iter()
            .any(|r| r.starts_with("BYE sip:bob-")),
        "no BYE for bob at the proxy: {:?}",
        lab.registrar.requests()
    );
    bob.wait_event("CALL_CLOSED", T)?;
    let health = gw.wait_health(500, T)?;
    assert_eq!(health["brewery"][0]["state"], json!("lost"), "{health}");
    lab.emulator.proc.stop();

    // Prosody and Jicofo come back; the gateway is in the brewery again within 10 s.
    lab.prosody.restart()?;
    let back = Instant::now();
    lab.emulator = start_emulator(&lab.prosody, &lab.dir.join("after-restart"))?;
    let health = gw.wait_health(200, Duration::from_secs(10).saturating_sub(back.elapsed()))?;
    println!("brewery back {:?} after Prosody restarted", back.elapsed());
    let new_nick = health["brewery"][0]["nick"].as_str().context("nick")?;
    lab.wait_stats(new_nick, json!({ "conferences": 0, "participants": 0 }))?;
    assert_eq!(gw.api("/debug/resources")?["calls"], json!(0));
    gw.stop()?;
    bob.stop();
    Ok(())
}
