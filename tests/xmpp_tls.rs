//! STARTTLS of `xmpp::Connection` against a real Prosody 0.12 that requires TLS and has a
//! self-signed certificate, as docker-jitsi-meet's does. Needs the `openssl` command. Run inside
//! the lab namespace: `tests/lab/in-netns.sh cargo test --test xmpp_tls --offline`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use gateway_lab::proc::Supervised;
use gateway_lab::{net, paths};
use jitsi_sip_gateway::config::Host;
use jitsi_sip_gateway::xmpp::{ConnectError, ConnectOptions, Connection, Login, Tls, XmppTimeouts};

const DOMAIN: &str = "meet.jitsi";

/// A Prosody that only talks after STARTTLS, with a certificate nobody trusts.
struct TlsProsody {
    port: u16,
    _proc: Supervised,
}

impl TlsProsody {
    fn start(dir: &Path) -> Result<TlsProsody> {
        let instance = dir.join("prosody-tls");
        std::fs::create_dir_all(instance.join("certs"))?;
        std::fs::create_dir_all(instance.join("data"))?;
        let status = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", &format!("/CN={DOMAIN}")])
            .args(["-addext", &format!("subjectAltName=DNS:{DOMAIN}")])
            .args([
                "-keyout",
                "certs/meet.jitsi.key",
                "-out",
                "certs/meet.jitsi.crt",
            ])
            .current_dir(&instance)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .context("running openssl to make a self-signed certificate")?;
        anyhow::ensure!(status.success(), "openssl req failed: {status}");
        let port = net::free_tcp_port()?;
        std::fs::write(
            instance.join("prosody.cfg.lua"),
            format!(
                r#"run_as_root = true
data_path = "data"
certificates = "certs"
pidfile = "prosody.pid"
log = {{ debug = "prosody.log"; info = "*console" }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {port} }}
c2s_interfaces = {{ "127.0.0.1" }}
component_ports = {{}}
http_ports = {{}}
https_ports = {{}}
s2s_ports = {{}}
c2s_require_encryption = true
authentication = "anonymous"
storage = "internal"
modules_enabled = {{ "saslauth"; "tls"; "disco"; "ping" }}
modules_disabled = {{ "s2s"; "posix" }}
VirtualHost "{DOMAIN}"
"#
            ),
        )?;
        let mut cmd = Command::new("prosody");
        cmd.args(["--config", "./prosody.cfg.lua", "-F"])
            .current_dir(&instance);
        let mut proc = Supervised::spawn("prosody-tls", cmd, &dir.join("prosody-tls.log"))?;
        net::wait_tcp(port, Duration::from_secs(15), || proc.check_alive())?;
        Ok(TlsProsody { port, _proc: proc })
    }

    fn options(&self, tls: Tls) -> ConnectOptions {
        ConnectOptions {
            host: Host::Ip([127, 0, 0, 1].into()),
            port: self.port,
            login: Login::Anonymous {
                domain: DOMAIN.into(),
            },
            tls,
            focus_jid: format!("focus.{DOMAIN}"),
            focus_nick: "focus".into(),
            timeouts: XmppTimeouts::default(),
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

#[test]
fn starttls_accepting_any_certificate_logs_in_to_a_self_signed_server() -> Result<()> {
    let dir = paths::run_dir("xmpp-tls-accept-any")?;
    let prosody = TlsProsody::start(&dir)?;
    let rt = runtime();
    let conn = rt.block_on(Connection::connect(
        &prosody.options(Tls::StartTlsAcceptAnyCertificate),
    ))?;
    assert!(conn.jid().contains("@meet.jitsi/"), "{}", conn.jid());
    rt.block_on(conn.close());
    Ok(())
}

#[test]
fn starttls_with_verification_refuses_a_self_signed_certificate() -> Result<()> {
    let dir = paths::run_dir("xmpp-tls-verified")?;
    let prosody = TlsProsody::start(&dir)?;
    let result = runtime().block_on(Connection::connect(&prosody.options(Tls::StartTls)));
    assert!(matches!(&result, Err(ConnectError::Tls(_))), "{result:?}");
    Ok(())
}

#[test]
fn plain_login_to_a_server_that_requires_tls_is_refused() -> Result<()> {
    let dir = paths::run_dir("xmpp-tls-required")?;
    let prosody = TlsProsody::start(&dir)?;
    let result = runtime().block_on(Connection::connect(&prosody.options(Tls::Plain)));
    assert!(
        matches!(&result, Err(ConnectError::NoMechanism { offered }) if offered.is_empty()),
        "{result:?}"
    );
    Ok(())
}
