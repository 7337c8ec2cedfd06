// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The host side of a channel: where the guest's messages go and where the
//! device's come from.
//!
//! - [`unix`]: a listening `SOCK_SEQPACKET` Unix socket; one host program at
//!   a time connects, and each socket message is one rpmsg message.
//! - [`link`]: one end of a socket pair whose other end is the same channel
//!   of another guest (`--socket-count 2`).
//! - [`echo`]: a simulated remote processor that sends every message back,
//!   for tests and benchmarks with no host program.
//!
//! Every port is non-blocking and exposes its fds, so the device puts them on
//! the vring worker's epoll: nothing polls.

pub mod echo;
pub mod link;
pub mod mmsg;
pub mod unix;

use std::fmt;
use std::io;
use std::os::fd::RawFd;

use mmsg::HostBuf;

/// The host side of one channel.
pub trait Port: Send + fmt::Debug {
    /// A listening fd to watch for new host peers, if the port has one.
    fn listener(&self) -> Option<RawFd> {
        None
    }

    /// Accepts a pending host peer, replacing the current one (a host
    /// program that reconnects takes over its channel). Returns whether one
    /// was accepted.
    fn accept(&mut self) -> io::Result<bool> {
        Ok(false)
    }

    /// The fd of the current host peer, if any: readable when a message
    /// waits, writable when one can be sent.
    fn connection(&self) -> Option<RawFd>;

    /// Sends one message. `WouldBlock` when the peer is slow, `NotConnected`
    /// when there is none.
    fn send(&mut self, msg: &[u8]) -> io::Result<()>;

    /// Receives one message into `buf`; returns its length, which may exceed
    /// `buf.len()` only in the sense that a message longer than the MTU fills
    /// `buf` (make `buf` longer than the MTU to tell). `WouldBlock` when none
    /// waits; `Ok(None)` when the peer hung up.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>>;

    /// Sends `msgs` in order, as many as the peer takes now; returns how
    /// many, at least one. `WouldBlock` if it takes none, `NotConnected`
    /// when there is no peer. Ports on a socket do it in one system call.
    fn send_many(&mut self, msgs: &[&[u8]]) -> io::Result<usize> {
        let mut sent = 0;
        for msg in msgs {
            match self.send(msg) {
                Ok(()) => sent += 1,
                Err(e) if sent == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(sent)
    }

    /// Receives up to `bufs.len()` messages, writing each one's length (as
    /// [`Port::recv`] counts it) to `lens`; returns how many, at least one.
    /// `WouldBlock` when none waits. A length of 0 is the peer's hang-up,
    /// and ends the batch.
    fn recv_many(&mut self, bufs: &mut [HostBuf], lens: &mut [usize]) -> io::Result<usize> {
        let mut got = 0;
        for (buf, len) in bufs.iter_mut().zip(lens.iter_mut()) {
            match self.recv(buf) {
                Ok(n) => {
                    *len = n.unwrap_or(0);
                    got += 1;
                    if n.is_none() {
                        break;
                    }
                }
                Err(e) if got == 0 => return Err(e),
                Err(_) => break,
            }
        }
        Ok(got)
    }

    /// Forgets the current host peer (it hung up or failed).
    fn disconnect(&mut self) {}
}
