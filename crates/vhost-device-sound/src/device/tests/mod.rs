// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Unit tests of the device with no queue: chains built in fake guest
//! memory, a fake backend, clock and timers. This file holds the fixture;
//! the tests sit in one file per part of the device.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

mod control;
mod controls;
mod events;
mod io;
mod pcm;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use vhost_device_common::mock::ChainBuilder;
use vhost_device_common::DescChain;
use vm_memory::ByteValued;

use super::*;
use crate::backend::{AudioBackend, BackendError, InputSource, OutputSink, StreamRef};
use crate::config::{default_chmap, SoundConfig};
use crate::format::PcmParams;
use crate::pacer::tests::FakeClock;
use crate::protocol::*;

/// Copies the front of `bytes` into a `T`.
fn parse<T: ByteValued + Default>(bytes: &[u8]) -> Option<T> {
    let mut value = T::default();
    value
        .as_mut_slice()
        .copy_from_slice(bytes.get(..std::mem::size_of::<T>())?);
    Some(value)
}

/// The warnings `f` logs on the calling test's thread, so a test can check
/// what a guest makes the host log. Installs a capturing logger once.
fn warnings_during(f: impl FnOnce()) -> Vec<String> {
    struct Capture;
    static LINES: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    impl log::Log for Capture {
        fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
            metadata.level() <= log::Level::Warn
        }
        fn log(&self, record: &log::Record<'_>) {
            if self.enabled(record.metadata()) {
                let thread = std::thread::current().name().unwrap_or("").to_owned();
                LINES
                    .lock()
                    .unwrap()
                    .push((thread, record.args().to_string()));
            }
        }
        fn flush(&self) {}
    }
    static CAPTURE: Capture = Capture;
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&CAPTURE).unwrap();
        log::set_max_level(log::LevelFilter::Warn);
    });
    f();
    let me = std::thread::current().name().unwrap_or("").to_owned();
    LINES
        .lock()
        .unwrap()
        .iter()
        .filter(|(thread, _)| *thread == me)
        .map(|(_, line)| line.clone())
        .collect()
}

const MS: Duration = Duration::from_millis(1);

#[derive(Clone, Default)]
struct Timers(Arc<Mutex<Vec<Option<Duration>>>>);

impl Timers {
    fn get(&self, stream: usize) -> Option<Duration> {
        self.0.lock().unwrap().get(stream).copied().flatten()
    }
}

impl StreamTimers for Timers {
    fn arm(&mut self, stream: usize, at: Option<Duration>) {
        let mut t = self.0.lock().unwrap();
        if t.len() <= stream {
            t.resize(stream + 1, None);
        }
        t[stream] = at;
    }
}

/// What the fake backend saw, shared with the test.
#[derive(Default)]
struct Host {
    played: Vec<u8>,
    /// Bytes the sink accepts before it is "full" (None: unlimited).
    room: Option<usize>,
    fail: bool,
    opens: usize,
    /// Sinks and sources open now.
    live: usize,
    /// Endpoints let go of their device while released (as ALSA's).
    exclusive: bool,
    /// Endpoints lost their device (as an ALSA card unplugged).
    gone: bool,
    /// Times an endpoint was asked whether its device is still there.
    probes: usize,
    next_sample: u8,
}

#[derive(Clone, Default)]
struct FakeBackend(Arc<Mutex<Host>>);

struct FakeSink(Arc<Mutex<Host>>);
struct FakeSource(Arc<Mutex<Host>>);

impl OutputSink for FakeSink {
    fn write(&mut self, data: &[u8]) -> Result<usize, BackendError> {
        let mut host = self.0.lock().unwrap();
        if host.fail {
            return Err(BackendError::Host {
                backend: "fake",
                device: "out".into(),
                reason: "unplugged".into(),
            });
        }
        let n = host.room.map_or(data.len(), |room| room.min(data.len()));
        if let Some(room) = host.room.as_mut() {
            *room -= n;
        }
        host.played.extend_from_slice(&data[..n]);
        Ok(n)
    }
    fn latency_bytes(&mut self) -> u32 {
        77
    }
    fn is_open(&self) -> bool {
        !self.0.lock().unwrap().gone
    }
    fn close_when_released(&self) -> bool {
        self.0.lock().unwrap().exclusive
    }
    fn probe(&mut self) -> bool {
        let mut host = self.0.lock().unwrap();
        host.probes += 1;
        !host.gone
    }
}

impl Drop for FakeSink {
    fn drop(&mut self) {
        self.0.lock().unwrap().live -= 1;
    }
}

impl Drop for FakeSource {
    fn drop(&mut self) {
        self.0.lock().unwrap().live -= 1;
    }
}

impl InputSource for FakeSource {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, BackendError> {
        let mut host = self.0.lock().unwrap();
        for b in buf.iter_mut() {
            *b = host.next_sample;
            host.next_sample = host.next_sample.wrapping_add(1);
        }
        Ok(buf.len())
    }
    fn is_open(&self) -> bool {
        !self.0.lock().unwrap().gone
    }
    fn close_when_released(&self) -> bool {
        self.0.lock().unwrap().exclusive
    }
}

impl AudioBackend for FakeBackend {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn open_output(
        &mut self,
        _stream: StreamRef,
        _params: &PcmParams,
    ) -> Result<Box<dyn OutputSink>, BackendError> {
        let mut host = self.0.lock().unwrap();
        host.opens += 1;
        if host.fail {
            return Err(BackendError::Host {
                backend: "fake",
                device: "out".into(),
                reason: "no device".into(),
            });
        }
        host.live += 1;
        Ok(Box::new(FakeSink(self.0.clone())))
    }
    fn open_input(
        &mut self,
        _stream: StreamRef,
        _params: &PcmParams,
    ) -> Result<Box<dyn InputSource>, BackendError> {
        let mut host = self.0.lock().unwrap();
        host.opens += 1;
        host.live += 1;
        Ok(Box::new(FakeSource(self.0.clone())))
    }
}

struct Rig {
    dev: SoundDevice,
    /// Guest memory shared by every chain of a test, so held chains stay
    /// valid.
    mem: ChainBuilder,
    clock: FakeClock,
    timers: Timers,
    host: FakeBackend,
}

/// One stereo output (stream 0), one stereo input (stream 1), controls.
fn rig() -> Rig {
    rig_with(SoundConfig::new(
        vec![default_chmap(2)],
        vec![default_chmap(2)],
        true,
    ))
}

fn rig_with(config: SoundConfig) -> Rig {
    let clock = FakeClock::default();
    clock.set(Duration::from_secs(1000));
    let timers = Timers::default();
    let host = FakeBackend::default();
    let mut dev = SoundDevice::with_clock(
        config,
        Box::new(host.clone()),
        Box::new(clock.clone()),
        Box::new(timers.clone()),
    );
    dev.set_acked_features(VIRTIO_SND_F_CTLS | 1 << 32);
    Rig {
        dev,
        mem: ChainBuilder::new(),
        clock,
        timers,
        host,
    }
}

fn query(code: u32, start: u32, count: u32, size: u32) -> Vec<u8> {
    [code, start, count, size]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

fn pcm(code: u32, stream: u32) -> Vec<u8> {
    [code, stream]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
}

fn set_params(
    stream: u32,
    buffer: u32,
    period: u32,
    channels: u8,
    format: u8,
    rate: u8,
) -> Vec<u8> {
    let mut v = pcm(VIRTIO_SND_R_PCM_SET_PARAMS, stream);
    v.extend_from_slice(&buffer.to_le_bytes());
    v.extend_from_slice(&period.to_le_bytes());
    v.extend_from_slice(&(1u32 << VIRTIO_SND_PCM_F_EVT_XRUNS).to_le_bytes());
    v.extend_from_slice(&[channels, format, rate, 0]);
    v
}

fn status_of(bytes: &[u8]) -> u32 {
    u32::from_le_bytes(bytes[..4].try_into().unwrap())
}

impl Rig {
    /// Sends a control request with `resp` bytes of response room; returns
    /// the status, the reply, and the completions it produced.
    fn control_with(&mut self, request: &[u8], resp: u32) -> (u32, Vec<u8>, Vec<Completion>) {
        let chain = self.mem.request(&[request], &[resp]);
        self.dev.handle_control(&chain, self.mem.memory());
        let completions = self.dev.take_completions();
        let mine = completions
            .iter()
            .find(|c| c.queue == CONTROL_QUEUE)
            .copied()
            .unwrap();
        assert_eq!(mine.head, chain.head());
        let written = self.mem.written(&chain);
        assert!(mine.len >= 4 && mine.len <= resp);
        let body = written[4..mine.len as usize].to_vec();
        (status_of(&written), body, completions)
    }

    fn control(&mut self, request: &[u8]) -> u32 {
        self.control_with(request, 4).0
    }

    /// SET_PARAMS (48 kHz S16 stereo, four periods of `period` bytes) and
    /// PREPARE on `stream`.
    fn setup(&mut self, stream: u32, period: u32) {
        let params = set_params(stream, period * 4, period, 2, VIRTIO_SND_PCM_FMT_S16, 7);
        assert_eq!(self.control(&params), VIRTIO_SND_S_OK);
        assert_eq!(
            self.control(&pcm(VIRTIO_SND_R_PCM_PREPARE, stream)),
            VIRTIO_SND_S_OK
        );
    }

    /// [`Self::setup`] of the output stream, 0.
    fn play_setup(&mut self, period: u32) {
        self.setup(0, period);
    }

    /// [`Self::setup`] of the input stream, 1.
    fn capture_setup(&mut self, period: u32) {
        self.setup(1, period);
    }

    fn tx(&mut self, stream: u32, data: &[u8]) -> DescChain {
        let chain = self.mem.request(&[&stream.to_le_bytes(), data], &[8]);
        self.dev
            .handle_io(TX_QUEUE, chain.clone(), self.mem.memory());
        chain
    }

    fn rx(&mut self, stream: u32, room: u32) -> DescChain {
        let chain = self.mem.request(&[&stream.to_le_bytes()], &[room, 8]);
        self.dev
            .handle_io(RX_QUEUE, chain.clone(), self.mem.memory());
        chain
    }

    fn fire(&mut self, stream: usize) -> Vec<Completion> {
        if let Some(at) = self.timers.get(stream) {
            if at > self.clock.now() {
                self.clock.set(at);
            }
        }
        self.dev.handle_timer(stream, self.mem.memory());
        self.dev.take_completions()
    }

    fn event_buffer(&mut self) -> DescChain {
        let chain = self.mem.request(&[], &[8]);
        self.dev.add_event_buffer(chain.clone(), self.mem.memory());
        chain
    }
}

#[test]
fn a_stopped_control_queue_ends_the_session() {
    let mut r = rig();
    r.play_setup(3840);
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_START, 0)), VIRTIO_SND_S_OK);
    r.tx(0, &[0; 3840]);
    // A data queue stopping alone forgets its buffers, not the streams.
    r.dev.queue_stopped(TX_QUEUE);
    assert_eq!(r.dev.held_io(0), 0);
    assert_eq!(r.dev.stream_state(0), Some(PcmState::Running));
    // The control queue stopping (a machine reset) resets the streams, so
    // the next driver can set them up.
    r.dev.queue_stopped(CONTROL_QUEUE);
    assert_eq!(r.dev.stream_state(0), Some(PcmState::Idle));
    r.play_setup(3840);
}

#[test]
fn reset_forgets_everything() {
    let mut r = rig();
    r.event_buffer();
    r.play_setup(3840);
    r.tx(0, &[0; 3840]);
    r.dev.reset();
    assert_eq!(r.dev.held_io(0), 0);
    assert_eq!(r.dev.held_event_buffers(), 0);
    assert_eq!(r.dev.stream_state(0), Some(PcmState::Idle));
}
