//! `SipServer` against a real SIP peer: SIPp (Debian `sip-tester`) runs the scenarios in
//! `tests/lab/sipp/sip-*.xml` as the caller, over UDP and over TCP, while a small handler here
//! plays the gateway with the `IncomingCall` API. SIPp's own checks (required responses, regexp
//! actions on headers and SDP) must all pass, and the handler sees the dialog events in order.

#[path = "sip_support/mod.rs"]
mod support;

use anyhow::Result;
use gateway_lab::proc::Supervised;
use gateway_lab::sipp::SippCall;
use gateway_lab::{net, paths};
use jitsi_sip_gateway::sip::sdp::{self, SdpError, SdpOffer, G711};
use jitsi_sip_gateway::sip::{DialogEvent, IncomingCall, Reason, SipError, SipServer, Transport};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use support::*;
use tokio::sync::mpsc;

const PREFS: &[G711] = &[G711::Pcmu, G711::Pcma];
const WAIT: Duration = Duration::from_secs(20);

/// Runs one SIPp call of `scenario` against `target` over `transport`; fails with SIPp's
/// error log unless every step of the scenario passed.
fn run_sipp(scenario: &str, transport: Transport, target: SocketAddr) -> Result<()> {
    let name = format!(
        "sip_server-{}-{transport}",
        scenario.trim_end_matches(".xml")
    );
    let dir = paths::run_dir(&name)?;
    let sip_port = net::free_udp_tcp_port()?;
    let media_port = net::free_udp_tcp_port()?;
    let mut cmd = Command::new("sipp");
    cmd.current_dir(&dir)
        .arg(target.to_string())
        .arg("-sf")
        .arg(paths::lab_dir().join("sipp").join(scenario))
        .args(["-s", "room1", "-i", "127.0.0.1", "-mi", "127.0.0.1"])
        .args(["-p", &sip_port.to_string(), "-mp", &media_port.to_string()])
        .args([
            "-t",
            if transport == Transport::Tcp {
                "t1"
            } else {
                "u1"
            },
        ])
        .args(["-m", "1", "-nostdin", "-timeout", "20s", "-timeout_error"])
        .args(["-trace_err", "-trace_msg", "-trace_logs"]);
    let mut call = SippCall {
        proc: Supervised::spawn("sipp", cmd, &dir.join("sipp.log"))?,
        dir,
        media_port,
    };
    call.wait_success(Duration::from_secs(40))
}

/// SIPp in a blocking thread, so the handler can run meanwhile.
fn sipp(
    scenario: &'static str,
    transport: Transport,
    server: &SipServer,
) -> tokio::task::JoinHandle<Result<()>> {
    let target = addr_of(server, transport);
    tokio::task::spawn_blocking(move || run_sipp(scenario, transport, target))
}

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

fn offer(call: &IncomingCall) -> SdpOffer {
    SdpOffer::parse(call.body.as_deref().expect("INVITE without SDP")).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn caller_is_answered_with_sdp_then_hangs_up_over_udp_and_tcp() {
    let (server, mut calls) = start(&[]).await;
    for transport in [Transport::Udp, Transport::Tcp] {
        let peer = sipp("sip-call.xml", transport, &server);
        let mut call = next_call(&mut calls).await;
        assert_eq!(call.transport, transport);
        assert_eq!(call.from.display_name.as_deref(), Some("Alice Caller"));
        assert_eq!(call.from.user.as_deref(), Some("+4930123"));
        assert_eq!(call.headers.get("x-room-name"), Some("standup"));
        assert!(
            call.request_uri.starts_with("sip:room1@127.0.0.1:"),
            "{}",
            call.request_uri
        );
        assert!(call.remote.ip().is_loopback());
        assert_eq!(call.local_ip.to_string(), "127.0.0.1");

        let neg = sdp::negotiate(&offer(&call), PREFS).unwrap();
        assert_eq!((neg.codec, neg.telephone_event_pt), (G711::Pcmu, Some(101)));
        call.dialog.ring().unwrap();
        call.dialog
            .answer(sdp::answer(&neg, call.local_ip, 40000, 7))
            .unwrap();
        assert_eq!(next_event(&mut call).await, Some(DialogEvent::Acked));
        assert_eq!(next_event(&mut call).await, Some(DialogEvent::Bye));
        assert_eq!(
            next_event(&mut call).await,
            None,
            "the stream ends after BYE"
        );
        peer.await.unwrap().unwrap();
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_before_answer_gets_487_and_the_cancel_200() {
    let (server, mut calls) = start(&[]).await;
    let peer = sipp("sip-cancel.xml", Transport::Udp, &server);
    let mut call = next_call(&mut calls).await;
    call.dialog.ring().unwrap();
    assert_eq!(next_event(&mut call).await, Some(DialogEvent::Cancelled));
    assert_eq!(next_event(&mut call).await, None);
    // Too late to answer now.
    assert!(matches!(
        call.dialog.answer("v=0\r\n".into()),
        Err(SipError::WrongState { .. })
    ));
    peer.await.unwrap().unwrap();
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn offer_without_our_codecs_is_refused_488() {
    let (server, mut calls) = start(&[]).await;
    for transport in [Transport::Udp, Transport::Tcp] {
        let peer = sipp("sip-bad-codec.xml", transport, &server);
        let mut call = next_call(&mut calls).await;
        let err = sdp::negotiate(&offer(&call), PREFS).unwrap_err();
        assert_eq!(err, SdpError::NoCommonCodec);
        call.dialog
            .reject(err.status_code(), Some(Reason::new(488, "no common codec")))
            .unwrap();
        assert!(matches!(
            next_event(&mut call).await,
            Some(DialogEvent::Terminated { .. })
        ));
        peer.await.unwrap().unwrap();
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn options_is_answered_with_allow_and_accept() {
    let (server, _calls) = start(&[]).await;
    for transport in [Transport::Udp, Transport::Tcp] {
        sipp("sip-options.xml", transport, &server)
            .await
            .unwrap()
            .unwrap();
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn our_bye_carries_the_reason_to_the_caller() {
    let (server, mut calls) = start(&[]).await;
    for transport in [Transport::Udp, Transport::Tcp] {
        let peer = sipp("sip-bye-reason.xml", transport, &server);
        let mut call = next_call(&mut calls).await;
        let neg = sdp::negotiate(&offer(&call), PREFS).unwrap();
        assert_eq!(neg.codec, G711::Pcma);
        call.dialog
            .answer(sdp::answer(&neg, call.local_ip, 40002, 8))
            .unwrap();
        assert_eq!(next_event(&mut call).await, Some(DialogEvent::Acked));
        call.dialog
            .bye(Some(Reason::new(408, "No invite from conference focus")))
            .await
            .unwrap();
        assert!(matches!(
            next_event(&mut call).await,
            Some(DialogEvent::Terminated { .. })
        ));
        peer.await.unwrap().unwrap();
    }
    server.shutdown().await;
}
