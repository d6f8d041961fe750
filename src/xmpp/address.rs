//! Addresses: a room's JID as the server spells it, and the endpoint nick of a call.
//!
//! Prosody nodepreps room JIDs (`JigasiBrewery@…` comes back as `jigasibrewery@…`), so a room is
//! kept in its prepared form and every comparison is made on prepared JIDs.

use std::fmt;
use std::str::FromStr;

use xmpp_parsers::jid::{BareJid, FullJid};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("{text:?} is not a valid XMPP address: {why}")]
    Invalid { text: String, why: String },
    #[error("{0:?} is not a room address: it has no room name before '@'")]
    NoRoomName(String),
    #[error("{0:?} is not a room address: it names an occupant (has a '/')")]
    HasResource(String),
    #[error("{nick:?} cannot be a nick in a room: {why}")]
    InvalidNick { nick: String, why: String },
}

/// A MUC room, `name@muc.domain`, with the name nodeprepped (lower-cased) and the domain
/// nameprepped, exactly as the server will write it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomJid(BareJid);

impl RoomJid {
    /// Parses `name@domain`.
    pub fn parse(text: &str) -> Result<RoomJid, AddressError> {
        if text.contains('/') {
            return Err(AddressError::HasResource(text.to_string()));
        }
        let bare = BareJid::new(text).map_err(|e| AddressError::Invalid {
            text: text.to_string(),
            why: e.to_string(),
        })?;
        if bare.node().is_none() {
            return Err(AddressError::NoRoomName(text.to_string()));
        }
        Ok(RoomJid(bare))
    }

    /// The room `node@domain`.
    pub fn new(node: &str, domain: &str) -> Result<RoomJid, AddressError> {
        if node.is_empty() {
            return Err(AddressError::NoRoomName(format!("@{domain}")));
        }
        if node.contains('@') {
            return Err(AddressError::Invalid {
                text: format!("{node}@{domain}"),
                why: "the room name contains '@'".into(),
            });
        }
        RoomJid::parse(&format!("{node}@{domain}"))
    }

    /// The room name (the part before `@`), lower-cased.
    pub fn node(&self) -> &str {
        self.0.node().map(|n| n.as_str()).unwrap_or_default()
    }

    pub fn domain(&self) -> &str {
        self.0.domain().as_str()
    }

    /// `room@domain/nick`: the address of an occupant.
    pub fn occupant(&self, nick: &str) -> Result<String, AddressError> {
        self.occupant_jid(nick).map(|j| j.to_string())
    }

    pub(super) fn occupant_jid(&self, nick: &str) -> Result<FullJid, AddressError> {
        self.0
            .with_resource_str(nick)
            .map_err(|e| AddressError::InvalidNick {
                nick: nick.to_string(),
                why: e.to_string(),
            })
    }

    pub(super) fn bare(&self) -> &BareJid {
        &self.0
    }
}

impl fmt::Display for RoomJid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for RoomJid {
    type Err = AddressError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        RoomJid::parse(text)
    }
}

/// A fresh endpoint id for a call: 8 lower-case hex digits, zero padded (a random 32-bit number),
/// the form Jitsi uses for endpoint ids and jigasi for its MUC nick.
pub fn random_endpoint_nick() -> String {
    format!("{:08x}", rand::random::<u32>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_name_is_lower_cased_as_the_server_does() {
        let room = RoomJid::parse("JigasiBrewery@Internal-MUC.Meet.Jitsi").unwrap();
        assert_eq!(room.node(), "jigasibrewery");
        assert_eq!(room.domain(), "internal-muc.meet.jitsi");
        assert_eq!(room.to_string(), "jigasibrewery@internal-muc.meet.jitsi");
        assert_eq!(
            room,
            RoomJid::new("JIGASIBREWERY", "internal-muc.meet.jitsi").unwrap()
        );
    }

    #[test]
    fn room_address_needs_a_name_and_no_occupant() {
        assert_eq!(
            RoomJid::parse("muc.meet.jitsi"),
            Err(AddressError::NoRoomName("muc.meet.jitsi".into()))
        );
        assert!(matches!(
            RoomJid::parse("room@muc.meet.jitsi/focus"),
            Err(AddressError::HasResource(_))
        ));
        assert!(matches!(
            RoomJid::parse("bad room@muc.meet.jitsi"),
            Err(AddressError::Invalid { .. })
        ));
        assert!(matches!(
            RoomJid::parse(""),
            Err(AddressError::Invalid { .. })
        ));
        assert!(matches!(
            RoomJid::new("a@b", "muc.meet.jitsi"),
            Err(AddressError::Invalid { .. })
        ));
        assert!(matches!(
            RoomJid::new("", "muc.meet.jitsi"),
            Err(AddressError::NoRoomName(_))
        ));
    }

    #[test]
    fn occupant_address_keeps_the_nick_as_given() {
        let room = RoomJid::parse("room1@muc.meet.jitsi").unwrap();
        assert_eq!(
            room.occupant("1a2B3c4d").unwrap(),
            "room1@muc.meet.jitsi/1a2B3c4d"
        );
        assert!(matches!(
            room.occupant(""),
            Err(AddressError::InvalidNick { .. })
        ));
    }

    #[test]
    fn endpoint_nick_is_eight_lower_case_hex_digits() {
        for _ in 0..1000 {
            let nick = random_endpoint_nick();
            assert_eq!(nick.len(), 8, "{nick}");
            assert!(
                nick.chars()
                    .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
                "{nick}"
            );
        }
        assert_ne!(random_endpoint_nick(), random_endpoint_nick());
    }
}
