// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! SMBus emulation: turning a combined I2C transfer into the one SMBus
//! operation that puts the same bytes on the wire.
//!
//! An adapter without `I2C_FUNC_I2C` cannot run arbitrary message lists;
//! it runs SMBus commands. The guest's driver only speaks I2C, so the shape
//! of each group (directions and lengths, one address) picks the command.
//! Several commands are identical on the wire (a word write is a two-byte
//! I2C-block write); the most specific one the adapter supports wins.

use super::I2cMsg;

/// `I2C_FUNC_*` bits from `linux/i2c.h`, as `I2C_FUNCS` reports them.
#[allow(missing_docs)]
pub mod func {
    pub const I2C: u64 = 0x0000_0001;
    pub const SMBUS_BLOCK_PROC_CALL: u64 = 0x0000_8000;
    pub const SMBUS_QUICK: u64 = 0x0001_0000;
    pub const SMBUS_READ_BYTE: u64 = 0x0002_0000;
    pub const SMBUS_WRITE_BYTE: u64 = 0x0004_0000;
    pub const SMBUS_READ_BYTE_DATA: u64 = 0x0008_0000;
    pub const SMBUS_WRITE_BYTE_DATA: u64 = 0x0010_0000;
    pub const SMBUS_READ_WORD_DATA: u64 = 0x0020_0000;
    pub const SMBUS_WRITE_WORD_DATA: u64 = 0x0040_0000;
    pub const SMBUS_PROC_CALL: u64 = 0x0080_0000;
    pub const SMBUS_READ_BLOCK_DATA: u64 = 0x0100_0000;
    pub const SMBUS_WRITE_BLOCK_DATA: u64 = 0x0200_0000;
    pub const SMBUS_READ_I2C_BLOCK: u64 = 0x0400_0000;
    pub const SMBUS_WRITE_I2C_BLOCK: u64 = 0x0800_0000;
}

/// Most data bytes an SMBus block command carries.
pub const BLOCK_MAX: usize = 32;

/// One SMBus command, with the 7-bit address it goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmbusOp {
    /// Address only, the R/W bit carrying the information.
    Quick {
        /// R/W bit set.
        read: bool,
    },
    /// Receive byte.
    ReadByte,
    /// Send byte.
    WriteByte(u8),
    /// Read byte data from a command (register).
    ReadByteData(u8),
    /// Write byte data.
    WriteByteData(u8, u8),
    /// Read word data (low byte first on the wire).
    ReadWordData(u8),
    /// Write word data.
    WriteWordData(u8, u16),
    /// Process call: write a word, read a word.
    ProcessCall(u8, u16),
    /// Block read: the target sends a count, then that many bytes.
    ReadBlockData(u8),
    /// Block write: count then data.
    WriteBlockData(u8, Vec<u8>),
    /// I2C-block read of a fixed length.
    ReadI2cBlock(u8, u8),
    /// I2C-block write (no count byte).
    WriteI2cBlock(u8, Vec<u8>),
    /// Block process call: block write, then block read.
    BlockProcessCall(u8, Vec<u8>),
}

impl SmbusOp {
    /// The `I2C_FUNC_*` bit the adapter must have for this command.
    pub fn required_func(&self) -> u64 {
        match self {
            SmbusOp::Quick { .. } => func::SMBUS_QUICK,
            SmbusOp::ReadByte => func::SMBUS_READ_BYTE,
            SmbusOp::WriteByte(_) => func::SMBUS_WRITE_BYTE,
            SmbusOp::ReadByteData(_) => func::SMBUS_READ_BYTE_DATA,
            SmbusOp::WriteByteData(..) => func::SMBUS_WRITE_BYTE_DATA,
            SmbusOp::ReadWordData(_) => func::SMBUS_READ_WORD_DATA,
            SmbusOp::WriteWordData(..) => func::SMBUS_WRITE_WORD_DATA,
            SmbusOp::ProcessCall(..) => func::SMBUS_PROC_CALL,
            SmbusOp::ReadBlockData(_) => func::SMBUS_READ_BLOCK_DATA,
            SmbusOp::WriteBlockData(..) => func::SMBUS_WRITE_BLOCK_DATA,
            SmbusOp::ReadI2cBlock(..) => func::SMBUS_READ_I2C_BLOCK,
            SmbusOp::WriteI2cBlock(..) => func::SMBUS_WRITE_I2C_BLOCK,
            SmbusOp::BlockProcessCall(..) => func::SMBUS_BLOCK_PROC_CALL,
        }
    }

    /// A short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            SmbusOp::Quick { .. } => "quick",
            SmbusOp::ReadByte => "read byte",
            SmbusOp::WriteByte(_) => "write byte",
            SmbusOp::ReadByteData(_) => "read byte data",
            SmbusOp::WriteByteData(..) => "write byte data",
            SmbusOp::ReadWordData(_) => "read word data",
            SmbusOp::WriteWordData(..) => "write word data",
            SmbusOp::ProcessCall(..) => "process call",
            SmbusOp::ReadBlockData(_) => "block read",
            SmbusOp::WriteBlockData(..) => "block write",
            SmbusOp::ReadI2cBlock(..) => "I2C block read",
            SmbusOp::WriteI2cBlock(..) => "I2C block write",
            SmbusOp::BlockProcessCall(..) => "block process call",
        }
    }
}

/// What a read command returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmbusReply {
    /// A write command: nothing.
    None,
    /// A byte.
    Byte(u8),
    /// A word.
    Word(u16),
    /// Block data (without the count byte).
    Block(Vec<u8>),
}

fn pick(funcs: u64, candidates: Vec<SmbusOp>) -> Result<SmbusOp, String> {
    let names: Vec<&str> = candidates.iter().map(SmbusOp::name).collect();
    candidates
        .into_iter()
        .find(|op| funcs & op.required_func() != 0)
        .ok_or_else(|| format!("adapter supports none of: {}", names.join(", ")))
}

/// Chooses the SMBus command for the group `msgs` on an adapter with
/// functionality `funcs`.
///
/// # Errors
/// A message saying why the group has no SMBus equivalent.
pub fn plan(msgs: &[I2cMsg], funcs: u64) -> Result<(u8, SmbusOp), String> {
    let Some(first) = msgs.first() else {
        return Err("empty transfer".into());
    };
    let addr = first.addr;
    if msgs.iter().any(|m| m.addr != addr) {
        return Err("an SMBus command addresses one target, this group several".into());
    }
    let candidates = match msgs {
        [m] if !m.read => match m.buf.as_slice() {
            [] => vec![SmbusOp::Quick { read: false }],
            [c] => vec![SmbusOp::WriteByte(*c)],
            [c, d] => vec![
                SmbusOp::WriteByteData(*c, *d),
                SmbusOp::WriteI2cBlock(*c, vec![*d]),
            ],
            [c, lo, hi] => vec![
                SmbusOp::WriteWordData(*c, u16::from_le_bytes([*lo, *hi])),
                SmbusOp::WriteI2cBlock(*c, vec![*lo, *hi]),
            ],
            [c, data @ ..] if data.len() <= BLOCK_MAX => {
                let mut ops = vec![SmbusOp::WriteI2cBlock(*c, data.to_vec())];
                if let [count, rest @ ..] = data {
                    if usize::from(*count) == rest.len() {
                        ops.push(SmbusOp::WriteBlockData(*c, rest.to_vec()));
                    }
                }
                ops
            }
            _ => {
                return Err(format!(
                    "a write of {} bytes is too long for SMBus",
                    m.buf.len()
                ))
            }
        },
        [m] => match m.buf.len() {
            0 => vec![SmbusOp::Quick { read: true }],
            1 => vec![SmbusOp::ReadByte],
            n => return Err(format!("a plain read of {n} bytes has no SMBus equivalent")),
        },
        [w, r] if !w.read && r.read => match (w.buf.as_slice(), r.buf.len()) {
            ([c], 1) => vec![SmbusOp::ReadByteData(*c), SmbusOp::ReadI2cBlock(*c, 1)],
            ([c], 2) => vec![SmbusOp::ReadWordData(*c), SmbusOp::ReadI2cBlock(*c, 2)],
            ([c], n) if n <= BLOCK_MAX + 1 => {
                let mut ops = Vec::new();
                if n <= BLOCK_MAX {
                    // n fits in a u8 here.
                    ops.push(SmbusOp::ReadI2cBlock(*c, u8::try_from(n).unwrap_or(0)));
                }
                ops.push(SmbusOp::ReadBlockData(*c));
                ops
            }
            ([c, lo, hi], 2) => vec![SmbusOp::ProcessCall(*c, u16::from_le_bytes([*lo, *hi]))],
            ([c, count, data @ ..], n)
                if usize::from(*count) == data.len()
                    && data.len() <= BLOCK_MAX
                    && (1..=BLOCK_MAX + 1).contains(&n) =>
            {
                vec![SmbusOp::BlockProcessCall(*c, data.to_vec())]
            }
            (w, n) => {
                return Err(format!(
                    "a write of {} bytes then a read of {n} has no SMBus equivalent",
                    w.len()
                ))
            }
        },
        _ => {
            let shape: Vec<String> = msgs
                .iter()
                .map(|m| format!("{}{}", if m.read { 'R' } else { 'W' }, m.buf.len()))
                .collect();
            return Err(format!(
                "the group [{}] has no SMBus equivalent",
                shape.join(" ")
            ));
        }
    };
    pick(funcs, candidates).map(|op| (addr, op))
}

/// Puts the bytes of `reply` where the guest's read message expects them,
/// as they would have arrived on the wire.
///
/// # Errors
/// When the reply cannot fill the read (a block shorter than asked for by
/// an I2C-block read).
pub fn fill(msgs: &mut [I2cMsg], op: &SmbusOp, reply: SmbusReply) -> Result<(), String> {
    let Some(read) = msgs.iter_mut().rev().find(|m| m.read) else {
        return Ok(());
    };
    let wire: Vec<u8> = match (op, reply) {
        (_, SmbusReply::Byte(b)) => vec![b],
        (_, SmbusReply::Word(w)) => w.to_le_bytes().to_vec(),
        (SmbusOp::ReadBlockData(_) | SmbusOp::BlockProcessCall(..), SmbusReply::Block(data)) => {
            // The count byte comes first on the wire. Past the block the
            // target stops driving SDA, which reads as 0xff.
            let mut wire = Vec::with_capacity(read.buf.len().max(data.len() + 1));
            wire.push(u8::try_from(data.len()).unwrap_or(u8::MAX));
            wire.extend_from_slice(&data);
            wire.resize(wire.len().max(read.buf.len()), 0xff);
            wire
        }
        (_, SmbusReply::Block(data)) => {
            if data.len() < read.buf.len() {
                return Err(format!(
                    "{} returned {} bytes, {} wanted",
                    op.name(),
                    data.len(),
                    read.buf.len()
                ));
            }
            data
        }
        (_, SmbusReply::None) => {
            if read.buf.is_empty() {
                Vec::new()
            } else {
                return Err(format!("{} returned no data", op.name()));
            }
        }
    };
    let n = read.buf.len();
    read.buf.copy_from_slice(wire.get(..n).unwrap_or_default());
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const ALL: u64 = !func::I2C;

    fn w(data: &[u8]) -> I2cMsg {
        I2cMsg::write(0x50, data)
    }
    fn r(len: usize) -> I2cMsg {
        I2cMsg::read(0x50, len)
    }
    fn op(msgs: &[I2cMsg], funcs: u64) -> SmbusOp {
        plan(msgs, funcs).unwrap().1
    }

    #[test]
    fn each_shape_maps_to_its_command() {
        assert_eq!(op(&[w(&[])], ALL), SmbusOp::Quick { read: false });
        assert_eq!(op(&[r(0)], ALL), SmbusOp::Quick { read: true });
        assert_eq!(op(&[r(1)], ALL), SmbusOp::ReadByte);
        assert_eq!(op(&[w(&[7])], ALL), SmbusOp::WriteByte(7));
        assert_eq!(op(&[w(&[7, 8])], ALL), SmbusOp::WriteByteData(7, 8));
        assert_eq!(
            op(&[w(&[7, 0x34, 0x12])], ALL),
            SmbusOp::WriteWordData(7, 0x1234)
        );
        assert_eq!(
            op(&[w(&[7, 1, 2, 3, 4])], ALL),
            SmbusOp::WriteI2cBlock(7, vec![1, 2, 3, 4])
        );
        assert_eq!(op(&[w(&[7]), r(1)], ALL), SmbusOp::ReadByteData(7));
        assert_eq!(op(&[w(&[7]), r(2)], ALL), SmbusOp::ReadWordData(7));
        assert_eq!(op(&[w(&[7]), r(16)], ALL), SmbusOp::ReadI2cBlock(7, 16));
        assert_eq!(op(&[w(&[7]), r(33)], ALL), SmbusOp::ReadBlockData(7));
        assert_eq!(
            op(&[w(&[7, 0x34, 0x12]), r(2)], ALL),
            SmbusOp::ProcessCall(7, 0x1234)
        );
        assert_eq!(
            op(&[w(&[7, 3, 1, 2, 3]), r(4)], ALL),
            SmbusOp::BlockProcessCall(7, vec![1, 2, 3])
        );
    }

    #[test]
    fn block_commands_are_used_when_i2c_block_is_missing() {
        let no_i2c_block = ALL & !func::SMBUS_READ_I2C_BLOCK & !func::SMBUS_WRITE_I2C_BLOCK;
        assert_eq!(
            op(&[w(&[7, 3, 1, 2, 3])], no_i2c_block),
            SmbusOp::WriteBlockData(7, vec![1, 2, 3])
        );
        assert_eq!(
            op(&[w(&[7]), r(8)], no_i2c_block),
            SmbusOp::ReadBlockData(7)
        );
        // Without a matching count byte a block write is not the same bytes.
        plan(&[w(&[7, 9, 1, 2, 3])], no_i2c_block).unwrap_err();
    }

    #[test]
    fn wire_identical_fallbacks() {
        let only_i2c_block = func::SMBUS_READ_I2C_BLOCK | func::SMBUS_WRITE_I2C_BLOCK;
        assert_eq!(
            op(&[w(&[7, 8])], only_i2c_block),
            SmbusOp::WriteI2cBlock(7, vec![8])
        );
        assert_eq!(
            op(&[w(&[7, 1, 2])], only_i2c_block),
            SmbusOp::WriteI2cBlock(7, vec![1, 2])
        );
        assert_eq!(
            op(&[w(&[7]), r(1)], only_i2c_block),
            SmbusOp::ReadI2cBlock(7, 1)
        );
        assert_eq!(
            op(&[w(&[7]), r(2)], only_i2c_block),
            SmbusOp::ReadI2cBlock(7, 2)
        );
    }

    #[test]
    fn unsupported_and_unmappable_groups_are_refused() {
        let err = plan(&[w(&[])], func::SMBUS_READ_BYTE).unwrap_err();
        assert!(err.contains("quick"), "{err}");
        plan(&[r(2)], ALL).unwrap_err();
        plan(&[w(&[1]), w(&[2])], ALL).unwrap_err();
        plan(&[w(&[1]), r(1), r(1)], ALL).unwrap_err();
        plan(&[w(&[0; 34])], ALL).unwrap_err();
        plan(&[w(&[1]), r(40)], ALL).unwrap_err();
        plan(&[w(&[1, 2]), r(3)], ALL).unwrap_err();
        plan(&[], ALL).unwrap_err();
        let mixed = [w(&[1]), I2cMsg::read(0x51, 1)];
        assert!(plan(&mixed, ALL).unwrap_err().contains("several"));
    }

    #[test]
    fn replies_land_as_on_the_wire() {
        let mut msgs = [w(&[7]), r(2)];
        fill(
            &mut msgs,
            &SmbusOp::ReadWordData(7),
            SmbusReply::Word(0x1234),
        )
        .unwrap();
        assert_eq!(msgs[1].buf, [0x34, 0x12]);

        let mut msgs = [w(&[7]), r(6)];
        fill(
            &mut msgs,
            &SmbusOp::ReadBlockData(7),
            SmbusReply::Block(vec![1, 2, 3]),
        )
        .unwrap();
        assert_eq!(msgs[1].buf, [3, 1, 2, 3, 0xff, 0xff]);

        let mut msgs = [w(&[7]), r(2)];
        fill(
            &mut msgs,
            &SmbusOp::ReadBlockData(7),
            SmbusReply::Block(vec![1, 2, 3]),
        )
        .unwrap();
        assert_eq!(msgs[1].buf, [3, 1]);

        let mut msgs = [w(&[7]), r(4)];
        let err = fill(
            &mut msgs,
            &SmbusOp::ReadI2cBlock(7, 4),
            SmbusReply::Block(vec![1, 2]),
        );
        err.unwrap_err();

        let mut msgs = [r(1)];
        fill(&mut msgs, &SmbusOp::ReadByte, SmbusReply::Byte(9)).unwrap();
        assert_eq!(msgs[0].buf, [9]);

        let mut msgs = [w(&[1, 2])];
        fill(&mut msgs, &SmbusOp::WriteByteData(1, 2), SmbusReply::None).unwrap();
        let mut msgs = [r(0)];
        fill(&mut msgs, &SmbusOp::Quick { read: true }, SmbusReply::None).unwrap();
    }
}
