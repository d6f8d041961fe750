//! baresip (Debian `baresip-core`): a scriptable phone that plays a WAV as its microphone,
//! records what it hears, and reports call events on its JSON control port.

use crate::proc::{self, Supervised};
use crate::sipp::SippMessage;
use crate::{net, paths};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct Baresip {
    pub user: String,
    pub sip_port: u16,
    pub ctrl_port: u16,
    pub rec_dir: PathBuf,
    proc: Supervised,
    ctrl: TcpStream,
    buf: Vec<u8>,
    pub events: Vec<Value>,
}

/// Whether baresip answers incoming calls by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    Auto,
    Manual,
}

impl Baresip {
    /// Starts baresip as `user` on a free port below 6553 (its RTP range is 10×port), playing
    /// `mic_wav` (8 kHz mono 16-bit) and recording into `dir/<user>-rec`.
    pub fn start(dir: &Path, user: &str, mic_wav: &Path, answer: Answer) -> Result<Self> {
        Self::launch(dir, user, mic_wav, answer, None)
    }

    /// As [`Baresip::start`], registered as `user`@127.0.0.1 with `password` at the registrar
    /// on 127.0.0.1:`registrar_port` (G.711 only); returns once the registrar said 200.
    pub fn start_registered(
        dir: &Path,
        user: &str,
        password: &str,
        registrar_port: u16,
        mic_wav: &Path,
        answer: Answer,
    ) -> Result<Self> {
        let mode = match answer {
            Answer::Auto => "auto",
            Answer::Manual => "manual",
        };
        let account = format!(
            "<sip:{user}@127.0.0.1:{registrar_port}>;auth_pass={password};regint=60;\
             answermode={mode};audio_codecs=PCMU,PCMA"
        );
        let mut phone = Self::launch(dir, user, mic_wav, answer, Some(account))?;
        // REGISTER_OK may come before the control connection exists: ask instead.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let info = phone.command("reginfo")?;
            let text = info["data"].as_str().unwrap_or_default();
            if text.contains("OK") && text.contains("Expires") {
                return Ok(phone);
            }
            if Instant::now() >= deadline {
                bail!("baresip {user} did not register: {text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn launch(
        dir: &Path,
        user: &str,
        mic_wav: &Path,
        answer: Answer,
        account: Option<String>,
    ) -> Result<Self> {
        let (sip_port, ctrl_port) = pick_ports()?;
        let conf = dir.join(format!("{user}-baresip"));
        let rec_dir = dir.join(format!("{user}-rec"));
        proc::run(
            Command::new(paths::lab_dir().join("baresip/mk-baresip.sh"))
                .arg(&conf)
                .arg(user)
                .arg(sip_port.to_string())
                .arg(ctrl_port.to_string())
                .arg(mic_wav)
                .arg(&rec_dir)
                .arg(match answer {
                    Answer::Auto => "auto",
                    Answer::Manual => "manual",
                }),
        )?;
        if let Some(account) = &account {
            std::fs::write(conf.join("accounts"), format!("{account}\n"))?;
        }
        let mut cmd = Command::new("baresip");
        cmd.arg("-f").arg(&conf);
        if account.is_some() {
            // A registered phone's SIP messages go to its log (`-s`), for `sip_messages`.
            cmd.arg("-s");
        }
        let mut proc = Supervised::spawn(user, cmd, &dir.join(format!("{user}-baresip.log")))?;
        net::wait_tcp(ctrl_port, Duration::from_secs(10), || proc.check_alive())?;
        let ctrl = TcpStream::connect((net::LOOPBACK, ctrl_port))?;
        ctrl.set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok(Self {
            user: user.into(),
            sip_port,
            ctrl_port,
            rec_dir,
            proc,
            ctrl,
            buf: Vec::new(),
            events: Vec::new(),
        })
    }

    pub fn uri(&self) -> String {
        format!("sip:{}@127.0.0.1:{}", self.user, self.sip_port)
    }

    /// Sends a control command (`dial <uri>`, `hangup`, …) and returns its response.
    pub fn command(&mut self, line: &str) -> Result<Value> {
        let (cmd, params) = line.split_once(' ').unwrap_or((line, ""));
        let body = serde_json::to_vec(&json!({"command": cmd, "params": params, "token": "lab"}))?;
        let mut frame = format!("{}:", body.len()).into_bytes();
        frame.extend(body);
        frame.push(b',');
        self.ctrl.write_all(&frame)?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let msg = self.next_message(deadline)?;
            if msg.get("response") == Some(&json!(true)) {
                return Ok(msg);
            }
            self.events.push(msg);
        }
    }

    /// Waits for a call event such as `CALL_ESTABLISHED` or `CALL_CLOSED`.
    pub fn wait_event(&mut self, kind: &str, timeout: Duration) -> Result<Value> {
        if let Some(pos) = self.events.iter().position(|e| e["type"] == json!(kind)) {
            return Ok(self.events.remove(pos));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let msg = self
                .next_message(deadline)
                .with_context(|| format!("waiting for {kind} from baresip {}", self.user))?;
            if msg["type"] == json!(kind) {
                return Ok(msg);
            }
            self.events.push(msg);
        }
    }

    /// The SIP messages a registered phone sent and received so far (its `-s` trace), in
    /// order; e.g. the INVITE it received, to read its headers. `time` is not known (0).
    pub fn sip_messages(&self) -> Vec<SippMessage> {
        let log = std::fs::read_to_string(self.proc.log_path()).unwrap_or_default();
        sip_trace_messages(&log, &format!("127.0.0.1:{}", self.sip_port))
    }

    /// The recording of what baresip received in its last call (`*-dec.wav`), once finalised.
    pub fn received_wav(&self) -> Result<PathBuf> {
        recording(&self.rec_dir, "-dec.wav")
    }

    pub fn stop(&mut self) {
        let _ = self.command("quit");
        self.proc.stop();
    }

    fn next_message(&mut self, deadline: Instant) -> Result<Value> {
        loop {
            if let Some(msg) = take_netstring(&mut self.buf)? {
                return Ok(msg);
            }
            if Instant::now() >= deadline {
                bail!("timed out");
            }
            let mut chunk = [0u8; 4096];
            match self.ctrl.read(&mut chunk) {
                Ok(0) => bail!("baresip control connection closed"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut =>
                {
                    self.proc.check_alive()?
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        self.proc.stop();
    }
}

fn pick_ports() -> Result<(u16, u16)> {
    // baresip derives RTP ports as 10 × SIP port, so the SIP port must stay below 6553; it also
    // binds SIP/TLS on port + 1. Start at a per-process offset so parallel tests spread out.
    let free = |port: u32| {
        let port = port as u16;
        std::net::UdpSocket::bind((net::LOOPBACK, port)).is_ok()
            && std::net::TcpListener::bind((net::LOOPBACK, port)).is_ok()
    };
    // Each pick in this process starts further on: parallel tests check ports at about the same
    // time, and baresip binds its RTP ports only when a call starts, so two picks starting at
    // the same place would get the same ports (baresip then exits with EADDRINUSE).
    static PICKS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let pick = PICKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let offset = (std::process::id() + pick * 37) % 700;
    for i in 0..700u32 {
        let p = 5100 + ((offset + i) % 700) * 2;
        if free(p) && free(p + 1) && (0..10).all(|k| free(p * 10 + k)) {
            return Ok((p as u16, net::free_tcp_port()?));
        }
    }
    Err(anyhow!("no free port range for baresip"))
}

/// Splits baresip's SIP trace: each message is a colour escape and `#` ending a line (its
/// call-progress display may precede it on that line, as it rewrites itself with `\r`), a line
/// `<TRANSPORT> <src> -> <dst>`, the message (CRLF lines), then a colour-reset line. A message is
/// `sent` when its source is `local` (`ip:port`).
fn sip_trace_messages(log: &str, local: &str) -> Vec<SippMessage> {
    let mut out = Vec::new();
    let mut lines = log.lines();
    while let Some(line) = lines.next() {
        if !(line.contains('\u{1b}') && line.ends_with('#')) {
            continue;
        }
        let Some(route) = lines.next() else { break };
        let Some((src, _dst)) = route
            .split_once(' ')
            .and_then(|(_, addrs)| addrs.split_once(" -> "))
        else {
            continue;
        };
        let mut text = String::new();
        for l in lines.by_ref() {
            if l.starts_with("\u{1b}[;m") {
                break;
            }
            text.push_str(l.trim_end_matches('\r'));
            text.push('\n');
        }
        out.push(SippMessage {
            sent: src.trim() == local,
            time: 0.0,
            text,
        });
    }
    out
}

/// Pops one `len:json,` netstring from the front of `buf`.
fn take_netstring(buf: &mut Vec<u8>) -> Result<Option<Value>> {
    let Some(colon) = buf.iter().position(|&b| b == b':') else {
        return Ok(None);
    };
    let len: usize = std::str::from_utf8(&buf[..colon])?
        .trim()
        .parse()
        .context("bad netstring length from baresip")?;
    if buf.len() < colon + 1 + len + 1 {
        return Ok(None);
    }
    let msg = serde_json::from_slice(&buf[colon + 1..colon + 1 + len])?;
    buf.drain(..colon + 1 + len + 1);
    Ok(Some(msg))
}

/// The newest file in `dir` ending with `suffix`, waiting until its WAV header is final
/// (sndfile writes the length only when the call ends).
fn recording(dir: &Path, suffix: &str) -> Result<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let newest = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
            .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
            .map(|e| e.path());
        if let Some(path) = newest {
            if hound::WavReader::open(&path)
                .map(|r| r.duration() > 0)
                .unwrap_or(false)
            {
                return Ok(path);
            }
        }
        if Instant::now() >= deadline {
            bail!("no finished *{suffix} recording in {}", dir.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sip_trace_splits_into_messages_with_direction_and_headers() {
        let log = "baresip is ready.\n\u{1b}[36;1m#\nUDP 127.0.0.1:5200 -> 127.0.0.1:5090\n\
                   REGISTER sip:127.0.0.1:5090 SIP/2.0\r\nTo: <sip:bob@127.0.0.1>\r\n\r\n\
                   \u{1b}[;m\n\u{1b}[32;1m#\nUDP 127.0.0.1:5090 -> 127.0.0.1:5200\n\
                   INVITE sip:bob@127.0.0.1:5200 SIP/2.0\r\nX-Room: r@muc\r\n\r\nv=0\r\n\u{1b}[;m\n\
                   \r[0:00:01] audio=0/0 (bit/s)    \r\u{1b}[36;1m#\nUDP 127.0.0.1:5090 -> 127.0.0.1:5200\n\
                   BYE sip:bob@127.0.0.1:5200 SIP/2.0\r\n\r\n\u{1b}[;m\n";
        let m = sip_trace_messages(log, "127.0.0.1:5200");
        assert_eq!(m.len(), 3);
        assert!(m[0].sent && !m[1].sent && !m[2].sent);
        assert_eq!(m[2].first_line(), "BYE sip:bob@127.0.0.1:5200 SIP/2.0");
        assert_eq!(m[1].first_line(), "INVITE sip:bob@127.0.0.1:5200 SIP/2.0");
        assert_eq!(m[1].header("x-room"), Some("r@muc"));
    }
}
