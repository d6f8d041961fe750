//! The bridge's audio: the emulated speakers' Opus packets, encoded once at start, and what is
//! measured on the gateway's stream (a tone's level by Goertzel, the overall level, the dominant
//! frequency when no tone is expected).

use std::f64::consts::PI;
use std::sync::Arc;

use audiopus::coder::{Decoder, Encoder};
use audiopus::{Application, Bitrate, Channels, SampleRate};

/// Samples per 20 ms frame at 48 kHz (what browsers send) and at 8 kHz (what we decode to).
pub const FRAME_48K: usize = 960;
pub const FRAME_8K: usize = 160;
/// Frames per analysis window: one second.
pub const WINDOW_FRAMES: usize = 50;
pub const WINDOW: usize = FRAME_8K * WINDOW_FRAMES;

/// The tone of speaker `i`: distinct, away from the phone tones tests use (440 Hz) and from
/// each other by more than the 1 Hz resolution of a one-second window.
pub fn speaker_tone(i: usize) -> f64 {
    const BASE: [f64; 8] = [600.0, 1100.0, 900.0, 1300.0, 750.0, 1500.0, 1700.0, 1900.0];
    BASE[i % BASE.len()] + 25.0 * (i / BASE.len()) as f64
}

/// One speaker's stream as pre-encoded Opus packets, played in a loop.
#[derive(Debug)]
pub struct SpeakerLoop {
    pub hz: f64,
    pub packets: Vec<Vec<u8>>,
    /// RFC 6464 level (−dBov) of every packet: a steady tone has one level.
    pub level: u8,
}

/// Encodes `speakers` tone loops as a browser would send them (48 kHz, VOIP, 32 kb/s, 20 ms),
/// once for every session of the run.
pub fn speaker_loops(speakers: usize, peak_dbfs: f64) -> anyhow::Result<Arc<Vec<SpeakerLoop>>> {
    let mut loops = Vec::with_capacity(speakers);
    for i in 0..speakers {
        let hz = speaker_tone(i);
        loops.push(SpeakerLoop {
            hz,
            packets: tone_loop(hz, peak_dbfs)?,
            // A sine's RMS is 3 dB below its peak.
            level: (-(peak_dbfs - 3.0)).round().clamp(0.0, 127.0) as u8,
        });
    }
    Ok(Arc::new(loops))
}

/// One second of packets that loops without a click: the tone has a whole number of cycles per
/// second, and the second kept is the third one encoded, so the encoder's state at its start
/// is the steady state its end leads back to.
fn tone_loop(hz: f64, peak_dbfs: f64) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut enc = Encoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip)?;
    enc.set_bitrate(Bitrate::BitsPerSecond(32_000))?;
    let amplitude = 32_767.0 * 10f64.powf(peak_dbfs / 20.0);
    let mut out = Vec::with_capacity(WINDOW_FRAMES);
    let mut buf = [0u8; 1500];
    let mut frame = [0i16; FRAME_48K];
    for n in 0..3 * WINDOW_FRAMES {
        for (i, s) in frame.iter_mut().enumerate() {
            let t = (n * FRAME_48K + i) as f64 / 48_000.0;
            *s = (amplitude * (2.0 * PI * hz * t).sin()) as i16;
        }
        let len = enc.encode(&frame, &mut buf)?;
        if n >= 2 * WINDOW_FRAMES {
            out.push(buf[..len].to_vec());
        }
    }
    Ok(out)
}

/// An Opus decoder to 8 kHz mono. A packet libopus refuses is `None`, never a panic: it comes
/// from the network.
pub struct Decode {
    decoder: Decoder,
    /// Room for the longest Opus packet (120 ms) at 8 kHz.
    scratch: [i16; 960],
}

impl Decode {
    pub fn new() -> anyhow::Result<Decode> {
        Ok(Decode {
            decoder: Decoder::new(SampleRate::Hz8000, Channels::Mono)?,
            scratch: [0; 960],
        })
    }

    pub fn packet(&mut self, payload: &[u8]) -> Option<&[i16]> {
        let packet = audiopus::packet::Packet::try_from(payload).ok()?;
        let signals = audiopus::MutSignals::try_from(&mut self.scratch[..]).ok()?;
        let n = self.decoder.decode(Some(packet), signals, false).ok()?;
        Some(&self.scratch[..n])
    }

    /// Concealment of one lost 20 ms frame.
    pub fn lost(&mut self) -> Option<&[i16]> {
        let signals = audiopus::MutSignals::try_from(&mut self.scratch[..FRAME_8K]).ok()?;
        let n = self.decoder.decode(None, signals, false).ok()?;
        Some(&self.scratch[..n])
    }
}

/// A Hann window of one analysis window's length, computed once.
pub fn hann() -> Arc<Vec<f32>> {
    let n = WINDOW;
    Arc::new(
        (0..n)
            .map(|i| (0.5 - 0.5 * (2.0 * PI * i as f64 / (n - 1) as f64).cos()) as f32)
            .collect(),
    )
}

/// The peak level in dBFS of the `hz` component of `samples` (8 kHz), Hann-windowed Goertzel.
/// `window` must be at least as long as `samples`.
pub fn tone_dbfs(samples: &[i16], window: &[f32], hz: f64) -> f64 {
    let n = samples.len();
    if n == 0 {
        return f64::NEG_INFINITY;
    }
    let coeff = 2.0 * (2.0 * PI * hz / 8_000.0).cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    // The window is sampled to span exactly this many samples.
    let step = window.len() as f64 / n as f64;
    let mut gain = 0.0f64;
    for (i, &x) in samples.iter().enumerate() {
        let w = f64::from(window[((i as f64 * step) as usize).min(window.len() - 1)]);
        gain += w;
        let s = f64::from(x) * w + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = (s1 * s1 + s2 * s2 - coeff * s1 * s2).max(0.0);
    // A sine of amplitude A gives |X| = A·Σw/2.
    let amplitude = 2.0 * power.sqrt() / gain.max(f64::MIN_POSITIVE);
    dbfs(amplitude)
}

/// The RMS level of `samples` in dBFS (a full-scale sine reads −3).
pub fn rms_dbfs(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return f64::NEG_INFINITY;
    }
    let sum: f64 = samples.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    dbfs((sum / samples.len() as f64).sqrt())
}

fn dbfs(amplitude: f64) -> f64 {
    if amplitude <= 0.0 {
        f64::NEG_INFINITY
    } else {
        20.0 * (amplitude / 32_768.0).log10()
    }
}

/// The strongest frequency between 100 and 3 900 Hz: a 10 Hz scan over the first quarter of the
/// samples, refined to 1 Hz over all of them. About a millisecond of CPU for a second of audio,
/// so only for sessions without an expected tone.
pub fn dominant(samples: &[i16], window: &[f32]) -> Option<(f64, f64)> {
    if samples.len() < 800 {
        return None;
    }
    let quarter = &samples[..samples.len() / 4];
    let coarse = (10..=390)
        .map(|k| k as f64 * 10.0)
        .map(|hz| (hz, tone_dbfs(quarter, window, hz)))
        .max_by(|a, b| a.1.total_cmp(&b.1))?;
    (-10..=10)
        .map(|d| coarse.0 + d as f64)
        .map(|hz| (hz, tone_dbfs(samples, window, hz)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(hz: f64, peak_dbfs: f64, n: usize) -> Vec<i16> {
        let a = 32_767.0 * 10f64.powf(peak_dbfs / 20.0);
        (0..n)
            .map(|i| (a * (2.0 * PI * hz * i as f64 / 8_000.0).sin()) as i16)
            .collect()
    }

    #[test]
    fn goertzel_reads_a_tones_level_and_not_its_neighbours() {
        let w = hann();
        let s = sine(440.0, -12.0, WINDOW);
        let at = tone_dbfs(&s, &w, 440.0);
        assert!((at + 12.0).abs() < 0.2, "{at}");
        assert!(tone_dbfs(&s, &w, 600.0) < -80.0);
        assert!((rms_dbfs(&s) + 15.0).abs() < 0.1);
        // Half a window works too (the window is stretched over it).
        let half = tone_dbfs(&s[..WINDOW / 2], &w, 440.0);
        assert!((half + 12.0).abs() < 0.2, "{half}");
    }

    #[test]
    fn the_dominant_frequency_is_found() {
        let w = hann();
        let mut s = sine(1234.0, -10.0, WINDOW);
        for (x, y) in s.iter_mut().zip(sine(600.0, -30.0, WINDOW)) {
            *x = x.saturating_add(y);
        }
        let (hz, level) = dominant(&s, &w).unwrap();
        assert_eq!(hz, 1234.0);
        assert!((level + 10.0).abs() < 0.5, "{level}");
        assert_eq!(dominant(&s[..10], &w), None);
    }

    #[test]
    fn speaker_loops_decode_to_their_tones() {
        let loops = speaker_loops(2, -12.0).unwrap();
        assert_eq!(loops[0].level, 15);
        let w = hann();
        for l in loops.iter() {
            assert_eq!(l.packets.len(), WINDOW_FRAMES);
            let mut dec = Decode::new().unwrap();
            let mut pcm = Vec::new();
            // Twice round the loop: the joint must not spoil the second pass.
            for p in l.packets.iter().chain(l.packets.iter()) {
                pcm.extend_from_slice(dec.packet(p).unwrap());
            }
            assert!(dec.packet(&[0xff; 3]).is_none() || dec.packet(&[]).is_none());
            let second = &pcm[WINDOW..];
            let level = tone_dbfs(second, &w, l.hz);
            assert!(level > -14.0, "{} Hz at {level} dBFS", l.hz);
            let other = if l.hz == 600.0 { 1100.0 } else { 600.0 };
            assert!(tone_dbfs(second, &w, other) < -50.0);
        }
    }
}
