// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The command line.

use std::path::PathBuf;

use clap::Parser;
use vhost_device_common::SocketArgs;

/// vhost-user backend for virtio-rpmsg (device ID 7): rpmsg channels whose
/// remote processor is a host program on a Unix socket, or another guest.
#[derive(Parser, Debug)]
#[command(
    name = "vhost-device-rpmsg",
    version,
    after_help = "Examples:\n  \
        vhost-device-rpmsg --socket-path /tmp/rpmsg.sock \\\n      \
        --channel name=rpmsg-tty,addr=0x400,socket=/run/rpmsg-tty.sock \\\n      \
        --channel name=rpmsg-raw,addr=0x401,socket=/run/rpmsg-raw.sock\n  \
        vhost-device-rpmsg --socket-path /tmp/rpmsg.sock --socket-count 2 \\\n      \
        --channel name=rpmsg-raw,addr=0x402,link\n  \
        vhost-device-rpmsg --socket-path /tmp/rpmsg.sock --guest-channel-dir /run/rpmsg"
)]
pub struct Args {
    #[command(flatten)]
    pub socket: SocketArgs,

    /// A channel the device announces to the guest, as
    /// name=NAME,addr=ADDR,HOST. NAME (up to 31 printable characters)
    /// picks the guest driver: rpmsg-tty gives /dev/ttyRPMSGn, rpmsg-raw
    /// gives /dev/rpmsgN. ADDR is the device-side endpoint address (decimal or 0x
    /// hex; not 53, the name service; by convention below 1024). HOST is socket=PATH (a
    /// SOCK_SEQPACKET Unix socket a host program connects to; one socket
    /// message is one rpmsg message; with --socket-count N > 1, guest i's
    /// socket is PATH followed by i), link (joins the two guests of
    /// --socket-count 2 on this channel), or echo (a simulated remote that
    /// sends every message back). Repeat the flag for more channels.
    #[arg(long = "channel", value_name = "SPEC")]
    pub channels: Vec<String>,

    /// Directory for the sockets of channels the guest announces itself
    /// (RPMSG_CREATE_DEV_IOCTL, in-kernel rpmsg drivers): one socket per
    /// channel, named NAME.ADDR after the channel and its guest address.
    /// With --socket-count N > 1, guest i's directory is DIR followed by i.
    /// Without it, such channels are refused (logged).
    #[arg(long, value_name = "DIR")]
    pub guest_channel_dir: Option<PathBuf>,

    /// Guest messages kept per channel while its host peer is slow or
    /// absent; beyond it they are dropped and counted. The guest's buffers
    /// are returned either way. The guest can send tens of thousands of
    /// messages a second, so this is what covers a host program that is
    /// descheduled for a moment.
    #[arg(long, value_name = "N", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub queue_limit: u32,
}
