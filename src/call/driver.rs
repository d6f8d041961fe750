//! The thin async driver of one call: it owns the SIP dialog, the XMPP connection and the media
//! handle, waits on all of them and on the machine's deadline, feeds what happens to the
//! [`Call`] machine and carries out its outputs. No decision is made here.

use super::machine::{
    Call, Dial, Input, Invite, IqPurpose, MediaCommand, Output, RayoAnswer, XmppCommand,
};
use super::phone::Phone;
use super::registry::{Direction, Registration, Registry};
use crate::config::{Settings, XmppServer};
use crate::media::{self, MediaHandle};
use crate::sip::{IncomingCall, SipServer};
use crate::xmpp::{self, ConnectOptions, Connection, IqKind, PendingIq, Pool, RayoRequest};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use tracing::Instrument;

/// What every call needs from the process.
pub struct CallContext {
    pub settings: Arc<Settings>,
    /// Warm connections to the first of `xmpp.servers`.
    pub pool: Arc<Pool>,
    pub registry: Arc<Registry>,
    pub media: media::MediaConfig,
    pub sip: Arc<SipServer>,
    /// Turns true when the gateway stops without waiting for calls to end.
    pub hangup: tokio::sync::watch::Receiver<bool>,
}

type IqFuture = Pin<Box<dyn std::future::Future<Output = (IqPurpose, Option<String>)> + Send>>;

/// Runs one incoming call to its end.
pub async fn run(ctx: Arc<CallContext>, incoming: IncomingCall) {
    let nick = xmpp::random_endpoint_nick();
    let span = tracing::info_span!("call", call_id = %incoming.call_id, room = tracing::field::Empty, nick = %nick);
    async move {
        let IncomingCall {
            call_id,
            from,
            headers,
            body,
            remote,
            dialog,
            events,
            ..
        } = incoming;
        let s = &ctx.settings.sip;
        let invite = Invite {
            call_id: call_id.clone(),
            caller: from
                .display_name
                .clone()
                .filter(|d| !d.is_empty())
                .or(from.user.clone())
                .unwrap_or_else(|| "phone".into()),
            room_header: headers.get(s.room_header.as_str()).map(str::to_owned),
            password_header: headers
                .get(s.room_password_header.as_str())
                .map(str::to_owned),
            body,
            local_ip: local_ip_toward(s.listen, remote),
        };
        let call = Call::new(ctx.settings.clone(), invite, nick, Instant::now());
        let phone = Phone::incoming(dialog, events);
        drive(&ctx, &call_id, call, phone, None, None).await
    }
    .instrument(span)
    .await
}

/// Runs one call the room asked for (a Rayo dial the brewery took) to its end; the dial is
/// answered from here.
pub async fn run_outbound(ctx: Arc<CallContext>, request: RayoRequest) {
    let nick = xmpp::random_endpoint_nick();
    // The SIP Call-ID comes with the INVITE; until then the nick names the call.
    let id = format!("dial-{nick}");
    let span = tracing::info_span!("call", call_id = %id, room = %request.dial.room, nick = %nick, to = %request.dial.to);
    async move {
        let dial = Dial {
            request: request.dial.clone(),
            id: id.clone(),
        };
        let server = request.server.clone();
        let call = Call::outbound(ctx.settings.clone(), dial, nick, Instant::now());
        let phone = Phone::outgoing(ctx.sip.clone());
        drive(&ctx, &id, call, phone, Some(request), Some(server)).await
    }
    .instrument(span)
    .await
}

async fn drive(
    ctx: &CallContext,
    call_id: &str,
    mut call: Call,
    mut phone: Phone,
    mut rayo: Option<RayoRequest>,
    server: Option<XmppServer>,
) {
    let direction = if call.is_outbound() {
        Direction::Out
    } else {
        Direction::In
    };
    let registration = ctx.registry.register(call_id, direction);
    if let Some(room) = call.room() {
        tracing::Span::current().record("room", tracing::field::display(room));
        registration.update(|c| c.room = Some(room.to_string()));
    }
    let mut xmpp: Option<Connection> = None;
    let mut media: Option<MediaHandle> = None;
    let mut iqs: FuturesUnordered<IqFuture> = FuturesUnordered::new();
    let mut counted_media = false;
    let mut hangup = ctx.hangup.clone();
    let mut told_to_stop = false;

    loop {
        // Carry out everything the machine asked for; some of it produces inputs at once.
        while let Some(out) = call.poll_output() {
            let input = match out {
                Output::Sip(cmd) => phone.exec(cmd).await,
                Output::Xmpp(cmd) => {
                    exec_xmpp(ctx, server.as_ref(), &mut xmpp, &mut iqs, cmd).await
                }
                Output::Media(cmd) => exec_media(ctx, &registration, &mut media, cmd).await,
                Output::Rayo(answer) => answer_rayo(&mut rayo, answer),
                Output::Ended(summary) => {
                    tracing::debug!(?summary, "call summary");
                    None
                }
            };
            if let Some(input) = input {
                call.handle_input(Instant::now(), input);
            }
        }
        if call.media_connected() && !counted_media {
            counted_media = true;
            registration.media_connected();
        }
        registration.update(|c| {
            c.others_in_room = call.others_in_room();
            c.phase = call.phase();
            c.joined = call.joined();
            c.setup = call.setup_time();
        });
        if call.is_ended() {
            break;
        }
        let deadline = call.poll_timeout().map(tokio::time::Instant::from_std);
        let input = tokio::select! {
            Some(input) = phone.next() => input,
            ev = async { xmpp.as_mut().expect("guarded").next().await }, if xmpp.is_some() => match ev {
                Ok(inbound) => Input::Xmpp(inbound),
                Err(lost) => { xmpp = None; Input::XmppLost(lost.to_string()) }
            },
            ev = async { media.as_mut().expect("guarded").next_event().await }, if media.is_some() => match ev {
                Some(ev) => {
                    count_media_event(&registration, &ev);
                    Input::Media(ev)
                }
                None => Input::Media(media::MediaEvent::ConferenceFailed("the media task ended".into())),
            },
            Some((what, error)) = iqs.next(), if !iqs.is_empty() => Input::IqAnswered { what, error },
            _ = sleep_until(deadline), if deadline.is_some() => Input::Timeout,
            _ = hangup.wait_for(|stop| *stop), if !told_to_stop => {
                told_to_stop = true;
                Input::GatewayStopping
            }
        };
        call.handle_input(Instant::now(), input);
    }
    // Whatever the machine did not close (a lost task, a failed send) goes now.
    if let Some(m) = media.take() {
        log_media_stopped(&m.stop().await);
    }
    if let Some(x) = xmpp.take() {
        x.close().await;
    }
    drop(registration);
}

/// The media events the operator's figures count (jigasi's dropped media and failed
/// connections); the machine decides what they mean for the call.
fn count_media_event(registration: &Registration<'_>, ev: &media::MediaEvent) {
    match ev {
        media::MediaEvent::PhoneMediaStopped => registration.phone_media_dropped(),
        media::MediaEvent::ConferenceFailed(_) => registration.conference_failed(),
        _ => {}
    }
}

/// Answers the room's dial; a dial that can no longer be answered (it timed out, or the
/// brewery's connection went) means nobody waits for this call any more.
fn answer_rayo(rayo: &mut Option<RayoRequest>, answer: RayoAnswer) -> Option<Input> {
    let request = rayo.take()?;
    let sent = match answer {
        RayoAnswer::Ref(uri) => request.accept(uri),
        RayoAnswer::Error { condition, text } => request.reject(condition, &text),
    };
    sent.err().map(|e| Input::RayoExpired(e.to_string()))
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn exec_xmpp(
    ctx: &CallContext,
    server: Option<&XmppServer>,
    xmpp: &mut Option<Connection>,
    iqs: &mut FuturesUnordered<IqFuture>,
    cmd: XmppCommand,
) -> Option<Input> {
    match cmd {
        XmppCommand::Connect => match connect(ctx, server).await {
            Ok(conn) => {
                *xmpp = Some(conn);
                Some(Input::XmppReady)
            }
            Err(e) => Some(Input::XmppUnavailable(e.to_string())),
        },
        XmppCommand::Leave => {
            if let Some(conn) = xmpp.take() {
                conn.close().await;
            }
            None
        }
        other => {
            let conn = xmpp.as_ref()?;
            let result = match other {
                XmppCommand::Join { request } => {
                    // The focus request first (Jicofo joins the room on it), then the join
                    // without waiting: the offer comes once both are in.
                    match conn.request_conference(&request.room) {
                        Ok(p) => iqs.push(answer_of(IqPurpose::ConferenceRequest, p)),
                        Err(e) => tracing::warn!(error = %e, "cannot send the conference request"),
                    }
                    conn.join(request)
                }
                XmppCommand::Status(s) => conn.set_status(Some(&s)),
                XmppCommand::SendIq { to, payload, what } => conn
                    .send_iq(&to, IqKind::Set, payload)
                    .map(|p| iqs.push(answer_of(what, p))),
                XmppCommand::Reply { to, id, reply } => conn.reply(&to, &id, reply),
                XmppCommand::Connect | XmppCommand::Leave => Ok(()),
            };
            result.err().map(|e| Input::XmppLost(e.to_string()))
        }
    }
}

/// A logged-in connection: warm from the pool for the first server, else a new login to the
/// server a dial came through (its shard holds the room).
async fn connect(
    ctx: &CallContext,
    server: Option<&XmppServer>,
) -> Result<Connection, xmpp::ConnectError> {
    let s = &ctx.settings.xmpp;
    match server {
        Some(server) if s.servers.first() != Some(server) => {
            Connection::connect(&ConnectOptions::per_call_on(s, Some(server), s.tls.into())).await
        }
        _ => ctx.pool.take().await,
    }
}

fn answer_of(what: IqPurpose, pending: PendingIq) -> IqFuture {
    Box::pin(async move { (what, pending.await.err().map(|e| e.to_string())) })
}

async fn exec_media(
    ctx: &CallContext,
    registration: &Registration<'_>,
    media: &mut Option<MediaHandle>,
    cmd: MediaCommand,
) -> Option<Input> {
    match cmd {
        MediaCommand::Start { phone, conference } => {
            match media::start(&ctx.media, phone, conference) {
                Ok((handle, answer, phone_local)) => {
                    registration.media_started(handle.live_stats());
                    *media = Some(handle);
                    Some(Input::MediaStarted {
                        answer,
                        phone_local,
                    })
                }
                Err(e) => Some(Input::MediaStartFailed(e.to_string())),
            }
        }
        MediaCommand::RestartConference(offer) => {
            let handle = media.as_ref()?;
            match handle.restart_conference(offer).await {
                Ok((answer, phone_local)) => {
                    registration.conference_replaced();
                    Some(Input::MediaStarted {
                        answer,
                        phone_local,
                    })
                }
                Err(e) => Some(Input::MediaStartFailed(e.to_string())),
            }
        }
        MediaCommand::ConnectPhone(params) => {
            if let Some(h) = media.as_ref() {
                h.connect_phone(params);
            }
            None
        }
        MediaCommand::StopConference => {
            if let Some(h) = media.as_ref() {
                h.stop_conference();
            }
            None
        }
        MediaCommand::AddSources(sources) => {
            if let Some(h) = media.as_ref() {
                for (ssrc, owner) in sources {
                    h.add_source(ssrc, owner);
                }
            }
            None
        }
        MediaCommand::RemoveSources(ssrcs) => {
            if let Some(h) = media.as_ref() {
                for ssrc in ssrcs {
                    h.remove_source(ssrc);
                }
            }
            None
        }
        MediaCommand::Stop => {
            if let Some(h) = media.take() {
                log_media_stopped(&h.stop().await);
            }
            None
        }
    }
}

/// Both legs' totals as fields of their own (`phone_lost`, `conference_jitter_ms`, …), so a log
/// query can filter on them. Losses or concealment on one leg say which network to look at.
fn log_media_stopped(stats: &media::MediaStats) {
    let (p, c) = (&stats.phone, &stats.conference);
    tracing::info!(
        phone_packets_in = p.packets_in,
        phone_packets_out = p.packets_out,
        phone_lost = p.lost,
        phone_late = p.late,
        phone_jitter_ms = (p.jitter_ms * 100.0).round() / 100.0,
        phone_concealed_frames = p.concealed_frames,
        conference_packets_in = c.packets_in,
        conference_packets_out = c.packets_out,
        conference_lost = c.lost,
        conference_late = c.late,
        conference_jitter_ms = (c.jitter_ms * 100.0).round() / 100.0,
        conference_concealed_frames = c.concealed_frames,
        "media stopped"
    );
}

/// The local address toward `remote`: the listening address when it is a specific one, else
/// the address the kernel would send from (a connected UDP socket sends nothing).
fn local_ip_toward(listen: SocketAddr, remote: SocketAddr) -> IpAddr {
    if !listen.ip().is_unspecified() {
        return listen.ip();
    }
    std::net::UdpSocket::bind((listen.ip(), 0))
        .and_then(|s| s.connect(remote).and_then(|_| s.local_addr()))
        .map(|a| a.ip())
        .unwrap_or(listen.ip())
}
