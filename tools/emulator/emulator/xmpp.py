"""slixmpp plumbing shared by every XMPP client of the emulator and the echo occupant.

* plain TCP to the lab Prosody (no TLS), SCRAM allowed on it (slixmpp refuses by default);
* MUC join/leave with hand-built presences (we need exact presence payloads, so no xep_0045);
* MUC presence dispatch, IQ handlers that never let an exception escape, error replies.
"""
from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET
from typing import Callable, Iterable, Optional

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from . import stanzas
from .stanzas import StanzaError

log = logging.getLogger("emulator.xmpp")


def configure_plain(xmpp) -> None:
    """The lab Prosody has no TLS: no STARTTLS/direct TLS, and SCRAM/PLAIN on the plain stream."""
    xmpp.enable_direct_tls = False
    xmpp.enable_starttls = False
    xmpp.enable_plaintext = True


PLAIN_AUTH_CONFIG = {"feature_mechanisms": {"unencrypted_scram": True, "unencrypted_plain": True}}


def reply_result(iq, payload: Optional[ET.Element] = None) -> None:
    reply = iq.reply(clear=True)
    if payload is not None:
        reply.append(payload)
    reply.send()


def reply_error(iq, condition: str = "bad-request", error_type: str = "modify",
                text: Optional[str] = None) -> None:
    reply = iq.reply(clear=True)
    reply["error"]["type"] = error_type
    reply["error"]["condition"] = condition
    if text:
        reply["error"]["text"] = text
    reply.send()


def iq_child(iq) -> Optional[ET.Element]:
    """The payload element of an IQ (the first child that is not <error/>)."""
    for c in iq.xml:
        if stanzas.local_name(c) != "error":
            return c
    return None


def error_condition(iq) -> str:
    try:
        return iq["error"]["condition"] or "undefined-condition"
    except Exception:
        return "undefined-condition"


def error_text(iq) -> Optional[str]:
    try:
        return iq["error"]["text"] or None
    except Exception:
        return None


async def disconnect_quietly(xmpp) -> None:
    """Closes a client or component stream politely, and abruptly if that does not finish."""
    try:
        fut = xmpp.disconnect(wait=1.0)
        if fut is not None:
            await asyncio.wait_for(fut, 3.0)
    except Exception:
        xmpp.abort()


class BaseClient(slixmpp.ClientXMPP):
    """A slixmpp client that logs in over plain TCP and can sit in MUC rooms."""

    def __init__(self, jid: str, password: str, name: str):
        super().__init__(jid, password, plugin_config=PLAIN_AUTH_CONFIG)
        configure_plain(self)
        self.name = name
        self.session_started: asyncio.Future = asyncio.get_event_loop().create_future()
        self.rooms: dict[str, str] = {}  # room bare JID -> our nick
        self._join_waiters: dict[str, asyncio.Future] = {}
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("failed_all_auth", self._on_auth_failed)
        self.add_event_handler("connection_failed", self._on_connection_failed)
        self.register_handler(Callback("muc-presence", MatchXPath("{jabber:client}presence"),
                                       self._dispatch_presence))

    # -- connection --------------------------------------------------------------------------------
    async def start(self, host: str, port: int, timeout: float = 10.0) -> None:
        self.connect(host, port)
        await asyncio.wait_for(asyncio.shield(self.session_started), timeout)

    def _on_session_start(self, _event) -> None:
        if not self.session_started.done():
            self.session_started.set_result(True)

    def _on_auth_failed(self, _event) -> None:
        if not self.session_started.done():
            self.session_started.set_exception(RuntimeError("%s: authentication failed" % self.name))

    def _on_connection_failed(self, event) -> None:
        if not self.session_started.done():
            self.session_started.set_exception(RuntimeError("%s: connection failed: %s" % (self.name, event)))

    async def stop(self) -> None:
        await disconnect_quietly(self)

    # -- MUC ---------------------------------------------------------------------------------------
    async def join_room(self, room: str, nick: str, extra: Iterable[ET.Element] = (),
                        timeout: float = 10.0, password: Optional[str] = None) -> None:
        """Joins room/nick with the given presence payload; returns once our self-presence arrives."""
        room = room.lower()
        fut = asyncio.get_event_loop().create_future()
        self._join_waiters[room] = fut
        self.rooms[room] = nick
        pres = self.make_presence(pto="%s/%s" % (room, nick))
        pres.append(stanzas.build_muc_x(password))
        for el in extra:
            pres.append(el)
        pres.send()
        try:
            await asyncio.wait_for(fut, timeout)
        finally:
            self._join_waiters.pop(room, None)

    def send_room_presence(self, room: str, extra: Iterable[ET.Element] = ()) -> None:
        """A presence update to a room we are in (e.g. a new <status/>)."""
        nick = self.rooms.get(room.lower())
        if nick is None:
            return
        pres = self.make_presence(pto="%s/%s" % (room.lower(), nick))
        for el in extra:
            pres.append(el)
        pres.send()

    def leave_room(self, room: str) -> None:
        nick = self.rooms.pop(room.lower(), None)
        if nick is not None:
            self.make_presence(pto="%s/%s" % (room.lower(), nick), ptype="unavailable").send()

    def _dispatch_presence(self, pres) -> None:
        frm = pres["from"]
        if not frm.resource or frm.bare.lower() not in self.rooms and frm.bare.lower() not in self._join_waiters:
            return
        try:
            p = stanzas.parse_muc_presence(pres.xml)
        except StanzaError as e:
            log.warning("%s: ignoring malformed MUC presence: %s", self.name, e)
            return
        fut = self._join_waiters.get(p.room)
        if fut is not None and not fut.done():
            if p.type == "error":
                fut.set_exception(RuntimeError("join %s failed: %s" % (p.room, p.error_condition)))
                return
            if p.is_self or p.nick == self.rooms.get(p.room):
                fut.set_result(p)
        try:
            self.on_muc_presence(p)
        except Exception:
            log.exception("%s: presence handler failed", self.name)

    def on_muc_presence(self, p: stanzas.MucPresence) -> None:
        """Override to follow room occupants."""

    # -- IQs ---------------------------------------------------------------------------------------
    def add_iq_handler(self, name: str, ns: str, local: str, handler: Callable, types=("get", "set"),
                       stream_ns: str = "jabber:client") -> None:
        """Calls handler(iq, payload) for IQs of `types` carrying {ns}local; a handler exception
        becomes an internal-server-error reply, a StanzaError its own condition."""

        def on_iq(iq):
            if iq["type"] not in types:
                return
            payload = iq_child(iq)
            try:
                handler(iq, payload)
            except StanzaError as e:
                log.warning("%s: %s IQ from %s rejected: %s", self.name, local, iq["from"], e)
                reply_error(iq, e.condition, e.error_type, str(e))
            except Exception as e:
                log.exception("%s: %s IQ handler failed", self.name, local)
                reply_error(iq, "internal-server-error", "wait", str(e))

        self.register_handler(Callback(name, MatchXPath("{%s}iq/{%s}%s" % (stream_ns, ns, local)), on_iq))

    async def send_iq(self, to: str, payload: ET.Element, itype: str = "set",
                      timeout: float = 10.0) -> tuple[str, object]:
        """Sends an IQ and waits: ('result', iq) | ('error', condition) | ('timeout', None)."""
        iq = self.make_iq(ito=to, itype=itype)
        iq.append(payload)
        try:
            res = await iq.send(timeout=timeout)
            return "result", res
        except IqError as e:
            return "error", error_condition(e.iq)
        except IqTimeout:
            return "timeout", None

    async def request(self, to: str, payload: ET.Element, itype: str = "set",
                      timeout: float = 10.0) -> tuple[str, object]:
        """Like send_iq, but an error answer gives ('error', the error IQ) so its text can be read."""
        iq = self.make_iq(ito=to, itype=itype)
        iq.append(payload)
        try:
            return "result", await iq.send(timeout=timeout)
        except IqError as e:
            return "error", e.iq
        except IqTimeout:
            return "timeout", None

    def send_iq_nowait(self, to: str, payload: ET.Element, itype: str = "set",
                       on_answer: Optional[Callable[[str, object], None]] = None,
                       timeout: float = 15.0) -> asyncio.Task:
        async def run():
            kind, value = await self.send_iq(to, payload, itype, timeout)
            if on_answer is not None:
                try:
                    on_answer(kind, value)
                except Exception:
                    log.exception("%s: IQ answer handler failed", self.name)
            return kind, value

        return asyncio.ensure_future(run())
