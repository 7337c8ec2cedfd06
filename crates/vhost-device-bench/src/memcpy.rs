// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The baseline of gpu-2d: a plain memcpy of the same bytes, one frame at a
//! time, on the frontend's CPU.

use std::time::{Duration, Instant};

use crate::load::RunLimits;

/// What the memcpy baseline measured.
#[derive(Debug, Clone, Copy)]
pub struct MemcpyResult {
    /// Bytes per copy.
    pub bytes: u64,
    /// Copies in the measured part.
    pub copies: u64,
    /// Wall time of the measured part.
    pub elapsed: Duration,
}

impl MemcpyResult {
    /// Megabytes (10^6) per second.
    pub fn mb_per_s(&self) -> f64 {
        let s = self.elapsed.as_secs_f64();
        if s > 0.0 {
            (self.copies * self.bytes) as f64 / s / 1e6
        } else {
            0.0
        }
    }
}

/// Copies `bytes` from one buffer to another for the run's duration.
pub fn measure(bytes: u64, limits: &RunLimits) -> MemcpyResult {
    let len = usize::try_from(bytes).unwrap_or(0);
    let src: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    // Written once so that the copies do not measure page faults.
    let mut dst = vec![1u8; len];
    let warmup_end = Instant::now() + limits.warmup;
    while Instant::now() < warmup_end {
        dst.copy_from_slice(&src);
        std::hint::black_box(&mut dst);
    }
    let start = Instant::now();
    let end = start + limits.duration;
    let mut copies = 0u64;
    loop {
        dst.copy_from_slice(&src);
        std::hint::black_box(&mut dst);
        copies += 1;
        if Instant::now() >= end || copies >= limits.max_requests {
            break;
        }
    }
    MemcpyResult {
        bytes,
        copies,
        elapsed: start.elapsed(),
    }
}
