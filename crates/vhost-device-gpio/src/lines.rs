// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The state of a chip's lines as the guest sees them: requests on lines,
//! and the interrupt state machine, with no queue in sight.
//!
//! Interrupts follow the spec's two-step scheme (virtio 1.3 §5.18.6.6 and §5.18.7):
//! `SET_IRQ_TYPE` enables a line's interrupt, and a buffer the driver posts on
//! the event queue unmasks it. [`GpioLines`] keeps that buffer (one slot
//! per line) and returns it with `VALID` when the interrupt fires, which
//! masks the line again until the driver re-posts it. Edge interrupts that
//! happen while masked are latched; level interrupts are not, but fire
//! again as soon as the buffer comes back while the level is still held.
//! Backends only report edges; the level logic lives here, from those
//! edges and the line's current value.

use log::debug;
use vhost_device_common::{DescChain, GuestMem, RateLimited};

use crate::backend::{Direction, Edge, Edges, GpioBackend, IrqNote};
use crate::error::{Error, Result};
use crate::protocol::{IrqType, VIRTIO_GPIO_IRQ_STATUS_INVALID, VIRTIO_GPIO_IRQ_STATUS_VALID};
use crate::request::Request;

/// The edges a backend must report for `trigger`. Level triggers need both:
/// the level is tracked from the edges and the line's current value.
pub fn edges_for(trigger: IrqType) -> Edges {
    match trigger {
        IrqType::None => Edges::None,
        IrqType::EdgeRising => Edges::Rising,
        IrqType::EdgeFalling => Edges::Falling,
        IrqType::EdgeBoth | IrqType::LevelHigh | IrqType::LevelLow => Edges::Both,
    }
}

/// For a level trigger, the level that is active.
fn active_level(trigger: IrqType) -> Option<bool> {
    match trigger {
        IrqType::LevelHigh => Some(true),
        IrqType::LevelLow => Some(false),
        _ => None,
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

/// The lines of one guest's chip over a [`GpioBackend`].
#[derive(Debug)]
pub struct GpioLines<B> {
    backend: B,
    ngpio: u16,
    irq_negotiated: bool,
    lines: Vec<IrqLine>,
    /// Event buffers completed while handling something else, to be put in
    /// the event queue's used ring: `(head, used length)`.
    fired: Vec<(u16, u32)>,
    edges: Vec<(u16, Edge)>,
    log: RateLimited,
}

impl<B: GpioBackend> GpioLines<B> {
    /// The lines of `backend`.
    pub fn new(backend: B) -> Self {
        let ngpio = backend.num_lines();
        GpioLines {
            backend,
            ngpio,
            irq_negotiated: false,
            lines: (0..ngpio).map(|_| IrqLine::default()).collect(),
            fired: Vec::with_capacity(usize::from(ngpio)),
            edges: Vec::new(),
            log: RateLimited::default(),
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

    /// The rate-limited log for what a guest does wrong.
    pub fn log(&self) -> &RateLimited {
        &self.log
    }

    /// Tells the lines whether the driver accepted `VIRTIO_GPIO_F_IRQ`.
    pub fn set_irq_negotiated(&mut self, negotiated: bool) {
        self.irq_negotiated = negotiated;
    }

    /// Runs one request about a line; `Ok` carries the response's value
    /// byte. Event buffers completed on the way (a released line's) are
    /// queued for [`GpioLines::take_fired`].
    pub fn execute(&mut self, request: Request, mem: &GuestMem) -> Result<u8> {
        if let Some(gpio) = request.line() {
            if gpio >= self.ngpio {
                return Err(Error::LineOutOfRange {
                    line: gpio,
                    ngpio: self.ngpio,
                });
            }
        }
        match request {
            // The device answers it from the names block; nothing to do here.
            Request::GetLineNames => Ok(0),
            Request::GetDirection { gpio } => Ok(self.backend.direction(gpio)? as u8),
            Request::SetDirection { gpio, direction } => {
                if direction != Direction::In {
                    // Releasing discards all of the line's state; an output
                    // has no interrupt.
                    self.disable_irq(gpio, mem);
                }
                self.backend.set_direction(gpio, direction)?;
                Ok(0)
            }
            Request::GetValue { gpio } => Ok(u8::from(self.backend.value(gpio)?)),
            Request::SetValue { gpio, high } => {
                self.backend.set_value(gpio, high)?;
                Ok(0)
            }
            Request::SetIrqType { gpio, trigger } => self.set_irq_type(gpio, trigger, mem),
        }
    }

    fn set_irq_type(&mut self, gpio: u16, trigger: IrqType, mem: &GuestMem) -> Result<u8> {
        if !self.irq_negotiated {
            return Err(Error::IrqNotNegotiated);
        }
        if trigger == IrqType::None {
            self.disable_irq(gpio, mem);
            return Ok(0);
        }
        if let Err(e) = self.backend.set_edges(gpio, edges_for(trigger)) {
            self.refuse(gpio);
            return Err(e);
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
            self.fire(gpio, &chain, VIRTIO_GPIO_IRQ_STATUS_INVALID, mem);
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
        let note = if status == VIRTIO_GPIO_IRQ_STATUS_VALID {
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
            .and_then(|l| active_level(l.trigger))
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
            self.fire(gpio, &chain, VIRTIO_GPIO_IRQ_STATUS_VALID, mem);
        }
    }

    /// The driver posted an event buffer for `gpio`, unmasking its
    /// interrupt. Returns the used length to complete it now, or `None` if
    /// it is kept until the interrupt fires.
    pub fn unmask(&mut self, gpio: u16, chain: DescChain, mem: &GuestMem) -> Option<u32> {
        let ngpio = self.ngpio;
        let Some(line) = self.lines.get_mut(usize::from(gpio)) else {
            self.log
                .warn(|| format!("event buffer for line {gpio} out of range (ngpio {ngpio})"));
            return Some(reply_status(&chain, mem, VIRTIO_GPIO_IRQ_STATUS_INVALID));
        };
        if line.held.is_some() {
            self.log
                .warn(|| format!("second event buffer for line {gpio}: returned"));
            return Some(reply_status(&chain, mem, VIRTIO_GPIO_IRQ_STATUS_INVALID));
        }
        let fire_now = match line.trigger {
            // Enabling failed: keep it (see `IrqLine::refused`).
            IrqType::None if line.refused => false,
            // Unmasked before enabled: the spec says return it unused.
            IrqType::None => {
                return Some(self.reply_event(gpio, &chain, VIRTIO_GPIO_IRQ_STATUS_INVALID, mem));
            }
            IrqType::EdgeRising | IrqType::EdgeFalling | IrqType::EdgeBoth => {
                std::mem::take(&mut line.latched)
            }
            IrqType::LevelHigh | IrqType::LevelLow => self.level_active(gpio),
        };
        if fire_now {
            return Some(self.reply_event(gpio, &chain, VIRTIO_GPIO_IRQ_STATUS_VALID, mem));
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
                if !edges_for(line.trigger).contains(edge) {
                    return;
                }
                if let Some(chain) = line.held.take() {
                    self.fire(gpio, &chain, VIRTIO_GPIO_IRQ_STATUS_VALID, mem);
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

    /// Whether an event buffer is held for `gpio` (its interrupt is
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

    /// Back to the state of a fresh device: every interrupt off, every line
    /// released.
    pub fn reset(&mut self) {
        for line in &mut self.lines {
            *line = IrqLine::default();
        }
        self.fired.clear();
        self.backend.release_all();
    }
}

/// Writes a one-byte status into the chain's writable part; the used length.
pub fn reply_status(chain: &DescChain, mem: &GuestMem, status: u8) -> u32 {
    let mut writer = chain.writer(mem);
    let _ = writer.write_all(&[status]);
    writer.used_len()
}
