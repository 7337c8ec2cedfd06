// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Command line: the flags, checked, and what they describe (the device
//! configuration and the backend choice).

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use vhost_device_common::SocketArgs;

use crate::backend::wav::{read_file, DEFAULT_WAV_MAX_BYTES, MAX_WAV_BYTES};
use crate::backend::BackendSpec;
use crate::config::{default_chmap, parse_chmap, per_stream, SoundConfig};
use crate::error::Error;

/// Most streams per direction.
pub const MAX_STREAMS: u8 = 8;

/// Host audio backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// Discard playback, record silence, at real-time pace.
    Null,
    /// Playback to WAV files, capture from WAV files.
    Wav,
    /// Host ALSA devices.
    Alsa,
    /// PipeWire streams.
    Pipewire,
}

/// vhost-user virtio sound device (virtio-snd, device ID 25).
///
/// Serves a sound card to a guest over vhost-user (QEMU: -device
/// vhost-user-snd-pci). Output streams come first, then input streams;
/// output k and input k form the guest's PCM device k.
#[derive(Parser, Debug, Clone)]
#[command(name = "vhost-device-sound", version, about, long_about)]
pub struct SoundArgs {
    #[command(flatten)]
    pub socket: SocketArgs,

    /// Where audio goes and comes from.
    #[arg(long, value_enum, default_value_t = BackendKind::Null)]
    pub backend: BackendKind,

    /// Number of output (playback) streams, 0 to 8.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(0..=i64::from(MAX_STREAMS)))]
    pub outputs: u8,

    /// Number of input (capture) streams, 0 to 8.
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u8).range(0..=i64::from(MAX_STREAMS)))]
    pub inputs: u8,

    /// Channels of each output stream, 1 to 8, comma separated in stream
    /// order; a single value applies to every output stream. Default: the
    /// channel map's length, or 2.
    #[arg(long, value_name = "N[,N…]", value_delimiter = ',',
          value_parser = clap::value_parser!(u8).range(1..=8))]
    pub output_channels: Vec<u8>,

    /// Channels of each input stream, as for --output-channels.
    #[arg(long, value_name = "N[,N…]", value_delimiter = ',',
          value_parser = clap::value_parser!(u8).range(1..=8))]
    pub input_channels: Vec<u8>,

    /// Channel map of an output stream, e.g. FL,FR,RL,RR,FC,LFE. Give it
    /// once per output stream, in order; given once, it applies to all.
    /// Positions: MONO FL FR RL RR FC LFE SL SR RC FLC FRC … (the spec's
    /// VIRTIO_SND_CHMAP_* names). Default: the usual map for the channel
    /// count.
    #[arg(long, value_name = "POS,POS…")]
    pub output_chmap: Vec<String>,

    /// Channel map of an input stream, as for --output-chmap.
    #[arg(long, value_name = "POS,POS…")]
    pub input_chmap: Vec<String>,

    /// Offer control elements (VIRTIO_SND_F_CTLS: a volume and a mute
    /// switch per stream, applied to the samples). QEMU then needs
    /// `vhost-user-snd-pci,...,controls=on`: without it QEMU's config space
    /// has no `controls` field, yet it passes the feature on, and the Linux
    /// driver fails to probe.
    #[arg(long)]
    pub controls: bool,

    /// wav: directory where the output streams are written, as output0.wav,
    /// output1.wav, …
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub wav_dir: PathBuf,

    /// wav: file input stream k records from; give it once per input
    /// stream, or once for all. Without it, inputs record silence.
    #[arg(long, value_name = "FILE")]
    pub wav_input: Vec<PathBuf>,

    /// wav: loop the input files instead of following them with silence.
    #[arg(long)]
    pub wav_loop: bool,

    /// wav: largest size of an output file, header included (at most
    /// 4294963200, the format's limit). At the limit the file keeps what it
    /// has, a valid WAV; the guest plays on without an error and the rest
    /// of its stream is dropped, with one warning. Default 1 GiB.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_WAV_MAX_BYTES,
          value_parser = clap::value_parser!(u64).range(4096..=MAX_WAV_BYTES))]
    pub wav_max_bytes: u64,

    /// alsa: PCM device of each output stream (e.g. hw:Loopback,0,0 or
    /// default); once per stream, or once for all. Default: "default".
    #[arg(long, value_name = "PCM")]
    pub alsa_output: Vec<String>,

    /// alsa: PCM device of each input stream, as for --alsa-output.
    #[arg(long, value_name = "PCM")]
    pub alsa_input: Vec<String>,

    /// pipewire: node name prefix; the streams' nodes are NAME-output0, …,
    /// NAME-input0, …
    #[arg(long, value_name = "NAME", default_value = "vhost-device-sound")]
    pub pw_node_name: String,

    /// pipewire: target node (name or serial) of each output stream; once
    /// per stream, or once for all. Default: the session manager decides.
    #[arg(long, value_name = "NODE")]
    pub pw_output_target: Vec<String>,

    /// pipewire: target node of each input stream, as for
    /// --pw-output-target.
    #[arg(long, value_name = "NODE")]
    pub pw_input_target: Vec<String>,

    /// pipewire: requested node latency in frames (node.latency).
    #[arg(long, value_name = "FRAMES", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(32..=65536))]
    pub pw_latency: u32,
}

fn check_count<T>(flag: &'static str, list: &[T], streams: u8) -> Result<(), Error> {
    if list.len() > 1 && list.len() != usize::from(streams) {
        return Err(Error::BadArgument {
            flag,
            reason: format!(
                "given {} times for {streams} streams; give it once for all or once per stream",
                list.len()
            ),
        });
    }
    Ok(())
}

fn stream_maps(
    count: u8,
    channels: &[u8],
    chmaps: &[String],
    channels_flag: &'static str,
    chmap_flag: &'static str,
) -> Result<Vec<Vec<u8>>, Error> {
    check_count(channels_flag, channels, count)?;
    check_count(chmap_flag, chmaps, count)?;
    (0..usize::from(count))
        .map(|k| {
            let map = per_stream(chmaps, k)
                .map(|text| {
                    parse_chmap(text).map_err(|reason| Error::BadArgument {
                        flag: chmap_flag,
                        reason,
                    })
                })
                .transpose()?;
            let wanted = per_stream(channels, k).copied();
            match (map, wanted) {
                (Some(map), Some(n)) if map.len() != usize::from(n) => Err(Error::BadArgument {
                    flag: chmap_flag,
                    reason: format!(
                        "stream {k}: the map has {} positions but {channels_flag} says {n}",
                        map.len()
                    ),
                }),
                (Some(map), _) => Ok(map),
                (None, n) => Ok(default_chmap(n.unwrap_or(2))),
            }
        })
        .collect()
}

impl SoundArgs {
    /// The device configuration the flags describe.
    pub fn sound_config(&self) -> Result<SoundConfig, Error> {
        if self.outputs == 0 && self.inputs == 0 {
            return Err(Error::BadArgument {
                flag: "--outputs/--inputs",
                reason: "the device needs at least one stream".into(),
            });
        }
        let outputs = stream_maps(
            self.outputs,
            &self.output_channels,
            &self.output_chmap,
            "--output-channels",
            "--output-chmap",
        )?;
        let inputs = stream_maps(
            self.inputs,
            &self.input_channels,
            &self.input_chmap,
            "--input-channels",
            "--input-chmap",
        )?;
        Ok(SoundConfig::new(outputs, inputs, self.controls))
    }

    /// Checks the backend flags and returns what builds a backend for each
    /// guest connection.
    pub fn backend_spec(&self) -> Result<BackendSpec, Error> {
        match self.backend {
            BackendKind::Null => Ok(BackendSpec::Null),
            BackendKind::Wav => {
                if !self.wav_dir.is_dir() {
                    return Err(Error::BadArgument {
                        flag: "--wav-dir",
                        reason: format!("{} is not a directory", self.wav_dir.display()),
                    });
                }
                check_count("--wav-input", &self.wav_input, self.inputs)?;
                for path in &self.wav_input {
                    read_file(path)?;
                }
                Ok(BackendSpec::Wav {
                    dir: self.wav_dir.clone(),
                    inputs: self.wav_input.clone(),
                    looped: self.wav_loop,
                    max_bytes: self.wav_max_bytes,
                })
            }
            BackendKind::Alsa => {
                check_count("--alsa-output", &self.alsa_output, self.outputs)?;
                check_count("--alsa-input", &self.alsa_input, self.inputs)?;
                if cfg!(feature = "alsa-backend") {
                    Ok(BackendSpec::Alsa {
                        outputs: self.alsa_output.clone(),
                        inputs: self.alsa_input.clone(),
                    })
                } else {
                    Err(Error::BackendMissing("alsa", "alsa-backend"))
                }
            }
            BackendKind::Pipewire => {
                check_count("--pw-output-target", &self.pw_output_target, self.outputs)?;
                check_count("--pw-input-target", &self.pw_input_target, self.inputs)?;
                if cfg!(feature = "pw-backend") {
                    Ok(BackendSpec::Pipewire {
                        node_name: self.pw_node_name.clone(),
                        outputs: self.pw_output_target.clone(),
                        inputs: self.pw_input_target.clone(),
                        latency: self.pw_latency,
                    })
                } else {
                    Err(Error::BackendMissing("pipewire", "pw-backend"))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::config::Direction;

    fn parse(args: &[&str]) -> Result<SoundArgs, clap::Error> {
        let mut all = vec!["vhost-device-sound", "--socket-path", "/tmp/x.sock"];
        all.extend_from_slice(args);
        SoundArgs::try_parse_from(all)
    }

    #[test]
    fn defaults_are_one_stereo_stream_each_way() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.backend, BackendKind::Null);
        let c = args.sound_config().unwrap();
        assert_eq!(c.streams.len(), 2);
        assert_eq!(c.streams[0].direction, Direction::Output);
        assert_eq!(c.streams[0].chmap, vec![3, 4]);
        // QEMU's default vhost-user-snd-pci has no room for `controls`.
        assert!(!c.controls);
        assert_eq!(args.backend_spec().unwrap(), BackendSpec::Null);
    }

    #[test]
    fn wav_max_bytes_is_bounded_by_the_format() {
        assert_eq!(parse(&[]).unwrap().wav_max_bytes, 1 << 30);
        assert_eq!(
            parse(&["--wav-max-bytes", "4096"]).unwrap().wav_max_bytes,
            4096
        );
        for bad in ["4095", "4294963201"] {
            let e = parse(&["--wav-max-bytes", bad]).unwrap_err().to_string();
            assert!(e.contains("--wav-max-bytes"), "{e}");
        }
    }

    #[test]
    fn per_stream_channels_and_chmaps() {
        let args = parse(&[
            "--outputs",
            "2",
            "--inputs",
            "1",
            "--output-channels",
            "2,6",
            "--output-chmap",
            "FL,FR",
            "--output-chmap",
            "FL,FR,FC,LFE,SL,SR",
            "--input-channels",
            "1",
            "--controls",
        ])
        .unwrap();
        let c = args.sound_config().unwrap();
        assert_eq!(c.streams.len(), 3);
        assert_eq!(c.streams[1].channels_max, 6);
        assert_eq!(c.streams[1].chmap, vec![3, 4, 7, 8, 9, 10]);
        assert_eq!(c.streams[2].chmap, vec![spec_mono()]);
        assert!(c.controls);
        assert_eq!(c.num_controls(), 6);
    }

    fn spec_mono() -> u8 {
        crate::protocol::VIRTIO_SND_CHMAP_MONO
    }

    #[test]
    fn bad_values_get_clear_errors() {
        parse(&["--outputs", "9"]).unwrap_err();
        parse(&["--output-channels", "0"]).unwrap_err();
        parse(&["--output-channels", "9"]).unwrap_err();
        parse(&["--backend", "oss"]).unwrap_err();
        let e = parse(&["--outputs", "0", "--inputs", "0"])
            .unwrap()
            .sound_config()
            .unwrap_err();
        assert!(e.to_string().contains("at least one stream"), "{e}");
        let e = parse(&["--output-chmap", "FL,FR,XX"])
            .unwrap()
            .sound_config()
            .unwrap_err();
        assert!(
            e.to_string().contains("--output-chmap") && e.to_string().contains("XX"),
            "{e}"
        );
        let e = parse(&["--output-channels", "6", "--output-chmap", "FL,FR"])
            .unwrap()
            .sound_config()
            .unwrap_err();
        assert!(e.to_string().contains("2 positions"), "{e}");
        let e = parse(&["--outputs", "3", "--output-channels", "2,2"])
            .unwrap()
            .sound_config()
            .unwrap_err();
        assert!(e.to_string().contains("--output-channels"), "{e}");
        let e = parse(&["--backend", "wav", "--wav-dir", "/nonexistent"])
            .unwrap()
            .backend_spec()
            .unwrap_err();
        assert!(e.to_string().contains("--wav-dir"), "{e}");
        let e = parse(&["--backend", "wav", "--wav-input", "/nonexistent.wav"])
            .unwrap()
            .backend_spec()
            .unwrap_err();
        assert!(e.to_string().contains("/nonexistent.wav"), "{e}");
    }
}
