//! `media::start` on real loopback sockets: the str0m videobridge stand-in and a fake phone talk
//! to the gateway's two UDP ports; audio is checked by frequency, and the ports are free again
//! once `stop` returns.

mod media_support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket as StdUdpSocket};
use std::time::{Duration, Instant};

use gateway_lab::audio::Expect;
use jitsi_sip_gateway::config::{MediaSettings, PortRange};
use jitsi_sip_gateway::media::{self, MediaConfig, MediaError, MediaEvent, PhoneParams, G711};
use media_support::{BridgePeer, FakePhone, MS20};
use tokio::net::UdpSocket;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn config(min: u16, max: u16) -> MediaConfig {
    let settings = MediaSettings {
        ports: PortRange::new(min, max).unwrap(),
        opus_complexity: 5,
        opus_bitrate: 20_000,
        opus_fec: true,
        opus_dtx: false,
        bind_ip: std::net::IpAddr::from([0, 0, 0, 0]),
    };
    MediaConfig::new(settings, LOOPBACK, LOOPBACK).unwrap()
}

#[tokio::test]
async fn a_call_over_loopback_carries_audio_both_ways_and_frees_its_ports() {
    let cfg = config(40000, 40999);
    let peer_socket = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let phone_socket = UdpSocket::bind((LOOPBACK, 0)).await.unwrap();
    let peer_addr = peer_socket.local_addr().unwrap();
    let t0 = Instant::now();
    let (mut peer, offer) = BridgePeer::new(
        t0,
        peer_addr,
        &[(0xAAAA, 600.0, true), (0xBBBB, 1100.0, true)],
    );
    let mut phone = FakePhone::new(phone_socket.local_addr().unwrap(), Some(440.0));
    let params = PhoneParams {
        codec: G711::Pcmu,
        codec_pt: 0,
        telephone_event_pt: Some(101),
        remote_rtp: phone.addr,
    };

    let (mut handle, answer, phone_rtp) = media::start(&cfg, Some(params), offer).unwrap();
    let conference_rtp = SocketAddr::new(answer.candidates[0].ip, answer.candidates[0].port);
    assert_eq!(phone_rtp.ip(), LOOPBACK);
    assert!(cfg.settings.ports.contains(phone_rtp.port()));
    assert!(cfg.settings.ports.contains(conference_rtp.port()));
    assert_ne!(phone_rtp.port(), conference_rtp.port());
    peer.accept(Instant::now(), &answer);

    let mut events = Vec::new();
    let mut peer_buf = vec![0u8; 2048];
    let mut phone_buf = vec![0u8; 2048];
    let end = tokio::time::Instant::now() + Duration::from_millis(3500);
    let mut send_tick = tokio::time::interval(MS20);
    loop {
        while let Some((to, data)) = peer.poll_transmit() {
            peer_socket.send_to(&data, to).await.unwrap();
        }
        let peer_deadline = tokio::time::Instant::from_std(peer.poll_timeout());
        tokio::select! {
            () = tokio::time::sleep_until(end) => break,
            r = peer_socket.recv_from(&mut peer_buf) => {
                let (n, from) = r.unwrap();
                assert_eq!(from, conference_rtp);
                peer.receive(Instant::now(), from, &peer_buf[..n]);
            }
            r = phone_socket.recv_from(&mut phone_buf) => {
                let (n, from) = r.unwrap();
                phone.receive(from, &phone_buf[..n]);
            }
            _ = send_tick.tick() => {
                peer.send_audio(Instant::now());
                phone_socket.send_to(&phone.next_packet(), phone_rtp).await.unwrap();
            }
            () = tokio::time::sleep_until(peer_deadline) => peer.handle_timeout(Instant::now()),
            Some(e) = handle.next_event() => events.push(e),
        }
    }

    assert!(
        events.contains(&MediaEvent::ConferenceConnected),
        "{events:?}"
    );
    assert!(
        events.contains(&MediaEvent::PhoneMediaStarted),
        "{events:?}"
    );
    let want = Expect {
        min_level_dbfs: -30.0,
        min_coverage: 1.0,
    };
    let heard_by_phone = phone
        .recording()
        .slice(1.0, 3.0)
        .tones(&[440.0, 600.0, 1100.0]);
    heard_by_phone.check_present(600.0, want).unwrap();
    heard_by_phone.check_present(1100.0, want).unwrap();
    heard_by_phone.check_absent(440.0, -50.0).unwrap();
    let heard_by_room = peer
        .recording()
        .slice(1.0, 3.0)
        .tones(&[440.0, 600.0, 1100.0]);
    heard_by_room.check_present(440.0, want).unwrap();
    heard_by_room.check_absent(600.0, -45.0).unwrap();
    // The gateway answers from the port it gave in the SDP (symmetric RTP both ways).
    assert!(phone.received_from.iter().all(|&a| a == phone_rtp));

    let stats = handle.stop().await;
    assert!(stats.phone.packets_in > 100, "{stats:?}");
    assert!(stats.conference.packets_in > 200, "{stats:?}");
    assert!(stats.conference.packets_out > 100, "{stats:?}");
    // Both ports are back in the range's pool.
    StdUdpSocket::bind(phone_rtp).expect("phone port still held after stop");
    StdUdpSocket::bind(conference_rtp).expect("conference port still held after stop");
}

#[tokio::test]
async fn an_exhausted_port_range_is_a_typed_error() {
    let cfg = config(40990, 40991);
    let _held: Vec<StdUdpSocket> = (40990..=40991)
        .filter_map(|p| StdUdpSocket::bind((LOOPBACK, p)).ok())
        .collect();
    let (_peer, offer) = BridgePeer::new(Instant::now(), "127.0.0.1:9".parse().unwrap(), &[]);
    let params = PhoneParams {
        codec: G711::Pcma,
        codec_pt: 8,
        telephone_event_pt: None,
        remote_rtp: "127.0.0.1:9".parse().unwrap(),
    };
    let err = media::start(&cfg, Some(params), offer)
        .err()
        .expect("no port is free");
    assert!(matches!(err, MediaError::NoFreePort { .. }), "{err}");
}

/// The media runs on the process's media threads, not on the caller's runtime: a call can be
/// started from plain code, and stopping it frees both ports.
#[test]
fn start_outside_a_runtime_runs_on_the_media_threads() {
    let cfg = config(40900, 40949);
    let (_peer, offer) = BridgePeer::new(Instant::now(), "127.0.0.1:9".parse().unwrap(), &[]);
    let params = PhoneParams {
        codec: G711::Pcmu,
        codec_pt: 0,
        telephone_event_pt: None,
        remote_rtp: "127.0.0.1:9".parse().unwrap(),
    };
    let (handle, answer, phone_rtp) = media::start(&cfg, Some(params), offer).unwrap();
    let conference_port = answer.candidates[0].port;
    assert!(StdUdpSocket::bind((LOOPBACK, phone_rtp.port())).is_err());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(handle.stop());
    StdUdpSocket::bind((LOOPBACK, phone_rtp.port())).expect("phone port free after stop");
    StdUdpSocket::bind((LOOPBACK, conference_port)).expect("conference port free after stop");
}
