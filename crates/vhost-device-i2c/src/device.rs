// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The virtio-i2c device (virtio device ID 34): request decoding, grouping
//! and replies.
//!
//! Each descriptor chain is one request: an 8-byte out header (`addr`,
//! padding, `flags`), an optional buffer (device-readable for a write,
//! device-writable for a read, absent for a zero-length request), and a
//! one-byte status the device writes last.
//!
//! Requests linked by `VIRTIO_I2C_FLAGS_FAIL_NEXT` form a group: one
//! combined transfer, a repeated START between messages and one STOP. Each
//! request gets its own status. When one fails, it and everything after it
//! in its group get `VIRTIO_I2C_MSG_ERR`; the ones before it succeeded.
//!
//! A group ends at the first request without FAIL_NEXT. If the available
//! ring runs dry before that, the requests at hand are run as the group:
//! Linux queues every message of one `i2c_transfer()` before it kicks, so
//! a group is always complete within one drain, except when the driver
//! could not queue them all, and then it kicks anyway and waits for what it
//! did queue. Holding those requests would hang it.

use std::time::{Duration, Instant};

use log::{debug, warn};
use vhost_device_common::{ChainError, DescChain, DeviceResult, GuestMem, Queues, VirtioDevice};

use crate::backend::{BusMap, I2cMsg, MAX_MSG_LEN};

/// Virtio device ID of an I2C adapter.
pub const VIRTIO_ID_I2C_ADAPTER: u32 = 34;
/// Feature bit 0: zero-length requests and the M_RD flag. Mandatory.
pub const VIRTIO_I2C_F_ZERO_LENGTH_REQUEST: u64 = 1 << 0;
/// Request flag: fail the next request if this one fails (group link).
pub const VIRTIO_I2C_FLAGS_FAIL_NEXT: u32 = 1 << 0;
/// Request flag: a read.
pub const VIRTIO_I2C_FLAGS_M_RD: u32 = 1 << 1;
/// Status: success.
pub const VIRTIO_I2C_MSG_OK: u8 = 0;
/// Status: failure.
pub const VIRTIO_I2C_MSG_ERR: u8 = 1;
/// Size of `struct virtio_i2c_out_hdr`.
pub const OUT_HDR_LEN: usize = 8;

/// The longest group the device holds. A driver can never have more
/// requests outstanding than its queue has entries, so this is only a
/// guard against a broken one.
const MAX_GROUP: usize = 1024;

/// Decodes the `addr` field: `A6..A0` in bits 7..1, everything else zero.
/// The 10-bit form (`11110 A9 A8` in bits 7..1) is not supported.
pub fn decode_addr(raw: u16) -> Result<u8, String> {
    if raw & 0xff01 != 0 {
        return Err(format!("address field {raw:#06x} is not a 7-bit address"));
    }
    // Bits 7..1 shifted down: at most 0x7f.
    let addr = u8::try_from(raw >> 1).unwrap_or(u8::MAX);
    if (0x78..=0x7b).contains(&addr) {
        return Err(format!("address field {raw:#06x} is a 10-bit address"));
    }
    Ok(addr)
}

/// A request held until the rest of its group arrives.
#[derive(Debug)]
struct Held {
    chain: DescChain,
    /// The chain has a byte where the status goes.
    has_status: bool,
}

/// Logs at most a few lines a second, so a misbehaving guest cannot flood
/// the host's log.
#[derive(Debug)]
struct LogLimiter {
    window: Instant,
    count: u32,
    suppressed: u32,
}

impl LogLimiter {
    const PER_WINDOW: u32 = 10;
    const WINDOW: Duration = Duration::from_secs(5);

    fn new() -> Self {
        LogLimiter {
            window: Instant::now(),
            count: 0,
            suppressed: 0,
        }
    }

    fn warn(&mut self, message: impl FnOnce() -> String) {
        if self.window.elapsed() >= Self::WINDOW {
            if self.suppressed > 0 {
                warn!("{} similar messages suppressed", self.suppressed);
            }
            self.window = Instant::now();
            self.count = 0;
            self.suppressed = 0;
        }
        if self.count < Self::PER_WINDOW {
            self.count += 1;
            warn!("{}", message());
        } else {
            self.suppressed += 1;
        }
    }
}

/// How many held requests' room is kept between groups; more is freed, so
/// that one long group does not pin its memory for the device's lifetime.
const KEEP_HELD: usize = 64;
/// How many message slots are kept between groups.
const KEEP_MSGS: usize = 64;
/// Message buffers up to this size are kept between groups. It covers SMBus
/// blocks and the chunks `at24` reads and writes; a larger transfer costs
/// an allocation, which is small beside copying its data.
const KEEP_BUF: usize = 512;
/// Completions kept room for between drains.
const KEEP_DONE: usize = 1024;

/// The virtio-i2c device of one guest.
///
/// Every buffer of the request path lives here and is cleared, not freed,
/// between groups: a group of one request, the common case, allocates
/// nothing and is run straight from the chain it came in without being
/// held.
#[derive(Debug)]
pub struct I2cDevice {
    bus: BusMap,
    /// The requests of an unfinished group, in order.
    pending: Vec<Held>,
    /// Message slots: the first `msg_count` are the valid requests of the
    /// current group, in order; the rest keep their buffers for later.
    msgs: Vec<I2cMsg>,
    msg_count: usize,
    /// A request of the current group was invalid: it and the rest of the
    /// group fail, so no further message is taken.
    invalid: bool,
    /// Completions of one `process_queue`, kept for its allocation.
    done: Vec<(u16, u32)>,
    /// The driver did not accept ZERO_LENGTH_REQUEST: the spec says to
    /// reject it, so every request fails.
    refused: bool,
    log: LogLimiter,
}

impl I2cDevice {
    /// A device whose guest sees the targets of `bus`.
    pub fn new(bus: BusMap) -> Self {
        I2cDevice {
            bus,
            pending: Vec::new(),
            msgs: Vec::new(),
            msg_count: 0,
            invalid: false,
            done: Vec::new(),
            refused: false,
            log: LogLimiter::new(),
        }
    }

    /// The guest's bus.
    pub fn bus(&self) -> &BusMap {
        &self.bus
    }

    /// Number of requests held in an unfinished group.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Decodes a request into the next message slot, which counts only if
    /// the request is valid and its group still is. Returns whether the
    /// request has FAIL_NEXT set and whether it has a status byte.
    fn decode(&mut self, chain: &DescChain, mem: &GuestMem) -> (bool, bool) {
        let has_status = chain.writable().total_len() >= 1;
        let mut fail_next = false;
        if self.msgs.len() <= self.msg_count {
            self.msgs.push(I2cMsg::default());
        }
        let parsed = match self.msgs.get_mut(self.msg_count) {
            Some(slot) => parse_msg(&self.bus, chain, mem, slot, &mut fail_next),
            // msg_count never passes msgs.len(), so a slot was just made.
            None => Err("no message slot".into()),
        };
        // The missing status is the reason given even when there are others.
        let parsed = if has_status {
            parsed
        } else {
            Err("the chain has no status byte".into())
        };
        match parsed {
            Ok(()) if !self.invalid => self.msg_count += 1,
            Ok(()) => {}
            Err(e) => {
                // Only the first error of a group is worth reporting: the
                // rest follow from it.
                if !self.invalid {
                    if e.starts_with("no target") {
                        debug!("{e}");
                    } else {
                        self.log.warn(|| format!("invalid i2c request: {e}"));
                    }
                }
                self.invalid = true;
            }
        }
        (fail_next, has_status)
    }

    /// Takes one popped request. Completed chains (head, used length) are
    /// appended to `done`.
    pub fn accept(&mut self, chain: DescChain, mem: &GuestMem, done: &mut Vec<(u16, u32)>) {
        let (fail_next, has_status) = self.decode(&chain, mem);
        if fail_next && self.pending.len() + 1 < MAX_GROUP {
            self.pending.push(Held { chain, has_status });
        } else {
            self.run_group(Some((&chain, has_status)), mem, done);
        }
    }

    /// The available ring is empty: runs an unterminated group as it is
    /// (see the module documentation).
    pub fn flush(&mut self, mem: &GuestMem, done: &mut Vec<(u16, u32)>) {
        if !self.pending.is_empty() {
            debug!(
                "running a group of {} requests whose last has FAIL_NEXT set",
                self.pending.len()
            );
            self.run_group(None, mem, done);
        }
    }

    /// Runs the held requests and then `last`, the one that ended the group
    /// (none when the ring ran dry first), and replies to each.
    fn run_group(
        &mut self,
        last: Option<(&DescChain, bool)>,
        mem: &GuestMem,
        done: &mut Vec<(u16, u32)>,
    ) {
        let count = self.msg_count;
        let msgs = self.msgs.get_mut(..count).unwrap_or_default();
        let completed = if msgs.is_empty() || self.refused {
            0
        } else {
            match self.bus.transfer(msgs) {
                Ok(()) => count,
                Err(e) => {
                    self.log.warn(|| {
                        format!("i2c transfer {msgs:?} failed after {}: {e}", e.completed)
                    });
                    // Slots past the group hold stale data: never reply with them.
                    e.completed.min(count)
                }
            }
        };
        let msgs = self.msgs.get(..completed).unwrap_or_default();
        let held = self.pending.iter().map(|h| (&h.chain, h.has_status));
        for (i, (chain, has_status)) in held.chain(last).enumerate() {
            done.push((chain.head(), reply(chain, mem, has_status, msgs.get(i))));
        }
        self.end_group();
    }

    /// Forgets the current group, keeping a bounded amount of its memory.
    fn end_group(&mut self) {
        self.pending.clear();
        if self.pending.capacity() > KEEP_HELD {
            self.pending.shrink_to(KEEP_HELD);
        }
        // The slot after the group's messages was filled too when a request
        // was refused.
        for msg in self.msgs.iter_mut().take(self.msg_count + 1) {
            if msg.buf.capacity() > KEEP_BUF {
                msg.buf = Vec::new();
            }
        }
        self.msgs.truncate(KEEP_MSGS);
        self.msg_count = 0;
        self.invalid = false;
    }
}

/// Decodes the request of `chain` into `slot`, reading a write's data into
/// the slot's buffer.
fn parse_msg(
    bus: &BusMap,
    chain: &DescChain,
    mem: &GuestMem,
    slot: &mut I2cMsg,
    fail_next: &mut bool,
) -> Result<(), String> {
    let mut reader = chain.reader(mem);
    let mut hdr = [0u8; OUT_HDR_LEN];
    reader
        .read_exact(&mut hdr)
        .map_err(|e| format!("out header: {e}"))?;
    let [a0, a1, _, _, f0, f1, f2, f3] = hdr;
    let flags = u32::from_le_bytes([f0, f1, f2, f3]);
    *fail_next = flags & VIRTIO_I2C_FLAGS_FAIL_NEXT != 0;
    if flags & !(VIRTIO_I2C_FLAGS_FAIL_NEXT | VIRTIO_I2C_FLAGS_M_RD) != 0 {
        return Err(format!("reserved flag bits set: {flags:#x}"));
    }
    let addr = decode_addr(u16::from_le_bytes([a0, a1]))?;
    let read = flags & VIRTIO_I2C_FLAGS_M_RD != 0;
    let writable = chain.writable().total_len();
    if read {
        if reader.available() != 0 {
            return Err(format!(
                "read request with {} device-readable bytes after the header",
                reader.available()
            ));
        }
        let len = writable.saturating_sub(1);
        if len > MAX_MSG_LEN {
            return Err(format!("read of {len} bytes exceeds {MAX_MSG_LEN}"));
        }
        slot.reuse(addr, true, len);
    } else {
        if writable > 1 {
            return Err(format!(
                "write request with {} device-writable bytes before the status",
                writable - 1
            ));
        }
        let len = reader.available();
        if len > MAX_MSG_LEN {
            let e = ChainError::TooLarge {
                len,
                limit: MAX_MSG_LEN,
            };
            return Err(format!("write buffer: {e}"));
        }
        reader
            .read_exact(slot.reuse(addr, false, len))
            .map_err(|e| format!("write buffer: {e}"))?;
    }
    if !bus.contains(addr) {
        // Not an error of the guest's making worth a warning: probing
        // (i2cdetect) asks every address.
        return Err(format!("no target at {addr:#04x} for this guest"));
    }
    Ok(())
}

/// Writes the data of a successful read and the status; returns the used
/// length.
///
/// The used length must not claim bytes that were not written, counting
/// from the start of the writable part. After an error the data area is
/// zeroed so that the length can cover the status byte at its end; for a
/// data area too large to be worth zeroing, the status alone is written
/// and the length is 0 (a device may write more than it reports).
fn reply(chain: &DescChain, mem: &GuestMem, has_status: bool, ok: Option<&I2cMsg>) -> u32 {
    if !has_status {
        return 0;
    }
    let mut writer = chain.writer(mem);
    let Ok(mut status) = writer.split_tail(1) else {
        return 0;
    };
    let code = match ok {
        // write_all writes all or nothing.
        Some(msg) if msg.read && writer.write_all(&msg.buf).is_err() => VIRTIO_I2C_MSG_ERR,
        Some(_) => VIRTIO_I2C_MSG_OK,
        None => VIRTIO_I2C_MSG_ERR,
    };
    if code == VIRTIO_I2C_MSG_ERR {
        let room = writer.available();
        if room > MAX_MSG_LEN || writer.write_zeros(room).is_err() {
            let _ = status.write_obj(code);
            return 0;
        }
    }
    if status.write_obj(code).is_err() {
        return 0;
    }
    writer.used_len().saturating_add(status.used_len())
}

impl VirtioDevice for I2cDevice {
    fn num_queues(&self) -> usize {
        1
    }

    fn features(&self) -> u64 {
        VIRTIO_I2C_F_ZERO_LENGTH_REQUEST
    }

    fn set_acked_features(&mut self, features: u64) {
        self.refused = features & VIRTIO_I2C_F_ZERO_LENGTH_REQUEST == 0;
        if self.refused {
            warn!("the driver did not accept ZERO_LENGTH_REQUEST: every request will fail");
        }
    }

    fn process_queue(&mut self, queues: &mut Queues<'_>, index: usize) -> DeviceResult {
        let Some(mut queue) = queues.get(index) else {
            return Ok(());
        };
        let mut done = std::mem::take(&mut self.done);
        queue.drain(|chain, mem| {
            self.accept(chain, mem, &mut done);
            None
        });
        self.flush(queue.memory(), &mut done);
        queue.complete_all(done.iter().copied());
        done.clear();
        if done.capacity() > KEEP_DONE {
            done.shrink_to(KEEP_DONE);
        }
        self.done = done;
        Ok(())
    }

    fn queue_stopped(&mut self, _index: usize) {
        self.end_group();
    }

    fn reset(&mut self) {
        self.end_group();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use std::sync::{Arc, Mutex};

    use vhost_device_common::mock::{read_region, ChainBuilder};
    use vhost_device_common::Region;
    use vm_memory::{Bytes, GuestAddress};

    use super::*;
    use crate::backend::sim::{Eeprom, EepromModel, Lm75, SimBus};
    use crate::backend::{I2cBus, SharedBus, TransferError};

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
        let mut h = raw_addr.to_le_bytes().to_vec();
        h.extend([0, 0]);
        h.extend(flags.to_le_bytes());
        h
    }

    /// Requests laid out in one guest memory, as a driver would queue them.
    struct Ring {
        builder: ChainBuilder,
        next: u16,
    }

    /// A request's chain and where its reply lands.
    struct Req {
        chain: DescChain,
        buf: Option<Region>,
        status: Option<Region>,
    }

    impl Ring {
        fn new() -> Self {
            Ring {
                builder: ChainBuilder::new(),
                next: 0,
            }
        }
        fn mem(&self) -> &GuestMem {
            self.builder.memory()
        }
        fn region(&mut self, data: &[u8]) -> Region {
            let addr = self.builder.scratch(data.len());
            self.builder
                .memory()
                .write_slice(data, GuestAddress(addr))
                .unwrap();
            Region {
                addr: GuestAddress(addr),
                len: data.len() as u32,
            }
        }
        fn raw(&mut self, readable: &[Vec<u8>], writable: &[u32]) -> (DescChain, Vec<Region>) {
            let rd: Vec<Region> = readable.iter().map(|d| self.region(d)).collect();
            let wr: Vec<Region> = writable
                .iter()
                .map(|&n| self.region(&vec![0xaa; n as usize]))
                .collect();
            self.next += 1;
            (DescChain::from_regions(self.next, &rd, &wr), wr)
        }
        fn write(&mut self, addr: u8, flags: u32, data: &[u8]) -> Req {
            let mut rd = vec![hdr(u16::from(addr) << 1, flags)];
            if !data.is_empty() {
                rd.push(data.to_vec());
            }
            let (chain, wr) = self.raw(&rd, &[1]);
            Req {
                chain,
                buf: None,
                status: wr.first().copied(),
            }
        }
        fn read(&mut self, addr: u8, flags: u32, len: u32) -> Req {
            let writable: &[u32] = if len == 0 { &[1] } else { &[len, 1] };
            let (chain, wr) = self.raw(&[hdr(u16::from(addr) << 1, flags | RD)], writable);
            Req {
                chain,
                buf: if len == 0 { None } else { wr.first().copied() },
                status: wr.last().copied(),
            }
        }
        fn status(&self, req: &Req) -> u8 {
            read_region(self.mem(), req.status.as_ref().unwrap())[0]
        }
        fn data(&self, req: &Req) -> Vec<u8> {
            read_region(self.mem(), req.buf.as_ref().unwrap())
        }
    }

    /// Feeds the requests as one drain and returns the completions.
    fn run(dev: &mut I2cDevice, ring: &Ring, reqs: &[&Req]) -> Vec<(u16, u32)> {
        let mut done = Vec::new();
        for r in reqs {
            dev.accept(r.chain.clone(), ring.mem(), &mut done);
        }
        dev.flush(ring.mem(), &mut done);
        done
    }

    #[test]
    fn a_group_is_one_combined_transfer() {
        let (mut dev, log) = device(None);
        let mut ring = Ring::new();
        let w = ring.write(0x20, FN, &[0x10]);
        let r = ring.read(0x20, 0, 3);
        let done = run(&mut dev, &ring, &[&w, &r]);
        assert_eq!(done, vec![(w.chain.head(), 1), (r.chain.head(), 4)]);
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
        let mut ring = Ring::new();
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
        let mut ring = Ring::new();
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
        assert_eq!(done[1], (b.chain.head(), 3));
        assert_eq!(log.lock().unwrap().len(), 1);
    }

    #[test]
    fn unknown_addresses_fail_without_host_io() {
        let (mut dev, log) = device(None);
        let mut ring = Ring::new();
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
        let mut ring = Ring::new();
        let w = ring.write(0x20, 0, &[]);
        let r = ring.read(0x21, 0, 0);
        let done = run(&mut dev, &ring, &[&w, &r]);
        assert_eq!(done, vec![(w.chain.head(), 1), (r.chain.head(), 1)]);
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
        let mut ring = Ring::new();
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
        let mut ring = Ring::new();
        let a = ring.write(0x20, FN, &[1]);
        let b = ring.read(0x20, FN, 1);
        let mut done = Vec::new();
        dev.accept(a.chain.clone(), ring.mem(), &mut done);
        dev.accept(b.chain.clone(), ring.mem(), &mut done);
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
        let mut ring = Ring::new();
        let a = ring.write(0x20, FN, &[1]);
        let mut done = Vec::new();
        dev.accept(a.chain.clone(), ring.mem(), &mut done);
        dev.queue_stopped(0);
        dev.flush(ring.mem(), &mut done);
        assert!(done.is_empty());
        dev.accept(a.chain.clone(), ring.mem(), &mut done);
        dev.reset();
        assert_eq!(dev.pending(), 0);
        assert!(log.lock().unwrap().is_empty());
    }

    #[test]
    fn malformed_requests_get_an_error_status() {
        let (mut dev, log) = device(None);
        let mut ring = Ring::new();
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
            let (chain, wr) = ring.raw(&readable, &writable);
            let mut done = Vec::new();
            dev.accept(chain.clone(), ring.mem(), &mut done);
            assert_eq!(
                done,
                vec![(chain.head(), used)],
                "{readable:?} {writable:?}"
            );
            let status = read_region(ring.mem(), wr.last().unwrap());
            assert_eq!(*status.last().unwrap(), VIRTIO_I2C_MSG_ERR);
        }
        assert!(log.lock().unwrap().is_empty());
    }

    #[test]
    fn a_malformed_request_fails_the_rest_of_its_group() {
        let (mut dev, log) = device(None);
        let mut ring = Ring::new();
        let a = ring.write(0x20, FN, &[1]);
        let (bad, _) = ring.raw(&[hdr(0x20 << 1, FN | RD), vec![9]], &[1]);
        let c = ring.read(0x20, 0, 1);
        let mut done = Vec::new();
        dev.accept(a.chain.clone(), ring.mem(), &mut done);
        dev.accept(bad, ring.mem(), &mut done);
        dev.accept(c.chain.clone(), ring.mem(), &mut done);
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
        let mut ring = Ring::new();
        let (nostatus, _) = ring.raw(&[hdr(0x20 << 1, FN)], &[]);
        let next = ring.write(0x20, 0, &[1]);
        let done = {
            let mut done = Vec::new();
            dev.accept(nostatus, ring.mem(), &mut done);
            dev.accept(next.chain.clone(), ring.mem(), &mut done);
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
        let mut ring = Ring::new();
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
        let mut ring = Ring::new();
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
        let mut ring = Ring::new();
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
        let mut ring = Ring::new();
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
    fn address_decoding() {
        assert_eq!(decode_addr(0x50 << 1), Ok(0x50));
        decode_addr(0xa1).unwrap_err();
        decode_addr(0x0100).unwrap_err();
        decode_addr(0x7b << 1).unwrap_err();
        assert_eq!(decode_addr(0x7c << 1), Ok(0x7c));
        assert_eq!(dev_queues(), 1);
    }

    fn dev_queues() -> usize {
        device(None).0.num_queues()
    }

    #[test]
    fn the_log_limiter_suppresses_floods() {
        let mut limiter = LogLimiter::new();
        for _ in 0..50 {
            limiter.warn(String::new);
        }
        assert_eq!(limiter.count, LogLimiter::PER_WINDOW);
        assert_eq!(limiter.suppressed, 50 - LogLimiter::PER_WINDOW);
    }
}
