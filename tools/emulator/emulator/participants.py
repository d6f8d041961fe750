"""Emulated web participants: one audio source each, and a real (anonymous) MUC occupant per room."""
from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass, field
from typing import Optional

from . import audio, stanzas
from .util import random_endpoint_id, random_ssrc
from .xmpp import BaseClient

log = logging.getLogger("emulator.participants")

ENDPOINT_RE = re.compile(r"^[0-9a-f]{8}$")


@dataclass
class ParticipantSpec:
    name: str
    tone: Optional[float] = None
    wav: Optional[str] = None
    level: float = -12.0
    endpoint: Optional[str] = None


def parse_spec(text: str) -> ParticipantSpec:
    """'name=alice,tone=600[,level=-12][,endpoint=1a2b3c4d]' or 'name=bob,wav=/path.wav'."""
    fields = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError("participant spec item %r is not key=value" % part)
        key = key.strip().lower()
        if key in fields:
            raise ValueError("participant spec repeats %r" % key)
        fields[key] = value.strip()
    return spec_from_fields(fields)


def spec_from_fields(fields: dict) -> ParticipantSpec:
    unknown = set(fields) - {"name", "tone", "wav", "level", "endpoint"}
    if unknown:
        raise ValueError("unknown participant field(s): %s" % ", ".join(sorted(unknown)))
    name = str(fields.get("name") or "").strip()
    if not name:
        raise ValueError("participant needs a name")
    tone = fields.get("tone")
    wav = fields.get("wav")
    if (tone in (None, "")) == (wav in (None, "")):
        raise ValueError("participant %s needs exactly one of tone= or wav=" % name)
    spec = ParticipantSpec(name)
    if tone not in (None, ""):
        spec.tone = float(tone)
        if not 0 < spec.tone < 24000:
            raise ValueError("tone must be between 0 and 24000 Hz")
    else:
        spec.wav = str(wav)
    if fields.get("level") not in (None, ""):
        spec.level = float(fields["level"])
        if spec.level > 0:
            raise ValueError("level is dBFS of the peak and must be <= 0")
    endpoint = fields.get("endpoint")
    if endpoint not in (None, ""):
        endpoint = str(endpoint).lower()
        if not ENDPOINT_RE.match(endpoint):
            raise ValueError("endpoint must be 8 lowercase hex characters")
        spec.endpoint = endpoint
    return spec


class ParticipantClient(BaseClient):
    """The participant's XMPP side: an anonymous login on the main domain, one occupant per room."""

    def __init__(self, domain: str, name: str):
        super().__init__(domain, "", "participant-%s" % name)


@dataclass
class EmulatedParticipant:
    spec: ParticipantSpec
    endpoint: str
    ssrc: int
    msid: str
    client: Optional[ParticipantClient] = None
    rooms: list = field(default_factory=list)
    joined_t: Optional[float] = None
    removed_t: Optional[float] = None
    packets_sent_closed: int = 0   # from senders already stopped
    _wav_samples: object = None

    @classmethod
    def create(cls, spec: ParticipantSpec, taken_ssrcs=()) -> "EmulatedParticipant":
        endpoint = spec.endpoint or random_endpoint_id()
        ssrc = random_ssrc()
        while ssrc in taken_ssrcs:
            ssrc = random_ssrc()
        p = cls(spec, endpoint, ssrc, "%s-audio-0 %s" % (endpoint, uuid.uuid4()))
        if spec.wav:
            p._wav_samples = audio.load_wav(spec.wav)  # fail early on a bad file
        return p

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def source_name(self) -> str:
        return "%s-a0" % self.endpoint   # Source.nameForIdAndMediaType

    def new_source(self):
        """A fresh audio source per session (each session plays from the start)."""
        if self.spec.tone is not None:
            return audio.ToneSource(self.spec.tone, self.spec.level)
        return audio.WavSource(self._wav_samples, self.spec.wav)

    def jingle_source(self, owner: str) -> stanzas.Source:
        return stanzas.Source(self.ssrc, self.source_name, owner, [stanzas.Parameter("msid", self.msid)])

    def presence_payload(self):
        return stanzas.build_participant_presence(self.name, self.source_name)

    @property
    def jid(self) -> Optional[str]:
        return str(self.client.boundjid) if self.client is not None else None
