//! One load run: real Prosody, the Rust conference side with K speakers per room, the gateway
//! binary under test, and phones added step by step until a frame is lost or late at either end
//! (or the step limit). Each step is held while the gateway's CPU and memory are read from /proc
//! and both ends count what they received; every phone must hear every speaker's tone and every
//! room the phone's.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use gateway_lab::gateway::{Gateway, GatewayOptions};
use gateway_lab::paths;
use gateway_lab::prosody::Prosody;

use crate::conference::{Conference, ConferenceOptions, SpeakerSignal};
use crate::phone::{self, Call, Sending, Ticker};
use crate::procstat;

/// The phones' tone; the speakers' tones come from the conference side (1900 Hz and up).
pub const PHONE_HZ: u32 = 440;
/// A tone counts as heard at this level or above (sent at -12 dBFS peak).
const HEARD_DBFS: f64 = -30.0;
/// Clicks each way for the latency figure.
const CLICKS: usize = 5;

#[derive(Debug, Clone)]
pub struct Options {
    pub speakers: usize,
    /// Calls added per step.
    pub step: usize,
    /// The ramp stops after this many calls even when nothing was lost.
    pub max_calls: usize,
    /// New calls per second while a step's calls are placed.
    pub rate: f64,
    /// Seconds each step is measured.
    pub hold: Duration,
    pub gateway: PathBuf,
    /// The gateway's `xmpp.pool_size` (warm connections).
    pub pool_size: usize,
}

/// One held step of the ramp.
#[derive(Debug, Clone)]
pub struct Step {
    pub calls: usize,
    /// Share of one core the gateway used over the hold.
    pub gateway_cores: f64,
    /// Share of one core the conference side's threads used over the hold.
    pub conference_cores: f64,
    pub rss_kib: u64,
    /// Seconds measured.
    pub held_s: f64,
    /// Frames lost or late over the hold, on the phones and at the bridge.
    pub phone_lost: u64,
    pub phone_late: u64,
    pub bridge_lost: u64,
    pub bridge_late: u64,
    /// Tones not heard (at the end of the hold).
    pub deaf: Vec<String>,
}

/// Above this share of late frames a step counts as failed even without loss. Late is judged
/// where the packets are read, so on a shared two-core machine the load generator's, Prosody's
/// and the conference side's own scheduling add some; the strict figure is reported beside it.
pub const LATE_LIMIT: f64 = 0.01;

impl Step {
    /// Nothing lost, nothing late, every tone heard: the criterion.
    pub fn clean(&self) -> bool {
        self.late() == 0 && self.audio_ok()
    }

    /// Nothing lost and every tone heard; late frames under [`LATE_LIMIT`].
    pub fn audio_ok(&self) -> bool {
        self.phone_lost + self.bridge_lost == 0
            && self.deaf.is_empty()
            && self.late_share() <= LATE_LIMIT
    }

    pub fn late(&self) -> u64 {
        self.phone_late + self.bridge_late
    }

    /// Late frames over every frame both ends should have received in the hold.
    pub fn late_share(&self) -> f64 {
        self.late() as f64 / (self.calls as f64 * self.held_s * 50.0 * 2.0).max(1.0)
    }

    pub fn calls_per_core(&self) -> f64 {
        self.calls as f64 / self.gateway_cores.max(1e-9)
    }
}

/// A call's setup, from the phone (INVITE sent → answers) and from the gateway's log.
#[derive(Debug, Clone, Copy)]
pub struct SetupTimes {
    pub trying_ms: f64,
    pub answered_ms: f64,
    /// From the gateway's `invite` line (the MUC join goes out) to its `bridge offer` line (the
    /// focus's session-initiate read): the time spent waiting on XMPP.
    pub xmpp_wait_ms: Option<f64>,
}

impl SetupTimes {
    /// INVITE → 200 OK less the XMPP wait: what the gateway itself added.
    pub fn own_ms(&self) -> Option<f64> {
        self.xmpp_wait_ms.map(|w| self.answered_ms - w)
    }
}

#[derive(Debug, Clone)]
pub struct Run {
    pub speakers: usize,
    pub rss_idle_kib: u64,
    pub steps: Vec<Step>,
    pub setups: Vec<SetupTimes>,
    /// Gateway-added audio latency, one call on the idle gateway.
    pub latency: Option<crate::latency::Latency>,
    /// Calls that could not be placed or hung up.
    pub failures: Vec<String>,
}

impl Run {
    /// The largest step where nothing was lost or unheard and late frames stayed under
    /// [`LATE_LIMIT`]: the step calls per core are given for.
    pub fn best(&self) -> Option<&Step> {
        self.steps.iter().take_while(|s| s.audio_ok()).last()
    }

    /// The largest step where nothing at all was lost, late or unheard.
    pub fn best_strict(&self) -> Option<&Step> {
        self.steps.iter().take_while(|s| s.clean()).last()
    }

    /// The first step where a frame was lost or a tone unheard.
    pub fn first_loss(&self) -> Option<&Step> {
        self.steps
            .iter()
            .find(|s| s.phone_lost + s.bridge_lost > 0 || !s.deaf.is_empty())
    }

    /// RSS per call (KiB): the slope of RSS over calls, least squares over the idle point and
    /// every step.
    pub fn rss_per_call_kib(&self) -> f64 {
        let points: Vec<(f64, f64)> = std::iter::once((0.0, self.rss_idle_kib as f64))
            .chain(
                self.steps
                    .iter()
                    .map(|s| (s.calls as f64, s.rss_kib as f64)),
            )
            .collect();
        slope(&points)
    }
}

fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    if sxx == 0.0 {
        0.0
    } else {
        sxy / sxx
    }
}

struct Live {
    call: Call,
    room: String,
    _sending: Sending,
}

/// Runs the ramp for `opts.speakers` speakers per room.
pub async fn run(opts: &Options) -> Result<Run> {
    let dir = paths::run_dir(&format!("loadgen-k{}", opts.speakers))?;
    let prosody = Prosody::start(&dir)?;
    let conf_opts = ConferenceOptions {
        speaker_signal: SpeakerSignal::VoiceAndTone,
        phone_tone_hz: Some(f64::from(PHONE_HZ)),
        ..ConferenceOptions::for_prosody(&prosody, opts.speakers)
    };
    let conference = tokio::task::spawn_blocking(move || Conference::start(conf_opts))
        .await?
        .context("starting the conference side")?;
    let conference = std::sync::Arc::new(conference);
    let gw_opts = GatewayOptions::default()
        .env("JIGASI_PORT_MIN", "30000")
        .env("JIGASI_PORT_MAX", "39999")
        .set("xmpp.pool_size", &opts.pool_size.to_string());
    let mut gw = Gateway::start(&opts.gateway, &dir, &prosody, &gw_opts)
        .with_context(|| format!("starting {}", opts.gateway.display()))?;
    gw.wait_health(200, Duration::from_secs(20))?;
    wait_pool_full(&gw, opts.pool_size).await?;
    let rss_idle_kib = procstat::rss_kib(gw.pid())?;
    let gateway: std::net::SocketAddr = format!("127.0.0.1:{}", gw.sip_port).parse()?;
    let mut failures = Vec::new();
    let latency = match crate::latency::measure(gateway, &conference, "latency0", CLICKS).await {
        Ok(l) => Some(l),
        Err(e) => {
            failures.push(format!("latency: {e:#}"));
            None
        }
    };

    let ticker = Ticker::default();
    let mut live: Vec<Live> = Vec::new();
    let mut steps = Vec::new();
    while live.len() < opts.max_calls {
        let target = (live.len() + opts.step).min(opts.max_calls);
        let failed_before = failures.len();
        let placed = place_calls(gateway, live.len()..target, opts.rate, &conference).await;
        for (room, outcome) in placed {
            match outcome {
                Ok(call) => {
                    let sending = ticker.send(&call, PHONE_HZ);
                    live.push(Live {
                        call,
                        room,
                        _sending: sending,
                    });
                }
                Err(e) => failures.push(format!("{room}: {e:#}")),
            }
        }
        if failures.len() > failed_before {
            break;
        }
        let step = hold_step(&gw, &conference, &live, opts.hold).await?;
        println!(
            "  K={} {:>4} calls: gateway {:5.1} % of a core ({:.0} calls/core), conference side {:5.1} %, RSS {} KiB; lost/late phone {}/{} bridge {}/{} ({:.3} % late){}",
            opts.speakers,
            step.calls,
            step.gateway_cores * 100.0,
            step.calls_per_core(),
            step.conference_cores * 100.0,
            step.rss_kib,
            step.phone_lost,
            step.phone_late,
            step.bridge_lost,
            step.bridge_late,
            step.late_share() * 100.0,
            if step.deaf.is_empty() {
                String::new()
            } else {
                format!("; not heard: {}", step.deaf.join(", "))
            }
        );
        let ok = step.audio_ok();
        steps.push(step);
        if !ok {
            break;
        }
    }

    let setups = setup_times(&gw, &live);
    for l in live {
        if let Err(e) = l.call.hang_up(Duration::from_secs(10)).await {
            failures.push(format!("{}: hang-up: {e:#}", l.room));
        }
    }
    drop(ticker);
    gw.stop()?;
    Ok(Run {
        speakers: opts.speakers,
        rss_idle_kib,
        steps,
        setups,
        latency,
        failures,
    })
}

async fn wait_pool_full(gw: &Gateway, size: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = gw.api("/debug/resources")?;
        if r["xmpp_idle"].as_u64() == Some(size as u64) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the XMPP pool never filled: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Places the calls `range` (room `load<i>` each) at `rate` per second; waits for every answer
/// and for the bridge to have each session connected.
async fn place_calls(
    gateway: std::net::SocketAddr,
    range: std::ops::Range<usize>,
    rate: f64,
    conference: &std::sync::Arc<Conference>,
) -> Vec<(String, Result<Call>)> {
    let gap = Duration::from_secs_f64(1.0 / rate.max(0.1));
    let mut tasks = Vec::new();
    let mut next = tokio::time::Instant::now();
    for i in range {
        let room = format!("load{i}");
        conference.expect_tone(&room, f64::from(PHONE_HZ));
        tokio::time::sleep_until(next).await;
        next += gap;
        let dial = phone::Dial {
            gateway,
            room_header: "Jitsi-Conference-Room".into(),
            room: room.clone(),
            tone_hz: PHONE_HZ,
        };
        tasks.push((
            room,
            tokio::spawn(async move { phone::place(&dial, Duration::from_secs(30)).await }),
        ));
    }
    let mut out = Vec::new();
    for (room, task) in tasks {
        let outcome = match task.await {
            Ok(r) => r,
            Err(e) => Err(e.into()),
        };
        out.push((room, outcome));
    }
    let rooms: Vec<String> = out
        .iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(room, _)| room.clone())
        .collect();
    let conf = conference.clone();
    let connected = tokio::task::spawn_blocking(move || {
        conf.wait_for("every session connected", Duration::from_secs(30), |s| {
            rooms
                .iter()
                .all(|r| s.session(r, None).is_some_and(|x| x.connected.is_some()))
                .then_some(())
        })
    })
    .await;
    if let Err(e) = connected.map_err(anyhow::Error::from).and_then(|r| r) {
        out.push(("bridge".into(), Err(e)));
    }
    out
}

/// Lets a step settle, then measures it over `hold`.
async fn hold_step(
    gw: &Gateway,
    conference: &Conference,
    live: &[Live],
    hold: Duration,
) -> Result<Step> {
    // Two seconds for the new calls' jitter buffers and the tone readers to fill.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let phones0: Vec<(u64, u64)> = live.iter().map(|l| phone_counts(&l.call)).collect();
    let snap0 = conference.snapshot();
    let cpu0 = procstat::cpu_time(gw.pid())?;
    tokio::time::sleep(hold).await;
    let cpu1 = procstat::cpu_time(gw.pid())?;
    let snap1 = conference.snapshot();
    let rss_kib = procstat::rss_kib(gw.pid())?;
    let held = (snap1.at - snap0.at).as_secs_f64();

    let (mut phone_lost, mut phone_late) = (0, 0);
    let mut deaf = Vec::new();
    for (l, (lost0, late0)) in live.iter().zip(phones0) {
        let (lost1, late1) = phone_counts(&l.call);
        phone_lost += lost1 - lost0;
        phone_late += late1 - late0;
        let r = l.call.received.lock().unwrap_or_else(|p| p.into_inner());
        for &hz in conference.speaker_tones() {
            let level = r.level_dbfs(hz);
            if level < HEARD_DBFS {
                deaf.push(format!("{} phone: {hz} Hz at {level:.1} dBFS", l.room));
            }
        }
    }
    let before: HashMap<&str, (u64, u64)> = snap0
        .sessions
        .iter()
        .filter(|s| s.is_live())
        .map(|s| (s.room.as_str(), (s.rx.lost(), s.rx.late)))
        .collect();
    let (mut bridge_lost, mut bridge_late) = (0, 0);
    for l in live {
        let Some(s) = snap1.session(&l.room, None) else {
            deaf.push(format!("{}: no session at the bridge", l.room));
            continue;
        };
        let (lost0, late0) = before
            .get(s.room.as_str())
            .copied()
            .unwrap_or((s.rx.lost(), s.rx.late));
        bridge_lost += s.rx.lost() - lost0;
        bridge_late += s.rx.late - late0;
        let level = s
            .tone
            .as_ref()
            .and_then(|t| t.dbfs)
            .unwrap_or(f64::NEG_INFINITY);
        if level < HEARD_DBFS {
            deaf.push(format!(
                "{} bridge: {PHONE_HZ} Hz at {level:.1} dBFS",
                l.room
            ));
        }
    }
    Ok(Step {
        calls: live.len(),
        gateway_cores: (cpu1 - cpu0).as_secs_f64() / held,
        conference_cores: (snap1.cpu.total().as_secs_f64() - snap0.cpu.total().as_secs_f64())
            / held,
        rss_kib,
        held_s: held,
        phone_lost,
        phone_late,
        bridge_lost,
        bridge_late,
        deaf,
    })
}

fn phone_counts(call: &Call) -> (u64, u64) {
    let r = call.received.lock().unwrap_or_else(|p| p.into_inner());
    (r.lost, r.late)
}

/// Each call's setup from the phone, split with the gateway's log (JSON lines with µs times).
fn setup_times(gw: &Gateway, live: &[Live]) -> Vec<SetupTimes> {
    let mut invite: HashMap<String, f64> = HashMap::new();
    let mut offer: HashMap<String, f64> = HashMap::new();
    for line in gw.log_lines() {
        let Some(call_id) = line["span"]["call_id"].as_str() else {
            continue;
        };
        let Some(t) = line["timestamp"].as_str().and_then(seconds_of_day) else {
            continue;
        };
        match line["message"].as_str() {
            Some("invite") => {
                invite.insert(call_id.to_owned(), t);
            }
            Some("bridge offer") => {
                offer.entry(call_id.to_owned()).or_insert(t);
            }
            _ => {}
        }
    }
    live.iter()
        .filter_map(|l| {
            let s = l.call.setup;
            let wait = match (invite.get(&l.call.call_id), offer.get(&l.call.call_id)) {
                (Some(a), Some(b)) => Some((b - a) * 1000.0),
                _ => None,
            };
            Some(SetupTimes {
                trying_ms: s.trying?.as_secs_f64() * 1000.0,
                answered_ms: s.answered?.as_secs_f64() * 1000.0,
                xmpp_wait_ms: wait,
            })
        })
        .collect()
}

/// `2026-12-02T01:00:36.689373Z` → seconds since midnight, UTC (a setup spanning midnight
/// would come out wrong; a run lasts minutes).
fn seconds_of_day(ts: &str) -> Option<f64> {
    let time = ts.split('T').nth(1)?.trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_times_read_to_the_microsecond() {
        let t = seconds_of_day("2026-12-02T01:00:36.689373Z").unwrap();
        assert!((t - (3600.0 + 36.689373)).abs() < 1e-6);
        assert_eq!(seconds_of_day("garbage"), None);
    }

    #[test]
    fn the_memory_slope_is_per_call() {
        let pts = [(0.0, 1000.0), (10.0, 1100.0), (20.0, 1200.0)];
        assert!((slope(&pts) - 10.0).abs() < 1e-9);
        assert_eq!(slope(&[(5.0, 1.0)]), 0.0);
    }
}
