// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The `alsa` backend: each stream opens its own host PCM device, chosen on
//! the command line (`hw:Loopback,0,0`, `plughw:1`, `default`, …).
//!
//! The PCM is opened non-blocking with the guest's format, rate and
//! channels (use a `plug` device to have ALSA convert). Its buffer is four
//! guest periods; the device feeds it up to two periods ahead of real time
//! ([`OutputSink::lead`]), and a write the PCM cannot take (its buffer is
//! full) is accepted only in part, which holds back the guest's buffers: a
//! host card whose clock runs slower than ours sets the pace. An underrun
//! or overrun is recovered by re-preparing the PCM.
//!
//! A PCM is closed when its stream is released (once the frames it holds
//! have played) and when its card goes away (a call fails with ENODEV, or,
//! for a prepared or stopped stream, the device's probe once a second
//! finds it disconnected), so that the daemon holds no card it is not
//! playing or recording on: other programs can use it, and
//! an unplugged card can be removed and come back; the next PREPARE opens
//! it again.

use std::time::Duration;

use alsa::pcm::{Access, Format, HwParams, State, PCM};
use alsa::{Direction, ValueOr};
use log::{debug, info};

use super::{whole_frames, AudioBackend, BackendError, InputSource, OutputSink, StreamRef};
use crate::config::per_stream;
use crate::format::{PcmParams, SampleFormat};

/// Host PCM periods in the device's buffer.
const PERIODS: i64 = 4;
/// Periods fed ahead of real time.
const LEAD_PERIODS: u64 = 2;

/// Opens ALSA PCMs by name.
#[derive(Debug, Clone)]
pub struct AlsaBackend {
    outputs: Vec<String>,
    inputs: Vec<String>,
}

impl AlsaBackend {
    /// PCM names per output and input stream (one name for all, or one per
    /// stream; none means "default").
    pub fn new(outputs: Vec<String>, inputs: Vec<String>) -> Self {
        AlsaBackend { outputs, inputs }
    }
}

fn host_error(device: &str, e: &alsa::Error) -> BackendError {
    BackendError::Host {
        backend: "alsa",
        device: device.to_owned(),
        reason: e.to_string(),
    }
}

/// A host PCM, closed once its card went away (ENODEV: unplugged, or its
/// driver unbound). The kernel only finishes removing a card once every
/// handle on it is closed, so holding it would also hang whoever removes
/// it; the stream fails until the driver prepares it again, which opens the
/// PCM anew.
struct Handle {
    pcm: Option<PCM>,
    name: String,
}

impl Handle {
    /// The PCM, or the error of a stream whose card went away.
    fn get(&self) -> Result<&PCM, BackendError> {
        self.pcm.as_ref().ok_or_else(|| BackendError::Host {
            backend: "alsa",
            device: self.name.clone(),
            reason: "the sound card went away (closed; PREPARE opens it again)".into(),
        })
    }

    /// Maps the result of a call on the PCM, closing it if its card is
    /// gone.
    fn check<T>(&mut self, result: alsa::Result<T>) -> Result<T, BackendError> {
        result.map_err(|e| {
            if e.errno() == libc::ENODEV && self.pcm.take().is_some() {
                info!("alsa: {}: the sound card went away; closed", self.name);
            }
            host_error(&self.name, &e)
        })
    }

    /// Whether the PCM's card is still there; closes it if not. A
    /// disconnected `hw` PCM says so in its state; plugins on top of one
    /// fail with ENODEV.
    fn probe(&mut self) -> bool {
        let Some(pcm) = self.pcm.as_ref() else {
            return false;
        };
        let result = if pcm.state() == State::Disconnected {
            Err(disconnected())
        } else {
            pcm.avail_update().map(drop)
        };
        let _ = self.check(result);
        self.pcm.is_some()
    }

    /// What the PCM holds and has not played or handed over yet, in bytes
    /// (0 once its card went away).
    fn latency_bytes(&self, frame_bytes: usize) -> u32 {
        let delay = self.pcm.as_ref().and_then(|pcm| pcm.delay().ok());
        let frames = usize::try_from(delay.unwrap_or(0).max(0)).unwrap_or(0);
        u32::try_from(frames * frame_bytes).unwrap_or(0)
    }
}

/// What a call on a PCM whose state is `Disconnected` would have failed
/// with, so that [`Handle::check`] closes it like any other ENODEV.
fn disconnected() -> alsa::Error {
    alsa::Error::new("snd_pcm_state", libc::ENODEV)
}

fn alsa_format(format: SampleFormat) -> Format {
    match format {
        SampleFormat::U8 => Format::U8,
        SampleFormat::S16 => Format::S16LE,
        SampleFormat::S24 => Format::S24LE,
        SampleFormat::S32 => Format::S32LE,
        SampleFormat::Float => Format::FloatLE,
    }
}

/// Opens `name` for `params`; returns the PCM and its period in frames.
fn open(name: &str, dir: Direction, params: &PcmParams) -> Result<(PCM, i64), BackendError> {
    let pcm = PCM::new(name, dir, true).map_err(|e| host_error(name, &e))?;
    let frame = params.frame_bytes().max(1);
    let period = i64::try_from(params.period_bytes as usize / frame).unwrap_or(1024);
    let period = {
        let hw = HwParams::any(&pcm).map_err(|e| host_error(name, &e))?;
        hw.set_access(Access::RWInterleaved)
            .and_then(|()| hw.set_format(alsa_format(params.format)))
            .and_then(|()| hw.set_channels(u32::from(params.channels)))
            .and_then(|()| hw.set_rate(params.rate, ValueOr::Nearest))
            .map_err(|_| BackendError::Host {
                backend: "alsa",
                device: name.to_owned(),
                reason: format!(
                    "does not take {} ch {:?} {} Hz (a plug: device converts)",
                    params.channels, params.format, params.rate
                ),
            })?;
        let period = hw
            .set_period_size_near(period, ValueOr::Nearest)
            .map_err(|e| host_error(name, &e))?;
        hw.set_buffer_size_near(period * PERIODS)
            .map_err(|e| host_error(name, &e))?;
        pcm.hw_params(&hw).map_err(|e| host_error(name, &e))?;
        period
    };
    {
        let sw = pcm.sw_params_current().map_err(|e| host_error(name, &e))?;
        // Start as soon as one period is in, rather than when full.
        sw.set_start_threshold(period)
            .map_err(|e| host_error(name, &e))?;
        pcm.sw_params(&sw).map_err(|e| host_error(name, &e))?;
    }
    // Each PREPARE after a RELEASE opens the PCM: guest-triggered.
    debug!(
        "alsa: opened {name} for {} ch {:?} {} Hz, period {period} frames",
        params.channels, params.format, params.rate
    );
    Ok((pcm, period))
}

struct AlsaSink {
    pcm: Handle,
    frame_bytes: usize,
    lead: Duration,
}

impl OutputSink for AlsaSink {
    fn start(&mut self) -> Result<(), BackendError> {
        let result = {
            let pcm = self.pcm.get()?;
            // After a stop the PCM ran dry (XRUN); be ready for new frames.
            match pcm.state() {
                State::XRun | State::Setup => pcm.prepare(),
                State::Disconnected => Err(disconnected()),
                _ => Ok(()),
            }
        };
        self.pcm.check(result)
    }

    fn stop(&mut self) -> Result<(), BackendError> {
        // The guest saw these frames complete (they were fed ahead by the
        // lead): let them play out rather than cut the end of every sound.
        Ok(())
    }

    fn write(&mut self, data: &[u8]) -> Result<usize, BackendError> {
        let data = data
            .get(..whole_frames(data.len(), self.frame_bytes))
            .unwrap_or_default();
        if data.is_empty() {
            return Ok(0);
        }
        let result = {
            let pcm = self.pcm.get()?;
            match pcm.io_bytes().writei(data) {
                Ok(frames) => Ok(frames * self.frame_bytes),
                Err(e) if e.errno() == libc::EAGAIN => Ok(0),
                Err(e) => {
                    // An underrun (EPIPE) or a suspend: recover and take the
                    // data next time.
                    debug!("alsa: {}: {e}, recovering", self.pcm.name);
                    pcm.recover(e.errno(), true).map(|()| 0)
                }
            }
        };
        self.pcm.check(result)
    }

    fn latency_bytes(&mut self) -> u32 {
        self.pcm.latency_bytes(self.frame_bytes)
    }

    fn lead(&self) -> Duration {
        self.lead
    }

    fn is_open(&self) -> bool {
        self.pcm.pcm.is_some()
    }

    fn close_when_released(&self) -> bool {
        true
    }

    fn probe(&mut self) -> bool {
        self.pcm.probe()
    }
}

struct AlsaSource {
    pcm: Handle,
    frame_bytes: usize,
}

impl InputSource for AlsaSource {
    fn start(&mut self) -> Result<(), BackendError> {
        let result = {
            let pcm = self.pcm.get()?;
            match pcm.state() {
                State::Running => Ok(()),
                State::Disconnected => Err(disconnected()),
                _ => pcm.start(),
            }
        };
        self.pcm.check(result)
    }

    fn stop(&mut self) -> Result<(), BackendError> {
        let result = {
            let pcm = self.pcm.get()?;
            let _ = pcm.drop();
            pcm.prepare()
        };
        self.pcm.check(result)
    }

    fn read(&mut self, buf: &mut [u8]) -> Result<usize, BackendError> {
        let len = whole_frames(buf.len(), self.frame_bytes);
        let Some(buf) = buf.get_mut(..len) else {
            return Ok(0);
        };
        if buf.is_empty() {
            return Ok(0);
        }
        let result = {
            let pcm = self.pcm.get()?;
            match pcm.io_bytes().readi(buf) {
                Ok(frames) => Ok(frames * self.frame_bytes),
                Err(e) if e.errno() == libc::EAGAIN => Ok(0),
                Err(e) => {
                    debug!("alsa: {}: {e}, recovering", self.pcm.name);
                    pcm.recover(e.errno(), true)
                        .and_then(|()| pcm.start())
                        .map(|()| 0)
                }
            }
        };
        self.pcm.check(result)
    }

    fn latency_bytes(&mut self) -> u32 {
        self.pcm.latency_bytes(self.frame_bytes)
    }

    fn is_open(&self) -> bool {
        self.pcm.pcm.is_some()
    }

    fn close_when_released(&self) -> bool {
        true
    }

    fn probe(&mut self) -> bool {
        self.pcm.probe()
    }
}

impl AudioBackend for AlsaBackend {
    fn name(&self) -> &'static str {
        "alsa"
    }

    fn open_output(
        &mut self,
        stream: StreamRef,
        params: &PcmParams,
    ) -> Result<Box<dyn OutputSink>, BackendError> {
        let name = per_stream(&self.outputs, stream.index)
            .cloned()
            .unwrap_or_else(|| "default".into());
        let (pcm, period) = open(&name, Direction::Playback, params)?;
        let frame_bytes = params.frame_bytes();
        let period_bytes = u64::try_from(period).unwrap_or(0) * frame_bytes as u64;
        Ok(Box::new(AlsaSink {
            pcm: Handle {
                pcm: Some(pcm),
                name,
            },
            frame_bytes,
            lead: params.duration_of(period_bytes * LEAD_PERIODS),
        }))
    }

    fn open_input(
        &mut self,
        stream: StreamRef,
        params: &PcmParams,
    ) -> Result<Box<dyn InputSource>, BackendError> {
        let name = per_stream(&self.inputs, stream.index)
            .cloned()
            .unwrap_or_else(|| "default".into());
        let (pcm, _) = open(&name, Direction::Capture, params)?;
        Ok(Box::new(AlsaSource {
            pcm: Handle {
                pcm: Some(pcm),
                name,
            },
            frame_bytes: params.frame_bytes(),
        }))
    }
}
