//! RFC 6464 audio level of a frame: what we put in the ssrc-audio-level header extension so the
//! videobridge's dominant-speaker detection sees the phone.

use super::Frame;

/// The quietest level: digital silence and anything below −127 dBov.
pub const SILENCE: u8 = 127;

/// Levels at or above this loudness (−50 dBov) set the voice-activity bit. We have no VAD; a
/// phone line's idle noise sits around −60 to −70 dBov and speech around −20 to −35.
const VOICE_MAX_LEVEL: u8 = 50;

/// The level of `frame` in −dBov (0 = loudest, 127 = silence): the RMS relative to a full-scale
/// square wave (RFC 6464 §3, 0 dBov is the overload point; a full-scale sine is −3 dBov).
pub fn audio_level(frame: &Frame) -> u8 {
    let energy: f64 = frame.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    let mean = energy / frame.len() as f64;
    if mean <= 0.0 {
        return SILENCE;
    }
    let full_scale = 32768.0f64 * 32768.0;
    let dbov = 10.0 * (mean / full_scale).log10();
    (-dbov).round().clamp(0.0, f64::from(SILENCE)) as u8
}

/// Whether a frame at `level` counts as voice for the V bit.
pub fn is_voice(level: u8) -> bool {
    level <= VOICE_MAX_LEVEL
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::FRAME_SAMPLES;

    fn sine(peak: f64) -> Frame {
        let mut f = [0i16; FRAME_SAMPLES];
        for (i, s) in f.iter_mut().enumerate() {
            // 400 Hz: exactly 8 periods in 160 samples, so the RMS is exact.
            *s = (peak * (2.0 * std::f64::consts::PI * 400.0 * i as f64 / 8000.0).sin()).round()
                as i16;
        }
        f
    }

    #[test]
    fn silence_is_127() {
        assert_eq!(audio_level(&[0; FRAME_SAMPLES]), 127);
    }

    #[test]
    fn a_full_scale_square_wave_is_0_dbov_and_a_full_scale_sine_3() {
        let mut square = [i16::MAX; FRAME_SAMPLES];
        for s in square.iter_mut().skip(1).step_by(2) {
            *s = i16::MIN;
        }
        assert_eq!(audio_level(&square), 0);
        assert_eq!(audio_level(&sine(32767.0)), 3);
    }

    #[test]
    fn the_level_follows_the_signal_in_decibels() {
        // −20 dB of full scale: 3 + 20.
        assert_eq!(audio_level(&sine(3276.7)), 23);
        assert_eq!(audio_level(&sine(327.67)), 43);
        // One LSB of noise is about −90 dBov: still a level, not silence.
        let mut lsb = [0i16; FRAME_SAMPLES];
        lsb.iter_mut().step_by(2).for_each(|s| *s = 1);
        assert_eq!(audio_level(&lsb), 93);
    }

    #[test]
    fn loud_frames_count_as_voice_and_quiet_ones_do_not() {
        assert!(is_voice(audio_level(&sine(3276.7))));
        assert!(!is_voice(audio_level(&sine(10.0))));
        assert!(!is_voice(SILENCE));
    }
}
