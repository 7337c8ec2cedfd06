// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A channel linking two guests.
//!
//! The daemon makes one `SOCK_SEQPACKET` socket pair per linked channel at
//! start-up and keeps both ends, so the link outlives either guest's
//! connection: guest 0's device sends into one end, guest 1's device reads
//! from the other, and back. Each guest then sees the other as the remote
//! processor behind that channel.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use socket2::{Domain, Socket, Type};

use super::mmsg::HostBuf;
use super::unix::{recv, recv_many, send, send_many};
use super::Port;

/// Both ends of one link, held for the daemon's lifetime.
#[derive(Debug)]
pub struct Link {
    ends: [Socket; 2],
}

impl Link {
    /// A new pair.
    pub fn new() -> io::Result<Self> {
        let (a, b) = Socket::pair(Domain::UNIX, Type::SEQPACKET, None)?;
        a.set_nonblocking(true)?;
        b.set_nonblocking(true)?;
        Ok(Link { ends: [a, b] })
    }

    /// The port of guest `side` (0 or 1).
    pub fn port(&self, side: usize) -> io::Result<LinkPort> {
        let end = self
            .ends
            .get(side)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "a link has two sides"))?;
        Ok(LinkPort {
            end: end.try_clone()?,
        })
    }
}

/// One guest's end of a [`Link`].
#[derive(Debug)]
pub struct LinkPort {
    end: Socket,
}

impl Port for LinkPort {
    fn connection(&self) -> Option<RawFd> {
        Some(self.end.as_raw_fd())
    }

    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        send(Some(&self.end), msg)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // The daemon holds both ends, so the link never hangs up.
        recv(Some(&self.end), buf)
    }

    fn send_many(&mut self, msgs: &[&[u8]]) -> io::Result<usize> {
        send_many(Some(&self.end), msgs)
    }

    fn recv_many(&mut self, bufs: &mut [HostBuf], lens: &mut [usize]) -> io::Result<usize> {
        recv_many(Some(&self.end), bufs, lens)
    }
}
