//! The emulator's dial-out side (Jicofo's JigasiDetector and JigasiIqHandler) against a real
//! Prosody, with fake brewery members standing in for gateways: which instance a dial goes to,
//! where it comes from, Jicofo's retries, and the Rayo hangup reaching the call's occupant.

use anyhow::{Context, Result};
use gateway_lab::emulator::{
    self, EmulatorOptions, FakeAnswer, FakeMemberOptions, Participant, PyService,
};
use gateway_lab::paths;
use gateway_lab::prosody::Prosody;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(15);
const ROOM: &str = "dialroom";
const ROOM_JID: &str = "dialroom@muc.meet.jitsi";
const BREWERY: &str = "jigasibrewery@internal-muc.meet.jitsi";
const NUMBER: &str = "+15551234567";

struct Lab {
    _prosody: Prosody,
    emulator: PyService,
    members: Vec<PyService>,
    nicks: Vec<String>,
}

impl Lab {
    /// Prosody, the emulator with one participant in ROOM (it joins the brewery first), then the
    /// members; returns once the emulator has seen every member's stats.
    fn start(dir: &Path, members: &[FakeMemberOptions]) -> Result<Self> {
        let prosody = Prosody::start(dir)?;
        let mut emulator = emulator::start_emulator(
            &prosody,
            dir,
            &EmulatorOptions::room_with(ROOM, vec![Participant::tone("alice", 600.0)]),
        )?;
        // The emulator is ready once the focus is in the brewery (before this client connected,
        // so the brewery-joined event is only in its history).
        let status = emulator.request("status", json!({}))?;
        let brewery = &status["report"]["brewery"];
        assert_eq!(brewery["room"], json!(BREWERY), "{brewery}");
        assert!(brewery["joined_t"].is_number(), "{brewery}");
        let mut started = Vec::new();
        for m in members {
            started.push(emulator::start_fake_brewery_member(&prosody, dir, m)?);
            emulator
                .control
                .wait_for("brewery-occupant", json!({ "nick": m.nick }), T)?;
        }
        Ok(Self {
            _prosody: prosody,
            emulator,
            members: started,
            nicks: members.iter().map(|m| m.nick.clone()).collect(),
        })
    }

    fn dial(&mut self, args: Value) -> Result<Value> {
        let mut req = json!({ "room": ROOM, "to": NUMBER });
        for (k, v) in args
            .as_object()
            .context("dial arguments must be an object")?
        {
            req[k] = v.clone();
        }
        self.emulator
            .request_with_timeout("dial", req, Duration::from_secs(60))
    }

    /// Changes a member's stats and waits until the emulator has seen them.
    fn set_stats(&mut self, i: usize, stats: Value) -> Result<()> {
        let nick = self.nicks[i].clone();
        self.members[i].request("set-stats", json!({ "stats": stats.clone() }))?;
        self.emulator.control.wait_event("the new stats", T, |e| {
            e["event"] == json!("brewery-occupant")
                && e["nick"] == json!(nick)
                && stats
                    .as_object()
                    .unwrap()
                    .iter()
                    .all(|(k, v)| &e["stats"][k] == v)
        })?;
        Ok(())
    }

    fn finish(mut self) -> Result<(Value, Vec<Value>)> {
        let mut reports = Vec::new();
        for m in &mut self.members {
            reports.push(m.quit()?);
        }
        Ok((self.emulator.quit()?, reports))
    }
}

#[test]
fn a_dial_goes_to_the_least_loaded_member_not_in_graceful_shutdown() -> Result<()> {
    let dir = paths::run_dir("emulator-brewery-selection")?;
    let mut lab = Lab::start(
        &dir,
        &[
            FakeMemberOptions::new("busy", 5),
            FakeMemberOptions {
                join_room: true,
                ..FakeMemberOptions::new("idle", 2)
            },
        ],
    )?;

    // The fewest participants wins; the dial comes through the brewery MUC from its focus
    // occupant, with the room, the room password and the extra headers.
    let r = lab.dial(json!({ "password": "pw", "headers": [["X-Initiator", "moderator"]] }))?;
    assert_eq!(r["target"], json!("idle"), "{r}");
    assert_eq!(r["sent_to"], json!(format!("{BREWERY}/idle")), "{r}");
    assert_eq!(r["answer"]["type"], json!("result"), "{r}");
    let call = r["occupant"]
        .as_str()
        .context("no occupant in the ref")?
        .to_string();
    assert_eq!(
        r["answer"]["uri"],
        json!(format!("xmpp:{ROOM_JID}/{call}")),
        "{r}"
    );
    let got = lab.members[1]
        .control
        .wait_for("dial-received", json!({ "to": NUMBER }), T)?;
    assert_eq!(got["from"], json!(format!("{BREWERY}/focus")), "{got}");
    assert_eq!(
        got["headers"],
        json!([
            ["JvbRoomName", ROOM_JID],
            ["JvbRoomPassword", "pw"],
            ["X-Initiator", "moderator"]
        ]),
        "{got}"
    );
    // The call's occupant: a dial-out gateway with the number as its display name.
    let joined = lab
        .emulator
        .control
        .wait_for("occupant-joined", json!({ "nick": call }), T)?;
    assert_eq!(joined["call_direction"], json!("out"), "{joined}");
    assert_eq!(joined["display_name"], json!(NUMBER), "{joined}");
    assert_eq!(joined["is_gateway"], json!(true), "{joined}");
    assert_eq!(
        joined["initiator_headers"]["X-Initiator"],
        json!("moderator"),
        "{joined}"
    );

    // Load moves: the other one is now the least loaded.
    lab.set_stats(0, json!({ "participants": 1 }))?;
    assert_eq!(lab.dial(json!({}))?["target"], json!("busy"));
    // Graceful shutdown takes an instance out of the selection whatever its load.
    lab.set_stats(0, json!({ "participants": 0, "graceful_shutdown": true }))?;
    assert_eq!(lab.dial(json!({}))?["target"], json!("idle"));
    // Excluding the only one left: Jicofo's service-unavailable.
    let err = lab.dial(json!({ "exclude": ["idle"] })).unwrap_err();
    assert!(
        format!("{err:#}").contains("service-unavailable"),
        "{err:#}"
    );
    // supports_sip=false is not a SIP instance either.
    lab.set_stats(
        0,
        json!({ "graceful_shutdown": false, "supports_sip": false }),
    )?;
    assert_eq!(lab.dial(json!({}))?["target"], json!("idle"));

    let (report, members) = lab.finish()?;
    let instances = report["brewery"]["instances"].as_array().unwrap();
    let busy = instances
        .iter()
        .find(|i| i["nick"] == json!("busy"))
        .unwrap();
    assert_eq!(busy["stats"]["supports_sip"], json!(false), "{busy}");
    assert_eq!(busy["history"].as_array().unwrap().len(), 4, "{busy}");
    assert_eq!(report["dials"].as_array().unwrap().len(), 4);
    let occupant = report["occupants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["nick"] == json!(call))
        .unwrap();
    assert_eq!(occupant["dial"], json!(1), "{occupant}");
    assert_eq!(
        members[1]["dials"].as_array().unwrap().len(),
        3,
        "{}",
        members[1]
    );
    Ok(())
}

#[test]
fn retries_a_direct_dial_from_a_participant_and_a_hangup() -> Result<()> {
    let dir = paths::run_dir("emulator-brewery-rayo")?;
    let mut lab = Lab::start(
        &dir,
        &[
            FakeMemberOptions {
                answer: FakeAnswer::Error("service-unavailable".into()),
                ..FakeMemberOptions::new("failing", 0)
            },
            FakeMemberOptions {
                join_room: true,
                ..FakeMemberOptions::new("working", 3)
            },
        ],
    )?;

    // Jicofo tries another instance after an error.
    let r = lab.dial(json!({}))?;
    let tried: Vec<_> = r["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["target"].clone())
        .collect();
    assert_eq!(tried, vec![json!("failing"), json!("working")], "{r}");
    assert_eq!(
        r["attempts"][0]["answer"]["condition"],
        json!("service-unavailable"),
        "{r}"
    );
    assert_eq!(r["jicofo_answer"]["type"], json!("result"), "{r}");
    let call = r["occupant"]
        .as_str()
        .context("no occupant in the ref")?
        .to_string();

    // A participant's own connection straight to the member's real JID: not from the brewery,
    // so refused (the fake member checks the sender as the gateway's xmpp.allowed_jid does).
    let r = lab.dial(json!({ "via": "participant:alice", "target": "working" }))?;
    assert_eq!(r["sent_to"], json!("jigasi@auth.meet.jitsi/working"), "{r}");
    assert_eq!(r["answer"]["type"], json!("error"), "{r}");
    assert_eq!(r["answer"]["condition"], json!("not-allowed"), "{r}");
    let got = lab.members[1]
        .control
        .wait_event("the direct dial", T, |e| {
            e["event"] == json!("dial-received") && e["allowed"] == json!(false)
        })?;
    // from the participant's anonymous login on the main domain
    let from = got["from"].as_str().unwrap();
    assert!(from.contains("@meet.jitsi/"), "{got}");

    // Hangup to the call's occupant JID in the room reaches the call, which leaves.
    let r = lab
        .emulator
        .request("hangup", json!({ "occupant": call, "room": ROOM }))?;
    assert_eq!(r["answer"]["type"], json!("result"), "{r}");
    let got = lab.members[1]
        .control
        .wait_for("hangup-received", json!({ "nick": call }), T)?;
    assert_eq!(got["from"], json!(format!("{ROOM_JID}/focus")), "{got}");
    lab.emulator
        .control
        .wait_for("occupant-left", json!({ "nick": call }), T)?;
    lab.emulator.control.wait_for(
        "iq-answered",
        json!({ "what": "hangup", "occupant": call, "type": "result" }),
        T,
    )?;

    let (report, _) = lab.finish()?;
    assert_eq!(report["hangups"][0]["type"], json!("result"));
    Ok(())
}
