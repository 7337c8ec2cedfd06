// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The demo's optional virgl step (`cargo xtask demo --virgl`): the gpu
//! daemon in virgl mode, on the host's virglrenderer, and the guest's Mesa
//! drawing a GLES triangle through it with `rig-gltri` (the rig's GL
//! overlay). It needs virglrenderer 1.3 (`rust-vmm-ci/virgl/provision.sh`,
//! cached) and a gpu build with the virgl features, which this module
//! makes beside the default one, so the default binary stays 2D.

use std::path::{Path, PathBuf};
use std::process::Command;

use vhost_device_rig::screen::Image;

use super::host::Saw;
use crate::{built_binary, workspace_root};

/// The cargo features of a gpu daemon that renders with virglrenderer.
const FEATURES: &str = "virgl,rutabaga_gfx/virgl_renderer";
/// rig-gltri's triangle colour (RGB), and a point inside it, in normalised
/// device coordinates.
const TRI: [u8; 3] = [0xf0, 0xc0, 0x10];
const INSIDE: (f32, f32) = (0.0, -0.2);

/// A gpu daemon built for virgl, and the library path it runs with.
#[derive(Debug, Clone)]
pub struct VirglGpu {
    pub binary: PathBuf,
    pub ld_library_path: String,
}

/// What the row says when the step is left out.
pub const SKIPPED: &str = "skipped: `cargo xtask demo --virgl` adds it (virglrenderer 1.3 from \
    rust-vmm-ci/virgl/provision.sh and a virgl build of the gpu)";

/// The variables `rust-vmm-ci/virgl/provision.sh` exports (it provisions
/// once, then answers from its cache).
fn virgl_env() -> Result<(String, String), String> {
    let script = workspace_root().join("rust-vmm-ci/virgl/provision.sh");
    let out = Command::new("bash")
        .arg("-c")
        .arg(r#"eval "$("$0")" && printf '%s\n%s\n' "$PKG_CONFIG_PATH" "$LD_LIBRARY_PATH""#)
        .arg(&script)
        .output()
        .map_err(|e| format!("{}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    match (lines.next(), lines.next()) {
        (Some(pkg), Some(ld)) if !ld.is_empty() => Ok((pkg.to_owned(), ld.to_owned())),
        _ => Err(format!("{} printed no library path", script.display())),
    }
}

fn cargo_build(features: Option<&str>, pkg_config_path: &str) -> Result<(), String> {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "vhost-device-gpu",
        "--bin",
        "vhost-device-gpu",
    ])
    .env("PKG_CONFIG_PATH", pkg_config_path);
    if let Some(f) = features {
        cmd.args(["--features", f]);
    }
    let status = cmd.status().map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo build of the gpu ({features:?}): {status}"))
    }
}

/// Provisions virglrenderer (cached), builds the gpu with virgl into
/// `demo-virgl/` of the profile directory, and rebuilds the default one
/// (both builds stay cached: only the first takes minutes).
pub fn prepare() -> Result<VirglGpu, String> {
    eprintln!("demo: virgl: virglrenderer (rust-vmm-ci/virgl/provision.sh, cached)");
    let (pkg_config_path, ld_library_path) = virgl_env()?;
    eprintln!("demo: virgl: building vhost-device-gpu --features {FEATURES}");
    cargo_build(Some(FEATURES), &pkg_config_path)?;
    let built = built_binary("vhost-device-gpu")?;
    let dir = built
        .parent()
        .ok_or("no profile directory")?
        .join("demo-virgl");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let binary = dir.join("vhost-device-gpu");
    std::fs::copy(&built, &binary).map_err(|e| format!("{}: {e}", binary.display()))?;
    // The default binary is the 2D one every other test starts.
    cargo_build(None, &pkg_config_path)?;
    Ok(VirglGpu {
        binary,
        ld_library_path,
    })
}

/// The host's side: the daemon ran the guest's GL command streams
/// (SUBMIT_3D in its debug log), and the screendump taken while the
/// picture was shown has the triangle where GL put it.
pub fn check(gpu_log: &Path, png: Option<&Path>) -> Saw {
    let log = std::fs::read_to_string(gpu_log).unwrap_or_default();
    let submits = log.matches("SUBMIT_3D").count();
    if submits == 0 {
        return Saw::failed(format!("no SUBMIT_3D in {}", gpu_log.display()));
    }
    let Some(png) = png else {
        return Saw::failed(format!("{submits} SUBMIT_3D, but no screendump"));
    };
    let image = match Image::load(png) {
        Ok(i) => i,
        Err(e) => return Saw::failed(e.to_string()),
    };
    let (w, h) = (image.width, image.height);
    let x = ((INSIDE.0 + 1.0) / 2.0 * w as f32) as u32;
    let y = ((1.0 - INSIDE.1) / 2.0 * h as f32) as u32;
    let text = format!(
        "the daemon ran {submits} SUBMIT_3D on virglrenderer; virgl.png {w}x{h}: {:02x?} inside the triangle",
        image.pixel(x, y)
    );
    if image.pixel(x, y) == Some(TRI) {
        Saw::ok(text)
    } else {
        Saw::failed(text)
    }
}
