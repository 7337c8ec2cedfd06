// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The demo (`cargo xtask demo`) as a guest test: every device's driver
//! binds and does its one thing, and the gpu's console shows the table.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use xtask::demo;

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_demo_every_device() {
    let result = demo::run_scenario("guest_demo_every_device").unwrap();
    let rows = demo::rows(&result);
    println!("{}", demo::table(&rows));
    result.assert_success();
    assert_eq!(rows.len(), 7, "{}", result.report());
    assert!(rows.iter().all(|r| r.2 == "PASS"), "{}", result.report());
    let png = vhost_device_rig::screen::Image::load(result.screendump("demo").unwrap()).unwrap();
    // The console shows text: some pixels lit, most dark.
    let stats = png.stats();
    assert!(
        stats.non_black > 1000
            && stats.non_black < stats.width as usize * stats.height as usize / 2,
        "{stats:?}"
    );
}
