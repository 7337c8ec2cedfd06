// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The virtio-rpmsg wire format.
//!
//! The virtio specification reserves device ID 7 for rpmsg but has no
//! chapter for it: Linux's driver is the de facto specification. Section
//! references below are to the Linux sources, `drivers/rpmsg/virtio_rpmsg_bus.c`
//! ("vrb"), `drivers/rpmsg/rpmsg_ns.c` ("ns"), `include/linux/rpmsg/ns.h` and
//! `include/uapi/linux/rpmsg.h`. Every field is little-endian: the driver
//! encodes with `virtio_is_little_endian()`, which VERSION_1 makes true.

use vm_memory::{ByteValued, Le16, Le32};

/// Virtio device ID of an rpmsg bus (virtio 1.3 §5, device ID table).
pub const VIRTIO_ID_RPMSG: u32 = 7;

/// The driver's receive queue ("input", `vrp->rvq`): the device fills the
/// empty buffers the driver posts (vrb `rpmsg_probe`, "rx and tx, in this
/// order").
pub const RX_QUEUE: usize = 0;
/// The driver's transmit queue ("output", `vrp->svq`): one message per chain.
pub const TX_QUEUE: usize = 1;
/// Number of queues. The driver warns when their sizes differ.
pub const NUM_QUEUES: usize = 2;

/// Feature bit 0: the device sends and receives name-service messages
/// (vrb `VIRTIO_RPMSG_F_NS`, the only bit in its feature table).
pub const VIRTIO_RPMSG_F_NS: u64 = 1 << 0;

/// Size of every buffer the driver allocates (vrb `MAX_RPMSG_BUF_SIZE`).
pub const MAX_RPMSG_BUF_SIZE: usize = 512;
/// Size of [`rpmsg_hdr`].
pub const RPMSG_HDR_SIZE: usize = std::mem::size_of::<rpmsg_hdr>();
/// Largest payload: a buffer less its header (vrb `virtio_rpmsg_get_mtu`).
pub const RPMSG_MTU: usize = MAX_RPMSG_BUF_SIZE - RPMSG_HDR_SIZE;

/// The name service's address on both sides (`RPMSG_NS_ADDR`, ns.h).
pub const RPMSG_NS_ADDR: u32 = 53;
/// Addresses below this are never handed out by Linux's dynamic allocator
/// (vrb `RPMSG_RESERVED_ADDRESSES`), so the device's own live here.
pub const RPMSG_RESERVED_ADDRESSES: u32 = 1024;
/// "Any address" (`RPMSG_ADDR_ANY`, uapi rpmsg.h).
pub const RPMSG_ADDR_ANY: u32 = 0xffff_ffff;
/// Length of a channel name, NUL included (`RPMSG_NAME_SIZE`).
pub const RPMSG_NAME_SIZE: usize = 32;

/// [`rpmsg_ns_msg::flags`]: a channel was created (ns.h `RPMSG_NS_CREATE`).
pub const RPMSG_NS_CREATE: u32 = 0;
/// [`rpmsg_ns_msg::flags`]: a channel went away (ns.h `RPMSG_NS_DESTROY`).
pub const RPMSG_NS_DESTROY: u32 = 1;

/// The header in front of every message, in both directions (vrb
/// `struct rpmsg_hdr`, packed; its fields are naturally aligned, so
/// `repr(C)` lays it out identically).
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub struct rpmsg_hdr {
    /// Sender's endpoint address.
    pub src: Le32,
    /// Receiver's endpoint address.
    pub dst: Le32,
    /// Zero.
    pub reserved: Le32,
    /// Payload length in bytes.
    pub len: Le16,
    /// Zero; the driver never sets any.
    pub flags: Le16,
}

// SAFETY: plain little-endian integers with no padding (size asserted
// below), so every byte pattern is a valid value.
unsafe impl ByteValued for rpmsg_hdr {}

/// A name-service announcement, the whole payload of a message to or from
/// address 53 (ns.h `struct rpmsg_ns_msg`, packed, exactly 40 bytes: ns
/// `rpmsg_ns_cb` rejects any other length as "malformed ns msg").
#[repr(C)]
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub struct rpmsg_ns_msg {
    /// The channel name, NUL-padded; the driver forces the last byte to 0.
    pub name: [u8; RPMSG_NAME_SIZE],
    /// The announcing endpoint's address.
    pub addr: Le32,
    /// [`RPMSG_NS_CREATE`] or [`RPMSG_NS_DESTROY`].
    pub flags: Le32,
}

// SAFETY: a byte array and two little-endian integers with no padding (size
// asserted below), so every byte pattern is a valid value.
unsafe impl ByteValued for rpmsg_ns_msg {}

const _: () = assert!(std::mem::size_of::<rpmsg_hdr>() == 16);
const _: () = assert!(std::mem::size_of::<rpmsg_ns_msg>() == 40);
const _: () = assert!(RPMSG_MTU == 496);

/// What a name-service message asks for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum NsOp {
    /// A channel appeared.
    Create,
    /// A channel went away.
    Destroy,
}

/// A decoded name-service message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// The channel name, without the NUL padding.
    pub name: String,
    /// The announcing endpoint.
    pub addr: u32,
    /// Create or destroy.
    pub op: NsOp,
}

impl Announcement {
    /// Decodes a name-service payload. `None` unless it is exactly 40 bytes
    /// with known flags and a non-empty, NUL-terminated, printable name.
    pub fn decode(payload: &[u8]) -> Option<Self> {
        let raw = rpmsg_ns_msg::from_slice(payload)?;
        let op = match raw.flags.to_native() {
            RPMSG_NS_CREATE => NsOp::Create,
            RPMSG_NS_DESTROY => NsOp::Destroy,
            _ => return None,
        };
        let end = raw.name.iter().position(|&b| b == 0)?;
        let name = raw.name.get(..end)?;
        if name.is_empty() || !name.iter().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        Some(Announcement {
            name: String::from_utf8_lossy(name).into_owned(),
            addr: raw.addr.to_native(),
            op,
        })
    }

    /// The 40-byte payload. Names longer than 31 bytes are cut (the CLI
    /// refuses them, so this never happens for a configured channel).
    pub fn encode(&self) -> rpmsg_ns_msg {
        let mut raw = rpmsg_ns_msg {
            addr: self.addr.into(),
            flags: match self.op {
                NsOp::Create => RPMSG_NS_CREATE,
                NsOp::Destroy => RPMSG_NS_DESTROY,
            }
            .into(),
            ..Default::default()
        };
        for (dst, src) in raw
            .name
            .iter_mut()
            .zip(self.name.bytes().take(RPMSG_NAME_SIZE - 1))
        {
            *dst = src;
        }
        raw
    }
}

/// Builds the header of a message the device sends.
pub fn header(src: u32, dst: u32, len: usize) -> rpmsg_hdr {
    rpmsg_hdr {
        src: src.into(),
        dst: dst.into(),
        reserved: 0.into(),
        len: u16::try_from(len).unwrap_or(u16::MAX).into(),
        flags: 0.into(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn ns_round_trip_and_layout() {
        let a = Announcement {
            name: "rpmsg-tty".into(),
            addr: 0x400,
            op: NsOp::Create,
        };
        let raw = a.encode();
        let bytes = raw.as_slice();
        assert_eq!(&bytes[..10], b"rpmsg-tty\0");
        assert_eq!(&bytes[32..36], &[0, 4, 0, 0]);
        assert_eq!(&bytes[36..40], &[0, 0, 0, 0]);
        assert_eq!(Announcement::decode(bytes), Some(a));
        let d = Announcement {
            name: "x".into(),
            addr: 1,
            op: NsOp::Destroy,
        };
        assert_eq!(&d.encode().as_slice()[36..40], &[1, 0, 0, 0]);
        assert_eq!(Announcement::decode(d.encode().as_slice()), Some(d));
    }

    #[test]
    fn malformed_ns_is_refused() {
        let good = Announcement {
            name: "rpmsg-raw".into(),
            addr: 0x401,
            op: NsOp::Create,
        }
        .encode();
        let bytes = good.as_slice().to_vec();
        assert!(Announcement::decode(&bytes[..39]).is_none());
        let mut long = bytes.clone();
        long.push(0);
        assert!(Announcement::decode(&long).is_none());
        let mut flags = bytes.clone();
        flags[36] = 2;
        assert!(Announcement::decode(&flags).is_none());
        let mut unterminated = bytes.clone();
        unterminated[..32].fill(b'a');
        assert!(Announcement::decode(&unterminated).is_none());
        let mut empty = bytes.clone();
        empty[0] = 0;
        assert!(Announcement::decode(&empty).is_none());
        let mut slash = bytes;
        slash[0] = b' ';
        assert!(Announcement::decode(&slash).is_none());
    }

    #[test]
    fn header_is_little_endian() {
        let h = header(0x0102_0304, 53, 40);
        assert_eq!(
            h.as_slice(),
            &[4, 3, 2, 1, 53, 0, 0, 0, 0, 0, 0, 0, 40, 0, 0, 0]
        );
    }
}
