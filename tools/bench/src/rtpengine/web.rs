//! The WebRTC side of the rtpengine calls: one str0m `Rtc` per call, all on one std thread and
//! one UDP socket (rtpengine gives every call a port of its own, so the datagram's source says
//! which call it is). Each session answers rtpengine's offer through str0m's SDP API as a
//! browser would (ICE controlled, DTLS client), sends a pre-encoded Opus tone on the thread's
//! single 20 ms timer, and decodes what it receives to 8 kHz to check the phone's tone.

use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use audiopus::coder::{Decoder, Encoder};
use audiopus::{Application, Bitrate, Channels, SampleRate};
use str0m::change::SdpOffer;
use str0m::config::DtlsCert;
use str0m::media::{Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};
use tokio::sync::oneshot;

use crate::phone::goertzel_dbfs;

const FRAME: Duration = Duration::from_millis(20);
const FRAME_48K: usize = 960;
/// One second at 8 kHz: what the tone check looks at.
const SECOND_8K: usize = 8000;
/// The longest wait between looks at the command queue.
const POLL: Duration = Duration::from_millis(5);
/// ICE and DTLS must be up this long after the answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// What one call's WebRTC end has seen so far.
#[derive(Debug, Clone)]
pub struct WebStats {
    pub call: usize,
    pub connected: bool,
    pub failed: Option<String>,
    pub sent: u64,
    pub packets: u64,
    /// RTP sequence numbers skipped.
    pub lost: u64,
    /// Level of the expected tone over the last second received (dBFS; -inf before any).
    pub heard_dbfs: f64,
}

enum Command {
    Add {
        call: usize,
        offer: String,
        reply: oneshot::Sender<Result<String>>,
    },
    Snapshot(oneshot::Sender<Vec<WebStats>>),
    Stop,
}

/// The thread and how to reach it; stops the thread when dropped.
pub struct WebSide {
    commands: mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl WebSide {
    /// Starts the thread: it sends `tone_hz` and listens for `hear_hz`.
    pub fn start(tone_hz: f64, hear_hz: f64) -> Result<WebSide> {
        str0m::crypto::from_feature_flags().install_process_default();
        let socket = UdpSocket::bind("127.0.0.1:0").context("binding the WebRTC socket")?;
        let local = socket.local_addr()?;
        grow_receive_buffer(&socket);
        let provider =
            str0m::config::CryptoProvider::get_default().context("no str0m crypto provider")?;
        // One certificate for every session, as a browser profile has.
        let cert = provider
            .dtls_provider
            .generate_certificate()
            .context("generating the DTLS certificate")?;
        let packets = opus_tone(tone_hz)?;
        let (commands, queue) = mpsc::channel();
        let mut side = Sessions {
            socket,
            local,
            cert,
            packets,
            hear_hz,
            sessions: Vec::new(),
            by_remote: HashMap::new(),
        };
        let thread = std::thread::Builder::new()
            .name("rtpengine-webrtc".into())
            .spawn(move || side.run(queue))?;
        Ok(WebSide {
            commands,
            thread: Some(thread),
        })
    }

    /// Answers rtpengine's SDP offer for `call` with a new session; the SDP answer.
    pub async fn add(&self, call: usize, offer: String) -> Result<String> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Add { call, offer, reply })
            .map_err(|_| anyhow!("the WebRTC thread is gone"))?;
        answer
            .await
            .map_err(|_| anyhow!("the WebRTC thread is gone"))?
    }

    pub async fn snapshot(&self) -> Result<Vec<WebStats>> {
        let (reply, stats) = oneshot::channel();
        self.commands
            .send(Command::Snapshot(reply))
            .map_err(|_| anyhow!("the WebRTC thread is gone"))?;
        stats
            .await
            .map_err(|_| anyhow!("the WebRTC thread is gone"))
    }
}

impl Drop for WebSide {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Room for a stall of this thread at a hundred calls (the default holds about 80 ms of them):
/// as root beyond rmem_max, else up to it.
fn grow_receive_buffer(socket: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 8 << 20;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: a valid socket and a pointer to a c_int of the length given.
        let r = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            return;
        }
    }
}

/// One second of a tone as Opus packets that loop without a click (48 kHz mono, VoIP,
/// 32 kb/s, 20 ms, as a browser sends speech): the third second encoded is kept, so the
/// encoder's state at its start is the one its end leads back to.
fn opus_tone(hz: f64) -> Result<Arc<Vec<Arc<[u8]>>>> {
    // -12 dBFS peak, as the phones' tone.
    let amplitude = 32_767.0 * 0.25;
    let pcm: Vec<i16> = (0..48_000)
        .map(|n| (amplitude * (2.0 * std::f64::consts::PI * hz * n as f64 / 48_000.0).sin()) as i16)
        .collect();
    let mut enc = Encoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip)?;
    enc.set_bitrate(Bitrate::BitsPerSecond(32_000))?;
    enc.set_signal(audiopus::Signal::Voice)?;
    let frames = 48_000 / FRAME_48K;
    let mut out = Vec::with_capacity(frames);
    let mut buf = [0u8; 1500];
    for n in 0..3 * frames {
        let at = (n % frames) * FRAME_48K;
        let len = enc.encode(&pcm[at..at + FRAME_48K], &mut buf)?;
        if n >= 2 * frames {
            out.push(Arc::from(&buf[..len]));
        }
    }
    Ok(Arc::new(out))
}

/// What the thread owns.
struct Sessions {
    socket: UdpSocket,
    local: SocketAddr,
    cert: DtlsCert,
    packets: Arc<Vec<Arc<[u8]>>>,
    hear_hz: f64,
    sessions: Vec<Session>,
    /// rtpengine's candidate address of each call → its session.
    by_remote: HashMap<SocketAddr, usize>,
}

impl Sessions {
    fn run(&mut self, queue: mpsc::Receiver<Command>) {
        let mut buf = vec![0u8; 2048];
        let mut next_tick = Instant::now() + FRAME;
        loop {
            loop {
                match queue.try_recv() {
                    Ok(Command::Add { call, offer, reply }) => {
                        let _ = reply.send(self.add(call, &offer));
                    }
                    Ok(Command::Snapshot(reply)) => {
                        let _ = reply.send(self.sessions.iter().map(Session::stats).collect());
                    }
                    Ok(Command::Stop) | Err(mpsc::TryRecvError::Disconnected) => return,
                    Err(mpsc::TryRecvError::Empty) => break,
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                // The one timer for every call's send.
                for s in &mut self.sessions {
                    s.send_frame(now, &self.packets);
                }
                next_tick += FRAME;
                if next_tick < now {
                    // Far behind (a stall): resume the pace from now rather than burst.
                    next_tick = now + FRAME;
                }
            }
            for s in &mut self.sessions {
                if s.timeout <= now {
                    s.handle_timeout(now);
                }
            }
            self.flush();
            let wake = self
                .sessions
                .iter()
                .map(|s| s.timeout)
                .fold(next_tick.min(now + POLL), Instant::min);
            let wait = wake
                .saturating_duration_since(Instant::now())
                .max(Duration::from_micros(100));
            if self.socket.set_read_timeout(Some(wait)).is_err() {
                return;
            }
            // Errors are timeouts, or ICMP errors reported on the socket: nothing to read.
            if let Ok((n, from)) = self.socket.recv_from(&mut buf) {
                if let Some(&i) = self.by_remote.get(&from) {
                    let s = &mut self.sessions[i];
                    s.receive(Instant::now(), from, self.local, &buf[..n]);
                }
            }
        }
    }

    fn flush(&mut self) {
        for s in &mut self.sessions {
            while let Some((to, data)) = s.out.pop_front() {
                // A full socket buffer loses this datagram, as the network would.
                let _ = self.socket.send_to(&data, to);
            }
        }
    }

    fn add(&mut self, call: usize, offer: &str) -> Result<String> {
        let now = Instant::now();
        let sdp = OfferFacts::read(offer)?;
        let mut rtc = RtcConfig::new()
            .set_rtp_mode(true)
            .set_dtls_cert(self.cert.clone())
            .set_stats_interval(None)
            .build(now);
        let candidate = Candidate::host(self.local, "udp")
            .map_err(|e| anyhow!("local candidate {}: {e}", self.local))?;
        rtc.add_local_candidate(candidate)
            .context("str0m refused the local candidate")?;
        let parsed = SdpOffer::from_sdp_string(&bundled(offer, &sdp.mid))
            .map_err(|e| anyhow!("str0m cannot parse rtpengine's offer: {e}"))?;
        let answer = rtc
            .sdp_api()
            .accept_offer(parsed)
            .map_err(|e| anyhow!("str0m refused rtpengine's offer: {e}"))?;
        let index = self.sessions.len();
        for &remote in &sdp.candidates {
            self.by_remote.insert(remote, index);
        }
        let mut session = Session {
            call,
            rtc,
            mid: sdp.mid,
            pt: sdp.opus_pt,
            seq: u64::from(rand::random::<u16>() & 0x7FFF),
            ts: rand::random(),
            frame: 0,
            sent: 0,
            known_ssrcs: Vec::new(),
            connected: false,
            failed: None,
            deadline: now + CONNECT_TIMEOUT,
            timeout: now,
            clock: now,
            out: VecDeque::new(),
            rx: Rx::new(self.hear_hz),
        };
        session.drain();
        self.sessions.push(session);
        Ok(answer.to_sdp_string())
    }
}

/// `sdp` with a BUNDLE group of its one mid when it has none. str0m insists on a group (it
/// runs everything on one transport); rtpengine 10.5 writes none, and a browser would accept
/// the offer as it is. With a single m-line the group changes nothing on the wire.
fn bundled(sdp: &str, mid: &Mid) -> String {
    if sdp.lines().any(|l| l.starts_with("a=group:")) {
        return sdp.to_string();
    }
    match sdp.find("\nm=") {
        Some(at) => format!(
            "{}a=group:BUNDLE {mid}\r\n{}",
            &sdp[..at + 1],
            &sdp[at + 1..]
        ),
        None => sdp.to_string(),
    }
}

/// What we need from rtpengine's offer beyond what str0m keeps: the mid, Opus's payload type,
/// and the candidates (the addresses its datagrams come from).
#[derive(Debug, PartialEq)]
struct OfferFacts {
    mid: Mid,
    opus_pt: Pt,
    candidates: Vec<SocketAddr>,
}

impl OfferFacts {
    fn read(sdp: &str) -> Result<OfferFacts> {
        let mut mid = None;
        let mut opus_pt = None;
        let mut candidates = Vec::new();
        for line in sdp.lines().map(str::trim) {
            if let Some(m) = line.strip_prefix("a=mid:") {
                mid.get_or_insert_with(|| Mid::from(m));
            } else if let Some(map) = line.strip_prefix("a=rtpmap:") {
                let (pt, codec) = map.split_once(' ').unwrap_or((map, ""));
                if codec.to_ascii_lowercase().starts_with("opus/48000") {
                    opus_pt = pt.parse::<u8>().ok().map(Pt::from);
                }
            } else if let Some(c) = line.strip_prefix("a=candidate:") {
                // foundation component transport priority address port typ type ...
                let f: Vec<&str> = c.split_whitespace().collect();
                if f.len() >= 6 && f[1] == "1" && f[2].eq_ignore_ascii_case("udp") {
                    if let (Ok(ip), Ok(port)) = (f[4].parse(), f[5].parse()) {
                        candidates.push(SocketAddr::new(ip, port));
                    }
                }
            }
        }
        let mid = mid.context("rtpengine's offer has no a=mid")?;
        let opus_pt = opus_pt.context("rtpengine's offer has no opus/48000")?;
        if candidates.is_empty() {
            bail!("rtpengine's offer has no UDP candidate");
        }
        Ok(OfferFacts {
            mid,
            opus_pt,
            candidates,
        })
    }
}

struct Session {
    call: usize,
    rtc: Rtc,
    mid: Mid,
    pt: Pt,
    /// Our extended RTP sequence number; low enough that SRTP's rollover counter starts at 0.
    seq: u64,
    ts: u32,
    frame: usize,
    sent: u64,
    /// The SSRCs rtpengine sends from, told to str0m as they appear.
    known_ssrcs: Vec<u32>,
    connected: bool,
    failed: Option<String>,
    deadline: Instant,
    timeout: Instant,
    /// The latest time given to str0m (its clock must not go back).
    clock: Instant,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    rx: Rx,
}

impl Session {
    fn stats(&self) -> WebStats {
        WebStats {
            call: self.call,
            connected: self.connected,
            failed: self.failed.clone(),
            sent: self.sent,
            packets: self.rx.packets,
            lost: self.rx.lost,
            heard_dbfs: self.rx.level_dbfs(),
        }
    }

    fn receive(&mut self, at: Instant, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        self.learn_ssrc(data);
        let now = at.max(self.clock);
        self.clock = now;
        let Ok(receive) = Receive::new(Protocol::Udp, from, to, data) else {
            return;
        };
        if let Err(e) = self.rtc.handle_input(Input::Receive(now, receive)) {
            return self.fail(format!("str0m: {e}"));
        }
        self.drain();
    }

    /// rtpengine's offer announces no a=ssrc and its packets carry no mid extension, so str0m
    /// would drop them as unknown; a browser maps such a stream to the single audio m-line,
    /// and so do we. SRTP leaves the RTP header in the clear.
    fn learn_ssrc(&mut self, data: &[u8]) {
        let rtp = data.len() >= 12
            && (128..=191).contains(&data[0])
            && !(64..=95).contains(&(data[1] & 0x7F));
        if !rtp {
            return;
        }
        let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        if self.known_ssrcs.contains(&ssrc) || self.known_ssrcs.len() >= 4 {
            return;
        }
        self.known_ssrcs.push(ssrc);
        self.rtc
            .direct_api()
            .expect_stream_rx(Ssrc::from(ssrc), None, self.mid, None);
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.failed.is_some() {
            self.timeout = now + Duration::from_secs(3600);
            return;
        }
        if !self.connected && now >= self.deadline {
            return self.fail(format!("ICE/DTLS not connected within {CONNECT_TIMEOUT:?}"));
        }
        let now = now.max(self.clock);
        self.clock = now;
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            return self.fail(format!("str0m: {e}"));
        }
        self.drain();
    }

    fn send_frame(&mut self, now: Instant, packets: &[Arc<[u8]>]) {
        if !self.connected || self.failed.is_some() {
            return;
        }
        let payload = packets[self.frame % packets.len()].clone();
        let write = RtpWrite::new(self.pt, SeqNo::from(self.seq), self.ts, now, payload);
        if let Some(stream) = self.rtc.direct_api().stream_tx_by_mid(self.mid, None) {
            stream.write_rtp(write);
            self.sent += 1;
        }
        self.seq += 1;
        self.ts = self.ts.wrapping_add(FRAME_48K as u32);
        self.frame += 1;
        // Written packets leave on the next timeout.
        self.handle_timeout(now);
    }

    fn drain(&mut self) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.timeout = if self.connected {
                        t
                    } else {
                        t.min(self.deadline)
                    };
                    return;
                }
                Ok(Output::Transmit(t)) => {
                    self.out.push_back((t.destination, Vec::from(t.contents)));
                }
                Ok(Output::Event(e)) => self.on_event(e),
                Err(e) => return self.fail(format!("str0m: {e}")),
            }
            if self.failed.is_some() {
                return;
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Connected => self.connected = true,
            Event::RtpPacket(p) => self.rx.packet(*p.seq_no, &p.payload),
            _ => {}
        }
    }

    fn fail(&mut self, why: String) {
        if self.failed.is_none() {
            self.failed = Some(why);
            self.rtc.disconnect();
            self.out.clear();
        }
    }
}

/// What a session received: counts and the last second decoded to 8 kHz.
struct Rx {
    hear_hz: f64,
    packets: u64,
    lost: u64,
    last_seq: Option<u64>,
    decoder: Option<Decoder>,
    scratch: Vec<i16>,
    pcm: VecDeque<i16>,
}

impl Rx {
    fn new(hear_hz: f64) -> Rx {
        Rx {
            hear_hz,
            packets: 0,
            lost: 0,
            last_seq: None,
            decoder: Decoder::new(SampleRate::Hz8000, Channels::Mono).ok(),
            // Room for the longest Opus packet (120 ms) at 8 kHz.
            scratch: vec![0; 960],
            pcm: VecDeque::with_capacity(SECOND_8K + 960),
        }
    }

    fn level_dbfs(&self) -> f64 {
        let pcm: Vec<i16> = self.pcm.iter().copied().collect();
        goertzel_dbfs(&pcm, 8000.0, self.hear_hz)
    }

    fn packet(&mut self, seq: u64, payload: &[u8]) {
        self.packets += 1;
        match self.last_seq {
            Some(last) if seq <= last => return, // repeated or reordered: already counted
            Some(last) => self.lost += seq - last - 1,
            None => {}
        }
        self.last_seq = Some(seq);
        let Some(decoder) = &mut self.decoder else {
            return;
        };
        // A packet libopus refuses is skipped: it came from the network.
        let Ok(packet) = audiopus::packet::Packet::try_from(payload) else {
            return;
        };
        let Ok(out) = audiopus::MutSignals::try_from(&mut self.scratch[..]) else {
            return;
        };
        if let Ok(n) = decoder.decode(Some(packet), out, false) {
            self.pcm.extend(&self.scratch[..n]);
            let excess = self.pcm.len().saturating_sub(SECOND_8K);
            self.pcm.drain(..excess);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The offer rtpengine 10.5 wrote in the lab (lab.md section 4).
    const OFFER: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
        t=0 0\r\nm=audio 30000 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=rtpmap:96 opus/48000/2\r\n\
        a=sendrecv\r\na=rtcp:30000\r\na=rtcp-mux\r\na=setup:actpass\r\n\
        a=fingerprint:sha-256 3D:85:2D:19\r\na=ptime:20\r\na=ice-ufrag:KivtCGIE\r\n\
        a=ice-pwd:XeRV9gq7Pa7l41LIdfrspr0fIa\r\n\
        a=candidate:0B80l2VCC4iqBKJw 1 UDP 2130706431 127.0.0.1 30000 typ host\r\n";

    #[test]
    fn the_offer_gives_the_mid_the_opus_payload_type_and_the_candidates() {
        let facts = OfferFacts::read(OFFER).unwrap();
        assert_eq!(
            facts,
            OfferFacts {
                mid: Mid::from("1"),
                opus_pt: Pt::from(96),
                candidates: vec!["127.0.0.1:30000".parse().unwrap()],
            }
        );
        assert!(OfferFacts::read("v=0\r\na=mid:1\r\n").is_err());
        let b = bundled(OFFER, &facts.mid);
        assert!(
            b.contains("t=0 0\r\na=group:BUNDLE 1\r\nm=audio 30000"),
            "{b}"
        );
        assert_eq!(bundled(&b, &facts.mid), b);
        assert!(OfferFacts::read(&OFFER.replace("opus", "PCMU")).is_err());
        assert!(OfferFacts::read(&OFFER.replace("a=candidate:", "a=x:")).is_err());
    }

    #[test]
    fn the_tone_loop_decodes_to_its_tone() {
        let packets = opus_tone(1900.0).unwrap();
        assert_eq!(packets.len(), 50);
        let mut rx = Rx::new(1900.0);
        for (i, p) in packets.iter().chain(packets.iter()).enumerate() {
            rx.packet(1000 + i as u64, p);
        }
        // One packet skipped, one repeated.
        rx.packet(1101, &packets[0]);
        rx.packet(1101, &packets[0]);
        assert_eq!((rx.packets, rx.lost), (102, 1));
        let pcm: Vec<i16> = rx.pcm.iter().copied().collect();
        assert!(goertzel_dbfs(&pcm, 8000.0, 1900.0) > -20.0);
        assert!(goertzel_dbfs(&pcm, 8000.0, 440.0) < -40.0);
        // Garbage from the network is skipped, not a panic.
        rx.packet(1102, &[0xFF; 3]);
        rx.packet(1103, &[]);
    }
}
