//! [`JingleIq`] → `<jingle>`, with the namespaces and child order of Jitsi's serialisers
//! (jitsi-xmpp-extensions' `JingleIQ`, `RtpDescriptionPacketExtension.getChildExtensions`,
//! `IceUdpTransportPacketExtension.cloneTransportAndCandidates`; Jicofo's `JingleSession`).

use super::model::{BridgeSession, Content, Group, JingleIq, Reason, StartMuted};
use super::rtp::{HdrExt, Parameter, PayloadType, RtcpFb, RtpDescription, Source, SsrcGroup};
use super::transport::{Candidate, Fingerprint, IceUdpTransport, SctpMap};
use super::xml::{element, SetAttr};
use super::{ns, Element};

impl JingleIq {
    /// The `<jingle>` element: contents, reason, then the IQ extensions in the order Jicofo adds
    /// them (group, startmuted, bridge-session, json-message).
    pub fn to_element(&self) -> Element {
        element("jingle", ns::JINGLE)
            .set("action", self.action.as_str())
            .set("initiator", self.initiator.as_ref())
            .set("responder", self.responder.as_ref())
            .set("sid", &self.sid)
            .append_all(self.contents.iter().map(content))
            .append_all(self.reason.iter().map(reason))
            .append_all(self.group.iter().map(group))
            .append_all(self.start_muted.iter().map(start_muted))
            .append_all(self.bridge_session.iter().map(bridge_session))
            .append_all(self.json_message.iter().map(|json| {
                element("json-message", ns::JITMEET)
                    .append(json.as_str())
                    .build()
            }))
            .build()
    }
}

fn content(c: &Content) -> Element {
    element("content", ns::JINGLE)
        .set("creator", c.creator.map(|x| x.as_str()))
        .set("name", &c.name)
        .set("senders", c.senders.map(|x| x.as_str()))
        .append_all(c.description.iter().map(description))
        .append_all(c.transport.iter().map(transport))
        .build()
}

fn reason(r: &Reason) -> Element {
    element("reason", ns::JINGLE)
        .append(element(r.condition.as_str(), ns::JINGLE).build())
        .append_all(
            r.text
                .iter()
                .map(|text| element("text", ns::JINGLE).append(text.as_str()).build()),
        )
        .build()
}

fn group(g: &Group) -> Element {
    element("group", ns::GROUPING)
        .set("semantics", &g.semantics)
        .append_all(
            g.contents
                .iter()
                .map(|name| element("content", ns::GROUPING).set("name", name).build()),
        )
        .build()
}

fn start_muted(m: &StartMuted) -> Element {
    element("startmuted", ns::START_MUTED)
        .set("audio", m.audio)
        .set("video", m.video)
        .build()
}

fn bridge_session(s: &BridgeSession) -> Element {
    element("bridge-session", ns::FOCUS)
        .set("id", s.id.as_ref())
        .set("region", s.region.as_ref())
        .set("restart", s.restart)
        .build()
}

/// Payload types, header extensions, extmap-allow-mixed, then rtcp-mux, sources and groups in the
/// order Jicofo adds them.
fn description(d: &RtpDescription) -> Element {
    element("description", ns::RTP)
        .set("media", d.media.as_ref())
        .set("ssrc", d.ssrc)
        .set("maxptime", d.maxptime)
        .append_all(d.payload_types.iter().map(payload_type))
        .append_all(d.hdrexts.iter().map(hdrext))
        .append_all(
            d.extmap_allow_mixed
                .then(|| element("extmap-allow-mixed", ns::HDREXT).build()),
        )
        .append_all(d.rtcp_mux.then(|| element("rtcp-mux", ns::RTP).build()))
        .append_all(d.sources.iter().map(source))
        .append_all(d.ssrc_groups.iter().map(ssrc_group))
        .build()
}

fn payload_type(p: &PayloadType) -> Element {
    element("payload-type", ns::RTP)
        .set("id", p.id)
        .set("name", p.name.as_ref())
        .set("clockrate", p.clockrate)
        .set("channels", p.channels)
        .append_all(p.parameters.iter().map(parameter))
        .append_all(p.rtcp_fbs.iter().map(rtcp_fb))
        .build()
}

/// Always in the RTP namespace, as jitsi-xmpp-extensions' `ParameterPacketExtension` writes it.
fn parameter(p: &Parameter) -> Element {
    element("parameter", ns::RTP)
        .set("name", p.name.as_ref())
        .set("value", p.value.as_ref())
        .build()
}

fn rtcp_fb(fb: &RtcpFb) -> Element {
    element("rtcp-fb", ns::RTCP_FB)
        .set("type", &fb.kind)
        .set("subtype", fb.subtype.as_ref())
        .build()
}

fn hdrext(h: &HdrExt) -> Element {
    element("rtp-hdrext", ns::HDREXT)
        .set("id", h.id)
        .set("uri", &h.uri)
        .set("senders", h.senders.map(|s| s.as_str()))
        .build()
}

/// `<ssrc-info>` first, then the parameters (Jicofo's `Source.toPacketExtension`).
fn source(s: &Source) -> Element {
    element("source", ns::SSMA)
        .set("ssrc", s.ssrc)
        .set("name", s.name.as_ref())
        .set("videoType", s.video_type.as_ref())
        .append_all(s.owner.iter().map(|owner| {
            element("ssrc-info", ns::JITMEET)
                .set("owner", owner)
                .build()
        }))
        .append_all(s.parameters.iter().map(parameter))
        .build()
}

fn ssrc_group(g: &SsrcGroup) -> Element {
    element("ssrc-group", ns::SSMA)
        .set("semantics", &g.semantics)
        .append_all(
            g.ssrcs
                .iter()
                .map(|ssrc| element("source", ns::SSMA).set("ssrc", *ssrc).build()),
        )
        .build()
}

/// Web sockets, rtcp-mux, fingerprints, sctpmap, then the candidates.
fn transport(t: &IceUdpTransport) -> Element {
    element("transport", ns::ICE_UDP)
        .set("ufrag", t.ufrag.as_ref())
        .set("pwd", t.pwd.as_ref())
        .append_all(
            t.web_sockets
                .iter()
                .map(|url| element("web-socket", ns::COLIBRI).set("url", url).build()),
        )
        .append_all(t.rtcp_mux.then(|| element("rtcp-mux", ns::ICE_UDP).build()))
        .append_all(t.fingerprints.iter().map(fingerprint))
        .append_all(t.sctpmap.iter().map(sctpmap))
        .append_all(t.candidates.iter().map(candidate))
        .build()
}

fn fingerprint(f: &Fingerprint) -> Element {
    element("fingerprint", ns::DTLS)
        .set("hash", &f.hash)
        .set("required", f.required)
        .set("setup", f.setup.map(|s| s.as_str()))
        .set("cryptex", f.cryptex)
        .append(f.value.as_str())
        .build()
}

fn sctpmap(s: &SctpMap) -> Element {
    element("sctpmap", ns::SCTP)
        .set("number", s.number)
        .set("protocol", s.protocol.as_ref())
        .set("streams", s.streams)
        .build()
}

fn candidate(c: &Candidate) -> Element {
    element("candidate", ns::ICE_UDP)
        .set("component", c.component)
        .set("foundation", &c.foundation)
        .set("generation", c.generation)
        .set("id", c.id.as_ref())
        .set("ip", c.ip)
        .set("network", c.network)
        .set("port", c.port)
        .set("priority", c.priority)
        .set("protocol", c.protocol.as_str())
        .set("type", c.kind.as_str())
        .set("rel-addr", c.rel_addr)
        .set("rel-port", c.rel_port)
        .set("tcptype", c.tcptype.map(|t| t.as_str()))
        .build()
}
