// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Errors of the test frontend.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while driving a backend.
///
/// Variants carry enough context (message name, queue index, sizes) that a
/// failing test's output says what happened without a debugger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrontendError {
    /// The options are inconsistent (e.g. a queue size that is not a power
    /// of two).
    #[error("invalid test frontend options: {0}")]
    InvalidOptions(String),
    /// The backend socket could not be connected.
    #[error("cannot connect to vhost-user socket {path}: {source}")]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
    /// A vhost-user message failed or was rejected by the backend.
    #[error("vhost-user {msg} failed: {source}")]
    Vhost {
        /// Name of the message, e.g. `"SET_VRING_ADDR(1)"`.
        msg: String,
        /// Error reported by the `vhost` crate.
        source: vhost::Error,
    },
    /// The backend cannot provide what the options ask for.
    #[error("backend offers {available} queues, {requested} requested")]
    QueueCount {
        /// Queues requested in the options.
        requested: usize,
        /// Queues the backend reported with GET_QUEUE_NUM.
        available: usize,
    },
    /// A feature the operation needs was not negotiated.
    #[error("{0} was not negotiated")]
    NotNegotiated(&'static str),
    /// The guest memory could not be created or mapped.
    #[error("cannot set up guest memory: {0}")]
    Memory(String),
    /// A guest memory access failed (address outside guest memory).
    #[error("guest memory access at {addr:#x} failed: {source}")]
    GuestMemory {
        /// Guest physical address of the access.
        addr: u64,
        /// Underlying error.
        source: vm_memory::GuestMemoryError,
    },
    /// There is no queue with this index.
    #[error("no queue {index} (the frontend set up {count})")]
    NoSuchQueue {
        /// Requested index.
        index: usize,
        /// Number of queues.
        count: usize,
    },
    /// A chain must have at least one descriptor.
    #[error("queue {queue}: a chain needs at least one buffer")]
    EmptyChain {
        /// Queue index.
        queue: usize,
    },
    /// Not enough free descriptors for the chain.
    #[error("queue {queue}: out of descriptors ({needed} needed, {free} free)")]
    NoDescriptors {
        /// Queue index.
        queue: usize,
        /// Descriptors the chain needs.
        needed: usize,
        /// Descriptors currently free.
        free: usize,
    },
    /// Not enough free buffer space for the chain's data.
    #[error("queue {queue}: out of buffer space ({needed} bytes needed, area is {area} bytes)")]
    NoBufferSpace {
        /// Queue index.
        queue: usize,
        /// Bytes the chain needs.
        needed: u64,
        /// Size of the queue's whole data area.
        area: u64,
    },
    /// [`TestQueue::request`](super::TestQueue::request) needs an idle queue.
    #[error("queue {queue}: {in_flight} chains still in flight")]
    QueueBusy {
        /// Queue index.
        queue: usize,
        /// Chains not yet returned by the device.
        in_flight: usize,
    },
    /// No used buffer arrived in time.
    #[error("queue {queue}: no used buffer within {timeout:?} ({in_flight} chains in flight)")]
    Timeout {
        /// Queue index.
        queue: usize,
        /// How long we waited.
        timeout: Duration,
        /// Chains not yet returned by the device.
        in_flight: usize,
    },
    /// The device put an id in the used ring that is not an in-flight chain.
    #[error("queue {queue}: device returned used id {id}, which is not in flight")]
    BadUsedId {
        /// Queue index.
        queue: usize,
        /// Id found in the used ring.
        id: u32,
    },
    /// The device moved `used.idx` further than there are chains in flight.
    #[error("queue {queue}: used.idx jumped from {last} to {now} with only {in_flight} in flight")]
    BadUsedIdx {
        /// Queue index.
        queue: usize,
        /// Last index we consumed.
        last: u16,
        /// Index the device published.
        now: u16,
        /// Chains in flight.
        in_flight: usize,
    },
    /// An eventfd or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: String,
        /// Underlying error.
        source: io::Error,
    },
    /// The backend sent a malformed reply to a message we encode ourselves.
    #[error("bad reply to {msg}: {detail}")]
    BadReply {
        /// Message name.
        msg: &'static str,
        /// What was wrong.
        detail: String,
    },
}

impl FrontendError {
    pub(crate) fn vhost(msg: impl Into<String>) -> impl FnOnce(vhost::Error) -> Self {
        move |source| FrontendError::Vhost {
            msg: msg.into(),
            source,
        }
    }

    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Self {
        move |source| FrontendError::Io {
            what: what.into(),
            source,
        }
    }

    pub(crate) fn mem(addr: u64) -> impl FnOnce(vm_memory::GuestMemoryError) -> Self {
        move |source| FrontendError::GuestMemory { addr, source }
    }
}
