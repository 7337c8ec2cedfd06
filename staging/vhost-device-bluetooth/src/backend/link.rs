// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A controller outside the daemon, over a file descriptor: an H:4 byte
//! stream (re-framed from the headers) or the HCI user channel (one packet
//! per read and write).
//!
//! The connection sits on the worker's epoll. Reads stop while the RX
//! backlog is full (the fd is taken off the epoll, so nothing spins) and go
//! on when the guest re-posts buffers. Writes that would block wait in a
//! bounded queue, watched with EPOLLOUT. When the connection drops it is
//! retried from a timerfd on the same epoll; the guest's device stays. A
//! controller reached again is a different controller, or one that lost
//! its state, so the guest is sent a Hardware Error event (Core Vol 4 Part
//! E §7.7.16), on which Linux closes and re-opens hciN and runs its init
//! sequence again.
//!
//! An HCI user channel is bound once, at startup, and kept across
//! frontends in a [`HeldChannel`]: binding needs CAP_NET_ADMIN, which the
//! sandbox drops. A guest that used the controller leaves it dirty; the
//! next frontend (or the guest's own device reset) gets it back through an
//! HCI_Reset sent on the same socket, and whatever the controller sent
//! before that reset's Command Complete (the old guest's traffic) is
//! dropped. While such an adapter is gone, the guest's commands fail at
//! once with Hardware Failure rather than time out. The handover is
//! ordered: a new frontend's backend that finds the socket still with the
//! previous one (being torn down) waits for it, up to a second,
//! rather than bind it again (which fails while it is bound, and without
//! CAP_NET_ADMIN looks like a lost adapter); past that, its timer retries.

use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};
use vhost_device_common::IoError;

use vhost_device_common::{EventRegistry, EventSet, RateLimited};
use vmm_sys_util::timerfd::TimerFd;

use super::endpoint::{Connection, Endpoint, Handover, HeldChannel};
use super::HciBackend;
use crate::error::{Error, Result};
use crate::packet::{Framer, Kind, Packet, MAX_PACKET};
use crate::rx::Rx;

/// Token of the connection.
const LINK: u16 = 0;
/// Token of the reconnect timer.
const TIMER: u16 = 1;
/// Most bytes waiting to be written to the controller.
const OUT_LIMIT: usize = 256 << 10;
/// Hardware Error event code.
const EVT_HARDWARE_ERROR: u8 = 0x10;
/// Command Status event code.
const EVT_CMD_STATUS: u8 = 0x0f;
/// Command Complete event code.
const EVT_CMD_COMPLETE: u8 = 0x0e;
/// Hardware Failure error code (Core Vol 1 Part F §2.3).
const HARDWARE_FAILURE: u8 = 0x03;
/// HCI_Reset (Core Vol 4 Part E §7.3.2).
const HCI_RESET: u16 = 0x0c03;
/// How long packets are dropped while waiting for our HCI_Reset's Command
/// Complete: a controller that never answers must not silence the guest.
const RESET_WAIT: Duration = Duration::from_secs(2);
/// Most stale packets read off a reused socket before resetting it.
const DRAIN_LIMIT: usize = 1024;
/// How long a new frontend's backend waits, when it starts, for the
/// previous one (still being torn down) to hand the user channel over.
const HANDOVER_WAIT: Duration = Duration::from_secs(1);

/// The backend of `--backend unix:|tcp:|serial:|hci:`.
#[derive(Debug)]
pub struct Link {
    endpoint: Endpoint,
    conn: Option<Connection>,
    /// What the connection is registered for, if it is.
    interest: Option<EventSet>,
    framer: Framer,
    parsed: VecDeque<Result<Packet>>,
    out: VecDeque<Vec<u8>>,
    /// Bytes of `out`'s first packet already written.
    written: usize,
    out_bytes: usize,
    paused: bool,
    timer: TimerFd,
    retry: Duration,
    registry: Option<EventRegistry>,
    connections: u64,
    buf: Vec<u8>,
    log: RateLimited,
    /// The user channel bound at startup, for `hci:N`.
    held: Option<HeldChannel>,
    /// A guest sent something since the controller was last reset.
    dirty: bool,
    /// When our HCI_Reset went out, while its Command Complete is awaited.
    resetting: Option<Instant>,
    /// The loss of a capability-less adapter was logged.
    told_no_cap: bool,
}

impl Link {
    /// A backend for `endpoint`, retrying a lost connection every `retry`.
    /// It connects when the device is activated.
    pub fn new(endpoint: Endpoint, retry: Duration) -> Result<Self> {
        Self::with_held(endpoint, retry, None)
    }

    /// A backend that takes its connection from `held` while it is there,
    /// and gives it back when dropped.
    pub fn with_held(
        endpoint: Endpoint,
        retry: Duration,
        held: Option<HeldChannel>,
    ) -> Result<Self> {
        Ok(Link {
            endpoint,
            conn: None,
            interest: None,
            framer: Framer::from_controller(),
            parsed: VecDeque::new(),
            out: VecDeque::new(),
            written: 0,
            out_bytes: 0,
            paused: false,
            timer: TimerFd::new().map_err(|e| IoError::new("creating a timerfd", e.into()))?,
            retry: retry.max(Duration::from_millis(1)),
            registry: None,
            connections: 0,
            buf: vec![0; MAX_PACKET],
            log: RateLimited::default(),
            held,
            dirty: false,
            resetting: None,
            told_no_cap: false,
        })
    }

    /// Whether the controller is connected.
    pub fn connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Connects, waiting up to `handover` for a user channel that the
    /// previous frontend's backend still has.
    fn connect(&mut self, rx: &mut Rx, handover: Duration) {
        let opened = match self.held.as_ref().map(|held| held.take(handover)) {
            Some(Handover::Parked(parked)) => Ok((parked.conn, parked.dirty)),
            Some(Handover::Busy) => {
                // Not lost: the previous frontend's backend has not let go
                // yet. No bind (it would fail), no error; the timer retries.
                log::info!(
                    "controller {}: still held by the previous connection; waiting",
                    self.endpoint
                );
                self.arm_timer();
                return;
            }
            Some(Handover::Free) => self.endpoint.connect().map(|conn| {
                if let Some(held) = &self.held {
                    held.claim();
                }
                (conn, false)
            }),
            None => self.endpoint.connect().map(|conn| (conn, false)),
        };
        match opened {
            Ok((conn, dirty)) => {
                log::info!("controller {}: connected", self.endpoint);
                self.conn = Some(conn);
                self.framer.clear();
                self.connections += 1;
                if self.connections > 1 {
                    self.parsed
                        .push_back(Ok(Packet::event(EVT_HARDWARE_ERROR, &[0])));
                    self.deliver_parsed(rx);
                }
                if dirty {
                    self.reset_controller();
                }
                self.update_interest();
            }
            Err(Error::NotPermitted(index)) => {
                if !std::mem::replace(&mut self.told_no_cap, true) {
                    log::error!(
                        "controller hci{index}: lost, and binding its user channel again needs \
                         CAP_NET_ADMIN, which the sandbox dropped (run with --modcaps +net_admin \
                         to allow it); guest commands fail with Hardware Failure until then"
                    );
                }
                self.arm_timer();
            }
            Err(e) => {
                let endpoint = &self.endpoint;
                self.log
                    .warn(|| format!("controller {endpoint}: {e}; retrying"));
                self.arm_timer();
            }
        }
    }

    fn arm_timer(&mut self) {
        if let Err(e) = self.timer.reset(self.retry, None) {
            log::error!(
                "controller {}: cannot arm the reconnect timer: {e}",
                self.endpoint
            );
        }
    }

    fn disconnect(&mut self, why: &str) {
        if let (Some(conn), Some(registry)) = (&self.conn, &self.registry) {
            if self.interest.is_some() {
                let _ = registry.unregister(conn);
            }
        }
        self.log
            .warn(|| format!("controller {}: {why}; reconnecting", self.endpoint));
        if let (Some(held), Some(_)) = (&self.held, self.conn.take()) {
            held.release();
        }
        self.interest = None;
        self.framer.clear();
        self.out.clear();
        self.written = 0;
        self.out_bytes = 0;
        self.arm_timer();
    }

    /// Brings a controller a guest used back to a clean state over the same
    /// socket: stale packets are read off and dropped, then HCI_Reset goes
    /// out, and everything up to its Command Complete is dropped too.
    fn reset_controller(&mut self) {
        if let Some(conn) = &self.conn {
            for _ in 0..DRAIN_LIMIT {
                if conn.read(&mut self.buf).map_or(true, |n| n == 0) {
                    break;
                }
            }
        }
        self.parsed.clear();
        self.framer.clear();
        self.out.clear();
        self.written = 0;
        self.out_bytes = 0;
        let [lo, hi] = HCI_RESET.to_le_bytes();
        let reset = vec![Kind::Command.indicator(), lo, hi, 0];
        self.out_bytes = reset.len();
        self.out.push_back(reset);
        self.resetting = Some(Instant::now());
        self.dirty = false;
        log::info!("controller {}: resetting for a new guest", self.endpoint);
        self.flush();
    }

    /// Whether `packet` from the controller predates our HCI_Reset's
    /// completion (that completion included) and so is not the guest's.
    fn stale(&mut self, packet: &Packet) -> bool {
        let Some(since) = self.resetting else {
            return false;
        };
        if since.elapsed() > RESET_WAIT {
            self.resetting = None;
            self.log
                .warn(|| "controller did not complete HCI_Reset".into());
            return false;
        }
        let [lo, hi] = HCI_RESET.to_le_bytes();
        if packet.bytes().get(..2) == Some(&[Kind::Event.indicator(), EVT_CMD_COMPLETE])
            && packet.bytes().get(4..6) == Some(&[lo, hi])
        {
            self.resetting = None;
        }
        true
    }

    /// Answers a command a lost user-channel adapter cannot take: Command
    /// Status with Hardware Failure, so that the guest's stack fails it at
    /// once (binding it again may need a capability the daemon dropped).
    /// Stream controllers that are not there yet keep dropping commands:
    /// they come back with a Hardware Error, and Linux starts over.
    fn refuse(&mut self, packet: &Packet, rx: &mut Rx) {
        if self.held.is_none() {
            return;
        }
        if let Some(opcode) = packet.opcode() {
            if rx.reserve() {
                let [lo, hi] = opcode.to_le_bytes();
                rx.push(Packet::event(
                    EVT_CMD_STATUS,
                    &[HARDWARE_FAILURE, 1, lo, hi],
                ));
            }
        }
    }

    /// Registers the connection for what it waits for now.
    fn update_interest(&mut self) {
        let (Some(conn), Some(registry)) = (&self.conn, &self.registry) else {
            return;
        };
        let mut want = EventSet::empty();
        if !self.paused {
            want |= EventSet::IN;
        }
        if !self.out.is_empty() {
            want |= EventSet::OUT;
        }
        let result = match (self.interest, want.is_empty()) {
            (None, true) => return,
            (None, false) => registry.register(conn, want, LINK),
            (Some(_), true) => registry.unregister(conn),
            (Some(now), false) if now == want => return,
            (Some(_), false) => registry.modify(conn, want, LINK),
        };
        match result {
            Ok(()) => self.interest = (!want.is_empty()).then_some(want),
            Err(e) => log::error!("controller {}: epoll: {e}", self.endpoint),
        }
    }

    /// Writes queued packets until the connection would block.
    fn flush(&mut self) {
        while let Some(front) = self.out.front() {
            let Some(conn) = &self.conn else { return };
            match conn.write(front.get(self.written..).unwrap_or_default()) {
                Ok(n) => {
                    self.written += n;
                    if self.written >= front.len() {
                        self.out_bytes -= front.len();
                        self.written = 0;
                        self.out.pop_front();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.disconnect(&format!("write: {e}")),
            }
        }
        self.update_interest();
    }

    /// Moves parsed packets into the backlog while it has room.
    fn deliver_parsed(&mut self, rx: &mut Rx) {
        while let Some(front) = self.parsed.front() {
            if front.is_ok() && !rx.reserve() {
                self.paused = true;
                return;
            }
            match self.parsed.pop_front() {
                // The previous guest's, or our reset's completion.
                Some(Ok(packet)) if self.stale(&packet) => {}
                Some(Ok(packet)) => {
                    rx.push(packet);
                }
                Some(Err(e)) => {
                    let endpoint = &self.endpoint;
                    self.log
                        .warn(|| format!("controller {endpoint}: dropped: {e}"));
                }
                None => {}
            }
        }
    }

    /// Reads until the connection would block or the backlog is full.
    fn read(&mut self, rx: &mut Rx) {
        self.deliver_parsed(rx);
        while !self.paused {
            let Some(conn) = &self.conn else { return };
            match conn.read(&mut self.buf) {
                Ok(0) => return self.disconnect("closed by the controller"),
                Ok(n) => {
                    let data = self.buf.get(..n).unwrap_or_default();
                    if self.endpoint.is_stream() {
                        self.framer.push(data, &mut self.parsed);
                    } else {
                        self.parsed.push_back(Packet::from_controller(data));
                    }
                    self.deliver_parsed(rx);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.disconnect(&format!("read: {e}")),
            }
        }
        self.update_interest();
    }
}

impl HciBackend for Link {
    fn activate(&mut self, events: EventRegistry) -> Result<()> {
        events
            .register(&self.timer, EventSet::IN, TIMER)
            .map_err(|e| IoError::new("registering the reconnect timer", e))?;
        self.registry = Some(events);
        // Nothing can reach the guest before its first RX buffer anyway.
        let mut rx = Rx::new(1);
        self.connect(&mut rx, HANDOVER_WAIT);
        Ok(())
    }

    fn send(&mut self, packet: Packet, rx: &mut Rx) -> Result<()> {
        if self.conn.is_none() {
            let kind = packet.kind();
            self.log
                .warn(|| format!("controller not connected: {kind:?} packet dropped"));
            self.refuse(&packet, rx);
            return Ok(());
        }
        self.dirty = true;
        let bytes = packet.into_bytes();
        if self.out_bytes + bytes.len() > OUT_LIMIT {
            self.log
                .warn(|| "controller not reading: packet dropped".into());
            return Ok(());
        }
        self.out_bytes += bytes.len();
        self.out.push_back(bytes);
        self.flush();
        Ok(())
    }

    fn ready(&mut self, token: u16, rx: &mut Rx) -> Result<()> {
        match token {
            TIMER => {
                let _ = self.timer.wait();
                if self.conn.is_none() {
                    self.connect(rx, Duration::ZERO);
                }
            }
            LINK => {
                if !self.out.is_empty() {
                    self.flush();
                }
                self.read(rx);
            }
            _ => {}
        }
        Ok(())
    }

    fn resume(&mut self, rx: &mut Rx) -> Result<()> {
        self.paused = false;
        self.read(rx);
        Ok(())
    }

    fn reset(&mut self) {
        self.parsed.clear();
        self.framer.clear();
        self.paused = false;
        if self.dirty && self.held.is_some() && self.conn.is_some() {
            self.reset_controller();
        }
        self.update_interest();
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let (Some(held), Some(conn)) = (&self.held, self.conn.take()) else {
            return;
        };
        if let (Some(registry), Some(_)) = (&self.registry, self.interest) {
            let _ = registry.unregister(&conn);
        }
        held.put(conn, self.dirty || self.resetting.is_some());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::fd::{AsFd, AsRawFd as _};
    use std::os::unix::net::UnixListener;
    use std::thread;

    use vmm_sys_util::epoll::Epoll;

    use super::*;

    /// A connected Unix socket stands in for a bound user channel: the
    /// handover does not look at what the socket is.
    fn channel(dir: &tempfile::TempDir) -> (HeldChannel, std::os::unix::net::UnixStream) {
        let path = dir.path().join("hci");
        let listener = UnixListener::bind(&path).unwrap();
        let conn = Endpoint::Unix(path).connect().unwrap();
        let (peer, _) = listener.accept().unwrap();
        (HeldChannel::new(conn), peer)
    }

    /// `hci:N` of an adapter that is not there, so that a bind never
    /// succeeds: a backend is connected only by a handover.
    fn backend(held: &HeldChannel) -> Link {
        Link::with_held(
            Endpoint::Hci(0xfffe),
            Duration::from_millis(5),
            Some(held.clone()),
        )
        .unwrap()
    }

    fn registry(epoll: &Epoll) -> EventRegistry {
        // SAFETY: the epoll outlives the borrow, which is duplicated.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(epoll.as_raw_fd()) };
        EventRegistry::new(fd.as_fd(), 2).unwrap()
    }

    #[test]
    fn the_next_backend_waits_for_the_previous_to_hand_the_channel_over() {
        let dir = tempfile::tempdir().unwrap();
        let (held, _peer) = channel(&dir);
        let epoll = Epoll::new().unwrap();
        let mut first = backend(&held);
        first.activate(registry(&epoll)).unwrap();
        assert!(first.connected());
        // The next frontend's device starts while the previous one is
        // still being torn down.
        let mut second = backend(&held);
        let teardown = thread::spawn(move || {
            thread::sleep(Duration::from_millis(100));
            drop(first);
        });
        let started = Instant::now();
        second.activate(registry(&epoll)).unwrap();
        assert!(second.connected(), "no handover");
        assert!(started.elapsed() < HANDOVER_WAIT);
        teardown.join().unwrap();
    }

    #[test]
    fn a_holder_that_does_not_let_go_is_retried_not_reported_lost() {
        let dir = tempfile::tempdir().unwrap();
        let (held, _peer) = channel(&dir);
        let epoll = Epoll::new().unwrap();
        let mut first = backend(&held);
        first.activate(registry(&epoll)).unwrap();
        let mut second = backend(&held);
        second.activate(registry(&epoll)).unwrap();
        assert!(!second.connected());
        // No bind was tried: the capability error stays untold.
        assert!(!second.told_no_cap);
        drop(first);
        let mut rx = Rx::new(4);
        thread::sleep(Duration::from_millis(10));
        second.ready(TIMER, &mut rx).unwrap();
        assert!(second.connected(), "the timer's retry took it over");
    }

    #[test]
    fn a_lost_channel_is_free_for_the_next_bind() {
        let dir = tempfile::tempdir().unwrap();
        let (held, peer) = channel(&dir);
        let epoll = Epoll::new().unwrap();
        let mut first = backend(&held);
        first.activate(registry(&epoll)).unwrap();
        drop(peer);
        first.ready(LINK, &mut Rx::new(4)).unwrap();
        assert!(!first.connected());
        // Nobody has it: the next backend binds at once, without waiting.
        let started = Instant::now();
        assert!(matches!(held.take(HANDOVER_WAIT), Handover::Free));
        assert!(started.elapsed() < HANDOVER_WAIT / 2);
    }
}
