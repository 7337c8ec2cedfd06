// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The GPU's state, apart from any queue: resources, scanouts, 3D contexts
//! and the renderer that holds their pixels. Each command is a method that
//! takes the decoded request and returns a [`Reply`] or an [`Error`];
//! `device/mod.rs` turns either into the bytes the guest reads.

use std::collections::{HashMap, HashSet};

use log::debug;
use vhost_device_common::{GuestMem, RateLimited};

use super::resources::Resource;
use super::{GpuConfig, WaitKind};
use crate::backend::display::Pixels;
use crate::backend::{DisplayRequest, Renderer};
use crate::edid;
use crate::error::Result;
use crate::protocol::{
    cmd, encode_display_info, encode_edid, wire, CtrlHdr, DisplayMode, GpuCommand, Rect,
    MAX_SCANOUTS,
};

/// What a scanout shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Scanout {
    pub(super) resource_id: u32,
    pub(super) rect: Rect,
    /// The frontend's display does not show this resource yet: the next
    /// flush sends all of `rect`, whatever its damage.
    pub(super) unshown: bool,
}

/// A successful command's answer, before it is encoded.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// OK_NODATA.
    NoData,
    /// OK_DISPLAY_INFO.
    DisplayInfo(Vec<DisplayMode>),
    /// OK_EDID.
    Edid(Vec<u8>),
    /// OK_CAPSET_INFO.
    CapsetInfo {
        /// Capset id.
        id: u32,
        /// Highest version.
        version: u32,
        /// Largest size.
        size: u32,
    },
    /// OK_CAPSET.
    Capset(Vec<u8>),
    /// The display must do `batch` first; the answer is made afterwards.
    Display {
        /// Display work, in order.
        batch: Vec<DisplayRequest>,
        /// What kind of response to make then.
        kind: WaitKind,
    },
}

impl Reply {
    /// The response bytes (not for [`Reply::Display`], which has none yet).
    pub fn encode(&self, hdr: &CtrlHdr) -> Vec<u8> {
        match self {
            Reply::NoData | Reply::Display { .. } => {
                hdr.response(cmd::RESP_OK_NODATA).encode().to_vec()
            }
            Reply::DisplayInfo(modes) => {
                encode_display_info(&hdr.response(cmd::RESP_OK_DISPLAY_INFO), modes)
            }
            Reply::Edid(blob) => encode_edid(&hdr.response(cmd::RESP_OK_EDID), blob),
            Reply::CapsetInfo { id, version, size } => {
                let mut out = hdr.response(cmd::RESP_OK_CAPSET_INFO).encode().to_vec();
                let info = wire::virtio_gpu_resp_capset_info {
                    capset_id: (*id).into(),
                    capset_max_version: (*version).into(),
                    capset_max_size: (*size).into(),
                    padding: 0.into(),
                };
                out.extend_from_slice(vm_memory::ByteValued::as_slice(&info));
                out
            }
            Reply::Capset(data) => {
                let mut out = hdr.response(cmd::RESP_OK_CAPSET).encode().to_vec();
                out.extend_from_slice(data);
                out
            }
        }
    }
}

/// Resources, scanouts and contexts of one guest, and their renderer.
pub struct GpuState {
    pub(super) cfg: GpuConfig,
    pub(super) renderer: Box<dyn Renderer>,
    pub(super) resources: HashMap<u32, Resource>,
    /// Host memory charged to the guest so far.
    pub(super) hostmem: u64,
    pub(super) scanouts: [Option<Scanout>; MAX_SCANOUTS],
    pub(super) contexts: HashSet<u32>,
    /// Whether display work goes to a frontend display.
    pub(super) frontend_display: bool,
    /// Outputs the frontend has reported (it only answers EDID for those).
    pub(super) frontend_outputs: u32,
    /// The last UPDATE's pixel buffer, reused by the next one once the
    /// display thread has let go of it.
    pub(super) spare_pixels: Option<Pixels>,
    stale_resources: Vec<u32>,
    stale_contexts: Vec<u32>,
    /// Guest-triggered warnings, rate-limited: the guest decides how
    /// often they happen.
    pub(super) log: RateLimited,
}

impl std::fmt::Debug for GpuState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuState")
            .field("resources", &self.resources.len())
            .field("hostmem", &self.hostmem)
            .field("contexts", &self.contexts.len())
            .field("frontend_display", &self.frontend_display)
            .finish_non_exhaustive()
    }
}

impl GpuState {
    /// Empty state on `renderer`.
    pub fn new(cfg: GpuConfig, renderer: Box<dyn Renderer>) -> Self {
        GpuState {
            cfg,
            renderer,
            resources: HashMap::new(),
            hostmem: 0,
            scanouts: [None; MAX_SCANOUTS],
            spare_pixels: None,
            contexts: HashSet::new(),
            frontend_display: false,
            frontend_outputs: 1,
            stale_resources: Vec::new(),
            stale_contexts: Vec::new(),
            log: RateLimited::default(),
        }
    }

    /// Carries out one decoded control command; `mem` is the guest memory
    /// backings point into.
    pub fn dispatch(
        &mut self,
        hdr: &CtrlHdr,
        command: GpuCommand,
        mem: &GuestMem,
    ) -> Result<Reply> {
        self.cleanup_stale();
        match command {
            GpuCommand::GetDisplayInfo => Ok(self.get_display_info()),
            GpuCommand::GetEdid { scanout_id } => self.get_edid(scanout_id),
            GpuCommand::ResourceCreate2d(c) => self.create_2d(&c),
            GpuCommand::ResourceUnref { resource_id } => self.unref(resource_id),
            GpuCommand::SetScanout(s) => self.set_scanout(&s),
            GpuCommand::ResourceFlush(f) => self.flush(&f),
            GpuCommand::TransferToHost2d(t) => self.transfer_2d(&t),
            GpuCommand::ResourceAttachBacking {
                resource_id,
                entries,
            } => self.attach_backing(resource_id, &entries, mem),
            GpuCommand::ResourceDetachBacking { resource_id } => self.detach_backing(resource_id),
            command => self.dispatch_3d(hdr, command),
        }
    }

    /// How many scanouts the guest may address.
    pub(super) fn num_scanouts(&self) -> u32 {
        if self.frontend_display {
            // QEMU owns num_scanouts and checks ids against its own count.
            MAX_SCANOUTS as u32
        } else {
            u32::try_from(self.cfg.modes.len().clamp(1, MAX_SCANOUTS)).unwrap_or(1)
        }
    }

    /// Our own display modes.
    pub fn own_modes(&self) -> Vec<DisplayMode> {
        self.cfg
            .modes
            .iter()
            .take(MAX_SCANOUTS)
            .map(|&(width, height)| DisplayMode {
                rect: Rect {
                    x: 0,
                    y: 0,
                    width,
                    height,
                },
                enabled: true,
            })
            .collect()
    }

    pub(super) fn own_edid(&self, scanout_id: u32) -> [u8; 128] {
        let (w, h) = self
            .cfg
            .modes
            .get(scanout_id as usize)
            .copied()
            .unwrap_or((1024, 768));
        edid::generate(w, h, scanout_id)
    }

    /// Forgets every resource, context and scanout: the driver reset the
    /// device. The renderer is told on the worker thread, before the next
    /// command (a 3D renderer is bound to that thread).
    pub fn reset(&mut self) {
        self.stale_resources.extend(self.resources.keys().copied());
        self.stale_contexts.extend(self.contexts.drain());
        self.resources.clear();
        self.hostmem = 0;
        self.scanouts = [None; MAX_SCANOUTS];
        self.spare_pixels = None;
    }

    /// Tells the renderer about resources and contexts a reset dropped.
    pub(super) fn cleanup_stale(&mut self) {
        for id in std::mem::take(&mut self.stale_resources) {
            if let Err(e) = self.renderer.unref(id) {
                debug!("reset: unref {id}: {e}");
            }
        }
        let contexts = std::mem::take(&mut self.stale_contexts);
        if let Some(r3) = self.renderer.three_d() {
            for ctx in contexts {
                if let Err(e) = r3.destroy_context(ctx) {
                    debug!("reset: destroy context {ctx}: {e}");
                }
            }
        }
    }
}
