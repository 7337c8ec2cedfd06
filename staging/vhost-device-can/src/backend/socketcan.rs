// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A host CAN interface (a real controller or `vcan`) through one raw CAN
//! socket, opened with the `socketcan` crate.
//!
//! - One socket per guest: its own frames are never received back (the
//!   kernel delivers a socket's frames to the *other* sockets only, unless
//!   it asks for `CAN_RAW_RECV_OWN_MSGS`), which is upstream's #925.
//! - FD is offered when the interface's MTU is `CANFD_MTU`, not guessed
//!   from its name.
//! - Error frames are subscribed for bus-off only (`CAN_RAW_ERR_FILTER`).
//! - LATE_TX_ACK: with it negotiated the socket asks for its own frames
//!   back; the kernel marks those `MSG_CONFIRM` once the interface sent
//!   them, and each one completes the oldest pending TX.
//! - The socket is non-blocking and on the worker's epoll: no thread, no
//!   polling.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use vhost_device_common::IoError;

use socketcan::{CanFdSocket, Socket, SocketOptions};
use vhost_device_common::{EventRegistry, EventSet, RateLimited};

use super::{BackendEvent, CanBackend, Capabilities, TxAck};
use crate::error::{Error, Result};
use crate::frame::CanFrame;
use crate::protocol::CANFD_MAX_DLEN;

/// `can_id` flag bits and masks (linux/can.h).
const CAN_EFF_FLAG: u32 = 0x8000_0000;
const CAN_RTR_FLAG: u32 = 0x4000_0000;
const CAN_ERR_FLAG: u32 = 0x2000_0000;
const CAN_EFF_MASK: u32 = 0x1fff_ffff;
const CAN_SFF_MASK: u32 = 0x7ff;
/// Error class: bus-off (linux/can/error.h).
const CAN_ERR_BUSOFF: u32 = 0x40;
/// Sizes of `struct can_frame` and `struct canfd_frame`.
const CAN_MTU: usize = 16;
const CANFD_MTU: usize = 72;
/// Frames read per wake-up; the fd stays ready if more wait, so the
/// worker comes back after serving the queues.
const READ_BATCH: usize = 64;

/// `struct canfd_frame`; its first 16 bytes are a `struct can_frame`.
#[repr(C)]
#[derive(Clone, Copy)]
struct RawFrame {
    can_id: u32,
    len: u8,
    flags: u8,
    res0: u8,
    len8_dlc: u8,
    data: [u8; CANFD_MAX_DLEN],
}

const _: () = assert!(std::mem::size_of::<RawFrame>() == CANFD_MTU);

impl RawFrame {
    fn from_frame(frame: &CanFrame) -> Self {
        let mut can_id = frame.id;
        if frame.extended {
            can_id |= CAN_EFF_FLAG;
        }
        if frame.rtr {
            can_id |= CAN_RTR_FLAG;
        }
        RawFrame {
            can_id,
            len: frame.len,
            flags: 0,
            res0: 0,
            len8_dlc: 0,
            data: frame.data,
        }
    }

    fn to_frame(self, fd: bool) -> CanFrame {
        let extended = self.can_id & CAN_EFF_FLAG != 0;
        let id = self.can_id & if extended { CAN_EFF_MASK } else { CAN_SFF_MASK };
        let max = if fd { CANFD_MAX_DLEN } else { 8 };
        let len = usize::from(self.len).min(max);
        if !fd && self.can_id & CAN_RTR_FLAG != 0 {
            return CanFrame::remote(id, extended, u8::try_from(len).unwrap_or(0));
        }
        CanFrame::new(id, extended, fd, self.data.get(..len).unwrap_or(&[]))
    }
}

/// One host interface, for one guest.
#[derive(Debug)]
pub struct SocketCan {
    name: String,
    socket: CanFdSocket,
    fd_capable: bool,
    late_ack: bool,
    started: bool,
    /// Own frames sent and not yet echoed back.
    in_flight: usize,
    /// Echoes still to come for frames whose TX was already cancelled.
    stale: usize,
    log: RateLimited,
}

/// Whether interface `name` carries CAN FD frames (its MTU is CANFD_MTU).
pub fn interface_is_fd(name: &str) -> Result<bool> {
    let path = format!("/sys/class/net/{name}/mtu");
    let mtu = std::fs::read_to_string(&path).map_err(|e| IoError::new(path, e))?;
    Ok(mtu.trim().parse::<usize>().ok() == Some(CANFD_MTU))
}

impl SocketCan {
    /// Opens a raw socket on interface `name`.
    pub fn open(name: &str) -> Result<Self> {
        let what = |w: &str| format!("{name}: {w}");
        let fd_capable = interface_is_fd(name)?;
        let socket = CanFdSocket::open(name).map_err(|e| IoError::new(what("opening"), e))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| IoError::new(what("non-blocking"), e))?;
        socket
            .set_error_filter(CAN_ERR_BUSOFF)
            .map_err(|e| IoError::new(what("CAN_RAW_ERR_FILTER"), e))?;
        socket
            .set_recv_own_msgs(false)
            .map_err(|e| IoError::new(what("CAN_RAW_RECV_OWN_MSGS"), e))?;
        Ok(SocketCan {
            name: name.to_owned(),
            socket,
            fd_capable,
            late_ack: false,
            started: false,
            in_flight: 0,
            stale: 0,
            log: RateLimited::default(),
        })
    }

    /// Reads one frame: the frame, its size and whether it is our own echo.
    fn read(&self) -> io::Result<Option<(RawFrame, usize, bool)>> {
        let mut raw = RawFrame {
            can_id: 0,
            len: 0,
            flags: 0,
            res0: 0,
            len8_dlc: 0,
            data: [0; CANFD_MAX_DLEN],
        };
        let mut iov = libc::iovec {
            iov_base: (&raw mut raw).cast(),
            iov_len: CANFD_MTU,
        };
        // SAFETY: msghdr is plain data; all-zero is "no name, no control".
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        let fd: RawFd = self.socket.as_raw_fd();
        // SAFETY: `msg` points at one iovec over `raw`, both live across the
        // call and sized as the iovec says.
        let n = unsafe { libc::recvmsg(fd, &raw mut msg, libc::MSG_DONTWAIT) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(None),
                _ => Err(e),
            };
        }
        let own = msg.msg_flags & libc::MSG_CONFIRM != 0;
        Ok(Some((raw, usize::try_from(n).unwrap_or(0), own)))
    }
}

impl SocketCan {
    /// Writes one frame of `size` bytes.
    fn write(&self, raw: &RawFrame, size: usize) -> io::Result<()> {
        // SAFETY: writes `size` (≤ 72) bytes from `raw`, which is 72 bytes.
        let n = unsafe { libc::write(self.socket.as_raw_fd(), (&raw const *raw).cast(), size) };
        if usize::try_from(n).ok() == Some(size) {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Binds the socket again to the interface named as at start-up. The fd
    /// stays the same, so its epoll registration and its flags (own
    /// messages) stay too; the filters are set again. The name is looked up
    /// with an ioctl on the socket itself (no sysfs, which the sandbox may
    /// hide).
    fn rebind(&self) -> io::Result<()> {
        let fd = self.socket.as_raw_fd();
        // SAFETY: `ifreq` is plain data; all-zero is an empty request.
        let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
        let name = self.name.as_bytes();
        if name.len() >= request.ifr_name.len() {
            return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
        }
        for (to, &from) in request.ifr_name.iter_mut().zip(name) {
            *to = libc::c_char::from_ne_bytes([from]);
        }
        // The request's type differs between libcs (c_ulong on glibc, c_int
        // on musl).
        #[allow(clippy::useless_conversion)]
        let siocgifindex = libc::SIOCGIFINDEX.try_into().unwrap_or_default();
        // SAFETY: SIOCGIFINDEX reads the NUL-terminated name in `request`
        // and writes the index into it.
        if unsafe { libc::ioctl(fd, siocgifindex, &raw mut request) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `sockaddr_can` is plain data; all-zero is a valid start.
        let mut addr: libc::sockaddr_can = unsafe { std::mem::zeroed() };
        addr.can_family = libc::sa_family_t::try_from(libc::AF_CAN).unwrap_or_default();
        // SAFETY: SIOCGIFINDEX filled in the index member of the union.
        addr.can_ifindex = unsafe { request.ifr_ifru.ifru_ifindex };
        let len = libc::socklen_t::try_from(std::mem::size_of::<libc::sockaddr_can>())
            .unwrap_or_default();
        // SAFETY: `addr` is a `sockaddr_can` of `len` bytes.
        if unsafe { libc::bind(fd, (&raw const addr).cast(), len) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // The kernel dropped the receive filters with the interface: without
        // them the socket would receive nothing, not even its own frames.
        self.socket.set_filter_accept_all()?;
        self.socket.set_error_filter(CAN_ERR_BUSOFF)?;
        Ok(())
    }
}

impl CanBackend for SocketCan {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fd: self.fd_capable,
            late_tx_ack: true,
        }
    }

    fn activate(&mut self, events: &EventRegistry, token: u16) -> Result<()> {
        events
            .register(&self.socket, EventSet::IN, token)
            .map_err(|e| IoError::new(format!("{}: epoll", self.name), e).into())
    }

    fn set_late_tx_ack(&mut self, on: bool) {
        if let Err(e) = self.socket.set_recv_own_msgs(on) {
            self.log
                .warn(|| format!("{}: CAN_RAW_RECV_OWN_MSGS: {e}", self.name));
            return;
        }
        self.late_ack = on;
    }

    fn set_started(&mut self, started: bool) {
        self.started = started;
        if !started {
            // The device cancels the pending TX; their echoes may still come.
            self.stale += self.in_flight;
            self.in_flight = 0;
        }
    }

    fn send(&mut self, frame: &CanFrame) -> Result<TxAck> {
        if frame.fd && !self.fd_capable {
            return Err(Error::NotNegotiated("CAN FD"));
        }
        let raw = RawFrame::from_frame(frame);
        let size = if frame.fd { CANFD_MTU } else { CAN_MTU };
        let mut sent = self.write(&raw, size);
        if let Err(e) = &sent {
            // The interface was deleted, so the kernel unbound the socket;
            // if one of that name exists again, take it.
            if matches!(e.raw_os_error(), Some(libc::ENXIO | libc::ENODEV)) && self.rebind().is_ok()
            {
                self.log
                    .warn(|| format!("{}: the interface is back; bound to it again", self.name));
                sent = self.write(&raw, size);
            }
        }
        // ENOBUFS: the interface's queue is full; ENETDOWN: it is down;
        // ENXIO: it is gone. The frame is lost, as the driver is told.
        sent.map_err(Error::Send)?;
        if self.late_ack {
            self.in_flight += 1;
            Ok(TxAck::Later)
        } else {
            Ok(TxAck::Done)
        }
    }

    fn poll(&mut self, sink: &mut dyn FnMut(BackendEvent)) {
        for _ in 0..READ_BATCH {
            let (raw, size, own) = match self.read() {
                Ok(Some(read)) => read,
                Ok(None) => return,
                Err(e) => {
                    self.log.warn(|| format!("{}: read: {e}", self.name));
                    return;
                }
            };
            if raw.can_id & CAN_ERR_FLAG != 0 {
                if raw.can_id & CAN_ERR_BUSOFF != 0 {
                    sink(BackendEvent::BusOff);
                }
                continue;
            }
            if own {
                if self.stale > 0 {
                    self.stale -= 1;
                } else if self.in_flight > 0 {
                    self.in_flight -= 1;
                    sink(BackendEvent::Sent(true));
                }
                continue;
            }
            if self.started && (size == CAN_MTU || size == CANFD_MTU) {
                sink(BackendEvent::Frame(raw.to_frame(size == CANFD_MTU)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_frames_round_trip() {
        for frame in [
            CanFrame::new(0x123, false, false, &[1, 2, 3]),
            CanFrame::new(0x1234_5678, true, false, &[9; 8]),
            CanFrame::new(0x7ff, false, true, &[7; 64]),
            CanFrame::remote(0x55, false, 4),
            CanFrame::remote(0x1abc_def0, true, 8),
        ] {
            let raw = RawFrame::from_frame(&frame);
            assert_eq!(raw.to_frame(frame.fd), frame);
        }
    }
}
