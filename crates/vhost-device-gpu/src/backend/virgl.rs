// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! 3D through rutabaga_gfx's virglrenderer component (`--gpu-mode virgl`).
//!
//! Built with the cargo feature `virgl`. Rendering only works when
//! rutabaga_gfx itself is built with `virgl_renderer` (which links
//! virglrenderer >= 1.3); without it, the first command fails with
//! "rutabaga was built without virglrenderer" and the guest gets
//! ERR_UNSPEC.
//!
//! virglrenderer binds its GL context to the thread that initialised it,
//! so rutabaga is built lazily, on the first command, which the vring
//! worker thread handles; the device defers every other renderer call
//! (resets) to that thread too.

use std::collections::HashMap;
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use log::{info, warn};
use rutabaga_gfx::{
    Rutabaga, RutabagaBuilder, RutabagaFence, Transfer3D, RUTABAGA_CAPSET_VIRGL,
    RUTABAGA_CAPSET_VIRGL2,
};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::renderer::{
    rutabaga_create, rutabaga_iovecs, Create3d, Fence, HostIovec, Renderer, Renderer3d,
    RendererError, Transfer3d,
};
use super::virgl_handover;
use crate::protocol::Rect;

fn failed(e: impl std::fmt::Display) -> RendererError {
    RendererError::Failed(e.to_string())
}

/// The virgl renderer.
pub struct Virgl {
    capset_mask: u64,
    num_capsets: u32,
    rutabaga: Option<Rutabaga>,
    signalled: Arc<Mutex<Vec<Fence>>>,
    fence_event: EventFd,
    poll: Option<OwnedFd>,
    widths: HashMap<u32, u32>,
}

impl std::fmt::Debug for Virgl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Virgl")
            .field("capset_mask", &self.capset_mask)
            .field("started", &self.rutabaga.is_some())
            .finish_non_exhaustive()
    }
}

// SAFETY: `Rutabaga` is not `Send` because virglrenderer's GL context
// belongs to the thread that has it current. `Virgl` gets it lazily on its
// first use (started, or taken over and made current on this thread), the
// device calls a renderer only from the vring worker (reset work is
// deferred to it), and the worker gives it up before it ends (`release`),
// so the value moves between threads only while it holds no rutabaga.
// The fence list is behind a mutex.
unsafe impl Send for Virgl {}

impl Virgl {
    /// A virgl renderer offering `virgl` (capset 1) and/or `virgl2`
    /// (capset 2). virglrenderer is only started on first use.
    pub fn new(virgl: bool, virgl2: bool) -> Result<Self, RendererError> {
        // rutabaga picks its virglrenderer component by the virgl2 bit.
        let mut mask = 1u64 << RUTABAGA_CAPSET_VIRGL2;
        if virgl {
            mask |= 1 << RUTABAGA_CAPSET_VIRGL;
        }
        if !virgl2 && !virgl {
            return Err(RendererError::Failed("no capset selected".into()));
        }
        Ok(Virgl {
            capset_mask: mask,
            num_capsets: mask.count_ones(),
            rutabaga: None,
            signalled: Arc::default(),
            fence_event: EventFd::new(EFD_NONBLOCK).map_err(failed)?,
            poll: None,
            widths: HashMap::new(),
        })
    }

    fn rutabaga(&mut self) -> Result<&mut Rutabaga, RendererError> {
        if self.rutabaga.is_none() {
            let rutabaga =
                match virgl_handover::take() {
                    Some(r) => r,
                    None if virgl_handover::started() => return Err(RendererError::Failed(
                        "virglrenderer serves one guest at a time, and another connection has it"
                            .into(),
                    )),
                    None => self.start()?,
                };
            virgl_handover::set_sink(
                self.signalled.clone(),
                self.fence_event.try_clone().map_err(failed)?,
            );
            self.poll = rutabaga
                .poll_descriptor()
                .and_then(|d| d.as_fd().try_clone_to_owned().ok());
            self.rutabaga = Some(rutabaga);
        }
        self.rutabaga
            .as_mut()
            .ok_or_else(|| RendererError::Failed("virglrenderer did not start".into()))
    }

    /// Starts virglrenderer (once per process, see `virgl_handover`).
    fn start(&self) -> Result<Rutabaga, RendererError> {
        let rutabaga = RutabagaBuilder::new(self.capset_mask, virgl_handover::fence_handler())
            .set_use_egl(true)
            .set_use_gles(true)
            .set_use_surfaceless(true)
            .build()
            .map_err(|e| {
                RendererError::Failed(format!(
                    "starting virglrenderer: {e} (is rutabaga_gfx built with virgl_renderer?)"
                ))
            })?;
        // rutabaga falls back to its 2D component when virglrenderer
        // does not start; we have offered 3D, so that is a failure.
        if rutabaga.get_num_capsets() == 0 {
            return Err(RendererError::Failed(
                "virglrenderer did not start (rutabaga fell back to 2D)".into(),
            ));
        }
        virgl_handover::mark_started();
        info!(
            "virglrenderer started, {} capsets",
            rutabaga.get_num_capsets()
        );
        Ok(rutabaga)
    }
}

impl Renderer for Virgl {
    /// virglrenderer's cleanup makes its GL context current, which only
    /// works on the thread that has it: on another thread (where the device
    /// is dropped) EGL refuses and libepoxy aborts the daemon.
    /// It also stays alive for the next connection (rutabaga starts it
    /// once per process): parked, see `virgl_handover`.
    fn release(&mut self) {
        self.poll = None;
        self.widths.clear();
        if let Some(rutabaga) = self.rutabaga.take() {
            virgl_handover::park(rutabaga);
        }
    }

    fn create_2d(
        &mut self,
        id: u32,
        width: u32,
        height: u32,
        format: u32,
    ) -> Result<(), RendererError> {
        let create = Create3d::texture_2d(width, height, format);
        self.create_3d(id, &create)
    }

    fn unref(&mut self, id: u32) -> Result<(), RendererError> {
        self.widths.remove(&id);
        self.rutabaga()?.unref_resource(id).map_err(failed)
    }

    unsafe fn attach_backing(
        &mut self,
        id: u32,
        iovecs: Vec<HostIovec>,
    ) -> Result<(), RendererError> {
        let vecs = rutabaga_iovecs(iovecs);
        self.rutabaga()?.attach_backing(id, vecs).map_err(failed)
    }

    fn detach_backing(&mut self, id: u32) -> Result<(), RendererError> {
        self.rutabaga()?.detach_backing(id).map_err(failed)
    }

    fn transfer_to_host(&mut self, id: u32, rect: Rect, offset: u64) -> Result<(), RendererError> {
        // virglrenderer takes the offset of the rectangle's first pixel, as
        // the protocol does.
        let transfer = Transfer3D::new_2d(rect.x, rect.y, rect.width, rect.height, offset);
        self.rutabaga()?
            .transfer_write(0, id, transfer, None)
            .map_err(failed)
    }

    fn read_rect(&mut self, id: u32, rect: Rect, out: &mut Vec<u8>) -> Result<(), RendererError> {
        let len =
            usize::try_from(u64::from(rect.width) * u64::from(rect.height) * 4).map_err(failed)?;
        // The read fills all `len` bytes: a reused buffer need not be
        // zeroed first (clearing it would write the frame once more).
        out.resize(len, 0);
        let mut transfer = Transfer3D::new_2d(rect.x, rect.y, rect.width, rect.height, 0);
        transfer.stride = rect.width * 4;
        self.rutabaga()?
            .transfer_read(0, id, transfer, Some(IoSliceMut::new(out)))
            .map_err(failed)
    }

    fn is_3d(&self) -> bool {
        true
    }

    fn num_capsets(&self) -> u32 {
        self.num_capsets
    }

    fn three_d(&mut self) -> Option<&mut dyn Renderer3d> {
        Some(self)
    }
}

impl Renderer3d for Virgl {
    fn capset_info(&mut self, index: u32) -> Result<(u32, u32, u32), RendererError> {
        self.rutabaga()?.get_capset_info(index).map_err(failed)
    }

    fn capset(&mut self, id: u32, version: u32) -> Result<Vec<u8>, RendererError> {
        self.rutabaga()?.get_capset(id, version).map_err(failed)
    }

    fn create_context(&mut self, ctx_id: u32, init: u32, name: &str) -> Result<(), RendererError> {
        self.rutabaga()?
            .create_context(ctx_id, init, Some(name))
            .map_err(failed)
    }

    fn destroy_context(&mut self, ctx_id: u32) -> Result<(), RendererError> {
        self.rutabaga()?.destroy_context(ctx_id).map_err(failed)
    }

    fn attach(&mut self, ctx_id: u32, resource_id: u32) -> Result<(), RendererError> {
        self.rutabaga()?
            .context_attach_resource(ctx_id, resource_id)
            .map_err(failed)
    }

    fn detach(&mut self, ctx_id: u32, resource_id: u32) -> Result<(), RendererError> {
        self.rutabaga()?
            .context_detach_resource(ctx_id, resource_id)
            .map_err(failed)
    }

    fn create_3d(&mut self, resource_id: u32, c: &Create3d) -> Result<(), RendererError> {
        let create = rutabaga_create(c);
        self.rutabaga()?
            .resource_create_3d(resource_id, create)
            .map_err(failed)?;
        self.widths.insert(resource_id, c.width);
        Ok(())
    }

    fn transfer_to_host_3d(
        &mut self,
        ctx_id: u32,
        resource_id: u32,
        t: &Transfer3d,
    ) -> Result<(), RendererError> {
        let transfer = to_rutabaga(t);
        self.rutabaga()?
            .transfer_write(ctx_id, resource_id, transfer, None)
            .map_err(failed)
    }

    fn transfer_from_host_3d(
        &mut self,
        ctx_id: u32,
        resource_id: u32,
        t: &Transfer3d,
    ) -> Result<(), RendererError> {
        let transfer = to_rutabaga(t);
        self.rutabaga()?
            .transfer_read(ctx_id, resource_id, transfer, None)
            .map_err(failed)
    }

    fn submit(&mut self, ctx_id: u32, commands: &mut [u8]) -> Result<(), RendererError> {
        self.rutabaga()?
            .submit_command(ctx_id, commands, &[])
            .map_err(failed)
    }

    fn create_fence(&mut self, fence: Fence) -> Result<(), RendererError> {
        let f = RutabagaFence {
            flags: fence.flags,
            fence_id: fence.id,
            ctx_id: fence.ctx_id,
            ring_idx: fence.ring_idx,
        };
        self.rutabaga()?.create_fence(f).map_err(failed)
    }

    fn signalled(&mut self) -> Vec<Fence> {
        let _ = self.fence_event.read();
        match self.signalled.lock() {
            Ok(mut v) => std::mem::take(&mut *v),
            Err(e) => {
                warn!("fence list poisoned: {e}");
                Vec::new()
            }
        }
    }

    fn fence_fd(&self) -> Option<RawFd> {
        Some(self.fence_event.as_raw_fd())
    }

    fn poll_fd(&self) -> Option<RawFd> {
        self.poll.as_ref().map(AsRawFd::as_raw_fd)
    }

    fn event_poll(&mut self) {
        if let Some(r) = &self.rutabaga {
            r.event_poll();
        }
    }
}

fn to_rutabaga(t: &Transfer3d) -> Transfer3D {
    let [x, y, z, w, h, d] = t.bx;
    Transfer3D {
        x,
        y,
        z,
        w,
        h,
        d,
        level: t.level,
        stride: t.stride,
        layer_stride: t.layer_stride,
        offset: t.offset,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn without_virglrenderer_commands_fail_cleanly() {
        let mut v = Virgl::new(true, true).unwrap();
        assert!(v.is_3d());
        assert_eq!(v.num_capsets(), 2);
        let _ = Virgl::new(false, false).unwrap_err();
        // Without rutabaga's virgl_renderer (or without a GPU) starting
        // fails with an error naming virglrenderer, never a panic.
        if let Err(e) = v.create_2d(1, 4, 4, 1) {
            assert!(e.to_string().contains("virglrenderer"), "{e}");
        }
    }
}
