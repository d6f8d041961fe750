//! Mix-minus at 8 kHz: every party hears the sum of everyone but itself.
//!
//! A dial-in call has one phone, so the phone hears the sum of all conference speakers and the
//! conference hears the phone alone; [`mix_minus`] states the general rule the mixer follows so
//! that more phones in one room (shared decoding, later) need no other code.

use super::{Frame, FRAME_SAMPLES};

/// Adds `frame` into a 32-bit accumulator (no clipping until the end).
pub fn accumulate(acc: &mut [i32; FRAME_SAMPLES], frame: &Frame) {
    for (a, &s) in acc.iter_mut().zip(frame) {
        *a += i32::from(s);
    }
}

/// The accumulator as 16-bit audio, saturating where the sum leaves the range.
pub fn saturate(acc: &[i32; FRAME_SAMPLES]) -> Frame {
    let mut out = [0i16; FRAME_SAMPLES];
    for (o, &a) in out.iter_mut().zip(acc) {
        *o = a.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16;
    }
    out
}

/// The sum of all `frames`, saturated.
pub fn mix<'a>(frames: impl IntoIterator<Item = &'a Frame>) -> Frame {
    let mut acc = [0i32; FRAME_SAMPLES];
    for f in frames {
        accumulate(&mut acc, f);
    }
    saturate(&acc)
}

/// What each party hears: for party `i`, the saturated sum of every frame except `frames[i]`.
/// The full sum is taken once and each party's own signal subtracted, so N parties cost 2N
/// additions per sample rather than N².
pub fn mix_minus(frames: &[Frame]) -> Vec<Frame> {
    let mut total = [0i32; FRAME_SAMPLES];
    for f in frames {
        accumulate(&mut total, f);
    }
    frames
        .iter()
        .map(|own| {
            let mut acc = total;
            for (a, &s) in acc.iter_mut().zip(own) {
                *a -= i32::from(s);
            }
            saturate(&acc)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn constant(v: i16) -> Frame {
        [v; FRAME_SAMPLES]
    }

    #[test]
    fn speakers_add_up() {
        let out = mix([&constant(1000), &constant(-300), &constant(50)]);
        assert!(out.iter().all(|&s| s == 750));
    }

    #[test]
    fn sums_beyond_16_bits_saturate_instead_of_wrapping() {
        let loud = constant(30000);
        assert!(mix([&loud, &loud]).iter().all(|&s| s == i16::MAX));
        let low = constant(-30000);
        assert!(mix([&low, &low, &low]).iter().all(|&s| s == i16::MIN));
        // Saturation happens once at the end: +30000 +30000 -30000 is 30000, not 32767-30000.
        assert!(mix([&loud, &loud, &low]).iter().all(|&s| s == 30000));
    }

    #[test]
    fn nothing_mixed_is_silence() {
        assert_eq!(mix([]), constant(0));
    }

    #[test]
    fn each_party_hears_everyone_but_itself() {
        // Party 0 is the phone, 1 and 2 conference speakers.
        let frames = [constant(100), constant(20), constant(3)];
        let heard = mix_minus(&frames);
        assert_eq!(heard[0], constant(23)); // the phone hears both speakers
        assert_eq!(heard[1], constant(103));
        assert_eq!(heard[2], constant(120));
        // With the phone and one speaker, each hears exactly the other.
        let two = mix_minus(&[constant(7), constant(-9)]);
        assert_eq!(two, [constant(-9), constant(7)]);
    }

    #[test]
    fn mix_minus_saturates_per_listener() {
        let heard = mix_minus(&[constant(0), constant(30000), constant(30000)]);
        assert_eq!(heard[0], constant(i16::MAX));
        assert_eq!(heard[1], constant(30000));
    }
}
