//! Rayo (`urn:xmpp:rayo:1`) as Jitsi uses it for dial-out: the `<dial/>` request a room sends
//! (through Jicofo or Prosody's invite module), the `<ref/>` result naming the occupant that will
//! carry the call, and the `<hangup/>` request sent to that occupant. Pure: elements in, typed
//! values out.
//!
//! Shapes (reference `jigasi-behaviour.md` 2.1, 2.2, 2.6):
//!
//! ```xml
//! <dial xmlns="urn:xmpp:rayo:1" to="+15551234567" from="fromnumber">
//!   <header name="JvbRoomName" value="room@muc.meet.jitsi"/>
//!   <header name="JvbRoomPassword" value="secret"/>
//!   <header name="X-outbound-call-initiator-user" value="alice"/>
//! </dial>
//! <ref xmlns="urn:xmpp:rayo:1" uri="xmpp:room@muc.meet.jitsi/1a2b3c4d"/>
//! <hangup xmlns="urn:xmpp:rayo:1"/>
//! ```

use xmpp_parsers::minidom::Element;

use super::address::{AddressError, RoomJid};
use super::stanzas::{el, name, ErrorCondition, ErrorReply};

pub const NS_RAYO: &str = "urn:xmpp:rayo:1";

/// The header naming the room to call from; required.
pub const ROOM_HEADER: &str = "JvbRoomName";
/// The header carrying the room's password, when it has one.
pub const PASSWORD_HEADER: &str = "JvbRoomPassword";
/// The `to` of a dial asking for a transcriber rather than a phone call.
const TRANSCRIBER: &str = "jitsi_meet_transcribe";

/// A room's request to call someone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RayoDial {
    /// Whom to call, as typed in the web UI: a number, an extension or a SIP URI.
    pub to: String,
    /// The caller the room asks for (lib-jitsi-meet sends the literal `fromnumber`); `None` when
    /// absent or empty.
    pub from: Option<String>,
    /// The room the call joins, from `JvbRoomName`.
    pub room: RoomJid,
    /// From `JvbRoomPassword`.
    pub password: Option<String>,
    /// Every other header, in order: they go into the presence `<initiator>` and onto the INVITE
    /// (e.g. `X-outbound-call-initiator-user`, added by Prosody's Rayo filter).
    pub headers: Vec<(String, String)>,
}

/// Why a dial request cannot be carried out. [`DialError::reply`] is the IQ error to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialError {
    #[error("not a Rayo <dial/>")]
    NotADial,
    #[error("the dial has no 'to': nobody to call")]
    MissingTo,
    /// jigasi's words, which Jicofo logs when it relays the error.
    #[error("No JvbRoomName header found")]
    MissingRoom,
    #[error("JvbRoomName {value:?} is not a room address: {why}")]
    InvalidRoom { value: String, why: String },
    /// Jicofo checks only the first `JvbRoomName` against the conference, so a second one could
    /// point the call at another room.
    #[error("the dial has more than one {0} header")]
    RepeatedHeader(&'static str),
    #[error("a dial header has no name")]
    UnnamedHeader,
    #[error("transcription is not offered by this gateway")]
    Transcription,
}

impl DialError {
    /// The RFC 6120 condition: the request is malformed (`bad-request`), or asks for what this
    /// gateway does not do (`not-acceptable` for a transcriber, as jigasi without transcription).
    pub fn condition(&self) -> ErrorCondition {
        match self {
            DialError::Transcription => ErrorCondition::NotAcceptable,
            DialError::NotADial => ErrorCondition::FeatureNotImplemented,
            _ => ErrorCondition::BadRequest,
        }
    }

    /// The IQ error answering the request, with this error's text.
    pub fn reply(&self) -> ErrorReply {
        ErrorReply::new(self.condition()).with_text(self.to_string())
    }
}

impl RayoDial {
    /// Reads a `<dial/>` IQ payload. Headers in other namespaces are ignored; a header without a
    /// value counts as an empty value.
    pub fn parse(payload: &Element) -> Result<RayoDial, DialError> {
        if !is_dial(payload) {
            return Err(DialError::NotADial);
        }
        let to = match payload.attr("to") {
            Some(to) if !to.trim().is_empty() => to.to_string(),
            _ => return Err(DialError::MissingTo),
        };
        if to == TRANSCRIBER {
            return Err(DialError::Transcription);
        }
        let from = payload
            .attr("from")
            .filter(|f| !f.is_empty())
            .map(str::to_string);
        let mut room: Option<String> = None;
        let mut password: Option<String> = None;
        let mut headers = Vec::new();
        for header in payload.children().filter(|c| c.is("header", NS_RAYO)) {
            let name_ = header
                .attr("name")
                .filter(|n| !n.is_empty())
                .ok_or(DialError::UnnamedHeader)?;
            let value = header.attr("value").unwrap_or_default().to_string();
            let (slot, known) = match name_ {
                ROOM_HEADER => (&mut room, ROOM_HEADER),
                PASSWORD_HEADER => (&mut password, PASSWORD_HEADER),
                _ => {
                    headers.push((name_.to_string(), value));
                    continue;
                }
            };
            if slot.replace(value).is_some() {
                return Err(DialError::RepeatedHeader(known));
            }
        }
        let value = room.ok_or(DialError::MissingRoom)?;
        let room = RoomJid::parse(&value).map_err(|e| DialError::InvalidRoom {
            why: room_error(&e),
            value,
        })?;
        Ok(RayoDial {
            to,
            from,
            room,
            password: password.filter(|p| !p.is_empty()),
            headers,
        })
    }
}

fn room_error(e: &AddressError) -> String {
    match e {
        AddressError::Invalid { why, .. } => why.clone(),
        AddressError::NoRoomName(_) => "no room name before '@'".into(),
        AddressError::HasResource(_) => "it names an occupant ('/')".into(),
        AddressError::InvalidNick { why, .. } => why.clone(),
    }
}

/// Whether an IQ payload is a Rayo `<dial/>`.
pub fn is_dial(payload: &Element) -> bool {
    payload.is("dial", NS_RAYO)
}

/// Whether an IQ payload is a Rayo `<hangup/>` (sent to a call's occupant to end the call).
pub fn is_hangup(payload: &Element) -> bool {
    payload.is("hangup", NS_RAYO)
}

/// `xmpp:room@muc/nick`: what the `<ref/>` of an accepted dial names (the occupant carrying the
/// call, to which the web UI sends `<hangup/>`).
pub fn ref_uri(room: &RoomJid, nick: &str) -> Result<String, AddressError> {
    Ok(format!("xmpp:{}", room.occupant(nick)?))
}

/// The result payload of an accepted dial: `<ref xmlns="urn:xmpp:rayo:1" uri=…/>`.
pub fn ref_element(uri: &str) -> Element {
    el("ref", NS_RAYO).attr(name("uri"), uri).build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmpp::stanzas::test_support::xml;

    fn parse(text: &str) -> Result<RayoDial, DialError> {
        RayoDial::parse(&xml(text))
    }

    #[test]
    fn dial_from_the_web_ui_through_prosodys_filter_keeps_every_other_header_in_order() {
        let dial = parse(
            r#"<dial xmlns="urn:xmpp:rayo:1" to="+15551234567" from="fromnumber">
                 <header name="JvbRoomName" value="Room1@muc.meet.jitsi"/>
                 <header name="X-outbound-call-initiator-user" value="alice@example.com"/>
                 <header name="JvbRoomPassword" value="s3cret"/>
                 <header name="X-outbound-call-initiator-group" value="acme"/>
               </dial>"#,
        )
        .unwrap();
        assert_eq!(
            dial,
            RayoDial {
                to: "+15551234567".into(),
                from: Some("fromnumber".into()),
                room: RoomJid::parse("room1@muc.meet.jitsi").unwrap(),
                password: Some("s3cret".into()),
                headers: vec![
                    (
                        "X-outbound-call-initiator-user".into(),
                        "alice@example.com".into()
                    ),
                    ("X-outbound-call-initiator-group".into(), "acme".into()),
                ],
            }
        );
    }

    #[test]
    fn dial_from_prosodys_invite_module_has_only_the_room() {
        let dial = parse(
            r#"<dial xmlns="urn:xmpp:rayo:1" from="fromnumber" to="sip:bob@pbx.example">
                 <header name="JvbRoomName" value="standup@muc.meet.jitsi"/></dial>"#,
        )
        .unwrap();
        assert_eq!(dial.to, "sip:bob@pbx.example");
        assert_eq!(dial.room.to_string(), "standup@muc.meet.jitsi");
        assert_eq!(dial.password, None);
        assert!(dial.headers.is_empty());
    }

    #[test]
    fn absent_or_empty_from_and_password_are_none_and_a_valueless_header_is_empty() {
        let dial = parse(
            r#"<dial xmlns="urn:xmpp:rayo:1" to="100" from="">
                 <header name="JvbRoomName" value="r@muc.meet.jitsi"/>
                 <header name="JvbRoomPassword" value=""/>
                 <header name="X-Flag"/>
                 <header xmlns="urn:example" name="Ignored" value="x"/>
               </dial>"#,
        )
        .unwrap();
        assert_eq!(dial.from, None);
        assert_eq!(dial.password, None);
        assert_eq!(dial.headers, vec![("X-Flag".to_string(), String::new())]);
    }

    #[test]
    fn dial_errors_are_typed_and_answer_with_bad_request() {
        let room = r#"<header name="JvbRoomName" value="r@muc.meet.jitsi"/>"#;
        let cases = [
            (
                format!(r#"<dial xmlns="urn:xmpp:rayo:1" from="x">{room}</dial>"#),
                DialError::MissingTo,
            ),
            (
                format!(r#"<dial xmlns="urn:xmpp:rayo:1" to=" ">{room}</dial>"#),
                DialError::MissingTo,
            ),
            (
                r#"<dial xmlns="urn:xmpp:rayo:1" to="100">
                     <header name="X-Other" value="1"/></dial>"#
                    .to_string(),
                DialError::MissingRoom,
            ),
            (
                format!(r#"<dial xmlns="urn:xmpp:rayo:1" to="100">{room}{room}</dial>"#),
                DialError::RepeatedHeader("JvbRoomName"),
            ),
            (
                format!(
                    r#"<dial xmlns="urn:xmpp:rayo:1" to="100">{room}
                         <header value="v"/></dial>"#
                ),
                DialError::UnnamedHeader,
            ),
        ];
        for (text, expected) in cases {
            let got = parse(&text).unwrap_err();
            assert_eq!(got, expected, "{text}");
            assert_eq!(got.condition(), ErrorCondition::BadRequest);
        }
        assert_eq!(
            DialError::MissingRoom.reply(),
            ErrorReply::new(ErrorCondition::BadRequest).with_text("No JvbRoomName header found")
        );
    }

    #[test]
    fn room_header_must_name_a_room() {
        for value in [
            "muc.meet.jitsi",
            "room@muc.meet.jitsi/focus",
            "bad room@muc.meet.jitsi",
            "",
        ] {
            let text = format!(
                r#"<dial xmlns="urn:xmpp:rayo:1" to="100">
                     <header name="JvbRoomName" value="{value}"/></dial>"#
            );
            match parse(&text) {
                Err(DialError::InvalidRoom { value: v, .. }) => assert_eq!(v, value),
                other => panic!("{value:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn transcriber_request_is_not_acceptable_and_other_payloads_are_not_dials() {
        let transcribe = parse(
            r#"<dial xmlns="urn:xmpp:rayo:1" to="jitsi_meet_transcribe">
                 <header name="JvbRoomName" value="r@muc.meet.jitsi"/></dial>"#,
        )
        .unwrap_err();
        assert_eq!(transcribe, DialError::Transcription);
        assert_eq!(transcribe.condition(), ErrorCondition::NotAcceptable);
        assert_eq!(
            parse(r#"<dial xmlns="urn:example" to="100"/>"#),
            Err(DialError::NotADial)
        );
        assert!(!is_dial(&xml(r#"<hangup xmlns="urn:xmpp:rayo:1"/>"#)));
    }

    #[test]
    fn ref_result_names_the_occupant_of_the_call() {
        let room = RoomJid::parse("Room1@muc.meet.jitsi").unwrap();
        let uri = ref_uri(&room, "1a2b3c4d").unwrap();
        assert_eq!(uri, "xmpp:room1@muc.meet.jitsi/1a2b3c4d");
        assert_eq!(
            ref_element(&uri),
            xml(r#"<ref xmlns="urn:xmpp:rayo:1" uri="xmpp:room1@muc.meet.jitsi/1a2b3c4d"/>"#)
        );
        assert!(ref_uri(&room, "").is_err());
    }

    #[test]
    fn hangup_is_recognised_by_name_and_namespace() {
        assert!(is_hangup(&xml(r#"<hangup xmlns="urn:xmpp:rayo:1"/>"#)));
        assert!(!is_hangup(&xml(r#"<hangup xmlns="urn:example"/>"#)));
        assert!(!is_hangup(&xml(
            r#"<jingle xmlns="urn:xmpp:jingle:1" action="session-terminate" sid="s"/>"#
        )));
    }
}
