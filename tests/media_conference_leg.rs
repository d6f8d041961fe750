//! The conference leg alone, on virtual time, against the str0m videobridge stand-in: how it
//! connects, and every way it fails (unreachable bridge, wrong certificate, bridge gone after
//! connecting), plus offers it must refuse.

mod media_support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use jitsi_sip_gateway::media::conference_leg::{
    ConferenceEvent, ConferenceFailure, ConferenceLeg, CONNECT_TIMEOUT, ICE_LOSS_GRACE,
};
use jitsi_sip_gateway::media::{ConferenceOffer, DtlsIdentity, MediaError};
use media_support::{BridgePeer, MS20};

const LOCAL: &str = "192.0.2.100:30002";
const PEER: &str = "192.0.2.1:10000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Drives the leg and the peer for `duration` of virtual time. `deliver` decides, by virtual
/// time since start, whether datagrams still reach their destination.
fn run(
    leg: &mut ConferenceLeg,
    peer: &mut BridgePeer,
    t0: Instant,
    duration: Duration,
    deliver: impl Fn(Duration) -> bool,
) -> Vec<(Duration, ConferenceEvent)> {
    let mut events = Vec::new();
    let mut now = t0;
    let mut next_audio = t0 + MS20;
    while now < t0 + duration {
        if now >= next_audio {
            peer.send_audio(now);
            next_audio += MS20;
        }
        if now >= peer.poll_timeout() {
            peer.handle_timeout(now);
        }
        if leg.poll_timeout().is_some_and(|t| now >= t) {
            leg.handle_timeout(now);
        }
        loop {
            let mut moved = false;
            while let Some(d) = leg.poll_transmit() {
                moved = true;
                if deliver(now - t0) {
                    peer.receive(now, addr(LOCAL), &d.payload);
                }
            }
            while let Some((_, data)) = peer.poll_transmit() {
                moved = true;
                if deliver(now - t0) {
                    leg.handle_receive(now, addr(PEER), addr(LOCAL), &data);
                }
            }
            if !moved {
                break;
            }
        }
        while let Some(e) = leg.poll_event() {
            if matches!(e, ConferenceEvent::Rtp(_))
                && events
                    .iter()
                    .any(|(_, e)| matches!(e, ConferenceEvent::Rtp(_)))
            {
                continue; // one RTP event is enough to look at
            }
            events.push((now - t0, e));
        }
        let mut next = next_audio.min(peer.poll_timeout());
        if let Some(t) = leg.poll_timeout() {
            next = next.min(t);
        }
        now = next.max(now + Duration::from_micros(100));
    }
    events
}

fn setup(t0: Instant, tweak: impl FnOnce(&mut ConferenceOffer)) -> (ConferenceLeg, BridgePeer) {
    let (mut peer, mut offer) = BridgePeer::new(t0, addr(PEER), &[(0x1234, 600.0, true)]);
    tweak(&mut offer);
    let identity = DtlsIdentity::generate().unwrap();
    let (leg, answer) = ConferenceLeg::new(t0, &offer, addr(LOCAL), &identity).unwrap();
    peer.accept(t0, &answer);
    (leg, peer)
}

#[test]
fn the_leg_connects_and_delivers_the_bridges_rtp_with_its_audio_level() {
    let t0 = Instant::now();
    let (mut leg, mut peer) = setup(t0, |_| {});
    let events = run(&mut leg, &mut peer, t0, Duration::from_secs(1), |_| true);
    assert!(
        matches!(events[0].1, ConferenceEvent::Connected),
        "{events:?}"
    );
    let rtp = events
        .iter()
        .find_map(|(_, e)| match e {
            ConferenceEvent::Rtp(r) => Some(r.clone()),
            _ => None,
        })
        .expect("RTP from the bridge");
    assert_eq!(rtp.ssrc, 0x1234);
    assert_eq!(rtp.payload_type, 111);
    assert_eq!(rtp.audio_level, Some(12));
    assert!(leg.is_connected());
}

#[test]
fn an_unreachable_bridge_fails_at_the_connect_timeout() {
    let t0 = Instant::now();
    let (mut leg, mut peer) = setup(t0, |_| {});
    let events = run(&mut leg, &mut peer, t0, CONNECT_TIMEOUT * 2, |_| false);
    assert_eq!(events.len(), 1, "{events:?}");
    let (at, event) = &events[0];
    assert_eq!(
        *event,
        ConferenceEvent::Failed(ConferenceFailure::Timeout(CONNECT_TIMEOUT))
    );
    assert!(
        *at >= CONNECT_TIMEOUT && *at < CONNECT_TIMEOUT + Duration::from_millis(100),
        "{at:?}"
    );
    assert!(leg.is_failed());
    assert_eq!(leg.poll_timeout(), None);
}

#[test]
fn a_bridge_with_another_certificate_fails_the_leg() {
    let t0 = Instant::now();
    // The offer announces a fingerprint that is not the bridge's certificate.
    let (mut leg, mut peer) = setup(t0, |offer| {
        offer.fingerprint.1 = vec!["AB"; 32].join(":");
    });
    let events = run(&mut leg, &mut peer, t0, Duration::from_secs(2), |_| true);
    assert!(
        !events.iter().any(|(_, e)| *e == ConferenceEvent::Connected),
        "{events:?}"
    );
    let failed = events
        .iter()
        .find(|(_, e)| matches!(e, ConferenceEvent::Failed(ConferenceFailure::Transport(_))));
    assert!(
        failed.is_some_and(|(at, _)| *at < Duration::from_secs(1)),
        "{events:?}"
    );
}

#[test]
fn a_bridge_gone_after_connecting_fails_the_leg_after_the_grace() {
    let t0 = Instant::now();
    let (mut leg, mut peer) = setup(t0, |_| {});
    let cut = Duration::from_secs(2);
    let events = run(&mut leg, &mut peer, t0, Duration::from_secs(90), |t| {
        t < cut
    });
    assert!(
        matches!(events[0].1, ConferenceEvent::Connected),
        "{events:?}"
    );
    let (at, failure) = events
        .iter()
        .find_map(|(at, e)| match e {
            ConferenceEvent::Failed(f) => Some((*at, f.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no failure: {events:?}"));
    assert_eq!(failure, ConferenceFailure::IceLost(ICE_LOSS_GRACE));
    assert!(at > cut + ICE_LOSS_GRACE, "failed at {at:?}");
}

#[test]
fn offers_the_leg_cannot_use_are_refused() {
    let t0 = Instant::now();
    let identity = DtlsIdentity::generate().unwrap();
    let (_, good) = BridgePeer::new(t0, addr(PEER), &[]);
    type Tweak = Box<dyn Fn(&mut ConferenceOffer)>;
    let cases: Vec<(&str, Tweak)> = vec![
        (
            "md5 fingerprint",
            Box::new(|o| o.fingerprint.0 = "md5".into()),
        ),
        (
            "fingerprint not hex",
            Box::new(|o| o.fingerprint.1 = "zz:zz".into()),
        ),
        ("no ufrag", Box::new(|o| o.ufrag.clear())),
        ("payload type 200", Box::new(|o| o.opus_pt = 200)),
        (
            "event PT = Opus PT",
            Box::new(|o| o.telephone_event_pt = Some(o.opus_pt)),
        ),
        (
            "extension id 15",
            Box::new(|o| o.audio_level_ext = Some(15)),
        ),
    ];
    for (what, tweak) in cases {
        let mut offer = good.clone();
        tweak(&mut offer);
        let result = ConferenceLeg::new(t0, &offer, addr(LOCAL), &identity);
        assert!(
            matches!(result, Err(MediaError::Offer(_))),
            "{what}: {:?}",
            result.err()
        );
    }
}
