//! `MediaBridge` end to end on virtual time: a str0m peer plays the videobridge (two Opus tone
//! sources, a third added mid-call, one removed), a fake phone sends a 440 Hz PCMU tone. The
//! audio each side hears is checked by frequency.

mod media_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gateway_lab::audio::{Expect, Recording, ToneReport};
use jitsi_sip_gateway::config::{MediaSettings, PortRange};
use jitsi_sip_gateway::media::bridge::{Leg, MediaBridge};
use jitsi_sip_gateway::media::{DtlsIdentity, MediaEvent, MediaStats, PhoneParams, G711};
use media_support::{BridgePeer, FakePhone, MS20};

const S1: u32 = 0x1111; // 600 Hz, in the offer
const S2: u32 = 0x2222; // 1100 Hz, in the offer
const S3: u32 = 0x3333; // 1700 Hz, added at 4 s
const TONES: [f64; 4] = [440.0, 600.0, 1100.0, 1700.0];

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn settings() -> MediaSettings {
    MediaSettings {
        ports: PortRange::new(30000, 30100).unwrap(),
        opus_complexity: 5,
        opus_bitrate: 20_000,
        opus_fec: true,
        opus_dtx: false,
        bind_ip: std::net::IpAddr::from([0, 0, 0, 0]),
    }
}

#[derive(Default)]
struct Options {
    phone_silent: bool,
    room_silent: bool,
    /// Drop every n-th Opus RTP packet on its way from the bridge.
    drop_every: Option<usize>,
    /// Deliver the phone's packets in swapped pairs (2, 1, 4, 3, …).
    swap_phone_pairs: bool,
}

struct Outcome {
    phone: Recording,
    room: Recording,
    levels: Vec<u8>,
    events: Vec<(Duration, MediaEvent)>,
    stats: MediaStats,
    phone_sources: Vec<SocketAddr>,
}

/// Ten seconds of a call on virtual time. S3 is added at 4 s; S1 is removed at 7 s (its packets
/// keep coming, as a stale bridge might send them); the phone presses 7 at 2 s.
fn run_call(opts: Options) -> Outcome {
    let t0 = Instant::now();
    let gateway_conference = addr("192.0.2.100:30002");
    let peer_addr = addr("192.0.2.1:10000");
    let (mut peer, offer) = BridgePeer::new(
        t0,
        peer_addr,
        &[(S1, 600.0, true), (S2, 1100.0, true), (S3, 1700.0, false)],
    );
    if opts.room_silent {
        peer.silence_all();
    }
    let mut held_phone_packet: Option<Vec<u8>> = None;
    let mut bridge_rtp = 0usize;
    let mut phone = FakePhone::new(
        addr("198.51.100.7:4000"),
        (!opts.phone_silent).then_some(440.0),
    );
    let params = PhoneParams {
        codec: G711::Pcmu,
        codec_pt: 0,
        telephone_event_pt: Some(101),
        remote_rtp: phone.addr,
    };
    let identity = DtlsIdentity::generate().unwrap();
    let (mut bridge, answer) = MediaBridge::new(
        t0,
        &settings(),
        Some(params),
        &offer,
        gateway_conference,
        &identity,
    )
    .unwrap();
    assert_eq!(answer.candidates.len(), 1);
    assert_eq!(answer.candidates[0].port, 30002);
    assert_eq!(answer.fingerprint.0, "sha-256");
    peer.accept(t0, &answer);

    let mut events = Vec::new();
    let mut now = t0;
    let end = t0 + Duration::from_secs(10);
    let mut next_phone = t0 + Duration::from_millis(3);
    let mut next_peer = t0 + Duration::from_millis(11);
    let mut script: Vec<(Duration, &str)> = vec![
        (Duration::from_secs(2), "press"),
        (Duration::from_secs(4), "add"),
        (Duration::from_secs(7), "remove"),
    ];
    while now < end {
        if let Some(&(at, what)) = script.first() {
            if now >= t0 + at {
                script.remove(0);
                match what {
                    "press" => phone.press(7),
                    "add" => bridge.add_source(S3, "ep3".into()),
                    _ => bridge.remove_source(S1),
                }
            }
        }
        if now >= next_phone {
            let packet = phone.next_packet();
            if !opts.swap_phone_pairs {
                bridge.handle_receive(now, Leg::Phone, phone.addr, &packet);
            } else if let Some(first) = held_phone_packet.take() {
                bridge.handle_receive(now, Leg::Phone, phone.addr, &packet);
                bridge.handle_receive(now, Leg::Phone, phone.addr, &first);
            } else {
                held_phone_packet = Some(packet);
            }
            next_phone += MS20;
        }
        if now >= next_peer {
            peer.send_audio(now);
            next_peer += MS20;
        }
        if now >= peer.poll_timeout() {
            peer.handle_timeout(now);
        }
        if now >= bridge.poll_timeout() {
            bridge.handle_timeout(now);
        }
        // Deliver everything in flight (zero network delay) until both sides are quiet.
        loop {
            let mut moved = false;
            while let Some(t) = bridge.poll_transmit() {
                moved = true;
                match t.leg {
                    Leg::Conference => {
                        assert_eq!(t.destination, peer_addr);
                        peer.receive(now, gateway_conference, &t.payload);
                    }
                    Leg::Phone => {
                        assert_eq!(t.destination, phone.addr);
                        phone.receive(addr("192.0.2.100:30000"), &t.payload);
                    }
                }
            }
            while let Some((to, data)) = peer.poll_transmit() {
                moved = true;
                assert_eq!(to, gateway_conference);
                // SRTP keeps the RTP header readable: version 2, PT 111.
                if data.len() > 12 && data[0] >> 6 == 2 && data[1] & 0x7F == 111 {
                    bridge_rtp += 1;
                    if opts
                        .drop_every
                        .is_some_and(|n| bridge_rtp.is_multiple_of(n))
                    {
                        continue;
                    }
                }
                bridge.handle_receive(now, Leg::Conference, peer_addr, &data);
            }
            if !moved {
                break;
            }
        }
        while let Some(e) = bridge.poll_event() {
            events.push((now - t0, e));
        }
        let next = [
            next_phone,
            next_peer,
            peer.poll_timeout(),
            bridge.poll_timeout(),
        ]
        .into_iter()
        .min()
        .unwrap();
        now = next.max(now + Duration::from_micros(100));
    }
    Outcome {
        phone: phone.recording(),
        room: peer.recording(),
        levels: peer.levels.clone(),
        events,
        stats: bridge.stats(),
        phone_sources: phone.received_from.clone(),
    }
}

const PRESENT: Expect = Expect {
    min_level_dbfs: -30.0,
    min_coverage: 1.0,
};

fn tones(r: &Recording, from: f64, to: f64) -> ToneReport {
    r.slice(from, to).tones(&TONES)
}

#[test]
fn the_phone_hears_the_room_and_the_room_hears_the_phone() {
    let out = run_call(Options::default());
    let kinds: Vec<&MediaEvent> = out.events.iter().map(|(_, e)| e).collect();
    assert!(
        kinds.contains(&&MediaEvent::ConferenceConnected),
        "{kinds:?}"
    );
    assert!(kinds.contains(&&MediaEvent::PhoneMediaStarted), "{kinds:?}");
    assert!(
        !kinds
            .iter()
            .any(|e| matches!(e, MediaEvent::ConferenceFailed(_))),
        "{kinds:?}"
    );
    let connected_at = out
        .events
        .iter()
        .find(|(_, e)| *e == MediaEvent::ConferenceConnected)
        .unwrap()
        .0;
    assert!(
        connected_at < Duration::from_millis(500),
        "connected at {connected_at:?}"
    );

    // The phone: both offered speakers from the start, never itself.
    let before = tones(&out.phone, 1.0, 4.0);
    before.check_present(600.0, PRESENT).unwrap();
    before.check_present(1100.0, PRESENT).unwrap();
    before.check_absent(440.0, -50.0).unwrap();
    before.check_absent(1700.0, -50.0).unwrap();
    // The source added at 4 s is heard from then on.
    let added = tones(&out.phone, 4.5, 6.5);
    for hz in [600.0, 1100.0, 1700.0] {
        added.check_present(hz, PRESENT).unwrap();
    }
    // The source removed at 7 s is not, although its packets still arrive.
    let removed = tones(&out.phone, 7.5, 9.5);
    removed.check_absent(600.0, -50.0).unwrap();
    removed.check_present(1100.0, PRESENT).unwrap();
    removed.check_present(1700.0, PRESENT).unwrap();

    // The room: the phone's 440 Hz, and none of the room's own voices.
    let room = tones(&out.room, 1.0, 9.5);
    room.check_present(440.0, PRESENT).unwrap();
    for hz in [600.0, 1100.0, 1700.0] {
        room.check_absent(hz, -45.0).unwrap();
    }
    // Every packet carries the phone's level: a 0.3 full-scale sine is about −13.5 dBov.
    assert!(out.levels.len() > 400, "{} levels", out.levels.len());
    let loud = out
        .levels
        .iter()
        .filter(|&&l| (10..=20).contains(&l))
        .count();
    assert!(
        loud * 10 > out.levels.len() * 9,
        "levels {:?}",
        &out.levels[..20]
    );

    // The phone's key press, and RTP to the phone's own address.
    assert!(kinds.contains(&&MediaEvent::Dtmf('7')), "{kinds:?}");
    assert_eq!(
        kinds
            .iter()
            .filter(|e| matches!(e, MediaEvent::Dtmf(_)))
            .count(),
        1
    );
    assert!(out.phone_sources.len() >= 495);

    let s = out.stats;
    assert!(s.phone.packets_in >= 495 && s.phone.lost == 0, "{s:?}");
    assert!(s.phone.packets_out >= 495, "{s:?}");
    assert!(s.conference.packets_in > 1000, "{s:?}");
    assert!(s.conference.packets_out > 450, "{s:?}");
    assert_eq!(s.conference.concealed_frames, 0, "{s:?}");
}

#[test]
fn a_silent_phone_is_not_heard_in_the_room() {
    let out = run_call(Options {
        phone_silent: true,
        ..Options::default()
    });
    let room = tones(&out.room, 1.0, 9.5);
    assert!(room.check_present(440.0, PRESENT).is_err(), "{room}");
    assert!(out.levels.iter().all(|&l| l == 127), "silence is level 127");
    // The phone still hears the room.
    tones(&out.phone, 1.0, 4.0)
        .check_present(600.0, PRESENT)
        .unwrap();
}

#[test]
fn a_silent_room_is_not_heard_on_the_phone() {
    let out = run_call(Options {
        room_silent: true,
        ..Options::default()
    });
    let phone = tones(&out.phone, 1.0, 9.5);
    assert!(phone.check_present(600.0, PRESENT).is_err(), "{phone}");
    assert!(phone.check_present(1100.0, PRESENT).is_err(), "{phone}");
    // The room still hears the phone.
    tones(&out.room, 1.0, 9.5)
        .check_present(440.0, PRESENT)
        .unwrap();
}

#[test]
fn lost_bridge_packets_are_concealed_and_the_room_stays_audible() {
    let out = run_call(Options {
        drop_every: Some(10),
        ..Options::default()
    });
    let s = out.stats;
    // 10 % of ~1150 packets lost, each one concealed (FEC or PLC) rather than skipped.
    assert!(s.conference.lost > 90, "{s:?}");
    assert!(
        s.conference.concealed_frames >= s.conference.lost - 5,
        "{s:?}"
    );
    let heard = tones(&out.phone, 1.0, 4.0);
    heard.check_present(600.0, PRESENT).unwrap();
    heard.check_present(1100.0, PRESENT).unwrap();
    // Concealment keeps the tones clean: no other tone creeps in.
    heard.check_absent(440.0, -45.0).unwrap();
}

#[test]
fn reordered_phone_packets_are_played_in_order_without_loss() {
    let out = run_call(Options {
        swap_phone_pairs: true,
        ..Options::default()
    });
    let s = out.stats;
    assert_eq!(
        (s.phone.lost, s.phone.late, s.phone.concealed_frames),
        (0, 0, 0),
        "{s:?}"
    );
    let room = tones(&out.room, 1.0, 9.5);
    room.check_present(440.0, PRESENT).unwrap();
    // Out-of-order playout would smear the tone; in order it stays alone.
    assert!(room.share_db(440.0) > -1.0, "{room}");
}
