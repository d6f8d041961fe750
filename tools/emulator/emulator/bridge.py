"""aiortc ORTC media for one Jingle session: one bundled ICE + DTLS-SRTP transport, audio only.

Used by the emulator as the bridge (ICE controlled, DTLS server) and by the echo occupant as the
gateway stand-in (ICE controlling, DTLS client). The recipe and its gotchas come from
/work/shared/reference/str0m-aiortc-interop.md:
  1. aioice skips 127.0.0.1 -> patch_loopback() before gathering;
  2. iceServers=[] or aioice asks a public STUN server;
  3. ORTC derives the DTLS role from the ICE role -> force it with dtls._set_role();
  4. RTCRtpReceiver has no track in ORTC mode -> give it a RemoteStreamTrack;
  5. _set_rtcp_ssrc() or the receiver never sends RTCP;
  6. sender.send() only once DTLS is connected (before, its RTP task dies silently);
  7. list the audio-level header extension or aiortc does not write/parse it;
  8. list the remote SSRC in the receive encodings (routing is by SSRC, then payload type).
"""
from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from typing import Callable, Optional

import aioice.ice
from aiortc import (RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport,
                    RTCRtpReceiver, RTCRtpSender)
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcdtlstransport import RTCDtlsFingerprint, RTCDtlsParameters
from aiortc.rtcicetransport import RTCIceCandidate, RTCIceParameters
from aiortc.rtcrtpparameters import (RTCRtcpParameters, RTCRtpCodecParameters,
                                     RTCRtpDecodingParameters, RTCRtpEncodingParameters,
                                     RTCRtpHeaderExtensionParameters, RTCRtpReceiveParameters,
                                     RTCRtpSendParameters)
from aiortc.rtcrtpreceiver import RemoteStreamTrack

from . import stanzas
from .audio import PacedAudioTrack

log = logging.getLogger("emulator.bridge")

OPUS_PT = 111
AUDIO_LEVEL_EXT_ID = 1


def patch_loopback() -> None:
    """Lab rule: loopback only. aioice would skip 127.0.0.1 and gather other interfaces."""
    aioice.ice.get_host_addresses = lambda use_ipv4=True, use_ipv6=True: ["127.0.0.1"]


def opus_codec() -> RTCRtpCodecParameters:
    return RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2,
                                 payloadType=OPUS_PT, parameters={"minptime": 10, "useinbandfec": 1})


def audio_level_ext() -> RTCRtpHeaderExtensionParameters:
    return RTCRtpHeaderExtensionParameters(id=AUDIO_LEVEL_EXT_ID, uri=stanzas.URI_AUDIO_LEVEL)


@dataclass
class SsrcStats:
    packets: int = 0
    bytes: int = 0
    payload_types: dict = field(default_factory=dict)
    levels: int = 0
    level_min: Optional[int] = None
    level_max: Optional[int] = None
    vad: int = 0

    def to_json(self) -> dict:
        return {"packets": self.packets, "bytes": self.bytes,
                "payload_types": {str(k): v for k, v in sorted(self.payload_types.items())},
                "audio_levels": {"count": self.levels, "min": self.level_min, "max": self.level_max,
                                 "vad": self.vad}}


class OrtcMedia:
    """ICE + DTLS + RTP senders/receivers for one session, driven by Jingle signalling."""

    def __init__(self, name: str, controlling: bool, dtls_role: str,
                 on_state: Optional[Callable[[str, str], None]] = None,
                 connect_timeout: float = 15.0):
        self.name = name
        self.controlling = controlling
        self.dtls_role = dtls_role
        self._on_state = on_state or (lambda what, state: None)
        self._connect_timeout = connect_timeout
        self.gatherer: Optional[RTCIceGatherer] = None
        self.ice: Optional[RTCIceTransport] = None
        self.dtls: Optional[RTCDtlsTransport] = None
        self.receivers: dict[Optional[int], tuple[RTCRtpReceiver, asyncio.Task]] = {}
        self.senders: dict[int, tuple[RTCRtpSender, PacedAudioTrack, str, bool]] = {}
        self.rx: dict[int, SsrcStats] = {}
        self.ice_state = "new"
        self.dtls_state = "new"
        self._start_task: Optional[asyncio.Task] = None
        self._closed = False
        self._added_candidates: list[tuple] = []

    # -- setup -----------------------------------------------------------------------------------
    async def gather(self) -> None:
        self.gatherer = RTCIceGatherer(iceServers=[])
        await self.gatherer.gather()
        self.ice = RTCIceTransport(self.gatherer)
        self.ice._connection.ice_controlling = self.controlling
        self.ice._role_set = True
        self.dtls = RTCDtlsTransport(self.ice, [RTCCertificate.generateCertificate()])
        self.dtls._set_role(self.dtls_role)
        # count every RTP packet that reaches the transport (any SSRC/PT), before routing
        router = self.dtls._rtp_router
        route = router.route_rtp

        def counting_route(packet):
            self._count_rtp(packet)
            return route(packet)

        router.route_rtp = counting_route

    def local_transport(self, setup: str, with_candidates: bool = True,
                        with_credentials: bool = True) -> stanzas.Transport:
        params = self.gatherer.getLocalParameters()
        fp = next(f for f in self.dtls.getLocalParameters().fingerprints if f.algorithm == "sha-256")
        cands = []
        if with_candidates:
            for c in self.gatherer.getLocalCandidates():
                cands.append(stanzas.Candidate(
                    component=c.component, foundation=str(c.foundation), generation=0,
                    id=secrets.token_hex(12), ip=c.ip, network=0, port=c.port, priority=c.priority,
                    protocol=c.protocol.lower(), type=c.type, rel_addr=c.relatedAddress,
                    rel_port=c.relatedPort))
        return stanzas.Transport(
            params.usernameFragment if with_credentials else None,
            params.password if with_credentials else None,
            rtcp_mux=True, fingerprints=[stanzas.Fingerprint("sha-256", fp.value.upper(), setup)],
            candidates=cands)

    # -- connectivity ----------------------------------------------------------------------------
    async def add_remote_candidates(self, candidates: list[stanzas.Candidate]) -> int:
        """Adds candidates not seen before (trickle: before or during ICE). Returns how many."""
        added = 0
        for c in candidates:
            key = (c.ip, c.port, c.protocol, c.component)
            if key in self._added_candidates or c.protocol != "udp":
                continue
            self._added_candidates.append(key)
            try:
                await self.ice.addRemoteCandidate(RTCIceCandidate(
                    component=c.component, foundation=c.foundation or "1", ip=c.ip, port=c.port,
                    priority=c.priority, protocol=c.protocol, type=c.type,
                    relatedAddress=c.rel_addr, relatedPort=c.rel_port, tcpType=c.tcptype))
                added += 1
            except ValueError as e:  # after end-of-candidates, or invalid
                log.warning("%s: remote candidate %s:%s not added: %s", self.name, c.ip, c.port, e)
        return added

    def start(self, ufrag: str, pwd: str, fingerprints: list[stanzas.Fingerprint]) -> asyncio.Task:
        """Starts ICE then DTLS in the background; state changes go to on_state."""
        if self._start_task is None:
            self._start_task = asyncio.ensure_future(self._run_start(ufrag, pwd, fingerprints))
        return self._start_task

    async def _run_start(self, ufrag, pwd, fingerprints) -> None:
        self._set("ice", "checking")
        try:
            await asyncio.wait_for(self.ice.start(RTCIceParameters(usernameFragment=ufrag, password=pwd)),
                                   self._connect_timeout)
        except asyncio.TimeoutError:
            self._set("ice", "timeout")
            await self.ice.stop()
            return
        if self.ice.state != "completed":
            self._set("ice", self.ice.state if self.ice.state != "checking" else "failed")
            return
        self._set("ice", "connected")
        self._set("dtls", "connecting")
        params = RTCDtlsParameters(fingerprints=[RTCDtlsFingerprint(f.hash.lower(), f.value) for f in fingerprints])
        try:
            await asyncio.wait_for(self.dtls.start(params), self._connect_timeout)
        except asyncio.TimeoutError:
            self._set("dtls", "timeout")
            return
        if self.dtls.state != "connected":
            self._set("dtls", self.dtls.state)
            return
        for ssrc, (sender, track, cname, started) in list(self.senders.items()):
            if not started:
                await self._send(ssrc)
        self._set("dtls", "connected")

    def _set(self, what: str, state: str) -> None:
        if what == "ice":
            self.ice_state = state
        else:
            self.dtls_state = state
        if not self._closed:
            self._on_state(what, state)

    @property
    def connected(self) -> bool:
        return self.dtls_state == "connected"

    # -- receive -----------------------------------------------------------------------------------
    def _count_rtp(self, packet) -> None:
        st = self.rx.get(packet.ssrc)
        if st is None:
            st = self.rx[packet.ssrc] = SsrcStats()
        st.packets += 1
        st.bytes += len(packet.payload)
        st.payload_types[packet.payload_type] = st.payload_types.get(packet.payload_type, 0) + 1
        al = packet.extensions.audio_level
        if al is not None:
            vad, level = al
            st.levels += 1
            st.vad += 1 if vad else 0
            st.level_min = level if st.level_min is None else min(st.level_min, level)
            st.level_max = level if st.level_max is None else max(st.level_max, level)

    async def add_receiver(self, ssrc: Optional[int], rtcp_ssrc: int, on_frame: Callable) -> None:
        """Receives Opus on `ssrc` (None: whatever SSRC arrives with PT 111, if this is the only
        receiver) and calls on_frame(ssrc, AudioFrame) for every decoded frame."""
        if ssrc in self.receivers or self._closed:
            return
        receiver = RTCRtpReceiver("audio", self.dtls)
        receiver._track = RemoteStreamTrack(kind="audio")
        receiver._set_rtcp_ssrc(rtcp_ssrc)
        encodings = [RTCRtpDecodingParameters(ssrc=ssrc, payloadType=OPUS_PT)] if ssrc is not None else []
        await receiver.receive(RTCRtpReceiveParameters(codecs=[opus_codec()], headerExtensions=[audio_level_ext()],
                                                       encodings=encodings))
        task = asyncio.ensure_future(self._read_frames(ssrc, receiver, on_frame))
        self.receivers[ssrc] = (receiver, task)

    async def _read_frames(self, ssrc, receiver, on_frame) -> None:
        try:
            while True:
                frame = await receiver._track.recv()
                try:
                    on_frame(ssrc, frame)
                except Exception:
                    log.exception("%s: frame handler failed", self.name)
        except (MediaStreamError, asyncio.CancelledError):
            pass

    async def remove_receiver(self, ssrc: Optional[int]) -> None:
        entry = self.receivers.pop(ssrc, None)
        if entry:
            receiver, task = entry
            await receiver.stop()
            task.cancel()

    # -- send --------------------------------------------------------------------------------------
    async def add_sender(self, ssrc: int, source, cname: str) -> None:
        """Sends `source` as Opus on `ssrc`; starts at once if DTLS is up, else when it comes up."""
        if ssrc in self.senders or self._closed:
            return
        track = PacedAudioTrack(source)
        sender = RTCRtpSender(track, self.dtls)
        sender._ssrc = ssrc
        self.senders[ssrc] = (sender, track, cname, False)
        if self.connected:
            await self._send(ssrc)

    async def _send(self, ssrc: int) -> None:
        sender, track, cname, started = self.senders[ssrc]
        if started:
            return
        self.senders[ssrc] = (sender, track, cname, True)
        await sender.send(RTCRtpSendParameters(
            codecs=[opus_codec()], headerExtensions=[audio_level_ext()],
            encodings=[RTCRtpEncodingParameters(ssrc=ssrc, payloadType=OPUS_PT)],
            rtcp=RTCRtcpParameters(cname=cname, mux=True, ssrc=ssrc)))

    def packets_sent(self, ssrc: int) -> int:
        entry = self.senders.get(ssrc)
        if not entry:
            return 0
        return int(getattr(entry[0], "_RTCRtpSender__packet_count", 0))

    async def remove_sender(self, ssrc: int) -> int:
        entry = self.senders.pop(ssrc, None)
        if not entry:
            return 0
        sender, track, _, started = entry
        sent = int(getattr(sender, "_RTCRtpSender__packet_count", 0))
        if started:
            await sender.stop()
        track.stop()
        return sent

    # -- teardown ----------------------------------------------------------------------------------
    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for ssrc in list(self.senders):
            try:
                await self.remove_sender(ssrc)
            except Exception:
                log.exception("%s: stopping sender %s", self.name, ssrc)
        for ssrc in list(self.receivers):
            try:
                await self.remove_receiver(ssrc)
            except Exception:
                log.exception("%s: stopping receiver %s", self.name, ssrc)
        if self._start_task is not None and not self._start_task.done():
            self._start_task.cancel()
        try:
            if self.dtls is not None:
                await self.dtls.stop()
            if self.ice is not None:
                await self.ice.stop()
        except Exception:
            log.exception("%s: closing transports", self.name)
