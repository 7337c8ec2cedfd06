// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The virtio-gpio device (ID 41): decodes each request, hands it to the
//! chip's [`GpioLines`], and completes it.
//!
//! Requests on the request queue are answered at once. Event-queue buffers
//! unmask a line's interrupt and are kept by [`GpioLines`] until it fires
//! (see [`crate::lines`]).
//!
//! Response lengths are exactly what Linux's driver checks for: 2 bytes, or
//! 1 + `gpio_names_size` for the names, and 1 byte on the event queue.

use std::mem::size_of;

use vhost_device_common::{
    DescChain, DeviceResult, EventRegistry, EventSet, GuestMem, Queues, VirtioDevice, Writer,
};
use vm_memory::ByteValued;

use crate::backend::{Edge, GpioBackend};
use crate::error::{Error, Result};
use crate::lines::GpioLines;
use crate::protocol::{
    IrqType, VirtioGpioConfig, VirtioGpioIrqRequest, VirtioGpioIrqResponse, VirtioGpioResponse,
    EVENT_QUEUE, REQUEST_QUEUE, VIRTIO_GPIO_F_IRQ, VIRTIO_GPIO_STATUS_OK,
};
use crate::request::Request;

/// Largest queue size accepted.
pub const QUEUE_SIZE: u16 = 256;

/// The virtio-gpio device over a [`GpioBackend`].
#[derive(Debug)]
pub struct GpioDevice<B> {
    lines: GpioLines<B>,
    config: VirtioGpioConfig,
    names: Vec<u8>,
}

impl<B: GpioBackend> GpioDevice<B> {
    /// A device for `backend`'s lines.
    pub fn new(backend: B) -> Self {
        let ngpio = backend.num_lines();
        let names = names_block(&backend.line_names(), ngpio);
        let config = VirtioGpioConfig {
            ngpio: ngpio.into(),
            padding: [0; 2],
            gpio_names_size: u32::try_from(names.len()).unwrap_or(0).into(),
        };
        GpioDevice {
            lines: GpioLines::new(backend),
            config,
            names,
        }
    }

    /// The lines' state.
    pub fn lines(&self) -> &GpioLines<B> {
        &self.lines
    }

    /// The lines' state, mutably.
    pub fn lines_mut(&mut self) -> &mut GpioLines<B> {
        &mut self.lines
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        self.lines.backend()
    }

    /// The names block GET_LINE_NAMES returns.
    pub fn names(&self) -> &[u8] {
        &self.names
    }

    /// Tells the device which features the driver accepted.
    pub fn set_irq_negotiated(&mut self, negotiated: bool) {
        self.lines.set_irq_negotiated(negotiated);
    }

    /// Handles one request-queue chain and returns the used length (0 for a
    /// chain that had no room even for a status byte). This is the one
    /// place a failed request is logged and answered.
    pub fn handle_request(&mut self, chain: &DescChain, mem: &GuestMem) -> u32 {
        let mut writer = chain.writer(mem);
        match self.respond(chain, mem, &mut writer) {
            Ok(len) => len,
            Err(e) => {
                self.lines
                    .log()
                    .warn(|| format!("request {}: {e}", chain.head()));
                error_reply(&mut writer, e.status())
            }
        }
    }

    fn respond(
        &mut self,
        chain: &DescChain,
        mem: &GuestMem,
        writer: &mut Writer<'_, GuestMem>,
    ) -> Result<u32> {
        let request = Request::decode(&mut chain.reader(mem))?;
        let room = writer.available();
        if request == Request::GetLineNames {
            let need = 1 + self.names.len();
            if self.names.is_empty() || room < need {
                return Err(Error::NoRoom {
                    what: "GET_LINE_NAMES",
                    room,
                    need,
                });
            }
            // Room was checked above.
            let _ = writer.write_all(&[VIRTIO_GPIO_STATUS_OK]);
            let _ = writer.write_all(&self.names);
            return Ok(writer.used_len());
        }
        let need = size_of::<VirtioGpioResponse>();
        if room < need {
            return Err(Error::NoRoom {
                what: "request",
                room,
                need,
            });
        }
        let value = self.lines.execute(request, mem)?;
        // Room was checked above, so this cannot fail short.
        let _ = writer.write_obj(VirtioGpioResponse {
            status: VIRTIO_GPIO_STATUS_OK,
            value,
        });
        Ok(writer.used_len())
    }

    /// Handles one event-queue chain: the driver unmasking a line. Returns
    /// the used length to complete it now, or `None` if the device keeps it
    /// until the interrupt fires.
    pub fn handle_event_buffer(&mut self, chain: DescChain, mem: &GuestMem) -> Option<u32> {
        let mut reader = chain.reader(mem);
        let len = reader.available();
        let want = size_of::<VirtioGpioIrqRequest>();
        let request = (len == want)
            .then(|| reader.read_obj::<VirtioGpioIrqRequest>().ok())
            .flatten();
        let Some(request) = request else {
            self.lines
                .log()
                .warn(|| format!("event buffer {}: {len} bytes, not {want}", chain.head()));
            return Some(0);
        };
        if chain.writer(mem).available() < size_of::<VirtioGpioIrqResponse>() {
            self.lines
                .log()
                .warn(|| format!("event buffer {}: no room for the status", chain.head()));
            return Some(0);
        }
        self.lines.unmask(request.gpio.to_native(), chain, mem)
    }

    /// Handles the edges a backend fd reported.
    pub fn handle_backend_event(&mut self, token: u16, mem: &GuestMem) {
        self.lines.handle_backend_event(token, mem);
    }

    /// One edge on a line.
    pub fn on_edge(&mut self, gpio: u16, edge: Edge, mem: &GuestMem) {
        self.lines.on_edge(gpio, edge, mem);
    }

    /// Takes the event-queue completions made while handling something
    /// else.
    pub fn take_fired(&mut self) -> std::vec::Drain<'_, (u16, u32)> {
        self.lines.take_fired()
    }

    /// Whether the device holds an event buffer for `gpio` (its interrupt is
    /// unmasked).
    pub fn is_unmasked(&self, gpio: u16) -> bool {
        self.lines.is_unmasked(gpio)
    }

    /// The line's current trigger.
    pub fn trigger(&self, gpio: u16) -> Option<IrqType> {
        self.lines.trigger(gpio)
    }

    fn flush_fired(&mut self, queues: &mut Queues<'_>) {
        let mut fired = self.lines.take_fired().peekable();
        if fired.peek().is_none() {
            return;
        }
        if let Some(mut queue) = queues.get(EVENT_QUEUE) {
            for (head, len) in fired {
                queue.complete(head, len);
            }
        }
    }
}

/// An error response in whatever room there is: status and value if both
/// fit, the status alone if only it does, nothing at all otherwise.
fn error_reply(writer: &mut Writer<'_, GuestMem>, status: u8) -> u32 {
    let reply = VirtioGpioResponse { status, value: 0 };
    let n = writer.available().min(size_of::<VirtioGpioResponse>());
    let _ = writer.write_all(reply.as_slice().get(..n).unwrap_or_default());
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
        self.config.as_slice()
    }

    fn activate(&mut self, events: EventRegistry) -> DeviceResult {
        self.lines.backend_mut().activate(events)?;
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
        self.lines.handle_backend_event(token, mem);
        self.flush_fired(queues);
        Ok(())
    }

    fn queue_stopped(&mut self, index: usize) {
        if index == EVENT_QUEUE {
            self.lines.forget_event_buffers();
        }
    }

    fn reset(&mut self) {
        self.lines.reset();
    }
}

#[cfg(test)]
mod tests;
