// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::*;
use crate::protocol::opcode;

/// Linux 7.3's init sequence for this controller's bitmaps, in order
/// (`hci_init1_sync` … `hci_init4_sync`), with the parameters it sends.
pub const LINUX_INIT: &[(u16, &[u8])] = &[
    (op::RESET, &[]),
    (op::READ_LOCAL_FEATURES, &[]),
    (op::READ_LOCAL_VERSION, &[]),
    (op::READ_BD_ADDR, &[]),
    (op::READ_LOCAL_COMMANDS, &[]),
    (op::READ_BUFFER_SIZE, &[]),
    (op::READ_CLASS_OF_DEV, &[]),
    (op::READ_LOCAL_NAME, &[]),
    (op::READ_VOICE_SETTING, &[]),
    (op::READ_NUM_SUPPORTED_IAC, &[]),
    (op::READ_CURRENT_IAC_LAP, &[]),
    (op::WRITE_CA_TIMEOUT, &[0x00, 0x7d]),
    (op::LE_READ_LOCAL_FEATURES, &[]),
    (op::LE_READ_BUFFER_SIZE, &[]),
    (op::LE_READ_SUPPORTED_STATES, &[]),
    (op::SET_EVENT_MASK, &[0xff, 0xff, 0xfb, 0xff, 0, 0, 0, 0]),
    (op::WRITE_DEF_LINK_POLICY, &[0x0f, 0]),
    (op::READ_PAGE_SCAN_ACTIVITY, &[]),
    (op::READ_PAGE_SCAN_TYPE, &[]),
    (op::LE_SET_EVENT_MASK, &[0x1f, 0, 0, 0, 0, 0, 0, 0]),
    (op::LE_READ_ADV_TX_POWER, &[]),
    (op::LE_READ_ACCEPT_LIST_SIZE, &[]),
    (op::LE_CLEAR_ACCEPT_LIST, &[]),
    (op::WRITE_LE_HOST_SUPPORTED, &[1, 0]),
];

pub fn command(opcode: u16, params: &[u8]) -> Packet {
    let mut b = vec![1];
    b.extend(opcode.to_le_bytes());
    b.push(params.len() as u8);
    b.extend(params);
    Packet::decode(b).unwrap()
}

/// Sends a command and returns every packet it produced.
fn run(c: &mut Builtin, opcode: u16, params: &[u8]) -> Vec<Packet> {
    let mut rx = Rx::new(64);
    c.send(command(opcode, params), &mut rx).unwrap();
    drain(&mut rx)
}

fn drain(rx: &mut Rx) -> Vec<Packet> {
    let mut b = vhost_device_common::mock::ChainBuilder::new();
    let mut out = Vec::new();
    while rx.backlog() > 0 {
        let chain = b.push_writable(1000).chain().unwrap();
        rx.post(chain.clone());
        rx.deliver(b.memory());
        let (_, len) = rx.take_done().next().unwrap();
        let mut buf = vec![0; len as usize];
        vm_memory::Bytes::read_slice(b.memory(), &mut buf, chain.writable().get(0).unwrap().addr)
            .unwrap();
        out.push(Packet::decode(buf).unwrap());
    }
    out
}

/// The status and return parameters of one Command Complete for `opcode`.
fn complete(packets: &[Packet], opcode: u16) -> (u8, Vec<u8>) {
    assert_eq!(packets.len(), 1, "{packets:?}");
    let p = packets[0].payload();
    assert_eq!(packets[0].hci()[0], evt::CMD_COMPLETE);
    assert_eq!(p[0], 1, "Num_HCI_Command_Packets");
    assert_eq!(u16::from_le_bytes([p[1], p[2]]), opcode);
    (p[3], p[4..].to_vec())
}

fn controller(radio: &Arc<Radio>, last: u8, name: &str) -> Builtin {
    Builtin::new(
        radio,
        Identity {
            addr: [last, 0, 0xb7, 0, 0x54, 0x52],
            name: name.into(),
        },
    )
    .unwrap()
}

#[test]
fn linux_init_sequence_succeeds() {
    let radio = Radio::new();
    let mut c = controller(&radio, 1, "one");
    for &(opcode, params) in LINUX_INIT {
        let (status, ret) = complete(&run(&mut c, opcode, params), opcode);
        assert_eq!(status, 0, "{opcode:04x}");
        let expected_len = match opcode {
            op::READ_LOCAL_FEATURES | op::LE_READ_LOCAL_FEATURES | op::LE_READ_SUPPORTED_STATES => {
                8
            }
            op::READ_LOCAL_VERSION => 8,
            op::READ_BD_ADDR => 6,
            op::READ_LOCAL_COMMANDS => 64,
            op::READ_BUFFER_SIZE => 7,
            op::READ_CLASS_OF_DEV => 3,
            op::READ_LOCAL_NAME => 248,
            op::READ_VOICE_SETTING => 2,
            op::READ_PAGE_SCAN_ACTIVITY => 4,
            op::LE_READ_BUFFER_SIZE => 3,
            op::READ_NUM_SUPPORTED_IAC
            | op::READ_PAGE_SCAN_TYPE
            | op::LE_READ_ADV_TX_POWER
            | op::LE_READ_ACCEPT_LIST_SIZE => 1,
            op::READ_CURRENT_IAC_LAP => 4,
            _ => 0,
        };
        assert_eq!(ret.len(), expected_len, "{opcode:04x}");
        if opcode == op::READ_BD_ADDR {
            assert_eq!(ret, [1, 0, 0xb7, 0, 0x54, 0x52]);
        }
        if opcode == op::READ_BUFFER_SIZE {
            // ACL length and count non-zero (hci_cc_read_buffer_size).
            assert_ne!(u16::from_le_bytes([ret[0], ret[1]]), 0);
            assert_ne!(u16::from_le_bytes([ret[3], ret[4]]), 0);
        }
        if opcode == op::LE_READ_BUFFER_SIZE {
            assert!(u16::from_le_bytes([ret[0], ret[1]]) >= 27);
        }
    }
    assert_eq!(c.name(), b"one");
}

#[test]
fn unknown_and_malformed_commands_get_a_status() {
    let radio = Radio::new();
    let mut c = controller(&radio, 1, "one");
    let (status, _) = complete(&run(&mut c, opcode(0x3f, 0x0001), &[]), opcode(0x3f, 1));
    assert_eq!(status, 0x01);
    let (status, _) = complete(
        &run(&mut c, op::WRITE_LOCAL_NAME, b"short"),
        op::WRITE_LOCAL_NAME,
    );
    assert_eq!(status, 0x12);
    let packets = run(&mut c, op::INQUIRY, &[1]);
    assert_eq!(packets.len(), 1);
    assert_eq!(packets[0].hci()[0], evt::CMD_STATUS);
    assert_eq!(packets[0].payload()[0], 0x12);
    // Data with no connection is dropped, not answered.
    let mut rx = Rx::new(4);
    c.send(Packet::decode(vec![2, 1, 0, 1, 0, 9]).unwrap(), &mut rx)
        .unwrap();
    assert_eq!(rx.backlog(), 0);
}

#[test]
fn kept_parameters_read_back_and_reset() {
    let radio = Radio::new();
    let mut c = controller(&radio, 1, "one");
    run(&mut c, op::WRITE_CLASS_OF_DEV, &[0x0c, 0x01, 0x1c]);
    let (_, class) = complete(
        &run(&mut c, op::READ_CLASS_OF_DEV, &[]),
        op::READ_CLASS_OF_DEV,
    );
    assert_eq!(class, [0x0c, 0x01, 0x1c]);
    let mut name = [0u8; 248];
    name[..3].copy_from_slice(b"new");
    run(&mut c, op::WRITE_LOCAL_NAME, &name);
    assert_eq!(c.name(), b"new");
    run(&mut c, op::RESET, &[]);
    assert_eq!(c.name(), b"one");
    let (_, class) = complete(
        &run(&mut c, op::READ_CLASS_OF_DEV, &[]),
        op::READ_CLASS_OF_DEV,
    );
    assert_eq!(class, [0, 0, 0]);
}

#[test]
fn inquiry_and_name_request_find_the_other_controller() {
    let radio = Radio::new();
    let mut a = controller(&radio, 1, "alpha");
    let mut b = controller(&radio, 2, "beta");
    // Not discoverable yet: only Command Status and Inquiry Complete.
    let packets = run(&mut a, op::INQUIRY, &[0x33, 0x8b, 0x9e, 4, 0]);
    assert_eq!(packets.len(), 2);
    run(&mut b, op::WRITE_SCAN_ENABLE, &[0x03]);
    let packets = run(&mut a, op::INQUIRY, &[0x33, 0x8b, 0x9e, 4, 0]);
    let codes: Vec<u8> = packets.iter().map(|p| p.hci()[0]).collect();
    assert_eq!(
        codes,
        [evt::CMD_STATUS, evt::INQUIRY_RESULT, evt::INQUIRY_COMPLETE]
    );
    assert_eq!(packets[1].payload()[1..7], [2, 0, 0xb7, 0, 0x54, 0x52]);
    let mut params = vec![2, 0, 0xb7, 0, 0x54, 0x52];
    params.extend([1, 0, 0, 0]);
    let packets = run(&mut a, op::REMOTE_NAME_REQ, &params);
    assert_eq!(packets.len(), 2);
    let e = packets[1].payload();
    assert_eq!(e[0], 0);
    assert_eq!(&e[7..12], b"beta\0");
    params[0] = 9;
    let packets = run(&mut a, op::REMOTE_NAME_REQ, &params);
    assert_eq!(
        packets[1].payload()[0],
        crate::protocol::status::PAGE_TIMEOUT
    );
}

#[test]
fn le_scan_finds_the_advertiser_now_and_later() {
    let radio = Radio::new();
    let mut a = controller(&radio, 1, "alpha");
    let mut b = controller(&radio, 2, "beta");
    let mut adv = [0u8; 32];
    adv[..9].copy_from_slice(&[8, 7, 0x09, b'a', b'l', b'p', b'h', b'a', 0]);
    run(&mut a, op::LE_SET_ADV_DATA, &adv);
    run(&mut a, op::LE_SET_ADV_ENABLE, &[1]);
    // Scanning starts: the reply, then a report of what is on the air.
    let packets = run(&mut b, op::LE_SET_SCAN_ENABLE, &[1, 1]);
    assert_eq!(packets.len(), 2, "{packets:?}");
    let report = packets[1].payload();
    assert_eq!(packets[1].hci()[0], evt::LE_META);
    assert_eq!(report[0], evt::LE_ADVERTISING_REPORT);
    assert_eq!(report[4..10], [1, 0, 0xb7, 0, 0x54, 0x52]);
    assert_eq!(report[10], 8);
    assert_eq!(&report[11..19], &adv[1..9]);
    // A change on the air wakes the scanner, which reports it once.
    run(&mut a, op::LE_SET_ADV_ENABLE, &[0]);
    adv[5] = b'X';
    run(&mut a, op::LE_SET_ADV_DATA, &adv);
    run(&mut a, op::LE_SET_ADV_ENABLE, &[1]);
    assert!(b.wake.read().unwrap() >= 1);
    let mut rx = Rx::new(8);
    b.ready(WAKE, &mut rx).unwrap();
    let packets = drain(&mut rx);
    assert_eq!(packets.len(), 1);
    assert_eq!(packets[0].payload()[15], b'X');
    b.ready(WAKE, &mut rx).unwrap();
    assert_eq!(rx.backlog(), 0);
    // Stopped scanning: no wake-ups.
    run(&mut b, op::LE_SET_SCAN_ENABLE, &[0, 0]);
    run(&mut a, op::LE_SET_ADV_ENABLE, &[0]);
    b.wake.read().unwrap_err();
}
