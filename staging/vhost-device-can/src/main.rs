// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! vhost-device-can: a vhost-user virtio-can backend.

use std::process::ExitCode;

use vhost_device_can::args::Args;
use vhost_device_can::CanConfig;
use vhost_device_common::{cli, daemon};

fn main() -> ExitCode {
    cli::run::<Args>(|args| {
        let config = CanConfig::from_args(&args)?;
        let policy = config.sandbox_policy();
        daemon::serve_with("vhost-device-can", &args.socket, &policy, move |guest| {
            Ok(config.build_device(guest)?)
        })?;
        Ok(())
    })
}
