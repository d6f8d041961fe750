"""The focus' XMPP side: focus@auth.<domain> in the conference rooms, and the focus.<domain> component.

Conference logic lives in conference.py; this module only turns stanzas into calls on a handler and
sends what the handler asks for.
"""
from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET
from typing import Optional

import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from . import stanzas
from .stanzas import StanzaError
from .xmpp import BaseClient, disconnect_quietly, iq_child, reply_error, reply_result

log = logging.getLogger("emulator.focus")

# what Jicofo's client connection answers to disco#info (the parts a gateway might look at)
FOCUS_FEATURES = (stanzas.NS_DISCO_INFO, stanzas.NS_JINGLE, stanzas.NS_RTP, stanzas.NS_ICE_UDP,
                  stanzas.NS_DTLS, stanzas.FEATURE_AUDIO, stanzas.FEATURE_VIDEO)


class FocusClient(BaseClient):
    """focus@auth.<domain>/focus (Jicofo's client connection; resource = username by default)."""

    def __init__(self, jid: str, password: str, handler):
        super().__init__(jid, password, "focus")
        self.handler = handler
        self.add_iq_handler("focus-jingle", stanzas.NS_JINGLE, "jingle", handler.on_jingle, types=("set",))
        self.add_iq_handler("focus-mute", stanzas.NS_MUTE_AUDIO, "mute", handler.on_mute_request, types=("set",))
        self.add_iq_handler("focus-disco", stanzas.NS_DISCO_INFO, "query", self._on_disco, types=("get",))

    def on_muc_presence(self, p: stanzas.MucPresence) -> None:
        self.handler.on_presence(p)

    def _on_disco(self, iq, query) -> None:
        reply_result(iq, stanzas.build_disco_info_result(
            FOCUS_FEATURES, identities=(("client", "bot", "Jicofo emulator"),),
            node=query.get("node") if query is not None else None))

    async def disco_features(self, to: str, timeout: float) -> tuple[str, Optional[list]]:
        """disco#info of an occupant: ('result', features) | ('error', condition) | ('timeout', None)."""
        kind, value = await self.send_iq(to, stanzas.build_disco_info_query(), "get", timeout)
        if kind != "result":
            return kind, value
        query = iq_child(value)
        try:
            return "result", stanzas.parse_disco_features(query)
        except StanzaError as e:
            return "error", "malformed: %s" % e


class FocusComponent(slixmpp.ComponentXMPP):
    """focus.<domain>: answers the clients' <conference/> requests like Jicofo's ConferenceIqHandler."""

    NS = "jabber:component:accept"

    def __init__(self, jid: str, secret: str, host: str, port: int, handler):
        super().__init__(jid, secret, host, port)
        self.handler = handler
        self.ready: asyncio.Future = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", lambda _e: self.ready.done() or self.ready.set_result(True))
        self.add_event_handler("connection_failed",
                               lambda e: self.ready.done() or self.ready.set_exception(RuntimeError(str(e))))
        self.register_handler(Callback("focus-conference",
                                       MatchXPath("{%s}iq/{%s}conference" % (self.NS, stanzas.NS_FOCUS)),
                                       self._on_conference))
        self.register_handler(Callback("focus-component-disco",
                                       MatchXPath("{%s}iq/{%s}query" % (self.NS, stanzas.NS_DISCO_INFO)),
                                       self._on_disco))

    async def start(self, timeout: float = 10.0) -> None:
        self.connect()
        await asyncio.wait_for(asyncio.shield(self.ready), timeout)

    def _on_disco(self, iq) -> None:
        if iq["type"] != "get":
            return
        reply_result(iq, stanzas.build_disco_info_result(
            (stanzas.NS_DISCO_INFO, stanzas.NS_FOCUS), identities=(("component", "generic", "focus"),)))

    def _on_conference(self, iq) -> None:
        if iq["type"] != "set":
            return
        el: ET.Element = iq_child(iq)
        try:
            room, props = stanzas.parse_conference_request(el)
        except StanzaError as e:
            log.warning("conference request from %s rejected: %s", iq["from"], e)
            reply_error(iq, e.condition, e.error_type, str(e))
            return
        # Jicofo answers once the room is joined (FocusManager.conferenceRequest blocks on the join)
        asyncio.ensure_future(self._answer(iq, room.lower(), props))

    async def _answer(self, iq, room: str, props: dict) -> None:
        try:
            result = await self.handler.on_conference_request(room, props, str(iq["from"]))
            reply_result(iq, result)
        except StanzaError as e:
            reply_error(iq, e.condition, e.error_type, str(e))
        except Exception as e:
            log.exception("conference request for %s failed", room)
            reply_error(iq, "internal-server-error", "wait", str(e))

    async def stop(self) -> None:
        await disconnect_quietly(self)
