"""A scripted stand-in for the gateway: joins a room like a SIP jigasi, accepts Jicofo's
session-initiate like jigasi does, and sends back the sum of everything it receives.

Signalling (jigasi + the Jitsi desktop Jingle stack): ack every Jingle IQ at once; take calls only
from the room's 'focus' occupant; answer with a transport-info (ICE ufrag/pwd + candidates) first,
then a session-accept with the audio content only (opus 111 + telephone-event 126, ssrc-audio-level,
its own <source> with cname/msid/mslabel/label, fingerprint setup=active, no ICE credentials).
Media: ICE controlling, DTLS client.
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import uuid
from typing import Optional

from . import stanzas
from .audio import MixSource, SilenceSource, frame_to_mono
from .bridge import OrtcMedia, patch_loopback
from .control import CommandError, ControlServer, EventBus
from .stanzas import StanzaError
from .util import Clock, random_endpoint_id, random_ssrc, write_json_atomic
from .xmpp import BaseClient, reply_error, reply_result

log = logging.getLogger("echo")

DISCO_FEATURES = (stanzas.FEATURE_AUDIO, stanzas.NS_JINGLE, stanzas.NS_RTP, stanzas.NS_ICE_UDP,
                  stanzas.NS_DTLS, stanzas.FEATURE_JIGASI, stanzas.FEATURE_DTMF)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="echo_occupant.py",
                                 description="Minimal jigasi-like occupant that echoes the conference audio.")
    ap.add_argument("--xmpp-host", default="127.0.0.1")
    ap.add_argument("--xmpp-port", type=int, default=5222)
    ap.add_argument("--domain", default="meet.jitsi")
    ap.add_argument("--room", required=True, help="bare room name; joins NAME@muc.<domain>")
    ap.add_argument("--nick", default=None, help="MUC nick (default: random 8 hex)")
    ap.add_argument("--display-name", default="echo")
    ap.add_argument("--silent", action="store_true", help="send digital silence instead of the echo")
    ap.add_argument("--no-disco", action="store_true", help="never answer disco#info (Jicofo times out)")
    ap.add_argument("--disco-error", action="store_true", help="answer disco#info with an error")
    ap.add_argument("--no-conference-request", action="store_true",
                    help="skip the <conference/> request to focus.<domain> before joining")
    ap.add_argument("--control-port", type=int, default=0)
    ap.add_argument("--ready-file", default=None)
    ap.add_argument("--out-dir", default="echo-out")
    ap.add_argument("--log-level", default="info")
    args = ap.parse_args(argv)
    if args.nick is not None:
        args.nick = args.nick.strip()
    if not args.nick:
        args.nick = random_endpoint_id()
    return args


class EchoSession:
    def __init__(self, sid: str, t: float):
        self.sid = sid
        self.state = "accepting"
        self.media: Optional[OrtcMedia] = None
        self.mix: Optional[MixSource] = None
        self.ssrc = random_ssrc()
        self.cname = uuid.uuid4().hex[:16]
        self.stream_id = str(uuid.uuid4())
        self.track_id = str(uuid.uuid4())
        self.offered_ssrcs: list = []
        self.decoded: dict = {}            # ssrc -> samples decoded
        self.rx_seconds_emitted = 0
        self.t = {"initiate_received": t, "accept_sent": None, "ice_connected": None,
                  "dtls_connected": None, "terminated": None}
        self.offer_contents: list = []
        self.bridge_session_id: Optional[str] = None
        self.termination: Optional[dict] = None
        self.errors: list = []
        self.answers: list = []
        self.tx_final = 0               # packets sent, kept once the media is closed


class EchoClient(BaseClient):
    def __init__(self, domain: str, echo: "EchoOccupant"):
        super().__init__(domain, "", "echo")
        self.echo = echo

    def on_muc_presence(self, p: stanzas.MucPresence) -> None:
        self.echo.on_presence(p)


class EchoOccupant:
    def __init__(self, args):
        self.args = args
        self.clock = Clock()
        self.bus = EventBus(self.clock)
        self.room = ("%s@muc.%s" % (args.room, args.domain)).lower() if "@" not in args.room else args.room.lower()
        self.focus_jid = "%s/focus" % self.room
        self.client = EchoClient(args.domain, self)
        self.sessions: dict[str, EchoSession] = {}
        self.current: Optional[EchoSession] = None
        self.control = ControlServer(self.bus, self.handle_command, lambda: self.quit_event.set())
        self.control_port: Optional[int] = None
        self.quit_event = asyncio.Event()
        self.conference_answer: Optional[dict] = None
        self.mute_iqs: list = []
        self.errors: list = []
        self.ready_t: Optional[float] = None
        c = self.client
        c.add_iq_handler("echo-jingle", stanzas.NS_JINGLE, "jingle", self.on_jingle, types=("set",))
        c.add_iq_handler("echo-disco", stanzas.NS_DISCO_INFO, "query", self.on_disco, types=("get",))
        c.add_iq_handler("echo-mute", stanzas.NS_MUTE_AUDIO, "mute", self.on_mute, types=("set",))

    # -- lifecycle ---------------------------------------------------------------------------------
    async def run(self) -> int:
        args = self.args
        os.makedirs(args.out_dir, exist_ok=True)
        self.control_port = await self.control.start(args.control_port)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.quit_event.set)
        try:
            await self.client.start(args.xmpp_host, args.xmpp_port)
            if not args.no_conference_request:
                # jigasi asks the focus for the conference first and ignores errors (1.5)
                kind, value = await self.client.send_iq("focus.%s" % args.domain,
                                                        stanzas.build_conference_request(self.room),
                                                        "set", 5.0)
                self.conference_answer = {"type": kind, "condition": value if kind == "error" else None}
            await self.client.join_room(self.room, args.nick, stanzas.build_jigasi_presence(args.display_name))
            self.client.send_room_presence(self.room, [stanzas.build_status("Initializing Call")])
        except Exception as e:
            log.error("start-up failed: %s", e)
            self.bus.emit("error", where="startup", message=str(e))
            await self.shut_down()
            return 1
        self.ready_t = self.clock.now()
        if args.ready_file:
            write_json_atomic(args.ready_file, {"control_port": self.control_port, "pid": os.getpid()})
        self.bus.emit("ready", control_port=self.control_port, pid=os.getpid(), room=self.room,
                      nick=args.nick, jid=str(self.client.boundjid))
        await self.quit_event.wait()
        await self.shut_down()
        return 0

    async def shut_down(self) -> None:
        for s in self.sessions.values():
            if s.state != "ended":
                s.termination = {"by": "exit", "reason": None, "text": None, "t": self.clock.now()}
                s.state = "ended"
                if s.media is not None:
                    s.tx_final = max(s.tx_final, s.media.packets_sent(s.ssrc))
                    await s.media.close()
        try:
            write_json_atomic(os.path.join(self.args.out_dir, "echo-report.json"), self.report())
        except Exception:
            log.exception("writing the report")
        self.client.leave_room(self.room)
        await asyncio.sleep(0.05)
        await self.client.stop()
        await self.control.close()

    async def handle_command(self, cmd: str, req: dict) -> dict:
        if cmd == "status":
            return {"report": self.report()}
        if cmd == "hangup":
            return await self.hangup(req)
        raise CommandError("unknown command %r" % cmd)

    async def hangup(self, req: dict) -> dict:
        """Ends the current session from our side (like jigasi when the SIP caller hangs up):
        session-terminate to the focus, optionally asking for a restart, optionally leaving."""
        s = self.current
        if s is None or s.state == "ended":
            raise CommandError("no active session")
        reason = req.get("reason") or "success"
        if reason not in stanzas.REASONS:
            raise CommandError("unknown reason %r" % reason)
        text = req.get("text")
        restart = bool(req.get("restart"))
        jingle = stanzas.build_jingle(stanzas.Jingle(
            "session-terminate", s.sid, reason=reason, reason_text=text,
            bridge_session=stanzas.BridgeSession(s.bridge_session_id, restart=True) if restart else None))
        await self.end(s, "echo", reason, text)
        kind, value = await self.client.send_iq(self.focus_jid, jingle, "set", 10.0)
        s.answers.append({"t": self.clock.now(), "to": "session-terminate", "type": kind})
        if req.get("leave"):
            self.client.leave_room(self.room)
        return {"sid": s.sid, "answer": {"type": kind, "condition": value if kind == "error" else None}}

    # -- XMPP --------------------------------------------------------------------------------------
    def on_presence(self, p: stanzas.MucPresence) -> None:
        if p.room == self.room and p.nick == "focus" and p.type == "unavailable":
            # jigasi: "Focus left! - stopping the call" (no one to send session-terminate to)
            if self.current is not None:
                asyncio.ensure_future(self.end(self.current, "focus-left", "gone", "Focus left"))

    def on_disco(self, iq, query) -> None:
        if self.args.no_disco:
            return      # swallow: the focus sees a timeout
        if self.args.disco_error:
            reply_error(iq, "service-unavailable", "cancel")
            return
        node = query.get("node") if query is not None else None
        reply_result(iq, stanzas.build_disco_info_result(DISCO_FEATURES, node=node))

    def on_mute(self, iq, el) -> None:
        frm = iq["from"]
        try:
            mute, _jid, actor = stanzas.parse_mute(el)
        except StanzaError:
            mute, actor = None, None
        entry = {"t": self.clock.now(), "from": str(frm), "mute": mute, "actor": actor}
        # jigasi: item-not-found unless it comes from the focus and carries a value
        if mute is None or frm.resource != "focus":
            entry["answer"] = "item-not-found"
            reply_error(iq, "item-not-found", "cancel")
        else:
            entry["answer"] = "result"
            reply_result(iq)
        self.mute_iqs.append(entry)
        self.bus.emit("mute-received", **{k: v for k, v in entry.items() if k != "t"})

    def on_jingle(self, iq, el) -> None:
        j = stanzas.parse_jingle(el)     # StanzaError -> error reply (add_iq_handler)
        frm = iq["from"]
        if j.action == "session-initiate":
            reply_result(iq)             # the stack acks first, then decides
            if frm.bare.lower() != self.room or frm.resource != "focus":
                self._refuse(str(frm), j.sid, "decline", "Only calls from focus allowed")
                return
            if self.current is not None and self.current.state != "ended":
                self._refuse(str(frm), j.sid, "busy", "Call completed elsewhere")
                return
            s = EchoSession(j.sid, self.clock.now())
            self.sessions[j.sid] = s
            self.current = s
            asyncio.ensure_future(self._accept(s, j))
            return
        s = self.sessions.get(j.sid)
        if s is None or s.state == "ended":
            reply_error(iq, "item-not-found", "cancel", "unknown session")
            return
        reply_result(iq)
        s.answers.append({"t": self.clock.now(), "action": j.action})
        if j.action == "session-terminate":
            asyncio.ensure_future(self.end(s, "focus", j.reason, j.reason_text))
        elif j.action in ("source-add", "addsource"):
            asyncio.ensure_future(self._add_sources(s, [x.ssrc for x in j.sources("audio")]))
        elif j.action in ("source-remove", "removesource"):
            asyncio.ensure_future(self._remove_sources(s, [x.ssrc for x in j.sources("audio")]))
        elif j.action == "transport-info" and s.media is not None:
            t = j.merged_transport()
            if t is not None:
                asyncio.ensure_future(s.media.add_remote_candidates(t.candidates))

    def _refuse(self, to: str, sid: str, reason: str, text: str) -> None:
        self.client.send_iq_nowait(to, stanzas.build_session_terminate(sid, reason, text))
        self.bus.emit("session-refused", sid=sid, **{"from": to, "reason": reason})

    # -- session -----------------------------------------------------------------------------------
    async def _accept(self, s: EchoSession, offer: stanzas.Jingle) -> None:
        s.offer_contents = [c.name for c in offer.contents]
        s.bridge_session_id = offer.bridge_session.id if offer.bridge_session else None
        audio = offer.content("audio")
        transport = offer.merged_transport()
        self.bus.emit("session-initiate-received", sid=s.sid, contents=s.offer_contents,
                      audio_ssrcs=[x.ssrc for x in offer.sources("audio")])
        if audio is None or audio.description is None or transport is None \
                or not (transport.ufrag and transport.pwd and transport.fingerprints):
            s.errors.append("offer without a usable audio content/transport")
            await self.end(s, "echo", "incompatible-parameters", "no audio content", send=True)
            return
        if not any(p.id == 111 and p.name.lower() == "opus" for p in audio.description.payload_types):
            s.errors.append("offer without opus/111")
            await self.end(s, "echo", "incompatible-parameters", "no opus", send=True)
            return
        try:
            s.media = OrtcMedia("echo %s" % s.sid, controlling=True, dtls_role="client",
                                on_state=lambda what, state, s=s: self._on_state(s, what, state))
            await s.media.gather()
        except Exception as e:
            s.errors.append("media setup failed: %s" % e)
            await self.end(s, "echo", "general-error", "media setup failed", send=True)
            return
        s.mix = MixSource()
        await s.media.add_sender(s.ssrc, SilenceSource() if self.args.silent else s.mix, cname=s.cname)
        await self._add_sources(s, [x.ssrc for x in offer.sources("audio")])
        local = s.media.local_transport("active")
        # 1) transport-info with ICE credentials and candidates (jigasi trickles before accepting)
        ti = stanzas.Transport(local.ufrag, local.pwd, candidates=local.candidates)
        self.client.send_iq_nowait(self.focus_jid, stanzas.build_jingle(stanzas.Jingle(
            "transport-info", s.sid, initiator=offer.initiator,
            contents=[stanzas.Content("audio", "initiator", transport=ti)])),
            on_answer=lambda kind, v, s=s: s.answers.append({"t": self.clock.now(), "to": "transport-info",
                                                             "type": kind}))
        # 2) session-accept: audio only, own source, fingerprint setup=active, no credentials
        own = stanzas.Source(s.ssrc, parameters=[
            stanzas.Parameter("cname", s.cname), stanzas.Parameter("msid", "%s %s" % (s.stream_id, s.track_id)),
            stanzas.Parameter("mslabel", s.stream_id), stanzas.Parameter("label", s.track_id)])
        desc = stanzas.Description("audio", [
            stanzas.PayloadType(111, "opus", 48000, 2, [stanzas.Parameter("minptime", "10"),
                                                        stanzas.Parameter("useinbandfec", "1")]),
            stanzas.PayloadType(126, "telephone-event", 8000)],
            [stanzas.HdrExt(1, stanzas.URI_AUDIO_LEVEL)], rtcp_mux=True, sources=[own])
        accept_transport = stanzas.Transport(rtcp_mux=True, fingerprints=local.fingerprints)
        accept = stanzas.Jingle("session-accept", s.sid, initiator=offer.initiator,
                                responder=str(self.client.boundjid),
                                contents=[stanzas.Content("audio", "initiator", "both", desc, accept_transport)])
        self.client.send_iq_nowait(self.focus_jid, stanzas.build_jingle(accept),
                                   on_answer=lambda kind, v, s=s: s.answers.append(
                                       {"t": self.clock.now(), "to": "session-accept", "type": kind}))
        s.t["accept_sent"] = self.clock.now()
        s.state = "active"
        await s.media.add_remote_candidates(transport.candidates)
        s.media.start(transport.ufrag, transport.pwd, transport.fingerprints)

    async def _add_sources(self, s: EchoSession, ssrcs: list) -> None:
        if s.media is None:
            return
        for ssrc in ssrcs:
            if ssrc in s.offered_ssrcs:
                continue
            s.offered_ssrcs.append(ssrc)
            s.mix.add_input(ssrc)
            await s.media.add_receiver(ssrc, s.ssrc, lambda x, frame, s=s: self._on_frame(s, x, frame))

    async def _remove_sources(self, s: EchoSession, ssrcs: list) -> None:
        for ssrc in ssrcs:
            if ssrc in s.offered_ssrcs:
                s.offered_ssrcs.remove(ssrc)
                s.mix.remove_input(ssrc)
                if s.media is not None:
                    await s.media.remove_receiver(ssrc)

    def _on_frame(self, s: EchoSession, ssrc, frame) -> None:
        mono = frame_to_mono(frame)
        s.mix.push(ssrc, mono)
        s.decoded[ssrc] = s.decoded.get(ssrc, 0) + mono.size
        secs = max(s.decoded.values()) // 48000
        while s.rx_seconds_emitted < secs:
            s.rx_seconds_emitted += 1
            self.bus.emit("rx-audio", sid=s.sid, seconds=s.rx_seconds_emitted,
                          packets=sum(st.packets for st in s.media.rx.values()))

    def _on_state(self, s: EchoSession, what: str, state: str) -> None:
        if state == "connected":
            s.t["%s_connected" % what] = self.clock.now()
            if what == "dtls":
                self.client.send_room_presence(self.room, [stanzas.build_status("Connected")])
            self.bus.emit("%s-connected" % what, sid=s.sid)
        elif state in ("failed", "timeout"):
            s.errors.append("%s %s" % (what, state))
            self.bus.emit("error", where=what, message="%s %s" % (what, state), sid=s.sid)

    async def end(self, s: EchoSession, by: str, reason, text, send: bool = False) -> None:
        if s.state == "ended":
            return
        s.state = "ended"
        s.t["terminated"] = self.clock.now()
        s.termination = {"by": by, "reason": reason, "text": text, "t": s.t["terminated"]}
        if send:
            self.client.send_iq_nowait(self.focus_jid, stanzas.build_session_terminate(s.sid, reason, text))
        if self.current is s:
            self.current = None
        self.bus.emit("session-terminated", sid=s.sid, by=by, reason=reason, text=text)
        if s.media is not None:
            s.tx_final = max(s.tx_final, s.media.packets_sent(s.ssrc))
            await s.media.close()

    def report(self) -> dict:
        out = []
        for s in self.sessions.values():
            rx = {}
            if s.media is not None:
                rx = {str(k): v.to_json() for k, v in s.media.rx.items()}
                s.tx_final = max(s.tx_final, s.media.packets_sent(s.ssrc))
            out.append({"sid": s.sid, "state": s.state, "ssrc": s.ssrc, "offer_contents": s.offer_contents,
                        "offered_ssrcs": s.offered_ssrcs, "t": s.t, "rx": rx,
                        "rx_seconds_decoded": {str(k): round(v / 48000, 3) for k, v in s.decoded.items()},
                        "tx_packets": s.tx_final, "answers": s.answers,
                        "termination": s.termination, "errors": s.errors})
        return {"version": 1, "kind": "echo-occupant", "t": self.clock.now(), "pid": os.getpid(),
                "room": self.room, "nick": self.args.nick, "jid": str(self.client.boundjid),
                "silent": self.args.silent, "ready_t": self.ready_t,
                "conference_request": self.conference_answer, "mute_iqs": self.mute_iqs,
                "sessions": out, "errors": self.errors}


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("slixmpp", "aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))
    patch_loopback()

    async def run():
        return await EchoOccupant(args).run()

    return asyncio.run(run())
