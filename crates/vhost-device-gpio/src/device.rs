// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The virtio-gpio device (ID 41): request handling and interrupt delivery.
//!
//! Requests on the request queue are answered at once. Interrupts follow the
//! spec's two-step scheme: `SET_IRQ_TYPE` enables a line's interrupt, and a
//! buffer the driver posts on the event queue unmasks it. The device keeps
//! that buffer (one slot per line) and returns it with `VALID` when the
//! interrupt fires, which masks the line again until the driver re-posts it.
//! Edge interrupts that happen while masked are latched; level interrupts
//! are not, but fire again as soon as the buffer comes back while the level
//! is still held. Backends only report edges; the level logic lives here,
//! from those edges and the line's current value.
//!
//! Response lengths are exactly what Linux's driver checks for: 2 bytes, or
//! 1 + `gpio_names_size` for the names, and 1 byte on the event queue.

use std::time::{Duration, Instant};

use log::{debug, warn};
use vhost_device_common::{
    DescChain, DeviceResult, EventRegistry, EventSet, GuestMem, Queues, VirtioDevice,
};

use crate::backend::{Direction, Edge, Edges, GpioBackend, IrqNote};

/// The virtio device ID of a GPIO controller.
pub const VIRTIO_ID_GPIO: u32 = 41;
/// Feature bit 0: the device supports interrupts.
pub const VIRTIO_GPIO_F_IRQ: u64 = 1 << 0;

/// The request queue.
pub const REQUEST_QUEUE: usize = 0;
/// The event queue.
pub const EVENT_QUEUE: usize = 1;
/// Largest queue size accepted.
pub const QUEUE_SIZE: u16 = 256;

/// Request types.
pub mod msg {
    /// The names block.
    pub const GET_LINE_NAMES: u16 = 0x0001;
    /// A line's direction.
    pub const GET_DIRECTION: u16 = 0x0002;
    /// Claims or releases a line.
    pub const SET_DIRECTION: u16 = 0x0003;
    /// A line's level.
    pub const GET_VALUE: u16 = 0x0004;
    /// A line's output level.
    pub const SET_VALUE: u16 = 0x0005;
    /// Enables or disables a line's interrupt.
    pub const SET_IRQ_TYPE: u16 = 0x0006;
}

/// Request succeeded.
pub const STATUS_OK: u8 = 0;
/// Request failed.
pub const STATUS_ERR: u8 = 1;
/// Event buffer returned unused (interrupt disabled).
pub const IRQ_STATUS_INVALID: u8 = 0;
/// Event buffer returned because the interrupt fired.
pub const IRQ_STATUS_VALID: u8 = 1;

/// Size of `virtio_gpio_request`.
pub const REQUEST_SIZE: usize = 8;
/// Size of `virtio_gpio_response`.
pub const RESPONSE_SIZE: usize = 2;
/// Size of `virtio_gpio_irq_request`.
pub const IRQ_REQUEST_SIZE: usize = 2;
/// Size of `virtio_gpio_irq_response`.
pub const IRQ_RESPONSE_SIZE: usize = 1;

/// A line's interrupt trigger, as the spec numbers it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum IrqType {
    /// Disabled.
    #[default]
    None = 0,
    /// Low-to-high edges.
    EdgeRising = 1,
    /// High-to-low edges.
    EdgeFalling = 2,
    /// Both edges.
    EdgeBoth = 3,
    /// While the line is high.
    LevelHigh = 4,
    /// While the line is low.
    LevelLow = 8,
}

impl IrqType {
    /// The spec value, if it is one.
    pub fn from_spec(value: u32) -> Option<Self> {
        Some(match value {
            0 => IrqType::None,
            1 => IrqType::EdgeRising,
            2 => IrqType::EdgeFalling,
            3 => IrqType::EdgeBoth,
            4 => IrqType::LevelHigh,
            8 => IrqType::LevelLow,
            _ => return None,
        })
    }

    /// The edges the backend must report for this trigger.
    pub fn edges(self) -> Edges {
        match self {
            IrqType::None => Edges::None,
            IrqType::EdgeRising => Edges::Rising,
            IrqType::EdgeFalling => Edges::Falling,
            IrqType::EdgeBoth | IrqType::LevelHigh | IrqType::LevelLow => Edges::Both,
        }
    }

    /// For a level trigger, the level that is active.
    pub fn active_level(self) -> Option<bool> {
        match self {
            IrqType::LevelHigh => Some(true),
            IrqType::LevelLow => Some(false),
            _ => None,
        }
    }
}

/// A line's interrupt state.
#[derive(Debug, Default)]
struct IrqLine {
    trigger: IrqType,
    /// An edge came while masked.
    latched: bool,
    /// The driver's event buffer: the interrupt is unmasked while it is here.
    held: Option<DescChain>,
    /// The last attempt to enable the interrupt failed. Linux queues the
    /// line's buffer anyway and re-queues a buffer returned `INVALID` at
    /// once while it thinks the interrupt is enabled, so returning it would
    /// ping-pong for ever; such a buffer is held (the interrupt never
    /// fires) until the driver disables the interrupt.
    refused: bool,
}

/// A few log lines per second at most, so a misbehaving guest cannot flood
/// the host's log.
#[derive(Debug)]
struct LogLimit {
    window: Instant,
    count: u32,
}

impl LogLimit {
    const PER_SECOND: u32 = 10;

    fn new() -> Self {
        LogLimit {
            window: Instant::now(),
            count: 0,
        }
    }

    fn warn(&mut self, message: impl FnOnce() -> String) {
        let now = Instant::now();
        if now.duration_since(self.window) >= Duration::from_secs(1) {
            self.window = now;
            self.count = 0;
        }
        self.count += 1;
        if self.count <= Self::PER_SECOND {
            warn!("{}", message());
        }
    }
}

/// The virtio-gpio device over a [`GpioBackend`].
#[derive(Debug)]
pub struct GpioDevice<B> {
    backend: B,
    ngpio: u16,
    config: [u8; 8],
    names: Vec<u8>,
    irq_negotiated: bool,
    lines: Vec<IrqLine>,
    /// Event buffers completed while handling something else, to be put in
    /// the event queue's used ring: `(head, used length)`.
    fired: Vec<(u16, u32)>,
    edges: Vec<(u16, Edge)>,
    log: LogLimit,
}

impl<B: GpioBackend> GpioDevice<B> {
    /// A device for `backend`'s lines.
    pub fn new(backend: B) -> Self {
        let ngpio = backend.num_lines();
        let names = names_block(&backend.line_names(), ngpio);
        let names_size = u32::try_from(names.len()).unwrap_or(0);
        let [n0, n1] = ngpio.to_le_bytes();
        let [s0, s1, s2, s3] = names_size.to_le_bytes();
        let config = [n0, n1, 0, 0, s0, s1, s2, s3];
        GpioDevice {
            backend,
            ngpio,
            config,
            names,
            irq_negotiated: false,
            lines: (0..ngpio).map(|_| IrqLine::default()).collect(),
            fired: Vec::with_capacity(usize::from(ngpio)),
            edges: Vec::new(),
            log: LogLimit::new(),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, mutably.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// The names block GET_LINE_NAMES returns.
    pub fn names(&self) -> &[u8] {
        &self.names
    }

    /// Tells the device which features the driver accepted.
    pub fn set_irq_negotiated(&mut self, negotiated: bool) {
        self.irq_negotiated = negotiated;
    }

    /// Handles one request-queue chain and returns the used length (0 for a
    /// chain that had no room even for a status byte).
    pub fn handle_request(&mut self, chain: &DescChain, mem: &GuestMem) -> u32 {
        let mut reader = chain.reader(mem);
        let mut writer = chain.writer(mem);
        let mut request = [0u8; REQUEST_SIZE];
        if reader.available() != REQUEST_SIZE || reader.read_exact(&mut request).is_err() {
            let len = reader.available();
            self.log
                .warn(|| format!("request {}: {len} bytes, not {REQUEST_SIZE}", chain.head()));
            return error_reply(&mut writer);
        }
        let [t0, t1, g0, g1, v0, v1, v2, v3] = request;
        let kind = u16::from_le_bytes([t0, t1]);
        let gpio = u16::from_le_bytes([g0, g1]);
        let value = u32::from_le_bytes([v0, v1, v2, v3]);

        if kind == msg::GET_LINE_NAMES {
            if self.names.is_empty() || writer.available() < 1 + self.names.len() {
                let room = writer.available();
                self.log.warn(|| {
                    format!(
                        "GET_LINE_NAMES: {room} writable bytes, need {}",
                        1 + self.names.len()
                    )
                });
                return error_reply(&mut writer);
            }
            // Room was checked above.
            let _ = writer.write_all(&[STATUS_OK]);
            let _ = writer.write_all(&self.names);
            return writer.used_len();
        }
        if writer.available() < RESPONSE_SIZE {
            let room = writer.available();
            self.log.warn(|| {
                format!("request type {kind}: {room} writable bytes, need {RESPONSE_SIZE}")
            });
            return error_reply(&mut writer);
        }
        let response = match self.execute(kind, gpio, value, mem) {
            Ok(value) => [STATUS_OK, value],
            Err(()) => [STATUS_ERR, 0],
        };
        // Room was checked above, so this cannot fail short.
        let _ = writer.write_all(&response);
        writer.used_len()
    }

    /// Runs one decoded request; `Ok` carries the response's value byte.
    fn execute(&mut self, kind: u16, gpio: u16, value: u32, mem: &GuestMem) -> Result<u8, ()> {
        if gpio >= self.ngpio {
            let ngpio = self.ngpio;
            self.log
                .warn(|| format!("request type {kind}: line {gpio} out of range (ngpio {ngpio})"));
            return Err(());
        }
        let result = match kind {
            msg::GET_DIRECTION => self.backend.direction(gpio).map(|d| d as u8),
            msg::SET_DIRECTION => {
                let Some(direction) = Direction::from_spec(value) else {
                    self.log
                        .warn(|| format!("SET_DIRECTION line {gpio}: bad direction {value}"));
                    return Err(());
                };
                if direction != Direction::In {
                    // Releasing discards all of the line's state; an output
                    // has no interrupt.
                    self.disable_irq(gpio, mem);
                }
                self.backend.set_direction(gpio, direction).map(|()| 0)
            }
            msg::GET_VALUE => self.backend.value(gpio).map(u8::from),
            msg::SET_VALUE => {
                // Linux only sends 0 or 1; anything else is high.
                self.backend.set_value(gpio, value != 0).map(|()| 0)
            }
            msg::SET_IRQ_TYPE => return self.set_irq_type(gpio, value, mem),
            _ => {
                self.log.warn(|| format!("unknown request type {kind}"));
                return Err(());
            }
        };
        result.map_err(|e| {
            self.log
                .warn(|| format!("request type {kind} line {gpio}: {e}"));
        })
    }

    fn set_irq_type(&mut self, gpio: u16, value: u32, mem: &GuestMem) -> Result<u8, ()> {
        if !self.irq_negotiated {
            self.log
                .warn(|| "SET_IRQ_TYPE without VIRTIO_GPIO_F_IRQ".to_owned());
            return Err(());
        }
        let Some(trigger) = IrqType::from_spec(value) else {
            self.log
                .warn(|| format!("SET_IRQ_TYPE line {gpio}: bad type {value}"));
            self.refuse(gpio);
            return Err(());
        };
        if trigger == IrqType::None {
            self.disable_irq(gpio, mem);
            return Ok(0);
        }
        if let Err(e) = self.backend.set_edges(gpio, trigger.edges()) {
            self.log.warn(|| format!("SET_IRQ_TYPE line {gpio}: {e}"));
            self.refuse(gpio);
            return Err(());
        }
        if let Some(line) = self.lines.get_mut(usize::from(gpio)) {
            line.trigger = trigger;
            line.refused = false;
            // Edges count from now on.
            line.latched = false;
        }
        // A buffer already posted (a type changed without going through
        // NONE) fires at once if the new level is active.
        self.check_level(gpio, mem);
        Ok(0)
    }

    /// Records a failed attempt to enable the line's interrupt.
    fn refuse(&mut self, gpio: u16) {
        if let Some(line) = self.lines.get_mut(usize::from(gpio)) {
            if line.trigger == IrqType::None {
                line.refused = true;
            }
        }
    }

    /// Disables the line's interrupt: stops edge reporting, forgets a
    /// latched edge, and returns the held buffer as `INVALID`.
    fn disable_irq(&mut self, gpio: u16, mem: &GuestMem) {
        let Some(line) = self.lines.get_mut(usize::from(gpio)) else {
            return;
        };
        let was = line.trigger;
        line.trigger = IrqType::None;
        line.latched = false;
        line.refused = false;
        if let Some(chain) = line.held.take() {
            self.fire(gpio, &chain, IRQ_STATUS_INVALID, mem);
        }
        if was != IrqType::None {
            if let Err(e) = self.backend.set_edges(gpio, Edges::None) {
                self.log
                    .warn(|| format!("line {gpio}: stop edge detection: {e}"));
            }
        }
    }

    /// Writes `status` into a held event buffer and queues its completion.
    fn fire(&mut self, gpio: u16, chain: &DescChain, status: u8, mem: &GuestMem) {
        let len = self.reply_event(gpio, chain, status, mem);
        self.fired.push((chain.head(), len));
    }

    /// Writes `status` into an event buffer; its used length.
    fn reply_event(&mut self, gpio: u16, chain: &DescChain, status: u8, mem: &GuestMem) -> u32 {
        let note = if status == IRQ_STATUS_VALID {
            IrqNote::Fired
        } else {
            IrqNote::Returned
        };
        debug!(
            "line {gpio}: event buffer {} returned, status {status}",
            chain.head()
        );
        self.backend.irq_note(gpio, note);
        reply_status(chain, mem, status)
    }

    /// Whether the line has a level trigger and sits at its active level.
    fn level_active(&mut self, gpio: u16) -> bool {
        let Some(active) = self
            .lines
            .get(usize::from(gpio))
            .and_then(|l| l.trigger.active_level())
        else {
            return false;
        };
        match self.backend.value(gpio) {
            Ok(level) => level == active,
            Err(e) => {
                self.log.warn(|| format!("line {gpio}: read level: {e}"));
                false
            }
        }
    }

    /// For a level trigger with the buffer held: fires if the level is active.
    fn check_level(&mut self, gpio: u16, mem: &GuestMem) {
        if !self.is_unmasked(gpio) || !self.level_active(gpio) {
            return;
        }
        if let Some(chain) = self
            .lines
            .get_mut(usize::from(gpio))
            .and_then(|l| l.held.take())
        {
            self.fire(gpio, &chain, IRQ_STATUS_VALID, mem);
        }
    }

    /// Handles one event-queue chain: the driver unmasking a line. Returns
    /// the used length to complete it now, or `None` if the device keeps it
    /// until the interrupt fires.
    pub fn handle_event_buffer(&mut self, chain: DescChain, mem: &GuestMem) -> Option<u32> {
        let mut reader = chain.reader(mem);
        let mut request = [0u8; IRQ_REQUEST_SIZE];
        if reader.available() != IRQ_REQUEST_SIZE || reader.read_exact(&mut request).is_err() {
            let len = reader.available();
            self.log.warn(|| {
                format!(
                    "event buffer {}: {len} bytes, not {IRQ_REQUEST_SIZE}",
                    chain.head()
                )
            });
            return Some(0);
        }
        if chain.writer(mem).available() < IRQ_RESPONSE_SIZE {
            self.log
                .warn(|| format!("event buffer {}: no room for the status", chain.head()));
            return Some(0);
        }
        let gpio = u16::from_le_bytes(request);
        let ngpio = self.ngpio;
        let Some(line) = self.lines.get_mut(usize::from(gpio)) else {
            self.log
                .warn(|| format!("event buffer for line {gpio} out of range (ngpio {ngpio})"));
            return Some(reply_status(&chain, mem, IRQ_STATUS_INVALID));
        };
        if line.held.is_some() {
            self.log
                .warn(|| format!("second event buffer for line {gpio}: returned"));
            return Some(reply_status(&chain, mem, IRQ_STATUS_INVALID));
        }
        let fire_now = match line.trigger {
            // Enabling failed: keep it (see `IrqLine::refused`).
            IrqType::None if line.refused => false,
            // Unmasked before enabled: the spec says return it unused.
            IrqType::None => {
                return Some(self.reply_event(gpio, &chain, IRQ_STATUS_INVALID, mem));
            }
            IrqType::EdgeRising | IrqType::EdgeFalling | IrqType::EdgeBoth => {
                std::mem::take(&mut line.latched)
            }
            IrqType::LevelHigh | IrqType::LevelLow => self.level_active(gpio),
        };
        if fire_now {
            return Some(self.reply_event(gpio, &chain, IRQ_STATUS_VALID, mem));
        }
        debug!("line {gpio}: event buffer {} held", chain.head());
        if let Some(line) = self.lines.get_mut(usize::from(gpio)) {
            line.held = Some(chain);
        }
        self.backend.irq_note(gpio, IrqNote::Unmasked);
        None
    }

    /// Handles the edges a backend fd reported.
    pub fn handle_backend_event(&mut self, token: u16, mem: &GuestMem) {
        let mut edges = std::mem::take(&mut self.edges);
        edges.clear();
        self.backend
            .read_events(token, &mut |line, edge| edges.push((line, edge)));
        for &(gpio, edge) in &edges {
            self.on_edge(gpio, edge, mem);
        }
        self.edges = edges;
    }

    /// One edge on a line.
    pub fn on_edge(&mut self, gpio: u16, edge: Edge, mem: &GuestMem) {
        let Some(line) = self.lines.get_mut(usize::from(gpio)) else {
            return;
        };
        match line.trigger {
            IrqType::None => {}
            IrqType::EdgeRising | IrqType::EdgeFalling | IrqType::EdgeBoth => {
                if !line.trigger.edges().contains(edge) {
                    return;
                }
                if let Some(chain) = line.held.take() {
                    self.fire(gpio, &chain, IRQ_STATUS_VALID, mem);
                } else {
                    line.latched = true;
                }
            }
            // Not latched: only the level matters, and only while unmasked.
            IrqType::LevelHigh | IrqType::LevelLow => self.check_level(gpio, mem),
        }
    }

    /// Takes the event-queue completions made while handling something
    /// else.
    pub fn take_fired(&mut self) -> std::vec::Drain<'_, (u16, u32)> {
        self.fired.drain(..)
    }

    /// Whether the device holds an event buffer for `gpio` (its interrupt is
    /// unmasked).
    pub fn is_unmasked(&self, gpio: u16) -> bool {
        self.lines
            .get(usize::from(gpio))
            .is_some_and(|l| l.held.is_some())
    }

    /// The line's current trigger.
    pub fn trigger(&self, gpio: u16) -> Option<IrqType> {
        self.lines.get(usize::from(gpio)).map(|l| l.trigger)
    }

    /// Forgets every held event buffer (the queue stopped).
    pub fn forget_event_buffers(&mut self) {
        for line in &mut self.lines {
            line.held = None;
        }
        self.fired.clear();
    }

    fn flush_fired(&mut self, queues: &mut Queues<'_>) {
        if self.fired.is_empty() {
            return;
        }
        match queues.get(EVENT_QUEUE) {
            Some(mut queue) => {
                for (head, len) in self.fired.drain(..) {
                    queue.complete(head, len);
                }
            }
            None => self.fired.clear(),
        }
    }
}

/// Writes a one-byte status into the chain's writable part; the used length.
fn reply_status(chain: &DescChain, mem: &GuestMem, status: u8) -> u32 {
    let mut writer = chain.writer(mem);
    let _ = writer.write_all(&[status]);
    writer.used_len()
}

/// An error response in whatever room there is: status and value if both
/// fit, the status alone if only it does, nothing at all otherwise.
fn error_reply<M: vm_memory::GuestMemory + ?Sized>(
    writer: &mut vhost_device_common::Writer<'_, M>,
) -> u32 {
    let reply = [STATUS_ERR, 0];
    let n = writer.available().min(RESPONSE_SIZE);
    let _ = writer.write_all(reply.get(..n).unwrap_or_default());
    writer.used_len()
}

/// The names block: one NUL-terminated 7-bit ASCII name per line.
fn names_block(names: &[String], ngpio: u16) -> Vec<u8> {
    let mut block = Vec::new();
    for line in 0..usize::from(ngpio) {
        if let Some(name) = names.get(line) {
            block.extend(
                name.bytes()
                    .map(|b| if b.is_ascii() && b != 0 { b } else { b'?' }),
            );
        }
        block.push(0);
    }
    block
}

impl<B: GpioBackend> VirtioDevice for GpioDevice<B> {
    fn num_queues(&self) -> usize {
        2
    }

    fn max_queue_size(&self) -> u16 {
        QUEUE_SIZE
    }

    fn features(&self) -> u64 {
        VIRTIO_GPIO_F_IRQ
    }

    fn set_acked_features(&mut self, features: u64) {
        self.set_irq_negotiated(features & VIRTIO_GPIO_F_IRQ != 0);
    }

    fn config(&self) -> &[u8] {
        &self.config
    }

    fn activate(&mut self, events: EventRegistry) -> DeviceResult {
        self.backend.activate(events)?;
        Ok(())
    }

    fn process_queue(&mut self, queues: &mut Queues<'_>, index: usize) -> DeviceResult {
        match index {
            REQUEST_QUEUE => {
                if let Some(mut queue) = queues.get(REQUEST_QUEUE) {
                    queue.drain(|chain, mem| Some(self.handle_request(&chain, mem)));
                }
                self.flush_fired(queues);
            }
            EVENT_QUEUE => {
                if let Some(mut queue) = queues.get(EVENT_QUEUE) {
                    queue.drain(|chain, mem| self.handle_event_buffer(chain, mem));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn handle_event(
        &mut self,
        queues: &mut Queues<'_>,
        token: u16,
        _events: EventSet,
    ) -> DeviceResult {
        let mem = queues.memory();
        self.handle_backend_event(token, mem);
        self.flush_fired(queues);
        Ok(())
    }

    fn queue_stopped(&mut self, index: usize) {
        if index == EVENT_QUEUE {
            self.forget_event_buffers();
        }
    }

    fn reset(&mut self) {
        for line in &mut self.lines {
            *line = IrqLine::default();
        }
        self.fired.clear();
        self.backend.release_all();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use vhost_device_common::mock::{ChainBuilder, MEM_BASE, MEM_SIZE};
    use vhost_device_common::Region;
    use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

    use super::*;
    use crate::backend::sim::{SimChip, SimWorld};
    use crate::error::{Error, Result};

    /// Guest memory holding many chains at once, as a real queue does, so
    /// that a held event buffer and later requests share it.
    struct Guest {
        mem: GuestMem,
        next: u64,
        head: u16,
    }

    impl Guest {
        fn new() -> Self {
            Guest {
                mem: GuestMemoryMmap::from_ranges(&[(GuestAddress(MEM_BASE), MEM_SIZE)]).unwrap(),
                next: MEM_BASE,
                head: 0,
            }
        }

        fn region(&mut self, len: u32, fill: &[u8]) -> Region {
            let addr = GuestAddress(self.next);
            self.next += u64::from(len).max(1).div_ceil(16) * 16;
            let mut data = vec![0xAA; len as usize];
            data[..fill.len()].copy_from_slice(fill);
            self.mem.write_slice(&data, addr).unwrap();
            Region { addr, len }
        }

        fn chain(&mut self, readable: &[u8], writable: u32) -> DescChain {
            let r = self.region(readable.len() as u32, readable);
            let w = self.region(writable, &[]);
            self.head += 1;
            DescChain::from_regions(self.head, &[r], &[w])
        }

        fn written(&self, chain: &DescChain) -> Vec<u8> {
            let region = chain.writable().get(0).unwrap();
            let mut buf = vec![0; region.len as usize];
            self.mem.read_slice(&mut buf, region.addr).unwrap();
            buf
        }
    }

    fn encode(kind: u16, gpio: u16, value: u32) -> Vec<u8> {
        let mut req = kind.to_le_bytes().to_vec();
        req.extend(gpio.to_le_bytes());
        req.extend(value.to_le_bytes());
        req
    }

    struct Rig {
        dev: GpioDevice<SimChip>,
        guest: Guest,
        world: std::sync::Arc<SimWorld>,
    }

    impl Rig {
        fn new(lines: u16) -> Self {
            let world = SimWorld::new(lines, "line").unwrap();
            let mut dev = GpioDevice::new(SimChip::new(world.clone()));
            dev.set_irq_negotiated(true);
            Rig {
                dev,
                guest: Guest::new(),
                world,
            }
        }

        /// Sends a request with a 2-byte response; returns (used, status, value).
        fn request(&mut self, kind: u16, gpio: u16, value: u32) -> (u32, u8, u8) {
            let chain = self.guest.chain(&encode(kind, gpio, value), 2);
            let used = self.dev.handle_request(&chain, &self.guest.mem);
            let out = self.guest.written(&chain);
            (used, out[0], out[1])
        }

        fn ok(&mut self, kind: u16, gpio: u16, value: u32) -> u8 {
            let (used, status, value) = self.request(kind, gpio, value);
            assert_eq!((used, status), (2, STATUS_OK), "request {kind} line {gpio}");
            value
        }

        fn err(&mut self, kind: u16, gpio: u16, value: u32) {
            let (used, status, value) = self.request(kind, gpio, value);
            assert_eq!(
                (used, status, value),
                (2, STATUS_ERR, 0),
                "request {kind} line {gpio}"
            );
        }

        /// Posts an event buffer for `gpio`.
        fn post(&mut self, gpio: u16) -> (DescChain, Option<u32>) {
            let chain = self.guest.chain(&gpio.to_le_bytes(), 1);
            let result = self.dev.handle_event_buffer(chain.clone(), &self.guest.mem);
            (chain, result)
        }

        /// Drives a line from outside and lets the device see the edges;
        /// returns the event buffers completed.
        fn drive(&mut self, gpio: u16, value: bool) -> Vec<(u16, u32)> {
            self.world.drive(gpio, value).unwrap();
            self.dev
                .handle_backend_event(crate::backend::sim::SIM_TOKEN, &self.guest.mem);
            self.dev.take_fired().collect()
        }

        fn status(&self, chain: &DescChain) -> u8 {
            self.guest.written(chain)[0]
        }
    }

    #[test]
    fn config_space_layout() {
        let rig = Rig::new(5);
        let config = rig.dev.config();
        assert_eq!(config.len(), 8);
        assert_eq!(&config[..2], &5u16.to_le_bytes());
        assert_eq!(&config[2..4], &[0, 0]);
        let size = u32::from_le_bytes(config[4..8].try_into().unwrap());
        assert_eq!(size as usize, rig.dev.names().len());
        assert_eq!(rig.dev.features(), VIRTIO_GPIO_F_IRQ);
        assert_eq!(rig.dev.num_queues(), 2);
    }

    #[test]
    fn get_line_names_returns_the_block_with_the_exact_length() {
        let mut rig = Rig::new(3);
        let names = b"line0\0line1\0line2\0".to_vec();
        assert_eq!(rig.dev.names(), names.as_slice());
        let chain = rig
            .guest
            .chain(&encode(msg::GET_LINE_NAMES, 0, 0), 1 + names.len() as u32);
        let used = rig.dev.handle_request(&chain, &rig.guest.mem);
        assert_eq!(used as usize, 1 + names.len());
        let out = rig.guest.written(&chain);
        assert_eq!(out[0], STATUS_OK);
        assert_eq!(&out[1..], names.as_slice());

        // One byte short: an error status, not a truncated block.
        let chain = rig
            .guest
            .chain(&encode(msg::GET_LINE_NAMES, 0, 0), names.len() as u32);
        let used = rig.dev.handle_request(&chain, &rig.guest.mem);
        assert_eq!(used, 2);
        assert_eq!(rig.guest.written(&chain)[0], STATUS_ERR);
    }

    #[test]
    fn names_are_sanitised_to_ascii() {
        assert_eq!(
            names_block(&["a\0b".into(), "é".into()], 3),
            b"a?b\0??\0\0".to_vec()
        );
    }

    #[test]
    fn directions() {
        let mut rig = Rig::new(4);
        assert_eq!(rig.ok(msg::GET_DIRECTION, 1, 0), Direction::In as u8);
        rig.ok(msg::SET_DIRECTION, 1, Direction::Out as u32);
        assert_eq!(rig.ok(msg::GET_DIRECTION, 1, 0), Direction::Out as u8);
        rig.ok(msg::SET_DIRECTION, 1, Direction::In as u32);
        assert_eq!(rig.ok(msg::GET_DIRECTION, 1, 0), Direction::In as u8);
        rig.ok(msg::SET_DIRECTION, 1, Direction::None as u32);
        rig.err(msg::SET_DIRECTION, 1, 3);
    }

    #[test]
    fn values_in_and_out() {
        let mut rig = Rig::new(4);
        // A released line can always be read.
        assert_eq!(rig.ok(msg::GET_VALUE, 2, 0), 0);
        rig.world.drive(2, true).unwrap();
        assert_eq!(rig.ok(msg::GET_VALUE, 2, 0), 1);
        // Linux sets the value before the direction: it must stick.
        rig.ok(msg::SET_VALUE, 3, 1);
        assert!(!rig.world.level(3).unwrap(), "not driven while an input");
        rig.ok(msg::SET_DIRECTION, 3, Direction::Out as u32);
        assert!(rig.world.level(3).unwrap());
        assert_eq!(rig.ok(msg::GET_VALUE, 3, 0), 1);
        rig.ok(msg::SET_VALUE, 3, 0);
        assert!(!rig.world.level(3).unwrap());
        // Releasing discards the output.
        rig.ok(msg::SET_VALUE, 3, 1);
        rig.ok(msg::SET_DIRECTION, 3, Direction::None as u32);
        rig.ok(msg::SET_DIRECTION, 3, Direction::Out as u32);
        assert!(!rig.world.level(3).unwrap());
    }

    #[test]
    fn lines_out_of_range_get_an_error() {
        let mut rig = Rig::new(4);
        for kind in [
            msg::GET_DIRECTION,
            msg::SET_DIRECTION,
            msg::GET_VALUE,
            msg::SET_VALUE,
            msg::SET_IRQ_TYPE,
        ] {
            rig.err(kind, 4, 1);
            rig.err(kind, u16::MAX, 1);
        }
        rig.err(0x7777, 0, 0);
        rig.err(0, 0, 0);
    }

    #[test]
    fn wrong_lengths() {
        let mut rig = Rig::new(2);
        let g = &mut rig.guest;
        // Short and long request bodies.
        for body in [&encode(msg::GET_VALUE, 0, 0)[..7], &[0u8; 9][..], &[][..]] {
            let chain = g.chain(body, 2);
            assert_eq!(rig.dev.handle_request(&chain, &g.mem), 2);
            assert_eq!(g.written(&chain), vec![STATUS_ERR, 0]);
        }
        // Room for the status only.
        let chain = g.chain(&encode(msg::GET_VALUE, 0, 0), 1);
        assert_eq!(rig.dev.handle_request(&chain, &g.mem), 1);
        assert_eq!(g.written(&chain), vec![STATUS_ERR]);
        // Room for nothing.
        let chain = g.chain(&encode(msg::GET_VALUE, 0, 0), 0);
        assert_eq!(rig.dev.handle_request(&chain, &g.mem), 0);
        // More room than needed: still exactly 2 bytes.
        let chain = g.chain(&encode(msg::GET_VALUE, 0, 0), 64);
        assert_eq!(rig.dev.handle_request(&chain, &g.mem), 2);
        assert_eq!(&g.written(&chain)[..3], &[STATUS_OK, 0, 0xAA]);
    }

    #[test]
    fn malformed_chains() {
        let mut rig = Rig::new(2);
        let req = encode(msg::GET_VALUE, 0, 0);
        // The response readable instead of writable: nothing to answer in.
        let (mem, chain) = ChainBuilder::new().readable(&req).readable(&[0, 0]).build();
        assert_eq!(rig.dev.handle_request(&chain.unwrap(), &mem), 0);
        // No response descriptor at all.
        let (mem, chain) = ChainBuilder::new().readable(&req).build();
        assert_eq!(rig.dev.handle_request(&chain.unwrap(), &mem), 0);
        // A huge request.
        let (mem, chain) = ChainBuilder::new()
            .readable(&vec![0; 0x8000])
            .writable(2)
            .build();
        assert_eq!(rig.dev.handle_request(&chain.unwrap(), &mem), 2);
        // The request split over two descriptors, indirect: fine.
        let (mem, chain) = ChainBuilder::new()
            .readable(&req[..3])
            .readable(&req[3..])
            .writable(1)
            .writable(1)
            .build_indirect();
        let chain = chain.unwrap();
        assert_eq!(rig.dev.handle_request(&chain, &mem), 2);
        // Event buffers: short request, no status room.
        let (mem, chain) = ChainBuilder::new().readable(&[0]).writable(1).build();
        assert_eq!(rig.dev.handle_event_buffer(chain.unwrap(), &mem), Some(0));
        let (mem, chain) = ChainBuilder::new().readable(&[0, 0]).build();
        assert_eq!(rig.dev.handle_event_buffer(chain.unwrap(), &mem), Some(0));
        let (mem, chain) = ChainBuilder::new().readable(&[0, 0, 0]).writable(1).build();
        assert_eq!(rig.dev.handle_event_buffer(chain.unwrap(), &mem), Some(0));
        assert!(!rig.dev.is_unmasked(0));
    }

    #[test]
    fn irq_type_needs_the_feature_and_a_valid_type() {
        let mut rig = Rig::new(2);
        rig.dev.set_irq_negotiated(false);
        rig.err(msg::SET_IRQ_TYPE, 0, IrqType::EdgeRising as u32);
        rig.dev.set_irq_negotiated(true);
        for bad in [5, 6, 7, 9, 16, u32::MAX] {
            rig.err(msg::SET_IRQ_TYPE, 0, bad);
        }
        rig.ok(msg::SET_IRQ_TYPE, 0, IrqType::EdgeRising as u32);
        assert_eq!(rig.dev.trigger(0), Some(IrqType::EdgeRising));
        // No interrupt on an output.
        rig.ok(msg::SET_IRQ_TYPE, 1, 0);
        rig.ok(msg::SET_DIRECTION, 1, Direction::Out as u32);
        rig.err(msg::SET_IRQ_TYPE, 1, IrqType::LevelHigh as u32);
    }

    #[test]
    fn event_buffer_before_irq_type_is_returned_invalid() {
        let mut rig = Rig::new(2);
        let (chain, result) = rig.post(1);
        assert_eq!(result, Some(1));
        assert_eq!(rig.status(&chain), IRQ_STATUS_INVALID);
        assert!(!rig.dev.is_unmasked(1));
        // Out of range: also returned invalid, with the exact length.
        let (chain, result) = rig.post(2);
        assert_eq!(result, Some(1));
        assert_eq!(rig.status(&chain), IRQ_STATUS_INVALID);
    }

    fn edge_case(trigger: IrqType, fires_on: &[(bool, bool)]) {
        let mut rig = Rig::new(2);
        rig.ok(msg::SET_DIRECTION, 0, Direction::In as u32);
        rig.ok(msg::SET_IRQ_TYPE, 0, trigger as u32);
        let mut level = false;
        for &(to, fires) in fires_on {
            let (chain, result) = rig.post(0);
            assert_eq!(result, None, "{trigger:?}: held until an edge");
            assert!(rig.dev.is_unmasked(0));
            let fired = rig.drive(0, to);
            if fires {
                assert_eq!(fired, vec![(chain.head(), 1)], "{trigger:?} {level}->{to}");
                assert_eq!(rig.status(&chain), IRQ_STATUS_VALID);
            } else {
                assert!(fired.is_empty(), "{trigger:?} {level}->{to} must not fire");
                // Take the buffer back for the next round.
                rig.ok(msg::SET_IRQ_TYPE, 0, 0);
                assert_eq!(rig.status(&chain), IRQ_STATUS_INVALID);
                assert_eq!(
                    rig.dev.take_fired().collect::<Vec<_>>(),
                    vec![(chain.head(), 1)]
                );
                rig.ok(msg::SET_IRQ_TYPE, 0, trigger as u32);
            }
            level = to;
        }
    }

    #[test]
    fn edge_rising() {
        edge_case(
            IrqType::EdgeRising,
            &[(true, true), (false, false), (false, false), (true, true)],
        );
    }

    #[test]
    fn edge_falling() {
        edge_case(
            IrqType::EdgeFalling,
            &[(true, false), (false, true), (true, false), (true, false)],
        );
    }

    #[test]
    fn edge_both() {
        edge_case(
            IrqType::EdgeBoth,
            &[(true, true), (false, true), (false, false), (true, true)],
        );
    }

    #[test]
    fn edges_while_masked_are_latched_once() {
        let mut rig = Rig::new(1);
        rig.ok(msg::SET_IRQ_TYPE, 0, IrqType::EdgeBoth as u32);
        // Edges before the buffer comes: latched, and two count as one.
        assert!(rig.drive(0, true).is_empty());
        assert!(rig.drive(0, false).is_empty());
        let (chain, result) = rig.post(0);
        assert_eq!(result, Some(1));
        assert_eq!(rig.status(&chain), IRQ_STATUS_VALID);
        let (_, result) = rig.post(0);
        assert_eq!(result, None, "the latch was consumed");
    }

    #[test]
    fn edges_before_the_irq_type_are_not_latched() {
        let mut rig = Rig::new(1);
        rig.world.drive(0, true).unwrap();
        rig.world.drive(0, false).unwrap();
        rig.ok(msg::SET_IRQ_TYPE, 0, IrqType::EdgeBoth as u32);
        assert!(rig.drive(0, false).is_empty());
        let (_, result) = rig.post(0);
        assert_eq!(result, None);
    }

    #[test]
    fn level_high_fires_and_refires_while_held() {
        let mut rig = Rig::new(2);
        rig.ok(msg::SET_IRQ_TYPE, 1, IrqType::LevelHigh as u32);
        let (chain, result) = rig.post(1);
        assert_eq!(result, None, "low: masked until the level goes high");
        let fired = rig.drive(1, true);
        assert_eq!(fired, vec![(chain.head(), 1)]);
        assert_eq!(rig.status(&chain), IRQ_STATUS_VALID);
        // Re-armed while still high: fires again at once, every time.
        for _ in 0..3 {
            let (chain, result) = rig.post(1);
            assert_eq!(result, Some(1));
            assert_eq!(rig.status(&chain), IRQ_STATUS_VALID);
        }
        // Level gone: the buffer waits.
        assert!(rig.drive(1, false).is_empty());
        let (_, result) = rig.post(1);
        assert_eq!(result, None);
    }

    #[test]
    fn level_low_fires_while_low_and_is_not_latched() {
        let mut rig = Rig::new(1);
        rig.world.drive(0, true).unwrap();
        rig.ok(msg::SET_IRQ_TYPE, 0, IrqType::LevelLow as u32);
        // A low pulse while masked is not remembered.
        assert!(rig.drive(0, false).is_empty());
        assert!(rig.drive(0, true).is_empty());
        let (chain, result) = rig.post(0);
        assert_eq!(result, None);
        let fired = rig.drive(0, false);
        assert_eq!(fired, vec![(chain.head(), 1)]);
        assert_eq!(rig.status(&chain), IRQ_STATUS_VALID);
        let (_, result) = rig.post(0);
        assert_eq!(result, Some(1), "still low: fires again");
    }

    #[test]
    fn disabling_returns_the_held_buffer_invalid_and_drops_the_latch() {
        let mut rig = Rig::new(1);
        rig.ok(msg::SET_IRQ_TYPE, 0, IrqType::EdgeRising as u32);
        let (chain, result) = rig.post(0);
        assert_eq!(result, None);
        rig.ok(msg::SET_IRQ_TYPE, 0, IrqType::None as u32);
        let fired: Vec<_> = rig.dev.take_fired().collect();
        assert_eq!(fired, vec![(chain.head(), 1)]);
        assert_eq!(rig.status(&chain), IRQ_STATUS_INVALID);
        assert!(!rig.dev.is_unmasked(0));
        // Edge latched, then disabled and re-enabled: the latch is gone.
        rig.ok(msg::SET_IRQ_TYPE, 0, IrqType::EdgeRising as u32);
        assert!(rig.drive(0, true).is_empty());
        rig.ok(msg::SET_IRQ_TYPE, 0, IrqType::None as u32);
        rig.ok(msg::SET_IRQ_TYPE, 0, IrqType::EdgeRising as u32);
        assert_eq!(rig.post(0).1, None);
        // Disabled: edges are not reported at all any more.
        rig.ok(msg::SET_IRQ_TYPE, 0, IrqType::None as u32);
        let _ = rig.dev.take_fired().count();
        assert!(rig.drive(0, false).is_empty());
        assert!(rig.drive(0, true).is_empty());
    }

    #[test]
    fn releasing_a_line_returns_its_buffer() {
        let mut rig = Rig::new(1);
        rig.ok(msg::SET_DIRECTION, 0, Direction::In as u32);
        rig.ok(msg::SET_IRQ_TYPE, 0, IrqType::LevelHigh as u32);
        let (chain, _) = rig.post(0);
        rig.ok(msg::SET_DIRECTION, 0, Direction::None as u32);
        assert_eq!(
            rig.dev.take_fired().collect::<Vec<_>>(),
            vec![(chain.head(), 1)]
        );
        assert_eq!(rig.status(&chain), IRQ_STATUS_INVALID);
        assert_eq!(rig.dev.trigger(0), Some(IrqType::None));
    }

    #[test]
    fn a_second_buffer_for_a_line_is_returned() {
        let mut rig = Rig::new(1);
        rig.ok(msg::SET_IRQ_TYPE, 0, IrqType::EdgeFalling as u32);
        let (first, result) = rig.post(0);
        assert_eq!(result, None);
        let (second, result) = rig.post(0);
        assert_eq!(result, Some(1));
        assert_eq!(rig.status(&second), IRQ_STATUS_INVALID);
        rig.world.drive(0, true).unwrap();
        assert_eq!(rig.drive(0, false), vec![(first.head(), 1)]);
    }

    #[test]
    fn stop_and_reset_forget_held_buffers() {
        let mut rig = Rig::new(2);
        rig.ok(msg::SET_IRQ_TYPE, 0, IrqType::EdgeRising as u32);
        rig.post(0);
        rig.dev.queue_stopped(EVENT_QUEUE);
        assert!(!rig.dev.is_unmasked(0));
        rig.post(0);
        rig.ok(msg::SET_DIRECTION, 1, Direction::Out as u32);
        rig.dev.reset();
        assert!(!rig.dev.is_unmasked(0));
        assert_eq!(rig.dev.trigger(0), Some(IrqType::None));
        assert_eq!(rig.ok(msg::GET_DIRECTION, 1, 0), Direction::In as u8);
        assert!(rig.drive(0, true).is_empty());
    }

    /// A chip whose every operation fails, as a yanked USB adapter would.
    #[derive(Debug)]
    struct Broken;

    impl GpioBackend for Broken {
        fn num_lines(&self) -> u16 {
            2
        }
        fn line_names(&self) -> Vec<String> {
            Vec::new()
        }
        fn direction(&mut self, line: u16) -> Result<Direction> {
            Err(Error::Line {
                line,
                reason: "gone".into(),
            })
        }
        fn set_direction(&mut self, line: u16, _: Direction) -> Result<()> {
            Err(Error::Line {
                line,
                reason: "gone".into(),
            })
        }
        fn value(&mut self, line: u16) -> Result<bool> {
            Err(Error::Line {
                line,
                reason: "gone".into(),
            })
        }
        fn set_value(&mut self, line: u16, _: bool) -> Result<()> {
            Err(Error::Line {
                line,
                reason: "gone".into(),
            })
        }
        fn set_edges(&mut self, line: u16, _: Edges) -> Result<()> {
            Err(Error::Line {
                line,
                reason: "gone".into(),
            })
        }
        fn activate(&mut self, _: EventRegistry) -> Result<()> {
            Ok(())
        }
        fn read_events(&mut self, _: u16, _: &mut dyn FnMut(u16, Edge)) {}
        fn release_all(&mut self) {}
    }

    #[test]
    fn host_failures_become_error_statuses() {
        let mut dev = GpioDevice::new(Broken);
        dev.set_irq_negotiated(true);
        // Unnamed lines still make a names block: one NUL each.
        assert_eq!(dev.names(), b"\0\0");
        let mut g = Guest::new();
        for (kind, value) in [
            (msg::GET_DIRECTION, 0),
            (msg::SET_DIRECTION, 2),
            (msg::GET_VALUE, 0),
            (msg::SET_VALUE, 1),
            (msg::SET_IRQ_TYPE, 4),
        ] {
            let chain = g.chain(&encode(kind, 1, value), 2);
            assert_eq!(dev.handle_request(&chain, &g.mem), 2);
            assert_eq!(g.written(&chain), vec![STATUS_ERR, 0], "request {kind}");
        }
        assert_eq!(dev.trigger(1), Some(IrqType::None));
        // Linux queues the buffer even though enabling failed, and would
        // re-queue an INVALID one at once: it is held instead...
        let event = g.chain(&1u16.to_le_bytes(), 1);
        assert_eq!(dev.handle_event_buffer(event.clone(), &g.mem), None);
        assert!(dev.is_unmasked(1));
        // ...until the driver disables the interrupt.
        let chain = g.chain(&encode(msg::SET_IRQ_TYPE, 1, 0), 2);
        assert_eq!(dev.handle_request(&chain, &g.mem), 2);
        assert_eq!(g.written(&chain), vec![STATUS_OK, 0]);
        assert_eq!(
            dev.take_fired().collect::<Vec<_>>(),
            vec![(event.head(), 1)]
        );
        assert_eq!(g.written(&event), vec![IRQ_STATUS_INVALID]);
        // After that, a buffer before SET_IRQ_TYPE is returned again.
        let event = g.chain(&1u16.to_le_bytes(), 1);
        assert_eq!(dev.handle_event_buffer(event, &g.mem), Some(1));
    }
}
