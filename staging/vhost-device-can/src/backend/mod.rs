// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The host side of the device: a CAN bus behind one trait.
//!
//! [`socketcan::SocketCan`] is a host interface (a real controller or
//! `vcan`) through a raw CAN socket; [`bus::BusPort`] is one guest's seat on
//! a virtual bus that all the guests of one daemon share, with no host
//! interface at all. Both put their fd on the vring worker's epoll and
//! report what happened through [`CanBackend::poll`].

pub mod bus;
pub mod socketcan;

use vhost_device_common::EventRegistry;

use crate::error::Result;
use crate::frame::CanFrame;
use crate::protocol::{
    VIRTIO_CAN_F_CAN_CLASSIC, VIRTIO_CAN_F_CAN_FD, VIRTIO_CAN_F_LATE_TX_ACK,
    VIRTIO_CAN_F_RTR_FRAMES,
};

/// What the host side can carry, turned into the feature bits offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// CAN FD frames.
    pub fd: bool,
    /// Confirms each frame once it was on the bus.
    pub late_tx_ack: bool,
}

impl Capabilities {
    /// The virtio feature bits to offer. Classic frames (with RTR) are
    /// carried by every CAN bus.
    pub fn features(self) -> u64 {
        let mut bits = VIRTIO_CAN_F_CAN_CLASSIC | VIRTIO_CAN_F_RTR_FRAMES;
        if self.fd {
            bits |= VIRTIO_CAN_F_CAN_FD;
        }
        if self.late_tx_ack {
            bits |= VIRTIO_CAN_F_LATE_TX_ACK;
        }
        bits
    }
}

/// How a frame handed to [`CanBackend::send`] is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxAck {
    /// It is on the bus already.
    Done,
    /// A [`BackendEvent::Sent`] will follow, in sending order.
    Later,
}

/// Something the host side reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendEvent {
    /// A frame from the bus, from another node than this guest.
    Frame(CanFrame),
    /// The oldest frame acknowledged [`TxAck::Later`] left (`true`) or
    /// could not leave (`false`).
    Sent(bool),
    /// The controller went bus-off.
    BusOff,
}

/// One guest's CAN controller on the host side.
pub trait CanBackend: Send + std::fmt::Debug + 'static {
    /// What it can carry.
    fn capabilities(&self) -> Capabilities;

    /// Puts the backend's fd on the worker's epoll under `token`.
    fn activate(&mut self, events: &EventRegistry, token: u16) -> Result<()>;

    /// Whether the driver asked for LATE_TX_ACK.
    fn set_late_tx_ack(&mut self, on: bool);

    /// The controller joined (`true`) or left the bus. A backend delivers
    /// no frames while off the bus.
    fn set_started(&mut self, started: bool);

    /// Sends one frame.
    fn send(&mut self, frame: &CanFrame) -> Result<TxAck>;

    /// Reports what happened since the last call (the fd was ready).
    fn poll(&mut self, sink: &mut dyn FnMut(BackendEvent));
}

impl CanBackend for Box<dyn CanBackend> {
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    fn activate(&mut self, events: &EventRegistry, token: u16) -> Result<()> {
        (**self).activate(events, token)
    }
    fn set_late_tx_ack(&mut self, on: bool) {
        (**self).set_late_tx_ack(on);
    }
    fn set_started(&mut self, started: bool) {
        (**self).set_started(started);
    }
    fn send(&mut self, frame: &CanFrame) -> Result<TxAck> {
        (**self).send(frame)
    }
    fn poll(&mut self, sink: &mut dyn FnMut(BackendEvent)) {
        (**self).poll(sink);
    }
}
