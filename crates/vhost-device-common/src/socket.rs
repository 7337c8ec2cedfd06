// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The socket flags every binary shares, and the listening sockets they name.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use crate::error::{Error, Result};
use crate::sandbox::SandboxArgs;

/// The listening socket's mode unless --socket-mode says otherwise: only
/// the daemon's user may connect.
pub const DEFAULT_SOCKET_MODE: u32 = 0o600;

/// Where the vhost-user frontends connect.
///
/// Each socket serves one guest with its own device state.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
pub struct SocketArgs {
    #[command(flatten)]
    pub source: SocketSource,

    /// Number of guests to serve, each on its own socket with its own device
    /// state. With N > 1, --socket-path PATH creates PATH0 … PATH{N-1}, and
    /// --socket-fd FD uses the descriptors FD … FD+N-1.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub socket_count: u16,

    /// After answering requests, keep polling the queue for this many
    /// microseconds before going back to sleep. Trades CPU time for
    /// latency when the guest's next request comes soon after a reply and a
    /// wake-up is dear (a vCPU on another host CPU). 0, the default, never
    /// polls; an idle device never polls either way.
    #[arg(long, value_name = "MICROSECONDS", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub busy_poll_us: u32,

    /// Permissions of the socket files --socket-path creates, in octal
    /// (e.g. 0660 to let the VMM's group connect). Default 0600.
    #[arg(long, value_name = "OCTAL", default_value = "0600", value_parser = parse_mode)]
    pub socket_mode: u32,

    #[command(flatten)]
    pub sandbox: SandboxArgs,

    /// Print the backend's capabilities as JSON (the vhost-user.json schema
    /// libvirt reads) and exit. Other flags are ignored.
    // cli::run looks for it before it parses the others.
    #[arg(long)]
    pub print_capabilities: bool,
}

/// Parses an octal file mode such as `0600`, `660` or `0o640`.
fn parse_mode(text: &str) -> std::result::Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(format!("{text:?} is not an octal mode of at most 0777")),
    }
}

/// The socket path or the inherited descriptor: exactly one is given.
#[derive(Args, Debug, Clone, PartialEq, Eq)]
#[group(required = true, multiple = false)]
pub struct SocketSource {
    /// Unix socket to create and listen on for the vhost-user frontend
    /// (e.g. QEMU's -chardev socket,path=PATH).
    #[arg(long, value_name = "PATH")]
    pub socket_path: Option<PathBuf>,

    /// Already-listening Unix socket inherited from a service manager
    /// (systemd socket activation: 3, the first of LISTEN_FDS; libvirt).
    /// --fd is the same flag, under the name vhost-user.rst gives it.
    #[arg(long, value_name = "FD", visible_alias = "fd")]
    pub socket_fd: Option<RawFd>,
}

impl SocketArgs {
    /// Arguments for `count` sockets at `path`.
    pub fn with_path(path: impl Into<PathBuf>, count: u16) -> Self {
        SocketArgs {
            source: SocketSource {
                socket_path: Some(path.into()),
                socket_fd: None,
            },
            socket_count: count,
            busy_poll_us: 0,
            socket_mode: DEFAULT_SOCKET_MODE,
            sandbox: SandboxArgs::default(),
            print_capabilities: false,
        }
    }

    /// Arguments for `count` inherited descriptors starting at `fd`.
    pub fn with_fd(fd: RawFd, count: u16) -> Self {
        SocketArgs {
            source: SocketSource {
                socket_path: None,
                socket_fd: Some(fd),
            },
            socket_count: count,
            busy_poll_us: 0,
            socket_mode: DEFAULT_SOCKET_MODE,
            sandbox: SandboxArgs::default(),
            print_capabilities: false,
        }
    }

    /// How long a queue is polled after a batch (--busy-poll-us).
    pub fn busy_poll(&self) -> Duration {
        Duration::from_micros(u64::from(self.busy_poll_us))
    }

    /// The socket paths, in guest order; empty with --socket-fd.
    pub fn paths(&self) -> Vec<PathBuf> {
        let Some(path) = &self.source.socket_path else {
            return Vec::new();
        };
        if self.socket_count == 1 {
            return vec![path.clone()];
        }
        (0..self.socket_count)
            .map(|i| {
                let mut p = path.clone().into_os_string();
                p.push(i.to_string());
                PathBuf::from(p)
            })
            .collect()
    }

    /// Creates (or takes over) the listening sockets, one per guest.
    pub fn bind(&self) -> Result<Vec<BoundSocket>> {
        if self.socket_count == 0 {
            return Err(Error::ZeroSocketCount);
        }
        match (&self.source.socket_path, self.source.socket_fd) {
            (Some(_), None) => self
                .paths()
                .into_iter()
                .map(|p| BoundSocket::bind_with_mode(&p, self.socket_mode))
                .collect(),
            (None, Some(fd)) => {
                crate::activation::claim(fd, self.socket_count)?;
                (0..self.socket_count)
                    .map(|i| {
                        let fd = fd.checked_add(RawFd::from(i)).ok_or(Error::BadSocketFd {
                            fd,
                            reason: "descriptor number overflows".into(),
                        })?;
                        BoundSocket::from_fd(fd)
                    })
                    .collect()
            }
            _ => Err(Error::BadSocketFd {
                fd: self.source.socket_fd.unwrap_or(-1),
                reason: "give exactly one of --socket-path and --socket-fd".into(),
            }),
        }
    }
}

/// A listening socket. A socket file this process created is removed when
/// it is dropped.
#[derive(Debug)]
pub struct BoundSocket {
    listener: UnixListener,
    created: Option<PathBuf>,
    name: String,
}

impl BoundSocket {
    /// Binds `path` with mode 0600 (see [`Self::bind_with_mode`]).
    pub fn bind(path: &Path) -> Result<Self> {
        Self::bind_with_mode(path, DEFAULT_SOCKET_MODE)
    }

    /// Binds `path`, replacing a stale socket file left by a dead process
    /// but never a live socket or a file of another kind, and gives the
    /// socket file `mode`.
    pub fn bind_with_mode(path: &Path, mode: u32) -> Result<Self> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {
                if UnixStream::connect(path).is_ok() {
                    return Err(Error::SocketInUse(path.to_owned()));
                }
                std::fs::remove_file(path).map_err(|source| Error::Bind {
                    path: path.to_owned(),
                    source,
                })?;
            }
            Ok(_) => return Err(Error::NotASocket(path.to_owned())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::Bind {
                    path: path.to_owned(),
                    source,
                })
            }
        }
        // Created with no permissions at all and then given `mode`, so there
        // is no moment at which another user may connect. The umask is the
        // process's; serve() binds before it starts any thread.
        // SAFETY: umask only swaps an integer in the process.
        let old = unsafe { libc::umask(0o777) };
        let bound = UnixListener::bind(path);
        // SAFETY: as above.
        unsafe { libc::umask(old) };
        let listener = bound.map_err(|source| Error::Bind {
            path: path.to_owned(),
            source,
        })?;
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .map_err(|source| Error::Bind {
                path: path.to_owned(),
                source,
            })?;
        Ok(BoundSocket {
            listener,
            created: Some(path.to_owned()),
            name: path.display().to_string(),
        })
    }

    /// Takes over an inherited descriptor after checking that it is a
    /// listening Unix stream socket.
    pub fn from_fd(fd: RawFd) -> Result<Self> {
        let bad = |reason: String| Error::BadSocketFd { fd, reason };
        if fd < 0 {
            return Err(bad("not a valid descriptor".into()));
        }
        let int_opt = |opt: libc::c_int| -> io::Result<libc::c_int> {
            let mut value: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: value and len are valid for writes of the sizes given.
            let ret = unsafe {
                libc::getsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    opt,
                    std::ptr::from_mut(&mut value).cast(),
                    &raw mut len,
                )
            };
            if ret < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(value)
            }
        };
        let domain = int_opt(libc::SO_DOMAIN).map_err(|e| bad(format!("not a socket ({e})")))?;
        if domain != libc::AF_UNIX {
            return Err(bad("not a Unix socket".into()));
        }
        if int_opt(libc::SO_TYPE).map_err(|e| bad(e.to_string()))? != libc::SOCK_STREAM {
            return Err(bad("not a stream socket".into()));
        }
        if int_opt(libc::SO_ACCEPTCONN).map_err(|e| bad(e.to_string()))? == 0 {
            return Err(bad("socket is not listening".into()));
        }
        // SAFETY: fd is an open, listening Unix stream socket handed to this
        // process for it to own; nothing else in the process uses it.
        let listener = unsafe { UnixListener::from_raw_fd(fd) };
        // SAFETY: plain fcntl on a descriptor we now own.
        unsafe { libc::fcntl(listener.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
        Ok(BoundSocket {
            listener,
            created: None,
            name: format!("fd {fd}"),
        })
    }

    /// The listener.
    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// A name for log messages: the path, or the descriptor.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// Removes a socket file of the daemon's own (a control or channel socket
/// beside the vhost-user one) when dropped, so that it goes with the daemon.
#[derive(Debug)]
pub struct SocketFileGuard {
    path: std::path::PathBuf,
}

impl SocketFileGuard {
    /// The socket file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Takes charge of removing `path`.
    pub fn new(path: &std::path::Path) -> Self {
        SocketFileGuard {
            path: path.to_owned(),
        }
    }
}

impl Drop for SocketFileGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for BoundSocket {
    fn drop(&mut self) {
        if let Some(path) = &self.created {
            let _ = std::fs::remove_file(path);
        }
    }
}
