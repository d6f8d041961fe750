//! A media thread of the bridge: one UDP socket and one timer for all its sessions. Datagrams are
//! routed to their session by source address (learnt from the first datagram a session's `Rtc`
//! accepts, so only a new source costs a scan); every 10 ms half of the sessions sends its next
//! 20 ms of every speaker, so the sends are spread over the frame.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc::{self, TryRecvError};
use std::sync::Arc;
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use str0m::IceCreds;

use super::audio::SpeakerClick;
use super::session::{BridgeSession, MediaEnv, SessionEvent};
use super::stanzas::{RemoteFingerprint, RemoteTransport};
use super::udp::Socket;
use super::{join, thread_cpu, EndedBy, Recording, Shared};

/// The media thread's period: it drains its socket and sends what is due this often. A wakeup
/// costs 25–30 µs of CPU on this machine class, several datagrams' worth, so the thread wakes
/// on this clock (and for commands), not for every datagram; arrival times come from the
/// kernel. Sessions are split in groups that send at different points of the 20 ms frame.
const TICK: Duration = Duration::from_millis(10);
const PHASES: u32 = 2;
const FRAME: Duration = Duration::from_millis(20);
/// While a session is connecting, the socket is drained this often, so that ICE and the DTLS
/// handshake (a few round trips) are not slowed down by the tick.
const HANDSHAKE_POLL: Duration = Duration::from_millis(1);
/// Frames a late session catches up in one tick; beyond that they are skipped.
const MAX_CATCH_UP: u64 = 3;
/// How often every session's figures are published.
const PUBLISH: Duration = Duration::from_millis(250);
/// Datagrams read per tick at most, so a flood cannot starve the sends.
const MAX_READ: usize = 8192;

pub enum Cmd {
    Add {
        sid: String,
        ice: IceCreds,
        speakers: Vec<u32>,
        tone: Option<f64>,
    },
    Transport {
        sid: String,
        transport: RemoteTransport,
    },
    Accept {
        sid: String,
        fingerprint: Option<RemoteFingerprint>,
        ssrc: Option<u32>,
    },
    End {
        sid: String,
        by: EndedBy,
    },
    Tone {
        sid: String,
        hz: f64,
    },
    Record {
        sid: String,
        frames: usize,
        reply: std::sync::mpsc::Sender<Recording>,
    },
    Click {
        sid: String,
        click: Arc<SpeakerClick>,
        reply: std::sync::mpsc::Sender<Instant>,
    },
    Stop,
}

/// Commands to a media thread; sending wakes it.
#[derive(Clone)]
pub struct Mailbox {
    tx: mpsc::Sender<Cmd>,
    thread: Thread,
}

impl Mailbox {
    pub fn send(&self, cmd: Cmd) {
        // A stopped worker has nothing left to act on.
        let _ = self.tx.send(cmd);
        self.thread.unpark();
    }
}

pub struct WorkerHandle {
    pub tx: Mailbox,
    pub local: SocketAddr,
    thread: JoinHandle<()>,
    shared: Arc<Shared>,
}

impl WorkerHandle {
    pub fn send(&self, cmd: Cmd) {
        self.tx.send(cmd);
    }

    pub fn stop(self) {
        self.tx.send(Cmd::Stop);
        join("media", self.thread, &self.shared);
    }
}

/// Starts media thread `index` with a socket on `bind_ip`.
pub fn spawn(
    index: usize,
    bind_ip: IpAddr,
    env: Arc<MediaEnv>,
    shared: Arc<Shared>,
) -> anyhow::Result<WorkerHandle> {
    let socket = Socket::bind(bind_ip)?;
    let local = socket.local_addr()?;
    let (tx, rx) = mpsc::channel();
    let thread_shared = shared.clone();
    let thread = std::thread::Builder::new()
        .name(format!("bridge-{index}"))
        .spawn(move || Worker::new(index, socket, local, env, thread_shared).run(rx))?;
    Ok(WorkerHandle {
        tx: Mailbox {
            tx,
            thread: thread.thread().clone(),
        },
        local,
        thread,
        shared,
    })
}

struct Slot {
    sid: String,
    session: BridgeSession,
    phase: u32,
    /// The next frame number (of this worker's frame clock) to send.
    next_frame: Option<u64>,
    remote: Option<SocketAddr>,
}

struct Worker {
    index: usize,
    socket: Socket,
    local: SocketAddr,
    env: Arc<MediaEnv>,
    shared: Arc<Shared>,
    slots: Vec<Option<Slot>>,
    by_sid: HashMap<String, usize>,
    by_source: HashMap<SocketAddr, usize>,
    /// The frame clock's origin: frame n of phase p is due at epoch + n·20 ms + p·5 ms.
    epoch: Instant,
    added: u32,
    send_errors: u64,
    /// Some session is connecting (set on adding one, recomputed every tick).
    connecting: bool,
}

impl Worker {
    fn new(
        index: usize,
        socket: Socket,
        local: SocketAddr,
        env: Arc<MediaEnv>,
        shared: Arc<Shared>,
    ) -> Worker {
        Worker {
            index,
            socket,
            local,
            env,
            shared,
            slots: Vec::new(),
            by_sid: HashMap::new(),
            by_source: HashMap::new(),
            epoch: Instant::now(),
            added: 0,
            send_errors: 0,
            connecting: false,
        }
    }

    fn run(mut self, cmds: mpsc::Receiver<Cmd>) {
        let mut buf = vec![0u8; 2048];
        let mut next_tick = Instant::now() + TICK;
        let mut next_publish = Instant::now() + PUBLISH;
        'run: loop {
            loop {
                match cmds.try_recv() {
                    Ok(Cmd::Stop) | Err(TryRecvError::Disconnected) => break 'run,
                    Ok(cmd) => self.command(cmd),
                    Err(TryRecvError::Empty) => break,
                }
            }
            self.socket.sync_clocks();
            for _ in 0..MAX_READ {
                match self.socket.recv(&mut buf) {
                    Ok(Some((n, from, at))) => self.datagram(at, from, &buf[..n]),
                    Ok(None) | Err(_) => break,
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                self.tick(now);
                // A late tick is caught up by the frame clock, not by a burst of ticks.
                next_tick = (next_tick + TICK).max(now + TICK / 2);
                if now >= next_publish {
                    next_publish = now + PUBLISH;
                    self.publish_all();
                }
            }
            let mut wait = next_tick.saturating_duration_since(Instant::now());
            if self.connecting {
                wait = wait.min(HANDSHAKE_POLL);
            }
            if !wait.is_zero() {
                // Woken early by a command (Mailbox::send unparks).
                std::thread::park_timeout(wait);
            }
        }
        for i in 0..self.slots.len() {
            if self.slots[i].is_some() {
                self.end(i, EndedBy::Stopped);
            }
        }
        self.publish_cpu();
    }

    fn command(&mut self, cmd: Cmd) {
        let now = Instant::now();
        match cmd {
            Cmd::Add {
                sid,
                ice,
                speakers,
                tone,
            } => {
                let phase = self.added;
                self.added = self.added.wrapping_add(1);
                match BridgeSession::new(now, self.env.clone(), self.local, ice, &speakers, phase) {
                    Ok(mut session) => {
                        session.rx.tone_hz = tone;
                        let i = self
                            .slots
                            .iter()
                            .position(Option::is_none)
                            .unwrap_or_else(|| {
                                self.slots.push(None);
                                self.slots.len() - 1
                            });
                        self.slots[i] = Some(Slot {
                            sid: sid.clone(),
                            session,
                            phase: phase % PHASES,
                            next_frame: None,
                            remote: None,
                        });
                        self.by_sid.insert(sid, i);
                        self.connecting = true;
                        self.flush(i);
                    }
                    Err(e) => self.shared.update(|s| {
                        if let Some(r) = s.sessions.get_mut(&sid) {
                            r.ended = Some((now, EndedBy::Failed(e)));
                        }
                    }),
                }
            }
            Cmd::Transport { sid, transport } => {
                let Some(i) = self.slot_of(&sid) else { return };
                if let (Some(ufrag), Some(pass)) = (transport.ufrag, transport.pwd) {
                    if let Some(slot) = &mut self.slots[i] {
                        slot.session.set_remote_ice(
                            now,
                            IceCreds { ufrag, pass },
                            &transport.candidates,
                        );
                    }
                    self.flush(i);
                }
            }
            Cmd::Accept {
                sid,
                fingerprint,
                ssrc,
            } => {
                let Some(i) = self.slot_of(&sid) else { return };
                if let Some(slot) = &mut self.slots[i] {
                    slot.session.accept(fingerprint.as_ref(), ssrc);
                }
                self.flush(i);
            }
            Cmd::End { sid, by } => {
                if let Some(i) = self.slot_of(&sid) {
                    self.end(i, by);
                }
            }
            Cmd::Tone { sid, hz } => {
                if let Some(i) = self.slot_of(&sid) {
                    if let Some(slot) = &mut self.slots[i] {
                        slot.session.rx.tone_hz = Some(hz);
                    }
                }
            }
            Cmd::Record { sid, frames, reply } => match self.slot_of(&sid) {
                Some(i) => {
                    if let Some(slot) = &mut self.slots[i] {
                        slot.session.rx.record(frames, reply);
                    }
                }
                None => {
                    let _ = reply.send(Recording::default());
                }
            },
            // No session: the reply is dropped, which its receiver sees.
            Cmd::Click { sid, click, reply } => {
                if let Some(slot) = self.slot_of(&sid).and_then(|i| self.slots[i].as_mut()) {
                    slot.session.inject_click(click, reply);
                }
            }
            Cmd::Stop => {}
        }
    }

    fn slot_of(&self, sid: &str) -> Option<usize> {
        self.by_sid.get(sid).copied()
    }

    fn datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let known = self.by_source.get(&from).copied().filter(|&i| {
            self.slots[i]
                .as_ref()
                .is_some_and(|s| s.remote == Some(from))
        });
        let i = match known {
            Some(i) => i,
            None => {
                // A new source: the session whose `Rtc` takes it (STUN by our ufrag).
                let found = self.slots.iter().position(|s| {
                    s.as_ref()
                        .is_some_and(|s| s.session.accepts(now, from, self.local, data))
                });
                let Some(i) = found else { return };
                if let Some(slot) = &mut self.slots[i] {
                    if let Some(old) = slot.remote.replace(from) {
                        self.by_source.remove(&old);
                    }
                }
                self.by_source.insert(from, i);
                i
            }
        };
        if let Some(slot) = &mut self.slots[i] {
            slot.session.handle_receive(now, from, self.local, data);
        }
        self.flush(i);
    }

    fn tick(&mut self, now: Instant) {
        let since = now.saturating_duration_since(self.epoch);
        self.connecting = false;
        for i in 0..self.slots.len() {
            let Some(slot) = &mut self.slots[i] else {
                continue;
            };
            if slot.session.poll_timeout().is_some_and(|t| t <= now) {
                slot.session.handle_timeout(now);
            }
            self.connecting |= !slot.session.is_connected();
            if slot.session.is_connected() {
                let offset = TICK * slot.phase;
                let due = since.saturating_sub(offset).as_nanos() / FRAME.as_nanos();
                let due = due as u64;
                let next = *slot.next_frame.get_or_insert(due);
                if next <= due {
                    let behind = due - next + 1;
                    let send = behind.min(MAX_CATCH_UP);
                    if behind > send {
                        slot.session.skip_frames(behind - send);
                    }
                    for _ in 0..send {
                        slot.session.send_frame(now);
                    }
                    slot.next_frame = Some(due + 1);
                }
            }
            self.flush(i);
        }
    }

    /// Sends what session `i` queued and takes its events.
    fn flush(&mut self, i: usize) {
        let Some(slot) = &mut self.slots[i] else {
            return;
        };
        // A click's send time: just before its datagram goes to the socket, as the phone's.
        let clicked = slot
            .session
            .take_click_written()
            .map(|reply| (reply, Instant::now()));
        while let Some(d) = slot.session.poll_transmit() {
            if self.socket.send_to(&d.payload, d.to).is_err() {
                self.send_errors += 1;
            }
        }
        if let Some((reply, at)) = clicked {
            let _ = reply.send(at);
        }
        let mut events = Vec::new();
        while let Some(e) = slot.session.poll_event() {
            events.push(e);
        }
        for e in events {
            match e {
                SessionEvent::Connected => {
                    let now = Instant::now();
                    self.publish(i, |r| r.connected = Some(now));
                }
                SessionEvent::Failed(why) => self.end(i, EndedBy::Failed(why)),
            }
        }
    }

    fn end(&mut self, i: usize, by: EndedBy) {
        let Some(mut slot) = self.slots[i].take() else {
            return;
        };
        slot.session.close();
        while let Some(d) = slot.session.poll_transmit() {
            let _ = self.socket.send_to(&d.payload, d.to);
        }
        self.by_sid.remove(&slot.sid);
        if let Some(r) = slot.remote {
            self.by_source.remove(&r);
        }
        let now = Instant::now();
        let cpu = thread_cpu();
        self.shared.update(|s| {
            s.media_cpu[self.index] = cpu;
            if let Some(r) = s.sessions.get_mut(&slot.sid) {
                copy_figures(r, &slot.session);
                r.ended.get_or_insert((now, by));
            }
        });
    }

    /// Publishes session `i` changed by `f`, with the CPU time so far: a snapshot taken on
    /// this change sees the CPU time of the same moment.
    fn publish(&self, i: usize, f: impl FnOnce(&mut super::SessionReport)) {
        let Some(slot) = &self.slots[i] else { return };
        let cpu = thread_cpu();
        self.shared.update(|s| {
            s.media_cpu[self.index] = cpu;
            if let Some(r) = s.sessions.get_mut(&slot.sid) {
                copy_figures(r, &slot.session);
                f(r);
            }
        });
    }

    fn publish_all(&self) {
        let cpu = thread_cpu();
        let errors = self.send_errors;
        let index = self.index;
        self.shared.update(|s| {
            for slot in self.slots.iter().flatten() {
                if let Some(r) = s.sessions.get_mut(&slot.sid) {
                    copy_figures(r, &slot.session);
                }
            }
            s.media_cpu[index] = cpu;
            if errors > 0 && s.errors.iter().all(|e| !e.starts_with("media send")) {
                s.errors
                    .push(format!("media send errors on thread {index}"));
            }
        });
    }

    fn publish_cpu(&self) {
        let cpu = thread_cpu();
        let index = self.index;
        self.shared.update(|s| s.media_cpu[index] = cpu);
    }
}

fn copy_figures(r: &mut super::SessionReport, s: &BridgeSession) {
    r.rx = s.rx.stats.clone();
    r.tx_packets = s.tx_packets;
    r.tx_skipped = s.tx_skipped;
    r.datagrams = (s.datagrams_in, s.datagrams_out);
    r.tone = s.rx.last_tone.clone();
}

#[cfg(test)]
mod tests;
