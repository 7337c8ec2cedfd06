// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The gpio device through its queue handler, with an 8-line simulated
//! chip. Input: see `vhost_device_common::mock::program`; queue 0 is the
//! request queue (answered at once), 1 the interrupt queue (held until an
//! edge).

#![no_main]

use std::sync::LazyLock;

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use vhost_device_common::mock::program::{fuzz, Rules};
use vhost_device_gpio::args::Args;
use vhost_device_gpio::GpioConfig;

/// The command line, parsed once: clap costs more than a short input.
static ARGS: LazyLock<Args> = LazyLock::new(|| {
    Args::parse_from([
        "gpio",
        "--socket-path",
        "/nonexistent",
        "--device-list",
        "s8",
    ])
});

fuzz_target!(|data: &[u8]| {
    let args = &*ARGS;
    let device = GpioConfig::from_args(args)
        .and_then(|config| config.build_device(0))
        .expect("simulated chip");
    fuzz(
        device,
        data,
        &Rules {
            answer_at_once: &[0],
        },
    );
});
