// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! An in-process vhost-user frontend: the role QEMU plays, for tests and
//! benchmarks.
//!
//! [`TestFrontend::connect`] connects to a backend's Unix socket, negotiates
//! features, shares a memfd as guest memory (`SET_MEM_TABLE`, the fd travels
//! with SCM_RIGHTS) and sets up and enables split virtqueues, each with its
//! own kick and call eventfds. A [`TestQueue`] then posts descriptor chains
//! built from readable and writable buffers, kicks, and waits for used
//! elements on the call eventfd.
//!
//! ```no_run
//! use std::time::Duration;
//! use vhost_device_common::testing::{FrontendOptions, TestFrontend};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let opts = FrontendOptions { num_queues: Some(1), ..Default::default() };
//! let mut fe = TestFrontend::connect_retry("/tmp/dev.sock", opts, Duration::from_secs(5))?;
//! let used = fe.queue(0)?.request(&[b"ping"], &[64], Duration::from_secs(1))?;
//! assert_eq!(used.data, b"ping");
//! fe.disconnect()?;
//! # Ok(())
//! # }
//! ```
//!
//! # Driving load
//!
//! [`TestQueue::request_into`] and [`TestQueue::wait_used_into`] reuse the
//! caller's [`Used`], and descriptors and buffer space are recycled when a
//! chain comes back, so a loop of millions of requests allocates nothing. To
//! keep several requests in flight, [`TestQueue::add`] a batch, kick once,
//! then for every [`TestQueue::wait_used_into`] add the next one. Queues are
//! independent: [`TestFrontend::queues_mut`] lets scoped threads drive one
//! each. [`TestQueue::call_fd`] and [`TestQueue::try_used_into`] serve load
//! generators with their own poll loop.
//!
//! # Notification suppression
//!
//! [`TestQueue::kick`] behaves like a guest driver: with EVENT_IDX it kicks
//! only when the new avail index crosses the device's `avail_event`, without
//! it only when `VIRTQ_USED_F_NO_NOTIFY` is clear. A device that has not yet
//! re-armed `avail_event` must find the new chain when it re-checks the ring,
//! so a test must not expect every request to produce a kick. Use
//! [`TestQueue::notify`] to kick unconditionally.
//!
//! # Guest memory layout
//!
//! All page aligned, starting at [`FrontendOptions::mem_base`]: the rings of
//! every queue, then a scratch area per queue that the frontend never
//! touches (for hand-made chains, see [`TestQueue::add_raw`]), then the rest
//! split evenly into one data area per queue, from which chain buffers are
//! allocated and recycled.

mod alloc;
mod error;
mod frontend;
mod memory;
mod options;
mod process;
mod queue;
mod ring;

pub use self::error::FrontendError;
pub use self::frontend::TestFrontend;
pub use self::options::{supported_protocol_features, FrontendOptions, UNSUPPORTED_FEATURES};
pub use self::process::{
    capability_sets, default_seccomp_mode, running_with_capabilities, seccomp_mode,
    threads_beyond_capabilities, wait_for_default_seccomp, wait_for_seccomp, DaemonProcess,
    PROCESS_WAIT,
};
pub use self::queue::{RawDesc, TestQueue, Used};
pub use self::ring::{VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
