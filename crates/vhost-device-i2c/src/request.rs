// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The typed decode of a request's out header (virtio 1.3 §5.16.6.1).

use vhost_device_common::Reader;
use vm_memory::GuestMemory;

use crate::error::{Error, Result};
use crate::protocol::{VirtioI2cOutHdr, VIRTIO_I2C_FLAGS_FAIL_NEXT, VIRTIO_I2C_FLAGS_M_RD};

impl VirtioI2cOutHdr {
    /// Reads the header at the start of a request.
    pub fn read<M: GuestMemory + ?Sized>(reader: &mut Reader<'_, M>) -> Result<Self> {
        reader.read_obj().map_err(Error::OutHeader)
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
