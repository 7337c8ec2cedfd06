// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The control queue: one command at a time, in order, with the chains
//! behind a held display command waiting in a backlog.

use std::io;

use vhost_device_common::{DescChain, GuestMem, Queue, Queues, RateLimited};

use vhost_device_common::EventSet;

use super::fences::Fenced;
use super::{GpuDevice, Outcome, WaitKind, CONTROL_QUEUE, DISPLAY_TOKEN};
use crate::backend::{DisplayReply, DisplayThread};
use crate::error::Error;
use crate::protocol::{cmd, CtrlHdr, HDR_SIZE};

/// How long the frontend may take to answer GET_DISPLAY_INFO or GET_EDID
/// before the guest gets our own answer.
pub const DISPLAY_QUERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
/// How long the frontend may take to read what SET_SCANOUT, RESOURCE_FLUSH
/// or RESOURCE_UNREF sends it. Longer than a query's: giving up means going
/// on without a display until the next socket, which a host under load
/// should not cause.
pub const DISPLAY_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Most chains held behind a held display command. A driver cannot have
/// more outstanding than its ring holds (at most 32768 entries, 256 for
/// QEMU's vhost-user-gpu); beyond this the guest is republishing heads.
pub(super) const MAX_BACKLOG: usize = 1024;

/// A control chain held until the display thread has done its batch.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) ticket: u64,
    pub(super) chain: DescChain,
    pub(super) kind: WaitKind,
    pub(super) hdr: CtrlHdr,
}

/// Makes `fd` non-blocking, so a stale readiness never blocks the worker.
pub(super) fn set_nonblocking(fd: &impl std::os::fd::AsRawFd) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: fcntl on an fd we own, with integer arguments only.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(raw, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Writes a response into the chain; returns the used length. A chain
/// too small for the response gets an ERR_UNSPEC header if that fits.
pub(super) fn write_response(
    log: &RateLimited,
    chain: &DescChain,
    mem: &GuestMem,
    bytes: &[u8],
) -> u32 {
    let mut writer = chain.writer(mem);
    if writer.available() < bytes.len() {
        log.warn(|| {
            format!(
                "response of {} bytes does not fit in {} writable bytes",
                bytes.len(),
                writer.available()
            )
        });
        if writer.available() >= HDR_SIZE {
            if let Some(hdr) = bytes.get(..HDR_SIZE).and_then(|b| CtrlHdr::decode(b).ok()) {
                let mut err = hdr;
                err.type_ = cmd::RESP_ERR_UNSPEC;
                let _ = writer.write_all(&err.encode());
            }
        }
        return writer.used_len();
    }
    if let Err(e) = writer.write_all(bytes) {
        log.warn(|| format!("writing a response: {e}"));
    }
    writer.used_len()
}

impl GpuDevice {
    /// Completes held chains, each with its response.
    pub(super) fn complete(&self, queues: &mut Queues<'_>, done: Vec<(DescChain, Vec<u8>)>) {
        if let Some(mut queue) = queues.get(CONTROL_QUEUE) {
            for (chain, bytes) in done {
                let len = write_response(&self.state.log, &chain, queue.memory(), &bytes);
                queue.complete(chain.head(), len);
            }
        }
    }

    /// Runs one control chain; None if it is now held for the display or
    /// a fence.
    pub(super) fn run_one(&mut self, chain: DescChain, mem: &GuestMem) -> Option<u32> {
        match self.execute(&chain, mem) {
            Outcome::Reply(bytes) => {
                // With a 3D renderer work may still be running on the host
                // GPU: a fenced response waits for the renderer's fence.
                if let Some(fence) = self.fence_for(&bytes) {
                    self.fenced.push(Fenced {
                        chain,
                        bytes,
                        fence,
                    });
                    return None;
                }
                Some(write_response(&self.state.log, &chain, mem, &bytes))
            }
            Outcome::Wait { batch, kind, hdr } => {
                let ticket = self.next_ticket;
                self.next_ticket += 1;
                let queued = self
                    .display
                    .as_ref()
                    .is_some_and(|d| d.submit(ticket, batch));
                if queued {
                    // Queries and socket writes alike: a display that
                    // never answers or never reads must not hold the
                    // queue for good.
                    self.arm_query_timer(kind);
                    self.pending = Some(Pending {
                        ticket,
                        chain,
                        kind,
                        hdr,
                    });
                    None
                } else {
                    let bytes = self.finish(kind, &hdr, DisplayReply::Unavailable);
                    Some(write_response(&self.state.log, &chain, mem, &bytes))
                }
            }
        }
    }

    fn arm_query_timer(&mut self, kind: WaitKind) {
        let timeout = if kind == WaitKind::NoData {
            DISPLAY_WRITE_TIMEOUT
        } else {
            DISPLAY_QUERY_TIMEOUT
        };
        if let Some(timer) = &mut self.query_timer {
            if let Err(e) = timer.reset(timeout, None) {
                log::warn!("display query timer: {e}");
            }
        }
    }

    /// The frontend did not answer or read in time: answer the held
    /// command ourselves and stop using that display socket until the next.
    pub(super) fn query_timed_out(&mut self, queues: &mut Queues<'_>) {
        if let Some(timer) = &mut self.query_timer {
            // Non-blocking: nothing to read means a stale wake-up (the
            // timer was re-armed for a newer wait since it fired).
            if timer.wait().is_err() {
                return;
            }
        }
        let Some(pending) = self.pending.take() else {
            return;
        };
        let waited = if pending.kind == WaitKind::NoData {
            DISPLAY_WRITE_TIMEOUT
        } else {
            DISPLAY_QUERY_TIMEOUT
        };
        self.state.log.warn(|| {
            format!(
                "the frontend's display did not answer or read within {waited:?}; \
                 going on without it until it hands over a new display socket"
            )
        });
        self.state.frontend_display = false;
        self.restart_display();
        let bytes = self.finish(pending.kind, &pending.hdr, DisplayReply::Unavailable);
        self.complete(queues, vec![(pending.chain, bytes)]);
        self.process_control(queues);
    }

    /// Leaves the display thread, stuck on a socket that does not answer,
    /// behind for a new one. The old thread ends as soon as its socket
    /// call returns (QEMU closes the socket when it hands over a new one or
    /// goes away): its channels are closed by then.
    fn restart_display(&mut self) {
        let Some(old) = self.display.take() else {
            return;
        };
        if let Some(events) = &self.events {
            if let Err(e) = events.unregister(old.event()) {
                log::debug!("display thread: unregister: {e}");
            }
        }
        drop(old);
        // Its cursor batches are lost with it.
        self.cursor_in_flight = 0;
        match DisplayThread::spawn("vhost-device-gpu") {
            Ok(display) => {
                if let Some(events) = &self.events {
                    if let Err(e) = events.register(display.event(), EventSet::IN, DISPLAY_TOKEN) {
                        log::warn!("display thread: {e}");
                        return;
                    }
                }
                self.display = Some(display);
            }
            Err(e) => log::warn!("cannot restart the display thread: {e}"),
        }
    }

    fn run_backlog(&mut self, queue: &mut Queue<'_>) {
        let mem = queue.memory();
        while self.pending.is_none() {
            let Some(chain) = self.backlog.pop_front() else {
                break;
            };
            let head = chain.head();
            if let Some(len) = self.run_one(chain, mem) {
                queue.complete(head, len);
            }
        }
    }

    /// Takes one chain off the control queue: runs it, or puts it in the
    /// backlog while a display command is held.
    pub(super) fn accept_control(&mut self, chain: DescChain, mem: &GuestMem) -> Option<u32> {
        if self.pending.is_none() {
            return self.run_one(chain, mem);
        }
        if self.backlog.len() < MAX_BACKLOG {
            self.backlog.push_back(chain);
            return None;
        }
        // Only a guest that republishes heads gets here: answer at once
        // rather than hold without bound.
        let hdr = CtrlHdr::read(&mut chain.reader(mem)).unwrap_or_default();
        let e = Error::Refused(format!(
            "more than {MAX_BACKLOG} requests behind a held display command"
        ));
        let Outcome::Reply(bytes) = self.failed(&hdr, &e) else {
            return Some(0);
        };
        Some(write_response(&self.state.log, &chain, mem, &bytes))
    }

    pub(super) fn process_control(&mut self, queues: &mut Queues<'_>) {
        let Some(mut queue) = queues.get(CONTROL_QUEUE) else {
            return;
        };
        self.run_backlog(&mut queue);
        queue.drain(|chain, mem| self.accept_control(chain, mem));
        drop(queue);
        self.register_renderer_poll();
    }

    pub(super) fn display_finished(&mut self, queues: &mut Queues<'_>) {
        let Some(display) = &self.display else {
            return;
        };
        for (ticket, answer) in display.finished() {
            if ticket == super::cursor::CURSOR_TICKET {
                self.cursor_in_flight = self.cursor_in_flight.saturating_sub(1);
                continue;
            }
            let Some(pending) = self.pending.take_if(|p| p.ticket == ticket) else {
                continue;
            };
            let bytes = self.finish(pending.kind, &pending.hdr, answer);
            self.complete(queues, vec![(pending.chain, bytes)]);
        }
        self.submit_cursor();
        self.process_control(queues);
    }
}
