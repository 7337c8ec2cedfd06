// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The virtio-gpio wire format (virtio 1.3 §5.18, "GPIO Device"): codes,
//! feature bits and the little-endian structures driver and device
//! exchange, and the typed decode of a request.

use std::mem::size_of;

use vhost_device_common::Reader;
use vm_memory::{ByteValued, GuestMemory, Le16, Le32};

use crate::backend::Direction;
use crate::error::{Error, Result};

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

/// A decoded request-queue request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// VIRTIO_GPIO_MSG_GET_LINE_NAMES.
    GetLineNames,
    /// VIRTIO_GPIO_MSG_GET_DIRECTION.
    GetDirection {
        /// The line.
        gpio: u16,
    },
    /// VIRTIO_GPIO_MSG_SET_DIRECTION.
    SetDirection {
        /// The line.
        gpio: u16,
        /// Its new direction.
        direction: Direction,
    },
    /// VIRTIO_GPIO_MSG_GET_VALUE.
    GetValue {
        /// The line.
        gpio: u16,
    },
    /// VIRTIO_GPIO_MSG_SET_VALUE.
    SetValue {
        /// The line.
        gpio: u16,
        /// High or low. Linux only sends 0 or 1; anything else is high.
        high: bool,
    },
    /// VIRTIO_GPIO_MSG_SET_IRQ_TYPE.
    SetIrqType {
        /// The line.
        gpio: u16,
        /// The new trigger.
        trigger: IrqType,
    },
}

impl Request {
    /// Reads and decodes one request. The device-readable part must be
    /// exactly one `virtio_gpio_request` (§5.18.6.8: the driver sends
    /// nothing else).
    pub fn decode<M: GuestMemory + ?Sized>(reader: &mut Reader<'_, M>) -> Result<Self> {
        let len = reader.available();
        if len != size_of::<VirtioGpioRequest>() {
            return Err(Error::RequestLength {
                len,
                want: size_of::<VirtioGpioRequest>(),
            });
        }
        let raw: VirtioGpioRequest = reader.read_obj().map_err(|_| Error::RequestLength {
            len,
            want: size_of::<VirtioGpioRequest>(),
        })?;
        let gpio = raw.gpio.to_native();
        let value = raw.value.to_native();
        Ok(match raw.type_.to_native() {
            VIRTIO_GPIO_MSG_GET_LINE_NAMES => Request::GetLineNames,
            VIRTIO_GPIO_MSG_GET_DIRECTION => Request::GetDirection { gpio },
            VIRTIO_GPIO_MSG_SET_DIRECTION => Request::SetDirection {
                gpio,
                direction: Direction::from_spec(value)
                    .ok_or(Error::BadDirection { line: gpio, value })?,
            },
            VIRTIO_GPIO_MSG_GET_VALUE => Request::GetValue { gpio },
            VIRTIO_GPIO_MSG_SET_VALUE => Request::SetValue {
                gpio,
                high: value != 0,
            },
            VIRTIO_GPIO_MSG_SET_IRQ_TYPE => Request::SetIrqType {
                gpio,
                trigger: IrqType::from_spec(value)
                    .ok_or(Error::BadIrqType { line: gpio, value })?,
            },
            other => return Err(Error::UnknownRequest(other)),
        })
    }

    /// The line the request is about, if any.
    pub fn line(self) -> Option<u16> {
        match self {
            Request::GetLineNames => None,
            Request::GetDirection { gpio }
            | Request::SetDirection { gpio, .. }
            | Request::GetValue { gpio }
            | Request::SetValue { gpio, .. }
            | Request::SetIrqType { gpio, .. } => Some(gpio),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use vhost_device_common::mock::ChainBuilder;

    use super::*;

    fn decode(bytes: &[u8]) -> Result<Request> {
        let mut b = ChainBuilder::new();
        let chain = b.request(&[bytes], &[2]);
        Request::decode(&mut chain.reader(b.memory()))
    }

    #[test]
    fn requests_decode_to_their_commands() {
        let req = |t, g, v| decode(VirtioGpioRequest::new(t, g, v).as_slice());
        assert_eq!(req(1, 0, 0).unwrap(), Request::GetLineNames);
        assert_eq!(
            req(3, 7, 1).unwrap(),
            Request::SetDirection {
                gpio: 7,
                direction: Direction::Out
            }
        );
        assert_eq!(
            req(5, 2, 9).unwrap(),
            Request::SetValue {
                gpio: 2,
                high: true
            }
        );
        assert_eq!(
            req(6, 1, 8).unwrap(),
            Request::SetIrqType {
                gpio: 1,
                trigger: IrqType::LevelLow
            }
        );
        assert!(matches!(req(3, 0, 3), Err(Error::BadDirection { .. })));
        assert!(matches!(req(6, 0, 5), Err(Error::BadIrqType { .. })));
        assert!(matches!(req(0, 0, 0), Err(Error::UnknownRequest(0))));
        assert!(matches!(
            decode(&[1, 0, 0]),
            Err(Error::RequestLength { len: 3, want: 8 })
        ));
        assert!(matches!(
            decode(&[0; 9]),
            Err(Error::RequestLength { len: 9, .. })
        ));
    }
}
