// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The cursor queue (virtio 1.3 §5.7.6.10): UPDATE_CURSOR and MOVE_CURSOR,
//! which carry no response. Requests go to the display thread in batches,
//! with at most [`MAX_CURSOR_IN_FLIGHT`] batches queued; newer requests are
//! coalesced meanwhile.

use vhost_device_common::{DescChain, GuestMem, Queues};

use super::state::GpuState;
use super::{GpuDevice, CURSOR_QUEUE};
use crate::backend::DisplayRequest;
use crate::error::{Error, Result};
use crate::protocol::{cmd, Rect, UpdateCursor, CURSOR_SIZE, MAX_SCANOUTS};

/// Display-thread ticket of cursor batches.
pub(super) const CURSOR_TICKET: u64 = u64::MAX;
/// Cursor batches queued to the display thread before newer cursor
/// requests are coalesced instead (a guest may move the cursor faster than
/// QEMU draws it).
pub(super) const MAX_CURSOR_IN_FLIGHT: usize = 4;

/// Keeps, per scanout, only the requests that still matter: the last shape
/// (image or hide) and a move after it.
pub fn coalesce_cursor(requests: Vec<DisplayRequest>) -> Vec<DisplayRequest> {
    let mut out: Vec<DisplayRequest> = Vec::new();
    for req in requests {
        let scanout = |r: &DisplayRequest| match r {
            DisplayRequest::CursorUpdate { scanout_id, .. }
            | DisplayRequest::CursorMove { scanout_id, .. }
            | DisplayRequest::CursorHide { scanout_id } => Some(*scanout_id),
            _ => None,
        };
        let id = scanout(&req);
        let is_move = matches!(req, DisplayRequest::CursorMove { .. });
        // A shape replaces everything before it on its scanout; a move
        // replaces earlier moves.
        out.retain(|r| {
            scanout(r) != id || (is_move && !matches!(r, DisplayRequest::CursorMove { .. }))
        });
        out.push(req);
    }
    out
}

const IMAGE_ROW: usize = CURSOR_SIZE as usize * 4;

impl GpuState {
    /// What the display must do for one cursor request.
    pub fn cursor_request(&mut self, c: &UpdateCursor) -> Result<DisplayRequest> {
        if c.scanout_id >= self.num_scanouts() {
            return Err(Error::InvalidScanout(c.scanout_id));
        }
        match c.type_ {
            cmd::MOVE_CURSOR => Ok(DisplayRequest::CursorMove {
                scanout_id: c.scanout_id,
                x: c.x,
                y: c.y,
            }),
            cmd::UPDATE_CURSOR if c.resource_id == 0 => Ok(DisplayRequest::CursorHide {
                scanout_id: c.scanout_id,
            }),
            cmd::UPDATE_CURSOR => Ok(DisplayRequest::CursorUpdate {
                scanout_id: c.scanout_id,
                x: c.x,
                y: c.y,
                hot_x: c.hot_x,
                hot_y: c.hot_y,
                image: self.cursor_image(c.resource_id)?,
            }),
            other => Err(Error::Unsupported(other)),
        }
    }

    /// The top-left 64×64 pixels of resource `id` as B,G,R,A, padded with
    /// transparent pixels.
    fn cursor_image(&mut self, id: u32) -> Result<Box<[u8; IMAGE_ROW * 64]>> {
        let resource = self.resource(id)?;
        let (w, h) = (
            resource.width.min(CURSOR_SIZE),
            resource.height.min(CURSOR_SIZE),
        );
        let format = resource.format;
        let rect = Rect {
            x: 0,
            y: 0,
            width: w,
            height: h,
        };
        let mut rows = Vec::new();
        self.renderer
            .read_rect(id, rect, &mut rows)
            .map_err(Error::host("cursor image"))?;
        format.to_bgra(&mut rows);
        let mut image = Box::new([0u8; IMAGE_ROW * 64]);
        let row = w as usize * 4;
        for (y, src) in rows.chunks_exact(row.max(4)).take(h as usize).enumerate() {
            if let Some(dst) = image.get_mut(y * IMAGE_ROW..y * IMAGE_ROW + row) {
                dst.copy_from_slice(src);
            }
        }
        Ok(image)
    }
}

impl GpuDevice {
    /// Decodes one cursor command into what the display must do (nothing
    /// for a malformed one).
    pub fn cursor(&mut self, chain: &DescChain, mem: &GuestMem) -> Option<DisplayRequest> {
        let result = UpdateCursor::decode(&mut chain.reader(mem))
            .and_then(|c| self.state.cursor_request(&c));
        match result {
            Ok(request) => Some(request),
            Err(e) => {
                self.state.log.warn(|| format!("cursor request: {e}"));
                None
            }
        }
    }

    pub(super) fn process_cursor(&mut self, queues: &mut Queues<'_>) {
        let Some(mut queue) = queues.get(CURSOR_QUEUE) else {
            return;
        };
        let mut requests = Vec::new();
        queue.drain(|chain, mem| {
            if self.state.frontend_display {
                requests.extend(self.cursor(&chain, mem));
            }
            // Cursor buffers carry no response.
            Some(0)
        });
        self.defer_cursor(requests);
    }

    /// Queues cursor requests for the display thread.
    pub(super) fn defer_cursor(&mut self, requests: Vec<DisplayRequest>) {
        if !requests.is_empty() {
            self.deferred_cursor.extend(requests);
            // While QEMU is behind, keep only what still matters, so a
            // cursor flood cannot grow the list.
            if self.deferred_cursor.len() > 2 * MAX_SCANOUTS {
                self.deferred_cursor = coalesce_cursor(std::mem::take(&mut self.deferred_cursor));
            }
            self.submit_cursor();
        }
    }

    pub(super) fn submit_cursor(&mut self) {
        if self.cursor_in_flight >= MAX_CURSOR_IN_FLIGHT || self.deferred_cursor.is_empty() {
            return;
        }
        let batch = coalesce_cursor(std::mem::take(&mut self.deferred_cursor));
        if let Some(display) = &self.display {
            if display.submit(CURSOR_TICKET, batch) {
                self.cursor_in_flight += 1;
            }
        }
    }
}
