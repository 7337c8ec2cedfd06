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
        })
    }
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
    }
}
