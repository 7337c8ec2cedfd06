// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The gpio device through its queue handler, with an 8-line simulated
//! chip. Input: see `vhost_device_common::mock::program`; queue 0 is the
//! request queue (answered at once), 1 the interrupt queue (held until an
//! edge).

#![no_main]

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use vhost_device_common::mock::program::{fuzz, Rules};
use vhost_device_gpio::args::Args;
use vhost_device_gpio::GpioConfig;

fuzz_target!(|data: &[u8]| {
    let args = Args::parse_from([
        "gpio",
        "--socket-path",
        "/nonexistent",
        "--device-list",
        "s8",
    ]);
    let device = GpioConfig::from_args(&args)
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
