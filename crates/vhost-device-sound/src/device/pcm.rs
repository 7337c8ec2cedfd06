// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! PCM commands (virtio 1.3 §5.14.6.6): SET_PARAMS, PREPARE, START, STOP and
//! RELEASE, each checked against the stream's lifecycle state first.

use std::time::Duration;

use log::debug;
use vhost_device_common::GuestMem;

use super::io::finish_io;
use super::{SoundDevice, MAX_BUFFER_BYTES, MAX_IO_BYTES};
use crate::backend::StreamRef;
use crate::config::Direction;
use crate::error::RequestError;
use crate::format::{rate_hz, PcmParams, SampleFormat};
use crate::pacer::Pacer;
use crate::protocol::{
    self, virtio_snd_pcm_hdr, virtio_snd_pcm_set_params, VIRTIO_SND_S_IO_ERR, VIRTIO_SND_S_OK,
};
use crate::stream::{Endpoint, IoBuf, PcmState};

/// The PCM features a driver may select.
const OFFERED_FEATURES: u32 =
    1 << protocol::VIRTIO_SND_PCM_F_EVT_XRUNS | 1 << protocol::VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS;

/// How often a prepared or stopped stream checks that its host device is
/// still there.
const IDLE_PROBE: Duration = Duration::from_secs(1);

impl SoundDevice {
    /// The stream a PCM request names, if the request is a valid
    /// transition from its state.
    fn transition(&self, hdr: &virtio_snd_pcm_hdr) -> Result<usize, RequestError> {
        let code = hdr.hdr.code.to_native();
        let id = hdr.id.to_native();
        let stream = id as usize;
        let state = self
            .streams
            .get(stream)
            .map(|s| s.state)
            .ok_or(RequestError::NoSuchItem { kind: "stream", id })?;
        if !state.allows(code) {
            return Err(RequestError::BadTransition {
                stream,
                code,
                state,
            });
        }
        Ok(stream)
    }

    /// PREPARE, START, STOP or RELEASE.
    pub(super) fn pcm_command(
        &mut self,
        hdr: &virtio_snd_pcm_hdr,
        mem: &GuestMem,
    ) -> Result<(), RequestError> {
        let id = self.transition(hdr)?;
        match hdr.hdr.code.to_native() {
            protocol::VIRTIO_SND_R_PCM_PREPARE => self.prepare(id, mem),
            protocol::VIRTIO_SND_R_PCM_START => self.start(id, mem),
            protocol::VIRTIO_SND_R_PCM_STOP => {
                self.stop(id);
                Ok(())
            }
            protocol::VIRTIO_SND_R_PCM_RELEASE => {
                self.release(id, mem);
                Ok(())
            }
            code => Err(RequestError::UnknownRequest(code)),
        }
    }

    /// Checks the parameters against what the stream offers (§5.14.6.6.3).
    fn check_params(
        &self,
        id: usize,
        p: &virtio_snd_pcm_set_params,
    ) -> Result<PcmParams, RequestError> {
        let bad = |reason| RequestError::BadValue {
            kind: "stream",
            id: p.hdr.id.to_native(),
            reason,
        };
        let unsupported = |what| RequestError::Unsupported { stream: id, what };
        let cfg = &self.streams.get(id).ok_or(bad("no such stream"))?.config;
        let buffer_bytes = p.buffer_bytes.to_native();
        let period_bytes = p.period_bytes.to_native();
        let features = p.features.to_native();
        if period_bytes == 0 || buffer_bytes == 0 || buffer_bytes % period_bytes != 0 {
            return Err(bad("buffer_bytes is not a multiple of period_bytes"));
        }
        // The host backends size their buffers from these (§5.14.6.6.3 lets
        // the device refuse what it cannot hold): a period is at most the
        // largest I/O buffer the device takes.
        if period_bytes as usize > MAX_IO_BYTES || buffer_bytes as usize > MAX_BUFFER_BYTES {
            return Err(bad(
                "period_bytes or buffer_bytes larger than the device holds",
            ));
        }
        if p.channels < cfg.channels_min || p.channels > cfg.channels_max {
            return Err(bad("channel count out of range"));
        }
        if features & !OFFERED_FEATURES != 0 {
            return Err(unsupported("a PCM feature"));
        }
        let format = SampleFormat::from_spec(p.format)
            .filter(|f| cfg.formats & (1u64 << f.to_spec()) != 0)
            .ok_or(unsupported("the sample format"))?;
        let rate = rate_hz(p.rate)
            .filter(|_| cfg.rates & (1u64 << p.rate) != 0)
            .ok_or(unsupported("the frame rate"))?;
        let params = PcmParams {
            buffer_bytes,
            period_bytes,
            features,
            channels: p.channels,
            format,
            rate,
        };
        if period_bytes as usize % params.frame_bytes() != 0 {
            return Err(bad("period_bytes is not a whole number of frames"));
        }
        Ok(params)
    }

    pub(super) fn set_params(
        &mut self,
        p: &virtio_snd_pcm_set_params,
        mem: &GuestMem,
    ) -> Result<(), RequestError> {
        let id = self.transition(&p.hdr)?;
        let params = self.check_params(id, p)?;
        // Buffers pre-queued under the old parameters cannot be played.
        self.flush_io(id, VIRTIO_SND_S_IO_ERR, mem);
        if let Some(stream) = self.streams.get_mut(id) {
            stream.params = Some(params);
            stream.state = PcmState::ParamsSet;
        }
        Ok(())
    }

    fn prepare(&mut self, id: usize, mem: &GuestMem) -> Result<(), RequestError> {
        self.flush_io(id, VIRTIO_SND_S_IO_ERR, mem);
        let no_params = RequestError::BadValue {
            kind: "stream",
            id: u32::try_from(id).unwrap_or(u32::MAX),
            reason: "no parameters set",
        };
        let stream = self.streams.get_mut(id).ok_or(RequestError::NoSuchItem {
            kind: "stream",
            id: u32::try_from(id).unwrap_or(u32::MAX),
        })?;
        let params = stream.params.ok_or(no_params)?;
        let reusable = stream.endpoint.as_ref().is_some_and(Endpoint::is_open)
            && stream.endpoint_params == Some(params);
        if !reusable {
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
                Err(source) => {
                    self.set_host_ok(id, false);
                    return Err(RequestError::Host { stream: id, source });
                }
            }
        }
        stream.state = PcmState::Prepared;
        stream.pacer = None;
        stream.close_at = None;
        self.arm_idle_probe(id);
        self.set_host_ok(id, true);
        Ok(())
    }

    /// Arms the timer of a prepared or stopped stream whose endpoint holds
    /// a device that can go away (an ALSA card), to notice when it does:
    /// nothing else touches it until the guest starts or releases the
    /// stream, and the kernel only finishes removing a card once every
    /// handle on it is closed.
    fn arm_idle_probe(&mut self, id: usize) {
        let exclusive = self
            .streams
            .get(id)
            .and_then(|s| s.endpoint.as_ref())
            .is_some_and(Endpoint::close_when_released);
        let at = exclusive.then(|| self.clock.now() + IDLE_PROBE);
        self.timers.arm(id, at);
    }

    /// The timer of a prepared or stopped stream: its endpoint's device is
    /// checked, and the driver is told (its jacks unplugged) if it is gone.
    pub(super) fn probe_idle(&mut self, id: usize) {
        let Some(stream) = self.streams.get_mut(id) else {
            return;
        };
        let there = match &mut stream.endpoint {
            Some(endpoint) if endpoint.close_when_released() => endpoint.probe(),
            _ => return,
        };
        if there {
            self.arm_idle_probe(id);
        } else {
            self.timers.arm(id, None);
            self.log
                .warn(|| format!("stream {id}: its host device went away"));
            self.set_host_ok(id, false);
        }
    }

    fn start(&mut self, id: usize, mem: &GuestMem) -> Result<(), RequestError> {
        let now = self.clock.now();
        let stream = self.streams.get_mut(id).ok_or(RequestError::NoSuchItem {
            kind: "stream",
            id: u32::try_from(id).unwrap_or(u32::MAX),
        })?;
        let Some(params) = stream.params else {
            return Err(RequestError::BadValue {
                kind: "stream",
                id: u32::try_from(id).unwrap_or(u32::MAX),
                reason: "no parameters set",
            });
        };
        let result = match &mut stream.endpoint {
            Some(Endpoint::Out(sink)) => sink.start().map(|()| sink.lead()),
            Some(Endpoint::In(source)) => source.start().map(|()| source.lead()),
            None => Ok(Duration::ZERO),
        };
        let lead = match result {
            Ok(lead) => lead,
            Err(source) => {
                self.set_host_ok(id, false);
                return Err(RequestError::Host { stream: id, source });
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
        // Guest-triggered as often as it likes: not at info level.
        debug!(
            "stream {id}: started, {} ch {:?} {} Hz, period {} bytes",
            params.channels, params.format, params.rate, params.period_bytes
        );
        self.pump(id, mem);
        Ok(())
    }

    fn stop(&mut self, id: usize) {
        let Some(stream) = self.streams.get_mut(id) else {
            return;
        };
        stream.state = PcmState::Stopped;
        let result = match &mut stream.endpoint {
            Some(Endpoint::Out(sink)) => sink.stop(),
            Some(Endpoint::In(source)) => source.stop(),
            None => Ok(()),
        };
        self.arm_idle_probe(id);
        if let Err(e) = result {
            self.log.warn(|| format!("stream {id}: stop: {e}"));
        }
    }

    fn release(&mut self, id: usize, mem: &GuestMem) {
        // Whatever was not played or recorded goes back now: the driver
        // waits for every buffer before it frees them (§5.14.6.6.5).
        self.flush_io(id, VIRTIO_SND_S_OK, mem);
        let now = self.clock.now();
        let mut close_at = None;
        if let Some(stream) = self.streams.get_mut(id) {
            if stream.state == PcmState::Prepared {
                if let Some(Endpoint::Out(sink)) = &mut stream.endpoint {
                    let _ = sink.stop();
                }
            }
            stream.state = PcmState::Released;
            stream.pacer = None;
            if stream
                .endpoint
                .as_ref()
                .is_some_and(Endpoint::close_when_released)
            {
                // Let go of the host device once what it took has played:
                // the guest heard those frames complete.
                let left = match (&mut stream.endpoint, stream.endpoint_params) {
                    (Some(Endpoint::Out(sink)), Some(params)) => {
                        params.duration_of(u64::from(sink.latency_bytes()))
                    }
                    _ => Duration::ZERO,
                };
                if left.is_zero() {
                    stream.endpoint = None;
                } else {
                    close_at = Some(now + left);
                }
                stream.close_at = close_at;
            }
        }
        self.timers.arm(id, close_at);
    }

    /// Completes every buffer held for stream `id` with `status`.
    pub(super) fn flush_io(&mut self, id: usize, status: u32, mem: &GuestMem) {
        let Some(stream) = self.streams.get_mut(id) else {
            return;
        };
        let queue = stream.queue();
        let bufs: Vec<IoBuf> = stream.io.drain(..).collect();
        let latency = stream.latency_bytes();
        for buf in bufs {
            let c = finish_io(queue, buf, status, latency, mem, &self.log);
            self.completions.push(c);
        }
    }
}
