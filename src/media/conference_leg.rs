//! The WebRTC leg to the videobridge: a sans-IO wrapper of str0m's `Rtc` (the only file naming
//! str0m), configured straight from the Jingle offer with the Direct API, in RTP mode.
//!
//! The recipe and its reasons are in `str0m-aiortc-interop.md`: RTP mode, because frame mode
//! drops all but one SSRC per mid; one audio mid with an `expect_stream_rx` per remote SSRC
//! (also mid-call); the offer's header-extension ids instead of str0m's defaults; sending with
//! `stream_tx(..).write_rtp(..)` and a 48 kHz Opus clock; draining `poll_output` after every
//! input; DTLS 1.2 as client; any `handle_input` error is fatal; and our own connect timeout,
//! since a DTLS that never completes raises nothing by itself.

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::distr::{Alphanumeric, SampleString};
use str0m::config::{CryptoProvider, DtlsCert, DtlsVersion, Fingerprint};
use str0m::format::{Codec, FormatParams};
use str0m::media::{Frequency, MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, ExtensionValues, RtpWrite, SeqNo, Ssrc};
use str0m::{
    Candidate, CandidateKind, Event, IceConnectionState, IceCreds, Input, Output, Rtc, RtcConfig,
};

use super::{ConferenceAnswer, ConferenceOffer, Datagram, IceCandidate, MediaError};

/// How long ICE + DTLS may take before the leg is declared failed. The spike connected in
/// 30–45 ms on loopback; ten seconds covers STUN retransmits over a bad path.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long ICE may stay disconnected after having connected before the leg is declared failed
/// (str0m reports short outages that heal by themselves as Disconnected → Connected).
pub const ICE_LOSS_GRACE: Duration = Duration::from_secs(5);
/// The Opus RTP clock, whatever rate the encoder runs at (RFC 7587 §4.1).
pub const OPUS_CLOCK: u32 = 48_000;

const MID: &str = "audio";

/// Installs str0m's process-wide DTLS crypto provider. Call once at start: without it every new
/// WebRTC session falls back to resolving the provider itself.
pub fn install_dtls_crypto() {
    CryptoProvider::clone(&super::dtls::crypto_provider()).install_process_default();
}

/// The process's DTLS certificate (ECDSA P-256, self-signed), shared by every call.
#[derive(Clone)]
pub struct DtlsIdentity(DtlsCert);

impl DtlsIdentity {
    pub fn generate() -> Result<DtlsIdentity, MediaError> {
        super::dtls::crypto_provider()
            .dtls_provider
            .generate_certificate()
            .map(DtlsIdentity)
            .ok_or(MediaError::Certificate)
    }

    /// Sets up one WebRTC session and drops it, so that the process's DTLS configuration is made
    /// (and validated) at start rather than during the first call's setup.
    pub(super) fn warm_up(&self) {
        let rtc = RtcConfig::new()
            .set_crypto_provider(super::dtls::crypto_provider())
            .set_rtp_mode(true)
            .set_dtls_version(DtlsVersion::Dtls12)
            .set_dtls_cert(self.0.clone())
            .build(Instant::now());
        drop(rtc);
    }
}

impl fmt::Debug for DtlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the private key.
        f.write_str("DtlsIdentity(..)")
    }
}

/// Why the conference leg failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConferenceFailure {
    #[error("ICE/DTLS did not connect within {0:?}")]
    Timeout(Duration),
    #[error("ICE connectivity lost for {0:?}")]
    IceLost(Duration),
    #[error("ICE/DTLS/SRTP error: {0}")]
    Transport(String),
}

/// One RTP packet from the bridge, decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRtp {
    pub ssrc: u32,
    pub seq: u16,
    pub timestamp: u32,
    pub payload_type: u8,
    pub payload: Vec<u8>,
    /// RFC 6464 level in −dBov (0–127), if the packet carried one.
    pub audio_level: Option<u8>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ConferenceEvent {
    Connected,
    Failed(ConferenceFailure),
    Rtp(ReceivedRtp),
    /// The bridge's receiver reports on our stream: fraction lost, 0–1.
    Loss(f32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting { deadline: Instant },
    Connected { ice_lost_since: Option<Instant> },
    Failed,
}

pub struct ConferenceLeg {
    rtc: Rtc,
    mid: Mid,
    tx_ssrc: Ssrc,
    opus_pt: Pt,
    state: State,
    /// The time of the latest input (str0m's events carry no time of their own).
    now: Instant,
    /// Extended sequence number of our next packet.
    tx_seq: u64,
    sources: BTreeSet<u32>,
    rtc_timeout: Instant,
    transmits: VecDeque<Datagram>,
    events: VecDeque<ConferenceEvent>,
}

impl ConferenceLeg {
    /// Sets up the leg for `offer`, with a host candidate at `local` (the advertised address of
    /// the socket this leg's datagrams go through), and returns our answer.
    pub fn new(
        now: Instant,
        offer: &ConferenceOffer,
        local: SocketAddr,
        identity: &DtlsIdentity,
    ) -> Result<(ConferenceLeg, ConferenceAnswer), MediaError> {
        let fingerprint = remote_fingerprint(offer)?;
        let opus_pt = payload_type(offer.opus_pt)?;
        if offer.ufrag.is_empty() || offer.pwd.is_empty() {
            return Err(MediaError::Offer("ICE ufrag or pwd missing".into()));
        }

        let mut config = RtcConfig::new()
            .set_crypto_provider(super::dtls::crypto_provider())
            .set_rtp_mode(true)
            // The videobridge (and aiortc) speak DTLS 1.2 only; 1.3 fails against them.
            .set_dtls_version(DtlsVersion::Dtls12)
            .set_dtls_cert(identity.0.clone())
            .set_stats_interval(Some(Duration::from_secs(1)))
            .clear_codecs()
            .clear_extension_map();
        if let Some(id) = offer.audio_level_ext {
            if !(1..=14).contains(&id) {
                return Err(MediaError::Offer(format!("audio-level extension id {id}")));
            }
            config = config.set_extension(id, Extension::AudioLevel);
        }
        config.codec_config().add_config(
            opus_pt,
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
        if let Some(pt) = offer.telephone_event_pt {
            if pt == offer.opus_pt {
                return Err(MediaError::Offer(format!("payload type {pt} used twice")));
            }
            // Web users' DTMF shares the speaker's SSRC and sequence numbers: letting it through
            // keeps the playout buffer from taking it for loss.
            config.codec_config().add_config(
                payload_type(pt)?,
                None,
                Codec::Tele,
                Frequency::EIGHT_KHZ,
                None,
                FormatParams::default(),
            );
        }
        let mut rtc = config.build(now);

        let local_candidate = Candidate::host(local, "udp")
            .map_err(|e| MediaError::Config(format!("local candidate {local}: {e}")))?;
        let local_candidate = rtc
            .add_local_candidate(local_candidate)
            .ok_or_else(|| MediaError::Config(format!("local candidate {local} refused")))?
            .clone();
        let mut usable = 0;
        for c in &offer.candidates {
            if let Some(candidate) = remote_candidate(c) {
                rtc.add_remote_candidate(candidate);
                usable += 1;
            }
        }
        if usable == 0 {
            tracing::warn!(
                offered = offer.candidates.len(),
                "no usable UDP candidate in the conference offer"
            );
        }

        let mid = Mid::from(MID);
        let mut api = rtc.direct_api();
        api.set_ice_controlling(true);
        api.set_remote_ice_credentials(IceCreds {
            ufrag: offer.ufrag.clone(),
            pass: offer.pwd.clone(),
        });
        api.set_remote_fingerprint(fingerprint);
        api.declare_media(mid, MediaKind::Audio);
        let mut sources = BTreeSet::new();
        for &(ssrc, _) in &offer.sources {
            api.expect_stream_rx(Ssrc::from(ssrc), None, mid, None);
            sources.insert(ssrc);
        }
        let tx_ssrc = api.new_ssrc();
        api.declare_stream_tx(tx_ssrc, None, mid, None);
        let local_creds = api.local_ice_credentials();
        let local_fingerprint = api.local_dtls_fingerprint().to_string();
        api.start_dtls(true)
            .map_err(|e| MediaError::Config(format!("starting DTLS: {e}")))?;

        let (hash, value) = local_fingerprint
            .split_once(' ')
            .map(|(h, v)| (h.to_string(), v.to_string()))
            .unwrap_or_default();
        let stream_id = Alphanumeric.sample_string(&mut rand::rng(), 16);
        let answer = ConferenceAnswer {
            ufrag: local_creds.ufrag,
            pwd: local_creds.pass,
            fingerprint: (hash, value),
            candidates: vec![local_answer_candidate(&local_candidate)],
            ssrc: *tx_ssrc,
            cname: Alphanumeric.sample_string(&mut rand::rng(), 16),
            msid: format!("{stream_id} {stream_id}-audio"),
        };

        let mut leg = ConferenceLeg {
            rtc,
            mid,
            tx_ssrc,
            opus_pt,
            state: State::Connecting {
                deadline: now + CONNECT_TIMEOUT,
            },
            now,
            // Start low enough that the SRTP rollover counter is 0 (RFC 3711 §3.3.1).
            tx_seq: u64::from(rand::random::<u16>() & 0x7FFF),
            sources,
            rtc_timeout: now,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        leg.drain();
        Ok((leg, answer))
    }

    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected { .. })
    }

    pub fn is_failed(&self) -> bool {
        self.state == State::Failed
    }

    /// A datagram that arrived on this leg's socket.
    pub fn handle_receive(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        if self.state == State::Failed {
            return;
        }
        self.now = now;
        let Ok(receive) = Receive::new(Protocol::Udp, source, destination, data) else {
            return;
        };
        let input = Input::Receive(now, receive);
        // Only what belongs to this session: a stray DTLS record from elsewhere must not be able
        // to end the call through the fatal-error rule below.
        if !self.rtc.accepts(&input) {
            return;
        }
        if let Err(e) = self.rtc.handle_input(input) {
            self.fail(ConferenceFailure::Transport(e.to_string()));
            return;
        }
        self.drain();
    }

    /// Time passed: timers of ICE, DTLS, RTCP and ours.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Failed {
            return;
        }
        self.now = now;
        match self.state {
            State::Connecting { deadline } if now >= deadline => {
                self.fail(ConferenceFailure::Timeout(CONNECT_TIMEOUT));
                return;
            }
            State::Connected {
                ice_lost_since: Some(since),
            } if now >= since + ICE_LOSS_GRACE => {
                self.fail(ConferenceFailure::IceLost(ICE_LOSS_GRACE));
                return;
            }
            _ => {}
        }
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            self.fail(ConferenceFailure::Transport(e.to_string()));
            return;
        }
        self.drain();
    }

    /// When [`ConferenceLeg::handle_timeout`] wants to be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Failed => None,
            State::Connecting { deadline } => Some(self.rtc_timeout.min(deadline)),
            State::Connected {
                ice_lost_since: Some(since),
            } => Some(self.rtc_timeout.min(since + ICE_LOSS_GRACE)),
            State::Connected { .. } => Some(self.rtc_timeout),
        }
    }

    pub fn poll_transmit(&mut self) -> Option<Datagram> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ConferenceEvent> {
        self.events.pop_front()
    }

    /// A source joined the room (Jingle source-add): accept its packets from now on.
    pub fn add_source(&mut self, ssrc: u32) {
        if self.state == State::Failed || !self.sources.insert(ssrc) {
            return;
        }
        self.rtc
            .direct_api()
            .expect_stream_rx(Ssrc::from(ssrc), None, self.mid, None);
        self.drain();
    }

    /// A source left (Jingle source-remove): its packets are dropped from now on.
    pub fn remove_source(&mut self, ssrc: u32) {
        if self.state == State::Failed || !self.sources.remove(&ssrc) {
            return;
        }
        self.rtc.direct_api().remove_stream_rx(Ssrc::from(ssrc));
        self.drain();
    }

    /// Sends one Opus packet with its RTP timestamp (48 kHz clock) and RFC 6464 level/V bit.
    /// Nothing is sent before the leg is connected (str0m would drop it anyway).
    pub fn send_opus(
        &mut self,
        now: Instant,
        timestamp: u32,
        payload: &[u8],
        level: u8,
        voice: bool,
    ) {
        if !self.is_connected() {
            return;
        }
        self.now = now;
        let seq = SeqNo::from(self.tx_seq);
        self.tx_seq += 1;
        let exts = ExtensionValues {
            audio_level: Some(-(level.min(127) as i8)),
            voice_activity: Some(voice),
            ..Default::default()
        };
        let write =
            RtpWrite::new(self.opus_pt, seq, timestamp, now, payload.to_vec()).ext_vals(exts);
        let mut api = self.rtc.direct_api();
        let Some(stream) = api.stream_tx(&self.tx_ssrc) else {
            return;
        };
        stream.write_rtp(write);
        // Written packets leave on the next timeout, which str0m has now moved to "now".
        if let Err(e) = self.rtc.handle_input(Input::Timeout(now)) {
            self.fail(ConferenceFailure::Transport(e.to_string()));
            return;
        }
        self.drain();
    }

    /// Polls str0m until it has nothing more to say (the sans-IO contract: before the next input).
    fn drain(&mut self) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.rtc_timeout = t;
                    return;
                }
                Ok(Output::Transmit(t)) => self.transmits.push_back(Datagram {
                    destination: t.destination,
                    payload: Vec::from(t.contents),
                }),
                Ok(Output::Event(e)) => self.on_event(e),
                Err(e) => {
                    self.fail(ConferenceFailure::Transport(e.to_string()));
                    return;
                }
            }
            if self.state == State::Failed {
                return;
            }
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Connected => {
                if let State::Connecting { .. } = self.state {
                    self.state = State::Connected {
                        ice_lost_since: None,
                    };
                    self.events.push_back(ConferenceEvent::Connected);
                }
            }
            Event::IceConnectionStateChange(ice) => {
                if let State::Connected { ice_lost_since } = &mut self.state {
                    match ice {
                        IceConnectionState::Disconnected => {
                            ice_lost_since.get_or_insert(self.now);
                        }
                        IceConnectionState::Connected | IceConnectionState::Completed => {
                            *ice_lost_since = None;
                        }
                        _ => {}
                    }
                }
            }
            Event::RtpPacket(p) => {
                let ssrc = *p.header.ssrc;
                if !self.sources.contains(&ssrc) {
                    return;
                }
                self.events.push_back(ConferenceEvent::Rtp(ReceivedRtp {
                    ssrc,
                    seq: p.header.sequence_number,
                    timestamp: p.header.timestamp,
                    payload_type: *p.header.payload_type,
                    payload: p.payload.to_vec(),
                    audio_level: p
                        .header
                        .ext_vals
                        .audio_level
                        .map(|l| l.unsigned_abs().min(127)),
                }));
            }
            Event::MediaEgressStats(s) => {
                if let Some(loss) = s.loss {
                    self.events.push_back(ConferenceEvent::Loss(loss));
                }
            }
            Event::Closed => self.fail(ConferenceFailure::Transport("closed by the bridge".into())),
            _ => {}
        }
    }

    fn fail(&mut self, why: ConferenceFailure) {
        if self.state == State::Failed {
            return;
        }
        tracing::warn!(reason = %why, "conference leg failed");
        self.state = State::Failed;
        self.rtc.disconnect();
        self.transmits.clear();
        self.events.push_back(ConferenceEvent::Failed(why));
    }
}

fn payload_type(pt: u8) -> Result<Pt, MediaError> {
    if pt > 127 {
        return Err(MediaError::Offer(format!("payload type {pt}")));
    }
    Ok(Pt::from(pt))
}

fn remote_fingerprint(offer: &ConferenceOffer) -> Result<Fingerprint, MediaError> {
    let (hash, value) = &offer.fingerprint;
    if !hash.eq_ignore_ascii_case("sha-256") && !hash.eq_ignore_ascii_case("sha-1") {
        return Err(MediaError::Offer(format!("fingerprint hash {hash:?}")));
    }
    format!("{} {}", hash.to_ascii_lowercase(), value.trim())
        .parse::<Fingerprint>()
        .map_err(|e| MediaError::Offer(format!("fingerprint {value:?}: {e}")))
}

/// A Jingle candidate as str0m's; `None` for what we cannot use (TCP, unknown types).
fn remote_candidate(c: &IceCandidate) -> Option<Candidate> {
    if !c.protocol.eq_ignore_ascii_case("udp") {
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
        SocketAddr::new(c.ip, c.port),
        kind,
        c.related,
        None,
        None,
    ))
}

fn local_answer_candidate(c: &Candidate) -> IceCandidate {
    // The foundation str0m computes is only visible in its SDP form.
    let sdp = c.to_sdp_string();
    let foundation = sdp
        .strip_prefix("candidate:")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or("1")
        .to_string();
    IceCandidate {
        foundation,
        component: 1,
        protocol: "udp".into(),
        priority: c.prio(),
        ip: c.addr().ip(),
        port: c.addr().port(),
        kind: "host".into(),
        related: None,
    }
}
