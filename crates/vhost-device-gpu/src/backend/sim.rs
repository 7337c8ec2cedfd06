// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A simulated 3D renderer for the device's unit tests: it records every
//! call and signals fences only when the test says so, so the device's 3D
//! command decoding and fence ordering are tested without virglrenderer.

use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, MutexGuard};

use super::renderer::{
    Create3d, Fence, HostIovec, Renderer, Renderer3d, RendererError, Transfer3d,
};
use crate::protocol::Rect;

/// What the simulated renderer was asked to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// CTX_CREATE.
    CreateContext(u32, u32, String),
    /// CTX_DESTROY.
    DestroyContext(u32),
    /// CTX_ATTACH_RESOURCE.
    Attach(u32, u32),
    /// CTX_DETACH_RESOURCE.
    Detach(u32, u32),
    /// RESOURCE_CREATE_3D / CREATE_2D.
    Create(u32, Create3d),
    /// RESOURCE_UNREF.
    Unref(u32),
    /// TRANSFER_TO_HOST_3D.
    ToHost(u32, u32, Transfer3d),
    /// TRANSFER_FROM_HOST_3D.
    FromHost(u32, u32, Transfer3d),
    /// SUBMIT_3D.
    Submit(u32, Vec<u8>),
    /// A fence was created.
    Fence(Fence),
}

/// What the simulated renderer saw, shared with the test.
#[derive(Debug, Default)]
pub struct SimState {
    /// Every call, in order.
    pub calls: Vec<Call>,
    /// Fences created and not yet signalled.
    pub pending: Vec<Fence>,
    signalled: Vec<Fence>,
}

impl SimState {
    /// Signals every pending fence with an id up to `id`.
    pub fn signal_up_to(&mut self, id: u64) {
        let (done, keep): (Vec<Fence>, Vec<Fence>) = self.pending.iter().partition(|f| f.id <= id);
        self.pending = keep;
        self.signalled.extend(done);
    }
}

/// The simulated renderer; clones share the state.
#[derive(Clone, Debug, Default)]
pub struct Sim3d {
    state: Arc<Mutex<SimState>>,
}

impl Sim3d {
    /// The shared state.
    pub fn state(&self) -> MutexGuard<'_, SimState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn push(&self, call: Call) {
        self.state().calls.push(call);
    }
}

impl Renderer for Sim3d {
    fn create_2d(&mut self, id: u32, w: u32, h: u32, format: u32) -> Result<(), RendererError> {
        self.create_3d(
            id,
            &Create3d {
                format,
                width: w,
                height: h,
                ..Default::default()
            },
        )
    }

    fn unref(&mut self, id: u32) -> Result<(), RendererError> {
        self.push(Call::Unref(id));
        Ok(())
    }

    unsafe fn attach_backing(&mut self, _: u32, _: Vec<HostIovec>) -> Result<(), RendererError> {
        Ok(())
    }

    fn detach_backing(&mut self, _: u32) -> Result<(), RendererError> {
        Ok(())
    }

    fn transfer_to_host(&mut self, _: u32, _: Rect, _: u64) -> Result<(), RendererError> {
        Ok(())
    }

    fn read_rect(&mut self, _: u32, rect: Rect, out: &mut Vec<u8>) -> Result<(), RendererError> {
        out.clear();
        out.resize(rect.width as usize * rect.height as usize * 4, 0);
        Ok(())
    }

    fn is_3d(&self) -> bool {
        true
    }

    fn num_capsets(&self) -> u32 {
        1
    }

    fn three_d(&mut self) -> Option<&mut dyn Renderer3d> {
        Some(self)
    }
}

impl Renderer3d for Sim3d {
    fn capset_info(&mut self, index: u32) -> Result<(u32, u32, u32), RendererError> {
        if index == 0 {
            Ok((2, 1, 8))
        } else {
            Err(RendererError::Unsupported)
        }
    }

    fn capset(&mut self, id: u32, _version: u32) -> Result<Vec<u8>, RendererError> {
        if id == 2 {
            Ok((1..=8).collect())
        } else {
            Err(RendererError::Unsupported)
        }
    }

    fn create_context(&mut self, ctx: u32, init: u32, name: &str) -> Result<(), RendererError> {
        self.push(Call::CreateContext(ctx, init, name.to_owned()));
        Ok(())
    }

    fn destroy_context(&mut self, ctx: u32) -> Result<(), RendererError> {
        self.push(Call::DestroyContext(ctx));
        Ok(())
    }

    fn attach(&mut self, ctx: u32, res: u32) -> Result<(), RendererError> {
        self.push(Call::Attach(ctx, res));
        Ok(())
    }

    fn detach(&mut self, ctx: u32, res: u32) -> Result<(), RendererError> {
        self.push(Call::Detach(ctx, res));
        Ok(())
    }

    fn create_3d(&mut self, id: u32, create: &Create3d) -> Result<(), RendererError> {
        self.push(Call::Create(id, *create));
        Ok(())
    }

    fn transfer_to_host_3d(
        &mut self,
        ctx: u32,
        id: u32,
        t: &Transfer3d,
    ) -> Result<(), RendererError> {
        self.push(Call::ToHost(ctx, id, *t));
        Ok(())
    }

    fn transfer_from_host_3d(
        &mut self,
        ctx: u32,
        id: u32,
        t: &Transfer3d,
    ) -> Result<(), RendererError> {
        self.push(Call::FromHost(ctx, id, *t));
        Ok(())
    }

    fn submit(&mut self, ctx: u32, commands: &mut [u8]) -> Result<(), RendererError> {
        self.push(Call::Submit(ctx, commands.to_vec()));
        Ok(())
    }

    fn create_fence(&mut self, fence: Fence) -> Result<(), RendererError> {
        self.push(Call::Fence(fence));
        self.state().pending.push(fence);
        Ok(())
    }

    fn signalled(&mut self) -> Vec<Fence> {
        std::mem::take(&mut self.state().signalled)
    }

    fn fence_fd(&self) -> Option<RawFd> {
        None
    }

    fn poll_fd(&self) -> Option<RawFd> {
        None
    }

    fn event_poll(&mut self) {}
}
