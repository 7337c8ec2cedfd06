// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! CPU placement: where the bench thread and the daemon's threads run.
//!
//! On a VM a cross-CPU wake-up can cost twenty times a same-CPU one, so every
//! figure is taken with an explicit placement and says which.

use std::io;
use std::path::Path;

/// Where the load generator and the daemon (or the floor's two threads) run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Everything on one CPU.
    SameCpu,
    /// The frontend on one CPU, the daemon on another.
    CrossCpu,
}

impl Placement {
    /// The name used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Placement::SameCpu => "same-cpu",
            Placement::CrossCpu => "cross-cpu",
        }
    }

    /// (frontend CPU, daemon CPU) for this placement.
    pub fn cpus(self, pair: (usize, usize)) -> (usize, usize) {
        match self {
            Placement::SameCpu => (pair.0, pair.0),
            Placement::CrossCpu => pair,
        }
    }
}

fn cpu_set(cpus: &[usize]) -> io::Result<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        if cpu >= libc::CPU_SETSIZE as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("CPU {cpu} is beyond CPU_SETSIZE"),
            ));
        }
        // SAFETY: `cpu` was checked to be below CPU_SETSIZE.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    Ok(set)
}

/// Sets the affinity of task `tid` (0: the calling thread).
pub fn set_task_affinity(tid: libc::pid_t, cpus: &[usize]) -> io::Result<()> {
    let set = cpu_set(cpus)?;
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let ret = unsafe {
        libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &raw const set)
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The CPUs this process may run on, in order.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: all zeroes is a valid (empty) cpu_set_t.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is writable and of the size passed.
    let ret =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &raw mut set) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: `set` was filled by the kernel; the index is in range.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
        .collect())
}

/// Pins the calling thread to `cpu`.
pub fn pin_self(cpu: usize) -> io::Result<()> {
    set_task_affinity(0, &[cpu])
}

/// The thread ids of process `pid`.
pub fn tasks(pid: u32) -> io::Result<Vec<libc::pid_t>> {
    let dir = Path::new("/proc").join(pid.to_string()).join("task");
    let mut tids = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        // An entry can vanish under us when a thread ends: skip it.
        let Ok(entry) = entry else { continue };
        if let Some(tid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<libc::pid_t>().ok())
        {
            tids.push(tid);
        }
    }
    Ok(tids)
}

/// Pins every thread of process `pid` to `cpus`, as `taskset -a -p` does.
/// Threads it starts later inherit the affinity of the thread that starts
/// them. Returns how many threads were pinned.
pub fn pin_process(pid: u32, cpus: &[usize]) -> io::Result<usize> {
    let tids = tasks(pid)?;
    let mut pinned = 0;
    for tid in tids {
        match set_task_affinity(tid, cpus) {
            Ok(()) => pinned += 1,
            // The thread ended between the listing and the call.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(pinned)
}

/// Picks the two CPUs to use: the ones given, or the first two this process
/// may run on. The second is `None` on a single-CPU machine.
pub fn cpu_pair(requested: Option<(usize, usize)>) -> io::Result<(usize, Option<usize>)> {
    if let Some((a, b)) = requested {
        return Ok((a, (a != b).then_some(b)));
    }
    let cpus = allowed_cpus()?;
    let first = cpus
        .first()
        .copied()
        .ok_or_else(|| io::Error::other("this process may run on no CPU"))?;
    Ok((first, cpus.get(1).copied()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_can_be_pinned_and_released() {
        let cpus = allowed_cpus().unwrap();
        assert!(!cpus.is_empty());
        let first = *cpus.first().unwrap();
        std::thread::spawn(move || {
            pin_self(first).unwrap();
            assert_eq!(allowed_cpus().unwrap(), vec![first]);
        })
        .join()
        .unwrap();
        assert!(!tasks(std::process::id()).unwrap().is_empty());
    }

    #[test]
    fn placements_pick_cpus() {
        assert_eq!(Placement::SameCpu.cpus((2, 3)), (2, 2));
        assert_eq!(Placement::CrossCpu.cpus((2, 3)), (2, 3));
        assert_eq!(cpu_pair(Some((1, 1))).unwrap(), (1, None));
    }
}
