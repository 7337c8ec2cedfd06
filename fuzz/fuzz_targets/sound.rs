// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The sound device through its queue handler, with the null backend, one
//! output and one input stream and the control elements (F_CTLS). Input:
//! see `vhost_device_common::mock::program`; queue 0 is the control queue
//! (answered at once), 1 events, 2 tx and 3 rx (held for a period).

#![no_main]

use std::sync::LazyLock;

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use vhost_device_common::mock::program::{fuzz, Rules};
use vhost_device_sound::args::SoundArgs;
use vhost_device_sound::SoundDevice;

/// The command line, parsed once: clap costs more than a short input.
static ARGS: LazyLock<SoundArgs> = LazyLock::new(|| {
    SoundArgs::parse_from([
        "sound",
        "--socket-path",
        "/nonexistent",
        "--backend",
        "null",
        "--controls",
    ])
});

fuzz_target!(|data: &[u8]| {
    let args = &*ARGS;
    let config = args.sound_config().expect("sound config");
    let backend = args
        .backend_spec()
        .ok()
        .and_then(|spec| spec.build(None).ok())
        .expect("null backend");
    fuzz(
        SoundDevice::new(config, backend),
        data,
        &Rules {
            answer_at_once: &[0],
        },
    );
});
