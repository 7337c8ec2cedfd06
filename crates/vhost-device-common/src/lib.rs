// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The shared core of the vhost-device backends.
//!
//! A device crate implements [`VirtioDevice`] and its `main` hands a factory
//! for it to [`daemon::serve`] with the [`SocketArgs`] it flattened into its
//! command line. The core does the rest: sockets, one thread per guest, a
//! fresh device per connection, signal handling, the vring worker and its
//! EVENT_IDX loop, descriptor-chain validation ([`chain`]), config bounds
//! ([`config`]) and host-fd events ([`events`]).
//!
//! With the `test-frontend` feature, [`testing`] holds an in-process
//! vhost-user frontend that drives any backend over a real socket.

pub mod activation;
pub mod capabilities;
pub mod chain;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod device;
#[cfg(feature = "test-frontend")]
pub mod echo;
pub mod error;
pub mod events;
mod inflight;
#[cfg(any(test, feature = "test-frontend"))]
pub mod mock;
pub mod queue;
pub mod ratelimit;
mod ring;
pub mod sandbox;
pub mod socket;
#[cfg(feature = "test-frontend")]
pub mod testing;
pub mod vring;

pub use chain::{DescChain, Reader, Region, Writer};
pub use device::{
    DeviceBackend, DeviceResult, GuestMem, Queue, Queues, VirtioDevice, TRANSPORT_FEATURES,
};
pub use error::{ChainError, Error, IoError};
pub use events::EventRegistry;
pub use ratelimit::RateLimited;
pub use sandbox::{
    CapSet, FsAccess, FsRule, LandlockMode, SandboxArgs, SandboxPolicy, SeccompMode, SeccompPolicy,
};
pub use socket::{SocketArgs, SocketFileGuard};
pub use vmm_sys_util::epoll::EventSet;
