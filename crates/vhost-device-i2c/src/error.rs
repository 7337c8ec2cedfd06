// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The crate's one error type.

use vhost_device_common::ChainError;

use crate::protocol::VIRTIO_I2C_MSG_ERR;

/// What can go wrong: setting the device up, or a guest's request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A `--device-list` entry is malformed or conflicts with another.
    #[error("--device-list entry \"{entry}\": {reason}")]
    Entry {
        /// The entry as written.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A host adapter cannot be used.
    #[error("I2C adapter {adapter}: {reason}")]
    Adapter {
        /// Its device path.
        adapter: String,
        /// Why.
        reason: String,
    },
    /// A guest connected for which no bus was built.
    #[error("no device list for guest {0}")]
    NoBus(usize),
    /// The number of `--device-list` options fits neither way.
    #[error("--device-list was given {given} times for {guests} guests: give it once (shared by every guest) or once per guest")]
    ListCount {
        /// Options given.
        given: usize,
        /// `--socket-count`.
        guests: usize,
    },
    /// The request's out header is cut short.
    #[error("out header: {0}")]
    OutHeader(#[source] ChainError),
    /// Flag bits the spec reserves are set.
    #[error("reserved flag bits set: {0:#x}")]
    ReservedFlags(u32),
    /// The address field is not a 7-bit address in bits 7..1.
    #[error("address field {0:#06x} is not a 7-bit address")]
    NotSevenBit(u16),
    /// The address field holds the 10-bit form, which is not supported.
    #[error("address field {0:#06x} is a 10-bit address")]
    TenBit(u16),
    /// A read whose chain has device-readable bytes after the header.
    #[error("read request with {0} device-readable bytes after the header")]
    ReadWithData(usize),
    /// A write whose chain has device-writable bytes before the status.
    #[error("write request with {0} device-writable bytes before the status")]
    WriteWithRoom(usize),
    /// A buffer longer than the device takes (`backend::MAX_MSG_LEN`).
    #[error("{what} of {len} bytes exceeds {limit}")]
    TooLong {
        /// "read" or "write".
        what: &'static str,
        /// Its length.
        len: usize,
        /// The longest allowed.
        limit: usize,
    },
    /// A write's data could not be read.
    #[error("write buffer: {0}")]
    WriteBuffer(#[source] ChainError),
    /// No target answers at this address for this guest. Not worth a
    /// warning: probing (i2cdetect) asks every address.
    #[error("no target at {0:#04x} for this guest")]
    NoTarget(u8),
    /// The chain has no byte for the status.
    #[error("the chain has no status byte")]
    NoStatus,
    /// The host transfer failed.
    #[error("i2c transfer failed: {0}")]
    Transfer(#[source] TransferError),
}

impl Error {
    /// The status the guest gets for a request that failed this way: the
    /// spec has one error status (§5.16.6.1).
    pub fn status(&self) -> u8 {
        VIRTIO_I2C_MSG_ERR
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

/// Why a transfer stopped, and how far it got.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct TransferError {
    /// Messages that completed before the failure; their data is valid.
    pub completed: usize,
    /// What went wrong, for the log.
    pub reason: String,
}

impl TransferError {
    /// A failure with `completed` messages done.
    pub fn new(completed: usize, reason: impl Into<String>) -> Self {
        TransferError {
            completed,
            reason: reason.into(),
        }
    }
}
