//! `lab demo`: the local demo run by `scripts/demo.sh` inside the lab's private namespace.
//!
//! A phone call bridged into a room, on this machine: real Prosody, the conference emulator
//! (Jicofo + videobridge stand-in) with two participants speaking (600 Hz and 1100 Hz), the
//! gateway, and SIPp dialling in with a 440 Hz tone. Prints what each side heard and the
//! INVITE → 200 OK time; exits 0 only if audio went both ways in every call.
//!
//! `--calls N` makes N calls one after another and prints the median setup time; `--cpu S` adds
//! one S-second call during which the gateway's CPU time is sampled (CPU per call-second).

use anyhow::{bail, Context, Result};
use gateway_lab::audio::{self, Expect};
use gateway_lab::capture::RtpCapture;
use gateway_lab::emulator::Participant;
use gateway_lab::gateway::GatewayOptions;
use gateway_lab::scenario::{self, analyse, DialInLab};
use gateway_lab::sipp::{self, SippCall};
use gateway_lab::{net, paths};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const CALLER_HZ: f64 = 440.0;
const ALICE_HZ: f64 = 600.0;
const BOB_HZ: f64 = 1100.0;
const HEARD: Expect = Expect {
    min_level_dbfs: -30.0,
    min_coverage: 0.8,
};

struct Options {
    calls: usize,
    hold_ms: u64,
    cpu_secs: u64,
    gateway: PathBuf,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => options(&args[1..]).and_then(|o| demo(&o)),
        _ => Err(anyhow::anyhow!(
            "usage: lab demo [--calls N] [--hold SECONDS] [--cpu SECONDS] [--gateway PATH]"
        )),
    };
    if let Err(e) = result {
        eprintln!("demo failed: {e:#}");
        std::process::exit(1);
    }
}

fn options(args: &[String]) -> Result<Options> {
    let mut o = Options {
        calls: 1,
        hold_ms: 6000,
        cpu_secs: 0,
        gateway: paths::repo_root().join("target/debug/jitsi-sip-gateway"),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--calls" => o.calls = value.parse().context("--calls")?,
            "--hold" => o.hold_ms = (value.parse::<f64>().context("--hold")? * 1000.0) as u64,
            "--cpu" => o.cpu_secs = value.parse().context("--cpu")?,
            "--gateway" => o.gateway = value.into(),
            other => bail!("unknown option {other}"),
        }
    }
    anyhow::ensure!(
        o.calls >= 1 && o.hold_ms >= 3000,
        "at least one call of at least 3 s"
    );
    anyhow::ensure!(
        o.gateway.exists(),
        "no gateway binary at {} (build it first)",
        o.gateway.display()
    );
    Ok(o)
}

/// What one call showed.
struct CallResult {
    setup: Duration,
    ok: bool,
}

fn demo(o: &Options) -> Result<()> {
    if !net::in_private_netns() {
        eprintln!(
            "note: not in a private network namespace; scripts/demo.sh runs the isolated lab"
        );
    }
    let dir = paths::run_dir("demo")?;
    println!("Starting Prosody, the conference emulator (alice {ALICE_HZ} Hz, bob {BOB_HZ} Hz) and the gateway …");
    let participants = vec![
        Participant::tone("alice", ALICE_HZ),
        Participant::tone("bob", BOB_HZ),
    ];
    let mut lab = DialInLab::start(
        &o.gateway,
        &dir,
        "demo",
        participants,
        |_| {},
        &GatewayOptions::default(),
    )?;
    println!(
        "  Prosody 0.12 on 127.0.0.1:{}, room demo@{}, gateway SIP on {}",
        lab.prosody.c2s_port,
        lab.prosody.muc_domain(),
        lab.gateway.sip_target()
    );
    let mut results = Vec::new();
    for n in 1..=o.calls {
        println!(
            "Call {n}: SIPp dials in with the room header and plays {CALLER_HZ} Hz for {} s",
            o.hold_ms / 1000
        );
        results.push(call(&mut lab, n, o.hold_ms, o.calls == 1)?);
    }
    let mut setups: Vec<Duration> = results.iter().map(|r| r.setup).collect();
    setups.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    if o.calls > 1 {
        println!(
            "INVITE → 200 OK over {} calls: median {:.0} ms, min {:.0} ms, max {:.0} ms",
            o.calls,
            ms(setups[setups.len() / 2]),
            ms(setups[0]),
            ms(setups[setups.len() - 1])
        );
    }
    if o.cpu_secs > 0 {
        cpu_per_call_second(&mut lab, o.cpu_secs)?;
    }
    lab.gateway.stop()?;
    println!("Logs, recordings and reports: {}", dir.display());
    if results.iter().any(|r| !r.ok) {
        bail!("audio did not flow both ways in every call");
    }
    println!("OK: the phone heard the room and the room heard the phone.");
    Ok(())
}

/// One call from SIPp; returns its setup time and whether audio went both ways.
fn call(lab: &mut DialInLab, n: usize, hold_ms: u64, verbose: bool) -> Result<CallResult> {
    let wav = lab.dir.join("caller.wav");
    audio::write_tone_wav(&wav, CALLER_HZ, hold_ms as f64 / 1000.0 + 2.0, 8000, -12.0)?;
    sipp::write_pcmu_pcap(&wav, &lab.dir.join("caller.pcap"))?;
    let call_dir = lab.dir.join(format!("call-{n}"));
    std::fs::create_dir_all(&call_dir)?;
    std::fs::copy(lab.dir.join("caller.pcap"), call_dir.join("caller.pcap"))?;
    let keys = [
        ("room_header", "Jitsi-Conference-Room"),
        ("room", "demo"),
        ("caller", "demo"),
        ("caller_name", "Demo Caller"),
        ("offer_pts", "0 8 101"),
    ];
    let mut sipp = SippCall::start_with(
        &call_dir,
        "dialin-call.xml",
        "demo",
        &lab.gateway.sip_target(),
        hold_ms,
        &keys,
    )?;
    let capture = RtpCapture::start(&call_dir, "phone-rx", sipp.media_port)?;
    let nick = lab.gateway_joined()?;
    let sid = lab.session_connected(&nick)?;
    sipp.wait_success(Duration::from_secs(hold_ms / 1000 + 30))?;
    lab.emulator.control.wait_for(
        "session-terminated",
        json!({"sid": sid}),
        Duration::from_secs(15),
    )?;
    let (phone_wav, _) = capture.finish(&call_dir.join("phone-rx.wav"))?;
    let report = lab.emulator.request("status", Value::Null)?["report"].clone();

    let msgs = sipp.messages();
    let invite = msgs
        .iter()
        .find(|m| m.sent && m.first_line().starts_with("INVITE"))
        .context("no INVITE")?;
    let ok200 = msgs
        .iter()
        .find(|m| !m.sent && m.status() == Some(200))
        .context("no 200 OK")?;
    let setup = Duration::from_secs_f64((ok200.time - invite.time).max(0.0));

    let phone = analyse(&phone_wav, 1.5, &[ALICE_HZ, BOB_HZ, CALLER_HZ])?;
    let room = analyse(
        &scenario::session_recording(&report, &sid)?,
        1.5,
        &[CALLER_HZ],
    )?;
    let phone_ok =
        phone.check_present(ALICE_HZ, HEARD).is_ok() && phone.check_present(BOB_HZ, HEARD).is_ok();
    let room_ok = room.check_present(CALLER_HZ, HEARD).is_ok();
    if verbose {
        let session = scenario::session(&report, &sid)?;
        println!(
            "  the gateway joined as {nick}; Jicofo's offer: {}",
            session["offer"]["contents"]
        );
        println!("  the phone heard: {phone}");
        println!("  the room heard from the gateway: {room}");
    }
    println!(
        "  INVITE → 200 OK {:.0} ms; phone hears the room: {}; room hears the phone: {}",
        setup.as_secs_f64() * 1000.0,
        yes(phone_ok),
        yes(room_ok)
    );
    Ok(CallResult {
        setup,
        ok: phone_ok && room_ok,
    })
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "NO"
    }
}

/// One call of `secs` seconds with the two participants speaking: the gateway's CPU time
/// (utime + stime from /proc) over the middle of the call, per second of call.
fn cpu_per_call_second(lab: &mut DialInLab, secs: u64) -> Result<()> {
    anyhow::ensure!(secs >= 6, "--cpu needs at least 6 s");
    let dir = lab.dir.join("cpu-call");
    std::fs::create_dir_all(&dir)?;
    let wav = dir.join("caller.wav");
    audio::write_tone_wav(&wav, CALLER_HZ, secs as f64 + 2.0, 8000, -12.0)?;
    sipp::write_pcmu_pcap(&wav, &dir.join("caller.pcap"))?;
    let keys = [
        ("room_header", "Jitsi-Conference-Room"),
        ("room", "demo"),
        ("caller", "cpu"),
        ("caller_name", "CPU probe"),
        ("offer_pts", "0"),
    ];
    let mut sipp = SippCall::start_with(
        &dir,
        "dialin-call.xml",
        "demo",
        &lab.gateway.sip_target(),
        secs * 1000,
        &keys,
    )?;
    let nick = lab.gateway_joined()?;
    lab.session_connected(&nick)?;
    // Skip the set-up and the first second; measure until a second before the hangup.
    std::thread::sleep(Duration::from_secs(2));
    let (t0, c0) = (Instant::now(), cpu_ticks(lab.gateway.pid())?);
    std::thread::sleep(Duration::from_secs(secs - 4));
    let (t1, c1) = (Instant::now(), cpu_ticks(lab.gateway.pid())?);
    sipp.wait_success(Duration::from_secs(30))?;
    let tick = 1.0 / clock_ticks_per_second();
    let cpu = (c1 - c0) as f64 * tick;
    let wall = (t1 - t0).as_secs_f64();
    println!(
        "Gateway CPU with one call and two speakers: {:.2} ms per call-second ({:.3} s CPU over {:.1} s, {:.2} % of a core; resolution {:.0} ms)",
        cpu / wall * 1000.0,
        cpu,
        wall,
        cpu / wall * 100.0,
        tick * 1000.0
    );
    Ok(())
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = &stat[stat.rfind(')').context("bad stat")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state(0) … utime(11) stime(12).
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf is a plain query.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}
