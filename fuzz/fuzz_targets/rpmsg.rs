// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The rpmsg device through its queue handler, with two echo channels.
//! Input: see `vhost_device_common::mock::program`; queue 0 is the rx
//! queue (guest buffers, held until a message), 1 tx.

#![no_main]

use std::sync::LazyLock;

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use vhost_device_common::mock::program::{fuzz, Rules};
use vhost_device_rpmsg::args::Args;
use vhost_device_rpmsg::Config;

/// The command line, parsed once: clap costs more than a short input.
static ARGS: LazyLock<Args> = LazyLock::new(|| {
    Args::parse_from([
        "rpmsg",
        "--socket-path",
        "/nonexistent",
        "--channel",
        "name=rpmsg-raw,addr=0x400,echo",
        "--channel",
        "name=rpmsg-tty,addr=0x401,echo",
        "--queue-limit",
        "64",
    ])
});

fuzz_target!(|data: &[u8]| {
    let args = &*ARGS;
    let device = Config::from_args(args)
        .ok()
        .and_then(|config| config.build_device(0).ok())
        .expect("echo channels");
    fuzz(device, data, &Rules::default());
});
