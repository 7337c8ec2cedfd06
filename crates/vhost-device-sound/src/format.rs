// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Sample formats, negotiated stream parameters, and gain applied to
//! interleaved little-endian samples.

use std::time::Duration;

use crate::protocol;

/// A sample format the device implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SampleFormat {
    /// Unsigned 8 bit, silence at 0x80.
    U8,
    /// Signed 16 bit.
    S16,
    /// Signed 24 bit in the low bytes of a 32-bit container.
    S24,
    /// Signed 32 bit.
    S32,
    /// 32-bit IEEE float in [-1, 1].
    Float,
}

impl SampleFormat {
    /// Every format, in spec order.
    pub const ALL: [SampleFormat; 5] = [
        SampleFormat::U8,
        SampleFormat::S16,
        SampleFormat::S24,
        SampleFormat::S32,
        SampleFormat::Float,
    ];

    /// The format for a spec `PCM_FMT_*` value, if implemented.
    pub fn from_spec(value: u8) -> Option<Self> {
        match value {
            protocol::VIRTIO_SND_PCM_FMT_U8 => Some(SampleFormat::U8),
            protocol::VIRTIO_SND_PCM_FMT_S16 => Some(SampleFormat::S16),
            protocol::VIRTIO_SND_PCM_FMT_S24 => Some(SampleFormat::S24),
            protocol::VIRTIO_SND_PCM_FMT_S32 => Some(SampleFormat::S32),
            protocol::VIRTIO_SND_PCM_FMT_FLOAT => Some(SampleFormat::Float),
            _ => None,
        }
    }

    /// The spec `PCM_FMT_*` value.
    pub fn to_spec(self) -> u8 {
        match self {
            SampleFormat::U8 => protocol::VIRTIO_SND_PCM_FMT_U8,
            SampleFormat::S16 => protocol::VIRTIO_SND_PCM_FMT_S16,
            SampleFormat::S24 => protocol::VIRTIO_SND_PCM_FMT_S24,
            SampleFormat::S32 => protocol::VIRTIO_SND_PCM_FMT_S32,
            SampleFormat::Float => protocol::VIRTIO_SND_PCM_FMT_FLOAT,
        }
    }

    /// Bytes per sample in memory.
    pub fn bytes(self) -> usize {
        match self {
            SampleFormat::U8 => 1,
            SampleFormat::S16 => 2,
            SampleFormat::S24 | SampleFormat::S32 | SampleFormat::Float => 4,
        }
    }

    /// Significant bits per sample.
    pub fn valid_bits(self) -> u16 {
        match self {
            SampleFormat::U8 => 8,
            SampleFormat::S16 => 16,
            SampleFormat::S24 => 24,
            SampleFormat::S32 | SampleFormat::Float => 32,
        }
    }

    /// The byte pattern of one silent sample.
    pub fn silence_byte(self) -> u8 {
        match self {
            SampleFormat::U8 => 0x80,
            _ => 0,
        }
    }

    /// The bitmap of every implemented format, for `virtio_snd_pcm_info::formats`.
    pub fn all_bits() -> u64 {
        Self::ALL
            .iter()
            .fold(0, |bits, f| bits | (1u64 << f.to_spec()))
    }

    /// Multiplies every sample in `data` by `gain` (0.0 ..= 1.0). A gain of
    /// exactly 1 leaves the bytes untouched, so unattenuated audio stays
    /// bit-exact. A trailing partial sample is left alone.
    pub fn apply_gain(self, data: &mut [u8], gain: Gain) {
        match gain {
            Gain::Unity => {}
            Gain::Mute => data.fill(self.silence_byte()),
            Gain::Scale { num, den } => self.scale(data, num, den),
        }
    }

    fn scale(self, data: &mut [u8], num: i64, den: i64) {
        let den = den.max(1);
        match self {
            SampleFormat::U8 => {
                for b in data.iter_mut() {
                    let v = (i64::from(*b) - 128) * num / den + 128;
                    *b = u8::try_from(v.clamp(0, 255)).unwrap_or(128);
                }
            }
            SampleFormat::S16 => map_samples::<2>(data, |bytes| {
                let v = i64::from(i16::from_le_bytes(bytes)) * num / den;
                i16::try_from(v).unwrap_or(0).to_le_bytes()
            }),
            SampleFormat::S24 => map_samples::<4>(data, |bytes| {
                // Sign-extend the low 24 bits; the top byte is padding.
                let raw = i32::from_le_bytes(bytes);
                let v = i64::from((raw << 8) >> 8) * num / den;
                let v = i32::try_from(v).unwrap_or(0);
                let [b0, b1, b2, _] = v.to_le_bytes();
                [b0, b1, b2, if v < 0 { 0xff } else { 0 }]
            }),
            SampleFormat::S32 => map_samples::<4>(data, |bytes| {
                let v = i64::from(i32::from_le_bytes(bytes)) * num / den;
                i32::try_from(v).unwrap_or(0).to_le_bytes()
            }),
            SampleFormat::Float => {
                #[allow(clippy::cast_precision_loss)]
                let g = num as f32 / den as f32;
                map_samples::<4>(data, |bytes| (f32::from_le_bytes(bytes) * g).to_le_bytes());
            }
        }
    }
}

fn map_samples<const N: usize>(data: &mut [u8], mut f: impl FnMut([u8; N]) -> [u8; N]) {
    for sample in data.chunks_exact_mut(N) {
        if let Ok(bytes) = <[u8; N]>::try_from(&*sample) {
            sample.copy_from_slice(&f(bytes));
        }
    }
}

/// What a volume and mute control pair does to samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gain {
    /// Leave the samples untouched.
    Unity,
    /// Replace them with silence.
    Mute,
    /// Multiply by `num / den`.
    Scale {
        /// Numerator.
        num: i64,
        /// Denominator.
        den: i64,
    },
}

impl Gain {
    /// The gain for a volume of `volume` out of `max`, unless `muted`.
    pub fn new(volume: u32, max: u32, muted: bool) -> Self {
        if muted || volume == 0 {
            Gain::Mute
        } else if volume >= max {
            Gain::Unity
        } else {
            Gain::Scale {
                num: i64::from(volume),
                den: i64::from(max),
            }
        }
    }
}

/// Rate in Hz for a spec rate index.
pub fn rate_hz(index: u8) -> Option<u32> {
    protocol::PCM_RATES
        .iter()
        .find(|(i, _)| *i == index)
        .map(|&(_, hz)| hz)
}

/// Spec rate index for a rate in Hz.
pub fn rate_index(hz: u32) -> Option<u8> {
    protocol::PCM_RATES
        .iter()
        .find(|(_, r)| *r == hz)
        .map(|&(i, _)| i)
}

/// The rates the device offers: 8 kHz to 192 kHz.
pub fn supported_rates_bits() -> u64 {
    protocol::PCM_RATES
        .iter()
        .filter(|(_, hz)| (8000..=192_000).contains(hz))
        .fold(0, |bits, (i, _)| bits | (1u64 << i))
}

/// Stream parameters the driver set with PCM_SET_PARAMS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PcmParams {
    /// Driver's buffer size in bytes.
    pub buffer_bytes: u32,
    /// Driver's period size in bytes.
    pub period_bytes: u32,
    /// Selected `1 << PCM_F_*` bits.
    pub features: u32,
    /// Channels.
    pub channels: u8,
    /// Sample format.
    pub format: SampleFormat,
    /// Frames per second.
    pub rate: u32,
}

impl PcmParams {
    /// Bytes per frame.
    pub fn frame_bytes(&self) -> usize {
        self.format.bytes() * usize::from(self.channels)
    }

    /// Bytes per second.
    pub fn byte_rate(&self) -> u64 {
        u64::from(self.rate) * self.frame_bytes() as u64
    }

    /// How long `bytes` take to play.
    pub fn duration_of(&self, bytes: u64) -> Duration {
        let rate = self.byte_rate().max(1);
        Duration::from_nanos(
            u64::try_from(u128::from(bytes) * 1_000_000_000 / u128::from(rate)).unwrap_or(u64::MAX),
        )
    }

    /// Whether the driver enabled `PCM_F_*` bit `bit`.
    pub fn has_feature(&self, bit: u32) -> bool {
        self.features & (1 << bit) != 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn spec_values_round_trip() {
        for f in SampleFormat::ALL {
            assert_eq!(SampleFormat::from_spec(f.to_spec()), Some(f));
        }
        assert_eq!(SampleFormat::from_spec(0), None);
        assert_eq!(
            SampleFormat::all_bits(),
            1 << 4 | 1 << 5 | 1 << 15 | 1 << 17 | 1 << 19
        );
        assert_eq!(rate_hz(7), Some(48000));
        assert_eq!(rate_index(192_000), Some(12));
        assert_eq!(rate_hz(16), None);
        let bits = supported_rates_bits();
        assert_eq!(bits & 1, 0, "5512 Hz is below 8 kHz");
        assert_eq!(bits & (1 << 13), 0, "384 kHz is above 192 kHz");
        assert_ne!(bits & (1 << 12), 0);
        assert_ne!(bits & (1 << 14), 0, "12 kHz");
    }

    #[test]
    fn unity_gain_is_bit_exact_and_mute_is_silence() {
        let mut data = vec![1, 2, 3, 4, 0xff, 0x7f];
        SampleFormat::S16.apply_gain(&mut data, Gain::new(100, 100, false));
        assert_eq!(data, [1, 2, 3, 4, 0xff, 0x7f]);
        SampleFormat::S16.apply_gain(&mut data, Gain::new(100, 100, true));
        assert_eq!(data, [0; 6]);
        let mut u8data = vec![0, 255];
        SampleFormat::U8.apply_gain(&mut u8data, Gain::new(0, 100, false));
        assert_eq!(u8data, [0x80, 0x80]);
    }

    #[test]
    fn half_gain_halves_every_format() {
        let half = Gain::new(50, 100, false);
        let mut s16: Vec<u8> = [1000i16, -1000, i16::MIN]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        SampleFormat::S16.apply_gain(&mut s16, half);
        let got: Vec<i16> = s16
            .chunks(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(got, [500, -500, i16::MIN / 2]);

        let mut u8data = vec![0x80 + 100, 0x80 - 100];
        SampleFormat::U8.apply_gain(&mut u8data, half);
        assert_eq!(u8data, [0x80 + 50, 0x80 - 50]);

        let mut s24 = (-0x40_0000i32 & 0x00ff_ffff).to_le_bytes().to_vec();
        s24.extend((0x40_0000i32).to_le_bytes());
        SampleFormat::S24.apply_gain(&mut s24, half);
        assert_eq!(&s24[..4], &(-0x20_0000i32).to_le_bytes()[..]);
        assert_eq!(&s24[4..], &(0x20_0000i32).to_le_bytes()[..]);

        let mut s32 = i32::MAX.to_le_bytes().to_vec();
        SampleFormat::S32.apply_gain(&mut s32, half);
        assert_eq!(i32::from_le_bytes(s32.try_into().unwrap()), i32::MAX / 2);

        let mut f = 0.5f32.to_le_bytes().to_vec();
        SampleFormat::Float.apply_gain(&mut f, half);
        assert_eq!(f32::from_le_bytes(f.try_into().unwrap()), 0.25);
    }

    #[test]
    fn params_timing() {
        let p = PcmParams {
            buffer_bytes: 19200,
            period_bytes: 3840,
            features: 1 << protocol::VIRTIO_SND_PCM_F_EVT_XRUNS,
            channels: 2,
            format: SampleFormat::S16,
            rate: 48000,
        };
        assert_eq!(p.frame_bytes(), 4);
        assert_eq!(p.byte_rate(), 192_000);
        assert_eq!(p.duration_of(3840), Duration::from_millis(20));
        assert!(p.has_feature(protocol::VIRTIO_SND_PCM_F_EVT_XRUNS));
        assert!(!p.has_feature(protocol::VIRTIO_SND_PCM_F_MSG_POLLING));
    }
}
