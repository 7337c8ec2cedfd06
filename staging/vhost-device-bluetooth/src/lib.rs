// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! vhost-user backend for virtio-bluetooth (device ID 40).
//!
//! - [`protocol`]: the config space and H:4 headers, after the Linux driver
//!   (there is no spec chapter).
//! - [`packet`]: one checked H:4 packet, and re-framing of byte streams.
//! - [`device`]: the virtio device; [`rx`]: the RX backlog and one packet
//!   per RX buffer.
//! - [`backend`]: the controllers behind [`backend::HciBackend`].
//! - [`args`]: the command line; [`BtConfig`] turns it into one device per
//!   guest.

pub mod args;
pub mod backend;
pub mod device;
pub mod error;
pub mod packet;
pub mod protocol;
pub mod rx;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use backend::builtin::radio::{BdAddr, Radio};
use backend::builtin::{Builtin, Identity};
use backend::endpoint::{Endpoint, HeldChannel};
use backend::link::Link;
use backend::HciBackend;
pub use device::{BtDevice, Vendor};
pub use error::{Error, Result};
use vhost_device_common::{FsAccess, SandboxPolicy};

/// Most packets `--rx-backlog` may hold.
pub const MAX_BACKLOG: usize = 4096;

/// One `--backend` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendSpec {
    /// The built-in controller.
    Builtin,
    /// A controller outside the daemon.
    External(Endpoint),
}

impl BackendSpec {
    /// Parses one entry.
    pub fn parse(entry: &str) -> Result<Self> {
        let bad = |reason: &str| Error::Flag {
            flag: "--backend",
            reason: format!("'{entry}': {reason}"),
        };
        let nonempty = |rest: &str, what: &str| {
            if rest.is_empty() {
                Err(bad(&format!("missing {what}")))
            } else {
                Ok(rest.to_owned())
            }
        };
        let external = |e: Endpoint| Ok(BackendSpec::External(e));
        if entry == "builtin" {
            return Ok(BackendSpec::Builtin);
        }
        if let Some(path) = entry.strip_prefix("unix:") {
            return external(Endpoint::Unix(nonempty(path, "socket path")?.into()));
        }
        if let Some(addr) = entry.strip_prefix("tcp:") {
            let addr = nonempty(addr, "HOST:PORT")?;
            let port_ok = addr
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !port_ok {
                return Err(bad("expected tcp:HOST:PORT"));
            }
            return external(Endpoint::Tcp(addr));
        }
        if let Some(rest) = entry.strip_prefix("serial:") {
            let (path, baud) = match rest.rsplit_once('@') {
                Some((path, baud)) => {
                    let baud = baud
                        .parse()
                        .map_err(|_| bad("the speed after @ is not a number"))?;
                    (path, Some(baud))
                }
                None => (rest, None),
            };
            let endpoint = Endpoint::Serial(PathBuf::from(nonempty(path, "device path")?), baud);
            endpoint.check()?;
            return external(endpoint);
        }
        let index = entry
            .strip_prefix("hci:")
            .or_else(|| entry.strip_prefix("hci"));
        if let Some(index) = index {
            let index = index
                .parse()
                .map_err(|_| bad("expected hci:N with N a number"))?;
            return external(Endpoint::Hci(index));
        }
        Err(bad(
            "expected builtin, unix:PATH, tcp:HOST:PORT, serial:PATH[@BAUD] or hci:N",
        ))
    }
}

/// Parses `AA:BB:CC:DD:EE:FF` into wire order.
pub fn parse_bdaddr(text: &str) -> Result<BdAddr> {
    let bad = |reason: &str| Error::Flag {
        flag: "--bdaddr",
        reason: format!("'{text}': {reason}"),
    };
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return Err(bad("expected six hex bytes separated by ':'"));
    }
    let mut addr = [0u8; 6];
    for (dst, part) in addr.iter_mut().rev().zip(&parts) {
        if part.len() != 2 {
            return Err(bad("expected six hex bytes separated by ':'"));
        }
        *dst = u8::from_str_radix(part, 16).map_err(|_| bad("not a hex byte"))?;
    }
    if addr == [0; 6] || addr == [0xff; 6] {
        return Err(bad(
            "00:00:00:00:00:00 and FF:FF:FF:FF:FF:FF are not device addresses",
        ));
    }
    Ok(addr)
}

/// Formats a wire-order address as `AA:BB:CC:DD:EE:FF`.
pub fn format_bdaddr(addr: &BdAddr) -> String {
    let parts: Vec<String> = addr.iter().rev().map(|b| format!("{b:02X}")).collect();
    parts.join(":")
}

/// `addr` plus `n`, carrying across bytes.
fn offset_bdaddr(addr: BdAddr, n: usize) -> BdAddr {
    let value = addr
        .iter()
        .rev()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
        .wrapping_add(n as u64);
    let mut out = [0; 6];
    for (i, b) in out.iter_mut().enumerate() {
        *b = (value >> (8 * i)) as u8;
    }
    out
}

/// Everything needed to build each guest's device, checked at startup.
#[derive(Debug)]
pub struct BtConfig {
    guests: Vec<BackendSpec>,
    identities: Vec<Identity>,
    radio: Arc<Radio>,
    vendor: Vendor,
    backlog: usize,
    retry: Duration,
    /// Each guest's user channel, for `hci:N`, bound here before the
    /// sandbox drops CAP_NET_ADMIN.
    held: Vec<Option<HeldChannel>>,
}

impl BtConfig {
    /// Validates the command line.
    pub fn from_args(args: &args::Args) -> Result<Self> {
        let count = usize::from(args.socket.socket_count);
        let specs = args
            .backend
            .split(',')
            .map(str::trim)
            .map(BackendSpec::parse)
            .collect::<Result<Vec<_>>>()?;
        let guests = match specs.as_slice() {
            [BackendSpec::Builtin] => vec![BackendSpec::Builtin; count],
            _ if specs.len() == count => specs,
            _ => {
                return Err(Error::Flag {
                    flag: "--backend",
                    reason: format!(
                        "{} entries for --socket-count {count}: give one per guest",
                        specs.len()
                    ),
                })
            }
        };
        if !(1..=MAX_BACKLOG).contains(&args.rx_backlog) {
            return Err(Error::Flag {
                flag: "--rx-backlog",
                reason: format!("{} is not between 1 and {MAX_BACKLOG}", args.rx_backlog),
            });
        }
        let mut adapters: Vec<u16> = Vec::new();
        let mut held = Vec::new();
        for spec in &guests {
            let mut channel = None;
            if let BackendSpec::External(Endpoint::Hci(index)) = spec {
                if adapters.contains(index) {
                    return Err(Error::Flag {
                        flag: "--backend",
                        reason: format!("hci{index} is given twice: an adapter serves one guest"),
                    });
                }
                adapters.push(*index);
                // Bound once, now: EBUSY, EUSERS and EPERM are reported at
                // startup, and the daemon needs no CAP_NET_ADMIN after it.
                channel = Some(HeldChannel::new(Endpoint::Hci(*index).connect()?));
            }
            held.push(channel);
        }
        let base = parse_bdaddr(&args.bdaddr)?;
        if args.name.len() > backend::builtin::NAME_LEN - 8 {
            return Err(Error::Flag {
                flag: "--name",
                reason: "longer than 240 bytes".into(),
            });
        }
        let identities = (0..count)
            .map(|i| Identity {
                addr: offset_bdaddr(base, i),
                name: if count > 1 {
                    format!("{}-{i}", args.name)
                } else {
                    args.name.clone()
                },
            })
            .collect();
        let vendor = Vendor {
            vendor: args.vendor.map(|v| match v {
                args::VendorArg::Zephyr => protocol::VIRTIO_BT_CONFIG_VENDOR_ZEPHYR,
                args::VendorArg::Intel => protocol::VIRTIO_BT_CONFIG_VENDOR_INTEL,
                args::VendorArg::Realtek => protocol::VIRTIO_BT_CONFIG_VENDOR_REALTEK,
            }),
            msft_opcode: args.msft_opcode,
            aosp: args.aosp,
        };
        let vendor_asked = vendor.vendor.is_some() || vendor.msft_opcode.is_some() || vendor.aosp;
        if vendor_asked && guests.contains(&BackendSpec::Builtin) {
            return Err(Error::Flag {
                flag: "--vendor/--msft-opcode/--aosp",
                reason: "the built-in controller implements no vendor commands, and Linux's setup would fail on them".into(),
            });
        }
        Ok(BtConfig {
            guests,
            identities,
            radio: Radio::new(),
            vendor,
            backlog: args.rx_backlog,
            retry: Duration::from_millis(args.reconnect_ms),
            held,
        })
    }

    /// What the daemon needs once set up. A serial endpoint's device node
    /// is opened for each connection. An HCI user channel was bound in
    /// [`BtConfig::from_args`] and is kept, so no capability stays; binding
    /// it again after the adapter is lost takes `--modcaps +net_admin`.
    /// Stream endpoints connect to their sockets and need nothing.
    pub fn sandbox_policy(&self) -> SandboxPolicy {
        let mut policy = SandboxPolicy::of::<BtDevice>();
        for spec in &self.guests {
            if let BackendSpec::External(Endpoint::Serial(path, _)) = spec {
                policy = policy.with_path(path, FsAccess::Device);
            }
        }
        policy
    }

    /// Builds guest `index`'s device, afresh for each connection.
    pub fn build_device(&self, index: usize) -> Result<BtDevice> {
        let spec = self.guests.get(index).ok_or(Error::Flag {
            flag: "--socket-count",
            reason: format!("no backend for guest {index}"),
        })?;
        let backend: Box<dyn HciBackend> = match spec {
            BackendSpec::Builtin => {
                let identity = self.identities.get(index).cloned().ok_or(Error::Flag {
                    flag: "--socket-count",
                    reason: format!("no identity for guest {index}"),
                })?;
                Box::new(Builtin::new(&self.radio, identity)?)
            }
            BackendSpec::External(endpoint) => Box::new(Link::with_held(
                endpoint.clone(),
                self.retry,
                self.held.get(index).cloned().flatten(),
            )?),
        };
        Ok(BtDevice::new(backend, self.vendor, self.backlog))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn addresses() {
        let a = parse_bdaddr("52:54:00:B7:00:FF").unwrap();
        assert_eq!(a, [0xff, 0, 0xb7, 0, 0x54, 0x52]);
        assert_eq!(format_bdaddr(&a), "52:54:00:B7:00:FF");
        assert_eq!(format_bdaddr(&offset_bdaddr(a, 2)), "52:54:00:B7:01:01");
        for bad in [
            "",
            "00:00:00:00:00:00",
            "1:2:3:4:5:6",
            "52:54:00:B7:00",
            "zz:54:00:B7:00:00",
        ] {
            let e = parse_bdaddr(bad).unwrap_err().to_string();
            assert!(e.starts_with("--bdaddr"), "{e}");
        }
    }

    fn config(argv: &[&str]) -> Result<BtConfig> {
        use clap::Parser;
        let mut all = vec![
            "vhost-device-bluetooth",
            "--socket-path",
            "/tmp/unused.sock",
        ];
        all.extend(argv);
        BtConfig::from_args(&args::Args::try_parse_from(all).unwrap())
    }

    #[test]
    fn command_lines() {
        let c = config(&["--socket-count", "3", "--bdaddr", "52:54:00:00:00:fe"]).unwrap();
        let names: Vec<_> = c.identities.iter().map(|i| i.name.clone()).collect();
        assert_eq!(
            names,
            [
                "vhost-device-bluetooth-0",
                "vhost-device-bluetooth-1",
                "vhost-device-bluetooth-2"
            ]
        );
        assert_eq!(format_bdaddr(&c.identities[2].addr), "52:54:00:00:01:00");
        for (argv, needle) in [
            (&["--aosp"][..], "no vendor commands"),
            (
                &["--socket-count", "2", "--backend", "unix:/a"],
                "1 entries for --socket-count 2",
            ),
            (&["--rx-backlog", "0"], "--rx-backlog"),
            (
                &["--backend", "builtin,unix:/a"],
                "2 entries for --socket-count 1",
            ),
        ] {
            let e = config(argv).unwrap_err().to_string();
            assert!(e.contains(needle), "{argv:?}: {e}");
            assert!(!e.contains('\n'));
        }
        let mixed = config(&[
            "--socket-count",
            "2",
            "--backend",
            "builtin,tcp:localhost:1",
        ]);
        assert_eq!(mixed.unwrap().guests.len(), 2);
    }

    #[test]
    fn backend_entries() {
        assert_eq!(BackendSpec::parse("builtin").unwrap(), BackendSpec::Builtin);
        let ext = |e| BackendSpec::External(e);
        assert_eq!(
            BackendSpec::parse("unix:/tmp/bt-server-bredrle").unwrap(),
            ext(Endpoint::Unix("/tmp/bt-server-bredrle".into()))
        );
        assert_eq!(
            BackendSpec::parse("tcp:localhost:6402").unwrap(),
            ext(Endpoint::Tcp("localhost:6402".into()))
        );
        assert_eq!(
            BackendSpec::parse("serial:/dev/ttyUSB0@115200").unwrap(),
            ext(Endpoint::Serial("/dev/ttyUSB0".into(), Some(115_200)))
        );
        assert_eq!(BackendSpec::parse("hci:1").unwrap(), ext(Endpoint::Hci(1)));
        assert_eq!(BackendSpec::parse("hci0").unwrap(), ext(Endpoint::Hci(0)));
        for bad in [
            "unix:",
            "tcp:host",
            "tcp::1",
            "tcp:h:99999",
            "serial:/dev/x@12",
            "serial:/dev/x@fast",
            "hci:x",
        ] {
            let e = BackendSpec::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("--backend"), "{e}");
        }
        BackendSpec::parse("").unwrap_err();
        BackendSpec::parse("bogus").unwrap_err();
    }
}
