// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The real daemon (the echo test device behind `daemon::serve`) driven by
//! the test frontend over real sockets.

#![cfg(feature = "test-frontend")]
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod support;

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use vhost_device_common::testing::{DaemonProcess, FrontendOptions, RawDesc, TestFrontend};

use support::{echo, TIMEOUT};

const BIN: &str = env!("CARGO_BIN_EXE_vhost-device-echo");

fn start(path: &Path, count: u16) -> DaemonProcess {
    DaemonProcess::start(BIN, path, count, &[]).unwrap()
}

fn connect(path: &Path) -> TestFrontend {
    TestFrontend::connect_retry(path, FrontendOptions::default(), TIMEOUT).unwrap()
}

fn temp_socket(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

#[test]
fn request_and_reply() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_socket(&dir, "echo.sock");
    let _daemon = start(&path, 1);
    let mut frontend = connect(&path);
    // VERSION_1, EVENT_IDX, INDIRECT_DESC and protocol features are the
    // core's, not the device's.
    let features = frontend.acked_features();
    for bit in [32, 29, 28, 30] {
        assert_ne!(features & (1 << bit), 0, "feature bit {bit} not negotiated");
    }
    assert_eq!(echo(&mut frontend, b"hello"), (1, 0, b"hello".to_vec()));
    assert_eq!(echo(&mut frontend, b"again"), (2, 0, b"again".to_vec()));
    frontend.disconnect().unwrap();
}

/// One kick for a batch that mixes answered, malformed and held chains: the
/// drain loop completes each in turn under its per-request lock, the
/// malformed one with length 0, and nothing is lost or completed twice.
#[test]
fn one_batch_of_good_malformed_and_held_chains() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_socket(&dir, "batch.sock");
    let _daemon = start(&path, 1);
    let mut frontend = connect(&path);
    let q = frontend.queue(0).unwrap();
    let first = q.add(&[b"first"], &[64]).unwrap();
    let bad = q.add_raw(&[RawDesc::readable(1 << 40, 4, None)]).unwrap();
    let held = q.add(&[b"hold me"], &[64]).unwrap();
    let second = q.add(&[b"second"], &[64]).unwrap();
    q.kick().unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let used = q.wait_used(TIMEOUT).unwrap();
        seen.push((used.head, used.len, used.data.get(12..).map(<[u8]>::to_vec)));
    }
    assert_eq!(
        seen,
        [
            (first, 17, Some(b"first".to_vec())),
            (bad, 0, None),
            (second, 18, Some(b"second".to_vec())),
        ]
    );
    let release = q.add(&[b"release"], &[64]).unwrap();
    q.kick().unwrap();
    let mut rest: Vec<(u16, u32)> = (0..2)
        .map(|_| {
            let used = q.wait_used(TIMEOUT).unwrap();
            (used.head, used.len)
        })
        .collect();
    rest.sort_unstable();
    let mut want = vec![(held, 19), (release, 19)];
    want.sort_unstable();
    assert_eq!(rest, want);
    assert_eq!(q.in_flight(), 0);
    frontend.disconnect().unwrap();
}

#[test]
fn config_space_is_bounds_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_socket(&dir, "echo.sock");
    let _daemon = start(&path, 1);
    let mut frontend = connect(&path);
    assert_eq!(frontend.get_config(0, 8).unwrap(), [0; 8]);
    frontend.set_config(4, &[1, 2, 3, 4]).unwrap();
    assert_eq!(frontend.get_config(4, 4).unwrap(), [1, 2, 3, 4]);
    // Out of range: an error reply, and the daemon keeps serving.
    frontend.get_config(6, 4).unwrap_err();
    // Read-only or out of range: ignored, like a write to a read-only
    // register, without dropping the connection.
    frontend.set_config(0, &[9]).unwrap();
    frontend.set_config(6, &[9, 9, 9, 9]).unwrap();
    assert_eq!(frontend.get_config(0, 8).unwrap(), [0, 0, 0, 0, 1, 2, 3, 4]);
    assert_eq!(echo(&mut frontend, b"x").0, 1);
}

#[test]
fn hundred_reconnects_keep_the_socket_and_leak_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_socket(&dir, "echo.sock");
    let daemon = start(&path, 1);

    // Watch the socket file for the whole test.
    let missing = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let mut frontend = connect(&path);
    let watcher = {
        let (path, missing, stop) = (path.clone(), missing.clone(), stop.clone());
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if !path.exists() {
                    missing.store(true, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(1));
            }
        })
    };

    let mut baseline = None;
    for cycle in 0..100 {
        // Each connection gets a fresh device: the sequence restarts.
        assert_eq!(echo(&mut frontend, b"ping").0, 1, "cycle {cycle}");
        if cycle % 2 == 0 {
            frontend.disconnect().unwrap();
        } else {
            frontend.abort();
        }
        frontend = connect(&path);
        if cycle == 10 {
            // Counted while connected, after the daemon has served a few.
            echo(&mut frontend, b"settle");
            baseline = Some((daemon.fd_count().unwrap(), daemon.thread_count().unwrap()));
            frontend.disconnect().unwrap();
            frontend = connect(&path);
        }
    }
    echo(&mut frontend, b"settle");
    let end = (daemon.fd_count().unwrap(), daemon.thread_count().unwrap());
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    assert!(!missing.load(Ordering::Relaxed), "socket file disappeared");
    assert_eq!(Some(end), baseline, "(fds, threads) grew over 90 cycles");
}

#[test]
fn frontend_killed_mid_request_then_next_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_socket(&dir, "echo.sock");
    let _daemon = start(&path, 1);
    let mut frontend = connect(&path);
    let queue = frontend.queue(0).unwrap();
    queue.add(&[b"hold me"], &[64]).unwrap();
    queue.kick().unwrap();
    // The device holds the chain; nothing comes back.
    thread::sleep(Duration::from_millis(50));
    assert!(queue.try_used().unwrap().is_none());
    frontend.abort();

    let mut next = connect(&path);
    assert_eq!(echo(&mut next, b"fresh"), (1, 0, b"fresh".to_vec()));
    // Held chains are completed on request, so holding works at all.
    let queue = next.queue(0).unwrap();
    let held = queue.add(&[b"hold"], &[64]).unwrap();
    queue.kick().unwrap();
    let release = queue.add(&[b"release"], &[64]).unwrap();
    queue.kick().unwrap();
    let mut heads = vec![
        queue.wait_used(TIMEOUT).unwrap().head,
        queue.wait_used(TIMEOUT).unwrap().head,
    ];
    heads.sort_unstable();
    let mut want = vec![held, release];
    want.sort_unstable();
    assert_eq!(heads, want);
}

#[test]
fn socket_count_gives_each_guest_its_own_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_socket(&dir, "echo.sock");
    let _daemon = start(&path, 3);
    let paths: Vec<PathBuf> = (0..3)
        .map(|i| temp_socket(&dir, &format!("echo.sock{i}")))
        .collect();
    let mut frontends: Vec<TestFrontend> = paths.iter().map(|p| connect(p)).collect();
    assert!(!path.exists(), "with a count > 1 the bare path is not used");
    for _ in 0..2 {
        echo(&mut frontends[1], b"only guest 1");
    }
    for (i, frontend) in frontends.iter_mut().enumerate() {
        let expected_seq = if i == 1 { 3 } else { 1 };
        let (seq, guest, _) = echo(frontend, b"x");
        assert_eq!((seq, guest), (expected_seq, i as u32));
        assert_eq!(frontend.get_config(0, 4).unwrap(), (i as u32).to_le_bytes());
    }
}

#[test]
fn socket_fd_hand_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_socket(&dir, "inherited.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let fd = listener.as_raw_fd();
    // Let the child inherit it, as systemd would pass it.
    // SAFETY: plain fcntl on a descriptor this test owns.
    unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    let mut command = Command::new(BIN);
    command.args(["--socket-fd", &fd.to_string()]);
    let daemon = DaemonProcess::spawn(command, vec![path.clone()]).unwrap();
    drop(listener);
    let mut frontend = connect(&path);
    assert_eq!(echo(&mut frontend, b"via fd").2, b"via fd");
    frontend.abort();
    assert!(daemon.stop().unwrap().success());
    // We did not create that file, so we leave it for its owner.
    assert!(path.exists());
}

#[test]
fn sigterm_removes_the_sockets_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_socket(&dir, "echo.sock");
    let daemon = start(&path, 3);
    let paths: Vec<PathBuf> = (0..3)
        .map(|i| temp_socket(&dir, &format!("echo.sock{i}")))
        .collect();
    // One guest connected and busy, the others idle.
    let mut frontend = connect(&paths[0]);
    echo(&mut frontend, b"busy");
    for p in &paths {
        assert!(p.exists());
    }
    let status = daemon.stop().unwrap();
    assert!(status.success(), "exit status {status}");
    for p in &paths {
        assert!(!p.exists(), "{} left behind", p.display());
    }
}

#[test]
fn sigint_also_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_socket(&dir, "echo.sock");
    let daemon = start(&path, 1);
    connect(&path).abort();
    let mut daemon = daemon;
    daemon.signal(libc::SIGINT).unwrap();
    assert!(daemon.wait(TIMEOUT).unwrap().success());
    assert!(!path.exists());
}

#[test]
fn stale_socket_is_replaced_but_a_live_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_socket(&dir, "echo.sock");
    // A socket file whose owner is gone.
    drop(UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let _first = start(&path, 1);
    connect(&path).abort();

    // A second daemon on the same path must not steal it.
    let out = run(&["--socket-path", path.to_str().unwrap()]);
    assert_cli_error(&out, "in use");
    assert_eq!(echo(&mut connect(&path), b"still mine").0, 1);
}

fn run(args: &[&str]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{args:?} did not exit");
        }
        thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}

/// A CLI error: non-zero exit, nothing on stdout, and a first stderr line
/// that says what is wrong.
fn assert_cli_error(out: &Output, needle: &str) {
    assert!(!out.status.success(), "exit status {}", out.status);
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().unwrap_or_default();
    assert!(
        first.contains(needle),
        "first stderr line {first:?} does not mention {needle:?}; stderr: {stderr}"
    );
}

#[test]
fn cli_errors_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_socket(&dir, "x.sock");
    let path = path.to_str().unwrap();

    assert_cli_error(&run(&[]), "--socket-path");
    assert_cli_error(
        &run(&["--socket-path", path, "--socket-fd", "3"]),
        "cannot be used with",
    );
    assert_cli_error(&run(&["--socket-path", path, "--socket-count", "0"]), "0");
    assert_cli_error(&run(&["--socket-path", path, "--socket-count", "x"]), "x");
    assert_cli_error(
        &run(&["--socket-path", path, "--busy-poll-us", "2000000"]),
        "2000000",
    );
    assert_cli_error(&run(&["--socket-fd", "999"]), "--socket-fd 999");
    assert_cli_error(&run(&["--socket-fd=-1"]), "--socket-fd -1");
    // Descriptor 0 is /dev/null here, not a socket.
    assert_cli_error(&run(&["--socket-fd", "0"]), "not a socket");
    let unwritable = dir.path().join("no/such/dir/x.sock");
    assert_cli_error(
        &run(&["--socket-path", unwritable.to_str().unwrap()]),
        "cannot listen on",
    );
    let regular = dir.path().join("file");
    std::fs::write(&regular, b"").unwrap();
    assert_cli_error(
        &run(&["--socket-path", regular.to_str().unwrap()]),
        "not a socket",
    );
    assert!(regular.exists(), "a regular file must never be removed");
}

#[test]
fn help_explains_every_flag() {
    let out = run(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--socket-path",
        "--socket-fd",
        "--socket-count",
        "PATH0",
        "--busy-poll-us",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}: {help}");
    }
}

#[test]
fn busy_poll_answers_and_stops_polling_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let path = temp_socket(&dir, "echo.sock");
    // A long poll, so that it shows in whole clock ticks.
    let daemon = DaemonProcess::start(BIN, &path, 1, &["--busy-poll-us", "200000"]).unwrap();
    let mut frontend = connect(&path);
    let before = daemon.cpu_ticks().unwrap();
    for seq in 1..=20 {
        assert_eq!(echo(&mut frontend, b"poll"), (seq, 0, b"poll".to_vec()));
    }
    // The daemon polls for 0.2 s after the last reply, then sleeps.
    thread::sleep(Duration::from_millis(400));
    let polled = daemon.cpu_ticks().unwrap();
    thread::sleep(Duration::from_millis(1000));
    let idle = daemon.cpu_ticks().unwrap();
    assert!(
        polled - before >= 2,
        "no sign of polling: {} ticks",
        polled - before
    );
    assert!(
        idle - polled <= 2,
        "still spinning with nothing in flight: {} ticks in 1 s",
        idle - polled
    );
    frontend.disconnect().unwrap();
}
