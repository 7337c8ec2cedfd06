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

use std::collections::VecDeque;
use std::io;
use std::time::Duration;
use vhost_device_common::IoError;

use vhost_device_common::{EventRegistry, EventSet, RateLimited};
use vmm_sys_util::timerfd::TimerFd;

use super::endpoint::{Connection, Endpoint};
use super::HciBackend;
use crate::error::Result;
use crate::packet::{Framer, Packet, MAX_PACKET};
use crate::rx::Rx;

/// Token of the connection.
const LINK: u16 = 0;
/// Token of the reconnect timer.
const TIMER: u16 = 1;
/// Most bytes waiting to be written to the controller.
const OUT_LIMIT: usize = 256 << 10;
/// Hardware Error event code.
const EVT_HARDWARE_ERROR: u8 = 0x10;

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
}

impl Link {
    /// A backend for `endpoint`, retrying a lost connection every `retry`.
    /// It connects when the device is activated.
    pub fn new(endpoint: Endpoint, retry: Duration) -> Result<Self> {
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
        })
    }

    /// Whether the controller is connected.
    pub fn connected(&self) -> bool {
        self.conn.is_some()
    }

    fn connect(&mut self, rx: &mut Rx) {
        match self.endpoint.connect() {
            Ok(conn) => {
                log::info!("controller {}: connected", self.endpoint);
                self.conn = Some(conn);
                self.framer.clear();
                self.connections += 1;
                if self.connections > 1 {
                    self.parsed
                        .push_back(Ok(Packet::event(EVT_HARDWARE_ERROR, &[0])));
                    self.deliver_parsed(rx);
                }
                self.update_interest();
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
        self.conn = None;
        self.interest = None;
        self.framer.clear();
        self.out.clear();
        self.written = 0;
        self.out_bytes = 0;
        self.arm_timer();
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
        self.connect(&mut rx);
        Ok(())
    }

    fn send(&mut self, packet: Packet, _rx: &mut Rx) -> Result<()> {
        if self.conn.is_none() {
            let kind = packet.kind();
            self.log
                .warn(|| format!("controller not connected: {kind:?} packet dropped"));
            return Ok(());
        }
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
                    self.connect(rx);
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
        self.update_interest();
    }
}
