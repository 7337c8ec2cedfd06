// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The trait a device implements, and the adapter that turns it into a
//! vhost-user backend.
//!
//! A device says how many queues it has, which feature bits and config space
//! it offers, and what to do when a queue is kicked or a host fd it
//! registered is ready. Everything else is here, once: the transport feature
//! bits, the EVENT_IDX disable/drain/enable/re-check loop, validation of every
//! descriptor chain, used-ring notification, config bounds checks, and
//! keeping guest mistakes from stopping the worker.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use log::{debug, warn};
use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost::vhost_user::{Backend, GpuBackend};
use vhost_user_backend::{VhostUserBackend, VringRwLock, VringT};
use virtio_bindings::bindings::virtio_config::{
    VIRTIO_F_NOTIFY_ON_EMPTY, VIRTIO_F_RING_RESET, VIRTIO_F_VERSION_1,
};
use virtio_bindings::bindings::virtio_ring::{
    VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};
use virtio_queue::{Queue as QueueState, QueueT};
use vm_memory::{GuestAddress, GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{EventConsumer, EventNotifier};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::chain::DescChain;
use crate::events::EventRegistry;
use crate::ratelimit::RateLimited;
use crate::ring::Rings;

/// Guest memory as the devices see it.
pub type GuestMem = GuestMemoryMmap<()>;

/// The vring type the adapter uses.
pub type Vring = VringRwLock<GuestMemoryAtomic<GuestMem>>;

/// What a device method returns. An error is logged (rate limited) by the
/// core and the device keeps serving: nothing a guest does may stop the
/// worker.
pub type DeviceResult = std::result::Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Transport feature bits every device offers. The device adds its own.
pub const TRANSPORT_FEATURES: u64 = (1 << VIRTIO_F_VERSION_1)
    | (1 << VIRTIO_RING_F_INDIRECT_DESC)
    | (1 << VIRTIO_RING_F_EVENT_IDX)
    | (1 << VIRTIO_F_NOTIFY_ON_EMPTY)
    | (1 << VIRTIO_F_RING_RESET);

/// Feature bit 30: the frontend may use vhost-user protocol features.
const VHOST_USER_F_PROTOCOL_FEATURES: u64 = 1 << 30;

/// A virtio device served over vhost-user.
///
/// The adapter calls these from two threads (the vhost-user message thread
/// and the vring worker) but never at the same time: the device sits behind
/// one mutex.
pub trait VirtioDevice: Send + 'static {
    /// Number of virtqueues.
    fn num_queues(&self) -> usize;

    /// Largest queue size the device accepts.
    fn max_queue_size(&self) -> u16 {
        256
    }

    /// Device-specific feature bits. The transport bits in
    /// [`TRANSPORT_FEATURES`] and vhost-user's bit 30 are added by the core.
    fn features(&self) -> u64 {
        0
    }

    /// Extra vhost-user protocol features. MQ and REPLY_ACK are always
    /// offered, and CONFIG whenever [`Self::config`] is not empty.
    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::empty()
    }

    /// The features the driver accepted.
    fn set_acked_features(&mut self, _features: u64) {}

    /// The current config space, little-endian as the spec lays it out.
    fn config(&self) -> &[u8] {
        &[]
    }

    /// A config write from the driver, already known to lie in the config
    /// space. Return false to refuse it.
    fn write_config(&mut self, _offset: u32, _data: &[u8]) -> bool {
        false
    }

    /// Called once per connection, before the frontend sends anything, with
    /// the registry for host fds.
    fn activate(&mut self, _events: EventRegistry) -> DeviceResult {
        Ok(())
    }

    /// The driver kicked queue `index`.
    fn process_queue(&mut self, queues: &mut Queues<'_>, index: usize) -> DeviceResult;

    /// A host fd registered with `token` is ready.
    fn handle_event(
        &mut self,
        _queues: &mut Queues<'_>,
        _token: u16,
        _events: EventSet,
    ) -> DeviceResult {
        Ok(())
    }

    /// Queue `index` was stopped (GET_VRING_BASE): forget the chains held
    /// from it, they will not be completed.
    fn queue_stopped(&mut self, _index: usize) {}

    /// The frontend reset the device.
    fn reset(&mut self) {}

    /// The frontend handed over a backend-request channel.
    fn set_backend_req_fd(&mut self, _backend: Backend) {}

    /// The frontend handed over the vhost-user-gpu display socket.
    fn set_gpu_socket(&mut self, _gpu: GpuBackend) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this device has no display socket",
        ))
    }
}

/// The queues of one device, as handed to it in a callback.
pub struct Queues<'a> {
    vrings: &'a [Vring],
    mem: &'a GuestMem,
    notify_on_empty: bool,
    busy_poll: Duration,
    log: &'a RateLimited,
}

impl<'a> Queues<'a> {
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
        let (rings, next_avail) = {
            let state = vring.get_ref();
            let queue = state.get_queue();
            if !queue.ready() {
                return None;
            }
            (Rings::map(self.mem, queue), queue.next_avail())
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
            log: self.log,
        })
    }
}

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
    log: &'a RateLimited,
}

/// What one locked step of [`Queue::drain`] found.
enum Step {
    /// The next chain, for the device.
    Chain(DescChain),
    /// The ring is empty; if kicks were re-enabled in the same step, whether
    /// more chains arrived meanwhile.
    Empty(Option<Result<bool, String>>),
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
        Step::Empty(enable.then(|| self.set_notification_locked(queue, true)))
    }

    fn pop_locked(&mut self, queue: &mut QueueState) -> Option<DescChain> {
        loop {
            let desc_table = GuestAddress(queue.desc_table());
            let size = queue.size();
            let head = match &self.rings {
                Some(rings) if rings.matches(queue) => {
                    Self::pop_mapped(rings, queue, &mut self.avail_seen, self.log)?
                }
                _ => queue.pop_descriptor_chain(self.mem)?.head_index(),
            };
            match DescChain::parse(self.mem, desc_table, size, head) {
                Ok(chain) => return Some(chain),
                Err(error) => {
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

    /// Takes the next head index from the mapped available ring.
    fn pop_mapped(
        rings: &Rings<'_>,
        queue: &mut QueueState,
        avail_seen: &mut u16,
        log: &RateLimited,
    ) -> Option<u16> {
        let next = queue.next_avail();
        let published = avail_seen.wrapping_sub(next);
        // Zero, or "more than the ring holds" (another `Queue` of this index
        // popped past what this one saw): read the index again.
        if published == 0 || published > rings.size() {
            let idx = rings.avail_idx()?;
            if idx.wrapping_sub(next) > rings.size() {
                log.warn(|| format!("avail index {idx} is more than a ring ahead of {next}"));
                return None;
            }
            *avail_seen = idx;
            if idx == next {
                return None;
            }
        }
        let head = rings.avail_entry(next)?;
        queue.set_next_avail(next.wrapping_add(1));
        Some(head)
    }

    fn complete_locked(&mut self, queue: &mut QueueState, head: u16, len: u32) {
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
    pub fn drain(&mut self, mut f: impl FnMut(DescChain, &GuestMem) -> Option<u32>) -> usize {
        let mut count = 0;
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
    }
}

struct Shared<D> {
    device: Mutex<D>,
    mem: GuestMemoryAtomic<GuestMem>,
    num_queues: usize,
    max_queue_size: usize,
    features: u64,
    protocol_features: VhostUserProtocolFeatures,
    acked_features: AtomicU64,
    log: RateLimited,
    stop: EventFd,
    busy_poll_us: AtomicU64,
}

/// Epoll data value of the worker's stop event. Device tokens stay below it
/// (see [`EventRegistry::max_token`]).
pub(crate) const STOP_TOKEN: u16 = u16::MAX;

/// Adapts a [`VirtioDevice`] to `vhost-user-backend`. Clones share the device.
pub struct DeviceBackend<D> {
    shared: Arc<Shared<D>>,
}

impl<D> Clone for DeviceBackend<D> {
    fn clone(&self) -> Self {
        DeviceBackend {
            shared: self.shared.clone(),
        }
    }
}

impl<D> std::fmt::Debug for DeviceBackend<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceBackend")
            .field("num_queues", &self.shared.num_queues)
            .field("features", &format_args!("{:#x}", self.shared.features))
            .finish_non_exhaustive()
    }
}

impl<D: VirtioDevice> DeviceBackend<D> {
    /// Wraps `device`; `mem` is the guest memory the daemon maintains.
    pub fn new(device: D, mem: GuestMemoryAtomic<GuestMem>) -> io::Result<Self> {
        let mut protocol_features = device.protocol_features()
            | VhostUserProtocolFeatures::MQ
            | VhostUserProtocolFeatures::REPLY_ACK;
        if !device.config().is_empty() {
            protocol_features |= VhostUserProtocolFeatures::CONFIG;
        }
        let shared = Shared {
            num_queues: device.num_queues(),
            max_queue_size: usize::from(device.max_queue_size()),
            features: device.features() | TRANSPORT_FEATURES | VHOST_USER_F_PROTOCOL_FEATURES,
            protocol_features,
            device: Mutex::new(device),
            mem,
            acked_features: AtomicU64::new(0),
            log: RateLimited::default(),
            stop: EventFd::new(EFD_NONBLOCK | libc::EFD_CLOEXEC)?,
            busy_poll_us: AtomicU64::new(0),
        };
        Ok(DeviceBackend {
            shared: Arc::new(shared),
        })
    }

    /// Polls each queue for `time` after a batch before sleeping again
    /// (see [`Queue::drain`]). Zero, the default, never polls.
    pub fn with_busy_poll(self, time: Duration) -> Self {
        let micros = u64::try_from(time.as_micros()).unwrap_or(u64::MAX);
        self.shared.busy_poll_us.store(micros, Ordering::Relaxed);
        self
    }

    /// Locks the device. A device method that panicked poisons the lock;
    /// the state is still the device's best, so carry on with it.
    pub fn device(&self) -> MutexGuard<'_, D> {
        self.shared
            .device
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Gives the device its event registry for the worker's epoll `epoll`,
    /// and registers the worker's stop event there.
    pub(crate) fn activate(&self, epoll: BorrowedFd<'_>) -> io::Result<()> {
        let registry = EventRegistry::new(epoll, self.shared.num_queues)?;
        registry.register_raw(&self.shared.stop, EventSet::IN, STOP_TOKEN)?;
        self.device()
            .activate(registry)
            .map_err(|e| io::Error::other(e.to_string()))
    }

    /// Ends the vring worker. Call it once the connection is over, before
    /// dropping the daemon (which joins the worker).
    pub(crate) fn stop_worker(&self) {
        if let Err(e) = self.shared.stop.write(1) {
            warn!("cannot stop the vring worker: {e}");
        }
    }

    fn with_queues(
        &self,
        vrings: &[Vring],
        f: impl FnOnce(&mut D, &mut Queues<'_>) -> DeviceResult,
    ) {
        let guard = self.shared.mem.memory();
        let notify_on_empty = self.shared.acked_features.load(Ordering::Relaxed)
            & (1 << VIRTIO_F_NOTIFY_ON_EMPTY)
            != 0;
        let mut queues = Queues {
            vrings,
            mem: &guard,
            notify_on_empty,
            busy_poll: Duration::from_micros(self.shared.busy_poll_us.load(Ordering::Relaxed)),
            log: &self.shared.log,
        };
        let mut device = self.device();
        if let Err(e) = f(&mut device, &mut queues) {
            self.shared.log.warn(|| format!("{e}"));
        }
    }
}

impl<D: VirtioDevice> VhostUserBackend for DeviceBackend<D> {
    type Bitmap = ();
    type Vring = Vring;

    fn num_queues(&self) -> usize {
        self.shared.num_queues
    }

    fn max_queue_size(&self) -> usize {
        self.shared.max_queue_size
    }

    fn features(&self) -> u64 {
        self.shared.features
    }

    fn acked_features(&self, features: u64) {
        self.shared
            .acked_features
            .store(features, Ordering::Relaxed);
        self.device().set_acked_features(features);
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        self.shared.protocol_features
    }

    fn reset_device(&self) {
        self.device().reset();
    }

    fn set_event_idx(&self, _enabled: bool) {
        // The handler already set it on each vring, which is where it counts.
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        let device = self.device();
        crate::config::read(device.config(), offset, size).unwrap_or_else(|| {
            self.shared
                .log
                .warn(|| format!("config read {offset}+{size} is out of range"));
            Vec::new()
        })
    }

    fn set_config(&self, offset: u32, buf: &[u8]) -> io::Result<()> {
        let mut device = self.device();
        let size = u32::try_from(buf.len()).unwrap_or(u32::MAX);
        let in_range = crate::config::read(device.config(), offset, size).is_some();
        if !(in_range && device.write_config(offset, buf)) {
            // Ignored, as a device ignores writes to read-only registers: an
            // error here would make vhost-user drop the whole connection.
            self.shared
                .log
                .warn(|| format!("config write {offset}+{size} refused"));
        }
        Ok(())
    }

    fn update_memory(&self, _mem: GuestMemoryAtomic<GuestMem>) -> io::Result<()> {
        // The daemon updates the GuestMemoryAtomic this adapter shares.
        Ok(())
    }

    fn set_backend_req_fd(&self, backend: Backend) {
        self.device().set_backend_req_fd(backend);
    }

    fn set_gpu_socket(&self, gpu_backend: GpuBackend) -> io::Result<()> {
        self.device().set_gpu_socket(gpu_backend)
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        // vhost-user-backend 0.24 turns the exit consumer into a raw fd and
        // never closes it, leaking one fd per connection. The worker is
        // stopped through `stop_worker` instead.
        None
    }

    fn stop_vring(&self, queue_index: u32) -> io::Result<()> {
        if let Ok(index) = usize::try_from(queue_index) {
            self.device().queue_stopped(index);
        }
        Ok(())
    }

    fn handle_event(
        &self,
        device_event: u16,
        evset: EventSet,
        vrings: &[Vring],
        _thread_id: usize,
    ) -> io::Result<()> {
        if device_event == STOP_TOKEN {
            // The only way to end the worker loop without its exit event.
            return Err(io::Error::other("connection closed"));
        }
        let index = usize::from(device_event);
        if index < self.shared.num_queues {
            self.with_queues(vrings, |device, queues| device.process_queue(queues, index));
        } else {
            let base = u16::try_from(self.shared.num_queues + 1).unwrap_or(u16::MAX);
            if let Some(token) = EventRegistry::token_of(base, device_event) {
                self.with_queues(vrings, |device, queues| {
                    device.handle_event(queues, token, evset)
                });
            }
        }
        // Never an error otherwise: an error here ends the worker thread.
        Ok(())
    }
}

/// The raw epoll fd of a worker, borrowed for [`DeviceBackend::activate`].
pub(crate) fn worker_epoll<T: AsRawFd>(handler: &T) -> BorrowedFd<'_> {
    // SAFETY: the fd belongs to `handler`, which outlives the borrow.
    unsafe { BorrowedFd::borrow_raw(handler.as_raw_fd()) }
}
