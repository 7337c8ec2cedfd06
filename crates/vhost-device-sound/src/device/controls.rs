// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Control elements (virtio 1.3 §5.14.6.10): a volume and a mute switch
//! per stream, applied to the samples. Control `2k` is stream `k`'s volume,
//! `2k + 1` its switch.

use log::debug;
use vm_memory::ByteValued;

use super::events::event;
use super::query::Query;
use super::SoundDevice;
use crate::config::Direction;
use crate::error::RequestError;
use crate::protocol::{
    self, virtio_snd_ctl_event, virtio_snd_ctl_hdr, virtio_snd_ctl_info, virtio_snd_hdr,
    virtio_snd_query_info, CTL_VALUE_SIZE,
};
use crate::stream::VOLUME_MAX;

/// The name, role and type of a stream's volume or switch.
fn describe(direction: Direction, is_switch: bool) -> (&'static str, u32, u32) {
    use protocol::{
        VIRTIO_SND_CTL_ROLE_MUTE as MUTE, VIRTIO_SND_CTL_ROLE_VOLUME as VOLUME,
        VIRTIO_SND_CTL_TYPE_BOOLEAN as BOOLEAN, VIRTIO_SND_CTL_TYPE_INTEGER as INTEGER,
    };
    match (direction, is_switch) {
        (Direction::Output, false) => ("PCM Playback Volume", VOLUME, INTEGER),
        (Direction::Output, true) => ("PCM Playback Switch", MUTE, BOOLEAN),
        (Direction::Input, false) => ("Capture Volume", VOLUME, INTEGER),
        (Direction::Input, true) => ("Capture Switch", MUTE, BOOLEAN),
    }
}

impl SoundDevice {
    /// Control `id`'s stream, and whether it is the switch.
    fn control_target(&self, id: u32) -> Result<(usize, bool), RequestError> {
        let index = id as usize;
        if index >= self.config.num_controls() || index / 2 >= self.streams.len() {
            return Err(RequestError::NoSuchItem {
                kind: "control",
                id,
            });
        }
        Ok((index / 2, index % 2 == 1))
    }

    pub(super) fn ctl_info(
        &self,
        q: &virtio_snd_query_info,
        room: usize,
    ) -> Result<Vec<u8>, RequestError> {
        let query = Query::check(q, self.config.num_controls(), room)?;
        Ok(query.reply(|id| self.control_info(id)))
    }

    fn control_info(&self, id: usize) -> virtio_snd_ctl_info {
        let target = u32::try_from(id)
            .ok()
            .and_then(|id| self.control_target(id).ok());
        let Some((stream, is_switch)) =
            target.and_then(|(sid, sw)| Some((self.streams.get(sid)?, sw)))
        else {
            return virtio_snd_ctl_info::default();
        };
        let (base, role, type_) = describe(stream.config.direction, is_switch);
        let dir = u32::from(stream.config.direction.to_spec());
        let mut name = [0u8; 44];
        for (dst, src) in name.iter_mut().zip(base.bytes()) {
            *dst = src;
        }
        let mut info = virtio_snd_ctl_info {
            hda_fn_nid: stream.config.nid.into(),
            role: (role << 1 | dir).into(),
            type_: type_.into(),
            access: (1u32 << protocol::VIRTIO_SND_CTL_ACCESS_READ
                | 1 << protocol::VIRTIO_SND_CTL_ACCESS_WRITE)
                .into(),
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
    }

    pub(super) fn ctl_read(&self, hdr: &virtio_snd_ctl_hdr) -> Result<Vec<u8>, RequestError> {
        let (sid, is_switch) = self.control_target(hdr.id.to_native())?;
        let stream = self.streams.get(sid).ok_or(RequestError::NoSuchItem {
            kind: "stream",
            id: hdr.id.to_native(),
        })?;
        let value = if is_switch {
            u32::from(!stream.muted)
        } else {
            stream.volume
        };
        let mut out = vec![0u8; CTL_VALUE_SIZE];
        if let Some(first) = out.get_mut(..4) {
            first.copy_from_slice(&value.to_le_bytes());
        }
        Ok(out)
    }

    pub(super) fn ctl_write(
        &mut self,
        hdr: &virtio_snd_ctl_hdr,
        value: u32,
    ) -> Result<(), RequestError> {
        let control = hdr.id.to_native();
        let (sid, is_switch) = self.control_target(control)?;
        let limit = if is_switch { 1 } else { VOLUME_MAX };
        if value > limit {
            return Err(RequestError::BadValue {
                kind: "control",
                id: control,
                reason: "value out of range",
            });
        }
        let stream = self.streams.get_mut(sid).ok_or(RequestError::NoSuchItem {
            kind: "stream",
            id: control,
        })?;
        let changed = if is_switch {
            let muted = value == 0;
            std::mem::replace(&mut stream.muted, muted) != muted
        } else {
            std::mem::replace(&mut stream.volume, value) != value
        };
        if changed {
            // Guest-triggered, as often as it likes: not at info level.
            debug!(
                "stream {sid}: volume {} {}",
                stream.volume,
                if stream.muted { "(muted)" } else { "" }
            );
            // Other mixers in the guest learn of the change.
            let ev = virtio_snd_ctl_event {
                hdr: virtio_snd_hdr {
                    code: protocol::VIRTIO_SND_EVT_CTL_NOTIFY.into(),
                },
                control_id: u16::try_from(control).unwrap_or(u16::MAX).into(),
                mask: (1u16 << protocol::VIRTIO_SND_CTL_EVT_MASK_VALUE).into(),
            };
            let mut raw = event(0, 0);
            raw.as_mut_slice().copy_from_slice(ev.as_slice());
            self.queue_event(raw);
        }
        Ok(())
    }
}
