// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A split virtqueue's available and used rings, mapped once per callback.
//!
//! virtio-queue reaches every ring entry through vm-memory's generic access
//! path, a region lookup and a slice iterator for each 2-byte load. With many
//! requests in flight that was a large part of the daemon's CPU per request
//! (BENCHMARKS.md). [`Rings`] resolves both rings to host slices when a
//! device callback takes a queue, and the per-request loads and stores go to
//! those slices.
//!
//! The queue's state (`next_avail`, `next_used`, the addresses) stays in
//! virtio-queue's `Queue`, the single source of truth that the vhost-user
//! message thread also reads (GET_VRING_BASE) and that the EVENT_IDX
//! enable/disable calls use. A `Rings` only remembers which addresses it
//! mapped, so a queue that was stopped or moved is noticed before the next
//! access.

use std::num::Wrapping;
use std::sync::atomic::{fence, Ordering};

use virtio_bindings::bindings::virtio_ring::VRING_USED_F_NO_NOTIFY;
use virtio_queue::{Queue as QueueState, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, VolatileMemory, VolatileSlice};

use crate::vring::GuestMem;

/// Bytes before the first entry of either ring: `flags` and `idx`.
const HEADER: usize = 4;
/// Size of one available-ring entry.
const AVAIL_ENTRY: usize = 2;
/// Size of one used-ring entry: `id` and `len`.
const USED_ENTRY: usize = 8;
/// Size of the trailing `used_event` / `avail_event` field.
const EVENT_FIELD: usize = 2;

/// The two rings of a ready queue, as host slices.
#[derive(Debug)]
pub(crate) struct Rings<'a> {
    avail: VolatileSlice<'a, ()>,
    used: VolatileSlice<'a, ()>,
    avail_addr: u64,
    used_addr: u64,
    size: u16,
    event_idx: bool,
}

impl<'a> Rings<'a> {
    /// Maps the rings of `queue`, or `None` if it is not ready or a ring is
    /// not one contiguous piece of host memory (legal, but never seen from
    /// QEMU); the caller then uses virtio-queue's own path.
    pub(crate) fn map(mem: &'a GuestMem, queue: &QueueState) -> Option<Self> {
        if !queue.ready() {
            return None;
        }
        let size = queue.size();
        let entries = usize::from(size);
        // The trailing event fields only exist with EVENT_IDX; do not map
        // them otherwise, a ring may end at the end of memory.
        let event = if queue.event_idx_enabled() {
            EVENT_FIELD
        } else {
            0
        };
        let avail = mem
            .get_slice(
                GuestAddress(queue.avail_ring()),
                HEADER + AVAIL_ENTRY * entries + event,
            )
            .ok()?;
        let used = mem
            .get_slice(
                GuestAddress(queue.used_ring()),
                HEADER + USED_ENTRY * entries + event,
            )
            .ok()?;
        Some(Rings {
            avail,
            used,
            avail_addr: queue.avail_ring(),
            used_addr: queue.used_ring(),
            size,
            event_idx: queue.event_idx_enabled(),
        })
    }

    /// Whether these are still the rings of `queue`: it may have been
    /// stopped, or reconfigured by the frontend, since they were mapped.
    pub(crate) fn matches(&self, queue: &QueueState) -> bool {
        queue.ready()
            && queue.size() == self.size
            && queue.avail_ring() == self.avail_addr
            && queue.used_ring() == self.used_addr
            && queue.event_idx_enabled() == self.event_idx
    }

    /// The queue size.
    pub(crate) fn size(&self) -> u16 {
        self.size
    }

    /// Whether the driver negotiated EVENT_IDX (as it was when mapped).
    pub(crate) fn event_idx(&self) -> bool {
        self.event_idx
    }

    /// The driver's `avail.idx`, with acquire ordering so that the entries
    /// and descriptors it published are visible after it.
    pub(crate) fn avail_idx(&self) -> Option<u16> {
        self.avail
            .load::<u16>(2, Ordering::Acquire)
            .ok()
            .map(u16::from_le)
    }

    /// The head index in available-ring slot `position % size`.
    pub(crate) fn avail_entry(&self, position: u16) -> Option<u16> {
        let slot = usize::from(position.checked_rem(self.size)?);
        self.avail
            .get_ref::<u16>(HEADER + AVAIL_ENTRY * slot)
            .ok()
            .map(|entry| u16::from_le(entry.load()))
    }

    /// Writes used-ring entry `position % size` and publishes it by storing
    /// `position + 1` as `used.idx` (release: the entry, and everything the
    /// device wrote into the chain, is visible before the index).
    pub(crate) fn push_used(&self, position: u16, head: u16, len: u32) -> Option<()> {
        let slot = usize::from(position.checked_rem(self.size)?);
        let offset = HEADER + USED_ENTRY * slot;
        self.used
            .get_ref::<u32>(offset)
            .ok()?
            .store(u32::from(head).to_le());
        self.used
            .get_ref::<u32>(offset + 4)
            .ok()?
            .store(len.to_le());
        self.used
            .store(position.wrapping_add(1).to_le(), 2, Ordering::Release)
            .ok()
    }

    /// Asks the driver to kick (or not) when it publishes more buffers.
    ///
    /// With EVENT_IDX, enabling sets `avail_event` to `next_avail`, so the
    /// driver kicks when it makes that entry available, and disabling needs
    /// no write: a driver only kicks once past `avail_event`. Without it,
    /// the used ring's NO_NOTIFY flag says the same.
    ///
    /// Returns whether, after enabling, more buffers are already available:
    /// a driver that published between the last pop and the write above did
    /// not kick, so the caller must drain again.
    pub(crate) fn set_notification(&self, enable: bool, next_avail: u16) -> Option<bool> {
        if self.event_idx {
            if !enable {
                return Some(false);
            }
            let offset = HEADER + USED_ENTRY * usize::from(self.size);
            self.used
                .store(next_avail.to_le(), offset, Ordering::Relaxed)
                .ok()?;
        } else {
            let flags = if enable {
                0
            } else {
                VRING_USED_F_NO_NOTIFY as u16
            };
            self.used.store(flags.to_le(), 0, Ordering::Relaxed).ok()?;
            if !enable {
                return Some(false);
            }
        }
        // The write above must be visible before avail.idx is read again.
        fence(Ordering::SeqCst);
        let idx = u16::from_le(self.avail.load::<u16>(2, Ordering::Relaxed).ok()?);
        Some(idx != next_avail)
    }

    /// Whether the driver wants an interrupt for the entries from `first`
    /// (inclusive) to `next_used` (exclusive): the EVENT_IDX test of the
    /// spec, `used_event` in that window. Without EVENT_IDX, always.
    pub(crate) fn needs_notification(&self, first: u16, next_used: u16) -> bool {
        if !self.event_idx {
            return true;
        }
        // The used-ring stores must be visible before used_event is read,
        // or a driver that just set it could be missed.
        fence(Ordering::SeqCst);
        let offset = HEADER + AVAIL_ENTRY * usize::from(self.size);
        let Ok(used_event) = self.avail.load::<u16>(offset, Ordering::Relaxed) else {
            return true;
        };
        let (new, old, event) = (
            Wrapping(next_used),
            Wrapping(first),
            Wrapping(u16::from_le(used_event)),
        );
        new - event - Wrapping(1) < new - old
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use vm_memory::{Bytes, GuestAddress};

    use super::*;

    const AVAIL: u64 = 0x1000;
    const USED: u64 = 0x2000;

    fn queue(mem: &GuestMem, size: u16, event_idx: bool) -> QueueState {
        let mut q = QueueState::new(size).unwrap();
        q.set_avail_ring_address(Some(AVAIL as u32), Some(0));
        q.set_used_ring_address(Some(USED as u32), Some(0));
        q.set_desc_table_address(Some(0), Some(0));
        q.set_event_idx(event_idx);
        q.set_ready(true);
        let _ = mem;
        q
    }

    fn memory() -> GuestMem {
        GuestMem::from_ranges(&[(GuestAddress(0), 0x4000)]).unwrap()
    }

    #[test]
    fn reads_the_avail_ring_and_publishes_used_entries() {
        let mem = memory();
        let q = queue(&mem, 4, true);
        let rings = Rings::map(&mem, &q).unwrap();
        mem.write_obj(3u16, GuestAddress(AVAIL + 2)).unwrap();
        mem.write_obj(7u16, GuestAddress(AVAIL + 4 + 2)).unwrap();
        assert_eq!(rings.avail_idx(), Some(3));
        // Position 5 is slot 1.
        assert_eq!(rings.avail_entry(5), Some(7));

        rings.push_used(6, 7, 0x1234).unwrap();
        let id: u32 = mem.read_obj(GuestAddress(USED + 4 + 8 * 2)).unwrap();
        let len: u32 = mem.read_obj(GuestAddress(USED + 4 + 8 * 2 + 4)).unwrap();
        let idx: u16 = mem.read_obj(GuestAddress(USED + 2)).unwrap();
        assert_eq!((id, len, idx), (7, 0x1234, 7));
    }

    #[test]
    fn event_idx_window() {
        let mem = memory();
        let q = queue(&mem, 4, true);
        let rings = Rings::map(&mem, &q).unwrap();
        let used_event = GuestAddress(AVAIL + 4 + 2 * 4);
        // The driver wants to hear when entry 5 is used.
        mem.write_obj(5u16, used_event).unwrap();
        assert!(!rings.needs_notification(3, 5));
        assert!(rings.needs_notification(3, 6));
        assert!(rings.needs_notification(5, 6));
        assert!(!rings.needs_notification(6, 8));
        // Across the 16-bit wrap.
        mem.write_obj(u16::MAX, used_event).unwrap();
        assert!(rings.needs_notification(u16::MAX - 1, 1));
        assert!(!rings.needs_notification(0, 1));
    }

    #[test]
    fn without_event_idx_every_batch_notifies() {
        let mem = memory();
        let q = queue(&mem, 4, false);
        let rings = Rings::map(&mem, &q).unwrap();
        assert!(rings.needs_notification(1, 1));
    }

    #[test]
    fn kicks_are_asked_for_with_avail_event() {
        let mem = memory();
        let q = queue(&mem, 4, true);
        let rings = Rings::map(&mem, &q).unwrap();
        let avail_event = GuestAddress(USED + 4 + 8 * 4);
        mem.write_obj(9u16, GuestAddress(AVAIL + 2)).unwrap();
        assert_eq!(rings.set_notification(false, 9), Some(false));
        assert_eq!(mem.read_obj::<u16>(avail_event).unwrap(), 0);
        // Nothing new: the caller may sleep.
        assert_eq!(rings.set_notification(true, 9), Some(false));
        assert_eq!(mem.read_obj::<u16>(avail_event).unwrap(), 9);
        // The driver published one more before the write: drain again.
        assert_eq!(rings.set_notification(true, 8), Some(true));
    }

    #[test]
    fn kicks_are_asked_for_with_the_used_flags() {
        let mem = memory();
        let q = queue(&mem, 4, false);
        let rings = Rings::map(&mem, &q).unwrap();
        assert_eq!(rings.set_notification(false, 0), Some(false));
        assert_eq!(mem.read_obj::<u16>(GuestAddress(USED)).unwrap(), 1);
        assert_eq!(rings.set_notification(true, 0), Some(false));
        assert_eq!(mem.read_obj::<u16>(GuestAddress(USED)).unwrap(), 0);
    }

    #[test]
    fn a_changed_queue_no_longer_matches() {
        let mem = memory();
        let mut q = queue(&mem, 4, true);
        let rings = Rings::map(&mem, &q).unwrap();
        assert!(rings.matches(&q));
        q.set_used_ring_address(Some(0x3000), Some(0));
        assert!(!rings.matches(&q));
        q.set_ready(false);
        assert!(Rings::map(&mem, &q).is_none());
    }

    #[test]
    fn rings_outside_memory_are_not_mapped() {
        let mem = memory();
        let mut q = queue(&mem, 4, true);
        q.set_used_ring_address(Some(0x3ff8), Some(0));
        assert!(Rings::map(&mem, &q).is_none());
    }
}
