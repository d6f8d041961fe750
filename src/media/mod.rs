//! Media: codecs, playout buffers, the mixer, the phone's RTP leg and the conference's WebRTC leg
//! (wrapping str0m and libopus). See `docs/dial-in.md` for the contract with `call`.
//!
//! ```text
//!  phone ──RTP G.711──▶ phone_leg ──▶ jitter ──▶ g711 decode ──▶ level, opus encode ──▶ conference_leg ──SRTP──▶ bridge
//!  phone ◀─RTP G.711── phone_leg ◀── g711 encode ◀── mixer ◀── opus decode (PLC/FEC) ◀── jitter per SSRC ◀── conference_leg
//! ```
//!
//! [`bridge::MediaBridge`] is the sans-IO core of one call (datagrams and time in, datagrams and
//! events out); [`start`] hands it, with the call's two UDP sockets, to one of the process's media
//! worker threads ([`MediaWorkers`]), which drive many calls on one 20 ms tick.
//! `conference_leg` (with `dtls`, its DTLS provider) is the only place naming str0m, `opus` the only one naming audiopus.

pub mod bridge;
pub mod conference_leg;
mod driver;
mod dtls;
pub mod g711;
pub mod jitter;
pub mod level;
pub mod mixer;
pub mod opus;
pub mod phone_leg;
mod ports;
pub mod rtp;
#[cfg(test)]
mod test_tones;
mod worker;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::config::MediaSettings;

pub use conference_leg::{install_dtls_crypto, DtlsIdentity};
pub use driver::{start, MediaHandle};
pub use g711::G711;
pub use worker::MediaWorkers;

/// Everything mixes at the G.711 rate.
pub const SAMPLE_RATE: u32 = 8000;
/// One 20 ms frame at [`SAMPLE_RATE`].
pub const FRAME_SAMPLES: usize = 160;
pub const FRAME_DURATION: Duration = Duration::from_millis(20);
/// 20 ms of 8 kHz mono audio.
pub type Frame = [i16; FRAME_SAMPLES];

/// The conference side of the call as Jicofo offered it (from `jingle::AudioOffer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConferenceOffer {
    pub ufrag: String,
    pub pwd: String,
    /// Hash function (`sha-256`) and colon-separated hex value.
    pub fingerprint: (String, String),
    pub candidates: Vec<RemoteCandidate>,
    pub opus_pt: u8,
    pub telephone_event_pt: Option<u8>,
    /// The id of `urn:ietf:params:rtp-hdrext:ssrc-audio-level`, if offered.
    pub audio_level_ext: Option<u8>,
    /// The audio sources in the room: SSRC and owner (endpoint id, or `jvb`).
    pub sources: Vec<(u32, String)>,
}

/// An ICE candidate with the fields of a Jingle `<candidate/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCandidate {
    pub foundation: String,
    pub component: u16,
    /// `udp` (only UDP candidates are used).
    pub protocol: String,
    pub priority: u32,
    pub ip: IpAddr,
    pub port: u16,
    /// `host`, `srflx`, `prflx` or `relay`.
    pub kind: String,
    /// `rel-addr`/`rel-port` of reflexive and relayed candidates.
    pub related: Option<SocketAddr>,
}

pub type RemoteCandidate = IceCandidate;
pub type LocalCandidate = IceCandidate;

/// What we answer Jicofo with (to `jingle::session_accept` / `transport_info`). Setup is always
/// active: we are the DTLS client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConferenceAnswer {
    pub ufrag: String,
    pub pwd: String,
    /// `("sha-256", "AB:CD:…")`.
    pub fingerprint: (String, String),
    pub candidates: Vec<LocalCandidate>,
    /// Our one audio source.
    pub ssrc: u32,
    pub cname: String,
    /// `"<stream id> <track id>"`.
    pub msid: String,
}

/// The phone side as SIP negotiated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhoneParams {
    pub codec: G711,
    pub codec_pt: u8,
    pub telephone_event_pt: Option<u8>,
    /// Where the phone's SDP says to send RTP (until its own RTP tells us better).
    pub remote_rtp: SocketAddr,
}

/// What a running call's media reports to `call`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// ICE and DTLS to the bridge are up; audio flows.
    ConferenceConnected,
    /// The bridge leg is gone or never came up (ICE/DTLS failure, connect timeout).
    ConferenceFailed(String),
    /// The phone's RTP arrived (first packet, or again after it had stopped).
    PhoneMediaStarted,
    /// No RTP from the phone for [`phone_leg::NO_RTP_TIMEOUT`] (also when none ever came).
    PhoneMediaStopped,
    /// The phone pressed a key (RFC 4733 telephone-event), reported once, as soon as the first
    /// packet of the press arrives.
    Dtmf(char),
}

/// Counters of one leg, in both directions (RTP packets and their payload bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct LegStats {
    pub packets_in: u64,
    pub bytes_in: u64,
    pub packets_out: u64,
    pub bytes_out: u64,
    /// Incoming RTP packets that never arrived (RFC 3550 expected − received).
    pub lost: u64,
    /// Incoming packets that came after their playout time (dropped).
    pub late: u64,
    /// Largest interarrival jitter of the leg's incoming streams, ms.
    pub jitter_ms: f64,
    /// 20 ms frames filled by loss concealment (PLC, FEC, or repetition for G.711).
    pub concealed_frames: u64,
}

/// Media counters of a call, returned by [`MediaHandle::stop`].
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct MediaStats {
    pub phone: LegStats,
    pub conference: LegStats,
}

/// How the process's media is set up: the settings, which IP to bind and which to advertise,
/// and the DTLS certificate every call shares (one ECDSA key per process: creating one per call
/// would cost more than the whole handshake, performance.md §3.6).
#[derive(Debug, Clone)]
pub struct MediaConfig {
    pub settings: MediaSettings,
    /// Where the sockets are bound: an interface address, or unspecified (`0.0.0.0`) for all.
    pub bind_ip: IpAddr,
    /// The address put in our ICE candidate and returned for the SDP: `bind_ip` unless it is
    /// unspecified or NAT maps it to another.
    pub advertise_ip: IpAddr,
    pub identity: DtlsIdentity,
    /// The threads that run every call's media.
    pub workers: std::sync::Arc<MediaWorkers>,
}

impl MediaConfig {
    /// Checks the addresses, creates the shared DTLS certificate and starts the media workers
    /// (one per core).
    pub fn new(
        settings: MediaSettings,
        bind_ip: IpAddr,
        advertise_ip: IpAddr,
    ) -> Result<MediaConfig, MediaError> {
        if advertise_ip.is_unspecified() || advertise_ip.is_multicast() {
            return Err(MediaError::Config(format!(
                "{advertise_ip} cannot be advertised to peers"
            )));
        }
        if !bind_ip.is_unspecified() && bind_ip.is_ipv4() != advertise_ip.is_ipv4() {
            return Err(MediaError::Config(format!(
                "bind address {bind_ip} and advertised address {advertise_ip} are of different families"
            )));
        }
        let identity = DtlsIdentity::generate()?;
        identity.warm_up();
        Ok(MediaConfig {
            settings,
            bind_ip,
            advertise_ip,
            identity,
            workers: std::sync::Arc::new(MediaWorkers::per_core()?),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("media configuration: {0}")]
    Config(String),
    #[error("no free UDP port on {ip} in {range}")]
    NoFreePort { ip: IpAddr, range: String },
    #[error("UDP socket: {0}")]
    Socket(#[from] std::io::Error),
    #[error("the conference offer cannot be used: {0}")]
    Offer(String),
    #[error("creating the DTLS certificate failed")]
    Certificate,
    #[error(transparent)]
    Opus(#[from] opus::OpusError),
}

/// A datagram a leg wants sent from its socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub destination: SocketAddr,
    pub payload: Vec<u8>,
}

/// A UDP socket for RTP outside a call's bridge (the SIP health check's call): on
/// `cfg.bind_ip`, from the media port range, an even port first.
pub fn bind_rtp_socket(cfg: &MediaConfig) -> Result<std::net::UdpSocket, MediaError> {
    ports::bind_udp(cfg.bind_ip, cfg.settings.ports, true)
}
