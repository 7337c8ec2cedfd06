// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The control queue: one command at a time, in order, with the chains
//! behind a held display command waiting in a backlog.

use std::io;

use vhost_device_common::{DescChain, GuestMem, Queue, Queues, RateLimited};

use super::fences::Fenced;
use super::{GpuDevice, Outcome, WaitKind, CONTROL_QUEUE};
use crate::backend::DisplayReply;
use crate::protocol::{cmd, CtrlHdr, HDR_SIZE};

/// How long the frontend may take to answer GET_DISPLAY_INFO or GET_EDID
/// before the guest gets our own answer.
pub const DISPLAY_QUERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

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
                let len = write_response(&self.log, &chain, queue.memory(), &bytes);
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
                Some(write_response(&self.log, &chain, mem, &bytes))
            }
            Outcome::Wait { batch, kind, hdr } => {
                let ticket = self.next_ticket;
                self.next_ticket += 1;
                let queued = self
                    .display
                    .as_ref()
                    .is_some_and(|d| d.submit(ticket, batch));
                if queued {
                    if kind != WaitKind::NoData {
                        self.arm_query_timer();
                    }
                    self.pending = Some(Pending {
                        ticket,
                        chain,
                        kind,
                        hdr,
                    });
                    None
                } else {
                    let bytes = self.finish(kind, &hdr, DisplayReply::Unavailable);
                    Some(write_response(&self.log, &chain, mem, &bytes))
                }
            }
        }
    }

    fn arm_query_timer(&mut self) {
        if let Some(timer) = &mut self.query_timer {
            if let Err(e) = timer.reset(DISPLAY_QUERY_TIMEOUT, None) {
                log::warn!("display query timer: {e}");
            }
        }
    }

    /// The frontend did not answer a display query in time: answer it
    /// ourselves and stop using that display socket until the next one.
    pub(super) fn query_timed_out(&mut self, queues: &mut Queues<'_>) {
        if let Some(timer) = &mut self.query_timer {
            // Non-blocking: nothing to read means a stale wake-up.
            let _ = timer.wait();
        }
        let Some(pending) = self.pending.take_if(|p| p.kind != WaitKind::NoData) else {
            return;
        };
        log::warn!(
            "the frontend did not answer a display query within {DISPLAY_QUERY_TIMEOUT:?}; \
             using our own modes until it hands over a new display socket"
        );
        self.state.frontend_display = false;
        let bytes = self.finish(pending.kind, &pending.hdr, DisplayReply::Unavailable);
        self.complete(queues, vec![(pending.chain, bytes)]);
        self.process_control(queues);
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

    pub(super) fn process_control(&mut self, queues: &mut Queues<'_>) {
        let Some(mut queue) = queues.get(CONTROL_QUEUE) else {
            return;
        };
        self.run_backlog(&mut queue);
        queue.drain(|chain, mem| {
            if self.pending.is_some() {
                self.backlog.push_back(chain);
                return None;
            }
            self.run_one(chain, mem)
        });
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
