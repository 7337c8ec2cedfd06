// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A 24C-series serial EEPROM.
//!
//! Behaves as the chips do, and as Linux's `at24` driver expects them to:
//! - up to 2 KiB (24C01…24C16) one address byte selects the byte within a
//!   256-byte block and the low bits of the I2C address select the block, so
//!   a 24C04 answers two addresses, a 24C16 eight;
//! - from 4 KiB (24C32…24C512) two address bytes, high byte first;
//! - a write sets the address pointer and then stores bytes within one
//!   page, wrapping at the page end;
//! - a read starts at the pointer and rolls over at the end of the memory;
//! - the pointer survives between requests, so a "current address read"
//!   continues where the last access ended.
//!
//! A blank chip reads 0xff. With a backing file, contents are loaded at
//! start and written back at the STOP that ends each write.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::SimTarget;

/// The geometry of one 24C part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EepromModel {
    /// Bytes of memory.
    pub size: usize,
    /// Address bytes in a write (1 or 2).
    pub addr_bytes: u8,
    /// Bytes per write page.
    pub page: usize,
}

impl EepromModel {
    /// Sizes the family comes in, smallest first.
    pub const SIZES: [usize; 10] = [128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536];

    /// The part with `size` bytes (128 = 24C01 … 65536 = 24C512).
    pub fn from_size(size: usize) -> Option<Self> {
        let (addr_bytes, page) = match size {
            128 | 256 => (1, 8),
            512 | 1024 | 2048 => (1, 16),
            4096 | 8192 => (2, 32),
            16384 | 32768 => (2, 64),
            65536 => (2, 128),
            _ => return None,
        };
        Some(EepromModel {
            size,
            addr_bytes,
            page,
        })
    }

    /// The Linux `at24` device name of this part ("24c02", "24c512").
    pub fn at24_name(&self) -> String {
        format!("24c{:02}", self.size * 8 / 1024)
    }

    /// How many I2C addresses the part answers.
    pub fn address_count(&self) -> u8 {
        if self.addr_bytes == 1 {
            u8::try_from(self.size.div_ceil(256)).unwrap_or(1)
        } else {
            1
        }
    }
}

/// A 24C EEPROM, optionally backed by a file.
pub struct Eeprom {
    model: EepromModel,
    mem: Vec<u8>,
    pointer: usize,
    file: Option<(PathBuf, File)>,
    dirty: Option<(usize, usize)>,
}

impl std::fmt::Debug for Eeprom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Eeprom")
            .field("model", &self.model)
            .field("pointer", &self.pointer)
            .field("file", &self.file.as_ref().map(|(p, _)| p))
            .finish_non_exhaustive()
    }
}

impl Eeprom {
    /// A blank chip (all 0xff) kept in memory.
    pub fn new(model: EepromModel) -> Self {
        Eeprom {
            model,
            mem: vec![0xff; model.size],
            pointer: 0,
            file: None,
            dirty: None,
        }
    }

    /// A chip whose contents live in `path`. A missing file is created
    /// blank; a shorter one is extended with 0xff; a longer one is refused.
    ///
    /// # Errors
    /// Why the file cannot serve as the chip's memory.
    pub fn with_file(model: EepromModel, path: &Path) -> Result<Self, String> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let mut mem = Vec::new();
        file.read_to_end(&mut mem)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if mem.len() > model.size {
            return Err(format!(
                "{} has {} bytes, more than the {}-byte EEPROM",
                path.display(),
                mem.len(),
                model.size
            ));
        }
        let old_len = mem.len();
        mem.resize(model.size, 0xff);
        let mut chip = Eeprom {
            model,
            mem,
            pointer: 0,
            file: Some((path.to_owned(), file)),
            dirty: None,
        };
        if old_len < model.size {
            chip.dirty = Some((old_len, model.size));
            chip.flush()?;
        }
        Ok(chip)
    }

    /// The memory contents.
    pub fn contents(&self) -> &[u8] {
        &self.mem
    }

    /// The address pointer.
    pub fn pointer(&self) -> usize {
        self.pointer
    }

    fn flush(&mut self) -> Result<(), String> {
        let Some((start, end)) = self.dirty.take() else {
            return Ok(());
        };
        let Some((path, file)) = &mut self.file else {
            return Ok(());
        };
        let data = self.mem.get(start..end).unwrap_or_default();
        file.seek(SeekFrom::Start(start as u64))
            .and_then(|_| file.write_all(data))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    fn mark(&mut self, at: usize) {
        self.dirty = Some(match self.dirty {
            Some((s, e)) => (s.min(at), e.max(at + 1)),
            None => (at, at + 1),
        });
    }
}

impl SimTarget for Eeprom {
    fn address_count(&self) -> u8 {
        self.model.address_count()
    }

    fn write(&mut self, offset: u8, data: &[u8]) -> Result<(), String> {
        let mask = self.model.size - 1;
        let (addr, payload) = match (self.model.addr_bytes, data) {
            // An SMBus quick: the chip only acknowledges its address.
            (_, []) => return Ok(()),
            (1, [lo, rest @ ..]) => ((usize::from(offset) << 8) | usize::from(*lo), rest),
            (_, [hi]) => {
                // Only the high address byte arrived: the chip latched it.
                let addr = (usize::from(*hi) << 8) | (self.pointer & 0xff);
                self.pointer = addr & mask;
                return Ok(());
            }
            (_, [hi, lo, rest @ ..]) => ((usize::from(*hi) << 8) | usize::from(*lo), rest),
        };
        let addr = addr & mask;
        let page_start = addr - addr % self.model.page;
        let mut in_page = addr - page_start;
        for &byte in payload {
            let at = page_start + in_page;
            if let Some(cell) = self.mem.get_mut(at) {
                *cell = byte;
            }
            self.mark(at);
            in_page = (in_page + 1) % self.model.page;
        }
        self.pointer = page_start + in_page;
        Ok(())
    }

    fn read(&mut self, _offset: u8, buf: &mut [u8]) -> Result<(), String> {
        // The internal counter decides, whichever block address was used.
        for byte in buf.iter_mut() {
            *byte = self.mem.get(self.pointer).copied().unwrap_or(0xff);
            self.pointer = (self.pointer + 1) % self.model.size;
        }
        Ok(())
    }

    fn stop(&mut self) -> Result<(), String> {
        self.flush()
    }

    fn name(&self) -> String {
        format!("eeprom {}", self.model.at24_name())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn chip(size: usize) -> Eeprom {
        Eeprom::new(EepromModel::from_size(size).unwrap())
    }

    #[test]
    fn models_match_the_at24_family() {
        assert_eq!(EepromModel::from_size(256).unwrap().at24_name(), "24c02");
        assert_eq!(EepromModel::from_size(128).unwrap().at24_name(), "24c01");
        assert_eq!(EepromModel::from_size(2048).unwrap().at24_name(), "24c16");
        assert_eq!(EepromModel::from_size(65536).unwrap().at24_name(), "24c512");
        assert_eq!(EepromModel::from_size(512).unwrap().address_count(), 2);
        assert_eq!(EepromModel::from_size(2048).unwrap().address_count(), 8);
        assert_eq!(EepromModel::from_size(4096).unwrap().address_count(), 1);
        assert_eq!(EepromModel::from_size(4096).unwrap().addr_bytes, 2);
        assert!(EepromModel::from_size(300).is_none());
        for size in EepromModel::SIZES {
            assert!(EepromModel::from_size(size).is_some());
        }
    }

    #[test]
    fn random_and_current_address_reads() {
        let mut c = chip(256);
        c.write(0, &[0x10, 1, 2, 3]).unwrap();
        assert_eq!(c.pointer(), 0x13);
        c.write(0, &[0x10]).unwrap();
        let mut buf = [0; 2];
        c.read(0, &mut buf).unwrap();
        assert_eq!(buf, [1, 2]);
        // The pointer persists: the next read continues.
        c.read(0, &mut buf).unwrap();
        assert_eq!(buf, [3, 0xff]);
    }

    #[test]
    fn page_writes_wrap_within_the_page() {
        let mut c = chip(256);
        c.write(0, &[6, 0xa, 0xb, 0xc, 0xd]).unwrap();
        assert_eq!(
            &c.contents()[..8],
            &[0xc, 0xd, 0xff, 0xff, 0xff, 0xff, 0xa, 0xb]
        );
        assert_eq!(c.contents()[8], 0xff);
        assert_eq!(c.pointer(), 2);
    }

    #[test]
    fn reads_roll_over_the_whole_memory() {
        let mut c = chip(128);
        c.write(0, &[0x7f, 0x42]).unwrap();
        c.write(0, &[0x7f]).unwrap();
        let mut buf = [0; 2];
        c.read(0, &mut buf).unwrap();
        assert_eq!(buf, [0x42, 0xff]);
        assert_eq!(c.pointer(), 1);
    }

    #[test]
    fn blocks_by_address_for_small_parts() {
        let mut c = chip(2048);
        c.write(5, &[0x20, 0x55]).unwrap();
        assert_eq!(c.contents()[5 * 256 + 0x20], 0x55);
        c.write(5, &[0x20]).unwrap();
        let mut buf = [0; 1];
        c.read(5, &mut buf).unwrap();
        assert_eq!(buf, [0x55]);
    }

    #[test]
    fn two_address_bytes_for_large_parts() {
        let mut c = chip(65536);
        c.write(0, &[0xab, 0xcd, 1, 2]).unwrap();
        assert_eq!(&c.contents()[0xabcd..0xabcf], &[1, 2]);
        c.write(0, &[0xab, 0xcd]).unwrap();
        let mut buf = [0; 2];
        c.read(0, &mut buf).unwrap();
        assert_eq!(buf, [1, 2]);
        // One byte only: the high half of the pointer.
        c.write(0, &[0x01]).unwrap();
        assert_eq!(c.pointer(), 0x01cf);
        // Out-of-range high bits are ignored as by a smaller die.
        let mut small = chip(4096);
        small.write(0, &[0xff, 0xff, 9]).unwrap();
        assert_eq!(small.contents()[4095], 9);
    }

    #[test]
    fn quick_writes_change_nothing() {
        let mut c = chip(256);
        c.write(0, &[0x10]).unwrap();
        c.write(0, &[]).unwrap();
        assert_eq!(c.pointer(), 0x10);
    }

    #[test]
    fn file_backed_contents_persist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eeprom.bin");
        let model = EepromModel::from_size(256).unwrap();
        {
            let mut c = Eeprom::with_file(model, &path).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), vec![0xff; 256]);
            c.write(0, &[0x40, 7, 8]).unwrap();
            c.stop().unwrap();
        }
        let data = std::fs::read(&path).unwrap();
        assert_eq!(&data[0x40..0x42], &[7, 8]);
        let c = Eeprom::with_file(model, &path).unwrap();
        assert_eq!(&c.contents()[0x40..0x42], &[7, 8]);

        std::fs::write(&path, [1, 2, 3]).unwrap();
        let c = Eeprom::with_file(model, &path).unwrap();
        assert_eq!(&c.contents()[..4], &[1, 2, 3, 0xff]);
        assert_eq!(std::fs::read(&path).unwrap().len(), 256);

        std::fs::write(&path, vec![0; 257]).unwrap();
        let err = Eeprom::with_file(model, &path).unwrap_err();
        assert!(err.contains("257"), "{err}");
        let err = Eeprom::with_file(model, &dir.path().join("no/such/dir")).unwrap_err();
        assert!(err.contains("cannot open"), "{err}");
    }
}
