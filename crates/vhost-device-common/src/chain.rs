// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Descriptor chains from an untrusted driver, and bounds-checked access to them.
//!
//! A chain is walked and validated once, when it is popped: every descriptor
//! must lie in guest memory, readable descriptors must come before writable
//! ones, indirect tables must be well formed and not nested, the walk must end
//! within the size of its table (so a loop is caught), the chain may have no
//! more descriptors than the queue, an indirect table's included (virtio 1.3
//! §2.7.5.3.1; this also bounds what one held chain costs), and the total
//! length must fit in 32 bits. What survives is a [`DescChain`]: the head index and
//! its guest memory regions, readable then writable. It borrows nothing, so a device can keep
//! it (an event buffer waiting for an interrupt) and fill it later.
//!
//! [`Reader`] and [`Writer`] walk those regions as one byte stream each. Every
//! access returns a [`ChainError`] instead of panicking, and the writer counts
//! what it wrote so the used length reported to the driver is exact.

use std::fmt;
use std::mem::size_of;

use virtio_bindings::bindings::virtio_ring::{
    VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
};
use virtio_queue::desc::split::Descriptor;
use vm_memory::bitmap::MS;
use vm_memory::{
    ByteValued, Bytes, GuestAddress, GuestMemory, GuestMemoryBackend, GuestMemoryRegion,
    Permissions, VolatileMemory, VolatileSlice,
};

use crate::error::ChainError;

/// One guest-memory region of a chain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Region {
    /// Guest physical address of the first byte.
    pub addr: GuestAddress,
    /// Length in bytes.
    pub len: u32,
}

/// Most requests have two to four regions in all; keep those inline so the
/// hot path neither allocates nor moves a large value around.
const INLINE_REGIONS: usize = 4;

/// The device-readable or the device-writable regions of a chain.
#[derive(Clone, Copy, Debug)]
pub struct Regions<'a> {
    chain: &'a DescChain,
    start: usize,
    len: usize,
}

impl<'a> Regions<'a> {
    /// Number of regions.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no regions.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Region number `index`, if there is one.
    pub fn get(&self, index: usize) -> Option<&'a Region> {
        if index < self.len {
            self.chain.region(self.start + index)
        } else {
            None
        }
    }

    /// The regions in chain order.
    pub fn iter(&self) -> impl Iterator<Item = &'a Region> + 'a {
        let this = *self;
        (0..self.len).filter_map(move |i| this.get(i))
    }

    /// Sum of the region lengths (validated at parse time to fit in `u32`).
    pub fn total_len(&self) -> usize {
        self.iter().map(|r| r.len as usize).sum()
    }
}

/// A validated descriptor chain.
///
/// The regions are stored in chain order, the readable ones first, the
/// first few inline.
#[derive(Clone, Debug, Default)]
pub struct DescChain {
    head: u16,
    readable: u16,
    count: u32,
    inline: [Region; INLINE_REGIONS],
    spill: Vec<Region>,
}

impl DescChain {
    /// Walks and validates the chain that starts at descriptor `head` of the
    /// descriptor table at `desc_table`, which has `queue_size` entries.
    pub fn parse<M: GuestMemory + ?Sized>(
        mem: &M,
        desc_table: GuestAddress,
        queue_size: u16,
        head: u16,
    ) -> Result<Self, ChainError> {
        let mut chain = DescChain {
            head,
            ..Default::default()
        };
        let mut table = desc_table;
        let mut table_len = queue_size;
        let mut index = head;
        let mut in_indirect = false;
        // Each descriptor of a table may be visited once, and the whole
        // chain may not have more descriptors than the queue.
        let mut budget = u32::from(queue_size);
        let mut total: u64 = 0;
        let mut lookup = Lookup::new(mem);

        loop {
            if index >= table_len {
                return Err(ChainError::IndexOutOfRange {
                    index,
                    size: table_len,
                });
            }
            let desc_addr = table
                .0
                .checked_add(u64::from(index) * size_of::<Descriptor>() as u64)
                .ok_or(ChainError::DescriptorUnreadable(table))?;
            let desc = lookup
                .read_descriptor(GuestAddress(desc_addr))
                .ok_or(ChainError::DescriptorUnreadable(GuestAddress(desc_addr)))?;
            let flags = u32::from(desc.flags());

            if flags & VRING_DESC_F_INDIRECT != 0 {
                if in_indirect {
                    return Err(ChainError::NestedIndirect);
                }
                if flags & VRING_DESC_F_NEXT != 0 {
                    return Err(ChainError::IndirectWithNext);
                }
                let len = desc.len();
                let entries = len / size_of::<Descriptor>() as u32;
                if len == 0
                    || len % size_of::<Descriptor>() as u32 != 0
                    || entries > u32::from(u16::MAX)
                {
                    return Err(ChainError::BadIndirectTable { len });
                }
                if entries > u32::from(queue_size) {
                    return Err(ChainError::TooLong);
                }
                lookup.check_range(desc.addr(), len, Permissions::Read)?;
                table = desc.addr();
                table_len =
                    u16::try_from(entries).map_err(|_| ChainError::BadIndirectTable { len })?;
                index = 0;
                budget = budget.min(entries);
                in_indirect = true;
                continue;
            }

            budget = budget.checked_sub(1).ok_or(ChainError::TooLong)?;
            let region = Region {
                addr: desc.addr(),
                len: desc.len(),
            };
            let writable = flags & VRING_DESC_F_WRITE != 0;
            let access = if writable {
                Permissions::Write
            } else {
                Permissions::Read
            };
            lookup.check_range(region.addr, region.len, access)?;
            total += u64::from(region.len);
            if total > u64::from(u32::MAX) {
                return Err(ChainError::LengthOverflow);
            }
            if !writable && !chain.writable().is_empty() {
                return Err(ChainError::ReadableAfterWritable);
            }
            chain.push(region, writable);

            if flags & VRING_DESC_F_NEXT == 0 {
                return Ok(chain);
            }
            index = desc.next();
        }
    }

    /// Builds a chain from region lists, for devices and tests that make
    /// their own.
    pub fn from_regions(head: u16, readable: &[Region], writable: &[Region]) -> Self {
        let mut chain = DescChain {
            head,
            ..Default::default()
        };
        for region in readable {
            chain.push(*region, false);
        }
        for region in writable {
            chain.push(*region, true);
        }
        chain
    }

    /// Appends a region; readable ones must all come first.
    fn push(&mut self, region: Region, writable: bool) {
        if let Some(slot) = usize::try_from(self.count)
            .ok()
            .and_then(|i| self.inline.get_mut(i))
        {
            *slot = region;
        } else {
            self.spill.push(region);
        }
        // Bounded by the chain's descriptor budget (the queue size).
        self.count += 1;
        if !writable {
            self.readable += 1;
        }
    }

    fn region(&self, index: usize) -> Option<&Region> {
        if index >= self.count as usize {
            return None;
        }
        match self.inline.get(index) {
            Some(region) => Some(region),
            None => self.spill.get(index - INLINE_REGIONS),
        }
    }

    /// The head descriptor index, which identifies the chain in the used ring.
    pub fn head(&self) -> u16 {
        self.head
    }

    /// The device-readable regions.
    pub fn readable(&self) -> Regions<'_> {
        Regions {
            chain: self,
            start: 0,
            len: usize::from(self.readable),
        }
    }

    /// The device-writable regions.
    pub fn writable(&self) -> Regions<'_> {
        let start = usize::from(self.readable);
        Regions {
            chain: self,
            start,
            len: (self.count as usize).saturating_sub(start),
        }
    }

    /// A reader over the readable part.
    pub fn reader<'a, M: GuestMemory + ?Sized>(&'a self, mem: &'a M) -> Reader<'a, M> {
        Reader::new(mem, self.readable())
    }

    /// A writer over the writable part.
    pub fn writer<'a, M: GuestMemory + ?Sized>(&'a self, mem: &'a M) -> Writer<'a, M> {
        Writer::new(mem, self.writable())
    }
}

/// Finds the host slice behind guest addresses, remembering the memory
/// region of the last hit.
///
/// This is the fast path for every access below. vm-memory's generic
/// `Bytes` methods resolve each access through a slice iterator, which cost
/// a third of the daemon's CPU per request for small requests (see
/// BENCHMARKS.md). Its region search, a binary search through a vector of
/// shared pointers, was still a tenth of the CPU of a small request. A
/// chain's descriptors and buffers nearly always lie in one region, so the
/// region of the previous access is tried first. Callers fall back to the
/// generic path when [`Lookup::slice`] returns `None`, so a buffer that
/// spans two regions still works.
struct Lookup<'m, M: GuestMemory + ?Sized> {
    mem: &'m M,
    /// `mem` as plain guest memory, if it is that (not behind an IOMMU).
    phys: Option<&'m M::PhysicalMemory>,
    last: Option<&'m <M::PhysicalMemory as GuestMemoryBackend>::R>,
}

// Not derived: a derive would require `M: Clone`/`M: Copy`.
impl<M: GuestMemory + ?Sized> Clone for Lookup<'_, M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M: GuestMemory + ?Sized> Copy for Lookup<'_, M> {}

impl<M: GuestMemory + ?Sized> fmt::Debug for Lookup<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lookup")
            .field("plain_memory", &self.phys.is_some())
            .field("last_region", &self.last.map(|r| r.start_addr()))
            .finish()
    }
}

impl<'m, M: GuestMemory + ?Sized> Lookup<'m, M> {
    fn new(mem: &'m M) -> Self {
        Lookup {
            mem,
            phys: mem.physical_memory(),
            last: None,
        }
    }

    /// The host slice behind `len` bytes at `addr`, when they lie in one
    /// region of plain guest memory.
    fn slice(
        &mut self,
        addr: GuestAddress,
        len: usize,
    ) -> Option<VolatileSlice<'m, MS<'m, M::PhysicalMemory>>> {
        if let Some(region) = self.last {
            if let Some(offset) = region.to_region_addr(addr) {
                return region.get_slice(offset, len).ok();
            }
        }
        let (region, offset) = self.phys?.to_region_addr(addr)?;
        self.last = Some(region);
        region.get_slice(offset, len).ok()
    }

    fn read_descriptor(&mut self, addr: GuestAddress) -> Option<Descriptor> {
        match self.slice(addr, size_of::<Descriptor>()) {
            Some(slice) => slice.get_ref::<Descriptor>(0).ok().map(|d| d.load()),
            None => self.mem.read_obj(addr).ok(),
        }
    }

    fn read_at(&mut self, addr: GuestAddress, buf: &mut [u8]) -> bool {
        match self.slice(addr, buf.len()) {
            Some(slice) => slice.copy_to(buf) == buf.len(),
            None => self.mem.read_slice(buf, addr).is_ok(),
        }
    }

    fn write_at(&mut self, addr: GuestAddress, buf: &[u8]) -> bool {
        match self.slice(addr, buf.len()) {
            Some(slice) => {
                slice.copy_from(buf);
                true
            }
            None => self.mem.write_slice(buf, addr).is_ok(),
        }
    }

    fn check_range(
        &mut self,
        addr: GuestAddress,
        len: u32,
        access: Permissions,
    ) -> Result<(), ChainError> {
        // A zero-length descriptor touches no memory, so any address is fine.
        if len == 0
            || self.slice(addr, len as usize).is_some()
            || self.mem.check_range(addr, len as usize, access)
        {
            Ok(())
        } else {
            Err(ChainError::OutsideMemory { addr, len })
        }
    }
}

/// Position in a region list, shared by [`Reader`] and [`Writer`].
#[derive(Clone, Copy, Debug)]
struct Cursor<'a> {
    regions: Regions<'a>,
    region: usize,
    offset: u32,
    remaining: usize,
    done: usize,
}

impl<'a> Cursor<'a> {
    fn new(regions: Regions<'a>) -> Self {
        Cursor {
            regions,
            region: 0,
            offset: 0,
            remaining: regions.total_len(),
            done: 0,
        }
    }

    /// Calls `f(addr, start, len)` for each contiguous piece of the next `n`
    /// bytes, where `start` is the offset into the caller's buffer.
    fn advance<E>(
        &mut self,
        n: usize,
        mut f: impl FnMut(GuestAddress, usize, usize) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut start = 0;
        while start < n {
            let Some(region) = self.regions.get(self.region) else {
                break;
            };
            let left_in_region = (region.len - self.offset) as usize;
            if left_in_region == 0 {
                self.region += 1;
                self.offset = 0;
                continue;
            }
            let len = left_in_region.min(n - start);
            // Cannot overflow: parse() checked the region lies in guest memory.
            let addr = GuestAddress(region.addr.0 + u64::from(self.offset));
            f(addr, start, len)?;
            start += len;
            // `len` is at most the region's u32 length.
            self.offset += len as u32;
            self.remaining -= len;
            self.done += len;
        }
        Ok(())
    }
}

/// Reads the device-readable part of a chain as one byte stream.
#[derive(Debug)]
pub struct Reader<'a, M: GuestMemory + ?Sized> {
    lookup: Lookup<'a, M>,
    cursor: Cursor<'a>,
}

impl<'a, M: GuestMemory + ?Sized> Reader<'a, M> {
    /// A reader over `regions` in `mem`.
    pub fn new(mem: &'a M, regions: Regions<'a>) -> Self {
        Reader {
            lookup: Lookup::new(mem),
            cursor: Cursor::new(regions),
        }
    }

    /// Bytes left to read.
    pub fn available(&self) -> usize {
        self.cursor.remaining
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> usize {
        self.cursor.done
    }

    /// Fills `buf` completely, or fails without a partial guarantee.
    pub fn read_exact(&mut self, buf: &mut [u8]) -> Result<(), ChainError> {
        if buf.len() > self.cursor.remaining {
            return Err(ChainError::ShortRead {
                wanted: buf.len(),
                available: self.cursor.remaining,
            });
        }
        let lookup = &mut self.lookup;
        self.cursor.advance(buf.len(), |addr, start, len| {
            let dst = buf
                .get_mut(start..start + len)
                .ok_or(ChainError::Memory(addr))?;
            if lookup.read_at(addr, dst) {
                Ok(())
            } else {
                Err(ChainError::Memory(addr))
            }
        })
    }

    /// Reads a little-endian spec structure.
    pub fn read_obj<T: ByteValued>(&mut self) -> Result<T, ChainError> {
        // SAFETY: ByteValued promises every bit pattern, zeros included, is
        // a valid T.
        let mut value: T = unsafe { std::mem::zeroed() };
        self.read_exact(value.as_mut_slice())?;
        Ok(value)
    }

    /// Reads a structure without consuming it: a request whose structure
    /// starts with its header can be dispatched on the header, then read
    /// whole with [`Self::read_obj`].
    pub fn peek_obj<T: ByteValued>(&mut self) -> Result<T, ChainError> {
        let start = self.cursor;
        let value = self.read_obj();
        self.cursor = start;
        value
    }

    /// Reads everything that is left, refusing more than `limit` bytes so a
    /// driver cannot make the device allocate without bound.
    pub fn read_to_vec(&mut self, limit: usize) -> Result<Vec<u8>, ChainError> {
        let len = self.cursor.remaining;
        if len > limit {
            return Err(ChainError::TooLarge { len, limit });
        }
        let mut buf = vec![0; len];
        self.read_exact(&mut buf)?;
        Ok(buf)
    }

    /// Skips `n` bytes.
    pub fn skip(&mut self, n: usize) -> Result<(), ChainError> {
        if n > self.cursor.remaining {
            return Err(ChainError::ShortRead {
                wanted: n,
                available: self.cursor.remaining,
            });
        }
        self.cursor.advance(n, |_, _, _| Ok::<(), ChainError>(()))
    }
}

/// Writes the device-writable part of a chain as one byte stream.
#[derive(Debug)]
pub struct Writer<'a, M: GuestMemory + ?Sized> {
    lookup: Lookup<'a, M>,
    cursor: Cursor<'a>,
}

impl<'a, M: GuestMemory + ?Sized> Writer<'a, M> {
    /// A writer over `regions` in `mem`.
    pub fn new(mem: &'a M, regions: Regions<'a>) -> Self {
        Writer {
            lookup: Lookup::new(mem),
            cursor: Cursor::new(regions),
        }
    }

    /// Room left.
    pub fn available(&self) -> usize {
        self.cursor.remaining
    }

    /// Bytes written so far: the used length to report to the driver.
    pub fn bytes_written(&self) -> usize {
        self.cursor.done
    }

    /// [`Self::bytes_written`] as the used ring wants it.
    pub fn used_len(&self) -> u32 {
        // parse() bounded the whole chain to u32.
        u32::try_from(self.cursor.done).unwrap_or(u32::MAX)
    }

    /// Writes all of `buf`, or fails without writing anything.
    pub fn write_all(&mut self, buf: &[u8]) -> Result<(), ChainError> {
        if buf.len() > self.cursor.remaining {
            return Err(ChainError::ShortWrite {
                wanted: buf.len(),
                available: self.cursor.remaining,
            });
        }
        let lookup = &mut self.lookup;
        self.cursor.advance(buf.len(), |addr, start, len| {
            let src = buf
                .get(start..start + len)
                .ok_or(ChainError::Memory(addr))?;
            if lookup.write_at(addr, src) {
                Ok(())
            } else {
                Err(ChainError::Memory(addr))
            }
        })
    }

    /// Writes a little-endian spec structure.
    pub fn write_obj<T: ByteValued>(&mut self, value: T) -> Result<(), ChainError> {
        self.write_all(value.as_slice())
    }

    /// Writes `n` zero bytes (padding the driver expects to be filled).
    pub fn write_zeros(&mut self, n: usize) -> Result<(), ChainError> {
        const ZEROS: [u8; 256] = [0; 256];
        let mut left = n;
        while left > 0 {
            let chunk = left.min(ZEROS.len());
            self.write_all(ZEROS.get(..chunk).unwrap_or(&[]))?;
            left -= chunk;
        }
        Ok(())
    }

    /// Moves past `n` bytes without writing them, leaving what the buffer
    /// held. They count as written: a device that fills a buffer out of
    /// order (a capture stream) skips ahead and reports the full length.
    pub fn skip(&mut self, n: usize) -> Result<(), ChainError> {
        if n > self.cursor.remaining {
            return Err(ChainError::ShortWrite {
                wanted: n,
                available: self.cursor.remaining,
            });
        }
        self.cursor.advance(n, |_, _, _| Ok::<(), ChainError>(()))
    }

    /// Splits off a writer for the last `n` bytes of the writable part, and
    /// shortens this one to end before them. Devices whose status byte comes
    /// after a variable-length buffer use this to address both.
    pub fn split_tail(&mut self, n: usize) -> Result<Writer<'a, M>, ChainError> {
        if n > self.cursor.remaining {
            return Err(ChainError::ShortWrite {
                wanted: n,
                available: self.cursor.remaining,
            });
        }
        let mut tail = Writer {
            lookup: self.lookup,
            cursor: Cursor {
                regions: self.cursor.regions,
                region: self.cursor.region,
                offset: self.cursor.offset,
                remaining: self.cursor.remaining,
                done: 0,
            },
        };
        let skip = self.cursor.remaining - n;
        tail.cursor
            .advance(skip, |_, _, _| Ok::<(), ChainError>(()))?;
        tail.cursor.done = 0;
        self.cursor.remaining = skip;
        Ok(tail)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use virtio_bindings::bindings::virtio_ring::{
        VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT, VRING_DESC_F_WRITE,
    };

    use super::*;
    use crate::mock::{read_region, ChainBuilder, RawDesc, MEM_BASE, MEM_SIZE, QUEUE_SIZE};
    use crate::vring::GuestMem;

    const NEXT: u16 = VRING_DESC_F_NEXT as u16;
    const WRITE: u16 = VRING_DESC_F_WRITE as u16;
    const INDIRECT: u16 = VRING_DESC_F_INDIRECT as u16;
    const DATA: u64 = MEM_BASE + 0x8_0000;

    fn desc(addr: u64, len: u32, flags: u16, next: u16) -> RawDesc {
        RawDesc {
            addr,
            len,
            flags,
            next,
        }
    }

    #[test]
    fn reads_and_writes_across_descriptors() {
        let (mem, chain) = ChainBuilder::new()
            .readable(&[1, 2, 3])
            .readable(&[4, 5, 6, 7, 8])
            .writable(2)
            .writable(6)
            .build();
        let chain = chain.unwrap();
        assert_eq!(chain.readable().len(), 2);
        assert_eq!(chain.writable().len(), 2);

        let mut reader = chain.reader(&mem);
        assert_eq!(reader.available(), 8);
        let word: u32 = reader.read_obj().unwrap();
        assert_eq!(word, u32::from_le_bytes([1, 2, 3, 4]));
        let mut rest = [0; 4];
        reader.read_exact(&mut rest).unwrap();
        assert_eq!(rest, [5, 6, 7, 8]);
        assert_eq!(reader.bytes_read(), 8);
        assert_eq!(
            reader.read_obj::<u8>(),
            Err(ChainError::ShortRead {
                wanted: 1,
                available: 0
            })
        );

        let mut writer = chain.writer(&mem);
        writer.write_all(&[9, 9, 9]).unwrap();
        writer.write_obj(0x0a0b_u16).unwrap();
        assert_eq!(writer.bytes_written(), 5);
        assert_eq!(writer.available(), 3);
        writer.write_all(&[0; 4]).unwrap_err();
        // A failed write writes nothing.
        assert_eq!(writer.bytes_written(), 5);
        assert_eq!(read_region(&mem, chain.writable().get(0).unwrap()), [9, 9]);
        assert_eq!(
            read_region(&mem, chain.writable().get(1).unwrap()),
            [9, 0x0b, 0x0a, 0xAA, 0xAA, 0xAA]
        );
    }

    #[test]
    fn peek_obj_leaves_the_reader_where_it_was() {
        let (mem, chain) = ChainBuilder::new()
            .readable(&[1, 2])
            .readable(&[3, 4, 5])
            .build();
        let chain = chain.unwrap();
        let mut reader = chain.reader(&mem);
        reader.skip(1).unwrap();
        let peeked: u16 = reader.peek_obj().unwrap();
        assert_eq!(peeked, u16::from_le_bytes([2, 3]));
        assert_eq!((reader.bytes_read(), reader.available()), (1, 4));
        let word: u32 = reader.read_obj().unwrap();
        assert_eq!(word, u32::from_le_bytes([2, 3, 4, 5]));
        // A failed peek consumes nothing either.
        reader.peek_obj::<u16>().unwrap_err();
        assert_eq!(reader.bytes_read(), 5);
    }

    #[test]
    fn split_tail_addresses_a_trailing_status() {
        let (mem, chain) = ChainBuilder::new().writable(3).writable(2).build();
        let chain = chain.unwrap();
        let mut body = chain.writer(&mem);
        let mut status = body.split_tail(1).unwrap();
        assert_eq!(body.available(), 4);
        status.write_obj(7u8).unwrap();
        body.write_all(&[1, 2, 3, 4]).unwrap();
        body.write_all(&[5]).unwrap_err();
        assert_eq!(read_region(&mem, chain.writable().get(1).unwrap()), [4, 7]);
        body.split_tail(1).unwrap_err();
    }

    #[test]
    fn indirect_chains_are_followed() {
        let (mem, chain) = ChainBuilder::new()
            .readable(&[1, 2])
            .writable(4)
            .build_indirect();
        let chain = chain.unwrap();
        let mut buf = [0; 2];
        chain.reader(&mem).read_exact(&mut buf).unwrap();
        assert_eq!(buf, [1, 2]);
        assert_eq!(chain.writer(&mem).available(), 4);
    }

    #[test]
    fn more_than_inline_regions() {
        let mut builder = ChainBuilder::new();
        for i in 0..10u8 {
            builder = builder.readable(&[i]);
        }
        let (mem, chain) = builder.build();
        let chain = chain.unwrap();
        assert_eq!(chain.readable().len(), 10);
        let data = chain.reader(&mem).read_to_vec(64).unwrap();
        assert_eq!(data, (0..10).collect::<Vec<u8>>());
        assert_eq!(
            chain.reader(&mem).read_to_vec(9),
            Err(ChainError::TooLarge { len: 10, limit: 9 })
        );
        let mut reader = chain.reader(&mem);
        reader.skip(9).unwrap();
        assert_eq!(reader.read_obj::<u8>().unwrap(), 9);
    }

    /// Guest memory in three regions, as QEMU gives it (below and above a
    /// hole, and adjacent pieces): the table in one region, buffers in the
    /// others, and buffers that span two adjacent regions. The lookup's
    /// remembered region misses and the spanning buffers take the slow path;
    /// the bytes must come out the same.
    #[test]
    fn buffers_in_several_regions_and_across_a_boundary() {
        const PAGE: u64 = 0x1000;
        let mem = GuestMem::from_ranges(&[
            (GuestAddress(0), PAGE as usize),
            (GuestAddress(PAGE), PAGE as usize),
            (GuestAddress(0x10 * PAGE), PAGE as usize),
        ])
        .unwrap();
        let table = GuestAddress(0x10 * PAGE);
        let readable = (PAGE - 4, 8u32); // spans regions 0 and 1
        let writable_far = (16u64, 4u32); // region 0, after a hit in region 2
        let writable_span = (2 * PAGE - 2, 4u32); // end of region 1, then the hole
        mem.write_slice(&[1, 2, 3, 4, 5, 6, 7, 8], GuestAddress(readable.0))
            .unwrap();
        let descs = [
            desc(readable.0, readable.1, NEXT, 1),
            desc(writable_far.0, writable_far.1, NEXT | WRITE, 2),
            desc(0x10 * PAGE + 0x800, 4, WRITE, 0),
        ];
        for (i, d) in descs.iter().enumerate() {
            let raw = Descriptor::new(d.addr, d.len, d.flags, d.next);
            mem.write_obj(raw, GuestAddress(table.0 + 16 * i as u64))
                .unwrap();
        }
        let chain = DescChain::parse(&mem, table, 8, 0).unwrap();
        let mut bytes = [0; 8];
        chain.reader(&mem).read_exact(&mut bytes).unwrap();
        assert_eq!(bytes, [1, 2, 3, 4, 5, 6, 7, 8]);
        let mut writer = chain.writer(&mem);
        writer.write_all(&[9; 8]).unwrap();
        assert_eq!(mem.read_obj::<u32>(GuestAddress(16)).unwrap(), 0x0909_0909);
        assert_eq!(
            mem.read_obj::<u32>(GuestAddress(0x10 * PAGE + 0x800))
                .unwrap(),
            0x0909_0909
        );

        // A buffer that runs from region 1 into the hole is refused.
        mem.write_obj(
            Descriptor::new(writable_span.0, writable_span.1, WRITE, 0),
            table,
        )
        .unwrap();
        assert_eq!(
            DescChain::parse(&mem, table, 8, 0).unwrap_err(),
            ChainError::OutsideMemory {
                addr: GuestAddress(writable_span.0),
                len: writable_span.1
            }
        );
    }

    #[test]
    fn short_chain_is_an_error_not_a_panic() {
        let (mem, chain) = ChainBuilder::new().readable(&[1]).build();
        let chain = chain.unwrap();
        chain.reader(&mem).read_obj::<u64>().unwrap_err();
        assert_eq!(
            chain.writer(&mem).write_obj(1u8),
            Err(ChainError::ShortWrite {
                wanted: 1,
                available: 0
            })
        );
    }

    #[test]
    fn readable_after_writable_is_refused() {
        let (_, chain) =
            ChainBuilder::new().raw(&[desc(DATA, 4, NEXT | WRITE, 1), desc(DATA + 16, 4, 0, 0)]);
        assert_eq!(chain.unwrap_err(), ChainError::ReadableAfterWritable);
    }

    #[test]
    fn buffer_outside_memory_is_refused() {
        let end = MEM_BASE + MEM_SIZE as u64;
        let (_, chain) = ChainBuilder::new().raw(&[desc(end - 2, 4, 0, 0)]);
        assert!(matches!(chain, Err(ChainError::OutsideMemory { .. })));
        let (_, chain) = ChainBuilder::new().raw(&[desc(0, 4, WRITE, 0)]);
        assert!(matches!(chain, Err(ChainError::OutsideMemory { .. })));
        let (_, chain) = ChainBuilder::new().raw(&[desc(u64::MAX - 1, 8, 0, 0)]);
        assert!(matches!(chain, Err(ChainError::OutsideMemory { .. })));
    }

    #[test]
    fn huge_lengths_are_refused() {
        // Each descriptor is inside memory only if its length is; a length
        // larger than memory must fail the range check.
        let (_, chain) = ChainBuilder::new().raw(&[desc(DATA, u32::MAX, WRITE, 0)]);
        assert!(matches!(chain, Err(ChainError::OutsideMemory { .. })));
    }

    #[test]
    fn total_length_overflow_is_refused() {
        // Every buffer lies in memory, but 4200 of them at 1 MiB each add up
        // to more than 4 GiB. Only an indirect table of a queue of more than
        // 4096 entries is long enough.
        let count: u16 = 4200;
        let mut builder = ChainBuilder::new();
        let table = builder.scratch(usize::from(count) * 16);
        for i in 0..count {
            let flags = if i + 1 < count { NEXT } else { 0 };
            builder.write_desc_at(
                table + u64::from(i) * 16,
                &desc(MEM_BASE, MEM_SIZE as u32, flags, i + 1),
            );
        }
        let (mem, _) = builder.raw(&[desc(table, u32::from(count) * 16, INDIRECT, 0)]);
        let chain = DescChain::parse(&mem, GuestAddress(MEM_BASE), 8192, 0);
        assert_eq!(chain.unwrap_err(), ChainError::LengthOverflow);
    }

    /// One indirect table of `entries` plain descriptors.
    fn indirect_of(entries: u16) -> (GuestMem, u64) {
        let mut builder = ChainBuilder::new();
        let table = builder.scratch(usize::from(entries) * 16);
        for i in 0..entries {
            let flags = if i + 1 < entries { NEXT } else { 0 };
            builder.write_desc_at(table + u64::from(i) * 16, &desc(DATA, 1, flags, i + 1));
        }
        let len = u32::from(entries) * 16;
        let (mem, _) = builder.raw(&[desc(table, len, INDIRECT, 0)]);
        (mem, table)
    }

    #[test]
    fn a_chain_is_at_most_a_queue_long_indirect_table_included() {
        let (mem, _) = indirect_of(QUEUE_SIZE);
        let chain = DescChain::parse(&mem, GuestAddress(MEM_BASE), QUEUE_SIZE, 0).unwrap();
        assert_eq!(chain.readable().len(), usize::from(QUEUE_SIZE));
        // One more than the queue, even though the table is well formed.
        let (mem, _) = indirect_of(QUEUE_SIZE + 1);
        let chain = DescChain::parse(&mem, GuestAddress(MEM_BASE), QUEUE_SIZE, 0);
        assert_eq!(chain.unwrap_err(), ChainError::TooLong);
        // The largest table a descriptor can describe, on a small queue.
        let (mem, _) = indirect_of(4096);
        let chain = DescChain::parse(&mem, GuestAddress(MEM_BASE), 16, 0);
        assert_eq!(chain.unwrap_err(), ChainError::TooLong);
    }

    #[test]
    fn direct_descriptors_count_against_the_indirect_table() {
        // Two direct descriptors, then an indirect table that alone would
        // fit the queue of 8 but with them does not.
        let mut builder = ChainBuilder::new();
        let table = builder.scratch(8 * 16);
        for i in 0..7u16 {
            let flags = if i < 6 { NEXT } else { 0 };
            builder.write_desc_at(table + u64::from(i) * 16, &desc(DATA, 1, flags, i + 1));
        }
        let (mem, _) = builder.raw(&[
            desc(DATA, 1, NEXT, 1),
            desc(DATA, 1, NEXT, 2),
            desc(table, 7 * 16, INDIRECT, 0),
        ]);
        let chain = DescChain::parse(&mem, GuestAddress(MEM_BASE), 8, 0);
        assert_eq!(chain.unwrap_err(), ChainError::TooLong);
        let chain = DescChain::parse(&mem, GuestAddress(MEM_BASE), 9, 0).unwrap();
        assert_eq!(chain.readable().len(), 9);
    }

    #[test]
    fn loops_are_caught() {
        let (_, chain) =
            ChainBuilder::new().raw(&[desc(DATA, 4, NEXT, 1), desc(DATA + 16, 4, NEXT, 0)]);
        assert_eq!(chain.unwrap_err(), ChainError::TooLong);
    }

    #[test]
    fn next_past_the_table_is_refused() {
        let (_, chain) = ChainBuilder::new().raw(&[desc(DATA, 4, NEXT, QUEUE_SIZE)]);
        assert_eq!(
            chain.unwrap_err(),
            ChainError::IndexOutOfRange {
                index: QUEUE_SIZE,
                size: QUEUE_SIZE
            }
        );
    }

    #[test]
    fn indirect_table_that_loops_is_caught() {
        let mut builder = ChainBuilder::new();
        let table = builder.scratch(32);
        builder.write_desc_at(table, &desc(DATA, 4, NEXT, 1));
        builder.write_desc_at(table + 16, &desc(DATA, 4, NEXT, 0));
        let (_, chain) = builder.raw(&[desc(table, 32, INDIRECT, 0)]);
        assert_eq!(chain.unwrap_err(), ChainError::TooLong);
    }

    #[test]
    fn malformed_indirect_tables_are_refused() {
        let mut builder = ChainBuilder::new();
        let table = builder.scratch(32);
        builder.write_desc_at(table, &desc(table, 16, INDIRECT, 0));
        let (_, chain) = builder.raw(&[desc(table, 16, INDIRECT, 0)]);
        assert_eq!(chain.unwrap_err(), ChainError::NestedIndirect);

        let (_, chain) = ChainBuilder::new().raw(&[desc(DATA, 17, INDIRECT, 0)]);
        assert_eq!(chain.unwrap_err(), ChainError::BadIndirectTable { len: 17 });
        let (_, chain) = ChainBuilder::new().raw(&[desc(DATA, 0, INDIRECT, 0)]);
        assert_eq!(chain.unwrap_err(), ChainError::BadIndirectTable { len: 0 });
        let (_, chain) = ChainBuilder::new().raw(&[desc(DATA, 16, INDIRECT | NEXT, 1)]);
        assert_eq!(chain.unwrap_err(), ChainError::IndirectWithNext);
        let (_, chain) = ChainBuilder::new().raw(&[desc(0, 16, INDIRECT, 0)]);
        assert!(matches!(chain, Err(ChainError::OutsideMemory { .. })));
    }

    #[test]
    fn unreadable_descriptor_table_is_refused() {
        let (mem, _) = ChainBuilder::new().build();
        let chain = DescChain::parse(&mem, GuestAddress(0), 4, 0);
        assert!(matches!(chain, Err(ChainError::DescriptorUnreadable(_))));
    }

    #[test]
    fn zero_length_buffers_are_allowed_anywhere() {
        let (mem, chain) = ChainBuilder::new().raw(&[desc(0, 0, WRITE, 0)]);
        let chain = chain.unwrap();
        assert_eq!(chain.writer(&mem).available(), 0);
    }

    #[test]
    fn writer_skip_keeps_the_bytes_and_counts_them() {
        let (mem, chain) = ChainBuilder::new().writable(2).writable(2).build();
        let chain = chain.unwrap();
        let mut writer = chain.writer(&mem);
        writer.skip(3).unwrap();
        writer.write_obj(5u8).unwrap();
        assert_eq!(writer.bytes_written(), 4);
        writer.skip(1).unwrap_err();
        assert_eq!(
            read_region(&mem, chain.writable().get(1).unwrap()),
            [0xAA, 5]
        );
    }

    #[test]
    fn several_chains_share_one_memory() {
        let mut builder = ChainBuilder::new();
        let first = builder
            .push_readable(&[1])
            .push_writable(1)
            .chain()
            .unwrap();
        let second = builder.push_readable(&[2, 2]).chain().unwrap();
        assert_ne!(first.head(), second.head());
        let mem = builder.memory();
        assert_eq!(first.reader(mem).read_obj::<u8>().unwrap(), 1);
        assert_eq!(second.reader(mem).available(), 2);
        first.writer(mem).write_obj(9u8).unwrap();
        assert_eq!(read_region(mem, first.writable().get(0).unwrap()), [9]);
    }

    #[test]
    fn write_zeros_pads() {
        let (mem, chain) = ChainBuilder::new().writable(300).build();
        let chain = chain.unwrap();
        let mut writer = chain.writer(&mem);
        writer.write_zeros(299).unwrap();
        assert_eq!(writer.used_len(), 299);
        let data = read_region(&mem, chain.writable().get(0).unwrap());
        assert!(data[..299].iter().all(|&b| b == 0));
        assert_eq!(data[299], 0xAA);
    }
}
