use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../../tests/fixtures/sip/sdp/", $name)).as_slice()
    };
}

const PREFS: &[G711] = &[G711::Pcmu, G711::Pcma];

fn neg(body: &[u8]) -> Result<Negotiated, SdpError> {
    negotiate(&SdpOffer::parse(body)?, PREFS)
}

fn v4(a: u8, b: u8, c: u8, d: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(a, b, c, d)), port)
}

fn lines(sdp: &str) -> Vec<&str> {
    assert!(sdp.ends_with("\r\n"), "answer lines end with CRLF: {sdp:?}");
    sdp.split("\r\n").filter(|l| !l.is_empty()).collect()
}

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10));

#[test]
fn baresip_offer_gives_pcmu_with_its_telephone_event() {
    let n = neg(fixture!("baresip-1.0.0.sdp")).unwrap();
    assert_eq!(n.codec, G711::Pcmu);
    assert_eq!(n.codec_pt, 0);
    assert_eq!(n.telephone_event_pt, Some(101));
    assert_eq!(n.remote_rtp, v4(127, 0, 0, 1, 51700));
    assert_eq!(n.ptime_ms, 20);
    assert_eq!(n.direction, Direction::SendRecv);
}

#[test]
fn sipp_offer_with_pcmu_only_has_no_telephone_event() {
    let n = neg(fixture!("sipp-3.6.1-uac.sdp")).unwrap();
    assert_eq!((n.codec, n.codec_pt), (G711::Pcmu, 0));
    assert_eq!(n.telephone_event_pt, None);
    assert_eq!(n.remote_rtp, v4(127, 0, 0, 1, 6000));
}

#[test]
fn pjsua_media_level_connection_and_8k_telephone_event_are_used() {
    let n = neg(fixture!("pjsua-2.x.sdp")).unwrap();
    assert_eq!(n.remote_rtp, v4(192, 168, 1, 20, 4000));
    // 120 is telephone-event/16000, 121 the 8 kHz one.
    assert_eq!(n.telephone_event_pt, Some(121));
    assert_eq!(n.codec, G711::Pcmu);
}

#[test]
fn linphone_video_line_is_refused_with_port_zero() {
    let n = neg(fixture!("linphone-5.sdp")).unwrap();
    assert_eq!(n.telephone_event_pt, Some(100));
    let sdp = answer(&n, LOCAL, 10000, 77);
    let l = lines(&sdp);
    let m_lines: Vec<&&str> = l.iter().filter(|l| l.starts_with("m=")).collect();
    assert_eq!(
        m_lines,
        [&"m=audio 10000 RTP/AVP 0 100", &"m=video 0 RTP/AVP 96 97"]
    );
}

#[test]
fn our_preference_wins_over_the_offer_order() {
    // Asterisk lists PCMA first; we prefer PCMU and it is offered.
    let n = neg(fixture!("asterisk-pjsip.sdp")).unwrap();
    assert_eq!((n.codec, n.codec_pt), (G711::Pcmu, 0));
    let pcma_first = negotiate(
        &SdpOffer::parse(fixture!("asterisk-pjsip.sdp")).unwrap(),
        &[G711::Pcma, G711::Pcmu],
    )
    .unwrap();
    assert_eq!((pcma_first.codec, pcma_first.codec_pt), (G711::Pcma, 8));
}

#[test]
fn maxptime_above_20_keeps_20ms() {
    // Asterisk: a=maxptime:150.
    assert_eq!(neg(fixture!("asterisk-pjsip.sdp")).unwrap().ptime_ms, 20);
}

#[test]
fn freeswitch_offer_with_g722_and_opus_first_falls_back_to_g711() {
    let n = neg(fixture!("freeswitch.sdp")).unwrap();
    assert_eq!((n.codec, n.telephone_event_pt), (G711::Pcmu, Some(101)));
    assert_eq!(n.remote_rtp, v4(10, 0, 0, 6, 24662));
}

#[test]
fn jigasi_reference_offer_negotiates_pcmu() {
    let offer = SdpOffer::parse(fixture!("jigasi-docs-issue42.sdp")).unwrap();
    assert_eq!(
        offer.audio_codec_names(),
        [
            "opus/48000/2",
            "AMR-WB/16000",
            "G722/8000",
            "PCMU",
            "PCMA",
            "iLBC/8000",
            "telephone-event/8000"
        ]
    );
    let n = negotiate(&offer, PREFS).unwrap();
    assert_eq!((n.codec, n.telephone_event_pt), (G711::Pcmu, Some(101)));
    assert_eq!(n.remote_rtp, v4(172, 17, 0, 4, 20004));
}

#[test]
fn static_payload_types_need_no_rtpmap_and_lf_line_ends_parse() {
    let n = negotiate(
        &SdpOffer::parse(fixture!("static-pts-lf-only.sdp")).unwrap(),
        &[G711::Pcma],
    )
    .unwrap();
    assert_eq!((n.codec, n.codec_pt), (G711::Pcma, 8));
    assert_eq!(n.remote_rtp, v4(198, 51, 100, 7, 30000));
}

#[test]
fn ipv6_hold_offer_is_answered_recvonly_at_the_offered_maxptime() {
    let n = neg(fixture!("ipv6-hold-maxptime.sdp")).unwrap();
    assert_eq!(
        n.remote_rtp,
        SocketAddr::new(
            IpAddr::V6("2001:db8::7".parse::<Ipv6Addr>().unwrap()),
            40000
        )
    );
    // Session-level a=sendonly applies to the m-line.
    assert_eq!(n.direction, Direction::RecvOnly);
    assert_eq!(n.ptime_ms, 10);
    let local6: IpAddr = "2001:db8::1".parse().unwrap();
    let sdp = answer(&n, local6, 20000, 5);
    let l = lines(&sdp);
    assert!(l.contains(&"c=IN IP6 2001:db8::1"), "{sdp}");
    assert!(l.contains(&"o=- 5 5 IN IP6 2001:db8::1"), "{sdp}");
    assert!(l.contains(&"a=recvonly"), "{sdp}");
    assert!(l.contains(&"a=ptime:10"), "{sdp}");
}

#[test]
fn first_usable_audio_line_is_taken_and_the_others_refused_in_order() {
    let n = neg(fixture!("webrtc-then-plain.sdp")).unwrap();
    // The SAVPF line and the refused one are skipped; the third is plain RTP with PCMA.
    assert_eq!((n.codec, n.codec_pt), (G711::Pcma, 8));
    assert_eq!(n.remote_rtp, v4(203, 0, 113, 9, 50000));
    assert_eq!(n.direction, Direction::SendOnly);
    let sdp = answer(&n, LOCAL, 10002, 9);
    let m: Vec<&str> = lines(&sdp)
        .into_iter()
        .filter(|l| l.starts_with("m="))
        .collect();
    assert_eq!(
        m,
        [
            "m=audio 0 UDP/TLS/RTP/SAVPF 111 0",
            "m=audio 0 RTP/AVP 0",
            "m=audio 10002 RTP/AVP 8"
        ]
    );
}

#[test]
fn offer_without_our_codecs_is_no_common_codec_488() {
    let err = neg(fixture!("g729-only.sdp")).unwrap_err();
    assert_eq!(err, SdpError::NoCommonCodec);
    assert_eq!(err.status_code(), 488);
}

#[test]
fn offer_without_audio_is_no_audio_488() {
    let err = neg(fixture!("video-only.sdp")).unwrap_err();
    assert_eq!(err, SdpError::NoAudio);
    assert_eq!(err.status_code(), 488);
}

#[test]
fn refused_audio_stream_is_not_usable() {
    let body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n";
    assert_eq!(neg(body).unwrap_err(), SdpError::NoAudio);
}

#[test]
fn telephone_event_at_other_rates_only_is_not_taken() {
    let body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0 120\r\na=rtpmap:120 telephone-event/16000\r\n";
    assert_eq!(neg(body).unwrap().telephone_event_pt, None);
}

#[test]
fn rtpmap_decides_over_static_numbers() {
    // A (non-conforming) offer that maps PT 0 to something else must not be taken as PCMU,
    // and PCMU on a dynamic number is found by name.
    let body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0 96\r\na=rtpmap:0 G729/8000\r\na=rtpmap:96 PCMU/8000\r\n";
    let n = neg(body).unwrap();
    assert_eq!((n.codec, n.codec_pt), (G711::Pcmu, 96));
}

#[test]
fn answer_has_the_shape_phones_expect() {
    let n = neg(fixture!("baresip-1.0.0.sdp")).unwrap();
    let sdp = answer(&n, LOCAL, 10000, 123456);
    assert_eq!(
        lines(&sdp),
        [
            "v=0",
            "o=- 123456 123456 IN IP4 203.0.113.10",
            "s=-",
            "c=IN IP4 203.0.113.10",
            "t=0 0",
            "m=audio 10000 RTP/AVP 0 101",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-15",
            "a=ptime:20",
            "a=sendrecv",
        ]
    );
}

#[test]
fn our_answer_parses_and_negotiates_back_to_the_same_codec() {
    let n = neg(fixture!("pjsua-2.x.sdp")).unwrap();
    let sdp = answer(&n, LOCAL, 10000, 1);
    let back = negotiate(&SdpOffer::parse(sdp.as_bytes()).unwrap(), PREFS).unwrap();
    assert_eq!(back.codec, n.codec);
    assert_eq!(back.telephone_event_pt, Some(121));
    assert_eq!(back.remote_rtp, SocketAddr::new(LOCAL, 10000));
}

#[test]
fn unchanged_reoffer_gets_the_same_answer_text() {
    let offer = SdpOffer::parse(fixture!("baresip-1.0.0.sdp")).unwrap();
    let first = answer(&negotiate(&offer, PREFS).unwrap(), LOCAL, 10000, 9);
    let (again, n) = reanswer(&first, &offer).unwrap();
    assert_eq!(again, first);
    assert_eq!(n.remote_rtp, v4(127, 0, 0, 1, 51700));
}

#[test]
fn hold_reoffer_is_answered_recvonly_with_a_new_version() {
    let offer = SdpOffer::parse(fixture!("baresip-1.0.0.sdp")).unwrap();
    let first = answer(&negotiate(&offer, PREFS).unwrap(), LOCAL, 10000, 9);
    let hold = String::from_utf8_lossy(fixture!("baresip-1.0.0.sdp"))
        .replace("a=sendrecv", "a=sendonly")
        .replace("51700", "51702");
    let (text, n) = reanswer(&first, &SdpOffer::parse(hold.as_bytes()).unwrap()).unwrap();
    let l = lines(&text);
    assert!(l.contains(&"o=- 9 10 IN IP4 203.0.113.10"), "{text}");
    assert!(l.contains(&"a=recvonly"), "{text}");
    assert!(l.contains(&"m=audio 10000 RTP/AVP 0 101"), "{text}");
    assert_eq!(n.remote_rtp.port(), 51702);
}

#[test]
fn reoffer_without_our_codec_is_refused() {
    let offer = SdpOffer::parse(fixture!("baresip-1.0.0.sdp")).unwrap();
    let first = answer(&negotiate(&offer, PREFS).unwrap(), LOCAL, 10000, 9);
    let pcma_only = SdpOffer::parse(
        b"v=0\r\no=- 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 51700 RTP/AVP 8\r\n",
    )
    .unwrap();
    // PCMA is offered, but the call runs on PCMU and media cannot switch codecs.
    assert_eq!(
        reanswer(&first, &pcma_only).unwrap_err(),
        SdpError::NoCommonCodec
    );
}

/// Our dial-out offer: PCMU first, PCMA, telephone-event.
const OUR_OFFER: &str = "v=0\r\no=- 77 3 IN IP4 203.0.113.10\r\ns=-\r\nc=IN IP4 203.0.113.10\r\n\
     t=0 0\r\nm=audio 10000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n";

#[test]
fn a_callee_reoffer_keeps_the_codec_its_answer_chose() {
    // The callee answered PCMA (second in our offer).
    let answer = SdpOffer::parse(
        b"v=0\r\no=- 5 5 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
          m=audio 40000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\n",
    )
    .unwrap();
    let ours = offered_session(OUR_OFFER, &answer).unwrap();
    let l = lines(&ours);
    assert!(l.contains(&"o=- 77 4 IN IP4 203.0.113.10"), "{ours}");
    assert!(l.contains(&"m=audio 10000 RTP/AVP 8 101"), "{ours}");
    // Its re-INVITE offering both codecs (hold) is answered with PCMA still.
    let reoffer = SdpOffer::parse(
        b"v=0\r\no=- 5 6 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
          m=audio 40000 RTP/AVP 0 8\r\na=sendonly\r\n",
    )
    .unwrap();
    let (text, n) = reanswer(&ours, &reoffer).unwrap();
    assert_eq!(n.codec, G711::Pcma);
    assert!(lines(&text).contains(&"a=recvonly"), "{text}");
}

#[test]
fn an_answer_without_g711_gives_no_session() {
    let answer = SdpOffer::parse(
        b"v=0\r\no=- 5 5 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
          m=audio 40000 RTP/AVP 9\r\n",
    )
    .unwrap();
    assert_eq!(
        offered_session(OUR_OFFER, &answer).unwrap_err(),
        SdpError::NoCommonCodec
    );
}

fn malformed_line(body: &[u8]) -> usize {
    match SdpOffer::parse(body) {
        Err(SdpError::Malformed { line, .. }) => line,
        other => panic!(
            "expected Malformed for {:?}, got {other:?}",
            String::from_utf8_lossy(body)
        ),
    }
}

#[test]
fn malformed_offers_are_400_with_the_line() {
    let head = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n";
    let cases: &[(&str, usize)] = &[
        ("", 1),
        ("hello world", 1),
        ("o=- 1 1 IN IP4 192.0.2.1\r\nv=0\r\n", 1),
        ("v=1\r\n", 1),
        ("v=0\r\nthis is not sdp\r\n", 2),
        ("c=IN IP4 not-an-ip\r\n", 5),
        ("c=IN IP4 2001:db8::1\r\n", 5),
        ("c=IN IP4\r\n", 5),
        ("m=audio port RTP/AVP 0\r\n", 5),
        ("m=audio 70000 RTP/AVP 0\r\n", 5),
        ("m=audio 4000 RTP/AVP\r\n", 5),
        ("m=audio 4000 RTP/AVP 0 300\r\n", 5),
        ("m=audio 4000 RTP/AVP 0\r\na=rtpmap:0\r\n", 6),
        ("m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/fast\r\n", 6),
        ("m=audio 4000 RTP/AVP 0\r\na=rtpmap:x PCMU/8000\r\n", 6),
        ("m=audio 4000 RTP/AVP 0\r\na=ptime:-20\r\n", 6),
    ];
    for (tail, line) in cases {
        let body = if tail.starts_with("v=") || tail.starts_with("o=") || *line == 1 {
            tail.to_string()
        } else {
            format!("{head}{tail}")
        };
        assert_eq!(malformed_line(body.as_bytes()), *line, "{body:?}");
        let err = SdpOffer::parse(body.as_bytes()).unwrap_err();
        assert_eq!(err.status_code(), 400);
    }
}

#[test]
fn audio_without_any_connection_address_is_malformed() {
    let body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
    let err = neg(body).unwrap_err();
    assert!(matches!(err, SdpError::Malformed { .. }), "{err:?}");
}

#[test]
fn non_utf8_session_name_does_not_matter() {
    let mut body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=".to_vec();
    body.extend([0xff, 0xfe, b'\r', b'\n']);
    body.extend(b"c=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8\r\n");
    assert_eq!(neg(&body).unwrap().codec, G711::Pcma);
}

/// A tiny deterministic generator: the mutations are reproducible without a crate.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn mutated_real_offers_never_panic() {
    let seeds: &[&[u8]] = &[
        fixture!("baresip-1.0.0.sdp"),
        fixture!("pjsua-2.x.sdp"),
        fixture!("linphone-5.sdp"),
        fixture!("webrtc-then-plain.sdp"),
    ];
    let alphabet = b"=: /\r\n0123456789aAmMcCvV-.\xff\x00";
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for seed in seeds {
        for _ in 0..3000 {
            let mut body = seed.to_vec();
            for _ in 0..(1 + rng.next() % 6) {
                let pos = (rng.next() as usize) % (body.len() + 1);
                match rng.next() % 3 {
                    0 if pos < body.len() => {
                        body.remove(pos);
                    }
                    1 => body.insert(pos, alphabet[(rng.next() as usize) % alphabet.len()]),
                    _ => body.truncate(pos),
                }
            }
            if let Ok(offer) = SdpOffer::parse(&body) {
                if let Ok(n) = negotiate(&offer, PREFS) {
                    let text = answer(&n, LOCAL, 1, 1);
                    let _ = reanswer(&text, &offer);
                }
            }
        }
    }
}
