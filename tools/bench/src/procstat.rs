//! What the gateway process costs, from /proc: CPU time (user + system) and resident memory.
//! Read before and after a steady window, the CPU difference over the wall time is the share of
//! one core the gateway used.

use anyhow::{Context, Result};
use std::time::Duration;

/// `clock_gettime(id)` as a duration.
fn clock(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid pointer to a timespec; the ids used here exist on Linux.
    unsafe { libc::clock_gettime(id, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// This thread's CPU time (user and system).
pub fn thread_cpu() -> Duration {
    clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// Wall-clock time since the epoch, the clock of the kernel's receive timestamps.
pub fn realtime() -> Duration {
    clock(libc::CLOCK_REALTIME)
}

/// Clock ticks per second of /proc/<pid>/stat's times.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// User + system CPU time of `pid` so far.
pub fn cpu_time(pid: u32) -> Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    cpu_of_stat(&stat).context("unreadable /proc/<pid>/stat")
}

/// utime and stime are fields 14 and 15; the command name (field 2) may hold spaces, so count
/// from after its closing parenthesis.
fn cpu_of_stat(stat: &str) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / ticks_per_second(),
    ))
}

/// Resident set size of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    rss_of_status(&status).context("no VmRSS in /proc/<pid>/status")
}

fn rss_of_status(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_rss_are_read_past_a_command_name_with_spaces() {
        let stat = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        let ticks = ticks_per_second();
        assert_eq!(
            cpu_of_stat(stat),
            Some(Duration::from_secs_f64(300.0 / ticks))
        );
        assert_eq!(
            rss_of_status("Name:\tx\nVmRSS:\t   12345 kB\n"),
            Some(12_345)
        );
        assert_eq!(rss_of_status("Name:\tx\n"), None);
    }

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let me = std::process::id();
        assert!(rss_kib(me).unwrap() > 0);
        let _ = cpu_time(me).unwrap();
    }
}
