// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The driver side of one split virtqueue.

use std::fmt;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use super::alloc::{BufferRing, DescPool};
use super::error::FrontendError;
use super::ring::{
    encode_desc, need_event, RingLayout, DESC_SIZE, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_WRITE, VIRTQ_USED_F_NO_NOTIFY,
};

/// One descriptor of a hand-made chain for [`TestQueue::add_raw`].
///
/// Nothing is validated: this is how tests feed a device malformed chains
/// (addresses outside guest memory, wrong directions, loops, huge lengths).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RawDesc {
    /// Guest physical address of the buffer.
    pub addr: u64,
    /// Length of the buffer in bytes.
    pub len: u32,
    /// `VIRTQ_DESC_F_*` flags, written verbatim.
    pub flags: u16,
    /// With `VIRTQ_DESC_F_NEXT`: the position *in the `descs` slice* of the
    /// next descriptor, translated to the real table slot by
    /// [`TestQueue::add_raw`]. Values `>= descs.len()` are written verbatim,
    /// so a test can point past the table.
    pub next: u16,
}

impl RawDesc {
    /// A device-readable descriptor, chained to slice position `next` if
    /// given.
    pub fn readable(addr: u64, len: u32, next: Option<u16>) -> Self {
        Self::with_next(addr, len, 0, next)
    }

    /// A device-writable descriptor, chained to slice position `next` if
    /// given.
    pub fn writable(addr: u64, len: u32, next: Option<u16>) -> Self {
        Self::with_next(addr, len, VIRTQ_DESC_F_WRITE, next)
    }

    fn with_next(addr: u64, len: u32, flags: u16, next: Option<u16>) -> Self {
        RawDesc {
            addr,
            len,
            flags: flags | next.map_or(0, |_| VIRTQ_DESC_F_NEXT),
            next: next.unwrap_or(0),
        }
    }

    /// The descriptor in its 16-byte little-endian wire format, for tests
    /// that build indirect tables by hand in the scratch area.
    pub fn to_bytes(&self) -> [u8; 16] {
        encode_desc(self.addr, self.len, self.flags, self.next)
    }
}

/// A chain the device has returned through the used ring.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Used {
    /// Head descriptor index, as returned by [`TestQueue::add`].
    pub head: u16,
    /// Length the device reported (bytes written to the writable buffers).
    pub len: u32,
    /// The first `min(len, writable size)` bytes of the chain's writable
    /// buffers, concatenated. Empty for [`TestQueue::add_raw`] chains.
    pub data: Vec<u8>,
}

/// Book-keeping for one in-flight chain, indexed by its head.
#[derive(Debug, Clone, Copy, Default)]
struct Chain {
    in_flight: bool,
    last: u16,
    count: u16,
    block: Option<u64>,
    wr_addr: u64,
    wr_len: u64,
}

/// Where a queue lives in guest memory. Built by the frontend.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueArea {
    /// GPA of the ring area (descriptor table first).
    pub rings: u64,
    /// GPA and size of the test-controlled scratch area.
    pub scratch: (u64, u64),
    /// GPA and size of the data area the buffer allocator manages.
    pub data: (u64, u64),
}

/// The driver side of one split virtqueue.
///
/// Obtained from [`TestFrontend::queue`](super::TestFrontend::queue).
/// Buffers of completed chains are recycled, so a queue can serve any
/// number of requests.
pub struct TestQueue {
    index: usize,
    mem: GuestMemoryMmap,
    layout: RingLayout,
    area: QueueArea,
    event_idx: bool,
    indirect: bool,
    zero_writable: bool,
    kick: EventFd,
    call: EventFd,
    descs: DescPool,
    chains: Vec<Chain>,
    bufs: BufferRing,
    /// Our shadow of `avail.idx`.
    avail_idx: u16,
    /// `avail.idx` when we last decided whether to kick.
    kicked_idx: u16,
    /// Next used-ring index to consume.
    last_used: u16,
    in_flight: usize,
}

impl fmt::Debug for TestQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestQueue")
            .field("index", &self.index)
            .field("size", &self.layout.size)
            .field("area", &self.area)
            .field("event_idx", &self.event_idx)
            .field("avail_idx", &self.avail_idx)
            .field("last_used", &self.last_used)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

/// Options of one queue, chosen by the frontend after negotiation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct QueueConfig {
    pub index: usize,
    pub size: u16,
    pub event_idx: bool,
    pub indirect: bool,
    pub zero_writable: bool,
}

impl TestQueue {
    pub(crate) fn new(
        cfg: QueueConfig,
        mem: GuestMemoryMmap,
        area: QueueArea,
    ) -> Result<Self, FrontendError> {
        let new_eventfd = |what: &str| {
            EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC).map_err(FrontendError::io(
                format!("queue {}: {what} eventfd", cfg.index),
            ))
        };
        Ok(TestQueue {
            index: cfg.index,
            mem,
            layout: RingLayout::new(cfg.size),
            area,
            event_idx: cfg.event_idx,
            indirect: cfg.indirect,
            zero_writable: cfg.zero_writable,
            kick: new_eventfd("kick")?,
            call: new_eventfd("call")?,
            descs: DescPool::new(cfg.size),
            chains: vec![Chain::default(); usize::from(cfg.size)],
            bufs: BufferRing::new(area.data.1, usize::from(cfg.size)),
            avail_idx: 0,
            kicked_idx: 0,
            last_used: 0,
            in_flight: 0,
        })
    }

    /// Forgets every chain and zeroes the rings, as a driver does when it
    /// sets the queue up again after a device reset.
    pub(crate) fn reset(&mut self) -> Result<(), FrontendError> {
        let zeros = vec![0u8; usize::try_from(self.layout.total).unwrap_or(0)];
        self.write_bytes(self.area.rings, &zeros)?;
        self.descs = DescPool::new(self.layout.size);
        self.chains = vec![Chain::default(); usize::from(self.layout.size)];
        self.bufs = BufferRing::new(self.area.data.1, usize::from(self.layout.size));
        self.avail_idx = 0;
        self.kicked_idx = 0;
        self.last_used = 0;
        self.in_flight = 0;
        Ok(())
    }

    /// Queue index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Queue size (number of descriptors).
    pub fn size(&self) -> u16 {
        self.layout.size
    }

    /// Whether VIRTIO_RING_F_EVENT_IDX is in use on this queue.
    pub fn event_idx(&self) -> bool {
        self.event_idx
    }

    /// Number of chains added and not yet returned by the device.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Number of free descriptor-table slots.
    pub fn free_descriptors(&self) -> usize {
        usize::from(self.descs.num_free())
    }

    /// GPAs of the descriptor table, avail ring and used ring.
    pub fn ring_addresses(&self) -> (u64, u64, u64) {
        let base = self.area.rings;
        (
            base + self.layout.desc,
            base + self.layout.avail,
            base + self.layout.used,
        )
    }

    /// GPA and length of this queue's scratch area: guest memory that the
    /// queue never touches, for the buffers and tables of
    /// [`TestQueue::add_raw`] chains.
    pub fn scratch(&self) -> (u64, u64) {
        self.area.scratch
    }

    /// The guest memory (the same mapping the frontend shares with the
    /// backend), for reading and writing at guest physical addresses.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// Writes `data` to guest memory at `gpa` (e.g. into the scratch area).
    pub fn write_guest(&self, gpa: u64, data: &[u8]) -> Result<(), FrontendError> {
        self.write_bytes(gpa, data)
    }

    /// Reads guest memory at `gpa` into `buf`.
    pub fn read_guest(&self, gpa: u64, buf: &mut [u8]) -> Result<(), FrontendError> {
        self.mem
            .read_slice(buf, GuestAddress(gpa))
            .map_err(FrontendError::mem(gpa))
    }

    /// The eventfd the queue kicks, for benchmarks doing their own polling.
    pub fn kick_fd(&self) -> RawFd {
        self.kick.as_raw_fd()
    }

    /// The eventfd the device signals, for benchmarks doing their own
    /// polling. Readiness only means "look at the used ring".
    pub fn call_fd(&self) -> RawFd {
        self.call.as_raw_fd()
    }

    pub(crate) fn kick_eventfd(&self) -> &EventFd {
        &self.kick
    }

    pub(crate) fn call_eventfd(&self) -> &EventFd {
        &self.call
    }

    fn ring_gpa(&self, off: u64) -> GuestAddress {
        GuestAddress(self.area.rings + off)
    }

    fn write_bytes(&self, addr: u64, data: &[u8]) -> Result<(), FrontendError> {
        self.mem
            .write_slice(data, GuestAddress(addr))
            .map_err(FrontendError::mem(addr))
    }

    fn store_u16(&self, off: u64, v: u16, order: Ordering) -> Result<(), FrontendError> {
        let addr = self.ring_gpa(off);
        self.mem
            .store(v.to_le(), addr, order)
            .map_err(FrontendError::mem(addr.0))
    }

    fn load_u16(&self, off: u64, order: Ordering) -> Result<u16, FrontendError> {
        let addr = self.ring_gpa(off);
        self.mem
            .load::<u16>(addr, order)
            .map(u16::from_le)
            .map_err(FrontendError::mem(addr.0))
    }

    fn write_desc(
        &self,
        slot_addr: u64,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) -> Result<(), FrontendError> {
        self.write_bytes(slot_addr, &encode_desc(addr, len, flags, next))
    }

    fn alloc_descs(&mut self, count: usize) -> Result<(u16, u16, u16), FrontendError> {
        let no_descs = |free| FrontendError::NoDescriptors {
            queue: self.index,
            needed: count,
            free,
        };
        let n = u16::try_from(count).map_err(|_| no_descs(self.free_descriptors()))?;
        let (first, last) = self
            .descs
            .alloc(n)
            .ok_or_else(|| no_descs(self.free_descriptors()))?;
        Ok((first, last, n))
    }

    fn alloc_buf(&mut self, len: u64) -> Result<(u64, u64), FrontendError> {
        let (off, seq) = self.bufs.alloc(len).ok_or(FrontendError::NoBufferSpace {
            queue: self.index,
            needed: len,
            area: self.bufs.size(),
        })?;
        Ok((self.area.data.0 + off, seq))
    }

    /// Copies the readable buffers to guest memory and returns the GPA and
    /// total length of the writable part that follows them.
    fn fill_block(
        &self,
        mut addr: u64,
        readable: &[&[u8]],
        wr_total: u64,
    ) -> Result<u64, FrontendError> {
        for r in readable {
            self.write_bytes(addr, r)?;
            addr += r.len() as u64;
        }
        if self.zero_writable && wr_total > 0 {
            // So that a device reporting more than it wrote is caught by the
            // test's data comparison instead of matching stale bytes.
            static ZEROS: [u8; 4096] = [0; 4096];
            let mut at = addr;
            let end = addr + wr_total;
            while at < end {
                let n = usize::try_from(end - at).map_or(ZEROS.len(), |n| n.min(ZEROS.len()));
                self.write_bytes(at, ZEROS.get(..n).unwrap_or_default())?;
                at += n as u64;
            }
        }
        Ok(addr)
    }

    fn chain_sizes(
        &self,
        readable: &[&[u8]],
        writable: &[u32],
    ) -> Result<(usize, u64, u64), FrontendError> {
        let count = readable.len() + writable.len();
        if count == 0 {
            return Err(FrontendError::EmptyChain { queue: self.index });
        }
        let rd: u64 = readable.iter().map(|r| r.len() as u64).sum();
        let wr: u64 = writable.iter().map(|&w| u64::from(w)).sum();
        Ok((count, rd, wr))
    }

    /// Adds a chain of `readable` buffers (copied into guest memory) followed
    /// by device-writable buffers of the given lengths, and publishes it in
    /// the avail ring. Returns the head index, which [`Used::head`] will
    /// carry. Does not kick: see [`TestQueue::kick`].
    pub fn add(&mut self, readable: &[&[u8]], writable: &[u32]) -> Result<u16, FrontendError> {
        let (count, rd, wr) = self.chain_sizes(readable, writable)?;
        let (head, last, n) = self.alloc_descs(count)?;
        let (base, seq) = match self.alloc_buf(rd + wr) {
            Ok(v) => v,
            Err(e) => {
                self.descs.free(head, last, n);
                return Err(e);
            }
        };
        let result = self.write_direct_chain(head, base, readable, writable, wr);
        self.finish_add(head, last, n, Some(seq), base + rd, wr, result)
    }

    fn write_direct_chain(
        &self,
        head: u16,
        base: u64,
        readable: &[&[u8]],
        writable: &[u32],
        wr: u64,
    ) -> Result<(), FrontendError> {
        self.fill_block(base, readable, wr)?;
        let total = readable.len() + writable.len();
        let lens = readable
            .iter()
            .map(|r| (r.len(), 0))
            .chain(writable.iter().map(|&w| (w as usize, VIRTQ_DESC_F_WRITE)));
        let mut slot = head;
        let mut addr = base;
        for (i, (len, flags)) in lens.enumerate() {
            let next = self.descs.next(slot);
            let more = i + 1 < total;
            let flags = flags | if more { VIRTQ_DESC_F_NEXT } else { 0 };
            let len32 = u32::try_from(len).map_err(|_| FrontendError::NoBufferSpace {
                queue: self.index,
                needed: len as u64,
                area: self.bufs.size(),
            })?;
            let slot_addr = self.area.rings + self.layout.desc_entry(slot);
            self.write_desc(slot_addr, addr, len32, flags, if more { next } else { 0 })?;
            addr += len as u64;
            slot = next;
        }
        Ok(())
    }

    /// Like [`TestQueue::add`], but the buffers are described by an indirect
    /// table (VIRTIO_RING_F_INDIRECT_DESC), so the chain takes a single slot
    /// of the descriptor table.
    pub fn add_indirect(
        &mut self,
        readable: &[&[u8]],
        writable: &[u32],
    ) -> Result<u16, FrontendError> {
        if !self.indirect {
            return Err(FrontendError::NotNegotiated("VIRTIO_RING_F_INDIRECT_DESC"));
        }
        let (count, rd, wr) = self.chain_sizes(readable, writable)?;
        let table_len = DESC_SIZE * count as u64;
        let (head, last, n) = self.alloc_descs(1)?;
        let (table, seq) = match self.alloc_buf(table_len + rd + wr) {
            Ok(v) => v,
            Err(e) => {
                self.descs.free(head, last, n);
                return Err(e);
            }
        };
        let result = self.write_indirect_chain(head, table, table_len, readable, writable, wr);
        self.finish_add(head, last, n, Some(seq), table + table_len + rd, wr, result)
    }

    fn write_indirect_chain(
        &self,
        head: u16,
        table: u64,
        table_len: u64,
        readable: &[&[u8]],
        writable: &[u32],
        wr: u64,
    ) -> Result<(), FrontendError> {
        let base = table + table_len;
        self.fill_block(base, readable, wr)?;
        let total = readable.len() + writable.len();
        let lens = readable
            .iter()
            .map(|r| (r.len(), 0))
            .chain(writable.iter().map(|&w| (w as usize, VIRTQ_DESC_F_WRITE)));
        let mut addr = base;
        let mut entry = table;
        for (i, (len, flags)) in lens.enumerate() {
            let more = i + 1 < total;
            let next = u16::try_from(i + 1).unwrap_or(0);
            let flags = flags | if more { VIRTQ_DESC_F_NEXT } else { 0 };
            let len32 = u32::try_from(len).unwrap_or(u32::MAX);
            self.write_desc(entry, addr, len32, flags, if more { next } else { 0 })?;
            addr += len as u64;
            entry += DESC_SIZE;
        }
        let table_len32 = u32::try_from(table_len).map_err(|_| FrontendError::NoDescriptors {
            queue: self.index,
            needed: total,
            free: 0,
        })?;
        let slot_addr = self.area.rings + self.layout.desc_entry(head);
        self.write_desc(slot_addr, table, table_len32, VIRTQ_DESC_F_INDIRECT, 0)
    }

    /// Adds a hand-made chain: each [`RawDesc`] is written verbatim into its
    /// own descriptor-table slot, except that `next` is translated from a
    /// slice position to the real slot. The chain's head is the first
    /// element. No data is copied; [`Used::data`] will be empty.
    pub fn add_raw(&mut self, descs: &[RawDesc]) -> Result<u16, FrontendError> {
        if descs.is_empty() {
            return Err(FrontendError::EmptyChain { queue: self.index });
        }
        let (head, last, n) = self.alloc_descs(descs.len())?;
        let result = self.write_raw_chain(head, descs);
        self.finish_add(head, last, n, None, 0, 0, result)
    }

    fn write_raw_chain(&self, head: u16, descs: &[RawDesc]) -> Result<(), FrontendError> {
        // Slot of slice position `p`: walk the shadow links from the head.
        let slot_of = |p: u16| {
            let mut s = head;
            for _ in 0..p {
                s = self.descs.next(s);
            }
            s
        };
        let mut slot = head;
        for d in descs {
            let next = if usize::from(d.next) < descs.len() {
                slot_of(d.next)
            } else {
                d.next
            };
            let slot_addr = self.area.rings + self.layout.desc_entry(slot);
            self.write_desc(slot_addr, d.addr, d.len, d.flags, next)?;
            slot = self.descs.next(slot);
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_add(
        &mut self,
        head: u16,
        last: u16,
        count: u16,
        block: Option<u64>,
        wr_addr: u64,
        wr_len: u64,
        written: Result<(), FrontendError>,
    ) -> Result<u16, FrontendError> {
        let published = written.and_then(|()| self.publish(head));
        if let Err(e) = published {
            self.descs.free(head, last, count);
            if let Some(seq) = block {
                self.bufs.free(seq);
            }
            return Err(e);
        }
        if let Some(c) = self.chains.get_mut(usize::from(head)) {
            *c = Chain {
                in_flight: true,
                last,
                count,
                block,
                wr_addr,
                wr_len,
            };
        }
        self.in_flight += 1;
        Ok(head)
    }

    /// Misbehaves as a hostile driver: makes `head` available `times` more
    /// times although the device has not used it. Nothing is recorded as in
    /// flight, so a device that completes any of them makes the next
    /// [`TestQueue::wait_used`] fail with [`FrontendError::BadUsedIdx`].
    pub fn republish(&mut self, head: u16, times: u16) -> Result<(), FrontendError> {
        for _ in 0..times {
            self.publish(head)?;
        }
        Ok(())
    }

    /// Puts `head` in the next available-ring slot and advances `avail.idx`.
    fn publish(&mut self, head: u16) -> Result<(), FrontendError> {
        let entry = self.layout.avail_entry(self.avail_idx);
        self.store_u16(entry, head, Ordering::Relaxed)?;
        // Release: the descriptors and the ring entry must be visible
        // before the device can see the new index.
        let idx = self.avail_idx.wrapping_add(1);
        self.store_u16(self.layout.avail_idx(), idx, Ordering::Release)?;
        self.avail_idx = idx;
        Ok(())
    }

    /// Notifies the device of the chains added since the last kick, unless
    /// it asked not to be: under EVENT_IDX when `avail_event` was not
    /// crossed, otherwise when `VIRTQ_USED_F_NO_NOTIFY` is set. Returns
    /// whether the kick eventfd was written.
    pub fn kick(&mut self) -> Result<bool, FrontendError> {
        // Full barrier: our avail.idx store must be ordered before reading
        // the device's suppression state, or both sides can decide the other
        // will act (the classic lost-wakeup).
        fence(Ordering::SeqCst);
        let old = self.kicked_idx;
        let new = self.avail_idx;
        self.kicked_idx = new;
        let needed = if self.event_idx {
            let event = self.load_u16(self.layout.avail_event(), Ordering::Acquire)?;
            need_event(event, new, old)
        } else {
            new != old
                && self.load_u16(self.layout.used_flags(), Ordering::Acquire)?
                    & VIRTQ_USED_F_NO_NOTIFY
                    == 0
        };
        if needed {
            self.notify()?;
        }
        Ok(needed)
    }

    /// Writes the kick eventfd unconditionally, ignoring any suppression.
    pub fn notify(&mut self) -> Result<(), FrontendError> {
        self.kicked_idx = self.avail_idx;
        let index = self.index;
        self.kick.write(1).map_err(|source| FrontendError::Io {
            what: format!("queue {index}: kick"),
            source,
        })
    }

    /// Consumes the next used element, if the device published one, copying
    /// the written bytes into `data` (whose allocation is reused).
    fn pop_used(&mut self, data: &mut Vec<u8>) -> Result<Option<(u16, u32)>, FrontendError> {
        let used_idx = self.load_u16(self.layout.used_idx(), Ordering::Acquire)?;
        if used_idx == self.last_used {
            return Ok(None);
        }
        let pending = usize::from(used_idx.wrapping_sub(self.last_used));
        if pending > self.in_flight {
            return Err(FrontendError::BadUsedIdx {
                queue: self.index,
                last: self.last_used,
                now: used_idx,
                in_flight: self.in_flight,
            });
        }
        let elem_addr = self.ring_gpa(self.layout.used_entry(self.last_used));
        let elem: [u8; 8] = self
            .mem
            .read_obj(elem_addr)
            .map_err(FrontendError::mem(elem_addr.0))?;
        let (id, len) = elem.split_at(4);
        let id = u32::from_le_bytes(id.try_into().unwrap_or_default());
        let len = u32::from_le_bytes(len.try_into().unwrap_or_default());
        let bad_id = || FrontendError::BadUsedId {
            queue: self.index,
            id,
        };
        let head = u16::try_from(id).map_err(|_| bad_id())?;
        let chain = match self.chains.get_mut(usize::from(head)) {
            Some(c) if c.in_flight => {
                c.in_flight = false;
                *c
            }
            _ => return Err(bad_id()),
        };
        self.last_used = self.last_used.wrapping_add(1);
        if self.event_idx {
            // Ask for an interrupt when the next element is published.
            self.store_u16(self.layout.used_event(), self.last_used, Ordering::Release)?;
        }
        let n = u64::from(len).min(chain.wr_len);
        let n = usize::try_from(n).unwrap_or(0);
        data.clear();
        data.resize(n, 0);
        let read = self
            .mem
            .read_slice(data, GuestAddress(chain.wr_addr))
            .map_err(FrontendError::mem(chain.wr_addr));
        self.descs.free(head, chain.last, chain.count);
        if let Some(seq) = chain.block {
            self.bufs.free(seq);
        }
        self.in_flight -= 1;
        read?;
        Ok(Some((head, len)))
    }

    /// Returns the next used element without blocking, or `None` if the
    /// device has not published one.
    pub fn try_used(&mut self) -> Result<Option<Used>, FrontendError> {
        let mut data = Vec::new();
        Ok(self
            .pop_used(&mut data)?
            .map(|(head, len)| Used { head, len, data }))
    }

    /// Like [`TestQueue::try_used`], but fills `used` in place and returns
    /// whether there was an element: for load generators that poll
    /// [`TestQueue::call_fd`] themselves.
    pub fn try_used_into(&mut self, used: &mut Used) -> Result<bool, FrontendError> {
        match self.pop_used(&mut used.data)? {
            Some((head, len)) => {
                used.head = head;
                used.len = len;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Blocks until the device publishes a used element (polling the call
    /// eventfd), then returns it.
    pub fn wait_used(&mut self, timeout: Duration) -> Result<Used, FrontendError> {
        let mut used = Used::default();
        self.wait_used_into(&mut used, timeout)?;
        Ok(used)
    }

    /// Like [`TestQueue::wait_used`], but fills `used` in place, reusing its
    /// buffer: the allocation-free variant for load generators.
    pub fn wait_used_into(
        &mut self,
        used: &mut Used,
        timeout: Duration,
    ) -> Result<(), FrontendError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((head, len)) = self.pop_used(&mut used.data)? {
                used.head = head;
                used.len = len;
                return Ok(());
            }
            if self.event_idx {
                // Make sure `used_event` asks for the next element, then look
                // again: the device may have published between our check and
                // the store, and then it will not signal.
                self.store_u16(self.layout.used_event(), self.last_used, Ordering::Relaxed)?;
                fence(Ordering::SeqCst);
                if self.load_u16(self.layout.used_idx(), Ordering::Acquire)? != self.last_used {
                    continue;
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(FrontendError::Timeout {
                    queue: self.index,
                    timeout,
                    in_flight: self.in_flight,
                });
            }
            self.poll_call(deadline - now)?;
        }
    }

    /// Waits for the call eventfd to become readable (or `timeout`), and
    /// drains it.
    fn poll_call(&self, timeout: Duration) -> Result<(), FrontendError> {
        let mut pfd = libc::pollfd {
            fd: self.call.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // Round up so that a sub-millisecond remainder does not busy-loop.
        let ms = timeout.as_micros().div_ceil(1000);
        let ms = libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX);
        // SAFETY: `pfd` is a valid pollfd for the duration of the call and we
        // pass a count of exactly one.
        let ret = unsafe { libc::poll(&raw mut pfd, 1, ms) };
        if ret < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(FrontendError::Io {
                what: format!("queue {}: poll on call eventfd", self.index),
                source: err,
            });
        }
        if ret > 0 {
            match self.call.read() {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => {
                    return Err(FrontendError::Io {
                        what: format!("queue {}: read call eventfd", self.index),
                        source: e,
                    })
                }
            }
        }
        Ok(())
    }

    /// Adds a chain, kicks and waits for the device to return it: the
    /// common request/response case. The queue must be idle, so the next
    /// used element is necessarily this chain's.
    pub fn request(
        &mut self,
        readable: &[&[u8]],
        writable: &[u32],
        timeout: Duration,
    ) -> Result<Used, FrontendError> {
        let mut used = Used::default();
        self.request_into(readable, writable, &mut used, timeout)?;
        Ok(used)
    }

    /// Like [`TestQueue::request`], filling `used` in place (no allocation
    /// once `used.data` has grown to the reply size).
    pub fn request_into(
        &mut self,
        readable: &[&[u8]],
        writable: &[u32],
        used: &mut Used,
        timeout: Duration,
    ) -> Result<(), FrontendError> {
        if self.in_flight != 0 {
            return Err(FrontendError::QueueBusy {
                queue: self.index,
                in_flight: self.in_flight,
            });
        }
        self.add(readable, writable)?;
        self.kick()?;
        self.wait_used_into(used, timeout)
    }

    /// The device's `avail_event` (meaningful under EVENT_IDX).
    pub fn avail_event(&self) -> Result<u16, FrontendError> {
        self.load_u16(self.layout.avail_event(), Ordering::Acquire)
    }

    /// The device's `used.idx`.
    pub fn used_idx(&self) -> Result<u16, FrontendError> {
        self.load_u16(self.layout.used_idx(), Ordering::Acquire)
    }

    /// Our `avail.idx` (the number of chains ever published, mod 2^16).
    pub fn avail_idx(&self) -> u16 {
        self.avail_idx
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::super::memory::{create_memory, plan_memory};
    use super::*;

    /// A queue over fresh memory, with the test playing the device by
    /// poking the rings directly.
    fn lone_queue(size: u16, event_idx: bool) -> (TestQueue, RingLayout, u64) {
        let base = 0x10_0000;
        let (mem, _) = create_memory(1 << 20, base, 1).unwrap();
        let area = plan_memory(base, 1 << 20, 1, size, 4096).unwrap()[0];
        let cfg = QueueConfig {
            index: 0,
            size,
            event_idx,
            indirect: true,
            zero_writable: true,
        };
        (
            TestQueue::new(cfg, mem, area).unwrap(),
            RingLayout::new(size),
            area.rings,
        )
    }

    fn poke_u16(q: &TestQueue, gpa: u64, v: u16) {
        q.write_guest(gpa, &v.to_le_bytes()).unwrap();
    }

    fn peek_u16(q: &TestQueue, gpa: u64) -> u16 {
        let mut b = [0u8; 2];
        q.read_guest(gpa, &mut b).unwrap();
        u16::from_le_bytes(b)
    }

    /// Device side: return `head` with `len` at used index `idx`.
    fn device_use(q: &TestQueue, l: &RingLayout, rings: u64, idx: u16, head: u32, len: u32) {
        let mut elem = head.to_le_bytes().to_vec();
        elem.extend(len.to_le_bytes());
        q.write_guest(rings + l.used_entry(idx), &elem).unwrap();
        poke_u16(q, rings + l.used_idx(), idx.wrapping_add(1));
    }

    fn drain_kick(q: &TestQueue) -> u64 {
        let mut b = [0u8; 8];
        // SAFETY: reading 8 bytes from a non-blocking eventfd we own.
        let n = unsafe { libc::read(q.kick_fd(), b.as_mut_ptr().cast(), 8) };
        if n == 8 {
            u64::from_ne_bytes(b)
        } else {
            0
        }
    }

    #[test]
    fn chains_are_laid_out_as_the_spec_says() {
        let (mut q, l, rings) = lone_queue(8, false);
        let head = q.add(&[b"abc", b"de"], &[4]).unwrap();
        assert_eq!(peek_u16(&q, rings + l.avail_idx()), 1);
        assert_eq!(peek_u16(&q, rings + l.avail_entry(0)), head);
        // Walk the chain the way a device would.
        let mut descs = Vec::new();
        let mut i = head;
        loop {
            let mut d = [0u8; 16];
            q.read_guest(rings + l.desc_entry(i), &mut d).unwrap();
            let addr = u64::from_le_bytes(d[..8].try_into().unwrap());
            let len = u32::from_le_bytes(d[8..12].try_into().unwrap());
            let flags = u16::from_le_bytes(d[12..14].try_into().unwrap());
            let next = u16::from_le_bytes(d[14..].try_into().unwrap());
            descs.push((addr, len, flags & !VIRTQ_DESC_F_NEXT));
            if flags & VIRTQ_DESC_F_NEXT == 0 {
                break;
            }
            i = next;
        }
        assert_eq!(descs.len(), 3);
        assert_eq!(descs[0].1, 3);
        assert_eq!(descs[1], (descs[0].0 + 3, 2, 0));
        assert_eq!(descs[2], (descs[0].0 + 5, 4, VIRTQ_DESC_F_WRITE));
        let mut data = [0u8; 5];
        q.read_guest(descs[0].0, &mut data).unwrap();
        assert_eq!(&data, b"abcde");
        // The device writes a reply and returns the chain.
        q.write_guest(descs[2].0, b"wxyz").unwrap();
        device_use(&q, &l, rings, 0, u32::from(head), 3);
        let used = q.try_used().unwrap().unwrap();
        assert_eq!((used.head, used.len, used.data), (head, 3, b"wxy".to_vec()));
        assert_eq!(q.free_descriptors(), 8);
    }

    #[test]
    fn kicks_honour_no_notify_without_event_idx() {
        let (mut q, l, rings) = lone_queue(8, false);
        assert!(!q.kick().unwrap());
        q.add(&[b"a"], &[]).unwrap();
        assert!(q.kick().unwrap());
        assert_eq!(drain_kick(&q), 1);
        poke_u16(&q, rings + l.used_flags(), 1);
        q.add(&[b"b"], &[]).unwrap();
        assert!(!q.kick().unwrap());
        assert_eq!(drain_kick(&q), 0);
        // notify() ignores suppression.
        q.notify().unwrap();
        assert_eq!(drain_kick(&q), 1);
    }

    #[test]
    fn kicks_honour_avail_event() {
        let (mut q, l, rings) = lone_queue(8, true);
        // avail_event 0: the first chain (index 0 -> 1) needs a kick.
        q.add(&[b"a"], &[]).unwrap();
        assert!(q.kick().unwrap());
        // Device says "kick me when you publish index 3".
        poke_u16(&q, rings + l.avail_event(), 3);
        q.add(&[b"b"], &[]).unwrap(); // 1 -> 2
        assert!(!q.kick().unwrap());
        q.add(&[b"c"], &[]).unwrap(); // 2 -> 3
        assert!(!q.kick().unwrap());
        q.add(&[b"d"], &[]).unwrap(); // 3 -> 4 crosses 3
        assert!(q.kick().unwrap());
        // Several chains in one batch crossing the event: one kick.
        poke_u16(&q, rings + l.avail_event(), 5);
        q.add(&[b"e"], &[]).unwrap();
        q.add(&[b"f"], &[]).unwrap();
        assert!(q.kick().unwrap());
        assert_eq!(drain_kick(&q), 3);
    }

    #[test]
    fn used_event_asks_for_the_next_element() {
        let (mut q, l, rings) = lone_queue(8, true);
        let h0 = q.add(&[b"a"], &[]).unwrap();
        let h1 = q.add(&[b"b"], &[]).unwrap();
        device_use(&q, &l, rings, 0, u32::from(h1), 0);
        device_use(&q, &l, rings, 1, u32::from(h0), 0);
        // Out of order completion is fine.
        assert_eq!(q.try_used().unwrap().unwrap().head, h1);
        assert_eq!(peek_u16(&q, rings + l.used_event()), 1);
        assert_eq!(q.try_used().unwrap().unwrap().head, h0);
        assert_eq!(peek_u16(&q, rings + l.used_event()), 2);
        assert!(q.try_used().unwrap().is_none());
        assert!(matches!(
            q.wait_used(Duration::from_millis(10)),
            Err(FrontendError::Timeout { .. })
        ));
        assert_eq!(q.in_flight(), 0);
    }

    #[test]
    fn device_errors_are_reported() {
        let (mut q, l, rings) = lone_queue(8, false);
        let h = q.add(&[b"a"], &[]).unwrap();
        // An id that was never posted.
        device_use(&q, &l, rings, 0, u32::from(h) + 1, 0);
        assert!(matches!(
            q.try_used(),
            Err(FrontendError::BadUsedId { id, .. }) if id == u32::from(h) + 1
        ));
        // An id beyond the queue.
        device_use(&q, &l, rings, 0, 1000, 0);
        assert!(matches!(
            q.try_used(),
            Err(FrontendError::BadUsedId { id: 1000, .. })
        ));
        // used.idx jumping past what is in flight.
        poke_u16(&q, rings + l.used_idx(), 5);
        assert!(matches!(
            q.try_used(),
            Err(FrontendError::BadUsedIdx { now: 5, .. })
        ));
        // Returning the right chain still works.
        device_use(&q, &l, rings, 0, u32::from(h), 0);
        assert_eq!(q.try_used().unwrap().unwrap().head, h);
    }

    #[test]
    fn stale_reply_bytes_are_zeroed() {
        let (mut q, l, rings) = lone_queue(8, false);
        for round in 0..2u8 {
            let h = q.add(&[], &[4]).unwrap();
            let mut d = [0u8; 16];
            q.read_guest(rings + l.desc_entry(h), &mut d).unwrap();
            let addr = u64::from_le_bytes(d[..8].try_into().unwrap());
            let mut buf = [0xffu8; 4];
            q.read_guest(addr, &mut buf).unwrap();
            assert_eq!(buf, [0; 4], "round {round}");
            q.write_guest(addr, &[0xab; 4]).unwrap();
            device_use(&q, &l, rings, u16::from(round), u32::from(h), 4);
            assert_eq!(q.try_used().unwrap().unwrap().data, [0xab; 4]);
        }
    }
}
