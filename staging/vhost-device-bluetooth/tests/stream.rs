// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The H:4 stream backend of the real daemon: the test plays the
//! controller on the far side of a Unix socket, a TCP port or a pty, and
//! the test frontend plays the guest.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::thread;
use std::time::{Duration, Instant};

use common::{command, options, Driver, WAIT};
use vhost_device_common::testing::DaemonProcess;

const BIN: &str = env!("CARGO_BIN_EXE_vhost-device-bluetooth");

fn daemon(dir: &tempfile::TempDir, backend: &str) -> DaemonProcess {
    daemon_with(dir, backend, &[])
}

fn daemon_with(dir: &tempfile::TempDir, backend: &str, extra: &[&str]) -> DaemonProcess {
    let mut args = vec!["--backend", backend, "--reconnect-ms", "50"];
    args.extend(extra);
    DaemonProcess::start(BIN, &dir.path().join("bt.sock"), 1, &args).unwrap()
}

/// Reads exactly `n` bytes from the controller's side.
fn read_n(stream: &mut impl Read, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    stream.read_exact(&mut buf).unwrap();
    buf
}

/// Command Complete for Read BD_ADDR.
fn bdaddr_reply(last: u8) -> Vec<u8> {
    vec![4, 0x0e, 10, 1, 0x09, 0x10, 0, last, 2, 3, 4, 5, 6]
}

/// The guest sends Read BD_ADDR; the far side answers one byte at a time.
fn round_trip_byte_by_byte(d: &mut Driver, far: &mut (impl Read + Write), last: u8) {
    d.send(&command(0x1009, &[]));
    assert_eq!(read_n(far, 4), command(0x1009, &[]));
    for b in bdaddr_reply(last) {
        far.write_all(&[b]).unwrap();
        far.flush().unwrap();
        thread::sleep(Duration::from_millis(2));
    }
    assert_eq!(d.recv(), bdaddr_reply(last));
}

#[test]
fn unix_stream_is_reframed_and_reconnected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("controller.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let process = daemon(&dir, &format!("unix:{}", path.display()));
    let mut d = Driver::new(process.connect(0, options()).unwrap());
    let (mut far, _) = listener.accept().unwrap();
    far.set_read_timeout(Some(WAIT)).unwrap();
    round_trip_byte_by_byte(&mut d, &mut far, 1);

    // Several packets in one write, split across RX buffers; an ACL packet
    // among them, and garbage that is dropped.
    let mut burst = bdaddr_reply(2);
    burst.push(0xff);
    burst.extend([2, 0x01, 0x20, 3, 0, 7, 8, 9]);
    burst.extend([4, 0x13, 5, 1, 0x01, 0x00, 1, 0]);
    far.write_all(&burst).unwrap();
    assert_eq!(d.recv(), bdaddr_reply(2));
    assert_eq!(d.recv(), [2, 0x01, 0x20, 3, 0, 7, 8, 9]);
    assert_eq!(d.recv(), [4, 0x13, 5, 1, 0x01, 0x00, 1, 0]);

    // The controller goes away and comes back: the guest hears a Hardware
    // Error, then talks to the new one.
    drop(far);
    let (mut far, _) = listener.accept().unwrap();
    far.set_read_timeout(Some(WAIT)).unwrap();
    assert_eq!(d.recv(), [4, 0x10, 1, 0]);
    round_trip_byte_by_byte(&mut d, &mut far, 3);
}

#[test]
fn a_full_backlog_holds_the_stream_back_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("controller.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let process = daemon_with(
        &dir,
        &format!("unix:{}", path.display()),
        &["--rx-backlog", "2"],
    );
    // No RX buffer yet: the daemon can hold two events, the rest must stay
    // in the socket until the guest posts buffers.
    let fe = process.connect(0, options()).unwrap();
    let (mut far, _) = listener.accept().unwrap();
    let events: Vec<Vec<u8>> = (0..50u8).map(|i| vec![4, 0xff, 2, i, !i]).collect();
    far.write_all(&events.concat()).unwrap();
    thread::sleep(Duration::from_millis(200));
    let mut d = Driver::new(fe);
    for e in &events {
        assert_eq!(&d.recv(), e);
    }
    assert!(d.recv_within(Duration::from_millis(100)).is_none());
}

#[test]
fn a_controller_that_is_not_there_yet_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("late.sock");
    let process = daemon(&dir, &format!("unix:{}", path.display()));
    let mut d = Driver::new(process.connect(0, options()).unwrap());
    // A command while nobody is there is dropped, not answered.
    d.send(&command(0x0c03, &[]));
    assert!(d.recv_within(Duration::from_millis(200)).is_none());
    let listener = UnixListener::bind(&path).unwrap();
    let (mut far, _) = listener.accept().unwrap();
    far.set_read_timeout(Some(WAIT)).unwrap();
    // The first connection is not a reconnect: no Hardware Error.
    round_trip_byte_by_byte(&mut d, &mut far, 4);
}

#[test]
fn tcp_stream() {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let process = daemon(&dir, &format!("tcp:127.0.0.1:{port}"));
    let mut d = Driver::new(process.connect(0, options()).unwrap());
    let (mut far, _) = listener.accept().unwrap();
    far.set_read_timeout(Some(WAIT)).unwrap();
    round_trip_byte_by_byte(&mut d, &mut far, 5);
}

/// The master side of a fresh pty and the slave's path.
fn pty() -> (std::fs::File, String) {
    use std::os::fd::FromRawFd;
    // SAFETY: plain libc calls on a descriptor we own, results checked.
    unsafe {
        let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(fd >= 0);
        assert_eq!(libc::grantpt(fd), 0);
        assert_eq!(libc::unlockpt(fd), 0);
        let name = std::ffi::CStr::from_ptr(libc::ptsname(fd))
            .to_str()
            .unwrap()
            .to_owned();
        (std::fs::File::from_raw_fd(fd), name)
    }
}

#[test]
fn serial_pty() {
    let dir = tempfile::tempdir().unwrap();
    let (mut master, slave) = pty();
    let process = daemon(&dir, &format!("serial:{slave}"));
    let mut d = Driver::new(process.connect(0, options()).unwrap());
    // The daemon opens the slave when the device starts; give it a moment
    // before the first byte, bounded.
    let deadline = Instant::now() + WAIT;
    d.send(&command(0x1009, &[]));
    let mut got = Vec::new();
    let mut buf = [0u8; 16];
    while got.len() < 4 && Instant::now() < deadline {
        let mut pfd = libc::pollfd {
            fd: std::os::fd::AsRawFd::as_raw_fd(&master),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one valid fd with a bounded timeout.
        let ready = unsafe { libc::poll(&raw mut pfd, 1, 100) };
        if ready == 1 {
            let n = master.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
    }
    assert_eq!(got, command(0x1009, &[]));
    for b in bdaddr_reply(6) {
        master.write_all(&[b]).unwrap();
    }
    assert_eq!(d.recv(), bdaddr_reply(6));
}
