//! The binary as an operator meets it: `check-config`, refusing bad settings, log formats,
//! jigasi's start-script flags, and a clean stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_jitsi-sip-gateway");

/// The binary with an empty environment (tests must not depend on the developer's variables).
fn gateway(env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear().current_dir(env!("CARGO_MANIFEST_DIR"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The line of `render` output for `key` in a table, e.g. `port_min = 30000   # environment …`.
fn line<'a>(stdout: &'a str, key: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.split('=').next().is_some_and(|k| k.trim() == key))
        .unwrap_or_else(|| panic!("no line for {key} in:\n{stdout}"))
}

#[test]
fn check_config_prints_the_example_file_with_secrets_masked() {
    let out = gateway(&[])
        .args(["check-config", "--config", "config/gateway.example.toml"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        line(&stdout, "domain").contains("\"meet.jitsi\""),
        "{stdout}"
    );
    let password = line(&stdout, "password");
    assert!(
        password.contains("\"********\"") && password.contains("config/gateway.example.toml"),
        "{password}"
    );
    assert!(
        !stdout.contains("CHANGE-ME"),
        "the placeholder secret leaked:\n{stdout}"
    );
}

#[test]
fn check_config_shows_docker_variables_and_where_each_value_came_from() {
    let env = [
        ("JIGASI_XMPP_PASSWORD", "very-secret"),
        ("XMPP_DOMAIN", "example.com"),
        ("XMPP_SERVER", "prosody-a:5223:a,prosody-b"),
        ("JIGASI_PORT_MIN", "30000"),
        ("JIGASI_PORT_MAX", "30100"),
        ("JIGASI_SIP_URI", "gateway@sip.example.com"),
        ("JIGASI_SIP_DEFAULT_ROOM", "lobby"),
        ("JIGASI_ENABLE_REST", "true"),
        ("JIGASI_LOG_FILE", "/var/log/jigasi.log"),
        ("SENTRY_DSN", "0"),
    ];
    let out = gateway(&env).arg("check-config").output().unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        line(&stdout, "domain").contains("\"example.com\"")
            && line(&stdout, "domain").contains("XMPP_DOMAIN")
    );
    assert!(
        line(&stdout, "servers").contains("\"prosody-a:5223:a\", \"prosody-b:5222:1\""),
        "{stdout}"
    );
    assert!(
        line(&stdout, "port_min").contains("30000")
            && line(&stdout, "port_min").contains("JIGASI_PORT_MIN")
    );
    assert!(
        line(&stdout, "default_room").contains("\"lobby\""),
        "{stdout}"
    );
    assert!(
        line(&stdout, "host").contains("0.0.0.0")
            && line(&stdout, "host").contains("JIGASI_ENABLE_REST")
    );
    assert!(!stdout.contains("very-secret") && !stderr.contains("very-secret"));
    // Set but meaningless here: said once, not silently dropped; compose's SENTRY_DSN=0 is quiet.
    assert!(stderr.contains("JIGASI_LOG_FILE"), "{stderr}");
    assert!(!stderr.contains("SENTRY_DSN"), "{stderr}");
}

#[test]
fn a_missing_xmpp_password_is_named_and_fails() {
    let out = gateway(&[("XMPP_DOMAIN", "example.com")])
        .arg("check-config")
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("xmpp.password") && stderr.contains("JIGASI_XMPP_PASSWORD"),
        "{stderr}"
    );
}

#[test]
fn the_gateway_refuses_to_start_on_a_bad_value_and_says_which() {
    let env = [
        ("JIGASI_XMPP_PASSWORD", "x"),
        ("JIGASI_SIP_TRANSPORT", "sctp"),
    ];
    let out = gateway(&env)
        .args(["run", "--set", "media.opus_complexity=11"])
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("refusing to start"), "{stderr}");
    assert!(
        stderr.contains("sip.server_transport") && stderr.contains("JIGASI_SIP_TRANSPORT"),
        "{stderr}"
    );
    assert!(
        stderr.contains("media.opus_complexity") && stderr.contains("--set"),
        "{stderr}"
    );
}

#[test]
fn jigasis_start_script_flags_are_accepted_and_the_port_range_honoured() {
    // What docker-jitsi-meet's jigasi service passes.
    let out = gateway(&[("JIGASI_XMPP_PASSWORD", "x")])
        .args([
            "--nocomponent=true",
            "--configdir=/run/jigasi",
            "--configdirname=config",
            "--min-port=40000",
            "--max-port=40010",
            "check-config",
        ])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        line(&stdout, "port_min").contains("40000")
            && line(&stdout, "port_min").contains("--min-port"),
        "{stdout}"
    );
    assert!(line(&stdout, "port_max").contains("40010"), "{stdout}");
}

/// A running gateway, killed when dropped (also when an assertion fails first).
struct Running {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `run` on free loopback ports, with an XMPP server that is not there (the gateway
/// starts anyway and keeps trying), and returns once it logged that it is ready, with that line.
fn start(args: &[&str]) -> (Running, String) {
    let xmpp = format!("127.0.0.1:{}", free_port());
    let mut child = gateway(&[
        ("JIGASI_XMPP_PASSWORD", "x"),
        ("RUST_LOG", "info"),
        ("XMPP_SERVER", &xmpp),
    ])
    .arg("run")
    .args([
        "--sip-listen",
        "127.0.0.1:0",
        "--set",
        &format!("api.port={}", free_port()),
    ])
    .args(["--set", "xmpp.tls=none"])
    .args(args)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let running = Running {
        child: Some(child),
        lines,
    };
    let ready = loop {
        let line = running
            .lines
            .recv_timeout(Duration::from_secs(10))
            .expect("\"gateway ready\" within 10 s");
        if line.contains("gateway ready") {
            break line;
        }
    };
    (running, ready)
}

/// SIGTERM; the exit status and the log lines written after "ready".
fn stop(mut running: Running) -> (std::process::ExitStatus, Vec<String>) {
    let mut child = running.child.take().unwrap();
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = child.wait().unwrap();
    let rest = running.lines.iter().collect();
    (status, rest)
}

#[test]
fn logs_are_human_by_default_and_sigterm_stops_cleanly() {
    let (running, ready) = start(&[]);
    assert!(ready.contains("INFO"), "{ready}");
    // Written to a pipe, not a terminal: no colour codes to break a grep.
    assert!(!ready.contains('\x1b'), "{ready:?}");
    assert!(
        serde_json::from_str::<serde_json::Value>(&ready).is_err(),
        "expected a human line: {ready}"
    );
    let (status, rest) = stop(running);
    assert!(status.success(), "{status}");
    assert!(
        rest.iter()
            .any(|l| l.contains("stopping") && l.contains("SIGTERM")),
        "{rest:?}"
    );
}

#[test]
fn logs_are_json_lines_with_the_flag() {
    let (running, ready) = start(&["--log-format", "json"]);
    let line: serde_json::Value = serde_json::from_str(&ready).expect("a JSON log line");
    assert_eq!(line["level"], "INFO", "{line}");
    assert_eq!(line["message"], "gateway ready", "{line}");
    assert!(
        line["sip"]
            .as_str()
            .unwrap_or("")
            .contains("udp:127.0.0.1:"),
        "{line}"
    );
    assert!(stop(running).0.success());
}
