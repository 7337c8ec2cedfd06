// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Shell completions from the clap definitions (`cargo xtask completions`).

use std::path::{Path, PathBuf};

use clap_complete::Shell;

use crate::Device;

/// The shells packagers ship completions for, and where each expects the
/// file under `share/`.
pub const SHELLS: &[(Shell, &str)] = &[
    (Shell::Bash, "bash-completion/completions"),
    (Shell::Zsh, "zsh/site-functions"),
    (Shell::Fish, "fish/vendor_completions.d"),
];

/// One device's completion script for `shell`.
pub fn script(device: &Device, shell: Shell) -> Vec<u8> {
    let mut command = (device.command)();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, device.binary, &mut out);
    out
}

/// The file name `shell` looks for.
pub fn file_name(binary: &str, shell: Shell) -> String {
    match shell {
        Shell::Zsh => format!("_{binary}"),
        Shell::Fish => format!("{binary}.fish"),
        _ => binary.to_owned(),
    }
}

/// Writes every device's completions under `dir/<share path>/`, the layout
/// of `/usr/share`; returns the files written.
pub fn generate(devices: &[Device], dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut written = Vec::new();
    for (shell, subdir) in SHELLS {
        let target = dir.join(subdir);
        std::fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display()))?;
        for device in devices {
            let path = target.join(file_name(device.binary, *shell));
            std::fs::write(&path, script(device, *shell))
                .map_err(|e| format!("{}: {e}", path.display()))?;
            written.push(path);
        }
    }
    Ok(written)
}
