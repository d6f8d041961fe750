//! Audio checks on recordings: which tones are present, at what level, and for how much of the
//! time. Tests assert on the audio itself, not on packet counts.
//!
//! Method: the recording is cut into 1 s frames (Hann window, so the resolution is 1 Hz and
//! leakage stays within a few bins); each frame's power spectrum gives, for every frequency
//! asked about, the power in a ±`BAND_HZ` band around it and the frame's total power.

use anyhow::{bail, Context, Result};
use rustfft::{num_complex::Complex, FftPlanner};
use std::fmt;
use std::path::Path;

/// Half-width of the band counted as "the tone" (covers codec frequency error: PCMU moves a
/// 1 kHz tone by tens of Hz in `sox stat`'s rough estimate, but an FFT sees it within a few Hz).
pub const BAND_HZ: f64 = 15.0;

/// Mono samples in [-1, 1] and their rate.
pub struct Recording {
    pub rate: u32,
    pub samples: Vec<f64>,
}

impl Recording {
    /// Reads a 16-bit or float WAV; several channels are averaged.
    pub fn read(path: &Path) -> Result<Self> {
        let mut reader =
            hound::WavReader::open(path).with_context(|| format!("opening {}", path.display()))?;
        let spec = reader.spec();
        let channels = spec.channels.max(1) as usize;
        let raw: Vec<f64> = match spec.sample_format {
            hound::SampleFormat::Int => {
                let scale = (1u64 << (spec.bits_per_sample - 1)) as f64;
                reader
                    .samples::<i32>()
                    .map(|s| s.map(|v| v as f64 / scale))
                    .collect::<Result<_, _>>()?
            }
            hound::SampleFormat::Float => reader
                .samples::<f32>()
                .map(|s| s.map(|v| v as f64))
                .collect::<Result<_, _>>()?,
        };
        let samples = raw
            .chunks(channels)
            .map(|c| c.iter().sum::<f64>() / channels as f64)
            .collect();
        Ok(Self {
            rate: spec.sample_rate,
            samples,
        })
    }

    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / self.rate as f64
    }

    /// The part between `from` and `to` seconds (clamped).
    pub fn slice(&self, from: f64, to: f64) -> Recording {
        let n = self.samples.len();
        let a = ((from.max(0.0) * self.rate as f64) as usize).min(n);
        let b = ((to.max(0.0) * self.rate as f64) as usize).min(n).max(a);
        Recording {
            rate: self.rate,
            samples: self.samples[a..b].to_vec(),
        }
    }

    /// Analyses the tones at `freqs` (Hz) over whole 1 s frames.
    pub fn tones(&self, freqs: &[f64]) -> ToneReport {
        let n = self.rate as usize;
        let window: Vec<f64> = (0..n)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos())
            .collect();
        let window_power = window.iter().map(|w| w * w).sum::<f64>() / n as f64;
        let fft = FftPlanner::new().plan_fft_forward(n);
        let mut frames = Vec::new();
        for chunk in self.samples.chunks_exact(n) {
            let mut buf: Vec<Complex<f64>> = chunk
                .iter()
                .zip(&window)
                .map(|(s, w)| Complex::new(s * w, 0.0))
                .collect();
            fft.process(&mut buf);
            // One-sided power per bin, scaled so a bin sum equals the signal's mean power.
            let scale = 2.0 / (n as f64 * n as f64 * window_power);
            let power: Vec<f64> = buf[..n / 2].iter().map(|c| c.norm_sqr() * scale).collect();
            let total: f64 = power[1..].iter().sum();
            let bins_per_hz = n as f64 / self.rate as f64;
            let tones = freqs
                .iter()
                .map(|&f| {
                    let lo = ((f - BAND_HZ) * bins_per_hz).floor().max(1.0) as usize;
                    let hi = (((f + BAND_HZ) * bins_per_hz).ceil() as usize).min(power.len() - 1);
                    power[lo..=hi].iter().sum::<f64>()
                })
                .collect();
            frames.push(Frame { total, tones });
        }
        ToneReport {
            freqs: freqs.to_vec(),
            frames,
        }
    }
}

struct Frame {
    total: f64,
    tones: Vec<f64>,
}

/// Per-frequency results of [`Recording::tones`].
pub struct ToneReport {
    freqs: Vec<f64>,
    frames: Vec<Frame>,
}

/// What a test demands of one tone.
#[derive(Clone, Copy, Debug)]
pub struct Expect {
    /// Minimum peak level of the tone over the analysed span, dBFS.
    pub min_level_dbfs: f64,
    /// Minimum fraction of 1 s frames in which the tone is above `min_level_dbfs`.
    pub min_coverage: f64,
}

impl ToneReport {
    pub fn frames(&self) -> usize {
        self.frames.len()
    }

    fn index(&self, hz: f64) -> usize {
        self.freqs
            .iter()
            .position(|&f| f == hz)
            .unwrap_or_else(|| panic!("{hz} Hz was not analysed"))
    }

    /// The tone's peak level over all frames, dBFS (a full-scale sine is 0 dBFS).
    pub fn level_dbfs(&self, hz: f64) -> f64 {
        let i = self.index(hz);
        let mean =
            self.frames.iter().map(|f| f.tones[i]).sum::<f64>() / self.frames.len().max(1) as f64;
        power_to_peak_dbfs(mean)
    }

    /// The tone's share of all power, dB (0 = everything heard is this tone).
    pub fn share_db(&self, hz: f64) -> f64 {
        let i = self.index(hz);
        let tone: f64 = self.frames.iter().map(|f| f.tones[i]).sum();
        let total: f64 = self.frames.iter().map(|f| f.total).sum();
        10.0 * (tone.max(1e-20) / total.max(1e-20)).log10()
    }

    /// Fraction of frames where the tone's level is at least `min_dbfs`.
    pub fn coverage(&self, hz: f64, min_dbfs: f64) -> f64 {
        let i = self.index(hz);
        let hits = self
            .frames
            .iter()
            .filter(|f| power_to_peak_dbfs(f.tones[i]) >= min_dbfs)
            .count();
        hits as f64 / self.frames.len().max(1) as f64
    }

    /// Checks that the tone is there as `expect` demands; the error explains what was heard.
    pub fn check_present(&self, hz: f64, expect: Expect) -> Result<()> {
        if self.frames.is_empty() {
            bail!("no audio to analyse (less than one second recorded)");
        }
        let level = self.level_dbfs(hz);
        let coverage = self.coverage(hz, expect.min_level_dbfs);
        if level < expect.min_level_dbfs || coverage < expect.min_coverage {
            bail!(
                "{hz} Hz tone missing: level {level:.1} dBFS (want >= {:.1}), present in {:.0}% of \
                 1 s frames (want >= {:.0}%); heard: {self}",
                expect.min_level_dbfs,
                coverage * 100.0,
                expect.min_coverage * 100.0
            );
        }
        Ok(())
    }

    /// Checks that the tone is not there above `max_dbfs`.
    pub fn check_absent(&self, hz: f64, max_dbfs: f64) -> Result<()> {
        let level = self.level_dbfs(hz);
        if level > max_dbfs {
            bail!("{hz} Hz tone should be absent but is at {level:.1} dBFS (limit {max_dbfs:.1}); heard: {self}");
        }
        Ok(())
    }
}

impl fmt::Display for ToneReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total: f64 =
            self.frames.iter().map(|fr| fr.total).sum::<f64>() / self.frames.len().max(1) as f64;
        write!(
            f,
            "{} s, overall {:.1} dBFS",
            self.frames.len(),
            power_to_peak_dbfs(total)
        )?;
        for &hz in &self.freqs {
            write!(
                f,
                "; {hz} Hz at {:.1} dBFS ({:.1} dB of all)",
                self.level_dbfs(hz),
                self.share_db(hz)
            )?;
        }
        Ok(())
    }
}

/// Mean power of a sine → its peak level in dBFS (power = A²/2).
fn power_to_peak_dbfs(power: f64) -> f64 {
    20.0 * (2.0 * power).max(1e-20).sqrt().log10()
}

/// Writes a mono 16-bit WAV of a sine tone (test stimulus).
pub fn write_tone_wav(path: &Path, hz: f64, seconds: f64, rate: u32, peak_dbfs: f64) -> Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    let amp = 10f64.powf(peak_dbfs / 20.0) * 32767.0;
    let n = (seconds * rate as f64) as usize;
    for i in 0..n {
        let v = amp * (2.0 * std::f64::consts::PI * hz * i as f64 / rate as f64).sin();
        w.write_sample(v.round() as i16)?;
    }
    w.finalize()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(hz: f64, peak: f64, rate: u32, secs: f64) -> Vec<f64> {
        (0..(secs * rate as f64) as usize)
            .map(|i| peak * (2.0 * std::f64::consts::PI * hz * i as f64 / rate as f64).sin())
            .collect()
    }

    #[test]
    fn a_tone_is_measured_at_its_level_and_an_absent_one_is_not() {
        let rate = 8000;
        let a = tone(440.0, 0.5, rate, 3.0);
        let b = tone(1000.0, 0.05, rate, 3.0);
        let rec = Recording {
            rate,
            samples: a.iter().zip(&b).map(|(x, y)| x + y).collect(),
        };
        let report = rec.tones(&[440.0, 1000.0, 600.0]);
        assert_eq!(report.frames(), 3);
        assert!((report.level_dbfs(440.0) - (-6.02)).abs() < 0.3, "{report}");
        assert!(
            (report.level_dbfs(1000.0) - (-26.02)).abs() < 0.3,
            "{report}"
        );
        assert!(report.level_dbfs(600.0) < -80.0, "{report}");
        assert!(report.share_db(440.0) > -0.1);
        let want = Expect {
            min_level_dbfs: -30.0,
            min_coverage: 1.0,
        };
        report.check_present(440.0, want).unwrap();
        report.check_present(1000.0, want).unwrap();
        assert!(report.check_present(600.0, want).is_err());
        report.check_absent(600.0, -60.0).unwrap();
        assert!(report.check_absent(440.0, -60.0).is_err());
    }

    #[test]
    fn silence_and_short_recordings_fail_the_presence_check() {
        let want = Expect {
            min_level_dbfs: -40.0,
            min_coverage: 0.5,
        };
        let silent = Recording {
            rate: 48000,
            samples: vec![0.0; 48000 * 2],
        };
        assert!(silent.tones(&[600.0]).check_present(600.0, want).is_err());
        let short = Recording {
            rate: 48000,
            samples: tone(600.0, 0.5, 48000, 0.5),
        };
        assert!(short.tones(&[600.0]).check_present(600.0, want).is_err());
    }

    #[test]
    fn coverage_counts_the_seconds_a_tone_is_there() {
        let rate = 8000;
        let mut samples = tone(900.0, 0.3, rate, 2.0);
        samples.extend(vec![0.0; 2 * rate as usize]);
        let rec = Recording { rate, samples };
        let report = rec.tones(&[900.0]);
        assert!((report.coverage(900.0, -30.0) - 0.5).abs() < 1e-9);
        let later = rec.slice(2.0, 4.0).tones(&[900.0]);
        assert!(later.check_absent(900.0, -60.0).is_ok(), "{later}");
    }

    #[test]
    fn a_written_tone_wav_reads_back_at_its_frequency_and_level() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.wav");
        write_tone_wav(&path, 440.0, 2.0, 8000, -12.0).unwrap();
        let rec = Recording::read(&path).unwrap();
        assert_eq!(rec.rate, 8000);
        let report = rec.tones(&[440.0]);
        assert!((report.level_dbfs(440.0) + 12.0).abs() < 0.3, "{report}");
    }
}
