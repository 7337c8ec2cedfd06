// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A channel's host port together with what the worker's epoll watches of
//! it, and the event tokens that name them.

use std::io;
use std::os::fd::RawFd;

use vhost_device_common::{EventRegistry, EventSet};

use crate::backend::Port;

/// Event tokens: 0 is the re-announce timer, then two per channel slot
/// (its listener, its connection).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Tokens {
    /// The re-announce timer.
    Timer,
    /// Slot's listening socket.
    Listener(usize),
    /// Slot's host peer.
    Connection(usize),
}

impl Tokens {
    /// The token of an event source.
    pub fn encode(self) -> u16 {
        let raw = match self {
            Tokens::Timer => 0,
            Tokens::Listener(slot) => 1 + 2 * slot,
            Tokens::Connection(slot) => 2 + 2 * slot,
        };
        u16::try_from(raw).unwrap_or(u16::MAX)
    }

    /// The event source of a token.
    pub fn decode(token: u16) -> Self {
        match usize::from(token) {
            0 => Tokens::Timer,
            t if t % 2 == 1 => Tokens::Listener((t - 1) / 2),
            t => Tokens::Connection((t - 2) / 2),
        }
    }
}

/// A port and the epoll state of its connection.
#[derive(Debug)]
pub struct PortSlot {
    /// The port.
    pub port: Box<dyn Port>,
    /// The fd registered for the connection and with which events; `None`
    /// when it is not on the epoll.
    registered: Option<(RawFd, EventSet)>,
    /// The peer hung up but may still have messages for the guest.
    pub hung_up: bool,
}

impl PortSlot {
    /// A port not yet on any epoll.
    pub fn new(port: Box<dyn Port>) -> Self {
        PortSlot {
            port,
            registered: None,
            hung_up: false,
        }
    }

    /// Puts the listener, if any, on the epoll.
    pub fn register_listener(&self, events: &EventRegistry, slot: usize) -> io::Result<()> {
        match self.port.listener() {
            Some(fd) => events.register(&fd, EventSet::IN, Tokens::Listener(slot).encode()),
            None => Ok(()),
        }
    }

    /// Makes the epoll watch the connection for `want` (IN, OUT). A live
    /// connection stays registered even with nothing wanted, so its hang-up
    /// is seen; one that hung up is taken off when nothing is wanted, or its
    /// level-triggered HUP would wake the worker for ever.
    pub fn watch(&mut self, events: &EventRegistry, slot: usize, want: EventSet) -> io::Result<()> {
        let token = Tokens::Connection(slot).encode();
        let fd = self.port.connection();
        let keep = fd.is_some() && !(self.hung_up && want.is_empty());
        match (self.registered, fd) {
            (Some((old, _)), Some(fd)) if old == fd && keep => {
                if self.registered != Some((fd, want)) {
                    events.modify(&fd, want, token)?;
                    self.registered = Some((fd, want));
                }
            }
            (registered, fd) => {
                if let Some((old, _)) = registered {
                    // The fd may already be closed (a replaced peer): then
                    // the kernel removed it and this fails harmlessly.
                    let _ = events.unregister(&old);
                    self.registered = None;
                }
                if let (Some(fd), true) = (fd, keep) {
                    events.register(&fd, want, token)?;
                    self.registered = Some((fd, want));
                }
            }
        }
        Ok(())
    }

    /// The connection was closed or replaced: its fd left the epoll with it.
    pub fn forget_connection(&mut self) {
        self.registered = None;
        self.hung_up = false;
    }

    /// Takes everything of this port off the epoll (before dropping it).
    pub fn unregister(&mut self, events: &EventRegistry) {
        if let Some((fd, _)) = self.registered.take() {
            let _ = events.unregister(&fd);
        }
        if let Some(fd) = self.port.listener() {
            let _ = events.unregister(&fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for t in [
            Tokens::Timer,
            Tokens::Listener(0),
            Tokens::Connection(0),
            Tokens::Listener(7),
            Tokens::Connection(40),
        ] {
            assert_eq!(Tokens::decode(t.encode()), t);
        }
    }
}
