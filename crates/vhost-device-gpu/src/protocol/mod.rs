// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The virtio-gpu protocol (virtio 1.3 §5.7): command and response codes,
//! feature bits, pixel formats, the wire structures ([`wire`]) and the
//! typed commands decoded from them ([`command`]).

pub mod command;
pub mod wire;

pub use command::{
    Create3d, Flush, GpuCommand, MemEntry, ResourceCreate2d, SetScanout, Transfer2d, Transfer3d,
    UpdateCursor, MAX_BACKING_ENTRIES, MAX_SUBMIT_SIZE,
};
use vm_memory::ByteValued;
use wire::{virtio_gpu_ctrl_hdr, virtio_gpu_display_one};

/// `VIRTIO_GPU_F_VIRGL`: 3D through virgl (virtio 1.3 §5.7.3).
pub const F_VIRGL: u64 = 1 << 0;
/// `VIRTIO_GPU_F_EDID`: the GET_EDID command.
pub const F_EDID: u64 = 1 << 1;
/// `VIRTIO_GPU_F_CONTEXT_INIT`: contexts carry a capset id.
pub const F_CONTEXT_INIT: u64 = 1 << 4;

/// `VIRTIO_GPU_FLAG_FENCE` (§5.7.6.7): the response waits for the work.
pub const FLAG_FENCE: u32 = 1 << 0;
/// `VIRTIO_GPU_FLAG_INFO_RING_IDX`.
pub const FLAG_INFO_RING_IDX: u32 = 1 << 1;

/// `VIRTIO_GPU_EVENT_DISPLAY` in `events_read` (§5.7.4).
pub const EVENT_DISPLAY: u32 = 1 << 0;

/// `VIRTIO_GPU_MAX_SCANOUTS` (§5.7.6.8).
pub const MAX_SCANOUTS: usize = 16;

/// Cursor images are always 64×64.
pub const CURSOR_SIZE: u32 = 64;

/// Command and response codes, `enum virtio_gpu_ctrl_type` (§5.7.6.7).
pub mod cmd {
    /// GET_DISPLAY_INFO.
    pub const GET_DISPLAY_INFO: u32 = 0x0100;
    /// RESOURCE_CREATE_2D.
    pub const RESOURCE_CREATE_2D: u32 = 0x0101;
    /// RESOURCE_UNREF.
    pub const RESOURCE_UNREF: u32 = 0x0102;
    /// SET_SCANOUT.
    pub const SET_SCANOUT: u32 = 0x0103;
    /// RESOURCE_FLUSH.
    pub const RESOURCE_FLUSH: u32 = 0x0104;
    /// TRANSFER_TO_HOST_2D.
    pub const TRANSFER_TO_HOST_2D: u32 = 0x0105;
    /// RESOURCE_ATTACH_BACKING.
    pub const RESOURCE_ATTACH_BACKING: u32 = 0x0106;
    /// RESOURCE_DETACH_BACKING.
    pub const RESOURCE_DETACH_BACKING: u32 = 0x0107;
    /// GET_CAPSET_INFO.
    pub const GET_CAPSET_INFO: u32 = 0x0108;
    /// GET_CAPSET.
    pub const GET_CAPSET: u32 = 0x0109;
    /// GET_EDID.
    pub const GET_EDID: u32 = 0x010a;
    /// RESOURCE_ASSIGN_UUID.
    pub const RESOURCE_ASSIGN_UUID: u32 = 0x010b;
    /// RESOURCE_CREATE_BLOB.
    pub const RESOURCE_CREATE_BLOB: u32 = 0x010c;
    /// SET_SCANOUT_BLOB.
    pub const SET_SCANOUT_BLOB: u32 = 0x010d;
    /// CTX_CREATE.
    pub const CTX_CREATE: u32 = 0x0200;
    /// CTX_DESTROY.
    pub const CTX_DESTROY: u32 = 0x0201;
    /// CTX_ATTACH_RESOURCE.
    pub const CTX_ATTACH_RESOURCE: u32 = 0x0202;
    /// CTX_DETACH_RESOURCE.
    pub const CTX_DETACH_RESOURCE: u32 = 0x0203;
    /// RESOURCE_CREATE_3D.
    pub const RESOURCE_CREATE_3D: u32 = 0x0204;
    /// TRANSFER_TO_HOST_3D.
    pub const TRANSFER_TO_HOST_3D: u32 = 0x0205;
    /// TRANSFER_FROM_HOST_3D.
    pub const TRANSFER_FROM_HOST_3D: u32 = 0x0206;
    /// SUBMIT_3D.
    pub const SUBMIT_3D: u32 = 0x0207;
    /// RESOURCE_MAP_BLOB.
    pub const RESOURCE_MAP_BLOB: u32 = 0x0208;
    /// RESOURCE_UNMAP_BLOB.
    pub const RESOURCE_UNMAP_BLOB: u32 = 0x0209;
    /// UPDATE_CURSOR.
    pub const UPDATE_CURSOR: u32 = 0x0300;
    /// MOVE_CURSOR.
    pub const MOVE_CURSOR: u32 = 0x0301;

    /// OK_NODATA.
    pub const RESP_OK_NODATA: u32 = 0x1100;
    /// OK_DISPLAY_INFO.
    pub const RESP_OK_DISPLAY_INFO: u32 = 0x1101;
    /// OK_CAPSET_INFO.
    pub const RESP_OK_CAPSET_INFO: u32 = 0x1102;
    /// OK_CAPSET.
    pub const RESP_OK_CAPSET: u32 = 0x1103;
    /// OK_EDID.
    pub const RESP_OK_EDID: u32 = 0x1104;
    /// ERR_UNSPEC.
    pub const RESP_ERR_UNSPEC: u32 = 0x1200;
    /// ERR_OUT_OF_MEMORY.
    pub const RESP_ERR_OUT_OF_MEMORY: u32 = 0x1201;
    /// ERR_INVALID_SCANOUT_ID.
    pub const RESP_ERR_INVALID_SCANOUT_ID: u32 = 0x1202;
    /// ERR_INVALID_RESOURCE_ID.
    pub const RESP_ERR_INVALID_RESOURCE_ID: u32 = 0x1203;
    /// ERR_INVALID_CONTEXT_ID.
    pub const RESP_ERR_INVALID_CONTEXT_ID: u32 = 0x1204;
    /// ERR_INVALID_PARAMETER.
    pub const RESP_ERR_INVALID_PARAMETER: u32 = 0x1205;
}

/// Size of `struct virtio_gpu_ctrl_hdr`.
pub const HDR_SIZE: usize = 24;
/// Size of `struct virtio_gpu_resp_display_info`.
pub const DISPLAY_INFO_SIZE: usize = HDR_SIZE + MAX_SCANOUTS * 24;
/// Size of `struct virtio_gpu_resp_edid`.
pub const EDID_RESP_SIZE: usize = HDR_SIZE + 8 + 1024;
/// Size of `struct virtio_gpu_config` (§5.7.4) as QEMU 11.1 reads it.
pub const CONFIG_SIZE: usize = 20;

/// The 2D pixel formats of the spec, `enum virtio_gpu_formats` (§5.7.6.8). Every one is 4 bytes per pixel; they
/// differ in byte order and in whether the fourth byte is alpha.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Bytes B, G, R, A.
    B8G8R8A8 = 1,
    /// Bytes B, G, R, X.
    B8G8R8X8 = 2,
    /// Bytes A, R, G, B.
    A8R8G8B8 = 3,
    /// Bytes X, R, G, B.
    X8R8G8B8 = 4,
    /// Bytes R, G, B, A.
    R8G8B8A8 = 67,
    /// Bytes X, B, G, R.
    X8B8G8R8 = 68,
    /// Bytes A, B, G, R.
    A8B8G8R8 = 121,
    /// Bytes R, G, B, X.
    R8G8B8X8 = 134,
}

impl Format {
    /// Every format, for tests and help text.
    pub const ALL: [Format; 8] = [
        Format::B8G8R8A8,
        Format::B8G8R8X8,
        Format::A8R8G8B8,
        Format::X8R8G8B8,
        Format::R8G8B8A8,
        Format::X8B8G8R8,
        Format::A8B8G8R8,
        Format::R8G8B8X8,
    ];

    /// The format with virtio code `code`.
    pub fn from_code(code: u32) -> Option<Format> {
        Self::ALL.into_iter().find(|f| *f as u32 == code)
    }

    /// Byte positions of blue, green, red and alpha (None: no alpha) in a
    /// pixel.
    fn layout(self) -> ([usize; 3], Option<usize>) {
        match self {
            Format::B8G8R8A8 => ([0, 1, 2], Some(3)),
            Format::B8G8R8X8 => ([0, 1, 2], None),
            Format::A8R8G8B8 => ([3, 2, 1], Some(0)),
            Format::X8R8G8B8 => ([3, 2, 1], None),
            Format::R8G8B8A8 => ([2, 1, 0], Some(3)),
            Format::X8B8G8R8 => ([1, 2, 3], None),
            Format::A8B8G8R8 => ([1, 2, 3], Some(0)),
            Format::R8G8B8X8 => ([2, 1, 0], None),
        }
    }

    /// Converts pixels in place to the byte order B, G, R, A that pixman
    /// calls a8r8g8b8/x8r8g8b8 on a little-endian host, which is what QEMU's
    /// UPDATE and CURSOR_UPDATE expect. Without alpha the fourth byte is
    /// 0xff, so the same buffer serves as an opaque cursor.
    pub fn to_bgra(self, pixels: &mut [u8]) {
        let ([b, g, r], a) = self.layout();
        if self == Format::B8G8R8A8 {
            return;
        }
        for px in pixels.chunks_exact_mut(4) {
            let src = [
                px.first().copied().unwrap_or(0),
                px.get(1).copied().unwrap_or(0),
                px.get(2).copied().unwrap_or(0),
                px.get(3).copied().unwrap_or(0),
            ];
            let pick = |i: usize| src.get(i).copied().unwrap_or(0);
            let out = [pick(b), pick(g), pick(r), a.map_or(0xff, pick)];
            px.copy_from_slice(&out);
        }
    }
}

/// Why a request could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShortRequest {
    /// Bytes the request needs.
    pub needed: usize,
    /// Bytes it had.
    pub got: usize,
}

/// `struct virtio_gpu_ctrl_hdr`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtrlHdr {
    /// Command or response code.
    pub type_: u32,
    /// FENCE / INFO_RING_IDX.
    pub flags: u32,
    /// Fence id, meaningful with FENCE.
    pub fence_id: u64,
    /// 3D context.
    pub ctx_id: u32,
    /// Fence ring, meaningful with INFO_RING_IDX.
    pub ring_idx: u8,
}

impl CtrlHdr {
    /// Decodes the header at the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<Self, ShortRequest> {
        let got = bytes.len();
        bytes
            .get(..HDR_SIZE)
            .and_then(virtio_gpu_ctrl_hdr::from_slice)
            .map(|h| CtrlHdr::from(*h))
            .ok_or(ShortRequest {
                needed: HDR_SIZE,
                got,
            })
    }

    /// The response header for a request with this header: the fence
    /// fields are echoed so the driver can signal the fence.
    pub fn response(&self, type_: u32) -> CtrlHdr {
        let fenced = self.flags & FLAG_FENCE != 0;
        CtrlHdr {
            type_,
            flags: self.flags & (FLAG_FENCE | FLAG_INFO_RING_IDX),
            fence_id: if fenced { self.fence_id } else { 0 },
            ctx_id: self.ctx_id,
            ring_idx: if self.flags & FLAG_INFO_RING_IDX != 0 {
                self.ring_idx
            } else {
                0
            },
        }
    }

    /// The 24 bytes on the wire.
    pub fn encode(&self) -> [u8; HDR_SIZE] {
        let mut out = [0u8; HDR_SIZE];
        out.copy_from_slice(virtio_gpu_ctrl_hdr::from(*self).as_slice());
        out
    }
}

impl From<virtio_gpu_ctrl_hdr> for CtrlHdr {
    fn from(h: virtio_gpu_ctrl_hdr) -> Self {
        CtrlHdr {
            type_: h.type_.into(),
            flags: h.flags.into(),
            fence_id: h.fence_id.into(),
            ctx_id: h.ctx_id.into(),
            ring_idx: h.ring_idx,
        }
    }
}

impl From<CtrlHdr> for virtio_gpu_ctrl_hdr {
    fn from(h: CtrlHdr) -> Self {
        virtio_gpu_ctrl_hdr {
            type_: h.type_.into(),
            flags: h.flags.into(),
            fence_id: h.fence_id.into(),
            ctx_id: h.ctx_id.into(),
            ring_idx: h.ring_idx,
            padding: [0; 3],
        }
    }
}

/// `struct virtio_gpu_rect`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rect {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

impl Rect {
    /// Whether the rectangle lies inside a `width`×`height` area (an empty
    /// rectangle on the edge counts as inside).
    pub fn within(&self, width: u32, height: u32) -> bool {
        self.x.checked_add(self.width).is_some_and(|r| r <= width)
            && self.y.checked_add(self.height).is_some_and(|b| b <= height)
    }

    /// Whether it covers no pixel.
    pub fn is_empty(&self) -> bool {
        self.width == 0 || self.height == 0
    }

    /// The overlap with `other`, if any pixel is shared. Both must be
    /// `within` some area so the sums cannot overflow.
    pub fn intersect(&self, other: &Rect) -> Option<Rect> {
        let x0 = self.x.max(other.x);
        let y0 = self.y.max(other.y);
        let x1 = self
            .x
            .saturating_add(self.width)
            .min(other.x.saturating_add(other.width));
        let y1 = self
            .y
            .saturating_add(self.height)
            .min(other.y.saturating_add(other.height));
        (x1 > x0 && y1 > y0).then(|| Rect {
            x: x0,
            y: y0,
            width: x1 - x0,
            height: y1 - y0,
        })
    }
}

/// One display mode as GET_DISPLAY_INFO reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DisplayMode {
    /// Position and size.
    pub rect: Rect,
    /// Whether the output is connected.
    pub enabled: bool,
}

/// Encodes a `struct virtio_gpu_resp_display_info` (§5.7.6.8).
pub fn encode_display_info(hdr: &CtrlHdr, modes: &[DisplayMode]) -> Vec<u8> {
    let mut out = Vec::with_capacity(DISPLAY_INFO_SIZE);
    out.extend_from_slice(&hdr.encode());
    for i in 0..MAX_SCANOUTS {
        let mode = modes.get(i).copied().unwrap_or_default();
        let one = virtio_gpu_display_one {
            r: mode.rect.into(),
            enabled: u32::from(mode.enabled).into(),
            flags: 0.into(),
        };
        out.extend_from_slice(one.as_slice());
    }
    out
}

/// Encodes a `virtio_gpu_resp_edid`.
pub fn encode_edid(hdr: &CtrlHdr, edid: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(EDID_RESP_SIZE);
    out.extend_from_slice(&hdr.encode());
    let len = edid.len().min(1024);
    out.extend_from_slice(&u32::try_from(len).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(edid.get(..len).unwrap_or_default());
    out.resize(EDID_RESP_SIZE, 0);
    out
}

/// Size of `struct virtio_gpu_update_cursor`.
pub const UPDATE_CURSOR_SIZE: usize = std::mem::size_of::<wire::virtio_gpu_update_cursor>();

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::assertions_on_result_states
)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_fence_echo() {
        let hdr = CtrlHdr {
            type_: cmd::RESOURCE_FLUSH,
            flags: FLAG_FENCE | FLAG_INFO_RING_IDX,
            fence_id: 0x1122_3344_5566_7788,
            ctx_id: 7,
            ring_idx: 3,
        };
        assert_eq!(CtrlHdr::decode(&hdr.encode()), Ok(hdr));
        let resp = hdr.response(cmd::RESP_OK_NODATA);
        assert_eq!(resp.type_, cmd::RESP_OK_NODATA);
        assert_eq!(resp.fence_id, hdr.fence_id);
        assert_eq!(resp.flags, FLAG_FENCE | FLAG_INFO_RING_IDX);
        assert_eq!(resp.ring_idx, 3);

        let unfenced = CtrlHdr { flags: 0, ..hdr };
        let resp = unfenced.response(cmd::RESP_OK_NODATA);
        assert_eq!((resp.flags, resp.fence_id, resp.ring_idx), (0, 0, 0));
    }

    #[test]
    fn short_header_is_an_error() {
        assert_eq!(
            CtrlHdr::decode(&[0; 23]),
            Err(ShortRequest {
                needed: 24,
                got: 23
            })
        );
    }

    #[test]
    fn every_format_converts_to_bgra() {
        // Blue 0x10, green 0x20, red 0x30, alpha 0x40 in each layout.
        let cases: [(Format, [u8; 4], [u8; 4]); 8] = [
            (
                Format::B8G8R8A8,
                [0x10, 0x20, 0x30, 0x40],
                [0x10, 0x20, 0x30, 0x40],
            ),
            (
                Format::B8G8R8X8,
                [0x10, 0x20, 0x30, 0x99],
                [0x10, 0x20, 0x30, 0xff],
            ),
            (
                Format::A8R8G8B8,
                [0x40, 0x30, 0x20, 0x10],
                [0x10, 0x20, 0x30, 0x40],
            ),
            (
                Format::X8R8G8B8,
                [0x99, 0x30, 0x20, 0x10],
                [0x10, 0x20, 0x30, 0xff],
            ),
            (
                Format::R8G8B8A8,
                [0x30, 0x20, 0x10, 0x40],
                [0x10, 0x20, 0x30, 0x40],
            ),
            (
                Format::X8B8G8R8,
                [0x99, 0x10, 0x20, 0x30],
                [0x10, 0x20, 0x30, 0xff],
            ),
            (
                Format::A8B8G8R8,
                [0x40, 0x10, 0x20, 0x30],
                [0x10, 0x20, 0x30, 0x40],
            ),
            (
                Format::R8G8B8X8,
                [0x30, 0x20, 0x10, 0x99],
                [0x10, 0x20, 0x30, 0xff],
            ),
        ];
        for (format, input, expected) in cases {
            let mut px = input;
            format.to_bgra(&mut px);
            assert_eq!(px, expected, "{format:?}");
            assert_eq!(Format::from_code(format as u32), Some(format));
        }
        assert_eq!(Format::from_code(0), None);
        assert_eq!(Format::from_code(5), None);
    }

    #[test]
    fn rect_bounds_and_overflow() {
        let r = Rect {
            x: 10,
            y: 10,
            width: 20,
            height: 20,
        };
        assert!(r.within(30, 30));
        assert!(!r.within(29, 30));
        let huge = Rect {
            x: u32::MAX,
            y: 0,
            width: 2,
            height: 1,
        };
        assert!(!huge.within(u32::MAX, 1));
        let other = Rect {
            x: 25,
            y: 0,
            width: 100,
            height: 15,
        };
        assert_eq!(
            r.intersect(&other),
            Some(Rect {
                x: 25,
                y: 10,
                width: 5,
                height: 5
            })
        );
        assert_eq!(r.intersect(&Rect::default()), None);
    }

    #[test]
    fn display_info_and_edid_sizes() {
        let hdr = CtrlHdr::default();
        assert_eq!(encode_display_info(&hdr, &[]).len(), DISPLAY_INFO_SIZE);
        assert_eq!(DISPLAY_INFO_SIZE, 408);
        assert_eq!(encode_edid(&hdr, &[1; 128]).len(), EDID_RESP_SIZE);
        assert_eq!(encode_edid(&hdr, &[1; 2000]).len(), 1056);
    }
}
