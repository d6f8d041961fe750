//! The SIP user agent server on rsipstack: binds the transports, answers what needs no call
//! (OPTIONS, requests outside any dialog, unsupported methods and extensions), and hands each
//! new INVITE to the gateway as an [`IncomingCall`] with its [`SipDialog`] and a per-call
//! [`DialogEvent`] stream. rsipstack types stay in this file and in `udp.rs`.
//!
//! Tasks: the rsipstack endpoint (transport reading, transactions, timers), a TCP accept loop,
//! the dispatcher of new server transactions, one task per INVITE transaction and one watcher
//! per dialog that answers in-dialog requests and turns dialog states into events; with an
//! account, the registration (`client.rs`), and one task per outgoing call.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use rsipstack::dialog::dialog::{Dialog, DialogState, DialogStateReceiver, TerminatedReason};
use rsipstack::dialog::dialog_layer::DialogLayer;
use rsipstack::dialog::invite_dialog::InviteDialog;
use rsipstack::sip::param::Tag;
use rsipstack::sip::prelude::{HeadersExt, ToTypedHeader};
use rsipstack::sip::{Header, Method, Param, Scheme, StatusCode, Uri};
use rsipstack::transaction::endpoint::{EndpointInnerRef, EndpointOption};
use rsipstack::transaction::transaction::Transaction;
use rsipstack::transaction::CallIdFormat;
use rsipstack::transport::tcp::TcpConnection;
use rsipstack::transport::udp::UdpConnection;
use rsipstack::transport::{SipAddr, SipConnection, TransportLayer};
use rsipstack::EndpointBuilder;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::account::InvalidTarget;
use super::client::{run_registration, Client, OutgoingDialog};
use super::headers::{Headers, NameAddr, Reason};
use super::outgoing::{InvalidHeader, OutgoingCall};
use super::policy::{self, RequestView, Route, ACCEPT, ALLOW};
use super::registration::RegistrationState;
use super::screen;
use super::sdp::{self, Negotiated, SdpOffer};
use super::tls::{ServerTls, TlsError};
use super::udp::ScreenedUdp;
use crate::config::{IpNet, SipSettings, Transport};

const USER_AGENT: &str = concat!("jitsi-sip-gateway/", env!("CARGO_PKG_VERSION"));
/// Incoming calls waiting for the gateway; beyond this, new INVITEs get 503.
const CALL_QUEUE: usize = 64;
const EVENT_QUEUE: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum SipError {
    #[error("cannot listen for SIP over {transport} on {addr}: {source}")]
    Bind {
        transport: Transport,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("listening for SIP over {0} is not supported (sip.transports)")]
    UnsupportedTransport(Transport),
    #[error("{0} is not a final failure status (300-699)")]
    InvalidStatus(u16),
    #[error("cannot {action} a call in state {state}")]
    WrongState { action: &'static str, state: String },
    #[error("SIP stack: {0}")]
    Stack(String),
    #[error("cannot dial: {0}")]
    InvalidTarget(#[from] InvalidTarget),
    #[error("cannot dial: {0}")]
    InvalidHeader(#[from] InvalidHeader),
    #[error("sip.server_transport = udp needs udp in sip.transports (the same socket receives)")]
    NoUdpForServer,
    #[error("{0}")]
    Tls(#[from] TlsError),
}

impl From<rsipstack::Error> for SipError {
    fn from(e: rsipstack::Error) -> Self {
        SipError::Stack(e.to_string())
    }
}

/// The running SIP server. Dropping it stops it as [`SipServer::shutdown`] does, without
/// waiting.
pub struct SipServer {
    cancel: CancellationToken,
    addrs: Vec<(Transport, SocketAddr)>,
    tasks: Vec<JoinHandle<()>>,
    client: Arc<Client>,
    registration: watch::Receiver<RegistrationState>,
    /// Stops the registration, which then unregisters; and its task.
    registrar: Option<(CancellationToken, JoinHandle<()>)>,
}

/// A new call: an INVITE that opened a dialog. 100 Trying has been sent.
#[derive(Debug)]
pub struct IncomingCall {
    pub call_id: String,
    /// The caller (From): display name and URI.
    pub from: NameAddr,
    pub request_uri: String,
    /// Every header as received.
    pub headers: Headers,
    /// The SDP offer as received; `None` for an INVITE without body.
    pub body: Option<Vec<u8>>,
    /// Where the INVITE came from (the caller, or the last proxy).
    pub remote: SocketAddr,
    pub transport: Transport,
    /// Our address for this call, for the SDP answer: `sip.public_address` when set, else
    /// the address the INVITE reached (the interface address when listening on a wildcard).
    pub local_ip: IpAddr,
    pub dialog: SipDialog,
    pub events: mpsc::Receiver<DialogEvent>,
}

/// What happens to a call's dialog after the INVITE. `Cancelled`, `Bye` and `Terminated` end
/// the stream; exactly one of them comes last (unless the server shuts down first: then the
/// stream just ends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialogEvent {
    /// The ACK for our 200 OK arrived.
    Acked,
    /// The caller cancelled before we answered; 487 and the CANCEL's 200 are sent.
    Cancelled,
    /// The caller hung up; the BYE's 200 is sent.
    Bye,
    /// An INFO inside the call (DTMF, jigasi's JSON); its 200 is sent.
    Info {
        content_type: Option<String>,
        body: Vec<u8>,
    },
    /// A re-INVITE was answered 200 with the same codec; the phone's RTP address or
    /// direction may have changed.
    Renegotiated(Negotiated),
    /// The dialog ended otherwise: rejected or hung up by us, or no ACK for our 200 OK.
    Terminated { why: String },
}

/// Our side of one call's dialog. Dropping it ends the call: 500 if it was never answered,
/// BYE if it was; nothing once it has ended.
pub struct SipDialog {
    dialog: InviteDialog,
    /// The SDP of our 200 OK, to answer re-INVITEs with.
    answer: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for SipDialog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SipDialog({})", self.dialog.id())
    }
}

impl SipDialog {
    fn state_error(&self, action: &'static str) -> SipError {
        SipError::WrongState {
            action,
            state: state_name(&self.dialog.state()).to_string(),
        }
    }

    /// 180 Ringing.
    pub fn ring(&self) -> Result<(), SipError> {
        if !self.dialog.state().can_cancel() {
            return Err(self.state_error("ring"));
        }
        Ok(self.dialog.ringing(None, None)?)
    }

    /// 200 OK with our SDP answer.
    pub fn answer(&self, sdp: String) -> Result<(), SipError> {
        if !self.dialog.state().can_cancel() {
            return Err(self.state_error("answer"));
        }
        let headers = vec![
            Header::ContentType(ACCEPT.into()),
            Header::Other("Allow".into(), ALLOW.into()),
        ];
        *lock(&self.answer) = Some(sdp.clone());
        Ok(self.dialog.accept(Some(headers), Some(sdp.into_bytes()))?)
    }

    /// A final failure response to the INVITE (300-699), with an RFC 3326 Reason.
    pub fn reject(&self, code: u16, reason: Option<Reason>) -> Result<(), SipError> {
        if !(300..=699).contains(&code) {
            return Err(SipError::InvalidStatus(code));
        }
        if !self.dialog.state().can_cancel() {
            return Err(self.state_error("reject"));
        }
        let reason = reason.map(|r| r.header_value());
        Ok(self.dialog.reject(Some(StatusCode::from(code)), reason)?)
    }

    /// BYE with an RFC 3326 Reason; returns when the BYE is answered or its transaction times
    /// out. The dialog has ended either way.
    pub async fn bye(&self, reason: Option<Reason>) -> Result<(), SipError> {
        let state = self.dialog.state();
        if !(state.is_confirmed() || state.waiting_ack()) {
            return Err(self.state_error("send BYE on"));
        }
        let headers = reason.map(|r| vec![Header::Reason(r.header_value().into())]);
        Ok(self.dialog.bye_with_headers(headers).await?)
    }
}

impl Drop for SipDialog {
    fn drop(&mut self) {
        let state = self.dialog.state();
        if state.can_cancel() {
            warn!(id = %self.dialog.id(), "call dropped unanswered: 500");
            let _ = self
                .dialog
                .reject(Some(StatusCode::ServerInternalError), None);
        } else if state.is_confirmed() || state.waiting_ack() {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                warn!(id = %self.dialog.id(), "call dropped while up: BYE");
                let dialog = self.dialog.clone();
                runtime.spawn(async move {
                    let _ = dialog.bye().await;
                });
            }
        }
    }
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The data (an SDP string) stays valid if a holder panicked.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn state_name(state: &DialogState) -> &'static str {
    match state {
        DialogState::Calling(_) | DialogState::Trying(_) => "incoming",
        DialogState::Early(..) => "ringing",
        DialogState::WaitAck(..) => "answered",
        DialogState::Terminated(..) => "ended",
        _ => "established",
    }
}

/// Everything the request handlers share.
struct Ctx {
    layer: Arc<DialogLayer>,
    calls: mpsc::Sender<IncomingCall>,
    public_address: Option<IpAddr>,
    /// `sip.allowed_peers`: who may start a call; empty: anyone.
    allowed_peers: Vec<IpNet>,
    cancel: CancellationToken,
}

impl SipServer {
    /// Binds the transports of `settings` (UDP and/or TCP on `sip.listen`, the same port for
    /// both) and starts answering; with an account and `sip.register`, registers it. TLS is not
    /// supported for listening yet.
    pub async fn start(
        settings: &SipSettings,
    ) -> Result<(SipServer, mpsc::Receiver<IncomingCall>), SipError> {
        if settings.transports.contains(&Transport::Tls) {
            return Err(SipError::UnsupportedTransport(Transport::Tls));
        }
        let want_udp = settings.transports.contains(&Transport::Udp);
        let want_tcp = settings.transports.contains(&Transport::Tcp);
        if settings.server.is_some() && settings.server_transport == Transport::Udp && !want_udp {
            return Err(SipError::NoUdpForServer);
        }
        let (udp, tcp) = bind(settings.listen, want_udp, want_tcp).await?;

        let cancel = CancellationToken::new();
        let transport_layer = TransportLayer::new(cancel.child_token());
        let tls = ServerTls::from_settings(settings, &transport_layer, &cancel)?;
        let mut addrs = Vec::new();
        let external = |port| settings.public_address.map(|ip| SocketAddr::new(ip, port));
        if let Some(socket) = udp {
            let local = socket.local_addr().map_err(|source| SipError::Bind {
                transport: Transport::Udp,
                addr: settings.listen,
                source,
            })?;
            let conn = UdpConnection::from_socket(
                Arc::new(ScreenedUdp::new(socket)),
                external(local.port()),
                Some(cancel.child_token()),
            )
            .await?;
            transport_layer.add_transport(conn.into());
            addrs.push((Transport::Udp, local));
        }
        let tcp = match tcp {
            Some(listener) => {
                let local = listener.local_addr().map_err(|source| SipError::Bind {
                    transport: Transport::Tcp,
                    addr: settings.listen,
                    source,
                })?;
                addrs.push((Transport::Tcp, local));
                Some((listener, external(local.port())))
            }
            None => None,
        };

        let endpoint = EndpointBuilder::new()
            // Call-IDs of our requests: a bare UUID (the stack's default names its vendor).
            .with_option(EndpointOption {
                callid_format: CallIdFormat::Uuid,
                ..EndpointOption::default()
            })
            .with_user_agent(USER_AGENT)
            .with_cancel_token(cancel.clone())
            .with_transport_layer(transport_layer)
            .build();
        let incoming = endpoint.incoming_transactions()?;
        let layer = Arc::new(DialogLayer::new(endpoint.inner.clone()));
        let (calls_tx, calls_rx) = mpsc::channel(CALL_QUEUE);
        let contact = contact_address(settings, &addrs);
        let client = Arc::new(Client::new(
            settings,
            layer.clone(),
            endpoint.inner.clone(),
            contact,
            cancel.clone(),
            tls,
        ));
        let ctx = Arc::new(Ctx {
            layer,
            calls: calls_tx,
            public_address: settings.public_address,
            allowed_peers: settings.allowed_peers.clone(),
            cancel: cancel.clone(),
        });

        let mut tasks = Vec::new();
        let inner = endpoint.inner.clone();
        tasks.push(tokio::spawn(async move { endpoint.serve().await }));
        if let Some((listener, external)) = tcp {
            tasks.push(spawn_until(
                &cancel,
                accept_tcp(listener, external, inner, cancel.clone()),
            ));
        }
        tasks.push(spawn_until(&cancel, dispatch(incoming, ctx)));
        info!(?addrs, "SIP server listening");
        let (state_tx, registration) = watch::channel(RegistrationState::Disabled);
        let registrar = client.registers().then(|| {
            let stop = CancellationToken::new();
            let task = spawn_until(
                &cancel,
                run_registration(client.clone(), settings.clone(), state_tx, stop.clone()),
            );
            (stop, task)
        });
        Ok((
            SipServer {
                cancel,
                addrs,
                tasks,
                client,
                registration,
                registrar,
            },
            calls_rx,
        ))
    }

    /// The account's registration; `Disabled` without an account, with `sip.register = false`
    /// (a trunk), and after shutdown.
    pub fn registration(&self) -> watch::Receiver<RegistrationState> {
        self.registration.clone()
    }

    /// An outgoing INVITE through the account's proxy (`sip.server`), or straight to the
    /// destination URI when no server is configured. Fails at once when the destination or an
    /// extra header cannot be written into the request, or the TLS connection to the server
    /// cannot be opened; everything after that arrives as events on the dialog.
    pub async fn call(&self, call: OutgoingCall) -> Result<OutgoingDialog, SipError> {
        self.client.reach_server().await?;
        self.client.call(call)
    }

    /// The bound addresses (the real port when `sip.listen` asked for port 0).
    pub fn local_addrs(&self) -> Vec<(Transport, SocketAddr)> {
        self.addrs.clone()
    }

    /// Unregisters (Expires: 0, waiting up to 5 s for the registrar), then stops listening and
    /// abandons every transaction.
    pub async fn shutdown(mut self) {
        if let Some((stop, task)) = self.registrar.take() {
            stop.cancel();
            let _ = task.await;
        }
        self.cancel.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for SipServer {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

pub(super) fn spawn_until<F>(cancel: &CancellationToken, work: F) -> JoinHandle<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let cancel = cancel.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = work => {}
        }
    })
}

/// Where requests we send say we are (Contact): `sip.public_address` when set, else the
/// listening address (an interface address when listening on a wildcard); with the port of the
/// transport towards the server.
fn contact_address(settings: &SipSettings, addrs: &[(Transport, SocketAddr)]) -> SocketAddr {
    let local = addrs.first().map_or(settings.listen, |(_, a)| *a);
    let port = addrs
        .iter()
        .find(|(t, _)| *t == settings.server_transport)
        .map_or(local.port(), |(_, a)| a.port());
    let ip = settings
        .public_address
        .unwrap_or_else(|| SipConnection::resolve_bind_address(local).ip());
    SocketAddr::new(ip, port)
}

/// Binds UDP and TCP on the same address; with port 0 both get the same free port.
async fn bind(
    listen: SocketAddr,
    udp: bool,
    tcp: bool,
) -> Result<(Option<UdpSocket>, Option<TcpListener>), SipError> {
    let err = |transport, source| SipError::Bind {
        transport,
        addr: listen,
        source,
    };
    let mut attempts = 0;
    loop {
        attempts += 1;
        let udp_socket = match udp {
            true => Some(
                UdpSocket::bind(listen)
                    .await
                    .map_err(|e| err(Transport::Udp, e))?,
            ),
            false => None,
        };
        let port = match &udp_socket {
            Some(s) => s.local_addr().map_err(|e| err(Transport::Udp, e))?.port(),
            None => listen.port(),
        };
        if !tcp {
            return Ok((udp_socket, None));
        }
        match TcpListener::bind(SocketAddr::new(listen.ip(), port)).await {
            Ok(listener) => return Ok((udp_socket, Some(listener))),
            // The free UDP port is taken for TCP: try another one.
            Err(e)
                if listen.port() == 0
                    && udp
                    && e.kind() == std::io::ErrorKind::AddrInUse
                    && attempts < 20 => {}
            Err(e) => return Err(err(Transport::Tcp, e)),
        }
    }
}

/// Accepts TCP connections and gives each to the stack (what rsipstack's own listener does,
/// on a socket bound here so that bind errors and port 0 reach `start`).
async fn accept_tcp(
    listener: TcpListener,
    external: Option<SocketAddr>,
    endpoint: EndpointInnerRef,
    cancel: CancellationToken,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors and the like: give the process a moment instead of
                // spinning on the same error.
                warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let local = match external.map_or_else(|| stream.local_addr(), Ok) {
            Ok(local) => local,
            Err(e) => {
                warn!(%peer, error = %e, "TCP connection without local address");
                continue;
            }
        };
        let local = SipAddr {
            r#type: Some(rsipstack::sip::Transport::Tcp),
            addr: local.into(),
        };
        match TcpConnection::from_stream(stream, local, Some(cancel.child_token())) {
            Ok(conn) => endpoint
                .transport_layer
                .add_connection(SipConnection::Tcp(conn)),
            Err(e) => warn!(%peer, error = %e, "TCP connection refused by the stack"),
        }
    }
}

async fn dispatch(mut incoming: rsipstack::transaction::TransactionReceiver, ctx: Arc<Ctx>) {
    while let Some(tx) = incoming.recv().await {
        let ctx2 = ctx.clone();
        spawn_until(&ctx.cancel, async move { handle_request(ctx2, tx).await });
    }
}

/// Whether the To header carries a tag (the request claims a dialog).
fn to_tag(tx: &Transaction) -> bool {
    tx.original
        .to_header()
        .ok()
        .and_then(|to| to.tag().ok().flatten())
        .is_some()
}

fn headers_of(tx: &Transaction) -> Headers {
    tx.original
        .headers
        .iter()
        .map(|h| (h.name().to_string(), h.value().to_string()))
        .collect()
}

async fn handle_request(ctx: Arc<Ctx>, mut tx: Transaction) {
    let method = tx.original.method.to_string();
    let uri = uri_text(&tx.original.uri);
    let headers = headers_of(&tx);
    // UDP datagrams went through the screen already; a stream the stack reads itself.
    if tx.connection.as_ref().is_some_and(|c| c.is_reliable()) {
        let line = format!("{method} {uri} {}", tx.original.version);
        let raw_headers = headers.iter().map(|(n, v)| (n.into(), v.into())).collect();
        if let Err(problem) = screen::check_parsed(line, raw_headers, &tx.original.body) {
            let allow = problem.allow.then(|| ("Allow", ALLOW.to_string()));
            debug!(%method, code = problem.code, why = %problem.phrase, "refused");
            // Responses copy the request's version; ours is 2.0 whatever the request says.
            tx.original.version = rsipstack::sip::Version::V2;
            reply(&mut tx, problem.code, allow.into_iter().collect()).await;
            return;
        }
    }
    let route = policy::route(&RequestView {
        method: &method,
        uri: &uri,
        headers: &headers,
        has_body: !tx.original.body.is_empty(),
        to_tag: to_tag(&tx),
    });
    debug!(%method, %uri, call_id = headers.get("Call-ID").unwrap_or(""), ?route, "request");
    match route {
        Route::Ignore => {}
        Route::Refuse(refusal) => reply(&mut tx, refusal.code, refusal.headers).await,
        Route::Options => reply(&mut tx, 200, capabilities()).await,
        Route::InDialog => in_dialog(&ctx, &mut tx).await,
        Route::NewCall => {
            let remote = tx
                .connection
                .as_ref()
                .and_then(|c| c.get_remote_addr())
                .and_then(|a| a.get_socketaddr().ok());
            if policy::peer_allowed(&ctx.allowed_peers, remote.map(|a| a.ip())) {
                new_call(&ctx, tx, uri, headers).await
            } else {
                info!(
                    ?remote,
                    call_id = headers.get("Call-ID").unwrap_or(""),
                    "INVITE from outside sip.allowed_peers: 403"
                );
                reply(&mut tx, 403, vec![]).await
            }
        }
    }
}

fn capabilities() -> Vec<(&'static str, String)> {
    vec![("Allow", ALLOW.into()), ("Accept", ACCEPT.into())]
}

async fn reply(tx: &mut Transaction, code: u16, headers: Vec<(&'static str, String)>) {
    let headers = headers
        .into_iter()
        .map(|(name, value)| Header::Other(name.into(), value))
        .collect();
    if let Err(e) = tx.reply_with(StatusCode::from(code), headers, None).await {
        debug!(error = %e, code, "reply not sent");
    }
}

async fn in_dialog(ctx: &Ctx, tx: &mut Transaction) {
    let Some(mut dialog) = ctx.layer.match_dialog(tx) else {
        reply(tx, 481, vec![]).await;
        return;
    };
    if let Err(e) = dialog.handle(tx).await {
        debug!(error = %e, method = %tx.original.method, "in-dialog request");
    }
    // The stack leaves requests unanswered in an unconfirmed dialog (INFO before the 200, a
    // re-INVITE while the first is pending): RFC 3261 §14.2's answer, for all of them.
    if tx.last_response.is_none() && tx.original.method != Method::Ack {
        reply(tx, 500, vec![("Retry-After", "1".into())]).await;
    }
}

async fn new_call(ctx: &Ctx, mut tx: Transaction, request_uri: String, headers: Headers) {
    let from = match headers.get("From").map(NameAddr::parse) {
        Some(Ok(from)) => from,
        _ => {
            reply(&mut tx, 400, vec![]).await;
            return;
        }
    };
    let Some(connection) = tx.connection.clone() else {
        return;
    };
    let Some(remote) = connection
        .get_remote_addr()
        .and_then(|a| a.get_socketaddr().ok())
    else {
        reply(&mut tx, 500, vec![]).await;
        return;
    };
    let transport = match connection.transport() {
        rsipstack::sip::Transport::Tcp => Transport::Tcp,
        rsipstack::sip::Transport::Tls => Transport::Tls,
        _ => Transport::Udp,
    };
    let local = connection.get_addr().get_socketaddr().ok();
    let local_ip = ctx
        .public_address
        .or(local.map(|a| a.ip()))
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let contact = Uri {
        scheme: Some(Scheme::Sip),
        auth: None,
        host_with_port: SocketAddr::new(local_ip, local.map_or(5060, |a| a.port())).into(),
        params: match transport {
            Transport::Udp => vec![],
            Transport::Tcp => vec![Param::Transport(rsipstack::sip::Transport::Tcp)],
            Transport::Tls => vec![Param::Transport(rsipstack::sip::Transport::Tls)],
        },
        headers: vec![],
    };
    let (state_tx, state_rx) = ctx.layer.new_dialog_state_channel();
    let dialog = match ctx
        .layer
        .get_or_create_server_invite(&tx, state_tx, None, Some(contact))
    {
        Ok(dialog) => dialog,
        Err(e) => {
            warn!(error = %e, "no dialog for INVITE");
            reply(&mut tx, 500, vec![]).await;
            return;
        }
    };
    if transport == Transport::Udp {
        if let Some(target) = nat_target(&tx.original, &headers, remote) {
            debug!(%target, "caller behind NAT: in-dialog requests go to its source address");
            let contact = tx.original.contact_header().ok().cloned();
            Dialog::Invite(dialog.clone()).set_remote_target(target, contact);
        }
    }
    if let Err(e) = tx.send_trying().await {
        debug!(error = %e, "100 Trying not sent");
    }
    // Responses the transaction sends by itself (487 after a CANCEL) would otherwise carry
    // a fresh To tag, unlike the 180 before them: one early dialog, one tag (RFC 3261 §8.2.6.2).
    if let Ok(to) = tx.original.to_header() {
        let tagged = to.with_tag(Tag::new(dialog.id().local_tag));
        tx.original.headers.unique_push(tagged.into());
    }
    let answer = Arc::new(Mutex::new(None));
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    spawn_until(
        &ctx.cancel,
        watch_dialog(
            state_rx,
            events_tx,
            dialog.clone(),
            answer.clone(),
            ctx.layer.clone(),
        ),
    );
    let call = IncomingCall {
        call_id: headers.get("Call-ID").unwrap_or_default().to_string(),
        from,
        request_uri,
        body: (!tx.original.body.is_empty()).then(|| tx.original.body.clone()),
        headers,
        remote,
        transport,
        local_ip,
        dialog: SipDialog {
            dialog: dialog.clone(),
            answer,
        },
        events: events_rx,
    };
    info!(call_id = %call.call_id, from = %call.from, %remote, "incoming call");
    if let Err(e) = ctx.calls.try_send(call) {
        let call = match e {
            mpsc::error::TrySendError::Full(call) | mpsc::error::TrySendError::Closed(call) => call,
        };
        warn!(call_id = %call.call_id, "no one takes the call: 503");
        let _ = call.dialog.reject(503, None);
    }
    // Drives the INVITE transaction (our responses go out from here) until the ACK, the
    // CANCEL or the end of the transaction.
    let mut dialog = dialog;
    if let Err(e) = dialog.handle(&mut tx).await {
        debug!(error = %e, "INVITE transaction");
    }
}

/// Where requests inside the dialog must go when the caller is behind NAT, else `None`.
///
/// A phone behind NAT writes its private address in Via and Contact; its INVITE arrives from
/// the NAT's public binding. With a single Via (no proxy in the path) naming the Contact's host
/// and not the source, the Contact cannot be reached but the source can: requests follow the
/// source, as responses do (RFC 3581).
fn nat_target(req: &rsipstack::sip::Request, headers: &Headers, source: SocketAddr) -> Option<Uri> {
    if headers.tokens("Via").count() != 1 {
        return None;
    }
    let via_host = req
        .top_via_header()
        .ok()?
        .typed()
        .ok()?
        .uri
        .host_with_port
        .host;
    let mut target = req.typed_contact_headers().ok()?.into_iter().next()?.uri;
    let behind_nat = target.host_with_port.host == via_host
        && via_host != rsipstack::sip::Host::IpAddr(source.ip());
    behind_nat.then(|| {
        target.host_with_port = source.into();
        target
    })
}

/// Answers the requests of one dialog that need the gateway's state and reports what happens,
/// until the dialog ends; then forgets it.
async fn watch_dialog(
    mut states: DialogStateReceiver,
    events: mpsc::Sender<DialogEvent>,
    dialog: InviteDialog,
    answer: Arc<Mutex<Option<String>>>,
    layer: Arc<DialogLayer>,
) {
    let id = dialog.id();
    let mut acked = false;
    let notify = |event: DialogEvent| {
        if let Err(e) = events.try_send(event) {
            warn!(%id, error = %e, "dialog event not delivered");
        }
    };
    let terminal = loop {
        let Some(state) = states.recv().await else {
            break DialogEvent::Terminated {
                why: "dialog dropped".into(),
            };
        };
        match serve(state, &answer).await {
            Served::Confirmed if !acked => {
                acked = true;
                notify(DialogEvent::Acked);
            }
            Served::Event(event) => notify(event),
            Served::Ended(reason) => break terminal_event(reason),
            Served::Confirmed | Served::Nothing => {}
        }
    };
    layer.remove_dialog(&id);
    debug!(%id, event = ?terminal, "dialog ended");
    let _ = events.send(terminal).await;
}

/// What one dialog state meant, once [`serve`] has answered what it had to.
pub(super) enum Served {
    /// The dialog is (still) confirmed: the ACK of a 2xx arrived, or a request was handled.
    Confirmed,
    /// Something for the gateway: an INFO, a re-INVITE answered.
    Event(DialogEvent),
    /// The dialog has ended.
    Ended(TerminatedReason),
    Nothing,
}

/// Answers a request inside a dialog (either direction): INFO and OPTIONS 200, a re-INVITE
/// from `answer` (our current SDP), what the gateway does not do 405.
pub(super) async fn serve(state: DialogState, answer: &Mutex<Option<String>>) -> Served {
    match state {
        DialogState::Confirmed(..) => Served::Confirmed,
        DialogState::Info(_, req, handle) => {
            let _ = handle.reply(StatusCode::OK).await;
            let content_type = req.header_value("Content-Type");
            Served::Event(DialogEvent::Info {
                content_type,
                body: req.body,
            })
        }
        DialogState::Options(_, _, handle) => {
            let _ = handle
                .respond(StatusCode::OK, Some(capability_headers()), None)
                .await;
            Served::Nothing
        }
        DialogState::Updated(_, req, handle) if req.method == Method::Invite => {
            let (code, body, event) = reinvite(&req.body, answer);
            let headers = body
                .as_ref()
                .map(|_| vec![Header::ContentType(ACCEPT.into())]);
            let _ = handle
                .respond(
                    StatusCode::from(code),
                    headers,
                    body.map(String::into_bytes),
                )
                .await;
            event.map_or(Served::Nothing, Served::Event)
        }
        // UPDATE, REFER, MESSAGE, NOTIFY: not for this gateway.
        DialogState::Updated(_, _, handle)
        | DialogState::Refer(_, _, handle)
        | DialogState::Message(_, _, handle)
        | DialogState::Notify(_, _, handle)
        | DialogState::Publish(_, _, handle) => {
            let allow = vec![Header::Other("Allow".into(), ALLOW.into())];
            let _ = handle
                .respond(StatusCode::MethodNotAllowed, Some(allow), None)
                .await;
            Served::Nothing
        }
        DialogState::Terminated(_, reason) => Served::Ended(reason),
        _ => Served::Nothing,
    }
}

fn capability_headers() -> Vec<Header> {
    capabilities()
        .into_iter()
        .map(|(n, v)| Header::Other(n.into(), v))
        .collect()
}

fn terminal_event(reason: TerminatedReason) -> DialogEvent {
    let why = match reason {
        TerminatedReason::UacCancel => return DialogEvent::Cancelled,
        TerminatedReason::UacBye => return DialogEvent::Bye,
        TerminatedReason::Timeout => "no ACK for our 200 OK; BYE sent".to_string(),
        TerminatedReason::UasBye => "we sent BYE".to_string(),
        TerminatedReason::UasDecline => "we rejected the INVITE".to_string(),
        other => format!("{other:?}"),
    };
    DialogEvent::Terminated { why }
}

/// The answer to a re-INVITE: the status, the SDP to send, and what to tell the call.
fn reinvite(
    offer: &[u8],
    answer: &Mutex<Option<String>>,
) -> (u16, Option<String>, Option<DialogEvent>) {
    let mut current = lock(answer);
    let Some(previous) = current.clone() else {
        return (500, None, None);
    };
    // Without an offer the 200 carries ours (RFC 3261 §14.2); the ACK's answer is not used.
    if offer.is_empty() {
        return (200, Some(previous), None);
    }
    match SdpOffer::parse(offer).and_then(|offer| sdp::reanswer(&previous, &offer)) {
        Ok((text, negotiated)) => {
            *current = Some(text.clone());
            (200, Some(text), Some(DialogEvent::Renegotiated(negotiated)))
        }
        Err(e) => {
            info!(error = %e, "re-INVITE refused");
            (e.status_code(), None, None)
        }
    }
}

/// A Request-URI as the peer wrote it. rsipstack keeps the user part percent-encoded and
/// encodes it again when printing; decoding first makes the two cancel out.
fn uri_text(uri: &Uri) -> String {
    let mut uri = uri.clone();
    if let Some(auth) = uri.auth.as_mut() {
        auth.user = percent_decode(&auth.user);
        auth.password = auth.password.as_deref().map(percent_decode);
    }
    uri.to_string()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_uri_keeps_its_escapes_once() {
        let uri = Uri::try_from("sip:sips%3Auser%40example.com@example.net").unwrap();
        assert_eq!(uri_text(&uri), "sip:sips%3Auser%40example.com@example.net");
        let plain = Uri::try_from("sip:+4930123@gw.example.com:5060;user=phone").unwrap();
        assert_eq!(
            uri_text(&plain),
            "sip:+4930123@gw.example.com:5060;user=phone"
        );
    }

    #[test]
    fn reinvite_without_offer_repeats_our_sdp() {
        let answer = Mutex::new(Some("v=0\r\n".to_string()));
        assert_eq!(reinvite(b"", &answer), (200, Some("v=0\r\n".into()), None));
    }

    #[test]
    fn reinvite_before_any_answer_is_500() {
        assert_eq!(reinvite(b"v=0\r\n", &Mutex::new(None)).0, 500);
    }

    #[test]
    fn reinvite_with_garbage_is_400_and_keeps_the_answer() {
        let answer = Mutex::new(Some("ours".to_string()));
        assert_eq!(reinvite(b"not sdp", &answer).0, 400);
        assert_eq!(lock(&answer).as_deref(), Some("ours"));
    }

    fn invite(via: &str, contact: &str) -> (rsipstack::sip::Request, Headers) {
        let text = format!(
            "INVITE sip:room@192.0.2.1 SIP/2.0\r\nVia: {via}\r\nFrom: <sip:a@b>;tag=1\r\n\
             To: <sip:room@192.0.2.1>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContact: {contact}\r\n\
             Content-Length: 0\r\n\r\n"
        );
        let rsipstack::sip::SipMessage::Request(req) =
            rsipstack::sip::SipMessage::try_from(text.as_str()).unwrap()
        else {
            panic!()
        };
        let headers = req
            .headers
            .iter()
            .map(|h| (h.name().to_string(), h.value().to_string()))
            .collect();
        (req, headers)
    }

    const SOURCE: &str = "198.51.100.7:61000";

    #[test]
    fn natted_phone_is_reached_at_its_source() {
        let (req, h) = invite(
            "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1;rport",
            "<sip:alice@10.0.0.5:5060>",
        );
        let target = nat_target(&req, &h, SOURCE.parse().unwrap()).unwrap();
        assert_eq!(target.to_string(), "sip:alice@198.51.100.7:61000");
    }

    #[test]
    fn contact_is_kept_when_the_phone_is_not_natted_or_a_proxy_is_in_between() {
        let source: SocketAddr = SOURCE.parse().unwrap();
        // The phone's own address is where the INVITE came from.
        let (req, h) = invite(
            "SIP/2.0/UDP 198.51.100.7:61000;branch=z9hG4bK1",
            "<sip:alice@198.51.100.7:61000>",
        );
        assert_eq!(nat_target(&req, &h, source), None);
        // A proxy forwarded it: two Vias, the Contact is for the proxy to reach.
        let (req, h) = invite(
            "SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKp, SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1",
            "<sip:alice@10.0.0.5:5060>",
        );
        assert_eq!(nat_target(&req, &h, source), None);
        // A Contact elsewhere than the Via (a registrar-provided GRUU, another host).
        let (req, h) = invite(
            "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1",
            "<sip:alice@pbx.example.com>",
        );
        assert_eq!(nat_target(&req, &h, source), None);
    }

    #[test]
    fn terminations_map_to_events() {
        assert_eq!(
            terminal_event(TerminatedReason::UacCancel),
            DialogEvent::Cancelled
        );
        assert_eq!(terminal_event(TerminatedReason::UacBye), DialogEvent::Bye);
        assert!(matches!(
            terminal_event(TerminatedReason::Timeout),
            DialogEvent::Terminated { why } if why.contains("ACK")
        ));
    }
}
