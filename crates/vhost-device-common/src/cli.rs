// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The entry point every binary shares: logging, argument parsing, and a
//! one-line error with a non-zero exit status.

use std::process::ExitCode;

use clap::Parser;

/// Sets up `RUST_LOG` logging (default level `info`), parses `A` (clap
/// prints usage errors itself and exits with status 2), and runs `main`. An
/// error from `main` is printed as one line, `<binary>: error: <message>`,
/// and the exit status is 1.
pub fn run<A: Parser>(main: impl FnOnce(A) -> Result<(), Box<dyn std::error::Error>>) -> ExitCode {
    init_logging();
    let args = A::parse();
    match main(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let binary = std::env::args()
                .next()
                .and_then(|a| {
                    std::path::Path::new(&a)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                })
                .unwrap_or_else(|| "vhost-device".into());
            eprintln!("{binary}: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logging to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    let env = env_logger::Env::default().default_filter_or("info");
    // A second call (tests) is harmless.
    let _ = env_logger::Builder::from_env(env).try_init();
}
