//! Which room a call goes to. For now the rules jigasi has: the room header (its name is a
//! setting, matched case-insensitively by the caller of [`route`]), else the default room, else
//! the call is refused with 486 as jigasi does. A room name is validated before it can reach a
//! JID or an XML document; a hostile one is refused with a 4xx and nothing goes to XMPP.
//! Number rules and the PIN IVR (`dialplans/*.toml`) come later.

use crate::config::{DomainName, RoomName, SipSettings, XmppSettings};
use std::fmt;

/// What the caller's request says about the room.
#[derive(Debug, Clone, Default)]
pub struct Request<'a> {
    /// Value of the room header (`sip.room_header`), if present.
    pub room: Option<&'a str>,
    /// Value of the room password header (`sip.room_password_header`), if present.
    pub password: Option<&'a str>,
}

/// Where the call goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub room: RoomAddress,
    pub password: Option<String>,
    /// Where the room came from, for the call's log.
    pub via: RouteSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteSource {
    Header,
    DefaultRoom,
}

/// A validated room address: node lower-cased as the XMPP server will (nodeprep), and a domain.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomAddress {
    pub node: String,
    pub domain: String,
}

impl fmt::Display for RoomAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.node, self.domain)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No room header and no default room.
    #[error("no room given (no room header and no default room)")]
    NoRoom,
    /// The room header's value cannot be a room name.
    #[error("room {value:?} is not a valid room name: {why}")]
    InvalidRoom { value: String, why: String },
}

impl RouteError {
    /// The SIP final response for the refusal: 486 as jigasi answers a call without a room, 400
    /// for a value that cannot be a room.
    pub fn sip_status(&self) -> (u16, &'static str) {
        match self {
            RouteError::NoRoom => (486, "Busy Here"),
            RouteError::InvalidRoom { .. } => (400, "Invalid Room Name"),
        }
    }
}

/// Longest room node we accept; XMPP allows 1023 bytes, Jitsi room names are far shorter, and a
/// long one is more likely an attack than a meeting.
const MAX_ROOM_NODE: usize = 256;

/// Picks the room for an incoming call.
pub fn route(
    req: &Request<'_>,
    sip: &SipSettings,
    xmpp: &XmppSettings,
) -> Result<Route, RouteError> {
    let password = req
        .password
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned);
    if let Some(value) = req.room.map(str::trim).filter(|v| !v.is_empty()) {
        let room = parse_room(value, &xmpp.muc_domain)?;
        return Ok(Route {
            room,
            password,
            via: RouteSource::Header,
        });
    }
    match &sip.default_room {
        Some(default) => Ok(Route {
            room: address_of(default, &xmpp.muc_domain),
            password,
            via: RouteSource::DefaultRoom,
        }),
        None => Err(RouteError::NoRoom),
    }
}

/// Parses a room header value: a bare name or `name@domain`, possibly percent-encoded (PBXes
/// send `room%40muc.example.com`).
pub fn parse_room(value: &str, muc_domain: &DomainName) -> Result<RoomAddress, RouteError> {
    let invalid = |why: String| RouteError::InvalidRoom {
        value: value.chars().take(80).collect(),
        why,
    };
    let decoded = percent_decode(value).map_err(invalid)?;
    let name: RoomName = decoded.parse().map_err(|e| invalid(format!("{e}")))?;
    let node = name.name.as_str();
    if node.len() > MAX_ROOM_NODE {
        return Err(invalid(format!("longer than {MAX_ROOM_NODE} bytes")));
    }
    // Beyond what XMPP forbids, refuse what no Jitsi room name contains and what could confuse a
    // log, a URL or a shell: only letters, digits and a few separators.
    if let Some(c) = node
        .chars()
        .find(|c| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '+' | '~')))
    {
        return Err(invalid(format!(
            "character {c:?} is not allowed in a room name"
        )));
    }
    Ok(address_of(&name, muc_domain))
}

fn address_of(name: &RoomName, muc_domain: &DomainName) -> RoomAddress {
    RoomAddress {
        node: name.name.as_str().to_lowercase(),
        domain: name
            .domain
            .as_ref()
            .unwrap_or(muc_domain)
            .to_string()
            .to_lowercase(),
    }
}

/// RFC 3986 percent-decoding; the result must be UTF-8.
fn percent_decode(s: &str) -> Result<String, String> {
    if !s.contains('%') {
        return Ok(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent-encoding at byte {i}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "percent-encoding does not decode to UTF-8".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load, ConfigInput, Loaded};
    use std::collections::BTreeMap;

    fn settings(env: &[(&str, &str)]) -> Loaded {
        let mut map: BTreeMap<String, String> = [("JIGASI_XMPP_PASSWORD", "x")]
            .iter()
            .chain(env)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        map.retain(|_, v| !v.is_empty());
        load(&ConfigInput {
            file: None,
            env: &map,
            flags: vec![],
        })
        .expect("valid settings")
    }

    fn routed(room: Option<&str>, env: &[(&str, &str)]) -> Result<Route, RouteError> {
        let s = settings(env);
        route(
            &Request {
                room,
                password: None,
            },
            &s.settings.sip,
            &s.settings.xmpp,
        )
    }

    #[test]
    fn a_bare_room_name_gets_the_muc_domain_and_is_lower_cased() {
        let r = routed(Some("  StandUp "), &[]).unwrap();
        assert_eq!(r.room.to_string(), "standup@muc.meet.jitsi");
        assert_eq!(r.via, RouteSource::Header);
    }

    #[test]
    fn a_full_room_address_keeps_its_domain_even_percent_encoded() {
        let r = routed(Some("Daily@conference.tenant.example.com"), &[]).unwrap();
        assert_eq!(r.room.to_string(), "daily@conference.tenant.example.com");
        let r = routed(Some("daily%40muc.example.com"), &[]).unwrap();
        assert_eq!(r.room.to_string(), "daily@muc.example.com");
    }

    #[test]
    fn without_a_header_the_default_room_is_used_else_486() {
        let r = routed(None, &[("JIGASI_SIP_DEFAULT_ROOM", "lobby")]).unwrap();
        assert_eq!(
            (r.room.to_string().as_str(), r.via),
            ("lobby@muc.meet.jitsi", RouteSource::DefaultRoom)
        );
        let empty = routed(Some("   "), &[("JIGASI_SIP_DEFAULT_ROOM", "lobby")]).unwrap();
        assert_eq!(empty.via, RouteSource::DefaultRoom);
        let err = routed(None, &[]).unwrap_err();
        assert_eq!(err, RouteError::NoRoom);
        assert_eq!(err.sip_status().0, 486);
    }

    #[test]
    fn hostile_room_names_are_refused_with_400() {
        for bad in [
            "room/evil",
            "a'or'1",
            "<presence/>",
            "room\"x",
            "two words",
            "tab\there",
            "new\nline",
            "amp&amp",
            "colon:x",
            "room@bad domain",
            "room@",
            "%zz",
            "%ff%fe",
            "%3Cx%3E",
            "room%2Fevil",
            "semi;colon",
            "q?uery",
        ] {
            let err = routed(Some(bad), &[]).unwrap_err();
            assert!(
                matches!(err, RouteError::InvalidRoom { .. }),
                "{bad:?} → {err:?}"
            );
            assert_eq!(err.sip_status().0, 400, "{bad:?}");
        }
        let long = "a".repeat(MAX_ROOM_NODE + 1);
        assert!(routed(Some(&long), &[]).is_err());
    }

    #[test]
    fn ordinary_jitsi_room_names_pass() {
        for ok in [
            "standup",
            "team-sync_2024",
            "Ünïcödé",
            "a.b",
            "room+1",
            "x~y",
        ] {
            assert!(routed(Some(ok), &[]).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn the_password_header_is_carried_when_present() {
        let s = settings(&[]);
        let r = route(
            &Request {
                room: Some("secure"),
                password: Some(" s3cret "),
            },
            &s.settings.sip,
            &s.settings.xmpp,
        )
        .unwrap();
        assert_eq!(r.password.as_deref(), Some("s3cret"));
    }
}
