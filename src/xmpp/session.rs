//! The sans-IO core of one logged-in connection: stanzas and commands in, stanzas to send and
//! events for the call out. It answers what the call need not see (disco#info, ping), matches
//! answers to our own IQ requests, keeps the room presence so that status updates repeat every
//! jigasi child, and classifies the rest.

use std::collections::{HashMap, HashSet, VecDeque};

use tokio::sync::oneshot;
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::{FullJid, Jid};
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza::Stanza;

use super::address::{AddressError, RoomJid};
use super::disco::Capabilities;
use super::error::IqError;
use super::inbound::{classify, Inbound};
use super::muc::Rooms;
use super::stanzas::{
    condition_name, iq_reply, iq_request, join_presence, leave_presence, plain_presence,
    update_presence, ErrorCondition, ErrorReply, IqKind, JoinRequest, PresenceState, Reply,
    NS_DISCO_INFO, NS_PING,
};

/// What an IQ request of ours comes to.
pub(super) type IqOutcome = Result<Option<Element>, IqError>;

#[derive(Debug)]
pub(super) enum Output {
    Send(Element),
    Deliver(Inbound),
}

#[derive(Debug)]
struct Pending {
    to: Option<Jid>,
    done: oneshot::Sender<IqOutcome>,
}

/// A room we are in or joining, with what our presence there says.
#[derive(Debug)]
enum RoomPresence {
    /// A call's occupancy: the jigasi presence, of which status and mute change.
    Call {
        request: JoinRequest,
        state: PresenceState,
    },
    /// Any other occupancy (the brewery): children replaced as a whole.
    Plain {
        room: RoomJid,
        nick: String,
        children: Vec<Element>,
    },
}

impl RoomPresence {
    fn room(&self) -> &RoomJid {
        match self {
            RoomPresence::Call { request, .. } => &request.room,
            RoomPresence::Plain { room, .. } => room,
        }
    }

    fn nick(&self) -> &str {
        match self {
            RoomPresence::Call { request, .. } => &request.nick,
            RoomPresence::Plain { nick, .. } => nick,
        }
    }
}

#[derive(Debug)]
pub(super) struct Session {
    me: FullJid,
    caps: Capabilities,
    rooms: Rooms,
    presences: Vec<RoomPresence>,
    pending: HashMap<String, Pending>,
    keepalives: HashSet<String>,
    id_prefix: String,
    next_id: u64,
    out: VecDeque<Output>,
}

impl Session {
    pub(super) fn new(me: FullJid, focus_nick: &str) -> Session {
        Session {
            me,
            caps: Capabilities::sip_gateway(),
            rooms: Rooms::new(focus_nick),
            presences: Vec::new(),
            pending: HashMap::new(),
            keepalives: HashSet::new(),
            id_prefix: format!("gw{:04x}-", rand::random::<u16>()),
            next_id: 0,
            out: VecDeque::new(),
        }
    }

    pub(super) fn jid(&self) -> &FullJid {
        &self.me
    }

    pub(super) fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    fn send(&mut self, stanza: impl Into<Element>) {
        self.out.push_back(Output::Send(stanza.into()));
    }

    fn new_id(&mut self) -> String {
        self.next_id += 1;
        format!("{}{}", self.id_prefix, self.next_id)
    }

    pub(super) fn join(&mut self, request: JoinRequest) -> Result<(), AddressError> {
        let state = PresenceState::default();
        let presence = join_presence(&request, &self.caps, &state)?;
        self.send(presence);
        self.rooms
            .joining(request.room.clone(), request.nick.clone());
        self.presences.retain(|p| p.room() != &request.room);
        self.presences.push(RoomPresence::Call { request, state });
        Ok(())
    }

    /// Joins `room` with a presence of the given children (and our caps).
    pub(super) fn join_plain(
        &mut self,
        room: RoomJid,
        nick: String,
        children: Vec<Element>,
    ) -> Result<(), AddressError> {
        let presence = plain_presence(&room, &nick, &children, &self.caps, true)?;
        self.send(presence);
        self.rooms.joining(room.clone(), nick.clone());
        self.presences.retain(|p| p.room() != &room);
        self.presences.push(RoomPresence::Plain {
            room,
            nick,
            children,
        });
        Ok(())
    }

    /// Replaces the children of our presence in a room joined with [`Session::join_plain`].
    pub(super) fn set_plain_presence(&mut self, room: &RoomJid, new: Vec<Element>) {
        let Some(RoomPresence::Plain { nick, children, .. }) =
            self.presences.iter_mut().find(|p| p.room() == room)
        else {
            return;
        };
        *children = new;
        // The nick was checked when the join was built.
        if let Ok(presence) = plain_presence(room, nick, children, &self.caps, false) {
            self.out.push_back(Output::Send(presence));
        }
    }

    /// Changes the `<status>` of our presence in every room we are in.
    pub(super) fn set_status(&mut self, status: Option<String>) {
        self.update(|state| state.status = status.clone());
    }

    pub(super) fn set_audio_muted(&mut self, muted: bool) {
        self.update(|state| state.audio_muted = muted);
    }

    fn update(&mut self, change: impl Fn(&mut PresenceState)) {
        let mut updates: Vec<Element> = Vec::new();
        for p in &mut self.presences {
            let RoomPresence::Call { request, state } = p else {
                continue;
            };
            change(state);
            // The nick was checked when the join was built.
            if let Ok(presence) = update_presence(request, &self.caps, state) {
                updates.push(presence);
            }
        }
        for presence in updates {
            self.send(presence);
        }
    }

    pub(super) fn leave(&mut self, room: &RoomJid, status: Option<&str>) {
        let Some(index) = self.presences.iter().position(|p| p.room() == room) else {
            return;
        };
        let p = self.presences.remove(index);
        if let Ok(presence) = leave_presence(room, p.nick(), status) {
            self.send(presence);
        }
        self.rooms.leaving(room);
    }

    /// Leaves every room: the first step of closing the stream.
    pub(super) fn leave_all(&mut self) {
        let rooms: Vec<RoomJid> = self.rooms.current().map(|(r, _)| r.clone()).collect();
        for room in rooms {
            self.leave(&room, None);
        }
    }

    pub(super) fn send_iq(
        &mut self,
        to: Option<Jid>,
        kind: IqKind,
        payload: Element,
        done: oneshot::Sender<IqOutcome>,
    ) {
        // Requests whose caller gave up (timed out, dropped) need no bookkeeping any more.
        self.pending.retain(|_, p| !p.done.is_closed());
        let id = self.new_id();
        self.send(iq_request(to.clone(), id.clone(), kind, payload));
        self.pending.insert(id, Pending { to, done });
    }

    pub(super) fn reply(&mut self, to: Jid, id: String, reply: Reply) {
        self.send(iq_reply(Some(to), id, reply));
    }

    /// The stream has been silent for a while: ask the server for a sign of life (XEP-0199).
    pub(super) fn keepalive(&mut self) {
        let id = self.new_id();
        let ping = Element::builder("ping", NS_PING).build();
        let to = Jid::from(self.me.domain().to_owned());
        self.send(iq_request(Some(to), id.clone(), IqKind::Get, ping));
        self.keepalives.insert(id);
    }

    /// An IQ request that failed to parse: RFC 6120 wants an error answer, not silence.
    pub(super) fn invalid_request(&mut self, from: Option<&str>, id: Option<&str>) {
        let (Some(from), Some(id)) = (from.and_then(|f| Jid::new(f).ok()), id) else {
            return;
        };
        let error = ErrorReply::new(ErrorCondition::BadRequest);
        self.reply(from, id.to_string(), Reply::Error(error));
    }

    pub(super) fn handle_stanza(&mut self, stanza: Stanza) {
        let stanza = match stanza {
            Stanza::Iq(iq) => match self.handle_iq(iq) {
                Some(iq) => Stanza::Iq(iq),
                None => return,
            },
            other => other,
        };
        match classify(stanza, &mut self.rooms) {
            Inbound::Other => {}
            event => {
                if let Inbound::Kicked { .. }
                | Inbound::RoomDestroyed { .. }
                | Inbound::JoinFailed(_) = event
                {
                    // Out of that room: no more presence updates to it.
                    let rooms = &self.rooms;
                    self.presences
                        .retain(|p| rooms.current().any(|(r, _)| r == p.room()));
                }
                self.out.push_back(Output::Deliver(event));
            }
        }
    }

    /// Handles the IQs the connection answers or waits for; returns the others.
    fn handle_iq(&mut self, iq: Iq) -> Option<Iq> {
        match iq {
            Iq::Get {
                from: Some(from),
                id,
                payload,
                ..
            } if payload.is("query", NS_DISCO_INFO) => {
                let reply = match self.caps.answer(payload.attr("node")) {
                    Some(info) => Reply::Result(Some(info)),
                    None => Reply::Error(ErrorReply::new(ErrorCondition::ItemNotFound)),
                };
                self.reply(from, id, reply);
                None
            }
            Iq::Get {
                from: Some(from),
                id,
                payload,
                ..
            } if payload.is("ping", NS_PING) => {
                self.reply(from, id, Reply::Result(None));
                None
            }
            Iq::Result {
                ref from, ref id, ..
            }
            | Iq::Error {
                ref from, ref id, ..
            } => {
                if self.keepalives.remove(id) {
                    return None;
                }
                let matches = self
                    .pending
                    .get(id)
                    .is_some_and(|p| self.answers(&p.to, from));
                if !matches {
                    return Some(iq);
                }
                let pending = self.pending.remove(id)?;
                let outcome = match iq {
                    Iq::Result { payload, .. } => Ok(payload),
                    Iq::Error { error, .. } => Err(IqError::Remote {
                        condition: condition_name(&error.defined_condition),
                        text: error.texts.into_values().next(),
                    }),
                    _ => return None,
                };
                // The caller may have stopped waiting; then nobody needs the answer.
                let _ = pending.done.send(outcome);
                None
            }
            other => Some(other),
        }
    }

    /// Whether an answer from `from` can be the answer to a request sent to `to` (RFC 6120
    /// 10.1: a request without `to` is answered by our server, with or without `from`).
    fn answers(&self, to: &Option<Jid>, from: &Option<Jid>) -> bool {
        let server = Jid::from(self.me.domain().to_owned());
        let account = Jid::from(self.me.to_bare());
        let ours = |j: &Jid| j == &server || j == &account;
        match (to, from) {
            (Some(to), Some(from)) => to == from,
            (None, None) => true,
            (None, Some(from)) => ours(from),
            (Some(to), None) => ours(to),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmpp::stanzas::test_support::xml;
    use crate::xmpp::stanzas::Direction;

    fn session() -> Session {
        Session::new("abc123@meet.jitsi/r1".parse().unwrap(), "focus")
    }

    fn stanza(text: &str) -> Stanza {
        Stanza::try_from(xml(text)).unwrap()
    }

    fn sent(s: &mut Session) -> Vec<Element> {
        let mut out = Vec::new();
        while let Some(o) = s.poll_output() {
            match o {
                Output::Send(st) => out.push(st),
                Output::Deliver(e) => panic!("unexpected event {e:?}"),
            }
        }
        out
    }

    fn delivered(s: &mut Session) -> Vec<Inbound> {
        let mut out = Vec::new();
        while let Some(o) = s.poll_output() {
            match o {
                Output::Deliver(e) => out.push(e),
                Output::Send(st) => panic!("unexpected stanza {st:?}"),
            }
        }
        out
    }

    fn request() -> JoinRequest {
        JoinRequest {
            room: RoomJid::parse("room1@muc.meet.jitsi").unwrap(),
            nick: "1a2b3c4d".into(),
            display_name: "caller".into(),
            password: None,
            region: None,
            stats_id: None,
            direction: Direction::In,
        }
    }

    #[test]
    fn disco_info_is_answered_with_our_features() {
        let mut s = session();
        s.handle_stanza(stanza(
            r#"<iq xmlns="jabber:client" type="get" id="d1" from="room1@muc.meet.jitsi/focus">
                 <query xmlns="http://jabber.org/protocol/disco#info"/></iq>"#,
        ));
        let out = sent(&mut s);
        assert_eq!(out.len(), 1);
        let iq = &out[0];
        assert_eq!(iq.attr("type"), Some("result"));
        assert_eq!(iq.attr("id"), Some("d1"));
        assert_eq!(iq.attr("to"), Some("room1@muc.meet.jitsi/focus"));
        assert_eq!(
            iq.get_child("query", NS_DISCO_INFO),
            Capabilities::sip_gateway().answer(None).as_ref()
        );
    }

    #[test]
    fn disco_info_for_an_unknown_node_is_item_not_found() {
        let mut s = session();
        s.handle_stanza(stanza(
            r#"<iq xmlns="jabber:client" type="get" id="d2" from="x@y/z">
                 <query xmlns="http://jabber.org/protocol/disco#info" node="urn:other#1"/></iq>"#,
        ));
        assert_eq!(
            sent(&mut s),
            vec![xml(
                r#"<iq xmlns="jabber:client" type="error" id="d2" to="x@y/z">
                         <error type="cancel"><item-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error>
                       </iq>"#
            )]
        );
    }

    #[test]
    fn ping_is_answered() {
        let mut s = session();
        s.handle_stanza(stanza(
            r#"<iq xmlns="jabber:client" type="get" id="p1" from="meet.jitsi">
                 <ping xmlns="urn:xmpp:ping"/></iq>"#,
        ));
        assert_eq!(
            sent(&mut s),
            vec![xml(
                r#"<iq xmlns="jabber:client" type="result" id="p1" to="meet.jitsi"/>"#
            )]
        );
    }

    #[test]
    fn other_iq_gets_and_sets_go_to_the_call() {
        let mut s = session();
        s.handle_stanza(stanza(
            r#"<iq xmlns="jabber:client" type="set" id="j1" from="room1@muc.meet.jitsi/focus">
                 <jingle xmlns="urn:xmpp:jingle:1" action="session-initiate" sid="s"/></iq>"#,
        ));
        let events = delivered(&mut s);
        assert!(matches!(&events[..], [Inbound::IqSet { id, .. }] if id == "j1"));
    }

    #[test]
    fn answer_to_our_request_completes_it_and_is_not_an_event() {
        let mut s = session();
        let (tx, mut rx) = oneshot::channel();
        let focus: Jid = "focus.meet.jitsi".parse().unwrap();
        let room = RoomJid::parse("room1@muc.meet.jitsi").unwrap();
        s.send_iq(
            Some(focus),
            IqKind::Set,
            super::super::stanzas::conference_request(&room),
            tx,
        );
        let out = sent(&mut s);
        let id = out[0].attr("id").unwrap().to_string();
        // Same id from someone else: not the answer.
        s.handle_stanza(stanza(&format!(
            r#"<iq xmlns="jabber:client" type="result" id="{id}" from="evil@meet.jitsi/x"/>"#
        )));
        assert!(matches!(&delivered(&mut s)[..], [Inbound::IqResult { .. }]));
        assert!(rx.try_recv().is_err());
        s.handle_stanza(stanza(&format!(
            r#"<iq xmlns="jabber:client" type="result" id="{id}" from="focus.meet.jitsi">
                 <conference xmlns="http://jitsi.org/protocol/focus" ready="true"
                             room="room1@muc.meet.jitsi" focusjid="focus@auth.meet.jitsi"/>
               </iq>"#
        )));
        assert!(delivered(&mut s).is_empty());
        let payload = rx.try_recv().unwrap().unwrap().unwrap();
        assert_eq!(payload.attr("ready"), Some("true"));
    }

    #[test]
    fn error_answer_to_our_request_carries_the_condition() {
        let mut s = session();
        let (tx, mut rx) = oneshot::channel();
        s.send_iq(
            Some("room1@muc.meet.jitsi/focus".parse().unwrap()),
            IqKind::Set,
            xml(r#"<jingle xmlns="urn:xmpp:jingle:1" action="session-accept" sid="s"/>"#),
            tx,
        );
        let id = sent(&mut s)[0].attr("id").unwrap().to_string();
        s.handle_stanza(stanza(&format!(
            r#"<iq xmlns="jabber:client" type="error" id="{id}" from="room1@muc.meet.jitsi/focus">
                 <error type="cancel"><item-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>
                   <text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">unknown session</text></error>
               </iq>"#
        )));
        assert_eq!(
            rx.try_recv().unwrap(),
            Err(IqError::Remote {
                condition: "item-not-found".into(),
                text: Some("unknown session".into())
            })
        );
    }

    #[test]
    fn answer_from_our_server_may_omit_from_when_the_request_had_no_to() {
        let s = session();
        let server: Jid = "meet.jitsi".parse().unwrap();
        assert!(s.answers(&None, &None));
        assert!(s.answers(&None, &Some(server.clone())));
        assert!(s.answers(&Some(server), &None));
        assert!(!s.answers(&None, &Some("other.jitsi".parse().unwrap())));
        assert!(!s.answers(&Some("focus.meet.jitsi".parse().unwrap()), &None));
    }

    #[test]
    fn keepalive_pings_the_server_and_its_answer_is_swallowed() {
        let mut s = session();
        s.keepalive();
        let out = sent(&mut s);
        assert_eq!(out.len(), 1);
        let id = out[0].attr("id").unwrap().to_string();
        assert_eq!(
            out[0],
            xml(&format!(
                r#"<iq xmlns="jabber:client" type="get" id="{id}" to="meet.jitsi">
                     <ping xmlns="urn:xmpp:ping"/></iq>"#
            ))
        );
        s.handle_stanza(stanza(&format!(
            r#"<iq xmlns="jabber:client" type="result" id="{id}" from="meet.jitsi"/>"#
        )));
        assert!(s.poll_output().is_none());
    }

    #[test]
    fn status_update_repeats_the_room_presence_and_leave_ends_it() {
        let mut s = session();
        s.join(request()).unwrap();
        let join = sent(&mut s);
        assert!(join[0].has_child("x", "http://jabber.org/protocol/muc"));
        s.set_status(Some("Connected".into()));
        let update = sent(&mut s).remove(0);
        assert!(!update.has_child("x", "http://jabber.org/protocol/muc"));
        assert_eq!(
            update
                .get_child("status", "jabber:client")
                .map(|e| e.text()),
            Some("Connected".into())
        );
        assert!(update.has_child("initiator", "http://jitsi.org/protocol/jigasi"));
        s.set_audio_muted(true);
        let muted = sent(&mut s).remove(0);
        assert_eq!(
            muted
                .get_child("audiomuted", "jabber:client")
                .map(|e| e.text()),
            Some("true".into())
        );
        assert_eq!(
            muted.get_child("status", "jabber:client").map(|e| e.text()),
            Some("Connected".into())
        );
        s.leave(&request().room, Some("Call ended"));
        let leave = sent(&mut s).remove(0);
        assert_eq!(leave.attr("type"), Some("unavailable"));
        s.set_status(Some("after".into()));
        assert!(sent(&mut s).is_empty());
    }

    #[test]
    fn plain_presence_joins_is_replaced_as_a_whole_and_is_left_on_close() {
        let mut s = session();
        let caps = Capabilities::sip_gateway().caps_element();
        let brewery = RoomJid::parse("JigasiBrewery@internal-muc.meet.jitsi").unwrap();
        let stats = |n: &str| {
            xml(&format!(
                r#"<stats xmlns="http://jitsi.org/protocol/colibri"><stat name="conferences" value="{n}"/></stats>"#
            ))
        };
        s.join_plain(brewery.clone(), "r1".into(), vec![stats("0")])
            .unwrap();
        let mut join = xml(
            r#"<presence xmlns="jabber:client" to="jigasibrewery@internal-muc.meet.jitsi/r1">
                 <x xmlns="http://jabber.org/protocol/muc"/></presence>"#,
        );
        join.append_child(stats("0"));
        join.append_child(caps.clone());
        assert_eq!(sent(&mut s), vec![join]);
        // A call's status does not touch it.
        s.set_status(Some("Connected".into()));
        assert!(sent(&mut s).is_empty());
        s.set_plain_presence(&brewery, vec![stats("1")]);
        let mut update = xml(
            r#"<presence xmlns="jabber:client" to="jigasibrewery@internal-muc.meet.jitsi/r1"/>"#,
        );
        update.append_child(stats("1"));
        update.append_child(caps);
        assert_eq!(sent(&mut s), vec![update]);
        s.leave_all();
        assert_eq!(
            sent(&mut s),
            vec![xml(r#"<presence xmlns="jabber:client" type="unavailable"
                             to="jigasibrewery@internal-muc.meet.jitsi/r1"/>"#)]
        );
        s.set_plain_presence(&brewery, vec![stats("2")]);
        assert!(sent(&mut s).is_empty());
    }

    #[test]
    fn kick_forgets_the_room_presence() {
        let mut s = session();
        s.join(request()).unwrap();
        sent(&mut s);
        s.handle_stanza(stanza(
            r#"<presence xmlns="jabber:client" from="room1@muc.meet.jitsi/1a2b3c4d">
                 <x xmlns="http://jabber.org/protocol/muc#user"><status code="110"/></x></presence>"#,
        ));
        assert!(matches!(
            &delivered(&mut s)[..],
            [Inbound::SelfJoined { .. }]
        ));
        s.handle_stanza(stanza(
            r#"<presence xmlns="jabber:client" type="unavailable" from="room1@muc.meet.jitsi/1a2b3c4d">
                 <x xmlns="http://jabber.org/protocol/muc#user"><status code="307"/><status code="110"/></x></presence>"#,
        ));
        assert_eq!(delivered(&mut s), vec![Inbound::Kicked { reason: None }]);
        s.set_status(Some("x".into()));
        assert!(sent(&mut s).is_empty());
    }

    #[test]
    fn invalid_iq_request_gets_bad_request() {
        let mut s = session();
        s.invalid_request(Some("room1@muc.meet.jitsi/focus"), Some("bad1"));
        assert_eq!(
            sent(&mut s),
            vec![xml(
                r#"<iq xmlns="jabber:client" type="error" id="bad1" to="room1@muc.meet.jitsi/focus">
                         <error type="modify"><bad-request xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error>
                       </iq>"#
            )]
        );
        s.invalid_request(None, Some("x"));
        s.invalid_request(Some("a@b/c"), None);
        s.invalid_request(Some("@@"), Some("x"));
        assert!(s.poll_output().is_none());
    }
}
