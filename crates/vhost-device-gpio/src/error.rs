// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The crate's one error type.

use std::io;
use std::path::PathBuf;

use crate::protocol::VIRTIO_GPIO_STATUS_ERR;

/// Everything that can go wrong: a guest's request, the host side, or the
/// command line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request whose device-readable part is not one
    /// `virtio_gpio_request` (or an event buffer's, one
    /// `virtio_gpio_irq_request`).
    #[error("request of {len} bytes, not {want}")]
    RequestLength {
        /// Bytes the driver gave.
        len: usize,
        /// Bytes the request has.
        want: usize,
    },
    /// The device-writable part cannot hold the response.
    #[error("{what}: {room} writable bytes, need {need}")]
    NoRoom {
        /// The request.
        what: &'static str,
        /// Bytes the driver gave.
        room: usize,
        /// Bytes the response needs.
        need: usize,
    },
    /// A request type the spec does not define.
    #[error("unknown request type {0}")]
    UnknownRequest(u16),
    /// SET_DIRECTION with a value that is no direction.
    #[error("SET_DIRECTION line {line}: bad direction {value}")]
    BadDirection {
        /// The line.
        line: u16,
        /// The value sent.
        value: u32,
    },
    /// SET_IRQ_TYPE with a value that is no trigger.
    #[error("SET_IRQ_TYPE line {line}: bad type {value}")]
    BadIrqType {
        /// The line.
        line: u16,
        /// The value sent.
        value: u32,
    },
    /// SET_IRQ_TYPE although the driver did not accept `VIRTIO_GPIO_F_IRQ`.
    #[error("SET_IRQ_TYPE without VIRTIO_GPIO_F_IRQ")]
    IrqNotNegotiated,
    /// No chip was configured for this guest.
    #[error("no chip for guest {0}")]
    NoChip(usize),
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
    /// The guest's chip is not where it was: gone, another chip at its
    /// node, or its label not found on exactly one chip.
    #[error("{chip}: {reason}")]
    ChipMissing {
        /// The chip's path or label.
        chip: String,
        /// What was found instead.
        reason: String,
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

impl Error {
    /// The status the guest gets for a request that failed this way
    /// (§5.18.6.7: a failed request answers `VIRTIO_GPIO_STATUS_ERR`, whatever
    /// the cause).
    pub fn status(&self) -> u8 {
        VIRTIO_GPIO_STATUS_ERR
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
