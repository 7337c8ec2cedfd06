// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The bluetooth device through its queue handler, with the built-in
//! controller: H:4 framing on tx and the controller's command parser.
//! Input: see `vhost_device_common::mock::program`; queue 0 is tx (H:4
//! packets from the driver), 1 rx (held until the controller answers).

#![no_main]

use std::sync::LazyLock;

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use vhost_device_bluetooth::args::Args;
use vhost_device_bluetooth::BtConfig;
use vhost_device_common::mock::program::{fuzz, Rules};

/// The command line, parsed once: clap costs more than a short input.
static ARGS: LazyLock<Args> = LazyLock::new(|| {
    Args::parse_from([
        "bluetooth",
        "--socket-path",
        "/nonexistent",
        "--backend",
        "builtin",
        "--rx-backlog",
        "64",
    ])
});

fuzz_target!(|data: &[u8]| {
    let args = &*ARGS;
    let device = BtConfig::from_args(args)
        .ok()
        .and_then(|config| config.build_device(0).ok())
        .expect("built-in controller");
    fuzz(device, data, &Rules::default());
});
