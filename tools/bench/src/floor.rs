//! The codec floor, measured in the same run as the load: what the unavoidable codec work of one
//! call costs on this machine, so calls per core can be stated as a ratio that means the same on
//! any machine. One call, per 20 ms frame: one Opus encode of the phone's audio at 8 kHz (the
//! gateway's rate, complexity and bitrate), one Opus decode per remote speaker to 8 kHz, and the
//! G.711 work both ways. Timed on this thread's CPU clock, so other load on the machine does not
//! count.

use crate::phone::{ulaw_decode, ulaw_encode};
use crate::procstat::thread_cpu;
use audiopus::coder::{Decoder, Encoder};
use audiopus::{Application, Bitrate, Channels, SampleRate};

/// Samples in 20 ms at 8 kHz (the phone leg) and 48 kHz (what browsers send).
pub const PHONE_FRAME: usize = 160;
pub const BROWSER_FRAME: usize = 960;

/// The codec work of one call.
#[derive(Debug, Clone, Copy)]
pub struct Work {
    pub speakers: usize,
    pub complexity: u8,
    pub bitrate: i32,
}

/// Microseconds of CPU per 20 ms frame, each part and the whole call.
#[derive(Debug, Clone, Copy)]
pub struct Floor {
    pub work: Work,
    pub encode_us: f64,
    pub decode_us: f64,
    pub g711_us: f64,
}

impl Floor {
    /// One call's codec work per 20 ms frame.
    pub fn per_call_us(&self) -> f64 {
        self.encode_us + self.work.speakers as f64 * self.decode_us + self.g711_us
    }

    /// Calls one core could carry if the codec work were all there is.
    pub fn calls_per_core(&self) -> f64 {
        20_000.0 / self.per_call_us()
    }

    /// The mean of two measurements of the same work (before and after a ramp).
    pub fn averaged_with(&self, other: &Floor) -> Floor {
        Floor {
            work: self.work,
            encode_us: (self.encode_us + other.encode_us) / 2.0,
            decode_us: (self.decode_us + other.decode_us) / 2.0,
            g711_us: (self.g711_us + other.g711_us) / 2.0,
        }
    }

    pub fn table(&self) -> String {
        format!(
            "codec floor (this machine, thread CPU time per 20 ms frame)\n\
             \x20 Opus encode 8 kHz, complexity {}, {} b/s   {:8.1} µs\n\
             \x20 Opus decode to 8 kHz, per speaker         {:8.1} µs  × {}\n\
             \x20 G.711 both ways                           {:8.2} µs\n\
             \x20 one call                                  {:8.1} µs  → {:.0} calls per core",
            self.work.complexity,
            self.work.bitrate,
            self.encode_us,
            self.decode_us,
            self.work.speakers,
            self.g711_us,
            self.per_call_us(),
            self.calls_per_core()
        )
    }
}

/// A voice-like test signal: a 140 Hz voice with harmonics, vibrato and a syllable rhythm, at
/// `rate`. Opus' cost barely depends on content, but a pure tone would be unusually cheap.
pub fn voice(rate: u32, seconds: f64) -> Vec<i16> {
    let n = (rate as f64 * seconds) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / rate as f64;
            let f0 = 140.0 + 12.0 * (2.0 * std::f64::consts::PI * 5.0 * t).sin();
            let syllable = 0.55 + 0.45 * (2.0 * std::f64::consts::PI * 4.0 * t).sin().abs();
            let voiced: f64 = (1..=12)
                .map(|h| (2.0 * std::f64::consts::PI * f0 * h as f64 * t).sin() / h as f64)
                .sum();
            (voiced * syllable * 6000.0).clamp(-32_000.0, 32_000.0) as i16
        })
        .collect()
}

/// Opus packets as a browser sends them (48 kHz, VOIP, 32 kb/s, 20 ms) of the voice signal.
pub fn browser_packets(seconds: f64) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut enc = Encoder::new(SampleRate::Hz48000, Channels::Mono, Application::Voip)?;
    enc.set_bitrate(Bitrate::BitsPerSecond(32_000))?;
    let pcm = voice(48_000, seconds);
    let mut out = Vec::new();
    let mut buf = [0u8; 1500];
    for frame in pcm.chunks_exact(BROWSER_FRAME) {
        let n = enc.encode(frame, &mut buf)?;
        out.push(buf[..n].to_vec());
    }
    Ok(out)
}

/// The median over `rounds` of the CPU time per item of `f` run over `items` items.
fn per_item_us(rounds: usize, items: usize, mut f: impl FnMut()) -> f64 {
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = thread_cpu();
            f();
            (thread_cpu() - start).as_secs_f64() * 1e6 / items as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Measures the floor of `work` on this machine (about a second of CPU).
pub fn measure(work: &Work) -> anyhow::Result<Floor> {
    const SECONDS: f64 = 4.0;
    const ROUNDS: usize = 5;
    let phone = voice(8000, SECONDS);
    let frames = phone.len() / PHONE_FRAME;

    let mut enc = Encoder::new(SampleRate::Hz8000, Channels::Mono, Application::Voip)?;
    enc.set_complexity(work.complexity)?;
    enc.set_bitrate(Bitrate::BitsPerSecond(work.bitrate))?;
    let mut packet = [0u8; 1500];
    let encode_us = per_item_us(ROUNDS, frames, || {
        for frame in phone.chunks_exact(PHONE_FRAME) {
            let _ = enc.encode(frame, &mut packet);
        }
    });

    let packets = browser_packets(SECONDS)?;
    let mut dec = Decoder::new(SampleRate::Hz8000, Channels::Mono)?;
    // Room for the longest Opus frame (120 ms) at 8 kHz, as the gateway's decoder has.
    let mut pcm = [0i16; 960];
    let decode_us = per_item_us(ROUNDS, packets.len(), || {
        for p in &packets {
            let (Ok(packet), Ok(signals)) = (
                audiopus::packet::Packet::try_from(p.as_slice()),
                audiopus::MutSignals::try_from(&mut pcm[..]),
            ) else {
                continue;
            };
            let _ = dec.decode(Some(packet), signals, false);
        }
    });

    let mut ulaw = vec![0u8; PHONE_FRAME];
    let mut back = vec![0i16; PHONE_FRAME];
    let g711_us = per_item_us(ROUNDS, frames, || {
        for frame in phone.chunks_exact(PHONE_FRAME) {
            for (u, &s) in ulaw.iter_mut().zip(frame) {
                *u = ulaw_encode(s);
            }
            for (b, &u) in back.iter_mut().zip(&ulaw) {
                *b = ulaw_decode(u);
            }
            std::hint::black_box(&back);
        }
    });
    Ok(Floor {
        work: *work,
        encode_us,
        decode_us,
        g711_us,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_grows_with_the_speakers() {
        let one = Floor {
            work: Work {
                speakers: 1,
                complexity: 5,
                bitrate: 20_000,
            },
            encode_us: 70.0,
            decode_us: 30.0,
            g711_us: 0.5,
        };
        let three = Floor {
            work: Work {
                speakers: 3,
                ..one.work
            },
            ..one
        };
        assert!((one.per_call_us() - 100.5).abs() < 1e-9);
        assert!(three.calls_per_core() < one.calls_per_core());
    }
}
