// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The harness's own accesses to its guest memory, through the host
//! mapping. A fuzz target runs the harness's ring writes and used-ring
//! reads many times per input, and vm-memory's accessors (a region search,
//! a slice iterator and a byte loop for each 2-byte field) cost more than
//! the rest of the step once the code is instrumented for coverage. The
//! device itself still goes through vm-memory, as in the daemon.

use std::io;
use std::mem::size_of;
use std::ptr;

use vm_memory::{ByteValued, GuestAddress, GuestMemoryBackend};

use crate::vring::GuestMem;

/// One mapped region of guest memory, from `base` on, seen from the host.
#[derive(Clone, Copy, Debug)]
pub(super) struct HostView {
    /// Guest address of the first byte.
    base: u64,
    /// Host address of the first byte (its provenance exposed, so that the
    /// harness stays `Send` like the device it holds).
    host: usize,
    /// Bytes in the region.
    len: u64,
}

impl HostView {
    /// The `len` bytes of `mem` at `base`, which must lie in one region.
    /// `mem` must outlive every access through the view.
    pub(super) fn new(mem: &GuestMem, base: u64, len: usize) -> io::Result<Self> {
        let slice = mem
            .get_slice(GuestAddress(base), len)
            .map_err(io::Error::other)?;
        let host = slice.ptr_guard_mut().as_ptr().expose_provenance();
        Ok(HostView {
            base,
            host,
            len: len as u64,
        })
    }

    /// The host pointer for `size` bytes at guest address `addr`, if they
    /// lie in the view.
    fn at(&self, addr: u64, size: usize) -> Option<*mut u8> {
        let offset = addr.checked_sub(self.base)?;
        if offset.checked_add(size as u64)? > self.len {
            return None;
        }
        let host = self.host.checked_add(usize::try_from(offset).ok()?)?;
        Some(ptr::with_exposed_provenance_mut(host))
    }

    /// Stores `value` at `addr` with one aligned volatile write: a ring
    /// field a device thread may read at the same time.
    pub(super) fn write<T: ByteValued>(&self, addr: u64, value: T) -> Option<()> {
        let at = self.at(addr, size_of::<T>())?.cast::<T>();
        if !at.is_aligned() {
            return None;
        }
        // SAFETY: `at` lies in the mapping (checked above), which the
        // harness's memory keeps alive, and is aligned for `T`; any bit
        // pattern is a valid `T` (`ByteValued`).
        unsafe { ptr::write_volatile(at, value) };
        Some(())
    }

    /// Loads the `T` at `addr` with one aligned volatile read.
    pub(super) fn read<T: ByteValued>(&self, addr: u64) -> Option<T> {
        let at = self.at(addr, size_of::<T>())?.cast::<T>();
        if !at.is_aligned() {
            return None;
        }
        // SAFETY: as in `write`.
        Some(unsafe { ptr::read_volatile(at) })
    }

    /// Copies `data` to `addr`: a buffer the device has not been given yet.
    pub(super) fn copy_in(&self, addr: u64, data: &[u8]) -> Option<()> {
        let at = self.at(addr, data.len())?;
        // SAFETY: `at` has room for `data` in the mapping (checked above);
        // guest memory is never a Rust allocation, so they do not overlap.
        unsafe { ptr::copy_nonoverlapping(data.as_ptr(), at, data.len()) };
        Some(())
    }

    /// Sets `len` bytes at `addr` to `byte`, with one memset.
    pub(super) fn fill(&self, addr: u64, len: usize, byte: u8) -> Option<()> {
        let at = self.at(addr, len)?;
        // SAFETY: the `len` bytes at `at` lie in the mapping (checked above).
        unsafe { ptr::write_bytes(at, byte, len) };
        Some(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use vm_memory::Bytes;

    use super::*;

    #[test]
    fn accesses_stay_in_the_view_and_match_vm_memory() {
        let mem = GuestMem::from_ranges(&[(GuestAddress(0x1000), 0x1000)]).unwrap();
        let view = HostView::new(&mem, 0x1000, 0x1000).unwrap();
        view.write(0x1ffc, 0xdead_beef_u32).unwrap();
        assert_eq!(
            mem.read_obj::<u32>(GuestAddress(0x1ffc)).unwrap(),
            0xdead_beef
        );
        mem.write_obj(0x1234_u16, GuestAddress(0x1002)).unwrap();
        assert_eq!(view.read::<u16>(0x1002), Some(0x1234));
        view.copy_in(0x1100, b"abc").unwrap();
        view.fill(0x1103, 2, 0xaa).unwrap();
        let mut back = [0; 5];
        mem.read_slice(&mut back, GuestAddress(0x1100)).unwrap();
        assert_eq!(&back, b"abc\xaa\xaa");
        // Outside the view, across its end, or misaligned: refused.
        assert!(view.write(0xffc, 0_u32).is_none());
        assert!(view.write(0x1ffe, 0_u32).is_none());
        assert!(view.read::<u32>(0x1001).is_none());
        assert!(view.copy_in(0x1fff, b"ab").is_none());
        assert!(view.fill(u64::MAX, 1, 0).is_none());
        HostView::new(&mem, 0x1000, 0x1001).unwrap_err();
    }
}
