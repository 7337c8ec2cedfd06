// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The control queue: each request is decoded once into a
//! [`ControlRequest`], handled, and answered with a status and a payload
//! (virtio 1.3 §5.14.6). Errors become their status here, and only here.

use std::mem::size_of;

use log::debug;
use vhost_device_common::{DescChain, GuestMem, Reader};

use super::query::Query;
use super::SoundDevice;
use crate::error::RequestError;
use crate::protocol::{
    self, virtio_snd_chmap_info, virtio_snd_ctl_hdr, virtio_snd_hdr, virtio_snd_jack_info,
    virtio_snd_jack_remap, virtio_snd_pcm_hdr, virtio_snd_pcm_info, virtio_snd_pcm_set_params,
    virtio_snd_query_info, CONTROL_QUEUE, VIRTIO_SND_S_BAD_MSG, VIRTIO_SND_S_NOT_SUPP,
    VIRTIO_SND_S_OK,
};

/// Largest request body read after the header (CTL_WRITE: a control id and
/// a 512-byte value).
const MAX_REQUEST: usize = 1024;

/// A control request, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlRequest {
    /// `VIRTIO_SND_R_JACK_INFO` (§5.14.6.4.1).
    JackInfo(virtio_snd_query_info),
    /// `VIRTIO_SND_R_JACK_REMAP` (§5.14.6.4.2).
    JackRemap(virtio_snd_jack_remap),
    /// `VIRTIO_SND_R_PCM_INFO` (§5.14.6.6.2).
    PcmInfo(virtio_snd_query_info),
    /// `VIRTIO_SND_R_PCM_SET_PARAMS` (§5.14.6.6.3).
    PcmSetParams(virtio_snd_pcm_set_params),
    /// `VIRTIO_SND_R_PCM_PREPARE`, `_RELEASE`, `_START` or `_STOP`
    /// (§5.14.6.6.4 to §5.14.6.6.7); the header's code says which.
    Pcm(virtio_snd_pcm_hdr),
    /// `VIRTIO_SND_R_CHMAP_INFO` (§5.14.6.9.1).
    ChmapInfo(virtio_snd_query_info),
    /// `VIRTIO_SND_R_CTL_INFO` (§5.14.6.10.1).
    CtlInfo(virtio_snd_query_info),
    /// `VIRTIO_SND_R_CTL_ENUM_ITEMS`; there is no enumerated control.
    CtlEnumItems,
    /// `VIRTIO_SND_R_CTL_READ`.
    CtlRead(virtio_snd_ctl_hdr),
    /// `VIRTIO_SND_R_CTL_WRITE`, with the first word of the value (every
    /// control here holds one integer).
    CtlWrite(virtio_snd_ctl_hdr, u32),
}

impl ControlRequest {
    /// Reads one request. `controls` says whether VIRTIO_SND_F_CTLS was
    /// negotiated: without it control element requests are not supported,
    /// whatever their body.
    pub fn decode(reader: &mut Reader<'_, GuestMem>, controls: bool) -> Result<Self, RequestError> {
        let code = reader.peek_obj::<virtio_snd_hdr>()?.code.to_native();
        if matches!(
            code,
            protocol::VIRTIO_SND_R_CTL_TLV_READ
                | protocol::VIRTIO_SND_R_CTL_TLV_WRITE
                | protocol::VIRTIO_SND_R_CTL_TLV_COMMAND
        ) {
            // The payload may be large, and is not read.
            return Err(RequestError::NoTlv(code));
        }
        let body = reader.available() - size_of::<virtio_snd_hdr>();
        if body > MAX_REQUEST {
            return Err(vhost_device_common::ChainError::TooLarge {
                len: body,
                limit: MAX_REQUEST,
            }
            .into());
        }
        let is_ctl = matches!(
            code,
            protocol::VIRTIO_SND_R_CTL_INFO
                | protocol::VIRTIO_SND_R_CTL_ENUM_ITEMS
                | protocol::VIRTIO_SND_R_CTL_READ
                | protocol::VIRTIO_SND_R_CTL_WRITE
        );
        if is_ctl && !controls {
            return Err(RequestError::NoControls(code));
        }
        Ok(match code {
            protocol::VIRTIO_SND_R_JACK_INFO => ControlRequest::JackInfo(reader.read_obj()?),
            protocol::VIRTIO_SND_R_JACK_REMAP => ControlRequest::JackRemap(reader.read_obj()?),
            protocol::VIRTIO_SND_R_PCM_INFO => ControlRequest::PcmInfo(reader.read_obj()?),
            protocol::VIRTIO_SND_R_PCM_SET_PARAMS => {
                ControlRequest::PcmSetParams(reader.read_obj()?)
            }
            protocol::VIRTIO_SND_R_PCM_PREPARE
            | protocol::VIRTIO_SND_R_PCM_RELEASE
            | protocol::VIRTIO_SND_R_PCM_START
            | protocol::VIRTIO_SND_R_PCM_STOP => ControlRequest::Pcm(reader.read_obj()?),
            protocol::VIRTIO_SND_R_CHMAP_INFO => ControlRequest::ChmapInfo(reader.read_obj()?),
            protocol::VIRTIO_SND_R_CTL_INFO => ControlRequest::CtlInfo(reader.read_obj()?),
            protocol::VIRTIO_SND_R_CTL_ENUM_ITEMS => ControlRequest::CtlEnumItems,
            protocol::VIRTIO_SND_R_CTL_READ => ControlRequest::CtlRead(reader.read_obj()?),
            protocol::VIRTIO_SND_R_CTL_WRITE => {
                let hdr = reader.read_obj()?;
                ControlRequest::CtlWrite(hdr, reader.read_obj::<vm_memory::Le32>()?.to_native())
            }
            _ => return Err(RequestError::UnknownRequest(code)),
        })
    }
}

impl SoundDevice {
    /// Handles one control request; the reply is completed with the next
    /// [`Self::take_completions`], after any I/O it completed.
    pub fn handle_control(&mut self, chain: &DescChain, mem: &GuestMem) {
        let room = chain.writable().total_len().saturating_sub(4);
        let result = ControlRequest::decode(&mut chain.reader(mem), self.controls_enabled())
            .and_then(|request| self.execute(request, room, mem));
        let (status, payload) = match result {
            Ok(payload) => (VIRTIO_SND_S_OK, payload),
            Err(e) => {
                let status = e.status();
                if status == VIRTIO_SND_S_NOT_SUPP {
                    debug!("control request {}: {e}", chain.head());
                } else {
                    self.log
                        .warn(|| format!("control request {}: {e}", chain.head()));
                }
                (status, Vec::new())
            }
        };
        let used = self.reply(chain, mem, status, &payload);
        self.complete(CONTROL_QUEUE, chain.head(), used);
        self.deliver_events(mem);
    }

    /// Runs a decoded request; returns the reply payload after the status.
    fn execute(
        &mut self,
        request: ControlRequest,
        room: usize,
        mem: &GuestMem,
    ) -> Result<Vec<u8>, RequestError> {
        match request {
            ControlRequest::JackInfo(q) => self.jack_info(&q, room),
            ControlRequest::JackRemap(remap) => self.jack_remap(&remap).map(|()| Vec::new()),
            ControlRequest::PcmInfo(q) => self.pcm_info(&q, room),
            ControlRequest::PcmSetParams(p) => self.set_params(&p, mem).map(|()| Vec::new()),
            ControlRequest::Pcm(hdr) => self.pcm_command(&hdr, mem).map(|()| Vec::new()),
            ControlRequest::ChmapInfo(q) => self.chmap_info(&q, room),
            ControlRequest::CtlInfo(q) => self.ctl_info(&q, room),
            ControlRequest::CtlEnumItems => Err(RequestError::BadValue {
                kind: "control",
                id: 0,
                reason: "no control is enumerated",
            }),
            ControlRequest::CtlRead(hdr) => self.ctl_read(&hdr),
            ControlRequest::CtlWrite(hdr, value) => {
                self.ctl_write(&hdr, value).map(|()| Vec::new())
            }
        }
    }

    /// Writes the reply (status, then payload) into the chain's writable
    /// part; returns the used length.
    fn reply(&self, chain: &DescChain, mem: &GuestMem, status: u32, payload: &[u8]) -> u32 {
        let mut writer = chain.writer(mem);
        if writer.available() < 4 {
            self.log
                .warn(|| format!("control request {} has no room for a status", chain.head()));
            return 0;
        }
        let (status, payload) = if writer.available() - 4 < payload.len() {
            (VIRTIO_SND_S_BAD_MSG, &[][..])
        } else {
            (status, payload)
        };
        if writer.write_all(&status.to_le_bytes()).is_err() || writer.write_all(payload).is_err() {
            self.log
                .warn(|| format!("control request {}: cannot write the reply", chain.head()));
        }
        writer.used_len()
    }

    fn jack_info(&self, q: &virtio_snd_query_info, room: usize) -> Result<Vec<u8>, RequestError> {
        let query = Query::check(q, self.jacks.len(), room)?;
        Ok(query.reply(|id| {
            let jack = self.jacks.get(id);
            let nid = jack
                .and_then(|j| self.streams.get(j.stream))
                .map_or(0, |s| s.config.nid);
            virtio_snd_jack_info {
                hda_fn_nid: nid.into(),
                features: (1u32 << protocol::VIRTIO_SND_JACK_F_REMAP).into(),
                hda_reg_defconf: jack.map_or(0, |j| j.defconf).into(),
                hda_reg_caps: jack.map_or(0, |j| j.caps).into(),
                connected: u8::from(jack.is_some_and(|j| j.connected)),
                padding: [0; 7],
            }
        }))
    }

    fn jack_remap(&mut self, remap: &virtio_snd_jack_remap) -> Result<(), RequestError> {
        let id = remap.hdr.id.to_native();
        let association = remap.association.to_native();
        let sequence = remap.sequence.to_native();
        let jack = self
            .jacks
            .get_mut(id as usize)
            .ok_or(RequestError::NoSuchItem { kind: "jack", id })?;
        // The HDA default configuration holds 4 bits of each.
        if association > 0xf || sequence > 0xf {
            return Err(RequestError::BadValue {
                kind: "jack",
                id,
                reason: "association and sequence have 4 bits",
            });
        }
        jack.defconf = jack.defconf & !0xff | association << 4 | sequence;
        Ok(())
    }

    fn pcm_info(&self, q: &virtio_snd_query_info, room: usize) -> Result<Vec<u8>, RequestError> {
        let query = Query::check(q, self.streams.len(), room)?;
        Ok(query.reply(|id| {
            let Some(s) = self.streams.get(id) else {
                return virtio_snd_pcm_info::default();
            };
            virtio_snd_pcm_info {
                hda_fn_nid: s.config.nid.into(),
                features: (1u32 << protocol::VIRTIO_SND_PCM_F_EVT_XRUNS
                    | 1 << protocol::VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS)
                    .into(),
                formats: s.config.formats.into(),
                rates: s.config.rates.into(),
                direction: s.config.direction.to_spec(),
                channels_min: s.config.channels_min,
                channels_max: s.config.channels_max,
                padding: [0; 5],
            }
        }))
    }

    fn chmap_info(&self, q: &virtio_snd_query_info, room: usize) -> Result<Vec<u8>, RequestError> {
        let query = Query::check(q, self.streams.len(), room)?;
        Ok(query.reply(|id| {
            let Some(s) = self.streams.get(id) else {
                return virtio_snd_chmap_info::default();
            };
            let mut positions = [0u8; protocol::VIRTIO_SND_CHMAP_MAX_SIZE];
            for (dst, src) in positions.iter_mut().zip(&s.config.chmap) {
                *dst = *src;
            }
            virtio_snd_chmap_info {
                hda_fn_nid: s.config.nid.into(),
                direction: s.config.direction.to_spec(),
                channels: u8::try_from(
                    s.config
                        .chmap
                        .len()
                        .min(protocol::VIRTIO_SND_CHMAP_MAX_SIZE),
                )
                .unwrap_or(0),
                positions,
            }
        }))
    }
}
