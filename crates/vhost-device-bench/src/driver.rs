// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Two drivers for one virtqueue.
//!
//! - [`FrontendDriver`] goes through the test frontend's `TestQueue`: every
//!   request copies its buffers into guest memory and writes its
//!   descriptors, as a general-purpose driver does.
//! - [`LeanDriver`] lays out one descriptor chain per in-flight slot once,
//!   then only republishes heads in the avail ring: the least a driver can
//!   do per request, so that what is measured is the notification path and
//!   the daemon. The test frontend still sets the queue up; this driver
//!   takes the queue over once it is idle.

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::atomic::{fence, AtomicU16, Ordering};
use std::time::Duration;

use vhost_device_common::testing::{TestQueue, Used};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap};

use crate::error::{Error, Result};
use crate::load::{drain_eventfd, wait_readable, Driver};

/// One kind of request a scenario sends.
#[derive(Debug, Clone)]
pub struct Template {
    /// Name in error messages.
    pub name: &'static str,
    /// Device-readable buffers, in chain order.
    pub readable: Vec<Vec<u8>>,
    /// Sizes of the device-writable buffers that follow.
    pub writable: Vec<u32>,
    /// Whether a reply is acceptable: gets the used length and the first
    /// `min(used length, writable size)` bytes written.
    pub check: fn(u32, &[u8]) -> bool,
}

impl Template {
    fn descriptors(&self) -> usize {
        self.readable.len() + self.writable.len()
    }

    fn readable_len(&self) -> usize {
        self.readable.iter().map(Vec::len).sum()
    }

    fn writable_len(&self) -> usize {
        self.writable.iter().map(|&w| w as usize).sum()
    }

    /// Checks a reply, turning a refusal into an error.
    pub fn verify(&self, scenario: &'static str, len: u32, data: &[u8]) -> Result<()> {
        if (self.check)(len, data) {
            Ok(())
        } else {
            Err(Error::BadReply {
                scenario,
                request: self.name,
                len,
                bytes: data.iter().take(32).copied().collect(),
            })
        }
    }
}

/// Requests through the test frontend's `TestQueue` API.
pub struct FrontendDriver<'a> {
    queue: &'a mut TestQueue,
    scenario: &'static str,
    templates: &'a [Template],
    readable: Vec<Vec<&'a [u8]>>,
    /// Template of each posted request, in posting order (the devices
    /// measured here complete in order; a mismatch is caught by the check).
    posted: VecDeque<usize>,
    next: usize,
    used: Used,
}

impl std::fmt::Debug for FrontendDriver<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrontendDriver")
            .field("scenario", &self.scenario)
            .field("in_flight", &self.posted.len())
            .finish_non_exhaustive()
    }
}

impl<'a> FrontendDriver<'a> {
    /// A driver cycling through `templates` on `queue`.
    pub fn new(
        queue: &'a mut TestQueue,
        scenario: &'static str,
        templates: &'a [Template],
    ) -> Self {
        FrontendDriver {
            queue,
            scenario,
            readable: templates
                .iter()
                .map(|t| t.readable.iter().map(Vec::as_slice).collect())
                .collect(),
            templates,
            posted: VecDeque::with_capacity(1024),
            next: 0,
            used: Used {
                data: Vec::with_capacity(4096),
                ..Used::default()
            },
        }
    }
}

impl Driver for FrontendDriver<'_> {
    fn post(&mut self) -> Result<()> {
        let i = self.next;
        let (Some(t), Some(r)) = (self.templates.get(i), self.readable.get(i)) else {
            return Err(Error::Failed("no request template".into()));
        };
        self.queue
            .add(r, &t.writable)
            .map_err(Error::frontend("posting a request"))?;
        self.posted.push_back(i);
        self.next = (i + 1) % self.templates.len().max(1);
        Ok(())
    }

    fn kick(&mut self) -> Result<()> {
        self.queue
            .kick()
            .map(|_| ())
            .map_err(Error::frontend("kicking"))
    }

    fn reap(&mut self) -> Result<usize> {
        let mut n = 0;
        while self
            .queue
            .try_used_into(&mut self.used)
            .map_err(Error::frontend("reading the used ring"))?
        {
            let t = self
                .posted
                .pop_front()
                .and_then(|i| self.templates.get(i))
                .ok_or_else(|| Error::Protocol("a completion with nothing in flight".into()))?;
            t.verify(self.scenario, self.used.len, &self.used.data)?;
            n += 1;
        }
        Ok(n)
    }

    fn wait(&mut self, timeout: Duration) -> Result<()> {
        // The queue re-arms used_event on every completion it takes, so the
        // device signals the next one.
        wait_readable(self.queue.call_fd(), timeout)?;
        drain_eventfd(self.queue.call_fd()).map(|_| ())
    }

    fn in_flight(&self) -> usize {
        self.posted.len()
    }
}

/// `VIRTQ_DESC_F_NEXT`.
const F_NEXT: u16 = 1;
/// `VIRTQ_DESC_F_WRITE`.
const F_WRITE: u16 = 2;
/// `VIRTQ_USED_F_NO_NOTIFY`.
const USED_F_NO_NOTIFY: u16 = 1;

/// One prepared chain.
#[derive(Debug, Clone, Copy)]
struct Slot {
    head: u16,
    template: usize,
    /// Host address of its first writable byte.
    reply: *const u8,
    reply_len: usize,
    in_flight: bool,
}

/// The minimal driver: prepared chains, republished by head.
pub struct LeanDriver<'a> {
    mem: GuestMemoryMmap,
    scenario: &'static str,
    templates: &'a [Template],
    size: u16,
    /// Host addresses of the avail and used rings.
    avail: *mut u8,
    used: *mut u8,
    kick_fd: RawFd,
    call_fd: RawFd,
    event_idx: bool,
    slots: Vec<Slot>,
    /// Slot of each descriptor index that heads a chain.
    slot_of_head: Vec<u16>,
    free: VecDeque<usize>,
    avail_idx: u16,
    kicked_idx: u16,
    last_used: u16,
    in_flight: usize,
    reply: Vec<u8>,
}

impl std::fmt::Debug for LeanDriver<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeanDriver")
            .field("scenario", &self.scenario)
            .field("slots", &self.slots.len())
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

/// Size of the scratch area the lean driver lays its chains out in.
pub const LEAN_AREA: u64 = 64 << 10;

fn host_range(mem: &GuestMemoryMmap, gpa: u64, len: u64) -> Result<*mut u8> {
    let start = mem
        .get_host_address(GuestAddress(gpa))
        .map_err(|e| Error::Failed(format!("guest address {gpa:#x}: {e}")))?;
    let last = mem
        .get_host_address(GuestAddress(gpa + len.max(1) - 1))
        .map_err(|e| Error::Failed(format!("guest address {:#x}: {e}", gpa + len - 1)))?;
    if (last as usize).wrapping_sub(start as usize) as u64 != len.max(1) - 1 {
        return Err(Error::Failed(format!(
            "guest range {gpa:#x}+{len:#x} is not contiguous in our mapping"
        )));
    }
    Ok(start)
}

impl<'a> LeanDriver<'a> {
    /// Takes over the idle `queue`, preparing `slots` chains (rounded up
    /// to a multiple of the number of templates) whose buffers live in the
    /// first [`LEAN_AREA`] bytes of the queue's scratch area.
    pub fn new(
        queue: &TestQueue,
        scenario: &'static str,
        templates: &'a [Template],
        slots: usize,
    ) -> Result<Self> {
        if queue.in_flight() != 0 {
            return Err(Error::Failed("the queue is not idle".into()));
        }
        if templates.is_empty() {
            return Err(Error::Failed("no request template".into()));
        }
        let mem = queue.memory().clone();
        let size = queue.size();
        let (desc_gpa, avail_gpa, used_gpa) = queue.ring_addresses();
        let avail = host_range(&mem, avail_gpa, 6 + 2 * u64::from(size))?;
        let used = host_range(&mem, used_gpa, 6 + 8 * u64::from(size))?;
        let (scratch, scratch_len) = queue.scratch();
        if scratch_len < LEAN_AREA {
            return Err(Error::Failed(format!(
                "scratch area of {scratch_len} bytes, need {LEAN_AREA}"
            )));
        }
        let slots = slots.max(1).div_ceil(templates.len()) * templates.len();
        let mut out = LeanDriver {
            scenario,
            templates,
            size,
            avail,
            used,
            kick_fd: queue.kick_fd(),
            call_fd: queue.call_fd(),
            event_idx: queue.event_idx(),
            slots: Vec::with_capacity(slots),
            slot_of_head: vec![u16::MAX; usize::from(size)],
            free: VecDeque::with_capacity(slots),
            avail_idx: queue.avail_idx(),
            kicked_idx: queue.avail_idx(),
            last_used: queue
                .used_idx()
                .map_err(Error::frontend("reading used.idx"))?,
            in_flight: 0,
            reply: Vec::with_capacity(4096),
            mem,
        };
        let mut next_desc: u16 = 0;
        let mut buf = scratch;
        for s in 0..slots {
            let template = s % templates.len();
            let t = templates
                .get(template)
                .ok_or_else(|| Error::Failed("no request template".into()))?;
            let count = u16::try_from(t.descriptors()).unwrap_or(u16::MAX);
            if count == 0 || u32::from(next_desc) + u32::from(count) > u32::from(size) {
                return Err(Error::Unsupported(format!(
                    "{slots} requests of {} descriptors do not fit a queue of {size}",
                    t.descriptors()
                )));
            }
            let bytes = (t.readable_len() + t.writable_len()) as u64;
            if buf + bytes > scratch + LEAN_AREA {
                return Err(Error::Unsupported(format!(
                    "{slots} requests of {bytes} bytes do not fit the {LEAN_AREA}-byte area"
                )));
            }
            let head = next_desc;
            let lens = t
                .readable
                .iter()
                .map(|r| (r.len() as u32, 0))
                .chain(t.writable.iter().map(|&w| (w, F_WRITE)));
            let mut addr = buf;
            for (i, (len, flags)) in lens.enumerate() {
                let idx = head + i as u16;
                let more = i + 1 < usize::from(count);
                let flags = flags | if more { F_NEXT } else { 0 };
                let next: u16 = if more { idx + 1 } else { 0 };
                let mut d = Vec::with_capacity(16);
                d.extend_from_slice(&addr.to_le_bytes());
                d.extend_from_slice(&len.to_le_bytes());
                d.extend_from_slice(&flags.to_le_bytes());
                d.extend_from_slice(&next.to_le_bytes());
                out.write(desc_gpa + 16 * u64::from(idx), &d)?;
                addr += u64::from(len);
            }
            let mut at = buf;
            for r in &t.readable {
                out.write(at, r)?;
                at += r.len() as u64;
            }
            let reply_gpa = buf + t.readable_len() as u64;
            out.slots.push(Slot {
                head,
                template,
                reply: host_range(&out.mem, reply_gpa, t.writable_len() as u64)?,
                reply_len: t.writable_len(),
                in_flight: false,
            });
            if let Some(h) = out.slot_of_head.get_mut(usize::from(head)) {
                *h = s as u16;
            }
            out.free.push_back(s);
            next_desc += count;
            // Cache-line aligned, so neighbouring replies do not share a line.
            buf = (buf + bytes + 63) & !63;
        }
        Ok(out)
    }

    fn write(&self, gpa: u64, data: &[u8]) -> Result<()> {
        self.mem
            .write_slice(data, GuestAddress(gpa))
            .map_err(|e| Error::Failed(format!("writing guest memory at {gpa:#x}: {e}")))
    }

    fn ring_u16(&self, ring: *mut u8, offset: usize) -> &AtomicU16 {
        // SAFETY: `ring` points into the guest memory mapping, which `self.mem`
        // keeps alive; every offset used is inside the ring (checked by
        // host_range at construction) and even, and the rings are 64-byte
        // aligned, so the u16 is aligned. The other side only accesses it
        // atomically or with plain aligned u16 loads and stores.
        #[allow(clippy::cast_ptr_alignment)]
        unsafe {
            AtomicU16::from_ptr(ring.add(offset).cast::<u16>())
        }
    }

    fn used_elem(&self, idx: u16) -> (u32, u32) {
        let off = 4 + 8 * usize::from(idx % self.size);
        // SAFETY: as in ring_u16; the element is inside the used ring and
        // 4-byte aligned, and the device wrote it before the used.idx we
        // loaded with Acquire.
        #[allow(clippy::cast_ptr_alignment)]
        unsafe {
            let p = self.used.add(off);
            (
                u32::from_le(p.cast::<u32>().read_volatile()),
                u32::from_le(p.add(4).cast::<u32>().read_volatile()),
            )
        }
    }
}

impl LeanDriver<'_> {
    /// Asks for a signal on the next completion (EVENT_IDX's `used_event`,
    /// as Linux's `virtqueue_get_buf` re-arms it), then looks once more:
    /// returns true if one was published before the store, which would not
    /// be signalled. Without EVENT_IDX every completion is signalled.
    pub fn arm(&self) -> bool {
        if !self.event_idx {
            return false;
        }
        let off = 4 + 2 * usize::from(self.size);
        self.ring_u16(self.avail, off)
            .store(self.last_used.to_le(), Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let used_idx = u16::from_le(self.ring_u16(self.used, 2).load(Ordering::Acquire));
        used_idx != self.last_used
    }
}

impl Driver for LeanDriver<'_> {
    fn post(&mut self) -> Result<()> {
        let s = self
            .free
            .pop_front()
            .ok_or_else(|| Error::Failed("more requests in flight than prepared".into()))?;
        let slot = self
            .slots
            .get_mut(s)
            .ok_or_else(|| Error::Failed("bad slot".into()))?;
        slot.in_flight = true;
        let head = slot.head;
        let entry = 4 + 2 * usize::from(self.avail_idx % self.size);
        self.ring_u16(self.avail, entry)
            .store(head.to_le(), Ordering::Relaxed);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        // Release: the ring entry before the index that publishes it.
        self.ring_u16(self.avail, 2)
            .store(self.avail_idx.to_le(), Ordering::Release);
        self.in_flight += 1;
        Ok(())
    }

    fn kick(&mut self) -> Result<()> {
        // Our avail.idx store before reading the device's suppression state.
        fence(Ordering::SeqCst);
        let old = self.kicked_idx;
        let new = self.avail_idx;
        self.kicked_idx = new;
        let needed = if self.event_idx {
            let event = u16::from_le(
                self.ring_u16(self.used, 4 + 8 * usize::from(self.size))
                    .load(Ordering::Acquire),
            );
            new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
        } else {
            new != old
                && u16::from_le(self.ring_u16(self.used, 0).load(Ordering::Acquire))
                    & USED_F_NO_NOTIFY
                    == 0
        };
        if needed {
            let one = 1u64.to_ne_bytes();
            // SAFETY: writing 8 bytes from an 8-byte buffer to our eventfd.
            let n = unsafe { libc::write(self.kick_fd, one.as_ptr().cast(), one.len()) };
            if n != 8 {
                return Err(Error::io("kicking", std::io::Error::last_os_error()));
            }
        }
        Ok(())
    }

    fn reap(&mut self) -> Result<usize> {
        let used_idx = u16::from_le(self.ring_u16(self.used, 2).load(Ordering::Acquire));
        let pending = usize::from(used_idx.wrapping_sub(self.last_used));
        if pending > self.in_flight {
            return Err(Error::Protocol(format!(
                "used.idx jumped from {} to {used_idx} with {} in flight",
                self.last_used, self.in_flight
            )));
        }
        for _ in 0..pending {
            let (id, len) = self.used_elem(self.last_used);
            let s = usize::try_from(id)
                .ok()
                .and_then(|id| self.slot_of_head.get(id))
                .map(|&s| usize::from(s))
                .ok_or_else(|| Error::Protocol(format!("used id {id} is not a chain head")))?;
            let slot = match self.slots.get_mut(s) {
                Some(slot) if slot.in_flight => slot,
                _ => return Err(Error::Protocol(format!("used id {id} is not in flight"))),
            };
            slot.in_flight = false;
            let (reply, reply_len, template) = (slot.reply, slot.reply_len, slot.template);
            let n = (len as usize).min(reply_len);
            self.reply.resize(n, 0);
            // SAFETY: `reply` maps `reply_len >= n` bytes of guest memory
            // (checked by host_range), kept alive by `self.mem`; the device
            // finished writing them before publishing the used element, and
            // `self.reply` is our own buffer of `n` bytes.
            unsafe {
                std::ptr::copy_nonoverlapping(reply, self.reply.as_mut_ptr(), n);
            }
            if let Some(t) = self.templates.get(template) {
                t.verify(self.scenario, len, &self.reply)?;
            }
            self.free.push_back(s);
            self.last_used = self.last_used.wrapping_add(1);
            self.in_flight -= 1;
        }
        Ok(pending)
    }

    fn wait(&mut self, timeout: Duration) -> Result<()> {
        if self.arm() {
            return Ok(());
        }
        wait_readable(self.call_fd, timeout)?;
        drain_eventfd(self.call_fd).map(|_| ())
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }
}
