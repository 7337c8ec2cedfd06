// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! PCM I/O (virtio 1.3 §5.14.6.8): tx and rx buffers are held, moved to
//! and from the host as their frames fall due on the stream's clock, and
//! completed with a `virtio_snd_pcm_status`.

use std::mem::size_of;
use std::time::Duration;

use log::debug;

use vhost_device_common::{DescChain, GuestMem, RateLimited};

use super::events::event;
use super::{Completion, SoundDevice, MAX_IO_BYTES};
use crate::backend::{BackendError, InputSource, OutputSink};
use crate::config::Direction;
use crate::format::{Gain, PcmParams, SampleFormat};
use crate::pacer::Pacer;
use crate::protocol::{
    self, virtio_snd_pcm_status, virtio_snd_pcm_xfer, RX_QUEUE, TX_QUEUE, VIRTIO_SND_S_IO_ERR,
    VIRTIO_SND_S_OK,
};
use crate::stream::{Endpoint, IoBuf, PcmState, Stream};

/// How soon to retry a sink that was full.
pub(super) const SINK_RETRY: Duration = Duration::from_millis(5);
/// Most bytes moved between the guest and the host in one step, bounding
/// the copy buffer however late a timer fires.
const MAX_STEP: usize = 64 << 10;

/// What one round of moving due frames did.
#[derive(Default)]
struct Moved {
    /// The host failed; the buffer at the front went back with an error.
    host_error: Option<BackendError>,
    /// The sink took less than offered: retry soon rather than on pace.
    sink_full: bool,
    /// Period-elapsed events to send.
    periods: u32,
}

impl SoundDevice {
    /// Handles a buffer from the tx (`queue` = 2) or rx (3) queue.
    pub fn handle_io(&mut self, queue: usize, chain: DescChain, mem: &GuestMem) {
        let head = chain.head();
        let xfer = chain.reader(mem).read_obj::<virtio_snd_pcm_xfer>();
        let writable = chain.writable().total_len();
        let status_len = size_of::<virtio_snd_pcm_status>();
        let xfer = match xfer {
            Ok(xfer) if writable >= status_len => xfer,
            Ok(_) | Err(_) => {
                self.log.warn(|| {
                    format!("queue {queue}: I/O buffer {head} without a header or status; dropped")
                });
                self.complete(queue, head, 0);
                return;
            }
        };
        let id = xfer.stream_id.to_native() as usize;
        let direction = if queue == TX_QUEUE {
            Direction::Output
        } else {
            Direction::Input
        };
        let len = match direction {
            Direction::Output => chain
                .readable()
                .total_len()
                .saturating_sub(size_of::<virtio_snd_pcm_xfer>()),
            Direction::Input => writable - status_len,
        };
        let refused = match self.streams.get(id) {
            None => Some("no such stream"),
            Some(s) if s.config.direction != direction => Some("the stream goes the other way"),
            Some(s) if !s.state.accepts_io() => Some("the stream takes no I/O now"),
            _ if len > MAX_IO_BYTES => Some("the buffer is too large"),
            // A partial frame can never be moved (the host takes whole
            // frames), so it would be retried for ever.
            Some(s) if s.params.is_some_and(|p| len % p.frame_bytes().max(1) != 0) => {
                Some("the buffer is not a whole number of frames")
            }
            _ => None,
        };
        let buf = IoBuf::new(chain, len);
        if let Some(reason) = refused {
            self.log
                .warn(|| format!("queue {queue}: buffer {head} for stream {id} refused: {reason}"));
            let c = finish_io(queue, buf, VIRTIO_SND_S_IO_ERR, 0, mem, &self.log);
            self.completions.push(c);
            return;
        }
        let now = self.clock.now();
        let Some(stream) = self.streams.get_mut(id) else {
            return;
        };
        if len == 0 {
            let c = finish_io(queue, buf, VIRTIO_SND_S_OK, 0, mem, &self.log);
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
        if stream.state == PcmState::Released {
            // The frames a released stream's sink held have played (a
            // timer may also wake the worker early).
            if stream.close_at.is_some_and(|at| at <= now) {
                close_released(stream);
            }
            return;
        }
        if matches!(
            stream.state,
            PcmState::ParamsSet | PcmState::Prepared | PcmState::Stopped
        ) {
            self.probe_idle(id);
            self.deliver_events(mem);
            return;
        }
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
    pub(super) fn pump(&mut self, id: usize, mem: &GuestMem) {
        let now = self.clock.now();
        let Some(stream) = self.streams.get_mut(id) else {
            return;
        };
        if stream.state != PcmState::Running {
            return;
        }
        let (Some(params), Some(mut pacer)) = (stream.params, stream.pacer) else {
            return;
        };
        let moved = move_due(
            stream,
            &params,
            &mut pacer,
            now,
            mem,
            &mut self.completions,
            &self.log,
        );
        stream.pacer = Some(pacer);
        let next = if let Some(front) = stream.io.front() {
            if moved.sink_full {
                Some(now + SINK_RETRY.min(params.duration_of(u64::from(params.period_bytes) / 4)))
            } else {
                Some(pacer.deadline_after((front.len - front.done) as u64))
            }
        } else if !stream.xrun_reported {
            Some(pacer.deadline_after(u64::from(params.period_bytes)))
        } else {
            None
        };
        self.timers.arm(id, next);
        let id32 = u32::try_from(id).unwrap_or(u32::MAX);
        for _ in 0..moved.periods {
            self.queue_event(event(protocol::VIRTIO_SND_EVT_PCM_PERIOD_ELAPSED, id32));
        }
        match moved.host_error {
            Some(e) => {
                self.log.warn(|| format!("stream {id}: {e}"));
                self.set_host_ok(id, false);
            }
            None => self.set_host_ok(id, true),
        }
        self.deliver_events(mem);
    }
}

/// Closes a released stream's host endpoint if it lets go of its device
/// while released.
pub(super) fn close_released(stream: &mut Stream) {
    if stream.state == PcmState::Released
        && stream
            .endpoint
            .as_ref()
            .is_some_and(Endpoint::close_when_released)
    {
        stream.endpoint = None;
    }
    stream.close_at = None;
}

/// Moves the frames that are due between `stream`'s held buffers and its
/// host endpoint, completing each buffer that is done.
fn move_due(
    stream: &mut Stream,
    params: &PcmParams,
    pacer: &mut Pacer,
    now: Duration,
    mem: &GuestMem,
    completions: &mut Vec<Completion>,
    log: &RateLimited,
) -> Moved {
    let queue = stream.queue();
    let gain = stream.gain();
    let mut result = Moved::default();
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
        let moved = moved.unwrap_or_else(|e| {
            // The host failed: the buffer goes back with an error and time
            // moves on as if it was played.
            result.host_error = Some(e);
            want
        });
        front.done += moved;
        pacer.advance(moved as u64);
        if params.has_feature(protocol::VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS) {
            let periods = pacer.consumed() / u64::from(params.period_bytes.max(1));
            while stream.periods_reported < periods {
                stream.periods_reported += 1;
                result.periods += 1;
            }
        }
        let full = front.done >= front.len;
        if full || result.host_error.is_some() {
            let status = if result.host_error.is_some() {
                VIRTIO_SND_S_IO_ERR
            } else {
                VIRTIO_SND_S_OK
            };
            if let Some(buf) = stream.io.pop_front() {
                let latency = stream.latency_bytes();
                completions.push(finish_io(queue, buf, status, latency, mem, log));
            }
            if result.host_error.is_some() {
                break;
            }
        } else if moved < want {
            result.sink_full = true;
            break;
        }
    }
    result
}

/// Writes an I/O buffer's status (and recorded frames) and makes its
/// completion.
pub(super) fn finish_io(
    queue: usize,
    buf: IoBuf,
    status: u32,
    latency: u32,
    mem: &GuestMem,
    log: &RateLimited,
) -> Completion {
    let head = buf.chain.head();
    let status = virtio_snd_pcm_status {
        status: status.into(),
        latency_bytes: latency.into(),
    };
    let mut writer = buf.chain.writer(mem);
    let result = if queue == RX_QUEUE {
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
        Ok(()) if queue == RX_QUEUE => buf.captured.len() + size_of::<virtio_snd_pcm_status>(),
        Ok(()) => size_of::<virtio_snd_pcm_status>(),
        Err(e) => {
            log.warn(|| format!("queue {queue}: cannot complete buffer {head}: {e}"));
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
        .skip(size_of::<virtio_snd_pcm_xfer>() + buf.done)
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
