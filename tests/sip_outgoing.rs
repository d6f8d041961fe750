//! Outgoing calls through a real outbound proxy: Kamailio 5.6 with digest auth
//! (`tests/lab/kamailio/registrar.cfg.in`) in front of baresip registered as bob, or of a SIPp
//! callee (`tests/lab/sipp/sip-uas-*.xml`) that Kamailio relays to. The gateway's side is the
//! `OutgoingDialog` event stream; the far ends say what they received.

#[path = "sip_support/mod.rs"]
mod support;

use gateway_lab::baresip::{Answer, Baresip};
use gateway_lab::kamailio::Registrar;
use gateway_lab::sipp::{SippCall, SippMessage};
use gateway_lab::{audio, paths};
use jitsi_sip_gateway::sip::{OutgoingCall, OutgoingDialog, OutgoingEvent, Reason, SipServer};
use std::path::Path;
use std::time::Duration;
use support::*;
use tokio::task::block_in_place;

const WAIT: Duration = Duration::from_secs(15);

const OFFER: &str = "v=0\r\no=- 4242 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                     m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n\
                     a=fmtp:101 0-15\r\na=sendrecv\r\n";

/// A gateway with the lab account gateway@sip.lab.test using `registrar` as outbound proxy;
/// it does not register (calls need no registration).
async fn gateway(registrar: &Registrar) -> SipServer {
    let port = format!("sip.server_port={}", registrar.port);
    let sets = [
        "sip.uri=gateway@sip.lab.test",
        "sip.password=gatewaypw",
        "sip.server=127.0.0.1",
        port.as_str(),
        "sip.register=false",
    ];
    start(&sets).await.0
}

fn call_to(to: &str) -> OutgoingCall {
    OutgoingCall {
        to: to.into(),
        display_name: Some("Room standup".into()),
        headers: vec![],
        sdp_offer: OFFER.into(),
    }
}

async fn next(call: &mut OutgoingDialog) -> Option<OutgoingEvent> {
    tokio::time::timeout(WAIT, call.next())
        .await
        .unwrap_or_else(|_| panic!("no event on {}", call.call_id()))
}

/// Skips Trying and Ringing; returns the first other event.
async fn after_progress(call: &mut OutgoingDialog) -> Option<OutgoingEvent> {
    loop {
        match next(call).await {
            Some(OutgoingEvent::Trying | OutgoingEvent::Ringing { .. }) => {}
            other => return other,
        }
    }
}

async fn answered(call: &mut OutgoingDialog) -> String {
    match after_progress(call).await {
        Some(OutgoingEvent::Answered { sdp }) => sdp,
        other => panic!("expected Answered, got {other:?}"),
    }
}

fn mic(dir: &Path) -> std::path::PathBuf {
    let wav = dir.join("mic.wav");
    audio::write_tone_wav(&wav, 440.0, 30.0, 8000, -12.0).unwrap();
    wav
}

fn received<'a>(messages: &'a [SippMessage], start: &str) -> &'a SippMessage {
    messages
        .iter()
        .find(|m| !m.sent && m.first_line().starts_with(start))
        .unwrap_or_else(|| panic!("SIPp received no {start}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_through_the_proxy_authenticates_rings_is_answered_and_we_hang_up() {
    let dir = paths::run_dir("sip_outgoing-answer-bye").unwrap();
    let kamailio = Registrar::start(&dir).unwrap();
    let mut bob = block_in_place(|| {
        Baresip::start_registered(
            &dir,
            "bob",
            "bobpw",
            kamailio.port,
            &mic(&dir),
            Answer::Manual,
        )
    })
    .unwrap();
    let server = gateway(&kamailio).await;

    let mut call = server.call(call_to("bob")).await.unwrap();
    assert_eq!(next(&mut call).await, Some(OutgoingEvent::Trying));
    assert_eq!(
        next(&mut call).await,
        Some(OutgoingEvent::Ringing { early_sdp: None })
    );
    block_in_place(|| {
        bob.wait_event("CALL_INCOMING", WAIT)?;
        bob.command("accept")
    })
    .unwrap();
    let sdp = answered(&mut call).await;
    assert!(sdp.contains("m=audio"), "{sdp}");
    assert!(sdp.contains("RTP/AVP 0"), "bob answers PCMU: {sdp}");
    block_in_place(|| bob.wait_event("CALL_ESTABLISHED", WAIT)).unwrap();
    // The proxy challenged the first INVITE (407) and took the second, for bob at our domain.
    let invites: Vec<String> = kamailio
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("INVITE"))
        .collect();
    assert_eq!(invites.len(), 2, "{invites:?}");
    assert!(
        invites
            .iter()
            .all(|r| r.starts_with("INVITE sip:bob@sip.lab.test ")),
        "{invites:?}"
    );

    call.bye(Some(Reason::new(487, "room left"))).await.unwrap();
    block_in_place(|| bob.wait_event("CALL_CLOSED", WAIT)).unwrap();
    assert_eq!(
        next(&mut call).await,
        Some(OutgoingEvent::Terminated {
            why: "we hung up".into()
        })
    );
    assert_eq!(next(&mut call).await, None);
    server.shutdown().await;
    block_in_place(|| bob.stop());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_callee_hanging_up_is_a_bye_event() {
    let dir = paths::run_dir("sip_outgoing-callee-bye").unwrap();
    let kamailio = Registrar::start(&dir).unwrap();
    let mut bob = block_in_place(|| {
        Baresip::start_registered(
            &dir,
            "bob",
            "bobpw",
            kamailio.port,
            &mic(&dir),
            Answer::Auto,
        )
    })
    .unwrap();
    let server = gateway(&kamailio).await;

    let mut call = server.call(call_to("bob")).await.unwrap();
    answered(&mut call).await;
    block_in_place(|| {
        bob.wait_event("CALL_ESTABLISHED", WAIT)?;
        bob.command("hangup")
    })
    .unwrap();
    assert_eq!(next(&mut call).await, Some(OutgoingEvent::Bye));
    assert_eq!(next(&mut call).await, None);
    // Too late to hang up ourselves.
    assert!(call.bye(None).await.is_err());
    server.shutdown().await;
    block_in_place(|| bob.stop());
}

#[tokio::test(flavor = "multi_thread")]
async fn extra_headers_and_the_display_name_reach_the_callee_verbatim_and_bye_has_our_reason() {
    let dir = paths::run_dir("sip_outgoing-headers").unwrap();
    let kamailio = Registrar::start(&dir).unwrap();
    let (mut callee, port) = SippCall::uas(&dir, "sip-uas-answer.xml").unwrap();
    let server = gateway(&kamailio).await;
    let headers: Vec<(String, String)> = [
        ("Jitsi-Conference-Room", "standup@conference.example.com"),
        ("JigasiCallDirection", "out"),
        ("X-outbound-call-initiator-user", "alice@example.com"),
        ("X-Repeated", "first"),
        ("X-Repeated", "second"),
    ]
    .iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    let mut call = server
        .call(OutgoingCall {
            headers: headers.clone(),
            ..call_to(&format!("sip:callee@127.0.0.1:{port}"))
        })
        .await
        .unwrap();
    assert_eq!(next(&mut call).await, Some(OutgoingEvent::Trying));
    assert_eq!(
        next(&mut call).await,
        Some(OutgoingEvent::Ringing { early_sdp: None })
    );
    let sdp = answered(&mut call).await;
    assert!(sdp.contains("o=callee"), "{sdp}");
    call.bye(Some(Reason::new(487, "room left"))).await.unwrap();
    block_in_place(|| callee.wait_success(WAIT)).unwrap();
    assert!(matches!(
        next(&mut call).await,
        Some(OutgoingEvent::Terminated { .. })
    ));

    let messages = callee.messages();
    let invite = received(&messages, "INVITE sip:callee@127.0.0.1:");
    let extra: Vec<(String, String)> = invite
        .text
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| {
            headers
                .iter()
                .any(|(h, _)| h.eq_ignore_ascii_case(n.trim()))
        })
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    assert_eq!(extra, headers, "{}", invite.text);
    let from = invite.header("From").unwrap();
    assert!(
        from.starts_with("\"Room standup\" <sip:gateway@sip.lab.test>;tag="),
        "{from}"
    );
    let bye = received(&messages, "BYE ");
    assert_eq!(
        bye.header("Reason"),
        Some("SIP;cause=487;text=\"room left\""),
        "{}",
        bye.text
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_an_answered_call_hangs_it_up() {
    let dir = paths::run_dir("sip_outgoing-drop").unwrap();
    let kamailio = Registrar::start(&dir).unwrap();
    let (mut callee, port) = SippCall::uas(&dir, "sip-uas-answer.xml").unwrap();
    let server = gateway(&kamailio).await;
    let mut call = server
        .call(call_to(&format!("sip:callee@127.0.0.1:{port}")))
        .await
        .unwrap();
    answered(&mut call).await;
    drop(call);
    // The scenario only ends well once the BYE arrived and was answered.
    block_in_place(|| callee.wait_success(WAIT)).unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_callee_fails_the_call_with_486() {
    let dir = paths::run_dir("sip_outgoing-busy").unwrap();
    let kamailio = Registrar::start(&dir).unwrap();
    let (mut callee, port) = SippCall::uas(&dir, "sip-uas-busy.xml").unwrap();
    let server = gateway(&kamailio).await;
    let mut call = server
        .call(call_to(&format!("sip:busy@127.0.0.1:{port}")))
        .await
        .unwrap();
    assert_eq!(
        after_progress(&mut call).await,
        Some(OutgoingEvent::Failed {
            status: 486,
            reason: "Busy Here".into()
        })
    );
    assert_eq!(next(&mut call).await, None);
    block_in_place(|| callee.wait_success(WAIT)).unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_while_ringing_gets_487_and_ends_the_call() {
    let dir = paths::run_dir("sip_outgoing-cancel").unwrap();
    let kamailio = Registrar::start(&dir).unwrap();
    let (mut callee, port) = SippCall::uas(&dir, "sip-uas-ring.xml").unwrap();
    let server = gateway(&kamailio).await;
    let mut call = server
        .call(call_to(&format!("sip:ringing@127.0.0.1:{port}")))
        .await
        .unwrap();
    loop {
        match next(&mut call).await {
            Some(OutgoingEvent::Trying) => {}
            Some(OutgoingEvent::Ringing { .. }) => break,
            other => panic!("expected Ringing, got {other:?}"),
        }
    }
    call.cancel();
    assert_eq!(
        next(&mut call).await,
        Some(OutgoingEvent::Terminated {
            why: "cancelled".into()
        })
    );
    assert_eq!(next(&mut call).await, None);
    // The callee got the CANCEL, answered the INVITE 487 and had that ACKed.
    block_in_place(|| callee.wait_success(WAIT)).unwrap();
    assert_eq!(kamailio.count("CANCEL"), 1, "{:?}", kamailio.requests());
    server.shutdown().await;
}
