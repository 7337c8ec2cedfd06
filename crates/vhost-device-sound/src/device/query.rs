// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Item information queries (virtio 1.3 §5.14.6.1), shared by the jack,
//! PCM, channel map and control element INFO requests.

use vm_memory::ByteValued;

use crate::error::RequestError;
use crate::protocol::virtio_snd_query_info;

/// Largest info structure size a driver may ask for.
const MAX_INFO_SIZE: u32 = 4096;

/// A validated item information query: the items to describe, and the
/// size of each as the driver knows it.
pub(super) struct Query {
    start: usize,
    end: usize,
    size: usize,
}

impl Query {
    /// Checks `q` against `total` items and `room` bytes of reply (§5.14.6.2).
    pub(super) fn check(
        q: &virtio_snd_query_info,
        total: usize,
        room: usize,
    ) -> Result<Self, RequestError> {
        let bad = |reason| RequestError::BadQuery {
            code: q.hdr.code.to_native(),
            reason,
        };
        let start = q.start_id.to_native() as usize;
        let count = q.count.to_native() as usize;
        let size = q.size.to_native();
        if size == 0 || size > MAX_INFO_SIZE {
            return Err(bad("bad item size"));
        }
        let size = size as usize;
        let end = start
            .checked_add(count)
            .filter(|end| *end <= total)
            .ok_or_else(|| bad("items out of range"))?;
        if count.checked_mul(size).is_none_or(|len| len > room) {
            return Err(bad("no room for the reply"));
        }
        Ok(Query { start, end, size })
    }

    /// The reply: each item's structure cut or zero-padded to the driver's
    /// size, so an older (shorter) or newer (longer) layout works.
    pub(super) fn reply<T: ByteValued>(&self, item: impl Fn(usize) -> T) -> Vec<u8> {
        let mut out = Vec::with_capacity((self.end - self.start) * self.size);
        for id in self.start..self.end {
            let value = item(id);
            let bytes = value.as_slice();
            let take = self.size.min(bytes.len());
            out.extend_from_slice(bytes.get(..take).unwrap_or_default());
            out.resize(out.len() + (self.size - take), 0);
        }
        out
    }
}
