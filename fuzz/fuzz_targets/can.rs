// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The can device through its queue handler, on the in-process virtual
//! bus. Input: see `vhost_device_common::mock::program`; queue 0 is tx, 1
//! rx (held until a frame arrives), 2 control (answered at once).

#![no_main]

use std::sync::LazyLock;

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use vhost_device_can::args::Args;
use vhost_device_can::CanConfig;
use vhost_device_common::mock::program::{fuzz, Rules};

/// The command line, parsed once: clap costs more than a short input.
static ARGS: LazyLock<Args> = LazyLock::new(|| {
    Args::parse_from([
        "can",
        "--socket-path",
        "/nonexistent",
        "--device-list",
        "bus",
    ])
});

fuzz_target!(|data: &[u8]| {
    let args = &*ARGS;
    let device = CanConfig::from_args(args)
        .ok()
        .and_then(|config| config.build_device(0).ok())
        .expect("virtual bus");
    fuzz(
        device,
        data,
        &Rules {
            answer_at_once: &[2],
        },
    );
});
