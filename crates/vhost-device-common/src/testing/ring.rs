// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Split-virtqueue layout arithmetic (virtio 1.x, section 2.7).
//!
//! Kept free of any memory access so that the offsets can be unit-tested on
//! their own: an off-by-two in `used_event` or `avail_event` does not fail
//! loudly, it just loses interrupts under EVENT_IDX.

/// Size of one split descriptor (`struct virtq_desc`).
pub(crate) const DESC_SIZE: u64 = 16;
/// Size of one used-ring element (`struct virtq_used_elem`).
pub(crate) const USED_ELEM_SIZE: u64 = 8;

/// `VIRTQ_DESC_F_NEXT`: the chain continues at `next`.
pub const VIRTQ_DESC_F_NEXT: u16 = 1;
/// `VIRTQ_DESC_F_WRITE`: the buffer is device-writable.
pub const VIRTQ_DESC_F_WRITE: u16 = 2;
/// `VIRTQ_DESC_F_INDIRECT`: the buffer is a table of descriptors.
pub const VIRTQ_DESC_F_INDIRECT: u16 = 4;

/// `VIRTQ_USED_F_NO_NOTIFY`: the device asks not to be kicked (no EVENT_IDX).
pub(crate) const VIRTQ_USED_F_NO_NOTIFY: u16 = 1;

/// Rings are placed on cache-line boundaries: the driver writes the avail
/// ring and the device writes the used ring, and keeping them on separate
/// lines avoids false sharing in the benchmarks. It also satisfies the
/// spec's 16/2/4-byte alignment requirements.
const RING_ALIGN: u64 = 64;

/// Offsets of the three parts of a split virtqueue, relative to the start of
/// the queue's ring area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RingLayout {
    /// Queue size (number of descriptors), a power of two.
    pub size: u16,
    /// Descriptor table offset.
    pub desc: u64,
    /// Available ring offset (`flags`, `idx`, `ring[size]`, `used_event`).
    pub avail: u64,
    /// Used ring offset (`flags`, `idx`, `ring[size]`, `avail_event`).
    pub used: u64,
    /// Total bytes the three parts occupy, rounded up to [`RING_ALIGN`].
    pub total: u64,
}

/// Rounds `v` up to a multiple of `align`, which must be a power of two.
pub(crate) const fn align_up(v: u64, align: u64) -> u64 {
    (v + align - 1) & !(align - 1)
}

impl RingLayout {
    /// Computes the layout of a queue of `size` entries.
    ///
    /// `size` is at most 32768, so none of the products below can overflow.
    pub fn new(size: u16) -> Self {
        let n = u64::from(size);
        let desc = 0;
        let avail = align_up(desc + DESC_SIZE * n, RING_ALIGN);
        // flags + idx + ring[n] + used_event
        let avail_len = 2 + 2 + 2 * n + 2;
        let used = align_up(avail + avail_len, RING_ALIGN);
        // flags + idx + ring[n] + avail_event
        let used_len = 2 + 2 + USED_ELEM_SIZE * n + 2;
        let total = align_up(used + used_len, RING_ALIGN);
        RingLayout {
            size,
            desc,
            avail,
            used,
            total,
        }
    }

    /// Offset of descriptor `i` (taken modulo the queue size).
    pub fn desc_entry(&self, i: u16) -> u64 {
        self.desc + DESC_SIZE * u64::from(i % self.size)
    }

    /// Offset of `avail.idx`.
    pub fn avail_idx(&self) -> u64 {
        self.avail + 2
    }

    /// Offset of the avail-ring slot used for free-running index `idx`.
    pub fn avail_entry(&self, idx: u16) -> u64 {
        self.avail + 4 + 2 * u64::from(idx % self.size)
    }

    /// Offset of `used_event`, written by the driver under EVENT_IDX.
    pub fn used_event(&self) -> u64 {
        self.avail + 4 + 2 * u64::from(self.size)
    }

    /// Offset of `used.flags`.
    pub fn used_flags(&self) -> u64 {
        self.used
    }

    /// Offset of `used.idx`.
    pub fn used_idx(&self) -> u64 {
        self.used + 2
    }

    /// Offset of the used-ring element for free-running index `idx`.
    pub fn used_entry(&self, idx: u16) -> u64 {
        self.used + 4 + USED_ELEM_SIZE * u64::from(idx % self.size)
    }

    /// Offset of `avail_event`, written by the device under EVENT_IDX.
    pub fn avail_event(&self) -> u64 {
        self.used + 4 + USED_ELEM_SIZE * u64::from(self.size)
    }
}

/// The spec's `vring_need_event()`: whether moving an index from `old` to
/// `new` crosses `event`, all with 16-bit wrap-around.
pub(crate) fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// Encodes one split descriptor in its little-endian wire format.
pub(crate) fn encode_desc(addr: u64, len: u32, flags: u16, next: u16) -> [u8; 16] {
    let mut d = [0u8; 16];
    let (a, rest) = d.split_at_mut(8);
    a.copy_from_slice(&addr.to_le_bytes());
    let (l, rest) = rest.split_at_mut(4);
    l.copy_from_slice(&len.to_le_bytes());
    let (f, n) = rest.split_at_mut(2);
    f.copy_from_slice(&flags.to_le_bytes());
    n.copy_from_slice(&next.to_le_bytes());
    d
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn layout_of_256() {
        let l = RingLayout::new(256);
        assert_eq!(l.desc, 0);
        assert_eq!(l.avail, 4096);
        // avail: 4 + 512 + 2 = 518 bytes -> used at 4096 + 576
        assert_eq!(l.used, 4096 + 576);
        assert_eq!(l.used_event(), 4096 + 4 + 512);
        assert_eq!(l.avail_event(), 4096 + 576 + 4 + 2048);
        assert_eq!(l.total, align_up(4096 + 576 + 2054, 64));
    }

    #[test]
    fn layout_parts_do_not_overlap_and_are_aligned() {
        for shift in 0..=15 {
            let size = 1u16 << shift;
            let l = RingLayout::new(size);
            let n = u64::from(size);
            assert_eq!(l.desc % 16, 0);
            assert_eq!(l.avail % 2, 0);
            assert_eq!(l.used % 4, 0);
            assert!(l.desc + 16 * n <= l.avail);
            assert!(l.used_event() + 2 <= l.used);
            assert!(l.avail_event() + 2 <= l.total);
            assert_eq!(l.avail_entry(size), l.avail_entry(0));
            assert_eq!(l.used_entry(size.wrapping_add(3)), l.used_entry(3));
            assert_eq!(l.avail_entry(size - 1) + 2, l.used_event());
            assert_eq!(l.used_entry(size - 1) + 8, l.avail_event());
        }
    }

    #[test]
    fn need_event_matches_spec() {
        // Crossing the event index notifies.
        assert!(need_event(5, 6, 5));
        assert!(need_event(5, 10, 3));
        // Not yet reached, or already passed before `old`.
        assert!(!need_event(5, 5, 3));
        assert!(!need_event(5, 10, 6));
        // Nothing published: never notify.
        assert!(!need_event(5, 5, 5));
        // Wrap-around.
        assert!(need_event(0xffff, 1, 0xfffe));
        assert!(need_event(0, 1, 0xffff));
        assert!(!need_event(2, 1, 0xffff));
    }

    #[test]
    fn descriptor_encoding_is_little_endian() {
        let d = encode_desc(0x1122_3344_5566_7788, 0xaabb_ccdd, 0x0102, 0x0304);
        assert_eq!(
            d,
            [
                0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0xdd, 0xcc, 0xbb, 0xaa, 0x02, 0x01,
                0x04, 0x03
            ]
        );
    }
}
