// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A device driven through its own queue handler, in-process, with no
//! socket: the role of the frontend and the guest driver both, for fuzz
//! targets and tests that want the whole pop → parse → decode → dispatch →
//! complete path.
//!
//! [`DeviceHarness`] wraps a [`VirtioDevice`] in the same [`DeviceBackend`]
//! the daemon uses, sets up every queue as split rings in a guest memory of
//! its own, and calls the backend's `handle_event` as the vring worker does
//! (a kick, or a host fd the device registered on the harness's epoll).
//! After every call it reads the used rings and checks what a driver relies
//! on: a used element names a head the driver made available and has not got
//! back yet, and its length is at most what the chain's writable buffers
//! hold. A breach panics, with what went wrong, so a fuzzer reports it.
//!
//! A fuzz target builds a harness per input. Mapping a fresh guest memory
//! each time, and faulting its pages in again, cost more than most inputs:
//! [`DeviceHarness::into_memory`] hands the memory on to the next harness
//! ([`DeviceHarness::with_memory`]), which zeroes everything the last one
//! wrote, so a harness starts from the same memory either way and an input
//! behaves alone as it did in the run.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use vhost_user_backend::{VhostUserBackend, VringT};
use virtio_bindings::bindings::virtio_ring::{
    VIRTIO_RING_F_EVENT_IDX, VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{GuestAddress, GuestMemoryAtomic, GuestMemoryBackend};
use vmm_sys_util::epoll::{Epoll, EpollEvent, EventSet};

use super::host::HostView;
use crate::device::{DeviceBackend, VirtioDevice};
use crate::vring::{GuestMem, Vring};

/// Where guest memory starts; not 0, so an address of 0 is a bad one.
const BASE: u64 = 0x1_0000;
/// One page of rings per queue: table, avail and used ring.
const RING_PAGE: u64 = 0x1000;
/// The available ring's offset in a queue's page.
const AVAIL: u64 = 0x400;
/// The used ring's offset in a queue's page.
const USED: u64 = 0x800;
/// Largest queue size: 64 descriptors keep the three rings in one page.
const MAX_SIZE: u16 = 64;
/// Buffer space shared by all queues.
const DATA_SIZE: u64 = 0x10_0000;
/// Largest buffer a chain may ask for.
pub const MAX_BUFFER: u32 = 0x1_0000;

/// A chain the driver made available and has not got back.
#[derive(Clone, Debug)]
struct Posted {
    /// Descriptor-table entries it uses (1 for an indirect chain).
    descs: Vec<u16>,
    /// What its writable buffers hold in total.
    writable: u64,
    /// Where in the available ring it was last published.
    avail_pos: u16,
    /// Where a hostile driver published it again while the device held
    /// it (see [`DeviceHarness::publish`]).
    copies: Vec<u16>,
    /// The address of its last writable byte (a status byte, in most
    /// devices).
    last_writable: Option<u64>,
}

/// The driver's view of one queue.
#[derive(Debug)]
struct DriverQueue {
    size: u16,
    /// Free descriptor-table entries, bit `i` for entry `i` (a queue has
    /// at most [`MAX_SIZE`], 64): no loop to set up or take from.
    free: u64,
    avail_idx: u16,
    used_seen: u16,
    posted: BTreeMap<u16, Posted>,
}

impl DriverQueue {
    fn new(size: u16) -> Self {
        DriverQueue {
            size,
            free: u64::MAX >> (64 - u32::from(size.clamp(1, MAX_SIZE))),
            avail_idx: 0,
            used_seen: 0,
            posted: BTreeMap::new(),
        }
    }
}

/// One buffer of a chain to post.
#[derive(Clone, Copy, Debug)]
pub enum Buffer<'a> {
    /// Device-readable, holding these bytes.
    Readable(&'a [u8]),
    /// Device-writable, of this many bytes (at most [`MAX_BUFFER`]).
    Writable(u32),
}

/// A harness's guest memory, handed on to the next harness.
#[derive(Debug)]
pub struct SpareMemory {
    mem: GuestMem,
    /// End of what a harness wrote: rings and buffers all lie below it.
    dirty_end: u64,
}

/// A device behind its [`DeviceBackend`], with a driver's side of its queues.
pub struct DeviceHarness<D: VirtioDevice> {
    backend: DeviceBackend<D>,
    mem: GuestMem,
    /// `mem`, for the harness's own accesses.
    host: HostView,
    /// Whether writable buffers start as 0xAA (see [`DeviceHarness::post`]).
    mark_unwritten: bool,
    vrings: Vec<Vring>,
    epoll: Epoll,
    queues: Vec<DriverQueue>,
    event_idx: bool,
    next_data: u64,
    data_start: u64,
    /// The highest `next_data` so far: what [`SpareMemory`] must zero.
    data_end: u64,
    completed: usize,
    /// Each queue's next available index before the current callback.
    avail_before: Vec<u16>,
    /// Each used chain's last writable byte, by queue and head, once
    /// [`DeviceHarness::record_answers`] asked for it.
    answers: Option<BTreeMap<(usize, u16), Option<u64>>>,
}

impl<D: VirtioDevice> std::fmt::Debug for DeviceHarness<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceHarness")
            .field("queues", &self.queues)
            .finish_non_exhaustive()
    }
}

impl<D: VirtioDevice> DeviceHarness<D> {
    /// Wraps `device`, acks every feature it offers (EVENT_IDX only if
    /// `event_idx`), activates it and sets up all its queues.
    pub fn new(device: D, event_idx: bool) -> io::Result<Self> {
        Self::with_memory(device, event_idx, None)
    }

    /// As [`DeviceHarness::new`], in `spare` (zeroed first) if it is of the
    /// size this device needs, else in a fresh mapping.
    pub fn with_memory(device: D, event_idx: bool, spare: Option<SpareMemory>) -> io::Result<Self> {
        let num_queues = device.num_queues();
        let size = [MAX_SIZE, 32, 16, 8, 4, 2, 1]
            .into_iter()
            .find(|&s| s <= device.max_queue_size())
            .unwrap_or(1);
        let rings_len = RING_PAGE * num_queues as u64;
        let data_start = BASE + rings_len;
        let len = usize::try_from(rings_len + DATA_SIZE).map_err(io::Error::other)?;
        let (mem, host) = match spare {
            Some(spare) if spare.mem.last_addr() == GuestAddress(BASE + len as u64 - 1) => {
                let host = HostView::new(&spare.mem, BASE, len)?;
                let dirty = spare.dirty_end.saturating_sub(BASE);
                host.fill(BASE, usize::try_from(dirty).unwrap_or(len).min(len), 0)
                    .ok_or_else(|| io::Error::other("spare memory"))?;
                (spare.mem, host)
            }
            _ => {
                let mem = GuestMem::from_ranges(&[(GuestAddress(BASE), len)])
                    .map_err(io::Error::other)?;
                let host = HostView::new(&mem, BASE, len)?;
                (mem, host)
            }
        };
        let atomic = GuestMemoryAtomic::new(mem.clone());
        let backend = DeviceBackend::new(device, atomic.clone())?;
        let mut features = backend.features();
        if !event_idx {
            features &= !(1 << VIRTIO_RING_F_EVENT_IDX);
        }
        backend.acked_features(features);
        let epoll = Epoll::new()?;
        // SAFETY: the fd belongs to `epoll`, which outlives the borrow.
        backend.activate(unsafe { BorrowedFd::borrow_raw(epoll.as_raw_fd()) })?;
        let mut vrings = Vec::with_capacity(num_queues);
        for _ in 0..num_queues {
            let vring = Vring::new(atomic.clone(), size).map_err(io::Error::other)?;
            vrings.push(vring);
        }
        let mut harness = DeviceHarness {
            backend,
            mem,
            host,
            mark_unwritten: true,
            vrings,
            epoll,
            queues: Vec::new(),
            event_idx,
            next_data: data_start,
            data_start,
            data_end: data_start,
            completed: 0,
            avail_before: Vec::with_capacity(num_queues),
            answers: None,
        };
        for index in 0..num_queues {
            harness.setup_queue(index, size)?;
        }
        Ok(harness)
    }

    fn setup_queue(&mut self, index: usize, size: u16) -> io::Result<()> {
        let page = BASE + RING_PAGE * index as u64;
        self.host
            .fill(page, RING_PAGE as usize, 0)
            .ok_or_else(|| io::Error::other(format!("no ring page for queue {index}")))?;
        let vring = self.vring(index)?;
        vring.set_queue_size(size);
        vring
            .set_queue_info(page, page + AVAIL, page + USED)
            .map_err(io::Error::other)?;
        vring.set_queue_event_idx(self.event_idx);
        vring.set_queue_next_avail(0);
        vring.set_queue_next_used(0);
        vring.set_queue_ready(true);
        vring.set_enabled(true);
        let queue = DriverQueue::new(size);
        match self.queues.get_mut(index) {
            Some(slot) => *slot = queue,
            None => self.queues.push(queue),
        }
        Ok(())
    }

    /// Whether [`DeviceHarness::post`] fills writable buffers with 0xAA
    /// first (the default), so that a test sees what the device did not
    /// write. A fuzz target, which checks lengths and not contents, saves
    /// the memset; the buffers then hold what the memory held (zeroes, or
    /// an earlier chain's bytes of the same input).
    pub fn mark_unwritten(&mut self, on: bool) {
        self.mark_unwritten = on;
    }

    fn vring(&self, index: usize) -> io::Result<&Vring> {
        self.vrings
            .get(index)
            .ok_or_else(|| io::Error::other(format!("no queue {index}")))
    }

    /// The backend, for what the harness has no method for.
    pub fn backend(&self) -> &DeviceBackend<D> {
        &self.backend
    }

    /// Guest memory.
    pub fn memory(&self) -> &GuestMem {
        &self.mem
    }

    /// Number of queues.
    pub fn num_queues(&self) -> usize {
        self.queues.len()
    }

    /// Chains made available on `queue` and not yet used.
    pub fn outstanding(&self, queue: usize) -> usize {
        self.queues.get(queue).map_or(0, |q| q.posted.len())
    }

    /// Chains the device has used so far, on all queues.
    pub fn completed(&self) -> usize {
        self.completed
    }

    fn alloc(&mut self, len: u64) -> Option<u64> {
        let addr = self.next_data;
        let end = addr.checked_add(len.div_ceil(16).max(1) * 16)?;
        if end > self.data_start + DATA_SIZE {
            return None;
        }
        self.next_data = end;
        self.data_end = self.data_end.max(end);
        Some(addr)
    }

    /// Ends the harness (the device and its host fds with it) and keeps its
    /// memory for the next one.
    pub fn into_memory(self) -> SpareMemory {
        let dirty_end = self.data_end;
        let mem = self.mem.clone();
        drop(self);
        SpareMemory { mem, dirty_end }
    }

    /// Lays out `buffers` as a chain on `queue` (in an indirect table if
    /// `indirect`) and makes it available, without a kick. Returns its
    /// head, or `None` if the queue has no free descriptors or the buffer
    /// space is used up (then nothing is posted).
    pub fn post(&mut self, queue: usize, buffers: &[Buffer<'_>], indirect: bool) -> Option<u16> {
        if buffers.is_empty() {
            return None;
        }
        let count = if indirect { 1 } else { buffers.len() };
        let q = self.queues.get_mut(queue)?;
        if (q.free.count_ones() as usize) < count || buffers.len() > usize::from(q.size) {
            return None;
        }
        let saved = self.next_data;
        let mut raw = Vec::with_capacity(buffers.len());
        let mut writable = 0u64;
        let mut last_writable = None;
        for buffer in buffers {
            let (len, write) = match *buffer {
                Buffer::Readable(data) => (u32::try_from(data.len()).ok()?, false),
                Buffer::Writable(len) => (len.min(MAX_BUFFER), true),
            };
            let Some(addr) = self.alloc(u64::from(len)) else {
                self.next_data = saved;
                return None;
            };
            match *buffer {
                Buffer::Readable(data) => self.host.copy_in(addr, data)?,
                Buffer::Writable(_) => {
                    writable += u64::from(len);
                    last_writable = (len > 0).then(|| addr + u64::from(len) - 1);
                    if self.mark_unwritten {
                        // What the device did not write reads as 0xAA.
                        self.host.fill(addr, len as usize, 0xAA)?;
                    }
                }
            }
            raw.push((addr, len, write));
        }
        let table_addr = if indirect {
            let Some(addr) = self.alloc(16 * raw.len() as u64) else {
                self.next_data = saved;
                return None;
            };
            Some(addr)
        } else {
            None
        };
        let q = self.queues.get_mut(queue)?;
        let descs: Vec<u16> = (0..count)
            .map(|_| {
                let index = q.free.trailing_zeros();
                q.free &= q.free.wrapping_sub(1);
                index as u16
            })
            .collect();
        let page = BASE + RING_PAGE * queue as u64;
        let flags = |i: usize, write: bool| {
            let mut flags = 0u16;
            if write {
                flags |= VRING_DESC_F_WRITE as u16;
            }
            if i + 1 < raw.len() {
                flags |= VRING_DESC_F_NEXT as u16;
            }
            flags
        };
        match table_addr {
            Some(table) => {
                for (i, &(addr, len, write)) in raw.iter().enumerate() {
                    let d = Descriptor::new(addr, len, flags(i, write), (i + 1) as u16);
                    self.host.write(table + 16 * i as u64, d)?;
                }
                let head = *descs.first()?;
                let d = Descriptor::new(
                    table,
                    16 * raw.len() as u32,
                    VRING_DESC_F_INDIRECT as u16,
                    0,
                );
                self.host.write(page + 16 * u64::from(head), d)?;
            }
            None => {
                for (i, &(addr, len, write)) in raw.iter().enumerate() {
                    let index = *descs.get(i)?;
                    let next = descs.get(i + 1).copied().unwrap_or(0);
                    let d = Descriptor::new(addr, len, flags(i, write), next);
                    self.host.write(page + 16 * u64::from(index), d)?;
                }
            }
        }
        let head = *descs.first()?;
        let avail_pos = q.avail_idx;
        q.posted.insert(
            head,
            Posted {
                descs,
                writable,
                avail_pos,
                copies: Vec::new(),
                last_writable,
            },
        );
        self.write_avail(queue, head)?;
        Some(head)
    }

    /// Makes `head` available on `queue` again, as a hostile driver does
    /// with a head the device holds.
    ///
    /// What the copy means depends on when the device takes it from the
    /// ring: while it still holds the head, the copy is a guest error it
    /// must drop; once it used the head, the copy is indistinguishable from
    /// the driver posting the chain anew, and the device may take it and
    /// use the head again (see `collect`).
    pub fn publish(&mut self, queue: usize, head: u16) -> Option<()> {
        let q = self.queues.get_mut(queue)?;
        if let Some(posted) = q.posted.get_mut(&head) {
            posted.avail_pos = q.avail_idx;
            posted.copies.push(q.avail_idx);
        }
        self.write_avail(queue, head)
    }

    /// Puts `head` in the next slot of `queue`'s available ring.
    fn write_avail(&mut self, queue: usize, head: u16) -> Option<()> {
        let page = BASE + RING_PAGE * queue as u64;
        let q = self.queues.get_mut(queue)?;
        let slot = u64::from(q.avail_idx % q.size);
        self.host.write(page + AVAIL + 4 + 2 * slot, head)?;
        q.avail_idx = q.avail_idx.wrapping_add(1);
        self.host.write(page + AVAIL + 2, q.avail_idx)
    }

    /// A head the device took from `queue` and has not used yet, chosen by
    /// `pick`. One still waiting in the available ring does not count:
    /// publishing it twice would be the driver handing over one chain twice,
    /// which the device cannot tell from two requests.
    pub fn held_head(&self, queue: usize, pick: usize) -> Option<u16> {
        let q = self.queues.get(queue)?;
        let next_avail = self.vring(queue).ok()?.queue_next_avail();
        let held: Vec<u16> = q
            .posted
            .iter()
            .filter(|(_, p)| next_avail.wrapping_sub(p.avail_pos).wrapping_sub(1) < 0x8000)
            .map(|(&head, _)| head)
            .collect();
        held.get(pick % held.len().max(1)).copied()
    }

    /// Kicks `queue`, as the worker does when its kick eventfd fires.
    pub fn kick(&mut self, queue: usize) {
        if let Ok(token) = u16::try_from(queue) {
            self.dispatch(token, EventSet::IN);
        }
    }

    /// Runs the device's handler for every host fd it registered that is
    /// ready now, as the worker does; returns how many there were.
    pub fn pump(&mut self) -> usize {
        let mut events = [EpollEvent::default(); 8];
        let ready = self.epoll.wait(0, &mut events).unwrap_or(0);
        for event in events.iter().take(ready) {
            let Ok(token) = u16::try_from(event.data()) else {
                continue;
            };
            if token == u16::MAX {
                // The core's stop event: never written here.
                continue;
            }
            self.dispatch(token, event.event_set());
        }
        ready
    }

    fn dispatch(&mut self, token: u16, events: EventSet) {
        self.avail_before.clear();
        self.avail_before
            .extend(self.vrings.iter().map(|v| v.queue_next_avail()));
        let result = self.backend.handle_event(token, events, &self.vrings, 0);
        assert!(
            result.is_ok(),
            "handle_event({token}) returned an error, which would end the worker: {result:?}"
        );
        self.collect();
    }

    /// The frontend stopped `queue` (GET_VRING_BASE) and set it up afresh:
    /// the chains the device held from it are gone.
    pub fn restart_queue(&mut self, queue: usize) {
        let Some(size) = self.queues.get(queue).map(|q| q.size) else {
            return;
        };
        if let Ok(vring) = self.vring(queue) {
            vring.set_queue_ready(false);
        }
        if let Ok(index) = u32::try_from(queue) {
            let _ = self.backend.stop_vring(index);
        }
        let _ = self.setup_queue(queue, size);
    }

    /// The frontend reset the device and set up every queue afresh.
    pub fn reset(&mut self) {
        self.backend.reset_device();
        for index in 0..self.queues.len() {
            if let Ok(vring) = self.vring(index) {
                vring.set_queue_ready(false);
            }
        }
        for index in 0..self.queues.len() {
            let size = self.queues.get(index).map_or(1, |q| q.size);
            let _ = self.setup_queue(index, size);
        }
        self.next_data = self.data_start;
    }

    /// GET_CONFIG, as the frontend sends it; checks the reply is of the
    /// size asked for or empty (the refusal).
    pub fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        let data = self.backend.get_config(offset, size);
        assert!(
            data.is_empty() || data.len() == size as usize,
            "GET_CONFIG {offset}+{size} answered {} bytes",
            data.len()
        );
        data
    }

    /// SET_CONFIG, as the frontend sends it.
    pub fn set_config(&self, offset: u32, data: &[u8]) {
        let result = self.backend.set_config(offset, data);
        assert!(result.is_ok(), "SET_CONFIG {offset}+{} failed", data.len());
    }

    /// Reads every used ring and checks each new element.
    fn collect(&mut self) {
        for index in 0..self.queues.len() {
            let page = BASE + RING_PAGE * index as u64;
            let Some(used_idx) = self.host.read::<u16>(page + USED + 2) else {
                continue;
            };
            let Some(q) = self.queues.get_mut(index) else {
                continue;
            };
            let new = used_idx.wrapping_sub(q.used_seen);
            assert!(
                new <= q.size,
                "queue {index}: used.idx moved {new} entries at once, beyond the ring's {}",
                q.size
            );
            for _ in 0..new {
                let slot = u64::from(q.used_seen % q.size);
                let at = page + USED + 4 + 8 * slot;
                let id: u32 = self.host.read(at).unwrap_or(u32::MAX);
                let len: u32 = self.host.read(at + 4).unwrap_or(u32::MAX);
                let head = u16::try_from(id).unwrap_or(u16::MAX);
                let mut posted = q.posted.remove(&head).unwrap_or_else(|| {
                    panic!("queue {index}: the device used head {id}, which the driver does not owe it")
                });
                assert!(
                    u64::from(len) <= posted.writable,
                    "queue {index}: head {head} used with length {len}, its writable buffers hold {}",
                    posted.writable
                );
                if let Some(answers) = &mut self.answers {
                    answers.insert((index, head), posted.last_writable);
                }
                // A copy the device took before this callback was taken
                // while it held the head, and dropped. One it had not
                // taken yet is, now that the head is used, the chain
                // posted anew (see `publish`): it stays owed.
                let before = self.avail_before.get(index).copied().unwrap_or(q.avail_idx);
                posted.copies.retain(|&at| at.wrapping_sub(before) < 0x8000);
                if posted.copies.is_empty() {
                    for desc in posted.descs {
                        q.free |= 1u64.checked_shl(u32::from(desc)).unwrap_or(0);
                    }
                } else {
                    posted.copies.remove(0);
                    q.posted.insert(head, posted);
                }
                q.used_seen = q.used_seen.wrapping_add(1);
                self.completed += 1;
            }
        }
        if self.queues.iter().all(|q| q.posted.is_empty()) {
            // Nothing is held: buffer space can be reused from the start.
            self.next_data = self.data_start;
        }
    }

    /// Keeps, from now on, where each used chain's last writable byte is,
    /// for [`DeviceHarness::answer_byte`] (off by default: fuzz targets do
    /// not need it).
    pub fn record_answers(&mut self) {
        self.answers.get_or_insert_with(BTreeMap::new);
    }

    /// The last writable byte of the chain `head` used last on `queue` (the
    /// status byte of most request queues), as it is now: read it before
    /// posting again, which may reuse the buffer space once nothing is held.
    pub fn answer_byte(&self, queue: usize, head: u16) -> Option<u8> {
        let addr = (*self.answers.as_ref()?.get(&(queue, head))?)?;
        self.host.read(addr)
    }

    /// Fails if `queue` still has chains the device did not use: for
    /// request queues, which must answer every request at once.
    pub fn assert_all_used(&self, queue: usize) {
        let left = self.outstanding(queue);
        assert!(
            left == 0,
            "queue {queue}: {left} chain(s) neither used nor refused"
        );
    }

    /// The epoll the device's host fds are registered on.
    pub fn epoll_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the fd belongs to `self.epoll`, which outlives the borrow.
        unsafe { BorrowedFd::borrow_raw(self.epoll.as_raw_fd()) }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use vm_memory::Bytes;

    use super::*;
    use crate::device::{DeviceResult, Queues};

    /// Copies what it reads into the writable buffers; holds chains whose
    /// first byte is `H` until a chain starting with `R` releases them.
    #[derive(Default)]
    struct Echo {
        held: Vec<(u16, u32)>,
    }

    impl VirtioDevice for Echo {
        fn num_queues(&self) -> usize {
            2
        }
        fn process_queue(&mut self, queues: &mut Queues<'_>, index: usize) -> DeviceResult {
            let Some(mut queue) = queues.get(index) else {
                return Ok(());
            };
            let mut release = false;
            queue.drain(|chain, mem| {
                let data = chain.reader(mem).read_to_vec(1 << 20).ok()?;
                match data.first() {
                    Some(b'H') => {
                        self.held.push((chain.head(), 0));
                        None
                    }
                    Some(b'R') => {
                        release = true;
                        Some(0)
                    }
                    _ => {
                        let mut w = chain.writer(mem);
                        let n = data.len().min(w.available());
                        w.write_all(data.get(..n)?).ok()?;
                        Some(n as u32)
                    }
                }
            });
            if release {
                queue.complete_all(self.held.drain(..));
            }
            Ok(())
        }
        fn reset(&mut self) {
            self.held.clear();
        }
    }

    #[test]
    fn requests_go_through_the_queue_handler_and_come_back_checked() {
        for event_idx in [false, true] {
            let mut h = DeviceHarness::new(Echo::default(), event_idx).unwrap();
            h.post(0, &[Buffer::Readable(b"ping"), Buffer::Writable(8)], false)
                .unwrap();
            h.post(1, &[Buffer::Readable(b"x"), Buffer::Writable(1)], true)
                .unwrap();
            h.kick(0);
            h.kick(1);
            h.assert_all_used(0);
            h.assert_all_used(1);
            assert_eq!(h.completed(), 2);
            // Descriptors come back: more chains than the table holds fit
            // one after the other.
            for _ in 0..MAX_SIZE {
                h.post(0, &[Buffer::Readable(b"pong"), Buffer::Writable(8)], false)
                    .unwrap();
                h.kick(0);
            }
            assert_eq!(h.completed(), 2 + usize::from(MAX_SIZE));
        }
    }

    #[test]
    fn held_chains_stay_owed_and_a_republished_head_is_not_held_twice() {
        let mut h = DeviceHarness::new(Echo::default(), true).unwrap();
        let held = h.post(0, &[Buffer::Readable(b"H")], false).unwrap();
        h.kick(0);
        assert_eq!(h.outstanding(0), 1);
        h.publish(0, held).unwrap();
        h.kick(0);
        assert_eq!(h.outstanding(0), 1);
        h.post(0, &[Buffer::Readable(b"R")], false).unwrap();
        // Completing `held` once is fine; a second completion would panic.
        h.kick(0);
        h.assert_all_used(0);
    }

    /// Holds one chain of queue 0 at a time, as an RX queue does: each
    /// chain on queue 1 takes one from queue 0 if none is held, and uses
    /// the held one otherwise.
    #[derive(Default)]
    struct Pull {
        held: Option<u16>,
    }

    impl VirtioDevice for Pull {
        fn num_queues(&self) -> usize {
            2
        }
        fn process_queue(&mut self, queues: &mut Queues<'_>, index: usize) -> DeviceResult {
            if index != 1 {
                return Ok(());
            }
            let mut commands = 0;
            if let Some(mut queue) = queues.get(1) {
                commands = queue.drain(|_, _| Some(0));
            }
            let Some(mut buffers) = queues.get(0) else {
                return Ok(());
            };
            for _ in 0..commands {
                match self.held.take() {
                    Some(head) => buffers.complete(head, 0),
                    None => self.held = buffers.pop().map(|c| c.head()),
                }
            }
            Ok(())
        }
    }

    /// A copy of a held head that the device takes only after it used the
    /// head is a new posting, which the device may use again; one it took
    /// while holding the head is dropped, and a second use would be caught.
    #[test]
    fn a_copy_taken_after_the_head_was_used_is_owed_again() {
        for same_callback in [false, true] {
            let mut h = DeviceHarness::new(Pull::default(), true).unwrap();
            let buffer = h.post(0, &[Buffer::Writable(8)], false).unwrap();
            let command = |h: &mut DeviceHarness<Pull>| {
                h.post(1, &[Buffer::Readable(b"c")], false).unwrap();
                h.kick(1);
            };
            command(&mut h);
            assert_eq!(h.held_head(0, 0), Some(buffer));
            h.publish(0, buffer).unwrap();
            if same_callback {
                // Used, then the copy taken, in one callback.
                h.post(1, &[Buffer::Readable(b"c")], false).unwrap();
                command(&mut h);
            } else {
                command(&mut h);
                assert_eq!(h.outstanding(0), 1, "the copy waits in the ring");
                command(&mut h);
            }
            command(&mut h);
            assert_eq!((h.outstanding(0), h.completed()), (0, 6));
        }
    }

    #[test]
    fn reused_memory_starts_zeroed_and_serves_the_next_device() {
        let mut h = DeviceHarness::new(Echo::default(), false).unwrap();
        h.post(0, &[Buffer::Readable(b"H")], false).unwrap();
        h.post(1, &[Buffer::Readable(b"x"), Buffer::Writable(300)], true)
            .unwrap();
        h.kick(0);
        h.kick(1);
        let written = h.data_end;
        let spare = h.into_memory();
        let mut h = DeviceHarness::with_memory(Echo::default(), true, Some(spare)).unwrap();
        let mut old = vec![0xff; usize::try_from(written - BASE).unwrap()];
        h.memory().read_slice(&mut old, GuestAddress(BASE)).unwrap();
        assert!(
            old.iter().all(|&b| b == 0),
            "the last harness's bytes remain"
        );
        h.post(0, &[Buffer::Readable(b"ok"), Buffer::Writable(2)], false)
            .unwrap();
        h.kick(0);
        h.assert_all_used(0);
        // Memory of another size is not reused.
        let spare = h.into_memory();
        struct Wide;
        impl VirtioDevice for Wide {
            fn num_queues(&self) -> usize {
                3
            }
            fn process_queue(&mut self, _: &mut Queues<'_>, _: usize) -> DeviceResult {
                Ok(())
            }
        }
        let h = DeviceHarness::with_memory(Wide, false, Some(spare)).unwrap();
        assert_eq!(h.num_queues(), 3);
    }

    #[test]
    fn a_reset_forgets_held_chains() {
        let mut h = DeviceHarness::new(Echo::default(), false).unwrap();
        h.post(0, &[Buffer::Readable(b"H")], false).unwrap();
        h.kick(0);
        h.reset();
        assert_eq!(h.outstanding(0), 0);
        h.post(0, &[Buffer::Readable(b"ok"), Buffer::Writable(2)], false)
            .unwrap();
        h.kick(0);
        h.assert_all_used(0);
    }

    #[test]
    #[should_panic(expected = "writable buffers hold")]
    fn a_used_length_beyond_the_writable_buffers_is_caught() {
        struct Liar;
        impl VirtioDevice for Liar {
            fn num_queues(&self) -> usize {
                1
            }
            fn process_queue(&mut self, queues: &mut Queues<'_>, index: usize) -> DeviceResult {
                if let Some(mut queue) = queues.get(index) {
                    queue.drain(|_, _| Some(100));
                }
                Ok(())
            }
        }
        let mut h = DeviceHarness::new(Liar, false).unwrap();
        h.post(0, &[Buffer::Readable(b"x"), Buffer::Writable(4)], false)
            .unwrap();
        h.kick(0);
    }
}
