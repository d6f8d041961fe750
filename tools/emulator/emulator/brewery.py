"""Jicofo's side of dial-out: the jigasi brewery (JigasiDetector) and Rayo (JigasiIqHandler).

* Brewery: the focus sits in <name>@internal-muc.<domain> as 'focus' and follows every other
  occupant's colibri <stats> presence (BaseBrewery): an occupant becomes an instance with its
  first <stats>; a presence without <stats> leaves the known stats alone; leaving removes it.
* dial: picks an instance like JigasiDetector.selectSipJigasi and sends it the web client's
  <dial/> (JvbRoomName, JvbRoomPassword, extra headers) through the brewery MUC, so it arrives
  from brewery@…/focus; on an error or timeout it tries up to two other instances, as
  JigasiIqHandler does. 'via participant:<name>' sends it from an emulated participant's own
  connection straight to the instance's real JID instead (a sender a gateway must refuse).
* hangup: <hangup xmlns='urn:xmpp:rayo:1'/> to a call's occupant JID in the conference room.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Optional

from . import stanzas
from .control import CommandError, EventBus
from .util import Clock
from .xmpp import error_condition, error_text, iq_child

log = logging.getLogger("emulator.brewery")

FOCUS_NICK = "focus"
DEFAULT_RETRIES = 2   # JigasiIqHandler.inviteJigasi(retryCount = 2)


@dataclass
class BrewInstance:
    brewery: str
    nick: str
    jid: Optional[str]                 # real JID (the brewery shows real JIDs to the focus)
    joined_t: float
    left_t: Optional[float] = None
    stats: Optional[dict] = None
    stats_seq: Optional[int] = None    # order of the first <stats>: Jicofo's instance list order
    history: list = field(default_factory=list)    # [{t, stats}]

    @property
    def occupant_jid(self) -> str:
        return "%s/%s" % (self.brewery, self.nick)

    def to_json(self) -> dict:
        return {"nick": self.nick, "jid": self.jid, "occupant_jid": self.occupant_jid,
                "joined_t": self.joined_t, "left_t": self.left_t, "present": self.left_t is None,
                "stats": self.stats, "history": self.history}


class Brewery:
    def __init__(self, jid: str, clock: Clock, bus: EventBus):
        self.jid = jid.lower()
        self.clock = clock
        self.bus = bus
        self.joined_t: Optional[float] = None
        self.present: dict[str, BrewInstance] = {}     # nick -> occupant now in the room
        self.everyone: list[BrewInstance] = []          # every occupant seen, in joining order
        self._seq = 0

    def on_presence(self, p: stanzas.MucPresence) -> None:
        if p.type == "error" or p.nick == FOCUS_NICK:
            return
        if p.type == "unavailable":
            inst = self.present.pop(p.nick, None)
            if inst is not None:
                inst.left_t = self.clock.now()
                self.bus.emit("brewery-occupant-left", room=self.jid, nick=inst.nick, jid=inst.jid,
                              stats=inst.stats)
            return
        inst = self.present.get(p.nick)
        if inst is None:
            inst = BrewInstance(self.jid, p.nick, p.real_jid, self.clock.now())
            self.present[p.nick] = inst
            self.everyone.append(inst)
        inst.jid = p.real_jid or inst.jid
        if p.stats is None or p.stats == inst.stats:
            return
        if inst.stats_seq is None:
            self._seq += 1
            inst.stats_seq = self._seq
        inst.stats = p.stats
        inst.history.append({"t": self.clock.now(), "stats": p.stats})
        self.bus.emit("brewery-occupant", room=self.jid, nick=inst.nick, jid=inst.jid, stats=inst.stats)

    def instances(self) -> list[tuple[str, dict]]:
        """Occupants with stats, in the order Jicofo keeps them (first <stats> first)."""
        live = [i for i in self.present.values() if i.stats is not None]
        live.sort(key=lambda i: i.stats_seq)
        return [(i.nick, i.stats) for i in live]

    def to_json(self) -> dict:
        return {"room": self.jid, "joined_t": self.joined_t,
                "instances": [i.to_json() for i in self.everyone]}


def _answer(kind: str, value) -> dict:
    """{type, uri, condition, text} of a dial's answer."""
    out = {"type": kind, "uri": None, "condition": None, "text": None}
    if kind == "result":
        out["uri"] = stanzas.parse_ref(iq_child(value))
    elif kind == "error":
        out["condition"] = error_condition(value)
        out["text"] = error_text(value)
    return out


class Rayo:
    """The dial and hangup commands (the focus' Rayo side)."""

    def __init__(self, conference, brewery: Optional[Brewery]):
        self.conf = conference
        self.brewery = brewery
        self.clock = conference.clock
        self.bus = conference.bus
        self.args = conference.args
        self.dials: list = []
        self.hangups: list = []

    # -- brewery -----------------------------------------------------------------------------------
    async def join_brewery(self) -> None:
        if self.brewery is None:
            return
        try:
            await self.conf.focus.join_room(self.brewery.jid, FOCUS_NICK)
        except Exception as e:
            self.conf.focus.rooms.pop(self.brewery.jid, None)
            self.conf.error("brewery", "joining %s failed: %s" % (self.brewery.jid, e))
            return
        self.brewery.joined_t = self.clock.now()
        self.bus.emit("brewery-joined", room=self.brewery.jid)

    def on_presence(self, p: stanzas.MucPresence) -> bool:
        """Takes the brewery's presences; False for any other room."""
        if self.brewery is None or p.room != self.brewery.jid:
            return False
        self.brewery.on_presence(p)
        return True

    # -- dial --------------------------------------------------------------------------------------
    def _select(self, exclude: list) -> Optional[str]:
        region = self.args.bridge_region or None
        return stanzas.select_jigasi(self.brewery.instances(), exclude, [region] if region else [])

    async def dial(self, req: dict) -> dict:
        conf = self.conf
        room, to = req.get("room"), req.get("to")
        if not isinstance(room, str) or not room.strip():
            raise CommandError("'room' is required")
        if not isinstance(to, str) or not to:
            raise CommandError("'to' (the number or URI to dial) is required")
        password = req.get("password")
        if password is not None and not isinstance(password, str):
            raise CommandError("'password' must be a string")
        src = req.get("from", stanzas.DIAL_FROM)
        if src is not None and not isinstance(src, str):
            raise CommandError("'from' must be a string or null")
        headers = req.get("headers") or []
        if not isinstance(headers, list) or not all(
                isinstance(h, list) and len(h) == 2 and all(isinstance(x, str) for x in h) for h in headers):
            raise CommandError("'headers' must be a list of [name, value] string pairs")
        exclude = req.get("exclude") or []
        if not isinstance(exclude, list) or not all(isinstance(x, str) for x in exclude):
            raise CommandError("'exclude' must be a list of brewery nicks")
        target = req.get("target", "least-loaded")
        if not isinstance(target, str) or not target:
            raise CommandError("'target' must be 'least-loaded' or a brewery nick")
        via = req.get("via", "focus")
        participant = None
        if via != "focus":
            if not isinstance(via, str) or not via.startswith("participant:"):
                raise CommandError("'via' must be 'focus' or 'participant:<name>'")
            name = via.split(":", 1)[1]
            participant = conf.participants.get(name)
            if participant is None or participant.removed_t is not None or participant.client is None:
                raise CommandError("no participant %r" % name)
        least_loaded = target == "least-loaded"
        retries = req.get("retries", DEFAULT_RETRIES if (least_loaded and participant is None) else 0)
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise CommandError("'retries' must be a non-negative integer")
        timeout = req.get("timeout", self.args.iq_timeout)
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
            raise CommandError("'timeout' must be a positive number of seconds")
        if self.brewery is None or self.brewery.joined_t is None:
            raise CommandError("the focus is not in a brewery (--no-brewery, or joining it failed)")
        if req.get("join", True):
            await conf.ensure_room(room, "dial")
        room_jid = conf.room_jid(room)

        if least_loaded:
            nick = self._select(exclude)
            if nick is None:
                raise CommandError("service-unavailable: no jigasi instance available (%d in the brewery,"
                                   " excluded: %s)" % (len(self.brewery.instances()), exclude or "none"))
        else:
            nick = target
            if nick not in self.brewery.present:
                raise CommandError("no brewery occupant %r" % nick)

        entry = {"dial_id": len(self.dials) + 1, "t": self.clock.now(), "room": room_jid, "to": to,
                 "from": src, "headers": None, "via": via, "requested_target": target,
                 "exclude": exclude, "retries": retries, "target": None, "sent_to": None,
                 "answer": None, "occupant": None, "attempts": [], "jicofo_answer": None,
                 "t_answered": None, "error": None}
        entry["headers"] = [[n, v] for n, v in self._headers(room_jid, password, headers)]
        first = self._destination(nick, participant)
        self.dials.append(entry)
        task = asyncio.ensure_future(self._run(entry, nick, participant, password, headers, timeout))
        if req.get("wait", True) is False:
            return {"dial_id": entry["dial_id"], "target": nick, "sent_to": first}
        await task
        if entry.get("error") and entry["answer"] is None:
            raise CommandError("dial %d failed: %s" % (entry["dial_id"], entry["error"]))
        return {k: entry[k] for k in ("dial_id", "room", "to", "via", "target", "sent_to", "answer",
                                      "occupant", "attempts", "jicofo_answer")}

    @staticmethod
    def _headers(room_jid: str, password: Optional[str], headers: list) -> list:
        out = [("JvbRoomName", room_jid)]
        if password:
            out.append(("JvbRoomPassword", password))
        return out + [(n, v) for n, v in headers]

    def _payload(self, entry, password, headers):
        return stanzas.build_dial(entry["to"], self._headers(entry["room"], password, headers), entry["from"])

    def _destination(self, nick: str, participant) -> str:
        if participant is None:
            return "%s/%s" % (self.brewery.jid, nick)
        inst = self.brewery.present.get(nick)
        if inst is None or not inst.jid:
            raise CommandError("the real JID of brewery occupant %r is not known" % nick)
        return inst.jid

    async def _run(self, entry: dict, nick: str, participant, password, headers, timeout) -> None:
        try:
            await self._attempts(entry, nick, participant, password, headers, timeout)
        except Exception as e:   # e.g. the stream went away: still answer the command
            log.exception("dial %s", entry["dial_id"])
            entry["error"] = "%s: %s" % (type(e).__name__, e)
            self.conf.error("dial", "dial %d failed: %s" % (entry["dial_id"], entry["error"]))
        if participant is not None:
            entry["jicofo_answer"] = None        # no Jicofo on that path
        entry["t_answered"] = self.clock.now()
        ref = stanzas.ref_occupant(entry["answer"]["uri"]) if entry["answer"] else None
        entry["occupant"] = ref[1] if ref and ref[0] == entry["room"] else None
        self.bus.emit("dial-answered", dial_id=entry["dial_id"], room=entry["room"], to=entry["to"],
                      via=entry["via"], target=entry["target"], sent_to=entry["sent_to"],
                      answer=entry["answer"], occupant=entry["occupant"], attempts=len(entry["attempts"]),
                      jicofo_answer=entry["jicofo_answer"])

    async def _attempts(self, entry: dict, nick: str, participant, password, headers, timeout) -> None:
        client = participant.client if participant is not None else self.conf.focus
        retries_left = entry["retries"]
        excluded = list(entry["exclude"])
        while True:
            try:
                dest = self._destination(nick, participant)
            except CommandError as e:
                entry["jicofo_answer"] = {"type": "error", "condition": "service-unavailable",
                                          "text": str(e)}
                break
            attempt = {"target": nick, "sent_to": dest, "t_sent": self.clock.now(), "answer": None,
                       "t_answered": None}
            entry["attempts"].append(attempt)
            entry["target"], entry["sent_to"] = nick, dest
            self.bus.emit("dial-sent", dial_id=entry["dial_id"], room=entry["room"], to=entry["to"],
                          via=entry["via"], target=nick, sent_to=dest, attempt=len(entry["attempts"]))
            kind, value = await client.request(dest, self._payload(entry, password, headers), "set", timeout)
            answer = _answer(kind, value)
            attempt["answer"], attempt["t_answered"] = answer, self.clock.now()
            entry["answer"] = answer
            if kind == "result":
                entry["jicofo_answer"] = {"type": "result", "uri": answer["uri"]}
                break
            if retries_left <= 0:
                entry["jicofo_answer"] = {"type": "error", "condition": "remote-server-timeout"
                                          if kind == "timeout" else "undefined-condition"}
                break
            # JigasiIqHandler: do not try the same instance again; no other one -> service-unavailable
            retries_left -= 1
            excluded.append(nick)
            nxt = self._select(excluded)
            if nxt is None:
                entry["jicofo_answer"] = {"type": "error", "condition": "service-unavailable"}
                break
            nick = nxt

    def dial_for_occupant(self, room: str, nick: str) -> Optional[int]:
        """The dial whose <ref uri> names this occupant (the last one)."""
        found = None
        for d in self.dials:
            if d["room"] == room and d["occupant"] == nick:
                found = d["dial_id"]
        return found

    # -- hangup ------------------------------------------------------------------------------------
    async def hangup(self, occ, via: str = "focus", timeout: Optional[float] = None) -> dict:
        client = self.conf.focus
        if via != "focus":
            if not isinstance(via, str) or not via.startswith("participant:"):
                raise CommandError("'via' must be 'focus' or 'participant:<name>'")
            p = self.conf.participants.get(via.split(":", 1)[1])
            if p is None or p.removed_t is not None or p.client is None:
                raise CommandError("no participant %r" % via.split(":", 1)[1])
            client = p.client
        kind, value = await client.request(occ.occupant_jid, stanzas.build_hangup(), "set",
                                           timeout or self.args.iq_timeout)
        ans = _answer(kind, value)
        entry = {"t": self.clock.now(), "what": "hangup", "room": occ.room, "occupant": occ.nick,
                 "via": via, "type": kind, "condition": ans["condition"], "text": ans["text"]}
        self.hangups.append(entry)
        self.bus.emit("iq-answered", **{k: v for k, v in entry.items() if k != "t"})
        return entry
