// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The controller side of the device, behind one trait.
//!
//! - [`builtin`]: a BR/EDR and LE controller inside the daemon, whose
//!   guests share one simulated radio.
//! - [`link`] over [`endpoint`]: an H:4 byte stream (a Unix socket, a TCP
//!   port, a serial device or pty), re-framed from the packet headers, or a
//!   host adapter through the kernel's HCI user channel; reconnected when
//!   it drops.

pub mod builtin;
pub mod endpoint;
pub mod link;

use std::fmt;

use vhost_device_common::EventRegistry;

use crate::error::Result;
use crate::packet::Packet;
use crate::rx::Rx;

/// A controller the guest's host stack talks to.
///
/// The device hands every packet from the guest to [`HciBackend::send`];
/// packets for the guest go into the [`Rx`] backlog, either at once (the
/// built-in controller answers in `send`) or when a host fd the backend
/// registered becomes ready ([`HciBackend::ready`]). All calls come from
/// the connection's one worker thread.
pub trait HciBackend: Send + fmt::Debug {
    /// Registers the backend's host fds, with tokens of its own choosing.
    fn activate(&mut self, events: EventRegistry) -> Result<()>;

    /// A packet from the guest.
    fn send(&mut self, packet: Packet, rx: &mut Rx) -> Result<()>;

    /// A host fd registered with `token` is ready.
    fn ready(&mut self, token: u16, rx: &mut Rx) -> Result<()>;

    /// The backlog has room again after the backend stopped reading
    /// because it was full.
    fn resume(&mut self, _rx: &mut Rx) -> Result<()> {
        Ok(())
    }

    /// The guest reset the device: drop state tied to the old driver.
    fn reset(&mut self) {}
}
