// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Scanouts and what the frontend's display is told or asked (virtio 1.3
//! §5.7.6.8: GET_DISPLAY_INFO, GET_EDID, SET_SCANOUT, RESOURCE_FLUSH).
//!
//! Without a frontend display the device answers from its own modes and
//! EDIDs; with one, display work comes back as [`Reply::Display`] and the
//! answer is made by [`GpuState::finish`] once the display thread is done.

use std::sync::Arc;

use super::state::{GpuState, Reply, Scanout};
use super::WaitKind;
use crate::backend::display::Pixels;
use crate::backend::{DisplayReply, DisplayRequest};
use crate::error::{Error, Result};
use crate::protocol::{Flush, Format, Rect, SetScanout};

impl GpuState {
    /// Display work to do before answering OK_NODATA, if there is a
    /// display to do it.
    pub(super) fn display_or_ok(&self, batch: Vec<DisplayRequest>) -> Reply {
        if self.frontend_display && !batch.is_empty() {
            Reply::Display {
                batch,
                kind: WaitKind::NoData,
            }
        } else {
            Reply::NoData
        }
    }

    /// The answer to a held command, once the display has answered.
    pub fn finish(&mut self, kind: WaitKind, answer: DisplayReply) -> Reply {
        match (kind, answer) {
            (WaitKind::DisplayInfo, DisplayReply::DisplayInfo(modes)) => {
                let last_enabled = modes.iter().rposition(|m| m.enabled).unwrap_or(0);
                self.frontend_outputs = self
                    .frontend_outputs
                    .max(u32::try_from(last_enabled + 1).unwrap_or(1));
                Reply::DisplayInfo(modes)
            }
            (WaitKind::DisplayInfo, _) => Reply::DisplayInfo(self.own_modes()),
            (WaitKind::Edid { .. }, DisplayReply::Edid(blob)) if !blob.is_empty() => {
                Reply::Edid(blob)
            }
            (WaitKind::Edid { scanout_id }, _) => Reply::Edid(self.own_edid(scanout_id).to_vec()),
            (WaitKind::NoData, _) => Reply::NoData,
        }
    }

    pub(super) fn get_display_info(&self) -> Reply {
        if self.frontend_display {
            return Reply::Display {
                batch: vec![DisplayRequest::DisplayInfo],
                kind: WaitKind::DisplayInfo,
            };
        }
        Reply::DisplayInfo(self.own_modes())
    }

    pub(super) fn get_edid(&self, scanout_id: u32) -> Result<Reply> {
        if !self.cfg.edid {
            return Err(Error::Unsupported(crate::protocol::cmd::GET_EDID));
        }
        if scanout_id >= self.num_scanouts() {
            return Err(Error::InvalidParameter(format!(
                "EDID of scanout {scanout_id}, which does not exist"
            )));
        }
        // QEMU never answers an EDID request for an output beyond its
        // max_outputs, which would stall the display thread for good; it
        // is only asked about outputs it has reported.
        if self.frontend_display && scanout_id < self.frontend_outputs {
            return Ok(Reply::Display {
                batch: vec![DisplayRequest::Edid { scanout_id }],
                kind: WaitKind::Edid { scanout_id },
            });
        }
        Ok(Reply::Edid(self.own_edid(scanout_id).to_vec()))
    }

    /// Reads `rect` of resource `id` as B,G,R,X rows for an UPDATE, into
    /// the previous UPDATE's buffer when the display thread is done with
    /// it, so a steady stream of flushes does not allocate a frame each.
    pub(super) fn update_pixels(&mut self, id: u32, format: Format, rect: Rect) -> Option<Pixels> {
        let len = u64::from(rect.width) * u64::from(rect.height) * 4;
        let mut out = self
            .spare_pixels
            .take()
            .and_then(|p| Arc::try_unwrap(p).ok())
            // A buffer left by a much larger flush is not kept around.
            .filter(|v| v.capacity() as u64 <= 2 * len)
            .unwrap_or_default();
        if let Err(e) = self.renderer.read_rect(id, rect, &mut out) {
            self.log.warn(|| format!("resource {id}: read: {e}"));
            return None;
        }
        format.to_bgra(&mut out);
        let pixels = Arc::new(out);
        self.spare_pixels = Some(pixels.clone());
        Some(pixels)
    }

    /// An UPDATE of `damage` (resource coordinates) with `pixels`, on a
    /// scanout showing `shown` of the resource.
    fn update(scanout_id: u32, shown: Rect, damage: Rect, pixels: Pixels) -> DisplayRequest {
        DisplayRequest::Update {
            scanout_id,
            rect: Rect {
                x: damage.x - shown.x,
                y: damage.y - shown.y,
                width: damage.width,
                height: damage.height,
            },
            pixels,
        }
    }

    pub(super) fn set_scanout(&mut self, s: &SetScanout) -> Result<Reply> {
        let (scanout_id, resource_id, rect) = (s.scanout_id, s.resource_id, s.rect);
        if scanout_id >= self.num_scanouts() {
            return Err(Error::InvalidScanout(scanout_id));
        }
        if resource_id == 0 {
            let was_on = self
                .scanouts
                .get_mut(scanout_id as usize)
                .and_then(Option::take)
                .is_some();
            let batch = if was_on {
                vec![DisplayRequest::Scanout {
                    scanout_id,
                    width: 0,
                    height: 0,
                }]
            } else {
                Vec::new()
            };
            return Ok(self.display_or_ok(batch));
        }
        let resource = self.resource(resource_id)?;
        if rect.is_empty() {
            return Err(Error::InvalidParameter(format!(
                "scanout {scanout_id}: empty {rect:?}"
            )));
        }
        self.resource_rect(resource_id, rect)?;
        if !resource.displayable {
            return Err(Error::InvalidParameter(format!(
                "scanout {scanout_id}: resource {resource_id} has a format we cannot show"
            )));
        }
        let slot = self
            .scanouts
            .get_mut(scanout_id as usize)
            .ok_or(Error::InvalidScanout(scanout_id))?;
        // Pixels go to the display on RESOURCE_FLUSH only (virtio 1.3
        // §5.7.6.8: SET_SCANOUT sets what a scanout shows, a flush is what
        // makes it visible), which the Linux driver sends right after
        // each SET_SCANOUT: sending the picture here as well would read
        // back and send every new frame twice. The first flush sends the
        // whole of `rect`, whatever its damage, since the display still
        // shows something else there.
        let unshown =
            slot.is_none_or(|p| p.unshown || p.resource_id != resource_id || p.rect != rect);
        let previous = slot.replace(Scanout {
            resource_id,
            rect,
            unshown,
        });
        // Re-sending SCANOUT makes QEMU allocate a new (blank) surface, so
        // only do it when the size changes.
        let resized =
            previous.map(|p| (p.rect.width, p.rect.height)) != Some((rect.width, rect.height));
        let batch = if resized {
            vec![DisplayRequest::Scanout {
                scanout_id,
                width: rect.width,
                height: rect.height,
            }]
        } else {
            Vec::new()
        };
        Ok(self.display_or_ok(batch))
    }

    /// The scanouts showing resource `id`: what part of it each shows, and
    /// whether the display has not been sent any of it yet.
    fn showing(&self, id: u32) -> Vec<(u32, Rect, bool)> {
        self.scanouts
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let s = (*s)?;
                (s.resource_id == id).then(|| (u32::try_from(i).unwrap_or(0), s.rect, s.unshown))
            })
            .collect()
    }

    /// RESOURCE_FLUSH: each scanout showing the resource gets the damaged
    /// part of what it shows. Scanouts showing the same part share one
    /// copy, and one flush copies at most twice the resource's pixels, so
    /// a resource shown on 16 outputs cannot make a batch 16 times its size.
    pub(super) fn flush(&mut self, f: &Flush) -> Result<Reply> {
        let (id, rect) = (f.resource_id, f.rect);
        let resource = self.resource_rect(id, rect)?;
        let format = resource.format;
        let limit = 2 * u64::from(resource.width) * u64::from(resource.height) * 4;
        if !self.frontend_display {
            return Ok(Reply::NoData);
        }
        let mut batch = Vec::new();
        let mut copies: Vec<(Rect, Pixels)> = Vec::new();
        let mut copied = 0u64;
        for (scanout_id, shown, unshown) in self.showing(id) {
            // Only the damaged part of what this output shows, unless it
            // has just been put there.
            let damage = if unshown {
                shown
            } else if let Some(damage) = rect.intersect(&shown) {
                damage
            } else {
                continue;
            };
            let pixels = match copies.iter().find(|(r, _)| *r == damage) {
                Some((_, pixels)) => pixels.clone(),
                None => {
                    copied += u64::from(damage.width) * u64::from(damage.height) * 4;
                    if copied > limit {
                        self.log.warn(|| {
                            format!("flush of resource {id}: scanout {scanout_id} skipped, too many different views")
                        });
                        continue;
                    }
                    let Some(pixels) = self.update_pixels(id, format, damage) else {
                        continue;
                    };
                    copies.push((damage, pixels.clone()));
                    pixels
                }
            };
            batch.push(Self::update(scanout_id, shown, damage, pixels));
            if let Some(Some(s)) = self.scanouts.get_mut(scanout_id as usize) {
                s.unshown = false;
            }
        }
        Ok(self.display_or_ok(batch))
    }

    /// Scanout and full-frame requests that bring a new display socket up
    /// to date with what the guest already shows.
    pub fn replay_scanouts(&mut self) -> Vec<DisplayRequest> {
        let shown: Vec<(u32, Scanout)> = self
            .scanouts
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((u32::try_from(i).ok()?, (*s)?)))
            .collect();
        let mut batch = Vec::new();
        for (scanout_id, s) in shown {
            let Some(format) = self.resources.get(&s.resource_id).map(|r| r.format) else {
                continue;
            };
            batch.push(DisplayRequest::Scanout {
                scanout_id,
                width: s.rect.width,
                height: s.rect.height,
            });
            if let Some(pixels) = self.update_pixels(s.resource_id, format, s.rect) {
                batch.push(Self::update(scanout_id, s.rect, s.rect, pixels));
                if let Some(Some(s)) = self.scanouts.get_mut(scanout_id as usize) {
                    s.unshown = false;
                }
            }
        }
        batch
    }
}
