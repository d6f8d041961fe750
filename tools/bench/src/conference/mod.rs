//! The conference side of the load benchmark: Jicofo and the videobridge, emulated cheaply enough
//! to serve hundreds of gateway sessions on a 2-core machine next to the gateway itself.
//!
//! * Jicofo (`focus`): one XMPP login as `focus@auth.<domain>` for every room, the
//!   `focus.<domain>` component answering the gateway's `<conference/>`, the jigasi brewery, and
//!   a Jicofo-shaped audio-only `session-initiate` to every jigasi-like occupant.
//! * The videobridge (`bridge`): str0m endpoints (ICE-lite, DTLS server, RTP mode) on one UDP
//!   socket per media thread, K speakers per session sent from packets encoded once at start,
//!   one timer driving every session's sends, and per session what the gateway sent back: packets,
//!   loss, late arrivals, and a tone's level (Opus decoded to 8 kHz, Goertzel over one second).
//!
//! Everything runs on threads of its own (one for XMPP, `media_threads` for media), so its CPU
//! time is measured exactly (thread CPU clocks) and the API is the same from sync and async code.

// This is an API for loadgen's driver and for tests/conference.rs (which includes this module
// by path); each uses part of it, so some items are unused in each build.
#![allow(dead_code)]

mod audio;
mod bridge;
mod component;
mod focus;
mod session;
mod stanzas;
#[cfg(test)]
mod testing;
mod udp;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::procstat::thread_cpu;

pub use audio::{SpeakerClick, SpeakerSignal};
// The click's encoding without a running conference, for the latency module's tests.
#[allow(unused_imports)]
pub use audio::speaker_click;

/// What the conference side connects to and how it behaves.
#[derive(Debug, Clone)]
pub struct ConferenceOptions {
    pub xmpp_host: IpAddr,
    pub c2s_port: u16,
    pub component_port: u16,
    pub component_secret: String,
    /// The XMPP domain (`meet.jitsi`); rooms are on `muc.<domain>`, the focus account on
    /// `auth.<domain>`, the component is `focus.<domain>`.
    pub domain: String,
    pub focus_user: String,
    pub focus_password: String,
    /// The jigasi brewery room to create and sit in (`None`: none).
    pub brewery: Option<String>,
    /// Emulated remote speakers per session (K Opus streams to each gateway).
    pub speakers: usize,
    /// Peak level of the speakers' tones.
    pub speaker_level_dbfs: f64,
    /// A tone each, or speech-like audio with a tone (what it costs the gateway to decode).
    pub speaker_signal: SpeakerSignal,
    /// The tone expected from every gateway (the phones' tone), unless a room has its own
    /// ([`Conference::expect_tone`]); `None`: report the dominant frequency instead.
    pub phone_tone_hz: Option<f64>,
    /// Media threads, each with its own UDP socket and share of the sessions.
    pub media_threads: usize,
    /// The address media sockets bind and the bridge announces as its host candidate.
    pub bind_ip: IpAddr,
    /// Decode the gateway's audio one second in this many (1: all of it). Decoding is most of
    /// the bridge's per-session CPU; the packet counts are always complete.
    pub decode_every: u32,
}

impl ConferenceOptions {
    /// For the lab's Prosody (`gateway_lab::prosody::Prosody`), with `speakers` speakers.
    pub fn for_prosody(p: &gateway_lab::prosody::Prosody, speakers: usize) -> ConferenceOptions {
        ConferenceOptions {
            xmpp_host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            c2s_port: p.c2s_port,
            component_port: p.component_port,
            component_secret: p.component_secret.clone(),
            domain: p.domain.clone(),
            focus_user: "focus".into(),
            focus_password: p.focus_password.clone(),
            brewery: Some(format!("jigasibrewery@internal-muc.{}", p.domain)),
            speakers,
            speaker_level_dbfs: -12.0,
            speaker_signal: SpeakerSignal::Tone,
            phone_tone_hz: None,
            media_threads: 1,
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            decode_every: 1,
        }
    }

    fn muc_domain(&self) -> String {
        format!("muc.{}", self.domain)
    }

    /// `name` or `name@muc.<domain>` as the bare room JID, lower-cased.
    fn room_jid(&self, room: &str) -> String {
        if room.contains('@') {
            room.to_ascii_lowercase()
        } else {
            format!("{}@{}", room, self.muc_domain()).to_ascii_lowercase()
        }
    }
}

/// What the bridge received from one gateway.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RxStats {
    /// The gateway's SSRC (from its session-accept).
    pub ssrc: Option<u32>,
    pub packets: u64,
    pub bytes: u64,
    /// Sequence numbers from the first to the highest seen: what should have arrived.
    pub expected: u64,
    /// Inter-arrival times above 40 ms.
    pub late: u64,
    pub max_interarrival: Duration,
    pub first: Option<Instant>,
    pub last: Option<Instant>,
    /// The last RFC 6464 level (−dBov) the gateway sent.
    pub audio_level: Option<u8>,
    pub decode_errors: u64,
    /// Packets on other SSRCs than the announced one.
    pub other_ssrc_packets: u64,
}

impl RxStats {
    /// Sequence numbers never received.
    pub fn lost(&self) -> u64 {
        self.expected.saturating_sub(self.packets)
    }
}

/// One second of the gateway's decoded audio, measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ToneReading {
    /// When the second ended (arrival of its last packet).
    pub at: Instant,
    /// The expected tone and its peak level in dBFS (Goertzel, Hann window).
    pub hz: Option<f64>,
    pub dbfs: Option<f64>,
    pub rms_dbfs: f64,
    /// Without an expected tone: the strongest frequency and its level.
    pub dominant: Option<(f64, f64)>,
}

/// A window of the gateway's decoded audio (8 kHz), for latency cross-correlation.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    pub samples: Vec<i16>,
    /// When the packet behind each 160 samples arrived (concealed frames: with the packet that
    /// revealed their loss).
    pub frame_arrivals: Vec<Instant>,
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndedBy {
    /// The gateway sent session-terminate (with this reason).
    Gateway(Option<String>),
    /// The gateway's occupant left the room.
    Left,
    /// The bridge failed (ICE/DTLS timeout, str0m error).
    Failed(String),
    /// The conference side stopped.
    Stopped,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionReport {
    pub sid: String,
    /// The bare room JID.
    pub room: String,
    /// The gateway's occupant nick.
    pub nick: String,
    pub initiate_sent: Instant,
    /// The gateway's answer to session-initiate: `Ok` for a result, else the error condition.
    pub initiate_answer: Option<std::result::Result<Instant, String>>,
    pub transport_info: Option<Instant>,
    pub accepted: Option<Instant>,
    /// ICE and DTLS up.
    pub connected: Option<Instant>,
    pub ended: Option<(Instant, EndedBy)>,
    pub rx: RxStats,
    pub tx_packets: u64,
    /// Speaker packets not sent because the media thread fell behind.
    pub tx_skipped: u64,
    /// Every datagram from and to the gateway (RTP, RTCP, STUN, DTLS).
    pub datagrams: (u64, u64),
    pub tone: Option<ToneReading>,
    worker: usize,
}

impl SessionReport {
    pub fn is_live(&self) -> bool {
        self.ended.is_none()
    }

    /// Seconds connected, until `now` or the end.
    pub fn connected_seconds(&self, now: Instant) -> f64 {
        match self.connected {
            Some(c) => {
                let end = self.ended.as_ref().map_or(now, |(t, _)| *t);
                end.saturating_duration_since(c).as_secs_f64()
            }
            None => 0.0,
        }
    }
}

/// CPU time of the conference side's own threads.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cpu {
    pub xmpp: Duration,
    pub media: Duration,
}

impl Cpu {
    pub fn total(&self) -> Duration {
        self.xmpp + self.media
    }
}

#[derive(Debug, Clone)]
pub struct Snapshot {
    pub at: Instant,
    pub sessions: Vec<SessionReport>,
    pub cpu: Cpu,
    pub errors: Vec<String>,
}

impl Snapshot {
    /// The latest session of `room` (name or bare JID) with the gateway occupant `nick`, if given.
    pub fn session(&self, room: &str, nick: Option<&str>) -> Option<&SessionReport> {
        let room = room.to_ascii_lowercase();
        self.sessions
            .iter()
            .filter(|s| s.room == room || s.room.split('@').next() == Some(room.as_str()))
            .filter(|s| nick.is_none_or(|n| s.nick == n))
            .max_by_key(|s| s.initiate_sent)
    }

    /// Connected session-seconds so far: what the CPU time is spread over.
    pub fn session_seconds(&self) -> f64 {
        self.sessions
            .iter()
            .map(|s| s.connected_seconds(self.at))
            .sum()
    }

    /// CPU seconds of the conference side per connected session-second.
    pub fn cpu_per_session_second(&self) -> Option<f64> {
        let s = self.session_seconds();
        (s > 0.0).then(|| self.cpu.total().as_secs_f64() / s)
    }
}

/// State written by the XMPP and media threads, read by the API.
#[derive(Default)]
struct State {
    sessions: BTreeMap<String, SessionReport>,
    /// Expected tone per bare room JID.
    tones: HashMap<String, f64>,
    xmpp_cpu: Duration,
    media_cpu: Vec<Duration>,
    errors: Vec<String>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A thread that panicked while holding the lock left consistent enough counters.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.lock());
        self.changed.notify_all();
    }

    fn error(&self, what: String) {
        self.update(|s| {
            if s.errors.len() < 1000 {
                s.errors.push(what)
            }
        });
    }
}

/// The running conference side. Dropping it stops it.
pub struct Conference {
    opts: ConferenceOptions,
    shared: Arc<Shared>,
    workers: Vec<bridge::WorkerHandle>,
    focus: Option<focus::FocusHandle>,
    tones: Vec<f64>,
}

impl Conference {
    /// Encodes the speakers' loops, starts the media threads, logs in as the focus, connects
    /// the focus component and joins the brewery; returns once all of that is done (it blocks
    /// the calling thread meanwhile, for up to 20 s: from async code, `spawn_blocking`).
    pub fn start(opts: ConferenceOptions) -> Result<Conference> {
        if opts.speakers == 0 {
            bail!("at least one speaker");
        }
        // As the gateway does: tokio-xmpp's rustls needs a process-wide provider, and every
        // str0m session would otherwise resolve its own.
        let _ = rustls::crypto::ring::default_provider().install_default();
        str0m::crypto::from_feature_flags().install_process_default();
        let loops =
            audio::speaker_loops(opts.speakers, opts.speaker_level_dbfs, opts.speaker_signal)?;
        let tones = loops.iter().map(|l| l.hz).collect();
        let cert = dtls_cert()?;
        let fingerprint = fingerprint(&cert)?;
        let env = Arc::new(session::MediaEnv::new(cert, loops, opts.decode_every));
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                media_cpu: vec![Duration::ZERO; opts.media_threads.max(1)],
                ..Default::default()
            }),
            changed: Condvar::new(),
        });
        let mut workers = Vec::new();
        for i in 0..opts.media_threads.max(1) {
            workers.push(
                bridge::spawn(i, opts.bind_ip, env.clone(), shared.clone())
                    .context("starting a media thread")?,
            );
        }
        let targets = workers
            .iter()
            .map(|w| focus::MediaTarget {
                tx: w.tx.clone(),
                local: w.local,
            })
            .collect();
        let mut conference = Conference {
            opts: opts.clone(),
            shared: shared.clone(),
            workers,
            focus: None,
            tones,
        };
        conference.focus = Some(focus::spawn(opts, shared, targets, fingerprint)?);
        Ok(conference)
    }

    /// The frequency of each emulated speaker's tone, in speaker order.
    pub fn speaker_tones(&self) -> &[f64] {
        &self.tones
    }

    /// Measure `hz` on the gateway's audio in `room` (name or bare JID), for sessions now and later.
    pub fn expect_tone(&self, room: &str, hz: f64) {
        let room = self.opts.room_jid(room);
        let live: Vec<(usize, String)> = {
            let mut s = self.shared.lock();
            s.tones.insert(room.clone(), hz);
            s.sessions
                .values()
                .filter(|r| r.room == room && r.is_live())
                .map(|r| (r.worker, r.sid.clone()))
                .collect()
        };
        for (w, sid) in live {
            self.workers[w].send(bridge::Cmd::Tone { sid, hz });
        }
    }

    /// Every session so far, live and ended, with the CPU time used.
    pub fn snapshot(&self) -> Snapshot {
        let s = self.shared.lock();
        snapshot_of(&s)
    }

    /// Waits until `f` returns something for a snapshot, re-checking on every change (media
    /// threads publish at least every 250 ms). Errors after `timeout` with the last snapshot.
    /// Blocks the calling thread.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Snapshot) -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            let snap = snapshot_of(&state);
            if let Some(t) = f(&snap) {
                return Ok(t);
            }
            let now = Instant::now();
            if now >= deadline {
                bail!(
                    "{what}: not within {timeout:?}; sessions: {:#?}; errors: {:?}",
                    snap.sessions,
                    snap.errors
                );
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Records the next `duration` of the gateway's decoded audio in `room`'s latest live
    /// session (decoded whatever `decode_every` says). The recording arrives on the returned
    /// channel when complete, or shorter when the session ends first.
    pub fn record(
        &self,
        room: &str,
        duration: Duration,
    ) -> Result<std::sync::mpsc::Receiver<Recording>> {
        let (worker, sid) = self.live_session(room)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let frames = (duration.as_millis() as usize).div_ceil(20);
        self.workers[worker].send(bridge::Cmd::Record {
            sid,
            frames,
            reply: tx,
        });
        Ok(rx)
    }

    /// The first speaker's loop with `click` (48 kHz PCM) added `offset` samples into one
    /// frame, Opus-encoded in the loop's context, for [`Conference::inject_click`]. Encodes the
    /// loop twice (tens of milliseconds): once per measurement, off the async threads.
    pub fn speaker_click(&self, click: &[i16], offset: usize) -> Result<Arc<SpeakerClick>> {
        let c = audio::speaker_click(
            self.opts.speaker_level_dbfs,
            self.opts.speaker_signal,
            click,
            offset,
        )?;
        Ok(Arc::new(c))
    }

    /// Has `room`'s latest live session send `click` in place of its first speaker's packet
    /// when the loop reaches the click's position (within a second). The instant that packet
    /// left arrives on the returned channel, which disconnects if the session ends first.
    pub fn inject_click(
        &self,
        room: &str,
        click: &Arc<SpeakerClick>,
    ) -> Result<std::sync::mpsc::Receiver<Instant>> {
        let (worker, sid) = self.live_session(room)?;
        let (tx, rx) = std::sync::mpsc::channel();
        self.workers[worker].send(bridge::Cmd::Click {
            sid,
            click: click.clone(),
            reply: tx,
        });
        Ok(rx)
    }

    /// The media thread and sid of `room`'s latest live session.
    fn live_session(&self, room: &str) -> Result<(usize, String)> {
        let room = self.opts.room_jid(room);
        let s = self.shared.lock();
        let r = s
            .sessions
            .values()
            .filter(|r| r.room == room && r.is_live())
            .max_by_key(|r| r.initiate_sent)
            .with_context(|| format!("no live session in {room}"))?;
        Ok((r.worker, r.sid.clone()))
    }

    /// Stops: session-terminate to every live session, leaves the rooms, closes the XMPP
    /// streams and the media threads; returns the final snapshot.
    pub fn stop(mut self) -> Snapshot {
        self.shutdown();
        self.snapshot()
    }

    fn shutdown(&mut self) {
        if let Some(f) = self.focus.take() {
            f.stop();
        }
        for w in self.workers.drain(..) {
            w.stop();
        }
    }
}

impl Drop for Conference {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn snapshot_of(s: &State) -> Snapshot {
    Snapshot {
        at: Instant::now(),
        sessions: s.sessions.values().cloned().collect(),
        cpu: Cpu {
            xmpp: s.xmpp_cpu,
            media: s.media_cpu.iter().sum(),
        },
        errors: s.errors.clone(),
    }
}

/// The process's DTLS certificate (ECDSA P-256), shared by every session as the gateway does.
fn dtls_cert() -> Result<str0m::config::DtlsCert> {
    let from_flags;
    let provider = match str0m::config::CryptoProvider::get_default() {
        Some(p) => p,
        None => {
            from_flags = str0m::crypto::from_feature_flags();
            &from_flags
        }
    };
    provider
        .dtls_provider
        .generate_certificate()
        .context("generating the DTLS certificate")
}

/// The certificate's sha-256 fingerprint as Jingle carries it (colon hex), read from a
/// throwaway `Rtc` (str0m computes it there).
fn fingerprint(cert: &str0m::config::DtlsCert) -> Result<String> {
    let mut rtc = str0m::RtcConfig::new()
        .set_dtls_cert(cert.clone())
        .build(Instant::now());
    let fp = rtc.direct_api().local_dtls_fingerprint().to_string();
    fp.split_once(' ')
        .map(|(_, v)| v.to_string())
        .with_context(|| format!("fingerprint {fp:?}"))
}

/// Joins a thread, reporting a panic as an error.
fn join(name: &str, t: JoinHandle<()>, shared: &Shared) {
    if t.join().is_err() {
        shared.error(format!("the {name} thread panicked"));
    }
}
