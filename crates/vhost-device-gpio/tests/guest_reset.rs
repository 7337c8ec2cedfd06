// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A machine reset under a running guest (issue #17): the gpio-virtio driver
//! uses the simulated chip, the rig resets the machine through QMP, and the
//! driver of the next boot uses the same daemon, over the same vhost-user
//! connection, again.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use vhost_device_gpio::control::ControlClient;
use vhost_device_rig::Scenario;

/// The same checks in each boot: the chip and its names (GET_NAMES), a line
/// the host drives (GET_VALUE), an output (SET_DIRECTION, SET_VALUE).
const SCRIPT: &str = r#"set -e
CHIP=$(gpiodetect | sed -n 's/^\(gpiochip[0-9]*\) \[virtio[0-9]*\] (4 lines)$/\1/p' | head -n1)
[ -n "$CHIP" ] || { gpiodetect; echo "no virtio gpiochip with 4 lines"; exit 1; }
gpioinfo -c "$CHIP" | grep -q '"sim-line-3"'
echo "BOOT $RIG_BOOT NAMES OK"
echo "BOOT $RIG_BOOT GET1 $(gpioget -c "$CHIP" --numeric 1)"
gpioset -c "$CHIP" -t 0 0=1
echo "BOOT $RIG_BOOT SET0 OK"
[ "$RIG_BOOT" -gt 1 ] || rig_reset
echo "GUEST DONE"
"#;

/// Keeps line 1 driven high until the scenario is over: the drive is the
/// outside world's, so it holds across the reset, and waiting for the
/// control socket covers the rig's wait for other guests.
fn drive_line_1(path: &Path, over: &AtomicBool) {
    let mut ctl = None;
    while !over.load(Ordering::SeqCst) {
        if ctl.is_none() && path.exists() {
            ctl = ControlClient::connect(path).ok();
        }
        if let Some(c) = ctl.as_mut() {
            if c.set(1, true).is_err() {
                ctl = None;
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_gpio_works_after_a_machine_reset() {
    let tmp = tempfile::Builder::new().prefix("vdgpio").tempdir().unwrap();
    let ctl = tmp.path().join("ctl");
    let over = Arc::new(AtomicBool::new(false));
    let (host_ctl, host_over) = (ctl.clone(), over.clone());
    let host = thread::spawn(move || drive_line_1(&host_ctl, &host_over));
    let result = Scenario::new("guest_gpio_works_after_a_machine_reset")
        .backend_with(
            vhost_device_rig::Backend::new(env!("CARGO_BIN_EXE_vhost-device-gpio"))
                .args(&[
                    "--socket-path",
                    "{sock}",
                    "--device-list",
                    "s4",
                    "--sim-control",
                    ctl.to_str().unwrap(),
                ])
                .env("RUST_LOG", "debug"),
        )
        .qemu_args(&[
            "-chardev",
            "socket,id=gpio0,path={sock}",
            "-device",
            "vhost-user-gpio-pci,chardev=gpio0,id=gpio",
        ])
        .resets(1)
        .guest_script(SCRIPT)
        .timeout(Duration::from_secs(240))
        .run()
        .expect("scenario could not start");
    over.store(true, Ordering::SeqCst);
    host.join().unwrap();
    result.assert_success();
    let out = &result.guest_output;
    for boot in [1, 2] {
        for line in [
            format!("BOOT {boot} NAMES OK"),
            format!("BOOT {boot} GET1 1"),
            format!("BOOT {boot} SET0 OK"),
        ] {
            assert!(out.lines().any(|l| l.trim() == line), "no {line:?}: {out}");
        }
    }
    assert!(out.contains("GUEST DONE"), "{out}");

    // The daemon saw the reset as QEMU signals it, the queues stopped with
    // GET_VRING_BASE (once at the reset, once at the power-off), and served
    // the next boot on the same connection, under its seccomp filter.
    let log = std::fs::read_to_string(result.dir.join("backend-0-vhost-device-gpio.log")).unwrap();
    assert_eq!(log.matches("frontend connected").count(), 1, "{log}");
    assert!(
        log.matches("queue 0: stopped by the frontend").count() >= 2,
        "{log}"
    );
    assert!(log.contains("seccomp: allow-list installed"), "{log}");
}
