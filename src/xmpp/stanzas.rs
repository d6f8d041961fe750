//! Builders of the stanzas a call sends: the jigasi room presence (join, status updates, leave),
//! the focus `<conference/>` request, and IQ requests, results and errors. Pure: no I/O.
//!
//! Shapes follow jigasi (reference `jigasi-behaviour.md` 1.5, 1.6, 4.1): Prosody recognises a SIP
//! gateway by `<initiator xmlns="http://jitsi.org/protocol/jigasi">`, Jicofo by the jigasi feature,
//! and both read the legacy `<audiomuted>`.

use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::minidom::rxml::NcName;
use xmpp_parsers::minidom::{Element, ElementBuilder};
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

use super::address::{AddressError, RoomJid};
use super::disco::Capabilities;
use super::rayo::NS_RAYO;

pub(super) const NS_CLIENT: &str = "jabber:client";
pub(super) const NS_STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
pub(super) const NS_MUC: &str = "http://jabber.org/protocol/muc";
pub(super) const NS_MUC_USER: &str = "http://jabber.org/protocol/muc#user";
pub(super) const NS_NICK: &str = "http://jabber.org/protocol/nick";
pub(super) const NS_DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
pub(super) const NS_PING: &str = "urn:xmpp:ping";
pub(super) const NS_JIGASI: &str = "http://jitsi.org/protocol/jigasi";
pub(super) const NS_JITMEET: &str = "http://jitsi.org/jitmeet";
pub(super) const NS_FOCUS: &str = "http://jitsi.org/protocol/focus";
pub(super) const NS_COLIBRI: &str = "http://jitsi.org/protocol/colibri";

/// The value of the colibri `version` stat in room presence.
pub(super) const VERSION: &str = concat!("jitsi-sip-gateway ", env!("CARGO_PKG_VERSION"));

/// Which way the call goes; dial-out also carries the Rayo headers of the `<dial/>` request
/// (e.g. `X-outbound-call-initiator-user`), repeated in the presence `<initiator>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Direction {
    In,
    Out { headers: Vec<(String, String)> },
}

/// Everything the room presence of a call says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    pub room: RoomJid,
    /// The MUC nick, which Jitsi uses as the endpoint id (see `random_endpoint_nick`).
    pub nick: String,
    /// Shown in the web UI: the caller's display name or number.
    pub display_name: String,
    pub password: Option<String>,
    pub region: Option<String>,
    pub stats_id: Option<String>,
    pub direction: Direction,
}

/// The part of a call's room presence that changes during the call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct PresenceState {
    pub status: Option<String>,
    pub audio_muted: bool,
}

/// The join presence: MUC `<x>` (with the password, if any) and every jigasi child.
///
/// Presences are built as plain elements: xmpp-parsers' typed `Presence` always adds
/// `<priority>0</priority>`, which jigasi's presence does not have.
pub(super) fn join_presence(
    req: &JoinRequest,
    caps: &Capabilities,
    state: &PresenceState,
) -> Result<Element, AddressError> {
    let mut muc = el("x", NS_MUC);
    if let Some(password) = &req.password {
        muc = muc.append(el("password", NS_MUC).append(password.as_str()));
    }
    room_presence(req, caps, state, Some(muc.build()))
}

/// A presence update (status, mute) in a room already joined: the same children as the join,
/// without the MUC `<x>`, which would ask the room for a new join.
pub(super) fn update_presence(
    req: &JoinRequest,
    caps: &Capabilities,
    state: &PresenceState,
) -> Result<Element, AddressError> {
    room_presence(req, caps, state, None)
}

fn room_presence(
    req: &JoinRequest,
    caps: &Capabilities,
    state: &PresenceState,
    muc: Option<Element>,
) -> Result<Element, AddressError> {
    let to = req.room.occupant_jid(&req.nick)?;
    let mut presence = el("presence", NS_CLIENT).attr(name("to"), to.to_string());
    if let Some(status) = &state.status {
        presence = presence.append(el("status", NS_CLIENT).append(status.as_str()));
    }
    presence = presence.append_all(muc).append(
        el("nick", NS_NICK)
            .append(req.display_name.as_str())
            .build(),
    );
    if let Some(region) = &req.region {
        presence = presence.append(
            el("jitsi_participant_region", NS_CLIENT)
                .append(region.as_str())
                .build(),
        );
    }
    presence = presence
        .append(
            el("stat", NS_COLIBRI)
                .attr(name("name"), "version")
                .attr(name("value"), VERSION)
                .build(),
        )
        .append(initiator(&req.direction))
        .append(
            el("features", NS_CLIENT)
                .append(feature("http://jitsi.org/protocol/jigasi"))
                .append(feature("urn:xmpp:jingle:dtmf:0"))
                .build(),
        );
    if let Some(stats_id) = &req.stats_id {
        presence = presence.append(el("stats-id", NS_CLIENT).append(stats_id.as_str()).build());
    }
    Ok(presence
        .append(
            el("audiomuted", NS_CLIENT)
                .append(if state.audio_muted { "true" } else { "false" })
                .build(),
        )
        .append(caps.caps_element())
        .build())
}

fn initiator(direction: &Direction) -> Element {
    let header = |name_: &str, value: &str| {
        el("header", NS_RAYO)
            .attr(name("name"), name_)
            .attr(name("value"), value)
    };
    let mut initiator = el("initiator", NS_JIGASI);
    match direction {
        Direction::In => initiator = initiator.append(header("JigasiCallDirection", "in")),
        Direction::Out { headers } => {
            initiator = initiator.append(header("JigasiCallDirection", "out"));
            for (n, v) in headers {
                initiator = initiator.append(header(n, v));
            }
        }
    }
    initiator.build()
}

fn feature(var: &str) -> Element {
    el("feature", NS_CLIENT).attr(name("var"), var).build()
}

/// A room presence that is not a call's (the brewery's): the given children and our caps. With
/// `join`, the MUC `<x>` that makes it a join; without, an update of a presence already there.
pub(super) fn plain_presence(
    room: &RoomJid,
    nick: &str,
    children: &[Element],
    caps: &Capabilities,
    join: bool,
) -> Result<Element, AddressError> {
    let to = room.occupant_jid(nick)?;
    let muc = join.then(|| el("x", NS_MUC).build());
    Ok(el("presence", NS_CLIENT)
        .attr(name("to"), to.to_string())
        .append_all(muc)
        .append_all(children.iter().cloned())
        .append(caps.caps_element())
        .build())
}

/// Leaving the room, optionally with a last status (e.g. why the call ended).
pub(super) fn leave_presence(
    room: &RoomJid,
    nick: &str,
    status: Option<&str>,
) -> Result<Element, AddressError> {
    let to = room.occupant_jid(nick)?;
    let mut presence = el("presence", NS_CLIENT)
        .attr(name("to"), to.to_string())
        .attr(name("type"), "unavailable");
    if let Some(status) = status {
        presence = presence.append(el("status", NS_CLIENT).append(status));
    }
    Ok(presence.build())
}

/// The focus request a client sends to `focus.<domain>` before joining, so that Jicofo creates
/// the conference (reference 1.5).
pub fn conference_request(room: &RoomJid) -> Element {
    el("conference", NS_FOCUS)
        .attr(name("room"), room.to_string())
        .build()
}

/// `get` or `set`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IqKind {
    Get,
    Set,
}

pub(super) fn iq_request(to: Option<Jid>, id: String, kind: IqKind, payload: Element) -> Iq {
    match kind {
        IqKind::Get => Iq::Get {
            from: None,
            to,
            id,
            payload,
        },
        IqKind::Set => Iq::Set {
            from: None,
            to,
            id,
            payload,
        },
    }
}

/// The answer to an IQ request someone sent us.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Result(Option<Element>),
    Error(ErrorReply),
}

/// An IQ error: an RFC 6120 condition, an optional text and an optional application-specific
/// condition (e.g. Jingle's `<unknown-session xmlns="urn:xmpp:jingle:errors:1"/>`).
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorReply {
    pub condition: ErrorCondition,
    pub text: Option<String>,
    pub app_condition: Option<Element>,
}

impl ErrorReply {
    pub fn new(condition: ErrorCondition) -> ErrorReply {
        ErrorReply {
            condition,
            text: None,
            app_condition: None,
        }
    }

    pub fn with_text(mut self, text: impl Into<String>) -> ErrorReply {
        self.text = Some(text.into());
        self
    }

    pub fn with_app_condition(mut self, condition: Element) -> ErrorReply {
        self.app_condition = Some(condition);
        self
    }
}

/// The RFC 6120 stanza error conditions a gateway answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCondition {
    BadRequest,
    Conflict,
    FeatureNotImplemented,
    Forbidden,
    InternalServerError,
    ItemNotFound,
    NotAcceptable,
    NotAllowed,
    NotAuthorized,
    ServiceUnavailable,
    UnexpectedRequest,
}

impl ErrorCondition {
    /// The condition and the error type RFC 6120 (section 8.3.3) recommends with it.
    fn wire(self) -> (DefinedCondition, ErrorType) {
        use DefinedCondition as C;
        match self {
            Self::BadRequest => (C::BadRequest, ErrorType::Modify),
            Self::Conflict => (C::Conflict, ErrorType::Cancel),
            Self::FeatureNotImplemented => (C::FeatureNotImplemented, ErrorType::Cancel),
            Self::Forbidden => (C::Forbidden, ErrorType::Auth),
            Self::InternalServerError => (C::InternalServerError, ErrorType::Cancel),
            Self::ItemNotFound => (C::ItemNotFound, ErrorType::Cancel),
            Self::NotAcceptable => (C::NotAcceptable, ErrorType::Modify),
            Self::NotAllowed => (C::NotAllowed, ErrorType::Cancel),
            Self::NotAuthorized => (C::NotAuthorized, ErrorType::Auth),
            Self::ServiceUnavailable => (C::ServiceUnavailable, ErrorType::Cancel),
            Self::UnexpectedRequest => (C::UnexpectedRequest, ErrorType::Wait),
        }
    }
}

pub(super) fn iq_reply(to: Option<Jid>, id: String, reply: Reply) -> Iq {
    match reply {
        Reply::Result(payload) => Iq::Result {
            from: None,
            to,
            id,
            payload,
        },
        Reply::Error(error) => {
            let (defined_condition, type_) = error.condition.wire();
            let mut texts = std::collections::BTreeMap::new();
            if let Some(text) = error.text {
                texts.insert("en".to_string(), text);
            }
            Iq::Error {
                from: None,
                to,
                id,
                payload: None,
                error: StanzaError {
                    type_,
                    by: None,
                    defined_condition,
                    texts,
                    other: error.app_condition,
                },
            }
        }
    }
}

/// The name of a stanza error condition as on the wire (`item-not-found`, …).
pub(super) fn condition_name(condition: &DefinedCondition) -> String {
    Element::from(condition.clone()).name().to_string()
}

pub(super) fn el(name_: &str, ns: &str) -> ElementBuilder {
    Element::builder(name_, ns)
}

/// An attribute name; every name used here is a valid NCName.
pub(super) fn name(n: &'static str) -> NcName {
    NcName::try_from(n).expect("attribute names in this module are valid NCNames")
}

#[cfg(test)]
pub(crate) mod test_support {
    use xmpp_parsers::minidom::{Element, Node};

    /// Parses XML written for a test, dropping the whitespace between elements, so fixtures can
    /// be indented and compared with `==` (which also ignores attribute order).
    pub(crate) fn xml(text: &str) -> Element {
        let mut el: Element = text.parse().unwrap_or_else(|e| panic!("{e}: {text}"));
        strip(&mut el);
        el
    }

    fn strip(el: &mut Element) {
        for node in el.take_nodes() {
            match node {
                Node::Text(t) if t.trim().is_empty() => {}
                Node::Element(mut child) => {
                    strip(&mut child);
                    el.append_child(child);
                }
                other => el.append_node(other),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::xml;
    use super::*;

    fn request(direction: Direction) -> JoinRequest {
        JoinRequest {
            room: RoomJid::parse("Room1@muc.meet.jitsi").unwrap(),
            nick: "1a2b3c4d".into(),
            display_name: "+15551234567".into(),
            password: None,
            region: None,
            stats_id: None,
            direction,
        }
    }

    fn caps() -> (Capabilities, String) {
        let caps = Capabilities::sip_gateway();
        let c = String::from(&caps.caps_element());
        (caps, c)
    }

    #[test]
    fn dial_in_join_presence_is_the_jigasi_presence() {
        let (caps, c) = caps();
        let presence =
            join_presence(&request(Direction::In), &caps, &PresenceState::default()).unwrap();
        let expected = xml(&format!(
            r#"<presence xmlns="jabber:client" to="room1@muc.meet.jitsi/1a2b3c4d">
                 <x xmlns="http://jabber.org/protocol/muc"/>
                 <nick xmlns="http://jabber.org/protocol/nick">+15551234567</nick>
                 <stat xmlns="http://jitsi.org/protocol/colibri" name="version" value="{VERSION}"/>
                 <initiator xmlns="http://jitsi.org/protocol/jigasi">
                   <header xmlns="urn:xmpp:rayo:1" name="JigasiCallDirection" value="in"/>
                 </initiator>
                 <features>
                   <feature var="http://jitsi.org/protocol/jigasi"/>
                   <feature var="urn:xmpp:jingle:dtmf:0"/>
                 </features>
                 <audiomuted>false</audiomuted>
                 {c}
               </presence>"#
        ));
        assert_eq!(presence, expected);
    }

    #[test]
    fn join_presence_carries_password_region_and_stats_id_when_known() {
        let (caps, c) = caps();
        let req = JoinRequest {
            password: Some("s3cr&t".into()),
            region: Some("eu-west-1".into()),
            stats_id: Some("jigasi-123".into()),
            ..request(Direction::In)
        };
        let presence = join_presence(&req, &caps, &PresenceState::default()).unwrap();
        let expected = xml(&format!(
            r#"<presence xmlns="jabber:client" to="room1@muc.meet.jitsi/1a2b3c4d">
                 <x xmlns="http://jabber.org/protocol/muc"><password>s3cr&amp;t</password></x>
                 <nick xmlns="http://jabber.org/protocol/nick">+15551234567</nick>
                 <jitsi_participant_region>eu-west-1</jitsi_participant_region>
                 <stat xmlns="http://jitsi.org/protocol/colibri" name="version" value="{VERSION}"/>
                 <initiator xmlns="http://jitsi.org/protocol/jigasi">
                   <header xmlns="urn:xmpp:rayo:1" name="JigasiCallDirection" value="in"/>
                 </initiator>
                 <features>
                   <feature var="http://jitsi.org/protocol/jigasi"/>
                   <feature var="urn:xmpp:jingle:dtmf:0"/>
                 </features>
                 <stats-id>jigasi-123</stats-id>
                 <audiomuted>false</audiomuted>
                 {c}
               </presence>"#
        ));
        assert_eq!(presence, expected);
    }

    #[test]
    fn dial_out_initiator_repeats_the_rayo_headers() {
        let el = initiator(&Direction::Out {
            headers: vec![
                ("X-outbound-call-initiator-user".into(), "alice".into()),
                ("X-outbound-call-initiator-group".into(), "sales".into()),
            ],
        });
        assert_eq!(
            el,
            xml(r#"<initiator xmlns="http://jitsi.org/protocol/jigasi">
                     <header xmlns="urn:xmpp:rayo:1" name="JigasiCallDirection" value="out"/>
                     <header xmlns="urn:xmpp:rayo:1" name="X-outbound-call-initiator-user" value="alice"/>
                     <header xmlns="urn:xmpp:rayo:1" name="X-outbound-call-initiator-group" value="sales"/>
                   </initiator>"#)
        );
    }

    #[test]
    fn status_update_keeps_every_jigasi_child_but_not_the_muc_join_element() {
        let (caps, c) = caps();
        let state = PresenceState {
            status: Some("Initializing Call".into()),
            audio_muted: true,
        };
        let presence = update_presence(&request(Direction::In), &caps, &state).unwrap();
        let expected = xml(&format!(
            r#"<presence xmlns="jabber:client" to="room1@muc.meet.jitsi/1a2b3c4d">
                 <status>Initializing Call</status>
                 <nick xmlns="http://jabber.org/protocol/nick">+15551234567</nick>
                 <stat xmlns="http://jitsi.org/protocol/colibri" name="version" value="{VERSION}"/>
                 <initiator xmlns="http://jitsi.org/protocol/jigasi">
                   <header xmlns="urn:xmpp:rayo:1" name="JigasiCallDirection" value="in"/>
                 </initiator>
                 <features>
                   <feature var="http://jitsi.org/protocol/jigasi"/>
                   <feature var="urn:xmpp:jingle:dtmf:0"/>
                 </features>
                 <audiomuted>true</audiomuted>
                 {c}
               </presence>"#
        ));
        assert_eq!(presence, expected);
    }

    #[test]
    fn leave_presence_is_unavailable_with_an_optional_status() {
        let room = RoomJid::parse("room1@muc.meet.jitsi").unwrap();
        assert_eq!(
            leave_presence(&room, "1a2b3c4d", None).unwrap(),
            xml(r#"<presence xmlns="jabber:client" type="unavailable"
                             to="room1@muc.meet.jitsi/1a2b3c4d"/>"#)
        );
        assert_eq!(
            leave_presence(&room, "1a2b3c4d", Some("Busy Here")).unwrap(),
            xml(r#"<presence xmlns="jabber:client" type="unavailable"
                             to="room1@muc.meet.jitsi/1a2b3c4d"><status>Busy Here</status></presence>"#)
        );
    }

    #[test]
    fn a_nick_that_is_not_a_valid_resource_is_refused() {
        let req = JoinRequest {
            nick: String::new(),
            ..request(Direction::In)
        };
        let (caps, _) = caps();
        assert!(matches!(
            join_presence(&req, &caps, &PresenceState::default()),
            Err(AddressError::InvalidNick { .. })
        ));
    }

    #[test]
    fn focus_request_names_the_room() {
        let room = RoomJid::parse("Room1@muc.meet.jitsi").unwrap();
        let iq = iq_request(
            Some("focus.meet.jitsi".parse().unwrap()),
            "c1".into(),
            IqKind::Set,
            conference_request(&room),
        );
        assert_eq!(
            Element::from(iq),
            xml(
                r#"<iq xmlns="jabber:client" type="set" id="c1" to="focus.meet.jitsi">
                     <conference xmlns="http://jitsi.org/protocol/focus" room="room1@muc.meet.jitsi"/>
                   </iq>"#
            )
        );
    }

    #[test]
    fn iq_result_and_error_replies() {
        let to: Jid = "room1@muc.meet.jitsi/focus".parse().unwrap();
        assert_eq!(
            Element::from(iq_reply(Some(to.clone()), "j1".into(), Reply::Result(None))),
            xml(
                r#"<iq xmlns="jabber:client" type="result" id="j1" to="room1@muc.meet.jitsi/focus"/>"#
            )
        );
        let error = ErrorReply::new(ErrorCondition::ItemNotFound)
            .with_text("no such session")
            .with_app_condition(xml(
                r#"<unknown-session xmlns="urn:xmpp:jingle:errors:1"/>"#,
            ));
        assert_eq!(
            Element::from(iq_reply(Some(to), "j2".into(), Reply::Error(error))),
            xml(
                r#"<iq xmlns="jabber:client" type="error" id="j2" to="room1@muc.meet.jitsi/focus">
                     <error type="cancel">
                       <item-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>
                       <text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas" xml:lang="en">no such session</text>
                       <unknown-session xmlns="urn:xmpp:jingle:errors:1"/>
                     </error>
                   </iq>"#
            )
        );
    }

    #[test]
    fn error_conditions_use_the_rfc_6120_error_types() {
        let reply = |c| {
            let iq = iq_reply(None, "x".into(), Reply::Error(ErrorReply::new(c)));
            let el = Element::from(iq);
            let error = el.get_child("error", NS_CLIENT).unwrap().clone();
            let cond = error.children().next().unwrap().name().to_string();
            (error.attr("type").unwrap().to_string(), cond)
        };
        assert_eq!(
            reply(ErrorCondition::BadRequest),
            ("modify".into(), "bad-request".into())
        );
        assert_eq!(
            reply(ErrorCondition::Forbidden),
            ("auth".into(), "forbidden".into())
        );
        assert_eq!(
            reply(ErrorCondition::ServiceUnavailable),
            ("cancel".into(), "service-unavailable".into())
        );
        assert_eq!(
            reply(ErrorCondition::UnexpectedRequest),
            ("wait".into(), "unexpected-request".into())
        );
    }
}
