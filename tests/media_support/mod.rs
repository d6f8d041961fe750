//! Test peers for the media tests: a str0m `Rtc` playing the videobridge (ICE-lite, controlled,
//! DTLS server, one Opus stream per source at 48 kHz like a browser's), and a fake phone
//! sending PCMU. Both record what they hear for frequency analysis.
//!
//! Sans-IO like the code under test: the tests move the datagrams and the time.

#![allow(dead_code)] // each test file uses its own part of the support code

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use audiopus::coder::{Decoder, Encoder};
use audiopus::{Application, Channels, SampleRate};
use gateway_lab::audio::Recording;
use jitsi_sip_gateway::media::rtp::{RtpPacket, TelephoneEvent};
use jitsi_sip_gateway::media::{ConferenceAnswer, ConferenceOffer, IceCandidate, G711};
use str0m::media::{MediaKind, Mid, Pt};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{Extension, ExtensionValues, RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, IceCreds, Input, Output, Rtc, RtcConfig};

pub const OPUS_PT: u8 = 111;
pub const AUDIO_LEVEL_EXT: u8 = 1;

/// A tone source of the fake videobridge.
struct Source {
    ssrc: u32,
    hz: f64,
    encoder: Encoder,
    sample: u64,
    seq: u64,
    ts: u32,
    sending: bool,
}

/// The videobridge stand-in.
pub struct BridgePeer {
    rtc: Rtc,
    pub addr: SocketAddr,
    sources: Vec<Source>,
    our_ssrc: Option<u32>,
    decoder: Decoder,
    /// What the bridge heard from the gateway, 48 kHz mono.
    pub heard: Vec<i16>,
    /// RFC 6464 levels (−dBov) on the gateway's packets.
    pub levels: Vec<u8>,
    pub connected: bool,
    out: VecDeque<(SocketAddr, Vec<u8>)>,
    timeout: Instant,
}

impl BridgePeer {
    /// A bridge at `addr` with tone sources `(ssrc, hz, in the offer)`; sources not in the offer
    /// can be added mid-call. All of them start sending once connected.
    pub fn new(
        now: Instant,
        addr: SocketAddr,
        sources: &[(u32, f64, bool)],
    ) -> (BridgePeer, ConferenceOffer) {
        let mut rtc = RtcConfig::new()
            .set_rtp_mode(true)
            .set_ice_lite(true)
            .clear_extension_map()
            .set_extension(AUDIO_LEVEL_EXT, Extension::AudioLevel)
            .build(now);
        let local = rtc
            .add_local_candidate(Candidate::host(addr, "udp").unwrap())
            .unwrap()
            .clone();
        let mut api = rtc.direct_api();
        api.set_ice_controlling(false);
        let creds = api.local_ice_credentials();
        let fingerprint = api.local_dtls_fingerprint().to_string();
        // One mid per sending SSRC: str0m sends only one TX stream per mid reliably.
        for (i, &(ssrc, _, _)) in sources.iter().enumerate() {
            let mid = Mid::from(format!("a{i}").as_str());
            api.declare_media(mid, MediaKind::Audio);
            api.declare_stream_tx(Ssrc::from(ssrc), None, mid, None);
        }
        let (hash, value) = fingerprint.split_once(' ').unwrap();
        let offer = ConferenceOffer {
            ufrag: creds.ufrag,
            pwd: creds.pass,
            fingerprint: (hash.into(), value.into()),
            candidates: vec![IceCandidate {
                foundation: "1".into(),
                component: 1,
                protocol: "udp".into(),
                priority: local.prio(),
                ip: addr.ip(),
                port: addr.port(),
                kind: "host".into(),
                related: None,
            }],
            opus_pt: OPUS_PT,
            telephone_event_pt: Some(126),
            audio_level_ext: Some(AUDIO_LEVEL_EXT),
            sources: sources
                .iter()
                .filter(|s| s.2)
                .map(|s| (s.0, format!("ep{:x}", s.0)))
                .collect(),
        };
        let sources = sources
            .iter()
            .map(|&(ssrc, hz, _)| Source {
                ssrc,
                hz,
                encoder: Encoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip)
                    .unwrap(),
                sample: 0,
                seq: 1000,
                ts: 5000,
                sending: true,
            })
            .collect();
        let peer = BridgePeer {
            rtc,
            addr,
            sources,
            our_ssrc: None,
            decoder: Decoder::new(SampleRate::Hz48000, Channels::Mono).unwrap(),
            heard: Vec::new(),
            levels: Vec::new(),
            connected: false,
            out: VecDeque::new(),
            timeout: now,
        };
        (peer, offer)
    }

    /// Takes the gateway's answer: credentials, fingerprint, candidate and its SSRC.
    pub fn accept(&mut self, now: Instant, answer: &ConferenceAnswer) {
        let mut api = self.rtc.direct_api();
        api.set_remote_ice_credentials(IceCreds {
            ufrag: answer.ufrag.clone(),
            pass: answer.pwd.clone(),
        });
        let fp = format!("{} {}", answer.fingerprint.0, answer.fingerprint.1);
        api.set_remote_fingerprint(fp.parse().unwrap());
        api.expect_stream_rx(Ssrc::from(answer.ssrc), None, Mid::from("a0"), None);
        api.start_dtls(false).unwrap();
        for c in &answer.candidates {
            let sdp = format!(
                "candidate:{} {} {} {} {} {} typ {}",
                c.foundation, c.component, c.protocol, c.priority, c.ip, c.port, c.kind
            );
            self.rtc
                .add_remote_candidate(Candidate::from_sdp_string(&sdp).unwrap());
        }
        self.our_ssrc = Some(answer.ssrc);
        self.drain(now);
    }

    pub fn set_sending(&mut self, ssrc: u32, sending: bool) {
        for s in &mut self.sources {
            if s.ssrc == ssrc {
                s.sending = sending;
            }
        }
    }

    pub fn silence_all(&mut self) {
        for s in &mut self.sources {
            s.sending = false;
        }
    }

    pub fn receive(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let receive = Receive::new(Protocol::Udp, from, self.addr, data).unwrap();
        self.rtc.handle_input(Input::Receive(now, receive)).unwrap();
        self.drain(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.rtc.handle_input(Input::Timeout(now)).unwrap();
        self.drain(now);
    }

    pub fn poll_timeout(&self) -> Instant {
        self.timeout
    }

    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.out.pop_front()
    }

    /// One 20 ms Opus packet from every sending source (48 kHz clock, level −12 dBov).
    pub fn send_audio(&mut self, now: Instant) {
        if !self.connected {
            return;
        }
        let pt = Pt::from(OPUS_PT);
        for s in &mut self.sources {
            let pcm: Vec<i16> = (0..960)
                .map(|i| {
                    let n = (s.sample + i) as f64;
                    (0.25 * 32767.0 * (2.0 * std::f64::consts::PI * s.hz * n / 48000.0).sin())
                        as i16
                })
                .collect();
            s.sample += 960;
            let mut buf = [0u8; 1500];
            let n = s.encoder.encode(&pcm, &mut buf).unwrap();
            let seq = SeqNo::from(s.seq);
            let ts = s.ts;
            s.seq += 1;
            s.ts = s.ts.wrapping_add(960);
            if !s.sending {
                continue;
            }
            let exts = ExtensionValues {
                audio_level: Some(-12),
                voice_activity: Some(true),
                ..Default::default()
            };
            let mut api = self.rtc.direct_api();
            api.stream_tx(&Ssrc::from(s.ssrc))
                .unwrap()
                .write_rtp(RtpWrite::new(pt, seq, ts, now, buf[..n].to_vec()).ext_vals(exts));
        }
        self.handle_timeout(now);
    }

    /// What the bridge heard, as a recording.
    pub fn recording(&self) -> Recording {
        to_recording(&self.heard, 48000)
    }

    fn drain(&mut self, _now: Instant) {
        loop {
            match self.rtc.poll_output().unwrap() {
                Output::Timeout(t) => {
                    self.timeout = t;
                    return;
                }
                Output::Transmit(t) => self.out.push_back((t.destination, t.contents.into())),
                Output::Event(Event::Connected) => self.connected = true,
                Output::Event(Event::RtpPacket(p)) => {
                    if Some(*p.header.ssrc) != self.our_ssrc {
                        continue;
                    }
                    if let Some(level) = p.header.ext_vals.audio_level {
                        self.levels.push(level.unsigned_abs());
                    }
                    let mut pcm = [0i16; 5760];
                    let packet = audiopus::packet::Packet::try_from(&p.payload[..]).unwrap();
                    let signals = audiopus::MutSignals::try_from(&mut pcm[..]).unwrap();
                    let n = self.decoder.decode(Some(packet), signals, false).unwrap();
                    self.heard.extend_from_slice(&pcm[..n]);
                }
                Output::Event(_) => {}
            }
        }
    }
}

/// The phone: PCMU at 8 kHz, a tone (or silence), RFC 4733 keys on request.
pub struct FakePhone {
    pub addr: SocketAddr,
    hz: Option<f64>,
    ssrc: u32,
    seq: u16,
    ts: u32,
    sample: u64,
    /// Key and the number of 20 ms packets it still lasts.
    key: Option<(u8, u16, u32)>,
    /// What the phone heard, 8 kHz.
    pub heard: Vec<i16>,
    pub received_from: Vec<SocketAddr>,
}

impl FakePhone {
    pub fn new(addr: SocketAddr, hz: Option<f64>) -> FakePhone {
        FakePhone {
            addr,
            hz,
            ssrc: 0x5EED,
            seq: 65500, // wraps during the test
            ts: 0,
            sample: 0,
            key: None,
            heard: Vec::new(),
            received_from: Vec::new(),
        }
    }

    /// Presses `event` (0-9, 10 = *, 11 = #) for 100 ms, from the next packet on.
    pub fn press(&mut self, event: u8) {
        self.key = Some((event, 0, self.ts));
    }

    /// The next 20 ms RTP packet.
    pub fn next_packet(&mut self) -> Vec<u8> {
        let pcm: Vec<i16> = (0..160)
            .map(|i| match self.hz {
                Some(hz) => {
                    let n = (self.sample + i) as f64;
                    (0.3 * 32767.0 * (2.0 * std::f64::consts::PI * hz * n / 8000.0).sin()) as i16
                }
                None => 0,
            })
            .collect();
        self.sample += 160;
        let mut payload = Vec::new();
        let mut pt = 0;
        let mut ts = self.ts;
        if let Some((event, elapsed, start)) = self.key {
            let elapsed = elapsed + 160;
            let end = elapsed >= 800;
            payload = TelephoneEvent {
                event,
                end,
                volume: 10,
                duration: elapsed,
            }
            .to_bytes()
            .to_vec();
            pt = 101;
            ts = start;
            self.key = (!end).then_some((event, elapsed, start));
        } else {
            G711::Pcmu.encode(&pcm, &mut payload);
        }
        let mut out = Vec::new();
        RtpPacket {
            marker: false,
            payload_type: pt,
            seq: self.seq,
            timestamp: ts,
            ssrc: self.ssrc,
            payload: &payload,
        }
        .write(&mut out);
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(160);
        out
    }

    pub fn receive(&mut self, from: SocketAddr, data: &[u8]) {
        let p = RtpPacket::parse(data).unwrap();
        assert_eq!(p.payload_type, 0, "the gateway sends PCMU");
        self.received_from.push(from);
        G711::Pcmu.decode(p.payload, &mut self.heard);
    }

    pub fn recording(&self) -> Recording {
        to_recording(&self.heard, 8000)
    }
}

fn to_recording(samples: &[i16], rate: u32) -> Recording {
    Recording {
        rate,
        samples: samples.iter().map(|&s| f64::from(s) / 32768.0).collect(),
    }
}

pub const MS20: Duration = Duration::from_millis(20);
