// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The virtio-i2c wire format (virtio 1.3 §5.16, "I2C Adapter Device"):
//! feature bits, flags, statuses, the request headers, and the typed decode
//! of a request's out header.

use std::mem::size_of;

use vhost_device_common::Reader;
use vm_memory::{ByteValued, GuestMemory, Le16, Le32};

use crate::error::{Error, Result};

/// Virtio device ID of an I2C adapter (§5.16.1).
pub const VIRTIO_ID_I2C_ADAPTER: u32 = 34;
/// Feature bit 0: zero-length requests and the M_RD flag (§5.16.3). The
/// device must offer it, and reject a driver that does not accept it.
pub const VIRTIO_I2C_F_ZERO_LENGTH_REQUEST: u64 = 1 << 0;
/// Request flag: fail the next request if this one fails, linking the two
/// into one combined transfer (§5.16.6.1).
pub const VIRTIO_I2C_FLAGS_FAIL_NEXT: u32 = 1 << 0;
/// Request flag: a read (§5.16.6.1).
pub const VIRTIO_I2C_FLAGS_M_RD: u32 = 1 << 1;
/// Status: success (§5.16.6.1).
pub const VIRTIO_I2C_MSG_OK: u8 = 0;
/// Status: failure (§5.16.6.1).
pub const VIRTIO_I2C_MSG_ERR: u8 = 1;

/// `struct virtio_i2c_out_hdr` (§5.16.6.1): the device-readable header
/// every request starts with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VirtioI2cOutHdr {
    /// The target address, `A6..A0` in bits 7..1 (§5.16.6.1).
    pub addr: Le16,
    /// Reserved.
    pub padding: Le16,
    /// `VIRTIO_I2C_FLAGS_*`.
    pub flags: Le32,
}
// SAFETY: plain little-endian integers, no padding.
unsafe impl ByteValued for VirtioI2cOutHdr {}

/// `struct virtio_i2c_in_hdr` (§5.16.6.1): the status byte the device
/// writes last.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VirtioI2cInHdr {
    /// `VIRTIO_I2C_MSG_*`.
    pub status: u8,
}
// SAFETY: one byte.
unsafe impl ByteValued for VirtioI2cInHdr {}

const _: () = assert!(size_of::<VirtioI2cOutHdr>() == 8);
const _: () = assert!(size_of::<VirtioI2cInHdr>() == 1);

impl VirtioI2cOutHdr {
    /// A header as a driver lays it out, for the 7-bit address `addr`.
    pub fn new(addr: u8, flags: u32) -> Self {
        VirtioI2cOutHdr {
            addr: (u16::from(addr) << 1).into(),
            padding: 0.into(),
            flags: flags.into(),
        }
    }

    /// Reads the header at the start of a request.
    pub fn read<M: GuestMemory + ?Sized>(reader: &mut Reader<'_, M>) -> Result<Self> {
        reader.read_obj().map_err(Error::OutHeader)
    }

    /// Whether the request is linked to the next one. Known even when the
    /// rest of the header is bad: a bad request still fails its group.
    pub fn fail_next(&self) -> bool {
        self.flags.to_native() & VIRTIO_I2C_FLAGS_FAIL_NEXT != 0
    }

    /// Checks the header and returns what it asks for.
    pub fn decode(&self) -> Result<Header> {
        let flags = self.flags.to_native();
        if flags & !(VIRTIO_I2C_FLAGS_FAIL_NEXT | VIRTIO_I2C_FLAGS_M_RD) != 0 {
            return Err(Error::ReservedFlags(flags));
        }
        Ok(Header {
            addr: decode_addr(self.addr.to_native())?,
            read: flags & VIRTIO_I2C_FLAGS_M_RD != 0,
        })
    }
}

/// A decoded out header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The 7-bit target address.
    pub addr: u8,
    /// A read (the buffer is device-writable) rather than a write.
    pub read: bool,
}

/// Decodes the `addr` field: `A6..A0` in bits 7..1, everything else zero
/// (§5.16.6.1). The 10-bit form (`11110 A9 A8` in bits 7..1) is not
/// supported.
pub fn decode_addr(raw: u16) -> Result<u8> {
    if raw & 0xff01 != 0 {
        return Err(Error::NotSevenBit(raw));
    }
    // Bits 7..1 shifted down: at most 0x7f.
    let addr = u8::try_from(raw >> 1).unwrap_or(u8::MAX);
    if (0x78..=0x7b).contains(&addr) {
        return Err(Error::TenBit(raw));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn address_decoding() {
        assert_eq!(decode_addr(0x50 << 1).unwrap(), 0x50);
        assert!(matches!(decode_addr(0xa1), Err(Error::NotSevenBit(0xa1))));
        assert!(matches!(decode_addr(0x0100), Err(Error::NotSevenBit(_))));
        assert!(matches!(decode_addr(0x7b << 1), Err(Error::TenBit(_))));
        assert_eq!(decode_addr(0x7c << 1).unwrap(), 0x7c);
    }

    #[test]
    fn headers_decode() {
        let h = VirtioI2cOutHdr::new(0x50, VIRTIO_I2C_FLAGS_M_RD | VIRTIO_I2C_FLAGS_FAIL_NEXT);
        assert!(h.fail_next());
        assert_eq!(
            h.decode().unwrap(),
            Header {
                addr: 0x50,
                read: true
            }
        );
        let bad = VirtioI2cOutHdr::new(0x50, 1 << 5 | VIRTIO_I2C_FLAGS_FAIL_NEXT);
        assert!(bad.fail_next());
        assert!(matches!(bad.decode(), Err(Error::ReservedFlags(0x21))));
    }
}
