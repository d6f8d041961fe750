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

/// What each emulated speaker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpeakerSignal {
    /// A steady tone of its own (hybrid Opus, as speech is coded: about 18 µs per packet to
    /// decode to 8 kHz here, against 23 for the floor's speech-like packets).
    #[default]
    Tone,
    /// A voice-like signal (a 100–140 Hz voice with 12 harmonics, vibrato and a syllable
    /// rhythm) with the speaker's tone above it, at 1900 Hz or more, clear of the voice's
    /// harmonics: decodes at the cost of speech (about 24 µs per packet here).
    VoiceAndTone,
}

/// The tone of speaker `i`: distinct, away from the phone tones tests use (440 Hz) and from
/// each other by more than the 1 Hz resolution of a one-second window.
pub fn speaker_tone(i: usize, signal: SpeakerSignal) -> f64 {
    const LOW: [f64; 8] = [600.0, 1100.0, 900.0, 1300.0, 750.0, 1500.0, 1700.0, 1900.0];
    const HIGH: [f64; 10] = [
        1900.0, 2200.0, 2500.0, 2800.0, 3100.0, 2050.0, 2350.0, 2650.0, 2950.0, 3250.0,
    ];
    let table: &[f64] = match signal {
        SpeakerSignal::Tone => &LOW,
        SpeakerSignal::VoiceAndTone => &HIGH,
    };
    table[i % table.len()] + 25.0 * (i / table.len()) as f64
}

/// One speaker's stream as pre-encoded Opus packets, played in a loop.
#[derive(Debug)]
pub struct SpeakerLoop {
    pub hz: f64,
    pub packets: Vec<Vec<u8>>,
    /// RFC 6464 level (−dBov) of every packet: a steady tone has one level.
    pub level: u8,
}

/// Encodes `speakers` loops as a browser would send them (48 kHz, VOIP, 32 kb/s, 20 ms), once
/// for every session of the run. The tone's peak is `peak_dbfs`; a voice under it peaks there too.
pub fn speaker_loops(
    speakers: usize,
    peak_dbfs: f64,
    signal: SpeakerSignal,
) -> anyhow::Result<Arc<Vec<SpeakerLoop>>> {
    let mut loops = Vec::with_capacity(speakers);
    for i in 0..speakers {
        let (hz, pcm) = speaker_pcm(i, peak_dbfs, signal);
        // A sine's RMS is 3 dB below its peak; with a voice the level is the louder one's.
        let level_db = match signal {
            SpeakerSignal::Tone => peak_dbfs - 3.0,
            SpeakerSignal::VoiceAndTone => rms_dbfs(&pcm),
        };
        loops.push(SpeakerLoop {
            hz,
            packets: encode_loop(&pcm, None)?,
            level: (-level_db).round().clamp(0.0, 127.0) as u8,
        });
    }
    Ok(Arc::new(loops))
}

/// Speaker `i`'s second of audio at 48 kHz, and its tone.
fn speaker_pcm(i: usize, peak_dbfs: f64, signal: SpeakerSignal) -> (f64, Vec<i16>) {
    let hz = speaker_tone(i, signal);
    let tone = 32_767.0 * 10f64.powf(peak_dbfs / 20.0);
    let voice = match signal {
        SpeakerSignal::Tone => None,
        // A distinct voice per speaker; its highest harmonic stays under 1800 Hz.
        SpeakerSignal::VoiceAndTone => Some(voice(100.0 + 10.0 * (i % 5) as f64, tone)),
    };
    let pcm = (0..48_000)
        .map(|n| {
            let t = n as f64 / 48_000.0;
            let v = voice.as_ref().map_or(0.0, |v| v[n]);
            (tone * (2.0 * PI * hz * t).sin() + v).clamp(-32_767.0, 32_767.0) as i16
        })
        .collect();
    (hz, pcm)
}

/// The loop position a click packet replaces: mid-loop, away from its seam.
pub const CLICK_FRAME: usize = 25;

/// A click in the first speaker's stream: the packet that replaces its loop's packet at
/// `frame`, encoded by the loop's own encoder with the click added to that frame, so the
/// receiver's decoder state fits it.
#[derive(Debug)]
pub struct SpeakerClick {
    pub frame: usize,
    pub packet: Arc<[u8]>,
    /// The click packet and the two loop packets after it, decoded to 8 kHz after the loop's
    /// packets before it: where the click is once decoded, for the send side of a measurement.
    pub decoded: Vec<i16>,
}

/// Speaker 0's loop (as [`speaker_loops`] makes it) with `click` (48 kHz PCM) added `offset`
/// samples into frame [`CLICK_FRAME`]. Two encodes of the loop: tens of milliseconds.
pub fn speaker_click(
    peak_dbfs: f64,
    signal: SpeakerSignal,
    click: &[i16],
    offset: usize,
) -> anyhow::Result<SpeakerClick> {
    anyhow::ensure!(
        offset + click.len() <= FRAME_48K,
        "a click of {} samples at {offset} does not fit in a frame",
        click.len()
    );
    let (_, pcm) = speaker_pcm(0, peak_dbfs, signal);
    let plain = encode_loop(&pcm, None)?;
    let clicked = encode_loop(&pcm, Some((CLICK_FRAME * FRAME_48K + offset, click)))?;
    let mut dec = Decode::new()?;
    for p in &plain[..CLICK_FRAME] {
        dec.packet(p);
    }
    let mut decoded = Vec::with_capacity(3 * FRAME_8K);
    for p in std::iter::once(&clicked[CLICK_FRAME]).chain(&plain[CLICK_FRAME + 1..CLICK_FRAME + 3])
    {
        decoded.extend_from_slice(dec.packet(p).unwrap_or(&[0; FRAME_8K]));
    }
    Ok(SpeakerClick {
        frame: CLICK_FRAME,
        packet: Arc::from(clicked[CLICK_FRAME].as_slice()),
        decoded,
    })
}

/// One second at 48 kHz of a voice-like signal peaking at `peak`: fundamental `f0` (whole Hz)
/// with 5 Hz vibrato, 12 harmonics falling as 1/h, a 4 Hz syllable rhythm. Every component
/// repeats each second, so the second loops without a click.
fn voice(f0: f64, peak: f64) -> Vec<f64> {
    const VIBRATO_HZ: f64 = 5.0;
    const DEPTH_HZ: f64 = 8.0;
    let raw: Vec<f64> = (0..48_000)
        .map(|n| {
            let t = n as f64 / 48_000.0;
            // The integral of f0 + depth·sin(2π·5t): whole cycles per second.
            let phase =
                2.0 * PI * f0 * t - DEPTH_HZ / VIBRATO_HZ * (2.0 * PI * VIBRATO_HZ * t).cos();
            let syllable = 0.55 + 0.45 * (2.0 * PI * 4.0 * t).sin().abs();
            let voiced: f64 = (1..=12).map(|h| (h as f64 * phase).sin() / h as f64).sum();
            voiced * syllable
        })
        .collect();
    let max = raw
        .iter()
        .fold(0.0f64, |m, x| m.max(x.abs()))
        .max(f64::MIN_POSITIVE);
    raw.into_iter().map(|x| x * peak / max).collect()
}

/// Opus packets of one second of `pcm` (48 kHz) that loop without a click: the second kept is
/// the third one encoded, so the encoder's state at its start is the steady state its end
/// leads back to. The encoder is told the signal is voice: left to itself it codes these
/// synthetic signals in CELT-only mode, which costs half what a browser's speech (hybrid
/// SILK+CELT) costs the gateway to decode (10 against 23 µs per packet here). `click`: PCM
/// added from a sample of the second kept on (a deliberate click, for latency).
fn encode_loop(pcm: &[i16], click: Option<(usize, &[i16])>) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut enc = Encoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip)?;
    enc.set_bitrate(Bitrate::BitsPerSecond(32_000))?;
    enc.set_signal(audiopus::Signal::Voice)?;
    let mut out = Vec::with_capacity(WINDOW_FRAMES);
    let mut buf = [0u8; 1500];
    let mut frame = [0i16; FRAME_48K];
    for n in 0..3 * WINDOW_FRAMES {
        let at = (n % WINDOW_FRAMES) * FRAME_48K;
        frame.copy_from_slice(&pcm[at..at + FRAME_48K]);
        if let Some((click_at, click)) = click.filter(|_| n >= 2 * WINDOW_FRAMES) {
            for (i, x) in frame.iter_mut().enumerate() {
                if let Some(&c) = (at + i).checked_sub(click_at).and_then(|k| click.get(k)) {
                    *x = x.saturating_add(c);
                }
            }
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
        let loops = speaker_loops(2, -12.0, SpeakerSignal::Tone).unwrap();
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

    #[test]
    fn a_click_packet_splices_into_the_loop_it_was_encoded_in() {
        // A 4 ms burst of 1 kHz at -6 dBFS.
        let click: Vec<i16> = (0..192)
            .map(|i| (16_000.0 * (2.0 * PI * 1000.0 * i as f64 / 48_000.0).sin()) as i16)
            .collect();
        let signal = SpeakerSignal::VoiceAndTone;
        let loops = speaker_loops(1, -12.0, signal).unwrap();
        let pcm = speaker_pcm(0, -12.0, signal).1;
        let at = CLICK_FRAME * FRAME_48K + 48;
        let clicked = encode_loop(&pcm, Some((at, &click))).unwrap();
        // Same encoder, same input up to the click: the packets before it are the loop's, so
        // the receiver's decoder is where the click packet's encoder was.
        assert_eq!(clicked[..CLICK_FRAME], loops[0].packets[..CLICK_FRAME]);
        assert_ne!(clicked[CLICK_FRAME], loops[0].packets[CLICK_FRAME]);
        let c = speaker_click(-12.0, signal, &click, 48).unwrap();
        assert_eq!(
            (c.frame, &*c.packet),
            (CLICK_FRAME, &clicked[CLICK_FRAME][..])
        );
        assert_eq!(c.decoded.len(), 3 * FRAME_8K);
        assert!(speaker_click(-12.0, signal, &click, FRAME_48K - 100).is_err());
    }

    #[test]
    fn voice_and_tone_loops_keep_each_tone_clear_of_the_voices() {
        let loops = speaker_loops(3, -12.0, SpeakerSignal::VoiceAndTone).unwrap();
        let w = hann();
        for (i, l) in loops.iter().enumerate() {
            let mut dec = Decode::new().unwrap();
            let pcm: Vec<i16> = l
                .packets
                .iter()
                .chain(l.packets.iter())
                .flat_map(|p| dec.packet(p).unwrap().to_vec())
                .collect();
            let second = &pcm[WINDOW..];
            let level = tone_dbfs(second, &w, l.hz);
            assert!(level > -14.0, "speaker {i}: {} Hz at {level} dBFS", l.hz);
            for other in loops.iter().filter(|o| o.hz != l.hz) {
                let leak = tone_dbfs(second, &w, other.hz);
                assert!(leak < -50.0, "speaker {i}: {} Hz at {leak} dBFS", other.hz);
            }
            // The voice is there, below the tones.
            let voice = (10..170)
                .map(|k| tone_dbfs(&second[..2000], &w, k as f64 * 10.0))
                .fold(f64::NEG_INFINITY, f64::max);
            assert!(voice > -40.0, "speaker {i}: voice at {voice} dBFS");
        }
    }
}
