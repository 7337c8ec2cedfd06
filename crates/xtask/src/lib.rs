// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The project's chores, run as `cargo xtask <chore>` (see README.md): man
//! pages and shell completions generated from each binary's clap
//! definition, and the packaging files' checks.

pub mod completions;
pub mod demo;
pub mod descriptor;
pub mod devices;
pub mod man;

pub use devices::{Device, DEVICES};

use std::path::PathBuf;

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .nth(2)
        .map_or_else(|| here.clone(), PathBuf::from)
}

/// `packaging/` at the workspace root.
pub fn packaging_dir() -> PathBuf {
    workspace_root().join("packaging")
}

/// The device binary `name` built in this test's `target/<profile>/`,
/// built first when it is missing (`cargo test -p xtask` alone; a
/// workspace test run has built every device binary already).
pub fn built_binary(name: &str) -> Result<PathBuf, String> {
    // Tests run from target/<profile>/deps/, xtask from target/<profile>/.
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut profile = exe.parent().ok_or("no target directory")?;
    if profile.ends_with("deps") {
        profile = profile.parent().ok_or("no target directory")?;
    }
    let path = profile.join(name);
    if !path.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--package", name, "--bin", name])
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("cargo build of {name}: {status}"));
        }
    }
    if path.exists() {
        Ok(path)
    } else {
        Err(format!("{} was not built", path.display()))
    }
}
