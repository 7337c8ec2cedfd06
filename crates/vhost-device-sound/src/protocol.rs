// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The virtio-snd wire format (virtio 1.3 §5.14 "Sound Device"): codes,
//! bit numbers and the little-endian structures the driver and device
//! exchange. Names follow the spec; each item cites its section.

#![allow(non_camel_case_types)]

use std::mem::size_of;

use vm_memory::{ByteValued, Le16, Le32, Le64};

/// Virtio device ID of a sound card (§5.14.1).
pub const VIRTIO_ID_SOUND: u32 = 25;

/// Queue indices (§5.14.2).
pub const CONTROL_QUEUE: usize = 0;
/// The event queue.
pub const EVENT_QUEUE: usize = 1;
/// The playback queue.
pub const TX_QUEUE: usize = 2;
/// The capture queue.
pub const RX_QUEUE: usize = 3;
/// Number of queues.
pub const NUM_QUEUES: usize = 4;

/// Feature bit: the device has control elements (§5.14.3).
pub const VIRTIO_SND_F_CTLS: u64 = 1 << 0;

// Request codes (§5.14.6).
/// Query jack information.
pub const VIRTIO_SND_R_JACK_INFO: u32 = 1;
/// Remap a jack.
pub const VIRTIO_SND_R_JACK_REMAP: u32 = 2;
/// Query stream information.
pub const VIRTIO_SND_R_PCM_INFO: u32 = 0x0100;
/// Set stream parameters.
pub const VIRTIO_SND_R_PCM_SET_PARAMS: u32 = 0x0101;
/// Prepare a stream.
pub const VIRTIO_SND_R_PCM_PREPARE: u32 = 0x0102;
/// Release a stream.
pub const VIRTIO_SND_R_PCM_RELEASE: u32 = 0x0103;
/// Start a stream.
pub const VIRTIO_SND_R_PCM_START: u32 = 0x0104;
/// Stop a stream.
pub const VIRTIO_SND_R_PCM_STOP: u32 = 0x0105;
/// Query channel map information.
pub const VIRTIO_SND_R_CHMAP_INFO: u32 = 0x0200;
/// Query control element information.
pub const VIRTIO_SND_R_CTL_INFO: u32 = 0x0300;
/// Query the items of an enumerated control.
pub const VIRTIO_SND_R_CTL_ENUM_ITEMS: u32 = 0x0301;
/// Read a control value.
pub const VIRTIO_SND_R_CTL_READ: u32 = 0x0302;
/// Write a control value.
pub const VIRTIO_SND_R_CTL_WRITE: u32 = 0x0303;
/// Read control metadata.
pub const VIRTIO_SND_R_CTL_TLV_READ: u32 = 0x0304;
/// Write control metadata.
pub const VIRTIO_SND_R_CTL_TLV_WRITE: u32 = 0x0305;
/// Run a control metadata command.
pub const VIRTIO_SND_R_CTL_TLV_COMMAND: u32 = 0x0306;

// Event codes.
/// A jack was connected.
pub const VIRTIO_SND_EVT_JACK_CONNECTED: u32 = 0x1000;
/// A jack was disconnected.
pub const VIRTIO_SND_EVT_JACK_DISCONNECTED: u32 = 0x1001;
/// A period elapsed (shared-memory transport).
pub const VIRTIO_SND_EVT_PCM_PERIOD_ELAPSED: u32 = 0x1100;
/// An underrun (output) or overrun (input).
pub const VIRTIO_SND_EVT_PCM_XRUN: u32 = 0x1101;
/// A control element changed.
pub const VIRTIO_SND_EVT_CTL_NOTIFY: u32 = 0x1200;

// Status codes (§5.14.6).
/// Success.
pub const VIRTIO_SND_S_OK: u32 = 0x8000;
/// Malformed message or invalid parameters.
pub const VIRTIO_SND_S_BAD_MSG: u32 = 0x8001;
/// Unsupported operation or parameters.
pub const VIRTIO_SND_S_NOT_SUPP: u32 = 0x8002;
/// Host I/O error.
pub const VIRTIO_SND_S_IO_ERR: u32 = 0x8003;

/// Data flow directions (§5.14.6).
pub const VIRTIO_SND_D_OUTPUT: u8 = 0;
/// Capture.
pub const VIRTIO_SND_D_INPUT: u8 = 1;

/// Jack feature: remapping (§5.14.6.4.1).
pub const VIRTIO_SND_JACK_F_REMAP: u32 = 0;

// PCM stream feature bits (§5.14.6.6.2).
/// Shared memory allocated by the host (placeholder in the spec).
pub const VIRTIO_SND_PCM_F_SHMEM_HOST: u32 = 0;
/// Shared memory allocated by the guest (placeholder in the spec).
pub const VIRTIO_SND_PCM_F_SHMEM_GUEST: u32 = 1;
/// Polling instead of notifications.
pub const VIRTIO_SND_PCM_F_MSG_POLLING: u32 = 2;
/// Period-elapsed events.
pub const VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS: u32 = 3;
/// Underrun/overrun events.
pub const VIRTIO_SND_PCM_F_EVT_XRUNS: u32 = 4;

// Sample formats we implement (§5.14.6.6.2).
/// Unsigned 8 bit.
pub const VIRTIO_SND_PCM_FMT_U8: u8 = 4;
/// Signed 16 bit.
pub const VIRTIO_SND_PCM_FMT_S16: u8 = 5;
/// Signed 24 bit in a 32-bit container.
pub const VIRTIO_SND_PCM_FMT_S24: u8 = 15;
/// Signed 32 bit.
pub const VIRTIO_SND_PCM_FMT_S32: u8 = 17;
/// IEEE 754 single precision.
pub const VIRTIO_SND_PCM_FMT_FLOAT: u8 = 19;

/// Frame rates by their spec index (`VIRTIO_SND_PCM_RATE_*`, §5.14.6.6.2).
pub const PCM_RATES: [(u8, u32); 16] = [
    (0, 5512),
    (1, 8000),
    (2, 11025),
    (3, 16000),
    (4, 22050),
    (5, 32000),
    (6, 44100),
    (7, 48000),
    (8, 64000),
    (9, 88200),
    (10, 96000),
    (11, 176400),
    (12, 192000),
    (13, 384000),
    (14, 12000),
    (15, 24000),
];

// Channel positions (§5.14.6.9.1).
/// Undefined.
pub const VIRTIO_SND_CHMAP_NONE: u8 = 0;
/// Mono.
pub const VIRTIO_SND_CHMAP_MONO: u8 = 2;
/// Front left.
pub const VIRTIO_SND_CHMAP_FL: u8 = 3;
/// Front right.
pub const VIRTIO_SND_CHMAP_FR: u8 = 4;
/// Rear left.
pub const VIRTIO_SND_CHMAP_RL: u8 = 5;
/// Rear right.
pub const VIRTIO_SND_CHMAP_RR: u8 = 6;
/// Front center.
pub const VIRTIO_SND_CHMAP_FC: u8 = 7;
/// Low frequency effects.
pub const VIRTIO_SND_CHMAP_LFE: u8 = 8;
/// Side left.
pub const VIRTIO_SND_CHMAP_SL: u8 = 9;
/// Side right.
pub const VIRTIO_SND_CHMAP_SR: u8 = 10;
/// Rear center.
pub const VIRTIO_SND_CHMAP_RC: u8 = 11;
/// Names of the positions, by spec value, as the CLI spells them.
pub const CHMAP_NAMES: [&str; 37] = [
    "NONE", "NA", "MONO", "FL", "FR", "RL", "RR", "FC", "LFE", "SL", "SR", "RC", "FLC", "FRC",
    "RLC", "RRC", "FLW", "FRW", "FLH", "FCH", "FRH", "TC", "TFL", "TFR", "TFC", "TRL", "TRR",
    "TRC", "TFLC", "TFRC", "TSL", "TSR", "LLFE", "RLFE", "BC", "BLC", "BRC",
];
/// Most positions a channel map carries.
pub const VIRTIO_SND_CHMAP_MAX_SIZE: usize = 18;

// Control elements (§5.14.6.10).
/// Role: volume.
pub const VIRTIO_SND_CTL_ROLE_VOLUME: u32 = 1;
/// Role: mute switch.
pub const VIRTIO_SND_CTL_ROLE_MUTE: u32 = 2;
/// Type: boolean.
pub const VIRTIO_SND_CTL_TYPE_BOOLEAN: u32 = 0;
/// Type: 32-bit integer.
pub const VIRTIO_SND_CTL_TYPE_INTEGER: u32 = 1;
/// Type: enumerated.
pub const VIRTIO_SND_CTL_TYPE_ENUMERATED: u32 = 3;
/// Access: readable.
pub const VIRTIO_SND_CTL_ACCESS_READ: u32 = 0;
/// Access: writable.
pub const VIRTIO_SND_CTL_ACCESS_WRITE: u32 = 1;
/// Notification mask: the value changed.
pub const VIRTIO_SND_CTL_EVT_MASK_VALUE: u16 = 0;

/// The config space (§5.14.4). `controls` exists only with
/// `VIRTIO_SND_F_CTLS`: a frontend may size the space without it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct virtio_snd_config {
    /// Number of jacks.
    pub jacks: Le32,
    /// Number of PCM streams.
    pub streams: Le32,
    /// Number of channel maps.
    pub chmaps: Le32,
    /// Number of control elements.
    pub controls: Le32,
}

/// The common header of requests, replies and events (§5.14.6).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct virtio_snd_hdr {
    /// Request, event or status code.
    pub code: Le32,
}

/// An event notification (§5.14.6).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct virtio_snd_event {
    /// Event code.
    pub hdr: virtio_snd_hdr,
    /// Event data (stream or jack id; control events pack two le16).
    pub data: Le32,
}

/// An item information request (§5.14.6.1).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct virtio_snd_query_info {
    /// Request code.
    pub hdr: virtio_snd_hdr,
    /// First item.
    pub start_id: Le32,
    /// Number of items.
    pub count: Le32,
    /// Size of one item's information as the driver knows it.
    pub size: Le32,
}

/// The header of a PCM request (§5.14.6.6): a code and an item id. Jack
/// (§5.14.6.4) and control (§5.14.6.10) requests have the same layout.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct virtio_snd_pcm_hdr {
    /// Request code.
    pub hdr: virtio_snd_hdr,
    /// Jack, stream or control id.
    pub id: Le32,
}

/// The header of a jack request (§5.14.6.4).
pub type virtio_snd_jack_hdr = virtio_snd_pcm_hdr;
/// The header of a control element request (§5.14.6.10).
pub type virtio_snd_ctl_hdr = virtio_snd_pcm_hdr;

/// Jack information (§5.14.6.4.1).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct virtio_snd_jack_info {
    /// Function group node.
    pub hda_fn_nid: Le32,
    /// Feature bits.
    pub features: Le32,
    /// HDA pin default configuration.
    pub hda_reg_defconf: Le32,
    /// HDA pin capabilities.
    pub hda_reg_caps: Le32,
    /// 1 when connected.
    pub connected: u8,
    /// Zero.
    pub padding: [u8; 7],
}

/// A jack remap request (§5.14.6.4.2).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct virtio_snd_jack_remap {
    /// Code and jack id.
    pub hdr: virtio_snd_pcm_hdr,
    /// New association.
    pub association: Le32,
    /// New sequence.
    pub sequence: Le32,
}

/// Stream information (§5.14.6.6.2).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct virtio_snd_pcm_info {
    /// Function group node.
    pub hda_fn_nid: Le32,
    /// `1 << PCM_F_*`.
    pub features: Le32,
    /// `1 << PCM_FMT_*`.
    pub formats: Le64,
    /// `1 << rate index`.
    pub rates: Le64,
    /// `VIRTIO_SND_D_OUTPUT` or `VIRTIO_SND_D_INPUT`.
    pub direction: u8,
    /// Fewest channels.
    pub channels_min: u8,
    /// Most channels.
    pub channels_max: u8,
    /// Zero.
    pub padding: [u8; 5],
}

/// A set-parameters request (§5.14.6.6.3).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct virtio_snd_pcm_set_params {
    /// Code and stream id.
    pub hdr: virtio_snd_pcm_hdr,
    /// Driver buffer size.
    pub buffer_bytes: Le32,
    /// Driver period size.
    pub period_bytes: Le32,
    /// Selected `1 << PCM_F_*`.
    pub features: Le32,
    /// Channels.
    pub channels: u8,
    /// `PCM_FMT_*`.
    pub format: u8,
    /// Rate index.
    pub rate: u8,
    /// Zero.
    pub padding: u8,
}

/// The header of an I/O message (§5.14.6.8).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct virtio_snd_pcm_xfer {
    /// Stream id.
    pub stream_id: Le32,
}

/// The status of an I/O message (§5.14.6.8).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct virtio_snd_pcm_status {
    /// `VIRTIO_SND_S_OK` or `VIRTIO_SND_S_IO_ERR`.
    pub status: Le32,
    /// Bytes between the device's input and the listener.
    pub latency_bytes: Le32,
}

/// Channel map information (§5.14.6.9.1).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct virtio_snd_chmap_info {
    /// Function group node.
    pub hda_fn_nid: Le32,
    /// `VIRTIO_SND_D_OUTPUT` or `VIRTIO_SND_D_INPUT`.
    pub direction: u8,
    /// Valid positions.
    pub channels: u8,
    /// `CHMAP_*` per channel.
    pub positions: [u8; VIRTIO_SND_CHMAP_MAX_SIZE],
}

/// Control element information (§5.14.6.10.1).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct virtio_snd_ctl_info {
    /// Function group node.
    pub hda_fn_nid: Le32,
    /// Role and direction.
    pub role: Le32,
    /// `CTL_TYPE_*`.
    pub type_: Le32,
    /// `1 << CTL_ACCESS_*`.
    pub access: Le32,
    /// Values per element.
    pub count: Le32,
    /// Index among elements with the same name.
    pub index: Le32,
    /// NUL-terminated ASCII name.
    pub name: [u8; 44],
    /// The C union below holds le64 members, so compilers align it to 8.
    pub padding: [u8; 4],
    /// Range (integer: min, max, step) or item count (enumerated), in the
    /// space of the largest union member (three le64).
    pub value: [Le32; 6],
}

impl Default for virtio_snd_ctl_info {
    fn default() -> Self {
        virtio_snd_ctl_info {
            hda_fn_nid: Le32::default(),
            role: Le32::default(),
            type_: Le32::default(),
            access: Le32::default(),
            count: Le32::default(),
            index: Le32::default(),
            name: [0; 44],
            padding: [0; 4],
            value: [Le32::default(); 6],
        }
    }
}

/// A control element notification (§5.14.6.10).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct virtio_snd_ctl_event {
    /// `VIRTIO_SND_EVT_CTL_NOTIFY`.
    pub hdr: virtio_snd_hdr,
    /// Control id.
    pub control_id: Le16,
    /// `1 << CTL_EVT_MASK_*`.
    pub mask: Le16,
}

/// Size of `struct virtio_snd_ctl_value`.
pub const CTL_VALUE_SIZE: usize = 512;
/// Size of `struct virtio_snd_ctl_enum_item`.
pub const CTL_ENUM_ITEM_SIZE: usize = 64;

// SAFETY: every struct above is repr(C), made only of integers and byte
// arrays laid out without implicit padding, so any byte pattern is a valid
// value.
unsafe impl ByteValued for virtio_snd_config {}
// SAFETY: as above.
unsafe impl ByteValued for virtio_snd_hdr {}
// SAFETY: as above.
unsafe impl ByteValued for virtio_snd_event {}
// SAFETY: as above.
unsafe impl ByteValued for virtio_snd_query_info {}
// SAFETY: as above.
unsafe impl ByteValued for virtio_snd_pcm_hdr {}
// SAFETY: as above.
unsafe impl ByteValued for virtio_snd_jack_info {}
// SAFETY: as above.
unsafe impl ByteValued for virtio_snd_jack_remap {}
// SAFETY: as above.
unsafe impl ByteValued for virtio_snd_pcm_info {}
// SAFETY: as above.
unsafe impl ByteValued for virtio_snd_pcm_set_params {}
// SAFETY: as above.
unsafe impl ByteValued for virtio_snd_pcm_xfer {}
// SAFETY: as above.
unsafe impl ByteValued for virtio_snd_pcm_status {}
// SAFETY: as above.
unsafe impl ByteValued for virtio_snd_chmap_info {}
// SAFETY: as above.
unsafe impl ByteValued for virtio_snd_ctl_info {}
// SAFETY: as above.
unsafe impl ByteValued for virtio_snd_ctl_event {}

const _: () = assert!(size_of::<virtio_snd_config>() == 16);
const _: () = assert!(size_of::<virtio_snd_hdr>() == 4);
const _: () = assert!(size_of::<virtio_snd_event>() == 8);
const _: () = assert!(size_of::<virtio_snd_query_info>() == 16);
const _: () = assert!(size_of::<virtio_snd_pcm_hdr>() == 8);
const _: () = assert!(size_of::<virtio_snd_jack_info>() == 24);
const _: () = assert!(size_of::<virtio_snd_jack_remap>() == 16);
const _: () = assert!(size_of::<virtio_snd_pcm_info>() == 32);
const _: () = assert!(size_of::<virtio_snd_pcm_set_params>() == 24);
const _: () = assert!(size_of::<virtio_snd_pcm_xfer>() == 4);
const _: () = assert!(size_of::<virtio_snd_pcm_status>() == 8);
const _: () = assert!(size_of::<virtio_snd_chmap_info>() == 24);
const _: () = assert!(size_of::<virtio_snd_ctl_info>() == 96);
const _: () = assert!(size_of::<virtio_snd_ctl_event>() == 8);
