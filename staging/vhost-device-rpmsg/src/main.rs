// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! vhost-device-rpmsg: a vhost-user virtio-rpmsg backend.

use std::process::ExitCode;

use vhost_device_common::{cli, daemon};
use vhost_device_rpmsg::args::Args;
use vhost_device_rpmsg::Config;

fn main() -> ExitCode {
    cli::run::<Args>(|args| {
        let config = Config::from_args(&args)?;
        let policy = config.sandbox_policy();
        daemon::serve_with("vhost-device-rpmsg", &args.socket, &policy, move |guest| {
            Ok(config.build_device(guest)?)
        })?;
        Ok(())
    })
}
