// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The wire format: virtio-bluetooth's config space and the H:4 packets that
//! fill every buffer.
//!
//! virtio-bluetooth has only a reserved device ID in the OASIS spec (virtio
//! 1.3 §5 device-ID table, "Bluetooth device" = 40) and no device chapter, so
//! the Linux driver is the de facto specification: `include/uapi/linux/
//! virtio_bt.h` for the config layouts and feature bits, and
//! `drivers/bluetooth/virtio_bt.c` for how buffers are used. The packet
//! headers are those of the Bluetooth Core specification, Vol 4 Part A
//! (UART transport: the one-byte packet indicator) and Part E §5.4 (the HCI
//! packet formats).

use vm_memory::{ByteValued, Le16};

/// The virtio device ID (virtio 1.3 §5, device-ID table).
pub const VIRTIO_ID_BLUETOOTH: u32 = 40;

/// Queue 0, `tx` in the driver: packets from the guest's host stack.
pub const TX_QUEUE: usize = 0;
/// Queue 1, `rx` in the driver: packets for the guest's host stack.
pub const RX_QUEUE: usize = 1;
/// Number of queues (`virtbt_find_vqs` asks for exactly two).
pub const NUM_QUEUES: usize = 2;

/// The driver reads `vendor` and installs vendor setup hooks
/// (`virtio_bt.h`: `VIRTIO_BT_F_VND_HCI`).
pub const VIRTIO_BT_F_VND_HCI: u64 = 1 << 0;
/// The driver reads `msft_opcode` and uses Microsoft's vendor extension.
pub const VIRTIO_BT_F_MSFT_EXT: u64 = 1 << 1;
/// The driver uses the AOSP vendor extension.
pub const VIRTIO_BT_F_AOSP_EXT: u64 = 1 << 2;
/// The driver reads the config through [`virtio_bt_config_v2`].
pub const VIRTIO_BT_F_CONFIG_V2: u64 = 1 << 3;

/// `type`: a primary controller, the only type current drivers accept
/// (`virtbt_probe` fails with -EINVAL on anything else).
pub const VIRTIO_BT_CONFIG_TYPE_PRIMARY: u8 = 0;

/// `vendor` values (`enum virtio_bt_config_vendor`).
pub const VIRTIO_BT_CONFIG_VENDOR_NONE: u16 = 0;
/// Zephyr's vendor commands.
pub const VIRTIO_BT_CONFIG_VENDOR_ZEPHYR: u16 = 1;
/// Intel's vendor commands.
pub const VIRTIO_BT_CONFIG_VENDOR_INTEL: u16 = 2;
/// Realtek's vendor commands.
pub const VIRTIO_BT_CONFIG_VENDOR_REALTEK: u16 = 3;

/// The size of the one RX buffer Linux posts at a time
/// (`VIRTBT_RX_BUF_SIZE`); completions longer than this, or empty, are
/// dropped by the driver.
pub const VIRTBT_RX_BUF_SIZE: usize = 1000;

/// The original config layout, packed (`struct virtio_bt_config`).
#[allow(non_camel_case_types)]
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default)]
pub struct virtio_bt_config {
    /// Controller type.
    pub type_: u8,
    /// `VIRTIO_BT_CONFIG_VENDOR_*`.
    pub vendor: Le16,
    /// Opcode of Microsoft's vendor extension.
    pub msft_opcode: Le16,
}

/// The aligned layout read when [`VIRTIO_BT_F_CONFIG_V2`] is negotiated
/// (`struct virtio_bt_config_v2`).
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct virtio_bt_config_v2 {
    /// Controller type.
    pub type_: u8,
    /// Padding.
    pub alignment: u8,
    /// `VIRTIO_BT_CONFIG_VENDOR_*`.
    pub vendor: Le16,
    /// Opcode of Microsoft's vendor extension.
    pub msft_opcode: Le16,
}

// SAFETY: plain integers, every bit pattern valid, no padding (packed).
unsafe impl ByteValued for virtio_bt_config {}
// SAFETY: plain integers, every bit pattern valid, no implicit padding.
unsafe impl ByteValued for virtio_bt_config_v2 {}

/// H:4 packet indicators (Core Vol 4 Part A §2).
pub const HCI_COMMAND_PKT: u8 = 0x01;
/// ACL data.
pub const HCI_ACLDATA_PKT: u8 = 0x02;
/// Synchronous (SCO) data.
pub const HCI_SCODATA_PKT: u8 = 0x03;
/// An event.
pub const HCI_EVENT_PKT: u8 = 0x04;
/// Isochronous data.
pub const HCI_ISODATA_PKT: u8 = 0x05;

/// HCI Command packet header (Core Vol 4 Part E §5.4.1).
#[allow(non_camel_case_types)]
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default)]
pub struct hci_command_hdr {
    /// OGF << 10 | OCF.
    pub opcode: Le16,
    /// Parameter length.
    pub plen: u8,
}

/// ACL data packet header (Core Vol 4 Part E §5.4.2).
#[allow(non_camel_case_types)]
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default)]
pub struct hci_acl_hdr {
    /// Connection handle (12 bits), PB flag (2), BC flag (2).
    pub handle: Le16,
    /// Data length.
    pub dlen: Le16,
}

/// Synchronous data packet header (Core Vol 4 Part E §5.4.3).
#[allow(non_camel_case_types)]
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default)]
pub struct hci_sco_hdr {
    /// Connection handle and flags.
    pub handle: Le16,
    /// Data length.
    pub dlen: u8,
}

/// Event packet header (Core Vol 4 Part E §5.4.4).
#[allow(non_camel_case_types)]
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default)]
pub struct hci_event_hdr {
    /// Event code.
    pub evt: u8,
    /// Parameter length.
    pub plen: u8,
}

/// ISO data packet header (Core Vol 4 Part E §5.4.5).
#[allow(non_camel_case_types)]
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default)]
pub struct hci_iso_hdr {
    /// Connection handle and flags.
    pub handle: Le16,
    /// Data length in the low 14 bits.
    pub dlen: Le16,
}

// SAFETY: plain integers, packed, every bit pattern valid.
unsafe impl ByteValued for hci_command_hdr {}
// SAFETY: as above.
unsafe impl ByteValued for hci_acl_hdr {}
// SAFETY: as above.
unsafe impl ByteValued for hci_sco_hdr {}
// SAFETY: as above.
unsafe impl ByteValued for hci_event_hdr {}
// SAFETY: as above.
unsafe impl ByteValued for hci_iso_hdr {}

const _: () = assert!(std::mem::size_of::<virtio_bt_config>() == 5);
const _: () = assert!(std::mem::size_of::<virtio_bt_config_v2>() == 6);
const _: () = assert!(std::mem::size_of::<hci_command_hdr>() == 3);
const _: () = assert!(std::mem::size_of::<hci_acl_hdr>() == 4);
const _: () = assert!(std::mem::size_of::<hci_sco_hdr>() == 3);
const _: () = assert!(std::mem::size_of::<hci_event_hdr>() == 2);
const _: () = assert!(std::mem::size_of::<hci_iso_hdr>() == 4);

/// ACL packet-boundary flag of a continuing fragment (Core Vol 4 Part E
/// §5.4.2: PB = 0b01).
pub const ACL_PB_CONTINUING: u16 = 0b01 << 12;
/// Mask of the connection handle in an ACL header.
pub const ACL_HANDLE_MASK: u16 = 0x0fff;
/// Mask of the data length in an ISO header.
pub const ISO_DLEN_MASK: u16 = 0x3fff;

/// Event codes the built-in controller sends (Core Vol 4 Part E §7.7).
pub mod evt {
    /// Inquiry Complete.
    pub const INQUIRY_COMPLETE: u8 = 0x01;
    /// Inquiry Result.
    pub const INQUIRY_RESULT: u8 = 0x02;
    /// Remote Name Request Complete.
    pub const REMOTE_NAME_REQ_COMPLETE: u8 = 0x07;
    /// Command Complete.
    pub const CMD_COMPLETE: u8 = 0x0e;
    /// Command Status.
    pub const CMD_STATUS: u8 = 0x0f;
    /// LE Meta event.
    pub const LE_META: u8 = 0x3e;
    /// LE Advertising Report (a sub-event of LE Meta).
    pub const LE_ADVERTISING_REPORT: u8 = 0x02;
}

/// HCI error codes (Core Vol 1 Part F).
pub mod status {
    /// Success.
    pub const SUCCESS: u8 = 0x00;
    /// Unknown HCI Command.
    pub const UNKNOWN_COMMAND: u8 = 0x01;
    /// Page Timeout: nobody answered.
    pub const PAGE_TIMEOUT: u8 = 0x04;
    /// Command Disallowed.
    pub const COMMAND_DISALLOWED: u8 = 0x0c;
    /// Invalid HCI Command Parameters.
    pub const INVALID_PARAMETERS: u8 = 0x12;
}

/// The opcode of `ogf`/`ocf` (Core Vol 4 Part E §5.4.1).
pub const fn opcode(ogf: u16, ocf: u16) -> u16 {
    (ogf << 10) | ocf
}

/// Command opcodes (Core Vol 4 Part E §7.1 – §7.8).
pub mod op {
    use super::opcode;

    /// Inquiry.
    pub const INQUIRY: u16 = opcode(0x01, 0x0001);
    /// Inquiry Cancel.
    pub const INQUIRY_CANCEL: u16 = opcode(0x01, 0x0002);
    /// Remote Name Request.
    pub const REMOTE_NAME_REQ: u16 = opcode(0x01, 0x0019);
    /// Remote Name Request Cancel.
    pub const REMOTE_NAME_REQ_CANCEL: u16 = opcode(0x01, 0x001a);
    /// Write Default Link Policy Settings.
    pub const WRITE_DEF_LINK_POLICY: u16 = opcode(0x02, 0x000f);
    /// Set Event Mask.
    pub const SET_EVENT_MASK: u16 = opcode(0x03, 0x0001);
    /// Reset.
    pub const RESET: u16 = opcode(0x03, 0x0003);
    /// Set Event Filter.
    pub const SET_EVENT_FLT: u16 = opcode(0x03, 0x0005);
    /// Write Local Name.
    pub const WRITE_LOCAL_NAME: u16 = opcode(0x03, 0x0013);
    /// Read Local Name.
    pub const READ_LOCAL_NAME: u16 = opcode(0x03, 0x0014);
    /// Write Connection Accept Timeout.
    pub const WRITE_CA_TIMEOUT: u16 = opcode(0x03, 0x0016);
    /// Write Page Timeout.
    pub const WRITE_PAGE_TIMEOUT: u16 = opcode(0x03, 0x0018);
    /// Read Scan Enable.
    pub const READ_SCAN_ENABLE: u16 = opcode(0x03, 0x0019);
    /// Write Scan Enable.
    pub const WRITE_SCAN_ENABLE: u16 = opcode(0x03, 0x001a);
    /// Read Page Scan Activity.
    pub const READ_PAGE_SCAN_ACTIVITY: u16 = opcode(0x03, 0x001b);
    /// Write Page Scan Activity.
    pub const WRITE_PAGE_SCAN_ACTIVITY: u16 = opcode(0x03, 0x001c);
    /// Write Inquiry Scan Activity.
    pub const WRITE_INQUIRY_SCAN_ACTIVITY: u16 = opcode(0x03, 0x001e);
    /// Read Authentication Enable.
    pub const READ_AUTH_ENABLE: u16 = opcode(0x03, 0x001f);
    /// Write Authentication Enable.
    pub const WRITE_AUTH_ENABLE: u16 = opcode(0x03, 0x0020);
    /// Read Class of Device.
    pub const READ_CLASS_OF_DEV: u16 = opcode(0x03, 0x0023);
    /// Write Class of Device.
    pub const WRITE_CLASS_OF_DEV: u16 = opcode(0x03, 0x0024);
    /// Read Voice Setting.
    pub const READ_VOICE_SETTING: u16 = opcode(0x03, 0x0025);
    /// Write Voice Setting.
    pub const WRITE_VOICE_SETTING: u16 = opcode(0x03, 0x0026);
    /// Read Number of Supported IAC.
    pub const READ_NUM_SUPPORTED_IAC: u16 = opcode(0x03, 0x0038);
    /// Read Current IAC LAP.
    pub const READ_CURRENT_IAC_LAP: u16 = opcode(0x03, 0x0039);
    /// Write Current IAC LAP.
    pub const WRITE_CURRENT_IAC_LAP: u16 = opcode(0x03, 0x003a);
    /// Read Page Scan Type.
    pub const READ_PAGE_SCAN_TYPE: u16 = opcode(0x03, 0x0046);
    /// Write Page Scan Type.
    pub const WRITE_PAGE_SCAN_TYPE: u16 = opcode(0x03, 0x0047);
    /// Write Inquiry Scan Type.
    pub const WRITE_INQUIRY_SCAN_TYPE: u16 = opcode(0x03, 0x0043);
    /// Write LE Host Supported.
    pub const WRITE_LE_HOST_SUPPORTED: u16 = opcode(0x03, 0x006d);
    /// Read Local Version Information.
    pub const READ_LOCAL_VERSION: u16 = opcode(0x04, 0x0001);
    /// Read Local Supported Commands.
    pub const READ_LOCAL_COMMANDS: u16 = opcode(0x04, 0x0002);
    /// Read Local Supported Features.
    pub const READ_LOCAL_FEATURES: u16 = opcode(0x04, 0x0003);
    /// Read Buffer Size.
    pub const READ_BUFFER_SIZE: u16 = opcode(0x04, 0x0005);
    /// Read BD_ADDR.
    pub const READ_BD_ADDR: u16 = opcode(0x04, 0x0009);
    /// LE Set Event Mask.
    pub const LE_SET_EVENT_MASK: u16 = opcode(0x08, 0x0001);
    /// LE Read Buffer Size.
    pub const LE_READ_BUFFER_SIZE: u16 = opcode(0x08, 0x0002);
    /// LE Read Local Supported Features.
    pub const LE_READ_LOCAL_FEATURES: u16 = opcode(0x08, 0x0003);
    /// LE Set Random Address.
    pub const LE_SET_RANDOM_ADDR: u16 = opcode(0x08, 0x0005);
    /// LE Set Advertising Parameters.
    pub const LE_SET_ADV_PARAM: u16 = opcode(0x08, 0x0006);
    /// LE Read Advertising Physical Channel Tx Power.
    pub const LE_READ_ADV_TX_POWER: u16 = opcode(0x08, 0x0007);
    /// LE Set Advertising Data.
    pub const LE_SET_ADV_DATA: u16 = opcode(0x08, 0x0008);
    /// LE Set Scan Response Data.
    pub const LE_SET_SCAN_RSP_DATA: u16 = opcode(0x08, 0x0009);
    /// LE Set Advertising Enable.
    pub const LE_SET_ADV_ENABLE: u16 = opcode(0x08, 0x000a);
    /// LE Set Scan Parameters.
    pub const LE_SET_SCAN_PARAM: u16 = opcode(0x08, 0x000b);
    /// LE Set Scan Enable.
    pub const LE_SET_SCAN_ENABLE: u16 = opcode(0x08, 0x000c);
    /// LE Read Filter Accept List Size.
    pub const LE_READ_ACCEPT_LIST_SIZE: u16 = opcode(0x08, 0x000f);
    /// LE Clear Filter Accept List.
    pub const LE_CLEAR_ACCEPT_LIST: u16 = opcode(0x08, 0x0010);
    /// LE Read Supported States.
    pub const LE_READ_SUPPORTED_STATES: u16 = opcode(0x08, 0x001c);
}
