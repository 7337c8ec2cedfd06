// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Landlock: once set up, the daemon sees only the files its device
//! declared (the [`FsRule`]s of its [`super::SandboxPolicy`]), plus the
//! directories of its socket files (to remove them at exit).
//!
//! The ruleset handles the file-system rights of Landlock ABI 5 (Linux
//! 6.10): reading, writing, creating and removing files, truncating, and
//! ioctls on device nodes. Connecting to a Unix socket by path and the
//! network are not restricted (rpmsg and bluetooth connect to host
//! sockets; seccomp already lists who may call `socket`). Older kernels
//! enforce the subset they know (`best-effort`) or, with `enforce`, refuse
//! to start. On Linux 7.0 and later (ABI 8) the ruleset covers every thread
//! of the process; before, only the thread that calls `serve` and the
//! threads it starts afterwards (every socket and vring thread).

use std::path::{Path, PathBuf};

use clap::ValueEnum;
use landlock::{
    Access, AccessFs, BitFlags, CompatLevel, Compatible, LandlockStatus, PathBeneath, PathFd,
    RestrictSelfAttr, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, ABI,
};
use log::{info, warn};

use crate::error::{Error, Result};

/// The newest Landlock ABI whose file-system rights the ruleset handles.
const TARGET_ABI: ABI = ABI::V5;

/// What `--landlock` asks for.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LandlockMode {
    /// Apply the whole policy, or refuse to start (a kernel without
    /// Landlock, or older than 6.10, is an error).
    Enforce,
    /// Apply what the kernel supports; run unrestricted, with a warning,
    /// where it has no Landlock.
    BestEffort,
    /// No Landlock ruleset.
    None,
}

impl LandlockMode {
    /// The flag's value for this mode.
    pub fn name(self) -> &'static str {
        match self {
            LandlockMode::Enforce => "enforce",
            LandlockMode::BestEffort => "best-effort",
            LandlockMode::None => "none",
        }
    }
}

/// How a device uses a path it declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsAccess {
    /// Read the file, or anything under the directory.
    Read,
    /// Open the device node (or the nodes under the directory) for reading
    /// and writing, with ioctls.
    Device,
    /// Open the device nodes under the directory read-only and use their
    /// ioctls, nothing else: for a directory where a device's node may be
    /// created again under a running daemon (a hot-plugged GPIO chip is a
    /// new file, which a rule on the old node does not cover).
    DeviceIoctl,
    /// Read, write, create, truncate and remove files under the directory.
    ReadWrite,
    /// Create (bind) and remove Unix sockets in the directory.
    Sockets,
}

impl FsAccess {
    fn rights(self) -> BitFlags<AccessFs> {
        match self {
            FsAccess::Read => AccessFs::ReadFile | AccessFs::ReadDir,
            FsAccess::Device => AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::IoctlDev,
            FsAccess::DeviceIoctl => AccessFs::ReadFile | AccessFs::IoctlDev,
            FsAccess::ReadWrite => AccessFs::from_all(TARGET_ABI) & !AccessFs::Execute,
            FsAccess::Sockets => AccessFs::MakeSock | AccessFs::RemoveFile,
        }
    }
}

/// One path a device needs after start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsRule {
    /// The file or directory (a directory covers everything beneath it).
    pub path: PathBuf,
    /// What the device does with it.
    pub access: FsAccess,
}

impl FsRule {
    /// `path`, used as `access` says.
    pub fn new(path: impl Into<PathBuf>, access: FsAccess) -> Self {
        FsRule {
            path: path.into(),
            access,
        }
    }
}

/// Restricts the process to `rules` as `mode` says. `no_new_privs` must be
/// set already.
pub(super) fn restrict(mode: LandlockMode, rules: &[FsRule]) -> Result<()> {
    if mode == LandlockMode::None {
        info!("landlock: off (--landlock none)");
        return Ok(());
    }
    let level = if mode == LandlockMode::Enforce {
        CompatLevel::HardRequirement
    } else {
        CompatLevel::BestEffort
    };
    let fail = |e: &dyn std::fmt::Display| Error::Sandbox(format!("landlock: {e}"));
    let mut ruleset = Ruleset::default()
        .set_compatibility(level)
        .handle_access(AccessFs::from_all(TARGET_ABI))
        .map_err(|e| fail(&e))?
        .create()
        .map_err(|e| fail(&e))?;
    for rule in rules.iter().chain(profile_rule().iter()) {
        // A path that is not there (`/dev/dri` on a host without a GPU, say)
        // gives no right; the device's own open then reports it.
        let Ok(fd) = PathFd::new(&rule.path) else {
            info!(
                "landlock: {} does not exist; no access to it",
                rule.path.display()
            );
            continue;
        };
        let mut rights = rule.access.rights();
        if !rule.path.is_dir() {
            rights &= AccessFs::from_file(TARGET_ABI);
        }
        ruleset = ruleset
            .add_rule(PathBeneath::new(fd, rights))
            .map_err(|e| fail(&e))?;
    }
    // Every thread where the kernel can (ABI 8); the caller's otherwise,
    // whatever the mode: the threads that handle guest input start later.
    let status = ruleset
        .set_compatibility(CompatLevel::BestEffort)
        .all_threads(true)
        .map_err(|e| fail(&e))?
        .restrict_self()
        .map_err(|e| fail(&e))?;
    let abi = match status.landlock {
        LandlockStatus::Available { effective_abi, .. } => effective_abi as i32,
        _ => 0,
    };
    let flag = mode.name();
    let count = rules.len();
    match status.ruleset {
        RulesetStatus::NotEnforced => warn!(
            "landlock: not available in this kernel ({:?}); the file system is not \
             restricted (--landlock {flag})",
            status.landlock
        ),
        RulesetStatus::PartiallyEnforced if abi < TARGET_ABI as i32 => info!(
            "landlock: file system restricted to {count} paths, with the rights kernel \
             ABI {abi} knows (--landlock {flag})"
        ),
        _ => info!(
            "landlock: file system restricted to {count} paths (--landlock {flag}, ABI \
             {abi}{})",
            if status.all_threads {
                ", all threads"
            } else {
                ""
            }
        ),
    }
    Ok(())
}

/// A coverage build (`cargo llvm-cov`, which sets `--cfg coverage`) writes
/// its profile at exit, to the directory LLVM_PROFILE_FILE names (or the
/// nearest one that exists): that directory is writable in such a build
/// only. Any other build gets no rule, whatever its environment says.
fn profile_rule() -> Option<FsRule> {
    if !cfg!(coverage) {
        return None;
    }
    let file = PathBuf::from(std::env::var_os("LLVM_PROFILE_FILE")?);
    let mut dir: &Path = file.parent()?;
    while !dir.is_dir() {
        dir = dir.parent()?;
    }
    let dir = if dir.as_os_str().is_empty() {
        std::env::current_dir().ok()?
    } else {
        dir.to_owned()
    };
    Some(FsRule::new(dir, FsAccess::ReadWrite))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_read_write_and_socket_rules_change_the_tree() {
        let changes = AccessFs::from_write(TARGET_ABI)
            & !(AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev);
        assert!(!FsAccess::Read.rights().intersects(changes));
        assert!(!FsAccess::Device.rights().intersects(changes));
        assert!(!FsAccess::DeviceIoctl
            .rights()
            .intersects(AccessFs::from_write(TARGET_ABI) & !AccessFs::IoctlDev));
        assert!(!FsAccess::ReadWrite.rights().contains(AccessFs::Execute));
        assert!(!FsAccess::Sockets.rights().contains(AccessFs::MakeReg));
    }

    /// Outside a coverage build nothing opens the profile's directory, even
    /// where LLVM_PROFILE_FILE is set (the aarch64 step's instrumented
    /// tests, built without `--cfg coverage`).
    #[cfg(not(coverage))]
    #[test]
    fn no_profile_directory_outside_a_coverage_build() {
        assert_eq!(profile_rule(), None);
    }
}
