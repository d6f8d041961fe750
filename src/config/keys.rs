//! The key registry: one row per setting, naming its dotted key, TOML shape, default, environment
//! variables, `JIGASI_CONFIGURATION` properties, whether it is secret, and a one-line doc.
//!
//! Everything else reads this table: the file and environment layers (which keys exist, which
//! variables feed them), `render` (order, masking), the example-file test (nothing can drift).
//! The typed parse of each key is in `build.rs`, which a test holds to reading every row.

/// The TOML shape of a value: how the file layer checks it and how `render` writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Str,
    Int,
    Bool,
    /// A list of strings: a TOML array, or a comma-separated string (environment, flags).
    List,
}

impl Kind {
    /// For "expected …" messages.
    pub(crate) fn expected(self) -> &'static str {
        match self {
            Kind::Str => "a string",
            Kind::Int => "an integer",
            Kind::Bool => "a boolean",
            Kind::List => "a list of strings",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DefaultValue {
    /// Optional, or required when `KeySpec::required`.
    None,
    Text(&'static str),
    List(&'static [&'static str]),
}

/// How an environment variable feeds a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnvSource {
    /// The variable's text is the value.
    Var(&'static str),
    /// A boolean variable: when true the key gets `value`; when false the key is left alone.
    WhenTrue {
        var: &'static str,
        value: &'static str,
    },
}

impl EnvSource {
    pub(crate) fn var(&self) -> &'static str {
        match self {
            EnvSource::Var(var) | EnvSource::WhenTrue { var, .. } => var,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct KeySpec {
    /// Dotted key: `<table>.<name>`.
    pub key: &'static str,
    pub kind: Kind,
    pub default: DefaultValue,
    pub required: bool,
    pub secret: bool,
    /// Variables in precedence order: the first one set wins.
    pub env: &'static [EnvSource],
    /// Jigasi properties honoured inside `JIGASI_CONFIGURATION`; `<acc>` matches any account id.
    pub props: &'static [&'static str],
    pub doc: &'static str,
}

impl KeySpec {
    pub(crate) fn section(&self) -> &'static str {
        self.key.split_once('.').map_or(self.key, |(s, _)| s)
    }

    pub(crate) fn name(&self) -> &'static str {
        self.key.split_once('.').map_or(self.key, |(_, n)| n)
    }

    const fn def(self, text: &'static str) -> Self {
        KeySpec {
            default: DefaultValue::Text(text),
            ..self
        }
    }

    const fn defs(self, items: &'static [&'static str]) -> Self {
        KeySpec {
            default: DefaultValue::List(items),
            ..self
        }
    }

    const fn env(self, env: &'static [EnvSource]) -> Self {
        KeySpec { env, ..self }
    }

    const fn props(self, props: &'static [&'static str]) -> Self {
        KeySpec { props, ..self }
    }

    const fn secret(self) -> Self {
        KeySpec {
            secret: true,
            ..self
        }
    }

    const fn required(self) -> Self {
        KeySpec {
            required: true,
            ..self
        }
    }
}

const fn k(key: &'static str, kind: Kind, doc: &'static str) -> KeySpec {
    KeySpec {
        key,
        kind,
        default: DefaultValue::None,
        required: false,
        secret: false,
        env: &[],
        props: &[],
        doc,
    }
}

use EnvSource::Var;
use Kind::{Bool, Int, List, Str};

/// `net.java.sip.communicator.impl.protocol.sip.<acc>.` + name, as a `&'static str`.
macro_rules! concat_sip_acc {
    ($name:literal) => {
        concat!("net.java.sip.communicator.impl.protocol.sip.<acc>.", $name)
    };
}

/// Every setting, in the order `render` and the example file show them.
pub(crate) static KEYS: &[KeySpec] = &[
    // --- xmpp ---------------------------------------------------------------------------------
    k(
        "xmpp.domain",
        Str,
        "the deployment's XMPP domain (also the SIP domain base)",
    )
    .def("meet.jitsi")
    .env(&[Var("XMPP_DOMAIN")]),
    k(
        "xmpp.auth_domain",
        Str,
        "domain the brewery account logs in to",
    )
    .def("auth.meet.jitsi")
    .env(&[Var("XMPP_AUTH_DOMAIN")]),
    k(
        "xmpp.guest_domain",
        Str,
        "anonymous login domain for per-call connections when guests are enabled",
    )
    .def("guest.meet.jitsi")
    .env(&[Var("XMPP_GUEST_DOMAIN")]),
    k(
        "xmpp.muc_domain",
        Str,
        "conference MUC domain; bare room names get \"@\" + this",
    )
    .def("muc.meet.jitsi")
    .env(&[Var("XMPP_MUC_DOMAIN")])
    .props(&["org.jitsi.jigasi.MUC_SERVICE_ADDRESS"]),
    k(
        "xmpp.internal_muc_domain",
        Str,
        "MUC domain of the brewery room",
    )
    .def("internal-muc.meet.jitsi")
    .env(&[Var("XMPP_INTERNAL_MUC_DOMAIN")]),
    k(
        "xmpp.servers",
        List,
        "Prosody servers as host[:port[:id]], one brewery connection each",
    )
    .defs(&["xmpp.meet.jitsi"])
    .env(&[Var("XMPP_SERVER")]),
    k(
        "xmpp.port",
        Int,
        "XMPP client port used when a server item has none",
    )
    .def("5222")
    .env(&[Var("XMPP_PORT")]),
    k(
        "xmpp.user",
        Str,
        "brewery account user name (logs in as user@auth_domain)",
    )
    .def("jigasi")
    .env(&[Var("JIGASI_XMPP_USER")]),
    k("xmpp.password", Str, "brewery account password")
        .required()
        .secret()
        .env(&[Var("JIGASI_XMPP_PASSWORD")]),
    k(
        "xmpp.brewery_muc",
        Str,
        "brewery room name (joined at internal_muc_domain)",
    )
    .def("jigasibrewery")
    .env(&[Var("JIGASI_BREWERY_MUC")]),
    k(
        "xmpp.enable_auth",
        Bool,
        "per-call connections log in (user@auth_domain, or anonymously at guest_domain)",
    )
    .def("false")
    .env(&[Var("ENABLE_AUTH")]),
    k(
        "xmpp.enable_guests",
        Bool,
        "with enable_auth: per-call connections log in anonymously at guest_domain",
    )
    .def("false")
    .env(&[Var("ENABLE_GUESTS")]),
    k("xmpp.enable_visitors", Bool, "support rooms with visitors")
        .def("false")
        .env(&[Var("ENABLE_VISITORS")]),
    k(
        "xmpp.focus_resource",
        Str,
        "nick of the conference focus in rooms",
    )
    .def("focus")
    .props(&["org.jitsi.jigasi.FOCUS_RESOURCE"]),
    k(
        "xmpp.muc_join_timeout_s",
        Int,
        "seconds allowed for joining a room",
    )
    .def("10")
    .props(&["org.jitsi.jigasi.MUC_JOIN_TIMEOUT"]),
    k(
        "xmpp.allowed_jid",
        Str,
        "bare JID allowed to send Rayo dial requests (default: the brewery room, as docker)",
    )
    .props(&["org.jitsi.jigasi.ALLOWED_JID"]),
    k(
        "xmpp.tls",
        Str,
        "XMPP TLS: starttls-trust-any (docker: self-signed Prosody), starttls (verified), none",
    )
    .def("starttls-trust-any"),
    k(
        "xmpp.pool_size",
        Int,
        "logged-in XMPP connections kept ready for new calls, 0-100",
    )
    .def("2"),
    k(
        "xmpp.region",
        Str,
        "region advertised in presence and brewery stats",
    )
    .env(&[Var("JIGASI_LOCAL_REGION")])
    .props(&["org.jitsi.jigasi.LOCAL_REGION"]),
    k("xmpp.stats_id", Str, "stats id advertised in room presence")
        .env(&[Var("JIGASI_STATS_ID"), Var("JIGASI_INSTANCE_ID")])
        .props(&["org.jitsi.jigasi.STATS_ID"]),
    k(
        "xmpp.trusted_domains",
        List,
        "domains whose jigasi/jibri participants are believed",
    )
    .defs(&[])
    .env(&[Var("JIGASI_TRUSTED_DOMAINS")]),
    k(
        "xmpp.public_url",
        Str,
        "the deployment's public web address",
    )
    .def("https://localhost:8443")
    .env(&[Var("PUBLIC_URL")]),
    // --- sip ----------------------------------------------------------------------------------
    k(
        "sip.listen",
        Str,
        "local SIP address and port (UDP and TCP)",
    )
    .def("0.0.0.0:5060"),
    k(
        "sip.transports",
        List,
        "SIP transports to listen on: udp, tcp (tls: not supported for listening, the gateway refuses to start)",
    )
    .defs(&["udp", "tcp"]),
    k(
        "sip.public_address",
        Str,
        "public IP for SDP c= and Contact when behind NAT",
    ),
    k(
        "sip.uri",
        Str,
        "SIP account to register, user@domain (sip:/sips: optional)",
    )
    .env(&[Var("JIGASI_SIP_URI")]),
    k("sip.password", Str, "SIP account password")
        .secret()
        .env(&[Var("JIGASI_SIP_PASSWORD")]),
    k(
        "sip.auth_user",
        Str,
        "digest user name when it differs from the URI's user",
    ),
    k(
        "sip.server",
        Str,
        "registrar / outbound proxy host (default: sip.uri's host)",
    )
    .env(&[Var("JIGASI_SIP_SERVER")]),
    k("sip.server_port", Int, "registrar / outbound proxy port")
        .def("5060")
        .env(&[Var("JIGASI_SIP_PORT")]),
    k(
        "sip.server_transport",
        Str,
        "transport to the registrar / proxy: udp, tcp, tls",
    )
    .def("udp")
    .env(&[Var("JIGASI_SIP_TRANSPORT")]),
    k(
        "sip.tls_ca_file",
        Str,
        "with server_transport tls: PEM file of the CAs the server's certificate must chain to (default: the system's)",
    ),
    k(
        "sip.tls_verify",
        Bool,
        "with server_transport tls: check the server's certificate (CA and name); false accepts any",
    )
    .def("true"),
    k(
        "sip.keep_alive_method",
        Str,
        "registration keep-alive: options, crlf, register, none",
    )
    .def("options")
    .env(&[Var("JIGASI_SIP_KEEP_ALIVE_METHOD")]),
    k(
        "sip.keep_alive_interval_s",
        Int,
        "seconds between keep-alives",
    )
    .def("25"),
    k("sip.default_room", Str, "room for calls that name none")
        .env(&[Var("JIGASI_SIP_DEFAULT_ROOM")])
        .props(&["org.jitsi.jigasi.DEFAULT_JVB_ROOM_NAME"]),
    k(
        "sip.register",
        Bool,
        "register at sip.server as sip.uri; false: a trunk (no REGISTER, peers from sip.allowed_peers)",
    )
    .def("true"),
    k(
        "sip.registration_expiry_s",
        Int,
        "seconds a registration is asked to last, 10-86400 (refreshed before it ends)",
    )
    .def("600"),
    k(
        "sip.allowed_peers",
        List,
        "addresses (IP or CIDR) allowed to call in; empty: anyone",
    )
    .defs(&[]),
    k(
        "sip.outbound_prefix",
        Str,
        "prefix put in front of dial-out numbers",
    )
    .def("")
    .props(&[concat_sip_acc!("OUTBOUND_PREFIX")]),
    k(
        "sip.sdes_srtp",
        Bool,
        "offer and require SDES-SRTP on the SIP leg",
    )
    .def("false")
    .env(&[Var("JIGASI_ENABLE_SDES_SRTP")]),
    k("sip.room_header", Str, "INVITE header naming the room")
        .def("Jitsi-Conference-Room")
        .props(&[concat_sip_acc!("JITSI_MEET_ROOM_HEADER_NAME")]),
    k(
        "sip.room_password_header",
        Str,
        "INVITE header carrying the room password",
    )
    .def("Jitsi-Conference-Room-Pass")
    .props(&[concat_sip_acc!("JITSI_MEET_ROOM_PASS_HEADER_NAME")]),
    k(
        "sip.domain_base_header",
        Str,
        "INVITE header carrying the domain base",
    )
    .def("Jitsi-Conference-Domain-Base")
    .props(&[concat_sip_acc!("JITSI_MEET_DOMAIN_BASE_HEADER_NAME")]),
    k(
        "sip.tenant_header",
        Str,
        "INVITE header carrying the tenant",
    )
    .def("Jitsi-Conference-Domain-Tenant")
    .props(&[concat_sip_acc!("JITSI_MEET_DOMAIN_TENANT_HEADER_NAME")]),
    k(
        "sip.auth_token_header",
        Str,
        "INVITE header carrying a JWT for the room",
    )
    .def("Jitsi-Auth-Token")
    .props(&[concat_sip_acc!("JITSI_AUTH_TOKEN_HEADER_NAME")]),
    // --- media --------------------------------------------------------------------------------
    k("media.port_min", Int, "lowest UDP port for media")
        .def("20000")
        .env(&[Var("JIGASI_PORT_MIN")]),
    k("media.port_max", Int, "highest UDP port for media")
        .def("20050")
        .env(&[Var("JIGASI_PORT_MAX")]),
    k(
        "media.opus_complexity",
        Int,
        "Opus encoder complexity, 0-10",
    )
    .def("5"),
    k(
        "media.opus_bitrate",
        Int,
        "Opus encoder bitrate in bit/s, 6000-510000",
    )
    .def("20000"),
    k(
        "media.opus_fec",
        Bool,
        "Opus in-band forward error correction",
    )
    .def("true"),
    k("media.opus_dtx", Bool, "Opus discontinuous transmission").def("false"),
    k(
        "media.bind_ip",
        Str,
        "local IP address the media sockets bind",
    )
    .def("0.0.0.0"),
    // --- call ---------------------------------------------------------------------------------
    k(
        "call.invite_timeout_ms",
        Int,
        "wait for the conference's offer after joining; <= 0: do not wait",
    )
    .def("30000")
    .env(&[Var("JIGASI_JVB_TIMEOUT")])
    .props(&["org.jitsi.jigasi.JVB_INVITE_TIMEOUT"]),
    k(
        "call.drain_timeout_s",
        Int,
        "after SIGTERM, seconds to let calls end before hanging up the rest; 0: wait for them",
    )
    .def("0"),
    // --- health -------------------------------------------------------------------------------
    k(
        "health.sip_uri",
        Str,
        "SIP URI called periodically as a health check",
    )
    .env(&[Var("JIGASI_HEALTH_CHECK_SIP_URI")]),
    k(
        "health.interval_ms",
        Int,
        "milliseconds between health-check calls",
    )
    .def("300000")
    .env(&[Var("JIGASI_HEALTH_CHECK_INTERVAL")]),
    k(
        "health.timeout_ms",
        Int,
        "unhealthy after this long without a successful check",
    )
    .def("600000"),
    k(
        "health.require_brewery",
        Bool,
        "unhealthy while not in the jigasi brewery; unset: only when calls can be placed (a SIP account or sip.server)",
    ),
    // --- api ----------------------------------------------------------------------------------
    k("api.host", Str, "IP the HTTP API listens on")
        .def("127.0.0.1")
        .env(&[EnvSource::WhenTrue {
            var: "JIGASI_ENABLE_REST",
            value: "0.0.0.0",
        }]),
    k("api.port", Int, "HTTP API port (0: any free port)").def("8788"),
    k(
        "api.shutdown_enabled",
        Bool,
        "allow graceful shutdown through the HTTP API",
    )
    .def("false")
    .env(&[Var("SHUTDOWN_REST_ENABLED")])
    .props(&["org.jitsi.jigasi.ENABLE_REST_SHUTDOWN"]),
    // --- log ----------------------------------------------------------------------------------
    k("log.format", Str, "log format: human or json").def("human"),
    k(
        "log.level",
        Str,
        "log filter when RUST_LOG is unset, e.g. info,jitsi_sip_gateway::sip=debug",
    )
    .def("info"),
];

pub(crate) fn lookup(key: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|spec| spec.key == key)
}

/// Whether `prefix` names a table (`xmpp`) rather than a key.
pub(crate) fn is_section(prefix: &str) -> bool {
    KEYS.iter().any(|spec| spec.section() == prefix)
}

/// Table names in registry order.
pub(crate) fn sections() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for spec in KEYS {
        if !out.contains(&spec.section()) {
            out.push(spec.section());
        }
    }
    out
}

/// Whether the jigasi property `name` matches `pattern` (where `<acc>` is one account id).
pub(crate) fn prop_matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once("<acc>") {
        None => pattern == name,
        Some((prefix, suffix)) => name
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(suffix))
            .is_some_and(|acc| !acc.is_empty() && !acc.contains('.')),
    }
}

/// The registered key closest to `key` by edit distance, for "did you mean" hints.
pub(crate) fn suggest(key: &str) -> Option<&'static str> {
    KEYS.iter()
        .map(|spec| (edit_distance(key, spec.key), spec.key))
        .filter(|(d, _)| *d <= 3)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Docker-jitsi-meet variables that are recognised but have no effect here, with the reason.
/// A name ending in `*` is a prefix.
pub(crate) static IGNORED_ENV: &[(&str, &str)] = &[
    ("JIGASI_LOG_FILE", "logs go to standard output"),
    ("JIGASI_DISABLE_SIP", "this gateway always serves SIP"),
    (
        "USE_TRANSLATOR_IN_CONFERENCE",
        "this gateway always mixes the conference audio",
    ),
    (
        "BOSH_URL_PATTERN",
        "per-call connections use XMPP over TCP to xmpp.servers",
    ),
    (
        "JIGASI_VISITORS_QUEUE_SERVICE_URL",
        "the visitors queue service is not supported",
    ),
    (
        "JIGASI_VISITORS_QUEUE_SERVICE_PRIVATE_KEY_PATH",
        "the visitors queue service is not supported",
    ),
    (
        "JIGASI_VISITORS_QUEUE_SERVICE_PRIVATE_KEY_ID",
        "the visitors queue service is not supported",
    ),
    ("XMPP_HIDDEN_DOMAIN", "only the transcriber uses it"),
    ("XMPP_RECORDER_DOMAIN", "only the transcriber uses it"),
    (
        "JIGASI_TRANSCRIBER_*",
        "transcription is not supported by this gateway",
    ),
    ("GC_*", "transcription is not supported by this gateway"),
    ("SENTRY_DSN", "Sentry reporting is not supported"),
    ("JIGASI_SENTRY_DSN", "Sentry reporting is not supported"),
    ("SENTRY_ENVIRONMENT", "Sentry reporting is not supported"),
    ("SENTRY_RELEASE", "Sentry reporting is not supported"),
    (
        "JIGASI_SIPUSER",
        "a Debian package variable; set JIGASI_SIP_URI or sip.uri",
    ),
    (
        "JIGASI_SIPPWD",
        "a Debian package variable; set JIGASI_SIP_PASSWORD or sip.password",
    ),
    ("JIGASI_MAX_MEMORY", "there is no JVM"),
    ("JAVA_SYS_PROPS", "there is no JVM"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_unique_documented_and_in_a_table() {
        for (i, spec) in KEYS.iter().enumerate() {
            assert!(spec.key.contains('.'), "{}", spec.key);
            assert!(!spec.doc.is_empty(), "{}", spec.key);
            assert!(
                KEYS[i + 1..].iter().all(|other| other.key != spec.key),
                "duplicate {}",
                spec.key
            );
            assert!(
                !(spec.required && spec.default != DefaultValue::None),
                "{} is required but has a default",
                spec.key
            );
            assert_eq!(
                matches!(spec.default, DefaultValue::List(_)),
                spec.kind == Kind::List && spec.default != DefaultValue::None,
                "{}: list default for a non-list key",
                spec.key
            );
        }
    }

    #[test]
    fn no_environment_variable_feeds_two_keys() {
        let mut seen = Vec::new();
        for spec in KEYS {
            for env in spec.env {
                assert!(!seen.contains(&env.var()), "{} used twice", env.var());
                seen.push(env.var());
            }
        }
    }

    #[test]
    fn account_properties_match_any_single_account_id() {
        let pattern = concat_sip_acc!("OUTBOUND_PREFIX");
        assert!(pattern.starts_with("net.java.sip.communicator.impl.protocol.sip.<acc>."));
        assert!(prop_matches(
            pattern,
            "net.java.sip.communicator.impl.protocol.sip.acc1.OUTBOUND_PREFIX"
        ));
        assert!(!prop_matches(
            pattern,
            "net.java.sip.communicator.impl.protocol.sip.OUTBOUND_PREFIX"
        ));
        assert!(!prop_matches(
            pattern,
            "net.java.sip.communicator.impl.protocol.sip.a.b.OUTBOUND_PREFIX"
        ));
        assert!(prop_matches(
            "org.jitsi.jigasi.STATS_ID",
            "org.jitsi.jigasi.STATS_ID"
        ));
    }

    #[test]
    fn typos_get_a_suggestion() {
        assert_eq!(suggest("xmpp.domian"), Some("xmpp.domain"));
        assert_eq!(suggest("totally.different"), None);
    }
}
