//! Drivers for the Python processes in `tools/emulator`: the conference emulator (Jicofo and
//! videobridge stand-in) and the echo occupant (a minimal scripted gateway stand-in).

use crate::control::ControlClient;
use crate::proc::Supervised;
use crate::prosody::Prosody;
use crate::{net, paths};
use anyhow::{Context, Result};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const READY_TIMEOUT: Duration = Duration::from_secs(20);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// One emulated participant: what it says in the room.
#[derive(Clone, Debug)]
pub struct Participant {
    pub name: String,
    pub sound: Sound,
    /// Peak level of a tone, dBFS.
    pub level_dbfs: Option<f64>,
}

#[derive(Clone, Debug)]
pub enum Sound {
    Tone(f64),
    Wav(PathBuf),
}

impl Participant {
    pub fn tone(name: &str, hz: f64) -> Self {
        Self {
            name: name.into(),
            sound: Sound::Tone(hz),
            level_dbfs: None,
        }
    }

    fn spec(&self) -> String {
        let mut s = format!("name={}", self.name);
        match &self.sound {
            Sound::Tone(hz) => s += &format!(",tone={hz}"),
            Sound::Wav(p) => s += &format!(",wav={}", p.display()),
        }
        if let Some(l) = self.level_dbfs {
            s += &format!(",level={l}");
        }
        s
    }

    /// Arguments of the `add-participant` control command.
    pub fn command_args(&self, room: &str) -> Value {
        let mut v = json!({ "room": room, "name": self.name });
        match &self.sound {
            Sound::Tone(hz) => v["tone"] = json!(hz),
            Sound::Wav(p) => v["wav"] = json!(p),
        }
        if let Some(l) = self.level_dbfs {
            v["level"] = json!(l);
        }
        v
    }
}

/// A Python service of `tools/emulator` with a ready file and a control port.
pub struct PyService {
    pub proc: Supervised,
    pub control: ControlClient,
    pub out_dir: PathBuf,
    report_name: &'static str,
}

impl PyService {
    fn start(
        name: &str,
        script: &str,
        report_name: &'static str,
        args: Vec<String>,
        dir: &Path,
    ) -> Result<Self> {
        let out_dir = dir.join(name);
        std::fs::create_dir_all(&out_dir)?;
        let ready = out_dir.join("ready.json");
        let mut cmd = Command::new(paths::python());
        cmd.arg(paths::emulator_dir().join(script))
            .args(&args)
            .arg("--control-port")
            .arg("0")
            .arg("--ready-file")
            .arg(&ready)
            .arg("--out-dir")
            .arg(&out_dir)
            .env("PYTHONUNBUFFERED", "1");
        let mut proc = Supervised::spawn(name, cmd, &dir.join(format!("{name}.log")))?;
        net::wait_file(&ready, READY_TIMEOUT, || proc.check_alive())
            .with_context(|| format!("{name} never became ready; log:\n{}", proc.log_tail(30)))?;
        let info: Value = serde_json::from_str(&std::fs::read_to_string(&ready)?)
            .with_context(|| format!("parsing {}", ready.display()))?;
        let port = info["control_port"]
            .as_u64()
            .with_context(|| format!("no control_port in {info}"))? as u16;
        let control = ControlClient::connect(name, port)?;
        Ok(Self {
            proc,
            control,
            out_dir,
            report_name,
        })
    }

    pub fn request(&mut self, cmd: &str, args: Value) -> Result<Value> {
        self.control.request(cmd, args, COMMAND_TIMEOUT)
    }

    /// Like [`Self::request`], for commands that may take longer (a `dial` waits for the
    /// gateway's answer, up to the emulator's `--iq-timeout` per attempt).
    pub fn request_with_timeout(
        &mut self,
        cmd: &str,
        args: Value,
        timeout: Duration,
    ) -> Result<Value> {
        self.control.request(cmd, args, timeout)
    }

    /// Asks the service to finish (recordings finalised, report written), waits for it to exit
    /// and returns its report.
    pub fn quit(&mut self) -> Result<Value> {
        self.request("quit", Value::Null)?;
        let status = self.proc.wait_exit(Duration::from_secs(15))?;
        anyhow::ensure!(
            status.success(),
            "{} exited with {}; log:\n{}",
            self.proc.name(),
            crate::proc::describe(status),
            self.proc.log_tail(30)
        );
        let path = self.out_dir.join(self.report_name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        Ok(serde_json::from_str(&text)?)
    }
}

/// Options of the conference emulator.
#[derive(Clone, Debug)]
pub struct EmulatorOptions {
    pub rooms: Vec<String>,
    pub participants: Vec<Participant>,
    pub min_participants: u32,
    /// Answer `<conference/>` requests to `focus.<domain>` as Jicofo does.
    pub focus_component: bool,
}

impl EmulatorOptions {
    pub fn room_with(room: &str, participants: Vec<Participant>) -> Self {
        Self {
            rooms: vec![room.into()],
            participants,
            min_participants: 2,
            focus_component: true,
        }
    }
}

pub fn start_emulator(prosody: &Prosody, dir: &Path, opts: &EmulatorOptions) -> Result<PyService> {
    start_emulator_with_args(prosody, dir, opts, &[])
}

/// [`start_emulator`] with more command-line options of `conference_emulator.py` (e.g.
/// `--no-brewery`, `--brewery NAME`, `--iq-timeout 5`), appended after the usual ones.
pub fn start_emulator_with_args(
    prosody: &Prosody,
    dir: &Path,
    opts: &EmulatorOptions,
    extra: &[String],
) -> Result<PyService> {
    let mut args = vec![
        "--xmpp-host".into(),
        net::LOOPBACK.to_string(),
        "--xmpp-port".into(),
        prosody.c2s_port.to_string(),
        "--domain".into(),
        prosody.domain.clone(),
        "--focus-user".into(),
        "focus".into(),
        "--focus-password".into(),
        prosody.focus_password.clone(),
        "--min-participants".into(),
        opts.min_participants.to_string(),
        // Jicofo waits up to Smack's reply timeout for disco#info; the lab's occupants answer
        // within milliseconds, so a silent one need not stall a test for long.
        "--disco-timeout".into(),
        "1".into(),
    ];
    if opts.focus_component {
        args.extend([
            "--component-port".into(),
            prosody.component_port.to_string(),
            "--component-secret".into(),
            prosody.component_secret.clone(),
        ]);
    }
    for room in &opts.rooms {
        args.extend(["--room".into(), room.clone()]);
    }
    for p in &opts.participants {
        args.extend(["--participant".into(), p.spec()]);
    }
    args.extend(extra.iter().cloned());
    PyService::start(
        "emulator",
        "conference_emulator.py",
        "report.json",
        args,
        dir,
    )
}

/// Options of the echo occupant, the scripted stand-in for a gateway.
#[derive(Clone, Debug, Default)]
pub struct EchoOptions {
    pub room: String,
    /// Send silence instead of the echo.
    pub silent: bool,
    /// Leave disco#info unanswered, so the focus offers its default audio+video+data.
    pub no_disco: bool,
}

pub fn start_echo_occupant(prosody: &Prosody, dir: &Path, opts: &EchoOptions) -> Result<PyService> {
    let mut args = vec![
        "--xmpp-host".into(),
        net::LOOPBACK.to_string(),
        "--xmpp-port".into(),
        prosody.c2s_port.to_string(),
        "--domain".into(),
        prosody.domain.clone(),
        "--room".into(),
        opts.room.clone(),
    ];
    if opts.silent {
        args.push("--silent".into());
    }
    if opts.no_disco {
        args.push("--no-disco".into());
    }
    PyService::start("echo", "echo_occupant.py", "echo-report.json", args, dir)
}

/// How a fake brewery member answers a Rayo `<dial/>` that it accepts.
#[derive(Clone, Debug, PartialEq)]
pub enum FakeAnswer {
    /// A result with `<ref uri="xmpp:room@muc/<nick>"/>`.
    Ref,
    /// An error IQ with this condition (e.g. `service-unavailable`).
    Error(String),
    /// No answer at all.
    Timeout,
}

/// Options of the fake jigasi brewery member (`tools/emulator/tests/fake_brewery_member.py`),
/// which stands in for a gateway's brewery connection in tests of the emulator's dial-out side.
#[derive(Clone, Debug)]
pub struct FakeMemberOptions {
    /// Its resource and brewery nick; also names its output folder (`fake-<nick>`).
    pub nick: String,
    /// The `participants` stat (what Jicofo's selection compares).
    pub participants: u32,
    /// More stats, or overrides (`graceful_shutdown` = `true`, `supports_sip` = `false`, `region`…).
    pub stats: Vec<(String, String)>,
    pub answer: FakeAnswer,
    /// Before answering with a ref, join the dialled room as a dial-out call (an anonymous occupant
    /// with `JigasiCallDirection=out` and `<nick>` = the number) that takes a Rayo `<hangup/>`.
    pub join_room: bool,
    /// Bare JID dials must come from; `None`: the brewery room (only dials through the brewery MUC
    /// pass, as the gateway's `xmpp.allowed_jid` default); `Some("")`: anyone.
    pub allowed_jid: Option<String>,
}

impl FakeMemberOptions {
    pub fn new(nick: &str, participants: u32) -> Self {
        Self {
            nick: nick.into(),
            participants,
            stats: Vec::new(),
            answer: FakeAnswer::Ref,
            join_room: false,
            allowed_jid: None,
        }
    }
}

/// Starts a fake brewery member logged in as `jigasi@auth.<domain>/<nick>` in the default brewery
/// (`jigasibrewery@internal-muc.<domain>`); returns once it has joined with its stats. Only the
/// focus may create the brewery in the lab Prosody, so start the emulator first (the member
/// retries its join for 20 s). Its control commands: `set-stats {stats}`, `set-answer {answer,
/// condition?, text?}`, `leave-call`, `status`, `events`, `quit` (report `fake-member-report.json`).
pub fn start_fake_brewery_member(
    prosody: &Prosody,
    dir: &Path,
    opts: &FakeMemberOptions,
) -> Result<PyService> {
    let mut args = vec![
        "--xmpp-host".into(),
        net::LOOPBACK.to_string(),
        "--xmpp-port".into(),
        prosody.c2s_port.to_string(),
        "--domain".into(),
        prosody.domain.clone(),
        "--password".into(),
        prosody.jigasi_password.clone(),
        "--nick".into(),
        opts.nick.clone(),
        "--participants".into(),
        opts.participants.to_string(),
    ];
    for (name, value) in &opts.stats {
        args.extend(["--stat".into(), format!("{name}={value}")]);
    }
    match &opts.answer {
        FakeAnswer::Ref => {}
        FakeAnswer::Error(condition) => args.extend([
            "--answer".into(),
            "error".into(),
            "--error-condition".into(),
            condition.clone(),
        ]),
        FakeAnswer::Timeout => args.extend(["--answer".into(), "timeout".into()]),
    }
    if opts.join_room {
        args.push("--join-room".into());
    }
    if let Some(jid) = &opts.allowed_jid {
        args.extend(["--allowed-jid".into(), jid.clone()]);
    }
    PyService::start(
        &format!("fake-{}", opts.nick),
        "tests/fake_brewery_member.py",
        "fake-member-report.json",
        args,
        dir,
    )
}
