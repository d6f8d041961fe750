//! `xmpp::Connection` and `xmpp::Pool` against a real Prosody 0.12 and the conference emulator
//! (Jicofo stand-in). Run inside the lab namespace:
//! `tests/lab/in-netns.sh cargo test --test xmpp_connection --offline`.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use gateway_lab::emulator::{self, EmulatorOptions, Participant, PyService};
use gateway_lab::paths;
use gateway_lab::prosody::Prosody;
use jitsi_sip_gateway::config::{self, ConfigInput, FlagValue};
use jitsi_sip_gateway::xmpp::{
    random_endpoint_nick, ConnectError, ConnectOptions, Connection, Direction, Disconnected,
    Element, Inbound, IqError, IqKind, JoinRequest, Pool, Reply, RoomJid, Tls,
};
use serde_json::{json, Value};
use tokio::runtime::Runtime;

const WAIT: Duration = Duration::from_secs(15);

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Per-call connection options for the lab Prosody; `extra` are `--set key=value` settings.
fn options(prosody: &Prosody, extra: &[(&str, &str)]) -> ConnectOptions {
    let mut flags = vec![
        FlagValue::new(
            "--set",
            "xmpp.servers",
            format!("127.0.0.1:{}", prosody.c2s_port),
        ),
        FlagValue::new("--set", "xmpp.domain", prosody.domain.clone()),
        FlagValue::new(
            "--set",
            "xmpp.auth_domain",
            format!("auth.{}", prosody.domain),
        ),
        FlagValue::new(
            "--set",
            "xmpp.guest_domain",
            format!("guest.{}", prosody.domain),
        ),
        FlagValue::new("--set", "xmpp.muc_domain", prosody.muc_domain()),
        FlagValue::new("--set", "xmpp.password", prosody.jigasi_password.clone()),
    ];
    flags.extend(extra.iter().map(|(k, v)| FlagValue::new("--set", *k, *v)));
    let env = BTreeMap::new();
    let loaded = config::load(&ConfigInput {
        file: None,
        env: &env,
        flags,
    })
    .expect("lab settings load");
    ConnectOptions::per_call(&loaded.settings.xmpp, Tls::Plain)
}

fn room(prosody: &Prosody, name: &str) -> RoomJid {
    RoomJid::new(name, &prosody.muc_domain()).expect("room address")
}

fn dial_in(room: RoomJid, nick: &str) -> JoinRequest {
    JoinRequest {
        room,
        nick: nick.to_string(),
        display_name: "+15551234567".into(),
        password: None,
        region: None,
        stats_id: None,
        direction: Direction::In,
    }
}

async fn within<T>(what: &str, f: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(WAIT, f)
        .await
        .map_err(|_| anyhow!("no {what} within {WAIT:?}"))
}

/// The next event that `pred` picks, skipping others.
async fn next_event(
    conn: &mut Connection,
    what: &str,
    pred: impl Fn(&Inbound) -> bool,
) -> Result<Inbound> {
    within(what, async {
        loop {
            let event = conn.next().await.map_err(|e| anyhow!("{what}: {e}"))?;
            if pred(&event) {
                return Ok(event);
            }
        }
    })
    .await?
}

/// The first emulator event of `kind` with `fields`, whether it came already or comes later
/// (events of different kinds arrive in no fixed order).
fn wait_event(service: &mut PyService, kind: &str, fields: Value) -> Result<Value> {
    let matches = |e: &Value| {
        e["event"] == json!(kind)
            && fields
                .as_object()
                .is_none_or(|f| f.iter().all(|(k, v)| e.get(k) == Some(v)))
    };
    if let Some(seen) = service.control.events().iter().find(|e| matches(e)) {
        return Ok(seen.clone());
    }
    service.control.wait_for(kind, fields, WAIT)
}

#[test]
fn anonymous_login_gets_a_jid_made_up_by_the_server() -> Result<()> {
    let dir = paths::run_dir("xmpp-anonymous-login")?;
    let prosody = Prosody::start(&dir)?;
    let rt = runtime();
    let conn = rt.block_on(Connection::connect(&options(&prosody, &[])))?;
    let (node, rest) = conn.jid().split_once('@').context("jid has a node")?;
    assert!(!node.is_empty());
    assert!(rest.starts_with("meet.jitsi/"), "{}", conn.jid());
    rt.block_on(conn.close());
    Ok(())
}

#[test]
fn with_auth_the_connection_logs_in_as_the_jigasi_account() -> Result<()> {
    let dir = paths::run_dir("xmpp-account-login")?;
    let prosody = Prosody::start(&dir)?;
    let rt = runtime();
    let conn = rt.block_on(Connection::connect(&options(
        &prosody,
        &[("xmpp.enable_auth", "true")],
    )))?;
    assert!(
        conn.jid().starts_with("jigasi@auth.meet.jitsi/"),
        "{}",
        conn.jid()
    );
    rt.block_on(conn.close());
    Ok(())
}

#[test]
fn with_auth_and_guests_the_connection_is_anonymous_on_the_guest_domain() -> Result<()> {
    let dir = paths::run_dir("xmpp-guest-login")?;
    let prosody = Prosody::start(&dir)?;
    let rt = runtime();
    let conn = rt.block_on(Connection::connect(&options(
        &prosody,
        &[("xmpp.enable_auth", "true"), ("xmpp.enable_guests", "true")],
    )))?;
    assert!(conn.jid().contains("@guest.meet.jitsi/"), "{}", conn.jid());
    rt.block_on(conn.close());
    Ok(())
}

#[test]
fn wrong_password_is_a_typed_failure_not_a_retry_loop() -> Result<()> {
    let dir = paths::run_dir("xmpp-wrong-password")?;
    let prosody = Prosody::start(&dir)?;
    let rt = runtime();
    let opts = options(
        &prosody,
        &[
            ("xmpp.enable_auth", "true"),
            ("xmpp.password", "not-the-password"),
        ],
    );
    // connect() returns (tokio-xmpp's Client would retry a refused login forever).
    let result = rt.block_on(within(
        "answer to a wrong password",
        Connection::connect(&opts),
    ))?;
    assert_eq!(
        result.err(),
        Some(ConnectError::AuthFailed {
            condition: "not-authorized".into()
        })
    );
    Ok(())
}

#[test]
fn unreachable_server_is_a_typed_failure() -> Result<()> {
    let dir = paths::run_dir("xmpp-unreachable")?;
    let mut prosody = Prosody::start(&dir)?;
    let opts = options(&prosody, &[]);
    prosody.stop();
    let result = runtime().block_on(Connection::connect(&opts));
    assert!(
        matches!(result, Err(ConnectError::Unreachable { .. })),
        "{result:?}"
    );
    Ok(())
}

#[test]
fn a_server_that_never_answers_the_login_is_given_up_after_the_login_timeout() -> Result<()> {
    let dir = paths::run_dir("xmpp-login-timeout")?;
    let prosody = Prosody::start(&dir)?;
    // Something that accepts TCP and then says nothing.
    let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
    let mut opts = options(&prosody, &[]);
    opts.port = silent.local_addr()?.port();
    opts.timeouts.login = Duration::from_secs(1);
    let result = runtime().block_on(Connection::connect(&opts));
    assert!(
        matches!(result, Err(ConnectError::Timeout { after, .. }) if after == Duration::from_secs(1)),
        "{result:?}"
    );
    Ok(())
}

/// The whole dial-in signalling on the XMPP side, as the emulator (Jicofo) sees it.
#[test]
fn a_call_joins_the_room_as_a_jigasi_and_gets_an_audio_only_offer() -> Result<()> {
    let dir = paths::run_dir("xmpp-join-room")?;
    let prosody = Prosody::start(&dir)?;
    let mut emulator = emulator::start_emulator(
        &prosody,
        &dir,
        &EmulatorOptions::room_with("room1", vec![Participant::tone("alice", 440.0)]),
    )?;
    let rt = runtime();
    let mut conn = rt.block_on(Connection::connect(&options(&prosody, &[])))?;
    let room = room(&prosody, "Room1");
    let nick = random_endpoint_nick();

    // The focus request, answered by the emulator's focus.<domain> component.
    let answer = rt.block_on(conn.request_conference(&room)?)?;
    let answer = answer.context("conference result has a payload")?;
    assert_eq!(answer.attr("ready"), Some("true"));
    wait_event(
        &mut emulator,
        "conference-request",
        json!({"room": "room1@muc.meet.jitsi"}),
    )?;

    conn.join(dial_in(room.clone(), &nick))?;
    let joined = rt.block_on(next_event(&mut conn, "self presence", |e| {
        matches!(e, Inbound::SelfJoined { .. } | Inbound::JoinFailed(_))
    }))?;
    let Inbound::SelfJoined { occupants } = joined else {
        panic!("join failed: {joined:?}");
    };
    assert!(
        occupants.iter().any(|o| o.nick == "focus" && o.is_focus),
        "{occupants:?}"
    );
    assert!(
        occupants
            .iter()
            .any(|o| !o.is_focus && !o.is_jigasi && o.display_name.as_deref() == Some("alice")),
        "{occupants:?}"
    );
    conn.set_status(Some("Initializing Call"))?;

    let seen = wait_event(&mut emulator, "occupant-joined", json!({"nick": nick}))?;
    assert_eq!(seen["is_gateway"], json!(true), "{seen}");
    assert_eq!(seen["jigasi_initiator"], json!(true), "{seen}");
    assert_eq!(seen["display_name"], json!("+15551234567"), "{seen}");
    assert_eq!(
        seen["jid"].as_str().map(|j| j == conn.jid()),
        Some(true),
        "{seen}"
    );
    let features = wait_event(
        &mut emulator,
        "features-discovered",
        json!({"nick": nick, "source": "disco"}),
    )?;
    let features: Vec<&str> = features["features"]
        .as_array()
        .context("features list")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for f in [
        "urn:xmpp:jingle:apps:rtp:audio",
        "http://jitsi.org/protocol/jigasi",
        "urn:xmpp:jingle:dtmf:0",
    ] {
        assert!(features.contains(&f), "{f} missing from {features:?}");
    }
    assert!(!features.contains(&"urn:xmpp:jingle:apps:rtp:video"));
    assert!(!features.contains(&"urn:xmpp:jingle:transports:dtls-sctp:1"));
    wait_event(
        &mut emulator,
        "occupant-status",
        json!({"nick": nick, "status": "Initializing Call"}),
    )?;

    // Jicofo's offer arrives as an IQ set from the focus occupant; the offer is audio only.
    let sent = wait_event(
        &mut emulator,
        "session-initiate-sent",
        json!({"occupant": nick}),
    )?;
    assert_eq!(sent["contents"], json!(["audio"]), "{sent}");
    let offer = rt.block_on(next_event(&mut conn, "session-initiate", |e| {
        matches!(e, Inbound::IqSet { payload, .. } if payload.attr("action") == Some("session-initiate"))
    }))?;
    let Inbound::IqSet { from, id, payload } = offer else {
        unreachable!()
    };
    assert_eq!(from, "room1@muc.meet.jitsi/focus");
    assert_eq!(payload.attr("sid"), sent["sid"].as_str());
    let contents: Vec<&str> = payload
        .children()
        .filter(|c| c.name() == "content")
        .filter_map(|c| c.attr("name"))
        .collect();
    assert_eq!(contents, ["audio"]);
    conn.reply(&from, &id, Reply::Result(None))?;
    wait_event(
        &mut emulator,
        "session-initiate-answered",
        json!({"occupant": nick, "type": "result"}),
    )?;

    conn.set_status(Some("Connected"))?;
    wait_event(
        &mut emulator,
        "occupant-status",
        json!({"nick": nick, "status": "Connected"}),
    )?;

    conn.leave(&room, None)?;
    wait_event(&mut emulator, "occupant-left", json!({"nick": nick}))?;
    rt.block_on(conn.close());
    emulator.quit()?;
    Ok(())
}

#[test]
fn others_joining_and_leaving_after_us_are_events() -> Result<()> {
    let dir = paths::run_dir("xmpp-occupants")?;
    let prosody = Prosody::start(&dir)?;
    let mut emulator = emulator::start_emulator(
        &prosody,
        &dir,
        &EmulatorOptions::room_with("room2", Vec::new()),
    )?;
    let rt = runtime();
    let mut conn = rt.block_on(Connection::connect(&options(&prosody, &[])))?;
    conn.join(dial_in(room(&prosody, "room2"), &random_endpoint_nick()))?;
    rt.block_on(next_event(&mut conn, "self presence", |e| {
        matches!(e, Inbound::SelfJoined { .. })
    }))?;

    emulator.request(
        "add-participant",
        Participant::tone("bob", 500.0).command_args("room2"),
    )?;
    let joined = rt.block_on(next_event(&mut conn, "bob joining", |e| {
        matches!(e, Inbound::OccupantJoined(_))
    }))?;
    let Inbound::OccupantJoined(bob) = joined else {
        unreachable!()
    };
    assert_eq!(bob.display_name.as_deref(), Some("bob"));
    assert!(!bob.is_jigasi && !bob.is_focus);
    assert!(
        bob.jid
            .as_deref()
            .is_some_and(|j| j.contains("@meet.jitsi/")),
        "{bob:?}"
    );

    emulator.request("remove-participant", json!({"name": "bob"}))?;
    let left = rt.block_on(next_event(&mut conn, "bob leaving", |e| {
        matches!(e, Inbound::OccupantLeft { .. })
    }))?;
    assert_eq!(left, Inbound::OccupantLeft { nick: bob.nick });
    rt.block_on(conn.close());
    emulator.quit()?;
    Ok(())
}

#[test]
fn an_iq_to_nobody_comes_back_as_the_servers_error() -> Result<()> {
    let dir = paths::run_dir("xmpp-iq-error")?;
    let prosody = Prosody::start(&dir)?;
    let rt = runtime();
    let conn = rt.block_on(Connection::connect(&options(&prosody, &[])))?;
    let ping = Element::builder("ping", "urn:xmpp:ping").build();
    let pending = conn.send_iq("nobody@meet.jitsi/gone", IqKind::Get, ping)?;
    let answer = rt.block_on(within("answer", pending))?;
    assert!(
        matches!(&answer, Err(IqError::Remote { condition, .. }) if condition == "service-unavailable" || condition == "item-not-found"),
        "{answer:?}"
    );
    rt.block_on(conn.close());
    Ok(())
}

#[test]
fn stopping_prosody_ends_the_connection_at_once_without_reconnecting() -> Result<()> {
    let dir = paths::run_dir("xmpp-stream-loss")?;
    let mut prosody = Prosody::start(&dir)?;
    let rt = runtime();
    let mut conn = rt.block_on(Connection::connect(&options(&prosody, &[])))?;
    conn.join(dial_in(room(&prosody, "room3"), &random_endpoint_nick()))?;
    rt.block_on(next_event(&mut conn, "self presence", |e| {
        matches!(e, Inbound::SelfJoined { .. })
    }))?;
    let focus = conn.request_conference(&room(&prosody, "room3"))?;

    prosody.stop();
    let ended = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Err(reason) = conn.next().await {
                    return reason;
                }
            }
        })
        .await
    });
    let reason = ended.map_err(|_| anyhow!("no Disconnected within 5 s of Prosody stopping"))?;
    assert!(
        matches!(
            reason,
            Disconnected::ClosedByServer | Disconnected::StreamError(_) | Disconnected::Io(_)
        ),
        "{reason:?}"
    );
    assert!(conn.is_closed());
    // A request in flight learns it too, and the connection stays ended.
    assert_eq!(rt.block_on(focus), Err(IqError::Disconnected));
    assert_eq!(rt.block_on(conn.next()), Err(reason));
    assert!(conn.set_status(Some("x")).is_err());
    Ok(())
}

/// Sends a signal to a process of the lab (by its PID, never by name).
fn signal(pid: u32, sig: &str) -> Result<()> {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill {sig} {pid}: {status}");
    Ok(())
}

#[test]
fn a_server_that_stops_answering_is_detected_by_the_keepalive() -> Result<()> {
    let dir = paths::run_dir("xmpp-keepalive")?;
    let prosody = Prosody::start(&dir)?;
    let mut opts = options(&prosody, &[]);
    opts.timeouts.keepalive = Duration::from_secs(1);
    opts.timeouts.keepalive_answer = Duration::from_secs(1);
    let rt = runtime();
    let mut conn = rt.block_on(Connection::connect(&opts))?;

    // A live server answers the pings: several keep-alive periods pass without an event.
    let quiet = rt
        .block_on(async { tokio::time::timeout(Duration::from_millis(3_500), conn.next()).await });
    assert!(quiet.is_err(), "{quiet:?}");

    // A frozen one (TCP still open, nothing answered) is given up within ping + answer time.
    signal(prosody.pid(), "-STOP")?;
    let ended =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), conn.next()).await });
    signal(prosody.pid(), "-CONT")?;
    assert_eq!(ended.ok(), Some(Err(Disconnected::KeepAliveTimeout)));
    Ok(())
}

#[test]
fn pool_hands_out_a_connection_that_is_already_logged_in() -> Result<()> {
    let dir = paths::run_dir("xmpp-pool")?;
    let prosody = Prosody::start(&dir)?;
    let rt = runtime();
    let _guard = rt.enter();
    let pool = Pool::start(options(&prosody, &[]), 2);
    rt.block_on(within("two warm connections", pool.wait_ready(2)))?;
    assert_eq!(pool.stats().idle, 2);

    let mut conn = rt.block_on(pool.take())?;
    let stats = pool.stats();
    assert_eq!((stats.taken_warm, stats.taken_cold), (1, 0), "{stats:?}");
    assert!(!conn.is_closed());
    // It works: it joins a room.
    conn.join(dial_in(room(&prosody, "room4"), &random_endpoint_nick()))?;
    rt.block_on(next_event(&mut conn, "self presence", |e| {
        matches!(e, Inbound::SelfJoined { .. })
    }))?;
    // And the pool is topped up again in the background.
    rt.block_on(within("a replacement", pool.wait_ready(2)))?;

    rt.block_on(conn.close());
    rt.block_on(pool.shutdown());
    Ok(())
}
