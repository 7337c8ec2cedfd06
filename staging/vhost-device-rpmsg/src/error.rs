// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The crate's one error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong: on the command line, on the host side, or
/// in a message from the guest.
///
/// rpmsg has no status field to answer with: the driver never learns the
/// fate of a message it sent. A guest mistake therefore maps to dropping the
/// message (see [`Error::is_guest_fault`]); the TX buffer is returned either
/// way.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `--channel` value that cannot be used.
    #[error("--channel '{spec}': {reason}")]
    Channel {
        /// The value as written.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A flag that does not fit the others.
    #[error("{flag}: {reason}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// Why.
        reason: String,
    },
    /// A host socket could not be set up.
    #[error("{}: {what}: {source}", path.display())]
    Socket {
        /// The socket path.
        path: PathBuf,
        /// What we were doing.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Any other host I/O failure.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A TX chain whose header or payload could not be read.
    #[error("unreadable message: {0}")]
    Chain(#[from] vhost_device_common::ChainError),
    /// A header whose length is over the MTU or over what the buffer holds.
    #[error("message from {src:#x} to {dst:#x}: payload of {len} bytes (buffer holds {available}, MTU 496)")]
    Oversize {
        /// Sender.
        src: u32,
        /// Receiver.
        dst: u32,
        /// The header's length.
        len: usize,
        /// Bytes after the header in the chain.
        available: usize,
    },
    /// A name-service message that is not a valid 40-byte `rpmsg_ns_msg`.
    #[error("malformed name-service message from {src:#x} ({len} bytes)")]
    MalformedNs {
        /// Sender.
        src: u32,
        /// Payload length.
        len: usize,
    },
    /// A message to an address no channel has.
    #[error("message from {src:#x} to {dst:#x}: no such endpoint")]
    NoRecipient {
        /// Sender.
        src: u32,
        /// Receiver.
        dst: u32,
    },
    /// The guest announced a channel the device cannot take.
    #[error("guest channel '{name}' at {addr:#x}: {reason}")]
    GuestChannel {
        /// Its name.
        name: String,
        /// The guest's address.
        addr: u32,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A channel's queue towards its host peer is full.
    #[error("channel '{name}': host peer queue full, message dropped ({dropped} so far)")]
    QueueFull {
        /// The channel.
        name: String,
        /// Messages dropped on this channel so far.
        dropped: u64,
    },
}

impl Error {
    /// Whether the guest caused it: then the message is dropped and the
    /// device serves on. Everything else is the host's.
    pub fn is_guest_fault(&self) -> bool {
        matches!(
            self,
            Error::Chain(_)
                | Error::Oversize { .. }
                | Error::MalformedNs { .. }
                | Error::NoRecipient { .. }
                | Error::GuestChannel { .. }
        )
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(what: &'static str) -> impl Fn(io::Error) -> Self {
        move |source| Error::Io { what, source }
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
