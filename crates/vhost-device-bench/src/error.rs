// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The one error type of the benchmark.

use std::path::PathBuf;
use std::time::Duration;

use vhost_device_common::testing::FrontendError;

/// Everything that can stop a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call or file access failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The vhost-user frontend failed (connection, negotiation, rings).
    #[error("{what}: {source}")]
    Frontend {
        /// What was being done.
        what: String,
        /// The cause.
        source: FrontendError,
    },
    /// The daemon binary to start was not found.
    #[error("cannot find the daemon binary '{name}' (looked in {looked}); build it first (cargo build --release --workspace --all-features) or give a path")]
    BinaryNotFound {
        /// The name asked for.
        name: String,
        /// Where we looked.
        looked: String,
    },
    /// The daemon did not create its socket, or exited.
    #[error("daemon '{command}' did not come up on {socket}: {reason}")]
    DaemonStart {
        /// The command line.
        command: String,
        /// Its socket.
        socket: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The device answered a request with something the scenario does not
    /// accept (an error status, a short reply).
    #[error("{scenario}: bad reply to {request}: used length {len}, bytes {bytes:02x?}")]
    BadReply {
        /// The scenario.
        scenario: &'static str,
        /// The request.
        request: &'static str,
        /// The used length the device reported.
        len: u32,
        /// The first bytes of the reply.
        bytes: Vec<u8>,
    },
    /// The device returned something that breaks the virtqueue rules.
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// Nothing came back for too long.
    #[error("no completion for {0:?} with {1} request(s) in flight: the daemon stalled")]
    Stalled(Duration, usize),
    /// A scenario cannot run with these options.
    #[error("{0}")]
    Unsupported(String),
    /// Anything else.
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// An [`Error::Io`] with context.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    /// An [`Error::Frontend`] with context.
    pub fn frontend(what: impl Into<String>) -> impl FnOnce(FrontendError) -> Self {
        let what = what.into();
        move |source| Error::Frontend { what, source }
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
