//! `loadgen`: the load benchmark. For each number of remote speakers K it measures the codec
//! floor on this machine, then starts the lab (real Prosody, the Rust conference side, the
//! gateway binary under test) and ramps dial-in calls step by step, each phone sending real G.711
//! tone RTP and each room K Opus speakers, until a frame is lost or late at either end. It prints
//! what the gateway cost (calls per core, and that ÷ the floor), its memory, and the setup times
//! split into the gateway's own time and the wait on XMPP.
//!
//! Run inside the lab's namespace: `tests/lab/in-netns.sh target/release/loadgen` (see the
//! README's Benchmark section for the one command that builds and runs it).

mod conference;
mod floor;
mod latency;
mod load;
mod phone;
mod procstat;
mod rtpengine;

use anyhow::Result;
use clap::Parser;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(name = "loadgen", about = "Load benchmark of the gateway")]
struct Cli {
    /// Only measure the codec floor on this machine and print it.
    #[arg(long)]
    floor_only: bool,
    /// Remote speakers (Opus streams from the bridge) per call; one ramp per value.
    #[arg(long, value_delimiter = ',', default_value = "1,3,5")]
    speakers: Vec<usize>,
    /// Opus encoder complexity, as the gateway's media.opus_complexity.
    #[arg(long, default_value_t = 5)]
    complexity: u8,
    /// Calls added per step of the ramp.
    #[arg(long, default_value_t = 25)]
    step: usize,
    /// The ramp stops here even if nothing was lost.
    #[arg(long, default_value_t = 300)]
    max_calls: usize,
    /// New calls per second while a step is placed.
    #[arg(long, default_value_t = 25.0)]
    rate: f64,
    /// Seconds each step is measured.
    #[arg(long, default_value_t = 5)]
    hold: u64,
    /// The gateway's warm XMPP connections (xmpp.pool_size).
    #[arg(long, default_value_t = 2)]
    pool_size: usize,
    /// The gateway binary under test.
    #[arg(long, default_value = "target/release/jitsi-sip-gateway")]
    gateway: PathBuf,
    /// Calls transcoded by rtpengine side by side (0: skip it).
    #[arg(long, default_value_t = 50)]
    rtpengine_calls: usize,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let work = |k: usize| floor::Work {
        speakers: k,
        complexity: cli.complexity,
        bitrate: 20_000,
    };
    if cli.floor_only {
        for &k in &cli.speakers {
            println!("{}", floor::measure(&work(k))?.table());
        }
        return Ok(());
    }
    // The phones' receive loops and the ticker: one thread, so the load generator leaves the
    // second core to the gateway, Prosody and the conference side's own threads.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let mut runs = Vec::new();
    let mut floors = Vec::new();
    for &k in &cli.speakers {
        let opts = load::Options {
            speakers: k,
            step: cli.step,
            max_calls: cli.max_calls,
            rate: cli.rate,
            hold: Duration::from_secs(cli.hold),
            gateway: cli.gateway.clone(),
            pool_size: cli.pool_size,
        };
        // The floor right before and right after the ramp, averaged: this machine's speed
        // drifts with its neighbours' load, and the ratio must compare like with like.
        let before = floor::measure(&work(k))?;
        println!("ramp with {k} speaker(s) per room:");
        runs.push(runtime.block_on(load::run(&opts))?);
        let after = floor::measure(&work(k))?;
        let floor = before.averaged_with(&after);
        println!(
            "{}\n  (the mean of the floor measured before and after the ramp)",
            floor.table()
        );
        floors.push(floor);
    }
    let rtpengine = if cli.rtpengine_calls == 0 {
        None
    } else if !rtpengine::available() {
        println!("rtpengine: not installed (Debian rtpengine-daemon), skipped");
        None
    } else {
        println!("rtpengine side by side, {} calls:", cli.rtpengine_calls);
        let opts = rtpengine::Options {
            calls: cli.rtpengine_calls,
            hold: Duration::from_secs(cli.hold),
            rate: cli.rate,
        };
        let outcome = runtime.block_on(rtpengine::run(&opts))?;
        println!(
            "  {} calls: rtpengine {:.1} % of a core, RSS {} KiB; phone received {}/{} lost {}, webrtc received {}/{} lost {}{}",
            outcome.calls,
            outcome.cores * 100.0,
            outcome.rss_kib,
            outcome.phone_packets,
            outcome.webrtc_sent,
            outcome.phone_lost,
            outcome.webrtc_packets,
            outcome.phone_sent,
            outcome.webrtc_lost,
            if outcome.deaf.is_empty() {
                String::new()
            } else {
                format!("; not heard: {}", outcome.deaf.join(", "))
            }
        );
        Some(outcome)
    };
    println!("\n{}", report::table(&runs, &floors, rtpengine.as_ref()));
    let mut failures: Vec<String> = runs.iter().flat_map(|r| r.failures.clone()).collect();
    if let Some(r) = &rtpengine {
        failures.extend(r.deaf.iter().map(|d| format!("rtpengine: {d}")));
    }
    anyhow::ensure!(failures.is_empty(), "calls failed: {failures:?}");
    Ok(())
}

mod report {
    use crate::floor::Floor;
    use crate::latency::Latency;
    use crate::load::Run;
    use crate::rtpengine;

    /// The `p`th percentile (nearest rank) of `v`; NaN when empty.
    pub fn pct(v: &[f64], p: f64) -> f64 {
        let mut v: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_by(f64::total_cmp);
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v[rank.clamp(1, v.len()) - 1]
    }

    pub fn table(runs: &[Run], floors: &[Floor], rtpengine: Option<&rtpengine::Outcome>) -> String {
        let mut out = String::from(
            "K  calls/core  floor  ratio  at step    late    no late up to  first loss/deaf RSS idle  per call\n",
        );
        for (run, floor) in runs.iter().zip(floors) {
            let best = run.best();
            let per_core = best.map_or(f64::NAN, |s| s.calls_per_core());
            out += &format!(
                "{}  {:>10.0}  {:>5.0}  {:>5.2}  {:>9}  {:>6.3}%  {:>13}  {:>13}  {:>5.1} MB  {:>5.0} KiB\n",
                run.speakers,
                per_core,
                floor.calls_per_core(),
                per_core / floor.calls_per_core(),
                best.map_or("-".into(), |s| format!("{} calls", s.calls)),
                best.map_or(f64::NAN, |s| s.late_share() * 100.0),
                run.best_strict()
                    .map_or("-".into(), |s| format!("{} calls", s.calls)),
                run.first_loss()
                    .map_or("none".into(), |s| format!("{} calls", s.calls)),
                run.rss_idle_kib as f64 / 1024.0,
                run.rss_per_call_kib(),
            );
        }
        out += &format!(
            "(calls/core at the largest step with no frame lost, every tone heard and under {} % of frames late)\n",
            crate::load::LATE_LIMIT * 100.0
        );
        let all: Vec<_> = runs.iter().flat_map(|r| &r.setups).collect();
        let col = |f: &dyn Fn(&crate::load::SetupTimes) -> Option<f64>| -> Vec<f64> {
            all.iter().filter_map(|s| f(s)).collect()
        };
        let line = |name: &str, v: Vec<f64>| {
            format!(
                "  {name:<28} p50 {:7.2} ms  p99 {:7.2} ms  ({} calls)\n",
                pct(&v, 50.0),
                pct(&v, 99.0),
                v.len()
            )
        };
        out += "setup (phone clock; the XMPP wait and the gateway's own time from its log)\n";
        out += &line("INVITE → 100 Trying", col(&|s| Some(s.trying_ms)));
        out += &line("INVITE → 200 OK", col(&|s| Some(s.answered_ms)));
        out += &line("  waiting on XMPP", col(&|s| s.xmpp_wait_ms));
        out += &line("  the gateway's own time", col(&|s| s.own_ms()));
        out += "gateway-added audio latency (a click found by cross-correlation, idle gateway)\n";
        let lat: Vec<&Latency> = runs.iter().filter_map(|r| r.latency.as_ref()).collect();
        let each = |v: Vec<f64>| {
            format!(
                "median {:6.1} ms  max {:6.1} ms  ({} clicks)",
                pct(&v, 50.0),
                v.iter().copied().fold(f64::NAN, f64::max),
                v.len()
            )
        };
        out += &format!(
            "  phone → bridge   {}\n",
            each(
                lat.iter()
                    .flat_map(|l| l.phone_to_bridge_ms.clone())
                    .collect()
            )
        );
        out += &format!(
            "  bridge → phone   {}\n",
            each(
                lat.iter()
                    .flat_map(|l| l.bridge_to_phone_ms.clone())
                    .collect()
            )
        );
        // The same media job side by side: one Opus stream each way per call, as K = 1.
        let ours = runs
            .iter()
            .find(|r| r.speakers == 1)
            .and_then(|r| r.best())
            .map(|s| s.gateway_cores * 100.0 / s.calls as f64);
        out += "CPU per call, PCMU ⇄ Opus/DTLS-SRTP with one remote speaker\n";
        out += &format!(
            "  ours       {}\n",
            ours.map_or("- (no clean K = 1 step)".into(), |p| format!(
                "{p:.2} % of a core"
            ))
        );
        out += &format!(
            "  rtpengine  {}\n",
            rtpengine.map_or("- (not run)".into(), |r| format!(
                "{:.2} % of a core ({} calls)",
                r.cpu_per_call_pct(),
                r.calls
            ))
        );
        out
    }

    #[cfg(test)]
    mod tests {
        use super::pct;

        #[test]
        fn percentiles_are_nearest_rank() {
            let v: Vec<f64> = (1..=100).map(f64::from).collect();
            assert_eq!(pct(&v, 50.0), 50.0);
            assert_eq!(pct(&v, 99.0), 99.0);
            assert!(pct(&[], 50.0).is_nan());
        }
    }
}
