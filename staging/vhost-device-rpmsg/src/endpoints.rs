// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The channel table: which device-side address belongs to which channel,
//! which guest endpoint each one talks to, and the messages waiting for a
//! host peer. No queue and no fd in here, so it is tested on its own.
//!
//! The device learns a guest endpoint's address only from that endpoint's
//! first message: Linux does not announce back the endpoints it creates for
//! channels the device announced (vrb `rpmsg_create_channel` leaves
//! `announce` false when the remote named the channel). Until then the host
//! side of the channel can send nothing; its messages wait in the host
//! socket.

use std::collections::VecDeque;

use crate::error::{Error, Result};
use crate::protocol::{RPMSG_ADDR_ANY, RPMSG_NS_ADDR, RPMSG_RESERVED_ADDRESSES};

/// Guest-announced channels the device takes at most.
pub const MAX_GUEST_CHANNELS: usize = 32;
/// Device-side addresses of guest-announced channels are taken from here
/// up to [`RPMSG_RESERVED_ADDRESSES`], skipping configured ones.
pub const GUEST_LOCAL_BASE: u32 = 0x300;

/// Spare message buffers a channel keeps.
const SPARE: usize = 64;

/// Who made a channel.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `--channel` on the command line; the device announces it.
    Configured,
    /// The guest announced it (RPMSG_CREATE_DEV_IOCTL or an in-kernel
    /// driver); its guest address is known from the start.
    Guest,
}

/// One channel.
#[derive(Debug)]
pub struct Channel {
    /// The channel name.
    pub name: String,
    /// The device-side address.
    pub local: u32,
    /// The guest endpoint, once known.
    pub remote: Option<u32>,
    /// Who made it.
    pub origin: Origin,
    to_host: VecDeque<Vec<u8>>,
    /// Buffers of sent messages, kept for the next ones so that a slow
    /// peer does not cost an allocation per message (at most [`SPARE`]).
    spare: Vec<Vec<u8>>,
    /// Guest messages dropped because the host peer was slow or absent.
    pub dropped: u64,
}

impl Channel {
    fn new(name: String, local: u32, remote: Option<u32>, origin: Origin) -> Self {
        Channel {
            name,
            local,
            remote,
            origin,
            to_host: VecDeque::new(),
            spare: Vec::new(),
            dropped: 0,
        }
    }

    /// Guest messages waiting for the host peer.
    pub fn queued(&self) -> usize {
        self.to_host.len()
    }

    /// The oldest waiting message.
    pub fn front(&self) -> Option<&[u8]> {
        self.to_host.front().map(Vec::as_slice)
    }

    /// The oldest waiting messages, as many as fit in `out`; returns how
    /// many.
    pub fn waiting<'a>(&'a self, out: &mut [&'a [u8]]) -> usize {
        let mut n = 0;
        for (slot, msg) in out.iter_mut().zip(&self.to_host) {
            *slot = msg;
            n += 1;
        }
        n
    }

    /// Drops the `n` oldest waiting messages (they were sent).
    pub fn pop(&mut self, n: usize) {
        for _ in 0..n {
            match self.to_host.pop_front() {
                Some(buf) if self.spare.len() < SPARE => self.spare.push(buf),
                Some(_) => {}
                None => break,
            }
        }
    }
}

/// Where a guest message goes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The channel's slot.
    pub slot: usize,
    /// The message told the device the guest endpoint's address (first
    /// message, or the endpoint changed): the host side can send now.
    pub learned: bool,
}

/// The table. Slots are stable (a channel keeps its slot for its life), so
/// the device can use them in event tokens.
#[derive(Debug)]
pub struct Endpoints {
    slots: Vec<Option<Channel>>,
    configured: usize,
    queue_limit: usize,
}

impl Endpoints {
    /// A table with the configured channels (name, device-side address) in
    /// slots 0.., each holding up to `queue_limit` messages for its host
    /// peer.
    pub fn new(configured: impl IntoIterator<Item = (String, u32)>, queue_limit: usize) -> Self {
        let slots: Vec<_> = configured
            .into_iter()
            .map(|(name, addr)| Some(Channel::new(name, addr, None, Origin::Configured)))
            .collect();
        Endpoints {
            configured: slots.len(),
            slots,
            queue_limit,
        }
    }

    /// The channel in `slot`.
    pub fn get(&self, slot: usize) -> Option<&Channel> {
        self.slots.get(slot)?.as_ref()
    }

    /// The channel in `slot`, mutably.
    pub fn get_mut(&mut self, slot: usize) -> Option<&mut Channel> {
        self.slots.get_mut(slot)?.as_mut()
    }

    /// Number of slots, used or not.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there are no slots at all.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The configured channels, in order: what the device announces.
    pub fn configured(&self) -> impl Iterator<Item = &Channel> {
        self.slots.iter().take(self.configured).flatten()
    }

    /// Finds the channel of a message from guest address `src` to device
    /// address `dst`: the channel at `dst`, else the guest-announced channel
    /// whose guest endpoint is `src`. Learns `src` as the channel's guest
    /// endpoint.
    pub fn route(&mut self, src: u32, dst: u32) -> Result<Route> {
        let slot = self
            .slots
            .iter()
            .position(|c| c.as_ref().is_some_and(|c| c.local == dst))
            .or_else(|| {
                self.slots.iter().position(|c| {
                    c.as_ref()
                        .is_some_and(|c| c.origin == Origin::Guest && c.remote == Some(src))
                })
            })
            .ok_or(Error::NoRecipient { src, dst })?;
        let channel = self.get_mut(slot).ok_or(Error::NoRecipient { src, dst })?;
        // The latest sender wins: a guest driver that rebinds gets a new
        // address, and the host must follow it.
        let learned = channel.remote != Some(src);
        channel.remote = Some(src);
        Ok(Route { slot, learned })
    }

    /// The guest announced channel `name` at its address `addr`: gives it a
    /// device-side address and a slot.
    pub fn guest_create(&mut self, name: &str, addr: u32) -> Result<usize> {
        let refuse = |reason| Error::GuestChannel {
            name: name.to_owned(),
            addr,
            reason,
        };
        if addr == RPMSG_NS_ADDR || addr == RPMSG_ADDR_ANY {
            return Err(refuse("not an endpoint address"));
        }
        let guests = self
            .slots
            .iter()
            .flatten()
            .filter(|c| c.origin == Origin::Guest);
        if guests.clone().any(|c| c.remote == Some(addr)) {
            return Err(refuse("already announced"));
        }
        if guests.count() >= MAX_GUEST_CHANNELS {
            return Err(refuse("too many guest channels"));
        }
        let local = (GUEST_LOCAL_BASE..RPMSG_RESERVED_ADDRESSES)
            .find(|&a| a != RPMSG_NS_ADDR && !self.local_in_use(a))
            .ok_or_else(|| refuse("no free device address"))?;
        let channel = Channel::new(name.to_owned(), local, Some(addr), Origin::Guest);
        let free = self
            .slots
            .iter()
            .skip(self.configured)
            .position(Option::is_none)
            .map(|i| i + self.configured);
        Ok(match free {
            Some(slot) => {
                if let Some(s) = self.slots.get_mut(slot) {
                    *s = Some(channel);
                }
                slot
            }
            None => {
                self.slots.push(Some(channel));
                self.slots.len() - 1
            }
        })
    }

    /// The guest withdrew channel `name` at `addr`; returns its slot.
    pub fn guest_destroy(&mut self, name: &str, addr: u32) -> Result<usize> {
        let slot = self
            .slots
            .iter()
            .position(|c| {
                c.as_ref().is_some_and(|c| {
                    c.origin == Origin::Guest && c.remote == Some(addr) && c.name == name
                })
            })
            .ok_or_else(|| Error::GuestChannel {
                name: name.to_owned(),
                addr,
                reason: "destroyed but never announced",
            })?;
        if let Some(s) = self.slots.get_mut(slot) {
            *s = None;
        }
        Ok(slot)
    }

    /// Queues a guest message for the host peer of `slot`, or drops it
    /// (counted) when the queue is full.
    pub fn queue_to_host(&mut self, slot: usize, msg: &[u8]) -> Result<()> {
        let limit = self.queue_limit;
        let Some(channel) = self.get_mut(slot) else {
            return Ok(());
        };
        if channel.to_host.len() >= limit {
            channel.dropped += 1;
            return Err(Error::QueueFull {
                name: channel.name.clone(),
                dropped: channel.dropped,
            });
        }
        let mut buf = channel.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(msg);
        channel.to_host.push_back(buf);
        Ok(())
    }

    /// The guest's endpoints are gone (its driver was reset): forgets every
    /// guest address and guest-announced channel. Returns the freed slots.
    pub fn forget_guest(&mut self) -> Vec<usize> {
        let mut freed = Vec::new();
        for (slot, entry) in self.slots.iter_mut().enumerate() {
            match entry {
                Some(c) if c.origin == Origin::Guest => {
                    *entry = None;
                    freed.push(slot);
                }
                Some(c) => c.remote = None,
                None => {}
            }
        }
        freed
    }

    fn local_in_use(&self, addr: u32) -> bool {
        self.slots.iter().flatten().any(|c| c.local == addr)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn table() -> Endpoints {
        Endpoints::new(
            [("rpmsg-tty".into(), 0x400), ("rpmsg-raw".into(), 0x401)],
            2,
        )
    }

    #[test]
    fn first_message_teaches_the_guest_address() {
        let mut t = table();
        assert_eq!(t.get(0).unwrap().remote, None);
        assert_eq!(
            t.route(1024, 0x400).unwrap(),
            Route {
                slot: 0,
                learned: true
            }
        );
        assert_eq!(t.get(0).unwrap().remote, Some(1024));
        assert_eq!(
            t.route(1024, 0x400).unwrap(),
            Route {
                slot: 0,
                learned: false
            }
        );
        // A rebound guest driver has a new address.
        assert_eq!(
            t.route(1030, 0x400).unwrap(),
            Route {
                slot: 0,
                learned: true
            }
        );
        assert!(matches!(
            t.route(1024, 0x999),
            Err(Error::NoRecipient {
                src: 1024,
                dst: 0x999
            })
        ));
        assert_eq!(t.forget_guest(), Vec::<usize>::new());
        assert_eq!(t.get(0).unwrap().remote, None);
    }

    #[test]
    fn guest_channels_get_a_device_address_and_route_by_source() {
        let mut t = table();
        let slot = t.guest_create("my-svc", 2000).unwrap();
        assert_eq!(slot, 2);
        let c = t.get(slot).unwrap();
        assert_eq!(
            (c.local, c.remote, c.origin),
            (GUEST_LOCAL_BASE, Some(2000), Origin::Guest)
        );
        // Whatever device address the guest picked, its source finds it.
        assert_eq!(t.route(2000, 0x123).unwrap().slot, slot);
        let _ = t.guest_create("my-svc", 2000).unwrap_err();
        let _ = t.guest_create("bad", RPMSG_NS_ADDR).unwrap_err();
        let _ = t.guest_destroy("other", 2000).unwrap_err();
        assert_eq!(t.guest_destroy("my-svc", 2000).unwrap(), slot);
        assert!(t.get(slot).is_none());
        // The slot is reused.
        assert_eq!(t.guest_create("again", 2001).unwrap(), slot);
        assert_eq!(t.forget_guest(), vec![slot]);
    }

    #[test]
    fn guest_channels_are_bounded() {
        let mut t = table();
        for i in 0..MAX_GUEST_CHANNELS {
            t.guest_create("svc", 5000 + u32::try_from(i).unwrap())
                .unwrap();
        }
        assert!(matches!(
            t.guest_create("svc", 9999),
            Err(Error::GuestChannel { .. })
        ));
    }

    #[test]
    fn host_queue_is_bounded_and_counts_drops() {
        let mut t = table();
        t.queue_to_host(1, b"a").unwrap();
        t.queue_to_host(1, b"b").unwrap();
        assert!(matches!(
            t.queue_to_host(1, b"c"),
            Err(Error::QueueFull { dropped: 1, .. })
        ));
        assert!(matches!(
            t.queue_to_host(1, b"d"),
            Err(Error::QueueFull { dropped: 2, .. })
        ));
        let c = t.get_mut(1).unwrap();
        assert_eq!(c.queued(), 2);
        assert_eq!(c.front(), Some(&b"a"[..]));
        c.pop(1);
        assert_eq!(c.front(), Some(&b"b"[..]));
        let mut out = [&[][..]; 4];
        assert_eq!(c.waiting(&mut out), 1);
        assert_eq!(out[0], b"b");
        c.pop(5);
        assert_eq!(c.queued(), 0);
        // The sent messages' buffers carry the next ones.
        assert_eq!(c.spare.len(), 2);
        t.queue_to_host(1, b"e").unwrap();
        assert_eq!(t.get(1).unwrap().front(), Some(&b"e"[..]));
        assert_eq!(t.get(1).unwrap().spare.len(), 1);
    }
}
