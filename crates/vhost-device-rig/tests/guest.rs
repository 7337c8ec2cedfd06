// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The rig's own proof: real QEMU, real guest kernel, real guest tools.
//!
//! Every test here needs `rust-vmm-ci/guest/provision.sh` to have run, so
//! each is `#[ignore]`d and named `guest_*` or `host_kernel_*`; run them with
//! `rust-vmm-ci/guest/run-tests.sh` (or `cargo test -p vhost-device-rig --
//! --ignored --test-threads=1` after provisioning). Without provisioning they
//! fail: `Scenario::run` returns an error and `expect` panics.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use vhost_device_rig::{Image, Outcome, Scenario};

/// Modules the smoke scenario loads: in-tree ones our host-kernel tests need,
/// and the out-of-tree virtio drivers provisioning builds.
const SMOKE_MODULES: &[&str] = &[
    "vcan",
    "can-raw",
    "i2c-stub chip_addr=0x50",
    "i2c-dev",
    "gpio-sim",
    "snd-aloop",
    "virtio_snd",
    "virtio_gpu",
    "hci_vhci",
    "gpio-virtio",
    "i2c-virtio",
    "virtio_can",
    "virtio_bt",
    "virtio_rpmsg_bus",
    "rpmsg_char",
    "rpmsg_ctrl",
    "rpmsg_tty",
];

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_smoke() {
    let out = Scenario::new("guest_smoke")
        .modules(SMOKE_MODULES)
        .guest_script(
            r#"set -e
for m in vcan can_raw i2c_stub i2c_dev gpio_sim snd_aloop virtio_snd virtio_gpu hci_vhci \
         gpio_virtio i2c_virtio virtio_can virtio_bt virtio_rpmsg_bus rpmsg_char rpmsg_ctrl rpmsg_tty; do
    grep -q "^$m " /proc/modules || { echo "module $m is not loaded"; exit 1; }
done
echo "modules: ok"
/usr/sbin/i2cdetect -l | tee /tmp/i2c
grep -q 'SMBus stub' /tmp/i2c
bus=$(sed -n 's/^i2c-\([0-9]*\).*SMBus stub.*/\1/p' /tmp/i2c)
/usr/sbin/i2cset -y "$bus" 0x50 0x10 0xa5
[ "$(/usr/sbin/i2cget -y "$bus" 0x50 0x10)" = 0xa5 ]
echo "i2c-stub: ok"
chip=/sys/kernel/config/gpio-sim/rigchip
mkdir "$chip" "$chip/bank0"
echo 8 >"$chip/bank0/num_lines"
echo 1 >"$chip/live"
/usr/bin/gpiodetect | tee /tmp/gpio
grep -q '(8 lines)' /tmp/gpio
echo "gpio-sim: ok"
/usr/bin/aplay --version
/usr/bin/aplay -l | grep -q Loopback
echo "aplay: ok"
/usr/bin/ip link add dev vcan0 type vcan
/usr/bin/ip link set vcan0 up
/usr/bin/cansend vcan0 123#DEADBEEF
echo "cansend: ok"
for t in /usr/bin/modetest /usr/bin/hciconfig /usr/bin/btmgmt /usr/bin/candump; do
    [ -x "$t" ] || { echo "missing $t"; exit 1; }
done
/usr/bin/modetest -h >/dev/null 2>&1 || true
# Our own static helpers are there and run (no rpmsg device here: usage only).
if rig-rpmsg >/tmp/rpmsg 2>&1; then exit 1; fi
grep -q usage /tmp/rpmsg
[ -x /usr/bin/rig-fbcheck ] && [ -x /usr/bin/rig-screendump ] && [ -x /usr/bin/rig-fbfill ]
echo SMOKE-OK
"#,
        )
        .timeout(Duration::from_secs(90))
        .run()
        .expect("guest_smoke could not start");
    out.assert_success();
    assert!(out.guest_output.contains("SMOKE-OK"), "{}", out.report());
    // The budget is 10 s on an idle machine; the one-line report shows it.
    assert!(out.boot_to_script.is_some(), "{}", out.report());
}

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_screendump_console() {
    let out = Scenario::new("guest_screendump_console")
        .qemu_args(&["-device", "virtio-vga"])
        .guest_script(
            r#"set -e
i=0
while [ ! -e /dev/fb0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
[ -e /dev/fb0 ] || { echo "no /dev/fb0"; ls /sys/class/graphics /sys/class/drm; exit 1; }
cat /sys/class/graphics/fb0/name
echo "hello from the vhost-device guest rig" >/dev/tty1
rig-screendump console
rig-fbfill /dev/fb0 255
rig-fbcheck /dev/fb0
rig-screendump white
"#,
        )
        .timeout(Duration::from_secs(90))
        .run()
        .expect("guest_screendump_console could not start");
    out.assert_success();
    let console = Image::load(out.screendump("console").expect("console screendump")).unwrap();
    let cs = console.stats();
    assert!(cs.width >= 640 && cs.height >= 400, "{cs:?}");
    assert!(!cs.is_blank(), "console screendump is blank: {cs:?}");
    let white = Image::load(out.screendump("white").expect("white screendump")).unwrap();
    let ws = white.stats();
    let total = ws.width as usize * ws.height as usize;
    assert!(
        ws.non_black * 10 >= total * 9,
        "filled framebuffer mostly black: {ws:?}"
    );
    assert!(ws.non_black > cs.non_black, "{ws:?} vs {cs:?}");
    // The guest's own readback of the filled framebuffer: every pixel set.
    let line = out
        .guest_output
        .lines()
        .find(|l| l.starts_with("fb=/dev/fb0"))
        .unwrap_or_else(|| panic!("no rig-fbcheck line\n{}", out.report()));
    let field = |k: &str| -> u64 {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(k))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {k} in {line}"))
    };
    // (fbcon may still draw a cursor cell in between: allow 0.1 %.)
    assert!(
        field("nonzero=") * 1000 >= field("width=") * field("height=") * 999,
        "{line}"
    );
}

/// Host-kernel mode: this function runs twice. On the host it boots the guest
/// with vcan and runs itself there; in the guest it talks to the real vcan
/// driver through the socketcan crate.
#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn host_kernel_vcan_socketcan() {
    if vhost_device_rig::in_guest() {
        use socketcan::{CanFrame, CanSocket, EmbeddedFrame, Socket, StandardId};
        let rx = CanSocket::open("vcan0").unwrap();
        rx.set_read_timeout(Duration::from_secs(5)).unwrap();
        let tx = CanSocket::open("vcan0").unwrap();
        let frame =
            CanFrame::new(StandardId::new(0x123).unwrap(), &[0xde, 0xad, 0xbe, 0xef]).unwrap();
        tx.write_frame(&frame).unwrap();
        let got = rx.read_frame().unwrap();
        assert_eq!(got.id(), frame.id());
        assert_eq!(got.data(), frame.data());
        println!("in guest: vcan0 frame {:?} {:02x?}", got.id(), got.data());
        return;
    }
    let out = Scenario::host_test(
        "host_kernel_vcan_socketcan",
        std::env::current_exe().unwrap(),
        "host_kernel_vcan_socketcan",
    )
    .modules(&["vcan", "can-raw"])
    .guest_script("ip link add dev vcan0 type vcan\nip link set vcan0 up")
    .timeout(Duration::from_secs(90))
    .run()
    .expect("host_kernel_vcan_socketcan could not start");
    out.assert_success();
    assert!(
        out.guest_output.contains("in guest: vcan0 frame"),
        "{}",
        out.report()
    );
}

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_rig_reports_a_failing_script() {
    let out = Scenario::new("guest_rig_reports_a_failing_script")
        .expecting_failure()
        .guest_script("echo about to fail\nexit 1")
        .timeout(Duration::from_secs(60))
        .run()
        .expect("scenario could not start");
    assert!(!out.passed());
    assert_eq!(
        out.outcome,
        Outcome::GuestFailed { exit_code: 1 },
        "{}",
        out.report()
    );
    assert_eq!(out.exit_code, Some(1));
    assert!(out.guest_output.contains("about to fail"));
    let report = out.report();
    assert!(
        report.contains("FAILED (guest: script exited with 1)"),
        "{report}"
    );
    assert!(report.contains(&out.dir.display().to_string()));
    assert!(out.dir.join("serial.log").exists());
}

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_rig_reports_a_missing_module() {
    let out = Scenario::new("guest_rig_reports_a_missing_module")
        .expecting_failure()
        .modules(&["no_such_module_xyz"])
        .timeout(Duration::from_secs(60))
        .run()
        .expect("scenario could not start");
    assert_eq!(
        out.outcome,
        Outcome::GuestFailed { exit_code: 125 },
        "{}",
        out.report()
    );
}

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_rig_reports_a_timeout() {
    let timeout = Duration::from_secs(30);
    let out = Scenario::new("guest_rig_reports_a_timeout")
        .expecting_failure()
        .guest_script("echo hanging\nsleep 1000")
        .timeout(timeout)
        .run()
        .expect("scenario could not start");
    assert!(!out.passed());
    match out.outcome {
        Outcome::Timeout {
            after,
            script_started,
        } => {
            assert_eq!(after, timeout);
            // On a loaded machine the boot alone can take most of the
            // timeout; when the script did start, its output is there.
            if script_started {
                assert!(out.guest_output.contains("hanging"), "{}", out.report());
            }
        }
        ref other => panic!("expected a timeout, got {other}\n{}", out.report()),
    }
    assert!(
        out.duration < timeout + Duration::from_secs(10),
        "took {:?}",
        out.duration
    );
}

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_rig_reports_a_backend_that_never_listens() {
    let out = Scenario::new("guest_rig_reports_a_backend_that_never_listens")
        .expecting_failure()
        .backend(
            "/bin/sh",
            &["-c", "echo backend giving up on {sock} >&2; exit 3"],
        )
        .qemu_args(&["-chardev", "socket,id=c0,path={sock}"])
        .timeout(Duration::from_secs(60))
        .run()
        .expect("scenario could not start");
    match &out.outcome {
        Outcome::BackendFailed { backend, reason } => {
            assert_eq!(backend, "sh");
            assert!(reason.contains("status 3"), "{reason}");
        }
        other => panic!("expected a backend failure, got {other}\n{}", out.report()),
    }
    assert!(
        out.report().contains("backend giving up"),
        "{}",
        out.report()
    );
}

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_rig_reports_a_backend_dying_mid_run() {
    let out = Scenario::new("guest_rig_reports_a_backend_dying_mid_run")
        .expecting_failure()
        .backend_with(
            vhost_device_rig::Backend::new("/bin/sh")
                .args(&["-c", "sleep 4; echo backend crashed >&2; exit 2"])
                .no_socket_wait(),
        )
        .guest_script("sleep 120")
        .timeout(Duration::from_secs(60))
        .run()
        .expect("scenario could not start");
    match &out.outcome {
        Outcome::BackendFailed { reason, .. } => assert!(reason.contains("status 2"), "{reason}"),
        other => panic!("expected a backend failure, got {other}\n{}", out.report()),
    }
    assert!(
        out.duration < Duration::from_secs(30),
        "took {:?}",
        out.duration
    );
}

#[test]
fn unprovisioned_cache_is_an_error_not_a_pass() {
    // Runs without provisioning: a scenario pointed at an empty cache must
    // refuse to run.
    let dir = tempfile::tempdir().unwrap();
    let err = vhost_device_rig::GuestImage::from_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("not provisioned"), "{err}");
}

#[test]
fn missing_backend_binary_is_a_setup_error() {
    // A missing backend binary is detected before anything starts.
    let image = vhost_device_rig::GuestImage {
        qemu: "/bin/false".into(),
        kernel: "/bin/false".into(),
        initrd: "/bin/false".into(),
        kernel_release: String::new(),
        accel: "tcg".into(),
        root: "/r".into(),
        gl_overlay: None,
    };
    let err = Scenario::new("expected_setup_error")
        .expecting_failure()
        .image(image)
        .backend("vhost-device-does-not-exist", &["--socket-path", "{sock}"])
        .run()
        .unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
}

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_rig_builds_and_loads_a_module() {
    // A device test can ship its own probe module: built against the guest
    // kernel's headers inside the provisioned root, loaded with insmod.
    let image = vhost_device_rig::GuestImage::locate().expect("guest rig not provisioned");
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("Kbuild"), "obj-m += rig_hello.o\n").unwrap();
    std::fs::write(
        src.path().join("rig_hello.c"),
        "#include <linux/module.h>\n\
         static int __init rig_hello_init(void) { pr_info(\"rig_hello: loaded\\n\"); return 0; }\n\
         static void __exit rig_hello_exit(void) {}\n\
         module_init(rig_hello_init);\nmodule_exit(rig_hello_exit);\n\
         MODULE_LICENSE(\"GPL\");\nMODULE_DESCRIPTION(\"rig test module\");\n",
    )
    .unwrap();
    let out_dir = tempfile::tempdir().unwrap();
    let built = image.build_modules(src.path(), out_dir.path()).unwrap();
    assert_eq!(built.len(), 1, "{built:?}");
    let at24 = image.extract_module("at24", out_dir.path()).unwrap();
    let out = Scenario::new("guest_rig_builds_and_loads_a_module")
        .guest_file(&built[0], "/rig/rig_hello.ko")
        .guest_file(&at24, "/rig/at24-copy.ko")
        .guest_script("set -e\ninsmod /rig/rig_hello.ko\ngrep -q '^rig_hello ' /proc/modules\nmodprobe at24\necho MODULE-OK")
        .timeout(Duration::from_secs(90))
        .run()
        .expect("scenario could not start");
    out.assert_success();
    assert!(out.guest_output.contains("MODULE-OK"), "{}", out.report());
}

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_rig_resets_the_machine_and_runs_the_script_again() {
    let out = Scenario::new("guest_rig_resets_the_machine_and_runs_the_script_again")
        .resets(1)
        .guest_script(
            r#"set -e
echo "BOOT $RIG_BOOT UPTIME $(cut -d' ' -f1 /proc/uptime) ID $(cat /proc/sys/kernel/random/boot_id)"
if [ "$RIG_BOOT" = 1 ]; then
    rig_reset
fi
# A reset beyond the declared one is refused, and the script goes on.
if rig_request reset ok; then echo "SECOND RESET ACCEPTED"; exit 1; fi
echo "SECOND RESET REFUSED"
"#,
        )
        .timeout(Duration::from_secs(180))
        .run()
        .expect("scenario could not start");
    out.assert_success();
    assert_eq!(out.resets, 1, "{}", out.report());
    let boots: Vec<&str> = out
        .guest_output
        .lines()
        .filter(|l| l.starts_with("BOOT "))
        .collect();
    assert_eq!(boots.len(), 2, "{}", out.guest_output);
    assert!(boots[0].starts_with("BOOT 1 "), "{boots:?}");
    assert!(boots[1].starts_with("BOOT 2 "), "{boots:?}");
    // A fresh kernel: a new boot id.
    let id = |l: &str| l.rsplit(' ').next().unwrap().to_owned();
    assert_ne!(id(boots[0]), id(boots[1]), "{boots:?}");
    assert!(out.guest_output.contains("SECOND RESET REFUSED"));
    assert_eq!(out.serial_log.matches("@@RIG-START").count(), 2);
    let control = std::fs::read_to_string(out.dir.join("control.log")).unwrap();
    assert!(control.contains("rig: system_reset done"), "{control}");
}

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_rig_fails_a_script_that_skips_its_reset() {
    let out = Scenario::new("guest_rig_fails_a_script_that_skips_its_reset")
        .expecting_failure()
        .resets(1)
        .guest_script("echo forgot to reset\nexit 0")
        .timeout(Duration::from_secs(90))
        .run()
        .expect("scenario could not start");
    assert_eq!(
        out.outcome,
        Outcome::GuestFailed {
            exit_code: vhost_device_rig::scenario::EARLY_END
        },
        "{}",
        out.report()
    );
    assert_eq!(out.resets, 0);
    assert!(
        out.guest_output.contains("before its 1 reset(s)"),
        "{}",
        out.guest_output
    );
}
