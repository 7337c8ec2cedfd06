// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The daemon's global allocator: the system allocator, with large blocks
//! page-aligned.
//!
//! rutabaga_gfx keeps each 2D resource in a `vec![0; size]` of its own, and
//! glibc serves a block that large from an mmap'd chunk whose user pointer
//! sits 16 bytes past a page boundary. Guest memory, the source of every
//! `TRANSFER_TO_HOST_2D`, is page-aligned, so each row copy then runs with
//! source and destination 16 bytes out of step, which on x86 `memmove`
//! costs half or more of its speed (see BENCHMARKS.md, "gpu-2d is one
//! misaligned memcpy"). Asking for page alignment of large blocks puts both
//! sides in step for any rectangle that starts at the same column.

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks of at least this many bytes are page-aligned. Smaller ones keep
/// the alignment they ask for: aligning them would waste up to a page each,
/// and copies that small are not bandwidth-bound.
pub const LARGE: usize = 256 * 1024;

/// The alignment given to large blocks: 4 KiB, the smallest page size of
/// every architecture we build for (x86_64 has 4K pages; aarch64 kernels use
/// 4K, 16K or 64K). What the copies need is that source and destination
/// share their offset within a 4 KiB block, and guest memory (mapped, so
/// host-page-aligned) and the guest's page-aligned buffers in it are
/// aligned to at least 4 KiB on all of them. A 16K or 64K page host needs
/// no more: aligning to its page size would waste up to 64 KiB per block
/// for no faster copy. So this is deliberately not the runtime page size.
pub const PAGE: usize = 4096;

/// [`System`], with every block of [`LARGE`] bytes or more aligned to
/// [`PAGE`].
///
/// The layout handed to [`System`] is a pure function of the caller's
/// layout ([`PageAlignLarge::layout_for`]), so `dealloc` and `realloc` pass
/// the system allocator exactly the layout the block was made with.
#[derive(Debug, Default, Clone, Copy)]
pub struct PageAlignLarge;

impl PageAlignLarge {
    /// The layout a request for `layout` is served with.
    pub fn layout_for(layout: Layout) -> Layout {
        if layout.size() < LARGE || layout.align() >= PAGE {
            return layout;
        }
        // Fails only if the size rounded up to a page overflows `isize`;
        // such a request fails in the system allocator anyway, so leave it
        // as it is (the rule stays a function of the layout).
        Layout::from_size_align(layout.size(), PAGE).unwrap_or(layout)
    }
}

// SAFETY: every method forwards to `System`, which upholds the `GlobalAlloc`
// contract, with a layout derived by `layout_for` alone. `layout_for` keeps
// the size and never lowers the alignment, so a block from `System` for the
// derived layout satisfies the caller's layout; and since the same function
// is applied on the way back, `System` always receives for a block the
// layout it allocated the block with.
unsafe impl GlobalAlloc for PageAlignLarge {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: `layout_for` keeps the size, which the caller guarantees
        // is non-zero.
        unsafe { System.alloc(Self::layout_for(layout)) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe { System.alloc_zeroed(Self::layout_for(layout)) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller allocated `ptr` here with `layout`, so `System`
        // allocated it with `layout_for(layout)`.
        unsafe { System.dealloc(ptr, Self::layout_for(layout)) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = Self::layout_for(layout);
        // SAFETY: the caller guarantees that `new_size`, rounded up to
        // `layout.align()`, does not overflow `isize`, and that it is
        // non-zero.
        let requested = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let new = Self::layout_for(requested);
        if new.align() == old.align() {
            // SAFETY: `System` allocated `ptr` with `old`; `new_size` meets
            // the caller's guarantees, which hold for `old.align()` too
            // since `new` (same alignment) is a valid layout.
            return unsafe { System.realloc(ptr, old, new_size) };
        }
        // Crossing `LARGE` changes the alignment, which `System.realloc`
        // cannot do (it keeps the old one): move the block by hand.
        // SAFETY: `new` has a non-zero size (`new_size`).
        let moved = unsafe { System.alloc(new) };
        if !moved.is_null() {
            // SAFETY: both blocks are live, distinct, and at least
            // `min(old size, new_size)` bytes long; `ptr` goes back to
            // `System` with the layout it was allocated with.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                System.dealloc(ptr, old);
            }
        }
        moved
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn only_large_blocks_are_raised() {
        assert_eq!(PageAlignLarge::layout_for(layout(64, 8)), layout(64, 8));
        assert_eq!(
            PageAlignLarge::layout_for(layout(LARGE - 1, 16)),
            layout(LARGE - 1, 16)
        );
        assert_eq!(
            PageAlignLarge::layout_for(layout(LARGE, 1)),
            layout(LARGE, PAGE)
        );
        // A stricter alignment than a page is kept.
        assert_eq!(
            PageAlignLarge::layout_for(layout(LARGE, 2 * PAGE)),
            layout(LARGE, 2 * PAGE)
        );
    }

    /// [`PAGE`] must divide the host's page size, whatever the architecture
    /// (4K, 16K, 64K): then page-aligned guest memory is `PAGE`-aligned too.
    #[test]
    fn page_divides_the_host_page_size() {
        // SAFETY: sysconf has no preconditions.
        let host = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let host = usize::try_from(host).unwrap();
        assert!(host >= PAGE && host % PAGE == 0, "host page size {host}");
        for other in [16 << 10, 64 << 10] {
            assert_eq!(other % PAGE, 0);
        }
    }

    /// Allocates through the allocator under test, checks the block, fills
    /// it with a pattern and hands it back.
    unsafe fn alloc_filled(a: &PageAlignLarge, l: Layout, zeroed: bool) -> *mut u8 {
        // SAFETY: `l` has a non-zero size in every caller.
        let p = unsafe {
            if zeroed {
                a.alloc_zeroed(l)
            } else {
                a.alloc(l)
            }
        };
        assert!(!p.is_null());
        assert_eq!(p as usize % PageAlignLarge::layout_for(l).align(), 0);
        // SAFETY: `p` is a live block of `l.size()` bytes.
        let block = unsafe { std::slice::from_raw_parts_mut(p, l.size()) };
        if zeroed {
            assert!(block.iter().all(|&b| b == 0));
        }
        for (i, b) in block.iter_mut().enumerate() {
            *b = i as u8;
        }
        p
    }

    fn check_pattern(p: *const u8, len: usize) {
        // SAFETY: the caller's block is live and at least `len` bytes.
        let block = unsafe { std::slice::from_raw_parts(p, len) };
        assert!(block.iter().enumerate().all(|(i, &b)| b == i as u8));
    }

    #[test]
    fn alloc_and_alloc_zeroed_align_large_blocks() {
        let a = PageAlignLarge;
        for zeroed in [false, true] {
            for size in [1, 100, 4096, LARGE - 1, LARGE, 1920 * 1080 * 4] {
                let l = layout(size, 1);
                // SAFETY: `p` comes from `a` with `l`.
                unsafe {
                    let p = alloc_filled(&a, l, zeroed);
                    check_pattern(p, size);
                    a.dealloc(p, l);
                }
            }
        }
    }

    #[test]
    fn realloc_keeps_contents_and_moves_across_the_threshold() {
        let a = PageAlignLarge;
        // (from, to): within small, small to large, large to larger, large
        // to smaller but still large, large to small.
        let steps = [
            (100, 1000),
            (1000, LARGE + 1),
            (LARGE + 1, 4 * LARGE),
            (4 * LARGE, LARGE),
            (LARGE, 100),
        ];
        for (from, to) in steps {
            let l = layout(from, 8);
            // SAFETY: `p` comes from `a` with `l`; `q` from `realloc` with
            // the same alignment and `to` bytes.
            unsafe {
                let p = alloc_filled(&a, l, false);
                let q = a.realloc(p, l, to);
                assert!(!q.is_null());
                let now = layout(to, 8);
                assert_eq!(q as usize % PageAlignLarge::layout_for(now).align(), 0);
                check_pattern(q, from.min(to));
                a.dealloc(q, now);
            }
        }
    }

    #[test]
    fn a_frame_sized_vec_is_page_aligned() {
        // The test binary runs on this allocator (lib.rs), as the daemon
        // does: the allocation rutabaga makes for a 2D resource.
        let frame = vec![0u8; 1920 * 1080 * 4];
        assert_eq!(frame.as_ptr() as usize % PAGE, 0);
    }
}
