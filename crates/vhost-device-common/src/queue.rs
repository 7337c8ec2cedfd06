// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The queues a device is handed in a callback, and the EVENT_IDX
//! disable/drain/enable/re-check loop over them.
//!
//! Every chain a device sees was popped here: checked against the queue's
//! in-flight set (a head the device still holds is not handed out twice) and
//! validated by [`DescChain::parse`]. A driver that publishes an `avail.idx`
//! more than a ring ahead breaks the queue (see the `inflight` module): it is
//! logged once and the queue gives nothing more until it is stopped or the
//! device is reset, so the worker goes back to sleep instead of spinning.

use std::num::Wrapping;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use log::{debug, warn};
use vhost_user_backend::VringT;
use virtio_queue::{Queue as QueueState, QueueT};
use vm_memory::GuestAddress;

use crate::chain::DescChain;
use crate::inflight::QueueTrack;
use crate::ratelimit::RateLimited;
use crate::ring::Rings;
use crate::vring::{GuestMem, Vring};

/// The queues of one device, as handed to it in a callback.
pub struct Queues<'a> {
    vrings: &'a [Vring],
    mem: &'a GuestMem,
    notify_on_empty: bool,
    busy_poll: Duration,
    tracks: &'a [QueueTrack],
    log: &'a RateLimited,
}

impl<'a> Queues<'a> {
    /// The queues `vrings` over `mem`; `tracks` holds one record per vring.
    pub(crate) fn new(
        vrings: &'a [Vring],
        mem: &'a GuestMem,
        tracks: &'a [QueueTrack],
        notify_on_empty: bool,
        busy_poll: Duration,
        log: &'a RateLimited,
    ) -> Self {
        Queues {
            vrings,
            mem,
            notify_on_empty,
            busy_poll,
            tracks,
            log,
        }
    }

    /// Guest memory, for writing into chains the device held.
    pub fn memory(&self) -> &'a GuestMem {
        self.mem
    }

    /// Number of queues.
    pub fn len(&self) -> usize {
        self.vrings.len()
    }

    /// Whether the device has no queues.
    pub fn is_empty(&self) -> bool {
        self.vrings.is_empty()
    }

    /// Queue `index`, if it exists and the frontend set it up.
    pub fn get(&mut self, index: usize) -> Option<Queue<'a>> {
        let vring = self.vrings.get(index)?;
        let track = self.tracks.get(index)?;
        let (rings, next_avail) = {
            let state = vring.get_ref();
            let queue = state.get_queue();
            if !queue.ready() {
                return None;
            }
            if rings_overlap(queue) && track.set_broken() {
                warn!(
                    "queue {index}: the used ring at {:#x} overlaps the available ring at {:#x}; \
                     the queue is stopped until the device is reset",
                    queue.used_ring(),
                    queue.avail_ring()
                );
            }
            let rings = Rings::map(self.mem, queue);
            (rings, queue.next_avail())
        };
        Some(Queue {
            vring,
            mem: self.mem,
            index,
            notify_on_empty: self.notify_on_empty,
            busy_poll: self.busy_poll,
            rings,
            avail_seen: next_avail,
            used_window: None,
            slow_used: false,
            track,
            log: self.log,
            taken: 0,
            yielded: false,
        })
    }
}

/// Whether the used ring of `queue` overlaps its available ring. Each
/// completion would then publish new buffers: a driver (the guest chooses the
/// ring addresses) could make one kick keep the worker busy for ever.
fn rings_overlap(queue: &QueueState) -> bool {
    let entries = u64::from(queue.size());
    // Both trailing event fields counted, with or without EVENT_IDX.
    let avail = (queue.avail_ring(), 6 + 2 * entries);
    let used = (queue.used_ring(), 6 + 8 * entries);
    let end = |(start, len): (u64, u64)| start.saturating_add(len);
    avail.0 < end(used) && used.0 < end(avail)
}

/// How many rounds of a full ring one [`Queue::drain`] handles before it
/// lets the worker serve its other events: see [`Queue::drain`].
const DRAIN_ROUNDS: usize = 4;

/// One ready queue. Completions are signalled to the driver when the `Queue`
/// is dropped (or on [`Queue::notify`]), once for a whole batch, and only if
/// the driver asked for it (EVENT_IDX).
pub struct Queue<'a> {
    vring: &'a Vring,
    mem: &'a GuestMem,
    index: usize,
    notify_on_empty: bool,
    busy_poll: Duration,
    /// The rings as host slices; `None` if they could not be mapped, and
    /// then virtio-queue's generic path is used.
    rings: Option<Rings<'a>>,
    /// The last `avail.idx` read. Entries between `next_avail` and it are
    /// known to be published, so a batch reads the index once, not per pop.
    avail_seen: u16,
    /// The used-ring positions this `Queue` filled since the last
    /// notification check, `[first, end)`: the window EVENT_IDX is tested
    /// against.
    used_window: Option<(u16, u16)>,
    /// A completion went through virtio-queue's path since the last check.
    slow_used: bool,
    /// The heads the device holds, and whether the queue is broken.
    track: &'a QueueTrack,
    log: &'a RateLimited,
    /// Descriptors this callback walked, valid or not (a head counts at
    /// least one, a malformed chain the whole queue size its walk may have
    /// cost).
    taken: usize,
    /// Whether this callback took its share (see [`Queue::pop`]) and kicked
    /// the queue to be called again.
    yielded: bool,
}

/// What one locked step of [`Queue::drain`] found.
enum Step {
    /// The next chain, for the device.
    Chain(DescChain),
    /// The ring is empty; if kicks were re-enabled in the same step, whether
    /// more chains arrived meanwhile.
    Empty(Option<Result<bool, String>>),
    /// The queue is broken, or this callback took its share: stop, and
    /// leave kicks as they are.
    Broken,
}

/// What the available ring holds next.
enum Avail {
    /// This head.
    Head(u16),
    /// Nothing new.
    Empty,
    /// An `avail.idx` more than a ring ahead of `next_avail`.
    Bogus { idx: u16, next: u16 },
    /// Rings that are not all in guest memory (virtio-queue's path only).
    Invalid,
}

impl<'a> Queue<'a> {
    /// The queue's index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Guest memory.
    pub fn memory(&self) -> &'a GuestMem {
        self.mem
    }

    /// Pops the next valid chain. A malformed chain is logged, returned to
    /// the driver with a used length of 0, and skipped.
    ///
    /// One callback walks at most four times the queue size of
    /// descriptors (a head counts at least one); then the queue kicks
    /// itself and gives nothing more, so the worker serves its other events (the stop event, other
    /// queues, the device's host fds) and lets go of the device lock before
    /// it comes back for the rest. A driver that keeps the ring full loses
    /// nothing; a frontend that aliases the used ring onto the available
    /// ring (two memory regions over the same pages), so that every
    /// completion publishes another chain, cannot hold the device for ever
    /// with one kick.
    pub fn pop(&mut self) -> Option<DescChain> {
        let vring = self.vring;
        let mut state = vring.get_mut();
        self.pop_locked(state.get_queue_mut())
    }

    /// Puts a chain in the used ring with `len` bytes written.
    pub fn complete(&mut self, head: u16, len: u32) {
        let vring = self.vring;
        let mut state = vring.get_mut();
        self.complete_locked(state.get_queue_mut(), head, len);
    }

    /// Puts several chains in the used ring, `(head, len)` each, in order,
    /// taking the queue's lock once for all of them.
    pub fn complete_all(&mut self, done: impl IntoIterator<Item = (u16, u32)>) {
        let vring = self.vring;
        let mut state = vring.get_mut();
        let queue = state.get_queue_mut();
        for (head, len) in done {
            self.complete_locked(queue, head, len);
        }
    }

    /// One step of [`Self::drain`] under one lock of the queue: completes
    /// `done`, pops the next chain, and when there is none and `enable` is
    /// set, re-enables kicks. A request costs one lock instead of three
    /// (pop, complete, and the pop or re-enable that ends the batch); the
    /// lock is still never held while the device's closure runs, so that
    /// closure may take this queue again.
    fn step(&mut self, done: Option<(u16, u32)>, enable: bool) -> Step {
        let vring = self.vring;
        let mut state = vring.get_mut();
        let queue = state.get_queue_mut();
        if let Some((head, len)) = done {
            self.complete_locked(queue, head, len);
        }
        if let Some(chain) = self.pop_locked(queue) {
            return Step::Chain(chain);
        }
        if self.track.is_broken() || self.yielded {
            return Step::Broken;
        }
        Step::Empty(enable.then(|| self.set_notification_locked(queue, true)))
    }

    fn pop_locked(&mut self, queue: &mut QueueState) -> Option<DescChain> {
        let budget = usize::from(queue.size()).max(1) * DRAIN_ROUNDS;
        loop {
            if self.track.is_broken() || self.yielded {
                return None;
            }
            if self.taken >= budget {
                // The kick waits for the drop: the vring is locked here.
                self.yielded = true;
                return None;
            }
            let avail = match &self.rings {
                Some(rings) if rings.matches(queue) => {
                    Self::pop_mapped(rings, queue, &mut self.avail_seen)
                }
                _ => self.pop_generic(queue),
            };
            let head = match avail {
                Avail::Head(head) => {
                    self.taken += 1;
                    head
                }
                Avail::Empty => return None,
                Avail::Bogus { idx, next } => {
                    self.set_broken(idx, next, queue.size());
                    return None;
                }
                Avail::Invalid => {
                    if self.track.set_broken() {
                        warn!(
                            "queue {}: its rings (size {}, at {:#x}, {:#x}, {:#x}) cannot be \
                             used (not all in guest memory, or refused by virtio-queue); the \
                             queue is stopped until the device is reset",
                            self.index,
                            queue.size(),
                            queue.desc_table(),
                            queue.avail_ring(),
                            queue.used_ring()
                        );
                    }
                    return None;
                }
            };
            if !self.track.take(head) {
                // Completing it would hand the driver a head it already
                // owes us; holding it again would let one head pin memory
                // without limit. Drop it.
                self.log.warn(|| {
                    format!(
                        "queue {}: driver made head {head} available again while the device holds it",
                        self.index
                    )
                });
                continue;
            }
            match DescChain::parse(
                self.mem,
                GuestAddress(queue.desc_table()),
                queue.size(),
                head,
            ) {
                Ok(chain) => {
                    // The head was counted; a chain may walk up to a
                    // queue's worth of descriptors, so with heads alone one
                    // callback could walk four rings' worth squared.
                    let walked = chain.readable().len() + chain.writable().len();
                    self.taken += walked.saturating_sub(1);
                    return Some(chain);
                }
                Err(error) => {
                    // Where the walk failed is not known: charge the most
                    // it may have cost.
                    self.taken += usize::from(queue.size()).saturating_sub(1);
                    self.log.warn(|| {
                        format!(
                            "queue {}: dropping malformed chain {head}: {error}",
                            self.index
                        )
                    });
                    self.complete_locked(queue, head, 0);
                }
            }
        }
    }

    /// Marks the queue broken; logs the first time only.
    fn set_broken(&self, idx: u16, next: u16, size: u16) {
        if self.track.set_broken() {
            warn!(
                "queue {}: the driver published avail index {idx}, more than the ring's {size} \
                 entries ahead of {next}; the queue is stopped until the device is reset",
                self.index
            );
        }
    }

    /// Takes the next head index from the mapped available ring.
    fn pop_mapped(rings: &Rings<'_>, queue: &mut QueueState, avail_seen: &mut u16) -> Avail {
        let next = queue.next_avail();
        let published = avail_seen.wrapping_sub(next);
        // Zero, or "more than the ring holds" (another `Queue` of this index
        // popped past what this one saw): read the index again.
        if published == 0 || published > rings.size() {
            let Some(idx) = rings.avail_idx() else {
                return Avail::Empty;
            };
            if idx.wrapping_sub(next) > rings.size() {
                return Avail::Bogus { idx, next };
            }
            *avail_seen = idx;
            if idx == next {
                return Avail::Empty;
            }
        }
        let Some(head) = rings.avail_entry(next) else {
            return Avail::Empty;
        };
        queue.set_next_avail(next.wrapping_add(1));
        Avail::Head(head)
    }

    /// Takes the next head index through virtio-queue, for rings that could
    /// not be mapped. virtio-queue refuses a bogus index too, but only with
    /// an error log per attempt, so it is checked here first.
    ///
    /// A queue whose rings are not all in memory (set up so, or moved by the
    /// frontend in the middle of a drain) is refused here too: virtio-queue
    /// would refuse each pop with an error log, and its re-check after
    /// re-enabling kicks would still see the published index, so the drain
    /// would spin.
    fn pop_generic(&self, queue: &mut QueueState) -> Avail {
        if !queue.is_valid(self.mem) {
            return Avail::Invalid;
        }
        let next = queue.next_avail();
        let Ok(Wrapping(idx)) = queue.avail_idx(self.mem, Ordering::Acquire) else {
            return Avail::Empty;
        };
        if idx.wrapping_sub(next) > queue.size() {
            return Avail::Bogus { idx, next };
        }
        if idx == next {
            return Avail::Empty;
        }
        // virtio-queue also calls an available ring at guest address 0
        // "not ready", which `is_valid` does not check: it would refuse
        // every pop with an error log while `enable_notification` keeps
        // reporting the published index, and the drain would spin.
        if queue.avail_ring() == 0 {
            return Avail::Invalid;
        }
        match queue.pop_descriptor_chain(self.mem) {
            Some(chain) => Avail::Head(chain.head_index()),
            // The index is published and the rings are valid, so this is a
            // refusal that every later try would repeat: treat it like one.
            None => Avail::Invalid,
        }
    }

    fn complete_locked(&mut self, queue: &mut QueueState, head: u16, len: u32) {
        self.track.release(head);
        let result = match &self.rings {
            Some(rings) if rings.matches(queue) => {
                if head >= queue.size() {
                    Err(format!("head {head} is outside the ring"))
                } else {
                    let next = queue.next_used();
                    rings
                        .push_used(next, head, len)
                        .ok_or_else(|| "used ring not writable".to_owned())
                        .map(|()| {
                            let end = next.wrapping_add(1);
                            queue.set_next_used(end);
                            let first = self.used_window.map_or(next, |(first, _)| first);
                            self.used_window = Some((first, end));
                        })
                }
            }
            _ => queue
                .add_used(self.mem, head, len)
                .map(|()| self.slow_used = true)
                .map_err(|e| e.to_string()),
        };
        if let Err(e) = result {
            self.log
                .warn(|| format!("queue {}: cannot complete chain {head}: {e}", self.index));
        }
    }

    /// Handles every available chain with `f`, which returns the used length
    /// to complete the chain now, or `None` if it kept the chain to complete
    /// later. Runs the EVENT_IDX loop so that no kick is lost between the
    /// last pop and re-enabling notifications. Returns the number of chains.
    ///
    /// With a busy-poll time (--busy-poll-us), a drain that handled chains
    /// signals them and then watches the ring for that long before
    /// re-enabling kicks: a request that arrives meanwhile costs neither the
    /// driver's kick nor this thread's wake-up.
    ///
    /// Like [`Self::pop`], it stops after four rings' worth of
    /// descriptors and lets the worker come back later.
    pub fn drain(&mut self, mut f: impl FnMut(DescChain, &GuestMem) -> Option<u32>) -> usize {
        let mut count = 0;
        // A broken queue's rings are not touched, not even its flags.
        if self.track.is_broken() {
            return count;
        }
        // Without busy polling, the step that finds the ring empty also
        // re-enables kicks; with it, the poll comes first.
        let enable_when_empty = self.busy_poll.is_zero();
        let mut done = None;
        loop {
            if let Err(e) = self.set_notification(false) {
                self.log
                    .warn(|| format!("queue {}: disable notification: {e}", self.index));
            }
            let enabled = loop {
                match self.step(done.take(), enable_when_empty) {
                    Step::Chain(chain) => {
                        count += 1;
                        let head = chain.head();
                        done = f(chain, self.mem).map(|len| (head, len));
                    }
                    Step::Empty(enabled) => break enabled,
                    Step::Broken => return count,
                }
            };
            let enabled = match enabled {
                Some(enabled) => enabled,
                None => {
                    let replied = self.used_window.is_some() || self.slow_used;
                    if replied && !self.busy_poll.is_zero() {
                        self.notify();
                        if self.poll_for_more() {
                            continue;
                        }
                    }
                    if self.track.is_broken() || self.yielded {
                        break;
                    }
                    self.set_notification(true)
                }
            };
            match enabled {
                Ok(true) => continue,
                Ok(false) => break,
                Err(e) => {
                    self.log
                        .warn(|| format!("queue {}: enable notification: {e}", self.index));
                    break;
                }
            }
        }
        count
    }

    /// Makes the worker come back to this queue after its other events, as
    /// if the driver had kicked, by signalling the queue's kick eventfd.
    fn kick_self(&self) {
        let state = self.vring.get_ref();
        let Some(kick) = state.get_kick() else {
            return;
        };
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a local buffer to an fd the vring owns
        // and keeps open while `state` is borrowed.
        let written = unsafe { libc::write(kick.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        if written != 8 {
            // Not an eventfd (the frontend's choice): the rest waits for the
            // driver's next kick.
            self.log.warn(|| {
                format!(
                    "queue {}: cannot kick the queue again after a long drain",
                    self.index
                )
            });
        }
    }

    /// Watches `avail.idx` for up to the busy-poll time; true if the driver
    /// published more.
    fn poll_for_more(&self) -> bool {
        let Some(rings) = &self.rings else {
            return false;
        };
        let next = self.vring.get_ref().get_queue().next_avail();
        let deadline = Instant::now() + self.busy_poll;
        loop {
            if rings.avail_idx().is_some_and(|idx| idx != next) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::hint::spin_loop();
        }
    }

    /// Asks the driver for kicks or not, for a device that pops this queue
    /// itself when it needs a buffer (e.g. an RX queue, looked at only
    /// when a packet waits) rather than from [`Self::drain`], which turns
    /// kicks on when it ends. Turning them on returns whether buffers
    /// arrived meanwhile, to be popped before waiting for a kick. With
    /// EVENT_IDX, off writes nothing: the driver kicks once past the last
    /// `avail_event` the device armed, so not re-arming is enough.
    pub fn set_kicks(&mut self, on: bool) -> bool {
        match self.set_notification(on) {
            Ok(more) => more,
            Err(e) => {
                self.log
                    .warn(|| format!("queue {}: kicks on={on}: {e}", self.index));
                false
            }
        }
    }

    /// Enables or disables kicks; after enabling, returns whether buffers
    /// arrived meanwhile.
    fn set_notification(&mut self, enable: bool) -> Result<bool, String> {
        // With EVENT_IDX, disabling writes nothing (see Rings): skip the lock.
        if !enable && self.rings.as_ref().is_some_and(Rings::event_idx) {
            return Ok(false);
        }
        let vring = self.vring;
        let mut state = vring.get_mut();
        self.set_notification_locked(state.get_queue_mut(), enable)
    }

    fn set_notification_locked(
        &self,
        queue: &mut QueueState,
        enable: bool,
    ) -> Result<bool, String> {
        match &self.rings {
            Some(rings) if rings.matches(queue) => rings
                .set_notification(enable, queue.next_avail())
                .ok_or_else(|| "used ring not writable".to_owned()),
            _ if enable => queue
                .enable_notification(self.mem)
                .map_err(|e| e.to_string()),
            _ => queue
                .disable_notification(self.mem)
                .map(|()| false)
                .map_err(|e| e.to_string()),
        }
    }

    /// Signals the driver now if anything was completed and it wants to know.
    pub fn notify(&mut self) {
        let window = self.used_window.take();
        let slow = std::mem::take(&mut self.slow_used);
        if window.is_none() && !slow {
            return;
        }
        let mapped = window.is_some_and(|(first, end)| {
            self.rings
                .as_ref()
                .is_none_or(|rings| rings.needs_notification(first, end))
        });
        let wanted = self.notify_on_empty
            || mapped
            || (slow && self.vring.needs_notification().unwrap_or(true));
        if wanted {
            if let Err(e) = self.vring.signal_used_queue() {
                debug!("queue {}: signal: {e}", self.index);
            }
        }
    }
}

impl std::fmt::Debug for Queues<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queues")
            .field("len", &self.vrings.len())
            .finish()
    }
}

impl std::fmt::Debug for Queue<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("index", &self.index).finish()
    }
}

impl Drop for Queue<'_> {
    fn drop(&mut self) {
        self.notify();
        if self.yielded {
            self.kick_self();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::mpsc;
    use std::thread;

    use std::fs::File;
    use std::os::fd::FromRawFd;

    use virtio_bindings::bindings::virtio_ring::{VRING_DESC_F_INDIRECT, VRING_DESC_F_NEXT};
    use virtio_queue::desc::split::Descriptor;
    use vm_memory::{Bytes, FileOffset, GuestMemoryAtomic};
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    use super::*;

    const SIZE: u16 = 4;
    const DESC: u64 = 0;

    /// Drains a queue whose driver published `avail_idx` over rings at
    /// `avail` and `used`, in memory made of `regions`, and returns how many
    /// chains the drain handed out and whether the queue is broken. A drain
    /// that does not end within 5 s fails the test instead of hanging it.
    fn drain_with(
        regions: &[(u64, usize)],
        avail: u64,
        used: u64,
        avail_idx: u16,
    ) -> (usize, bool) {
        let regions: Vec<_> = regions
            .iter()
            .map(|&(start, len)| (GuestAddress(start), len))
            .collect();
        let (send, receive) = mpsc::channel();
        thread::spawn(move || {
            let mem = GuestMem::from_ranges(&regions).unwrap();
            mem.write_obj(avail_idx, GuestAddress(avail + 2)).unwrap();
            let vring = Vring::new(GuestMemoryAtomic::new(mem.clone()), SIZE).unwrap();
            vring.set_queue_size(SIZE);
            vring.set_queue_info(DESC, avail, used).unwrap();
            vring.set_queue_ready(true);
            let vrings = [vring];
            let tracks = [QueueTrack::new(usize::from(SIZE))];
            let log = RateLimited::default();
            let mut queues = Queues::new(&vrings, &mem, &tracks, false, Duration::ZERO, &log);
            let count = queues.get(0).unwrap().drain(|_, _| Some(0));
            let _ = send.send((count, tracks[0].is_broken()));
        });
        receive
            .recv_timeout(Duration::from_secs(5))
            .expect("the drain spins")
    }

    #[test]
    fn a_bogus_avail_index_breaks_a_mapped_queue() {
        let one = [(0, 0x4000)];
        assert_eq!(drain_with(&one, 0x1000, 0x2000, SIZE + 3), (0, true));
    }

    #[test]
    fn a_bogus_avail_index_breaks_a_queue_on_the_generic_path() {
        // The available ring straddles two memory regions, so it cannot be
        // mapped as one slice and virtio-queue's path is taken.
        let two = [(0, 0x1000), (0x1000, 0x1000), (0x2000, 0x1000)];
        assert_eq!(drain_with(&two, 0xffc, 0x2000, SIZE + 3), (0, true));
    }

    #[test]
    fn a_used_ring_over_the_available_ring_breaks_the_queue() {
        let one = [(0, 0x4000)];
        // used.idx would be avail.idx: every completion would publish.
        assert_eq!(drain_with(&one, 0x1000, 0x1000, 1), (0, true));
        assert_eq!(drain_with(&one, 0x1000, 0x1008, 1), (0, true));
        // Just after it (the ring ends at 0x100e; the used ring is 4-byte
        // aligned) is fine.
        assert_eq!(drain_with(&one, 0x1000, 0x1010, 1), (1, false));
    }

    /// A frontend maps the pages of the used ring a second time where the
    /// available ring is (two memory regions over one file), so every
    /// completion sets `avail.idx` too. Head 0 is `desc` (a valid chain or
    /// a malformed one). Returns how many chains one drain handed out, and
    /// whether the queue kicked itself to be called again.
    fn drain_aliased(descs: Vec<Descriptor>) -> (usize, u64) {
        let (send, receive) = mpsc::channel();
        thread::spawn(move || {
            let file = tempfile::tempfile().unwrap();
            file.set_len(0x4000).unwrap();
            let alias = FileOffset::new(file.try_clone().unwrap(), 0);
            let mem = GuestMem::from_ranges_with_files([
                (GuestAddress(0), 0x4000, Some(FileOffset::new(file, 0))),
                (GuestAddress(0x1_0000), 0x4000, Some(alias)),
            ])
            .unwrap();
            for (i, desc) in descs.into_iter().enumerate() {
                mem.write_obj(desc, GuestAddress(DESC + 16 * i as u64))
                    .unwrap();
            }
            mem.write_obj(1u16, GuestAddress(0x1000 + 2)).unwrap();
            let vring = Vring::new(GuestMemoryAtomic::new(mem.clone()), SIZE).unwrap();
            vring.set_queue_size(SIZE);
            vring.set_queue_info(DESC, 0x1000, 0x1_1000).unwrap();
            // One completion ahead of the pops (a chain the device used
            // out of order, say): each used.idx it writes is then one more
            // than the driver's chains so far.
            vring.set_queue_next_used(1);
            vring.set_queue_ready(true);
            let kick = EventFd::new(EFD_NONBLOCK).unwrap();
            // SAFETY: dup() returns a new fd that the File then owns.
            let dup = unsafe { File::from_raw_fd(libc::dup(kick.as_raw_fd())) };
            vring.set_kick(Some(dup));
            let vrings = [vring];
            let tracks = [QueueTrack::new(usize::from(SIZE))];
            let log = RateLimited::default();
            let mut queues = Queues::new(&vrings, &mem, &tracks, false, Duration::ZERO, &log);
            let count = queues.get(0).unwrap().drain(|_, _| Some(0));
            let _ = send.send((count, kick.read().unwrap_or(0)));
        });
        receive
            .recv_timeout(Duration::from_secs(5))
            .expect("one kick holds the worker for ever")
    }

    #[test]
    fn a_self_feeding_ring_yields_after_its_share() {
        let budget = usize::from(SIZE) * DRAIN_ROUNDS;
        let valid = Descriptor::new(0x3000, 4, 0, 0);
        assert_eq!(drain_aliased(vec![valid]), (budget, 1));
        // Malformed chains are completed inside the pop: they count too.
        let malformed = Descriptor::new(0x3000, 4, VRING_DESC_F_INDIRECT as u16, 0);
        assert_eq!(drain_aliased(vec![malformed]), (0, 1));
    }

    #[test]
    fn a_self_feeding_ring_of_long_chains_yields_after_its_share_of_descriptors() {
        // Head 0 walks the whole table, 0 -> 1 -> 2 -> 3: a callback that
        // counted heads only would walk SIZE times more descriptors.
        let budget = usize::from(SIZE) * DRAIN_ROUNDS;
        let chain = (0..SIZE)
            .map(|i| {
                let next = if i + 1 < SIZE { VRING_DESC_F_NEXT } else { 0 };
                Descriptor::new(0x3000, 4, next as u16, i + 1)
            })
            .collect();
        assert_eq!(drain_aliased(chain), (budget / usize::from(SIZE), 1));
    }

    #[test]
    fn an_available_ring_at_address_zero_breaks_a_queue_on_the_generic_path() {
        // The used ring straddles two regions, so neither ring is mapped;
        // virtio-queue refuses an available ring at 0 as "not ready".
        // Found by the `vhost_user` fuzz target (a drain that never ended).
        let two = [(0, 0x1000), (0x1000, 0x1000), (0x2000, 0x1000)];
        assert_eq!(drain_with(&two, 0, 0xffc, 1), (0, true));
    }

    #[test]
    fn rings_partly_outside_memory_break_the_queue() {
        // The available ring's header is in memory, its entries are not, so
        // it cannot be mapped and virtio-queue's path would be taken.
        let one = [(0, 0x4000)];
        assert_eq!(drain_with(&one, 0x4000 - 4, 0x2000, 1), (0, true));
    }
}
