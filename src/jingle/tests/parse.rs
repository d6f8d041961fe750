//! Parsing Jicofo's, browsers' and jigasi's Jingle, and printing it back.

use std::net::IpAddr;

use super::super::*;
use super::{fixture, jingle, without_whitespace, xml, FIXTURES};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

#[test]
fn jicofo_offer_to_jigasi_is_read_in_full() {
    let iq = jingle("session-initiate-jigasi.xml");
    assert_eq!(iq.action, Action::SessionInitiate);
    assert_eq!(iq.sid, "5ekrvb7dv0ie1");
    assert_eq!(
        iq.initiator.as_deref(),
        Some("room1@conference.meet.example.com/focus")
    );
    assert_eq!(iq.contents.len(), 1);

    let audio = &iq.contents[0];
    assert_eq!(
        (audio.creator, audio.name.as_str(), audio.senders),
        (Some(Creator::Initiator), "audio", Some(Senders::Both))
    );
    let d = audio.description.as_ref().unwrap();
    assert_eq!(d.media.as_deref(), Some("audio"));
    assert_eq!(d.maxptime, Some(60));
    let mut opus = PayloadType::new(111, "opus", 48_000);
    opus.channels = Some(2);
    opus.parameters = vec![
        Parameter::new("minptime", "10"),
        Parameter::new("useinbandfec", "1"),
    ];
    assert_eq!(
        d.payload_types,
        [opus, PayloadType::new(126, "telephone-event", 8_000)]
    );
    assert_eq!(
        d.hdrexts
            .iter()
            .map(|h| (h.id, h.uri.as_str()))
            .collect::<Vec<_>>(),
        [
            (1, "urn:ietf:params:rtp-hdrext:ssrc-audio-level"),
            (10, "urn:ietf:params:rtp-hdrext:sdes:mid")
        ]
    );
    assert!(d.extmap_allow_mixed && d.rtcp_mux);
    assert_eq!(
        d.sources
            .iter()
            .map(|s| (s.ssrc, s.name.as_deref(), s.owner.as_deref()))
            .collect::<Vec<_>>(),
        [
            (2735473921, Some("abcd1234-a0"), Some("abcd1234")),
            (1350206211, Some("5f3a09c1-a0"), Some("5f3a09c1")),
            (411162308, Some("jvb-a0"), Some("jvb")),
        ]
    );
    assert_eq!(
        d.sources[2].parameter("msid"),
        Some("mixedmslabel mixedlabelaudio0")
    );

    let t = audio.transport.as_ref().unwrap();
    assert_eq!(t.ufrag.as_deref(), Some("2fk1v1hq0s9q4t"));
    assert_eq!(t.pwd.as_deref(), Some("1rpq8m9vkb0t2gr5ia6lcn3h7e"));
    assert!(t.rtcp_mux);
    assert_eq!(
        t.fingerprints,
        [Fingerprint {
            hash: "sha-256".into(),
            setup: Some(Setup::Actpass),
            value: "3A:7B:1C:94:E2:5F:08:D6:41:AA:C3:77:9E:12:B0:5D:66:F8:23:0C:9A:4E:B1:D7:58:E3:2F:90:6C:15:A8:4B".into(),
            required: Some(false),
            cryptex: Some(true),
        }]
    );
    assert_eq!(
        t.candidates[0],
        Candidate {
            component: 1,
            foundation: "1".into(),
            generation: Some(0),
            id: Some("653aa1ba295b62480ffffffffdc52c0ba".into()),
            ip: ip("10.0.0.5"),
            network: Some(0),
            port: 10000,
            priority: 2130706431,
            protocol: Protocol::Udp,
            kind: CandidateType::Host,
            rel_addr: None,
            rel_port: None,
            tcptype: None,
        }
    );
    assert_eq!(t.candidates[1].ip, ip("2001:db8:10::5"));
    let srflx = &t.candidates[2];
    assert_eq!(
        (srflx.kind, srflx.rel_addr, srflx.rel_port),
        (CandidateType::Srflx, Some(ip("10.0.0.5")), Some(10000))
    );
    assert!(t.web_sockets.is_empty() && t.sctpmap.is_none());

    assert_eq!(iq.group, Some(Group::bundle(["audio"])));
    assert_eq!(
        iq.bridge_session,
        Some(BridgeSession {
            id: Some("6d1f3a2b8c9e".into()),
            region: Some("eu-west-1".into()),
            restart: None,
        })
    );
    assert_eq!(
        (iq.start_muted, iq.reason, iq.json_message),
        (None, None, None)
    );
}

#[test]
fn older_jicofo_offer_gives_owners_as_occupant_jids_and_start_muted() {
    let iq = jingle("session-initiate-jigasi-jid-owners.xml");
    let owners: Vec<_> = iq.contents[0]
        .description
        .as_ref()
        .unwrap()
        .sources
        .iter()
        .map(|s| s.owner.clone().unwrap())
        .collect();
    assert_eq!(
        owners,
        [
            "room1@conference.meet.example.com/abcd1234",
            "room1@conference.meet.example.com/5f3a09c1",
            "jvb"
        ]
    );
    assert_eq!(
        iq.start_muted,
        Some(StartMuted {
            audio: Some(true),
            video: Some(false)
        })
    );
}

#[test]
fn browser_offer_keeps_video_groups_feedback_and_the_data_channel() {
    let iq = jingle("session-initiate-browser.xml");
    let names: Vec<_> = iq.contents.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["audio", "video", "data"]);

    let audio = iq.content("audio").unwrap().description.as_ref().unwrap();
    assert_eq!(
        audio.payload_types[0].rtcp_fbs,
        [RtcpFb {
            kind: "transport-cc".into(),
            subtype: None
        }]
    );

    let video = iq.content("video").unwrap().description.as_ref().unwrap();
    assert_eq!(video.payload_types.len(), 8);
    let vp8 = video.payload_types.iter().find(|p| p.id == 100).unwrap();
    assert_eq!(
        vp8.rtcp_fbs
            .iter()
            .map(|f| (f.kind.as_str(), f.subtype.as_deref()))
            .collect::<Vec<_>>(),
        [
            ("ccm", Some("fir")),
            ("nack", None),
            ("nack", Some("pli")),
            ("transport-cc", None)
        ]
    );
    let rtx = video.payload_types.iter().find(|p| p.id == 96).unwrap();
    assert_eq!(rtx.parameters, [Parameter::new("apt", "100")]);
    assert_eq!(
        video.ssrc_groups[0],
        SsrcGroup {
            semantics: "SIM".into(),
            ssrcs: vec![257838819, 865670341, 1427774514]
        }
    );
    assert_eq!(video.ssrc_groups.len(), 5);
    let desktop = video.sources.iter().find(|s| s.ssrc == 2306112481).unwrap();
    assert_eq!(desktop.video_type.as_deref(), Some("desktop"));
    assert_eq!(video.sources.len(), 9);

    let data = iq.content("data").unwrap();
    assert!(data.is_data());
    assert_eq!(data.media(), Some("application"));
    let t = data.transport.as_ref().unwrap();
    assert_eq!(
        t.sctpmap,
        Some(SctpMap {
            number: 5000,
            protocol: Some("webrtc-datachannel".into()),
            streams: Some(1024)
        })
    );
    assert_eq!(t.web_sockets.len(), 1);
    assert!(t.web_sockets[0].starts_with("wss://meet.example.com/colibri-ws/"));
    assert_eq!(iq.group, Some(Group::bundle(["audio", "video", "data"])));
}

#[test]
fn source_add_from_jicofo_has_contents_without_creator_or_transport() {
    let iq = jingle("source-add.xml");
    assert_eq!(iq.action, Action::SourceAdd);
    assert_eq!(iq.initiator, None);
    for c in &iq.contents {
        assert_eq!((c.creator, c.senders, &c.transport), (None, None, &None));
    }
    let video = iq.content("video").unwrap().description.as_ref().unwrap();
    assert_eq!(
        video.ssrc_groups,
        [SsrcGroup {
            semantics: "FID".into(),
            ssrcs: vec![3141592653, 2718281828]
        }]
    );
    assert_eq!(jingle("source-remove.xml").action, Action::SourceRemove);
}

#[test]
fn session_terminate_gives_condition_and_text() {
    let cases = [
        (
            "session-terminate-general-error.xml",
            Condition::GeneralError,
            Some("jingle session failed"),
        ),
        (
            "session-terminate-expired.xml",
            Condition::Expired,
            Some("Idle session timeout"),
        ),
        (
            "session-terminate-success.xml",
            Condition::Success,
            Some("moving"),
        ),
        ("session-terminate-busy.xml", Condition::Busy, None),
    ];
    for (name, condition, text) in cases {
        let iq = jingle(name);
        assert_eq!(iq.action, Action::SessionTerminate, "{name}");
        assert_eq!(
            iq.reason,
            Some(Reason {
                condition,
                text: text.map(str::to_owned)
            }),
            "{name}"
        );
    }
}

#[test]
fn unknown_reason_condition_keeps_its_name() {
    let iq = JingleIq::parse(&xml(
        "<jingle xmlns='urn:xmpp:jingle:1' action='session-terminate' sid='s'>\
         <reason><went-fishing/></reason></jingle>",
    ))
    .unwrap();
    let reason = iq.reason.unwrap();
    assert_eq!(reason.condition, Condition::Other("went-fishing".into()));
    assert_eq!(reason.condition.as_str(), "went-fishing");
}

#[test]
fn jigasi_answer_is_read() {
    let accept = jingle("session-accept-jigasi.xml");
    assert_eq!(accept.action, Action::SessionAccept);
    let d = accept.contents[0].description.as_ref().unwrap();
    assert_eq!(d.ssrc, Some(1789243650));
    assert_eq!(d.hdrexts[0].senders, Some(Senders::Both));
    let names: Vec<_> = d.sources[0]
        .parameters
        .iter()
        .map(|p| p.name.as_deref().unwrap())
        .collect();
    assert_eq!(names, ["cname", "msid", "mslabel", "label"]);
    let t = accept.contents[0].transport.as_ref().unwrap();
    assert_eq!(t.fingerprints[0].setup, Some(Setup::Active));
    assert_eq!((t.ufrag.as_deref(), t.candidates.len()), (None, 0));

    let info = jingle("transport-info-jigasi.xml");
    assert_eq!(info.action, Action::TransportInfo);
    let t = info.contents[0].transport.as_ref().unwrap();
    assert_eq!(t.ufrag.as_deref(), Some("4mtr91fh0s2qb6"));
    assert_eq!(t.candidates.len(), 2);
}

#[test]
fn json_encoded_sources_are_kept_raw() {
    let iq = jingle("ljm-session-initiate-json-sources.xml");
    let json = iq.json_message.unwrap();
    assert!(json.starts_with("{\"sources\":{\"831de82b\":"), "{json}");
}

#[test]
fn parameters_are_read_in_any_namespace() {
    let iq = JingleIq::parse(&xml(
        "<jingle xmlns='urn:xmpp:jingle:1' action='source-add' sid='s'>\
         <content name='audio'><description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>\
         <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='1'>\
           <parameter xmlns='urn:xmpp:jingle:apps:rtp:1' name='a' value='1'/>\
           <parameter name='b' value='2'/>\
           <parameter xmlns='urn:example:other' name='c' value='3'/>\
         </source></description></content></jingle>",
    ))
    .unwrap();
    let source = &iq.contents[0].description.as_ref().unwrap().sources[0];
    assert_eq!(
        (
            source.parameter("a"),
            source.parameter("b"),
            source.parameter("c")
        ),
        (Some("1"), Some("2"), Some("3"))
    );
}

#[test]
fn parameter_without_name_or_value_is_kept_as_such() {
    let iq = jingle("ljm-session-initiate.xml");
    let d = iq.contents[0].description.as_ref().unwrap();
    let te = d.payload_types.iter().find(|p| p.id == 126).unwrap();
    assert_eq!(
        te.parameters,
        [Parameter {
            name: Some(String::new()),
            value: Some("0-15".into())
        }]
    );
}

#[test]
fn unknown_children_and_attributes_are_ignored() {
    let plain = jingle("session-initiate-jigasi.xml");
    let noisy = fixture("session-initiate-jigasi.xml")
        .replace(
            "<rtcp-mux/>",
            "<rtcp-mux/><x xmlns='urn:example:unknown' a='1'/>",
        )
        .replace(
            "<content creator",
            "<content xmlns:foo='urn:example:foo' foo:bar='1' future='yes' creator",
        )
        .replace(
            "</jingle>",
            "<traceparent xmlns='urn:example:tracing' id='1'/></jingle>",
        );
    assert_eq!(JingleIq::parse(&xml(&noisy)).unwrap(), plain);
}

#[test]
fn unknown_action_is_kept_not_refused() {
    let iq = JingleIq::parse(&xml(
        "<jingle xmlns='urn:xmpp:jingle:1' action='addsource' sid='s'/>",
    ))
    .unwrap();
    assert_eq!(iq.action, Action::Other("addsource".into()));
    assert_eq!(iq.to_element().attr("action"), Some("addsource"));
}

#[test]
fn every_action_reads_back_as_itself() {
    let names = [
        "content-accept",
        "content-add",
        "content-modify",
        "content-reject",
        "content-remove",
        "description-info",
        "security-info",
        "session-accept",
        "session-info",
        "session-initiate",
        "session-terminate",
        "source-add",
        "source-remove",
        "transport-accept",
        "transport-info",
        "transport-reject",
        "transport-replace",
    ];
    for name in names {
        let action = Action::parse(name);
        assert!(!matches!(action, Action::Other(_)), "{name}");
        assert_eq!(action.as_str(), name);
    }
}

#[test]
fn every_fixture_survives_a_round_trip() {
    for (name, text) in FIXTURES {
        let first = JingleIq::parse(&xml(text)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let built = first.to_element();
        let second = JingleIq::parse(&built).unwrap_or_else(|e| panic!("{name} rebuilt: {e}"));
        assert_eq!(second, first, "{name}");
        assert_eq!(second.to_element(), built, "{name}");
    }
}

/// Fixtures in Jicofo's exact shape print back to the same XML: namespaces, child order and all
/// attributes (the browser offer is left out: Jicofo writes H264's rtcp-fb before its parameter,
/// we always write parameters first).
#[test]
fn jicofo_shapes_print_back_identically() {
    for name in [
        "session-initiate-jigasi.xml",
        "session-initiate-jigasi-jid-owners.xml",
        "transport-replace.xml",
        "source-add.xml",
        "source-remove.xml",
        "session-terminate-general-error.xml",
        "session-terminate-busy.xml",
        "transport-info-jigasi.xml",
    ] {
        let original = without_whitespace(&xml(fixture(name)));
        assert_eq!(jingle(name).to_element(), original, "{name}");
    }
}

#[test]
fn parameters_are_printed_in_the_rtp_namespace_like_jicofo() {
    let iq = JingleIq::parse(&xml(
        "<jingle xmlns='urn:xmpp:jingle:1' action='source-add' sid='s'>\
         <content name='audio'><description xmlns='urn:xmpp:jingle:apps:rtp:1' media='audio'>\
         <source xmlns='urn:xmpp:jingle:apps:rtp:ssma:0' ssrc='1'><parameter name='msid' value='a b'/>\
         </source></description></content></jingle>",
    ))
    .unwrap();
    let el = iq.to_element();
    let source = el
        .children()
        .next()
        .and_then(|c| c.children().next())
        .and_then(|d| d.children().next())
        .unwrap();
    let parameter = source.children().next().unwrap();
    assert_eq!(parameter.ns(), "urn:xmpp:jingle:apps:rtp:1");
}
