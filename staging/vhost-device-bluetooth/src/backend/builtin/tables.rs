// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! What the built-in controller says about itself: its version, features,
//! supported-commands bitmap and the parameters it keeps.
//!
//! The bitmaps are honest: a feature bit is set only for what the
//! controller does, and a supported-command bit only for a command it
//! answers with success. Linux's init sequence (`hci_init1_sync` …
//! `hci_init4_sync` in net/bluetooth/hci_sync.c) sends optional commands
//! only when their bit is set, so these tables also decide what the guest
//! sends during `hciconfig hci0 up`.

use crate::protocol::op;

/// HCI and LMP version 0x09: Core 5.0 (Assigned Numbers).
pub const HCI_VERSION: u8 = 0x09;
/// Company identifier 0x05F1, The Linux Foundation (Assigned Numbers).
pub const MANUFACTURER: u16 = 0x05f1;

/// LMP features page 0 (Core Vol 2 Part C §3.3): only octet 4 bit 6, "LE
/// Supported (Controller)". BR/EDR is supported because octet 4 bit 5 ("BR/EDR
/// Not Supported") is clear. No SSP, no eSCO, no RSSI or extended inquiry
/// results, no extended feature pages: inquiry answers are plain Inquiry
/// Result events.
pub const LMP_FEATURES: [u8; 8] = [0, 0, 0, 0, 0x40, 0, 0, 0];

/// LE features (Core Vol 6 Part B §4.6): none of the optional ones.
pub const LE_FEATURES: [u8; 8] = [0; 8];

/// LE supported states (Core Vol 4 Part E §7.8.27): non-connectable,
/// scannable and connectable advertising, passive and active scanning —
/// the states it simulates; no connections.
pub const LE_STATES: [u8; 8] = [0x37, 0, 0, 0, 0, 0, 0, 0];

/// Read Buffer Size: ACL data length, SCO length, ACL and SCO counts. The
/// ACL length keeps a packet with its headers in one 1000-byte RX buffer.
pub const ACL_MTU: u16 = 990;
/// ACL buffers.
pub const ACL_PKTS: u16 = 8;
/// LE ACL data length and count.
pub const LE_ACL_MTU: u16 = 251;
/// LE ACL buffers.
pub const LE_ACL_PKTS: u8 = 8;

/// Every command the controller answers, with its bit in the supported
/// commands bitmap (Core Vol 4 Part E §6.27): (opcode, octet, bit).
pub const SUPPORTED: &[(u16, usize, u8)] = &[
    (op::INQUIRY, 0, 0),
    (op::INQUIRY_CANCEL, 0, 1),
    (op::REMOTE_NAME_REQ, 2, 3),
    (op::REMOTE_NAME_REQ_CANCEL, 2, 4),
    (op::WRITE_DEF_LINK_POLICY, 5, 4),
    (op::SET_EVENT_MASK, 5, 6),
    (op::RESET, 5, 7),
    (op::SET_EVENT_FLT, 6, 0),
    (op::WRITE_LOCAL_NAME, 7, 0),
    (op::READ_LOCAL_NAME, 7, 1),
    (op::WRITE_CA_TIMEOUT, 7, 3),
    (op::WRITE_PAGE_TIMEOUT, 7, 5),
    (op::READ_SCAN_ENABLE, 7, 6),
    (op::WRITE_SCAN_ENABLE, 7, 7),
    (op::READ_PAGE_SCAN_ACTIVITY, 8, 0),
    (op::WRITE_PAGE_SCAN_ACTIVITY, 8, 1),
    (op::WRITE_INQUIRY_SCAN_ACTIVITY, 8, 3),
    (op::READ_AUTH_ENABLE, 8, 4),
    (op::WRITE_AUTH_ENABLE, 8, 5),
    (op::READ_CLASS_OF_DEV, 9, 0),
    (op::WRITE_CLASS_OF_DEV, 9, 1),
    (op::READ_VOICE_SETTING, 9, 2),
    (op::WRITE_VOICE_SETTING, 9, 3),
    (op::READ_NUM_SUPPORTED_IAC, 11, 2),
    (op::READ_CURRENT_IAC_LAP, 11, 3),
    (op::WRITE_CURRENT_IAC_LAP, 11, 4),
    (op::WRITE_INQUIRY_SCAN_TYPE, 12, 5),
    (op::READ_PAGE_SCAN_TYPE, 13, 0),
    (op::WRITE_PAGE_SCAN_TYPE, 13, 1),
    (op::READ_LOCAL_VERSION, 14, 3),
    (op::READ_LOCAL_COMMANDS, 14, 4),
    (op::READ_LOCAL_FEATURES, 14, 5),
    (op::READ_BUFFER_SIZE, 14, 7),
    (op::READ_BD_ADDR, 15, 1),
    (op::WRITE_LE_HOST_SUPPORTED, 24, 6),
    (op::LE_SET_EVENT_MASK, 25, 0),
    (op::LE_READ_BUFFER_SIZE, 25, 1),
    (op::LE_READ_LOCAL_FEATURES, 25, 2),
    (op::LE_SET_RANDOM_ADDR, 25, 4),
    (op::LE_SET_ADV_PARAM, 25, 5),
    (op::LE_READ_ADV_TX_POWER, 25, 6),
    (op::LE_SET_ADV_DATA, 25, 7),
    (op::LE_SET_SCAN_RSP_DATA, 26, 0),
    (op::LE_SET_ADV_ENABLE, 26, 1),
    (op::LE_SET_SCAN_PARAM, 26, 2),
    (op::LE_SET_SCAN_ENABLE, 26, 3),
    (op::LE_READ_ACCEPT_LIST_SIZE, 26, 6),
    (op::LE_CLEAR_ACCEPT_LIST, 26, 7),
    (op::LE_READ_SUPPORTED_STATES, 28, 3),
];

/// The 64-byte supported-commands bitmap built from [`SUPPORTED`].
pub fn supported_commands() -> [u8; 64] {
    let mut map = [0u8; 64];
    for &(_, octet, bit) in SUPPORTED {
        if let Some(byte) = map.get_mut(octet) {
            *byte |= 1 << bit;
        }
    }
    map
}

/// How many parameter bytes a kept parameter takes.
#[derive(Clone, Copy, Debug)]
pub enum Len {
    /// Exactly this many.
    Exact(usize),
    /// At least one, at most this many.
    UpTo(usize),
}

/// A parameter the guest writes and may read back: (write opcode, read
/// opcode or 0, length, value after Reset).
pub const KEPT: &[(u16, u16, Len, &[u8])] = &[
    (
        op::SET_EVENT_MASK,
        0,
        Len::Exact(8),
        &[0xff, 0xff, 0xfb, 0xff, 0x07, 0xf8, 0xbf, 0x3d],
    ),
    (
        op::LE_SET_EVENT_MASK,
        0,
        Len::Exact(8),
        &[0x1f, 0, 0, 0, 0, 0, 0, 0],
    ),
    (op::SET_EVENT_FLT, 0, Len::UpTo(9), &[0]),
    (op::WRITE_DEF_LINK_POLICY, 0, Len::Exact(2), &[0, 0]),
    (op::WRITE_CA_TIMEOUT, 0, Len::Exact(2), &[0x00, 0x1f]),
    (op::WRITE_PAGE_TIMEOUT, 0, Len::Exact(2), &[0x00, 0x20]),
    (
        op::WRITE_SCAN_ENABLE,
        op::READ_SCAN_ENABLE,
        Len::Exact(1),
        &[0],
    ),
    (
        op::WRITE_PAGE_SCAN_ACTIVITY,
        op::READ_PAGE_SCAN_ACTIVITY,
        Len::Exact(4),
        &[0x00, 0x08, 0x12, 0x00],
    ),
    (
        op::WRITE_INQUIRY_SCAN_ACTIVITY,
        0,
        Len::Exact(4),
        &[0x00, 0x10, 0x12, 0x00],
    ),
    (
        op::WRITE_AUTH_ENABLE,
        op::READ_AUTH_ENABLE,
        Len::Exact(1),
        &[0],
    ),
    (
        op::WRITE_CLASS_OF_DEV,
        op::READ_CLASS_OF_DEV,
        Len::Exact(3),
        &[0, 0, 0],
    ),
    (
        op::WRITE_VOICE_SETTING,
        op::READ_VOICE_SETTING,
        Len::Exact(2),
        &[0x60, 0x00],
    ),
    (
        op::WRITE_CURRENT_IAC_LAP,
        op::READ_CURRENT_IAC_LAP,
        Len::UpTo(4),
        &[1, 0x33, 0x8b, 0x9e],
    ),
    (op::WRITE_INQUIRY_SCAN_TYPE, 0, Len::Exact(1), &[0]),
    (
        op::WRITE_PAGE_SCAN_TYPE,
        op::READ_PAGE_SCAN_TYPE,
        Len::Exact(1),
        &[0],
    ),
    (op::WRITE_LE_HOST_SUPPORTED, 0, Len::Exact(2), &[0, 0]),
    (op::LE_SET_RANDOM_ADDR, 0, Len::Exact(6), &[0; 6]),
    (
        op::LE_SET_ADV_PARAM,
        0,
        Len::Exact(15),
        &[0x00, 0x08, 0x00, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x07, 0],
    ),
    (op::LE_SET_ADV_DATA, 0, Len::Exact(32), &[0; 32]),
    (op::LE_SET_SCAN_RSP_DATA, 0, Len::Exact(32), &[0; 32]),
    (
        op::LE_SET_SCAN_PARAM,
        0,
        Len::Exact(7),
        &[0, 0x10, 0, 0x10, 0, 0, 0],
    ),
];

/// The entry of a kept parameter written by `opcode`.
pub fn kept_by_write(opcode: u16) -> Option<(Len, &'static [u8])> {
    KEPT.iter()
        .find(|(w, ..)| *w == opcode)
        .map(|&(_, _, len, default)| (len, default))
}

/// The write opcode of the parameter `opcode` reads.
pub fn kept_by_read(opcode: u16) -> Option<u16> {
    KEPT.iter()
        .find(|(_, r, ..)| *r == opcode && *r != 0)
        .map(|&(w, ..)| w)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn the_bitmap_has_the_bits_linux_tests() {
        let map = supported_commands();
        // Read Voice Setting gates its init step (read_voice_setting_capable).
        assert_ne!(map[9] & 0x04, 0);
        // Read Page Scan Activity / Type, LE adv TX power, accept list.
        assert_ne!(map[8] & 0x01, 0);
        assert_ne!(map[13] & 0x01, 0);
        assert_ne!(map[25] & 0x40, 0);
        assert_eq!(map[26] & 0xc0, 0xc0);
        // Not implemented, so not offered: stored link keys, event mask
        // page 2, LE set default PHY.
        assert_eq!(map[6] & 0xa0, 0);
        assert_eq!(map[22] & 0x04, 0);
        assert_eq!(map[35] & 0x20, 0);
        // Every kept parameter's opcodes are in the table.
        for (w, r, ..) in KEPT {
            assert!(SUPPORTED.iter().any(|(o, ..)| o == w), "{w:04x}");
            assert!(*r == 0 || SUPPORTED.iter().any(|(o, ..)| o == r), "{r:04x}");
        }
        for (w, _, len, default) in KEPT {
            match len {
                Len::Exact(n) => assert_eq!(default.len(), *n, "{w:04x}"),
                Len::UpTo(n) => assert!(default.len() <= *n),
            }
        }
    }
}
