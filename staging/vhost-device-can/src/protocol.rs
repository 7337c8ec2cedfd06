// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The virtio-can wire format (virtio 1.4 draft, "CAN Device", device ID
//! 36): queue indices, feature bits, message types, results and the
//! little-endian structures the driver and device exchange. Names follow the
//! spec; section names are those of the spec's `description.tex`.

#![allow(non_camel_case_types)]

use vm_memory::{ByteValued, Le16, Le32};

/// Virtio device ID (§"CAN Device / Device ID").
pub const VIRTIO_ID_CAN: u32 = 36;

/// Queue indices (§"CAN Device / Virtqueues").
pub const TX_QUEUE: usize = 0;
/// The queue the device fills with received frames.
pub const RX_QUEUE: usize = 1;
/// START / STOP requests.
pub const CONTROL_QUEUE: usize = 2;
/// Number of queues.
pub const NUM_QUEUES: usize = 3;

// Feature bits (§"CAN Device / Feature bits").
/// Classic CAN frames, payload up to 8 bytes.
pub const VIRTIO_CAN_F_CAN_CLASSIC: u64 = 1 << 0;
/// CAN FD frames, payload up to 64 bytes.
pub const VIRTIO_CAN_F_CAN_FD: u64 = 1 << 1;
/// RTR frames (classic only; requires CAN_CLASSIC, §"Feature bit
/// requirements").
pub const VIRTIO_CAN_F_RTR_FRAMES: u64 = 1 << 2;
/// A TX request is used only once the frame went out on the bus.
pub const VIRTIO_CAN_F_LATE_TX_ACK: u64 = 1 << 3;

/// `status` bit: the controller went bus-off on its own (§"Device
/// configuration layout", §"BusOff Indication").
pub const VIRTIO_CAN_S_CTRL_BUSOFF: u16 = 1 << 0;

/// Results (§"Device Operation"). Any value but OK means NOT_OK.
pub const VIRTIO_CAN_RESULT_OK: u8 = 0;
/// The request failed.
pub const VIRTIO_CAN_RESULT_NOT_OK: u8 = 1;

// Message types.
/// `virtio_can_tx_out.msg_type` (§"CAN Message Transmission").
pub const VIRTIO_CAN_TX: u16 = 0x0001;
/// `virtio_can_rx.msg_type` (§"CAN Message Reception").
pub const VIRTIO_CAN_RX: u16 = 0x0101;
/// Start the controller (§"Controller Mode").
pub const VIRTIO_CAN_SET_CTRL_MODE_START: u16 = 0x0201;
/// Stop the controller (§"Controller Mode").
pub const VIRTIO_CAN_SET_CTRL_MODE_STOP: u16 = 0x0202;

// `flags` bits (§"CAN Message Transmission"); any other bit set makes the
// frame one "for which support has not been negotiated".
/// A 29-bit identifier.
pub const VIRTIO_CAN_FLAGS_EXTENDED: u32 = 0x8000;
/// A CAN FD frame.
pub const VIRTIO_CAN_FLAGS_FD: u32 = 0x4000;
/// A remote transmission request.
pub const VIRTIO_CAN_FLAGS_RTR: u32 = 0x2000;
/// Every defined flag.
pub const VIRTIO_CAN_FLAGS_KNOWN: u32 =
    VIRTIO_CAN_FLAGS_EXTENDED | VIRTIO_CAN_FLAGS_FD | VIRTIO_CAN_FLAGS_RTR;

/// Largest standard (11-bit) identifier.
pub const CAN_SFF_MAX: u32 = 0x7ff;
/// Largest extended (29-bit) identifier.
pub const CAN_EFF_MAX: u32 = 0x1fff_ffff;
/// Largest classic payload.
pub const CAN_MAX_DLEN: usize = 8;
/// Largest CAN FD payload.
pub const CANFD_MAX_DLEN: usize = 64;

/// The config space (§"Device configuration layout"); read-only for the
/// driver.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct virtio_can_config {
    /// `VIRTIO_CAN_S_*` bits.
    pub status: Le16,
}

/// The header of a TX request; `length` bytes of `sdu` follow it in the
/// same readable part (§"CAN Message Transmission").
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct virtio_can_tx_out {
    /// `VIRTIO_CAN_TX`.
    pub msg_type: Le16,
    /// Payload length: 0..8 classic, 0..64 FD.
    pub length: Le16,
    /// Reserved for a classic DLC of 9..15.
    pub reserved_classic_dlc: u8,
    /// Padding.
    pub padding: u8,
    /// Reserved for CAN XL.
    pub reserved_xl_priority: Le16,
    /// `VIRTIO_CAN_FLAGS_*`.
    pub flags: Le32,
    /// The identifier, its top 3 bits 0.
    pub can_id: Le32,
}

/// The device's answer to a TX request.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct virtio_can_tx_in {
    /// `VIRTIO_CAN_RESULT_*`.
    pub result: u8,
}

/// The header of a received frame, laid out as [`virtio_can_tx_out`] with
/// `msg_type` `VIRTIO_CAN_RX`; the payload follows it (§"CAN Message
/// Reception"). For RTR, `length` is the requested DLC and no payload
/// follows.
pub type virtio_can_rx = virtio_can_tx_out;

impl virtio_can_tx_out {
    /// A header with everything reserved left zero.
    pub fn new(msg_type: u16, flags: u32, can_id: u32, length: u16) -> Self {
        virtio_can_tx_out {
            msg_type: Le16::from(msg_type),
            length: Le16::from(length),
            flags: Le32::from(flags),
            can_id: Le32::from(can_id),
            ..Default::default()
        }
    }
}

/// A control request (§"Controller Mode").
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct virtio_can_control_out {
    /// `VIRTIO_CAN_SET_CTRL_MODE_*`.
    pub msg_type: Le16,
}

/// The device's answer to a control request.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct virtio_can_control_in {
    /// `VIRTIO_CAN_RESULT_*`.
    pub result: u8,
}

// SAFETY: all of these are repr(C) structs of plain integers with no padding
// (checked by the size asserts below); any bit pattern is a valid value.
unsafe impl ByteValued for virtio_can_config {}
// SAFETY: as above.
unsafe impl ByteValued for virtio_can_tx_out {}
// SAFETY: as above.
unsafe impl ByteValued for virtio_can_tx_in {}
// SAFETY: as above.
unsafe impl ByteValued for virtio_can_control_out {}
// SAFETY: as above.
unsafe impl ByteValued for virtio_can_control_in {}

const _: () = assert!(std::mem::size_of::<virtio_can_config>() == 2);
const _: () = assert!(std::mem::size_of::<virtio_can_tx_out>() == 16);
const _: () = assert!(std::mem::size_of::<virtio_can_tx_in>() == 1);
const _: () = assert!(std::mem::size_of::<virtio_can_control_out>() == 2);
const _: () = assert!(std::mem::size_of::<virtio_can_control_in>() == 1);
