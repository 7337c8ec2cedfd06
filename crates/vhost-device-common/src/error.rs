// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The errors of the shared core.

use std::io;
use std::path::PathBuf;

use vm_memory::GuestAddress;

/// Why a device factory (see `daemon::serve`) could not build a device:
/// the device crate's own error, boxed so that every crate keeps its error
/// type (and its source chain) across this boundary. `?` converts any
/// `std::error::Error` into it.
pub type FactoryError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A descriptor chain the driver built wrongly, or a request that does not
/// fit the chain it came in. These are guest mistakes: the device answers
/// with an error status or drops the chain, and keeps running.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    /// A `next` index points past the end of its descriptor table.
    #[error("descriptor index {index} is outside a table of {size}")]
    IndexOutOfRange {
        /// The index.
        index: u16,
        /// The table size.
        size: u16,
    },
    /// The descriptor itself could not be read from guest memory.
    #[error("descriptor at {:#x} is not in guest memory", .0.0)]
    DescriptorUnreadable(GuestAddress),
    /// A buffer lies (partly) outside guest memory.
    #[error("buffer {:#x}+{len} is outside guest memory", .addr.0)]
    OutsideMemory {
        /// Guest physical address.
        addr: GuestAddress,
        /// Length.
        len: u32,
    },
    /// An indirect descriptor inside an indirect table.
    #[error("nested indirect descriptor table")]
    NestedIndirect,
    /// An indirect descriptor that also has NEXT set.
    #[error("indirect descriptor with the NEXT flag")]
    IndirectWithNext,
    /// An indirect table whose length is not a whole number of descriptors.
    #[error("indirect table of {len} bytes is malformed")]
    BadIndirectTable {
        /// The length.
        len: u32,
    },
    /// More descriptors than the table or the queue holds: the chain loops,
    /// or is longer than virtio 1.3 §2.7.5.3.1 allows.
    #[error("descriptor chain is longer than its table or the queue (loop?)")]
    TooLong,
    /// The chain's buffers add up to more than 4 GiB.
    #[error("descriptor chain length overflows 32 bits")]
    LengthOverflow,
    /// A device-readable buffer after a device-writable one.
    #[error("readable descriptor after a writable one")]
    ReadableAfterWritable,
    /// The readable part ends before the request does.
    #[error("request needs {wanted} more bytes, chain has {available}")]
    ShortRead {
        /// Bytes wanted.
        wanted: usize,
        /// Bytes left.
        available: usize,
    },
    /// The writable part ends before the reply does.
    #[error("reply needs {wanted} more bytes, chain has room for {available}")]
    ShortWrite {
        /// Bytes wanted.
        wanted: usize,
        /// Bytes left.
        available: usize,
    },
    /// More data than the device accepts for this request.
    #[error("request of {len} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Length offered.
        len: usize,
        /// Limit.
        limit: usize,
    },
    /// Guest memory changed under an access that had been validated.
    #[error("guest memory access at {:#x} failed", .0.0)]
    Memory(GuestAddress),
}

/// A host-side I/O failure and what the device was doing when it happened,
/// for device crates' error enums to carry as a variant
/// (`#[error(transparent)] Io(#[from] IoError)`): `?` on
/// `IoError::new(..)` then converts it.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct IoError {
    /// What was being done.
    pub what: String,
    /// The I/O error.
    #[source]
    pub source: io::Error,
}

impl IoError {
    /// An I/O error while doing `what`.
    pub fn new(what: impl Into<String>, source: io::Error) -> Self {
        IoError {
            what: what.into(),
            source,
        }
    }
}

/// Errors of the daemon: command line, sockets and the vhost-user session.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--socket-count 0`.
    #[error("--socket-count must be at least 1")]
    ZeroSocketCount,
    /// The sandbox could not be set up.
    #[error("sandbox: {0}")]
    Sandbox(String),
    /// Binding the listening socket failed.
    #[error("cannot listen on {}: {source}", path.display())]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Another daemon already serves the path.
    #[error("{} is in use by another process", .0.display())]
    SocketInUse(PathBuf),
    /// Something that is not a socket sits at the path.
    #[error("{} exists and is not a socket; refusing to replace it", .0.display())]
    NotASocket(PathBuf),
    /// The `--socket-fd` descriptor is not a listening Unix socket.
    #[error("--socket-fd {fd}: {reason}")]
    BadSocketFd {
        /// The descriptor.
        fd: i32,
        /// Why it was refused.
        reason: String,
    },
    /// The device refused to start.
    #[error("cannot create the device for guest {guest}: {source}")]
    Device {
        /// Which guest (socket index).
        guest: usize,
        /// The device's own error.
        #[source]
        source: FactoryError,
    },
    /// The vhost-user daemon machinery failed.
    #[error("vhost-user daemon for {socket}: {reason}")]
    Daemon {
        /// The socket, for the user.
        socket: String,
        /// What failed.
        reason: String,
    },
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(what: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |source| Error::Io { what, source }
    }
}

/// Result with the daemon's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_error_says_what_and_keeps_its_source() {
        let e = IoError::new("opening /dev/x", io::Error::from_raw_os_error(libc::ENOENT));
        assert!(e.to_string().starts_with("opening /dev/x: "), "{e}");
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(
            source,
            Some(io::Error::from_raw_os_error(libc::ENOENT).to_string())
        );
    }
}
