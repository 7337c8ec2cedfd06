// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The baseline of gpu-2d: a plain memcpy of the same bytes, one frame at a
//! time, on the frontend's CPU.

use std::time::{Duration, Instant};

use crate::load::RunLimits;

/// What the memcpy baseline measured.
#[derive(Debug, Clone, Copy)]
pub struct MemcpyResult {
    /// Bytes per copy.
    pub bytes: u64,
    /// Copies in the measured part.
    pub copies: u64,
    /// Wall time of the measured part.
    pub elapsed: Duration,
}

impl MemcpyResult {
    /// Megabytes (10^6) per second.
    pub fn mb_per_s(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            (self.copies * self.bytes) as f64 / s / 1e6
        } else {
            0.0
        }
    }
}

/// Copies `bytes` from one private buffer to another for the run's
/// duration: the plain memcpy the gpu-2d target is set against.
pub fn measure(bytes: u64, limits: &RunLimits) -> MemcpyResult {
    let len = usize::try_from(bytes).unwrap_or(0);
    let src: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    copy_loop(&src, len, limits)
}

/// Copies `bytes` out of a shared memfd mapping (what guest memory is for
/// a vhost-user daemon) into a private buffer that starts `dst_offset`
/// bytes past a page boundary, one `row` at a time, as a 2D transfer does.
/// With offset 16, where glibc puts a large `malloc` (an mmap'd chunk after
/// its 16-byte header), every row is stored 16 bytes off the alignment of
/// its source: the copy the gpu daemon does.
pub fn measure_from_memfd(
    bytes: u64,
    row: usize,
    dst_offset: usize,
    limits: &RunLimits,
) -> std::io::Result<MemcpyResult> {
    let len = usize::try_from(bytes).unwrap_or(0);
    // SAFETY: a valid NUL-terminated name and valid flags.
    let fd =
        unsafe { libc::memfd_create(c"vhost-device-bench-memcpy".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a new descriptor nothing else owns.
    let file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    file.set_len(bytes)?;
    let src_map = Mapping::new(len, Some(&file))?;
    let dst_map = Mapping::new(len + dst_offset.min(4095) + 1, None)?;
    // SAFETY: each mapping is readable and writable for its whole length,
    // lives until the end of this function, and only these slices use it.
    let (src, dst) = unsafe {
        (
            std::slice::from_raw_parts_mut(src_map.ptr.cast::<u8>(), len),
            std::slice::from_raw_parts_mut(dst_map.ptr.cast::<u8>().add(dst_offset.min(4095)), len),
        )
    };
    for (i, b) in src.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    // Touched once so that the copies do not measure page faults.
    dst.fill(1);
    Ok(copy_rows_into(src, dst, row.max(1), limits))
}

/// An mmap'd area, unmapped on drop.
struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    /// `len` bytes of `file` shared, or of private anonymous memory.
    fn new(len: usize, file: Option<&std::fs::File>) -> std::io::Result<Self> {
        let (flags, fd) = match file {
            Some(f) => (libc::MAP_SHARED, std::os::fd::AsRawFd::as_raw_fd(f)),
            None => (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1),
        };
        // SAFETY: a fresh mapping at an address the kernel picks; `fd` is
        // open (or -1 for anonymous memory) for the duration of the call.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapping { ptr, len })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped; no slice outlives it.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}

fn copy_loop(src: &[u8], len: usize, limits: &RunLimits) -> MemcpyResult {
    copy_rows(src, len, len.max(1), limits)
}

fn copy_rows(src: &[u8], len: usize, row: usize, limits: &RunLimits) -> MemcpyResult {
    // Written once so that the copies do not measure page faults.
    let mut dst = vec![1u8; len];
    copy_rows_into(src, &mut dst, row, limits)
}

fn copy_rows_into(src: &[u8], dst: &mut [u8], row: usize, limits: &RunLimits) -> MemcpyResult {
    let len = dst.len();
    let copy = |dst: &mut [u8]| {
        for (d, s) in dst.chunks_mut(row).zip(src.chunks(row)) {
            d.copy_from_slice(s);
        }
        std::hint::black_box(dst);
    };
    let warmup_end = Instant::now() + limits.warmup;
    while Instant::now() < warmup_end {
        copy(dst);
    }
    let start = Instant::now();
    let end = start + limits.duration;
    let mut copies = 0u64;
    loop {
        copy(dst);
        copies += 1;
        if Instant::now() >= end || copies >= limits.max_requests {
            break;
        }
    }
    MemcpyResult {
        bytes: len as u64,
        copies,
        elapsed: start.elapsed(),
    }
}
