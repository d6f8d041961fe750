//! Typed setting values. Each type can only hold a valid value; parsing happens once, here, and
//! returns an [`InvalidValue`] whose text says what is wrong (the caller adds key and origin).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

/// Why a text is not a valid value of some type. The message never repeats the value itself (the
/// caller shows it, masked when secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(String);

impl InvalidValue {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        InvalidValue(message.into())
    }

    /// What is wrong, e.g. `not a port number (expected 1024-65535)`.
    pub fn message(&self) -> &str {
        &self.0
    }
}

type Parsed<T> = Result<T, InvalidValue>;

// ---------------------------------------------------------------------------------------------
// Scalars

/// Booleans as docker-jitsi-meet writes them: Go's `ParseBool` spellings plus yes/no/on/off, any
/// case.
pub(crate) fn parse_bool(text: &str) -> Parsed<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "yes" | "on" => Ok(true),
        "0" | "f" | "false" | "no" | "off" => Ok(false),
        _ => Err(InvalidValue::new(
            "not a boolean (expected true/false, 1/0, yes/no or on/off)",
        )),
    }
}

/// A decimal integer within `min..=max`; `noun` names what was expected ("a port number").
pub(crate) fn parse_int(text: &str, min: i64, max: i64, noun: &str) -> Parsed<i64> {
    let range = || {
        if min == i64::MIN && max == i64::MAX {
            String::new()
        } else {
            format!(" (expected {min}-{max})")
        }
    };
    let value: i128 = text
        .trim()
        .parse()
        .map_err(|_| InvalidValue::new(format!("not {noun}{}", range())))?;
    if value < i128::from(min) || value > i128::from(max) {
        return Err(InvalidValue::new(format!("out of range{}", range())));
    }
    i64::try_from(value).map_err(|_| InvalidValue::new(format!("out of range{}", range())))
}

pub(crate) fn parse_u16(text: &str, min: u16, max: u16, noun: &str) -> Parsed<u16> {
    let v = parse_int(text, i64::from(min), i64::from(max), noun)?;
    u16::try_from(v).map_err(|_| InvalidValue::new("out of range"))
}

pub(crate) fn parse_u32(text: &str, min: u32, max: u32, noun: &str) -> Parsed<u32> {
    let v = parse_int(text, i64::from(min), i64::from(max), noun)?;
    u32::try_from(v).map_err(|_| InvalidValue::new("out of range"))
}

pub(crate) fn parse_u64(text: &str, min: u64, max: u64, noun: &str) -> Parsed<u64> {
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    let min = i64::try_from(min).unwrap_or(i64::MAX);
    let v = parse_int(text, min, max, noun)?;
    u64::try_from(v).map_err(|_| InvalidValue::new("out of range"))
}

/// Free text that ends up in presence or logs: anything printable, not empty.
pub(crate) fn parse_text(text: &str) -> Parsed<String> {
    if text.is_empty() {
        return Err(InvalidValue::new("must not be empty"));
    }
    if text.chars().any(char::is_control) {
        return Err(InvalidValue::new("must not contain control characters"));
    }
    Ok(text.to_owned())
}

/// A user name for digest authentication: printable, no spaces or quotes.
pub(crate) fn parse_auth_user(text: &str) -> Parsed<String> {
    if text.is_empty() {
        return Err(InvalidValue::new("must not be empty"));
    }
    if text
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '"')
    {
        return Err(InvalidValue::new(
            "must not contain spaces, quotes or control characters",
        ));
    }
    Ok(text.to_owned())
}

/// A prefix put in front of dial-out numbers (may be empty).
pub(crate) fn parse_dial_prefix(text: &str) -> Parsed<String> {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "+*#-_.".contains(c))
    {
        Ok(text.to_owned())
    } else {
        Err(InvalidValue::new(
            "expected digits, letters or + * # - _ . only",
        ))
    }
}

pub(crate) fn parse_ip(text: &str) -> Parsed<IpAddr> {
    let inner = text
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(text);
    inner
        .parse()
        .map_err(|_| InvalidValue::new("not an IP address"))
}

pub(crate) fn parse_socket_addr(text: &str) -> Parsed<std::net::SocketAddr> {
    text.parse().map_err(|_| {
        InvalidValue::new("not a socket address (expected IP:port, e.g. 0.0.0.0:5060 or [::]:5060)")
    })
}

// ---------------------------------------------------------------------------------------------
// Secret

/// A password. `Debug` and `Display` never show it; use [`Secret::expose`] where it is needed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub(crate) const MASK: &'static str = "********";

    pub(crate) fn parse(text: &str) -> Parsed<Secret> {
        if text.is_empty() {
            Err(InvalidValue::new("must not be empty"))
        } else {
            Ok(Secret(text.to_owned()))
        }
    }

    /// The secret itself, for the code that sends it (SASL, digest auth).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", Secret::MASK)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Secret::MASK)
    }
}

// ---------------------------------------------------------------------------------------------
// Names

/// A DNS-style domain name, lower-cased: dot-separated labels of letters, digits, `-` and `_`
/// (the underscore because container host names have them).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainName(String);

impl DomainName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for DomainName {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Parsed<Self> {
        let bad = |why: &str| InvalidValue::new(format!("not a valid domain name: {why}"));
        if text.is_empty() {
            return Err(bad("empty"));
        }
        if text.len() > 253 {
            return Err(bad("longer than 253 characters"));
        }
        if text.ends_with('.') {
            return Err(bad("must not end with a dot"));
        }
        let mut last = "";
        for label in text.split('.') {
            if label.is_empty() {
                return Err(bad("empty label"));
            }
            if label.len() > 63 {
                return Err(bad("a label is longer than 63 characters"));
            }
            if let Some(c) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
            {
                return Err(bad(&format!("character {c:?} is not allowed")));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(bad("a label starts or ends with '-'"));
            }
            last = label;
        }
        if last.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad("the last label is numeric (not an IP address either)"));
        }
        Ok(DomainName(text.to_ascii_lowercase()))
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A host: an IP address or a domain name. IPv6 addresses display in brackets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Ip(IpAddr),
    Name(DomainName),
}

impl FromStr for Host {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Parsed<Self> {
        if let Some(inner) = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            return inner
                .parse::<Ipv6Addr>()
                .map(|ip| Host::Ip(IpAddr::V6(ip)))
                .map_err(|_| InvalidValue::new("not a valid IPv6 address in brackets"));
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        if text.contains(':') {
            return Err(InvalidValue::new(
                "not a host name or IP address (a port does not belong here)",
            ));
        }
        text.parse::<DomainName>()
            .map(Host::Name)
            .map_err(|e| InvalidValue::new(format!("not an IP address, and {}", e.message())))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(name) => f.write_str(name.as_str()),
        }
    }
}

/// The local part of a JID (a user or room name): no `"&'/:<>@`, spaces or control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct JidNode(String);

impl JidNode {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for JidNode {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Parsed<Self> {
        if text.is_empty() {
            return Err(InvalidValue::new("must not be empty"));
        }
        if text.len() > 1023 {
            return Err(InvalidValue::new("longer than 1023 bytes"));
        }
        if let Some(c) = text
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || "\"&'/:<>@".contains(*c))
        {
            return Err(InvalidValue::new(format!(
                "character {c:?} is not allowed in an XMPP name"
            )));
        }
        Ok(JidNode(text.to_owned()))
    }
}

impl fmt::Display for JidNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An address range allowed to call in: an IP address, or `address/prefix-length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Parsed<Self> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text.trim(), None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| InvalidValue::new(format!("not an IP address or CIDR range: {text:?}")))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| {
                InvalidValue::new(format!("bad prefix length in {text:?} (0-{max})"))
            })?,
        };
        Ok(IpNet { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// How XMPP connections use TLS. docker-jitsi-meet's Prosody requires STARTTLS with a self-signed
/// certificate, which jigasi's image trusts blindly (`ALWAYS_TRUST_MODE_ENABLED=true`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XmppTls {
    /// STARTTLS, accepting any certificate (the docker default).
    StartTlsTrustAny,
    /// STARTTLS with the certificate verified against the system's roots.
    StartTls,
    /// Plain TCP (a Prosody without TLS on a private network).
    None,
}

impl fmt::Display for XmppTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XmppTls::StartTlsTrustAny => "starttls-trust-any",
            XmppTls::StartTls => "starttls",
            XmppTls::None => "none",
        })
    }
}

impl FromStr for XmppTls {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Parsed<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "starttls-trust-any" => Ok(XmppTls::StartTlsTrustAny),
            "starttls" => Ok(XmppTls::StartTls),
            "none" | "plain" => Ok(XmppTls::None),
            _ => Err(InvalidValue::new(
                "expected one of starttls-trust-any, starttls, none",
            )),
        }
    }
}

/// A conference room: a bare name (`standup`, completed with the MUC domain) or a full room
/// address (`standup@muc.meet.jitsi`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomName {
    pub name: JidNode,
    pub domain: Option<DomainName>,
}

impl FromStr for RoomName {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Parsed<Self> {
        let (name, domain) = match text.split_once('@') {
            Some((name, domain)) => (name, Some(domain.parse::<DomainName>()?)),
            None => (text, None),
        };
        Ok(RoomName {
            name: name.parse()?,
            domain,
        })
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.domain {
            Some(domain) => write!(f, "{}@{domain}", self.name),
            None => write!(f, "{}", self.name),
        }
    }
}

/// A SIP header name (an RFC 3261 `token`). Compare with [`SipHeaderName::matches`]: header names
/// are case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SipHeaderName(String);

impl SipHeaderName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `name` (from a message) is this header, ignoring case.
    pub fn matches(&self, name: &str) -> bool {
        self.0.eq_ignore_ascii_case(name)
    }
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

impl FromStr for SipHeaderName {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Parsed<Self> {
        if text.is_empty() {
            return Err(InvalidValue::new("not a SIP header name: empty"));
        }
        if let Some(c) = text.chars().find(|c| !is_token_char(*c)) {
            return Err(InvalidValue::new(format!(
                "not a SIP header name: character {c:?} is not allowed (letters, digits and -.!%*_+`'~ only)"
            )));
        }
        Ok(SipHeaderName(text.to_owned()))
    }
}

impl fmt::Display for SipHeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------------------------------------
// Ports

/// The UDP port range for media, `min <= max`, both in 1024-65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    min: u16,
    max: u16,
}

impl PortRange {
    pub const LOWEST: u16 = 1024;

    pub fn new(min: u16, max: u16) -> Result<Self, InvalidValue> {
        if min < Self::LOWEST || max < Self::LOWEST {
            return Err(InvalidValue::new(format!(
                "ports must be in {}-65535",
                Self::LOWEST
            )));
        }
        if min > max {
            return Err(InvalidValue::new(format!("{min} is greater than {max}")));
        }
        Ok(PortRange { min, max })
    }

    pub fn min(&self) -> u16 {
        self.min
    }

    pub fn max(&self) -> u16 {
        self.max
    }

    /// How many ports the range holds.
    pub fn len(&self) -> u32 {
        u32::from(self.max) - u32::from(self.min) + 1
    }

    /// Always false: a range holds at least one port.
    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.min..=self.max).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.min, self.max)
    }
}

// ---------------------------------------------------------------------------------------------
// Enums

macro_rules! keyword_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl FromStr for $name {
            type Err = InvalidValue;

            fn from_str(text: &str) -> Parsed<Self> {
                $(if text.eq_ignore_ascii_case($text) { return Ok($name::$variant); })+
                let all: &[&str] = &[$($text),+];
                Err(InvalidValue::new(format!("expected one of {}", all.join(", "))))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

keyword_enum!(
    /// A SIP transport.
    Transport { Udp => "udp", Tcp => "tcp", Tls => "tls" }
);

keyword_enum!(
    /// How the SIP account keeps its registration's NAT binding alive.
    KeepAliveMethod { Options => "options", Crlf => "crlf", Register => "register", None => "none" }
);

keyword_enum!(
    /// The log output format.
    LogFormat { Human => "human", Json => "json" }
);

// ---------------------------------------------------------------------------------------------
// Log level

/// The default log filter (used when `RUST_LOG` is unset): comma-separated directives, each a level
/// (`info`) or `target=level` (`jitsi_sip_gateway::sip=debug`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLevel(String);

impl LogLevel {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

const LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error", "off"];

impl FromStr for LogLevel {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Parsed<Self> {
        let expected = "expected a level (trace, debug, info, warn, error, off) or target=level directives separated by commas";
        if text.trim().is_empty() {
            return Err(InvalidValue::new(expected));
        }
        for directive in text.split(',') {
            let directive = directive.trim();
            let level = match directive.rsplit_once('=') {
                Some((target, level)) => {
                    if target.is_empty()
                        || target.chars().any(|c| c.is_whitespace() || c.is_control())
                    {
                        return Err(InvalidValue::new(expected));
                    }
                    level
                }
                None => directive,
            };
            if !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(level)) {
                return Err(InvalidValue::new(format!(
                    "{level:?} is not a level ({expected})"
                )));
            }
        }
        Ok(LogLevel(
            text.split(',').map(str::trim).collect::<Vec<_>>().join(","),
        ))
    }
}

/// A validated filter is still a filter string: `&settings.log.level` works where `&str` is wanted.
impl std::ops::Deref for LogLevel {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------------------------------------
// SIP URI

/// `sip:` or `sips:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SipScheme {
    Sip,
    Sips,
}

/// A SIP URI as configured: `[sip:|sips:][user@]host[:port][;params]`. docker-jitsi-meet writes
/// `user@domain` without a scheme; `sip:` is then assumed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SipUri {
    pub scheme: SipScheme,
    pub user: Option<String>,
    pub host: Host,
    pub port: Option<u16>,
    /// URI parameters as written, without the `;` (e.g. `transport=tcp`).
    pub params: Vec<String>,
}

fn is_user_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.!~*'()&=+$,;?/%".contains(c)
}

fn parse_port_in_uri(text: &str) -> Parsed<u16> {
    parse_u16(text, 1, u16::MAX, "a port number")
        .map_err(|e| InvalidValue::new(format!("port {text:?}: {}", e.message())))
}

impl FromStr for SipUri {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Parsed<Self> {
        let lower = text.to_ascii_lowercase();
        let (scheme, rest) = if lower.starts_with("sips:") {
            (SipScheme::Sips, &text[5..])
        } else if lower.starts_with("sip:") {
            (SipScheme::Sip, &text[4..])
        } else {
            if let Some((prefix, after)) = text.split_once(':') {
                let looks_like_scheme = !prefix.contains('@')
                    && !prefix.contains('.')
                    && !prefix.starts_with('[')
                    && !after.chars().all(|c| c.is_ascii_digit());
                if looks_like_scheme {
                    return Err(InvalidValue::new(format!(
                        "unsupported URI scheme {prefix:?} (expected sip: or sips:)"
                    )));
                }
            }
            (SipScheme::Sip, text)
        };
        let (user, host_part) = match rest.rsplit_once('@') {
            Some((user, host_part)) => (Some(user), host_part),
            None => (None, rest),
        };
        if host_part.contains('?') {
            return Err(InvalidValue::new(
                "URI headers (?...) are not supported here",
            ));
        }
        if let Some(user) = user {
            if user.is_empty() {
                return Err(InvalidValue::new("empty user part before '@'"));
            }
            if user.contains(':') {
                return Err(InvalidValue::new(
                    "the URI must not contain a password (set the password setting instead)",
                ));
            }
            if let Some(c) = user.chars().find(|c| !is_user_char(*c)) {
                return Err(InvalidValue::new(format!(
                    "character {c:?} is not allowed in the user part"
                )));
            }
        }
        let mut pieces = host_part.split(';');
        let host_port = pieces.next().unwrap_or_default();
        let mut params = Vec::new();
        for param in pieces {
            if param.is_empty()
                || !param
                    .chars()
                    .all(|c| is_token_char(c) || "=[]:/&+$".contains(c))
            {
                return Err(InvalidValue::new(format!("bad URI parameter {param:?}")));
            }
            params.push(param.to_owned());
        }
        let (host, port) = split_host_port(host_port)?;
        let host = host
            .parse::<Host>()
            .map_err(|e| InvalidValue::new(format!("host: {}", e.message())))?;
        let port = port.map(parse_port_in_uri).transpose()?;
        Ok(SipUri {
            scheme,
            user: user.map(str::to_owned),
            host,
            port,
            params,
        })
    }
}

/// Splits `host[:port]`, `[v6][:port]`.
fn split_host_port(text: &str) -> Parsed<(&str, Option<&str>)> {
    if text.starts_with('[') {
        let end = text
            .find(']')
            .ok_or_else(|| InvalidValue::new("unclosed '[' in host"))?;
        let (host, rest) = text.split_at(end + 1);
        return match rest {
            "" => Ok((host, None)),
            _ => match rest.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(InvalidValue::new("unexpected text after ']'")),
            },
        };
    }
    Ok(match text.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (text, None),
    })
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.scheme {
            SipScheme::Sip => "sip:",
            SipScheme::Sips => "sips:",
        })?;
        if let Some(user) = &self.user {
            write!(f, "{user}@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        for param in &self.params {
            write!(f, ";{param}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP URL

/// An `http://` or `https://` URL: scheme, host, optional port, and the rest (path, query) as
/// written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpUrl {
    pub https: bool,
    pub host: Host,
    pub port: Option<u16>,
    /// Everything from the first `/` after the host (may be empty).
    pub path: String,
}

impl HttpUrl {
    /// `host[:port]` as docker-jitsi-meet derives its `DOMAIN_BASE` from `PUBLIC_URL`.
    pub fn host_port(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.to_string(),
        }
    }
}

impl FromStr for HttpUrl {
    type Err = InvalidValue;

    fn from_str(text: &str) -> Parsed<Self> {
        let lower = text.to_ascii_lowercase();
        let (https, rest) = if lower.starts_with("https://") {
            (true, &text[8..])
        } else if lower.starts_with("http://") {
            (false, &text[7..])
        } else {
            return Err(InvalidValue::new(
                "not an http(s) URL (expected https://host[:port][/path])",
            ));
        };
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InvalidValue::new("a URL must not contain spaces"));
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(end);
        if authority.contains('@') {
            return Err(InvalidValue::new(
                "credentials in the URL are not supported",
            ));
        }
        let (host, port) = split_host_port(authority)?;
        if host.is_empty() {
            return Err(InvalidValue::new("the URL has no host"));
        }
        let host = host
            .parse::<Host>()
            .map_err(|e| InvalidValue::new(format!("host: {}", e.message())))?;
        let port = port.map(parse_port_in_uri).transpose()?;
        Ok(HttpUrl {
            https,
            host,
            port,
            path: path.to_owned(),
        })
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        write!(f, "{scheme}://{}{}", self.host_port(), self.path)
    }
}

// ---------------------------------------------------------------------------------------------
// XMPP server

/// One Prosody connection: docker's `XMPP_SERVER` item `host[:port[:id]]`. The port defaults to
/// `xmpp.port`, the id to the item's index; each entry gets its own brewery connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct XmppServer {
    pub host: Host,
    pub port: u16,
    pub id: String,
}

impl XmppServer {
    /// Parses one item; `index` is its position in the list (empty items already dropped).
    pub(crate) fn parse_item(text: &str, index: usize, default_port: u16) -> Parsed<Self> {
        let (host, port, id) = if text.starts_with('[') {
            let end = text
                .find(']')
                .ok_or_else(|| InvalidValue::new("unclosed '[' in host"))?;
            let (host, rest) = text.split_at(end + 1);
            let rest = match rest {
                "" => None,
                _ => Some(
                    rest.strip_prefix(':')
                        .ok_or_else(|| InvalidValue::new("unexpected text after ']'"))?,
                ),
            };
            let (port, id) = match rest.map(|r| r.split_once(':').unwrap_or((r, ""))) {
                Some((port, id)) => (port, id),
                None => ("", ""),
            };
            (host, port, id)
        } else {
            let mut parts = text.splitn(3, ':');
            let host = parts.next().unwrap_or_default();
            (
                host,
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
            )
        };
        let expected = "expected host[:port[:id]]";
        if host.is_empty() {
            return Err(InvalidValue::new(format!("empty host ({expected})")));
        }
        let host = host
            .parse::<Host>()
            .map_err(|e| InvalidValue::new(format!("host: {} ({expected})", e.message())))?;
        let port = match port {
            "" => default_port,
            port => parse_u16(port, 1, u16::MAX, "a port number").map_err(|e| {
                InvalidValue::new(format!("port {port:?}: {} ({expected})", e.message()))
            })?,
        };
        let id = match id {
            "" => index.to_string(),
            id if id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) =>
            {
                id.to_owned()
            }
            id => {
                return Err(InvalidValue::new(format!(
                    "id {id:?}: letters, digits, '-', '_' and '.' only ({expected})"
                )))
            }
        };
        Ok(XmppServer { host, port, id })
    }
}

impl fmt::Display for XmppServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.host, self.port, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_accept_go_spellings_and_yes_no_on_off_in_any_case() {
        for t in [
            "1", "t", "T", "TRUE", "true", "True", "yes", "YES", "on", "On",
        ] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for f in [
            "0", "f", "F", "FALSE", "false", "False", "no", "No", "off", "OFF",
        ] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        for bad in ["", "2", "yep", "enabled", "truee"] {
            assert!(parse_bool(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn integers_distinguish_non_numbers_from_out_of_range() {
        assert_eq!(parse_u16("20000", 1024, 65535, "a port number"), Ok(20000));
        assert_eq!(
            parse_u16("abc", 1024, 65535, "a port number")
                .unwrap_err()
                .message(),
            "not a port number (expected 1024-65535)"
        );
        assert_eq!(
            parse_u16("80", 1024, 65535, "a port number")
                .unwrap_err()
                .message(),
            "out of range (expected 1024-65535)"
        );
        assert!(parse_u16("99999999999999999999999999999999999999999", 1, 2, "x").is_err());
        assert_eq!(parse_int("-5", i64::MIN, i64::MAX, "a number"), Ok(-5));
    }

    #[test]
    fn domain_names_are_checked_and_lower_cased() {
        assert_eq!(
            "Meet.Jitsi".parse::<DomainName>().unwrap().as_str(),
            "meet.jitsi"
        );
        assert!("jitsi_prosody_1".parse::<DomainName>().is_ok());
        for bad in [
            "",
            "meet..jitsi",
            "meet jitsi",
            "-meet.jitsi",
            "meet.jitsi.",
            "a/b",
            "10.0.0.300",
        ] {
            assert!(bad.parse::<DomainName>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hosts_are_ip_addresses_or_domain_names() {
        assert_eq!("10.0.0.1".parse::<Host>().unwrap().to_string(), "10.0.0.1");
        assert_eq!("[::1]".parse::<Host>().unwrap().to_string(), "[::1]");
        assert_eq!("::1".parse::<Host>().unwrap().to_string(), "[::1]");
        assert!(matches!(
            "pbx.example.com".parse::<Host>(),
            Ok(Host::Name(_))
        ));
        assert!("pbx:5060".parse::<Host>().is_err());
    }

    #[test]
    fn header_names_must_be_sip_tokens() {
        let h: SipHeaderName = "X-Room-Name".parse().unwrap();
        assert!(h.matches("x-room-name"));
        for bad in ["", "X Room", "X-Room:", "Röom", "X(Room)"] {
            assert!(bad.parse::<SipHeaderName>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn jid_nodes_reject_jid_separators() {
        assert!("jigasibrewery".parse::<JidNode>().is_ok());
        for bad in ["", "a@b", "a/b", "a b", "a:b", "a<b"] {
            assert!(bad.parse::<JidNode>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn room_names_are_bare_or_full_room_addresses() {
        let bare: RoomName = "standup".parse().unwrap();
        assert_eq!(bare.domain, None);
        let full: RoomName = "standup@muc.meet.jitsi".parse().unwrap();
        assert_eq!(full.to_string(), "standup@muc.meet.jitsi");
        assert!("stand up".parse::<RoomName>().is_err());
        assert!("a@b@c".parse::<RoomName>().is_err());
    }

    #[test]
    fn sip_uris_are_accepted_with_or_without_scheme() {
        let u: SipUri = "1000@pbx.example.com".parse().unwrap();
        assert_eq!(u.scheme, SipScheme::Sip);
        assert_eq!(u.user.as_deref(), Some("1000"));
        assert_eq!(u.host.to_string(), "pbx.example.com");
        assert_eq!(u.port, None);
        let u: SipUri = "SIPS:+4930123@10.0.0.5:5061;transport=tls".parse().unwrap();
        assert_eq!(u.scheme, SipScheme::Sips);
        assert_eq!(u.user.as_deref(), Some("+4930123"));
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.params, ["transport=tls"]);
        assert_eq!(u.to_string(), "sips:+4930123@10.0.0.5:5061;transport=tls");
        let u: SipUri = "sip:pbx.example.com".parse().unwrap();
        assert_eq!(u.user, None);
        let u: SipUri = "localhost:5080".parse().unwrap();
        assert_eq!(u.port, Some(5080));
        for bad in [
            "tel:+4930123",
            "user:pw@pbx",
            "@pbx",
            "1000@",
            "1000@pbx:abc",
            "10 00@pbx",
            "1000@pbx;",
            "sip:a@b?subject=x",
        ] {
            assert!(bad.parse::<SipUri>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn http_urls_need_an_http_scheme_and_a_host() {
        let u: HttpUrl = "https://meet.example.com:8443/".parse().unwrap();
        assert!(u.https);
        assert_eq!(u.host_port(), "meet.example.com:8443");
        assert_eq!(u.to_string(), "https://meet.example.com:8443/");
        for bad in [
            "meet.example.com",
            "ftp://x",
            "https://",
            "https://a b",
            "https://u:p@x",
            "https://x:0",
        ] {
            assert!(bad.parse::<HttpUrl>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn xmpp_server_items_take_optional_port_and_id() {
        let s = XmppServer::parse_item("xmpp.meet.jitsi", 0, 5222).unwrap();
        assert_eq!((s.port, s.id.as_str()), (5222, "0"));
        let s = XmppServer::parse_item("shard2:5322:blue", 1, 5222).unwrap();
        assert_eq!(
            (s.host.to_string(), s.port, s.id.as_str()),
            ("shard2".into(), 5322, "blue")
        );
        let s = XmppServer::parse_item("shard3::green", 2, 5222).unwrap();
        assert_eq!((s.port, s.id.as_str()), (5222, "green"));
        let s = XmppServer::parse_item("[fd00::5]:5223", 3, 5222).unwrap();
        assert_eq!(s.to_string(), "[fd00::5]:5223:3");
        for bad in [
            ":5222",
            "host:abc",
            "host:0",
            "host:5222:a b",
            "bad host",
            "[fd00::5",
        ] {
            assert!(XmppServer::parse_item(bad, 0, 5222).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn log_levels_accept_levels_and_target_directives() {
        for ok in [
            "info",
            "DEBUG",
            "info,jitsi_sip_gateway::sip=trace",
            "warn, rsipstack=off",
        ] {
            assert!(ok.parse::<LogLevel>().is_ok(), "{ok:?}");
        }
        for bad in ["", "inf0", "info,,debug", "x=loud", "=info"] {
            assert!(bad.parse::<LogLevel>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn keyword_enums_are_case_insensitive() {
        assert_eq!("UDP".parse::<Transport>(), Ok(Transport::Udp));
        assert_eq!(
            "OPTIONS".parse::<KeepAliveMethod>(),
            Ok(KeepAliveMethod::Options)
        );
        assert_eq!(
            "sctp".parse::<Transport>().unwrap_err().message(),
            "expected one of udp, tcp, tls"
        );
    }

    #[test]
    fn port_ranges_keep_min_not_above_max() {
        let r = PortRange::new(20000, 20050).unwrap();
        assert_eq!((r.min(), r.max(), r.len()), (20000, 20050, 51));
        assert!(r.contains(20010) && !r.contains(20051));
        assert!(PortRange::new(20050, 20000).is_err());
        assert!(PortRange::new(80, 20000).is_err());
    }

    #[test]
    fn secrets_never_show_in_debug_or_display() {
        let s = Secret::parse("hunter2").unwrap();
        assert_eq!(s.expose(), "hunter2");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
        assert!(Secret::parse("").is_err());
    }
}
