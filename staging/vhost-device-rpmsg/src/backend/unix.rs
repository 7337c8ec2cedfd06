// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A channel served on a host Unix socket.
//!
//! The socket is `SOCK_SEQPACKET`: one `send` on the host is one rpmsg
//! message to the guest, and one guest message is one `recv` on the host,
//! with its boundaries kept. That is what `/dev/rpmsgN` gives the guest
//! (one `write` is one message). For a tty channel the guest side is a byte
//! stream anyway (rpmsg_tty cuts writes at the MTU); a host program that
//! wants a stream can still read and write the same socket, message by
//! message, e.g. `socat - UNIX-CONNECT:PATH,type=5`.

use std::io::{self, Read};
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use socket2::{Domain, SockAddr, Socket, Type};

use super::mmsg::{self, HostBuf};
use super::Port;
use crate::error::{Error, Result};

/// A bound, listening seqpacket socket. Removes its file when dropped.
#[derive(Debug)]
pub struct Listener {
    socket: Socket,
    path: PathBuf,
}

impl Listener {
    /// Creates the socket at `path` with permissions `mode` (the
    /// `--socket-mode` of the vhost-user sockets). A stale socket file
    /// (nothing accepts on it) is replaced; a live one, or any other file,
    /// is an error.
    pub fn bind(path: &Path, mode: u32) -> Result<Self> {
        let err = |what| {
            move |source| Error::Socket {
                path: path.to_owned(),
                what,
                source,
            }
        };
        let addr = SockAddr::unix(path).map_err(err("address"))?;
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(err("exists")(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "not a socket",
                )));
            }
            let probe = Socket::new(Domain::UNIX, Type::SEQPACKET, None).map_err(err("socket"))?;
            if probe.connect(&addr).is_ok() {
                return Err(err("exists")(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    "another process serves it",
                )));
            }
            std::fs::remove_file(path).map_err(err("remove stale socket"))?;
        }
        let socket = Socket::new(Domain::UNIX, Type::SEQPACKET, None).map_err(err("socket"))?;
        socket.bind(&addr).map_err(err("bind"))?;
        // Before listen(), so no one connects under the umask's mode.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(err("set permissions"))?;
        socket.listen(4).map_err(err("listen"))?;
        socket
            .set_nonblocking(true)
            .map_err(err("set non-blocking"))?;
        Ok(Listener {
            socket,
            path: path.to_owned(),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A channel's host socket: the listener (shared by the sessions of one
/// guest socket, so host programs keep their path across guest reconnects)
/// and the host peer connected now.
#[derive(Debug)]
pub struct UnixPort {
    listener: Arc<Listener>,
    peer: Option<Socket>,
}

impl UnixPort {
    /// A port on `listener`, with no peer yet.
    pub fn new(listener: Arc<Listener>) -> Self {
        UnixPort {
            listener,
            peer: None,
        }
    }
}

impl Port for UnixPort {
    fn listener(&self) -> Option<RawFd> {
        Some(self.listener.socket.as_raw_fd())
    }

    fn accept(&mut self) -> io::Result<bool> {
        match self.listener.socket.accept() {
            Ok((peer, _)) => {
                peer.set_nonblocking(true)?;
                self.peer = Some(peer);
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn connection(&self) -> Option<RawFd> {
        self.peer.as_ref().map(AsRawFd::as_raw_fd)
    }

    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        send(self.peer.as_ref(), msg)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        recv(self.peer.as_ref(), buf)
    }

    fn send_many(&mut self, msgs: &[&[u8]]) -> io::Result<usize> {
        send_many(self.peer.as_ref(), msgs)
    }

    fn recv_many(&mut self, bufs: &mut [HostBuf], lens: &mut [usize]) -> io::Result<usize> {
        recv_many(self.peer.as_ref(), bufs, lens)
    }

    fn disconnect(&mut self) {
        self.peer = None;
    }
}

/// Sends one message on a seqpacket socket, if there is one.
pub(crate) fn send(socket: Option<&Socket>, msg: &[u8]) -> io::Result<()> {
    let socket = socket.ok_or(io::ErrorKind::NotConnected)?;
    let sent = socket.send_with_flags(msg, libc::MSG_NOSIGNAL)?;
    if sent == msg.len() {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::WriteZero, "short send"))
    }
}

/// Sends a batch on a seqpacket socket, if there is one (see
/// [`mmsg::send_many`]).
pub(crate) fn send_many(socket: Option<&Socket>, msgs: &[&[u8]]) -> io::Result<usize> {
    let socket = socket.ok_or(io::ErrorKind::NotConnected)?;
    mmsg::send_many(socket.as_raw_fd(), msgs)
}

/// Receives a batch from a seqpacket socket, if there is one (see
/// [`mmsg::recv_many`]).
pub(crate) fn recv_many(
    socket: Option<&Socket>,
    bufs: &mut [HostBuf],
    lens: &mut [usize],
) -> io::Result<usize> {
    let socket = socket.ok_or(io::ErrorKind::NotConnected)?;
    mmsg::recv_many(socket.as_raw_fd(), bufs, lens)
}

/// Receives one message from a seqpacket socket. `Ok(None)` on hang-up (a
/// zero-length read: rpmsg messages of length 0 are not forwarded to a host
/// peer, see the device).
pub(crate) fn recv(socket: Option<&Socket>, buf: &mut [u8]) -> io::Result<Option<usize>> {
    let mut socket = socket.ok_or(io::ErrorKind::NotConnected)?;
    match socket.read(buf) {
        Ok(0) => Ok(None),
        Ok(n) => Ok(Some(n)),
        Err(e) => Err(e),
    }
}
