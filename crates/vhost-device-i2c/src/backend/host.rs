// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Host I2C adapters, `/dev/i2c-N`, through the `i2cdev` crate.
//!
//! An adapter that can do plain I2C (`I2C_FUNC_I2C`) gets each group as one
//! `I2C_RDWR`, so repeated STARTs and read lengths are exactly the guest's.
//! An SMBus-only adapter gets the one SMBus command whose bytes on the wire
//! are the group's ([`super::smbus::plan`]); a group with no such command
//! fails with an error status and a log line, and touches nothing.

use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use i2cdev::core::{I2CDevice, I2CMessage, I2CTransfer};
use i2cdev::linux::{LinuxI2CBus, LinuxI2CDevice, LinuxI2CError, LinuxI2CMessage};
use log::warn;

use super::smbus::{self, func, SmbusOp, SmbusReply};
use super::{I2cBus, I2cMsg, TransferError};
use crate::Error;

/// `I2C_RDWR` takes at most this many messages (`I2C_RDWR_IOCTL_MAX_MSGS`).
pub const RDWR_MAX_MSGS: usize = 42;

/// The operations a host adapter offers; [`LinuxAdapter`] is the real one,
/// unit tests substitute a mock.
pub trait HostAdapter: Send {
    /// `I2C_FUNC_*` bits.
    fn funcs(&self) -> u64;

    /// One `I2C_RDWR` with these messages. Returns how many completed: an
    /// adapter may stop early without an error (Linux's own virtio-i2c
    /// driver does).
    ///
    /// # Errors
    /// The kernel's error.
    fn rdwr(&mut self, msgs: &mut [I2cMsg]) -> std::io::Result<usize>;

    /// One SMBus command to `addr`.
    ///
    /// # Errors
    /// The kernel's error.
    fn smbus(&mut self, addr: u8, op: &SmbusOp) -> std::io::Result<SmbusReply>;

    /// A name for logs.
    fn describe(&self) -> String;
}

/// Which adapter `/dev/i2c-N` is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterId {
    /// N.
    pub number: u32,
    /// The adapter's name in sysfs, if it has one.
    pub name: Option<String>,
}

/// Lists the adapters the kernel knows, from `<sysfs>/bus/i2c/devices/i2c-N/name`.
pub fn list_adapters(sysfs: &Path) -> Vec<AdapterId> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(sysfs.join("bus/i2c/devices")) else {
        return found;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(number) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix("i2c-"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let name = fs::read_to_string(entry.path().join("name"))
            .ok()
            .map(|s| s.trim_end_matches('\n').to_owned());
        found.push(AdapterId { number, name });
    }
    found.sort_by_key(|a| a.number);
    found
}

/// Finds the adapter named `name` (exactly as sysfs spells it).
///
/// # Errors
/// When no adapter, or more than one, has that name.
pub fn find_adapter(sysfs: &Path, name: &str) -> Result<u32, String> {
    let adapters = list_adapters(sysfs);
    let matches: Vec<u32> = adapters
        .iter()
        .filter(|a| a.name.as_deref() == Some(name))
        .map(|a| a.number)
        .collect();
    match matches.as_slice() {
        [n] => Ok(*n),
        [] => {
            let known: Vec<String> = adapters
                .iter()
                .map(|a| format!("{} \"{}\"", a.number, a.name.as_deref().unwrap_or("?")))
                .collect();
            Err(if known.is_empty() {
                format!("no I2C adapter is named \"{name}\" (the host has none)")
            } else {
                format!(
                    "no I2C adapter is named \"{name}\" (there are: {})",
                    known.join(", ")
                )
            })
        }
        several => Err(format!(
            "several I2C adapters are named \"{name}\": {several:?}; use the number"
        )),
    }
}

fn io_err(e: LinuxI2CError) -> std::io::Error {
    std::io::Error::from(e)
}

/// `/dev/i2c-N` opened through `i2cdev`.
pub struct LinuxAdapter {
    path: PathBuf,
    number: u32,
    funcs: u64,
    bus: LinuxI2CBus,
    /// The same adapter, for SMBus commands (its slave address is switched
    /// per command).
    device: LinuxI2CDevice,
    current: Option<u8>,
}

impl std::fmt::Debug for LinuxAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinuxAdapter")
            .field("path", &self.path)
            .field("funcs", &format_args!("{:#x}", self.funcs))
            .finish_non_exhaustive()
    }
}

fn read_funcs(fd: &impl AsRawFd) -> std::io::Result<u64> {
    // i2c-dev's requests are plain numbers (linux/i2c-dev.h), not _IOC()
    // encodings with a size and direction, so 0x0705 is the same on every
    // architecture. The kernel writes an unsigned long, whose width
    // `c_ulong` follows on each target. The request's own type is c_ulong on
    // glibc, c_int on musl: `libc::Ioctl`.
    const I2C_FUNCS: libc::Ioctl = 0x0705;
    let mut funcs: libc::c_ulong = 0;
    // SAFETY: I2C_FUNCS writes one unsigned long through the pointer, which
    // points at `funcs` for the duration of the call; the fd is open.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), I2C_FUNCS, &raw mut funcs) };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // c_ulong is 32 bits on some targets.
    #[allow(clippy::useless_conversion)]
    Ok(u64::from(funcs))
}

impl LinuxAdapter {
    /// Opens `/dev/i2c-<number>` (under `dev_dir`) and checks that each of
    /// `addrs` is free: an address a host kernel driver has bound is refused,
    /// as taking it over would confuse that driver.
    ///
    /// # Errors
    /// [`Error::Adapter`] naming the adapter and what failed.
    pub fn open(dev_dir: &Path, number: u32, addrs: &[u8]) -> Result<Self, Error> {
        let path = dev_dir.join(format!("i2c-{number}"));
        let fail = |reason: String| Error::Adapter {
            adapter: path.display().to_string(),
            reason,
        };
        if !path.exists() {
            return Err(fail(
                "does not exist (is the adapter there, and i2c-dev loaded?)".into(),
            ));
        }
        let bus = LinuxI2CBus::new(&path).map_err(|e| fail(format!("cannot open: {e}")))?;
        let funcs = read_funcs(&bus).map_err(|e| fail(format!("I2C_FUNCS: {e}")))?;
        let first = addrs.first().copied().unwrap_or(0x03);
        let mut device = LinuxI2CDevice::new(&path, u16::from(first))
            .map_err(|e| fail(format!("address {first:#04x}: {e}")))?;
        for &addr in addrs {
            device
                .set_slave_address(u16::from(addr))
                .map_err(|e| match io_err(e) {
                    e if e.raw_os_error() == Some(libc::EBUSY) => {
                        fail(format!("address {addr:#04x} is in use by a host driver"))
                    }
                    e => fail(format!("address {addr:#04x}: {e}")),
                })?;
        }
        if funcs & func::I2C == 0 && funcs & smbus_any() == 0 {
            return Err(fail(format!(
                "supports neither I2C nor any SMBus command (functionality {funcs:#x})"
            )));
        }
        Ok(LinuxAdapter {
            path,
            number,
            funcs,
            bus,
            device,
            // The busy check above left the last address set.
            current: addrs.last().copied().or(Some(first)),
        })
    }

    /// N of `/dev/i2c-N`.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// Bounds how long the adapter's driver waits for one transfer
    /// (i2c-dev's `I2C_TIMEOUT`, in units of 10 ms, rounded up). A transfer
    /// runs on the guest's vring worker, under its device's lock and its
    /// adapter's lock: while it waits, that guest's queue and vhost-user
    /// control messages wait, and so do the other guests on the same
    /// adapter. The setting belongs to the adapter, so it outlives the
    /// daemon; Linux's own default for most adapters is one second.
    ///
    /// # Errors
    /// The ioctl's.
    pub fn set_timeout(&self, timeout: std::time::Duration) -> std::io::Result<()> {
        // linux/i2c-dev.h; a plain number, like I2C_FUNCS below.
        const I2C_TIMEOUT: libc::Ioctl = 0x0702;
        let ticks = timeout.as_millis().div_ceil(10).max(1);
        let ticks = libc::c_ulong::try_from(ticks).unwrap_or(libc::c_ulong::MAX);
        // SAFETY: I2C_TIMEOUT takes its argument by value; the fd is open.
        if unsafe { libc::ioctl(self.bus.as_raw_fd(), I2C_TIMEOUT, ticks) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

fn smbus_any() -> u64 {
    func::SMBUS_QUICK
        | func::SMBUS_READ_BYTE
        | func::SMBUS_WRITE_BYTE
        | func::SMBUS_READ_BYTE_DATA
        | func::SMBUS_WRITE_BYTE_DATA
        | func::SMBUS_READ_WORD_DATA
        | func::SMBUS_WRITE_WORD_DATA
        | func::SMBUS_PROC_CALL
        | func::SMBUS_READ_BLOCK_DATA
        | func::SMBUS_WRITE_BLOCK_DATA
        | func::SMBUS_READ_I2C_BLOCK
        | func::SMBUS_WRITE_I2C_BLOCK
        | func::SMBUS_BLOCK_PROC_CALL
}

impl HostAdapter for LinuxAdapter {
    fn funcs(&self) -> u64 {
        self.funcs
    }

    fn rdwr(&mut self, msgs: &mut [I2cMsg]) -> std::io::Result<usize> {
        let mut raw: Vec<LinuxI2CMessage<'_>> = msgs
            .iter_mut()
            .map(|m| {
                let addr = u16::from(m.addr);
                if m.read {
                    LinuxI2CMessage::read(&mut m.buf).with_address(addr)
                } else {
                    LinuxI2CMessage::write(&m.buf).with_address(addr)
                }
            })
            .collect();
        let done = self.bus.transfer(&mut raw).map_err(io_err)?;
        Ok(usize::try_from(done).unwrap_or(0))
    }

    fn smbus(&mut self, addr: u8, op: &SmbusOp) -> std::io::Result<SmbusReply> {
        if self.current != Some(addr) {
            self.device
                .set_slave_address(u16::from(addr))
                .map_err(io_err)?;
            self.current = Some(addr);
        }
        let d = &mut self.device;
        let reply = match op {
            SmbusOp::Quick { read } => d.smbus_write_quick(*read).map(|()| SmbusReply::None),
            SmbusOp::ReadByte => d.smbus_read_byte().map(SmbusReply::Byte),
            SmbusOp::WriteByte(v) => d.smbus_write_byte(*v).map(|()| SmbusReply::None),
            SmbusOp::ReadByteData(c) => d.smbus_read_byte_data(*c).map(SmbusReply::Byte),
            SmbusOp::WriteByteData(c, v) => {
                d.smbus_write_byte_data(*c, *v).map(|()| SmbusReply::None)
            }
            SmbusOp::ReadWordData(c) => d.smbus_read_word_data(*c).map(SmbusReply::Word),
            SmbusOp::WriteWordData(c, v) => {
                d.smbus_write_word_data(*c, *v).map(|()| SmbusReply::None)
            }
            SmbusOp::ProcessCall(c, v) => d.smbus_process_word(*c, *v).map(SmbusReply::Word),
            SmbusOp::ReadBlockData(c) => d.smbus_read_block_data(*c).map(SmbusReply::Block),
            SmbusOp::WriteBlockData(c, data) => d
                .smbus_write_block_data(*c, data)
                .map(|()| SmbusReply::None),
            SmbusOp::ReadI2cBlock(c, n) => {
                d.smbus_read_i2c_block_data(*c, *n).map(SmbusReply::Block)
            }
            SmbusOp::WriteI2cBlock(c, data) => d
                .smbus_write_i2c_block_data(*c, data)
                .map(|()| SmbusReply::None),
            SmbusOp::BlockProcessCall(c, data) => {
                d.smbus_process_block(*c, data).map(SmbusReply::Block)
            }
        };
        reply.map_err(io_err)
    }

    fn describe(&self) -> String {
        self.path.display().to_string()
    }
}

/// How an adapter bus runs groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `I2C_RDWR`.
    I2c,
    /// One SMBus command per group.
    Smbus,
}

/// An [`I2cBus`] over a host adapter.
#[derive(Debug)]
pub struct AdapterBus<A> {
    adapter: A,
    mode: Mode,
}

impl<A: HostAdapter> AdapterBus<A> {
    /// Drives `adapter` with plain I2C if it can, SMBus otherwise.
    pub fn new(adapter: A) -> Self {
        let mode = if adapter.funcs() & func::I2C != 0 {
            Mode::I2c
        } else {
            Mode::Smbus
        };
        AdapterBus { adapter, mode }
    }

    /// Drives `adapter` in `mode` whatever it reports (SMBus emulation on
    /// an I2C adapter is how the SMBus path is tested on one).
    pub fn with_mode(adapter: A, mode: Mode) -> Self {
        AdapterBus { adapter, mode }
    }

    /// The mode in use.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The adapter.
    pub fn adapter(&self) -> &A {
        &self.adapter
    }

    fn transfer_i2c(&mut self, msgs: &mut [I2cMsg]) -> Result<(), TransferError> {
        if msgs.len() > RDWR_MAX_MSGS {
            return Err(TransferError::new(
                0,
                format!(
                    "{}: a combined transfer of {} messages exceeds I2C_RDWR's {RDWR_MAX_MSGS}",
                    self.adapter.describe(),
                    msgs.len()
                ),
            ));
        }
        if let Some(m) = msgs.iter().find(|m| m.buf.len() > usize::from(u16::MAX)) {
            return Err(TransferError::new(
                0,
                format!(
                    "a message of {} bytes is too long for I2C_RDWR",
                    m.buf.len()
                ),
            ));
        }
        // On an error the kernel does not say which message failed: none
        // is trusted.
        let done = self.adapter.rdwr(msgs).map_err(|e| {
            TransferError::new(0, format!("{}: I2C_RDWR: {e}", self.adapter.describe()))
        })?;
        if done < msgs.len() {
            return Err(TransferError::new(
                done,
                format!(
                    "{}: I2C_RDWR completed {done} of {} messages",
                    self.adapter.describe(),
                    msgs.len()
                ),
            ));
        }
        Ok(())
    }

    fn transfer_smbus(&mut self, msgs: &mut [I2cMsg]) -> Result<(), TransferError> {
        let funcs = self.adapter.funcs();
        let (addr, op) = smbus::plan(msgs, funcs).map_err(|e| {
            TransferError::new(
                0,
                format!(
                    "{}: cannot emulate with SMBus: {e}",
                    self.adapter.describe()
                ),
            )
        })?;
        let reply = self.adapter.smbus(addr, &op).map_err(|e| {
            TransferError::new(
                0,
                format!(
                    "{}: SMBus {} at {addr:#04x}: {e}",
                    self.adapter.describe(),
                    op.name()
                ),
            )
        })?;
        // The write part has happened even if the reply is unusable.
        let writes = msgs.iter().take_while(|m| !m.read).count();
        smbus::fill(msgs, &op, reply).map_err(|e| TransferError::new(writes, e))
    }
}

impl<A: HostAdapter> I2cBus for AdapterBus<A> {
    fn may_block(&self) -> bool {
        true
    }

    fn transfer(&mut self, msgs: &mut [I2cMsg]) -> Result<(), TransferError> {
        let result = match self.mode {
            Mode::I2c => self.transfer_i2c(msgs),
            Mode::Smbus => self.transfer_smbus(msgs),
        };
        if let Err(e) = &result {
            warn!("{e}");
        }
        result
    }

    fn describe(&self) -> String {
        self.adapter.describe()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// A scripted adapter: records what it was asked, answers from a table.
    #[derive(Debug, Default)]
    pub(crate) struct MockAdapter {
        pub funcs: u64,
        pub rdwr_log: Vec<Vec<I2cMsg>>,
        pub smbus_log: Vec<(u8, SmbusOp)>,
        pub reply: Option<SmbusReply>,
        pub fail: bool,
        /// Messages an I2C_RDWR completes before stopping (all if None).
        pub stop_after: Option<usize>,
    }

    impl HostAdapter for MockAdapter {
        fn funcs(&self) -> u64 {
            self.funcs
        }
        fn rdwr(&mut self, msgs: &mut [I2cMsg]) -> std::io::Result<usize> {
            self.rdwr_log.push(msgs.to_vec());
            if self.fail {
                return Err(std::io::Error::from_raw_os_error(libc::ENXIO));
            }
            for m in msgs.iter_mut().filter(|m| m.read) {
                for (i, b) in m.buf.iter_mut().enumerate() {
                    *b = i as u8;
                }
            }
            Ok(self.stop_after.unwrap_or(msgs.len()).min(msgs.len()))
        }
        fn smbus(&mut self, addr: u8, op: &SmbusOp) -> std::io::Result<SmbusReply> {
            self.smbus_log.push((addr, op.clone()));
            if self.fail {
                return Err(std::io::Error::from_raw_os_error(libc::ENXIO));
            }
            Ok(self.reply.clone().unwrap_or(SmbusReply::None))
        }
        fn describe(&self) -> String {
            "mock".into()
        }
    }

    fn smbus_adapter(reply: Option<SmbusReply>) -> AdapterBus<MockAdapter> {
        AdapterBus::new(MockAdapter {
            funcs: !func::I2C,
            reply,
            ..Default::default()
        })
    }

    #[test]
    fn i2c_adapters_get_one_rdwr_per_group() {
        let mut bus = AdapterBus::new(MockAdapter {
            funcs: func::I2C,
            ..Default::default()
        });
        assert_eq!(bus.mode(), Mode::I2c);
        let mut msgs = vec![I2cMsg::write(0x50, &[0, 0]), I2cMsg::read(0x50, 3)];
        bus.transfer(&mut msgs).unwrap();
        assert_eq!(msgs[1].buf, [0, 1, 2]);
        assert_eq!(bus.adapter().rdwr_log.len(), 1);
        assert!(bus.adapter().smbus_log.is_empty());
    }

    #[test]
    fn a_short_rdwr_counts_what_completed() {
        let mut bus = AdapterBus::new(MockAdapter {
            funcs: func::I2C,
            stop_after: Some(1),
            ..Default::default()
        });
        let mut msgs = [I2cMsg::write(0x50, &[0]), I2cMsg::read(0x51, 1)];
        let err = bus.transfer(&mut msgs).unwrap_err();
        assert_eq!(err.completed, 1);
        assert!(err.reason.contains("1 of 2"), "{err}");
    }

    #[test]
    fn rdwr_limits_and_errors() {
        let mut bus = AdapterBus::new(MockAdapter {
            funcs: func::I2C,
            fail: true,
            ..Default::default()
        });
        let err = bus.transfer(&mut [I2cMsg::read(0x50, 1)]).unwrap_err();
        assert_eq!(err.completed, 0);
        let mut many = vec![I2cMsg::read(0x50, 1); RDWR_MAX_MSGS + 1];
        let err = bus.transfer(&mut many).unwrap_err();
        assert!(err.reason.contains("42"), "{err}");
        let err = bus.transfer(&mut [I2cMsg::read(0x50, 70_000)]).unwrap_err();
        assert!(err.reason.contains("too long"), "{err}");
        // Only the failing one reached the adapter.
        assert_eq!(bus.adapter().rdwr_log.len(), 1);
    }

    #[test]
    fn smbus_adapters_run_the_mapped_command() {
        let mut bus = smbus_adapter(Some(SmbusReply::Word(0xbeef)));
        assert_eq!(bus.mode(), Mode::Smbus);
        let mut msgs = vec![I2cMsg::write(0x48, &[0]), I2cMsg::read(0x48, 2)];
        bus.transfer(&mut msgs).unwrap();
        assert_eq!(msgs[1].buf, [0xef, 0xbe]);
        assert_eq!(
            bus.adapter().smbus_log,
            vec![(0x48, SmbusOp::ReadWordData(0))]
        );
        assert!(bus.adapter().rdwr_log.is_empty());
    }

    #[test]
    fn smbus_every_command_reaches_the_adapter() {
        let cases: Vec<(Vec<I2cMsg>, SmbusOp, SmbusReply)> = vec![
            (
                vec![I2cMsg::write(0x50, &[])],
                SmbusOp::Quick { read: false },
                SmbusReply::None,
            ),
            (
                vec![I2cMsg::read(0x50, 0)],
                SmbusOp::Quick { read: true },
                SmbusReply::None,
            ),
            (
                vec![I2cMsg::read(0x50, 1)],
                SmbusOp::ReadByte,
                SmbusReply::Byte(5),
            ),
            (
                vec![I2cMsg::write(0x50, &[4])],
                SmbusOp::WriteByte(4),
                SmbusReply::None,
            ),
            (
                vec![I2cMsg::write(0x50, &[4]), I2cMsg::read(0x50, 1)],
                SmbusOp::ReadByteData(4),
                SmbusReply::Byte(5),
            ),
            (
                vec![I2cMsg::write(0x50, &[4, 5])],
                SmbusOp::WriteByteData(4, 5),
                SmbusReply::None,
            ),
            (
                vec![I2cMsg::write(0x50, &[4, 5, 6])],
                SmbusOp::WriteWordData(4, 0x0605),
                SmbusReply::None,
            ),
            (
                vec![I2cMsg::write(0x50, &[4, 5, 6]), I2cMsg::read(0x50, 2)],
                SmbusOp::ProcessCall(4, 0x0605),
                SmbusReply::Word(7),
            ),
            (
                vec![I2cMsg::write(0x50, &[4, 1, 2, 3])],
                SmbusOp::WriteI2cBlock(4, vec![1, 2, 3]),
                SmbusReply::None,
            ),
            (
                vec![I2cMsg::write(0x50, &[4]), I2cMsg::read(0x50, 4)],
                SmbusOp::ReadI2cBlock(4, 4),
                SmbusReply::Block(vec![1, 2, 3, 4]),
            ),
            (
                vec![I2cMsg::write(0x50, &[4]), I2cMsg::read(0x50, 33)],
                SmbusOp::ReadBlockData(4),
                SmbusReply::Block(vec![9; 32]),
            ),
            (
                vec![I2cMsg::write(0x50, &[4, 2, 1, 2]), I2cMsg::read(0x50, 3)],
                SmbusOp::BlockProcessCall(4, vec![1, 2]),
                SmbusReply::Block(vec![8, 9]),
            ),
        ];
        for (mut msgs, op, reply) in cases {
            let mut bus = smbus_adapter(Some(reply));
            bus.transfer(&mut msgs).unwrap();
            assert_eq!(bus.adapter().smbus_log, vec![(0x50, op)]);
        }
    }

    #[test]
    fn smbus_block_write_when_only_block_data_is_there() {
        let mut bus = AdapterBus::new(MockAdapter {
            funcs: func::SMBUS_WRITE_BLOCK_DATA,
            ..Default::default()
        });
        bus.transfer(&mut [I2cMsg::write(0x50, &[4, 2, 7, 8])])
            .unwrap();
        assert_eq!(
            bus.adapter().smbus_log,
            vec![(0x50, SmbusOp::WriteBlockData(4, vec![7, 8]))]
        );
    }

    #[test]
    fn smbus_unmappable_groups_touch_nothing() {
        let mut bus = smbus_adapter(None);
        let err = bus
            .transfer(&mut [I2cMsg::write(0x50, &[1]), I2cMsg::write(0x50, &[2])])
            .unwrap_err();
        assert_eq!(err.completed, 0);
        assert!(err.reason.contains("SMBus"), "{err}");
        assert!(bus.adapter().smbus_log.is_empty());
    }

    #[test]
    fn smbus_errors_and_short_replies() {
        let mut bus = AdapterBus::new(MockAdapter {
            funcs: !func::I2C,
            fail: true,
            ..Default::default()
        });
        let err = bus.transfer(&mut [I2cMsg::read(0x50, 1)]).unwrap_err();
        assert_eq!(err.completed, 0);
        let mut bus = smbus_adapter(Some(SmbusReply::Block(vec![1])));
        let mut msgs = [I2cMsg::write(0x50, &[0]), I2cMsg::read(0x50, 4)];
        let err = bus.transfer(&mut msgs).unwrap_err();
        // The register write went out; the read did not deliver.
        assert_eq!(err.completed, 1);
    }

    #[test]
    fn smbus_forced_on_an_i2c_adapter() {
        let mut bus = AdapterBus::with_mode(
            MockAdapter {
                funcs: !0,
                reply: Some(SmbusReply::Byte(3)),
                ..Default::default()
            },
            Mode::Smbus,
        );
        let mut msgs = [I2cMsg::read(0x50, 1)];
        bus.transfer(&mut msgs).unwrap();
        assert_eq!(msgs[0].buf, [3]);
        assert!(bus.adapter().rdwr_log.is_empty());
    }

    #[test]
    fn adapters_are_found_by_name_in_sysfs() {
        let root = tempfile::tempdir().unwrap();
        for (n, name) in [
            (0, "SMBus stub driver"),
            (3, "i2c_virtio at virtio bus 0"),
            (4, "twin"),
            (5, "twin"),
        ] {
            let dir = root.path().join(format!("bus/i2c/devices/i2c-{n}"));
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("name"), format!("{name}\n")).unwrap();
        }
        fs::create_dir_all(root.path().join("bus/i2c/devices/0-0050")).unwrap();
        assert_eq!(list_adapters(root.path()).len(), 4);
        assert_eq!(find_adapter(root.path(), "SMBus stub driver"), Ok(0));
        assert_eq!(
            find_adapter(root.path(), "i2c_virtio at virtio bus 0"),
            Ok(3)
        );
        let err = find_adapter(root.path(), "nope").unwrap_err();
        assert!(err.contains("SMBus stub driver"), "{err}");
        assert!(find_adapter(root.path(), "twin")
            .unwrap_err()
            .contains("several"));
        let empty = tempfile::tempdir().unwrap();
        assert!(find_adapter(empty.path(), "x")
            .unwrap_err()
            .contains("none"));
    }

    #[test]
    fn missing_adapters_are_refused() {
        let dev = tempfile::tempdir().unwrap();
        let err = LinuxAdapter::open(dev.path(), 7, &[0x50]).unwrap_err();
        assert!(err.to_string().contains("i2c-7"), "{err}");
        // A file that is not an i2c-dev node.
        fs::write(dev.path().join("i2c-8"), "").unwrap();
        let err = LinuxAdapter::open(dev.path(), 8, &[0x50]).unwrap_err();
        assert!(err.to_string().contains("I2C_FUNCS"), "{err}");
    }
}
