//! Child processes that cannot outlive the test that started them.
//!
//! Each child runs in its own process group (so helpers it forks are stopped with it), gets
//! `SIGKILL` if the thread that spawned it dies (`PR_SET_PDEATHSIG`), and is stopped on drop:
//! `SIGTERM` to the group, then `SIGKILL` after a grace period.

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct Supervised {
    name: String,
    child: Child,
    log: PathBuf,
    grace: Duration,
    exited: Option<ExitStatus>,
}

impl Supervised {
    /// Spawns `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Self> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        cmd.process_group(0);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec here.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        Ok(Self {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
            grace: Duration::from_secs(3),
            exited: None,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last lines of the child's log, for error messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.log, lines)
    }

    /// Fails if the child has already exited (with its log tail), for use while waiting on it.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.try_wait()? {
            bail!(
                "{} exited early ({}); log {}:\n{}",
                self.name,
                describe(status),
                self.log.display(),
                self.log_tail(30)
            );
        }
        Ok(())
    }

    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait()?;
        }
        Ok(self.exited)
    }

    /// Waits for the child to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!("{} did not exit within {timeout:?}", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the whole process group: SIGTERM, then SIGKILL after the grace period.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        if let Ok(Some(status)) = self.try_wait() {
            // The leader is gone; make sure nothing it forked lingers.
            signal_group(self.child.id(), libc::SIGKILL);
            return Some(status);
        }
        signal_group(self.child.id(), libc::SIGTERM);
        let deadline = Instant::now() + self.grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.try_wait() {
                signal_group(self.child.id(), libc::SIGKILL);
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        signal_group(self.child.id(), libc::SIGKILL);
        self.child.wait().ok().inspect(|s| self.exited = Some(*s))
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop();
    }
}

fn signal_group(pgid: u32, sig: i32) {
    // SAFETY: plain syscall; a stale group id only yields ESRCH.
    unsafe {
        libc::kill(-(pgid as i32), sig);
    }
}

pub fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "unknown status".into(),
    }
}

pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs a short command to completion, failing with its output if it fails.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !out.status.success() {
        bail!("{cmd:?} failed ({}):\n{text}", describe(out.status));
    }
    Ok(text)
}
