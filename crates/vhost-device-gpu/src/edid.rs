// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A minimal EDID 1.4 base block for our own display modes.
//!
//! Used when no frontend display is attached (headless, or before QEMU has
//! handed over its display socket), so the guest still gets a preferred
//! mode and a monitor name. With QEMU attached, its own EDID is passed on.

/// Largest width or height a detailed timing descriptor can carry.
pub const MAX_DIMENSION: u32 = 4095;

/// Horizontal and vertical blanking of the generated timing: reduced
/// blanking in the style of CVT-RB, enough for any driver to accept.
const H_FRONT: u32 = 48;
const H_SYNC: u32 = 32;
const H_BLANK: u32 = 160;
const V_FRONT: u32 = 3;
const V_SYNC: u32 = 6;
const V_BLANK: u32 = 30;
const REFRESH_HZ: u64 = 60;

/// Builds a 128-byte EDID whose preferred mode is `width`×`height` at 60 Hz.
/// Dimensions are clamped to what the format can express.
pub fn generate(width: u32, height: u32, serial: u32) -> [u8; 128] {
    let w = width.clamp(1, MAX_DIMENSION);
    let h = height.clamp(1, MAX_DIMENSION);
    let mut e = [0u8; 128];
    let mut put = |at: usize, bytes: &[u8]| {
        if let Some(dst) = e.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    };

    put(0, &[0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00]);
    // Manufacturer "VHD": three 5-bit letters, big-endian.
    let id: u16 = (22 << 10) | (8 << 5) | 4;
    put(8, &id.to_be_bytes());
    put(10, &0x1600u16.to_le_bytes());
    put(12, &serial.to_le_bytes());
    // Week 1 of 2026, EDID 1.4.
    put(16, &[1, 36, 1, 4]);
    // Digital input, 8 bits per colour.
    put(20, &[0xa0]);
    // Physical size in cm at 96 dpi.
    let (w_mm, h_mm) = (w * 254 / 960, h * 254 / 960);
    put(
        21,
        &[
            u8::try_from(w_mm.div_ceil(10)).unwrap_or(255),
            u8::try_from(h_mm.div_ceil(10)).unwrap_or(255),
        ],
    );
    // Gamma 2.2; sRGB default colour space, preferred timing is native.
    put(23, &[120, 0x06]);
    // sRGB chromaticity.
    put(
        25,
        &[0xee, 0x91, 0xa3, 0x54, 0x4c, 0x99, 0x26, 0x0f, 0x50, 0x54],
    );
    // No established timings; standard timings unused (0x01 0x01).
    put(38, &[0x01; 16]);

    // Detailed timing descriptor: the preferred mode.
    let total = u64::from(w + H_BLANK) * u64::from(h + V_BLANK) * REFRESH_HZ;
    let clock = u16::try_from(total / 10_000).unwrap_or(u16::MAX);
    let lo = |v: u32| (v & 0xff) as u8;
    let hi4 = |v: u32| ((v >> 8) & 0x0f) as u8;
    let dtd = [
        lo(u32::from(clock)),
        (clock >> 8) as u8,
        lo(w),
        lo(H_BLANK),
        (hi4(w) << 4) | hi4(H_BLANK),
        lo(h),
        lo(V_BLANK),
        (hi4(h) << 4) | hi4(V_BLANK),
        lo(H_FRONT),
        lo(H_SYNC),
        (((V_FRONT & 0xf) as u8) << 4) | (V_SYNC & 0xf) as u8,
        0,
        lo(w_mm),
        lo(h_mm),
        (hi4(w_mm) << 4) | hi4(h_mm),
        0,
        0,
        // Digital separate sync, both polarities positive.
        0x1e,
    ];
    put(54, &dtd);

    // Monitor name.
    let mut name = [0x20u8; 13];
    let text = b"vhost-gpu\n";
    if let Some(dst) = name.get_mut(..text.len()) {
        dst.copy_from_slice(text);
    }
    put(72, &[0, 0, 0, 0xfc, 0]);
    put(77, &name);
    // Range limits: 50-70 Hz vertical, 30-160 kHz horizontal, pixel clock
    // up to 660 MHz, no secondary timing formula.
    put(
        90,
        &[
            0, 0, 0, 0xfd, 0, 50, 70, 30, 160, 66, 0x00, 0x0a, 0x20, 0x20, 0x20, 0x20, 0x20, 0x20,
        ],
    );
    // Unused descriptor.
    put(108, &[0, 0, 0, 0x10, 0]);

    let sum = e.iter().take(127).fold(0u8, |acc, b| acc.wrapping_add(*b));
    if let Some(last) = e.last_mut() {
        *last = 0u8.wrapping_sub(sum);
    }
    e
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::assertions_on_result_states
)]
mod tests {
    use super::*;

    #[test]
    fn checksum_header_and_preferred_mode() {
        let e = generate(1024, 768, 0);
        assert_eq!(e.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        assert_eq!(&e[..8], &[0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0]);
        // Preferred timing decodes back to the mode.
        let w = u32::from(e[56]) | (u32::from(e[58] >> 4) << 8);
        let h = u32::from(e[59]) | (u32::from(e[61] >> 4) << 8);
        assert_eq!((w, h), (1024, 768));
        assert_ne!(u16::from_le_bytes([e[54], e[55]]), 0);
    }

    #[test]
    fn large_modes_are_clamped() {
        let e = generate(10_000, 2160, 1);
        let w = u32::from(e[56]) | (u32::from(e[58] >> 4) << 8);
        assert_eq!(w, MAX_DIMENSION);
        assert_eq!(e.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
    }
}
