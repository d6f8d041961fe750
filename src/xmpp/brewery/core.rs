//! The sans-IO core of the brewery: events of the control connection, stats changes, answers and
//! the time in; what to send, requests to hand out and state changes out. The driver in
//! `brewery/mod.rs` only carries them out.
//!
//! Rules (jigasi-behaviour.md 2.2, 2.3): join the brewery room with the stats presence as soon as
//! logged in; publish again only when the stats differ from what the room last saw; take Rayo
//! dials only from the allowed JID and answer bad ones here; answer a request nobody answered
//! within the timeout with `internal-server-error`; after a lost stream or a failed login, log in
//! again after a pause, and after a refused join or a lost room, join again after a pause (each
//! 1 s doubling to 30 s; the join pauses start again at every login, both once in the room).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::minidom::Element;

use super::stats::{stats_element, BreweryStats};
use super::BreweryState;
use crate::xmpp::address::{random_endpoint_nick, RoomJid};
use crate::xmpp::backoff::Backoff;
use crate::xmpp::error::{ConnectError, Disconnected};
use crate::xmpp::inbound::Inbound;
use crate::xmpp::rayo::{self, RayoDial};
use crate::xmpp::stanzas::{ErrorCondition, ErrorReply, Reply};

const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub(super) enum Input {
    /// Logged in as `jid` (full: its resource becomes our nick in the room).
    Connected {
        jid: String,
    },
    ConnectFailed(ConnectError),
    Inbound(Inbound),
    Disconnected(Disconnected),
    Stats(BreweryStats),
    /// The call answered request `key`.
    Answer {
        key: u64,
        reply: Reply,
    },
    /// The time returned by `poll_timeout` has come.
    Timeout,
}

#[derive(Debug)]
pub(super) enum Output {
    /// Log in (the answer comes as `Connected` or `ConnectFailed`).
    Connect,
    Join {
        room: RoomJid,
        nick: String,
        presence: Vec<Element>,
    },
    Publish {
        room: RoomJid,
        presence: Vec<Element>,
    },
    Reply {
        to: String,
        id: String,
        reply: Reply,
    },
    /// A valid dial from the allowed JID, to hand to whoever starts calls.
    Request(Dialed),
    State(BreweryState),
}

#[derive(Debug)]
pub(super) struct Dialed {
    pub key: u64,
    pub from: String,
    pub dial: RayoDial,
    pub settled: Settled,
}

/// Whoever claims it first answers a request: the call (accept, reject) or the brewery (timeout,
/// lost stream, shutdown). The loser learns it, so a call never goes on with a dial that was
/// already answered with an error (Jicofo then tries another instance).
#[derive(Debug, Clone, Default)]
pub(super) struct Settled(Arc<AtomicBool>);

impl Settled {
    pub(super) fn claim(&self) -> bool {
        self.0
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }
}

#[derive(Debug)]
enum Link {
    /// Log in again at `retry_at`.
    Down {
        retry_at: Instant,
    },
    Connecting,
    Up {
        nick: String,
        room: Room,
        /// The stats of our last presence to the room.
        sent: BreweryStats,
    },
}

#[derive(Debug)]
enum Room {
    Joining {
        deadline: Instant,
    },
    Joined,
    /// Refused, removed, or no answer to the join: join again at `retry_at`.
    Waiting {
        retry_at: Instant,
    },
}

#[derive(Debug)]
struct Pending {
    from: String,
    id: String,
    /// `None` once the call has claimed it: its answer is on the way.
    deadline: Option<Instant>,
    settled: Settled,
}

#[derive(Debug)]
pub(super) struct Core {
    room: RoomJid,
    allowed: BareJid,
    region: Option<String>,
    /// For the room's answer to a join, and for a call's answer to a dial.
    timeout: Duration,
    stats: BreweryStats,
    link: Link,
    /// Pauses between logins: a failed login or a lost stream. Reset once in the room.
    connect_backoff: Backoff,
    /// Pauses between joins on one connection (the room refused, or is not there yet: where
    /// only Jicofo may create it, the gateway waits for Jicofo). Reset by a new login.
    join_backoff: Backoff,
    pending: HashMap<u64, Pending>,
    next_key: u64,
    out: VecDeque<Output>,
}

impl Core {
    /// Starts by logging in.
    pub(super) fn new(
        room: RoomJid,
        allowed: BareJid,
        region: Option<String>,
        timeout: Duration,
        stats: BreweryStats,
    ) -> Core {
        let mut core = Core {
            room,
            allowed,
            region,
            timeout,
            stats,
            link: Link::Connecting,
            connect_backoff: Backoff::new(FIRST_RETRY, LAST_RETRY),
            join_backoff: Backoff::new(FIRST_RETRY, LAST_RETRY),
            pending: HashMap::new(),
            next_key: 0,
            out: VecDeque::new(),
        };
        core.out.push_back(Output::State(BreweryState::Connecting));
        core.out.push_back(Output::Connect);
        core
    }

    pub(super) fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        let link = match &self.link {
            Link::Down { retry_at } => Some(*retry_at),
            Link::Up {
                room: Room::Joining { deadline },
                ..
            } => Some(*deadline),
            Link::Up {
                room: Room::Waiting { retry_at },
                ..
            } => Some(*retry_at),
            _ => None,
        };
        let requests = self.pending.values().filter_map(|p| p.deadline);
        link.into_iter().chain(requests).min()
    }

    pub(super) fn handle_input(&mut self, now: Instant, input: Input) {
        match input {
            Input::Connected { jid } => self.connected(now, &jid),
            Input::ConnectFailed(error) => {
                if matches!(self.link, Link::Connecting) {
                    self.down(now, format!("login failed: {error}"));
                }
            }
            Input::Disconnected(reason) => {
                // The requests' IQs belonged to that stream: nobody can answer them now.
                for (_, p) in self.pending.drain() {
                    p.settled.claim();
                }
                self.down(now, reason.to_string());
            }
            Input::Inbound(event) => self.inbound(now, event),
            Input::Stats(stats) => {
                self.stats = stats;
                self.publish_if_changed();
            }
            Input::Answer { key, reply } => {
                if let Some(p) = self.pending.remove(&key) {
                    self.reply(&p.from, &p.id, reply);
                }
            }
            Input::Timeout => self.timeout(now),
        }
    }

    /// Answers what is still pending (`service-unavailable`): the brewery is going away.
    pub(super) fn stop(&mut self) {
        let pending: Vec<Pending> = self.pending.drain().map(|(_, p)| p).collect();
        for p in pending {
            if p.settled.claim() {
                let error = ErrorReply::new(ErrorCondition::ServiceUnavailable)
                    .with_text("the gateway is shutting down");
                self.reply(&p.from, &p.id, Reply::Error(error));
            }
        }
        self.out.push_back(Output::State(BreweryState::Stopped));
    }

    fn connected(&mut self, now: Instant, jid: &str) {
        if !matches!(self.link, Link::Connecting) {
            return;
        }
        // jigasi joins with the bound resource (AUTO_GENERATE_RESOURCE); a bound JID always has
        // one, the fallback is only for a server that breaks that rule.
        let nick = Jid::new(jid)
            .ok()
            .and_then(|j| j.resource().map(|r| r.to_string()))
            .unwrap_or_else(random_endpoint_nick);
        self.link = Link::Up {
            nick,
            room: Room::Joined,
            sent: self.stats.clone(),
        };
        self.join_backoff.reset();
        self.join(now);
    }

    fn join(&mut self, now: Instant) {
        let presence = vec![self.stats_element()];
        let Link::Up { nick, room, sent } = &mut self.link else {
            return;
        };
        *room = Room::Joining {
            deadline: now + self.timeout,
        };
        *sent = self.stats.clone();
        self.out.push_back(Output::Join {
            room: self.room.clone(),
            nick: nick.clone(),
            presence,
        });
    }

    fn stats_element(&self) -> Element {
        stats_element(&self.stats, self.region.as_deref())
    }

    /// No connection: log in again after a pause.
    fn down(&mut self, now: Instant, reason: String) {
        let retry_in = self.connect_backoff.next_delay();
        tracing::warn!(%reason, ?retry_in, "brewery: not connected");
        self.link = Link::Down {
            retry_at: now + retry_in,
        };
        self.out
            .push_back(Output::State(BreweryState::Lost { reason, retry_in }));
    }

    /// Connected but not in the room: join again after a pause.
    fn room_lost(&mut self, now: Instant, reason: String) {
        let Link::Up { room, .. } = &mut self.link else {
            return;
        };
        let retry_in = self.join_backoff.next_delay();
        tracing::warn!(%reason, ?retry_in, "brewery: not in the room");
        *room = Room::Waiting {
            retry_at: now + retry_in,
        };
        self.out
            .push_back(Output::State(BreweryState::Lost { reason, retry_in }));
    }

    fn inbound(&mut self, now: Instant, event: Inbound) {
        let Link::Up { nick, room, .. } = &mut self.link else {
            return;
        };
        match event {
            Inbound::SelfJoined { .. } => {
                if matches!(room, Room::Joined) {
                    return;
                }
                *room = Room::Joined;
                let nick = nick.clone();
                self.connect_backoff.reset();
                self.join_backoff.reset();
                tracing::info!(room = %self.room, %nick, "brewery: joined");
                self.out
                    .push_back(Output::State(BreweryState::Joined { nick }));
                self.publish_if_changed();
            }
            Inbound::JoinFailed(error) => {
                self.room_lost(now, format!("the brewery room refused the join: {error}"))
            }
            Inbound::Kicked { reason } => self.room_lost(
                now,
                format!(
                    "removed from the brewery room ({})",
                    reason.unwrap_or_default()
                ),
            ),
            Inbound::RoomDestroyed { reason, .. } => self.room_lost(
                now,
                format!(
                    "the brewery room was destroyed ({})",
                    reason.unwrap_or_default()
                ),
            ),
            Inbound::IqSet { from, id, payload } => self.iq_set(now, from, id, payload),
            // The connection answers disco#info and ping itself; nothing else is offered.
            Inbound::IqGet { from, id, .. } => {
                let error = ErrorReply::new(ErrorCondition::ServiceUnavailable);
                self.reply(&from, &id, Reply::Error(error));
            }
            _ => {}
        }
    }

    fn iq_set(&mut self, now: Instant, from: String, id: String, payload: Element) {
        if !rayo::is_dial(&payload) {
            let error = ErrorReply::new(ErrorCondition::ServiceUnavailable);
            self.reply(&from, &id, Reply::Error(error));
            return;
        }
        if !self.is_allowed(&from) {
            tracing::warn!(%from, allowed = %self.allowed, "brewery: dial from a sender not allowed");
            let error = ErrorReply::new(ErrorCondition::Forbidden)
                .with_text("not allowed to request calls from this gateway");
            self.reply(&from, &id, Reply::Error(error));
            return;
        }
        let dial = match RayoDial::parse(&payload) {
            Ok(dial) => dial,
            Err(error) => {
                tracing::warn!(%from, %error, "brewery: dial refused");
                self.reply(&from, &id, Reply::Error(error.reply()));
                return;
            }
        };
        if self.stats.graceful_shutdown {
            tracing::info!(%from, to = %dial.to, "brewery: dial refused while draining");
            let error = ErrorReply::new(ErrorCondition::ServiceUnavailable)
                .with_text("the gateway is shutting down");
            self.reply(&from, &id, Reply::Error(error));
            return;
        }
        tracing::info!(%from, to = %dial.to, room = %dial.room, "brewery: dial");
        self.next_key += 1;
        let key = self.next_key;
        let settled = Settled::default();
        self.pending.insert(
            key,
            Pending {
                from: from.clone(),
                id,
                deadline: Some(now + self.timeout),
                settled: settled.clone(),
            },
        );
        self.out.push_back(Output::Request(Dialed {
            key,
            from,
            dial,
            settled,
        }));
    }

    /// The sender's bare JID is the allowed one (both nodeprepped: the MUC writes the brewery
    /// room in lower case whatever the settings say).
    fn is_allowed(&self, from: &str) -> bool {
        Jid::new(from).is_ok_and(|j| j.to_bare() == self.allowed)
    }

    fn reply(&mut self, to: &str, id: &str, reply: Reply) {
        // A request without 'from' came from our own server, which sends us no requests.
        if to.is_empty() {
            return;
        }
        self.out.push_back(Output::Reply {
            to: to.to_string(),
            id: id.to_string(),
            reply,
        });
    }

    fn publish_if_changed(&mut self) {
        let presence = self.stats_element();
        let Link::Up {
            room: Room::Joined,
            sent,
            ..
        } = &mut self.link
        else {
            // Not in the room: the next join carries the current stats.
            return;
        };
        if *sent == self.stats {
            return;
        }
        *sent = self.stats.clone();
        self.out.push_back(Output::Publish {
            room: self.room.clone(),
            presence: vec![presence],
        });
    }

    fn timeout(&mut self, now: Instant) {
        match &self.link {
            Link::Down { retry_at } if *retry_at <= now => {
                self.link = Link::Connecting;
                self.out.push_back(Output::State(BreweryState::Connecting));
                self.out.push_back(Output::Connect);
            }
            Link::Up {
                room: Room::Joining { deadline },
                ..
            } if *deadline <= now => {
                let reason = format!("no answer from the brewery room within {:?}", self.timeout);
                self.room_lost(now, reason);
            }
            Link::Up {
                room: Room::Waiting { retry_at },
                ..
            } if *retry_at <= now => {
                self.out.push_back(Output::State(BreweryState::Connecting));
                self.join(now);
            }
            _ => {}
        }
        let due: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline.is_some_and(|d| d <= now))
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            let Some(p) = self.pending.get_mut(&key) else {
                continue;
            };
            if !p.settled.claim() {
                // The call answered just now; its answer is on the way.
                p.deadline = None;
                continue;
            }
            let Some(p) = self.pending.remove(&key) else {
                continue;
            };
            tracing::warn!(from = %p.from, timeout = ?self.timeout, "brewery: dial not answered in time");
            let error = ErrorReply::new(ErrorCondition::InternalServerError).with_text(format!(
                "the call did not join its room within {} s",
                self.timeout.as_secs()
            ));
            self.reply(&p.from, &p.id, Reply::Error(error));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xmpp::stanzas::test_support::xml;
    use crate::xmpp::JoinError;

    const ROOM: &str = "jigasibrewery@internal-muc.meet.jitsi";
    const FOCUS: &str = "jigasibrewery@internal-muc.meet.jitsi/focus";
    const TIMEOUT: Duration = Duration::from_secs(10);

    fn core() -> Core {
        let room = RoomJid::parse("JigasiBrewery@internal-muc.meet.jitsi").unwrap();
        let allowed = BareJid::new("JigasiBrewery@internal-muc.meet.jitsi").unwrap();
        Core::new(room, allowed, None, TIMEOUT, BreweryStats::default())
    }

    fn outputs(core: &mut Core) -> Vec<Output> {
        std::iter::from_fn(|| core.poll_output()).collect()
    }

    fn stats(conferences: usize) -> BreweryStats {
        BreweryStats {
            conferences,
            participants: conferences * 2,
            stress_level: conferences as f64 / 100.0,
            graceful_shutdown: false,
        }
    }

    /// A core logged in as `jigasi@auth.meet.jitsi/abc123` and in the room.
    fn joined(now: Instant) -> Core {
        let mut c = core();
        c.handle_input(
            now,
            Input::Connected {
                jid: "jigasi@auth.meet.jitsi/abc123".into(),
            },
        );
        c.handle_input(
            now,
            Input::Inbound(Inbound::SelfJoined {
                occupants: Vec::new(),
            }),
        );
        outputs(&mut c);
        c
    }

    fn dial(from: &str, id: &str, payload: &str) -> Input {
        Input::Inbound(Inbound::IqSet {
            from: from.into(),
            id: id.into(),
            payload: xml(payload),
        })
    }

    const DIAL: &str = r#"<dial xmlns="urn:xmpp:rayo:1" to="+15551234567" from="fromnumber">
                            <header name="JvbRoomName" value="room1@muc.meet.jitsi"/></dial>"#;

    fn error_of(output: &Output) -> (&str, &str, ErrorCondition, Option<&str>) {
        match output {
            Output::Reply {
                to,
                id,
                reply: Reply::Error(e),
            } => (to, id, e.condition, e.text.as_deref()),
            other => panic!("not an error reply: {other:?}"),
        }
    }

    #[test]
    fn logs_in_then_joins_with_the_bound_resource_as_nick_and_the_stats() {
        let now = Instant::now();
        let mut c = core();
        assert!(matches!(
            &outputs(&mut c)[..],
            [Output::State(BreweryState::Connecting), Output::Connect]
        ));
        c.handle_input(now, Input::Stats(stats(2)));
        assert!(outputs(&mut c).is_empty());
        c.handle_input(
            now,
            Input::Connected {
                jid: "jigasi@auth.meet.jitsi/abc123".into(),
            },
        );
        let out = outputs(&mut c);
        let [Output::Join {
            room,
            nick,
            presence,
        }] = &out[..]
        else {
            panic!("{out:?}")
        };
        assert_eq!(room.to_string(), ROOM);
        assert_eq!(nick, "abc123");
        assert_eq!(presence, &vec![stats_element(&stats(2), None)]);
        c.handle_input(
            now,
            Input::Inbound(Inbound::SelfJoined {
                occupants: Vec::new(),
            }),
        );
        assert!(matches!(
            &outputs(&mut c)[..],
            [Output::State(BreweryState::Joined { nick })] if nick == "abc123"
        ));
    }

    #[test]
    fn stats_are_published_on_change_only_and_only_once_in_the_room() {
        let now = Instant::now();
        let mut c = joined(now);
        c.handle_input(now, Input::Stats(BreweryStats::default()));
        assert!(outputs(&mut c).is_empty(), "same stats: nothing to say");
        c.handle_input(now, Input::Stats(stats(1)));
        let out = outputs(&mut c);
        assert!(
            matches!(&out[..], [Output::Publish { presence, .. }]
                if presence == &vec![stats_element(&stats(1), None)]),
            "{out:?}"
        );
        c.handle_input(now, Input::Stats(stats(1)));
        assert!(outputs(&mut c).is_empty());
    }

    #[test]
    fn stats_that_changed_while_joining_follow_the_join() {
        let now = Instant::now();
        let mut c = core();
        c.handle_input(
            now,
            Input::Connected {
                jid: "jigasi@auth.meet.jitsi/abc123".into(),
            },
        );
        outputs(&mut c);
        c.handle_input(now, Input::Stats(stats(4)));
        assert!(
            outputs(&mut c).is_empty(),
            "no update before the join is answered"
        );
        c.handle_input(
            now,
            Input::Inbound(Inbound::SelfJoined {
                occupants: Vec::new(),
            }),
        );
        let out = outputs(&mut c);
        assert!(
            matches!(&out[..], [Output::State(BreweryState::Joined { .. }), Output::Publish { presence, .. }]
                if presence == &vec![stats_element(&stats(4), None)]),
            "{out:?}"
        );
    }

    #[test]
    fn dial_from_the_brewery_focus_is_handed_out_and_its_answer_goes_back() {
        let now = Instant::now();
        let mut c = joined(now);
        // The MUC writes the room in lower case; the settings may not.
        c.handle_input(now, dial(FOCUS, "d1", DIAL));
        let out = outputs(&mut c);
        let [Output::Request(dialed)] = &out[..] else {
            panic!("{out:?}")
        };
        assert_eq!(dialed.from, FOCUS);
        assert_eq!(dialed.dial.to, "+15551234567");
        assert_eq!(dialed.dial.room.to_string(), "room1@muc.meet.jitsi");
        assert_eq!(c.poll_timeout(), Some(now + TIMEOUT));
        let reply = Reply::Result(Some(rayo::ref_element(
            "xmpp:room1@muc.meet.jitsi/1a2b3c4d",
        )));
        assert!(dialed.settled.claim());
        c.handle_input(
            now,
            Input::Answer {
                key: dialed.key,
                reply: reply.clone(),
            },
        );
        let out = outputs(&mut c);
        assert!(
            matches!(&out[..], [Output::Reply { to, id, reply: r }] if to == FOCUS && id == "d1" && r == &reply),
            "{out:?}"
        );
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn allowed_jid_is_compared_bare_and_case_insensitively_in_the_node() {
        let now = Instant::now();
        let mut c = joined(now);
        c.handle_input(
            now,
            dial("JIGASIBREWERY@internal-muc.meet.jitsi/other", "d1", DIAL),
        );
        assert!(matches!(&outputs(&mut c)[..], [Output::Request(_)]));
        for from in [
            "alice@meet.jitsi/web",
            "room1@muc.meet.jitsi/focus",
            "internal-muc.meet.jitsi",
            "",
        ] {
            c.handle_input(now, dial(from, "d2", DIAL));
            let out = outputs(&mut c);
            if from.is_empty() {
                assert!(out.is_empty());
                continue;
            }
            assert_eq!(
                error_of(&out[0]),
                (
                    from,
                    "d2",
                    ErrorCondition::Forbidden,
                    Some("not allowed to request calls from this gateway")
                )
            );
        }
    }

    #[test]
    fn bad_dials_are_answered_here_and_never_handed_out() {
        let now = Instant::now();
        let mut c = joined(now);
        c.handle_input(
            now,
            dial(
                FOCUS,
                "d1",
                r#"<dial xmlns="urn:xmpp:rayo:1" to="100" from="fromnumber"/>"#,
            ),
        );
        let out = outputs(&mut c);
        assert_eq!(
            error_of(&out[0]),
            (
                FOCUS,
                "d1",
                ErrorCondition::BadRequest,
                Some("No JvbRoomName header found")
            )
        );
        c.handle_input(
            now,
            dial(
                FOCUS,
                "d2",
                r#"<dial xmlns="urn:xmpp:rayo:1" to="100">
                     <header name="JvbRoomName" value="not a room"/></dial>"#,
            ),
        );
        let out = outputs(&mut c);
        assert_eq!(error_of(&out[0]).2, ErrorCondition::BadRequest);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn other_requests_and_queries_get_service_unavailable() {
        let now = Instant::now();
        let mut c = joined(now);
        c.handle_input(
            now,
            dial(FOCUS, "h1", r#"<hangup xmlns="urn:xmpp:rayo:1"/>"#),
        );
        c.handle_input(
            now,
            Input::Inbound(Inbound::IqGet {
                from: "alice@meet.jitsi/web".into(),
                id: "v1".into(),
                payload: xml(r#"<query xmlns="jabber:iq:version"/>"#),
            }),
        );
        let out = outputs(&mut c);
        assert_eq!(
            error_of(&out[0]),
            (FOCUS, "h1", ErrorCondition::ServiceUnavailable, None)
        );
        assert_eq!(
            error_of(&out[1]),
            (
                "alice@meet.jitsi/web",
                "v1",
                ErrorCondition::ServiceUnavailable,
                None
            )
        );
    }

    #[test]
    fn dials_are_refused_while_draining() {
        let now = Instant::now();
        let mut c = joined(now);
        c.handle_input(
            now,
            Input::Stats(BreweryStats {
                graceful_shutdown: true,
                ..BreweryStats::default()
            }),
        );
        outputs(&mut c);
        c.handle_input(now, dial(FOCUS, "d1", DIAL));
        let out = outputs(&mut c);
        assert_eq!(
            error_of(&out[0]),
            (
                FOCUS,
                "d1",
                ErrorCondition::ServiceUnavailable,
                Some("the gateway is shutting down")
            )
        );
    }

    #[test]
    fn unanswered_dial_gets_internal_server_error_at_the_timeout_and_a_late_answer_loses() {
        let now = Instant::now();
        let mut c = joined(now);
        c.handle_input(now, dial(FOCUS, "d1", DIAL));
        let Some(Output::Request(dialed)) = c.poll_output() else {
            panic!()
        };
        c.handle_input(now + TIMEOUT - Duration::from_millis(1), Input::Timeout);
        assert!(outputs(&mut c).is_empty());
        c.handle_input(now + TIMEOUT, Input::Timeout);
        let out = outputs(&mut c);
        assert_eq!(
            error_of(&out[0]),
            (
                FOCUS,
                "d1",
                ErrorCondition::InternalServerError,
                Some("the call did not join its room within 10 s")
            )
        );
        assert!(
            !dialed.settled.claim(),
            "the call must learn it is too late"
        );
        c.handle_input(
            now + TIMEOUT,
            Input::Answer {
                key: dialed.key,
                reply: Reply::Result(None),
            },
        );
        assert!(outputs(&mut c).is_empty());
    }

    #[test]
    fn answer_claimed_just_before_the_timeout_wins() {
        let now = Instant::now();
        let mut c = joined(now);
        c.handle_input(now, dial(FOCUS, "d1", DIAL));
        let Some(Output::Request(dialed)) = c.poll_output() else {
            panic!()
        };
        assert!(dialed.settled.claim());
        c.handle_input(now + TIMEOUT, Input::Timeout);
        assert!(outputs(&mut c).is_empty());
        assert_eq!(c.poll_timeout(), None);
        c.handle_input(
            now + TIMEOUT,
            Input::Answer {
                key: dialed.key,
                reply: Reply::Result(None),
            },
        );
        assert!(matches!(
            &outputs(&mut c)[..],
            [Output::Reply {
                reply: Reply::Result(None),
                ..
            }]
        ));
    }

    #[test]
    fn lost_stream_expires_requests_and_logs_in_again_after_a_pause_with_the_current_stats() {
        let now = Instant::now();
        let mut c = joined(now);
        c.handle_input(now, dial(FOCUS, "d1", DIAL));
        let Some(Output::Request(dialed)) = c.poll_output() else {
            panic!()
        };
        c.handle_input(now, Input::Disconnected(Disconnected::ClosedByServer));
        let out = outputs(&mut c);
        assert!(
            matches!(&out[..], [Output::State(BreweryState::Lost { retry_in, .. })] if *retry_in == FIRST_RETRY),
            "{out:?}"
        );
        assert!(!dialed.settled.claim());
        c.handle_input(now, Input::Stats(stats(7)));
        assert!(outputs(&mut c).is_empty());
        assert_eq!(c.poll_timeout(), Some(now + FIRST_RETRY));
        c.handle_input(now + FIRST_RETRY, Input::Timeout);
        assert!(matches!(
            &outputs(&mut c)[..],
            [Output::State(BreweryState::Connecting), Output::Connect]
        ));
        c.handle_input(
            now + FIRST_RETRY,
            Input::Connected {
                jid: "jigasi@auth.meet.jitsi/def456".into(),
            },
        );
        let out = outputs(&mut c);
        assert!(
            matches!(&out[..], [Output::Join { nick, presence, .. }]
                if nick == "def456" && presence == &vec![stats_element(&stats(7), None)]),
            "{out:?}"
        );
    }

    #[test]
    fn refused_join_is_tried_again_after_growing_pauses_on_the_same_connection() {
        let t0 = Instant::now();
        let mut c = core();
        c.handle_input(
            t0,
            Input::Connected {
                jid: "jigasi@auth.meet.jitsi/abc123".into(),
            },
        );
        outputs(&mut c);
        let mut now = t0;
        for expected in [1, 2, 4] {
            c.handle_input(
                now,
                Input::Inbound(Inbound::JoinFailed(JoinError::Other {
                    condition: "not-allowed".into(),
                    text: None,
                })),
            );
            let out = outputs(&mut c);
            assert!(
                matches!(&out[..], [Output::State(BreweryState::Lost { retry_in, .. })]
                    if *retry_in == Duration::from_secs(expected)),
                "{out:?}"
            );
            now += Duration::from_secs(expected);
            assert_eq!(c.poll_timeout(), Some(now));
            c.handle_input(now, Input::Timeout);
            assert!(matches!(
                &outputs(&mut c)[..],
                [Output::State(BreweryState::Connecting), Output::Join { .. }]
            ));
        }
        // In at last: the next trouble pauses 1 s again.
        c.handle_input(
            now,
            Input::Inbound(Inbound::SelfJoined {
                occupants: Vec::new(),
            }),
        );
        outputs(&mut c);
        c.handle_input(now, Input::Inbound(Inbound::Kicked { reason: None }));
        assert!(matches!(
            &outputs(&mut c)[..],
            [Output::State(BreweryState::Lost { retry_in, .. })] if *retry_in == FIRST_RETRY
        ));
    }

    #[test]
    fn join_pauses_start_again_at_each_login_whatever_the_login_pauses_reached() {
        let mut now = Instant::now();
        let mut c = core();
        outputs(&mut c);
        for _ in 0..3 {
            c.handle_input(now, Input::ConnectFailed(ConnectError::NoStartTls));
            let Some(Output::State(BreweryState::Lost { retry_in, .. })) = c.poll_output() else {
                panic!()
            };
            now += retry_in;
            c.handle_input(now, Input::Timeout);
            outputs(&mut c);
        }
        c.handle_input(
            now,
            Input::Connected {
                jid: "jigasi@auth.meet.jitsi/abc123".into(),
            },
        );
        outputs(&mut c);
        // After a restart the room is gone until Jicofo makes it again.
        c.handle_input(
            now,
            Input::Inbound(Inbound::JoinFailed(JoinError::Other {
                condition: "not-allowed".into(),
                text: Some("Room creation is restricted".into()),
            })),
        );
        assert!(matches!(
            &outputs(&mut c)[..],
            [Output::State(BreweryState::Lost { retry_in, .. })] if *retry_in == FIRST_RETRY
        ));
        // A stream lost before getting in goes on with the login pauses.
        c.handle_input(now, Input::Disconnected(Disconnected::ClosedByServer));
        assert!(matches!(
            &outputs(&mut c)[..],
            [Output::State(BreweryState::Lost { retry_in, .. })] if *retry_in == Duration::from_secs(8)
        ));
    }

    #[test]
    fn join_without_an_answer_counts_as_refused() {
        let now = Instant::now();
        let mut c = core();
        c.handle_input(
            now,
            Input::Connected {
                jid: "jigasi@auth.meet.jitsi/abc123".into(),
            },
        );
        outputs(&mut c);
        assert_eq!(c.poll_timeout(), Some(now + TIMEOUT));
        c.handle_input(now + TIMEOUT, Input::Timeout);
        assert!(matches!(
            &outputs(&mut c)[..],
            [Output::State(BreweryState::Lost { retry_in, .. })] if *retry_in == FIRST_RETRY
        ));
    }

    #[test]
    fn failed_logins_pause_longer_each_time_up_to_thirty_seconds() {
        let mut now = Instant::now();
        let mut c = core();
        outputs(&mut c);
        let mut pauses = Vec::new();
        for _ in 0..7 {
            c.handle_input(
                now,
                Input::ConnectFailed(ConnectError::Unreachable {
                    server: "127.0.0.1:5222".into(),
                    reason: "connection refused".into(),
                }),
            );
            let Some(Output::State(BreweryState::Lost { retry_in, .. })) = c.poll_output() else {
                panic!()
            };
            pauses.push(retry_in.as_secs());
            now += retry_in;
            c.handle_input(now, Input::Timeout);
            outputs(&mut c);
        }
        assert_eq!(pauses, [1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn stop_answers_pending_dials_and_ends_in_stopped() {
        let now = Instant::now();
        let mut c = joined(now);
        c.handle_input(now, dial(FOCUS, "d1", DIAL));
        let Some(Output::Request(dialed)) = c.poll_output() else {
            panic!()
        };
        c.stop();
        let out = outputs(&mut c);
        assert_eq!(
            error_of(&out[0]),
            (
                FOCUS,
                "d1",
                ErrorCondition::ServiceUnavailable,
                Some("the gateway is shutting down")
            )
        );
        assert!(matches!(out[1], Output::State(BreweryState::Stopped)));
        assert!(!dialed.settled.claim());
    }
}
