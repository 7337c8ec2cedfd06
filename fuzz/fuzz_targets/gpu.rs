// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The gpu device through its queue handler, in 2D mode with a small host
//! memory budget (16 MiB, `--max-hostmem 16`), headless so that no display socket is waited for.
//! Input: see `vhost_device_common::mock::program`; queue 0 is the control
//! queue (fenced commands may be held), 1 the cursor queue.

#![no_main]

use std::sync::LazyLock;

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use vhost_device_common::mock::program::{fuzz, Rules};
use vhost_device_gpu::{make_renderer, Args, GpuDevice};

/// The command line, parsed once: clap costs more than a short input.
static ARGS: LazyLock<Args> = LazyLock::new(|| {
    Args::parse_from([
        "gpu",
        "--socket-path",
        "/nonexistent",
        "--headless",
        "--max-hostmem",
        "16",
    ])
});

fuzz_target!(|data: &[u8]| {
    let args = &*ARGS;
    let config = args.config().expect("gpu config");
    let renderer = make_renderer(&config).expect("2D renderer");
    fuzz(GpuDevice::new(config, renderer), data, &Rules::default());
});
