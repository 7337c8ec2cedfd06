// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Guest scenarios: a Linux guest's virtio_gpu driver, through QEMU's
//! vhost-user-gpu-pci / vhost-user-vga, on this daemon; screendumps
//! checked on the host pixel by pixel.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use vhost_device_rig::{Image, Scenario, ScenarioResult};

const BIN: &str = env!("CARGO_BIN_EXE_vhost-device-gpu");
const TIMEOUT: Duration = Duration::from_secs(240);

/// Waits for the DRM output and /dev/fb0, checks the connector is
/// connected, prints the framebuffer geometry.
const WAIT_FB: &str = r#"
set -e
wait_fb() {
    i=0
    while [ ! -e "$1" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
    [ -e "$1" ] || { echo "no $1"; ls /sys/class/graphics /sys/class/drm; dmesg | tail -30; exit 1; }
}
wait_fb /dev/fb0
status=$(cat /sys/class/drm/card*-Virtual-1/status)
echo "connector: $status"
[ "$status" = connected ]
echo "fb: $(cat /sys/class/graphics/fb0/name) $(cat /sys/class/graphics/fb0/virtual_size) stride $(cat /sys/class/graphics/fb0/stride)"
echo 0 > /sys/class/graphics/fbcon/cursor_blink 2>/dev/null || true
"#;

/// Writes eight vertical colour bars (white, yellow, cyan, green, magenta,
/// red, blue, black; B,G,R,X bytes) to /dev/fb0.
const COLOUR_BARS: &str = r#"
size=$(cat /sys/class/graphics/fb0/virtual_size)
W=${size%,*}; H=${size#*,}
stride=$(cat /sys/class/graphics/fb0/stride)
bw=$((W / 8))
: > /tmp/row
for c in '377 377 377' '000 377 377' '377 377 000' '000 377 000' '377 000 377' '000 000 377' '377 000 000' '000 000 000'; do
    set -- $c
    printf "\\$1\\$2\\$3\\000" > /tmp/px
    i=0
    while [ $i -lt 12 ]; do cat /tmp/px /tmp/px > /tmp/px2; mv /tmp/px2 /tmp/px; i=$((i+1)); done
    head -c $((bw * 4)) /tmp/px >> /tmp/row
done
head -c $((stride - bw * 32)) /dev/zero >> /tmp/row
cp /tmp/row /tmp/img
n=1
while [ $n -lt $H ]; do cat /tmp/img /tmp/img > /tmp/img2; mv /tmp/img2 /tmp/img; n=$((n * 2)); done
head -c $((stride * H)) /tmp/img > /dev/fb0
rm -f /tmp/img /tmp/row /tmp/px
# fbdev emulation flushes damage from a worker.
sleep 2
"#;

const BARS: [[u8; 3]; 8] = [
    [255, 255, 255],
    [255, 255, 0],
    [0, 255, 255],
    [0, 255, 0],
    [255, 0, 255],
    [255, 0, 0],
    [0, 0, 255],
    [0, 0, 0],
];

fn run(name: &str, daemon_args: &[&str], qemu_device: &str, script: &str) -> ScenarioResult {
    run_scenario(scenario(name, daemon_args, qemu_device, script))
}

/// The daemon with `daemon_args` behind QEMU's `qemu_device`, running
/// `script`.
fn scenario(name: &str, daemon_args: &[&str], qemu_device: &str, script: &str) -> Scenario {
    let mut args = vec!["--socket-path", "{sock}"];
    args.extend_from_slice(daemon_args);
    Scenario::new(name)
        .backend(BIN, &args)
        .qemu_args(&[
            "-chardev",
            "socket,id=vgpu,path={sock}",
            "-device",
            qemu_device,
        ])
        .guest_script(script)
        .timeout(TIMEOUT)
}

/// Runs `scenario`, which must pass.
fn run_scenario(scenario: Scenario) -> ScenarioResult {
    let out = scenario
        .run()
        .unwrap_or_else(|e| panic!("scenario could not start: {e}"));
    out.assert_success();
    out
}

fn image(out: &ScenarioResult, name: &str) -> Image {
    let path = out
        .screendump(name)
        .unwrap_or_else(|| panic!("no screendump {name}\n{}", out.report()));
    Image::load(path).unwrap()
}

/// Checks the colour bars pixel by pixel: every pixel of the rows sampled,
/// away from the bar edges and from fbcon's top-left corner.
fn assert_bars(img: &Image, out: &ScenarioResult) {
    let bw = img.width / 8;
    for y in [img.height / 3, img.height / 2, img.height - 2] {
        for (i, colour) in BARS.iter().enumerate() {
            let x0 = i as u32 * bw;
            for x in x0 + 2..x0 + bw - 2 {
                let px = img.pixel(x, y).unwrap();
                assert_eq!(px, *colour, "pixel ({x}, {y}) in bar {i}\n{}", out.report());
            }
        }
    }
}

fn fb_size(out: &ScenarioResult) -> (u32, u32) {
    let line = out
        .guest_output
        .lines()
        .find_map(|l| l.strip_prefix("fb: "))
        .unwrap_or_else(|| panic!("no fb line\n{}", out.report()));
    let size = line.split_whitespace().nth(1).unwrap();
    let (w, h) = size.split_once(',').unwrap();
    (w.parse().unwrap(), h.parse().unwrap())
}

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_gpu_pci_console_and_colour_bars() {
    let script = format!(
        "{WAIT_FB}
printf '\\033[2J\\033[H' > /dev/tty1
i=0
while [ $i -lt 20 ]; do echo \"vhost-device-gpu console line $i: The quick brown fox\" > /dev/tty1; i=$((i+1)); done
sleep 1
rig-screendump console
{COLOUR_BARS}
rig-screendump bars
"
    );
    let out = run(
        "guest_gpu_pci_console_and_colour_bars",
        &[],
        "vhost-user-gpu-pci,chardev=vgpu",
        &script,
    );
    let (w, h) = fb_size(&out);
    let console = image(&out, "console");
    assert_eq!((console.width, console.height), (w, h));
    let stats = console.stats();
    // fbcon's text: some light pixels on black, in few colours.
    let total = (w * h) as usize;
    assert!(
        stats.non_black > 1000 && stats.non_black < total / 2,
        "console does not look like text: {stats:?}\n{}",
        out.report()
    );
    let bars = image(&out, "bars");
    assert_eq!((bars.width, bars.height), (w, h));
    assert_bars(&bars, &out);
}

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_gpu_vga_colour_bars() {
    let script = format!("{WAIT_FB}\n{COLOUR_BARS}\nrig-screendump bars\n");
    let out = run(
        "guest_gpu_vga_colour_bars",
        &[],
        "vhost-user-vga,chardev=vgpu",
        &script,
    );
    let bars = image(&out, "bars");
    assert_eq!((bars.width, bars.height), fb_size(&out));
    assert_bars(&bars, &out);
}

/// A machine reset after the colour bars (issue #17): the next boot's driver
/// creates its resources again, with the same ids, and shows the bars
/// again, through the same daemon and connection.
#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_gpu_colour_bars_after_a_machine_reset() {
    let script = format!(
        "{WAIT_FB}\n{COLOUR_BARS}\nrig-screendump \"bars-$RIG_BOOT\"\n\
         [ \"$RIG_BOOT\" -gt 1 ] || rig_reset\n"
    );
    let out = run_scenario(
        scenario(
            "guest_gpu_colour_bars_after_a_machine_reset",
            &[],
            "vhost-user-gpu-pci,chardev=vgpu",
            &script,
        )
        .resets(1),
    );
    for name in ["bars-1", "bars-2"] {
        let bars = image(&out, name);
        assert_eq!((bars.width, bars.height), fb_size(&out), "{name}");
        assert_bars(&bars, &out);
    }
}

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_gpu_mode_change() {
    // modetest sets 1024x768 on the output with its own test pattern, and
    // shows it until its stdin (a sleep) ends.
    let script = format!(
        "{WAIT_FB}
conn=$(modetest -M virtio_gpu -c | awk '/Virtual-1/ {{print $1; exit}}')
echo \"connector id $conn\"
sleep 40 | modetest -M virtio_gpu -s \"$conn:1024x768\" > /tmp/modetest.log 2>&1 &
pid=$!
# modetest's output is buffered: watch the kernel's atomic state instead.
i=0
while ! grep -q '1024x768' /sys/kernel/debug/dri/*/state 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
grep -q '1024x768' /sys/kernel/debug/dri/*/state || {{ echo 'mode never set'; exit 1; }}
sleep 2
rig-screendump mode
kill $pid
sleep 1
cat /tmp/modetest.log
"
    );
    let out = run(
        "guest_gpu_mode_change",
        &[],
        "vhost-user-gpu-pci,chardev=vgpu",
        &script,
    );
    let img = image(&out, "mode");
    assert_eq!(
        (img.width, img.height),
        (1024, 768),
        "the scanout did not change mode\n{}",
        out.report()
    );
    let stats = img.stats();
    assert!(
        stats.distinct_colors >= 8 && stats.non_black > (1024 * 768) / 2,
        "modetest's pattern is missing: {stats:?}\n{}",
        out.report()
    );
}

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_gpu_driver_rebind_brings_the_display_back() {
    // Unbinding resets the device: QEMU stops the backend and, on the next
    // DRIVER_OK, hands over a new display socket. The daemon must start the
    // new driver from a clean state and show its frames.
    let script = format!(
        "{WAIT_FB}
rig-fbfill /dev/fb0 64
sleep 2
rig-screendump before
dev=$(ls /sys/bus/virtio/drivers/virtio_gpu/ | grep '^virtio' | head -1)
echo \"virtio device $dev\"
echo $dev > /sys/bus/virtio/drivers/virtio_gpu/unbind
sleep 1
[ ! -e /sys/class/drm/card0-Virtual-1 ] || echo 'still bound?'
echo $dev > /sys/bus/virtio/drivers/virtio_gpu/bind
i=0
while ! cat /sys/class/drm/card*-Virtual-1/status 2>/dev/null | grep -q connected && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
fb=$(ls -d /sys/class/graphics/fb* | head -1)
echo \"after rebind: $(basename $fb)\"
wait_fb /dev/$(basename $fb)
rig-fbfill /dev/$(basename $fb) 200
sleep 2
rig-screendump after
"
    );
    let out = run(
        "guest_gpu_driver_rebind_brings_the_display_back",
        &[],
        "vhost-user-gpu-pci,chardev=vgpu",
        &script,
    );
    for (name, value) in [("before", 64u8), ("after", 200)] {
        let img = image(&out, name);
        let total = (img.width * img.height) as usize;
        let filled = img.rgb.iter().filter(|p| **p == [value; 3]).count();
        assert!(
            filled * 10 >= total * 9,
            "{name}: only {filled} of {total} pixels are {value}\n{}",
            out.report()
        );
    }
}

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_gpu_headless_two_scanouts() {
    // Headless: no display socket is used, the guest's modes come from
    // --resolution, one per scanout. QEMU (which owns num_scanouts) is
    // told max_outputs=2 so the guest sees both.
    let script = format!(
        "{WAIT_FB}
echo \"second: $(cat /sys/class/drm/card*-Virtual-2/status) $(head -1 /sys/class/drm/card*-Virtual-2/modes)\"
rig-fbfill /dev/fb0 255
conn=$(modetest -M virtio_gpu -c | awk '/Virtual-2/ {{print $1; exit}}')
sleep 2 | modetest -M virtio_gpu -s \"$conn:640x480\" > /tmp/modetest.log 2>&1
cat /tmp/modetest.log
! grep -qi 'failed' /tmp/modetest.log
"
    );
    let out = run(
        "guest_gpu_headless_two_scanouts",
        &[
            "--headless",
            "--resolution",
            "800x600",
            "--resolution",
            "640x480",
        ],
        "vhost-user-gpu-pci,chardev=vgpu,max_outputs=2",
        &script,
    );
    assert_eq!(fb_size(&out), (800, 600), "{}", out.report());
    assert!(
        out.guest_output.contains("second: connected 640x480"),
        "{}",
        out.report()
    );
}
