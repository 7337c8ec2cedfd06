// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! vhost-user backend for virtio-rpmsg (device ID 7).
//!
//! - [`protocol`]: the wire format (`rpmsg_hdr`, `rpmsg_ns_msg`);
//!   [`message`]: a TX chain decoded once.
//! - [`endpoints`]: the channel table, address learning and the bounded
//!   queues towards the host.
//! - [`device`]: the virtio device; [`ports`]: its host fds on the epoll;
//!   [`batch`]: its per-session message buffers between queues and sockets.
//! - [`backend`]: the host side of a channel (Unix socket, guest-to-guest
//!   link, echo).
//! - [`args`], [`config`]: the command line and what it builds.

pub mod args;
pub mod backend;
pub mod batch;
pub mod config;
pub mod device;
pub mod endpoints;
pub mod error;
pub mod message;
pub mod ports;
pub mod protocol;

pub use config::Config;
pub use device::RpmsgDevice;
pub use error::{Error, Result};
