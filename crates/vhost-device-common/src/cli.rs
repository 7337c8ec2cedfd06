// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The entry point every binary shares: logging, argument parsing, and a
//! one-line error with a non-zero exit status.

use std::process::ExitCode;

use clap::Parser;

use crate::capabilities::capabilities_json;

/// The flag libvirt runs a backend with to learn what it is.
const PRINT_CAPABILITIES: &str = "print-capabilities";

/// Sets up `RUST_LOG` logging (default level `info`), parses `A`, and runs
/// `main`.
///
/// Errors are one line on stderr, `<binary>: error: <message>`: a usage
/// error exits with status 2 (as clap does), an error from `main` with 1.
/// `--help` and `--version` print as usual. `--print-capabilities` (from
/// [`crate::SocketArgs`]) prints the capabilities JSON and exits 0 whatever
/// else is on the command line, as vhost-user.rst asks.
pub fn run<A: Parser>(main: impl FnOnce(A) -> Result<(), Box<dyn std::error::Error>>) -> ExitCode {
    init_logging();
    let command = A::command();
    if wants_capabilities(&command, std::env::args_os().skip(1)) {
        println!("{}", capabilities_json(&command));
        return ExitCode::SUCCESS;
    }
    let parsed = command.try_get_matches().and_then(|mut matches| {
        A::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut A::command()))
    });
    let args = match parsed {
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

/// Whether `args` ask for the capabilities of a command that has the flag.
fn wants_capabilities(
    command: &clap::Command,
    mut args: impl Iterator<Item = std::ffi::OsString>,
) -> bool {
    let flag = format!("--{PRINT_CAPABILITIES}");
    command
        .get_arguments()
        .any(|a| a.get_long() == Some(PRINT_CAPABILITIES))
        && args.any(|a| a == flag.as_str())
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
    use super::{one_line, wants_capabilities};
    use crate::SocketArgs;
    use clap::{CommandFactory, Parser};

    #[derive(Parser, Debug)]
    #[command(name = "vhost-device-test")]
    struct TestArgs {
        #[command(flatten)]
        socket: SocketArgs,
    }

    #[test]
    fn print_capabilities_needs_no_socket_and_ignores_the_rest() {
        let cmd = TestArgs::command();
        let args = |list: &[&str]| list.iter().map(Into::into).collect::<Vec<_>>().into_iter();
        assert!(wants_capabilities(&cmd, args(&["--print-capabilities"])));
        assert!(wants_capabilities(
            &cmd,
            args(&["--bogus", "--print-capabilities"])
        ));
        assert!(!wants_capabilities(&cmd, args(&["--socket-path", "x"])));
        assert!(!wants_capabilities(
            &clap::Command::new("x"),
            args(&["--print-capabilities"])
        ));
        // It is a declared flag, so --help, the man pages and the
        // completions show it.
        assert!(cmd
            .get_arguments()
            .any(|a| a.get_long() == Some("print-capabilities")));
    }

    #[test]
    fn fd_is_an_alias_of_socket_fd() {
        let parsed = TestArgs::try_parse_from(["x", "--fd", "3"]);
        assert!(parsed.is_ok_and(|a| a.socket.source.socket_fd == Some(3)));
    }

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
