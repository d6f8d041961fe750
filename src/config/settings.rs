//! The typed settings: only validated values, grouped like the TOML tables.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::values::{
    DomainName, Host, HttpUrl, IpNet, JidNode, KeepAliveMethod, LogFormat, LogLevel, PortRange,
    RoomName, Secret, SipHeaderName, SipUri, Transport, XmppServer, XmppTls,
};

/// All settings. `Debug` masks secrets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub xmpp: XmppSettings,
    pub sip: SipSettings,
    pub media: MediaSettings,
    pub call: CallSettings,
    pub health: HealthSettings,
    pub api: ApiSettings,
    pub log: LogSettings,
}

impl Settings {
    /// Whether health requires the brewery: as set, else only when the gateway can place calls.
    /// Jicofo makes and uses a jigasi brewery only for dial-out (docker-jitsi-meet configures one
    /// only with JIGASI_SIP_URI), so a dial-in-only gateway would never get in.
    pub fn brewery_required(&self) -> bool {
        self.health
            .require_brewery
            .unwrap_or(self.sip.uri.is_some() || self.sip.server.is_some())
    }
}

/// Prosody: the brewery (control) connections and the per-call connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmppSettings {
    pub domain: DomainName,
    pub auth_domain: DomainName,
    pub guest_domain: DomainName,
    pub muc_domain: DomainName,
    pub internal_muc_domain: DomainName,
    /// At least one; ids are unique. One brewery connection per entry.
    pub servers: Vec<XmppServer>,
    pub port: u16,
    pub user: JidNode,
    pub password: Secret,
    pub brewery_muc: JidNode,
    pub enable_auth: bool,
    pub enable_guests: bool,
    pub enable_visitors: bool,
    pub focus_resource: String,
    pub muc_join_timeout: Duration,
    pub tls: XmppTls,
    /// Logged-in connections kept ready so a call does not wait for a login.
    pub pool_size: usize,
    /// Bare JID allowed to send Rayo dial requests; `None`: the brewery room.
    pub allowed_jid: Option<String>,
    pub region: Option<String>,
    pub stats_id: Option<String>,
    pub trusted_domains: Vec<DomainName>,
    pub public_url: HttpUrl,
}

impl XmppSettings {
    /// `user@auth_domain`: the brewery account.
    pub fn login_jid(&self) -> String {
        format!("{}@{}", self.user, self.auth_domain)
    }

    /// `brewery_muc@internal_muc_domain`: the brewery room.
    pub fn brewery_room(&self) -> String {
        format!("{}@{}", self.brewery_muc, self.internal_muc_domain)
    }

    /// A room's address: a bare name gets `@muc_domain`, a full address is kept.
    pub fn room_jid(&self, room: &RoomName) -> String {
        match &room.domain {
            Some(domain) => format!("{}@{domain}", room.name),
            None => format!("{}@{}", room.name, self.muc_domain),
        }
    }
}

/// The SIP side: listening, the optional registration account, and the INVITE headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipSettings {
    pub listen: SocketAddr,
    /// Non-empty, without duplicates.
    pub transports: Vec<Transport>,
    pub public_address: Option<IpAddr>,
    /// The account to register; always has a user part.
    pub uri: Option<SipUri>,
    pub password: Option<Secret>,
    pub auth_user: Option<String>,
    /// Registrar / outbound proxy; `sip.uri`'s host when not set explicitly.
    pub server: Option<Host>,
    pub server_port: u16,
    pub server_transport: Transport,
    /// With `server_transport` TLS: the CA certificates (a PEM file) the server's certificate
    /// must chain to; `None`: the system's.
    pub tls_ca_file: Option<PathBuf>,
    /// With `server_transport` TLS: check the server's certificate; false accepts any.
    pub tls_verify: bool,
    pub keep_alive_method: KeepAliveMethod,
    pub keep_alive_interval: Duration,
    pub default_room: Option<RoomName>,
    pub outbound_prefix: String,
    /// Register at `server` as `uri`; false: a trunk (no REGISTER).
    pub register: bool,
    pub registration_expiry: Duration,
    /// Who may call in; empty: anyone.
    pub allowed_peers: Vec<IpNet>,
    pub sdes_srtp: bool,
    pub room_header: SipHeaderName,
    pub room_password_header: SipHeaderName,
    pub domain_base_header: SipHeaderName,
    pub tenant_header: SipHeaderName,
    pub auth_token_header: SipHeaderName,
}

impl SipSettings {
    /// The digest user name: `auth_user`, else the URI's user.
    pub fn digest_user(&self) -> Option<&str> {
        self.auth_user
            .as_deref()
            .or_else(|| self.uri.as_ref().and_then(|u| u.user.as_deref()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaSettings {
    pub ports: PortRange,
    pub opus_complexity: u8,
    pub opus_bitrate: u32,
    pub opus_fec: bool,
    pub opus_dtx: bool,
    /// Address the media sockets bind (0.0.0.0: all interfaces).
    pub bind_ip: IpAddr,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSettings {
    /// How long to wait for the conference's offer after joining (and again when the conference
    /// media ends while the phone stays); `None` (configured ≤ 0): do not wait, as jigasi.
    pub invite_timeout: Option<Duration>,
    /// After SIGTERM, how long calls may go on; `None`: until they end.
    pub drain_timeout: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthSettings {
    /// When set, this URI is called every `interval` as a health check.
    pub sip_uri: Option<SipUri>,
    pub interval: Duration,
    pub timeout: Duration,
    /// Whether not being in the brewery makes the gateway unhealthy; unset: see
    /// [`Settings::brewery_required`].
    pub require_brewery: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiSettings {
    pub host: IpAddr,
    /// 0 means any free port.
    pub port: u16,
    pub shutdown_enabled: bool,
}

impl ApiSettings {
    pub fn bind_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    pub format: LogFormat,
    /// Used when `RUST_LOG` is unset.
    pub level: LogLevel,
}
