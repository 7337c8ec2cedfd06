// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The command line.

use std::path::PathBuf;

use clap::Parser;
use vhost_device_common::SocketArgs;

use crate::device::DEFAULT_BACKLOG_FLAG;

/// vhost-user backend for virtio-can (device ID 36): each guest's CAN
/// controller sits on a host CAN interface (SocketCAN, real or vcan) or on a
/// virtual bus that all the guests of this daemon share.
#[derive(Parser, Debug)]
#[command(
    name = "vhost-device-can",
    version,
    after_help = "Examples:\n  \
        vhost-device-can --socket-path /tmp/can.sock --socket-count 2      (two guests, one virtual bus)\n  \
        vhost-device-can --socket-path /tmp/can.sock --device-list can0\n  \
        vhost-device-can --socket-path /tmp/can.sock --socket-count 3 -l bus,bus,vcan0"
)]
pub struct Args {
    #[command(flatten)]
    pub socket: SocketArgs,

    /// The CAN side of each guest, one entry per socket, separated by ','
    /// or ':'. An entry is `bus` for the daemon's virtual bus, or the name
    /// of a host CAN interface (can0, vcan0, ...). Without it every guest
    /// is on the virtual bus.
    #[arg(short = 'l', long, value_name = "LIST")]
    pub device_list: Option<String>,

    /// Received frames a guest's device keeps while the guest posts no
    /// buffer; past that, the oldest are dropped (counted and logged).
    #[arg(long, value_name = "FRAMES", default_value_t = DEFAULT_BACKLOG_FLAG,
          value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub rx_backlog: u32,

    /// A Unix socket to drive the virtual bus from outside while guests
    /// run: `busoff GUEST` takes that guest's controller off the bus,
    /// `dropped` prints each guest's dropped-frame count.
    #[arg(long, value_name = "PATH")]
    pub bus_control: Option<PathBuf>,
}
