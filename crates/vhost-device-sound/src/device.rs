// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The virtio sound device: control requests, the PCM state machine, held
//! I/O and event buffers, real-time pacing, and controls.
//!
//! Every guest buffer the device cannot answer at once is kept as a
//! [`DescChain`] and completed later from a stream's timer or from another
//! request:
//!
//! - event-queue buffers wait, unused, until there is something to report
//!   (an xrun, a jack change, a control change). Taking them off the ring
//!   and holding them is what keeps the worker from spinning on that queue;
//! - tx buffers wait until their stream is started and their frames fall
//!   due on the stream's clock (or the host sink took them);
//! - rx buffers wait until they are full of frames recorded at that pace.
//!
//! Handling produces [`Completion`]s; [`SoundDevice`] as a [`VirtioDevice`]
//! puts them on the used rings, I/O before control, so a RELEASE is only
//! answered after every buffer of its stream went back to the driver.

use std::collections::VecDeque;
use std::mem::size_of;
use std::time::Duration;

use log::{debug, info, warn};
use vhost_device_common::{
    DescChain, DeviceResult, EventRegistry, EventSet, GuestMem, Queues, VirtioDevice,
};
use vm_memory::ByteValued;

use crate::backend::{AudioBackend, BackendError, InputSource, OutputSink, StreamRef};
use crate::config::{Direction, SoundConfig, StreamConfig};
use crate::format::{rate_hz, Gain, PcmParams, SampleFormat};
use crate::pacer::{Clock, MonotonicClock, Pacer};
use crate::protocol::{self, virtio_snd_event, virtio_snd_pcm_hdr, virtio_snd_pcm_status};
use crate::timer::{NoTimers, StreamTimers, TimerFds};

/// Largest control request we read (CTL_WRITE: header + a 512-byte value).
const MAX_REQUEST: usize = 1024;
/// Largest info structure size a driver may ask for.
const MAX_INFO_SIZE: u32 = 4096;
/// Events kept while the driver has no event buffer posted.
const MAX_PENDING_EVENTS: usize = 128;
/// Volume range of the volume controls.
pub const VOLUME_MAX: u32 = 100;
/// How soon to retry a sink that was full.
const SINK_RETRY: Duration = Duration::from_millis(5);
/// Largest I/O buffer accepted. The driver sends periods (at most 80 ms of
/// 8 channels of 32 bits at 192 kHz, under 500 KiB); a larger buffer would
/// only make the device allocate for it.
pub const MAX_IO_BYTES: usize = 4 << 20;
/// Most bytes moved between the guest and the host in one step, bounding
/// the copy buffer however late a timer fires.
const MAX_STEP: usize = 64 << 10;

/// A used-ring entry to add.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// Queue index.
    pub queue: usize,
    /// Chain head.
    pub head: u16,
    /// Bytes written.
    pub len: u32,
}

/// Where a stream is in the spec's PCM command lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PcmState {
    /// No parameters yet.
    Idle,
    /// SET_PARAMS done.
    ParamsSet,
    /// PREPARE done.
    Prepared,
    /// START done.
    Running,
    /// STOP done.
    Stopped,
    /// RELEASE done.
    Released,
}

impl PcmState {
    /// Whether request `code` is a valid transition from here.
    fn allows(self, code: u32) -> bool {
        use PcmState::{Idle, ParamsSet, Prepared, Released, Running, Stopped};
        matches!(
            (self, code),
            (
                Idle | ParamsSet | Prepared | Released,
                protocol::VIRTIO_SND_R_PCM_SET_PARAMS
            ) | (ParamsSet | Prepared | Released, protocol::VIRTIO_SND_R_PCM_PREPARE)
                | (Prepared | Stopped, protocol::VIRTIO_SND_R_PCM_START | protocol::VIRTIO_SND_R_PCM_RELEASE)
                | (Running, protocol::VIRTIO_SND_R_PCM_STOP)
        )
    }

    /// Whether I/O buffers for the stream are accepted and held.
    fn accepts_io(self) -> bool {
        matches!(
            self,
            PcmState::Prepared | PcmState::Running | PcmState::Stopped
        )
    }
}

/// A held tx or rx buffer.
#[derive(Debug)]
struct IoBuf {
    chain: DescChain,
    /// Payload bytes: frames to play, or room for frames to record.
    len: usize,
    /// Payload bytes consumed (played or recorded) so far.
    done: usize,
    /// Recorded frames, written to the guest on completion.
    captured: Vec<u8>,
}

enum Endpoint {
    Out(Box<dyn OutputSink>),
    In(Box<dyn InputSource>),
}

struct Stream {
    config: StreamConfig,
    state: PcmState,
    params: Option<PcmParams>,
    endpoint: Option<Endpoint>,
    endpoint_params: Option<PcmParams>,
    io: VecDeque<IoBuf>,
    pacer: Option<Pacer>,
    volume: u32,
    muted: bool,
    xrun_reported: bool,
    periods_reported: u64,
    /// Whether the host side is working (drives the jack state).
    host_ok: bool,
    scratch: Vec<u8>,
}

impl Stream {
    fn new(config: StreamConfig) -> Self {
        Stream {
            config,
            state: PcmState::Idle,
            params: None,
            endpoint: None,
            endpoint_params: None,
            io: VecDeque::new(),
            pacer: None,
            volume: VOLUME_MAX,
            muted: false,
            xrun_reported: false,
            periods_reported: 0,
            host_ok: true,
            scratch: Vec::new(),
        }
    }

    fn queue(&self) -> usize {
        match self.config.direction {
            Direction::Output => protocol::TX_QUEUE,
            Direction::Input => protocol::RX_QUEUE,
        }
    }

    fn gain(&self) -> Gain {
        Gain::new(self.volume, VOLUME_MAX, self.muted)
    }

    fn latency_bytes(&mut self) -> u32 {
        match &mut self.endpoint {
            Some(Endpoint::Out(sink)) => sink.latency_bytes(),
            Some(Endpoint::In(source)) => source.latency_bytes(),
            None => 0,
        }
    }
}

/// Per-jack state.
#[derive(Clone, Debug)]
struct Jack {
    stream: usize,
    defconf: u32,
    caps: u32,
    connected: bool,
}

/// The virtio sound device for one guest connection.
pub struct SoundDevice {
    config: SoundConfig,
    config_space: Vec<u8>,
    acked_features: u64,
    streams: Vec<Stream>,
    jacks: Vec<Jack>,
    event_buffers: VecDeque<DescChain>,
    pending_events: VecDeque<virtio_snd_event>,
    backend: Box<dyn AudioBackend>,
    clock: Box<dyn Clock>,
    timers: Box<dyn StreamTimers>,
    completions: Vec<Completion>,
}

impl std::fmt::Debug for SoundDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoundDevice")
            .field("streams", &self.streams.len())
            .field("jacks", &self.jacks.len())
            .field("backend", &self.backend.name())
            .finish_non_exhaustive()
    }
}

fn le32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

/// Copies the front of `bytes` into a `T`, if it is long enough.
fn parse<T: ByteValued + Default>(bytes: &[u8]) -> Option<T> {
    let mut value = T::default();
    let src = bytes.get(..size_of::<T>())?;
    value.as_mut_slice().copy_from_slice(src);
    Some(value)
}

fn event(code: u32, data: u32) -> virtio_snd_event {
    virtio_snd_event {
        hdr: protocol::virtio_snd_hdr { code: code.into() },
        data: data.into(),
    }
}

impl SoundDevice {
    /// A device offering `config`, with audio going through `backend`.
    pub fn new(config: SoundConfig, backend: Box<dyn AudioBackend>) -> Self {
        Self::with_clock(
            config,
            backend,
            Box::new(MonotonicClock),
            Box::new(NoTimers),
        )
    }

    /// A device with its own clock and timers (tests use fake ones).
    pub fn with_clock(
        config: SoundConfig,
        backend: Box<dyn AudioBackend>,
        clock: Box<dyn Clock>,
        timers: Box<dyn StreamTimers>,
    ) -> Self {
        let count = |n: usize| vm_memory::Le32::from(u32::try_from(n).unwrap_or(u32::MAX));
        let space = protocol::virtio_snd_config {
            jacks: count(config.jacks.len()),
            streams: count(config.streams.len()),
            chmaps: count(config.streams.len()),
            controls: count(config.num_controls()),
        };
        let streams = config.streams.iter().cloned().map(Stream::new).collect();
        let jacks = config
            .jacks
            .iter()
            .map(|j| Jack {
                stream: j.stream as usize,
                defconf: j.defconf,
                caps: j.caps,
                connected: true,
            })
            .collect();
        SoundDevice {
            config_space: space.as_slice().to_vec(),
            config,
            acked_features: 0,
            streams,
            jacks,
            event_buffers: VecDeque::new(),
            pending_events: VecDeque::new(),
            backend,
            clock,
            timers,
            completions: Vec::new(),
        }
    }

    /// The state of stream `id`.
    pub fn stream_state(&self, id: usize) -> Option<PcmState> {
        self.streams.get(id).map(|s| s.state)
    }

    /// Buffers held for stream `id`.
    pub fn held_io(&self, id: usize) -> usize {
        self.streams.get(id).map_or(0, |s| s.io.len())
    }

    /// Event buffers held, waiting for an event.
    pub fn held_event_buffers(&self) -> usize {
        self.event_buffers.len()
    }

    /// Takes the used-ring entries produced so far, in the order to add
    /// them: tx, rx, event, then control.
    pub fn take_completions(&mut self) -> Vec<Completion> {
        let mut all = std::mem::take(&mut self.completions);
        all.sort_by_key(|c| match c.queue {
            protocol::TX_QUEUE => 0,
            protocol::RX_QUEUE => 1,
            protocol::EVENT_QUEUE => 2,
            _ => 3,
        });
        all
    }

    fn complete(&mut self, queue: usize, head: u16, len: u32) {
        self.completions.push(Completion { queue, head, len });
    }

    fn controls_enabled(&self) -> bool {
        self.config.controls && self.acked_features & protocol::VIRTIO_SND_F_CTLS != 0
    }

    // ----- events -----------------------------------------------------

    /// Holds a buffer the driver posted on the event queue.
    pub fn add_event_buffer(&mut self, chain: DescChain, mem: &GuestMem) {
        self.event_buffers.push_back(chain);
        self.deliver_events(mem);
    }

    fn queue_event(&mut self, ev: virtio_snd_event) {
        if self.pending_events.len() >= MAX_PENDING_EVENTS {
            warn!("the driver posts no event buffers; dropping the oldest event");
            self.pending_events.pop_front();
        }
        self.pending_events.push_back(ev);
    }

    /// Writes pending events into held event buffers.
    pub fn deliver_events(&mut self, mem: &GuestMem) {
        while let Some(&ev) = self.pending_events.front() {
            let Some(chain) = self.event_buffers.pop_front() else {
                break;
            };
            let mut writer = chain.writer(mem);
            match writer.write_obj(ev) {
                Ok(()) => {
                    self.pending_events.pop_front();
                    self.complete(protocol::EVENT_QUEUE, chain.head(), writer.used_len());
                }
                Err(e) => {
                    warn!("event buffer {} is unusable: {e}", chain.head());
                    self.complete(protocol::EVENT_QUEUE, chain.head(), 0);
                }
            }
        }
    }

    fn set_host_ok(&mut self, stream: usize, ok: bool) {
        let Some(s) = self.streams.get_mut(stream) else {
            return;
        };
        if s.host_ok == ok {
            return;
        }
        s.host_ok = ok;
        let changed: Vec<usize> = self
            .jacks
            .iter_mut()
            .enumerate()
            .filter(|(_, j)| j.stream == stream && j.connected != ok)
            .map(|(i, j)| {
                j.connected = ok;
                i
            })
            .collect();
        for jack in changed {
            let code = if ok {
                protocol::VIRTIO_SND_EVT_JACK_CONNECTED
            } else {
                protocol::VIRTIO_SND_EVT_JACK_DISCONNECTED
            };
            self.queue_event(event(code, u32::try_from(jack).unwrap_or(u32::MAX)));
        }
    }

    // ----- control queue ----------------------------------------------

    /// Handles one control request; the reply is completed with the next
    /// [`Self::take_completions`], after any I/O it completed.
    pub fn handle_control(&mut self, chain: &DescChain, mem: &GuestMem) {
        let used = self.control(chain, mem);
        self.complete(protocol::CONTROL_QUEUE, chain.head(), used);
        self.deliver_events(mem);
    }

    fn control(&mut self, chain: &DescChain, mem: &GuestMem) -> u32 {
        let mut reader = chain.reader(mem);
        let code = match reader.read_obj::<protocol::virtio_snd_hdr>() {
            Ok(hdr) => hdr.code.to_native(),
            Err(e) => {
                warn!("control request without a header: {e}");
                return reply(chain, mem, protocol::VIRTIO_SND_S_BAD_MSG, &[]);
            }
        };
        if matches!(
            code,
            protocol::VIRTIO_SND_R_CTL_TLV_READ | protocol::VIRTIO_SND_R_CTL_TLV_WRITE | protocol::VIRTIO_SND_R_CTL_TLV_COMMAND
        ) {
            // No control has TLV access; the payload may be large, and is
            // not read.
            return reply(chain, mem, protocol::VIRTIO_SND_S_NOT_SUPP, &[]);
        }
        let rest = match reader.read_to_vec(MAX_REQUEST) {
            Ok(rest) => rest,
            Err(e) => {
                warn!("control request {code:#x}: {e}");
                return reply(chain, mem, protocol::VIRTIO_SND_S_BAD_MSG, &[]);
            }
        };
        let mut request = code.to_le_bytes().to_vec();
        request.extend_from_slice(&rest);
        let room = chain.writable().total_len().saturating_sub(4);
        let (status, payload) = match code {
            protocol::VIRTIO_SND_R_JACK_INFO => self.jack_info(&request, room),
            protocol::VIRTIO_SND_R_JACK_REMAP => (self.jack_remap(&request), Vec::new()),
            protocol::VIRTIO_SND_R_PCM_INFO => self.pcm_info(&request, room),
            protocol::VIRTIO_SND_R_PCM_SET_PARAMS
            | protocol::VIRTIO_SND_R_PCM_PREPARE
            | protocol::VIRTIO_SND_R_PCM_RELEASE
            | protocol::VIRTIO_SND_R_PCM_START
            | protocol::VIRTIO_SND_R_PCM_STOP => (self.pcm_command(code, &request, mem), Vec::new()),
            protocol::VIRTIO_SND_R_CHMAP_INFO => self.chmap_info(&request, room),
            protocol::VIRTIO_SND_R_CTL_INFO | protocol::VIRTIO_SND_R_CTL_ENUM_ITEMS | protocol::VIRTIO_SND_R_CTL_READ | protocol::VIRTIO_SND_R_CTL_WRITE
                if !self.controls_enabled() =>
            {
                (protocol::VIRTIO_SND_S_NOT_SUPP, Vec::new())
            }
            protocol::VIRTIO_SND_R_CTL_INFO => self.ctl_info(&request, room),
            protocol::VIRTIO_SND_R_CTL_ENUM_ITEMS => (protocol::VIRTIO_SND_S_BAD_MSG, Vec::new()),
            protocol::VIRTIO_SND_R_CTL_READ => self.ctl_read(&request),
            protocol::VIRTIO_SND_R_CTL_WRITE => (self.ctl_write(&request), Vec::new()),
            _ => {
                debug!("unknown control request {code:#x}");
                (protocol::VIRTIO_SND_S_NOT_SUPP, Vec::new())
            }
        };
        reply(chain, mem, status, &payload)
    }

    /// Validates an info query against `total` items and `room` bytes of
    /// response space; returns the items to describe and the size of each.
    fn query(request: &[u8], total: usize, room: usize) -> Option<(usize, usize, usize)> {
        let q: protocol::virtio_snd_query_info = parse(request)?;
        let start = q.start_id.to_native() as usize;
        let count = q.count.to_native() as usize;
        let size = q.size.to_native();
        if size == 0 || size > MAX_INFO_SIZE {
            return None;
        }
        let size = size as usize;
        let end = start.checked_add(count)?;
        if end > total || count.checked_mul(size)? > room {
            return None;
        }
        Some((start, end, size))
    }

    fn info_reply<T: ByteValued>(
        request: &[u8],
        total: usize,
        room: usize,
        item: impl Fn(usize) -> T,
    ) -> (u32, Vec<u8>) {
        let Some((start, end, size)) = Self::query(request, total, room) else {
            return (protocol::VIRTIO_SND_S_BAD_MSG, Vec::new());
        };
        let mut out = Vec::with_capacity((end - start) * size);
        for id in start..end {
            let value = item(id);
            let bytes = value.as_slice();
            let mut entry = bytes
                .get(..size.min(bytes.len()))
                .unwrap_or_default()
                .to_vec();
            entry.resize(size, 0);
            out.extend_from_slice(&entry);
        }
        (protocol::VIRTIO_SND_S_OK, out)
    }

    fn jack_info(&self, request: &[u8], room: usize) -> (u32, Vec<u8>) {
        Self::info_reply(request, self.jacks.len(), room, |id| {
            let jack = self.jacks.get(id);
            let nid = jack
                .and_then(|j| self.streams.get(j.stream))
                .map_or(0, |s| s.config.nid);
            protocol::virtio_snd_jack_info {
                hda_fn_nid: nid.into(),
                features: (1u32 << protocol::VIRTIO_SND_JACK_F_REMAP).into(),
                hda_reg_defconf: jack.map_or(0, |j| j.defconf).into(),
                hda_reg_caps: jack.map_or(0, |j| j.caps).into(),
                connected: u8::from(jack.is_some_and(|j| j.connected)),
                padding: [0; 7],
            }
        })
    }

    fn jack_remap(&mut self, request: &[u8]) -> u32 {
        let Some(remap) = parse::<protocol::virtio_snd_jack_remap>(request) else {
            return protocol::VIRTIO_SND_S_BAD_MSG;
        };
        let association = remap.association.to_native();
        let sequence = remap.sequence.to_native();
        let Some(jack) = self.jacks.get_mut(remap.hdr.id.to_native() as usize) else {
            return protocol::VIRTIO_SND_S_BAD_MSG;
        };
        // The HDA default configuration holds 4 bits of each.
        if association > 0xf || sequence > 0xf {
            return protocol::VIRTIO_SND_S_BAD_MSG;
        }
        jack.defconf = jack.defconf & !0xff | association << 4 | sequence;
        protocol::VIRTIO_SND_S_OK
    }

    fn pcm_info(&self, request: &[u8], room: usize) -> (u32, Vec<u8>) {
        Self::info_reply(request, self.streams.len(), room, |id| {
            let Some(s) = self.streams.get(id) else {
                return protocol::virtio_snd_pcm_info::default();
            };
            protocol::virtio_snd_pcm_info {
                hda_fn_nid: s.config.nid.into(),
                features: (1u32 << protocol::VIRTIO_SND_PCM_F_EVT_XRUNS | 1 << protocol::VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS)
                    .into(),
                formats: s.config.formats.into(),
                rates: s.config.rates.into(),
                direction: s.config.direction.to_spec(),
                channels_min: s.config.channels_min,
                channels_max: s.config.channels_max,
                padding: [0; 5],
            }
        })
    }

    fn chmap_info(&self, request: &[u8], room: usize) -> (u32, Vec<u8>) {
        Self::info_reply(request, self.streams.len(), room, |id| {
            let Some(s) = self.streams.get(id) else {
                return protocol::virtio_snd_chmap_info::default();
            };
            let mut positions = [0u8; protocol::VIRTIO_SND_CHMAP_MAX_SIZE];
            for (dst, src) in positions.iter_mut().zip(&s.config.chmap) {
                *dst = *src;
            }
            protocol::virtio_snd_chmap_info {
                hda_fn_nid: s.config.nid.into(),
                direction: s.config.direction.to_spec(),
                channels: u8::try_from(s.config.chmap.len().min(protocol::VIRTIO_SND_CHMAP_MAX_SIZE)).unwrap_or(0),
                positions,
            }
        })
    }

    // ----- PCM commands -------------------------------------------------

    fn pcm_command(&mut self, code: u32, request: &[u8], mem: &GuestMem) -> u32 {
        let Some(hdr) = parse::<virtio_snd_pcm_hdr>(request) else {
            return protocol::VIRTIO_SND_S_BAD_MSG;
        };
        let id = hdr.id.to_native() as usize;
        let Some(state) = self.streams.get(id).map(|s| s.state) else {
            return protocol::VIRTIO_SND_S_BAD_MSG;
        };
        if !state.allows(code) {
            debug!("stream {id}: request {code:#x} is not valid in state {state:?}");
            return protocol::VIRTIO_SND_S_BAD_MSG;
        }
        match code {
            protocol::VIRTIO_SND_R_PCM_SET_PARAMS => self.set_params(id, request, mem),
            protocol::VIRTIO_SND_R_PCM_PREPARE => self.prepare(id, mem),
            protocol::VIRTIO_SND_R_PCM_START => self.start(id, mem),
            protocol::VIRTIO_SND_R_PCM_STOP => self.stop(id),
            protocol::VIRTIO_SND_R_PCM_RELEASE => self.release(id, mem),
            _ => protocol::VIRTIO_SND_S_NOT_SUPP,
        }
    }

    fn set_params(&mut self, id: usize, request: &[u8], mem: &GuestMem) -> u32 {
        let Some(p) = parse::<protocol::virtio_snd_pcm_set_params>(request) else {
            return protocol::VIRTIO_SND_S_BAD_MSG;
        };
        let Some(stream) = self.streams.get(id) else {
            return protocol::VIRTIO_SND_S_BAD_MSG;
        };
        let cfg = &stream.config;
        let buffer_bytes = p.buffer_bytes.to_native();
        let period_bytes = p.period_bytes.to_native();
        let features = p.features.to_native();
        let offered = 1u32 << protocol::VIRTIO_SND_PCM_F_EVT_XRUNS | 1 << protocol::VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS;
        if period_bytes == 0 || buffer_bytes == 0 || buffer_bytes % period_bytes != 0 {
            return protocol::VIRTIO_SND_S_BAD_MSG;
        }
        if p.channels < cfg.channels_min || p.channels > cfg.channels_max {
            return protocol::VIRTIO_SND_S_BAD_MSG;
        }
        if features & !offered != 0 {
            return protocol::VIRTIO_SND_S_NOT_SUPP;
        }
        let Some(format) =
            SampleFormat::from_spec(p.format).filter(|f| cfg.formats & (1u64 << f.to_spec()) != 0)
        else {
            return protocol::VIRTIO_SND_S_NOT_SUPP;
        };
        let Some(rate) = rate_hz(p.rate).filter(|_| cfg.rates & (1u64 << p.rate) != 0) else {
            return protocol::VIRTIO_SND_S_NOT_SUPP;
        };
        let params = PcmParams {
            buffer_bytes,
            period_bytes,
            features,
            channels: p.channels,
            format,
            rate,
        };
        if period_bytes as usize % params.frame_bytes() != 0 {
            return protocol::VIRTIO_SND_S_BAD_MSG;
        }
        // Buffers pre-queued under the old parameters cannot be played.
        self.flush_io(id, protocol::VIRTIO_SND_S_IO_ERR, mem);
        if let Some(stream) = self.streams.get_mut(id) {
            stream.params = Some(params);
            stream.state = PcmState::ParamsSet;
        }
        protocol::VIRTIO_SND_S_OK
    }

    fn prepare(&mut self, id: usize, mem: &GuestMem) -> u32 {
        self.flush_io(id, protocol::VIRTIO_SND_S_IO_ERR, mem);
        let Some(stream) = self.streams.get_mut(id) else {
            return protocol::VIRTIO_SND_S_BAD_MSG;
        };
        let Some(params) = stream.params else {
            return protocol::VIRTIO_SND_S_BAD_MSG;
        };
        if stream.endpoint.is_none() || stream.endpoint_params != Some(params) {
            stream.endpoint = None;
            let sref = StreamRef {
                id: u32::try_from(id).unwrap_or(u32::MAX),
                index: stream.config.index,
            };
            let opened = match stream.config.direction {
                Direction::Output => self.backend.open_output(sref, &params).map(Endpoint::Out),
                Direction::Input => self.backend.open_input(sref, &params).map(Endpoint::In),
            };
            match opened {
                Ok(endpoint) => {
                    stream.endpoint = Some(endpoint);
                    stream.endpoint_params = Some(params);
                }
                Err(e) => {
                    warn!("stream {id}: {} backend: {e}", self.backend.name());
                    self.set_host_ok(id, false);
                    return protocol::VIRTIO_SND_S_IO_ERR;
                }
            }
        }
        if let Some(stream) = self.streams.get_mut(id) {
            stream.state = PcmState::Prepared;
            stream.pacer = None;
        }
        self.set_host_ok(id, true);
        protocol::VIRTIO_SND_S_OK
    }

    fn start(&mut self, id: usize, mem: &GuestMem) -> u32 {
        let now = self.clock.now();
        let Some(stream) = self.streams.get_mut(id) else {
            return protocol::VIRTIO_SND_S_BAD_MSG;
        };
        let Some(params) = stream.params else {
            return protocol::VIRTIO_SND_S_BAD_MSG;
        };
        let result = match &mut stream.endpoint {
            Some(Endpoint::Out(sink)) => sink.start().map(|()| sink.lead()),
            Some(Endpoint::In(source)) => source.start().map(|()| source.lead()),
            None => Ok(Duration::ZERO),
        };
        let lead = match result {
            Ok(lead) => lead,
            Err(e) => {
                warn!("stream {id}: cannot start: {e}");
                self.set_host_ok(id, false);
                return protocol::VIRTIO_SND_S_IO_ERR;
            }
        };
        match (stream.state, stream.pacer.as_mut()) {
            (PcmState::Stopped, Some(pacer)) => pacer.rebase(now),
            _ => {
                stream.pacer = Some(Pacer::start(
                    params.byte_rate(),
                    params.frame_bytes(),
                    now,
                    lead,
                ));
                stream.periods_reported = 0;
            }
        }
        stream.state = PcmState::Running;
        stream.xrun_reported = false;
        info!(
            "stream {id}: started, {} ch {:?} {} Hz, period {} bytes",
            params.channels, params.format, params.rate, params.period_bytes
        );
        self.pump(id, mem);
        protocol::VIRTIO_SND_S_OK
    }

    fn stop(&mut self, id: usize) -> u32 {
        let Some(stream) = self.streams.get_mut(id) else {
            return protocol::VIRTIO_SND_S_BAD_MSG;
        };
        stream.state = PcmState::Stopped;
        let result = match &mut stream.endpoint {
            Some(Endpoint::Out(sink)) => sink.stop(),
            Some(Endpoint::In(source)) => source.stop(),
            None => Ok(()),
        };
        self.timers.arm(id, None);
        if let Err(e) = result {
            warn!("stream {id}: stop: {e}");
        }
        protocol::VIRTIO_SND_S_OK
    }

    fn release(&mut self, id: usize, mem: &GuestMem) -> u32 {
        // Whatever was not played or recorded goes back now: the driver
        // waits for every buffer before it frees them.
        self.flush_io(id, protocol::VIRTIO_SND_S_OK, mem);
        self.timers.arm(id, None);
        if let Some(stream) = self.streams.get_mut(id) {
            if stream.state == PcmState::Prepared {
                if let Some(Endpoint::Out(sink)) = &mut stream.endpoint {
                    let _ = sink.stop();
                }
            }
            stream.state = PcmState::Released;
            stream.pacer = None;
        }
        protocol::VIRTIO_SND_S_OK
    }

    /// Completes every buffer held for stream `id` with `status`.
    fn flush_io(&mut self, id: usize, status: u32, mem: &GuestMem) {
        let Some(stream) = self.streams.get_mut(id) else {
            return;
        };
        let queue = stream.queue();
        let bufs: Vec<IoBuf> = stream.io.drain(..).collect();
        let latency = stream.latency_bytes();
        for buf in bufs {
            let c = finish_io(queue, buf, status, latency, mem);
            self.completions.push(c);
        }
    }

    // ----- I/O ------------------------------------------------------------

    /// Handles a buffer from the tx (`queue` = 2) or rx (3) queue.
    pub fn handle_io(&mut self, queue: usize, chain: DescChain, mem: &GuestMem) {
        let head = chain.head();
        let xfer = chain.reader(mem).read_obj::<protocol::virtio_snd_pcm_xfer>();
        let writable = chain.writable().total_len();
        let status_len = size_of::<virtio_snd_pcm_status>();
        let xfer = match xfer {
            Ok(xfer) if writable >= status_len => xfer,
            Ok(_) | Err(_) => {
                warn!("queue {queue}: I/O buffer {head} without a header or status; dropped");
                self.complete(queue, head, 0);
                return;
            }
        };
        let id = xfer.stream_id.to_native() as usize;
        let direction = if queue == protocol::TX_QUEUE {
            Direction::Output
        } else {
            Direction::Input
        };
        let len = match direction {
            Direction::Output => chain.readable().total_len().saturating_sub(4),
            Direction::Input => writable - status_len,
        };
        let accepted = len <= MAX_IO_BYTES
            && self
                .streams
                .get(id)
                .is_some_and(|s| s.config.direction == direction && s.state.accepts_io());
        let buf = IoBuf {
            chain,
            len,
            done: 0,
            captured: Vec::new(),
        };
        if !accepted {
            debug!("queue {queue}: buffer for stream {id}, which takes no I/O now");
            let c = finish_io(queue, buf, protocol::VIRTIO_SND_S_IO_ERR, 0, mem);
            self.completions.push(c);
            return;
        }
        let now = self.clock.now();
        let Some(stream) = self.streams.get_mut(id) else {
            return;
        };
        if len == 0 {
            let c = finish_io(queue, buf, protocol::VIRTIO_SND_S_OK, 0, mem);
            self.completions.push(c);
            return;
        }
        let was_empty = stream.io.is_empty();
        stream.io.push_back(buf);
        if stream.state == PcmState::Running {
            if let Some(pacer) = stream.pacer.as_mut() {
                if was_empty && pacer.budget(now) > 0 {
                    // The stream ran dry: play from now on, do not rush to
                    // make up for the gap.
                    pacer.rebase(now);
                }
            }
            stream.xrun_reported = false;
            self.pump(id, mem);
        }
    }

    /// A stream's timer fired.
    pub fn handle_timer(&mut self, id: usize, mem: &GuestMem) {
        self.timers.acknowledge(id);
        let now = self.clock.now();
        let Some(stream) = self.streams.get_mut(id) else {
            return;
        };
        if stream.state != PcmState::Running {
            return;
        }
        let (Some(params), Some(pacer)) = (stream.params, stream.pacer.as_mut()) else {
            return;
        };
        if stream.io.is_empty()
            && !stream.xrun_reported
            && pacer.budget(now) >= u64::from(params.period_bytes)
        {
            // A whole period went by with no buffer from the driver.
            stream.xrun_reported = true;
            pacer.rebase(now);
            debug!("stream {id}: xrun");
            if params.has_feature(protocol::VIRTIO_SND_PCM_F_EVT_XRUNS) {
                let id32 = u32::try_from(id).unwrap_or(u32::MAX);
                self.queue_event(event(protocol::VIRTIO_SND_EVT_PCM_XRUN, id32));
            }
        }
        self.pump(id, mem);
        self.deliver_events(mem);
    }

    /// Plays or records whatever is due on stream `id`, completes the
    /// buffers that are done, and arms the stream's timer for the next
    /// deadline.
    fn pump(&mut self, id: usize, mem: &GuestMem) {
        let now = self.clock.now();
        let mut host_error = None;
        let mut events = Vec::new();
        let next;
        {
            let Some(stream) = self.streams.get_mut(id) else {
                return;
            };
            if stream.state != PcmState::Running {
                return;
            }
            let (Some(params), Some(mut pacer)) = (stream.params, stream.pacer) else {
                return;
            };
            let queue = stream.queue();
            let gain = stream.gain();
            let mut sink_full = false;
            loop {
                let budget = pacer.budget(now);
                let Some(front) = stream.io.front_mut() else {
                    break;
                };
                if budget == 0 {
                    break;
                }
                let want = usize::try_from(budget)
                    .unwrap_or(usize::MAX)
                    .min(front.len - front.done)
                    .min(MAX_STEP - MAX_STEP % params.frame_bytes().max(1));
                let moved = match &mut stream.endpoint {
                    Some(Endpoint::Out(sink)) => play(
                        sink.as_mut(),
                        front,
                        want,
                        params.format,
                        gain,
                        &mut stream.scratch,
                        mem,
                    ),
                    Some(Endpoint::In(source)) => record(
                        source.as_mut(),
                        front,
                        want,
                        params.format,
                        gain,
                        &mut stream.scratch,
                    ),
                    None => Ok(want),
                };
                let moved = match moved {
                    Ok(moved) => moved,
                    Err(e) => {
                        // The host failed: the buffer goes back with an
                        // error and time moves on as if it was played.
                        host_error = Some(e);
                        want
                    }
                };
                front.done += moved;
                pacer.advance(moved as u64);
                if params.has_feature(protocol::VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS) {
                    let periods = pacer.consumed() / u64::from(params.period_bytes.max(1));
                    while stream.periods_reported < periods {
                        stream.periods_reported += 1;
                        events.push(protocol::VIRTIO_SND_EVT_PCM_PERIOD_ELAPSED);
                    }
                }
                let full = front.done >= front.len;
                if full || host_error.is_some() {
                    let status = if host_error.is_some() {
                        protocol::VIRTIO_SND_S_IO_ERR
                    } else {
                        protocol::VIRTIO_SND_S_OK
                    };
                    if let Some(buf) = stream.io.pop_front() {
                        let latency = match &mut stream.endpoint {
                            Some(Endpoint::Out(sink)) => sink.latency_bytes(),
                            Some(Endpoint::In(source)) => source.latency_bytes(),
                            None => 0,
                        };
                        self.completions
                            .push(finish_io(queue, buf, status, latency, mem));
                    }
                    if host_error.is_some() {
                        break;
                    }
                } else if moved < want {
                    sink_full = true;
                    break;
                }
            }
            stream.pacer = Some(pacer);
            next = if let Some(front) = stream.io.front() {
                if sink_full {
                    Some(
                        now + SINK_RETRY
                            .min(params.duration_of(u64::from(params.period_bytes) / 4)),
                    )
                } else {
                    Some(pacer.deadline_after((front.len - front.done) as u64))
                }
            } else if !stream.xrun_reported {
                Some(pacer.deadline_after(u64::from(params.period_bytes)))
            } else {
                None
            };
        }
        self.timers.arm(id, next);
        let id32 = u32::try_from(id).unwrap_or(u32::MAX);
        for code in events {
            self.queue_event(event(code, id32));
        }
        match host_error {
            Some(e) => {
                warn!("stream {id}: {e}");
                self.set_host_ok(id, false);
            }
            None => self.set_host_ok(id, true),
        }
        self.deliver_events(mem);
    }

    // ----- controls -------------------------------------------------------

    /// Control `id` is stream `id / 2`'s volume (even) or switch (odd).
    fn control_target(&self, id: u32) -> Option<(usize, bool)> {
        let id = id as usize;
        if id >= self.config.num_controls() {
            return None;
        }
        Some((id / 2, id % 2 == 1))
    }

    fn ctl_info(&self, request: &[u8], room: usize) -> (u32, Vec<u8>) {
        Self::info_reply(request, self.config.num_controls(), room, |id| {
            let Some((sid, is_switch)) = self.control_target(u32::try_from(id).unwrap_or(u32::MAX))
            else {
                return protocol::virtio_snd_ctl_info::default();
            };
            let Some(stream) = self.streams.get(sid) else {
                return protocol::virtio_snd_ctl_info::default();
            };
            let dir = u32::from(stream.config.direction.to_spec());
            let (base, role, type_) = match (stream.config.direction, is_switch) {
                (Direction::Output, false) => (
                    "PCM Playback Volume",
                    protocol::VIRTIO_SND_CTL_ROLE_VOLUME,
                    protocol::VIRTIO_SND_CTL_TYPE_INTEGER,
                ),
                (Direction::Output, true) => (
                    "PCM Playback Switch",
                    protocol::VIRTIO_SND_CTL_ROLE_MUTE,
                    protocol::VIRTIO_SND_CTL_TYPE_BOOLEAN,
                ),
                (Direction::Input, false) => (
                    "Capture Volume",
                    protocol::VIRTIO_SND_CTL_ROLE_VOLUME,
                    protocol::VIRTIO_SND_CTL_TYPE_INTEGER,
                ),
                (Direction::Input, true) => (
                    "Capture Switch",
                    protocol::VIRTIO_SND_CTL_ROLE_MUTE,
                    protocol::VIRTIO_SND_CTL_TYPE_BOOLEAN,
                ),
            };
            let mut name = [0u8; 44];
            for (dst, src) in name.iter_mut().zip(base.bytes()) {
                *dst = src;
            }
            let mut info = protocol::virtio_snd_ctl_info {
                hda_fn_nid: stream.config.nid.into(),
                role: (role << 1 | dir).into(),
                type_: type_.into(),
                access: (1u32 << protocol::VIRTIO_SND_CTL_ACCESS_READ | 1 << protocol::VIRTIO_SND_CTL_ACCESS_WRITE).into(),
                count: 1u32.into(),
                index: u32::try_from(stream.config.index).unwrap_or(0).into(),
                name,
                ..Default::default()
            };
            if !is_switch {
                info.value[0] = 0u32.into();
                info.value[1] = VOLUME_MAX.into();
                info.value[2] = 1u32.into();
            }
            info
        })
    }

    fn ctl_read(&self, request: &[u8]) -> (u32, Vec<u8>) {
        let Some(hdr) = parse::<virtio_snd_pcm_hdr>(request) else {
            return (protocol::VIRTIO_SND_S_BAD_MSG, Vec::new());
        };
        let Some((sid, is_switch)) = self.control_target(hdr.id.to_native()) else {
            return (protocol::VIRTIO_SND_S_BAD_MSG, Vec::new());
        };
        let Some(stream) = self.streams.get(sid) else {
            return (protocol::VIRTIO_SND_S_BAD_MSG, Vec::new());
        };
        let value = if is_switch {
            u32::from(!stream.muted)
        } else {
            stream.volume
        };
        let mut out = vec![0u8; protocol::CTL_VALUE_SIZE];
        if let Some(first) = out.get_mut(..4) {
            first.copy_from_slice(&value.to_le_bytes());
        }
        (protocol::VIRTIO_SND_S_OK, out)
    }

    fn ctl_write(&mut self, request: &[u8]) -> u32 {
        let Some(hdr) = parse::<virtio_snd_pcm_hdr>(request) else {
            return protocol::VIRTIO_SND_S_BAD_MSG;
        };
        let Some(value) = le32_at(request, size_of::<virtio_snd_pcm_hdr>()) else {
            return protocol::VIRTIO_SND_S_BAD_MSG;
        };
        let control = hdr.id.to_native();
        let Some((sid, is_switch)) = self.control_target(control) else {
            return protocol::VIRTIO_SND_S_BAD_MSG;
        };
        let Some(stream) = self.streams.get_mut(sid) else {
            return protocol::VIRTIO_SND_S_BAD_MSG;
        };
        let changed = if is_switch {
            if value > 1 {
                return protocol::VIRTIO_SND_S_BAD_MSG;
            }
            let muted = value == 0;
            std::mem::replace(&mut stream.muted, muted) != muted
        } else {
            if value > VOLUME_MAX {
                return protocol::VIRTIO_SND_S_BAD_MSG;
            }
            std::mem::replace(&mut stream.volume, value) != value
        };
        if changed {
            info!(
                "stream {sid}: volume {} {}",
                stream.volume,
                if stream.muted { "(muted)" } else { "" }
            );
            // Other mixers in the guest learn of the change.
            let ev = protocol::virtio_snd_ctl_event {
                hdr: protocol::virtio_snd_hdr {
                    code: protocol::VIRTIO_SND_EVT_CTL_NOTIFY.into(),
                },
                control_id: u16::try_from(control).unwrap_or(u16::MAX).into(),
                mask: (1u16 << protocol::VIRTIO_SND_CTL_EVT_MASK_VALUE).into(),
            };
            let mut raw = virtio_snd_event::default();
            raw.as_mut_slice().copy_from_slice(ev.as_slice());
            self.queue_event(raw);
        }
        protocol::VIRTIO_SND_S_OK
    }

    // ----- lifecycle ------------------------------------------------------

    fn forget_queue(&mut self, index: usize) {
        match index {
            protocol::EVENT_QUEUE => self.event_buffers.clear(),
            protocol::TX_QUEUE | protocol::RX_QUEUE => {
                for (id, stream) in self.streams.iter_mut().enumerate() {
                    if stream.queue() == index {
                        stream.io.clear();
                        self.timers.arm(id, None);
                    }
                }
            }
            _ => {}
        }
        self.completions.retain(|c| c.queue != index);
    }

    fn reset_all(&mut self) {
        for (id, stream) in self.streams.iter_mut().enumerate() {
            self.timers.arm(id, None);
            *stream = Stream::new(stream.config.clone());
        }
        self.event_buffers.clear();
        self.pending_events.clear();
        self.completions.clear();
    }

    fn collect_event_buffers(&mut self, queues: &mut Queues<'_>) {
        if let Some(mut queue) = queues.get(protocol::EVENT_QUEUE) {
            while let Some(chain) = queue.pop() {
                self.event_buffers.push_back(chain);
            }
        }
    }

    fn take_io(&mut self, queues: &mut Queues<'_>, index: usize) {
        if let Some(mut queue) = queues.get(index) {
            queue.drain(|chain, mem| {
                self.handle_io(index, chain, mem);
                None
            });
        }
    }

    fn flush(&mut self, queues: &mut Queues<'_>) {
        let completions = self.take_completions();
        let mut current: Option<vhost_device_common::Queue<'_>> = None;
        for c in completions {
            if current.as_ref().map(|q| q.index()) != Some(c.queue) {
                // Dropping the previous queue signals the driver for it.
                current = queues.get(c.queue);
            }
            if let Some(queue) = current.as_mut() {
                queue.complete(c.head, c.len);
            }
        }
    }
}

/// Writes the reply (status, then payload) into the chain's writable part.
fn reply(chain: &DescChain, mem: &GuestMem, status: u32, payload: &[u8]) -> u32 {
    let mut writer = chain.writer(mem);
    if writer.available() < 4 {
        warn!("control request {} has no room for a status", chain.head());
        return 0;
    }
    let (status, payload) = if writer.available() - 4 < payload.len() {
        (protocol::VIRTIO_SND_S_BAD_MSG, &[][..])
    } else {
        (status, payload)
    };
    if writer.write_all(&status.to_le_bytes()).is_err() || writer.write_all(payload).is_err() {
        warn!("control request {}: cannot write the reply", chain.head());
    }
    writer.used_len()
}

/// Writes an I/O buffer's status (and recorded frames) and makes its
/// completion.
fn finish_io(queue: usize, buf: IoBuf, status: u32, latency: u32, mem: &GuestMem) -> Completion {
    let head = buf.chain.head();
    let status = virtio_snd_pcm_status {
        status: status.into(),
        latency_bytes: latency.into(),
    };
    let mut writer = buf.chain.writer(mem);
    let result = if queue == protocol::RX_QUEUE {
        writer
            .split_tail(size_of::<virtio_snd_pcm_status>())
            .and_then(|mut tail| {
                writer.write_all(&buf.captured)?;
                tail.write_obj(status)
            })
    } else {
        writer.write_obj(status)
    };
    let len = match result {
        Ok(()) if queue == protocol::RX_QUEUE => buf.captured.len() + size_of::<virtio_snd_pcm_status>(),
        Ok(()) => size_of::<virtio_snd_pcm_status>(),
        Err(e) => {
            warn!("queue {queue}: cannot complete buffer {head}: {e}");
            0
        }
    };
    Completion {
        queue,
        head,
        len: u32::try_from(len).unwrap_or(u32::MAX),
    }
}

/// Offers `want` bytes of `buf`'s frames to `sink`; returns what it took.
fn play(
    sink: &mut dyn OutputSink,
    buf: &mut IoBuf,
    want: usize,
    format: SampleFormat,
    gain: Gain,
    scratch: &mut Vec<u8>,
    mem: &GuestMem,
) -> Result<usize, BackendError> {
    scratch.resize(want, 0);
    let mut reader = buf.chain.reader(mem);
    let read = reader
        .skip(size_of::<protocol::virtio_snd_pcm_xfer>() + buf.done)
        .and_then(|()| reader.read_exact(scratch));
    if let Err(e) = read {
        return Err(BackendError::Host {
            backend: "guest",
            device: format!("tx buffer {}", buf.chain.head()),
            reason: e.to_string(),
        });
    }
    format.apply_gain(scratch, gain);
    sink.write(scratch)
}

/// Records up to `want` bytes from `source` into `buf`.
fn record(
    source: &mut dyn InputSource,
    buf: &mut IoBuf,
    want: usize,
    format: SampleFormat,
    gain: Gain,
    scratch: &mut Vec<u8>,
) -> Result<usize, BackendError> {
    scratch.resize(want, 0);
    let got = source.read(scratch)?.min(want);
    let frames = scratch.get_mut(..got).unwrap_or_default();
    format.apply_gain(frames, gain);
    buf.captured.extend_from_slice(frames);
    Ok(got)
}

impl VirtioDevice for SoundDevice {
    fn num_queues(&self) -> usize {
        protocol::NUM_QUEUES
    }

    fn features(&self) -> u64 {
        if self.config.controls {
            protocol::VIRTIO_SND_F_CTLS
        } else {
            0
        }
    }

    fn set_acked_features(&mut self, features: u64) {
        self.acked_features = features;
    }

    fn config(&self) -> &[u8] {
        &self.config_space
    }

    fn activate(&mut self, events: EventRegistry) -> DeviceResult {
        self.timers = Box::new(TimerFds::new(self.streams.len(), events)?);
        Ok(())
    }

    fn process_queue(&mut self, queues: &mut Queues<'_>, index: usize) -> DeviceResult {
        let mem = queues.memory();
        self.collect_event_buffers(queues);
        match index {
            protocol::CONTROL_QUEUE => {
                // A RELEASE must see every buffer of its stream, even
                // those posted just before it whose kick is not handled yet.
                self.take_io(queues, protocol::TX_QUEUE);
                self.take_io(queues, protocol::RX_QUEUE);
                if let Some(mut queue) = queues.get(protocol::CONTROL_QUEUE) {
                    queue.drain(|chain, mem| {
                        self.handle_control(&chain, mem);
                        None
                    });
                }
            }
            protocol::EVENT_QUEUE => {
                if let Some(mut queue) = queues.get(protocol::EVENT_QUEUE) {
                    queue.drain(|chain, _| {
                        self.event_buffers.push_back(chain);
                        None
                    });
                }
            }
            protocol::TX_QUEUE | protocol::RX_QUEUE => self.take_io(queues, index),
            _ => {}
        }
        self.deliver_events(mem);
        self.flush(queues);
        Ok(())
    }

    fn handle_event(
        &mut self,
        queues: &mut Queues<'_>,
        token: u16,
        _events: EventSet,
    ) -> DeviceResult {
        let mem = queues.memory();
        self.collect_event_buffers(queues);
        self.handle_timer(usize::from(token), mem);
        self.flush(queues);
        Ok(())
    }

    fn queue_stopped(&mut self, index: usize) {
        self.forget_queue(index);
    }

    fn reset(&mut self) {
        self.reset_all();
    }
}

#[cfg(test)]
#[path = "device_tests.rs"]
mod tests;
