// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Allocators for one queue's descriptors and data buffers.
//!
//! Both are sized once when the queue is set up and never allocate on the
//! heap afterwards, so the benchmark's millions of requests cost no `malloc`.

use std::collections::VecDeque;

/// Free list of descriptor-table slots, threaded through a shadow `next`
/// array (the same trick the Linux driver uses).
///
/// The shadow array, not the `next` fields in guest memory, is the source of
/// truth: raw test chains may write arbitrary `next` values to the table.
#[derive(Debug)]
pub(crate) struct DescPool {
    next: Vec<u16>,
    free_head: u16,
    num_free: u16,
}

impl DescPool {
    /// A pool with every one of `size` slots free.
    pub fn new(size: u16) -> Self {
        DescPool {
            next: (1..=size).collect(),
            free_head: 0,
            num_free: size,
        }
    }

    /// Number of free slots.
    pub fn num_free(&self) -> u16 {
        self.num_free
    }

    /// Takes `count` slots, returning `(first, last)`; the slots in between
    /// are reached with [`DescPool::next`].
    pub fn alloc(&mut self, count: u16) -> Option<(u16, u16)> {
        if count == 0 || count > self.num_free {
            return None;
        }
        let first = self.free_head;
        let mut last = first;
        for _ in 1..count {
            last = self.next(last);
        }
        self.free_head = self.next(last);
        self.num_free -= count;
        Some((first, last))
    }

    /// The slot after `i` in an allocated chain (or in the free list).
    pub fn next(&self, i: u16) -> u16 {
        self.next.get(usize::from(i)).copied().unwrap_or(u16::MAX)
    }

    /// Returns a chain of `count` slots from `first` to `last`.
    pub fn free(&mut self, first: u16, last: u16, count: u16) {
        if let Some(n) = self.next.get_mut(usize::from(last)) {
            *n = self.free_head;
        }
        self.free_head = first;
        self.num_free += count;
    }
}

#[derive(Debug, Clone, Copy)]
struct Block {
    off: u64,
    freed: bool,
}

/// A circular allocator of byte ranges inside one queue's data area.
///
/// Requests usually complete in order, so a ring is both the simplest and
/// the most compact choice: the space of the oldest in-flight chain is
/// reclaimed as soon as it completes. A chain completed out of order is
/// marked and reclaimed once everything older is done too. When nothing is
/// in flight the ring restarts at offset 0, so an idle queue can always
/// serve a request as large as its whole area.
#[derive(Debug)]
pub(crate) struct BufferRing {
    size: u64,
    /// Next offset to hand out.
    head: u64,
    /// Live blocks, oldest first; the oldest one's `off` is the tail.
    live: VecDeque<Block>,
    /// Sequence number of `live[0]`.
    front_seq: u64,
}

/// Offsets are aligned so that indirect tables (16-byte entries) and typical
/// request headers can be placed directly at the start of a block.
pub(crate) const BUF_ALIGN: u64 = 16;

impl BufferRing {
    /// A ring over `size` bytes able to track `max_blocks` live blocks
    /// without reallocating.
    pub fn new(size: u64, max_blocks: usize) -> Self {
        BufferRing {
            size: size & !(BUF_ALIGN - 1),
            head: 0,
            live: VecDeque::with_capacity(max_blocks),
            front_seq: 0,
        }
    }

    /// Capacity in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Allocates `len` bytes; returns `(offset, seq)` where `seq` names the
    /// block for [`BufferRing::free`].
    pub fn alloc(&mut self, len: u64) -> Option<(u64, u64)> {
        let len = len.max(1).checked_add(BUF_ALIGN - 1)? & !(BUF_ALIGN - 1);
        if len > self.size {
            return None;
        }
        let off = match self.live.front() {
            None => 0,
            Some(tail) => {
                let tail = tail.off;
                if self.head > tail {
                    // Live data is [tail, head): room at the end, else wrap.
                    if self.size - self.head >= len {
                        self.head
                    } else if tail >= len {
                        0
                    } else {
                        return None;
                    }
                } else if tail - self.head >= len {
                    // Wrapped (or full when head == tail): room in [head, tail).
                    self.head
                } else {
                    return None;
                }
            }
        };
        self.head = off + len;
        let seq = self.front_seq + self.live.len() as u64;
        self.live.push_back(Block { off, freed: false });
        Some((off, seq))
    }

    /// Releases block `seq`. Unknown or already-freed sequence numbers are
    /// ignored.
    pub fn free(&mut self, seq: u64) {
        let Some(idx) = seq.checked_sub(self.front_seq) else {
            return;
        };
        let Some(block) = usize::try_from(idx).ok().and_then(|i| self.live.get_mut(i)) else {
            return;
        };
        block.freed = true;
        while self.live.front().is_some_and(|b| b.freed) {
            self.live.pop_front();
            self.front_seq += 1;
        }
        if self.live.is_empty() {
            self.head = 0;
        }
    }

    /// Number of live (not yet reclaimed) blocks.
    #[cfg(test)]
    pub fn live_blocks(&self) -> usize {
        self.live.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn desc_pool_alloc_and_free() {
        let mut p = DescPool::new(8);
        let (a, a_last) = p.alloc(3).unwrap();
        assert_eq!((a, a_last), (0, 2));
        assert_eq!(p.next(0), 1);
        assert_eq!(p.num_free(), 5);
        let (b, b_last) = p.alloc(5).unwrap();
        assert_eq!((b, b_last), (3, 7));
        assert!(p.alloc(1).is_none());
        p.free(a, a_last, 3);
        assert_eq!(p.num_free(), 3);
        assert!(p.alloc(4).is_none());
        let (c, c_last) = p.alloc(3).unwrap();
        // The freed chain is reused, walking the shadow links.
        let mut seen = vec![c];
        let mut i = c;
        while i != c_last {
            i = p.next(i);
            seen.push(i);
        }
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 1, 2]);
        assert!(p.alloc(0).is_none());
    }

    #[test]
    fn desc_pool_survives_many_cycles() {
        let mut p = DescPool::new(4);
        for i in 0..10_000u32 {
            let n = u16::try_from(i % 4 + 1).unwrap();
            let (f, l) = p.alloc(n).unwrap();
            p.free(f, l, n);
            assert_eq!(p.num_free(), 4);
        }
    }

    #[test]
    fn ring_in_order_reuses_space() {
        let mut r = BufferRing::new(1024, 16);
        for _ in 0..1000 {
            let (off, seq) = r.alloc(100).unwrap();
            assert_eq!(off, 0);
            r.free(seq);
        }
        assert_eq!(r.live_blocks(), 0);
    }

    #[test]
    fn ring_wraps_and_reclaims_out_of_order() {
        let mut r = BufferRing::new(256, 16);
        let (a, sa) = r.alloc(100).unwrap(); // [0,112)
        let (b, sb) = r.alloc(100).unwrap(); // [112,224)
        assert_eq!((a, b), (0, 112));
        // 32 bytes left at the end, tail at 0: no room.
        assert!(r.alloc(40).is_none());
        // Completing b first frees nothing (a is older).
        r.free(sb);
        assert!(r.alloc(40).is_none());
        assert_eq!(r.live_blocks(), 2);
        r.free(sa);
        assert_eq!(r.live_blocks(), 0);
        // Everything free again: restarts at 0.
        let (c, sc) = r.alloc(200).unwrap();
        assert_eq!(c, 0);
        let (d, sd) = r.alloc(48).unwrap();
        assert_eq!(d, 208);
        r.free(sc);
        // Head is at the end; tail moved to d: wrap to the front.
        let (e, se) = r.alloc(150).unwrap();
        assert_eq!(e, 0);
        // Wrapped: only [160, 208) left.
        assert!(r.alloc(64).is_none());
        let (f, sf) = r.alloc(48).unwrap();
        assert_eq!(f, 160);
        // Full.
        assert!(r.alloc(1).is_none());
        r.free(sd);
        r.free(se);
        r.free(sf);
        assert_eq!(r.live_blocks(), 0);
        // Double and unknown frees are harmless.
        r.free(sf);
        r.free(12345);
    }

    #[test]
    fn ring_rejects_oversized_and_handles_zero() {
        let mut r = BufferRing::new(64, 4);
        assert!(r.alloc(65).is_none());
        assert!(r.alloc(u64::MAX).is_none());
        let (z, _) = r.alloc(0).unwrap();
        assert_eq!(z, 0);
        let (o, _) = r.alloc(1).unwrap();
        assert_eq!(o, BUF_ALIGN);
    }

    /// Random model check: live blocks never overlap and stay in bounds.
    #[test]
    fn ring_random_blocks_never_overlap() {
        let mut r = BufferRing::new(4096, 64);
        let mut live: Vec<(u64, u64, u64)> = Vec::new(); // (off, len, seq)
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if x % 3 != 0 && live.len() < 64 {
                let len = x % 700 + 1;
                if let Some((off, seq)) = r.alloc(len) {
                    assert!(off + len <= 4096);
                    for &(o, l, _) in &live {
                        assert!(off + len <= o || o + l <= off, "overlap");
                    }
                    live.push((off, len, seq));
                }
            } else if !live.is_empty() {
                let i = usize::try_from((x >> 20) % live.len() as u64).unwrap();
                let (_, _, seq) = live.swap_remove(i);
                r.free(seq);
            }
        }
        for (_, _, seq) in live {
            r.free(seq);
        }
        assert_eq!(r.live_blocks(), 0);
        assert_eq!(r.alloc(4096).unwrap().0, 0);
    }
}
