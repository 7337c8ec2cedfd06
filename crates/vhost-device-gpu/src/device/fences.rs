// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Fenced responses in 3D mode (virtio 1.3 §5.7.6.5): a response with
//! VIRTIO_GPU_FLAG_FENCE is held until the renderer signals the fence, so
//! the guest never sees a fence done before the host GPU is.

use std::collections::HashMap;

use vhost_device_common::{DescChain, EventSet, Queues};

use super::{GpuDevice, RENDERER_POLL_TOKEN};
use crate::backend::Fence;
use crate::protocol::{CtrlHdr, FLAG_FENCE, FLAG_INFO_RING_IDX};

/// A fenced 3D-mode response, held until the renderer signals its fence.
#[derive(Debug)]
pub(super) struct Fenced {
    pub(super) chain: DescChain,
    pub(super) bytes: Vec<u8>,
    pub(super) fence: Fence,
}

/// A fence's timeline: the context's ring with INFO_RING_IDX, else the
/// global one.
fn timeline(f: &Fence) -> Option<(u32, u8)> {
    (f.flags & FLAG_INFO_RING_IDX != 0).then_some((f.ctx_id, f.ring_idx))
}

/// Whether fence `done` completes `held`: same timeline and not newer.
pub(super) fn completes(done: &Fence, held: &Fence) -> bool {
    timeline(done) == timeline(held) && held.id <= done.id
}

impl GpuDevice {
    /// Creates a renderer fence for a fenced response (3D renderers only).
    pub(super) fn fence_for(&mut self, response: &[u8]) -> Option<Fence> {
        let hdr = CtrlHdr::decode(response).ok()?;
        if hdr.flags & FLAG_FENCE == 0 {
            return None;
        }
        let r3 = self.state.renderer.three_d()?;
        let fence = Fence {
            id: hdr.fence_id,
            flags: hdr.flags,
            ctx_id: hdr.ctx_id,
            ring_idx: hdr.ring_idx,
        };
        match r3.create_fence(fence) {
            Ok(()) => Some(fence),
            Err(e) => {
                // Answer at once rather than never.
                self.state.log.warn(|| format!("fence {}: {e}", fence.id));
                None
            }
        }
    }

    /// The held responses that the renderer's signalled fences complete:
    /// (chain, response bytes).
    pub(super) fn take_signalled(&mut self) -> Vec<(DescChain, Vec<u8>)> {
        let Some(r3) = self.state.renderer.three_d() else {
            return Vec::new();
        };
        // The newest signalled fence of each timeline completes everything
        // up to it: one pass over the held responses, in their order.
        let mut newest: HashMap<Option<(u32, u8)>, Fence> = HashMap::new();
        for done in r3.signalled() {
            let slot = newest.entry(timeline(&done)).or_insert(done);
            if done.id > slot.id {
                *slot = done;
            }
        }
        if newest.is_empty() {
            return Vec::new();
        }
        let (done, held): (Vec<Fenced>, Vec<Fenced>) =
            std::mem::take(&mut self.fenced).into_iter().partition(|h| {
                newest
                    .get(&timeline(&h.fence))
                    .is_some_and(|d| completes(d, &h.fence))
            });
        self.fenced = held;
        done.into_iter().map(|h| (h.chain, h.bytes)).collect()
    }

    pub(super) fn fences_signalled(&mut self, queues: &mut Queues<'_>) {
        let done = self.take_signalled();
        if !done.is_empty() {
            self.complete(queues, done);
        }
    }

    /// Watches the 3D renderer's poll fd once it exists (it is created on
    /// first use, on this thread).
    pub(super) fn register_renderer_poll(&mut self) {
        if self.poll_registered {
            return;
        }
        let Some(events) = &self.events else {
            return;
        };
        let Some(r3) = self.state.renderer.three_d() else {
            return;
        };
        if let Some(fd) = r3.poll_fd() {
            match events.register(&fd, EventSet::IN, RENDERER_POLL_TOKEN) {
                Ok(()) => self.poll_registered = true,
                Err(e) => log::warn!("cannot watch the renderer's fd: {e}"),
            }
        }
    }
}
