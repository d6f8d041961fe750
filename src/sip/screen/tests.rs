use super::*;
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use std::path::PathBuf;

const LIMIT: usize = 8192;

/// The RFC 4475 torture messages, shared by every checkout: `../shared/reference/rfc4475` from
/// the main repository, one level further up from a worktree under `wt/`.
pub(crate) fn rfc4475_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    [
        "../shared/reference/rfc4475",
        "../../shared/reference/rfc4475",
    ]
    .iter()
    .map(|rel| root.join(rel))
    .find(|p| p.join("verdicts.tsv").exists())
    .expect("RFC 4475 messages not found in ../shared/reference/rfc4475")
}

fn torture(name: &str) -> Vec<u8> {
    std::fs::read(rfc4475_dir().join(name)).unwrap()
}

fn status_line(out: &Screened<'_>) -> String {
    match out {
        Screened::Answer(bytes) => {
            let text = String::from_utf8_lossy(bytes);
            text.lines().next().unwrap_or("").to_string()
        }
        other => panic!("expected an answer, got {other:?}"),
    }
}

fn code(out: &Screened<'_>) -> u16 {
    status_line(out).split(' ').nth(1).unwrap().parse().unwrap()
}

fn forwarded(out: Screened<'_>) -> Vec<u8> {
    match out {
        Screened::Forward(bytes) => bytes.into_owned(),
        other => panic!("expected the request to be forwarded, got {other:?}"),
    }
}

#[test]
fn invalid_torture_requests_are_answered_here() {
    let cases: &[(&str, u16)] = &[
        ("3.1.1.2-intmeth.dat", 501),
        ("3.1.1.5-esc02.dat", 501),
        ("3.1.2.1-badinv01.dat", 400),
        ("3.1.2.2-clerr.dat", 400),
        ("3.1.2.3-ncl.dat", 400),
        ("3.1.2.4-scalar02.dat", 400),
        ("3.1.2.6-quotbal.dat", 400),
        ("3.1.2.7-ltgtruri.dat", 400),
        ("3.1.2.8-lwsruri.dat", 400),
        ("3.1.2.9-lwsstart.dat", 400),
        ("3.1.2.10-trws.dat", 400),
        ("3.1.2.15-baddn.dat", 400),
        ("3.1.2.16-badvers.dat", 505),
        ("3.1.2.17-mismatch01.dat", 400),
        ("3.1.2.18-mismatch02.dat", 501),
        ("3.3.1-insuf.dat", 400),
        ("3.3.8-multi01.dat", 400),
        ("3.3.9-mcl01.dat", 400),
        ("3.4.1-inv2543.dat", 400),
    ];
    for (name, want) in cases {
        let msg = torture(name);
        let out = screen(&msg, LIMIT);
        assert_eq!(code(&out), *want, "{name}: {}", status_line(&out));
    }
}

#[test]
fn valid_torture_requests_reach_the_stack_in_a_form_it_reads() {
    for name in [
        "3.1.1.1-wsinv.dat",
        "3.1.1.3-esc01.dat",
        "3.1.1.4-escnull.dat",
        "3.1.1.6-lwsdisp.dat",
        "3.1.1.7-longreq.dat",
        "3.1.1.8-dblreq.dat",
        "3.1.1.9-semiuri.dat",
        "3.1.1.10-transports.dat",
        "3.1.1.11-mpart01.dat",
        "3.1.2.11-escruri.dat",
        "3.1.2.12-baddate.dat",
        "3.1.2.13-regbadct.dat",
        "3.1.2.14-badaspec.dat",
        "3.2.1-badbranch.dat",
        "3.3.2-unkscm.dat",
        "3.3.3-novelsc.dat",
        "3.3.4-unksm2.dat",
        "3.3.5-bext01.dat",
        "3.3.6-invut.dat",
        "3.3.7-regaut01.dat",
        "3.3.11-zeromf.dat",
        "3.3.12-cparam01.dat",
        "3.3.13-cparam02.dat",
        "3.3.14-regescrt.dat",
        "3.3.15-sdp01.dat",
    ] {
        let bytes = forwarded(screen(&torture(name), LIMIT));
        let method = String::from_utf8_lossy(&bytes)
            .split(' ')
            .next()
            .unwrap()
            .to_string();
        assert_eq!(check_stack_accepts(&bytes, &method), Ok(()), "{name}");
    }
}

#[test]
fn responses_pass_through_untouched() {
    for name in [
        "3.1.1.12-unreason.dat",
        "3.1.1.13-noreason.dat",
        "3.1.2.5-scalarlg.dat",
        "3.1.2.19-bigcode.dat",
        "3.3.10-bcast.dat",
    ] {
        let original = torture(name);
        assert_eq!(
            screen(&original, LIMIT),
            Screened::Forward(Cow::Borrowed(original.as_slice())),
            "{name}"
        );
    }
}

#[test]
fn lws_around_tag_equals_is_tightened_so_the_tag_is_seen() {
    let bytes = forwarded(screen(&torture("3.1.1.1-wsinv.dat"), LIMIT));
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("<sip:jdrosen@example.com>;tag=98asjd8\r\n"),
        "{text}"
    );
    assert!(
        text.contains("sip:vivekg@chair-dnrc.example.com;tag=1918181833n\r\n"),
        "{text}"
    );
    // The body is left exactly as it was.
    let original = torture("3.1.1.1-wsinv.dat");
    let body = |b: &[u8]| b[find(b, b"\r\n\r\n").unwrap() + 4..].to_vec();
    assert_eq!(body(&bytes), body(&original));
}

#[test]
fn a_real_invite_is_forwarded_as_received() {
    let invite = include_bytes!("../../../tests/fixtures/sip/baresip-1.0.0.invite");
    assert_eq!(
        screen(invite, LIMIT),
        Screened::Forward(Cow::Borrowed(invite.as_slice()))
    );
}

#[test]
fn lf_only_request_is_rebuilt_with_crlf() {
    let crlf = include_bytes!("../../../tests/fixtures/sip/sipp-3.6.1-uac.invite");
    let text = String::from_utf8_lossy(crlf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let lf = format!("{}\n\n{body}", head.replace("\r\n", "\n"));
    let out = forwarded(screen(lf.as_bytes(), LIMIT));
    // Rebuilt header lines lose the padding around values; nothing else changes.
    assert_eq!(
        String::from_utf8_lossy(&out),
        text.replace("Content-Length:   129", "Content-Length: 129")
    );
}

#[test]
fn missing_blank_line_at_datagram_end_is_supplied() {
    let text = "OPTIONS sip:gw@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:gw@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n";
    let out = forwarded(screen(text.as_bytes(), LIMIT));
    assert_eq!(String::from_utf8_lossy(&out), format!("{text}\r\n"));
}

#[test]
fn body_without_content_length_runs_to_the_datagram_end() {
    let invite = include_bytes!("../../../tests/fixtures/sip/sipp-3.6.1-uac.invite");
    let text = String::from_utf8_lossy(invite).replace("Content-Length:   129\r\n", "");
    let out = forwarded(screen(text.as_bytes(), LIMIT));
    let Ok(SipMessage::Request(req)) = SipMessage::try_from(out.as_slice()) else {
        panic!("not a request")
    };
    assert_eq!(req.body.len(), 129);
}

#[test]
fn answer_echoes_the_request_headers_and_tags_to() {
    let msg = torture("3.3.9-mcl01.dat");
    let Screened::Answer(bytes) = screen(&msg, LIMIT) else {
        panic!()
    };
    let text = String::from_utf8(bytes).unwrap();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines[0], "SIP/2.0 400 Conflicting Content-Length");
    assert_eq!(
        lines[1],
        "Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK293423"
    );
    assert_eq!(lines[2], "From: sip:other@example.net;tag=3923942");
    assert!(
        lines[3].starts_with("To: sip:user@example.com;tag="),
        "{text}"
    );
    assert_eq!(lines[4], "Call-ID: mcl01.fhn2323orihawfdoa3o4r52o3irsdf");
    assert_eq!(lines[5], "CSeq: 15932 OPTIONS");
    assert!(text.ends_with("Content-Length: 0\r\n\r\n"), "{text}");
    // The answer itself is a response the stack can read.
    assert!(matches!(
        SipMessage::try_from(text.as_bytes()),
        Ok(SipMessage::Response(_))
    ));
}

#[test]
fn not_implemented_lists_what_is_allowed() {
    let Screened::Answer(bytes) = screen(&torture("3.1.1.2-intmeth.dat"), LIMIT) else {
        panic!()
    };
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains(&format!("\r\nAllow: {ALLOW}\r\n")), "{text}");
}

#[test]
fn too_large_is_513() {
    let invite = include_bytes!("../../../tests/fixtures/sip/baresip-1.0.0.invite");
    assert_eq!(code(&screen(invite, 100)), 513);
}

#[test]
fn without_a_via_nothing_is_answered() {
    let text = "INVITE sip:a@b SIP/2.0\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: 1\r\nCSeq: 1 INVITE\r\n\r\n";
    assert_eq!(screen(text.as_bytes(), LIMIT), Screened::Ignore);
    assert_eq!(
        screen(b"\x16\x03\x01\x00\xa5garbage", LIMIT),
        Screened::Ignore
    );
}

#[test]
fn keepalives_pass_to_the_stack() {
    assert_eq!(
        screen(b"\r\n\r\n", LIMIT),
        Screened::Forward(Cow::Borrowed(b"\r\n\r\n".as_slice()))
    );
}

#[test]
fn mutated_requests_never_panic_and_what_passes_parses() {
    let seeds: &[&[u8]] = &[
        include_bytes!("../../../tests/fixtures/sip/baresip-1.0.0.invite"),
        include_bytes!("../../../tests/fixtures/sip/sipp-3.6.1-uac.invite"),
    ];
    let alphabet = b" :;=,<>\"\\\r\n\t/0123456789%\x00\xff";
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for seed in seeds {
        for _ in 0..4000 {
            let mut msg = seed.to_vec();
            for _ in 0..(1 + next() % 5) {
                let pos = (next() as usize) % (msg.len() + 1);
                match next() % 3 {
                    0 if pos < msg.len() => {
                        msg.remove(pos);
                    }
                    1 => msg.insert(pos, alphabet[(next() as usize) % alphabet.len()]),
                    _ => msg.truncate(pos),
                }
            }
            if let Screened::Forward(bytes) = screen(&msg, LIMIT) {
                if bytes.iter().all(u8::is_ascii_whitespace) || bytes.starts_with(b"SIP/") {
                    continue;
                }
                // What the stack's transaction layer needs to key the request.
                let keyed = match SipMessage::try_from(bytes.as_ref()) {
                    Ok(SipMessage::Request(req)) => {
                        TransactionKey::from_request(&req, TransactionRole::Server).is_ok()
                    }
                    _ => false,
                };
                assert!(keyed, "{:?}", String::from_utf8_lossy(&bytes));
            }
        }
    }
}
