// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `cargo xtask`: see README.md.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The project's chores.
#[derive(Parser, Debug)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    chore: Chore,
}

#[derive(Subcommand, Debug)]
enum Chore {
    /// Check packaging/vhost-user/*.json against vhost-user.json's rules.
    Descriptors,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.chore {
        Chore::Descriptors => check_descriptors(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check_descriptors() -> Result<(), String> {
    let dir = xtask::packaging_dir().join("vhost-user");
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let d = xtask::descriptor::parse_descriptor(&text)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        println!("{}: {} ({})", path.display(), d.kind, d.binary);
    }
    Ok(())
}
