// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! What the test frontend negotiates and how it lays out guest memory.

use std::time::Duration;

use vhost::vhost_user::VhostUserProtocolFeatures;

use super::error::FrontendError;
use super::memory::PAGE_SIZE;

/// `VIRTIO_RING_F_INDIRECT_DESC`.
pub(crate) const F_INDIRECT_DESC: u64 = 1 << 28;
/// `VIRTIO_RING_F_EVENT_IDX`.
pub(crate) const F_EVENT_IDX: u64 = 1 << 29;

/// Transport features this frontend does not implement and therefore never
/// acks, whatever the options say: `VHOST_F_LOG_ALL` (26), ACCESS_PLATFORM
/// (33, would need IOTLB messages), RING_PACKED (34), IN_ORDER (35, lets the
/// device return a batch through one used element), SR_IOV (37),
/// NOTIFICATION_DATA (38), NOTIF_CONFIG_DATA (39), ADMIN_VQ (41).
///
/// RING_RESET (40) is acked when offered: it only permits the driver to
/// reset single queues, which this frontend simply never does.
pub const UNSUPPORTED_FEATURES: u64 =
    1 << 26 | 1 << 33 | 1 << 34 | 1 << 35 | 1 << 37 | 1 << 38 | 1 << 39 | 1 << 41;

/// Protocol features this frontend knows how to use; others are never acked.
pub fn supported_protocol_features() -> VhostUserProtocolFeatures {
    VhostUserProtocolFeatures::MQ
        | VhostUserProtocolFeatures::REPLY_ACK
        | VhostUserProtocolFeatures::CONFIG
        | VhostUserProtocolFeatures::RESET_DEVICE
}

/// How [`TestFrontend::connect`](super::TestFrontend::connect) sets up the device.
#[derive(Debug, Clone)]
pub struct FrontendOptions {
    /// Guest memory size in bytes (a multiple of 4096). Default 16 MiB.
    pub mem_size: usize,
    /// Guest physical address of the first byte of guest memory, so tests
    /// can check that a backend translates addresses. Default 0.
    pub mem_base: u64,
    /// Number of memory regions guest memory is split into (equal sizes,
    /// contiguous GPAs, one memfd mapped at increasing offsets), so tests
    /// can place buffers across a region boundary and check `mmap_offset`
    /// handling. Region `i` starts at `mem_base + i * mem_size /
    /// mem_regions`. Default 1.
    pub mem_regions: usize,
    /// Size of every queue, a power of two. Default 256.
    pub queue_size: u16,
    /// Number of queues to set up. `None` means what GET_QUEUE_NUM reports
    /// when the backend offers the MQ protocol feature, else 1.
    pub num_queues: Option<usize>,
    /// AND-mask over the device's virtio features: clear a bit to refuse
    /// it (e.g. `!(1 << 29)` to run without EVENT_IDX). Default all ones.
    pub features_mask: u64,
    /// AND-mask over the protocol features this frontend supports
    /// (MQ, REPLY_ACK, CONFIG, RESET_DEVICE). Default all ones.
    pub protocol_features_mask: u64,
    /// Read/write timeout of the control socket. It bounds the messages this
    /// module exchanges itself (GET_CONFIG, GPU_SET_SOCKET); the `vhost`
    /// crate retries timed-out reads, so a backend that never answers one of
    /// the other messages still blocks. Default 5 s.
    pub timeout: Duration,
    /// Size of each queue's scratch area. Default 64 KiB.
    pub scratch_size: u64,
    /// Zero the writable buffers of every chain before posting it, so that
    /// stale bytes from an earlier request cannot pass for a reply. Default
    /// true; benchmarks may turn it off.
    pub zero_writable: bool,
}

impl Default for FrontendOptions {
    fn default() -> Self {
        FrontendOptions {
            mem_size: 16 << 20,
            mem_base: 0,
            mem_regions: 1,
            queue_size: 256,
            num_queues: None,
            features_mask: !0,
            protocol_features_mask: !0,
            timeout: Duration::from_secs(5),
            scratch_size: 64 << 10,
            zero_writable: true,
        }
    }
}

impl FrontendOptions {
    /// These options with the virtio feature bits in `bits` refused.
    pub fn without_features(mut self, bits: u64) -> Self {
        self.features_mask &= !bits;
        self
    }

    /// These options with EVENT_IDX refused.
    pub fn without_event_idx(self) -> Self {
        self.without_features(F_EVENT_IDX)
    }

    pub(crate) fn validate(&self) -> Result<(), FrontendError> {
        let bad = |m: String| Err(FrontendError::InvalidOptions(m));
        if self.queue_size == 0 || !self.queue_size.is_power_of_two() {
            return bad(format!(
                "queue size {} is not a power of two",
                self.queue_size
            ));
        }
        if self.queue_size > 32768 {
            return bad(format!("queue size {} exceeds 32768", self.queue_size));
        }
        if self.mem_size == 0 || self.mem_size as u64 % PAGE_SIZE != 0 {
            return bad(format!(
                "memory size {:#x} is not a non-zero multiple of 4096",
                self.mem_size
            ));
        }
        if self.mem_base % PAGE_SIZE != 0 {
            return bad(format!(
                "memory base {:#x} is not page aligned",
                self.mem_base
            ));
        }
        if self.mem_base.checked_add(self.mem_size as u64).is_none() {
            return bad("memory base + size overflows".to_string());
        }
        if !(1..=8).contains(&self.mem_regions)
            || self.mem_size % self.mem_regions != 0
            || (self.mem_size / self.mem_regions) as u64 % PAGE_SIZE != 0
        {
            return bad(format!(
                "{} regions: need 1 to 8 regions of a whole number of pages",
                self.mem_regions
            ));
        }
        if self.num_queues == Some(0) {
            return bad("zero queues".to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn options_are_validated() {
        FrontendOptions::default().validate().unwrap();
        for bad in [
            FrontendOptions {
                queue_size: 100,
                ..Default::default()
            },
            FrontendOptions {
                mem_size: 1000,
                ..Default::default()
            },
            FrontendOptions {
                mem_base: 12,
                ..Default::default()
            },
            FrontendOptions {
                num_queues: Some(0),
                ..Default::default()
            },
            FrontendOptions {
                mem_regions: 0,
                ..Default::default()
            },
            FrontendOptions {
                mem_regions: 3,
                ..Default::default()
            },
            FrontendOptions {
                mem_base: u64::MAX - 4095,
                ..Default::default()
            },
        ] {
            assert!(matches!(
                bad.validate(),
                Err(FrontendError::InvalidOptions(_))
            ));
        }
        let o = FrontendOptions::default().without_event_idx();
        assert_eq!(o.features_mask & F_EVENT_IDX, 0);
    }
}
