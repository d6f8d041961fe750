"""Pure builders and parsers of the XML payloads the emulator exchanges (no I/O).

Shapes follow Jicofo (jitsi/jicofo) and jitsi-xmpp-extensions, read from their sources:
  * session-initiate: JingleOfferFactory + CodecUtil (codec/extension lists and order),
    ParticipantInviteRunnable.updateOffer (transport copied into every content, rtcp-mux in the
    description), JingleSession.initiateSession (BUNDLE group, bridge-session after the contents),
    Source.toPacketExtension (ssrc-info owner, msid parameter), colibri Extensions.kt (jvb sources).
  * source-add/remove: EndpointSourceSet.toJingle (content name = media type, no creator/senders).
  * session-terminate: JinglePacketFactory.createSessionTerminate (no initiator, reason + text).
  * element child order: RtpDescriptionPacketExtension.getChildExtensions (payload types, extmaps,
    extmap-allow-mixed, then everything else in insertion order).
Everything is an xml.etree Element with '{namespace}local' tags; `tostring` prints them with the
minimal xmlns declarations, like Smack does.

Parsers raise StanzaError (condition 'bad-request' unless said otherwise) on malformed input, so the
caller can answer with an XMPP error IQ instead of crashing.
"""
from __future__ import annotations

import re
import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Optional

# --- namespaces --------------------------------------------------------------------------------
NS_CLIENT = "jabber:client"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_JINGLE = "urn:xmpp:jingle:1"
NS_RTP = "urn:xmpp:jingle:apps:rtp:1"
NS_ICE_UDP = "urn:xmpp:jingle:transports:ice-udp:1"
NS_DTLS = "urn:xmpp:jingle:apps:dtls:0"
NS_SSMA = "urn:xmpp:jingle:apps:rtp:ssma:0"
NS_HDREXT = "urn:xmpp:jingle:apps:rtp:rtp-hdrext:0"
NS_RTCP_FB = "urn:xmpp:jingle:apps:rtp:rtcp-fb:0"
NS_GROUPING = "urn:xmpp:jingle:apps:grouping:0"
NS_SCTP = "urn:xmpp:jingle:transports:dtls-sctp:1"
NS_JITMEET = "http://jitsi.org/jitmeet"
NS_FOCUS = "http://jitsi.org/protocol/focus"
NS_JIGASI = "http://jitsi.org/protocol/jigasi"
NS_RAYO = "urn:xmpp:rayo:1"
NS_NICK = "http://jabber.org/protocol/nick"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_MUC_ADMIN = "http://jabber.org/protocol/muc#admin"
NS_MUC_OWNER = "http://jabber.org/protocol/muc#owner"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_MUTE_AUDIO = "http://jitsi.org/jitmeet/audio"
NS_COLIBRI = "http://jitsi.org/protocol/colibri"

# --- disco features Jicofo maps to offer options (jicofo Features.kt) ---------------------------
FEATURE_AUDIO = "urn:xmpp:jingle:apps:rtp:audio"
FEATURE_VIDEO = "urn:xmpp:jingle:apps:rtp:video"
FEATURE_SCTP = "urn:xmpp:jingle:transports:dtls-sctp:1"
FEATURE_RTX = "urn:ietf:rfc:4588"
FEATURE_REMB = "http://jitsi.org/remb"
FEATURE_TCC = "http://jitsi.org/tcc"
FEATURE_OPUS_RED = "http://jitsi.org/opus-red"
FEATURE_JSON_SOURCES = "http://jitsi.org/json-encoded-sources"
FEATURE_JIGASI = "http://jitsi.org/protocol/jigasi"
FEATURE_DTMF = "urn:xmpp:jingle:dtmf:0"
FEATURE_AUDIO_MUTE = "http://jitsi.org/protocol/audio-mute"
# used when disco#info gets no answer, an error or times out (Features.defaultFeatures)
DEFAULT_FEATURES = (FEATURE_AUDIO, FEATURE_VIDEO, FEATURE_SCTP)

URI_AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
URI_MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
URI_TCC = "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01"
URI_ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
URI_AV1_DD = "https://aomediacodec.github.io/av1-rtp-spec/#dependency-descriptor-rtp-header-extension"

JINGLE_ACTIONS = {
    "content-accept", "content-add", "content-modify", "content-reject", "content-remove",
    "description-info", "security-info", "session-accept", "session-info", "session-initiate",
    "session-terminate", "transport-accept", "transport-info", "transport-reject",
    "transport-replace", "source-add", "source-remove", "addsource", "removesource",
}
REASONS = {
    "alternative-session", "busy", "cancel", "connectivity-error", "decline", "expired",
    "failed-application", "failed-transport", "general-error", "gone", "incompatible-parameters",
    "media-error", "security-error", "success", "timeout", "unsupported-applications",
    "unsupported-transports", "undefined",
}


class StanzaError(ValueError):
    """Malformed or unacceptable input; `condition` is the XMPP stanza error to answer with."""

    def __init__(self, message: str, condition: str = "bad-request", error_type: str = "modify"):
        super().__init__(message)
        self.condition = condition
        self.error_type = error_type


def q(ns: str, local: str) -> str:
    return "{%s}%s" % (ns, local)


def split_tag(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


def local_name(el: ET.Element) -> str:
    return split_tag(el.tag)[1]


# --- data model (shared by builders and parsers, so parse(build(x)) == x) ---------------------
@dataclass
class Parameter:
    name: Optional[str]
    value: str


@dataclass
class RtcpFb:
    type: str
    subtype: Optional[str] = None


@dataclass
class PayloadType:
    id: int
    name: str
    clockrate: Optional[int] = None
    channels: Optional[int] = None
    parameters: list[Parameter] = field(default_factory=list)
    rtcp_fbs: list[RtcpFb] = field(default_factory=list)


@dataclass
class HdrExt:
    id: int
    uri: str


@dataclass
class Source:
    ssrc: int
    name: Optional[str] = None
    owner: Optional[str] = None
    parameters: list[Parameter] = field(default_factory=list)

    def param(self, name: str) -> Optional[str]:
        for p in self.parameters:
            if p.name == name:
                return p.value
        return None

    @property
    def msid(self) -> Optional[str]:
        return self.param("msid")


@dataclass
class Description:
    media: Optional[str]
    payload_types: list[PayloadType] = field(default_factory=list)
    hdrexts: list[HdrExt] = field(default_factory=list)
    extmap_allow_mixed: bool = False
    rtcp_mux: bool = False
    sources: list[Source] = field(default_factory=list)
    maxptime: Optional[str] = None


@dataclass
class Candidate:
    component: int
    foundation: str
    generation: Optional[int]
    id: Optional[str]
    ip: str
    network: Optional[int]
    port: int
    priority: int
    protocol: str
    type: str
    rel_addr: Optional[str] = None
    rel_port: Optional[int] = None
    tcptype: Optional[str] = None


@dataclass
class Fingerprint:
    hash: str
    value: str
    setup: Optional[str] = None


@dataclass
class SctpMap:
    number: int
    protocol: str = "webrtc-datachannel"
    streams: int = 1024


@dataclass
class Transport:
    ufrag: Optional[str] = None
    pwd: Optional[str] = None
    rtcp_mux: bool = False
    fingerprints: list[Fingerprint] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    sctpmap: Optional[SctpMap] = None


@dataclass
class Content:
    name: str
    creator: Optional[str] = None
    senders: Optional[str] = None
    description: Optional[Description] = None
    transport: Optional[Transport] = None


@dataclass
class BridgeSession:
    id: Optional[str]
    region: Optional[str] = None
    restart: Optional[bool] = None


@dataclass
class Jingle:
    action: str
    sid: str
    initiator: Optional[str] = None
    responder: Optional[str] = None
    contents: list[Content] = field(default_factory=list)
    reason: Optional[str] = None
    reason_text: Optional[str] = None
    group_semantics: Optional[str] = None
    group_contents: list[str] = field(default_factory=list)
    bridge_session: Optional[BridgeSession] = None

    def content(self, name: str) -> Optional[Content]:
        for c in self.contents:
            if c.name == name:
                return c
        return None

    def sources(self, media: Optional[str] = None) -> list[Source]:
        """All <source>s, optionally only those of descriptions with this media (or content name)."""
        out = []
        for c in self.contents:
            d = c.description
            if d is None:
                continue
            if media is None or d.media == media or (d.media is None and c.name == media):
                out.extend(d.sources)
        return out

    def merged_transport(self) -> Optional[Transport]:
        """One view of the bundled transport: first ufrag/pwd/fingerprint seen, all candidates."""
        merged = None
        for c in self.contents:
            t = c.transport
            if t is None:
                continue
            if merged is None:
                merged = Transport()
            merged.ufrag = merged.ufrag or t.ufrag
            merged.pwd = merged.pwd or t.pwd
            merged.rtcp_mux = merged.rtcp_mux or t.rtcp_mux
            if not merged.fingerprints:
                merged.fingerprints = list(t.fingerprints)
            for cand in t.candidates:
                if cand not in merged.candidates:
                    merged.candidates.append(cand)
        return merged


# --- Jicofo's offer (defaults of jicofo-common reference.conf, codec section) ----------------
@dataclass
class OfferOptions:
    """jicofo OfferOptions after applyConstraints() and the REMB rule of ParticipantInviteRunnable."""
    audio: bool = True
    video: bool = True
    sctp: bool = True
    tcc: bool = True
    remb: bool = False
    rtx: bool = True
    opus_red: bool = True


def offer_options(features) -> OfferOptions:
    f = set(features)
    o = OfferOptions()
    o.audio = FEATURE_AUDIO in f
    o.video = FEATURE_VIDEO in f
    o.sctp = FEATURE_SCTP in f
    o.rtx = FEATURE_RTX in f
    o.remb = False  # default false, so the constraint keeps it false...
    o.tcc = FEATURE_TCC in f
    o.opus_red = FEATURE_OPUS_RED in f
    if not o.tcc and FEATURE_REMB in f:  # ...and REMB is enabled only when TCC is not
        o.remb = True
    return o


def jicofo_audio_payload_types(opts: OfferOptions) -> list[PayloadType]:
    # opus red is disabled in Jicofo's default config, so no 'red' payload and in-band FEC is kept
    opus = PayloadType(111, "opus", 48000, 2,
                       [Parameter("minptime", "10"), Parameter("useinbandfec", "1")])
    if opts.tcc:
        opus.rtcp_fbs.append(RtcpFb("transport-cc"))
    return [opus, PayloadType(126, "telephone-event", 8000)]


def jicofo_audio_hdrexts(opts: OfferOptions) -> list[HdrExt]:
    exts = [HdrExt(1, URI_AUDIO_LEVEL), HdrExt(10, URI_MID)]
    if opts.tcc:
        exts.append(HdrExt(5, URI_TCC))
    return exts


def _video_fbs(opts: OfferOptions) -> list[RtcpFb]:
    fbs = [RtcpFb("ccm", "fir"), RtcpFb("nack"), RtcpFb("nack", "pli")]
    if opts.remb:  # enable-remb is true for every codec by default
        fbs.append(RtcpFb("goog-remb"))
    if opts.tcc:
        fbs.append(RtcpFb("transport-cc"))
    return fbs


def jicofo_video_payload_types(opts: OfferOptions) -> list[PayloadType]:
    pts = [
        PayloadType(41, "AV1", 90000, rtcp_fbs=_video_fbs(opts)),
        PayloadType(100, "VP8", 90000, rtcp_fbs=_video_fbs(opts)),
        PayloadType(107, "H264", 90000, rtcp_fbs=_video_fbs(opts), parameters=[
            Parameter("profile-level-id", "42e01f;level-asymmetry-allowed=1;packetization-mode=1;")]),
        PayloadType(101, "VP9", 90000, rtcp_fbs=_video_fbs(opts)),
    ]
    if opts.rtx:
        rtx_fbs = lambda: [RtcpFb("ccm", "fir"), RtcpFb("nack"), RtcpFb("nack", "pli")]  # noqa: E731
        pts += [
            PayloadType(42, "rtx", 90000, parameters=[Parameter("apt", "41")], rtcp_fbs=rtx_fbs()),
            PayloadType(96, "rtx", 90000, parameters=[Parameter("apt", "100")], rtcp_fbs=rtx_fbs()),
            PayloadType(97, "rtx", 90000, parameters=[Parameter("apt", "101")], rtcp_fbs=rtx_fbs()),
            PayloadType(99, "rtx", 90000, parameters=[Parameter("apt", "107")]),
        ]
    return pts


def jicofo_video_hdrexts(opts: OfferOptions) -> list[HdrExt]:
    exts = [HdrExt(11, URI_AV1_DD), HdrExt(10, URI_MID), HdrExt(3, URI_ABS_SEND_TIME)]
    if opts.tcc:
        exts.append(HdrExt(5, URI_TCC))
    return exts


def jicofo_offer_contents(opts: OfferOptions, transport: Transport, audio_sources: list[Source],
                          video_sources: list[Source], include_data: bool = True,
                          sctp_port: int = 5000) -> list[Content]:
    """The contents of Jicofo's session-initiate, in its order (audio, video, data).

    Each content carries its own copy of the one bundled transport (updateOffer clones it)."""
    contents = []
    if opts.audio:
        contents.append(Content("audio", "initiator", "both", Description(
            "audio", jicofo_audio_payload_types(opts), jicofo_audio_hdrexts(opts),
            extmap_allow_mixed=True, rtcp_mux=True, sources=list(audio_sources), maxptime="60"),
            _copy_transport(transport)))
    if opts.video:
        contents.append(Content("video", "initiator", "both", Description(
            "video", jicofo_video_payload_types(opts), jicofo_video_hdrexts(opts),
            extmap_allow_mixed=True, rtcp_mux=True, sources=list(video_sources)),
            _copy_transport(transport)))
    if opts.sctp and include_data:
        t = _copy_transport(transport)
        t.sctpmap = SctpMap(sctp_port)
        contents.append(Content("data", "initiator", "both",
                                Description("application", rtcp_mux=True), t))
    return contents


def _copy_transport(t: Transport) -> Transport:
    return Transport(t.ufrag, t.pwd, t.rtcp_mux, list(t.fingerprints), list(t.candidates), t.sctpmap)


def new_sid() -> str:
    """Jicofo's JingleIQ.generateSID(): a random 64-bit BigInteger printed in base 32."""
    n = secrets.randbits(64)
    digits = "0123456789abcdefghijklmnopqrstuv"
    if n == 0:
        return "0"
    out = []
    while n:
        n, r = divmod(n, 32)
        out.append(digits[r])
    return "".join(reversed(out))


# --- XML builders -------------------------------------------------------------------------------
def _el(ns: str, local: str, attrs: Optional[list] = None, text: Optional[str] = None) -> ET.Element:
    el = ET.Element(q(ns, local))
    for k, v in attrs or []:
        if v is not None:
            el.set(k, str(v))
    if text is not None:
        el.text = text
    return el


def build_parameter(p: Parameter) -> ET.Element:
    # ParameterPacketExtension is in the RTP namespace wherever it appears (also inside <source>)
    return _el(NS_RTP, "parameter", [("name", p.name), ("value", p.value)])


def build_payload_type(pt: PayloadType) -> ET.Element:
    el = _el(NS_RTP, "payload-type", [("id", pt.id), ("name", pt.name), ("clockrate", pt.clockrate),
                                      ("channels", pt.channels)])
    for p in pt.parameters:
        el.append(build_parameter(p))
    for fb in pt.rtcp_fbs:
        el.append(_el(NS_RTCP_FB, "rtcp-fb", [("type", fb.type), ("subtype", fb.subtype)]))
    return el


def build_source(s: Source) -> ET.Element:
    el = _el(NS_SSMA, "source", [("ssrc", s.ssrc), ("name", s.name)])
    if s.owner is not None:
        el.append(_el(NS_JITMEET, "ssrc-info", [("owner", s.owner)]))
    for p in s.parameters:
        el.append(build_parameter(p))
    return el


def build_description(d: Description) -> ET.Element:
    el = _el(NS_RTP, "description", [("media", d.media), ("maxptime", d.maxptime)])
    for pt in d.payload_types:
        el.append(build_payload_type(pt))
    for x in d.hdrexts:
        el.append(_el(NS_HDREXT, "rtp-hdrext", [("id", x.id), ("uri", x.uri)]))
    if d.extmap_allow_mixed:
        el.append(_el(NS_HDREXT, "extmap-allow-mixed"))
    if d.rtcp_mux:
        el.append(_el(NS_RTP, "rtcp-mux"))
    for s in d.sources:
        el.append(build_source(s))
    return el


def build_candidate(c: Candidate) -> ET.Element:
    return _el(NS_ICE_UDP, "candidate", [
        ("component", c.component), ("foundation", c.foundation), ("generation", c.generation),
        ("id", c.id), ("ip", c.ip), ("network", c.network), ("port", c.port),
        ("priority", c.priority), ("protocol", c.protocol), ("type", c.type),
        ("rel-addr", c.rel_addr), ("rel-port", c.rel_port), ("tcptype", c.tcptype)])


def build_transport(t: Transport) -> ET.Element:
    el = _el(NS_ICE_UDP, "transport", [("ufrag", t.ufrag), ("pwd", t.pwd)])
    if t.rtcp_mux:
        el.append(_el(NS_ICE_UDP, "rtcp-mux"))
    for fp in t.fingerprints:
        el.append(_el(NS_DTLS, "fingerprint", [("hash", fp.hash), ("setup", fp.setup)], fp.value))
    if t.sctpmap is not None:
        el.append(_el(NS_SCTP, "sctpmap", [("number", t.sctpmap.number),
                                           ("protocol", t.sctpmap.protocol),
                                           ("streams", t.sctpmap.streams)]))
    for c in t.candidates:
        el.append(build_candidate(c))
    return el


def build_content(c: Content) -> ET.Element:
    el = _el(NS_JINGLE, "content", [("creator", c.creator), ("name", c.name), ("senders", c.senders)])
    if c.description is not None:
        el.append(build_description(c.description))
    if c.transport is not None:
        el.append(build_transport(c.transport))
    return el


def build_jingle(j: Jingle) -> ET.Element:
    el = _el(NS_JINGLE, "jingle", [("action", j.action), ("initiator", j.initiator),
                                   ("responder", j.responder), ("sid", j.sid)])
    for c in j.contents:
        el.append(build_content(c))
    if j.reason is not None:
        r = _el(NS_JINGLE, "reason")
        r.append(_el(NS_JINGLE, j.reason))
        if j.reason_text is not None:
            r.append(_el(NS_JINGLE, "text", text=j.reason_text))
        el.append(r)
    if j.group_semantics is not None:
        g = _el(NS_GROUPING, "group", [("semantics", j.group_semantics)])
        for name in j.group_contents:
            g.append(_el(NS_GROUPING, "content", [("name", name)]))
        el.append(g)
    if j.bridge_session is not None:
        b = j.bridge_session
        restart = None if b.restart is None else ("true" if b.restart else "false")
        el.append(_el(NS_FOCUS, "bridge-session", [("id", b.id), ("region", b.region),
                                                    ("restart", restart)]))
    return el


def build_session_initiate(sid: str, initiator: str, contents: list[Content],
                           bridge_session_id: str, region: Optional[str]) -> ET.Element:
    """Jicofo's createSessionInitiate + BUNDLE group + bridge-session (in that order)."""
    return build_jingle(Jingle("session-initiate", sid, initiator=initiator, contents=contents,
                               group_semantics="BUNDLE", group_contents=[c.name for c in contents],
                               bridge_session=BridgeSession(bridge_session_id, region or None)))


def build_source_change(action: str, sid: str, audio_sources: list[Source],
                        video_sources: Optional[list[Source]] = None) -> ET.Element:
    """source-add / source-remove as JingleSession.addSource/removeSource build them."""
    if action not in ("source-add", "source-remove"):
        raise ValueError(action)
    contents = []
    if audio_sources:
        contents.append(Content("audio", description=Description("audio", sources=list(audio_sources))))
    if video_sources:
        contents.append(Content("video", description=Description("video", sources=list(video_sources))))
    return build_jingle(Jingle(action, sid, contents=contents))


def build_session_terminate(sid: str, reason: str = "success", text: Optional[str] = None) -> ET.Element:
    if reason not in REASONS:
        raise ValueError("unknown jingle reason %r" % reason)
    return build_jingle(Jingle("session-terminate", sid, reason=reason, reason_text=text))


def build_mute(mute: bool, actor: Optional[str] = None, jid: Optional[str] = None) -> ET.Element:
    """<mute xmlns='http://jitsi.org/jitmeet/audio' [jid] [actor]>true|false</mute> (AbstractMuteIq)."""
    return _el(NS_MUTE_AUDIO, "mute", [("jid", jid), ("actor", actor)], "true" if mute else "false")


def build_kick(nick: str, reason: Optional[str] = None) -> ET.Element:
    """XEP-0045 §8.2: a moderator sets the occupant's role to none (the occupant sees status 307)."""
    query = _el(NS_MUC_ADMIN, "query")
    item = ET.SubElement(query, q(NS_MUC_ADMIN, "item"), {"nick": nick, "role": "none"})
    if reason:
        ET.SubElement(item, q(NS_MUC_ADMIN, "reason")).text = reason
    return query


def build_destroy(reason: Optional[str] = None) -> ET.Element:
    """XEP-0045 §10.9: the owner destroys the room; every occupant gets <destroy/> in presence."""
    query = _el(NS_MUC_OWNER, "query")
    destroy = ET.SubElement(query, q(NS_MUC_OWNER, "destroy"))
    if reason:
        ET.SubElement(destroy, q(NS_MUC_OWNER, "reason")).text = reason
    return query


def build_conference_result(room: str, focus_jid: str, ready: bool = True,
                            properties: Optional[list[tuple[str, str]]] = None) -> ET.Element:
    """ConferenceIqHandler's response: room, focusjid, ready, then <property/> children."""
    el = _el(NS_FOCUS, "conference", [("room", room), ("focusjid", focus_jid),
                                       ("ready", "true" if ready else "false")])
    for name, value in properties or []:
        el.append(_el(NS_FOCUS, "property", [("name", name), ("value", value)]))
    return el


def build_conference_request(room: str, properties: Optional[list[tuple[str, str]]] = None) -> ET.Element:
    el = _el(NS_FOCUS, "conference", [("room", room)])
    for name, value in properties or []:
        el.append(_el(NS_FOCUS, "property", [("name", name), ("value", value)]))
    return el


def build_disco_info_query(node: Optional[str] = None) -> ET.Element:
    return _el(NS_DISCO_INFO, "query", [("node", node)])


def build_disco_info_result(features, identities=(("client", "pc", None),),
                            node: Optional[str] = None) -> ET.Element:
    el = _el(NS_DISCO_INFO, "query", [("node", node)])
    for category, typ, name in identities:
        el.append(_el(NS_DISCO_INFO, "identity", [("category", category), ("type", typ), ("name", name)]))
    for f in features:
        el.append(_el(NS_DISCO_INFO, "feature", [("var", f)]))
    return el


def build_error(condition: str = "bad-request", error_type: str = "modify",
                text: Optional[str] = None) -> ET.Element:
    el = _el(NS_CLIENT, "error", [("type", error_type)])
    el.append(_el(NS_STANZAS, condition))
    if text:
        el.append(_el(NS_STANZAS, "text", text=text))
    return el


# presence payloads
def build_muc_x(password: Optional[str] = None) -> ET.Element:
    el = _el(NS_MUC, "x")
    if password:
        el.append(_el(NS_MUC, "password", text=password))
    return el


def build_nick(name: str) -> ET.Element:
    return _el(NS_NICK, "nick", text=name)


def build_status(text: str) -> ET.Element:
    return _el(NS_CLIENT, "status", text=text)


def build_jigasi_presence(display_name: str, direction: str = "in",
                          features=(FEATURE_JIGASI, FEATURE_DTMF), audiomuted: bool = False,
                          version: Optional[str] = None) -> list[ET.Element]:
    """The presence extensions a SIP jigasi joins with (jigasi JvbConference.joinConferenceRoom)."""
    out = [build_nick(display_name)]
    if version:
        out.append(_el(NS_COLIBRI, "stat", [("name", "version"), ("value", version)]))
    initiator = _el(NS_JIGASI, "initiator")
    initiator.append(_el(NS_RAYO, "header", [("name", "JigasiCallDirection"), ("value", direction)]))
    out.append(initiator)
    feats = _el(NS_CLIENT, "features")
    for f in features:
        feats.append(_el(NS_CLIENT, "feature", [("var", f)]))
    out.append(feats)
    out.append(_el(NS_CLIENT, "audiomuted", text="true" if audiomuted else "false"))
    return out


def build_participant_presence(display_name: str, audio_source_name: str) -> list[ET.Element]:
    """What a jitsi-meet web client puts in its MUC presence (the parts that matter here)."""
    return [build_nick(display_name),
            _el(NS_CLIENT, "SourceInfo", text='{"%s":{"muted":false}}' % audio_source_name)]


# --- Rayo (dial-out) and the brewery's <stats> ----------------------------------------------
DIAL_FROM = "fromnumber"   # what lib-jitsi-meet puts in <dial from> (and Jicofo forwards unchanged)


def build_dial(to: str, headers=(), src: Optional[str] = DIAL_FROM) -> ET.Element:
    """<dial xmlns='urn:xmpp:rayo:1' from=… to=…><header name value/>…</dial> (jxe DialIq: 'from' is
    the source address, 'to' the destination; each header a HeaderExtension, in the given order)."""
    if not to:
        raise ValueError("a dial needs a destination ('to')")
    el = _el(NS_RAYO, "dial", [("from", src), ("to", to)])
    for name, value in headers:
        el.append(_el(NS_RAYO, "header", [("name", name), ("value", value)]))
    return el


def build_dial_for_room(to: str, room_jid: str, password: Optional[str] = None, headers=(),
                        src: Optional[str] = DIAL_FROM) -> ET.Element:
    """A web client's dial (strophe.rayo.ts): JvbRoomName, JvbRoomPassword if any, then the rest."""
    out = [("JvbRoomName", room_jid)]
    if password:
        out.append(("JvbRoomPassword", password))
    out.extend((str(n), str(v)) for n, v in headers)
    return build_dial(to, out, src)


@dataclass
class Dial:
    to: str
    src: Optional[str]                                  # the 'from' attribute
    headers: list = field(default_factory=list)         # [(name, value)] in document order

    def header(self, name: str) -> Optional[str]:
        for n, v in self.headers:
            if n == name:
                return v
        return None


def parse_dial(el: ET.Element) -> Dial:
    """RayoIqProvider: 'to' is mandatory, 'from' optional; <header>s in any namespace below <dial>."""
    if el is None or el.tag != q(NS_RAYO, "dial"):
        raise StanzaError("not a <dial xmlns='%s'> element" % NS_RAYO)
    to = el.get("to")
    if not to:
        raise StanzaError("<dial> lacks 'to'")
    return Dial(to, el.get("from"), [(h.get("name"), h.get("value")) for h in _children(el, None, "header")
                                     if h.get("name")])


def build_ref(uri: str) -> ET.Element:
    """jigasi's answer to a dial: <ref xmlns='urn:xmpp:rayo:1' uri='xmpp:room@muc/nick'/>."""
    return _el(NS_RAYO, "ref", [("uri", uri)])


def parse_ref(el: Optional[ET.Element]) -> Optional[str]:
    """The uri of a <ref/> result payload; None when the result carries no <ref uri>."""
    if el is None or el.tag != q(NS_RAYO, "ref"):
        return None
    return el.get("uri") or None


def ref_occupant(uri: Optional[str]) -> Optional[tuple[str, str]]:
    """'xmpp:room@muc.x/nick' -> ('room@muc.x', 'nick'); None if the uri is not an occupant JID."""
    if not uri or not uri.startswith("xmpp:"):
        return None
    jid = uri[len("xmpp:"):]
    bare, sep, nick = jid.partition("/")
    if not sep or not nick or "@" not in bare:
        return None
    return bare.lower(), nick


def build_hangup() -> ET.Element:
    return _el(NS_RAYO, "hangup")


def is_hangup(el: Optional[ET.Element]) -> bool:
    return el is not None and el.tag == q(NS_RAYO, "hangup")


def build_stats(stats) -> ET.Element:
    """<stats xmlns='http://jitsi.org/protocol/colibri'><stat name value/>…</stats> from a dict or
    (name, value) pairs; booleans are written as true/false (ColibriStatsExtension.Stat)."""
    items = stats.items() if isinstance(stats, dict) else stats
    el = _el(NS_COLIBRI, "stats")
    for name, value in items:
        if isinstance(value, bool):
            value = "true" if value else "false"
        el.append(_el(NS_COLIBRI, "stat", [("name", name), ("value", value)]))
    return el


_INT_RE = re.compile(r"^[+-]?[0-9]+$")
_FLOAT_RE = re.compile(r"^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$")


def stat_value(text: Optional[str]):
    """A stat's value: int or float when it reads as a number, True/False for true/false (any case),
    the string otherwise; None when the value attribute is missing."""
    if text is None:
        return None
    t = text.strip()
    if _INT_RE.match(t):
        return int(t)
    if _FLOAT_RE.match(t):
        return float(t)
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    return text


def parse_stats(el: ET.Element) -> dict:
    """All <stat name value/> pairs of a colibri <stats> element (later duplicates win)."""
    if el is None or el.tag != q(NS_COLIBRI, "stats"):
        raise StanzaError("not a <stats xmlns='%s'> element" % NS_COLIBRI)
    out = {}
    for s in _children(el, None, "stat"):
        name = s.get("name")
        if name:
            out[name] = stat_value(s.get("value"))
    return out


# JigasiDetector reads stats through ColibriStatsExtension: parseBoolean (true only for "true"),
# getValueAsInt (Integer.valueOf, so "2.5" or garbage counts as 0 participants).
def stat_true(stats: dict, name: str) -> bool:
    v = stats.get(name)
    return v is True or (isinstance(v, str) and v.strip().lower() == "true")


def stat_int(stats: dict, name: str) -> int:
    v = stats.get(name)
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def select_jigasi(instances, exclude=(), preferred_regions=(), local_region: Optional[str] = None,
                  transcriber: bool = False) -> Optional[str]:
    """JigasiDetector.selectJigasi over [(nick, stats)] in brewery order: drop excluded ones,
    those in graceful shutdown and those without supports_sip (supports_transcription for a
    transcriber); then prefer a region in preferred_regions, then local_region (None matches
    instances that publish no region, as in Jicofo), then any; the least loaded is the one with
    the fewest 'participants', the first of equals. Region groups are not modelled."""
    feature = "supports_transcription" if transcriber else "supports_sip"
    available = [(n, s) for n, s in instances
                 if n not in exclude and not stat_true(s, "graceful_shutdown") and stat_true(s, feature)]

    def least_loaded(cands):
        best = None
        for n, s in cands:
            if best is None or stat_int(s, "participants") < stat_int(best[1], "participants"):
                best = (n, s)
        return best[0] if best else None

    def region(s):
        r = s.get("region")
        return None if r is None else str(r)

    preferred = [r for r in preferred_regions]
    for group in (lambda s: region(s) in preferred, lambda s: region(s) == local_region):
        match = [(n, s) for n, s in available if group(s)]
        if match:
            return least_loaded(match)
    return least_loaded(available)


# --- serialisation ------------------------------------------------------------------------------
def _esc(s: str, attr: bool = False) -> str:
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    if attr:
        s = s.replace('"', "&quot;")
    return s


def tostring(el: ET.Element, parent_ns: Optional[str] = None) -> str:
    """Serialise with an xmlns declaration only where the namespace changes (as Smack prints)."""
    ns, local = split_tag(el.tag)
    parts = ["<", local]
    if ns != (parent_ns or "") and ns:
        parts.append(' xmlns="%s"' % _esc(ns, True))
    for k, v in el.attrib.items():
        kns, klocal = split_tag(k)
        if kns == "http://www.w3.org/XML/1998/namespace":
            klocal = "xml:" + klocal
        parts.append(' %s="%s"' % (klocal, _esc(v, True)))
    children = list(el)
    if not children and not el.text:
        parts.append("/>")
        return "".join(parts)
    parts.append(">")
    if el.text:
        parts.append(_esc(el.text))
    for c in children:
        parts.append(tostring(c, ns))
        if c.tail:
            parts.append(_esc(c.tail))
    parts.append("</%s>" % local)
    return "".join(parts)


# --- parsers ------------------------------------------------------------------------------------
def _int(el: ET.Element, attr: str, required: bool = True, lo: int = 0, hi: int = 2**63):
    v = el.get(attr)
    if v is None or v == "":
        if required:
            raise StanzaError("<%s> lacks '%s'" % (local_name(el), attr))
        return None
    try:
        n = int(v.strip())
    except ValueError:
        raise StanzaError("<%s %s=%r> is not an integer" % (local_name(el), attr, v)) from None
    if not lo <= n <= hi:
        raise StanzaError("<%s %s=%s> is out of range" % (local_name(el), attr, v))
    return n


def _children(el: ET.Element, ns: Optional[str], local: str) -> list[ET.Element]:
    """Children by local name; ns=None accepts any namespace (lenient where senders differ)."""
    out = []
    for c in el:
        cns, clocal = split_tag(c.tag)
        if clocal == local and (ns is None or cns == ns):
            out.append(c)
    return out


def _child(el: ET.Element, ns: Optional[str], local: str) -> Optional[ET.Element]:
    found = _children(el, ns, local)
    return found[0] if found else None


def parse_parameter(el: ET.Element) -> Parameter:
    value = el.get("value")
    if value is None:
        raise StanzaError("<parameter> lacks 'value'")
    return Parameter(el.get("name"), value)


def parse_source(el: ET.Element) -> Source:
    ssrc = _int(el, "ssrc", lo=0, hi=0xFFFFFFFF)
    info = _child(el, None, "ssrc-info")
    return Source(ssrc, el.get("name"), info.get("owner") if info is not None else None,
                  [parse_parameter(p) for p in _children(el, None, "parameter")])


def parse_payload_type(el: ET.Element) -> PayloadType:
    return PayloadType(
        _int(el, "id", lo=0, hi=127), el.get("name") or "",
        _int(el, "clockrate", required=False, hi=10**7), _int(el, "channels", required=False, hi=255),
        [parse_parameter(p) for p in _children(el, None, "parameter")],
        [RtcpFb(fb.get("type") or "", fb.get("subtype")) for fb in _children(el, None, "rtcp-fb")])


def parse_description(el: ET.Element) -> Description:
    return Description(
        el.get("media"),
        [parse_payload_type(p) for p in _children(el, NS_RTP, "payload-type")],
        [HdrExt(_int(x, "id", lo=1, hi=255), x.get("uri") or "") for x in _children(el, NS_HDREXT, "rtp-hdrext")],
        _child(el, None, "extmap-allow-mixed") is not None,
        _child(el, None, "rtcp-mux") is not None,
        [parse_source(s) for s in _children(el, NS_SSMA, "source")],
        el.get("maxptime"))


def parse_candidate(el: ET.Element) -> Candidate:
    ip = el.get("ip")
    if not ip:
        raise StanzaError("<candidate> lacks 'ip'")
    return Candidate(
        _int(el, "component", lo=1, hi=256), el.get("foundation") or "",
        _int(el, "generation", required=False), el.get("id"), ip,
        _int(el, "network", required=False), _int(el, "port", lo=0, hi=65535),
        _int(el, "priority", lo=0, hi=2**32 - 1), (el.get("protocol") or "udp").lower(),
        el.get("type") or "host", el.get("rel-addr"), _int(el, "rel-port", required=False, hi=65535),
        el.get("tcptype"))


def parse_transport(el: ET.Element) -> Transport:
    fps = []
    for f in _children(el, NS_DTLS, "fingerprint"):
        value = (f.text or "").strip()
        if not f.get("hash") or not value:
            raise StanzaError("<fingerprint> lacks 'hash' or its value")
        fps.append(Fingerprint(f.get("hash"), value, f.get("setup")))
    sctp = _child(el, NS_SCTP, "sctpmap")
    return Transport(
        el.get("ufrag"), el.get("pwd"), _child(el, None, "rtcp-mux") is not None, fps,
        [parse_candidate(c) for c in _children(el, NS_ICE_UDP, "candidate")],
        SctpMap(_int(sctp, "number", hi=65535), sctp.get("protocol") or "",
                _int(sctp, "streams", required=False) or 0) if sctp is not None else None)


def parse_content(el: ET.Element) -> Content:
    name = el.get("name")
    if not name:
        raise StanzaError("<content> lacks 'name'")
    desc = _child(el, NS_RTP, "description")
    trans = _child(el, NS_ICE_UDP, "transport")
    return Content(name, el.get("creator"), el.get("senders"),
                   parse_description(desc) if desc is not None else None,
                   parse_transport(trans) if trans is not None else None)


def parse_jingle(el: ET.Element) -> Jingle:
    if el is None or el.tag != q(NS_JINGLE, "jingle"):
        raise StanzaError("not a <jingle xmlns='%s'> element" % NS_JINGLE)
    action = el.get("action")
    if not action:
        raise StanzaError("<jingle> lacks 'action'")
    if action not in JINGLE_ACTIONS:
        raise StanzaError("unknown jingle action %r" % action, "feature-not-implemented", "cancel")
    sid = el.get("sid")
    if not sid:
        raise StanzaError("<jingle> lacks 'sid'")
    j = Jingle(action, sid, el.get("initiator"), el.get("responder"),
               [parse_content(c) for c in _children(el, NS_JINGLE, "content")])
    reason = _child(el, NS_JINGLE, "reason")
    if reason is not None:
        for c in reason:
            lname = local_name(c)
            if lname == "text":
                j.reason_text = c.text or ""
            elif j.reason is None:
                j.reason = lname
    group = _child(el, NS_GROUPING, "group")
    if group is not None:
        j.group_semantics = group.get("semantics")
        j.group_contents = [c.get("name") or "" for c in _children(group, None, "content")]
    bs = _child(el, NS_FOCUS, "bridge-session")
    if bs is not None:
        restart = bs.get("restart")
        j.bridge_session = BridgeSession(bs.get("id"), bs.get("region"),
                                         None if restart is None else restart.lower() == "true")
    return j


def parse_disco_features(query: ET.Element) -> list[str]:
    if query is None or query.tag != q(NS_DISCO_INFO, "query"):
        raise StanzaError("not a disco#info <query>")
    return [f.get("var") for f in _children(query, NS_DISCO_INFO, "feature") if f.get("var")]


def parse_mute(el: ET.Element) -> tuple[bool, Optional[str], Optional[str]]:
    """(mute, jid, actor) of a <mute xmlns='http://jitsi.org/jitmeet/audio'> payload."""
    text = (el.text or "").strip().lower()
    if text not in ("true", "false"):
        raise StanzaError("<mute> value must be true or false, got %r" % (el.text,))
    return text == "true", el.get("jid"), el.get("actor")


def parse_conference_request(el: ET.Element) -> tuple[str, dict]:
    room = (el.get("room") or "").strip()
    if not room or "@" not in room or "/" in room:
        raise StanzaError("<conference> needs a bare room JID in 'room'")
    props = {p.get("name"): p.get("value") for p in _children(el, None, "property") if p.get("name")}
    return room, props


@dataclass
class MucPresence:
    room: str               # bare room JID, lower-cased node
    nick: str
    type: str               # 'available', 'unavailable' or 'error'
    real_jid: Optional[str] = None
    role: Optional[str] = None
    affiliation: Optional[str] = None
    status_codes: list[int] = field(default_factory=list)
    display_name: Optional[str] = None
    features: list[str] = field(default_factory=list)
    has_features_element: bool = False
    jigasi_initiator: bool = False
    initiator_headers: dict = field(default_factory=dict)
    status_text: Optional[str] = None
    audiomuted: Optional[bool] = None
    error_condition: Optional[str] = None
    destroyed: bool = False                  # <destroy/> in muc#user: the room is gone
    destroy_reason: Optional[str] = None
    stats: Optional[dict] = None             # a colibri <stats> element (brewery members)

    @property
    def is_self(self) -> bool:
        return 110 in self.status_codes

    @property
    def signals_jigasi(self) -> bool:
        return FEATURE_JIGASI in self.features


def bare_lower(jid: str) -> str:
    """Bare JID with node and domain lower-cased (the server nodepreps room JIDs)."""
    bare = jid.split("/", 1)[0]
    return bare.lower()


def parse_muc_presence(el: ET.Element) -> MucPresence:
    frm = el.get("from") or ""
    if "/" not in frm or "@" not in frm.split("/", 1)[0]:
        raise StanzaError("presence is not from a room occupant: %r" % frm)
    room, nick = frm.split("/", 1)
    typ = el.get("type") or "available"
    p = MucPresence(room.lower(), nick, typ)
    for c in el:
        ns, lname = split_tag(c.tag)
        if ns == NS_MUC_USER and lname == "x":
            item = _child(c, NS_MUC_USER, "item")
            if item is not None:
                p.real_jid = item.get("jid")
                p.role = item.get("role")
                p.affiliation = item.get("affiliation")
            for s in _children(c, NS_MUC_USER, "status"):
                try:
                    p.status_codes.append(int(s.get("code", "")))
                except ValueError:
                    pass
            destroy = _child(c, NS_MUC_USER, "destroy")
            if destroy is not None:
                p.destroyed = True
                reason = _child(destroy, NS_MUC_USER, "reason")
                p.destroy_reason = reason.text if reason is not None else None
        elif ns == NS_NICK and lname == "nick":
            p.display_name = c.text
        elif lname == "features" and ns in ("", NS_CLIENT):
            p.has_features_element = True
            p.features = [f.get("var") for f in _children(c, None, "feature") if f.get("var")]
        elif ns == NS_JIGASI and lname == "initiator":
            p.jigasi_initiator = True
            for h in _children(c, None, "header"):
                if h.get("name"):
                    p.initiator_headers[h.get("name")] = h.get("value")
        elif lname == "status" and ns in ("", NS_CLIENT):
            p.status_text = c.text
        elif ns == NS_COLIBRI and lname == "stats":
            p.stats = parse_stats(c)
        elif lname == "audiomuted" and ns in ("", NS_CLIENT):
            p.audiomuted = (c.text or "").strip().lower() == "true"
        elif lname == "error":
            for e in c:
                ens, elname = split_tag(e.tag)
                if ens == NS_STANZAS and elname != "text":
                    p.error_condition = elname
    return p
