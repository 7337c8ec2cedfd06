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
