// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The common chain parser, `Reader` and `Writer`, over arbitrary
//! descriptor tables and guest-memory layouts.
//!
//! Input: an 8-byte header that chooses the layout, then the bytes that
//! fill guest memory (descriptor tables, indirect tables and buffers alike).
//!
//! | byte | meaning |
//! |---|---|
//! | 0 | number of memory regions, 1 to 3 |
//! | 1 | gap between regions in pages, 0 to 3 (0: adjacent, so a buffer may span two) |
//! | 2 | region size in pages, 1 to 4 |
//! | 3 | queue size, 2^(b % 16), so up to 32 768 |
//! | 4, 5 | head index (le16; may be out of range) |
//! | 6 | descriptor table position, in 16-byte steps from the start of memory |
//! | 7 | how the reader and writer step through the chain |
//!
//! Checked: no panic; a parsed chain has at most a queue's worth of
//! regions, its readable regions come first and it lies in memory; the
//! reader and writer never report more than the chain holds, and a failed
//! access consumes nothing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vhost_device_common::{ChainError, DescChain};
use vm_memory::{Bytes, GuestAddress, GuestMemory, GuestMemoryMmap, Permissions};

const PAGE: u64 = 0x1000;
const BASE: u64 = 0x1_0000;

fn memory(header: &[u8; 8], body: &[u8]) -> Option<GuestMemoryMmap> {
    let regions = 1 + u64::from(header[0] % 3);
    let gap = u64::from(header[1] % 4) * PAGE;
    let size = (1 + u64::from(header[2] % 4)) * PAGE;
    let ranges: Vec<_> = (0..regions)
        .map(|i| (GuestAddress(BASE + i * (size + gap)), size as usize))
        .collect();
    let mem = GuestMemoryMmap::<()>::from_ranges(&ranges).ok()?;
    // Fill the regions in order with the body, as one stream.
    let mut rest = body;
    for (start, len) in &ranges {
        let n = rest.len().min(*len);
        mem.write_slice(&rest[..n], *start).ok()?;
        rest = &rest[n..];
    }
    Some(mem)
}

fn exercise(mem: &GuestMemoryMmap, chain: &DescChain, steps: u8, queue_size: u16) {
    let readable = chain.readable();
    let writable = chain.writable();
    assert!(readable.len() + writable.len() <= usize::from(queue_size));
    let in_memory = |region: &vhost_device_common::Region, access| {
        region.len == 0 || mem.check_range(region.addr, region.len as usize, access)
    };
    assert!(readable.iter().all(|r| in_memory(r, Permissions::Read)));
    assert!(writable.iter().all(|r| in_memory(r, Permissions::Write)));

    let total = readable.total_len();
    let mut reader = chain.reader(mem);
    assert_eq!(reader.available(), total);
    let chunk = usize::from(steps % 37) + 1;
    let mut buf = vec![0u8; chunk];
    loop {
        let before = reader.available();
        match steps % 4 {
            0 => match reader.read_obj::<u64>() {
                Ok(_) => assert_eq!(reader.available(), before - 8),
                Err(ChainError::ShortRead { .. }) => {
                    assert_eq!(reader.available(), before);
                    break;
                }
                Err(e) => panic!("read_obj: {e}"),
            },
            1 => {
                if let Ok(peeked) = reader.peek_obj::<u32>() {
                    assert_eq!(reader.available(), before);
                    assert_eq!(reader.read_obj::<u32>().ok(), Some(peeked));
                } else {
                    assert_eq!(reader.available(), before);
                    break;
                }
            }
            2 => match reader.read_to_vec(chunk) {
                Ok(data) => {
                    assert_eq!((data.len(), reader.available()), (before, 0));
                    break;
                }
                Err(ChainError::TooLarge { .. }) => {
                    assert_eq!(reader.available(), before);
                    reader.skip(chunk).expect("skip within the chain");
                }
                Err(e) => panic!("read_to_vec: {e}"),
            },
            _ => {
                if reader.read_exact(&mut buf).is_err() {
                    assert_eq!(reader.available(), before);
                    break;
                }
            }
        }
    }
    assert!(reader.bytes_read() <= total);

    let total = writable.total_len();
    let mut writer = chain.writer(mem);
    assert_eq!(writer.available(), total);
    let tail = usize::from(steps >> 4);
    let mut status = writer.split_tail(tail).ok();
    if let Some(status) = &mut status {
        let _ = status.write_zeros(tail);
        assert_eq!(status.available(), 0);
    }
    loop {
        let before = writer.available();
        let result = match steps % 3 {
            0 => writer.write_all(&buf),
            1 => writer.write_zeros(chunk),
            _ => writer.skip(chunk),
        };
        if result.is_err() {
            assert_eq!(writer.available(), before);
            break;
        }
    }
    assert!(writer.bytes_written() <= total);
    assert!(writer.used_len() as usize <= total);
}

fuzz_target!(|data: &[u8]| {
    let Some((header, body)) = data.split_first_chunk::<8>() else {
        return;
    };
    let Some(mem) = memory(header, body) else {
        return;
    };
    let queue_size = 1u16 << (header[3] % 16);
    let head = u16::from_le_bytes([header[4], header[5]]);
    let table = GuestAddress(BASE + u64::from(header[6]) * 16);
    if let Ok(chain) = DescChain::parse(&mem, table, queue_size, head) {
        exercise(&mem, &chain, header[7], queue_size);
    }
});
