// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `vhost-device-bench`: measures a vhost-user backend (see `--help`).

use std::process::ExitCode;

use vhost_device_bench::{run, Args};

fn main() -> ExitCode {
    vhost_device_common::cli::run::<Args>(|args| {
        let report = run::run(&args)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report.json())?);
        } else {
            print!("{}", report.table());
        }
        Ok(())
    })
}
