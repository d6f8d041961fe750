"""TCP control channel (127.0.0.1, newline-delimited JSON both ways) and the event bus.

Requests:  {"id": <any>, "cmd": "<name>", ...}   -> exactly one {"id": <same>, "ok": true, ...}
                                                     or {"id": <same>, "ok": false, "error": "..."}
Malformed JSON or a non-object line              -> {"id": null, "ok": false, "error": "..."}
Events (to every connected client, any time):     {"event": "<name>", "t": <s since start>, "seq": n, ...}
"""
from __future__ import annotations

import asyncio
import json
import logging
from typing import Awaitable, Callable, Optional

from .util import Clock

log = logging.getLogger("emulator.control")


class CommandError(Exception):
    """A command failed in an expected way: becomes {"ok": false, "error": message}."""


class EventBus:
    """Numbered events with a full history (a client that connects late can catch up with the
    'events' command) fanned out to every subscriber queue."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self.history: list[dict] = []
        self._subscribers: set[asyncio.Queue] = set()

    def emit(self, event: str, **fields) -> dict:
        ev = {"event": event, "t": self.clock.now(), "seq": len(self.history) + 1}
        ev.update(fields)
        self.history.append(ev)
        log.info("event %s", json.dumps(ev, default=str))
        for q in list(self._subscribers):
            q.put_nowait(ev)
        return ev

    def subscribe(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue()
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        self._subscribers.discard(q)

    def since(self, seq: int = 0, names: Optional[list] = None) -> list[dict]:
        return [e for e in self.history if e["seq"] > seq and (not names or e["event"] in names)]


Handler = Callable[[str, dict], Awaitable[dict]]


class ControlServer:
    """Serves the control channel. `events` (the event history) and `quit` (calls `on_quit`) are
    answered here for every program; `handler(cmd, request)` answers the rest with the extra
    response fields."""

    def __init__(self, bus: EventBus, handler: Handler, on_quit: Callable[[], None]):
        self.bus = bus
        self.handler = handler
        self.on_quit = on_quit
        self.server: Optional[asyncio.base_events.Server] = None
        self.port: Optional[int] = None
        self._clients: set[asyncio.Task] = set()

    async def start(self, port: int = 0) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", port, limit=1 << 20)
        self.port = self.server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for t in list(self._clients):
            t.cancel()
        for t in list(self._clients):
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._clients.add(task)
        out: asyncio.Queue = self.bus.subscribe()
        pump = asyncio.ensure_future(self._pump(out, writer))
        try:
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    out.put_nowait({"id": None, "ok": False, "error": "line too long"})
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                out.put_nowait(await self._handle_line(line))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.bus.unsubscribe(out)
            # let the pump flush what is queued (e.g. the answer to 'quit'), then close
            out.put_nowait(None)
            try:
                await asyncio.wait_for(pump, 2.0)
            except (asyncio.TimeoutError, asyncio.CancelledError, Exception):
                pump.cancel()
            try:
                writer.close()
            except Exception:
                pass
            self._clients.discard(task)

    async def _pump(self, out: asyncio.Queue, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                msg = await out.get()
                if msg is None:
                    break
                writer.write((json.dumps(msg, default=str) + "\n").encode())
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass

    async def _handle_line(self, line: bytes) -> dict:
        try:
            req = json.loads(line)
        except (ValueError, UnicodeDecodeError) as e:
            return {"id": None, "ok": False, "error": "malformed JSON: %s" % e}
        if not isinstance(req, dict):
            return {"id": None, "ok": False, "error": "a request must be a JSON object"}
        rid = req.get("id")
        cmd = req.get("cmd")
        if not isinstance(cmd, str) or not cmd:
            return {"id": rid, "ok": False, "error": "missing 'cmd'"}
        try:
            extra = await self._common(cmd, req) if cmd in ("events", "quit") else await self.handler(cmd, req)
        except CommandError as e:
            return {"id": rid, "ok": False, "error": str(e)}
        except Exception as e:  # a bug must not kill the channel
            log.exception("command %s failed", cmd)
            return {"id": rid, "ok": False, "error": "internal error: %s: %s" % (type(e).__name__, e)}
        resp = {"id": rid, "ok": True}
        resp.update(extra or {})
        return resp

    async def _common(self, cmd: str, req: dict) -> dict:
        if cmd == "events":
            since = req.get("since", 0)
            if not isinstance(since, int):
                raise CommandError("'since' must be an integer")
            return {"events": self.bus.since(since, req.get("names"))}
        # quit: answer first, then let the program wind down
        asyncio.get_running_loop().call_soon(self.on_quit)
        return {}
