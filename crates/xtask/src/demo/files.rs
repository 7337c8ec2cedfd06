// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The demo's host files: the ones it gives the daemons before the guest
//! boots (the EEPROM's contents, the WAV the guest records from), and the
//! checks of what the guest left in them and on the display.

use std::path::Path;

use vhost_device_rig::screen::Image;
use vhost_device_sound::backend::wav;
use vhost_device_sound::format::SampleFormat;

use super::host::{Saw, EEPROM_TEXT, EEPROM_WRITE};

/// The capture file's layout: what the guest's arecord asks for, so the
/// samples pass unconverted.
pub const RATE: u32 = 48_000;
pub const CHANNELS: u16 = 2;
/// Frames in the capture file: 1.5 s, more than the guest records.
const INPUT_FRAMES: u32 = RATE * 3 / 2;
/// Frames of the ramp the guest's playback must carry unbroken: 0.8 s of
/// the 1 s it recorded.
const RAMP_NEEDED: usize = RATE as usize * 4 / 5;

/// Frame `i` of the capture file: a ramp on the left channel, its bitwise
/// complement on the right, so a dropped, repeated, swapped or zeroed frame
/// breaks it.
fn ramp_frame(i: u32) -> [i16; 2] {
    let left = i16::from_le_bytes([(i & 0xff) as u8, ((i >> 8) & 0xff) as u8]);
    [left, !left]
}

/// Writes the capture file (S16, stereo, 48 kHz) to `path`.
pub fn write_input_wav(path: &Path) -> Result<(), String> {
    let data: Vec<u8> = (0..INPUT_FRAMES)
        .flat_map(ramp_frame)
        .flat_map(i16::to_le_bytes)
        .collect();
    let len = u32::try_from(data.len()).map_err(|e| e.to_string())?;
    let mut bytes = wav::header(CHANNELS, RATE, SampleFormat::S16, len);
    bytes.extend_from_slice(&data);
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The longest run of consecutive ramp frames in interleaved S16 stereo.
fn longest_ramp(data: &[u8]) -> usize {
    let frames: Vec<[i16; 2]> = data
        .chunks_exact(4)
        .map(|c| {
            let s = |i: usize| {
                i16::from_le_bytes([
                    c.get(i).copied().unwrap_or(0),
                    c.get(i + 1).copied().unwrap_or(0),
                ])
            };
            [s(0), s(2)]
        })
        .collect();
    let (mut best, mut run) = (0usize, 0usize);
    let mut prev: Option<i16> = None;
    for [l, r] in frames {
        let in_ramp = r == !l && (l != 0 || r != 0);
        run = match (in_ramp, prev) {
            (true, Some(p)) if l == p.wrapping_add(1) => run + 1,
            (true, _) => 1,
            (false, _) => 0,
        };
        prev = in_ramp.then_some(l);
        best = best.max(run);
    }
    best
}

/// The guest's playback, as the WAV backend wrote it: the ramp it recorded
/// from the capture file, unbroken.
pub fn check_output_wav(path: &Path) -> Saw {
    let parsed = std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|b| wav::parse(&b));
    let data = match parsed {
        Ok(d) if d.channels == CHANNELS && d.rate == RATE && d.format == SampleFormat::S16 => d,
        Ok(d) => {
            return Saw::failed(format!(
                "{}: {} ch {} Hz {:?}, not the capture's layout",
                path.display(),
                d.channels,
                d.rate,
                d.format
            ))
        }
        Err(e) => return Saw::failed(format!("no playback WAV {}: {e}", path.display())),
    };
    let ramp = longest_ramp(&data.data);
    let secs = |frames: usize| frames as f64 / f64::from(RATE);
    let total = data.data.len() / 4;
    let text = format!(
        "output0.wav: {:.2} s, of which {:.2} s is the host's capture ramp, sample-exact",
        secs(total),
        secs(ramp)
    );
    if ramp >= RAMP_NEEDED {
        Saw::ok(text)
    } else {
        Saw::failed(text)
    }
}

/// Writes the EEPROM's initial contents: the host's text, the rest blank.
pub fn write_eeprom(path: &Path, size: usize) -> Result<(), String> {
    let mut bytes = vec![0xff; size];
    if let Some(head) = bytes.get_mut(..EEPROM_TEXT.len()) {
        head.copy_from_slice(EEPROM_TEXT);
    }
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// The EEPROM's backing file after the run: the host's text still at the
/// start, and the guest's byte where it wrote it.
pub fn check_eeprom(path: &Path) -> Saw {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => return Saw::failed(format!("{}: {e}", path.display())),
    };
    let (at, want) = EEPROM_WRITE;
    let text_kept = bytes.starts_with(EEPROM_TEXT);
    match bytes.get(at) {
        Some(&b) if b == want && text_kept => Saw::ok(format!(
            "eeprom.bin: {:?} intact, {want:#04x} at {at:#04x} from the guest",
            String::from_utf8_lossy(EEPROM_TEXT)
        )),
        other => Saw::failed(format!(
            "eeprom.bin: text kept {text_kept}, byte {at:#04x} is {other:02x?}"
        )),
    }
}

/// The screendump the guest asked for: the console's text, lit pixels on
/// a mostly dark screen.
pub fn check_screendump(png: Option<&Path>) -> Saw {
    let Some(png) = png else {
        return Saw::failed("no screendump");
    };
    match Image::load(png) {
        Ok(image) => {
            let s = image.stats();
            let area = s.width as usize * s.height as usize;
            let text = format!(
                "screendump {}x{}: {} lit pixels (the console's text)",
                s.width, s.height, s.non_black
            );
            if s.non_black > 1000 && s.non_black < area / 2 {
                Saw::ok(text)
            } else {
                Saw::failed(text)
            }
        }
        Err(e) => Saw::failed(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn the_ramp_is_found_only_unbroken() {
        let bytes = |frames: &[[i16; 2]]| -> Vec<u8> {
            frames
                .iter()
                .flatten()
                .flat_map(|s| s.to_le_bytes())
                .collect()
        };
        let ramp: Vec<[i16; 2]> = (65_000..70_000).map(ramp_frame).collect();
        assert_eq!(longest_ramp(&bytes(&ramp)), 5000, "wraps at 65536");
        let mut broken = ramp.clone();
        broken[2000] = [0, 0];
        assert_eq!(longest_ramp(&bytes(&broken)), 2999);
        let mut swapped = ramp.clone();
        swapped.swap(100, 101);
        assert_eq!(longest_ramp(&bytes(&swapped)), 4898);
        assert_eq!(
            longest_ramp(&bytes(&[[0, 0]; 100])),
            0,
            "silence is no ramp"
        );
    }

    #[test]
    fn input_and_eeprom_files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let wav_path = dir.path().join("in.wav");
        write_input_wav(&wav_path).unwrap();
        let d = wav::parse(&std::fs::read(&wav_path).unwrap()).unwrap();
        assert_eq!((d.channels, d.rate, d.format), (2, RATE, SampleFormat::S16));
        assert_eq!(longest_ramp(&d.data), INPUT_FRAMES as usize);
        assert!(check_output_wav(&wav_path).ok);

        let ee = dir.path().join("eeprom.bin");
        write_eeprom(&ee, 256).unwrap();
        assert!(!check_eeprom(&ee).ok, "the guest has not written yet");
        let mut b = std::fs::read(&ee).unwrap();
        b[EEPROM_WRITE.0] = EEPROM_WRITE.1;
        std::fs::write(&ee, b).unwrap();
        assert!(check_eeprom(&ee).ok);
    }
}
