// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The entry point every binary shares: logging, argument parsing, and a
//! one-line error with a non-zero exit status.

use std::process::ExitCode;

use clap::Parser;

/// Sets up `RUST_LOG` logging (default level `info`), parses `A`, and runs
/// `main`.
///
/// Errors are one line on stderr, `<binary>: error: <message>`: a usage
/// error exits with status 2 (as clap does), an error from `main` with 1.
/// `--help` and `--version` print as usual.
pub fn run<A: Parser>(main: impl FnOnce(A) -> Result<(), Box<dyn std::error::Error>>) -> ExitCode {
    init_logging();
    let args = match A::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            eprintln!(
                "{}: error: {}",
                binary_name(),
                one_line(&e.render().to_string())
            );
            return ExitCode::from(2);
        }
    };
    match main(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}: error: {e}", binary_name());
            ExitCode::FAILURE
        }
    }
}

/// clap's message without its usage block and "error:" prefix, on one line.
fn one_line(rendered: &str) -> String {
    let message = rendered.split("Usage:").next().unwrap_or(rendered);
    let message = message.trim_start();
    let message = message.strip_prefix("error:").unwrap_or(message);
    let words: Vec<&str> = message.split_whitespace().collect();
    format!("{} (see --help)", words.join(" "))
}

fn binary_name() -> String {
    std::env::args()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "vhost-device".into())
}

/// Logging to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    let env = env_logger::Env::default().default_filter_or("info");
    // A second call (tests) is harmless.
    let _ = env_logger::Builder::from_env(env).try_init();
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn clap_errors_become_one_line() {
        let rendered = "error: the following required arguments were not provided:\n  \
                        <--socket-path <PATH>|--socket-fd <FD>>\n\nUsage: x <--socket-path \
                        <PATH>|--socket-fd <FD>>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            one_line(rendered),
            "the following required arguments were not provided: \
             <--socket-path <PATH>|--socket-fd <FD>> (see --help)"
        );
    }
}
