// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! vhost-user backend for virtio-can (device ID 36).
//!
//! - [`protocol`]: the wire format; [`command`]: its typed decode;
//!   [`frame`]: a CAN frame as the host sides carry it.
//! - [`controller`]: the START / STOP / bus-off state machine.
//! - [`device`]: the virtio device over any [`backend::CanBackend`].
//! - [`backend`]: SocketCAN interfaces, and the virtual bus the daemon's
//!   guests share.
//! - [`args`], [`control`]: the command line and the bus control socket.
//!
//! [`CanConfig`] turns the command line into one device per guest.

pub mod args;
pub mod backend;
pub mod command;
pub mod control;
pub mod controller;
pub mod device;
pub mod error;
pub mod frame;
pub mod protocol;

use std::sync::Arc;

use backend::bus::VirtualBus;
use backend::socketcan::SocketCan;
use backend::CanBackend;
pub use device::CanDevice;
use device::DEFAULT_BACKLOG as DEFAULT_BACKLOG_USIZE;
pub use error::{Error, Result};
use vhost_device_common::{FsAccess, SandboxPolicy};

/// The device type every guest gets.
pub type Device = CanDevice<Box<dyn CanBackend>>;

/// One `--device-list` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seat {
    /// The daemon's virtual bus.
    Bus,
    /// A host CAN interface.
    Interface(String),
}

/// Splits and parses a `--device-list`, on ',' if there is one, else ':'.
pub fn parse_device_list(list: &str) -> Result<Vec<Seat>> {
    let separator = if list.contains(',') { ',' } else { ':' };
    list.split(separator)
        .map(str::trim)
        .map(|entry| {
            let bad = |reason: &str| Error::DeviceList {
                entry: entry.to_owned(),
                reason: reason.to_owned(),
            };
            if entry.is_empty() {
                return Err(bad("empty entry"));
            }
            if entry == "bus" {
                return Ok(Seat::Bus);
            }
            // IFNAMSIZ is 16 with the NUL.
            if entry.len() > 15 || entry.contains(['/', ' ']) || entry == "." || entry == ".." {
                return Err(bad("not `bus` or a network interface name"));
            }
            Ok(Seat::Interface(entry.to_owned()))
        })
        .collect()
}

/// Everything needed to build each guest's device, checked at startup.
#[derive(Debug)]
pub struct CanConfig {
    seats: Vec<Seat>,
    bus: Arc<VirtualBus>,
    backlog: usize,
    control: Option<vhost_device_common::SocketFileGuard>,
}

impl CanConfig {
    /// Validates the command line, opens each interface once to check it,
    /// and starts the bus control socket.
    pub fn from_args(args: &args::Args) -> Result<Self> {
        let count = usize::from(args.socket.socket_count);
        let seats = match &args.device_list {
            Some(list) => parse_device_list(list)?,
            None => vec![Seat::Bus; count],
        };
        if seats.len() != count {
            return Err(Error::DeviceList {
                entry: args.device_list.clone().unwrap_or_default(),
                reason: format!(
                    "{} entries for --socket-count {count}: give one per guest",
                    seats.len()
                ),
            });
        }
        for seat in &seats {
            if let Seat::Interface(name) = seat {
                SocketCan::open(name).map_err(|e| Error::DeviceList {
                    entry: name.clone(),
                    reason: e.to_string(),
                })?;
            }
        }
        let backlog = usize::try_from(args.rx_backlog).unwrap_or(DEFAULT_BACKLOG_USIZE);
        let bus = VirtualBus::new(backlog);
        let control = match &args.bus_control {
            Some(path) => Some(control::serve(bus.clone(), path)?),
            None => None,
        };
        Ok(CanConfig {
            seats,
            bus,
            backlog,
            control,
        })
    }

    /// The virtual bus.
    pub fn bus(&self) -> &Arc<VirtualBus> {
        &self.bus
    }

    /// What the daemon needs once set up: with a host interface, sysfs (its
    /// MTU is read for each connection); the control socket's directory
    /// (removed at exit). A CAN_RAW socket needs no capability.
    pub fn sandbox_policy(&self) -> SandboxPolicy {
        let mut policy = SandboxPolicy::of::<Device>();
        if self.seats.iter().any(|s| matches!(s, Seat::Interface(_))) {
            policy = policy.with_path("/sys", FsAccess::Read);
        }
        match self.control.as_ref().and_then(|c| c.path().parent()) {
            Some(dir) => policy.with_path(dir, FsAccess::Sockets),
            None => policy,
        }
    }

    /// Builds guest `index`'s device, afresh for each connection.
    pub fn build_device(&self, index: usize) -> std::result::Result<Device, String> {
        let backend: Box<dyn CanBackend> = match self.seats.get(index) {
            Some(Seat::Bus) => Box::new(self.bus.attach(index).map_err(|e| e.to_string())?),
            Some(Seat::Interface(name)) => {
                Box::new(SocketCan::open(name).map_err(|e| e.to_string())?)
            }
            None => return Err(format!("no CAN seat for guest {index}")),
        };
        Ok(CanDevice::new(backend, self.backlog))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn device_list_syntax() {
        assert_eq!(
            parse_device_list("bus:vcan0").unwrap(),
            [Seat::Bus, Seat::Interface("vcan0".into())]
        );
        assert_eq!(
            parse_device_list("can0, bus").unwrap(),
            [Seat::Interface("can0".into()), Seat::Bus]
        );
        for (bad, needle) in [
            ("", "empty"),
            ("bus,,bus", "empty"),
            ("a/b", "interface name"),
            ("averyveryverylongname", "interface name"),
        ] {
            let e = parse_device_list(bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }
}
