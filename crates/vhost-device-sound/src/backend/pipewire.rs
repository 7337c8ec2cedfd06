// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The `pipewire` backend: each stream is a PipeWire stream node of its
//! own, `<name>-output<k>` or `<name>-input<k>`, with the guest's format,
//! the requested latency (`node.latency`) and optionally a target node
//! (`target.object`, honoured by the session manager).
//!
//! PipeWire objects live on the thread that runs their loop, so every
//! stream gets one, talking to the device through a byte ring: the device
//! writes played frames into it at the pace it keeps, and the stream's
//! process callback takes one quantum from it per graph cycle (silence when
//! the guest is late, never stale data); capture goes the other way. A full
//! ring accepts only part of a write, which holds the guest's buffers back:
//! the PipeWire graph's clock then sets the pace.

use std::collections::VecDeque;
use std::sync::{mpsc, Arc, Mutex, Once};
use std::thread;
use std::time::Duration;

use log::info;
use pipewire as pw;
use pw::spa;
use pw::spa::pod::Pod;

use super::{whole_frames, AudioBackend, BackendError, InputSource, OutputSink, StreamRef};
use crate::config::per_stream;
use crate::format::{PcmParams, SampleFormat};

/// How long to wait for a stream to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Quanta the ring holds at least.
const RING_QUANTA: usize = 4;

/// Opens PipeWire streams.
#[derive(Debug, Clone)]
pub struct PipewireBackend {
    node_name: String,
    outputs: Vec<String>,
    inputs: Vec<String>,
    latency: u32,
}

impl PipewireBackend {
    /// A backend naming its nodes after `node_name`, linking them to the
    /// given targets (once for all streams or once per stream), asking for
    /// `latency` frames per graph cycle.
    pub fn new(
        node_name: String,
        outputs: Vec<String>,
        inputs: Vec<String>,
        latency: u32,
    ) -> Result<Self, BackendError> {
        static INIT: Once = Once::new();
        INIT.call_once(pw::init);
        Ok(PipewireBackend {
            node_name,
            outputs,
            inputs,
            latency,
        })
    }
}

fn host_error(device: &str, reason: impl ToString) -> BackendError {
    BackendError::Host {
        backend: "pipewire",
        device: device.to_owned(),
        reason: reason.to_string(),
    }
}

/// Bytes shared between the device and the stream's thread.
struct Ring {
    bytes: VecDeque<u8>,
    capacity: usize,
    /// Bytes handed to (or taken from) the graph; the device reports it.
    queued_latency: usize,
}

type SharedRing = Arc<Mutex<Ring>>;

fn lock(ring: &SharedRing) -> std::sync::MutexGuard<'_, Ring> {
    ring.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A stream's loop thread; dropping it quits the loop and joins.
struct StreamThread {
    quit: Option<pw::channel::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for StreamThread {
    fn drop(&mut self) {
        if let Some(quit) = self.quit.take() {
            let _ = quit.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Setup {
    node: String,
    target: Option<String>,
    params: PcmParams,
    latency: u32,
    output: bool,
}

fn spa_format(format: SampleFormat) -> spa::param::audio::AudioFormat {
    use spa::param::audio::AudioFormat;
    match format {
        SampleFormat::U8 => AudioFormat::U8,
        SampleFormat::S16 => AudioFormat::S16LE,
        SampleFormat::S24 => AudioFormat::S24_32LE,
        SampleFormat::S32 => AudioFormat::S32LE,
        SampleFormat::Float => AudioFormat::F32LE,
    }
}

/// The format pod for `params`, with the usual channel positions.
fn format_pod(params: &PcmParams) -> Result<Vec<u8>, String> {
    use spa::sys as s;
    let mut info = spa::param::audio::AudioInfoRaw::new();
    info.set_format(spa_format(params.format));
    info.set_rate(params.rate);
    info.set_channels(u32::from(params.channels));
    let mut position = [0; spa::param::audio::MAX_CHANNELS];
    let order: &[u32] = if params.channels == 1 {
        &[s::SPA_AUDIO_CHANNEL_MONO]
    } else {
        &[
            s::SPA_AUDIO_CHANNEL_FL,
            s::SPA_AUDIO_CHANNEL_FR,
            s::SPA_AUDIO_CHANNEL_RL,
            s::SPA_AUDIO_CHANNEL_RR,
            s::SPA_AUDIO_CHANNEL_FC,
            s::SPA_AUDIO_CHANNEL_LFE,
            s::SPA_AUDIO_CHANNEL_SL,
            s::SPA_AUDIO_CHANNEL_SR,
        ]
    };
    for (dst, src) in position.iter_mut().zip(order) {
        *dst = *src;
    }
    info.set_position(position);
    spa::pod::serialize::PodSerializer::serialize(
        std::io::Cursor::new(Vec::new()),
        &spa::pod::Value::Object(spa::pod::Object {
            type_: s::SPA_TYPE_OBJECT_Format,
            id: s::SPA_PARAM_EnumFormat,
            properties: info.into(),
        }),
    )
    .map(|(cursor, _)| cursor.into_inner())
    .map_err(|e| format!("format pod: {e:?}"))
}

/// Plays `want` bytes from the ring into `data`, silence where the guest
/// is late (never stale data).
fn fill(data: &mut spa::buffer::Data, ring: &mut Ring, want: usize, frame: usize, silence: u8) {
    let written = match data.data() {
        Some(slice) => {
            let n = whole_frames(slice.len().min(want), frame);
            let take = whole_frames(ring.bytes.len().min(n), frame);
            for (dst, src) in slice.iter_mut().zip(ring.bytes.drain(..take)) {
                *dst = src;
            }
            if let Some(rest) = slice.get_mut(take..n) {
                rest.fill(silence);
            }
            ring.queued_latency = n;
            n
        }
        None => 0,
    };
    let chunk = data.chunk_mut();
    *chunk.offset_mut() = 0;
    *chunk.stride_mut() = i32::try_from(frame).unwrap_or(0);
    *chunk.size_mut() = u32::try_from(written).unwrap_or(0);
}

/// Appends what the graph recorded to the ring, dropping the oldest frames
/// when the guest does not keep up.
fn drain(data: &mut spa::buffer::Data, ring: &mut Ring, frame: usize) {
    let size = data.chunk().size() as usize;
    let offset = data.chunk().offset() as usize;
    if let Some(slice) = data.data() {
        let end = offset.saturating_add(size).min(slice.len());
        ring.bytes
            .extend(slice.get(offset..end).unwrap_or_default());
        if ring.bytes.len() > ring.capacity {
            let excess = whole_frames(ring.bytes.len() - ring.capacity, frame) + frame;
            let excess = excess.min(ring.bytes.len());
            ring.bytes.drain(..excess);
        }
    }
}

/// What the process callback needs to know of its stream.
#[derive(Clone, Copy, Debug)]
struct Cycle {
    output: bool,
    frame: usize,
    /// Bytes of one quantum, for servers that do not say what they want.
    quantum: usize,
    silence: u8,
}

/// One graph cycle of stream `raw`: hands PipeWire the frames it asks
/// for (output), or takes what it recorded (input).
fn process(raw: *mut pw::sys::pw_stream, ring: &SharedRing, cycle: Cycle) {
    // SAFETY: `raw` is the live stream whose process callback calls us.
    let buffer = unsafe { pw::sys::pw_stream_dequeue_buffer(raw) };
    if buffer.is_null() {
        return;
    }
    // SAFETY: a dequeued buffer is ours until it is queued back
    // below; its spa_buffer and data array are valid meanwhile.
    // `Data` is a transparent wrapper of spa_data, and `requested`
    // (frames the graph wants this cycle) exists in every library
    // this backend builds against (0.3.49 and later).
    let (datas, requested) = unsafe {
        let requested = usize::try_from((*buffer).requested).unwrap_or(0);
        let spa = (*buffer).buffer;
        let datas: &mut [spa::buffer::Data] =
            if spa.is_null() || (*spa).datas.is_null() || (*spa).n_datas == 0 {
                &mut []
            } else {
                std::slice::from_raw_parts_mut(
                    (*spa).datas.cast(),
                    usize::try_from((*spa).n_datas).unwrap_or(0),
                )
            };
        (datas, requested)
    };
    if let Some(data) = datas.first_mut() {
        let mut ring = lock(ring);
        if cycle.output {
            // Older servers leave `requested` at 0: one quantum.
            let want = if requested == 0 {
                cycle.quantum
            } else {
                requested * cycle.frame
            };
            fill(data, &mut ring, want, cycle.frame, cycle.silence);
        } else {
            drain(data, &mut ring, cycle.frame);
        }
    }
    // SAFETY: queues back the buffer dequeued above, once.
    unsafe { pw::sys::pw_stream_queue_buffer(raw, buffer) };
}

/// Runs one stream's loop until told to quit; reports the connection
/// result through `ready`.
fn run_stream(
    setup: &Setup,
    ring: &SharedRing,
    quit: pw::channel::Receiver<()>,
    ready: &mpsc::Sender<Result<(), String>>,
) -> Result<(), String> {
    let mainloop = pw::main_loop::MainLoopRc::new(None).map_err(|e| e.to_string())?;
    let context = pw::context::ContextRc::new(&mainloop, None).map_err(|e| e.to_string())?;
    let core = context.connect_rc(None).map_err(|e| e.to_string())?;
    let rate = setup.params.rate;
    let mut props = pw::properties::properties! {
        *pw::keys::MEDIA_TYPE => "Audio",
        *pw::keys::MEDIA_CATEGORY => if setup.output { "Playback" } else { "Capture" },
        *pw::keys::MEDIA_ROLE => "Music",
        *pw::keys::NODE_NAME => setup.node.as_str(),
        *pw::keys::NODE_DESCRIPTION => setup.node.as_str(),
        *pw::keys::NODE_LATENCY => format!("{}/{rate}", setup.latency),
        *pw::keys::APP_NAME => "vhost-device-sound",
    };
    if let Some(target) = &setup.target {
        // PW_KEY_TARGET_OBJECT, spelled out: the crate gates the constant
        // behind a library version newer than Debian 12's.
        props.insert("target.object", target.as_str());
    }
    let stream =
        pw::stream::StreamBox::new(&core, &setup.node, props).map_err(|e| e.to_string())?;
    let frame = setup.params.frame_bytes().max(1);
    let cycle = Cycle {
        output: setup.output,
        frame,
        quantum: setup.latency as usize * frame,
        silence: setup.params.format.silence_byte(),
    };
    let process_ring = ring.clone();
    let _listener = stream
        .add_local_listener_with_user_data(())
        .process(move |stream, ()| process(stream.as_raw_ptr(), &process_ring, cycle))
        .register()
        .map_err(|e| e.to_string())?;
    let pod = format_pod(&setup.params)?;
    let pod = Pod::from_bytes(&pod).ok_or("bad format pod")?;
    let direction = if setup.output {
        spa::utils::Direction::Output
    } else {
        spa::utils::Direction::Input
    };
    stream
        .connect(
            direction,
            None,
            pw::stream::StreamFlags::AUTOCONNECT
                | pw::stream::StreamFlags::MAP_BUFFERS
                | pw::stream::StreamFlags::RT_PROCESS,
            &mut [pod],
        )
        .map_err(|e| e.to_string())?;
    let _ = ready.send(Ok(()));
    let weak = mainloop.downgrade();
    let _quit = quit.attach(mainloop.loop_(), move |()| {
        if let Some(mainloop) = weak.upgrade() {
            mainloop.quit();
        }
    });
    mainloop.run();
    Ok(())
}

fn spawn(setup: Setup, ring: SharedRing) -> Result<StreamThread, BackendError> {
    let (quit_tx, quit_rx) = pw::channel::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    let node = setup.node.clone();
    let thread = thread::Builder::new()
        .name(format!("pw-{node}"))
        .spawn(move || {
            if let Err(e) = run_stream(&setup, &ring, quit_rx, &ready_tx) {
                let _ = ready_tx.send(Err(e));
            }
        })
        .map_err(|e| host_error(&node, e))?;
    let mut handle = StreamThread {
        quit: Some(quit_tx),
        thread: Some(thread),
    };
    match ready_rx.recv_timeout(CONNECT_TIMEOUT) {
        Ok(Ok(())) => {
            info!("pipewire: stream {node} connected");
            Ok(handle)
        }
        Ok(Err(e)) => {
            handle.quit = None;
            Err(host_error(&node, e))
        }
        Err(_) => Err(host_error(&node, "the PipeWire daemon did not answer")),
    }
}

struct PwSink {
    ring: SharedRing,
    frame: usize,
    lead: Duration,
    _thread: StreamThread,
}

impl OutputSink for PwSink {
    // On stop, what the ring holds still plays: the guest saw those
    // frames complete.

    fn write(&mut self, data: &[u8]) -> Result<usize, BackendError> {
        let mut ring = lock(&self.ring);
        let room = ring.capacity.saturating_sub(ring.bytes.len());
        let n = whole_frames(data.len().min(room), self.frame);
        ring.bytes.extend(data.get(..n).unwrap_or_default());
        Ok(n)
    }

    fn latency_bytes(&mut self) -> u32 {
        let ring = lock(&self.ring);
        u32::try_from(ring.bytes.len() + ring.queued_latency).unwrap_or(u32::MAX)
    }

    fn lead(&self) -> Duration {
        self.lead
    }
}

struct PwSource {
    ring: SharedRing,
    frame: usize,
    lead: Duration,
    _thread: StreamThread,
}

impl InputSource for PwSource {
    fn start(&mut self) -> Result<(), BackendError> {
        // Start from live audio, not what piled up while stopped.
        lock(&self.ring).bytes.clear();
        Ok(())
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, BackendError> {
        let mut ring = lock(&self.ring);
        let n = whole_frames(buf.len().min(ring.bytes.len()), self.frame);
        for (dst, src) in buf.iter_mut().zip(ring.bytes.drain(..n)) {
            *dst = src;
        }
        Ok(n)
    }

    fn latency_bytes(&mut self) -> u32 {
        u32::try_from(lock(&self.ring).bytes.len()).unwrap_or(u32::MAX)
    }

    fn lead(&self) -> Duration {
        self.lead
    }
}

impl PipewireBackend {
    /// Bytes the ring holds: two guest periods and a few graph quanta, so
    /// the device can hand over a whole period while the graph still has
    /// plenty to play, whatever quantum the graph settles on.
    fn ring_capacity(&self, params: &PcmParams) -> usize {
        let quantum = self.latency as usize * params.frame_bytes().max(1);
        2 * params.period_bytes as usize + quantum * RING_QUANTA
    }

    fn open(
        &self,
        stream: StreamRef,
        params: &PcmParams,
        output: bool,
    ) -> Result<(SharedRing, StreamThread), BackendError> {
        let (kind, targets) = if output {
            ("output", &self.outputs)
        } else {
            ("input", &self.inputs)
        };
        let node = format!("{}-{kind}{}", self.node_name, stream.index);
        let capacity = self.ring_capacity(params);
        let ring = Arc::new(Mutex::new(Ring {
            bytes: VecDeque::with_capacity(capacity),
            capacity,
            queued_latency: 0,
        }));
        let setup = Setup {
            node,
            target: per_stream(targets, stream.index).cloned(),
            params: *params,
            latency: self.latency,
            output,
        };
        let thread = spawn(setup, ring.clone())?;
        Ok((ring, thread))
    }
}

impl AudioBackend for PipewireBackend {
    fn name(&self) -> &'static str {
        "pipewire"
    }

    fn open_output(
        &mut self,
        stream: StreamRef,
        params: &PcmParams,
    ) -> Result<Box<dyn OutputSink>, BackendError> {
        let (ring, thread) = self.open(stream, params, true)?;
        let frame = params.frame_bytes().max(1);
        // The graph has its own clock: keep the ring full and let the
        // graph's consumption (a full ring refusing writes) set the pace.
        let lead = self.ring_capacity(params) as u64;
        Ok(Box::new(PwSink {
            ring,
            frame,
            lead: params.duration_of(lead),
            _thread: thread,
        }))
    }

    fn open_input(
        &mut self,
        stream: StreamRef,
        params: &PcmParams,
    ) -> Result<Box<dyn InputSource>, BackendError> {
        let (ring, thread) = self.open(stream, params, false)?;
        let lead = params.duration_of(self.ring_capacity(params) as u64);
        Ok(Box::new(PwSource {
            ring,
            frame: params.frame_bytes().max(1),
            lead,
            _thread: thread,
        }))
    }
}
