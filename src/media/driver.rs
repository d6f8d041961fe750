//! Starting a call's media and the handle the call keeps: the call's two UDP sockets and its
//! [`MediaBridge`] go to a media worker (`worker`), which feeds it datagrams and deadlines and
//! carries out what it asks for; the handle talks to it through the worker's queue.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use super::bridge::MediaBridge;
use super::worker::{CallLink, Command, NewCall};
use super::{
    ports, ConferenceAnswer, ConferenceOffer, MediaConfig, MediaError, MediaEvent, MediaStats,
    PhoneParams,
};

/// The running media of one call. Dropping it stops the media like [`MediaHandle::stop`], minus
/// the statistics.
pub struct MediaHandle {
    link: CallLink,
    phone_local: SocketAddr,
    events: mpsc::UnboundedReceiver<MediaEvent>,
    stats: watch::Receiver<MediaStats>,
    /// Set by `stop`, so that dropping the handle afterwards sends nothing more.
    stopped: bool,
}

/// Starts the media of a call: binds the phone and conference sockets from the port range, sets
/// up the conference leg from Jicofo's offer and hands both to a media worker.
///
/// Returns the handle, our answer for Jicofo, and the phone leg's RTP address for the SDP answer
/// (the advertised IP and the bound port). The caller's tracing span goes with the call's media.
pub fn start(
    cfg: &MediaConfig,
    phone: Option<PhoneParams>,
    conf: ConferenceOffer,
) -> Result<(MediaHandle, ConferenceAnswer, SocketAddr), MediaError> {
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

    let (event_tx, event_rx) = mpsc::unbounded_channel();
    let (stats_tx, stats_rx) = watch::channel(MediaStats::default());
    tracing::debug!(phone = %phone_local, conference = %conference_local, "media started");
    let link = cfg.workers.place(NewCall {
        bridge,
        identity: cfg.identity.clone(),
        phone: phone_socket,
        conference: conference_socket,
        events: event_tx,
        stats: stats_tx,
        span: tracing::Span::current(),
    })?;
    Ok((
        MediaHandle {
            link,
            phone_local,
            events: event_rx,
            stats: stats_rx,
            stopped: false,
        },
        answer,
        phone_local,
    ))
}

impl MediaHandle {
    /// The phone's address is known (a dial-out was answered): start sending to it.
    pub fn connect_phone(&self, params: PhoneParams) {
        self.link.send(Command::ConnectPhone(params));
    }

    /// The conference side ended; the phone stays connected and hears silence.
    pub fn stop_conference(&self) {
        self.link.send(Command::StopConference);
    }

    /// A new conference offer for the running call (the phone leg and its port stay): returns
    /// the answer for Jicofo and the phone leg's address (unchanged).
    pub async fn restart_conference(
        &self,
        offer: ConferenceOffer,
    ) -> Result<(ConferenceAnswer, SocketAddr), MediaError> {
        let (tx, rx) = oneshot::channel();
        let ended = || MediaError::Config("the call's media has ended".into());
        if !self
            .link
            .send(Command::ReplaceConference(Box::new(offer), tx))
        {
            return Err(ended());
        }
        let answer = rx.await.map_err(|_| ended())??;
        Ok((answer, self.phone_local))
    }

    /// A source joined the room (Jingle source-add).
    pub fn add_source(&self, ssrc: u32, owner: String) {
        self.link.send(Command::AddSource(ssrc, owner));
    }

    /// A source left the room (Jingle source-remove).
    pub fn remove_source(&self, ssrc: u32) {
        self.link.send(Command::RemoveSource(ssrc));
    }

    /// Sends a DTMF key to the phone as RFC 4733 events (ignored if the phone did not negotiate
    /// telephone-event).
    pub fn send_dtmf(&self, digit: char, duration: Duration) {
        self.link.send(Command::SendDtmf(digit, duration));
    }

    /// The call's counters, republished every second while the media runs.
    pub fn live_stats(&self) -> watch::Receiver<MediaStats> {
        self.stats.clone()
    }

    /// The next event; `None` once the media task has ended.
    pub async fn next_event(&mut self) -> Option<MediaEvent> {
        self.events.recv().await
    }

    /// Stops the media, closes both sockets and returns the call's counters.
    pub async fn stop(mut self) -> MediaStats {
        self.stopped = true;
        let (tx, rx) = oneshot::channel();
        self.link.send(Command::Stop(Some(tx)));
        match rx.await {
            Ok(stats) => stats,
            Err(_) => {
                tracing::warn!("the call's media had already ended abnormally");
                MediaStats::default()
            }
        }
    }
}

impl Drop for MediaHandle {
    fn drop(&mut self) {
        if !self.stopped {
            self.link.send(Command::Stop(None));
        }
    }
}
