//! The ICE-UDP transport (XEP-0176) with the DTLS fingerprint (XEP-0320), the colibri web socket
//! and the SCTP map Jitsi add to it.

use std::net::IpAddr;

/// `<transport xmlns="urn:xmpp:jingle:transports:ice-udp:1">`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceUdpTransport {
    pub ufrag: Option<String>,
    pub pwd: Option<String>,
    pub rtcp_mux: bool,
    pub fingerprints: Vec<Fingerprint>,
    pub candidates: Vec<Candidate>,
    /// `<web-socket url>` of the bridge's colibri channel (not used for audio).
    pub web_sockets: Vec<String>,
    /// Present on the data content only.
    pub sctpmap: Option<SctpMap>,
}

/// `<fingerprint hash setup required cryptex>value</fingerprint>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint {
    pub hash: String,
    pub setup: Option<Setup>,
    pub value: String,
    pub required: Option<bool>,
    pub cryptex: Option<bool>,
}

/// The DTLS role of the side that wrote the fingerprint (RFC 4145 `a=setup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Setup {
    Active,
    Passive,
    Actpass,
    Holdconn,
}

impl Setup {
    pub fn parse(text: &str) -> Option<Setup> {
        [
            Setup::Active,
            Setup::Passive,
            Setup::Actpass,
            Setup::Holdconn,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Setup::Active => "active",
            Setup::Passive => "passive",
            Setup::Actpass => "actpass",
            Setup::Holdconn => "holdconn",
        }
    }
}

/// `<candidate>`: one ICE candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// 1 for RTP (the only one with rtcp-mux), 2 for RTCP.
    pub component: u16,
    pub foundation: String,
    pub generation: Option<u32>,
    pub id: Option<String>,
    pub ip: IpAddr,
    pub network: Option<u32>,
    pub port: u16,
    pub priority: u32,
    pub protocol: Protocol,
    pub kind: CandidateType,
    pub rel_addr: Option<IpAddr>,
    pub rel_port: Option<u16>,
    pub tcptype: Option<TcpType>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Udp,
    Tcp,
    /// The bridge's TCP-over-"TLS-looking" candidates.
    SslTcp,
}

impl Protocol {
    /// Case-insensitive: SDP writes `UDP`, Jingle senders write `udp`.
    pub fn parse(text: &str) -> Option<Protocol> {
        [Protocol::Udp, Protocol::Tcp, Protocol::SslTcp]
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(text))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
            Protocol::SslTcp => "ssltcp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CandidateType {
    Host,
    Srflx,
    Prflx,
    Relay,
}

impl CandidateType {
    pub fn parse(text: &str) -> Option<CandidateType> {
        [
            CandidateType::Host,
            CandidateType::Srflx,
            CandidateType::Prflx,
            CandidateType::Relay,
        ]
        .into_iter()
        .find(|t| t.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CandidateType::Host => "host",
            CandidateType::Srflx => "srflx",
            CandidateType::Prflx => "prflx",
            CandidateType::Relay => "relay",
        }
    }
}

/// RFC 6544 TCP candidate type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TcpType {
    Active,
    Passive,
    So,
}

impl TcpType {
    pub fn parse(text: &str) -> Option<TcpType> {
        [TcpType::Active, TcpType::Passive, TcpType::So]
            .into_iter()
            .find(|t| t.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TcpType::Active => "active",
            TcpType::Passive => "passive",
            TcpType::So => "so",
        }
    }
}

/// `<sctpmap number protocol streams>` of the data content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SctpMap {
    pub number: u16,
    pub protocol: Option<String>,
    pub streams: Option<u32>,
}
