// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The packaging files: every vhost-user descriptor follows QEMU's schema,
//! names a device binary of the workspace, and that binary's
//! `--print-capabilities` agrees with it.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::Command;

use xtask::descriptor::{check_capabilities, parse_descriptor};
use xtask::{devices, packaging_dir, DEVICES};

fn binary(name: &str) -> PathBuf {
    xtask::built_binary(name).unwrap()
}

fn descriptors() -> Vec<PathBuf> {
    let dir = packaging_dir().join("vhost-user");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
}

#[test]
fn every_device_has_one_descriptor() {
    let files = descriptors();
    for device in DEVICES {
        let name = format!("50-{}.json", device.binary);
        assert!(
            files
                .iter()
                .any(|f| f.file_name().unwrap() == name.as_str()),
            "no packaging/vhost-user/{name}"
        );
    }
    assert_eq!(files.len(), DEVICES.len(), "{files:?}");
}

#[test]
fn descriptors_follow_the_schema_and_their_binary_agrees() {
    for file in descriptors() {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        // vhost-user.json: a double-digit prefix orders the files.
        assert!(
            name.len() > 3 && name.as_bytes()[..2].iter().all(u8::is_ascii_digit),
            "{name}: no double-digit prefix"
        );
        let text = std::fs::read_to_string(&file).unwrap();
        let d = parse_descriptor(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let bin = Path::new(&d.binary).file_name().unwrap().to_string_lossy();
        assert!(
            devices::by_binary(&bin).is_some(),
            "{name}: {bin} is not ours"
        );
        assert_eq!(name, format!("50-{bin}.json"));

        let out = Command::new(binary(&bin))
            .arg("--print-capabilities")
            .output()
            .unwrap();
        assert!(out.status.success(), "{bin} --print-capabilities: {out:?}");
        let printed = String::from_utf8(out.stdout).unwrap();
        check_capabilities(&printed, &d.kind).unwrap_or_else(|e| panic!("{bin}: {e}"));

        // Other flags are ignored, as vhost-user.rst asks.
        let out = Command::new(binary(&bin))
            .args(["--print-capabilities", "--no-such-flag"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{bin}: {out:?}");
        assert_eq!(String::from_utf8(out.stdout).unwrap(), printed);
    }
}
