// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The virtio-gpu structures as they lie in guest memory (virtio 1.3
//! §5.7.6, "Device Operation"), named as in the spec and Linux's
//! `include/uapi/linux/virtio_gpu.h`.
//!
//! Every structure is `#[repr(C)]`, made of little-endian fields with the
//! spec's explicit padding, so there are no implicit holes and any bit
//! pattern is a valid value: a short or odd request is a read error in the
//! chain reader, never undefined behaviour. The sizes are checked at
//! compile time against the spec's.

#![allow(non_camel_case_types)]

use vm_memory::{ByteValued, Le32, Le64};

macro_rules! wire {
    ($($name:ident = $size:expr;)*) => {
        $(
            // SAFETY: a `#[repr(C)]` struct of little-endian integers and
            // byte arrays, padded explicitly as the spec lays it out (the
            // assert below checks that no implicit padding crept in):
            // every bit pattern is a valid value.
            unsafe impl ByteValued for $name {}
            const _: () = assert!(std::mem::size_of::<$name>() == $size);
        )*
    };
}

/// `struct virtio_gpu_ctrl_hdr` (§5.7.6.7): the start of every request and
/// response.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct virtio_gpu_ctrl_hdr {
    /// Command or response code.
    pub type_: Le32,
    /// `VIRTIO_GPU_FLAG_*`.
    pub flags: Le32,
    /// Fence id, meaningful with `VIRTIO_GPU_FLAG_FENCE`.
    pub fence_id: Le64,
    /// 3D context.
    pub ctx_id: Le32,
    /// Fence ring, meaningful with `VIRTIO_GPU_FLAG_INFO_RING_IDX`.
    pub ring_idx: u8,
    /// Padding.
    pub padding: [u8; 3],
}

/// `struct virtio_gpu_rect` (§5.7.6.8).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct virtio_gpu_rect {
    /// Left edge.
    pub x: Le32,
    /// Top edge.
    pub y: Le32,
    /// Width.
    pub width: Le32,
    /// Height.
    pub height: Le32,
}

/// `struct virtio_gpu_display_one`, one entry of
/// `struct virtio_gpu_resp_display_info` (§5.7.6.8, GET_DISPLAY_INFO).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct virtio_gpu_display_one {
    /// Preferred position and size.
    pub r: virtio_gpu_rect,
    /// Whether the output is connected.
    pub enabled: Le32,
    /// Unused.
    pub flags: Le32,
}

/// `struct virtio_gpu_get_edid` (§5.7.6.8, GET_EDID), after the header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct virtio_gpu_get_edid {
    /// Output.
    pub scanout: Le32,
    /// Padding.
    pub padding: Le32,
}

/// `struct virtio_gpu_resource_create_2d` (§5.7.6.8), after the header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct virtio_gpu_resource_create_2d {
    /// Guest-chosen id (0 is invalid).
    pub resource_id: Le32,
    /// `enum virtio_gpu_formats` code.
    pub format: Le32,
    /// Width in pixels.
    pub width: Le32,
    /// Height in pixels.
    pub height: Le32,
}

/// `struct virtio_gpu_resource_unref` (§5.7.6.8), after the header; also
/// the body of RESOURCE_DETACH_BACKING.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct virtio_gpu_resource_unref {
    /// The resource.
    pub resource_id: Le32,
    /// Padding.
    pub padding: Le32,
}

/// `struct virtio_gpu_set_scanout` (§5.7.6.8), after the header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct virtio_gpu_set_scanout {
    /// The part of the resource shown.
    pub r: virtio_gpu_rect,
    /// Which output.
    pub scanout_id: Le32,
    /// 0 disables the output.
    pub resource_id: Le32,
}

/// `struct virtio_gpu_resource_flush` (§5.7.6.8), after the header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct virtio_gpu_resource_flush {
    /// Damaged area of the resource.
    pub r: virtio_gpu_rect,
    /// The resource.
    pub resource_id: Le32,
    /// Padding.
    pub padding: Le32,
}

/// `struct virtio_gpu_transfer_to_host_2d` (§5.7.6.8), after the header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct virtio_gpu_transfer_to_host_2d {
    /// Area of the resource to update.
    pub r: virtio_gpu_rect,
    /// Byte offset of the rectangle's first pixel in the backing.
    pub offset: Le64,
    /// The resource.
    pub resource_id: Le32,
    /// Padding.
    pub padding: Le32,
}

/// `struct virtio_gpu_resource_attach_backing` (§5.7.6.8), after the
/// header; `nr_entries` [`virtio_gpu_mem_entry`] follow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct virtio_gpu_resource_attach_backing {
    /// The resource.
    pub resource_id: Le32,
    /// How many entries follow.
    pub nr_entries: Le32,
}

/// `struct virtio_gpu_mem_entry` (§5.7.6.8): one piece of a backing.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct virtio_gpu_mem_entry {
    /// Guest physical address.
    pub addr: Le64,
    /// Length in bytes.
    pub length: Le32,
    /// Padding.
    pub padding: Le32,
}

/// `struct virtio_gpu_get_capset_info` (§5.7.6.8), after the header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct virtio_gpu_get_capset_info {
    /// Index among the device's capsets.
    pub capset_index: Le32,
    /// Padding.
    pub padding: Le32,
}

/// `struct virtio_gpu_resp_capset_info` (§5.7.6.8), after the header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct virtio_gpu_resp_capset_info {
    /// Capset id.
    pub capset_id: Le32,
    /// Highest version.
    pub capset_max_version: Le32,
    /// Largest size.
    pub capset_max_size: Le32,
    /// Padding.
    pub padding: Le32,
}

/// `struct virtio_gpu_get_capset` (§5.7.6.8), after the header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct virtio_gpu_get_capset {
    /// Capset id.
    pub capset_id: Le32,
    /// Version.
    pub capset_version: Le32,
}

/// `struct virtio_gpu_ctx_create` (§5.7.6.9), after the header.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct virtio_gpu_ctx_create {
    /// Bytes of `debug_name` used.
    pub nlen: Le32,
    /// Capset id with VIRTIO_GPU_F_CONTEXT_INIT (low 8 bits).
    pub context_init: Le32,
    /// Name for debugging.
    pub debug_name: [u8; 64],
}

impl Default for virtio_gpu_ctx_create {
    fn default() -> Self {
        virtio_gpu_ctx_create {
            nlen: Le32::default(),
            context_init: Le32::default(),
            debug_name: [0; 64],
        }
    }
}

/// `struct virtio_gpu_ctx_resource` (§5.7.6.9), after the header: the body
/// of CTX_ATTACH_RESOURCE and CTX_DETACH_RESOURCE.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct virtio_gpu_ctx_resource {
    /// The resource.
    pub resource_id: Le32,
    /// Padding.
    pub padding: Le32,
}

/// `struct virtio_gpu_resource_create_3d` (§5.7.6.9), after the header.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct virtio_gpu_resource_create_3d {
    /// Guest-chosen id (0 is invalid).
    pub resource_id: Le32,
    /// Gallium texture target.
    pub target: Le32,
    /// virgl format.
    pub format: Le32,
    /// Bind flags.
    pub bind: Le32,
    /// Width.
    pub width: Le32,
    /// Height.
    pub height: Le32,
    /// Depth.
    pub depth: Le32,
    /// Array size.
    pub array_size: Le32,
    /// Mip levels - 1.
    pub last_level: Le32,
    /// Samples.
    pub nr_samples: Le32,
    /// `VIRTIO_GPU_RESOURCE_FLAG_*`.
    pub flags: Le32,
    /// Padding.
    pub padding: Le32,
}

/// `struct virtio_gpu_box` (§5.7.6.9).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct virtio_gpu_box {
    /// Origin.
    pub x: Le32,
    /// Origin.
    pub y: Le32,
    /// Origin.
    pub z: Le32,
    /// Size.
    pub w: Le32,
    /// Size.
    pub h: Le32,
    /// Size.
    pub d: Le32,
}

/// `struct virtio_gpu_transfer_host_3d` (§5.7.6.9), after the header: the
/// body of TRANSFER_TO_HOST_3D and TRANSFER_FROM_HOST_3D.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct virtio_gpu_transfer_host_3d {
    /// The region of the resource.
    pub box_: virtio_gpu_box,
    /// Offset in the backing.
    pub offset: Le64,
    /// The resource.
    pub resource_id: Le32,
    /// Mip level.
    pub level: Le32,
    /// Row stride in the backing.
    pub stride: Le32,
    /// Layer stride in the backing.
    pub layer_stride: Le32,
}

/// `struct virtio_gpu_cmd_submit` (§5.7.6.9), after the header; `size`
/// bytes of command stream follow.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct virtio_gpu_cmd_submit {
    /// Bytes of command stream.
    pub size: Le32,
    /// Padding.
    pub padding: Le32,
}

/// `struct virtio_gpu_cursor_pos` (§5.7.6.10).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct virtio_gpu_cursor_pos {
    /// Output.
    pub scanout_id: Le32,
    /// Position.
    pub x: Le32,
    /// Position.
    pub y: Le32,
    /// Padding.
    pub padding: Le32,
}

/// `struct virtio_gpu_update_cursor` (§5.7.6.10), header included: the one
/// request of the cursor queue.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct virtio_gpu_update_cursor {
    /// UPDATE_CURSOR or MOVE_CURSOR.
    pub hdr: virtio_gpu_ctrl_hdr,
    /// Where.
    pub pos: virtio_gpu_cursor_pos,
    /// Image (0 hides the cursor), UPDATE_CURSOR only.
    pub resource_id: Le32,
    /// Hot spot.
    pub hot_x: Le32,
    /// Hot spot.
    pub hot_y: Le32,
    /// Padding.
    pub padding: Le32,
}

wire! {
    virtio_gpu_ctrl_hdr = 24;
    virtio_gpu_rect = 16;
    virtio_gpu_display_one = 24;
    virtio_gpu_get_edid = 8;
    virtio_gpu_resource_create_2d = 16;
    virtio_gpu_resource_unref = 8;
    virtio_gpu_set_scanout = 24;
    virtio_gpu_resource_flush = 24;
    virtio_gpu_transfer_to_host_2d = 32;
    virtio_gpu_resource_attach_backing = 8;
    virtio_gpu_mem_entry = 16;
    virtio_gpu_get_capset_info = 8;
    virtio_gpu_resp_capset_info = 16;
    virtio_gpu_get_capset = 8;
    virtio_gpu_ctx_create = 72;
    virtio_gpu_ctx_resource = 8;
    virtio_gpu_resource_create_3d = 48;
    virtio_gpu_box = 24;
    virtio_gpu_transfer_host_3d = 48;
    virtio_gpu_cmd_submit = 8;
    virtio_gpu_cursor_pos = 16;
    virtio_gpu_update_cursor = 56;
}
