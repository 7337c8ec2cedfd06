// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Bounds-checked access to a device's config space.
//!
//! The frontend asks for any offset and length it likes. A read that does not
//! lie entirely inside the config space gets an empty answer, which
//! vhost-user turns into an error reply, instead of an out-of-bounds slice.

use vm_memory::ByteValued;

/// Reads `size` bytes at `offset` of `space`, or `None` if any of them lie
/// outside it.
pub fn read(space: &[u8], offset: u32, size: u32) -> Option<Vec<u8>> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(size).ok()?)?;
    space.get(start..end).map(<[u8]>::to_vec)
}

/// Writes `data` at `offset` of `space` if the whole write lies inside
/// `writable`, a byte range of `space` the driver may change. Returns whether
/// it was written.
pub fn write(space: &mut [u8], writable: std::ops::Range<usize>, offset: u32, data: &[u8]) -> bool {
    let Ok(start) = usize::try_from(offset) else {
        return false;
    };
    let Some(end) = start.checked_add(data.len()) else {
        return false;
    };
    if start < writable.start || end > writable.end {
        return false;
    }
    match space.get_mut(start..end) {
        Some(dst) => {
            dst.copy_from_slice(data);
            true
        }
        None => false,
    }
}

/// Reads `size` bytes at `offset` of a config structure.
pub fn read_obj<T: ByteValued>(config: &T, offset: u32, size: u32) -> Option<Vec<u8>> {
    read(config.as_slice(), offset, size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_inside_only() {
        let space = [1u8, 2, 3, 4];
        assert_eq!(read(&space, 0, 4), Some(vec![1, 2, 3, 4]));
        assert_eq!(read(&space, 2, 2), Some(vec![3, 4]));
        assert_eq!(read(&space, 4, 0), Some(vec![]));
        assert_eq!(read(&space, 3, 2), None);
        assert_eq!(read(&space, 5, 0), None);
        assert_eq!(read(&space, u32::MAX, u32::MAX), None);
    }

    #[test]
    fn writes_inside_the_writable_range_only() {
        let mut space = [0u8; 8];
        assert!(write(&mut space, 4..8, 4, &[9, 9]));
        assert_eq!(space, [0, 0, 0, 0, 9, 9, 0, 0]);
        assert!(!write(&mut space, 4..8, 3, &[1, 1]));
        assert!(!write(&mut space, 4..8, 7, &[1, 1]));
        assert!(!write(&mut space, 4..8, u32::MAX, &[1]));
        assert_eq!(space, [0, 0, 0, 0, 9, 9, 0, 0]);
    }

    #[test]
    fn reads_a_struct() {
        #[derive(Clone, Copy, Default)]
        #[repr(C)]
        struct Cfg {
            a: u32,
            b: u32,
        }
        // SAFETY: Cfg is plain old data with no invalid bit patterns.
        unsafe impl ByteValued for Cfg {}
        let cfg = Cfg {
            a: 0x0000_0102,
            b: 0x0304_0506,
        };
        assert_eq!(read_obj(&cfg, 0, 2), Some(vec![2, 1]));
        assert_eq!(read_obj(&cfg, 4, 4), Some(vec![6, 5, 4, 3]));
        assert_eq!(read_obj(&cfg, 6, 4), None);
    }
}
