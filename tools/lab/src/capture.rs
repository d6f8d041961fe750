//! Recording what a SIP peer that cannot record (SIPp) receives: `dumpcap` captures the UDP
//! packets to its media port on loopback, and the G.711 payloads are decoded (by sox) to a WAV.

use crate::proc::{self, Supervised};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct RtpCapture {
    proc: Supervised,
    pcap: PathBuf,
    log: PathBuf,
}

impl RtpCapture {
    /// Starts capturing UDP sent to 127.0.0.1:`port`; returns once dumpcap is capturing.
    pub fn start(dir: &Path, name: &str, port: u16) -> Result<Self> {
        let pcap = dir.join(format!("{name}.pcap"));
        let log = dir.join(format!("{name}-dumpcap.log"));
        let mut cmd = Command::new("dumpcap");
        cmd.args(["-i", "lo", "-P", "-q", "-f"])
            .arg(format!("udp and dst host 127.0.0.1 and dst port {port}"))
            .arg("-w")
            .arg(&pcap);
        let mut proc = Supervised::spawn("dumpcap", cmd, &log)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Capturing on")
        {
            proc.check_alive()?;
            if Instant::now() > deadline {
                bail!("dumpcap did not start capturing: {}", proc.log_tail(10));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self { proc, pcap, log })
    }

    /// Stops the capture and writes the received audio (RTP payload type 0 or 8, in arrival
    /// order) as an 8 kHz WAV; returns its path and the number of RTP packets.
    pub fn finish(mut self, wav: &Path) -> Result<(PathBuf, usize)> {
        self.proc.stop();
        let data = std::fs::read(&self.pcap).with_context(|| {
            format!(
                "reading {} ({})",
                self.pcap.display(),
                proc::tail(&self.log, 5)
            )
        })?;
        let packets = udp_payloads(&data)?;
        let mut pcmu = Vec::new();
        let mut pcma = Vec::new();
        for p in &packets {
            if let Some((pt, payload)) = rtp_payload(p) {
                match pt {
                    0 => pcmu.extend_from_slice(payload),
                    8 => pcma.extend_from_slice(payload),
                    _ => {}
                }
            }
        }
        let (encoding, raw) = if pcma.len() > pcmu.len() {
            ("a-law", pcma)
        } else {
            ("mu-law", pcmu)
        };
        let raw_path = wav.with_extension("g711");
        std::fs::write(&raw_path, &raw)?;
        proc::run(
            Command::new("sox")
                .args([
                    "-t", "raw", "-e", encoding, "-b", "8", "-r", "8000", "-c", "1",
                ])
                .arg(&raw_path)
                .args(["-b", "16"])
                .arg(wav),
        )?;
        Ok((wav.to_path_buf(), packets.len()))
    }
}

/// UDP payloads of the IPv4 packets in a classic little-endian pcap with Ethernet link type
/// (what `dumpcap -P` writes on `lo`).
fn udp_payloads(pcap: &[u8]) -> Result<Vec<Vec<u8>>> {
    if pcap.len() < 24 || pcap[..4] != [0xd4, 0xc3, 0xb2, 0xa1] {
        bail!("not a little-endian classic pcap");
    }
    let link = u32::from_le_bytes(pcap[20..24].try_into()?);
    if link != 1 {
        bail!("pcap link type {link}, expected Ethernet (1)");
    }
    let mut out = Vec::new();
    let mut i = 24;
    while i + 16 <= pcap.len() {
        let caplen = u32::from_le_bytes(pcap[i + 8..i + 12].try_into()?) as usize;
        let frame = pcap
            .get(i + 16..i + 16 + caplen)
            .context("truncated pcap record")?;
        i += 16 + caplen;
        // Ethernet (14) + IPv4 header (IHL) + UDP (8).
        if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] || frame[14] >> 4 != 4 {
            continue;
        }
        let ihl = (frame[14] & 0x0f) as usize * 4;
        if frame[14 + 9] != 17 || frame.len() < 14 + ihl + 8 {
            continue;
        }
        out.push(frame[14 + ihl + 8..].to_vec());
    }
    Ok(out)
}

/// (payload type, payload) of an RTP packet; None for RTCP or anything that is not RTP.
fn rtp_payload(p: &[u8]) -> Option<(u8, &[u8])> {
    if p.len() < 12 || p[0] >> 6 != 2 {
        return None;
    }
    let pt = p[1] & 0x7f;
    if (72..=79).contains(&pt) {
        return None; // RTCP shares the port when muxed
    }
    let mut off = 12 + 4 * (p[0] & 0x0f) as usize;
    if p[0] & 0x10 != 0 {
        let len = u16::from_be_bytes([*p.get(off + 2)?, *p.get(off + 3)?]) as usize;
        off += 4 + 4 * len;
    }
    let mut end = p.len();
    if p[0] & 0x20 != 0 {
        end = end.checked_sub(*p.last()? as usize)?;
    }
    Some((pt, p.get(off..end)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_payloads_come_out_of_an_ethernet_pcap() {
        let payload: Vec<u8> = (0..320u32).map(|i| (i % 251) as u8).collect();
        let pcap = crate::sipp::rtp_pcap(&payload, 0, 160);
        let udp = udp_payloads(&pcap).unwrap();
        assert_eq!(udp.len(), 2);
        let (pt, p) = rtp_payload(&udp[1]).unwrap();
        assert_eq!((pt, p), (0, &payload[160..]));
        assert!(rtp_payload(&[0x80, 200, 0, 0]).is_none());
        assert!(udp_payloads(b"garbage").is_err());
    }
}
