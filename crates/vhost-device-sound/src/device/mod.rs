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
//!
//! The parts: `control` decodes control requests into a typed
//! [`ControlRequest`] and replies; `pcm` runs the PCM commands, `io` the
//! tx/rx buffers and their pacing, `controls` the volume and mute
//! elements, `events` the event queue.

mod control;
mod controls;
mod events;
mod io;
mod pcm;
mod query;

use std::collections::VecDeque;

use vhost_device_common::{
    DescChain, DeviceResult, EventRegistry, EventSet, Queues, RateLimited, VirtioDevice,
};
use vm_memory::ByteValued;

pub use self::control::ControlRequest;
use crate::backend::AudioBackend;
use crate::config::SoundConfig;
use crate::pacer::{Clock, MonotonicClock};
use crate::protocol::{self, virtio_snd_event};
use crate::stream::Stream;
pub use crate::stream::{PcmState, VOLUME_MAX};
use crate::timer::{NoTimers, StreamTimers, TimerFds};

/// Largest I/O buffer accepted. The driver sends periods (at most 80 ms of
/// 8 channels of 32 bits at 192 kHz, under 500 KiB); a larger buffer would
/// only make the device allocate for it.
pub const MAX_IO_BYTES: usize = 4 << 20;
/// Largest `buffer_bytes` SET_PARAMS accepts: 16 periods of the largest
/// size. A period (`period_bytes`) is at most [`MAX_IO_BYTES`].
pub const MAX_BUFFER_BYTES: usize = 16 * MAX_IO_BYTES;

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
    /// Guest-triggered warnings, so a driver cannot flood the host log.
    log: RateLimited,
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
        // `controls` is always there, zero without VIRTIO_SND_F_CTLS: a
        // frontend that sizes the space for it reads 0 (§5.14.4).
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
            log: RateLimited::default(),
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

    // ----- lifecycle ------------------------------------------------------

    fn forget_queue(&mut self, index: usize) {
        match index {
            protocol::EVENT_QUEUE => self.event_buffers.clear(),
            protocol::TX_QUEUE | protocol::RX_QUEUE => {
                for (id, stream) in self.streams.iter_mut().enumerate() {
                    if stream.queue() == index {
                        stream.io.clear();
                        self.timers.arm(id, None);
                        // Its timer would have closed it.
                        io::close_released(stream);
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

impl VirtioDevice for SoundDevice {
    /// The null and wav backends need nothing beyond the core's calls;
    /// the backend's own additions and defaults are in
    /// [`crate::backend::BackendSpec::sandbox_policy`].
    fn seccomp_policy() -> vhost_device_common::SeccompPolicy {
        vhost_device_common::SeccompPolicy::default()
    }

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
        // QEMU stops every queue together when the device stops, and sends
        // no RESET_DEVICE when the machine is reset: the control queue's stop
        // is the one sign that the driver's session is over. A stream left
        // Running would refuse the next driver's SET_PARAMS (found by the
        // guest scenario that resets the machine mid-stream); its held
        // buffers are dropped either way, so no driver could go on with it.
        if index == protocol::CONTROL_QUEUE {
            self.reset_all();
        } else {
            self.forget_queue(index);
        }
    }

    fn reset(&mut self) {
        self.reset_all();
    }
}

#[cfg(test)]
mod tests;
