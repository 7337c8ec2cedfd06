// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The built-in controllers behind QEMU's generic vhost-user device, used by
//! Linux's virtio_bt driver and BlueZ's tools in the rig's guest.
//!
//! One daemon serves two devices of one guest (`--socket-count 2`), so the
//! guest sees hci0 and hci1 on the daemon's shared radio: hci0 is brought
//! up, inspected through mgmt, taken down and up again; then hci1 is made
//! discoverable and advertises, and hci0's inquiry and LE scan find it.
//! Two more scenarios put BlueZ on one side each: its emulated controller
//! (`btvirt`) behind the H:4 stream backend, and bluetoothd with
//! `bluetoothctl` in the guest.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use vhost_device_rig::{Backend, Scenario};

/// The start of each script: `set -e`, and both controllers there.
const BOTH_THERE: &str = r#"set -e
n=0
until [ -e /sys/class/bluetooth/hci1 ]; do
    n=$((n + 1)); [ $n -lt 200 ] || { echo "no hci1"; ls /sys/class/bluetooth; exit 1; }
    sleep 0.1
done
"#;

/// The start of a one-controller script: `set -e`, and hci0 there.
const HCI0_THERE: &str = r#"set -e
n=0
until [ -e /sys/class/bluetooth/hci0 ]; do
    n=$((n + 1)); [ $n -lt 200 ] || { echo "no hci0"; exit 1; }
    sleep 0.1
done
"#;

/// Runs `scenario` with `script` in the guest, asserts that it passed and
/// returns what the guest printed.
fn guest_output(scenario: Scenario, script: &str) -> String {
    let result = scenario
        .guest_script(script)
        .timeout(Duration::from_secs(240))
        .run()
        .expect("scenario could not start");
    result.assert_success();
    result.guest_output
}

/// Asserts that each of `lines` is a line of `out` (trailing blanks aside).
fn assert_lines<S: AsRef<str>>(out: &str, lines: &[S]) {
    for line in lines {
        let line = line.as_ref();
        assert!(
            out.lines().any(|l| l.trim_end() == line),
            "no {line:?}: {out}"
        );
    }
}

/// The words after `prefix` on the first line that starts with it.
fn words_after<'a>(out: &'a str, prefix: &str) -> Vec<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?}: {out}"))
        .split_whitespace()
        .collect()
}

/// The guest script, after [`BOTH_THERE`]: every wait bounded.
const SCRIPT: &str = r#"hciconfig -a
hciconfig hci0 up
hciconfig hci0 | grep -q "UP RUNNING"
echo "UP0 $(hciconfig hci0 | sed -n 's/.*BD Address: \([0-9A-F:]*\).*/\1/p')"
btmgmt --index 0 info
btmgmt --index 0 info | sed -n 's/^\s*addr \([0-9A-F:]*\) .*/INFO ADDR \1/p'
btmgmt --index 0 info | sed -n 's/^\s*name \(.*\)$/INFO NAME \1/p'
btmgmt --index 0 info | sed -n 's/^\s*current settings: \(.*\)$/INFO SETTINGS \1/p'
hciconfig hci0 down
hciconfig hci0 | grep -q DOWN && echo "DOWN0"
hciconfig hci0 up
hciconfig hci0 | grep -q "UP RUNNING" && echo "UP0 AGAIN"

hciconfig hci1 up
hciconfig hci1 name peer-one
hciconfig hci1 piscan
hcitool -i hci0 scan > /tmp/scan
cat /tmp/scan
sed -n 's/^\s*\([0-9A-F][0-9A-F]:[0-9A-F:]*\)\s*\(.*\)$/FOUND \1 \2/p' /tmp/scan

# Advertising data: the complete local name "peer-one", padded to 31 bytes.
hcitool -i hci1 cmd 0x08 0x0008 0a 09 09 70 65 65 72 2d 6f 6e 65 \
    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
hciconfig hci1 leadv 3
# A TCG guest on a loaded host can spend a whole 5 s window without
# taking an advertising report; a few windows keep the check from being
# a race while still bounding the wait (20 s at most).
for try in 1 2 3 4; do
    timeout -s INT 5 hcitool -i hci0 lescan > /tmp/lescan || true
    grep -q "peer-one" /tmp/lescan && break
    echo "LE SCAN $try: nothing yet"
done
cat /tmp/lescan
sed -n 's/^\([0-9A-F][0-9A-F]:[0-9A-F:]*\) \(.*\)$/LE FOUND \1 \2/p' /tmp/lescan
echo "GUEST DONE"
"#;

fn device_args(index: usize) -> [String; 4] {
    [
        "-chardev".into(),
        format!("socket,id=bt{index},path={{sock}}{index}"),
        "-device".into(),
        format!(
            "vhost-user-test-device-pci,chardev=bt{index},virtio-id=40,num_vqs=2,config_size=6"
        ),
    ]
}

/// A scenario with one daemon serving the guest's two controllers.
fn two_controllers(name: &str) -> Scenario {
    let backend = Backend::new(env!("CARGO_BIN_EXE_vhost-device-bluetooth"))
        .args(&[
            "--socket-path",
            "{sock}",
            "--socket-count",
            "2",
            "--bdaddr",
            "52:54:00:b7:00:10",
        ])
        .env("RUST_LOG", "info")
        // Both sockets are bound before the daemon serves either.
        .wait_for_socket("{sock}1");
    let mut qemu: Vec<String> = device_args(0).to_vec();
    qemu.extend(device_args(1));
    Scenario::new(name).backend_with(backend).qemu_args(&qemu)
}

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_bluetooth_builtin_controllers_find_each_other() {
    let out = guest_output(
        two_controllers("guest_bluetooth_builtin_controllers_find_each_other"),
        &format!("{BOTH_THERE}{SCRIPT}"),
    );
    assert_lines(
        &out,
        &[
            "UP0 52:54:00:B7:00:10",
            "INFO ADDR 52:54:00:B7:00:10",
            "INFO NAME vhost-device-bluetooth-0",
            "DOWN0",
            "UP0 AGAIN",
            "FOUND 52:54:00:B7:00:11 peer-one",
            "LE FOUND 52:54:00:B7:00:11 peer-one",
            "GUEST DONE",
        ],
    );
    // LE is supported but only bluetoothd turns it on through mgmt.
    let settings = words_after(&out, "INFO SETTINGS ");
    for s in ["powered", "br/edr"] {
        assert!(settings.contains(&s), "{settings:?}");
    }
}

/// A machine reset while both controllers are up, hci1 discoverable and
/// advertising (issue #17): in the next boot the drivers bring them up
/// again (Linux sends HCI_Reset and its init sequence) and hci0's inquiry
/// finds hci1 under the name that boot gave it.
#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_bluetooth_works_after_a_machine_reset() {
    let script = r#"hciconfig hci0 up
hciconfig hci1 up
hciconfig hci1 name "peer-$RIG_BOOT"
hciconfig hci1 piscan
hcitool -i hci1 cmd 0x08 0x0008 03 02 01 06 \
    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00
hciconfig hci1 leadv 3
hcitool -i hci0 scan > /tmp/scan
sed -n "s/^\s*\([0-9A-F][0-9A-F]:[0-9A-F:]*\)\s*\(.*\)$/BOOT $RIG_BOOT FOUND \1 \2/p" /tmp/scan
[ "$RIG_BOOT" -gt 1 ] || rig_reset
echo "GUEST DONE"
"#;
    let out = guest_output(
        two_controllers("guest_bluetooth_works_after_a_machine_reset").resets(1),
        &format!("{BOTH_THERE}{script}"),
    );
    let found = [1, 2].map(|boot| format!("BOOT {boot} FOUND 52:54:00:B7:00:11 peer-{boot}"));
    assert_lines(&out, &found);
    assert_lines(&out, &["GUEST DONE"]);
}

/// Where `btvirt -s` serves its BR/EDR-only controller (the path is fixed in
/// BlueZ's emulator). Its BR/EDR/LE and LE servers are no use on a host
/// kernel without the AF_ALG socket family (`CONFIG_CRYPTO_USER_API_*`):
/// their emulated controller needs it for LE crypto, fails to create, and
/// btvirt closes every connection to them at once.
const BTVIRT_BREDR: &str = "/tmp/bt-server-bredr";

/// BlueZ's `btvirt -s`, run from the rig's root through its loader as the
/// rig runs QEMU (provisioned from trixie's bluez-test-tools).
fn btvirt() -> Backend {
    let image = vhost_device_rig::GuestImage::locate().expect("rig not provisioned");
    let root = &image.root;
    let btvirt = root.join("usr/bin/btvirt");
    assert!(
        btvirt.exists(),
        "{} is missing: re-run rust-vmm-ci/guest/provision.sh (bluez-test-tools)",
        btvirt.display()
    );
    let libs = format!(
        "{}:{}",
        root.join("usr/lib/x86_64-linux-gnu").display(),
        root.join("lib/x86_64-linux-gnu").display()
    );
    // A socket left by an earlier run would end the wait before btvirt
    // listens; btvirt itself replaces it.
    let _ = std::fs::remove_file(BTVIRT_BREDR);
    Backend::new(root.join("lib64/ld-linux-x86-64.so.2"))
        .args(&[
            "--library-path".to_owned(),
            libs,
            btvirt.display().to_string(),
            "-s".to_owned(),
        ])
        .wait_for_socket(BTVIRT_BREDR)
}

/// The guest's hci0 is BlueZ's emulated BR/EDR controller: the daemon's
/// H:4 stream backend connects to `btvirt -s`, and Linux's init sequence,
/// `hciconfig` and mgmt run against it. btvirt's controller differs from
/// the built-in one in what the guest can see: address 00:AA:01:00:00:42
/// (btvirt's fixed one), HCI version 5 (3.0, the built-in says 9) and no LE.
#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_bluetooth_h4_stream_to_btvirt() {
    let daemon = Backend::new(env!("CARGO_BIN_EXE_vhost-device-bluetooth"))
        .args(&[
            "--socket-path",
            "{sock}",
            "--backend",
            &format!("unix:{BTVIRT_BREDR}"),
        ])
        .env("RUST_LOG", "info");
    let script = r#"hciconfig hci0 up
hciconfig -a hci0
hciconfig hci0 | grep -q "UP RUNNING" && echo "UP"
hciconfig -a hci0 | sed -n 's/.*HCI Version: \([^ ]*\) .*/HCI VERSION \1/p'
btmgmt --index 0 info
btmgmt --index 0 info | sed -n 's/^\s*addr \([0-9A-F:]*\) version \([0-9]*\) manufacturer \([0-9]*\) .*/INFO ADDR \1 VERSION \2 MANUFACTURER \3/p'
btmgmt --index 0 info | sed -n 's/^\s*supported settings: \(.*\)$/INFO SUPPORTED \1/p'
hciconfig hci0 down
hciconfig hci0 up
hciconfig hci0 | grep -q "UP RUNNING" && echo "UP AGAIN"
echo "GUEST DONE"
"#;
    let qemu = [
        "-chardev",
        "socket,id=bt0,path={sock1}",
        "-device",
        "vhost-user-test-device-pci,chardev=bt0,virtio-id=40,num_vqs=2,config_size=6",
    ];
    let scenario = Scenario::new("guest_bluetooth_h4_stream_to_btvirt")
        .backend_with(btvirt())
        .backend_with(daemon)
        .qemu_args(&qemu);
    let out = guest_output(scenario, &format!("{HCI0_THERE}{script}"));
    // btvirt's BR/EDR controller: its fixed address, Bluetooth 3.0, and
    // the Linux Foundation's company ID (as the built-in's).
    assert_lines(
        &out,
        &[
            "UP",
            "INFO ADDR 00:AA:01:00:00:42 VERSION 5 MANUFACTURER 1521",
            "HCI VERSION 3.0",
            "UP AGAIN",
            "GUEST DONE",
        ],
    );
    let supported = words_after(&out, "INFO SUPPORTED ");
    assert!(supported.contains(&"br/edr"), "{supported:?}");
    // The built-in controller supports LE; btvirt's BR/EDR one does not.
    assert!(!supported.contains(&"le"), "{supported:?}");
}

/// bluetoothd and a D-Bus system bus in the guest (`rig-bluetoothd`), on
/// the built-in controller: bluetoothd takes the adapter through mgmt,
/// powers it and names it from main.conf, and `bluetoothctl show` reports
/// the controller's address, Powered and the name, which the controller
/// itself then reads back to `hciconfig`.
#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_bluetooth_bluetoothctl_show() {
    let daemon = Backend::new(env!("CARGO_BIN_EXE_vhost-device-bluetooth"))
        .args(&["--socket-path", "{sock}", "--bdaddr", "52:54:00:b7:00:20"])
        .env("RUST_LOG", "info");
    let script = r#"mkdir -p /etc/bluetooth
printf '[General]\nName = rig-guest\n' >/etc/bluetooth/main.conf
rig-bluetoothd
n=0
until timeout 5 bluetoothctl show 2>&1 | grep -q "Powered: yes"; do
    n=$((n + 1)); [ $n -lt 50 ] || { timeout 5 bluetoothctl show || true; cat /tmp/bluetoothd.log; exit 1; }
    sleep 0.2
done
timeout 5 bluetoothctl show >/tmp/show
cat /tmp/show
sed -n 's/^Controller \([0-9A-F:]*\) .*/SHOW CONTROLLER \1/p' /tmp/show
sed -n 's/^\s*\(Name\|Powered\): \(.*\)$/SHOW \1 \2/p' /tmp/show
hciconfig hci0 name | sed -n "s/^\s*Name: '\(.*\)'$/HCI NAME \1/p"
echo "GUEST DONE"
"#;
    let scenario = Scenario::new("guest_bluetooth_bluetoothctl_show")
        .backend_with(daemon)
        .qemu_args(&device_args(0).map(|a| a.replace("{sock}0", "{sock}")));
    let out = guest_output(scenario, &format!("{HCI0_THERE}{script}"));
    assert_lines(
        &out,
        &[
            "SHOW CONTROLLER 52:54:00:B7:00:20",
            "SHOW Powered yes",
            "SHOW Name rig-guest",
            "HCI NAME rig-guest",
            "GUEST DONE",
        ],
    );
}
