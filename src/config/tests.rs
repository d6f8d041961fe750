//! Load-level tests: sources, precedence, docker semantics, errors, masking, render, example file.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::keys::{DefaultValue, KEYS};
use super::*;

const PASSWORD: &str = "xmpp-Pa55word";

fn env_of(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The environment `pairs` plus the required password (unless `pairs` sets it).
fn docker_env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut env = env_of(&[("JIGASI_XMPP_PASSWORD", PASSWORD)]);
    env.extend(env_of(pairs));
    env
}

fn temp_toml(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp file");
    file.write_all(text.as_bytes()).expect("write temp file");
    file
}

fn load_with(
    file: Option<&Path>,
    env: &BTreeMap<String, String>,
    flags: &[FlagValue],
) -> Result<Loaded, ConfigErrors> {
    load(&ConfigInput {
        file,
        env,
        flags: flags.to_vec(),
    })
}

fn load_env(pairs: &[(&str, &str)]) -> Result<Loaded, ConfigErrors> {
    load_with(None, &docker_env(pairs), &[])
}

fn ok(result: Result<Loaded, ConfigErrors>) -> Loaded {
    match result {
        Ok(loaded) => loaded,
        Err(errors) => panic!("expected settings to load, got:\n{errors}"),
    }
}

fn errors(result: Result<Loaded, ConfigErrors>) -> Vec<String> {
    match result {
        Ok(loaded) => panic!("expected errors, got {:?}", loaded.settings),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn the_error(result: Result<Loaded, ConfigErrors>) -> String {
    let errors = errors(result);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    errors.into_iter().next().unwrap_or_default()
}

fn set(key: &str, value: &str) -> FlagValue {
    FlagValue::new("--set", key, value)
}

fn env_origin(var: &str) -> Origin {
    Origin::Env(var.to_owned())
}

fn example_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/gateway.example.toml")
}

// ---------------------------------------------------------------------------------------------
// Defaults and the docker environment

#[test]
fn with_only_the_password_set_the_docker_defaults_apply() {
    let s = ok(load_env(&[])).settings;
    assert_eq!(s.xmpp.domain.as_str(), "meet.jitsi");
    assert_eq!(s.xmpp.login_jid(), "jigasi@auth.meet.jitsi");
    assert_eq!(
        s.xmpp.brewery_room(),
        "jigasibrewery@internal-muc.meet.jitsi"
    );
    assert_eq!(s.xmpp.servers.len(), 1);
    assert_eq!(s.xmpp.servers[0].to_string(), "xmpp.meet.jitsi:5222:0");
    assert_eq!(s.xmpp.password.expose(), PASSWORD);
    assert_eq!(s.xmpp.muc_join_timeout, Duration::from_secs(10));
    assert_eq!(s.xmpp.public_url.to_string(), "https://localhost:8443");
    assert_eq!(s.sip.listen.to_string(), "0.0.0.0:5060");
    assert_eq!(s.sip.transports, [Transport::Udp, Transport::Tcp]);
    assert_eq!(s.sip.uri, None);
    assert_eq!(s.sip.server, None);
    assert_eq!(s.sip.server_port, 5060);
    assert_eq!(s.sip.keep_alive_method, KeepAliveMethod::Options);
    assert_eq!(s.sip.keep_alive_interval, Duration::from_secs(25));
    assert_eq!(s.sip.room_header.as_str(), "Jitsi-Conference-Room");
    assert_eq!(s.sip.auth_token_header.as_str(), "Jitsi-Auth-Token");
    assert_eq!((s.media.ports.min(), s.media.ports.max()), (20000, 20050));
    assert_eq!((s.media.opus_complexity, s.media.opus_bitrate), (5, 20000));
    assert!(s.media.opus_fec && !s.media.opus_dtx);
    assert_eq!(s.call.invite_timeout, Some(Duration::from_millis(30000)));
    assert_eq!(s.health.interval, Duration::from_millis(300_000));
    assert_eq!(s.health.timeout, Duration::from_millis(600_000));
    assert_eq!(s.api.bind_addr().to_string(), "127.0.0.1:8788");
    assert_eq!(s.log.format, LogFormat::Human);
    assert_eq!(s.log.level.as_str(), "info");
}

type Check = fn(&Settings) -> bool;

/// Every docker variable the registry knows, with the key it sets and a check of the typed value.
const ENV_CASES: &[(&str, &str, &str, Check)] = &[
    ("XMPP_DOMAIN", "Example.org", "xmpp.domain", |s| {
        s.xmpp.domain.as_str() == "example.org"
    }),
    (
        "XMPP_AUTH_DOMAIN",
        "auth.example.org",
        "xmpp.auth_domain",
        |s| s.xmpp.auth_domain.as_str() == "auth.example.org",
    ),
    (
        "XMPP_GUEST_DOMAIN",
        "guest.example.org",
        "xmpp.guest_domain",
        |s| s.xmpp.guest_domain.as_str() == "guest.example.org",
    ),
    (
        "XMPP_MUC_DOMAIN",
        "conference.example.org",
        "xmpp.muc_domain",
        |s| s.xmpp.room_jid(&"standup".parse().unwrap()) == "standup@conference.example.org",
    ),
    (
        "XMPP_INTERNAL_MUC_DOMAIN",
        "internal.example.org",
        "xmpp.internal_muc_domain",
        |s| s.xmpp.brewery_room() == "jigasibrewery@internal.example.org",
    ),
    ("XMPP_SERVER", "prosody", "xmpp.servers", |s| {
        s.xmpp.servers.len() == 1 && s.xmpp.servers[0].to_string() == "prosody:5222:0"
    }),
    ("XMPP_PORT", "5223", "xmpp.port", |s| {
        s.xmpp.port == 5223 && s.xmpp.servers[0].port == 5223
    }),
    ("JIGASI_XMPP_USER", "gateway", "xmpp.user", |s| {
        s.xmpp.login_jid() == "gateway@auth.meet.jitsi"
    }),
    (
        "JIGASI_XMPP_PASSWORD",
        "other-secret",
        "xmpp.password",
        |s| s.xmpp.password.expose() == "other-secret",
    ),
    (
        "JIGASI_BREWERY_MUC",
        "JigasiBrewery",
        "xmpp.brewery_muc",
        |s| s.xmpp.brewery_muc.as_str() == "JigasiBrewery",
    ),
    ("ENABLE_AUTH", "1", "xmpp.enable_auth", |s| {
        s.xmpp.enable_auth
    }),
    ("ENABLE_GUESTS", "true", "xmpp.enable_guests", |s| {
        s.xmpp.enable_guests
    }),
    ("ENABLE_VISITORS", "yes", "xmpp.enable_visitors", |s| {
        s.xmpp.enable_visitors
    }),
    ("JIGASI_LOCAL_REGION", "eu-central-1", "xmpp.region", |s| {
        s.xmpp.region.as_deref() == Some("eu-central-1")
    }),
    ("JIGASI_STATS_ID", "stats-7", "xmpp.stats_id", |s| {
        s.xmpp.stats_id.as_deref() == Some("stats-7")
    }),
    ("JIGASI_INSTANCE_ID", "jigasi-123", "xmpp.stats_id", |s| {
        s.xmpp.stats_id.as_deref() == Some("jigasi-123")
    }),
    (
        "JIGASI_TRUSTED_DOMAINS",
        "a.example, b.example,",
        "xmpp.trusted_domains",
        |s| {
            s.xmpp
                .trusted_domains
                .iter()
                .map(DomainName::as_str)
                .collect::<Vec<_>>()
                == ["a.example", "b.example"]
        },
    ),
    (
        "PUBLIC_URL",
        "https://meet.example.org/",
        "xmpp.public_url",
        |s| s.xmpp.public_url.host_port() == "meet.example.org",
    ),
    ("JIGASI_SIP_URI", "jitsi@pbx.example.org", "sip.uri", |s| {
        let uri = s.sip.uri.as_ref().unwrap();
        uri.user.as_deref() == Some("jitsi") && uri.host.to_string() == "pbx.example.org"
    }),
    ("JIGASI_SIP_PASSWORD", "sip-secret", "sip.password", |s| {
        s.sip.password.as_ref().map(Secret::expose) == Some("sip-secret")
    }),
    ("JIGASI_SIP_SERVER", "10.0.0.5", "sip.server", |s| {
        s.sip.server == Some(Host::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5))))
    }),
    ("JIGASI_SIP_PORT", "5080", "sip.server_port", |s| {
        s.sip.server_port == 5080 && s.sip.listen.port() == 5060
    }),
    ("JIGASI_SIP_TRANSPORT", "TCP", "sip.server_transport", |s| {
        s.sip.server_transport == Transport::Tcp
    }),
    (
        "JIGASI_SIP_KEEP_ALIVE_METHOD",
        "CRLF",
        "sip.keep_alive_method",
        |s| s.sip.keep_alive_method == KeepAliveMethod::Crlf,
    ),
    (
        "JIGASI_SIP_DEFAULT_ROOM",
        "lobby",
        "sip.default_room",
        |s| {
            s.sip
                .default_room
                .as_ref()
                .map(ToString::to_string)
                .as_deref()
                == Some("lobby")
        },
    ),
    ("JIGASI_ENABLE_SDES_SRTP", "1", "sip.sdes_srtp", |s| {
        s.sip.sdes_srtp
    }),
    ("JIGASI_PORT_MIN", "20010", "media.port_min", |s| {
        s.media.ports.min() == 20010
    }),
    ("JIGASI_PORT_MAX", "20100", "media.port_max", |s| {
        s.media.ports.max() == 20100
    }),
    ("JIGASI_JVB_TIMEOUT", "0", "call.invite_timeout_ms", |s| {
        s.call.invite_timeout.is_none()
    }),
    (
        "JIGASI_HEALTH_CHECK_SIP_URI",
        "sip:health@pbx.example.org",
        "health.sip_uri",
        |s| {
            s.health
                .sip_uri
                .as_ref()
                .map(ToString::to_string)
                .as_deref()
                == Some("sip:health@pbx.example.org")
        },
    ),
    (
        "JIGASI_HEALTH_CHECK_INTERVAL",
        "60000",
        "health.interval_ms",
        |s| s.health.interval == Duration::from_secs(60),
    ),
    ("JIGASI_ENABLE_REST", "true", "api.host", |s| {
        s.api.host == IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }),
    (
        "SHUTDOWN_REST_ENABLED",
        "True",
        "api.shutdown_enabled",
        |s| s.api.shutdown_enabled,
    ),
];

#[test]
fn every_docker_variable_sets_its_key_with_the_variable_as_origin() {
    for (var, value, key, check) in ENV_CASES {
        let loaded = ok(load_env(&[(var, value)]));
        assert!(
            check(&loaded.settings),
            "{var}={value} did not set {key} as expected"
        );
        assert_eq!(
            loaded.origin(key),
            Some(&env_origin(var)),
            "origin of {key} from {var}"
        );
    }
}

#[test]
fn the_env_table_test_covers_every_registered_variable() {
    for spec in KEYS {
        for source in spec.env {
            assert!(
                ENV_CASES
                    .iter()
                    .any(|(var, _, key, _)| *var == source.var() && *key == spec.key),
                "{} → {} is not tested",
                source.var(),
                spec.key
            );
        }
    }
}

const PROP_CASES: &[(&str, &str, &str, Check)] = &[
    (
        "org.jitsi.jigasi.DEFAULT_JVB_ROOM_NAME",
        "lobby@muc.example.org",
        "sip.default_room",
        |s| {
            s.sip
                .default_room
                .as_ref()
                .map(ToString::to_string)
                .as_deref()
                == Some("lobby@muc.example.org")
        },
    ),
    (
        "org.jitsi.jigasi.MUC_SERVICE_ADDRESS",
        "conference.example.org",
        "xmpp.muc_domain",
        |s| s.xmpp.muc_domain.as_str() == "conference.example.org",
    ),
    (
        "org.jitsi.jigasi.JVB_INVITE_TIMEOUT",
        "45000",
        "call.invite_timeout_ms",
        |s| s.call.invite_timeout == Some(Duration::from_secs(45)),
    ),
    (
        "org.jitsi.jigasi.MUC_JOIN_TIMEOUT",
        "20",
        "xmpp.muc_join_timeout_s",
        |s| s.xmpp.muc_join_timeout == Duration::from_secs(20),
    ),
    (
        "org.jitsi.jigasi.LOCAL_REGION",
        "us-east",
        "xmpp.region",
        |s| s.xmpp.region.as_deref() == Some("us-east"),
    ),
    ("org.jitsi.jigasi.STATS_ID", "s-1", "xmpp.stats_id", |s| {
        s.xmpp.stats_id.as_deref() == Some("s-1")
    }),
    (
        "org.jitsi.jigasi.ALLOWED_JID",
        "focus@auth.example.com",
        "xmpp.allowed_jid",
        |s| s.xmpp.allowed_jid.as_deref() == Some("focus@auth.example.com"),
    ),
    (
        "org.jitsi.jigasi.FOCUS_RESOURCE",
        "jicofo",
        "xmpp.focus_resource",
        |s| s.xmpp.focus_resource == "jicofo",
    ),
    (
        "org.jitsi.jigasi.ENABLE_REST_SHUTDOWN",
        "true",
        "api.shutdown_enabled",
        |s| s.api.shutdown_enabled,
    ),
    (
        "net.java.sip.communicator.impl.protocol.sip.acc1.JITSI_MEET_ROOM_HEADER_NAME",
        "X-Room-Name",
        "sip.room_header",
        |s| s.sip.room_header.as_str() == "X-Room-Name",
    ),
    (
        "net.java.sip.communicator.impl.protocol.sip.acc1.JITSI_MEET_ROOM_PASS_HEADER_NAME",
        "X-Room-Pass",
        "sip.room_password_header",
        |s| s.sip.room_password_header.as_str() == "X-Room-Pass",
    ),
    (
        "net.java.sip.communicator.impl.protocol.sip.acc1.JITSI_MEET_DOMAIN_BASE_HEADER_NAME",
        "X-Domain-Base",
        "sip.domain_base_header",
        |s| s.sip.domain_base_header.as_str() == "X-Domain-Base",
    ),
    (
        "net.java.sip.communicator.impl.protocol.sip.acc1.JITSI_MEET_DOMAIN_TENANT_HEADER_NAME",
        "X-Tenant",
        "sip.tenant_header",
        |s| s.sip.tenant_header.as_str() == "X-Tenant",
    ),
    (
        "net.java.sip.communicator.impl.protocol.sip.acc1.JITSI_AUTH_TOKEN_HEADER_NAME",
        "X-Token",
        "sip.auth_token_header",
        |s| s.sip.auth_token_header.as_str() == "X-Token",
    ),
    (
        "net.java.sip.communicator.impl.protocol.sip.acc1.OUTBOUND_PREFIX",
        "0049",
        "sip.outbound_prefix",
        |s| s.sip.outbound_prefix == "0049",
    ),
];

#[test]
fn jigasi_properties_in_jigasi_configuration_set_their_keys() {
    for (property, value, key, check) in PROP_CASES {
        let configuration = format!("{property}={value}");
        let loaded = ok(load_env(&[("JIGASI_CONFIGURATION", &configuration)]));
        assert!(check(&loaded.settings), "{property} did not set {key}");
        assert_eq!(
            loaded.origin(key),
            Some(&env_origin(&format!("JIGASI_CONFIGURATION: {property}"))),
            "origin of {key}"
        );
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }
}

#[test]
fn the_property_table_test_covers_every_registered_property() {
    for spec in KEYS {
        for pattern in spec.props {
            let property = pattern.replace("<acc>", "acc1");
            assert!(
                PROP_CASES
                    .iter()
                    .any(|(p, _, key, _)| *p == property && *key == spec.key),
                "{property} → {} is not tested",
                spec.key
            );
        }
    }
}

#[test]
fn jigasi_configuration_holds_several_comma_separated_properties() {
    let loaded = ok(load_env(&[(
        "JIGASI_CONFIGURATION",
        "org.jitsi.jigasi.LOCAL_REGION=r1,,org.jitsi.jigasi.FOCUS_RESOURCE = jicofo ,",
    )]));
    assert_eq!(loaded.settings.xmpp.region.as_deref(), Some("r1"));
    assert_eq!(loaded.settings.xmpp.focus_resource, "jicofo");
}

#[test]
fn a_dedicated_variable_wins_over_the_same_setting_in_jigasi_configuration() {
    let loaded = ok(load_env(&[
        (
            "JIGASI_CONFIGURATION",
            "org.jitsi.jigasi.DEFAULT_JVB_ROOM_NAME=from-property",
        ),
        ("JIGASI_SIP_DEFAULT_ROOM", "from-variable"),
    ]));
    assert_eq!(
        loaded
            .settings
            .sip
            .default_room
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("from-variable")
    );
    assert_eq!(
        loaded.origin("sip.default_room"),
        Some(&env_origin("JIGASI_SIP_DEFAULT_ROOM"))
    );
}

#[test]
fn jigasi_stats_id_wins_over_jigasi_instance_id() {
    let loaded = ok(load_env(&[
        ("JIGASI_INSTANCE_ID", "jigasi-1"),
        ("JIGASI_STATS_ID", "stats-1"),
    ]));
    assert_eq!(loaded.settings.xmpp.stats_id.as_deref(), Some("stats-1"));
}

#[test]
fn jigasi_enable_rest_false_leaves_the_api_host_alone() {
    let file = temp_toml("[xmpp]\npassword = \"p\"\n[api]\nhost = \"10.1.2.3\"\n");
    let loaded = ok(load_with(
        Some(file.path()),
        &env_of(&[("JIGASI_ENABLE_REST", "false")]),
        &[],
    ));
    assert_eq!(loaded.settings.api.host.to_string(), "10.1.2.3");
    assert_eq!(
        loaded.origin("api.host"),
        Some(&Origin::File(file.path().to_path_buf()))
    );
}

#[test]
fn an_empty_variable_counts_as_unset() {
    let loaded = ok(load_env(&[
        ("XMPP_DOMAIN", ""),
        ("JIGASI_PORT_MIN", ""),
        ("JIGASI_SIP_URI", ""),
        ("ENABLE_AUTH", ""),
        ("JIGASI_MODE", ""),
        ("JIGASI_CONFIGURATION", ""),
    ]));
    assert_eq!(loaded.settings.xmpp.domain.as_str(), "meet.jitsi");
    assert_eq!(loaded.origin("xmpp.domain"), Some(&Origin::Default));
    assert_eq!(loaded.settings.media.ports.min(), 20000);
    assert_eq!(loaded.settings.sip.uri, None);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);

    let error = the_error(load_with(
        None,
        &env_of(&[("JIGASI_XMPP_PASSWORD", "")]),
        &[],
    ));
    assert!(
        error.starts_with("xmpp.password: required but not set"),
        "{error}"
    );
}

#[test]
fn jigasi_mode_sip_in_any_case_is_accepted() {
    ok(load_env(&[("JIGASI_MODE", "sip")]));
    ok(load_env(&[("JIGASI_MODE", "SIP")]));
}

#[test]
fn jigasi_mode_transcriber_is_refused_with_a_pointer_to_jigasi() {
    assert_eq!(
        the_error(load_env(&[("JIGASI_MODE", "transcriber")])),
        r#"environment variable JIGASI_MODE = "transcriber": transcription is not supported by this gateway; run jigasi for transcription"#
    );
    assert!(the_error(load_env(&[("JIGASI_MODE", "video")])).contains("unknown mode"));
}

#[test]
fn xmpp_server_lists_give_one_connection_per_shard_with_ports_and_ids() {
    let s = ok(load_env(&[
        (
            "XMPP_SERVER",
            "shard1.example:5222:a,,shard2.example, shard3.example:5299,[fd00::7]::z",
        ),
        ("XMPP_PORT", "5333"),
    ]))
    .settings;
    let got: Vec<String> = s.xmpp.servers.iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "shard1.example:5222:a",
            "shard2.example:5333:1",
            "shard3.example:5299:2",
            "[fd00::7]:5333:z",
        ]
    );
}

#[test]
fn the_registrar_defaults_to_the_sip_uri_host_and_port() {
    let loaded = ok(load_env(&[(
        "JIGASI_SIP_URI",
        "sip:jitsi@pbx.example.org:5080",
    )]));
    let sip = &loaded.settings.sip;
    assert_eq!(
        sip.server.as_ref().map(ToString::to_string).as_deref(),
        Some("pbx.example.org")
    );
    assert_eq!(sip.server_port, 5080);
    assert_eq!(sip.digest_user(), Some("jitsi"));
    assert!(loaded
        .render()
        .contains("# from sip.uri, environment variable JIGASI_SIP_URI"));

    let loaded = ok(load_env(&[
        ("JIGASI_SIP_URI", "jitsi@pbx.example.org:5080"),
        ("JIGASI_SIP_SERVER", "proxy.example.org"),
        ("JIGASI_SIP_PORT", "5070"),
    ]));
    assert_eq!(
        loaded
            .settings
            .sip
            .server
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("proxy.example.org")
    );
    assert_eq!(loaded.settings.sip.server_port, 5070);
}

// ---------------------------------------------------------------------------------------------
// Precedence

#[test]
fn later_sources_win_default_then_file_then_env_then_flag() {
    let file = temp_toml(
        "[xmpp]\npassword = \"from-file\"\ndomain = \"file.example\"\n[media]\nport_min = 21000\nport_max = 21100\n[log]\nformat = \"json\"\n",
    );
    let path = file.path();
    let file_origin = Origin::File(path.to_path_buf());

    let loaded = ok(load_with(Some(path), &env_of(&[]), &[]));
    assert_eq!(loaded.settings.xmpp.domain.as_str(), "file.example");
    assert_eq!(loaded.origin("xmpp.domain"), Some(&file_origin));
    assert_eq!(loaded.settings.media.ports.min(), 21000);
    assert_eq!(loaded.origin("xmpp.user"), Some(&Origin::Default));

    let env = env_of(&[("XMPP_DOMAIN", "env.example"), ("JIGASI_PORT_MIN", "21010")]);
    let loaded = ok(load_with(Some(path), &env, &[]));
    assert_eq!(loaded.settings.xmpp.domain.as_str(), "env.example");
    assert_eq!(
        loaded.origin("xmpp.domain"),
        Some(&env_origin("XMPP_DOMAIN"))
    );
    assert_eq!(loaded.settings.media.ports.min(), 21010);
    assert_eq!(loaded.settings.media.ports.max(), 21100);
    assert_eq!(loaded.settings.xmpp.password.expose(), "from-file");

    let flags = [
        set("xmpp.domain", "flag.example"),
        FlagValue::new("--min-port", "media.port_min", "21020"),
        FlagValue::new("--min-port", "media.port_min", "21030"),
        FlagValue::new("--log-format", "log.format", "human"),
    ];
    let loaded = ok(load_with(Some(path), &env, &flags));
    assert_eq!(loaded.settings.xmpp.domain.as_str(), "flag.example");
    assert_eq!(
        loaded.origin("xmpp.domain"),
        Some(&Origin::Flag("--set xmpp.domain".into()))
    );
    assert_eq!(loaded.settings.media.ports.min(), 21030);
    assert_eq!(
        loaded.origin("media.port_min"),
        Some(&Origin::Flag("--min-port".into()))
    );
    assert_eq!(loaded.settings.log.format, LogFormat::Human);
}

#[test]
fn set_flags_reach_any_key_including_lists_and_can_unset_optionals() {
    let file = temp_toml("[xmpp]\npassword = \"p\"\n[sip]\nuri = \"a@pbx.example\"\n");
    let flags = [
        set("xmpp.servers", "a.example:5222:x,b.example"),
        set("sip.transports", "udp,tls"),
        set("sip.uri", ""),
        FlagValue::new("--sip-listen", "sip.listen", "[::]:5070"),
    ];
    let s = ok(load_with(Some(file.path()), &env_of(&[]), &flags)).settings;
    assert_eq!(s.xmpp.servers.len(), 2);
    assert_eq!(s.xmpp.servers[1].id, "1");
    assert_eq!(s.sip.transports, [Transport::Udp, Transport::Tls]);
    assert_eq!(s.sip.uri, None);
    assert_eq!(s.sip.listen.to_string(), "[::]:5070");
}

#[test]
fn set_arguments_split_at_the_first_equals_sign() {
    assert_eq!(
        FlagValue::from_set_arg("log.level=info,x=debug"),
        Ok(set("log.level", "info,x=debug"))
    );
    assert_eq!(FlagValue::from_set_arg("sip.uri="), Ok(set("sip.uri", "")));
    assert!(FlagValue::from_set_arg("no-equals").is_err());
    assert!(FlagValue::from_set_arg("=x").is_err());
}

// ---------------------------------------------------------------------------------------------
// Bad values

#[test]
fn a_non_number_port_is_rejected_naming_variable_and_range() {
    assert_eq!(
        the_error(load_env(&[("JIGASI_PORT_MIN", "abc")])),
        r#"media.port_min = "abc" (environment variable JIGASI_PORT_MIN): not a port number (expected 1024-65535)"#
    );
}

#[test]
fn out_of_range_numbers_are_rejected() {
    let e = the_error(load_env(&[("JIGASI_PORT_MAX", "80")]));
    assert!(
        e.contains("media.port_max = \"80\"") && e.contains("out of range (expected 1024-65535)"),
        "{e}"
    );
    let e = the_error(load_with(
        None,
        &docker_env(&[]),
        &[set("media.opus_complexity", "11")],
    ));
    assert!(e.contains("out of range (expected 0-10)"), "{e}");
    let e = the_error(load_with(
        None,
        &docker_env(&[]),
        &[set("media.opus_bitrate", "500")],
    ));
    assert!(e.contains("out of range (expected 6000-510000)"), "{e}");
    let e = the_error(load_env(&[("XMPP_PORT", "70000")]));
    assert!(e.contains("xmpp.port") && e.contains("out of range"), "{e}");
}

#[test]
fn a_port_range_with_min_above_max_names_both_sources() {
    assert_eq!(
        the_error(load_env(&[("JIGASI_PORT_MIN", "30000")])),
        r#"media.port_min = "30000" (environment variable JIGASI_PORT_MIN): greater than media.port_max = 20050 (default)"#
    );
    let e = the_error(load_with(
        None,
        &docker_env(&[("JIGASI_PORT_MIN", "30000")]),
        &[FlagValue::new("--max-port", "media.port_max", "29000")],
    ));
    assert!(
        e.contains("environment variable JIGASI_PORT_MIN") && e.contains("29000 (flag --max-port)"),
        "{e}"
    );
}

#[test]
fn a_bad_boolean_is_rejected_naming_the_variable() {
    let e = the_error(load_env(&[("ENABLE_AUTH", "maybe")]));
    assert_eq!(
        e,
        r#"xmpp.enable_auth = "maybe" (environment variable ENABLE_AUTH): not a boolean (expected true/false, 1/0, yes/no or on/off)"#
    );
    let e = the_error(load_env(&[("JIGASI_ENABLE_REST", "sure")]));
    assert!(
        e.starts_with("environment variable JIGASI_ENABLE_REST = \"sure\": not a boolean"),
        "{e}"
    );
}

#[test]
fn a_bad_enum_is_rejected_listing_the_choices() {
    let file = temp_toml("[xmpp]\npassword = \"p\"\n[sip]\nserver_transport = \"sctp\"\n");
    assert_eq!(
        the_error(load_with(Some(file.path()), &env_of(&[]), &[])),
        format!(
            r#"sip.server_transport = "sctp" (file {}): expected one of udp, tcp, tls"#,
            file.path().display()
        )
    );
    let e = the_error(load_env(&[("JIGASI_SIP_KEEP_ALIVE_METHOD", "ping")]));
    assert!(
        e.contains("expected one of options, crlf, register, none"),
        "{e}"
    );
    let e = the_error(load_with(
        None,
        &docker_env(&[]),
        &[set("sip.transports", "udp,sctp")],
    ));
    assert!(
        e.starts_with(r#"sip.transports = "sctp" (flag --set sip.transports)"#),
        "{e}"
    );
    let e = the_error(load_with(
        None,
        &docker_env(&[]),
        &[set("sip.transports", "")],
    ));
    assert!(e.contains("must list at least one of udp, tcp, tls"), "{e}");
    let e = the_error(load_with(
        None,
        &docker_env(&[]),
        &[FlagValue::new("--log-format", "log.format", "xml")],
    ));
    assert!(
        e.contains("(flag --log-format): expected one of human, json"),
        "{e}"
    );
}

#[test]
fn a_bad_socket_address_is_rejected() {
    let e = the_error(load_with(
        None,
        &docker_env(&[]),
        &[FlagValue::new("--sip-listen", "sip.listen", "5060")],
    ));
    assert!(
        e.starts_with(r#"sip.listen = "5060" (flag --sip-listen): not a socket address"#),
        "{e}"
    );
}

#[test]
fn a_bad_ip_address_is_rejected() {
    let e = the_error(load_with(
        None,
        &docker_env(&[]),
        &[set("sip.public_address", "1.2.3")],
    ));
    assert!(e.ends_with("not an IP address"), "{e}");
    let e = the_error(load_with(
        None,
        &docker_env(&[]),
        &[set("api.host", "localhost")],
    ));
    assert!(e.ends_with("not an IP address"), "{e}");
}

#[test]
fn a_bad_domain_is_rejected() {
    let e = the_error(load_env(&[("XMPP_DOMAIN", "meet..jitsi")]));
    assert_eq!(
        e,
        r#"xmpp.domain = "meet..jitsi" (environment variable XMPP_DOMAIN): not a valid domain name: empty label"#
    );
    let e = the_error(load_env(&[(
        "JIGASI_TRUSTED_DOMAINS",
        "ok.example,bad domain",
    )]));
    assert!(
        e.starts_with(r#"xmpp.trusted_domains = "bad domain""#),
        "{e}"
    );
    let e = the_error(load_env(&[("JIGASI_SIP_SERVER", "pbx:5060")]));
    assert!(
        e.contains("sip.server") && e.contains("a port does not belong here"),
        "{e}"
    );
}

#[test]
fn a_bad_header_name_is_rejected() {
    let e = the_error(load_with(
        None,
        &docker_env(&[]),
        &[set("sip.room_header", "X Room")],
    ));
    assert!(
        e.starts_with(
            r#"sip.room_header = "X Room" (flag --set sip.room_header): not a SIP header name"#
        ),
        "{e}"
    );
    let e = the_error(load_env(&[(
        "JIGASI_CONFIGURATION",
        "net.java.sip.communicator.impl.protocol.sip.acc1.JITSI_MEET_ROOM_HEADER_NAME=X:Room",
    )]));
    assert!(
        e.contains("(environment variable JIGASI_CONFIGURATION: net.java.sip.communicator.impl.protocol.sip.acc1.JITSI_MEET_ROOM_HEADER_NAME)"),
        "{e}"
    );
}

#[test]
fn bad_xmpp_server_items_are_rejected_one_by_one() {
    let found = errors(load_env(&[(
        "XMPP_SERVER",
        "good.example,bad.example:abc,:5222,x.example:5222:a b",
    )]));
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(
        found[0].starts_with(r#"xmpp.servers = "bad.example:abc" (environment variable XMPP_SERVER): port "abc": not a port number"#),
        "{}",
        found[0]
    );
    assert!(found[1].contains("empty host"), "{}", found[1]);
    assert!(found[2].contains(r#"id "a b""#), "{}", found[2]);

    let e = the_error(load_env(&[(
        "XMPP_SERVER",
        "a.example:5222:x,b.example:5222:x",
    )]));
    assert!(e.contains(r#"duplicate id "x""#), "{e}");
    let e = the_error(load_env(&[("XMPP_SERVER", ",,")]));
    assert!(e.contains("must name at least one server"), "{e}");
}

#[test]
fn bad_urls_and_uris_are_rejected() {
    let e = the_error(load_env(&[("PUBLIC_URL", "meet.example.org")]));
    assert!(e.starts_with(r#"xmpp.public_url = "meet.example.org" (environment variable PUBLIC_URL): not an http(s) URL"#), "{e}");
    let e = the_error(load_env(&[("JIGASI_SIP_URI", "tel:+4930123")]));
    assert!(e.contains("unsupported URI scheme"), "{e}");
    let e = the_error(load_env(&[("JIGASI_SIP_URI", "pbx.example.org")]));
    assert!(e.contains("needs a user part"), "{e}");
    let e = the_error(load_env(&[("JIGASI_HEALTH_CHECK_SIP_URI", "sip:health@")]));
    assert!(e.starts_with("health.sip_uri"), "{e}");
}

#[test]
fn other_bad_values_are_rejected() {
    for (flag, expected) in [
        (
            set("xmpp.brewery_muc", "brewery@internal"),
            "not allowed in an XMPP name",
        ),
        (set("xmpp.user", ""), "must not be empty"),
        (
            set("xmpp.muc_join_timeout_s", "0"),
            "out of range (expected 1-3600)",
        ),
        (
            set("sip.default_room", "a room"),
            "not allowed in an XMPP name",
        ),
        (set("sip.outbound_prefix", "9 "), ""),
        (set("sip.outbound_prefix", "9;x"), "expected digits"),
        (set("sip.auth_user", "a b"), "must not contain spaces"),
        (
            set("call.invite_timeout_ms", "30s"),
            "not a whole number of milliseconds",
        ),
        (set("health.interval_ms", "10"), "out of range"),
        (set("log.level", "loud"), "is not a level"),
        (set("api.port", "-1"), "out of range"),
    ] {
        let result = load_with(None, &docker_env(&[]), std::slice::from_ref(&flag));
        if expected.is_empty() {
            // "9 " is trimmed to "9": fine.
            ok(result);
            continue;
        }
        let e = the_error(result);
        assert!(e.contains(expected), "{flag:?}: {e}");
        assert!(e.starts_with(&flag.key), "{flag:?}: {e}");
    }
}

#[test]
fn an_unknown_file_key_is_named_with_file_line_and_a_suggestion() {
    let file = temp_toml("[xmpp]\npassword = \"p\"\ndomian = \"x.example\"\n");
    assert_eq!(
        the_error(load_with(Some(file.path()), &env_of(&[]), &[])),
        format!(
            r#"unknown key "xmpp.domian" in file {} (line 3; did you mean "xmpp.domain"?)"#,
            file.path().display()
        )
    );
    let file = temp_toml("[xmpp]\npassword = \"p\"\n[xmp]\ndomain = \"x.example\"\n");
    let e = the_error(load_with(Some(file.path()), &env_of(&[]), &[]));
    assert!(e.starts_with(r#"unknown key "xmp" in file"#), "{e}");
}

#[test]
fn an_unknown_flag_key_is_named_with_the_flag() {
    assert_eq!(
        the_error(load_with(
            None,
            &docker_env(&[]),
            &[set("xmpp.domian", "x")]
        )),
        r#"unknown key "xmpp.domian" in flag --set xmpp.domian (did you mean "xmpp.domain"?)"#
    );
}

#[test]
fn wrong_toml_shapes_are_rejected_naming_file_and_key() {
    let file = temp_toml(
        "[media]\nport_min = [20000, 20001]\nport_max = 2.5e4\n[sip.listen]\nx = 1\n[xmpp]\npassword = \"p\"\n[xmpp.servers]\n",
    );
    let path = file.path().display().to_string();
    let found = errors(load_with(Some(file.path()), &env_of(&[]), &[]));
    assert_eq!(
        found,
        [
            format!("media.port_min (file {path}): expected an integer, found an array (line 2)"),
            format!("media.port_max (file {path}): expected an integer, found a float (line 3)"),
            format!("sip.listen (file {path}): expected a string, found a table (line 4)"),
            format!(
                "xmpp.servers (file {path}): expected a list of strings, found a table (line 8)"
            ),
        ]
    );
    let file = temp_toml("xmpp = 5\n");
    let e = errors(load_with(Some(file.path()), &docker_env(&[]), &[]));
    assert_eq!(
        e,
        [format!(
            "xmpp (file {}): expected a table [xmpp], found an integer (line 1)",
            file.path().display()
        )]
    );
    let file = temp_toml("[xmpp]\nservers = [\"a.example\", 5]\n");
    let e = the_error(load_with(Some(file.path()), &docker_env(&[]), &[]));
    assert!(
        e.ends_with("expected a list of strings, found an array holding an integer (line 2)"),
        "{e}"
    );
}

#[test]
fn toml_scalars_may_be_strings_integers_or_booleans() {
    let file = temp_toml(
        "[xmpp]\npassword = \"p\"\nport = \"5223\"\nenable_auth = \"yes\"\ntrusted_domains = \"a.example,b.example\"\n[media]\nport_min = 0x4E30\nopus_fec = false\n",
    );
    let s = ok(load_with(Some(file.path()), &env_of(&[]), &[])).settings;
    assert_eq!(s.xmpp.port, 5223);
    assert!(s.xmpp.enable_auth);
    assert_eq!(s.xmpp.trusted_domains.len(), 2);
    assert_eq!(s.media.ports.min(), 20016);
    assert!(!s.media.opus_fec);
}

#[test]
fn a_toml_syntax_error_names_file_line_and_column() {
    let file = temp_toml("[xmpp]\npassword = \"p\"\ndomain = meet.jitsi\n");
    let e = the_error(load_with(Some(file.path()), &env_of(&[]), &[]));
    let prefix = format!(
        "file {}: TOML syntax error at line 3, column 10: ",
        file.path().display()
    );
    assert!(e.starts_with(&prefix), "{e}");
}

#[test]
fn a_missing_file_names_the_path_and_the_os_error_and_nothing_else() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("absent.toml");
    let e = the_error(load_with(Some(&path), &env_of(&[]), &[]));
    assert!(
        e.starts_with(&format!("file {}: cannot read the file: ", path.display())),
        "{e}"
    );
    assert!(e.contains("os error 2"), "{e}");
}

#[test]
fn a_missing_password_names_the_variable_and_the_file_key() {
    assert_eq!(
        the_error(load_with(None, &env_of(&[]), &[])),
        "xmpp.password: required but not set (set JIGASI_XMPP_PASSWORD or xmpp.password in the config file)"
    );
}

#[test]
fn all_problems_are_reported_together() {
    let file = temp_toml("[media]\nport_min = \"low\"\n[sip]\ntransprots = [\"udp\"]\n");
    let env = env_of(&[
        ("ENABLE_GUESTS", "perhaps"),
        ("XMPP_DOMAIN", "bad domain"),
        ("JIGASI_MODE", "transcriber"),
    ]);
    let result = load_with(Some(file.path()), &env, &[set("nope.key", "1")]);
    let Err(all) = result else {
        panic!("expected errors");
    };
    let text = all.to_string();
    assert_eq!(text.lines().count(), all.0.len());
    let kinds: Vec<ErrorKind> = all.iter().map(|e| e.kind).collect();
    for needle in [
        "unknown key \"sip.transprots\"",
        "JIGASI_MODE",
        "unknown key \"nope.key\"",
        "xmpp.domain = \"bad domain\"",
        "xmpp.enable_guests = \"perhaps\"",
        "xmpp.password: required but not set",
        "media.port_min = \"low\"",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert_eq!(all.0.len(), 7, "{text}");
    assert!(kinds.contains(&ErrorKind::Missing) && kinds.contains(&ErrorKind::UnknownKey));
    let _: &dyn std::error::Error = &all;
}

// ---------------------------------------------------------------------------------------------
// Secrets

#[test]
fn secrets_never_appear_in_render_debug_errors_or_warnings() {
    let sip_secret = "sip-Pa55word";
    let loaded = ok(load_with(
        None,
        &docker_env(&[
            ("JIGASI_SIP_URI", "jitsi@pbx.example"),
            ("JIGASI_SIP_PASSWORD", sip_secret),
        ]),
        &[set("xmpp.password", "flag-Pa55word")],
    ));
    let everything = format!(
        "{}\n{:?}\n{:?}\n{}",
        loaded.render(),
        loaded,
        loaded.settings,
        loaded.warnings.join("\n")
    );
    for secret in [PASSWORD, sip_secret, "flag-Pa55word"] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
    assert!(loaded.render().contains("password = \"********\""));
    assert!(loaded
        .warnings
        .iter()
        .any(|w| w.contains("xmpp.password is given on the command line")));

    let input = ConfigInput {
        file: None,
        env: &docker_env(&[]),
        flags: vec![set("xmpp.password", "flag-Pa55word")],
    };
    let debug = format!("{input:?}");
    assert!(
        !debug.contains(PASSWORD) && !debug.contains("flag-Pa55word"),
        "{debug}"
    );
    assert!(debug.contains("JIGASI_XMPP_PASSWORD"), "{debug}");

    // An empty optional secret is unset; an empty required one is an error, still masked.
    let file = temp_toml("[xmpp]\npassword = \"\"\n[sip]\npassword = \"\"\n");
    let e = the_error(load_with(Some(file.path()), &env_of(&[]), &[]));
    assert!(e.starts_with("xmpp.password = \"********\" (file "), "{e}");
    let file = temp_toml("[xmpp]\npassword = [\"top-secret\"]\n");
    let e = the_error(load_with(Some(file.path()), &env_of(&[]), &[]));
    assert!(
        !e.contains("top-secret") && e.contains("xmpp.password"),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// Warnings

#[test]
fn each_set_but_ignored_docker_variable_gets_one_warning_naming_it() {
    let ignored = [
        "JIGASI_LOG_FILE",
        "JIGASI_DISABLE_SIP",
        "USE_TRANSLATOR_IN_CONFERENCE",
        "BOSH_URL_PATTERN",
        "JIGASI_VISITORS_QUEUE_SERVICE_URL",
        "JIGASI_VISITORS_QUEUE_SERVICE_PRIVATE_KEY_PATH",
        "JIGASI_VISITORS_QUEUE_SERVICE_PRIVATE_KEY_ID",
        "XMPP_HIDDEN_DOMAIN",
        "XMPP_RECORDER_DOMAIN",
        "JIGASI_TRANSCRIBER_USER",
        "JIGASI_TRANSCRIBER_PASSWORD",
        "GC_PROJECT_ID",
        "SENTRY_DSN",
        "JIGASI_SENTRY_DSN",
        "SENTRY_ENVIRONMENT",
        "SENTRY_RELEASE",
        "JIGASI_SIPUSER",
        "JIGASI_SIPPWD",
        "JIGASI_MAX_MEMORY",
        "JAVA_SYS_PROPS",
    ];
    let mut pairs: Vec<(&str, &str)> = ignored.iter().map(|v| (*v, "value-x")).collect();
    pairs.extend([
        ("TZ", "UTC"),
        ("AUTOSCALER_URL", "http://x"),
        ("HOME", "/root"),
        ("PATH", "/bin"),
    ]);
    let loaded = ok(load_env(&pairs));
    assert_eq!(
        loaded.warnings.len(),
        ignored.len(),
        "{:#?}",
        loaded.warnings
    );
    for var in ignored {
        let hits: Vec<_> = loaded
            .warnings
            .iter()
            .filter(|w| w.starts_with(&format!("environment variable {var} is ignored: ")))
            .collect();
        assert_eq!(hits.len(), 1, "{var}: {:#?}", loaded.warnings);
    }
    assert!(loaded.warnings.iter().all(|w| !w.contains("value-x")));
}

#[test]
fn sentry_off_as_docker_compose_writes_it_is_not_a_warning() {
    let loaded = ok(load_env(&[
        ("SENTRY_DSN", "\"0\""),
        ("JIGASI_SENTRY_DSN", "0"),
    ]));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn unknown_jigasi_properties_get_one_warning_each() {
    let loaded = ok(load_env(&[(
        "JIGASI_CONFIGURATION",
        "org.jitsi.jigasi.ENABLE_SIP_STARTMUTED=true,net.java.sip.communicator.impl.protocol.sip.acc1.PASSWORD=c2VjcmV0,org.jitsi.jigasi.LOCAL_REGION=r",
    )]));
    assert_eq!(loaded.warnings.len(), 2, "{:#?}", loaded.warnings);
    assert!(loaded.warnings[0].starts_with(
        "ignored jigasi property org.jitsi.jigasi.ENABLE_SIP_STARTMUTED in JIGASI_CONFIGURATION"
    ));
    assert!(
        loaded.warnings[1].contains("acc1.PASSWORD") && !loaded.warnings[1].contains("c2VjcmV0")
    );
}

#[test]
fn the_docker_sip_password_placeholder_warns_only_with_a_sip_account() {
    let loaded = ok(load_env(&[("JIGASI_SIP_PASSWORD", "replaceme")]));
    assert!(loaded.warnings.is_empty());
    let loaded = ok(load_env(&[
        ("JIGASI_SIP_PASSWORD", "replaceme"),
        ("JIGASI_SIP_URI", "jitsi@pbx.example"),
    ]));
    assert_eq!(loaded.warnings.len(), 1);
    assert!(loaded.warnings[0].starts_with("sip.password is still docker-jitsi-meet's placeholder"));
    assert!(!loaded.warnings[0].contains("replaceme"));
}

// ---------------------------------------------------------------------------------------------
// Render

#[test]
fn render_is_valid_toml_with_every_key_and_its_origin() {
    let file = temp_toml("[xmpp]\npassword = \"p\"\n[media]\nport_max = 20100\n");
    let loaded = ok(load_with(
        Some(file.path()),
        &env_of(&[("JIGASI_PORT_MIN", "20010"), ("JIGASI_ENABLE_REST", "1")]),
        &[FlagValue::new("--log-format", "log.format", "json")],
    ));
    let text = loaded.render();
    toml::de::DeTable::parse(&text).unwrap_or_else(|e| panic!("render is not TOML: {e}\n{text}"));
    assert!(text.contains("port_min = 20010"), "{text}");
    assert!(
        text.contains("# environment variable JIGASI_PORT_MIN"),
        "{text}"
    );
    assert!(
        text.contains(&format!("# file {}", file.path().display())),
        "{text}"
    );
    assert!(text.contains("host = \"0.0.0.0\""), "{text}");
    assert!(text.contains("format = \"json\""), "{text}");
    assert!(text.contains("# flag --log-format"), "{text}");
    assert!(text.contains("# region: not set"), "{text}");
    for spec in KEYS {
        let set = format!("\n{} = ", spec.name());
        let unset = format!("\n# {}: not set", spec.name());
        assert!(
            text.contains(&set) || text.contains(&unset),
            "{} missing:\n{text}",
            spec.key
        );
    }
}

#[test]
fn rendered_settings_load_back_to_the_same_settings() {
    let loaded = ok(load_env(&[
        ("XMPP_SERVER", "a.example:5222:x,b.example"),
        ("JIGASI_SIP_URI", "jitsi@pbx.example:5080"),
        ("JIGASI_TRUSTED_DOMAINS", "t.example"),
        ("ENABLE_AUTH", "on"),
        ("JIGASI_JVB_TIMEOUT", "-1"),
        (
            "JIGASI_CONFIGURATION",
            "net.java.sip.communicator.impl.protocol.sip.acc1.JITSI_MEET_ROOM_HEADER_NAME=X-Room-Name",
        ),
    ]));
    let file = temp_toml(&loaded.render());
    let again = ok(load_with(
        Some(file.path()),
        &env_of(&[("JIGASI_XMPP_PASSWORD", PASSWORD)]),
        &[],
    ));
    assert_eq!(again.settings, loaded.settings);
}

#[test]
fn the_build_step_reads_every_registered_key() {
    let loaded = ok(load_env(&[]));
    for spec in KEYS {
        assert!(
            loaded.effective.contains_key(spec.key),
            "{} is never read",
            spec.key
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The example file

#[test]
fn the_example_file_loads_and_only_warns_about_its_placeholder_password() {
    let loaded = ok(load_with(Some(&example_path()), &env_of(&[]), &[]));
    assert_eq!(
        loaded.settings.xmpp.password.expose(),
        build::EXAMPLE_PASSWORD
    );
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(loaded.warnings[0].contains("placeholder"));
    // With the docker variable set, the placeholder is overridden.
    let loaded = ok(load_with(Some(&example_path()), &docker_env(&[]), &[]));
    assert!(loaded.warnings.is_empty());
}

/// The example with every `# key = value` line uncommented.
fn uncommented_example() -> String {
    let text = std::fs::read_to_string(example_path()).expect("example file");
    text.lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest)
                if KEYS
                    .iter()
                    .any(|s| rest.starts_with(&format!("{} = ", s.name()))) =>
            {
                rest
            }
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_example_file_shows_every_key_in_its_table_with_its_default() {
    let text = uncommented_example();
    let file = temp_toml(&text);
    let all = ok(load_with(Some(file.path()), &env_of(&[]), &[]));
    let defaults = ok(load_with(
        None,
        &env_of(&[("JIGASI_XMPP_PASSWORD", "x")]),
        &[],
    ));
    let mut section = "";
    let mut seen = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name;
        } else if let Some((name, _)) = line.split_once(" = ") {
            seen.push(format!("{section}.{name}"));
        }
    }
    for spec in KEYS {
        assert!(
            seen.contains(&spec.key.to_owned()),
            "{} is not in the example file",
            spec.key
        );
        assert_eq!(
            all.origin(spec.key),
            Some(&Origin::File(file.path().to_path_buf())),
            "{}",
            spec.key
        );
        if spec.default != DefaultValue::None {
            assert_eq!(
                all.effective[spec.key].value, defaults.effective[spec.key].value,
                "the example's value of {} is not its default",
                spec.key
            );
        }
        for source in spec.env {
            assert!(
                text.contains(source.var()),
                "{} is not mentioned in the example",
                source.var()
            );
        }
    }
    assert!(text.contains("X-Room-Name") && text.contains("X-Domain-Base"));
}

// ---------------------------------------------------------------------------------------------
// Robustness

#[test]
fn no_value_for_any_key_from_any_source_panics() {
    let nasty = [
        "",
        " ",
        "\u{0}",
        "ü",
        "[",
        "]",
        "]:",
        "[::1",
        "x]:1",
        "@",
        ":",
        ":::",
        "sip:",
        "sips:@",
        "https://[",
        "https://:",
        "http://@",
        "99999999999999999999999999",
        "-1",
        ",",
        ",,",
        "=",
        "a=b=c",
        "#",
        "\"",
        "\\",
        "tel:",
        "[::1]:99999:x",
        "host:5222:id:more",
        "🙂@🙂",
    ];
    for spec in KEYS {
        for value in nasty {
            let _ = load_with(None, &docker_env(&[]), &[set(spec.key, value)]);
            for source in spec.env {
                let _ = load_env(&[(source.var(), value)]);
            }
            let file = temp_toml(&format!(
                "[{}]\n{} = {}\n",
                spec.section(),
                spec.name(),
                build::toml_string(value)
            ));
            let _ = load_with(Some(file.path()), &docker_env(&[]), &[]);
        }
    }
    for value in nasty {
        let _ = load_env(&[("JIGASI_CONFIGURATION", value), ("JIGASI_MODE", value)]);
    }
}

#[test]
fn allowed_peers_are_addresses_or_cidr_ranges() {
    let env = docker_env(&[]);
    let loaded = ok(load_with(
        None,
        &env,
        &[set(
            "sip.allowed_peers",
            "192.0.2.7, 10.0.0.0/8,2001:db8::/32",
        )],
    ));
    let peers = &loaded.settings.sip.allowed_peers;
    assert_eq!(peers.len(), 3);
    assert!(peers[0].contains("192.0.2.7".parse().unwrap()));
    assert!(!peers[0].contains("192.0.2.8".parse().unwrap()));
    assert!(peers[1].contains("10.200.3.4".parse().unwrap()));
    assert!(
        peers[2].contains("2001:db8:1::5".parse().unwrap())
            && !peers[2].contains("10.0.0.1".parse().unwrap())
    );
    for bad in ["10.0.0.0/33", "example.com", "10.0.0.0/x"] {
        let error = the_error(load_with(None, &env, &[set("sip.allowed_peers", bad)]));
        assert!(error.contains("sip.allowed_peers"), "{bad}: {error}");
    }
}

// ---------------------------------------------------------------------------------------------
// TLS towards the SIP server

#[test]
fn tls_to_the_sip_server_verifies_with_the_system_roots_by_default() {
    let s = ok(load_env(&[("JIGASI_SIP_TRANSPORT", "TLS")])).settings;
    assert_eq!(s.sip.server_transport, Transport::Tls);
    assert_eq!(s.sip.tls_ca_file, None);
    assert!(s.sip.tls_verify);
}

#[test]
fn a_private_ca_file_is_taken_as_a_path_and_verification_stays_on() {
    let env = docker_env(&[("JIGASI_SIP_TRANSPORT", "tls")]);
    let loaded = ok(load_with(
        None,
        &env,
        &[set("sip.tls_ca_file", " /etc/jitsi/sip ca.pem ")],
    ));
    let sip = &loaded.settings.sip;
    assert_eq!(
        sip.tls_ca_file.as_deref(),
        Some(Path::new("/etc/jitsi/sip ca.pem"))
    );
    assert!(sip.tls_verify);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let file = temp_toml("[xmpp]\npassword = \"p\"\n[sip]\ntls_ca_file = \"ca.pem\"\n");
    let loaded = ok(load_with(Some(file.path()), &env_of(&[]), &[]));
    assert_eq!(
        loaded.origin("sip.tls_ca_file"),
        Some(&Origin::File(file.path().to_path_buf()))
    );
}

#[test]
fn turning_tls_verification_off_is_warned_about() {
    let env = docker_env(&[("JIGASI_SIP_TRANSPORT", "tls")]);
    let loaded = ok(load_with(None, &env, &[set("sip.tls_verify", "false")]));
    assert!(!loaded.settings.sip.tls_verify);
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(
        loaded.warnings[0]
            .starts_with("sip.tls_verify = false: the SIP server's TLS certificate is not checked"),
        "{}",
        loaded.warnings[0]
    );
    // Over UDP it changes nothing, so nothing to warn about.
    let loaded = ok(load_with(
        None,
        &docker_env(&[]),
        &[set("sip.tls_verify", "no")],
    ));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn a_ca_file_that_cannot_take_effect_is_warned_about() {
    let udp = ok(load_with(
        None,
        &docker_env(&[]),
        &[set("sip.tls_ca_file", "/ca.pem")],
    ));
    assert_eq!(
        udp.warnings,
        ["sip.tls_ca_file (/ca.pem) is ignored: sip.server_transport is not tls"]
    );
    let unverified = ok(load_with(
        None,
        &docker_env(&[("JIGASI_SIP_TRANSPORT", "tls")]),
        &[
            set("sip.tls_ca_file", "/ca.pem"),
            set("sip.tls_verify", "0"),
        ],
    ));
    assert_eq!(unverified.warnings.len(), 2, "{:?}", unverified.warnings);
    assert_eq!(
        unverified.warnings[1],
        "sip.tls_ca_file (/ca.pem) is ignored: sip.tls_verify = false accepts any certificate"
    );
}

#[test]
fn bad_tls_values_name_their_key() {
    let e = the_error(load_with(
        None,
        &docker_env(&[]),
        &[set("sip.tls_verify", "maybe")],
    ));
    assert!(e.starts_with("sip.tls_verify = \"maybe\""), "{e}");
    assert!(e.contains("not a boolean"), "{e}");
    let e = the_error(load_with(
        None,
        &docker_env(&[]),
        &[set("sip.tls_ca_file", "ca\u{7}.pem")],
    ));
    assert!(e.starts_with("sip.tls_ca_file"), "{e}");
    assert!(e.contains("control characters"), "{e}");
}

#[test]
fn the_brewery_is_required_for_health_when_calls_can_be_placed_unless_set() {
    let required = |env: &[(&str, &str)], flags: &[FlagValue]| {
        ok(load_with(None, &docker_env(env), flags))
            .settings
            .brewery_required()
    };
    let account = [("JIGASI_SIP_URI", "sip:gw@pbx.example.com")];
    assert!(!required(&[], &[]), "dial-in only: Jicofo has no brewery");
    assert!(required(&account, &[]));
    assert!(
        required(&[], &[set("sip.server", "pbx.example.com")]),
        "a trunk"
    );
    assert!(!required(
        &account,
        &[set("health.require_brewery", "false")]
    ));
    assert!(required(&[], &[set("health.require_brewery", "true")]));
}
