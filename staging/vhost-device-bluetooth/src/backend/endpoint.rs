// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Where a host-side controller is, and how to open it: an H:4 byte stream
//! (Unix socket, TCP, serial device or pty) or a host adapter through the
//! HCI user channel. Every connection is non-blocking, for the worker's
//! epoll.

use std::fs::{File, OpenOptions};
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use vhost_device_common::IoError;

use crate::error::{Error, Result};

/// How long a TCP connect may block the worker.
const TCP_CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// `AF_BLUETOOTH`, `BTPROTO_HCI` and `HCI_CHANNEL_USER`
/// (include/net/bluetooth/bluetooth.h, hci_sock.h).
const AF_BLUETOOTH: libc::c_int = 31;
const BTPROTO_HCI: libc::c_int = 1;
const HCI_CHANNEL_USER: u16 = 1;

/// `struct sockaddr_hci`.
#[repr(C)]
struct SockaddrHci {
    hci_family: libc::sa_family_t,
    hci_dev: u16,
    hci_channel: u16,
}

/// A host-side controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// An H:4 stream on a Unix socket.
    Unix(PathBuf),
    /// An H:4 stream on TCP, `HOST:PORT`.
    Tcp(String),
    /// A serial device or pty carrying H:4, at this speed if given.
    Serial(PathBuf, Option<u32>),
    /// Host adapter `hciN` through the HCI user channel.
    Hci(u16),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
            Endpoint::Tcp(addr) => write!(f, "tcp:{addr}"),
            Endpoint::Serial(path, None) => write!(f, "serial:{}", path.display()),
            Endpoint::Serial(path, Some(baud)) => write!(f, "serial:{}@{baud}", path.display()),
            Endpoint::Hci(index) => write!(f, "hci:{index}"),
        }
    }
}

impl Endpoint {
    /// Whether the connection is a byte stream to re-frame (else each read
    /// is one packet).
    pub fn is_stream(&self) -> bool {
        !matches!(self, Endpoint::Hci(_))
    }

    /// Opens a connection.
    pub fn connect(&self) -> Result<Connection> {
        let fd: OwnedFd = match self {
            Endpoint::Unix(path) => {
                let s = UnixStream::connect(path)
                    .map_err(|e| IoError::new(format!("connecting to {}", path.display()), e))?;
                s.set_nonblocking(true)
                    .map_err(|e| IoError::new("setting O_NONBLOCK", e))?;
                s.into()
            }
            Endpoint::Tcp(addr) => {
                let s = tcp_connect(addr)?;
                s.set_nonblocking(true)
                    .map_err(|e| IoError::new("setting O_NONBLOCK", e))?;
                // H:4 packets are small and latency matters.
                let _ = s.set_nodelay(true);
                s.into()
            }
            Endpoint::Serial(path, baud) => open_serial(path, *baud)?.into(),
            Endpoint::Hci(index) => open_user_channel(*index)?,
        };
        Ok(Connection { fd })
    }

    /// Checks a baud rate without opening anything.
    pub fn check(&self) -> Result<()> {
        if let Endpoint::Serial(_, Some(baud)) = self {
            speed(*baud)?;
        }
        Ok(())
    }
}

fn tcp_connect(addr: &str) -> Result<TcpStream> {
    let what = || format!("connecting to {addr}");
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for sa in addr
        .to_socket_addrs()
        .map_err(|e| IoError::new(what(), e))?
    {
        match TcpStream::connect_timeout(&sa, TCP_CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(IoError::new(what(), last).into())
}

/// The termios constant of a line speed.
fn speed(baud: u32) -> Result<libc::speed_t> {
    Ok(match baud {
        9600 => libc::B9600,
        19200 => libc::B19200,
        38400 => libc::B38400,
        57600 => libc::B57600,
        115_200 => libc::B115200,
        230_400 => libc::B230400,
        460_800 => libc::B460800,
        921_600 => libc::B921600,
        1_000_000 => libc::B1000000,
        2_000_000 => libc::B2000000,
        3_000_000 => libc::B3000000,
        4_000_000 => libc::B4000000,
        _ => {
            return Err(Error::Flag {
                flag: "--backend",
                reason: format!("serial speed {baud} is not a standard rate"),
            })
        }
    })
}

/// Opens a UART or pty in raw mode: no echo, no line discipline, 8N1, and
/// RTS/CTS flow control as H:4 UARTs use it (Core Vol 4 Part A §3).
fn open_serial(path: &std::path::Path, baud: Option<u32>) -> Result<File> {
    let what = |w: &str| format!("{w} {}", path.display());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| IoError::new(what("opening"), e))?;
    let fd = file.as_raw_fd();
    // SAFETY: termios is plain data; tcgetattr fills it from a valid fd.
    let mut tio: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open for the duration; tio is a valid termios.
    if unsafe { libc::tcgetattr(fd, &raw mut tio) } != 0 {
        return Err(IoError::new(what("not a terminal:"), io::Error::last_os_error()).into());
    }
    // SAFETY: tio is a valid termios.
    unsafe { libc::cfmakeraw(&raw mut tio) };
    if let Some(baud) = baud {
        let s = speed(baud)?;
        tio.c_cflag |= libc::CRTSCTS;
        // SAFETY: tio is a valid termios.
        unsafe {
            libc::cfsetispeed(&raw mut tio, s);
            libc::cfsetospeed(&raw mut tio, s);
        }
    }
    // SAFETY: fd is open; tio is a valid termios.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw const tio) } != 0 {
        return Err(IoError::new(what("configuring"), io::Error::last_os_error()).into());
    }
    Ok(file)
}

/// Binds the HCI user channel of `hci<index>`, with one-line errors for
/// the ways the kernel refuses it (net/bluetooth/hci_sock.c).
fn open_user_channel(index: u16) -> Result<OwnedFd> {
    // SAFETY: plain socket(2) call; the result is checked.
    let raw = unsafe {
        libc::socket(
            AF_BLUETOOTH,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            BTPROTO_HCI,
        )
    };
    if raw < 0 {
        let e = io::Error::last_os_error();
        return Err(IoError::new(
            "creating a Bluetooth HCI socket (is the bluetooth module loaded?)",
            e,
        )
        .into());
    }
    // SAFETY: raw is a fresh descriptor we own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let addr = SockaddrHci {
        hci_family: AF_BLUETOOTH as libc::sa_family_t,
        hci_dev: index,
        hci_channel: HCI_CHANNEL_USER,
    };
    let len = std::mem::size_of::<SockaddrHci>() as libc::socklen_t;
    // SAFETY: addr is a valid sockaddr_hci of `len` bytes; fd is open.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::from_ref(&addr).cast::<libc::sockaddr>(),
            len,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::EBUSY) => Error::AdapterBusy(index),
            Some(libc::EUSERS) => Error::AdapterInUse(index),
            Some(libc::ENODEV) => Error::NoAdapter(index),
            Some(libc::EPERM) => Error::NotPermitted(index),
            _ => IoError::new(format!("binding the user channel of hci{index}"), e).into(),
        });
    }
    Ok(fd)
}

/// An open connection to a controller.
#[derive(Debug)]
pub struct Connection {
    fd: OwnedFd,
}

impl Connection {
    /// Reads what is there; `Ok(0)` is end of stream.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is valid for buf.len() bytes; the fd is open.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }

    /// Writes what it can.
    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        // SAFETY: buf is valid for buf.len() bytes; the fd is open.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        usize::try_from(n).map_err(|_| io::Error::last_os_error())
    }
}

/// A user channel bound once at startup, before the sandbox drops
/// CAP_NET_ADMIN, and handed from one frontend connection's backend to the
/// next: re-binding would need the capability again.
///
/// The handover is ordered: the slot knows whether a backend holds the
/// socket, and the next one waits (briefly) for it to come back instead of
/// trying to bind a socket that is still bound, which without the
/// capability looks like the adapter was lost.
#[derive(Clone, Debug, Default)]
pub struct HeldChannel(Arc<(Mutex<Slot>, Condvar)>);

#[derive(Debug, Default)]
struct Slot {
    parked: Option<Parked>,
    /// A backend has the socket (it took it, or bound it itself).
    in_use: bool,
}

/// A connection between two frontends.
#[derive(Debug)]
pub struct Parked {
    /// The bound socket.
    pub conn: Connection,
    /// Whether a guest used it since the controller was last reset.
    pub dirty: bool,
}

/// What [`HeldChannel::take`] found.
#[derive(Debug)]
pub enum Handover {
    /// The socket, now the caller's.
    Parked(Parked),
    /// Nobody has it (the adapter was lost): bind it again, and
    /// [`HeldChannel::claim`] it.
    Free,
    /// Another backend still has it after the wait.
    Busy,
}

impl HeldChannel {
    /// Holds a freshly bound `conn`.
    pub fn new(conn: Connection) -> Self {
        let held = HeldChannel::default();
        held.put(conn, false);
        held
    }

    fn slot(&self) -> MutexGuard<'_, Slot> {
        self.0 .0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the connection, waiting up to `wait` for a backend that still
    /// has it to give it back.
    pub fn take(&self, wait: Duration) -> Handover {
        let (_, cond) = &*self.0;
        let (mut slot, _) = cond
            .wait_timeout_while(self.slot(), wait, |slot| {
                slot.parked.is_none() && slot.in_use
            })
            .unwrap_or_else(PoisonError::into_inner);
        match slot.parked.take() {
            Some(parked) => {
                slot.in_use = true;
                Handover::Parked(parked)
            }
            None if slot.in_use => Handover::Busy,
            None => Handover::Free,
        }
    }

    /// Marks a socket the caller bound itself as held.
    pub fn claim(&self) {
        self.slot().in_use = true;
    }

    /// The holder lost its socket (the adapter went away).
    pub fn release(&self) {
        self.slot().in_use = false;
        self.0 .1.notify_all();
    }

    /// Gives the connection back for the next frontend.
    pub fn put(&self, conn: Connection, dirty: bool) {
        let mut slot = self.slot();
        slot.parked = Some(Parked { conn, dirty });
        slot.in_use = false;
        drop(slot);
        self.0 .1.notify_all();
    }
}

impl AsRawFd for Connection {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn speeds_and_errors() {
        assert_eq!(speed(115_200).unwrap(), libc::B115200);
        assert!(speed(1234).unwrap_err().to_string().contains("1234"));
        let e = Endpoint::Unix("/nonexistent/bt".into())
            .connect()
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/bt"), "{e}");
        let e = Endpoint::Serial("/dev/null".into(), None)
            .connect()
            .unwrap_err();
        assert!(e.to_string().contains("not a terminal"), "{e}");
    }
}
