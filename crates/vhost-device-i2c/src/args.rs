// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The command line.

use clap::Parser;
use vhost_device_common::SocketArgs;

/// vhost-user virtio-i2c backend: host I2C/SMBus adapters and simulated
/// chips on one virtual bus per guest.
#[derive(Parser, Debug, Clone, PartialEq)]
#[command(name = "vhost-device-i2c", version, about, long_about = None)]
pub struct Args {
    #[command(flatten)]
    pub socket: SocketArgs,

    /// Targets the guest sees, as comma-separated entries:
    /// BUS:ADDR[:ADDR...] for targets on host adapter BUS (a number N for
    /// /dev/i2c-N, or the adapter's name from
    /// /sys/bus/i2c/devices/i2c-N/name); sim:ADDR=eeprom:SIZE[:file=PATH]
    /// for a simulated 24C EEPROM (SIZE 128 … 65536 bytes, 2k, 64k, or a
    /// part name 24c01 … 24c512; PATH keeps its contents);
    /// sim:ADDR=lm75[:temp=CELSIUS] for a simulated LM75 sensor. Addresses
    /// are 7-bit, decimal or 0x-hex, 0x03..=0x77.
    /// Give it once for all guests, or once per guest (the i-th list for
    /// the i-th socket) with --socket-count.
    /// Example: --device-list 1:0x20:0x21,sim:0x50=eeprom:256,sim:0x48=lm75
    #[arg(short = 'l', long, value_name = "LIST", required = true)]
    pub device_list: Vec<String>,

    /// How long a host adapter's driver may wait for one transfer, in ms
    /// (set with i2c-dev's I2C_TIMEOUT when the adapter is opened, in steps
    /// of 10 ms; the setting stays with the adapter). A transfer runs on the
    /// guest's transfer thread and holds that guest's later requests, and
    /// the other guests on the same adapter, until it ends. Default 1000,
    /// Linux's own default for most adapters.
    #[arg(long, value_name = "MS", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub transfer_timeout_ms: u64,
}
