//! RTP (RFC 3550) headers for the plain phone leg, and RFC 4733 telephone-event payloads.
//!
//! The phone leg is the only place reading RTP itself (str0m does the conference leg). Parsing
//! never panics: anything a network peer can send either parses or is a typed [`RtpError`].

/// Why a datagram is not an RTP packet we can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("datagram of {0} bytes is shorter than an RTP header")]
    TooShort(usize),
    #[error("RTP version {0}, expected 2")]
    BadVersion(u8),
    #[error("payload type {0} is RTCP (rtcp-mux), not RTP")]
    Rtcp(u8),
    #[error("CSRC list ({0} entries) runs past the end of the packet")]
    TruncatedCsrc(u8),
    #[error("header extension runs past the end of the packet")]
    TruncatedExtension,
    #[error("padding of {padding} bytes does not fit a payload of {available}")]
    BadPadding { padding: usize, available: usize },
}

/// A parsed RTP packet borrowing its payload from the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

const FIXED_HEADER: usize = 12;

impl<'a> RtpPacket<'a> {
    /// Parses one datagram; CSRCs, the header extension and padding are skipped.
    pub fn parse(data: &'a [u8]) -> Result<RtpPacket<'a>, RtpError> {
        if data.len() < FIXED_HEADER {
            return Err(RtpError::TooShort(data.len()));
        }
        let version = data[0] >> 6;
        if version != 2 {
            return Err(RtpError::BadVersion(version));
        }
        let has_padding = data[0] & 0x20 != 0;
        let has_extension = data[0] & 0x10 != 0;
        let csrc_count = data[0] & 0x0F;
        // RTCP packet types 200-204 (and the rest of 192-223) show up as PT 64-95 with the
        // marker bit set when RTCP is multiplexed onto the RTP port (RFC 5761 §4).
        if (192..=223).contains(&data[1]) {
            return Err(RtpError::Rtcp(data[1]));
        }
        let marker = data[1] & 0x80 != 0;
        let payload_type = data[1] & 0x7F;
        let seq = u16::from_be_bytes([data[2], data[3]]);
        let timestamp = u32::from_be_bytes([data[4], data[5], data[6], data[7]]);
        let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);

        let mut start = FIXED_HEADER + 4 * usize::from(csrc_count);
        if start > data.len() {
            return Err(RtpError::TruncatedCsrc(csrc_count));
        }
        if has_extension {
            let ext = data
                .get(start..start + 4)
                .ok_or(RtpError::TruncatedExtension)?;
            let words = usize::from(u16::from_be_bytes([ext[2], ext[3]]));
            start += 4 + 4 * words;
            if start > data.len() {
                return Err(RtpError::TruncatedExtension);
            }
        }
        let mut end = data.len();
        if has_padding {
            let available = end - start;
            let padding = usize::from(data[end - 1]);
            if padding == 0 || padding > available {
                return Err(RtpError::BadPadding { padding, available });
            }
            end -= padding;
        }
        Ok(RtpPacket {
            marker,
            payload_type,
            seq,
            timestamp,
            ssrc,
            payload: &data[start..end],
        })
    }

    /// Writes this packet (no CSRC, no extension, no padding) into `out`, replacing its contents.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(FIXED_HEADER + self.payload.len());
        out.push(0x80);
        out.push((u8::from(self.marker) << 7) | (self.payload_type & 0x7F));
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(self.payload);
    }
}

/// Why a telephone-event payload cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TelephoneEventError {
    #[error("telephone-event payload of {0} bytes, need 4")]
    TooShort(usize),
}

/// One RFC 4733 §2.3 event block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code: 0-9 digits, 10 `*`, 11 `#`, 12-15 A-D, others are non-DTMF events.
    pub event: u8,
    /// The E bit: this packet ends the event.
    pub end: bool,
    /// Power level in -dBm0, 0-63.
    pub volume: u8,
    /// Duration so far, in RTP timestamp units (8 kHz for telephone-event/8000).
    pub duration: u16,
}

impl TelephoneEvent {
    /// Reads the first event block; further (redundant) blocks are ignored.
    pub fn parse(payload: &[u8]) -> Result<TelephoneEvent, TelephoneEventError> {
        let [event, flags, d0, d1, ..] = *payload else {
            return Err(TelephoneEventError::TooShort(payload.len()));
        };
        Ok(TelephoneEvent {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3F,
            duration: u16::from_be_bytes([d0, d1]),
        })
    }

    pub fn to_bytes(self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (u8::from(self.end) << 7) | (self.volume & 0x3F),
            d[0],
            d[1],
        ]
    }

    /// The DTMF key of this event, if it is one (`0-9`, `*`, `#`, `A-D`).
    pub fn digit(self) -> Option<char> {
        dtmf_digit(self.event)
    }
}

/// RFC 4733 §3.2 event code → DTMF key.
pub fn dtmf_digit(event: u8) -> Option<char> {
    match event {
        0..=9 => Some(char::from(b'0' + event)),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some(char::from(b'A' + event - 12)),
        _ => None,
    }
}

/// DTMF key → RFC 4733 event code (case-insensitive for A-D).
pub fn dtmf_event(digit: char) -> Option<u8> {
    match digit {
        '0'..='9' => Some(digit as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        'A'..='D' => Some(digit as u8 - b'A' + 12),
        'a'..='d' => Some(digit as u8 - b'a' + 12),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(first: u8, second: u8) -> Vec<u8> {
        vec![
            first, second, 0x12, 0x34, 0, 0, 0x03, 0x20, 0xDE, 0xAD, 0xBE, 0xEF,
        ]
    }

    #[test]
    fn a_plain_pcmu_packet_parses_into_its_fields() {
        let mut data = header(0x80, 0x80); // marker, PT 0
        data.extend_from_slice(&[0xFF; 160]);
        let p = RtpPacket::parse(&data).unwrap();
        assert!(p.marker);
        assert_eq!(p.payload_type, 0);
        assert_eq!(p.seq, 0x1234);
        assert_eq!(p.timestamp, 800);
        assert_eq!(p.ssrc, 0xDEADBEEF);
        assert_eq!(p.payload.len(), 160);
    }

    #[test]
    fn csrcs_extension_and_padding_are_skipped() {
        let mut data = header(0x80 | 0x20 | 0x10 | 2, 8); // padding, extension, 2 CSRCs, PCMA
        data.extend_from_slice(&[1, 1, 1, 1, 2, 2, 2, 2]); // CSRCs
        data.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x01, 0x10, 0x7F, 0, 0]); // one-byte ext, 1 word
        data.extend_from_slice(&[0xAB; 80]);
        data.extend_from_slice(&[0, 0, 3]); // 3 bytes of padding
        let p = RtpPacket::parse(&data).unwrap();
        assert_eq!(p.payload_type, 8);
        assert_eq!(p.payload, &[0xAB; 80][..]);
    }

    #[test]
    fn built_packets_parse_back_unchanged() {
        let payload = [1u8, 2, 3, 4, 5];
        let p = RtpPacket {
            marker: false,
            payload_type: 101,
            seq: 65535,
            timestamp: u32::MAX,
            ssrc: 7,
            payload: &payload,
        };
        let mut out = Vec::new();
        p.write(&mut out);
        assert_eq!(out.len(), 17);
        assert_eq!(RtpPacket::parse(&out).unwrap(), p);
    }

    #[test]
    fn malformed_datagrams_are_typed_errors() {
        assert_eq!(RtpPacket::parse(&[]), Err(RtpError::TooShort(0)));
        assert_eq!(RtpPacket::parse(&[0x80; 11]), Err(RtpError::TooShort(11)));
        assert_eq!(
            RtpPacket::parse(&header(0x40, 0)),
            Err(RtpError::BadVersion(1))
        );
        // An RTCP receiver report (PT 201) arriving on the RTP port.
        assert_eq!(
            RtpPacket::parse(&header(0x81, 201)),
            Err(RtpError::Rtcp(201))
        );
        assert_eq!(
            RtpPacket::parse(&header(0x8F, 0)),
            Err(RtpError::TruncatedCsrc(15))
        );
        let mut ext = header(0x90, 0);
        ext.extend_from_slice(&[0xBE, 0xDE, 0x00, 0x05, 0, 0]);
        assert_eq!(RtpPacket::parse(&ext), Err(RtpError::TruncatedExtension));
        let mut short_ext = header(0x90, 0);
        short_ext.extend_from_slice(&[0xBE, 0xDE]);
        assert_eq!(
            RtpPacket::parse(&short_ext),
            Err(RtpError::TruncatedExtension)
        );
        let mut zero_pad = header(0xA0, 0);
        zero_pad.extend_from_slice(&[1, 2, 0]);
        assert_eq!(
            RtpPacket::parse(&zero_pad),
            Err(RtpError::BadPadding {
                padding: 0,
                available: 3
            })
        );
        let mut over_pad = header(0xA0, 0);
        over_pad.extend_from_slice(&[1, 9]);
        assert_eq!(
            RtpPacket::parse(&over_pad),
            Err(RtpError::BadPadding {
                padding: 9,
                available: 2
            })
        );
    }

    #[test]
    fn a_header_only_packet_has_an_empty_payload() {
        let data = header(0x80, 0);
        assert!(RtpPacket::parse(&data).unwrap().payload.is_empty());
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic generator: every length up to 80, many byte patterns.
        let mut x: u32 = 0x1234_5678;
        for len in 0..80 {
            for _ in 0..200 {
                let data: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x as u8
                    })
                    .collect();
                if let Ok(p) = RtpPacket::parse(&data) {
                    assert!(p.payload.len() + 12 <= data.len());
                }
                let _ = TelephoneEvent::parse(&data);
            }
        }
    }

    #[test]
    fn telephone_events_parse_and_build() {
        // '5', end bit, volume 10, 800 samples (100 ms).
        let e = TelephoneEvent::parse(&[5, 0x8A, 0x03, 0x20]).unwrap();
        assert_eq!(
            e,
            TelephoneEvent {
                event: 5,
                end: true,
                volume: 10,
                duration: 800
            }
        );
        assert_eq!(e.digit(), Some('5'));
        assert_eq!(e.to_bytes(), [5, 0x8A, 0x03, 0x20]);
        // The reserved bit is ignored on reading.
        let r = TelephoneEvent::parse(&[11, 0x40 | 7, 0, 160, 99, 99]).unwrap();
        assert!(!r.end);
        assert_eq!(r.volume, 7);
        assert_eq!(r.digit(), Some('#'));
        assert_eq!(
            TelephoneEvent::parse(&[1, 2, 3]),
            Err(TelephoneEventError::TooShort(3))
        );
    }

    #[test]
    fn dtmf_keys_map_both_ways() {
        for (key, code) in [
            ('0', 0),
            ('9', 9),
            ('*', 10),
            ('#', 11),
            ('A', 12),
            ('D', 15),
        ] {
            assert_eq!(dtmf_event(key), Some(code));
            assert_eq!(dtmf_digit(code), Some(key));
        }
        assert_eq!(dtmf_event('d'), Some(15));
        assert_eq!(dtmf_event('x'), None);
        assert_eq!(dtmf_digit(16), None); // flash hook is not a key
    }
}
