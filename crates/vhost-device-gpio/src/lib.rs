// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! vhost-user backend for virtio-gpio (device ID 41).
//!
//! - [`protocol`]: the wire format (virtio 1.3 §5.18); [`request`]: the
//!   typed decode of a request.
//! - [`device`]: the virtio device: decodes, dispatches and completes.
//! - [`lines`]: the lines' state and interrupt delivery (edge and level),
//!   over any [`backend::GpioBackend`], testable with no queue.
//! - [`backend`]: real chips through `gpiocdev`, and a simulated chip whose
//!   inputs a control socket drives.
//! - [`args`], [`control`]: the command line and the control-socket client.
//!
//! [`GpioConfig`] turns the command line into one device per guest.

pub mod args;
pub mod backend;
pub mod control;
pub mod device;
pub mod error;
pub mod lines;
pub mod protocol;
pub mod request;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use backend::cdev::CdevChip;
use backend::sim::{SimChip, SimWorld, MAX_SIM_LINES};
use backend::GpioBackend;
pub use device::GpioDevice;
pub use error::{Error, Result};
use vhost_device_common::{FsAccess, FsRule, SandboxPolicy};

/// The device type every guest gets.
pub type Device = GpioDevice<Box<dyn GpioBackend>>;

/// One `--device-list` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChipSpec {
    /// `/dev/gpiochipN`.
    Number(u32),
    /// A GPIO character device path.
    Path(PathBuf),
    /// The chip with this label, followed to another node if it goes away
    /// and comes back elsewhere.
    Label(String),
    /// A simulated chip with this many lines.
    Sim(u16),
}

impl ChipSpec {
    /// Parses one entry.
    pub fn parse(entry: &str) -> Result<Self> {
        let bad = |reason: String| Error::DeviceList {
            entry: entry.to_owned(),
            reason,
        };
        if entry.is_empty() {
            return Err(bad("empty entry".into()));
        }
        if let Some(label) = entry.strip_prefix("label=") {
            if label.is_empty() {
                return Err(bad("empty label".into()));
            }
            return Ok(ChipSpec::Label(label.to_owned()));
        }
        if entry.starts_with('/') {
            return Ok(ChipSpec::Path(PathBuf::from(entry)));
        }
        if entry.bytes().all(|b| b.is_ascii_digit()) {
            return entry
                .parse()
                .map(ChipSpec::Number)
                .map_err(|_| bad("chip number too large".into()));
        }
        if let Some(count) = entry.strip_prefix('s') {
            if !count.is_empty() && count.bytes().all(|b| b.is_ascii_digit()) {
                return match count.parse::<u16>() {
                    Ok(n) if (1..=MAX_SIM_LINES).contains(&n) => Ok(ChipSpec::Sim(n)),
                    _ => Err(bad(format!(
                        "a simulated chip has 1 to {MAX_SIM_LINES} lines"
                    ))),
                };
            }
        }
        if entry.chars().any(char::is_whitespace) {
            return Err(bad("not a chip number, sN, path or label".into()));
        }
        Ok(ChipSpec::Label(entry.to_owned()))
    }
}

/// Splits and parses a `--device-list`: on commas if there is one, else on
/// colons (upstream's syntax).
pub fn parse_device_list(list: &str) -> Result<Vec<ChipSpec>> {
    let separator = if list.contains(',') { ',' } else { ':' };
    let mut entries: Vec<&str> = list.split(separator).map(str::trim).collect();
    // "label:with:colons," names one chip.
    if separator == ',' && entries.len() > 1 && entries.last() == Some(&"") {
        entries.pop();
    }
    entries.into_iter().map(ChipSpec::parse).collect()
}

/// A guest's chip, resolved at startup.
#[derive(Debug)]
enum GuestChip {
    /// A real chip, at its node at startup; `label` if the user named it by
    /// label, to be followed to another node.
    Real {
        path: PathBuf,
        label: Option<String>,
    },
    Sim(Arc<SimWorld>),
}

/// Everything needed to build each guest's device, checked at startup so
/// that mistakes are reported before any guest connects.
#[derive(Debug)]
pub struct GpioConfig {
    guests: Vec<GuestChip>,
    controls: Vec<vhost_device_common::SocketFileGuard>,
}

impl GpioConfig {
    /// Validates the command line, opens the real chips once to check them,
    /// creates the simulated chips and starts their control sockets.
    pub fn from_args(args: &args::Args) -> Result<Self> {
        let list = args
            .device_list
            .as_deref()
            .ok_or_else(|| Error::DeviceListShape("missing".into()))?;
        let specs = parse_device_list(list)?;
        let count = usize::from(args.socket.socket_count);
        if specs.len() != count {
            return Err(Error::DeviceListShape(format!(
                "{} entries for --socket-count {count}: give one chip per guest",
                specs.len()
            )));
        }
        if args.sim_control.is_some() && !specs.iter().any(|s| matches!(s, ChipSpec::Sim(_))) {
            return Err(Error::Flag {
                flag: "--sim-control",
                reason: "no simulated chip (sN) in --device-list".into(),
            });
        }
        let mut guests = Vec::with_capacity(count);
        let mut controls = Vec::new();
        let mut real: Vec<(PathBuf, String)> = Vec::new();
        for (index, spec) in specs.iter().enumerate() {
            let entry = match spec {
                ChipSpec::Number(n) => n.to_string(),
                ChipSpec::Path(p) => p.display().to_string(),
                ChipSpec::Label(l) => l.clone(),
                ChipSpec::Sim(n) => format!("s{n}"),
            };
            let path = match spec {
                ChipSpec::Sim(lines) => {
                    let world = SimWorld::new(*lines, "sim-line-")?;
                    if let Some(base) = &args.sim_control {
                        let path = indexed_path(base, index, count);
                        controls.push(world.serve_control(&path)?);
                    }
                    guests.push(GuestChip::Sim(world));
                    continue;
                }
                ChipSpec::Number(n) => PathBuf::from(format!("/dev/gpiochip{n}")),
                ChipSpec::Path(p) => p.clone(),
                ChipSpec::Label(label) => backend::cdev::find_by_label(label)?,
            };
            let chip = CdevChip::open(&path).map_err(|e| Error::DeviceList {
                entry: entry.clone(),
                reason: e.to_string(),
            })?;
            let canonical = std::fs::canonicalize(chip.path()).unwrap_or_else(|_| path.clone());
            if let Some((_, first)) = real.iter().find(|(p, _)| *p == canonical) {
                return Err(Error::DeviceList {
                    entry,
                    reason: format!("the same chip as entry '{first}': a chip serves one guest"),
                });
            }
            real.push((canonical, entry));
            let label = match spec {
                ChipSpec::Label(label) => Some(label.clone()),
                _ => None,
            };
            guests.push(GuestChip::Real { path, label });
        }
        Ok(GpioConfig { guests, controls })
    }

    /// What the daemon needs once set up: the directory of the real chips'
    /// device nodes (`/dev`), read-only with ioctls, and the directories of
    /// the control sockets (removed at exit). Simulated chips need nothing.
    ///
    /// The chips are opened for each connection, and again when one comes
    /// back after it went away; a node created again is a new file, which a
    /// rule on the old node would not cover, and a chip named by label is
    /// looked for by opening `/dev/gpiochip0` to `/dev/gpiochip63` in turn
    /// (the rule does not let the daemon list `/dev`). gpiocdev opens chips
    /// read-only and does everything else with ioctls, so nothing under
    /// `/dev` can be written.
    pub fn sandbox_policy(&self) -> SandboxPolicy {
        let mut dirs: Vec<PathBuf> = Vec::new();
        for guest in &self.guests {
            if let GuestChip::Real { path, .. } = guest {
                let node = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
                let dir = node
                    .parent()
                    .map_or_else(|| node.clone(), Path::to_path_buf);
                if !dirs.contains(&dir) {
                    dirs.push(dir);
                }
            }
        }
        let chips = dirs
            .into_iter()
            .map(|dir| FsRule::new(dir, FsAccess::DeviceIoctl));
        let controls = self
            .controls
            .iter()
            .filter_map(|c| c.path().parent())
            .map(|dir| FsRule::new(dir, FsAccess::Sockets));
        let mut policy = SandboxPolicy::of::<Device>();
        policy.paths.extend(chips.chain(controls));
        policy
    }

    /// Builds guest `index`'s device, afresh for each connection. A chip
    /// named by label is looked for again if it is no longer at its node.
    pub fn build_device(&self, index: usize) -> Result<Device> {
        let backend: Box<dyn GpioBackend> = match self.guests.get(index) {
            Some(GuestChip::Real {
                path,
                label: Some(label),
            }) => Box::new(CdevChip::open_label(label, path)?),
            Some(GuestChip::Real { path, label: None }) => Box::new(CdevChip::open(path)?),
            Some(GuestChip::Sim(world)) => Box::new(SimChip::new(world.clone())),
            None => return Err(Error::NoChip(index)),
        };
        Ok(GpioDevice::new(backend))
    }
}

/// `base` for one guest, `base<i>` for several, as the socket paths go.
fn indexed_path(base: &Path, index: usize, count: usize) -> PathBuf {
    if count == 1 {
        base.to_owned()
    } else {
        let mut name = base.as_os_str().to_owned();
        name.push(index.to_string());
        PathBuf::from(name)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn device_list_syntax() {
        assert_eq!(
            parse_device_list("3:s4:6:s1").unwrap(),
            [
                ChipSpec::Number(3),
                ChipSpec::Sim(4),
                ChipSpec::Number(6),
                ChipSpec::Sim(1)
            ]
        );
        assert_eq!(
            parse_device_list("s2, /dev/gpiochip1 ,label=a:b,gpio-sim.0-node0").unwrap(),
            [
                ChipSpec::Sim(2),
                ChipSpec::Path("/dev/gpiochip1".into()),
                ChipSpec::Label("a:b".into()),
                ChipSpec::Label("gpio-sim.0-node0".into())
            ]
        );
        assert_eq!(
            parse_device_list("INT34C6:00,").unwrap(),
            [ChipSpec::Label("INT34C6:00".into())]
        );
        assert_eq!(
            parse_device_list("sensor").unwrap(),
            [ChipSpec::Label("sensor".into())]
        );
        for (bad, needle) in [
            ("", "empty entry"),
            ("1::2", "empty entry"),
            ("1,,2", "empty entry"),
            ("s0", "1 to 1024"),
            ("s1025", "1 to 1024"),
            ("s99999", "1 to 1024"),
            ("99999999999", "too large"),
            ("label=", "empty label"),
            ("two words", "not a chip"),
        ] {
            let e = parse_device_list(bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad}: {e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn control_paths_follow_the_socket_suffixes() {
        assert_eq!(indexed_path(Path::new("/t/c"), 0, 1), Path::new("/t/c"));
        assert_eq!(indexed_path(Path::new("/t/c"), 2, 3), Path::new("/t/c2"));
    }
}
