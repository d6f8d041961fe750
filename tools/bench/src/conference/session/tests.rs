//! A bridge session against a gateway-like str0m peer (ICE controlling, DTLS client, as
//! `media::conference_leg` sets itself up), datagrams moved in memory on virtual time.

use super::*;
use crate::conference::audio::speaker_loops;
use crate::conference::dtls_cert;
use crate::conference::testing::{phone_tone_packets, GatewayPeer};

const BRIDGE: &str = "127.0.0.1:6000";
const GATEWAY: &str = "127.0.0.1:5000";

type Gateway = GatewayPeer;

fn gateway(now: Instant, ufrag: &str, pwd: &str, fingerprint: &str, speakers: &[u32]) -> Gateway {
    let (g, b) = (GATEWAY.parse().unwrap(), BRIDGE.parse().unwrap());
    GatewayPeer::new(
        now,
        g,
        b,
        ufrag,
        pwd,
        fingerprint,
        speakers,
        phone_tone_packets().into(),
    )
}

/// Moves every queued datagram across until both sides are quiet.
fn pump(now: Instant, bridge: &mut BridgeSession, gw: &mut Gateway) {
    let (b, g) = (BRIDGE.parse().unwrap(), GATEWAY.parse().unwrap());
    for _ in 0..100 {
        let mut moved = false;
        while let Some(d) = bridge.poll_transmit() {
            assert_eq!(d.to, g);
            let r = Receive::new(Protocol::Udp, b, g, &d.payload).unwrap();
            gw.input(Input::Receive(now, r));
            moved = true;
        }
        for d in std::mem::take(&mut gw.out) {
            bridge.handle_receive(now, g, b, &d.payload);
            moved = true;
        }
        if !moved {
            return;
        }
    }
}

fn env(speakers: usize, decode_every: u32) -> Arc<MediaEnv> {
    Arc::new(MediaEnv::new(
        dtls_cert().unwrap(),
        speaker_loops(speakers, -12.0, crate::conference::SpeakerSignal::Tone).unwrap(),
        decode_every,
    ))
}

fn fingerprint_of(env: &MediaEnv) -> String {
    crate::conference::fingerprint(&env.cert).unwrap()
}

/// Sets up both sides as Jingle would (offer, transport-info, session-accept) and runs `secs`
/// seconds of audio both ways on virtual time.
fn run(
    speakers: &[u32],
    decode_every: u32,
    secs: u64,
    tone: Option<f64>,
) -> (BridgeSession, Gateway) {
    let t0 = Instant::now();
    let env = env(speakers.len(), decode_every);
    let fp = fingerprint_of(&env);
    let ice = IceCreds {
        ufrag: "bridgeufrag".into(),
        pass: "bridgepassword0123456789".into(),
    };
    let mut bridge =
        BridgeSession::new(t0, env, BRIDGE.parse().unwrap(), ice.clone(), speakers, 0).unwrap();
    bridge.rx.tone_hz = tone;
    let mut gw = gateway(t0, &ice.ufrag, &ice.pass, &fp, speakers);
    // The gateway's checks may come first: str0m queues them until the credentials arrive.
    pump(t0, &mut bridge, &mut gw);
    let creds = gw.credentials();
    let cand = RemoteCandidate {
        foundation: "1".into(),
        component: 1,
        protocol: "udp".into(),
        priority: 2_130_706_431,
        addr: GATEWAY.parse().unwrap(),
        kind: "host".into(),
    };
    bridge.set_remote_ice(t0, creds, &[cand]);
    let fingerprint = gw.fingerprint();
    bridge.accept(Some(&fingerprint), Some(*gw.ssrc));
    let mut now = t0;
    let mut frames = 0;
    let end = t0 + Duration::from_secs(secs) + Duration::from_millis(500);
    let mut connected_at = None;
    while now < end {
        pump(now, &mut bridge, &mut gw);
        while let Some(e) = bridge.poll_event() {
            match e {
                SessionEvent::Connected => connected_at = Some(now),
                SessionEvent::Failed(why) => panic!("bridge failed: {why}"),
            }
        }
        if let Some(c) = connected_at {
            if gw.connected
                && now >= c + Duration::from_millis(20 * frames as u64)
                && frames < secs as usize * 50
            {
                bridge.send_frame(now);
                gw.send(now);
                frames += 1;
            }
        }
        now += Duration::from_millis(5);
        if bridge.poll_timeout().is_some_and(|t| t <= now) {
            bridge.handle_timeout(now);
        }
        if gw.timeout <= now {
            gw.input(Input::Timeout(now));
        }
    }
    assert!(connected_at.is_some(), "never connected");
    (bridge, gw)
}

#[test]
fn every_speaker_reaches_the_gateway_and_the_gateways_tone_is_heard() {
    let speakers = [1111, 2222, 3333];
    let (bridge, gw) = run(&speakers, 1, 3, Some(440.0));
    for s in speakers {
        let n = gw.received.get(&s).copied().unwrap_or(0);
        assert_eq!(
            n, 150,
            "speaker {s}: {n} of 150 packets (all: {:?})",
            gw.received
        );
    }
    assert_eq!(bridge.tx_packets, 450);
    let rx = &bridge.rx.stats;
    assert_eq!((rx.packets, rx.expected, rx.late), (150, 150, 0), "{rx:?}");
    assert_eq!(rx.ssrc, Some(*gw.ssrc));
    let tone = bridge.rx.last_tone.clone().expect("a complete window");
    let level = tone.dbfs.unwrap();
    assert!(level > -16.0, "440 Hz at {level} dBFS");
    // Not the speakers' tones: the gateway's stream is its own.
    assert!(
        tone.rms_dbfs < level + 0.0 && tone.rms_dbfs > level - 6.0,
        "{tone:?}"
    );
}

#[test]
fn without_an_expected_tone_the_dominant_frequency_is_reported() {
    let (bridge, _) = run(&[1111], 1, 2, None);
    let tone = bridge.rx.last_tone.clone().unwrap();
    assert_eq!(tone.dbfs, None);
    let (hz, _) = tone.dominant.unwrap();
    assert!((hz - 440.0).abs() <= 1.0, "{tone:?}");
}

#[test]
fn a_duty_cycle_decodes_fewer_windows() {
    // Four seconds: every second decoded gives three complete windows (the first frames are
    // the decoder's warm-up), one second in two gives two (decoded 0–1 s and 2–3 s).
    let (all, _) = run(&[1111], 1, 4, Some(440.0));
    let (half, _) = run(&[1111], 2, 4, Some(440.0));
    assert_eq!((all.rx.windows, half.rx.windows), (3, 2));
    assert!(half.rx.last_tone.as_ref().unwrap().dbfs.unwrap() > -16.0);
    assert_eq!(half.rx.stats.packets, 200);
}

#[test]
fn a_wrong_fingerprint_fails_the_session() {
    let t0 = Instant::now();
    let env = env(1, 1);
    let fp = fingerprint_of(&env);
    let ice = IceCreds {
        ufrag: "u1".into(),
        pass: "p1p1p1p1p1p1p1p1p1p1p1p1".into(),
    };
    let mut bridge =
        BridgeSession::new(t0, env, BRIDGE.parse().unwrap(), ice.clone(), &[7], 0).unwrap();
    let mut gw = gateway(t0, &ice.ufrag, &ice.pass, &fp, &[7]);
    let creds = gw.credentials();
    bridge.set_remote_ice(t0, creds, &[]);
    let mut wrong = gw.fingerprint();
    wrong.value = wrong.value.replace(|c: char| c.is_ascii_hexdigit(), "0");
    bridge.accept(Some(&wrong), Some(*gw.ssrc));
    let mut now = t0;
    let mut failed = None;
    for _ in 0..400 {
        pump(now, &mut bridge, &mut gw);
        while let Some(e) = bridge.poll_event() {
            if let SessionEvent::Failed(why) = e {
                failed = Some(why);
            }
        }
        if failed.is_some() {
            break;
        }
        now += Duration::from_millis(5);
        bridge.handle_timeout(now);
        gw.input(Input::Timeout(now));
    }
    assert!(failed.is_some_and(|w| w.contains("fingerprint")));
    assert!(bridge.is_failed());
}

#[test]
fn garbage_datagrams_change_nothing() {
    let t0 = Instant::now();
    let env = env(1, 1);
    let ice = IceCreds {
        ufrag: "u1".into(),
        pass: "p1p1p1p1p1p1p1p1p1p1p1p1".into(),
    };
    let mut bridge = BridgeSession::new(t0, env, BRIDGE.parse().unwrap(), ice, &[7], 0).unwrap();
    let (from, to) = (GATEWAY.parse().unwrap(), BRIDGE.parse().unwrap());
    for d in [&[][..], &[0u8; 3], &[0x80; 40], &[22; 100], &[0xff; 1500]] {
        assert!(!bridge.accepts(t0, from, to, d));
        bridge.handle_receive(t0, from, to, d);
    }
    assert!(!bridge.is_failed());
    assert!(bridge.poll_event().is_none());
}

#[test]
fn a_recording_takes_the_next_frames_with_lost_ones_concealed() {
    let t0 = Instant::now();
    let packets = phone_tone_packets();
    // Paused by the duty cycle (phase 1 of 2): a recording decodes anyway.
    let mut rx = Analysis::new(audio::hann(), 2, 1);
    let (tx, done) = std::sync::mpsc::channel();
    rx.record(10, tx);
    for seq in (0..12u64).filter(|&s| s != 4 && s != 5) {
        let at = t0 + Duration::from_millis(20 * seq);
        rx.packet(at, 1000 + seq, 0, &packets[seq as usize], Some(20));
    }
    let rec = done.try_recv().expect("complete after 10 frames");
    assert_eq!(rec.samples.len(), 10 * FRAME_8K);
    assert_eq!(rec.frame_arrivals.len(), 10);
    // Frames 4 and 5 were concealed when packet 6 arrived, 60 ms after packet 3: late.
    assert_eq!(rec.frame_arrivals[4], t0 + Duration::from_millis(120));
    assert_eq!(rec.frame_arrivals[6], t0 + Duration::from_millis(120));
    assert_eq!(
        (rx.stats.packets, rx.stats.expected, rx.stats.late),
        (10, 12, 1)
    );
    assert_eq!(rx.stats.audio_level, Some(20));
}
