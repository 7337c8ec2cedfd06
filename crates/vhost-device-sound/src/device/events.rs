// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The event queue (virtio 1.3 §5.14.6.5, §5.14.6.7, §5.14.6.10): the
//! driver's buffers are held until there is an event to put in them, and
//! events wait, up to a bound, for a buffer.

use vhost_device_common::{DescChain, GuestMem};

use super::SoundDevice;
use crate::protocol::{
    virtio_snd_event, virtio_snd_hdr, EVENT_QUEUE, VIRTIO_SND_EVT_JACK_CONNECTED,
    VIRTIO_SND_EVT_JACK_DISCONNECTED,
};

/// Events kept while the driver has no event buffer posted.
pub(super) const MAX_PENDING_EVENTS: usize = 128;

/// An event with a code and its data (a jack or stream id).
pub(super) fn event(code: u32, data: u32) -> virtio_snd_event {
    virtio_snd_event {
        hdr: virtio_snd_hdr { code: code.into() },
        data: data.into(),
    }
}

impl SoundDevice {
    /// Holds a buffer the driver posted on the event queue.
    pub fn add_event_buffer(&mut self, chain: DescChain, mem: &GuestMem) {
        self.event_buffers.push_back(chain);
        self.deliver_events(mem);
    }

    pub(super) fn queue_event(&mut self, ev: virtio_snd_event) {
        if self.pending_events.len() >= MAX_PENDING_EVENTS {
            self.log
                .warn(|| "the driver posts no event buffers; dropping the oldest event".into());
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
                    self.complete(EVENT_QUEUE, chain.head(), writer.used_len());
                }
                Err(e) => {
                    self.log
                        .warn(|| format!("event buffer {} is unusable: {e}", chain.head()));
                    self.complete(EVENT_QUEUE, chain.head(), 0);
                }
            }
        }
    }

    /// Records whether stream `stream`'s host side works; its jacks follow,
    /// and the driver is told of each change.
    pub(super) fn set_host_ok(&mut self, stream: usize, ok: bool) {
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
                VIRTIO_SND_EVT_JACK_CONNECTED
            } else {
                VIRTIO_SND_EVT_JACK_DISCONNECTED
            };
            self.queue_event(event(code, u32::try_from(jack).unwrap_or(u32::MAX)));
        }
    }
}
