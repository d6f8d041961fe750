//! The typed build step: reads every key's winning text from the raw map, parses it, checks values
//! against each other, and collects *all* errors. It also records, for `render`, each key's
//! effective value (as TOML text, secrets masked) and origin.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::error::ConfigError;
use super::keys::{self, KeySpec, Kind};
use super::layers::{RawMap, RawText};
use super::origin::Origin;
use super::settings::{
    ApiSettings, CallSettings, HealthSettings, LogSettings, MediaSettings, Settings, SipSettings,
    XmppSettings,
};
use super::values::{
    parse_auth_user, parse_bool, parse_dial_prefix, parse_int, parse_ip, parse_socket_addr,
    parse_text, parse_u16, parse_u32, parse_u64, DomainName, Host, HttpUrl, InvalidValue, IpNet,
    JidNode, KeepAliveMethod, LogFormat, LogLevel, PortRange, RoomName, Secret, SipHeaderName,
    SipUri, Transport, XmppServer, XmppTls,
};

/// The placeholder `config/gateway.example.toml` uses for `xmpp.password`.
pub(crate) const EXAMPLE_PASSWORD: &str = "CHANGE-ME";

/// docker-jitsi-meet's default for `JIGASI_SIP_PASSWORD`.
const DOCKER_SIP_PASSWORD_PLACEHOLDER: &str = "replaceme";

/// One key's effective value, as `render` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Effective {
    /// TOML text of the value (secrets masked); `None` when unset.
    pub value: Option<String>,
    pub origin: Option<Origin>,
    /// E.g. "from sip.uri" for a derived value.
    pub note: Option<String>,
}

pub(crate) struct Built {
    pub settings: Option<Settings>,
    pub effective: BTreeMap<&'static str, Effective>,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<String>,
}

/// `report_missing`: false when the config file could not be read, so that keys it may have set
/// are not also reported as missing.
pub(crate) fn build(raw: &RawMap, report_missing: bool) -> Built {
    let mut r = Reader {
        raw,
        report_missing,
        errors: Vec::new(),
        effective: BTreeMap::new(),
    };
    let xmpp = xmpp(&mut r);
    let sip = sip(&mut r);
    let media = media(&mut r);
    let call = call(&mut r);
    let health = health(&mut r);
    let api = api(&mut r);
    let log = log(&mut r);
    let settings = match (xmpp, sip, media, call, health, api, log) {
        (Some(xmpp), Some(sip), Some(media), Some(call), Some(health), Some(api), Some(log))
            if r.errors.is_empty() =>
        {
            Some(Settings {
                xmpp,
                sip,
                media,
                call,
                health,
                api,
                log,
            })
        }
        _ => None,
    };
    let warnings = settings.as_ref().map(warnings).unwrap_or_default();
    Built {
        settings,
        effective: r.effective,
        errors: r.errors,
        warnings,
    }
}

fn warnings(settings: &Settings) -> Vec<String> {
    let mut out = Vec::new();
    if settings.xmpp.password.expose() == EXAMPLE_PASSWORD {
        out.push(
            "xmpp.password is still the example file's placeholder; set JIGASI_XMPP_PASSWORD or \
             xmpp.password to the jigasi account's password in Prosody"
                .to_owned(),
        );
    }
    if settings.sip.uri.is_some()
        && settings
            .sip
            .password
            .as_ref()
            .is_some_and(|p| p.expose() == DOCKER_SIP_PASSWORD_PLACEHOLDER)
    {
        out.push(
            "sip.password is still docker-jitsi-meet's placeholder value while sip.uri is set; \
             set JIGASI_SIP_PASSWORD or sip.password to the SIP account's password"
                .to_owned(),
        );
    }
    out.extend(sip_tls_warnings(&settings.sip));
    out
}

/// The TLS settings towards the SIP server: not checking the certificate, and settings that
/// have no effect.
fn sip_tls_warnings(sip: &SipSettings) -> Vec<String> {
    let mut out = Vec::new();
    let tls = sip.server_transport == Transport::Tls;
    if tls && !sip.tls_verify {
        out.push(
            "sip.tls_verify = false: the SIP server's TLS certificate is not checked; anyone on \
             the path can pose as the server, read and change the calls"
                .to_owned(),
        );
    }
    if let Some(file) = &sip.tls_ca_file {
        if !tls {
            out.push(format!(
                "sip.tls_ca_file ({}) is ignored: sip.server_transport is not tls",
                file.display()
            ));
        } else if !sip.tls_verify {
            out.push(format!(
                "sip.tls_ca_file ({}) is ignored: sip.tls_verify = false accepts any certificate",
                file.display()
            ));
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Sections

fn port(text: &str) -> Result<u16, InvalidValue> {
    parse_u16(text, 1, u16::MAX, "a port number")
}

fn xmpp(r: &mut Reader<'_>) -> Option<XmppSettings> {
    let domain = r.req("xmpp.domain", DomainName::from_str);
    let auth_domain = r.req("xmpp.auth_domain", DomainName::from_str);
    let guest_domain = r.req("xmpp.guest_domain", DomainName::from_str);
    let muc_domain = r.req("xmpp.muc_domain", DomainName::from_str);
    let internal_muc_domain = r.req("xmpp.internal_muc_domain", DomainName::from_str);
    let port = r.req("xmpp.port", port);
    let default_port = port.unwrap_or(5222);
    let servers = r.list(
        "xmpp.servers",
        |index, item| XmppServer::parse_item(item, index, default_port),
        |servers: Vec<XmppServer>| {
            if servers.is_empty() {
                return Err(InvalidValue::new("must name at least one server"));
            }
            for (i, server) in servers.iter().enumerate() {
                if servers[..i].iter().any(|other| other.id == server.id) {
                    return Err(InvalidValue::new(format!(
                        "duplicate id {:?}: each server needs its own id",
                        server.id
                    )));
                }
            }
            Ok(servers)
        },
    );
    let user = r.req("xmpp.user", JidNode::from_str);
    let password = r.req("xmpp.password", Secret::parse);
    let brewery_muc = r.req("xmpp.brewery_muc", JidNode::from_str);
    let enable_auth = r.req("xmpp.enable_auth", parse_bool);
    let enable_guests = r.req("xmpp.enable_guests", parse_bool);
    let enable_visitors = r.req("xmpp.enable_visitors", parse_bool);
    let focus_resource = r.req("xmpp.focus_resource", parse_text);
    let muc_join_timeout = r.req("xmpp.muc_join_timeout_s", |t| {
        parse_u64(t, 1, 3600, "a number of seconds")
    });
    let tls = r.req("xmpp.tls", XmppTls::from_str);
    let allowed_jid = r.opt("xmpp.allowed_jid", parse_text);
    let pool_size = r.req("xmpp.pool_size", |t| {
        parse_u16(t, 0, 100, "a number of connections")
    });
    let region = r.opt("xmpp.region", parse_text);
    let stats_id = r.opt("xmpp.stats_id", parse_text);
    let trusted_domains = r.list("xmpp.trusted_domains", |_, t| t.parse(), Ok);
    let public_url = r.req("xmpp.public_url", HttpUrl::from_str);
    Some(XmppSettings {
        domain: domain?,
        auth_domain: auth_domain?,
        guest_domain: guest_domain?,
        muc_domain: muc_domain?,
        internal_muc_domain: internal_muc_domain?,
        servers: servers?,
        port: port?,
        user: user?,
        password: password?,
        brewery_muc: brewery_muc?,
        enable_auth: enable_auth?,
        enable_guests: enable_guests?,
        enable_visitors: enable_visitors?,
        focus_resource: focus_resource?,
        muc_join_timeout: Duration::from_secs(muc_join_timeout?),
        pool_size: pool_size?.into(),
        allowed_jid: allowed_jid?,
        tls: tls?,
        region: region?,
        stats_id: stats_id?,
        trusted_domains: trusted_domains?,
        public_url: public_url?,
    })
}

fn sip(r: &mut Reader<'_>) -> Option<SipSettings> {
    let listen = r.req("sip.listen", parse_socket_addr);
    let transports = r.list(
        "sip.transports",
        |_, t| t.parse::<Transport>(),
        |mut list: Vec<Transport>| {
            if list.is_empty() {
                return Err(InvalidValue::new("must list at least one of udp, tcp, tls"));
            }
            let mut seen = Vec::new();
            list.retain(|t| {
                let new = !seen.contains(t);
                seen.push(*t);
                new
            });
            Ok(list)
        },
    );
    let public_address = r.opt("sip.public_address", parse_ip);
    let uri = r.opt("sip.uri", |t| {
        let uri: SipUri = t.parse()?;
        if uri.user.is_none() {
            return Err(InvalidValue::new(
                "expected user@host (the account's address needs a user part)",
            ));
        }
        Ok(uri)
    });
    let password = r.opt("sip.password", Secret::parse);
    let auth_user = r.opt("sip.auth_user", parse_auth_user);
    let mut server = r.opt("sip.server", Host::from_str);
    let mut server_port = r.req("sip.server_port", port);
    // Without an explicit server, the account's domain is the registrar (RFC 3263 without DNS
    // lookups): its host, and its port unless one was configured.
    if let (Some(None), Some(Some(uri))) = (&server, &uri) {
        let uri_origin = r.origin("sip.uri");
        server = Some(Some(uri.host.clone()));
        r.derive("sip.server", &uri.host, "from sip.uri", uri_origin.clone());
        if let (Some(uri_port), Some(Origin::Default)) = (uri.port, r.origin("sip.server_port")) {
            server_port = Some(uri_port);
            r.derive("sip.server_port", &uri_port, "from sip.uri", uri_origin);
        }
    }
    let server_transport = r.req("sip.server_transport", Transport::from_str);
    let tls_ca_file = r.opt("sip.tls_ca_file", parse_text);
    let tls_verify = r.req("sip.tls_verify", parse_bool);
    let keep_alive_method = r.req("sip.keep_alive_method", KeepAliveMethod::from_str);
    let keep_alive_interval = r.req("sip.keep_alive_interval_s", |t| {
        parse_u64(t, 1, 3600, "a number of seconds")
    });
    let default_room = r.opt("sip.default_room", RoomName::from_str);
    let outbound_prefix = r.req("sip.outbound_prefix", parse_dial_prefix);
    let register = r.req("sip.register", parse_bool);
    let registration_expiry = r.req("sip.registration_expiry_s", |t| {
        parse_u64(t, 10, 86_400, "a number of seconds")
    });
    let allowed_peers = r.list("sip.allowed_peers", |_, t| t.parse::<IpNet>(), Ok);
    let sdes_srtp = r.req("sip.sdes_srtp", parse_bool);
    let room_header = r.req("sip.room_header", SipHeaderName::from_str);
    let room_password_header = r.req("sip.room_password_header", SipHeaderName::from_str);
    let domain_base_header = r.req("sip.domain_base_header", SipHeaderName::from_str);
    let tenant_header = r.req("sip.tenant_header", SipHeaderName::from_str);
    let auth_token_header = r.req("sip.auth_token_header", SipHeaderName::from_str);
    Some(SipSettings {
        listen: listen?,
        transports: transports?,
        public_address: public_address?,
        uri: uri?,
        password: password?,
        auth_user: auth_user?,
        server: server?,
        server_port: server_port?,
        server_transport: server_transport?,
        tls_ca_file: tls_ca_file?.map(PathBuf::from),
        tls_verify: tls_verify?,
        keep_alive_method: keep_alive_method?,
        keep_alive_interval: Duration::from_secs(keep_alive_interval?),
        default_room: default_room?,
        outbound_prefix: outbound_prefix?,
        register: register?,
        registration_expiry: Duration::from_secs(registration_expiry?),
        allowed_peers: allowed_peers?,
        sdes_srtp: sdes_srtp?,
        room_header: room_header?,
        room_password_header: room_password_header?,
        domain_base_header: domain_base_header?,
        tenant_header: tenant_header?,
        auth_token_header: auth_token_header?,
    })
}

fn media(r: &mut Reader<'_>) -> Option<MediaSettings> {
    let media_port = |t: &str| parse_u16(t, PortRange::LOWEST, u16::MAX, "a port number");
    let port_min = r.req("media.port_min", media_port);
    let port_max = r.req("media.port_max", media_port);
    let ports = match (port_min, port_max) {
        (Some(min), Some(max)) => match PortRange::new(min, max) {
            Ok(range) => Some(range),
            Err(_) => {
                let max_origin = r.origin("media.port_max").unwrap_or(Origin::Default);
                r.invalid_key(
                    "media.port_min",
                    format!("greater than media.port_max = {max} ({max_origin})"),
                );
                None
            }
        },
        _ => None,
    };
    let opus_complexity = r.req("media.opus_complexity", |t| {
        let v = parse_u16(t, 0, 10, "a number")?;
        u8::try_from(v).map_err(|_| InvalidValue::new("out of range (expected 0-10)"))
    });
    let opus_bitrate = r.req("media.opus_bitrate", |t| {
        parse_u32(t, 6000, 510_000, "a bitrate in bit/s")
    });
    let opus_fec = r.req("media.opus_fec", parse_bool);
    let opus_dtx = r.req("media.opus_dtx", parse_bool);
    let bind_ip = r.req("media.bind_ip", parse_ip);
    Some(MediaSettings {
        ports: ports?,
        opus_complexity: opus_complexity?,
        opus_bitrate: opus_bitrate?,
        opus_fec: opus_fec?,
        opus_dtx: opus_dtx?,
        bind_ip: bind_ip?,
    })
}

fn call(r: &mut Reader<'_>) -> Option<CallSettings> {
    let timeout = r.req("call.invite_timeout_ms", |t| {
        parse_int(t, i64::MIN, i64::MAX, "a whole number of milliseconds")
    })?;
    let drain = r.req("call.drain_timeout_s", |t| {
        parse_u64(t, 0, 7 * 86_400, "a number of seconds")
    })?;
    Some(CallSettings {
        invite_timeout: u64::try_from(timeout)
            .ok()
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis),
        drain_timeout: (drain > 0).then(|| Duration::from_secs(drain)),
    })
}

fn health(r: &mut Reader<'_>) -> Option<HealthSettings> {
    let millis = |t: &str| parse_u64(t, 1000, 86_400_000, "a number of milliseconds");
    let sip_uri = r.opt("health.sip_uri", SipUri::from_str);
    let interval = r.req("health.interval_ms", millis);
    let timeout = r.req("health.timeout_ms", millis);
    let require_brewery = r.opt("health.require_brewery", parse_bool);
    Some(HealthSettings {
        sip_uri: sip_uri?,
        interval: Duration::from_millis(interval?),
        timeout: Duration::from_millis(timeout?),
        require_brewery: require_brewery?,
    })
}

fn api(r: &mut Reader<'_>) -> Option<ApiSettings> {
    let host = r.req("api.host", parse_ip);
    let port = r.req("api.port", |t| parse_u16(t, 0, u16::MAX, "a port number"));
    let shutdown_enabled = r.req("api.shutdown_enabled", parse_bool);
    Some(ApiSettings {
        host: host?,
        port: port?,
        shutdown_enabled: shutdown_enabled?,
    })
}

fn log(r: &mut Reader<'_>) -> Option<LogSettings> {
    let format = r.req("log.format", LogFormat::from_str);
    let level = r.req("log.level", LogLevel::from_str);
    Some(LogSettings {
        format: format?,
        level: level?,
    })
}

// ---------------------------------------------------------------------------------------------
// Reader

struct Reader<'a> {
    raw: &'a RawMap,
    report_missing: bool,
    errors: Vec<ConfigError>,
    effective: BTreeMap<&'static str, Effective>,
}

/// Quotes text as a TOML basic string.
pub(crate) fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn show_scalar(spec: &KeySpec, value: &dyn Display) -> String {
    if spec.secret {
        return toml_string(Secret::MASK);
    }
    match spec.kind {
        Kind::Int | Kind::Bool => value.to_string(),
        Kind::Str | Kind::List => toml_string(&value.to_string()),
    }
}

impl Reader<'_> {
    fn spec(&mut self, key: &'static str) -> Option<&'static KeySpec> {
        let spec = keys::lookup(key);
        if spec.is_none() {
            self.errors.push(ConfigError::missing(
                key,
                "internal error: the key is not registered",
            ));
        }
        spec
    }

    fn origin(&self, key: &str) -> Option<Origin> {
        self.raw.get(key).map(|v| v.origin.clone())
    }

    fn record(&mut self, spec: &'static KeySpec, value: Option<String>, origin: Option<Origin>) {
        self.effective.insert(
            spec.key,
            Effective {
                value,
                origin,
                note: None,
            },
        );
    }

    /// Records a value derived from another key.
    fn derive(
        &mut self,
        key: &'static str,
        value: &dyn Display,
        note: &str,
        origin: Option<Origin>,
    ) {
        if let Some(spec) = keys::lookup(key) {
            self.effective.insert(
                spec.key,
                Effective {
                    value: Some(show_scalar(spec, value)),
                    origin,
                    note: Some(note.to_owned()),
                },
            );
        }
    }

    fn invalid(&mut self, spec: &KeySpec, text: &str, origin: &Origin, problem: &str) {
        let shown = if spec.secret { Secret::MASK } else { text };
        self.errors
            .push(ConfigError::invalid(spec.key, Some(shown), origin, problem));
    }

    /// An error about a key's current value that is found by comparing it with another key.
    fn invalid_key(&mut self, key: &'static str, problem: String) {
        let Some(spec) = keys::lookup(key) else {
            return;
        };
        match self.raw.get(key) {
            Some(raw) => {
                let text = match &raw.text {
                    RawText::One(text) => text.clone(),
                    RawText::Many(items) => items.join(","),
                };
                let origin = raw.origin.clone();
                self.invalid(spec, &text, &origin, &problem);
            }
            None => self.errors.push(ConfigError::missing(key, problem)),
        }
    }

    /// The winning text of a scalar key (trimmed unless secret), with its origin.
    fn scalar(&self, spec: &KeySpec) -> Option<(String, Origin)> {
        let raw = self.raw.get(spec.key)?;
        let text = match &raw.text {
            RawText::One(text) => text.clone(),
            RawText::Many(items) => items.join(","),
        };
        let text = if spec.secret {
            text
        } else {
            text.trim().to_owned()
        };
        Some((text, raw.origin.clone()))
    }

    fn report_missing(&mut self, spec: &KeySpec) {
        if !self.report_missing || self.raw.was_rejected(spec.key) {
            return;
        }
        let how = match spec.env.first() {
            Some(env) => format!("set {} or {} in the config file", env.var(), spec.key),
            None => format!("set {} in the config file", spec.key),
        };
        self.errors.push(ConfigError::missing(
            spec.key,
            format!("required but not set ({how})"),
        ));
    }

    /// A key that must have a value (it has a default, or is required).
    fn req<T: Display>(
        &mut self,
        key: &'static str,
        parse: impl FnOnce(&str) -> Result<T, InvalidValue>,
    ) -> Option<T> {
        let spec = self.spec(key)?;
        let Some((text, origin)) = self.scalar(spec) else {
            self.record(spec, None, None);
            if spec.required {
                self.report_missing(spec);
            } else {
                self.errors.push(ConfigError::missing(
                    key,
                    "internal error: the key has neither a default nor a value",
                ));
            }
            return None;
        };
        match parse(&text) {
            Ok(value) => {
                self.record(spec, Some(show_scalar(spec, &value)), Some(origin));
                Some(value)
            }
            Err(e) => {
                self.record(spec, None, Some(origin.clone()));
                self.invalid(spec, &text, &origin, e.message());
                None
            }
        }
    }

    /// An optional key: unset or empty is `Some(None)`; `None` means invalid (error recorded).
    fn opt<T: Display>(
        &mut self,
        key: &'static str,
        parse: impl FnOnce(&str) -> Result<T, InvalidValue>,
    ) -> Option<Option<T>> {
        let spec = self.spec(key)?;
        match self.scalar(spec) {
            Some((text, origin)) if !text.is_empty() => match parse(&text) {
                Ok(value) => {
                    self.record(spec, Some(show_scalar(spec, &value)), Some(origin));
                    Some(Some(value))
                }
                Err(e) => {
                    self.record(spec, None, Some(origin.clone()));
                    self.invalid(spec, &text, &origin, e.message());
                    None
                }
            },
            Some((_, origin)) => {
                self.record(spec, None, Some(origin));
                Some(None)
            }
            None => {
                self.record(spec, None, None);
                Some(None)
            }
        }
    }

    /// A list key: each item parsed (its errors show the item), then the whole list checked.
    fn list<T: Display>(
        &mut self,
        key: &'static str,
        mut item: impl FnMut(usize, &str) -> Result<T, InvalidValue>,
        whole: impl FnOnce(Vec<T>) -> Result<Vec<T>, InvalidValue>,
    ) -> Option<Vec<T>> {
        let spec = self.spec(key)?;
        let Some(raw) = self.raw.get(key) else {
            self.record(spec, Some("[]".to_owned()), None);
            return whole(Vec::new()).ok();
        };
        let origin = raw.origin.clone();
        let items: Vec<String> = match &raw.text {
            RawText::Many(items) => items.clone(),
            RawText::One(text) => super::layers::split_list(text),
        };
        let mut parsed = Vec::new();
        let mut ok = true;
        for (index, text) in items.iter().enumerate() {
            match item(index, text) {
                Ok(value) => parsed.push(value),
                Err(e) => {
                    ok = false;
                    self.invalid(spec, text, &origin, e.message());
                }
            }
        }
        if !ok {
            self.record(spec, None, Some(origin));
            return None;
        }
        match whole(parsed) {
            Ok(list) => {
                let shown: Vec<String> = list.iter().map(|v| toml_string(&v.to_string())).collect();
                self.record(spec, Some(format!("[{}]", shown.join(", "))), Some(origin));
                Some(list)
            }
            Err(e) => {
                self.record(spec, None, Some(origin.clone()));
                self.invalid(spec, &items.join(","), &origin, e.message());
                None
            }
        }
    }
}
