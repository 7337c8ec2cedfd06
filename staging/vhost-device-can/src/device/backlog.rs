// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The bounded queue of received frames that wait for RX buffers.

use std::collections::VecDeque;

use crate::frame::CanFrame;

/// Frames waiting for the driver to post RX buffers. When full, the oldest
/// frame goes: a guest that stopped reading for a while gets the newest
/// traffic back, not a stale queue that never drains.
#[derive(Debug)]
pub struct Backlog {
    frames: VecDeque<CanFrame>,
    limit: usize,
    dropped: u64,
}

impl Backlog {
    /// An empty backlog of at most `limit` frames (at least one).
    pub fn new(limit: usize) -> Self {
        Backlog {
            frames: VecDeque::new(),
            limit: limit.max(1),
            dropped: 0,
        }
    }

    /// Adds a frame; true if the oldest was dropped to make room.
    pub fn push(&mut self, frame: CanFrame) -> bool {
        let full = self.frames.len() >= self.limit;
        if full {
            self.frames.pop_front();
            self.dropped += 1;
        }
        self.frames.push_back(frame);
        full
    }

    /// The oldest frame.
    pub fn pop(&mut self) -> Option<CanFrame> {
        self.frames.pop_front()
    }

    /// Whether no frame waits.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Frames dropped since the device was built.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Forgets every waiting frame (STOP, bus-off, reset).
    pub fn clear(&mut self) {
        self.frames.clear();
    }
}
