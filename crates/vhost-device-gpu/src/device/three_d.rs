// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The 3D commands (virtio 1.3 §5.7.6.9), served only with a 3D renderer:
//! capsets, contexts, 3D resources, 3D transfers and command submission.

use super::resources::{Resource, RESOURCE_OVERHEAD};
use super::state::{GpuState, Reply};
use super::{MAX_CONTEXTS, MAX_RESOURCE_SIDE};
use crate::backend::Renderer3d;
use crate::error::{Error, Result};
use crate::protocol::{cmd, Create3d, CtrlHdr, Format, GpuCommand, Transfer3d};

/// Gallium's `PIPE_BUFFER` texture target.
const PIPE_BUFFER: u32 = 0;
/// The largest buffer resource, in bytes (`--max-hostmem` bounds the sum).
const MAX_BUFFER_BYTES: u32 = 1 << 30;

impl GpuState {
    /// The 3D half of the renderer; in 2D mode every 3D command is
    /// unsupported, and a capset query names no capset.
    fn r3(&mut self, type_: u32) -> Result<&mut dyn Renderer3d> {
        if !self.renderer.is_3d() {
            return Err(if matches!(type_, cmd::GET_CAPSET_INFO | cmd::GET_CAPSET) {
                Error::InvalidParameter("no capsets in 2D mode".into())
            } else {
                Error::Unsupported(type_)
            });
        }
        self.renderer.three_d().ok_or(Error::Unsupported(type_))
    }

    /// Checks that the header's context exists.
    fn context(&self, hdr: &CtrlHdr) -> Result<u32> {
        if self.contexts.contains(&hdr.ctx_id) {
            Ok(hdr.ctx_id)
        } else {
            Err(Error::InvalidContext(hdr.ctx_id))
        }
    }

    /// Every command that is not a 2D one.
    pub(super) fn dispatch_3d(&mut self, hdr: &CtrlHdr, command: GpuCommand) -> Result<Reply> {
        if let GpuCommand::Unsupported(code) = command {
            return Err(Error::Unsupported(code));
        }
        let num_capsets = self.renderer.num_capsets();
        self.r3(hdr.type_)?;
        match command {
            GpuCommand::GetCapsetInfo { index } => {
                if index >= num_capsets {
                    return Err(Error::InvalidParameter(format!("capset index {index}")));
                }
                let (id, version, size) = self
                    .r3(hdr.type_)?
                    .capset_info(index)
                    .map_err(Error::host("capset info"))?;
                Ok(Reply::CapsetInfo { id, version, size })
            }
            GpuCommand::GetCapset { id, version } => {
                let data =
                    self.r3(hdr.type_)?
                        .capset(id, version)
                        .map_err(|source| Error::Rejected {
                            what: "get capset",
                            source,
                        })?;
                Ok(Reply::Capset(data))
            }
            GpuCommand::CtxCreate { context_init, name } => {
                if hdr.ctx_id == 0 || self.contexts.contains(&hdr.ctx_id) {
                    return Err(Error::InvalidContext(hdr.ctx_id));
                }
                if self.contexts.len() >= MAX_CONTEXTS as usize {
                    return Err(Error::OutOfMemory(format!(
                        "context {}: the guest already has {MAX_CONTEXTS} contexts",
                        hdr.ctx_id
                    )));
                }
                self.r3(hdr.type_)?
                    .create_context(hdr.ctx_id, context_init, &name)
                    .map_err(Error::host("context create"))?;
                self.contexts.insert(hdr.ctx_id);
                Ok(Reply::NoData)
            }
            GpuCommand::CtxDestroy => {
                let ctx = self.context(hdr)?;
                self.contexts.remove(&ctx);
                self.r3(hdr.type_)?
                    .destroy_context(ctx)
                    .map_err(Error::host("context destroy"))?;
                Ok(Reply::NoData)
            }
            GpuCommand::CtxAttachResource { resource_id }
            | GpuCommand::CtxDetachResource { resource_id } => {
                let ctx = self.context(hdr)?;
                self.resource(resource_id)?;
                let attach = matches!(command, GpuCommand::CtxAttachResource { .. });
                let r3 = self.r3(hdr.type_)?;
                let result = if attach {
                    r3.attach(ctx, resource_id)
                } else {
                    r3.detach(ctx, resource_id)
                };
                result.map_err(Error::host("context attach/detach"))?;
                Ok(Reply::NoData)
            }
            GpuCommand::ResourceCreate3d {
                resource_id,
                create,
            } => self.create_3d(hdr, resource_id, &create),
            GpuCommand::Transfer3d {
                to_host,
                resource_id,
                transfer,
            } => {
                self.check_transfer_3d(resource_id, &transfer)?;
                let r3 = self.r3(hdr.type_)?;
                let result = if to_host {
                    r3.transfer_to_host_3d(hdr.ctx_id, resource_id, &transfer)
                } else {
                    r3.transfer_from_host_3d(hdr.ctx_id, resource_id, &transfer)
                };
                result.map_err(|source| Error::Rejected {
                    what: "transfer 3d",
                    source,
                })?;
                Ok(Reply::NoData)
            }
            GpuCommand::Submit3d { mut commands } => {
                let ctx = self.context(hdr)?;
                // At debug level, the proof that a guest's GL ran here (the
                // guest rig's virgl scenario looks for it).
                log::debug!("SUBMIT_3D: context {ctx}, {} bytes", commands.len());
                self.r3(hdr.type_)?
                    .submit(ctx, &mut commands)
                    .map_err(Error::host("submit"))?;
                Ok(Reply::NoData)
            }
            _ => Err(Error::Unsupported(hdr.type_)),
        }
    }

    /// Checks a 3D transfer against its resource, so virglrenderer only
    /// sees boxes inside the resource's mip level and backing ranges that
    /// start inside the backing. (The bytes per pixel of a virgl format are
    /// virglrenderer's business: it checks the end of each row itself.)
    fn check_transfer_3d(&self, id: u32, t: &Transfer3d) -> Result<()> {
        let r = self.resource(id)?;
        let bad = |what: &str| {
            Err(Error::InvalidParameter(format!(
                "transfer 3d, resource {id}: {what}"
            )))
        };
        if t.level > r.last_level {
            return bad("no such mip level");
        }
        let at_level = |side: u32| side.checked_shr(t.level).unwrap_or(0).max(1);
        let [x, y, z, w, h, d] = t.bx;
        let sides = [
            (x, w, at_level(r.width)),
            (y, h, at_level(r.height)),
            (z, d, at_level(r.depth).max(r.layers)),
        ];
        if sides
            .iter()
            .any(|&(at, len, side)| at.checked_add(len).is_none_or(|end| end > side))
        {
            return bad("box outside the resource");
        }
        if let Some(backing) = &r.backing {
            // Where the box's last row starts in the backing.
            let last_row = u64::from(d.saturating_sub(1)) * u64::from(t.layer_stride)
                + u64::from(h.saturating_sub(1)) * u64::from(t.stride);
            if t.offset
                .checked_add(last_row)
                .is_none_or(|start| start > backing.total)
            {
                return bad("rows beyond the backing");
            }
        }
        Ok(())
    }

    fn create_3d(&mut self, hdr: &CtrlHdr, id: u32, c: &Create3d) -> Result<Reply> {
        self.new_resource_id(id)?;
        // A buffer (vertex, index, constant data; Mesa's upload and
        // command buffers) is one row whose width counts bytes, often
        // more than a texture side (the budget bounds it).
        let (max_width, bytes_per_texel) = if c.target == PIPE_BUFFER {
            (MAX_BUFFER_BYTES, 1)
        } else {
            (MAX_RESOURCE_SIDE, 4)
        };
        let sides_ok = (1..=max_width).contains(&c.width)
            && [c.height, c.depth.max(1), c.array_size.max(1)]
                .iter()
                .all(|&v| (1..=MAX_RESOURCE_SIDE).contains(&v));
        if !sides_ok {
            return Err(Error::InvalidParameter(format!(
                "resource {id}: bad size {}x{}x{}, {} layers",
                c.width, c.height, c.depth, c.array_size
            )));
        }
        let size = u64::from(c.width)
            * u64::from(c.height)
            * u64::from(c.depth.max(1))
            * u64::from(c.array_size.max(1))
            * bytes_per_texel
            + RESOURCE_OVERHEAD;
        self.check_budget(id, size)?;
        self.r3(hdr.type_)?
            .create_3d(id, c)
            .map_err(Error::host("resource create 3d"))?;
        let format = Format::from_code(c.format);
        self.insert_resource(
            id,
            Resource {
                width: c.width,
                height: c.height,
                depth: c.depth.max(1),
                layers: c.array_size.max(1),
                last_level: c.last_level,
                format: format.unwrap_or(Format::B8G8R8A8),
                backing: None,
                displayable: format.is_some(),
                size,
            },
        );
        Ok(Reply::NoData)
    }
}
