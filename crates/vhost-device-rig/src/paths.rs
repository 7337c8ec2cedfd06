// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Finding the workspace's target directory and the binaries built into it.

use std::path::{Path, PathBuf};

use crate::Error;

/// The `target/<profile>` directory a test executable lives in: tests run from
/// `target/<profile>/deps/<name>-<hash>`, binaries sit in `target/<profile>/`.
pub fn profile_dir_of(exe: &Path) -> Option<PathBuf> {
    let parent = exe.parent()?;
    if parent.file_name()? == "deps" {
        parent.parent().map(Path::to_path_buf)
    } else {
        Some(parent.to_path_buf())
    }
}

/// The directory of the current executable's profile (`target/debug`, ...).
pub fn profile_dir() -> Option<PathBuf> {
    profile_dir_of(&std::env::current_exe().ok()?)
}

/// The cargo target directory: `CARGO_TARGET_DIR` when set, else the parent
/// of the current executable's profile directory.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        if dir.is_absolute() {
            return dir;
        }
    }
    profile_dir()
        .and_then(|p| {
            // target/<profile> or target/<triple>/<profile>
            let up = p.parent()?;
            Some(up.to_path_buf())
        })
        .unwrap_or_else(|| std::env::temp_dir().join("vhost-device-target"))
}

/// Where a scenario keeps its logs: `target/guest-rig/<name>`.
pub fn scenario_dir(name: &str) -> PathBuf {
    target_dir().join("guest-rig").join(name)
}

/// Resolves a backend program: a value with a `/` is a path; a bare name is a
/// binary of this workspace, looked up in the current profile directory
/// (then `CARGO_TARGET_DIR/{debug,release}`).
///
/// # Errors
/// [`Error::BinaryNotFound`] with a hint to build it.
pub fn resolve_binary(program: &str) -> Result<PathBuf, Error> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(Error::BinaryNotFound(format!("{program} does not exist")))
        };
    }
    let mut candidates = Vec::new();
    if let Some(p) = profile_dir() {
        candidates.push(p.join(program));
    }
    let target = target_dir();
    for profile in ["debug", "release"] {
        let c = target.join(profile).join(program);
        if !candidates.contains(&c) {
            candidates.push(c);
        }
    }
    candidates
        .iter()
        .find(|c| c.is_file())
        .cloned()
        .ok_or_else(|| {
            Error::BinaryNotFound(format!(
                "{program} not found in {}; build it first (cargo build -p {program}) \
                 or pass env!(\"CARGO_BIN_EXE_{program}\") from the device crate's tests",
                candidates
                    .iter()
                    .map(|c| c.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn profile_dir_from_test_and_binary_paths() {
        assert_eq!(
            profile_dir_of(Path::new("/w/target/debug/deps/rig-123")),
            Some(PathBuf::from("/w/target/debug"))
        );
        assert_eq!(
            profile_dir_of(Path::new("/w/target/release/vhost-device-i2c")),
            Some(PathBuf::from("/w/target/release"))
        );
    }

    #[test]
    fn explicit_paths_and_missing_names() {
        assert_eq!(resolve_binary("/bin/sh").unwrap(), PathBuf::from("/bin/sh"));
        let err = resolve_binary("/no/such/backend").unwrap_err();
        assert!(err.to_string().contains("/no/such/backend"));
        let err = resolve_binary("vhost-device-nonexistent-xyz").unwrap_err();
        assert!(err.to_string().contains("cargo build"), "{err}");
    }

    #[test]
    fn scenario_dirs_live_under_guest_rig() {
        let d = scenario_dir("abc");
        assert!(d.ends_with("guest-rig/abc"), "{}", d.display());
    }
}
