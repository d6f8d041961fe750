//! The check's rules on virtual time: no sockets, no sleeps.

use super::*;

const TARGET: &str = "sip:echo@pbx.example.com";
const CALLEE_IP: [u8; 4] = [192, 0, 2, 9];
const ANSWER: &str = "v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\n\
t=0 0\r\nm=audio 5004 RTP/AVP 8 0\r\na=sendrecv\r\n";

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

fn callee(port: u16) -> SocketAddr {
    SocketAddr::from((CALLEE_IP, port))
}

/// A minimal RTP packet (version 2, PCMU).
fn rtp() -> Vec<u8> {
    let mut p = vec![0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7];
    p.extend([0xFF; 160]);
    p
}

/// A checker every 300 s with jigasi's 600 s timeout; its first check already placed at `t0`.
fn placed(t0: Instant) -> SipCheck {
    placed_every(t0, secs(300))
}

fn placed_every(t0: Instant, interval: Duration) -> SipCheck {
    let mut c = SipCheck::new(t0, TARGET.into(), interval, secs(600));
    assert_eq!(c.poll_timeout(), Some(t0), "the first check is due at once");
    c.handle_timeout(t0);
    assert_eq!(outputs(&mut c), [Output::Place]);
    assert!(c.status().running);
    c
}

fn outputs(c: &mut SipCheck) -> Vec<Output> {
    std::iter::from_fn(|| c.poll_output()).collect()
}

fn answered(sdp: &str) -> Input<'static> {
    Input::Call(Some(OutgoingEvent::Answered { sdp: sdp.into() }))
}

fn datagram(from: SocketAddr, data: &[u8]) -> Input<'_> {
    Input::Datagram { from, data }
}

/// The outputs that end a check: how it hangs up, and its result.
fn finished(c: &mut SipCheck) -> (HangUp, CheckResult) {
    match outputs(c).as_slice() {
        [Output::HangUp(h), Output::Finished(r)] => (h.clone(), r.clone()),
        other => panic!("not a finished check: {other:?}"),
    }
}

fn failure(r: &CheckResult) -> &CheckFailure {
    r.outcome.as_ref().expect_err("the check passed")
}

#[test]
fn rtp_from_the_callee_after_the_answer_passes_with_its_figures_and_is_hung_up_with_bye() {
    let t0 = Instant::now();
    let mut c = placed(t0);
    c.handle_input(
        t0 + ms(100),
        Input::Call(Some(OutgoingEvent::Ringing { early_sdp: None })),
    );
    assert!(outputs(&mut c).is_empty());
    c.handle_input(t0 + ms(400), answered(ANSWER));
    // The answer's first codec and address: our tone goes there.
    assert_eq!(
        outputs(&mut c),
        [Output::SendAudio {
            to: callee(5004),
            codec: G711::Pcma,
            payload_type: 8
        }]
    );
    assert!(c.status().running);
    // From another port of the same host: symmetric RTP is not required.
    c.handle_input(t0 + ms(460), datagram(callee(7078), &rtp()));
    let (hang_up, result) = finished(&mut c);
    assert_eq!(hang_up, HangUp::Bye(None));
    assert_eq!(
        result.outcome,
        Ok(Passed {
            answer: ms(400),
            first_rtp: ms(60)
        })
    );
    assert_eq!(result.answer, Some(ms(400)));
    assert!(!result.retry);
    let s = c.status();
    assert!(!s.running);
    assert_eq!((s.checks, s.failures), (1, 0));
    assert_eq!(s.last_success, Some(t0 + ms(460)));
    assert_eq!(s.verdict(t0 + secs(1)), Verdict::Passing);
    // The next regular check: one interval after the first started (fixed rate).
    assert_eq!(c.poll_timeout(), Some(t0 + secs(300)));
    // Late RTP and events of the ended call change nothing.
    c.handle_input(t0 + ms(480), datagram(callee(7078), &rtp()));
    c.handle_input(t0 + ms(500), Input::Call(Some(OutgoingEvent::Bye)));
    assert!(outputs(&mut c).is_empty());
    assert_eq!(c.status().checks, 1);
}

#[test]
fn no_rtp_within_10_s_of_the_answer_fails_and_byes_saying_why() {
    let t0 = Instant::now();
    let mut c = placed(t0);
    c.handle_input(t0 + secs(2), answered(ANSWER));
    outputs(&mut c);
    assert_eq!(
        c.poll_timeout(),
        Some(t0 + secs(12)),
        "10 s from the answer"
    );
    c.handle_timeout(t0 + secs(11));
    assert!(outputs(&mut c).is_empty(), "not yet");
    c.handle_timeout(t0 + secs(12));
    let (hang_up, result) = finished(&mut c);
    assert!(matches!(
        hang_up,
        HangUp::Bye(Some(Reason { cause: 408, .. }))
    ));
    assert_eq!(
        failure(&result),
        &CheckFailure::NoRtp {
            within: secs(10),
            stray: None
        }
    );
    assert_eq!(
        failure(&result).to_string(),
        "no RTP within 10 s of the answer"
    );
    assert_eq!(result.answer, Some(secs(2)), "answered, so timed");
    assert!(matches!(
        c.status().verdict(t0 + secs(13)),
        Verdict::Failed(_)
    ));
}

#[test]
fn only_rtp_from_the_answer_s_address_counts() {
    let t0 = Instant::now();
    let mut c = placed(t0);
    c.handle_input(t0 + secs(1), answered(ANSWER));
    outputs(&mut c);
    let mut rtcp = rtp();
    rtcp[1] = 200; // a sender report, rtcp-mux
    let mut version1 = rtp();
    version1[0] = 0x40;
    let stun = [
        0u8, 1, 0, 0, 0x21, 0x12, 0xA4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
    ];
    for junk in [&rtcp[..], &version1, &stun, &[0x80, 0], &[]] {
        c.handle_input(t0 + secs(2), datagram(callee(5004), junk));
    }
    let elsewhere = SocketAddr::from(([198, 51, 100, 1], 5004));
    c.handle_input(t0 + secs(3), datagram(elsewhere, &rtp()));
    c.handle_input(t0 + secs(4), datagram(elsewhere, &rtp()));
    assert!(outputs(&mut c).is_empty(), "none of that passes the check");
    c.handle_timeout(t0 + secs(11));
    let (_, result) = finished(&mut c);
    let f = failure(&result);
    assert_eq!(
        f,
        &CheckFailure::NoRtp {
            within: secs(10),
            stray: Some((2, elsewhere))
        }
    );
    // The operator learns that RTP did come, from elsewhere.
    assert!(
        f.to_string()
            .contains("2 RTP packets came from 198.51.100.1:5004"),
        "{f}"
    );
}

#[test]
fn rtp_racing_the_200_ok_counts_once_answered_but_early_media_alone_is_no_answer() {
    let t0 = Instant::now();
    let mut c = placed(t0);
    c.handle_input(t0 + ms(300), datagram(callee(5004), &rtp()));
    assert!(outputs(&mut c).is_empty(), "not answered yet");
    c.handle_input(t0 + ms(310), answered(ANSWER));
    let out = outputs(&mut c);
    assert!(matches!(out[0], Output::SendAudio { .. }), "{out:?}");
    match &out[1..] {
        [Output::HangUp(HangUp::Bye(None)), Output::Finished(r)] => assert_eq!(
            r.outcome,
            Ok(Passed {
                answer: ms(310),
                first_rtp: Duration::ZERO
            })
        ),
        other => panic!("{other:?}"),
    }

    // A callee that only rings with early media, never answering.
    let mut c = placed(t0);
    c.handle_input(
        t0 + ms(100),
        Input::Call(Some(OutgoingEvent::Ringing {
            early_sdp: Some(ANSWER.into()),
        })),
    );
    c.handle_input(t0 + ms(300), datagram(callee(5004), &rtp()));
    assert!(outputs(&mut c).is_empty());
    assert_eq!(c.poll_timeout(), Some(t0 + secs(10)));
    c.handle_timeout(t0 + secs(10));
    let (hang_up, result) = finished(&mut c);
    assert_eq!(hang_up, HangUp::Cancel);
    assert_eq!(
        failure(&result),
        &CheckFailure::NoAnswer {
            within: secs(10),
            ringing: true
        }
    );
    assert_eq!(result.answer, None);
    assert_eq!(
        failure(&result).to_string(),
        "not answered within 10 s (it rang)"
    );
}

#[test]
fn refusals_unusable_answers_hangups_and_unplaced_calls_fail_saying_why() {
    let t0 = Instant::now();
    let busy = OutgoingEvent::Failed {
        status: 486,
        reason: "Busy Here".into(),
    };
    let mut c = placed(t0);
    c.handle_input(t0 + ms(50), Input::Call(Some(busy)));
    let (hang_up, result) = finished(&mut c);
    assert_eq!(hang_up, HangUp::Release, "the call is over already");
    assert_eq!(failure(&result).to_string(), "refused: 486 Busy Here");
    assert_eq!(failure(&result).status(), Some(486));

    let mut c = placed(t0);
    let g729 = "v=0\r\no=- 1 1 IN IP4 192.0.2.9\r\ns=-\r\nc=IN IP4 192.0.2.9\r\n\
t=0 0\r\nm=audio 5004 RTP/AVP 18\r\n";
    c.handle_input(t0 + ms(50), answered(g729));
    let (hang_up, result) = finished(&mut c);
    assert!(matches!(
        hang_up,
        HangUp::Bye(Some(Reason { cause: 488, .. }))
    ));
    assert!(matches!(failure(&result), CheckFailure::BadAnswer(_)));
    assert_eq!(result.answer, Some(ms(50)));

    let mut c = placed(t0);
    c.handle_input(t0 + ms(50), answered(ANSWER));
    outputs(&mut c);
    c.handle_input(t0 + secs(1), Input::Call(Some(OutgoingEvent::Bye)));
    let (hang_up, result) = finished(&mut c);
    assert_eq!(hang_up, HangUp::Release);
    assert_eq!(
        failure(&result).to_string(),
        "the call ended before any RTP: the callee hung up"
    );

    let mut c = placed(t0);
    c.handle_input(t0, Input::Unplaced("no free UDP port".into()));
    let (_, result) = finished(&mut c);
    assert_eq!(
        failure(&result),
        &CheckFailure::Unplaced("no free UDP port".into())
    );

    let mut c = placed(t0);
    c.handle_input(t0 + secs(1), Input::Call(None));
    let (_, result) = finished(&mut c);
    assert!(matches!(failure(&result), CheckFailure::Ended(_)));
}

#[test]
fn a_failure_is_retried_once_after_60_s_and_a_failed_retry_waits_for_the_next_interval() {
    let t0 = Instant::now();
    let busy = || {
        Input::Call(Some(OutgoingEvent::Failed {
            status: 486,
            reason: "Busy Here".into(),
        }))
    };
    let mut c = placed(t0);
    c.handle_input(t0 + secs(1), busy());
    outputs(&mut c);
    assert_eq!(
        c.poll_timeout(),
        Some(t0 + secs(61)),
        "60 s after the failure"
    );
    c.handle_timeout(t0 + secs(61));
    assert_eq!(outputs(&mut c), [Output::Place]);
    c.handle_input(t0 + secs(62), busy());
    let (_, result) = finished(&mut c);
    assert!(result.retry);
    assert_eq!(
        c.poll_timeout(),
        Some(t0 + secs(300)),
        "no retry of a retry: the regular schedule, from the first check's start"
    );
    c.handle_timeout(t0 + secs(300));
    assert_eq!(outputs(&mut c), [Output::Place]);
    c.handle_input(t0 + secs(301), answered(ANSWER));
    outputs(&mut c);
    c.handle_input(t0 + secs(301), datagram(callee(5004), &rtp()));
    let (_, result) = finished(&mut c);
    assert!(result.outcome.is_ok() && !result.retry);
    assert_eq!(c.poll_timeout(), Some(t0 + secs(600)));
    let s = c.status();
    assert_eq!((s.checks, s.failures), (3, 2));
    assert_eq!(s.verdict(t0 + secs(302)), Verdict::Passing, "recovered");
}

#[test]
fn with_a_short_interval_the_retry_is_the_next_regular_check() {
    let t0 = Instant::now();
    let mut c = placed_every(t0, secs(5));
    c.handle_input(
        t0 + secs(1),
        Input::Call(Some(OutgoingEvent::Failed {
            status: 503,
            reason: "Service Unavailable".into(),
        })),
    );
    outputs(&mut c);
    assert_eq!(c.poll_timeout(), Some(t0 + secs(5)));
    c.handle_timeout(t0 + secs(5));
    assert_eq!(outputs(&mut c), [Output::Place]);
    // A check that outlasts the interval: the next starts when it ends, not during it.
    c.handle_input(t0 + secs(6), answered(ANSWER));
    outputs(&mut c);
    c.handle_timeout(t0 + secs(10));
    assert!(outputs(&mut c).is_empty(), "no second call while one is up");
    c.handle_timeout(t0 + secs(16));
    let (_, result) = finished(&mut c);
    assert!(matches!(failure(&result), CheckFailure::NoRtp { .. }));
    assert!(
        !result.retry,
        "with a 5 s interval there is no separate retry"
    );
    assert_eq!(c.poll_timeout(), Some(t0 + secs(16)), "overdue: at once");
    c.handle_timeout(t0 + secs(16));
    assert_eq!(outputs(&mut c), [Output::Place]);
}

#[test]
fn pending_is_no_problem_until_the_timeout_and_old_successes_go_stale() {
    let t0 = Instant::now();
    let mut c = placed(t0);
    assert_eq!(c.status().verdict(t0 + secs(5)), Verdict::Pending);
    assert_eq!(c.status().verdict(t0 + secs(600)), Verdict::Pending);
    // A check that never reports (the driver stuck): no result for the timeout is a problem.
    assert_eq!(
        c.status().verdict(t0 + secs(601)),
        Verdict::Stale { last_success: None }
    );

    c.handle_input(t0 + secs(1), answered(ANSWER));
    c.handle_input(t0 + secs(2), datagram(callee(5004), &rtp()));
    outputs(&mut c);
    let s = c.status();
    assert_eq!(s.verdict(t0 + secs(602)), Verdict::Passing);
    assert_eq!(
        s.verdict(t0 + secs(603)),
        Verdict::Stale {
            last_success: Some(t0 + secs(2))
        }
    );
}

#[test]
fn stopping_hangs_up_the_call_in_progress_without_a_result_and_ends_the_schedule() {
    let t0 = Instant::now();
    let mut c = placed(t0);
    c.handle_input(t0 + secs(1), answered(ANSWER));
    outputs(&mut c);
    c.handle_input(t0 + secs(2), Input::Stop);
    assert!(matches!(
        outputs(&mut c).as_slice(),
        [Output::HangUp(HangUp::Bye(Some(Reason { cause: 503, .. })))]
    ));
    assert_eq!(c.poll_timeout(), None);
    assert_eq!(c.status().checks, 0);
    assert!(!c.status().running);

    let mut c = placed(t0);
    c.handle_input(t0 + secs(1), Input::Stop);
    assert_eq!(outputs(&mut c), [Output::HangUp(HangUp::Cancel)]);
    c.handle_timeout(t0 + secs(1000));
    assert!(outputs(&mut c).is_empty());
}
