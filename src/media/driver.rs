//! The thin tokio driver of one call's media: a task that owns the call's two UDP sockets and a
//! [`MediaBridge`], feeds it datagrams and deadlines, and carries out what it asks for.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::bridge::{Leg, MediaBridge};
use super::{
    ports, ConferenceAnswer, ConferenceOffer, DtlsIdentity, MediaConfig, MediaError, MediaEvent,
    MediaStats, PhoneParams,
};

/// Larger than any datagram either leg should see (MTU-sized RTP, DTLS flights).
const RECV_BUFFER: usize = 2048;

/// How often a running call's counters are published for the operator's figures: often enough
/// for a dashboard, rare enough to cost nothing next to 50 frames a second.
const STATS_EVERY: Duration = Duration::from_secs(1);

enum Command {
    ConnectPhone(PhoneParams),
    StopConference,
    ReplaceConference(
        Box<ConferenceOffer>,
        oneshot::Sender<Result<ConferenceAnswer, MediaError>>,
    ),
    AddSource(u32, String),
    RemoveSource(u32),
    SendDtmf(char, Duration),
    Stop,
}

/// The running media of one call. Dropping it stops the media like [`MediaHandle::stop`], minus
/// the statistics.
pub struct MediaHandle {
    commands: mpsc::UnboundedSender<Command>,
    phone_local: SocketAddr,
    events: mpsc::UnboundedReceiver<MediaEvent>,
    stats: watch::Receiver<MediaStats>,
    task: JoinHandle<MediaStats>,
}

/// Starts the media of a call: binds the phone and conference sockets from the port range, sets
/// up the conference leg from Jicofo's offer and spawns the task driving both.
///
/// Returns the handle, our answer for Jicofo, and the phone leg's RTP address for the SDP answer
/// (the advertised IP and the bound port). Must be called within a tokio runtime.
pub fn start(
    cfg: &MediaConfig,
    phone: Option<PhoneParams>,
    conf: ConferenceOffer,
) -> Result<(MediaHandle, ConferenceAnswer, SocketAddr), MediaError> {
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| MediaError::Config("media::start needs a tokio runtime".into()))?;
    let phone_socket = ports::bind_udp(cfg.bind_ip, cfg.settings.ports, true)?;
    let conference_socket = ports::bind_udp(cfg.bind_ip, cfg.settings.ports, false)?;
    let phone_local = SocketAddr::new(cfg.advertise_ip, phone_socket.local_addr()?.port());
    let conference_local =
        SocketAddr::new(cfg.advertise_ip, conference_socket.local_addr()?.port());

    let (bridge, answer) = MediaBridge::new(
        Instant::now(),
        &cfg.settings,
        phone,
        &conf,
        conference_local,
        &cfg.identity,
    )?;
    phone_socket.set_nonblocking(true)?;
    conference_socket.set_nonblocking(true)?;
    let phone_socket = UdpSocket::from_std(phone_socket)?;
    let conference_socket = UdpSocket::from_std(conference_socket)?;

    let (command_tx, command_rx) = mpsc::unbounded_channel();
    let (event_tx, event_rx) = mpsc::unbounded_channel();
    let (stats_tx, stats_rx) = watch::channel(MediaStats::default());
    tracing::debug!(phone = %phone_local, conference = %conference_local, "media started");
    let task = runtime.spawn(
        run(
            bridge,
            cfg.identity.clone(),
            phone_socket,
            conference_socket,
            command_rx,
            event_tx,
            stats_tx,
        )
        .instrument(tracing::Span::current()),
    );
    Ok((
        MediaHandle {
            commands: command_tx,
            phone_local,
            events: event_rx,
            stats: stats_rx,
            task,
        },
        answer,
        phone_local,
    ))
}

impl MediaHandle {
    /// The phone's address is known (a dial-out was answered): start sending to it.
    pub fn connect_phone(&self, params: PhoneParams) {
        let _ = self.commands.send(Command::ConnectPhone(params));
    }

    /// The conference side ended; the phone stays connected and hears silence.
    pub fn stop_conference(&self) {
        let _ = self.commands.send(Command::StopConference);
    }

    /// A new conference offer for the running call (the phone leg and its port stay): returns
    /// the answer for Jicofo and the phone leg's address (unchanged).
    pub async fn restart_conference(
        &self,
        offer: ConferenceOffer,
    ) -> Result<(ConferenceAnswer, SocketAddr), MediaError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::ReplaceConference(Box::new(offer), tx))
            .map_err(|_| MediaError::Config("the media task has ended".into()))?;
        let answer = rx
            .await
            .map_err(|_| MediaError::Config("the media task has ended".into()))??;
        Ok((answer, self.phone_local))
    }

    /// A source joined the room (Jingle source-add).
    pub fn add_source(&self, ssrc: u32, owner: String) {
        let _ = self.commands.send(Command::AddSource(ssrc, owner));
    }

    /// A source left the room (Jingle source-remove).
    pub fn remove_source(&self, ssrc: u32) {
        let _ = self.commands.send(Command::RemoveSource(ssrc));
    }

    /// Sends a DTMF key to the phone as RFC 4733 events (ignored if the phone did not negotiate
    /// telephone-event).
    pub fn send_dtmf(&self, digit: char, duration: Duration) {
        let _ = self.commands.send(Command::SendDtmf(digit, duration));
    }

    /// The call's counters, republished every [`STATS_EVERY`] while the media runs.
    pub fn live_stats(&self) -> watch::Receiver<MediaStats> {
        self.stats.clone()
    }

    /// The next event; `None` once the media task has ended.
    pub async fn next_event(&mut self) -> Option<MediaEvent> {
        self.events.recv().await
    }

    /// Stops the media, closes both sockets and returns the call's counters.
    pub async fn stop(self) -> MediaStats {
        let _ = self.commands.send(Command::Stop);
        match self.task.await {
            Ok(stats) => stats,
            Err(e) => {
                tracing::warn!(error = %e, "media task ended abnormally");
                MediaStats::default()
            }
        }
    }
}

async fn run(
    mut bridge: MediaBridge,
    identity: DtlsIdentity,
    phone: UdpSocket,
    conference: UdpSocket,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<MediaEvent>,
    stats: watch::Sender<MediaStats>,
) -> MediaStats {
    let mut phone_buf = vec![0u8; RECV_BUFFER];
    let mut publish_at = Instant::now() + STATS_EVERY;
    let mut conference_buf = vec![0u8; RECV_BUFFER];
    loop {
        while let Some(t) = bridge.poll_transmit() {
            let socket = match t.leg {
                Leg::Phone => &phone,
                Leg::Conference => &conference,
            };
            if let Err(e) = socket.send_to(&t.payload, t.destination).await {
                tracing::debug!(leg = ?t.leg, to = %t.destination, error = %e, "send failed");
            }
        }
        while let Some(e) = bridge.poll_event() {
            let _ = events.send(e);
        }
        let deadline = tokio::time::Instant::from_std(bridge.poll_timeout());
        tokio::select! {
            received = phone.recv_from(&mut phone_buf) => match received {
                Ok((n, from)) => bridge.handle_receive(Instant::now(), Leg::Phone, from, &phone_buf[..n]),
                Err(e) => tracing::debug!(error = %e, "phone socket"),
            },
            received = conference.recv_from(&mut conference_buf) => match received {
                Ok((n, from)) => bridge.handle_receive(Instant::now(), Leg::Conference, from, &conference_buf[..n]),
                Err(e) => tracing::debug!(error = %e, "conference socket"),
            },
            command = commands.recv() => match command {
                Some(Command::ConnectPhone(params)) => bridge.connect_phone(Instant::now(), params),
                Some(Command::StopConference) => bridge.stop_conference(),
                Some(Command::ReplaceConference(offer, answer)) => {
                    let _ = answer.send(bridge.replace_conference(Instant::now(), &offer, &identity));
                }
                Some(Command::AddSource(ssrc, owner)) => bridge.add_source(ssrc, owner),
                Some(Command::RemoveSource(ssrc)) => bridge.remove_source(ssrc),
                Some(Command::SendDtmf(digit, duration)) => {
                    bridge.send_dtmf(digit, duration);
                }
                Some(Command::Stop) | None => break,
            },
            () = tokio::time::sleep_until(deadline) => bridge.handle_timeout(Instant::now()),
        }
        let now = Instant::now();
        if now >= publish_at {
            publish_at = now + STATS_EVERY;
            stats.send_replace(bridge.stats());
        }
    }
    let final_stats = bridge.stats();
    stats.send_replace(final_stats);
    let stats = final_stats;
    // The ports go back to the range before `stop` returns.
    drop(phone);
    drop(conference);
    tracing::debug!(?stats, "media stopped");
    stats
}
