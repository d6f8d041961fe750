//! The client side on rsipstack: the account's registration (the [`Refresher`] driven against a
//! real registrar, keep-alives, Expires: 0 on shutdown) and outgoing calls ([`OutgoingDialog`]).
//! rsipstack types stay in this file, `server.rs`, `tls.rs` and `udp.rs`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rsipstack::dialog::authenticate::Credential;
use rsipstack::dialog::dialog::{DialogState, DialogStateReceiver, TerminatedReason};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invitation::InviteOption;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::dialog::registration::Registration;
use rsipstack::dialog::DialogId;
use rsipstack::sip::typed::{Contact, From as FromHeader, Route, To as ToHeader};
use rsipstack::sip::{Header, Method, Param, Response, SipMessage, StatusCodeKind, Uri};
use rsipstack::transaction::endpoint::EndpointInnerRef;
use rsipstack::transaction::key::{TransactionKey, TransactionRole};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transport::connection::KEEPALIVE_REQUEST;
use rsipstack::transport::stream::StreamConnection;
use rsipstack::transport::{SipAddr, SipConnection};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::account::{Account, InvalidTarget};
use super::headers::Reason;
use super::outgoing::{
    check_extra_headers, display_name_text, AfterFinal, Final, OutgoingCall, OutgoingEvent,
    Progress,
};
use super::registration::{Action, Outcome, Refresher, RegistrationState};
use super::sdp::{self, SdpOffer};
use super::server::{lock, serve, spawn_until, DialogEvent, Served, SipError};
use super::tls::{ServerTls, TlsError};
use crate::config::{KeepAliveMethod, SipSettings, Transport};

const EVENT_QUEUE: usize = 64;
/// How long shutdown waits for the registrar to confirm Expires: 0.
const UNREGISTER_WAIT: Duration = Duration::from_secs(5);

/// What registration and outgoing calls share.
pub(crate) struct Client {
    layer: Arc<DialogLayer>,
    endpoint: EndpointInnerRef,
    account: Account,
    /// Where we are reachable (Contact): `sip.public_address` or the local address with the
    /// listening port, then what the registrar saw (received/rport) once registered.
    contact: Mutex<SocketAddr>,
    /// Stops the tasks of outgoing calls with the server.
    cancel: CancellationToken,
    /// With `sip.server_transport = tls`: the connection to the server.
    tls: Option<ServerTls>,
}

fn uri(text: &str) -> Result<Uri, SipError> {
    Uri::try_from(text).map_err(|e| SipError::Stack(format!("URI {text:?}: {e}")))
}

impl Client {
    pub fn new(
        settings: &SipSettings,
        layer: Arc<DialogLayer>,
        endpoint: EndpointInnerRef,
        contact: SocketAddr,
        cancel: CancellationToken,
        tls: Option<ServerTls>,
    ) -> Client {
        Client {
            layer,
            endpoint,
            account: Account::from_settings(settings),
            contact: Mutex::new(contact),
            cancel,
            tls,
        }
    }

    /// Over TLS, opens the connection to the server unless one is open; a new one becomes our
    /// Contact (the server reaches us on it). Whether it did. Nothing for UDP and TCP.
    pub async fn reach_server(&self) -> Result<bool, TlsError> {
        let Some(tls) = &self.tls else {
            return Ok(false);
        };
        let Some(contact) = tls.connect(&self.endpoint.transport_layer).await? else {
            return Ok(false);
        };
        *lock(&self.contact) = contact;
        Ok(true)
    }

    /// Returns when the TLS connection to the server closes; never without one.
    async fn server_closed(&self) {
        match &self.tls {
            Some(tls) => tls.closed().await,
            None => std::future::pending().await,
        }
    }

    /// The transport towards the server (UDP when there is none).
    fn transport(&self) -> Transport {
        self.account
            .server
            .as_ref()
            .map_or(Transport::Udp, |s| s.transport)
    }

    fn credential(&self) -> Option<Credential> {
        self.account.credentials.as_ref().map(|c| Credential {
            username: c.user.clone(),
            password: c.password.clone(),
            realm: None,
            auth_username: c.auth_user.clone(),
        })
    }

    /// Our Contact URI: `sip:user@address` with `;transport=` unless UDP.
    fn contact_uri(&self) -> Result<Uri, SipError> {
        let addr = *lock(&self.contact);
        let text = match self.transport() {
            Transport::Udp => format!("sip:{}@{addr}", self.account.user),
            t => format!("sip:{}@{addr};transport={t}", self.account.user),
        };
        uri(&text)
    }

    pub fn registers(&self) -> bool {
        self.account.register
    }

    /// Places an outgoing call; its events arrive on the returned dialog.
    pub fn call(self: &Arc<Self>, call: OutgoingCall) -> Result<OutgoingDialog, SipError> {
        check_extra_headers(&call.headers)?;
        let target = self.account.target(&call.to)?;
        let callee = Uri::try_from(target.as_str())
            .map_err(|_| SipError::InvalidTarget(InvalidTarget::BadCharacters(target.clone())))?;
        let contact_addr = *lock(&self.contact);
        // Through the server as outbound proxy: a preloaded Route, which the CANCEL copies
        // (a destination alone would send the CANCEL straight to the Request-URI).
        let route_set = match &self.account.server {
            Some(server) => vec![Route {
                display_name: None,
                uri: uri(&server.route_uri())?,
                params: vec![],
            }],
            None => vec![],
        };
        let headers = call
            .headers
            .iter()
            .map(|(name, value)| Header::Other(name.clone(), value.clone()))
            .collect();
        let option = InviteOption {
            caller_display_name: call.display_name.as_deref().and_then(display_name_text),
            caller: uri(&self.account.caller_uri(contact_addr))?,
            callee,
            route_set,
            content_type: Some("application/sdp".into()),
            offer: Some(call.sdp_offer.clone().into_bytes()),
            contact: self.contact_uri()?,
            credential: self.credential(),
            headers: Some(headers),
            // Over TLS: the open connection; then the Via says TLS too.
            destination: self.tls.as_ref().and_then(ServerTls::destination),
            ..Default::default()
        };
        let (state_tx, state_rx) = self.layer.new_dialog_state_channel();
        let (dialog, invite) = self.layer.do_invite_async(option, state_tx)?;
        let call_id = dialog.id().call_id;
        let shared = Arc::new(Shared::default());
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        spawn_until(
            &self.cancel,
            drive_outgoing(Outgoing {
                dialog: dialog.clone(),
                invite,
                states: state_rx,
                events: events_tx,
                shared: shared.clone(),
                layer: self.layer.clone(),
                offer: call.sdp_offer,
            }),
        );
        info!(%call_id, to = %target, via = ?self.account.server.as_ref().map(|s| s.address()), "outgoing call");
        Ok(OutgoingDialog {
            call_id,
            dialog,
            events: events_rx,
            shared,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Registration

/// Registers the account until `stop`, keeping `state` current; then unregisters.
pub(crate) async fn run_registration(
    client: Arc<Client>,
    settings: SipSettings,
    state: watch::Sender<RegistrationState>,
    stop: CancellationToken,
) {
    let account = &client.account;
    let (Some(server), Some(aor)) = (account.server.clone(), account.aor.clone()) else {
        return;
    };
    let user = account
        .credentials
        .as_ref()
        .map_or(account.user.as_str(), |c| c.digest_user())
        .to_string();
    let registrar = server.address();
    let (register_uri, mut registration) = match prepare(&client, &server.uri(), &aor) {
        Ok(prepared) => prepared,
        Err(e) => {
            error!(%registrar, %user, error = %e, "SIP registration impossible");
            state.send_replace(RegistrationState::Failed {
                reason: e.to_string(),
                status: None,
                retry_in: Duration::MAX,
            });
            return;
        }
    };
    let mut refresher = Refresher::new(
        Instant::now(),
        settings.registration_expiry,
        settings.keep_alive_method,
        settings.keep_alive_interval,
    );
    state.send_replace(refresher.state().clone());
    let (alive_tx, mut alive_rx) = mpsc::channel::<bool>(4);
    loop {
        let due = refresher
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            _ = stop.cancelled() => break,
            Some(alive) = alive_rx.recv() => {
                if !alive {
                    warn!(%registrar, "keep-alive unanswered: registering again");
                    refresher.register_now(Instant::now());
                }
            }
            _ = client.server_closed() => {
                // The binding names the closed connection: the server cannot reach us now.
                if matches!(refresher.state(), RegistrationState::Registered { .. }) {
                    warn!(%registrar, "connection to the registrar closed: registering again");
                    refresher.register_now(Instant::now());
                }
            }
            _ = tokio::time::sleep_until(due) => {
                match refresher.handle_timeout(Instant::now()) {
                    Some(Action::Register) => {
                        let expires = refresher.requested().as_secs().min(u64::from(u32::MAX)) as u32;
                        let outcome = tokio::select! {
                            _ = stop.cancelled() => break,
                            outcome = register(&client, &mut registration, &register_uri, expires) => outcome,
                        };
                        let before = refresher.state().clone();
                        let now_state = refresher.handle_outcome(Instant::now(), outcome).clone();
                        report(&before, &now_state, &registrar, &user);
                        if matches!(now_state, RegistrationState::Registered { .. }) {
                            learn_contact(&client, &registration);
                        }
                        state.send_replace(now_state);
                    }
                    Some(Action::KeepAlive(method)) => {
                        keep_alive(&client, method, &register_uri, &aor, &alive_tx);
                    }
                    None => {}
                }
            }
        }
    }
    if refresher.ever_registered() {
        let result = tokio::time::timeout(
            UNREGISTER_WAIT,
            registration.register(register_uri, Some(0)),
        )
        .await;
        match result {
            Ok(Ok(resp)) if resp.status_code.kind() == StatusCodeKind::Successful => {
                info!(%registrar, %user, "unregistered")
            }
            Ok(Ok(resp)) => {
                warn!(%registrar, %user, status = resp.status_code.code(), "unregister refused")
            }
            Ok(Err(e)) => warn!(%registrar, %user, error = %e, "unregister failed"),
            Err(_) => warn!(%registrar, %user, "no answer to the unregister"),
        }
    }
    state.send_replace(RegistrationState::Disabled);
}

/// The REGISTER Request-URI and a `Registration` whose From/To are the account and whose
/// Contact is ours.
fn prepare(client: &Client, server_uri: &str, aor: &str) -> Result<(Uri, Registration), SipError> {
    let register_uri = uri(server_uri)?;
    let aor = uri(aor)?;
    let mut registration = Registration::new(client.endpoint.clone(), client.credential());
    // The stack writes From/To from the Request-URI (the registrar's address); the binding is
    // for the account's address of record (RFC 3261 §10.2).
    let from = FromHeader {
        display_name: None,
        uri: aor.clone(),
        params: vec![Param::Tag(rsipstack::transaction::make_tag())],
    };
    let to = ToHeader {
        display_name: None,
        uri: aor,
        params: vec![],
    };
    registration.extra_headers = vec![Header::From(from.into()), Header::To(to.into())];
    // Explicit so that it has the user and, over TCP/TLS, the transport; the stack moves its
    // address to what the registrar saw (received/rport) when it challenges us.
    registration.contact = Some(Contact {
        display_name: None,
        uri: client.contact_uri()?,
        params: vec![],
    });
    Ok((register_uri, registration))
}

/// One REGISTER; over TLS, on the connection to the registrar, opened first when needed.
async fn register(
    client: &Client,
    registration: &mut Registration,
    register_uri: &Uri,
    expires: u32,
) -> Outcome {
    let opened = client.reach_server().await.map_err(|e| e.to_string());
    // A new connection: the binding must name it.
    let contact = match opened {
        Ok(true) => client.contact_uri().map(Some).map_err(|e| e.to_string()),
        Ok(false) => Ok(None),
        Err(error) => Err(error),
    };
    match contact {
        Ok(Some(uri)) => {
            registration.contact = Some(Contact {
                display_name: None,
                uri,
                params: vec![],
            })
        }
        Ok(None) => {}
        Err(error) => return Outcome::Unreachable { error },
    }
    let result = registration
        .register(register_uri.clone(), Some(expires))
        .await;
    outcome_of(result, registration, client.account.credentials.is_some())
}

fn outcome_of(
    result: rsipstack::Result<Response>,
    registration: &Registration,
    had_credentials: bool,
) -> Outcome {
    match result {
        Ok(resp) if resp.status_code.kind() == StatusCodeKind::Successful => Outcome::Registered {
            granted: Duration::from_secs(u64::from(registration.expires())),
        },
        Ok(resp) => Outcome::Rejected {
            status: resp.status_code.code(),
            phrase: phrase(&resp),
            had_credentials,
            min_expires: resp
                .headers
                .iter()
                .find(|h| h.name().eq_ignore_ascii_case("Min-Expires"))
                .and_then(|h| h.value().trim().parse().ok())
                .map(Duration::from_secs),
        },
        Err(e) => Outcome::NoResponse {
            error: e.to_string(),
        },
    }
}

/// One log line per attempt: failures always (at ERROR), success when it changes something.
fn report(before: &RegistrationState, after: &RegistrationState, registrar: &str, user: &str) {
    match after {
        RegistrationState::Registered { expires_in } => {
            if matches!(before, RegistrationState::Registered { .. }) {
                debug!(%registrar, %user, expires_s = expires_in.as_secs(), "registration refreshed");
            } else {
                info!(%registrar, %user, expires_s = expires_in.as_secs(), "registered");
            }
        }
        RegistrationState::Failed {
            reason,
            status,
            retry_in,
        } => {
            let status = status.map_or_else(|| "none".to_string(), |s| s.to_string());
            error!(
                %registrar,
                %user,
                %status,
                retry_in_s = retry_in.as_secs_f32(),
                "SIP registration failed: {reason}"
            );
        }
        RegistrationState::Registering | RegistrationState::Disabled => {}
    }
}

/// After a success: the Contact the registrar accepted is where outgoing calls say we are.
fn learn_contact(client: &Client, registration: &Registration) {
    let Some(contact) = registration.contact.as_ref() else {
        return;
    };
    if let Ok(addr) = SocketAddr::try_from(contact.uri.host_with_port.clone()) {
        let mut current = lock(&client.contact);
        if *current != addr {
            info!(from = %*current, to = %addr, "contact address learnt from the registrar");
            *current = addr;
        }
    }
}

/// Sends one keep-alive; an OPTIONS reports on `alive` whether anything answered.
fn keep_alive(
    client: &Arc<Client>,
    method: KeepAliveMethod,
    server: &Uri,
    aor: &str,
    alive: &mpsc::Sender<bool>,
) {
    let endpoint = client.endpoint.clone();
    let server = server.clone();
    let alive = alive.clone();
    let aor = aor.to_string();
    let task = async move {
        match method {
            KeepAliveMethod::Options => {
                let answered = match options(&endpoint, &server, &aor).await {
                    Ok(answered) => answered,
                    Err(e) => {
                        debug!(error = %e, "OPTIONS keep-alive not sent");
                        false
                    }
                };
                let _ = alive.send(answered).await;
            }
            KeepAliveMethod::Crlf => {
                if let Err(e) = crlf(&endpoint, &server).await {
                    debug!(error = %e, "CRLF keep-alive not sent");
                }
            }
            KeepAliveMethod::Register | KeepAliveMethod::None => {}
        }
    };
    spawn_until(&client.cancel, task);
}

/// An OPTIONS to the registrar; whether any final response came back.
async fn options(endpoint: &EndpointInnerRef, server: &Uri, aor: &str) -> rsipstack::Result<bool> {
    let target = SipAddr::try_from(server)?;
    let (connection, _) = endpoint.transport_layer.lookup(&target, None).await?;
    let via = endpoint.get_via(Some(connection.get_addr().clone()), None)?;
    let from = FromHeader {
        display_name: None,
        uri: Uri::try_from(aor)?,
        params: vec![Param::Tag(rsipstack::transaction::make_tag())],
    };
    let to = ToHeader {
        display_name: None,
        uri: server.clone(),
        params: vec![],
    };
    let mut request =
        endpoint.make_request(Method::Options, server.clone(), via, from, to, 1, None);
    request.headers.unique_push(Header::ContentLength(0.into()));
    let key = TransactionKey::from_request(&request, TransactionRole::Client)?;
    let mut tx = Transaction::new_client(key, request, endpoint.clone(), None);
    tx.send().await?;
    while let Some(msg) = tx.receive().await {
        if let SipMessage::Response(resp) = msg {
            if resp.status_code.kind() != StatusCodeKind::Provisional {
                debug!(status = resp.status_code.code(), "keep-alive answered");
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// A CRLF ping (RFC 5626 §3.5.1) on the flow to the registrar.
async fn crlf(endpoint: &EndpointInnerRef, server: &Uri) -> rsipstack::Result<()> {
    let target = SipAddr::try_from(server)?;
    let (connection, resolved) = endpoint.transport_layer.lookup(&target, None).await?;
    match connection {
        SipConnection::Udp(udp) => udp.send_raw(KEEPALIVE_REQUEST, &resolved).await,
        SipConnection::Tcp(tcp) => tcp.send_raw(KEEPALIVE_REQUEST).await,
        SipConnection::Tls(tls) => tls.send_raw(KEEPALIVE_REQUEST).await,
        other => {
            debug!(connection = %other, "no CRLF keep-alive on this transport");
            Ok(())
        }
    }
}

fn phrase(resp: &Response) -> String {
    resp.wire_reason
        .clone()
        .unwrap_or_else(|| resp.status_code.text().to_string())
}

// ---------------------------------------------------------------------------------------------
// Outgoing calls

#[derive(Default)]
struct Shared {
    /// We sent (or asked the stack to send) CANCEL.
    cancelled: AtomicBool,
}

/// Our side of an outgoing call. Dropping it ends the call: CANCEL while unanswered, BYE once
/// answered, nothing once it has ended.
pub struct OutgoingDialog {
    call_id: String,
    dialog: InviteDialog,
    events: mpsc::Receiver<OutgoingEvent>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for OutgoingDialog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OutgoingDialog({})", self.dialog.id())
    }
}

impl OutgoingDialog {
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// The next event; `None` once the call has ended and its last event was taken.
    pub async fn next(&mut self) -> Option<OutgoingEvent> {
        self.events.recv().await
    }

    /// Gives up before the final response: CANCEL (sent once a provisional response has
    /// arrived, RFC 3261 §9.1), once. Nothing once the call was answered or has ended.
    pub fn cancel(&self) {
        if !self.dialog.state().can_cancel() {
            debug!(call_id = %self.call_id, "nothing to cancel");
            return;
        }
        // The 487 takes a round trip: until it comes the dialog still looks cancellable.
        if self.shared.cancelled.swap(true, Ordering::SeqCst) {
            debug!(call_id = %self.call_id, "CANCEL already sent");
            return;
        }
        let dialog = self.dialog.clone();
        let call_id = self.call_id.clone();
        tokio::spawn(async move {
            if let Err(e) = dialog.cancel().await {
                debug!(%call_id, error = %e, "CANCEL");
            }
        });
    }

    /// BYE with an RFC 3326 Reason, once answered; returns when the BYE is answered or its
    /// transaction times out. The call has ended either way.
    pub async fn bye(&self, reason: Option<Reason>) -> Result<(), SipError> {
        let state = self.dialog.state();
        if !state.is_confirmed() {
            return Err(SipError::WrongState {
                action: "send BYE on",
                state: match state {
                    DialogState::Terminated(..) => "ended",
                    _ => "unanswered",
                }
                .to_string(),
            });
        }
        let headers = reason.map(|r| vec![Header::Reason(r.header_value().into())]);
        Ok(self.dialog.bye_with_headers(headers).await?)
    }
}

impl Drop for OutgoingDialog {
    fn drop(&mut self) {
        let state = self.dialog.state();
        if state.can_cancel() && !self.shared.cancelled.load(Ordering::SeqCst) {
            warn!(call_id = %self.call_id, "outgoing call dropped unanswered: CANCEL");
            self.cancel();
        } else if state.is_confirmed() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                warn!(call_id = %self.call_id, "outgoing call dropped while up: BYE");
                let dialog = self.dialog.clone();
                runtime.spawn(async move {
                    let _ = dialog.bye().await;
                });
            }
        }
    }
}

/// What the task of one outgoing call works with.
struct Outgoing {
    dialog: InviteDialog,
    invite: tokio::task::JoinHandle<rsipstack::Result<(DialogId, Option<Response>)>>,
    states: DialogStateReceiver,
    events: mpsc::Sender<OutgoingEvent>,
    shared: Arc<Shared>,
    layer: Arc<DialogLayer>,
    offer: String,
}

/// Reports the INVITE's progress and outcome, then serves the dialog until it ends.
async fn drive_outgoing(mut call: Outgoing) {
    let id = call.dialog.id();
    let notify = |event: OutgoingEvent| {
        if let Err(e) = call.events.try_send(event) {
            debug!(%id, error = %e, "outgoing call event not delivered");
        }
    };
    let mut progress = Progress::default();
    // States other than provisional ones, kept for after the INVITE (a BYE may follow the
    // 200 OK before its transaction has handed the response over).
    let mut later = std::collections::VecDeque::new();
    let result = loop {
        tokio::select! {
            biased;
            Some(state) = call.states.recv() => {
                if let Some(event) = provisional(&mut progress, state, &mut later) {
                    notify(event);
                }
            }
            result = &mut call.invite => break result,
        }
    };
    while let Ok(state) = call.states.try_recv() {
        if let Some(event) = provisional(&mut progress, state, &mut later) {
            notify(event);
        }
    }
    let outcome = match result {
        Ok(Ok((_, Some(resp)))) if resp.status_code.kind() == StatusCodeKind::Successful => {
            Final::Answered {
                sdp: String::from_utf8_lossy(&resp.body).into_owned(),
            }
        }
        Ok(Ok((_, Some(resp)))) => Final::Rejected {
            status: resp.status_code.code(),
            phrase: phrase(&resp),
        },
        Ok(Ok((_, None))) => Final::NoResponse,
        Ok(Err(e)) => Final::Unsent {
            error: e.to_string(),
        },
        Err(e) => Final::Unsent {
            error: e.to_string(),
        },
    };
    let cancelled = call.shared.cancelled.load(Ordering::SeqCst);
    let answer = Arc::new(Mutex::new(None));
    match progress.finish(outcome, cancelled) {
        AfterFinal::Over(event) => {
            debug!(%id, ?event, "outgoing call over");
            let _ = call.events.send(event).await;
            return;
        }
        AfterFinal::HangUp(event) => {
            let reason = Reason::new(488, "no SDP answer");
            let headers = vec![Header::Reason(reason.header_value().into())];
            let _ = call.dialog.bye_with_headers(Some(headers)).await;
            call.layer.remove_dialog(&call.dialog.id());
            let _ = call.events.send(event).await;
            return;
        }
        AfterFinal::Up { sdp } => {
            // Our side for answering re-INVITEs: the codec the callee chose.
            match SdpOffer::parse(sdp.as_bytes())
                .and_then(|theirs| sdp::offered_session(&call.offer, &theirs))
            {
                Ok(ours) => *lock(&answer) = Some(ours),
                Err(e) => debug!(%id, error = %e, "answer unusable for re-INVITEs"),
            }
            notify(OutgoingEvent::Answered { sdp });
        }
    }
    let terminal = loop {
        let state = match later.pop_front() {
            Some(state) => state,
            None => match call.states.recv().await {
                Some(state) => state,
                None => {
                    break OutgoingEvent::Terminated {
                        why: "dialog dropped".into(),
                    }
                }
            },
        };
        match serve(state, &answer).await {
            Served::Event(DialogEvent::Info { content_type, body }) => {
                notify(OutgoingEvent::Info { content_type, body })
            }
            Served::Event(DialogEvent::Renegotiated(neg)) => {
                notify(OutgoingEvent::Renegotiated(neg))
            }
            Served::Ended(reason) => break ended(reason),
            Served::Event(_) | Served::Confirmed | Served::Nothing => {}
        }
    };
    let id = call.dialog.id();
    call.layer.remove_dialog(&id);
    debug!(%id, event = ?terminal, "outgoing call ended");
    let _ = call.events.send(terminal).await;
}

/// The event of a provisional state; other states are kept in `later`.
fn provisional(
    progress: &mut Progress,
    state: DialogState,
    later: &mut std::collections::VecDeque<DialogState>,
) -> Option<OutgoingEvent> {
    match state {
        DialogState::Calling(_) => None,
        DialogState::Trying(_) => progress.provisional(100, None),
        DialogState::Early(_, resp) => {
            let is_sdp = resp.headers.iter().any(|h| {
                matches!(h, Header::ContentType(ct) if ct
                    .value()
                    .split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/sdp")))
            });
            let sdp = (is_sdp && !resp.body.is_empty())
                .then(|| String::from_utf8_lossy(&resp.body).into_owned());
            progress.provisional(resp.status_code.code(), sdp)
        }
        // The 200 OK: reported from the INVITE's outcome.
        DialogState::Confirmed(..) => None,
        other => {
            later.push_back(other);
            None
        }
    }
}

fn ended(reason: TerminatedReason) -> OutgoingEvent {
    let why = match reason {
        TerminatedReason::UasBye => return OutgoingEvent::Bye,
        TerminatedReason::UacBye => "we hung up".to_string(),
        TerminatedReason::Timeout => "the dialog timed out".to_string(),
        other => format!("{other:?}"),
    };
    OutgoingEvent::Terminated { why }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callee_hanging_up_is_bye_and_ours_is_terminated() {
        assert_eq!(ended(TerminatedReason::UasBye), OutgoingEvent::Bye);
        assert_eq!(
            ended(TerminatedReason::UacBye),
            OutgoingEvent::Terminated {
                why: "we hung up".into()
            }
        );
    }
}
