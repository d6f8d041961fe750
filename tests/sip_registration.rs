//! The account's registration against a real registrar: Kamailio 5.6 with digest auth
//! (`tests/lab/kamailio/registrar.cfg.in`, users gateway/gatewaypw …). Kamailio's location table
//! (`kamcmd ul.dump`) and its request log are the witnesses; the gateway's own view is
//! `SipServer::registration()`.

#[path = "sip_support/mod.rs"]
mod support;

use gateway_lab::kamailio::Registrar;
use gateway_lab::paths;
use jitsi_sip_gateway::sip::{RegistrationState, SipServer};
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use support::*;

/// Everything the gateway logs at INFO and above, for the tests that read its log lines.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        captured
    })
}

fn log_lines(containing: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned();
    text.lines()
        .filter(|l| l.contains(containing))
        .map(String::from)
        .collect()
}

/// A gateway with the lab account `gateway@sip.lab.test`, registering at `registrar`.
async fn gateway(registrar: &Registrar, extra: &[&str]) -> SipServer {
    let port = format!("sip.server_port={}", registrar.port);
    let mut sets = vec![
        "sip.uri=gateway@sip.lab.test",
        "sip.server=127.0.0.1",
        port.as_str(),
        "sip.keep_alive_method=none",
    ];
    sets.extend_from_slice(extra);
    start(&sets).await.0
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_registers_with_digest_and_unregisters_on_shutdown() {
    let dir = paths::run_dir("sip_registration-register").unwrap();
    let mut kamailio = Registrar::start(&dir).unwrap();
    let server = gateway(&kamailio, &["sip.password=gatewaypw"]).await;
    let mut states = server.registration();
    let state = wait_for(
        &mut states,
        Duration::from_secs(10),
        "Registered",
        registered,
    )
    .await;
    assert_eq!(
        state,
        RegistrationState::Registered {
            expires_in: Duration::from_secs(600)
        }
    );
    kamailio
        .wait_aor("gateway", true, Duration::from_secs(5))
        .unwrap();
    // Challenged once (401), then accepted with credentials.
    assert_eq!(kamailio.count("REGISTER"), 2, "{:?}", kamailio.requests());

    server.shutdown().await;
    // Expires: 0 removed the binding before shutdown returned.
    assert!(
        !kamailio.aors().unwrap().contains(&"gateway".to_string()),
        "{:?}",
        kamailio.aors()
    );
    assert_eq!(*states.borrow(), RegistrationState::Disabled);
    kamailio.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_registration_is_refreshed_before_it_expires() {
    let dir = paths::run_dir("sip_registration-refresh").unwrap();
    let mut kamailio = Registrar::start(&dir).unwrap();
    let server = gateway(
        &kamailio,
        &["sip.password=gatewaypw", "sip.registration_expiry_s=15"],
    )
    .await;
    let mut states = server.registration();
    let first = wait_for(
        &mut states,
        Duration::from_secs(10),
        "Registered",
        registered,
    )
    .await;
    assert_eq!(
        first,
        RegistrationState::Registered {
            expires_in: Duration::from_secs(15)
        }
    );
    let registered_at = Instant::now();
    tokio::time::timeout(Duration::from_secs(15), states.changed())
        .await
        .expect("no refresh before the binding expired")
        .unwrap();
    let refreshed_after = registered_at.elapsed();
    assert!(registered(&states.borrow()), "{:?}", *states.borrow());
    assert!(
        refreshed_after >= Duration::from_secs(5),
        "refreshed too early: {refreshed_after:?}"
    );
    assert_eq!(kamailio.count("REGISTER"), 4, "{:?}", kamailio.requests());
    kamailio
        .wait_aor("gateway", true, Duration::from_secs(1))
        .unwrap();
    server.shutdown().await;
    kamailio.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_fails_with_401_and_backs_off() {
    logs();
    let dir = paths::run_dir("sip_registration-wrong-password").unwrap();
    let mut kamailio = Registrar::start(&dir).unwrap();
    let started = Instant::now();
    let server = gateway(&kamailio, &["sip.password=not-the-password"]).await;
    let mut states = server.registration();
    // The fourth failed attempt in a row waits 8 s (1, 2, 4, 8).
    let state = wait_for(
        &mut states,
        Duration::from_secs(20),
        "the fourth failure",
        |s| matches!(s, RegistrationState::Failed { retry_in, .. } if *retry_in == Duration::from_secs(8)),
    )
    .await;
    let RegistrationState::Failed { status, reason, .. } = state else {
        unreachable!()
    };
    assert_eq!(status, Some(401));
    assert!(reason.contains("wrong password"), "{reason}");
    assert!(started.elapsed() >= Duration::from_secs(7));
    // Four attempts in about seven seconds, each a challenge and one answer to it: no loop.
    assert_eq!(kamailio.count("REGISTER"), 8, "{:?}", kamailio.requests());
    let registrar = format!("registrar={}", kamailio.address());
    let errors = log_lines(&registrar);
    assert_eq!(errors.len(), 4, "{errors:#?}");
    for line in &errors {
        assert!(line.contains("ERROR"), "{line}");
        assert!(line.contains("user=gateway"), "{line}");
        assert!(line.contains("status=401"), "{line}");
    }
    server.shutdown().await;
    kamailio.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn options_keep_alives_go_to_the_registrar_while_registered() {
    let dir = paths::run_dir("sip_registration-keep-alive").unwrap();
    let mut kamailio = Registrar::start(&dir).unwrap();
    let server = gateway(
        &kamailio,
        &[
            "sip.password=gatewaypw",
            "sip.keep_alive_method=options",
            "sip.keep_alive_interval_s=1",
        ],
    )
    .await;
    let mut states = server.registration();
    wait_for(
        &mut states,
        Duration::from_secs(10),
        "Registered",
        registered,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while kamailio.count("OPTIONS") < 2 {
        assert!(
            Instant::now() < deadline,
            "no keep-alives: {:?}",
            kamailio.requests()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let options: Vec<String> = kamailio
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("OPTIONS"))
        .collect();
    let target = format!("OPTIONS sip:{} ", kamailio.address());
    assert!(
        options.iter().all(|r| r.starts_with(&target)),
        "{options:?}"
    );
    // They are answered: no re-REGISTER was needed.
    assert_eq!(kamailio.count("REGISTER"), 2, "{:?}", kamailio.requests());
    server.shutdown().await;
    kamailio.stop();
}
