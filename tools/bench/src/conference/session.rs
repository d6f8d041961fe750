//! One bridge endpoint for one gateway session, sans-IO: str0m's `Rtc` from the videobridge's side
//! (ICE-lite and controlled, DTLS server, RTP mode) sending the speakers' pre-encoded packets,
//! and the analysis of the one stream the gateway sends back.
//!
//! str0m recipe (`str0m-aiortc-interop.md`, and `media::conference_leg` on the other side): RTP
//! mode; the Jingle header-extension ids instead of str0m's defaults (only audio-level here, so
//! no mid is written into our packets); one TX SSRC per mid (two on one mid lose packets), so
//! speaker i has its own local mid, which never goes on the wire; `poll_output` drained after
//! every input; any `handle_input` error is fatal; our own connect timeout.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::config::{DtlsCert, Fingerprint};
use str0m::format::{Codec, FormatParams};
use str0m::media::{Frequency, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, ExtensionValues, RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, CandidateKind, Event, IceCreds, Input, Output, Rtc, RtcConfig};

use super::audio::{self, Decode, SpeakerClick, SpeakerLoop, FRAME_8K, WINDOW, WINDOW_FRAMES};
use super::stanzas::{
    RemoteCandidate, RemoteFingerprint, AUDIO_LEVEL_EXT, OPUS_PT, TELEPHONE_EVENT_PT,
};
use super::{Recording, RxStats, ToneReading};

/// ICE and DTLS must be up this long after the offer; the gateway gives up after 10 s itself.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// An inter-arrival above this counts as a late packet (two frames).
pub const LATE: Duration = Duration::from_millis(40);
/// DTLS records that arrive before the gateway's fingerprint are held, at most this many.
const HELD_MAX: usize = 16;
/// Decoded frames dropped after a decoder (re)start, while it settles.
const WARMUP_FRAMES: usize = 3;
/// Lost frames concealed between two packets, at most (a longer gap is a gap).
const MAX_CONCEAL: u64 = 5;

/// What every session of a run shares.
pub struct MediaEnv {
    pub cert: DtlsCert,
    pub loops: Arc<Vec<SpeakerLoop>>,
    /// The loops' packets as shared buffers: sending one is a reference count, not a copy.
    pub packets: Vec<Vec<Arc<[u8]>>>,
    pub hann: Arc<Vec<f32>>,
    /// Decode one second in this many (1: always).
    pub decode_every: u32,
}

impl MediaEnv {
    pub fn new(cert: DtlsCert, loops: Arc<Vec<SpeakerLoop>>, decode_every: u32) -> MediaEnv {
        let packets = loops
            .iter()
            .map(|l| l.packets.iter().map(|p| Arc::from(p.as_slice())).collect())
            .collect();
        MediaEnv {
            cert,
            loops,
            packets,
            hann: audio::hann(),
            decode_every: decode_every.max(1),
        }
    }
}

/// A datagram to send.
#[derive(Debug)]
pub struct Datagram {
    pub to: SocketAddr,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    Connected,
    Failed(String),
}

struct TxStream {
    ssrc: Ssrc,
    seq: u64,
    ts: u32,
}

#[derive(Debug, Clone, PartialEq)]
enum State {
    Connecting { deadline: Instant },
    Connected,
    Failed,
}

pub struct BridgeSession {
    rtc: Rtc,
    env: Arc<MediaEnv>,
    state: State,
    tx: Vec<TxStream>,
    /// Position in the speaker loops.
    frame: usize,
    pub tx_packets: u64,
    pub tx_skipped: u64,
    /// Every datagram handled and produced (RTP, RTCP, STUN, DTLS).
    pub datagrams_in: u64,
    pub datagrams_out: u64,
    rx_mid: Mid,
    gateway_ssrc: Option<u32>,
    has_fingerprint: bool,
    held: Vec<(Instant, SocketAddr, SocketAddr, Vec<u8>)>,
    rtc_timeout: Instant,
    /// The latest time given to str0m: datagrams are stamped by the kernel on arrival and may be
    /// read after a later timeout, but str0m's clock must not go back.
    clock: Instant,
    /// The arrival time of the datagram being handled, for the analysis.
    arrival: Instant,
    transmits: VecDeque<Datagram>,
    events: VecDeque<SessionEvent>,
    pub rx: Analysis,
    /// A click for the first speaker, waiting for its loop position, and who to tell when it
    /// was sent.
    click: Option<(Arc<SpeakerClick>, std::sync::mpsc::Sender<Instant>)>,
    /// The click went into the frame just written: told once its datagram is out.
    click_written: Option<std::sync::mpsc::Sender<Instant>>,
}

impl BridgeSession {
    /// A bridge endpoint with our ICE credentials `ice`, a host candidate at `local` (the
    /// address of the socket its datagrams go through) and one send stream per SSRC of
    /// `speakers` (speaker i plays loop i). `phase` staggers the decoding duty cycle.
    pub fn new(
        now: Instant,
        env: Arc<MediaEnv>,
        local: SocketAddr,
        ice: IceCreds,
        speakers: &[u32],
        phase: u32,
    ) -> Result<BridgeSession, String> {
        if speakers.len() > env.loops.len() {
            return Err(format!(
                "{} speakers but {} loops",
                speakers.len(),
                env.loops.len()
            ));
        }
        let mut config = RtcConfig::new()
            .set_rtp_mode(true)
            .set_ice_lite(true)
            .set_dtls_cert(env.cert.clone())
            .set_local_ice_credentials(ice)
            .set_stats_interval(None)
            .clear_codecs()
            .clear_extension_map()
            .set_extension(AUDIO_LEVEL_EXT, Extension::AudioLevel);
        config.codec_config().add_config(
            Pt::from(OPUS_PT),
            None,
            Codec::Opus,
            Frequency::FORTY_EIGHT_KHZ,
            Some(2),
            FormatParams {
                min_p_time: Some(10),
                use_inband_fec: Some(true),
                ..Default::default()
            },
        );
        config.codec_config().add_config(
            Pt::from(TELEPHONE_EVENT_PT),
            None,
            Codec::Tele,
            Frequency::EIGHT_KHZ,
            None,
            FormatParams::default(),
        );
        let mut rtc = config.build(now);
        let candidate =
            Candidate::host(local, "udp").map_err(|e| format!("local candidate {local}: {e}"))?;
        rtc.add_local_candidate(candidate)
            .ok_or_else(|| format!("local candidate {local} refused"))?;

        let rx_mid = Mid::from("audio");
        let mut api = rtc.direct_api();
        api.set_ice_controlling(false);
        api.declare_media(rx_mid, MediaKind::Audio);
        let mut tx = Vec::with_capacity(speakers.len());
        for (i, &ssrc) in speakers.iter().enumerate() {
            let mid = if i == 0 {
                rx_mid
            } else {
                let mid = Mid::from(format!("a{i}").as_str());
                api.declare_media(mid, MediaKind::Audio);
                mid
            };
            api.declare_stream_tx(Ssrc::from(ssrc), None, mid, None);
            tx.push(TxStream {
                ssrc: Ssrc::from(ssrc),
                // Low enough that the SRTP rollover counter starts at 0 (RFC 3711 §3.3.1).
                seq: u64::from(rand::random::<u16>() & 0x7FFF),
                ts: rand::random(),
            });
        }
        // The gateway answers setup=active: we are the DTLS server. Started now, so its
        // ClientHello is answered at once; its fingerprint is checked when it arrives.
        api.start_dtls(false)
            .map_err(|e| format!("starting DTLS: {e}"))?;
        let decode_every = env.decode_every;
        let hann = env.hann.clone();
        let mut session = BridgeSession {
            rtc,
            env,
            state: State::Connecting {
                deadline: now + CONNECT_TIMEOUT,
            },
            tx,
            frame: 0,
            tx_packets: 0,
            tx_skipped: 0,
            datagrams_in: 0,
            datagrams_out: 0,
            rx_mid,
            gateway_ssrc: None,
            has_fingerprint: false,
            held: Vec::new(),
            rtc_timeout: now,
            clock: now,
            arrival: now,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            rx: Analysis::new(hann, decode_every, phase),
            click: None,
            click_written: None,
        };
        session.drain();
        Ok(session)
    }

    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    pub fn is_failed(&self) -> bool {
        self.state == State::Failed
    }

    /// The gateway's ICE credentials and candidates (transport-info or session-accept).
    pub fn set_remote_ice(
        &mut self,
        now: Instant,
        creds: IceCreds,
        candidates: &[RemoteCandidate],
    ) {
        if self.is_failed() {
            return;
        }
        self.rtc.direct_api().set_remote_ice_credentials(creds);
        for c in candidates {
            if let Some(c) = remote_candidate(c) {
                self.rtc.add_remote_candidate(c);
            }
        }
        // STUN checks that came before the credentials were queued by str0m; each timeout
        // answers one of them.
        for _ in 0..4 {
            self.handle_timeout(now);
        }
    }

    /// The gateway's DTLS fingerprint and send SSRC (session-accept).
    pub fn accept(&mut self, fingerprint: Option<&RemoteFingerprint>, gateway_ssrc: Option<u32>) {
        if self.is_failed() {
            return;
        }
        if let Some(ssrc) = gateway_ssrc {
            if self.gateway_ssrc.is_none() {
                self.gateway_ssrc = Some(ssrc);
                self.rx.stats.ssrc = Some(ssrc);
                self.rtc
                    .direct_api()
                    .expect_stream_rx(Ssrc::from(ssrc), None, self.rx_mid, None);
            }
        }
        if let Some(f) = fingerprint {
            if f.setup.as_deref() == Some("passive") {
                return self.fail(
                    "the gateway answered setup=passive; the bridge is DTLS server only".into(),
                );
            }
            let parsed =
                format!("{} {}", f.hash.to_ascii_lowercase(), f.value).parse::<Fingerprint>();
            match parsed {
                Ok(fp) => {
                    self.rtc.direct_api().set_remote_fingerprint(fp);
                    self.has_fingerprint = true;
                }
                Err(e) => return self.fail(format!("gateway fingerprint {:?}: {e}", f.value)),
            }
            for (at, from, to, data) in std::mem::take(&mut self.held) {
                self.handle_receive(at, from, to, &data);
            }
        }
        self.drain();
    }

    /// Whether a datagram from `from` belongs to this session (see [`Rtc::accepts`]).
    pub fn accepts(&self, now: Instant, from: SocketAddr, to: SocketAddr, data: &[u8]) -> bool {
        match Receive::new(Protocol::Udp, from, to, data) {
            Ok(r) => self.rtc.accepts(&Input::Receive(now, r)),
            Err(_) => false,
        }
    }

    /// A datagram that arrived at `at`.
    pub fn handle_receive(&mut self, at: Instant, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        if self.is_failed() {
            return;
        }
        let now = at.max(self.clock);
        // DTLS is content type 20..=63 (RFC 7983). Held until the fingerprint is known, so
        // the handshake never ends on a certificate we cannot check yet.
        if !self.has_fingerprint && matches!(data.first(), Some(20..=63)) {
            if self.held.len() < HELD_MAX {
                self.held.push((at, from, to, data.to_vec()));
            }
            return;
        }
        self.clock = now;
        self.arrival = at;
        self.datagrams_in += 1;
        let Ok(receive) = Receive::new(Protocol::Udp, from, to, data) else {
            return;
        };
        if let Err(e) = self.rtc.handle_input(Input::Receive(now, receive)) {
            return self.fail(format!("str0m: {e}"));
        }
        self.drain();
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let now = now.max(self.clock);
        self.clock = now;
        match self.state {
            State::Failed => return,
            State::Connecting { deadline } if now >= deadline => {
                return self.fail(format!("ICE/DTLS not connected within {CONNECT_TIMEOUT:?}"));
            }
            _ => {}
        }
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            return self.fail(format!("str0m: {e}"));
        }
        self.drain();
    }

    /// When [`BridgeSession::handle_timeout`] wants to be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Failed => None,
            State::Connecting { deadline } => Some(self.rtc_timeout.min(deadline)),
            State::Connected => Some(self.rtc_timeout),
        }
    }

    /// Sends the next 20 ms frame of every speaker. Nothing before the session is connected.
    pub fn send_frame(&mut self, now: Instant) {
        if !self.is_connected() {
            return;
        }
        let frame = self.frame;
        let mut api = self.rtc.direct_api();
        let mut clicked = false;
        for (i, s) in self.tx.iter_mut().enumerate() {
            let packets = &self.env.packets[i];
            let position = frame % packets.len();
            let payload = match &self.click {
                Some((c, _)) if i == 0 && c.frame == position => {
                    clicked = true;
                    c.packet.clone()
                }
                _ => packets[position].clone(),
            };
            let level = self.env.loops[i].level;
            let exts = ExtensionValues {
                audio_level: Some(-(level.min(127) as i8)),
                voice_activity: Some(true),
                ..Default::default()
            };
            let write = RtpWrite::new(Pt::from(OPUS_PT), SeqNo::from(s.seq), s.ts, now, payload)
                .ext_vals(exts);
            if let Some(stream) = api.stream_tx(&s.ssrc) {
                stream.write_rtp(write);
                self.tx_packets += 1;
            }
            s.seq += 1;
            s.ts = s.ts.wrapping_add(audio::FRAME_48K as u32);
        }
        self.frame += 1;
        if clicked {
            self.click_written = self.click.take().map(|(_, reply)| reply);
        }
        // Written packets leave on the next timeout, which str0m has now moved to `now`.
        self.handle_timeout(now);
    }

    /// Sends `click` in place of the first speaker's packet when its loop comes to the click's
    /// position (within a second); `reply` gets the instant it was sent. Replaces a click not
    /// yet sent.
    pub fn inject_click(
        &mut self,
        click: Arc<SpeakerClick>,
        reply: std::sync::mpsc::Sender<Instant>,
    ) {
        self.click = Some((click, reply));
    }

    /// Who to tell that the click went out, once the frame that carried it was written (its
    /// datagram is then among the queued transmits).
    pub fn take_click_written(&mut self) -> Option<std::sync::mpsc::Sender<Instant>> {
        self.click_written.take()
    }

    /// `n` frames were not sent in time: their time passes (a gap in the RTP timestamps, as
    /// after a sender's hiccup) without their packets.
    pub fn skip_frames(&mut self, n: u64) {
        self.tx_skipped += n * self.tx.len() as u64;
        self.frame += n as usize;
        for s in &mut self.tx {
            s.ts =
                s.ts.wrapping_add((n as u32).wrapping_mul(audio::FRAME_48K as u32));
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Datagram> {
        let d = self.transmits.pop_front();
        self.datagrams_out += u64::from(d.is_some());
        d
    }

    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// Ends the session: DTLS close_notify out, nothing more in.
    pub fn close(&mut self) {
        if !self.is_failed() {
            let _ = self.rtc.close();
            self.drain();
        }
        self.state = State::Failed;
        self.rx.finish_recording();
    }

    fn drain(&mut self) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.rtc_timeout = t;
                    return;
                }
                Ok(Output::Transmit(t)) => self.transmits.push_back(Datagram {
                    to: t.destination,
                    payload: Vec::from(t.contents),
                }),
                Ok(Output::Event(e)) => self.on_event(e),
                Err(e) => return self.fail(format!("str0m: {e}")),
            }
            if self.is_failed() {
                return;
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Connected => {
                if matches!(self.state, State::Connecting { .. }) {
                    self.state = State::Connected;
                    self.events.push_back(SessionEvent::Connected);
                }
            }
            Event::RtpPacket(p) => {
                if Some(*p.header.ssrc) != self.gateway_ssrc {
                    self.rx.stats.other_ssrc_packets += 1;
                    return;
                }
                let level = p
                    .header
                    .ext_vals
                    .audio_level
                    .map(|l| l.unsigned_abs().min(127));
                self.rx.packet(
                    self.arrival,
                    *p.seq_no,
                    p.header.timestamp,
                    &p.payload,
                    level,
                );
            }
            Event::Closed => self.fail("closed by the gateway".into()),
            _ => {}
        }
    }

    fn fail(&mut self, why: String) {
        if self.is_failed() {
            return;
        }
        self.state = State::Failed;
        self.rtc.disconnect();
        self.transmits.clear();
        self.rx.finish_recording();
        self.events.push_back(SessionEvent::Failed(why));
    }
}

fn remote_candidate(c: &RemoteCandidate) -> Option<Candidate> {
    if !c.protocol.eq_ignore_ascii_case("udp") || c.component != 1 {
        return None;
    }
    let kind = match c.kind.as_str() {
        "host" => CandidateKind::Host,
        "srflx" => CandidateKind::ServerReflexive,
        "prflx" => CandidateKind::PeerReflexive,
        "relay" => CandidateKind::Relayed,
        _ => return None,
    };
    Some(Candidate::from_parts(
        c.foundation.clone(),
        c.component,
        Protocol::Udp,
        c.priority,
        c.addr,
        kind,
        None,
        None,
        None,
    ))
}

struct RecordingInProgress {
    frames_left: usize,
    out: Recording,
    reply: std::sync::mpsc::Sender<Recording>,
}

/// What the bridge measures on the gateway's stream.
pub struct Analysis {
    pub stats: RxStats,
    first_seq: Option<u64>,
    max_seq: u64,
    hann: Arc<Vec<f32>>,
    decode_every: u32,
    decoder: Option<Decode>,
    /// The last sequence number decoded (for concealment of the frames between).
    decoded_seq: Option<u64>,
    /// Packets to let pass without decoding before the next window (the duty cycle).
    skip: u64,
    warmup: usize,
    window: Vec<i16>,
    pub tone_hz: Option<f64>,
    pub last_tone: Option<ToneReading>,
    /// Analysis windows completed.
    pub windows: u64,
    recording: Option<RecordingInProgress>,
}

impl Analysis {
    fn new(hann: Arc<Vec<f32>>, decode_every: u32, phase: u32) -> Analysis {
        Analysis {
            stats: RxStats::default(),
            first_seq: None,
            max_seq: 0,
            hann,
            decode_every,
            decoder: None,
            decoded_seq: None,
            skip: u64::from(phase % decode_every) * WINDOW_FRAMES as u64,
            warmup: WARMUP_FRAMES,
            window: Vec::with_capacity(WINDOW),
            tone_hz: None,
            last_tone: None,
            windows: 0,
            recording: None,
        }
    }

    fn packet(&mut self, at: Instant, seq: u64, _rtp_ts: u32, payload: &[u8], level: Option<u8>) {
        let s = &mut self.stats;
        s.packets += 1;
        s.bytes += payload.len() as u64;
        if level.is_some() {
            s.audio_level = level;
        }
        if let Some(last) = s.last {
            let gap = at.saturating_duration_since(last);
            if gap > LATE {
                s.late += 1;
            }
            s.max_interarrival = s.max_interarrival.max(gap);
        }
        s.first.get_or_insert(at);
        s.last = Some(at);
        let first = *self.first_seq.get_or_insert(seq);
        self.max_seq = self.max_seq.max(seq);
        if seq >= first {
            s.expected = self.max_seq - first + 1;
        }

        let decoding = self.recording.is_some() || self.skip == 0;
        if !decoding {
            self.skip -= 1;
            if self.skip == 0 {
                // A fresh decoder for the next window: the previous one missed packets.
                self.decoder = None;
                self.decoded_seq = None;
                self.warmup = WARMUP_FRAMES;
            }
            return;
        }
        if self.decoded_seq.is_some_and(|d| seq <= d) {
            return; // late or repeated: already concealed or decoded
        }
        if self.decoder.is_none() {
            match Decode::new() {
                Ok(d) => self.decoder = Some(d),
                Err(_) => {
                    self.stats.decode_errors += 1;
                    return;
                }
            }
        }
        let missing = self
            .decoded_seq
            .map_or(0, |d| (seq - d - 1).min(MAX_CONCEAL));
        self.decoded_seq = Some(seq);
        for _ in 0..missing {
            let pcm = self
                .decoder
                .as_mut()
                .and_then(|d| d.lost())
                .map(<[i16]>::to_vec);
            if let Some(pcm) = pcm {
                self.take_pcm(at, &pcm);
            }
        }
        let pcm = self
            .decoder
            .as_mut()
            .and_then(|d| d.packet(payload))
            .map(<[i16]>::to_vec);
        match pcm {
            Some(pcm) => self.take_pcm(at, &pcm),
            None => self.stats.decode_errors += 1,
        }
    }

    /// Decoded audio of one packet, arrived at `at`.
    fn take_pcm(&mut self, at: Instant, pcm: &[i16]) {
        if let Some(r) = &mut self.recording {
            r.out.samples.extend_from_slice(pcm);
            r.out.frame_arrivals.push(at);
            r.frames_left = r.frames_left.saturating_sub(pcm.len().div_ceil(FRAME_8K));
            if r.frames_left == 0 {
                self.finish_recording();
            }
        }
        if self.warmup > 0 {
            self.warmup -= 1;
            return;
        }
        self.window.extend_from_slice(pcm);
        if self.window.len() >= WINDOW {
            self.close_window(at);
        }
    }

    fn close_window(&mut self, at: Instant) {
        let samples = &self.window[..WINDOW];
        let rms = audio::rms_dbfs(samples);
        let (dbfs, dominant) = match self.tone_hz {
            Some(hz) => (Some(audio::tone_dbfs(samples, &self.hann, hz)), None),
            None => (None, audio::dominant(samples, &self.hann)),
        };
        self.last_tone = Some(ToneReading {
            at,
            hz: self.tone_hz,
            dbfs,
            rms_dbfs: rms,
            dominant,
        });
        self.window.clear();
        self.windows += 1;
        if self.decode_every > 1 {
            self.skip = u64::from(self.decode_every - 1) * WINDOW_FRAMES as u64;
        }
    }

    /// Starts recording the next `frames` decoded 20 ms frames (decoding them whatever the
    /// duty cycle); the recording goes to `reply` when complete or when the session ends.
    pub fn record(&mut self, frames: usize, reply: std::sync::mpsc::Sender<Recording>) {
        self.finish_recording();
        if self.skip > 0 {
            // Leave the duty-cycle pause: the decoder restarts on the next packet.
            self.skip = 0;
            self.decoder = None;
            self.decoded_seq = None;
            self.warmup = WARMUP_FRAMES;
            self.window.clear();
        }
        self.recording = Some(RecordingInProgress {
            frames_left: frames.max(1),
            out: Recording::default(),
            reply,
        });
    }

    fn finish_recording(&mut self) {
        if let Some(r) = self.recording.take() {
            let _ = r.reply.send(r.out);
        }
    }
}

#[cfg(test)]
mod tests;
