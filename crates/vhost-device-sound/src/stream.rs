// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! One PCM stream's state: where it is in the spec's command lifecycle, its
//! parameters, its host endpoint, the guest buffers it holds and its pace.
//! No queue here: the device feeds it chains and completes what it returns.

use std::collections::VecDeque;
use std::time::Duration;

use vhost_device_common::DescChain;

use crate::backend::{InputSource, OutputSink};
use crate::config::{Direction, StreamConfig};
use crate::format::{Gain, PcmParams};
use crate::pacer::Pacer;
use crate::protocol::{
    RX_QUEUE, TX_QUEUE, VIRTIO_SND_R_PCM_PREPARE, VIRTIO_SND_R_PCM_RELEASE,
    VIRTIO_SND_R_PCM_SET_PARAMS, VIRTIO_SND_R_PCM_START, VIRTIO_SND_R_PCM_STOP,
};

/// Volume range of the volume controls.
pub const VOLUME_MAX: u32 = 100;

/// Where a stream is in the PCM command lifecycle (virtio 1.3 §5.14.6.6.1).
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
    /// Whether request `code` is a valid transition from here. SET_PARAMS
    /// and PREPARE are also allowed before the first SET_PARAMS and after
    /// RELEASE, as the Linux driver sends them there.
    pub fn allows(self, code: u32) -> bool {
        use PcmState::{Idle, ParamsSet, Prepared, Released, Running, Stopped};
        matches!(
            (self, code),
            (
                Idle | ParamsSet | Prepared | Released,
                VIRTIO_SND_R_PCM_SET_PARAMS
            ) | (ParamsSet | Prepared | Released, VIRTIO_SND_R_PCM_PREPARE)
                | (
                    Prepared | Stopped,
                    VIRTIO_SND_R_PCM_START | VIRTIO_SND_R_PCM_RELEASE
                )
                | (Running, VIRTIO_SND_R_PCM_STOP)
        )
    }

    /// Whether I/O buffers for the stream are accepted and held.
    pub fn accepts_io(self) -> bool {
        matches!(
            self,
            PcmState::Prepared | PcmState::Running | PcmState::Stopped
        )
    }
}

/// A held tx or rx buffer.
#[derive(Debug)]
pub struct IoBuf {
    /// The guest's chain.
    pub chain: DescChain,
    /// Payload bytes: frames to play, or room for frames to record.
    pub len: usize,
    /// Payload bytes consumed (played or recorded) so far.
    pub done: usize,
    /// Recorded frames, written to the guest on completion.
    pub captured: Vec<u8>,
}

impl IoBuf {
    /// A buffer of `len` payload bytes, nothing consumed yet.
    pub fn new(chain: DescChain, len: usize) -> Self {
        IoBuf {
            chain,
            len,
            done: 0,
            captured: Vec::new(),
        }
    }
}

/// The host side of a stream.
pub enum Endpoint {
    /// Where playback goes.
    Out(Box<dyn OutputSink>),
    /// Where capture comes from.
    In(Box<dyn InputSource>),
}

impl Endpoint {
    /// Whether it still holds its host device.
    pub fn is_open(&self) -> bool {
        match self {
            Endpoint::Out(sink) => sink.is_open(),
            Endpoint::In(source) => source.is_open(),
        }
    }

    /// Whether its host device is still there ([`OutputSink::probe`]).
    pub fn probe(&mut self) -> bool {
        match self {
            Endpoint::Out(sink) => sink.probe(),
            Endpoint::In(source) => source.probe(),
        }
    }

    /// Whether it lets go of its host device while its stream is released.
    pub fn close_when_released(&self) -> bool {
        match self {
            Endpoint::Out(sink) => sink.close_when_released(),
            Endpoint::In(source) => source.close_when_released(),
        }
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Endpoint::Out(_) => "Endpoint::Out",
            Endpoint::In(_) => "Endpoint::In",
        })
    }
}

/// One PCM stream.
#[derive(Debug)]
pub struct Stream {
    /// What the device offers for it.
    pub config: StreamConfig,
    /// Lifecycle state.
    pub state: PcmState,
    /// Parameters from the last SET_PARAMS.
    pub params: Option<PcmParams>,
    /// The open host endpoint.
    pub endpoint: Option<Endpoint>,
    /// The parameters `endpoint` was opened with.
    pub endpoint_params: Option<PcmParams>,
    /// When a released stream lets go of its endpoint (once the frames its
    /// sink took have played), for endpoints that close when released.
    pub close_at: Option<Duration>,
    /// Held guest buffers, oldest first.
    pub io: VecDeque<IoBuf>,
    /// The stream's clock, from START.
    pub pacer: Option<Pacer>,
    /// Volume control, 0 to [`VOLUME_MAX`].
    pub volume: u32,
    /// Mute switch.
    pub muted: bool,
    /// Whether the current underrun was reported already.
    pub xrun_reported: bool,
    /// PERIOD_ELAPSED events sent since START.
    pub periods_reported: u64,
    /// Whether the host side is working (drives the jack state).
    pub host_ok: bool,
    /// Copy buffer between guest memory and the host.
    pub scratch: Vec<u8>,
}

impl Stream {
    /// A stream as the device starts it: idle, full volume, unmuted.
    pub fn new(config: StreamConfig) -> Self {
        Stream {
            config,
            state: PcmState::Idle,
            params: None,
            endpoint: None,
            endpoint_params: None,
            close_at: None,
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

    /// The queue its buffers come on.
    pub fn queue(&self) -> usize {
        match self.config.direction {
            Direction::Output => TX_QUEUE,
            Direction::Input => RX_QUEUE,
        }
    }

    /// The gain its controls ask for.
    pub fn gain(&self) -> Gain {
        Gain::new(self.volume, VOLUME_MAX, self.muted)
    }

    /// What the host endpoint holds, for `virtio_snd_pcm_status`.
    pub fn latency_bytes(&mut self) -> u32 {
        match &mut self.endpoint {
            Some(Endpoint::Out(sink)) => sink.latency_bytes(),
            Some(Endpoint::In(source)) => source.latency_bytes(),
            None => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::VIRTIO_SND_R_PCM_INFO;

    #[test]
    fn the_lifecycle_table_of_the_spec() {
        use PcmState::*;
        let codes = [
            VIRTIO_SND_R_PCM_SET_PARAMS,
            VIRTIO_SND_R_PCM_PREPARE,
            VIRTIO_SND_R_PCM_START,
            VIRTIO_SND_R_PCM_STOP,
            VIRTIO_SND_R_PCM_RELEASE,
            VIRTIO_SND_R_PCM_INFO,
        ];
        // Per state: SET_PARAMS, PREPARE, START, STOP, RELEASE, (not a
        // PCM command).
        let table = [
            (Idle, [true, false, false, false, false, false]),
            (ParamsSet, [true, true, false, false, false, false]),
            (Prepared, [true, true, true, false, true, false]),
            (Running, [false, false, false, true, false, false]),
            (Stopped, [false, false, true, false, true, false]),
            (Released, [true, true, false, false, false, false]),
        ];
        for (state, allowed) in table {
            for (code, allowed) in codes.iter().zip(allowed) {
                assert_eq!(state.allows(*code), allowed, "{state:?} {code:#x}");
            }
        }
        let io: Vec<bool> = table.iter().map(|(s, _)| s.accepts_io()).collect();
        assert_eq!(io, [false, false, true, true, true, false]);
    }
}
