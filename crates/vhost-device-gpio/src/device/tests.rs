// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Unit tests of the device: requests, interrupts and malformed chains,
//! through chains laid out by `mock::ChainBuilder`.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use vhost_device_common::mock::ChainBuilder;
use vm_memory::ByteValued;

use super::*;
use crate::backend::sim::{SimChip, SimWorld};
use crate::backend::{Direction, Edges};
use crate::error::{Error, Result};
use crate::protocol::*;

fn encode(kind: u16, gpio: u16, value: u32) -> Vec<u8> {
    VirtioGpioRequest::new(kind, gpio, value)
        .as_slice()
        .to_vec()
}

struct Rig {
    dev: GpioDevice<SimChip>,
    guest: ChainBuilder,
    world: std::sync::Arc<SimWorld>,
}

impl Rig {
    fn new(lines: u16) -> Self {
        let world = SimWorld::new(lines, "line").unwrap();
        let mut dev = GpioDevice::new(SimChip::new(world.clone()));
        dev.set_irq_negotiated(true);
        Rig {
            dev,
            guest: ChainBuilder::new(),
            world,
        }
    }

    /// Sends a request with a 2-byte response; returns (used, status, value).
    fn request(&mut self, kind: u16, gpio: u16, value: u32) -> (u32, u8, u8) {
        let chain = self.guest.request(&[&encode(kind, gpio, value)], &[2]);
        let used = self.dev.handle_request(&chain, self.guest.memory());
        let out = self.guest.written(&chain);
        (used, out[0], out[1])
    }

    fn ok(&mut self, kind: u16, gpio: u16, value: u32) -> u8 {
        let (used, status, value) = self.request(kind, gpio, value);
        assert_eq!(
            (used, status),
            (2, VIRTIO_GPIO_STATUS_OK),
            "request {kind} line {gpio}"
        );
        value
    }

    fn err(&mut self, kind: u16, gpio: u16, value: u32) {
        let (used, status, value) = self.request(kind, gpio, value);
        assert_eq!(
            (used, status, value),
            (2, VIRTIO_GPIO_STATUS_ERR, 0),
            "request {kind} line {gpio}"
        );
    }

    /// Posts an event buffer for `gpio`.
    fn post(&mut self, gpio: u16) -> (DescChain, Option<u32>) {
        let chain = self.guest.request(&[&gpio.to_le_bytes()], &[1]);
        let result = self
            .dev
            .handle_event_buffer(chain.clone(), self.guest.memory());
        (chain, result)
    }

    /// Drives a line from outside and lets the device see the edges;
    /// returns the event buffers completed.
    fn drive(&mut self, gpio: u16, value: bool) -> Vec<(u16, u32)> {
        self.world.drive(gpio, value).unwrap();
        self.dev
            .handle_backend_event(crate::backend::sim::SIM_TOKEN, self.guest.memory());
        self.dev.take_fired().collect()
    }

    fn status(&self, chain: &DescChain) -> u8 {
        self.guest.written(chain)[0]
    }
}

#[test]
fn config_space_layout() {
    let rig = Rig::new(5);
    let config = rig.dev.config();
    assert_eq!(config.len(), 8);
    assert_eq!(&config[..2], &5u16.to_le_bytes());
    assert_eq!(&config[2..4], &[0, 0]);
    let size = u32::from_le_bytes(config[4..8].try_into().unwrap());
    assert_eq!(size as usize, rig.dev.names().len());
    assert_eq!(rig.dev.features(), VIRTIO_GPIO_F_IRQ);
    assert_eq!(rig.dev.num_queues(), 2);
}

#[test]
fn get_line_names_returns_the_block_with_the_exact_length() {
    let mut rig = Rig::new(3);
    let names = b"line0\0line1\0line2\0".to_vec();
    assert_eq!(rig.dev.names(), names.as_slice());
    let chain = rig.guest.request(
        &[&encode(VIRTIO_GPIO_MSG_GET_LINE_NAMES, 0, 0)],
        &[1 + names.len() as u32],
    );
    let used = rig.dev.handle_request(&chain, rig.guest.memory());
    assert_eq!(used as usize, 1 + names.len());
    let out = rig.guest.written(&chain);
    assert_eq!(out[0], VIRTIO_GPIO_STATUS_OK);
    assert_eq!(&out[1..], names.as_slice());

    // One byte short: an error status, not a truncated block.
    let chain = rig.guest.request(
        &[&encode(VIRTIO_GPIO_MSG_GET_LINE_NAMES, 0, 0)],
        &[names.len() as u32],
    );
    let used = rig.dev.handle_request(&chain, rig.guest.memory());
    assert_eq!(used, 2);
    assert_eq!(rig.guest.written(&chain)[0], VIRTIO_GPIO_STATUS_ERR);
}

#[test]
fn names_are_sanitised_to_ascii() {
    assert_eq!(
        names_block(&["a\0b".into(), "é".into()], 3),
        b"a?b\0??\0\0".to_vec()
    );
}

#[test]
fn directions() {
    let mut rig = Rig::new(4);
    assert_eq!(
        rig.ok(VIRTIO_GPIO_MSG_GET_DIRECTION, 1, 0),
        Direction::In as u8
    );
    rig.ok(VIRTIO_GPIO_MSG_SET_DIRECTION, 1, Direction::Out as u32);
    assert_eq!(
        rig.ok(VIRTIO_GPIO_MSG_GET_DIRECTION, 1, 0),
        Direction::Out as u8
    );
    rig.ok(VIRTIO_GPIO_MSG_SET_DIRECTION, 1, Direction::In as u32);
    assert_eq!(
        rig.ok(VIRTIO_GPIO_MSG_GET_DIRECTION, 1, 0),
        Direction::In as u8
    );
    rig.ok(VIRTIO_GPIO_MSG_SET_DIRECTION, 1, Direction::None as u32);
    rig.err(VIRTIO_GPIO_MSG_SET_DIRECTION, 1, 3);
}

#[test]
fn values_in_and_out() {
    let mut rig = Rig::new(4);
    // A released line can always be read.
    assert_eq!(rig.ok(VIRTIO_GPIO_MSG_GET_VALUE, 2, 0), 0);
    rig.world.drive(2, true).unwrap();
    assert_eq!(rig.ok(VIRTIO_GPIO_MSG_GET_VALUE, 2, 0), 1);
    // Linux sets the value before the direction: it must stick.
    rig.ok(VIRTIO_GPIO_MSG_SET_VALUE, 3, 1);
    assert!(!rig.world.level(3).unwrap(), "not driven while an input");
    rig.ok(VIRTIO_GPIO_MSG_SET_DIRECTION, 3, Direction::Out as u32);
    assert!(rig.world.level(3).unwrap());
    assert_eq!(rig.ok(VIRTIO_GPIO_MSG_GET_VALUE, 3, 0), 1);
    rig.ok(VIRTIO_GPIO_MSG_SET_VALUE, 3, 0);
    assert!(!rig.world.level(3).unwrap());
    // Releasing discards the output.
    rig.ok(VIRTIO_GPIO_MSG_SET_VALUE, 3, 1);
    rig.ok(VIRTIO_GPIO_MSG_SET_DIRECTION, 3, Direction::None as u32);
    rig.ok(VIRTIO_GPIO_MSG_SET_DIRECTION, 3, Direction::Out as u32);
    assert!(!rig.world.level(3).unwrap());
}

#[test]
fn lines_out_of_range_get_an_error() {
    let mut rig = Rig::new(4);
    for kind in [
        VIRTIO_GPIO_MSG_GET_DIRECTION,
        VIRTIO_GPIO_MSG_SET_DIRECTION,
        VIRTIO_GPIO_MSG_GET_VALUE,
        VIRTIO_GPIO_MSG_SET_VALUE,
        VIRTIO_GPIO_MSG_SET_IRQ_TYPE,
    ] {
        rig.err(kind, 4, 1);
        rig.err(kind, u16::MAX, 1);
    }
    rig.err(0x7777, 0, 0);
    rig.err(0, 0, 0);
}

#[test]
fn wrong_lengths() {
    let mut rig = Rig::new(2);
    let g = &mut rig.guest;
    // Short and long request bodies.
    for body in [
        &encode(VIRTIO_GPIO_MSG_GET_VALUE, 0, 0)[..7],
        &[0u8; 9][..],
        &[][..],
    ] {
        let chain = g.request(&[body], &[2]);
        assert_eq!(rig.dev.handle_request(&chain, g.memory()), 2);
        assert_eq!(g.written(&chain), vec![VIRTIO_GPIO_STATUS_ERR, 0]);
    }
    // Room for the status only.
    let chain = g.request(&[&encode(VIRTIO_GPIO_MSG_GET_VALUE, 0, 0)], &[1]);
    assert_eq!(rig.dev.handle_request(&chain, g.memory()), 1);
    assert_eq!(g.written(&chain), vec![VIRTIO_GPIO_STATUS_ERR]);
    // Room for nothing.
    let chain = g.request(&[&encode(VIRTIO_GPIO_MSG_GET_VALUE, 0, 0)], &[0]);
    assert_eq!(rig.dev.handle_request(&chain, g.memory()), 0);
    // More room than needed: still exactly 2 bytes.
    let chain = g.request(&[&encode(VIRTIO_GPIO_MSG_GET_VALUE, 0, 0)], &[64]);
    assert_eq!(rig.dev.handle_request(&chain, g.memory()), 2);
    assert_eq!(&g.written(&chain)[..3], &[VIRTIO_GPIO_STATUS_OK, 0, 0xAA]);
}

#[test]
fn malformed_chains() {
    let mut rig = Rig::new(2);
    let req = encode(VIRTIO_GPIO_MSG_GET_VALUE, 0, 0);
    // The response readable instead of writable: nothing to answer in.
    let (mem, chain) = ChainBuilder::new().readable(&req).readable(&[0, 0]).build();
    assert_eq!(rig.dev.handle_request(&chain.unwrap(), &mem), 0);
    // No response descriptor at all.
    let (mem, chain) = ChainBuilder::new().readable(&req).build();
    assert_eq!(rig.dev.handle_request(&chain.unwrap(), &mem), 0);
    // A huge request.
    let (mem, chain) = ChainBuilder::new()
        .readable(&vec![0; 0x8000])
        .writable(2)
        .build();
    assert_eq!(rig.dev.handle_request(&chain.unwrap(), &mem), 2);
    // The request split over two descriptors, indirect: fine.
    let (mem, chain) = ChainBuilder::new()
        .readable(&req[..3])
        .readable(&req[3..])
        .writable(1)
        .writable(1)
        .build_indirect();
    let chain = chain.unwrap();
    assert_eq!(rig.dev.handle_request(&chain, &mem), 2);
    // Event buffers: short request, no status room.
    let (mem, chain) = ChainBuilder::new().readable(&[0]).writable(1).build();
    assert_eq!(rig.dev.handle_event_buffer(chain.unwrap(), &mem), Some(0));
    let (mem, chain) = ChainBuilder::new().readable(&[0, 0]).build();
    assert_eq!(rig.dev.handle_event_buffer(chain.unwrap(), &mem), Some(0));
    let (mem, chain) = ChainBuilder::new().readable(&[0, 0, 0]).writable(1).build();
    assert_eq!(rig.dev.handle_event_buffer(chain.unwrap(), &mem), Some(0));
    assert!(!rig.dev.is_unmasked(0));
}

#[test]
fn irq_type_needs_the_feature_and_a_valid_type() {
    let mut rig = Rig::new(2);
    rig.dev.set_irq_negotiated(false);
    rig.err(VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 0, IrqType::EdgeRising as u32);
    rig.dev.set_irq_negotiated(true);
    for bad in [5, 6, 7, 9, 16, u32::MAX] {
        rig.err(VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 0, bad);
    }
    rig.ok(VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 0, IrqType::EdgeRising as u32);
    assert_eq!(rig.dev.trigger(0), Some(IrqType::EdgeRising));
    // No interrupt on an output.
    rig.ok(VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 1, 0);
    rig.ok(VIRTIO_GPIO_MSG_SET_DIRECTION, 1, Direction::Out as u32);
    rig.err(VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 1, IrqType::LevelHigh as u32);
}

#[test]
fn event_buffer_before_irq_type_is_returned_invalid() {
    let mut rig = Rig::new(2);
    let (chain, result) = rig.post(1);
    assert_eq!(result, Some(1));
    assert_eq!(rig.status(&chain), VIRTIO_GPIO_IRQ_STATUS_INVALID);
    assert!(!rig.dev.is_unmasked(1));
    // Out of range: also returned invalid, with the exact length.
    let (chain, result) = rig.post(2);
    assert_eq!(result, Some(1));
    assert_eq!(rig.status(&chain), VIRTIO_GPIO_IRQ_STATUS_INVALID);
}

fn edge_case(trigger: IrqType, fires_on: &[(bool, bool)]) {
    let mut rig = Rig::new(2);
    rig.ok(VIRTIO_GPIO_MSG_SET_DIRECTION, 0, Direction::In as u32);
    rig.ok(VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 0, trigger as u32);
    let mut level = false;
    for &(to, fires) in fires_on {
        let (chain, result) = rig.post(0);
        assert_eq!(result, None, "{trigger:?}: held until an edge");
        assert!(rig.dev.is_unmasked(0));
        let fired = rig.drive(0, to);
        if fires {
            assert_eq!(fired, vec![(chain.head(), 1)], "{trigger:?} {level}->{to}");
            assert_eq!(rig.status(&chain), VIRTIO_GPIO_IRQ_STATUS_VALID);
        } else {
            assert!(fired.is_empty(), "{trigger:?} {level}->{to} must not fire");
            // Take the buffer back for the next round.
            rig.ok(VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 0, 0);
            assert_eq!(rig.status(&chain), VIRTIO_GPIO_IRQ_STATUS_INVALID);
            assert_eq!(
                rig.dev.take_fired().collect::<Vec<_>>(),
                vec![(chain.head(), 1)]
            );
            rig.ok(VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 0, trigger as u32);
        }
        level = to;
    }
}

#[test]
fn edge_rising() {
    edge_case(
        IrqType::EdgeRising,
        &[(true, true), (false, false), (false, false), (true, true)],
    );
}

#[test]
fn edge_falling() {
    edge_case(
        IrqType::EdgeFalling,
        &[(true, false), (false, true), (true, false), (true, false)],
    );
}

#[test]
fn edge_both() {
    edge_case(
        IrqType::EdgeBoth,
        &[(true, true), (false, true), (false, false), (true, true)],
    );
}

#[test]
fn edges_while_masked_are_latched_once() {
    let mut rig = Rig::new(1);
    rig.ok(VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 0, IrqType::EdgeBoth as u32);
    // Edges before the buffer comes: latched, and two count as one.
    assert!(rig.drive(0, true).is_empty());
    assert!(rig.drive(0, false).is_empty());
    let (chain, result) = rig.post(0);
    assert_eq!(result, Some(1));
    assert_eq!(rig.status(&chain), VIRTIO_GPIO_IRQ_STATUS_VALID);
    let (_, result) = rig.post(0);
    assert_eq!(result, None, "the latch was consumed");
}

#[test]
fn edges_before_the_irq_type_are_not_latched() {
    let mut rig = Rig::new(1);
    rig.world.drive(0, true).unwrap();
    rig.world.drive(0, false).unwrap();
    rig.ok(VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 0, IrqType::EdgeBoth as u32);
    assert!(rig.drive(0, false).is_empty());
    let (_, result) = rig.post(0);
    assert_eq!(result, None);
}

#[test]
fn level_high_fires_and_refires_while_held() {
    let mut rig = Rig::new(2);
    rig.ok(VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 1, IrqType::LevelHigh as u32);
    let (chain, result) = rig.post(1);
    assert_eq!(result, None, "low: masked until the level goes high");
    let fired = rig.drive(1, true);
    assert_eq!(fired, vec![(chain.head(), 1)]);
    assert_eq!(rig.status(&chain), VIRTIO_GPIO_IRQ_STATUS_VALID);
    // Re-armed while still high: fires again at once, every time.
    for _ in 0..3 {
        let (chain, result) = rig.post(1);
        assert_eq!(result, Some(1));
        assert_eq!(rig.status(&chain), VIRTIO_GPIO_IRQ_STATUS_VALID);
    }
    // Level gone: the buffer waits.
    assert!(rig.drive(1, false).is_empty());
    let (_, result) = rig.post(1);
    assert_eq!(result, None);
}

#[test]
fn level_low_fires_while_low_and_is_not_latched() {
    let mut rig = Rig::new(1);
    rig.world.drive(0, true).unwrap();
    rig.ok(VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 0, IrqType::LevelLow as u32);
    // A low pulse while masked is not remembered.
    assert!(rig.drive(0, false).is_empty());
    assert!(rig.drive(0, true).is_empty());
    let (chain, result) = rig.post(0);
    assert_eq!(result, None);
    let fired = rig.drive(0, false);
    assert_eq!(fired, vec![(chain.head(), 1)]);
    assert_eq!(rig.status(&chain), VIRTIO_GPIO_IRQ_STATUS_VALID);
    let (_, result) = rig.post(0);
    assert_eq!(result, Some(1), "still low: fires again");
}

#[test]
fn disabling_returns_the_held_buffer_invalid_and_drops_the_latch() {
    let mut rig = Rig::new(1);
    rig.ok(VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 0, IrqType::EdgeRising as u32);
    let (chain, result) = rig.post(0);
    assert_eq!(result, None);
    rig.ok(VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 0, IrqType::None as u32);
    let fired: Vec<_> = rig.dev.take_fired().collect();
    assert_eq!(fired, vec![(chain.head(), 1)]);
    assert_eq!(rig.status(&chain), VIRTIO_GPIO_IRQ_STATUS_INVALID);
    assert!(!rig.dev.is_unmasked(0));
    // Edge latched, then disabled and re-enabled: the latch is gone.
    rig.ok(VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 0, IrqType::EdgeRising as u32);
    assert!(rig.drive(0, true).is_empty());
    rig.ok(VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 0, IrqType::None as u32);
    rig.ok(VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 0, IrqType::EdgeRising as u32);
    assert_eq!(rig.post(0).1, None);
    // Disabled: edges are not reported at all any more.
    rig.ok(VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 0, IrqType::None as u32);
    let _ = rig.dev.take_fired().count();
    assert!(rig.drive(0, false).is_empty());
    assert!(rig.drive(0, true).is_empty());
}

#[test]
fn releasing_a_line_returns_its_buffer() {
    let mut rig = Rig::new(1);
    rig.ok(VIRTIO_GPIO_MSG_SET_DIRECTION, 0, Direction::In as u32);
    rig.ok(VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 0, IrqType::LevelHigh as u32);
    let (chain, _) = rig.post(0);
    rig.ok(VIRTIO_GPIO_MSG_SET_DIRECTION, 0, Direction::None as u32);
    assert_eq!(
        rig.dev.take_fired().collect::<Vec<_>>(),
        vec![(chain.head(), 1)]
    );
    assert_eq!(rig.status(&chain), VIRTIO_GPIO_IRQ_STATUS_INVALID);
    assert_eq!(rig.dev.trigger(0), Some(IrqType::None));
}

#[test]
fn a_second_buffer_for_a_line_is_returned() {
    let mut rig = Rig::new(1);
    rig.ok(VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 0, IrqType::EdgeFalling as u32);
    let (first, result) = rig.post(0);
    assert_eq!(result, None);
    let (second, result) = rig.post(0);
    assert_eq!(result, Some(1));
    assert_eq!(rig.status(&second), VIRTIO_GPIO_IRQ_STATUS_INVALID);
    rig.world.drive(0, true).unwrap();
    assert_eq!(rig.drive(0, false), vec![(first.head(), 1)]);
}

#[test]
fn stop_and_reset_forget_held_buffers() {
    let mut rig = Rig::new(2);
    rig.ok(VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 0, IrqType::EdgeRising as u32);
    rig.post(0);
    rig.dev.queue_stopped(EVENT_QUEUE);
    assert!(!rig.dev.is_unmasked(0));
    rig.post(0);
    rig.ok(VIRTIO_GPIO_MSG_SET_DIRECTION, 1, Direction::Out as u32);
    rig.dev.reset();
    assert!(!rig.dev.is_unmasked(0));
    assert_eq!(rig.dev.trigger(0), Some(IrqType::None));
    assert_eq!(
        rig.ok(VIRTIO_GPIO_MSG_GET_DIRECTION, 1, 0),
        Direction::In as u8
    );
    assert!(rig.drive(0, true).is_empty());
}

/// A chip whose every operation fails, as a yanked USB adapter would.
#[derive(Debug)]
struct Broken;

impl GpioBackend for Broken {
    fn num_lines(&self) -> u16 {
        2
    }
    fn line_names(&self) -> Vec<String> {
        Vec::new()
    }
    fn direction(&mut self, line: u16) -> Result<Direction> {
        Err(Error::Line {
            line,
            reason: "gone".into(),
        })
    }
    fn set_direction(&mut self, line: u16, _: Direction) -> Result<()> {
        Err(Error::Line {
            line,
            reason: "gone".into(),
        })
    }
    fn value(&mut self, line: u16) -> Result<bool> {
        Err(Error::Line {
            line,
            reason: "gone".into(),
        })
    }
    fn set_value(&mut self, line: u16, _: bool) -> Result<()> {
        Err(Error::Line {
            line,
            reason: "gone".into(),
        })
    }
    fn set_edges(&mut self, line: u16, _: Edges) -> Result<()> {
        Err(Error::Line {
            line,
            reason: "gone".into(),
        })
    }
    fn activate(&mut self, _: EventRegistry) -> Result<()> {
        Ok(())
    }
    fn read_events(&mut self, _: u16, _: &mut dyn FnMut(u16, Edge)) {}
    fn release_all(&mut self) {}
}

#[test]
fn host_failures_become_error_statuses() {
    let mut dev = GpioDevice::new(Broken);
    dev.set_irq_negotiated(true);
    // Unnamed lines still make a names block: one NUL each.
    assert_eq!(dev.names(), b"\0\0");
    let mut g = ChainBuilder::new();
    for (kind, value) in [
        (VIRTIO_GPIO_MSG_GET_DIRECTION, 0),
        (VIRTIO_GPIO_MSG_SET_DIRECTION, 2),
        (VIRTIO_GPIO_MSG_GET_VALUE, 0),
        (VIRTIO_GPIO_MSG_SET_VALUE, 1),
        (VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 4),
    ] {
        let chain = g.request(&[&encode(kind, 1, value)], &[2]);
        assert_eq!(dev.handle_request(&chain, g.memory()), 2);
        assert_eq!(
            g.written(&chain),
            vec![VIRTIO_GPIO_STATUS_ERR, 0],
            "request {kind}"
        );
    }
    assert_eq!(dev.trigger(1), Some(IrqType::None));
    // Linux queues the buffer even though enabling failed, and would
    // re-queue an INVALID one at once: it is held instead...
    let event = g.request(&[&1u16.to_le_bytes()], &[1]);
    assert_eq!(dev.handle_event_buffer(event.clone(), g.memory()), None);
    assert!(dev.is_unmasked(1));
    // ...until the driver disables the interrupt.
    let chain = g.request(&[&encode(VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 1, 0)], &[2]);
    assert_eq!(dev.handle_request(&chain, g.memory()), 2);
    assert_eq!(g.written(&chain), vec![VIRTIO_GPIO_STATUS_OK, 0]);
    assert_eq!(
        dev.take_fired().collect::<Vec<_>>(),
        vec![(event.head(), 1)]
    );
    assert_eq!(g.written(&event), vec![VIRTIO_GPIO_IRQ_STATUS_INVALID]);
    // After that, a buffer before SET_IRQ_TYPE is returned again.
    let event = g.request(&[&1u16.to_le_bytes()], &[1]);
    assert_eq!(dev.handle_event_buffer(event, g.memory()), Some(1));
}
