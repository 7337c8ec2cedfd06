// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The host side of the virtual bus.
//!
//! Every target the guest can reach sits behind [`I2cBus`]: one
//! implementation drives a host adapter through `/dev/i2c-N`
//! ([`host::AdapterBus`]), another simulates chips in memory
//! ([`sim::SimBus`]). A [`BusMap`] puts several of them on one virtual bus
//! by address, so real and simulated targets mix freely.

pub mod host;
pub mod sim;
pub mod smbus;

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

/// Largest buffer one request may carry. A 24C512 can be read whole in one
/// message; anything larger is refused before any allocation.
pub const MAX_MSG_LEN: usize = 64 * 1024;

/// One segment of a combined transfer: what a single virtio request asks.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct I2cMsg {
    /// 7-bit target address.
    pub addr: u8,
    /// Read (target to host) when true, write otherwise.
    pub read: bool,
    /// Data to write, or room for the data read (its length is the request's).
    pub buf: Vec<u8>,
}

impl I2cMsg {
    /// A write of `data` to `addr`.
    pub fn write(addr: u8, data: &[u8]) -> Self {
        I2cMsg {
            addr,
            read: false,
            buf: data.to_vec(),
        }
    }

    /// A read of `len` bytes from `addr`.
    pub fn read(addr: u8, len: usize) -> Self {
        I2cMsg {
            addr,
            read: true,
            buf: vec![0; len],
        }
    }

    /// Turns this message into one of `len` zero bytes to or from `addr`,
    /// keeping the buffer's allocation, and returns the buffer to fill.
    ///
    /// The zeroing matters for reads: a backend that fills less than it
    /// should must not hand the guest what an earlier request left here.
    pub fn reuse(&mut self, addr: u8, read: bool, len: usize) -> &mut [u8] {
        self.addr = addr;
        self.read = read;
        self.buf.clear();
        self.buf.resize(len, 0);
        &mut self.buf
    }
}

impl fmt::Debug for I2cMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = if self.read { 'R' } else { 'W' };
        write!(f, "{dir}@{:#04x}[{}]", self.addr, self.buf.len())
    }
}

pub use crate::error::TransferError;

/// Something that executes combined transfers: a host adapter or a set of
/// simulated targets.
pub trait I2cBus: Send {
    /// Executes `msgs` as one combined transfer (a START, repeated STARTs
    /// between messages, one STOP). Read messages get their buffers filled.
    ///
    /// # Errors
    /// The first failure, with the number of messages completed before it.
    fn transfer(&mut self, msgs: &mut [I2cMsg]) -> Result<(), TransferError>;

    /// A short description for logs: "adapter 1 (/dev/i2c-1)", "simulated".
    fn describe(&self) -> String;

    /// Whether a transfer may wait on hardware (a host adapter, up to its
    /// I2C_TIMEOUT). Such transfers run on the device's transfer thread,
    /// never on the vring worker; in-memory ones run in place.
    fn may_block(&self) -> bool {
        false
    }
}

/// A bus shared between guests or connections.
pub type SharedBus = Arc<Mutex<dyn I2cBus>>;

fn lock(bus: &SharedBus) -> MutexGuard<'_, dyn I2cBus + 'static> {
    // A panic inside a transfer leaves the bus state as the best we have.
    bus.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The virtual bus of one guest: which [`I2cBus`] answers each address.
#[derive(Clone)]
pub struct BusMap {
    buses: Vec<SharedBus>,
    by_addr: [Option<u8>; 128],
    /// Per address: its bus may block (see [`I2cBus::may_block`]), asked
    /// once when the bus is added so that the request path takes no lock.
    blocking: u128,
}

impl fmt::Debug for BusMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusMap")
            .field("addresses", &self.addresses())
            .field("buses", &self.buses.len())
            .finish()
    }
}

impl Default for BusMap {
    fn default() -> Self {
        BusMap {
            buses: Vec::new(),
            by_addr: [None; 128],
            blocking: 0,
        }
    }
}

impl BusMap {
    /// An empty bus: every address is unknown.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `bus` answering `addrs`. Returns false (and adds nothing) if an
    /// address is already taken, out of the 7-bit range, or the map is full.
    pub fn add(&mut self, bus: SharedBus, addrs: &[u8]) -> bool {
        let Ok(index) = u8::try_from(self.buses.len()) else {
            return false;
        };
        let free = addrs.iter().all(|&a| {
            self.by_addr
                .get(usize::from(a))
                .is_some_and(Option::is_none)
        });
        if !free {
            return false;
        }
        let blocking = lock(&bus).may_block();
        for &a in addrs {
            if let Some(slot) = self.by_addr.get_mut(usize::from(a)) {
                *slot = Some(index);
            }
            if blocking {
                self.blocking |= 1u128.checked_shl(u32::from(a)).unwrap_or_default();
            }
        }
        self.buses.push(bus);
        true
    }

    /// Whether `addr` is configured.
    pub fn contains(&self, addr: u8) -> bool {
        self.bus_index(addr).is_some()
    }

    /// Whether any target sits on a bus that may block.
    pub fn has_blocking(&self) -> bool {
        self.blocking != 0
    }

    /// Whether any of `msgs` goes to a bus that may block.
    pub fn blocks(&self, msgs: &[I2cMsg]) -> bool {
        msgs.iter().any(|m| {
            let bit = 1u128.checked_shl(u32::from(m.addr)).unwrap_or_default();
            self.blocking & bit != 0
        })
    }

    /// The configured addresses, ascending.
    pub fn addresses(&self) -> Vec<u8> {
        (0u8..128).filter(|&a| self.contains(a)).collect()
    }

    fn bus_index(&self, addr: u8) -> Option<usize> {
        self.by_addr
            .get(usize::from(addr))
            .copied()
            .flatten()
            .map(usize::from)
    }

    /// Executes `msgs` in order. Consecutive messages for the same backend
    /// go to it as one combined transfer; a group spanning backends (a
    /// simulated chip and a host adapter, say) is run piece by piece, which
    /// is the closest a virtual bus can get.
    ///
    /// # Errors
    /// The first failure, with the number of messages of `msgs` completed.
    pub fn transfer(&self, msgs: &mut [I2cMsg]) -> Result<(), TransferError> {
        let mut done = 0;
        while done < msgs.len() {
            let rest = msgs.get_mut(done..).unwrap_or_default();
            let first = rest.first().map(|m| m.addr).unwrap_or_default();
            let Some(index) = self.bus_index(first) else {
                return Err(TransferError::new(
                    done,
                    format!("no target at {first:#04x}"),
                ));
            };
            let run = rest
                .iter()
                .take_while(|m| self.bus_index(m.addr) == Some(index))
                .count();
            let Some(bus) = self.buses.get(index) else {
                return Err(TransferError::new(done, "bus map is inconsistent"));
            };
            let piece = rest.get_mut(..run).unwrap_or_default();
            if let Err(e) = lock(bus).transfer(piece) {
                return Err(TransferError::new(done + e.completed.min(run), e.reason));
            }
            done += run;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    /// Records transfers and fails on a chosen message.
    pub(crate) struct Recorder {
        pub log: Arc<Mutex<Vec<Vec<I2cMsg>>>>,
        pub fail_at: Option<usize>,
        pub fill: u8,
    }

    impl I2cBus for Recorder {
        fn transfer(&mut self, msgs: &mut [I2cMsg]) -> Result<(), TransferError> {
            self.log.lock().unwrap().push(msgs.to_vec());
            for (i, m) in msgs.iter_mut().enumerate() {
                if self.fail_at == Some(i) {
                    return Err(TransferError::new(i, "nack"));
                }
                if m.read {
                    m.buf.fill(self.fill);
                }
            }
            Ok(())
        }
        fn describe(&self) -> String {
            "recorder".into()
        }
    }

    fn recorder(fail_at: Option<usize>, fill: u8) -> (SharedBus, Arc<Mutex<Vec<Vec<I2cMsg>>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let bus: SharedBus = Arc::new(Mutex::new(Recorder {
            log: log.clone(),
            fail_at,
            fill,
        }));
        (bus, log)
    }

    #[test]
    fn a_reused_message_is_zeroed_and_keeps_its_buffer() {
        let mut msg = I2cMsg::read(0x50, 8);
        msg.buf.fill(0xee);
        let ptr = msg.buf.as_ptr();
        assert_eq!(msg.reuse(0x51, false, 3), [0, 0, 0]);
        assert_eq!(msg, I2cMsg::write(0x51, &[0, 0, 0]));
        assert_eq!(msg.buf.as_ptr(), ptr);
        assert_eq!(msg.reuse(0x52, true, 0).len(), 0);
        assert_eq!(msg, I2cMsg::read(0x52, 0));
    }

    #[test]
    fn addresses_are_unique() {
        let (a, _) = recorder(None, 0);
        let (b, _) = recorder(None, 0);
        let mut map = BusMap::new();
        assert!(map.add(a, &[0x50, 0x51]));
        assert!(!map.add(b.clone(), &[0x48, 0x51]));
        assert!(!map.contains(0x48));
        assert!(!map.add(b.clone(), &[0x80]));
        assert!(map.add(b, &[0x48]));
        assert_eq!(map.addresses(), vec![0x48, 0x50, 0x51]);
    }

    #[test]
    fn runs_are_split_by_backend() {
        let (a, log_a) = recorder(None, 0x11);
        let (b, log_b) = recorder(None, 0x22);
        let mut map = BusMap::new();
        map.add(a, &[0x50, 0x51]);
        map.add(b, &[0x48]);
        let mut msgs = vec![
            I2cMsg::write(0x50, &[0]),
            I2cMsg::read(0x51, 2),
            I2cMsg::read(0x48, 1),
            I2cMsg::read(0x50, 1),
        ];
        map.transfer(&mut msgs).unwrap();
        assert_eq!(log_a.lock().unwrap().len(), 2);
        assert_eq!(log_a.lock().unwrap()[0].len(), 2);
        assert_eq!(log_b.lock().unwrap().len(), 1);
        assert_eq!(msgs[1].buf, [0x11, 0x11]);
        assert_eq!(msgs[2].buf, [0x22]);
        assert_eq!(msgs[3].buf, [0x11]);
    }

    #[test]
    fn failure_counts_messages_across_runs() {
        let (a, _) = recorder(None, 0);
        let (b, log_b) = recorder(Some(1), 0);
        let mut map = BusMap::new();
        map.add(a, &[0x50]);
        map.add(b, &[0x48]);
        let mut msgs = vec![
            I2cMsg::write(0x50, &[0]),
            I2cMsg::write(0x48, &[1]),
            I2cMsg::read(0x48, 1),
            I2cMsg::read(0x50, 1),
        ];
        let err = map.transfer(&mut msgs).unwrap_err();
        assert_eq!(err.completed, 2);
        assert_eq!(log_b.lock().unwrap().len(), 1);
        let err = map.transfer(&mut [I2cMsg::read(0x33, 1)]).unwrap_err();
        assert_eq!(err.completed, 0);
    }
}
