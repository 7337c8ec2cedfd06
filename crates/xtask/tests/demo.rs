// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The demo (`cargo xtask demo`) as a guest test: every device used by the
//! guest with the host taking part, both sides checked, and the gpu's
//! console showing the table.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use xtask::demo;

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_demo_every_device() {
    let d = demo::run_scenario("guest_demo_every_device", None).unwrap();
    let table = demo::table(&d.rows);
    println!("{table}");
    d.result.assert_success();
    // Every device, then the virgl row, skipped: the gpu's virgl guest
    // scenario (tests/guest_virgl.rs) is run with the virgl build.
    let names: Vec<&str> = d.rows.iter().map(|r| r.device.as_str()).collect();
    assert_eq!(
        names[..],
        [&demo::DEVICES[..], &["virgl"]].concat()[..],
        "{table}"
    );
    assert!(d.rows[7].skipped, "{table}");
    for r in &d.rows[..7] {
        assert!(
            r.guest_pass,
            "guest side of {}: {table}\n{}",
            r.device,
            d.result.report()
        );
        assert!(
            r.host.ok,
            "host side of {}: {table}\n{}",
            r.device,
            d.result.report()
        );
    }
    assert!(d.passed());
    // The host's artefacts are kept beside the logs.
    for f in ["output0.wav", "capture.wav", "eeprom.bin", "demo.png"] {
        assert!(d.result.dir.join(f).is_file(), "{f} missing");
    }
}
