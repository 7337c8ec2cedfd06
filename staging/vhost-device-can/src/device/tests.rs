// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The device with chains laid out by `mock::ChainBuilder` and a host side
//! the test drives.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use vhost_device_common::mock::{read_region, ChainBuilder};

use super::*;
use crate::backend::bus::VirtualBus;
use crate::backend::Capabilities;
use crate::protocol::*;

/// What the test sees of and does to the host side.
#[derive(Debug, Default)]
struct Host {
    sent: Vec<CanFrame>,
    started: bool,
    late: bool,
    events: VecDeque<BackendEvent>,
}

#[derive(Debug)]
struct TestBackend {
    host: Arc<Mutex<Host>>,
    fd: bool,
}

impl CanBackend for TestBackend {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            fd: self.fd,
            late_tx_ack: true,
        }
    }
    fn activate(&mut self, _events: &EventRegistry, _token: u16) -> Result<()> {
        Ok(())
    }
    fn set_late_tx_ack(&mut self, on: bool) {
        self.host.lock().unwrap().late = on;
    }
    fn set_started(&mut self, started: bool) {
        self.host.lock().unwrap().started = started;
    }
    fn send(&mut self, frame: &CanFrame) -> Result<TxAck> {
        let mut host = self.host.lock().unwrap();
        host.sent.push(*frame);
        Ok(if host.late { TxAck::Later } else { TxAck::Done })
    }
    fn poll(&mut self, sink: &mut dyn FnMut(BackendEvent)) {
        let events: Vec<_> = self.host.lock().unwrap().events.drain(..).collect();
        for e in events {
            sink(e);
        }
    }
}

const ALL: u64 = VIRTIO_CAN_F_CAN_CLASSIC
    | VIRTIO_CAN_F_CAN_FD
    | VIRTIO_CAN_F_RTR_FRAMES
    | VIRTIO_CAN_F_LATE_TX_ACK;

/// Everything but LATE_TX_ACK: the test host side then confirms at once.
const EARLY: u64 = ALL & !VIRTIO_CAN_F_LATE_TX_ACK;

struct Rig {
    dev: CanDevice<TestBackend>,
    host: Arc<Mutex<Host>>,
    chains: ChainBuilder,
}

fn rig_with(features: u64, backlog: usize) -> Rig {
    let host = Arc::new(Mutex::new(Host::default()));
    let mut dev = CanDevice::new(
        TestBackend {
            host: host.clone(),
            fd: true,
        },
        backlog,
    );
    dev.set_acked_features(features);
    Rig {
        dev,
        host,
        chains: ChainBuilder::new(),
    }
}

fn tx_bytes(flags: u32, id: u32, length: u16, payload: &[u8]) -> Vec<u8> {
    let mut bytes = virtio_can_tx_out::new(VIRTIO_CAN_TX, flags, id, length)
        .as_slice()
        .to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

impl Rig {
    fn chain(&mut self, readable: &[u8], writable: u32) -> DescChain {
        self.chains.push_readable(readable);
        if writable > 0 {
            self.chains.push_writable(writable);
        }
        self.chains.chain().unwrap()
    }

    fn written(&self, chain: &DescChain) -> Vec<u8> {
        read_region(self.chains.memory(), chain.writable().get(0).unwrap())
    }

    fn control(&mut self, msg_type: u16) -> u8 {
        let chain = self.chain(&msg_type.to_le_bytes(), 1);
        let len = self.dev.handle_control(&chain, self.chains.memory());
        assert_eq!(len, 1, "every control request is answered");
        self.written(&chain)[0]
    }

    fn start(&mut self) {
        assert_eq!(
            self.control(VIRTIO_CAN_SET_CTRL_MODE_START),
            VIRTIO_CAN_RESULT_OK
        );
    }

    /// A TX request: the chain and, if completed at once, its result.
    fn tx(&mut self, bytes: &[u8]) -> (DescChain, Option<u8>) {
        let chain = self.chain(bytes, 1);
        let done = self.dev.handle_tx(chain.clone(), self.chains.memory());
        let result = done.map(|len| {
            assert_eq!(len, 1);
            self.written(&chain)[0]
        });
        (chain, result)
    }

    fn tx_result(&mut self, bytes: &[u8]) -> u8 {
        self.tx(bytes).1.expect("completed at once")
    }

    fn rx_buffer(&mut self, size: u32) -> (DescChain, Option<u32>) {
        self.chains.push_writable(size);
        let chain = self.chains.chain().unwrap();
        let done = self
            .dev
            .handle_rx_buffer(chain.clone(), self.chains.memory());
        (chain, done)
    }

    fn host_event(&mut self, event: BackendEvent) {
        self.host.lock().unwrap().events.push_back(event);
        self.dev.handle_backend(self.chains.memory());
    }

    fn sent(&self) -> Vec<CanFrame> {
        self.host.lock().unwrap().sent.clone()
    }

    fn status(&self) -> u16 {
        u16::from_le_bytes([self.dev.config()[0], self.dev.config()[1]])
    }
}

fn decode_rx(bytes: &[u8]) -> (virtio_can_rx, Vec<u8>) {
    let header = virtio_can_rx::from_slice(&bytes[..16]).copied().unwrap();
    let len = usize::from(header.length.to_native());
    (header, bytes[16..16 + len].to_vec())
}

#[test]
fn features_follow_the_host_side() {
    let rig = rig_with(0, 8);
    assert_eq!(rig.dev.features(), ALL);
    let mut dev = CanDevice::new(
        TestBackend {
            host: Arc::default(),
            fd: false,
        },
        8,
    );
    assert_eq!(dev.features() & VIRTIO_CAN_F_CAN_FD, 0);
    dev.set_acked_features(ALL);
    assert_eq!(
        dev.acked & VIRTIO_CAN_F_CAN_FD,
        0,
        "only offered bits count"
    );
    assert_eq!(dev.config().len(), 2);
}

#[test]
fn starts_stopped_and_refuses_tx_until_started() {
    let mut rig = rig_with(EARLY, 8);
    assert_eq!(rig.status(), 0);
    let frame = tx_bytes(0, 0x123, 2, &[1, 2]);
    assert_eq!(rig.tx_result(&frame), VIRTIO_CAN_RESULT_NOT_OK);
    assert!(rig.sent().is_empty(), "nothing sent while stopped");
    rig.start();
    assert!(rig.host.lock().unwrap().started);
    assert_eq!(rig.tx_result(&frame), VIRTIO_CAN_RESULT_OK);
    assert_eq!(rig.sent(), [CanFrame::new(0x123, false, false, &[1, 2])]);
    assert_eq!(
        rig.control(VIRTIO_CAN_SET_CTRL_MODE_STOP),
        VIRTIO_CAN_RESULT_OK
    );
    assert!(!rig.host.lock().unwrap().started);
    assert_eq!(rig.tx_result(&frame), VIRTIO_CAN_RESULT_NOT_OK);
    assert_eq!(rig.sent().len(), 1);
}

#[test]
fn each_frame_kind_is_sent_as_decoded() {
    let mut rig = rig_with(EARLY, 8);
    rig.start();
    let fd_payload: Vec<u8> = (0..64).collect();
    let cases = [
        (
            tx_bytes(0, 0x7ff, 8, &[9; 8]),
            CanFrame::new(0x7ff, false, false, &[9; 8]),
        ),
        (
            tx_bytes(VIRTIO_CAN_FLAGS_EXTENDED, CAN_EFF_MAX, 0, &[]),
            CanFrame::new(CAN_EFF_MAX, true, false, &[]),
        ),
        (
            tx_bytes(VIRTIO_CAN_FLAGS_FD, 0x10, 64, &fd_payload),
            CanFrame::new(0x10, false, true, &fd_payload),
        ),
        (
            tx_bytes(
                VIRTIO_CAN_FLAGS_FD | VIRTIO_CAN_FLAGS_EXTENDED,
                0x1234,
                12,
                &[5; 12],
            ),
            CanFrame::new(0x1234, true, true, &[5; 12]),
        ),
        // RTR: the payload area the driver leaves is ignored.
        (
            tx_bytes(VIRTIO_CAN_FLAGS_RTR, 0x55, 4, &[0; 4]),
            CanFrame::remote(0x55, false, 4),
        ),
        (
            tx_bytes(VIRTIO_CAN_FLAGS_RTR, 0x56, 2, &[]),
            CanFrame::remote(0x56, false, 2),
        ),
    ];
    for (bytes, want) in &cases {
        assert_eq!(rig.tx_result(bytes), VIRTIO_CAN_RESULT_OK, "{want:?}");
    }
    let want: Vec<CanFrame> = cases.iter().map(|(_, f)| *f).collect();
    assert_eq!(rig.sent(), want);
}

#[test]
fn every_rejection_rule_answers_not_ok_and_sends_nothing() {
    let cases: [(u64, Vec<u8>, &str); 13] = [
        // (features, request, rule)
        (
            ALL & !VIRTIO_CAN_F_CAN_CLASSIC & !VIRTIO_CAN_F_RTR_FRAMES,
            tx_bytes(0, 1, 1, &[1]),
            "classic not negotiated",
        ),
        (
            ALL & !VIRTIO_CAN_F_CAN_FD,
            tx_bytes(VIRTIO_CAN_FLAGS_FD, 1, 12, &[0; 12]),
            "FD not negotiated",
        ),
        (
            ALL & !VIRTIO_CAN_F_RTR_FRAMES,
            tx_bytes(VIRTIO_CAN_FLAGS_RTR, 1, 0, &[]),
            "RTR not negotiated",
        ),
        (ALL, tx_bytes(0x1, 1, 0, &[]), "undefined flag"),
        (ALL, tx_bytes(0x8000_0000, 1, 0, &[]), "undefined high flag"),
        (ALL, tx_bytes(0, 0x800, 0, &[]), "11-bit ID out of range"),
        (
            ALL,
            tx_bytes(VIRTIO_CAN_FLAGS_EXTENDED, 0x2000_0000, 0, &[]),
            "29-bit ID out of range",
        ),
        (ALL, tx_bytes(0, 1, 9, &[0; 9]), "classic length 9"),
        (
            ALL,
            tx_bytes(VIRTIO_CAN_FLAGS_FD, 1, 13, &[0; 13]),
            "FD length 13",
        ),
        (
            ALL,
            tx_bytes(VIRTIO_CAN_FLAGS_FD, 1, 65, &[0; 65]),
            "FD length 65",
        ),
        (ALL, tx_bytes(VIRTIO_CAN_FLAGS_RTR, 1, 9, &[]), "RTR DLC 9"),
        (
            ALL,
            tx_bytes(VIRTIO_CAN_FLAGS_RTR | VIRTIO_CAN_FLAGS_FD, 1, 0, &[]),
            "RTR with FD",
        ),
        (
            ALL,
            tx_bytes(0, 1, 8, &[0; 4]),
            "payload shorter than length",
        ),
    ];
    for (features, bytes, what) in cases {
        let mut rig = rig_with(features, 8);
        rig.start();
        assert_eq!(rig.tx_result(&bytes), VIRTIO_CAN_RESULT_NOT_OK, "{what}");
        assert!(rig.sent().is_empty(), "{what}: sent");
    }
    // A wrong message type, and a header cut short.
    let mut rig = rig_with(ALL, 8);
    rig.start();
    let mut wrong = tx_bytes(0, 1, 0, &[]);
    wrong[0] = 0x01;
    wrong[1] = 0x01;
    assert_eq!(rig.tx_result(&wrong), VIRTIO_CAN_RESULT_NOT_OK);
    assert_eq!(rig.tx_result(&[1, 0, 0]), VIRTIO_CAN_RESULT_NOT_OK);
    // No room for the result: refused unsent, completed with nothing.
    let chain = rig.chain(&tx_bytes(0, 1, 0, &[]), 0);
    assert_eq!(rig.dev.handle_tx(chain, rig.chains.memory()), Some(0));
    assert!(rig.sent().is_empty());
}

#[test]
fn control_requests_are_always_answered() {
    let mut rig = rig_with(ALL, 8);
    assert_eq!(rig.control(0x0203), VIRTIO_CAN_RESULT_NOT_OK);
    // STOP when stopped, START when started: both fine.
    assert_eq!(
        rig.control(VIRTIO_CAN_SET_CTRL_MODE_STOP),
        VIRTIO_CAN_RESULT_OK
    );
    rig.start();
    rig.start();
    // Too short to decode: still answered.
    let chain = rig.chain(&[1], 1);
    assert_eq!(rig.dev.handle_control(&chain, rig.chains.memory()), 1);
    assert_eq!(rig.written(&chain)[0], VIRTIO_CAN_RESULT_NOT_OK);
    // No room for the answer: completed with a used length of 0.
    let chain = rig.chain(&VIRTIO_CAN_SET_CTRL_MODE_STOP.to_le_bytes(), 0);
    assert_eq!(rig.dev.handle_control(&chain, rig.chains.memory()), 0);
    assert!(
        !rig.dev.controller().is_started(),
        "the STOP still happened"
    );
}

#[test]
fn late_tx_ack_waits_for_the_host_and_completes_in_order() {
    let mut rig = rig_with(ALL, 8);
    rig.start();
    let (a, done) = rig.tx(&tx_bytes(0, 1, 0, &[]));
    assert_eq!(done, None, "held until the bus confirms");
    let (b, _) = rig.tx(&tx_bytes(0, 2, 0, &[]));
    assert_eq!(rig.dev.tx_pending(), 2);
    rig.host_event(BackendEvent::Sent(true));
    rig.host_event(BackendEvent::Sent(false));
    let done = rig.dev.take_completions();
    assert_eq!(done.tx, [(a.head(), 1), (b.head(), 1)]);
    assert_eq!(rig.written(&a)[0], VIRTIO_CAN_RESULT_OK);
    assert_eq!(rig.written(&b)[0], VIRTIO_CAN_RESULT_NOT_OK);
    // Without LATE_TX_ACK the same host completes at once.
    let mut rig = rig_with(ALL & !VIRTIO_CAN_F_LATE_TX_ACK, 8);
    rig.start();
    assert_eq!(
        rig.tx(&tx_bytes(0, 1, 0, &[])).1,
        Some(VIRTIO_CAN_RESULT_OK)
    );
}

#[test]
fn stop_with_tx_pending_fails_them_first() {
    let mut rig = rig_with(ALL, 8);
    rig.start();
    let (a, _) = rig.tx(&tx_bytes(0, 1, 0, &[]));
    let (b, _) = rig.tx(&tx_bytes(0, 2, 0, &[]));
    assert_eq!(
        rig.control(VIRTIO_CAN_SET_CTRL_MODE_STOP),
        VIRTIO_CAN_RESULT_OK
    );
    let done = rig.dev.take_completions();
    assert_eq!(done.tx, [(a.head(), 1), (b.head(), 1)]);
    assert_eq!(rig.written(&a)[0], VIRTIO_CAN_RESULT_NOT_OK);
    assert_eq!(rig.written(&b)[0], VIRTIO_CAN_RESULT_NOT_OK);
    assert_eq!(rig.dev.tx_pending(), 0);
    // A late confirmation for a cancelled frame completes nothing.
    rig.host_event(BackendEvent::Sent(true));
    assert_eq!(rig.dev.take_completions(), Completions::default());
}

#[test]
fn received_frames_fill_posted_buffers() {
    let mut rig = rig_with(ALL, 8);
    rig.start();
    let (buf, done) = rig.rx_buffer(80);
    assert_eq!(done, None, "held until a frame comes");
    let frame = CanFrame::new(0x1abc, true, true, &[7; 24]);
    rig.host_event(BackendEvent::Frame(frame));
    let done = rig.dev.take_completions();
    assert_eq!(done.rx, [(buf.head(), 16 + 24)]);
    let (header, payload) = decode_rx(&rig.written(&buf));
    assert_eq!(header.msg_type.to_native(), VIRTIO_CAN_RX);
    assert_eq!(
        header.flags.to_native(),
        VIRTIO_CAN_FLAGS_EXTENDED | VIRTIO_CAN_FLAGS_FD
    );
    assert_eq!(header.can_id.to_native(), 0x1abc);
    assert_eq!(payload, [7; 24]);
    // RTR: the DLC in `length`, and that many zero bytes, which Linux
    // insists on.
    let (buf, _) = rig.rx_buffer(24);
    rig.host_event(BackendEvent::Frame(CanFrame::remote(0x12, false, 3)));
    assert_eq!(rig.dev.take_completions().rx, [(buf.head(), 16 + 3)]);
    assert_eq!(rig.written(&buf)[16..19], [0, 0, 0]);
    let bytes = rig.written(&buf);
    let header = virtio_can_rx::from_slice(&bytes[..16]).copied().unwrap();
    assert_eq!(header.length.to_native(), 3);
    assert_eq!(header.flags.to_native(), VIRTIO_CAN_FLAGS_RTR);
}

#[test]
fn frames_wait_for_buffers_in_a_bounded_backlog() {
    let mut rig = rig_with(ALL, 3);
    rig.start();
    for id in 1..=5 {
        rig.host_event(BackendEvent::Frame(CanFrame::new(id, false, false, &[])));
    }
    assert_eq!(rig.dev.backlog().len(), 3);
    assert_eq!(rig.dev.backlog().dropped(), 2);
    // The newest survive, in order.
    for want in 3..=5 {
        let (buf, done) = rig.rx_buffer(24);
        assert_eq!(done, Some(16));
        assert_eq!(decode_rx(&rig.written(&buf)).0.can_id.to_native(), want);
    }
    assert_eq!(rig.rx_buffer(24).1, None);
}

#[test]
fn no_frames_while_stopped_or_of_kinds_not_negotiated() {
    let mut rig = rig_with(VIRTIO_CAN_F_CAN_CLASSIC, 8);
    rig.host_event(BackendEvent::Frame(CanFrame::new(1, false, false, &[])));
    assert!(rig.dev.backlog().is_empty(), "stopped");
    rig.start();
    rig.host_event(BackendEvent::Frame(CanFrame::new(2, false, true, &[0; 12])));
    rig.host_event(BackendEvent::Frame(CanFrame::remote(3, false, 1)));
    assert!(rig.dev.backlog().is_empty(), "FD and RTR not negotiated");
    // STOP forgets what waits.
    rig.host_event(BackendEvent::Frame(CanFrame::new(4, false, false, &[])));
    assert_eq!(rig.dev.backlog().len(), 1);
    rig.control(VIRTIO_CAN_SET_CTRL_MODE_STOP);
    assert!(rig.dev.backlog().is_empty());
}

#[test]
fn too_small_rx_buffers_lose_the_frame_not_the_device() {
    let mut rig = rig_with(ALL, 8);
    rig.start();
    rig.host_event(BackendEvent::Frame(CanFrame::new(1, false, false, &[1; 8])));
    assert_eq!(rig.rx_buffer(20).1, Some(0));
    rig.host_event(BackendEvent::Frame(CanFrame::new(2, false, false, &[1; 8])));
    assert_eq!(rig.rx_buffer(24).1, Some(24));
}

#[test]
fn bus_off_stops_fails_pending_and_needs_stop_then_start() {
    let mut rig = rig_with(ALL, 8);
    rig.start();
    let (a, _) = rig.tx(&tx_bytes(0, 1, 0, &[]));
    rig.host_event(BackendEvent::Frame(CanFrame::new(9, false, false, &[])));
    rig.host_event(BackendEvent::BusOff);
    assert_eq!(rig.status(), VIRTIO_CAN_S_CTRL_BUSOFF);
    assert_eq!(rig.dev.controller().mode(), crate::controller::Mode::BusOff);
    assert!(!rig.host.lock().unwrap().started);
    assert_eq!(rig.dev.take_completions().tx, [(a.head(), 1)]);
    assert_eq!(rig.written(&a)[0], VIRTIO_CAN_RESULT_NOT_OK);
    assert!(rig.dev.backlog().is_empty());
    assert_eq!(
        rig.tx_result(&tx_bytes(0, 1, 0, &[])),
        VIRTIO_CAN_RESULT_NOT_OK
    );
    assert_eq!(
        rig.control(VIRTIO_CAN_SET_CTRL_MODE_START),
        VIRTIO_CAN_RESULT_NOT_OK
    );
    assert_eq!(
        rig.control(VIRTIO_CAN_SET_CTRL_MODE_STOP),
        VIRTIO_CAN_RESULT_OK
    );
    assert_eq!(rig.status(), 0, "STOP clears BUSOFF before it is used");
    rig.start();
    let (b, done) = rig.tx(&tx_bytes(0, 1, 0, &[]));
    assert_eq!(done, None, "on the bus again");
    // A second bus-off report while already off changes nothing.
    rig.host_event(BackendEvent::BusOff);
    rig.host_event(BackendEvent::BusOff);
    assert_eq!(rig.status(), VIRTIO_CAN_S_CTRL_BUSOFF);
    assert_eq!(rig.dev.take_completions().tx, [(b.head(), 1)]);
}

#[test]
fn reset_returns_to_stopped() {
    let mut rig = rig_with(ALL, 8);
    rig.start();
    rig.tx(&tx_bytes(0, 1, 0, &[]));
    rig.rx_buffer(24);
    rig.dev.reset();
    assert_eq!(
        rig.dev.controller().mode(),
        crate::controller::Mode::Stopped
    );
    assert_eq!(rig.dev.tx_pending(), 0);
    assert_eq!(rig.dev.rx_buffers(), 0);
}

#[test]
fn two_devices_on_one_virtual_bus_hear_each_other_only() {
    let bus = VirtualBus::new(8);
    let mut a = CanDevice::new(bus.attach(0).unwrap(), 8);
    let mut b = CanDevice::new(bus.attach(1).unwrap(), 8);
    let mut chains = ChainBuilder::new();
    for dev in [&mut a, &mut b] {
        dev.set_acked_features(ALL);
        chains.push_readable(&VIRTIO_CAN_SET_CTRL_MODE_START.to_le_bytes());
        chains.push_writable(1);
        let chain = chains.chain().unwrap();
        dev.handle_control(&chain, chains.memory());
    }
    chains.push_writable(80);
    let b_buf = chains.chain().unwrap();
    assert_eq!(b.handle_rx_buffer(b_buf.clone(), chains.memory()), None);
    chains.push_writable(80);
    let a_buf = chains.chain().unwrap();
    assert_eq!(a.handle_rx_buffer(a_buf, chains.memory()), None);
    chains.push_readable(&tx_bytes(0, 0x42, 1, &[0xee]));
    chains.push_writable(1);
    let tx = chains.chain().unwrap();
    // The bus confirms on delivery, so LATE_TX_ACK completes at once.
    assert_eq!(a.handle_tx(tx, chains.memory()), Some(1));
    b.handle_backend(chains.memory());
    a.handle_backend(chains.memory());
    assert_eq!(b.take_completions().rx, [(b_buf.head(), 17)]);
    assert_eq!(a.take_completions(), Completions::default(), "no echo");
}
