// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A daemon binary under test: started on sockets in a directory the test
//! owns, observed through /proc, and stopped with SIGTERM, by the test or
//! when it is dropped.

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::{FrontendError, FrontendOptions, TestFrontend};
use crate::SeccompMode;

/// How long [`DaemonProcess`] waits for sockets to appear and for the
/// process to exit.
pub const PROCESS_WAIT: Duration = Duration::from_secs(10);

/// Every thread's capability sets of process `pid` (`CapInh`, `CapPrm`,
/// `CapEff`, `CapBnd`, `CapAmb` from each `/proc/PID/task/TID/status`), as
/// bits.
pub fn capability_sets(pid: u32) -> io::Result<Vec<(String, u64)>> {
    let mut sets = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let status = std::fs::read_to_string(task?.path().join("status"))?;
        for line in status.lines().filter(|l| l.starts_with("Cap")) {
            let parsed = line.split_once(':').and_then(|(name, value)| {
                Some((name.to_owned(), u64::from_str_radix(value.trim(), 16).ok()?))
            });
            sets.push(parsed.ok_or_else(|| io::Error::other(format!("malformed {line:?}")))?);
        }
    }
    Ok(sets)
}

/// The threads of process `pid` whose capabilities are not at the level a
/// sandboxed daemon keeps: `CapEff`, `CapPrm` and `CapBnd` exactly `kept`,
/// `CapInh` and `CapAmb` empty. One line per thread that differs, naming it
/// (`TID comm: CapEff=… …`); empty when every thread is right. Also how many
/// threads were looked at.
pub fn threads_beyond_capabilities(pid: u32, kept: u64) -> io::Result<(Vec<String>, usize)> {
    let mut wrong = Vec::new();
    let mut threads = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let task = task?.path();
        let status = std::fs::read_to_string(task.join("status"))?;
        let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
        threads += 1;
        let mut bad = Vec::new();
        for line in status.lines().filter(|l| l.starts_with("Cap")) {
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| io::Error::other(format!("malformed {line:?}")))?;
            let bits = u64::from_str_radix(value.trim(), 16)
                .map_err(|_| io::Error::other(format!("malformed {line:?}")))?;
            let want = match name {
                "CapEff" | "CapPrm" | "CapBnd" => kept,
                _ => 0,
            };
            if bits != want {
                bad.push(format!("{name}={bits:016x}"));
            }
        }
        if !bad.is_empty() {
            let tid = task
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            wrong.push(format!("{tid} {}: {}", comm.trim(), bad.join(" ")));
        }
    }
    Ok((wrong, threads))
}

/// Whether this process has effective capabilities (a test that checks a
/// daemon drops them needs some to start with: it runs as root, as CI does).
pub fn running_with_capabilities() -> bool {
    capability_sets(std::process::id()).is_ok_and(|sets| {
        sets.iter()
            .any(|(name, bits)| name == "CapEff" && *bits != 0)
    })
}

/// The `--seccomp` mode process `pid` runs in, read from `/proc`: `None`
/// when `/proc/PID/status` shows no filter (`Seccomp: 0`), `Log` when a
/// filter is in place and the daemon's `seccomp-log` thread serves it,
/// `Kill` when a filter is in place without that thread. The filter is
/// installed right after the sockets are bound, so a test asks once the
/// daemon has answered a request (or waits with [`wait_for_seccomp`]).
pub fn seccomp_mode(pid: u32) -> io::Result<SeccompMode> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .map(str::trim)
        .ok_or_else(|| io::Error::other("no Seccomp field in /proc/PID/status"))?;
    if field == "0" {
        return Ok(SeccompMode::None);
    }
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let comm = std::fs::read_to_string(task?.path().join("comm"))?;
        if comm.trim() == "seccomp-log" {
            return Ok(SeccompMode::Log);
        }
    }
    Ok(SeccompMode::Kill)
}

/// The mode a daemon a test starts without `--seccomp` runs in: the one
/// `VHOST_DEVICE_SECCOMP` names (CI steps that cannot install a filter set
/// it, e.g. under qemu-user), else `kill`, every device's default.
pub fn default_seccomp_mode() -> SeccompMode {
    match std::env::var("VHOST_DEVICE_SECCOMP").as_deref() {
        Ok("none") => SeccompMode::None,
        Ok("log") => SeccompMode::Log,
        _ => SeccompMode::Kill,
    }
}

/// [`seccomp_mode`] once process `pid` has a filter, or `None` if it has
/// none after `timeout`.
pub fn wait_for_seccomp(pid: u32, timeout: Duration) -> io::Result<SeccompMode> {
    let deadline = Instant::now() + timeout;
    loop {
        let mode = seccomp_mode(pid)?;
        if mode != SeccompMode::None || Instant::now() >= deadline {
            return Ok(mode);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// [`seccomp_mode`] of process `pid` once it is [`default_seccomp_mode`],
/// or whatever it is after `timeout`: a test compares the result with the
/// default, and does not wait for a filter the environment turned off.
pub fn wait_for_default_seccomp(pid: u32, timeout: Duration) -> io::Result<SeccompMode> {
    let want = default_seccomp_mode();
    let deadline = Instant::now() + timeout;
    loop {
        let mode = seccomp_mode(pid)?;
        if mode == want || Instant::now() >= deadline {
            return Ok(mode);
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A running daemon process.
#[derive(Debug)]
pub struct DaemonProcess {
    child: Option<Child>,
    sockets: Vec<PathBuf>,
}

impl DaemonProcess {
    /// Starts `binary --socket-path SOCKET --socket-count COUNT ARGS…` with
    /// `RUST_LOG` from the environment (default `warn`) and waits until
    /// every socket exists. With a count above 1 the sockets are SOCKET0 …
    pub fn start(
        binary: impl AsRef<Path>,
        socket: &Path,
        count: u16,
        args: &[&str],
    ) -> io::Result<Self> {
        let mut command = Command::new(binary.as_ref());
        command
            .arg("--socket-path")
            .arg(socket)
            .arg("--socket-count")
            .arg(count.to_string())
            .args(args);
        // The same PATH / PATH0… naming the daemon itself applies.
        let sockets = crate::SocketArgs::with_path(socket, count).paths();
        Self::spawn(command, sockets)
    }

    /// Starts a prepared command and waits for `sockets` to exist. Its
    /// `RUST_LOG`, if it sets one, wins over the default `warn`.
    pub fn spawn(mut command: Command, sockets: Vec<PathBuf>) -> io::Result<Self> {
        let set_on_command = command.get_envs().any(|(key, _)| key == "RUST_LOG");
        if std::env::var_os("RUST_LOG").is_none() && !set_on_command {
            command.env("RUST_LOG", "warn");
        }
        let child = command.stdin(Stdio::null()).spawn()?;
        let mut daemon = DaemonProcess {
            child: Some(child),
            sockets,
        };
        let deadline = Instant::now() + PROCESS_WAIT;
        while !daemon.sockets.iter().all(|s| s.exists()) {
            if let Some(status) = daemon.child_mut()?.try_wait()? {
                return Err(io::Error::other(format!(
                    "daemon exited before creating its sockets: {status}"
                )));
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "daemon did not create its sockets",
                ));
            }
            thread::sleep(Duration::from_millis(5));
        }
        Ok(daemon)
    }

    fn child_mut(&mut self) -> io::Result<&mut Child> {
        self.child
            .as_mut()
            .ok_or_else(|| io::Error::other("daemon already reaped"))
    }

    /// Socket of guest `guest`.
    pub fn socket(&self, guest: usize) -> Option<&Path> {
        self.sockets.get(guest).map(PathBuf::as_path)
    }

    /// Connects a frontend to guest `guest`'s socket.
    pub fn connect(
        &self,
        guest: usize,
        opts: FrontendOptions,
    ) -> Result<TestFrontend, FrontendError> {
        let path = self.socket(guest).ok_or_else(|| {
            FrontendError::InvalidOptions(format!("the daemon has no guest {guest}"))
        })?;
        TestFrontend::connect_retry(path, opts, PROCESS_WAIT)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn proc_entries(&self, what: &str) -> io::Result<usize> {
        Ok(std::fs::read_dir(format!("/proc/{}/{what}", self.pid()))?.count())
    }

    /// Open file descriptors.
    pub fn fd_count(&self) -> io::Result<usize> {
        self.proc_entries("fd")
    }

    /// Threads.
    pub fn thread_count(&self) -> io::Result<usize> {
        self.proc_entries("task")
    }

    /// CPU time used so far (user + system), in clock ticks.
    pub fn cpu_ticks(&self) -> io::Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        // Fields after the command name, which may itself hold spaces.
        let after = stat
            .rfind(')')
            .and_then(|i| stat.get(i + 2..))
            .ok_or_else(|| io::Error::other("malformed /proc stat"))?;
        let mut fields = after.split(' ').skip(11);
        let mut next = || -> io::Result<u64> {
            fields
                .next()
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| io::Error::other("malformed /proc stat"))
        };
        Ok(next()? + next()?)
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: libc::c_int) -> io::Result<()> {
        let pid = libc::pid_t::try_from(self.pid()).map_err(io::Error::other)?;
        // SAFETY: kill() on our own child's pid; no memory is involved.
        if unsafe { libc::kill(pid, signal) } == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Waits up to `limit` for the process to exit; kills it after that.
    pub fn wait(&mut self, limit: Duration) -> io::Result<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            let child = self.child_mut()?;
            if let Some(status) = child.try_wait()? {
                self.child = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("daemon did not exit within {limit:?}"),
                ));
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGTERM, then the exit status.
    pub fn stop(mut self) -> io::Result<ExitStatus> {
        self.signal(libc::SIGTERM)?;
        self.wait(PROCESS_WAIT)
    }
}

/// A daemon the test did not stop is stopped as a service manager would,
/// with SIGTERM, and killed only if it has not exited within
/// [`PROCESS_WAIT`]. It then exits through `main`, so it removes its socket
/// files and, in an instrumented build, LLVM's profile runtime writes the
/// profile from its exit handler: SIGKILL skipped that, and the coverage
/// step counted nothing such a daemon ran.
impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.signal(libc::SIGTERM);
            let _ = self.wait(PROCESS_WAIT);
        }
    }
}
