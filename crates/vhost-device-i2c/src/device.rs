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

use std::mem::size_of;

use log::{debug, warn};
use vhost_device_common::{
    DescChain, DeviceResult, EventRegistry, EventSet, GuestMem, Queue, Queues, RateLimited,
    VirtioDevice,
};

use crate::backend::{BusMap, I2cMsg, TransferError, MAX_MSG_LEN};
use crate::error::Error;
use crate::protocol::{
    VirtioI2cInHdr, VirtioI2cOutHdr, VIRTIO_I2C_F_ZERO_LENGTH_REQUEST, VIRTIO_I2C_MSG_ERR,
    VIRTIO_I2C_MSG_OK,
};
use crate::transfer::{Job, Taken, Transfers};

/// The longest group the device holds. A driver can never have more
/// requests outstanding than its queue has entries, so this is only a
/// guard against a broken one.
const MAX_GROUP: usize = 1024;

/// A request held until the rest of its group arrives.
#[derive(Debug)]
struct Held {
    chain: DescChain,
    /// The chain has a byte where the status goes.
    has_status: bool,
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
/// The event token of the transfer thread's eventfd.
const TRANSFER_DONE: u16 = 0;
/// How many times in a row the transfer thread may die (with no job coming
/// back in between) and be started again. Past that the host adapters are
/// refused until the next connection: an adapter that panics on every
/// transfer must not cost a thread per request.
const MAX_RESTARTS: u32 = 8;

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
    /// The transfer thread, for a bus with host adapters (started when a
    /// frontend connects).
    offload: Option<Transfers>,
    /// A job is out on the transfer thread: no request is taken until it
    /// comes back.
    busy: bool,
    /// The requests of the group out on the transfer thread, in order.
    waiting: Vec<Held>,
    /// Bumped when the queue stops or the device resets, so that a job sent
    /// before answers nothing.
    generation: u64,
    /// Times in a row the transfer thread died.
    deaths: u32,
    /// The transfer thread died too often: groups that reach a host adapter
    /// fail at once, until the next connection.
    adapters_lost: bool,
    log: RateLimited,
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
            offload: None,
            busy: false,
            waiting: Vec::new(),
            generation: 0,
            deaths: 0,
            adapters_lost: false,
            log: RateLimited::default(),
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
            None => Err(Error::NoStatus),
        };
        // The missing status is the reason given even when there are others.
        let parsed = if has_status {
            parsed
        } else {
            Err(Error::NoStatus)
        };
        match parsed {
            Ok(()) if !self.invalid => self.msg_count += 1,
            Ok(()) => {}
            Err(e) => {
                // Only the first error of a group is worth reporting: the
                // rest follow from it.
                if !self.invalid {
                    if let Error::NoTarget(_) = e {
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
        } else if self.offload.is_none() {
            self.run_group(Some((&chain, has_status)), mem, done);
        } else {
            self.pending.push(Held { chain, has_status });
            self.run_held(mem, done);
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
            self.run_held(mem, done);
        }
    }

    /// Runs the group held in `pending`: on the transfer thread if it
    /// reaches a host adapter, in place otherwise. Kept out of the path of
    /// a bus with simulated chips only, which never holds a lone request.
    #[inline(never)]
    fn run_held(&mut self, mem: &GuestMem, done: &mut Vec<(u16, u32)>) {
        let msgs = self.msgs.get(..self.msg_count).unwrap_or_default();
        if self.offload.is_some() && !self.refused && self.bus.blocks(msgs) {
            self.send_group(mem, done);
        } else {
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
        let completed =
            if msgs.is_empty() || self.refused || (self.adapters_lost && self.bus.blocks(msgs)) {
                0
            } else {
                match self.bus.transfer(msgs) {
                    Ok(()) => count,
                    Err(e) => {
                        // Slots past the group hold stale data: never reply with them.
                        let completed = e.completed.min(count);
                        let n = e.completed;
                        let e = Error::Transfer(e);
                        self.log.warn(|| format!("{msgs:?} failed after {n}: {e}"));
                        completed
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

    /// How many of the group's `count` messages completed, logging a
    /// transfer's failure.
    fn settle(&self, count: usize, result: Result<(), TransferError>) -> usize {
        match result {
            Ok(()) => count,
            Err(e) => {
                // Slots past the group hold stale data: never reply with them.
                let n = e.completed;
                let msgs = self.msgs.get(..count).unwrap_or_default();
                let e = Error::Transfer(e);
                self.log.warn(|| format!("{msgs:?} failed after {n}: {e}"));
                n.min(count)
            }
        }
    }

    /// Hands the group (its requests all in `pending`) to the transfer
    /// thread. If the thread is gone, the group fails at once.
    fn send_group(&mut self, mem: &GuestMem, done: &mut Vec<(u16, u32)>) {
        let Some(offload) = &self.offload else {
            return;
        };
        let job = Job {
            msgs: std::mem::take(&mut self.msgs),
            count: self.msg_count,
            result: Ok(()),
            generation: self.generation,
        };
        match offload.submit(job) {
            Ok(()) => {
                self.busy = true;
                std::mem::swap(&mut self.waiting, &mut self.pending);
                self.msg_count = 0;
                self.invalid = false;
            }
            Err(job) => {
                // Dead before the worker heard of it: the group fails.
                self.msgs = job.msgs;
                self.msg_count = 0;
                self.transfer_thread_died(self.pending.len());
                self.run_group(None, mem, done);
            }
        }
    }

    /// The transfer thread died (a panic in an adapter's transfer): the
    /// group it had, `lost` requests, is gone with it. Starts another
    /// thread, unless it died too often in a row; then host adapters are
    /// refused (the group fails) until the next connection.
    fn transfer_thread_died(&mut self, lost: usize) {
        self.busy = false;
        self.deaths = self.deaths.saturating_add(1);
        let deaths = self.deaths;
        let restarted = match &mut self.offload {
            Some(offload) if deaths <= MAX_RESTARTS => offload.restart().map_err(|e| e.to_string()),
            Some(_) => Err(format!("it died {deaths} times in a row")),
            None => return,
        };
        if let Err(why) = &restarted {
            self.offload = None;
            self.adapters_lost = true;
            warn!("i2c: no transfer thread ({why}): transfers to host adapters fail until the next connection");
        }
        self.log.warn(|| {
            format!(
                "i2c: the transfer thread died (a panic in an adapter's transfer): \
                 its group of {lost} request(s) fails{}",
                if restarted.is_ok() {
                    "; started again"
                } else {
                    ""
                }
            )
        });
    }

    /// Answers the group of a transfer thread that died: every request
    /// fails.
    fn fail_waiting(&mut self, mem: &GuestMem, done: &mut Vec<(u16, u32)>) {
        for h in &self.waiting {
            done.push((h.chain.head(), reply(&h.chain, mem, h.has_status, None)));
        }
        self.waiting.clear();
        self.end_group();
    }

    /// Answers the group the transfer thread sent back.
    fn finish_job(&mut self, job: Job, mem: &GuestMem, done: &mut Vec<(u16, u32)>) {
        self.busy = false;
        self.deaths = 0;
        self.msgs = job.msgs;
        if job.generation != self.generation {
            // Its chains were forgotten with the queue.
            return;
        }
        let completed = self.settle(job.count, job.result);
        let msgs = self.msgs.get(..completed).unwrap_or_default();
        for (i, h) in self.waiting.iter().enumerate() {
            let len = reply(&h.chain, mem, h.has_status, msgs.get(i));
            done.push((h.chain.head(), len));
        }
        self.waiting.clear();
        self.msg_count = job.count;
        self.end_group();
    }

    /// Takes requests from `queue` until the ring is empty or a group is
    /// out on the transfer thread; then the rest stay in the ring (with
    /// kicks off) until the job comes back.
    ///
    /// A round after the first that pops nothing ends it: the queue gave up
    /// its turn (it kicks itself to come back) or is broken, and asking
    /// again would spin.
    fn take_requests(&mut self, queue: &mut Queue<'_>, done: &mut Vec<(u16, u32)>) {
        let mem = queue.memory();
        let mut first = true;
        loop {
            queue.set_kicks(false);
            let mut took = false;
            while !self.busy {
                let Some(chain) = queue.pop() else {
                    break;
                };
                took = true;
                self.accept(chain, mem, done);
            }
            if !self.busy {
                self.flush(mem, done);
            }
            if self.busy || (!took && !first) || !queue.set_kicks(true) {
                break;
            }
            first = false;
        }
    }

    /// Whether a group is out on the transfer thread.
    pub fn transfer_pending(&self) -> bool {
        self.busy
    }

    /// Forgets the group out on the transfer thread, if any: its chains
    /// will not be completed (the queue stopped or the device reset).
    fn forget_waiting(&mut self) {
        self.waiting.clear();
        self.generation = self.generation.wrapping_add(1);
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
) -> Result<(), Error> {
    let mut reader = chain.reader(mem);
    let raw = VirtioI2cOutHdr::read(&mut reader)?;
    *fail_next = raw.fail_next();
    let header = raw.decode()?;
    let writable = chain.writable().total_len();
    if header.read {
        if reader.available() != 0 {
            return Err(Error::ReadWithData(reader.available()));
        }
        let len = writable.saturating_sub(1);
        if len > MAX_MSG_LEN {
            return Err(Error::TooLong {
                what: "read",
                len,
                limit: MAX_MSG_LEN,
            });
        }
        slot.reuse(header.addr, true, len);
    } else {
        if writable > 1 {
            return Err(Error::WriteWithRoom(writable - 1));
        }
        let len = reader.available();
        if len > MAX_MSG_LEN {
            return Err(Error::TooLong {
                what: "write",
                len,
                limit: MAX_MSG_LEN,
            });
        }
        reader
            .read_exact(slot.reuse(header.addr, false, len))
            .map_err(Error::WriteBuffer)?;
    }
    if !bus.contains(header.addr) {
        return Err(Error::NoTarget(header.addr));
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
    let Ok(mut status) = writer.split_tail(size_of::<VirtioI2cInHdr>()) else {
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
    if status.write_obj(VirtioI2cInHdr { status: code }).is_err() {
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

    fn activate(&mut self, events: EventRegistry) -> DeviceResult {
        self.offload = None;
        self.busy = false;
        self.deaths = 0;
        self.adapters_lost = false;
        self.forget_waiting();
        if !self.bus.has_blocking() {
            return Ok(());
        }
        match Transfers::start(self.bus.clone()) {
            Ok(t) => match events.register(t.ready(), EventSet::IN, TRANSFER_DONE) {
                Ok(()) => self.offload = Some(t),
                Err(e) => warn!("i2c: transfers run on the worker: cannot watch the thread: {e}"),
            },
            Err(e) => warn!("i2c: transfers run on the worker: no transfer thread: {e}"),
        }
        Ok(())
    }

    fn process_queue(&mut self, queues: &mut Queues<'_>, index: usize) -> DeviceResult {
        let Some(mut queue) = queues.get(index) else {
            return Ok(());
        };
        if self.offload.is_some() {
            self.process_offloaded(&mut queue);
            return Ok(());
        }
        let mut done = std::mem::take(&mut self.done);
        queue.drain(|chain, mem| {
            self.accept(chain, mem, &mut done);
            None
        });
        self.flush(queue.memory(), &mut done);
        self.complete(&mut queue, done);
        Ok(())
    }

    fn handle_event(
        &mut self,
        queues: &mut Queues<'_>,
        token: u16,
        _events: EventSet,
    ) -> DeviceResult {
        let taken = match &self.offload {
            Some(t) if token == TRANSFER_DONE => t.take(),
            _ => Taken::Nothing,
        };
        let job = match taken {
            Taken::Nothing => return Ok(()),
            Taken::Job(job) => Some(job),
            Taken::Died => {
                self.transfer_thread_died(self.waiting.len());
                None
            }
        };
        let mut done = std::mem::take(&mut self.done);
        match queues.get(0) {
            Some(mut queue) => {
                match job {
                    Some(job) => self.finish_job(job, queue.memory(), &mut done),
                    None => self.fail_waiting(queue.memory(), &mut done),
                }
                self.take_requests(&mut queue, &mut done);
                self.complete(&mut queue, done);
            }
            None => {
                // The queue is gone: so are the chains.
                self.busy = false;
                if let Some(job) = job {
                    self.msgs = job.msgs;
                }
                self.forget_waiting();
                self.done = done;
            }
        }
        Ok(())
    }

    fn queue_stopped(&mut self, _index: usize) {
        self.forget_waiting();
    }

    fn reset(&mut self) {
        self.forget_waiting();
    }
}

impl I2cDevice {
    /// A kick on a device with a transfer thread: takes requests unless a
    /// group is out.
    #[inline(never)]
    fn process_offloaded(&mut self, queue: &mut Queue<'_>) {
        if self.busy {
            return;
        }
        let mut done = std::mem::take(&mut self.done);
        self.take_requests(queue, &mut done);
        self.complete(queue, done);
    }

    /// Completes `done` on `queue` and keeps its room for the next time.
    fn complete(&mut self, queue: &mut Queue<'_>, mut done: Vec<(u16, u32)>) {
        queue.complete_all(done.iter().copied());
        done.clear();
        if done.capacity() > KEEP_DONE {
            done.shrink_to(KEEP_DONE);
        }
        self.done = done;
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod offload_tests;
