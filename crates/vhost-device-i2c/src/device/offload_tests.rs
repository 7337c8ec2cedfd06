// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Transfers on host adapters run on the transfer thread: a blocked one
//! holds neither the worker nor another guest, and replies keep their order.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use vhost_device_common::mock::harness::{Buffer, DeviceHarness};
use vm_memory::ByteValued;

use super::*;
use crate::backend::sim::{Lm75, SimBus};
use crate::backend::{I2cBus, SharedBus, TransferError};
use crate::protocol::{VirtioI2cOutHdr, VIRTIO_I2C_FLAGS_FAIL_NEXT, VIRTIO_I2C_FLAGS_M_RD};

/// The test opens it; a transfer waits until then (at most 10 s, which
/// counts as a failure).
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    cond: Condvar,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.cond.notify_all();
    }
}

/// A host adapter that records transfers and waits on a gate; and panics
/// instead, while `panics` is above 0 (counting it down), as a buggy
/// adapter would.
struct SlowAdapter {
    gate: Arc<Gate>,
    log: Arc<Mutex<Vec<I2cMsg>>>,
    timed_out: Arc<Mutex<bool>>,
    panics: Arc<AtomicUsize>,
}

impl I2cBus for SlowAdapter {
    fn transfer(&mut self, msgs: &mut [I2cMsg]) -> Result<(), TransferError> {
        let left = self.panics.load(Ordering::SeqCst);
        if left > 0 {
            self.panics.store(left - 1, Ordering::SeqCst);
            panic!("the test's adapter panics mid-transfer");
        }
        let open = self.gate.open.lock().unwrap();
        let (open, wait) = self
            .gate
            .cond
            .wait_timeout_while(open, Duration::from_secs(10), |open| !*open)
            .unwrap();
        drop(open);
        if wait.timed_out() {
            *self.timed_out.lock().unwrap() = true;
        }
        let mut log = self.log.lock().unwrap();
        for m in msgs.iter_mut() {
            if m.read {
                m.buf.fill(0xa5);
            }
            log.push(m.clone());
        }
        Ok(())
    }
    fn describe(&self) -> String {
        "slow adapter".into()
    }
    fn may_block(&self) -> bool {
        true
    }
}

struct Adapter {
    gate: Arc<Gate>,
    log: Arc<Mutex<Vec<I2cMsg>>>,
    timed_out: Arc<Mutex<bool>>,
    panics: Arc<AtomicUsize>,
    bus: SharedBus,
}

fn adapter() -> Adapter {
    let gate = Arc::new(Gate::default());
    let log = Arc::new(Mutex::new(Vec::new()));
    let timed_out = Arc::new(Mutex::new(false));
    let panics = Arc::new(AtomicUsize::new(0));
    let bus: SharedBus = Arc::new(Mutex::new(SlowAdapter {
        gate: gate.clone(),
        log: log.clone(),
        timed_out: timed_out.clone(),
        panics: panics.clone(),
    }));
    Adapter {
        gate,
        log,
        timed_out,
        panics,
        bus,
    }
}

/// A guest's device with `adapter` at 0x20 and a simulated LM75 at 0x48.
fn guest(adapter: &Adapter) -> DeviceHarness<I2cDevice> {
    guest_with(adapter, true)
}

fn guest_with(adapter: &Adapter, event_idx: bool) -> DeviceHarness<I2cDevice> {
    let mut sim = SimBus::new();
    sim.add(0x48, Box::new(Lm75::new())).unwrap();
    let mut map = BusMap::new();
    assert!(map.add(Arc::new(Mutex::new(sim)), &[0x48]));
    assert!(map.add(adapter.bus.clone(), &[0x20]));
    DeviceHarness::new(I2cDevice::new(map), event_idx).unwrap()
}

fn write(h: &mut DeviceHarness<I2cDevice>, addr: u8, data: &[u8]) -> u16 {
    write_flags(h, addr, data, 0)
}

fn write_flags(h: &mut DeviceHarness<I2cDevice>, addr: u8, data: &[u8], flags: u32) -> u16 {
    let hdr = VirtioI2cOutHdr::new(addr, flags);
    let bufs = [
        Buffer::Readable(hdr.as_slice()),
        Buffer::Readable(data),
        Buffer::Writable(1),
    ];
    h.post(0, &bufs, false).unwrap()
}

fn read(h: &mut DeviceHarness<I2cDevice>, addr: u8, len: u32) -> u16 {
    let hdr = VirtioI2cOutHdr::new(addr, VIRTIO_I2C_FLAGS_M_RD);
    let bufs = [Buffer::Readable(hdr.as_slice()), Buffer::Writable(len + 1)];
    h.post(0, &bufs, false).unwrap()
}

/// Runs the device's host events until `count` chains are used in all
/// (bounded: 10 s).
fn wait_completed(h: &mut DeviceHarness<I2cDevice>, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.completed() < count {
        assert!(
            Instant::now() < deadline,
            "{} of {count} used",
            h.completed()
        );
        h.pump();
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn pending(h: &DeviceHarness<I2cDevice>) -> bool {
    h.backend().device().transfer_pending()
}

#[test]
fn a_blocked_transfer_holds_neither_the_worker_nor_another_guest() {
    let slow = adapter();
    let other = adapter();
    other.gate.open();
    let mut a = guest(&slow);
    let mut b = guest(&other);

    write(&mut a, 0x20, &[1]);
    read(&mut a, 0x20, 2);
    write(&mut a, 0x48, &[0]);
    // The worker returns with the first group out on the thread; the rest
    // stay in the ring.
    a.kick(0);
    assert!(pending(&a));
    assert_eq!(a.completed(), 0);
    assert_eq!(a.outstanding(0), 3);
    // The device lock is free: the control path answers.
    assert!(a.get_config(0, 4).is_empty());
    a.kick(0);
    assert!(slow.log.lock().unwrap().is_empty());

    // Another guest, on another adapter, is served meanwhile.
    read(&mut b, 0x20, 1);
    b.kick(0);
    wait_completed(&mut b, 1);
    assert_eq!(other.log.lock().unwrap().len(), 1);
    assert!(pending(&a));

    // Released, the groups run one after another, in the guest's order.
    slow.gate.open();
    wait_completed(&mut a, 3);
    assert!(!pending(&a));
    let log = slow.log.lock().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0], I2cMsg::write(0x20, &[1]));
    assert!(log[1].read && log[1].buf == [0xa5, 0xa5]);
    assert!(!*slow.timed_out.lock().unwrap());
    assert!(!*other.timed_out.lock().unwrap());
    a.assert_all_used(0);
}

#[test]
fn replies_come_back_in_order() {
    in_order(true);
    in_order(false);
}

fn in_order(event_idx: bool) {
    let slow = adapter();
    let mut a = guest_with(&slow, event_idx);
    let heads: Vec<u16> = (0..4u8).map(|i| write(&mut a, 0x20, &[i])).collect();
    a.kick(0);
    for (done, _) in heads.iter().enumerate() {
        assert_eq!(a.completed(), done);
        // One group is out (once the gate is open, it may have run already);
        // the others wait in the ring.
        assert!(pending(&a));
        let ran = slow.log.lock().unwrap().len();
        assert!(
            ran == done || ran == done + 1,
            "{ran} transfers after {done}"
        );
        if done == 0 {
            slow.gate.open();
        }
        wait_completed(&mut a, done + 1);
    }
    let log = slow.log.lock().unwrap();
    let data: Vec<u8> = log.iter().map(|m| m.buf[0]).collect();
    assert_eq!(data, [0, 1, 2, 3]);
    a.assert_all_used(0);
}

#[test]
fn a_stopped_queue_forgets_the_group_out() {
    let slow = adapter();
    let mut a = guest(&slow);
    write(&mut a, 0x20, &[7]);
    a.kick(0);
    assert!(pending(&a));
    a.restart_queue(0);
    slow.gate.open();
    // The job comes back and answers nothing (the harness fails on a used
    // head the driver does not owe), then the device takes requests again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pending(&a) {
        assert!(Instant::now() < deadline);
        a.pump();
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(a.completed(), 0);
    read(&mut a, 0x20, 1);
    a.kick(0);
    wait_completed(&mut a, 1);
    assert_eq!(slow.log.lock().unwrap().len(), 2);
}

#[test]
fn simulated_targets_complete_on_the_worker() {
    let slow = adapter();
    let mut a = guest(&slow);
    read(&mut a, 0x48, 2);
    a.kick(0);
    assert_eq!(a.completed(), 1);
    assert!(!pending(&a));
}

#[test]
fn a_transfer_thread_that_panics_fails_its_group_and_is_started_again() {
    let buggy = adapter();
    buggy.gate.open();
    buggy.panics.store(1, Ordering::SeqCst);
    let mut a = guest(&buggy);
    a.record_answers();
    // A group of two, which the thread dies on; then a lone write and a
    // read of the simulated chip, which wait in the ring meanwhile.
    let first = write_flags(&mut a, 0x20, &[1], VIRTIO_I2C_FLAGS_FAIL_NEXT);
    let second = write(&mut a, 0x20, &[2]);
    let after = write(&mut a, 0x20, &[3]);
    let sim = read(&mut a, 0x48, 2);
    a.kick(0);
    wait_completed(&mut a, 4);
    assert!(!pending(&a));
    let status = |a: &DeviceHarness<I2cDevice>, head| a.answer_byte(0, head).unwrap();
    assert_eq!(status(&a, first), VIRTIO_I2C_MSG_ERR);
    assert_eq!(status(&a, second), VIRTIO_I2C_MSG_ERR);
    // The thread was started again: the next group reached the adapter.
    assert_eq!(status(&a, after), VIRTIO_I2C_MSG_OK);
    assert_eq!(status(&a, sim), VIRTIO_I2C_MSG_OK);
    assert_eq!(*buggy.log.lock().unwrap(), [I2cMsg::write(0x20, &[3])]);
    a.assert_all_used(0);
    // And it keeps working.
    let again = read(&mut a, 0x20, 1);
    a.kick(0);
    wait_completed(&mut a, 5);
    assert_eq!(status(&a, again), VIRTIO_I2C_MSG_OK);
}

#[test]
fn an_adapter_that_panics_every_time_is_refused_after_a_few_restarts() {
    let buggy = adapter();
    buggy.gate.open();
    buggy.panics.store(1000, Ordering::SeqCst);
    let mut a = guest(&buggy);
    a.record_answers();
    let rounds = MAX_RESTARTS as usize + 5;
    for round in 1..=rounds {
        let head = write(&mut a, 0x20, &[round as u8]);
        a.kick(0);
        wait_completed(&mut a, round);
        assert_eq!(a.answer_byte(0, head), Some(VIRTIO_I2C_MSG_ERR));
    }
    // One thread per death up to the limit, then none: the rest failed
    // without reaching the adapter.
    let died = 1000 - buggy.panics.load(Ordering::SeqCst);
    assert_eq!(died, MAX_RESTARTS as usize + 1);
    assert!(buggy.log.lock().unwrap().is_empty());
    // The simulated chip still answers.
    let head = read(&mut a, 0x48, 2);
    a.kick(0);
    wait_completed(&mut a, rounds + 1);
    assert_eq!(a.answer_byte(0, head), Some(VIRTIO_I2C_MSG_OK));
    a.assert_all_used(0);
}
