//! Test helpers: a gateway-like str0m peer (ICE controlling, DTLS client, RTP mode, as the
//! gateway's `media::conference_leg` sets itself up) and the phone's tone as it sends it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use audiopus::coder::Encoder;
use audiopus::{Application, Channels, SampleRate};
use str0m::config::DtlsVersion;
use str0m::media::{MediaKind, Mid, Pt};
use str0m::rtp::{Extension, RtpWrite, SeqNo, Ssrc};
use str0m::{Candidate, Event, IceCreds, Input, Output, Rtc, RtcConfig};

use super::session::Datagram;
use super::stanzas::{RemoteFingerprint, AUDIO_LEVEL_EXT, OPUS_PT};

/// One second of 440 Hz at -12 dBFS encoded at 8 kHz, as the gateway encodes a phone's audio.
pub fn phone_tone_packets() -> Vec<Vec<u8>> {
    let enc = Encoder::new(SampleRate::Hz8000, Channels::Mono, Application::Voip).unwrap();
    let mut buf = [0u8; 400];
    (0..50)
        .map(|n| {
            let frame: Vec<i16> = (0..160)
                .map(|i| {
                    let t = (n * 160 + i) as f64 / 8000.0;
                    (8231.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
                })
                .collect();
            let len = enc.encode(&frame, &mut buf).unwrap();
            buf[..len].to_vec()
        })
        .collect()
}

pub struct GatewayPeer {
    pub rtc: Rtc,
    pub ssrc: Ssrc,
    seq: u64,
    ts: u32,
    sent: usize,
    pub connected: bool,
    /// Packets received per SSRC.
    pub received: HashMap<u32, u64>,
    /// Datagrams to send.
    pub out: Vec<Datagram>,
    pub timeout: Instant,
    packets: Arc<Vec<Vec<u8>>>,
}

impl GatewayPeer {
    /// A peer at `local` for a bridge endpoint at `bridge` with these credentials, expecting
    /// `speakers`, sending `packets` in a loop.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        now: Instant,
        local: SocketAddr,
        bridge: SocketAddr,
        ufrag: &str,
        pwd: &str,
        fingerprint: &str,
        speakers: &[u32],
        packets: Arc<Vec<Vec<u8>>>,
    ) -> GatewayPeer {
        let mut rtc = RtcConfig::new()
            .set_rtp_mode(true)
            .set_dtls_version(DtlsVersion::Dtls12)
            .clear_extension_map()
            .set_extension(AUDIO_LEVEL_EXT, Extension::AudioLevel)
            .build(now);
        rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
        rtc.add_remote_candidate(Candidate::host(bridge, "udp").unwrap());
        let mid = Mid::from("audio");
        let mut api = rtc.direct_api();
        api.set_ice_controlling(true);
        api.set_remote_ice_credentials(IceCreds {
            ufrag: ufrag.into(),
            pass: pwd.into(),
        });
        api.set_remote_fingerprint(format!("sha-256 {fingerprint}").parse().unwrap());
        api.declare_media(mid, MediaKind::Audio);
        for &s in speakers {
            api.expect_stream_rx(Ssrc::from(s), None, mid, None);
        }
        let ssrc = api.new_ssrc();
        api.declare_stream_tx(ssrc, None, mid, None);
        api.start_dtls(true).unwrap();
        let mut g = GatewayPeer {
            rtc,
            ssrc,
            seq: 100,
            ts: 0,
            sent: 0,
            connected: false,
            received: HashMap::new(),
            out: Vec::new(),
            timeout: now,
            packets,
        };
        g.drain();
        g
    }

    pub fn credentials(&mut self) -> IceCreds {
        self.rtc.direct_api().local_ice_credentials()
    }

    pub fn fingerprint(&mut self) -> RemoteFingerprint {
        let fp = self.rtc.direct_api().local_dtls_fingerprint().to_string();
        let (hash, value) = fp.split_once(' ').unwrap();
        RemoteFingerprint {
            hash: hash.into(),
            setup: Some("active".into()),
            value: value.into(),
        }
    }

    pub fn input(&mut self, input: Input) {
        self.rtc.handle_input(input).unwrap();
        self.drain();
    }

    pub fn drain(&mut self) {
        loop {
            match self.rtc.poll_output().unwrap() {
                Output::Timeout(t) => {
                    self.timeout = t;
                    return;
                }
                Output::Transmit(t) => self.out.push(Datagram {
                    to: t.destination,
                    payload: Vec::from(t.contents),
                }),
                Output::Event(Event::Connected) => self.connected = true,
                Output::Event(Event::RtpPacket(p)) => {
                    *self.received.entry(*p.header.ssrc).or_default() += 1
                }
                Output::Event(_) => {}
            }
        }
    }

    /// Sends the next packet of the loop.
    pub fn send(&mut self, now: Instant) {
        let payload = self.packets[self.sent % self.packets.len()].clone();
        self.sent += 1;
        let write = RtpWrite::new(
            Pt::from(OPUS_PT),
            SeqNo::from(self.seq),
            self.ts,
            now,
            payload,
        );
        self.seq += 1;
        self.ts += 960;
        self.rtc
            .direct_api()
            .stream_tx(&self.ssrc)
            .unwrap()
            .write_rtp(write);
        self.input(Input::Timeout(now));
    }
}
