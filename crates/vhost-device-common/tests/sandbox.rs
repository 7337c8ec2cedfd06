// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The sandbox of the real daemon (the echo test device behind
//! `daemon::serve`): the socket's mode, `no_new_privs`, the seccomp modes,
//! Landlock and capabilities. The echo device answers a request starting
//! with `execve` by calling execve(2), which no daemon's allow-list holds,
//! and `open:PATH` by opening PATH, which its Landlock policy does not hold.

#![cfg(feature = "test-frontend")]
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use vhost_device_common::testing::{
    running_with_capabilities, threads_beyond_capabilities, FrontendOptions, TestFrontend,
};

const BIN: &str = env!("CARGO_BIN_EXE_vhost-device-echo");
const TIMEOUT: Duration = Duration::from_secs(5);

/// The daemon on `path` with `args`, stderr captured; killed on drop.
struct Echo(Child);

impl Echo {
    fn start(path: &Path, args: &[&str]) -> (Self, TestFrontend) {
        let child = Command::new(BIN)
            .arg("--socket-path")
            .arg(path)
            .args(args)
            .env_remove("VHOST_DEVICE_SECCOMP")
            .env_remove("VHOST_DEVICE_LANDLOCK")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let echo = Echo(child);
        let frontend =
            TestFrontend::connect_retry(path, FrontendOptions::default(), TIMEOUT).unwrap();
        (echo, frontend)
    }

    /// Waits until the filter is in place: serve() installs it right
    /// after starting the socket threads, so the socket may answer first.
    fn wait_for_filter(&self) {
        let deadline = Instant::now() + TIMEOUT;
        while self.status_field("Seccomp") != "2" {
            assert!(Instant::now() < deadline, "no seccomp filter installed");
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn status_field(&self, name: &str) -> String {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// Waits for the exit; returns the status and everything on stderr.
    fn wait(mut self) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + TIMEOUT;
        let status = loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "the daemon did not exit");
            thread::sleep(Duration::from_millis(10));
        };
        let mut stderr = String::new();
        self.0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (status, stderr)
    }

    fn terminate(self) -> (std::process::ExitStatus, String) {
        // SAFETY: kill() on our own child.
        unsafe { libc::kill(libc::pid_t::try_from(self.0.id()).unwrap(), libc::SIGTERM) };
        self.wait()
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ask(frontend: &mut TestFrontend, payload: &[u8]) -> u32 {
    let q = frontend.queue(0).unwrap();
    q.add(&[payload], &[64]).unwrap();
    q.kick().unwrap();
    q.wait_used(TIMEOUT).unwrap().len
}

#[test]
fn kill_mode_is_the_default_and_a_forbidden_call_kills_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kill.sock");
    let (echo, mut frontend) = Echo::start(&path, &[]);
    echo.wait_for_filter();
    assert_eq!(echo.status_field("NoNewPrivs"), "1");
    // Ordinary requests work under the filter.
    assert_eq!(ask(&mut frontend, b"hello"), 17);
    let q = frontend.queue(0).unwrap();
    q.add(&[b"execve"], &[64]).unwrap();
    q.kick().unwrap();
    let (status, stderr) = echo.wait();
    assert_eq!(status.signal(), Some(libc::SIGSYS), "{status}: {stderr}");
    assert!(
        stderr.contains(&format!(
            "seccomp: forbidden system call execve ({})",
            libc::SYS_execve
        )),
        "{stderr}"
    );
}

#[test]
fn log_mode_lets_the_call_through_and_logs_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.sock");
    let (echo, mut frontend) = Echo::start(&path, &["--seccomp", "log"]);
    echo.wait_for_filter();
    // execve fails with ENOENT and the device answers with length 0.
    assert_eq!(ask(&mut frontend, b"execve"), 0);
    assert_eq!(ask(&mut frontend, b"hello"), 17);
    let (status, stderr) = echo.terminate();
    assert!(status.success(), "{status}: {stderr}");
    let want = format!(
        "seccomp: system call execve ({}) is outside the allow-list",
        libc::SYS_execve
    );
    assert!(stderr.contains(&want), "{stderr}");
}

#[test]
fn none_mode_installs_no_filter() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("none.sock");
    let (echo, mut frontend) = Echo::start(&path, &["--seccomp", "none"]);
    assert_eq!(ask(&mut frontend, b"execve"), 0);
    assert_eq!(echo.status_field("Seccomp"), "0");
    assert_eq!(echo.status_field("NoNewPrivs"), "1");
    assert!(echo.terminate().0.success());
}

#[test]
fn the_socket_mode_is_0600_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("default.sock");
    let (echo, _frontend) = Echo::start(&path, &[]);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    drop(echo);

    let path = dir.path().join("group.sock");
    let (echo, _frontend) = Echo::start(&path, &["--socket-mode", "0660"]);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    drop(echo);

    let out = Command::new(BIN)
        .args(["--socket-path", "/nonexistent/x", "--socket-mode", "999"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("octal mode"));
}

/// The errno of the daemon's attempt to open `path` (0: it opened).
fn open_in_daemon(frontend: &mut TestFrontend, path: &Path) -> i32 {
    let mut request = b"open:".to_vec();
    request.extend_from_slice(path.as_os_str().as_encoded_bytes());
    let q = frontend.queue(0).unwrap();
    q.add(&[&request], &[64]).unwrap();
    q.kick().unwrap();
    let used = q.wait_used(TIMEOUT).unwrap();
    assert_eq!(used.len, 4);
    i32::from_le_bytes(used.data[..4].try_into().unwrap())
}

#[test]
fn landlock_hides_files_outside_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    // Next to the socket: the daemon may remove its socket there, not
    // read what else is in the directory.
    let secret = dir.path().join("secret");
    std::fs::write(&secret, b"x").unwrap();
    for (args, denied) in [
        (&["--landlock", "enforce"][..], true),
        (&[][..], true), // best-effort is the default
        (&["--landlock", "none"][..], false),
    ] {
        let path = dir.path().join("landlock.sock");
        let (echo, mut frontend) = Echo::start(&path, args);
        echo.wait_for_filter();
        let want = if denied { libc::EACCES } else { 0 };
        assert_eq!(open_in_daemon(&mut frontend, &secret), want, "{args:?}");
        assert_eq!(
            open_in_daemon(&mut frontend, Path::new("/etc/passwd")),
            want,
            "{args:?}"
        );
        // Still serving, and still able to remove its socket at exit.
        assert_eq!(ask(&mut frontend, b"hello"), 17);
        let (status, stderr) = echo.terminate();
        assert!(status.success(), "{status}: {stderr}");
        assert!(!path.exists(), "socket left behind: {stderr}");
    }
}

#[test]
fn a_root_daemon_drops_every_capability_it_does_not_keep() {
    assert!(
        running_with_capabilities(),
        "this test needs capabilities to drop: run it as root (CI does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("caps.sock");
    for (args, kept) in [
        (&[][..], 0u64),
        (
            &["--modcaps", "+net_admin:+sys_nice:-sys_nice"][..],
            1 << 12,
        ),
    ] {
        let (echo, mut frontend) = Echo::start(&path, args);
        echo.wait_for_filter();
        // A connection starts the vring worker: it must have nothing either.
        assert_eq!(ask(&mut frontend, b"hello"), 17);
        let (wrong, threads) = threads_beyond_capabilities(echo.0.id(), kept).unwrap();
        assert!(threads >= 3, "main, socket and vring threads: {threads}");
        assert!(wrong.is_empty(), "with {args:?}: {wrong:#?}");
        assert!(echo.terminate().0.success());
    }
    let out = Command::new(BIN)
        .args(["--socket-path", "/nonexistent/x", "--modcaps", "+net_admn"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a capability"));
}
