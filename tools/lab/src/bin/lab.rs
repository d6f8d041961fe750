//! `lab demo`: the local demo run by `scripts/demo.sh` inside the lab's private namespace.
//! Real Prosody, the conference emulator with two participants speaking, and the echo occupant
//! standing in for the gateway; prints what each side heard and exits 0 only if audio flowed both
//! ways.

use anyhow::{bail, Result};
use gateway_lab::audio::Expect;
use gateway_lab::emulator::{EchoOptions, Participant};
use gateway_lab::scenario::{self, analyse, EchoRoom};
use gateway_lab::{net, paths};
use serde_json::Value;

const HEARD: Expect = Expect {
    min_level_dbfs: -30.0,
    min_coverage: 0.9,
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo(),
        _ => {
            eprintln!("usage: lab demo");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("demo failed: {e:#}");
        std::process::exit(1);
    }
}

fn demo() -> Result<()> {
    if !net::in_private_netns() {
        eprintln!(
            "note: not in a private network namespace; run scripts/demo.sh for the isolated lab"
        );
    }
    let dir = paths::run_dir("demo")?;
    let (alice, bob) = (600.0, 1100.0);
    println!("Starting Prosody, the conference emulator (alice {alice} Hz, bob {bob} Hz) and the echo occupant …");
    let participants = vec![
        Participant::tone("alice", alice),
        Participant::tone("bob", bob),
    ];
    let mut room = EchoRoom::start(&dir, "demo", participants, EchoOptions::default())?;
    println!(
        "  Prosody 0.12 on 127.0.0.1:{}; room demo@{}; the echo occupant joined as {}",
        room.prosody.c2s_port,
        room.prosody.muc_domain(),
        room.echo_nick
    );
    room.wait_recorded(5)?;
    let (report, echo_report) = room.finish()?;
    let session = scenario::session(&report, &room.sid)?;
    print_timeline(session);

    println!("What the echo occupant received from the bridge:");
    for p in report["participants"].as_array().into_iter().flatten() {
        let ssrc = p["ssrc"].to_string();
        println!(
            "  {:<6} SSRC {:<10} {} packets",
            p["name"].as_str().unwrap_or("?"),
            ssrc,
            scenario::echo_rx(&echo_report, &p["ssrc"])["packets"]
        );
    }
    let tones = analyse(
        &scenario::session_recording(&report, &room.sid)?,
        1.0,
        &[alice, bob],
    )?;
    println!("What the bridge heard back from the echo occupant: {tones}");
    let mut ok = true;
    for hz in [alice, bob] {
        if let Err(e) = tones.check_present(hz, HEARD) {
            println!("  MISSING: {e}");
            ok = false;
        }
    }
    println!("Logs, recordings and reports: {}", dir.display());
    if !ok {
        bail!("audio did not flow both ways");
    }
    println!("OK: both participants' audio went out through the bridge and came back.");
    Ok(())
}

fn print_timeline(session: &Value) {
    let t = &session["t"];
    let ms = |a: &str, b: &str| match (t[a].as_f64(), t[b].as_f64()) {
        (Some(x), Some(y)) => format!("{:.0} ms", (y - x) * 1000.0),
        _ => "?".into(),
    };
    println!(
        "  session-initiate → session-accept {}, → DTLS connected {}",
        ms("initiate_sent", "accept_received"),
        ms("initiate_sent", "dtls_connected")
    );
}
