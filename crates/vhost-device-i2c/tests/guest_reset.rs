// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A machine reset under a running guest (issue #17): the i2c-virtio driver
//! uses the simulated bus, the rig resets the machine through QMP, and the
//! next boot's driver uses the same daemon, over the same vhost-user
//! connection, again. The EEPROM is a chip on the host's bus, not part of
//! the virtio adapter, so what boot 1 wrote is still there in boot 2.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use vhost_device_rig::{Backend, Scenario};

const BIN: &str = env!("CARGO_BIN_EXE_vhost-device-i2c");

const SCRIPT: &str = r#"set -e
BUS=""
for d in /sys/bus/i2c/devices/i2c-*; do
    case "$(cat "$d/name")" in i2c_virtio*) BUS="${d##*/i2c-}" ;; esac
done
[ -n "$BUS" ] || { echo "no virtio i2c adapter"; exit 1; }
# Each boot writes its own byte and reads both.
/usr/sbin/i2cset -y "$BUS" 0x50 "0x1$RIG_BOOT" "0xa$RIG_BOOT"
echo "BOOT $RIG_BOOT READ $(/usr/sbin/i2cget -y "$BUS" 0x50 0x11) $(/usr/sbin/i2cget -y "$BUS" 0x50 0x12)"
v=$(/usr/sbin/i2ctransfer -y "$BUS" w1@0x50 0x11 r2); echo "BOOT $RIG_BOOT XFER $v"
if [ "$RIG_BOOT" = 1 ]; then
    rig_reset
fi
echo "GUEST DONE"
"#;

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_i2c_works_after_a_machine_reset() {
    let result = Scenario::new("guest_i2c_works_after_a_machine_reset")
        .backend_with(
            Backend::new(BIN)
                .args(&[
                    "--socket-path",
                    "{sock}",
                    "--device-list",
                    "sim:0x50=eeprom:256",
                ])
                .env("RUST_LOG", "debug"),
        )
        .qemu_args(&[
            "-chardev",
            "socket,id=i2c0,path={sock}",
            "-device",
            "vhost-user-i2c-pci,chardev=i2c0,id=i2c",
        ])
        .modules(&["i2c-dev"])
        .resets(1)
        .guest_script(SCRIPT)
        .timeout(Duration::from_secs(240))
        .run()
        .expect("scenario could not start");
    result.assert_success();
    assert_eq!(result.resets, 1, "{}", result.report());
    let out = &result.guest_output;
    // An erased EEPROM reads 0xff; boot 2 sees boot 1's byte.
    for line in [
        "BOOT 1 READ 0xa1 0xff",
        "BOOT 1 XFER 0xa1 0xff",
        "BOOT 2 READ 0xa1 0xa2",
        "BOOT 2 XFER 0xa1 0xa2",
        "GUEST DONE",
    ] {
        assert!(out.lines().any(|l| l.trim() == line), "no {line:?}: {out}");
    }
    // The daemon saw each boot end (GET_VRING_BASE at the reset and at the
    // power-off) and served both boots on one connection.
    let log = std::fs::read_to_string(result.dir.join("backend-0-vhost-device-i2c.log")).unwrap();
    assert_eq!(log.matches("frontend connected").count(), 1, "{log}");
    assert!(
        log.matches("queue 0: stopped by the frontend").count() >= 2,
        "{log}"
    );
}
