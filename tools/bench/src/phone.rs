//! The phone side of the load: a minimal SIP UAC over UDP that places one call (INVITE with a
//! PCMU offer, ACK, BYE) with microsecond timestamps of the gateway's answers, and G.711 RTP both
//! ways. Sending is driven by one 20 ms ticker for every call ([`Ticker`]); each call's task only
//! receives. What a call heard is judged on the audio: a Goertzel filter at each expected
//! frequency over the last second.

use anyhow::{bail, Context, Result};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

use crate::procstat::realtime;

/// 20 ms of µ-law at 8 kHz.
pub const FRAME: usize = 160;
const FRAMES_PER_SECOND: usize = 50;

/// What the load needs to place a call.
#[derive(Debug, Clone)]
pub struct Dial {
    pub gateway: SocketAddr,
    pub room_header: String,
    pub room: String,
    /// The tone this phone sends, Hz (whole Hz, so one second of it loops seamlessly).
    pub tone_hz: u32,
}

/// The call's SIP figures, from the INVITE leaving to each answer arriving.
#[derive(Debug, Clone, Copy, Default)]
pub struct Setup {
    pub trying: Option<Duration>,
    pub answered: Option<Duration>,
}

/// What a call's phone received, so far.
#[derive(Debug, Clone, Default)]
pub struct Received {
    pub packets: u64,
    /// Sequence numbers skipped (RFC 3550 extended, no reordering expected on loopback).
    pub lost: u64,
    /// Packets that came more than 40 ms after the previous one (a 20 ms stream).
    pub late: u64,
    /// The last second of audio, for the tone check.
    pcm: Vec<i16>,
}

impl Received {
    /// Level (dBFS) of `hz` in the last second received; -inf before a second arrived.
    pub fn level_dbfs(&self, hz: f64) -> f64 {
        goertzel_dbfs(&self.pcm, 8000.0, hz)
    }
}

/// Audio a call received while asked for ([`Call::record`]), with when each packet arrived.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    pub samples: Vec<i16>,
    /// Each packet: where its samples start in `samples`, and its arrival (the kernel's receive
    /// timestamp).
    pub packets: Vec<(usize, Instant)>,
}

/// A recording in progress, shared with the call's receive task.
#[derive(Default)]
struct Tap {
    /// While set, the receive task reads datagrams with their kernel timestamps and records.
    on: AtomicBool,
    recording: Mutex<Option<(usize, Recording, oneshot::Sender<Recording>)>>,
}

/// One placed call: its SIP dialog and RTP socket.
pub struct Call {
    pub call_id: String,
    pub setup: Setup,
    sip: Arc<UdpSocket>,
    rtp: Arc<UdpSocket>,
    gateway: SocketAddr,
    /// Where the gateway wants our RTP (its SDP answer).
    pub media_to: SocketAddr,
    bye: String,
    pub received: Arc<Mutex<Received>>,
    receiver: tokio::task::JoinHandle<()>,
    tap: Arc<Tap>,
}

fn random_token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Places a call and waits for the 200 OK (then ACKs it and starts receiving RTP).
pub async fn place(dial: &Dial, timeout: Duration) -> Result<Call> {
    let sip = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    let rtp = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    let (local, rtp_port) = (sip.local_addr()?, rtp.local_addr()?.port());
    let call_id = format!("{}@loadgen", random_token());
    let (from_tag, branch) = (random_token(), format!("z9hG4bK{}", random_token()));
    let target = format!("sip:{}@{}", dial.room, dial.gateway);
    let sdp = format!(
        "v=0\r\no=loadgen 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
    );
    let head = |method: &str, cseq: u32, branch: &str, to_tag: Option<&str>| {
        format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\nFrom: \"Load {tone}\" <sip:load@127.0.0.1>;tag={from_tag}\r\n\
             To: <{target}>{to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
             Contact: <sip:load@{local}>\r\n",
            tone = dial.tone_hz,
            to = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default(),
        )
    };
    let invite = format!(
        "{}{}: {}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        head("INVITE", 1, &branch, None),
        dial.room_header,
        dial.room,
        sdp.len()
    );
    let start = Instant::now();
    let deadline = start + timeout;
    let mut setup = Setup::default();
    let mut buf = vec![0u8; 4096];
    // RFC 3261 timer A: retransmit the INVITE until something answers.
    let mut resend_at = start;
    let mut interval = Duration::from_millis(500);
    let (to_tag, answer) = loop {
        let now = Instant::now();
        if now >= deadline {
            bail!("no 200 OK for {call_id} within {timeout:?}");
        }
        if setup.trying.is_none() && now >= resend_at {
            sip.send_to(invite.as_bytes(), dial.gateway).await?;
            resend_at = now + interval;
            interval *= 2;
        }
        let wait = resend_at.min(deadline).saturating_duration_since(now);
        let Ok(received) =
            tokio::time::timeout(wait.max(Duration::from_millis(1)), sip.recv_from(&mut buf)).await
        else {
            continue;
        };
        let (n, _) = received?;
        let at = start.elapsed();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        let Some(status) = status_of(&text) else {
            continue; // a request (e.g. OPTIONS): not ours to answer here
        };
        match status {
            100..=199 => {
                setup.trying.get_or_insert(at);
            }
            200..=299 => {
                setup.answered = Some(at);
                let tag = header(&text, "To")
                    .and_then(|to| to.split(";tag=").nth(1))
                    .map(|t| t.split(';').next().unwrap_or(t).trim().to_string())
                    .context("200 OK without a To tag")?;
                break (tag, text);
            }
            _ => bail!(
                "the gateway refused {call_id}: {}",
                text.lines().next().unwrap_or("")
            ),
        }
    };
    let ack = format!(
        "{}Content-Length: 0\r\n\r\n",
        head(
            "ACK",
            1,
            &format!("z9hG4bK{}", random_token()),
            Some(&to_tag)
        )
    );
    sip.send_to(ack.as_bytes(), dial.gateway).await?;
    let media_to = sdp_address(&answer).context("no audio address in the 200 OK's SDP")?;
    let bye = format!(
        "{}Content-Length: 0\r\n\r\n",
        head(
            "BYE",
            2,
            &format!("z9hG4bK{}", random_token()),
            Some(&to_tag)
        )
    );
    let received = Arc::new(Mutex::new(Received::default()));
    let tap = Arc::new(Tap::default());
    let receiver = tokio::spawn(receive(rtp.clone(), received.clone(), tap.clone()));
    Ok(Call {
        call_id,
        setup,
        sip,
        rtp,
        gateway: dial.gateway,
        media_to,
        bye,
        received,
        receiver,
        tap,
    })
}

impl Call {
    /// Records the next `packets` packets received (from the first read after this call), with
    /// their arrival times; the recording arrives on the returned channel. Replaces a recording
    /// in progress (whose channel is then dropped).
    pub fn record(&self, packets: usize) -> oneshot::Receiver<Recording> {
        let (tx, rx) = oneshot::channel();
        // Arrival times from the kernel, not from when the task got to the datagram. Should the
        // option be refused, the reading time stands in.
        let _ = set_timestamps(&self.rtp);
        *lock(&self.tap.recording) = Some((packets.max(1), Recording::default(), tx));
        self.tap.on.store(true, Ordering::Relaxed);
        rx
    }

    /// Sends the BYE and waits for its 200 (or `timeout`).
    pub async fn hang_up(self, timeout: Duration) -> Result<()> {
        self.receiver.abort();
        self.sip.send_to(self.bye.as_bytes(), self.gateway).await?;
        let mut buf = vec![0u8; 4096];
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (n, _) = tokio::time::timeout(left, self.sip.recv_from(&mut buf))
                .await
                .with_context(|| format!("no answer to the BYE of {}", self.call_id))??;
            let text = String::from_utf8_lossy(&buf[..n]);
            if text.contains("CSeq: 2 BYE") && status_of(&text).is_some_and(|s| s >= 200) {
                return Ok(());
            }
        }
    }
}

async fn receive(rtp: Arc<UdpSocket>, into: Arc<Mutex<Received>>, tap: Arc<Tap>) {
    let mut buf = vec![0u8; 2048];
    let mut last: Option<(u16, Instant)> = None;
    loop {
        // Only a call being recorded reads with timestamps: the load's calls are unchanged.
        let recording = tap.on.load(Ordering::Relaxed);
        let (n, stamp) = if recording {
            match recv_stamped(&rtp, &mut buf).await {
                Ok(r) => r,
                Err(_) => return,
            }
        } else {
            match rtp.recv_from(&mut buf).await {
                Ok((n, _)) => (n, None),
                Err(_) => return,
            }
        };
        let now = Instant::now();
        // RTP version 2, PCMU, no CSRCs or extensions expected from the gateway.
        if n < 12 || buf[0] >> 6 != 2 || buf[1] & 0x7F != 0 {
            continue;
        }
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let mut r = into.lock().unwrap_or_else(|p| p.into_inner());
        r.packets += 1;
        if let Some((prev, at)) = last {
            let step = seq.wrapping_sub(prev);
            if (2..1000).contains(&step) {
                r.lost += u64::from(step - 1);
            }
            if now - at > Duration::from_millis(40) {
                r.late += 1;
            }
        }
        last = Some((seq, now));
        r.pcm.extend(buf[12..n].iter().map(|&u| ulaw_decode(u)));
        let excess = r.pcm.len().saturating_sub(FRAMES_PER_SECOND * FRAME);
        r.pcm.drain(..excess);
        drop(r);
        if recording {
            tap.take(&buf[12..n], stamp.unwrap_or(now));
        }
    }
}

impl Tap {
    fn take(&self, payload: &[u8], at: Instant) {
        let mut slot = lock(&self.recording);
        let Some((left, rec, _)) = slot.as_mut() else {
            return;
        };
        rec.packets.push((rec.samples.len(), at));
        rec.samples.extend(payload.iter().map(|&u| ulaw_decode(u)));
        *left -= 1;
        if *left == 0 {
            self.on.store(false, Ordering::Relaxed);
            if let Some((_, rec, reply)) = slot.take() {
                let _ = reply.send(rec);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `SO_TIMESTAMPNS` (= `SCM_TIMESTAMPNS`) on Linux; the libc crate does not export it for every
/// target.
const SO_TIMESTAMPNS: libc::c_int = 35;

fn set_timestamps(socket: &UdpSocket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket and a pointer to a c_int of the length given.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Receives a datagram into `buf` with its kernel receive timestamp, if the kernel gave one.
async fn recv_stamped(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> std::io::Result<(usize, Option<Instant>)> {
    use std::os::fd::AsRawFd;
    let fd = socket.as_raw_fd();
    socket
        .async_io(tokio::io::Interest::READABLE, || recvmsg_stamped(fd, buf))
        .await
}

fn recvmsg_stamped(fd: libc::c_int, buf: &mut [u8]) -> std::io::Result<(usize, Option<Instant>)> {
    // SAFETY: every pointer handed to recvmsg points into live locals of the right size; the
    // control buffer is 8-aligned as cmsghdr requires.
    unsafe {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut control = [0u64; 8];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        let n = libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT);
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut stamp = None;
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let c = &*cmsg;
            if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == SO_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg) as *const libc::timespec);
                stamp = Some(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
        // The stamp is on the realtime clock: it arrived this long before now.
        let at = stamp.and_then(|s| {
            let (real, now) = (realtime(), Instant::now());
            now.checked_sub(real.saturating_sub(s))
        });
        Ok((n as usize, at))
    }
}

/// Sends every call's next 20 ms of tone, all calls on one timer (no per-call timers).
pub struct Ticker {
    calls: Arc<Mutex<Vec<Stream>>>,
    task: tokio::task::JoinHandle<()>,
}

struct Stream {
    rtp: Arc<UdpSocket>,
    to: SocketAddr,
    /// One second of the call's tone in µ-law: loops seamlessly for whole-Hz tones.
    tone: Arc<Vec<u8>>,
    seq: u16,
    ssrc: u32,
    frame: usize,
    live: Arc<std::sync::atomic::AtomicBool>,
    /// A click to add onto the next frame, and who to tell when that packet left.
    click: Option<([i16; FRAME], oneshot::Sender<Instant>)>,
}

/// Stops its call's sending when dropped.
pub struct Sending(Arc<std::sync::atomic::AtomicBool>);

impl Drop for Sending {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Default for Ticker {
    fn default() -> Ticker {
        let calls: Arc<Mutex<Vec<Stream>>> = Arc::default();
        let task = tokio::spawn(tick(calls.clone()));
        Ticker { calls, task }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Ticker {
    /// Starts sending `call`'s tone until the returned guard is dropped.
    pub fn send(&self, call: &Call, tone_hz: u32) -> Sending {
        let live = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let tone: Vec<u8> = (0..8000)
            .map(|i| {
                let t = f64::from(i) / 8000.0;
                // -12 dBFS peak, as the lab's tones.
                let v = 0.25 * (2.0 * std::f64::consts::PI * f64::from(tone_hz) * t).sin();
                ulaw_encode((v * 32767.0) as i16)
            })
            .collect();
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Stream {
                rtp: call.rtp.clone(),
                to: call.media_to,
                tone: Arc::new(tone),
                seq: rand::random(),
                ssrc: rand::random(),
                frame: 0,
                live: live.clone(),
                click: None,
            });
        Sending(live)
    }

    /// Adds `click` (linear PCM, one frame) onto the next frame of the call behind `sending`;
    /// the returned channel gets the instant that packet was handed to the socket (dropped if
    /// the call no longer sends).
    pub fn click_once(&self, sending: &Sending, click: [i16; FRAME]) -> oneshot::Receiver<Instant> {
        let (tx, rx) = oneshot::channel();
        let mut calls = lock(&self.calls);
        if let Some(s) = calls.iter_mut().find(|s| Arc::ptr_eq(&s.live, &sending.0)) {
            s.click = Some((click, tx));
        }
        rx
    }
}

/// Writes the RTP header of PCMU frame number `frame` (20 ms each, timestamps from 0) into the
/// first 12 bytes of `packet`.
pub fn pcmu_header(packet: &mut [u8], seq: u16, frame: usize, ssrc: u32) {
    packet[0] = 0x80;
    packet[1] = 0; // PCMU
    packet[2..4].copy_from_slice(&seq.to_be_bytes());
    let ts = (frame as u32).wrapping_mul(FRAME as u32);
    packet[4..8].copy_from_slice(&ts.to_be_bytes());
    packet[8..12].copy_from_slice(&ssrc.to_be_bytes());
}

async fn tick(calls: Arc<Mutex<Vec<Stream>>>) {
    let mut timer = tokio::time::interval(Duration::from_millis(20));
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut packet = vec![0u8; 12 + FRAME];
    loop {
        timer.tick().await;
        type Packet = (
            Arc<UdpSocket>,
            SocketAddr,
            Vec<u8>,
            Option<oneshot::Sender<Instant>>,
        );
        let batch: Vec<Packet> = {
            let mut calls = calls.lock().unwrap_or_else(|p| p.into_inner());
            calls.retain(|s| s.live.load(std::sync::atomic::Ordering::Relaxed));
            calls
                .iter_mut()
                .map(|s| {
                    pcmu_header(&mut packet, s.seq, s.frame, s.ssrc);
                    let at = (s.frame % FRAMES_PER_SECOND) * FRAME;
                    let tone = &s.tone[at..at + FRAME];
                    let clicked = s.click.take().map(|(click, reply)| {
                        for ((p, &u), &c) in packet[12..].iter_mut().zip(tone).zip(&click) {
                            *p = ulaw_encode(ulaw_decode(u).saturating_add(c));
                        }
                        reply
                    });
                    if clicked.is_none() {
                        packet[12..].copy_from_slice(tone);
                    }
                    s.seq = s.seq.wrapping_add(1);
                    s.frame += 1;
                    (s.rtp.clone(), s.to, packet.clone(), clicked)
                })
                .collect()
        };
        for (rtp, to, p, clicked) in batch {
            let at = Instant::now();
            let sent = rtp.send_to(&p, to).await;
            if let (Ok(_), Some(reply)) = (sent, clicked) {
                let _ = reply.send(at);
            }
        }
    }
}

fn status_of(msg: &str) -> Option<u16> {
    let first = msg.lines().next()?;
    let rest = first.strip_prefix("SIP/2.0 ")?;
    rest.get(..3)?.parse().ok()
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.lines().take_while(|l| !l.is_empty()).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// The audio destination of an SDP answer: the session's (or media's) c= address and the audio
/// m= port.
fn sdp_address(msg: &str) -> Option<SocketAddr> {
    let body = msg.split("\r\n\r\n").nth(1)?;
    let ip = body
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))?
        .trim()
        .parse()
        .ok()?;
    let port = body
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))?
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    Some(SocketAddr::new(ip, port))
}

/// µ-law, ITU-T G.711.
pub fn ulaw_encode(s: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32_635;
    let mut v = i32::from(s);
    let sign = if v < 0 {
        v = -v;
        0x80
    } else {
        0
    };
    v = v.min(CLIP) + BIAS;
    // The segment: where the highest set bit is, above bit 7.
    let exponent = (31 - v.leading_zeros() as i32 - 7).clamp(0, 7);
    let mantissa = (v >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

pub fn ulaw_decode(u: u8) -> i16 {
    let u = !u;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0F);
    let v = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if u & 0x80 != 0 {
        -v as i16
    } else {
        v as i16
    }
}

/// Level of one frequency in `pcm`, dBFS of a full-scale sine (Goertzel over the whole buffer).
pub fn goertzel_dbfs(pcm: &[i16], rate: f64, hz: f64) -> f64 {
    if pcm.is_empty() {
        return f64::NEG_INFINITY;
    }
    let w = 2.0 * std::f64::consts::PI * hz / rate;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in pcm {
        let s = f64::from(x) / 32768.0 + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    // A full-scale sine of N samples gives power (N/2)².
    let amplitude = 2.0 * power.max(0.0).sqrt() / pcm.len() as f64;
    20.0 * amplitude.max(1e-12).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn goertzel_finds_a_tone_at_its_level_and_not_its_neighbour() {
        let pcm: Vec<i16> = (0..8000)
            .map(|i| {
                (0.25 * 32767.0 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 8000.0).sin())
                    as i16
            })
            .collect();
        let at = goertzel_dbfs(&pcm, 8000.0, 440.0);
        assert!((at - -12.0).abs() < 0.5, "{at}");
        assert!(goertzel_dbfs(&pcm, 8000.0, 600.0) < -60.0);
        assert_eq!(goertzel_dbfs(&[], 8000.0, 440.0), f64::NEG_INFINITY);
    }

    #[test]
    fn ulaw_round_trips_within_its_quantisation() {
        assert_eq!(ulaw_encode(0), 0xFF);
        for x in [-32_000i16, -1000, -5, 0, 7, 1000, 12_345, 32_767] {
            let back = ulaw_decode(ulaw_encode(x));
            let tolerance = (i32::from(x).abs() / 16).max(8);
            assert!(
                (i32::from(back) - i32::from(x)).abs() <= tolerance,
                "{x} → {back}"
            );
        }
    }

    #[test]
    fn the_answer_gives_the_status_the_to_tag_and_the_media_address() {
        let ok = "SIP/2.0 200 OK\r\nTo: <sip:r@1.2.3.4>;tag=abc;x=y\r\nCSeq: 1 INVITE\r\n\r\n\
                  v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 20002 RTP/AVP 0\r\n";
        assert_eq!(status_of(ok), Some(200));
        assert_eq!(header(ok, "to"), Some("<sip:r@1.2.3.4>;tag=abc;x=y"));
        assert_eq!(sdp_address(ok), Some("127.0.0.1:20002".parse().unwrap()));
        assert_eq!(status_of("INVITE sip:x SIP/2.0\r\n"), None);
    }
}
