//! Ready-made lab scenarios shared by the demo and the tests.

use crate::audio::{Recording, ToneReport};
use crate::emulator::EmulatorOptions;
use crate::emulator::{self, EchoOptions, Participant, PyService};
use crate::gateway::GatewayOptions;
use crate::prosody::Prosody;
use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A room with emulated participants and the echo occupant standing in for a gateway.
pub struct EchoRoom {
    pub room: String,
    pub prosody: Prosody,
    pub emulator: PyService,
    pub echo: PyService,
    /// The occupant nick of the echo occupant, as the emulator saw it join.
    pub echo_nick: String,
    /// The Jingle session id of the emulator's session with the echo occupant.
    pub sid: String,
}

impl EchoRoom {
    /// Starts Prosody, the emulator with `participants` in `room`, and the echo occupant; returns
    /// once the emulator's bridge has a DTLS connection with the echo occupant.
    pub fn start(
        dir: &Path,
        room: &str,
        participants: Vec<Participant>,
        echo: EchoOptions,
    ) -> Result<Self> {
        let prosody = Prosody::start(dir)?;
        let mut emulator = emulator::start_emulator(
            &prosody,
            dir,
            &EmulatorOptions::room_with(room, participants),
        )?;
        let echo = emulator::start_echo_occupant(
            &prosody,
            dir,
            &EchoOptions {
                room: room.into(),
                ..echo
            },
        )?;
        let t = Duration::from_secs(15);
        let joined = emulator
            .control
            .wait_event("the echo occupant joining", t, |e| {
                e["event"] == json!("occupant-joined") && e["is_gateway"] == json!(true)
            })?;
        let echo_nick = joined["nick"]
            .as_str()
            .ok_or_else(|| anyhow!("occupant-joined without nick: {joined}"))?
            .to_string();
        let sent = emulator.control.wait_for(
            "session-initiate-sent",
            json!({"occupant": echo_nick}),
            t,
        )?;
        let sid = sent["sid"]
            .as_str()
            .ok_or_else(|| anyhow!("session-initiate-sent without sid: {sent}"))?
            .to_string();
        emulator
            .control
            .wait_for("dtls-connected", json!({"sid": sid}), t)?;
        Ok(Self {
            room: room.into(),
            prosody,
            emulator,
            echo,
            echo_nick,
            sid,
        })
    }

    /// Waits until the emulator has recorded `seconds` of audio from the echo occupant.
    pub fn wait_recorded(&mut self, seconds: u64) -> Result<Value> {
        let sid = self.sid.clone();
        self.emulator.control.wait_event(
            &format!("{seconds} s of audio from the echo occupant"),
            Duration::from_secs(seconds * 3 + 10),
            |e| {
                e["event"] == json!("rx-audio")
                    && e["sid"] == json!(sid)
                    && e["seconds"].as_u64().is_some_and(|s| s >= seconds)
            },
        )
    }

    /// Ends the emulator and the echo occupant; returns their reports.
    pub fn finish(&mut self) -> Result<(Value, Value)> {
        let emulator = self.emulator.quit().context("stopping the emulator")?;
        let echo = self.echo.quit().context("stopping the echo occupant")?;
        Ok((emulator, echo))
    }
}

/// The recording the emulator made of what a session's peer sent, from its report.
pub fn session_recording(report: &Value, sid: &str) -> Result<PathBuf> {
    let session = session(report, sid)?;
    session["rx"]["recording"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("session {sid} has no recording in the report"))
}

pub fn session<'a>(report: &'a Value, sid: &str) -> Result<&'a Value> {
    report["sessions"]
        .as_array()
        .and_then(|all| all.iter().find(|s| s["sid"] == json!(sid)))
        .ok_or_else(|| anyhow!("no session {sid} in the report: {report}"))
}

/// The echo occupant's receive statistics for `ssrc` in its (only) session.
pub fn echo_rx<'a>(echo_report: &'a Value, ssrc: &Value) -> &'a Value {
    &echo_report["sessions"][0]["rx"][ssrc.to_string()]
}

/// Tone analysis of a recording, skipping its first `skip` seconds (start-up transients).
pub fn analyse(path: &Path, skip: f64, freqs: &[f64]) -> Result<ToneReport> {
    let rec = Recording::read(path)?;
    Ok(rec.slice(skip, rec.seconds()).tones(freqs))
}

/// A room served by the emulator, and the gateway under test, ready for calls.
pub struct DialInLab {
    pub dir: PathBuf,
    pub room: String,
    pub prosody: Prosody,
    pub emulator: PyService,
    pub gateway: crate::gateway::Gateway,
}

impl DialInLab {
    /// Starts Prosody, the emulator in `room` with `participants`, and the gateway binary `bin`.
    pub fn start(
        bin: &Path,
        dir: &Path,
        room: &str,
        participants: Vec<Participant>,
        emulator_opts: impl FnOnce(&mut EmulatorOptions),
        gateway_opts: &crate::gateway::GatewayOptions,
    ) -> Result<Self> {
        let prosody = Prosody::start(dir)?;
        let mut opts = EmulatorOptions::room_with(room, participants);
        emulator_opts(&mut opts);
        let emulator = emulator::start_emulator(&prosody, dir, &opts)?;
        let gateway = crate::gateway::Gateway::start(bin, dir, &prosody, gateway_opts)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            room: room.into(),
            prosody,
            emulator,
            gateway,
        })
    }

    /// Waits for the gateway's occupant to join the room; returns its nick.
    pub fn gateway_joined(&mut self) -> Result<String> {
        let ev = self.emulator.control.wait_event(
            "the gateway joining the room",
            Duration::from_secs(15),
            |e| e["event"] == json!("occupant-joined") && e["emulated"] == json!(false),
        )?;
        ev["nick"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no nick in {ev}"))
    }

    /// Waits until the emulator's session with the gateway's occupant `nick` is media-connected;
    /// returns the session id.
    pub fn session_connected(&mut self, nick: &str) -> Result<String> {
        session_connected(&mut self.emulator, nick)
    }

    /// Waits until the emulator has recorded `seconds` of audio from session `sid`.
    pub fn wait_recorded(&mut self, sid: &str, seconds: u64) -> Result<()> {
        wait_recorded(&mut self.emulator, sid, seconds)
    }
}

/// The lab SIP account of the gateway (`tests/lab/kamailio/registrar.cfg.in`), set the docker
/// way. Its domain is `sip.lab.test` (an alias of the registrar), so a dialled `bob` becomes
/// `sip:bob@sip.lab.test` and the registrar finds bob in its location table; with `127.0.0.1`
/// the Request-URI would lack the registrar's port and be relayed to port 5060.
pub fn lab_sip_account(registrar: &crate::kamailio::Registrar, password: &str) -> GatewayOptions {
    GatewayOptions::default()
        .env("JIGASI_SIP_URI", "sip:gateway@sip.lab.test")
        .env("JIGASI_SIP_PASSWORD", password)
        .env("JIGASI_SIP_SERVER", "127.0.0.1")
        .env("JIGASI_SIP_PORT", &registrar.port.to_string())
        .env("JIGASI_SIP_TRANSPORT", "UDP")
}

/// A room served by the emulator (with its Jicofo-like brewery), the lab registrar and outbound
/// proxy, and the gateway under test with the lab SIP account, present in the brewery: ready
/// for dial-outs.
pub struct DialOutLab {
    pub dir: PathBuf,
    pub room: String,
    pub prosody: Prosody,
    pub registrar: crate::kamailio::Registrar,
    pub emulator: PyService,
    pub gateway: crate::gateway::Gateway,
    /// The gateway's nick in the brewery room.
    pub brewery_nick: String,
}

impl DialOutLab {
    /// Starts Prosody, the registrar, the emulator in `room` with `participants` (it creates the
    /// brewery, which only the focus may do in the lab), then the gateway `bin` with the lab SIP
    /// account (`password`, see [`lab_sip_account`]) and `gateway_opts` on top; returns once the
    /// emulator has seen the gateway's stats in the brewery. It does not wait for the gateway's
    /// registration (see `registrar.wait_aor`).
    pub fn start(
        bin: &Path,
        dir: &Path,
        room: &str,
        participants: Vec<Participant>,
        password: &str,
        gateway_opts: &GatewayOptions,
    ) -> Result<Self> {
        let prosody = Prosody::start(dir)?;
        let registrar = crate::kamailio::Registrar::start(dir)?;
        let mut emulator = emulator::start_emulator(
            &prosody,
            dir,
            &EmulatorOptions::room_with(room, participants),
        )?;
        let mut opts = lab_sip_account(&registrar, password);
        opts.env.extend(gateway_opts.env.iter().cloned());
        opts.set.extend(gateway_opts.set.iter().cloned());
        let gateway = crate::gateway::Gateway::start(bin, dir, &prosody, &opts)?;
        let member = emulator.control.wait_event(
            "the gateway in the brewery",
            Duration::from_secs(20),
            |e| {
                e["event"] == json!("brewery-occupant")
                    && e["jid"].as_str().is_some_and(|j| j.starts_with("jigasi@"))
                    && e["stats"].is_object()
            },
        )?;
        let brewery_nick = member["nick"]
            .as_str()
            .ok_or_else(|| anyhow!("no nick in {member}"))?
            .to_string();
        Ok(Self {
            dir: dir.to_path_buf(),
            room: room.into(),
            prosody,
            registrar,
            emulator,
            gateway,
            brewery_nick,
        })
    }

    /// Sends a Rayo `<dial/>` for `to` into the room as Jicofo does (through the brewery, to the
    /// least-loaded instance), with `headers` after JvbRoomName, without waiting for the answer;
    /// `args` (an object) adds or overrides `dial` arguments (`via`, `target`, `retries`…).
    /// Returns the dial id (see [`Self::dial_answered`]).
    pub fn dial(&mut self, to: &str, headers: &[(&str, &str)], args: Value) -> Result<u64> {
        let mut req = json!({
            "room": self.room,
            "to": to,
            "headers": headers.iter().map(|(n, v)| json!([n, v])).collect::<Vec<_>>(),
            "wait": false,
        });
        if let Value::Object(more) = args {
            for (k, v) in more {
                req[k] = v;
            }
        }
        let r = self
            .emulator
            .request_with_timeout("dial", req, Duration::from_secs(30))?;
        r["dial_id"]
            .as_u64()
            .ok_or_else(|| anyhow!("no dial_id in {r}"))
    }

    /// Waits for the answer to dial `dial_id` (the `dial-answered` event: its `answer`,
    /// `occupant`, `jicofo_answer`).
    pub fn dial_answered(&mut self, dial_id: u64) -> Result<Value> {
        self.emulator.control.wait_for(
            "dial-answered",
            json!({ "dial_id": dial_id }),
            Duration::from_secs(30),
        )
    }

    /// Waits for the gateway's call occupant to join the room; returns the `occupant-joined`
    /// event (nick, display_name, initiator_headers, call_direction…).
    pub fn gateway_joined(&mut self) -> Result<Value> {
        let room = format!("{}@", self.room);
        self.emulator.control.wait_event(
            "the gateway's call joining the room",
            Duration::from_secs(20),
            |e| {
                e["event"] == json!("occupant-joined")
                    && e["emulated"] == json!(false)
                    && e["room"].as_str().is_some_and(|r| r.starts_with(&room))
            },
        )
    }

    /// Waits until the emulator's session with occupant `nick` is media-connected; returns its
    /// session id.
    pub fn session_connected(&mut self, nick: &str) -> Result<String> {
        session_connected(&mut self.emulator, nick)
    }

    /// Waits until the emulator has recorded `seconds` of audio from session `sid`.
    pub fn wait_recorded(&mut self, sid: &str, seconds: u64) -> Result<()> {
        wait_recorded(&mut self.emulator, sid, seconds)
    }

    /// Waits for occupant `nick` to publish presence status `status`; returns the event.
    pub fn wait_status(&mut self, nick: &str, status: &str, timeout: Duration) -> Result<Value> {
        self.emulator.control.wait_for(
            "occupant-status",
            json!({ "nick": nick, "status": status }),
            timeout,
        )
    }

    /// The presence statuses occupant `nick` has published so far, in order (the emulator's
    /// `occupant-status` events).
    pub fn statuses(&mut self, nick: &str) -> Vec<String> {
        self.emulator
            .control
            .events()
            .iter()
            .filter(|e| e["event"] == json!("occupant-status") && e["nick"] == json!(nick))
            .filter_map(|e| e["status"].as_str().map(str::to_owned))
            .collect()
    }
}

fn session_connected(emulator: &mut PyService, nick: &str) -> Result<String> {
    let t = Duration::from_secs(15);
    let sent = emulator
        .control
        .wait_for("session-initiate-sent", json!({"occupant": nick}), t)?;
    let sid = sent["sid"]
        .as_str()
        .ok_or_else(|| anyhow!("no sid in {sent}"))?
        .to_string();
    emulator
        .control
        .wait_for("dtls-connected", json!({"sid": sid}), t)?;
    Ok(sid)
}

fn wait_recorded(emulator: &mut PyService, sid: &str, seconds: u64) -> Result<()> {
    let sid = sid.to_string();
    emulator.control.wait_event(
        &format!("{seconds} s of audio from the gateway"),
        Duration::from_secs(seconds * 3 + 10),
        |e| {
            e["event"] == json!("rx-audio")
                && e["sid"] == json!(sid)
                && e["seconds"].as_u64().is_some_and(|s| s >= seconds)
        },
    )?;
    Ok(())
}
