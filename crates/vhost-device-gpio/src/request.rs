// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The typed decode of a request-queue request (virtio 1.3 §5.18.6): read
//! once, checked once, and handed to the device as a [`Request`].

use std::mem::size_of;

use vhost_device_common::Reader;
use vm_memory::GuestMemory;

use crate::backend::Direction;
use crate::error::{Error, Result};
use crate::protocol::{
    IrqType, VirtioGpioRequest, VIRTIO_GPIO_MSG_GET_DIRECTION, VIRTIO_GPIO_MSG_GET_LINE_NAMES,
    VIRTIO_GPIO_MSG_GET_VALUE, VIRTIO_GPIO_MSG_SET_DIRECTION, VIRTIO_GPIO_MSG_SET_IRQ_TYPE,
    VIRTIO_GPIO_MSG_SET_VALUE,
};

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

    use vm_memory::ByteValued;

    use super::*;
    use crate::protocol::VirtioGpioRequest;

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
