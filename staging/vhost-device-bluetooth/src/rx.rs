// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Packets on their way to the guest: a bounded backlog, and the RX
//! buffers the driver posted, filled one packet per buffer in order.
//!
//! Linux posts a single 1000-byte RX buffer and re-posts it only after its
//! workqueue handled the packet in it (`virtbt_rx_work`), so a controller
//! that answers a command with two events, or scan results that come in a
//! burst, must wait here until the next buffer arrives. Nothing assumes more
//! than one buffer, and nothing assumes exactly one either (newer drivers
//! fill the ring).
//!
//! An ACL packet longer than the buffer it is due to go into is split into
//! an ACL packet with the original boundary flag and continuing fragments
//! (PB = 0b01, Core Vol 4 Part E §5.4.2), which the host's L2CAP layer
//! reassembles. The controller's Read Buffer Size reply is left alone.

use std::collections::VecDeque;

use vhost_device_common::{DescChain, GuestMem, RateLimited};

use crate::packet::{Kind, Packet};
use crate::protocol::{ACL_PB_CONTINUING, HCI_ACLDATA_PKT};

/// Default number of packets held for the guest.
pub const DEFAULT_BACKLOG: usize = 64;

/// Most RX buffers held at once: the largest queue the device accepts.
pub const MAX_HELD: usize = 256;

/// The RX side of one device.
#[derive(Debug)]
pub struct Rx {
    backlog: VecDeque<Packet>,
    limit: usize,
    held: VecDeque<DescChain>,
    done: Vec<(u16, u32)>,
    dropped: u64,
    waiting: bool,
    log: RateLimited,
}

impl Rx {
    /// An RX side holding at most `limit` packets (at least one).
    pub fn new(limit: usize) -> Self {
        Rx {
            backlog: VecDeque::new(),
            limit: limit.max(1),
            held: VecDeque::new(),
            done: Vec::new(),
            dropped: 0,
            waiting: false,
            log: RateLimited::default(),
        }
    }

    /// Queues a packet for the guest. With the backlog full the packet is
    /// dropped, counted and logged; backends that can wait check
    /// [`Rx::has_room`] first and stop reading instead.
    pub fn push(&mut self, packet: Packet) -> bool {
        if self.backlog.len() >= self.limit {
            self.dropped += 1;
            let dropped = self.dropped;
            self.log.warn(|| {
                format!("RX backlog full: dropped a {:?} packet ({dropped} so far); the guest is not re-posting RX buffers", packet.kind())
            });
            return false;
        }
        self.backlog.push_back(packet);
        true
    }

    /// Whether another packet fits.
    pub fn has_room(&self) -> bool {
        self.backlog.len() < self.limit
    }

    /// Whether another packet fits; if not, remembers that a producer is
    /// waiting, so the device calls [`crate::backend::HciBackend::resume`]
    /// once a buffer took a packet.
    pub fn reserve(&mut self) -> bool {
        let room = self.has_room();
        self.waiting |= !room;
        room
    }

    /// Whether a producer waits and there is room now; clears the mark.
    pub fn take_resume(&mut self) -> bool {
        if self.waiting && self.has_room() {
            self.waiting = false;
            return true;
        }
        false
    }

    /// Packets waiting for a buffer.
    pub fn backlog(&self) -> usize {
        self.backlog.len()
    }

    /// Packets dropped because the backlog was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// RX buffers held.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// A buffer the driver posted. Returns the used length to complete it
    /// with at once if it cannot be held (nothing writable, or too many).
    pub fn post(&mut self, chain: DescChain) -> Option<u32> {
        if chain.writable().total_len() == 0 || !chain.readable().is_empty() {
            self.log
                .warn(|| "RX buffer is not one writable buffer: returned unused".into());
            return Some(0);
        }
        if self.held.len() >= MAX_HELD {
            return Some(0);
        }
        self.held.push_back(chain);
        None
    }

    /// Fills held buffers with waiting packets, in order.
    pub fn deliver(&mut self, mem: &GuestMem) {
        while let Some(room) = self.held.front().map(|c| c.writable().total_len()) {
            let Some(packet) = self.backlog.pop_front() else {
                return;
            };
            let Some(packet) = self.fit(packet, room) else {
                continue;
            };
            let Some(chain) = self.held.pop_front() else {
                return;
            };
            let mut writer = chain.writer(mem);
            if writer.write_all(packet.bytes()).is_err() {
                self.log
                    .warn(|| "RX buffer not writable: the packet for it is lost".into());
            }
            self.done.push((chain.head(), writer.used_len()));
        }
    }

    /// `packet` cut to fit `room` bytes: ACL packets are fragmented, with
    /// the rest queued first; any other packet that does not fit is
    /// dropped (events are at most 258 bytes, so only a tiny buffer hits
    /// this).
    fn fit(&mut self, packet: Packet, room: usize) -> Option<Packet> {
        if packet.bytes().len() <= room {
            return Some(packet);
        }
        if packet.kind() != Kind::Acl || room <= 5 {
            let (kind, len) = (packet.kind(), packet.bytes().len());
            self.log.warn(|| {
                format!("dropped a {kind:?} packet of {len} bytes: the RX buffer holds {room}")
            });
            return None;
        }
        let bytes = packet.into_bytes();
        let handle = u16::from_le_bytes([
            bytes.get(1).copied().unwrap_or(0),
            bytes.get(2).copied().unwrap_or(0),
        ]);
        let payload = bytes.get(5..).unwrap_or_default();
        let (first, rest) = payload.split_at((room - 5).min(payload.len()));
        let acl = |handle: u16, data: &[u8]| {
            let mut b = Vec::with_capacity(5 + data.len());
            b.push(HCI_ACLDATA_PKT);
            b.extend(handle.to_le_bytes());
            b.extend(u16::try_from(data.len()).unwrap_or(0).to_le_bytes());
            b.extend(data);
            Packet::decode(b).ok()
        };
        // Keep the handle and the broadcast flag; the rest continue.
        let continuing = (handle & !(0b11 << 12)) | ACL_PB_CONTINUING;
        if let Some(rest) = acl(continuing, rest) {
            self.backlog.push_front(rest);
        }
        acl(handle, first)
    }

    /// Buffers filled since the last call, as (head, used length).
    pub fn take_done(&mut self) -> std::vec::Drain<'_, (u16, u32)> {
        self.done.drain(..)
    }

    /// Whether filled buffers wait to be completed.
    pub fn has_done(&self) -> bool {
        !self.done.is_empty()
    }

    /// Forgets the held buffers (the queue stopped).
    pub fn forget_buffers(&mut self) {
        self.held.clear();
        self.done.clear();
    }

    /// Forgets everything (device reset).
    pub fn clear(&mut self) {
        self.forget_buffers();
        self.backlog.clear();
        self.waiting = false;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use vhost_device_common::mock::ChainBuilder;
    use vm_memory::Bytes;

    use super::*;

    fn event(code: u8, n: usize) -> Packet {
        Packet::event(code, &vec![0x11; n])
    }

    fn written(mem: &GuestMem, chain: &DescChain, len: u32) -> Vec<u8> {
        let region = chain.writable().get(0).unwrap();
        let mut buf = vec![0; len as usize];
        mem.read_slice(&mut buf, region.addr).unwrap();
        buf
    }

    #[test]
    fn one_buffer_at_a_time_in_order() {
        let mut b = ChainBuilder::new();
        let mut rx = Rx::new(8);
        for code in 1..=3 {
            assert!(rx.push(event(code, 4)));
        }
        // No buffer yet: everything waits.
        rx.deliver(b.memory());
        assert_eq!((rx.backlog(), rx.has_done()), (3, false));
        for code in 1..=3 {
            let chain = b.push_writable(1000).chain().unwrap();
            assert_eq!(rx.post(chain.clone()), None);
            rx.deliver(b.memory());
            let done: Vec<_> = rx.take_done().collect();
            assert_eq!(done, [(chain.head(), 7)]);
            assert_eq!(
                written(b.memory(), &chain, 7),
                [4, code, 4, 0x11, 0x11, 0x11, 0x11]
            );
        }
        assert_eq!(rx.backlog(), 0);
        // A buffer with nothing to put in it is held.
        let chain = b.push_writable(1000).chain().unwrap();
        assert_eq!(rx.post(chain), None);
        rx.deliver(b.memory());
        assert_eq!((rx.held(), rx.has_done()), (1, false));
        rx.push(event(9, 0));
        rx.deliver(b.memory());
        assert_eq!(rx.take_done().count(), 1);
    }

    #[test]
    fn the_backlog_is_bounded() {
        let mut rx = Rx::new(2);
        assert!(rx.push(event(1, 0)));
        assert!(rx.push(event(2, 0)));
        assert!(!rx.has_room());
        assert!(!rx.push(event(3, 0)));
        assert_eq!((rx.backlog(), rx.dropped()), (2, 1));
    }

    #[test]
    fn long_acl_packets_are_fragmented() {
        let mut b = ChainBuilder::new();
        let mut rx = Rx::new(8);
        let mut acl = vec![2, 0x2a, 0x20, 0xd0, 0x07];
        acl.extend((0..2000u32).map(|i| i as u8));
        rx.push(Packet::decode(acl.clone()).unwrap());
        let mut data = Vec::new();
        let mut flags = Vec::new();
        for _ in 0..3 {
            let chain = b.push_writable(1000).chain().unwrap();
            rx.post(chain.clone());
            rx.deliver(b.memory());
            let (_, len) = rx.take_done().next().unwrap();
            let bytes = written(b.memory(), &chain, len);
            let p = Packet::decode(bytes).unwrap();
            flags.push(u16::from_le_bytes([p.bytes()[1], p.bytes()[2]]));
            data.extend_from_slice(p.payload());
        }
        assert_eq!(flags, [0x202a, 0x102a, 0x102a]);
        assert_eq!(data, acl[5..]);
        assert_eq!(rx.backlog(), 0);
    }

    #[test]
    fn bad_buffers_are_returned_and_small_ones_skip_events() {
        let mut b = ChainBuilder::new();
        let mut rx = Rx::new(8);
        let chain = b.push_readable(&[0; 8]).chain().unwrap();
        assert_eq!(rx.post(chain), Some(0));
        rx.push(event(1, 10));
        rx.push(event(2, 0));
        let chain = b.push_writable(4).chain().unwrap();
        rx.post(chain.clone());
        rx.deliver(b.memory());
        // The 13-byte event cannot fit; the 3-byte one after it does.
        assert_eq!(rx.take_done().collect::<Vec<_>>(), [(chain.head(), 3)]);
        rx.post(b.push_writable(4).chain().unwrap());
        rx.forget_buffers();
        assert_eq!(rx.held(), 0);
    }
}
