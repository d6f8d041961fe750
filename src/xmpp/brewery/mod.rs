//! The brewery: one control connection per `xmpp.servers` entry that sits in the brewery room
//! with this instance's load, so Jicofo (or Prosody's invite module) can pick it for dial-out,
//! and takes the Rayo `<dial/>` requests it is sent. See `docs/dial-out.md`.
//!
//! Unlike a call's connection, it reconnects: after a lost stream, a failed login or a lost room
//! it tries again (1 s doubling to 30 s) and rejoins with the current stats. The decisions live
//! in the sans-IO [`core`]; the task here carries them out.

mod core;
mod stats;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;

use self::core::{Core, Dialed, Input, Output, Settled};
pub use self::stats::BreweryStats;
use super::address::{AddressError, RoomJid};
use super::connect::ConnectOptions;
use super::connection::{Connection, SendError};
use super::error::{ConnectError, Disconnected};
use super::inbound::Inbound;
use super::rayo::{self, RayoDial};
use super::stanzas::{ErrorCondition, ErrorReply, Reply};
use crate::config::{XmppServer, XmppSettings};

/// How many dials may wait for the caller of [`Brewery::start`] to take them.
const REQUEST_QUEUE: usize = 16;

/// Where the brewery connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreweryState {
    /// Logging in, or joining the room.
    Connecting,
    /// In the brewery room as `nick` (the bound resource): Jicofo can pick this instance.
    Joined { nick: String },
    /// Not in the room: why, and how long until the next attempt.
    Lost { reason: String, retry_in: Duration },
    /// [`Brewery::shutdown`] was called: out of the room, connection closed.
    Stopped,
}

/// The request is no longer answerable: it was answered already (timed out into
/// `internal-server-error`), or the brewery's stream was lost or shut down. The caller (Jicofo)
/// has been told no, or will time out, so the call must not go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the Rayo dial can no longer be answered (timed out, or the brewery connection ended)")]
pub struct RayoExpired;

/// A valid dial from the allowed JID. Answer it once with [`RayoRequest::accept`] (after the
/// call's occupant has joined the room) or [`RayoRequest::reject`]; without an answer within
/// `xmpp.muc_join_timeout_s` the brewery answers `internal-server-error`, and dropping it
/// unanswered answers `internal-server-error` at once.
#[derive(Debug)]
pub struct RayoRequest {
    /// Who sent it: `<brewery room>/focus` when Jicofo forwards it through the MUC.
    pub from: String,
    pub dial: RayoDial,
    /// The server it came through: its shard holds the room, so the call's connection must go
    /// there too (`ConnectOptions::per_call_on`).
    pub server: XmppServer,
    responder: Option<Responder>,
}

#[derive(Debug)]
struct Responder {
    key: u64,
    settled: Settled,
    answers: mpsc::UnboundedSender<(u64, Reply)>,
}

impl RayoRequest {
    /// Answers with `<ref xmlns="urn:xmpp:rayo:1" uri=…/>` (see [`rayo::ref_uri`]).
    pub fn accept(mut self, ref_uri: String) -> Result<(), RayoExpired> {
        self.answer(Reply::Result(Some(rayo::ref_element(&ref_uri))))
    }

    /// Answers with an IQ error.
    pub fn reject(mut self, condition: ErrorCondition, text: &str) -> Result<(), RayoExpired> {
        self.answer(Reply::Error(ErrorReply::new(condition).with_text(text)))
    }

    fn answer(&mut self, reply: Reply) -> Result<(), RayoExpired> {
        let responder = self.responder.take().ok_or(RayoExpired)?;
        if !responder.settled.claim() {
            return Err(RayoExpired);
        }
        responder
            .answers
            .send((responder.key, reply))
            .map_err(|_| RayoExpired)
    }
}

impl Drop for RayoRequest {
    fn drop(&mut self) {
        if self.responder.is_some() {
            let error = ErrorReply::new(ErrorCondition::InternalServerError)
                .with_text("the dial was dropped unanswered");
            let _ = self.answer(Reply::Error(error));
        }
    }
}

/// The control connection to one XMPP server. Dropping it stops it too (without waiting).
#[derive(Debug)]
pub struct Brewery {
    server_id: String,
    state: watch::Receiver<BreweryState>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Brewery {
    /// Starts logging in and joining in the background; returns at once. Call inside a tokio
    /// runtime. Fails only on settings that can never work: a brewery room, login JID or
    /// `xmpp.allowed_jid` that is not a valid address.
    pub fn start(
        settings: &XmppSettings,
        server: &XmppServer,
        stats: watch::Receiver<BreweryStats>,
    ) -> Result<(Brewery, mpsc::Receiver<RayoRequest>), AddressError> {
        let room = RoomJid::parse(&settings.brewery_room())?;
        let allowed = match &settings.allowed_jid {
            // Only the bare JID counts (jigasi's ALLOWED_JID): a resource given is ignored.
            Some(jid) => parse_jid(jid)?.to_bare(),
            None => room.bare().clone(),
        };
        parse_jid(&settings.login_jid())?;
        let opts = ConnectOptions::brewery(settings, server);
        let core = Core::new(
            room,
            allowed,
            settings.region.clone(),
            settings.muc_join_timeout,
            stats.borrow().clone(),
        );
        Ok(spawn(Dialer(opts), core, server.clone(), stats))
    }

    /// The `id` of the `xmpp.servers` entry.
    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    pub fn state(&self) -> watch::Receiver<BreweryState> {
        self.state.clone()
    }

    /// Answers the dials still waiting (`service-unavailable`), leaves the room, closes the
    /// stream (briefly waiting for the server) and stops.
    pub async fn shutdown(mut self) {
        self.stop.cancel();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Brewery {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

fn parse_jid(text: &str) -> Result<Jid, AddressError> {
    Jid::new(text).map_err(|e| AddressError::Invalid {
        text: text.to_string(),
        why: e.to_string(),
    })
}

fn spawn<C: Connector>(
    connector: C,
    core: Core,
    server: XmppServer,
    stats: watch::Receiver<BreweryStats>,
) -> (Brewery, mpsc::Receiver<RayoRequest>) {
    let (requests, request_rx) = mpsc::channel(REQUEST_QUEUE);
    let (answers_tx, answers) = mpsc::unbounded_channel();
    let (state_tx, state) = watch::channel(BreweryState::Connecting);
    let stop = CancellationToken::new();
    let span = tracing::info_span!("brewery", server = %server.id);
    let driver = Driver {
        connector,
        core,
        server: server.clone(),
        stats,
        requests,
        answers_tx,
        answers,
        state: state_tx,
        link: None,
        connecting: None,
    };
    let task = tokio::spawn(driver.run(stop.clone()).instrument(span));
    let brewery = Brewery {
        server_id: server.id,
        state,
        stop,
        task,
    };
    (brewery, request_rx)
}

/// What the driver needs of a logged-in connection: the real [`Connection`], or a fake in tests.
trait Link: Send + 'static {
    fn jid(&self) -> String;
    fn join(&self, room: &RoomJid, nick: &str, presence: Vec<Element>) -> Result<(), SendError>;
    fn publish(&self, room: &RoomJid, presence: Vec<Element>) -> Result<(), SendError>;
    fn reply(&self, to: &str, id: &str, reply: Reply) -> Result<(), SendError>;
    /// Cancel-safe.
    fn next(&mut self) -> impl Future<Output = Result<Inbound, Disconnected>> + Send;
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// Makes logged-in connections.
trait Connector: Send + 'static {
    type Link: Link;
    fn connect(&self) -> impl Future<Output = Result<Self::Link, ConnectError>> + Send + 'static;
}

impl Link for Connection {
    fn jid(&self) -> String {
        Connection::jid(self).to_string()
    }

    fn join(&self, room: &RoomJid, nick: &str, presence: Vec<Element>) -> Result<(), SendError> {
        self.join_plain(room, nick, presence)
    }

    fn publish(&self, room: &RoomJid, presence: Vec<Element>) -> Result<(), SendError> {
        self.set_plain_presence(room, presence)
    }

    fn reply(&self, to: &str, id: &str, reply: Reply) -> Result<(), SendError> {
        Connection::reply(self, to, id, reply)
    }

    fn next(&mut self) -> impl Future<Output = Result<Inbound, Disconnected>> + Send {
        Connection::next(self)
    }

    fn close(self) -> impl Future<Output = ()> + Send {
        Connection::close(self)
    }
}

struct Dialer(ConnectOptions);

impl Connector for Dialer {
    type Link = Connection;

    fn connect(&self) -> impl Future<Output = Result<Connection, ConnectError>> + Send + 'static {
        let opts = self.0.clone();
        async move { Connection::connect(&opts).await }
    }
}

type Connecting<L> = Pin<Box<dyn Future<Output = Result<L, ConnectError>> + Send>>;

struct Driver<C: Connector> {
    connector: C,
    core: Core,
    server: XmppServer,
    stats: watch::Receiver<BreweryStats>,
    requests: mpsc::Sender<RayoRequest>,
    answers_tx: mpsc::UnboundedSender<(u64, Reply)>,
    answers: mpsc::UnboundedReceiver<(u64, Reply)>,
    state: watch::Sender<BreweryState>,
    link: Option<C::Link>,
    connecting: Option<Connecting<C::Link>>,
}

impl<C: Connector> Driver<C> {
    async fn run(mut self, stop: CancellationToken) {
        let mut stats_open = true;
        loop {
            self.carry_out();
            let deadline = self.core.poll_timeout();
            // Stats before the stream's events: a dial read after draining began must see it.
            let input = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                changed = self.stats.changed(), if stats_open => match changed {
                    Ok(()) => Input::Stats(self.stats.borrow_and_update().clone()),
                    // Nobody will change them any more: the last ones stay.
                    Err(_) => {
                        stats_open = false;
                        continue;
                    }
                },
                Some((key, reply)) = self.answers.recv() => Input::Answer { key, reply },
                result = connected(&mut self.connecting) => {
                    self.connecting = None;
                    match result {
                        Ok(link) => {
                            let jid = link.jid();
                            self.link = Some(link);
                            Input::Connected { jid }
                        }
                        Err(error) => Input::ConnectFailed(error),
                    }
                }
                event = next_event(&mut self.link) => match event {
                    Ok(inbound) => Input::Inbound(inbound),
                    Err(reason) => {
                        self.link = None;
                        Input::Disconnected(reason)
                    }
                },
                _ = sleep_until(deadline) => Input::Timeout,
            };
            self.core.handle_input(Instant::now(), input);
        }
        self.core.stop();
        self.carry_out();
        if let Some(link) = self.link.take() {
            link.close().await;
        }
    }

    /// Carries out what the core decided.
    fn carry_out(&mut self) {
        while let Some(output) = self.core.poll_output() {
            let sent = match output {
                Output::Connect => {
                    self.connecting = Some(Box::pin(self.connector.connect()));
                    Ok(())
                }
                Output::Join {
                    room,
                    nick,
                    presence,
                } => self.with_link(|l| l.join(&room, &nick, presence)),
                Output::Publish { room, presence } => {
                    self.with_link(|l| l.publish(&room, presence))
                }
                Output::Reply { to, id, reply } => self.with_link(|l| l.reply(&to, &id, reply)),
                Output::Request(dialed) => {
                    self.hand_out(dialed);
                    Ok(())
                }
                Output::State(state) => {
                    self.state.send_replace(state);
                    Ok(())
                }
            };
            // A closed stream is reported by next(); a bad address only concerns that stanza.
            if let Err(error) = sent {
                tracing::debug!(%error, "brewery: not sent");
            }
        }
    }

    fn with_link(
        &self,
        f: impl FnOnce(&C::Link) -> Result<(), SendError>,
    ) -> Result<(), SendError> {
        self.link.as_ref().map_or(Err(SendError::Closed), f)
    }

    fn hand_out(&self, dialed: Dialed) {
        let request = RayoRequest {
            from: dialed.from,
            dial: dialed.dial,
            server: self.server.clone(),
            responder: Some(Responder {
                key: dialed.key,
                settled: dialed.settled,
                answers: self.answers_tx.clone(),
            }),
        };
        if let Err(e) = self.requests.try_send(request) {
            tracing::warn!("brewery: no taker for a dial ({e})");
            let _ = e.into_inner().reject(
                ErrorCondition::ServiceUnavailable,
                "the gateway cannot take calls now",
            );
        }
    }
}

async fn connected<L>(connecting: &mut Option<Connecting<L>>) -> Result<L, ConnectError> {
    match connecting {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

async fn next_event<L: Link>(link: &mut Option<L>) -> Result<Inbound, Disconnected> {
    match link {
        Some(link) => link.next().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
