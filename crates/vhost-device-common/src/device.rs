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
use std::time::Duration;

use log::{debug, warn};
use vhost::vhost_user::message::VhostUserProtocolFeatures;
use vhost::vhost_user::{Backend, GpuBackend};
use vhost_user_backend::VhostUserBackend;
use virtio_bindings::bindings::virtio_config::{
    VIRTIO_F_NOTIFY_ON_EMPTY, VIRTIO_F_RING_RESET, VIRTIO_F_VERSION_1,
};
use virtio_bindings::bindings::virtio_ring::{
    VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC,
};
use vm_memory::{GuestAddressSpace, GuestMemoryAtomic};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{EventConsumer, EventNotifier};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::events::{self, Event, EventRegistry, STOP_TOKEN};
use crate::inflight::QueueTrack;
pub use crate::queue::{Queue, Queues};
use crate::ratelimit::RateLimited;
use crate::sandbox::SeccompPolicy;
pub use crate::vring::{GuestMem, Vring};

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

    /// What the sandbox must allow for this device beyond the core's
    /// system calls, and the `--seccomp` default (see [`crate::sandbox`]).
    fn seccomp_policy() -> SeccompPolicy
    where
        Self: Sized,
    {
        SeccompPolicy::default()
    }

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

    /// The connection is over and the vring worker is about to end; called
    /// on that thread, the last call there. For what only the thread that
    /// made it may release (a renderer's GL context); the device itself is
    /// dropped later, on another thread.
    fn worker_stopping(&mut self) {}

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
    /// Per queue: the heads the device holds, and whether it is broken.
    tracks: Box<[QueueTrack]>,
    /// The last guest memory snapshot checked by
    /// [`regions_within_their_files`], and whether it passed. A region past
    /// the end of its file is a SIGBUS on first touch, which ends every
    /// guest of the daemon; vhost-user-backend swaps a new table in before
    /// `update_memory` can refuse it, so the worker checks every snapshot it
    /// is about to use. Holding the `Arc` makes a pointer match mean the same
    /// table, not a freed table's address reused.
    checked_mem: Mutex<Option<(Arc<GuestMem>, bool)>>,
}

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
        let tracks = (0..device.num_queues())
            .map(|_| QueueTrack::new(usize::from(device.max_queue_size())))
            .collect();
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
            tracks,
            checked_mem: Mutex::new(None),
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

    /// The guest memory the worker may touch now: the current snapshot, if
    /// every region lies within its file. Checked once per snapshot; while
    /// it fails (until a table that passes) no device code runs at all. A
    /// queue stop clears the queues' broken marks, so those alone would not
    /// keep the worker away from a refused table.
    fn checked_memory(&self) -> Option<Arc<GuestMem>> {
        let mem = self.shared.mem.memory().into_inner();
        let mut checked = self
            .shared
            .checked_mem
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((seen, ok)) = &*checked {
            if Arc::ptr_eq(seen, &mem) {
                return ok.then_some(mem);
            }
        }
        let verdict = regions_within_their_files(&mem);
        if let Err(e) = &verdict {
            warn!("refusing the frontend's memory table: {e}");
        }
        let ok = verdict.is_ok();
        *checked = Some((mem.clone(), ok));
        ok.then_some(mem)
    }

    fn with_queues(
        &self,
        vrings: &[Vring],
        f: impl FnOnce(&mut D, &mut Queues<'_>) -> DeviceResult,
    ) {
        let Some(guard) = self.checked_memory() else {
            return;
        };
        let notify_on_empty = self.shared.acked_features.load(Ordering::Relaxed)
            & (1 << VIRTIO_F_NOTIFY_ON_EMPTY)
            != 0;
        let mut queues = Queues::new(
            vrings,
            &guard,
            &self.shared.tracks,
            notify_on_empty,
            Duration::from_micros(self.shared.busy_poll_us.load(Ordering::Relaxed)),
            &self.shared.log,
        );
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
        debug!("device reset by the frontend");
        let mut device = self.device();
        device.reset();
        for track in &*self.shared.tracks {
            track.clear();
        }
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
        // The daemon updates the GuestMemoryAtomic this adapter shares, and
        // the worker checks each snapshot before it touches one (see
        // `checked_memory`, which this primes). The error ends the
        // connection.
        if self.checked_memory().is_none() {
            for track in &*self.shared.tracks {
                track.set_broken();
            }
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a memory region lies past the end of its file",
            ));
        }
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
            // At debug level: the frontend stops the queues on every device
            // reset, which guest scenarios look for.
            debug!("queue {index}: stopped by the frontend");
            let mut device = self.device();
            device.queue_stopped(index);
            if let Some(track) = self.shared.tracks.get(index) {
                track.clear();
            }
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
        match events::decode(device_event, self.shared.num_queues) {
            // The only way to end the worker loop without its exit event.
            Event::Stop => {
                self.device().worker_stopping();
                return Err(io::Error::other("connection closed"));
            }
            Event::Queue(index) => {
                self.with_queues(vrings, |device, queues| device.process_queue(queues, index));
            }
            Event::Device(token) => {
                self.with_queues(vrings, |device, queues| {
                    device.handle_event(queues, token, evset)
                });
            }
            Event::Unknown => {}
        }
        // Never an error otherwise: an error here ends the worker thread.
        Ok(())
    }
}

/// Checks that every region of `mem` backed by a regular file (a memfd, a
/// file on hugetlbfs or tmpfs) lies within that file. vm-memory maps a
/// region without looking at the file's length, and touching a page past its
/// end raises SIGBUS, which kills the daemon: a frontend that sends a region
/// longer than its fd must get an error instead.
fn regions_within_their_files(mem: &GuestMem) -> io::Result<()> {
    use vm_memory::{GuestMemoryBackend, GuestMemoryRegion};
    for region in mem.iter() {
        let Some(file_offset) = region.file_offset() else {
            continue;
        };
        let meta = file_offset.file().metadata()?;
        if !meta.file_type().is_file() {
            continue;
        }
        let end = file_offset.start().checked_add(region.len());
        if end.is_none_or(|end| end > meta.len()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a region of {:#x} bytes at offset {:#x} of a file of {:#x} bytes",
                    region.len(),
                    file_offset.start(),
                    meta.len()
                ),
            ));
        }
    }
    Ok(())
}

/// The raw epoll fd of a worker, borrowed for [`DeviceBackend::activate`].
pub(crate) fn worker_epoll<T: AsRawFd>(handler: &T) -> BorrowedFd<'_> {
    // SAFETY: the fd belongs to `handler`, which outlives the borrow.
    unsafe { BorrowedFd::borrow_raw(handler.as_raw_fd()) }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use vm_memory::{FileOffset, GuestAddress};

    use super::*;

    fn memory_over_a_file(file_len: u64, offset: u64, region_len: usize) -> GuestMem {
        let file = tempfile::tempfile().unwrap();
        file.set_len(file_len).unwrap();
        GuestMem::from_ranges_with_files([(
            GuestAddress(0),
            region_len,
            Some(FileOffset::new(file, offset)),
        )])
        .unwrap()
    }

    #[test]
    fn a_region_past_the_end_of_its_file_is_refused() {
        // Found by the vhost_user fuzz target: SIGBUS on the first access.
        assert!(regions_within_their_files(&memory_over_a_file(0x1000, 0, 0x10000)).is_err());
        assert!(regions_within_their_files(&memory_over_a_file(0x10000, 0x1000, 0x10000)).is_err());
        regions_within_their_files(&memory_over_a_file(0x10000, 0, 0x10000)).unwrap();
        regions_within_their_files(&memory_over_a_file(0x11000, 0x1000, 0x10000)).unwrap();
        let anonymous = GuestMem::from_ranges(&[(GuestAddress(0), 0x1000)]).unwrap();
        regions_within_their_files(&anonymous).unwrap();
    }

    #[test]
    #[cfg(feature = "test-frontend")]
    fn no_device_code_runs_while_a_refused_memory_table_is_mapped() {
        // Found by the vhost_user fuzz target (a SIGBUS in the worker): the
        // table is refused, but it is mapped already; a queue stop clears
        // the queue's broken mark, and a kick then touched its rings past
        // the file's end. Without the guard this test dies of SIGBUS.
        use vhost_user_backend::VringT;
        let atomic = GuestMemoryAtomic::new(memory_over_a_file(0x1000, 0, 0x10000));
        let backend = DeviceBackend::new(crate::echo::Echo::new(0), atomic.clone()).unwrap();
        assert!(backend.update_memory(atomic.clone()).is_err());
        backend.stop_vring(0).unwrap();
        let vring = Vring::new(atomic, 4).unwrap();
        vring.set_queue_size(4);
        vring.set_queue_info(0x8000, 0x9000, 0xa000).unwrap();
        vring.set_queue_ready(true);
        backend.handle_event(0, EventSet::IN, &[vring], 0).unwrap();
    }

    #[test]
    #[cfg(feature = "test-frontend")]
    fn the_worker_checks_a_table_swapped_in_before_update_memory() {
        // Found by the vhost_user fuzz target (a SIGBUS 1 run in 4):
        // vhost-user-backend replaces the table and only then calls
        // `update_memory`, so a kick handled in between touched the new
        // table unchecked. This is that window: swapped in, not yet
        // refused. Without the worker's own check this test dies of SIGBUS.
        use vhost_user_backend::VringT;
        let good = GuestMemoryAtomic::new(memory_over_a_file(0x10000, 0, 0x10000));
        let backend = DeviceBackend::new(crate::echo::Echo::new(0), good.clone()).unwrap();
        let vring = Vring::new(good.clone(), 4).unwrap();
        vring.set_queue_size(4);
        vring.set_queue_info(0x8000, 0x9000, 0xa000).unwrap();
        vring.set_queue_ready(true);
        backend
            .handle_event(0, EventSet::IN, std::slice::from_ref(&vring), 0)
            .unwrap();
        good.lock()
            .unwrap()
            .replace(memory_over_a_file(0x1000, 0, 0x10000));
        backend.handle_event(0, EventSet::IN, &[vring], 0).unwrap();
        assert!(backend.update_memory(good).is_err());
    }
}
