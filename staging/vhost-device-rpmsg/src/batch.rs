// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The device's staging areas for messages between the queues and the host
//! sockets, allocated once per session so that no message allocates.
//!
//! - [`TxBatch`]: guest messages decoded from one kick's TX chains, sent to
//!   their host peers together (one `sendmmsg` per run of messages to the
//!   same channel).
//! - [`RxBatch`]: host messages taken from a socket in one `recvmmsg`, on
//!   their way into RX buffers ([`deliver`]).

use std::collections::VecDeque;
use std::ops::Range;

use vhost_device_common::{DescChain, Queue, RateLimited};

use crate::backend::mmsg::{HostBuf, BATCH};
use crate::protocol::{header, MAX_RPMSG_BUF_SIZE, RPMSG_MTU};

/// Guest messages a TX drain holds before it sends them. Smaller than
/// [`BATCH`] on purpose: a host peer on another CPU starts on the first
/// messages while the device decodes the rest, so its answers are often
/// there before the worker would go back to sleep (with the whole drain in
/// one call, the measured wake-ups per message went up by a fifth).
pub const TX_BATCH: usize = 16;

const _: () = assert!(TX_BATCH <= BATCH);

/// Guest messages on their way to host ports.
#[derive(Debug)]
pub struct TxBatch {
    bufs: Box<[[u8; RPMSG_MTU]]>,
    /// Per message: its channel slot and length.
    msgs: [(usize, usize); TX_BATCH],
    len: usize,
}

impl Default for TxBatch {
    fn default() -> Self {
        TxBatch {
            bufs: vec![[0u8; RPMSG_MTU]; TX_BATCH].into_boxed_slice(),
            msgs: [(0, 0); TX_BATCH],
            len: 0,
        }
    }
}

impl TxBatch {
    /// Whether no further message fits.
    pub fn is_full(&self) -> bool {
        self.len >= TX_BATCH
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The buffer the next message is decoded into; `None` when full.
    pub fn next_buf(&mut self) -> Option<&mut [u8; RPMSG_MTU]> {
        self.bufs.get_mut(self.len)
    }

    /// Keeps the first `len` bytes of the buffer [`Self::next_buf`] gave,
    /// as a message for the channel in `slot`.
    pub fn push(&mut self, slot: usize, len: usize) {
        if let Some(m) = self.msgs.get_mut(self.len) {
            *m = (slot, len.min(RPMSG_MTU));
            self.len += 1;
        }
    }

    /// The run of messages from `start` on that go to one channel: its
    /// slot and where the run ends. Runs keep each channel's order.
    pub fn run_from(&self, start: usize) -> Option<(usize, usize)> {
        let held = self.msgs.get(..self.len)?;
        let (slot, _) = *held.get(start)?;
        let end = held
            .iter()
            .skip(start)
            .position(|&(s, _)| s != slot)
            .map_or(self.len, |n| start + n);
        Some((slot, end))
    }

    /// Message `i`.
    pub fn payload(&self, i: usize) -> &[u8] {
        match (self.bufs.get(i), self.msgs.get(i)) {
            (Some(buf), Some(&(_, len))) => buf.get(..len).unwrap_or_default(),
            _ => &[],
        }
    }

    /// Messages `range` as slices in `out`; returns the filled part.
    pub fn payloads<'a>(
        &'a self,
        range: Range<usize>,
        out: &'a mut [&'a [u8]; BATCH],
    ) -> &'a [&'a [u8]] {
        let mut n = 0;
        for (slot, i) in out.iter_mut().zip(range) {
            *slot = self.payload(i);
            n += 1;
        }
        out.get(..n).unwrap_or_default()
    }

    /// Forgets every message (they were sent or queued).
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

/// Host messages received in one system call.
#[derive(Debug)]
pub struct RxBatch {
    bufs: Box<[HostBuf]>,
    lens: [usize; BATCH],
}

impl Default for RxBatch {
    fn default() -> Self {
        RxBatch {
            bufs: vec![[0u8; MAX_RPMSG_BUF_SIZE]; BATCH].into_boxed_slice(),
            lens: [0; BATCH],
        }
    }
}

impl RxBatch {
    /// Room for up to `n` messages (at most [`BATCH`]): buffers and their
    /// lengths, for [`crate::backend::Port::recv_many`].
    pub fn room(&mut self, n: usize) -> (&mut [HostBuf], &mut [usize]) {
        let n = n.min(BATCH);
        let bufs = match self.bufs.get_mut(..n) {
            Some(b) => b,
            None => &mut [],
        };
        (bufs, self.lens.get_mut(..n).unwrap_or_default())
    }

    /// The length of message `i` as received (0: the peer hung up; over
    /// the MTU: too long).
    pub fn len_of(&self, i: usize) -> usize {
        self.lens.get(i).copied().unwrap_or(0)
    }

    /// Message `i`, cut to what its buffer holds.
    pub fn msg(&self, i: usize) -> &[u8] {
        self.bufs
            .get(i)
            .and_then(|b| b.get(..self.len_of(i)))
            .unwrap_or_default()
    }
}

/// Writes one message into the next usable RX buffer and completes it.
/// False if no buffer is free. Buffers too small for a header and the
/// message (no real driver posts those) are returned empty.
pub fn deliver(
    free: &mut VecDeque<DescChain>,
    log: &RateLimited,
    queue: &mut Queue<'_>,
    src: u32,
    dst: u32,
    payload: &[u8],
) -> bool {
    let mem = queue.memory();
    while let Some(chain) = free.pop_front() {
        let mut writer = chain.writer(mem);
        let written = writer
            .write_obj(header(src, dst, payload.len()))
            .and_then(|()| writer.write_all(payload));
        match written {
            Ok(()) => {
                queue.complete(chain.head(), writer.used_len());
                return true;
            }
            Err(e) => {
                log.warn(|| {
                    format!(
                        "RX buffer of {} bytes unusable: {e}",
                        chain.writable().total_len()
                    )
                });
                queue.complete(chain.head(), 0);
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn push(b: &mut TxBatch, slot: usize, bytes: &[u8]) {
        b.next_buf().unwrap()[..bytes.len()].copy_from_slice(bytes);
        b.push(slot, bytes.len());
    }

    #[test]
    fn runs_split_by_channel_in_order() {
        let mut b = TxBatch::default();
        assert!(b.is_empty());
        assert_eq!(b.run_from(0), None);
        push(&mut b, 1, b"a");
        push(&mut b, 1, b"bb");
        push(&mut b, 0, b"c");
        push(&mut b, 1, b"d");
        assert_eq!(b.run_from(0), Some((1, 2)));
        assert_eq!(b.run_from(2), Some((0, 3)));
        assert_eq!(b.run_from(3), Some((1, 4)));
        assert_eq!(b.run_from(4), None);
        let mut out = [&[][..]; BATCH];
        assert_eq!(b.payloads(0..2, &mut out), &[&b"a"[..], &b"bb"[..]]);
        b.clear();
        assert!(b.is_empty());
    }

    #[test]
    fn holds_at_most_a_batch() {
        let mut b = TxBatch::default();
        for _ in 0..TX_BATCH {
            assert!(!b.is_full());
            push(&mut b, 0, b"x");
        }
        assert!(b.is_full());
        assert!(b.next_buf().is_none());
        b.push(0, 1);
        assert_eq!(b.run_from(0), Some((0, TX_BATCH)));
        let mut r = RxBatch::default();
        assert_eq!(r.room(BATCH + 5).0.len(), BATCH);
        assert_eq!(r.msg(0), &[] as &[u8]);
    }
}
