//! A media thread of the bridge: one UDP socket and one timer for all its sessions. Datagrams are
//! routed to their session by source address (learnt from the first datagram a session's `Rtc`
//! accepts, so only a new source costs a scan); every 5 ms a quarter of the sessions sends its
//! next 20 ms of every speaker, so the sends are spread over the frame.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use str0m::IceCreds;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::session::{BridgeSession, MediaEnv, SessionEvent};
use super::stanzas::{RemoteFingerprint, RemoteTransport};
use super::{join, thread_cpu, EndedBy, Recording, Shared};

/// The send timer's period, and how many groups share the 20 ms frame.
const TICK: Duration = Duration::from_millis(5);
const PHASES: u32 = 4;
const FRAME: Duration = Duration::from_millis(20);
/// Frames a late session catches up in one tick; beyond that they are skipped.
const MAX_CATCH_UP: u64 = 3;
/// How often every session's figures are published.
const PUBLISH: Duration = Duration::from_millis(250);
/// Receive buffer asked for (as root, beyond rmem_max): bursts from hundreds of calls.
const RCVBUF: libc::c_int = 8 << 20;

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
    Stop,
}

pub struct WorkerHandle {
    pub tx: mpsc::UnboundedSender<Cmd>,
    pub local: SocketAddr,
    thread: JoinHandle<()>,
    shared: Arc<Shared>,
}

impl WorkerHandle {
    pub fn send(&self, cmd: Cmd) {
        // A stopped worker has nothing left to act on.
        let _ = self.tx.send(cmd);
    }

    pub fn stop(self) {
        let _ = self.tx.send(Cmd::Stop);
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
    let socket = StdUdpSocket::bind(SocketAddr::new(bind_ip, 0))?;
    socket.set_nonblocking(true)?;
    grow_receive_buffer(&socket);
    let local = socket.local_addr()?;
    let (tx, rx) = mpsc::unbounded_channel();
    let thread_shared = shared.clone();
    let thread = std::thread::Builder::new()
        .name(format!("bridge-{index}"))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return thread_shared.error(format!("media thread {index}: {e}")),
            };
            rt.block_on(async move {
                let socket = match UdpSocket::from_std(socket) {
                    Ok(s) => s,
                    Err(e) => return thread_shared.error(format!("media thread {index}: {e}")),
                };
                Worker::new(index, socket, local, env, thread_shared)
                    .run(rx)
                    .await
            });
        })?;
    Ok(WorkerHandle {
        tx,
        local,
        thread,
        shared,
    })
}

fn grow_receive_buffer(socket: &StdUdpSocket) {
    let size = RCVBUF;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
        // SAFETY: setsockopt on a valid socket with a pointer to a c_int of the given length.
        let r = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                &size as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r == 0 {
            return;
        }
    }
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
    socket: UdpSocket,
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
}

impl Worker {
    fn new(
        index: usize,
        socket: UdpSocket,
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
        }
    }

    async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
        let mut buf = vec![0u8; 2048];
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + TICK, TICK);
        // A late tick is caught up by the frame clock, not by a burst of ticks.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut next_publish = Instant::now() + PUBLISH;
        loop {
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(Cmd::Stop) | None => break,
                    Some(cmd) => self.command(cmd),
                },
                r = self.socket.readable() => {
                    if r.is_err() {
                        continue;
                    }
                    // Everything queued now, then back to the timer and the commands.
                    for _ in 0..256 {
                        match self.socket.try_recv_from(&mut buf) {
                            Ok((n, from)) => self.datagram(Instant::now(), from, &buf[..n]),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            Err(_) => break,
                        }
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    self.tick(now);
                    if now >= next_publish {
                        next_publish = now + PUBLISH;
                        self.publish_all();
                    }
                }
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
                    slot.session.accept(now, fingerprint.as_ref(), ssrc);
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
        for i in 0..self.slots.len() {
            let Some(slot) = &mut self.slots[i] else {
                continue;
            };
            if slot.session.poll_timeout().is_some_and(|t| t <= now) {
                slot.session.handle_timeout(now);
            }
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
        while let Some(d) = slot.session.poll_transmit() {
            if self.socket.try_send_to(&d.payload, d.to).is_err() {
                self.send_errors += 1;
            }
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
            let _ = self.socket.try_send_to(&d.payload, d.to);
        }
        self.by_sid.remove(&slot.sid);
        if let Some(r) = slot.remote {
            self.by_source.remove(&r);
        }
        let now = Instant::now();
        self.shared.update(|s| {
            if let Some(r) = s.sessions.get_mut(&slot.sid) {
                copy_figures(r, &slot.session);
                r.ended.get_or_insert((now, by));
            }
        });
    }

    fn publish(&self, i: usize, f: impl FnOnce(&mut super::SessionReport)) {
        let Some(slot) = &self.slots[i] else { return };
        self.shared.update(|s| {
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
    r.tone = s.rx.last_tone.clone();
}
