// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Resource storage and pixel copies.
//!
//! The device validates every guest value (ids, sizes, rectangles, backing
//! ranges) before calling a renderer, so a renderer error here means a host
//! problem, reported to the guest as ERR_UNSPEC.

use std::io::IoSliceMut;

use rutabaga_gfx::{
    ResourceCreate3D, Rutabaga, RutabagaBuilder, RutabagaComponentType, RutabagaFenceHandler,
    RutabagaIovec, Transfer3D,
};

use crate::protocol::Rect;

/// A piece of guest memory as the host sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostIovec {
    /// Host virtual address.
    pub base: *mut u8,
    /// Length in bytes.
    pub len: usize,
}

// SAFETY: a HostIovec is only an address and a length; whoever dereferences
// it (the renderer) relies on the guarantee of `Renderer::attach_backing`,
// which does not depend on the thread.
unsafe impl Send for HostIovec {}

/// A renderer failure.
#[derive(Debug, thiserror::Error)]
pub enum RendererError {
    /// The renderer refused or failed the operation.
    #[error("renderer: {0}")]
    Failed(String),
    /// The renderer does not implement it.
    #[error("not supported by this renderer")]
    Unsupported,
}

/// Where 2D resources live.
pub trait Renderer: Send {
    /// The vring worker, the thread that owns a 3D renderer's GL context,
    /// ends: tear the renderer down here, not where it is dropped.
    fn release(&mut self) {}

    /// Creates a `width`×`height` resource of 4-byte pixels.
    fn create_2d(
        &mut self,
        id: u32,
        width: u32,
        height: u32,
        format: u32,
    ) -> Result<(), RendererError>;

    /// Destroys a resource.
    fn unref(&mut self, id: u32) -> Result<(), RendererError>;

    /// Gives a resource its guest backing.
    ///
    /// # Safety
    ///
    /// Every iovec must stay valid for reads of `len` bytes until
    /// [`Self::detach_backing`] or [`Self::unref`] is called for `id`.
    unsafe fn attach_backing(
        &mut self,
        id: u32,
        iovecs: Vec<HostIovec>,
    ) -> Result<(), RendererError>;

    /// Takes the backing away.
    fn detach_backing(&mut self, id: u32) -> Result<(), RendererError>;

    /// Copies `rect` from the backing into the resource. `offset` is where
    /// the rectangle's first pixel sits in the backing, as QEMU and Linux
    /// use it; the stride is the resource's width × 4.
    fn transfer_to_host(&mut self, id: u32, rect: Rect, offset: u64) -> Result<(), RendererError>;

    /// Reads `rect` of the resource into `out` as `rect.width × 4`-byte
    /// rows, in the resource's own format.
    fn read_rect(&mut self, id: u32, rect: Rect, out: &mut Vec<u8>) -> Result<(), RendererError>;

    /// Whether this renderer does 3D (offers VIRGL and CONTEXT_INIT).
    fn is_3d(&self) -> bool {
        false
    }

    /// Number of capability sets.
    fn num_capsets(&self) -> u32 {
        0
    }

    /// The 3D half, if there is one.
    fn three_d(&mut self) -> Option<&mut dyn Renderer3d> {
        None
    }
}

/// A fence: the renderer signals it when the work submitted before it is
/// done.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fence {
    /// Fence id (monotonic per timeline).
    pub id: u64,
    /// `FLAG_FENCE` / `FLAG_INFO_RING_IDX`.
    pub flags: u32,
    /// Context (timeline with INFO_RING_IDX).
    pub ctx_id: u32,
    /// Ring (timeline with INFO_RING_IDX).
    pub ring_idx: u8,
}

pub use crate::protocol::{Create3d, Transfer3d};

/// `create` as rutabaga takes it.
pub(crate) fn rutabaga_create(c: &Create3d) -> ResourceCreate3D {
    ResourceCreate3D {
        target: c.target,
        format: c.format,
        bind: c.bind,
        width: c.width,
        height: c.height,
        depth: c.depth,
        array_size: c.array_size,
        last_level: c.last_level,
        nr_samples: c.nr_samples,
        flags: c.flags,
    }
}

/// Guest pieces as rutabaga takes them.
pub(crate) fn rutabaga_iovecs(iovecs: Vec<HostIovec>) -> Vec<RutabagaIovec> {
    iovecs
        .into_iter()
        .map(|v| RutabagaIovec {
            base: v.base.cast(),
            len: v.len,
        })
        .collect()
}

/// The 3D command set of a renderer (virgl).
pub trait Renderer3d {
    /// Capability set `index`: (id, max version, max size).
    fn capset_info(&mut self, index: u32) -> Result<(u32, u32, u32), RendererError>;
    /// Capability set data.
    fn capset(&mut self, id: u32, version: u32) -> Result<Vec<u8>, RendererError>;
    /// CTX_CREATE.
    fn create_context(&mut self, ctx_id: u32, init: u32, name: &str) -> Result<(), RendererError>;
    /// CTX_DESTROY.
    fn destroy_context(&mut self, ctx_id: u32) -> Result<(), RendererError>;
    /// CTX_ATTACH_RESOURCE.
    fn attach(&mut self, ctx_id: u32, resource_id: u32) -> Result<(), RendererError>;
    /// CTX_DETACH_RESOURCE.
    fn detach(&mut self, ctx_id: u32, resource_id: u32) -> Result<(), RendererError>;
    /// RESOURCE_CREATE_3D.
    fn create_3d(&mut self, resource_id: u32, create: &Create3d) -> Result<(), RendererError>;
    /// TRANSFER_TO_HOST_3D (from the guest backing).
    fn transfer_to_host_3d(
        &mut self,
        ctx_id: u32,
        resource_id: u32,
        transfer: &Transfer3d,
    ) -> Result<(), RendererError>;
    /// TRANSFER_FROM_HOST_3D (into the guest backing).
    fn transfer_from_host_3d(
        &mut self,
        ctx_id: u32,
        resource_id: u32,
        transfer: &Transfer3d,
    ) -> Result<(), RendererError>;
    /// SUBMIT_3D.
    fn submit(&mut self, ctx_id: u32, commands: &mut [u8]) -> Result<(), RendererError>;
    /// Asks to be told (through [`Self::signalled`]) when `fence` is done.
    fn create_fence(&mut self, fence: Fence) -> Result<(), RendererError>;
    /// Fences signalled since the last call.
    fn signalled(&mut self) -> Vec<Fence>;
    /// An fd readable when fences were signalled.
    fn fence_fd(&self) -> Option<std::os::fd::RawFd>;
    /// The renderer's own fd to poll, once it exists; when readable call
    /// [`Self::event_poll`].
    fn poll_fd(&self) -> Option<std::os::fd::RawFd>;
    /// Lets the renderer process its events (fence callbacks).
    fn event_poll(&mut self);
}

/// rutabaga_gfx's software 2D component: no host GPU, no system library.
pub struct Rutabaga2d {
    rutabaga: Rutabaga,
    widths: std::collections::HashMap<u32, u32>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Rutabaga2d {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rutabaga2d")
            .field("resources", &self.widths.len())
            .finish_non_exhaustive()
    }
}

// SAFETY: rutabaga's `Rutabaga` is not `Send` because it may hold 3D
// components and contexts bound to the thread that made them. Built as here,
// with only the 2D component and no context, it holds plain heap memory
// (resources as `Vec<u8>`), iovec addresses whose validity the
// `attach_backing` contract guarantees regardless of thread, and a fence
// handler that is `Send + Sync`. The device owning it sits behind a mutex, so
// it is never used from two threads at once.
unsafe impl Send for Rutabaga2d {}

fn failed(e: impl std::fmt::Display) -> RendererError {
    RendererError::Failed(e.to_string())
}

impl Rutabaga2d {
    /// Builds rutabaga with only its 2D component.
    pub fn new() -> Result<Self, RendererError> {
        // 2D work completes synchronously: the device answers fences itself.
        let fences = RutabagaFenceHandler::new(|_| {});
        let rutabaga = RutabagaBuilder::new(0, fences)
            .set_default_component(RutabagaComponentType::Rutabaga2D)
            .build()
            .map_err(failed)?;
        Ok(Rutabaga2d {
            rutabaga,
            widths: Default::default(),
            scratch: Vec::new(),
        })
    }
}

impl Renderer for Rutabaga2d {
    fn create_2d(
        &mut self,
        id: u32,
        width: u32,
        height: u32,
        format: u32,
    ) -> Result<(), RendererError> {
        // A 2D guest's resource is a one-level render-target texture.
        let create = rutabaga_create(&Create3d::texture_2d(width, height, format));
        self.rutabaga
            .resource_create_3d(id, create)
            .map_err(failed)?;
        self.widths.insert(id, width);
        Ok(())
    }

    fn unref(&mut self, id: u32) -> Result<(), RendererError> {
        self.widths.remove(&id);
        self.rutabaga.unref_resource(id).map_err(failed)
    }

    unsafe fn attach_backing(
        &mut self,
        id: u32,
        iovecs: Vec<HostIovec>,
    ) -> Result<(), RendererError> {
        let vecs = rutabaga_iovecs(iovecs);
        self.rutabaga.attach_backing(id, vecs).map_err(failed)
    }

    fn detach_backing(&mut self, id: u32) -> Result<(), RendererError> {
        self.rutabaga.detach_backing(id).map_err(failed)
    }

    fn transfer_to_host(&mut self, id: u32, rect: Rect, offset: u64) -> Result<(), RendererError> {
        // rutabaga adds the rectangle's own position to the offset it is
        // given, so hand it only what lies beyond that.
        let width = *self.widths.get(&id).ok_or(RendererError::Unsupported)?;
        let base = u64::from(rect.y) * u64::from(width) * 4 + u64::from(rect.x) * 4;
        let extra = offset.checked_sub(base).ok_or_else(|| {
            RendererError::Failed(format!(
                "offset {offset} lies before the rectangle's position {base} in the backing"
            ))
        })?;
        let transfer = Transfer3D::new_2d(rect.x, rect.y, rect.width, rect.height, extra);
        self.rutabaga
            .transfer_write(0, id, transfer, None)
            .map_err(failed)
    }

    fn read_rect(&mut self, id: u32, rect: Rect, out: &mut Vec<u8>) -> Result<(), RendererError> {
        // rutabaga writes the rectangle at its own position in a buffer of
        // the given stride; with a stride of the rectangle's width the rows
        // land packed, after `skip` bytes.
        let row = usize::try_from(rect.width).map_err(failed)? * 4;
        let rows = usize::try_from(rect.height).map_err(failed)?;
        let skip = usize::try_from(rect.y).map_err(failed)? * row
            + usize::try_from(rect.x).map_err(failed)? * 4;
        let len = row * rows;
        self.scratch.resize(skip + len, 0);
        let mut transfer = Transfer3D::new_2d(rect.x, rect.y, rect.width, rect.height, 0);
        transfer.stride = rect.width * 4;
        self.rutabaga
            .transfer_read(0, id, transfer, Some(IoSliceMut::new(&mut self.scratch)))
            .map_err(failed)?;
        out.clear();
        out.extend_from_slice(self.scratch.get(skip..skip + len).unwrap_or_default());
        Ok(())
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

    #[test]
    fn create_attach_transfer_read_back() {
        let mut r = Rutabaga2d::new().unwrap();
        r.create_2d(1, 4, 3, 2).unwrap();
        // Backing: pixel (x, y) = [x, y, 0x55, 0xff].
        let mut backing: Vec<u8> = (0..12u8).flat_map(|i| [i % 4, i / 4, 0x55, 0xff]).collect();
        let iov = HostIovec {
            base: backing.as_mut_ptr(),
            len: backing.len(),
        };
        // SAFETY: `backing` outlives the resource (unref below).
        unsafe { r.attach_backing(1, vec![iov]).unwrap() };
        let rect = Rect {
            x: 1,
            y: 1,
            width: 2,
            height: 2,
        };
        r.transfer_to_host(1, rect, 4 * 4 + 4).unwrap();
        let mut out = Vec::new();
        r.read_rect(1, rect, &mut out).unwrap();
        assert_eq!(
            out,
            vec![1, 1, 0x55, 0xff, 2, 1, 0x55, 0xff, 1, 2, 0x55, 0xff, 2, 2, 0x55, 0xff]
        );
        // Outside the transferred rectangle the resource is still zero.
        r.read_rect(
            1,
            Rect {
                x: 0,
                y: 0,
                width: 1,
                height: 1,
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(out, vec![0, 0, 0, 0]);
        r.unref(1).unwrap();
    }
}
