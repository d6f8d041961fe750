//! Jicofo's part, on a thread of its own: one client connection as `focus@auth.<domain>/focus`
//! for the brewery and every room (Jicofo also has one), and the `focus.<domain>` component that
//! answers the gateway's `<conference/>` once the focus sits in the room. Every jigasi-like
//! occupant gets a session-initiate; its transport-info, session-accept and session-terminate go
//! to the media thread that owns the session.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use futures::StreamExt;
use rand::distr::{Alphanumeric, SampleString};
use str0m::IceCreds;
use tokio::sync::mpsc;
use tokio_xmpp::connect::DnsConfig;
use tokio_xmpp::minidom::rxml::NcName;
use tokio_xmpp::parsers::iq::Iq;
use tokio_xmpp::parsers::jid::Jid;
use tokio_xmpp::parsers::minidom::Element;
use tokio_xmpp::parsers::presence::{Presence, Type as PresenceType};
use tokio_xmpp::parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};
use tokio_xmpp::xmlstream::Timeouts;
use tokio_xmpp::{Client, Event, Stanza};

use super::bridge::{Cmd, Mailbox};
use super::component::ComponentStream;
use super::stanzas::{self, OfferSource, FOCUS_NICK};
use super::{join, thread_cpu, ConferenceOptions, EndedBy, SessionReport, Shared};

/// Login, component handshake and brewery join together.
const START_TIMEOUT: Duration = Duration::from_secs(20);

pub struct MediaTarget {
    pub tx: Mailbox,
    pub local: SocketAddr,
}

pub struct FocusHandle {
    stop: mpsc::UnboundedSender<()>,
    thread: std::thread::JoinHandle<()>,
    shared: Arc<Shared>,
}

impl FocusHandle {
    pub fn stop(self) {
        let _ = self.stop.send(());
        join("xmpp", self.thread, &self.shared);
    }
}

/// Starts the XMPP thread; returns once the focus is logged in, the component connected and
/// the brewery joined (or failed to: that is only recorded, as the gateway may not need it).
pub fn spawn(
    opts: ConferenceOptions,
    shared: Arc<Shared>,
    targets: Vec<MediaTarget>,
    fingerprint: String,
) -> Result<FocusHandle> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::unbounded_channel();
    let thread_shared = shared.clone();
    let thread = std::thread::Builder::new()
        .name("focus".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(anyhow!("runtime: {e}")));
                    return;
                }
            };
            rt.block_on(async move {
                let focus_full = format!("{0}@auth.{1}/{0}", opts.focus_user, opts.domain);
                let jid = match Jid::new(&focus_full) {
                    Ok(j) => j,
                    Err(e) => {
                        let _ = ready_tx.send(Err(anyhow!("focus JID {focus_full:?}: {e}")));
                        return;
                    }
                };
                let component_jid = format!("focus.{}", opts.domain);
                let component = ComponentStream::connect(
                    SocketAddr::new(opts.xmpp_host, opts.component_port),
                    &component_jid,
                    &opts.component_secret,
                );
                let component = match component.await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let client = Client::new_plaintext(
                    jid,
                    opts.focus_password.clone(),
                    DnsConfig::addr(&SocketAddr::new(opts.xmpp_host, opts.c2s_port).to_string()),
                    Timeouts::tight(),
                );
                let focus =
                    Focus::new(opts, thread_shared, targets, fingerprint, client, component);
                focus.run(ready_tx, stop_rx).await;
            });
        })?;
    let handle = FocusHandle {
        stop: stop_tx,
        thread,
        shared,
    };
    match ready_rx.recv_timeout(START_TIMEOUT) {
        Ok(Ok(())) => Ok(handle),
        Ok(Err(e)) => {
            handle.stop();
            Err(e)
        }
        Err(_) => {
            handle.stop();
            Err(anyhow!("the focus was not ready within {START_TIMEOUT:?}"))
        }
    }
}

#[derive(Default)]
struct Room {
    joined: bool,
    /// `<conference/>` requests waiting for the join: (from, id).
    waiting: Vec<(String, String)>,
    /// Occupants other than the focus.
    occupants: HashSet<String>,
    /// Jigasi-like occupants to invite once joined.
    to_invite: HashSet<String>,
    /// Live sessions by occupant nick.
    sessions: HashMap<String, String>,
    /// The emulated speakers' sources and the bridge's own, the same for every session here.
    sources: Vec<OfferSource>,
}

struct Sig {
    room: String,
    nick: String,
    worker: usize,
}

struct Focus {
    opts: ConferenceOptions,
    shared: Arc<Shared>,
    targets: Vec<MediaTarget>,
    fingerprint: String,
    focus_full: String,
    component_jid: String,
    brewery: Option<String>,
    client: Client,
    component: ComponentStream,
    component_alive: bool,
    rooms: HashMap<String, Room>,
    sessions: HashMap<String, Sig>,
    /// Our session-initiates waiting for their answer: IQ id → sid.
    pending: HashMap<String, String>,
    next_id: u64,
    next_worker: usize,
    online: bool,
    brewery_done: bool,
}

impl Focus {
    fn new(
        opts: ConferenceOptions,
        shared: Arc<Shared>,
        targets: Vec<MediaTarget>,
        fingerprint: String,
        client: Client,
        component: ComponentStream,
    ) -> Focus {
        let focus_full = format!("{0}@auth.{1}/{0}", opts.focus_user, opts.domain);
        Focus {
            component_jid: format!("focus.{}", opts.domain),
            brewery: opts.brewery.as_ref().map(|b| b.to_ascii_lowercase()),
            opts,
            shared,
            targets,
            fingerprint,
            focus_full,
            client,
            component,
            component_alive: true,
            rooms: HashMap::new(),
            sessions: HashMap::new(),
            pending: HashMap::new(),
            next_id: 0,
            next_worker: 0,
            online: false,
            brewery_done: false,
        }
    }

    async fn run(
        mut self,
        ready: std::sync::mpsc::Sender<Result<()>>,
        mut stop: mpsc::UnboundedReceiver<()>,
    ) {
        let mut ready = Some(ready);
        let mut cpu = tokio::time::interval(Duration::from_millis(250));
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if ready.is_some() && self.online && self.brewery_done {
                if let Some(r) = ready.take() {
                    let _ = r.send(Ok(()));
                }
            }
            tokio::select! {
                ev = self.client.next() => match ev {
                    Some(Event::Online { .. }) => self.on_online().await,
                    Some(Event::Disconnected(e)) => {
                        self.online = false;
                        self.shared.error(format!("focus connection lost: {e}"));
                        self.lost_rooms();
                        if let Some(r) = ready.take() {
                            let _ = r.send(Err(anyhow!("focus login failed: {e}")));
                            return;
                        }
                    }
                    Some(Event::Stanza(s)) => self.on_stanza(s).await,
                    None => {
                        self.shared.error("focus client ended".into());
                        break;
                    }
                },
                el = self.component.next(), if self.component_alive => match el {
                    Ok(Some(el)) => self.on_component(el).await,
                    Err(e) => {
                        self.component_alive = false;
                        self.shared.error(format!("focus component stream failed: {e:#}"));
                    }
                    Ok(None) => {
                        self.component_alive = false;
                        self.shared.error("focus component stream closed".into());
                    }
                },
                _ = stop.recv() => break,
                _ = cpu.tick() => {
                    let t = thread_cpu();
                    self.shared.update(|s| s.xmpp_cpu = t);
                    if ready.is_some() && tokio::time::Instant::now() >= deadline {
                        if let Some(r) = ready.take() {
                            let _ = r.send(Err(anyhow!(
                                "focus not ready: online={} brewery={}", self.online, self.brewery_done
                            )));
                        }
                        return;
                    }
                }
            }
        }
        self.shutdown().await;
    }

    /// The connection dropped: Prosody took the focus out of every room, which ends its
    /// sessions (as for a restarted Jicofo); after the reconnect it rejoins the rooms and
    /// invites their gateways again.
    fn lost_rooms(&mut self) {
        let sids: Vec<String> = self.sessions.keys().cloned().collect();
        for sid in sids {
            self.end(
                &sid,
                EndedBy::Failed("the focus lost its XMPP connection".into()),
            );
        }
        for room in self.rooms.values_mut() {
            room.joined = false;
            room.occupants.clear();
            room.to_invite.clear();
            room.sessions.clear();
        }
        // Sent before the loss, never answered.
        self.pending.clear();
    }

    async fn on_online(&mut self) {
        self.online = true;
        self.send(Stanza::Presence(Presence::available())).await;
        match self.brewery.clone() {
            Some(b) => self.join(&b).await,
            None => self.brewery_done = true,
        }
        // After a reconnect: back into every room (Prosody dropped us from them).
        let rooms: Vec<String> = self.rooms.keys().cloned().collect();
        for r in rooms {
            self.join(&r).await;
        }
    }

    async fn join(&mut self, room: &str) {
        let Ok(to) = Jid::new(&format!("{room}/{FOCUS_NICK}")) else {
            return self
                .shared
                .error(format!("cannot join {room:?}: not a room JID"));
        };
        let p = Presence::available()
            .with_to(to)
            .with_payloads(vec![stanzas::muc_join()]);
        self.send(Stanza::Presence(p)).await;
    }

    async fn send(&mut self, s: Stanza) {
        if let Err(e) = self.client.send_stanza(s).await {
            self.shared.error(format!("focus send: {e}"));
        }
    }

    async fn send_component(&mut self, el: Element) {
        if !self.component_alive {
            return;
        }
        if let Err(e) = self.component.send(&el).await {
            self.component_alive = false;
            self.shared.error(format!("focus component send: {e:#}"));
        }
    }

    async fn on_stanza(&mut self, s: Stanza) {
        match s {
            Stanza::Presence(p) => self.on_presence(p).await,
            Stanza::Iq(iq) => self.on_iq(iq).await,
            Stanza::Message(_) => {}
        }
    }

    async fn on_presence(&mut self, p: Presence) {
        let Some(from) = p.from.as_ref().map(|j| j.to_string()) else {
            return;
        };
        let kind = match p.type_ {
            PresenceType::None => None,
            PresenceType::Unavailable => Some("unavailable"),
            PresenceType::Error => Some("error"),
            _ => return,
        };
        let Some(m) = stanzas::muc_presence(&from, kind, &p.payloads) else {
            return;
        };
        if Some(&m.room) == self.brewery.as_ref() {
            if m.is_self || m.nick == FOCUS_NICK {
                if let Some(e) = &m.error {
                    self.shared.error(format!("brewery join refused: {e}"));
                }
                self.brewery_done = true;
            }
            return;
        }
        let Some(room) = self.rooms.get_mut(&m.room) else {
            return;
        };
        if m.nick == FOCUS_NICK || m.is_self {
            if let Some(e) = m.error {
                self.shared
                    .error(format!("joining {} refused: {e}", m.room));
                // Forgotten, so that a later request tries again.
                let waiting = std::mem::take(&mut room.waiting);
                self.rooms.remove(&m.room);
                for (to, id) in waiting {
                    let err =
                        stanzas::iq_error(stanzas::NS_COMPONENT, "wait", "service-unavailable");
                    self.reply_component(&to, &id, "error", Some(err)).await;
                }
                return;
            }
            if m.unavailable || room.joined {
                return;
            }
            room.joined = true;
            let waiting = std::mem::take(&mut room.waiting);
            let invite: Vec<String> = room.to_invite.drain().collect();
            let result = stanzas::conference_result(
                &m.room,
                &format!("{}@auth.{}", self.opts.focus_user, self.opts.domain),
            );
            for (to, id) in waiting {
                self.reply_component(&to, &id, "result", Some(result.clone()))
                    .await;
            }
            for nick in invite {
                self.invite(&m.room, &nick).await;
            }
            return;
        }
        if m.unavailable {
            room.occupants.remove(&m.nick);
            room.to_invite.remove(&m.nick);
            let sid = room.sessions.remove(&m.nick);
            let empty = room.occupants.is_empty() && room.joined;
            if let Some(sid) = sid {
                // Jicofo sends no terminate to someone who left; the bridge endpoint goes.
                self.end(&sid, EndedBy::Left);
            }
            if empty {
                // Jicofo ends an empty conference: the focus leaves, the room goes.
                self.rooms.remove(&m.room);
                if let Ok(to) = Jid::new(&format!("{}/{FOCUS_NICK}", m.room)) {
                    let p = Presence::unavailable().with_to(to);
                    self.send(Stanza::Presence(p)).await;
                }
            }
            return;
        }
        let new = room.occupants.insert(m.nick.clone());
        if !new || !m.is_gateway || room.sessions.contains_key(&m.nick) {
            return;
        }
        if room.joined {
            self.invite(&m.room, &m.nick).await;
        } else {
            room.to_invite.insert(m.nick);
        }
    }

    /// Jicofo's session-initiate to a jigasi-like occupant, and its bridge endpoint.
    async fn invite(&mut self, room_jid: &str, nick: &str) {
        let Some(room) = self.rooms.get_mut(room_jid) else {
            return;
        };
        if room.sources.is_empty() {
            for _ in 0..self.opts.speakers {
                room.sources.push(OfferSource {
                    ssrc: rand::random(),
                    owner: format!("{:08x}", rand::random::<u32>()),
                });
            }
            room.sources.push(OfferSource {
                ssrc: rand::random(),
                owner: "jvb".into(),
            });
        }
        let sources = room.sources.clone();
        let sid = Alphanumeric
            .sample_string(&mut rand::rng(), 13)
            .to_ascii_lowercase();
        let ice = IceCreds {
            ufrag: Alphanumeric.sample_string(&mut rand::rng(), 14),
            pass: Alphanumeric.sample_string(&mut rand::rng(), 26),
        };
        room.sessions.insert(nick.to_owned(), sid.clone());
        let worker = self.next_worker % self.targets.len();
        self.next_worker += 1;
        let now = Instant::now();
        let tone = {
            let mut s = self.shared.lock();
            let tone = s.tones.get(room_jid).copied().or(self.opts.phone_tone_hz);
            s.sessions.insert(
                sid.clone(),
                SessionReport {
                    sid: sid.clone(),
                    room: room_jid.to_owned(),
                    nick: nick.to_owned(),
                    initiate_sent: now,
                    initiate_answer: None,
                    transport_info: None,
                    accepted: None,
                    connected: None,
                    ended: None,
                    rx: Default::default(),
                    tx_packets: 0,
                    tx_skipped: 0,
                    datagrams: (0, 0),
                    tone: None,
                    worker,
                },
            );
            tone
        };
        self.shared.changed.notify_all();
        let target = &self.targets[worker];
        let local = target.local;
        target.tx.send(Cmd::Add {
            sid: sid.clone(),
            ice: ice.clone(),
            // The bridge's own source is announced but silent, as a real bridge's mostly is.
            speakers: sources[..sources.len() - 1]
                .iter()
                .map(|s| s.ssrc)
                .collect(),
            tone,
        });
        self.sessions.insert(
            sid.clone(),
            Sig {
                room: room_jid.to_owned(),
                nick: nick.to_owned(),
                worker,
            },
        );
        let offer = stanzas::session_initiate(&stanzas::Offer {
            sid: &sid,
            initiator: &self.focus_full,
            ufrag: &ice.ufrag,
            pwd: &ice.pass,
            fingerprint: &self.fingerprint,
            candidate: local,
            sources: &sources,
            bridge_session_id: &format!("{:016x}", rand::random::<u64>()),
        });
        let id = self.iq_id();
        self.pending.insert(id.clone(), sid);
        self.send_iq_set(&format!("{room_jid}/{nick}"), id, offer)
            .await;
    }

    fn iq_id(&mut self) -> String {
        self.next_id += 1;
        format!("focus-{}", self.next_id)
    }

    async fn send_iq_set(&mut self, to: &str, id: String, payload: Element) {
        let Ok(to) = Jid::new(to) else {
            return self.shared.error(format!("IQ to {to:?}: not a JID"));
        };
        let iq = Iq::Set {
            from: None,
            to: Some(to),
            id,
            payload,
        };
        self.send(Stanza::Iq(iq)).await;
    }

    async fn reply(
        &mut self,
        to: Option<Jid>,
        id: String,
        answer: std::result::Result<Option<Element>, (ErrorType, DefinedCondition)>,
    ) {
        let iq = match answer {
            Ok(payload) => Iq::Result {
                from: None,
                to,
                id,
                payload,
            },
            Err((kind, condition)) => Iq::Error {
                from: None,
                to,
                id,
                error: StanzaError::new(kind, condition, "en", ""),
                payload: None,
            },
        };
        self.send(Stanza::Iq(iq)).await;
    }

    async fn on_iq(&mut self, iq: Iq) {
        match iq {
            Iq::Set {
                from, id, payload, ..
            } => {
                if payload.is("jingle", stanzas::NS_JINGLE) {
                    self.on_jingle(from, id, &payload).await;
                } else {
                    let e = (ErrorType::Cancel, DefinedCondition::ServiceUnavailable);
                    self.reply(from, id, Err(e)).await;
                }
            }
            Iq::Get {
                from, id, payload, ..
            } => {
                let answer = if payload.is("query", stanzas::NS_DISCO_INFO) {
                    Ok(Some(stanzas::disco_info(&[
                        stanzas::NS_DISCO_INFO,
                        stanzas::NS_JINGLE,
                        stanzas::NS_ICE_UDP,
                        stanzas::NS_DTLS,
                        "urn:xmpp:jingle:apps:rtp:audio",
                    ])))
                } else if payload.is("ping", stanzas::NS_PING) {
                    Ok(None)
                } else {
                    Err((ErrorType::Cancel, DefinedCondition::ServiceUnavailable))
                };
                self.reply(from, id, answer).await;
            }
            Iq::Result { id, .. } => self.answered(&id, Ok(())),
            Iq::Error { id, error, .. } => {
                let condition = format!("{:?}", error.defined_condition);
                self.answered(&id, Err(condition));
            }
        }
    }

    /// The gateway answered our session-initiate.
    fn answered(&mut self, id: &str, answer: std::result::Result<(), String>) {
        let Some(sid) = self.pending.remove(id) else {
            return;
        };
        let now = Instant::now();
        let failed = answer.is_err();
        self.shared.update(|s| {
            if let Some(r) = s.sessions.get_mut(&sid) {
                r.initiate_answer = Some(answer.clone().map(|()| now));
            }
        });
        if failed {
            // Jicofo's onInviteFailed: the session is over.
            let why = answer.err().unwrap_or_default();
            self.end(
                &sid,
                EndedBy::Failed(format!("session-initiate refused: {why}")),
            );
        }
    }

    async fn on_jingle(&mut self, from: Option<Jid>, id: String, payload: &Element) {
        let j = match stanzas::parse_jingle(payload) {
            Ok(j) => j,
            Err(e) => {
                self.shared
                    .error(format!("unreadable Jingle from {from:?}: {e}"));
                let e = (ErrorType::Modify, DefinedCondition::BadRequest);
                return self.reply(from, id, Err(e)).await;
            }
        };
        let sender = from.as_ref().map(|f| f.to_string().to_ascii_lowercase());
        let known = self.sessions.get(&j.sid).filter(|sig| {
            sender.as_deref()
                == Some(format!("{}/{}", sig.room, sig.nick.to_ascii_lowercase()).as_str())
        });
        let Some(sig) = known else {
            // Jicofo: no such session with that peer.
            let e = (ErrorType::Cancel, DefinedCondition::ItemNotFound);
            return self.reply(from, id, Err(e)).await;
        };
        let worker = sig.worker;
        self.reply(from, id, Ok(None)).await;
        let now = Instant::now();
        let tx = &self.targets[worker].tx;
        match j.action.as_str() {
            "transport-info" => {
                self.shared.update(|s| {
                    if let Some(r) = s.sessions.get_mut(&j.sid) {
                        r.transport_info.get_or_insert(now);
                    }
                });
                tx.send(Cmd::Transport {
                    sid: j.sid,
                    transport: j.transport,
                });
            }
            "session-accept" => {
                self.shared.update(|s| {
                    if let Some(r) = s.sessions.get_mut(&j.sid) {
                        r.accepted.get_or_insert(now);
                    }
                });
                let fingerprint = j.transport.fingerprint.clone();
                tx.send(Cmd::Transport {
                    sid: j.sid.clone(),
                    transport: j.transport,
                });
                tx.send(Cmd::Accept {
                    sid: j.sid,
                    fingerprint,
                    ssrc: j.ssrc,
                });
            }
            "session-terminate" => {
                if let Some(sig) = self.sessions.get(&j.sid) {
                    if let Some(room) = self.rooms.get_mut(&sig.room) {
                        room.sessions.remove(&sig.nick);
                    }
                }
                self.end(&j.sid, EndedBy::Gateway(j.reason));
            }
            _ => {} // source-add/remove, session-info: acknowledged
        }
    }

    fn end(&mut self, sid: &str, by: EndedBy) {
        let Some(sig) = self.sessions.remove(sid) else {
            return;
        };
        self.targets[sig.worker].tx.send(Cmd::End {
            sid: sid.to_owned(),
            by,
        });
    }

    async fn on_component(&mut self, el: Element) {
        if el.name() != "iq" {
            return;
        }
        let (Some(from), Some(id), Some(kind)) = (el.attr("from"), el.attr("id"), el.attr("type"))
        else {
            return;
        };
        let (from, id, kind) = (from.to_owned(), id.to_owned(), kind.to_owned());
        let Some(payload) = el.children().next() else {
            return;
        };
        match kind.as_str() {
            "set" if payload.is("conference", stanzas::NS_FOCUS) => {
                match stanzas::conference_room(payload) {
                    Ok(room) => self.conference_request(room, from, id).await,
                    Err(e) => {
                        self.shared
                            .error(format!("conference request from {from}: {e}"));
                        let err = stanzas::iq_error(stanzas::NS_COMPONENT, "modify", "bad-request");
                        self.reply_component(&from, &id, "error", Some(err)).await;
                    }
                }
            }
            "get" if payload.is("query", stanzas::NS_DISCO_INFO) => {
                let info = stanzas::disco_info(&[stanzas::NS_DISCO_INFO, stanzas::NS_FOCUS]);
                self.reply_component(&from, &id, "result", Some(info)).await;
            }
            "get" | "set" => {
                let err = stanzas::iq_error(stanzas::NS_COMPONENT, "cancel", "service-unavailable");
                self.reply_component(&from, &id, "error", Some(err)).await;
            }
            _ => {}
        }
    }

    /// Jicofo answers `<conference/>` once the focus is in the room (joining it if need be).
    async fn conference_request(&mut self, room: String, from: String, id: String) {
        let exists = self.rooms.contains_key(&room);
        let r = self.rooms.entry(room.clone()).or_default();
        if r.joined {
            let result = stanzas::conference_result(
                &room,
                &format!("{}@auth.{}", self.opts.focus_user, self.opts.domain),
            );
            return self
                .reply_component(&from, &id, "result", Some(result))
                .await;
        }
        r.waiting.push((from, id));
        if !exists {
            self.join(&room).await;
        }
    }

    async fn reply_component(&mut self, to: &str, id: &str, kind: &str, payload: Option<Element>) {
        let name = |n: &str| NcName::try_from(n).expect("a constant attribute name");
        let el = Element::builder("iq", stanzas::NS_COMPONENT)
            .attr(name("type"), kind)
            .attr(name("id"), id)
            .attr(name("from"), self.component_jid.as_str())
            .attr(name("to"), to)
            .append_all(payload)
            .build();
        self.send_component(el).await;
    }

    async fn shutdown(mut self) {
        let live: Vec<(String, String, String)> = self
            .sessions
            .iter()
            .map(|(sid, s)| (sid.clone(), s.room.clone(), s.nick.clone()))
            .collect();
        for (sid, room, nick) in live {
            let id = self.iq_id();
            let terminate = stanzas::session_terminate(&sid, "success", "the benchmark ended");
            self.send_iq_set(&format!("{room}/{nick}"), id, terminate)
                .await;
            self.end(&sid, EndedBy::Stopped);
        }
        let rooms: Vec<String> = self
            .rooms
            .keys()
            .cloned()
            .chain(self.brewery.clone())
            .collect();
        for room in rooms {
            if let Ok(to) = Jid::new(&format!("{room}/{FOCUS_NICK}")) {
                self.send(Stanza::Presence(Presence::unavailable().with_to(to)))
                    .await;
            }
        }
        let close = async {
            if self.component_alive {
                self.component.close().await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), close).await;
        let t = thread_cpu();
        self.shared.update(|s| s.xmpp_cpu = t);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.send_end()).await;
    }
}
