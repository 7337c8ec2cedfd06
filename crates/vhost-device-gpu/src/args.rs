// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Command line.

use clap::{Parser, ValueEnum};
use vhost_device_common::SocketArgs;

use crate::device::{GpuConfig, GpuMode};
use crate::edid::MAX_DIMENSION;
use crate::protocol::MAX_SCANOUTS;
use crate::Error;

/// `--gpu-mode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// Software 2D through rutabaga_gfx: no host GPU, no system library.
    #[value(name = "2d")]
    TwoD,
    /// 3D through virglrenderer (needs the `virgl` cargo feature and
    /// virglrenderer >= 1.3).
    #[value(name = "virgl", alias = "virglrenderer", alias = "virgl-renderer")]
    Virgl,
}

/// `--capset` values (upstream vhost-device-gpu's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CapsetArg {
    /// virgl (capset 1), virgl mode only.
    Virgl,
    /// virgl2 (capset 2), virgl mode only.
    Virgl2,
}

/// A `WxH` display mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resolution {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl std::str::FromStr for Resolution {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (w, h) = s
            .split_once(['x', 'X'])
            .ok_or_else(|| format!("'{s}' is not WIDTHxHEIGHT"))?;
        let parse = |v: &str| {
            v.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (16..=MAX_DIMENSION).contains(n))
                .ok_or_else(|| format!("'{v}' in '{s}' is not a size from 16 to {MAX_DIMENSION}"))
        };
        Ok(Resolution {
            width: parse(w)?,
            height: parse(h)?,
        })
    }
}

/// vhost-user virtio-gpu backend: a software 2D GPU whose scanouts QEMU
/// displays (vhost-user-gpu-pci, vhost-user-vga).
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
pub struct Args {
    /// Listening sockets.
    #[command(flatten)]
    pub socket: SocketArgs,

    /// Rendering mode: `2d` renders in software (default); `virgl` needs a
    /// build with the `virgl` feature.
    #[arg(long, short = 'g', value_enum, default_value = "2d")]
    pub gpu_mode: ModeArg,

    /// Capability sets offered to the guest (comma-separated); only
    /// meaningful with `--gpu-mode virgl`, where the default is all of them.
    #[arg(long, short = 'c', value_enum, value_delimiter = ',')]
    pub capset: Vec<CapsetArg>,

    /// Display mode of a scanout, WIDTHxHEIGHT; repeat for more scanouts
    /// (up to 16). Reported to the guest when the frontend gives no display
    /// information of its own (headless, or no display socket yet).
    #[arg(long, value_name = "WxH", default_value = "1280x800")]
    pub resolution: Vec<Resolution>,

    /// Offer EDID (VIRTIO_GPU_F_EDID) to the guest (the default).
    #[arg(long, overrides_with = "no_edid")]
    pub edid: bool,

    /// Do not offer EDID.
    #[arg(long, overrides_with = "edid")]
    pub no_edid: bool,

    /// Render and answer, but never use the frontend's display socket.
    #[arg(long)]
    pub headless: bool,

    /// Host memory all resources of one guest may use, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub max_hostmem: u64,
}

impl Args {
    /// The device configuration these arguments ask for.
    pub fn config(&self) -> Result<GpuConfig, Error> {
        if self.resolution.len() > MAX_SCANOUTS {
            return Err(Error::TooManyScanouts(self.resolution.len()));
        }
        let mode = match self.gpu_mode {
            ModeArg::TwoD => {
                if !self.capset.is_empty() {
                    return Err(Error::CapsetWithout2d);
                }
                GpuMode::TwoD
            }
            ModeArg::Virgl => {
                if !cfg!(feature = "virgl") {
                    return Err(Error::VirglNotBuilt);
                }
                GpuMode::Virgl
            }
        };
        Ok(GpuConfig {
            mode,
            modes: self
                .resolution
                .iter()
                .map(|r| (r.width, r.height))
                .collect(),
            edid: !self.no_edid,
            headless: self.headless,
            max_hostmem: self.max_hostmem << 20,
            capsets: self
                .capset
                .iter()
                .map(|c| match c {
                    CapsetArg::Virgl => 1,
                    CapsetArg::Virgl2 => 2,
                })
                .collect(),
        })
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::assertions_on_result_states
)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        let mut full = vec!["vhost-device-gpu", "--socket-path", "/tmp/x.sock"];
        full.extend_from_slice(args);
        Args::try_parse_from(full)
    }

    #[test]
    fn defaults() {
        let cfg = parse(&[]).unwrap().config().unwrap();
        assert_eq!(cfg, GpuConfig::default());
    }

    #[test]
    fn several_resolutions_and_no_edid() {
        let cfg = parse(&[
            "--resolution",
            "800x600",
            "--resolution",
            "1024x768",
            "--no-edid",
        ])
        .unwrap()
        .config()
        .unwrap();
        assert_eq!(cfg.modes, vec![(800, 600), (1024, 768)]);
        assert!(!cfg.edid);
        let cfg = parse(&["--headless", "--edid"]).unwrap().config().unwrap();
        assert!(cfg.edid && cfg.headless);
        // The last of --edid / --no-edid wins.
        let cfg = parse(&["--edid", "--no-edid"]).unwrap().config().unwrap();
        assert!(!cfg.edid);
        let cfg = parse(&["--no-edid", "--edid"]).unwrap().config().unwrap();
        assert!(cfg.edid);
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse(&["--resolution", "800"]).is_err());
        assert!(parse(&["--resolution", "8x600"]).is_err());
        assert!(parse(&["--resolution", "5000x600"]).is_err());
        assert!(parse(&["--gpu-mode", "3d"]).is_err());
        assert!(parse(&["--max-hostmem", "0"]).is_err());
        let many: Vec<&str> = std::iter::repeat_n(["--resolution", "640x480"], 17)
            .flatten()
            .collect();
        assert!(matches!(
            parse(&many).unwrap().config(),
            Err(Error::TooManyScanouts(17))
        ));
        assert!(matches!(
            parse(&["--capset", "virgl"]).unwrap().config(),
            Err(Error::CapsetWithout2d)
        ));
        #[cfg(not(feature = "virgl"))]
        assert!(matches!(
            parse(&["--gpu-mode", "virgl"]).unwrap().config(),
            Err(Error::VirglNotBuilt)
        ));
    }
}
