// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Simulated targets: chips that live in this process, for machines with no
//! I2C hardware, for demos and for CI.
//!
//! Each target sees the bus as a chip does: a message addressed to it (a
//! START or repeated START), its bytes, and the STOP that ends the group.
//! The chips keep their state (register pointer, memory) between requests
//! and across guest reconnections, like hardware that stays powered.

mod eeprom;
mod lm75;

pub use eeprom::{Eeprom, EepromModel};
pub use lm75::Lm75;

use super::{I2cBus, I2cMsg, TransferError};

/// A chip on the simulated bus.
pub trait SimTarget: Send {
    /// How many consecutive 7-bit addresses the chip answers (a 24C16 uses
    /// eight). `offset` in the calls below is the address minus the first.
    fn address_count(&self) -> u8 {
        1
    }

    /// The master writes `data` in one message (empty: an SMBus quick).
    ///
    /// # Errors
    /// A NACK, with why.
    fn write(&mut self, offset: u8, data: &[u8]) -> Result<(), String>;

    /// The master reads `buf.len()` bytes in one message.
    ///
    /// # Errors
    /// A NACK, with why.
    fn read(&mut self, offset: u8, buf: &mut [u8]) -> Result<(), String>;

    /// STOP: the group is over (a write cycle may commit now).
    ///
    /// # Errors
    /// The commit failed (e.g. the backing file could not be written).
    fn stop(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// A name for logs.
    fn name(&self) -> String;
}

/// The simulated part of one guest's bus.
pub struct SimBus {
    targets: Vec<(u8, Box<dyn SimTarget>)>,
    /// Index into `targets` of the chip at each 7-bit address.
    by_addr: [Option<usize>; 128],
    /// The chips a transfer addressed, in order; kept so that a transfer
    /// allocates nothing.
    touched: Vec<usize>,
}

impl Default for SimBus {
    fn default() -> Self {
        SimBus {
            targets: Vec::new(),
            by_addr: [None; 128],
            touched: Vec::new(),
        }
    }
}

impl std::fmt::Debug for SimBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .targets
            .iter()
            .map(|(a, t)| format!("{a:#04x}={}", t.name()))
            .collect();
        f.debug_struct("SimBus").field("targets", &names).finish()
    }
}

impl SimBus {
    /// An empty simulated bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// The addresses `target` would occupy at `base`.
    pub fn span(base: u8, target: &dyn SimTarget) -> Vec<u8> {
        (0..target.address_count())
            .filter_map(|i| base.checked_add(i))
            .collect()
    }

    /// Adds `target` at `base` (and the addresses after it that it also
    /// answers).
    ///
    /// # Errors
    /// The first address already taken or past 0x7f.
    pub fn add(&mut self, base: u8, target: Box<dyn SimTarget>) -> Result<Vec<u8>, u8> {
        let span = Self::span(base, target.as_ref());
        if span.len() != usize::from(target.address_count()) {
            return Err(base.saturating_add(target.address_count()));
        }
        if let Some(&taken) = span
            .iter()
            .find(|&&a| usize::from(a) >= self.by_addr.len() || self.target_at(a).is_some())
        {
            return Err(taken);
        }
        let index = self.targets.len();
        for &a in &span {
            if let Some(slot) = self.by_addr.get_mut(usize::from(a)) {
                *slot = Some(index);
            }
        }
        self.targets.push((base, target));
        Ok(span)
    }

    fn target_at(&self, addr: u8) -> Option<usize> {
        self.by_addr.get(usize::from(addr)).copied().flatten()
    }

    fn run(&mut self, msgs: &mut [I2cMsg]) -> Result<(), TransferError> {
        for (i, msg) in msgs.iter_mut().enumerate() {
            let Some(index) = self.target_at(msg.addr) else {
                return Err(TransferError::new(
                    i,
                    format!("no target at {:#04x}", msg.addr),
                ));
            };
            let Some((base, target)) = self.targets.get_mut(index) else {
                return Err(TransferError::new(i, "simulated bus is inconsistent"));
            };
            if !self.touched.contains(&index) {
                self.touched.push(index);
            }
            let offset = msg.addr - *base;
            let result = if msg.read {
                target.read(offset, &mut msg.buf)
            } else {
                target.write(offset, &msg.buf)
            };
            result.map_err(|e| {
                TransferError::new(i, format!("{} at {:#04x}: {e}", target.name(), msg.addr))
            })?;
        }
        Ok(())
    }
}

impl I2cBus for SimBus {
    fn transfer(&mut self, msgs: &mut [I2cMsg]) -> Result<(), TransferError> {
        self.touched.clear();
        let result = self.run(msgs);
        // The STOP ends the group for every chip in it, even after a NACK.
        let mut stop_error = None;
        for &index in &self.touched {
            if let Some((_, target)) = self.targets.get_mut(index) {
                if let Err(e) = target.stop() {
                    stop_error.get_or_insert(format!("{}: {e}", target.name()));
                }
            }
        }
        match (result, stop_error) {
            (Err(e), _) => Err(e),
            // The data went out but was not kept: the last write failed.
            (Ok(()), Some(e)) => Err(TransferError::new(msgs.len().saturating_sub(1), e)),
            (Ok(()), None) => Ok(()),
        }
    }

    fn describe(&self) -> String {
        "simulated bus".into()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn targets_share_the_bus_without_overlap() {
        let mut bus = SimBus::new();
        let span = bus
            .add(
                0x50,
                Box::new(Eeprom::new(EepromModel::from_size(1024).unwrap())),
            )
            .unwrap();
        assert_eq!(span, vec![0x50, 0x51, 0x52, 0x53]);
        assert_eq!(bus.add(0x52, Box::new(Lm75::new())), Err(0x52));
        assert_eq!(
            bus.add(
                0x7e,
                Box::new(Eeprom::new(EepromModel::from_size(1024).unwrap()))
            ),
            Err(0x80)
        );
        bus.add(0x48, Box::new(Lm75::new())).unwrap();
        let mut msgs = [
            I2cMsg::write(0x48, &[0]),
            I2cMsg::read(0x48, 2),
            I2cMsg::read(0x60, 1),
        ];
        let err = bus.transfer(&mut msgs).unwrap_err();
        assert_eq!(err.completed, 2);
        assert_eq!(msgs[1].buf, [0x19, 0x00]);
    }
}
