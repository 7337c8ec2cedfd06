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

/// Every crate that can be published has what crates.io shows.
#[test]
fn publishable_crates_have_their_metadata() {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--no-deps",
            "--offline",
            "--format-version",
            "1",
        ])
        .current_dir(xtask::workspace_root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let mut published = 0;
    for p in packages {
        let name = p["name"].as_str().unwrap();
        if p["publish"] == serde_json::json!([]) {
            continue;
        }
        published += 1;
        for key in ["description", "license", "repository", "readme"] {
            assert!(
                p[key].as_str().is_some_and(|v| !v.is_empty()),
                "{name}: no {key}"
            );
        }
        for key in ["keywords", "categories"] {
            let list = p[key].as_array().unwrap();
            assert!(
                !list.is_empty() && list.len() <= 5,
                "{name}: {key} {list:?}"
            );
        }
    }
    // The shared core and the seven devices.
    assert_eq!(published, 1 + DEVICES.len());
}
