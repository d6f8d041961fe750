//! What an inbound stanza means for a call. Pure: a stanza (and the room state) in, an event out.

use xmpp_parsers::iq::Iq;
use xmpp_parsers::minidom::Element;
use xmpp_parsers::stanza::Stanza;

use super::muc::{JoinError, Occupant, Rooms};
use super::stanzas::condition_name;

/// An event for the call that owns the connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// Our own presence (status 110) came back: we are in the room. `occupants` are those whose
    /// presence arrived before it (the server sends them first).
    SelfJoined {
        occupants: Vec<Occupant>,
    },
    JoinFailed(JoinError),
    /// Someone came into the room after we joined.
    OccupantJoined(Occupant),
    OccupantLeft {
        nick: String,
    },
    /// We were removed from the room without asking (kick, ban, affiliation change, shutdown).
    Kicked {
        reason: Option<String>,
    },
    /// `alternate` is where the room's occupants are sent (a lobby turned off: the main room).
    RoomDestroyed {
        reason: Option<String>,
        alternate: Option<String>,
    },
    /// An IQ request for the call to answer (Jingle, mute, …) with `Connection::reply`.
    IqSet {
        from: String,
        id: String,
        payload: Element,
    },
    /// An IQ query the connection does not answer itself (it answers disco#info and ping).
    IqGet {
        from: String,
        id: String,
        payload: Element,
    },
    /// A response to a request that nobody waits for any more (it timed out).
    IqResult {
        id: String,
        payload: Option<Element>,
    },
    IqError {
        id: String,
        condition: String,
    },
    /// Nothing a call acts on (presence updates, messages, other rooms).
    Other,
}

pub(super) fn classify(stanza: Stanza, rooms: &mut Rooms) -> Inbound {
    match stanza {
        Stanza::Presence(p) => rooms.on_presence(&p),
        Stanza::Iq(iq) => classify_iq(iq),
        Stanza::Message(_) => Inbound::Other,
    }
}

fn classify_iq(iq: Iq) -> Inbound {
    let from = |f: Option<xmpp_parsers::jid::Jid>| f.map(|j| j.to_string()).unwrap_or_default();
    match iq {
        Iq::Set {
            from: f,
            id,
            payload,
            ..
        } => Inbound::IqSet {
            from: from(f),
            id,
            payload,
        },
        Iq::Get {
            from: f,
            id,
            payload,
            ..
        } => Inbound::IqGet {
            from: from(f),
            id,
            payload,
        },
        Iq::Result { id, payload, .. } => Inbound::IqResult { id, payload },
        Iq::Error { id, error, .. } => Inbound::IqError {
            id,
            condition: condition_name(&error.defined_condition),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmpp::stanzas::test_support::xml;

    fn classify_xml(text: &str) -> Inbound {
        let stanza = Stanza::try_from(xml(text)).unwrap();
        classify(stanza, &mut Rooms::new("focus"))
    }

    #[test]
    fn jingle_session_initiate_is_an_iq_set_with_its_raw_payload() {
        let got = classify_xml(
            r#"<iq xmlns="jabber:client" type="set" id="k1"
                   from="room1@muc.meet.jitsi/focus" to="abc@meet.jitsi/r">
                 <jingle xmlns="urn:xmpp:jingle:1" action="session-initiate" sid="s1"
                         initiator="focus@auth.meet.jitsi/focus">
                   <content name="audio" creator="initiator"><x-unknown xmlns="urn:example"/></content>
                 </jingle>
               </iq>"#,
        );
        let Inbound::IqSet { from, id, payload } = got else {
            panic!("{got:?}")
        };
        assert_eq!(from, "room1@muc.meet.jitsi/focus");
        assert_eq!(id, "k1");
        // Nothing of the payload is lost, unknown children included.
        assert_eq!(
            payload,
            xml(
                r#"<jingle xmlns="urn:xmpp:jingle:1" action="session-initiate" sid="s1"
                           initiator="focus@auth.meet.jitsi/focus">
                     <content name="audio" creator="initiator"><x-unknown xmlns="urn:example"/></content>
                   </jingle>"#
            )
        );
    }

    #[test]
    fn iq_get_result_and_error_are_classified() {
        assert!(matches!(
            classify_xml(
                r#"<iq xmlns="jabber:client" type="get" id="g" from="x@y/z">
                     <time xmlns="urn:xmpp:time"/></iq>"#
            ),
            Inbound::IqGet { ref from, ref id, .. } if from == "x@y/z" && id == "g"
        ));
        assert_eq!(
            classify_xml(r#"<iq xmlns="jabber:client" type="result" id="r"/>"#),
            Inbound::IqResult {
                id: "r".into(),
                payload: None
            }
        );
        assert_eq!(
            classify_xml(
                r#"<iq xmlns="jabber:client" type="error" id="e" from="focus.meet.jitsi">
                     <error type="cancel"><service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error>
                   </iq>"#
            ),
            Inbound::IqError {
                id: "e".into(),
                condition: "service-unavailable".into()
            }
        );
    }

    #[test]
    fn messages_are_nothing_for_a_call() {
        assert_eq!(
            classify_xml(
                r#"<message xmlns="jabber:client" type="groupchat" from="room1@muc.meet.jitsi/alice">
                     <body>hi</body></message>"#
            ),
            Inbound::Other
        );
    }
}
