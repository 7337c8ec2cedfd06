// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The rig's child processes (backends and QEMU): each in its own process
//! group, killed with the rig, stopped with SIGTERM then SIGKILL; and the
//! lock that lets one guest run at a time.

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A started backend.
pub(crate) struct Running {
    pub(crate) label: String,
    pub(crate) child: Child,
}

/// Sends `sig` to the process group led by `child` (spawned with
/// `process_group(0)`), so helpers a backend forked go too.
fn signal_group(child: &Child, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) takes no pointers; a negative pid addresses the
        // process group this rig created for the child, and a stale group
        // only yields ESRCH.
        unsafe {
            libc::kill(-pid, sig);
        }
    }
}

/// An exclusive `flock(2)` on the cache's `run.lock`, held while a guest runs.
pub(crate) struct GuestLock {
    _file: File,
}

impl GuestLock {
    /// Blocks until no other scenario on this machine holds the lock. `None`
    /// when the lock file cannot be opened (then scenarios may overlap).
    pub(crate) fn acquire(cache: &Path) -> Option<Self> {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(cache.join("run.lock"))
            .ok()?;
        loop {
            // SAFETY: flock(2) on a descriptor this function owns; no memory
            // is passed.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if rc == 0 {
                return Some(Self { _file: file });
            }
            if std::io::Error::last_os_error().kind() != ErrorKind::Interrupted {
                return None;
            }
        }
    }
}

/// Makes the kernel kill the child if the rig dies first (a test harness
/// interrupted with Ctrl-C would otherwise leave QEMU and backends running,
/// since they live in their own process groups).
pub(crate) fn die_with_parent(cmd: &mut Command) -> &mut Command {
    // SAFETY: the closure runs in the forked child before exec and only calls
    // prctl(2), which is async-signal-safe and touches no parent memory.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Starts `cmd` in a process group of its own, killed if the rig dies,
/// with no stdin and its stdout and stderr both in `log`.
pub(crate) fn spawn_logged(cmd: &mut Command, log: File) -> std::io::Result<Child> {
    let err = log.try_clone()?;
    cmd.stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0);
    die_with_parent(cmd).spawn()
}

/// Ends a child: SIGTERM to its group, then SIGKILL after `grace`.
pub(crate) fn stop_child(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    if let Ok(Some(status)) = child.try_wait() {
        signal_group(child, libc::SIGKILL);
        return Some(status);
    }
    signal_group(child, libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            signal_group(child, libc::SIGKILL);
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    signal_group(child, libc::SIGKILL);
    let _ = child.kill();
    child.wait().ok()
}

pub(crate) fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("status {c}"),
        (None, Some(s)) => format!("signal {s}"),
        _ => status.to_string(),
    }
}
