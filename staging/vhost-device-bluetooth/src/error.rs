// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The crate's one error type.

use vhost_device_common::IoError;

use crate::packet::Kind;
use crate::protocol::status;

/// Everything that can go wrong: a bad packet from either side, the host
/// controller, or the command line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A packet that does not hold together.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// A first byte that is no H:4 packet indicator.
    #[error("unknown H:4 packet indicator 0x{0:02x}")]
    UnknownIndicator(u8),
    /// A packet whose length disagrees with its header.
    #[error("{kind:?} packet of {actual} bytes, its header says {header}")]
    LengthMismatch {
        /// The packet kind.
        kind: Kind,
        /// The length the header announces, indicator included.
        header: usize,
        /// The length of the buffer.
        actual: usize,
    },
    /// A packet kind that never flows in this direction.
    #[error("{0:?} packets do not flow this way")]
    WrongDirection(Kind),
    /// A buffer the device cannot use.
    #[error("{0}")]
    Buffer(&'static str),
    /// An HCI command the built-in controller does not implement.
    #[error("unknown HCI command 0x{0:04x}")]
    UnknownCommand(u16),
    /// An HCI command with parameters the built-in controller refuses.
    #[error("HCI command 0x{opcode:04x}: {reason}")]
    InvalidParameters {
        /// The opcode.
        opcode: u16,
        /// What is wrong.
        reason: &'static str,
    },
    /// An HCI command that is not allowed in the controller's state.
    #[error("HCI command 0x{opcode:04x}: {reason}")]
    Disallowed {
        /// The opcode.
        opcode: u16,
        /// Why.
        reason: &'static str,
    },
    /// The host adapter is up, so the kernel refuses the user channel
    /// (EBUSY). That includes an adapter another process holds through its
    /// own user channel: holding it keeps it up.
    #[error("hci{0} is up (bluetoothd or another HCI user channel holds it): stop bluetoothd or run `btmgmt --index {0} power off`, or end the other user")]
    AdapterBusy(u16),
    /// Another process claimed the adapter's user channel (EUSERS).
    #[error("hci{0} is already claimed through an HCI user channel by another process (another daemon, btproxy or a test tool)")]
    AdapterInUse(u16),
    /// No such adapter.
    #[error("hci{0}: no such Bluetooth adapter")]
    NoAdapter(u16),
    /// The user channel needs CAP_NET_ADMIN.
    #[error("hci{0}: the HCI user channel needs CAP_NET_ADMIN")]
    NotPermitted(u16),
    /// A flag that cannot be used as given.
    #[error("{flag}: {reason}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// Why.
        reason: String,
    },
    /// Any other host I/O failure.
    #[error(transparent)]
    Io(#[from] IoError),
}

impl Error {
    /// The HCI status a command failing with this error is answered with
    /// (Core Vol 1 Part F), for the errors a guest's command can cause.
    pub fn status(&self) -> u8 {
        match self {
            Error::UnknownCommand(_) => status::UNKNOWN_COMMAND,
            Error::InvalidParameters { .. }
            | Error::Malformed(_)
            | Error::LengthMismatch { .. } => status::INVALID_PARAMETERS,
            Error::Disallowed { .. } => status::COMMAND_DISALLOWED,
            // Host-side failures: "Unspecified Error".
            _ => 0x1f,
        }
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_one_line_messages() {
        assert_eq!(Error::UnknownCommand(0xfc00).status(), 0x01);
        let e = Error::InvalidParameters {
            opcode: 0x0c13,
            reason: "short",
        };
        assert_eq!(e.status(), 0x12);
        for e in [Error::AdapterBusy(0), Error::AdapterInUse(1), e] {
            assert!(!e.to_string().contains('\n'));
        }
        assert!(Error::AdapterBusy(0).to_string().contains("power off"));
        assert!(Error::AdapterInUse(0).to_string().contains("claimed"));
    }
}
