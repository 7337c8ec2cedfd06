// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The real daemon on a real socket with simulated targets, driven by the
//! test frontend the way QEMU drives it; and its command-line errors.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::process::Command;
use std::time::Duration;

use vhost_device_common::testing::{DaemonProcess, FrontendOptions, TestFrontend, TestQueue};
use vhost_device_i2c::protocol::{
    VIRTIO_I2C_FLAGS_FAIL_NEXT as FN, VIRTIO_I2C_FLAGS_M_RD as RD,
    VIRTIO_I2C_F_ZERO_LENGTH_REQUEST, VIRTIO_I2C_MSG_ERR as ERR, VIRTIO_I2C_MSG_OK as OK,
};

const BIN: &str = env!("CARGO_BIN_EXE_vhost-device-i2c");
const WAIT: Duration = Duration::from_secs(5);

/// The daemon on sockets in its own temporary directory.
struct Daemon {
    // Declared first so the process is killed before its directory goes.
    process: DaemonProcess,
    _dir: tempfile::TempDir,
}

impl Daemon {
    fn start(args: &[&str], count: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let process = DaemonProcess::start(BIN, &dir.path().join("i2c.sock"), count, args).unwrap();
        Daemon { process, _dir: dir }
    }

    fn connect(&self, guest: usize) -> TestFrontend {
        self.process
            .connect(guest, FrontendOptions::default())
            .unwrap()
    }

    fn stop(self) -> Option<i32> {
        self.process.stop().unwrap().code()
    }
}

fn hdr(addr: u8, flags: u32) -> Vec<u8> {
    let mut h = (u16::from(addr) << 1).to_le_bytes().to_vec();
    h.extend([0, 0]);
    h.extend(flags.to_le_bytes());
    h
}

/// One request of a transfer, as Linux's driver lays it out.
enum Seg<'a> {
    W(u8, &'a [u8]),
    R(u8, u32),
}

/// Queues the segments as one group (FAIL_NEXT on all but the last), kicks
/// once, and returns (status, data) per segment in order.
fn transfer(q: &mut TestQueue, segs: &[Seg<'_>]) -> Vec<(u8, Vec<u8>)> {
    let mut heads = Vec::new();
    for (i, seg) in segs.iter().enumerate() {
        let link = if i + 1 < segs.len() { FN } else { 0 };
        let head = match seg {
            Seg::W(addr, data) => {
                let h = hdr(*addr, link);
                if data.is_empty() {
                    q.add(&[&h], &[1]).unwrap()
                } else {
                    q.add(&[&h, data], &[1]).unwrap()
                }
            }
            Seg::R(addr, 0) => q.add(&[&hdr(*addr, link | RD)], &[1]).unwrap(),
            Seg::R(addr, len) => q.add(&[&hdr(*addr, link | RD)], &[*len, 1]).unwrap(),
        };
        heads.push(head);
    }
    q.kick().unwrap();
    let mut replies = vec![None; segs.len()];
    for _ in segs {
        let used = q.wait_used(WAIT).unwrap();
        let i = heads.iter().position(|&h| h == used.head).unwrap();
        let (status, data) = used.data.split_last().unwrap();
        assert_eq!(used.len as usize, used.data.len());
        replies[i] = Some((*status, data.to_vec()));
    }
    replies.into_iter().map(Option::unwrap).collect()
}

fn ok(data: &[u8]) -> (u8, Vec<u8>) {
    (OK, data.to_vec())
}

#[test]
fn features_and_a_combined_write_then_read() {
    let daemon = Daemon::start(&["--device-list", "sim:0x50=eeprom:256,sim:0x48=lm75"], 1);
    let mut fe = daemon.connect(0);
    assert_ne!(fe.device_features() & VIRTIO_I2C_F_ZERO_LENGTH_REQUEST, 0);
    assert_ne!(fe.device_features() & (1 << 32), 0, "VERSION_1");
    assert_eq!(fe.num_queues(), 1);
    let q = fe.queue(0).unwrap();

    let r = transfer(q, &[Seg::W(0x50, &[0x20, 1, 2, 3, 4])]);
    assert_eq!(r, vec![ok(&[])]);
    let r = transfer(q, &[Seg::W(0x50, &[0x20]), Seg::R(0x50, 4)]);
    assert_eq!(r, vec![ok(&[]), ok(&[1, 2, 3, 4])]);
    // The pointer persists: a plain read continues at 0x24.
    let r = transfer(q, &[Seg::R(0x50, 1)]);
    assert_eq!(r, vec![ok(&[0xff])]);
    // LM75: temperature register, 25 °C, most significant byte first.
    let r = transfer(q, &[Seg::W(0x48, &[0]), Seg::R(0x48, 2)]);
    assert_eq!(r, vec![ok(&[]), ok(&[0x19, 0x00])]);
    fe.disconnect().unwrap();
    assert_eq!(daemon.stop(), Some(0));
}

#[test]
fn statuses_follow_the_groups() {
    let daemon = Daemon::start(&["-l", "sim:0x50=eeprom:256"], 1);
    let mut fe = daemon.connect(0);
    let q = fe.queue(0).unwrap();
    // Unknown address alone: error.
    assert_eq!(transfer(q, &[Seg::R(0x51, 1)]), vec![(ERR, vec![0])]);
    // Unknown address mid-group: before it OK, from it on ERR.
    let r = transfer(
        q,
        &[
            Seg::W(0x50, &[0x00, 0x42]),
            Seg::R(0x33, 1),
            Seg::R(0x50, 1),
        ],
    );
    assert_eq!(r, vec![ok(&[]), (ERR, vec![0]), (ERR, vec![0])]);
    // The write in that group happened.
    let r = transfer(q, &[Seg::W(0x50, &[0x00]), Seg::R(0x50, 1)]);
    assert_eq!(r, vec![ok(&[]), ok(&[0x42])]);
    // Zero-length requests (SMBus quick, both directions).
    assert_eq!(transfer(q, &[Seg::W(0x50, &[])]), vec![ok(&[])]);
    assert_eq!(transfer(q, &[Seg::R(0x50, 0)]), vec![ok(&[])]);
    assert_eq!(transfer(q, &[Seg::W(0x52, &[])]), vec![(ERR, vec![])]);
    // Several groups in one kick.
    let h1 = hdr(0x50, 0);
    let h2 = hdr(0x50, FN);
    let h3 = hdr(0x33, 0);
    let a = q.add(&[&h1, &[0x10, 7]], &[1]).unwrap();
    let b = q.add(&[&h2], &[1]).unwrap();
    let c = q.add(&[&h3], &[1]).unwrap();
    q.kick().unwrap();
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..3 {
        let used = q.wait_used(WAIT).unwrap();
        statuses.insert(used.head, used.data[0]);
    }
    assert_eq!(statuses[&a], OK);
    assert_eq!(statuses[&b], OK);
    assert_eq!(statuses[&c], ERR);
    fe.disconnect().unwrap();
}

#[test]
fn a_malformed_chain_gets_an_error_and_the_daemon_keeps_serving() {
    let daemon = Daemon::start(&["-l", "sim:0x50=eeprom:256"], 1);
    let mut fe = daemon.connect(0);
    let q = fe.queue(0).unwrap();
    // A read request whose buffer is device-readable.
    let used = q.request(&[&hdr(0x50, RD), &[0; 4]], &[1], WAIT).unwrap();
    assert_eq!(used.data, [ERR]);
    // No status byte at all: returned with nothing written.
    let used = q.request(&[&hdr(0x50, 0)], &[], WAIT).unwrap();
    assert_eq!(used.len, 0);
    // A huge read.
    let used = q.request(&[&hdr(0x50, RD)], &[1 << 20, 1], WAIT).unwrap();
    assert_eq!(used.len, 0);
    // Reserved flags.
    let used = q.request(&[&hdr(0x50, 1 << 4)], &[1], WAIT).unwrap();
    assert_eq!(used.data, [ERR]);
    // Still serving.
    assert_eq!(transfer(q, &[Seg::W(0x50, &[0])]), vec![ok(&[])]);
    fe.disconnect().unwrap();
}

#[test]
fn chips_keep_their_contents_across_reconnections() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("eeprom.bin");
    let list = format!(
        "sim:0x50=eeprom:2k:file={},sim:0x58=eeprom:128",
        file.display()
    );
    let daemon = Daemon::start(&["-l", &list], 1);
    {
        let mut fe = daemon.connect(0);
        let q = fe.queue(0).unwrap();
        // Block 3 of the 24C16 answers at 0x53.
        let r = transfer(q, &[Seg::W(0x53, &[0x10, 0xca, 0xfe])]);
        assert_eq!(r, vec![ok(&[])]);
        assert_eq!(transfer(q, &[Seg::W(0x58, &[0, 9])]), vec![ok(&[])]);
        fe.disconnect().unwrap();
    }
    let data = std::fs::read(&file).unwrap();
    assert_eq!(data.len(), 2048);
    assert_eq!(&data[3 * 256 + 0x10..3 * 256 + 0x12], &[0xca, 0xfe]);
    let mut fe = daemon.connect(0);
    let q = fe.queue(0).unwrap();
    let r = transfer(q, &[Seg::W(0x53, &[0x10]), Seg::R(0x53, 2)]);
    assert_eq!(r, vec![ok(&[]), ok(&[0xca, 0xfe])]);
    let r = transfer(q, &[Seg::W(0x58, &[0]), Seg::R(0x58, 1)]);
    assert_eq!(r, vec![ok(&[]), ok(&[9])]);
    fe.disconnect().unwrap();
}

#[test]
fn each_guest_sees_its_own_list() {
    let daemon = Daemon::start(
        &["-l", "sim:0x50=eeprom:256", "-l", "sim:0x48=lm75:temp=-20"],
        2,
    );
    let mut g0 = daemon.connect(0);
    let mut g1 = daemon.connect(1);
    let q0 = g0.queue(0).unwrap();
    assert_eq!(transfer(q0, &[Seg::W(0x50, &[])]), vec![ok(&[])]);
    assert_eq!(transfer(q0, &[Seg::W(0x48, &[])]), vec![(ERR, vec![])]);
    let q1 = g1.queue(0).unwrap();
    assert_eq!(transfer(q1, &[Seg::W(0x50, &[])]), vec![(ERR, vec![])]);
    let r = transfer(q1, &[Seg::W(0x48, &[0]), Seg::R(0x48, 2)]);
    assert_eq!(r, vec![ok(&[]), ok(&[0xec, 0x00])]);
    g0.disconnect().unwrap();
    g1.disconnect().unwrap();
}

#[test]
fn one_list_gives_every_guest_its_own_chips() {
    let daemon = Daemon::start(&["-l", "sim:0x50=eeprom:256"], 2);
    let mut g0 = daemon.connect(0);
    let mut g1 = daemon.connect(1);
    let q0 = g0.queue(0).unwrap();
    transfer(q0, &[Seg::W(0x50, &[0, 0x11])]);
    let q1 = g1.queue(0).unwrap();
    let r = transfer(q1, &[Seg::W(0x50, &[0]), Seg::R(0x50, 1)]);
    assert_eq!(r, vec![ok(&[]), ok(&[0xff])]);
    g0.disconnect().unwrap();
    g1.disconnect().unwrap();
}

/// Runs the binary expecting a one-line error naming `needle`.
fn cli_error(args: &[&str], needle: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("--socket-path")
        .arg(dir.path().join("s"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
    assert!(stderr.contains(needle), "{args:?}: {stderr}");
    assert!(!dir.path().join("s").exists(), "a socket was created");
}

#[test]
fn bad_command_lines_are_one_line_errors() {
    cli_error(&["-l", "sim:0x50=eeprom:300"], "\"sim:0x50=eeprom:300\"");
    cli_error(&["-l", "sim:0x50=lm75,sim:0x50=lm75"], "already taken");
    cli_error(&["-l", "1:0x50:0x50"], "twice");
    cli_error(&["-l", "sim:0x50=eeprom:512,1:0x51"], "\"1:0x51\"");
    cli_error(&["-l", "9999:0x50"], "/dev/i2c-9999");
    cli_error(
        &["-l", "no such adapter anywhere:0x50"],
        "\"no such adapter anywhere:0x50\"",
    );
    cli_error(
        &["-l", "sim:0x50=lm75", "-l", "sim:0x50=lm75"],
        "2 times for 1 guests",
    );
    cli_error(&["-l", "sim:0x90=lm75"], "outside");
    cli_error(&["-l", "bogus"], "\"bogus\"");
}

#[test]
fn without_event_idx_and_with_indirect_chains() {
    let daemon = Daemon::start(&["-l", "sim:0x50=eeprom:256"], 1);
    let opts = FrontendOptions::default().without_event_idx();
    let mut fe = daemon.process.connect(0, opts).unwrap();
    let q = fe.queue(0).unwrap();
    assert!(!q.event_idx());
    // Many small groups in one kick, each a write then a read, as indirect
    // chains: every one is completed and signalled.
    let mut heads = Vec::new();
    for i in 0..16u8 {
        heads.push(
            q.add_indirect(&[&hdr(0x50, 0), &[i, i ^ 0x5a]], &[1])
                .unwrap(),
        );
    }
    for i in 0..16u8 {
        heads.push(q.add_indirect(&[&hdr(0x50, FN), &[i]], &[1]).unwrap());
        heads.push(q.add_indirect(&[&hdr(0x50, RD)], &[1, 1]).unwrap());
    }
    q.kick().unwrap();
    let mut replies = std::collections::BTreeMap::new();
    for _ in 0..heads.len() {
        let used = q.wait_used(WAIT).unwrap();
        replies.insert(used.head, used.data);
    }
    for i in 0..16u8 {
        let read = heads[16 + 2 * usize::from(i) + 1];
        assert_eq!(replies[&read], [i ^ 0x5a, OK], "byte {i}");
    }
    fe.disconnect().unwrap();
}
