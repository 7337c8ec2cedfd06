// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The virtio-gpu device: decode each request once, hand it to the state
//! ([`GpuState`]), and turn the result into the guest's response.
//!
//! Control commands are answered strictly in order. A command whose effect
//! goes to the frontend's display (SET_SCANOUT, RESOURCE_FLUSH, a scanout's
//! resource unref) or whose answer comes from it (GET_DISPLAY_INFO,
//! GET_EDID) is queued to the display thread and its chain held; the chains
//! behind it wait in a backlog until the display thread reports back. So a
//! response, fenced or not, is only ever completed after its work is done,
//! and fences complete in submission order.
//!
//! - `state`: resources, scanouts and contexts, with no queue;
//!   `resources`, `display` and `three_d` hold its commands.
//! - `control`: the control queue, its backlog and the display thread.
//! - `fences`: fenced 3D responses. `cursor`: the cursor queue.

use std::collections::VecDeque;
use std::io;

use log::{debug, info};
use vhost::vhost_user::GpuBackend;
use vhost_device_common::{
    DescChain, DeviceResult, EventRegistry, EventSet, FsAccess, GuestMem, Queues, SandboxPolicy,
    VirtioDevice,
};
use vmm_sys_util::timerfd::TimerFd;

use crate::backend::{DisplayRequest, DisplayThread, Renderer};
use crate::error::Error;
use crate::protocol::{
    CtrlHdr, DisplayMode, GpuCommand, CONFIG_SIZE, F_CONTEXT_INIT, F_EDID, F_VIRGL, MAX_SCANOUTS,
};

mod control;
mod cursor;
mod display;
mod fences;
mod resources;
mod state;
mod syscalls;
mod three_d;

pub use crate::protocol::{MAX_BACKING_ENTRIES, MAX_SUBMIT_SIZE};
pub use control::{DISPLAY_QUERY_TIMEOUT, DISPLAY_WRITE_TIMEOUT};
pub use cursor::coalesce_cursor;
pub use state::{GpuState, Reply};

use control::Pending;
use fences::Fenced;

/// Queue indices.
pub const CONTROL_QUEUE: usize = 0;
/// The cursor queue.
pub const CURSOR_QUEUE: usize = 1;

/// Largest resource side we create.
pub const MAX_RESOURCE_SIDE: u32 = 16384;
/// Most resources one guest may have.
pub const MAX_RESOURCES: u32 = 65536;
/// Most 3D contexts one guest may have.
pub const MAX_CONTEXTS: u32 = 256;

/// Event token of the display thread's eventfd.
const DISPLAY_TOKEN: u16 = 0;
/// Event token of the 3D renderer's fence eventfd.
const FENCE_TOKEN: u16 = 1;
/// Event token of the 3D renderer's own poll fd.
const RENDERER_POLL_TOKEN: u16 = 2;
/// Event token of the display-query timeout.
const QUERY_TIMER_TOKEN: u16 = 3;

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

impl GpuConfig {
    /// What the daemon needs once set up; seccomp defaults to `kill` in
    /// both modes. 2D renders in our own code and uses no file: no call
    /// beyond the core's, Landlock with no path. With virgl, rutabaga loads
    /// the host's Mesa driver: its calls are on the mode's list
    /// (`device/syscalls.rs`), and Landlock keeps the file system
    /// read-only, with the render nodes (`/dev/dri`) and shared memory
    /// writable ([`SandboxPolicy::host_library`]).
    pub fn sandbox_policy(&self) -> SandboxPolicy {
        let policy = SandboxPolicy::of::<GpuDevice>();
        match self.mode {
            GpuMode::TwoD => policy,
            GpuMode::Virgl => {
                let mut policy = policy
                    .host_library()
                    .with_path("/dev/dri", FsAccess::Device);
                policy.seccomp.extra = syscalls::VIRGL;
                policy
            }
        }
    }
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

/// The virtio-gpu device of one connection.
pub struct GpuDevice {
    state: GpuState,
    config_space: [u8; CONFIG_SIZE],
    display: Option<DisplayThread>,
    pending: Option<Pending>,
    backlog: VecDeque<DescChain>,
    next_ticket: u64,
    events: Option<EventRegistry>,
    fenced: Vec<Fenced>,
    poll_registered: bool,
    query_timer: Option<TimerFd>,
    cursor_in_flight: usize,
    deferred_cursor: Vec<DisplayRequest>,
}

impl std::fmt::Debug for GpuDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuDevice")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
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
            state: GpuState::new(cfg, renderer),
            config_space,
            display: None,
            pending: None,
            backlog: VecDeque::new(),
            next_ticket: 1,
            events: None,
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
        self.state.frontend_display = true;
    }

    /// Whether a frontend display socket has been handed over.
    pub fn has_frontend_display(&self) -> bool {
        self.state.frontend_display
    }

    /// Our own display modes.
    pub fn own_modes(&self) -> Vec<DisplayMode> {
        self.state.own_modes()
    }

    /// Forgets every resource, context, scanout and held request: the
    /// driver reset the device.
    pub fn reset_state(&mut self) {
        self.state.reset();
        self.fenced.clear();
        self.deferred_cursor.clear();
        self.pending = None;
        self.backlog.clear();
        if let Some(dst) = self.config_space.get_mut(0..8) {
            dst.fill(0);
        }
    }

    /// Decodes and carries out one control command. The one place where a
    /// failed command becomes its error response, and is logged.
    pub fn execute(&mut self, chain: &DescChain, mem: &GuestMem) -> Outcome {
        let mut reader = chain.reader(mem);
        let hdr = match CtrlHdr::read(&mut reader) {
            Ok(hdr) => hdr,
            Err(e) => return self.failed(&CtrlHdr::default(), &e),
        };
        let result = GpuCommand::decode(&hdr, &mut reader)
            .and_then(|command| self.state.dispatch(&hdr, command, mem));
        match result {
            Ok(Reply::Display { batch, kind }) => Outcome::Wait { batch, kind, hdr },
            Ok(reply) => Outcome::Reply(reply.encode(&hdr)),
            Err(e) => self.failed(&hdr, &e),
        }
    }

    /// Logs a failed command (rate-limited: the guest chooses how often)
    /// and makes its error response.
    pub(super) fn failed(&self, hdr: &CtrlHdr, e: &Error) -> Outcome {
        match e {
            // Probing for optional commands is not worth a warning.
            Error::Unsupported(_) => debug!("control command {:#x}: {e}", hdr.type_),
            _ => self
                .state
                .log
                .warn(|| format!("control command {:#x}: {e}", hdr.type_)),
        }
        Outcome::Reply(e.response(hdr).encode().to_vec())
    }

    /// The response to a held command, once the display has answered.
    pub fn finish(
        &mut self,
        kind: WaitKind,
        hdr: &CtrlHdr,
        answer: crate::backend::DisplayReply,
    ) -> Vec<u8> {
        self.state.finish(kind, answer).encode(hdr)
    }
}

impl VirtioDevice for GpuDevice {
    /// The 2D path needs nothing beyond the core's calls; virgl's defaults
    /// are in [`GpuConfig::sandbox_policy`].
    fn seccomp_policy() -> vhost_device_common::SeccompPolicy {
        vhost_device_common::SeccompPolicy::default()
    }

    fn num_queues(&self) -> usize {
        2
    }

    fn features(&self) -> u64 {
        let mut features = 0;
        if self.state.cfg.edid {
            features |= F_EDID;
        }
        if self.state.renderer.is_3d() {
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
        if !self.state.cfg.headless {
            let display = DisplayThread::spawn("vhost-device-gpu")?;
            events.register(display.event(), EventSet::IN, DISPLAY_TOKEN)?;
            self.display = Some(display);
            let timer = TimerFd::new()?;
            control::set_nonblocking(&timer)?;
            events.register(&timer, EventSet::IN, QUERY_TIMER_TOKEN)?;
            self.query_timer = Some(timer);
        }
        if let Some(fd) = self.state.renderer.three_d().and_then(|r3| r3.fence_fd()) {
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
                if let Some(r3) = self.state.renderer.three_d() {
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

    /// The guest's contexts and resources go now, on the thread that owns
    /// a 3D renderer's GL context; the renderer itself stays for the next
    /// connection (see `backend::virgl_handover`).
    fn worker_stopping(&mut self) {
        self.state.reset();
        self.state.cleanup_stale();
        self.state.renderer.release();
    }

    fn set_gpu_socket(&mut self, gpu: GpuBackend) -> io::Result<()> {
        if self.state.cfg.headless {
            info!("headless: ignoring the frontend's display socket");
            return Ok(());
        }
        let replay = self.state.replay_scanouts();
        let Some(display) = &self.display else {
            return Err(io::Error::other("the display thread is not running"));
        };
        display.set_socket(gpu);
        if !replay.is_empty() {
            display.submit(0, replay);
        }
        self.state.frontend_display = true;
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
