//! G.711 µ-law and A-law, the phone leg's codecs.
//!
//! Computed the way ITU-T G.191's reference implementation does it (no tables): 16-bit linear
//! samples, negative values folded with one's complement, so -1 and 0 both land on the smallest
//! magnitude. Encoding 160 samples this way costs about 2 µs (performance.md §3.2): not worth a
//! 64 KiB table per process yet.

/// The phone leg's codec. `call` maps `sip`'s negotiated codec onto this.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum G711 {
    /// µ-law, static payload type 0.
    Pcmu,
    /// A-law, static payload type 8.
    Pcma,
}

impl G711 {
    pub fn encode_sample(self, sample: i16) -> u8 {
        match self {
            G711::Pcmu => ulaw_encode(sample),
            G711::Pcma => alaw_encode(sample),
        }
    }

    pub fn decode_sample(self, code: u8) -> i16 {
        match self {
            G711::Pcmu => ulaw_decode(code),
            G711::Pcma => alaw_decode(code),
        }
    }

    /// Encodes `pcm` into `out` (one byte per sample, `out` is cleared first).
    pub fn encode(self, pcm: &[i16], out: &mut Vec<u8>) {
        out.clear();
        out.extend(pcm.iter().map(|&s| self.encode_sample(s)));
    }

    /// Decodes `codes` onto the end of `out`.
    pub fn decode(self, codes: &[u8], out: &mut Vec<i16>) {
        out.extend(codes.iter().map(|&c| self.decode_sample(c)));
    }
}

/// Magnitude with negative values folded by one's complement (`-1 → 0`, `-32768 → 32767`).
fn folded_magnitude(sample: i16) -> i32 {
    let s = i32::from(sample);
    if s < 0 {
        !s
    } else {
        s
    }
}

pub fn ulaw_encode(sample: i16) -> u8 {
    // 14-bit magnitude plus the µ-law bias of 33, clipped at the top of segment 8.
    let biased = ((folded_magnitude(sample) >> 2) + 33).min(0x1FFF);
    // Segment 1..=8: the position of the highest bit above bit 5.
    let segment = 32 - ((biased >> 6) as u32).leading_zeros();
    let segment = segment as i32 + 1;
    let mantissa = 0x0F - ((biased >> segment) & 0x0F);
    let code = ((8 - segment) << 4) | mantissa;
    if sample >= 0 {
        (code | 0x80) as u8
    } else {
        code as u8
    }
}

pub fn ulaw_decode(code: u8) -> i16 {
    let inverted = !code;
    let exponent = i32::from((inverted >> 4) & 0x07);
    let mantissa = i32::from(inverted & 0x0F);
    let step = 4 << (exponent + 1);
    let magnitude = (0x80 << exponent) + step * mantissa + step / 2 - 4 * 33;
    if code < 0x80 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

pub fn alaw_encode(sample: i16) -> u8 {
    // 12-bit magnitude; segment 0 is linear, segments 1..=7 keep four bits below the leading one.
    let mut ix = folded_magnitude(sample) >> 4;
    if ix > 15 {
        let mut exponent = 1;
        while ix > 16 + 15 {
            ix >>= 1;
            exponent += 1;
        }
        ix = (ix - 16) + (exponent << 4);
    }
    if sample >= 0 {
        ix |= 0x80;
    }
    (ix ^ 0x55) as u8
}

pub fn alaw_decode(code: u8) -> i16 {
    let ix = i32::from(code ^ 0x55) & 0x7F;
    let exponent = ix >> 4;
    let mut mantissa = ix & 0x0F;
    if exponent > 0 {
        mantissa += 16;
    }
    let mut magnitude = (mantissa << 4) + 8;
    if exponent > 1 {
        magnitude <<= exponent - 1;
    }
    if code > 127 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Samples of the 0 dBm0 "digital milliwatt" (1 kHz sine at 8 kHz, phase π/8) for a law whose
    /// full-load sine (peak `full_scale`) is `t_max_db` above 0 dBm0.
    fn digital_milliwatt(full_scale: f64, t_max_db: f64) -> [i16; 8] {
        let peak = full_scale / 10f64.powf(t_max_db / 20.0);
        let mut out = [0i16; 8];
        for (k, s) in out.iter_mut().enumerate() {
            // The ITU sequence starts in the negative half cycle.
            let phase = std::f64::consts::PI / 8.0 + k as f64 * std::f64::consts::PI / 4.0;
            *s = (-peak * phase.sin()).round() as i16;
        }
        out
    }

    /// The A-law T_max in dB above 0 dBm0 (a level that happens to look like π to clippy).
    #[allow(clippy::approx_constant)]
    const A_LAW_T_MAX_DB: f64 = 3.14;

    #[test]
    fn the_digital_milliwatt_encodes_to_the_itu_sequences() {
        // G.711 Table 5 (µ-law, T_max = +3.17 dBm0) and Table 6 (A-law, T_max = +3.14 dBm0).
        let mu: Vec<u8> = digital_milliwatt(32636.0, 3.17)
            .iter()
            .map(|&s| ulaw_encode(s))
            .collect();
        assert_eq!(mu, [0x1E, 0x0B, 0x0B, 0x1E, 0x9E, 0x8B, 0x8B, 0x9E]);
        let a: Vec<u8> = digital_milliwatt(32768.0, A_LAW_T_MAX_DB)
            .iter()
            .map(|&s| alaw_encode(s))
            .collect();
        assert_eq!(a, [0x34, 0x21, 0x21, 0x34, 0xB4, 0xA1, 0xA1, 0xB4]);
    }

    #[test]
    fn decoding_gives_the_itu_reconstruction_values() {
        // µ-law: 0xFF and 0x7F are ±0, 0x80/0x00 the largest (8031 in 14 bits, ×4 = 32124).
        assert_eq!(ulaw_decode(0xFF), 0);
        assert_eq!(ulaw_decode(0x7F), 0);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_decode(0xFE), 8); // smallest step: 2 in 14 bits
        assert_eq!(ulaw_decode(0x9E), 8828);
        // A-law: 0xD5/0x55 are ±1 in 13 bits (±8), 0xAA/0x2A the largest (4032 ×8 = 32256).
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xAA), 32256);
        assert_eq!(alaw_decode(0x2A), -32256);
        assert_eq!(alaw_decode(0xB4), 8960);
    }

    #[test]
    fn silence_and_extremes_encode_to_the_expected_codes() {
        assert_eq!(ulaw_encode(0), 0xFF);
        assert_eq!(ulaw_encode(-1), 0x7F);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
    }

    #[test]
    fn every_code_survives_decode_then_encode() {
        for code in 0..=255u8 {
            let back = ulaw_encode(ulaw_decode(code));
            // µ-law has two zeros; negative zero decodes to 0 and comes back as positive zero.
            let want = if code == 0x7F { 0xFF } else { code };
            assert_eq!(back, want, "µ-law code {code:#04x}");
            assert_eq!(
                alaw_encode(alaw_decode(code)),
                code,
                "A-law code {code:#04x}"
            );
        }
    }

    #[test]
    fn decoded_values_are_monotonic_in_the_magnitude_bits() {
        // Walking the positive codes from smallest to largest magnitude must only go up.
        let mu: Vec<i16> = (0x80..=0xFFu8).rev().map(ulaw_decode).collect();
        assert!(mu.windows(2).all(|w| w[0] < w[1]), "{mu:?}");
        let a: Vec<i16> = (0..128u8).map(|m| alaw_decode((m | 0x80) ^ 0x55)).collect();
        assert!(a.windows(2).all(|w| w[0] < w[1]), "{a:?}");
    }

    #[test]
    fn encoding_error_stays_within_half_a_step() {
        // Every 16-bit value quantises to the nearest reconstruction level of its segment.
        for law in [G711::Pcmu, G711::Pcma] {
            for s in (i16::MIN..=i16::MAX).step_by(7) {
                let back = i32::from(law.decode_sample(law.encode_sample(s)));
                let err = (back - i32::from(s)).abs();
                // The largest step is 1024 (µ-law) / 1024 (A-law) at the top segment; clipping at
                // the extremes adds what lies beyond the last level.
                let limit = 512 + (i32::from(s).abs() - 32124).max(0) + 8;
                assert!(err <= limit, "{law:?} {s} → {back} (error {err})");
            }
        }
    }

    #[test]
    fn frames_round_trip_through_the_byte_form() {
        let pcm: Vec<i16> = (0..160).map(|i| (i * 300 - 24000) as i16).collect();
        for law in [G711::Pcmu, G711::Pcma] {
            let mut bytes = Vec::new();
            law.encode(&pcm, &mut bytes);
            assert_eq!(bytes.len(), 160);
            let mut back = Vec::new();
            law.decode(&bytes, &mut back);
            assert_eq!(back.len(), 160);
            for (a, b) in pcm.iter().zip(&back) {
                assert!((i32::from(*a) - i32::from(*b)).abs() <= 1024);
            }
        }
    }
}
