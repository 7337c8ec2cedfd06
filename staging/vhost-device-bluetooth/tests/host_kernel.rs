// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The HCI user channel backend against the real kernel, inside the rig's
//! guest: `hci_vhci` creates a controller whose far side is this test
//! (through /dev/vhci), the daemon binds that controller's user channel,
//! and the test frontend plays the guest. Packets cross the kernel's
//! Bluetooth core both ways. The channel is bound once: a second frontend
//! gets the same controller back through HCI_Reset, from a daemon that kept
//! no capability, and so does the guest after a device reset; a lost
//! adapter fails the guest's commands at once. Without CAP_NET_ADMIN it
//! stays lost when it comes back (one clear log line); with
//! `--modcaps +net_admin` the daemon binds the new adapter and the guest
//! works again.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{command, options, Driver, WAIT};
use vhost_device_bluetooth::backend::endpoint::Endpoint;
use vhost_device_bluetooth::Error;
use vhost_device_common::testing::{
    running_with_capabilities, threads_beyond_capabilities, DaemonProcess,
};

/// Where the scenario puts the daemon binary in the guest.
const GUEST_BIN: &str = "/rig/vhost-device-bluetooth";

/// One packet from /dev/vhci, waiting up to `limit`.
fn vhci_read(vhci: &mut File, limit: Duration) -> Option<Vec<u8>> {
    let mut pfd = libc::pollfd {
        fd: vhci.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(limit.as_millis()).unwrap();
    // SAFETY: poll on one valid fd with a bounded timeout.
    let ready = unsafe { libc::poll(&raw mut pfd, 1, ms) };
    if ready != 1 {
        return None;
    }
    let mut buf = vec![0; 4096];
    let n = vhci.read(&mut buf).unwrap();
    buf.truncate(n);
    Some(buf)
}

/// The indexes of the adapters in sysfs.
fn adapters() -> Vec<u16> {
    std::fs::read_dir("/sys/class/bluetooth")
        .map(|dir| {
            dir.filter_map(|e| {
                e.ok()?
                    .file_name()
                    .to_str()?
                    .strip_prefix("hci")?
                    .parse()
                    .ok()
            })
            .collect()
        })
        .unwrap_or_default()
}

/// Creates a raw (unconfigured) controller: the kernel runs no init
/// sequence on it, so the first packets on /dev/vhci are the daemon's.
/// Returns once its user channel can be bound.
fn create_controller() -> (File, u16) {
    let (vhci, index) = new_controller();
    // Registration powers the controller on once; the user channel is
    // refused (EBUSY) until that is over.
    let deadline = Instant::now() + WAIT;
    loop {
        match Endpoint::Hci(index).connect() {
            Ok(_) => break,
            Err(Error::AdapterBusy(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("hci{index}: {e}"),
        }
    }
    (vhci, index)
}

/// Creates a raw controller and returns its index at once (a daemon may be
/// trying to bind it meanwhile).
fn new_controller() -> (File, u16) {
    let mut vhci = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/vhci")
        .unwrap();
    let before = adapters();
    vhci.write_all(&[0xff, 0x80]).unwrap();
    // hci_vhci answers with the new index, but its flush hook purges that
    // answer if the kernel's first power-on cycle (open, then close for an
    // unconfigured device) beats our read. The new sysfs entry says it too.
    let index = match vhci_read(&mut vhci, Duration::from_secs(2)) {
        Some(created) if created.len() == 4 && created[0] == 0xff => {
            u16::from_le_bytes([created[2], created[3]])
        }
        _ => {
            let deadline = Instant::now() + WAIT;
            loop {
                if let Some(&new) = adapters().iter().find(|i| !before.contains(i)) {
                    break new;
                }
                assert!(Instant::now() < deadline, "hci_vhci created no adapter");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    (vhci, index)
}

/// Removes the controller (closing /dev/vhci) and waits until sysfs has
/// no `hci<index>`.
fn remove_controller(vhci: File, index: u16) {
    drop(vhci);
    let deadline = Instant::now() + WAIT;
    while adapters().contains(&index) {
        assert!(Instant::now() < deadline, "hci{index} stayed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The daemon on `backend`, logging to a file in `dir` (read with
/// [`log_of`]).
fn start_daemon(dir: &tempfile::TempDir, name: &str, args: &[&str]) -> DaemonProcess {
    let sock = dir.path().join(format!("{name}.sock"));
    let log = File::create(dir.path().join(format!("{name}.log"))).unwrap();
    let mut command = Command::new(GUEST_BIN);
    command
        .arg("--socket-path")
        .arg(&sock)
        .args(args)
        .stderr(Stdio::from(log));
    DaemonProcess::spawn(command, vec![sock]).unwrap()
}

fn log_of(dir: &tempfile::TempDir, name: &str) -> String {
    std::fs::read_to_string(dir.path().join(format!("{name}.log"))).unwrap()
}

/// Sends a command until the guest gets an answer (the daemon may need a
/// moment to notice the adapter went away); the answer.
fn answer_to_a_command(d: &mut Driver) -> Vec<u8> {
    (0..5)
        .find_map(|_| {
            d.send(&command(0x1009, &[]));
            d.recv_within(Duration::from_secs(1))
        })
        .expect("no answer to a command")
}

/// What a guest gets for a command while the adapter is lost.
const REFUSED: [u8; 7] = [4, 0x0f, 4, 0x03, 1, 0x09, 0x10];
/// Command Complete of Read BD_ADDR, as the tests' controller answers it.
const BD_ADDR_REPLY: [u8; 13] = [4, 0x0e, 10, 1, 0x09, 0x10, 0, 1, 2, 3, 4, 5, 6];

/// A command from the guest reaches the controller, and its answer the
/// guest.
fn round_trip(d: &mut Driver, vhci: &mut File) {
    d.send(&command(0x1009, &[]));
    assert_eq!(vhci_read(vhci, WAIT).unwrap(), command(0x1009, &[]));
    vhci.write_all(&BD_ADDR_REPLY).unwrap();
    assert_eq!(d.recv(), BD_ADDR_REPLY);
}

/// The driver resets the device on a live connection (as QEMU passes a
/// virtio reset on: queues stopped and set up again) and probes again: its
/// own HCI_Reset reaches the controller over the same user channel, and
/// the controller works for it.
fn device_reset_keeps_the_controller(d: &mut Driver, vhci: &mut File) {
    d.fe.reset_device().unwrap();
    d.post_rx();
    d.send(&command(0x0c03, &[]));
    assert_eq!(vhci_read(vhci, WAIT).unwrap(), command(0x0c03, &[]));
    let complete = [4, 0x0e, 4, 1, 0x03, 0x0c, 0];
    vhci.write_all(&complete).unwrap();
    assert_eq!(d.recv(), complete);
    round_trip(d, vhci);
}

/// Without CAP_NET_ADMIN, an adapter that comes back under the same index
/// cannot be bound again: the guest keeps getting Hardware Failure, and the
/// log says why, once.
fn comes_back_without_net_admin(d: &mut Driver, dir: &tempfile::TempDir, index: u16) -> File {
    let (vhci, again) = create_controller();
    assert_eq!(again, index, "hci_vhci gave the new adapter another index");
    // Several of the daemon's retries (--reconnect-ms 100).
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(answer_to_a_command(d), REFUSED);
    let log = log_of(dir, "bt");
    let told = log
        .lines()
        .filter(|l| l.contains("needs CAP_NET_ADMIN") && l.contains("--modcaps +net_admin"))
        .count();
    assert_eq!(told, 1, "{log}");
    vhci
}

/// With `--modcaps +net_admin` the daemon binds an adapter that comes back:
/// the guest gets a Hardware Error event (Linux starts over on it), then
/// its commands reach the new controller.
fn comes_back_with_net_admin(dir: &tempfile::TempDir, vhci: File, index: u16) {
    let backend = format!("hci:{index}");
    let daemon = start_daemon(
        dir,
        "bt-admin",
        &[
            "--backend",
            &backend,
            "--modcaps",
            "+net_admin",
            "--reconnect-ms",
            "100",
        ],
    );
    let mut d = Driver::new(daemon.connect(0, options()).unwrap());
    let mut vhci = vhci;
    round_trip(&mut d, &mut vhci);
    let (wrong, _) = threads_beyond_capabilities(daemon.pid(), 1 << 12).unwrap();
    assert!(wrong.is_empty(), "{wrong:#?}");

    remove_controller(vhci, index);
    assert_eq!(answer_to_a_command(&mut d), REFUSED);
    let (mut vhci, again) = new_controller();
    assert_eq!(again, index, "hci_vhci gave the new adapter another index");
    let deadline = Instant::now() + WAIT;
    let event = loop {
        if let Some(p) = d.recv_within(Duration::from_millis(200)) {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not bind hci{index} again"
        );
    };
    assert_eq!(event, [4, 0x10, 1, 0], "Hardware Error");
    round_trip(&mut d, &mut vhci);
    drop(d);
    assert!(daemon.stop().unwrap().success());
    let log = log_of(dir, "bt-admin");
    assert!(!log.contains("needs CAP_NET_ADMIN"), "{log}");
}

fn in_guest() {
    let (mut vhci, index) = create_controller();
    let backend = format!("hci:{index}");

    // A held adapter: the daemon refuses to start, in one line.
    let held = Endpoint::Hci(index).connect().unwrap();
    let out = Command::new(GUEST_BIN)
        .args(["--socket-path", "/tmp/bt-held.sock", "--backend", &backend])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    // Holding the user channel keeps the adapter up, so the kernel says
    // EBUSY before it would say EUSERS.
    assert!(stderr.contains(&format!("hci{index} is up")), "{stderr}");
    drop(held);

    let dir = tempfile::tempdir().unwrap();
    let daemon = start_daemon(
        &dir,
        "bt",
        &["--backend", &backend, "--reconnect-ms", "100"],
    );
    let mut d = Driver::new(daemon.connect(0, options()).unwrap());

    // Guest → controller: the command reaches /dev/vhci as it was sent.
    d.send(&command(0x1009, &[]));
    assert_eq!(vhci_read(&mut vhci, WAIT).unwrap(), command(0x1009, &[]));
    // Controller → guest.
    let reply = BD_ADDR_REPLY;
    vhci.write_all(&reply).unwrap();
    assert_eq!(d.recv(), reply);
    // An ACL packet larger than the guest's 1000-byte buffer (/dev/vhci
    // takes up to 1028 bytes) arrives as
    // a start fragment and a continuing one.
    let mut acl = vec![2, 0x01, 0x20];
    acl.extend(1020u16.to_le_bytes());
    acl.extend((0..1020u32).map(|i| i as u8));
    vhci.write_all(&acl).unwrap();
    let first = d.recv();
    let second = d.recv();
    assert_eq!(first.len(), 1000);
    assert_eq!(&first[1..3], &[0x01, 0x20]);
    assert_eq!(&second[1..3], &[0x01, 0x10]);
    assert_eq!([&first[5..], &second[5..]].concat(), acl[5..]);
    // Guest data goes out too.
    d.send(&[2, 0x01, 0x00, 2, 0, 0xaa, 0xbb]);
    assert_eq!(
        vhci_read(&mut vhci, WAIT).unwrap(),
        [2, 0x01, 0x00, 2, 0, 0xaa, 0xbb]
    );

    drop(d);
    // The old guest's traffic, after it left: the next one never sees it.
    vhci.write_all(&[4, 0xff, 1, 0x41]).unwrap();
    let mut d = Driver::new(daemon.connect(0, options()).unwrap());
    // The same socket, reset for the new guest rather than bound again.
    assert_eq!(vhci_read(&mut vhci, WAIT).unwrap(), command(0x0c03, &[]));
    vhci.write_all(&[4, 0xff, 1, 0x42]).unwrap();
    vhci.write_all(&[4, 0x0e, 4, 1, 0x03, 0x0c, 0]).unwrap();
    d.send(&command(0x1009, &[]));
    assert_eq!(vhci_read(&mut vhci, WAIT).unwrap(), command(0x1009, &[]));
    vhci.write_all(&reply).unwrap();
    assert_eq!(
        d.recv(),
        reply,
        "stale packets or the reset's completion leaked"
    );

    // Nothing kept: binding happened before the sandbox.
    assert!(
        running_with_capabilities(),
        "the test needs capabilities to see them dropped: run as root"
    );
    let (wrong, threads) = threads_beyond_capabilities(daemon.pid(), 0).unwrap();
    assert!(threads >= 3, "{threads} threads");
    assert!(wrong.is_empty(), "{wrong:#?}");

    device_reset_keeps_the_controller(&mut d, &mut vhci);

    // The adapter goes away: the daemon lives, and the guest's commands
    // fail with Hardware Failure instead of timing out.
    remove_controller(vhci, index);
    assert_eq!(answer_to_a_command(&mut d), REFUSED);
    let before = daemon.cpu_ticks().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let ticks = daemon.cpu_ticks().unwrap() - before;
    assert!(
        ticks <= 5,
        "the daemon spins without its adapter: {ticks} ticks in 0.5 s"
    );

    let vhci = comes_back_without_net_admin(&mut d, &dir, index);
    drop(d);
    assert!(daemon.stop().unwrap().success());

    comes_back_with_net_admin(&dir, vhci, index);
}

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn host_kernel_user_channel_passes_a_vhci_controller_through() {
    if vhost_device_rig::in_guest() {
        in_guest();
        return;
    }
    vhost_device_rig::Scenario::host_test(
        "host_kernel_user_channel_passes_a_vhci_controller_through",
        std::env::current_exe().unwrap(),
        "host_kernel_user_channel_passes_a_vhci_controller_through",
    )
    .modules(&["hci_vhci"])
    .guest_file(env!("CARGO_BIN_EXE_vhost-device-bluetooth"), GUEST_BIN)
    .timeout(Duration::from_secs(120))
    .run()
    .expect("scenario could not start")
    .assert_success();
}
