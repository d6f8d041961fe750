"""Rayo dial/ref/hangup and brewery <stats>: builders, parsers, Jicofo's instance selection, and
the dial command's retry logic against a scripted focus (no XMPP server needed).

Run from the checkout root:  .lab/venv/bin/python -m unittest discover -s tools/emulator/tests
"""
import asyncio
import os
import sys
import types
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from slixmpp import Iq  # noqa: E402

from emulator import stanzas as S  # noqa: E402
from emulator.brewery import Brewery, Rayo  # noqa: E402
from emulator.control import CommandError, EventBus  # noqa: E402
from emulator.stanzas import StanzaError  # noqa: E402
from emulator.util import Clock  # noqa: E402

BREWERY = "jigasibrewery@internal-muc.meet.jitsi"
ROOM = "dialroom@muc.meet.jitsi"

# jigasi's brewery presence payload (Statistics.updatePresenceStatusForXmppProvider)
JIGASI_STATS = (
    '<stats xmlns="http://jitsi.org/protocol/colibri">'
    '<stat name="conferences" value="3"/><stat name="participants" value="11"/>'
    '<stat name="graceful_shutdown" value="false"/><stat name="stress_level" value="0.03"/>'
    '<stat name="region" value="eu-west-1"/><stat name="version" value="1.1.311-g3f2d4e1"/>'
    '<stat name="supports_transcription" value="false"/><stat name="supports_sip" value="true"/>'
    '</stats>')


def sip(participants, **extra):
    stats = {"participants": participants, "graceful_shutdown": False, "supports_sip": True}
    stats.update(extra)
    return stats


class DialRefHangup(unittest.TestCase):
    def test_dial_with_room_password_and_headers(self):
        el = S.build_dial_for_room("+15551234567", ROOM, "secret",
                                   [("X-outbound-call-initiator-user", "u1"), ("X-b", "2")])
        self.assertEqual(
            S.tostring(el),
            '<dial xmlns="urn:xmpp:rayo:1" from="fromnumber" to="+15551234567">'
            '<header name="JvbRoomName" value="dialroom@muc.meet.jitsi"/>'
            '<header name="JvbRoomPassword" value="secret"/>'
            '<header name="X-outbound-call-initiator-user" value="u1"/>'
            '<header name="X-b" value="2"/></dial>')
        d = S.parse_dial(el)
        self.assertEqual((d.to, d.src, d.header("JvbRoomName"), d.header("X-b"), d.header("nope")),
                         ("+15551234567", "fromnumber", ROOM, "2", None))
        self.assertEqual([n for n, _ in d.headers],
                         ["JvbRoomName", "JvbRoomPassword", "X-outbound-call-initiator-user", "X-b"])

    def test_dial_without_password_or_from(self):
        el = S.build_dial_for_room("sip:bob@example.com", ROOM, src=None)
        self.assertEqual(S.tostring(el), '<dial xmlns="urn:xmpp:rayo:1" to="sip:bob@example.com">'
                                         '<header name="JvbRoomName" value="dialroom@muc.meet.jitsi"/></dial>')
        self.assertIsNone(S.parse_dial(el).src)
        with self.assertRaises(ValueError):
            S.build_dial("", [])

    def test_dial_parser_rules(self):
        # 'to' is mandatory (RayoIqProvider returns null without it)
        for text in ('<dial xmlns="urn:xmpp:rayo:1" from="x"/>', '<dial xmlns="urn:xmpp:rayo:1" to=""/>',
                     '<dial xmlns="urn:xmpp:rayo:0" to="1"/>'):
            with self.subTest(text), self.assertRaises(StanzaError):
                S.parse_dial(ET.fromstring(text))
        with self.assertRaises(StanzaError):
            S.parse_dial(None)
        # headers are read whatever their namespace; nameless ones are dropped
        d = S.parse_dial(ET.fromstring('<dial xmlns="urn:xmpp:rayo:1" to="1"><header xmlns="x" name="a" value="b"/>'
                                       '<header value="c"/></dial>'))
        self.assertEqual(d.headers, [("a", "b")])

    def test_ref(self):
        el = S.build_ref("xmpp:dialroom@muc.meet.jitsi/1a2b3c4d")
        self.assertEqual(S.tostring(el), '<ref xmlns="urn:xmpp:rayo:1" uri="xmpp:dialroom@muc.meet.jitsi/1a2b3c4d"/>')
        self.assertEqual(S.parse_ref(el), "xmpp:dialroom@muc.meet.jitsi/1a2b3c4d")
        self.assertIsNone(S.parse_ref(None))
        self.assertIsNone(S.parse_ref(ET.fromstring('<ref xmlns="urn:xmpp:rayo:1"/>')))
        self.assertIsNone(S.parse_ref(ET.fromstring('<ref xmlns="urn:other" uri="xmpp:a@b/c"/>')))
        self.assertEqual(S.ref_occupant("xmpp:DialRoom@muc.meet.jitsi/1a2b"), (ROOM, "1a2b"))
        for uri in (None, "", "sip:a@b/c", "xmpp:a@b", "xmpp:1a2b3c4d@meet.jitsi", "xmpp:b/c"):
            self.assertIsNone(S.ref_occupant(uri), uri)

    def test_hangup(self):
        self.assertEqual(S.tostring(S.build_hangup()), '<hangup xmlns="urn:xmpp:rayo:1"/>')
        self.assertTrue(S.is_hangup(S.build_hangup()))
        self.assertFalse(S.is_hangup(S.build_dial("1")))
        self.assertFalse(S.is_hangup(None))


class Stats(unittest.TestCase):
    def test_parse_jigasi_stats(self):
        self.assertEqual(S.parse_stats(ET.fromstring(JIGASI_STATS)), {
            "conferences": 3, "participants": 11, "graceful_shutdown": False, "stress_level": 0.03,
            "region": "eu-west-1", "version": "1.1.311-g3f2d4e1", "supports_transcription": False,
            "supports_sip": True})

    def test_values(self):
        cases = {"7": 7, "-2": -2, "+3": 3, "1.5": 1.5, "1e3": 1000.0, ".5": 0.5, "TRUE": True, "False": False,
                 "1.1.x": "1.1.x", "nan": "nan", "inf": "inf", "": "", " 4 ": 4, None: None}
        for text, value in cases.items():
            with self.subTest(text):
                got = S.stat_value(text)
                self.assertEqual((got, type(got)), (value, type(value)))

    def test_build_round_trip(self):
        stats = {"participants": 2, "graceful_shutdown": True, "stress_level": 0.5, "region": "lab"}
        el = S.build_stats(stats)
        self.assertEqual(S.tostring(el),
                         '<stats xmlns="http://jitsi.org/protocol/colibri">'
                         '<stat name="participants" value="2"/><stat name="graceful_shutdown" value="true"/>'
                         '<stat name="stress_level" value="0.5"/><stat name="region" value="lab"/></stats>')
        self.assertEqual(S.parse_stats(el), stats)
        with self.assertRaises(StanzaError):
            S.parse_stats(ET.fromstring('<stats xmlns="urn:other"/>'))
        # a stat without a name is ignored; a repeated one keeps the last value
        self.assertEqual(S.parse_stats(ET.fromstring(
            '<stats xmlns="http://jitsi.org/protocol/colibri"><stat value="1"/><stat name="a" value="1"/>'
            '<stat name="a" value="2"/><stat name="b"/></stats>')), {"a": 2, "b": None})

    def test_brewery_presence(self):
        pres = ET.Element(S.q(S.NS_CLIENT, "presence"), {"from": BREWERY + "/gw1"})
        pres.append(ET.fromstring(JIGASI_STATS))
        x = ET.SubElement(pres, S.q(S.NS_MUC_USER, "x"))
        ET.SubElement(x, S.q(S.NS_MUC_USER, "item"), {"jid": "jigasi@auth.meet.jitsi/gw1", "role": "participant"})
        p = S.parse_muc_presence(pres)
        self.assertEqual((p.room, p.nick, p.real_jid, p.stats["participants"]),
                         (BREWERY, "gw1", "jigasi@auth.meet.jitsi/gw1", 11))
        # a conference-room presence carries a bare <stat name="version"/>, which is not <stats>
        conf = ET.Element(S.q(S.NS_CLIENT, "presence"), {"from": ROOM + "/n"})
        for e in S.build_jigasi_presence("+1", version="1.0"):
            conf.append(e)
        self.assertIsNone(S.parse_muc_presence(conf).stats)


class Selection(unittest.TestCase):
    def test_least_loaded_first_of_equals(self):
        self.assertEqual(S.select_jigasi([("a", sip(5)), ("b", sip(2)), ("c", sip(2))]), "b")
        self.assertEqual(S.select_jigasi([("a", sip(0)), ("b", sip(0))]), "a")
        self.assertIsNone(S.select_jigasi([]))

    def test_filters(self):
        inst = [("shut", sip(0, graceful_shutdown=True)), ("nosip", sip(0, supports_sip=False)),
                ("nostat", {"participants": 0}), ("sipstr", sip(9, supports_sip="True")), ("ok", sip(3))]
        self.assertEqual(S.select_jigasi(inst), "ok")
        self.assertEqual(S.select_jigasi(inst, exclude=["ok"]), "sipstr")
        self.assertIsNone(S.select_jigasi(inst, exclude=["ok", "sipstr"]))
        # a graceful_shutdown that is not exactly true does not count (Boolean.parseBoolean)
        self.assertEqual(S.select_jigasi([("a", sip(0, graceful_shutdown="yes"))]), "a")

    def test_participants_as_jicofo_reads_them(self):
        # getValueAsInt: Integer.valueOf, so a non-integer counts as 0 participants
        self.assertEqual(S.select_jigasi([("a", sip(1)), ("b", sip(2.5))]), "b")
        self.assertEqual(S.select_jigasi([("a", sip(1)), ("b", sip("many"))]), "b")
        self.assertEqual(S.select_jigasi([("a", sip(1)), ("b", {"supports_sip": True})]), "b")

    def test_regions(self):
        inst = [("eu", sip(0, region="eu")), ("lab", sip(7, region="lab")), ("none", sip(3))]
        self.assertEqual(S.select_jigasi(inst, preferred_regions=["lab"]), "lab")
        # no preferred match: the local region; Jicofo's null local region matches region-less ones
        self.assertEqual(S.select_jigasi(inst, preferred_regions=["us"]), "none")
        self.assertEqual(S.select_jigasi(inst, preferred_regions=["us"], local_region="eu"), "eu")
        self.assertEqual(S.select_jigasi(inst[:2], preferred_regions=["us"]), "eu")

    def test_transcriber(self):
        inst = [("sip", sip(0)), ("tr", {"supports_transcription": True, "participants": 4})]
        self.assertEqual(S.select_jigasi(inst, transcriber=True), "tr")


def presence(nick, stats=None, typ="available", jid=None):
    return S.MucPresence(BREWERY, nick, typ, real_jid=jid or "jigasi@auth.meet.jitsi/%s" % nick, stats=stats)


class BreweryTracking(unittest.TestCase):
    def setUp(self):
        self.bus = EventBus(Clock())
        self.b = Brewery(BREWERY, self.bus.clock, self.bus)

    def names(self):
        return [(e["event"], e["nick"]) for e in self.bus.history]

    def test_instances_follow_stats_presences(self):
        self.b.on_presence(presence("focus", sip(0)))            # ourselves: ignored
        self.b.on_presence(presence("x"))                          # no stats: not an instance yet
        self.b.on_presence(presence("b", sip(4)))
        self.b.on_presence(presence("x", sip(1)))
        self.assertEqual(self.b.instances(), [("b", sip(4)), ("x", sip(1))])
        self.b.on_presence(presence("b", sip(4)))                  # unchanged: no event
        self.b.on_presence(presence("b"))                          # no stats: stats kept
        self.b.on_presence(presence("b", sip(4, graceful_shutdown=True)))
        self.assertEqual(self.b.instances()[0], ("b", sip(4, graceful_shutdown=True)))
        self.b.on_presence(presence("x", typ="unavailable"))
        self.b.on_presence(presence("nobody", typ="unavailable"))
        self.assertEqual(self.names(), [("brewery-occupant", "b"), ("brewery-occupant", "x"),
                                        ("brewery-occupant", "b"), ("brewery-occupant-left", "x")])
        self.assertEqual(self.bus.history[-1]["stats"], sip(1))
        self.assertEqual([n for n, _ in self.b.instances()], ["b"])
        j = self.b.to_json()
        self.assertEqual([(i["nick"], i["present"], len(i["history"])) for i in j["instances"]],
                         [("x", False, 1), ("b", True, 2)])
        # back again: a new instance, last in Jicofo's list
        self.b.on_presence(presence("x", sip(0)))
        self.assertEqual([n for n, _ in self.b.instances()], ["b", "x"])


def iq_from(text):
    return Iq(xml=ET.fromstring(text))


RESULT = '<iq xmlns="jabber:client" type="result" id="1"><ref xmlns="urn:xmpp:rayo:1" uri="xmpp:%s/%s"/></iq>'
ERROR = ('<iq xmlns="jabber:client" type="error" id="1"><error type="cancel">'
         '<%s xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>'
         '<text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">%s</text></error></iq>')


class ScriptedClient:
    """Answers each request from a script: {destination: ('result', nick) | ('error', cond) | 'timeout'}."""

    def __init__(self, script):
        self.script = script
        self.sent = []

    async def request(self, to, payload, itype="set", timeout=10.0):
        self.sent.append((to, S.tostring(payload)))
        what = self.script.get(to, "timeout")
        if what == "timeout":
            return "timeout", None
        kind, arg = what
        if kind == "result":
            return "result", iq_from(RESULT % (ROOM, arg))
        return "error", iq_from(ERROR % (arg, "no"))


class DialCommand(unittest.TestCase):
    def make(self, script, instances, participants=None):
        bus = EventBus(Clock())
        args = types.SimpleNamespace(iq_timeout=1.0, bridge_region="lab")
        focus = ScriptedClient(script)
        conf = types.SimpleNamespace(clock=bus.clock, bus=bus, args=args, focus=focus,
                                     participants=participants or {}, errors=[], rooms={})

        async def ensure_room(name, via):
            conf.rooms[name] = via

        conf.ensure_room = ensure_room
        conf.room_jid = lambda name: name if "@" in name else "%s@muc.meet.jitsi" % name
        conf.error = lambda where, message, **kw: conf.errors.append((where, message))
        brewery = Brewery(BREWERY, bus.clock, bus)
        brewery.joined_t = 0.0
        for nick, stats in instances:
            brewery.on_presence(presence(nick, stats))
        return Rayo(conf, brewery), focus, bus

    def run_dial(self, rayo, **req):
        return asyncio.run(rayo.dial(dict(room="dialroom", to="+1555", **req)))

    def test_selects_least_loaded_and_reports_the_ref(self):
        rayo, focus, bus = self.make({BREWERY + "/b": ("result", "call1")}, [("a", sip(5)), ("b", sip(2))])
        out = self.run_dial(rayo, headers=[["X-a", "1"]], password="pw")
        self.assertEqual((out["target"], out["sent_to"], out["occupant"]), ("b", BREWERY + "/b", "call1"))
        self.assertEqual(out["answer"], {"type": "result", "uri": "xmpp:%s/call1" % ROOM, "condition": None,
                                         "text": None})
        self.assertEqual(out["jicofo_answer"], {"type": "result", "uri": "xmpp:%s/call1" % ROOM})
        self.assertEqual(focus.sent, [(BREWERY + "/b",
                                       '<dial xmlns="urn:xmpp:rayo:1" from="fromnumber" to="+1555">'
                                       '<header name="JvbRoomName" value="dialroom@muc.meet.jitsi"/>'
                                       '<header name="JvbRoomPassword" value="pw"/>'
                                       '<header name="X-a" value="1"/></dial>')])
        names = [e["event"] for e in bus.history if e["event"].startswith("dial")]
        self.assertEqual(names, ["dial-sent", "dial-answered"])
        self.assertEqual(rayo.dial_for_occupant(ROOM, "call1"), 1)
        self.assertEqual(rayo.dials[0]["headers"][1], ["JvbRoomPassword", "pw"])

    def test_retries_two_other_instances_like_jicofo(self):
        script = {BREWERY + "/a": ("error", "service-unavailable"), BREWERY + "/b": "timeout",
                  BREWERY + "/c": ("error", "not-allowed"), BREWERY + "/d": ("result", "x")}
        rayo, focus, _ = self.make(script, [("a", sip(0)), ("b", sip(1)), ("c", sip(2)), ("d", sip(3))])
        out = self.run_dial(rayo)
        self.assertEqual([a["target"] for a in out["attempts"]], ["a", "b", "c"])   # d is never tried
        self.assertEqual(out["answer"]["condition"], "not-allowed")
        self.assertEqual(out["answer"]["text"], "no")
        self.assertEqual(out["jicofo_answer"], {"type": "error", "condition": "undefined-condition"})
        # last one timing out: remote-server-timeout; running out of instances: service-unavailable
        rayo, _, _ = self.make({}, [("a", sip(0))])
        self.assertEqual(self.run_dial(rayo, retries=0)["jicofo_answer"]["condition"], "remote-server-timeout")
        rayo, _, _ = self.make({BREWERY + "/a": ("error", "forbidden")}, [("a", sip(0))])
        out = self.run_dial(rayo)
        self.assertEqual((len(out["attempts"]), out["jicofo_answer"]["condition"]), (1, "service-unavailable"))

    def test_explicit_target_exclude_and_no_instance(self):
        rayo, focus, _ = self.make({BREWERY + "/a": ("error", "forbidden")},
                                   [("a", sip(9)), ("b", sip(0, graceful_shutdown=True))])
        out = self.run_dial(rayo, target="a")
        self.assertEqual((out["target"], len(out["attempts"])), ("a", 1))           # no retry on a target
        with self.assertRaises(CommandError) as cm:
            self.run_dial(rayo, exclude=["a"])
        self.assertIn("service-unavailable", str(cm.exception))
        with self.assertRaises(CommandError):
            self.run_dial(rayo, target="zz")
        # an explicit target is sent to even in graceful shutdown (to test the gateway's refusal)
        self.assertEqual(self.run_dial(rayo, target="b")["sent_to"], BREWERY + "/b")

    def test_via_participant_goes_to_the_real_jid(self):
        alice = types.SimpleNamespace(removed_t=None, client=ScriptedClient(
            {"jigasi@auth.meet.jitsi/a": ("error", "not-allowed")}))
        rayo, focus, _ = self.make({}, [("a", sip(0))], {"alice": alice})
        out = self.run_dial(rayo, via="participant:alice")
        self.assertEqual((out["sent_to"], out["answer"]["condition"], out["jicofo_answer"]),
                         ("jigasi@auth.meet.jitsi/a", "not-allowed", None))
        self.assertEqual(focus.sent, [])
        self.assertEqual(len(alice.client.sent), 1)

    def test_argument_errors(self):
        rayo, _, _ = self.make({}, [("a", sip(0))])
        for bad in (dict(to=""), dict(headers=[["a"]]), dict(headers="x"), dict(exclude="a"),
                    dict(via="nobody"), dict(via="participant:ghost"), dict(retries=-1), dict(timeout=0)):
            with self.subTest(bad), self.assertRaises(CommandError):
                req = dict(room="dialroom", to="+1")
                req.update(bad)
                asyncio.run(rayo.dial(req))
        rayo.brewery.joined_t = None
        with self.assertRaises(CommandError):
            self.run_dial(rayo)

    def test_no_wait_answers_at_once(self):
        rayo, _, bus = self.make({BREWERY + "/a": ("result", "n")}, [("a", sip(0))])

        async def go():
            out = await rayo.dial(dict(room="dialroom", to="1", wait=False))
            self.assertEqual(out, {"dial_id": 1, "target": "a", "sent_to": BREWERY + "/a"})
            for _ in range(10):
                await asyncio.sleep(0)
            return [e for e in bus.history if e["event"] == "dial-answered"]

        answered = asyncio.run(go())
        self.assertEqual(answered[0]["answer"]["uri"], "xmpp:%s/n" % ROOM)


if __name__ == "__main__":
    unittest.main()
