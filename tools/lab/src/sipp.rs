//! SIPp (Debian `sip-tester`) runs and the RTP pcaps it plays.

use crate::proc::{self, Supervised};
use crate::{net, paths};
use anyhow::{ensure, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Encodes an 8 kHz mono WAV as G.711 µ-law (with sox, independent of the gateway's codec) and
/// writes it as a pcap of 20 ms RTP packets (PT 0) for SIPp's `play_pcap_audio`.
pub fn write_pcmu_pcap(wav: &Path, out: &Path) -> Result<()> {
    write_pcmu_pcap_from(wav, out, 0)
}

/// As [`write_pcmu_pcap`], its RTP sequence numbers and timestamps continuing a stream whose
/// first `first_packet` packets were another pcap (the same stream going on, e.g. a callee's
/// early media and then its answered call).
pub fn write_pcmu_pcap_from(wav: &Path, out: &Path, first_packet: usize) -> Result<()> {
    let raw = out.with_extension("ulaw");
    proc::run(
        Command::new("sox")
            .arg(wav)
            .args([
                "-t", "raw", "-e", "mu-law", "-b", "8", "-r", "8000", "-c", "1",
            ])
            .arg(&raw),
    )?;
    let payload = std::fs::read(&raw)?;
    std::fs::remove_file(&raw)?;
    ensure!(
        payload.len() >= 160,
        "{} is shorter than one packet",
        wav.display()
    );
    std::fs::write(out, rtp_pcap_from(&payload, 0, 160, first_packet))
        .with_context(|| format!("writing {}", out.display()))
}

/// A pcap (Ethernet link type) of RTP packets carrying `payload` in `per_packet`-byte chunks,
/// one every 20 ms. SIPp rewrites addresses and ports when it plays it.
pub fn rtp_pcap(payload: &[u8], pt: u8, per_packet: usize) -> Vec<u8> {
    rtp_pcap_from(payload, pt, per_packet, 0)
}

/// As [`rtp_pcap`], the RTP sequence numbers and timestamps starting as if `first_packet`
/// packets came before (the capture times still start at 0).
pub fn rtp_pcap_from(payload: &[u8], pt: u8, per_packet: usize, first_packet: usize) -> Vec<u8> {
    let mut f = Vec::new();
    // Global header: magic, v2.4, tz 0, sigfigs 0, snaplen 65535, LINKTYPE_ETHERNET.
    f.extend(0xa1b2_c3d4u32.to_le_bytes());
    f.extend(2u16.to_le_bytes());
    f.extend(4u16.to_le_bytes());
    f.extend(0i32.to_le_bytes());
    f.extend(0u32.to_le_bytes());
    f.extend(65535u32.to_le_bytes());
    f.extend(1u32.to_le_bytes());
    let ssrc = 0x1234_5678u32;
    for (i, chunk) in payload.chunks_exact(per_packet).enumerate() {
        let n = first_packet + i;
        let mut rtp = vec![0x80, pt | if n == 0 { 0x80 } else { 0 }];
        rtp.extend((1000u16.wrapping_add(n as u16)).to_be_bytes());
        rtp.extend(((n * per_packet) as u32).to_be_bytes());
        rtp.extend(ssrc.to_be_bytes());
        rtp.extend(chunk);
        let udp_len = 8 + rtp.len();
        let mut udp = Vec::with_capacity(udp_len);
        udp.extend(6000u16.to_be_bytes());
        udp.extend(6000u16.to_be_bytes());
        udp.extend((udp_len as u16).to_be_bytes());
        udp.extend(0u16.to_be_bytes()); // no UDP checksum (allowed over IPv4)
        udp.extend(&rtp);
        let mut ip = vec![0x45, 0];
        ip.extend(((20 + udp_len) as u16).to_be_bytes());
        ip.extend([0, 0, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1]);
        let sum = ipv4_checksum(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        let mut frame = vec![0u8; 12];
        frame.extend([0x08, 0x00]);
        frame.extend(&ip);
        frame.extend(&udp);
        let t_us = i as u64 * 20_000;
        f.extend(((t_us / 1_000_000) as u32).to_le_bytes());
        f.extend(((t_us % 1_000_000) as u32).to_le_bytes());
        f.extend((frame.len() as u32).to_le_bytes());
        f.extend((frame.len() as u32).to_le_bytes());
        f.extend(frame);
    }
    f
}

fn ipv4_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]) as u32)
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A SIPp user agent client call: one call of `scenario` (a file in `tests/lab/sipp`) to `target`.
pub struct SippCall {
    pub proc: Supervised,
    pub dir: PathBuf,
    /// SIPp's RTP port: where the far end sends the caller's audio.
    pub media_port: u16,
}

impl SippCall {
    /// Starts SIPp in `dir` (where the scenario's pcap, `caller.pcap`, must be), calling `user`
    /// at `target` and holding the call for `hold_ms` after the 200 OK.
    pub fn start(
        dir: &Path,
        scenario: &str,
        user: &str,
        target: &str,
        hold_ms: u64,
    ) -> Result<Self> {
        Self::start_with(dir, scenario, user, target, hold_ms, &[])
    }

    /// As [`SippCall::start`], with scenario keys (`-key NAME VALUE`, `[NAME]` in the scenario).
    pub fn start_with(
        dir: &Path,
        scenario: &str,
        user: &str,
        target: &str,
        hold_ms: u64,
        keys: &[(&str, &str)],
    ) -> Result<Self> {
        let sip_port = net::free_udp_tcp_port()?;
        let media_port = net::free_udp_tcp_port()?;
        let mut cmd = Command::new("sipp");
        cmd.current_dir(dir)
            .arg(target)
            .args(["-sf"])
            .arg(paths::lab_dir().join("sipp").join(scenario))
            .args(["-s", user, "-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args(["-p", &sip_port.to_string(), "-mp", &media_port.to_string()])
            .args(["-d", &hold_ms.to_string()])
            .args(["-m", "1", "-nostdin", "-timeout", "60s", "-timeout_error"])
            .args(["-trace_err", "-trace_msg"]);
        for (k, v) in keys {
            cmd.args(["-key", k, v]);
        }
        let proc = Supervised::spawn("sipp", cmd, &dir.join("sipp.log"))?;
        Ok(Self {
            proc,
            dir: dir.to_path_buf(),
            media_port,
        })
    }

    /// Starts SIPp as a callee (user agent server) running `scenario` (a file in
    /// `tests/lab/sipp`) for one call, in `dir/<scenario name>`, on a free port; returns once it
    /// listens, with that port.
    pub fn uas(dir: &Path, scenario: &str) -> Result<(Self, u16)> {
        let port = net::free_udp_tcp_port()?;
        Ok((Self::uas_on(dir, scenario, port, &[])?, port))
    }

    /// As [`SippCall::uas`], on `port` (a callee that comes back at the same address, e.g. a
    /// target the gateway calls again and again) and with `extra` SIPp options (`-rtp_echo`).
    pub fn uas_on(dir: &Path, scenario: &str, port: u16, extra: &[&str]) -> Result<Self> {
        let dir = dir.join(scenario.trim_end_matches(".xml"));
        std::fs::create_dir_all(&dir)?;
        let media_port = net::free_udp_tcp_port()?;
        let mut cmd = Command::new("sipp");
        cmd.current_dir(&dir)
            .arg("-sf")
            .arg(paths::lab_dir().join("sipp").join(scenario))
            .args(["-i", "127.0.0.1", "-mi", "127.0.0.1"])
            .args(["-p", &port.to_string(), "-mp", &media_port.to_string()])
            .args(["-m", "1", "-nostdin", "-timeout", "60s", "-timeout_error"])
            .args(["-trace_err", "-trace_msg"])
            .args(extra);
        let mut proc = Supervised::spawn("sipp", cmd, &dir.join("sipp.log"))?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !net::udp_port_bound(port) {
            proc.check_alive()?;
            ensure!(
                std::time::Instant::now() < deadline,
                "SIPp did not bind {port}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(Self {
            proc,
            dir,
            media_port,
        })
    }

    /// Waits for the scenario to finish and fails (with SIPp's own error trace) unless the call
    /// went as the scenario expects.
    pub fn wait_success(&mut self, timeout: std::time::Duration) -> Result<()> {
        let status = self.proc.wait_exit(timeout)?;
        if !status.success() {
            let errors: String = self
                .trace_files("_errors.log")
                .iter()
                .filter_map(|p| std::fs::read_to_string(p).ok())
                .collect();
            anyhow::bail!(
                "SIPp call failed ({}):\n{}\n{}",
                proc::describe(status),
                self.proc.log_tail(20),
                errors
            );
        }
        Ok(())
    }

    fn trace_files(&self, suffix: &str) -> Vec<PathBuf> {
        std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.to_string_lossy().ends_with(suffix))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The SIP messages SIPp sent and received, in order, each with its direction and time.
    pub fn messages(&self) -> Vec<SippMessage> {
        self.trace_files("_messages.log")
            .iter()
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .flat_map(|text| parse_messages(&text))
            .collect()
    }
}

/// One SIP message from SIPp's `-trace_msg` log.
#[derive(Debug, Clone)]
pub struct SippMessage {
    pub sent: bool,
    /// Seconds since the epoch, from SIPp's timestamp.
    pub time: f64,
    pub text: String,
}

impl SippMessage {
    pub fn first_line(&self) -> &str {
        self.text.lines().next().unwrap_or("")
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        let line = self.first_line();
        line.strip_prefix("SIP/2.0 ")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// The value of the first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.text
            .lines()
            .skip(1)
            .take_while(|l| !l.is_empty())
            .find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
            })
    }
}

/// Splits SIPp's message log: each block is a `----- <date> <time>` line, a line saying
/// `UDP message sent (N bytes):` or `… received …`, then the message.
fn parse_messages(log: &str) -> Vec<SippMessage> {
    let mut out: Vec<SippMessage> = Vec::new();
    let mut expect_direction = false;
    for line in log.lines() {
        if let Some(rest) = line.strip_prefix("----------------------------------------------- ") {
            let mut parts = rest.split_whitespace();
            let (date, time) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            out.push(SippMessage {
                sent: false,
                time: parse_time(date, time),
                text: String::new(),
            });
            expect_direction = true;
        } else if let Some(m) = out.last_mut() {
            if expect_direction {
                m.sent = line.contains("message sent");
                expect_direction = false;
                continue;
            }
            if m.text.is_empty() && line.trim().is_empty() {
                continue;
            }
            m.text.push_str(line.trim_end_matches('\r'));
            m.text.push('\n');
        }
    }
    out
}

/// `2026-12-01 15:41:58.123456` → seconds since midnight (only differences are used).
fn parse_time(_date: &str, time: &str) -> f64 {
    let mut secs = 0.0;
    for (i, part) in time.split(':').enumerate() {
        let v: f64 = part.parse().unwrap_or(0.0);
        secs += v * [3600.0, 60.0, 1.0].get(i).copied().unwrap_or(0.0);
    }
    secs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sipp_message_logs_split_into_messages_with_direction_time_and_headers() {
        let log = "----------------------------------------------- 2026-12-01 15:45:04.448240\n\
                   UDP message sent (606 bytes):\n\nINVITE sip:r@h SIP/2.0\nX-Room-Name: myroom\n\nv=0\n\n\
                   ----------------------------------------------- 2026-12-01 15:45:04.548240\n\
                   UDP message received [300] bytes :\n\nSIP/2.0 486 Busy Here\nReason: SIP;cause=486\n\n";
        let m = parse_messages(log);
        assert_eq!(m.len(), 2);
        assert!(m[0].sent && !m[1].sent);
        assert_eq!(m[0].header("x-room-name"), Some("myroom"));
        assert_eq!(m[1].status(), Some(486));
        assert!((m[1].time - m[0].time - 0.1).abs() < 1e-6);
    }
}
