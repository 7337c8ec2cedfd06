// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The `wav` backend: each output stream is written to its own WAV file,
//! and each input stream reads a WAV file, looped or followed by silence.
//!
//! The output file holds exactly the samples the guest played, in the
//! stream's format, with the volume and mute controls applied (unity
//! volume leaves them bit-exact). The header is rewritten after every
//! write, so the file is a valid WAV at any moment, even while the guest
//! is still playing. A file is (re)created when its stream is first
//! prepared with a set of parameters; later sessions with the same
//! parameters append to it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use log::{info, warn};
use vhost_device_common::RateLimited;

use super::{whole_frames, AudioBackend, BackendError, InputSource, OutputSink, StreamRef};
use crate::format::{PcmParams, SampleFormat};

/// Largest capture file read into memory.
const MAX_INPUT_BYTES: u64 = 512 << 20;

/// Largest output file: the RIFF header's sizes are 32 bits (a whole
/// number of 4 KiB pages below 4 GiB, so the header's sizes always fit).
pub const MAX_WAV_BYTES: u64 = 0xffff_f000;
/// `--wav-max-bytes`'s default: 1 GiB, about 100 minutes of CD-quality
/// stereo.
pub const DEFAULT_WAV_MAX_BYTES: u64 = 1 << 30;

const TAG_PCM: u16 = 1;
const TAG_FLOAT: u16 = 3;
const TAG_EXTENSIBLE: u16 = 0xfffe;

/// Samples and their layout, as read from a WAV file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WavData {
    /// Channels.
    pub channels: u16,
    /// Frames per second.
    pub rate: u32,
    /// Sample format.
    pub format: SampleFormat,
    /// Interleaved little-endian samples.
    pub data: Vec<u8>,
}

/// Writes `params`-shaped samples to a WAV file at `path`, replacing it.
#[derive(Debug)]
pub struct WavWriter {
    file: File,
    path: PathBuf,
    header_len: u64,
    data_len: u64,
    /// Bytes per frame: the file ends on a whole frame.
    frame_bytes: u64,
    /// The file's largest size, header included.
    max_bytes: u64,
}

impl WavWriter {
    /// Creates (truncates) `path` with a header for `channels`, `rate`,
    /// `format`.
    pub fn create(
        path: &Path,
        channels: u16,
        rate: u32,
        format: SampleFormat,
    ) -> Result<Self, BackendError> {
        let file_error = |source| BackendError::File {
            path: path.display().to_string(),
            source,
        };
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(file_error)?;
        let header = header(channels, rate, format, 0);
        file.write_all(&header).map_err(file_error)?;
        Ok(WavWriter {
            file,
            path: path.to_owned(),
            header_len: header.len() as u64,
            data_len: 0,
            frame_bytes: (format.bytes() * usize::from(channels)).max(1) as u64,
            max_bytes: MAX_WAV_BYTES,
        })
    }

    /// The same writer, whose file never grows past `max_bytes` (header
    /// included; at most [`MAX_WAV_BYTES`]).
    #[must_use]
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes.min(MAX_WAV_BYTES);
        self
    }

    /// Whether the file has reached its largest size: later samples are
    /// not written.
    pub fn is_full(&self) -> bool {
        self.room() < self.frame_bytes
    }

    /// Bytes of whole frames the file can still take.
    fn room(&self) -> u64 {
        let left = self
            .max_bytes
            .saturating_sub(self.header_len + self.data_len);
        left - left % self.frame_bytes
    }

    /// Appends samples, as many whole frames of them as the size limit
    /// leaves room for, and updates the header's sizes. Returns how many
    /// bytes were written.
    pub fn append(&mut self, data: &[u8]) -> Result<usize, BackendError> {
        let file_error = |source| BackendError::File {
            path: self.path.display().to_string(),
            source,
        };
        let room = usize::try_from(self.room()).unwrap_or(usize::MAX);
        let data = data.get(..data.len().min(room)).unwrap_or_default();
        if data.is_empty() {
            return Ok(0);
        }
        self.file.write_all(data).map_err(file_error)?;
        self.data_len += data.len() as u64;
        let data_size = u32::try_from(self.data_len).unwrap_or(u32::MAX);
        let riff_size = u32::try_from(self.header_len - 8 + self.data_len).unwrap_or(u32::MAX);
        self.file
            .write_all_at(&riff_size.to_le_bytes(), 4)
            .map_err(file_error)?;
        self.file
            .write_all_at(&data_size.to_le_bytes(), self.header_len - 4)
            .map_err(file_error)?;
        Ok(data.len())
    }
}

/// A RIFF/WAVE header. Plain PCM or float for one or two channels of 8, 16
/// or 32 bits; WAVE_FORMAT_EXTENSIBLE for more channels or 24-in-32 bits.
pub fn header(channels: u16, rate: u32, format: SampleFormat, data_len: u32) -> Vec<u8> {
    let container_bits = u16::try_from(format.bytes() * 8).unwrap_or(32);
    let block_align = container_bits / 8 * channels;
    let byte_rate = rate * u32::from(block_align);
    let base_tag = if format == SampleFormat::Float {
        TAG_FLOAT
    } else {
        TAG_PCM
    };
    let extensible = channels > 2 || format.valid_bits() != container_bits;
    let fmt_len: u32 = if extensible { 40 } else { 16 };
    let mut h = Vec::with_capacity(68);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(4 + 8 + fmt_len + 8 + data_len).to_le_bytes());
    h.extend_from_slice(b"WAVE");
    h.extend_from_slice(b"fmt ");
    h.extend_from_slice(&fmt_len.to_le_bytes());
    h.extend_from_slice(&(if extensible { TAG_EXTENSIBLE } else { base_tag }).to_le_bytes());
    h.extend_from_slice(&channels.to_le_bytes());
    h.extend_from_slice(&rate.to_le_bytes());
    h.extend_from_slice(&byte_rate.to_le_bytes());
    h.extend_from_slice(&block_align.to_le_bytes());
    h.extend_from_slice(&container_bits.to_le_bytes());
    if extensible {
        h.extend_from_slice(&22u16.to_le_bytes());
        h.extend_from_slice(&format.valid_bits().to_le_bytes());
        h.extend_from_slice(&channel_mask(channels).to_le_bytes());
        // KSDATAFORMAT_SUBTYPE_PCM / _IEEE_FLOAT: the tag, then a fixed tail.
        h.extend_from_slice(&base_tag.to_le_bytes());
        h.extend_from_slice(&[
            0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71,
        ]);
    }
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_len.to_le_bytes());
    h
}

/// The usual speaker mask for `channels` (FL FR FC LFE BL BR SL SR order).
fn channel_mask(channels: u16) -> u32 {
    match channels {
        1 => 0x4,
        2 => 0x3,
        3 => 0x7,
        4 => 0x33,
        5 => 0x37,
        6 => 0x3f,
        7 => 0x13f,
        8 => 0x63f,
        _ => 0,
    }
}

fn le16(bytes: &[u8], at: usize) -> Option<u16> {
    let b = bytes.get(at..at + 2)?;
    Some(u16::from_le_bytes(b.try_into().ok()?))
}

fn le32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 4)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

/// Parses a WAV file held in memory.
pub fn parse(bytes: &[u8]) -> Result<WavData, String> {
    if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
        return Err("not a RIFF/WAVE file".into());
    }
    let mut at = 12usize;
    let mut fmt: Option<(u16, u16, u32, u16, u16)> = None;
    while let (Some(id), Some(len)) = (bytes.get(at..at + 4), le32(bytes, at + 4)) {
        let body = at + 8;
        let len = len as usize;
        if id == b"fmt " {
            let tag = le16(bytes, body).ok_or("short fmt chunk")?;
            let channels = le16(bytes, body + 2).ok_or("short fmt chunk")?;
            let rate = le32(bytes, body + 4).ok_or("short fmt chunk")?;
            let bits = le16(bytes, body + 14).ok_or("short fmt chunk")?;
            let (tag, valid) = if tag == TAG_EXTENSIBLE {
                let valid = le16(bytes, body + 18).ok_or("short extensible fmt chunk")?;
                let sub = le16(bytes, body + 24).ok_or("short extensible fmt chunk")?;
                (sub, valid)
            } else {
                (tag, bits)
            };
            fmt = Some((tag, channels, rate, bits, valid));
        } else if id == b"data" {
            let (tag, channels, rate, bits, valid) = fmt.ok_or("data before fmt")?;
            let format = match (tag, bits, valid) {
                (TAG_PCM, 8, 8) => SampleFormat::U8,
                (TAG_PCM, 16, 16) => SampleFormat::S16,
                (TAG_PCM, 32, 24) => SampleFormat::S24,
                (TAG_PCM, 32, 32) => SampleFormat::S32,
                (TAG_FLOAT, 32, 32) => SampleFormat::Float,
                _ => {
                    return Err(format!(
                        "unsupported sample format (tag {tag}, {bits} bits, {valid} valid)"
                    ))
                }
            };
            if channels == 0 || rate == 0 {
                return Err("zero channels or rate".into());
            }
            // A writer that never finished leaves a short or zero size:
            // take what the file holds.
            let end = body.saturating_add(len).min(bytes.len());
            let data = bytes.get(body..end).unwrap_or_default();
            let frame = format.bytes() * usize::from(channels);
            let data = data
                .get(..whole_frames(data.len(), frame))
                .unwrap_or_default();
            return Ok(WavData {
                channels,
                rate,
                format,
                data: data.to_vec(),
            });
        }
        at = body.saturating_add(len).saturating_add(len % 2);
    }
    Err("no data chunk".into())
}

/// Reads a WAV file.
pub fn read_file(path: &Path) -> Result<WavData, BackendError> {
    let file_error = |source| BackendError::File {
        path: path.display().to_string(),
        source,
    };
    let file = File::open(path).map_err(file_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_INPUT_BYTES)
        .read_to_end(&mut bytes)
        .map_err(file_error)?;
    parse(&bytes).map_err(|reason| BackendError::BadWav {
        path: path.display().to_string(),
        reason,
    })
}

/// Writes output stream k to `<dir>/output<k>.wav`; input stream k reads
/// `inputs[k]` (or the only file given, for every input stream).
#[derive(Debug)]
pub struct WavBackend {
    dir: PathBuf,
    /// Prepended to output file names: `guest<i>-` when the daemon serves
    /// several guests, so they do not write the same files.
    prefix: String,
    inputs: Vec<PathBuf>,
    looped: bool,
    /// Largest output file, header included.
    max_bytes: u64,
    /// Files this connection created, with the parameters they were
    /// created for, so a new session with the same parameters appends.
    outputs: Vec<Option<(PcmParams, std::sync::Arc<std::sync::Mutex<WavWriter>>)>>,
    /// The guest picks the capture format, so it decides how often the
    /// format warning shows.
    log: RateLimited,
}

impl WavBackend {
    /// A backend writing into `dir` and reading `inputs`.
    pub fn new(dir: PathBuf, inputs: Vec<PathBuf>, looped: bool) -> Self {
        WavBackend {
            dir,
            prefix: String::new(),
            inputs,
            looped,
            max_bytes: DEFAULT_WAV_MAX_BYTES,
            outputs: Vec::new(),
            log: RateLimited::default(),
        }
    }

    /// The same backend, whose output files never grow past `max_bytes`
    /// (`--wav-max-bytes`).
    #[must_use]
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// The same backend for guest `guest` of several: its files are
    /// `guest<guest>-output<k>.wav`.
    pub fn for_guest(mut self, guest: usize) -> Self {
        self.prefix = format!("guest{guest}-");
        self
    }

    /// The file output stream `index` is written to with a single guest.
    pub fn output_path(dir: &Path, index: usize) -> PathBuf {
        dir.join(format!("output{index}.wav"))
    }
}

struct WavSink {
    writer: std::sync::Arc<std::sync::Mutex<WavWriter>>,
    frame_bytes: usize,
}

impl OutputSink for WavSink {
    /// At the size limit, the frames are taken (the guest plays on at its
    /// pace, with no error) and dropped: the file keeps what it has, a
    /// valid WAV, and one warning says so.
    fn write(&mut self, data: &[u8]) -> Result<usize, BackendError> {
        let len = whole_frames(data.len(), self.frame_bytes);
        let mut writer = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let was_full = writer.is_full();
        writer.append(data.get(..len).unwrap_or_default())?;
        if !was_full && writer.is_full() {
            warn!(
                "{}: reached --wav-max-bytes ({} bytes); the rest of the stream is dropped",
                writer.path.display(),
                writer.max_bytes
            );
        }
        Ok(len)
    }
}

struct WavSource {
    data: Vec<u8>,
    pos: usize,
    looped: bool,
    silence: u8,
}

impl InputSource for WavSource {
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, BackendError> {
        let mut filled = 0;
        while filled < buf.len() {
            if self.pos >= self.data.len() {
                if self.looped && !self.data.is_empty() {
                    self.pos = 0;
                } else {
                    // Past the end: silence, so the guest's capture goes on.
                    if let Some(rest) = buf.get_mut(filled..) {
                        rest.fill(self.silence);
                    }
                    return Ok(buf.len());
                }
            }
            let n = (buf.len() - filled).min(self.data.len() - self.pos);
            if let (Some(dst), Some(src)) = (
                buf.get_mut(filled..filled + n),
                self.data.get(self.pos..self.pos + n),
            ) {
                dst.copy_from_slice(src);
            }
            filled += n;
            self.pos += n;
        }
        Ok(filled)
    }
}

impl AudioBackend for WavBackend {
    fn name(&self) -> &'static str {
        "wav"
    }

    fn open_output(
        &mut self,
        stream: StreamRef,
        params: &PcmParams,
    ) -> Result<Box<dyn OutputSink>, BackendError> {
        if self.outputs.len() <= stream.index {
            self.outputs.resize_with(stream.index + 1, || None);
        }
        let slot = self
            .outputs
            .get_mut(stream.index)
            .ok_or_else(|| BackendError::Host {
                backend: "wav",
                device: format!("output {}", stream.index),
                reason: "no such stream".into(),
            })?;
        let same = matches!(slot, Some((p, _)) if p.channels == params.channels
            && p.format == params.format && p.rate == params.rate);
        if !same {
            let path = self
                .dir
                .join(format!("{}output{}.wav", self.prefix, stream.index));
            let writer = WavWriter::create(
                &path,
                u16::from(params.channels),
                params.rate,
                params.format,
            )?
            .with_max_bytes(self.max_bytes);
            info!(
                "stream {}: writing {} ch {:?} {} Hz to {}",
                stream.id,
                params.channels,
                params.format,
                params.rate,
                path.display()
            );
            *slot = Some((*params, std::sync::Arc::new(std::sync::Mutex::new(writer))));
        }
        let writer = slot
            .as_ref()
            .map(|(_, w)| w.clone())
            .ok_or_else(|| BackendError::Host {
                backend: "wav",
                device: format!("output {}", stream.index),
                reason: "not open".into(),
            })?;
        Ok(Box::new(WavSink {
            writer,
            frame_bytes: params.frame_bytes(),
        }))
    }

    fn open_input(
        &mut self,
        stream: StreamRef,
        params: &PcmParams,
    ) -> Result<Box<dyn InputSource>, BackendError> {
        let path = match self.inputs.as_slice() {
            [] => None,
            [only] => Some(only),
            many => many.get(stream.index),
        };
        let data = match path {
            None => Vec::new(),
            Some(path) => {
                let wav = read_file(path)?;
                if wav.format != params.format
                    || wav.rate != params.rate
                    || wav.channels != u16::from(params.channels)
                {
                    self.log.warn(|| {
                        format!(
                        "stream {}: {} is {} ch {:?} {} Hz but the guest records {} ch {:?} {} Hz; \
                         its bytes are passed on unconverted",
                        stream.id,
                        path.display(),
                        wav.channels,
                        wav.format,
                        wav.rate,
                        params.channels,
                        params.format,
                        params.rate
                    )
                    });
                }
                let frame = params.frame_bytes();
                let mut data = wav.data;
                data.truncate(whole_frames(data.len(), frame));
                data
            }
        };
        Ok(Box::new(WavSource {
            data,
            pos: 0,
            looped: self.looped,
            silence: params.format.silence_byte(),
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn params(channels: u8, format: SampleFormat) -> PcmParams {
        PcmParams {
            buffer_bytes: 4096,
            period_bytes: 1024,
            features: 0,
            channels,
            format,
            rate: 48000,
        }
    }

    #[test]
    fn output_file_holds_the_exact_samples_and_a_valid_header_at_any_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut backend = WavBackend::new(dir.path().to_owned(), vec![], false);
        let p = params(2, SampleFormat::S16);
        let mut sink = backend
            .open_output(StreamRef { id: 0, index: 0 }, &p)
            .unwrap();
        let samples: Vec<u8> = (0..400u32).map(|i| (i * 7) as u8).collect();
        assert_eq!(sink.write(&samples[..200]).unwrap(), 200);
        let path = WavBackend::output_path(dir.path(), 0);
        assert_eq!(read_file(&path).unwrap().data, &samples[..200]);
        // A partial frame is refused, not written.
        assert_eq!(sink.write(&samples[200..203]).unwrap(), 0);
        assert_eq!(sink.write(&samples[200..]).unwrap(), 200);
        let wav = read_file(&path).unwrap();
        assert_eq!(
            (wav.channels, wav.rate, wav.format),
            (2, 48000, SampleFormat::S16)
        );
        assert_eq!(wav.data, samples);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 44 + 400);

        // Same parameters: the next session appends.
        let mut sink = backend
            .open_output(StreamRef { id: 0, index: 0 }, &p)
            .unwrap();
        sink.write(&samples[..4]).unwrap();
        assert_eq!(read_file(&path).unwrap().data.len(), 404);
        // Several guests write files of their own.
        let mut second = WavBackend::new(dir.path().to_owned(), vec![], false).for_guest(1);
        second
            .open_output(StreamRef { id: 0, index: 0 }, &p)
            .unwrap()
            .write(&samples[..8])
            .unwrap();
        let wav = read_file(&dir.path().join("guest1-output0.wav")).unwrap();
        assert_eq!(wav.data, &samples[..8]);
        assert_eq!(read_file(&path).unwrap().data.len(), 404);
        // New parameters: a new file.
        let p6 = params(6, SampleFormat::S24);
        let mut sink = backend
            .open_output(StreamRef { id: 0, index: 0 }, &p6)
            .unwrap();
        sink.write(&[1; 48]).unwrap();
        let wav = read_file(&path).unwrap();
        assert_eq!((wav.channels, wav.format), (6, SampleFormat::S24));
        assert_eq!(wav.data, [1; 48]);
    }

    #[test]
    fn output_stops_growing_at_the_size_limit_and_stays_valid() {
        let dir = tempfile::tempdir().unwrap();
        // 44-byte header + 25 stereo S16 frames (4 bytes each) + 2 bytes.
        let mut backend =
            WavBackend::new(dir.path().to_owned(), vec![], false).with_max_bytes(44 + 102);
        let p = params(2, SampleFormat::S16);
        let mut sink = backend
            .open_output(StreamRef { id: 0, index: 0 }, &p)
            .unwrap();
        let samples: Vec<u8> = (0..=255).collect();
        // Every write is taken whole: the guest sees no error.
        assert_eq!(sink.write(&samples[..60]).unwrap(), 60);
        assert_eq!(sink.write(&samples[60..120]).unwrap(), 60);
        assert_eq!(sink.write(&samples[120..200]).unwrap(), 80);
        let path = WavBackend::output_path(dir.path(), 0);
        let wav = read_file(&path).unwrap();
        // The file holds the first 25 whole frames, and its header says so.
        assert_eq!(wav.data, &samples[..100]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 144);

        let mut w = WavWriter::create(&dir.path().join("w.wav"), 1, 8000, SampleFormat::U8)
            .unwrap()
            .with_max_bytes(u64::MAX);
        assert_eq!(w.max_bytes, MAX_WAV_BYTES);
        assert!(!w.is_full());
        assert_eq!(w.append(&[1, 2, 3]).unwrap(), 3);
    }

    #[test]
    fn every_format_round_trips_through_a_header() {
        for format in SampleFormat::ALL {
            for channels in [1u16, 2, 6, 8] {
                let mut bytes = header(channels, 44100, format, 8);
                bytes.extend_from_slice(&[9; 8]);
                let wav = parse(&bytes).unwrap();
                assert_eq!(
                    (wav.channels, wav.rate, wav.format),
                    (channels, 44100, format)
                );
            }
        }
        parse(b"RIFX").unwrap_err();
        parse(b"RIFF\0\0\0\0WAVEdata\x04\0\0\0abcd").unwrap_err();
    }

    #[test]
    fn capture_loops_or_ends_in_silence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.wav");
        let mut w = WavWriter::create(&path, 1, 48000, SampleFormat::U8).unwrap();
        w.append(&[1, 2, 3]).unwrap();
        let p = params(1, SampleFormat::U8);
        let stream = StreamRef { id: 1, index: 0 };

        let mut once = WavBackend::new(dir.path().into(), vec![path.clone()], false)
            .open_input(stream, &p)
            .unwrap();
        let mut buf = [0; 5];
        assert_eq!(once.read(&mut buf).unwrap(), 5);
        assert_eq!(buf, [1, 2, 3, 0x80, 0x80]);

        let mut looped = WavBackend::new(dir.path().into(), vec![path], true)
            .open_input(stream, &p)
            .unwrap();
        assert_eq!(looped.read(&mut buf).unwrap(), 5);
        assert_eq!(buf, [1, 2, 3, 1, 2]);
        assert_eq!(looped.read(&mut buf).unwrap(), 5);
        assert_eq!(buf, [3, 1, 2, 3, 1]);
    }

    #[test]
    fn missing_capture_file_is_an_error() {
        let mut backend = WavBackend::new(".".into(), vec!["/nonexistent/x.wav".into()], false);
        let err = backend
            .open_input(StreamRef { id: 1, index: 0 }, &params(2, SampleFormat::S16))
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/x.wav"));
    }
}
