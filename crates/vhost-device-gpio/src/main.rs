// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! vhost-device-gpio: a vhost-user virtio-gpio backend.

use std::process::ExitCode;

use vhost_device_common::{cli, daemon};
use vhost_device_gpio::args::Args;
use vhost_device_gpio::{control, GpioConfig};

fn main() -> ExitCode {
    cli::run::<Args>(|args| {
        if let Some(command) = &args.command {
            control::run(command)?;
            return Ok(());
        }
        let config = GpioConfig::from_args(&args)?;
        let policy = config.sandbox_policy();
        daemon::serve_with("vhost-device-gpio", &args.socket, &policy, move |guest| {
            Ok(config.build_device(guest)?)
        })?;
        Ok(())
    })
}
