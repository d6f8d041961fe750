"""Shapes of the Jingle/presence payloads (builders) and reading of the gateway's answers (parsers).

Run from the checkout root:  .lab/venv/bin/python -m unittest discover -s tools/emulator/tests
"""
import os
import sys
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from emulator import stanzas as S  # noqa: E402
from emulator.stanzas import StanzaError  # noqa: E402

CAND = S.Candidate(1, "1", 0, "c1", "127.0.0.1", 0, 10000, 2130706431, "udp", "host")
TRANSPORT = S.Transport("ab12", "pw" * 12, True, [S.Fingerprint("sha-256", "AA:BB", "actpass")], [CAND])
ALICE = S.Source(111, "1a2b3c4d-a0", "1a2b3c4d", [S.Parameter("msid", "1a2b3c4d-audio-0 u1")])
JVB_A = S.Source(222, "jvb-a0", "jvb", [S.Parameter("msid", "mixedmslabel mixedlabelaudio0")])
JVB_V = S.Source(333, "jvb-v0", "jvb", [S.Parameter("msid", "mixedmslabel mixedlabelvideo0")])
JIGASI_FEATURES = [S.FEATURE_AUDIO, S.NS_JINGLE, S.NS_RTP, S.NS_ICE_UDP, S.NS_DTLS, S.FEATURE_JIGASI,
                   S.FEATURE_DTMF]

# the exact session-initiate for a jigasi (audio-only features), Jicofo's element order
AUDIO_ONLY_OFFER = (
    '<jingle xmlns="urn:xmpp:jingle:1" action="session-initiate" initiator="focus@auth.meet.jitsi/focus" sid="s1">'
    '<content creator="initiator" name="audio" senders="both">'
    '<description xmlns="urn:xmpp:jingle:apps:rtp:1" media="audio" maxptime="60">'
    '<payload-type id="111" name="opus" clockrate="48000" channels="2">'
    '<parameter name="minptime" value="10"/><parameter name="useinbandfec" value="1"/></payload-type>'
    '<payload-type id="126" name="telephone-event" clockrate="8000"/>'
    '<rtp-hdrext xmlns="urn:xmpp:jingle:apps:rtp:rtp-hdrext:0" id="1" uri="urn:ietf:params:rtp-hdrext:ssrc-audio-level"/>'
    '<rtp-hdrext xmlns="urn:xmpp:jingle:apps:rtp:rtp-hdrext:0" id="10" uri="urn:ietf:params:rtp-hdrext:sdes:mid"/>'
    '<extmap-allow-mixed xmlns="urn:xmpp:jingle:apps:rtp:rtp-hdrext:0"/>'
    '<rtcp-mux/>'
    '<source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="111" name="1a2b3c4d-a0">'
    '<ssrc-info xmlns="http://jitsi.org/jitmeet" owner="1a2b3c4d"/>'
    '<parameter xmlns="urn:xmpp:jingle:apps:rtp:1" name="msid" value="1a2b3c4d-audio-0 u1"/></source>'
    '<source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="222" name="jvb-a0">'
    '<ssrc-info xmlns="http://jitsi.org/jitmeet" owner="jvb"/>'
    '<parameter xmlns="urn:xmpp:jingle:apps:rtp:1" name="msid" value="mixedmslabel mixedlabelaudio0"/></source>'
    '</description>'
    '<transport xmlns="urn:xmpp:jingle:transports:ice-udp:1" ufrag="ab12" pwd="pwpwpwpwpwpwpwpwpwpwpwpw">'
    '<rtcp-mux/>'
    '<fingerprint xmlns="urn:xmpp:jingle:apps:dtls:0" hash="sha-256" setup="actpass">AA:BB</fingerprint>'
    '<candidate component="1" foundation="1" generation="0" id="c1" ip="127.0.0.1" network="0" port="10000"'
    ' priority="2130706431" protocol="udp" type="host"/>'
    '</transport></content>'
    '<group xmlns="urn:xmpp:jingle:apps:grouping:0" semantics="BUNDLE"><content name="audio"/></group>'
    '<bridge-session xmlns="http://jitsi.org/protocol/focus" id="bs1" region="lab"/>'
    '</jingle>')

# what echo_occupant.py sends: transport-info with credentials+candidates, then an accept without them
ECHO_TRANSPORT_INFO = (
    '<jingle xmlns="urn:xmpp:jingle:1" action="transport-info" initiator="focus@auth.meet.jitsi/focus" sid="s1">'
    '<content creator="initiator" name="audio">'
    '<transport xmlns="urn:xmpp:jingle:transports:ice-udp:1" ufrag="UF" pwd="PWPWPWPWPWPWPWPWPWPWPW">'
    '<candidate component="1" foundation="f1" generation="0" id="x" ip="127.0.0.1" network="0" port="40000"'
    ' priority="2130706431" protocol="udp" type="host"/></transport></content></jingle>')
ECHO_ACCEPT = (
    '<jingle xmlns="urn:xmpp:jingle:1" action="session-accept" initiator="focus@auth.meet.jitsi/focus"'
    ' responder="abc@meet.jitsi/r" sid="s1">'
    '<content creator="initiator" name="audio" senders="both">'
    '<description xmlns="urn:xmpp:jingle:apps:rtp:1" media="audio">'
    '<payload-type id="111" name="opus" clockrate="48000" channels="2">'
    '<parameter name="minptime" value="10"/><parameter name="useinbandfec" value="1"/></payload-type>'
    '<payload-type id="126" name="telephone-event" clockrate="8000"/>'
    '<rtp-hdrext xmlns="urn:xmpp:jingle:apps:rtp:rtp-hdrext:0" id="1" uri="urn:ietf:params:rtp-hdrext:ssrc-audio-level"/>'
    '<rtcp-mux/>'
    '<source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="4000000000">'
    '<parameter xmlns="urn:xmpp:jingle:apps:rtp:1" name="cname" value="cn"/>'
    '<parameter xmlns="urn:xmpp:jingle:apps:rtp:1" name="msid" value="st tr"/>'
    '<parameter xmlns="urn:xmpp:jingle:apps:rtp:1" name="mslabel" value="st"/>'
    '<parameter xmlns="urn:xmpp:jingle:apps:rtp:1" name="label" value="tr"/></source></description>'
    '<transport xmlns="urn:xmpp:jingle:transports:ice-udp:1"><rtcp-mux/>'
    '<fingerprint xmlns="urn:xmpp:jingle:apps:dtls:0" hash="sha-256" setup="active">11:22:33</fingerprint>'
    '</transport></content></jingle>')

# jigasi (Jitsi desktop stack) style: candidates only in transport-info, no namespace on source
# parameters (as lib-jitsi-meet writes them), a component-2 candidate and a srflx one
JIGASI_TRANSPORT_INFO = (
    '<jingle xmlns="urn:xmpp:jingle:1" action="transport-info" initiator="focus@auth.meet.jitsi/focus" sid="s2">'
    '<content creator="initiator" name="audio">'
    '<transport xmlns="urn:xmpp:jingle:transports:ice-udp:1" pwd="p4ssw0rdp4ssw0rdp4ssw0" ufrag="uf1">'
    '<candidate component="1" foundation="1" generation="0" id="a1" ip="127.0.0.1" network="0" port="10001"'
    ' priority="2130706431" protocol="udp" type="host"/>'
    '<candidate component="1" foundation="2" generation="0" id="a2" ip="127.0.0.1" network="0" port="10001"'
    ' priority="1694498815" protocol="udp" rel-addr="127.0.0.1" rel-port="10001" type="srflx"/>'
    '<candidate component="2" foundation="1" generation="0" id="a3" ip="127.0.0.1" network="0" port="10002"'
    ' priority="2130706430" protocol="udp" type="host"/>'
    '</transport></content></jingle>')
JIGASI_ACCEPT = (
    '<jingle xmlns="urn:xmpp:jingle:1" action="session-accept" initiator="focus@auth.meet.jitsi/focus"'
    ' responder="x@meet.jitsi/y" sid="s2">'
    '<content creator="initiator" name="audio" senders="both">'
    '<description xmlns="urn:xmpp:jingle:apps:rtp:1" media="audio" ssrc="123">'
    '<payload-type id="111" name="opus" clockrate="48000" channels="2"/>'
    '<payload-type id="126" name="telephone-event" clockrate="8000"/>'
    '<rtp-hdrext xmlns="urn:xmpp:jingle:apps:rtp:rtp-hdrext:0" id="1" uri="urn:ietf:params:rtp-hdrext:ssrc-audio-level"/>'
    '<source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="123"><parameter name="cname" value="c"/>'
    '<parameter name="msid" value="m l"/></source></description>'
    '<transport xmlns="urn:xmpp:jingle:transports:ice-udp:1">'
    '<fingerprint xmlns="urn:xmpp:jingle:apps:dtls:0" hash="sha-256" setup="active" required="false">AB:CD</fingerprint>'
    '</transport></content></jingle>')


def xml(s: str) -> ET.Element:
    return ET.fromstring(s)


def children(el):
    return [S.split_tag(c.tag) for c in el]


class OfferShape(unittest.TestCase):
    def offer(self, features, **kw):
        opts = S.offer_options(features)
        contents = S.jicofo_offer_contents(opts, TRANSPORT, [ALICE, JVB_A], [JVB_V], **kw)
        return S.build_session_initiate("s1", "focus@auth.meet.jitsi/focus", contents, "bs1", "lab")

    def test_audio_only_offer_is_exact(self):
        self.assertEqual(S.tostring(self.offer(JIGASI_FEATURES)), AUDIO_ONLY_OFFER)

    def test_default_features_give_audio_video_data(self):
        el = self.offer(S.DEFAULT_FEATURES)
        contents = [c for c in el if c.tag == S.q(S.NS_JINGLE, "content")]
        self.assertEqual([c.get("name") for c in contents], ["audio", "video", "data"])
        for c in contents:
            self.assertEqual((c.get("creator"), c.get("senders")), ("initiator", "both"))
            # description first, then the (same, bundled) transport
            self.assertEqual([S.split_tag(x.tag)[1] for x in c], ["description", "transport"])
            self.assertEqual(c[1].get("ufrag"), "ab12")
        group = el.find(S.q(S.NS_GROUPING, "group"))
        self.assertEqual([x.get("name") for x in group], ["audio", "video", "data"])
        # group and bridge-session come after the contents
        self.assertEqual([S.split_tag(c.tag)[1] for c in el][-2:], ["group", "bridge-session"])

    def test_video_content_shape(self):
        video = self.offer(S.DEFAULT_FEATURES).findall(S.q(S.NS_JINGLE, "content"))[1]
        desc = video[0]
        self.assertEqual(desc.get("media"), "video")
        self.assertIsNone(desc.get("maxptime"))
        pts = desc.findall(S.q(S.NS_RTP, "payload-type"))
        self.assertEqual([(p.get("id"), p.get("name")) for p in pts],
                         [("41", "AV1"), ("100", "VP8"), ("107", "H264"), ("101", "VP9")])  # no rtx by default
        vp8 = pts[1]
        self.assertEqual([(f.get("type"), f.get("subtype")) for f in vp8],
                         [("ccm", "fir"), ("nack", None), ("nack", "pli")])
        self.assertEqual(pts[2].find(S.q(S.NS_RTP, "parameter")).get("name"), "profile-level-id")
        exts = desc.findall(S.q(S.NS_HDREXT, "rtp-hdrext"))
        self.assertEqual([e.get("id") for e in exts], ["11", "10", "3"])
        kinds = [S.split_tag(c.tag)[1] for c in desc]
        self.assertEqual(kinds[-4:], ["rtp-hdrext", "extmap-allow-mixed", "rtcp-mux", "source"])
        src = desc.find(S.q(S.NS_SSMA, "source"))
        self.assertEqual((src.get("ssrc"), src.get("name")), ("333", "jvb-v0"))
        self.assertEqual(src.find(S.q(S.NS_JITMEET, "ssrc-info")).get("owner"), "jvb")

    def test_data_content_shape(self):
        data = self.offer(S.DEFAULT_FEATURES).findall(S.q(S.NS_JINGLE, "content"))[2]
        desc, transport = data
        self.assertEqual(desc.get("media"), "application")
        self.assertEqual(children(desc), [(S.NS_RTP, "rtcp-mux")])
        self.assertEqual(children(transport), [(S.NS_ICE_UDP, "rtcp-mux"), (S.NS_DTLS, "fingerprint"),
                                               (S.NS_SCTP, "sctpmap"), (S.NS_ICE_UDP, "candidate")])
        sctp = transport.find(S.q(S.NS_SCTP, "sctpmap"))
        self.assertEqual(dict(sctp.attrib), {"number": "5000", "protocol": "webrtc-datachannel", "streams": "1024"})

    def test_data_content_can_be_left_out(self):
        el = self.offer(S.DEFAULT_FEATURES, include_data=False)
        self.assertEqual([c.get("name") for c in el.findall(S.q(S.NS_JINGLE, "content"))], ["audio", "video"])
        self.assertEqual([x.get("name") for x in el.find(S.q(S.NS_GROUPING, "group"))], ["audio", "video"])

    def test_feature_options(self):
        self.assertEqual(vars(S.offer_options([])), dict(audio=False, video=False, sctp=False, tcc=False,
                                                         remb=False, rtx=False, opus_red=False))
        self.assertTrue(S.offer_options([S.FEATURE_REMB]).remb)
        self.assertFalse(S.offer_options([S.FEATURE_REMB, S.FEATURE_TCC]).remb)  # REMB only without TCC
        opts = S.offer_options([S.FEATURE_AUDIO, S.FEATURE_VIDEO, S.FEATURE_TCC, S.FEATURE_RTX])
        audio = S.jicofo_audio_payload_types(opts)
        self.assertEqual([(f.type, f.subtype) for f in audio[0].rtcp_fbs], [("transport-cc", None)])
        self.assertEqual([x.id for x in S.jicofo_audio_hdrexts(opts)], [1, 10, 5])
        video = S.jicofo_video_payload_types(opts)
        self.assertEqual([(p.id, p.name) for p in video][4:],
                         [(42, "rtx"), (96, "rtx"), (97, "rtx"), (99, "rtx")])
        self.assertEqual(video[7].rtcp_fbs, [])          # H264's rtx has no feedback
        self.assertEqual([f.type for f in video[1].rtcp_fbs][-1], "transport-cc")
        self.assertIn("goog-remb", [f.type for f in S.jicofo_video_payload_types(
            S.offer_options([S.FEATURE_VIDEO, S.FEATURE_REMB]))[1].rtcp_fbs])

    def test_region_can_be_omitted(self):
        el = S.build_session_initiate("s1", "i", [], "bs1", "")
        self.assertEqual(dict(el.find(S.q(S.NS_FOCUS, "bridge-session")).attrib), {"id": "bs1"})

    def test_offer_round_trips_through_the_parser(self):
        opts = S.offer_options(S.DEFAULT_FEATURES)
        contents = S.jicofo_offer_contents(opts, TRANSPORT, [ALICE, JVB_A], [JVB_V])
        j = S.parse_jingle(S.build_session_initiate("s1", "f@a/f", contents, "bs1", "lab"))
        self.assertEqual(j.contents, contents)
        self.assertEqual((j.action, j.sid, j.initiator, j.group_semantics), ("session-initiate", "s1", "f@a/f", "BUNDLE"))
        self.assertEqual(j.bridge_session, S.BridgeSession("bs1", "lab", None))


class OtherBuilders(unittest.TestCase):
    def test_source_add(self):
        self.assertEqual(
            S.tostring(S.build_source_change("source-add", "s1", [ALICE])),
            '<jingle xmlns="urn:xmpp:jingle:1" action="source-add" sid="s1"><content name="audio">'
            '<description xmlns="urn:xmpp:jingle:apps:rtp:1" media="audio">'
            '<source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="111" name="1a2b3c4d-a0">'
            '<ssrc-info xmlns="http://jitsi.org/jitmeet" owner="1a2b3c4d"/>'
            '<parameter xmlns="urn:xmpp:jingle:apps:rtp:1" name="msid" value="1a2b3c4d-audio-0 u1"/>'
            '</source></description></content></jingle>')

    def test_source_remove_with_jid_owner(self):
        src = S.Source(5, "ep-a0", "room@muc.meet.jitsi/ep", [])
        el = S.build_source_change("source-remove", "s9", [src])
        self.assertEqual(el.get("action"), "source-remove")
        self.assertIsNone(el.get("initiator"))
        self.assertEqual(el.find(".//{http://jitsi.org/jitmeet}ssrc-info").get("owner"), "room@muc.meet.jitsi/ep")
        with self.assertRaises(ValueError):
            S.build_source_change("source-modify", "s", [src])

    def test_session_terminate(self):
        self.assertEqual(
            S.tostring(S.build_session_terminate("s1", "success", "bye")),
            '<jingle xmlns="urn:xmpp:jingle:1" action="session-terminate" sid="s1">'
            '<reason><success/><text>bye</text></reason></jingle>')
        self.assertEqual(S.tostring(S.build_session_terminate("s1", "expired")),
                         '<jingle xmlns="urn:xmpp:jingle:1" action="session-terminate" sid="s1">'
                         '<reason><expired/></reason></jingle>')
        with self.assertRaises(ValueError):
            S.build_session_terminate("s1", "no-such-reason")

    def test_mute_and_conference(self):
        self.assertEqual(S.tostring(S.build_mute(True, actor="r@muc.meet.jitsi/focus")),
                         '<mute xmlns="http://jitsi.org/jitmeet/audio" actor="r@muc.meet.jitsi/focus">true</mute>')
        self.assertEqual(S.tostring(S.build_conference_result("r@muc.x", "focus@auth.x", True, [("authentication", "false")])),
                         '<conference xmlns="http://jitsi.org/protocol/focus" room="r@muc.x" focusjid="focus@auth.x"'
                         ' ready="true"><property name="authentication" value="false"/></conference>')

    def test_jigasi_presence(self):
        out = "".join(S.tostring(e, S.NS_CLIENT) for e in S.build_jigasi_presence("+1555"))
        self.assertEqual(out, '<nick xmlns="http://jabber.org/protocol/nick">+1555</nick>'
                              '<initiator xmlns="http://jitsi.org/protocol/jigasi">'
                              '<header xmlns="urn:xmpp:rayo:1" name="JigasiCallDirection" value="in"/></initiator>'
                              '<features><feature var="http://jitsi.org/protocol/jigasi"/>'
                              '<feature var="urn:xmpp:jingle:dtmf:0"/></features>'
                              '<audiomuted>false</audiomuted>')

    def test_tostring_escapes(self):
        el = S._el(S.NS_NICK, "nick", [("a", 'x"<&')], "a<b&c")
        self.assertEqual(S.tostring(el), '<nick xmlns="http://jabber.org/protocol/nick" a="x&quot;&lt;&amp;">a&lt;b&amp;c</nick>')

    def test_sid_is_base32_of_64_bits(self):
        for _ in range(200):
            sid = S.new_sid()
            self.assertTrue(1 <= len(sid) <= 13)
            self.assertTrue(set(sid) <= set("0123456789abcdefghijklmnopqrstuv"))
            self.assertLess(int(sid, 32), 2 ** 64)


class Parsers(unittest.TestCase):
    def test_echo_transport_info_then_accept(self):
        ti = S.parse_jingle(xml(ECHO_TRANSPORT_INFO))
        self.assertEqual(ti.action, "transport-info")
        t = ti.merged_transport()
        self.assertEqual((t.ufrag, t.pwd, t.fingerprints), ("UF", "PWPWPWPWPWPWPWPWPWPWPW", []))
        self.assertEqual([(c.ip, c.port, c.type) for c in t.candidates], [("127.0.0.1", 40000, "host")])
        acc = S.parse_jingle(xml(ECHO_ACCEPT))
        self.assertEqual((acc.action, acc.responder), ("session-accept", "abc@meet.jitsi/r"))
        self.assertEqual([c.name for c in acc.contents], ["audio"])
        src = acc.sources("audio")
        self.assertEqual(len(src), 1)
        self.assertEqual(src[0].ssrc, 4000000000)
        self.assertEqual([(p.name, p.value) for p in src[0].parameters],
                         [("cname", "cn"), ("msid", "st tr"), ("mslabel", "st"), ("label", "tr")])
        self.assertEqual(src[0].msid, "st tr")
        t = acc.merged_transport()
        self.assertIsNone(t.ufrag)
        self.assertEqual(t.candidates, [])
        self.assertEqual(t.fingerprints, [S.Fingerprint("sha-256", "11:22:33", "active")])
        d = acc.content("audio").description
        self.assertEqual([(p.id, p.name) for p in d.payload_types], [(111, "opus"), (126, "telephone-event")])
        self.assertEqual(d.hdrexts, [S.HdrExt(1, S.URI_AUDIO_LEVEL)])
        self.assertTrue(d.rtcp_mux)

    def test_jigasi_like_candidates_only_in_transport_info(self):
        ti = S.parse_jingle(xml(JIGASI_TRANSPORT_INFO)).merged_transport()
        self.assertEqual((ti.ufrag, ti.pwd), ("uf1", "p4ssw0rdp4ssw0rdp4ssw0"))
        self.assertEqual([(c.component, c.type, c.rel_addr, c.rel_port) for c in ti.candidates],
                         [(1, "host", None, None), (1, "srflx", "127.0.0.1", 10001), (2, "host", None, None)])
        acc = S.parse_jingle(xml(JIGASI_ACCEPT))
        t = acc.merged_transport()
        self.assertEqual((t.ufrag, t.candidates, t.rtcp_mux), (None, [], False))
        self.assertEqual(t.fingerprints[0].setup, "active")
        src = acc.sources("audio")[0]
        self.assertEqual((src.ssrc, src.param("cname"), src.msid, src.owner), (123, "c", "m l", None))

    def test_terminate_reason(self):
        j = S.parse_jingle(xml('<jingle xmlns="urn:xmpp:jingle:1" action="session-terminate" sid="s">'
                               '<reason><busy/><text>Call completed elsewhere</text></reason></jingle>'))
        self.assertEqual((j.reason, j.reason_text), ("busy", "Call completed elsewhere"))
        j = S.parse_jingle(xml('<jingle xmlns="urn:xmpp:jingle:1" action="session-terminate" sid="s">'
                               '<bridge-session xmlns="http://jitsi.org/protocol/focus" id="b" restart="true"/>'
                               '</jingle>'))
        self.assertEqual((j.reason, j.bridge_session.restart), (None, True))

    def test_source_add_from_owner_jid(self):
        j = S.parse_jingle(S.build_source_change("source-add", "s", [S.Source(7, "x", "r@m/x", [])]))
        self.assertEqual([(s.ssrc, s.owner) for s in j.sources("audio")], [(7, "r@m/x")])

    def test_malformed_input_raises_typed_errors(self):
        bad = {
            "no sid": '<jingle xmlns="urn:xmpp:jingle:1" action="session-accept"/>',
            "no action": '<jingle xmlns="urn:xmpp:jingle:1" sid="s"/>',
            "content name": '<jingle xmlns="urn:xmpp:jingle:1" action="session-accept" sid="s"><content/></jingle>',
            "ssrc": '<jingle xmlns="urn:xmpp:jingle:1" action="source-add" sid="s"><content name="audio">'
                    '<description xmlns="urn:xmpp:jingle:apps:rtp:1" media="audio">'
                    '<source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="12x"/></description></content></jingle>',
            "ssrc range": '<jingle xmlns="urn:xmpp:jingle:1" action="source-add" sid="s"><content name="audio">'
                          '<description xmlns="urn:xmpp:jingle:apps:rtp:1" media="audio">'
                          '<source xmlns="urn:xmpp:jingle:apps:rtp:ssma:0" ssrc="4294967296"/></description>'
                          '</content></jingle>',
            "port": '<jingle xmlns="urn:xmpp:jingle:1" action="transport-info" sid="s"><content name="audio">'
                    '<transport xmlns="urn:xmpp:jingle:transports:ice-udp:1"><candidate component="1" ip="1.2.3.4"'
                    ' port="http" priority="1"/></transport></content></jingle>',
            "ip": '<jingle xmlns="urn:xmpp:jingle:1" action="transport-info" sid="s"><content name="audio">'
                  '<transport xmlns="urn:xmpp:jingle:transports:ice-udp:1"><candidate component="1" port="1"'
                  ' priority="1"/></transport></content></jingle>',
            "fingerprint": '<jingle xmlns="urn:xmpp:jingle:1" action="session-accept" sid="s"><content name="audio">'
                           '<transport xmlns="urn:xmpp:jingle:transports:ice-udp:1">'
                           '<fingerprint xmlns="urn:xmpp:jingle:apps:dtls:0" setup="active">AA</fingerprint>'
                           '</transport></content></jingle>',
            "payload id": '<jingle xmlns="urn:xmpp:jingle:1" action="session-accept" sid="s"><content name="audio">'
                          '<description xmlns="urn:xmpp:jingle:apps:rtp:1"><payload-type name="opus"/>'
                          '</description></content></jingle>',
            "wrong element": '<jingle xmlns="urn:xmpp:jingle:0" action="session-accept" sid="s"/>',
        }
        for what, text in bad.items():
            with self.subTest(what), self.assertRaises(StanzaError) as cm:
                S.parse_jingle(xml(text))
            self.assertEqual(cm.exception.condition, "bad-request")
        with self.assertRaises(StanzaError) as cm:
            S.parse_jingle(xml('<jingle xmlns="urn:xmpp:jingle:1" action="dance" sid="s"/>'))
        self.assertEqual(cm.exception.condition, "feature-not-implemented")
        with self.assertRaises(StanzaError):
            S.parse_jingle(None)

    def test_mute_conference_disco(self):
        self.assertEqual(S.parse_mute(xml('<mute xmlns="http://jitsi.org/jitmeet/audio" jid="r@m/n">false</mute>')),
                         (False, "r@m/n", None))
        with self.assertRaises(StanzaError):
            S.parse_mute(xml('<mute xmlns="http://jitsi.org/jitmeet/audio">maybe</mute>'))
        self.assertEqual(S.parse_conference_request(xml(
            '<conference xmlns="http://jitsi.org/protocol/focus" room="r@muc.x">'
            '<property name="visitors-version" value="1"/></conference>')), ("r@muc.x", {"visitors-version": "1"}))
        for room in ("", "noat", "r@muc.x/nick"):
            with self.assertRaises(StanzaError):
                S.parse_conference_request(S.build_conference_request(room) if room else
                                           xml('<conference xmlns="http://jitsi.org/protocol/focus"/>'))
        q = S.build_disco_info_result([S.FEATURE_AUDIO, S.FEATURE_JIGASI])
        self.assertEqual(S.parse_disco_features(q), [S.FEATURE_AUDIO, S.FEATURE_JIGASI])
        with self.assertRaises(StanzaError):
            S.parse_disco_features(xml('<query xmlns="jabber:iq:version"/>'))

    def test_muc_presence(self):
        pres = ET.Element(S.q(S.NS_CLIENT, "presence"), {"from": "Room@muc.meet.jitsi/1a2b3c4d"})
        for e in S.build_jigasi_presence("+1555", direction="out"):
            pres.append(e)
        pres.append(S.build_status("Initializing Call"))
        x = ET.SubElement(pres, S.q(S.NS_MUC_USER, "x"))
        ET.SubElement(x, S.q(S.NS_MUC_USER, "item"), {"jid": "a@meet.jitsi/r", "role": "participant",
                                                      "affiliation": "none"})
        p = S.parse_muc_presence(pres)
        self.assertEqual((p.room, p.nick, p.type, p.real_jid), ("room@muc.meet.jitsi", "1a2b3c4d", "available",
                                                                  "a@meet.jitsi/r"))
        self.assertEqual(p.display_name, "+1555")
        self.assertTrue(p.jigasi_initiator and p.signals_jigasi)
        self.assertEqual(p.initiator_headers, {"JigasiCallDirection": "out"})
        self.assertEqual((p.status_text, p.audiomuted), ("Initializing Call", False))
        with self.assertRaises(StanzaError):
            S.parse_muc_presence(ET.Element("presence", {"from": "meet.jitsi"}))


if __name__ == "__main__":
    unittest.main()
