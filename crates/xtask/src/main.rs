// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `cargo xtask`: see README.md.

use std::process::ExitCode;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use xtask::DEVICES;

/// The project's chores.
#[derive(Parser, Debug)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    chore: Chore,
}

#[derive(Subcommand, Debug)]
enum Chore {
    /// Boot one guest with every device on host-free backends; print the
    /// summary table and where the screendump and logs are.
    Demo {
        /// Also run the gpu in virgl mode and have the guest's Mesa draw
        /// through it (provisions virglrenderer and builds the gpu with
        /// its virgl features the first time: minutes).
        #[arg(long)]
        virgl: bool,
    },
    /// Check packaging/vhost-user/*.json against vhost-user.json's rules.
    Descriptors,
    /// Write a man page per binary (and per subcommand) into DIR.
    Man {
        /// Output directory (install its files into share/man/man1/).
        #[arg(long, value_name = "DIR", default_value = "target/packaging/man")]
        out: PathBuf,
    },
    /// Write bash, zsh and fish completions into DIR, laid out as share/.
    Completions {
        /// Output directory (its subdirectories go under share/).
        #[arg(
            long,
            value_name = "DIR",
            default_value = "target/packaging/completions"
        )]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.chore {
        Chore::Demo { virgl } => xtask::demo::run(virgl),
        Chore::Descriptors => check_descriptors(),
        Chore::Man { out } => xtask::man::generate(DEVICES, &root(out)).map(report),
        Chore::Completions { out } => xtask::completions::generate(DEVICES, &root(out)).map(report),
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

/// A relative output path is relative to the workspace root, wherever
/// `cargo xtask` runs from.
fn root(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        path
    } else {
        xtask::workspace_root().join(path)
    }
}

fn report(files: Vec<PathBuf>) {
    for f in files {
        println!("{}", f.display());
    }
}
