// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A byte string read as what a driver and a frontend do to a device, for
//! fuzz targets: each device's target hands its input to [`run`] and the
//! harness checks the device's answers (see [`super::harness`]).
//!
//! [`fuzz`] takes one header byte first (bit 0: negotiate EVENT_IDX).\n//! The rest is a sequence of operations. An operation's first byte `op`
//! chooses what (`op & 7`) and on which queue (`(op >> 3) % queues`):
//!
//! | `op & 7` | operation | bytes that follow |
//! |---|---|---|
//! | 0 | post a chain, then kick (unless bit 5 of `shape`) | `shape`: readable buffers `shape & 3`, writable `(shape >> 2) & 3`, indirect if bit 4; per readable buffer a le16 length and its bytes; per writable buffer a le16 length |
//! | 1 | kick | |
//! | 2 | run the handlers of ready host fds | |
//! | 3 | stop the queue (GET_VRING_BASE) and set it up again | |
//! | 4 | reset the device and set every queue up again | |
//! | 5 | GET_CONFIG | offset, size (one byte each) |
//! | 6 | SET_CONFIG | offset, length (one byte each), then the bytes |
//! | 7 | make a head the device holds available again, then kick | which held head (one byte) |
//!
//! A truncated operation uses what is left (a short buffer, a zero length).
//! At the end every queue is kicked once more and host fds are served, and
//! the queues in [`Rules::answer_at_once`] must have used every chain.

use std::cell::RefCell;

use super::harness::{Buffer, DeviceHarness, SpareMemory};
use crate::device::VirtioDevice;

thread_local! {
    /// The last input's guest memory, zeroed and reused by the next one.
    static SPARE: RefCell<Option<SpareMemory>> = const { RefCell::new(None) };
}

/// What a device promises beyond the harness's own checks.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rules<'a> {
    /// Queues whose every chain is used in the kick that brought it
    /// (request/response queues), so none may be left at the end.
    pub answer_at_once: &'a [usize],
}

/// Reads bytes off the front of the input.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    fn le16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn take(&mut self, len: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        head
    }
}

/// Runs the operations `data` encodes on `harness`.
pub fn run<D: VirtioDevice>(harness: &mut DeviceHarness<D>, data: &[u8], rules: &Rules<'_>) {
    let queues = harness.num_queues().max(1);
    let mut input = Input(data);
    while !input.0.is_empty() {
        let op = input.byte();
        let queue = usize::from(op >> 3) % queues;
        match op & 7 {
            0 => post(harness, queue, &mut input),
            1 => harness.kick(queue),
            2 => {
                harness.pump();
            }
            3 => harness.restart_queue(queue),
            4 => harness.reset(),
            5 => {
                let offset = u32::from(input.byte());
                let size = u32::from(input.byte());
                harness.get_config(offset, size);
            }
            6 => {
                let offset = u32::from(input.byte());
                let len = usize::from(input.byte());
                harness.set_config(offset, input.take(len));
            }
            _ => {
                let pick = usize::from(input.byte());
                if let Some(head) = harness.held_head(queue, pick) {
                    harness.publish(queue, head);
                    harness.kick(queue);
                }
            }
        }
    }
    for queue in 0..harness.num_queues() {
        harness.kick(queue);
    }
    harness.pump();
    for &queue in rules.answer_at_once {
        harness.assert_all_used(queue);
    }
}

fn post<D: VirtioDevice>(harness: &mut DeviceHarness<D>, queue: usize, input: &mut Input<'_>) {
    let shape = input.byte();
    let mut buffers = Vec::new();
    for _ in 0..shape & 3 {
        let len = usize::from(input.le16());
        buffers.push(Buffer::Readable(input.take(len)));
    }
    for _ in 0..(shape >> 2) & 3 {
        buffers.push(Buffer::Writable(u32::from(input.le16())));
    }
    if harness.post(queue, &buffers, shape & 0x10 != 0).is_some() && shape & 0x20 == 0 {
        harness.kick(queue);
    }
}

/// A fuzz target's body: `device` behind a fresh harness (EVENT_IDX if bit
/// 0 of the first byte is set), then the rest of `data` as operations.
/// The harness reuses the guest memory of the previous call on this
/// thread, zeroed (see [`DeviceHarness::with_memory`]): nothing else
/// carries over, so an input does alone what it did in a run.
pub fn fuzz<D: VirtioDevice>(device: D, data: &[u8], rules: &Rules<'_>) {
    let Some((&header, ops)) = data.split_first() else {
        return;
    };
    let spare = SPARE.with_borrow_mut(Option::take);
    let mut harness = DeviceHarness::with_memory(device, header & 1 != 0, spare)
        .unwrap_or_else(|e| panic!("the harness cannot set up the device: {e}"));
    harness.mark_unwritten(false);
    run(&mut harness, ops, rules);
    let spare = harness.into_memory();
    SPARE.with_borrow_mut(|slot| *slot = Some(spare));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::echo::Echo;

    /// Each operation of the table once, on the echo device, so that the
    /// decoding the fuzz targets rely on is itself tested; then a program
    /// cut off in the middle of an operation.
    #[test]
    fn every_operation_decodes_and_runs() {
        #[rustfmt::skip]
        let program = [
            1, // EVENT_IDX
            0, 0b0000_0101, 4, 0, b'p', b'i', b'n', b'g', 16, 0, // post 1 readable + 1 writable, kick
            0, 0b0001_0101, 4, 0, b'h', b'o', b'l', b'd', 8, 0,  // indirect, held by the echo device
            0, 0b0010_0101, 2, 0, b'h', b'i', 4, 0,               // posted without a kick
            1,                                                    // kick
            2,                                                    // serve host fds
            7, 0,                                                 // republish the held head
            3,                                                    // stop and restart the queue
            5, 0, 8,                                              // GET_CONFIG
            6, 4, 2, 0xaa, 0xbb,                                  // SET_CONFIG
            4,                                                    // reset
            0, 0b0000_0101, 2, 0, b'o', b'k', 2, 0,               // served after the reset
            0, 0b0000_0011, 0xff,                                 // truncated length
        ];
        fuzz(Echo::new(0), &program, &Rules::default());
    }

    /// A request queue must answer what it was given: the rule holds for
    /// the echo device's ordinary requests, and empty input is no program.
    #[test]
    fn answered_queues_are_checked_and_empty_input_is_nothing() {
        let rules = Rules {
            answer_at_once: &[0],
        };
        fuzz(Echo::new(1), &[0, 0, 0b0000_0101, 1, 0, b'x', 1, 0], &rules);
        fuzz(Echo::new(1), &[], &rules);
    }
}
