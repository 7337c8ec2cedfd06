// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! Man pages and completions: generation works for every binary, every
//! flag appears, and each page has its examples and QEMU line.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use clap::Command;
use xtask::completions::{self, SHELLS};
use xtask::{man, DEVICES};

/// The long flags a user can type, of `command` alone.
fn flags(command: &Command) -> Vec<String> {
    command
        .get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect()
}

#[test]
fn man_pages_have_every_flag_examples_and_the_qemu_line() {
    for device in DEVICES {
        let pages = man::pages(device).unwrap();
        let text = |i: usize| String::from_utf8(pages[i].1.clone()).unwrap();
        let main = text(0);
        assert_eq!(pages[0].0, format!("{}.1", device.binary));
        let mut command = (device.command)();
        command.build();
        for flag in flags(&command) {
            // roff writes '-' as "\-".
            let roff = format!("\\-\\-{}", flag.replace('-', "\\-"));
            assert!(main.contains(&roff), "{}: no --{flag}", device.binary);
        }
        assert!(main.contains(".SH EXAMPLES"), "{}", device.binary);
        assert!(main.contains("qemu\\-system\\-x86_64"), "{}", device.binary);
        let qemu_device = device.qemu_example.split("-device ").nth(1).unwrap();
        let qemu_device = qemu_device.split(' ').next().unwrap().replace('-', "\\-");
        assert!(
            main.contains(&qemu_device),
            "{}: {qemu_device}",
            device.binary
        );
        let subcommands: Vec<&Command> = command
            .get_subcommands()
            .filter(|s| s.get_name() != "help")
            .collect();
        assert_eq!(pages.len(), 1 + subcommands.len(), "{}", device.binary);
        for (i, sub) in subcommands.iter().enumerate() {
            let page = text(i + 1);
            for flag in flags(sub) {
                let roff = format!("\\-\\-{}", flag.replace('-', "\\-"));
                assert!(
                    page.contains(&roff),
                    "{} {}: --{flag}",
                    device.binary,
                    sub.get_name()
                );
            }
        }
    }
}

#[test]
fn completions_have_every_flag() {
    for device in DEVICES {
        let command = (device.command)();
        for (shell, _) in SHELLS {
            let script = String::from_utf8(completions::script(device, *shell)).unwrap();
            for flag in flags(&command) {
                // fish lists long flags as `-l flag`, the others as `--flag`.
                let found =
                    script.contains(&format!("--{flag}")) || script.contains(&format!("-l {flag}"));
                assert!(found, "{} {shell}: no --{flag}", device.binary);
            }
        }
    }
}

#[test]
fn generation_writes_the_files_packagers_install() {
    let dir = tempfile::tempdir().unwrap();
    let pages = man::generate(DEVICES, &dir.path().join("man")).unwrap();
    let scripts = completions::generate(DEVICES, &dir.path().join("share")).unwrap();
    assert!(pages.len() >= DEVICES.len());
    assert_eq!(scripts.len(), DEVICES.len() * SHELLS.len());
    for file in pages.iter().chain(&scripts) {
        assert!(
            std::fs::metadata(file).unwrap().len() > 0,
            "{}",
            file.display()
        );
    }
    let gpio = dir
        .path()
        .join("share/bash-completion/completions/vhost-device-gpio");
    assert!(scripts.contains(&gpio));
}
