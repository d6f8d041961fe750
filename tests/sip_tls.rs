//! SIP over TLS towards the registrar / outbound proxy (`sip.server_transport = tls`) against a
//! real Kamailio 5.6 with its TLS module (`tests/lab/kamailio/registrar-tls.cfg.in`), whose
//! certificate comes from a CA made for the run: no system trusts it, `sip.tls_ca_file` names it.
//! Kamailio's location table and request log, and what a SIPp callee or a baresip caller behind
//! it receive, are the witnesses; the gateway's own view is `SipServer::registration()`, the
//! `OutgoingDialog` events and the `IncomingCall`.

#[path = "sip_support/mod.rs"]
mod support;

use gateway_lab::baresip::{Answer, Baresip};
use gateway_lab::kamailio::Registrar;
use gateway_lab::sipp::{SippCall, SippMessage};
use gateway_lab::{audio, paths};
use jitsi_sip_gateway::sip::sdp::{self, SdpOffer, G711};
use jitsi_sip_gateway::sip::{
    DialogEvent, IncomingCall, OutgoingCall, OutgoingDialog, OutgoingEvent, Reason,
    RegistrationState, SipServer, Transport,
};
use std::path::Path;
use std::time::{Duration, Instant};
use support::*;
use tokio::sync::mpsc;
use tokio::task::block_in_place;

const WAIT: Duration = Duration::from_secs(15);

const OFFER: &str = "v=0\r\no=- 4242 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                     m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n\
                     a=fmtp:101 0-15\r\na=sendrecv\r\n";

fn registrar(dir: &Path) -> Registrar {
    block_in_place(|| Registrar::start_with_tls(dir)).unwrap()
}

fn tls_port(kamailio: &Registrar) -> u16 {
    kamailio.tls.as_ref().expect("a TLS registrar").port
}

/// The gateway as gateway@sip.lab.test with `registrar` as registrar and outbound proxy over
/// TLS, trusting the lab CA; `extra` settings on top.
async fn gateway(
    kamailio: &Registrar,
    extra: &[&str],
) -> (SipServer, mpsc::Receiver<IncomingCall>) {
    let port = format!("sip.server_port={}", tls_port(kamailio));
    let ca = format!(
        "sip.tls_ca_file={}",
        kamailio.tls.as_ref().unwrap().ca_cert.display()
    );
    let mut sets = vec![
        "sip.uri=gateway@sip.lab.test",
        "sip.password=gatewaypw",
        "sip.server=127.0.0.1",
        port.as_str(),
        "sip.server_transport=tls",
        ca.as_str(),
        "sip.keep_alive_method=none",
    ];
    sets.extend_from_slice(extra);
    start(&sets).await
}

async fn wait_registered(server: &SipServer) {
    let mut states = server.registration();
    wait_for(&mut states, WAIT, "Registered", registered).await;
}

/// The one binding of the gateway's account: its contact URI and the socket it came in on.
fn binding(kamailio: &Registrar) -> (String, String) {
    let contacts = kamailio.contacts("gateway").unwrap();
    assert_eq!(contacts.len(), 1, "{contacts:?}");
    contacts.into_iter().next().unwrap()
}

/// Whether a URI or Contact has `;transport=tls` (any case: RFC 3261 §19.1.4).
fn says_tls(uri: &str) -> bool {
    uri.to_ascii_lowercase().contains(";transport=tls")
}

/// The port of `sip:gateway@127.0.0.1:<port>;transport=tls`.
fn contact_port(contact: &str) -> u16 {
    let rest = contact.split_once("127.0.0.1:").expect(contact).1;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|p| p.parse().ok())
        .expect(contact)
}

/// The requests Kamailio received of `method`, one line each (`<METHOD> <uri> from <ip:port>`).
fn requests(kamailio: &Registrar, method: &str) -> Vec<String> {
    let prefix = format!("{method} ");
    kamailio
        .requests()
        .into_iter()
        .filter(|r| r.starts_with(&prefix))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn registers_over_tls_with_digest_and_the_binding_is_the_tls_connection() {
    let dir = paths::run_dir("sip_tls-register").unwrap();
    let kamailio = registrar(&dir);
    let (server, _calls) = gateway(&kamailio, &[]).await;
    let mut states = server.registration();
    let state = wait_for(&mut states, WAIT, "Registered", registered).await;
    assert_eq!(
        state,
        RegistrationState::Registered {
            expires_in: Duration::from_secs(600)
        }
    );
    let (contact, socket) = binding(&kamailio);
    assert_eq!(socket, format!("tls:127.0.0.1:{}", tls_port(&kamailio)));
    assert!(
        contact.starts_with("sip:gateway@127.0.0.1:") && says_tls(&contact),
        "{contact}"
    );
    // Challenged (401), then accepted; both on the TLS connection, whose far end is the
    // contact: the registrar reaches us on the connection we opened, not on a listener.
    let registers = requests(&kamailio, "REGISTER");
    let on_the_connection = format!(
        "register sip:127.0.0.1:{};transport=tls from 127.0.0.1:{} ",
        tls_port(&kamailio),
        contact_port(&contact)
    );
    assert_eq!(registers.len(), 2, "{registers:?}");
    assert!(
        registers
            .iter()
            .all(|r| r.to_ascii_lowercase().starts_with(&on_the_connection)),
        "{registers:?} vs {on_the_connection}"
    );
    assert!(server
        .local_addrs()
        .iter()
        .all(|(_, a)| a.port() != contact_port(&contact)));

    server.shutdown().await;
    // Expires: 0 went over the same connection before shutdown returned.
    assert!(kamailio.contacts("gateway").unwrap().is_empty());
    assert_eq!(*states.borrow(), RegistrationState::Disabled);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_given_by_name_is_resolved_and_its_certificate_checked_for_that_name() {
    let dir = paths::run_dir("sip_tls-by-name").unwrap();
    let kamailio = registrar(&dir);
    // The lab certificate names localhost (and 127.0.0.1).
    let (server, _calls) = gateway(&kamailio, &["sip.server=localhost"]).await;
    wait_registered(&server).await;
    let registers = requests(&kamailio, "REGISTER");
    let target = format!(
        "register sip:localhost:{};transport=tls ",
        tls_port(&kamailio)
    );
    assert!(
        registers
            .iter()
            .all(|r| r.to_ascii_lowercase().starts_with(&target)),
        "{registers:?}"
    );
    let (contact, _) = binding(&kamailio);
    assert!(
        registers
            .iter()
            .all(|r| r.contains(&format!(" from 127.0.0.1:{} ", contact_port(&contact)))),
        "{registers:?} {contact}"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_from_an_unknown_ca_fails_clearly_and_backs_off_and_the_ca_file_fixes_it() {
    let dir = paths::run_dir("sip_tls-unknown-ca").unwrap();
    let kamailio = registrar(&dir);
    let port = format!("sip.server_port={}", tls_port(&kamailio));
    let started = Instant::now();
    // Without sip.tls_ca_file: the system's CAs, none of which signed the lab's certificate.
    let (server, _calls) = start(&[
        "sip.uri=gateway@sip.lab.test",
        "sip.password=gatewaypw",
        "sip.server=127.0.0.1",
        &port,
        "sip.server_transport=tls",
    ])
    .await;
    let mut states = server.registration();
    // The third failure in a row waits 4 s (1, 2, 4).
    let state = wait_for(&mut states, WAIT, "the third failure", |s| {
        matches!(s, RegistrationState::Failed { retry_in, .. } if *retry_in == Duration::from_secs(4))
    })
    .await;
    let RegistrationState::Failed { reason, status, .. } = state else {
        unreachable!()
    };
    assert_eq!(status, None);
    assert_eq!(
        reason,
        format!(
            "TLS with the SIP server 127.0.0.1:{} failed: its certificate is not signed by a CA in \
             the system's CA certificates (set sip.tls_ca_file to the certificate of the CA that \
             signed it)",
            tls_port(&kamailio)
        )
    );
    assert!(started.elapsed() >= Duration::from_secs(3));
    // Nothing went through: no REGISTER ever reached the registrar.
    assert!(kamailio.requests().is_empty(), "{:?}", kamailio.requests());
    server.shutdown().await;

    let (server, _calls) = gateway(&kamailio, &[]).await;
    wait_registered(&server).await;
    assert_eq!(requests(&kamailio, "REGISTER").len(), 2);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ca_file_of_another_ca_is_refused_and_verification_off_accepts_any_certificate() {
    let dir = paths::run_dir("sip_tls-other-ca").unwrap();
    let kamailio = registrar(&dir);
    let other =
        block_in_place(|| gateway_lab::kamailio::make_certificates(&dir.join("other"))).unwrap();
    let other = format!("sip.tls_ca_file={}", other.display());
    let (server, _calls) = gateway(&kamailio, &[&other]).await;
    let mut states = server.registration();
    let state = wait_for(&mut states, WAIT, "a failure", |s| {
        matches!(s, RegistrationState::Failed { .. })
    })
    .await;
    let RegistrationState::Failed { reason, .. } = state else {
        unreachable!()
    };
    assert!(
        reason.contains("its certificate is not signed by a CA in sip.tls_ca_file ("),
        "{reason}"
    );
    server.shutdown().await;

    // Not checked at all: the same unknown CA is accepted (and a CA file would be ignored).
    let (server, _calls) = gateway(&kamailio, &["sip.tls_verify=false"]).await;
    wait_registered(&server).await;
    let (contact, _) = binding(&kamailio);
    assert!(says_tls(&contact), "{contact}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn refreshes_and_options_keep_alives_go_over_the_tls_connection() {
    let dir = paths::run_dir("sip_tls-refresh").unwrap();
    let kamailio = registrar(&dir);
    let (server, _calls) = gateway(
        &kamailio,
        &[
            "sip.registration_expiry_s=15",
            "sip.keep_alive_method=options",
            "sip.keep_alive_interval_s=1",
        ],
    )
    .await;
    let mut states = server.registration();
    wait_for(&mut states, WAIT, "Registered", registered).await;
    let (contact, _) = binding(&kamailio);
    tokio::time::timeout(Duration::from_secs(15), states.changed())
        .await
        .expect("no refresh before the binding expired")
        .unwrap();
    assert!(registered(&states.borrow()), "{:?}", *states.borrow());
    let from = format!(" from 127.0.0.1:{} ", contact_port(&contact));
    let registers = requests(&kamailio, "REGISTER");
    assert_eq!(registers.len(), 4, "{registers:?}");
    let options = requests(&kamailio, "OPTIONS");
    assert!(options.len() >= 3, "{options:?}");
    let target = format!(
        "options sip:127.0.0.1:{};transport=tls ",
        tls_port(&kamailio)
    );
    assert!(
        options
            .iter()
            .all(|r| r.to_ascii_lowercase().starts_with(&target)),
        "{options:?}"
    );
    // One connection throughout: the refresh and every keep-alive came from the contact.
    assert!(
        registers.iter().chain(&options).all(|r| r.contains(&from)),
        "{registers:?} {options:?}"
    );
    assert_eq!(binding(&kamailio).0, contact);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn crlf_keep_alives_keep_the_connection_and_its_binding() {
    let dir = paths::run_dir("sip_tls-crlf").unwrap();
    let kamailio = registrar(&dir);
    let (server, _calls) = gateway(
        &kamailio,
        &["sip.keep_alive_method=crlf", "sip.keep_alive_interval_s=1"],
    )
    .await;
    let mut states = server.registration();
    wait_for(&mut states, WAIT, "Registered", registered).await;
    let (contact, _) = binding(&kamailio);
    // Kamailio answers each ping with a CRLF: were that taken for a broken message, the
    // connection would close and the gateway register again on a new one.
    let changed = tokio::time::timeout(Duration::from_secs(4), states.changed()).await;
    assert!(changed.is_err(), "{:?}", *states.borrow());
    assert_eq!(requests(&kamailio, "REGISTER").len(), 2);
    assert_eq!(binding(&kamailio).0, contact);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_connection_is_reopened_and_registered_again_at_once() {
    let dir = paths::run_dir("sip_tls-reconnect").unwrap();
    let mut kamailio = registrar(&dir);
    let (server, _calls) = gateway(&kamailio, &[]).await;
    let mut states = server.registration();
    wait_for(&mut states, WAIT, "Registered", registered).await;
    let (before, _) = binding(&kamailio);
    // A restart closes the connection and forgets the binding (the table is in memory).
    block_in_place(|| kamailio.restart()).unwrap();
    let restarted = Instant::now();
    wait_for(&mut states, WAIT, "Registered again", |s| {
        registered(s) && !block_in_place(|| kamailio.contacts("gateway").unwrap().is_empty())
    })
    .await;
    // Long before the 600 s binding needed a refresh.
    assert!(restarted.elapsed() < Duration::from_secs(10));
    let (after, socket) = binding(&kamailio);
    assert_ne!(contact_port(&after), contact_port(&before));
    assert_eq!(socket, format!("tls:127.0.0.1:{}", tls_port(&kamailio)));
    server.shutdown().await;
}

fn call_to(to: &str) -> OutgoingCall {
    OutgoingCall {
        to: to.into(),
        display_name: Some("Room standup".into()),
        headers: vec![(
            "Jitsi-Conference-Room".into(),
            "standup@conference.example.com".into(),
        )],
        sdp_offer: OFFER.into(),
    }
}

async fn next(call: &mut OutgoingDialog) -> Option<OutgoingEvent> {
    tokio::time::timeout(WAIT, call.next())
        .await
        .unwrap_or_else(|_| panic!("no event on {}", call.call_id()))
}

fn received<'a>(messages: &'a [SippMessage], start: &str) -> &'a SippMessage {
    messages
        .iter()
        .find(|m| !m.sent && m.first_line().starts_with(start))
        .unwrap_or_else(|| panic!("SIPp received no {start}"))
}

/// All values of `name` in a traced message, in order.
fn all_headers<'a>(message: &'a SippMessage, name: &str) -> Vec<&'a str> {
    message
        .text
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outgoing_call_over_tls_authenticates_is_answered_and_hung_up() {
    let dir = paths::run_dir("sip_tls-call").unwrap();
    let kamailio = registrar(&dir);
    let (mut callee, port) = block_in_place(|| SippCall::uas(&dir, "sip-uas-answer.xml")).unwrap();
    let (server, _calls) = gateway(&kamailio, &["sip.register=false"]).await;

    let mut call = server
        .call(call_to(&format!("sip:callee@127.0.0.1:{port}")))
        .await
        .unwrap();
    // The callee sends 180 and 200 back to back; what counts here is the answer.
    let sdp = loop {
        match next(&mut call).await {
            Some(OutgoingEvent::Trying | OutgoingEvent::Ringing { .. }) => {}
            Some(OutgoingEvent::Answered { sdp }) => break sdp,
            other => panic!("expected Answered, got {other:?}"),
        }
    };
    assert!(sdp.contains("o=callee"), "{sdp}");
    call.bye(Some(Reason::new(487, "room left"))).await.unwrap();
    block_in_place(|| callee.wait_success(WAIT)).unwrap();
    assert_eq!(
        next(&mut call).await,
        Some(OutgoingEvent::Terminated {
            why: "we hung up".into()
        })
    );

    // The proxy challenged the first INVITE (407) and relayed the second; both, the ACK and
    // the BYE came from one address that is none of our listeners: the TLS connection.
    let invites = requests(&kamailio, "INVITE");
    assert_eq!(invites.len(), 2, "{invites:?}");
    let source = |r: &String| {
        let (_, from) = r.rsplit_once(" from 127.0.0.1:").expect(r);
        from.split(' ').next().and_then(|p| p.parse::<u16>().ok())
    };
    let sources: std::collections::BTreeSet<_> = invites
        .iter()
        .chain(&requests(&kamailio, "ACK"))
        .chain(&requests(&kamailio, "BYE"))
        .map(source)
        .collect();
    assert_eq!(sources.len(), 1, "{:?}", kamailio.requests());
    assert_eq!(kamailio.requests().len(), 4, "{:?}", kamailio.requests());
    let port = sources.into_iter().next().flatten().unwrap();
    assert!(server.local_addrs().iter().all(|(_, a)| a.port() != port));

    let messages = callee.messages();
    let invite = received(&messages, "INVITE sip:callee@127.0.0.1:");
    // Our Via (the bottom one) and Contact say TLS; Kamailio record-routed both of its sides.
    let vias = all_headers(invite, "Via");
    assert!(
        vias.last().unwrap().starts_with("SIP/2.0/TLS 127.0.0.1:"),
        "{vias:?}"
    );
    let contact = invite.header("Contact").unwrap();
    assert!(
        contact.starts_with(&format!("<sip:gateway@127.0.0.1:{port};")) && says_tls(contact),
        "{contact}"
    );
    let record_routes = all_headers(invite, "Record-Route")
        .join(",")
        .to_ascii_lowercase();
    assert!(
        record_routes.contains(&format!(
            "sip:127.0.0.1:{};transport=tls",
            tls_port(&kamailio)
        )),
        "{record_routes}"
    );
    assert_eq!(
        invite.header("Jitsi-Conference-Room"),
        Some("standup@conference.example.com")
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
async fn cancel_while_ringing_goes_over_tls_and_ends_the_call() {
    let dir = paths::run_dir("sip_tls-cancel").unwrap();
    let kamailio = registrar(&dir);
    let (mut callee, port) = block_in_place(|| SippCall::uas(&dir, "sip-uas-ring.xml")).unwrap();
    let (server, _calls) = gateway(&kamailio, &["sip.register=false"]).await;
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
    block_in_place(|| callee.wait_success(WAIT)).unwrap();
    let cancels = requests(&kamailio, "CANCEL");
    assert_eq!(cancels.len(), 1, "{:?}", kamailio.requests());
    // Sent from where the INVITE came from (our TLS connection); the Call-ID/CSeq that follow
    // differ from the first, challenged INVITE's.
    let from = |line: &str| {
        let after = line.rsplit_once(" from ").unwrap().1;
        after.split(" tx=").next().unwrap().to_string()
    };
    let invite_from = from(&requests(&kamailio, "INVITE")[0]);
    assert_eq!(from(&cancels[0]), invite_from, "{cancels:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_for_the_account_comes_down_the_tls_connection_we_opened() {
    let dir = paths::run_dir("sip_tls-incoming").unwrap();
    let kamailio = registrar(&dir);
    let (server, mut calls) = gateway(&kamailio, &[]).await;
    wait_registered(&server).await;
    let wav = dir.join("mic.wav");
    audio::write_tone_wav(&wav, 440.0, 30.0, 8000, -12.0).unwrap();
    let mut alice = block_in_place(|| {
        Baresip::start_registered(
            &dir,
            "alice",
            "alicepw",
            kamailio.port,
            &wav,
            Answer::Manual,
        )
    })
    .unwrap();
    block_in_place(|| alice.command(&format!("dial sip:gateway@127.0.0.1:{}", kamailio.port)))
        .unwrap();
    let mut call = tokio::time::timeout(WAIT, calls.recv())
        .await
        .expect("no call came down the connection")
        .unwrap();
    assert_eq!(call.transport, Transport::Tls);
    assert_eq!(call.remote.port(), tls_port(&kamailio));
    assert!(
        call.from.to_string().contains("alice@127.0.0.1"),
        "{}",
        call.from
    );
    let offer = SdpOffer::parse(call.body.as_deref().expect("an SDP offer")).unwrap();
    let neg = sdp::negotiate(&offer, &[G711::Pcmu, G711::Pcma]).unwrap();
    call.dialog.ring().unwrap();
    call.dialog
        .answer(sdp::answer(&neg, call.local_ip, 40010, 9))
        .unwrap();
    assert_eq!(
        tokio::time::timeout(WAIT, call.events.recv())
            .await
            .unwrap(),
        Some(DialogEvent::Acked)
    );
    block_in_place(|| alice.wait_event("CALL_ESTABLISHED", WAIT)).unwrap();
    call.dialog
        .bye(Some(Reason::new(16, "room ended")))
        .await
        .unwrap();
    block_in_place(|| alice.wait_event("CALL_CLOSED", WAIT)).unwrap();
    server.shutdown().await;
    block_in_place(|| alice.stop());
}
