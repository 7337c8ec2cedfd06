// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use vhost_device_common::mock::ChainBuilder;
use vhost_device_common::{DescChain, GuestMem, Region};
use vm_memory::{Bytes, GuestAddress};

use super::*;
use crate::backend::{AudioBackend, BackendError, InputSource, OutputSink, StreamRef};
use crate::config::{default_chmap, SoundConfig};
use crate::pacer::tests::FakeClock;
use crate::protocol::*;

const MS: Duration = Duration::from_millis(1);

/// Guest memory shared by every chain of a test, so held chains stay valid.
struct Mem {
    mem: GuestMem,
    next: u64,
    head: u16,
}

impl Mem {
    fn new() -> Self {
        let builder = ChainBuilder::new();
        Mem {
            mem: builder.memory().clone(),
            next: vhost_device_common::mock::MEM_BASE + 0x1000,
            head: 0,
        }
    }

    fn alloc(&mut self, len: usize) -> GuestAddress {
        let addr = GuestAddress(self.next);
        self.next += (len as u64).div_ceil(16).max(1) * 16;
        addr
    }

    fn chain(&mut self, readable: &[&[u8]], writable: &[u32]) -> DescChain {
        let r: Vec<Region> = readable
            .iter()
            .map(|data| {
                let addr = self.alloc(data.len());
                self.mem.write_slice(data, addr).unwrap();
                Region {
                    addr,
                    len: data.len() as u32,
                }
            })
            .collect();
        let w: Vec<Region> = writable
            .iter()
            .map(|&len| {
                let addr = self.alloc(len as usize);
                self.mem
                    .write_slice(&vec![0xAA; len as usize], addr)
                    .unwrap();
                Region { addr, len }
            })
            .collect();
        self.head += 1;
        DescChain::from_regions(self.head, &r, &w)
    }

    fn read(&self, region: &Region) -> Vec<u8> {
        let mut buf = vec![0; region.len as usize];
        self.mem.read_slice(&mut buf, region.addr).unwrap();
        buf
    }

    /// Everything the device wrote into the chain's writable part.
    fn written(&self, chain: &DescChain) -> Vec<u8> {
        chain.writable().iter().flat_map(|r| self.read(r)).collect()
    }
}

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
        Ok(Box::new(FakeSink(self.0.clone())))
    }
    fn open_input(
        &mut self,
        _stream: StreamRef,
        _params: &PcmParams,
    ) -> Result<Box<dyn InputSource>, BackendError> {
        self.0.lock().unwrap().opens += 1;
        Ok(Box::new(FakeSource(self.0.clone())))
    }
}

struct Rig {
    dev: SoundDevice,
    mem: Mem,
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
        mem: Mem::new(),
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
        let chain = self.mem.chain(&[request], &[resp]);
        self.dev.handle_control(&chain, &self.mem.mem);
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

    fn play_setup(&mut self, period: u32) {
        assert_eq!(
            self.control(&set_params(0, period * 4, period, 2, VIRTIO_SND_PCM_FMT_S16, 7)),
            VIRTIO_SND_S_OK
        );
        assert_eq!(self.control(&pcm(VIRTIO_SND_R_PCM_PREPARE, 0)), VIRTIO_SND_S_OK);
    }

    fn tx(&mut self, stream: u32, data: &[u8]) -> DescChain {
        let chain = self.mem.chain(&[&stream.to_le_bytes(), data], &[8]);
        self.dev.handle_io(TX_QUEUE, chain.clone(), &self.mem.mem);
        chain
    }

    fn rx(&mut self, stream: u32, room: u32) -> DescChain {
        let chain = self.mem.chain(&[&stream.to_le_bytes()], &[room, 8]);
        self.dev.handle_io(RX_QUEUE, chain.clone(), &self.mem.mem);
        chain
    }

    fn fire(&mut self, stream: usize) -> Vec<Completion> {
        if let Some(at) = self.timers.get(stream) {
            if at > self.clock.now() {
                self.clock.set(at);
            }
        }
        self.dev.handle_timer(stream, &self.mem.mem);
        self.dev.take_completions()
    }

    fn event_buffer(&mut self) -> DescChain {
        let chain = self.mem.chain(&[], &[8]);
        self.dev.add_event_buffer(chain.clone(), &self.mem.mem);
        chain
    }
}

// ----- configuration and info requests --------------------------------

#[test]
fn config_space_counts_items() {
    let r = rig_with(SoundConfig::new(
        vec![default_chmap(2), default_chmap(6)],
        vec![default_chmap(1)],
        true,
    ));
    let c = r.dev.config();
    let words: Vec<u32> = c
        .chunks(4)
        .map(|w| u32::from_le_bytes(w.try_into().unwrap()))
        .collect();
    assert_eq!(words, [3, 3, 3, 6]);
    assert_eq!(r.dev.features(), VIRTIO_SND_F_CTLS);
    assert_eq!(r.dev.num_queues(), 4);
}

#[test]
fn pcm_info_describes_every_stream() {
    let mut r = rig();
    let (status, body, _) = r.control_with(&query(VIRTIO_SND_R_PCM_INFO, 0, 2, 32), 4 + 64);
    assert_eq!(status, VIRTIO_SND_S_OK);
    let out: virtio_snd_pcm_info = parse(&body[..32]).unwrap();
    let inp: virtio_snd_pcm_info = parse(&body[32..]).unwrap();
    assert_eq!(out.direction, VIRTIO_SND_D_OUTPUT);
    assert_eq!(inp.direction, VIRTIO_SND_D_INPUT);
    assert_eq!((out.channels_min, out.channels_max), (1, 2));
    let formats = out.formats.to_native();
    for f in [
        VIRTIO_SND_PCM_FMT_U8,
        VIRTIO_SND_PCM_FMT_S16,
        VIRTIO_SND_PCM_FMT_S24,
        VIRTIO_SND_PCM_FMT_S32,
        VIRTIO_SND_PCM_FMT_FLOAT,
    ] {
        assert_ne!(formats & 1 << f, 0);
    }
    let rates = out.rates.to_native();
    assert_ne!(rates & 1 << 1, 0, "8 kHz");
    assert_ne!(rates & 1 << 12, 0, "192 kHz");
    assert_ne!(out.features.to_native() & 1 << VIRTIO_SND_PCM_F_EVT_XRUNS, 0);
    assert_eq!(out.padding, [0; 5]);
    assert_eq!(out.hda_fn_nid.to_native(), inp.hda_fn_nid.to_native());
}

#[test]
fn info_queries_check_range_room_and_size() {
    let mut r = rig();
    // Past the end.
    assert_eq!(
        r.control_with(&query(VIRTIO_SND_R_PCM_INFO, 1, 2, 32), 68).0,
        VIRTIO_SND_S_BAD_MSG
    );
    assert_eq!(
        r.control_with(&query(VIRTIO_SND_R_PCM_INFO, u32::MAX, 2, 32), 68).0,
        VIRTIO_SND_S_BAD_MSG
    );
    // Response too small for count * size.
    assert_eq!(
        r.control_with(&query(VIRTIO_SND_R_PCM_INFO, 0, 2, 32), 40).0,
        VIRTIO_SND_S_BAD_MSG
    );
    // Zero or absurd item size.
    assert_eq!(r.control_with(&query(VIRTIO_SND_R_PCM_INFO, 0, 1, 0), 36).0, VIRTIO_SND_S_BAD_MSG);
    assert_eq!(
        r.control_with(&query(VIRTIO_SND_R_PCM_INFO, 0, 1, 1 << 20), 36).0,
        VIRTIO_SND_S_BAD_MSG
    );
    // An older, shorter structure is truncated; a newer, longer one padded.
    let (status, body, _) = r.control_with(&query(VIRTIO_SND_R_PCM_INFO, 1, 1, 8), 12);
    assert_eq!(status, VIRTIO_SND_S_OK);
    assert_eq!(body.len(), 8);
    let (status, body, _) = r.control_with(&query(VIRTIO_SND_R_PCM_INFO, 1, 1, 40), 44);
    assert_eq!(status, VIRTIO_SND_S_OK);
    assert_eq!(body[24], VIRTIO_SND_D_INPUT);
    assert_eq!(&body[32..], &[0; 8]);
    // Zero items is a valid, empty answer.
    assert_eq!(r.control_with(&query(VIRTIO_SND_R_PCM_INFO, 2, 0, 32), 4).0, VIRTIO_SND_S_OK);
}

#[test]
fn chmap_info_reports_each_streams_positions() {
    let mut r = rig_with(SoundConfig::new(
        vec![default_chmap(6)],
        vec![crate::config::parse_chmap("FC").unwrap()],
        false,
    ));
    let (status, body, _) = r.control_with(&query(VIRTIO_SND_R_CHMAP_INFO, 0, 2, 24), 52);
    assert_eq!(status, VIRTIO_SND_S_OK);
    let a: virtio_snd_chmap_info = parse(&body[..24]).unwrap();
    let b: virtio_snd_chmap_info = parse(&body[24..]).unwrap();
    assert_eq!((a.direction, a.channels), (VIRTIO_SND_D_OUTPUT, 6));
    assert_eq!(
        &a.positions[..6],
        &[VIRTIO_SND_CHMAP_FL, VIRTIO_SND_CHMAP_FR, VIRTIO_SND_CHMAP_RL, VIRTIO_SND_CHMAP_RR, VIRTIO_SND_CHMAP_FC, VIRTIO_SND_CHMAP_LFE]
    );
    assert_eq!(&a.positions[6..], &[0; 12]);
    assert_eq!(
        (b.direction, b.channels, b.positions[0]),
        (VIRTIO_SND_D_INPUT, 1, VIRTIO_SND_CHMAP_FC)
    );
    assert_eq!(
        r.control_with(&query(VIRTIO_SND_R_CHMAP_INFO, 2, 1, 24), 28).0,
        VIRTIO_SND_S_BAD_MSG
    );
}

#[test]
fn jack_info_and_remap() {
    let mut r = rig();
    let (status, body, _) = r.control_with(&query(VIRTIO_SND_R_JACK_INFO, 0, 2, 24), 52);
    assert_eq!(status, VIRTIO_SND_S_OK);
    let out: virtio_snd_jack_info = parse(&body[..24]).unwrap();
    let inp: virtio_snd_jack_info = parse(&body[24..]).unwrap();
    assert_eq!(out.connected, 1);
    assert_eq!(out.features.to_native(), 1 << VIRTIO_SND_JACK_F_REMAP);
    assert_eq!(out.hda_reg_defconf.to_native() >> 20 & 0xf, 0x0, "line out");
    assert_eq!(inp.hda_reg_defconf.to_native() >> 20 & 0xf, 0xa, "mic");
    assert_eq!(out.padding, [0; 7]);

    let remap = |jack: u32, association: u32, sequence: u32| -> Vec<u8> {
        [VIRTIO_SND_R_JACK_REMAP, jack, association, sequence]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    };
    assert_eq!(r.control(&remap(0, 3, 2)), VIRTIO_SND_S_OK);
    let (_, body, _) = r.control_with(&query(VIRTIO_SND_R_JACK_INFO, 0, 1, 24), 28);
    let out: virtio_snd_jack_info = parse(&body).unwrap();
    assert_eq!(out.hda_reg_defconf.to_native() & 0xff, 0x32);
    assert_eq!(r.control(&remap(2, 1, 1)), VIRTIO_SND_S_BAD_MSG, "no such jack");
    assert_eq!(r.control(&remap(0, 16, 1)), VIRTIO_SND_S_BAD_MSG, "4-bit association");
    assert_eq!(r.control(&remap(0, 1, 1)[..12]), VIRTIO_SND_S_BAD_MSG, "short request");
}

// ----- the PCM state machine ----------------------------------------------

#[test]
fn every_transition_follows_the_spec() {
    use PcmState::*;
    let all = [
        VIRTIO_SND_R_PCM_SET_PARAMS,
        VIRTIO_SND_R_PCM_PREPARE,
        VIRTIO_SND_R_PCM_START,
        VIRTIO_SND_R_PCM_STOP,
        VIRTIO_SND_R_PCM_RELEASE,
    ];
    // From each state, the requests the spec allows and where they lead.
    let table: [(PcmState, &[(u32, PcmState)]); 6] = [
        (Idle, &[(VIRTIO_SND_R_PCM_SET_PARAMS, ParamsSet)]),
        (
            ParamsSet,
            &[(VIRTIO_SND_R_PCM_SET_PARAMS, ParamsSet), (VIRTIO_SND_R_PCM_PREPARE, Prepared)],
        ),
        (
            Prepared,
            &[
                (VIRTIO_SND_R_PCM_SET_PARAMS, ParamsSet),
                (VIRTIO_SND_R_PCM_PREPARE, Prepared),
                (VIRTIO_SND_R_PCM_START, Running),
                (VIRTIO_SND_R_PCM_RELEASE, Released),
            ],
        ),
        (Running, &[(VIRTIO_SND_R_PCM_STOP, Stopped)]),
        (
            Stopped,
            &[(VIRTIO_SND_R_PCM_START, Running), (VIRTIO_SND_R_PCM_RELEASE, Released)],
        ),
        (
            Released,
            &[(VIRTIO_SND_R_PCM_SET_PARAMS, ParamsSet), (VIRTIO_SND_R_PCM_PREPARE, Prepared)],
        ),
    ];
    let path_to = |state: PcmState| -> Vec<u32> {
        match state {
            Idle => vec![],
            ParamsSet => vec![VIRTIO_SND_R_PCM_SET_PARAMS],
            Prepared => vec![VIRTIO_SND_R_PCM_SET_PARAMS, VIRTIO_SND_R_PCM_PREPARE],
            Running => vec![VIRTIO_SND_R_PCM_SET_PARAMS, VIRTIO_SND_R_PCM_PREPARE, VIRTIO_SND_R_PCM_START],
            Stopped => vec![VIRTIO_SND_R_PCM_SET_PARAMS, VIRTIO_SND_R_PCM_PREPARE, VIRTIO_SND_R_PCM_START, VIRTIO_SND_R_PCM_STOP],
            Released => vec![VIRTIO_SND_R_PCM_SET_PARAMS, VIRTIO_SND_R_PCM_PREPARE, VIRTIO_SND_R_PCM_RELEASE],
        }
    };
    let send = |r: &mut Rig, code: u32| -> u32 {
        if code == VIRTIO_SND_R_PCM_SET_PARAMS {
            r.control(&set_params(0, 19200, 3840, 2, VIRTIO_SND_PCM_FMT_S16, 7))
        } else {
            r.control(&pcm(code, 0))
        }
    };
    for (from, allowed) in table {
        for code in all {
            let mut r = rig();
            for step in path_to(from) {
                assert_eq!(send(&mut r, step), VIRTIO_SND_S_OK);
            }
            assert_eq!(r.dev.stream_state(0), Some(from));
            let status = send(&mut r, code);
            match allowed.iter().find(|(c, _)| *c == code) {
                Some((_, to)) => {
                    assert_eq!(status, VIRTIO_SND_S_OK, "{from:?} + {code:#x}");
                    assert_eq!(r.dev.stream_state(0), Some(*to), "{from:?} + {code:#x}");
                }
                None => {
                    assert_eq!(status, VIRTIO_SND_S_BAD_MSG, "{from:?} + {code:#x} must be refused");
                    assert_eq!(r.dev.stream_state(0), Some(from), "state must not change");
                }
            }
        }
    }
}

#[test]
fn pcm_requests_for_unknown_streams_or_short_bodies_are_bad() {
    let mut r = rig();
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_PREPARE, 2)), VIRTIO_SND_S_BAD_MSG);
    assert_eq!(
        r.control(&set_params(7, 19200, 3840, 2, VIRTIO_SND_PCM_FMT_S16, 7)),
        VIRTIO_SND_S_BAD_MSG
    );
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_START, 0)[..6]), VIRTIO_SND_S_BAD_MSG);
    assert_eq!(
        r.control(&set_params(0, 19200, 3840, 2, VIRTIO_SND_PCM_FMT_S16, 7)[..20]),
        VIRTIO_SND_S_BAD_MSG
    );
    assert_eq!(r.control(&VIRTIO_SND_R_PCM_PREPARE.to_le_bytes()[..2]), VIRTIO_SND_S_BAD_MSG);
    assert_eq!(r.control(&0x9999u32.to_le_bytes()), VIRTIO_SND_S_NOT_SUPP);
}

#[test]
fn set_params_validates_every_field() {
    let mut r = rig();
    let ok = |r: &mut Rig, req: Vec<u8>| r.control(&req);
    assert_eq!(
        ok(&mut r, set_params(0, 19200, 3840, 3, VIRTIO_SND_PCM_FMT_S16, 7)),
        VIRTIO_SND_S_BAD_MSG,
        "3 ch"
    );
    assert_eq!(
        ok(&mut r, set_params(0, 19200, 3840, 0, VIRTIO_SND_PCM_FMT_S16, 7)),
        VIRTIO_SND_S_BAD_MSG,
        "0 ch"
    );
    assert_eq!(
        ok(&mut r, set_params(0, 19200, 0, 2, VIRTIO_SND_PCM_FMT_S16, 7)),
        VIRTIO_SND_S_BAD_MSG,
        "period 0"
    );
    assert_eq!(
        ok(&mut r, set_params(0, 19201, 3840, 2, VIRTIO_SND_PCM_FMT_S16, 7)),
        VIRTIO_SND_S_BAD_MSG,
        "divisor"
    );
    assert_eq!(
        ok(&mut r, set_params(0, 18, 6, 2, VIRTIO_SND_PCM_FMT_S16, 7)),
        VIRTIO_SND_S_BAD_MSG,
        "partial frame"
    );
    assert_eq!(
        ok(&mut r, set_params(0, 19200, 3840, 2, 3, 7)),
        VIRTIO_SND_S_NOT_SUPP,
        "S8"
    );
    assert_eq!(
        ok(&mut r, set_params(0, 19200, 3840, 2, 99, 7)),
        VIRTIO_SND_S_NOT_SUPP,
        "unknown format"
    );
    assert_eq!(
        ok(&mut r, set_params(0, 19200, 3840, 2, VIRTIO_SND_PCM_FMT_S16, 0)),
        VIRTIO_SND_S_NOT_SUPP,
        "5512"
    );
    assert_eq!(
        ok(&mut r, set_params(0, 19200, 3840, 2, VIRTIO_SND_PCM_FMT_S16, 13)),
        VIRTIO_SND_S_NOT_SUPP,
        "384k"
    );
    assert_eq!(
        ok(&mut r, set_params(0, 19200, 3840, 2, VIRTIO_SND_PCM_FMT_S16, 40)),
        VIRTIO_SND_S_NOT_SUPP,
        "rate"
    );
    let mut shmem = set_params(0, 19200, 3840, 2, VIRTIO_SND_PCM_FMT_S16, 7);
    shmem[16] = 1 << VIRTIO_SND_PCM_F_SHMEM_HOST;
    assert_eq!(r.control(&shmem), VIRTIO_SND_S_NOT_SUPP);
    for (format, bytes) in [
        (VIRTIO_SND_PCM_FMT_U8, 1),
        (VIRTIO_SND_PCM_FMT_S16, 2),
        (VIRTIO_SND_PCM_FMT_S24, 4),
        (VIRTIO_SND_PCM_FMT_S32, 4),
        (VIRTIO_SND_PCM_FMT_FLOAT, 4),
    ] {
        for rate in [1u8, 7, 12, 14] {
            let period = 2 * bytes * 100;
            assert_eq!(
                ok(&mut r, set_params(0, period * 4, period, 2, format, rate)),
                VIRTIO_SND_S_OK
            );
        }
    }
    assert_eq!(r.dev.stream_state(0), Some(PcmState::ParamsSet));
}

#[test]
fn backend_failure_at_prepare_is_an_io_error_and_unplugs_the_jack() {
    let mut r = rig();
    let ev = r.event_buffer();
    r.host.0.lock().unwrap().fail = true;
    assert_eq!(
        r.control(&set_params(0, 19200, 3840, 2, VIRTIO_SND_PCM_FMT_S16, 7)),
        VIRTIO_SND_S_OK
    );
    let (status, _, completions) = r.control_with(&pcm(VIRTIO_SND_R_PCM_PREPARE, 0), 4);
    assert_eq!(status, VIRTIO_SND_S_IO_ERR);
    assert_eq!(r.dev.stream_state(0), Some(PcmState::ParamsSet));
    assert!(completions
        .iter()
        .any(|c| c.queue == EVENT_QUEUE && c.head == ev.head()));
    let written = r.mem.written(&ev);
    assert_eq!(status_of(&written), VIRTIO_SND_EVT_JACK_DISCONNECTED);
    assert_eq!(status_of(&written[4..]), 0, "jack 0");
    // The host comes back: the next PREPARE works and plugs the jack in.
    r.host.0.lock().unwrap().fail = false;
    let ev = r.event_buffer();
    let (status, _, _) = r.control_with(&pcm(VIRTIO_SND_R_PCM_PREPARE, 0), 4);
    assert_eq!(status, VIRTIO_SND_S_OK);
    assert_eq!(status_of(&r.mem.written(&ev)), VIRTIO_SND_EVT_JACK_CONNECTED);
}

// ----- playback pacing -----------------------------------------------------

#[test]
fn playback_is_held_until_start_then_paced_in_real_time() {
    let mut r = rig();
    r.play_setup(3840);
    let t0 = r.clock.now();
    // Pre-buffering: four periods before START, none completed.
    let periods: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i + 1; 3840]).collect();
    let chains: Vec<DescChain> = periods.iter().map(|p| r.tx(0, p)).collect();
    assert!(r.dev.take_completions().is_empty());
    assert_eq!(r.dev.held_io(0), 4);
    assert_eq!(r.timers.get(0), None);
    r.clock.advance(MS * 500);
    assert!(
        r.dev.take_completions().is_empty(),
        "nothing plays before START"
    );

    let t_start = r.clock.now();
    let (status, _, completions) = r.control_with(&pcm(VIRTIO_SND_R_PCM_START, 0), 4);
    assert_eq!(status, VIRTIO_SND_S_OK);
    assert_eq!(completions.len(), 1, "only the START reply, no audio yet");
    assert!(r.host.0.lock().unwrap().played.is_empty());
    assert_eq!(r.timers.get(0), Some(t_start + MS * 20));

    for (i, chain) in chains.iter().enumerate() {
        // One tick early: nothing.
        r.clock
            .set(r.timers.get(0).unwrap() - Duration::from_micros(10));
        r.dev.handle_timer(0, &r.mem.mem);
        assert!(r.dev.take_completions().is_empty());
        let done = r.fire(0);
        assert_eq!(done.len(), 1, "period {i}");
        assert_eq!(
            done[0],
            Completion {
                queue: TX_QUEUE,
                head: chain.head(),
                len: 8
            }
        );
        assert_eq!(r.clock.now(), t_start + MS * 20 * (i as u32 + 1));
        let status: virtio_snd_pcm_status = parse(&r.mem.written(chain)).unwrap();
        assert_eq!(status.status.to_native(), VIRTIO_SND_S_OK);
        assert_eq!(status.latency_bytes.to_native(), 77);
    }
    assert_eq!(r.host.0.lock().unwrap().played, periods.concat());
    assert!(r.clock.now() - t0 >= MS * 580);
}

#[test]
fn stop_pauses_and_start_resumes_without_rushing() {
    let mut r = rig();
    r.play_setup(3840);
    let a = r.tx(0, &[1; 3840]);
    let b = r.tx(0, &[2; 3840]);
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_START, 0)), VIRTIO_SND_S_OK);
    r.clock.advance(MS * 10);
    r.dev.handle_timer(0, &r.mem.mem);
    assert!(r.dev.take_completions().is_empty());
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_STOP, 0)), VIRTIO_SND_S_OK);
    assert_eq!(r.timers.get(0), None, "a stopped stream has no timer");
    r.clock.advance(Duration::from_secs(5));
    r.dev.handle_timer(0, &r.mem.mem);
    assert!(
        r.dev.take_completions().is_empty(),
        "nothing plays while stopped"
    );
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_START, 0)), VIRTIO_SND_S_OK);
    let resumed = r.clock.now();
    // The first buffer had 10 ms left.
    let done = r.fire(0);
    assert_eq!(done[0].head, a.head());
    assert_eq!(r.clock.now(), resumed + MS * 10);
    let done = r.fire(0);
    assert_eq!(done[0].head, b.head());
    assert_eq!(r.clock.now(), resumed + MS * 30);
}

#[test]
fn release_completes_every_pending_buffer_before_answering() {
    let mut r = rig();
    r.play_setup(3840);
    let chains: Vec<DescChain> = (0..3).map(|_| r.tx(0, &[5; 3840])).collect();
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_START, 0)), VIRTIO_SND_S_OK);
    r.fire(0);
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_STOP, 0)), VIRTIO_SND_S_OK);
    let (status, _, completions) = r.control_with(&pcm(VIRTIO_SND_R_PCM_RELEASE, 0), 4);
    assert_eq!(status, VIRTIO_SND_S_OK);
    // Two I/O completions, then the RELEASE reply last.
    let queues: Vec<usize> = completions.iter().map(|c| c.queue).collect();
    assert_eq!(queues, [TX_QUEUE, TX_QUEUE, CONTROL_QUEUE]);
    assert_eq!(completions[0].head, chains[1].head());
    assert_eq!(completions[1].head, chains[2].head());
    assert_eq!(r.dev.held_io(0), 0);
    assert_eq!(
        r.host.0.lock().unwrap().played.len(),
        3840,
        "released audio is not played"
    );
}

#[test]
fn io_outside_prepared_states_or_for_the_wrong_direction_is_refused() {
    let mut r = rig();
    let early = r.tx(0, &[0; 64]);
    let c = r.dev.take_completions();
    assert_eq!(
        c,
        [Completion {
            queue: TX_QUEUE,
            head: early.head(),
            len: 8
        }]
    );
    let status: virtio_snd_pcm_status = parse(&r.mem.written(&early)).unwrap();
    assert_eq!(status.status.to_native(), VIRTIO_SND_S_IO_ERR);
    r.play_setup(3840);
    // Stream 1 is an input: not on the tx queue.
    let wrong = r.tx(1, &[0; 64]);
    assert_eq!(r.dev.take_completions()[0].head, wrong.head());
    let unknown = r.tx(9, &[0; 64]);
    assert_eq!(r.dev.take_completions()[0].head, unknown.head());
    // An empty buffer is done at once.
    let empty = r.tx(0, &[]);
    let c = r.dev.take_completions();
    assert_eq!(c[0].head, empty.head());
    assert_eq!(
        parse::<virtio_snd_pcm_status>(&r.mem.written(&empty))
            .unwrap()
            .status
            .to_native(),
        VIRTIO_SND_S_OK
    );
}

#[test]
fn malformed_io_chains_are_dropped() {
    let mut r = rig();
    r.play_setup(3840);
    // No status descriptor.
    let chain = r.mem.chain(&[&0u32.to_le_bytes(), &[0; 16]], &[]);
    r.dev.handle_io(TX_QUEUE, chain.clone(), &r.mem.mem);
    assert_eq!(
        r.dev.take_completions(),
        [Completion {
            queue: TX_QUEUE,
            head: chain.head(),
            len: 0
        }]
    );
    // Status too short.
    let chain = r.mem.chain(&[&0u32.to_le_bytes(), &[0; 16]], &[4]);
    r.dev.handle_io(TX_QUEUE, chain.clone(), &r.mem.mem);
    assert_eq!(r.dev.take_completions()[0].len, 0);
    // No stream id.
    let chain = r.mem.chain(&[&[0; 2]], &[8]);
    r.dev.handle_io(TX_QUEUE, chain.clone(), &r.mem.mem);
    assert_eq!(r.dev.take_completions()[0].len, 0);
    // Capture buffer with only readable parts.
    let chain = r.mem.chain(&[&1u32.to_le_bytes(), &[0; 64]], &[]);
    r.dev.handle_io(RX_QUEUE, chain.clone(), &r.mem.mem);
    assert_eq!(r.dev.take_completions()[0].len, 0);
    assert_eq!(r.dev.held_io(0), 0);
    assert_eq!(r.dev.held_io(1), 0);
}

#[test]
fn a_full_sink_holds_buffers_back() {
    let mut r = rig();
    r.play_setup(3840);
    r.host.0.lock().unwrap().room = Some(1000);
    let a = r.tx(0, &[1; 3840]);
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_START, 0)), VIRTIO_SND_S_OK);
    assert!(r.fire(0).is_empty(), "the sink took only 1000 bytes");
    let retry = r.timers.get(0).unwrap();
    assert!(retry <= r.clock.now() + SINK_RETRY);
    r.host.0.lock().unwrap().room = None;
    let done = r.fire(0);
    assert_eq!(done[0].head, a.head());
    assert_eq!(r.host.0.lock().unwrap().played, vec![1; 3840]);
}

#[test]
fn underrun_sends_an_xrun_event_and_does_not_rush_afterwards() {
    let mut r = rig();
    let ev = r.event_buffer();
    r.play_setup(3840);
    r.tx(0, &[1; 3840]);
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_START, 0)), VIRTIO_SND_S_OK);
    assert_eq!(r.fire(0).len(), 1);
    // The driver sends nothing; a period later the device reports it.
    let done = r.fire(0);
    assert_eq!(
        done,
        [Completion {
            queue: EVENT_QUEUE,
            head: ev.head(),
            len: 8
        }]
    );
    let written = r.mem.written(&ev);
    assert_eq!(status_of(&written), VIRTIO_SND_EVT_PCM_XRUN);
    assert_eq!(status_of(&written[4..]), 0);
    assert_eq!(
        r.timers.get(0),
        None,
        "reported once, then wait for the driver"
    );
    // Much later a buffer comes: it takes a whole period from now.
    r.clock.advance(Duration::from_secs(1));
    let b = r.tx(0, &[2; 3840]);
    assert!(r.dev.take_completions().is_empty());
    let now = r.clock.now();
    assert_eq!(r.timers.get(0), Some(now + MS * 20));
    assert_eq!(r.fire(0)[0].head, b.head());
}

#[test]
fn volume_and_mute_are_applied_to_played_samples() {
    let mut r = rig();
    r.play_setup(8);
    let ctl_write = |id: u32, value: u32| -> Vec<u8> {
        let mut v = [VIRTIO_SND_R_CTL_WRITE, id]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect::<Vec<u8>>();
        let mut val = vec![0u8; CTL_VALUE_SIZE];
        val[..4].copy_from_slice(&value.to_le_bytes());
        v.extend(val);
        v
    };
    let sample = |v: i16| -> Vec<u8> { [v, v].iter().flat_map(|s| s.to_le_bytes()).collect() };
    let mut frames = sample(1000);
    frames.extend(sample(-2000));
    for _ in 0..3 {
        r.tx(0, &frames);
    }
    assert_eq!(r.control(&ctl_write(0, 50)), VIRTIO_SND_S_OK);
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_START, 0)), VIRTIO_SND_S_OK);
    r.fire(0);
    let mut half = sample(500);
    half.extend(sample(-1000));
    assert_eq!(r.host.0.lock().unwrap().played, half, "volume 50");
    assert_eq!(r.control(&ctl_write(1, 0)), VIRTIO_SND_S_OK, "mute");
    r.fire(0);
    assert_eq!(&r.host.0.lock().unwrap().played[8..], &[0; 8], "muted");
    assert_eq!(r.control(&ctl_write(1, 1)), VIRTIO_SND_S_OK, "unmute");
    assert_eq!(r.control(&ctl_write(0, 100)), VIRTIO_SND_S_OK);
    r.fire(0);
    assert_eq!(
        &r.host.0.lock().unwrap().played[16..],
        &frames[..],
        "unity gain is bit-exact"
    );
}

// ----- capture -------------------------------------------------------------

#[test]
fn capture_buffers_complete_when_full_at_real_time_pace() {
    let mut r = rig();
    assert_eq!(r.control(&set_params(1, 400, 100, 2, VIRTIO_SND_PCM_FMT_S16, 7)), VIRTIO_SND_S_OK);
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_PREPARE, 1)), VIRTIO_SND_S_OK);
    let a = r.rx(1, 100);
    let b = r.rx(1, 100);
    assert!(r.dev.take_completions().is_empty());
    let start = r.clock.now();
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_START, 1)), VIRTIO_SND_S_OK);
    // 100 bytes at 192 kB/s = 520.833 µs.
    let done = r.fire(1);
    assert_eq!(
        done,
        [Completion {
            queue: RX_QUEUE,
            head: a.head(),
            len: 108
        }]
    );
    let elapsed = r.clock.now() - start;
    assert!(elapsed >= Duration::from_nanos(520_833) && elapsed < Duration::from_micros(530));
    let written = r.mem.written(&a);
    let expected: Vec<u8> = (0..100u8).collect();
    assert_eq!(&written[..100], &expected[..]);
    let status: virtio_snd_pcm_status = parse(&written[100..]).unwrap();
    assert_eq!(status.status.to_native(), VIRTIO_SND_S_OK);
    let done = r.fire(1);
    assert_eq!(done[0].head, b.head());
    assert_eq!(r.mem.written(&b)[0], 100);
}

#[test]
fn release_returns_partial_capture() {
    let mut r = rig();
    assert_eq!(r.control(&set_params(1, 400, 100, 2, VIRTIO_SND_PCM_FMT_S16, 7)), VIRTIO_SND_S_OK);
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_PREPARE, 1)), VIRTIO_SND_S_OK);
    let a = r.rx(1, 100);
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_START, 1)), VIRTIO_SND_S_OK);
    r.clock.advance(Duration::from_micros(200));
    r.dev.handle_timer(1, &r.mem.mem);
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_STOP, 1)), VIRTIO_SND_S_OK);
    let (_, _, completions) = r.control_with(&pcm(VIRTIO_SND_R_PCM_RELEASE, 1), 4);
    let io = completions.iter().find(|c| c.queue == RX_QUEUE).unwrap();
    assert_eq!(io.head, a.head());
    // 200 µs at 192 kB/s: 38.4 bytes, so 9 whole frames.
    assert_eq!(io.len, 36 + 8);
    let written = r.mem.written(&a);
    let status: virtio_snd_pcm_status = parse(&written[100..]).unwrap();
    assert_eq!(status.status.to_native(), VIRTIO_SND_S_OK);
}

// ----- event queue -----------------------------------------------------------

#[test]
fn event_buffers_are_held_not_spun_on() {
    let mut r = rig();
    let bufs: Vec<DescChain> = (0..16).map(|_| r.event_buffer()).collect();
    assert!(
        r.dev.take_completions().is_empty(),
        "no event, no completion"
    );
    assert_eq!(r.dev.held_event_buffers(), 16);
    // Control and PCM traffic does not consume them either.
    r.play_setup(3840);
    assert_eq!(r.dev.held_event_buffers(), 16);
    // A short event buffer is returned empty and the event goes to the next.
    r.dev.queue_stopped(EVENT_QUEUE);
    assert_eq!(r.dev.held_event_buffers(), 0);
    let short = r.mem.chain(&[], &[4]);
    r.dev.add_event_buffer(short.clone(), &r.mem.mem);
    r.dev.queue_event(event(VIRTIO_SND_EVT_PCM_XRUN, 0));
    r.dev.deliver_events(&r.mem.mem);
    assert_eq!(
        r.dev.take_completions(),
        [Completion {
            queue: EVENT_QUEUE,
            head: short.head(),
            len: 0
        }]
    );
    let ok = r.event_buffer();
    assert_eq!(
        r.dev.take_completions(),
        [Completion {
            queue: EVENT_QUEUE,
            head: ok.head(),
            len: 8
        }]
    );
    drop(bufs);
}

#[test]
fn events_wait_for_a_buffer() {
    let mut r = rig();
    r.dev.queue_event(event(VIRTIO_SND_EVT_JACK_DISCONNECTED, 1));
    r.dev.deliver_events(&r.mem.mem);
    assert!(r.dev.take_completions().is_empty());
    let ev = r.event_buffer();
    assert_eq!(r.dev.take_completions().len(), 1);
    assert_eq!(status_of(&r.mem.written(&ev)), VIRTIO_SND_EVT_JACK_DISCONNECTED);
    // A flood without buffers is bounded.
    for _ in 0..1000 {
        r.dev.queue_event(event(VIRTIO_SND_EVT_PCM_XRUN, 0));
    }
    assert_eq!(r.dev.pending_events.len(), MAX_PENDING_EVENTS);
}

#[test]
fn host_write_errors_fail_the_buffer_and_unplug_the_jack() {
    let mut r = rig();
    let ev = r.event_buffer();
    r.play_setup(3840);
    let a = r.tx(0, &[1; 3840]);
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_START, 0)), VIRTIO_SND_S_OK);
    r.host.0.lock().unwrap().fail = true;
    let done = r.fire(0);
    let io = done.iter().find(|c| c.queue == TX_QUEUE).unwrap();
    assert_eq!(io.head, a.head());
    assert_eq!(
        parse::<virtio_snd_pcm_status>(&r.mem.written(&a))
            .unwrap()
            .status
            .to_native(),
        VIRTIO_SND_S_IO_ERR
    );
    assert_eq!(status_of(&r.mem.written(&ev)), VIRTIO_SND_EVT_JACK_DISCONNECTED);
    let (_, body, _) = r.control_with(&query(VIRTIO_SND_R_JACK_INFO, 0, 1, 24), 28);
    assert_eq!(parse::<virtio_snd_jack_info>(&body).unwrap().connected, 0);
}

// ----- controls ------------------------------------------------------------

#[test]
fn control_elements_describe_read_and_write() {
    let mut r = rig();
    let (status, body, _) = r.control_with(&query(VIRTIO_SND_R_CTL_INFO, 0, 4, 96), 4 + 4 * 96);
    assert_eq!(status, VIRTIO_SND_S_OK);
    let infos: Vec<virtio_snd_ctl_info> = body.chunks(96).map(|c| parse(c).unwrap()).collect();
    let name = |i: &virtio_snd_ctl_info| {
        String::from_utf8(i.name.iter().copied().take_while(|&b| b != 0).collect()).unwrap()
    };
    assert_eq!(name(&infos[0]), "PCM Playback Volume");
    assert_eq!(name(&infos[1]), "PCM Playback Switch");
    assert_eq!(name(&infos[2]), "Capture Volume");
    assert_eq!(name(&infos[3]), "Capture Switch");
    assert_eq!(infos[0].type_.to_native(), VIRTIO_SND_CTL_TYPE_INTEGER);
    assert_eq!(infos[0].role.to_native(), VIRTIO_SND_CTL_ROLE_VOLUME << 1);
    assert_eq!(infos[3].role.to_native(), VIRTIO_SND_CTL_ROLE_MUTE << 1 | 1);
    assert_eq!(infos[1].type_.to_native(), VIRTIO_SND_CTL_TYPE_BOOLEAN);
    assert_eq!(infos[0].count.to_native(), 1);
    assert_eq!(
        [
            infos[0].value[0].to_native(),
            infos[0].value[1].to_native(),
            infos[0].value[2].to_native()
        ],
        [0, VOLUME_MAX, 1]
    );
    assert_eq!(infos[0].access.to_native(), 0b11);

    let read = |r: &mut Rig, id: u32| -> (u32, u32) {
        let req: Vec<u8> = [VIRTIO_SND_R_CTL_READ, id]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let (status, body, _) = r.control_with(&req, 4 + CTL_VALUE_SIZE as u32);
        (status, if status == VIRTIO_SND_S_OK { status_of(&body) } else { 0 })
    };
    let write = |r: &mut Rig, id: u32, value: u32| -> (u32, Vec<Completion>) {
        let mut req: Vec<u8> = [VIRTIO_SND_R_CTL_WRITE, id]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut val = vec![0u8; CTL_VALUE_SIZE];
        val[..4].copy_from_slice(&value.to_le_bytes());
        req.extend(val);
        let (status, _, completions) = r.control_with(&req, 4);
        (status, completions)
    };
    assert_eq!(read(&mut r, 0), (VIRTIO_SND_S_OK, VOLUME_MAX));
    assert_eq!(read(&mut r, 1), (VIRTIO_SND_S_OK, 1), "switch on: not muted");
    let ev = r.event_buffer();
    let (status, completions) = write(&mut r, 2, 40);
    assert_eq!(status, VIRTIO_SND_S_OK);
    assert!(completions.iter().any(|c| c.queue == EVENT_QUEUE));
    let written = r.mem.written(&ev);
    assert_eq!(status_of(&written), VIRTIO_SND_EVT_CTL_NOTIFY);
    assert_eq!(
        u16::from_le_bytes([written[4], written[5]]),
        2,
        "control id"
    );
    assert_eq!(
        u16::from_le_bytes([written[6], written[7]]),
        1 << VIRTIO_SND_CTL_EVT_MASK_VALUE
    );
    assert_eq!(read(&mut r, 2), (VIRTIO_SND_S_OK, 40));
    // Writing the same value again notifies nothing.
    let ev2 = r.event_buffer();
    let (status, completions) = write(&mut r, 2, 40);
    assert_eq!(status, VIRTIO_SND_S_OK);
    assert!(!completions.iter().any(|c| c.queue == EVENT_QUEUE));
    assert_eq!(r.dev.held_event_buffers(), 1);
    drop(ev2);
    assert_eq!(write(&mut r, 0, VOLUME_MAX + 1).0, VIRTIO_SND_S_BAD_MSG);
    assert_eq!(write(&mut r, 1, 2).0, VIRTIO_SND_S_BAD_MSG);
    assert_eq!(write(&mut r, 4, 1).0, VIRTIO_SND_S_BAD_MSG, "no such control");
    assert_eq!(read(&mut r, 4).0, VIRTIO_SND_S_BAD_MSG);
    // A write without its value.
    let short: Vec<u8> = [VIRTIO_SND_R_CTL_WRITE, 0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    assert_eq!(r.control(&short), VIRTIO_SND_S_BAD_MSG);
    // No enumerated controls, no TLV.
    let req: Vec<u8> = [VIRTIO_SND_R_CTL_ENUM_ITEMS, 0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    assert_eq!(r.control(&req), VIRTIO_SND_S_BAD_MSG);
    for code in [VIRTIO_SND_R_CTL_TLV_READ, VIRTIO_SND_R_CTL_TLV_WRITE, VIRTIO_SND_R_CTL_TLV_COMMAND] {
        let req: Vec<u8> = [code, 0].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(r.control(&req), VIRTIO_SND_S_NOT_SUPP);
    }
    assert_eq!(
        r.control_with(&query(VIRTIO_SND_R_CTL_INFO, 3, 2, 96), 4 + 192).0,
        VIRTIO_SND_S_BAD_MSG
    );
}

#[test]
fn controls_need_the_feature() {
    let mut r = rig();
    r.dev.set_acked_features(1 << 32);
    assert_eq!(
        r.control_with(&query(VIRTIO_SND_R_CTL_INFO, 0, 1, 96), 100).0,
        VIRTIO_SND_S_NOT_SUPP
    );
    let r = rig_with(SoundConfig::new(vec![default_chmap(2)], vec![], false));
    assert_eq!(r.dev.features(), 0);
    assert_eq!(status_of(&r.dev.config()[12..]), 0);
}

// ----- malformed control chains ---------------------------------------------

#[test]
fn malformed_control_chains() {
    let mut r = rig();
    // No response descriptor at all: nothing can be written.
    let chain = r.mem.chain(&[&query(VIRTIO_SND_R_PCM_INFO, 0, 1, 32)], &[]);
    r.dev.handle_control(&chain, &r.mem.mem);
    assert_eq!(r.dev.take_completions()[0].len, 0);
    // Response shorter than a status.
    let chain = r.mem.chain(&[&query(VIRTIO_SND_R_PCM_INFO, 0, 1, 32)], &[3]);
    r.dev.handle_control(&chain, &r.mem.mem);
    assert_eq!(r.dev.take_completions()[0].len, 0);
    // Empty request.
    assert_eq!(r.control_with(&[], 4).0, VIRTIO_SND_S_BAD_MSG);
    // A huge request is refused without reading it all.
    assert_eq!(r.control_with(&vec![0; 70_000], 4).0, VIRTIO_SND_S_BAD_MSG);
    // Request split over many descriptors still parses.
    let q = query(VIRTIO_SND_R_PCM_INFO, 0, 1, 32);
    let parts: Vec<&[u8]> = q.chunks(3).collect();
    let chain = r.mem.chain(&parts, &[2, 34]);
    r.dev.handle_control(&chain, &r.mem.mem);
    assert_eq!(r.dev.take_completions()[0].len, 36);
    assert_eq!(status_of(&r.mem.written(&chain)), VIRTIO_SND_S_OK);
}

#[test]
fn chains_from_the_mock_builder_validate_as_the_daemon_does() {
    // Readable where writable is needed, and a length beyond memory, are
    // refused by chain validation before the device sees them; what gets
    // through with only readable parts is answered without a status.
    let (mem, chain) = ChainBuilder::new()
        .readable(&query(VIRTIO_SND_R_PCM_INFO, 0, 1, 32))
        .readable(&[0; 36])
        .build();
    let chain = chain.unwrap();
    let mut r = rig();
    r.dev.handle_control(&chain, &mem);
    assert_eq!(r.dev.take_completions()[0].len, 0);
    let (_, bad) = ChainBuilder::new().raw(&[vhost_device_common::mock::RawDesc {
        addr: vhost_device_common::mock::MEM_BASE,
        len: u32::MAX,
        flags: 2,
        next: 0,
    }]);
    bad.unwrap_err();
    // An indirect chain works like a direct one.
    let (mem, chain) = ChainBuilder::new()
        .readable(&query(VIRTIO_SND_R_PCM_INFO, 1, 1, 32))
        .writable(36)
        .build_indirect();
    let chain = chain.unwrap();
    r.dev.handle_control(&chain, &mem);
    assert_eq!(r.dev.take_completions()[0].len, 36);
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

#[test]
fn period_events_when_the_driver_asks_for_them() {
    let mut r = rig();
    let evs: Vec<DescChain> = (0..2).map(|_| r.event_buffer()).collect();
    let mut req = set_params(0, 16, 8, 2, VIRTIO_SND_PCM_FMT_S16, 7);
    req[16] = 1 << VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS;
    assert_eq!(r.control(&req), VIRTIO_SND_S_OK);
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_PREPARE, 0)), VIRTIO_SND_S_OK);
    r.tx(0, &[0; 16]);
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_START, 0)), VIRTIO_SND_S_OK);
    let done = r.fire(0);
    assert_eq!(done.iter().filter(|c| c.queue == EVENT_QUEUE).count(), 2);
    for ev in &evs {
        assert_eq!(status_of(&r.mem.written(ev)), VIRTIO_SND_EVT_PCM_PERIOD_ELAPSED);
    }
}

#[test]
fn oversized_io_buffers_are_refused() {
    let mut r = rig();
    assert_eq!(r.control(&set_params(1, 400, 100, 2, VIRTIO_SND_PCM_FMT_S16, 7)), VIRTIO_SND_S_OK);
    assert_eq!(r.control(&pcm(VIRTIO_SND_R_PCM_PREPARE, 1)), VIRTIO_SND_S_OK);
    // Five 1 MiB regions (over the same guest memory) plus a status: more
    // than MAX_IO_BYTES of room to record into.
    let id = r.mem.chain(&[&1u32.to_le_bytes()], &[]);
    let big = Region {
        addr: GuestAddress(vhost_device_common::mock::MEM_BASE),
        len: 1 << 20,
    };
    let status = r.mem.chain(&[], &[8]);
    let mut writable = vec![big; 5];
    writable.push(*status.writable().get(0).unwrap());
    let chain = DescChain::from_regions(99, &[*id.readable().get(0).unwrap()], &writable);
    r.dev.handle_io(RX_QUEUE, chain, &r.mem.mem);
    let c = r.dev.take_completions();
    assert_eq!(
        c,
        [Completion {
            queue: RX_QUEUE,
            head: 99,
            len: 8
        }]
    );
    assert_eq!(r.dev.held_io(1), 0);
    let written = r.mem.written(&status);
    assert_eq!(status_of(&written), VIRTIO_SND_S_IO_ERR);
}
