#!/usr/bin/env python3
"""A fake jigasi brewery member, to test the emulator's dial-out side without the gateway.

It logs in as jigasi@auth.<domain>/<nick> (like jigasi's brewery account), joins the brewery
<brewery>@internal-muc.<domain> as <nick> with a colibri <stats> presence like jigasi's
(conferences, participants, graceful_shutdown, stress_level, version, supports_transcription,
supports_sip), and answers Rayo <dial/> IQs:
  * from a sender whose bare JID is not --allowed-jid (default: the brewery room, so only dials
    routed through the brewery MUC pass): error not-allowed, as the gateway's xmpp.allowed_jid;
  * without a JvbRoomName header: bad-request "No JvbRoomName header found" (jigasi);
  * otherwise as --answer says: 'ref' (result <ref uri="xmpp:room@muc/<nick>"/>), 'error'
    (--error-condition, --error-text) or 'timeout' (no answer at all).
With --join-room, a 'ref' answer first joins the room like a dial-out jigasi call: a second,
anonymous connection, presence <nick> = the dialled number and <initiator> with
JigasiCallDirection=out plus every extra Rayo header; the ref names that occupant. That call
answers disco#info with jigasi's features, acks every Jingle IQ (it never sets up media), and
answers a Rayo <hangup/> with a result and then leaves the room.

Control channel as the emulator's (newline JSON on 127.0.0.1):
  status                          -> report
  set-stats {stats: {name: value|null}}   merge (null removes a stat), publish a new presence
  set-answer {answer: ref|error|timeout, condition?, text?}
  leave-call {room?}              the call connection leaves its room(s)
  events, quit
Events: ready {nick, jid, brewery, stats}, stats-published {stats}, dial-received {from, to,
src, headers, allowed, answer {type, uri, condition, text}}, call-joined {room, nick, jid,
display_name}, jingle-received {room, action, from}, hangup-received {from, room, nick},
call-left {room, nick}, error.
Report: <out-dir>/fake-member-report.json {version, kind: "fake-brewery-member", t, pid, nick,
jid, brewery, stats, stats_history [{t, stats}], dials [...], hangups [...], calls [...], errors}.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Optional

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from emulator import stanzas  # noqa: E402
from emulator.control import CommandError, ControlServer, EventBus  # noqa: E402
from emulator.stanzas import StanzaError  # noqa: E402
from emulator.util import Clock, random_endpoint_id, write_json_atomic  # noqa: E402
from emulator.xmpp import BaseClient, reply_error, reply_result  # noqa: E402

log = logging.getLogger("fake-member")

CALL_FEATURES = (stanzas.FEATURE_AUDIO, stanzas.NS_JINGLE, stanzas.NS_RTP, stanzas.NS_ICE_UDP,
                 stanzas.NS_DTLS, stanzas.FEATURE_JIGASI, stanzas.FEATURE_DTMF)
ANSWERS = ("ref", "error", "timeout")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="fake_brewery_member.py", description=__doc__.split("\n")[0])
    ap.add_argument("--xmpp-host", default="127.0.0.1")
    ap.add_argument("--xmpp-port", type=int, default=5222)
    ap.add_argument("--domain", default="meet.jitsi")
    ap.add_argument("--user", default="jigasi")
    ap.add_argument("--password", default="jigasipass")
    ap.add_argument("--nick", default=None, help="resource and brewery nick (default: random 8 hex)")
    ap.add_argument("--brewery", default="jigasibrewery", help="NAME@internal-muc.<domain> or a room JID")
    ap.add_argument("--participants", type=int, default=0, help="the 'participants' stat")
    ap.add_argument("--conferences", type=int, default=0, help="the 'conferences' stat")
    ap.add_argument("--stat", action="append", default=[],
                    help="name=value, repeatable: adds or overrides a stat (e.g. graceful_shutdown=true)")
    ap.add_argument("--answer", choices=ANSWERS, default="ref")
    ap.add_argument("--error-condition", default="service-unavailable")
    ap.add_argument("--error-text", default=None)
    ap.add_argument("--allowed-jid", default=None,
                    help="bare JID dials must come from (default: the brewery room; '' accepts anyone)")
    ap.add_argument("--join-room", action="store_true",
                    help="join the dialled room as a dial-out call before answering with the ref")
    ap.add_argument("--join-timeout", type=float, default=20.0,
                    help="keep retrying the brewery join this long (it may not exist yet)")
    ap.add_argument("--control-port", type=int, default=0)
    ap.add_argument("--ready-file", default=None)
    ap.add_argument("--out-dir", default="fake-member-out")
    ap.add_argument("--log-level", default="info")
    args = ap.parse_args(argv)
    args.nick = (args.nick or "").strip() or random_endpoint_id()
    if "@" in args.brewery:
        args.brewery_jid = args.brewery.lower()
    else:
        args.brewery_jid = ("%s@internal-muc.%s" % (args.brewery, args.domain)).lower()
    if args.allowed_jid is None:
        args.allowed_jid = args.brewery_jid
    stats = {"conferences": args.conferences, "participants": args.participants,
             "graceful_shutdown": False, "stress_level": 0.0, "version": "fake",
             "supports_transcription": False, "supports_sip": True}
    for item in args.stat:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            ap.error("--stat needs name=value, got %r" % item)
        stats[name.strip()] = value.strip()
    args.stats = stats
    return args


class Call:
    """One dial-out 'call': an anonymous occupant of the dialled room (jigasi's per-call connection)."""

    def __init__(self, member: "FakeMember", room: str, dial: stanzas.Dial):
        self.member = member
        self.room = room
        self.dial = dial
        self.nick = random_endpoint_id()
        self.client = BaseClient(member.args.domain, "", "call-%s" % self.nick)
        self.joined_t: Optional[float] = None
        self.left_t: Optional[float] = None
        self.jingle: list = []
        self.hangups: list = []
        c = self.client
        c.add_iq_handler("call-disco", stanzas.NS_DISCO_INFO, "query", self.on_disco, types=("get",))
        c.add_iq_handler("call-jingle", stanzas.NS_JINGLE, "jingle", self.on_jingle, types=("set",))
        c.add_iq_handler("call-hangup", stanzas.NS_RAYO, "hangup", self.on_hangup, types=("set",))

    @property
    def uri(self) -> str:
        return "xmpp:%s/%s" % (self.room, self.nick)

    async def join(self) -> None:
        args = self.member.args
        await self.client.start(args.xmpp_host, args.xmpp_port)
        extra = [(n, v) for n, v in self.dial.headers if n not in ("JvbRoomName", "JvbRoomPassword")]
        presence = stanzas.build_jigasi_presence(self.dial.to, direction="out")
        initiator = next(e for e in presence if e.tag == stanzas.q(stanzas.NS_JIGASI, "initiator"))
        for n, v in extra:
            initiator.append(stanzas._el(stanzas.NS_RAYO, "header", [("name", n), ("value", v)]))
        presence.append(stanzas.build_status("Initializing Call"))
        await self.client.join_room(self.room, self.nick, presence,
                                    password=self.dial.header("JvbRoomPassword"))
        self.joined_t = self.member.clock.now()
        self.member.bus.emit("call-joined", room=self.room, nick=self.nick, jid=str(self.client.boundjid),
                             display_name=self.dial.to)

    def on_disco(self, iq, query) -> None:
        reply_result(iq, stanzas.build_disco_info_result(CALL_FEATURES))

    def on_jingle(self, iq, el) -> None:
        action = el.get("action") if el is not None else None
        self.jingle.append({"t": self.member.clock.now(), "action": action, "from": str(iq["from"])})
        reply_result(iq)
        self.member.bus.emit("jingle-received", room=self.room, action=action, **{"from": str(iq["from"])})

    def on_hangup(self, iq, _el) -> None:
        entry = {"t": self.member.clock.now(), "from": str(iq["from"]), "room": self.room, "nick": self.nick}
        self.hangups.append(entry)
        self.member.hangups.append(entry)
        reply_result(iq)
        self.member.bus.emit("hangup-received", **{k: v for k, v in entry.items() if k != "t"})
        asyncio.ensure_future(self.leave())

    async def leave(self) -> None:
        if self.left_t is not None:
            return
        self.left_t = self.member.clock.now()
        self.client.leave_room(self.room)
        await asyncio.sleep(0.05)
        await self.client.stop()
        self.member.bus.emit("call-left", room=self.room, nick=self.nick)

    def to_json(self) -> dict:
        return {"room": self.room, "nick": self.nick, "uri": self.uri, "to": self.dial.to,
                "headers": [list(h) for h in self.dial.headers], "joined_t": self.joined_t,
                "left_t": self.left_t, "jingle": self.jingle, "hangups": self.hangups}


class FakeMember:
    def __init__(self, args):
        self.args = args
        self.clock = Clock()
        self.bus = EventBus(self.clock)
        jid = "%s@auth.%s/%s" % (args.user, args.domain, args.nick)
        self.client = BaseClient(jid, args.password, "member-%s" % args.nick)
        self.client.add_iq_handler("member-dial", stanzas.NS_RAYO, "dial", self.on_dial, types=("set",))
        self.client.add_iq_handler("member-disco", stanzas.NS_DISCO_INFO, "query", self.on_disco,
                                   types=("get",))
        self.stats = dict(args.stats)
        self.stats_history: list = []
        self.answer = {"answer": args.answer, "condition": args.error_condition, "text": args.error_text}
        self.dials: list = []
        self.hangups: list = []
        self.calls: list[Call] = []
        self.errors: list = []
        self.control = ControlServer(self.bus, self.handle_command, lambda: self.quit_event.set())
        self.quit_event = asyncio.Event()

    async def run(self) -> int:
        args = self.args
        os.makedirs(args.out_dir, exist_ok=True)
        port = await self.control.start(args.control_port)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.quit_event.set)
        try:
            await self.client.start(args.xmpp_host, args.xmpp_port)
            await self._join_brewery()
            self._published()
        except Exception as e:
            log.error("start-up failed: %s", e)
            self.bus.emit("error", where="startup", message=str(e))
            await self.shut_down()
            return 1
        if args.ready_file:
            write_json_atomic(args.ready_file, {"control_port": port, "pid": os.getpid()})
        self.bus.emit("ready", control_port=port, pid=os.getpid(), nick=args.nick,
                      jid=str(self.client.boundjid), brewery=args.brewery_jid, stats=self.stats)
        await self.quit_event.wait()
        await self.shut_down()
        return 0

    async def _join_brewery(self) -> None:
        """Joins the brewery, retrying while it does not exist yet: in the lab Prosody only the focus
        (an admin of internal-muc) may create it, as in docker-jitsi-meet, so a member that starts
        first gets not-allowed until the focus is in."""
        deadline = self.clock.now() + self.args.join_timeout
        while True:
            try:
                await self.client.join_room(self.args.brewery_jid, self.args.nick,
                                            [stanzas.build_stats(self.stats)])
                return
            except Exception as e:
                if self.clock.now() >= deadline:
                    raise
                log.info("joining the brewery: %s; retrying", e)
                self.client.rooms.pop(self.args.brewery_jid, None)
                await asyncio.sleep(0.5)

    async def shut_down(self) -> None:
        for call in self.calls:
            try:
                await call.leave()
            except Exception:
                log.exception("leaving %s", call.room)
        try:
            write_json_atomic(os.path.join(self.args.out_dir, "fake-member-report.json"), self.report())
        except Exception:
            log.exception("writing the report")
        self.client.leave_room(self.args.brewery_jid)
        await asyncio.sleep(0.05)
        await self.client.stop()
        await self.control.close()

    def _published(self) -> None:
        self.stats_history.append({"t": self.clock.now(), "stats": dict(self.stats)})
        self.bus.emit("stats-published", stats=dict(self.stats))

    # -- control -----------------------------------------------------------------------------------
    async def handle_command(self, cmd: str, req: dict) -> dict:
        if cmd == "status":
            return {"report": self.report()}
        if cmd == "set-stats":
            stats = req.get("stats")
            if not isinstance(stats, dict):
                raise CommandError("'stats' must be an object of name: value (null removes)")
            for name, value in stats.items():
                if value is None:
                    self.stats.pop(name, None)
                else:
                    self.stats[name] = value
            self.client.send_room_presence(self.args.brewery_jid, [stanzas.build_stats(self.stats)])
            self._published()
            return {"stats": self.stats}
        if cmd == "set-answer":
            answer = req.get("answer")
            if answer not in ANSWERS:
                raise CommandError("'answer' must be one of %s" % ", ".join(ANSWERS))
            self.answer = {"answer": answer, "condition": req.get("condition") or self.args.error_condition,
                           "text": req.get("text")}
            return {"answer": self.answer}
        if cmd == "leave-call":
            room = req.get("room")
            left = []
            for call in self.calls:
                if call.left_t is None and (room is None or call.room == room):
                    await call.leave()
                    left.append(call.nick)
            return {"left": left}
        raise CommandError("unknown command %r" % cmd)

    def report(self) -> dict:
        return {"version": 1, "kind": "fake-brewery-member", "t": self.clock.now(), "pid": os.getpid(),
                "nick": self.args.nick, "jid": str(self.client.boundjid), "brewery": self.args.brewery_jid,
                "stats": self.stats, "stats_history": self.stats_history, "answer": self.answer,
                "dials": self.dials, "hangups": self.hangups, "calls": [c.to_json() for c in self.calls],
                "errors": self.errors}

    # -- XMPP --------------------------------------------------------------------------------------
    def on_disco(self, iq, query) -> None:
        reply_result(iq, stanzas.build_disco_info_result((stanzas.NS_DISCO_INFO, stanzas.FEATURE_JIGASI)))

    def on_dial(self, iq, el) -> None:
        frm = str(iq["from"])
        entry = {"t": self.clock.now(), "from": frm, "to": None, "src": None, "headers": [],
                 "allowed": None, "answer": None}
        self.dials.append(entry)
        try:
            dial = stanzas.parse_dial(el)
        except StanzaError as e:
            self._answered(iq, entry, "error", condition="bad-request", text=str(e))
            return
        entry.update(to=dial.to, src=dial.src, headers=[list(h) for h in dial.headers])
        allowed = not self.args.allowed_jid or iq["from"].bare.lower() == self.args.allowed_jid.lower()
        entry["allowed"] = allowed
        if not allowed:
            self._answered(iq, entry, "error", condition="not-allowed", text="dial from a sender not allowed")
            return
        room = dial.header("JvbRoomName")
        if not room:
            self._answered(iq, entry, "error", condition="bad-request", text="No JvbRoomName header found")
            return
        mode = self.answer
        if mode["answer"] == "timeout":
            self._answered(iq, entry, "timeout")
            return
        if mode["answer"] == "error":
            self._answered(iq, entry, "error", condition=mode["condition"], text=mode["text"])
            return
        if not self.args.join_room:
            self._answered(iq, entry, "result", uri="xmpp:%s/%s" % (room.lower(), random_endpoint_id()))
            return
        asyncio.ensure_future(self._join_and_answer(iq, entry, room.lower(), dial))

    async def _join_and_answer(self, iq, entry, room: str, dial: stanzas.Dial) -> None:
        call = Call(self, room, dial)
        self.calls.append(call)
        try:
            await call.join()
        except Exception as e:
            self.errors.append({"t": self.clock.now(), "where": "call", "message": str(e)})
            self._answered(iq, entry, "error", condition="internal-server-error", text="Fail to join muc!")
            return
        self._answered(iq, entry, "result", uri=call.uri)

    def _answered(self, iq, entry: dict, kind: str, uri: Optional[str] = None,
                  condition: Optional[str] = None, text: Optional[str] = None) -> None:
        if kind == "result":
            reply_result(iq, stanzas.build_ref(uri))
        elif kind == "error":
            reply_error(iq, condition, "cancel" if condition != "bad-request" else "modify", text)
        entry["answer"] = {"type": kind, "uri": uri, "condition": condition, "text": text}
        self.bus.emit("dial-received", **{k: v for k, v in entry.items() if k != "t"})


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("slixmpp",):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))

    async def run():
        return await FakeMember(args).run()

    return asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())
