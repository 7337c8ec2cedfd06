// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Unit tests of the device: groups, replies and malformed requests,
//! through chains laid out by `mock::ChainBuilder`.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]
use std::sync::{Arc, Mutex};

use vhost_device_common::mock::{read_region, ChainBuilder};
use vm_memory::ByteValued;

use super::*;
use crate::backend::sim::{Eeprom, EepromModel, Lm75, SimBus};
use crate::backend::{I2cBus, SharedBus, TransferError};
use crate::protocol::{VirtioI2cOutHdr, VIRTIO_I2C_FLAGS_FAIL_NEXT, VIRTIO_I2C_FLAGS_M_RD};

const FN: u32 = VIRTIO_I2C_FLAGS_FAIL_NEXT;
const RD: u32 = VIRTIO_I2C_FLAGS_M_RD;

/// A host-like bus that records every transfer and fails on request.
struct Counting {
    log: Arc<Mutex<Vec<Vec<I2cMsg>>>>,
    fail_at: Option<usize>,
}

impl I2cBus for Counting {
    fn transfer(&mut self, msgs: &mut [I2cMsg]) -> Result<(), TransferError> {
        self.log.lock().unwrap().push(msgs.to_vec());
        for (i, m) in msgs.iter_mut().enumerate() {
            if self.fail_at == Some(i) {
                return Err(TransferError::new(i, "nack"));
            }
            m.buf.iter_mut().filter(|_| m.read).for_each(|b| *b = 0x5a);
        }
        Ok(())
    }
    fn describe(&self) -> String {
        "counting".into()
    }
}

type Log = Arc<Mutex<Vec<Vec<I2cMsg>>>>;

/// EEPROM (256 bytes) at 0x50, LM75 at 0x48, a recording bus at 0x20/0x21.
fn device(fail_at: Option<usize>) -> (I2cDevice, Log) {
    let mut sim = SimBus::new();
    sim.add(
        0x50,
        Box::new(Eeprom::new(EepromModel::from_size(256).unwrap())),
    )
    .unwrap();
    sim.add(0x48, Box::new(Lm75::new())).unwrap();
    let log: Log = Arc::default();
    let counting: SharedBus = Arc::new(Mutex::new(Counting {
        log: log.clone(),
        fail_at,
    }));
    let mut map = BusMap::new();
    assert!(map.add(Arc::new(Mutex::new(sim)), &[0x50, 0x48]));
    assert!(map.add(counting, &[0x20, 0x21]));
    (I2cDevice::new(map), log)
}

fn hdr(raw_addr: u16, flags: u32) -> Vec<u8> {
    let mut h = VirtioI2cOutHdr::new(0, flags);
    h.addr = raw_addr.into();
    h.as_slice().to_vec()
}

/// A request's chain; its reply lands in its writable buffers.
type Req = DescChain;

/// Lays out virtio-i2c requests in one guest memory, as a driver queues
/// them.
trait Requests {
    fn mem(&self) -> &GuestMem;
    fn req(&mut self, readable: &[Vec<u8>], writable: &[u32]) -> DescChain;
    fn write(&mut self, addr: u8, flags: u32, data: &[u8]) -> Req;
    fn read(&mut self, addr: u8, flags: u32, len: u32) -> Req;
    /// The status byte: the last writable one.
    fn status(&self, req: &Req) -> u8;
    /// A read's data: the writable bytes before the status.
    fn data(&self, req: &Req) -> Vec<u8>;
}

impl Requests for ChainBuilder {
    fn mem(&self) -> &GuestMem {
        self.memory()
    }
    fn req(&mut self, readable: &[Vec<u8>], writable: &[u32]) -> DescChain {
        let readable: Vec<&[u8]> = readable.iter().map(Vec::as_slice).collect();
        self.request(&readable, writable)
    }
    fn write(&mut self, addr: u8, flags: u32, data: &[u8]) -> Req {
        let mut rd = vec![hdr(u16::from(addr) << 1, flags)];
        if !data.is_empty() {
            rd.push(data.to_vec());
        }
        self.req(&rd, &[1])
    }
    fn read(&mut self, addr: u8, flags: u32, len: u32) -> Req {
        let writable: &[u32] = if len == 0 { &[1] } else { &[len, 1] };
        self.req(&[hdr(u16::from(addr) << 1, flags | RD)], writable)
    }
    fn status(&self, req: &Req) -> u8 {
        *self.written(req).last().unwrap()
    }
    fn data(&self, req: &Req) -> Vec<u8> {
        let mut data = self.written(req);
        data.pop();
        data
    }
}

/// Feeds the requests as one drain and returns the completions.
fn run(dev: &mut I2cDevice, ring: &ChainBuilder, reqs: &[&Req]) -> Vec<(u16, u32)> {
    let mut done = Vec::new();
    for r in reqs {
        dev.accept((*r).clone(), ring.mem(), &mut done);
    }
    dev.flush(ring.mem(), &mut done);
    done
}

#[test]
fn a_group_is_one_combined_transfer() {
    let (mut dev, log) = device(None);
    let mut ring = ChainBuilder::new();
    let w = ring.write(0x20, FN, &[0x10]);
    let r = ring.read(0x20, 0, 3);
    let done = run(&mut dev, &ring, &[&w, &r]);
    assert_eq!(done, vec![(w.head(), 1), (r.head(), 4)]);
    assert_eq!(ring.status(&w), VIRTIO_I2C_MSG_OK);
    assert_eq!(ring.status(&r), VIRTIO_I2C_MSG_OK);
    assert_eq!(ring.data(&r), [0x5a; 3]);
    let log = log.lock().unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(
        log[0],
        vec![I2cMsg::write(0x20, &[0x10]), I2cMsg::read(0x20, 3)]
    );
}

#[test]
fn requests_without_fail_next_are_separate_transfers() {
    let (mut dev, log) = device(None);
    let mut ring = ChainBuilder::new();
    let a = ring.write(0x20, 0, &[1]);
    let b = ring.write(0x21, 0, &[2]);
    run(&mut dev, &ring, &[&a, &b]);
    assert_eq!(log.lock().unwrap().len(), 2);
    assert_eq!(ring.status(&a), VIRTIO_I2C_MSG_OK);
    assert_eq!(ring.status(&b), VIRTIO_I2C_MSG_OK);
}

#[test]
fn a_failure_fails_the_rest_of_its_group_only() {
    let (mut dev, log) = device(Some(1));
    let mut ring = ChainBuilder::new();
    let a = ring.write(0x20, FN, &[1]);
    let b = ring.read(0x20, FN, 2);
    let c = ring.read(0x21, 0, 2);
    let d = ring.write(0x50, 0, &[0]);
    let done = run(&mut dev, &ring, &[&a, &b, &c, &d]);
    assert_eq!(ring.status(&a), VIRTIO_I2C_MSG_OK);
    assert_eq!(ring.status(&b), VIRTIO_I2C_MSG_ERR);
    assert_eq!(ring.status(&c), VIRTIO_I2C_MSG_ERR);
    // The next group is unaffected.
    assert_eq!(ring.status(&d), VIRTIO_I2C_MSG_OK);
    // A failed read returns zeros, never stale or partial data.
    assert_eq!(ring.data(&b), [0, 0]);
    assert_eq!(done[1], (b.head(), 3));
    assert_eq!(log.lock().unwrap().len(), 1);
}

#[test]
fn unknown_addresses_fail_without_host_io() {
    let (mut dev, log) = device(None);
    let mut ring = ChainBuilder::new();
    let lone = ring.read(0x33, 0, 1);
    let first = ring.write(0x34, FN, &[1]);
    let then = ring.write(0x20, 0, &[1]);
    run(&mut dev, &ring, &[&lone, &first, &then]);
    assert_eq!(ring.status(&lone), VIRTIO_I2C_MSG_ERR);
    assert_eq!(ring.status(&first), VIRTIO_I2C_MSG_ERR);
    assert_eq!(ring.status(&then), VIRTIO_I2C_MSG_ERR);
    assert!(log.lock().unwrap().is_empty());

    // An unknown address mid-group: what came before ran, the rest fails.
    let a = ring.write(0x20, FN, &[1]);
    let b = ring.read(0x33, FN, 1);
    let c = ring.read(0x20, 0, 1);
    run(&mut dev, &ring, &[&a, &b, &c]);
    assert_eq!(ring.status(&a), VIRTIO_I2C_MSG_OK);
    assert_eq!(ring.status(&b), VIRTIO_I2C_MSG_ERR);
    assert_eq!(ring.status(&c), VIRTIO_I2C_MSG_ERR);
    assert_eq!(*log.lock().unwrap(), vec![vec![I2cMsg::write(0x20, &[1])]]);
}

#[test]
fn zero_length_requests() {
    let (mut dev, log) = device(None);
    let mut ring = ChainBuilder::new();
    let w = ring.write(0x20, 0, &[]);
    let r = ring.read(0x21, 0, 0);
    let done = run(&mut dev, &ring, &[&w, &r]);
    assert_eq!(done, vec![(w.head(), 1), (r.head(), 1)]);
    assert_eq!(ring.status(&w), VIRTIO_I2C_MSG_OK);
    assert_eq!(ring.status(&r), VIRTIO_I2C_MSG_OK);
    assert_eq!(
        *log.lock().unwrap(),
        vec![vec![I2cMsg::write(0x20, &[])], vec![I2cMsg::read(0x21, 0)]]
    );
}

#[test]
fn eeprom_round_trip_and_lm75_through_the_device() {
    let (mut dev, _) = device(None);
    let mut ring = ChainBuilder::new();
    let w = ring.write(0x50, 0, &[0x10, 0xde, 0xad]);
    let set = ring.write(0x50, FN, &[0x10]);
    let get = ring.read(0x50, 0, 2);
    let reg = ring.write(0x48, FN, &[0]);
    let temp = ring.read(0x48, 0, 2);
    run(&mut dev, &ring, &[&w, &set, &get, &reg, &temp]);
    assert_eq!(ring.data(&get), [0xde, 0xad]);
    assert_eq!(ring.data(&temp), [0x19, 0x00]);
    for r in [&w, &set, &get, &reg, &temp] {
        assert_eq!(ring.status(r), VIRTIO_I2C_MSG_OK);
    }
}

#[test]
fn an_unterminated_group_runs_when_the_ring_is_empty() {
    let (mut dev, log) = device(None);
    let mut ring = ChainBuilder::new();
    let a = ring.write(0x20, FN, &[1]);
    let b = ring.read(0x20, FN, 1);
    let mut done = Vec::new();
    dev.accept(a.clone(), ring.mem(), &mut done);
    dev.accept(b.clone(), ring.mem(), &mut done);
    assert!(done.is_empty());
    assert_eq!(dev.pending(), 2);
    dev.flush(ring.mem(), &mut done);
    assert_eq!(done.len(), 2);
    assert_eq!(dev.pending(), 0);
    assert_eq!(ring.status(&b), VIRTIO_I2C_MSG_OK);
    assert_eq!(log.lock().unwrap()[0].len(), 2);
}

#[test]
fn stopping_the_queue_forgets_held_requests() {
    let (mut dev, log) = device(None);
    let mut ring = ChainBuilder::new();
    let a = ring.write(0x20, FN, &[1]);
    let mut done = Vec::new();
    dev.accept(a.clone(), ring.mem(), &mut done);
    dev.queue_stopped(0);
    dev.flush(ring.mem(), &mut done);
    assert!(done.is_empty());
    dev.accept(a.clone(), ring.mem(), &mut done);
    dev.reset();
    assert_eq!(dev.pending(), 0);
    assert!(log.lock().unwrap().is_empty());
}

#[test]
fn malformed_requests_get_an_error_status() {
    let (mut dev, log) = device(None);
    let mut ring = ChainBuilder::new();
    let h = hdr(0x20 << 1, 0);
    let cases: Vec<(Vec<Vec<u8>>, Vec<u32>, u32)> = vec![
        // Header cut short.
        (vec![h[..4].to_vec()], vec![1], 1),
        // Reserved flag bits.
        (vec![hdr(0x20 << 1, 1 << 5)], vec![1], 1),
        // Address bit 0 and the high byte must be zero.
        (vec![hdr((0x20 << 1) | 1, 0)], vec![1], 1),
        (vec![hdr(0x1_00 | (0x20 << 1), 0)], vec![1], 1),
        // 10-bit address form.
        (vec![hdr(0x78 << 1, 0)], vec![1], 1),
        // A read with a device-readable buffer where a writable one belongs.
        (vec![hdr(0x20 << 1, RD), vec![1, 2]], vec![1], 1),
        // A write with a device-writable buffer (zeroed, then the status).
        (vec![h.clone()], vec![4, 1], 5),
        // Huge lengths: the status only, reported as nothing written.
        (vec![hdr(0x20 << 1, RD)], vec![MAX_MSG_LEN as u32 + 2], 0),
        (vec![h.clone(), vec![0; MAX_MSG_LEN + 1]], vec![1], 1),
    ];
    for (readable, writable, used) in cases {
        let chain = ring.req(&readable, &writable);
        let mut done = Vec::new();
        dev.accept(chain.clone(), ring.mem(), &mut done);
        assert_eq!(
            done,
            vec![(chain.head(), used)],
            "{readable:?} {writable:?}"
        );
        assert_eq!(ring.status(&chain), VIRTIO_I2C_MSG_ERR);
    }
    assert!(log.lock().unwrap().is_empty());
}

#[test]
fn a_malformed_request_fails_the_rest_of_its_group() {
    let (mut dev, log) = device(None);
    let mut ring = ChainBuilder::new();
    let a = ring.write(0x20, FN, &[1]);
    let bad = ring.req(&[hdr(0x20 << 1, FN | RD), vec![9]], &[1]);
    let c = ring.read(0x20, 0, 1);
    let mut done = Vec::new();
    dev.accept(a.clone(), ring.mem(), &mut done);
    dev.accept(bad, ring.mem(), &mut done);
    dev.accept(c.clone(), ring.mem(), &mut done);
    assert_eq!(done.len(), 3);
    assert_eq!(ring.status(&a), VIRTIO_I2C_MSG_OK);
    assert_eq!(ring.status(&c), VIRTIO_I2C_MSG_ERR);
    assert_eq!(*log.lock().unwrap(), vec![vec![I2cMsg::write(0x20, &[1])]]);
}

#[test]
fn chains_without_a_status_byte_are_returned_empty() {
    let (mut dev, log) = device(None);
    let (mem, chain) = ChainBuilder::new().readable(&hdr(0x20 << 1, 0)).build();
    let chain = chain.unwrap();
    let mut done = Vec::new();
    dev.accept(chain, &mem, &mut done);
    assert_eq!(done, vec![(0, 0)]);
    // In a group it still fails what follows.
    let mut ring = ChainBuilder::new();
    let nostatus = ring.req(&[hdr(0x20 << 1, FN)], &[]);
    let next = ring.write(0x20, 0, &[1]);
    let done = {
        let mut done = Vec::new();
        dev.accept(nostatus, ring.mem(), &mut done);
        dev.accept(next.clone(), ring.mem(), &mut done);
        done
    };
    assert_eq!(done[0].1, 0);
    assert_eq!(ring.status(&next), VIRTIO_I2C_MSG_ERR);
    assert!(log.lock().unwrap().is_empty());
}

#[test]
fn chains_from_the_builder_direct_and_indirect() {
    let (mut dev, _) = device(None);
    let mut req = hdr(0x50 << 1, 0);
    req.extend([0x00, 0x11, 0x22]);
    let (mem, chain) = ChainBuilder::new().readable(&req).writable(1).build();
    let chain = chain.unwrap();
    let mut done = Vec::new();
    dev.accept(chain.clone(), &mem, &mut done);
    assert_eq!(done, vec![(0, 1)]);
    assert_eq!(read_region(&mem, chain.writable().get(0).unwrap()), [0]);

    // Header split over two descriptors, read buffer and status in one.
    let h = hdr(0x50 << 1, RD);
    let (mem, chain) = ChainBuilder::new()
        .readable(&h[..3])
        .readable(&h[3..])
        .writable(3)
        .build_indirect();
    let chain = chain.unwrap();
    let mut done = Vec::new();
    dev.accept(chain.clone(), &mem, &mut done);
    dev.flush(&mem, &mut done);
    assert_eq!(done, vec![(0, 3)]);
    // The pointer continued after the write: bytes 3 and 4 are blank.
    assert_eq!(
        read_region(&mem, chain.writable().get(0).unwrap()),
        [0xff, 0xff, 0]
    );
}

#[test]
fn a_driver_without_zero_length_support_is_refused() {
    let (mut dev, log) = device(None);
    assert_eq!(dev.features(), VIRTIO_I2C_F_ZERO_LENGTH_REQUEST);
    dev.set_acked_features(0);
    let mut ring = ChainBuilder::new();
    let a = ring.write(0x20, 0, &[1]);
    run(&mut dev, &ring, &[&a]);
    assert_eq!(ring.status(&a), VIRTIO_I2C_MSG_ERR);
    assert!(log.lock().unwrap().is_empty());
    dev.set_acked_features(VIRTIO_I2C_F_ZERO_LENGTH_REQUEST);
    run(&mut dev, &ring, &[&a]);
    assert_eq!(ring.status(&a), VIRTIO_I2C_MSG_OK);
}

#[test]
fn reused_buffers_carry_nothing_over() {
    let (mut dev, log) = device(None);
    let mut ring = ChainBuilder::new();
    let a = ring.write(0x20, FN, &[1, 2, 3]);
    let b = ring.read(0x20, 0, 4);
    run(&mut dev, &ring, &[&a, &b]);
    assert_eq!(ring.data(&b), [0x5a; 4]);
    // The same slots, shorter: no byte of the last group's shows.
    let c = ring.write(0x21, FN, &[9]);
    let d = ring.read(0x21, 0, 2);
    run(&mut dev, &ring, &[&c, &d]);
    assert_eq!(
        log.lock().unwrap()[1],
        vec![I2cMsg::write(0x21, &[9]), I2cMsg::read(0x21, 2)]
    );
    // A slot filled by an earlier group but not part of this one is
    // never replied with: the invalid request gets zeros and an error.
    let e = ring.read(0x20, FN, 1);
    let f = ring.read(0x33, 0, 2);
    run(&mut dev, &ring, &[&e, &f]);
    assert_eq!(ring.status(&e), VIRTIO_I2C_MSG_OK);
    assert_eq!(ring.status(&f), VIRTIO_I2C_MSG_ERR);
    assert_eq!(ring.data(&f), [0, 0]);
    assert_eq!(log.lock().unwrap()[2], vec![I2cMsg::read(0x20, 1)]);
    // The group's buffers stay allocated for the next one.
    assert!(dev.msgs[1].buf.capacity() >= 2);
}

#[test]
fn a_long_group_leaves_bounded_memory_behind() {
    let (mut dev, log) = device(None);
    let mut ring = ChainBuilder::new();
    let mut reqs: Vec<Req> = (0..KEEP_MSGS + 10)
        .map(|_| ring.read(0x20, FN, 1))
        .collect();
    reqs.push(ring.read(0x20, 0, KEEP_BUF as u32 + 1));
    let refs: Vec<&Req> = reqs.iter().collect();
    let done = run(&mut dev, &ring, &refs);
    assert_eq!(done.len(), KEEP_MSGS + 11);
    assert_eq!(log.lock().unwrap()[0].len(), KEEP_MSGS + 11);
    assert!(reqs.iter().all(|r| ring.status(r) == VIRTIO_I2C_MSG_OK));
    assert_eq!(dev.msgs.len(), KEEP_MSGS);
    assert!(dev.pending.capacity() <= KEEP_HELD);
    assert!(dev.msgs.iter().all(|m| m.buf.capacity() <= KEEP_BUF));

    // A refused request's data is not kept either.
    let big = ring.write(0x33, 0, &[7; KEEP_BUF + 1]);
    run(&mut dev, &ring, &[&big]);
    assert_eq!(ring.status(&big), VIRTIO_I2C_MSG_ERR);
    assert!(dev.msgs.iter().all(|m| m.buf.capacity() <= KEEP_BUF));
}

#[test]
fn groups_are_cut_at_the_limit() {
    let (mut dev, log) = device(None);
    let mut ring = ChainBuilder::new();
    let reqs: Vec<Req> = (0..MAX_GROUP + 1)
        .map(|_| ring.write(0x20, FN, &[]))
        .collect();
    let refs: Vec<&Req> = reqs.iter().collect();
    let done = run(&mut dev, &ring, &refs);
    assert_eq!(done.len(), MAX_GROUP + 1);
    let sizes: Vec<usize> = log.lock().unwrap().iter().map(Vec::len).collect();
    assert_eq!(sizes, [MAX_GROUP, 1]);
}

#[test]
fn one_queue() {
    assert_eq!(dev_queues(), 1);
}

fn dev_queues() -> usize {
    device(None).0.num_queues()
}
