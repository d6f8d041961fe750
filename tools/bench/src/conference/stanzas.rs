//! The stanzas Jicofo exchanges with a jigasi-like occupant, as pure builders and parsers: the
//! audio-only `session-initiate`, the `<conference/>` answer, MUC presences, and what the gateway
//! sends back (transport-info, session-accept, session-terminate). Shapes follow Jicofo and
//! `tools/emulator/emulator/stanzas.py`; the gateway's own `jingle` module is deliberately not
//! reused, so a bug there cannot hide behind the same bug here.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use xmpp_parsers::minidom::{Element, NSChoice};

pub const NS_JINGLE: &str = "urn:xmpp:jingle:1";
pub const NS_RTP: &str = "urn:xmpp:jingle:apps:rtp:1";
pub const NS_ICE_UDP: &str = "urn:xmpp:jingle:transports:ice-udp:1";
pub const NS_DTLS: &str = "urn:xmpp:jingle:apps:dtls:0";
pub const NS_SSMA: &str = "urn:xmpp:jingle:apps:rtp:ssma:0";
pub const NS_HDREXT: &str = "urn:xmpp:jingle:apps:rtp:rtp-hdrext:0";
pub const NS_GROUPING: &str = "urn:xmpp:jingle:apps:grouping:0";
pub const NS_JITMEET: &str = "http://jitsi.org/jitmeet";
pub const NS_FOCUS: &str = "http://jitsi.org/protocol/focus";
pub const NS_JIGASI: &str = "http://jitsi.org/protocol/jigasi";
pub const NS_MUC: &str = "http://jabber.org/protocol/muc";
pub const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";
pub const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
pub const NS_PING: &str = "urn:xmpp:ping";
pub const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
pub const NS_COMPONENT: &str = "jabber:component:accept";
pub const NS_CLIENT: &str = "jabber:client";

/// The occupant nick of the focus in every room (the gateway only takes Jingle from it).
pub const FOCUS_NICK: &str = "focus";
/// RTP payload types and header-extension ids of Jicofo's defaults (reference.conf).
pub const OPUS_PT: u8 = 111;
pub const TELEPHONE_EVENT_PT: u8 = 126;
pub const AUDIO_LEVEL_EXT: u8 = 1;
pub const MID_EXT: u8 = 10;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StanzaError(pub String);

fn bad(msg: impl Into<String>) -> StanzaError {
    StanzaError(msg.into())
}

/// XML-escapes text for an attribute value or element content.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn parse(xml: &str) -> Element {
    // Only ever called on text built here from escaped values: a failure is a bug in this file.
    xml.parse()
        .unwrap_or_else(|e| panic!("built invalid XML ({e}): {xml}"))
}

/// One emulated speaker's audio source in the offer (or the bridge's own, owner `jvb`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferSource {
    pub ssrc: u32,
    /// The endpoint id (8 hex digits) of the speaker, as current Jicofo writes it; `jvb` for
    /// the bridge's own source.
    pub owner: String,
}

impl OfferSource {
    fn name(&self) -> String {
        format!("{}-a0", self.owner)
    }

    fn msid(&self) -> String {
        if self.owner == "jvb" {
            "mixedmslabel mixedlabelaudio0".into()
        } else {
            format!("{0}-audio-0 {0}-audio-track-0", self.owner)
        }
    }
}

/// What a session-initiate carries for one occupant.
#[derive(Debug, Clone)]
pub struct Offer<'a> {
    pub sid: &'a str,
    /// Jicofo's real JID (`focus@auth.<domain>/focus`).
    pub initiator: &'a str,
    pub ufrag: &'a str,
    pub pwd: &'a str,
    /// The bridge's sha-256 fingerprint, colon hex.
    pub fingerprint: &'a str,
    pub candidate: SocketAddr,
    pub sources: &'a [OfferSource],
    pub bridge_session_id: &'a str,
}

/// Jicofo's session-initiate for a jigasi-like occupant: audio only (opus/111 with minptime and
/// in-band FEC, telephone-event/126), ssrc-audio-level and mid header extensions, rtcp-mux, one
/// `<source>` with `<ssrc-info owner>` per speaker plus the bridge's, the bundled ICE-UDP
/// transport with setup=actpass and one host candidate, the BUNDLE group and bridge-session.
pub fn session_initiate(o: &Offer<'_>) -> Element {
    let mut sources = String::new();
    for s in o.sources {
        let _ = write!(
            sources,
            r#"<source xmlns="{NS_SSMA}" ssrc="{}" name="{}"><ssrc-info xmlns="{NS_JITMEET}" owner="{}"/><parameter xmlns="{NS_RTP}" name="msid" value="{}"/></source>"#,
            s.ssrc,
            esc(&s.name()),
            esc(&s.owner),
            esc(&s.msid()),
        );
    }
    let xml = format!(
        r#"<jingle xmlns="{NS_JINGLE}" action="session-initiate" initiator="{initiator}" sid="{sid}"><content creator="initiator" name="audio" senders="both"><description xmlns="{NS_RTP}" media="audio" maxptime="60"><payload-type id="{OPUS_PT}" name="opus" clockrate="48000" channels="2"><parameter name="minptime" value="10"/><parameter name="useinbandfec" value="1"/></payload-type><payload-type id="{TELEPHONE_EVENT_PT}" name="telephone-event" clockrate="8000"/><rtp-hdrext xmlns="{NS_HDREXT}" id="{AUDIO_LEVEL_EXT}" uri="urn:ietf:params:rtp-hdrext:ssrc-audio-level"/><rtp-hdrext xmlns="{NS_HDREXT}" id="{MID_EXT}" uri="urn:ietf:params:rtp-hdrext:sdes:mid"/><extmap-allow-mixed xmlns="{NS_HDREXT}"/><rtcp-mux/>{sources}</description><transport xmlns="{NS_ICE_UDP}" ufrag="{ufrag}" pwd="{pwd}"><rtcp-mux/><fingerprint xmlns="{NS_DTLS}" hash="sha-256" required="false" setup="actpass">{fingerprint}</fingerprint><candidate component="1" foundation="1" generation="0" id="{sid}c1" network="0" priority="2130706431" protocol="udp" type="host" ip="{ip}" port="{port}"/></transport></content><group xmlns="{NS_GROUPING}" semantics="BUNDLE"><content name="audio"/></group><bridge-session xmlns="{NS_FOCUS}" id="{bsid}" region="lab"/></jingle>"#,
        initiator = esc(o.initiator),
        sid = esc(o.sid),
        ufrag = esc(o.ufrag),
        pwd = esc(o.pwd),
        fingerprint = esc(o.fingerprint),
        ip = o.candidate.ip(),
        port = o.candidate.port(),
        bsid = esc(o.bridge_session_id),
    );
    parse(&xml)
}

/// Jicofo's session-terminate (sent when the benchmark stops while calls are up).
pub fn session_terminate(sid: &str, reason: &str, text: &str) -> Element {
    parse(&format!(
        r#"<jingle xmlns="{NS_JINGLE}" action="session-terminate" sid="{}"><reason><{reason}/><text>{}</text></reason></jingle>"#,
        esc(sid),
        esc(text),
    ))
}

/// The focus component's answer to `<conference room=…/>` (Jicofo's ConferenceIqHandler).
pub fn conference_result(room: &str, focus_jid: &str) -> Element {
    parse(&format!(
        r#"<conference xmlns="{NS_FOCUS}" room="{}" focusjid="{}" ready="true"><property name="authentication" value="false"/><property name="sipGatewayEnabled" value="true"/><property name="visitors-supported" value="false"/></conference>"#,
        esc(room),
        esc(focus_jid),
    ))
}

/// The room a `<conference/>` request asks for, lower-cased (MUC JIDs are case-insensitive).
pub fn conference_room(el: &Element) -> Result<String, StanzaError> {
    if !el.is("conference", NS_FOCUS) {
        return Err(bad("not a focus <conference/>"));
    }
    match el.attr("room") {
        Some(r) if r.contains('@') && !r.contains('/') => Ok(r.to_ascii_lowercase()),
        Some(r) => Err(bad(format!("conference room {r:?} is not a bare room JID"))),
        None => Err(bad("conference without room")),
    }
}

/// The MUC join payload (Jicofo's own presence carries more; the gateway looks at none of it).
pub fn muc_join() -> Element {
    parse(&format!(r#"<x xmlns="{NS_MUC}"/>"#))
}

/// disco#info result of the focus (client and component).
pub fn disco_info(features: &[&str]) -> Element {
    let mut xml = format!(r#"<query xmlns="{NS_DISCO_INFO}">"#);
    for f in features {
        let _ = write!(xml, r#"<feature var="{}"/>"#, esc(f));
    }
    xml.push_str("</query>");
    parse(&xml)
}

/// An IQ error payload `<error type=…><condition/></error>` in the stream's namespace.
pub fn iq_error(stream_ns: &str, kind: &str, condition: &str) -> Element {
    parse(&format!(
        r#"<error xmlns="{stream_ns}" type="{kind}"><{condition} xmlns="{NS_STANZAS}"/></error>"#
    ))
}

/// A candidate the gateway announced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCandidate {
    pub foundation: String,
    pub component: u16,
    pub protocol: String,
    pub priority: u32,
    pub addr: SocketAddr,
    pub kind: String,
}

/// The gateway's DTLS fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFingerprint {
    pub hash: String,
    pub setup: Option<String>,
    pub value: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteTransport {
    pub ufrag: Option<String>,
    pub pwd: Option<String>,
    pub fingerprint: Option<RemoteFingerprint>,
    pub candidates: Vec<RemoteCandidate>,
}

/// A Jingle set from the gateway, reduced to what the bridge needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayJingle {
    pub action: String,
    pub sid: String,
    pub transport: RemoteTransport,
    /// The gateway's send SSRC (its `<source>`, or the description's `ssrc`).
    pub ssrc: Option<u32>,
    /// session-terminate's reason condition.
    pub reason: Option<String>,
}

/// Parses a `<jingle/>` set from the gateway. Unknown children are ignored; only what cannot be
/// read at all (no action or sid, an unreadable number or address) is an error.
pub fn parse_jingle(el: &Element) -> Result<GatewayJingle, StanzaError> {
    if !el.is("jingle", NS_JINGLE) {
        return Err(bad("not a <jingle/>"));
    }
    let action = el
        .attr("action")
        .ok_or_else(|| bad("jingle without action"))?;
    let sid = el.attr("sid").ok_or_else(|| bad("jingle without sid"))?;
    let mut out = GatewayJingle {
        action: action.to_owned(),
        sid: sid.to_owned(),
        transport: RemoteTransport::default(),
        ssrc: None,
        reason: None,
    };
    for content in el.children().filter(|c| c.is("content", NS_JINGLE)) {
        if let Some(d) = content.get_child("description", NS_RTP) {
            if d.attr("media").is_some_and(|m| m != "audio") {
                continue;
            }
            let from_source = d
                .children()
                .find(|s| s.is("source", NS_SSMA))
                .and_then(|s| s.attr("ssrc"));
            if let Some(ssrc) = from_source.or(d.attr("ssrc")) {
                out.ssrc = Some(number(ssrc, "ssrc")?);
            }
        }
        if let Some(t) = content.get_child("transport", NS_ICE_UDP) {
            merge_transport(&mut out.transport, t)?;
        }
    }
    if let Some(r) = el.get_child("reason", NS_JINGLE) {
        out.reason = r
            .children()
            .find(|c| c.name() != "text")
            .map(|c| c.name().to_owned());
    }
    Ok(out)
}

fn merge_transport(into: &mut RemoteTransport, t: &Element) -> Result<(), StanzaError> {
    if let (Some(u), Some(p)) = (t.attr("ufrag"), t.attr("pwd")) {
        into.ufrag = Some(u.to_owned());
        into.pwd = Some(p.to_owned());
    }
    if let Some(f) = t.get_child("fingerprint", NS_DTLS) {
        into.fingerprint = Some(RemoteFingerprint {
            hash: f.attr("hash").unwrap_or("sha-256").to_owned(),
            setup: f.attr("setup").map(str::to_owned),
            value: f.text().trim().to_owned(),
        });
    }
    for c in t.children().filter(|c| c.is("candidate", NS_ICE_UDP)) {
        let ip: IpAddr = c
            .attr("ip")
            .ok_or_else(|| bad("candidate without ip"))?
            .parse()
            .map_err(|e| bad(format!("candidate ip: {e}")))?;
        into.candidates.push(RemoteCandidate {
            foundation: c.attr("foundation").unwrap_or("1").to_owned(),
            component: number(c.attr("component").unwrap_or("1"), "component")?,
            protocol: c.attr("protocol").unwrap_or("udp").to_owned(),
            priority: number(c.attr("priority").unwrap_or("0"), "priority")?,
            addr: SocketAddr::new(ip, number(c.attr("port").unwrap_or(""), "port")?),
            kind: c.attr("type").unwrap_or("host").to_owned(),
        });
    }
    Ok(())
}

fn number<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, StanzaError> {
    s.trim()
        .parse()
        .map_err(|_| bad(format!("{what} {s:?} is not a valid number")))
}

/// A MUC presence, reduced to what the focus follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MucPresence {
    /// The bare room JID, lower-cased.
    pub room: String,
    pub nick: String,
    pub unavailable: bool,
    /// Our own presence in the room (status 110).
    pub is_self: bool,
    /// A join refused: the error condition.
    pub error: Option<String>,
    /// The occupant presents itself as a jigasi (the jigasi feature or `<initiator>`).
    pub is_gateway: bool,
}

/// Reads a presence from `from` (room@muc/nick) with its type (`None` for available) and
/// payloads. `None` when `from` is not an occupant JID.
pub fn muc_presence(from: &str, kind: Option<&str>, payloads: &[Element]) -> Option<MucPresence> {
    let (room, nick) = from.split_once('/')?;
    if !room.contains('@') || nick.is_empty() {
        return None;
    }
    let user = payloads.iter().find(|p| p.is("x", NS_MUC_USER));
    let is_self = user.is_some_and(|x| {
        x.children()
            .any(|s| s.is("status", NS_MUC_USER) && s.attr("code") == Some("110"))
    });
    let error = (kind == Some("error")).then(|| {
        payloads
            .iter()
            .find(|p| p.name() == "error")
            .and_then(|e| e.children().next().map(|c| c.name().to_owned()))
            .unwrap_or_else(|| "undefined-condition".into())
    });
    let has_jigasi_feature = payloads.iter().any(|p| {
        p.name() == "features"
            && p.children()
                .any(|f| f.is("feature", NSChoice::Any) && f.attr("var") == Some(NS_JIGASI))
    });
    let has_initiator = payloads.iter().any(|p| p.is("initiator", NS_JIGASI));
    Some(MucPresence {
        room: room.to_ascii_lowercase(),
        nick: nick.to_owned(),
        unavailable: kind == Some("unavailable"),
        is_self,
        error,
        is_gateway: has_jigasi_feature || has_initiator,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Element {
        let path = format!(
            "{}/../../tests/fixtures/jingle/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .parse()
            .unwrap()
    }

    fn offer() -> Element {
        let sources = [
            OfferSource {
                ssrc: 11,
                owner: "abcd1234".into(),
            },
            OfferSource {
                ssrc: 12,
                owner: "jvb".into(),
            },
        ];
        session_initiate(&Offer {
            sid: "s1",
            initiator: "focus@auth.meet.jitsi/focus",
            ufrag: "uf",
            pwd: "pw",
            fingerprint: "AB:CD",
            candidate: "127.0.0.1:4000".parse().unwrap(),
            sources: &sources,
            bridge_session_id: "b1",
        })
    }

    #[test]
    fn the_offer_has_the_shape_of_jicofos_for_jigasi() {
        let el = offer();
        let content = el.get_child("content", NS_JINGLE).unwrap();
        let d = content.get_child("description", NS_RTP).unwrap();
        let pts: Vec<_> = d
            .children()
            .filter(|c| c.is("payload-type", NS_RTP))
            .map(|p| (p.attr("id").unwrap(), p.attr("name").unwrap()))
            .collect();
        assert_eq!(pts, [("111", "opus"), ("126", "telephone-event")]);
        let owners: Vec<_> = d
            .children()
            .filter(|c| c.is("source", NS_SSMA))
            .map(|s| {
                s.get_child("ssrc-info", NS_JITMEET)
                    .unwrap()
                    .attr("owner")
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(owners, ["abcd1234", "jvb"]);
        let t = content.get_child("transport", NS_ICE_UDP).unwrap();
        assert_eq!(
            t.get_child("fingerprint", NS_DTLS).unwrap().attr("setup"),
            Some("actpass")
        );
        let c = t.get_child("candidate", NS_ICE_UDP).unwrap();
        assert_eq!(
            (c.attr("ip"), c.attr("port")),
            (Some("127.0.0.1"), Some("4000"))
        );
        assert!(el.has_child("group", NS_GROUPING));
        assert!(el.has_child("bridge-session", NS_FOCUS));
    }

    #[test]
    fn the_offer_parses_like_jicofos_fixture() {
        // Our own parser reads our offer and the recorded Jicofo offer alike.
        let ours = parse_jingle(&offer()).unwrap();
        let theirs = parse_jingle(&fixture("session-initiate-jigasi.xml")).unwrap();
        assert_eq!(ours.action, theirs.action);
        assert_eq!(
            ours.transport.fingerprint.unwrap().setup.as_deref(),
            Some("actpass")
        );
        assert!(theirs.transport.ufrag.is_some() && ours.transport.ufrag.is_some());
    }

    #[test]
    fn transport_info_gives_credentials_and_candidates() {
        let j = parse_jingle(&fixture("transport-info-jigasi.xml")).unwrap();
        assert_eq!(j.action, "transport-info");
        assert_eq!(j.transport.ufrag.as_deref(), Some("4mtr91fh0s2qb6"));
        assert_eq!(j.transport.candidates.len(), 2);
        assert_eq!(
            j.transport.candidates[0].addr,
            "172.18.0.7:20000".parse().unwrap()
        );
        assert_eq!(j.transport.fingerprint, None);
    }

    #[test]
    fn session_accept_gives_fingerprint_setup_and_ssrc() {
        let j = parse_jingle(&fixture("session-accept-jigasi.xml")).unwrap();
        assert_eq!(j.ssrc, Some(1_789_243_650));
        let fp = j.transport.fingerprint.unwrap();
        assert_eq!(fp.setup.as_deref(), Some("active"));
        assert!(fp.value.starts_with("8F:12"));
    }

    #[test]
    fn terminate_reason_is_read() {
        let j = parse_jingle(&fixture("session-terminate-success.xml")).unwrap();
        assert_eq!(j.reason.as_deref(), Some("success"));
        let ours = parse_jingle(&session_terminate("s", "gone", "bye")).unwrap();
        assert_eq!(ours.reason.as_deref(), Some("gone"));
    }

    #[test]
    fn unreadable_jingle_is_an_error_not_a_panic() {
        for xml in [
            r#"<jingle xmlns="urn:xmpp:jingle:1" sid="x"/>"#,
            r#"<jingle xmlns="urn:xmpp:jingle:1" action="transport-info" sid="x"><content name="audio"><transport xmlns="urn:xmpp:jingle:transports:ice-udp:1"><candidate ip="nope" port="1"/></transport></content></jingle>"#,
            r#"<jingle xmlns="urn:xmpp:jingle:1" action="session-accept" sid="x"><content name="audio"><description xmlns="urn:xmpp:jingle:apps:rtp:1" media="audio" ssrc="99999999999"/></content></jingle>"#,
        ] {
            assert!(parse_jingle(&xml.parse().unwrap()).is_err(), "{xml}");
        }
    }

    #[test]
    fn gateway_presence_is_recognised() {
        let features: Element =
            format!(r#"<features xmlns="jabber:client"><feature var="{NS_JIGASI}"/></features>"#)
                .parse()
                .unwrap();
        let p = muc_presence("Room1@muc.meet.jitsi/5f3a09c1", None, &[features]).unwrap();
        assert_eq!(p.room, "room1@muc.meet.jitsi");
        assert!(p.is_gateway && !p.unavailable && !p.is_self);
        let own: Element = format!(r#"<x xmlns="{NS_MUC_USER}"><status code="110"/></x>"#)
            .parse()
            .unwrap();
        let p = muc_presence("room1@muc.meet.jitsi/focus", None, &[own]).unwrap();
        assert!(p.is_self && !p.is_gateway);
        assert_eq!(muc_presence("meet.jitsi", None, &[]), None);
    }

    #[test]
    fn conference_requests_are_checked() {
        let ok: Element =
            format!(r#"<conference xmlns="{NS_FOCUS}" room="Room1@muc.meet.jitsi"/>"#)
                .parse()
                .unwrap();
        assert_eq!(conference_room(&ok).unwrap(), "room1@muc.meet.jitsi");
        let bad: Element = format!(r#"<conference xmlns="{NS_FOCUS}"/>"#)
            .parse()
            .unwrap();
        assert!(conference_room(&bad).is_err());
        let answer = conference_result("room1@muc.meet.jitsi", "focus@auth.meet.jitsi");
        assert_eq!(answer.attr("ready"), Some("true"));
    }
}
