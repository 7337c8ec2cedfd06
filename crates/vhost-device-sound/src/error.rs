// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The crate's error type.

/// What can stop the daemon from starting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag has a bad value.
    #[error("{flag}: {reason}")]
    BadArgument {
        /// The flag, as typed.
        flag: &'static str,
        /// Why the value is refused.
        reason: String,
    },
    /// The backend was not compiled in.
    #[error("the {0} backend is not built into this binary (cargo feature {1})")]
    BackendMissing(&'static str, &'static str),
    /// A backend could not be set up.
    #[error(transparent)]
    Backend(#[from] crate::backend::BackendError),
    /// The daemon failed.
    #[error(transparent)]
    Daemon(#[from] vhost_device_common::Error),
}

/// Why a guest request failed. Each error knows the status the guest gets
/// for it; the device turns it into the reply and logs it in one place.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The request could not be read: too short, too long, or outside
    /// guest memory.
    #[error("malformed request: {0}")]
    Malformed(#[from] vhost_device_common::ChainError),
    /// A request code the device does not know.
    #[error("unknown request {0:#x}")]
    UnknownRequest(u32),
    /// A control element request without VIRTIO_SND_F_CTLS negotiated.
    #[error("request {0:#x} needs VIRTIO_SND_F_CTLS")]
    NoControls(u32),
    /// A TLV request: no control has TLV access.
    #[error("request {0:#x}: no control element has TLV access")]
    NoTlv(u32),
    /// An item information query out of range, or too large for its reply.
    #[error("info query {code:#x}: {reason}")]
    BadQuery {
        /// The request code.
        code: u32,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A jack, stream or control id beyond the device's.
    #[error("no {kind} {id}")]
    NoSuchItem {
        /// "jack", "stream" or "control".
        kind: &'static str,
        /// The id the driver gave.
        id: u32,
    },
    /// A PCM request not allowed in the stream's state (§5.14.6.6.1).
    #[error("stream {stream}: request {code:#x} is not valid in state {state:?}")]
    BadTransition {
        /// The stream.
        stream: usize,
        /// The request code.
        code: u32,
        /// Where the stream is.
        state: crate::stream::PcmState,
    },
    /// A value the spec or the item's description rules out.
    #[error("{kind} {id}: {reason}")]
    BadValue {
        /// "jack", "stream" or "control".
        kind: &'static str,
        /// Its id.
        id: u32,
        /// What is wrong.
        reason: &'static str,
    },
    /// Parameters the device does not offer.
    #[error("stream {stream}: {what} is not supported")]
    Unsupported {
        /// The stream.
        stream: usize,
        /// The parameter.
        what: &'static str,
    },
    /// The host backend failed.
    #[error("stream {stream}: {source}")]
    Host {
        /// The stream.
        stream: usize,
        /// The backend's error.
        source: crate::backend::BackendError,
    },
}

impl RequestError {
    /// The `VIRTIO_SND_S_*` status the guest gets.
    pub fn status(&self) -> u32 {
        use crate::protocol::{VIRTIO_SND_S_BAD_MSG, VIRTIO_SND_S_IO_ERR, VIRTIO_SND_S_NOT_SUPP};
        match self {
            RequestError::Malformed(_)
            | RequestError::BadQuery { .. }
            | RequestError::NoSuchItem { .. }
            | RequestError::BadTransition { .. }
            | RequestError::BadValue { .. } => VIRTIO_SND_S_BAD_MSG,
            RequestError::UnknownRequest(_)
            | RequestError::NoControls(_)
            | RequestError::NoTlv(_)
            | RequestError::Unsupported { .. } => VIRTIO_SND_S_NOT_SUPP,
            RequestError::Host { .. } => VIRTIO_SND_S_IO_ERR,
        }
    }
}
