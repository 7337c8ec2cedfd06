// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The virtio-i2c wire format (virtio 1.3 §5.16, "I2C Adapter Device"):
//! feature bits, flags, statuses and the request headers. A leaf module:
//! `request.rs` decodes with it.

use std::mem::size_of;

use vm_memory::{ByteValued, Le16, Le32};

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

    /// Whether the request is linked to the next one. Known even when the
    /// rest of the header is bad: a bad request still fails its group.
    pub fn fail_next(&self) -> bool {
        self.flags.to_native() & VIRTIO_I2C_FLAGS_FAIL_NEXT != 0
    }
}
