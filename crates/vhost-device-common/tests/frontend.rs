// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The test frontend against a tiny echo backend written directly on
//! `vhost-user-backend`, so that these tests do not depend on the shared
//! daemon they are meant to test.

#![cfg(feature = "test-frontend")]
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use vhost::vhost_user::gpu_message::VhostUserGpuCursorPos;
use vhost::vhost_user::{GpuBackend, VhostUserProtocolFeatures, VhostUserVirtioFeatures};
use vhost_device_common::testing::{FrontendError, FrontendOptions, RawDesc, TestFrontend};
use vhost_user_backend::{VhostUserBackendMut, VhostUserDaemon, VringRwLock, VringT};
use virtio_queue::QueueT;
use vm_memory::{Bytes, GuestAddressSpace, GuestMemoryAtomic, GuestMemoryMmap};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::event::{
    new_event_consumer_and_notifier, EventConsumer, EventFlag, EventNotifier,
};

const TIMEOUT: Duration = Duration::from_secs(5);
const VERSION_1: u64 = 1 << 32;
const INDIRECT_DESC: u64 = 1 << 28;
const EVENT_IDX: u64 = 1 << 29;
const ECHO_CONFIG: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

/// What the echo device saw, shared with the test.
#[derive(Default)]
struct Stats {
    /// Kicks handled (calls of `handle_event` for a queue).
    kicks: AtomicUsize,
    /// Chains returned.
    chains: AtomicUsize,
}

/// A two-queue device that copies each chain's readable bytes into its
/// writable buffers. Any chain it cannot read or write is returned with
/// used length 0.
struct Echo {
    mem: Option<GuestMemoryAtomic<GuestMemoryMmap>>,
    event_idx: bool,
    config: Vec<u8>,
    stats: Arc<Stats>,
    gpu: Option<GpuBackend>,
}

impl Echo {
    fn echo_chain(
        mem: &GuestMemoryMmap,
        chain: virtio_queue::DescriptorChain<&GuestMemoryMmap>,
    ) -> u32 {
        let mut data = Vec::new();
        for d in chain.clone().readable() {
            let mut buf = vec![0u8; d.len() as usize];
            if mem.read_slice(&mut buf, d.addr()).is_err() {
                return 0;
            }
            data.extend_from_slice(&buf);
        }
        let mut written = 0usize;
        for d in chain.writable() {
            let n = (d.len() as usize).min(data.len() - written);
            if mem
                .write_slice(&data[written..written + n], d.addr())
                .is_err()
            {
                return 0;
            }
            written += n;
        }
        u32::try_from(written).unwrap()
    }

    fn process(&self, vring: &VringRwLock) {
        let atomic = self.mem.as_ref().unwrap();
        let mem = atomic.memory();
        loop {
            if self.event_idx {
                vring.disable_notification().unwrap();
            }
            loop {
                let chain = vring.get_mut().get_queue_mut().pop_descriptor_chain(&*mem);
                let Some(chain) = chain else { break };
                let head = chain.head_index();
                let len = Self::echo_chain(&mem, chain);
                vring.add_used(head, len).unwrap();
                self.stats.chains.fetch_add(1, Ordering::Relaxed);
            }
            if vring.needs_notification().unwrap() {
                vring.signal_used_queue().unwrap();
            }
            if !self.event_idx || !vring.enable_notification().unwrap() {
                break;
            }
        }
    }
}

impl VhostUserBackendMut for Echo {
    type Bitmap = ();
    type Vring = VringRwLock;

    fn num_queues(&self) -> usize {
        2
    }

    fn max_queue_size(&self) -> usize {
        1024
    }

    fn features(&self) -> u64 {
        VERSION_1 | INDIRECT_DESC | EVENT_IDX | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    }

    fn protocol_features(&self) -> VhostUserProtocolFeatures {
        VhostUserProtocolFeatures::MQ | VhostUserProtocolFeatures::CONFIG
    }

    fn set_event_idx(&mut self, enabled: bool) {
        self.event_idx = enabled;
    }

    fn get_config(&self, offset: u32, size: u32) -> Vec<u8> {
        let start = offset as usize;
        let end = start + size as usize;
        self.config
            .get(start..end)
            .map(<[u8]>::to_vec)
            .unwrap_or_default()
    }

    fn set_config(&mut self, offset: u32, buf: &[u8]) -> std::io::Result<()> {
        let start = offset as usize;
        let dst = self
            .config
            .get_mut(start..start + buf.len())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
        dst.copy_from_slice(buf);
        Ok(())
    }

    fn update_memory(&mut self, mem: GuestMemoryAtomic<GuestMemoryMmap>) -> std::io::Result<()> {
        self.mem = Some(mem);
        Ok(())
    }

    fn exit_event(&self, _thread_index: usize) -> Option<(EventConsumer, EventNotifier)> {
        // Without an exit event the daemon's drop joins a worker thread that
        // never returns.
        new_event_consumer_and_notifier(EventFlag::NONBLOCK).ok()
    }

    fn set_gpu_socket(&mut self, gpu: GpuBackend) -> std::io::Result<()> {
        // Proves the socket works: the test reads this message.
        gpu.cursor_pos(&VhostUserGpuCursorPos {
            scanout_id: 0,
            x: 17,
            y: 42,
        })?;
        self.gpu = Some(gpu);
        Ok(())
    }

    fn handle_event(
        &mut self,
        device_event: u16,
        _evset: EventSet,
        vrings: &[VringRwLock],
        _thread_id: usize,
    ) -> std::io::Result<()> {
        if let Some(vring) = vrings.get(usize::from(device_event)) {
            self.stats.kicks.fetch_add(1, Ordering::Relaxed);
            self.process(vring);
        }
        Ok(())
    }
}

/// An echo daemon serving one connection on a socket in a temp dir.
struct Daemon {
    path: PathBuf,
    stats: Arc<Stats>,
    config: Arc<RwLock<Echo>>,
    thread: Option<JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl Daemon {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut d = Self::start_at(&dir.path().join("echo.sock"));
        d._dir = Some(dir);
        d
    }

    fn start_at(path: &Path) -> Self {
        let stats = Arc::new(Stats::default());
        let backend = Arc::new(RwLock::new(Echo {
            mem: None,
            event_idx: false,
            config: ECHO_CONFIG.to_vec(),
            stats: stats.clone(),
            gpu: None,
        }));
        let mut daemon = VhostUserDaemon::new(
            "echo".to_string(),
            backend.clone(),
            GuestMemoryAtomic::new(GuestMemoryMmap::new()),
        )
        .unwrap();
        let p = path.to_path_buf();
        let thread = thread::spawn(move || {
            // Errors show up in the test as a failed connection or request.
            let _ = daemon.serve(&p);
        });
        Daemon {
            path: path.to_path_buf(),
            stats,
            config: backend,
            thread: Some(thread),
            _dir: None,
        }
    }

    fn connect(&self, opts: FrontendOptions) -> TestFrontend {
        TestFrontend::connect_retry(&self.path, opts, TIMEOUT).unwrap()
    }

    /// Waits for the daemon to finish serving its one connection.
    fn join(mut self) {
        self.thread.take().unwrap().join().unwrap();
    }
}

fn opts() -> FrontendOptions {
    FrontendOptions::default()
}

#[test]
fn connect_and_negotiate() {
    let d = Daemon::start();
    let fe = d.connect(opts());
    assert_eq!(
        fe.device_features(),
        VERSION_1 | INDIRECT_DESC | EVENT_IDX | VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()
    );
    assert_eq!(fe.acked_features(), fe.device_features());
    let pf = fe.protocol_features();
    assert!(pf.contains(VhostUserProtocolFeatures::MQ));
    assert!(pf.contains(VhostUserProtocolFeatures::CONFIG));
    assert!(pf.contains(VhostUserProtocolFeatures::REPLY_ACK));
    assert_eq!(fe.num_queues(), 2);
    assert!(format!("{fe:?}").contains("TestFrontend"));
    let bases = fe.disconnect().unwrap();
    assert_eq!(bases, vec![0, 0]);
    d.join();
}

#[test]
fn request_and_reply() {
    let d = Daemon::start();
    let mut fe = d.connect(opts());
    let q = fe.queue(0).unwrap();
    let used = q
        .request(&[b"hello ", b"world"], &[4, 100], TIMEOUT)
        .unwrap();
    assert_eq!(used.len, 11);
    assert_eq!(used.data, b"hello world");
    assert_eq!(q.in_flight(), 0);
    // The second queue works independently.
    let used = fe
        .queue(1)
        .unwrap()
        .request(&[b"q1"], &[2], TIMEOUT)
        .unwrap();
    assert_eq!(used.data, b"q1");
    assert!(matches!(
        fe.queue(2),
        Err(FrontendError::NoSuchQueue { index: 2, count: 2 })
    ));
    fe.disconnect().unwrap();
    d.join();
}

#[test]
fn thousand_requests_recycle_buffers() {
    let d = Daemon::start();
    // Small memory and queue: without recycling this would run out fast.
    let mut fe = d.connect(FrontendOptions {
        mem_size: 1 << 20,
        queue_size: 16,
        ..opts()
    });
    let q = fe.queue(0).unwrap();
    let payload = vec![0x5au8; 4000];
    let mut used = Default::default();
    let start = Instant::now();
    for i in 0..1000u32 {
        let tag = i.to_le_bytes();
        q.request_into(&[&tag, &payload], &[4004], &mut used, TIMEOUT)
            .unwrap();
        assert_eq!(used.len, 4004);
        assert_eq!(&used.data[..4], &tag);
    }
    let elapsed = start.elapsed();
    eprintln!(
        "1000 echo requests of 4 KiB: {elapsed:?} ({:?} per round trip)",
        elapsed / 1000
    );
    assert_eq!(q.free_descriptors(), 16);
    let bases = fe.disconnect().unwrap();
    assert_eq!(bases[0], 1000);
    d.join();
}

#[test]
fn small_request_round_trip_time() {
    let d = Daemon::start();
    let mut fe = d.connect(FrontendOptions {
        zero_writable: false,
        ..opts()
    });
    let q = fe.queue(0).unwrap();
    let mut used = Default::default();
    for _ in 0..100 {
        q.request_into(&[b"warm"], &[8], &mut used, TIMEOUT)
            .unwrap();
    }
    let n = 5000u32;
    let start = Instant::now();
    for _ in 0..n {
        q.request_into(&[b"ping"], &[8], &mut used, TIMEOUT)
            .unwrap();
    }
    let elapsed = start.elapsed();
    eprintln!(
        "{n} echo requests of 4 bytes: {:?} per round trip",
        elapsed / n
    );
    assert_eq!(used.data, b"ping");

    // Pipelined: keep 32 requests in flight.
    let depth = 32u32;
    for _ in 0..depth {
        q.add(&[b"pipe"], &[8]).unwrap();
    }
    q.kick().unwrap();
    let start = Instant::now();
    for _ in 0..n {
        q.wait_used_into(&mut used, TIMEOUT).unwrap();
        assert_eq!(used.data, b"pipe");
        q.add(&[b"pipe"], &[8]).unwrap();
        q.kick().unwrap();
    }
    let elapsed = start.elapsed();
    for _ in 0..depth {
        q.wait_used_into(&mut used, TIMEOUT).unwrap();
    }
    eprintln!(
        "{n} echo requests of 4 bytes, {depth} in flight: {:?} per request",
        elapsed / n
    );
    drop(fe);
    d.join();
}

fn pipelined(fe: &mut TestFrontend, queue: usize, indirect: bool) {
    let q = fe.queue(queue).unwrap();
    let mut expected = HashMap::new();
    for i in 0..64u32 {
        let msg = format!("message {i} ").repeat(i as usize % 7 + 1);
        let head = if indirect {
            q.add_indirect(&[msg.as_bytes()], &[8, 1000]).unwrap()
        } else {
            q.add(&[msg.as_bytes()], &[8, 1000]).unwrap()
        };
        assert!(expected.insert(head, msg).is_none());
    }
    assert_eq!(q.in_flight(), 64);
    q.kick().unwrap();
    for _ in 0..64 {
        let used = q.wait_used(TIMEOUT).unwrap();
        let msg = expected.remove(&used.head).unwrap();
        assert_eq!(used.data, msg.as_bytes());
        assert_eq!(used.len as usize, msg.len());
    }
    assert!(expected.is_empty());
    assert!(q.try_used().unwrap().is_none());
    assert_eq!(q.in_flight(), 0);
}

#[test]
fn pipelined_64_in_flight() {
    let d = Daemon::start();
    let mut fe = d.connect(opts());
    for _ in 0..20 {
        pipelined(&mut fe, 0, false);
        pipelined(&mut fe, 1, false);
    }
    fe.disconnect().unwrap();
    d.join();
}

#[test]
fn indirect_chains() {
    let d = Daemon::start();
    let mut fe = d.connect(opts());
    let q = fe.queue(0).unwrap();
    let used = q
        .add_indirect(&[b"in", b"direct"], &[3, 3, 3])
        .and_then(|_| q.kick())
        .and_then(|_| q.wait_used(TIMEOUT))
        .unwrap();
    assert_eq!(used.data, b"indirect");
    assert_eq!(used.len, 8);
    // A 64-entry indirect chain uses a single ring slot.
    let bufs: Vec<&[u8]> = (0..60).map(|_| &b"x"[..]).collect();
    q.add_indirect(&bufs, &[1; 4]).unwrap();
    assert_eq!(q.free_descriptors(), usize::from(q.size()) - 1);
    q.kick().unwrap();
    assert_eq!(q.wait_used(TIMEOUT).unwrap().data, b"xxxx");
    for _ in 0..10 {
        pipelined(&mut fe, 1, true);
    }
    // Without the feature, add_indirect refuses.
    drop(fe);
    d.join();
    let d = Daemon::start();
    let mut fe = d.connect(opts().without_features(INDIRECT_DESC));
    assert!(matches!(
        fe.queue(0).unwrap().add_indirect(&[b"a"], &[1]),
        Err(FrontendError::NotNegotiated(_))
    ));
    drop(fe);
    d.join();
}

#[test]
fn event_idx_on_and_off() {
    for event_idx in [true, false] {
        let d = Daemon::start();
        let o = if event_idx {
            opts()
        } else {
            opts().without_event_idx()
        };
        let mut fe = d.connect(o);
        assert_eq!(fe.acked_features() & EVENT_IDX != 0, event_idx);
        let q = fe.queue(0).unwrap();
        assert_eq!(q.event_idx(), event_idx);
        // Nothing new: no kick either way.
        assert!(!q.kick().unwrap());
        let mut kicks = 0;
        for i in 0..200u32 {
            q.add(&[&i.to_le_bytes()], &[4]).unwrap();
            // Under EVENT_IDX a kick may rightly be skipped when the device
            // has not yet re-armed `avail_event`: it re-checks the ring then.
            kicks += usize::from(q.kick().unwrap());
            assert_eq!(q.wait_used(TIMEOUT).unwrap().data, i.to_le_bytes());
        }
        if event_idx {
            assert!(kicks >= 1);
            // The idle device asked to be kicked at the next avail index.
            let deadline = Instant::now() + TIMEOUT;
            while q.avail_event().unwrap() != q.avail_idx() {
                assert!(Instant::now() < deadline, "avail_event never re-armed");
                thread::yield_now();
            }
        } else {
            // Nothing suppresses kicks without EVENT_IDX in this device.
            assert_eq!(kicks, 200);
        }
        // The next chain after an idle period always needs a kick.
        q.add(&[b"z"], &[1]).unwrap();
        assert!(q.kick().unwrap());
        q.wait_used(TIMEOUT).unwrap();
        pipelined(&mut fe, 0, false);
        fe.disconnect().unwrap();
        d.join();
    }
}

/// Whether `fd` (an eventfd) holds a count nobody has read yet, waiting up
/// to `timeout_ms` for one.
fn readable_within(fd: std::os::fd::RawFd, timeout_ms: libc::c_int) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&raw mut pfd, 1, timeout_ms) > 0 }
}

#[test]
fn event_idx_batches_kicks() {
    let d = Daemon::start();
    let mut fe = d.connect(opts());
    let q = fe.queue(1).unwrap();
    q.request(&[b"warm up"], &[8], TIMEOUT).unwrap();
    // Let the device re-arm notifications after the warm-up.
    let deadline = Instant::now() + TIMEOUT;
    while q.avail_event().unwrap() != q.avail_idx() {
        assert!(Instant::now() < deadline);
        thread::yield_now();
    }
    // And let the worker read the warm-up's kick: under load it may have
    // taken the warm-up chain on an earlier wake-up, with the kick still
    // unread, which would count as a second kick below.
    while readable_within(q.kick_fd(), 0) {
        assert!(Instant::now() < deadline);
        thread::yield_now();
    }
    let kicks_before = d.stats.kicks.load(Ordering::Relaxed);
    let chains_before = d.stats.chains.load(Ordering::Relaxed);
    // Publish 32 chains, then kick once: one notification for all of them.
    for i in 0..32u8 {
        q.add(&[&[i]], &[1]).unwrap();
    }
    assert!(q.kick().unwrap());
    let mut seen = 0;
    while seen < 32 {
        q.wait_used(TIMEOUT).unwrap();
        seen += 1;
    }
    assert_eq!(d.stats.kicks.load(Ordering::Relaxed) - kicks_before, 1);
    assert_eq!(d.stats.chains.load(Ordering::Relaxed) - chains_before, 32);
    drop(fe);
    d.join();
}

#[test]
fn config_space() {
    let d = Daemon::start();
    let mut fe = d.connect(opts());
    assert_eq!(fe.get_config(0, 8).unwrap(), ECHO_CONFIG);
    assert_eq!(fe.get_config(4, 2).unwrap(), [5, 6]);
    fe.set_config(2, &[0xaa, 0xbb]).unwrap();
    assert_eq!(fe.get_config(0, 4).unwrap(), [1, 2, 0xaa, 0xbb]);
    assert_eq!(d.config.read().unwrap().config[3], 0xbb);
    // The backend returns nothing for a range outside its config: an
    // error, and the connection stays usable.
    assert!(matches!(
        fe.get_config(6, 4),
        Err(FrontendError::BadReply { .. })
    ));
    assert_eq!(fe.get_config(7, 1).unwrap(), [8]);
    fe.queue(0)
        .unwrap()
        .request(&[b"ok"], &[2], TIMEOUT)
        .unwrap();
    drop(fe);
    d.join();
}

#[test]
fn config_needs_the_protocol_feature() {
    let d = Daemon::start();
    let mut fe = d.connect(FrontendOptions {
        protocol_features_mask: !VhostUserProtocolFeatures::CONFIG.bits(),
        ..opts()
    });
    assert!(matches!(
        fe.get_config(0, 4),
        Err(FrontendError::NotNegotiated(_))
    ));
    drop(fe);
    d.join();
}

#[test]
fn non_zero_guest_base() {
    let d = Daemon::start();
    let mut fe = d.connect(FrontendOptions {
        mem_base: 0x1_0000_0000,
        mem_size: 4 << 20,
        ..opts()
    });
    let q = fe.queue(0).unwrap();
    let (desc, _, _) = q.ring_addresses();
    assert!(desc >= 0x1_0000_0000);
    let used = q.request(&[b"high memory"], &[64], TIMEOUT).unwrap();
    assert_eq!(used.data, b"high memory");
    fe.disconnect().unwrap();
    d.join();
}

#[test]
fn fewer_queues_than_offered() {
    let d = Daemon::start();
    let mut fe = d.connect(FrontendOptions {
        num_queues: Some(1),
        ..opts()
    });
    assert_eq!(fe.num_queues(), 1);
    fe.queue(0)
        .unwrap()
        .request(&[b"a"], &[1], TIMEOUT)
        .unwrap();
    drop(fe);
    d.join();

    let d = Daemon::start();
    let err = TestFrontend::connect_retry(
        &d.path,
        FrontendOptions {
            num_queues: Some(3),
            ..opts()
        },
        TIMEOUT,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        FrontendError::QueueCount {
            requested: 3,
            available: 2
        }
    ));
    d.join();
}

#[test]
fn raw_chains() {
    let d = Daemon::start();
    let mut fe = d.connect(opts());
    let q = fe.queue(0).unwrap();
    let (scratch, len) = q.scratch();
    assert!(len >= 4096);
    q.memory()
        .write_slice(b"raw!", vm_memory::GuestAddress(scratch))
        .unwrap();
    let head = q
        .add_raw(&[
            RawDesc::readable(scratch, 4, Some(1)),
            RawDesc::writable(scratch + 64, 16, None),
        ])
        .unwrap();
    q.kick().unwrap();
    let used = q.wait_used(TIMEOUT).unwrap();
    assert_eq!((used.head, used.len), (head, 4));
    assert!(used.data.is_empty());
    let mut out = [0u8; 4];
    q.memory()
        .read_slice(&mut out, vm_memory::GuestAddress(scratch + 64))
        .unwrap();
    assert_eq!(&out, b"raw!");

    // A buffer outside guest memory: the echo device returns it unused.
    q.add_raw(&[RawDesc::readable(1 << 40, 4, None)]).unwrap();
    q.kick().unwrap();
    assert_eq!(q.wait_used(TIMEOUT).unwrap().len, 0);

    // A hand-made indirect table in the scratch area.
    let table = scratch + 1024;
    let entries = [
        RawDesc::readable(scratch, 4, Some(1)),
        RawDesc::writable(scratch + 128, 4, None),
    ];
    for (i, e) in entries.iter().enumerate() {
        q.memory()
            .write_slice(
                &e.to_bytes(),
                vm_memory::GuestAddress(table + 16 * i as u64),
            )
            .unwrap();
    }
    q.add_raw(&[RawDesc {
        addr: table,
        len: 32,
        flags: vhost_device_common::testing::VIRTQ_DESC_F_INDIRECT,
        next: 0,
    }])
    .unwrap();
    q.kick().unwrap();
    assert_eq!(q.wait_used(TIMEOUT).unwrap().len, 4);

    // A loop (1 -> 0 -> 1 ...) and a `next` past the table: the frontend
    // writes them as asked and gets the slots back when they are returned.
    q.write_guest(scratch, b"loop").unwrap();
    q.add_raw(&[
        RawDesc::readable(scratch, 4, Some(1)),
        RawDesc::readable(scratch, 4, Some(0)),
    ])
    .unwrap();
    q.add_raw(&[RawDesc {
        addr: scratch,
        len: 4,
        flags: vhost_device_common::testing::VIRTQ_DESC_F_NEXT,
        next: 0xffff,
    }])
    .unwrap();
    q.kick().unwrap();
    q.wait_used(TIMEOUT).unwrap();
    q.wait_used(TIMEOUT).unwrap();
    assert_eq!(q.free_descriptors(), usize::from(q.size()));
    let mut back = [0u8; 4];
    q.read_guest(scratch, &mut back).unwrap();
    assert_eq!(&back, b"loop");
    assert!(matches!(
        q.write_guest(1 << 40, b"x"),
        Err(FrontendError::GuestMemory { .. })
    ));
    // The queue is still healthy.
    q.request(&[b"fine"], &[4], TIMEOUT).unwrap();
    fe.disconnect().unwrap();
    d.join();
}

#[test]
fn resource_errors() {
    let d = Daemon::start();
    let mut fe = d.connect(FrontendOptions {
        queue_size: 16,
        mem_size: 1 << 20,
        ..opts()
    });
    let q = fe.queue(0).unwrap();
    assert!(matches!(
        q.add(&[], &[]),
        Err(FrontendError::EmptyChain { queue: 0 })
    ));
    assert!(matches!(
        q.add(&[], &[1 << 30]),
        Err(FrontendError::NoBufferSpace { queue: 0, .. })
    ));
    assert!(matches!(
        q.add(&[], &[1; 17]),
        Err(FrontendError::NoDescriptors {
            needed: 17,
            free: 16,
            ..
        })
    ));
    for _ in 0..16 {
        q.add(&[b"x"], &[]).unwrap();
    }
    assert!(matches!(
        q.add(&[b"x"], &[]),
        Err(FrontendError::NoDescriptors { free: 0, .. })
    ));
    assert!(matches!(
        q.request(&[b"x"], &[1], TIMEOUT),
        Err(FrontendError::QueueBusy { in_flight: 16, .. })
    ));
    q.kick().unwrap();
    for _ in 0..16 {
        assert_eq!(q.wait_used(TIMEOUT).unwrap().len, 0);
    }
    // Nothing in flight: a short wait times out with context.
    let err = q.wait_used(Duration::from_millis(20)).unwrap_err();
    assert!(matches!(err, FrontendError::Timeout { queue: 0, .. }));
    assert!(err.to_string().contains("queue 0"), "{err}");
    // Everything was recycled.
    q.request(&[b"ok"], &[2], TIMEOUT).unwrap();
    fe.disconnect().unwrap();
    d.join();
}

#[test]
fn abort_and_reconnect_to_a_fresh_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    for round in 0..5 {
        let d = Daemon::start_at(&path);
        let mut fe = d.connect(opts());
        let q = fe.queue(0).unwrap();
        q.request(&[b"before"], &[6], TIMEOUT).unwrap();
        // Leave a request in flight and vanish.
        q.add(&[b"never answered?"], &[64]).unwrap();
        q.kick().unwrap();
        fe.abort();
        // The daemon notices the closed socket and its serve() returns.
        d.join();
        assert!(round < 5);
    }
}

#[test]
fn gpu_socket() {
    let d = Daemon::start();
    let mut fe = d.connect(opts());
    let mut gpu = fe.set_gpu_socket().unwrap();
    gpu.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut msg = [0u8; 24];
    gpu.read_exact(&mut msg).unwrap();
    let word = |i: usize| u32::from_le_bytes(msg[i..i + 4].try_into().unwrap());
    // CURSOR_POS (4), no flags, 12-byte payload {scanout 0, x 17, y 42}.
    assert_eq!(
        [word(0), word(4), word(8), word(12), word(16), word(20)],
        [4, 0, 12, 0, 17, 42]
    );
    assert!(d.config.read().unwrap().gpu.is_some());
    // The control connection still works afterwards.
    fe.queue(0)
        .unwrap()
        .request(&[b"ok"], &[2], TIMEOUT)
        .unwrap();
    fe.disconnect().unwrap();
    d.join();
}

#[test]
fn connect_retry_waits_for_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("late.sock");
    let p = path.clone();
    let starter = thread::spawn(move || {
        thread::sleep(Duration::from_millis(200));
        Daemon::start_at(&p)
    });
    let mut fe = TestFrontend::connect_retry(&path, opts(), TIMEOUT).unwrap();
    fe.queue(0)
        .unwrap()
        .request(&[b"late"], &[4], TIMEOUT)
        .unwrap();
    drop(fe);
    starter.join().unwrap().join();

    // Without the retry, a missing socket is an immediate error naming it.
    let err = TestFrontend::connect(dir.path().join("missing.sock"), opts()).unwrap_err();
    assert!(err.to_string().contains("missing.sock"), "{err}");
}

#[test]
fn queues_driven_from_threads() {
    let d = Daemon::start();
    let mut fe = d.connect(opts());
    let done = Mutex::new(0);
    thread::scope(|s| {
        for q in fe.queues_mut() {
            let done = &done;
            s.spawn(move || {
                let mut used = Default::default();
                for i in 0..500u32 {
                    let tag = [q.index() as u8, (i & 0xff) as u8];
                    q.request_into(&[&tag], &[2], &mut used, TIMEOUT).unwrap();
                    assert_eq!(used.data, tag);
                }
                *done.lock().unwrap() += 1;
            });
        }
    });
    assert_eq!(*done.lock().unwrap(), 2);
    let bases = fe.disconnect().unwrap();
    assert_eq!(bases, vec![500, 500]);
    d.join();
}

#[test]
fn own_polling_with_call_fd() {
    let d = Daemon::start();
    let mut fe = d.connect(opts());
    let q = fe.queue(0).unwrap();
    let mut used = Default::default();
    assert!(!q.try_used_into(&mut used).unwrap());
    for i in 0..100u32 {
        q.add(&[&i.to_le_bytes()], &[4]).unwrap();
        q.kick().unwrap();
        // What a load generator with its own poll loop would do.
        while !q.try_used_into(&mut used).unwrap() {
            assert!(readable_within(q.call_fd(), 5000), "no call within 5 s");
            let mut buf = [0u8; 8];
            // SAFETY: reading 8 bytes from an eventfd into an 8-byte buffer.
            unsafe { libc::read(q.call_fd(), buf.as_mut_ptr().cast(), 8) };
        }
        assert_eq!(used.data, i.to_le_bytes());
    }
    assert!(q.kick_fd() >= 0);
    drop(fe);
    d.join();
}

#[test]
fn buffers_across_memory_regions() {
    let d = Daemon::start();
    let mib = 1u64 << 20;
    let base = 0x8000_0000u64;
    let mut fe = d.connect(FrontendOptions {
        mem_base: base,
        mem_size: 4 << 20,
        mem_regions: 4,
        ..opts()
    });
    let q = fe.queue(0).unwrap();
    // A big request: its buffers cross the 1 MiB region boundary.
    let big: Vec<u8> = (0..900 * 1024u32).map(|i| (i % 251) as u8).collect();
    let used = q.request(&[&big], &[900 * 1024], TIMEOUT).unwrap();
    assert_eq!(used.len as usize, big.len());
    assert!(used.data == big, "data corrupted across regions");
    // Hand-placed buffers straddling the 2 MiB and 3 MiB boundaries.
    let rd = base + 2 * mib - 3;
    let wr = base + 3 * mib - 5;
    q.write_guest(rd, b"straddle").unwrap();
    q.add_raw(&[
        RawDesc::readable(rd, 8, Some(1)),
        RawDesc::writable(wr, 8, None),
    ])
    .unwrap();
    q.kick().unwrap();
    assert_eq!(q.wait_used(TIMEOUT).unwrap().len, 8);
    let mut out = [0u8; 8];
    q.read_guest(wr, &mut out).unwrap();
    assert_eq!(&out, b"straddle");
    fe.disconnect().unwrap();
    d.join();
}

#[test]
fn without_protocol_features_or_reply_ack() {
    // No VHOST_USER_F_PROTOCOL_FEATURES: rings start enabled, no
    // SET_VRING_ENABLE, no config space, a single queue unless told.
    let d = Daemon::start();
    let mut fe =
        d.connect(opts().without_features(VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits()));
    assert!(fe.protocol_features().is_empty());
    assert_eq!(fe.num_queues(), 1);
    let used = fe
        .queue(0)
        .unwrap()
        .request(&[b"plain"], &[5], TIMEOUT)
        .unwrap();
    assert_eq!(used.data, b"plain");
    assert!(matches!(
        fe.get_config(0, 1),
        Err(FrontendError::NotNegotiated(_))
    ));
    fe.disconnect().unwrap();
    d.join();

    // Protocol features but no REPLY_ACK: messages are not acked.
    let d = Daemon::start();
    let mut fe = d.connect(FrontendOptions {
        protocol_features_mask: !VhostUserProtocolFeatures::REPLY_ACK.bits(),
        ..opts()
    });
    assert!(!fe
        .protocol_features()
        .contains(VhostUserProtocolFeatures::REPLY_ACK));
    assert_eq!(fe.num_queues(), 2);
    let mut gpu = fe.set_gpu_socket().unwrap();
    gpu.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut msg = [0u8; 24];
    gpu.read_exact(&mut msg).unwrap();
    assert_eq!(fe.get_config(0, 2).unwrap(), [1, 2]);
    fe.queue(1)
        .unwrap()
        .request(&[b"ack-less"], &[8], TIMEOUT)
        .unwrap();
    fe.disconnect().unwrap();
    d.join();
}
