// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! rpmsg: a message round trip through the device, from the driver's TX
//! queue out to a host program on the channel's Unix socket and back into
//! an RX buffer.
//!
//! The wire format (16-byte little-endian header, name service at address
//! 53) is written here from Linux's `virtio_rpmsg_bus.c`, not taken from
//! our device crate. A "request" of the load runs is one message there and
//! back: posted on TX, completed when its echo fills an RX buffer.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, SockAddr, Socket, Type};
use vhost_device_common::testing::{TestFrontend, TestQueue, Used};

use crate::error::{Error, Result};
use crate::load::{drain_eventfd, wait_readable, Driver};

const NS_ADDR: u32 = 53;
/// The guest endpoint the bench plays.
const GUEST_ADDR: u32 = 1024;
/// The channel the daemon is started with (see the device table).
pub const CHANNEL_ADDR: u32 = 0x401;
const BUF_SIZE: u32 = 512;
const PAYLOAD: &[u8; 16] = b"bench-rpmsg-0123";

/// The channel socket of a daemon whose vhost-user socket is `socket`:
/// the device table starts it at `{socket}.peer`.
pub fn peer_path(socket: &Path) -> PathBuf {
    let mut p = socket.as_os_str().to_owned();
    p.push(".peer");
    PathBuf::from(p)
}

fn message(src: u32, dst: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + payload.len());
    v.extend(src.to_le_bytes());
    v.extend(dst.to_le_bytes());
    v.extend(0u32.to_le_bytes());
    v.extend(
        u16::try_from(payload.len())
            .unwrap_or(u16::MAX)
            .to_le_bytes(),
    );
    v.extend(0u16.to_le_bytes());
    v.extend_from_slice(payload);
    v
}

fn field(data: &[u8], at: usize) -> Option<u32> {
    data.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map(u32::from_le_bytes)
}

/// The host program: echoes every message on the channel socket from its
/// own thread until the daemon hangs up or it is stopped.
#[derive(Debug)]
pub struct Peer {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Peer {
    /// Connects to the channel socket at `path`.
    pub fn start(path: &Path) -> Result<Self> {
        let stream = seqpacket_connect(path)?;
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| Error::io("peer read timeout", e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 512];
            let mut s = &stream;
            while !flag.load(Ordering::Relaxed) {
                match s.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        let Some(msg) = buf.get(..n) else { return };
                        if std::io::Write::write(&mut s, msg).is_err() {
                            return;
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => return,
                }
            }
        });
        Ok(Peer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn seqpacket_connect(path: &Path) -> Result<Socket> {
    let addr = SockAddr::unix(path).map_err(|e| Error::io("socket address", e))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s =
            Socket::new(Domain::UNIX, Type::SEQPACKET, None).map_err(|e| Error::io("socket", e))?;
        match s.connect(&addr) {
            Ok(()) => return Ok(s),
            Err(e) if Instant::now() > deadline => {
                return Err(Error::io(format!("connecting to {}", path.display()), e))
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Drives the two queues: TX messages out, their echoes into RX buffers.
#[derive(Debug)]
pub struct RpmsgDriver<'a> {
    rx: &'a mut TestQueue,
    tx: &'a mut TestQueue,
    tx_msg: Vec<u8>,
    in_flight: usize,
    used: Used,
}

/// Posts RX buffers, takes the name-service announcement, and teaches the
/// device the bench's endpoint with one message and its echo.
pub fn prepare(fe: &mut TestFrontend) -> Result<RpmsgDriver<'_>> {
    // Queue 0 is the driver's RX, queue 1 its TX.
    let (rx, rest) = fe
        .queues_mut()
        .split_first_mut()
        .ok_or_else(|| Error::Failed("rpmsg needs two queues".into()))?;
    let tx = rest
        .first_mut()
        .ok_or_else(|| Error::Failed("rpmsg needs two queues".into()))?;
    let slots = usize::from(rx.size());
    for _ in 0..slots {
        rx.add(&[], &[BUF_SIZE])
            .map_err(Error::frontend("posting an RX buffer"))?;
    }
    rx.kick().map_err(Error::frontend("kicking RX"))?;
    let ns = rx
        .wait_used(Duration::from_secs(5))
        .map_err(Error::frontend("waiting for the announcement"))?;
    if field(&ns.data, 4) != Some(NS_ADDR) || field(&ns.data, 48) != Some(CHANNEL_ADDR) {
        return Err(Error::BadReply {
            scenario: "rpmsg",
            request: "name-service announcement",
            len: ns.len,
            bytes: ns.data,
        });
    }
    rx.add(&[], &[BUF_SIZE])
        .map_err(Error::frontend("posting an RX buffer"))?;
    let mut d = RpmsgDriver {
        rx,
        tx,
        tx_msg: message(GUEST_ADDR, CHANNEL_ADDR, PAYLOAD),
        in_flight: 0,
        used: Used {
            data: Vec::with_capacity(1024),
            ..Used::default()
        },
    };
    d.post()?;
    d.kick()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.in_flight() > 0 {
        if Instant::now() > deadline {
            return Err(Error::Stalled(Duration::from_secs(5), 1));
        }
        if d.reap()? == 0 {
            d.wait(Duration::from_secs(5))?;
        }
    }
    Ok(d)
}

impl Driver for RpmsgDriver<'_> {
    fn post(&mut self) -> Result<()> {
        self.tx
            .add(&[&self.tx_msg], &[])
            .map_err(Error::frontend("posting a message"))?;
        self.in_flight += 1;
        Ok(())
    }

    fn kick(&mut self) -> Result<()> {
        self.tx
            .kick()
            .map(|_| ())
            .map_err(Error::frontend("kicking TX"))
    }

    fn reap(&mut self) -> Result<usize> {
        // TX buffers come back at once and carry nothing.
        while self
            .tx
            .try_used_into(&mut self.used)
            .map_err(Error::frontend("reading the TX used ring"))?
        {}
        let mut n = 0;
        while self
            .rx
            .try_used_into(&mut self.used)
            .map_err(Error::frontend("reading the RX used ring"))?
        {
            let ok = self.used.len == 32
                && field(&self.used.data, 0) == Some(CHANNEL_ADDR)
                && field(&self.used.data, 4) == Some(GUEST_ADDR)
                && self.used.data.get(16..32) == Some(&PAYLOAD[..]);
            if !ok {
                return Err(Error::BadReply {
                    scenario: "rpmsg",
                    request: "echo",
                    len: self.used.len,
                    bytes: self.used.data.clone(),
                });
            }
            self.in_flight = self
                .in_flight
                .checked_sub(1)
                .ok_or_else(|| Error::Protocol("an echo with nothing in flight".into()))?;
            self.rx
                .add(&[], &[BUF_SIZE])
                .map_err(Error::frontend("re-posting an RX buffer"))?;
            n += 1;
        }
        if n > 0 {
            self.rx.kick().map_err(Error::frontend("kicking RX"))?;
        }
        Ok(n)
    }

    fn wait(&mut self, timeout: Duration) -> Result<()> {
        wait_readable(self.rx.call_fd(), timeout)?;
        drain_eventfd(self.rx.call_fd()).map(|_| ())
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn header_layout() {
        let m = message(1024, 0x401, b"ab");
        assert_eq!(m.len(), 18);
        assert_eq!(field(&m, 0), Some(1024));
        assert_eq!(field(&m, 4), Some(0x401));
        assert_eq!(&m[12..14], &[2, 0]);
        assert_eq!(
            peer_path(Path::new("/t/s.sock")),
            PathBuf::from("/t/s.sock.peer")
        );
    }
}
