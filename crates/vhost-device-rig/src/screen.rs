// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Decoding and checking screendumps (PNG files written by QEMU's QMP
//! `screendump`).

use std::collections::HashSet;
use std::path::Path;

use crate::Error;

/// A decoded image as 8-bit RGB pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height` RGB triples, row by row.
    pub rgb: Vec<[u8; 3]>,
}

/// Summary numbers of an image, for quick assertions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageStats {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Pixels that are not black.
    pub non_black: usize,
    /// Number of distinct colours (capped at 4096).
    pub distinct_colors: usize,
}

impl ImageStats {
    /// Whether any pixel is not black.
    pub fn is_blank(&self) -> bool {
        self.non_black == 0
    }
}

impl Image {
    /// Decodes a PNG file.
    ///
    /// # Errors
    /// When the file cannot be read or is not a PNG the rig understands.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::Image(format!("cannot read {}: {e}", path.display())))?;
        Self::decode(&bytes).map_err(|e| Error::Image(format!("{}: {e}", path.display())))
    }

    /// Decodes PNG bytes (8-bit grey, grey+alpha, RGB, RGBA or palette).
    ///
    /// # Errors
    /// A message when the data is not such a PNG.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
        let size = reader
            .output_buffer_size()
            .ok_or_else(|| "image too large".to_owned())?;
        let mut buf = vec![0; size];
        let info = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
        let channels = match info.color_type {
            png::ColorType::Grayscale => 1,
            png::ColorType::GrayscaleAlpha => 2,
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            png::ColorType::Indexed => return Err("palette not expanded".to_owned()),
        };
        if info.bit_depth != png::BitDepth::Eight {
            return Err(format!("unsupported bit depth {:?}", info.bit_depth));
        }
        let line = info.line_size;
        let width = usize::try_from(info.width).map_err(|e| e.to_string())?;
        let mut rgb = Vec::with_capacity(width * info.height as usize);
        for row in buf.chunks(line).take(info.height as usize) {
            for px in row.chunks_exact(channels).take(width) {
                rgb.push(match *px {
                    [g] | [g, _] => [g, g, g],
                    [r, g, b] | [r, g, b, _] => [r, g, b],
                    _ => return Err("bad pixel".to_owned()),
                });
            }
        }
        if rgb.len() != width * info.height as usize {
            return Err("truncated image data".to_owned());
        }
        Ok(Self {
            width: info.width,
            height: info.height,
            rgb,
        })
    }

    /// The pixel at (`x`, `y`), if inside the image.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = usize::try_from(u64::from(y) * u64::from(self.width) + u64::from(x)).ok()?;
        self.rgb.get(i).copied()
    }

    /// Summary numbers.
    pub fn stats(&self) -> ImageStats {
        let mut colors = HashSet::new();
        let mut non_black = 0;
        for px in &self.rgb {
            if *px != [0, 0, 0] {
                non_black += 1;
            }
            if colors.len() < 4096 {
                colors.insert(*px);
            }
        }
        ImageStats {
            width: self.width,
            height: self.height,
            non_black,
            distinct_colors: colors.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn encode(w: u32, h: u32, color: png::ColorType, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, w, h);
            enc.set_color(color);
            enc.set_depth(png::BitDepth::Eight);
            let mut writer = enc.write_header().unwrap();
            writer.write_image_data(data).unwrap();
        }
        out
    }

    #[test]
    fn blank_image_is_blank() {
        let img = Image::decode(&encode(4, 2, png::ColorType::Rgb, &[0; 24])).unwrap();
        let s = img.stats();
        assert!(s.is_blank());
        assert_eq!((s.width, s.height, s.distinct_colors), (4, 2, 1));
    }

    #[test]
    fn non_blank_pixels_are_counted() {
        let mut data = vec![0u8; 4 * 3 * 4];
        data[5 * 4..5 * 4 + 4].copy_from_slice(&[255, 0, 0, 255]);
        data[7 * 4..7 * 4 + 4].copy_from_slice(&[0, 0, 1, 255]);
        let img = Image::decode(&encode(4, 3, png::ColorType::Rgba, &data)).unwrap();
        let s = img.stats();
        assert_eq!(s.non_black, 2);
        assert_eq!(s.distinct_colors, 3);
        assert_eq!(img.pixel(1, 1), Some([255, 0, 0]));
        assert_eq!(img.pixel(3, 1), Some([0, 0, 1]));
        assert_eq!(img.pixel(4, 0), None);
    }

    #[test]
    fn grey_images_decode() {
        let img = Image::decode(&encode(2, 1, png::ColorType::Grayscale, &[0, 200])).unwrap();
        assert_eq!(img.pixel(1, 0), Some([200, 200, 200]));
    }

    #[test]
    fn garbage_is_an_error() {
        Image::decode(b"not a png").unwrap_err();
        let dir = tempfile::tempdir().unwrap();
        Image::load(&dir.path().join("missing.png")).unwrap_err();
    }
}
