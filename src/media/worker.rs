//! Media worker threads: the thin driver of many calls' [`MediaBridge`]s.
//!
//! Each worker is one OS thread that owns the UDP sockets and bridges of the calls placed on it,
//! waits on all of their sockets with one epoll set (mio), and runs one 20 ms tick for all of
//! them together. Compared with a tokio task per call, this saves a timer and a task wake-up per
//! call per frame, keeps each call's codec state on one core, and keeps media off the runtime
//! that answers SIP and XMPP, so a busy minute of audio does not delay the next call's setup.
//!
//! A panic inside one call's media (a bug; network input is not supposed to cause one) ends that
//! call's media only: its handle then sees the media as ended, as with a failed task before.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use tokio::sync::{mpsc, oneshot, watch};

use super::bridge::{Leg, MediaBridge};
use super::{
    ConferenceAnswer, ConferenceOffer, DtlsIdentity, MediaError, MediaEvent, MediaStats,
    PhoneParams, FRAME_DURATION,
};

/// Larger than any datagram either leg should see (MTU-sized RTP, DTLS flights).
const RECV_BUFFER: usize = 2048;
/// How often a running call's counters are published for the operator's figures: often enough
/// for a dashboard, rare enough to cost nothing next to 50 frames a second.
const STATS_EVERY: Duration = Duration::from_secs(1);
/// When a worker falls further behind than this, its missed ticks are dropped rather than run in
/// a burst (a burst would only dump stale audio on both sides).
const MAX_TICK_LAG: Duration = Duration::from_millis(100);
/// Socket errors other than "nothing to read" tolerated in a row before a socket is left for the
/// next loop (an error does not consume a datagram, so reading on is usually right).
const MAX_RECV_ERRORS: usize = 8;
const WAKER: Token = Token(usize::MAX);

/// What a call's handle asks of its media.
pub(super) enum Command {
    ConnectPhone(PhoneParams),
    StopConference,
    ReplaceConference(
        Box<ConferenceOffer>,
        oneshot::Sender<Result<ConferenceAnswer, MediaError>>,
    ),
    AddSource(u32, String),
    RemoveSource(u32),
    SendDtmf(char, Duration),
    /// Ends the call's media and closes its sockets; the final counters go to the sender.
    Stop(Option<oneshot::Sender<MediaStats>>),
}

/// A call handed to a worker.
pub(super) struct NewCall {
    pub bridge: MediaBridge,
    pub identity: DtlsIdentity,
    pub phone: std::net::UdpSocket,
    pub conference: std::net::UdpSocket,
    pub events: mpsc::UnboundedSender<MediaEvent>,
    pub stats: watch::Sender<MediaStats>,
    /// The call's span (it carries the Call-ID): entered whenever this call's media runs.
    pub span: tracing::Span,
}

enum Message {
    Start(u64, Box<NewCall>),
    Call(u64, Command),
    Shutdown,
}

/// The link from a call's handle to the worker running its media.
pub(super) struct CallLink {
    id: u64,
    tx: std_mpsc::Sender<Message>,
    waker: Arc<Waker>,
}

impl CallLink {
    /// `false` once the worker has gone.
    pub fn send(&self, command: Command) -> bool {
        let sent = self.tx.send(Message::Call(self.id, command)).is_ok();
        // A failed wake means the worker's poll is gone, and with it the worker.
        sent && self.waker.wake().is_ok()
    }
}

struct Worker {
    tx: std_mpsc::Sender<Message>,
    waker: Arc<Waker>,
    /// Calls on this worker, for placing new ones on the least busy.
    calls: Arc<AtomicUsize>,
}

/// The process's media workers (one per core by default), shared by every call.
pub struct MediaWorkers {
    workers: Vec<Worker>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for MediaWorkers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaWorkers")
            .field("workers", &self.workers.len())
            .finish()
    }
}

impl MediaWorkers {
    /// Starts `count` worker threads (at least one). They idle in epoll until given calls, and
    /// end when this value is dropped.
    pub fn start(count: usize) -> Result<MediaWorkers, MediaError> {
        let mut workers = Vec::new();
        for n in 0..count.max(1) {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
            let (tx, rx) = std_mpsc::channel();
            let calls = Arc::new(AtomicUsize::new(0));
            let load = calls.clone();
            std::thread::Builder::new()
                .name(format!("media-{n}"))
                .spawn(move || WorkerLoop::new(poll, rx, load).run())?;
            workers.push(Worker { tx, waker, calls });
        }
        Ok(MediaWorkers {
            workers,
            next_id: AtomicU64::new(1),
        })
    }

    /// One worker per core this process may use.
    pub fn per_core() -> Result<MediaWorkers, MediaError> {
        MediaWorkers::start(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Places a call on the least busy worker.
    pub(super) fn place(&self, call: NewCall) -> Result<CallLink, MediaError> {
        let worker = self
            .workers
            .iter()
            .min_by_key(|w| w.calls.load(Ordering::Relaxed))
            .ok_or_else(|| MediaError::Config("no media worker".into()))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        worker.calls.fetch_add(1, Ordering::Relaxed);
        let gone = || MediaError::Config("the media worker has ended".into());
        worker
            .tx
            .send(Message::Start(id, Box::new(call)))
            .map_err(|_| gone())?;
        worker.waker.wake().map_err(|_| gone())?;
        Ok(CallLink {
            id,
            tx: worker.tx.clone(),
            waker: worker.waker.clone(),
        })
    }
}

impl Drop for MediaWorkers {
    fn drop(&mut self) {
        for w in &self.workers {
            let _ = w.tx.send(Message::Shutdown);
            let _ = w.waker.wake();
        }
    }
}

/// One call on a worker.
struct Slot {
    id: u64,
    bridge: MediaBridge,
    identity: DtlsIdentity,
    phone: UdpSocket,
    conference: UdpSocket,
    events: mpsc::UnboundedSender<MediaEvent>,
    stats: watch::Sender<MediaStats>,
    span: tracing::Span,
    /// The bridge's next deadline, as of the last flush.
    deadline: Instant,
    publish_at: Instant,
    /// Input arrived or time passed since the last flush.
    dirty: bool,
    /// A panic left the bridge in an unknown state: the call is removed at the end of the round.
    failed: bool,
}

impl Slot {
    fn socket(&self, leg: Leg) -> &UdpSocket {
        match leg {
            Leg::Phone => &self.phone,
            Leg::Conference => &self.conference,
        }
    }

    /// Reads every datagram waiting on `leg`'s socket (edge-triggered: until it would block).
    /// Returns `false` if errors cut the reading short.
    fn receive(&mut self, now: Instant, leg: Leg, buf: &mut [u8]) -> bool {
        let mut errors = 0;
        loop {
            match self.socket(leg).recv_from(buf) {
                Ok((n, from)) => self.bridge.handle_receive(now, leg, from, &buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) => {
                    tracing::debug!(?leg, error = %e, "receive failed");
                    errors += 1;
                    if errors >= MAX_RECV_ERRORS {
                        return false;
                    }
                }
            }
        }
    }

    fn command(&mut self, now: Instant, command: Command) {
        match command {
            Command::ConnectPhone(params) => self.bridge.connect_phone(now, params),
            Command::StopConference => self.bridge.stop_conference(),
            Command::ReplaceConference(offer, answer) => {
                let result = self.bridge.replace_conference(now, &offer, &self.identity);
                let _ = answer.send(result);
            }
            Command::AddSource(ssrc, owner) => self.bridge.add_source(ssrc, owner),
            Command::RemoveSource(ssrc) => self.bridge.remove_source(ssrc),
            Command::SendDtmf(digit, duration) => {
                self.bridge.send_dtmf(digit, duration);
            }
            // Handled by the worker, which owns the slot.
            Command::Stop(_) => {}
        }
    }

    /// Sends what the bridge has to send, passes its events on and notes its next deadline.
    fn flush(&mut self, now: Instant) {
        while let Some(t) = self.bridge.poll_transmit() {
            // UDP: a full send buffer drops the datagram, as the network would; media does not
            // wait (str0m resends what the handshakes need).
            if let Err(e) = self.socket(t.leg).send_to(&t.payload, t.destination) {
                tracing::debug!(leg = ?t.leg, to = %t.destination, error = %e, "send failed");
            }
        }
        while let Some(e) = self.bridge.poll_event() {
            let _ = self.events.send(e);
        }
        self.deadline = self.bridge.poll_timeout();
        if now >= self.publish_at {
            self.publish_at = now + STATS_EVERY;
            self.stats.send_replace(self.bridge.stats());
        }
        self.dirty = false;
    }
}

struct WorkerLoop {
    poll: Poll,
    rx: std_mpsc::Receiver<Message>,
    load: Arc<AtomicUsize>,
    /// Boxed: a bridge is large, and the vector doubles as calls arrive.
    slots: Vec<Option<Box<Slot>>>,
    free: Vec<usize>,
    ids: HashMap<u64, usize>,
    /// The next 20 ms tick of every call on this worker.
    next_tick: Instant,
    /// Sockets whose reading was cut short by errors, read again in the next round.
    unread: Vec<(usize, Leg)>,
    /// The sockets to read this round (kept to reuse its allocation).
    ready: Vec<(usize, Leg)>,
    buf: Vec<u8>,
}

fn token(slot: usize, leg: Leg) -> Token {
    Token(slot * 2 + usize::from(leg == Leg::Conference))
}

fn slot_of(token: Token) -> (usize, Leg) {
    let leg = if token.0.is_multiple_of(2) {
        Leg::Phone
    } else {
        Leg::Conference
    };
    (token.0 / 2, leg)
}

impl WorkerLoop {
    fn new(poll: Poll, rx: std_mpsc::Receiver<Message>, load: Arc<AtomicUsize>) -> WorkerLoop {
        WorkerLoop {
            poll,
            rx,
            load,
            slots: Vec::new(),
            free: Vec::new(),
            ids: HashMap::new(),
            next_tick: Instant::now() + FRAME_DURATION,
            unread: Vec::new(),
            ready: Vec::new(),
            buf: vec![0; RECV_BUFFER],
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.timeout(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() != ErrorKind::Interrupted {
                    tracing::error!(error = %e, "media worker cannot wait for its sockets");
                    std::thread::sleep(FRAME_DURATION);
                }
                continue;
            }
            let now = Instant::now();
            let mut ready = std::mem::take(&mut self.ready);
            ready.clear();
            ready.append(&mut self.unread);
            ready.extend(
                events
                    .iter()
                    .filter(|e| e.token() != WAKER)
                    .map(|e| slot_of(e.token())),
            );
            for &(i, leg) in &ready {
                let buf = &mut self.buf;
                let unread = &mut self.unread;
                Self::with_slot(&mut self.slots, i, |slot| {
                    if !slot.receive(now, leg, buf) {
                        unread.push((i, leg));
                    }
                    // Answers (STUN, DTLS flights) and events go out in this round, not at the
                    // next tick, and the bridge's deadline may have moved.
                    slot.dirty = true;
                });
            }
            self.ready = ready;
            if !self.messages(now) {
                return;
            }
            self.timers(now);
            for i in 0..self.slots.len() {
                if self.slots[i].as_ref().is_some_and(|s| s.dirty) {
                    Self::with_slot(&mut self.slots, i, |slot| slot.flush(now));
                }
            }
            self.reap();
        }
    }

    /// How long to wait: until the next tick or the earliest call deadline; forever when idle.
    fn timeout(&self, now: Instant) -> Option<Duration> {
        if !self.unread.is_empty() {
            return Some(Duration::ZERO);
        }
        if self.ids.is_empty() {
            return None;
        }
        let wake = self
            .slots
            .iter()
            .flatten()
            .map(|s| s.deadline)
            .fold(self.next_tick, Instant::min);
        Some(wake.saturating_duration_since(now))
    }

    /// Runs one call's media under its span; a panic ends that call's media alone (its slot is
    /// emptied, which closes its sockets and channels).
    fn with_slot(slots: &mut [Option<Box<Slot>>], i: usize, f: impl FnOnce(&mut Slot)) {
        let Some(entry) = slots.get_mut(i) else {
            return;
        };
        let Some(slot) = entry.as_mut() else {
            return;
        };
        let span = slot.span.clone();
        let _entered = span.enter();
        if catch_unwind(AssertUnwindSafe(|| f(slot))).is_err() {
            tracing::error!("the call's media failed (a bug); its media is stopped");
            slot.dirty = false;
            slot.failed = true;
        }
    }

    /// Handles the handles' messages; `false` on shutdown.
    fn messages(&mut self, now: Instant) -> bool {
        while let Ok(message) = self.rx.try_recv() {
            match message {
                Message::Start(id, call) => self.add(now, id, *call),
                Message::Call(id, Command::Stop(reply)) => self.remove(id, reply),
                Message::Call(id, command) => {
                    if let Some(&i) = self.ids.get(&id) {
                        Self::with_slot(&mut self.slots, i, |slot| {
                            slot.command(now, command);
                            slot.dirty = true;
                        });
                    }
                }
                Message::Shutdown => return false,
            }
        }
        true
    }

    /// Runs the tick when due (for every call) and the calls' own deadlines.
    fn timers(&mut self, now: Instant) {
        if self.ids.is_empty() {
            self.next_tick = now + FRAME_DURATION;
            return;
        }
        let tick_due = now >= self.next_tick;
        if tick_due {
            if now.duration_since(self.next_tick) > MAX_TICK_LAG {
                tracing::debug!(
                    behind_ms = now.duration_since(self.next_tick).as_millis() as u64,
                    calls = self.ids.len(),
                    "media worker ticks dropped"
                );
                self.next_tick = now;
            }
            while self.next_tick <= now {
                self.next_tick += FRAME_DURATION;
            }
        }
        let next_tick = self.next_tick;
        for i in 0..self.slots.len() {
            let due = self.slots[i]
                .as_ref()
                .is_some_and(|s| !s.failed && (tick_due || s.deadline <= now));
            if due {
                Self::with_slot(&mut self.slots, i, |slot| {
                    slot.bridge.handle_timeout(now);
                    // The bridge ran its own ticks up to `now`; the next one is the worker's.
                    slot.bridge.align_tick(next_tick);
                    slot.dirty = true;
                });
            }
        }
    }

    fn add(&mut self, now: Instant, id: u64, call: NewCall) {
        let span = call.span.clone();
        let _entered = span.enter();
        let i = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let mut phone = UdpSocket::from_std(call.phone);
        let mut conference = UdpSocket::from_std(call.conference);
        let registry = self.poll.registry();
        let registered = registry
            .register(&mut phone, token(i, Leg::Phone), Interest::READABLE)
            .and_then(|()| {
                registry.register(
                    &mut conference,
                    token(i, Leg::Conference),
                    Interest::READABLE,
                )
            });
        if let Err(e) = registered {
            // The handle sees the media end at once (its channels close with `call`).
            tracing::error!(error = %e, "cannot watch the call's sockets; media not started");
            self.free.push(i);
            self.load.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        if self.ids.is_empty() {
            self.next_tick = now + FRAME_DURATION;
        }
        let mut bridge = call.bridge;
        bridge.align_tick(self.next_tick);
        self.slots[i] = Some(Box::new(Slot {
            id,
            bridge,
            identity: call.identity,
            phone,
            conference,
            events: call.events,
            stats: call.stats,
            span: call.span,
            deadline: now,
            publish_at: now + STATS_EVERY,
            dirty: true,
            failed: false,
        }));
        self.ids.insert(id, i);
    }

    fn remove(&mut self, id: u64, reply: Option<oneshot::Sender<MediaStats>>) {
        let Some(i) = self.ids.remove(&id) else {
            return;
        };
        let Some(mut slot) = self.slots[i].take() else {
            return;
        };
        self.free.push(i);
        self.load.fetch_sub(1, Ordering::Relaxed);
        self.unread.retain(|(j, _)| *j != i);
        let _entered = slot.span.clone().entered();
        let registry = self.poll.registry();
        let _ = registry.deregister(&mut slot.phone);
        let _ = registry.deregister(&mut slot.conference);
        // A failed bridge's counters are not to be trusted (nor is it safe to ask it again).
        let stats = if slot.failed {
            MediaStats::default()
        } else {
            slot.bridge.stats()
        };
        slot.stats.send_replace(stats);
        // The ports go back to the range before `stop` returns.
        drop(slot);
        tracing::debug!(?stats, "media stopped");
        if let Some(reply) = reply {
            let _ = reply.send(stats);
        }
    }

    /// Removes the calls whose media failed.
    fn reap(&mut self) {
        let failed: Vec<u64> = self
            .slots
            .iter()
            .flatten()
            .filter(|s| s.failed)
            .map(|s| s.id)
            .collect();
        for id in failed {
            self.remove(id, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_map_back_to_their_slot_and_leg() {
        for i in [0, 1, 7, 1000] {
            for leg in [Leg::Phone, Leg::Conference] {
                assert_eq!(slot_of(token(i, leg)), (i, leg));
            }
        }
        assert_ne!(token(0, Leg::Conference), token(1, Leg::Phone));
    }

    #[test]
    fn workers_start_and_stop() {
        let workers = MediaWorkers::start(2).unwrap();
        assert_eq!(workers.workers.len(), 2);
        drop(workers);
    }
}
