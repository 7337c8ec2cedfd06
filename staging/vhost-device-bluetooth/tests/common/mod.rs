// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! A guest's side of the device for integration tests: the driver's
//! habits (one 1000-byte RX buffer at a time, one TX packet per buffer).

#![allow(dead_code, clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Duration;

use vhost_device_common::testing::{FrontendOptions, TestFrontend};

pub const WAIT: Duration = Duration::from_secs(5);

pub fn options() -> FrontendOptions {
    FrontendOptions {
        num_queues: Some(2),
        ..Default::default()
    }
}

/// An HCI command as the driver sends it.
pub fn command(opcode: u16, params: &[u8]) -> Vec<u8> {
    let mut b = vec![1];
    b.extend(opcode.to_le_bytes());
    b.push(params.len() as u8);
    b.extend(params);
    b
}

/// The driver side of one device.
pub struct Driver {
    pub fe: TestFrontend,
}

impl Driver {
    /// Connected, with the first RX buffer posted as Linux does in probe.
    pub fn new(fe: TestFrontend) -> Self {
        let mut d = Driver { fe };
        d.post_rx();
        d
    }

    pub fn post_rx(&mut self) {
        let rx = self.fe.queue(1).unwrap();
        rx.add(&[], &[1000]).unwrap();
        rx.kick().unwrap();
    }

    /// Sends one packet; the TX buffer comes back with nothing written.
    pub fn send(&mut self, packet: &[u8]) {
        let used = self
            .fe
            .queue(0)
            .unwrap()
            .request(&[packet], &[], WAIT)
            .unwrap();
        assert_eq!(used.len, 0);
    }

    /// The next packet, re-posting the buffer as virtbt_rx_work does.
    pub fn recv(&mut self) -> Vec<u8> {
        let used = self.fe.queue(1).unwrap().wait_used(WAIT).unwrap();
        assert!(used.len > 0 && used.len <= 1000, "used.len {}", used.len);
        self.post_rx();
        used.data
    }

    /// Whether a packet arrives within `limit`.
    pub fn recv_within(&mut self, limit: Duration) -> Option<Vec<u8>> {
        let used = self.fe.queue(1).unwrap().wait_used(limit).ok()?;
        self.post_rx();
        Some(used.data)
    }

    /// Sends a command and returns its Command Complete: status and return
    /// parameters.
    pub fn cmd(&mut self, opcode: u16, params: &[u8]) -> (u8, Vec<u8>) {
        self.send(&command(opcode, params));
        let e = self.recv();
        assert_eq!(&e[..2], &[4, 0x0e], "{e:02x?}");
        assert_eq!(e[2] as usize, e.len() - 3);
        assert_eq!(e[3], 1, "Num_HCI_Command_Packets");
        assert_eq!(u16::from_le_bytes([e[4], e[5]]), opcode);
        (e[6], e[7..].to_vec())
    }
}
