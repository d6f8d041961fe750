//! `MediaBridge`: the sans-IO media core of one call. Datagrams and time go in; datagrams (tagged
//! with the leg whose socket sends them) and [`MediaEvent`]s come out; [`MediaBridge::poll_timeout`]
//! says when to call [`MediaBridge::handle_timeout`] next. No threads, no sockets, no clock.
//!
//! Every 20 ms tick:
//! * conference → phone: each speaker's playout buffer → Opus decode at 8 kHz (FEC from the next
//!   packet, or PLC, for a lost one) → mix → G.711 → phone;
//! * phone → conference: the phone's playout buffer → G.711 decode → RFC 6464 level → Opus
//!   encode → bridge.
//!
//! Nothing is skipped yet (silence is encoded like speech). The media worker running the call
//! lines its tick up with the other calls' ([`MediaBridge::align_tick`]).

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::conference_leg::{ConferenceEvent, ConferenceLeg, OPUS_CLOCK};
use super::jitter::{JitterBuffer, Playout, StreamStats};
use super::level::{audio_level, is_voice};
use super::mixer::mix;
use super::opus::{OpusDecoder, OpusEncoder};
use super::phone_leg::{PhoneEvent, PhoneLeg};
use super::{
    ConferenceAnswer, ConferenceOffer, DtlsIdentity, Frame, LegStats, MediaError, MediaEvent,
    MediaStats, PhoneParams, FRAME_DURATION, FRAME_SAMPLES, G711, SAMPLE_RATE,
};
use crate::config::MediaSettings;

/// Opus timestamp units per 20 ms frame.
const OPUS_FRAME_TS: u32 = OPUS_CLOCK / 50;
/// When the driver falls further behind than this, missed ticks are dropped instead of run in a
/// burst (a burst would only dump stale audio on both sides).
const MAX_TICK_LAG: Duration = Duration::from_millis(100);

/// Which socket a datagram belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    Phone,
    Conference,
}

/// A datagram to send from `leg`'s socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub leg: Leg,
    pub destination: SocketAddr,
    pub payload: Vec<u8>,
}

/// One conference source: its playout buffer and Opus decoder.
struct Speaker {
    owner: String,
    playout: JitterBuffer,
    decoder: OpusDecoder,
    /// Decoded samples not yet mixed (packets longer than 20 ms leave some over).
    pending: Vec<i16>,
    concealed: u64,
}

impl Speaker {
    fn new(owner: String) -> Result<Speaker, MediaError> {
        Ok(Speaker {
            owner,
            playout: JitterBuffer::new(OPUS_CLOCK),
            decoder: OpusDecoder::new()?,
            pending: Vec::with_capacity(4 * FRAME_SAMPLES),
            concealed: 0,
        })
    }

    /// This speaker's next 20 ms, or `None` when there is nothing to play.
    fn next_frame(&mut self, now: Instant, opus_pt: u8) -> Option<Frame> {
        while self.pending.len() < FRAME_SAMPLES {
            let decoded = match self.playout.pop(now) {
                Playout::Packet {
                    payload_type,
                    payload,
                } if payload_type == opus_pt => self.decoder.decode(&payload, &mut self.pending),
                // A telephone-event in the speaker's sequence: the speaker's audio pauses.
                Playout::Packet { .. } => {
                    self.pending.extend_from_slice(&[0; FRAME_SAMPLES]);
                    continue;
                }
                Playout::Lost {
                    next: Some((pt, next)),
                } if pt == opus_pt => {
                    self.concealed += 1;
                    self.decoder.recover(next, &mut self.pending).map(|()| 0)
                }
                Playout::Lost { .. } => {
                    self.concealed += 1;
                    self.decoder.conceal(&mut self.pending).map(|()| 0)
                }
                Playout::Absent => break,
            };
            if let Err(e) = decoded {
                tracing::debug!(owner = %self.owner, error = %e, "undecodable Opus packet, concealed");
                self.concealed += 1;
                if self.decoder.conceal(&mut self.pending).is_err() {
                    self.pending.extend_from_slice(&[0; FRAME_SAMPLES]);
                }
            }
        }
        take_frame(&mut self.pending)
    }
}

/// The phone side once its address is known: the RTP leg and the phone's incoming stream.
struct Phone {
    leg: PhoneLeg,
    input: PhoneInput,
}

impl Phone {
    fn new(now: Instant, params: PhoneParams) -> Phone {
        Phone {
            leg: PhoneLeg::new(now, params),
            input: PhoneInput {
                codec: params.codec,
                codec_pt: params.codec_pt,
                playout: JitterBuffer::new(SAMPLE_RATE),
                pending: Vec::with_capacity(4 * FRAME_SAMPLES),
                last: [0; FRAME_SAMPLES],
                conceal_run: 0,
                concealed: 0,
            },
        }
    }
}

/// The phone's stream: playout buffer, G.711 decoding and simple concealment.
struct PhoneInput {
    codec: G711,
    codec_pt: u8,
    playout: JitterBuffer,
    pending: Vec<i16>,
    /// The last frame played, repeated (fading) over a lost packet.
    last: Frame,
    conceal_run: u32,
    concealed: u64,
}

impl PhoneInput {
    fn next_frame(&mut self, now: Instant) -> Frame {
        while self.pending.len() < FRAME_SAMPLES {
            match self.playout.pop(now) {
                Playout::Packet {
                    payload_type,
                    payload,
                } if payload_type == self.codec_pt => {
                    self.codec.decode(&payload, &mut self.pending);
                    self.conceal_run = 0;
                }
                // telephone-event, comfort noise: no audio of their own.
                Playout::Packet { .. } => self.pending.extend_from_slice(&[0; FRAME_SAMPLES]),
                Playout::Lost { .. } => {
                    // G.711 has no PLC of its own: the previous frame at half, then a quarter of
                    // its level, then silence.
                    self.concealed += 1;
                    self.conceal_run += 1;
                    let shift = self.conceal_run.min(15);
                    let faded = self
                        .last
                        .map(|s| if self.conceal_run > 2 { 0 } else { s >> shift });
                    self.pending.extend_from_slice(&faded);
                }
                Playout::Absent => break,
            }
        }
        let frame = take_frame(&mut self.pending).unwrap_or([0; FRAME_SAMPLES]);
        self.last = frame;
        frame
    }
}

/// The first 20 ms of `pending` (zero-padded when shorter), or `None` when it is empty.
fn take_frame(pending: &mut Vec<i16>) -> Option<Frame> {
    if pending.is_empty() {
        return None;
    }
    let mut frame = [0i16; FRAME_SAMPLES];
    let n = pending.len().min(FRAME_SAMPLES);
    frame[..n].copy_from_slice(&pending[..n]);
    pending.drain(..n);
    Some(frame)
}

pub struct MediaBridge {
    /// None until the phone's address is known (a dial-out before the callee answers).
    phone: Option<Phone>,
    /// None while the conference side is gone and the phone waits for a new offer.
    conference: Option<ConferenceLeg>,
    /// The address of the conference socket as str0m knows it (our candidate).
    conference_local: SocketAddr,
    opus_pt: u8,
    speakers: BTreeMap<u32, Speaker>,
    /// Counters of speakers that left, kept for the call's totals.
    gone: StreamStats,
    gone_concealed: u64,
    encoder: OpusEncoder,
    opus_ts: u32,
    conference_out: (u64, u64),
    next_tick: Instant,
    /// The time of the latest input.
    now: Instant,
    events: VecDeque<MediaEvent>,
    transmits: VecDeque<Transmit>,
}

impl MediaBridge {
    /// Sets up both legs (the phone leg later with `phone: None`). `conference_local` is the
    /// advertised address of the conference socket (our ICE host candidate).
    pub fn new(
        now: Instant,
        settings: &MediaSettings,
        phone: Option<PhoneParams>,
        offer: &ConferenceOffer,
        conference_local: SocketAddr,
        identity: &DtlsIdentity,
    ) -> Result<(MediaBridge, ConferenceAnswer), MediaError> {
        let (conference, answer) = ConferenceLeg::new(now, offer, conference_local, identity)?;
        let mut speakers = BTreeMap::new();
        for (ssrc, owner) in &offer.sources {
            speakers.insert(*ssrc, Speaker::new(owner.clone())?);
        }
        let mut bridge = MediaBridge {
            phone: phone.map(|p| Phone::new(now, p)),
            conference: Some(conference),
            conference_local,
            opus_pt: offer.opus_pt,
            speakers,
            gone: StreamStats::default(),
            gone_concealed: 0,
            encoder: OpusEncoder::new(settings)?,
            opus_ts: rand::random(),
            conference_out: (0, 0),
            next_tick: now + FRAME_DURATION,
            now,
            events: VecDeque::new(),
            transmits: VecDeque::new(),
        };
        bridge.collect();
        Ok((bridge, answer))
    }

    /// A datagram arrived on `leg`'s socket from `source`.
    pub fn handle_receive(&mut self, now: Instant, leg: Leg, source: SocketAddr, data: &[u8]) {
        self.now = now;
        match leg {
            // Before the phone is connected, nothing on its socket is ours to take.
            Leg::Phone => {
                if let Some(p) = &mut self.phone {
                    p.leg.handle_receive(now, source, data)
                }
            }
            Leg::Conference => {
                if let Some(c) = &mut self.conference {
                    c.handle_receive(now, source, self.conference_local, data)
                }
            }
        }
        self.collect_at(now);
    }

    /// Time passed: runs due timers and the 20 ms ticks.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if let Some(c) = &mut self.conference {
            if c.poll_timeout().is_some_and(|t| t <= now) {
                c.handle_timeout(now);
            }
        }
        if let Some(p) = &mut self.phone {
            p.leg.handle_timeout(now);
        }
        if now.saturating_duration_since(self.next_tick) > MAX_TICK_LAG {
            tracing::debug!(
                behind_ms = now.duration_since(self.next_tick).as_millis() as u64,
                "media ticks dropped"
            );
            self.next_tick = now;
        }
        while self.next_tick <= now {
            self.collect_at(now);
            self.tick(now);
            self.next_tick += FRAME_DURATION;
        }
        self.collect_at(now);
    }

    /// Moves the next 20 ms tick to `at`: a media worker runs the ticks of all its calls together,
    /// so one wake-up serves them all.
    pub fn align_tick(&mut self, at: Instant) {
        self.next_tick = at;
    }

    /// When to call [`MediaBridge::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Instant {
        let mut at = self.next_tick;
        for t in [
            self.conference.as_ref().and_then(|c| c.poll_timeout()),
            self.phone.as_ref().and_then(|p| p.leg.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        {
            at = at.min(t);
        }
        at
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<MediaEvent> {
        self.events.pop_front()
    }

    /// A source joined the room (Jingle source-add).
    pub fn add_source(&mut self, ssrc: u32, owner: String) {
        if self.speakers.contains_key(&ssrc) {
            return;
        }
        match Speaker::new(owner) {
            Ok(s) => {
                self.speakers.insert(ssrc, s);
                if let Some(c) = &mut self.conference {
                    c.add_source(ssrc);
                }
            }
            Err(e) => tracing::warn!(ssrc, error = %e, "cannot decode a new source"),
        }
        self.collect();
    }

    /// A source left the room (Jingle source-remove).
    pub fn remove_source(&mut self, ssrc: u32) {
        if let Some(s) = self.speakers.remove(&ssrc) {
            let st = s.playout.stats();
            self.gone.packets += st.packets;
            self.gone.bytes += st.bytes;
            self.gone.lost += st.lost;
            self.gone.late += st.late;
            self.gone.jitter_ms = self.gone.jitter_ms.max(st.jitter_ms);
            self.gone_concealed += s.concealed;
        }
        if let Some(c) = &mut self.conference {
            c.remove_source(ssrc);
        }
        self.collect();
    }

    /// The conference side ended (session-terminate, the focus left): stop talking to the old
    /// bridge while the phone stays, hearing silence, until [`MediaBridge::replace_conference`].
    pub fn stop_conference(&mut self) {
        self.conference = None;
        for ssrc in self.speakers.keys().copied().collect::<Vec<_>>() {
            self.remove_source(ssrc);
        }
    }

    /// A new offer for the conference side (a re-invite after session-terminate, or
    /// transport-replace): a fresh leg on the same socket, with the offer's sources; the phone
    /// leg goes on untouched.
    pub fn replace_conference(
        &mut self,
        now: Instant,
        offer: &ConferenceOffer,
        identity: &DtlsIdentity,
    ) -> Result<ConferenceAnswer, MediaError> {
        let (leg, answer) = ConferenceLeg::new(now, offer, self.conference_local, identity)?;
        self.stop_conference();
        self.conference = Some(leg);
        self.opus_pt = offer.opus_pt;
        for (ssrc, owner) in &offer.sources {
            self.speakers.insert(*ssrc, Speaker::new(owner.clone())?);
        }
        self.now = now;
        self.collect();
        Ok(answer)
    }

    /// The phone's address is known now (a dial-out's answer or early media): start the phone
    /// leg. A second call replaces it (a 200 OK after a 183 with another address).
    pub fn connect_phone(&mut self, now: Instant, params: PhoneParams) {
        self.phone = Some(Phone::new(now, params));
        self.now = now;
        self.collect();
    }

    /// Sends a DTMF key to the phone (RFC 4733); `false` if the phone cannot take it.
    pub fn send_dtmf(&mut self, digit: char, duration: Duration) -> bool {
        self.phone
            .as_mut()
            .is_some_and(|p| p.leg.send_dtmf(digit, duration))
    }

    pub fn stats(&self) -> MediaStats {
        let phone = match &self.phone {
            Some(p) => {
                let pc = p.leg.counters();
                let ps = p.input.playout.stats();
                LegStats {
                    packets_in: pc.packets_in,
                    bytes_in: pc.bytes_in,
                    packets_out: pc.packets_out,
                    bytes_out: pc.bytes_out,
                    lost: ps.lost,
                    late: ps.late,
                    jitter_ms: ps.jitter_ms,
                    concealed_frames: p.input.concealed,
                }
            }
            None => LegStats::default(),
        };
        let mut conference = LegStats {
            packets_in: self.gone.packets,
            bytes_in: self.gone.bytes,
            packets_out: self.conference_out.0,
            bytes_out: self.conference_out.1,
            lost: self.gone.lost,
            late: self.gone.late,
            jitter_ms: self.gone.jitter_ms,
            concealed_frames: self.gone_concealed,
        };
        for s in self.speakers.values() {
            let st = s.playout.stats();
            conference.packets_in += st.packets;
            conference.bytes_in += st.bytes;
            conference.lost += st.lost;
            conference.late += st.late;
            conference.jitter_ms = conference.jitter_ms.max(st.jitter_ms);
            conference.concealed_frames += s.concealed;
        }
        MediaStats { phone, conference }
    }

    fn tick(&mut self, now: Instant) {
        // The room, mixed, to the phone.
        let opus_pt = self.opus_pt;
        let frames: Vec<Frame> = self
            .speakers
            .values_mut()
            .filter_map(|s| s.next_frame(now, opus_pt))
            .collect();
        // The phone to the room (silence until the phone is connected).
        let voice = match &mut self.phone {
            Some(p) => {
                p.leg.send_frame(&mix(&frames));
                p.input.next_frame(now)
            }
            None => [0; FRAME_SAMPLES],
        };
        let timestamp = self.opus_ts;
        self.opus_ts = self.opus_ts.wrapping_add(OPUS_FRAME_TS);
        let Some(conference) = self.conference.as_mut().filter(|c| c.is_connected()) else {
            return;
        };
        let level = audio_level(&voice);
        match self.encoder.encode(&voice) {
            Ok(Some(packet)) => {
                self.conference_out.0 += 1;
                self.conference_out.1 += packet.len() as u64;
                conference.send_opus(now, timestamp, packet, level, is_voice(level));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "Opus encoding failed"),
        }
    }

    /// Moves what the legs produced into the bridge's queues, feeding received RTP to the
    /// playout buffers on the way.
    fn collect_at(&mut self, now: Instant) {
        while let Some(event) = self.phone.as_mut().and_then(|p| p.leg.poll_event()) {
            match event {
                PhoneEvent::Rtp(p) => {
                    if let Some(phone) = &mut self.phone {
                        phone.input.playout.push(
                            now,
                            p.ssrc,
                            p.seq,
                            p.timestamp,
                            p.payload_type,
                            &p.payload,
                        );
                    }
                }
                PhoneEvent::MediaStarted => self.events.push_back(MediaEvent::PhoneMediaStarted),
                PhoneEvent::MediaStopped => self.events.push_back(MediaEvent::PhoneMediaStopped),
                PhoneEvent::Dtmf(d) => self.events.push_back(MediaEvent::Dtmf(d)),
            }
        }
        while let Some(event) = self.conference.as_mut().and_then(|c| c.poll_event()) {
            match event {
                ConferenceEvent::Rtp(p) => {
                    if let Some(s) = self.speakers.get_mut(&p.ssrc) {
                        s.playout
                            .push(now, p.ssrc, p.seq, p.timestamp, p.payload_type, &p.payload);
                    }
                }
                ConferenceEvent::Connected => {
                    self.events.push_back(MediaEvent::ConferenceConnected)
                }
                ConferenceEvent::Failed(why) => self
                    .events
                    .push_back(MediaEvent::ConferenceFailed(why.to_string())),
                ConferenceEvent::Loss(fraction) => {
                    let percent = (fraction.clamp(0.0, 1.0) * 100.0).round() as u8;
                    if let Err(e) = self.encoder.set_expected_loss(percent) {
                        tracing::debug!(error = %e, "cannot set the expected loss");
                    }
                }
            }
        }
        while let Some(d) = self.phone.as_mut().and_then(|p| p.leg.poll_transmit()) {
            self.transmits.push_back(Transmit {
                leg: Leg::Phone,
                destination: d.destination,
                payload: d.payload,
            });
        }
        while let Some(d) = self.conference.as_mut().and_then(|c| c.poll_transmit()) {
            self.transmits.push_back(Transmit {
                leg: Leg::Conference,
                destination: d.destination,
                payload: d.payload,
            });
        }
    }

    /// [`MediaBridge::collect_at`] at the time of the latest input.
    fn collect(&mut self) {
        self.collect_at(self.now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PortRange;
    use crate::media::rtp::RtpPacket;
    use crate::media::IceCandidate;

    /// Phone-leg datagrams sent over `ticks` 20 ms ticks, by destination.
    fn phone_sends(b: &mut MediaBridge, now: &mut Instant, ticks: u32) -> Vec<SocketAddr> {
        let mut out = Vec::new();
        for _ in 0..ticks {
            *now += FRAME_DURATION;
            b.handle_timeout(*now);
            while let Some(t) = b.poll_transmit() {
                if t.leg == Leg::Phone {
                    out.push(t.destination);
                }
            }
        }
        out
    }

    /// Phone-leg datagrams sent by a timeout at `now`.
    fn phone_sends_at(b: &mut MediaBridge, now: Instant) -> usize {
        b.handle_timeout(now);
        std::iter::from_fn(|| b.poll_transmit())
            .filter(|t| t.leg == Leg::Phone)
            .count()
    }

    #[test]
    fn an_aligned_bridge_ticks_on_the_workers_grid_and_not_on_its_own() {
        let t0 = Instant::now();
        let mut b = bridge(t0);
        // Its own first tick would be t0 + 20 ms; the worker's grid is 7 ms later.
        let grid = t0 + FRAME_DURATION + Duration::from_millis(7);
        b.align_tick(grid);
        assert!(b.poll_timeout() <= grid);
        assert_eq!(phone_sends_at(&mut b, t0 + FRAME_DURATION), 0);
        assert_eq!(phone_sends_at(&mut b, grid - Duration::from_millis(1)), 0);
        assert_eq!(phone_sends_at(&mut b, grid), 1, "one frame on the grid");
        assert_eq!(phone_sends_at(&mut b, grid + Duration::from_millis(19)), 0);
        assert_eq!(phone_sends_at(&mut b, grid + FRAME_DURATION), 1);
    }

    #[test]
    fn a_phone_connected_later_gets_nothing_before_and_every_frame_after() {
        let mut now = Instant::now();
        let mut b = bridge(now);
        b.phone = None;
        assert!(
            phone_sends(&mut b, &mut now, 10).is_empty(),
            "nothing for an unknown phone"
        );
        assert!(!b.send_dtmf('1', Duration::from_millis(100)));
        let callee: SocketAddr = "203.0.113.9:5004".parse().unwrap();
        b.connect_phone(
            now,
            PhoneParams {
                codec: G711::Pcmu,
                codec_pt: 0,
                telephone_event_pt: None,
                remote_rtp: callee,
            },
        );
        let sent = phone_sends(&mut b, &mut now, 10);
        assert_eq!(sent.len(), 10, "one frame per tick");
        assert!(sent.iter().all(|d| *d == callee));
    }

    fn bridge(now: Instant) -> MediaBridge {
        let settings = MediaSettings {
            ports: PortRange::new(20000, 20050).unwrap(),
            opus_complexity: 5,
            opus_bitrate: 20_000,
            opus_fec: true,
            opus_dtx: false,
            bind_ip: std::net::IpAddr::from([0, 0, 0, 0]),
        };
        let offer = ConferenceOffer {
            ufrag: "bridgeufrag".into(),
            pwd: "bridgepasswordbridgepassword".into(),
            fingerprint: ("sha-256".into(), vec!["5A"; 32].join(":")),
            candidates: vec![IceCandidate {
                foundation: "1".into(),
                component: 1,
                protocol: "udp".into(),
                priority: 2_130_706_431,
                ip: "192.0.2.1".parse().unwrap(),
                port: 10000,
                kind: "host".into(),
                related: None,
            }],
            opus_pt: 111,
            telephone_event_pt: Some(126),
            audio_level_ext: Some(1),
            sources: vec![(1, "ep1".into())],
        };
        let phone = PhoneParams {
            codec: G711::Pcma,
            codec_pt: 8,
            telephone_event_pt: Some(101),
            remote_rtp: "198.51.100.7:4000".parse().unwrap(),
        };
        let identity = DtlsIdentity::generate().unwrap();
        let local = "192.0.2.100:30002".parse().unwrap();
        MediaBridge::new(now, &settings, Some(phone), &offer, local, &identity)
            .unwrap()
            .0
    }

    fn run_for(b: &mut MediaBridge, from: Instant, duration: Duration) -> Vec<Transmit> {
        let mut out = Vec::new();
        let mut now = from;
        while now < from + duration {
            b.handle_timeout(now);
            out.extend(std::iter::from_fn(|| b.poll_transmit()));
            now = b.poll_timeout().max(now + Duration::from_millis(1));
        }
        out
    }

    #[test]
    fn the_phone_gets_a_packet_of_silence_every_20_ms_before_the_conference_connects() {
        let t0 = Instant::now();
        let mut b = bridge(t0);
        let sent = run_for(&mut b, t0, Duration::from_secs(1));
        let to_phone: Vec<_> = sent.iter().filter(|t| t.leg == Leg::Phone).collect();
        assert!((49..=50).contains(&to_phone.len()), "{}", to_phone.len());
        for t in &to_phone {
            assert_eq!(t.destination, "198.51.100.7:4000".parse().unwrap());
            let p = RtpPacket::parse(&t.payload).unwrap();
            assert_eq!(p.payload_type, 8);
            assert_eq!(p.payload, &[0xD5; FRAME_SAMPLES][..]); // A-law silence
        }
        // Meanwhile ICE checks go to the bridge's candidate.
        assert!(sent.iter().any(
            |t| t.leg == Leg::Conference && t.destination == "192.0.2.1:10000".parse().unwrap()
        ));
    }

    #[test]
    fn garbage_on_either_socket_neither_panics_nor_fails_the_call() {
        let t0 = Instant::now();
        let mut b = bridge(t0);
        let mut x: u32 = 0xDEAD_BEEF;
        let stranger: SocketAddr = "203.0.113.50:5000".parse().unwrap();
        let bridge_addr: SocketAddr = "192.0.2.1:10000".parse().unwrap();
        for i in 0..5000u32 {
            let len = (i % 200) as usize;
            let mut data: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            // Make some of it look like DTLS, RTP or STUN to get past the first demultiplexing.
            if let Some(first) = data.first_mut() {
                *first = match i % 4 {
                    0 => 22,   // DTLS handshake
                    1 => 0x80, // RTP
                    2 => 0,    // STUN
                    _ => *first,
                };
            }
            let now = t0 + Duration::from_millis(u64::from(i));
            let from = if i % 2 == 0 { stranger } else { bridge_addr };
            b.handle_receive(now, Leg::Conference, from, &data);
            b.handle_receive(now, Leg::Phone, stranger, &data);
            b.handle_timeout(now);
        }
        let events: Vec<_> = std::iter::from_fn(|| b.poll_event()).collect();
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, MediaEvent::ConferenceFailed(_))),
            "{events:?}"
        );
    }
}
