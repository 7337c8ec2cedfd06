// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Control and cursor requests, decoded once from the chain into typed
//! commands (virtio 1.3 §5.7.6.8–§5.7.6.10). Handlers never see raw bytes.

use vhost_device_common::Reader;
use vm_memory::GuestMemory;

use super::wire::*;
use super::{cmd, CtrlHdr, Rect};
use crate::error::{Error, Result};

/// Most scatter-gather entries in one ATTACH_BACKING.
pub const MAX_BACKING_ENTRIES: u32 = 1 << 18;
/// Largest SUBMIT_3D command stream.
pub const MAX_SUBMIT_SIZE: u32 = 16 << 20;

impl From<virtio_gpu_rect> for Rect {
    fn from(r: virtio_gpu_rect) -> Self {
        Rect {
            x: r.x.into(),
            y: r.y.into(),
            width: r.width.into(),
            height: r.height.into(),
        }
    }
}

impl From<Rect> for virtio_gpu_rect {
    fn from(r: Rect) -> Self {
        virtio_gpu_rect {
            x: r.x.into(),
            y: r.y.into(),
            width: r.width.into(),
            height: r.height.into(),
        }
    }
}

impl CtrlHdr {
    /// Reads the header at the start of a request.
    pub fn read<M: GuestMemory + ?Sized>(reader: &mut Reader<'_, M>) -> Result<Self> {
        Ok(reader.read_obj::<virtio_gpu_ctrl_hdr>()?.into())
    }
}

/// RESOURCE_CREATE_2D.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResourceCreate2d {
    /// Guest-chosen id (0 is invalid).
    pub resource_id: u32,
    /// `enum virtio_gpu_formats` code.
    pub format: u32,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

/// SET_SCANOUT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetScanout {
    /// The part of the resource shown.
    pub rect: Rect,
    /// Which output.
    pub scanout_id: u32,
    /// 0 disables the output.
    pub resource_id: u32,
}

/// TRANSFER_TO_HOST_2D.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer2d {
    /// Area of the resource to update.
    pub rect: Rect,
    /// Byte offset of the rectangle's first pixel in the backing.
    pub offset: u64,
    /// The resource.
    pub resource_id: u32,
}

/// RESOURCE_FLUSH.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flush {
    /// Damaged area of the resource.
    pub rect: Rect,
    /// The resource.
    pub resource_id: u32,
}

/// One `virtio_gpu_mem_entry` of ATTACH_BACKING.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemEntry {
    /// Guest physical address.
    pub addr: u64,
    /// Length in bytes.
    pub length: u32,
}

/// RESOURCE_CREATE_3D parameters (also how a renderer creates a 2D
/// resource as a 3D texture).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Create3d {
    /// Gallium texture target.
    pub target: u32,
    /// virgl format.
    pub format: u32,
    /// Bind flags.
    pub bind: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Depth.
    pub depth: u32,
    /// Array size.
    pub array_size: u32,
    /// Mip levels - 1.
    pub last_level: u32,
    /// Samples.
    pub nr_samples: u32,
    /// `VIRTIO_GPU_RESOURCE_FLAG_*`.
    pub flags: u32,
}

/// `PIPE_TEXTURE_2D`: the gallium target of a plain 2D resource.
pub const PIPE_TEXTURE_2D: u32 = 2;
/// `PIPE_BIND_RENDER_TARGET`: how a 2D guest uses its resources.
pub const PIPE_BIND_RENDER_TARGET: u32 = 1 << 1;

impl Create3d {
    /// A 2D resource as the 3D interface describes it: a one-level
    /// render-target texture.
    pub fn texture_2d(width: u32, height: u32, format: u32) -> Self {
        Create3d {
            target: PIPE_TEXTURE_2D,
            format,
            bind: PIPE_BIND_RENDER_TARGET,
            width,
            height,
            depth: 1,
            array_size: 1,
            ..Default::default()
        }
    }
}

/// TRANSFER_TO/FROM_HOST_3D parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transfer3d {
    /// Box origin and size: x, y, z, w, h, d.
    pub bx: [u32; 6],
    /// Offset in the backing.
    pub offset: u64,
    /// Mip level.
    pub level: u32,
    /// Row stride in the backing.
    pub stride: u32,
    /// Layer stride in the backing.
    pub layer_stride: u32,
}

/// A control-queue command, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GpuCommand {
    /// GET_DISPLAY_INFO.
    GetDisplayInfo,
    /// GET_EDID.
    GetEdid {
        /// Output.
        scanout_id: u32,
    },
    /// RESOURCE_CREATE_2D.
    ResourceCreate2d(ResourceCreate2d),
    /// RESOURCE_UNREF.
    ResourceUnref {
        /// The resource.
        resource_id: u32,
    },
    /// SET_SCANOUT.
    SetScanout(SetScanout),
    /// RESOURCE_FLUSH.
    ResourceFlush(Flush),
    /// TRANSFER_TO_HOST_2D.
    TransferToHost2d(Transfer2d),
    /// RESOURCE_ATTACH_BACKING with its entries.
    ResourceAttachBacking {
        /// The resource.
        resource_id: u32,
        /// The backing's pieces, in order.
        entries: Vec<MemEntry>,
    },
    /// RESOURCE_DETACH_BACKING.
    ResourceDetachBacking {
        /// The resource.
        resource_id: u32,
    },
    /// GET_CAPSET_INFO.
    GetCapsetInfo {
        /// Index among the device's capsets.
        index: u32,
    },
    /// GET_CAPSET.
    GetCapset {
        /// Capset id.
        id: u32,
        /// Version.
        version: u32,
    },
    /// CTX_CREATE (the context is the header's `ctx_id`).
    CtxCreate {
        /// Capset id with CONTEXT_INIT.
        context_init: u32,
        /// Debug name.
        name: String,
    },
    /// CTX_DESTROY.
    CtxDestroy,
    /// CTX_ATTACH_RESOURCE.
    CtxAttachResource {
        /// The resource.
        resource_id: u32,
    },
    /// CTX_DETACH_RESOURCE.
    CtxDetachResource {
        /// The resource.
        resource_id: u32,
    },
    /// RESOURCE_CREATE_3D.
    ResourceCreate3d {
        /// Guest-chosen id.
        resource_id: u32,
        /// Parameters.
        create: Create3d,
    },
    /// TRANSFER_TO_HOST_3D or TRANSFER_FROM_HOST_3D.
    Transfer3d {
        /// To the host (else from it).
        to_host: bool,
        /// The resource.
        resource_id: u32,
        /// Parameters.
        transfer: Transfer3d,
    },
    /// SUBMIT_3D with its command stream.
    Submit3d {
        /// The command stream.
        commands: Vec<u8>,
    },
    /// Anything else: answered ERR_UNSPEC.
    Unsupported(u32),
}

fn resource_id<M: GuestMemory + ?Sized>(reader: &mut Reader<'_, M>) -> Result<u32> {
    Ok(reader
        .read_obj::<virtio_gpu_resource_unref>()?
        .resource_id
        .into())
}

impl GpuCommand {
    /// Decodes the body of the request whose header `hdr` was just read.
    pub fn decode<M: GuestMemory + ?Sized>(
        hdr: &CtrlHdr,
        reader: &mut Reader<'_, M>,
    ) -> Result<GpuCommand> {
        Ok(match hdr.type_ {
            cmd::GET_DISPLAY_INFO => GpuCommand::GetDisplayInfo,
            cmd::GET_EDID => GpuCommand::GetEdid {
                scanout_id: reader.read_obj::<virtio_gpu_get_edid>()?.scanout.into(),
            },
            cmd::RESOURCE_CREATE_2D => {
                let c: virtio_gpu_resource_create_2d = reader.read_obj()?;
                GpuCommand::ResourceCreate2d(ResourceCreate2d {
                    resource_id: c.resource_id.into(),
                    format: c.format.into(),
                    width: c.width.into(),
                    height: c.height.into(),
                })
            }
            cmd::RESOURCE_UNREF => GpuCommand::ResourceUnref {
                resource_id: resource_id(reader)?,
            },
            cmd::SET_SCANOUT => {
                let s: virtio_gpu_set_scanout = reader.read_obj()?;
                GpuCommand::SetScanout(SetScanout {
                    rect: s.r.into(),
                    scanout_id: s.scanout_id.into(),
                    resource_id: s.resource_id.into(),
                })
            }
            cmd::RESOURCE_FLUSH => {
                let f: virtio_gpu_resource_flush = reader.read_obj()?;
                GpuCommand::ResourceFlush(Flush {
                    rect: f.r.into(),
                    resource_id: f.resource_id.into(),
                })
            }
            cmd::TRANSFER_TO_HOST_2D => {
                let t: virtio_gpu_transfer_to_host_2d = reader.read_obj()?;
                GpuCommand::TransferToHost2d(Transfer2d {
                    rect: t.r.into(),
                    offset: t.offset.into(),
                    resource_id: t.resource_id.into(),
                })
            }
            cmd::RESOURCE_ATTACH_BACKING => Self::attach_backing(reader)?,
            cmd::RESOURCE_DETACH_BACKING => GpuCommand::ResourceDetachBacking {
                resource_id: resource_id(reader)?,
            },
            _ => Self::decode_3d(hdr, reader)?,
        })
    }

    /// The capset and 3D commands (§5.7.6.9), and unknown ones.
    fn decode_3d<M: GuestMemory + ?Sized>(
        hdr: &CtrlHdr,
        reader: &mut Reader<'_, M>,
    ) -> Result<GpuCommand> {
        Ok(match hdr.type_ {
            cmd::GET_CAPSET_INFO => GpuCommand::GetCapsetInfo {
                index: reader
                    .read_obj::<virtio_gpu_get_capset_info>()?
                    .capset_index
                    .into(),
            },
            cmd::GET_CAPSET => {
                let c: virtio_gpu_get_capset = reader.read_obj()?;
                GpuCommand::GetCapset {
                    id: c.capset_id.into(),
                    version: c.capset_version.into(),
                }
            }
            cmd::CTX_CREATE => {
                let c: virtio_gpu_ctx_create = reader.read_obj()?;
                let len = usize::try_from(u32::from(c.nlen)).map_or(64, |n| n.min(64));
                let name = c.debug_name.get(..len).unwrap_or_default();
                GpuCommand::CtxCreate {
                    context_init: c.context_init.into(),
                    name: String::from_utf8_lossy(name).into_owned(),
                }
            }
            cmd::CTX_DESTROY => GpuCommand::CtxDestroy,
            cmd::CTX_ATTACH_RESOURCE => GpuCommand::CtxAttachResource {
                resource_id: reader
                    .read_obj::<virtio_gpu_ctx_resource>()?
                    .resource_id
                    .into(),
            },
            cmd::CTX_DETACH_RESOURCE => GpuCommand::CtxDetachResource {
                resource_id: reader
                    .read_obj::<virtio_gpu_ctx_resource>()?
                    .resource_id
                    .into(),
            },
            cmd::RESOURCE_CREATE_3D => Self::create_3d(reader.read_obj()?),
            cmd::TRANSFER_TO_HOST_3D | cmd::TRANSFER_FROM_HOST_3D => {
                let t: virtio_gpu_transfer_host_3d = reader.read_obj()?;
                let b = t.box_;
                GpuCommand::Transfer3d {
                    to_host: hdr.type_ == cmd::TRANSFER_TO_HOST_3D,
                    resource_id: t.resource_id.into(),
                    transfer: Transfer3d {
                        bx: [b.x, b.y, b.z, b.w, b.h, b.d].map(u32::from),
                        offset: t.offset.into(),
                        level: t.level.into(),
                        stride: t.stride.into(),
                        layer_stride: t.layer_stride.into(),
                    },
                }
            }
            cmd::SUBMIT_3D => Self::submit_3d(reader)?,
            other => GpuCommand::Unsupported(other),
        })
    }

    fn attach_backing<M: GuestMemory + ?Sized>(reader: &mut Reader<'_, M>) -> Result<GpuCommand> {
        let a: virtio_gpu_resource_attach_backing = reader.read_obj()?;
        let (resource_id, nr_entries) = (u32::from(a.resource_id), u32::from(a.nr_entries));
        if nr_entries == 0 || nr_entries > MAX_BACKING_ENTRIES {
            return Err(Error::InvalidParameter(format!(
                "resource {resource_id}: {nr_entries} backing entries"
            )));
        }
        // Bounded by the chain, so the vector below is too.
        let needed = nr_entries as usize * std::mem::size_of::<virtio_gpu_mem_entry>();
        if reader.available() < needed {
            return Err(Error::Refused(format!(
                "resource {resource_id}: fewer backing entries than the {nr_entries} announced"
            )));
        }
        let entries = (0..nr_entries)
            .map(|_| {
                let e: virtio_gpu_mem_entry = reader.read_obj()?;
                Ok(MemEntry {
                    addr: e.addr.into(),
                    length: e.length.into(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(GpuCommand::ResourceAttachBacking {
            resource_id,
            entries,
        })
    }

    fn create_3d(c: virtio_gpu_resource_create_3d) -> GpuCommand {
        GpuCommand::ResourceCreate3d {
            resource_id: c.resource_id.into(),
            create: Create3d {
                target: c.target.into(),
                format: c.format.into(),
                bind: c.bind.into(),
                width: c.width.into(),
                height: c.height.into(),
                depth: c.depth.into(),
                array_size: c.array_size.into(),
                last_level: c.last_level.into(),
                nr_samples: c.nr_samples.into(),
                flags: c.flags.into(),
            },
        }
    }

    fn submit_3d<M: GuestMemory + ?Sized>(reader: &mut Reader<'_, M>) -> Result<GpuCommand> {
        let size = u32::from(reader.read_obj::<virtio_gpu_cmd_submit>()?.size);
        if size > MAX_SUBMIT_SIZE || reader.available() < size as usize {
            return Err(Error::InvalidParameter(format!(
                "submit of {size} bytes with {} available",
                reader.available()
            )));
        }
        let mut commands = vec![0u8; size as usize];
        reader.read_exact(&mut commands)?;
        Ok(GpuCommand::Submit3d { commands })
    }
}

/// UPDATE_CURSOR / MOVE_CURSOR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateCursor {
    /// UPDATE_CURSOR or MOVE_CURSOR.
    pub type_: u32,
    /// Output the cursor is on.
    pub scanout_id: u32,
    /// Position.
    pub x: u32,
    /// Position.
    pub y: u32,
    /// Image (0 hides the cursor), UPDATE_CURSOR only.
    pub resource_id: u32,
    /// Hot spot.
    pub hot_x: u32,
    /// Hot spot.
    pub hot_y: u32,
}

impl UpdateCursor {
    /// Decodes a whole cursor-queue request, header included.
    pub fn decode<M: GuestMemory + ?Sized>(reader: &mut Reader<'_, M>) -> Result<Self> {
        let c: virtio_gpu_update_cursor = reader.read_obj()?;
        Ok(UpdateCursor {
            type_: c.hdr.type_.into(),
            scanout_id: c.pos.scanout_id.into(),
            x: c.pos.x.into(),
            y: c.pos.y.into(),
            resource_id: c.resource_id.into(),
            hot_x: c.hot_x.into(),
            hot_y: c.hot_y.into(),
        })
    }
}
