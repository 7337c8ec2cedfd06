// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Finding the provisioned guest: QEMU wrapper, kernel and initramfs.
//!
//! `rust-vmm-ci/guest/provision.sh` writes `KEY=VALUE` lines to
//! `${VHOST_DEVICE_CACHE:-$HOME/.cache/vhost-device}/guest/env`; this module
//! reads them back.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::Error;

/// The pieces of a provisioned guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestImage {
    /// Wrapper script that runs the provisioned `qemu-system-x86_64`.
    pub qemu: PathBuf,
    /// The guest kernel (`vmlinuz`).
    pub kernel: PathBuf,
    /// The base initramfs (gzip-compressed newc cpio).
    pub initrd: PathBuf,
    /// The guest kernel release, e.g. `7.3.4+deb13-amd64`.
    pub kernel_release: String,
    /// Accelerator that a probe boot found working: `tcg` or `kvm`.
    pub accel: String,
    /// The trixie root QEMU runs from; it also has gcc and the kernel
    /// headers, for [`GuestImage::build_modules`].
    pub root: PathBuf,
    /// The optional GL overlay (uncompressed cpio with Mesa and
    /// `rig-gltri`) that [`crate::Scenario::gl`] scenarios append; `None`
    /// when provisioning did not record one.
    pub gl_overlay: Option<PathBuf>,
}

/// The directory provisioning caches into.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("VHOST_DEVICE_CACHE") {
        return PathBuf::from(dir).join("guest");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache").join("vhost-device").join("guest")
}

/// Parses the `KEY=VALUE` lines of a provisioning `env` file.
pub fn parse_env_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

impl GuestImage {
    /// Locates the provisioned guest in [`cache_dir`].
    ///
    /// # Errors
    /// [`Error::NotProvisioned`] when provisioning has not run or its output is
    /// incomplete; the message says how to provision.
    pub fn locate() -> Result<Self, Error> {
        Self::from_dir(&cache_dir())
    }

    /// Locates a provisioned guest in `dir` (the `guest` cache directory).
    ///
    /// # Errors
    /// [`Error::NotProvisioned`] when `dir/env` is missing or names files that
    /// do not exist.
    pub fn from_dir(dir: &Path) -> Result<Self, Error> {
        let env_path = dir.join("env");
        let text = std::fs::read_to_string(&env_path).map_err(|e| {
            Error::NotProvisioned(format!(
                "cannot read {}: {e}; run rust-vmm-ci/guest/provision.sh first",
                env_path.display()
            ))
        })?;
        let env = parse_env_file(&text);
        let get = |key: &str| -> Result<PathBuf, Error> {
            let value = env.get(key).ok_or_else(|| {
                Error::NotProvisioned(format!(
                    "{} has no {key}; re-run rust-vmm-ci/guest/provision.sh",
                    env_path.display()
                ))
            })?;
            let path = PathBuf::from(value);
            if path.exists() {
                Ok(path)
            } else {
                Err(Error::NotProvisioned(format!(
                    "{key}={} does not exist; re-run rust-vmm-ci/guest/provision.sh",
                    path.display()
                )))
            }
        };
        Ok(Self {
            qemu: get("VHOST_DEVICE_GUEST_QEMU")?,
            kernel: get("VHOST_DEVICE_GUEST_KERNEL")?,
            initrd: get("VHOST_DEVICE_GUEST_INITRD")?,
            kernel_release: env
                .get("VHOST_DEVICE_GUEST_KVER")
                .cloned()
                .unwrap_or_default(),
            accel: env
                .get("VHOST_DEVICE_GUEST_ACCEL")
                .cloned()
                .unwrap_or_else(|| "tcg".to_owned()),
            root: env
                .get("VHOST_DEVICE_GUEST_ROOT")
                .map_or_else(|| dir.join("root"), PathBuf::from),
            gl_overlay: env
                .get("VHOST_DEVICE_GUEST_GL_OVERLAY")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        })
    }

    /// The guest kernel's full module tree (`.../lib/modules/<release>`);
    /// the initramfs carries only the modules `modules.list` names.
    pub fn modules_dir(&self) -> PathBuf {
        self.kernel
            .parent()
            .map_or_else(PathBuf::new, Path::to_path_buf)
            .join("lib/modules")
            .join(&self.kernel_release)
    }

    /// Finds module `name` (`-` and `_` are the same) in the full module tree.
    pub fn find_module(&self, name: &str) -> Option<PathBuf> {
        let want = name.replace('-', "_");
        let mut stack = vec![self.modules_dir()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.filter_map(Result::ok) {
                let path = e.path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let file = e.file_name().to_string_lossy().replace('-', "_");
                let stem = [".ko", ".ko.xz", ".ko.zst", ".ko.gz"]
                    .iter()
                    .find_map(|ext| file.strip_suffix(ext));
                if stem == Some(want.as_str()) {
                    return Some(path);
                }
            }
        }
        None
    }

    /// Copies module `name` from the full module tree into `out_dir` as a
    /// plain `.ko`, for a scenario to ship with [`crate::Scenario::guest_file`]
    /// and `insmod` (its dependencies must already be loaded).
    ///
    /// # Errors
    /// When the module does not exist or cannot be decompressed.
    pub fn extract_module(&self, name: &str, out_dir: &Path) -> Result<PathBuf, Error> {
        let src = self.find_module(name).ok_or_else(|| {
            Error::Config(format!(
                "the guest kernel has no module {name} under {}",
                self.modules_dir().display()
            ))
        })?;
        let out = out_dir.join(format!("{}.ko", name.replace('-', "_")));
        let file = src.to_string_lossy().into_owned();
        let tool = match src.extension().and_then(|x| x.to_str()) {
            Some("xz") => Some("xz"),
            Some("zst") => Some("zstd"),
            Some("gz") => Some("gzip"),
            _ => None,
        };
        match tool {
            None => {
                std::fs::copy(&src, &out).map_err(Error::io("copying a module"))?;
            }
            Some(tool) => {
                let data = std::process::Command::new(tool)
                    .arg("-dc")
                    .arg(&src)
                    .output()
                    .map_err(Error::io(&format!("running {tool}")))?;
                if !data.status.success() {
                    return Err(Error::Config(format!("{tool} -dc {file} failed")));
                }
                std::fs::write(&out, data.stdout).map_err(Error::io("writing a module"))?;
            }
        }
        Ok(out)
    }

    /// Builds the out-of-tree kernel module(s) in `src_dir` (a `Kbuild` or
    /// `Makefile` plus sources) against the guest kernel's headers, inside the
    /// provisioned root (its gcc matches the kernel's), and copies the
    /// resulting `.ko` files to `out_dir`. Needs root (chroot).
    ///
    /// # Errors
    /// When the build fails; the message carries its output.
    pub fn build_modules(&self, src_dir: &Path, out_dir: &Path) -> Result<Vec<PathBuf>, Error> {
        let name = format!("rig-kmod-{}-{}", std::process::id(), unique());
        let host_build = self.root.join("tmp").join(&name);
        let _ = std::fs::remove_dir_all(&host_build);
        std::fs::create_dir_all(&host_build).map_err(Error::io("creating the module build dir"))?;
        let result = (|| {
            for e in std::fs::read_dir(src_dir)
                .map_err(Error::io(&format!("reading {}", src_dir.display())))?
                .filter_map(Result::ok)
            {
                if e.path().is_file() {
                    std::fs::copy(e.path(), host_build.join(e.file_name()))
                        .map_err(Error::io("copying module sources"))?;
                }
            }
            // A private mount namespace with /proc in the root (objtool reads
            // it), gone when the build ends.
            let output = std::process::Command::new("unshare")
                .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                .arg(
                    "mount -t proc proc \"$1/proc\" && exec chroot \"$1\" env -i \
                     PATH=/usr/sbin:/usr/bin:/sbin:/bin make -C \"$2\" M=\"$3\" modules",
                )
                .arg("sh")
                .arg(&self.root)
                .arg(format!("/usr/src/linux-headers-{}", self.kernel_release))
                .arg(format!("/tmp/{name}"))
                .output()
                .map_err(Error::io("running make in the guest root"))?;
            if !output.status.success() {
                return Err(Error::Config(format!(
                    "building modules from {} failed:\n{}{}",
                    src_dir.display(),
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                )));
            }
            let mut built = Vec::new();
            for e in std::fs::read_dir(&host_build)
                .map_err(Error::io("reading the build dir"))?
                .filter_map(Result::ok)
            {
                if e.path().extension().is_some_and(|x| x == "ko") {
                    let out = out_dir.join(e.file_name());
                    std::fs::copy(e.path(), &out).map_err(Error::io("copying a built module"))?;
                    built.push(out);
                }
            }
            if built.is_empty() {
                return Err(Error::Config(format!(
                    "building modules from {} produced no .ko",
                    src_dir.display()
                )));
            }
            built.sort();
            Ok(built)
        })();
        let _ = std::fs::remove_dir_all(&host_build);
        result
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn env_file_lines() {
        let env = parse_env_file("# c\nA=1\n\n B = two words \nnoequals\nC=x=y\n");
        assert_eq!(env.get("A").map(String::as_str), Some("1"));
        assert_eq!(env.get("B").map(String::as_str), Some("two words"));
        assert_eq!(env.get("C").map(String::as_str), Some("x=y"));
        assert_eq!(env.len(), 3);
    }

    #[test]
    fn missing_provisioning_is_an_error_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let err = GuestImage::from_dir(dir.path()).unwrap_err();
        assert!(matches!(err, Error::NotProvisioned(_)));
        assert!(err.to_string().contains("provision.sh"), "{err}");
    }

    #[test]
    fn env_naming_missing_files_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("env"),
            "VHOST_DEVICE_GUEST_QEMU=/nonexistent/qemu\n",
        )
        .unwrap();
        let err = GuestImage::from_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/qemu"), "{err}");
    }

    #[test]
    fn complete_env_is_read() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["qemu", "vmlinuz", "initrd"] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        let d = dir.path().display();
        std::fs::write(
            dir.path().join("env"),
            format!(
                "VHOST_DEVICE_GUEST_QEMU={d}/qemu\nVHOST_DEVICE_GUEST_KERNEL={d}/vmlinuz\n\
                 VHOST_DEVICE_GUEST_INITRD={d}/initrd\nVHOST_DEVICE_GUEST_KVER=7.3.4\n"
            ),
        )
        .unwrap();
        let image = GuestImage::from_dir(dir.path()).unwrap();
        assert_eq!(image.kernel_release, "7.3.4");
        assert_eq!(image.accel, "tcg");
        assert_eq!(image.qemu, dir.path().join("qemu"));
        assert_eq!(image.root, dir.path().join("root"));
        assert_eq!(image.gl_overlay, None);
        assert_eq!(image.modules_dir(), dir.path().join("lib/modules/7.3.4"));
    }

    #[test]
    fn modules_are_found_and_extracted() {
        let dir = tempfile::tempdir().unwrap();
        let mdir = dir.path().join("lib/modules/7.3.4/kernel/drivers/misc");
        std::fs::create_dir_all(&mdir).unwrap();
        std::fs::write(mdir.join("i2c-stub.ko"), b"ELF").unwrap();
        let image = GuestImage {
            qemu: "/q".into(),
            kernel: dir.path().join("vmlinuz"),
            initrd: "/i".into(),
            kernel_release: "7.3.4".into(),
            accel: "tcg".into(),
            root: "/r".into(),
            gl_overlay: None,
        };
        assert_eq!(
            image.find_module("i2c_stub"),
            Some(mdir.join("i2c-stub.ko"))
        );
        assert_eq!(image.find_module("nope"), None);
        let out = tempfile::tempdir().unwrap();
        let ko = image.extract_module("i2c-stub", out.path()).unwrap();
        assert_eq!(std::fs::read(ko).unwrap(), b"ELF");
        image.extract_module("nope", out.path()).unwrap_err();
    }
}
