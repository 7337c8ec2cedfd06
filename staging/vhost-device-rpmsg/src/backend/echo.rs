// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A simulated remote processor that answers every message with itself.
//!
//! It needs no host program, so a guest (or a benchmark) can talk to the
//! device alone. Its queue is bounded like a socket buffer: when full, sends
//! report `WouldBlock` and the device's own bounded queue takes over.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK, EFD_SEMAPHORE};

use super::Port;

/// Messages the echo holds before it pushes back.
pub const ECHO_DEPTH: usize = 256;

/// The echo port. An eventfd counts the messages waiting, so the device
/// finds them through epoll like a socket's.
#[derive(Debug)]
pub struct EchoPort {
    waiting: VecDeque<Vec<u8>>,
    ready: EventFd,
}

impl EchoPort {
    /// An empty echo.
    pub fn new() -> io::Result<Self> {
        Ok(EchoPort {
            waiting: VecDeque::new(),
            ready: EventFd::new(EFD_NONBLOCK | EFD_SEMAPHORE)?,
        })
    }
}

impl Port for EchoPort {
    fn connection(&self) -> Option<RawFd> {
        Some(self.ready.as_raw_fd())
    }

    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        if self.waiting.len() >= ECHO_DEPTH {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.ready.write(1)?;
        self.waiting.push_back(msg.to_vec());
        Ok(())
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.ready.read()?;
        let msg = self.waiting.pop_front().unwrap_or_default();
        let n = msg.len().min(buf.len());
        if let (Some(dst), Some(src)) = (buf.get_mut(..n), msg.get(..n)) {
            dst.copy_from_slice(src);
        }
        Ok(Some(msg.len()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn echoes_in_order_and_pushes_back() {
        let mut echo = EchoPort::new().unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(
            echo.recv(&mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        echo.send(b"ab").unwrap();
        echo.send(b"c").unwrap();
        assert_eq!(echo.recv(&mut buf).unwrap(), Some(2));
        assert_eq!(&buf[..2], b"ab");
        assert_eq!(echo.recv(&mut buf).unwrap(), Some(1));
        for _ in 0..ECHO_DEPTH {
            echo.send(b"x").unwrap();
        }
        assert_eq!(
            echo.send(b"x").unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
    }
}
