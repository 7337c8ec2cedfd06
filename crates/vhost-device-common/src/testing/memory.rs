// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Guest memory: a memfd mapped in-process and shared with the backend.

use std::fs::File;
use std::os::fd::FromRawFd;
use std::sync::Arc;

use vhost::VhostUserMemoryRegionInfo;
use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

use super::error::FrontendError;
use super::queue::QueueArea;
use super::ring::{align_up, RingLayout};

/// The guest's page: what the rings and areas of the plan are aligned to
/// in guest-physical space. Virtio's unit, independent of the host.
pub(crate) const PAGE_SIZE: u64 = 4096;

/// The host's page size, the granule of the memfd offsets each region is
/// mapped at (and that the backend maps them at). 4 KiB on x86_64; 4, 16
/// or 64 KiB on aarch64, so it is asked for, not assumed.
pub(crate) fn host_page_size() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(page).map_or(PAGE_SIZE, |p| p.max(PAGE_SIZE))
}

/// The size of each of `regions` equal regions of `size` bytes, if each is a
/// whole number of `page`-byte pages.
fn region_size(size: usize, regions: usize, page: u64) -> Option<usize> {
    size.checked_div(regions)
        .filter(|r| r * regions == size && *r as u64 % page == 0)
}

/// Splits guest memory between `nq` queues: rings, then scratch areas, then
/// data areas.
pub(crate) fn plan_memory(
    base: u64,
    size: u64,
    nq: usize,
    queue_size: u16,
    scratch_size: u64,
) -> Result<Vec<QueueArea>, FrontendError> {
    let nq64 = nq as u64;
    let rings = align_up(RingLayout::new(queue_size).total, PAGE_SIZE);
    let scratch = align_up(scratch_size, PAGE_SIZE);
    let fixed = nq64
        .checked_mul(rings + scratch)
        .filter(|&f| f < size)
        .ok_or_else(|| {
            FrontendError::InvalidOptions(format!(
                "{size:#x} bytes of guest memory cannot hold {nq} queues of {queue_size}"
            ))
        })?;
    let data = ((size - fixed) / nq64) & !(PAGE_SIZE - 1);
    if data == 0 {
        return Err(FrontendError::InvalidOptions(format!(
            "{size:#x} bytes of guest memory leave no data area for {nq} queues"
        )));
    }
    Ok((0..nq64)
        .map(|i| QueueArea {
            rings: base + i * rings,
            scratch: (base + nq64 * rings + i * scratch, scratch),
            data: (base + nq64 * (rings + scratch) + i * data, data),
        })
        .collect())
}

/// Creates `size` bytes of memfd-backed guest memory at GPA `base`, split
/// into `regions` equal regions (contiguous in GPA, separate mappings of one
/// memfd at increasing file offsets, as QEMU does with a RAM block split
/// around a hole), and the region descriptions SET_MEM_TABLE needs.
pub(crate) fn create_memory(
    size: usize,
    base: u64,
    regions: usize,
) -> Result<(GuestMemoryMmap, Vec<VhostUserMemoryRegionInfo>), FrontendError> {
    let page = host_page_size();
    let region_size = region_size(size, regions, page).ok_or_else(|| {
        FrontendError::InvalidOptions(format!(
            "{size:#x} bytes cannot be split into {regions} regions of whole {page:#x}-byte host pages"
        ))
    })?;
    // SAFETY: the name is a valid NUL-terminated string and the flags are
    // valid for memfd_create.
    let fd =
        unsafe { libc::memfd_create(c"vhost-device-test-frontend".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(FrontendError::Memory(format!(
            "memfd_create: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: `fd` was just returned by memfd_create, is open and is owned by
    // nothing else.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(size as u64)
        .map_err(|e| FrontendError::Memory(format!("memfd ftruncate to {size:#x}: {e}")))?;
    let file = Arc::new(file);
    let mut mapped = Vec::with_capacity(regions);
    let mut infos = Vec::with_capacity(regions);
    for i in 0..regions as u64 {
        let offset = i * region_size as u64;
        let gpa = base + offset;
        let mapping =
            MmapRegion::from_file(FileOffset::from_arc(file.clone(), offset), region_size)
                .map_err(|e| {
                    FrontendError::Memory(format!("mmap of {region_size:#x} bytes: {e}"))
                })?;
        let region = GuestRegionMmap::new(mapping, GuestAddress(gpa))
            .ok_or_else(|| FrontendError::Memory(format!("region at {gpa:#x} overflows")))?;
        infos.push(
            VhostUserMemoryRegionInfo::from_guest_region(&region)
                .map_err(|e| FrontendError::Memory(format!("region description: {e}")))?,
        );
        mapped.push(region);
    }
    let mem = GuestMemoryMmap::from_regions(mapped)
        .map_err(|e| FrontendError::Memory(format!("guest memory: {e}")))?;
    Ok((mem, infos))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use vm_memory::{Bytes, GuestMemoryBackend};

    #[test]
    fn memory_plan_is_disjoint_and_in_bounds() {
        let base = 0x1_0000_0000;
        let size = 16 << 20;
        let areas = plan_memory(base, size, 3, 256, 64 << 10).unwrap();
        assert_eq!(areas.len(), 3);
        let mut ranges = Vec::new();
        for a in &areas {
            ranges.push((a.rings, RingLayout::new(256).total));
            ranges.push(a.scratch);
            ranges.push(a.data);
            assert_eq!(a.rings % PAGE_SIZE, 0);
            assert_eq!(a.data.0 % PAGE_SIZE, 0);
            assert!(a.data.1 > 5 << 20);
        }
        for (i, &(s, l)) in ranges.iter().enumerate() {
            assert!(s >= base && s + l <= base + size);
            for &(s2, l2) in &ranges[i + 1..] {
                assert!(s + l <= s2 || s2 + l2 <= s, "overlap");
            }
        }
    }

    #[test]
    fn memory_plan_rejects_too_small() {
        assert!(matches!(
            plan_memory(0, 8192, 2, 256, 4096),
            Err(FrontendError::InvalidOptions(_))
        ));
        assert_eq!(plan_memory(0, 3 * 4096, 1, 16, 4096).unwrap().len(), 1);
    }

    #[test]
    fn regions_are_whole_host_pages_of_any_size() {
        // 1 MiB in 4 regions of 256 KiB: whole pages at 4K, 16K and 64K.
        for page in [4 << 10, 16 << 10, 64 << 10] {
            assert_eq!(region_size(1 << 20, 4, page), Some(256 << 10));
        }
        // 16 regions of 16 KiB: not a whole number of 64K pages.
        assert_eq!(region_size(256 << 10, 16, 16 << 10), Some(16 << 10));
        assert_eq!(region_size(256 << 10, 16, 64 << 10), None);
        assert_eq!(region_size(1 << 20, 3, 4 << 10), None);
        assert_eq!(region_size(1 << 20, 0, 4 << 10), None);
        let host = host_page_size();
        assert!(host >= PAGE_SIZE && host.is_power_of_two(), "{host}");
    }

    #[test]
    fn memory_is_memfd_backed_at_base() {
        let (mem, info) = create_memory(1 << 20, 0x4000_0000, 1).unwrap();
        assert_eq!(info.len(), 1);
        assert_eq!(info[0].guest_phys_addr, 0x4000_0000);
        assert_eq!(info[0].memory_size, 1 << 20);
        assert!(info[0].mmap_handle >= 0);
        let host = mem.get_host_address(GuestAddress(0x4000_0000)).unwrap();
        assert_eq!(host as u64, info[0].userspace_addr);
    }

    #[test]
    fn memory_regions_share_one_memfd_at_increasing_offsets() {
        let (mem, info) = create_memory(1 << 20, 0x1000, 4).unwrap();
        assert_eq!(info.len(), 4);
        for (i, r) in info.iter().enumerate() {
            let i = i as u64;
            assert_eq!(r.guest_phys_addr, 0x1000 + i * (256 << 10));
            assert_eq!(r.mmap_offset, i * (256 << 10));
            assert_eq!(r.memory_size, 256 << 10);
            assert_eq!(r.mmap_handle, info[0].mmap_handle);
        }
        // Bytes written across a region boundary land in both regions.
        let boundary = GuestAddress(0x1000 + (256 << 10) - 2);
        mem.write_slice(b"abcd", boundary).unwrap();
        let mut out = [0u8; 4];
        mem.read_slice(&mut out, boundary).unwrap();
        assert_eq!(&out, b"abcd");
        assert!(create_memory(1 << 20, 0, 3)
            .is_err_and(|e| matches!(e, FrontendError::InvalidOptions(_))));
    }
}
