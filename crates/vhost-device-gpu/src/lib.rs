// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! vhost-user virtio-gpu backend (virtio device ID 16).
//!
//! [`device::GpuDevice`] implements the 2D command set on a
//! [`backend::Renderer`] (rutabaga_gfx's software 2D component) and sends
//! scanouts to QEMU's display over the vhost-user-gpu socket
//! ([`backend::DisplayThread`]).

pub mod args;
pub mod backend;
pub mod device;
pub mod edid;
pub mod heap;
pub mod protocol;

// The unit tests run on the daemon's allocator, so that what they check of
// rutabaga's buffers holds for the daemon.
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: heap::PageAlignLarge = heap::PageAlignLarge;

pub use args::Args;
pub use device::{GpuConfig, GpuDevice, GpuMode};

/// What can go wrong before the daemon serves.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// More `--resolution` flags than scanouts.
    #[error("{0} --resolution flags given, but a GPU has at most 16 scanouts")]
    TooManyScanouts(usize),
    /// `--capset` in 2D mode.
    #[error("--capset needs --gpu-mode virgl: the 2D mode has no capability sets")]
    CapsetWithout2d,
    /// `--gpu-mode virgl` in a build without it.
    #[error("--gpu-mode virgl: this binary was built without the `virgl` feature (cargo build --features virgl,rutabaga_gfx/virgl_renderer; needs virglrenderer >= 1.3)")]
    VirglNotBuilt,
    /// The renderer could not start.
    #[error("cannot start the renderer: {0}")]
    Renderer(#[from] backend::RendererError),
}

/// Builds the renderer `cfg` asks for.
pub fn make_renderer(cfg: &GpuConfig) -> Result<Box<dyn backend::Renderer>, Error> {
    match cfg.mode {
        GpuMode::TwoD => Ok(Box::new(backend::Rutabaga2d::new()?)),
        #[cfg(feature = "virgl")]
        GpuMode::Virgl => {
            let all = cfg.capsets.is_empty();
            Ok(Box::new(backend::virgl::Virgl::new(
                all || cfg.capsets.contains(&1),
                all || cfg.capsets.contains(&2),
            )?))
        }
        #[cfg(not(feature = "virgl"))]
        GpuMode::Virgl => Err(Error::VirglNotBuilt),
    }
}
