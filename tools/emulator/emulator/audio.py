"""Audio sources (tone, WAV, silence, mix), a real-time paced aiortc track, and a WAV recorder.

Everything runs at 48 kHz mono int16 in 20 ms frames (960 samples), Opus' native rate, so aiortc's
encoder does no resampling of ours.
"""
from __future__ import annotations

import asyncio
import fractions
import math
import time
import wave
from typing import Optional

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

RATE = 48000
FRAME = 960  # 20 ms
TIME_BASE = fractions.Fraction(1, RATE)


def dbfs_to_amplitude(level_dbfs: float) -> float:
    return 32767.0 * (10.0 ** (level_dbfs / 20.0))


class ToneSource:
    """A sine at `freq` Hz whose peak is `level_dbfs` dBFS; phase-continuous across frames."""

    def __init__(self, freq: float, level_dbfs: float = -12.0):
        if not 0 < freq < RATE / 2:
            raise ValueError("tone frequency must be between 0 and 24000 Hz")
        self.freq = freq
        self.level_dbfs = level_dbfs
        self._amp = dbfs_to_amplitude(level_dbfs)
        self._n = 0

    def read(self, n: int = FRAME) -> np.ndarray:
        t = (np.arange(self._n, self._n + n, dtype=np.float64)) / RATE
        self._n += n
        # keep the index bounded without a phase jump (whole periods only when freq*k is integral)
        return np.round(self._amp * np.sin(2 * math.pi * self.freq * t)).astype(np.int16)


def load_wav(path: str) -> np.ndarray:
    """Decode any audio file PyAV can read into 48 kHz mono int16."""
    import av
    from av.audio.resampler import AudioResampler

    chunks = []
    with av.open(path) as container:
        stream = next((s for s in container.streams if s.type == "audio"), None)
        if stream is None:
            raise ValueError("%s has no audio stream" % path)
        resampler = AudioResampler(format="s16", layout="mono", rate=RATE)
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    if not chunks:
        raise ValueError("%s decodes to no audio" % path)
    samples = np.concatenate(chunks).astype(np.int16)
    if samples.size == 0:
        raise ValueError("%s decodes to no audio" % path)
    return samples


class WavSource:
    """Plays pre-decoded samples in a loop."""

    def __init__(self, samples: np.ndarray, path: str = ""):
        self.samples = samples
        self.path = path
        self._pos = 0

    def read(self, n: int = FRAME) -> np.ndarray:
        out = np.empty(n, dtype=np.int16)
        filled = 0
        while filled < n:
            take = min(n - filled, self.samples.size - self._pos)
            out[filled:filled + take] = self.samples[self._pos:self._pos + take]
            filled += take
            self._pos = (self._pos + take) % self.samples.size
        return out


class SilenceSource:
    def read(self, n: int = FRAME) -> np.ndarray:
        return np.zeros(n, dtype=np.int16)


class MixSource:
    """Sums every input's pending samples (the echo occupant's 'send back what I hear').

    Each input is a sample FIFO capped at `max_backlog` samples, so a stalled reader cannot build
    up latency; an input with fewer samples than asked contributes what it has."""

    def __init__(self, max_backlog: int = 10 * FRAME):
        self._inputs: dict[object, np.ndarray] = {}
        self._max = max_backlog

    def add_input(self, key) -> None:
        self._inputs.setdefault(key, np.zeros(0, dtype=np.int16))

    def remove_input(self, key) -> None:
        self._inputs.pop(key, None)

    def push(self, key, samples: np.ndarray) -> None:
        buf = self._inputs.get(key)
        if buf is None:
            return
        buf = np.concatenate([buf, samples.astype(np.int16)])
        if buf.size > self._max:
            buf = buf[buf.size - self._max:]
        self._inputs[key] = buf

    def read(self, n: int = FRAME) -> np.ndarray:
        acc = np.zeros(n, dtype=np.int32)
        for key, buf in list(self._inputs.items()):
            m = min(n, buf.size)
            if m:
                acc[:m] += buf[:m]
                self._inputs[key] = buf[m:]
        return np.clip(acc, -32768, 32767).astype(np.int16)


class PacedAudioTrack(MediaStreamTrack):
    """An aiortc audio track that yields one 20 ms frame of `source` per 20 ms of wall time."""

    kind = "audio"

    def __init__(self, source):
        super().__init__()
        self.source = source
        self._start: Optional[float] = None
        self._pts = 0
        self.frames = 0

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._pts += FRAME
            wait = self._start + self._pts / RATE - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        samples = self.source.read(FRAME)
        frame = AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = TIME_BASE
        self.frames += 1
        return frame


def frame_to_mono(frame: AudioFrame) -> np.ndarray:
    """Decoded aiortc frame (s16, usually packed stereo) -> mono int16 at the frame's rate."""
    arr = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        data = arr.astype(np.int32)
        mono = data.mean(axis=0) if channels > 1 else data.reshape(-1)
    else:
        data = arr.reshape(-1, channels).astype(np.int32)
        mono = data.mean(axis=1)
    if frame.format.name not in ("s16", "s16p"):
        raise ValueError("unexpected decoded format %s" % frame.format.name)
    return np.clip(np.round(mono), -32768, 32767).astype(np.int16)


class WavRecorder:
    """Writes received audio to a mono 16-bit 48 kHz WAV.

    Gaps in the RTP timeline (DTX, loss) are filled with silence using the frames' pts, so the file
    keeps real time; each gap fill is capped so a timestamp jump cannot produce a huge file."""

    MAX_GAP = 5 * RATE

    def __init__(self, path: str):
        self.path = path
        self._w = wave.open(path, "wb")
        self._w.setnchannels(1)
        self._w.setsampwidth(2)
        self._w.setframerate(RATE)
        self._next_pts: Optional[int] = None
        self.samples_written = 0
        self.samples_decoded = 0
        self.closed = False

    def write_frame(self, frame: AudioFrame) -> int:
        """Returns the number of decoded samples added (not counting gap fill)."""
        if self.closed:
            return 0
        mono = frame_to_mono(frame)
        if frame.sample_rate and frame.sample_rate != RATE:
            # aiortc's Opus decoder always gives 48 kHz; resample anything else linearly
            n = int(round(mono.size * RATE / frame.sample_rate))
            mono = np.interp(np.linspace(0, mono.size - 1, n), np.arange(mono.size), mono).astype(np.int16)
        pts = frame.pts
        if pts is not None and frame.time_base is not None and frame.time_base != TIME_BASE:
            pts = int(pts * frame.time_base * RATE)
        if pts is not None and self._next_pts is not None and pts > self._next_pts:
            gap = min(pts - self._next_pts, self.MAX_GAP)
            self._w.writeframes(np.zeros(gap, dtype=np.int16).tobytes())
            self.samples_written += gap
        self._w.writeframes(mono.astype("<i2").tobytes())
        self.samples_written += mono.size
        self.samples_decoded += mono.size
        if pts is not None:
            self._next_pts = max(pts + mono.size, self._next_pts or 0)
        return mono.size

    @property
    def seconds(self) -> float:
        return self.samples_written / RATE

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._w.close()


def make_source(tone: Optional[float] = None, wav: Optional[str] = None, level: float = -12.0):
    if (tone is None) == (wav is None):
        raise ValueError("give exactly one of tone or wav")
    if tone is not None:
        return ToneSource(float(tone), float(level))
    return WavSource(load_wav(wav), wav)
