//! What a call's connection says it can do: the disco#info answer (XEP-0030) and the entity
//! capabilities hash (XEP-0115) put in presence.
//!
//! Jicofo builds its Jingle offer from these features: audio and no video or SCTP, so it offers
//! audio only. The jigasi feature (with the room presence) is how Jicofo and lib-jitsi-meet
//! recognise a SIP gateway; the DTMF feature turns on the keypad in the web UI.

use xmpp_parsers::caps::{self, Caps};
use xmpp_parsers::disco::{DiscoInfoResult, Identity};
use xmpp_parsers::hashes::Algo;
use xmpp_parsers::minidom::Element;

/// The XEP-0115 node: the one jigasi (through the Jitsi desktop stack) advertises.
pub const CAPS_NODE: &str = "http://jitsi.org";

/// Identity of a client that is a computer program, as jigasi's (category `client`, type `pc`).
const IDENTITY: (&str, &str, &str) = ("client", "pc", "jitsi-sip-gateway");

/// Features advertised by every call connection, in presence `<c>` and in disco#info.
pub const FEATURES: &[&str] = &[
    "http://jabber.org/protocol/disco#info",
    "http://jabber.org/protocol/caps",
    "urn:xmpp:ping",
    "urn:xmpp:jingle:1",
    "urn:xmpp:jingle:apps:rtp:1",
    "urn:xmpp:jingle:apps:rtp:audio",
    "urn:xmpp:jingle:transports:ice-udp:1",
    "urn:xmpp:jingle:apps:dtls:0",
    "urn:ietf:rfc:5761",
    "urn:ietf:rfc:5888",
    "http://jitsi.org/protocol/jigasi",
    "urn:xmpp:jingle:dtmf:0",
];

/// Our disco#info and its caps hash, computed once per connection.
#[derive(Debug, Clone)]
pub(super) struct Capabilities {
    info: DiscoInfoResult,
    caps: Caps,
}

impl Capabilities {
    pub(super) fn sip_gateway() -> Capabilities {
        let (category, type_, name) = IDENTITY;
        let info = DiscoInfoResult {
            node: None,
            identities: vec![Identity {
                category: category.into(),
                type_: type_.into(),
                lang: None,
                name: Some(name.into()),
            }],
            features: FEATURES.iter().map(|f| f.to_string()).collect(),
            extensions: Vec::new(),
        };
        let hash = caps::hash_caps(&caps::compute_disco(&info), Algo::Sha_1)
            .expect("SHA-1 is a hash xmpp-parsers implements");
        Capabilities {
            caps: Caps::new(CAPS_NODE, hash),
            info,
        }
    }

    /// `<c xmlns="http://jabber.org/protocol/caps" hash="sha-1" node=… ver=…/>`.
    pub(super) fn caps_element(&self) -> Element {
        self.caps.clone().into()
    }

    /// `node#ver`, the node a peer that read our caps asks disco#info about.
    pub(super) fn node_ver(&self) -> String {
        let query = caps::query_caps(self.caps.clone());
        query.node.unwrap_or_default()
    }

    /// The answer to a disco#info query for `node`, or `None` when the node is not ours (the
    /// query then gets `item-not-found`).
    pub(super) fn answer(&self, node: Option<&str>) -> Option<Element> {
        let mut info = self.info.clone();
        match node {
            None => {}
            Some(n) if n == self.node_ver() => info.node = Some(n.to_string()),
            Some(_) => return None,
        }
        Some(info.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmpp::stanzas::test_support::xml;

    // The XEP-0115 string S for our identity and features, hashed independently of
    // xmpp-parsers (Python: base64(sha1(S))), so a change of features or of the hashing is seen:
    // S = "client/pc//jitsi-sip-gateway<" + "<".join(sorted(FEATURES)) + "<"
    const EXPECTED_VER: &str = "uFKuUEa2CNC3yZ3E8NhBTgWBlHE=";

    #[test]
    fn caps_element_carries_the_xep_0115_hash_of_our_disco_info() {
        let caps = Capabilities::sip_gateway();
        assert_eq!(
            caps.caps_element(),
            xml(&format!(
                r#"<c xmlns="http://jabber.org/protocol/caps" hash="sha-1"
                      node="http://jitsi.org" ver="{EXPECTED_VER}"/>"#
            ))
        );
        assert_eq!(caps.node_ver(), format!("http://jitsi.org#{EXPECTED_VER}"));
    }

    #[test]
    fn disco_info_lists_audio_jingle_and_the_jigasi_features_but_no_video_or_sctp() {
        let answer = Capabilities::sip_gateway().answer(None).unwrap();
        let expected = xml(r#"<query xmlns="http://jabber.org/protocol/disco#info">
                 <identity category="client" type="pc" name="jitsi-sip-gateway"/>
                 <feature var="http://jabber.org/protocol/caps"/>
                 <feature var="http://jabber.org/protocol/disco#info"/>
                 <feature var="http://jitsi.org/protocol/jigasi"/>
                 <feature var="urn:ietf:rfc:5761"/>
                 <feature var="urn:ietf:rfc:5888"/>
                 <feature var="urn:xmpp:jingle:1"/>
                 <feature var="urn:xmpp:jingle:apps:dtls:0"/>
                 <feature var="urn:xmpp:jingle:apps:rtp:1"/>
                 <feature var="urn:xmpp:jingle:apps:rtp:audio"/>
                 <feature var="urn:xmpp:jingle:dtmf:0"/>
                 <feature var="urn:xmpp:jingle:transports:ice-udp:1"/>
                 <feature var="urn:xmpp:ping"/>
               </query>"#);
        assert_eq!(answer, expected);
        let text = String::from(&answer);
        assert!(!text.contains("rtp:video"), "{text}");
        assert!(!text.contains("sctp"), "{text}");
    }

    #[test]
    fn disco_info_for_our_caps_node_echoes_the_node_and_other_nodes_are_not_found() {
        let caps = Capabilities::sip_gateway();
        let node = caps.node_ver();
        let answer = caps.answer(Some(&node)).unwrap();
        assert_eq!(answer.attr("node"), Some(node.as_str()));
        assert_eq!(answer.children().count(), 1 + FEATURES.len());
        assert_eq!(caps.answer(Some("http://jitsi.org#other")), None);
    }
}
