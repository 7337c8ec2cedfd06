// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The host side of the GPU, behind two seams.
//!
//! - [`renderer`]: where resources live and pixels are copied. The real
//!   implementation is rutabaga_gfx's software 2D component; with the
//!   `virgl` cargo feature, rutabaga_gfx's virglrenderer component.
//! - [`display`]: where finished frames go. The real one is QEMU's
//!   vhost-user-gpu socket, served from its own thread; headless mode has
//!   none. Unit tests drive the device without either thread.

pub mod display;
pub mod renderer;
#[cfg(test)]
pub mod sim;
#[cfg(feature = "virgl")]
pub mod virgl;
#[cfg(feature = "virgl")]
mod virgl_handover;

pub use display::{DisplayReply, DisplayRequest, DisplayThread};
pub use renderer::{
    Create3d, Fence, HostIovec, Renderer, Renderer3d, RendererError, Rutabaga2d, Transfer3d,
};
