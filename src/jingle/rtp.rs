//! The RTP application description (XEP-0167) with what Jitsi puts in it: header extensions
//! (XEP-0294), RTCP feedback (XEP-0293), sources and source groups (XEP-0339) with Jitsi's
//! `<ssrc-info owner>`.

use super::model::Senders;

/// `<description xmlns="urn:xmpp:jingle:apps:rtp:1">`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RtpDescription {
    /// `audio`, `video` or `application` (Jicofo's data content).
    pub media: Option<String>,
    /// The sender's own SSRC, as jigasi's session-accept states it.
    pub ssrc: Option<u32>,
    /// Jicofo offers audio with `maxptime="60"`.
    pub maxptime: Option<u32>,
    pub payload_types: Vec<PayloadType>,
    pub hdrexts: Vec<HdrExt>,
    pub extmap_allow_mixed: bool,
    pub rtcp_mux: bool,
    pub sources: Vec<Source>,
    pub ssrc_groups: Vec<SsrcGroup>,
}

impl RtpDescription {
    pub fn new(media: impl Into<String>) -> RtpDescription {
        RtpDescription {
            media: Some(media.into()),
            ..RtpDescription::default()
        }
    }
}

/// `<payload-type id name clockrate channels>` with its format parameters and RTCP feedback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayloadType {
    /// 0..=127: an RTP payload type is seven bits.
    pub id: u8,
    pub name: Option<String>,
    pub clockrate: Option<u32>,
    pub channels: Option<u16>,
    pub parameters: Vec<Parameter>,
    pub rtcp_fbs: Vec<RtcpFb>,
}

impl PayloadType {
    pub fn new(id: u8, name: &str, clockrate: u32) -> PayloadType {
        PayloadType {
            id,
            name: Some(name.to_owned()),
            clockrate: Some(clockrate),
            channels: None,
            parameters: Vec::new(),
            rtcp_fbs: Vec::new(),
        }
    }

    /// Whether this is `name/clockrate[/channels]`, the name compared without case as in SDP.
    pub fn is(&self, name: &str, clockrate: u32, channels: Option<u16>) -> bool {
        self.name
            .as_deref()
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
            && self.clockrate == Some(clockrate)
            && (channels.is_none() || self.channels == channels)
    }
}

/// `<parameter name value>`. Both may be absent: RED's fmtp has no name, and lib-jitsi-meet
/// writes `name=""` for a bare fmtp value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    pub name: Option<String>,
    pub value: Option<String>,
}

impl Parameter {
    pub fn new(name: &str, value: &str) -> Parameter {
        Parameter {
            name: Some(name.to_owned()),
            value: Some(value.to_owned()),
        }
    }
}

/// `<rtcp-fb type subtype>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtcpFb {
    pub kind: String,
    pub subtype: Option<String>,
}

/// `<rtp-hdrext id uri senders>` (RFC 8285 ids are 1..=255).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HdrExt {
    pub id: u8,
    pub uri: String,
    pub senders: Option<Senders>,
}

/// `<source ssrc name videoType>` with `<ssrc-info owner>` and `<parameter>`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub ssrc: u32,
    pub name: Option<String>,
    pub video_type: Option<String>,
    /// Who sends it, as Jicofo writes it: an endpoint id, an occupant JID (older Jicofo) or `jvb`.
    pub owner: Option<String>,
    pub parameters: Vec<Parameter>,
}

impl Source {
    pub fn new(ssrc: u32) -> Source {
        Source {
            ssrc,
            name: None,
            video_type: None,
            owner: None,
            parameters: Vec::new(),
        }
    }

    /// The value of the first parameter with this name.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters
            .iter()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| p.value.as_deref())
    }
}

/// `<ssrc-group semantics><source ssrc/>…</ssrc-group>` (FID, SIM, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsrcGroup {
    pub semantics: String,
    pub ssrcs: Vec<u32>,
}
