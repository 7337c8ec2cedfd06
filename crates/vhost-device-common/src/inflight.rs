// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! What the core remembers about each queue between callbacks: which heads
//! the device holds, and whether the driver broke the queue.
//!
//! A driver may only make a head available again once the device has used
//! it. A hostile one republishes a head it never got back, and without this
//! record every republication would be parsed and held again, each one a new
//! allocation of up to a queue's worth of regions. With it, a republished
//! head that is still held is a guest error and is dropped, so a queue can
//! never hold more chains than it has descriptors.
//!
//! A queue is broken when the driver publishes an `avail.idx` more than a
//! ring ahead of the device (virtio 1.3 §2.7.13.3: the index may be at most
//! the queue size ahead). There is no sane way to go on: the device stops
//! taking buffers from it, as a device that sets DEVICE_NEEDS_RESET would
//! (§2.1.2), until the frontend stops the queue (GET_VRING_BASE) or resets
//! the device.
//!
//! Every access happens under the device's mutex (the worker's callbacks and
//! the frontend's stop and reset messages all take it), so relaxed loads and
//! stores are enough; the atomics only make the type `Sync`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Bits per word of the in-flight set.
const WORD: usize = 64;

/// One queue's in-flight heads and broken flag.
#[derive(Debug)]
pub(crate) struct QueueTrack {
    held: Box<[AtomicU64]>,
    broken: AtomicBool,
}

impl QueueTrack {
    /// A record for a queue of at most `max_size` descriptors.
    pub(crate) fn new(max_size: usize) -> Self {
        QueueTrack {
            held: (0..max_size.div_ceil(WORD))
                .map(|_| AtomicU64::new(0))
                .collect(),
            broken: AtomicBool::new(false),
        }
    }

    fn word(&self, head: u16) -> Option<(&AtomicU64, u64)> {
        let head = usize::from(head);
        let word = self.held.get(head / WORD)?;
        Some((word, 1 << (head % WORD)))
    }

    /// Marks `head` as held by the device; false if it already was (the
    /// driver republished a head it never got back). A head outside the set
    /// is left to the chain parser, which refuses it.
    pub(crate) fn take(&self, head: u16) -> bool {
        let Some((word, bit)) = self.word(head) else {
            return true;
        };
        let bits = word.load(Ordering::Relaxed);
        if bits & bit != 0 {
            return false;
        }
        word.store(bits | bit, Ordering::Relaxed);
        true
    }

    /// `head` went back to the driver.
    pub(crate) fn release(&self, head: u16) {
        if let Some((word, bit)) = self.word(head) {
            let bits = word.load(Ordering::Relaxed);
            if bits & bit != 0 {
                word.store(bits & !bit, Ordering::Relaxed);
            }
        }
    }

    /// Whether the driver broke the queue.
    pub(crate) fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed)
    }

    /// Marks the queue broken; true the first time, so the caller logs once.
    pub(crate) fn set_broken(&self) -> bool {
        !self.broken.swap(true, Ordering::Relaxed)
    }

    /// The queue was stopped or the device reset: nothing is held any more
    /// and the queue may work again.
    pub(crate) fn clear(&self) {
        for word in &*self.held {
            word.store(0, Ordering::Relaxed);
        }
        self.broken.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_head_cannot_be_taken_twice() {
        let track = QueueTrack::new(256);
        assert!(track.take(5));
        assert!(!track.take(5));
        assert!(track.take(255));
        track.release(5);
        assert!(track.take(5));
        // Outside the set: not tracked, the parser refuses it.
        assert!(track.take(256));
        assert!(track.take(256));
        track.clear();
        assert!(track.take(5));
        assert!(track.take(255));
    }

    #[test]
    fn broken_is_reported_once_and_cleared() {
        let track = QueueTrack::new(1);
        assert!(!track.is_broken());
        assert!(track.set_broken());
        assert!(!track.set_broken());
        assert!(track.is_broken());
        track.clear();
        assert!(!track.is_broken());
    }
}
