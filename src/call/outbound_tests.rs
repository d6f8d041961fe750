//! Dial-out decisions on virtual time: the Rayo answer, the INVITE after the bridge leg, the
//! callee's progress in the room's presence, failures shown for 5 s, hangups from either side.

use super::machine::*;
use super::tests::{
    answer, ended, focus, jingle_sent, media, occupant, phone_local, reason, settings, sip, xmpp,
    FOCUS, OFFER, ROOM,
};
use crate::jingle::Element;
use crate::media::MediaEvent;
use crate::xmpp::{Direction, ErrorCondition, Inbound, JoinError, RayoDial, Reply, RoomJid};
use std::time::{Duration, Instant};

const NICK: &str = "5e6f7a8b";
const CALLEE_SDP: &str = "v=0\r\no=bob 7 7 IN IP4 192.0.2.20\r\ns=-\r\nc=IN IP4 192.0.2.20\r\n\
                          t=0 0\r\nm=audio 30000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
                          a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n";
const HANGUP: &str = r#"<hangup xmlns="urn:xmpp:rayo:1"/>"#;

struct Dialing {
    call: Call,
    now: Instant,
}

fn dial() -> Dial {
    Dial {
        request: RayoDial {
            to: "+15551234567".into(),
            from: None,
            room: RoomJid::new("room1", "conference.meet.example.com").unwrap(),
            password: Some("s3cret".into()),
            headers: vec![("X-outbound-call-initiator-user".into(), "alice".into())],
        },
        id: "dial-1".into(),
    }
}

impl Dialing {
    fn new() -> Dialing {
        let now = Instant::now();
        let call = Call::outbound(settings(&[]), dial(), NICK.into(), now);
        Dialing { call, now }
    }

    /// In the room, waiting for Jicofo's offer.
    fn joined() -> Dialing {
        let mut d = Dialing::new();
        d.drain();
        d.input(Input::XmppReady);
        d.input(Input::Xmpp(Inbound::SelfJoined {
            occupants: vec![focus(), occupant("abcd1234")],
        }));
        d.drain();
        d
    }

    /// The bridge leg accepted and the INVITE sent; the bridge media still connecting.
    fn placed() -> Dialing {
        let mut d = Dialing::joined();
        d.iq(FOCUS, OFFER);
        d.drain();
        d.input(Input::MediaStarted {
            answer: answer(),
            phone_local: phone_local(),
        });
        d.drain();
        d
    }

    /// The INVITE sent and the bridge media connected.
    fn inviting() -> Dialing {
        let mut d = Dialing::placed();
        d.input(Input::Media(MediaEvent::ConferenceConnected));
        d.drain();
        d
    }

    fn answered() -> Dialing {
        let mut d = Dialing::inviting();
        d.input(Input::CalleeAnswered {
            sdp: CALLEE_SDP.into(),
        });
        d.drain();
        d
    }

    fn input(&mut self, input: Input) {
        self.call.handle_input(self.now, input);
    }

    fn iq(&mut self, from: &str, xml: &str) {
        let payload: Element = xml.parse().expect("fixture XML");
        self.input(Input::Xmpp(Inbound::IqSet {
            from: from.into(),
            id: "iq9".into(),
            payload,
        }));
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        if self.call.poll_timeout().is_some_and(|t| t <= self.now) {
            self.input(Input::Timeout);
        }
    }

    fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.call.poll_output()).collect()
    }
}

fn rayo(outs: &[Output]) -> Vec<&RayoAnswer> {
    outs.iter()
        .filter_map(|o| match o {
            Output::Rayo(a) => Some(a),
            _ => None,
        })
        .collect()
}

fn statuses(outs: &[Output]) -> Vec<&str> {
    xmpp(outs)
        .into_iter()
        .filter_map(|c| match c {
            XmppCommand::Status(s) => Some(s.as_str()),
            _ => None,
        })
        .collect()
}

fn terminate_condition(outs: &[Output]) -> Option<String> {
    let sent = jingle_sent(outs);
    let (_, iq) = sent
        .iter()
        .find(|(_, j)| j.action.as_str() == "session-terminate")?;
    iq.reason.as_ref().map(|r| r.condition.as_str().to_owned())
}

#[test]
fn a_dial_joins_the_room_showing_the_destination_and_answers_rayo_once_in() {
    let mut d = Dialing::new();
    assert!(matches!(
        xmpp(&d.drain()).as_slice(),
        [XmppCommand::Connect]
    ));
    d.input(Input::XmppReady);
    let outs = d.drain();
    match xmpp(&outs).as_slice() {
        [XmppCommand::Join { request }] => {
            assert_eq!(request.room.to_string(), ROOM);
            assert_eq!(request.nick, NICK);
            assert_eq!(request.display_name, "+15551234567");
            assert_eq!(request.password.as_deref(), Some("s3cret"));
            assert_eq!(
                request.direction,
                Direction::Out {
                    headers: vec![("X-outbound-call-initiator-user".into(), "alice".into())]
                }
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(rayo(&outs).is_empty(), "no answer before the join");
    d.input(Input::Xmpp(Inbound::SelfJoined {
        occupants: vec![focus()],
    }));
    let outs = d.drain();
    assert_eq!(
        rayo(&outs),
        [&RayoAnswer::Ref(format!("xmpp:{ROOM}/{NICK}"))]
    );
    assert_eq!(statuses(&outs), ["Initializing Call"]);
    assert!(sip(&outs).is_empty(), "the callee waits for the bridge leg");
}

#[test]
fn a_refused_join_or_no_connection_answers_rayo_with_an_error_and_calls_nobody() {
    let mut d = Dialing::new();
    d.drain();
    d.input(Input::XmppReady);
    d.drain();
    d.input(Input::Xmpp(Inbound::JoinFailed(
        JoinError::PasswordRequired,
    )));
    let outs = d.drain();
    assert!(
        matches!(rayo(&outs).as_slice(), [RayoAnswer::Error { condition: ErrorCondition::InternalServerError, text }] if text.contains("password")),
        "{outs:?}"
    );
    assert!(sip(&outs).is_empty());
    assert!(d.call.is_ended());

    let mut d = Dialing::new();
    d.drain();
    d.input(Input::XmppUnavailable("connection refused".into()));
    let outs = d.drain();
    assert!(matches!(rayo(&outs).as_slice(), [RayoAnswer::Error { .. }]));
    assert!(sip(&outs).is_empty() && d.call.is_ended());
}

#[test]
fn a_join_that_never_completes_gets_a_rayo_error_at_the_join_timeout() {
    let mut d = Dialing::new();
    d.drain();
    d.input(Input::XmppReady);
    d.drain();
    d.advance(Duration::from_secs(10));
    let outs = d.drain();
    assert!(
        matches!(rayo(&outs).as_slice(), [RayoAnswer::Error { .. }]),
        "{outs:?}"
    );
    assert!(matches!(xmpp(&outs).as_slice(), [XmppCommand::Leave]));
}

#[test]
fn the_callee_is_invited_after_the_bridge_leg_is_accepted_with_jigasis_headers() {
    let mut d = Dialing::joined();
    d.iq(FOCUS, OFFER);
    let outs = d.drain();
    assert!(
        matches!(
            media(&outs).as_slice(),
            [MediaCommand::Start { phone: None, .. }]
        ),
        "the phone leg waits for the callee: {outs:?}"
    );
    d.input(Input::MediaStarted {
        answer: answer(),
        phone_local: phone_local(),
    });
    let outs = d.drain();
    let order: Vec<&str> = outs
        .iter()
        .filter_map(|o| match o {
            Output::Xmpp(XmppCommand::SendIq { .. }) => Some("jingle"),
            Output::Sip(SipCommand::Invite { .. }) => Some("invite"),
            _ => None,
        })
        .collect();
    assert_eq!(order, ["jingle", "jingle", "invite"]);
    match sip(&outs).as_slice() {
        [SipCommand::Invite { to, headers, sdp }] => {
            assert_eq!(to, "+15551234567");
            let names: Vec<(&str, &str)> = headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            assert_eq!(
                names,
                [
                    ("Jitsi-Conference-Room", ROOM),
                    ("JigasiCallDirection", "out"),
                    ("X-outbound-call-initiator-user", "alice"),
                ]
            );
            assert!(sdp.contains("m=audio 20000 RTP/AVP 0 8 101\r\n"), "{sdp}");
            assert!(sdp.contains("c=IN IP4 192.0.2.1\r\n"), "{sdp}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(statuses(&outs), ["calling"]);
}

#[test]
fn ringing_early_media_and_the_answer_connect_the_phone_leg_once() {
    let mut d = Dialing::placed();
    d.input(Input::CalleeRinging { early_sdp: None });
    assert_eq!(statuses(&d.drain()), ["ringing"]);
    d.input(Input::CalleeRinging {
        early_sdp: Some(CALLEE_SDP.into()),
    });
    let outs = d.drain();
    assert!(statuses(&outs).is_empty(), "ringing is said once");
    match media(&outs).as_slice() {
        [MediaCommand::ConnectPhone(p)] => {
            assert_eq!(p.remote_rtp, "192.0.2.20:30000".parse().unwrap());
            assert_eq!((p.codec_pt, p.telephone_event_pt), (0, Some(101)));
        }
        other => panic!("early media connects the phone leg: {other:?}"),
    }
    d.now += Duration::from_secs(3);
    d.input(Input::CalleeAnswered {
        sdp: CALLEE_SDP.into(),
    });
    let outs = d.drain();
    assert!(media(&outs).is_empty(), "same address: no reconnect");
    assert_eq!(statuses(&outs), ["Connected"]);
    assert!(sip(&outs).is_empty() && !d.call.is_ended());
    // Media connecting to the bridge says nothing more: the callee's answer is what counts.
    d.input(Input::Media(MediaEvent::ConferenceConnected));
    assert!(statuses(&d.drain()).is_empty());
}

#[test]
fn busy_rejected_and_unanswered_show_their_status_for_five_seconds_then_leave() {
    for (status, label, condition) in [
        (486, "busy", "busy"),
        (600, "busy", "busy"),
        (603, "rejected", "decline"),
        (404, "rejected", "decline"),
        (480, "expired", "expired"),
    ] {
        let mut d = Dialing::inviting();
        d.input(Input::CalleeFailed {
            status,
            reason: "Nope".into(),
        });
        let outs = d.drain();
        assert_eq!(statuses(&outs), [label], "{status}");
        assert!(sip(&outs).is_empty() && !d.call.is_ended(), "{status}");
        // The SIP stack ends the failed dialog at once; the status stays up regardless.
        d.input(Input::SipTerminated("the SIP dialog is gone".into()));
        assert!(d.drain().is_empty() && !d.call.is_ended(), "{status}");
        d.advance(Duration::from_millis(4_999));
        assert!(d.drain().is_empty(), "{status}: still showing why");
        d.advance(Duration::from_millis(1));
        let outs = d.drain();
        assert!(
            sip(&outs).is_empty(),
            "{status}: nothing more to the callee"
        );
        assert_eq!(
            terminate_condition(&outs).as_deref(),
            Some(condition),
            "{status}"
        );
        assert!(matches!(xmpp(&outs).last(), Some(XmppCommand::Leave)));
        assert!(matches!(media(&outs).as_slice(), [MediaCommand::Stop]));
        assert!(
            ended(&outs).is_some_and(|e| e.text.contains(label)),
            "{outs:?}"
        );
    }
}

#[test]
fn a_callee_that_never_answers_is_cancelled_after_the_ring_timeout() {
    let mut d = Dialing::inviting();
    d.input(Input::CalleeRinging { early_sdp: None });
    d.drain();
    d.advance(Duration::from_secs(59));
    let early = d.drain();
    assert!(early.is_empty(), "{early:?}");
    d.advance(Duration::from_secs(1));
    let outs = d.drain();
    assert_eq!(sip(&outs), [SipCommand::Cancel]);
    assert_eq!(statuses(&outs), ["expired"]);
    // The 487 that answers our CANCEL changes nothing.
    d.input(Input::CalleeFailed {
        status: 487,
        reason: "Request Terminated".into(),
    });
    assert!(d.drain().is_empty());
    d.advance(Duration::from_secs(5));
    assert!(d.call.is_ended());
}

#[test]
fn a_rayo_hangup_from_the_room_cancels_a_ringing_callee_and_byes_an_answered_one() {
    let moderator = "room1@conference.meet.example.com/abcd1234";
    let mut d = Dialing::inviting();
    d.iq(moderator, HANGUP);
    let outs = d.drain();
    assert!(
        matches!(xmpp(&outs).first(), Some(XmppCommand::Reply { to, reply: Reply::Result(None), .. }) if to == moderator),
        "{outs:?}"
    );
    assert_eq!(sip(&outs), [SipCommand::Cancel]);
    assert_eq!(terminate_condition(&outs).as_deref(), Some("success"));
    assert!(matches!(xmpp(&outs).last(), Some(XmppCommand::Leave)));

    let mut d = Dialing::answered();
    d.iq(moderator, HANGUP);
    let outs = d.drain();
    assert_eq!(sip(&outs), [SipCommand::Bye { reason: None }]);
    assert_eq!(ended(&outs).map(|e| e.by), Some(EndedBy::Conference));
}

#[test]
fn a_rayo_hangup_from_outside_the_room_is_refused_and_the_call_goes_on() {
    let mut d = Dialing::answered();
    d.iq("mallory@meet.example.com/x", HANGUP);
    let outs = d.drain();
    assert!(
        matches!(xmpp(&outs).as_slice(), [XmppCommand::Reply { reply: Reply::Error(e), .. }] if e.condition == ErrorCondition::NotAllowed),
        "{outs:?}"
    );
    assert!(sip(&outs).is_empty() && !d.call.is_ended());
}

#[test]
fn the_callee_hanging_up_ends_the_jingle_session_and_leaves() {
    let mut d = Dialing::answered();
    d.input(Input::SipBye);
    let outs = d.drain();
    assert!(sip(&outs).is_empty());
    assert_eq!(terminate_condition(&outs).as_deref(), Some("success"));
    assert!(matches!(xmpp(&outs).last(), Some(XmppCommand::Leave)));
    assert_eq!(
        ended(&outs).map(|e| e.text.as_str()),
        Some("the callee hung up")
    );
}

#[test]
fn being_kicked_while_the_callee_rings_cancels_the_invite() {
    let mut d = Dialing::inviting();
    d.input(Input::CalleeRinging { early_sdp: None });
    d.drain();
    d.input(Input::Xmpp(Inbound::Kicked { reason: None }));
    let outs = d.drain();
    assert_eq!(sip(&outs), [SipCommand::Cancel]);
    assert!(jingle_sent(&outs).is_empty());
}

#[test]
fn an_answer_without_usable_audio_is_hung_up_with_488() {
    let mut d = Dialing::inviting();
    d.input(Input::CalleeAnswered {
        sdp: CALLEE_SDP.replace("RTP/AVP 0 101", "RTP/AVP 18"),
    });
    let outs = d.drain();
    assert_eq!(
        sip(&outs),
        [SipCommand::Bye {
            reason: reason(488, "the callee's answer has no usable audio")
        }]
    );
    assert!(d.call.is_ended());
}

#[test]
fn the_phase_of_a_dial_out_goes_calling_ringing_connected_and_setup_is_dial_to_answer() {
    let mut d = Dialing::placed();
    assert!(d.call.is_outbound());
    assert_eq!(d.call.phase(), CallPhase::Calling);
    d.input(Input::CalleeRinging { early_sdp: None });
    assert_eq!(d.call.phase(), CallPhase::Ringing);
    d.input(Input::Media(MediaEvent::ConferenceConnected));
    d.now += Duration::from_secs(4);
    d.input(Input::CalleeAnswered {
        sdp: CALLEE_SDP.into(),
    });
    assert_eq!(d.call.phase(), CallPhase::Connected);
    assert_eq!(d.call.setup_time(), Some(Duration::from_secs(4)));

    let mut busy = Dialing::inviting();
    busy.input(Input::CalleeFailed {
        status: 486,
        reason: "Busy Here".into(),
    });
    assert_eq!(busy.call.phase(), CallPhase::Failed);
    assert_eq!(busy.call.setup_time(), None);
}
