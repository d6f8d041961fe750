//! Test helpers: tone frames and a single-frequency level meter (windowed DFT at the exact
//! frequency), so codec and mixer tests can check what is heard, not just byte counts.

use super::{Frame, FRAME_SAMPLES, SAMPLE_RATE};

/// `count` frames of the sum of `(frequency, peak as a fraction of full scale)` tones, starting
/// at sample `start`.
pub fn tone_frames(tones: &[(f64, f64)], count: usize, start: usize) -> Vec<Frame> {
    (0..count)
        .map(|f| {
            let mut frame = [0i16; FRAME_SAMPLES];
            for (i, s) in frame.iter_mut().enumerate() {
                let n = (start + f * FRAME_SAMPLES + i) as f64;
                let v: f64 = tones
                    .iter()
                    .map(|(hz, peak)| {
                        peak * 32767.0
                            * (2.0 * std::f64::consts::PI * hz * n / f64::from(SAMPLE_RATE)).sin()
                    })
                    .sum();
                *s = v.round().clamp(-32768.0, 32767.0) as i16;
            }
            frame
        })
        .collect()
}

/// Peak level (dBFS) of the `hz` component of `samples` (8 kHz), Hann-windowed.
pub fn goertzel_db(samples: &[i16], hz: f64) -> f64 {
    let n = samples.len();
    let (mut re, mut im, mut wsum) = (0.0f64, 0.0f64, 0.0f64);
    for (i, &s) in samples.iter().enumerate() {
        let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos();
        let phase = 2.0 * std::f64::consts::PI * hz * i as f64 / f64::from(SAMPLE_RATE);
        re += w * f64::from(s) * phase.cos();
        im -= w * f64::from(s) * phase.sin();
        wsum += w;
    }
    let amplitude = 2.0 * (re * re + im * im).sqrt() / wsum;
    20.0 * (amplitude / 32768.0).max(1e-10).log10()
}
