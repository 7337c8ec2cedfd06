// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong on the host side or on the command line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `--device-list` entry that cannot be used.
    #[error("--device-list entry '{entry}': {reason}")]
    DeviceList {
        /// The entry as written.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The device list as a whole does not fit the other flags.
    #[error("--device-list: {0}")]
    DeviceListShape(String),
    /// A flag that conflicts with the rest of the command line.
    #[error("{flag}: {reason}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// Why it cannot be used.
        reason: String,
    },
    /// A host GPIO chip operation failed.
    #[error("{chip}: {what}: {source}")]
    Chip {
        /// The chip's path or label.
        chip: String,
        /// What we were doing.
        what: String,
        /// The gpiocdev error.
        #[source]
        source: gpiocdev::Error,
    },
    /// A request for a line the chip does not have.
    #[error("line {line} is out of range (the chip has {ngpio} lines)")]
    LineOutOfRange {
        /// The line asked for.
        line: u16,
        /// How many the chip has.
        ngpio: u16,
    },
    /// A line operation the backend refuses.
    #[error("line {line}: {reason}")]
    Line {
        /// The line.
        line: u16,
        /// Why.
        reason: String,
    },
    /// The simulated chip's control socket.
    #[error("control socket {}: {what}: {source}", path.display())]
    Control {
        /// The socket path.
        path: PathBuf,
        /// What we were doing.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The control socket answered with an error.
    #[error("control socket {}: {reply}", path.display())]
    ControlReply {
        /// The socket path.
        path: PathBuf,
        /// The error line it sent.
        reply: String,
    },
    /// Any other I/O failure.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
