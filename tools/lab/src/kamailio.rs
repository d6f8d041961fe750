//! Kamailio as the PBX in front of the gateway: relays calls and adds the room header from the
//! dialled user part (`tests/lab/kamailio/room-proxy.cfg.in`).

use crate::proc::Supervised;
use crate::{net, paths};
use anyhow::Result;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub struct RoomProxy {
    pub port: u16,
    proc: Supervised,
}

impl RoomProxy {
    /// Starts the proxy on a free loopback port, relaying to `gateway` (host:port) and adding
    /// `room_header: <dialled user>` to each INVITE.
    pub fn start(dir: &Path, gateway: &str, room_header: &str) -> Result<Self> {
        let port = net::free_udp_tcp_port()?;
        let mut cmd = Command::new(paths::lab_dir().join("kamailio/run-kamailio.sh"));
        cmd.arg(dir.join("kamailio"))
            .arg(port.to_string())
            .arg(gateway)
            .arg(room_header);
        let mut proc = Supervised::spawn("kamailio", cmd, &dir.join("kamailio.log"))?;
        // UDP only: ready once the port is taken.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::UdpSocket::bind((net::LOOPBACK, port)).is_ok() {
            proc.check_alive()?;
            anyhow::ensure!(
                Instant::now() < deadline,
                "kamailio did not bind {port}:\n{}",
                proc.log_tail(20)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { port, proc })
    }

    pub fn uri_for(&self, user: &str) -> String {
        format!("sip:{user}@127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        self.proc.stop();
    }
}
