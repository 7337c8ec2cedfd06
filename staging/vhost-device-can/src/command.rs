// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Typed decode of the two driver-to-device queues: each request is read
//! and checked once here, and the device only sees a valid
//! [`ControlCommand`] or [`CanFrame`].

use std::mem::size_of;

use vhost_device_common::{ChainError, Reader};
use vm_memory::{ByteValued, GuestMemory};

use crate::error::{Error, Result};
use crate::frame::{is_fd_length, CanFrame};
use crate::protocol::{
    virtio_can_control_out, virtio_can_tx_out, CANFD_MAX_DLEN, CAN_EFF_MAX, CAN_MAX_DLEN,
    CAN_SFF_MAX, VIRTIO_CAN_FLAGS_EXTENDED, VIRTIO_CAN_FLAGS_FD, VIRTIO_CAN_FLAGS_KNOWN,
    VIRTIO_CAN_FLAGS_RTR, VIRTIO_CAN_F_CAN_CLASSIC, VIRTIO_CAN_F_CAN_FD, VIRTIO_CAN_F_RTR_FRAMES,
    VIRTIO_CAN_SET_CTRL_MODE_START, VIRTIO_CAN_SET_CTRL_MODE_STOP, VIRTIO_CAN_TX,
};

/// A control-queue request (§"Controller Mode").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlCommand {
    /// `VIRTIO_CAN_SET_CTRL_MODE_START`.
    Start,
    /// `VIRTIO_CAN_SET_CTRL_MODE_STOP`.
    Stop,
}

impl ControlCommand {
    /// Reads one `virtio_can_control_out`.
    pub fn decode<M: GuestMemory + ?Sized>(reader: &mut Reader<'_, M>) -> Result<Self> {
        let out: virtio_can_control_out = reader.read_obj()?;
        match out.msg_type.to_native() {
            VIRTIO_CAN_SET_CTRL_MODE_START => Ok(ControlCommand::Start),
            VIRTIO_CAN_SET_CTRL_MODE_STOP => Ok(ControlCommand::Stop),
            other => Err(Error::UnknownMessage(other)),
        }
    }
}

/// Reads one `virtio_can_tx_out` and its payload, and checks it against the
/// negotiated `features` (§"CAN Message Transmission": a frame of a kind
/// not negotiated, with undefined flags, or with its ID or length out of
/// range is rejected and never sent).
pub fn decode_tx<M: GuestMemory + ?Sized>(
    reader: &mut Reader<'_, M>,
    features: u64,
) -> Result<CanFrame> {
    // Header and payload in one read of guest memory: a frame is at most
    // 80 bytes, and anything past that (an RTR's unused payload area, say)
    // has no meaning.
    const HEADER: usize = size_of::<virtio_can_tx_out>();
    let mut buf = [0u8; HEADER + CANFD_MAX_DLEN];
    let n = reader.available().min(buf.len());
    let bytes = buf.get_mut(..n).unwrap_or_default();
    let bytes: &mut [u8] = bytes;
    reader.read_exact(bytes)?;
    let out = bytes
        .get(..HEADER)
        .and_then(|h| virtio_can_tx_out::from_slice(h).copied())
        .ok_or(ChainError::ShortRead {
            wanted: HEADER,
            available: n,
        })?;
    let msg_type = out.msg_type.to_native();
    if msg_type != VIRTIO_CAN_TX {
        return Err(Error::UnknownMessage(msg_type));
    }
    let length = out.length.to_native();
    let mut frame = frame_from_wire(out.flags.to_native(), out.can_id.to_native(), length)?;
    check_negotiated(&frame, features)?;
    // An RTR request's payload area may be present; the spec gives it no
    // meaning, so it is not copied.
    if !frame.rtr {
        let len = usize::from(frame.len);
        let payload = bytes
            .get(HEADER..HEADER + len)
            .ok_or(ChainError::ShortRead {
                wanted: HEADER + len,
                available: n,
            })?;
        if let Some(dst) = frame.data.get_mut(..len) {
            dst.copy_from_slice(payload);
        }
    }
    Ok(frame)
}

/// Builds an empty frame from the wire's `flags`, `can_id` and `length`,
/// checking everything that does not depend on negotiation.
fn frame_from_wire(flags: u32, id: u32, length: u16) -> Result<CanFrame> {
    let undefined = flags & !VIRTIO_CAN_FLAGS_KNOWN;
    if undefined != 0 {
        return Err(Error::UndefinedFlags(undefined));
    }
    let extended = flags & VIRTIO_CAN_FLAGS_EXTENDED != 0;
    let fd = flags & VIRTIO_CAN_FLAGS_FD != 0;
    let rtr = flags & VIRTIO_CAN_FLAGS_RTR != 0;
    if rtr && fd {
        return Err(Error::RtrWithFd);
    }
    let max_id = if extended { CAN_EFF_MAX } else { CAN_SFF_MAX };
    if id > max_id {
        return Err(Error::IdOutOfRange { id, extended });
    }
    let len = usize::from(length);
    let (ok, kind) = match (fd, rtr) {
        (true, _) => (is_fd_length(len), "FD"),
        (false, true) => (len <= CAN_MAX_DLEN, "RTR"),
        (false, false) => (len <= CAN_MAX_DLEN, "classic"),
    };
    if !ok {
        return Err(Error::LengthOutOfRange { len: length, kind });
    }
    let len = u8::try_from(length).map_err(|_| Error::LengthOutOfRange { len: length, kind })?;
    let mut frame = if rtr {
        CanFrame::remote(id, extended, len)
    } else {
        CanFrame::new(id, extended, fd, &[])
    };
    frame.len = len;
    Ok(frame)
}

/// Whether the driver negotiated `frame`'s kind. Frames from the host side
/// go through this too: a guest never receives a kind it did not ask for.
pub fn check_negotiated(frame: &CanFrame, features: u64) -> Result<()> {
    if frame.fd && features & VIRTIO_CAN_F_CAN_FD == 0 {
        return Err(Error::NotNegotiated("CAN FD"));
    }
    if !frame.fd && features & VIRTIO_CAN_F_CAN_CLASSIC == 0 {
        return Err(Error::NotNegotiated("classic CAN"));
    }
    if frame.rtr && features & VIRTIO_CAN_F_RTR_FRAMES == 0 {
        return Err(Error::NotNegotiated("RTR"));
    }
    Ok(())
}
