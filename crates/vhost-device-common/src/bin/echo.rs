// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `vhost-device-echo`: the core's test-only device behind the real daemon.

use std::process::ExitCode;

use clap::Parser;
use vhost_device_common::{daemon, echo::Echo, SocketArgs};

/// A test-only vhost-user device that echoes requests back. It exists to
/// test and benchmark the shared daemon; it is not a virtio device a guest
/// driver knows.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    socket: SocketArgs,
}

fn main() -> ExitCode {
    vhost_device_common::cli::run::<Args>(|args| {
        daemon::serve("vhost-device-echo", &args.socket, |guest| {
            let guest = u32::try_from(guest)?;
            Ok(Echo::new(guest))
        })?;
        Ok(())
    })
}
