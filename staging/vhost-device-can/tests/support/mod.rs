// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! What the daemon tests share: the driver's side of the queues and the bus
//! control socket.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use vhost_device_can::protocol::{virtio_can_tx_out, CONTROL_QUEUE, TX_QUEUE, VIRTIO_CAN_TX};
use vhost_device_common::testing::TestFrontend;
use vm_memory::ByteValued;

/// Bound of every wait on a queue.
pub const WAIT: Duration = Duration::from_secs(5);

/// One control request; its result.
pub fn control(fe: &mut TestFrontend, msg_type: u16) -> u8 {
    let used = fe
        .queue(CONTROL_QUEUE)
        .unwrap()
        .request(&[&msg_type.to_le_bytes()], &[1], WAIT)
        .unwrap();
    assert_eq!(used.len, 1, "every control request is answered");
    used.data[0]
}

/// A `virtio_can_tx_out` with its payload.
pub fn tx_bytes(flags: u32, id: u32, payload: &[u8]) -> Vec<u8> {
    let len = u16::try_from(payload.len()).unwrap();
    let mut bytes = virtio_can_tx_out::new(VIRTIO_CAN_TX, flags, id, len)
        .as_slice()
        .to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

/// One TX request; its result.
pub fn send(fe: &mut TestFrontend, flags: u32, id: u32, payload: &[u8]) -> u8 {
    let used = fe
        .queue(TX_QUEUE)
        .unwrap()
        .request(&[&tx_bytes(flags, id, payload)], &[1], WAIT)
        .unwrap();
    assert_eq!(used.len, 1, "every TX request is answered");
    used.data[0]
}

/// One command on the bus control socket; the answer line.
pub fn bus_control(path: &Path, command: &str) -> Result<String, String> {
    let mut stream = UnixStream::connect(path).map_err(|e| e.to_string())?;
    writeln!(stream, "{command}").map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    Ok(line.trim().to_owned())
}
