//! Opus at the phone rate (8 kHz mono) over the system libopus (audiopus).
//!
//! Both directions run natively at 8 kHz: libopus resamples internally when decoding a 48 kHz
//! stream and encodes narrowband SILK from 8 kHz input, so the phone path needs no resampler and
//! the encoder costs about half of a 48 kHz one (performance.md §3.2, §3.7).

use audiopus::coder::{Decoder, Encoder};
use audiopus::{Application, Bitrate, Channels, SampleRate, Signal};

use super::{Frame, FRAME_SAMPLES};
use crate::config::MediaSettings;

/// The longest Opus packet (120 ms) at 8 kHz.
pub const MAX_PACKET_SAMPLES: usize = 960;
/// More than any 20 ms narrowband packet can take (libopus recommends 1275 per frame at most).
const MAX_PACKET_BYTES: usize = 1500;

#[derive(Debug, thiserror::Error)]
#[error("libopus: {0}")]
pub struct OpusError(String);

impl From<audiopus::Error> for OpusError {
    fn from(e: audiopus::Error) -> Self {
        OpusError(e.to_string())
    }
}

/// The phone's voice towards the conference: 20 ms frames of 8 kHz mono in, Opus packets out.
pub struct OpusEncoder {
    encoder: Encoder,
    dtx: bool,
    fec: bool,
    out: Vec<u8>,
}

impl OpusEncoder {
    /// An encoder set up from the media settings. In-band FEC is enabled (if configured) but only
    /// costs anything once [`OpusEncoder::set_expected_loss`] reports loss.
    pub fn new(settings: &MediaSettings) -> Result<OpusEncoder, OpusError> {
        let mut encoder = Encoder::new(SampleRate::Hz8000, Channels::Mono, Application::Voip)?;
        encoder.set_complexity(settings.opus_complexity)?;
        let bitrate = i32::try_from(settings.opus_bitrate)
            .map_err(|_| OpusError(format!("bitrate {} too large", settings.opus_bitrate)))?;
        encoder.set_bitrate(Bitrate::BitsPerSecond(bitrate))?;
        encoder.set_signal(Signal::Voice)?;
        encoder.set_inband_fec(settings.opus_fec)?;
        encoder.set_dtx(settings.opus_dtx)?;
        encoder.set_packet_loss_perc(0)?;
        Ok(OpusEncoder {
            encoder,
            dtx: settings.opus_dtx,
            fec: settings.opus_fec,
            out: vec![0; MAX_PACKET_BYTES],
        })
    }

    /// Encodes one frame. `None` means DTX: libopus judged the frame silent and it need not be
    /// sent (a packet of at most 2 bytes, RFC 7587 §3.1.3).
    pub fn encode(&mut self, frame: &Frame) -> Result<Option<&[u8]>, OpusError> {
        let n = self.encoder.encode(frame, &mut self.out)?;
        if self.dtx && n <= 2 {
            return Ok(None);
        }
        Ok(Some(&self.out[..n]))
    }

    /// Tells the encoder how much loss the receiver reports (percent), which decides how much
    /// in-band FEC it adds. Ignored when FEC is off.
    pub fn set_expected_loss(&mut self, percent: u8) -> Result<(), OpusError> {
        if self.fec {
            self.encoder.set_packet_loss_perc(percent.min(100))?;
        }
        Ok(())
    }
}

/// One conference speaker's stream: any Opus packet in, 8 kHz mono out.
pub struct OpusDecoder {
    decoder: Decoder,
    scratch: Vec<i16>,
}

impl OpusDecoder {
    pub fn new() -> Result<OpusDecoder, OpusError> {
        Ok(OpusDecoder {
            decoder: Decoder::new(SampleRate::Hz8000, Channels::Mono)?,
            scratch: vec![0; MAX_PACKET_SAMPLES],
        })
    }

    /// Decodes a packet (any mode, bandwidth or channel count; stereo is mixed down) and appends
    /// its samples to `out`. Returns how many were appended.
    pub fn decode(&mut self, packet: &[u8], out: &mut Vec<i16>) -> Result<usize, OpusError> {
        let packet = audiopus::packet::Packet::try_from(packet)?;
        let signals = audiopus::MutSignals::try_from(&mut self.scratch[..])?;
        let n = self.decoder.decode(Some(packet), signals, false)?;
        out.extend_from_slice(&self.scratch[..n]);
        Ok(n)
    }

    /// Packet loss concealment for one lost 20 ms frame, appended to `out`.
    pub fn conceal(&mut self, out: &mut Vec<i16>) -> Result<(), OpusError> {
        let signals = audiopus::MutSignals::try_from(&mut self.scratch[..FRAME_SAMPLES])?;
        let n = self.decoder.decode(None, signals, false)?;
        out.extend_from_slice(&self.scratch[..n]);
        Ok(())
    }

    /// Rebuilds a lost 20 ms frame from the in-band FEC carried by the packet after it, appended
    /// to `out`. Without FEC data in `next`, libopus falls back to concealment by itself.
    pub fn recover(&mut self, next: &[u8], out: &mut Vec<i16>) -> Result<(), OpusError> {
        let packet = audiopus::packet::Packet::try_from(next)?;
        let signals = audiopus::MutSignals::try_from(&mut self.scratch[..FRAME_SAMPLES])?;
        let n = self.decoder.decode(Some(packet), signals, true)?;
        out.extend_from_slice(&self.scratch[..n]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PortRange;
    use crate::media::test_tones::{goertzel_db, tone_frames};

    fn settings(fec: bool, dtx: bool) -> MediaSettings {
        MediaSettings {
            ports: PortRange::new(20000, 20050).unwrap(),
            opus_complexity: 5,
            opus_bitrate: 20_000,
            opus_fec: fec,
            opus_dtx: dtx,
            bind_ip: std::net::IpAddr::from([0, 0, 0, 0]),
        }
    }

    fn round_trip(frames: &[Frame], fec: bool, dtx: bool) -> Vec<i16> {
        let mut enc = OpusEncoder::new(&settings(fec, dtx)).unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = Vec::new();
        for f in frames {
            match enc.encode(f).unwrap() {
                Some(p) => {
                    assert!(
                        p.len() < 200,
                        "20 kbit/s is 50 bytes a frame, got {}",
                        p.len()
                    );
                    assert_eq!(dec.decode(p, &mut out).unwrap(), FRAME_SAMPLES);
                }
                None => dec.conceal(&mut out).unwrap(),
            }
        }
        out
    }

    #[test]
    fn a_tone_survives_encode_and_decode_at_8_khz_on_its_frequency() {
        let frames = tone_frames(&[(440.0, 0.3)], 100, 0);
        let out = round_trip(&frames, false, false);
        assert_eq!(out.len(), 100 * FRAME_SAMPLES);
        // Skip the first 200 ms (codec start-up), look at the rest.
        let tail = &out[1600..];
        let at_440 = goertzel_db(tail, 440.0);
        assert!(at_440 > -16.0, "440 Hz at {at_440:.1} dBFS");
        for other in [300.0, 600.0, 1100.0] {
            let level = goertzel_db(tail, other);
            assert!(level < at_440 - 25.0, "{other} Hz at {level:.1} dB");
        }
    }

    #[test]
    fn dtx_sends_nothing_for_silence_but_still_sends_speech() {
        let mut enc = OpusEncoder::new(&settings(false, true)).unwrap();
        let silence = [0i16; FRAME_SAMPLES];
        let sent = (0..100)
            .filter(|_| enc.encode(&silence).unwrap().is_some())
            .count();
        assert!(sent < 20, "{sent} of 100 silent frames sent");
        let tone = tone_frames(&[(500.0, 0.3)], 20, 0);
        let sent = tone
            .iter()
            .filter(|f| enc.encode(f).unwrap().is_some())
            .count();
        assert_eq!(sent, 20);
    }

    #[test]
    fn a_lost_packet_is_rebuilt_from_the_next_packets_fec() {
        // Speech-like: three partials under a 3 Hz syllable envelope. (SILK sends FEC only for
        // frames its VAD finds active, which a steady tone stops being after a while.)
        let frames: Vec<Frame> = tone_frames(&[(300.0, 0.2), (700.0, 0.15), (1200.0, 0.1)], 100, 0)
            .iter()
            .enumerate()
            .map(|(f, frame)| {
                let mut out = *frame;
                for (i, s) in out.iter_mut().enumerate() {
                    let t = (f * FRAME_SAMPLES + i) as f64 / 8000.0;
                    let envelope = 0.6 + 0.4 * (2.0 * std::f64::consts::PI * 3.0 * t).sin();
                    *s = (f64::from(*s) * envelope) as i16;
                }
                out
            })
            .collect();
        let mut enc = OpusEncoder::new(&settings(true, false)).unwrap();
        enc.set_expected_loss(20).unwrap();
        let packets: Vec<Vec<u8>> = frames
            .iter()
            .map(|f| enc.encode(f).unwrap().unwrap().to_vec())
            .collect();
        let lost = [10usize, 40, 70];
        // Decode with those packets lost: rebuilt from the next packet's FEC, or concealed.
        let decode_with = |fec: bool| {
            let mut dec = OpusDecoder::new().unwrap();
            let mut out = Vec::new();
            for (i, p) in packets.iter().enumerate() {
                if !lost.contains(&i) {
                    dec.decode(p, &mut out).unwrap();
                } else if fec {
                    dec.recover(&packets[i + 1], &mut out).unwrap();
                } else {
                    dec.conceal(&mut out).unwrap();
                }
            }
            out
        };
        let reference = {
            let mut dec = OpusDecoder::new().unwrap();
            let mut out = Vec::new();
            for p in &packets {
                dec.decode(p, &mut out).unwrap();
            }
            out
        };
        // How far the lost frames are from what their packets held.
        let error = |decoded: &[i16]| -> f64 {
            lost.iter()
                .flat_map(|&i| i * FRAME_SAMPLES..(i + 1) * FRAME_SAMPLES)
                .map(|n| (f64::from(decoded[n]) - f64::from(reference[n])).powi(2))
                .sum::<f64>()
        };
        let (e_fec, e_plc) = (error(&decode_with(true)), error(&decode_with(false)));
        assert!(
            e_fec * 2.0 < e_plc,
            "FEC error {e_fec:.0}, concealment error {e_plc:.0}"
        );
    }

    #[test]
    fn a_48_khz_stereo_packet_decodes_to_8_khz_mono() {
        let enc = Encoder::new(SampleRate::Hz48000, Channels::Stereo, Application::Voip).unwrap();
        // 20 ms of a 1 kHz tone, the same on both channels.
        let pcm: Vec<i16> = (0..960)
            .flat_map(|i| {
                let v = (10000.0 * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / 48000.0).sin())
                    as i16;
                [v, v]
            })
            .collect();
        let mut buf = [0u8; 1500];
        let n = enc.encode(&pcm, &mut buf).unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = Vec::new();
        assert_eq!(dec.decode(&buf[..n], &mut out).unwrap(), FRAME_SAMPLES);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut dec = OpusDecoder::new().unwrap();
        let mut out = Vec::new();
        assert!(dec.decode(&[], &mut out).is_err());
        // A TOC byte announcing a code-3 packet with an impossible frame count.
        assert!(dec.decode(&[0x03, 0xFF], &mut out).is_err());
        assert!(dec.recover(&[], &mut out).is_err());
    }
}
