//! The rooms a connection is in, and what the room presences it receives mean for a call: joined
//! (with the occupants already there), join refused and why, someone came or went, we were kicked,
//! the room was destroyed. Pure: presences in, events out.
//!
//! MUC details are read from the raw `muc#user` element rather than xmpp-parsers' typed one, which
//! has no `<destroy>` and refuses a whole element for one unknown status code.

use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::presence::{Presence, Type as PresenceType};

use super::address::RoomJid;
use super::inbound::Inbound;
use super::stanzas::{NS_CLIENT, NS_JIGASI, NS_JITMEET, NS_MUC_USER, NS_NICK, NS_STANZAS};

const STATUS_SELF: u16 = 110;
const FEATURE_JIGASI: &str = "http://jitsi.org/protocol/jigasi";

/// Another occupant of the room, as its presence describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Occupant {
    pub nick: String,
    /// The occupant's real JID: Jitsi rooms make them public (Jicofo needs them).
    pub jid: Option<String>,
    /// From `<nick xmlns="http://jabber.org/protocol/nick">`.
    pub display_name: Option<String>,
    /// Presents itself as a SIP gateway (jigasi `<initiator>` or the jigasi feature). Anyone can
    /// claim it; whether to believe it depends on `jid`'s domain (`xmpp.trusted_domains`).
    pub is_jigasi: bool,
    /// Has the focus's nick (`xmpp.focus_resource`).
    pub is_focus: bool,
}

/// Why the room refused us.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("the room needs a password, or the one given is wrong")]
    PasswordRequired,
    #[error("the room is members-only (lobby: {lobby:?})")]
    MembersOnly { lobby: Option<RoomJid> },
    #[error("banned from the room")]
    Banned,
    #[error("the room is full")]
    RoomFull,
    #[error("the nick is already taken in the room")]
    NickConflict,
    #[error("the room refused the join: {condition} ({text:?})")]
    Other {
        condition: String,
        text: Option<String>,
    },
}

#[derive(Debug)]
struct Room {
    room: RoomJid,
    nick: String,
    joined: bool,
    leaving: bool,
    occupants: Vec<Occupant>,
}

/// Our occupancy of rooms (one for a call, two while moving between a lobby and its room).
#[derive(Debug)]
pub(super) struct Rooms {
    focus_nick: String,
    rooms: Vec<Room>,
}

impl Rooms {
    pub(super) fn new(focus_nick: &str) -> Rooms {
        Rooms {
            focus_nick: focus_nick.to_string(),
            rooms: Vec::new(),
        }
    }

    /// A join presence for `room` as `nick` was sent.
    pub(super) fn joining(&mut self, room: RoomJid, nick: String) {
        self.rooms.retain(|r| r.room != room);
        self.rooms.push(Room {
            room,
            nick,
            joined: false,
            leaving: false,
            occupants: Vec::new(),
        });
    }

    /// A leave presence for `room` was sent: our own unavailable presence that follows is the
    /// server's confirmation, not a kick.
    pub(super) fn leaving(&mut self, room: &RoomJid) {
        if let Some(r) = self.rooms.iter_mut().find(|r| &r.room == room) {
            r.leaving = true;
        }
    }

    /// Rooms we are in or joining, with our nick there.
    pub(super) fn current(&self) -> impl Iterator<Item = (&RoomJid, &str)> {
        self.rooms
            .iter()
            .filter(|r| !r.leaving)
            .map(|r| (&r.room, r.nick.as_str()))
    }

    pub(super) fn on_presence(&mut self, p: &Presence) -> Inbound {
        let Some(from) = &p.from else {
            return Inbound::Other;
        };
        let Some(index) = self
            .rooms
            .iter()
            .position(|r| r.room.bare() == &from.to_bare())
        else {
            return Inbound::Other;
        };
        let nick = from.resource().map(|r| r.as_str());
        let muc = MucUser::read(p);
        let room = &mut self.rooms[index];
        let is_self = muc.statuses.contains(&STATUS_SELF) || nick == Some(room.nick.as_str());
        match p.type_ {
            PresenceType::Error if !room.joined && (is_self || nick.is_none()) => {
                self.rooms.remove(index);
                Inbound::JoinFailed(join_error(p))
            }
            PresenceType::Unavailable if is_self => {
                let room = self.rooms.remove(index);
                if let Some(destroy) = muc.destroy {
                    Inbound::RoomDestroyed {
                        reason: destroy.reason,
                        alternate: destroy.alternate,
                    }
                } else if room.leaving {
                    Inbound::Other
                } else {
                    // Any removal we did not ask for ends our occupancy: 307 kick, 301 ban,
                    // 321/322 affiliation change, 332/333 shutdown or technical reasons.
                    Inbound::Kicked { reason: muc.reason }
                }
            }
            PresenceType::Unavailable => {
                let Some(nick) = nick else {
                    return Inbound::Other;
                };
                let before = room.occupants.len();
                room.occupants.retain(|o| o.nick != nick);
                if room.joined && room.occupants.len() < before {
                    Inbound::OccupantLeft {
                        nick: nick.to_string(),
                    }
                } else {
                    Inbound::Other
                }
            }
            PresenceType::None if is_self => {
                if room.joined {
                    return Inbound::Other;
                }
                room.joined = true;
                if let Some(nick) = nick {
                    // The room may have changed our nick (status 210).
                    room.nick = nick.to_string();
                }
                Inbound::SelfJoined {
                    occupants: room.occupants.clone(),
                }
            }
            PresenceType::None => {
                let Some(nick) = nick else {
                    return Inbound::Other;
                };
                let occupant = occupant(nick, p, &muc, &self.focus_nick);
                match room.occupants.iter_mut().find(|o| o.nick == nick) {
                    Some(known) => {
                        *known = occupant;
                        Inbound::Other
                    }
                    None => {
                        room.occupants.push(occupant.clone());
                        if room.joined {
                            Inbound::OccupantJoined(occupant)
                        } else {
                            Inbound::Other
                        }
                    }
                }
            }
            _ => Inbound::Other,
        }
    }
}

fn occupant(nick: &str, p: &Presence, muc: &MucUser, focus_nick: &str) -> Occupant {
    let display_name = payload(p, "nick", NS_NICK).map(|n| n.text());
    let initiator = payload(p, "initiator", NS_JIGASI).is_some();
    let feature = payload(p, "features", NS_CLIENT).is_some_and(|f| {
        f.children()
            .any(|c| c.is("feature", NS_CLIENT) && c.attr("var") == Some(FEATURE_JIGASI))
    });
    Occupant {
        nick: nick.to_string(),
        jid: muc.jid.clone(),
        display_name,
        is_jigasi: initiator || feature,
        is_focus: nick == focus_nick,
    }
}

fn payload<'a>(p: &'a Presence, name: &str, ns: &str) -> Option<&'a Element> {
    p.payloads.iter().find(|e| e.is(name, ns))
}

/// The parts of `<x xmlns="http://jabber.org/protocol/muc#user">` a call cares about.
#[derive(Debug, Default)]
struct MucUser {
    statuses: Vec<u16>,
    jid: Option<String>,
    reason: Option<String>,
    destroy: Option<Destroy>,
}

#[derive(Debug)]
struct Destroy {
    reason: Option<String>,
    alternate: Option<String>,
}

impl MucUser {
    fn read(p: &Presence) -> MucUser {
        let mut out = MucUser::default();
        let Some(x) = payload(p, "x", NS_MUC_USER) else {
            return out;
        };
        for child in x.children() {
            if child.is("status", NS_MUC_USER) {
                if let Some(code) = child.attr("code").and_then(|c| c.parse().ok()) {
                    out.statuses.push(code);
                }
            } else if child.is("item", NS_MUC_USER) {
                out.jid = child
                    .attr("jid")
                    .and_then(|j| Jid::new(j).ok())
                    .map(|j| j.to_string());
                out.reason = text_of(child, "reason", NS_MUC_USER);
            } else if child.is("destroy", NS_MUC_USER) {
                out.destroy = Some(Destroy {
                    reason: text_of(child, "reason", NS_MUC_USER),
                    alternate: child.attr("jid").map(str::to_string),
                });
            }
        }
        out
    }
}

fn text_of(parent: &Element, name: &str, ns: &str) -> Option<String> {
    parent
        .get_child(name, ns)
        .map(|c| c.text())
        .filter(|t| !t.is_empty())
}

/// Maps a join error presence to why we were refused (XEP-0045 7.2, Prosody's lobby module).
fn join_error(p: &Presence) -> JoinError {
    let error = payload(p, "error", NS_CLIENT);
    let condition = error
        .and_then(|e| {
            e.children()
                .find(|c| c.has_ns(NS_STANZAS) && c.name() != "text")
        })
        .map(|c| c.name().to_string())
        .unwrap_or_else(|| "undefined-condition".to_string());
    let text = error.and_then(|e| text_of(e, "text", NS_STANZAS));
    match condition.as_str() {
        "not-authorized" => JoinError::PasswordRequired,
        "registration-required" => JoinError::MembersOnly {
            lobby: lobby_room(p, error),
        },
        "forbidden" => JoinError::Banned,
        "service-unavailable" => JoinError::RoomFull,
        "conflict" => JoinError::NickConflict,
        _ => JoinError::Other { condition, text },
    }
}

/// Prosody's lobby names the lobby room in `<lobbyroom>`: inside `<error>` with the jitmeet
/// namespace in current jitsi-meet, as a plain presence child in older ones.
fn lobby_room(p: &Presence, error: Option<&Element>) -> Option<RoomJid> {
    let is_lobby =
        |e: &&Element| e.name() == "lobbyroom" && (e.has_ns(NS_JITMEET) || e.has_ns(NS_CLIENT));
    let element = error
        .and_then(|e| e.children().find(is_lobby))
        .or_else(|| p.payloads.iter().find(is_lobby))?;
    let text: String = element.texts().collect();
    RoomJid::parse(text.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmpp::stanzas::test_support::xml;

    const ROOM: &str = "room1@muc.meet.jitsi";
    const NICK: &str = "8d6a43bd";

    fn presence(text: &str) -> Presence {
        Presence::try_from(xml(text)).unwrap()
    }

    fn joining() -> Rooms {
        let mut rooms = Rooms::new("focus");
        rooms.joining(RoomJid::parse(ROOM).unwrap(), NICK.into());
        rooms
    }

    // Captured from the lab Prosody 0.12 with the conference emulator in the room
    // (tests/xmpp_connection.rs, stanzas traced at the connection), in the order they came.
    const ALICE: &str = r#"<presence xmlns='jabber:client' from='room1@muc.meet.jitsi/e889f540'
            id='5a017ea37fcd40ec9d288aa512bed561' to='junqave-9y-koygsr9fkkyee@meet.jitsi/iIORuXsyRAg1'>
          <nick xmlns='http://jabber.org/protocol/nick'>alice</nick>
          <SourceInfo>{"e889f540-a0":{"muted":false}}</SourceInfo>
          <occupant-id xmlns='urn:xmpp:occupant-id:0' id='XQmP6TFNoyGoLaIYEvXlHdbcgHGF/YrT5xlyz2cLMhg='/>
          <x xmlns='http://jabber.org/protocol/muc#user'>
            <item affiliation='none' jid='i_rlctuqc2w-franlx3_hhrd@meet.jitsi/f7_Lw0MhfgVu' role='participant'/>
          </x>
        </presence>"#;
    const FOCUS: &str = r#"<presence xmlns='jabber:client' from='room1@muc.meet.jitsi/focus'
            id='e9ead373e4154d72ada39ac7b2fa33cc' to='junqave-9y-koygsr9fkkyee@meet.jitsi/iIORuXsyRAg1'>
          <occupant-id xmlns='urn:xmpp:occupant-id:0' id='qssbrj3m6qZqHgHxCeBohc6vfZAs2f0j0u1k0rqthsU='/>
          <x xmlns='http://jabber.org/protocol/muc#user'>
            <item affiliation='owner' jid='focus@auth.meet.jitsi/focus' role='moderator'/>
          </x>
        </presence>"#;
    const SELF: &str = r#"<presence xmlns='jabber:client' from='room1@muc.meet.jitsi/8d6a43bd'
            to='junqave-9y-koygsr9fkkyee@meet.jitsi/iIORuXsyRAg1'>
          <nick xmlns='http://jabber.org/protocol/nick'>+15551234567</nick>
          <stat xmlns='http://jitsi.org/protocol/colibri' name='version' value='jitsi-sip-gateway 0.1.0'/>
          <initiator xmlns='http://jitsi.org/protocol/jigasi'>
            <header xmlns='urn:xmpp:rayo:1' name='JigasiCallDirection' value='in'/>
          </initiator>
          <features><feature var='http://jitsi.org/protocol/jigasi'/><feature var='urn:xmpp:jingle:dtmf:0'/></features>
          <audiomuted>false</audiomuted>
          <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='http://jitsi.org' ver='uFKuUEa2CNC3yZ3E8NhBTgWBlHE='/>
          <occupant-id xmlns='urn:xmpp:occupant-id:0' id='lzA4WXiACFmCK+qYKmnZgJo25UHaPEJBrJi31M7ImdY='/>
          <x xmlns='http://jabber.org/protocol/muc#user'>
            <status code='100'/>
            <item affiliation='none' jid='junqave-9y-koygsr9fkkyee@meet.jitsi/iIORuXsyRAg1' role='participant'/>
            <status code='110'/>
          </x>
        </presence>"#;
    // The echo of our status update.
    const SELF_STATUS: &str = r#"<presence xmlns='jabber:client' from='room1@muc.meet.jitsi/8d6a43bd'
            to='junqave-9y-koygsr9fkkyee@meet.jitsi/iIORuXsyRAg1'>
          <status xml:lang='en'>Initializing Call</status>
          <nick xmlns='http://jabber.org/protocol/nick'>+15551234567</nick>
          <initiator xmlns='http://jitsi.org/protocol/jigasi'>
            <header xmlns='urn:xmpp:rayo:1' name='JigasiCallDirection' value='in'/>
          </initiator>
          <audiomuted>false</audiomuted>
          <x xmlns='http://jabber.org/protocol/muc#user'>
            <item affiliation='none' jid='junqave-9y-koygsr9fkkyee@meet.jitsi/iIORuXsyRAg1' role='participant'/>
            <status code='110'/>
          </x>
        </presence>"#;
    const SELF_LEFT: &str = r#"<presence xmlns='jabber:client' from='room1@muc.meet.jitsi/8d6a43bd'
            to='junqave-9y-koygsr9fkkyee@meet.jitsi/iIORuXsyRAg1' type='unavailable'>
          <occupant-id xmlns='urn:xmpp:occupant-id:0' id='lzA4WXiACFmCK+qYKmnZgJo25UHaPEJBrJi31M7ImdY='/>
          <x xmlns='http://jabber.org/protocol/muc#user'>
            <item affiliation='none' jid='junqave-9y-koygsr9fkkyee@meet.jitsi/iIORuXsyRAg1' role='none'/>
            <status code='110'/>
          </x>
        </presence>"#;
    const ALICE_LEFT: &str = r#"<presence xmlns='jabber:client' from='room1@muc.meet.jitsi/e889f540'
            id='5d65745a4ea64c5fb827115c30c83b15' to='junqave-9y-koygsr9fkkyee@meet.jitsi/iIORuXsyRAg1'
            type='unavailable'>
          <occupant-id xmlns='urn:xmpp:occupant-id:0' id='XQmP6TFNoyGoLaIYEvXlHdbcgHGF/YrT5xlyz2cLMhg='/>
          <x xmlns='http://jabber.org/protocol/muc#user'>
            <item affiliation='none' jid='i_rlctuqc2w-franlx3_hhrd@meet.jitsi/f7_Lw0MhfgVu' role='none'/>
          </x>
        </presence>"#;

    fn joined() -> Rooms {
        let mut rooms = joining();
        rooms.on_presence(&presence(FOCUS));
        rooms.on_presence(&presence(SELF));
        rooms
    }

    fn alice() -> Occupant {
        Occupant {
            nick: "e889f540".into(),
            jid: Some("i_rlctuqc2w-franlx3_hhrd@meet.jitsi/f7_Lw0MhfgVu".into()),
            display_name: Some("alice".into()),
            is_jigasi: false,
            is_focus: false,
        }
    }

    #[test]
    fn self_presence_completes_the_join_with_the_occupants_seen_before_it() {
        let mut rooms = joining();
        assert_eq!(rooms.on_presence(&presence(ALICE)), Inbound::Other);
        assert_eq!(rooms.on_presence(&presence(FOCUS)), Inbound::Other);
        let Inbound::SelfJoined { occupants } = rooms.on_presence(&presence(SELF)) else {
            panic!("not joined");
        };
        assert_eq!(
            occupants,
            vec![
                alice(),
                Occupant {
                    nick: "focus".into(),
                    jid: Some("focus@auth.meet.jitsi/focus".into()),
                    display_name: None,
                    is_jigasi: false,
                    is_focus: true,
                },
            ]
        );
        // Our own status updates echo back: nothing new.
        assert_eq!(rooms.on_presence(&presence(SELF_STATUS)), Inbound::Other);
    }

    #[test]
    fn first_into_a_new_room_joins_with_nobody_else_there() {
        let mut rooms = joining();
        let created = presence(
            r#"<presence xmlns='jabber:client' from='room1@muc.meet.jitsi/8d6a43bd'
                   to='yifbmx_ulk-oxofloco6_ohj@meet.jitsi/uZgPxXHTD-H9'>
                 <nick xmlns='http://jabber.org/protocol/nick'>+15551234567</nick>
                 <occupant-id xmlns='urn:xmpp:occupant-id:0' id='RI0P22dBd8FX5fBx9BU0gse0D4gg7lsQXMxUu3OQ5Bs='/>
                 <x xmlns='http://jabber.org/protocol/muc#user'>
                   <status code='201'/><status code='100'/>
                   <item affiliation='owner' jid='yifbmx_ulk-oxofloco6_ohj@meet.jitsi/uZgPxXHTD-H9' role='moderator'/>
                   <status code='110'/>
                 </x>
               </presence>"#,
        );
        assert_eq!(
            rooms.on_presence(&created),
            Inbound::SelfJoined {
                occupants: Vec::new()
            }
        );
    }

    #[test]
    fn room_jid_from_the_server_matches_a_mixed_case_request() {
        let mut rooms = Rooms::new("focus");
        rooms.joining(RoomJid::parse("Room1@MUC.meet.jitsi").unwrap(), NICK.into());
        assert!(matches!(
            rooms.on_presence(&presence(SELF)),
            Inbound::SelfJoined { .. }
        ));
    }

    #[test]
    fn occupants_joining_and_leaving_after_our_join_are_events() {
        let mut rooms = joined();
        assert_eq!(
            rooms.on_presence(&presence(ALICE)),
            Inbound::OccupantJoined(alice())
        );
        // A presence update of someone already there is not a join.
        assert_eq!(rooms.on_presence(&presence(ALICE)), Inbound::Other);
        let left = presence(ALICE_LEFT);
        assert_eq!(
            rooms.on_presence(&left),
            Inbound::OccupantLeft {
                nick: "e889f540".into()
            }
        );
        assert_eq!(rooms.on_presence(&left), Inbound::Other);
    }

    #[test]
    fn another_gateway_is_recognised_by_its_initiator_or_its_feature() {
        let mut rooms = joined();
        let by_feature = presence(
            r#"<presence xmlns="jabber:client" from="room1@muc.meet.jitsi/0badf00d">
                 <features><feature var="http://jitsi.org/protocol/jigasi"/></features>
                 <x xmlns="http://jabber.org/protocol/muc#user">
                   <item jid="jigasi@auth.meet.jitsi/r" affiliation="none" role="participant"/>
                 </x>
               </presence>"#,
        );
        let Inbound::OccupantJoined(o) = rooms.on_presence(&by_feature) else {
            panic!()
        };
        assert!(o.is_jigasi && !o.is_focus);
        let by_initiator = presence(
            r#"<presence xmlns="jabber:client" from="room1@muc.meet.jitsi/0badf00e">
                 <initiator xmlns="http://jitsi.org/protocol/jigasi"/>
               </presence>"#,
        );
        let Inbound::OccupantJoined(o) = rooms.on_presence(&by_initiator) else {
            panic!()
        };
        assert!(o.is_jigasi);
        assert_eq!(o.jid, None);
    }

    #[test]
    fn kick_is_reported_with_its_reason() {
        let mut rooms = joined();
        let kick = presence(
            r#"<presence xmlns="jabber:client" type="unavailable" from="room1@muc.meet.jitsi/8d6a43bd">
                 <x xmlns="http://jabber.org/protocol/muc#user">
                   <item affiliation="none" role="none">
                     <actor nick="moderator"/><reason>You have been kicked.</reason>
                   </item>
                   <status code="307"/><status code="110"/>
                 </x>
               </presence>"#,
        );
        assert_eq!(
            rooms.on_presence(&kick),
            Inbound::Kicked {
                reason: Some("You have been kicked.".into())
            }
        );
        assert_eq!(rooms.current().count(), 0);
    }

    #[test]
    fn our_own_leave_is_not_a_kick() {
        let mut rooms = joined();
        rooms.leaving(&RoomJid::parse(ROOM).unwrap());
        assert_eq!(rooms.current().count(), 0);
        assert_eq!(rooms.on_presence(&presence(SELF_LEFT)), Inbound::Other);
    }

    #[test]
    fn being_removed_without_asking_ends_the_occupancy_even_without_a_kick_code() {
        let mut rooms = joined();
        assert_eq!(
            rooms.on_presence(&presence(SELF_LEFT)),
            Inbound::Kicked { reason: None }
        );
        assert_eq!(rooms.current().count(), 0);
    }

    #[test]
    fn destroyed_room_gives_reason_and_alternate_even_without_status_110() {
        let mut rooms = joined();
        let destroyed = presence(
            r#"<presence xmlns="jabber:client" type="unavailable" from="room1@muc.meet.jitsi/8d6a43bd">
                 <x xmlns="http://jabber.org/protocol/muc#user">
                   <item affiliation="none" role="none"/>
                   <destroy jid="room1@lobby.meet.jitsi"><reason>Lobby disabled</reason></destroy>
                 </x>
               </presence>"#,
        );
        assert_eq!(
            rooms.on_presence(&destroyed),
            Inbound::RoomDestroyed {
                reason: Some("Lobby disabled".into()),
                alternate: Some("room1@lobby.meet.jitsi".into()),
            }
        );
    }

    fn join_error_for(error: &str) -> Inbound {
        let mut rooms = joining();
        rooms.on_presence(&presence(&format!(
            r#"<presence xmlns="jabber:client" type="error" from="room1@muc.meet.jitsi/8d6a43bd">
                 <x xmlns="http://jabber.org/protocol/muc"/>{error}
               </presence>"#
        )))
    }

    #[test]
    fn join_errors_are_typed() {
        let cases = [
            ("not-authorized", "auth", JoinError::PasswordRequired),
            ("forbidden", "auth", JoinError::Banned),
            ("service-unavailable", "wait", JoinError::RoomFull),
            ("conflict", "cancel", JoinError::NickConflict),
            (
                "registration-required",
                "auth",
                JoinError::MembersOnly { lobby: None },
            ),
        ];
        for (condition, type_, expected) in cases {
            let error = format!(
                r#"<error type="{type_}"><{condition} xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error>"#
            );
            assert_eq!(join_error_for(&error), Inbound::JoinFailed(expected));
        }
        assert_eq!(
            join_error_for(
                r#"<error type="modify"><not-acceptable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>
                     <text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">displayname required</text></error>"#
            ),
            Inbound::JoinFailed(JoinError::Other {
                condition: "not-acceptable".into(),
                text: Some("displayname required".into())
            })
        );
        assert_eq!(
            join_error_for(""),
            Inbound::JoinFailed(JoinError::Other {
                condition: "undefined-condition".into(),
                text: None
            })
        );
    }

    #[test]
    fn members_only_error_names_the_lobby_in_either_prosody_shape() {
        // jitsi-meet's current mod_muc_lobby_rooms: inside <error>, jitmeet namespace.
        let current = join_error_for(
            r#"<error type="auth" code="407">
                 <registration-required xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>
                 <lobbyroom xmlns="http://jitsi.org/jitmeet">Room1@lobby.meet.jitsi</lobbyroom>
               </error>"#,
        );
        // Older ones: a plain child of the presence (with a stray MUC <x> inside it).
        let older = join_error_for(
            r#"<error type="auth" code="407">
                 <registration-required xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>
               </error>
               <lobbyroom>room1@lobby.meet.jitsi<x xmlns="http://jabber.org/protocol/muc"/></lobbyroom>"#,
        );
        let lobby = Some(RoomJid::parse("room1@lobby.meet.jitsi").unwrap());
        for got in [current, older] {
            assert_eq!(
                got,
                Inbound::JoinFailed(JoinError::MembersOnly {
                    lobby: lobby.clone()
                })
            );
        }
    }

    #[test]
    fn presences_of_other_rooms_and_odd_ones_are_ignored() {
        let mut rooms = joining();
        let other_room = presence(
            r#"<presence xmlns="jabber:client" from="room2@muc.meet.jitsi/8d6a43bd">
                 <x xmlns="http://jabber.org/protocol/muc#user"><status code="110"/></x>
               </presence>"#,
        );
        assert_eq!(rooms.on_presence(&other_room), Inbound::Other);
        let no_from = presence(r#"<presence xmlns="jabber:client"/>"#);
        assert_eq!(rooms.on_presence(&no_from), Inbound::Other);
        let bad_codes = presence(
            r#"<presence xmlns="jabber:client" from="room1@muc.meet.jitsi/bob">
                 <x xmlns="http://jabber.org/protocol/muc#user">
                   <status code="abc"/><status/><item jid="not a jid@@"/>
                 </x>
               </presence>"#,
        );
        assert_eq!(rooms.on_presence(&bad_codes), Inbound::Other);
        let Inbound::SelfJoined { occupants } = rooms.on_presence(&presence(SELF)) else {
            panic!()
        };
        assert_eq!(occupants[0].nick, "bob");
        assert_eq!(occupants[0].jid, None);
    }
}
