//! Loopback ports and readiness waits.

use anyhow::{bail, Result};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// A TCP port free on 127.0.0.1 right now. Another process could take it before the caller binds
/// it; inside the lab's private network namespace nothing else is running, so that is theoretical.
pub fn free_tcp_port() -> Result<u16> {
    Ok(TcpListener::bind((LOOPBACK, 0))?.local_addr()?.port())
}

/// A port free for both UDP and TCP on 127.0.0.1 (SIP peers bind both).
pub fn free_udp_tcp_port() -> Result<u16> {
    for _ in 0..50 {
        let udp = UdpSocket::bind((LOOPBACK, 0))?;
        let port = udp.local_addr()?.port();
        if TcpListener::bind((LOOPBACK, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no port free for both UDP and TCP on 127.0.0.1")
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`, polling `alive` between
/// attempts so a process that died is reported at once instead of after the timeout.
pub fn wait_tcp(port: u16, timeout: Duration, mut alive: impl FnMut() -> Result<()>) -> Result<()> {
    let addr = SocketAddr::from((LOOPBACK, port));
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        alive()?;
        if Instant::now() >= deadline {
            bail!("nothing listens on {addr} after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Waits until `path` exists (written atomically by the process that announces readiness).
pub fn wait_file(
    path: &Path,
    timeout: Duration,
    mut alive: impl FnMut() -> Result<()>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if path.exists() {
            return Ok(());
        }
        alive()?;
        if Instant::now() >= deadline {
            bail!("{} did not appear within {timeout:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// True when this process runs in a network namespace whose only interface is `lo` (the lab's
/// private namespace): then no test traffic can leave the machine whatever a component does.
pub fn in_private_netns() -> bool {
    // /proc/self/net/dev lists the reader's namespace (unlike /sys/class/net, which shows the
    // namespace that mounted sysfs).
    match std::fs::read_to_string("/proc/self/net/dev") {
        Ok(text) => text
            .lines()
            .skip(2)
            .filter_map(|l| l.split(':').next())
            .all(|name| name.trim() == "lo"),
        Err(_) => false,
    }
}

/// One socket as `ss` shows it.
#[derive(Debug, Clone)]
pub struct Socket {
    pub proto: String,
    pub state: String,
    pub local: String,
    pub peer: String,
    pub process: String,
}

impl Socket {
    pub fn local_is_loopback(&self) -> bool {
        is_loopback_endpoint(&self.local)
    }

    /// Unconnected sockets show a wildcard peer, which is not a destination.
    pub fn peer_is_loopback(&self) -> bool {
        self.peer.starts_with("0.0.0.0:")
            || self.peer.starts_with("*:")
            || self.peer == "*"
            || is_loopback_endpoint(&self.peer)
    }
}

fn is_loopback_endpoint(endpoint: &str) -> bool {
    let host = endpoint.rsplit_once(':').map_or(endpoint, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = host.split('%').next().unwrap_or(host);
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// The TCP and UDP sockets (listening, bound or connected) of every process whose process group
/// is one of `pgids` (each lab process leads its own group, so this covers what it forked).
pub fn sockets_of_groups(pgids: &[u32]) -> Result<Vec<Socket>> {
    let out = crate::proc::run(std::process::Command::new("ss").args(["-H", "-tuanp"]))?;
    let mut sockets = Vec::new();
    for line in out.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 7 {
            continue;
        }
        let process = cols[6..].join(" ");
        let owned =
            pids_in(&process).any(|pid| process_group(pid).is_some_and(|g| pgids.contains(&g)));
        if owned {
            sockets.push(Socket {
                proto: cols[0].into(),
                state: cols[1].into(),
                local: cols[4].into(),
                peer: cols[5].into(),
                process,
            });
        }
    }
    Ok(sockets)
}

fn pids_in(process: &str) -> impl Iterator<Item = u32> + '_ {
    process
        .split("pid=")
        .skip(1)
        .filter_map(|s| s.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
}

fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command: state ppid pgrp …
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

/// Whether a UDP socket of this network namespace is bound to `port` (IPv4), read from /proc.
/// Waiting for a peer to bind must not probe by binding: the probe holding the port for a
/// moment makes the peer's own bind fail now and then.
pub fn udp_port_bound(port: u16) -> bool {
    let table = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
    let wanted = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .any(|local| local.ends_with(&wanted))
}
