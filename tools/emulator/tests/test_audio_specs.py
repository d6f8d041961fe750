"""Participant specs and the audio helpers (no network)."""
import fractions
import os
import sys
import tempfile
import unittest
import wave

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from av import AudioFrame  # noqa: E402

from emulator import audio  # noqa: E402
from emulator.participants import EmulatedParticipant, parse_spec  # noqa: E402


class Specs(unittest.TestCase):
    def test_tone_spec(self):
        s = parse_spec("name=alice,tone=600,level=-6,endpoint=1A2B3C4D")
        self.assertEqual((s.name, s.tone, s.wav, s.level, s.endpoint), ("alice", 600.0, None, -6.0, "1a2b3c4d"))
        s = parse_spec("name=bob,wav=/x.wav")
        self.assertEqual((s.tone, s.wav, s.level, s.endpoint), (None, "/x.wav", -12.0, None))

    def test_bad_specs(self):
        for text in ("tone=600", "name=a", "name=a,tone=600,wav=/x", "name=a,tone=x", "name=a,tone=30000",
                     "name=a,tone=600,level=3", "name=a,tone=600,endpoint=xyz", "name=a,tone=600,color=red",
                     "name=a,name=b,tone=1", "name=a,tone"):
            with self.subTest(text), self.assertRaises(ValueError):
                parse_spec(text)

    def test_participant_source(self):
        p = EmulatedParticipant.create(parse_spec("name=alice,tone=600,endpoint=1a2b3c4d"))
        self.assertEqual(p.source_name, "1a2b3c4d-a0")
        self.assertTrue(p.msid.startswith("1a2b3c4d-audio-0 "))
        src = p.jingle_source("1a2b3c4d")
        self.assertEqual((src.ssrc, src.name, src.owner, src.msid), (p.ssrc, "1a2b3c4d-a0", "1a2b3c4d", p.msid))
        self.assertTrue(1 <= p.ssrc <= 0xFFFFFFFF)


class Audio(unittest.TestCase):
    def test_tone_level_and_frequency(self):
        t = audio.ToneSource(600, -12)
        x = np.concatenate([t.read() for _ in range(50)]).astype(float)   # 1 s
        self.assertAlmostEqual(20 * np.log10(np.abs(x).max() / 32767), -12, delta=0.1)
        spec = np.abs(np.fft.rfft(x))
        self.assertAlmostEqual(np.fft.rfftfreq(x.size, 1 / 48000)[spec.argmax()], 600, delta=1)

    def test_mix_sums_and_bounds_backlog(self):
        m = audio.MixSource(max_backlog=3 * audio.FRAME)
        m.add_input("a")
        m.add_input("b")
        m.push("a", np.full(audio.FRAME, 1000, np.int16))
        m.push("b", np.full(audio.FRAME, 2000, np.int16))
        self.assertTrue((m.read() == 3000).all())
        self.assertTrue((m.read() == 0).all())
        for _ in range(10):
            m.push("a", np.full(audio.FRAME, 30000, np.int16))
        m.push("b", np.full(audio.FRAME, 30000, np.int16))
        self.assertTrue((m.read() == 32767).all())        # clipped, not wrapped
        self.assertEqual(sum(1 for _ in range(5) if m.read().any()), 2)  # 'a' kept only 3 frames

    def test_wav_source_loops(self):
        w = audio.WavSource(np.arange(5, dtype=np.int16))
        self.assertEqual(list(w.read(12)), [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1])

    def test_recorder_downmixes_and_fills_gaps(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "r.wav")
            rec = audio.WavRecorder(path)
            for pts in (0, 960, 4800):   # a 3 x 960-sample hole before the third frame
                stereo = np.zeros((1, 2 * 960), np.int16)
                stereo[0, 0::2] = 1000
                stereo[0, 1::2] = 3000
                f = AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
                f.sample_rate = 48000
                f.pts = pts
                f.time_base = fractions.Fraction(1, 48000)
                rec.write_frame(f)
            rec.close()
            self.assertEqual(rec.samples_decoded, 3 * 960)
            with wave.open(path) as w:
                self.assertEqual((w.getnchannels(), w.getsampwidth(), w.getframerate()), (1, 2, 48000))
                data = np.frombuffer(w.readframes(w.getnframes()), "<i2")
            self.assertEqual(data.size, 4800 + 960)
            self.assertTrue((data[:1920] == 2000).all() and (data[1920:4800] == 0).all())


if __name__ == "__main__":
    unittest.main()
