//! Kamailio in the lab: as the PBX in front of the gateway that relays calls and adds the room
//! header from the dialled user part (`tests/lab/kamailio/room-proxy.cfg.in`), and as the
//! gateway's registrar and outbound proxy with digest auth (`registrar.cfg.in`).

use crate::proc::{self, Supervised};
use crate::{net, paths};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Waits until Kamailio has bound its UDP `port` (it binds once its config is loaded).
fn wait_bound(proc: &mut Supervised, port: u16) -> Result<()> {
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
    Ok(())
}

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
        wait_bound(&mut proc, port)?;
        Ok(Self { port, proc })
    }

    pub fn uri_for(&self, user: &str) -> String {
        format!("sip:{user}@127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        self.proc.stop();
    }
}

/// The lab registrar and outbound proxy (`tests/lab/kamailio/registrar.cfg.in`): UDP and TCP on
/// one port, users gateway/gatewaypw, alice/alicepw, bob/bobpw in the realm of their From
/// domain (127.0.0.1 or sip.lab.test), REGISTER challenged with 401 and calls from those
/// domains with 407; other hosts in a Request-URI are relayed to.
pub struct Registrar {
    pub port: u16,
    dir: PathBuf,
    proc: Supervised,
}

impl Registrar {
    /// Starts it on a free loopback port, with its files in `dir/registrar`.
    pub fn start(dir: &Path) -> Result<Self> {
        let port = net::free_udp_tcp_port()?;
        let conf = dir.join("registrar");
        let mut cmd = Command::new(paths::lab_dir().join("kamailio/run-registrar.sh"));
        cmd.arg(&conf).arg(port.to_string());
        let mut proc = Supervised::spawn("kamailio", cmd, &dir.join("registrar.log"))?;
        wait_bound(&mut proc, port)?;
        let ctl = conf.join("run/kamailio_ctl");
        net::wait_file(&ctl, Duration::from_secs(10), || proc.check_alive())?;
        Ok(Self {
            port,
            dir: conf,
            proc,
        })
    }

    /// `host:port` to send to.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The addresses of record in its location table (`kamcmd ul.dump brief`).
    pub fn aors(&self) -> Result<Vec<String>> {
        let ctl = format!("unix:{}", self.dir.join("run/kamailio_ctl").display());
        let dump = proc::run(Command::new("kamcmd").args(["-s", &ctl, "ul.dump", "brief"]))
            .context("kamcmd ul.dump")?;
        Ok(dump
            .lines()
            .filter_map(|l| l.trim().strip_prefix("AoR:"))
            .map(|aor| aor.trim().to_string())
            .collect())
    }

    /// Waits until `aor` is in the location table (`present`) or gone from it.
    pub fn wait_aor(&mut self, aor: &str, present: bool, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.aors()?.iter().any(|a| a == aor) == present {
                return Ok(());
            }
            self.proc.check_alive()?;
            anyhow::ensure!(
                Instant::now() < deadline,
                "AoR {aor} still {} after {timeout:?}: {:?}",
                if present { "absent" } else { "present" },
                self.aors()?
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The requests it received, one line each: `<METHOD> <request-uri> from <ip>:<port>
    /// (fU=<from user>) tx=<Call-ID>/<CSeq>`, in order (retransmissions included).
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(self.proc.log_path())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once("REQ ").map(|(_, rest)| rest.to_string()))
            .collect()
    }

    /// How many `method` requests it received, as transactions: a retransmission (same Call-ID
    /// and CSeq, which a loaded machine makes over UDP) counts once.
    pub fn count(&self, method: &str) -> usize {
        let prefix = format!("{method} ");
        let transactions: std::collections::HashSet<String> = self
            .requests()
            .into_iter()
            .filter(|r| r.starts_with(&prefix))
            .map(|r| match r.rsplit_once(" tx=") {
                Some((_, tx)) => tx.to_string(),
                None => r,
            })
            .collect();
        transactions.len()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.proc.log_tail(lines)
    }

    pub fn stop(&mut self) {
        self.proc.stop();
    }
}
