// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! What the daemon costs, read from /proc: CPU time, context switches
//! (wake-ups) and resident memory.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

fn proc_path(pid: u32, rest: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{rest}"))
}

/// Whether a /proc read failed because the thread is gone: ENOENT once it
/// is reaped, ESRCH while it is exiting.
fn gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(t).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// utime + stime of a whole process (every thread, living or ended), from
/// `/proc/PID/stat`. Resolution: one clock tick (usually 10 ms).
pub fn cpu_time(pid: u32) -> io::Result<Duration> {
    let stat = std::fs::read_to_string(proc_path(pid, "stat"))?;
    parse_cpu_time(&stat, clock_ticks())
        .ok_or_else(|| io::Error::other(format!("cannot parse /proc/{pid}/stat")))
}

fn parse_cpu_time(stat: &str, ticks_per_sec: u64) -> Option<Duration> {
    // The command name may hold spaces and parentheses: fields are counted
    // from the last ')'. utime and stime are fields 14 and 15 (1-based);
    // after the name, the state is field 3.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    let ticks = utime.checked_add(stime)?;
    Some(Duration::from_nanos(
        ticks.saturating_mul(1_000_000_000) / ticks_per_sec.max(1),
    ))
}

/// CPU time of process `pid`, summed over its living threads from
/// `/proc/PID/task/TID/schedstat` (the scheduler's exact run time, in ns,
/// of which utime + stime in `/proc/PID/stat` is a tick-rounded split).
/// Falls back to [`cpu_time`] on kernels without schedstat. A thread that
/// ends inside a measured window takes its time with it, which the daemons
/// measured here do not do.
pub fn cpu_time_precise(pid: u32) -> io::Result<Duration> {
    let mut total = 0u64;
    for tid in crate::affinity::tasks(pid)? {
        match std::fs::read_to_string(proc_path(pid, &format!("task/{tid}/schedstat"))) {
            Ok(s) => {
                total += s
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
            }
            Err(e) if gone(&e) => {
                if !proc_path(pid, &format!("task/{tid}")).exists() {
                    continue;
                }
                return cpu_time(pid);
            }
            Err(_) => return cpu_time(pid),
        }
    }
    Ok(Duration::from_nanos(total))
}

/// CPU time of the calling thread (ns resolution).
pub fn thread_cpu_time() -> Duration {
    // SAFETY: all zeroes is a valid timespec.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is writable for the call.
    let ret = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    if ret < 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

fn status_field(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// Voluntary plus involuntary context switches summed over the threads of
/// `pid` that are alive now: each one is a wake-up or a preemption.
pub fn context_switches(pid: u32) -> io::Result<u64> {
    let mut total = 0u64;
    for tid in crate::affinity::tasks(pid)? {
        let status = match std::fs::read_to_string(proc_path(pid, &format!("task/{tid}/status"))) {
            Ok(s) => s,
            // The thread ended since the listing.
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(e),
        };
        total += status_field(&status, "voluntary_ctxt_switches").unwrap_or(0);
        total += status_field(&status, "nonvoluntary_ctxt_switches").unwrap_or(0);
    }
    Ok(total)
}

/// Resident memory of a process, KiB.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// VmRSS: every resident page mapped, including the shared guest
    /// memory pages the daemon touched.
    pub rss_kib: u64,
    /// RssAnon: private memory only.
    pub anon_kib: u64,
    /// RssShmem: shared memory (the guest memory it touched).
    pub shmem_kib: u64,
    /// VmHWM: peak RSS so far.
    pub hwm_kib: u64,
}

/// Reads the memory figures of `pid` from `/proc/PID/status`.
pub fn memory(pid: u32) -> io::Result<Memory> {
    let status = std::fs::read_to_string(proc_path(pid, "status"))?;
    Ok(parse_memory(&status))
}

fn parse_memory(status: &str) -> Memory {
    Memory {
        rss_kib: status_field(status, "VmRSS").unwrap_or(0),
        anon_kib: status_field(status, "RssAnon").unwrap_or(0),
        shmem_kib: status_field(status, "RssShmem").unwrap_or(0),
        hwm_kib: status_field(status, "VmHWM").unwrap_or(0),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_command_names() {
        let stat = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 7 5 0 0 20 0 3 0";
        assert_eq!(parse_cpu_time(stat, 100), Some(Duration::from_millis(120)));
        assert_eq!(parse_cpu_time("42 (x) S 1", 100), None);
    }

    #[test]
    fn status_fields() {
        let status = "Name:\tx\nVmHWM:\t    4000 kB\nVmRSS:\t    3000 kB\nRssAnon:\t 1000 kB\n\
                      RssShmem:\t  500 kB\nvoluntary_ctxt_switches:\t7\n";
        let m = parse_memory(status);
        assert_eq!(
            (m.rss_kib, m.anon_kib, m.shmem_kib, m.hwm_kib),
            (3000, 1000, 500, 4000)
        );
        assert_eq!(status_field(status, "voluntary_ctxt_switches"), Some(7));
    }

    #[test]
    fn our_own_process_reads() {
        let me = std::process::id();
        cpu_time(me).unwrap();
        assert!(cpu_time_precise(me).unwrap() > Duration::ZERO);
        assert!(context_switches(me).unwrap() > 0);
        assert!(memory(me).unwrap().rss_kib > 0);
    }
}
