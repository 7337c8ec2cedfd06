// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The virtio-can device: decodes each request once ([`crate::command`]),
//! hands it to the [`Controller`] and the [`CanBackend`], and completes it.
//!
//! - TX: answered at once, or — with LATE_TX_ACK on a host side that
//!   confirms frames later — held until the host side reports the frame
//!   left, in order.
//! - RX: buffers the driver posts are held; frames from the host side fill
//!   them, and while there are none they wait in a bounded [`Backlog`].
//! - Control: START and STOP are completed once the transition is done;
//!   every request is completed, a malformed one with NOT_OK.

mod backlog;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::mem::size_of;

use log::{debug, info, warn};
use vhost_device_common::{
    ChainError, DescChain, DeviceResult, EventRegistry, EventSet, GuestMem, Queues, RateLimited,
    VirtioDevice,
};
use vm_memory::{ByteValued, Le16};

pub use backlog::Backlog;

use crate::backend::{BackendEvent, CanBackend, TxAck};
use crate::command::{check_negotiated, decode_tx, ControlCommand};
use crate::controller::Controller;
use crate::error::{Error, Result};
use crate::frame::CanFrame;
use crate::protocol::{
    virtio_can_config, virtio_can_control_in, virtio_can_rx, virtio_can_tx_in, CONTROL_QUEUE,
    NUM_QUEUES, RX_QUEUE, TX_QUEUE, VIRTIO_CAN_F_LATE_TX_ACK, VIRTIO_CAN_RESULT_NOT_OK,
    VIRTIO_CAN_RESULT_OK, VIRTIO_CAN_RX,
};

/// The event token of the backend's fd.
const BACKEND_TOKEN: u16 = 0;

/// Default number of received frames kept while the guest posts no buffer.
pub const DEFAULT_BACKLOG: usize = 1024;
/// [`DEFAULT_BACKLOG`] as the command line takes it.
pub const DEFAULT_BACKLOG_FLAG: u32 = 1024;

/// Held chains answered, `(head, used length)`, per queue, in order.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Completions {
    /// TX requests.
    pub tx: Vec<(u16, u32)>,
    /// RX buffers.
    pub rx: Vec<(u16, u32)>,
}

/// One guest's virtio-can device over any host side.
pub struct CanDevice<B: CanBackend> {
    backend: B,
    controller: Controller,
    offered: u64,
    acked: u64,
    config: virtio_can_config,
    /// RX buffers posted by the driver, waiting for frames.
    rx_held: VecDeque<DescChain>,
    /// Frames waiting for RX buffers.
    backlog: Backlog,
    /// TX requests sent but not yet confirmed by the host side, oldest
    /// first.
    tx_pending: VecDeque<DescChain>,
    /// Reused between events so that handling one allocates nothing.
    events: Vec<BackendEvent>,
    /// Held chains answered and not yet put in their used rings.
    done: Completions,
    log: RateLimited,
}

impl<B: CanBackend> std::fmt::Debug for CanDevice<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CanDevice")
            .field("backend", &self.backend)
            .field("controller", &self.controller)
            .field("acked", &self.acked)
            .field("backlog", &self.backlog.len())
            .field("tx_pending", &self.tx_pending.len())
            .finish_non_exhaustive()
    }
}

impl<B: CanBackend> CanDevice<B> {
    /// A device in the STOPPED state whose backlog holds up to
    /// `backlog` frames.
    pub fn new(backend: B, backlog: usize) -> Self {
        let offered = backend.capabilities().features();
        CanDevice {
            backend,
            controller: Controller::default(),
            offered,
            acked: 0,
            config: virtio_can_config::default(),
            rx_held: VecDeque::new(),
            backlog: Backlog::new(backlog),
            tx_pending: VecDeque::new(),
            events: Vec::new(),
            done: Completions::default(),
            log: RateLimited::default(),
        }
    }

    /// The controller.
    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    /// The host side.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The RX backlog.
    pub fn backlog(&self) -> &Backlog {
        &self.backlog
    }

    /// Number of TX requests waiting for the host side's confirmation.
    pub fn tx_pending(&self) -> usize {
        self.tx_pending.len()
    }

    /// Number of RX buffers held.
    pub fn rx_buffers(&self) -> usize {
        self.rx_held.len()
    }

    fn sync_config(&mut self) {
        self.config.status = Le16::from(self.controller.status());
    }

    // ---- TX ---------------------------------------------------------------

    /// One TX request: `Some(used length)` to complete it now, `None` if it
    /// is held for a later confirmation.
    pub fn handle_tx(&mut self, chain: DescChain, mem: &GuestMem) -> Option<u32> {
        match self.transmit(&chain, mem) {
            Ok(TxAck::Done) => Some(reply(&chain, mem, VIRTIO_CAN_RESULT_OK)),
            Ok(TxAck::Later) => {
                self.tx_pending.push_back(chain);
                None
            }
            Err(e) => {
                self.guest_error("TX", &e);
                Some(reply(&chain, mem, e.result()))
            }
        }
    }

    fn transmit(&mut self, chain: &DescChain, mem: &GuestMem) -> Result<TxAck> {
        self.controller.check_tx()?;
        // A request with no room for its result is refused before it is
        // sent: it could never be told whether it went out.
        let room = chain.writable().total_len();
        if room < size_of::<virtio_can_tx_in>() {
            return Err(ChainError::ShortWrite {
                wanted: size_of::<virtio_can_tx_in>(),
                available: room,
            }
            .into());
        }
        let frame = decode_tx(&mut chain.reader(mem), self.acked)?;
        self.backend.send(&frame)
    }

    /// Answers every held TX request with NOT_OK (STOP, bus-off).
    fn cancel_tx(&mut self, mem: &GuestMem, why: &'static str) {
        if self.tx_pending.is_empty() {
            return;
        }
        debug!("cancelling {} pending TX: {why}", self.tx_pending.len());
        for chain in self.tx_pending.drain(..) {
            let len = reply(&chain, mem, VIRTIO_CAN_RESULT_NOT_OK);
            self.done.tx.push((chain.head(), len));
        }
    }

    /// Takes the completions of held chains made since the last call.
    pub fn take_completions(&mut self) -> Completions {
        std::mem::take(&mut self.done)
    }

    /// Puts the completions of held chains in their used rings.
    fn flush(&mut self, queues: &mut Queues<'_>) {
        let done = self.take_completions();
        if !done.tx.is_empty() {
            if let Some(mut queue) = queues.get(TX_QUEUE) {
                queue.complete_all(done.tx);
            }
        }
        if !done.rx.is_empty() {
            if let Some(mut queue) = queues.get(RX_QUEUE) {
                queue.complete_all(done.rx);
            }
        }
    }

    // ---- control ----------------------------------------------------------

    /// One control request; always completed.
    pub fn handle_control(&mut self, chain: &DescChain, mem: &GuestMem) -> u32 {
        let result = ControlCommand::decode(&mut chain.reader(mem))
            .and_then(|command| self.execute(command, mem));
        let code = match result {
            Ok(()) => VIRTIO_CAN_RESULT_OK,
            Err(e) => {
                self.guest_error("control", &e);
                e.result()
            }
        };
        let mut writer = chain.writer(mem);
        match writer.write_obj(virtio_can_control_in { result: code }) {
            Ok(()) => writer.used_len(),
            Err(e) => {
                self.guest_error("control", &e.into());
                0
            }
        }
    }

    fn execute(&mut self, command: ControlCommand, mem: &GuestMem) -> Result<()> {
        match command {
            ControlCommand::Start => {
                self.controller.start()?;
                self.backend.set_started(true);
                info!("controller started");
            }
            ControlCommand::Stop => {
                self.controller.stop();
                self.backend.set_started(false);
                self.cancel_tx(mem, "STOP");
                self.backlog.clear();
                info!("controller stopped");
            }
        }
        self.sync_config();
        Ok(())
    }

    // ---- RX ---------------------------------------------------------------

    /// One RX buffer: filled from the backlog, or held.
    pub fn handle_rx_buffer(&mut self, chain: DescChain, mem: &GuestMem) -> Option<u32> {
        match self.backlog.pop() {
            Some(frame) => Some(self.fill(&chain, mem, &frame)),
            None => {
                self.rx_held.push_back(chain);
                None
            }
        }
    }

    fn fill(&mut self, chain: &DescChain, mem: &GuestMem, frame: &CanFrame) -> u32 {
        match write_rx(chain, mem, frame) {
            Ok(len) => len,
            Err(e) => {
                // The driver reposts a buffer it finds too short; the frame
                // is lost with it, as on a controller whose FIFO overran.
                self.guest_error("RX", &e);
                0
            }
        }
    }

    /// Moves backlog frames into held RX buffers.
    fn flush_rx(&mut self, mem: &GuestMem) {
        while !self.backlog.is_empty() {
            let Some(chain) = self.rx_held.pop_front() else {
                break;
            };
            if let Some(frame) = self.backlog.pop() {
                let len = self.fill(&chain, mem, &frame);
                self.done.rx.push((chain.head(), len));
            }
        }
    }

    // ---- host side --------------------------------------------------------

    /// Takes what the backend reports; the chains it completes are in
    /// [`Self::take_completions`].
    pub fn handle_backend(&mut self, mem: &GuestMem) {
        let mut events = std::mem::take(&mut self.events);
        self.backend.poll(&mut |e| events.push(e));
        for event in events.drain(..) {
            match event {
                BackendEvent::Frame(frame) => self.receive(frame),
                BackendEvent::Sent(ok) => match self.tx_pending.pop_front() {
                    Some(chain) => {
                        let code = if ok {
                            VIRTIO_CAN_RESULT_OK
                        } else {
                            VIRTIO_CAN_RESULT_NOT_OK
                        };
                        self.done.tx.push((chain.head(), reply(&chain, mem, code)));
                    }
                    None => debug!("confirmation for no pending frame"),
                },
                BackendEvent::BusOff => self.bus_off(mem),
            }
        }
        self.events = events;
        self.flush_rx(mem);
    }

    fn receive(&mut self, frame: CanFrame) {
        if !self.controller.is_started() {
            return;
        }
        if let Err(e) = check_negotiated(&frame, self.acked) {
            debug!("RX {frame:?} dropped: {e}");
            return;
        }
        if self.backlog.push(frame) {
            let dropped = self.backlog.dropped();
            self.log.warn(|| {
                format!("RX backlog full (guest posts no buffers): {dropped} frames dropped so far")
            });
        }
    }

    /// The host side took the controller off the bus (§"BusOff
    /// Indication"): status BUSOFF, pending TX failed, driver notified.
    fn bus_off(&mut self, mem: &GuestMem) {
        if !self.controller.bus_off() {
            return;
        }
        // The spec wants a config-change notification here. vhost 0.18's
        // `Backend` cannot send VHOST_USER_BACKEND_CONFIG_CHANGE_MSG (its
        // handle_config_change is left at ENOSYS and its socket is private),
        // so BACKEND_REQ is not offered: the driver sees `status` when it
        // next reads the config, and meanwhile its TX requests fail.
        warn!("controller bus-off; the driver is not notified (see README)");
        self.backend.set_started(false);
        self.cancel_tx(mem, "bus-off");
        self.backlog.clear();
        self.sync_config();
    }

    fn guest_error(&self, queue: &str, e: &Error) {
        match e {
            Error::NotStarted(_) | Error::BusOff => debug!("{queue}: {e}"),
            _ => self.log.warn(|| format!("{queue}: {e}")),
        }
    }
}

/// Writes a TX result; the used length (0 if there was no room).
fn reply(chain: &DescChain, mem: &GuestMem, result: u8) -> u32 {
    let mut writer = chain.writer(mem);
    match writer.write_obj(virtio_can_tx_in { result }) {
        Ok(()) => writer.used_len(),
        Err(_) => 0,
    }
}

/// Writes `frame` as a `virtio_can_rx`; the used length.
///
/// An RTR frame carries no payload, but Linux's virtio_can drops any RX
/// buffer shorter than the header plus `length` (the DLC here), so an RTR
/// frame is followed by `length` zero bytes.
fn write_rx(chain: &DescChain, mem: &GuestMem, frame: &CanFrame) -> Result<u32> {
    let header = virtio_can_rx::new(VIRTIO_CAN_RX, frame.flags(), frame.id, u16::from(frame.len));
    let mut writer = chain.writer(mem);
    let wanted = size_of::<virtio_can_rx>() + usize::from(frame.len);
    if writer.available() < wanted {
        return Err(ChainError::ShortWrite {
            wanted,
            available: writer.available(),
        }
        .into());
    }
    writer.write_obj(header)?;
    if frame.rtr {
        writer.write_zeros(usize::from(frame.len))?;
    } else {
        writer.write_all(frame.payload())?;
    }
    Ok(writer.used_len())
}

impl<B: CanBackend> VirtioDevice for CanDevice<B> {
    /// The SocketCAN backend opens and binds a CAN_RAW socket per
    /// connection.
    fn seccomp_policy() -> vhost_device_common::SeccompPolicy {
        vhost_device_common::SeccompPolicy {
            extra: &[libc::SYS_socket, libc::SYS_bind],
            ..Default::default()
        }
    }

    fn num_queues(&self) -> usize {
        NUM_QUEUES
    }

    fn features(&self) -> u64 {
        self.offered
    }

    fn set_acked_features(&mut self, features: u64) {
        self.acked = features & self.offered;
        self.backend
            .set_late_tx_ack(self.acked & VIRTIO_CAN_F_LATE_TX_ACK != 0);
    }

    fn config(&self) -> &[u8] {
        self.config.as_slice()
    }

    fn activate(&mut self, events: EventRegistry) -> DeviceResult {
        self.backend.activate(&events, BACKEND_TOKEN)?;
        Ok(())
    }

    fn process_queue(&mut self, queues: &mut Queues<'_>, index: usize) -> DeviceResult {
        match index {
            TX_QUEUE => {
                if let Some(mut queue) = queues.get(TX_QUEUE) {
                    queue.drain(|chain, mem| self.handle_tx(chain, mem));
                }
            }
            RX_QUEUE => {
                if let Some(mut queue) = queues.get(RX_QUEUE) {
                    queue.drain(|chain, mem| self.handle_rx_buffer(chain, mem));
                }
                self.flush(queues);
            }
            CONTROL_QUEUE => {
                let mut txq = queues.get(TX_QUEUE);
                if let Some(mut queue) = queues.get(CONTROL_QUEUE) {
                    queue.drain(|chain, mem| {
                        let len = self.handle_control(&chain, mem);
                        // TX cancelled by a STOP are used before the STOP
                        // is (§"Controller Mode").
                        let cancelled = std::mem::take(&mut self.done.tx);
                        if let Some(txq) = txq.as_mut() {
                            txq.complete_all(cancelled);
                        }
                        Some(len)
                    });
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn handle_event(
        &mut self,
        queues: &mut Queues<'_>,
        _token: u16,
        _events: EventSet,
    ) -> DeviceResult {
        self.handle_backend(queues.memory());
        self.flush(queues);
        Ok(())
    }

    fn queue_stopped(&mut self, index: usize) {
        match index {
            TX_QUEUE => self.tx_pending.clear(),
            RX_QUEUE => self.rx_held.clear(),
            _ => {}
        }
    }

    fn reset(&mut self) {
        self.controller = Controller::default();
        self.backend.set_started(false);
        self.rx_held.clear();
        self.tx_pending.clear();
        self.backlog.clear();
        self.sync_config();
    }
}
