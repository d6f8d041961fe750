//! The XML namespaces of Jitsi's Jingle (reference `jigasi-behaviour.md` §7.4).

pub const JINGLE: &str = "urn:xmpp:jingle:1";
pub const RTP: &str = "urn:xmpp:jingle:apps:rtp:1";
pub const RTCP_FB: &str = "urn:xmpp:jingle:apps:rtp:rtcp-fb:0";
pub const HDREXT: &str = "urn:xmpp:jingle:apps:rtp:rtp-hdrext:0";
pub const SSMA: &str = "urn:xmpp:jingle:apps:rtp:ssma:0";
pub const GROUPING: &str = "urn:xmpp:jingle:apps:grouping:0";
pub const ICE_UDP: &str = "urn:xmpp:jingle:transports:ice-udp:1";
pub const DTLS: &str = "urn:xmpp:jingle:apps:dtls:0";
pub const SCTP: &str = "urn:xmpp:jingle:transports:dtls-sctp:1";
pub const COLIBRI: &str = "http://jitsi.org/protocol/colibri";
pub const FOCUS: &str = "http://jitsi.org/protocol/focus";
pub const JITMEET: &str = "http://jitsi.org/jitmeet";
pub const START_MUTED: &str = "http://jitsi.org/jitmeet/start-muted";
