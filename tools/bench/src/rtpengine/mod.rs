//! rtpengine side by side: the nearest real peer doing our gateway's media job. It bridges a
//! plain RTP/AVP PCMU phone to a WebRTC end (ICE, DTLS-SRTP, opus/48000/2), transcoding both
//! ways, userspace only (lab.md section 4). We set up N such calls through its NG protocol,
//! stream tones both ways and read its CPU from /proc over a hold, as the load run reads the
//! gateway's.
//!
//! Cheap on our side: the WebRTC ends are str0m sessions on one thread and one socket
//! ([`web`]); the phones are a tokio task each for receiving and one shared 20 ms timer for
//! sending.
//!
//! rtpengine 10.5 encodes Opus through ffmpeg's libopus wrapper with ffmpeg's defaults
//! (complexity 10, application "audio"); its codec options are ignored for Opus in this
//! version ("XXX additional opus options" in lib/codeclib.c), so complexity cannot be set to
//! the gateway's 5.

mod ng;
mod web;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use gateway_lab::paths;
use gateway_lab::proc::Supervised;
use tokio::net::UdpSocket;

use crate::phone::{goertzel_dbfs, pcmu_header, ulaw_decode, ulaw_encode, FRAME};
use crate::procstat;
use ng::{dict, Value};

/// The phone's tone and the WebRTC end's.
pub const PHONE_HZ: u32 = 440;
pub const WEBRTC_HZ: u32 = 1900;
/// A tone counts as heard at this level or above (both are sent at -12 dBFS peak).
const HEARD_DBFS: f64 = -30.0;
/// rtpengine's media ports: clear of the gateway's 30000-39999.
const PORT_MIN: u16 = 40_000;
const PORT_MAX: u16 = 49_999;
const NG_TIMEOUT: Duration = Duration::from_secs(5);
/// After the last call is connected, before the hold.
const SETTLE: Duration = Duration::from_secs(2);

pub struct Options {
    pub calls: usize,
    pub hold: Duration,
    /// New calls per second.
    pub rate: f64,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    pub calls: usize,
    /// Share of one core rtpengine used over the hold.
    pub cores: f64,
    pub rss_kib: u64,
    /// RTP sequence gaps over the hold, at the phones and at the WebRTC ends.
    pub phone_lost: u64,
    pub webrtc_lost: u64,
    /// Packets sent and received over the hold, each side: received well under sent (the
    /// other side's) means rtpengine dropped them; sent under 50 per second per call means this
    /// load generator was starved of CPU and the figures are not worth much.
    pub phone_sent: u64,
    pub phone_packets: u64,
    pub webrtc_sent: u64,
    pub webrtc_packets: u64,
    /// Calls whose far end did not hear its tone (empty = all good).
    pub deaf: Vec<String>,
}

impl Outcome {
    /// rtpengine's CPU per call, in percent of one core.
    pub fn cpu_per_call_pct(&self) -> f64 {
        if self.calls == 0 {
            return f64::NAN;
        }
        100.0 * self.cores / self.calls as f64
    }
}

/// Whether the rtpengine binary is installed (the caller prints a line and skips otherwise).
pub fn available() -> bool {
    binary().is_some()
}

fn binary() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin".into());
    std::env::split_paths(&path)
        .map(|dir| dir.join("rtpengine"))
        .find(|p| p.is_file())
}

pub async fn run(opts: &Options) -> Result<Outcome> {
    anyhow::ensure!(opts.rate > 0.0, "the call rate must be positive");
    let dir = paths::run_dir("loadgen-rtpengine")?;
    let engine = Rtpengine::start(&dir).await?;
    let ng = engine.client();
    let webrtc = web::WebSide::start(f64::from(WEBRTC_HZ), f64::from(PHONE_HZ))?;
    let ticker = Ticker::start(PHONE_HZ);

    // Calls are placed at the rate asked, each set up concurrently with the next.
    let mut setups = Vec::with_capacity(opts.calls);
    let webrtc = Arc::new(webrtc);
    let gap = Duration::from_secs_f64(1.0 / opts.rate);
    let start = tokio::time::Instant::now();
    for i in 0..opts.calls {
        tokio::time::sleep_until(start + gap.mul_f64(i as f64)).await;
        let (ng, webrtc) = (ng.clone(), webrtc.clone());
        setups.push(tokio::spawn(async move { set_up(i, &ng, &webrtc).await }));
    }
    let mut phones = Vec::with_capacity(opts.calls);
    let mut failures = Vec::new();
    for (i, s) in setups.into_iter().enumerate() {
        match s.await {
            Ok(Ok(phone)) => phones.push(phone),
            Ok(Err(e)) => failures.push(format!("call {i}: {e:#}")),
            Err(e) => failures.push(format!("call {i}: {e}")),
        }
    }
    let result = async {
        if !failures.is_empty() {
            bail!("calls not set up through rtpengine: {failures:?}");
        }
        for p in &phones {
            ticker.send(p);
        }
        wait_connected(&webrtc, opts.calls).await?;
        tokio::time::sleep(SETTLE).await;
        measure(&engine, &webrtc, &phones, &ticker, opts.hold).await
    }
    .await;
    // Tear down whatever happened: the calls, our ends, then rtpengine (its guard).
    drop(ticker);
    for p in &phones {
        let delete = dict([
            ("command", "delete".into()),
            ("call-id", p.call_id.clone().into()),
        ]);
        if let Err(e) = ng.request(&delete).await {
            if result.is_ok() {
                return Err(e.context(format!("deleting {}", p.call_id)));
            }
        }
    }
    drop(phones);
    drop(webrtc);
    drop(engine);
    result
}

/// The hold: rtpengine's CPU and memory from /proc, both ends' counts before and after.
async fn measure(
    engine: &Rtpengine,
    webrtc: &web::WebSide,
    phones: &[Phone],
    ticker: &Ticker,
    hold: Duration,
) -> Result<Outcome> {
    let pid = engine.process.pid();
    let web0 = webrtc.snapshot().await?;
    let phone0: Vec<PhoneRx> = phones.iter().map(Phone::received).collect();
    let sent0 = ticker.sent();
    let cpu0 = procstat::cpu_time(pid)?;
    let t0 = Instant::now();
    tokio::time::sleep(hold).await;
    let cpu1 = procstat::cpu_time(pid)?;
    let wall = t0.elapsed();
    let rss_kib = procstat::rss_kib(pid)?;
    let web1 = webrtc.snapshot().await?;
    let phone1: Vec<PhoneRx> = phones.iter().map(Phone::received).collect();
    let phone_sent = ticker.sent() - sent0;

    let mut deaf = Vec::new();
    // The tone check reads the last second received, which a stream that stopped keeps: a call
    // that got under half its packets over the hold did not hear either.
    let expected = (wall.as_secs_f64() * 50.0) as u64;
    let (mut phone_lost, mut phone_packets) = (0, 0);
    for ((p, before), after) in phones.iter().zip(&phone0).zip(&phone1) {
        phone_lost += after.lost - before.lost;
        phone_packets += after.packets - before.packets;
        let got = after.packets - before.packets;
        let level = goertzel_dbfs(&after.pcm, 8000.0, f64::from(WEBRTC_HZ));
        if got < expected / 2 {
            deaf.push(format!(
                "call {} phone: {got} packets of ~{expected}",
                p.call
            ));
        } else if level < HEARD_DBFS {
            deaf.push(format!(
                "call {} phone: {WEBRTC_HZ} Hz at {level:.1} dBFS",
                p.call
            ));
        }
    }
    let (mut webrtc_lost, mut webrtc_packets, mut webrtc_sent) = (0, 0, 0);
    for (before, after) in web0.iter().zip(&web1) {
        webrtc_lost += after.lost - before.lost;
        webrtc_sent += after.sent - before.sent;
        webrtc_packets += after.packets - before.packets;
        let got = after.packets - before.packets;
        if let Some(why) = &after.failed {
            deaf.push(format!("call {} WebRTC end failed: {why}", after.call));
        } else if got < expected / 2 {
            deaf.push(format!(
                "call {} WebRTC end: {got} packets of ~{expected}",
                after.call
            ));
        } else if after.heard_dbfs < HEARD_DBFS {
            deaf.push(format!(
                "call {} WebRTC end: {PHONE_HZ} Hz at {:.1} dBFS",
                after.call, after.heard_dbfs
            ));
        }
    }
    Ok(Outcome {
        calls: phones.len(),
        cores: (cpu1.saturating_sub(cpu0)).as_secs_f64() / wall.as_secs_f64(),
        rss_kib,
        phone_lost,
        webrtc_lost,
        phone_sent,
        phone_packets,
        webrtc_sent,
        webrtc_packets,
        deaf,
    })
}

async fn wait_connected(webrtc: &web::WebSide, calls: usize) -> Result<()> {
    // Beyond the sessions' own connect timeout, so theirs is the error reported.
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let stats = webrtc.snapshot().await?;
        let failed: Vec<String> = stats
            .iter()
            .filter_map(|s| Some(format!("call {}: {}", s.call, s.failed.as_ref()?)))
            .collect();
        if !failed.is_empty() {
            bail!("WebRTC ends failed: {failed:?}");
        }
        let connected = stats.iter().filter(|s| s.connected).count();
        if connected == calls {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("only {connected} of {calls} WebRTC ends connected to rtpengine");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One call: the phone's PCMU offer through rtpengine to the WebRTC end and its answer back.
async fn set_up(call: usize, ng: &ng::Client, webrtc: &web::WebSide) -> Result<Phone> {
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await?);
    let port = socket.local_addr()?.port();
    let call_id = format!("loadgen-{call}-{:08x}@rtpengine", rand::random::<u32>());
    let phone_offer = format!(
        "v=0\r\no=loadgen 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n"
    );
    // The flags that make rtpengine a PCMU ⇄ opus/48000/2 WebRTC bridge (lab.md section 4).
    let offer = dict([
        ("command", "offer".into()),
        ("call-id", call_id.clone().into()),
        ("from-tag", "phone".into()),
        ("sdp", phone_offer.into()),
        ("transport-protocol", "UDP/TLS/RTP/SAVPF".into()),
        ("ICE", "force".into()),
        ("SDES", vec!["off"].into()),
        ("rtcp-mux", vec!["offer", "require"].into()),
        ("flags", vec!["generate-mid"].into()),
        (
            "codec",
            dict([
                ("transcode", vec!["opus/48000/2"].into()),
                ("mask", vec!["PCMU", "PCMA"].into()),
            ]),
        ),
    ]);
    let reply = ng.request(&offer).await?;
    let web_offer = sdp_of(&reply)?;
    let web_answer = webrtc
        .add(call, web_offer.to_string())
        .await
        .context("the WebRTC end")?;
    let answer = dict([
        ("command", "answer".into()),
        ("call-id", call_id.clone().into()),
        ("from-tag", "phone".into()),
        ("to-tag", "webrtc".into()),
        ("sdp", web_answer.into()),
        ("transport-protocol", "RTP/AVP".into()),
        ("ICE", "remove".into()),
        ("rtcp-mux", vec!["demux"].into()),
    ]);
    let reply = ng.request(&answer).await?;
    let phone_answer = sdp_of(&reply)?;
    let media_to = sdp_address(phone_answer)
        .with_context(|| format!("no audio address in rtpengine's answer:\n{phone_answer}"))?;
    let received = Arc::new(Mutex::new(PhoneRx::default()));
    let receiver = tokio::spawn(receive(socket.clone(), received.clone()));
    Ok(Phone {
        call,
        call_id,
        socket,
        media_to,
        received,
        receiver,
    })
}

fn sdp_of(reply: &Value) -> Result<&str> {
    reply
        .get("sdp")
        .and_then(Value::as_str)
        .context("an NG reply without an SDP")
}

/// The audio destination of an SDP: the (session or media) c= address and the audio port.
fn sdp_address(sdp: &str) -> Option<SocketAddr> {
    let ip = sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("c=IN IP4 "))?
        .trim()
        .parse()
        .ok()?;
    let port = sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("m=audio "))?
        .split(' ')
        .next()?
        .parse()
        .ok()?;
    Some(SocketAddr::new(ip, port))
}

/// The rtpengine daemon of this run, stopped when dropped.
struct Rtpengine {
    process: Supervised,
    ng: SocketAddr,
}

impl Rtpengine {
    async fn start(dir: &Path) -> Result<Rtpengine> {
        let bin = binary().context("rtpengine is not installed (Debian rtpengine-daemon)")?;
        let ng_port = {
            let probe = std::net::UdpSocket::bind("127.0.0.1:0")?;
            probe.local_addr()?.port()
        };
        let config = dir.join("rtpengine.conf");
        std::fs::write(&config, config_text(ng_port))
            .with_context(|| format!("writing {}", config.display()))?;
        let mut cmd = Command::new(bin);
        cmd.arg(format!("--config-file={}", config.display()))
            .current_dir(dir);
        let mut process = Supervised::spawn("rtpengine", cmd, &dir.join("rtpengine.log"))?;
        let ng = SocketAddr::from(([127, 0, 0, 1], ng_port));
        // Ready when it answers a ping (it generates its DTLS certificate first).
        let probe = ng::Client::new(ng, Duration::from_millis(200));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            process.check_alive()?;
            if probe
                .request(&dict([("command", "ping".into())]))
                .await
                .is_ok()
            {
                break;
            }
            if Instant::now() >= deadline {
                bail!(
                    "rtpengine did not answer an NG ping on {ng}; log:\n{}",
                    process.log_tail(30)
                );
            }
        }
        Ok(Rtpengine { process, ng })
    }

    fn client(&self) -> ng::Client {
        ng::Client::new(self.ng, NG_TIMEOUT)
    }
}

/// lab.md's userspace-only configuration, on our ports.
fn config_text(ng_port: u16) -> String {
    format!(
        "[rtpengine]\n\
         # loadgen: userspace only (no kernel module, no iptables), loopback only.\n\
         table = -1\n\
         interface = 127.0.0.1\n\
         listen-ng = 127.0.0.1:{ng_port}\n\
         port-min = {PORT_MIN}\n\
         port-max = {PORT_MAX}\n\
         foreground = true\n\
         log-stderr = true\n\
         log-level = 5\n\
         num-threads = 2\n\
         media-num-threads = 1\n\
         delete-delay = 0\n\
         timeout = 60\n\
         silent-timeout = 3600\n\
         tos = 0\n"
    )
}

/// One call's phone: its RTP socket and what it received.
struct Phone {
    call: usize,
    call_id: String,
    socket: Arc<UdpSocket>,
    /// rtpengine's PCMU address for this call.
    media_to: SocketAddr,
    received: Arc<Mutex<PhoneRx>>,
    receiver: tokio::task::JoinHandle<()>,
}

impl Phone {
    fn received(&self) -> PhoneRx {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        self.receiver.abort();
    }
}

#[derive(Debug, Clone, Default)]
struct PhoneRx {
    packets: u64,
    lost: u64,
    last_seq: Option<u16>,
    /// The last second of audio.
    pcm: Vec<i16>,
}

impl PhoneRx {
    /// One datagram: counted and decoded if it is PCMU RTP (no CSRCs or extensions expected).
    fn datagram(&mut self, d: &[u8]) {
        if d.len() < 12 || d[0] >> 6 != 2 || d[1] & 0x7F != 0 {
            return;
        }
        let seq = u16::from_be_bytes([d[2], d[3]]);
        self.packets += 1;
        if let Some(prev) = self.last_seq {
            let step = seq.wrapping_sub(prev);
            if step == 0 || step >= 0x8000 {
                return; // repeated or reordered
            }
            self.lost += u64::from(step - 1);
        }
        self.last_seq = Some(seq);
        self.pcm.extend(d[12..].iter().map(|&u| ulaw_decode(u)));
        let excess = self.pcm.len().saturating_sub(8000);
        self.pcm.drain(..excess);
    }
}

async fn receive(socket: Arc<UdpSocket>, into: Arc<Mutex<PhoneRx>>) {
    let mut buf = vec![0u8; 2048];
    while let Ok((n, _)) = socket.recv_from(&mut buf).await {
        into.lock()
            .unwrap_or_else(|p| p.into_inner())
            .datagram(&buf[..n]);
    }
}

/// Every phone's next 20 ms of tone, all on one timer.
struct Ticker {
    streams: Arc<Mutex<Vec<PhoneTx>>>,
    sent: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

struct PhoneTx {
    socket: Arc<UdpSocket>,
    to: SocketAddr,
    seq: u16,
    ssrc: u32,
    frame: usize,
}

impl Ticker {
    fn start(tone_hz: u32) -> Ticker {
        // One second of the tone in µ-law, -12 dBFS peak: loops seamlessly for whole Hz.
        let tone: Arc<Vec<u8>> = Arc::new(
            (0..8000)
                .map(|i| {
                    let t = f64::from(i) / 8000.0;
                    let v = 0.25 * (2.0 * std::f64::consts::PI * f64::from(tone_hz) * t).sin();
                    ulaw_encode((v * 32767.0) as i16)
                })
                .collect(),
        );
        let streams: Arc<Mutex<Vec<PhoneTx>>> = Arc::default();
        let sent: Arc<AtomicU64> = Arc::default();
        let task = tokio::spawn(tick(streams.clone(), tone, sent.clone()));
        Ticker {
            streams,
            sent,
            task,
        }
    }

    /// Packets sent so far, every phone.
    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    fn send(&self, phone: &Phone) {
        self.streams
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(PhoneTx {
                socket: phone.socket.clone(),
                to: phone.media_to,
                seq: rand::random(),
                ssrc: rand::random(),
                frame: 0,
            });
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn tick(streams: Arc<Mutex<Vec<PhoneTx>>>, tone: Arc<Vec<u8>>, sent: Arc<AtomicU64>) {
    let mut timer = tokio::time::interval(Duration::from_millis(20));
    timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    loop {
        timer.tick().await;
        let batch: Vec<(Arc<UdpSocket>, SocketAddr, [u8; 12 + FRAME])> = {
            let mut streams = streams.lock().unwrap_or_else(|p| p.into_inner());
            streams
                .iter_mut()
                .map(|s| {
                    let mut packet = [0u8; 12 + FRAME];
                    pcmu_header(&mut packet, s.seq, s.frame, s.ssrc);
                    let at = (s.frame % 50) * FRAME;
                    packet[12..].copy_from_slice(&tone[at..at + FRAME]);
                    s.seq = s.seq.wrapping_add(1);
                    s.frame += 1;
                    (s.socket.clone(), s.to, packet)
                })
                .collect()
        };
        for (socket, to, p) in batch {
            if socket.send_to(&p, to).await.is_ok() {
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_phone_counts_gaps_and_keeps_the_last_second() {
        let mut rx = PhoneRx::default();
        let packet = |seq: u16| {
            let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
            p[2..4].copy_from_slice(&seq.to_be_bytes());
            p.extend([0xFFu8; FRAME]);
            p
        };
        for seq in [65_534, 65_535, 0, 3, 3, 2] {
            rx.datagram(&packet(seq));
        }
        assert_eq!((rx.packets, rx.lost), (6, 2));
        // Not RTP, or not PCMU: ignored.
        rx.datagram(&[0x80, 0xC8, 0, 1]);
        let mut rtcp = packet(4);
        rtcp[1] = 0xC8;
        rx.datagram(&rtcp);
        assert_eq!(rx.packets, 6);
        for seq in 4..100 {
            rx.datagram(&packet(seq));
        }
        assert_eq!(rx.pcm.len(), 8000);
    }

    #[test]
    fn the_config_and_the_answer_address() {
        let conf = config_text(23_456);
        assert!(conf.contains("listen-ng = 127.0.0.1:23456\n"));
        assert!(conf.contains("table = -1\n") && conf.contains("port-min = 40000\n"));
        let answer = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
                      m=audio 40020 RTP/AVP 0\r\nc=IN IP4 127.0.0.1\r\n";
        assert_eq!(
            sdp_address(answer),
            Some("127.0.0.1:40020".parse().unwrap())
        );
        assert_eq!(sdp_address("v=0\r\n"), None);
        let o = Outcome {
            calls: 4,
            cores: 0.2,
            rss_kib: 0,
            phone_lost: 0,
            webrtc_lost: 0,
            phone_sent: 0,
            phone_packets: 0,
            webrtc_sent: 0,
            webrtc_packets: 0,
            deaf: vec![],
        };
        assert!((o.cpu_per_call_pct() - 5.0).abs() < 1e-9);
    }

    /// The whole run against the installed rtpengine, in the lab's namespace:
    /// `tests/lab/in-netns.sh cargo test --offline -p gateway-bench rtpengine -- --ignored`
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    #[ignore = "needs rtpengine-daemon and the lab's network namespace"]
    async fn calls_through_rtpengine_hear_both_tones() {
        assert!(available(), "rtpengine is not installed");
        assert!(
            gateway_lab::net::in_private_netns(),
            "run inside tests/lab/in-netns.sh"
        );
        let out = run(&Options {
            calls: 3,
            hold: Duration::from_secs(2),
            rate: 10.0,
        })
        .await
        .unwrap();
        println!(
            "{out:?} → {:.2} % of a core per call",
            out.cpu_per_call_pct()
        );
        assert!(out.deaf.is_empty(), "{:?}", out.deaf);
        assert!(
            out.phone_packets > 200 && out.webrtc_packets > 200,
            "{out:?}"
        );
    }
}
