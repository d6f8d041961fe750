//! The driver on a paused clock, with a fake connection: the pauses between attempts, rejoining
//! after a lost stream, and answering dials, as the task really schedules them.

use std::net::{IpAddr, Ipv4Addr};

use tokio::sync::oneshot;

use super::stats::stats_element;
use super::*;
use crate::config::Host;
use crate::xmpp::stanzas::test_support::xml;

const TIMEOUT: Duration = Duration::from_secs(10);
const FOCUS: &str = "jigasibrewery@internal-muc.meet.jitsi/focus";
const DIAL: &str = r#"<dial xmlns="urn:xmpp:rayo:1" to="+15551234567" from="fromnumber">
                        <header name="JvbRoomName" value="room1@muc.meet.jitsi"/></dial>"#;

/// What the driver did with a fake connection.
#[derive(Debug, PartialEq)]
enum Sent {
    Join {
        nick: String,
        presence: Vec<Element>,
    },
    Publish(Vec<Element>),
    Reply {
        to: String,
        id: String,
        reply: Reply,
    },
    Closed,
}

struct FakeLink {
    jid: String,
    sent: mpsc::UnboundedSender<Sent>,
    events: mpsc::UnboundedReceiver<Result<Inbound, Disconnected>>,
}

impl Link for FakeLink {
    fn jid(&self) -> String {
        self.jid.clone()
    }

    fn join(&self, _room: &RoomJid, nick: &str, presence: Vec<Element>) -> Result<(), SendError> {
        let nick = nick.to_string();
        self.sent
            .send(Sent::Join { nick, presence })
            .map_err(|_| SendError::Closed)
    }

    fn publish(&self, _room: &RoomJid, presence: Vec<Element>) -> Result<(), SendError> {
        self.sent
            .send(Sent::Publish(presence))
            .map_err(|_| SendError::Closed)
    }

    fn reply(&self, to: &str, id: &str, reply: Reply) -> Result<(), SendError> {
        let (to, id) = (to.to_string(), id.to_string());
        self.sent
            .send(Sent::Reply { to, id, reply })
            .map_err(|_| SendError::Closed)
    }

    async fn next(&mut self) -> Result<Inbound, Disconnected> {
        self.events
            .recv()
            .await
            .unwrap_or(Err(Disconnected::Closed))
    }

    fn close(self) -> impl Future<Output = ()> + Send {
        let _ = self.sent.send(Sent::Closed);
        async {}
    }
}

/// A login attempt the test answers.
struct Attempt {
    at: Instant,
    answer: oneshot::Sender<Result<FakeLink, ConnectError>>,
}

struct FakeConnector(mpsc::UnboundedSender<Attempt>);

impl Connector for FakeConnector {
    type Link = FakeLink;

    fn connect(&self) -> impl Future<Output = Result<FakeLink, ConnectError>> + Send + 'static {
        let (answer, result) = oneshot::channel();
        let _ = self.0.send(Attempt {
            at: Instant::now(),
            answer,
        });
        async move {
            result.await.unwrap_or(Err(ConnectError::Protocol(
                "the test dropped the attempt".into(),
            )))
        }
    }
}

/// The test's side of one fake connection.
struct Remote {
    sent: mpsc::UnboundedReceiver<Sent>,
    events: mpsc::UnboundedSender<Result<Inbound, Disconnected>>,
}

impl Remote {
    async fn sent(&mut self) -> Sent {
        self.sent.recv().await.expect("the driver dropped the link")
    }

    fn deliver(&self, event: Inbound) {
        self.events.send(Ok(event)).unwrap();
    }

    fn lose(&self, reason: Disconnected) {
        self.events.send(Err(reason)).unwrap();
    }
}

struct Harness {
    brewery: Brewery,
    requests: mpsc::Receiver<RayoRequest>,
    attempts: mpsc::UnboundedReceiver<Attempt>,
    stats: watch::Sender<BreweryStats>,
}

fn server() -> XmppServer {
    XmppServer {
        host: Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        port: 5222,
        id: "shard-a".into(),
    }
}

fn start() -> Harness {
    let (stats, stats_rx) = watch::channel(BreweryStats::default());
    let room = RoomJid::parse("JigasiBrewery@internal-muc.meet.jitsi").unwrap();
    let allowed = room.bare().clone();
    let core = Core::new(room, allowed, None, TIMEOUT, BreweryStats::default());
    let (attempts_tx, attempts) = mpsc::unbounded_channel();
    let (brewery, requests) = spawn(FakeConnector(attempts_tx), core, server(), stats_rx);
    Harness {
        brewery,
        requests,
        attempts,
        stats,
    }
}

fn stats(conferences: usize) -> BreweryStats {
    BreweryStats {
        conferences,
        participants: conferences * 3,
        graceful_shutdown: false,
        stress_level: conferences as f64 / 100.0,
    }
}

impl Harness {
    async fn attempt(&mut self) -> Attempt {
        self.attempts.recv().await.expect("the driver stopped")
    }

    /// Answers the next login attempt with a connection bound to `resource`.
    async fn log_in(&mut self, resource: &str) -> Remote {
        let attempt = self.attempt().await;
        let (sent_tx, sent) = mpsc::unbounded_channel();
        let (events, events_rx) = mpsc::unbounded_channel();
        let link = FakeLink {
            jid: format!("jigasi@auth.meet.jitsi/{resource}"),
            sent: sent_tx,
            events: events_rx,
        };
        let _ = attempt.answer.send(Ok(link));
        Remote { sent, events }
    }

    async fn state(&self, pred: impl Fn(&BreweryState) -> bool) -> BreweryState {
        let mut state = self.brewery.state();
        let seen = state.wait_for(|s| pred(s)).await.unwrap().clone();
        seen
    }

    /// Logged in as `resource` and in the room.
    async fn joined(&mut self, resource: &str) -> Remote {
        let mut remote = self.log_in(resource).await;
        assert!(matches!(remote.sent().await, Sent::Join { .. }));
        remote.deliver(Inbound::SelfJoined {
            occupants: Vec::new(),
        });
        self.state(|s| matches!(s, BreweryState::Joined { .. }))
            .await;
        remote
    }

    async fn dialled(&mut self, remote: &Remote) -> RayoRequest {
        remote.deliver(Inbound::IqSet {
            from: FOCUS.into(),
            id: "d1".into(),
            payload: xml(DIAL),
        });
        self.requests.recv().await.expect("a request")
    }
}

fn refused() -> ConnectError {
    ConnectError::Unreachable {
        server: "127.0.0.1:5222".into(),
        reason: "connection refused".into(),
    }
}

#[tokio::test(start_paused = true)]
async fn failed_logins_are_tried_again_after_1_2_4_8_16_30_30_seconds() {
    let mut h = start();
    let t0 = Instant::now();
    let mut offsets = Vec::new();
    let mut pauses = Vec::new();
    for _ in 0..7 {
        let attempt = h.attempt().await;
        offsets.push((attempt.at - t0).as_secs());
        let _ = attempt.answer.send(Err(refused()));
        let BreweryState::Lost { reason, retry_in } =
            h.state(|s| matches!(s, BreweryState::Lost { .. })).await
        else {
            unreachable!()
        };
        assert!(reason.contains("connection refused"), "{reason}");
        pauses.push(retry_in.as_secs());
    }
    let attempt = h.attempt().await;
    offsets.push((attempt.at - t0).as_secs());
    assert_eq!(pauses, [1, 2, 4, 8, 16, 30, 30]);
    assert_eq!(offsets, [0, 1, 3, 7, 15, 31, 61, 91]);
}

#[tokio::test(start_paused = true)]
async fn lost_stream_is_rejoined_after_one_second_with_the_stats_of_the_moment() {
    let mut h = start();
    let mut remote = h.log_in("r1").await;
    assert_eq!(
        remote.sent().await,
        Sent::Join {
            nick: "r1".into(),
            presence: vec![stats_element(&BreweryStats::default(), None)],
        }
    );
    remote.deliver(Inbound::SelfJoined {
        occupants: Vec::new(),
    });
    h.state(|s| s == &BreweryState::Joined { nick: "r1".into() })
        .await;
    h.stats.send_replace(stats(1));
    assert_eq!(
        remote.sent().await,
        Sent::Publish(vec![stats_element(&stats(1), None)])
    );

    remote.lose(Disconnected::ClosedByServer);
    let lost = h.state(|s| matches!(s, BreweryState::Lost { .. })).await;
    let lost_at = Instant::now();
    assert_eq!(
        lost,
        BreweryState::Lost {
            reason: Disconnected::ClosedByServer.to_string(),
            retry_in: Duration::from_secs(1),
        }
    );
    h.stats.send_replace(stats(2));
    let mut remote = h.log_in("r2").await;
    assert_eq!(Instant::now() - lost_at, Duration::from_secs(1));
    assert_eq!(
        remote.sent().await,
        Sent::Join {
            nick: "r2".into(),
            presence: vec![stats_element(&stats(2), None)],
        }
    );
}

#[tokio::test(start_paused = true)]
async fn accepted_dial_is_answered_with_its_ref() {
    let mut h = start();
    let mut remote = h.joined("r1").await;
    let request = h.dialled(&remote).await;
    assert_eq!(request.from, FOCUS);
    assert_eq!(request.server, server());
    assert_eq!(request.dial.room.to_string(), "room1@muc.meet.jitsi");
    let uri = rayo::ref_uri(&request.dial.room, "1a2b3c4d").unwrap();
    assert_eq!(request.accept(uri), Ok(()));
    assert_eq!(
        remote.sent().await,
        Sent::Reply {
            to: FOCUS.into(),
            id: "d1".into(),
            reply: Reply::Result(Some(xml(
                r#"<ref xmlns="urn:xmpp:rayo:1" uri="xmpp:room1@muc.meet.jitsi/1a2b3c4d"/>"#
            ))),
        }
    );
}

#[tokio::test(start_paused = true)]
async fn unanswered_dial_gets_internal_server_error_after_the_timeout_and_the_call_learns_it() {
    let mut h = start();
    let mut remote = h.joined("r1").await;
    let request = h.dialled(&remote).await;
    let asked = Instant::now();
    let Sent::Reply {
        to,
        id,
        reply: Reply::Error(error),
    } = remote.sent().await
    else {
        panic!("not an error")
    };
    assert_eq!(Instant::now() - asked, TIMEOUT);
    assert_eq!((to.as_str(), id.as_str()), (FOCUS, "d1"));
    assert_eq!(error.condition, ErrorCondition::InternalServerError);
    assert_eq!(request.accept("xmpp:late".into()), Err(RayoExpired));
}

#[tokio::test(start_paused = true)]
async fn rejected_or_dropped_dials_are_answered_at_once() {
    let mut h = start();
    let mut remote = h.joined("r1").await;
    let request = h.dialled(&remote).await;
    assert_eq!(
        request.reject(ErrorCondition::NotAcceptable, "no SIP account"),
        Ok(())
    );
    let Sent::Reply {
        reply: Reply::Error(error),
        ..
    } = remote.sent().await
    else {
        panic!()
    };
    assert_eq!(
        error,
        ErrorReply::new(ErrorCondition::NotAcceptable).with_text("no SIP account")
    );
    let asked = Instant::now();
    drop(h.dialled(&remote).await);
    let Sent::Reply {
        reply: Reply::Error(error),
        ..
    } = remote.sent().await
    else {
        panic!()
    };
    assert_eq!(Instant::now(), asked);
    assert_eq!(error.condition, ErrorCondition::InternalServerError);
}

#[tokio::test(start_paused = true)]
async fn dial_without_a_taker_gets_service_unavailable() {
    let mut h = start();
    let mut remote = h.joined("r1").await;
    h.requests.close();
    remote.deliver(Inbound::IqSet {
        from: FOCUS.into(),
        id: "d1".into(),
        payload: xml(DIAL),
    });
    let Sent::Reply {
        reply: Reply::Error(error),
        ..
    } = remote.sent().await
    else {
        panic!()
    };
    assert_eq!(error.condition, ErrorCondition::ServiceUnavailable);
}

#[tokio::test(start_paused = true)]
async fn shutdown_answers_waiting_dials_then_closes_and_stops() {
    let mut h = start();
    let mut remote = h.joined("r1").await;
    let request = h.dialled(&remote).await;
    let state = h.brewery.state();
    h.brewery.shutdown().await;
    let Sent::Reply {
        reply: Reply::Error(error),
        ..
    } = remote.sent().await
    else {
        panic!()
    };
    assert_eq!(error.condition, ErrorCondition::ServiceUnavailable);
    assert_eq!(remote.sent().await, Sent::Closed);
    assert_eq!(*state.borrow(), BreweryState::Stopped);
    assert_eq!(request.accept("xmpp:late".into()), Err(RayoExpired));
}
