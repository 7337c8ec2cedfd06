// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The HCI user channel backend against the real kernel, inside the rig's
//! guest: `hci_vhci` creates a controller whose far side is this test
//! (through /dev/vhci), the daemon binds that controller's user channel,
//! and the test frontend plays the guest. Packets cross the kernel's
//! Bluetooth core both ways. The channel is bound once: a second frontend
//! gets the same controller back through HCI_Reset, from a daemon that kept
//! no capability, and a lost adapter fails the guest's commands at once.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod common;

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{command, options, Driver, WAIT};
use vhost_device_bluetooth::backend::endpoint::Endpoint;
use vhost_device_bluetooth::Error;
use vhost_device_common::testing::{capability_sets, DaemonProcess};

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
fn create_controller() -> (File, u16) {
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
    let sock = dir.path().join("bt.sock");
    let daemon = DaemonProcess::start(GUEST_BIN, &sock, 1, &["--backend", &backend]).unwrap();
    let mut d = Driver::new(daemon.connect(0, options()).unwrap());

    // Guest → controller: the command reaches /dev/vhci as it was sent.
    d.send(&command(0x1009, &[]));
    assert_eq!(vhci_read(&mut vhci, WAIT).unwrap(), command(0x1009, &[]));
    // Controller → guest.
    let reply = [4, 0x0e, 10, 1, 0x09, 0x10, 0, 1, 2, 3, 4, 5, 6];
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
    let ours = capability_sets(std::process::id()).unwrap();
    assert!(
        ours.iter()
            .any(|(name, bits)| name == "CapEff" && *bits != 0),
        "the test needs capabilities to see them dropped: run as root"
    );
    let sets = capability_sets(daemon.pid()).unwrap();
    assert!(sets.len() >= 3, "{sets:?}");
    for (name, bits) in sets {
        if matches!(name.as_str(), "CapEff" | "CapPrm" | "CapBnd") {
            assert_eq!(bits, 0, "{name}");
        }
    }

    // The adapter goes away: the daemon lives, and the guest's commands
    // fail with Hardware Failure instead of timing out.
    drop(vhci);
    let deadline = Instant::now() + WAIT;
    while adapters().contains(&index) {
        assert!(Instant::now() < deadline, "hci{index} stayed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let refused = (0..5).find_map(|_| {
        d.send(&command(0x1009, &[]));
        d.recv_within(Duration::from_secs(1))
    });
    assert_eq!(refused.unwrap(), [4, 0x0f, 4, 0x03, 1, 0x09, 0x10]);
    let before = daemon.cpu_ticks().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let ticks = daemon.cpu_ticks().unwrap() - before;
    assert!(
        ticks <= 5,
        "the daemon spins without its adapter: {ticks} ticks in 0.5 s"
    );

    drop(d);
    assert!(daemon.stop().unwrap().success());
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
