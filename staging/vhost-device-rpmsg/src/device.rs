// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The virtio-rpmsg device: decodes TX chains, hands them to the channel
//! table and the host ports, and fills RX buffers from the host.
//!
//! - TX chains are returned as soon as they are read. The driver blocks for
//!   15 s when it has no free TX buffer (vrb `rpmsg_send_offchannel_raw`),
//!   so a slow host peer must never hold one: its messages wait in a
//!   bounded queue instead, and are dropped (counted, logged) beyond it.
//! - RX buffers are held until there is something to put in them. A host
//!   port is read only while its channel knows its guest endpoint and a
//!   buffer is free; otherwise the message stays in the host socket, which
//!   pushes back on the host program.
//! - Name-service announcements go out at the first RX kick (the driver
//!   kicks RX right after DRIVER_OK) and once more later for channels whose
//!   guest endpoint is still unknown, in case the guest's `rpmsg_ns` was not
//!   listening yet (it drops what arrives before it binds).

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use log::{debug, info};
use vhost_device_common::{
    DescChain, DeviceResult, EventRegistry, EventSet, GuestMem, Queues, RateLimited, VirtioDevice,
};
use vm_memory::ByteValued;
use vmm_sys_util::timerfd::TimerFd;

use crate::backend::mmsg::BATCH;
use crate::backend::unix::{Listener, UnixPort};
use crate::backend::Port;
use crate::batch::{deliver, RxBatch, TxBatch};
use crate::endpoints::Endpoints;
use crate::error::{Error, Result};
use crate::message::Message;
use crate::ports::{PortSlot, Tokens};
use crate::protocol::{
    rpmsg_ns_msg, Announcement, NsOp, NUM_QUEUES, RPMSG_MTU, RPMSG_NS_ADDR, RX_QUEUE, TX_QUEUE,
    VIRTIO_RPMSG_F_NS,
};

/// How long after the first announcement the device announces again the
/// channels no guest endpoint has used yet.
pub const REANNOUNCE_AFTER: Duration = Duration::from_secs(2);
/// How many times it does so.
pub const REANNOUNCE_TIMES: u8 = 2;
/// RX buffers held at most (the driver posts at most 256).
const MAX_RX_HELD: usize = 1024;

/// What a device is built from.
#[derive(Debug)]
pub struct DeviceParts {
    /// The configured channels: name, device-side address, host port.
    pub channels: Vec<(String, u32, Box<dyn Port>)>,
    /// Where sockets of guest-announced channels go, if anywhere.
    pub guest_dir: Option<PathBuf>,
    /// Guest messages queued per channel for a slow or absent host peer.
    pub queue_limit: usize,
    /// Permissions of the sockets of guest-announced channels.
    pub socket_mode: u32,
}

/// Message counters of one session.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Guest messages handed to a host port.
    pub to_host: u64,
    /// Host messages put in RX buffers.
    pub to_guest: u64,
    /// Guest messages dropped: malformed, oversize, unknown address, or a
    /// full host queue.
    pub dropped: u64,
}

/// The device of one guest session.
#[derive(Debug)]
pub struct RpmsgDevice {
    endpoints: Endpoints,
    ports: Vec<Option<PortSlot>>,
    guest_dir: Option<PathBuf>,
    socket_mode: u32,
    rx_free: VecDeque<DescChain>,
    ns_out: VecDeque<(u32, rpmsg_ns_msg)>,
    events: Option<EventRegistry>,
    timer: TimerFd,
    announced: bool,
    reannounce_left: u8,
    stats: Stats,
    log: RateLimited,
    /// This kick's guest messages, sent per channel in one call.
    tx_batch: TxBatch,
    /// Host messages of one receive call.
    rx_batch: RxBatch,
    /// Slots whose epoll interest may have changed during a TX drain.
    touched: Vec<usize>,
}

impl RpmsgDevice {
    /// A device with the given channels.
    pub fn new(parts: DeviceParts) -> Result<Self> {
        let mut ports = Vec::new();
        let mut names = Vec::new();
        for (name, addr, port) in parts.channels {
            names.push((name, addr));
            ports.push(Some(PortSlot::new(port)));
        }
        Ok(RpmsgDevice {
            endpoints: Endpoints::new(names, parts.queue_limit),
            ports,
            guest_dir: parts.guest_dir,
            socket_mode: parts.socket_mode,
            rx_free: VecDeque::new(),
            ns_out: VecDeque::new(),
            events: None,
            timer: TimerFd::new()
                .map_err(|e| Error::io("timerfd")(std::io::Error::from_raw_os_error(e.errno())))?,
            announced: false,
            reannounce_left: 0,
            stats: Stats::default(),
            log: RateLimited::default(),
            tx_batch: TxBatch::default(),
            rx_batch: RxBatch::default(),
            touched: Vec::new(),
        })
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// The channel table.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// The one place a dropped guest message is counted and logged.
    fn report(&mut self, e: &Error) {
        self.stats.dropped += 1;
        self.log.warn(|| format!("dropped: {e}"));
    }

    // ---- guest to host -------------------------------------------------

    /// Handles every TX chain and returns it at once. The messages leave
    /// for their host peers in batches (every [`crate::batch::TX_BATCH`]
    /// messages and at the end of the drain), before the driver hears of
    /// its buffers.
    fn process_tx(&mut self, queues: &mut Queues<'_>) {
        let Some(mut queue) = queues.get(TX_QUEUE) else {
            return;
        };
        queue.drain(|chain, mem| {
            if let Err(e) = self.handle_tx(&chain, mem) {
                self.report(&e);
            }
            Some(0)
        });
        self.flush_tx();
        drop(queue);
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort_unstable();
        touched.dedup();
        for &slot in &touched {
            self.sync(slot);
        }
        touched.clear();
        self.touched = touched;
        if self.reannounce_left > 0 && self.endpoints.configured().all(|c| c.remote.is_some()) {
            // Every channel is in use: no re-announcement will be needed,
            // and an idle device must not wake up for one.
            self.reannounce_left = 0;
            let _ = self.timer.clear();
        }
        self.fill_rx(queues);
    }

    /// Decodes a TX chain straight into the batch.
    fn handle_tx(&mut self, chain: &DescChain, mem: &GuestMem) -> Result<()> {
        if self.tx_batch.is_full() {
            self.flush_tx();
        }
        let Some(buf) = self.tx_batch.next_buf() else {
            return Err(Error::io("TX batch")(
                std::io::ErrorKind::OutOfMemory.into(),
            ));
        };
        match Message::decode(&mut chain.reader(mem), buf)? {
            Message::Ns { ann, .. } => {
                // Batched messages go to the channels as they were before
                // this message changes the table (a reused slot).
                self.flush_tx();
                self.guest_ns(&ann)
            }
            Message::Data { src, dst, payload } => {
                let len = payload.len();
                let route = self.endpoints.route(src, dst)?;
                if self.touched.last() != Some(&route.slot) {
                    self.touched.push(route.slot);
                }
                if len == 0 {
                    // A seqpacket peer cannot tell an empty message from a
                    // hang-up, so empty messages stop here.
                    debug!("empty message from {src:#x} to {dst:#x} not forwarded");
                    return Ok(());
                }
                self.tx_batch.push(route.slot, len);
                Ok(())
            }
        }
    }

    /// Sends the batched guest messages, one call per run to the same
    /// channel; what a peer does not take now is queued behind the ones
    /// already waiting.
    fn flush_tx(&mut self) {
        let mut start = 0;
        while let Some((slot, end)) = self.tx_batch.run_from(start) {
            self.send_run(slot, start..end);
            start = end;
        }
        self.tx_batch.clear();
    }

    fn send_run(&mut self, slot: usize, run: std::ops::Range<usize>) {
        let mut sent = 0;
        let waiting = self.endpoints.get(slot).map_or(0, |c| c.queued());
        if let (0, Some(Some(p))) = (waiting, self.ports.get_mut(slot)) {
            let mut out = [&[][..]; BATCH];
            match p
                .port
                .send_many(self.tx_batch.payloads(run.clone(), &mut out))
            {
                Ok(n) => sent = n,
                Err(e) if is_transient(&e) => {}
                Err(e) => {
                    debug!("channel slot {slot}: host peer send failed: {e}");
                    p.port.disconnect();
                    p.forget_connection();
                }
            }
        }
        self.stats.to_host += sent as u64;
        for i in run.skip(sent) {
            let queued = self.endpoints.queue_to_host(slot, self.tx_batch.payload(i));
            if let Err(e) = queued {
                self.report(&e);
            }
        }
    }

    /// Sends what waits for a host peer that became writable.
    fn flush_to_host(&mut self, slot: usize) {
        let (Some(channel), Some(Some(p))) =
            (self.endpoints.get_mut(slot), self.ports.get_mut(slot))
        else {
            return;
        };
        loop {
            let mut out = [&[][..]; BATCH];
            let n = channel.waiting(&mut out);
            if n == 0 {
                break;
            }
            match p.port.send_many(out.get(..n).unwrap_or_default()) {
                Ok(sent) => {
                    channel.pop(sent);
                    self.stats.to_host += sent as u64;
                    if sent < n {
                        break;
                    }
                }
                Err(e) if is_transient(&e) => break,
                Err(e) => {
                    debug!("channel '{}': host peer send failed: {e}", channel.name);
                    p.port.disconnect();
                    p.forget_connection();
                    break;
                }
            }
        }
    }

    /// A name-service message from the guest.
    fn guest_ns(&mut self, ann: &Announcement) -> Result<()> {
        match ann.op {
            NsOp::Create => {
                let Some(dir) = self.guest_dir.clone() else {
                    return Err(Error::GuestChannel {
                        name: ann.name.clone(),
                        addr: ann.addr,
                        reason: "no --guest-channel-dir to put its socket in",
                    });
                };
                if ann.name.contains('/') || ann.name.starts_with('.') {
                    return Err(Error::GuestChannel {
                        name: ann.name.clone(),
                        addr: ann.addr,
                        reason: "name is not usable as a file name",
                    });
                }
                let slot = self.endpoints.guest_create(&ann.name, ann.addr)?;
                let path = dir.join(format!("{}.{}", ann.name, ann.addr));
                let port = match Listener::bind(&path, self.socket_mode) {
                    Ok(listener) => UnixPort::new(Arc::new(listener)),
                    Err(e) => {
                        let _ = self.endpoints.guest_destroy(&ann.name, ann.addr);
                        return Err(e);
                    }
                };
                info!(
                    "guest channel '{}' at {:#x}: {}",
                    ann.name,
                    ann.addr,
                    path.display()
                );
                let slot_state = PortSlot::new(Box::new(port));
                if let Some(events) = &self.events {
                    slot_state
                        .register_listener(events, slot)
                        .map_err(Error::io("register a guest channel socket"))?;
                }
                if self.ports.len() <= slot {
                    self.ports.resize_with(slot + 1, || None);
                }
                if let Some(entry) = self.ports.get_mut(slot) {
                    *entry = Some(slot_state);
                }
                Ok(())
            }
            NsOp::Destroy => {
                let slot = self.endpoints.guest_destroy(&ann.name, ann.addr)?;
                info!("guest channel '{}' at {:#x} removed", ann.name, ann.addr);
                self.drop_port(slot);
                Ok(())
            }
        }
    }

    fn drop_port(&mut self, slot: usize) {
        if let Some(mut p) = self.ports.get_mut(slot).and_then(Option::take) {
            if let Some(events) = &self.events {
                p.unregister(events);
            }
        }
    }

    // ---- host to guest -------------------------------------------------

    /// Takes the RX buffers the driver posted; announces the channels at
    /// the first kick.
    fn process_rx(&mut self, queues: &mut Queues<'_>) {
        let Some(mut queue) = queues.get(RX_QUEUE) else {
            return;
        };
        let was_empty = self.rx_free.is_empty();
        queue.drain(|chain, _| {
            if self.rx_free.len() < MAX_RX_HELD {
                self.rx_free.push_back(chain);
                None
            } else {
                Some(0)
            }
        });
        drop(queue);
        if !self.announced {
            self.announced = true;
            self.announce_all(false);
            self.reannounce_left = REANNOUNCE_TIMES;
            self.arm_timer();
        }
        self.fill_rx(queues);
        if was_empty && !self.rx_free.is_empty() {
            self.sync_all();
        }
    }

    /// Queues an NS CREATE for each configured channel, or only for those
    /// no guest endpoint has used yet.
    fn announce_all(&mut self, only_unused: bool) {
        for c in self.endpoints.configured() {
            if only_unused && c.remote.is_some() {
                continue;
            }
            let ann = Announcement {
                name: c.name.clone(),
                addr: c.local,
                op: NsOp::Create,
            };
            self.ns_out.push_back((c.local, ann.encode()));
        }
    }

    fn arm_timer(&mut self) {
        if self.reannounce_left > 0 {
            if let Err(e) = self.timer.reset(REANNOUNCE_AFTER, None) {
                self.log.warn(|| format!("re-announce timer: {e}"));
            }
        }
    }

    /// Puts waiting announcements into free RX buffers.
    fn fill_rx(&mut self, queues: &mut Queues<'_>) {
        if self.ns_out.is_empty() || self.rx_free.is_empty() {
            return;
        }
        let Some(mut queue) = queues.get(RX_QUEUE) else {
            return;
        };
        while let Some((src, ns)) = self.ns_out.pop_front() {
            let (free, log) = (&mut self.rx_free, &self.log);
            if !deliver(free, log, &mut queue, src, RPMSG_NS_ADDR, ns.as_slice()) {
                self.ns_out.push_front((src, ns));
                break;
            }
        }
    }

    /// Moves messages from a host port into RX buffers while both last.
    fn read_host(&mut self, queues: &mut Queues<'_>, slot: usize) {
        let Some(remote_local) = self
            .endpoints
            .get(slot)
            .and_then(|c| Some((c.remote?, c.local)))
        else {
            return;
        };
        let (remote, local) = remote_local;
        let Some(mut queue) = queues.get(RX_QUEUE) else {
            return;
        };
        // No more than there are buffers: the rest stays in the socket and
        // pushes back on the host program.
        let room = self.rx_free.len().min(BATCH);
        let Some(p) = self.ports.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        if room == 0 {
            return;
        }
        // One call per wake-up: if the batch comes back full, more may
        // wait, and the level-triggered epoll wakes the worker again for
        // them; trying again now would cost a call that usually finds none.
        let (bufs, lens) = self.rx_batch.room(room);
        let got = match p.port.recv_many(bufs, lens) {
            Ok(got) => got,
            Err(e) => {
                if e.kind() != std::io::ErrorKind::WouldBlock || p.hung_up {
                    p.port.disconnect();
                    p.forget_connection();
                }
                return;
            }
        };
        let mut hung_up = false;
        for i in 0..got {
            match self.rx_batch.len_of(i) {
                0 => {
                    hung_up = true;
                    break;
                }
                n if n <= RPMSG_MTU => {
                    let (free, log) = (&mut self.rx_free, &self.log);
                    if deliver(free, log, &mut queue, local, remote, self.rx_batch.msg(i)) {
                        self.stats.to_guest += 1;
                    }
                }
                n => {
                    let name = self.endpoints.get(slot).map(|c| c.name.clone());
                    self.log.warn(|| {
                        format!("channel {name:?}: host message of {n}+ bytes over the MTU (496) dropped")
                    });
                }
            }
        }
        // Fewer than asked for: the socket is empty for now.
        if let Some(p) = self.ports.get_mut(slot).and_then(Option::as_mut) {
            if hung_up || (got < room && p.hung_up) {
                p.port.disconnect();
                p.forget_connection();
            }
        }
    }

    // ---- epoll interest --------------------------------------------------

    /// What slot's connection should be watched for.
    fn wanted(&self, slot: usize) -> EventSet {
        let Some(c) = self.endpoints.get(slot) else {
            return EventSet::empty();
        };
        let mut want = EventSet::empty();
        if c.remote.is_some() && !self.rx_free.is_empty() {
            want |= EventSet::IN;
        }
        if c.queued() > 0 {
            want |= EventSet::OUT;
        }
        want
    }

    fn sync(&mut self, slot: usize) {
        let want = self.wanted(slot);
        let (Some(events), Some(Some(p))) = (&self.events, self.ports.get_mut(slot)) else {
            return;
        };
        if let Err(e) = p.watch(events, slot, want) {
            self.log.warn(|| format!("channel slot {slot}: epoll: {e}"));
        }
    }

    fn sync_all(&mut self) {
        for slot in 0..self.ports.len() {
            self.sync(slot);
        }
    }

    fn connection_event(&mut self, queues: &mut Queues<'_>, slot: usize, events: EventSet) {
        if events.intersects(EventSet::HANG_UP | EventSet::ERROR | EventSet::READ_HANG_UP) {
            if let Some(Some(p)) = self.ports.get_mut(slot) {
                p.hung_up = true;
            }
        }
        if events.contains(EventSet::OUT) {
            self.flush_to_host(slot);
        }
        if events.intersects(EventSet::IN | EventSet::HANG_UP | EventSet::ERROR) {
            self.read_host(queues, slot);
        }
        self.after_host_io(slot);
    }

    fn after_host_io(&mut self, slot: usize) {
        if self.rx_free.is_empty() {
            self.sync_all();
        } else {
            self.sync(slot);
        }
    }

    fn listener_event(&mut self, slot: usize) {
        let Some(Some(p)) = self.ports.get_mut(slot) else {
            return;
        };
        match p.port.accept() {
            Ok(true) => {
                p.forget_connection();
                debug!("channel slot {slot}: host peer connected");
                self.flush_to_host(slot);
            }
            Ok(false) => {}
            Err(e) => self
                .log
                .warn(|| format!("channel slot {slot}: accept: {e}")),
        }
        self.sync(slot);
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::NotConnected
    )
}

impl VirtioDevice for RpmsgDevice {
    /// Host endpoints are Unix sockets created, bound and listened on (or
    /// connected) per connection.
    fn seccomp_policy() -> vhost_device_common::SeccompPolicy {
        vhost_device_common::SeccompPolicy {
            extra: &[
                libc::SYS_socket,
                libc::SYS_bind,
                libc::SYS_listen,
                libc::SYS_connect,
                // A batch of host messages per call (backend::mmsg).
                libc::SYS_sendmmsg,
                libc::SYS_recvmmsg,
                // Their permissions (--socket-mode); glibc's chmod is
                // fchmodat, or chmod on older x86-64 builds.
                libc::SYS_fchmodat,
                #[cfg(target_arch = "x86_64")]
                libc::SYS_chmod,
            ],
            ..Default::default()
        }
    }

    fn num_queues(&self) -> usize {
        NUM_QUEUES
    }

    fn features(&self) -> u64 {
        VIRTIO_RPMSG_F_NS
    }

    fn activate(&mut self, events: EventRegistry) -> DeviceResult {
        events.register(
            &self.timer.as_raw_fd(),
            EventSet::IN,
            Tokens::Timer.encode(),
        )?;
        for (slot, p) in self.ports.iter().enumerate() {
            if let Some(p) = p {
                p.register_listener(&events, slot)?;
            }
        }
        self.events = Some(events);
        self.sync_all();
        Ok(())
    }

    fn process_queue(&mut self, queues: &mut Queues<'_>, index: usize) -> DeviceResult {
        match index {
            RX_QUEUE => self.process_rx(queues),
            TX_QUEUE => self.process_tx(queues),
            _ => {}
        }
        Ok(())
    }

    fn handle_event(
        &mut self,
        queues: &mut Queues<'_>,
        token: u16,
        events: EventSet,
    ) -> DeviceResult {
        match Tokens::decode(token) {
            Tokens::Timer => {
                let _ = self.timer.wait();
                self.reannounce_left = self.reannounce_left.saturating_sub(1);
                self.announce_all(true);
                self.fill_rx(queues);
                self.arm_timer();
            }
            Tokens::Listener(slot) => self.listener_event(slot),
            Tokens::Connection(slot) => self.connection_event(queues, slot, events),
        }
        Ok(())
    }

    fn queue_stopped(&mut self, index: usize) {
        if index == RX_QUEUE {
            // The driver is going away: its buffers and endpoints with it.
            self.forget_guest();
        }
    }

    fn reset(&mut self) {
        self.forget_guest();
    }
}

impl RpmsgDevice {
    fn forget_guest(&mut self) {
        self.rx_free.clear();
        self.ns_out.clear();
        self.announced = false;
        self.reannounce_left = 0;
        let _ = self.timer.clear();
        for slot in self.endpoints.forget_guest() {
            self.drop_port(slot);
        }
        self.sync_all();
    }
}

impl Drop for RpmsgDevice {
    fn drop(&mut self) {
        let s = self.stats;
        info!(
            "session ended: {} messages to the host, {} to the guest, {} dropped",
            s.to_host, s.to_guest, s.dropped
        );
    }
}
