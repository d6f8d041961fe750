//! One logged-in stream, driven by a tokio task around the sans-IO [`Session`].
//!
//! Deliberately below tokio-xmpp's `Client`/`StanzaStream`: those reconnect by themselves (with
//! XEP-0198 resumption when they can), which a call must not have. A call's room occupancy and
//! Jingle session do not survive a new stream, and the only way to stop `StanzaStream` from
//! reconnecting is to refuse it a new connection, which panics its worker task (or, if the
//! request is left pending, leaks it). So the task here reads and writes the XML stream itself,
//! and a lost stream ends the connection with [`Disconnected`] at once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};
use tokio_xmpp::xmlstream::{
    FallibleStreamElement, ReadError, StreamElementError, XmppStreamElement,
};
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza::Stanza;

use super::address::{AddressError, RoomJid};
use super::connect::{login, ConnectOptions, Stream};
use super::error::{ConnectError, Disconnected, IqError};
use super::inbound::Inbound;
use super::session::{IqOutcome, Output, Session};
use super::stanzas::{conference_request, IqKind, JoinRequest, Reply};

/// How long closing waits for the server to close its side.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// A command could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error(transparent)]
    Address(#[from] AddressError),
    #[error("the XMPP connection has ended")]
    Closed,
}

#[derive(Debug)]
/// Boxed payloads keep the channels small: a tokio channel allocates its slots in blocks of 32, and
/// inline actions and events made those blocks about 6 KB each, per call.
enum Command {
    Session(Box<Action>),
    Close(oneshot::Sender<()>),
}

/// What the session is asked to do.
#[derive(Debug)]
enum Action {
    Join(JoinRequest),
    JoinPlain {
        room: RoomJid,
        nick: String,
        children: Vec<Element>,
    },
    SetPlainPresence {
        room: RoomJid,
        children: Vec<Element>,
    },
    Status(Option<String>),
    AudioMuted(bool),
    Leave(RoomJid, Option<String>),
    Iq {
        to: Option<Jid>,
        kind: IqKind,
        payload: Element,
        done: oneshot::Sender<IqOutcome>,
    },
    Reply {
        to: Jid,
        id: String,
        reply: Reply,
    },
}

#[derive(Debug)]
enum Event {
    Inbound(Box<Inbound>),
    Ended(Disconnected),
}

/// A logged-in XMPP stream for one call. Commands are queued without waiting; events come from
/// [`Connection::next`]. Dropping it closes the stream in the background.
#[derive(Debug)]
pub struct Connection {
    jid: String,
    focus_jid: String,
    iq_timeout: Duration,
    commands: mpsc::UnboundedSender<Command>,
    events: mpsc::UnboundedReceiver<Event>,
    ended: Option<Disconnected>,
    task: JoinHandle<()>,
}

impl Connection {
    /// Connects and logs in now. Fails, without retrying, if the server is unreachable, refuses
    /// the login or does not finish it within `opts.timeouts.login`.
    pub async fn connect(opts: &ConnectOptions) -> Result<Connection, ConnectError> {
        Self::connect_notifying(opts, None).await
    }

    /// Like [`Connection::connect`]; `on_end` is notified when the stream ends.
    pub(super) async fn connect_notifying(
        opts: &ConnectOptions,
        on_end: Option<Arc<Notify>>,
    ) -> Result<Connection, ConnectError> {
        let (jid, stream) = login(opts).await?;
        tracing::debug!(jid = %jid, server = %opts.server(), "xmpp logged in");
        let session = Session::new(jid.clone(), &opts.focus_nick);
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (event_tx, events) = mpsc::unbounded_channel();
        let driver = Driver {
            stream,
            session,
            commands: command_rx,
            events: event_tx,
            write_timeout: opts.timeouts.keepalive_answer,
        };
        let task = tokio::spawn(async move {
            driver.run().await;
            if let Some(notify) = on_end {
                notify.notify_one();
            }
        });
        Ok(Connection {
            jid: jid.to_string(),
            focus_jid: opts.focus_jid.clone(),
            iq_timeout: opts.timeouts.iq,
            commands,
            events,
            ended: None,
            task,
        })
    }

    /// The full JID the server bound for this stream.
    pub fn jid(&self) -> &str {
        &self.jid
    }

    /// Whether the stream has ended (lost or closed). `next` then returns why.
    pub fn is_closed(&self) -> bool {
        self.commands.is_closed()
    }

    fn command(&self, action: Action) -> Result<(), SendError> {
        self.commands
            .send(Command::Session(Box::new(action)))
            .map_err(|_| SendError::Closed)
    }

    /// Sends the join presence; [`Inbound::SelfJoined`] or [`Inbound::JoinFailed`] follows.
    pub fn join(&self, request: JoinRequest) -> Result<(), SendError> {
        request.room.occupant(&request.nick)?;
        self.command(Action::Join(request))
    }

    /// Joins `room` as `nick` with a presence of `children` (and our caps) rather than a call's:
    /// the brewery's. [`Inbound::SelfJoined`] or [`Inbound::JoinFailed`] follows.
    pub(super) fn join_plain(
        &self,
        room: &RoomJid,
        nick: &str,
        children: Vec<Element>,
    ) -> Result<(), SendError> {
        room.occupant(nick)?;
        self.command(Action::JoinPlain {
            room: room.clone(),
            nick: nick.to_string(),
            children,
        })
    }

    /// Replaces the children of our presence in a room joined with `join_plain`.
    pub(super) fn set_plain_presence(
        &self,
        room: &RoomJid,
        children: Vec<Element>,
    ) -> Result<(), SendError> {
        self.command(Action::SetPlainPresence {
            room: room.clone(),
            children,
        })
    }

    /// Sets the `<status>` of our room presence (`Initializing Call`, `Connected`, …); every
    /// other child of the join presence is sent again with it.
    pub fn set_status(&self, status: Option<&str>) -> Result<(), SendError> {
        self.command(Action::Status(status.map(str::to_string)))
    }

    /// Sets `<audiomuted>` in our room presence.
    pub fn set_audio_muted(&self, muted: bool) -> Result<(), SendError> {
        self.command(Action::AudioMuted(muted))
    }

    pub fn leave(&self, room: &RoomJid, status: Option<&str>) -> Result<(), SendError> {
        self.command(Action::Leave(room.clone(), status.map(str::to_string)))
    }

    /// Sends an IQ request; the returned future gives the answer's payload, or why there is none
    /// (error answer, no answer within the IQ timeout, connection lost).
    pub fn send_iq(
        &self,
        to: &str,
        kind: IqKind,
        payload: Element,
    ) -> Result<PendingIq, SendError> {
        let to = Jid::new(to).map_err(|e| AddressError::Invalid {
            text: to.to_string(),
            why: e.to_string(),
        })?;
        let (done, answer) = oneshot::channel();
        self.command(Action::Iq {
            to: Some(to),
            kind,
            payload,
            done,
        })?;
        Ok(PendingIq {
            answer,
            deadline: Instant::now() + self.iq_timeout,
            timer: None,
            timeout: self.iq_timeout,
        })
    }

    /// Asks the focus to create the conference of `room` (`<conference/>` to `focus.<domain>`).
    pub fn request_conference(&self, room: &RoomJid) -> Result<PendingIq, SendError> {
        let focus = self.focus_jid.clone();
        self.send_iq(&focus, IqKind::Set, conference_request(room))
    }

    /// Answers an IQ request that came as [`Inbound::IqSet`] or [`Inbound::IqGet`].
    pub fn reply(&self, to: &str, id: &str, reply: Reply) -> Result<(), SendError> {
        let to = Jid::new(to).map_err(|e| AddressError::Invalid {
            text: to.to_string(),
            why: e.to_string(),
        })?;
        self.command(Action::Reply {
            to,
            id: id.to_string(),
            reply,
        })
    }

    /// The next event for the call, or why the stream ended (then always that again).
    /// Cancel-safe: usable in `select!`.
    pub async fn next(&mut self) -> Result<Inbound, Disconnected> {
        if let Some(reason) = &self.ended {
            return Err(reason.clone());
        }
        let reason = match self.events.recv().await {
            Some(Event::Inbound(event)) => return Ok(*event),
            Some(Event::Ended(reason)) => reason,
            None => Disconnected::Io("the connection task stopped".into()),
        };
        self.ended = Some(reason.clone());
        Err(reason)
    }

    /// Leaves every room, closes the stream and waits (briefly) for the server to close its side.
    pub async fn close(self) {
        let (done, closed) = oneshot::channel();
        if self.commands.send(Command::Close(done)).is_ok() {
            let _ = closed.await;
        }
        let _ = self.task.await;
    }
}

/// The answer to an IQ request of ours. The IQ timeout runs from the request.
#[derive(Debug)]
pub struct PendingIq {
    answer: oneshot::Receiver<IqOutcome>,
    deadline: Instant,
    /// Made on first poll, so that requests can be made outside a tokio runtime.
    timer: Option<Pin<Box<Sleep>>>,
    timeout: Duration,
}

impl Future for PendingIq {
    type Output = Result<Option<Element>, IqError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if let Poll::Ready(answer) = Pin::new(&mut self.answer).poll(cx) {
            return Poll::Ready(answer.unwrap_or(Err(IqError::Disconnected)));
        }
        let deadline = self.deadline;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(IqError::Timeout(self.timeout)));
        }
        Poll::Pending
    }
}

struct Driver {
    stream: Stream,
    session: Session,
    commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<Event>,
    write_timeout: Duration,
}

impl Driver {
    async fn run(mut self) {
        let reason = loop {
            if let Err(reason) = self.flush().await {
                break reason;
            }
            tokio::select! {
                item = self.stream.next() => {
                    if let Err(reason) = self.received(item) {
                        break reason;
                    }
                }
                command = self.commands.recv() => match command {
                    Some(Command::Close(done)) => {
                        self.close().await;
                        let _ = done.send(());
                        break Disconnected::Closed;
                    }
                    // The Connection was dropped without close().
                    None => {
                        self.close().await;
                        break Disconnected::Closed;
                    }
                    Some(Command::Session(action)) => self.apply(*action),
                },
            }
        };
        tracing::debug!(jid = %self.session_jid(), %reason, "xmpp stream ended");
        // Stop taking commands before announcing the end, so is_closed() is true by then.
        self.commands.close();
        let _ = self.events.send(Event::Ended(reason));
    }

    fn session_jid(&self) -> String {
        self.session.jid().to_string()
    }

    fn received(
        &mut self,
        item: Option<Result<FallibleStreamElement, ReadError>>,
    ) -> Result<(), Disconnected> {
        match item {
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::Stanza(stanza)))) => {
                if tracing::enabled!(tracing::Level::TRACE) {
                    let xml = String::from(&Element::from(clone_stanza(&stanza)));
                    tracing::trace!(jid = %self.session_jid(), %xml, "xmpp received");
                }
                self.session.handle_stanza(stanza);
                Ok(())
            }
            Some(Ok(FallibleStreamElement::Ok(XmppStreamElement::StreamError(e)))) => {
                Err(Disconnected::StreamError(e.to_string()))
            }
            // Nonzas (SASL, STARTTLS, stream management) mean nothing once logged in.
            Some(Ok(FallibleStreamElement::Ok(_))) => Ok(()),
            Some(Ok(FallibleStreamElement::Err(StreamElementError::InvalidStanza {
                name,
                header,
                error,
                ..
            }))) => {
                tracing::debug!(%name, %error, id = ?header.id, from = ?header.from,
                    "xmpp stanza does not parse");
                let is_request = matches!(header.type_.as_deref(), Some("get" | "set"));
                if name.to_string() == "iq" && is_request {
                    self.session
                        .invalid_request(header.from.as_deref(), header.id.as_deref());
                }
                Ok(())
            }
            Some(Ok(FallibleStreamElement::Err(e))) => {
                tracing::debug!(error = %e, "xmpp element does not parse");
                Ok(())
            }
            Some(Err(ReadError::SoftTimeout)) => {
                self.session.keepalive();
                Ok(())
            }
            Some(Err(ReadError::HardError(e))) if e.kind() == std::io::ErrorKind::TimedOut => {
                Err(Disconnected::KeepAliveTimeout)
            }
            Some(Err(ReadError::HardError(e))) => Err(Disconnected::Io(e.to_string())),
            // XML that is not well-formed ends an XMPP stream.
            Some(Err(ReadError::ParseError(e))) => Err(Disconnected::Io(e.to_string())),
            Some(Err(ReadError::StreamFooterReceived)) | None => Err(Disconnected::ClosedByServer),
        }
    }

    fn apply(&mut self, action: Action) {
        match action {
            // The nick was checked by Connection::join.
            Action::Join(request) => {
                let _ = self.session.join(request);
            }
            // The nick was checked by Connection::join_plain.
            Action::JoinPlain {
                room,
                nick,
                children,
            } => {
                let _ = self.session.join_plain(room, nick, children);
            }
            Action::SetPlainPresence { room, children } => {
                self.session.set_plain_presence(&room, children)
            }
            Action::Status(status) => self.session.set_status(status),
            Action::AudioMuted(muted) => self.session.set_audio_muted(muted),
            Action::Leave(room, status) => self.session.leave(&room, status.as_deref()),
            Action::Iq {
                to,
                kind,
                payload,
                done,
            } => self.session.send_iq(to, kind, payload, done),
            Action::Reply { to, id, reply } => self.session.reply(to, id, reply),
        }
    }

    /// Sends what the session queued and hands its events to the call.
    async fn flush(&mut self) -> Result<(), Disconnected> {
        let mut stanzas = Vec::new();
        while let Some(output) = self.session.poll_output() {
            match output {
                Output::Deliver(event) => {
                    // The owner may be gone; the stream still ends cleanly through its commands.
                    let _ = self.events.send(Event::Inbound(Box::new(event)));
                }
                Output::Send(stanza) => stanzas.push(stanza),
            }
        }
        if stanzas.is_empty() {
            return Ok(());
        }
        let stream = &mut self.stream;
        let write = async move {
            for stanza in &stanzas {
                stream.feed(stanza).await?;
            }
            <Stream as SinkExt<&Element>>::flush(stream).await
        };
        match tokio::time::timeout(self.write_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Disconnected::Io(e.to_string())),
            Err(_) => Err(Disconnected::Io("writing to the server stalled".into())),
        }
    }

    /// Leaves the rooms, sends the stream footer and waits for the server's.
    async fn close(&mut self) {
        self.session.leave_all();
        if self.flush().await.is_err() {
            return;
        }
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            if self.stream.shutdown().await.is_err() {
                return;
            }
            while let Some(item) = self.stream.next().await {
                if let Err(ReadError::StreamFooterReceived | ReadError::HardError(_)) = item {
                    break;
                }
            }
        })
        .await;
    }
}

/// Stanzas are not `Clone`; this is only for trace logs.
fn clone_stanza(stanza: &Stanza) -> Stanza {
    match stanza {
        Stanza::Iq(iq) => Stanza::Iq(iq.clone()),
        Stanza::Message(m) => Stanza::Message(m.clone()),
        Stanza::Presence(p) => Stanza::Presence(p.clone()),
    }
}
