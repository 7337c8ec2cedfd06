// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use vhost_device_common::SocketArgs;

/// vhost-user backend for virtio-gpio (device ID 41): host GPIO chips through
/// the kernel's GPIO character device, or simulated chips driven through a
/// control socket.
#[derive(Parser, Debug)]
#[command(
    name = "vhost-device-gpio",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Examples:\n  \
        vhost-device-gpio --socket-path /tmp/gpio.sock --device-list 0\n  \
        vhost-device-gpio --socket-path /tmp/gpio.sock --socket-count 4 -l 3:s4:6:s1\n  \
        vhost-device-gpio --socket-path /tmp/gpio.sock -l s8 --sim-control /tmp/gpio-sim.ctl\n  \
        vhost-device-gpio sim-set --control /tmp/gpio-sim.ctl 3=1 4=0"
)]
pub struct Args {
    #[command(flatten)]
    pub socket: SocketArgs,

    /// The GPIO chip of each guest, one entry per socket, separated by ':'
    /// (as upstream) or ',' (then labels may contain ':'). An entry is N for
    /// /dev/gpiochipN, sN for a simulated chip with N lines (1 to 1024), a
    /// path to a GPIO character device, or a chip label (label=NAME, or a
    /// bare NAME that is none of the above).
    #[arg(short = 'l', long, value_name = "LIST", required = true)]
    pub device_list: Option<String>,

    /// Control socket of the simulated chips: a Unix socket that drives
    /// their inputs and reads their outputs while the guest runs (see the
    /// sim-set and sim-get subcommands). With --socket-count N > 1, guest i's
    /// control socket is PATH followed by i (PATH0, PATH1, …), like the
    /// vhost-user sockets. Only simulated entries get one.
    #[arg(long, value_name = "PATH")]
    pub sim_control: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Talking to a running daemon's simulated chip.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Drives inputs of a simulated chip: LINE=0 or LINE=1, applied in order.
    /// The guest sees the edges it asked for.
    SimSet {
        /// The daemon's control socket (its --sim-control).
        #[arg(long, value_name = "PATH")]
        control: PathBuf,
        /// LINE=VALUE pairs.
        #[arg(required = true, value_name = "LINE=VALUE")]
        values: Vec<String>,
    },
    /// Prints the level of lines as the guest sees them (its outputs, or what
    /// is driven onto its inputs), one LINE=VALUE per line.
    SimGet {
        /// The daemon's control socket (its --sim-control).
        #[arg(long, value_name = "PATH")]
        control: PathBuf,
        /// Line numbers.
        #[arg(required = true, value_name = "LINE")]
        lines: Vec<u16>,
    },
    /// Prints what the guest did with lines: direction, level, output value,
    /// external drive and enabled edges.
    SimInfo {
        /// The daemon's control socket (its --sim-control).
        #[arg(long, value_name = "PATH")]
        control: PathBuf,
        /// Line numbers.
        #[arg(required = true, value_name = "LINE")]
        lines: Vec<u16>,
    },
}
