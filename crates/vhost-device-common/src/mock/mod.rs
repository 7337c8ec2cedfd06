// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Descriptor chains in a small guest memory, for devices' unit tests.
//!
//! [`ChainBuilder`] lays out a descriptor table and buffers in a
//! [`GuestMem`] and returns the chain as [`DescChain::parse`] sees it, so a
//! device's request handling is tested through the same validation the
//! daemon uses. [`ChainBuilder::raw`] writes arbitrary descriptors for
//! malformed-chain tests.
//!
//! With the `test-frontend` feature, [`harness::DeviceHarness`] drives a
//! whole device through its queue handler, the way the vring worker does,
//! and checks what it puts in the used rings; [`program`] reads a byte
//! string as what a driver and a frontend do to it (the device fuzz
//! targets in `fuzz/`).

#[cfg(feature = "test-frontend")]
pub mod harness;
#[cfg(feature = "test-frontend")]
mod host;
#[cfg(feature = "test-frontend")]
pub mod program;

use virtio_bindings::bindings::virtio_ring::{
    VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
};
use virtio_queue::desc::split::Descriptor;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::chain::{DescChain, Region};
use crate::error::ChainError;
use crate::vring::GuestMem;

/// Where the mock memory starts, deliberately not at 0.
pub const MEM_BASE: u64 = 0x1_0000;
/// How large the mock memory is.
pub const MEM_SIZE: usize = 0x10_0000;
/// Where the descriptor table sits.
const TABLE: u64 = MEM_BASE;
/// Entries in the descriptor table.
pub const QUEUE_SIZE: u16 = 256;
/// Where buffers start.
const DATA: u64 = MEM_BASE + 0x1_0000;

/// One descriptor to lay out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawDesc {
    /// Guest address.
    pub addr: u64,
    /// Length.
    pub len: u32,
    /// VRING_DESC_F_* flags.
    pub flags: u16,
    /// Next index.
    pub next: u16,
}

/// Builds one chain at a time in its own memory.
#[derive(Debug)]
pub struct ChainBuilder {
    mem: GuestMem,
    next_data: u64,
    descs: Vec<(u64, u32, bool)>,
    /// First free descriptor-table index, for [`ChainBuilder::chain`].
    next_index: u16,
    /// Last head given out by [`ChainBuilder::request`].
    last_head: u16,
}

impl Default for ChainBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainBuilder {
    /// A builder with fresh memory.
    pub fn new() -> Self {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(MEM_BASE), MEM_SIZE)])
            .unwrap_or_else(|e| panic!("mock guest memory: {e}"));
        ChainBuilder {
            mem,
            next_data: DATA,
            descs: Vec::new(),
            next_index: 0,
            last_head: 0,
        }
    }

    /// The memory.
    pub fn memory(&self) -> &GuestMem {
        &self.mem
    }

    fn alloc(&mut self, len: usize) -> u64 {
        let addr = self.next_data;
        // Keep buffers 16-byte aligned, as drivers do.
        self.next_data += (len as u64).div_ceil(16).max(1) * 16;
        assert!(
            self.next_data <= MEM_BASE + MEM_SIZE as u64,
            "mock memory exhausted"
        );
        addr
    }

    /// Adds a device-readable buffer holding `data`.
    pub fn readable(mut self, data: &[u8]) -> Self {
        self.push_readable(data);
        self
    }

    /// Adds a device-writable buffer of `len` bytes, filled with 0xAA so a
    /// test sees what the device did not write.
    pub fn writable(mut self, len: u32) -> Self {
        self.push_writable(len);
        self
    }

    fn raw_descs(&self) -> Vec<RawDesc> {
        let count = self.descs.len();
        self.descs
            .iter()
            .enumerate()
            .map(|(i, &(addr, len, write))| {
                let mut flags = 0;
                if write {
                    flags |= VRING_DESC_F_WRITE as u16;
                }
                if i + 1 < count {
                    flags |= VRING_DESC_F_NEXT as u16;
                }
                RawDesc {
                    addr,
                    len,
                    flags,
                    next: (i + 1) as u16,
                }
            })
            .collect()
    }

    /// Lays out the buffers added so far as a direct chain at the next free
    /// table index and parses it, keeping the memory, so a test can build
    /// several chains (say, requests a device holds) in one guest memory.
    /// The builder's buffer list starts empty again.
    pub fn chain(&mut self) -> Result<DescChain, ChainError> {
        let head = self.next_index;
        let mut descs = self.raw_descs();
        let count = u16::try_from(descs.len()).unwrap_or(u16::MAX);
        assert!(
            head.saturating_add(count) <= QUEUE_SIZE,
            "mock descriptor table full"
        );
        for (i, d) in descs.iter_mut().enumerate() {
            d.next += head;
            write_desc(&self.mem, TABLE + (u64::from(head) + i as u64) * 16, d);
        }
        self.next_index = head + count.max(1);
        self.descs.clear();
        DescChain::parse(&self.mem, GuestAddress(TABLE), QUEUE_SIZE, head)
    }

    /// Adds a device-readable buffer holding `data` (for use with
    /// [`ChainBuilder::chain`]).
    pub fn push_readable(&mut self, data: &[u8]) -> &mut Self {
        let addr = self.alloc(data.len());
        self.fill(addr, data);
        self.descs.push((addr, data.len() as u32, false));
        self
    }

    /// Adds a device-writable buffer of `len` bytes (for use with
    /// [`ChainBuilder::chain`]).
    pub fn push_writable(&mut self, len: u32) -> &mut Self {
        let addr = self.alloc(len as usize);
        self.fill(addr, &vec![0xAA; len as usize]);
        self.descs.push((addr, len, true));
        self
    }

    /// Lays out the buffers added so far as a direct chain at index 0 and
    /// parses it.
    pub fn build(self) -> (GuestMem, Result<DescChain, ChainError>) {
        let descs = self.raw_descs();
        self.raw(&descs)
    }

    /// Lays out the buffers added so far in an indirect table referenced by
    /// descriptor 0, and parses it.
    pub fn build_indirect(mut self) -> (GuestMem, Result<DescChain, ChainError>) {
        let descs = self.raw_descs();
        let table = self.alloc(descs.len() * 16);
        for (i, d) in descs.iter().enumerate() {
            write_desc(&self.mem, table + i as u64 * 16, d);
        }
        let head = RawDesc {
            addr: table,
            len: (descs.len() * 16) as u32,
            flags: VRING_DESC_F_INDIRECT as u16,
            next: 0,
        };
        self.raw(&[head])
    }

    /// Writes `descs` at indices 0.. of the table and parses the chain that
    /// starts at 0.
    pub fn raw(self, descs: &[RawDesc]) -> (GuestMem, Result<DescChain, ChainError>) {
        for (i, d) in descs.iter().enumerate() {
            write_desc(&self.mem, TABLE + i as u64 * 16, d);
        }
        let chain = DescChain::parse(&self.mem, GuestAddress(TABLE), QUEUE_SIZE, 0);
        (self.mem, chain)
    }

    /// Lays out one request in this builder's memory and returns its chain,
    /// as a driver queues many requests in one guest memory: a
    /// device-readable buffer holding each of `readable`, then a
    /// device-writable buffer of each length in `writable` (filled with
    /// 0xAA so a test sees what the device did not write).
    ///
    /// No descriptor table is written, so any number of requests can be
    /// outstanding at once (more than a queue holds, for tests of a
    /// device's limits); each gets the next head index, wrapping at
    /// `u16::MAX`.
    pub fn request(&mut self, readable: &[&[u8]], writable: &[u32]) -> DescChain {
        let readable: Vec<Region> = readable
            .iter()
            .map(|data| {
                let addr = self.alloc(data.len());
                self.fill(addr, data);
                region(addr, data.len())
            })
            .collect();
        let writable: Vec<Region> = writable
            .iter()
            .map(|&len| {
                let addr = self.alloc(len as usize);
                self.fill(addr, &vec![0xAA; len as usize]);
                region(addr, len as usize)
            })
            .collect();
        self.last_head = self.last_head.wrapping_add(1);
        DescChain::from_regions(self.last_head, &readable, &writable)
    }

    /// What the chain's device-writable buffers hold, one after the other:
    /// what the device wrote, and 0xAA where it wrote nothing.
    pub fn written(&self, chain: &DescChain) -> Vec<u8> {
        chain
            .writable()
            .iter()
            .flat_map(|region| read_region(&self.mem, region))
            .collect()
    }

    fn fill(&self, addr: u64, data: &[u8]) {
        self.mem
            .write_slice(data, GuestAddress(addr))
            .unwrap_or_else(|e| panic!("mock write: {e}"));
    }

    /// A free address for a hand-made indirect table or buffer.
    pub fn scratch(&mut self, len: usize) -> u64 {
        self.alloc(len)
    }

    /// Writes one descriptor at `addr`, for hand-made indirect tables.
    pub fn write_desc_at(&self, addr: u64, desc: &RawDesc) {
        write_desc(&self.mem, addr, desc);
    }
}

fn region(addr: u64, len: usize) -> Region {
    Region {
        addr: GuestAddress(addr),
        len: u32::try_from(len).unwrap_or_else(|_| panic!("mock buffer of {len} bytes")),
    }
}

fn write_desc(mem: &GuestMem, addr: u64, d: &RawDesc) {
    mem.write_obj(
        Descriptor::new(d.addr, d.len, d.flags, d.next),
        GuestAddress(addr),
    )
    .unwrap_or_else(|e| panic!("mock descriptor write: {e}"));
}

/// Reads `len` bytes at `region`'s address: what the device wrote.
pub fn read_region(mem: &GuestMem, region: &Region) -> Vec<u8> {
    let mut buf = vec![0; region.len as usize];
    mem.read_slice(&mut buf, region.addr)
        .unwrap_or_else(|e| panic!("mock read: {e}"));
    buf
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn requests_share_one_memory_and_read_back_what_was_written() {
        let mut b = ChainBuilder::new();
        let first = b.request(&[b"abc", b"de"], &[2, 1]);
        let second = b.request(&[b"x"], &[]);
        assert_ne!(first.head(), second.head());
        assert_eq!(first.readable().total_len(), 5);
        assert_eq!(b.written(&first), [0xAA; 3]);
        let mut w = first.writer(b.memory());
        w.write_all(&[1, 2, 3]).unwrap();
        assert_eq!(b.written(&first), [1, 2, 3]);
        assert!(b.written(&second).is_empty());
        let mut data = [0; 5];
        first.reader(b.memory()).read_exact(&mut data).unwrap();
        assert_eq!(&data, b"abcde");
    }
}
