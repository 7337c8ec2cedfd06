// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The virtio-gpu device: request decoding, resource bookkeeping, scanouts,
//! cursor, and the hand-off to the display.
//!
//! Control commands are answered strictly in order. A command whose effect
//! goes to the frontend's display (SET_SCANOUT, RESOURCE_FLUSH, a scanout's
//! resource unref) or whose answer comes from it (GET_DISPLAY_INFO,
//! GET_EDID) is queued to the display thread and its chain held; the chains
//! behind it wait in a backlog until the display thread reports back. So a
//! response, fenced or not, is only ever completed after its work is done,
//! and fences complete in submission order.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;

use log::{debug, info, warn};
use vhost::vhost_user::GpuBackend;
use vhost_device_common::{
    DescChain, DeviceResult, EventRegistry, EventSet, GuestMem, Queue, Queues, VirtioDevice,
};
use vm_memory::{Address, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};
use vmm_sys_util::timerfd::TimerFd;

use crate::backend::{
    Create3d, DisplayReply, DisplayRequest, DisplayThread, Fence, HostIovec, Renderer, Transfer3d,
};
use crate::edid;
use crate::protocol::{
    cmd, encode_display_info, encode_edid, CtrlHdr, DisplayMode, Fields, Format, Rect,
    UpdateCursor, CONFIG_SIZE, CURSOR_SIZE, FLAG_FENCE, FLAG_INFO_RING_IDX, F_CONTEXT_INIT, F_EDID,
    F_VIRGL, HDR_SIZE, MAX_SCANOUTS, UPDATE_CURSOR_SIZE,
};

/// Queue indices.
pub const CONTROL_QUEUE: usize = 0;
/// The cursor queue.
pub const CURSOR_QUEUE: usize = 1;

/// Largest resource side we create.
pub const MAX_RESOURCE_SIDE: u32 = 16384;
/// Most scatter-gather entries in one ATTACH_BACKING.
pub const MAX_BACKING_ENTRIES: u32 = 1 << 18;

/// Event token of the display thread's eventfd.
const DISPLAY_TOKEN: u16 = 0;
/// Event token of the 3D renderer's fence eventfd.
const FENCE_TOKEN: u16 = 1;
/// Event token of the 3D renderer's own poll fd.
const RENDERER_POLL_TOKEN: u16 = 2;
/// Display-thread ticket of cursor batches.
const CURSOR_TICKET: u64 = u64::MAX;
/// Cursor batches queued to the display thread before newer cursor
/// requests are coalesced instead (a guest may move the cursor faster than
/// QEMU draws it).
const MAX_CURSOR_IN_FLIGHT: usize = 4;

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

/// Event token of the display-query timeout.
const QUERY_TIMER_TOKEN: u16 = 3;
/// How long the frontend may take to answer GET_DISPLAY_INFO or GET_EDID
/// before the guest gets our own answer.
pub const DISPLAY_QUERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
/// Largest SUBMIT_3D command stream.
pub const MAX_SUBMIT_SIZE: u32 = 16 << 20;

/// How the device renders.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuMode {
    /// Software 2D (rutabaga_gfx's 2D component).
    TwoD,
    /// virglrenderer 3D (cargo feature `virgl`).
    Virgl,
}

/// Everything the command line decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuConfig {
    /// Rendering mode.
    pub mode: GpuMode,
    /// Our own modes, one per scanout, used when the frontend does not
    /// provide its display information.
    pub modes: Vec<(u32, u32)>,
    /// Offer VIRTIO_GPU_F_EDID.
    pub edid: bool,
    /// Never use a display socket.
    pub headless: bool,
    /// Bytes of host memory all resources together may use.
    pub max_hostmem: u64,
    /// Capability set ids offered in the virgl mode (empty: all).
    pub capsets: Vec<u32>,
}

impl Default for GpuConfig {
    fn default() -> Self {
        GpuConfig {
            mode: GpuMode::TwoD,
            modes: vec![(1280, 800)],
            edid: true,
            headless: false,
            max_hostmem: 256 << 20,
            capsets: Vec::new(),
        }
    }
}

/// What a control command comes to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The response, ready now.
    Reply(Vec<u8>),
    /// The display must do `batch` first; then [`GpuDevice::finish`] makes
    /// the response.
    Wait {
        /// Display work, in order.
        batch: Vec<DisplayRequest>,
        /// What kind of response to make afterwards.
        kind: WaitKind,
        /// The request's header (for the fence fields).
        hdr: CtrlHdr,
    },
}

/// The response a held command gets once the display is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitKind {
    /// OK_NODATA.
    NoData,
    /// OK_DISPLAY_INFO with the frontend's modes (ours if it has none).
    DisplayInfo,
    /// OK_EDID with the frontend's EDID (ours if it has none).
    Edid {
        /// Output.
        scanout_id: u32,
    },
}

#[derive(Debug)]
struct Backing {
    // Keeps the guest mappings the renderer's iovecs point into alive,
    // even if the frontend replaces the memory table meanwhile.
    _mem: GuestMem,
    total: u64,
}

#[derive(Debug)]
struct Resource {
    width: u32,
    height: u32,
    format: Format,
    backing: Option<Backing>,
    // A 3D resource of a format the display path cannot convert.
    displayable: bool,
    // Host memory charged for it.
    size: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Scanout {
    resource_id: u32,
    rect: Rect,
}

/// A fenced 3D-mode response, held until the renderer signals its fence.
#[derive(Debug)]
struct Fenced {
    chain: DescChain,
    bytes: Vec<u8>,
    fence: Fence,
}

/// Whether fence `done` completes `held`: same timeline (the context's
/// ring with INFO_RING_IDX, else the global one) and not newer.
fn completes(done: &Fence, held: &Fence) -> bool {
    let ring = |f: &Fence| (f.flags & FLAG_INFO_RING_IDX != 0).then_some((f.ctx_id, f.ring_idx));
    ring(done) == ring(held) && held.id <= done.id
}

#[derive(Debug)]
struct Pending {
    ticket: u64,
    chain: DescChain,
    kind: WaitKind,
    hdr: CtrlHdr,
}

/// The virtio-gpu device of one connection.
pub struct GpuDevice {
    cfg: GpuConfig,
    config_space: [u8; CONFIG_SIZE],
    renderer: Box<dyn Renderer>,
    resources: HashMap<u32, Resource>,
    hostmem: u64,
    scanouts: [Option<Scanout>; MAX_SCANOUTS],
    display: Option<DisplayThread>,
    frontend_display: bool,
    pending: Option<Pending>,
    backlog: VecDeque<DescChain>,
    next_ticket: u64,
    events: Option<EventRegistry>,
    frontend_outputs: u32,
    contexts: HashSet<u32>,
    stale_resources: Vec<u32>,
    stale_contexts: Vec<u32>,
    fenced: Vec<Fenced>,
    poll_registered: bool,
    query_timer: Option<TimerFd>,
    cursor_in_flight: usize,
    deferred_cursor: Vec<DisplayRequest>,
}

impl std::fmt::Debug for GpuDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuDevice")
            .field("cfg", &self.cfg)
            .field("resources", &self.resources.len())
            .field("frontend_display", &self.frontend_display)
            .finish_non_exhaustive()
    }
}

fn reply(hdr: &CtrlHdr, code: u32) -> Outcome {
    Outcome::Reply(hdr.response(code).encode().to_vec())
}

/// Reads the `N` bytes after the header, or says the request is short.
fn body<const N: usize>(reader: &mut vhost_device_common::Reader<'_, GuestMem>) -> Option<[u8; N]> {
    let mut buf = [0u8; N];
    reader.read_exact(&mut buf).ok()?;
    Some(buf)
}

/// Makes `fd` non-blocking, so a stale readiness never blocks the worker.
fn set_nonblocking(fd: &impl std::os::fd::AsRawFd) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: fcntl on an fd we own, with integer arguments only.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Splits a guest range into host iovecs, one per memory region it
/// touches. None if any byte lies outside guest memory.
fn host_iovecs(mem: &GuestMem, addr: u64, len: u32, out: &mut Vec<HostIovec>) -> Option<()> {
    let mut addr = GuestAddress(addr);
    let mut left = usize::try_from(len).ok()?;
    while left > 0 {
        let (region, raddr) = mem.to_region_addr(addr)?;
        let in_region = usize::try_from(region.len().checked_sub(raddr.0)?).ok()?;
        let take = in_region.min(left);
        if take == 0 {
            return None;
        }
        let base = region.get_host_address(raddr).ok()?;
        out.push(HostIovec { base, len: take });
        addr = addr.checked_add(take as u64)?;
        left -= take;
    }
    Some(())
}

impl GpuDevice {
    /// A device with `renderer`. The display thread starts when the
    /// worker activates the device (not in headless mode).
    pub fn new(cfg: GpuConfig, renderer: Box<dyn Renderer>) -> Self {
        let mut config_space = [0u8; CONFIG_SIZE];
        let scanouts = u32::try_from(cfg.modes.len().clamp(1, MAX_SCANOUTS)).unwrap_or(1);
        if let Some(dst) = config_space.get_mut(8..12) {
            dst.copy_from_slice(&scanouts.to_le_bytes());
        }
        if let Some(dst) = config_space.get_mut(12..16) {
            dst.copy_from_slice(&renderer.num_capsets().to_le_bytes());
        }
        GpuDevice {
            cfg,
            config_space,
            renderer,
            resources: HashMap::new(),
            hostmem: 0,
            scanouts: [None; MAX_SCANOUTS],
            display: None,
            frontend_display: false,
            pending: None,
            backlog: VecDeque::new(),
            next_ticket: 1,
            events: None,
            frontend_outputs: 1,
            contexts: HashSet::new(),
            stale_resources: Vec::new(),
            stale_contexts: Vec::new(),
            fenced: Vec::new(),
            poll_registered: false,
            query_timer: None,
            cursor_in_flight: 0,
            deferred_cursor: Vec::new(),
        }
    }

    /// Behave as if a frontend display were attached: display work is
    /// returned as [`Outcome::Wait`]. Unit tests use it without a thread.
    pub fn assume_frontend_display(&mut self) {
        self.frontend_display = true;
    }

    /// Whether a frontend display socket has been handed over.
    pub fn has_frontend_display(&self) -> bool {
        self.frontend_display
    }

    fn num_scanouts(&self) -> u32 {
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

    fn own_edid(&self, scanout_id: u32) -> [u8; 128] {
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
    pub fn reset_state(&mut self) {
        self.stale_resources.extend(self.resources.keys().copied());
        self.stale_contexts.extend(self.contexts.drain());
        self.fenced.clear();
        self.deferred_cursor.clear();
        self.resources.clear();
        self.hostmem = 0;
        self.scanouts = [None; MAX_SCANOUTS];
        self.pending = None;
        self.backlog.clear();
        if let Some(dst) = self.config_space.get_mut(0..8) {
            dst.fill(0);
        }
    }

    /// Tells the renderer about resources and contexts a reset dropped.
    fn cleanup_stale(&mut self) {
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

    /// Decodes and carries out one control command.
    pub fn execute(&mut self, chain: &DescChain, mem: &GuestMem) -> Outcome {
        self.cleanup_stale();
        let mut reader = chain.reader(mem);
        let Some(raw) = body::<HDR_SIZE>(&mut reader) else {
            warn!("control request shorter than its header");
            return reply(&CtrlHdr::default(), cmd::RESP_ERR_UNSPEC);
        };
        let Ok(hdr) = CtrlHdr::decode(&raw) else {
            return reply(&CtrlHdr::default(), cmd::RESP_ERR_UNSPEC);
        };
        let outcome = match hdr.type_ {
            cmd::GET_DISPLAY_INFO => self.get_display_info(&hdr),
            cmd::GET_EDID => self.get_edid(&hdr, &mut reader),
            cmd::RESOURCE_CREATE_2D => self.create_2d(&hdr, &mut reader),
            cmd::RESOURCE_UNREF => self.unref(&hdr, &mut reader),
            cmd::SET_SCANOUT => self.set_scanout(&hdr, &mut reader),
            cmd::RESOURCE_FLUSH => self.flush(&hdr, &mut reader),
            cmd::TRANSFER_TO_HOST_2D => self.transfer(&hdr, &mut reader),
            cmd::RESOURCE_ATTACH_BACKING => self.attach_backing(&hdr, &mut reader, mem),
            cmd::RESOURCE_DETACH_BACKING => self.detach_backing(&hdr, &mut reader),
            cmd::GET_CAPSET_INFO
            | cmd::GET_CAPSET
            | cmd::CTX_CREATE
            | cmd::CTX_DESTROY
            | cmd::CTX_ATTACH_RESOURCE
            | cmd::CTX_DETACH_RESOURCE
            | cmd::RESOURCE_CREATE_3D
            | cmd::TRANSFER_TO_HOST_3D
            | cmd::TRANSFER_FROM_HOST_3D
            | cmd::SUBMIT_3D
                if self.renderer.is_3d() =>
            {
                self.execute_3d(&hdr, &mut reader)
            }
            // No capsets in 2D: any index or id is out of range.
            cmd::GET_CAPSET_INFO | cmd::GET_CAPSET => reply(&hdr, cmd::RESP_ERR_INVALID_PARAMETER),
            other => {
                debug!("unsupported control command {other:#x}");
                reply(&hdr, cmd::RESP_ERR_UNSPEC)
            }
        };
        if let Outcome::Reply(bytes) = &outcome {
            if let Ok(resp) = CtrlHdr::decode(bytes) {
                if resp.type_ >= cmd::RESP_ERR_UNSPEC {
                    debug!("command {:#x} -> {:#x}", hdr.type_, resp.type_);
                }
            }
        }
        outcome
    }

    /// The response to a held command, once the display has answered.
    pub fn finish(&mut self, kind: WaitKind, hdr: &CtrlHdr, answer: DisplayReply) -> Vec<u8> {
        match (kind, answer) {
            (WaitKind::DisplayInfo, DisplayReply::DisplayInfo(modes)) => {
                let last_enabled = modes.iter().rposition(|m| m.enabled).unwrap_or(0);
                self.frontend_outputs = self
                    .frontend_outputs
                    .max(u32::try_from(last_enabled + 1).unwrap_or(1));
                encode_display_info(&hdr.response(cmd::RESP_OK_DISPLAY_INFO), &modes)
            }
            (WaitKind::DisplayInfo, _) => {
                encode_display_info(&hdr.response(cmd::RESP_OK_DISPLAY_INFO), &self.own_modes())
            }
            (WaitKind::Edid { .. }, DisplayReply::Edid(blob)) if !blob.is_empty() => {
                encode_edid(&hdr.response(cmd::RESP_OK_EDID), &blob)
            }
            (WaitKind::Edid { scanout_id }, _) => {
                encode_edid(&hdr.response(cmd::RESP_OK_EDID), &self.own_edid(scanout_id))
            }
            (WaitKind::NoData, _) => hdr.response(cmd::RESP_OK_NODATA).encode().to_vec(),
        }
    }

    fn get_display_info(&self, hdr: &CtrlHdr) -> Outcome {
        if self.frontend_display {
            return Outcome::Wait {
                batch: vec![DisplayRequest::DisplayInfo],
                kind: WaitKind::DisplayInfo,
                hdr: *hdr,
            };
        }
        Outcome::Reply(encode_display_info(
            &hdr.response(cmd::RESP_OK_DISPLAY_INFO),
            &self.own_modes(),
        ))
    }

    fn get_edid(
        &self,
        hdr: &CtrlHdr,
        reader: &mut vhost_device_common::Reader<'_, GuestMem>,
    ) -> Outcome {
        if !self.cfg.edid {
            return reply(hdr, cmd::RESP_ERR_UNSPEC);
        }
        let Some(raw) = body::<8>(reader) else {
            return reply(hdr, cmd::RESP_ERR_UNSPEC);
        };
        let scanout_id = Fields::new(&raw, 4)
            .map(|mut f| f.u32())
            .unwrap_or(u32::MAX);
        if scanout_id >= self.num_scanouts() {
            return reply(hdr, cmd::RESP_ERR_INVALID_PARAMETER);
        }
        // QEMU never answers an EDID request for an output beyond its
        // max_outputs, which would stall the display thread for good; it
        // is only asked about outputs it has reported.
        if self.frontend_display && scanout_id < self.frontend_outputs {
            return Outcome::Wait {
                batch: vec![DisplayRequest::Edid { scanout_id }],
                kind: WaitKind::Edid { scanout_id },
                hdr: *hdr,
            };
        }
        Outcome::Reply(encode_edid(
            &hdr.response(cmd::RESP_OK_EDID),
            &self.own_edid(scanout_id),
        ))
    }

    fn create_2d(
        &mut self,
        hdr: &CtrlHdr,
        reader: &mut vhost_device_common::Reader<'_, GuestMem>,
    ) -> Outcome {
        let Some(raw) = body::<16>(reader) else {
            return reply(hdr, cmd::RESP_ERR_UNSPEC);
        };
        let Ok(mut f) = Fields::new(&raw, 16) else {
            return reply(hdr, cmd::RESP_ERR_UNSPEC);
        };
        let (id, format, width, height) = (f.u32(), f.u32(), f.u32(), f.u32());
        if id == 0 || self.resources.contains_key(&id) {
            return reply(hdr, cmd::RESP_ERR_INVALID_RESOURCE_ID);
        }
        let Some(format) = Format::from_code(format) else {
            warn!("resource {id}: unknown format {format}");
            return reply(hdr, cmd::RESP_ERR_INVALID_PARAMETER);
        };
        if width == 0 || height == 0 || width > MAX_RESOURCE_SIDE || height > MAX_RESOURCE_SIDE {
            warn!("resource {id}: bad size {width}x{height}");
            return reply(hdr, cmd::RESP_ERR_INVALID_PARAMETER);
        }
        let size = u64::from(width) * u64::from(height) * 4;
        let resource = Resource {
            width,
            height,
            format,
            backing: None,
            displayable: true,
            size,
        };
        if self.hostmem.saturating_add(size) > self.cfg.max_hostmem {
            warn!("resource {id}: {size} bytes would exceed the host memory limit");
            return reply(hdr, cmd::RESP_ERR_OUT_OF_MEMORY);
        }
        if let Err(e) = self.renderer.create_2d(id, width, height, format as u32) {
            warn!("resource {id}: {e}");
            return reply(hdr, cmd::RESP_ERR_UNSPEC);
        }
        self.hostmem += size;
        self.resources.insert(id, resource);
        reply(hdr, cmd::RESP_OK_NODATA)
    }

    fn resource_id_only(reader: &mut vhost_device_common::Reader<'_, GuestMem>) -> Option<u32> {
        let raw = body::<8>(reader)?;
        Fields::new(&raw, 4).ok().map(|mut f| f.u32())
    }

    fn unref(
        &mut self,
        hdr: &CtrlHdr,
        reader: &mut vhost_device_common::Reader<'_, GuestMem>,
    ) -> Outcome {
        let Some(id) = Self::resource_id_only(reader) else {
            return reply(hdr, cmd::RESP_ERR_UNSPEC);
        };
        let Some(resource) = self.resources.remove(&id) else {
            return reply(hdr, cmd::RESP_ERR_INVALID_RESOURCE_ID);
        };
        self.hostmem = self.hostmem.saturating_sub(resource.size);
        if let Err(e) = self.renderer.unref(id) {
            warn!("resource {id}: unref: {e}");
        }
        // An output showing a destroyed resource goes dark.
        let mut batch = Vec::new();
        for (i, slot) in self.scanouts.iter_mut().enumerate() {
            if slot.is_some_and(|s| s.resource_id == id) {
                *slot = None;
                batch.push(DisplayRequest::Scanout {
                    scanout_id: u32::try_from(i).unwrap_or(0),
                    width: 0,
                    height: 0,
                });
            }
        }
        self.display_or_ok(hdr, batch)
    }

    fn display_or_ok(&self, hdr: &CtrlHdr, batch: Vec<DisplayRequest>) -> Outcome {
        if self.frontend_display && !batch.is_empty() {
            Outcome::Wait {
                batch,
                kind: WaitKind::NoData,
                hdr: *hdr,
            }
        } else {
            reply(hdr, cmd::RESP_OK_NODATA)
        }
    }

    /// Reads `rect` of resource `id` as B,G,R,X rows for an UPDATE.
    fn update_pixels(&mut self, id: u32, format: Format, rect: Rect) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        if let Err(e) = self.renderer.read_rect(id, rect, &mut out) {
            warn!("resource {id}: read: {e}");
            return None;
        }
        format.to_bgra(&mut out);
        Some(out)
    }

    fn set_scanout(
        &mut self,
        hdr: &CtrlHdr,
        reader: &mut vhost_device_common::Reader<'_, GuestMem>,
    ) -> Outcome {
        let Some(raw) = body::<24>(reader) else {
            return reply(hdr, cmd::RESP_ERR_UNSPEC);
        };
        let Ok(mut f) = Fields::new(&raw, 24) else {
            return reply(hdr, cmd::RESP_ERR_UNSPEC);
        };
        let rect = f.rect();
        let (scanout_id, resource_id) = (f.u32(), f.u32());
        if scanout_id >= self.num_scanouts() {
            return reply(hdr, cmd::RESP_ERR_INVALID_SCANOUT_ID);
        }
        let Some(slot) = self.scanouts.get_mut(scanout_id as usize) else {
            return reply(hdr, cmd::RESP_ERR_INVALID_SCANOUT_ID);
        };
        if resource_id == 0 {
            let was_on = slot.take().is_some();
            let batch = if was_on {
                vec![DisplayRequest::Scanout {
                    scanout_id,
                    width: 0,
                    height: 0,
                }]
            } else {
                Vec::new()
            };
            return self.display_or_ok(hdr, batch);
        }
        let Some(resource) = self.resources.get(&resource_id) else {
            return reply(hdr, cmd::RESP_ERR_INVALID_RESOURCE_ID);
        };
        if rect.is_empty() || !rect.within(resource.width, resource.height) {
            warn!(
                "scanout {scanout_id}: {rect:?} outside resource {resource_id} ({}x{})",
                resource.width, resource.height
            );
            return reply(hdr, cmd::RESP_ERR_INVALID_PARAMETER);
        }
        if !resource.displayable {
            warn!("scanout {scanout_id}: resource {resource_id} has a format we cannot show");
            return reply(hdr, cmd::RESP_ERR_INVALID_PARAMETER);
        }
        let format = resource.format;
        let previous = slot.replace(Scanout { resource_id, rect });
        if !self.frontend_display {
            return reply(hdr, cmd::RESP_OK_NODATA);
        }
        let mut batch = Vec::new();
        // Re-sending SCANOUT makes QEMU allocate a new (blank) surface, so
        // only do it when the size changes; the full update below redraws.
        if previous.map(|p| (p.rect.width, p.rect.height)) != Some((rect.width, rect.height)) {
            batch.push(DisplayRequest::Scanout {
                scanout_id,
                width: rect.width,
                height: rect.height,
            });
        }
        if let Some(pixels) = self.update_pixels(resource_id, format, rect) {
            batch.push(DisplayRequest::Update {
                scanout_id,
                rect: Rect {
                    x: 0,
                    y: 0,
                    width: rect.width,
                    height: rect.height,
                },
                pixels,
            });
        }
        self.display_or_ok(hdr, batch)
    }

    fn flush(
        &mut self,
        hdr: &CtrlHdr,
        reader: &mut vhost_device_common::Reader<'_, GuestMem>,
    ) -> Outcome {
        let Some(raw) = body::<24>(reader) else {
            return reply(hdr, cmd::RESP_ERR_UNSPEC);
        };
        let Ok(mut f) = Fields::new(&raw, 20) else {
            return reply(hdr, cmd::RESP_ERR_UNSPEC);
        };
        let rect = f.rect();
        let resource_id = f.u32();
        let Some(resource) = self.resources.get(&resource_id) else {
            return reply(hdr, cmd::RESP_ERR_INVALID_RESOURCE_ID);
        };
        if !rect.within(resource.width, resource.height) {
            return reply(hdr, cmd::RESP_ERR_INVALID_PARAMETER);
        }
        let format = resource.format;
        if !self.frontend_display {
            return reply(hdr, cmd::RESP_OK_NODATA);
        }
        let mut batch = Vec::new();
        let shown: Vec<(u32, Rect)> = self
            .scanouts
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let s = (*s)?;
                (s.resource_id == resource_id).then(|| (u32::try_from(i).unwrap_or(0), s.rect))
            })
            .collect();
        for (scanout_id, scanout_rect) in shown {
            // Only the damaged part of what this output shows.
            let Some(damage) = rect.intersect(&scanout_rect) else {
                continue;
            };
            if let Some(pixels) = self.update_pixels(resource_id, format, damage) {
                batch.push(DisplayRequest::Update {
                    scanout_id,
                    rect: Rect {
                        x: damage.x - scanout_rect.x,
                        y: damage.y - scanout_rect.y,
                        width: damage.width,
                        height: damage.height,
                    },
                    pixels,
                });
            }
        }
        self.display_or_ok(hdr, batch)
    }

    fn transfer(
        &mut self,
        hdr: &CtrlHdr,
        reader: &mut vhost_device_common::Reader<'_, GuestMem>,
    ) -> Outcome {
        let Some(raw) = body::<32>(reader) else {
            return reply(hdr, cmd::RESP_ERR_UNSPEC);
        };
        let Ok(mut f) = Fields::new(&raw, 28) else {
            return reply(hdr, cmd::RESP_ERR_UNSPEC);
        };
        let rect = f.rect();
        let offset = f.u64();
        let resource_id = f.u32();
        let Some(resource) = self.resources.get(&resource_id) else {
            return reply(hdr, cmd::RESP_ERR_INVALID_RESOURCE_ID);
        };
        if !rect.within(resource.width, resource.height) {
            return reply(hdr, cmd::RESP_ERR_INVALID_PARAMETER);
        }
        let Some(backing) = &resource.backing else {
            warn!("transfer to resource {resource_id}, which has no backing");
            return reply(hdr, cmd::RESP_ERR_UNSPEC);
        };
        if rect.is_empty() {
            return reply(hdr, cmd::RESP_OK_NODATA);
        }
        let stride = u64::from(resource.width) * 4;
        let position = u64::from(rect.y) * stride + u64::from(rect.x) * 4;
        // Where the last source byte is, with the resource's stride.
        let end =
            offset.checked_add((u64::from(rect.height) - 1) * stride + u64::from(rect.width) * 4);
        if end.is_none_or(|end| end > backing.total) {
            warn!("transfer to resource {resource_id}: source beyond its backing");
            return reply(hdr, cmd::RESP_ERR_INVALID_PARAMETER);
        }
        if offset < position {
            warn!("transfer to resource {resource_id}: offset {offset} before the rectangle's own position {position} is not supported");
            return reply(hdr, cmd::RESP_ERR_INVALID_PARAMETER);
        }
        match self.renderer.transfer_to_host(resource_id, rect, offset) {
            Ok(()) => reply(hdr, cmd::RESP_OK_NODATA),
            Err(e) => {
                warn!("transfer to resource {resource_id}: {e}");
                reply(hdr, cmd::RESP_ERR_UNSPEC)
            }
        }
    }

    fn attach_backing(
        &mut self,
        hdr: &CtrlHdr,
        reader: &mut vhost_device_common::Reader<'_, GuestMem>,
        mem: &GuestMem,
    ) -> Outcome {
        let Some(raw) = body::<8>(reader) else {
            return reply(hdr, cmd::RESP_ERR_UNSPEC);
        };
        let Ok(mut f) = Fields::new(&raw, 8) else {
            return reply(hdr, cmd::RESP_ERR_UNSPEC);
        };
        let (resource_id, nr_entries) = (f.u32(), f.u32());
        let Some(resource) = self.resources.get_mut(&resource_id) else {
            return reply(hdr, cmd::RESP_ERR_INVALID_RESOURCE_ID);
        };
        if resource.backing.is_some() {
            warn!("resource {resource_id} already has a backing");
            return reply(hdr, cmd::RESP_ERR_UNSPEC);
        }
        if nr_entries == 0 || nr_entries > MAX_BACKING_ENTRIES {
            warn!("resource {resource_id}: {nr_entries} backing entries");
            return reply(hdr, cmd::RESP_ERR_INVALID_PARAMETER);
        }
        if reader.available() < nr_entries as usize * 16 {
            warn!("resource {resource_id}: fewer backing entries than announced");
            return reply(hdr, cmd::RESP_ERR_UNSPEC);
        }
        let mut iovecs = Vec::new();
        let mut total: u64 = 0;
        for _ in 0..nr_entries {
            let Some(raw) = body::<16>(reader) else {
                return reply(hdr, cmd::RESP_ERR_UNSPEC);
            };
            let Ok(mut f) = Fields::new(&raw, 12) else {
                return reply(hdr, cmd::RESP_ERR_UNSPEC);
            };
            let (addr, length) = (f.u64(), f.u32());
            if host_iovecs(mem, addr, length, &mut iovecs).is_none() {
                warn!(
                    "resource {resource_id}: backing entry {addr:#x}+{length:#x} is outside guest memory"
                );
                return reply(hdr, cmd::RESP_ERR_UNSPEC);
            }
            total += u64::from(length);
        }
        // SAFETY: every iovec lies in guest memory (checked above), and
        // that memory stays mapped until the backing is detached or the
        // resource destroyed, because `Backing` holds a clone of `mem`.
        if let Err(e) = unsafe { self.renderer.attach_backing(resource_id, iovecs) } {
            warn!("resource {resource_id}: attach: {e}");
            return reply(hdr, cmd::RESP_ERR_UNSPEC);
        }
        resource.backing = Some(Backing {
            _mem: mem.clone(),
            total,
        });
        reply(hdr, cmd::RESP_OK_NODATA)
    }

    fn detach_backing(
        &mut self,
        hdr: &CtrlHdr,
        reader: &mut vhost_device_common::Reader<'_, GuestMem>,
    ) -> Outcome {
        let Some(id) = Self::resource_id_only(reader) else {
            return reply(hdr, cmd::RESP_ERR_UNSPEC);
        };
        let Some(resource) = self.resources.get_mut(&id) else {
            return reply(hdr, cmd::RESP_ERR_INVALID_RESOURCE_ID);
        };
        if resource.backing.is_none() {
            return reply(hdr, cmd::RESP_ERR_UNSPEC);
        }
        if let Err(e) = self.renderer.detach_backing(id) {
            warn!("resource {id}: detach: {e}");
            return reply(hdr, cmd::RESP_ERR_UNSPEC);
        }
        resource.backing = None;
        reply(hdr, cmd::RESP_OK_NODATA)
    }

    /// The 3D commands (only with a 3D renderer).
    fn execute_3d(
        &mut self,
        hdr: &CtrlHdr,
        reader: &mut vhost_device_common::Reader<'_, GuestMem>,
    ) -> Outcome {
        let num_capsets = self.renderer.num_capsets();
        let ctx_known = self.contexts.contains(&hdr.ctx_id);
        let Some(r3) = self.renderer.three_d() else {
            return reply(hdr, cmd::RESP_ERR_UNSPEC);
        };
        let err = |e: crate::backend::RendererError, what: &str| {
            warn!("{what}: {e}");
            reply(hdr, cmd::RESP_ERR_UNSPEC)
        };
        match hdr.type_ {
            cmd::GET_CAPSET_INFO => {
                let Some(index) = Self::resource_id_only(reader) else {
                    return reply(hdr, cmd::RESP_ERR_UNSPEC);
                };
                if index >= num_capsets {
                    return reply(hdr, cmd::RESP_ERR_INVALID_PARAMETER);
                }
                match r3.capset_info(index) {
                    Ok((id, version, size)) => {
                        let mut out = hdr.response(cmd::RESP_OK_CAPSET_INFO).encode().to_vec();
                        for v in [id, version, size, 0] {
                            out.extend_from_slice(&v.to_le_bytes());
                        }
                        Outcome::Reply(out)
                    }
                    Err(e) => err(e, "capset info"),
                }
            }
            cmd::GET_CAPSET => {
                let Some(raw) = body::<8>(reader) else {
                    return reply(hdr, cmd::RESP_ERR_UNSPEC);
                };
                let Ok(mut f) = Fields::new(&raw, 8) else {
                    return reply(hdr, cmd::RESP_ERR_UNSPEC);
                };
                let (id, version) = (f.u32(), f.u32());
                match r3.capset(id, version) {
                    Ok(data) => {
                        let mut out = hdr.response(cmd::RESP_OK_CAPSET).encode().to_vec();
                        out.extend_from_slice(&data);
                        Outcome::Reply(out)
                    }
                    Err(_) => reply(hdr, cmd::RESP_ERR_INVALID_PARAMETER),
                }
            }
            cmd::CTX_CREATE => {
                let Some(raw) = body::<72>(reader) else {
                    return reply(hdr, cmd::RESP_ERR_UNSPEC);
                };
                let Ok(mut f) = Fields::new(&raw, 8) else {
                    return reply(hdr, cmd::RESP_ERR_UNSPEC);
                };
                let (nlen, init) = (f.u32(), f.u32());
                if hdr.ctx_id == 0 || ctx_known {
                    return reply(hdr, cmd::RESP_ERR_INVALID_CONTEXT_ID);
                }
                let name_len = (nlen as usize).min(64);
                let name = String::from_utf8_lossy(raw.get(8..8 + name_len).unwrap_or_default())
                    .into_owned();
                match r3.create_context(hdr.ctx_id, init, &name) {
                    Ok(()) => {
                        self.contexts.insert(hdr.ctx_id);
                        reply(hdr, cmd::RESP_OK_NODATA)
                    }
                    Err(e) => err(e, "context create"),
                }
            }
            cmd::CTX_DESTROY => {
                if !ctx_known {
                    return reply(hdr, cmd::RESP_ERR_INVALID_CONTEXT_ID);
                }
                self.contexts.remove(&hdr.ctx_id);
                match r3.destroy_context(hdr.ctx_id) {
                    Ok(()) => reply(hdr, cmd::RESP_OK_NODATA),
                    Err(e) => err(e, "context destroy"),
                }
            }
            cmd::CTX_ATTACH_RESOURCE | cmd::CTX_DETACH_RESOURCE => {
                let Some(id) = Self::resource_id_only(reader) else {
                    return reply(hdr, cmd::RESP_ERR_UNSPEC);
                };
                if !ctx_known {
                    return reply(hdr, cmd::RESP_ERR_INVALID_CONTEXT_ID);
                }
                if !self.resources.contains_key(&id) {
                    return reply(hdr, cmd::RESP_ERR_INVALID_RESOURCE_ID);
                }
                let result = if hdr.type_ == cmd::CTX_ATTACH_RESOURCE {
                    r3.attach(hdr.ctx_id, id)
                } else {
                    r3.detach(hdr.ctx_id, id)
                };
                match result {
                    Ok(()) => reply(hdr, cmd::RESP_OK_NODATA),
                    Err(e) => err(e, "context attach/detach"),
                }
            }
            cmd::RESOURCE_CREATE_3D => {
                let Some(raw) = body::<48>(reader) else {
                    return reply(hdr, cmd::RESP_ERR_UNSPEC);
                };
                let Ok(mut f) = Fields::new(&raw, 44) else {
                    return reply(hdr, cmd::RESP_ERR_UNSPEC);
                };
                let id = f.u32();
                let c = Create3d {
                    target: f.u32(),
                    format: f.u32(),
                    bind: f.u32(),
                    width: f.u32(),
                    height: f.u32(),
                    depth: f.u32(),
                    array_size: f.u32(),
                    last_level: f.u32(),
                    nr_samples: f.u32(),
                    flags: f.u32(),
                };
                if id == 0 || self.resources.contains_key(&id) {
                    return reply(hdr, cmd::RESP_ERR_INVALID_RESOURCE_ID);
                }
                let sides_ok = [c.width, c.height, c.depth.max(1), c.array_size.max(1)]
                    .iter()
                    .all(|&v| (1..=MAX_RESOURCE_SIDE).contains(&v));
                if !sides_ok {
                    return reply(hdr, cmd::RESP_ERR_INVALID_PARAMETER);
                }
                let size = u64::from(c.width)
                    * u64::from(c.height)
                    * u64::from(c.depth.max(1))
                    * u64::from(c.array_size.max(1))
                    * 4;
                if self.hostmem.saturating_add(size) > self.cfg.max_hostmem {
                    return reply(hdr, cmd::RESP_ERR_OUT_OF_MEMORY);
                }
                if let Err(e) = r3.create_3d(id, &c) {
                    return err(e, "resource create 3d");
                }
                self.hostmem += size;
                let format = Format::from_code(c.format);
                self.resources.insert(
                    id,
                    Resource {
                        width: c.width,
                        height: c.height,
                        format: format.unwrap_or(Format::B8G8R8A8),
                        backing: None,
                        displayable: format.is_some(),
                        size,
                    },
                );
                reply(hdr, cmd::RESP_OK_NODATA)
            }
            cmd::TRANSFER_TO_HOST_3D | cmd::TRANSFER_FROM_HOST_3D => {
                let Some(raw) = body::<48>(reader) else {
                    return reply(hdr, cmd::RESP_ERR_UNSPEC);
                };
                let Ok(mut f) = Fields::new(&raw, 48) else {
                    return reply(hdr, cmd::RESP_ERR_UNSPEC);
                };
                let bx = [f.u32(), f.u32(), f.u32(), f.u32(), f.u32(), f.u32()];
                let offset = f.u64();
                let id = f.u32();
                let t = Transfer3d {
                    bx,
                    offset,
                    level: f.u32(),
                    stride: f.u32(),
                    layer_stride: f.u32(),
                };
                if !self.resources.contains_key(&id) {
                    return reply(hdr, cmd::RESP_ERR_INVALID_RESOURCE_ID);
                }
                let result = if hdr.type_ == cmd::TRANSFER_TO_HOST_3D {
                    r3.transfer_to_host_3d(hdr.ctx_id, id, &t)
                } else {
                    r3.transfer_from_host_3d(hdr.ctx_id, id, &t)
                };
                match result {
                    Ok(()) => reply(hdr, cmd::RESP_OK_NODATA),
                    Err(e) => {
                        warn!("transfer 3d, resource {id}: {e}");
                        reply(hdr, cmd::RESP_ERR_INVALID_PARAMETER)
                    }
                }
            }
            cmd::SUBMIT_3D => {
                let Some(size) = Self::resource_id_only(reader) else {
                    return reply(hdr, cmd::RESP_ERR_UNSPEC);
                };
                if !ctx_known {
                    return reply(hdr, cmd::RESP_ERR_INVALID_CONTEXT_ID);
                }
                if size > MAX_SUBMIT_SIZE || reader.available() < size as usize {
                    warn!(
                        "submit of {size} bytes with {} available",
                        reader.available()
                    );
                    return reply(hdr, cmd::RESP_ERR_INVALID_PARAMETER);
                }
                let mut commands = vec![0u8; size as usize];
                if reader.read_exact(&mut commands).is_err() {
                    return reply(hdr, cmd::RESP_ERR_UNSPEC);
                }
                match r3.submit(hdr.ctx_id, &mut commands) {
                    Ok(()) => reply(hdr, cmd::RESP_OK_NODATA),
                    Err(e) => err(e, "submit"),
                }
            }
            _ => reply(hdr, cmd::RESP_ERR_UNSPEC),
        }
    }

    /// Decodes one cursor command into what the display must do (nothing
    /// for a malformed one or without a display).
    pub fn cursor(&mut self, chain: &DescChain, mem: &GuestMem) -> Option<DisplayRequest> {
        let mut reader = chain.reader(mem);
        let mut raw = [0u8; UPDATE_CURSOR_SIZE];
        if reader.read_exact(&mut raw).is_err() {
            warn!("cursor request shorter than {UPDATE_CURSOR_SIZE} bytes");
            return None;
        }
        let hdr = CtrlHdr::decode(&raw).ok()?;
        let c = UpdateCursor::decode(&raw).ok()?;
        if c.scanout_id >= self.num_scanouts() {
            warn!("cursor on scanout {} which does not exist", c.scanout_id);
            return None;
        }
        match hdr.type_ {
            cmd::MOVE_CURSOR => Some(DisplayRequest::CursorMove {
                scanout_id: c.scanout_id,
                x: c.x,
                y: c.y,
            }),
            cmd::UPDATE_CURSOR if c.resource_id == 0 => Some(DisplayRequest::CursorHide {
                scanout_id: c.scanout_id,
            }),
            cmd::UPDATE_CURSOR => {
                let resource = self.resources.get(&c.resource_id)?;
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
                if let Err(e) = self.renderer.read_rect(c.resource_id, rect, &mut rows) {
                    warn!("cursor resource {}: {e}", c.resource_id);
                    return None;
                }
                format.to_bgra(&mut rows);
                let mut image = Box::new([0u8; 64 * 64 * 4]);
                let row = w as usize * 4;
                for (y, src) in rows.chunks_exact(row.max(4)).take(h as usize).enumerate() {
                    if let Some(dst) = image.get_mut(y * 256..y * 256 + row) {
                        dst.copy_from_slice(src);
                    }
                }
                Some(DisplayRequest::CursorUpdate {
                    scanout_id: c.scanout_id,
                    x: c.x,
                    y: c.y,
                    hot_x: c.hot_x,
                    hot_y: c.hot_y,
                    image,
                })
            }
            other => {
                warn!("unknown cursor command {other:#x}");
                None
            }
        }
    }

    /// Writes a response into the chain; returns the used length.
    fn write_response(chain: &DescChain, mem: &GuestMem, bytes: &[u8]) -> u32 {
        let mut writer = chain.writer(mem);
        if writer.available() < bytes.len() {
            warn!(
                "response of {} bytes does not fit in {} writable bytes",
                bytes.len(),
                writer.available()
            );
            if writer.available() >= HDR_SIZE {
                if let Some(hdr) = bytes.get(..HDR_SIZE).and_then(|b| CtrlHdr::decode(b).ok()) {
                    let mut err = hdr;
                    err.type_ = cmd::RESP_ERR_UNSPEC;
                    let _ = writer.write_all(&err.encode());
                }
            }
            return writer.used_len();
        }
        if let Err(e) = writer.write_all(bytes) {
            warn!("writing a response: {e}");
        }
        writer.used_len()
    }

    /// Runs one control chain; None if it is now held for the display.
    fn run_one(&mut self, chain: DescChain, mem: &GuestMem) -> Option<u32> {
        match self.execute(&chain, mem) {
            Outcome::Reply(bytes) => {
                // With a 3D renderer work may still be running on the host
                // GPU: a fenced response waits for the renderer's fence.
                if let Some(fence) = self.fence_for(&bytes) {
                    self.fenced.push(Fenced {
                        chain,
                        bytes,
                        fence,
                    });
                    return None;
                }
                Some(Self::write_response(&chain, mem, &bytes))
            }
            Outcome::Wait { batch, kind, hdr } => {
                let ticket = self.next_ticket;
                self.next_ticket += 1;
                let queued = self
                    .display
                    .as_ref()
                    .is_some_and(|d| d.submit(ticket, batch));
                if queued {
                    if kind != WaitKind::NoData {
                        self.arm_query_timer();
                    }
                    self.pending = Some(Pending {
                        ticket,
                        chain,
                        kind,
                        hdr,
                    });
                    None
                } else {
                    let bytes = self.finish(kind, &hdr, DisplayReply::Unavailable);
                    Some(Self::write_response(&chain, mem, &bytes))
                }
            }
        }
    }

    /// Creates a renderer fence for a fenced response (3D renderers only).
    fn fence_for(&mut self, response: &[u8]) -> Option<Fence> {
        let hdr = CtrlHdr::decode(response).ok()?;
        if hdr.flags & FLAG_FENCE == 0 {
            return None;
        }
        let r3 = self.renderer.three_d()?;
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
                warn!("fence {}: {e}", fence.id);
                None
            }
        }
    }

    /// The held responses that the renderer's signalled fences complete:
    /// (chain, response bytes).
    fn take_signalled(&mut self) -> Vec<(DescChain, Vec<u8>)> {
        let Some(r3) = self.renderer.three_d() else {
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

    fn fences_signalled(&mut self, queues: &mut Queues<'_>) {
        let done = self.take_signalled();
        if done.is_empty() {
            return;
        }
        if let Some(mut queue) = queues.get(CONTROL_QUEUE) {
            for (chain, bytes) in done {
                let len = Self::write_response(&chain, queue.memory(), &bytes);
                queue.complete(chain.head(), len);
            }
        }
    }

    /// Watches the 3D renderer's poll fd once it exists (it is created on
    /// first use, on this thread).
    fn register_renderer_poll(&mut self) {
        if self.poll_registered {
            return;
        }
        let Some(events) = &self.events else {
            return;
        };
        let Some(r3) = self.renderer.three_d() else {
            return;
        };
        if let Some(fd) = r3.poll_fd() {
            match events.register(&fd, EventSet::IN, RENDERER_POLL_TOKEN) {
                Ok(()) => self.poll_registered = true,
                Err(e) => warn!("cannot watch the renderer's fd: {e}"),
            }
        }
    }

    fn arm_query_timer(&mut self) {
        if let Some(timer) = &mut self.query_timer {
            if let Err(e) = timer.reset(DISPLAY_QUERY_TIMEOUT, None) {
                warn!("display query timer: {e}");
            }
        }
    }

    /// The frontend did not answer a display query in time: answer it
    /// ourselves and stop using that display socket until the next one.
    fn query_timed_out(&mut self, queues: &mut Queues<'_>) {
        if let Some(timer) = &mut self.query_timer {
            // Non-blocking: nothing to read means a stale wake-up.
            let _ = timer.wait();
        }
        let Some(pending) = self.pending.take_if(|p| p.kind != WaitKind::NoData) else {
            return;
        };
        warn!(
            "the frontend did not answer a display query within {:?}; \
             using our own modes until it hands over a new display socket",
            DISPLAY_QUERY_TIMEOUT
        );
        self.frontend_display = false;
        let bytes = self.finish(pending.kind, &pending.hdr, DisplayReply::Unavailable);
        if let Some(mut queue) = queues.get(CONTROL_QUEUE) {
            let len = Self::write_response(&pending.chain, queue.memory(), &bytes);
            queue.complete(pending.chain.head(), len);
        }
        self.process_control(queues);
    }

    fn run_backlog(&mut self, queue: &mut Queue<'_>) {
        let mem = queue.memory();
        while self.pending.is_none() {
            let Some(chain) = self.backlog.pop_front() else {
                break;
            };
            let head = chain.head();
            if let Some(len) = self.run_one(chain, mem) {
                queue.complete(head, len);
            }
        }
    }

    fn process_control(&mut self, queues: &mut Queues<'_>) {
        let Some(mut queue) = queues.get(CONTROL_QUEUE) else {
            return;
        };
        self.run_backlog(&mut queue);
        queue.drain(|chain, mem| {
            if self.pending.is_some() {
                self.backlog.push_back(chain);
                return None;
            }
            self.run_one(chain, mem)
        });
        drop(queue);
        self.register_renderer_poll();
    }

    fn process_cursor(&mut self, queues: &mut Queues<'_>) {
        let Some(mut queue) = queues.get(CURSOR_QUEUE) else {
            return;
        };
        let mut requests = Vec::new();
        queue.drain(|chain, mem| {
            if self.frontend_display {
                requests.extend(self.cursor(&chain, mem));
            }
            // Cursor buffers carry no response.
            Some(0)
        });
        if !requests.is_empty() {
            self.deferred_cursor.extend(requests);
            self.submit_cursor();
        }
    }

    fn submit_cursor(&mut self) {
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

    fn display_finished(&mut self, queues: &mut Queues<'_>) {
        let Some(display) = &self.display else {
            return;
        };
        for (ticket, answer) in display.finished() {
            if ticket == CURSOR_TICKET {
                self.cursor_in_flight = self.cursor_in_flight.saturating_sub(1);
                continue;
            }
            let Some(pending) = self.pending.take_if(|p| p.ticket == ticket) else {
                continue;
            };
            let bytes = self.finish(pending.kind, &pending.hdr, answer);
            if let Some(mut queue) = queues.get(CONTROL_QUEUE) {
                let len = Self::write_response(&pending.chain, queue.memory(), &bytes);
                queue.complete(pending.chain.head(), len);
            }
        }
        self.submit_cursor();
        self.process_control(queues);
    }

    /// Scanout and full-frame requests that bring a new display socket up
    /// to date with what the guest already shows.
    fn replay_scanouts(&mut self) -> Vec<DisplayRequest> {
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
                batch.push(DisplayRequest::Update {
                    scanout_id,
                    rect: Rect {
                        x: 0,
                        y: 0,
                        width: s.rect.width,
                        height: s.rect.height,
                    },
                    pixels,
                });
            }
        }
        batch
    }
}

impl VirtioDevice for GpuDevice {
    /// The default stays `none`: with virgl, rutabaga loads the host's Mesa
    /// drivers at run time, whose calls depend on the driver and no list
    /// here can foresee. The 2D path passes its tests with `--seccomp kill`
    /// (README, "Sandbox").
    fn seccomp_policy() -> vhost_device_common::SeccompPolicy {
        vhost_device_common::SeccompPolicy {
            extra: &[],
            default_mode: vhost_device_common::SeccompMode::None,
        }
    }

    fn num_queues(&self) -> usize {
        2
    }

    fn features(&self) -> u64 {
        let mut features = 0;
        if self.cfg.edid {
            features |= F_EDID;
        }
        if self.renderer.is_3d() {
            features |= F_VIRGL | F_CONTEXT_INIT;
        }
        features
    }

    fn config(&self) -> &[u8] {
        &self.config_space
    }

    fn write_config(&mut self, offset: u32, data: &[u8]) -> bool {
        // QEMU writes the whole structure back; only events_clear matters.
        let mut space = self.config_space;
        let start = offset as usize;
        let Some(dst) = space.get_mut(start..start + data.len()) else {
            return false;
        };
        dst.copy_from_slice(data);
        let clear = space
            .get(4..8)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_le_bytes);
        let read = self
            .config_space
            .get(0..4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map_or(0, u32::from_le_bytes);
        if let Some(dst) = self.config_space.get_mut(0..4) {
            dst.copy_from_slice(&(read & !clear).to_le_bytes());
        }
        true
    }

    fn activate(&mut self, events: EventRegistry) -> DeviceResult {
        if !self.cfg.headless {
            let display = DisplayThread::spawn("vhost-device-gpu")?;
            events.register(display.event(), EventSet::IN, DISPLAY_TOKEN)?;
            self.display = Some(display);
            let timer = TimerFd::new()?;
            set_nonblocking(&timer)?;
            events.register(&timer, EventSet::IN, QUERY_TIMER_TOKEN)?;
            self.query_timer = Some(timer);
        }
        if let Some(fd) = self.renderer.three_d().and_then(|r3| r3.fence_fd()) {
            events.register(&fd, EventSet::IN, FENCE_TOKEN)?;
        }
        self.events = Some(events);
        Ok(())
    }

    fn process_queue(&mut self, queues: &mut Queues<'_>, index: usize) -> DeviceResult {
        match index {
            CONTROL_QUEUE => self.process_control(queues),
            CURSOR_QUEUE => self.process_cursor(queues),
            _ => {}
        }
        Ok(())
    }

    fn handle_event(
        &mut self,
        queues: &mut Queues<'_>,
        token: u16,
        _events: EventSet,
    ) -> DeviceResult {
        match token {
            DISPLAY_TOKEN => self.display_finished(queues),
            FENCE_TOKEN => self.fences_signalled(queues),
            QUERY_TIMER_TOKEN => self.query_timed_out(queues),
            RENDERER_POLL_TOKEN => {
                if let Some(r3) = self.renderer.three_d() {
                    r3.event_poll();
                }
                self.fences_signalled(queues);
            }
            _ => {}
        }
        Ok(())
    }

    fn queue_stopped(&mut self, index: usize) {
        if index == CONTROL_QUEUE {
            // QEMU stops the rings when the guest resets the device (or
            // reboots); a new driver starts from nothing.
            self.reset_state();
        }
    }

    fn reset(&mut self) {
        self.reset_state();
    }

    fn set_gpu_socket(&mut self, gpu: GpuBackend) -> io::Result<()> {
        if self.cfg.headless {
            info!("headless: ignoring the frontend's display socket");
            return Ok(());
        }
        let replay = self.replay_scanouts();
        let Some(display) = &self.display else {
            return Err(io::Error::other("the display thread is not running"));
        };
        display.set_socket(gpu);
        if !replay.is_empty() {
            display.submit(0, replay);
        }
        self.frontend_display = true;
        Ok(())
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::assertions_on_result_states
)]
mod tests;
