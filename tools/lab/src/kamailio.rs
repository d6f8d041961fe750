//! Kamailio in the lab: as the PBX in front of the gateway that relays calls and adds the room
//! header from the dialled user part (`tests/lab/kamailio/room-proxy.cfg.in`), and as the
//! gateway's registrar and outbound proxy with digest auth (`registrar.cfg.in`), optionally
//! listening on TLS as well (`registrar-tls.cfg.in`).

use crate::proc::{self, Supervised};
use crate::{net, paths};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Waits until Kamailio has bound its UDP `port` (it binds once its config is loaded).
fn wait_bound(proc: &mut Supervised, port: u16) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    // Read from /proc rather than probed by binding: a probe holding the port for a moment
    // is what made kamailio's own bind fail now and then.
    while !net::udp_port_bound(port) {
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

/// Runs `start` again (it picks a new free port each time) when the port it picked was taken
/// by someone else in between, as parallel tests sometimes do.
fn retry_taken_port<T>(mut start: impl FnMut() -> Result<T>) -> Result<T> {
    let mut tries = 0;
    loop {
        match start() {
            Err(e) if tries < 3 && format!("{e:#}").contains("Address already in use") => {
                tries += 1;
            }
            other => return other,
        }
    }
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
    /// Its TLS listener, when started with [`Registrar::start_with_tls`].
    pub tls: Option<TlsListener>,
    dir: PathBuf,
    proc: Supervised,
    /// How it was started (script and arguments), for [`Registrar::restart`].
    launch: (PathBuf, Vec<String>),
    /// Where its logs go; each run has its own.
    out: PathBuf,
    runs: u32,
}

/// The registrar's TLS side: a port of its own, and a certificate for 127.0.0.1 and localhost
/// signed by a CA made for this run only (no system trusts it).
pub struct TlsListener {
    pub port: u16,
    /// The CA's certificate (PEM): what a client must trust to accept the registrar.
    pub ca_cert: PathBuf,
}

impl Registrar {
    /// Starts it on a free loopback port, with its files in `dir/registrar`.
    pub fn start(dir: &Path) -> Result<Self> {
        retry_taken_port(|| {
            let port = net::free_udp_tcp_port()?;
            let conf = dir.join("registrar");
            let script = paths::lab_dir().join("kamailio/run-registrar.sh");
            let args = vec![conf.display().to_string(), port.to_string()];
            Self::launch((script, args), conf, dir, port, None)
        })
    }

    /// As [`Registrar::start`], listening on TLS as well (`registrar-tls.cfg.in`) on another
    /// free port, with a throwaway CA and server certificate made now in `dir/registrar/certs`.
    pub fn start_with_tls(dir: &Path) -> Result<Self> {
        retry_taken_port(|| Self::try_start_with_tls(dir))
    }

    fn try_start_with_tls(dir: &Path) -> Result<Self> {
        let port = net::free_udp_tcp_port()?;
        let tls_port = net::free_tcp_port()?;
        let conf = dir.join("registrar");
        let ca_cert = make_certificates(&conf.join("certs"))?;
        let script = paths::lab_dir().join("kamailio/run-registrar-tls.sh");
        let args = vec![
            conf.display().to_string(),
            port.to_string(),
            tls_port.to_string(),
        ];
        let tls = TlsListener {
            port: tls_port,
            ca_cert,
        };
        Self::launch((script, args), conf, dir, port, Some(tls))
    }

    fn launch(
        launch: (PathBuf, Vec<String>),
        conf: PathBuf,
        dir: &Path,
        port: u16,
        tls: Option<TlsListener>,
    ) -> Result<Self> {
        let proc = Self::run(
            &launch,
            &conf,
            &dir.join("registrar.log"),
            port,
            tls.as_ref(),
        )?;
        Ok(Self {
            port,
            tls,
            dir: conf,
            proc,
            launch,
            out: dir.to_path_buf(),
            runs: 1,
        })
    }

    fn run(
        (script, args): &(PathBuf, Vec<String>),
        conf: &Path,
        log: &Path,
        port: u16,
        tls: Option<&TlsListener>,
    ) -> Result<Supervised> {
        let ctl = conf.join("run/kamailio_ctl");
        // A socket left by an earlier run would pass for this one's readiness.
        let _ = std::fs::remove_file(&ctl);
        let mut cmd = Command::new(script);
        cmd.args(args);
        let mut proc = Supervised::spawn("kamailio", cmd, log)?;
        wait_bound(&mut proc, port)?;
        net::wait_file(&ctl, Duration::from_secs(10), || proc.check_alive())?;
        if let Some(tls) = tls {
            net::wait_tcp(tls.port, Duration::from_secs(10), || proc.check_alive())?;
        }
        Ok(proc)
    }

    /// Stops it (closing every connection and forgetting every binding) and starts it again on
    /// the same ports with the same certificate; this run logs to `registrar.<n>.log`.
    pub fn restart(&mut self) -> Result<()> {
        self.proc.stop();
        self.runs += 1;
        let log = self.out.join(format!("registrar.{}.log", self.runs));
        self.proc = Self::run(&self.launch, &self.dir, &log, self.port, self.tls.as_ref())?;
        Ok(())
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

    /// The contacts bound to `aor` in its location table, as `(contact URI, socket)` with the
    /// socket the registration came in on (`tls:127.0.0.1:5061`), from `kamcmd ul.dump`.
    pub fn contacts(&self, aor: &str) -> Result<Vec<(String, String)>> {
        let ctl = format!("unix:{}", self.dir.join("run/kamailio_ctl").display());
        let dump = proc::run(Command::new("kamcmd").args(["-s", &ctl, "ul.dump"]))
            .context("kamcmd ul.dump")?;
        let mut out = Vec::new();
        let mut in_aor = false;
        let mut contact = None;
        for line in dump.lines().map(str::trim) {
            if let Some(found) = line.strip_prefix("AoR:") {
                in_aor = found.trim() == aor;
            } else if let Some(uri) = line.strip_prefix("Address:").filter(|_| in_aor) {
                contact = Some(uri.trim().to_string());
            } else if let Some(socket) = line.strip_prefix("Socket:").filter(|_| in_aor) {
                if let Some(contact) = contact.take() {
                    out.push((contact, socket.trim().to_string()));
                }
            }
        }
        Ok(out)
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

    /// The requests it received since it last started, one line each: `<METHOD> <request-uri>
    /// from <ip>:<port> (fU=<from user>) tx=<Call-ID>/<CSeq>`, in order (retransmissions
    /// included).
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

/// Makes a CA and a certificate for 127.0.0.1 / localhost signed by it (EC P-256, valid two
/// days) in `certs`: `ca.crt`, `registrar.crt`, `registrar.key`. Returns the CA certificate's
/// path. The CA's key stays in the run directory and dies with it.
pub fn make_certificates(certs: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(certs)?;
    // A name of its own: a client looks issuers up by name, and two lab CAs must not pass for
    // one another.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let subject = format!("/CN=gateway lab CA {}-{nanos}", std::process::id());
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let openssl = |args: &[&str]| {
        proc::run(Command::new("openssl").current_dir(certs).args(args))
            .context("openssl making the lab's certificates")
    };
    openssl(
        &[
            &["req", "-x509"],
            &ec[..],
            &["-days", "2", "-subj", &subject],
            &["-keyout", "ca.key", "-out", "ca.crt"],
        ]
        .concat(),
    )?;
    openssl(
        &[
            &["req"],
            &ec[..],
            &["-subj", "/CN=registrar"],
            &["-keyout", "registrar.key", "-out", "registrar.csr"],
        ]
        .concat(),
    )?;
    std::fs::write(
        certs.join("registrar.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
         basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\n",
    )?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "registrar.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "registrar.ext",
        "-out",
        "registrar.crt",
    ])?;
    Ok(certs.join("ca.crt"))
}
