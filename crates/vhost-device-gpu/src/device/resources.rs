// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! 2D resources and their guest backings (virtio 1.3 §5.7.6.8:
//! RESOURCE_CREATE_2D, RESOURCE_UNREF, RESOURCE_ATTACH_BACKING,
//! RESOURCE_DETACH_BACKING, TRANSFER_TO_HOST_2D), and the host-memory
//! budget every resource is charged to.

use vhost_device_common::GuestMem;
use vm_memory::{Address, GuestAddress, GuestMemoryBackend, GuestMemoryRegion};

use super::state::{GpuState, Reply};
use super::{MAX_RESOURCES, MAX_RESOURCE_SIDE};
use crate::backend::{DisplayRequest, HostIovec};
use crate::error::{Error, Result};
use crate::protocol::{Format, MemEntry, Rect, ResourceCreate2d, Transfer2d};

/// Host memory charged for each resource beyond its pixels: the device's
/// and the renderer's bookkeeping (about 600 bytes measured with
/// rutabaga's 2D component), rounded up.
pub const RESOURCE_OVERHEAD: u64 = 1024;
/// Host memory charged for each piece of a backing: the device's iovec
/// and the renderer's copy of it.
pub const BACKING_ENTRY_COST: u64 = 32;

#[derive(Debug)]
pub(super) struct Backing {
    // Keeps the guest mappings the renderer's iovecs point into alive,
    // even if the frontend replaces the memory table meanwhile.
    _mem: GuestMem,
    pub(super) total: u64,
    // Host memory charged for its pieces.
    charged: u64,
}

#[derive(Debug)]
pub(super) struct Resource {
    pub(super) width: u32,
    pub(super) height: u32,
    // Depth, layers and mip levels - 1 (a 2D resource: 1, 1, 0).
    pub(super) depth: u32,
    pub(super) layers: u32,
    pub(super) last_level: u32,
    pub(super) format: Format,
    pub(super) backing: Option<Backing>,
    // A 3D resource of a format the display path cannot convert.
    pub(super) displayable: bool,
    // Host memory charged for it.
    pub(super) size: u64,
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

impl GpuState {
    /// The resource `id`.
    pub(super) fn resource(&self, id: u32) -> Result<&Resource> {
        self.resources.get(&id).ok_or(Error::UnknownResource(id))
    }

    /// The resource `id`, which `rect` must lie within: the opening check
    /// of every command that names a region of a resource.
    pub(super) fn resource_rect(&self, id: u32, rect: Rect) -> Result<&Resource> {
        let resource = self.resource(id)?;
        if !rect.within(resource.width, resource.height) {
            return Err(Error::InvalidParameter(format!(
                "{rect:?} outside resource {id} ({}x{})",
                resource.width, resource.height
            )));
        }
        Ok(resource)
    }

    /// Checks that `id` may name a new resource, and that the guest may
    /// have one more.
    pub(super) fn new_resource_id(&self, id: u32) -> Result<()> {
        if id == 0 || self.resources.contains_key(&id) {
            return Err(Error::ResourceIdTaken(id));
        }
        if self.resources.len() >= MAX_RESOURCES as usize {
            return Err(Error::OutOfMemory(format!(
                "resource {id}: the guest already has {MAX_RESOURCES} resources"
            )));
        }
        Ok(())
    }

    /// Checks that `size` more bytes fit in the guest's host-memory budget.
    pub(super) fn check_budget(&self, what: u32, size: u64) -> Result<()> {
        if self.hostmem.saturating_add(size) > self.cfg.max_hostmem {
            return Err(Error::OutOfMemory(format!(
                "resource {what}: {size} bytes would exceed --max-hostmem"
            )));
        }
        Ok(())
    }

    /// Records a created resource and charges its size.
    pub(super) fn insert_resource(&mut self, id: u32, resource: Resource) {
        self.hostmem = self.hostmem.saturating_add(resource.size);
        self.resources.insert(id, resource);
    }

    pub(super) fn create_2d(&mut self, c: &ResourceCreate2d) -> Result<Reply> {
        let id = c.resource_id;
        self.new_resource_id(id)?;
        let format = Format::from_code(c.format).ok_or_else(|| {
            Error::InvalidParameter(format!("resource {id}: unknown format {}", c.format))
        })?;
        let (width, height) = (c.width, c.height);
        if width == 0 || height == 0 || width > MAX_RESOURCE_SIDE || height > MAX_RESOURCE_SIDE {
            return Err(Error::InvalidParameter(format!(
                "resource {id}: bad size {width}x{height}"
            )));
        }
        let size = u64::from(width) * u64::from(height) * 4 + RESOURCE_OVERHEAD;
        self.check_budget(id, size)?;
        self.renderer
            .create_2d(id, width, height, format as u32)
            .map_err(Error::host("resource create 2d"))?;
        self.insert_resource(
            id,
            Resource {
                width,
                height,
                depth: 1,
                layers: 1,
                last_level: 0,
                format,
                backing: None,
                displayable: true,
                size,
            },
        );
        Ok(Reply::NoData)
    }

    pub(super) fn unref(&mut self, id: u32) -> Result<Reply> {
        let resource = self
            .resources
            .remove(&id)
            .ok_or(Error::UnknownResource(id))?;
        self.hostmem = self.hostmem.saturating_sub(resource.size);
        if let Err(e) = self.renderer.unref(id) {
            log::debug!("resource {id}: unref: {e}");
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
        Ok(self.display_or_ok(batch))
    }

    pub(super) fn attach_backing(
        &mut self,
        id: u32,
        entries: &[MemEntry],
        mem: &GuestMem,
    ) -> Result<Reply> {
        if self.resource(id)?.backing.is_some() {
            return Err(Error::Refused(format!(
                "resource {id} already has a backing"
            )));
        }
        let mut iovecs = Vec::new();
        let mut total: u64 = 0;
        for e in entries {
            host_iovecs(mem, e.addr, e.length, &mut iovecs).ok_or_else(|| {
                Error::Refused(format!(
                    "resource {id}: backing entry {:#x}+{:#x} is outside guest memory",
                    e.addr, e.length
                ))
            })?;
            total += u64::from(e.length);
        }
        let charged = iovecs.len() as u64 * BACKING_ENTRY_COST;
        self.check_budget(id, charged)?;
        // SAFETY: every iovec lies in guest memory (checked above), and
        // that memory stays mapped until the backing is detached or the
        // resource destroyed, because `Backing` holds a clone of `mem`.
        unsafe { self.renderer.attach_backing(id, iovecs) }
            .map_err(Error::host("attach backing"))?;
        if let Some(resource) = self.resources.get_mut(&id) {
            resource.backing = Some(Backing {
                _mem: mem.clone(),
                total,
                charged,
            });
            resource.size += charged;
            self.hostmem += charged;
        }
        Ok(Reply::NoData)
    }

    pub(super) fn detach_backing(&mut self, id: u32) -> Result<Reply> {
        if self.resource(id)?.backing.is_none() {
            return Err(Error::Refused(format!("resource {id} has no backing")));
        }
        self.renderer
            .detach_backing(id)
            .map_err(Error::host("detach backing"))?;
        if let Some(resource) = self.resources.get_mut(&id) {
            let refund = resource.backing.take().map_or(0, |b| b.charged);
            resource.size = resource.size.saturating_sub(refund);
            self.hostmem = self.hostmem.saturating_sub(refund);
        }
        Ok(Reply::NoData)
    }

    pub(super) fn transfer_2d(&mut self, t: &Transfer2d) -> Result<Reply> {
        let (id, rect, offset) = (t.resource_id, t.rect, t.offset);
        let resource = self.resource_rect(id, rect)?;
        let backing = resource.backing.as_ref().ok_or_else(|| {
            Error::Refused(format!("transfer to resource {id}, which has no backing"))
        })?;
        if rect.is_empty() {
            return Ok(Reply::NoData);
        }
        let stride = u64::from(resource.width) * 4;
        let position = u64::from(rect.y) * stride + u64::from(rect.x) * 4;
        // Where the last source byte is, with the resource's stride.
        let end =
            offset.checked_add((u64::from(rect.height) - 1) * stride + u64::from(rect.width) * 4);
        if end.is_none_or(|end| end > backing.total) {
            return Err(Error::InvalidParameter(format!(
                "transfer to resource {id}: source beyond its backing"
            )));
        }
        if offset < position {
            return Err(Error::InvalidParameter(format!(
                "transfer to resource {id}: offset {offset} before the rectangle's own \
                 position {position} is not supported"
            )));
        }
        self.renderer
            .transfer_to_host(id, rect, offset)
            .map_err(Error::host("transfer to host 2d"))?;
        Ok(Reply::NoData)
    }
}
