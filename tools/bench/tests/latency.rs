//! The latency measurement against the real thing: a lab Prosody, the conference side, the
//! gateway binary built from this checkout, and one phone call measured by clicks each way. Needs
//! the lab (run it in `tests/lab/in-netns.sh`) and `cargo build --bin jitsi-sip-gateway` first.

mod support;

// loadgen is a binary crate: the modules the measurement uses are compiled into this test by
// path (each is an API of which this test uses a part).
#[path = "../src/conference/mod.rs"]
mod conference;
#[allow(dead_code)]
#[path = "../src/latency.rs"]
mod latency;
#[allow(dead_code)]
#[path = "../src/phone.rs"]
mod phone;
#[allow(dead_code)]
#[path = "../src/procstat.rs"]
mod procstat;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{ensure, Result};
use conference::{Conference, ConferenceOptions, SpeakerSignal};
use gateway_lab::gateway::{Gateway, GatewayOptions};
use gateway_lab::paths;
use gateway_lab::prosody::Prosody;

const CLICKS: usize = 5;
const SPEAKERS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_click_crosses_the_gateway_each_way_in_plausible_time() -> Result<()> {
    let dir = paths::run_dir("bench-latency")?;
    let prosody = Prosody::start(&dir)?;
    let opts = ConferenceOptions {
        speaker_signal: SpeakerSignal::VoiceAndTone,
        ..ConferenceOptions::for_prosody(&prosody, SPEAKERS)
    };
    let conference = tokio::task::spawn_blocking(move || Conference::start(opts)).await??;
    let conference = Arc::new(conference);
    let mut gateway = Gateway::start(
        &support::gateway_bin()?,
        &dir,
        &prosody,
        &GatewayOptions::default(),
    )?;
    gateway.wait_health(200, Duration::from_secs(15))?;
    let sip = format!("127.0.0.1:{}", gateway.sip_port).parse()?;

    let measured = latency::measure(sip, &conference, "latency", CLICKS).await;
    gateway.stop()?;
    let l = measured?;
    println!("{}", l.table());
    println!("phone → bridge: {:.2?} ms", l.phone_to_bridge_ms);
    println!("bridge → phone: {:.2?} ms", l.bridge_to_phone_ms);
    ensure!(l.missed.is_empty(), "clicks missed: {:#?}", l.missed);
    for (way, v) in [
        ("phone → bridge", &l.phone_to_bridge_ms),
        ("bridge → phone", &l.bridge_to_phone_ms),
    ] {
        ensure!(v.len() == CLICKS, "{way}: {} of {CLICKS} clicks", v.len());
        ensure!(
            v.iter().all(|&ms| ms > 0.0 && ms < 200.0),
            "{way}: implausible latency {v:?}"
        );
    }
    let snap = conference.snapshot();
    ensure!(
        snap.errors.is_empty(),
        "conference errors: {:?}",
        snap.errors
    );
    Ok(())
}
