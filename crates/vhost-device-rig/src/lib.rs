// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Guest test rig for vhost-device backends.
//!
//! A [`Scenario`] starts backend binaries of this workspace, starts the
//! provisioned QEMU (11.1, from Debian trixie-backports) with the device's
//! arguments, boots the provisioned Linux 7.3 guest with an initramfs that runs
//! a guest script, and reports whether the backend, QEMU or the guest failed.
//! Provision the guest first with `rust-vmm-ci/guest/provision.sh`.
//!
//! ```no_run
//! use std::time::Duration;
//! use vhost_device_rig::Scenario;
//!
//! let out = Scenario::new("i2c-basic")
//!     .backend(
//!         "vhost-device-i2c",
//!         &["--socket-path", "{sock}", "--device-list", "sim:0x50=eeprom:256"],
//!     )
//!     .qemu_args(&[
//!         "-chardev", "socket,id=c0,path={sock}",
//!         "-device", "vhost-user-i2c-pci,chardev=c0",
//!     ])
//!     .guest_script("/usr/sbin/i2cdetect -l")
//!     .timeout(Duration::from_secs(60))
//!     .run()
//!     .expect("the scenario could not start");
//! out.assert_success();
//! ```
//!
//! Host-kernel mode runs a test of the current test binary inside the guest,
//! where `vcan`, `i2c-stub`, `gpio-sim` and `snd-aloop` exist:
//!
//! ```no_run
//! # fn real_test_body() {}
//! #[test]
//! #[ignore = "guest rig"]
//! fn host_kernel_vcan_roundtrip() {
//!     if vhost_device_rig::in_guest() {
//!         return real_test_body(); // runs in the guest
//!     }
//!     vhost_device_rig::Scenario::host_test(
//!         "host_kernel_vcan_roundtrip",
//!         std::env::current_exe().unwrap(),
//!         "host_kernel_vcan_roundtrip",
//!     )
//!     .modules(&["vcan"])
//!     .guest_script("ip link add dev vcan0 type vcan && ip link set vcan0 up")
//!     .run()
//!     .unwrap()
//!     .assert_success();
//! }
//! ```

mod control;
pub mod cpio;
pub mod image;
pub mod paths;
mod process;
pub mod qmp;
pub mod result;
pub mod scenario;
pub mod screen;
pub mod text;

pub use image::GuestImage;
pub use scenario::{Backend, Outcome, Scenario, ScenarioResult};
pub use screen::{Image, ImageStats};

/// Environment variable set to `1` for a test binary run inside the guest.
pub const IN_GUEST_ENV: &str = "VHOST_DEVICE_IN_GUEST";

/// Whether this process runs inside the rig's guest (host-kernel mode).
pub fn in_guest() -> bool {
    std::env::var(IN_GUEST_ENV).is_ok_and(|v| v == "1")
}

/// Why a scenario could not be run at all.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The guest is not provisioned; the message says how to provision it.
    NotProvisioned(String),
    /// A backend binary could not be found.
    BinaryNotFound(String),
    /// The scenario is misconfigured (name, placeholder, environment).
    Config(String),
    /// A screendump could not be read or decoded.
    Image(String),
    /// Host I/O failed.
    Io {
        /// What the rig was doing.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

impl Error {
    /// A mapper from `io::Error` with context, for `map_err`.
    pub fn io(context: &str) -> impl Fn(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            context: context.to_owned(),
            source,
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotProvisioned(m) => write!(f, "guest rig not provisioned: {m}"),
            Self::BinaryNotFound(m) => write!(f, "backend binary not found: {m}"),
            Self::Config(m) => write!(f, "bad scenario: {m}"),
            Self::Image(m) => write!(f, "screendump: {m}"),
            Self::Io { context, source } => write!(f, "{context}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
