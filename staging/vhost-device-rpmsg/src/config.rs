// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The command line turned into channels, and a device per guest session.
//!
//! Host sockets and links are made once at start-up and shared by the
//! sessions of a guest, so a host program keeps its socket path, and a link
//! its queued messages, while a guest reconnects.

use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vhost_device_common::{FsAccess, SandboxPolicy};

use crate::args::Args;
use crate::backend::echo::EchoPort;
use crate::backend::link::Link;
use crate::backend::unix::{Listener, UnixPort};
use crate::backend::Port;
use crate::device::{DeviceParts, RpmsgDevice};
use crate::error::{Error, Result};
use crate::protocol::{RPMSG_ADDR_ANY, RPMSG_NAME_SIZE, RPMSG_NS_ADDR};

/// Where a configured channel's messages go on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostSpec {
    /// A Unix socket at this path.
    Socket(PathBuf),
    /// The same channel of the other guest.
    Link,
    /// Back to the guest.
    Echo,
}

/// One `--channel`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelSpec {
    /// Its name.
    pub name: String,
    /// The device-side address.
    pub addr: u32,
    /// The host side.
    pub host: HostSpec,
}

impl ChannelSpec {
    /// Parses `name=NAME,addr=ADDR,socket=PATH|link|echo`.
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |reason: &str| Error::Channel {
            spec: spec.to_owned(),
            reason: reason.to_owned(),
        };
        let (mut name, mut addr, mut host) = (None, None, None);
        for part in spec.split(',') {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            match key {
                "name" => name = Some(value.to_owned()),
                "addr" => {
                    let parsed = match value.strip_prefix("0x") {
                        Some(hex) => u32::from_str_radix(hex, 16),
                        None => value.parse(),
                    };
                    addr = Some(parsed.map_err(|_| bad("addr is not a number"))?);
                }
                "socket" if !value.is_empty() => host = Some(HostSpec::Socket(value.into())),
                "link" if value.is_empty() => host = Some(HostSpec::Link),
                "echo" if value.is_empty() => host = Some(HostSpec::Echo),
                _ => return Err(bad(&format!("unknown key '{part}'"))),
            }
        }
        let name = name.ok_or_else(|| bad("name= is missing"))?;
        if name.is_empty()
            || name.len() >= RPMSG_NAME_SIZE
            || !name.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(bad("name must be 1 to 31 printable characters"));
        }
        let addr = addr.ok_or_else(|| bad("addr= is missing"))?;
        // Device and guest addresses are separate spaces (each side names
        // its own endpoints), so any address but the name service's and
        // "any" will do; below 1024 is the convention for a remote's fixed
        // services.
        if addr == RPMSG_ADDR_ANY || addr == RPMSG_NS_ADDR {
            return Err(bad(
                "addr must not be 53 (the name service) or 0xffffffff (any)",
            ));
        }
        let host = host.ok_or_else(|| bad("one of socket=PATH, link or echo is needed"))?;
        Ok(ChannelSpec { name, addr, host })
    }
}

/// The host side of one channel, for all guests.
#[derive(Debug)]
enum Shared {
    /// One listener per guest.
    Sockets(Vec<Arc<Listener>>),
    Link(Link),
    Echo,
}

/// Everything the sessions are built from.
#[derive(Debug)]
pub struct Config {
    channels: Vec<(ChannelSpec, Shared)>,
    guest_dirs: Vec<PathBuf>,
    queue_limit: usize,
    socket_mode: u32,
}

/// `base` for one guest, or `base` followed by the guest index for several
/// (the naming of the vhost-user sockets).
fn per_guest(base: &Path, guest: usize, guests: usize) -> PathBuf {
    if guests == 1 {
        return base.to_owned();
    }
    let mut name = base.as_os_str().to_owned().into_vec();
    name.extend(guest.to_string().bytes());
    PathBuf::from(std::ffi::OsString::from_vec(name))
}

impl Config {
    /// Checks the flags and creates the host sockets and links.
    pub fn from_args(args: &Args) -> Result<Self> {
        let guests = usize::from(args.socket.socket_count).max(1);
        let specs = args
            .channels
            .iter()
            .map(|s| ChannelSpec::parse(s))
            .collect::<Result<Vec<_>>>()?;
        for (i, a) in specs.iter().enumerate() {
            if specs.iter().skip(i + 1).any(|b| b.addr == a.addr) {
                return Err(Error::Flag {
                    flag: "--channel",
                    reason: format!("address {:#x} is used twice", a.addr),
                });
            }
        }
        let mut channels = Vec::new();
        for spec in specs {
            let shared = match &spec.host {
                HostSpec::Socket(path) => Shared::Sockets(
                    (0..guests)
                        .map(|g| {
                            Listener::bind(&per_guest(path, g, guests), args.socket.socket_mode)
                                .map(Arc::new)
                        })
                        .collect::<Result<_>>()?,
                ),
                HostSpec::Link if guests == 2 => {
                    Shared::Link(Link::new().map_err(Error::io("socketpair"))?)
                }
                HostSpec::Link => {
                    return Err(Error::Flag {
                        flag: "--channel ...,link",
                        reason: "a link joins two guests: it needs --socket-count 2".into(),
                    })
                }
                HostSpec::Echo => Shared::Echo,
            };
            channels.push((spec, shared));
        }
        let guest_dirs = match &args.guest_channel_dir {
            Some(dir) => (0..guests)
                .map(|g| {
                    let dir = per_guest(dir, g, guests);
                    std::fs::create_dir_all(&dir).map_err(|source| Error::Socket {
                        path: dir.clone(),
                        what: "create directory",
                        source,
                    })?;
                    Ok(dir)
                })
                .collect::<Result<_>>()?,
            None => Vec::new(),
        };
        Ok(Config {
            channels,
            guest_dirs,
            queue_limit: usize::try_from(args.queue_limit).unwrap_or(usize::MAX),
            socket_mode: args.socket.socket_mode,
        })
    }

    /// What the daemon needs once set up: the directories of its host
    /// sockets (removed at exit) and the guest channel directories (a
    /// socket is bound there for each channel the guest announces).
    pub fn sandbox_policy(&self) -> SandboxPolicy {
        let hosts = self.channels.iter().flat_map(|(_, shared)| match shared {
            Shared::Sockets(listeners) => listeners
                .iter()
                .filter_map(|l| l.path().parent().map(Path::to_owned))
                .collect(),
            Shared::Link(_) | Shared::Echo => Vec::new(),
        });
        hosts
            .chain(self.guest_dirs.iter().cloned())
            .fold(SandboxPolicy::of::<RpmsgDevice>(), |policy, dir| {
                policy.with_path(dir, FsAccess::Sockets)
            })
    }

    /// A fresh device for a session of guest `guest`.
    pub fn build_device(&self, guest: usize) -> Result<RpmsgDevice> {
        let mut channels = Vec::new();
        for (spec, shared) in &self.channels {
            let port: Box<dyn Port> = match shared {
                Shared::Sockets(listeners) => {
                    let listener = listeners.get(guest).ok_or(Error::Flag {
                        flag: "--socket-count",
                        reason: format!("no socket for guest {guest}"),
                    })?;
                    Box::new(UnixPort::new(Arc::clone(listener)))
                }
                Shared::Link(link) => Box::new(link.port(guest).map_err(Error::io("link"))?),
                Shared::Echo => Box::new(EchoPort::new().map_err(Error::io("eventfd"))?),
            };
            channels.push((spec.name.clone(), spec.addr, port));
        }
        RpmsgDevice::new(DeviceParts {
            channels,
            guest_dir: self.guest_dirs.get(guest).cloned(),
            queue_limit: self.queue_limit,
            socket_mode: self.socket_mode,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn channel_specs() {
        assert_eq!(
            ChannelSpec::parse("name=rpmsg-tty,addr=0x400,socket=/run/t.sock").unwrap(),
            ChannelSpec {
                name: "rpmsg-tty".into(),
                addr: 0x400,
                host: HostSpec::Socket("/run/t.sock".into())
            }
        );
        assert_eq!(
            ChannelSpec::parse("name=x,addr=30,link").unwrap().host,
            HostSpec::Link
        );
        assert_eq!(
            ChannelSpec::parse("addr=30,echo,name=x").unwrap().host,
            HostSpec::Echo
        );
        for bad in [
            "name=x,addr=0xffffffff,echo",
            "name=x,addr=53,echo",
            "name=x,addr=zz,echo",
            "name=x,echo",
            "addr=1,echo",
            "name=x,addr=1",
            "name=,addr=1,echo",
            "name=a b,addr=1,echo",
            "name=0123456789012345678901234567890123,addr=1,echo",
            "name=x,addr=1,socket=",
            "name=x,addr=1,echo,color=red",
        ] {
            assert!(ChannelSpec::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn per_guest_names() {
        assert_eq!(per_guest(Path::new("/a/b"), 0, 1), PathBuf::from("/a/b"));
        assert_eq!(per_guest(Path::new("/a/b"), 1, 2), PathBuf::from("/a/b1"));
    }
}
