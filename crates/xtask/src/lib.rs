// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The project's chores, run as `cargo xtask <chore>` (see README.md): man
//! pages and shell completions generated from each binary's clap
//! definition, and the packaging files' checks.

pub mod descriptor;
pub mod devices;

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
