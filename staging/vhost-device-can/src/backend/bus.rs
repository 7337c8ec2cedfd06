// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A virtual CAN bus inside the daemon, shared by all its guests.
//!
//! Each connected guest holds a [`BusPort`]. A frame one guest sends is put
//! into the inbox of every other port whose controller is started, and that
//! port's eventfd wakes its worker; the sender never gets its own frame
//! back (the Linux driver echoes sent frames itself). Delivery is the bus
//! acknowledgement, so LATE_TX_ACK is offered and costs nothing. No host
//! interface, root or kernel module is involved.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use vhost_device_common::IoError;

use log::{debug, info};
use vhost_device_common::{EventRegistry, EventSet, RateLimited};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::{BackendEvent, CanBackend, Capabilities, TxAck};
use crate::error::Result;
use crate::frame::CanFrame;

/// The bus: a seat per guest.
#[derive(Debug)]
pub struct VirtualBus {
    /// Each seat with its guest index, so that a sender skips its own seat
    /// without touching its reference count.
    ports: Mutex<Vec<(usize, Weak<Port>)>>,
    /// Frames an inbox holds before the oldest is dropped.
    inbox_limit: usize,
}

/// One guest's seat: its inbox and the eventfd that wakes its worker.
#[derive(Debug)]
struct Port {
    guest: usize,
    inbox: Mutex<Inbox>,
    wake: EventFd,
    log: RateLimited,
}

#[derive(Debug, Default)]
struct Inbox {
    frames: VecDeque<CanFrame>,
    started: bool,
    bus_off: bool,
    dropped: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the bus down with it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl VirtualBus {
    /// An empty bus whose inboxes hold up to `inbox_limit` frames each.
    pub fn new(inbox_limit: usize) -> Arc<Self> {
        Arc::new(VirtualBus {
            ports: Mutex::new(Vec::new()),
            inbox_limit: inbox_limit.max(1),
        })
    }

    /// Seats guest `guest` on the bus, replacing its earlier seat if a
    /// former connection's device is still being torn down.
    pub fn attach(self: &Arc<Self>, guest: usize) -> Result<BusPort> {
        let wake = EventFd::new(EFD_NONBLOCK).map_err(|e| IoError::new("bus eventfd", e))?;
        let port = Arc::new(Port {
            guest,
            inbox: Mutex::new(Inbox::default()),
            wake,
            log: RateLimited::default(),
        });
        let mut ports = lock(&self.ports);
        ports.retain(|(g, p)| *g != guest && p.strong_count() > 0);
        ports.push((guest, Arc::downgrade(&port)));
        Ok(BusPort {
            bus: self.clone(),
            port,
            late_ack: false,
        })
    }

    fn live_ports(&self) -> Vec<Arc<Port>> {
        lock(&self.ports)
            .iter()
            .filter_map(|(_, p)| p.upgrade())
            .collect()
    }

    /// Takes guest `guest`'s controller off the bus as a real controller
    /// would after too many errors. Returns false if that guest's
    /// controller is not on the bus.
    pub fn force_bus_off(&self, guest: usize) -> bool {
        for port in self.live_ports() {
            if port.guest == guest {
                let mut inbox = lock(&port.inbox);
                if !inbox.started {
                    return false;
                }
                inbox.bus_off = true;
                inbox.started = false;
                inbox.frames.clear();
                drop(inbox);
                port.wake();
                return true;
            }
        }
        false
    }

    /// Puts a frame on the bus from outside any guest (the control socket).
    /// Returns how many guests it reached.
    pub fn inject(&self, frame: &CanFrame) -> usize {
        self.deliver(None, frame)
    }

    /// Frames each seated guest dropped because its inbox was full.
    pub fn dropped(&self) -> Vec<(usize, u64)> {
        let mut out: Vec<(usize, u64)> = self
            .live_ports()
            .iter()
            .map(|p| (p.guest, lock(&p.inbox).dropped))
            .collect();
        out.sort_unstable();
        out
    }

    fn deliver(&self, from: Option<usize>, frame: &CanFrame) -> usize {
        // The bus lock is held for the whole delivery: every node sees the
        // frames in one order, as on a wire, even when a node answers a
        // frame before another node has been handed it.
        let ports = lock(&self.ports);
        let mut reached = 0;
        let others = ports.iter().filter(|(guest, _)| Some(*guest) != from);
        for port in others.filter_map(|(_, p)| p.upgrade()) {
            let mut inbox = lock(&port.inbox);
            if !inbox.started {
                continue;
            }
            reached += 1;
            let was_empty = inbox.frames.is_empty();
            if inbox.frames.len() >= self.inbox_limit {
                // The oldest goes, so that a guest that stopped reading
                // gets the latest traffic when it comes back.
                inbox.frames.pop_front();
                inbox.dropped += 1;
                let dropped = inbox.dropped;
                port.log.warn(|| {
                    format!(
                        "bus: guest {} is not reading; dropped {dropped} frames so far",
                        port.guest
                    )
                });
            }
            inbox.frames.push_back(*frame);
            drop(inbox);
            // The reader clears the eventfd before it empties the inbox, so
            // a frame added to a non-empty inbox is always seen.
            if was_empty {
                port.wake();
            }
        }
        reached
    }
}

impl Port {
    fn wake(&self) {
        if let Err(e) = self.wake.write(1) {
            self.log
                .warn(|| format!("bus: cannot wake guest {}: {e}", self.guest));
        }
    }
}

/// One guest's seat on a [`VirtualBus`]; leaves the bus when dropped.
#[derive(Debug)]
pub struct BusPort {
    bus: Arc<VirtualBus>,
    port: Arc<Port>,
    late_ack: bool,
}

impl BusPort {
    /// The bus.
    pub fn bus(&self) -> &Arc<VirtualBus> {
        &self.bus
    }
}

impl CanBackend for BusPort {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fd: true,
            late_tx_ack: true,
        }
    }

    fn activate(&mut self, events: &EventRegistry, token: u16) -> Result<()> {
        events
            .register(&self.port.wake, EventSet::IN, token)
            .map_err(|e| IoError::new("registering the bus eventfd", e).into())
    }

    fn set_late_tx_ack(&mut self, on: bool) {
        self.late_ack = on;
    }

    fn set_started(&mut self, started: bool) {
        let mut inbox = lock(&self.port.inbox);
        inbox.started = started;
        inbox.bus_off = false;
        if !started {
            inbox.frames.clear();
        }
        debug!("bus: guest {} started={started}", self.port.guest);
    }

    fn send(&mut self, frame: &CanFrame) -> Result<TxAck> {
        self.bus.deliver(Some(self.port.guest), frame);
        // Delivered to every listener, or to nobody: either way the frame
        // has been on the bus, which is all LATE_TX_ACK asks.
        Ok(TxAck::Done)
    }

    fn poll(&mut self, sink: &mut dyn FnMut(BackendEvent)) {
        // Clear the wake-up first: see `VirtualBus::deliver`.
        let _ = self.port.wake.read();
        let (frames, bus_off) = {
            let mut inbox = lock(&self.port.inbox);
            let bus_off = std::mem::take(&mut inbox.bus_off);
            (std::mem::take(&mut inbox.frames), bus_off)
        };
        if bus_off {
            info!("bus: guest {} forced bus-off", self.port.guest);
            sink(BackendEvent::BusOff);
        }
        for frame in frames {
            sink(BackendEvent::Frame(frame));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn drain(port: &mut BusPort) -> Vec<BackendEvent> {
        let mut out = Vec::new();
        port.poll(&mut |e| out.push(e));
        out
    }

    #[test]
    fn frames_reach_the_others_only_while_started() {
        let bus = VirtualBus::new(8);
        let mut a = bus.attach(0).unwrap();
        let mut b = bus.attach(1).unwrap();
        let mut c = bus.attach(2).unwrap();
        a.set_started(true);
        b.set_started(true);
        let f = CanFrame::new(0x123, false, false, &[1, 2]);
        assert_eq!(a.send(&f).unwrap(), TxAck::Done);
        assert_eq!(drain(&mut b), [BackendEvent::Frame(f)]);
        assert!(drain(&mut a).is_empty(), "no echo to the sender");
        assert!(
            drain(&mut c).is_empty(),
            "a stopped controller hears nothing"
        );
        c.set_started(true);
        b.send(&f).unwrap();
        assert_eq!(drain(&mut a).len(), 1);
        assert_eq!(drain(&mut c).len(), 1);
    }

    #[test]
    fn a_full_inbox_drops_the_oldest() {
        let bus = VirtualBus::new(2);
        let mut a = bus.attach(0).unwrap();
        let mut b = bus.attach(1).unwrap();
        b.set_started(true);
        for id in 1..=5 {
            a.send(&CanFrame::new(id, false, false, &[])).unwrap();
        }
        let ids: Vec<u32> = drain(&mut b)
            .into_iter()
            .map(|e| match e {
                BackendEvent::Frame(f) => f.id,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ids, [4, 5]);
        assert_eq!(bus.dropped(), [(0, 0), (1, 3)]);
    }

    #[test]
    fn dropped_ports_leave_and_reattach_replaces() {
        let bus = VirtualBus::new(4);
        let a = bus.attach(0).unwrap();
        let b = bus.attach(1).unwrap();
        drop(b);
        let _b2 = bus.attach(1).unwrap();
        let _b3 = bus.attach(1).unwrap();
        assert_eq!(bus.live_ports().len(), 2);
        drop(a);
        assert_eq!(bus.live_ports().len(), 1);
    }

    #[test]
    fn forced_bus_off_is_reported_once() {
        let bus = VirtualBus::new(4);
        let mut a = bus.attach(0).unwrap();
        assert!(!bus.force_bus_off(0), "not on the bus yet");
        a.set_started(true);
        assert!(bus.force_bus_off(0));
        assert_eq!(drain(&mut a), [BackendEvent::BusOff]);
        assert!(drain(&mut a).is_empty());
    }
}
