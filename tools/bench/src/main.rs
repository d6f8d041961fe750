//! `loadgen`: the load benchmark (issue 6, in progress). Measures the codec floor, starts the lab
//! (Prosody, a conference side, the gateway binary under test), places N concurrent dial-in calls
//! with real G.711 RTP, holds them, and prints what the gateway cost (CPU share of a core, calls
//! per core, RSS) beside the floor, the setup times and what each phone heard.
//!
//! Run inside the lab's namespace: `tests/lab/in-netns.sh target/debug/loadgen --calls 4`.

mod conference;
mod floor;
mod phone;
mod procstat;

use anyhow::{Context, Result};
use clap::Parser;
use gateway_lab::emulator::{self, EmulatorOptions, Participant};
use gateway_lab::gateway::{Gateway, GatewayOptions};
use gateway_lab::paths;
use gateway_lab::prosody::Prosody;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(name = "loadgen", about = "Load benchmark of the gateway")]
struct Cli {
    /// Only measure the codec floor on this machine and print it.
    #[arg(long)]
    floor_only: bool,
    /// Remote speakers (Opus streams from the bridge) per call.
    #[arg(long, default_value_t = 1)]
    speakers: usize,
    /// Opus encoder complexity, as the gateway's media.opus_complexity.
    #[arg(long, default_value_t = 5)]
    complexity: u8,
    /// Concurrent calls.
    #[arg(long, default_value_t = 4)]
    calls: usize,
    /// Seconds the calls are held while the gateway's CPU is measured.
    #[arg(long, default_value_t = 10)]
    hold: u64,
    /// The gateway binary under test.
    #[arg(long, default_value = "target/release/jitsi-sip-gateway")]
    gateway: PathBuf,
}

/// Tones of the room's speakers, and the phones' tone.
const SPEAKER_HZ: [u32; 5] = [600, 900, 1100, 1300, 1500];
const PHONE_HZ: u32 = 440;

fn main() -> Result<()> {
    let cli = Cli::parse();
    let floor = floor::measure(&floor::Work {
        speakers: cli.speakers,
        complexity: cli.complexity,
        bitrate: 20_000,
    })?;
    println!("{}", floor.table());
    if cli.floor_only {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let report = runtime.block_on(run(&cli))?;
    println!("{}", report.table(&floor));
    anyhow::ensure!(
        report.failures.is_empty(),
        "calls failed: {:?}",
        report.failures
    );
    Ok(())
}

struct Report {
    calls: usize,
    speakers: usize,
    /// Share of one core the gateway used while the calls were held.
    gateway_cores: f64,
    rss_idle_kib: u64,
    rss_loaded_kib: u64,
    trying_ms: Vec<f64>,
    answered_ms: Vec<f64>,
    lost: u64,
    late: u64,
    failures: Vec<String>,
}

impl Report {
    fn table(&self, floor: &floor::Floor) -> String {
        let per_core = self.calls as f64 / self.gateway_cores.max(1e-9);
        let pct = |v: &[f64], p: f64| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
            v.get(rank.clamp(1, v.len().max(1)) - 1)
                .copied()
                .unwrap_or(f64::NAN)
        };
        format!(
            "load: {} calls, {} speaker(s) each\n\
             \x20 gateway CPU                {:6.1} % of a core  → {:.0} calls per core\n\
             \x20 ratio to the codec floor   {:6.2}  ({:.0} calls per core)\n\
             \x20 RSS idle / loaded          {} KiB / {} KiB  ({:.0} KiB per call)\n\
             \x20 INVITE → 100 Trying        p50 {:.2} ms  p99 {:.2} ms\n\
             \x20 INVITE → 200 OK            p50 {:.1} ms  p99 {:.1} ms\n\
             \x20 phones: lost {} packets, late {}; failures: {}",
            self.calls,
            self.speakers,
            self.gateway_cores * 100.0,
            per_core,
            per_core / floor.calls_per_core(),
            floor.calls_per_core(),
            self.rss_idle_kib,
            self.rss_loaded_kib,
            (self.rss_loaded_kib as f64 - self.rss_idle_kib as f64) / self.calls.max(1) as f64,
            pct(&self.trying_ms, 50.0),
            pct(&self.trying_ms, 99.0),
            pct(&self.answered_ms, 50.0),
            pct(&self.answered_ms, 99.0),
            self.lost,
            self.late,
            self.failures.len(),
        )
    }
}

async fn run(cli: &Cli) -> Result<Report> {
    let dir = paths::run_dir("loadgen")?;
    let prosody = Prosody::start(&dir)?;
    // The Python emulator stands in for the conference side at small N; the Rust conference side
    // that serves hundreds of sessions replaces it (tools/bench/src/conference, in progress).
    let participants = SPEAKER_HZ[..cli.speakers.min(SPEAKER_HZ.len())]
        .iter()
        .enumerate()
        .map(|(i, &hz)| Participant::tone(&format!("speaker{i}"), f64::from(hz)))
        .collect();
    let _conference = emulator::start_emulator(
        &prosody,
        &dir,
        &EmulatorOptions::room_with("load", participants),
    )?;
    let opts = GatewayOptions::default()
        .env("JIGASI_PORT_MIN", "30000")
        .env("JIGASI_PORT_MAX", "39999")
        .set("xmpp.pool_size", &cli.calls.clamp(2, 64).to_string());
    let gw = Gateway::start(&cli.gateway, &dir, &prosody, &opts)
        .with_context(|| format!("starting {}", cli.gateway.display()))?;
    let gateway: std::net::SocketAddr = format!("127.0.0.1:{}", gw.sip_port).parse()?;
    let rss_idle_kib = procstat::rss_kib(gw.pid())?;

    let dial = phone::Dial {
        gateway,
        room_header: "Jitsi-Conference-Room".into(),
        room: "load".into(),
        tone_hz: PHONE_HZ,
    };
    let placing: Vec<_> = (0..cli.calls)
        .map(|_| {
            let dial = dial.clone();
            tokio::spawn(async move { phone::place(&dial, Duration::from_secs(30)).await })
        })
        .collect();
    let mut calls = Vec::new();
    let mut failures = Vec::new();
    for p in placing {
        match p.await? {
            Ok(call) => calls.push(call),
            Err(e) => failures.push(e.to_string()),
        }
    }
    let ticker = phone::Ticker::default();
    let sending: Vec<_> = calls.iter().map(|c| ticker.send(c, PHONE_HZ)).collect();

    // Settle, then measure the gateway over the hold.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu0, t0) = (procstat::cpu_time(gw.pid())?, Instant::now());
    let before: Vec<u64> = calls.iter().map(|c| lock(&c.received).packets).collect();
    tokio::time::sleep(Duration::from_secs(cli.hold)).await;
    let (cpu1, t1) = (procstat::cpu_time(gw.pid())?, Instant::now());
    let rss_loaded_kib = procstat::rss_kib(gw.pid())?;
    let held = (t1 - t0).as_secs_f64();

    let (mut lost, mut late) = (0, 0);
    for (call, start) in calls.iter().zip(before) {
        let r = lock(&call.received).clone();
        lost += r.lost;
        late += r.late;
        let got = (r.packets - start) as f64;
        if got < 0.9 * held * 50.0 {
            failures.push(format!("{}: {got} packets in {held:.1} s", call.call_id));
        }
        for &hz in &SPEAKER_HZ[..cli.speakers.min(SPEAKER_HZ.len())] {
            let level = r.level_dbfs(f64::from(hz));
            if level < -30.0 {
                failures.push(format!("{}: {hz} Hz at {level:.1} dBFS", call.call_id));
            }
        }
    }
    let trying_ms = calls
        .iter()
        .filter_map(|c| c.setup.trying)
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    let answered_ms = calls
        .iter()
        .filter_map(|c| c.setup.answered)
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    drop(sending);
    for call in calls {
        if let Err(e) = call.hang_up(Duration::from_secs(5)).await {
            failures.push(e.to_string());
        }
    }
    Ok(Report {
        calls: cli.calls,
        speakers: cli.speakers,
        gateway_cores: (cpu1 - cpu0).as_secs_f64() / held,
        rss_idle_kib,
        rss_loaded_kib,
        trying_ms,
        answered_ms,
        lost,
        late,
        failures,
    })
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
