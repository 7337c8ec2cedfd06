// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! What the device offers: its streams, their channel maps, jacks and
//! controls. Built from the command line, fixed for the life of the daemon.

use crate::format::{supported_rates_bits, SampleFormat};
use crate::protocol;

/// Data flow direction of a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Playback (tx queue).
    Output,
    /// Capture (rx queue).
    Input,
}

impl Direction {
    /// `VIRTIO_SND_D_OUTPUT` / `VIRTIO_SND_D_INPUT`.
    pub fn to_spec(self) -> u8 {
        match self {
            Direction::Output => protocol::VIRTIO_SND_D_OUTPUT,
            Direction::Input => protocol::VIRTIO_SND_D_INPUT,
        }
    }
}

/// One PCM stream as offered to the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamConfig {
    /// Direction.
    pub direction: Direction,
    /// Position among the streams of the same direction.
    pub index: usize,
    /// HDA function group: output k and input k share group k, so the
    /// guest sees PCM device k with playback and capture.
    pub nid: u32,
    /// Fewest channels.
    pub channels_min: u8,
    /// Most channels: the channel map's length.
    pub channels_max: u8,
    /// Channel positions (`CHMAP_*`), one per channel.
    pub chmap: Vec<u8>,
    /// `1 << PCM_FMT_*`.
    pub formats: u64,
    /// `1 << rate index`.
    pub rates: u64,
}

/// A jack (an HDA pin) attached to a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JackConfig {
    /// The stream it belongs to.
    pub stream: u32,
    /// HDA pin default configuration.
    pub defconf: u32,
    /// HDA pin capabilities.
    pub caps: u32,
}

/// The device's whole configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SoundConfig {
    /// Streams; the stream id is the position here. Outputs come first.
    pub streams: Vec<StreamConfig>,
    /// Jacks.
    pub jacks: Vec<JackConfig>,
    /// Offer VIRTIO_SND_F_CTLS with a volume and a mute switch per stream.
    pub controls: bool,
}

/// Picks entry `k` of a per-stream list: the k-th, or the only one.
pub fn per_stream<T>(list: &[T], k: usize) -> Option<&T> {
    match list {
        [only] => Some(only),
        many => many.get(k),
    }
}

/// The conventional channel map for `channels` channels.
pub fn default_chmap(channels: u8) -> Vec<u8> {
    use crate::protocol::{
        VIRTIO_SND_CHMAP_FC as FC, VIRTIO_SND_CHMAP_FL as FL, VIRTIO_SND_CHMAP_FR as FR,
        VIRTIO_SND_CHMAP_LFE as LFE, VIRTIO_SND_CHMAP_MONO as MONO, VIRTIO_SND_CHMAP_RC as RC,
        VIRTIO_SND_CHMAP_RL as RL, VIRTIO_SND_CHMAP_RR as RR, VIRTIO_SND_CHMAP_SL as SL,
        VIRTIO_SND_CHMAP_SR as SR,
    };
    let full = [FL, FR, RL, RR, FC, LFE, SL, SR];
    let first = |n: usize| full.get(..n).unwrap_or(&full).to_vec();
    match channels {
        0 => Vec::new(),
        1 => vec![MONO],
        3 => [first(2), vec![FC]].concat(),
        5 => [first(4), vec![FC]].concat(),
        7 => [first(6), vec![RC]].concat(),
        n => first(usize::from(n)),
    }
}

/// Parses a channel map such as `FL,FR,FC,LFE,RL,RR`.
pub fn parse_chmap(text: &str) -> Result<Vec<u8>, String> {
    let positions = text
        .split(',')
        .map(|name| {
            let name = name.trim();
            protocol::CHMAP_NAMES
                .iter()
                .position(|n| n.eq_ignore_ascii_case(name))
                .and_then(|p| u8::try_from(p).ok())
                .filter(|p| *p != protocol::VIRTIO_SND_CHMAP_NONE)
                .ok_or_else(|| {
                    format!(
                        "unknown channel position {name:?} (known: {})",
                        protocol::CHMAP_NAMES.get(1..).unwrap_or_default().join(" ")
                    )
                })
        })
        .collect::<Result<Vec<u8>, String>>()?;
    if positions.is_empty() || positions.len() > 8 {
        return Err(format!(
            "a channel map has 1 to 8 positions, {text:?} has {}",
            positions.len()
        ));
    }
    Ok(positions)
}

/// HDA pin device types (AC_JACK_*) used for the jacks we create, chosen so
/// every jack gets a distinct name in the guest ("Line Out", "Headphone",
/// "Speaker"; "Mic", "Line", "Aux").
const OUTPUT_PINS: [u32; 3] = [0x0, 0x2, 0x1];
const INPUT_PINS: [u32; 3] = [0xa, 0x8, 0x9];

impl SoundConfig {
    /// `outputs` and `inputs` streams with the given channel maps (one per
    /// stream). The first three streams of each direction get a jack.
    pub fn new(outputs: Vec<Vec<u8>>, inputs: Vec<Vec<u8>>, controls: bool) -> Self {
        let mut streams = Vec::new();
        for (direction, maps) in [(Direction::Output, outputs), (Direction::Input, inputs)] {
            for (index, chmap) in maps.into_iter().enumerate() {
                let channels = u8::try_from(chmap.len()).unwrap_or(u8::MAX);
                streams.push(StreamConfig {
                    direction,
                    index,
                    nid: u32::try_from(index).unwrap_or(u32::MAX),
                    channels_min: 1,
                    channels_max: channels,
                    chmap,
                    formats: SampleFormat::all_bits(),
                    rates: supported_rates_bits(),
                });
            }
        }
        let mut jacks = Vec::new();
        for (id, stream) in streams.iter().enumerate() {
            let pins = match stream.direction {
                Direction::Output => &OUTPUT_PINS,
                Direction::Input => &INPUT_PINS,
            };
            let Some(&device) = pins.get(stream.index) else {
                continue;
            };
            // Connectivity: jack (0); location: external rear (0x02); the
            // device type; 1/8" connector; association 1, sequence = index.
            let sequence = u32::try_from(stream.index).unwrap_or(0) & 0xf;
            let defconf = 0x02 << 24 | device << 20 | 0x1 << 16 | 0x1 << 4 | sequence;
            // Presence detect, plus output or input capable.
            let caps = 1 << 2
                | match stream.direction {
                    Direction::Output => 1 << 4,
                    Direction::Input => 1 << 5,
                };
            jacks.push(JackConfig {
                stream: u32::try_from(id).unwrap_or(u32::MAX),
                defconf,
                caps,
            });
        }
        SoundConfig {
            streams,
            jacks,
            controls,
        }
    }

    /// Number of control elements: a volume and a switch per stream.
    pub fn num_controls(&self) -> usize {
        if self.controls {
            self.streams.len() * 2
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn chmaps_parse_and_default() {
        assert_eq!(parse_chmap("FL,FR").unwrap(), vec![3, 4]);
        assert_eq!(parse_chmap("fl, fr ,lfe").unwrap(), vec![3, 4, 8]);
        assert!(parse_chmap("FL,XX").unwrap_err().contains("XX"));
        parse_chmap("NONE").unwrap_err();
        parse_chmap("FL,FL,FL,FL,FL,FL,FL,FL,FL").unwrap_err();
        for n in 1..=8u8 {
            assert_eq!(default_chmap(n).len(), usize::from(n));
        }
        assert_eq!(default_chmap(1), vec![protocol::VIRTIO_SND_CHMAP_MONO]);
        assert_eq!(default_chmap(6), vec![3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn streams_pair_up_by_function_group_and_jacks_are_unique() {
        let c = SoundConfig::new(
            vec![default_chmap(2), default_chmap(6)],
            vec![default_chmap(2)],
            true,
        );
        assert_eq!(c.streams.len(), 3);
        assert_eq!(c.streams[0].nid, 0);
        assert_eq!(c.streams[1].nid, 1);
        assert_eq!(c.streams[2].nid, 0);
        assert_eq!(c.streams[2].direction, Direction::Input);
        assert_eq!(c.streams[1].channels_max, 6);
        assert_eq!(c.jacks.len(), 3);
        let devices: Vec<u32> = c.jacks.iter().map(|j| j.defconf >> 20 & 0xf).collect();
        assert_eq!(devices, [0x0, 0x2, 0xa]);
        assert_eq!(c.num_controls(), 6);
    }
}
