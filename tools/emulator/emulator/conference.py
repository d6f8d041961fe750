"""Jicofo's conference logic plus the bridge's per-session media, for the emulated rooms.

Who gets invited (JitsiMeetConferenceImpl): every occupant that is neither the focus nor one of our
emulated participants, once the room has >= min-participants non-focus occupants; the offer is
tailored to its disco#info features (default features on error/timeout). Each invited occupant gets
its own Jingle session with its own ICE/DTLS transport (OrtcMedia), carrying every emulated
participant's audio on that participant's SSRC.
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
import uuid
from dataclasses import dataclass, field
from typing import Optional

from . import stanzas
from .audio import WavRecorder
from .bridge import OrtcMedia
from .control import CommandError, EventBus
from .participants import EmulatedParticipant, ParticipantClient, ParticipantSpec
from .stanzas import StanzaError
from .util import Clock, random_ssrc
from .xmpp import reply_error, reply_result

log = logging.getLogger("emulator.conference")

FOCUS_NICK = "focus"


@dataclass
class Occupant:
    room: str
    nick: str
    real_jid: Optional[str]
    joined_t: float
    emulated: bool = False
    participant: Optional[str] = None
    left_t: Optional[float] = None
    display_name: Optional[str] = None
    presence_features: list = field(default_factory=list)
    jigasi_initiator: bool = False
    initiator_headers: dict = field(default_factory=dict)
    statuses: list = field(default_factory=list)
    audiomuted: Optional[bool] = None
    disco_features: Optional[list] = None
    features_source: Optional[str] = None     # 'disco' | 'default:timeout' | 'default:error:<cond>'
    features: Optional[list] = None           # what the offer was built from
    features_ready: Optional[asyncio.Future] = None
    invited: bool = False
    session_sid: Optional[str] = None

    @property
    def occupant_jid(self) -> str:
        return "%s/%s" % (self.room, self.nick)

    @property
    def call_direction(self) -> Optional[str]:
        """JigasiCallDirection of its <initiator> presence: 'in', 'out' or None."""
        return self.initiator_headers.get("JigasiCallDirection")

    @property
    def is_gateway(self) -> bool:
        return stanzas.FEATURE_JIGASI in self.presence_features or self.jigasi_initiator

    def to_json(self) -> dict:
        return {
            "room": self.room, "nick": self.nick, "jid": self.real_jid, "emulated": self.emulated,
            "participant": self.participant, "is_gateway": self.is_gateway,
            "jigasi_feature": stanzas.FEATURE_JIGASI in self.presence_features,
            "jigasi_initiator": self.jigasi_initiator, "initiator_headers": self.initiator_headers,
            "call_direction": self.call_direction,
            "display_name": self.display_name, "presence_features": self.presence_features,
            "disco_features": self.disco_features, "features_source": self.features_source,
            "features": self.features, "audiomuted": self.audiomuted, "statuses": self.statuses,
            "joined_t": self.joined_t, "left_t": self.left_t, "session": self.session_sid,
        }


@dataclass
class Room:
    jid: str
    via: str
    jvb_audio_ssrc: int
    jvb_video_ssrc: int
    joined_t: Optional[float] = None
    occupants: dict = field(default_factory=dict)      # nick -> Occupant (present ones)
    single_timer: Optional[asyncio.TimerHandle] = None

    @property
    def name(self) -> str:
        return self.jid.split("@", 1)[0]

    def members(self) -> list[Occupant]:
        return [o for o in self.occupants.values() if o.nick != FOCUS_NICK]


class Session:
    """One Jingle session with one occupant (Jicofo's JingleSession + the bridge's endpoint)."""

    def __init__(self, sid: str, room: Room, occupant: Occupant, t: float):
        self.sid = sid
        self.room = room
        self.occupant = occupant
        self.state = "pending"
        self.media: Optional[OrtcMedia] = None
        self.queue: asyncio.Queue = asyncio.Queue()
        self.worker: Optional[asyncio.Task] = None
        self.offer: dict = {}
        self.t = {"occupant_joined": occupant.joined_t, "initiate_sent": None, "initiate_answered": None,
                  "accept_received": None, "ice_connected": None, "dtls_connected": None,
                  "terminated": None}
        self.initiate_answer: Optional[str] = None
        self.initiate_error: Optional[str] = None
        # what the gateway told us about its side
        self.remote_ufrag: Optional[str] = None
        self.remote_pwd: Optional[str] = None
        self.remote_fingerprints: list = []
        self.remote_candidates: list = []
        self.setup: Optional[str] = None
        self.gateway_source: Optional[stanzas.Source] = None
        self.accept_info: dict = {}
        self.transport_infos = 0
        self.media_started = False
        self.offered = False               # set once the offer's participant list is fixed
        self.offered_ssrcs: set = set()
        # media
        self.senders: dict = {}            # participant name -> ssrc
        self.packets_sent_closed: dict = {}
        self.pending_source_changes: list = []   # queued until session-accept (Jicofo does the same)
        self.recorder: Optional[WavRecorder] = None
        self.recording_path: Optional[str] = None
        self.rx_seconds_emitted = 0
        self.ice_state = "new"
        self.dtls_state = "new"
        self.stanzas_received: list = []
        self.stanzas_sent: list = []
        self.termination: Optional[dict] = None
        self.errors: list = []

    @property
    def remote_jid(self) -> str:
        return self.occupant.occupant_jid

    @property
    def ended(self) -> bool:
        return self.state == "ended"


class Conference:
    def __init__(self, args, clock: Clock, bus: EventBus):
        self.args = args
        self.clock = clock
        self.bus = bus
        self.domain = args.domain
        self.muc_domain = "muc.%s" % args.domain
        self.focus_bare = "%s@auth.%s" % (args.focus_user, args.domain)
        self.focus_full = "%s/%s" % (self.focus_bare, args.focus_user)
        self.rooms: dict[str, Room] = {}
        self.participants: dict[str, EmulatedParticipant] = {}
        self.sessions: dict[str, Session] = {}
        self.focus = None          # FocusClient, set by the app
        self.rayo = None           # brewery.Rayo, set by the app
        self.conference_requests: list = []
        self.mutes: list = []
        self.mute_requests: list = []
        self.errors: list = []
        self.left_occupants: list = []
        self._room_locks: dict[str, asyncio.Lock] = {}
        self.closing = False

    # -- helpers -------------------------------------------------------------------------------------
    def room_jid(self, name: str) -> str:
        name = name.strip()
        if "@" in name:
            return name.lower()
        return ("%s@%s" % (name, self.muc_domain)).lower()

    def error(self, where: str, message: str, session: Optional[Session] = None, **extra) -> None:
        entry = {"t": self.clock.now(), "where": where, "message": message}
        entry.update(extra)
        (session.errors if session is not None else self.errors).append(entry)
        log.warning("%s: %s", where, message)
        self.bus.emit("error", where=where, message=message,
                      sid=session.sid if session else None, **extra)

    def _owner(self, room: Room, participant: EmulatedParticipant) -> str:
        if self.args.owner_style == "jid":
            return "%s/%s" % (room.jid, participant.endpoint)   # older Jicofo: occupant JID
        return participant.endpoint                             # current Jicofo: endpoint id

    def _jvb_sources(self, room: Room) -> tuple[stanzas.Source, stanzas.Source]:
        # the bridge's feedback sources, as colibri2 parseSources() turns them into Jingle
        audio = stanzas.Source(room.jvb_audio_ssrc, "jvb-a0", "jvb",
                               [stanzas.Parameter("msid", "mixedmslabel mixedlabelaudio0")])
        video = stanzas.Source(room.jvb_video_ssrc, "jvb-v0", "jvb",
                               [stanzas.Parameter("msid", "mixedmslabel mixedlabelvideo0")])
        return audio, video

    def room_participants(self, room: Room) -> list[EmulatedParticipant]:
        return [p for p in self.participants.values() if room.jid in p.rooms and p.removed_t is None]

    def find_occupant(self, nick: str, room: Optional[str] = None) -> Occupant:
        matches = []
        for r in self.rooms.values():
            if room is not None and r.jid != self.room_jid(room):
                continue
            o = r.occupants.get(nick)
            if o is not None:
                matches.append(o)
        if not matches:
            raise CommandError("no occupant %r%s" % (nick, " in %s" % room if room else ""))
        if len(matches) > 1:
            raise CommandError("occupant %r is in several rooms; give 'room'" % nick)
        return matches[0]

    # -- rooms -------------------------------------------------------------------------------------
    async def ensure_room(self, name: str, via: str) -> Room:
        jid = self.room_jid(name)
        lock = self._room_locks.setdefault(jid, asyncio.Lock())
        async with lock:
            room = self.rooms.get(jid)
            if room is not None and room.joined_t is not None:
                return room
            if room is None:
                room = Room(jid, via, random_ssrc(), random_ssrc())
                self.rooms[jid] = room
            await self.focus.join_room(jid, FOCUS_NICK)
            room.joined_t = self.clock.now()
            self.bus.emit("room-joined", room=jid, via=via)
            for p in list(self.participants.values()):
                # a participant still logging in joins every joined room itself afterwards
                if p.removed_t is None and jid not in p.rooms and p.joined_t is not None:
                    await self._join_participant(p, room)
            self.maybe_invite(room)
            return room

    async def on_conference_request(self, room: str, props: dict, frm: str):
        """focus.<domain> got <conference room=…/>: join the room like Jicofo, then answer."""
        entry = {"t": self.clock.now(), "from": frm, "room": room, "properties": props}
        self.conference_requests.append(entry)
        self.bus.emit("conference-request", room=room, **{"from": frm})
        await self.ensure_room(room, "component")
        entry["ready"] = True
        props_out = [("authentication", "false"), ("sipGatewayEnabled", "true"),
                     ("visitors-supported", "false")]
        return stanzas.build_conference_result(room, self.focus_bare, True, props_out)

    # -- participants ------------------------------------------------------------------------------
    async def add_participant(self, spec: ParticipantSpec, room: Optional[str] = None) -> EmulatedParticipant:
        if spec.name in self.participants and self.participants[spec.name].removed_t is None:
            raise CommandError("participant %r exists" % spec.name)
        taken_ep = {p.endpoint for p in self.participants.values() if p.removed_t is None}
        if spec.endpoint and spec.endpoint in taken_ep:
            raise CommandError("endpoint %s is taken" % spec.endpoint)
        try:
            p = EmulatedParticipant.create(spec, {x.ssrc for x in self.participants.values()})
        except (OSError, ValueError) as e:
            raise CommandError("participant %s: %s" % (spec.name, e)) from None
        while p.endpoint in taken_ep:
            p = EmulatedParticipant.create(spec, {x.ssrc for x in self.participants.values()})
        self.participants[spec.name] = p
        p.client = ParticipantClient(self.domain, spec.name)
        await p.client.start(self.args.xmpp_host, self.args.xmpp_port)
        if room:
            await self._join_participant(p, self.rooms[self.room_jid(room)])
        else:
            # loop: a room may get joined (component request) while we join the others
            while True:
                todo = [r for r in self.rooms.values() if r.joined_t is not None and r.jid not in p.rooms]
                if not todo:
                    break
                for r in todo:
                    await self._join_participant(p, r)
        p.joined_t = self.clock.now()
        return p

    async def _join_participant(self, p: EmulatedParticipant, room: Room) -> None:
        if room.jid in p.rooms:
            return
        p.rooms.append(room.jid)
        await p.client.join_room(room.jid, p.endpoint, p.presence_payload())
        self.bus.emit("participant-joined", room=room.jid, name=p.name, endpoint=p.endpoint, ssrc=p.ssrc)
        # start sending on every session of that room and tell the gateways (source-add)
        for s in list(self.sessions.values()):
            if s.room is room and s.offered and not s.ended and p.name not in s.senders:
                await self._add_sender(s, p)
                if p.ssrc not in s.offered_ssrcs:
                    self._source_change(s, "source-add", p)

    async def remove_participant(self, name: str, source_remove: bool = True) -> EmulatedParticipant:
        p = self.participants.get(name)
        if p is None or p.removed_t is not None:
            raise CommandError("no participant %r" % name)
        p.removed_t = self.clock.now()
        for s in list(self.sessions.values()):
            if p.name in s.senders:
                if source_remove and not s.ended:
                    self._source_change(s, "source-remove", p)
                await self._remove_sender(s, p)
        for room in list(p.rooms):
            p.client.leave_room(room)
        await asyncio.sleep(0.05)   # let the unavailable presences go out before the stream closes
        await p.client.stop()
        return p

    def participant_packets(self, p: EmulatedParticipant) -> int:
        n = p.packets_sent_closed
        for s in self.sessions.values():
            ssrc = s.senders.get(p.name)
            if ssrc is not None and s.media is not None:
                n += s.media.packets_sent(ssrc)
        return n

    # -- occupants (MUC presence) ----------------------------------------------------------------
    def on_presence(self, p: stanzas.MucPresence) -> None:
        if self.rayo is not None and self.rayo.on_presence(p):
            return
        room = self.rooms.get(p.room)
        if room is None or p.type == "error":
            return
        if p.type == "unavailable" and p.nick == FOCUS_NICK and p.destroyed:
            # Each occupant of a destroyed room gets only its own unavailable presence: the
            # focus learns from its own that everybody else is gone too.
            self.rooms.pop(p.room, None)
            self.bus.emit("room-destroyed", room=room.jid, reason=p.destroy_reason)
            for occ in list(room.occupants.values()):
                s = self.sessions.get(occ.session_sid) if occ.session_sid else None
                if s is not None and not s.ended:
                    asyncio.ensure_future(self.end_session(s, "destroyed", "gone", p.destroy_reason))
            return
        if p.type == "unavailable":
            occ = room.occupants.pop(p.nick, None)
            if occ is not None and p.nick != FOCUS_NICK:
                occ.left_t = self.clock.now()
                self.left_occupants.append(occ)
                self.bus.emit("occupant-left", room=room.jid, nick=p.nick, jid=occ.real_jid,
                              emulated=occ.emulated)
                s = self.sessions.get(occ.session_sid) if occ.session_sid else None
                if s is not None and not s.ended:
                    # Jicofo: no session-terminate to someone who left, just clean up
                    asyncio.ensure_future(self.end_session(s, "left", "gone", None))
                self._check_single_participant(room)
            return
        occ = room.occupants.get(p.nick)
        if occ is None:
            occ = Occupant(room.jid, p.nick, p.real_jid, self.clock.now())
            for part in self.participants.values():
                if part.removed_t is None and (p.real_jid is not None and p.real_jid == part.jid):
                    occ.emulated, occ.participant = True, part.name
            room.occupants[p.nick] = occ
            self._update_occupant(occ, p)
            if p.nick == FOCUS_NICK:
                return
            self.bus.emit("occupant-joined", room=room.jid, nick=p.nick, jid=p.real_jid,
                          is_gateway=occ.is_gateway, emulated=occ.emulated,
                          features=occ.presence_features, jigasi_initiator=occ.jigasi_initiator,
                          display_name=occ.display_name, initiator_headers=occ.initiator_headers,
                          call_direction=occ.call_direction)
            if not occ.emulated:
                occ.features_ready = asyncio.ensure_future(self._discover(occ))
                occ.features_ready.add_done_callback(lambda _f, r=room: self.maybe_invite(r))
            self.maybe_invite(room)
            self._check_single_participant(room)
        else:
            self._update_occupant(occ, p)

    def _update_occupant(self, occ: Occupant, p: stanzas.MucPresence) -> None:
        occ.real_jid = p.real_jid or occ.real_jid
        if p.display_name is not None:
            occ.display_name = p.display_name
        if p.has_features_element:
            occ.presence_features = p.features
        occ.jigasi_initiator = occ.jigasi_initiator or p.jigasi_initiator
        if p.initiator_headers:
            occ.initiator_headers = p.initiator_headers
        if p.audiomuted is not None:
            occ.audiomuted = p.audiomuted
        if p.status_text is not None and (not occ.statuses or occ.statuses[-1]["status"] != p.status_text):
            occ.statuses.append({"t": self.clock.now(), "status": p.status_text})
            if occ.nick != FOCUS_NICK and not occ.emulated:
                self.bus.emit("occupant-status", room=occ.room, nick=occ.nick, status=p.status_text)

    async def _discover(self, occ: Occupant) -> None:
        kind, value = await self.focus.disco_features(occ.occupant_jid, self.args.disco_timeout)
        if kind == "result":
            occ.disco_features = value
            occ.features = value
            occ.features_source = "disco"
        else:
            occ.features = list(stanzas.DEFAULT_FEATURES)
            occ.features_source = "default:timeout" if kind == "timeout" else "default:error:%s" % value
        self.bus.emit("features-discovered", room=occ.room, nick=occ.nick, features=occ.features,
                      source=occ.features_source)

    def maybe_invite(self, room: Room) -> None:
        if self.closing or room.joined_t is None:
            return
        members = room.members()
        if len(members) < self.args.min_participants:
            return
        for occ in members:
            if occ.emulated or occ.invited or occ.features is None:
                continue
            occ.invited = True
            asyncio.ensure_future(self.invite(room, occ))

    def _check_single_participant(self, room: Room) -> None:
        """Jicofo's SinglePersonTimeout: one member left alone with a session is terminated."""
        if room.single_timer is not None:
            room.single_timer.cancel()
            room.single_timer = None
        timeout = self.args.single_participant_timeout
        members = room.members()
        if timeout <= 0 or len(members) != 1:
            return
        alone = members[0]

        def fire():
            room.single_timer = None
            s = self.sessions.get(alone.session_sid) if alone.session_sid else None
            if s is not None and not s.ended and len(room.members()) == 1:
                asyncio.ensure_future(self.terminate(s, "expired", "Idle session timeout"))

        room.single_timer = asyncio.get_event_loop().call_later(timeout, fire)

    # -- invite (session-initiate) -----------------------------------------------------------------
    async def invite(self, room: Room, occ: Occupant) -> Session:
        sid = stanzas.new_sid()
        s = Session(sid, room, occ, self.clock.now())
        self.sessions[sid] = s
        occ.session_sid = sid
        s.worker = asyncio.ensure_future(self._worker(s))
        try:
            s.media = OrtcMedia("session %s" % sid, controlling=False, dtls_role="server",
                                on_state=lambda what, state, s=s: self._on_media_state(s, what, state),
                                connect_timeout=self.args.connect_timeout)
            await s.media.gather()
        except Exception as e:
            self.error("invite", "could not set up media: %s" % e, s)
            await self.end_session(s, "emulator", "general-error", "media setup failed", send=False)
            return s
        opts = stanzas.offer_options(occ.features)
        parts = self.room_participants(room)
        jvb_audio, jvb_video = self._jvb_sources(room)
        audio_sources = [p.jingle_source(self._owner(room, p)) for p in parts] + [jvb_audio]
        transport = s.media.local_transport("actpass")
        contents = stanzas.jicofo_offer_contents(opts, transport, audio_sources, [jvb_video],
                                                 include_data=self.args.data_content == "offer")
        initiator = self.focus_full if self.args.initiator_style == "real" else "%s/%s" % (room.jid, FOCUS_NICK)
        bridge_session_id = str(uuid.uuid4())
        jingle = stanzas.build_session_initiate(sid, initiator, contents, bridge_session_id,
                                                self.args.bridge_region)
        s.offered = True
        s.offered_ssrcs = {p.ssrc for p in parts}
        for p in parts:
            await self._add_sender(s, p)
        s.offer = {"contents": [c.name for c in contents], "initiator": initiator,
                   "bridge_session_id": bridge_session_id, "region": self.args.bridge_region or None,
                   "features": occ.features, "features_source": occ.features_source,
                   "options": vars(opts),
                   "sources": [{"ssrc": x.ssrc, "name": x.name, "owner": x.owner, "msid": x.msid,
                                "media": "audio"} for x in audio_sources]
                   + ([{"ssrc": jvb_video.ssrc, "name": jvb_video.name, "owner": "jvb",
                        "msid": jvb_video.msid, "media": "video"}] if opts.video else []),
                   "ufrag": transport.ufrag, "fingerprint": transport.fingerprints[0].value,
                   "candidates": [{"ip": c.ip, "port": c.port, "type": c.type, "protocol": c.protocol}
                                  for c in transport.candidates]}
        s.t["initiate_sent"] = self.clock.now()
        s.stanzas_sent.append({"t": s.t["initiate_sent"], "action": "session-initiate"})
        self.focus.send_iq_nowait(s.remote_jid, jingle, "set",
                                  lambda kind, value, s=s: self._on_initiate_answer(s, kind, value),
                                  timeout=self.args.iq_timeout)
        ssrcs = {p.name: p.ssrc for p in parts}
        ssrcs["jvb-a0"] = jvb_audio.ssrc
        if opts.video:
            ssrcs["jvb-v0"] = jvb_video.ssrc
        self.bus.emit("session-initiate-sent", sid=sid, room=room.jid, occupant=occ.nick,
                      jid=occ.real_jid, contents=s.offer["contents"], ssrcs=ssrcs,
                      features_source=occ.features_source)
        return s

    def _on_initiate_answer(self, s: Session, kind: str, value) -> None:
        s.t["initiate_answered"] = self.clock.now()
        s.initiate_answer = kind
        s.stanzas_received.append({"t": s.t["initiate_answered"], "action": "session-initiate",
                                   "type": kind if kind != "timeout" else "timeout"})
        if kind == "error":
            s.initiate_error = value
        self.bus.emit("session-initiate-answered", sid=s.sid, room=s.room.jid, occupant=s.occupant.nick,
                      type=kind, condition=value if kind == "error" else None)
        if kind == "error" and not s.ended:
            # ParticipantInviteRunnable -> onInviteFailed: terminate with general-error, send it
            asyncio.ensure_future(self.terminate(s, "general-error", "jingle session failed"))
        # a timeout counts as success in Jicofo: the session stays pending until session-accept

    # -- senders / sources -----------------------------------------------------------------------
    async def _add_sender(self, s: Session, p: EmulatedParticipant) -> None:
        if s.media is None or p.name in s.senders:
            return
        s.senders[p.name] = p.ssrc
        await s.media.add_sender(p.ssrc, p.new_source(), cname=p.endpoint)

    async def _remove_sender(self, s: Session, p: EmulatedParticipant) -> None:
        ssrc = s.senders.pop(p.name, None)
        if ssrc is None or s.media is None:
            return
        sent = await s.media.remove_sender(ssrc)
        s.packets_sent_closed[p.name] = s.packets_sent_closed.get(p.name, 0) + sent
        p.packets_sent_closed += sent

    def _source_change(self, s: Session, action: str, p: EmulatedParticipant) -> None:
        if s.state == "pending":
            s.pending_source_changes.append((action, p))   # flushed after session-accept
            return
        if s.ended:
            return
        jingle = stanzas.build_source_change(action, s.sid, [p.jingle_source(self._owner(s.room, p))])
        s.stanzas_sent.append({"t": self.clock.now(), "action": action, "ssrc": p.ssrc})

        def answered(kind, value, s=s, action=action):
            s.stanzas_received.append({"t": self.clock.now(), "action": action, "type": kind})

        self.focus.send_iq_nowait(s.remote_jid, jingle, "set", answered, timeout=self.args.iq_timeout)
        self.bus.emit("%s-sent" % action, sid=s.sid, room=s.room.jid, occupant=s.occupant.nick,
                      participant=p.name, ssrc=p.ssrc)

    # -- Jingle from the gateway ---------------------------------------------------------------------
    def on_jingle(self, iq, el) -> None:
        try:
            j = stanzas.parse_jingle(el)
        except StanzaError as e:
            sid = el.get("sid") if el is not None else None
            s = self.sessions.get(sid) if sid else None
            if s is not None:
                s.stanzas_received.append({"t": self.clock.now(), "action": el.get("action"),
                                           "type": "set", "rejected": e.condition})
            self.error("jingle", "malformed jingle from %s: %s" % (iq["from"], e), s)
            reply_error(iq, e.condition, e.error_type, str(e))
            return
        s = self.sessions.get(j.sid)
        if s is None or s.ended:
            # JingleIqRequestHandler: no session for that sid -> bad-request
            self.error("jingle", "%s for unknown or ended session %s from %s" % (j.action, j.sid, iq["from"]))
            reply_error(iq, "bad-request", "modify", "unknown session")
            return
        s.stanzas_received.append({"t": self.clock.now(), "action": j.action, "type": "set"})
        s.queue.put_nowait((iq, j))

    async def _worker(self, s: Session) -> None:
        """Processes a session's Jingle IQs in order (Jicofo's per-session queue), answering each."""
        while True:
            item = await s.queue.get()
            if item is None:            # wake-up from end_session
                if s.ended and s.queue.empty():
                    return
                continue
            iq, j = item
            try:
                error = await self._process(s, j)
            except Exception as e:
                log.exception("processing %s", j.action)
                error = ("internal-server-error", "wait", str(e))
                self.error("jingle", "%s processing failed: %s" % (j.action, e), s)
            if error is None:
                reply_result(iq)
            else:
                reply_error(iq, *error)
            if s.ended and s.queue.empty():
                return

    async def _process(self, s: Session, j: stanzas.Jingle):
        if j.action == "transport-info":
            t = j.merged_transport()
            if t is None:
                return ("bad-request", "modify", "missing transport")
            s.transport_infos += 1
            added = await self._merge_transport(s, t)
            self.bus.emit("transport-info-received", sid=s.sid, room=s.room.jid, occupant=s.occupant.nick,
                          candidates=len(t.candidates), new_candidates=added,
                          has_credentials=bool(t.ufrag and t.pwd), has_fingerprint=bool(t.fingerprints))
            await self._maybe_start_media(s)
            return None
        if j.action == "session-accept":
            return await self._on_accept(s, j)
        if j.action == "session-terminate":
            restart = bool(j.bridge_session and j.bridge_session.restart)
            await self.end_session(s, "gateway", j.reason, j.reason_text, send=False, restart=restart)
            return None
        if j.action in ("session-info", "transport-accept", "transport-reject", "source-add",
                        "source-remove", "addsource", "removesource"):
            if j.action in ("source-add", "addsource", "source-remove", "removesource"):
                s.accept_info.setdefault("source_changes", []).append(
                    {"t": self.clock.now(), "action": j.action,
                     "ssrcs": [x.ssrc for x in j.sources()]})
            return None
        return ("feature-not-implemented", "cancel", "Unsupported 'action'")

    async def _merge_transport(self, s: Session, t: stanzas.Transport) -> int:
        if t.ufrag and t.pwd:
            if s.remote_ufrag and (s.remote_ufrag, s.remote_pwd) != (t.ufrag, t.pwd):
                self.error("transport", "gateway changed its ICE credentials mid-session", s)
            s.remote_ufrag, s.remote_pwd = t.ufrag, t.pwd
        if t.fingerprints:
            s.remote_fingerprints = t.fingerprints
            s.setup = t.fingerprints[0].setup
        new = [c for c in t.candidates if c not in s.remote_candidates]
        s.remote_candidates.extend(new)
        added = 0
        if s.media is not None and new:
            added = await s.media.add_remote_candidates(new)
        return added

    async def _on_accept(self, s: Session, j: stanzas.Jingle):
        if s.state != "pending":
            return ("bad-request", "modify", "session already accepted")
        s.state = "active"
        s.t["accept_received"] = self.clock.now()
        t = j.merged_transport()
        if t is not None:
            await self._merge_transport(s, t)
        audio = j.content("audio") or next(
            (c for c in j.contents if c.description is not None and c.description.media == "audio"), None)
        src = None
        if audio is not None and audio.description is not None and audio.description.sources:
            src = audio.description.sources[0]
        s.gateway_source = src
        s.accept_info.update({
            "contents": [c.name for c in j.contents],
            "senders": {c.name: c.senders for c in j.contents},
            "payload_types": ([{"id": p.id, "name": p.name, "clockrate": p.clockrate, "channels": p.channels,
                                "parameters": {x.name: x.value for x in p.parameters}}
                               for p in audio.description.payload_types]
                              if audio is not None and audio.description is not None else []),
            "hdrexts": ([{"id": x.id, "uri": x.uri} for x in audio.description.hdrexts]
                        if audio is not None and audio.description is not None else []),
            "sources": [{"ssrc": x.ssrc, "name": x.name, "owner": x.owner,
                         "parameters": {p.name: p.value for p in x.parameters}} for x in j.sources()],
            "rtcp_mux": bool(audio and audio.description and audio.description.rtcp_mux),
            "transport_rtcp_mux": bool(t and t.rtcp_mux),
        })
        if audio is None:
            self.error("session-accept", "no audio content in session-accept", s)
        if src is None:
            self.error("session-accept", "no audio <source> in session-accept; recording whatever SSRC comes", s)
        if not s.remote_fingerprints:
            self.error("session-accept", "no DTLS fingerprint from the gateway", s)
        # the recording starts with the receiver
        self.recording_path(s)
        s.recorder = WavRecorder(s.recording_path)
        await s.media.add_receiver(src.ssrc if src else None, s.room.jvb_audio_ssrc,
                                   lambda ssrc, frame, s=s: self._on_frame(s, frame))
        self.bus.emit("session-accepted", sid=s.sid, room=s.room.jid, occupant=s.occupant.nick,
                      ssrc=src.ssrc if src else None, setup=s.setup, contents=s.accept_info["contents"],
                      has_credentials=bool(s.remote_ufrag), candidates=len(s.remote_candidates))
        await self._maybe_start_media(s)
        for action, p in s.pending_source_changes:
            if (action == "source-add") == (p.name in s.senders):
                self._source_change(s, action, p)
        s.pending_source_changes.clear()
        return None

    def recording_path(self, s: Session) -> str:
        if s.recording_path is None:
            safe = lambda x: re.sub(r"[^A-Za-z0-9._+-]", "_", x)  # noqa: E731
            base = "%s-%s-rx" % (safe(s.room.name), safe(s.occupant.nick))
            path = os.path.join(self.args.out_dir, base + ".wav")
            n = 2
            taken = {x.recording_path for x in self.sessions.values()}
            while path in taken:
                path = os.path.join(self.args.out_dir, "%s-%d.wav" % (base, n))
                n += 1
            s.recording_path = path
        return s.recording_path

    async def _maybe_start_media(self, s: Session) -> None:
        if s.media_started or s.state != "active" or s.media is None:
            return
        if not (s.remote_ufrag and s.remote_pwd and s.remote_fingerprints):
            return   # wait for the transport-info that carries them
        s.media_started = True
        # DTLS role from the answer: 'active' -> we are the server (planned), 'passive' -> client
        if s.setup == "passive":
            s.media.dtls._set_role("client")
        s.media.start(s.remote_ufrag, s.remote_pwd, s.remote_fingerprints)

    def _on_media_state(self, s: Session, what: str, state: str) -> None:
        if what == "ice":
            s.ice_state = state
            if state == "connected":
                s.t["ice_connected"] = self.clock.now()
                self.bus.emit("ice-connected", sid=s.sid, room=s.room.jid, occupant=s.occupant.nick)
            elif state in ("failed", "timeout"):
                self.error("ice", "ICE %s" % state, s)
        else:
            s.dtls_state = state
            if state == "connected":
                s.t["dtls_connected"] = self.clock.now()
                self.bus.emit("dtls-connected", sid=s.sid, room=s.room.jid, occupant=s.occupant.nick)
            elif state in ("failed", "timeout", "closed"):
                if not s.ended:
                    self.error("dtls", "DTLS %s" % state, s)

    def _on_frame(self, s: Session, frame) -> None:
        if s.recorder is None or s.recorder.closed:
            return
        s.recorder.write_frame(frame)
        secs = s.recorder.samples_decoded // 48000
        while s.rx_seconds_emitted < secs:
            s.rx_seconds_emitted += 1
            self.bus.emit("rx-audio", sid=s.sid, room=s.room.jid, occupant=s.occupant.nick,
                          seconds=s.rx_seconds_emitted, packets=self.rx_packets(s))

    def rx_packets(self, s: Session) -> int:
        return sum(st.packets for st in s.media.rx.values()) if s.media else 0

    # -- terminate / end -------------------------------------------------------------------------
    async def terminate(self, s: Session, reason: str = "success", text: Optional[str] = None) -> None:
        """Jicofo's session-terminate (sent without waiting for the answer), then local cleanup."""
        if s.ended:
            return
        try:
            jingle = stanzas.build_session_terminate(s.sid, reason, text)
        except ValueError as e:
            raise CommandError(str(e)) from None
        s.stanzas_sent.append({"t": self.clock.now(), "action": "session-terminate", "reason": reason})

        def answered(kind, value, s=s):
            s.stanzas_received.append({"t": self.clock.now(), "action": "session-terminate", "type": kind})

        self.focus.send_iq_nowait(s.remote_jid, jingle, "set", answered, timeout=self.args.iq_timeout)
        await self.end_session(s, "emulator", reason, text, send=False)

    async def end_session(self, s: Session, by: str, reason: Optional[str], text: Optional[str],
                          send: bool = False, restart: bool = False) -> None:
        if s.ended:
            return
        s.state = "ended"
        s.t["terminated"] = self.clock.now()
        s.termination = {"by": by, "reason": reason, "text": text, "t": s.t["terminated"],
                         "restart_requested": restart}
        if s.occupant.session_sid == s.sid:
            s.occupant.session_sid = None
        self.bus.emit("session-terminated", sid=s.sid, room=s.room.jid, occupant=s.occupant.nick,
                      by=by, reason=reason, text=text)
        await self.close_media(s)
        s.queue.put_nowait(None)   # the worker answers what is queued, then exits
        if restart and s.occupant.nick in s.room.occupants and not self.closing:
            # Participant.onSessionTerminate with restart=true: re-invite on a fresh session
            asyncio.ensure_future(self.invite(s.room, s.occupant))

    async def close_media(self, s: Session) -> None:
        if s.media is not None:
            for name, ssrc in list(s.senders.items()):
                sent = s.media.packets_sent(ssrc)
                s.packets_sent_closed[name] = s.packets_sent_closed.get(name, 0) + sent
                p = self.participants.get(name)
                if p is not None:
                    p.packets_sent_closed += sent
            s.senders.clear()
            try:
                await s.media.close()
            except Exception as e:
                self.error("media", "closing media: %s" % e, s)
        if s.recorder is not None:
            s.recorder.close()

    # -- mute --------------------------------------------------------------------------------------
    async def mute(self, occ: Occupant, mute: bool, actor: Optional[str] = None) -> dict:
        actor = actor or "%s/%s" % (occ.room, FOCUS_NICK)
        kind, value = await self.focus.send_iq(occ.occupant_jid, stanzas.build_mute(mute, actor=actor),
                                               "set", self.args.iq_timeout)
        entry = {"t": self.clock.now(), "room": occ.room, "occupant": occ.nick, "mute": mute,
                 "actor": actor, "type": kind, "condition": value if kind == "error" else None}
        self.mutes.append(entry)
        s = self.sessions.get(occ.session_sid) if occ.session_sid else None
        if s is not None:
            s.stanzas_received.append({"t": entry["t"], "action": "mute", "type": kind})
        self.bus.emit("iq-answered", what="mute", room=occ.room, occupant=occ.nick, mute=mute,
                      type=kind, condition=entry["condition"])
        return entry

    async def kick(self, occ: Occupant, reason: Optional[str] = None) -> dict:
        """The focus (an owner of every room) kicks an occupant, as a moderator's kick does."""
        kind, value = await self.focus.send_iq(occ.room, stanzas.build_kick(occ.nick, reason), "set",
                                               self.args.iq_timeout)
        entry = {"what": "kick", "room": occ.room, "occupant": occ.nick, "type": kind,
                 "condition": value if kind == "error" else None}
        self.bus.emit("iq-answered", **entry)
        return entry

    async def destroy_room(self, room: Room, reason: Optional[str] = None) -> dict:
        kind, value = await self.focus.send_iq(room.jid, stanzas.build_destroy(reason), "set",
                                               self.args.iq_timeout)
        entry = {"what": "destroy", "room": room.jid, "type": kind,
                 "condition": value if kind == "error" else None}
        self.bus.emit("iq-answered", **entry)
        return entry

    def on_mute_request(self, iq, el) -> None:
        """A gateway asks the focus to (un)mute itself (jigasi requestAudioMute): allowed."""
        mute, jid, actor = stanzas.parse_mute(el)
        entry = {"t": self.clock.now(), "from": str(iq["from"]), "jid": jid, "mute": mute}
        self.mute_requests.append(entry)
        reply_result(iq)
        self.bus.emit("mute-request-received", **{"from": str(iq["from"]), "jid": jid, "mute": mute})

    # -- shutdown ----------------------------------------------------------------------------------
    async def shutdown(self) -> None:
        self.closing = True
        for room in self.rooms.values():
            if room.single_timer is not None:
                room.single_timer.cancel()
        for s in list(self.sessions.values()):
            if not s.ended:
                s.state = "ended"
                s.t["terminated"] = self.clock.now()
                s.termination = {"by": "exit", "reason": None, "text": None, "t": self.clock.now(),
                                 "restart_requested": False}
                await self.close_media(s)
                if s.worker is not None:
                    s.worker.cancel()
        for p in self.participants.values():
            if p.client is not None and p.removed_t is None:
                for room in list(p.rooms):
                    p.client.leave_room(room)
        await asyncio.sleep(0.05)
        await asyncio.gather(*(p.client.stop() for p in self.participants.values()
                               if p.client is not None and p.removed_t is None), return_exceptions=True)
