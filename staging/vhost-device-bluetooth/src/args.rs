// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The command line.

use clap::{Parser, ValueEnum};
use vhost_device_common::SocketArgs;

/// vhost-user backend for virtio-bluetooth (device ID 40): a controller
/// built into the daemon whose guests share a simulated radio, an H:4 byte
/// stream (Unix socket, TCP, serial device or pty), or a host adapter
/// through the HCI user channel.
#[derive(Parser, Debug)]
#[command(
    name = "vhost-device-bluetooth",
    version,
    after_help = "Examples:\n  \
        vhost-device-bluetooth --socket-path /tmp/bt.sock\n  \
        vhost-device-bluetooth --socket-path /tmp/bt.sock --socket-count 2 --bdaddr 52:54:00:b7:00:10\n  \
        vhost-device-bluetooth --socket-path /tmp/bt.sock --backend unix:/tmp/bt-server-bredr\n  \
        vhost-device-bluetooth --socket-path /tmp/bt.sock --backend tcp:127.0.0.1:6402\n  \
        vhost-device-bluetooth --socket-path /tmp/bt.sock --backend serial:/dev/ttyUSB0@115200\n  \
        vhost-device-bluetooth --socket-path /tmp/bt.sock --backend hci:0"
)]
pub struct Args {
    #[command(flatten)]
    pub socket: SocketArgs,

    /// The controller of each guest, one entry per socket separated by
    /// ',', or one entry for all guests (built-in only): `builtin`, a
    /// controller in the daemon; `unix:PATH` or `tcp:HOST:PORT`, an H:4
    /// stream to connect to; `serial:PATH[@BAUD]`, a UART or pty carrying
    /// H:4; `hci:N`, host adapter hciN through the HCI user channel (needs
    /// CAP_NET_ADMIN; the host loses the adapter meanwhile).
    #[arg(short, long, value_name = "LIST", default_value = "builtin")]
    pub backend: String,

    /// Public address of the first built-in controller; the next guests get
    /// the following addresses.
    #[arg(long, value_name = "ADDR", default_value = "52:54:00:b7:00:00")]
    pub bdaddr: String,

    /// Local name of the built-in controllers after Reset; with several
    /// guests, "-N" is appended for guest N.
    #[arg(long, value_name = "NAME", default_value = "vhost-device-bluetooth")]
    pub name: String,

    /// Packets held for the guest while it has no RX buffer posted (1 to
    /// 4096). A stream or host adapter is not read while this is full.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub rx_backlog: usize,

    /// Offer VIRTIO_BT_F_VND_HCI with this vendor: the driver then sends the
    /// vendor's setup commands, which the controller must answer.
    #[arg(long, value_enum, value_name = "VENDOR")]
    pub vendor: Option<VendorArg>,

    /// Offer VIRTIO_BT_F_MSFT_EXT with this opcode of Microsoft's vendor
    /// extension (e.g. 0xfd70).
    #[arg(long, value_name = "OPCODE", value_parser = parse_u16)]
    pub msft_opcode: Option<u16>,

    /// Offer VIRTIO_BT_F_AOSP_EXT: the guest uses the AOSP vendor commands.
    #[arg(long)]
    pub aosp: bool,

    /// Delay between attempts to reconnect a dropped stream, in ms.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub reconnect_ms: u64,
}

/// `--vendor` values (`enum virtio_bt_config_vendor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum VendorArg {
    /// Zephyr.
    Zephyr,
    /// Intel.
    Intel,
    /// Realtek.
    Realtek,
}

/// A u16 in decimal or 0x-prefixed hex.
fn parse_u16(s: &str) -> Result<u16, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| format!("'{s}' is not a 16-bit number"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_u16("0xfd70"), Ok(0xfd70));
        assert_eq!(parse_u16("17"), Ok(17));
        parse_u16("0x10000").unwrap_err();
    }
}
