// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Starting a daemon to benchmark, and finding the pid of one we did not
//! start.

use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Finds a daemon binary: a path is taken as it is; a bare name is looked
/// up in `bin_dir` (default: the directory of this executable, where cargo
/// puts the workspace's binaries), then in `PATH`.
pub fn find_binary(name: &str, bin_dir: Option<&Path>) -> Result<PathBuf> {
    if name.contains('/') {
        return Ok(PathBuf::from(name));
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    match bin_dir {
        Some(d) => dirs.push(d.to_path_buf()),
        None => {
            if let Some(d) = std::env::current_exe()
                .ok()
                .and_then(|e| e.parent().map(Path::to_path_buf))
            {
                // Test binaries live in target/<profile>/deps.
                if d.ends_with("deps") {
                    if let Some(p) = d.parent() {
                        dirs.push(p.to_path_buf());
                    }
                }
                dirs.push(d);
            }
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    for d in &dirs {
        let candidate = d.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(Error::BinaryNotFound {
        name: name.to_owned(),
        looked: dirs
            .iter()
            .take(3)
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
            + if dirs.len() > 3 { " and PATH" } else { "" },
    })
}

/// A daemon we started on a socket in a temporary directory; stopped with
/// SIGTERM (then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Spawned {
    child: Child,
    socket: PathBuf,
    command: String,
    _dir: tempfile::TempDir,
}

impl Spawned {
    /// Starts `binary args...`. Each `{socket}` in the arguments becomes the
    /// socket path; without one, `--socket-path PATH` is appended.
    pub fn start(binary: &Path, args: &[String]) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("vhost-device-bench")
            .tempdir()
            .map_err(|e| Error::io("creating a temporary directory", e))?;
        let socket = dir.path().join("bench.sock");
        let socket_str = socket.display().to_string();
        let mut full: Vec<String> = args
            .iter()
            .map(|a| a.replace("{socket}", &socket_str))
            .collect();
        if !args.iter().any(|a| a.contains("{socket}")) {
            full.push("--socket-path".into());
            full.push(socket_str);
        }
        let command = std::iter::once(binary.display().to_string())
            .chain(full.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        let mut cmd = Command::new(binary);
        cmd.args(&full).stdin(Stdio::null());
        // SAFETY: prctl is async-signal-safe and touches no memory of ours;
        // the closure allocates nothing. The daemon then gets SIGTERM if the
        // bench dies without stopping it (Ctrl-C, a crash), instead of being
        // left running.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // Per-request logging would be measured too: keep the daemon quiet
        // unless asked otherwise.
        if std::env::var_os("RUST_LOG").is_none() {
            cmd.env("RUST_LOG", "warn");
        }
        let child = cmd.spawn().map_err(|e| Error::DaemonStart {
            command: command.clone(),
            socket: socket.clone(),
            reason: e.to_string(),
        })?;
        let mut spawned = Spawned {
            child,
            socket,
            command,
            _dir: dir,
        };
        spawned.wait_for_socket(Duration::from_secs(10))?;
        Ok(spawned)
    }

    fn wait_for_socket(&mut self, wait: Duration) -> Result<()> {
        let deadline = Instant::now() + wait;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(self.start_error(format!("it exited with {status}")));
            }
            if self.socket.exists() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.start_error(format!("no socket after {wait:?}")));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn start_error(&self, reason: String) -> Error {
        Error::DaemonStart {
            command: self.command.clone(),
            socket: self.socket.clone(),
            reason,
        }
    }

    /// The socket it listens on.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Its command line.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Stops it with SIGTERM and returns its exit code.
    pub fn stop(mut self) -> Option<i32> {
        self.terminate()
    }

    fn terminate(&mut self) -> Option<i32> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return status.code();
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill() on our own child, which has not been reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        self.child.wait().ok().and_then(|s| s.code())
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.terminate();
    }
}

/// The pid of the process at the other end of a connected Unix socket
/// (SO_PEERCRED): for a daemon, the process that created its listener.
pub fn peer_pid(fd: RawFd) -> Option<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given.
    let ret = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            std::ptr::from_mut(&mut cred).cast(),
            &raw mut len,
        )
    };
    if ret < 0 {
        return None;
    }
    u32::try_from(cred.pid).ok().filter(|&p| p > 0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn binaries_are_found_by_path_and_name() {
        assert_eq!(find_binary("./x", None).unwrap(), PathBuf::from("./x"));
        assert!(find_binary("sh", None).unwrap().ends_with("sh"));
        assert!(matches!(
            find_binary("no-such-daemon-here", Some(Path::new("/nonexistent"))),
            Err(Error::BinaryNotFound { .. })
        ));
    }

    #[test]
    fn peer_pid_of_a_socketpair_is_ours() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(peer_pid(a.as_raw_fd()), Some(std::process::id()));
    }
}
