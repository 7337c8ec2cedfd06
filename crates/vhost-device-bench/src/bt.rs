// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! bt: HCI command round trips through a virtio-bluetooth device. The
//! command goes out on the tx queue and its Command Complete comes back on
//! the rx queue, in a buffer posted beforehand, as Linux's virtio_bt does
//! it (one 1000-byte buffer per expected packet, re-posted after each).
//!
//! The packets are built here from the Bluetooth Core specification, not
//! from our device crate, so any virtio-bluetooth backend can be measured.
//! [`BtDriver`] goes through the test frontend on both queues (`--driver
//! frontend`), [`BtLean`] republishes prepared chains (`--driver lean`).

use std::time::Duration;

use vhost_device_common::testing::{TestFrontend, TestQueue, Used};

use crate::driver::{LeanDriver, Template};
use crate::error::{Error, Result};
use crate::load::{drain_eventfd, wait_readable, Driver};

/// Linux's `VIRTBT_RX_BUF_SIZE`.
const RX_BUF: u32 = 1000;
/// HCI Read BD_ADDR (OGF 0x04, OCF 0x0009), H:4 framed.
const READ_BD_ADDR: [u8; 4] = [0x01, 0x09, 0x10, 0x00];
/// HCI Reset, to start from a known state.
const RESET: [u8; 4] = [0x01, 0x03, 0x0c, 0x00];

/// Whether `reply` is the Command Complete of `opcode` with status 0 and
/// `ret_len` bytes of return parameters.
fn complete_ok(reply: &[u8], len: u32, opcode: u16, ret_len: usize) -> bool {
    let [lo, hi] = opcode.to_le_bytes();
    len as usize == 7 + ret_len
        && reply.get(..7) == Some(&[0x04, 0x0e, (4 + ret_len) as u8, 1, lo, hi, 0][..])
}

/// Drives Read BD_ADDR round trips over the two queues.
#[derive(Debug)]
pub struct BtDriver<'a> {
    tx: &'a mut TestQueue,
    rx: &'a mut TestQueue,
    in_flight: usize,
    used: Used,
}

impl<'a> BtDriver<'a> {
    /// Resets the controller, checks the reply, and posts `depth` RX
    /// buffers (one for ping-pong, as Linux does).
    pub fn new(fe: &'a mut TestFrontend, depth: usize) -> Result<Self> {
        let mut d = Self::reset(fe)?;
        d.post_rx(depth)?;
        Ok(d)
    }

    /// Takes both queues, resets the controller and reads its address
    /// once, checking both replies; leaves no RX buffer posted.
    fn reset(fe: &'a mut TestFrontend) -> Result<Self> {
        // Queue 0 is tx, queue 1 rx (virtio_bt's VIRTBT_VQ_TX, VIRTBT_VQ_RX).
        let [tx, rx] = fe.queues_mut() else {
            return Err(Error::Failed(
                "a virtio-bluetooth device has two queues".into(),
            ));
        };
        let mut d = BtDriver {
            tx,
            rx,
            in_flight: 0,
            used: Used::default(),
        };
        d.post_rx(1)?;
        d.round_trip(&RESET, 0x0c03, 0)?;
        d.post_rx(1)?;
        d.round_trip(&READ_BD_ADDR, 0x1009, 6)?;
        Ok(d)
    }

    fn post_rx(&mut self, n: usize) -> Result<()> {
        for _ in 0..n {
            self.rx
                .add(&[], &[RX_BUF])
                .map_err(Error::frontend("posting an RX buffer"))?;
        }
        self.rx.kick().map_err(Error::frontend("kicking rx"))?;
        Ok(())
    }

    /// One checked command outside the measurement.
    fn round_trip(&mut self, cmd: &[u8], opcode: u16, ret_len: usize) -> Result<()> {
        let wait = Duration::from_secs(5);
        self.tx
            .request(&[cmd], &[], wait)
            .map_err(Error::frontend("sending a command"))?;
        let used = self
            .rx
            .wait_used(wait)
            .map_err(Error::frontend("waiting for the event"))?;
        if !complete_ok(&used.data, used.len, opcode, ret_len) {
            return Err(bad_reply(&used));
        }
        // The command's own buffer, so that the queue is idle.
        while self
            .tx
            .try_used_into(&mut self.used)
            .map_err(Error::frontend("reading tx used"))?
        {}
        if self.tx.in_flight() != 0 {
            return Err(Error::Protocol(
                "the command's Command Complete came before its TX buffer".into(),
            ));
        }
        Ok(())
    }
}

/// Read BD_ADDR as a [`Template`] for the tx queue: the device returns the
/// buffer with nothing written.
fn command_template() -> Template {
    Template {
        name: "Read BD_ADDR",
        readable: vec![READ_BD_ADDR.to_vec()],
        writable: Vec::new(),
        check: |len, _| len == 0,
    }
}

/// An RX buffer as a [`Template`]: filled with Read BD_ADDR's Command
/// Complete.
fn event_template() -> Template {
    Template {
        name: "Read BD_ADDR",
        readable: Vec::new(),
        writable: vec![RX_BUF],
        check: |len, data| complete_ok(data, len, 0x1009, 6),
    }
}

/// The templates a [`BtLean`] lays out: tx's command, then rx's buffer.
pub fn lean_templates() -> [Vec<Template>; 2] {
    [vec![command_template()], vec![event_template()]]
}

/// The same round trips with [`LeanDriver`]s on both queues: the command
/// and the RX buffers are laid out once and republished by head, so that
/// the bench's own work per round trip is as small as gpio-get's lean
/// driver's. The driver still does what Linux's virtio_bt does: it asks for
/// a signal of every tx completion (re-arming tx's `used_event` when it
/// takes them, as `virtqueue_get_buf` does), re-posts one RX buffer per
/// event, and kicks rx unless the device said it need not.
pub struct BtLean<'a> {
    tx: LeanDriver<'a>,
    rx: LeanDriver<'a>,
    in_flight: usize,
}

impl std::fmt::Debug for BtLean<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BtLean")
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

impl<'a> BtLean<'a> {
    /// Resets the controller through the test frontend, then takes both
    /// queues over with `depth` command slots and `depth` RX buffers,
    /// which it posts. `templates` comes from [`lean_templates`].
    pub fn new(
        fe: &mut TestFrontend,
        templates: &'a [Vec<Template>; 2],
        depth: usize,
    ) -> Result<Self> {
        let setup = BtDriver::reset(fe)?;
        let [tx_templates, rx_templates] = templates;
        let tx = LeanDriver::new(setup.tx, "bt", tx_templates, depth)?;
        let mut rx = LeanDriver::new(setup.rx, "bt", rx_templates, depth)?;
        for _ in 0..depth {
            rx.post()?;
        }
        rx.kick()?;
        Ok(BtLean {
            tx,
            rx,
            in_flight: 0,
        })
    }
}

impl Driver for BtLean<'_> {
    fn post(&mut self) -> Result<()> {
        self.tx.post()?;
        self.in_flight += 1;
        Ok(())
    }

    fn kick(&mut self) -> Result<()> {
        self.tx.kick()
    }

    fn reap(&mut self) -> Result<usize> {
        // Events first: the device completes a command's TX buffer before
        // it publishes the event, so every command answered here has its
        // TX slot back below and can be posted again.
        let n = self.rx.reap()?;
        for _ in 0..n {
            self.rx.post()?;
        }
        if n > 0 {
            self.rx.kick()?;
            self.in_flight = self.in_flight.saturating_sub(n);
        }
        // TX buffers come back empty; the signal for the next one is asked
        // for, as a driver's tx interrupt handler does. It is not waited
        // for: its eventfd is left to count (see BtDriver::wait).
        if self.tx.reap()? > 0 {
            self.tx.arm();
        }
        Ok(n)
    }

    fn wait(&mut self, timeout: Duration) -> Result<()> {
        self.rx.wait(timeout)
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }
}

fn bad_reply(used: &Used) -> Error {
    Error::BadReply {
        scenario: "bt",
        request: "Read BD_ADDR",
        len: used.len,
        bytes: used.data.iter().take(32).copied().collect(),
    }
}

impl Driver for BtDriver<'_> {
    fn post(&mut self) -> Result<()> {
        self.tx
            .add(&[&READ_BD_ADDR], &[])
            .map_err(Error::frontend("posting a command"))?;
        self.in_flight += 1;
        Ok(())
    }

    fn kick(&mut self) -> Result<()> {
        self.tx.kick().map_err(Error::frontend("kicking tx"))?;
        Ok(())
    }

    fn reap(&mut self) -> Result<usize> {
        // TX buffers come back empty; only their descriptors matter.
        while self
            .tx
            .try_used_into(&mut self.used)
            .map_err(Error::frontend("reading tx used"))?
        {}
        let mut n = 0;
        while self
            .rx
            .try_used_into(&mut self.used)
            .map_err(Error::frontend("reading rx used"))?
        {
            if !complete_ok(&self.used.data, self.used.len, 0x1009, 6) {
                return Err(bad_reply(&self.used));
            }
            self.rx
                .add(&[], &[RX_BUF])
                .map_err(Error::frontend("re-posting an RX buffer"))?;
            n += 1;
        }
        if n > 0 {
            self.rx.kick().map_err(Error::frontend("kicking rx"))?;
            self.in_flight = self.in_flight.saturating_sub(n);
        }
        Ok(n)
    }

    fn wait(&mut self, timeout: Duration) -> Result<()> {
        wait_readable(self.rx.call_fd(), timeout)?;
        drain_eventfd(self.rx.call_fd())?;
        // The tx queue's signals are never waited for, so its eventfd is
        // left to count them: draining it would cost a system call a round
        // trip that a real driver spends in its tx interrupt instead.
        Ok(())
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_complete_is_recognised() {
        let mut reply = vec![0x04, 0x0e, 10, 1, 0x09, 0x10, 0];
        reply.extend([1, 2, 3, 4, 5, 6]);
        assert!(complete_ok(&reply, 13, 0x1009, 6));
        assert!(!complete_ok(&reply, 12, 0x1009, 6));
        reply.truncate(6);
        reply.extend([1, 1, 2, 3, 4, 5, 6]);
        assert!(!complete_ok(&reply, 13, 0x1009, 6));
    }
}
