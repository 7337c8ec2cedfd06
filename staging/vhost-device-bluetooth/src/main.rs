// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! vhost-device-bluetooth: a vhost-user virtio-bluetooth backend.

use std::process::ExitCode;

use vhost_device_bluetooth::args::Args;
use vhost_device_bluetooth::BtConfig;
use vhost_device_common::{cli, daemon};

fn main() -> ExitCode {
    cli::run::<Args>(|args| {
        let config = BtConfig::from_args(&args)?;
        let policy = config.sandbox_policy();
        daemon::serve_with(
            "vhost-device-bluetooth",
            &args.socket,
            &policy,
            move |guest| Ok(config.build_device(guest)?),
        )?;
        Ok(())
    })
}
