//! The tokio side of the SIP health check: places the calls [`SipCheck`] asks for with the
//! gateway's SIP stack, reads the call's RTP socket, sends a tone, hangs up, logs each result and
//! publishes the [`Status`]. No decisions.

use super::{CheckResult, HangUp, Input, Output, SipCheck, Status, CODECS};
use crate::config::HealthSettings;
use crate::media::rtp::RtpPacket;
use crate::media::{self, MediaConfig, FRAME_DURATION, FRAME_SAMPLES};
use crate::sip::sdp::{self, G711};
use crate::sip::{OutgoingCall, OutgoingDialog, OutgoingEvent, Reason, SipServer};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// How long a BYE may take at shutdown before the SIP stack goes.
const BYE_WAIT_AT_STOP: Duration = Duration::from_secs(2);
/// The callee hears a 400 Hz tone at -20 dBFS: 20 samples per period, so one 20 ms frame
/// repeats seamlessly.
const TONE_HZ: f64 = 400.0;
const TONE_AMPLITUDE: f64 = 3277.0;

/// The running check; [`SipCheckTask::stop`] ends it.
pub(in crate::gateway) struct SipCheckTask {
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl SipCheckTask {
    /// Hangs up a check call in progress and ends the task (it holds the SIP server).
    pub(in crate::gateway) async fn stop(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await {
            tracing::error!(error = %e, "the SIP health check task failed");
        }
    }
}

/// Starts checking `target` every `settings.interval`, the first check at once. `sdp_ip` is
/// the address our SDP offers (`sip.public_address`, else the media's advertised address).
pub(in crate::gateway) fn spawn(
    sip: Arc<SipServer>,
    target: String,
    settings: &HealthSettings,
    media: MediaConfig,
    sdp_ip: IpAddr,
) -> (SipCheckTask, watch::Receiver<Status>) {
    let core = SipCheck::new(now(), target, settings.interval, settings.timeout);
    let (status_tx, status) = watch::channel(core.status().clone());
    let stop = CancellationToken::new();
    tracing::info!(
        uri = %core.status().target,
        interval_s = settings.interval.as_secs_f64(),
        timeout_s = settings.timeout.as_secs(),
        "SIP health check enabled"
    );
    let driver = Driver {
        core,
        sip,
        media,
        sdp_ip,
        status: status_tx,
        call: CallIo::default(),
    };
    let task = tokio::spawn(driver.run(stop.clone()));
    (SipCheckTask { stop, task }, status)
}

fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

struct Driver {
    core: SipCheck,
    sip: Arc<SipServer>,
    media: MediaConfig,
    sdp_ip: IpAddr,
    status: watch::Sender<Status>,
    call: CallIo,
}

/// The sockets and dialog of the check in progress.
#[derive(Default)]
struct CallIo {
    dialog: Option<OutgoingDialog>,
    socket: Option<UdpSocket>,
    audio: Option<Tone>,
}

impl Driver {
    async fn run(mut self, stop: CancellationToken) {
        let mut buf = vec![0u8; 2048];
        loop {
            self.flush(&stop, false).await;
            let due = self.core.poll_timeout();
            let io = &mut self.call;
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = sleep_until(due) => self.core.handle_timeout(now()),
                event = next_event(&mut io.dialog) => {
                    if event.is_none() {
                        io.dialog = None;
                    }
                    self.core.handle_input(now(), Input::Call(event));
                }
                received = recv(&io.socket, &mut buf) => match received {
                    Ok((n, from)) => {
                        let data = &buf[..n];
                        self.core.handle_input(now(), Input::Datagram { from, data });
                    }
                    Err(e) => {
                        // Not expected on an unconnected socket; dropping it avoids a busy
                        // loop, and the check then fails for want of RTP.
                        tracing::warn!(error = %e, "SIP health check: RTP socket failed");
                        io.socket = None;
                    }
                },
                _ = tick(&mut io.audio) => {
                    if let (Some(tone), Some(socket)) = (io.audio.as_mut(), io.socket.as_ref()) {
                        tone.send(socket).await;
                    }
                }
            }
        }
        self.core.handle_input(now(), Input::Stop);
        self.flush(&stop, true).await;
    }

    /// Carries out what the core asked for; `stopping`: wait for a BYE to be answered.
    async fn flush(&mut self, stop: &CancellationToken, stopping: bool) {
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::Place => match self.place(stop).await {
                    Ok(()) => {}
                    // Cut short by the stop: not a result.
                    Err(_) if stop.is_cancelled() => {}
                    Err(error) => self.core.handle_input(now(), Input::Unplaced(error)),
                },
                Output::SendAudio {
                    to,
                    codec,
                    payload_type,
                } => self.call.audio = Some(Tone::new(to, codec, payload_type)),
                Output::HangUp(hang_up) => self.hang_up(hang_up, stopping).await,
                Output::Finished(result) => log(&self.core.status().target, &result),
            }
        }
        let current = self.core.status();
        self.status.send_if_modified(|s| {
            let changed = s != current;
            if changed {
                s.clone_from(current);
            }
            changed
        });
    }

    /// Binds the RTP socket and sends the INVITE; why not, when it cannot.
    async fn place(&mut self, stop: &CancellationToken) -> Result<(), String> {
        let socket = media::bind_rtp_socket(&self.media).map_err(|e| e.to_string())?;
        let port = socket.local_addr().map_err(|e| e.to_string())?.port();
        socket.set_nonblocking(true).map_err(|e| e.to_string())?;
        let socket = UdpSocket::from_std(socket).map_err(|e| e.to_string())?;
        let offer = sdp::offer(&CODECS, self.sdp_ip, port, u64::from(rand::random::<u32>()));
        let call = OutgoingCall {
            to: self.core.status().target.clone(),
            display_name: Some("health check".into()),
            headers: Vec::new(),
            sdp_offer: offer,
        };
        let dialog = tokio::select! {
            placed = self.sip.call(call) => placed.map_err(|e| e.to_string())?,
            _ = stop.cancelled() => return Err("the gateway is stopping".into()),
        };
        tracing::debug!(sip_call_id = %dialog.call_id(), rtp_port = port, "SIP health check call");
        self.call = CallIo {
            dialog: Some(dialog),
            socket: Some(socket),
            audio: None,
        };
        Ok(())
    }

    async fn hang_up(&mut self, hang_up: HangUp, stopping: bool) {
        let CallIo { dialog, .. } = std::mem::take(&mut self.call);
        let Some(dialog) = dialog else { return };
        match hang_up {
            HangUp::Bye(reason) if stopping => {
                if tokio::time::timeout(BYE_WAIT_AT_STOP, bye(dialog, reason))
                    .await
                    .is_err()
                {
                    tracing::debug!("SIP health check: BYE unanswered at stop");
                }
            }
            // Not waited for: the result does not depend on the BYE's answer (the transaction
            // ends by itself, answered or timed out).
            HangUp::Bye(reason) => drop(tokio::spawn(bye(dialog, reason))),
            HangUp::Cancel => dialog.cancel(),
            // Dropping the dialog ends whatever is left of it.
            HangUp::Release => {}
        }
    }
}

async fn bye(dialog: OutgoingDialog, reason: Option<Reason>) {
    if let Err(e) = dialog.bye(reason).await {
        tracing::debug!(error = %e, "SIP health check: BYE");
    }
}

/// One line per check: INFO when it passed, WARN with the reason when it failed.
fn log(uri: &str, result: &CheckResult) {
    let answer_ms = result.answer.map(|d| d.as_millis() as u64);
    match &result.outcome {
        Ok(passed) => tracing::info!(
            uri,
            answer_ms,
            rtp_ms = passed.first_rtp.as_millis() as u64,
            retry = result.retry,
            "SIP health check passed"
        ),
        Err(failure) => tracing::warn!(
            uri,
            reason = %failure,
            status = failure.status(),
            answer_ms,
            retry = result.retry,
            "SIP health check failed"
        ),
    }
}

async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await,
        None => std::future::pending().await,
    }
}

async fn next_event(dialog: &mut Option<OutgoingDialog>) -> Option<OutgoingEvent> {
    match dialog {
        Some(dialog) => dialog.next().await,
        None => std::future::pending().await,
    }
}

async fn recv(socket: &Option<UdpSocket>, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddr)> {
    match socket {
        Some(socket) => socket.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

async fn tick(tone: &mut Option<Tone>) {
    match tone {
        Some(tone) => {
            tone.interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// The tone we send the callee: 20 ms G.711 packets.
struct Tone {
    to: SocketAddr,
    payload_type: u8,
    frame: Vec<u8>,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
    first: bool,
    interval: Interval,
    packet: Vec<u8>,
}

impl Tone {
    fn new(to: SocketAddr, codec: G711, payload_type: u8) -> Tone {
        let codec = match codec {
            G711::Pcmu => media::G711::Pcmu,
            G711::Pcma => media::G711::Pcma,
        };
        let pcm: Vec<i16> = (0..FRAME_SAMPLES)
            .map(|i| {
                let phase = 2.0 * std::f64::consts::PI * TONE_HZ * i as f64;
                (TONE_AMPLITUDE * (phase / f64::from(media::SAMPLE_RATE)).sin()) as i16
            })
            .collect();
        let mut frame = Vec::new();
        codec.encode(&pcm, &mut frame);
        let mut interval = tokio::time::interval(FRAME_DURATION);
        interval.set_missed_tick_behavior(MissedTickBehavior::Skip);
        Tone {
            to,
            payload_type,
            frame,
            seq: rand::random(),
            timestamp: rand::random(),
            ssrc: rand::random(),
            first: true,
            interval,
            packet: Vec::new(),
        }
    }

    async fn send(&mut self, socket: &UdpSocket) {
        RtpPacket {
            marker: self.first,
            payload_type: self.payload_type,
            seq: self.seq,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
            payload: &self.frame,
        }
        .write(&mut self.packet);
        self.first = false;
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(FRAME_SAMPLES as u32);
        if let Err(e) = socket.send_to(&self.packet, self.to).await {
            tracing::debug!(to = %self.to, error = %e, "SIP health check: RTP not sent");
        }
    }
}
