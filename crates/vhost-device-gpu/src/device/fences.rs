// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Fenced responses in 3D mode (virtio 1.3 §5.7.6.5): a response with
//! VIRTIO_GPU_FLAG_FENCE is held until the renderer signals the fence, so
//! the guest never sees a fence done before the host GPU is.

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

/// Whether fence `done` completes `held`: same timeline (the context's
/// ring with INFO_RING_IDX, else the global one) and not newer.
pub(super) fn completes(done: &Fence, held: &Fence) -> bool {
    let ring = |f: &Fence| (f.flags & FLAG_INFO_RING_IDX != 0).then_some((f.ctx_id, f.ring_idx));
    ring(done) == ring(held) && held.id <= done.id
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
                self.log.warn(|| format!("fence {}: {e}", fence.id));
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
        let done = r3.signalled();
        let mut out = Vec::new();
        let mut i = 0;
        while let Some(held) = self.fenced.get(i) {
            if done.iter().any(|d| completes(d, &held.fence)) {
                let held = self.fenced.remove(i);
                out.push((held.chain, held.bytes));
            } else {
                i += 1;
            }
        }
        out
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
