//! Our side as the offerer (dial-out): the offer in the INVITE and what the callee's answer
//! settles (RFC 3264 §5 and §7).

use super::{negotiate, Negotiated, SdpError, SdpOffer, G711};
use std::fmt::Write as _;
use std::net::IpAddr;

/// RFC 4733 events in our offers; 101 is what phones and PBXs expect by habit.
pub const OFFER_TELEPHONE_EVENT_PT: u8 = 101;

/// The offer of a dial-out: one audio stream at `local_ip:local_port`, the codecs in our order of
/// preference with their static payload types, telephone-event, 20 ms packets, sendrecv.
pub fn offer(codecs: &[G711], local_ip: IpAddr, local_port: u16, session_id: u64) -> String {
    let addr_type = if local_ip.is_ipv6() { "IP6" } else { "IP4" };
    let te = OFFER_TELEPHONE_EVENT_PT;
    let mut s = String::new();
    // `write!` to a String cannot fail.
    let _ = write!(
        s,
        "v=0\r\no=- {session_id} {session_id} IN {addr_type} {local_ip}\r\ns=-\r\n\
         c=IN {addr_type} {local_ip}\r\nt=0 0\r\nm=audio {local_port} RTP/AVP"
    );
    for c in codecs {
        let _ = write!(s, " {}", c.static_pt());
    }
    let _ = write!(s, " {te}\r\n");
    for c in codecs {
        let _ = write!(
            s,
            "a=rtpmap:{} {}/8000\r\n",
            c.static_pt(),
            c.encoding_name()
        );
    }
    let _ = write!(
        s,
        "a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
    );
    s
}

/// What the callee's answer to [`offer`]`(codecs, …)` settles: the first of the answer's codecs
/// that we offered (the answerer lists its preference first), its address, and whether it took
/// telephone-event. An answer that takes none of our codecs, or refuses the stream, fails.
pub fn accept_answer(codecs: &[G711], answer: &[u8]) -> Result<Negotiated, SdpError> {
    let parsed = SdpOffer::parse(answer)?;
    let audio = parsed
        .media
        .iter()
        .find(|m| m.media == "audio" && m.port != 0 && m.is_plain_rtp())
        .ok_or(SdpError::NoAudio)?;
    let order: Vec<G711> = audio
        .payload_types
        .iter()
        .filter_map(|p| p.g711())
        .filter(|c| codecs.contains(c))
        .collect();
    // `negotiate` mirrors the answer's direction, which is ours (RFC 3264 §6.1).
    negotiate(&parsed, &order)
}

#[cfg(test)]
mod tests {
    use super::super::Direction;
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr};

    const CODECS: &[G711] = &[G711::Pcmu, G711::Pcma];
    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));

    #[test]
    fn our_offer_reads_back_as_pcmu_then_pcma_with_telephone_event() {
        let text = offer(CODECS, LOCAL, 40000, 77);
        assert!(text.ends_with("\r\n") && !text.contains("\n\n"), "{text:?}");
        let parsed = SdpOffer::parse(text.as_bytes()).unwrap();
        assert_eq!(
            parsed.audio_codec_names(),
            ["PCMU", "PCMA", "telephone-event/8000"]
        );
        let n = negotiate(&parsed, CODECS).unwrap();
        assert_eq!(n.remote_rtp, SocketAddr::new(LOCAL, 40000));
        assert_eq!(n.telephone_event_pt, Some(OFFER_TELEPHONE_EVENT_PT));
        assert_eq!(n.direction, Direction::SendRecv);
        assert!(text.contains("o=- 77 77 IN IP4 192.0.2.7\r\n"), "{text}");
        assert!(text.contains("a=fmtp:101 0-15\r\na=ptime:20\r\n"), "{text}");
    }

    #[test]
    fn an_ipv6_offer_says_ip6() {
        let text = offer(&[G711::Pcma], "2001:db8::5".parse().unwrap(), 4000, 1);
        assert!(text.contains("c=IN IP6 2001:db8::5\r\n"), "{text}");
        assert!(text.contains("m=audio 4000 RTP/AVP 8 101\r\n"), "{text}");
    }

    #[test]
    fn the_answer_s_first_codec_wins_even_when_we_preferred_another() {
        let answer = b"v=0\r\no=bob 1 1 IN IP4 127.0.0.9\r\ns=-\r\nc=IN IP4 127.0.0.9\r\n\
t=0 0\r\nm=audio 5006 RTP/AVP 8 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n";
        let n = accept_answer(CODECS, answer).unwrap();
        assert_eq!((n.codec, n.codec_pt), (G711::Pcma, 8));
        assert_eq!(n.telephone_event_pt, Some(101));
        assert_eq!(n.remote_rtp, "127.0.0.9:5006".parse().unwrap());
        assert_eq!(n.direction, Direction::SendRecv);
    }

    #[test]
    fn a_callee_that_only_receives_makes_us_send_only() {
        let answer = b"v=0\r\no=- 1 1 IN IP4 127.0.0.9\r\ns=-\r\nc=IN IP4 127.0.0.9\r\n\
t=0 0\r\nm=audio 5006 RTP/AVP 0\r\na=recvonly\r\n";
        let n = accept_answer(CODECS, answer).unwrap();
        assert_eq!(n.direction, Direction::SendOnly);
        assert_eq!(n.telephone_event_pt, None);
    }

    #[test]
    fn an_answer_refusing_the_stream_or_our_codecs_fails() {
        let refused = b"v=0\r\no=- 1 1 IN IP4 127.0.0.9\r\ns=-\r\nc=IN IP4 127.0.0.9\r\n\
t=0 0\r\nm=audio 0 RTP/AVP 0\r\n";
        assert_eq!(accept_answer(CODECS, refused), Err(SdpError::NoAudio));
        let g729 = b"v=0\r\no=- 1 1 IN IP4 127.0.0.9\r\ns=-\r\nc=IN IP4 127.0.0.9\r\n\
t=0 0\r\nm=audio 5006 RTP/AVP 18\r\n";
        assert_eq!(accept_answer(CODECS, g729), Err(SdpError::NoCommonCodec));
        assert!(matches!(
            accept_answer(CODECS, b"not sdp"),
            Err(SdpError::Malformed { .. })
        ));
    }
}
