//! The phone's leg: plain RTP with G.711 and RFC 4733 telephone-events (sans-IO).
//!
//! * Symmetric RTP: we send to the address in the phone's SDP until the phone's own RTP arrives,
//!   then to wherever that came from (the phone may sit behind NAT and put a private address in
//!   its SDP; jigasi relies on the same latching). Once latched, RTP from elsewhere is ignored.
//! * Our stream: one SSRC, a 20 ms G.711 frame every tick, random initial sequence number and
//!   timestamp (RFC 3550 §5.1), marker on the first packet.
//! * DTMF: keys the phone sends are reported once each; keys we send replace the audio packets
//!   for their duration (RFC 4733 §2.5).
//! * No-RTP detection: silence from the phone for [`NO_RTP_TIMEOUT`] is reported (jigasi's
//!   "media dropped" threshold), and again when RTP resumes.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::rtp::{dtmf_event, RtpPacket, TelephoneEvent};
use super::{Datagram, Frame, PhoneParams, FRAME_SAMPLES};

/// How long the phone may send nothing before [`PhoneEvent::MediaStopped`].
pub const NO_RTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Keys we send last at least this long (jigasi's `DTMF_MINIMAL_TONE_DURATION`).
pub const MIN_DTMF_DURATION: Duration = Duration::from_millis(100);
/// The final packet of an event goes out this many times (RFC 4733 §2.5.1.4).
const DTMF_END_REPEATS: u32 = 3;
/// Audio frames between two keys we send, so the far end sees two presses.
const DTMF_GAP_FRAMES: u32 = 2;
/// −10 dBm0, a usual DTMF level.
const DTMF_VOLUME: u8 = 10;

/// One RTP packet from the phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedPhoneRtp {
    pub ssrc: u32,
    pub seq: u16,
    pub timestamp: u32,
    pub payload_type: u8,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhoneEvent {
    /// The phone's RTP arrived: the first packet, or the first after [`PhoneEvent::MediaStopped`].
    MediaStarted,
    /// Nothing from the phone for [`NO_RTP_TIMEOUT`] (also when nothing ever came).
    MediaStopped,
    /// Any RTP packet of the phone's stream (audio, telephone-event, comfort noise): all of them
    /// go to the playout buffer, since they share one sequence-number space.
    Rtp(ReceivedPhoneRtp),
    /// A key pressed on the phone, reported when its first packet arrives.
    Dtmf(char),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reception {
    Waiting { since: Instant },
    Flowing { last: Instant },
    Stopped,
}

/// A key being sent.
struct OutgoingKey {
    event: u8,
    /// RTP timestamp of the event's start (all its packets carry it).
    start: u32,
    /// Samples so far, and how many the key lasts.
    elapsed: u32,
    length: u32,
    /// Final packets sent.
    ends_sent: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhoneCounters {
    /// RTP packets (and their payload bytes) from the phone's latched address.
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    /// RTP from addresses other than the latched one, and datagrams that were not RTP.
    pub ignored: u64,
}

pub struct PhoneLeg {
    params: PhoneParams,
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    sent_any: bool,
    remote: SocketAddr,
    latched: bool,
    reception: Reception,
    /// Timestamp of the last telephone-event reported, so its repeats are not reported again.
    last_key_in: Option<(u32, u32)>,
    keys_out: VecDeque<(u8, u32)>,
    key_out: Option<OutgoingKey>,
    gap_frames: u32,
    counters: PhoneCounters,
    buf: Vec<u8>,
    payload: Vec<u8>,
    transmits: VecDeque<Datagram>,
    events: VecDeque<PhoneEvent>,
}

impl PhoneLeg {
    pub fn new(now: Instant, params: PhoneParams) -> PhoneLeg {
        PhoneLeg {
            params,
            ssrc: rand::random(),
            seq: rand::random(),
            timestamp: rand::random(),
            sent_any: false,
            remote: params.remote_rtp,
            latched: false,
            reception: Reception::Waiting { since: now },
            last_key_in: None,
            keys_out: VecDeque::new(),
            key_out: None,
            gap_frames: 0,
            counters: PhoneCounters::default(),
            buf: Vec::with_capacity(12 + FRAME_SAMPLES),
            payload: Vec::with_capacity(FRAME_SAMPLES),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Where our RTP goes now.
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    pub fn counters(&self) -> PhoneCounters {
        self.counters
    }

    /// A datagram that arrived on the phone leg's socket.
    pub fn handle_receive(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        let packet = match RtpPacket::parse(data) {
            Ok(p) => p,
            Err(e) => {
                tracing::trace!(%source, error = %e, "not RTP on the phone leg");
                self.counters.ignored += 1;
                return;
            }
        };
        let pt = packet.payload_type;
        let ours = pt == self.params.codec_pt || Some(pt) == self.params.telephone_event_pt;
        if self.latched && source != self.remote {
            self.counters.ignored += 1;
            return;
        }
        if !self.latched {
            if !ours {
                self.counters.ignored += 1;
                return;
            }
            if source != self.remote {
                tracing::debug!(sdp = %self.remote, actual = %source, "phone RTP latched");
            }
            self.remote = source;
            self.latched = true;
        }
        self.counters.packets_in += 1;
        self.counters.bytes_in += packet.payload.len() as u64;
        if !matches!(self.reception, Reception::Flowing { .. }) {
            self.events.push_back(PhoneEvent::MediaStarted);
        }
        self.reception = Reception::Flowing { last: now };

        if Some(pt) == self.params.telephone_event_pt {
            self.on_telephone_event(&packet);
        }
        self.events.push_back(PhoneEvent::Rtp(ReceivedPhoneRtp {
            ssrc: packet.ssrc,
            seq: packet.seq,
            timestamp: packet.timestamp,
            payload_type: pt,
            payload: packet.payload.to_vec(),
        }));
    }

    fn on_telephone_event(&mut self, packet: &RtpPacket<'_>) {
        let Ok(event) = TelephoneEvent::parse(packet.payload) else {
            return;
        };
        // Repeats and updates of one key press share its SSRC and timestamp.
        let key = (packet.ssrc, packet.timestamp);
        if self.last_key_in == Some(key) {
            return;
        }
        self.last_key_in = Some(key);
        if let Some(digit) = event.digit() {
            self.events.push_back(PhoneEvent::Dtmf(digit));
        }
    }

    /// Checks the no-RTP timer.
    pub fn handle_timeout(&mut self, now: Instant) {
        let expired = match self.reception {
            Reception::Waiting { since } => now >= since + NO_RTP_TIMEOUT,
            Reception::Flowing { last } => now >= last + NO_RTP_TIMEOUT,
            Reception::Stopped => false,
        };
        if expired {
            self.reception = Reception::Stopped;
            self.events.push_back(PhoneEvent::MediaStopped);
        }
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.reception {
            Reception::Waiting { since } => Some(since + NO_RTP_TIMEOUT),
            Reception::Flowing { last } => Some(last + NO_RTP_TIMEOUT),
            Reception::Stopped => None,
        }
    }

    /// Queues a key to send; `false` if the phone did not negotiate telephone-event or `digit`
    /// is not a DTMF key.
    pub fn send_dtmf(&mut self, digit: char, duration: Duration) -> bool {
        let (Some(_), Some(event)) = (self.params.telephone_event_pt, dtmf_event(digit)) else {
            return false;
        };
        let samples = duration.max(MIN_DTMF_DURATION).as_millis() as u64 * 8;
        self.keys_out
            .push_back((event, samples.min(u64::from(u16::MAX)) as u32));
        true
    }

    /// Sends this tick's 20 ms: the frame as G.711, or the key being sent in its place.
    pub fn send_frame(&mut self, frame: &Frame) {
        if self.key_out.is_none() && self.gap_frames == 0 {
            if let Some((event, length)) = self.keys_out.pop_front() {
                self.key_out = Some(OutgoingKey {
                    event,
                    start: self.timestamp,
                    elapsed: 0,
                    length,
                    ends_sent: 0,
                });
            }
        }
        if self.key_out.is_some() {
            self.send_key_packet();
        } else {
            self.gap_frames = self.gap_frames.saturating_sub(1);
            self.params.codec.encode(frame, &mut self.payload);
            let payload = std::mem::take(&mut self.payload);
            self.send(
                self.params.codec_pt,
                !self.sent_any,
                self.timestamp,
                &payload,
            );
            self.payload = payload;
        }
        self.timestamp = self.timestamp.wrapping_add(FRAME_SAMPLES as u32);
    }

    fn send_key_packet(&mut self) {
        let Some(pt) = self.params.telephone_event_pt else {
            self.key_out = None;
            return;
        };
        let Some(key) = self.key_out.as_mut() else {
            return;
        };
        let first = key.elapsed == 0;
        key.elapsed = (key.elapsed + FRAME_SAMPLES as u32).min(key.length);
        let end = key.elapsed >= key.length;
        if end {
            key.ends_sent += 1;
        }
        let event = TelephoneEvent {
            event: key.event,
            end,
            volume: DTMF_VOLUME,
            duration: key.elapsed as u16,
        };
        let start = key.start;
        if key.ends_sent >= DTMF_END_REPEATS {
            self.key_out = None;
            self.gap_frames = DTMF_GAP_FRAMES;
        }
        self.send(pt, first, start, &event.to_bytes());
    }

    fn send(&mut self, payload_type: u8, marker: bool, timestamp: u32, payload: &[u8]) {
        let packet = RtpPacket {
            marker,
            payload_type,
            seq: self.seq,
            timestamp,
            ssrc: self.ssrc,
            payload,
        };
        packet.write(&mut self.buf);
        self.seq = self.seq.wrapping_add(1);
        self.sent_any = true;
        self.counters.packets_out += 1;
        self.counters.bytes_out += payload.len() as u64;
        self.transmits.push_back(Datagram {
            destination: self.remote,
            payload: self.buf.clone(),
        });
    }

    pub fn poll_transmit(&mut self) -> Option<Datagram> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<PhoneEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::G711;

    fn params() -> PhoneParams {
        PhoneParams {
            codec: G711::Pcmu,
            codec_pt: 0,
            telephone_event_pt: Some(101),
            remote_rtp: "192.0.2.10:4000".parse().unwrap(),
        }
    }

    fn rtp(pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        RtpPacket {
            marker: false,
            payload_type: pt,
            seq,
            timestamp: ts,
            ssrc: 0xABCD,
            payload,
        }
        .write(&mut out);
        out
    }

    fn events(leg: &mut PhoneLeg) -> Vec<PhoneEvent> {
        std::iter::from_fn(|| leg.poll_event()).collect()
    }

    fn sent(leg: &mut PhoneLeg) -> Vec<Datagram> {
        std::iter::from_fn(|| leg.poll_transmit()).collect()
    }

    #[test]
    fn audio_goes_to_the_sdp_address_until_the_phone_sends_then_to_its_source() {
        let t0 = Instant::now();
        let mut leg = PhoneLeg::new(t0, params());
        leg.send_frame(&[0; FRAME_SAMPLES]);
        let first = sent(&mut leg);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].destination, params().remote_rtp);
        let p = RtpPacket::parse(&first[0].payload).unwrap();
        assert!(p.marker);
        assert_eq!(p.payload_type, 0);
        assert_eq!(p.payload, &[0xFF; FRAME_SAMPLES][..]); // µ-law silence

        let nat: SocketAddr = "198.51.100.7:31000".parse().unwrap();
        leg.handle_receive(t0, nat, &rtp(0, 1, 0, &[0xFF; 160]));
        leg.send_frame(&[0; FRAME_SAMPLES]);
        let second = sent(&mut leg);
        assert_eq!(second[0].destination, nat);
        let q = RtpPacket::parse(&second[0].payload).unwrap();
        assert!(!q.marker);
        assert_eq!(q.seq, p.seq.wrapping_add(1));
        assert_eq!(q.timestamp, p.timestamp.wrapping_add(160));
        assert_eq!(q.ssrc, p.ssrc);
    }

    #[test]
    fn once_latched_rtp_from_elsewhere_is_ignored() {
        let t0 = Instant::now();
        let mut leg = PhoneLeg::new(t0, params());
        let phone: SocketAddr = "198.51.100.7:31000".parse().unwrap();
        let intruder: SocketAddr = "203.0.113.9:5555".parse().unwrap();
        leg.handle_receive(t0, phone, &rtp(0, 1, 0, &[1; 160]));
        leg.handle_receive(t0, intruder, &rtp(0, 2, 160, &[2; 160]));
        let evs = events(&mut leg);
        let rtps: Vec<_> = evs
            .iter()
            .filter_map(|e| match e {
                PhoneEvent::Rtp(r) => Some(r.payload[0]),
                _ => None,
            })
            .collect();
        assert_eq!(rtps, [1]);
        assert_eq!(leg.remote(), phone);
        assert_eq!(leg.counters().ignored, 1);
    }

    #[test]
    fn an_unknown_payload_type_does_not_latch() {
        let t0 = Instant::now();
        let mut leg = PhoneLeg::new(t0, params());
        let stray: SocketAddr = "203.0.113.9:5555".parse().unwrap();
        leg.handle_receive(t0, stray, &rtp(96, 1, 0, &[0; 20]));
        leg.handle_receive(t0, stray, b"not rtp at all");
        assert_eq!(leg.remote(), params().remote_rtp);
        assert!(events(&mut leg).is_empty());
        assert_eq!(leg.counters().ignored, 2);
    }

    #[test]
    fn media_start_and_stop_are_reported_around_a_silence() {
        let t0 = Instant::now();
        let mut leg = PhoneLeg::new(t0, params());
        let phone: SocketAddr = "198.51.100.7:31000".parse().unwrap();
        leg.handle_receive(t0, phone, &rtp(0, 1, 0, &[1; 160]));
        leg.handle_receive(
            t0 + Duration::from_millis(20),
            phone,
            &rtp(0, 2, 160, &[1; 160]),
        );
        let evs = events(&mut leg);
        assert_eq!(evs[0], PhoneEvent::MediaStarted);
        assert_eq!(
            evs.iter()
                .filter(|e| **e == PhoneEvent::MediaStarted)
                .count(),
            1
        );

        let last = t0 + Duration::from_millis(20);
        assert_eq!(leg.poll_timeout(), Some(last + NO_RTP_TIMEOUT));
        leg.handle_timeout(last + NO_RTP_TIMEOUT - Duration::from_millis(1));
        assert!(events(&mut leg).is_empty());
        leg.handle_timeout(last + NO_RTP_TIMEOUT);
        assert_eq!(events(&mut leg), [PhoneEvent::MediaStopped]);
        leg.handle_timeout(last + 2 * NO_RTP_TIMEOUT);
        assert!(events(&mut leg).is_empty());

        leg.handle_receive(last + 3 * NO_RTP_TIMEOUT, phone, &rtp(0, 3, 320, &[1; 160]));
        assert_eq!(events(&mut leg)[0], PhoneEvent::MediaStarted);
    }

    #[test]
    fn a_phone_that_never_sends_is_reported_stopped() {
        let t0 = Instant::now();
        let mut leg = PhoneLeg::new(t0, params());
        leg.handle_timeout(t0 + NO_RTP_TIMEOUT);
        assert_eq!(events(&mut leg), [PhoneEvent::MediaStopped]);
        assert_eq!(leg.poll_timeout(), None);
    }

    #[test]
    fn a_key_press_is_reported_once_for_all_its_packets() {
        let t0 = Instant::now();
        let mut leg = PhoneLeg::new(t0, params());
        let phone: SocketAddr = "198.51.100.7:31000".parse().unwrap();
        let press = |leg: &mut PhoneLeg, seq: u16, ts: u32, event: u8, end: bool, dur: u16| {
            let e = TelephoneEvent {
                event,
                end,
                volume: 10,
                duration: dur,
            };
            leg.handle_receive(t0, phone, &rtp(101, seq, ts, &e.to_bytes()));
        };
        press(&mut leg, 1, 1000, 1, false, 160);
        press(&mut leg, 2, 1000, 1, false, 320);
        press(&mut leg, 3, 1000, 1, true, 800);
        press(&mut leg, 4, 1000, 1, true, 800);
        press(&mut leg, 5, 1000, 1, true, 800);
        press(&mut leg, 6, 3000, 11, true, 800); // '#' with only end packets (start lost)
        let keys: Vec<_> = events(&mut leg)
            .into_iter()
            .filter_map(|e| match e {
                PhoneEvent::Dtmf(d) => Some(d),
                _ => None,
            })
            .collect();
        assert_eq!(keys, ['1', '#']);
    }

    #[test]
    fn a_key_we_send_replaces_audio_with_events_and_three_end_packets() {
        let t0 = Instant::now();
        let mut leg = PhoneLeg::new(t0, params());
        leg.send_frame(&[0; FRAME_SAMPLES]);
        let audio = RtpPacket::parse(&sent(&mut leg)[0].payload)
            .unwrap()
            .timestamp;
        assert!(leg.send_dtmf('5', Duration::from_millis(100)));
        let mut packets = Vec::new();
        for _ in 0..10 {
            leg.send_frame(&[0; FRAME_SAMPLES]);
            packets.extend(sent(&mut leg));
        }
        let parsed: Vec<(u8, u32, Option<TelephoneEvent>, bool)> = packets
            .iter()
            .map(|d| {
                let p = RtpPacket::parse(&d.payload).unwrap();
                let ev = (p.payload_type == 101).then(|| TelephoneEvent::parse(p.payload).unwrap());
                (p.payload_type, p.timestamp, ev, p.marker)
            })
            .collect();
        // 100 ms = 5 frames of updates, the last one with E set, then two more E repeats.
        let events: Vec<_> = parsed.iter().filter_map(|p| p.2).collect();
        assert_eq!(events.len(), 7);
        assert!(events.iter().all(|e| e.event == 5));
        assert_eq!(
            events.iter().map(|e| e.duration).collect::<Vec<_>>(),
            [160, 320, 480, 640, 800, 800, 800]
        );
        assert_eq!(events.iter().filter(|e| e.end).count(), 3);
        // All of the key's packets carry its start timestamp; only the first has the marker.
        let start = audio.wrapping_add(160);
        assert!(parsed[..7].iter().all(|p| p.0 == 101 && p.1 == start));
        assert!(parsed[0].3 && !parsed[1].3);
        // Audio resumes afterwards, on the running timestamp.
        assert_eq!(parsed[7].0, 0);
        assert_eq!(parsed[7].1, audio.wrapping_add(8 * 160));
    }

    #[test]
    fn keys_cannot_be_sent_without_telephone_event() {
        let mut leg = PhoneLeg::new(
            Instant::now(),
            PhoneParams {
                telephone_event_pt: None,
                ..params()
            },
        );
        assert!(!leg.send_dtmf('1', Duration::from_millis(100)));
        let mut with = PhoneLeg::new(Instant::now(), params());
        assert!(!with.send_dtmf('x', Duration::from_millis(100)));
    }
}
