// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The crate's one error type. Errors a guest causes know the VIRTIO_CAN
//! result they are answered with; host and command-line errors never reach a
//! guest.

use std::io;

use vhost_device_common::IoError;

use vhost_device_common::ChainError;

use crate::protocol::VIRTIO_CAN_RESULT_NOT_OK;

/// Everything that can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request's buffers are too short or laid out wrongly.
    #[error("malformed request: {0}")]
    Chain(#[from] ChainError),
    /// A `msg_type` this queue does not take.
    #[error("unknown message type {0:#06x}")]
    UnknownMessage(u16),
    /// A frame kind the driver did not negotiate (§"CAN Message
    /// Transmission": rejected, never sent).
    #[error("{0} frames were not negotiated")]
    NotNegotiated(&'static str),
    /// Flag bits the spec does not define.
    #[error("undefined flag bits {0:#x}")]
    UndefinedFlags(u32),
    /// An identifier too large for its kind.
    #[error("CAN ID {id:#x} out of range for a {} identifier", if *.extended { "29-bit" } else { "11-bit" })]
    IdOutOfRange {
        /// The identifier.
        id: u32,
        /// Whether it was marked extended.
        extended: bool,
    },
    /// A payload length the frame kind cannot carry.
    #[error("length {len} out of range for a {kind} frame")]
    LengthOutOfRange {
        /// The length.
        len: u16,
        /// "classic", "FD" or "RTR".
        kind: &'static str,
    },
    /// RTR and FD together (RTR is classic only).
    #[error("RTR frames cannot be FD frames")]
    RtrWithFd,
    /// TX while the controller is not started (§"Controller Mode").
    #[error("controller is {0}")]
    NotStarted(&'static str),
    /// START while bus-off: recovery takes a STOP first.
    #[error("controller is bus-off: STOP it before starting it again")]
    BusOff,
    /// The frame was cancelled before the bus took it (STOP, bus-off).
    #[error("frame cancelled: {0}")]
    Cancelled(&'static str),
    /// The host side refused or failed to send.
    #[error("host side: {0}")]
    Send(io::Error),
    /// A `--device-list` entry that cannot be used.
    #[error("--device-list entry '{entry}': {reason}")]
    DeviceList {
        /// The entry as written.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A host-side operation failed.
    #[error(transparent)]
    Io(#[from] IoError),
}

impl Error {
    /// The `result` byte a guest request that failed this way is answered
    /// with. The spec has only one failure result.
    pub fn result(&self) -> u8 {
        VIRTIO_CAN_RESULT_NOT_OK
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
