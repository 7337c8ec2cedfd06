// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The control-plane side: connection, negotiation and set-up.

use std::fmt;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use vhost::vhost_user::message::{VhostUserConfigFlags, VhostUserHeaderFlag};
use vhost::vhost_user::{
    Frontend, VhostUserFrontend, VhostUserProtocolFeatures, VhostUserVirtioFeatures,
};
use vhost::{VhostBackend, VringConfigData};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap};
use vmm_sys_util::sock_ctrl_msg::ScmSocket;

use super::error::FrontendError;
use super::memory::{create_memory, plan_memory};
use super::options::{
    supported_protocol_features, FrontendOptions, F_EVENT_IDX, F_INDIRECT_DESC,
    UNSUPPORTED_FEATURES,
};
use super::queue::{QueueConfig, TestQueue};

/// `VHOST_USER_GPU_SET_SOCKET`: not wrapped by `vhost::vhost_user::Frontend`.
const GPU_SET_SOCKET: u32 = 33;
/// `VHOST_USER_GET_CONFIG`, sent by hand (see [`TestFrontend::get_config`]).
const GET_CONFIG: u32 = 24;
/// The vhost-user message size limit (4096) minus the config body.
const MAX_CONFIG_PAYLOAD: usize = 4096 - 12;

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
        // Timeouts are per socket, so they cover both handles. They bound
        // the replies read here; the `vhost` crate retries a timed-out read,
        // so its own calls stay blocking.
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

        let (mem, regions) = create_memory(opts.mem_size, opts.mem_base, opts.mem_regions)?;
        frontend
            .set_mem_table(&regions)
            .map_err(FrontendError::vhost("SET_MEM_TABLE"))?;

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
            Self::setup_queue(&mut frontend, &q, &mem, has_protocol)?;
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

    /// Sends the per-queue messages. SET_VRING_ADDR carries our own virtual
    /// addresses, hence the translation through `mem`.
    fn setup_queue(
        frontend: &mut Frontend,
        q: &TestQueue,
        mem: &GuestMemoryMmap,
        enable: bool,
    ) -> Result<(), FrontendError> {
        let i = q.index();
        let (desc, avail, used) = q.ring_addresses();
        let hva = |gpa: u64| {
            mem.get_host_address(GuestAddress(gpa))
                .map(|p| p as u64)
                .map_err(FrontendError::mem(gpa))
        };
        frontend
            .set_vring_num(i, q.size())
            .map_err(FrontendError::vhost(format!("SET_VRING_NUM({i})")))?;
        let config = VringConfigData {
            queue_max_size: q.size(),
            queue_size: q.size(),
            flags: 0,
            desc_table_addr: hva(desc)?,
            used_ring_addr: hva(used)?,
            avail_ring_addr: hva(avail)?,
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
        let bases = self.stop_queues()?;
        self.close();
        Ok(bases)
    }

    /// SET_VRING_ENABLE(0) (when protocol features are in use) and
    /// GET_VRING_BASE for every queue; each queue's next avail index.
    fn stop_queues(&mut self) -> Result<Vec<u32>, FrontendError> {
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
        Ok(bases)
    }

    /// Stops queue `index` and sets it up afresh, as QEMU does when the
    /// driver resets the device: SET_VRING_ENABLE(0) (with protocol
    /// features) and GET_VRING_BASE, then empty rings and the setup messages
    /// again. Returns the next avail index the backend reported.
    pub fn reset_queue(&mut self, index: usize) -> Result<u32, FrontendError> {
        let enable = self.acked_features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0;
        if enable {
            self.frontend
                .set_vring_enable(index, false)
                .map_err(FrontendError::vhost(format!(
                    "SET_VRING_ENABLE({index}, 0)"
                )))?;
        }
        let base = self
            .frontend
            .get_vring_base(index)
            .map_err(FrontendError::vhost(format!("GET_VRING_BASE({index})")))?;
        let count = self.queues.len();
        let q = self
            .queues
            .get_mut(index)
            .ok_or(FrontendError::NoSuchQueue { index, count })?;
        q.reset()?;
        Self::setup_queue(&mut self.frontend, q, &self.mem, enable)?;
        Ok(base)
    }

    /// The driver reset the device, as the frontend passes it on: every
    /// queue stopped (SET_VRING_ENABLE(0) with protocol features, and
    /// GET_VRING_BASE), RESET_DEVICE when that protocol feature was acked,
    /// then every queue set up afresh with empty rings.
    pub fn reset_device(&mut self) -> Result<(), FrontendError> {
        self.stop_queues()?;
        let enable = self.acked_features & VhostUserVirtioFeatures::PROTOCOL_FEATURES.bits() != 0;
        if self
            .protocol_features
            .contains(VhostUserProtocolFeatures::RESET_DEVICE)
        {
            self.frontend
                .reset_device()
                .map_err(FrontendError::vhost("RESET_DEVICE".to_owned()))?;
        }
        for q in &mut self.queues {
            q.reset()?;
            Self::setup_queue(&mut self.frontend, q, &self.mem, enable)?;
        }
        Ok(())
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
