// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The daemon's sandbox, set up by [`crate::daemon::serve`] once the
//! sockets are bound, before the first frontend is accepted. In order:
//!
//! 1. `no_new_privs`;
//! 2. capabilities: all but those the device keeps are dropped
//!    ([`caps`], `--modcaps`), when the daemon was started with any;
//! 3. Landlock: the file system shrinks to the paths the device declared
//!    ([`landlock`], `--landlock`);
//! 4. the seccomp allow-list ([`seccomp`], `--seccomp`), last, since the
//!    steps before make calls that are not on it.
//!
//! What a device needs is its [`SandboxPolicy`]: the system calls it adds
//! ([`crate::VirtioDevice::seccomp_policy`]), the paths it opens after
//! start-up, and the capabilities it keeps. Its main builds one from its
//! configuration and hands it to [`crate::daemon::serve_with`].

pub mod caps;
pub mod landlock;
pub mod seccomp;

use std::io;
use std::path::PathBuf;

use clap::Args;

use crate::error::{Error, Result};
use crate::VirtioDevice;

pub use caps::{CapSet, ModCaps};
pub use landlock::{FsAccess, FsRule, LandlockMode};
pub use seccomp::{SeccompMode, SeccompPolicy};

/// The sandbox flags every binary shares (flattened into [`crate::SocketArgs`]).
#[derive(Args, Debug, Clone, PartialEq, Eq, Default)]
pub struct SandboxArgs {
    /// System-call filter installed once the sockets are bound: kill (a call
    /// outside the daemon's allow-list kills it with SIGSYS, naming the call
    /// on stderr), log (allowed, and logged as a warning), or none. The
    /// default is kill, unless the device's README says otherwise.
    #[arg(long, value_enum, value_name = "MODE", env = "VHOST_DEVICE_SECCOMP")]
    pub seccomp: Option<SeccompMode>,

    /// Landlock file-system sandbox applied once the daemon is set up: only
    /// the paths the device needs stay reachable (its README lists them).
    /// enforce (refuse to start on a kernel without Landlock ABI 5, Linux
    /// 6.10), best-effort (what the kernel supports; a warning and no
    /// restriction where it has no Landlock), or none. The default is
    /// best-effort, so that the daemon starts on any kernel, unless the
    /// device's README says otherwise.
    #[arg(long, value_enum, value_name = "MODE", env = "VHOST_DEVICE_LANDLOCK")]
    pub landlock: Option<LandlockMode>,

    /// When started with capabilities (as root), the daemon drops all but
    /// those its device needs once it is set up. This adds (+name) or
    /// removes (-name) capabilities from that set, ':'-separated, with the
    /// names of capabilities(7): e.g. +dac_override:-net_admin.
    #[arg(long, value_name = "+CAP:-CAP", value_parser = caps::parse_modcaps)]
    pub modcaps: Option<ModCaps>,
}

/// What a daemon needs once it is set up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SandboxPolicy {
    /// System calls beyond the core's, and the `--seccomp` default.
    pub seccomp: SeccompPolicy,
    /// Paths the device opens after start-up (each connection builds its
    /// device afresh, so device nodes and output files are opened then).
    pub paths: Vec<FsRule>,
    /// The `--landlock` default.
    pub landlock_default: LandlockMode,
    /// Capabilities kept when the daemon was started with them.
    pub keep_caps: CapSet,
}

impl SandboxPolicy {
    /// Device `D`'s system calls, no paths and no capabilities.
    pub fn of<D: VirtioDevice>() -> Self {
        Self::new(D::seccomp_policy())
    }

    /// `seccomp`, no paths and no capabilities.
    pub fn new(seccomp: SeccompPolicy) -> Self {
        SandboxPolicy {
            seccomp,
            paths: Vec::new(),
            landlock_default: LandlockMode::BestEffort,
            keep_caps: CapSet::default(),
        }
    }

    /// The same, with `rule` allowed too.
    #[must_use]
    pub fn with_path(mut self, path: impl Into<PathBuf>, access: FsAccess) -> Self {
        self.paths.push(FsRule::new(path, access));
        self
    }

    /// The same, for a backend whose host library loads code and data the
    /// host's configuration chooses (ALSA and PipeWire plugins, Mesa
    /// drivers): no list of paths can foresee its files, so Landlock lets it
    /// read the whole file system (still not write to it, beyond the paths
    /// added and shared memory). The seccomp default is left as it is: the
    /// device's list holds what the library calls (see its README).
    #[must_use]
    pub fn host_library(mut self) -> Self {
        self.paths.push(FsRule::new("/", FsAccess::Read));
        self.paths
            .push(FsRule::new("/dev/shm", FsAccess::ReadWrite));
        self
    }
}

impl SandboxArgs {
    /// The `--seccomp` mode in force: the flag, else the device's default.
    pub fn seccomp_mode(&self, policy: &SandboxPolicy) -> SeccompMode {
        self.seccomp.unwrap_or(policy.seccomp.default_mode)
    }

    /// The `--landlock` mode in force: the flag, else the device's default.
    pub fn landlock_mode(&self, policy: &SandboxPolicy) -> LandlockMode {
        self.landlock.unwrap_or(policy.landlock_default)
    }

    /// Sandboxes the process as these flags and `policy` say. `sockets`
    /// are the socket files the daemon removes when it exits.
    pub fn install(&self, policy: &SandboxPolicy, sockets: &[PathBuf]) -> Result<()> {
        set_no_new_privs()?;
        let keep = self.modcaps.unwrap_or_default().apply(policy.keep_caps);
        if let Some(kept) = caps::drop_all_but(keep)? {
            log::info!("capabilities: kept {}", kept.names());
        }
        let mut rules = policy.paths.clone();
        rules.extend(
            sockets
                .iter()
                .filter_map(|s| s.parent())
                .map(|dir| FsRule::new(socket_dir(dir), FsAccess::Sockets)),
        );
        landlock::restrict(self.landlock_mode(policy), &rules)?;
        seccomp::install(self.seccomp_mode(policy), &policy.seccomp)
    }
}

/// A socket's directory; a bare file name lives in the current one.
fn socket_dir(parent: &std::path::Path) -> PathBuf {
    if parent.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        parent.to_owned()
    }
}

fn set_no_new_privs() -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(Error::Sandbox(format!(
            "no_new_privs: {}",
            io::Error::last_os_error()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_defaults_apply_without_the_flags() {
        let mut policy = SandboxPolicy::new(SeccompPolicy {
            extra: &[],
            default_mode: SeccompMode::None,
        })
        .host_library();
        policy.landlock_default = LandlockMode::None;
        let args = SandboxArgs::default();
        assert_eq!(args.seccomp_mode(&policy), SeccompMode::None);
        assert_eq!(args.landlock_mode(&policy), LandlockMode::None);
        let args = SandboxArgs {
            seccomp: Some(SeccompMode::Kill),
            landlock: Some(LandlockMode::Enforce),
            modcaps: None,
        };
        assert_eq!(args.seccomp_mode(&policy), SeccompMode::Kill);
        assert_eq!(args.landlock_mode(&policy), LandlockMode::Enforce);
    }
}
