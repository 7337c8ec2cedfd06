// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

use std::process::ExitCode;
use std::time::Duration;

use vhost_device_i2c::config::{build, HostPaths};
use vhost_device_i2c::{Args, Error, I2cDevice};

fn main() -> ExitCode {
    vhost_device_common::cli::run::<Args>(|args| {
        let guests = usize::from(args.socket.socket_count);
        let paths = HostPaths {
            transfer_timeout: Duration::from_millis(args.transfer_timeout_ms),
            ..HostPaths::default()
        };
        let buses = build(&args.device_list, guests, &paths)?;
        vhost_device_common::daemon::serve("vhost-device-i2c", &args.socket, move |guest| {
            buses
                .get(guest)
                .cloned()
                .map(I2cDevice::new)
                .ok_or_else(|| Error::NoBus(guest).into())
        })?;
        Ok(())
    })
}
