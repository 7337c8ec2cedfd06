// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The simulated radio the built-in controllers of one daemon share.
//!
//! Each controller is a station on the radio. What the others can see of it
//! (its address, name and class for inquiry and name requests, its
//! advertising for LE scans) is published here when the guest changes it.
//! A station that is LE scanning is woken through its own eventfd, which
//! sits on its guest's worker epoll, whenever another station's advertising
//! changes; it then reads what is new. Inquiry and name requests are
//! answered at once from the snapshot. Nothing here runs on a timer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use vmm_sys_util::eventfd::EventFd;

/// A Bluetooth device address, in wire order (least significant byte
/// first).
pub type BdAddr = [u8; 6];

/// A station's advertising, as others receive it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Advertising {
    /// Advertising report event type (0 ADV_IND, 2 ADV_SCAN_IND, 3
    /// ADV_NONCONN_IND; Core Vol 4 Part E §7.7.65.2).
    pub event_type: u8,
    /// 0 public, 1 random.
    pub addr_type: u8,
    /// The address it advertises from.
    pub addr: BdAddr,
    /// Advertising data.
    pub data: Vec<u8>,
    /// Scan response data, for scannable advertising.
    pub scan_rsp: Vec<u8>,
}

/// What the other stations can see of one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Presence {
    /// Public address.
    pub addr: BdAddr,
    /// Local name, NUL-padded to 248 bytes.
    pub name: Vec<u8>,
    /// Class of device.
    pub class: [u8; 3],
    /// Write Scan Enable's value: bit 0 inquiry scan, bit 1 page scan.
    pub scan_enable: u8,
    /// Current advertising, if on.
    pub advertising: Option<Advertising>,
    /// Bumped whenever `advertising` changes, so scanners report it again.
    pub generation: u64,
}

#[derive(Debug)]
struct Station {
    presence: Presence,
    scanning: bool,
    wake: Arc<EventFd>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    stations: BTreeMap<u64, Station>,
}

/// The shared radio.
#[derive(Debug, Default)]
pub struct Radio {
    state: Mutex<State>,
}

impl Radio {
    /// A radio with no stations.
    pub fn new() -> Arc<Self> {
        Arc::new(Radio::default())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a station; it leaves when the returned handle is dropped.
    pub fn join(self: &Arc<Self>, presence: Presence, wake: Arc<EventFd>) -> StationHandle {
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.stations.insert(
            id,
            Station {
                presence,
                scanning: false,
                wake,
            },
        );
        StationHandle {
            radio: self.clone(),
            id,
        }
    }

    /// Number of stations.
    pub fn stations(&self) -> usize {
        self.lock().stations.len()
    }
}

/// One station's place on the radio.
#[derive(Debug)]
pub struct StationHandle {
    radio: Arc<Radio>,
    id: u64,
}

impl StationHandle {
    /// Changes what others see. Scanning stations are woken if the
    /// advertising changed.
    pub fn update(&self, f: impl FnOnce(&mut Presence)) {
        let mut state = self.radio.lock();
        let Some(me) = state.stations.get_mut(&self.id) else {
            return;
        };
        let before = me.presence.advertising.clone();
        f(&mut me.presence);
        if me.presence.advertising == before {
            return;
        }
        me.presence.generation += 1;
        for (id, station) in &state.stations {
            if *id != self.id && station.scanning {
                // A failed write means the counter is saturated: the
                // station is woken anyway.
                let _ = station.wake.write(1);
            }
        }
    }

    /// Starts or stops being woken by others' advertising changes.
    pub fn set_scanning(&self, on: bool) {
        if let Some(me) = self.radio.lock().stations.get_mut(&self.id) {
            me.scanning = on;
        }
    }

    /// The other stations' advertising, with their ids and generations.
    pub fn advertisers(&self) -> Vec<(u64, u64, Advertising)> {
        self.radio
            .lock()
            .stations
            .iter()
            .filter(|(id, _)| **id != self.id)
            .filter_map(|(id, s)| {
                let adv = s.presence.advertising.clone()?;
                Some((*id, s.presence.generation, adv))
            })
            .collect()
    }

    /// The other stations that answer an inquiry (inquiry scan on).
    pub fn inquiry(&self) -> Vec<Presence> {
        self.others(0x01)
    }

    /// The other station at `addr`, if it answers pages (page scan on).
    pub fn page(&self, addr: &BdAddr) -> Option<Presence> {
        self.others(0x02).into_iter().find(|p| p.addr == *addr)
    }

    fn others(&self, scan_bit: u8) -> Vec<Presence> {
        self.radio
            .lock()
            .stations
            .iter()
            .filter(|(id, s)| **id != self.id && s.presence.scan_enable & scan_bit != 0)
            .map(|(_, s)| s.presence.clone())
            .collect()
    }
}

impl Drop for StationHandle {
    fn drop(&mut self) {
        self.radio.lock().stations.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use vmm_sys_util::eventfd::EFD_NONBLOCK;

    use super::*;

    fn station(radio: &Arc<Radio>, last: u8) -> (StationHandle, Arc<EventFd>) {
        let wake = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
        let presence = Presence {
            addr: [last, 0, 0, 0, 0, 0],
            ..Default::default()
        };
        (radio.join(presence, wake.clone()), wake)
    }

    #[test]
    fn scanners_are_woken_by_others_advertising() {
        let radio = Radio::new();
        let (a, _) = station(&radio, 1);
        let (b, b_wake) = station(&radio, 2);
        b.set_scanning(true);
        assert!(b.advertisers().is_empty());
        a.update(|p| {
            p.advertising = Some(Advertising {
                data: vec![2, 1, 6],
                ..Default::default()
            })
        });
        assert_eq!(b_wake.read().unwrap(), 1);
        let seen = b.advertisers();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].2.data, [2, 1, 6]);
        // Not our own.
        assert!(a.advertisers().is_empty());
        // A change that is not advertising wakes nobody.
        a.update(|p| p.scan_enable = 3);
        b_wake.read().unwrap_err();
        assert_eq!(b.inquiry().len(), 1);
        assert!(b.page(&[1, 0, 0, 0, 0, 0]).is_some());
        assert!(b.page(&[9, 0, 0, 0, 0, 0]).is_none());
        drop(a);
        assert!(b.inquiry().is_empty());
        assert_eq!(radio.stations(), 1);
    }
}
