// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Guest scenarios: the simulated bus behind QEMU's `vhost-user-i2c-pci`,
//! used by a Linux guest's own tools and drivers; and the host-adapter
//! backend run inside the guest against real kernel adapters.
//!
//! Run with `rust-vmm-ci/guest/run-tests.sh -p vhost-device-i2c` (or
//! `cargo test -p vhost-device-i2c -- --ignored` after provisioning).

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vhost_device_rig::{Backend, GuestImage, Scenario};

const BIN: &str = env!("CARGO_BIN_EXE_vhost-device-i2c");

/// Decompresses the guest kernel's module `rel` (e.g. `nvmem/at24`) into
/// `dir`, for the scenario to insmod: the base initramfs carries only the
/// modules its list names.
fn guest_module(image: &GuestImage, rel: &str, dir: &Path) -> PathBuf {
    let base = image
        .kernel
        .parent()
        .unwrap()
        .join("lib/modules")
        .join(&image.kernel_release)
        .join("kernel/drivers")
        .join(rel);
    let out = dir.join(format!(
        "{}.ko",
        Path::new(rel).file_name().unwrap().to_str().unwrap()
    ));
    let plain = base.with_extension("ko");
    if plain.exists() {
        std::fs::copy(&plain, &out).unwrap();
        return out;
    }
    for (ext, tool) in [("ko.xz", "xz"), ("ko.zst", "zstd"), ("ko.gz", "gzip")] {
        let packed = base.with_extension(ext);
        if packed.exists() {
            let data = Command::new(tool).arg("-dc").arg(&packed).output().unwrap();
            assert!(data.status.success(), "{tool} -dc {}", packed.display());
            std::fs::write(&out, data.stdout).unwrap();
            return out;
        }
    }
    panic!("the guest kernel has no module {}", base.display());
}

/// The lines between `BEGIN` and `END` markers in the guest's output.
fn section<'a>(output: &'a str, name: &str) -> Vec<&'a str> {
    let begin = format!("{name}-BEGIN");
    let end = format!("{name}-END");
    output
        .lines()
        .map(str::trim_end)
        .skip_while(|l| !l.ends_with(&begin))
        .skip(1)
        .take_while(|l| !l.ends_with(&end))
        .collect()
}

/// The cells of an `i2cdetect` table printed under `marker` that are not
/// `--`: the addresses that answered, or `UU` where a driver owns one.
fn detected(out: &str, marker: &str) -> Vec<String> {
    section(out, marker)
        .iter()
        .skip(1)
        .flat_map(|l| l.split_whitespace().skip(1))
        .filter(|t| *t != "--")
        .map(str::to_owned)
        .collect()
}

/// `od -An -v -tx1` output back to bytes.
fn od_bytes(lines: &[&str]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| l.split_whitespace())
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

/// A scenario with the daemon's simulated bus `list` behind QEMU's
/// vhost-user-i2c-pci, and i2c-dev loaded for the i2c tools.
fn sim_bus(name: &str, list: &str) -> Scenario {
    Scenario::new(name)
        .backend_with(
            Backend::new(BIN)
                .args(&["--socket-path", "{sock}", "--device-list", list])
                .env("RUST_LOG", "debug"),
        )
        .qemu_args(&[
            "-chardev",
            "socket,id=i2c0,path={sock}",
            "-device",
            "vhost-user-i2c-pci,chardev=i2c0,id=i2c",
        ])
        .modules(&["i2c-dev"])
}

/// The start of each script: `set -e`, and `BUS`, the virtio adapter's number.
const FIND_BUS: &str = r#"set -e
BUS=""
for d in /sys/bus/i2c/devices/i2c-*; do
    case "$(cat "$d/name")" in i2c_virtio*) BUS="${d##*/i2c-}" ;; esac
done
[ -n "$BUS" ] || { echo "no virtio i2c adapter"; exit 1; }
"#;

const SCRIPT: &str = r#"DEV=/sys/bus/i2c/devices
echo "BUS=$BUS"
echo DETECT-BEGIN
/usr/sbin/i2cdetect -y "$BUS"
echo DETECT-END

# SMBus byte and word through the kernel's emulation.
/usr/sbin/i2cset -y "$BUS" 0x50 0x10 0xab
v=$(/usr/sbin/i2cget -y "$BUS" 0x50 0x10); echo "GET=$v"; [ "$v" = 0xab ]
/usr/sbin/i2cset -y "$BUS" 0x50 0x20 0x1234 w
v=$(/usr/sbin/i2cget -y "$BUS" 0x50 0x20 w); echo "GETW=$v"; [ "$v" = 0x1234 ]

# Combined transfers (I2C_RDWR): write, then write-then-read in one group.
/usr/sbin/i2ctransfer -y "$BUS" w3@0x50 0x30 0xde 0xad
v=$(/usr/sbin/i2ctransfer -y "$BUS" w1@0x50 0x30 r2); echo "XFER=$v"; [ "$v" = "0xde 0xad" ]
# A group reaching an address this guest does not have: the message to 0x50
# succeeds, the one to 0x33 fails, and the driver reports 1 of 2 done.
v=$(/usr/sbin/i2ctransfer -y "$BUS" w1@0x50 0x00 r1@0x33 2>&1 || true); echo "PARTIAL=$v"
case "$v" in *"only 1/2"*) ;; *) echo "expected a partial transfer"; exit 1 ;; esac
v=$(/usr/sbin/i2ctransfer -y "$BUS" w1@0x33 0x00 r1@0x50 2>&1 || true); echo "NONE=$v"
case "$v" in *"only 0/2"*) ;; *) echo "expected a failed transfer"; exit 1 ;; esac

# The kernel's own drivers.
modprobe at24 2>/dev/null || insmod /rig/at24.ko
modprobe lm75 2>/dev/null || insmod /rig/lm75.ko
echo 24c02 0x50 > "$DEV/i2c-$BUS/new_device"
echo 24c04 0x52 > "$DEV/i2c-$BUS/new_device"
echo 24c32 0x54 > "$DEV/i2c-$BUS/new_device"
echo lm75 0x48 > "$DEV/i2c-$BUS/new_device"
for f in "$BUS-0050/eeprom" "$BUS-0052/eeprom" "$BUS-0054/eeprom"; do
    i=0; while [ ! -e "$DEV/$f" ] && [ $i -lt 20 ]; do sleep 1; i=$((i+1)); done
    [ -e "$DEV/$f" ] || { echo "no $f"; dmesg | tail -20; exit 1; }
done
printf 'hello-at24' | dd of="$DEV/$BUS-0050/eeprom" bs=1 seek=64 conv=notrunc 2>/dev/null
echo EEPROM-BEGIN; od -An -v -tx1 "$DEV/$BUS-0050/eeprom"; echo EEPROM-END
# What at24 wrote, read back over the bus (-f: the address has a driver now).
v=$(/usr/sbin/i2ctransfer -f -y "$BUS" w1@0x50 0x40 r4); echo "BACK=$v"; [ "$v" = "0x68 0x65 0x6c 0x6c" ]
# 24c04: offset 300 is block 1 (address 0x53), byte 0x2c.
printf 'block1' | dd of="$DEV/$BUS-0052/eeprom" bs=1 seek=300 conv=notrunc 2>/dev/null
v=$(/usr/sbin/i2ctransfer -f -y "$BUS" w1@0x53 0x2c r6); echo "BLOCK1=$v"
[ "$v" = "0x62 0x6c 0x6f 0x63 0x6b 0x31" ]
[ "$(wc -c < "$DEV/$BUS-0052/eeprom")" -eq 512 ]
# 24c32 (two address bytes, backed by a file on the host).
printf 'two-byte-addressing' | dd of="$DEV/$BUS-0054/eeprom" bs=1 seek=4000 conv=notrunc 2>/dev/null
echo BIG-BEGIN; od -An -v -tx1 -j 3996 -N 24 "$DEV/$BUS-0054/eeprom"; echo BIG-END

T=$(cat "$DEV/$BUS-0048"/hwmon/hwmon*/temp1_input); echo "TEMP=$T"
[ "$T" = 31500 ]
echo DETECT2-BEGIN
/usr/sbin/i2cdetect -y "$BUS"
echo DETECT2-END
"#;

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_i2c_sim_bus() {
    let image = GuestImage::locate().expect("guest rig not provisioned");
    let tmp = tempfile::tempdir().unwrap();
    let at24 = guest_module(&image, "nvmem/at24", tmp.path());
    let lm75 = guest_module(&image, "hwmon/lm75", tmp.path());
    let backing = tmp.path().join("24c32.bin");
    let list = format!(
        "sim:0x50=eeprom:256,sim:0x52=eeprom:512,sim:0x54=eeprom:4k:file={},sim:0x48=lm75:temp=31.5",
        backing.display()
    );
    let result = sim_bus("guest_i2c_sim_bus", &list)
        .guest_file(&at24, "/rig/at24.ko")
        .guest_file(&lm75, "/rig/lm75.ko")
        .guest_script(&format!("{FIND_BUS}{SCRIPT}"))
        .timeout(Duration::from_secs(120))
        .run()
        .expect("scenario could not start");
    result.assert_success();
    let out = &result.guest_output;

    // i2cdetect: exactly the configured addresses answer.
    assert_eq!(
        detected(out, "DETECT"),
        ["48", "50", "52", "53", "54"],
        "{out}"
    );
    // After binding, the kernel drivers own them.
    assert_eq!(
        detected(out, "DETECT2"),
        ["UU", "UU", "UU", "UU", "UU"],
        "{out}"
    );

    // at24's eeprom file holds everything written by either path.
    let mut expected = vec![0xffu8; 256];
    expected[0x10] = 0xab;
    expected[0x20] = 0x34;
    expected[0x21] = 0x12;
    expected[0x30] = 0xde;
    expected[0x31] = 0xad;
    expected[64..74].copy_from_slice(b"hello-at24");
    assert_eq!(od_bytes(&section(out, "EEPROM")), expected, "{out}");

    let mut big = vec![0xffu8; 4];
    big.extend_from_slice(b"two-byte-addressing");
    big.push(0xff);
    assert_eq!(od_bytes(&section(out, "BIG")), big, "{out}");
    // The file-backed chip kept it on the host.
    let file = std::fs::read(&backing).unwrap();
    assert_eq!(file.len(), 4096);
    assert_eq!(&file[4000..4019], b"two-byte-addressing");
}

/// A machine reset under a running guest (issue #17): the i2c-virtio
/// driver uses the simulated bus, the rig resets the machine through QMP, and
/// the next boot's driver uses the same daemon, over the same vhost-user
/// connection, again. The EEPROM is a chip on the host's bus, not part of
/// the virtio adapter, so what boot 1 wrote is still there in boot 2.
const RESET_SCRIPT: &str = r#"# Each boot writes its own byte and reads both.
/usr/sbin/i2cset -y "$BUS" 0x50 "0x1$RIG_BOOT" "0xa$RIG_BOOT"
echo "BOOT $RIG_BOOT READ $(/usr/sbin/i2cget -y "$BUS" 0x50 0x11) $(/usr/sbin/i2cget -y "$BUS" 0x50 0x12)"
v=$(/usr/sbin/i2ctransfer -y "$BUS" w1@0x50 0x11 r2); echo "BOOT $RIG_BOOT XFER $v"
[ "$RIG_BOOT" -gt 1 ] || rig_reset
echo "GUEST DONE"
"#;

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_i2c_works_after_a_machine_reset() {
    let result = sim_bus(
        "guest_i2c_works_after_a_machine_reset",
        "sim:0x50=eeprom:256",
    )
    .resets(1)
    .guest_script(&format!("{FIND_BUS}{RESET_SCRIPT}"))
    .timeout(Duration::from_secs(240))
    .run()
    .expect("scenario could not start");
    result.assert_success();
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
