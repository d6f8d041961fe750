//! What the gateway sends: transport-info, session-accept and session-terminate.

use super::super::*;
use super::{fixture, jingle, without_whitespace, xml};

fn local_answer() -> LocalAnswer {
    LocalAnswer {
        ufrag: "Qx7f".into(),
        pwd: "b3W9kLmN0pQ2rS4tU6vX8yZa".into(),
        fingerprint: LocalFingerprint {
            hash: "sha-256".into(),
            value: "8F:12:4C:D9:3A:E6:71:B0:25:C8:9D:4E:F3:06:A7:5B:E2:19:8C:60:D4:37:AB:F1:0E:92:5D:C6:73:28:B4:E9".into(),
        },
        candidates: vec![Candidate {
            component: 1,
            foundation: "1".into(),
            generation: Some(0),
            id: Some("c1".into()),
            ip: "192.0.2.10".parse().unwrap(),
            network: Some(0),
            port: 20000,
            priority: 2130706431,
            protocol: Protocol::Udp,
            kind: CandidateType::Host,
            rel_addr: None,
            rel_port: None,
            tcptype: None,
        }],
        ssrc: 1789243650,
        cname: "c7a1f0e39b2d4865".into(),
        msid: Msid {
            stream: "4f1c8e2a".into(),
            track: "b3e5d7f9".into(),
        },
    }
}

fn reparse(el: &Element) -> JingleIq {
    JingleIq::parse(el).expect("we parse what we build")
}

#[test]
fn transport_info_carries_our_ice_credentials_and_candidates_on_audio() {
    let answer = local_answer();
    let iq = reparse(&transport_info("5ekrvb7dv0ie1", &answer));
    assert_eq!(iq.action, Action::TransportInfo);
    assert_eq!(iq.sid, "5ekrvb7dv0ie1");
    assert_eq!(iq.contents.len(), 1);
    let c = &iq.contents[0];
    assert_eq!(
        (c.name.as_str(), c.creator),
        ("audio", Some(Creator::Initiator))
    );
    assert_eq!(c.description, None);
    let t = c.transport.as_ref().unwrap();
    assert_eq!(
        (t.ufrag.as_deref(), t.pwd.as_deref()),
        (Some("Qx7f"), Some("b3W9kLmN0pQ2rS4tU6vX8yZa"))
    );
    assert_eq!(t.candidates, answer.candidates);
    assert!(t.fingerprints.is_empty());
}

#[test]
fn transport_info_has_jigasis_shape() {
    let theirs = jingle("transport-info-jigasi.xml");
    let t = theirs.contents[0].transport.as_ref().unwrap();
    let answer = LocalAnswer {
        ufrag: t.ufrag.clone().unwrap(),
        pwd: t.pwd.clone().unwrap(),
        candidates: t.candidates.clone(),
        ..local_answer()
    };
    let mut ours = reparse(&transport_info(&theirs.sid, &answer));
    // jigasi names itself initiator here (a quirk of its stack); Jicofo does not look at it
    ours.initiator = theirs.initiator.clone();
    assert_eq!(ours, theirs);
}

#[test]
fn session_accept_answers_the_audio_content_only() {
    let offer = jingle("session-initiate-browser.xml")
        .audio_offer()
        .unwrap();
    let el = session_accept(
        "2qv9hh0r1k7ms",
        "room1@conference.meet.example.com/7e2d9a41",
        &local_answer(),
        &offer,
    );
    let iq = reparse(&el);
    assert_eq!(iq.action, Action::SessionAccept);
    assert_eq!(
        iq.responder.as_deref(),
        Some("room1@conference.meet.example.com/7e2d9a41")
    );
    assert_eq!(iq.initiator, None);
    assert_eq!(iq.contents.len(), 1);
    assert_eq!(iq.group, Some(Group::bundle(["audio"])));

    let c = &iq.contents[0];
    assert_eq!(
        (c.name.as_str(), c.creator, c.senders),
        ("audio", Some(Creator::Initiator), None)
    );
    let d = c.description.as_ref().unwrap();
    assert_eq!(
        (d.media.as_deref(), d.ssrc),
        (Some("audio"), Some(1789243650))
    );
    let pts: Vec<_> = d
        .payload_types
        .iter()
        .map(|p| {
            (
                p.id,
                p.name.as_deref().unwrap(),
                p.clockrate.unwrap(),
                p.channels,
            )
        })
        .collect();
    assert_eq!(
        pts,
        [
            (111, "opus", 48000, Some(2)),
            (126, "telephone-event", 8000, None)
        ]
    );
    assert_eq!(
        d.hdrexts,
        [HdrExt {
            id: 1,
            uri: AUDIO_LEVEL_URI.into(),
            senders: None
        }]
    );
    assert!(d.rtcp_mux);

    let source = &d.sources[0];
    assert_eq!(d.sources.len(), 1);
    assert_eq!(
        (source.ssrc, &source.name, &source.owner),
        (1789243650, &None, &None)
    );
    assert_eq!(
        source.parameters,
        [
            Parameter::new("cname", "c7a1f0e39b2d4865"),
            Parameter::new("msid", "4f1c8e2a b3e5d7f9"),
            Parameter::new("mslabel", "4f1c8e2a"),
            Parameter::new("label", "b3e5d7f9"),
        ]
    );

    let t = c.transport.as_ref().unwrap();
    assert_eq!(t.ufrag.as_deref(), Some("Qx7f"));
    assert_eq!(t.candidates.len(), 1);
    assert_eq!(
        t.fingerprints,
        [Fingerprint {
            hash: "sha-256".into(),
            setup: Some(Setup::Active),
            value: local_answer().fingerprint.value,
            required: None,
            cryptex: None,
        }]
    );
}

#[test]
fn session_accept_follows_the_offers_payload_types_and_extension_id() {
    let text = fixture("session-initiate-jigasi.xml")
        .replace("id=\"111\"", "id=\"109\"")
        .replace("id=\"126\"", "id=\"101\"")
        .replace("id=\"1\" uri", "id=\"3\" uri");
    let offer = JingleIq::parse(&xml(&text)).unwrap().audio_offer().unwrap();
    let iq = reparse(&session_accept("s", "r", &local_answer(), &offer));
    let d = iq.contents[0].description.as_ref().unwrap();
    let ids: Vec<_> = d.payload_types.iter().map(|p| p.id).collect();
    assert_eq!(ids, [109, 101]);
    assert_eq!(d.hdrexts[0].id, 3);

    let bare = AudioOffer {
        telephone_event_pt: None,
        audio_level_ext: None,
        ..offer
    };
    let iq = reparse(&session_accept("s", "r", &local_answer(), &bare));
    let d = iq.contents[0].description.as_ref().unwrap();
    assert_eq!(d.payload_types.len(), 1);
    assert!(d.hdrexts.is_empty());
}

/// The parts Jicofo reads from jigasi's accept are the same in ours.
#[test]
fn session_accept_has_jigasis_shape() {
    let theirs = jingle("session-accept-jigasi.xml");
    let offer = jingle("session-initiate-jigasi.xml").audio_offer().unwrap();
    let ours = reparse(&session_accept(&theirs.sid, "r", &local_answer(), &offer));
    let shape = |iq: &JingleIq| {
        let c = &iq.contents[0];
        let d = c.description.as_ref().unwrap();
        let source = &d.sources[0];
        (
            iq.contents.len(),
            c.name.clone(),
            c.creator,
            d.media.clone(),
            d.ssrc == Some(source.ssrc),
            d.payload_types.iter().map(|p| p.id).collect::<Vec<_>>(),
            d.hdrexts
                .iter()
                .map(|h| (h.id, h.uri.clone()))
                .collect::<Vec<_>>(),
            d.sources.len(),
            source.name.clone(),
            source
                .parameters
                .iter()
                .map(|p| p.name.clone())
                .collect::<Vec<_>>(),
            c.transport.as_ref().unwrap().fingerprints[0].setup,
        )
    };
    assert_eq!(shape(&ours), shape(&theirs));
}

#[test]
fn session_terminate_prints_like_jicofo() {
    let ours = session_terminate(
        "5ekrvb7dv0ie1",
        Condition::GeneralError,
        Some("jingle session failed"),
    );
    assert_eq!(
        ours,
        without_whitespace(&xml(fixture("session-terminate-general-error.xml")))
    );
    let ours = session_terminate("5ekrvb7dv0ie1", Condition::Busy, None);
    assert_eq!(
        ours,
        without_whitespace(&xml(fixture("session-terminate-busy.xml")))
    );
}
