// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The virtio-gpio wire format (virtio 1.3 §5.18, "GPIO Device"): codes,
//! feature bits and the little-endian structures driver and device
//! exchange. A leaf module: `request.rs` decodes with it.

use std::mem::size_of;

use vm_memory::{ByteValued, Le16, Le32};

/// The virtio device ID of a GPIO controller (§5.18.1).
pub const VIRTIO_ID_GPIO: u32 = 41;
/// Feature bit 0: the device supports interrupts (§5.18.3).
pub const VIRTIO_GPIO_F_IRQ: u64 = 1 << 0;

/// The request queue (§5.18.2).
pub const REQUEST_QUEUE: usize = 0;
/// The event queue, present with `VIRTIO_GPIO_F_IRQ` (§5.18.2).
pub const EVENT_QUEUE: usize = 1;

// Request types (§5.18.6).
/// The names block.
pub const VIRTIO_GPIO_MSG_GET_LINE_NAMES: u16 = 0x0001;
/// A line's direction.
pub const VIRTIO_GPIO_MSG_GET_DIRECTION: u16 = 0x0002;
/// Claims or releases a line.
pub const VIRTIO_GPIO_MSG_SET_DIRECTION: u16 = 0x0003;
/// A line's level.
pub const VIRTIO_GPIO_MSG_GET_VALUE: u16 = 0x0004;
/// A line's output level.
pub const VIRTIO_GPIO_MSG_SET_VALUE: u16 = 0x0005;
/// Enables or disables a line's interrupt (§5.18.6.6).
pub const VIRTIO_GPIO_MSG_SET_IRQ_TYPE: u16 = 0x0006;

/// Request succeeded (§5.18.6).
pub const VIRTIO_GPIO_STATUS_OK: u8 = 0;
/// Request failed (§5.18.6).
pub const VIRTIO_GPIO_STATUS_ERR: u8 = 1;
/// Event buffer returned unused: the interrupt is disabled (§5.18.7).
pub const VIRTIO_GPIO_IRQ_STATUS_INVALID: u8 = 0;
/// Event buffer returned because the interrupt fired (§5.18.7).
pub const VIRTIO_GPIO_IRQ_STATUS_VALID: u8 = 1;

/// `struct virtio_gpio_config` (§5.18.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VirtioGpioConfig {
    /// Number of lines.
    pub ngpio: Le16,
    /// Reserved.
    pub padding: [u8; 2],
    /// Size of the names block, 0 if the lines have no names.
    pub gpio_names_size: Le32,
}
// SAFETY: plain little-endian integers and bytes, no padding.
unsafe impl ByteValued for VirtioGpioConfig {}

/// `struct virtio_gpio_request` (§5.18.6): what every request-queue chain
/// starts with, and all it holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VirtioGpioRequest {
    /// One of the `VIRTIO_GPIO_MSG_*` codes.
    pub type_: Le16,
    /// The line.
    pub gpio: Le16,
    /// The argument of SET_DIRECTION, SET_VALUE and SET_IRQ_TYPE.
    pub value: Le32,
}
// SAFETY: plain little-endian integers, no padding.
unsafe impl ByteValued for VirtioGpioRequest {}

impl VirtioGpioRequest {
    /// A request as a driver lays it out.
    pub fn new(type_: u16, gpio: u16, value: u32) -> Self {
        VirtioGpioRequest {
            type_: type_.into(),
            gpio: gpio.into(),
            value: value.into(),
        }
    }
}

/// `struct virtio_gpio_response` (§5.18.6). GET_LINE_NAMES answers with the
/// status byte followed by the names block instead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VirtioGpioResponse {
    /// `VIRTIO_GPIO_STATUS_*`.
    pub status: u8,
    /// The direction or level asked for, else 0.
    pub value: u8,
}
// SAFETY: two bytes.
unsafe impl ByteValued for VirtioGpioResponse {}

/// `struct virtio_gpio_irq_request` (§5.18.7): an event buffer's
/// device-readable part.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VirtioGpioIrqRequest {
    /// The line whose interrupt this buffer unmasks.
    pub gpio: Le16,
}
// SAFETY: one little-endian integer.
unsafe impl ByteValued for VirtioGpioIrqRequest {}

/// `struct virtio_gpio_irq_response` (§5.18.7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VirtioGpioIrqResponse {
    /// `VIRTIO_GPIO_IRQ_STATUS_*`.
    pub status: u8,
}
// SAFETY: one byte.
unsafe impl ByteValued for VirtioGpioIrqResponse {}

const _: () = assert!(size_of::<VirtioGpioConfig>() == 8);
const _: () = assert!(size_of::<VirtioGpioRequest>() == 8);
const _: () = assert!(size_of::<VirtioGpioResponse>() == 2);
const _: () = assert!(size_of::<VirtioGpioIrqRequest>() == 2);
const _: () = assert!(size_of::<VirtioGpioIrqResponse>() == 1);

/// A line's interrupt trigger, `VIRTIO_GPIO_IRQ_TYPE_*` (§5.18.6.6).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum IrqType {
    /// Disabled.
    #[default]
    None = 0,
    /// Low-to-high edges.
    EdgeRising = 1,
    /// High-to-low edges.
    EdgeFalling = 2,
    /// Both edges.
    EdgeBoth = 3,
    /// While the line is high.
    LevelHigh = 4,
    /// While the line is low.
    LevelLow = 8,
}

impl IrqType {
    /// The spec value, if it is one.
    pub fn from_spec(value: u32) -> Option<Self> {
        Some(match value {
            0 => IrqType::None,
            1 => IrqType::EdgeRising,
            2 => IrqType::EdgeFalling,
            3 => IrqType::EdgeBoth,
            4 => IrqType::LevelHigh,
            8 => IrqType::LevelLow,
            _ => return None,
        })
    }
}
