// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! What the integration tests of the echo device share. Each test crate
//! compiles this module on its own and uses part of it.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use vhost_device_common::testing::{
    FrontendOptions, RawDesc, TestFrontend, TestQueue, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_WRITE,
};

/// How long a test waits for one answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `path`, waiting for it, with [`TIMEOUT`] for each answer.
pub fn connect(path: &Path) -> TestFrontend {
    let opts = FrontendOptions {
        timeout: TIMEOUT,
        ..FrontendOptions::default()
    };
    TestFrontend::connect_retry(path, opts, TIMEOUT).unwrap()
}

/// Sends `payload` on queue 0 and returns the echo device's answer:
/// (sequence on this connection, guest index, echoed bytes).
pub fn echo(frontend: &mut TestFrontend, payload: &[u8]) -> (u64, u32, Vec<u8>) {
    let used = frontend
        .queue(0)
        .unwrap()
        .request(&[payload], &[64], TIMEOUT)
        .unwrap();
    let data = &used.data[..used.len as usize];
    let seq = u64::from_le_bytes(data[..8].try_into().unwrap());
    let guest = u32::from_le_bytes(data[8..12].try_into().unwrap());
    (seq, guest, data[12..].to_vec())
}

/// Makes available, and kicks, a chain whose indirect table is one entry
/// longer than the queue: readable bytes and a writable reply buffer at the
/// end, so it would be echoed if it were accepted. Returns its head.
pub fn publish_oversized_indirect_table(q: &mut TestQueue) -> u16 {
    let entries = q.size() + 1;
    let (scratch, len) = q.scratch();
    let data = scratch + u64::from(entries) * 16;
    assert!(u64::from(entries) * 16 + 64 <= len);
    for i in 0..entries {
        let (flags, len) = if i + 1 < entries {
            (VIRTQ_DESC_F_NEXT, 1)
        } else {
            (VIRTQ_DESC_F_WRITE, 64)
        };
        let desc = RawDesc {
            addr: data,
            len,
            flags,
            next: i + 1,
        };
        q.write_guest(scratch + u64::from(i) * 16, &desc.to_bytes())
            .unwrap();
    }
    let head = q
        .add_raw(&[RawDesc {
            addr: scratch,
            len: u32::from(entries) * 16,
            flags: VIRTQ_DESC_F_INDIRECT,
            next: 0,
        }])
        .unwrap();
    q.kick().unwrap();
    head
}
