//! Mix-minus at 8 kHz: every party hears the sum of everyone but itself. A dial-in call has two
//! parties, the phone and the room, so that is: the phone hears [`mix`] of all conference
//! speakers, the room hears the phone alone. Sums are taken in 32 bits and saturated once at the
//! end, so loud speakers clip instead of wrapping around.

use super::{Frame, FRAME_SAMPLES};

/// The sum of all `frames`, saturated to 16 bits. No frames is silence.
pub fn mix<'a>(frames: impl IntoIterator<Item = &'a Frame>) -> Frame {
    let mut acc = [0i32; FRAME_SAMPLES];
    for f in frames {
        for (a, &s) in acc.iter_mut().zip(f) {
            *a += i32::from(s);
        }
    }
    acc.map(|a| a.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16)
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
}
