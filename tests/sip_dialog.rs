//! What happens inside and around a call, with a scripted caller over UDP: INFO, OPTIONS and
//! re-INVITEs inside the dialog, requests for dialogs that do not exist, calls nobody takes,
//! NATed callers, the public address, and misuse of the `SipDialog` API.

#[path = "sip_support/mod.rs"]
mod support;

use jitsi_sip_gateway::sip::sdp::{self, Direction, SdpOffer, G711};
use jitsi_sip_gateway::sip::{DialogEvent, IncomingCall, SipError, SipServer, Transport};
use std::time::Duration;
use support::*;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

async fn next_call(calls: &mut mpsc::Receiver<IncomingCall>) -> IncomingCall {
    tokio::time::timeout(WAIT, calls.recv())
        .await
        .expect("no INVITE reached the handler")
        .expect("server stopped")
}

async fn next_event(call: &mut IncomingCall) -> Option<DialogEvent> {
    tokio::time::timeout(WAIT, call.events.recv())
        .await
        .expect("no dialog event")
}

/// A call set up to the ACK: the caller offered PCMU, the handler answered.
async fn established(
    server: &SipServer,
    calls: &mut mpsc::Receiver<IncomingCall>,
    call_id: &str,
) -> (Uac, IncomingCall) {
    let mut uac = Uac::new(addr_of(server, Transport::Udp), call_id).await;
    let offer = sdp_offer(1, PCMU_OFFER);
    uac.send("INVITE", 1, &["Content-Type: application/sdp"], &offer)
        .await;
    let mut call = next_call(calls).await;
    let neg = sdp::negotiate(
        &SdpOffer::parse(call.body.as_deref().unwrap()).unwrap(),
        &[G711::Pcmu],
    )
    .unwrap();
    call.dialog
        .answer(sdp::answer(&neg, call.local_ip, 40000, 5))
        .unwrap();
    let ok = uac.final_response(1, "INVITE").await;
    assert_eq!(status_of(&ok), Some(200), "{ok}");
    uac.send("ACK", 1, &[], "").await;
    assert_eq!(next_event(&mut call).await, Some(DialogEvent::Acked));
    (uac, call)
}

#[tokio::test]
async fn info_inside_a_call_is_answered_200_and_reported() {
    let (server, mut calls) = start(&[]).await;
    let (mut uac, mut call) = established(&server, &mut calls, "info").await;
    uac.send(
        "INFO",
        2,
        &["Content-Type: application/dtmf-relay"],
        "Signal=5\r\nDuration=160\r\n",
    )
    .await;
    assert_eq!(status_of(&uac.final_response(2, "INFO").await), Some(200));
    assert_eq!(
        next_event(&mut call).await,
        Some(DialogEvent::Info {
            content_type: Some("application/dtmf-relay".into()),
            body: b"Signal=5\r\nDuration=160\r\n".to_vec(),
        })
    );
    uac.send("BYE", 3, &[], "").await;
    assert_eq!(status_of(&uac.final_response(3, "BYE").await), Some(200));
    assert_eq!(next_event(&mut call).await, Some(DialogEvent::Bye));
    server.shutdown().await;
}

#[tokio::test]
async fn options_inside_a_call_is_answered_with_our_capabilities() {
    let (server, mut calls) = start(&[]).await;
    let (mut uac, _call) = established(&server, &mut calls, "in-dialog-options").await;
    uac.send("OPTIONS", 2, &[], "").await;
    let ok = uac.final_response(2, "OPTIONS").await;
    assert_eq!(status_of(&ok), Some(200));
    assert_eq!(
        header(&ok, "Allow").as_deref(),
        Some("INVITE, ACK, BYE, CANCEL, OPTIONS, INFO")
    );
    assert_eq!(header(&ok, "Accept").as_deref(), Some("application/sdp"));
    server.shutdown().await;
}

#[tokio::test]
async fn hold_reinvite_is_answered_recvonly_and_reported() {
    let (server, mut calls) = start(&[]).await;
    let (mut uac, mut call) = established(&server, &mut calls, "hold").await;
    let hold = sdp_offer(
        2,
        "m=audio 30002 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendonly\r\n",
    );
    uac.send("INVITE", 2, &["Content-Type: application/sdp"], &hold)
        .await;
    let ok = uac.final_response(2, "INVITE").await;
    assert_eq!(status_of(&ok), Some(200), "{ok}");
    let answer = body(&ok);
    assert!(answer.contains("a=recvonly\r\n"), "{answer}");
    assert!(answer.contains("o=- 5 6 IN IP4 127.0.0.1\r\n"), "{answer}");
    assert!(
        answer.contains("m=audio 40000 RTP/AVP 0 101\r\n"),
        "{answer}"
    );
    uac.send("ACK", 2, &[], "").await;
    match next_event(&mut call).await {
        Some(DialogEvent::Renegotiated(neg)) => {
            assert_eq!(neg.direction, Direction::RecvOnly);
            assert_eq!(neg.remote_rtp.port(), 30002);
        }
        other => panic!("expected Renegotiated, got {other:?}"),
    }
    server.shutdown().await;
}

#[tokio::test]
async fn reinvite_without_our_codec_is_refused_488_and_the_call_stays_up() {
    let (server, mut calls) = start(&[]).await;
    let (mut uac, mut call) = established(&server, &mut calls, "reinvite-488").await;
    let g729 = sdp_offer(2, "m=audio 30000 RTP/AVP 18\r\n");
    let branch = uac
        .send("INVITE", 2, &["Content-Type: application/sdp"], &g729)
        .await;
    assert_eq!(status_of(&uac.final_response(2, "INVITE").await), Some(488));
    let (ack, _) = uac.request("ACK", 2, &[], "", Some(&branch));
    uac.udp.send(ack.as_bytes()).await;
    // The call goes on: an INFO still gets through.
    uac.send("INFO", 3, &["Content-Type: text/plain"], "x")
        .await;
    assert_eq!(status_of(&uac.final_response(3, "INFO").await), Some(200));
    assert!(matches!(
        next_event(&mut call).await,
        Some(DialogEvent::Info { .. })
    ));
    server.shutdown().await;
}

#[tokio::test]
async fn requests_outside_any_dialog_are_481() {
    let (server, _calls) = start(&[]).await;
    let mut uac = Uac::new(addr_of(&server, Transport::Udp), "ghost").await;
    uac.to_tag = Some("nosuchdialog".into());
    uac.send("BYE", 1, &[], "").await;
    assert_eq!(status_of(&uac.final_response(1, "BYE").await), Some(481));
    uac.send(
        "INVITE",
        2,
        &["Content-Type: application/sdp"],
        &sdp_offer(1, PCMU_OFFER),
    )
    .await;
    assert_eq!(status_of(&uac.final_response(2, "INVITE").await), Some(481));
    let mut untagged = Uac::new(addr_of(&server, Transport::Udp), "ghost2").await;
    untagged.send("INFO", 1, &[], "").await;
    assert_eq!(
        status_of(&untagged.final_response(1, "INFO").await),
        Some(481)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn update_and_refer_inside_a_call_are_405_with_allow() {
    let (server, mut calls) = start(&[]).await;
    let (mut uac, _call) = established(&server, &mut calls, "unsupported").await;
    for (cseq, method) in [(2, "UPDATE"), (3, "REFER")] {
        let extra: &[&str] = if method == "REFER" {
            &["Refer-To: <sip:other@127.0.0.1>"]
        } else {
            &[]
        };
        uac.send(method, cseq, extra, "").await;
        let resp = uac.final_response(cseq, method).await;
        assert_eq!(status_of(&resp), Some(405), "{method}: {resp}");
        assert_eq!(
            header(&resp, "Allow").as_deref(),
            Some("INVITE, ACK, BYE, CANCEL, OPTIONS, INFO")
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn calls_nobody_takes_are_refused_503() {
    let (server, calls) = start(&[]).await;
    drop(calls);
    let mut uac = Uac::new(addr_of(&server, Transport::Udp), "nobody").await;
    uac.send(
        "INVITE",
        1,
        &["Content-Type: application/sdp"],
        &sdp_offer(1, PCMU_OFFER),
    )
    .await;
    assert_eq!(status_of(&uac.final_response(1, "INVITE").await), Some(503));
    server.shutdown().await;
}

#[tokio::test]
async fn dropping_an_unanswered_call_refuses_it_500() {
    let (server, mut calls) = start(&[]).await;
    let mut uac = Uac::new(addr_of(&server, Transport::Udp), "dropped").await;
    uac.send(
        "INVITE",
        1,
        &["Content-Type: application/sdp"],
        &sdp_offer(1, PCMU_OFFER),
    )
    .await;
    drop(next_call(&mut calls).await);
    assert_eq!(status_of(&uac.final_response(1, "INVITE").await), Some(500));
    server.shutdown().await;
}

#[tokio::test]
async fn dropping_an_established_call_hangs_it_up() {
    let (server, mut calls) = start(&[]).await;
    let (uac, call) = established(&server, &mut calls, "dropped-up").await;
    drop(call);
    let bye = loop {
        let msg = uac.udp.recv(WAIT).await.expect("no BYE after the drop");
        if msg.starts_with("BYE ") {
            break msg;
        }
    };
    assert_eq!(header(&bye, "Call-ID").as_deref(), Some("dropped-up"));
    server.shutdown().await;
}

#[tokio::test]
async fn a_natted_caller_gets_responses_and_our_bye_at_its_source() {
    let (server, mut calls) = start(&[]).await;
    let mut uac = Uac::new(addr_of(&server, Transport::Udp), "natted").await;
    // The phone writes its private address in Via and Contact; the datagrams come from its NAT.
    uac.via_host = "10.0.0.5:5060".into();
    uac.send(
        "INVITE",
        1,
        &["Content-Type: application/sdp"],
        &sdp_offer(1, PCMU_OFFER),
    )
    .await;
    let mut call = next_call(&mut calls).await;
    assert_eq!(call.remote, uac.udp.local());
    call.dialog.answer(sdp_offer(1, PCMU_OFFER)).unwrap();
    let ok = uac.final_response(1, "INVITE").await;
    assert_eq!(status_of(&ok), Some(200));
    let via = header(&ok, "Via").unwrap();
    assert!(via.contains("received=127.0.0.1"), "{via}");
    assert!(
        via.contains(&format!("rport={}", uac.udp.local().port())),
        "{via}"
    );
    uac.send("ACK", 1, &[], "").await;
    assert_eq!(next_event(&mut call).await, Some(DialogEvent::Acked));
    let hangup = tokio::spawn(async move { call.dialog.bye(None).await });
    let bye = loop {
        let msg = uac
            .udp
            .recv(WAIT)
            .await
            .expect("no BYE at the caller's source address");
        if msg.starts_with("BYE ") {
            break msg;
        }
    };
    let reply = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: natted\r\nCSeq: {}\r\nContent-Length: 0\r\n\r\n",
        header(&bye, "Via").unwrap(),
        header(&bye, "From").unwrap(),
        header(&bye, "To").unwrap(),
        header(&bye, "CSeq").unwrap(),
    );
    uac.udp.send(reply.as_bytes()).await;
    hangup.await.unwrap().unwrap();
    server.shutdown().await;
}

#[tokio::test]
async fn public_address_is_our_contact_and_the_sdp_address() {
    let (server, mut calls) = start(&["sip.public_address=203.0.113.10"]).await;
    let port = addr_of(&server, Transport::Udp).port();
    let mut uac = Uac::new(addr_of(&server, Transport::Udp), "public").await;
    uac.send(
        "INVITE",
        1,
        &["Content-Type: application/sdp"],
        &sdp_offer(1, PCMU_OFFER),
    )
    .await;
    let call = next_call(&mut calls).await;
    assert_eq!(call.local_ip.to_string(), "203.0.113.10");
    call.dialog.ring().unwrap();
    let ringing = loop {
        let msg = uac.udp.recv(WAIT).await.expect("no 180");
        if status_of(&msg) == Some(180) {
            break msg;
        }
    };
    assert_eq!(
        header(&ringing, "Contact"),
        Some(format!("<sip:203.0.113.10:{port}>"))
    );
    server.shutdown().await;
}

#[tokio::test]
async fn misuse_of_the_dialog_is_a_typed_error() {
    let (server, mut calls) = start(&[]).await;
    let mut uac = Uac::new(addr_of(&server, Transport::Udp), "misuse").await;
    uac.send(
        "INVITE",
        1,
        &["Content-Type: application/sdp"],
        &sdp_offer(1, PCMU_OFFER),
    )
    .await;
    let call = next_call(&mut calls).await;
    assert!(matches!(
        call.dialog.reject(200, None),
        Err(SipError::InvalidStatus(200))
    ));
    assert!(matches!(
        call.dialog.bye(None).await,
        Err(SipError::WrongState { .. })
    ));
    call.dialog.answer(sdp_offer(1, PCMU_OFFER)).unwrap();
    assert!(matches!(
        call.dialog.ring(),
        Err(SipError::WrongState { .. })
    ));
    assert!(matches!(
        call.dialog.reject(486, None),
        Err(SipError::WrongState { .. })
    ));
    server.shutdown().await;
}

#[tokio::test]
async fn tls_is_refused_at_start() {
    let settings = settings(&["sip.listen=127.0.0.1:0", "sip.transports=udp,tls"]);
    assert!(matches!(
        SipServer::start(&settings).await,
        Err(SipError::UnsupportedTransport(Transport::Tls))
    ));
}

#[tokio::test]
async fn a_taken_port_is_a_bind_error() {
    let (server, _calls) = start(&[]).await;
    let taken = addr_of(&server, Transport::Udp);
    let settings = settings(&[&format!("sip.listen={taken}"), "sip.transports=udp"]);
    assert!(matches!(
        SipServer::start(&settings).await,
        Err(SipError::Bind {
            transport: Transport::Udp,
            ..
        })
    ));
    server.shutdown().await;
}
