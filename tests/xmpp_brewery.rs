//! `xmpp::Brewery` against a real Prosody 0.12, with the test impersonating Jicofo: a client
//! logged in as `focus@auth.meet.jitsi` in the brewery room as `focus`, which reads the
//! gateway's stats presence and sends it Rayo dials through the MUC, as Jicofo's JigasiDetector
//! and JigasiIqHandler do. Run inside the lab namespace:
//! `tests/lab/in-netns.sh cargo test --test xmpp_brewery --offline`.
//!
//! The Jicofo stand-in is tokio-xmpp's high-level client rather than the module's `Connection`:
//! it needs every presence payload of other occupants, which a call's connection does not hand
//! out, and it reconnects by itself after Prosody restarts, as Jicofo does.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use futures::StreamExt;
use gateway_lab::paths;
use gateway_lab::prosody::Prosody;
use jitsi_sip_gateway::config::{self, ConfigInput, FlagValue, Host, XmppSettings};
use jitsi_sip_gateway::xmpp::{
    rayo, Brewery, BreweryState, BreweryStats, ConnectOptions, Connection, Element, IqError,
    IqKind, Login, RayoExpired, RayoRequest, Tls, XmppTimeouts,
};
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_xmpp::connect::DnsConfig;
use tokio_xmpp::xmlstream::Timeouts;
use tokio_xmpp::{Client, Event, IqRequest, IqResponse};
use xmpp_parsers::jid::{BareJid, Jid};
use xmpp_parsers::presence::Presence;
use xmpp_parsers::stanza::Stanza;
use xmpp_parsers::stanza_error::{DefinedCondition, StanzaError};

const WAIT: Duration = Duration::from_secs(15);
/// As the server writes it; the settings spell it `JigasiBrewery` on purpose.
const BREWERY: &str = "jigasibrewery@internal-muc.meet.jitsi";
const REGION: &str = "lab-region-1";
const NS_COLIBRI: &str = "http://jitsi.org/protocol/colibri";
const NS_MUC: &str = "http://jabber.org/protocol/muc";

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The gateway's XMPP settings for the lab Prosody (or several); `extra` are `--set` settings.
fn settings(servers: &str, extra: &[(&str, &str)]) -> XmppSettings {
    let mut flags = vec![
        FlagValue::new("--set", "xmpp.servers", servers.to_string()),
        FlagValue::new("--set", "xmpp.domain", "meet.jitsi"),
        FlagValue::new("--set", "xmpp.auth_domain", "auth.meet.jitsi"),
        FlagValue::new("--set", "xmpp.guest_domain", "guest.meet.jitsi"),
        FlagValue::new("--set", "xmpp.muc_domain", "muc.meet.jitsi"),
        FlagValue::new(
            "--set",
            "xmpp.internal_muc_domain",
            "internal-muc.meet.jitsi",
        ),
        FlagValue::new("--set", "xmpp.brewery_muc", "JigasiBrewery"),
        FlagValue::new("--set", "xmpp.password", "jigasipass"),
        FlagValue::new("--set", "xmpp.tls", "none"),
        FlagValue::new("--set", "xmpp.region", REGION),
    ];
    flags.extend(extra.iter().map(|(k, v)| FlagValue::new("--set", *k, *v)));
    let env = BTreeMap::new();
    config::load(&ConfigInput {
        file: None,
        env: &env,
        flags,
    })
    .expect("lab settings load")
    .settings
    .xmpp
}

fn one_server(prosody: &Prosody) -> String {
    format!("127.0.0.1:{}:shard-a", prosody.c2s_port)
}

async fn within<T>(what: &str, f: impl Future<Output = T>) -> Result<T> {
    tokio::time::timeout(WAIT, f)
        .await
        .map_err(|_| anyhow!("no {what} within {WAIT:?}"))
}

fn load(conferences: usize, participants: usize) -> BreweryStats {
    BreweryStats {
        conferences,
        participants,
        graceful_shutdown: false,
        stress_level: conferences as f64 / 100.0,
    }
}

/// The stats presence the gateway must publish for `conferences`/`participants`/`stress`.
fn expected_stats(conferences: &str, participants: &str, stress: &str) -> Vec<(String, String)> {
    let version = format!("jitsi-sip-gateway {}", env!("CARGO_PKG_VERSION"));
    [
        ("conferences", conferences),
        ("participants", participants),
        ("graceful_shutdown", "false"),
        ("stress_level", stress),
        ("region", REGION),
        ("version", version.as_str()),
        ("supports_transcription", "false"),
        ("supports_sip", "true"),
    ]
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .to_vec()
}

/// The `<stat>`s of a presence's colibri `<stats>`, in order.
fn stats_of(presence: &Presence) -> Option<Vec<(String, String)>> {
    let stats = presence
        .payloads
        .iter()
        .find(|p| p.is("stats", NS_COLIBRI))?;
    Some(
        stats
            .children()
            .filter(|c| c.is("stat", NS_COLIBRI))
            .map(|s| {
                (
                    s.attr("name").unwrap_or_default().to_string(),
                    s.attr("value").unwrap_or_default().to_string(),
                )
            })
            .collect(),
    )
}

fn dial(to: &str, headers: &[(&str, &str)]) -> Element {
    let mut dial = Element::builder("dial", rayo::NS_RAYO)
        .attr("to".try_into().unwrap(), to)
        .attr("from".try_into().unwrap(), "fromnumber")
        .build();
    for (name, value) in headers {
        dial.append_child(
            Element::builder("header", rayo::NS_RAYO)
                .attr("name".try_into().unwrap(), *name)
                .attr("value".try_into().unwrap(), *value)
                .build(),
        );
    }
    dial
}

/// A Jicofo stand-in: `focus@auth.meet.jitsi` in the brewery as `focus`.
struct Jicofo {
    client: Client,
    /// Stanzas that arrived while waiting for something else.
    buffered: VecDeque<Stanza>,
}

impl Jicofo {
    async fn start(prosody: &Prosody) -> Result<Jicofo> {
        // Now and then (more often on a loaded machine) this tokio-xmpp client never hands us
        // the answer to the join although Prosody sent it and the client acknowledged it
        // (XEP-0198 h counts it); sending the join again on the same client does not help, a new
        // client does. Short tries, so a Jicofo that comes back still comes back quickly.
        let mut last = None;
        for _ in 0..4 {
            let jid = BareJid::new("focus@auth.meet.jitsi")?;
            let client = Client::new_plaintext(
                jid,
                prosody.focus_password.clone(),
                DnsConfig::addr(&format!("127.0.0.1:{}", prosody.c2s_port)),
                Timeouts::default(),
            );
            let mut jicofo = Jicofo {
                client,
                buffered: VecDeque::new(),
            };
            jicofo.online().await?;
            match jicofo.join().await {
                Ok(()) => return Ok(jicofo),
                Err(e) => {
                    eprintln!("{e}: a new focus client");
                    jicofo.stop().await;
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("no focus")))
    }

    async fn stop(self) {
        let _ = self.client.send_end().await;
    }

    async fn online(&mut self) -> Result<()> {
        within("focus login", async {
            loop {
                match self.client.next().await {
                    Some(Event::Online { .. }) => return Ok(()),
                    Some(_) => {}
                    None => bail!("the focus client stopped"),
                }
            }
        })
        .await?
    }

    /// Joins the brewery as `focus`; the other occupants' presences stay buffered.
    async fn join(&mut self) -> Result<()> {
        let join = Element::builder("presence", "jabber:client")
            .attr("to".try_into().unwrap(), format!("{BREWERY}/focus"))
            .append(Element::builder("x", NS_MUC).build())
            .build();
        let mut before = VecDeque::new();
        // Sent again after a pause (a repeated join is only a presence update to the room); a
        // client that still hands nothing over is replaced by `start`.
        for _ in 0..2 {
            self.client
                .send_stanza(Stanza::try_from(join.clone())?)
                .await
                .context("sending the focus join")?;
            let answered = tokio::time::timeout(Duration::from_millis(1500), async {
                loop {
                    let stanza = self.next_raw().await?;
                    if let Stanza::Presence(p) = &stanza {
                        let from = p.from.as_ref().map(|f| f.to_string());
                        if from == Some(format!("{BREWERY}/focus")) {
                            return Ok::<_, anyhow::Error>(());
                        }
                    }
                    before.push_back(stanza);
                }
            })
            .await;
            if let Ok(result) = answered {
                result?;
                self.buffered.extend(before);
                return Ok(());
            }
        }
        bail!("no focus join after two tries")
    }

    async fn next_raw(&mut self) -> Result<Stanza> {
        match self.client.next().await {
            Some(Event::Stanza(stanza)) => Ok(stanza),
            Some(Event::Online { .. }) => bail!("the focus client reconnected"),
            Some(Event::Disconnected(e)) => bail!("the focus client lost its stream: {e}"),
            None => bail!("the focus client stopped"),
        }
    }

    async fn next_stanza(&mut self) -> Result<Stanza> {
        if let Some(stanza) = self.buffered.pop_front() {
            return Ok(stanza);
        }
        within("stanza for the focus", self.next_raw()).await?
    }

    /// The next presence of a gateway occupant (anyone in the brewery but us), with its nick.
    async fn gateway_presence(&mut self) -> Result<(String, Presence)> {
        loop {
            let Stanza::Presence(p) = self.next_stanza().await? else {
                continue;
            };
            let Some(from) = &p.from else { continue };
            let nick = from.resource().map(|r| r.to_string());
            if from.to_bare().to_string() == BREWERY && nick.as_deref() != Some("focus") {
                return Ok((nick.unwrap_or_default(), p));
            }
        }
    }

    /// Whether a gateway presence has arrived and not been read yet.
    fn has_buffered_gateway_presence(&self) -> bool {
        self.buffered.iter().any(|s| {
            matches!(s, Stanza::Presence(p) if p.from.as_ref().is_some_and(|f|
                f.to_bare().to_string() == BREWERY
                    && f.resource().map(|r| r.as_str()) != Some("focus")))
        })
    }

    /// Sends a Rayo dial (an IQ set) to `to` and waits for the answer, keeping what else comes.
    async fn dial(
        &mut self,
        to: &str,
        payload: Element,
    ) -> Result<Result<Option<Element>, StanzaError>> {
        let token = self
            .client
            .send_iq(Some(Jid::new(to)?), IqRequest::Set(payload))
            .await;
        tokio::pin!(token);
        let response = within("answer to the dial", async {
            loop {
                tokio::select! {
                    response = &mut token => return response,
                    event = self.client.next() => {
                        if let Some(Event::Stanza(stanza)) = event {
                            self.buffered.push_back(stanza);
                        }
                    }
                }
            }
        })
        .await?
        .map_err(|e| anyhow!("the dial was not sent: {e:?}"))?;
        Ok(match response {
            IqResponse::Result(payload) => Ok(payload),
            IqResponse::Error(error) => Err(error),
        })
    }
}

async fn joined(brewery: &Brewery) -> Result<String> {
    let mut state = brewery.state();
    let seen = within(
        "brewery join",
        state.wait_for(|s| matches!(s, BreweryState::Joined { .. })),
    )
    .await?
    .map_err(|_| anyhow!("the brewery stopped"))?
    .clone();
    match seen {
        BreweryState::Joined { nick } => Ok(nick),
        other => bail!("{other:?}"),
    }
}

async fn next_request(requests: &mut mpsc::Receiver<RayoRequest>) -> Result<RayoRequest> {
    within("rayo request", requests.recv())
        .await?
        .context("the brewery stopped handing out requests")
}

/// The gateway, started as main starts it: one brewery for the (only) server entry.
fn start_brewery(
    settings: &XmppSettings,
    stats: &watch::Sender<BreweryStats>,
) -> Result<(Brewery, mpsc::Receiver<RayoRequest>)> {
    Ok(Brewery::start(
        settings,
        &settings.servers[0],
        stats.subscribe(),
    )?)
}

#[test]
fn jicofo_sees_the_gateway_with_its_stats_and_a_new_presence_only_when_they_change() -> Result<()> {
    let dir = paths::run_dir("xmpp-brewery-stats")?;
    let prosody = Prosody::start(&dir)?;
    let rt = runtime();
    rt.block_on(async {
        let mut jicofo = Jicofo::start(&prosody).await?;
        let settings = settings(&one_server(&prosody), &[]);
        let stats = watch::Sender::new(load(0, 0));
        let (brewery, _requests) = start_brewery(&settings, &stats)?;
        let nick = joined(&brewery).await?;

        let (seen_nick, presence) = jicofo.gateway_presence().await?;
        assert_eq!(seen_nick, nick);
        assert_eq!(stats_of(&presence), Some(expected_stats("0", "0", "0")));
        // The occupant is the jigasi account, with the bound resource as its nick.
        let item_jid = presence
            .payloads
            .iter()
            .find(|p| p.is("x", "http://jabber.org/protocol/muc#user"))
            .and_then(|x| x.get_child("item", "http://jabber.org/protocol/muc#user"))
            .and_then(|i| i.attr("jid"))
            .map(str::to_string);
        assert_eq!(item_jid, Some(format!("jigasi@auth.meet.jitsi/{nick}")));

        // The same stats again: nothing to publish. The gateway takes stats changes before the
        // requests that follow them, so once a dial sent after the non-change is answered, a
        // presence for it would already have come.
        stats.send_replace(load(0, 0));
        let answer = jicofo
            .dial(&format!("{BREWERY}/{nick}"), dial("+15551234567", &[]))
            .await?;
        assert!(answer.is_err());
        assert!(!jicofo.has_buffered_gateway_presence());

        stats.send_replace(load(2, 7));
        let (_, presence) = jicofo.gateway_presence().await?;
        assert_eq!(stats_of(&presence), Some(expected_stats("2", "7", "0.02")));
        brewery.shutdown().await;
        Ok(())
    })
}

#[test]
fn dial_through_the_muc_becomes_a_request_whose_accept_answers_with_the_ref() -> Result<()> {
    let dir = paths::run_dir("xmpp-brewery-dial")?;
    let prosody = Prosody::start(&dir)?;
    let rt = runtime();
    rt.block_on(async {
        let mut jicofo = Jicofo::start(&prosody).await?;
        let settings = settings(&one_server(&prosody), &[]);
        let stats = watch::Sender::new(load(0, 0));
        let (brewery, mut requests) = start_brewery(&settings, &stats)?;
        let nick = joined(&brewery).await?;

        let payload = dial(
            "+15551234567",
            &[
                ("JvbRoomName", "Room1@muc.meet.jitsi"),
                ("JvbRoomPassword", "s3cret"),
                ("X-outbound-call-initiator-user", "alice"),
            ],
        );
        let to = format!("{BREWERY}/{nick}");
        let (answer, request) = tokio::join!(jicofo.dial(&to, payload), async {
            let request = next_request(&mut requests).await?;
            // The MUC delivers Jicofo's IQ from the focus occupant.
            assert_eq!(request.from, format!("{BREWERY}/focus"));
            assert_eq!(request.server.id, "shard-a");
            assert_eq!(request.dial.to, "+15551234567");
            assert_eq!(request.dial.from.as_deref(), Some("fromnumber"));
            assert_eq!(request.dial.room.to_string(), "room1@muc.meet.jitsi");
            assert_eq!(request.dial.password.as_deref(), Some("s3cret"));
            assert_eq!(
                request.dial.headers,
                vec![(
                    "X-outbound-call-initiator-user".to_string(),
                    "alice".to_string()
                )]
            );
            let uri = rayo::ref_uri(&request.dial.room, "1a2b3c4d")?;
            request.accept(uri)?;
            Ok::<_, anyhow::Error>(())
        });
        request?;
        let payload = answer?.map_err(|e| anyhow!("dial refused: {e:?}"))?;
        let reference = payload.context("a result without <ref/>")?;
        assert!(reference.is("ref", rayo::NS_RAYO));
        assert_eq!(
            reference.attr("uri"),
            Some("xmpp:room1@muc.meet.jitsi/1a2b3c4d")
        );
        brewery.shutdown().await;
        Ok(())
    })
}

#[test]
fn dial_without_a_room_gets_bad_request_and_no_request() -> Result<()> {
    let dir = paths::run_dir("xmpp-brewery-bad-dial")?;
    let prosody = Prosody::start(&dir)?;
    let rt = runtime();
    rt.block_on(async {
        let mut jicofo = Jicofo::start(&prosody).await?;
        let settings = settings(&one_server(&prosody), &[]);
        let stats = watch::Sender::new(load(0, 0));
        let (brewery, mut requests) = start_brewery(&settings, &stats)?;
        let nick = joined(&brewery).await?;
        let answer = jicofo
            .dial(
                &format!("{BREWERY}/{nick}"),
                dial("+15551234567", &[("X-Other", "1")]),
            )
            .await?;
        let error = answer.err().context("the dial was accepted")?;
        assert_eq!(error.defined_condition, DefinedCondition::BadRequest);
        assert_eq!(
            error.texts.values().next().map(String::as_str),
            Some("No JvbRoomName header found")
        );
        // The brewery hands a request out before it answers anything else: none came.
        assert!(requests.try_recv().is_err());
        brewery.shutdown().await;
        Ok(())
    })
}

#[test]
fn dial_sent_straight_to_the_gateway_by_a_participant_is_forbidden() -> Result<()> {
    let dir = paths::run_dir("xmpp-brewery-not-allowed")?;
    let prosody = Prosody::start(&dir)?;
    let rt = runtime();
    rt.block_on(async {
        // Only Jicofo may make the brewery room here (as where jigasi is no admin).
        let _jicofo = Jicofo::start(&prosody).await?;
        let settings = settings(&one_server(&prosody), &[]);
        let stats = watch::Sender::new(load(0, 0));
        let (brewery, mut requests) = start_brewery(&settings, &stats)?;
        let nick = joined(&brewery).await?;
        let participant = Connection::connect(&ConnectOptions {
            host: Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            port: prosody.c2s_port,
            login: Login::Anonymous {
                domain: "meet.jitsi".into(),
            },
            tls: Tls::Plain,
            focus_jid: "focus.meet.jitsi".into(),
            focus_nick: "focus".into(),
            timeouts: XmppTimeouts::default(),
        })
        .await?;
        let gateway = format!("jigasi@auth.meet.jitsi/{nick}");
        let answer = participant
            .send_iq(
                &gateway,
                IqKind::Set,
                dial("+15551234567", &[("JvbRoomName", "room1@muc.meet.jitsi")]),
            )?
            .await;
        match answer {
            Err(IqError::Remote { condition, .. }) => assert_eq!(condition, "forbidden"),
            other => panic!("the participant's dial was not refused: {other:?}"),
        }
        assert!(requests.try_recv().is_err());
        participant.close().await;
        brewery.shutdown().await;
        Ok(())
    })
}

#[test]
fn unanswered_request_times_out_into_internal_server_error() -> Result<()> {
    let dir = paths::run_dir("xmpp-brewery-timeout")?;
    let prosody = Prosody::start(&dir)?;
    let rt = runtime();
    rt.block_on(async {
        let mut jicofo = Jicofo::start(&prosody).await?;
        let settings = settings(&one_server(&prosody), &[("xmpp.muc_join_timeout_s", "2")]);
        let stats = watch::Sender::new(load(0, 0));
        let (brewery, mut requests) = start_brewery(&settings, &stats)?;
        let nick = joined(&brewery).await?;
        let sent = Instant::now();
        let payload = dial("+15551234567", &[("JvbRoomName", "room1@muc.meet.jitsi")]);
        let to = format!("{BREWERY}/{nick}");
        let (answer, request) =
            tokio::join!(jicofo.dial(&to, payload), next_request(&mut requests));
        // Kept, not answered (dropping it would answer at once).
        let request = request?;
        let error = answer?.err().context("the dial was accepted")?;
        assert_eq!(
            error.defined_condition,
            DefinedCondition::InternalServerError
        );
        assert!(
            sent.elapsed() >= Duration::from_secs(2),
            "{:?}",
            sent.elapsed()
        );
        assert_eq!(
            request.accept("xmpp:late@muc.meet.jitsi/x".into()),
            Err(RayoExpired)
        );
        brewery.shutdown().await;
        Ok(())
    })
}

#[test]
fn after_prosody_restarts_the_brewery_is_back_within_ten_seconds_with_the_current_stats(
) -> Result<()> {
    let dir = paths::run_dir("xmpp-brewery-restart")?;
    let mut prosody = Prosody::start(&dir)?;
    let rt = runtime();
    let settings = settings(&one_server(&prosody), &[]);
    let stats = watch::Sender::new(load(1, 3));
    let brewery = rt.block_on(async {
        let jicofo = Jicofo::start(&prosody).await?;
        let (brewery, _requests) = start_brewery(&settings, &stats)?;
        joined(&brewery).await?;
        // Jicofo's own reconnecting is not under test: a new one comes after the restart.
        jicofo.stop().await;
        Ok::<_, anyhow::Error>(brewery)
    })?;

    let mut state = brewery.state();
    prosody.stop();
    rt.block_on(async {
        within(
            "brewery noticing the loss",
            state.wait_for(|s| matches!(s, BreweryState::Lost { .. })),
        )
        .await?
        .map_err(|_| anyhow!("the brewery stopped"))?;
        Ok::<_, anyhow::Error>(())
    })?;
    // The load changes while the server is away: the rejoin must carry the new one.
    stats.send_replace(load(4, 9));
    prosody.restart()?;
    let back = Instant::now();
    rt.block_on(async {
        // Jicofo comes back too and makes the room again; until then the room refuses the
        // gateway (only Jicofo may make it), which tries again.
        let (jicofo, nick) = tokio::join!(Jicofo::start(&prosody), joined(&brewery));
        let mut jicofo = jicofo?;
        let nick = nick?;
        assert!(
            back.elapsed() <= Duration::from_secs(10),
            "rejoined after {:?}",
            back.elapsed()
        );
        let (seen_nick, presence) = jicofo.gateway_presence().await?;
        assert_eq!(seen_nick, nick);
        assert_eq!(stats_of(&presence), Some(expected_stats("4", "9", "0.04")));
        brewery.shutdown().await;
        Ok(())
    })
}

/// Two Prosodys, as two shards of a deployment (docker's `XMPP_SERVER` list, one brewery
/// connection each): the gateway must sit in both brewery rooms, and a dial from one shard must
/// say it came from that shard, whose Prosody holds the room. One Prosody listed twice would
/// show two connections too, but not that each entry reaches its own server.
#[test]
fn each_server_entry_gets_its_own_brewery_connection() -> Result<()> {
    let prosody_a = Prosody::start(&paths::run_dir("xmpp-brewery-shard-a")?)?;
    let prosody_b = Prosody::start(&paths::run_dir("xmpp-brewery-shard-b")?)?;
    let rt = runtime();
    rt.block_on(async {
        let servers = format!(
            "127.0.0.1:{}:a,127.0.0.1:{}:b",
            prosody_a.c2s_port, prosody_b.c2s_port
        );
        let settings = settings(&servers, &[]);
        assert_eq!(settings.servers.len(), 2);
        let stats = watch::Sender::new(load(0, 0));
        let mut jicofo_a = Jicofo::start(&prosody_a).await?;
        let mut jicofo_b = Jicofo::start(&prosody_b).await?;
        let mut breweries = Vec::new();
        for server in &settings.servers {
            breweries.push(Brewery::start(&settings, server, stats.subscribe())?);
        }
        let nick_a = joined(&breweries[0].0).await?;
        let nick_b = joined(&breweries[1].0).await?;
        assert_eq!(breweries[0].0.server_id(), "a");
        assert_eq!(breweries[1].0.server_id(), "b");
        for (jicofo, nick) in [(&mut jicofo_a, &nick_a), (&mut jicofo_b, &nick_b)] {
            let (seen, presence) = jicofo.gateway_presence().await?;
            assert_eq!(&seen, nick);
            assert_eq!(stats_of(&presence), Some(expected_stats("0", "0", "0")));
        }

        let payload = dial("+15551234567", &[("JvbRoomName", "room1@muc.meet.jitsi")]);
        let to = format!("{BREWERY}/{nick_b}");
        let (answer, request) = tokio::join!(jicofo_b.dial(&to, payload), async {
            let request = next_request(&mut breweries[1].1).await?;
            assert_eq!(request.server.id, "b");
            assert_eq!(request.server.port, prosody_b.c2s_port);
            request.accept("xmpp:room1@muc.meet.jitsi/1a2b3c4d".into())?;
            Ok::<_, anyhow::Error>(())
        });
        request?;
        assert!(answer?.is_ok());
        assert!(breweries[0].1.try_recv().is_err());
        for (brewery, _) in breweries {
            brewery.shutdown().await;
        }
        Ok(())
    })
}
