// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Guest scenario of the virgl mode: a Linux guest's Mesa virgl driver
//! renders through QEMU's vhost-user-gpu-pci on this daemon, which runs
//! the guest's GL on the host's virglrenderer.
//!
//! The guest runs `rig-gltri` (`rust-vmm-ci/guest/gl/rig-gltri.c`, in the
//! rig's GL overlay): GBM + EGL + GLES2 on the virtio-gpu card, a clear
//! and a triangle, checked with glReadPixels in the guest, then shown with
//! a KMS mode set and checked again in a QMP screendump on the host.
//!
//! Needs the daemon built with `--features virgl,rutabaga_gfx/virgl_renderer`
//! and virglrenderer's library on `LD_LIBRARY_PATH`
//! (`rust-vmm-ci/virgl/provision.sh`); `rust-vmm-ci/guest/run-tests.sh`
//! provisions it and runs this file.

#![cfg(feature = "virgl")]
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use vhost_device_common::testing::default_seccomp_mode;
use vhost_device_common::SeccompMode;
use vhost_device_rig::{Backend, Image, Scenario};

const BIN: &str = env!("CARGO_BIN_EXE_vhost-device-gpu");

/// rig-gltri's colours (RGB).
const CLEAR: [u8; 3] = [0x20, 0x60, 0xa0];
const TRI: [u8; 3] = [0xf0, 0xc0, 0x10];

/// Waits for the card, shows that virgl was negotiated (debugfs and the
/// driver's probe line), then draws and takes the screendump while the
/// picture is shown.
const SCRIPT: &str = r#"
set -e
i=0
while [ ! -e /dev/dri/renderD128 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
ls /dev/dri
dmesg | grep -i 'virgl' || true
features=$(cat "$(ls /sys/kernel/debug/dri/*/virtio-gpu-features | head -n1)")
echo "$features"
echo "$features" | grep -Eq '^virgl +: +yes' || { echo "virgl not negotiated"; exit 10; }
export MESA_SHADER_CACHE_DISABLE=true
# QEMU draws the daemon's UPDATE from its main loop, which may take the
# screendump request first: give it a moment, as the 2D scenarios do.
rig-gltri -d /dev/dri/card0 -r virgl -x 'sleep 1; rig-screendump gl' -f 10
"#;

/// The point of the screen at normalised device coordinates (`nx`, `ny`)
/// of a `w` x `h` picture (GL's y goes up, the screen's down).
fn at(nx: f32, ny: f32, w: u32, h: u32) -> (u32, u32) {
    let x = (nx + 1.0) / 2.0 * w as f32;
    let y = (1.0 - ny) / 2.0 * h as f32;
    (x as u32, y as u32)
}

#[test]
#[ignore = "guest rig + virglrenderer: run via rust-vmm-ci/guest/run-tests.sh"]
fn guest_virgl_gles_triangle_on_the_scanout() {
    // The README's virgl QEMU line: QEMU's vhost-user-gpu-pci takes VIRGL
    // from the daemon's features, it has no virgl property of its own.
    let mut backend = Backend::new(BIN)
        .args(&["--socket-path", "{sock}", "--gpu-mode", "virgl"])
        .env("RUST_LOG", "info,vhost_device_gpu=debug");
    if let Ok(path) = std::env::var("LD_LIBRARY_PATH") {
        backend = backend.env("LD_LIBRARY_PATH", &path);
    }
    let out = Scenario::new("guest_virgl_gles_triangle_on_the_scanout")
        .backend_with(backend)
        .qemu_args(&[
            "-chardev",
            "socket,id=vgpu,path={sock}",
            "-device",
            "vhost-user-gpu-pci,chardev=vgpu",
        ])
        .gl()
        .memory_mb(1024)
        .guest_script(SCRIPT)
        .timeout(Duration::from_secs(240))
        .run()
        .unwrap_or_else(|e| panic!("scenario could not start: {e}"));
    out.assert_success();
    let report = out.report();
    let output = &out.guest_output;

    // The guest's GL ran on virgl, not on a software fallback in the guest.
    let renderer = output
        .lines()
        .find_map(|l| l.strip_prefix("renderer: "))
        .unwrap_or_else(|| panic!("no renderer line\n{report}"));
    assert!(
        renderer.starts_with("virgl"),
        "renderer {renderer}\n{report}"
    );
    // Every point rig-gltri read back matched.
    let pixels: Vec<&str> = output.lines().filter(|l| l.starts_with("pixel ")).collect();
    assert_eq!(pixels.len(), 5, "{report}");
    assert!(pixels.iter().all(|l| l.ends_with(" ok")), "{report}");
    assert!(output.contains("result: ok"), "{report}");
    // 10 more frames, each a new buffer on the CRTC: the guest's frame
    // rate through the whole stack (a figure, not a target).
    let frames = output
        .lines()
        .find(|l| l.starts_with("frames: 10 in "))
        .unwrap_or_else(|| panic!("no frame rate\n{report}"));
    eprintln!("rig-gltri {frames}");

    // The host did the rendering: the daemon ran the guest's command streams.
    let log =
        std::fs::read_to_string(out.dir.join("backend-0-vhost-device-gpu.log")).unwrap_or_default();
    let submits = log.matches("SUBMIT_3D").count();
    assert!(submits > 0, "no SUBMIT_3D in the daemon's log\n{report}");
    eprintln!("daemon ran {submits} SUBMIT_3D commands");
    // QEMU's exit ended the connection: virglrenderer was put away on its
    // own thread (an EGL error or libepoxy's abort would show here).
    for bad in [
        "EGL_BAD_ACCESS",
        "Assertion",
        "seccomp: forbidden system call",
    ] {
        assert!(!log.contains(bad), "{bad} in the daemon's log\n{report}");
    }
    // virglrenderer and Mesa ran under the virgl mode's seccomp list, in
    // kill mode unless the environment chose otherwise.
    let installed = match default_seccomp_mode() {
        SeccompMode::None => "seccomp: no filter".to_owned(),
        mode => format!("seccomp: allow-list installed (--seccomp {mode:?})"),
    };
    assert!(
        log.contains(&installed),
        "no {installed:?} in the daemon's log\n{report}"
    );

    // The screendump shows the picture the right way up: the triangle's
    // apex at the top, its wide base below.
    let img = Image::load(
        out.screendump("gl")
            .unwrap_or_else(|| panic!("no screendump\n{report}")),
    )
    .unwrap();
    let (w, h) = (img.width, img.height);
    for (name, nx, ny, want) in [
        ("corner", 0.9, 0.9, CLEAR),
        ("centre", 0.0, -0.2, TRI),
        ("apex", 0.0, 0.4, TRI),
        ("low-right", 0.25, -0.2, TRI),
        ("high-right", 0.25, 0.2, CLEAR),
        ("below the base", 0.0, -0.7, CLEAR),
    ] {
        let (x, y) = at(nx, ny, w, h);
        assert_eq!(
            img.pixel(x, y),
            Some(want),
            "screendump {w}x{h}: {name} at ({x}, {y})\n{report}"
        );
    }
}
