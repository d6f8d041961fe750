//! A media thread against gateway-like peers over real loopback UDP, without Prosody: many
//! sessions, and the media thread's own CPU per session-second.

use std::net::UdpSocket;
use std::sync::{Condvar, Mutex};

use super::*;
use crate::conference::audio::speaker_loops;
use crate::conference::testing::{phone_tone_packets, GatewayPeer};
use crate::conference::{dtls_cert, fingerprint, SessionReport, State};
use str0m::net::{Protocol, Receive};
use str0m::Input;

struct Peer {
    peer: GatewayPeer,
    socket: UdpSocket,
    local: SocketAddr,
}

/// `n` sessions with `speakers` speakers each for `secs` seconds once all are connected;
/// returns the media thread's CPU in that time and the final reports.
fn run(n: usize, speakers: usize, secs: u64, decode_every: u32) -> (Duration, Vec<SessionReport>) {
    let cert = dtls_cert().unwrap();
    let fp = fingerprint(&cert).unwrap();
    let env = Arc::new(MediaEnv::new(
        cert,
        speaker_loops(speakers, -12.0, crate::conference::SpeakerSignal::Tone).unwrap(),
        decode_every,
    ));
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            media_cpu: vec![Duration::ZERO],
            ..Default::default()
        }),
        changed: Condvar::new(),
    });
    let worker = spawn(0, "127.0.0.1".parse().unwrap(), env, shared.clone()).unwrap();
    let tone = phone_tone_packets().into();
    let now = Instant::now();
    let mut peers = Vec::new();
    for i in 0..n {
        let sid = format!("s{i}");
        let ice = IceCreds {
            ufrag: format!("bridge{i}"),
            pass: format!("bridgepassword{i:012}"),
        };
        let ssrcs: Vec<u32> = (0..speakers as u32)
            .map(|k| 1000 * i as u32 + k + 1)
            .collect();
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let local = socket.local_addr().unwrap();
        let mut peer = GatewayPeer::new(
            now,
            local,
            worker.local,
            &ice.ufrag,
            &ice.pass,
            &fp,
            &ssrcs,
            Arc::clone(&tone),
        );
        shared.update(|s| {
            s.sessions.insert(
                sid.clone(),
                SessionReport {
                    sid: sid.clone(),
                    room: format!("room{i}@muc.meet.jitsi"),
                    nick: format!("{i:08x}"),
                    initiate_sent: now,
                    initiate_answer: None,
                    transport_info: None,
                    accepted: None,
                    connected: None,
                    ended: None,
                    rx: Default::default(),
                    tx_packets: 0,
                    tx_skipped: 0,
                    datagrams: (0, 0),
                    tone: None,
                    worker: 0,
                },
            );
        });
        worker.send(Cmd::Add {
            sid: sid.clone(),
            ice,
            speakers: ssrcs,
            tone: Some(440.0),
        });
        let creds = peer.credentials();
        let mut transport = RemoteTransport {
            ufrag: Some(creds.ufrag),
            pwd: Some(creds.pass),
            ..Default::default()
        };
        transport
            .candidates
            .push(crate::conference::stanzas::RemoteCandidate {
                foundation: "1".into(),
                component: 1,
                protocol: "udp".into(),
                priority: 2_130_706_431,
                addr: local,
                kind: "host".into(),
            });
        worker.send(Cmd::Transport {
            sid: sid.clone(),
            transport,
        });
        worker.send(Cmd::Accept {
            sid,
            fingerprint: Some(peer.fingerprint()),
            ssrc: Some(*peer.ssrc),
        });
        peers.push(Peer {
            peer,
            socket,
            local,
        });
    }

    // The gateways: one thread, every socket drained every 10 ms, a packet each per 20 ms.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let gateways = {
        let stop = stop.clone();
        let bridge = worker.local;
        std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let start = Instant::now();
            let mut frames = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let now = Instant::now();
                let due = (now - start).as_millis() as u64 / 20;
                for p in &mut peers {
                    while let Ok((len, from)) = p.socket.recv_from(&mut buf) {
                        if let Ok(r) = Receive::new(Protocol::Udp, from, p.local, &buf[..len]) {
                            p.peer.input(Input::Receive(now, r));
                        }
                    }
                    if p.peer.timeout <= now {
                        p.peer.input(Input::Timeout(now));
                    }
                    if p.peer.connected && frames < due {
                        p.peer.send(now);
                    }
                    for d in p.peer.out.drain(..) {
                        let _ = p.socket.send_to(&d.payload, bridge);
                    }
                }
                frames = frames.max(due);
                std::thread::sleep(Duration::from_millis(10));
            }
            peers
        })
    };

    let all_up = |s: &State| s.sessions.values().all(|r| r.connected.is_some());
    let mut state = shared.lock();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !all_up(&state) && Instant::now() < deadline {
        state = shared
            .changed
            .wait_timeout(state, Duration::from_millis(100))
            .unwrap()
            .0;
    }
    assert!(all_up(&state), "not all sessions connected");
    let cpu0 = state.media_cpu[0];
    drop(state);
    std::thread::sleep(Duration::from_secs(secs));
    let cpu1 = shared.lock().media_cpu[0];
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peers = gateways.join().unwrap();
    worker.stop();
    for p in &peers {
        // Every speaker reached every gateway, for the whole time.
        assert_eq!(p.peer.received.len(), speakers, "{:?}", p.peer.received);
        for got in p.peer.received.values() {
            assert!(
                *got as f64 >= 0.9 * 50.0 * secs as f64,
                "{:?}",
                p.peer.received
            );
        }
    }
    let reports = shared.lock().sessions.values().cloned().collect();
    (cpu1 - cpu0, reports)
}

#[test]
fn sessions_connect_and_carry_audio_both_ways_over_udp() {
    let (_, reports) = run(8, 2, 3, 1);
    for r in reports {
        assert!(r.rx.packets as f64 >= 0.95 * r.rx.expected as f64, "{r:?}");
        assert!(r.rx.expected >= 140, "{r:?}");
        assert!(
            r.tone.as_ref().and_then(|t| t.dbfs).unwrap_or(-99.0) > -16.0,
            "{r:?}"
        );
        assert_eq!(r.tx_skipped, 0);
    }
}

/// `cargo test -p gateway-bench --bin loadgen bridge_cost -- --ignored --nocapture`, with
/// BENCH_SESSIONS (200), BENCH_SPEAKERS (3), BENCH_DECODE_EVERY (1).
#[test]
#[ignore = "a measurement, not a check: run it by name"]
fn bridge_cost_per_session_second() {
    let var = |k: &str, d: usize| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (n, k, every) = (
        var("BENCH_SESSIONS", 200),
        var("BENCH_SPEAKERS", 3),
        var("BENCH_DECODE_EVERY", 1),
    );
    let secs = 10;
    let (cpu, reports) = run(n, k, secs, every as u32);
    let per = cpu.as_secs_f64() / (n as f64 * secs as f64);
    let late: u64 = reports.iter().map(|r| r.rx.late).sum();
    let lost: u64 = reports.iter().map(|r| r.rx.lost()).sum();
    let skipped: u64 = reports.iter().map(|r| r.tx_skipped).sum();
    println!(
        "{n} sessions × {k} speakers, decode 1 s in {every}: media thread {cpu:?} in {secs} s = {:.3} ms per session-second ({:.1} % of a core); rx lost {lost}, late {late}; tx skipped {skipped}",
        per * 1e3,
        cpu.as_secs_f64() / secs as f64 * 100.0
    );
}
