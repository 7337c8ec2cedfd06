// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A minimal writer of `newc` cpio archives, the format Linux unpacks as an
//! initramfs. The rig appends one such archive (the scenario: script, module
//! list, host binaries) to the provisioned base initramfs; the kernel unpacks
//! concatenated archives in order.

use std::io::{self, Write};

/// Builds a `newc` archive in memory.
#[derive(Debug, Default)]
pub struct CpioWriter {
    buf: Vec<u8>,
    ino: u32,
    dirs: Vec<String>,
}

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;

impl CpioWriter {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    fn header(&mut self, name: &str, mode: u32, size: usize) -> io::Result<()> {
        let size = u32::try_from(size)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file over 4 GiB"))?;
        let namesize = u32::try_from(name.len() + 1)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name too long"))?;
        self.ino += 1;
        // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor,
        // devminor, rdevmajor, rdevminor, namesize, check
        write!(
            self.buf,
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            self.ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, namesize, 0
        )?;
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        Ok(())
    }

    fn pad(&mut self) {
        while self.buf.len() % 4 != 0 {
            self.buf.push(0);
        }
    }

    /// Adds a directory and, first, any parent directories not yet added.
    ///
    /// # Errors
    /// Only on absurd sizes.
    pub fn dir(&mut self, path: &str) -> io::Result<()> {
        let path = path.trim_matches('/');
        if path.is_empty() {
            return Ok(());
        }
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent)?;
        }
        if self.dirs.iter().any(|d| d == path) {
            return Ok(());
        }
        self.dirs.push(path.to_owned());
        self.header(path, S_IFDIR | 0o755, 0)
    }

    /// Adds a regular file with the given permission bits, creating its parent
    /// directories.
    ///
    /// # Errors
    /// Only on absurd sizes.
    pub fn file(&mut self, path: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        let path = path.trim_start_matches('/');
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent)?;
        }
        self.header(path, S_IFREG | (mode & 0o7777), data.len())?;
        self.buf.extend_from_slice(data);
        self.pad();
        Ok(())
    }

    /// Ends the archive with the trailer and returns its bytes.
    ///
    /// # Errors
    /// Never in practice.
    pub fn finish(mut self) -> io::Result<Vec<u8>> {
        self.header("TRAILER!!!", 0, 0)?;
        Ok(self.buf)
    }
}

/// Writes `base` (a possibly compressed initramfs), zero padding to a 4-byte
/// boundary, then `extra`: Linux only recognises an uncompressed archive that
/// follows another at a 4-byte aligned offset, and skips the zeros.
///
/// # Errors
/// When writing to `out` fails.
pub fn concat_initrd(out: &mut impl Write, base: &[u8], extra: &[u8]) -> io::Result<()> {
    out.write_all(base)?;
    let pad = (4 - base.len() % 4) % 4;
    out.write_all(&vec![0u8; pad])?;
    out.write_all(extra)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// Parses a newc archive back into (name, mode, data) entries.
    fn parse(mut b: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut out = Vec::new();
        loop {
            assert_eq!(&b[..6], b"070701");
            let field = |i: usize| {
                u32::from_str_radix(std::str::from_utf8(&b[6 + i * 8..14 + i * 8]).unwrap(), 16)
                    .unwrap() as usize
            };
            let mode = field(1) as u32;
            let size = field(6);
            let namesize = field(11);
            let name = std::str::from_utf8(&b[110..110 + namesize - 1])
                .unwrap()
                .to_owned();
            let data_start = (110 + namesize).div_ceil(4) * 4;
            let data = b[data_start..data_start + size].to_vec();
            let next = (data_start + size).div_ceil(4) * 4;
            if name == "TRAILER!!!" {
                assert_eq!(next, b.len());
                return out;
            }
            out.push((name, mode, data));
            b = &b[next..];
        }
    }

    #[test]
    fn archive_round_trips() {
        let mut w = CpioWriter::new();
        w.file("/rig/script.sh", 0o755, b"echo hi\n").unwrap();
        w.file("rig/bin/x", 0o644, b"12345").unwrap();
        w.dir("/rig").unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let entries = parse(&bytes);
        let names: Vec<_> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["rig", "rig/script.sh", "rig/bin", "rig/bin/x"]);
        assert_eq!(entries[0].1, S_IFDIR | 0o755);
        assert_eq!(entries[1].1, S_IFREG | 0o755);
        assert_eq!(entries[1].2, b"echo hi\n");
        assert_eq!(entries[3].2, b"12345");
    }

    #[test]
    fn concatenation_aligns_the_second_archive() {
        for base_len in 0..8 {
            let base = vec![0x1f; base_len];
            let mut out = Vec::new();
            concat_initrd(&mut out, &base, b"070701").unwrap();
            let pos = out.len() - 6;
            assert_eq!(pos % 4, 0, "base of {base_len} bytes");
            assert!(out[base_len..pos].iter().all(|&b| b == 0));
        }
    }
}
