// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The real daemon with its built-in controller, driven by the test
//! frontend the way QEMU and Linux's virtio_bt drive it.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use common::{command, options, Driver, WAIT};
use vhost_device_common::testing::DaemonProcess;

const BIN: &str = env!("CARGO_BIN_EXE_vhost-device-bluetooth");

/// The commands `hciconfig hci0 up` sends to this controller on Linux 7.3.
const INIT: &[(u16, &[u8])] = &[
    (0x0c03, &[]),
    (0x1003, &[]),
    (0x1001, &[]),
    (0x1009, &[]),
    (0x1002, &[]),
    (0x1005, &[]),
    (0x0c23, &[]),
    (0x0c14, &[]),
    (0x0c25, &[]),
    (0x0c38, &[]),
    (0x0c39, &[]),
    (0x0c16, &[0x00, 0x7d]),
    (0x2003, &[]),
    (0x2002, &[]),
    (0x201c, &[]),
    (0x0c01, &[0xff, 0xff, 0xfb, 0xff, 0, 0, 0, 0]),
    (0x080f, &[0x0f, 0]),
    (0x0c1b, &[]),
    (0x0c46, &[]),
    (0x2001, &[0x1f, 0, 0, 0, 0, 0, 0, 0]),
    (0x2007, &[]),
    (0x200f, &[]),
    (0x2010, &[]),
    (0x0c6d, &[1, 0]),
];

fn daemon(dir: &tempfile::TempDir, count: u16, extra: &[&str]) -> DaemonProcess {
    DaemonProcess::start(BIN, &dir.path().join("bt.sock"), count, extra).unwrap()
}

#[test]
fn init_sequence_is_answered_one_rx_buffer_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let process = daemon(&dir, 1, &["--bdaddr", "52:54:00:12:34:56", "--name", "ci"]);
    let mut d = Driver::new(process.connect(0, options()).unwrap());
    // Config: v2 negotiated by the test frontend, type primary, no vendor.
    assert_ne!(d.fe.acked_features() & (1 << 3), 0);
    assert_eq!(d.fe.get_config(0, 6).unwrap(), [0; 6]);
    for &(opcode, params) in INIT {
        let (status, ret) = d.cmd(opcode, params);
        assert_eq!(status, 0, "opcode {opcode:04x}");
        if opcode == 0x1009 {
            assert_eq!(ret, [0x56, 0x34, 0x12, 0x00, 0x54, 0x52]);
        }
        if opcode == 0x0c14 {
            assert_eq!(&ret[..3], b"ci\0");
        }
    }
    // An unknown vendor command: status Unknown HCI Command.
    assert_eq!(d.cmd(0xfc01, &[]).0, 0x01);
    // A malformed packet gets no answer; the next one does.
    d.send(&[1, 0x09, 0x10, 5]);
    assert!(d.recv_within(Duration::from_millis(200)).is_none());
    assert_eq!(d.cmd(0x1009, &[]).0, 0);
    drop(d);
    assert_eq!(process.stop().unwrap().code(), Some(0));
}

#[test]
fn replies_wait_for_the_next_rx_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let process = daemon(&dir, 1, &[]);
    let mut fe = process.connect(0, options()).unwrap();
    // Three commands before any RX buffer: the replies wait, in order.
    for opcode in [0x1009u16, 0x1001, 0x0c03] {
        fe.queue(0)
            .unwrap()
            .request(&[&command(opcode, &[])], &[], WAIT)
            .unwrap();
    }
    let mut d = Driver::new(fe);
    for opcode in [0x1009u16, 0x1001, 0x0c03] {
        let e = d.recv();
        assert_eq!(u16::from_le_bytes([e[4], e[5]]), opcode);
    }
    assert!(d.recv_within(Duration::from_millis(200)).is_none());
}

/// The device takes re-posted RX buffers from the ring when it has a
/// packet, so the driver's re-post after each packet needs no kick, with
/// EVENT_IDX and without; a reply that waits for a buffer gets the next
/// one posted.
#[test]
fn rx_buffers_need_no_kick_while_nothing_waits() {
    let dir = tempfile::tempdir().unwrap();
    let process = daemon(&dir, 1, &[]);
    for opts in [options(), options().without_event_idx()] {
        let mut d = Driver::new(process.connect(0, opts).unwrap());
        let mut kicks = 0;
        for _ in 0..20 {
            d.send(&command(0x1009, &[]));
            let used = d.fe.queue(1).unwrap().wait_used(WAIT).unwrap();
            assert_eq!(&used.data[..2], &[4, 0x0e]);
            let rx = d.fe.queue(1).unwrap();
            rx.add(&[], &[1000]).unwrap();
            kicks += usize::from(rx.kick().unwrap());
        }
        // At most the first re-post (EVENT_IDX armed by the first kick).
        assert!(kicks <= 1, "{kicks} RX kicks");
        // A reply with no buffer posted waits for the next one.
        d.send(&command(0x1009, &[]));
        d.send(&command(0x1001, &[]));
        let first = d.fe.queue(1).unwrap().wait_used(WAIT).unwrap();
        assert_eq!(u16::from_le_bytes([first.data[4], first.data[5]]), 0x1009);
        let rx = d.fe.queue(1).unwrap();
        rx.add(&[], &[1000]).unwrap();
        // Whether this kicks depends on who was first: the device asks
        // for a kick, then looks at the ring once more.
        rx.kick().unwrap();
        let second = rx.wait_used(WAIT).unwrap();
        assert_eq!(u16::from_le_bytes([second.data[4], second.data[5]]), 0x1001);
    }
    assert_eq!(process.stop().unwrap().code(), Some(0));
}

#[test]
fn two_guests_share_the_radio() {
    let dir = tempfile::tempdir().unwrap();
    let process = daemon(&dir, 2, &[]);
    let mut a = Driver::new(process.connect(0, options()).unwrap());
    let mut b = Driver::new(process.connect(1, options()).unwrap());
    // b advertises, a scans: a's scan reports b's data.
    let mut adv = [0u8; 32];
    adv[..6].copy_from_slice(&[5, 4, 0x09, b'b', b'-', b'1']);
    assert_eq!(b.cmd(0x2008, &adv).0, 0);
    assert_eq!(a.cmd(0x200c, &[1, 0]).0, 0);
    assert!(a.recv_within(Duration::from_millis(200)).is_none());
    assert_eq!(b.cmd(0x200a, &[1]).0, 0);
    // The report arrives through a's worker, woken by b's.
    let report = a.recv();
    assert_eq!(&report[..4], &[4, 0x3e, report[2], 0x02]);
    assert_eq!(&report[7..13], &[1, 0, 0xb7, 0, 0x54, 0x52]);
    assert_eq!(&report[14..19], &adv[1..6]);
    // Inquiry: b is discoverable, a finds it.
    assert_eq!(b.cmd(0x0c1a, &[3]).0, 0);
    a.send(&command(0x0401, &[0x33, 0x8b, 0x9e, 4, 0]));
    let status = a.recv();
    assert_eq!(&status[..4], &[4, 0x0f, 4, 0]);
    let result = a.recv();
    assert_eq!(result[1], 0x02);
    assert_eq!(&result[4..10], &[1, 0, 0xb7, 0, 0x54, 0x52]);
    assert_eq!(a.recv()[1], 0x01);
}
