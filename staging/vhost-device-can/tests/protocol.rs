// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The real daemon on real sockets, driven by the test frontend the way
//! QEMU drives it: two guests on one virtual bus, bus-off through the
//! control socket, and a guest that vanishes with frames pending.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use vhost_device_can::protocol::*;
use vhost_device_common::testing::{
    running_with_capabilities, threads_beyond_capabilities, DaemonProcess, FrontendOptions,
    TestFrontend,
};
use vm_memory::ByteValued;

mod support;
use support::{bus_control, control, send, tx_bytes, WAIT};

const BIN: &str = env!("CARGO_BIN_EXE_vhost-device-can");
/// RX buffer size the Linux driver posts with FD negotiated.
const RX_BUF: u32 = 16 + 64;

struct Daemon {
    process: DaemonProcess,
    dir: tempfile::TempDir,
}

impl Daemon {
    fn start(guests: u16, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("can.sock");
        let ctl = dir.path().join("bus.ctl");
        let mut command = Command::new(BIN);
        command
            .arg("--socket-path")
            .arg(&base)
            .arg("--socket-count")
            .arg(guests.to_string())
            .arg("--bus-control")
            .arg(&ctl)
            .args(extra);
        let sockets: Vec<PathBuf> = if guests == 1 {
            vec![base]
        } else {
            (0..guests)
                .map(|i| dir.path().join(format!("can.sock{i}")))
                .collect()
        };
        let process = DaemonProcess::spawn(command, sockets).unwrap();
        Daemon { process, dir }
    }

    fn connect(&self, guest: usize, features_mask: u64) -> TestFrontend {
        let opts = FrontendOptions {
            num_queues: Some(3),
            queue_size: 64,
            features_mask,
            ..Default::default()
        };
        self.process.connect(guest, opts).unwrap()
    }

    fn control(&self, command: &str) -> String {
        bus_control(&self.dir.path().join("bus.ctl"), command).unwrap()
    }
}

/// Posts `n` RX buffers, as the driver does at probe.
fn post_rx(fe: &mut TestFrontend, n: usize) {
    let q = fe.queue(RX_QUEUE).unwrap();
    for _ in 0..n {
        q.add(&[], &[RX_BUF]).unwrap();
    }
    q.kick().unwrap();
}

/// The next received frame: (flags, id, payload).
fn receive(fe: &mut TestFrontend) -> (u32, u32, Vec<u8>) {
    let used = fe.queue(RX_QUEUE).unwrap().wait_used(WAIT).unwrap();
    let header = virtio_can_rx::from_slice(&used.data[..16])
        .copied()
        .unwrap();
    assert_eq!(header.msg_type.to_native(), VIRTIO_CAN_RX);
    let len = usize::from(header.length.to_native());
    // RTR frames come with `length` zero bytes, as Linux wants.
    assert_eq!(used.len as usize, 16 + len);
    let payload = if header.flags.to_native() & VIRTIO_CAN_FLAGS_RTR != 0 {
        assert!(used.data[16..16 + len].iter().all(|&b| b == 0));
        vec![]
    } else {
        used.data[16..16 + len].to_vec()
    };
    (header.flags.to_native(), header.can_id.to_native(), payload)
}

fn nothing_received(fe: &mut TestFrontend) {
    std::thread::sleep(Duration::from_millis(200));
    assert!(fe.queue(RX_QUEUE).unwrap().try_used().unwrap().is_none());
}

fn status(fe: &mut TestFrontend) -> u16 {
    let config = fe.get_config(0, 2).unwrap();
    u16::from_le_bytes([config[0], config[1]])
}

#[test]
fn two_guests_share_the_virtual_bus_without_echo() {
    let daemon = Daemon::start(2, &[]);
    let mut a = daemon.connect(0, !0);
    let mut b = daemon.connect(1, !0);
    let all = VIRTIO_CAN_F_CAN_CLASSIC
        | VIRTIO_CAN_F_CAN_FD
        | VIRTIO_CAN_F_RTR_FRAMES
        | VIRTIO_CAN_F_LATE_TX_ACK;
    assert_eq!(a.acked_features() & all, all);
    assert_eq!(status(&mut a), 0);
    for fe in [&mut a, &mut b] {
        post_rx(fe, 8);
        // Stopped: refused, sent to nobody.
        assert_eq!(send(fe, 0, 0x100, &[1]), VIRTIO_CAN_RESULT_NOT_OK);
        assert_eq!(
            control(fe, VIRTIO_CAN_SET_CTRL_MODE_START),
            VIRTIO_CAN_RESULT_OK
        );
    }
    assert_eq!(send(&mut a, 0, 0x123, &[0xde, 0xad]), VIRTIO_CAN_RESULT_OK);
    assert_eq!(receive(&mut b), (0, 0x123, vec![0xde, 0xad]));
    let fd: Vec<u8> = (0..64).collect();
    let fd_flags = VIRTIO_CAN_FLAGS_FD | VIRTIO_CAN_FLAGS_EXTENDED;
    assert_eq!(
        send(&mut b, fd_flags, 0x1abc_def0, &fd),
        VIRTIO_CAN_RESULT_OK
    );
    assert_eq!(receive(&mut a), (fd_flags, 0x1abc_def0, fd));
    // RTR: the DLC travels in `length`, with no payload.
    let used = a
        .queue(TX_QUEUE)
        .unwrap()
        .request(
            &[&tx_bytes(VIRTIO_CAN_FLAGS_RTR, 0x55, &[0; 4])],
            &[1],
            WAIT,
        )
        .unwrap();
    assert_eq!(used.data[0], VIRTIO_CAN_RESULT_OK);
    assert_eq!(receive(&mut b), (VIRTIO_CAN_FLAGS_RTR, 0x55, vec![]));
    nothing_received(&mut a);
    // A rejected frame reaches nobody.
    assert_eq!(send(&mut a, 0, 0x800, &[]), VIRTIO_CAN_RESULT_NOT_OK);
    nothing_received(&mut b);
    // B stops: A's frames are no longer delivered to it.
    assert_eq!(
        control(&mut b, VIRTIO_CAN_SET_CTRL_MODE_STOP),
        VIRTIO_CAN_RESULT_OK
    );
    assert_eq!(send(&mut a, 0, 0x1, &[]), VIRTIO_CAN_RESULT_OK);
    nothing_received(&mut b);
    a.disconnect().unwrap();
    b.disconnect().unwrap();
    assert_eq!(daemon.process.stop().unwrap().code(), Some(0));
}

#[test]
fn classic_only_guest_gets_no_fd_frames() {
    let daemon = Daemon::start(2, &[]);
    let mut a = daemon.connect(0, !0);
    let mut b = daemon.connect(1, !VIRTIO_CAN_F_CAN_FD);
    for fe in [&mut a, &mut b] {
        post_rx(fe, 4);
        control(fe, VIRTIO_CAN_SET_CTRL_MODE_START);
    }
    assert_eq!(
        send(&mut b, VIRTIO_CAN_FLAGS_FD, 1, &[0; 12]),
        VIRTIO_CAN_RESULT_NOT_OK
    );
    assert_eq!(
        send(&mut a, VIRTIO_CAN_FLAGS_FD, 2, &[0; 12]),
        VIRTIO_CAN_RESULT_OK
    );
    assert_eq!(send(&mut a, 0, 3, &[3]), VIRTIO_CAN_RESULT_OK);
    assert_eq!(receive(&mut b), (0, 3, vec![3]), "the FD frame was skipped");
}

#[test]
fn bus_off_from_the_control_socket() {
    let daemon = Daemon::start(2, &[]);
    let mut a = daemon.connect(0, !0);
    let mut b = daemon.connect(1, !0);
    for fe in [&mut a, &mut b] {
        post_rx(fe, 4);
    }
    assert!(
        daemon.control("busoff 0").starts_with("error"),
        "not started"
    );
    control(&mut a, VIRTIO_CAN_SET_CTRL_MODE_START);
    control(&mut b, VIRTIO_CAN_SET_CTRL_MODE_START);
    assert_eq!(daemon.control("busoff 0"), "ok");
    // The worker handles the bus's wake-up; wait for the status it sets.
    let mut tries = 0;
    while status(&mut a) != VIRTIO_CAN_S_CTRL_BUSOFF {
        tries += 1;
        assert!(tries < 100, "BUSOFF never showed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(send(&mut a, 0, 1, &[]), VIRTIO_CAN_RESULT_NOT_OK);
    assert_eq!(send(&mut b, 0, 2, &[]), VIRTIO_CAN_RESULT_OK);
    nothing_received(&mut a);
    assert_eq!(
        control(&mut a, VIRTIO_CAN_SET_CTRL_MODE_START),
        VIRTIO_CAN_RESULT_NOT_OK
    );
    assert_eq!(
        control(&mut a, VIRTIO_CAN_SET_CTRL_MODE_STOP),
        VIRTIO_CAN_RESULT_OK
    );
    assert_eq!(status(&mut a), 0);
    assert_eq!(
        control(&mut a, VIRTIO_CAN_SET_CTRL_MODE_START),
        VIRTIO_CAN_RESULT_OK
    );
    assert_eq!(send(&mut b, 0, 3, &[]), VIRTIO_CAN_RESULT_OK);
    assert_eq!(receive(&mut a), (0, 3, vec![]));
}

#[test]
fn a_guest_that_stops_reading_loses_only_old_frames() {
    let daemon = Daemon::start(2, &["--rx-backlog", "4"]);
    let mut a = daemon.connect(0, !0);
    let mut b = daemon.connect(1, !0);
    control(&mut a, VIRTIO_CAN_SET_CTRL_MODE_START);
    control(&mut b, VIRTIO_CAN_SET_CTRL_MODE_START);
    for id in 1..=20 {
        assert_eq!(send(&mut a, 0, id, &[]), VIRTIO_CAN_RESULT_OK);
    }
    post_rx(&mut b, 8);
    let ids: Vec<u32> = (0..4).map(|_| receive(&mut b).1).collect();
    assert_eq!(ids, [17, 18, 19, 20]);
    nothing_received(&mut b);
    assert_eq!(send(&mut a, 0, 21, &[]), VIRTIO_CAN_RESULT_OK);
    assert_eq!(receive(&mut b).1, 21);
}

#[test]
fn a_frontend_killed_with_frames_pending_leaves_the_bus_working() {
    let daemon = Daemon::start(2, &[]);
    let mut a = daemon.connect(0, !0);
    let mut b = daemon.connect(1, !0);
    control(&mut a, VIRTIO_CAN_SET_CTRL_MODE_START);
    control(&mut b, VIRTIO_CAN_SET_CTRL_MODE_START);
    post_rx(&mut b, 2);
    for id in 1..=10 {
        send(&mut a, 0, id, &[]);
    }
    // B has frames in its buffers and more waiting, and a TX in flight.
    b.queue(TX_QUEUE)
        .unwrap()
        .add(&[&tx_bytes(0, 0x77, &[])], &[1])
        .unwrap();
    b.abort();
    // A goes on; B comes back to a fresh, stopped controller.
    for id in 11..=20 {
        assert_eq!(send(&mut a, 0, id, &[]), VIRTIO_CAN_RESULT_OK);
    }
    let mut b = daemon.connect(1, !0);
    assert_eq!(send(&mut b, 0, 1, &[]), VIRTIO_CAN_RESULT_NOT_OK);
    post_rx(&mut b, 2);
    control(&mut b, VIRTIO_CAN_SET_CTRL_MODE_START);
    nothing_received(&mut b);
    send(&mut a, 0, 0x99, &[]);
    assert_eq!(receive(&mut b).1, 0x99, "nothing stale from before");
    a.disconnect().unwrap();
    b.disconnect().unwrap();
    assert_eq!(daemon.process.stop().unwrap().code(), Some(0));
}

#[test]
fn bad_command_lines_fail_with_one_line() {
    for args in [
        vec!["--socket-path", "/tmp/x.sock", "--device-list", "bus,bus"],
        vec![
            "--socket-path",
            "/tmp/x.sock",
            "--device-list",
            "nosuchcan0",
        ],
        vec!["--socket-path", "/tmp/x.sock", "--rx-backlog", "0"],
    ] {
        let out = Command::new(BIN).args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
}

#[test]
fn no_thread_keeps_a_capability_not_even_the_bus_control_s() {
    use std::io::{BufRead, BufReader, Write};
    assert!(
        running_with_capabilities(),
        "this test needs capabilities to see them dropped: run it as root (CI does)"
    );
    let daemon = Daemon::start(1, &[]);
    let _fe = daemon.connect(0, !0);
    // A client held open, so that its thread is there to be looked at.
    let client =
        std::os::unix::net::UnixStream::connect(daemon.dir.path().join("bus.ctl")).unwrap();
    let mut writer = client.try_clone().unwrap();
    writeln!(writer, "dropped").unwrap();
    let mut answer = String::new();
    BufReader::new(client).read_line(&mut answer).unwrap();
    assert!(answer.starts_with("ok"), "{answer}");
    let (wrong, threads) = threads_beyond_capabilities(daemon.process.pid(), 0).unwrap();
    assert!(threads >= 4, "main, socket, control, its client: {threads}");
    assert!(wrong.is_empty(), "threads with capabilities: {wrong:#?}");
}
