//! The gateway under test as a real process: configured the docker way (environment variables)
//! plus flags for the lab's ports, logging JSON so tests can read what it did.

use crate::proc::{self, Supervised};
use crate::prosody::Prosody;
use crate::{http, net};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

pub struct Gateway {
    proc: Supervised,
    pub sip_port: u16,
    pub api_port: u16,
    pub media_ports: (u16, u16),
    log: PathBuf,
}

/// Extra settings for one gateway run.
#[derive(Clone, Debug, Default)]
pub struct GatewayOptions {
    /// Environment variables (docker-jitsi-meet names), e.g. `JIGASI_SIP_DEFAULT_ROOM`.
    pub env: Vec<(String, String)>,
    /// `--set key=value` overrides.
    pub set: Vec<(String, String)>,
}

impl GatewayOptions {
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn set(mut self, k: &str, v: &str) -> Self {
        self.set.push((k.into(), v.into()));
        self
    }
}

impl Gateway {
    /// Starts `bin` against `prosody` on free loopback ports and waits for its "ready" log line.
    pub fn start(bin: &Path, dir: &Path, prosody: &Prosody, opts: &GatewayOptions) -> Result<Self> {
        let sip_port = net::free_udp_tcp_port()?;
        let api_port = net::free_tcp_port()?;
        let media_ports = media_range()?;
        let log = dir.join("gateway.log");
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env(
                "RUST_LOG",
                std::env::var("GATEWAY_LOG").unwrap_or_else(|_| "info".into()),
            )
            .env("RUST_BACKTRACE", "1")
            .env("XMPP_SERVER", format!("127.0.0.1:{}", prosody.c2s_port))
            .env("XMPP_DOMAIN", &prosody.domain)
            .env("JIGASI_XMPP_PASSWORD", &prosody.jigasi_password)
            .env("JIGASI_PORT_MIN", media_ports.0.to_string())
            .env("JIGASI_PORT_MAX", media_ports.1.to_string());
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        cmd.args(["--log-format", "json"])
            .arg("--sip-listen")
            .arg(format!("127.0.0.1:{sip_port}"))
            .arg("--set")
            .arg(format!("api.port={api_port}"))
            .arg("--set")
            .arg("media.bind_ip=127.0.0.1")
            // The lab's Prosody has no TLS.
            .arg("--set")
            .arg("xmpp.tls=none");
        for (k, v) in &opts.set {
            cmd.arg("--set").arg(format!("{k}={v}"));
        }
        cmd.arg("run");
        let mut proc = Supervised::spawn("gateway", cmd, &log)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if read_log(&log)
                .iter()
                .any(|l| l["message"] == "gateway ready")
            {
                break;
            }
            proc.check_alive()?;
            if Instant::now() > deadline {
                bail!(
                    "the gateway did not log \"gateway ready\":\n{}",
                    proc.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            proc,
            sip_port,
            api_port,
            media_ports,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    pub fn sip_target(&self) -> String {
        format!("127.0.0.1:{}", self.sip_port)
    }

    /// Every JSON log line so far.
    pub fn log_lines(&self) -> Vec<Value> {
        read_log(&self.log)
    }

    /// Waits for a log line satisfying `pred` (e.g. a call's end) and returns it.
    pub fn wait_log(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.log_lines().into_iter().find(|l| pred(l)) {
                return Ok(line);
            }
            self.proc.check_alive()?;
            if Instant::now() > deadline {
                bail!(
                    "no log line for {what} within {timeout:?}:\n{}",
                    self.proc.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// `GET` on the gateway's HTTP API, parsed as JSON.
    pub fn api(&self, path: &str) -> Result<Value> {
        let (status, body) = http::get(self.api_port, path)?;
        if status != 200 {
            bail!("GET {path} → {status}: {body}");
        }
        serde_json::from_str(&body).with_context(|| format!("GET {path}: not JSON: {body}"))
    }

    /// `GET` on the gateway's HTTP API whatever the status: the status and the body as JSON
    /// (for endpoints such as `/about/health` that answer 500 with a body).
    pub fn api_with_status(&self, path: &str) -> Result<(u16, Value)> {
        let (status, body) = http::get(self.api_port, path)?;
        let json = serde_json::from_str(&body)
            .with_context(|| format!("GET {path} → {status}: not JSON: {body}"))?;
        Ok((status, json))
    }

    /// Polls `/about/health` until its status is `status` (200 or 500); returns the last body.
    pub fn wait_health(&mut self, status: u16, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let (now, body) = self.api_with_status("/about/health")?;
            if now == status {
                return Ok(body);
            }
            self.proc.check_alive()?;
            if Instant::now() > deadline {
                bail!("/about/health still {now} after {timeout:?}, not {status}: {body}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process's open sockets, counted from /proc (what a leak would grow).
    pub fn open_sockets(&self) -> Result<usize> {
        let mut n = 0;
        for fd in std::fs::read_dir(format!("/proc/{}/fd", self.pid()))? {
            if let Ok(target) = std::fs::read_link(fd?.path()) {
                n += target.to_string_lossy().starts_with("socket:") as usize;
            }
        }
        Ok(n)
    }

    /// SIGTERM, and the exit status (the gateway should exit 0 on its own).
    pub fn stop(&mut self) -> Result<ExitStatus> {
        self.terminate();
        self.wait_exit(Duration::from_secs(15))
    }

    /// Sends SIGTERM without waiting: the gateway drains (calls in progress go on).
    pub fn terminate(&self) {
        // SAFETY: plain syscall on our child's pid.
        unsafe {
            libc::kill(self.pid() as i32, libc::SIGTERM);
        }
    }

    /// Waits for the gateway to exit by itself; fails unless it exits 0.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let status = self.proc.wait_exit(timeout)?;
        if !status.success() {
            bail!(
                "the gateway exited with {}:\n{}",
                proc::describe(status),
                self.proc.log_tail(30)
            );
        }
        Ok(status)
    }
}

fn read_log(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A block of 100 UDP ports for the gateway's media, different for parallel tests.
fn media_range() -> Result<(u16, u16)> {
    for _ in 0..50 {
        let base = net::free_udp_tcp_port()? / 100 * 100;
        if (20000..=64000).contains(&base) {
            return Ok((base, base + 99));
        }
    }
    Ok((40000, 40099))
}
