//! A real Prosody 0.12 with the docker-jitsi-meet layout, private to one run.

use crate::{net, paths, proc::Supervised};
use anyhow::Result;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

pub struct Prosody {
    dir: std::path::PathBuf,
    pub domain: String,
    pub c2s_port: u16,
    pub component_port: u16,
    pub component_secret: String,
    pub focus_password: String,
    pub jigasi_password: String,
    proc: Supervised,
}

impl Prosody {
    /// Starts Prosody from `dir/prosody` on free loopback ports and waits until it accepts
    /// client connections. Accounts: `focus` and `jigasi` on `auth.<domain>`.
    pub fn start(dir: &Path) -> Result<Self> {
        Self::start_on(dir, net::free_tcp_port()?, net::free_tcp_port()?)
    }

    fn start_on(dir: &Path, c2s_port: u16, component_port: u16) -> Result<Self> {
        let domain = "meet.jitsi".to_string();
        let (focus_password, jigasi_password, component_secret) = (
            "focuspass".to_string(),
            "jigasipass".to_string(),
            "focussecret".to_string(),
        );
        let instance = dir.join("prosody");
        let mut cmd = Command::new(paths::lab_dir().join("prosody/run-prosody.sh"));
        cmd.arg(&instance)
            .arg(c2s_port.to_string())
            .arg(component_port.to_string())
            .arg(&domain)
            .env("FOCUS_PASSWORD", &focus_password)
            .env("JIGASI_PASSWORD", &jigasi_password)
            .env("COMPONENT_SECRET", &component_secret);
        let mut proc = Supervised::spawn("prosody", cmd, &dir.join("prosody.log"))?;
        net::wait_tcp(c2s_port, Duration::from_secs(15), || proc.check_alive())?;
        net::wait_tcp(component_port, Duration::from_secs(5), || {
            proc.check_alive()
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            domain,
            c2s_port,
            component_port,
            component_secret,
            focus_password,
            jigasi_password,
            proc,
        })
    }

    pub fn muc_domain(&self) -> String {
        format!("muc.{}", self.domain)
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Stops Prosody (it closes every client session on the way out).
    pub fn stop(&mut self) {
        self.proc.stop();
    }

    /// SIGKILL: no stream is closed, the sockets just go (a crash, or a host lost).
    pub fn kill(&mut self) {
        // SAFETY: plain syscall on our child's pid.
        unsafe {
            libc::kill(self.pid() as i32, libc::SIGKILL);
        }
    }

    /// Starts it again on the same ports, with the same accounts (rooms are gone).
    pub fn restart(&mut self) -> Result<()> {
        self.proc.stop();
        *self = Self::start_on(&self.dir, self.c2s_port, self.component_port)?;
        Ok(())
    }
}
