// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The i2c device through its queue handler, over a simulated bus with a
//! 256-byte EEPROM at 0x50 and an LM75 at 0x48. Input: see
//! `vhost_device_common::mock::program`; the one queue holds the requests
//! of a group until its last one, so none is required to be answered at
//! once.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vhost_device_common::mock::program::{fuzz, Rules};
use vhost_device_i2c::config::{build, HostPaths};
use vhost_device_i2c::I2cDevice;

fuzz_target!(|data: &[u8]| {
    let lists = ["sim:0x50=eeprom:256,sim:0x48=lm75".to_owned()];
    let bus = build(&lists, 1, &HostPaths::default())
        .ok()
        .and_then(|buses| buses.into_iter().next())
        .expect("simulated bus");
    fuzz(I2cDevice::new(bus), data, &Rules::default());
});
