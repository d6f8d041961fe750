"""conference_emulator.py's process: CLI, start-up order, control commands, shutdown."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Optional

from . import report, stanzas
from .bridge import patch_loopback
from .brewery import Brewery, Rayo
from .conference import Conference
from .control import CommandError, ControlServer, EventBus
from .focus import FocusClient, FocusComponent
from .participants import parse_spec, spec_from_fields
from .util import Clock, write_json_atomic

log = logging.getLogger("emulator")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="conference_emulator.py",
                                 description="Jicofo + videobridge stand-in for gateway tests (loopback only).")
    ap.add_argument("--xmpp-host", default="127.0.0.1")
    ap.add_argument("--xmpp-port", type=int, default=5222)
    ap.add_argument("--domain", default="meet.jitsi")
    ap.add_argument("--focus-user", default="focus", help="logs in as <user>@auth.<domain>/<user>")
    ap.add_argument("--focus-password", default="focuspass")
    ap.add_argument("--component-port", type=int, default=None,
                    help="also connect as external component focus.<domain> on this port")
    ap.add_argument("--component-secret", default="focussecret")
    ap.add_argument("--room", action="append", default=[], help="bare room name (repeatable)")
    ap.add_argument("--participant", action="append", default=[],
                    help='"name=alice,tone=600[,level=-12][,endpoint=1a2b3c4d]" or "name=bob,wav=/path.wav"')
    ap.add_argument("--min-participants", type=int, default=2)
    ap.add_argument("--owner-style", choices=("endpoint", "jid"), default="endpoint")
    ap.add_argument("--initiator-style", choices=("real", "room"), default="real",
                    help="Jingle 'initiator': the focus' real JID (Jicofo's JingleSession) or room/focus")
    ap.add_argument("--data-content", choices=("offer", "omit"), default="offer",
                    help="offer the SCTP 'data' content when the features ask for it, or leave it out")
    ap.add_argument("--bridge-region", default="lab", help="region of <bridge-session>; '' omits it")
    ap.add_argument("--disco-timeout", type=float, default=5.0)
    ap.add_argument("--single-participant-timeout", type=float, default=20.0,
                    help="Jicofo's single-participant-timeout; 0 disables")
    ap.add_argument("--connect-timeout", type=float, default=15.0, help="ICE and DTLS timeouts per session")
    ap.add_argument("--iq-timeout", type=float, default=15.0)
    ap.add_argument("--brewery", default="jigasibrewery",
                    help="jigasi brewery room: NAME@internal-muc.<domain> (or a full room JID)")
    ap.add_argument("--no-brewery", action="store_true", help="do not join a jigasi brewery")
    ap.add_argument("--control-port", type=int, default=0)
    ap.add_argument("--ready-file", default=None)
    ap.add_argument("--out-dir", default="emulator-out")
    ap.add_argument("--log-level", default="info")
    args = ap.parse_args(argv)
    if args.min_participants < 1:
        ap.error("--min-participants must be >= 1")
    try:
        args.participant_specs = [parse_spec(p) for p in args.participant]
    except ValueError as e:
        ap.error(str(e))
    if args.no_brewery or not args.brewery.strip():
        args.brewery_jid = None
    elif "@" in args.brewery:
        args.brewery_jid = args.brewery.strip().lower()
    else:
        args.brewery_jid = ("%s@internal-muc.%s" % (args.brewery.strip(), args.domain)).lower()
    names = [p.name for p in args.participant_specs]
    if len(set(names)) != len(names):
        ap.error("participant names must be unique")
    return args


class EmulatorApp:
    def __init__(self, args):
        self.args = args
        self.clock = Clock()
        self.bus = EventBus(self.clock)
        self.conference = Conference(args, self.clock, self.bus)
        brewery = Brewery(args.brewery_jid, self.clock, self.bus) if args.brewery_jid else None
        self.rayo = Rayo(self.conference, brewery)
        self.conference.rayo = self.rayo
        self.focus: Optional[FocusClient] = None
        self.component: Optional[FocusComponent] = None
        self.component_jid = ("focus.%s" % args.domain) if args.component_port else None
        self.control = ControlServer(self.bus, self.handle_command, lambda: self.quit_event.set())
        self.control_port: Optional[int] = None
        self.ready_t: Optional[float] = None
        self.quit_event = asyncio.Event()

    async def run(self) -> int:
        args = self.args
        os.makedirs(args.out_dir, exist_ok=True)
        self.control_port = await self.control.start(args.control_port)
        log.info("control channel on 127.0.0.1:%d", self.control_port)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.quit_event.set)
        try:
            await self.start_up()
        except Exception as e:
            log.error("start-up failed: %s", e)
            self.bus.emit("error", where="startup", message=str(e))
            await self.shut_down()
            return 1
        await self.quit_event.wait()
        await self.shut_down()
        return 0

    async def start_up(self) -> None:
        args = self.args
        self.focus = FocusClient("%s@auth.%s/%s" % (args.focus_user, args.domain, args.focus_user),
                                 args.focus_password, self.conference)
        self.conference.focus = self.focus
        await self.focus.start(args.xmpp_host, args.xmpp_port)
        log.info("logged in as %s", self.focus.boundjid)
        if args.component_port:
            self.component = FocusComponent(self.component_jid, args.component_secret, args.xmpp_host,
                                            args.component_port, self.conference)
            await self.component.start()
            log.info("component %s connected", self.component_jid)
        await self.rayo.join_brewery()
        for name in args.room:
            await self.conference.ensure_room(name, "cli")
        await asyncio.gather(*(self.conference.add_participant(spec) for spec in args.participant_specs))
        self.ready_t = self.clock.now()
        if args.ready_file:
            write_json_atomic(args.ready_file, {"control_port": self.control_port, "pid": os.getpid()})
        self.bus.emit("ready", control_port=self.control_port, pid=os.getpid(),
                      rooms=list(self.conference.rooms), focus=str(self.focus.boundjid),
                      component=self.component_jid,
                      brewery=self.rayo.brewery.jid if self.rayo.brewery and self.rayo.brewery.joined_t is not None
                      else None,
                      participants={p.name: {"endpoint": p.endpoint, "ssrc": p.ssrc}
                                    for p in self.conference.participants.values()})

    async def shut_down(self) -> None:
        try:
            await self.conference.shutdown()
        except Exception:
            log.exception("conference shutdown")
        try:
            path, _ = report.write_report(self)
            log.info("report written to %s", path)
        except Exception:
            log.exception("writing the report")
        if self.focus is not None:
            for room in list(self.focus.rooms):
                self.focus.leave_room(room)
            await asyncio.sleep(0.05)
            await self.focus.stop()
        if self.component is not None:
            await self.component.stop()
        await self.control.close()

    # -- control commands --------------------------------------------------------------------------
    async def handle_command(self, cmd: str, req: dict) -> dict:
        conf = self.conference
        if cmd == "status":
            return {"report": report.build_report(self)}
        if cmd == "report":
            path, data = report.write_report(self)
            return {"path": os.path.abspath(path), "report": data}
        if cmd == "add-participant":
            fields = {k: req[k] for k in ("name", "tone", "wav", "level", "endpoint") if req.get(k) is not None}
            try:
                spec = spec_from_fields(fields)
            except (ValueError, TypeError) as e:
                raise CommandError(str(e)) from None
            room = req.get("room")
            if room is not None:
                if not isinstance(room, str) or conf.room_jid(room) not in conf.rooms:
                    raise CommandError("unknown room %r" % room)
            p = await conf.add_participant(spec, room)
            return {"participant": {"name": p.name, "endpoint": p.endpoint, "ssrc": p.ssrc,
                                    "source_name": p.source_name, "msid": p.msid, "rooms": p.rooms}}
        if cmd == "remove-participant":
            name = req.get("name")
            if not isinstance(name, str):
                raise CommandError("'name' is required")
            p = await conf.remove_participant(name, bool(req.get("source_remove", True)))
            return {"participant": {"name": p.name, "endpoint": p.endpoint, "ssrc": p.ssrc,
                                    "packets_sent": conf.participant_packets(p)}}
        if cmd == "terminate":
            s = self._session_for(req)
            reason = req.get("reason") or "success"
            if reason not in stanzas.REASONS:
                raise CommandError("unknown reason %r" % reason)
            await conf.terminate(s, reason, req.get("text"))
            return {"sid": s.sid}
        if cmd == "mute":
            occ = self._occupant_for(req)
            mute = req.get("mute")
            if not isinstance(mute, bool):
                raise CommandError("'mute' must be true or false")
            entry = await conf.mute(occ, mute, req.get("actor"))
            return {"answer": {"type": entry["type"], "condition": entry["condition"]}}
        if cmd == "kick":
            occ = self._occupant_for(req)
            entry = await conf.kick(occ, req.get("reason"))
            return {"answer": {"type": entry["type"], "condition": entry["condition"]}}
        if cmd == "destroy-room":
            name = req.get("room")
            if not isinstance(name, str) or conf.room_jid(name) not in conf.rooms:
                raise CommandError("unknown room %r" % name)
            entry = await conf.destroy_room(conf.rooms[conf.room_jid(name)], req.get("reason"))
            return {"answer": {"type": entry["type"], "condition": entry["condition"]}}
        if cmd == "invite":
            occ = self._occupant_for(req)
            if occ.emulated:
                raise CommandError("%s is an emulated participant" % occ.nick)
            if occ.session_sid and not conf.sessions[occ.session_sid].ended:
                raise CommandError("%s already has session %s" % (occ.nick, occ.session_sid))
            if occ.features is None:
                raise CommandError("features of %s not known yet" % occ.nick)
            occ.invited = True
            s = await conf.invite(conf.rooms[occ.room], occ)
            return {"sid": s.sid}
        if cmd == "dial":
            return await self.rayo.dial(req)
        if cmd == "hangup":
            occ = self._occupant_for(req)
            timeout = req.get("timeout")
            if timeout is not None and (not isinstance(timeout, (int, float)) or isinstance(timeout, bool)
                                        or timeout <= 0):
                raise CommandError("'timeout' must be a positive number of seconds")
            entry = await self.rayo.hangup(occ, req.get("via", "focus"), timeout)
            return {"answer": {"type": entry["type"], "condition": entry["condition"], "text": entry["text"]}}
        raise CommandError("unknown command %r" % cmd)

    def _occupant_for(self, req: dict):
        nick = req.get("occupant")
        if not isinstance(nick, str) or not nick:
            raise CommandError("'occupant' (the occupant's nick) is required")
        room = req.get("room")
        return self.conference.find_occupant(nick, room if isinstance(room, str) else None)

    def _session_for(self, req: dict):
        conf = self.conference
        sid = req.get("session")
        if sid is not None:
            s = conf.sessions.get(sid)
            if s is None:
                raise CommandError("no session %r" % sid)
        else:
            occ = self._occupant_for(req)
            if not occ.session_sid:
                raise CommandError("occupant %s has no session" % occ.nick)
            s = conf.sessions[occ.session_sid]
        if s.ended:
            raise CommandError("session %s has ended" % s.sid)
        return s


def setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # slixmpp and aiortc are chatty at info level
    for noisy in ("slixmpp", "aioice", "aiortc"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_level)
    patch_loopback()

    async def run():
        return await EmulatorApp(args).run()

    return asyncio.run(run())
