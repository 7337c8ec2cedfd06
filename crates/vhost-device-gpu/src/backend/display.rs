// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! QEMU's vhost-user-gpu display socket, served from its own thread.
//!
//! Why a thread: QEMU reads this socket in its main loop, which needs the
//! big QEMU lock, while a vCPU holding that lock may be waiting for our
//! reply to GET_CONFIG or SET_CONFIG on the vhost-user socket. If the device
//! waited for the display socket while holding its own lock (which the
//! vhost-user message thread needs to answer), both sides would wait for
//! each other. So the device only queues work here and is told, through an
//! eventfd on its worker's epoll, when a batch has been written or answered.

use std::os::fd::AsRawFd;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread;

use log::{debug, info, warn};
use vhost::vhost_user::gpu_message::{
    VhostUserGpuCursorPos, VhostUserGpuCursorUpdate, VhostUserGpuEdidRequest, VhostUserGpuScanout,
    VhostUserGpuUpdate,
};
use vhost::vhost_user::message::VhostUserU64;
use vhost::vhost_user::GpuBackend;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::protocol::{DisplayMode, Rect, MAX_SCANOUTS};

/// `VHOST_USER_GPU_PROTOCOL_F_EDID`, as a mask (the vhost crate's constant
/// is the bit number).
pub const GPU_PROTOCOL_F_EDID: u64 = 1 << 0;

/// Pixels of an UPDATE, shared by the scanouts that show the same area.
/// `Arc<Vec<u8>>` rather than `Arc<[u8]>`: making the latter from the
/// renderer's vector would copy the frame once more, on the hot path.
#[allow(clippy::rc_buffer)]
pub type Pixels = Arc<Vec<u8>>;

/// One thing to tell or ask the frontend's display.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DisplayRequest {
    /// A scanout's size changed; 0×0 disables it.
    Scanout {
        /// Output.
        scanout_id: u32,
        /// New width.
        width: u32,
        /// New height.
        height: u32,
    },
    /// New pixels for part of a scanout, B,G,R,X bytes, rows packed.
    Update {
        /// Output.
        scanout_id: u32,
        /// Area in scanout coordinates.
        rect: Rect,
        /// `rect.width × rect.height × 4` bytes, shared by the scanouts
        /// that show the same part of a resource.
        pixels: Pixels,
    },
    /// Ask for the frontend's display modes.
    DisplayInfo,
    /// Ask for a scanout's EDID.
    Edid {
        /// Output.
        scanout_id: u32,
    },
    /// New cursor image and position.
    CursorUpdate {
        /// Output.
        scanout_id: u32,
        /// Position.
        x: u32,
        /// Position.
        y: u32,
        /// Hot spot.
        hot_x: u32,
        /// Hot spot.
        hot_y: u32,
        /// 64×64 B,G,R,A pixels.
        image: Box<[u8; 64 * 64 * 4]>,
    },
    /// Cursor moved.
    CursorMove {
        /// Output.
        scanout_id: u32,
        /// Position.
        x: u32,
        /// Position.
        y: u32,
    },
    /// Cursor hidden.
    CursorHide {
        /// Output.
        scanout_id: u32,
    },
}

/// What a batch of requests came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DisplayReply {
    /// Everything was written.
    Done,
    /// The frontend's modes.
    DisplayInfo(Vec<DisplayMode>),
    /// The frontend's EDID blob.
    Edid(Vec<u8>),
    /// No socket, or it failed: the caller falls back to its own answer.
    Unavailable,
}

enum Msg {
    Socket(GpuBackend),
    Batch(u64, Vec<DisplayRequest>),
}

/// The display thread and the channels to it.
#[derive(Debug)]
pub struct DisplayThread {
    tx: Sender<Msg>,
    done: Receiver<(u64, DisplayReply)>,
    event: EventFd,
}

impl DisplayThread {
    /// Starts the thread. It ends when this value is dropped and any
    /// socket write in progress returns.
    pub fn spawn(name: &str) -> std::io::Result<Self> {
        let event = EventFd::new(EFD_NONBLOCK)?;
        let notify = event.try_clone()?;
        let (tx, rx) = channel();
        let (done_tx, done) = channel();
        thread::Builder::new()
            .name(format!("{name}-display"))
            .spawn(move || run(&rx, &done_tx, &notify))?;
        Ok(DisplayThread { tx, done, event })
    }

    /// The eventfd that becomes readable when a batch finished.
    pub fn event(&self) -> &EventFd {
        &self.event
    }

    /// Replaces the socket (QEMU sends a new one on every DRIVER_OK).
    pub fn set_socket(&self, gpu: GpuBackend) {
        let _ = self.tx.send(Msg::Socket(gpu));
    }

    /// Queues a batch; its reply comes back with `ticket`.
    pub fn submit(&self, ticket: u64, batch: Vec<DisplayRequest>) -> bool {
        self.tx.send(Msg::Batch(ticket, batch)).is_ok()
    }

    /// Finished batches, oldest first. Clears the eventfd.
    pub fn finished(&self) -> Vec<(u64, DisplayReply)> {
        let _ = self.event.read();
        let mut out = Vec::new();
        while let Ok(item) = self.done.try_recv() {
            out.push(item);
        }
        out
    }

    /// The raw eventfd, for registration.
    pub fn event_fd(&self) -> i32 {
        self.event.as_raw_fd()
    }
}

struct Frontend {
    gpu: GpuBackend,
    edid: bool,
}

fn handshake(gpu: GpuBackend) -> Option<Frontend> {
    match gpu.get_protocol_features() {
        Ok(features) => {
            let offered = features.value;
            let wanted = offered & GPU_PROTOCOL_F_EDID;
            if let Err(e) = gpu.set_protocol_features(&VhostUserU64::new(wanted)) {
                warn!("display socket: SET_PROTOCOL_FEATURES: {e}");
                return None;
            }
            info!("display socket up (frontend features {offered:#x})");
            Some(Frontend {
                gpu,
                edid: wanted & GPU_PROTOCOL_F_EDID != 0,
            })
        }
        Err(e) => {
            warn!("display socket: GET_PROTOCOL_FEATURES: {e}");
            None
        }
    }
}

fn run(rx: &Receiver<Msg>, done: &Sender<(u64, DisplayReply)>, notify: &EventFd) {
    let mut frontend: Option<Frontend> = None;
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Socket(gpu) => frontend = handshake(gpu),
            Msg::Batch(ticket, batch) => {
                let reply = match frontend.as_ref() {
                    None => DisplayReply::Unavailable,
                    Some(fe) => match serve(fe, batch) {
                        Ok(reply) => reply,
                        Err(e) => {
                            // QEMU closes its end on reset; the next
                            // DRIVER_OK brings a new socket.
                            warn!("display socket failed, dropping it: {e}");
                            frontend = None;
                            DisplayReply::Unavailable
                        }
                    },
                };
                if done.send((ticket, reply)).is_err() {
                    break;
                }
                if let Err(e) = notify.write(1) {
                    debug!("display thread: notify: {e}");
                }
            }
        }
    }
}

fn serve(fe: &Frontend, batch: Vec<DisplayRequest>) -> std::io::Result<DisplayReply> {
    let mut reply = DisplayReply::Done;
    for req in batch {
        match req {
            DisplayRequest::Scanout {
                scanout_id,
                width,
                height,
            } => fe.gpu.set_scanout(&VhostUserGpuScanout {
                scanout_id,
                width,
                height,
            })?,
            DisplayRequest::Update {
                scanout_id,
                rect,
                pixels,
            } => fe.gpu.update_scanout(
                &VhostUserGpuUpdate {
                    scanout_id,
                    x: rect.x,
                    y: rect.y,
                    width: rect.width,
                    height: rect.height,
                },
                pixels.as_slice(),
            )?,
            DisplayRequest::DisplayInfo => {
                let info = fe.gpu.get_display_info()?;
                let modes = info
                    .pmodes
                    .iter()
                    .take(MAX_SCANOUTS)
                    .map(|m| {
                        // Copy out of the packed struct before use.
                        let r = m.r;
                        let enabled = m.enabled;
                        DisplayMode {
                            rect: Rect {
                                x: r.x,
                                y: r.y,
                                width: r.width,
                                height: r.height,
                            },
                            enabled: enabled != 0,
                        }
                    })
                    .collect();
                reply = DisplayReply::DisplayInfo(modes);
            }
            DisplayRequest::Edid { scanout_id } => {
                reply = if fe.edid {
                    let resp = fe.gpu.get_edid(&VhostUserGpuEdidRequest { scanout_id })?;
                    let size = usize::try_from(resp.size).unwrap_or(0).min(resp.edid.len());
                    DisplayReply::Edid(resp.edid.get(..size).unwrap_or_default().to_vec())
                } else {
                    DisplayReply::Unavailable
                };
            }
            DisplayRequest::CursorUpdate {
                scanout_id,
                x,
                y,
                hot_x,
                hot_y,
                image,
            } => fe.gpu.cursor_update(
                &VhostUserGpuCursorUpdate {
                    pos: VhostUserGpuCursorPos { scanout_id, x, y },
                    hot_x,
                    hot_y,
                },
                &image,
            )?,
            DisplayRequest::CursorMove { scanout_id, x, y } => fe
                .gpu
                .cursor_pos(&VhostUserGpuCursorPos { scanout_id, x, y })?,
            DisplayRequest::CursorHide { scanout_id } => {
                fe.gpu.cursor_pos_hide(&VhostUserGpuCursorPos {
                    scanout_id,
                    x: 0,
                    y: 0,
                })?
            }
        }
    }
    Ok(reply)
}
