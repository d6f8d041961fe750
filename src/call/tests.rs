//! The call's decisions on virtual time: no sockets, no sleeps. Jingle inputs are the real
//! Jicofo-shaped fixtures of `tests/fixtures/jingle`.

use super::machine::*;
use crate::config::{load, ConfigInput, Settings};
use crate::jingle::{Element, JingleIq};
use crate::media::{ConferenceAnswer, IceCandidate, MediaEvent};
use crate::sip::Reason;
use crate::xmpp::{ErrorCondition, Inbound, Occupant, Reply};
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(super) const ROOM: &str = "room1@conference.meet.example.com";
pub(super) const FOCUS: &str = "room1@conference.meet.example.com/focus";
pub(super) const OFFER: &str =
    include_str!("../../tests/fixtures/jingle/session-initiate-jigasi.xml");
const SOURCE_ADD: &str = include_str!("../../tests/fixtures/jingle/source-add.xml");
const SOURCE_REMOVE: &str = include_str!("../../tests/fixtures/jingle/source-remove.xml");
const TERMINATE: &str = include_str!("../../tests/fixtures/jingle/session-terminate-success.xml");
const PCMU_OFFER: &str =
    "v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
                          m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
                          a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n";

pub(super) fn settings(env: &[(&str, &str)]) -> Arc<Settings> {
    let map: BTreeMap<String, String> = [("JIGASI_XMPP_PASSWORD", "x")]
        .iter()
        .chain(env)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let loaded = load(&ConfigInput {
        file: None,
        env: &map,
        flags: vec![],
    })
    .expect("settings");
    Arc::new(loaded.settings)
}

fn invite(room: Option<&str>, sdp: &str) -> Invite {
    Invite {
        call_id: "call-1".into(),
        caller: "Alice".into(),
        room_header: room.map(str::to_owned),
        password_header: None,
        body: Some(sdp.as_bytes().to_vec()),
        local_ip: IpAddr::from([192, 0, 2, 1]),
    }
}

struct Harness {
    call: Call,
    now: Instant,
}

impl Harness {
    fn new(env: &[(&str, &str)], room: Option<&str>, sdp: &str) -> Harness {
        let now = Instant::now();
        Harness {
            call: Call::new(settings(env), invite(room, sdp), "1a2b3c4d".into(), now),
            now,
        }
    }

    /// A call already in the room, waiting for the offer.
    fn joined(env: &[(&str, &str)]) -> Harness {
        let mut h = Harness::new(env, Some(ROOM), PCMU_OFFER);
        h.drain();
        h.input(Input::XmppReady);
        h.input(Input::Xmpp(Inbound::SelfJoined {
            occupants: vec![focus(), occupant("abcd1234")],
        }));
        h.drain();
        h
    }

    /// A call answered on both sides with media connected.
    fn connected(env: &[(&str, &str)]) -> Harness {
        let mut h = Harness::joined(env);
        h.jingle(OFFER);
        h.drain();
        h.input(Input::MediaStarted {
            answer: answer(),
            phone_local: phone_local(),
        });
        h.input(Input::Media(MediaEvent::ConferenceConnected));
        h.drain();
        h
    }

    fn input(&mut self, input: Input) {
        self.call.handle_input(self.now, input);
    }

    fn jingle(&mut self, xml: &str) {
        self.jingle_from(FOCUS, xml);
    }

    fn jingle_from(&mut self, from: &str, xml: &str) {
        let payload: Element = xml.parse().expect("fixture XML");
        self.input(Input::Xmpp(Inbound::IqSet {
            from: from.into(),
            id: "iq1".into(),
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

pub(super) fn focus() -> Occupant {
    Occupant {
        nick: "focus".into(),
        jid: None,
        display_name: None,
        is_jigasi: false,
        is_focus: true,
    }
}

pub(super) fn occupant(nick: &str) -> Occupant {
    Occupant {
        nick: nick.into(),
        jid: None,
        display_name: None,
        is_jigasi: false,
        is_focus: false,
    }
}

pub(super) fn answer() -> ConferenceAnswer {
    ConferenceAnswer {
        ufrag: "ourufrag".into(),
        pwd: "ourpasswordourpassword".into(),
        fingerprint: ("sha-256".into(), vec!["AB"; 32].join(":")),
        candidates: vec![IceCandidate {
            foundation: "1".into(),
            component: 1,
            protocol: "udp".into(),
            priority: 2130706431,
            ip: IpAddr::from([192, 0, 2, 1]),
            port: 20002,
            kind: "host".into(),
            related: None,
        }],
        ssrc: 4242,
        cname: "cname".into(),
        msid: "stream track".into(),
    }
}

pub(super) fn phone_local() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], 20000))
}

pub(super) fn sip(outs: &[Output]) -> Vec<SipCommand> {
    outs.iter()
        .filter_map(|o| {
            if let Output::Sip(c) = o {
                Some(c.clone())
            } else {
                None
            }
        })
        .collect()
}

pub(super) fn xmpp(outs: &[Output]) -> Vec<&XmppCommand> {
    outs.iter()
        .filter_map(|o| {
            if let Output::Xmpp(c) = o {
                Some(c)
            } else {
                None
            }
        })
        .collect()
}

pub(super) fn media(outs: &[Output]) -> Vec<&MediaCommand> {
    outs.iter()
        .filter_map(|o| {
            if let Output::Media(c) = o {
                Some(c)
            } else {
                None
            }
        })
        .collect()
}

/// The Jingle actions of the IQs sent, in order.
pub(super) fn jingle_sent(outs: &[Output]) -> Vec<(String, JingleIq)> {
    xmpp(outs)
        .into_iter()
        .filter_map(|c| match c {
            XmppCommand::SendIq { to, payload, .. } => {
                Some((to.clone(), JingleIq::parse(payload).ok()?))
            }
            _ => None,
        })
        .collect()
}

pub(super) fn ended(outs: &[Output]) -> Option<&EndSummary> {
    outs.iter().find_map(|o| {
        if let Output::Ended(s) = o {
            Some(s)
        } else {
            None
        }
    })
}

pub(super) fn reason(cause: u16, text: &str) -> Option<Reason> {
    Some(Reason::new(cause, text))
}

// --- refusals before anything reaches XMPP ------------------------------------------------------

#[test]
fn a_call_without_a_room_is_refused_with_486_and_nothing_else_happens() {
    let mut h = Harness::new(&[], None, PCMU_OFFER);
    let outs = h.drain();
    assert!(
        matches!(
            sip(&outs).as_slice(),
            [SipCommand::Reject {
                code: 486,
                reason: Some(_)
            }]
        ),
        "{outs:?}"
    );
    assert!(xmpp(&outs).is_empty() && media(&outs).is_empty());
    assert!(h.call.is_ended());
}

#[test]
fn a_hostile_room_name_is_refused_with_400_and_no_xmpp_at_all() {
    let mut h = Harness::new(&[], Some("evil'/><presence/>"), PCMU_OFFER);
    let outs = h.drain();
    assert!(
        matches!(
            sip(&outs).as_slice(),
            [SipCommand::Reject { code: 400, .. }]
        ),
        "{outs:?}"
    );
    assert!(xmpp(&outs).is_empty());
}

#[test]
fn an_offer_without_a_common_codec_is_refused_with_488() {
    let g729 = PCMU_OFFER
        .replace("RTP/AVP 0 101", "RTP/AVP 18")
        .replace("a=rtpmap:0 PCMU/8000\r\n", "");
    let mut h = Harness::new(&[], Some(ROOM), &g729);
    assert!(matches!(
        sip(&h.drain()).as_slice(),
        [SipCommand::Reject { code: 488, .. }]
    ));
}

#[test]
fn the_default_room_takes_a_call_without_a_room_header() {
    let mut h = Harness::new(&[("JIGASI_SIP_DEFAULT_ROOM", "lobby")], None, PCMU_OFFER);
    let outs = h.drain();
    assert_eq!(sip(&outs), vec![SipCommand::Ring]);
    assert_eq!(
        h.call.room().map(|r| r.to_string()).as_deref(),
        Some("lobby@muc.meet.jitsi")
    );
}

// --- the way in ---------------------------------------------------------------------------------

#[test]
fn a_routable_call_rings_then_joins_with_the_callers_name_and_its_endpoint_nick() {
    let mut h = Harness::new(&[], Some(ROOM), PCMU_OFFER);
    let outs = h.drain();
    assert_eq!(sip(&outs), vec![SipCommand::Ring]);
    assert!(matches!(xmpp(&outs).as_slice(), [XmppCommand::Connect]));
    h.input(Input::XmppReady);
    let outs = h.drain();
    match xmpp(&outs).as_slice() {
        [XmppCommand::Join { request }] => {
            assert_eq!(request.room.to_string(), ROOM);
            assert_eq!(request.nick, "1a2b3c4d");
            assert_eq!(request.display_name, "Alice");
        }
        other => panic!("{other:?}"),
    }
    h.input(Input::Xmpp(Inbound::SelfJoined {
        occupants: vec![focus()],
    }));
    assert!(
        matches!(xmpp(&h.drain()).as_slice(), [XmppCommand::Status(s)] if s == "Initializing Call")
    );
}

#[test]
fn the_phone_is_answered_only_when_the_bridge_offer_arrives_then_jingle_in_jigasis_order() {
    let mut h = Harness::joined(&[]);
    h.advance(Duration::from_secs(5));
    assert!(sip(&h.drain()).is_empty(), "no answer before the offer");

    h.jingle(OFFER);
    let outs = h.drain();
    assert!(
        matches!(xmpp(&outs).as_slice(), [XmppCommand::Reply { to, reply: Reply::Result(None), .. }] if to == FOCUS),
        "the offer is acknowledged at once: {outs:?}"
    );
    match media(&outs).as_slice() {
        [MediaCommand::Start {
            phone: Some(phone),
            conference,
        }] => {
            assert_eq!(phone.remote_rtp, SocketAddr::from(([192, 0, 2, 10], 40000)));
            assert_eq!(phone.codec_pt, 0);
            assert_eq!(conference.opus_pt, 111);
            assert_eq!(
                conference.sources.len(),
                3,
                "two participants and the bridge's own"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(sip(&outs).is_empty());

    h.input(Input::MediaStarted {
        answer: answer(),
        phone_local: phone_local(),
    });
    let outs = h.drain();
    match sip(&outs).as_slice() {
        [SipCommand::Answer { sdp }] => {
            assert!(sdp.contains("m=audio 20000 RTP/AVP 0 101"), "{sdp}");
            assert!(sdp.contains("c=IN IP4 192.0.2.1"), "{sdp}");
        }
        other => panic!("{other:?}"),
    }
    let sent = jingle_sent(&outs);
    let actions: Vec<_> = sent
        .iter()
        .map(|(to, j)| (to.as_str(), j.action.as_str()))
        .collect();
    assert_eq!(
        actions,
        [(FOCUS, "transport-info"), (FOCUS, "session-accept")]
    );
    h.input(Input::Media(MediaEvent::ConferenceConnected));
    assert!(matches!(xmpp(&h.drain()).as_slice(), [XmppCommand::Status(s)] if s == "Connected"));
}

#[test]
fn jingle_from_anyone_but_the_focus_is_refused_and_changes_nothing() {
    let mut h = Harness::joined(&[]);
    h.jingle_from("room1@conference.meet.example.com/abcd1234", OFFER);
    let outs = h.drain();
    assert!(
        matches!(
            xmpp(&outs).as_slice(),
            [XmppCommand::Reply { reply: Reply::Error(e), .. }] if e.condition == ErrorCondition::NotAllowed
        ),
        "{outs:?}"
    );
    assert!(media(&outs).is_empty());
    // The same offer from another room's focus is not ours either.
    h.jingle_from("other@conference.meet.example.com/focus", OFFER);
    assert!(media(&h.drain()).is_empty());
}

#[test]
fn malformed_jingle_gets_bad_request_and_the_call_goes_on() {
    let mut h = Harness::joined(&[]);
    h.jingle(r#"<jingle xmlns="urn:xmpp:jingle:1" action="session-initiate"/>"#);
    let outs = h.drain();
    assert!(matches!(
        xmpp(&outs).as_slice(),
        [XmppCommand::Reply { reply: Reply::Error(e), .. }] if e.condition == ErrorCondition::BadRequest
    ));
    assert!(!h.call.is_ended());
}

#[test]
fn a_second_offer_while_one_is_taken_is_terminated_and_the_first_kept() {
    let mut h = Harness::connected(&[]);
    h.jingle(&OFFER.replace("5ekrvb7dv0ie1", "othersid"));
    let outs = h.drain();
    let sent = jingle_sent(&outs);
    assert_eq!(sent.len(), 1);
    assert_eq!(
        (sent[0].1.action.as_str(), sent[0].1.sid.as_str()),
        ("session-terminate", "othersid")
    );
    assert!(media(&outs).is_empty());
}

#[test]
fn source_add_and_remove_reach_the_media() {
    let mut h = Harness::connected(&[]);
    h.jingle(SOURCE_ADD);
    let outs = h.drain();
    assert!(
        matches!(media(&outs).as_slice(), [MediaCommand::AddSources(s)] if !s.is_empty()),
        "{outs:?}"
    );
    h.jingle(SOURCE_REMOVE);
    assert!(
        matches!(media(&h.drain()).as_slice(), [MediaCommand::RemoveSources(s)] if !s.is_empty())
    );
}

// --- the ways out -------------------------------------------------------------------------------

#[test]
fn no_offer_within_the_invite_timeout_refuses_the_ringing_phone_with_408_and_leaves() {
    let mut h = Harness::joined(&[("JIGASI_JVB_TIMEOUT", "30000")]);
    h.advance(Duration::from_millis(29_999));
    assert!(h.drain().is_empty());
    h.advance(Duration::from_millis(1));
    let outs = h.drain();
    assert_eq!(
        sip(&outs),
        vec![SipCommand::Reject {
            code: 408,
            reason: reason(408, "No invite from conference focus")
        }]
    );
    assert!(matches!(xmpp(&outs).as_slice(), [XmppCommand::Leave]));
    assert_eq!(ended(&outs).map(|e| e.by), Some(EndedBy::Gateway));
}

#[test]
fn the_callers_hangup_terminates_the_jingle_session_then_leaves() {
    let mut h = Harness::connected(&[]);
    h.input(Input::SipBye);
    let outs = h.drain();
    assert!(sip(&outs).is_empty(), "nothing more to the phone: {outs:?}");
    let sent = jingle_sent(&outs);
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.action.as_str(), "session-terminate");
    assert_eq!(
        sent[0]
            .1
            .reason
            .as_ref()
            .map(|r| r.condition.as_str().to_owned())
            .as_deref(),
        Some("success")
    );
    assert!(matches!(media(&outs).as_slice(), [MediaCommand::Stop]));
    let leave = outs
        .iter()
        .position(|o| matches!(o, Output::Xmpp(XmppCommand::Leave)));
    let terminate = outs
        .iter()
        .position(|o| matches!(o, Output::Xmpp(XmppCommand::SendIq { .. })));
    assert!(
        terminate < leave,
        "session-terminate before leaving the room"
    );
    assert_eq!(ended(&outs).map(|e| e.by), Some(EndedBy::Phone));
}

#[test]
fn a_cancel_while_ringing_leaves_the_room_without_any_jingle() {
    let mut h = Harness::joined(&[]);
    h.input(Input::SipCancelled);
    let outs = h.drain();
    assert!(sip(&outs).is_empty() && jingle_sent(&outs).is_empty() && media(&outs).is_empty());
    assert!(matches!(xmpp(&outs).as_slice(), [XmppCommand::Leave]));
}

#[test]
fn session_terminate_keeps_the_phone_until_the_invite_timeout_then_byes_with_408() {
    let mut h = Harness::connected(&[("JIGASI_JVB_TIMEOUT", "10000")]);
    h.jingle(TERMINATE);
    let outs = h.drain();
    assert!(
        matches!(media(&outs).as_slice(), [MediaCommand::StopConference]),
        "{outs:?}"
    );
    assert!(sip(&outs).is_empty(), "the phone stays");
    h.advance(Duration::from_secs(10));
    let outs = h.drain();
    assert_eq!(
        sip(&outs),
        vec![SipCommand::Bye {
            reason: reason(408, "No invite from conference focus")
        }]
    );
    assert!(jingle_sent(&outs).is_empty(), "the session is already over");
}

#[test]
fn a_reinvite_after_session_terminate_replaces_only_the_conference_leg() {
    let mut h = Harness::connected(&[]);
    h.jingle(TERMINATE);
    h.drain();
    h.jingle(&OFFER.replace("5ekrvb7dv0ie1", "newsid"));
    let outs = h.drain();
    assert!(
        matches!(
            media(&outs).as_slice(),
            [MediaCommand::RestartConference(_)]
        ),
        "{outs:?}"
    );
    h.input(Input::MediaStarted {
        answer: answer(),
        phone_local: phone_local(),
    });
    let outs = h.drain();
    assert!(sip(&outs).is_empty(), "the phone was answered already");
    let actions: Vec<_> = jingle_sent(&outs)
        .into_iter()
        .map(|(_, j)| (j.action.as_str().to_owned(), j.sid))
        .collect();
    assert_eq!(
        actions,
        [
            ("transport-info".to_owned(), "newsid".to_owned()),
            ("session-accept".into(), "newsid".into())
        ]
    );
}

#[test]
fn without_an_invite_timeout_session_terminate_ends_the_call_at_once() {
    let mut h = Harness::connected(&[("JIGASI_JVB_TIMEOUT", "0")]);
    h.jingle(TERMINATE);
    let outs = h.drain();
    assert!(
        matches!(sip(&outs).as_slice(), [SipCommand::Bye { reason: Some(r) }] if r.cause == 408)
    );
}

#[test]
fn conference_side_endings_bye_the_phone_with_their_cause() {
    let cases: Vec<(Inbound, u16)> = vec![
        (
            Inbound::Kicked {
                reason: Some("behave".into()),
            },
            403,
        ),
        (
            Inbound::RoomDestroyed {
                reason: None,
                alternate: None,
            },
            410,
        ),
    ];
    for (event, cause) in cases {
        let mut h = Harness::connected(&[]);
        h.input(Input::Xmpp(event));
        let outs = h.drain();
        assert!(
            matches!(sip(&outs).as_slice(), [SipCommand::Bye { reason: Some(r) }] if r.cause == cause),
            "{outs:?}"
        );
        assert!(
            jingle_sent(&outs).is_empty(),
            "no session-terminate once out of the room"
        );
        assert!(matches!(media(&outs).as_slice(), [MediaCommand::Stop]));
    }
    let mut h = Harness::connected(&[]);
    h.input(Input::XmppLost("eof".into()));
    let outs = h.drain();
    assert!(
        matches!(sip(&outs).as_slice(), [SipCommand::Bye { reason: Some(r) }] if r.cause == 503)
    );
    assert!(
        xmpp(&outs).is_empty(),
        "nothing to send on a lost connection"
    );
}

#[test]
fn a_media_failure_waits_for_jicofos_reinvite_and_a_late_one_is_ignored() {
    let mut h = Harness::connected(&[("JIGASI_JVB_TIMEOUT", "5000")]);
    h.input(Input::Media(MediaEvent::ConferenceFailed(
        "dtls closed".into(),
    )));
    let outs = h.drain();
    assert!(
        matches!(media(&outs).as_slice(), [MediaCommand::StopConference]) && sip(&outs).is_empty()
    );
    // The failure report of a session that already ended changes nothing.
    h.input(Input::Media(MediaEvent::ConferenceFailed("again".into())));
    assert!(h.drain().is_empty());
    h.advance(Duration::from_secs(5));
    assert!(matches!(
        sip(&h.drain()).as_slice(),
        [SipCommand::Bye { .. }]
    ));
}

#[test]
fn everything_after_the_end_is_ignored() {
    let mut h = Harness::connected(&[]);
    h.input(Input::SipBye);
    h.drain();
    h.input(Input::Xmpp(Inbound::Kicked { reason: None }));
    h.jingle(SOURCE_ADD);
    h.advance(Duration::from_secs(3600));
    assert!(h.drain().is_empty());
}

#[test]
fn transport_replace_restarts_the_conference_leg_and_is_answered_with_transport_accept() {
    let mut h = Harness::connected(&[]);
    h.jingle(include_str!(
        "../../tests/fixtures/jingle/transport-replace.xml"
    ));
    let outs = h.drain();
    assert!(
        matches!(
            media(&outs).as_slice(),
            [MediaCommand::RestartConference(_)]
        ),
        "{outs:?}"
    );
    h.input(Input::MediaStarted {
        answer: answer(),
        phone_local: phone_local(),
    });
    let outs = h.drain();
    assert!(sip(&outs).is_empty());
    let actions: Vec<_> = jingle_sent(&outs)
        .into_iter()
        .map(|(_, j)| j.action.as_str().to_owned())
        .collect();
    assert_eq!(actions, ["transport-info", "transport-accept"]);
}

#[test]
fn a_browser_shaped_offer_is_taken_for_its_audio_and_video_and_data_are_declined() {
    let mut h = Harness::joined(&[]);
    let browser = include_str!("../../tests/fixtures/jingle/session-initiate-browser.xml");
    h.jingle(browser);
    let outs = h.drain();
    assert!(
        matches!(media(&outs).as_slice(), [MediaCommand::Start { .. }]),
        "{outs:?}"
    );
    h.input(Input::MediaStarted {
        answer: answer(),
        phone_local: phone_local(),
    });
    let outs = h.drain();
    let accept = jingle_sent(&outs)
        .into_iter()
        .find(|(_, j)| j.action.as_str() == "session-accept")
        .expect("accept");
    let names: Vec<_> = accept.1.contents.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["audio"], "only the audio content is answered");
}

#[test]
fn the_phase_follows_the_call_from_connecting_to_ended_and_setup_is_invite_to_200() {
    let mut h = Harness::new(&[], Some(ROOM), PCMU_OFFER);
    h.drain();
    assert_eq!(h.call.phase(), CallPhase::Connecting);
    assert!(!h.call.is_outbound());
    h.input(Input::XmppReady);
    assert_eq!(h.call.phase(), CallPhase::Joining);
    h.input(Input::Xmpp(Inbound::SelfJoined {
        occupants: vec![focus(), occupant("abcd1234")],
    }));
    assert_eq!(h.call.phase(), CallPhase::WaitingForOffer);
    assert!(h.call.joined());
    h.jingle(OFFER);
    assert_eq!(h.call.phase(), CallPhase::StartingMedia);
    assert_eq!(h.call.setup_time(), None);
    h.now += Duration::from_millis(30);
    h.input(Input::MediaStarted {
        answer: answer(),
        phone_local: phone_local(),
    });
    assert_eq!(h.call.phase(), CallPhase::ConnectingMedia);
    assert_eq!(h.call.setup_time(), Some(Duration::from_millis(30)));
    h.input(Input::Media(MediaEvent::ConferenceConnected));
    assert_eq!(h.call.phase(), CallPhase::Connected);
    h.input(Input::SipBye);
    assert_eq!(h.call.phase(), CallPhase::Ended);
}
