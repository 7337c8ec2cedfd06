//! An in-process vhost-user frontend: the role QEMU plays, for tests and
//! benchmarks.
//!
//! [`TestFrontend::connect`] connects to a backend's Unix socket, negotiates
//! features, shares a memfd as guest memory (`SET_MEM_TABLE`, the fd travels
//! with SCM_RIGHTS) and sets up and enables split virtqueues, each with its
//! own kick and call eventfds. A [`TestQueue`] then posts descriptor chains
//! built from readable and writable buffers, kicks, and waits for used
//! elements on the call eventfd.
//!
//! ```no_run
//! use std::time::Duration;
//! use vhost_device_common::testing::{FrontendOptions, TestFrontend};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let opts = FrontendOptions { num_queues: Some(1), ..Default::default() };
//! let mut fe = TestFrontend::connect_retry("/tmp/dev.sock", opts, Duration::from_secs(5))?;
//! let used = fe.queue(0)?.request(&[b"ping"], &[64], Duration::from_secs(1))?;
//! assert_eq!(used.data, b"ping");
//! fe.disconnect()?;
//! # Ok(())
//! # }
//! ```
//!
//! Guest memory layout (all page aligned): the rings of every queue, then a
//! scratch area per queue that the frontend never touches (for hand-made
//! chains, see [`TestQueue::add_raw`]), then the rest split evenly into one
//! data area per queue, from which chain buffers are allocated and recycled.

mod alloc;
mod error;
mod queue;
mod ring;

use std::fmt;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use vhost::vhost_user::message::{VhostUserConfigFlags, VhostUserHeaderFlag};
use vhost::vhost_user::{
    Frontend, VhostUserFrontend, VhostUserProtocolFeatures, VhostUserVirtioFeatures,
};
use vhost::{VhostBackend, VhostUserMemoryRegionInfo, VringConfigData};
use vm_memory::{FileOffset, GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

pub use self::error::FrontendError;
pub use self::queue::{RawDesc, TestQueue, Used};
pub use self::ring::{VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};

use self::queue::{QueueArea, QueueConfig};
use self::ring::{align_up, RingLayout};

const PAGE_SIZE: u64 = 4096;

/// `VIRTIO_RING_F_INDIRECT_DESC`.
const F_INDIRECT_DESC: u64 = 1 << 28;
/// `VIRTIO_RING_F_EVENT_IDX`.
const F_EVENT_IDX: u64 = 1 << 29;

/// Transport features this frontend does not implement and therefore never
/// acks, whatever the options say: `VHOST_F_LOG_ALL` (26), ACCESS_PLATFORM
/// (33, would need IOTLB messages), RING_PACKED (34), IN_ORDER (35, lets the
/// device return a batch through one used element), SR_IOV (37),
/// NOTIFICATION_DATA (38), NOTIF_CONFIG_DATA (39), ADMIN_VQ (41).
///
/// RING_RESET (40) is acked when offered: it only permits the driver to
/// reset single queues, which this frontend simply never does.
pub const UNSUPPORTED_FEATURES: u64 =
    1 << 26 | 1 << 33 | 1 << 34 | 1 << 35 | 1 << 37 | 1 << 38 | 1 << 39 | 1 << 41;

/// Protocol features this frontend knows how to use; others are never acked.
pub fn supported_protocol_features() -> VhostUserProtocolFeatures {
    VhostUserProtocolFeatures::MQ
        | VhostUserProtocolFeatures::REPLY_ACK
        | VhostUserProtocolFeatures::CONFIG
        | VhostUserProtocolFeatures::RESET_DEVICE
}

/// `VHOST_USER_GPU_SET_SOCKET`: not wrapped by `vhost::vhost_user::Frontend`.
const GPU_SET_SOCKET: u32 = 33;
/// `VHOST_USER_GET_CONFIG`, sent by hand (see [`TestFrontend::get_config`]).
const GET_CONFIG: u32 = 24;
/// The vhost-user message size limit (4096) minus the config body.
const MAX_CONFIG_PAYLOAD: usize = 4096 - 12;

/// How [`TestFrontend::connect`] sets up the device.
#[derive(Debug, Clone)]
pub struct FrontendOptions {
    /// Guest memory size in bytes (a multiple of 4096). Default 16 MiB.
    pub mem_size: usize,
    /// Guest physical address of the first byte of guest memory, so tests
    /// can check that a backend translates addresses. Default 0.
    pub mem_base: u64,
    /// Size of every queue, a power of two. Default 256.
    pub queue_size: u16,
    /// Number of queues to set up. `None` means what GET_QUEUE_NUM reports
    /// when the backend offers the MQ protocol feature, else 1.
    pub num_queues: Option<usize>,
    /// AND-mask over the device's virtio features: clear a bit to refuse
    /// it (e.g. `!(1 << 29)` to run without EVENT_IDX). Default all ones.
    pub features_mask: u64,
    /// AND-mask over the protocol features this frontend supports
    /// (MQ, REPLY_ACK, CONFIG, RESET_DEVICE). Default all ones.
    pub protocol_features_mask: u64,
    /// Read/write timeout of the control socket. It bounds the messages this
    /// module exchanges itself (GET_CONFIG, GPU_SET_SOCKET); the `vhost`
    /// crate retries timed-out reads, so a backend that never answers one of
    /// the other messages still blocks. Default 5 s.
    pub timeout: Duration,
    /// Size of each queue's scratch area. Default 64 KiB.
    pub scratch_size: u64,
    /// Zero the writable buffers of every chain before posting it, so that
    /// stale bytes from an earlier request cannot pass for a reply. Default
    /// true; benchmarks may turn it off.
    pub zero_writable: bool,
}

impl Default for FrontendOptions {
    fn default() -> Self {
        FrontendOptions {
            mem_size: 16 << 20,
            mem_base: 0,
            queue_size: 256,
            num_queues: None,
            features_mask: !0,
            protocol_features_mask: !0,
            timeout: Duration::from_secs(5),
            scratch_size: 64 << 10,
            zero_writable: true,
        }
    }
}

impl FrontendOptions {
    /// These options with the virtio feature bits in `bits` refused.
    pub fn without_features(mut self, bits: u64) -> Self {
        self.features_mask &= !bits;
        self
    }

    /// These options with EVENT_IDX refused.
    pub fn without_event_idx(self) -> Self {
        self.without_features(F_EVENT_IDX)
    }

    fn validate(&self) -> Result<(), FrontendError> {
        let bad = |m: String| Err(FrontendError::InvalidOptions(m));
        if self.queue_size == 0 || !self.queue_size.is_power_of_two() {
            return bad(format!(
                "queue size {} is not a power of two",
                self.queue_size
            ));
        }
        if self.queue_size > 32768 {
            return bad(format!("queue size {} exceeds 32768", self.queue_size));
        }
        if self.mem_size == 0 || self.mem_size as u64 % PAGE_SIZE != 0 {
            return bad(format!(
                "memory size {:#x} is not a non-zero multiple of 4096",
                self.mem_size
            ));
        }
        if self.mem_base % PAGE_SIZE != 0 {
            return bad(format!(
                "memory base {:#x} is not page aligned",
                self.mem_base
            ));
        }
        if self.mem_base.checked_add(self.mem_size as u64).is_none() {
            return bad("memory base + size overflows".to_string());
        }
        if self.num_queues == Some(0) {
            return bad("zero queues".to_string());
        }
        Ok(())
    }
}

/// Splits guest memory between `nq` queues: rings, then scratch areas, then
/// data areas.
fn plan_memory(
    base: u64,
    size: u64,
    nq: usize,
    queue_size: u16,
    scratch_size: u64,
) -> Result<Vec<QueueArea>, FrontendError> {
    let nq64 = nq as u64;
    let rings = align_up(RingLayout::new(queue_size).total, PAGE_SIZE);
    let scratch = align_up(scratch_size, PAGE_SIZE);
    let fixed = nq64
        .checked_mul(rings + scratch)
        .filter(|&f| f < size)
        .ok_or_else(|| {
            FrontendError::InvalidOptions(format!(
                "{size:#x} bytes of guest memory cannot hold {nq} queues of {queue_size}"
            ))
        })?;
    let data = ((size - fixed) / nq64) & !(PAGE_SIZE - 1);
    if data == 0 {
        return Err(FrontendError::InvalidOptions(format!(
            "{size:#x} bytes of guest memory leave no data area for {nq} queues"
        )));
    }
    Ok((0..nq64)
        .map(|i| QueueArea {
            rings: base + i * rings,
            scratch: (base + nq64 * rings + i * scratch, scratch),
            data: (base + nq64 * (rings + scratch) + i * data, data),
        })
        .collect())
}

/// Creates `size` bytes of memfd-backed guest memory at GPA `base`, and the
/// region description SET_MEM_TABLE needs.
fn create_memory(
    size: usize,
    base: u64,
) -> Result<(GuestMemoryMmap, VhostUserMemoryRegionInfo), FrontendError> {
    // SAFETY: the name is a valid NUL-terminated string and the flags are
    // valid for memfd_create.
    let fd =
        unsafe { libc::memfd_create(c"vhost-device-test-frontend".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(FrontendError::Memory(format!(
            "memfd_create: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: `fd` was just returned by memfd_create, is open and is owned by
    // nothing else.
    let file = unsafe { File::from_raw_fd(fd) };
    file.set_len(size as u64)
        .map_err(|e| FrontendError::Memory(format!("memfd ftruncate to {size:#x}: {e}")))?;
    let mapping = MmapRegion::from_file(FileOffset::new(file, 0), size)
        .map_err(|e| FrontendError::Memory(format!("mmap of {size:#x} bytes: {e}")))?;
    let region = GuestRegionMmap::new(mapping, GuestAddress(base))
        .ok_or_else(|| FrontendError::Memory(format!("region at {base:#x} overflows")))?;
    let info = VhostUserMemoryRegionInfo::from_guest_region(&region)
        .map_err(|e| FrontendError::Memory(format!("region description: {e}")))?;
    let mem = GuestMemoryMmap::from_regions(vec![region])
        .map_err(|e| FrontendError::Memory(format!("guest memory: {e}")))?;
    Ok((mem, info))
}

/// An in-process vhost-user frontend connected to one backend.
///
/// Dropping it closes the connection abruptly, like [`TestFrontend::abort`].
pub struct TestFrontend {
    frontend: Frontend,
    /// A second handle on the control socket, for messages the `vhost`
    /// crate does not wrap and for shutting the connection down.
    sock: UnixStream,
    path: Option<PathBuf>,
    mem: GuestMemoryMmap,
    device_features: u64,
    acked_features: u64,
    device_protocol_features: VhostUserProtocolFeatures,
    protocol_features: VhostUserProtocolFeatures,
    queues: Vec<TestQueue>,
    timeout: Duration,
}

impl fmt::Debug for TestFrontend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestFrontend")
            .field("path", &self.path)
            .field(
                "device_features",
                &format_args!("{:#x}", self.device_features),
            )
            .field(
                "acked_features",
                &format_args!("{:#x}", self.acked_features),
            )
            .field("protocol_features", &self.protocol_features)
            .field("queues", &self.queues)
            .finish_non_exhaustive()
    }
}

impl TestFrontend {
    /// Connects to the backend listening on `path` and initialises it
    /// completely: features, memory table, and every queue set up and
    /// enabled.
    pub fn connect(path: impl AsRef<Path>, opts: FrontendOptions) -> Result<Self, FrontendError> {
        let path = path.as_ref();
        opts.validate()?;
        let stream = UnixStream::connect(path).map_err(|source| FrontendError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
        Self::setup(stream, Some(path.to_path_buf()), opts)
    }

    /// Like [`TestFrontend::connect`], but keeps trying for up to `wait`
    /// while the socket does not exist or refuses connections: the daemon
    /// may still be starting.
    pub fn connect_retry(
        path: impl AsRef<Path>,
        opts: FrontendOptions,
        wait: Duration,
    ) -> Result<Self, FrontendError> {
        let path = path.as_ref();
        opts.validate()?;
        let deadline = Instant::now() + wait;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                    ) && Instant::now() < deadline =>
                {
                    thread::sleep(Duration::from_millis(5));
                }
                Err(source) => {
                    return Err(FrontendError::Connect {
                        path: path.to_path_buf(),
                        source,
                    })
                }
            }
        };
        Self::setup(stream, Some(path.to_path_buf()), opts)
    }

    /// Initialises a backend over an already connected socket (e.g. one end
    /// of a `socketpair` handed to a daemon).
    pub fn from_stream(stream: UnixStream, opts: FrontendOptions) -> Result<Self, FrontendError> {
        opts.validate()?;
        Self::setup(stream, None, opts)
    }

    fn setup(
        stream: UnixStream,
        path: Option<PathBuf>,
        opts: FrontendOptions,
    ) -> Result<Self, FrontendError> {
        // The socket options are per socket, so they also apply to the
        // `vhost` crate's handle, which cannot set them itself.
        stream
            .set_read_timeout(Some(opts.timeout))
            .and_then(|()| stream.set_write_timeout(Some(opts.timeout)))
            .map_err(FrontendError::io("setting the control socket timeout"))?;
        let sock = stream
            .try_clone()
            .map_err(FrontendError::io("duplicating the control socket"))?;
        let mut frontend =
            Frontend::from_stream(stream, vhost::vhost_user::message::VHOST_USER_MAX_VRINGS);

        let device_features = frontend
            .get_features()
            .map_err(FrontendError::vhost("GET_FEATURES"))?;
        let acked_features = device_features & opts.features_mask & !UNSUPPORTED_FEATURES;
        let has_protocol = acked_features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0;

        let (device_protocol_features, protocol_features) = if has_protocol {
            let offered = frontend
                .get_protocol_features()
                .map_err(FrontendError::vhost("GET_PROTOCOL_FEATURES"))?;
            let acked = offered
                & supported_protocol_features()
                & VhostUserProtocolFeatures::from_bits_truncate(opts.protocol_features_mask);
            frontend
                .set_protocol_features(acked)
                .map_err(FrontendError::vhost("SET_PROTOCOL_FEATURES"))?;
            if acked.contains(VhostUserProtocolFeatures::REPLY_ACK) {
                // Without this the `vhost` crate never waits for acks and a
                // rejected message would go unnoticed.
                frontend.set_hdr_flags(VhostUserHeaderFlag::NEED_REPLY);
            }
            (offered, acked)
        } else {
            (
                VhostUserProtocolFeatures::empty(),
                VhostUserProtocolFeatures::empty(),
            )
        };

        let num_queues = if protocol_features.contains(VhostUserProtocolFeatures::MQ) {
            let available = frontend
                .get_queue_num()
                .map_err(FrontendError::vhost("GET_QUEUE_NUM"))?;
            let available = usize::try_from(available).unwrap_or(usize::MAX);
            let requested = opts.num_queues.unwrap_or(available);
            if requested > available || requested == 0 {
                return Err(FrontendError::QueueCount {
                    requested,
                    available,
                });
            }
            requested
        } else {
            opts.num_queues.unwrap_or(1)
        };

        frontend
            .set_owner()
            .map_err(FrontendError::vhost("SET_OWNER"))?;
        frontend
            .set_features(acked_features)
            .map_err(FrontendError::vhost("SET_FEATURES"))?;

        let (mem, region) = create_memory(opts.mem_size, opts.mem_base)?;
        frontend
            .set_mem_table(&[region])
            .map_err(FrontendError::vhost("SET_MEM_TABLE"))?;
        let host_base = region.userspace_addr;

        let areas = plan_memory(
            opts.mem_base,
            opts.mem_size as u64,
            num_queues,
            opts.queue_size,
            opts.scratch_size,
        )?;
        let mut queues = Vec::with_capacity(num_queues);
        for (index, area) in areas.into_iter().enumerate() {
            let cfg = QueueConfig {
                index,
                size: opts.queue_size,
                event_idx: acked_features & F_EVENT_IDX != 0,
                indirect: acked_features & F_INDIRECT_DESC != 0,
                zero_writable: opts.zero_writable,
            };
            let q = TestQueue::new(cfg, mem.clone(), area)?;
            Self::setup_queue(&mut frontend, &q, host_base - opts.mem_base, has_protocol)?;
            queues.push(q);
        }

        Ok(TestFrontend {
            frontend,
            sock,
            path,
            mem,
            device_features,
            acked_features,
            device_protocol_features,
            protocol_features,
            queues,
            timeout: opts.timeout,
        })
    }

    /// Sends the per-queue messages. `hva_offset` turns a GPA into our
    /// virtual address, which is what SET_VRING_ADDR carries.
    fn setup_queue(
        frontend: &mut Frontend,
        q: &TestQueue,
        hva_offset: u64,
        enable: bool,
    ) -> Result<(), FrontendError> {
        let i = q.index();
        let (desc, avail, used) = q.ring_addresses();
        frontend
            .set_vring_num(i, q.size())
            .map_err(FrontendError::vhost(format!("SET_VRING_NUM({i})")))?;
        let config = VringConfigData {
            queue_max_size: q.size(),
            queue_size: q.size(),
            flags: 0,
            desc_table_addr: desc.wrapping_add(hva_offset),
            used_ring_addr: used.wrapping_add(hva_offset),
            avail_ring_addr: avail.wrapping_add(hva_offset),
            log_addr: None,
        };
        frontend
            .set_vring_addr(i, &config)
            .map_err(FrontendError::vhost(format!("SET_VRING_ADDR({i})")))?;
        frontend
            .set_vring_base(i, 0)
            .map_err(FrontendError::vhost(format!("SET_VRING_BASE({i})")))?;
        // CALL before KICK: a vhost-user-backend ring starts on the kick.
        frontend
            .set_vring_call(i, q.call_eventfd())
            .map_err(FrontendError::vhost(format!("SET_VRING_CALL({i})")))?;
        frontend
            .set_vring_kick(i, q.kick_eventfd())
            .map_err(FrontendError::vhost(format!("SET_VRING_KICK({i})")))?;
        if enable {
            frontend
                .set_vring_enable(i, true)
                .map_err(FrontendError::vhost(format!("SET_VRING_ENABLE({i}, 1)")))?;
        }
        Ok(())
    }

    /// The virtio features the device offered (GET_FEATURES).
    pub fn device_features(&self) -> u64 {
        self.device_features
    }

    /// The virtio features acked with SET_FEATURES.
    pub fn acked_features(&self) -> u64 {
        self.acked_features
    }

    /// The protocol features the device offered (GET_PROTOCOL_FEATURES).
    pub fn device_protocol_features(&self) -> VhostUserProtocolFeatures {
        self.device_protocol_features
    }

    /// The protocol features acked with SET_PROTOCOL_FEATURES.
    pub fn protocol_features(&self) -> VhostUserProtocolFeatures {
        self.protocol_features
    }

    /// Number of queues set up.
    pub fn num_queues(&self) -> usize {
        self.queues.len()
    }

    /// Queue `index`.
    pub fn queue(&mut self, index: usize) -> Result<&mut TestQueue, FrontendError> {
        let count = self.queues.len();
        self.queues
            .get_mut(index)
            .ok_or(FrontendError::NoSuchQueue { index, count })
    }

    /// All queues, e.g. to drive several at once from scoped threads.
    pub fn queues_mut(&mut self) -> &mut [TestQueue] {
        &mut self.queues
    }

    /// The guest memory shared with the backend.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// The socket path, if connected by path.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Reads `len` bytes of device config space at `offset` (GET_CONFIG;
    /// needs the CONFIG protocol feature).
    ///
    /// Sent by hand rather than through `vhost::vhost_user::Frontend`: that
    /// one expects the full payload even when the backend signals failure
    /// with an empty reply, and then blocks forever.
    pub fn get_config(&mut self, offset: u32, len: u32) -> Result<Vec<u8>, FrontendError> {
        const MSG: &str = "GET_CONFIG";
        if !self
            .protocol_features
            .contains(VhostUserProtocolFeatures::CONFIG)
        {
            return Err(FrontendError::NotNegotiated("VHOST_USER_PROTOCOL_F_CONFIG"));
        }
        let payload_len = len as usize;
        if payload_len > MAX_CONFIG_PAYLOAD {
            return Err(FrontendError::InvalidOptions(format!(
                "GET_CONFIG of {len} bytes exceeds the {MAX_CONFIG_PAYLOAD}-byte message limit"
            )));
        }
        let mut msg = Vec::with_capacity(12 + 12 + payload_len);
        for v in [GET_CONFIG, 0x1, 12 + len, offset, len, 0] {
            msg.extend_from_slice(&v.to_le_bytes());
        }
        msg.resize(msg.len() + payload_len, 0);
        (&self.sock)
            .write_all(&msg)
            .map_err(FrontendError::io("sending GET_CONFIG"))?;
        let reply = self.read_reply(GET_CONFIG, MSG)?;
        let word = |i: usize| {
            reply
                .get(i..i + 4)
                .and_then(|s| s.try_into().ok())
                .map_or(0, u32::from_le_bytes)
        };
        if reply.len() < 12 {
            return Err(FrontendError::BadReply {
                msg: MSG,
                detail: format!("{} bytes, shorter than its body", reply.len()),
            });
        }
        if word(4) == 0 || reply.len() == 12 {
            return Err(FrontendError::BadReply {
                msg: MSG,
                detail: format!("backend rejected offset {offset} size {len}"),
            });
        }
        if word(0) != offset || word(4) != len || reply.len() != 12 + payload_len {
            return Err(FrontendError::BadReply {
                msg: MSG,
                detail: format!(
                    "asked offset {offset} size {len}, got offset {} size {} with {} bytes",
                    word(0),
                    word(4),
                    reply.len() - 12
                ),
            });
        }
        Ok(reply.get(12..).map(<[u8]>::to_vec).unwrap_or_default())
    }

    /// Reads one reply to message `code` from the control socket and returns
    /// its body, always consuming exactly what the header announces so the
    /// stream stays in sync.
    fn read_reply(&mut self, code: u32, msg: &'static str) -> Result<Vec<u8>, FrontendError> {
        let mut hdr = [0u8; 12];
        (&self.sock)
            .read_exact(&mut hdr)
            .map_err(FrontendError::io(format!("reading the {msg} reply")))?;
        let word = |i: usize| {
            hdr.get(i..i + 4)
                .and_then(|s| s.try_into().ok())
                .map_or(0, u32::from_le_bytes)
        };
        let (request, flags, size) = (word(0), word(4), word(8) as usize);
        if request != code || flags & VhostUserHeaderFlag::REPLY.bits() == 0 || size > 4096 {
            return Err(FrontendError::BadReply {
                msg,
                detail: format!("header request {request} flags {flags:#x} size {size}"),
            });
        }
        let mut body = vec![0u8; size];
        (&self.sock)
            .read_exact(&mut body)
            .map_err(FrontendError::io(format!("reading the {msg} reply body")))?;
        Ok(body)
    }

    /// Writes device config space at `offset` (SET_CONFIG; needs the CONFIG
    /// protocol feature). Flags are 0 ("front-end writes a writable field"),
    /// as QEMU sends.
    pub fn set_config(&mut self, offset: u32, data: &[u8]) -> Result<(), FrontendError> {
        self.frontend
            .set_config(offset, VhostUserConfigFlags::empty(), data)
            .map_err(FrontendError::vhost(format!(
                "SET_CONFIG({offset}, {})",
                data.len()
            )))
    }

    /// Sends `VHOST_USER_GPU_SET_SOCKET` with one end of a new socketpair and
    /// returns the other end, on which the backend will send GPU display
    /// requests. With REPLY_ACK negotiated, the backend's ack is awaited.
    pub fn set_gpu_socket(&mut self) -> Result<UnixStream, FrontendError> {
        let (ours, theirs) =
            UnixStream::pair().map_err(FrontendError::io("creating the GPU socketpair"))?;
        let reply_ack = self
            .protocol_features
            .contains(VhostUserProtocolFeatures::REPLY_ACK);
        let mut flags = 0x1;
        if reply_ack {
            flags |= VhostUserHeaderFlag::NEED_REPLY.bits();
        }
        let mut hdr = [0u8; 12];
        for (chunk, v) in hdr.chunks_exact_mut(4).zip([GPU_SET_SOCKET, flags, 0]) {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
        self.sock
            .send_with_fd(&hdr[..], theirs.as_raw_fd())
            .map_err(|e| FrontendError::Io {
                what: "sending GPU_SET_SOCKET".to_string(),
                source: std::io::Error::from_raw_os_error(e.errno()),
            })?;
        if reply_ack {
            let body = self.read_reply(GPU_SET_SOCKET, "GPU_SET_SOCKET")?;
            let status = body
                .get(..8)
                .and_then(|s| s.try_into().ok())
                .map(u64::from_le_bytes);
            match status {
                Some(0) => {}
                Some(status) => {
                    return Err(FrontendError::BadReply {
                        msg: "GPU_SET_SOCKET",
                        detail: format!("backend rejected it (status {status})"),
                    })
                }
                None => {
                    return Err(FrontendError::BadReply {
                        msg: "GPU_SET_SOCKET",
                        detail: format!("{}-byte ack", body.len()),
                    })
                }
            }
        }
        Ok(ours)
    }

    /// The underlying `vhost` frontend, for protocol tests that send
    /// messages by hand. Messages sent this way bypass the queue state kept
    /// here.
    pub fn raw(&mut self) -> &mut Frontend {
        &mut self.frontend
    }

    /// Orderly shutdown, as QEMU stops a device: SET_VRING_ENABLE(0) (when
    /// protocol features are in use) and GET_VRING_BASE for every queue,
    /// then close. Returns each queue's next avail index as the backend
    /// reported it.
    pub fn disconnect(mut self) -> Result<Vec<u32>, FrontendError> {
        let enable = self.acked_features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0;
        let mut bases = Vec::with_capacity(self.queues.len());
        for i in 0..self.queues.len() {
            if enable {
                self.frontend
                    .set_vring_enable(i, false)
                    .map_err(FrontendError::vhost(format!("SET_VRING_ENABLE({i}, 0)")))?;
            }
            let base = self
                .frontend
                .get_vring_base(i)
                .map_err(FrontendError::vhost(format!("GET_VRING_BASE({i})")))?;
            bases.push(base);
        }
        self.close();
        Ok(bases)
    }

    /// Closes the connection abruptly without sending anything, as when the
    /// VMM is killed.
    pub fn abort(mut self) {
        self.close();
    }

    fn close(&mut self) {
        // Shut the socket down rather than only dropping our handles: a
        // clone of the `Frontend` obtained through `raw()` would otherwise
        // keep the connection open.
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
    }

    /// The control-socket timeout from the options.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

impl Drop for TestFrontend {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use vm_memory::GuestMemoryBackend;

    #[test]
    fn memory_plan_is_disjoint_and_in_bounds() {
        let base = 0x1_0000_0000;
        let size = 16 << 20;
        let areas = plan_memory(base, size, 3, 256, 64 << 10).unwrap();
        assert_eq!(areas.len(), 3);
        let mut ranges = Vec::new();
        for a in &areas {
            ranges.push((a.rings, RingLayout::new(256).total));
            ranges.push(a.scratch);
            ranges.push(a.data);
            assert_eq!(a.rings % PAGE_SIZE, 0);
            assert_eq!(a.data.0 % PAGE_SIZE, 0);
            assert!(a.data.1 > 5 << 20);
        }
        for (i, &(s, l)) in ranges.iter().enumerate() {
            assert!(s >= base && s + l <= base + size);
            for &(s2, l2) in &ranges[i + 1..] {
                assert!(s + l <= s2 || s2 + l2 <= s, "overlap");
            }
        }
    }

    #[test]
    fn memory_plan_rejects_too_small() {
        assert!(matches!(
            plan_memory(0, 8192, 2, 256, 4096),
            Err(FrontendError::InvalidOptions(_))
        ));
        assert_eq!(plan_memory(0, 3 * 4096, 1, 16, 4096).unwrap().len(), 1);
    }

    #[test]
    fn options_are_validated() {
        FrontendOptions::default().validate().unwrap();
        for bad in [
            FrontendOptions {
                queue_size: 100,
                ..Default::default()
            },
            FrontendOptions {
                mem_size: 1000,
                ..Default::default()
            },
            FrontendOptions {
                mem_base: 12,
                ..Default::default()
            },
            FrontendOptions {
                num_queues: Some(0),
                ..Default::default()
            },
            FrontendOptions {
                mem_base: u64::MAX - 4095,
                ..Default::default()
            },
        ] {
            assert!(matches!(
                bad.validate(),
                Err(FrontendError::InvalidOptions(_))
            ));
        }
        let o = FrontendOptions::default().without_event_idx();
        assert_eq!(o.features_mask & F_EVENT_IDX, 0);
    }

    /// A queue over fresh memory, with the test playing the device by
    /// poking the rings directly.
    fn lone_queue(size: u16, event_idx: bool) -> (TestQueue, RingLayout, u64) {
        let base = 0x10_0000;
        let (mem, _) = create_memory(1 << 20, base).unwrap();
        let area = plan_memory(base, 1 << 20, 1, size, 4096).unwrap()[0];
        let cfg = QueueConfig {
            index: 0,
            size,
            event_idx,
            indirect: true,
            zero_writable: true,
        };
        (
            TestQueue::new(cfg, mem, area).unwrap(),
            RingLayout::new(size),
            area.rings,
        )
    }

    fn poke_u16(q: &TestQueue, gpa: u64, v: u16) {
        q.write_guest(gpa, &v.to_le_bytes()).unwrap();
    }

    fn peek_u16(q: &TestQueue, gpa: u64) -> u16 {
        let mut b = [0u8; 2];
        q.read_guest(gpa, &mut b).unwrap();
        u16::from_le_bytes(b)
    }

    /// Device side: return `head` with `len` at used index `idx`.
    fn device_use(q: &TestQueue, l: &RingLayout, rings: u64, idx: u16, head: u32, len: u32) {
        let mut elem = head.to_le_bytes().to_vec();
        elem.extend(len.to_le_bytes());
        q.write_guest(rings + l.used_entry(idx), &elem).unwrap();
        poke_u16(q, rings + l.used_idx(), idx.wrapping_add(1));
    }

    fn drain_kick(q: &TestQueue) -> u64 {
        let mut b = [0u8; 8];
        // SAFETY: reading 8 bytes from a non-blocking eventfd we own.
        let n = unsafe { libc::read(q.kick_fd(), b.as_mut_ptr().cast(), 8) };
        if n == 8 {
            u64::from_ne_bytes(b)
        } else {
            0
        }
    }

    #[test]
    fn chains_are_laid_out_as_the_spec_says() {
        let (mut q, l, rings) = lone_queue(8, false);
        let head = q.add(&[b"abc", b"de"], &[4]).unwrap();
        assert_eq!(peek_u16(&q, rings + l.avail_idx()), 1);
        assert_eq!(peek_u16(&q, rings + l.avail_entry(0)), head);
        // Walk the chain the way a device would.
        let mut descs = Vec::new();
        let mut i = head;
        loop {
            let mut d = [0u8; 16];
            q.read_guest(rings + l.desc_entry(i), &mut d).unwrap();
            let addr = u64::from_le_bytes(d[..8].try_into().unwrap());
            let len = u32::from_le_bytes(d[8..12].try_into().unwrap());
            let flags = u16::from_le_bytes(d[12..14].try_into().unwrap());
            let next = u16::from_le_bytes(d[14..].try_into().unwrap());
            descs.push((addr, len, flags & !VIRTQ_DESC_F_NEXT));
            if flags & VIRTQ_DESC_F_NEXT == 0 {
                break;
            }
            i = next;
        }
        assert_eq!(descs.len(), 3);
        assert_eq!(descs[0].1, 3);
        assert_eq!(descs[1], (descs[0].0 + 3, 2, 0));
        assert_eq!(descs[2], (descs[0].0 + 5, 4, VIRTQ_DESC_F_WRITE));
        let mut data = [0u8; 5];
        q.read_guest(descs[0].0, &mut data).unwrap();
        assert_eq!(&data, b"abcde");
        // The device writes a reply and returns the chain.
        q.write_guest(descs[2].0, b"wxyz").unwrap();
        device_use(&q, &l, rings, 0, u32::from(head), 3);
        let used = q.try_used().unwrap().unwrap();
        assert_eq!((used.head, used.len, used.data), (head, 3, b"wxy".to_vec()));
        assert_eq!(q.free_descriptors(), 8);
    }

    #[test]
    fn kicks_honour_no_notify_without_event_idx() {
        let (mut q, l, rings) = lone_queue(8, false);
        assert!(!q.kick().unwrap());
        q.add(&[b"a"], &[]).unwrap();
        assert!(q.kick().unwrap());
        assert_eq!(drain_kick(&q), 1);
        poke_u16(&q, rings + l.used_flags(), 1);
        q.add(&[b"b"], &[]).unwrap();
        assert!(!q.kick().unwrap());
        assert_eq!(drain_kick(&q), 0);
        // notify() ignores suppression.
        q.notify().unwrap();
        assert_eq!(drain_kick(&q), 1);
    }

    #[test]
    fn kicks_honour_avail_event() {
        let (mut q, l, rings) = lone_queue(8, true);
        // avail_event 0: the first chain (index 0 -> 1) needs a kick.
        q.add(&[b"a"], &[]).unwrap();
        assert!(q.kick().unwrap());
        // Device says "kick me when you publish index 3".
        poke_u16(&q, rings + l.avail_event(), 3);
        q.add(&[b"b"], &[]).unwrap(); // 1 -> 2
        assert!(!q.kick().unwrap());
        q.add(&[b"c"], &[]).unwrap(); // 2 -> 3
        assert!(!q.kick().unwrap());
        q.add(&[b"d"], &[]).unwrap(); // 3 -> 4 crosses 3
        assert!(q.kick().unwrap());
        // Several chains in one batch crossing the event: one kick.
        poke_u16(&q, rings + l.avail_event(), 5);
        q.add(&[b"e"], &[]).unwrap();
        q.add(&[b"f"], &[]).unwrap();
        assert!(q.kick().unwrap());
        assert_eq!(drain_kick(&q), 3);
    }

    #[test]
    fn used_event_asks_for_the_next_element() {
        let (mut q, l, rings) = lone_queue(8, true);
        let h0 = q.add(&[b"a"], &[]).unwrap();
        let h1 = q.add(&[b"b"], &[]).unwrap();
        device_use(&q, &l, rings, 0, u32::from(h1), 0);
        device_use(&q, &l, rings, 1, u32::from(h0), 0);
        // Out of order completion is fine.
        assert_eq!(q.try_used().unwrap().unwrap().head, h1);
        assert_eq!(peek_u16(&q, rings + l.used_event()), 1);
        assert_eq!(q.try_used().unwrap().unwrap().head, h0);
        assert_eq!(peek_u16(&q, rings + l.used_event()), 2);
        assert!(q.try_used().unwrap().is_none());
        assert!(matches!(
            q.wait_used(Duration::from_millis(10)),
            Err(FrontendError::Timeout { .. })
        ));
        assert_eq!(q.in_flight(), 0);
    }

    #[test]
    fn device_errors_are_reported() {
        let (mut q, l, rings) = lone_queue(8, false);
        let h = q.add(&[b"a"], &[]).unwrap();
        // An id that was never posted.
        device_use(&q, &l, rings, 0, u32::from(h) + 1, 0);
        assert!(matches!(
            q.try_used(),
            Err(FrontendError::BadUsedId { id, .. }) if id == u32::from(h) + 1
        ));
        // An id beyond the queue.
        device_use(&q, &l, rings, 0, 1000, 0);
        assert!(matches!(
            q.try_used(),
            Err(FrontendError::BadUsedId { id: 1000, .. })
        ));
        // used.idx jumping past what is in flight.
        poke_u16(&q, rings + l.used_idx(), 5);
        assert!(matches!(
            q.try_used(),
            Err(FrontendError::BadUsedIdx { now: 5, .. })
        ));
        // Returning the right chain still works.
        device_use(&q, &l, rings, 0, u32::from(h), 0);
        assert_eq!(q.try_used().unwrap().unwrap().head, h);
    }

    #[test]
    fn stale_reply_bytes_are_zeroed() {
        let (mut q, l, rings) = lone_queue(8, false);
        for round in 0..2u8 {
            let h = q.add(&[], &[4]).unwrap();
            let mut d = [0u8; 16];
            q.read_guest(rings + l.desc_entry(h), &mut d).unwrap();
            let addr = u64::from_le_bytes(d[..8].try_into().unwrap());
            let mut buf = [0xffu8; 4];
            q.read_guest(addr, &mut buf).unwrap();
            assert_eq!(buf, [0; 4], "round {round}");
            q.write_guest(addr, &[0xab; 4]).unwrap();
            device_use(&q, &l, rings, u16::from(round), u32::from(h), 4);
            assert_eq!(q.try_used().unwrap().unwrap().data, [0xab; 4]);
        }
    }

    #[test]
    fn memory_is_memfd_backed_at_base() {
        let (mem, info) = create_memory(1 << 20, 0x4000_0000).unwrap();
        assert_eq!(info.guest_phys_addr, 0x4000_0000);
        assert_eq!(info.memory_size, 1 << 20);
        assert!(info.mmap_handle >= 0);
        let host = mem.get_host_address(GuestAddress(0x4000_0000)).unwrap();
        assert_eq!(host as u64, info.userspace_addr);
    }
}
