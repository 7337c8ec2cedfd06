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
pub mod error;
pub mod heap;
pub mod protocol;

// The unit tests run on the daemon's allocator, so that what they check of
// rutabaga's buffers holds for the daemon.
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: heap::PageAlignLarge = heap::PageAlignLarge;

pub use args::Args;
pub use device::{GpuConfig, GpuDevice, GpuMode};
pub use error::Error;

/// Builds the renderer `cfg` asks for.
pub fn make_renderer(cfg: &GpuConfig) -> Result<Box<dyn backend::Renderer>, Error> {
    match cfg.mode {
        GpuMode::TwoD => Ok(Box::new(
            backend::Rutabaga2d::new().map_err(Error::Renderer)?,
        )),
        #[cfg(feature = "virgl")]
        GpuMode::Virgl => {
            let all = cfg.capsets.is_empty();
            Ok(Box::new(
                backend::virgl::Virgl::new(
                    all || cfg.capsets.contains(&1),
                    all || cfg.capsets.contains(&2),
                )
                .map_err(Error::Renderer)?,
            ))
        }
        #[cfg(not(feature = "virgl"))]
        GpuMode::Virgl => Err(Error::VirglNotBuilt),
    }
}
