//! The lab's SIP peers work on loopback: SIPp plays G.711 from a pcap into a call, baresip
//! answers, records, and both directions of the check are audio checks.

use anyhow::Result;
use gateway_lab::audio::{self, Expect};
use gateway_lab::baresip::{Answer, Baresip};
use gateway_lab::paths;
use gateway_lab::scenario::analyse;
use gateway_lab::sipp::{self, SippCall};
use std::time::Duration;

#[test]
fn a_sipp_caller_playing_a_pcap_is_heard_by_baresip() -> Result<()> {
    let dir = paths::run_dir("sip-sipp-to-baresip")?;
    let caller_tone = dir.join("caller-440.wav");
    audio::write_tone_wav(&caller_tone, 440.0, 8.0, 8000, -12.0)?;
    sipp::write_pcmu_pcap(&caller_tone, &dir.join("caller.pcap"))?;
    let mic = dir.join("bob-1000.wav");
    audio::write_tone_wav(&mic, 1000.0, 30.0, 8000, -12.0)?;

    let mut bob = Baresip::start(&dir, "bob", &mic, Answer::Auto)?;
    let target = format!("127.0.0.1:{}", bob.sip_port);
    let mut call = SippCall::start(&dir, "uac_pcap.xml", "bob", &target, 5000)?;
    bob.wait_event("CALL_ESTABLISHED", Duration::from_secs(10))?;
    call.wait_success(Duration::from_secs(30))?;
    bob.wait_event("CALL_CLOSED", Duration::from_secs(10))?;

    let heard = analyse(&bob.received_wav()?, 0.5, &[440.0, 1000.0])?;
    heard.check_present(
        440.0,
        Expect {
            min_level_dbfs: -20.0,
            min_coverage: 0.9,
        },
    )?;
    // baresip's own microphone does not leak into what it received.
    heard.check_absent(1000.0, -50.0)?;
    bob.stop();
    Ok(())
}
