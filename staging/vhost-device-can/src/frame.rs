// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! One CAN frame as both host sides carry it.

use crate::protocol::{
    CANFD_MAX_DLEN, VIRTIO_CAN_FLAGS_EXTENDED, VIRTIO_CAN_FLAGS_FD, VIRTIO_CAN_FLAGS_RTR,
};

/// A classic, RTR or FD frame, checked against the spec's ranges when it
/// was built.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CanFrame {
    /// The identifier, without flag bits.
    pub id: u32,
    /// A 29-bit identifier.
    pub extended: bool,
    /// A CAN FD frame.
    pub fd: bool,
    /// A remote transmission request (classic only).
    pub rtr: bool,
    /// Payload length; for RTR, the requested DLC (no payload).
    pub len: u8,
    /// The payload; bytes past `len` are zero.
    pub data: [u8; CANFD_MAX_DLEN],
}

impl CanFrame {
    /// A data frame. `data` longer than 64 bytes is cut.
    pub fn new(id: u32, extended: bool, fd: bool, data: &[u8]) -> Self {
        let mut frame = CanFrame {
            id,
            extended,
            fd,
            rtr: false,
            len: 0,
            data: [0; CANFD_MAX_DLEN],
        };
        let n = data.len().min(CANFD_MAX_DLEN);
        if let (Some(dst), Some(src)) = (frame.data.get_mut(..n), data.get(..n)) {
            dst.copy_from_slice(src);
        }
        frame.len = u8::try_from(n).unwrap_or(0);
        frame
    }

    /// A remote request for `dlc` bytes.
    pub fn remote(id: u32, extended: bool, dlc: u8) -> Self {
        CanFrame {
            id,
            extended,
            fd: false,
            rtr: true,
            len: dlc,
            data: [0; CANFD_MAX_DLEN],
        }
    }

    /// The payload (empty for RTR).
    pub fn payload(&self) -> &[u8] {
        if self.rtr {
            return &[];
        }
        self.data.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// The spec's `flags` for this frame.
    pub fn flags(&self) -> u32 {
        let mut flags = 0;
        if self.extended {
            flags |= VIRTIO_CAN_FLAGS_EXTENDED;
        }
        if self.fd {
            flags |= VIRTIO_CAN_FLAGS_FD;
        }
        if self.rtr {
            flags |= VIRTIO_CAN_FLAGS_RTR;
        }
        flags
    }
}

impl std::fmt::Debug for CanFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let width = if self.extended { 8 } else { 3 };
        write!(f, "{:0width$X}", self.id)?;
        match (self.fd, self.rtr) {
            (_, true) => write!(f, "#R{}", self.len),
            (true, _) => write!(f, "##"),
            _ => write!(f, "#"),
        }?;
        for b in self.payload() {
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

/// Whether `len` is a payload length a CAN FD frame can carry (a DLC's
/// length: 0..8, 12, 16, 20, 24, 32, 48, 64).
pub fn is_fd_length(len: usize) -> bool {
    matches!(len, 0..=8 | 12 | 16 | 20 | 24 | 32 | 48 | 64)
}
