// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Host file descriptors on the vring worker's epoll.
//!
//! A device that waits for the host (a CAN socket, a GPIO line, a timer)
//! registers the fd here with a token of its own. When the fd is ready, the
//! same worker thread that handles the queues calls
//! [`crate::VirtioDevice::handle_event`] with that token, so host events and
//! guest requests are handled in order, with no extra thread and no polling.
//!
//! The worker's epoll data values are shared out here, and only here:
//! `0..num_queues` are the queues' kicks (vhost-user-backend's own),
//! `num_queues` is vhost-user-backend's exit event, device tokens follow,
//! and `STOP_TOKEN` is the core's stop event. `decode` maps a value back.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use vmm_sys_util::epoll::EventSet;

/// Epoll data value of the worker's stop event. Device tokens stay below it
/// (see [`EventRegistry::max_token`]).
pub(crate) const STOP_TOKEN: u16 = u16::MAX;

/// What an epoll data value of a worker stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// The driver kicked this queue.
    Queue(usize),
    /// A host fd the device registered with this token is ready.
    Device(u16),
    /// The core asked the worker to end.
    Stop,
    /// Nothing the core or the device registered.
    Unknown,
}

/// The first device token's data value for a device with `num_queues` queues.
fn token_base(num_queues: usize) -> Option<u16> {
    u16::try_from(num_queues.checked_add(1)?).ok()
}

/// Maps epoll data value `data` of a worker serving `num_queues` queues back
/// to what was registered with it.
pub(crate) fn decode(data: u16, num_queues: usize) -> Event {
    if data == STOP_TOKEN {
        return Event::Stop;
    }
    if usize::from(data) < num_queues {
        return Event::Queue(usize::from(data));
    }
    match token_base(num_queues).and_then(|base| data.checked_sub(base)) {
        Some(token) => Event::Device(token),
        None => Event::Unknown,
    }
}

/// Registers host fds on one connection's worker epoll.
///
/// It holds its own duplicate of the epoll fd, not the worker itself, so a
/// device keeping it does not keep the worker alive after the frontend leaves.
#[derive(Debug)]
pub struct EventRegistry {
    epoll: OwnedFd,
    /// Epoll data values up to and including the queue count are the
    /// worker's own; device tokens start after them.
    base: u16,
}

impl EventRegistry {
    /// Wraps a duplicate of the worker's epoll fd. `num_queues` is the
    /// device's queue count. The daemon builds these; it is public so a
    /// device's unit tests can hand one over an epoll of their own.
    pub fn new(epoll: BorrowedFd<'_>, num_queues: usize) -> io::Result<Self> {
        let base = token_base(num_queues)
            .filter(|&base| base < STOP_TOKEN)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "too many queues"))?;
        Ok(EventRegistry {
            epoll: epoll.try_clone_to_owned()?,
            base,
        })
    }

    /// The largest token a device may use. The value above the last one is
    /// the core's own stop event.
    pub fn max_token(&self) -> u16 {
        STOP_TOKEN - 1 - self.base
    }

    fn data(&self, token: u16) -> io::Result<u64> {
        if token > self.max_token() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "event token too large",
            ));
        }
        Ok(u64::from(token + self.base))
    }

    /// Registers `fd` with a raw epoll data value, for the core's own events.
    pub(crate) fn register_raw(
        &self,
        fd: &impl AsRawFd,
        events: EventSet,
        data: u16,
    ) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: events.bits(),
            u64: u64::from(data),
        };
        self.epoll_ctl(libc::EPOLL_CTL_ADD, fd.as_raw_fd(), &mut event)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: EventSet, token: u16) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: events.bits(),
            u64: self.data(token)?,
        };
        self.epoll_ctl(op, fd, &mut event)
    }

    fn epoll_ctl(
        &self,
        op: libc::c_int,
        fd: RawFd,
        event: &mut libc::epoll_event,
    ) -> io::Result<()> {
        // SAFETY: both fds are valid for the duration of the call, and
        // `event` is a properly initialised epoll_event that outlives it.
        let ret = unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, event) };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Watches `fd` for `events`; readiness is reported with `token`.
    pub fn register(&self, fd: &impl AsRawFd, events: EventSet, token: u16) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd.as_raw_fd(), events, token)
    }

    /// Changes the events watched on an fd already registered.
    pub fn modify(&self, fd: &impl AsRawFd, events: EventSet, token: u16) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd.as_raw_fd(), events, token)
    }

    /// Stops watching `fd`. Call it before closing the fd.
    pub fn unregister(&self, fd: &impl AsRawFd) -> io::Result<()> {
        self.ctl(libc::EPOLL_CTL_DEL, fd.as_raw_fd(), EventSet::empty(), 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_values_decode_to_what_was_registered() {
        assert_eq!(decode(0, 2), Event::Queue(0));
        assert_eq!(decode(1, 2), Event::Queue(1));
        // vhost-user-backend's exit event, which the core does not use.
        assert_eq!(decode(2, 2), Event::Unknown);
        assert_eq!(decode(3, 2), Event::Device(0));
        assert_eq!(decode(STOP_TOKEN - 1, 2), Event::Device(STOP_TOKEN - 4));
        assert_eq!(decode(STOP_TOKEN, 2), Event::Stop);
    }
}
