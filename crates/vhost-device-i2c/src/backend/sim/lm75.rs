// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! An LM75 temperature sensor, as Linux's `lm75` driver knows it.
//!
//! A pointer register picks one of four registers: temperature (0x00, read
//! only), configuration (0x01, one byte), hysteresis (0x02) and
//! overtemperature shutdown (0x03). The three temperature registers are
//! 16 bits, most significant byte first, in units of 1/256 °C with the
//! LM75's 9-bit resolution (0.5 °C). Reading past a register's width
//! repeats it, and the pointer stays where it was last written.

use super::SimTarget;

const REG_TEMP: usize = 0;
const REG_CONF: usize = 1;

/// A simulated LM75.
#[derive(Debug, Clone)]
pub struct Lm75 {
    pointer: usize,
    config: u8,
    /// temp, (config unused), thyst, tos, as register values.
    regs: [u16; 4],
}

impl Default for Lm75 {
    fn default() -> Self {
        Self::new()
    }
}

/// The register value for `celsius`, rounded to the chip's 0.5 °C.
pub fn to_reg(celsius: f64) -> u16 {
    let halves = (celsius.clamp(-55.0, 125.0) * 2.0).round();
    // Clamped to -110..=250, which fits; the shift puts it in bits 15..7.
    let halves = halves as i16;
    (halves << 7) as u16
}

impl Lm75 {
    /// A sensor reading 25 °C, with the power-on limits (75 °C hysteresis,
    /// 80 °C shutdown).
    pub fn new() -> Self {
        Self::with_temperature(25.0)
    }

    /// A sensor reading `celsius`.
    pub fn with_temperature(celsius: f64) -> Self {
        Lm75 {
            pointer: REG_TEMP,
            config: 0,
            regs: [to_reg(celsius), 0, to_reg(75.0), to_reg(80.0)],
        }
    }

    /// Sets the measured temperature.
    pub fn set_temperature(&mut self, celsius: f64) {
        if let Some(r) = self.regs.get_mut(REG_TEMP) {
            *r = to_reg(celsius);
        }
    }

    /// The configuration register.
    pub fn config(&self) -> u8 {
        self.config
    }
}

impl SimTarget for Lm75 {
    fn write(&mut self, _offset: u8, data: &[u8]) -> Result<(), String> {
        let Some((&pointer, payload)) = data.split_first() else {
            return Ok(());
        };
        // Only the two low pointer bits exist.
        self.pointer = usize::from(pointer & 0x03);
        match (self.pointer, payload) {
            (_, []) => {}
            (REG_TEMP, _) => {} // read only: the data is ignored
            (REG_CONF, [c, ..]) => self.config = *c,
            (reg, [msb]) => {
                if let Some(r) = self.regs.get_mut(reg) {
                    *r = (u16::from(*msb) << 8) | (*r & 0x00ff);
                }
            }
            (reg, [msb, lsb, ..]) => {
                if let Some(r) = self.regs.get_mut(reg) {
                    // The low 7 bits do not exist in a 9-bit register.
                    *r = u16::from_be_bytes([*msb, *lsb]) & 0xff80;
                }
            }
        }
        Ok(())
    }

    fn read(&mut self, _offset: u8, buf: &mut [u8]) -> Result<(), String> {
        if self.pointer == REG_CONF {
            buf.fill(self.config);
            return Ok(());
        }
        let value = self
            .regs
            .get(self.pointer)
            .copied()
            .unwrap_or(0)
            .to_be_bytes();
        for (byte, src) in buf.iter_mut().zip(value.iter().cycle()) {
            *byte = *src;
        }
        Ok(())
    }

    fn name(&self) -> String {
        "lm75".into()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn read(c: &mut Lm75, reg: u8, len: usize) -> Vec<u8> {
        c.write(0, &[reg]).unwrap();
        let mut buf = vec![0; len];
        c.read(0, &mut buf).unwrap();
        buf
    }

    #[test]
    fn registers_read_as_the_driver_expects() {
        let mut c = Lm75::with_temperature(25.5);
        assert_eq!(read(&mut c, 0, 2), [0x19, 0x80]);
        assert_eq!(read(&mut c, 2, 2), [0x4b, 0x00]);
        assert_eq!(read(&mut c, 3, 2), [0x50, 0x00]);
        assert_eq!(read(&mut c, 1, 1), [0x00]);
        c.set_temperature(-10.0);
        assert_eq!(read(&mut c, 0, 2), [0xf6, 0x00]);
        // Past the width the register repeats.
        assert_eq!(read(&mut c, 0, 4), [0xf6, 0x00, 0xf6, 0x00]);
    }

    #[test]
    fn the_pointer_persists() {
        let mut c = Lm75::new();
        c.write(0, &[3]).unwrap();
        let mut buf = [0; 2];
        c.read(0, &mut buf).unwrap();
        c.read(0, &mut buf).unwrap();
        assert_eq!(buf, [0x50, 0x00]);
    }

    #[test]
    fn writable_registers() {
        let mut c = Lm75::new();
        c.write(0, &[1, 0x18]).unwrap();
        assert_eq!(c.config(), 0x18);
        assert_eq!(read(&mut c, 1, 2), [0x18, 0x18]);
        c.write(0, &[2, 0x3c, 0xff]).unwrap();
        assert_eq!(read(&mut c, 2, 2), [0x3c, 0x80]);
        c.write(0, &[3, 0x20]).unwrap();
        assert_eq!(read(&mut c, 3, 2), [0x20, 0x00]);
        // Temperature is read only; high pointer bits are ignored.
        c.write(0, &[0xfc, 1, 2]).unwrap();
        assert_eq!(read(&mut c, 0, 2), [0x19, 0x00]);
        c.write(0, &[]).unwrap();
    }

    #[test]
    fn conversion_clamps_and_rounds() {
        assert_eq!(to_reg(0.0), 0);
        assert_eq!(to_reg(0.5), 0x0080);
        assert_eq!(to_reg(125.0), 0x7d00);
        assert_eq!(to_reg(500.0), 0x7d00);
        assert_eq!(to_reg(-55.0), 0xc900);
        assert_eq!(to_reg(0.26), 0x0080);
    }
}
