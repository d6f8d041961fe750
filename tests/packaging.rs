//! The packaging files, checked against the binary without Docker (the development machine has no
//! engine): the image's command line, ports and healthcheck (packaging/Dockerfile), the compose
//! service that takes jigasi's place (packaging/jigasi-replacement.yml), the systemd unit and its
//! environment file, and the README's table of docker-jitsi-meet variables.

mod packaging_support;

use packaging_support::*;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_jitsi-sip-gateway");
const README_TABLE: &str = "### Environment variables";

/// The binary as `argv` names it, the paths inside the image or the host replaced by the files
/// they are installed from, with exactly `env` as its environment.
fn run(argv: &[String], env: &[(String, String)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().args(&argv[1..]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn value<'a>(settings: &'a BTreeMap<String, (String, String)>, key: &str) -> &'a str {
    &settings
        .get(key)
        .unwrap_or_else(|| panic!("{key} not set: {settings:?}"))
        .0
}

// ---------------------------------------------------------------------------------------------
// The image

/// The image's `ENTRYPOINT` + `CMD` with `check-config` in place of `run`, the binary and the
/// files the Dockerfile copies in mapped to the repository's.
fn image_check_config_argv(extra: &[&str]) -> Vec<String> {
    let stage = final_stage(&dockerfile(&read("packaging/Dockerfile")));
    let mut argv = exec_form(&only(&stage, "ENTRYPOINT").args);
    argv.extend(exec_form(&only(&stage, "CMD").args));
    assert_eq!(argv[0], "/usr/local/bin/jitsi-sip-gateway", "{argv:?}");
    assert_eq!(argv.last().map(String::as_str), Some("run"), "{argv:?}");
    // Files copied from the build context: image path → repository path.
    let copied: BTreeMap<String, String> = stage
        .iter()
        .filter(|i| i.name == "COPY" && !i.args.starts_with("--from"))
        .map(|i| {
            let (src, dest) = i.args.split_once(' ').expect("COPY src dest");
            (dest.to_owned(), repo(src).display().to_string())
        })
        .collect();
    let last = argv.len() - 1;
    argv[last] = "check-config".into();
    argv[0] = BIN.into();
    for arg in &mut argv[1..] {
        if arg.starts_with('/') {
            *arg = copied
                .get(arg.as_str())
                .unwrap_or_else(|| panic!("{arg} is not copied into the image"))
                .clone();
        }
    }
    argv.extend(extra.iter().map(|s| (*s).to_owned()));
    argv
}

/// What a default docker-jitsi-meet `.env` (after gen-passwords.sh) gives the jigasi service,
/// with the fixed entries of its environment list.
fn docker_default_env() -> Vec<(String, String)> {
    in_image(pairs(&[
        ("JIGASI_XMPP_PASSWORD", "0123456789abcdef0123456789abcdef"),
        ("TZ", "UTC"),
        ("JIGASI_MODE", "sip"),
        ("SENTRY_DSN", "\"0\""),
    ]))
}

/// The image's `ENV name=value …` pairs, then `env` (what docker-compose passes wins).
fn in_image(env: Vec<(String, String)>) -> Vec<(String, String)> {
    let stage = final_stage(&dockerfile(&read("packaging/Dockerfile")));
    let mut out: Vec<(String, String)> = stage
        .iter()
        .filter(|i| i.name == "ENV")
        .flat_map(|i| {
            i.args
                .split_whitespace()
                .map(|pair| {
                    let (k, v) = pair.split_once('=').expect("ENV name=value");
                    (k.to_owned(), v.to_owned())
                })
                .collect::<Vec<_>>()
        })
        .collect();
    out.retain(|(k, _)| !env.iter().any(|(e, _)| e == k));
    out.extend(env);
    out
}

#[test]
fn the_image_command_is_one_the_binary_accepts_with_jigasis_docker_choices() {
    let out = run(&image_check_config_argv(&[]), &docker_default_env());
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let s = effective(&stdout);
    // The fixed choices of jigasi's image come from the file baked in, not the built-in defaults.
    for (key, want) in [
        ("sip.room_header", "\"X-Room-Name\""),
        ("sip.domain_base_header", "\"X-Domain-Base\""),
        ("log.format", "\"json\""),
    ] {
        assert_eq!(value(&s, key), want, "{key}");
        assert!(s[key].1.contains("docker.toml"), "{key}: {:?}", s[key]);
    }
    // docker-jitsi-meet's defaults.
    assert_eq!(value(&s, "xmpp.domain"), "\"meet.jitsi\"");
    assert_eq!(value(&s, "xmpp.servers"), "[\"xmpp.meet.jitsi:5222:0\"]");
    assert_eq!(value(&s, "xmpp.brewery_muc"), "\"jigasibrewery\"");
    assert_eq!(value(&s, "sip.listen"), "\"0.0.0.0:5060\"");
    assert_eq!(value(&s, "media.port_min"), "20000");
    assert_eq!(value(&s, "media.port_max"), "20050");
    assert_eq!(value(&s, "api.host"), "\"127.0.0.1\"");

    // The README's way back to human logs: a flag after the image's command.
    let out = run(
        &image_check_config_argv(&["--log-format", "human"]),
        &docker_default_env(),
    );
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(value(&effective(&stdout), "log.format"), "\"human\"");
}

#[test]
fn the_image_room_header_can_still_be_changed_through_jigasi_configuration() {
    let mut env = docker_default_env();
    env.push((
        "JIGASI_CONFIGURATION".into(),
        "net.java.sip.communicator.impl.protocol.sip.acc1.JITSI_MEET_ROOM_HEADER_NAME=X-Conf"
            .into(),
    ));
    let out = run(&image_check_config_argv(&[]), &env);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(value(&effective(&stdout), "sip.room_header"), "\"X-Conf\"");
}

#[test]
fn the_exposed_ports_and_the_healthcheck_are_where_the_binary_listens() {
    let out = run(&image_check_config_argv(&[]), &docker_default_env());
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let s = effective(&stdout);
    let sip_port = value(&s, "sip.listen")
        .trim_matches('"')
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let mut want = BTreeSet::new();
    for transport in value(&s, "sip.transports")
        .trim_matches(['[', ']'])
        .split(',')
    {
        want.insert(format!("{sip_port}/{}", transport.trim().trim_matches('"')));
    }
    want.insert(format!(
        "{}-{}/udp",
        value(&s, "media.port_min"),
        value(&s, "media.port_max")
    ));
    want.insert(format!("{}/tcp", value(&s, "api.port")));

    let stage = final_stage(&dockerfile(&read("packaging/Dockerfile")));
    let exposed: BTreeSet<String> = only(&stage, "EXPOSE")
        .args
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(exposed, want);

    // jigasi's healthcheck command, at the API's address as seen from inside the container.
    let health = only(&stage, "HEALTHCHECK").args.clone();
    let cmd = exec_form(health.split_once("CMD ").expect("HEALTHCHECK … CMD").1);
    assert_eq!(cmd[0], "curl");
    assert!(cmd.contains(&"--fail-with-body".to_owned()), "{cmd:?}");
    let host = value(&s, "api.host").trim_matches('"');
    assert!(host == "127.0.0.1" || host == "0.0.0.0", "{host}");
    assert_eq!(
        cmd.last().unwrap(),
        &format!("http://127.0.0.1:{}/about/health", value(&s, "api.port"))
    );
    // …and the runtime stage installs curl for it.
    let installs: String = stage
        .iter()
        .filter(|i| i.name == "RUN" && i.args.contains("apt-get install"))
        .map(|i| i.args.clone())
        .collect();
    assert!(
        installs.split_whitespace().any(|w| w == "curl"),
        "{installs}"
    );
}

/// `ldd`'s view of the binary: the shared libraries it needs, by soname.
fn needed_libraries() -> BTreeSet<String> {
    let out = Command::new("ldd").arg(BIN).output().expect("ldd");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|soname| soname.rsplit('/').next().unwrap().to_owned())
        .collect()
}

#[test]
fn the_runtime_image_installs_every_shared_library_the_binary_needs() {
    // Part of the C library itself (libc6, in every Debian image), or of libgcc-s1 (required).
    let base = [
        "linux-vdso.so.1",
        "libc.so.6",
        "libm.so.6",
        "libgcc_s.so.1",
        "ld-linux-x86-64.so.2",
        "ld-linux-aarch64.so.1",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
    ];
    // soname → the bookworm package that ships it.
    let packages = BTreeMap::from([("libopus.so.0", "libopus0")]);
    let stage = final_stage(&dockerfile(&read("packaging/Dockerfile")));
    let installs: String = stage
        .iter()
        .filter(|i| i.name == "RUN" && i.args.contains("apt-get install"))
        .map(|i| i.args.clone())
        .collect();
    let needed = needed_libraries();
    assert!(needed.contains("libopus.so.0"), "{needed:?}");
    for soname in needed.iter().filter(|s| !base.contains(&s.as_str())) {
        let package = packages
            .get(soname.as_str())
            .unwrap_or_else(|| panic!("the binary needs {soname}: install its package"));
        assert!(
            installs.split_whitespace().any(|w| w == *package),
            "{package} for {soname} not installed: {installs}"
        );
    }
}

#[test]
fn the_build_context_leaves_out_build_outputs_and_the_lab() {
    let text = read(".dockerignore");
    let ignored: BTreeSet<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.trim_start_matches('/'))
        .collect();
    for dir in ["target", ".lab", ".git"] {
        assert!(ignored.contains(dir), "{dir} not in .dockerignore");
    }
}

// ---------------------------------------------------------------------------------------------
// The compose service

fn compose_service() -> serde_json::Value {
    let doc = yaml(&repo("packaging/jigasi-replacement.yml"));
    let services = doc["services"].as_object().expect("services");
    assert_eq!(
        services.keys().collect::<Vec<_>>(),
        ["jigasi"],
        "one service, named as docker-jitsi-meet's, so it takes jigasi's place"
    );
    services["jigasi"].clone()
}

fn compose_environment(service: &serde_json::Value) -> Vec<String> {
    service["environment"]
        .as_array()
        .expect("environment as a list, as jigasi.yml writes it")
        .iter()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

/// jigasi.yml's environment entries (tests/fixtures/docker-jitsi-meet).
fn jigasi_yml_environment() -> Vec<String> {
    read("tests/fixtures/docker-jitsi-meet/jigasi-environment.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_compose_service_takes_jigasis_place_with_its_variables_ports_and_network() {
    let service = compose_service();
    let ours: BTreeSet<String> = compose_environment(&service).into_iter().collect();
    let jigasi: BTreeSet<String> = jigasi_yml_environment().into_iter().collect();
    assert_eq!(ours, jigasi, "the same entries as jigasi.yml");
    // jigasi.yml publishes the media range, 1:1, over UDP (and no SIP port: the registrar reaches
    // the gateway over the flow its REGISTER opened).
    assert_eq!(
        service["ports"],
        serde_json::json!([
            "${JIGASI_PORT_MIN:-20000}-${JIGASI_PORT_MAX:-20050}:${JIGASI_PORT_MIN:-20000}-${JIGASI_PORT_MAX:-20050}/udp"
        ])
    );
    assert!(service["networks"]
        .as_object()
        .is_some_and(|n| n.contains_key("meet.jitsi")));
    assert_eq!(service["depends_on"], serde_json::json!(["prosody"]));
    assert!(service["image"].as_str().is_some_and(|i| !i.is_empty()));
    let dockerfile = service["build"]["dockerfile"]
        .as_str()
        .expect("build.dockerfile");
    assert!(repo(dockerfile).is_file(), "{dockerfile}");
}

#[test]
fn the_compose_stop_grace_period_outlasts_the_images_drain() {
    let service = compose_service();
    let grace = service["stop_grace_period"]
        .as_str()
        .expect("stop_grace_period");
    let grace: u64 = grace.strip_suffix('s').expect("seconds").parse().unwrap();
    let out = run(&image_check_config_argv(&[]), &docker_default_env());
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let drain: u64 = value(&effective(&stdout), "call.drain_timeout_s")
        .parse()
        .unwrap();
    // A drain of 0 waits for every call: docker would kill them without a BYE.
    assert!(
        drain > 0,
        "call.drain_timeout_s must be bounded in the image"
    );
    // The calls left at the end of the drain get up to 5 s to hang up.
    assert!(drain + 5 < grace, "drain {drain} s + 5 s within {grace} s");
}

/// A value each variable can take in a docker deployment (its default where it has one), set
/// alone to see what the gateway does with it.
const SAMPLES: &[(&str, &str)] = &[
    ("XMPP_DOMAIN", "meet.jitsi"),
    ("XMPP_AUTH_DOMAIN", "auth.meet.jitsi"),
    ("XMPP_GUEST_DOMAIN", "guest.meet.jitsi"),
    ("XMPP_MUC_DOMAIN", "muc.meet.jitsi"),
    ("XMPP_INTERNAL_MUC_DOMAIN", "internal-muc.meet.jitsi"),
    ("XMPP_SERVER", "xmpp.meet.jitsi"),
    ("XMPP_PORT", "5222"),
    ("JIGASI_XMPP_USER", "jigasi"),
    ("JIGASI_XMPP_PASSWORD", "0123456789abcdef"),
    ("JIGASI_BREWERY_MUC", "jigasibrewery"),
    ("ENABLE_AUTH", "1"),
    ("ENABLE_GUESTS", "1"),
    ("ENABLE_VISITORS", "1"),
    ("JIGASI_LOCAL_REGION", "europe"),
    ("JIGASI_STATS_ID", "jigasi-1"),
    ("JIGASI_INSTANCE_ID", "jigasi-2"),
    ("JIGASI_TRUSTED_DOMAINS", "hidden.meet.jitsi"),
    ("PUBLIC_URL", "https://meet.example.com"),
    ("JIGASI_SIP_URI", "test@sip2sip.info"),
    ("JIGASI_SIP_PASSWORD", "sip-secret"),
    ("JIGASI_SIP_SERVER", "sip2sip.info"),
    ("JIGASI_SIP_PORT", "5060"),
    ("JIGASI_SIP_TRANSPORT", "UDP"),
    ("JIGASI_SIP_KEEP_ALIVE_METHOD", "OPTIONS"),
    ("JIGASI_SIP_DEFAULT_ROOM", "lobby"),
    ("JIGASI_ENABLE_SDES_SRTP", "1"),
    ("JIGASI_PORT_MIN", "20000"),
    ("JIGASI_PORT_MAX", "20050"),
    ("JIGASI_JVB_TIMEOUT", "30000"),
    ("JIGASI_HEALTH_CHECK_SIP_URI", "sip:health@sip2sip.info"),
    ("JIGASI_HEALTH_CHECK_INTERVAL", "300000"),
    ("JIGASI_ENABLE_REST", "1"),
    ("SHUTDOWN_REST_ENABLED", "1"),
    (
        "JIGASI_CONFIGURATION",
        "org.jitsi.jigasi.JVB_INVITE_TIMEOUT=20000",
    ),
    ("JIGASI_MODE", "sip"),
];

/// A concrete name for a README pattern (`GC_*` → `GC_SAMPLE`).
fn concrete(pattern: &str) -> String {
    match pattern.strip_suffix('*') {
        Some(prefix) => format!("{prefix}SAMPLE"),
        None => pattern.to_owned(),
    }
}

/// Sets `name` alone (with the password the gateway requires) through the image's command line
/// and checks the gateway does what the README says it does with it.
fn check_variable(name: &str, status: Status) {
    let sample = SAMPLES
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("value-x", |(_, v)| *v);
    let mut env = pairs(&[("JIGASI_XMPP_PASSWORD", "pw")]);
    env.retain(|(k, _)| k != name);
    env.push((name.to_owned(), sample.to_owned()));
    let out = run(&image_check_config_argv(&[]), &in_image(env));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{name}={sample}: {stderr}");
    let origin = format!("# environment variable {name}");
    let warning = format!("warning: environment variable {name} is ignored: ");
    match status {
        Status::Honoured if name == "JIGASI_MODE" => {
            // Read to refuse anything but sip.
            let env = pairs(&[("JIGASI_XMPP_PASSWORD", "pw"), (name, "transcriber")]);
            let out = run(&image_check_config_argv(&[]), &in_image(env));
            assert_eq!(out.status.code(), Some(2), "{name}=transcriber accepted");
            assert!(text(&out).1.contains(name));
        }
        Status::Honoured => {
            assert!(
                stdout.contains(&origin),
                "README says {name} is honoured, but no setting came from it:\n{stdout}"
            );
            assert!(!stderr.contains("warning"), "{name}: {stderr}");
        }
        Status::Ignored => {
            assert_eq!(stderr.matches(&warning).count(), 1, "{name}: {stderr}");
            assert!(!stdout.contains(&origin), "{name}: {stdout}");
        }
        Status::NotRead => {
            assert!(stderr.is_empty(), "{name}: {stderr}");
            assert!(!stdout.contains(&origin), "{name}: {stdout}");
        }
    }
}

#[test]
fn every_variable_the_compose_service_passes_is_honoured_or_knowingly_ignored() {
    let rows = readme_env_table(&read("README.md"), README_TABLE);
    for entry in compose_environment(&compose_service()) {
        let name = entry.split('=').next().unwrap();
        let row = rows
            .iter()
            .find(|r| r.matches(name))
            .unwrap_or_else(|| panic!("{name} is passed but not in the README's table"));
        check_variable(name, row.status);
    }
}

#[test]
fn a_docker_deployment_with_a_sip_account_loads_as_jigasi_would_run() {
    // What the README's steps leave in .env, through the compose entries (interpolated).
    let dotenv: BTreeMap<String, String> = [
        ("JIGASI_XMPP_PASSWORD", "0123456789abcdef0123456789abcdef"),
        ("JIGASI_SIP_URI", "test@sip2sip.info"),
        ("JIGASI_SIP_PASSWORD", "sip-secret"),
        ("JIGASI_SIP_SERVER", "sip2sip.info"),
        ("JIGASI_SIP_PORT", "5060"),
        ("JIGASI_SIP_TRANSPORT", "UDP"),
        ("JIGASI_ENABLE_REST", "1"),
        ("PUBLIC_URL", "https://meet.example.com:8443"),
        ("TZ", "UTC"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let mut env = Vec::new();
    for entry in compose_environment(&compose_service()) {
        match entry.split_once('=') {
            Some((name, fixed)) => env.push((name.to_owned(), interpolate(fixed, &dotenv))),
            None => {
                if let Some(v) = dotenv.get(&entry) {
                    env.push((entry.clone(), v.clone()));
                }
            }
        }
    }
    let out = run(&image_check_config_argv(&[]), &in_image(env));
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let s = effective(&stdout);
    assert_eq!(value(&s, "api.host"), "\"0.0.0.0\"");
    assert_eq!(value(&s, "sip.room_header"), "\"X-Room-Name\"");
    assert_eq!(value(&s, "sip.uri"), "\"sip:test@sip2sip.info\"");
    assert_eq!(value(&s, "sip.server"), "\"sip2sip.info\"");
    assert_eq!(value(&s, "sip.password"), "\"********\"");
    assert_eq!(value(&s, "media.port_min"), "20000");
    assert_eq!(value(&s, "media.port_max"), "20050");
    assert!(!stdout.contains("sip-secret") && !stdout.contains("0123456789abcdef"));
}

// ---------------------------------------------------------------------------------------------
// The README's table against the config registry

#[test]
fn the_readme_table_lists_every_variable_the_configuration_reads_or_ignores() {
    let rows = readme_env_table(&read("README.md"), README_TABLE);
    let keys_rs = read("src/config/keys.rs");
    let with = |status: Status| -> BTreeSet<String> {
        rows.iter()
            .filter(|r| r.status == status)
            .map(|r| r.pattern.clone())
            .collect()
    };
    // The two variables src/config/env.rs reads itself: JIGASI_MODE (sip only) and
    // JIGASI_CONFIGURATION (jigasi properties that have an equivalent setting).
    let mut honoured: BTreeSet<String> = registry_vars(&keys_rs).into_iter().collect();
    honoured.extend(["JIGASI_MODE".to_owned(), "JIGASI_CONFIGURATION".to_owned()]);
    assert_eq!(with(Status::Honoured), honoured);
    let ignored: BTreeSet<String> = registry_ignored(&keys_rs).into_iter().collect();
    assert_eq!(with(Status::Ignored), ignored);
    // "not read" is only for variables jigasi.yml passes (so an operator meets them).
    let passed = jigasi_yml_environment();
    for row in rows.iter().filter(|r| r.status == Status::NotRead) {
        assert!(
            passed
                .iter()
                .any(|e| row.matches(e.split('=').next().unwrap())),
            "{} is not passed by jigasi.yml",
            row.pattern
        );
    }
    // And the binary does with each what the README says (ignored ones: one warning each).
    for row in &rows {
        check_variable(&concrete(&row.pattern), row.status);
    }
}

// ---------------------------------------------------------------------------------------------
// systemd

const UNIT: &str = "packaging/jitsi-sip-gateway.service";
/// Where the README's systemd steps install each file: host path → repository file.
const INSTALLED: &[(&str, &str)] = &[
    ("/usr/local/bin/jitsi-sip-gateway", BIN),
    (
        "/etc/jitsi/sip-gateway/gateway.toml",
        "config/gateway.example.toml",
    ),
    ("/etc/jitsi/sip-gateway/env", "packaging/env.example"),
];

fn installed_from(path: &str) -> String {
    let (_, from) = INSTALLED
        .iter()
        .find(|(p, _)| *p == path)
        .unwrap_or_else(|| panic!("{path}: not one the README installs"));
    if from.starts_with('/') {
        (*from).to_owned()
    } else {
        repo(from).display().to_string()
    }
}

/// The unit's `ExecStart`, installed paths mapped to the repository's files.
fn unit_argv(unit: &[(String, String, String)]) -> Vec<String> {
    let argv: Vec<String> = directive(unit, "ExecStart")
        .split_whitespace()
        .map(|a| {
            if a.starts_with('/') {
                installed_from(a)
            } else {
                a.to_owned()
            }
        })
        .collect();
    assert_eq!(argv.last().map(String::as_str), Some("run"));
    argv
}

/// The environment systemd gives the service: `EnvironmentFile=`, then `Environment=`.
fn unit_env(unit: &[(String, String, String)]) -> Vec<(String, String)> {
    let path = directive(unit, "EnvironmentFile");
    let mut env = env_file(&std::fs::read_to_string(installed_from(path)).unwrap());
    for pair in directive(unit, "Environment").split_whitespace() {
        let (k, v) = pair.split_once('=').expect("Environment=NAME=value");
        env.push((k.to_owned(), v.to_owned()));
    }
    env
}

#[test]
fn the_systemd_unit_runs_the_binary_with_its_environment_file() {
    let unit = unit_directives(&read(UNIT));
    let env = unit_env(&unit);
    let mut argv = unit_argv(&unit);
    *argv.last_mut().unwrap() = "check-config".into();
    let out = run(&argv, &env);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    // The example's placeholder password is nagged about until it is replaced; nothing else.
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("xmpp.password is still"), "{stderr}");
    let s = effective(&stdout);
    assert_eq!(value(&s, "xmpp.domain"), "\"meet.example.com\"");
    assert!(s["xmpp.domain"].1.contains("XMPP_DOMAIN"));
    assert_eq!(
        value(&s, "xmpp.internal_muc_domain"),
        "\"internal.auth.meet.example.com\""
    );
    // The password comes from the root-only environment file, not the readable TOML file.
    assert!(s["xmpp.password"].1.contains("JIGASI_XMPP_PASSWORD"));
    // Not docker: jigasi's own header name.
    assert_eq!(value(&s, "sip.room_header"), "\"Jitsi-Conference-Room\"");

    assert_eq!(directive(&unit, "Restart"), "on-failure");
    // The binary's exit status for a configuration it refuses: no restart loop on it.
    let refused = run(&argv, &pairs(&[("XMPP_PORT", "not-a-port")]))
        .status
        .code();
    assert_eq!(refused, Some(2));
    assert_eq!(directive(&unit, "RestartPreventExitStatus"), "2");
    assert_eq!(directive(&unit, "KillSignal"), "SIGTERM");
    // Room for the README's drain of 300 s and the 5 s to hang up what is left.
    let stop = directive(&unit, "TimeoutStopSec");
    let stop_s: u64 = match stop.strip_suffix("min") {
        Some(m) => m.parse::<u64>().unwrap() * 60,
        None => stop.trim_end_matches('s').parse().unwrap(),
    };
    assert!(stop_s > 305, "TimeoutStopSec={stop}");
    // Ports above 1024: no capability at all.
    assert_eq!(directive(&unit, "CapabilityBoundingSet"), "");
    assert!(!unit.iter().any(|(_, k, _)| k == "AmbientCapabilities"));
}

/// Runs `argv` (a `run` command line) with `env` and human logs, on loopback ports and toward an
/// XMPP server that is not there, until it logs "gateway ready"; then stops it with SIGTERM.
/// Returns the lines logged until then.
fn human_lines_until_ready(argv: &[String], env: &[(String, String)]) -> Vec<String> {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().args(&argv[1..]).args([
        "--log-format",
        "human",
        "--sip-listen",
        "127.0.0.1:0",
        "--set",
        "api.port=0",
        "--set",
        "xmpp.servers=127.0.0.1:1",
        "--set",
        "xmpp.tls=none",
    ]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let ready = loop {
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) => {
                let ready = line.contains("gateway ready");
                lines.push(line);
                if ready {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(ready, "no \"gateway ready\" within 10 s: {lines:?}");
    assert!(status.success(), "{status}: {lines:?}");
    lines
}

#[test]
fn the_packaged_environments_give_plain_human_log_lines() {
    // journald and `docker logs` keep terminal colour codes, which break a grep for call_id=….
    let unit = unit_directives(&read(UNIT));
    let image = {
        let mut argv = image_check_config_argv(&[]);
        *argv.last_mut().unwrap() = "run".into();
        human_lines_until_ready(&argv, &docker_default_env())
    };
    let systemd = human_lines_until_ready(&unit_argv(&unit), &unit_env(&unit));
    for (what, lines) in [("image", image), ("systemd", systemd)] {
        assert!(
            lines.iter().all(|l| !l.contains('\x1b')),
            "{what}: colour codes in {lines:?}"
        );
        assert!(
            lines.last().unwrap().contains(" INFO "),
            "{what}: {lines:?}"
        );
    }
}

#[test]
fn systemd_analyze_verifies_the_unit() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        println!("skipped: systemd-analyze is not installed here");
        return;
    }
    // The unit as installed, its two paths pointing at what exists on this machine.
    let dir = tempfile::tempdir().unwrap();
    let env = dir.path().join("env");
    std::fs::copy(repo("packaging/env.example"), &env).unwrap();
    let unit_text = read(UNIT)
        .replace("/usr/local/bin/jitsi-sip-gateway", BIN)
        .replace("/etc/jitsi/sip-gateway/env", env.to_str().unwrap());
    let unit = dir.path().join("jitsi-sip-gateway.service");
    std::fs::write(&unit, unit_text).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    // Unknown or misspelt directives are only warnings: any output is a finding.
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "{stdout}{stderr}"
    );
}
