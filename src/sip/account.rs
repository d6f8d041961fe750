//! The SIP account as the settings describe it: who the gateway is (From, REGISTER's To), where
//! its requests go (the registrar / outbound proxy, or a trunk), and the Request-URI of an
//! outgoing call. Pure: strings in, strings out; `client` turns them into stack types.

use std::net::SocketAddr;

use crate::config::{SipScheme, SipSettings, Transport};

/// The user part of From and Contact when no account is configured (a trunk).
pub(crate) const TRUNK_USER: &str = "gateway";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Account {
    /// `sip:user@domain[:port]`: the account URI without its parameters; `None` for a trunk
    /// without an account.
    pub aor: Option<String>,
    /// The user of From and Contact: the account's, else [`TRUNK_USER`].
    pub user: String,
    /// The registrar / outbound proxy (or the trunk), when one is configured.
    pub server: Option<Server>,
    /// REGISTER at `server` as `aor`.
    pub register: bool,
    /// Digest credentials, when a password is configured.
    pub credentials: Option<Credentials>,
    /// `sip.outbound_prefix`, put in front of dialled numbers.
    pub prefix: String,
    /// `host[:port]` of Request-URIs built from a number: the account's domain, else the
    /// server's address.
    number_domain: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Server {
    /// A host name or IP address (IPv6 in brackets).
    pub host: String,
    pub port: u16,
    pub transport: Transport,
}

impl Server {
    /// `sip:host:port`, with `;transport=` unless UDP: the REGISTER Request-URI (jigasi sends
    /// REGISTER to its registrar's address, not to the account's domain) and the OPTIONS target.
    pub fn uri(&self) -> String {
        match self.transport {
            Transport::Udp => format!("sip:{}:{}", self.host, self.port),
            t => format!("sip:{}:{};transport={t}", self.host, self.port),
        }
    }

    /// The loose-route URI an out-of-dialog request carries in `Route` to go through the
    /// server as its outbound proxy (RFC 3261 §8.1.2): its CANCEL and ACK then follow it too.
    pub fn route_uri(&self) -> String {
        match self.transport {
            Transport::Udp => format!("sip:{}:{};lr", self.host, self.port),
            t => format!("sip:{}:{};transport={t};lr", self.host, self.port),
        }
    }

    /// `host:port`, for logs.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    /// The From user (the account's user part).
    pub user: String,
    /// The digest user name when it differs from `user` (`sip.auth_user`).
    pub auth_user: Option<String>,
    pub password: String,
}

impl Credentials {
    /// The name that goes into the digest.
    pub fn digest_user(&self) -> &str {
        self.auth_user.as_deref().unwrap_or(&self.user)
    }
}

/// Why a call cannot be addressed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTarget {
    #[error("empty destination")]
    Empty,
    #[error("destination {0:?} has characters a SIP user part cannot carry")]
    BadCharacters(String),
    #[error("destination {0:?} is a URI of a scheme other than sip: or sips:")]
    Scheme(String),
    #[error("cannot dial the number {0:?}: no sip.uri and no sip.server to send it to")]
    NoDomain(String),
}

impl Account {
    pub fn from_settings(s: &SipSettings) -> Account {
        let aor = s.uri.as_ref().map(|uri| {
            let scheme = match uri.scheme {
                SipScheme::Sip => "sip",
                SipScheme::Sips => "sips",
            };
            let user = uri.user.as_deref().unwrap_or(TRUNK_USER);
            format!(
                "{scheme}:{user}@{}",
                host_port(&uri.host.to_string(), uri.port)
            )
        });
        let user = s
            .uri
            .as_ref()
            .and_then(|u| u.user.clone())
            .unwrap_or_else(|| TRUNK_USER.to_string());
        let server = s.server.as_ref().map(|host| Server {
            host: host.to_string(),
            port: s.server_port,
            transport: s.server_transport,
        });
        let number_domain = match (&s.uri, &server) {
            (Some(uri), _) => Some(host_port(&uri.host.to_string(), uri.port)),
            (None, Some(server)) => Some(server.address()),
            (None, None) => None,
        };
        let credentials = s.password.as_ref().map(|password| Credentials {
            user: user.clone(),
            auth_user: s.auth_user.clone(),
            password: password.expose().to_string(),
        });
        Account {
            register: s.register && aor.is_some() && server.is_some(),
            aor,
            user,
            server,
            credentials,
            prefix: s.outbound_prefix.clone(),
            number_domain,
        }
    }

    /// The From URI of our requests: the account, else `sip:gateway@<contact address>`.
    pub fn caller_uri(&self, contact: SocketAddr) -> String {
        match &self.aor {
            Some(aor) => aor.clone(),
            None => format!("sip:{}@{contact}", self.user),
        }
    }

    /// The Request-URI for what a room dialled: a SIP URI as given (`user@host` gets `sip:`),
    /// a number or user name as `sip:<prefix><to>@<account domain>`.
    pub fn target(&self, to: &str) -> Result<String, InvalidTarget> {
        let to = to.trim();
        if to.is_empty() {
            return Err(InvalidTarget::Empty);
        }
        check_uri(to)?;
        if let Some((scheme, _)) = to.split_once(':') {
            if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
                return Ok(to.to_string());
            }
            if !to.contains('@') {
                return Err(InvalidTarget::Scheme(to.to_string()));
            }
        }
        if to.contains('@') {
            return Ok(format!("sip:{to}"));
        }
        if !to.chars().all(is_user_char) {
            return Err(InvalidTarget::BadCharacters(to.to_string()));
        }
        let domain = self
            .number_domain
            .as_ref()
            .ok_or_else(|| InvalidTarget::NoDomain(to.to_string()))?;
        Ok(format!("sip:{}{to}@{domain}", self.prefix))
    }
}

fn host_port(host: &str, port: Option<u16>) -> String {
    match port {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// Characters of a SIP user part without escaping (RFC 3261 §25.1: unreserved, user-unreserved,
/// and `%` of an escape).
fn is_user_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.!~*'()&=+$,;?/%".contains(c)
}

/// A URI from a room goes on the wire as the Request-URI and the To header: nothing in it may
/// end the line or the header.
fn check_uri(uri: &str) -> Result<(), InvalidTarget> {
    if uri
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || "<>\"".contains(c))
    {
        return Err(InvalidTarget::BadCharacters(uri.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::test_settings as settings;

    #[test]
    fn a_number_is_dialled_at_the_account_domain_with_the_prefix() {
        let s = settings(&["sip.uri=gateway@sip.example.com", "sip.outbound_prefix=0"]);
        let account = Account::from_settings(&s);
        assert_eq!(
            account.target("+4930123").unwrap(),
            "sip:0+4930123@sip.example.com"
        );
        assert_eq!(account.target(" bob ").unwrap(), "sip:0bob@sip.example.com");
    }

    #[test]
    fn the_account_port_stays_in_the_domain() {
        let account = Account::from_settings(&settings(&["sip.uri=sip:gw@192.0.2.1:5080"]));
        assert_eq!(account.target("100").unwrap(), "sip:100@192.0.2.1:5080");
        assert_eq!(account.aor.as_deref(), Some("sip:gw@192.0.2.1:5080"));
        assert_eq!(account.server.unwrap().address(), "192.0.2.1:5080");
    }

    #[test]
    fn a_sip_uri_is_dialled_as_given_without_the_prefix() {
        let s = settings(&["sip.uri=gateway@sip.example.com", "sip.outbound_prefix=9"]);
        let account = Account::from_settings(&s);
        assert_eq!(
            account
                .target("sip:alice@pbx.example.org;user=phone")
                .unwrap(),
            "sip:alice@pbx.example.org;user=phone"
        );
        assert_eq!(
            account.target("SIPS:alice@pbx.example.org").unwrap(),
            "SIPS:alice@pbx.example.org"
        );
        assert_eq!(
            account.target("alice@pbx.example.org").unwrap(),
            "sip:alice@pbx.example.org"
        );
    }

    #[test]
    fn destinations_that_would_break_the_request_are_refused() {
        let account = Account::from_settings(&settings(&["sip.uri=gateway@sip.example.com"]));
        assert_eq!(account.target("  "), Err(InvalidTarget::Empty));
        for bad in ["12 34", "12\r\nVia: x", "a<b", "#31#"] {
            assert!(
                matches!(account.target(bad), Err(InvalidTarget::BadCharacters(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            account.target("sip:bob@h\r\nX: y"),
            Err(InvalidTarget::BadCharacters(_))
        ));
        assert!(matches!(
            account.target("tel:+4930123"),
            Err(InvalidTarget::Scheme(_))
        ));
    }

    #[test]
    fn a_trunk_without_account_dials_numbers_at_the_server() {
        let s = settings(&[
            "sip.server=203.0.113.9",
            "sip.server_port=5070",
            "sip.outbound_prefix=00",
        ]);
        let account = Account::from_settings(&s);
        assert!(!account.register, "nothing to register without an account");
        assert_eq!(account.aor, None);
        assert_eq!(
            account.target("4930123").unwrap(),
            "sip:004930123@203.0.113.9:5070"
        );
        assert_eq!(
            account.caller_uri("198.51.100.1:5060".parse().unwrap()),
            "sip:gateway@198.51.100.1:5060"
        );
    }

    #[test]
    fn without_account_or_server_only_uris_can_be_dialled() {
        let account = Account::from_settings(&settings(&[]));
        assert!(matches!(
            account.target("4930123"),
            Err(InvalidTarget::NoDomain(_))
        ));
        assert_eq!(
            account.target("sip:bob@192.0.2.7:5062").unwrap(),
            "sip:bob@192.0.2.7:5062"
        );
    }

    #[test]
    fn registration_needs_the_setting_an_account_and_a_server() {
        let account = Account::from_settings(&settings(&["sip.uri=gw@sip.example.com"]));
        assert!(account.register);
        let trunk = settings(&["sip.uri=gw@sip.example.com", "sip.register=false"]);
        assert!(!Account::from_settings(&trunk).register);
    }

    #[test]
    fn register_goes_to_the_server_over_its_transport() {
        let s = settings(&[
            "sip.uri=gateway@sip.example.com",
            "sip.server=pbx.example.com",
            "sip.server_port=5061",
            "sip.server_transport=tcp",
        ]);
        let server = Account::from_settings(&s).server.unwrap();
        assert_eq!(server.uri(), "sip:pbx.example.com:5061;transport=tcp");
        assert_eq!(
            server.route_uri(),
            "sip:pbx.example.com:5061;transport=tcp;lr"
        );
        let s = settings(&[
            "sip.uri=gateway@sip.example.com",
            "sip.server=pbx.example.com",
        ]);
        let server = Account::from_settings(&s).server.unwrap();
        assert_eq!(server.uri(), "sip:pbx.example.com:5060");
        assert_eq!(server.route_uri(), "sip:pbx.example.com:5060;lr");
    }

    #[test]
    fn the_digest_user_is_auth_user_when_set() {
        let s = settings(&["sip.uri=1001@sip.example.com", "sip.password=pw"]);
        let creds = Account::from_settings(&s).credentials.unwrap();
        assert_eq!((creds.user.as_str(), creds.digest_user()), ("1001", "1001"));
        let s = settings(&[
            "sip.uri=1001@sip.example.com",
            "sip.password=pw",
            "sip.auth_user=auth-1001",
        ]);
        let creds = Account::from_settings(&s).credentials.unwrap();
        assert_eq!(
            (creds.user.as_str(), creds.digest_user()),
            ("1001", "auth-1001")
        );
        assert_eq!(creds.password, "pw");
    }
}
