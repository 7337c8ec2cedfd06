// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The command lines in the READMEs (and in the man pages' examples) are
//! the ones the tests run, so they cannot drift:
//!
//! - every `-device` of every QEMU line is one a guest scenario uses, with
//!   the same properties (`chardev=` and `id=` are only names and are not
//!   compared), its `chardev=` is declared on the same line, and guest
//!   memory is shared as vhost-user needs it, set up the way the rig does
//!   (`-machine q35,memory-backend=mem -object memory-backend-memfd,...,share=on`);
//! - every `vhost-device-*` line (and `cargo run -p vhost-device-* --`)
//!   parses with that binary's own clap definition.
//!
//! Usage synopses (`--socket-path PATH`, `LINE ...`) are not commands and
//! are skipped. It prints which scenario source each QEMU device line
//! matched.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use xtask::{workspace_root, DEVICES};

/// A command found in a document: where, and its words.
#[derive(Debug)]
struct Cmd {
    at: String,
    words: Vec<String>,
}

/// Every README.md of the tree (not under target/ or .git/).
fn readmes(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if p.is_dir() {
            if !matches!(name.as_str(), "target" | ".git" | "node_modules") {
                readmes(&p, out);
            }
        } else if name == "README.md" {
            out.push(p);
        }
    }
}

/// Shell words, with single and double quotes.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The commands of the fenced code blocks of `text`: continuation lines
/// joined, comments dropped.
fn commands(name: &str, text: &str) -> Vec<Cmd> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut pending: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            pending = None;
            continue;
        }
        if !in_block {
            // Prose names QEMU options too: `-device vhost-user-vga,chardev=vgpu`.
            for (k, span) in line.split('`').enumerate() {
                if k % 2 == 1 && span.trim_start().starts_with("-device ") {
                    let mut words = vec!["qemu-system-(fragment)".to_owned()];
                    words.extend(self::words(span));
                    out.push(Cmd {
                        at: format!("{name}:{}", i + 1),
                        words,
                    });
                }
            }
            continue;
        }
        let line = line.split(" # ").next().unwrap_or("");
        let (start, mut joined) = pending.take().unwrap_or((i + 1, String::new()));
        let (body, more) = match line.trim_end().strip_suffix('\\') {
            Some(b) => (b, true),
            None => (line, false),
        };
        joined.push_str(body);
        joined.push(' ');
        if more {
            pending = Some((start, joined));
        } else {
            out.push(Cmd {
                at: format!("{name}:{start}"),
                words: words(&joined),
            });
        }
    }
    out
}

/// `driver` and its properties other than `chardev` and `id`.
fn device_key(value: &str) -> (String, BTreeSet<String>) {
    let mut parts = value.split(',');
    let driver = parts.next().unwrap_or("").to_owned();
    let props = parts
        .filter(|p| !p.starts_with("chardev=") && !p.starts_with("id="))
        .map(str::to_owned)
        .collect();
    (driver, props)
}

/// The `-device` values the guest scenarios use: string literals naming a
/// `vhost-user-` device in test sources that build a `Scenario`.
fn scenario_devices(root: &Path) -> Vec<((String, BTreeSet<String>), String)> {
    fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                rs_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    for group in ["crates", "staging"] {
        for krate in std::fs::read_dir(root.join(group)).unwrap() {
            let krate = krate.unwrap().path();
            rs_files(&krate.join("tests"), &mut files);
        }
    }
    rs_files(&root.join("crates/xtask/src/demo"), &mut files);
    files.push(root.join("crates/xtask/src/demo.rs"));
    let mut out = Vec::new();
    for f in files {
        // This file names devices in its own examples.
        if f.ends_with("readme_lines.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        if !text.contains("Scenario::new") && !text.contains("Scenario::host_test") {
            continue;
        }
        let rel = f.strip_prefix(root).unwrap().display().to_string();
        for (i, _) in text.match_indices("\"vhost-user-") {
            let lit = &text[i + 1..];
            let lit = &lit[..lit.find('"').unwrap()];
            out.push((device_key(lit), rel.clone()));
        }
    }
    out
}

/// The QEMU lines' problems; prints each `-device` and its scenario.
fn check_qemu(cmd: &Cmd, scenarios: &[((String, BTreeSet<String>), String)]) -> Vec<String> {
    let mut problems = Vec::new();
    let opt = |name: &str| -> Vec<&str> {
        cmd.words
            .windows(2)
            .filter(|w| w[0] == name)
            .map(|w| w[1].as_str())
            .collect()
    };
    let chardevs: Vec<&str> = opt("-chardev")
        .into_iter()
        .filter_map(|c| {
            let mut p = c.split(',');
            (p.next() == Some("socket") && c.contains(",path="))
                .then(|| p.find_map(|kv| kv.strip_prefix("id=")))
                .flatten()
        })
        .collect();
    for dev in opt("-device") {
        let key = device_key(dev);
        if !key.0.starts_with("vhost-user-") {
            continue;
        }
        let mut files: Vec<&str> = scenarios
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, f)| f.as_str())
            .collect();
        files.dedup();
        match files.as_slice() {
            [_, ..] => println!("{}: -device {dev}  <-  {}", cmd.at, files.join(", ")),
            [] => problems.push(format!(
                "{}: -device {dev}: no guest scenario uses {} with {:?}",
                cmd.at, key.0, key.1
            )),
        }
        let chardev = dev.split(',').find_map(|kv| kv.strip_prefix("chardev="));
        match chardev {
            None => problems.push(format!("{}: -device {dev} has no chardev=", cmd.at)),
            Some(c) if !chardevs.is_empty() && !chardevs.contains(&c) => problems.push(format!(
                "{}: chardev={c} is not a -chardev socket,id={c},path=... of the line",
                cmd.at
            )),
            Some(_) => {}
        }
    }
    for obj in opt("-object") {
        if obj.starts_with("memory-backend-") {
            let id = obj.split(',').find_map(|kv| kv.strip_prefix("id="));
            // The rig's way (`-machine ...,memory-backend=ID`), not `-numa`.
            let used = id.is_some_and(|id| {
                let machine = format!("memory-backend={id}");
                opt("-machine")
                    .iter()
                    .any(|m| m.split(',').any(|kv| kv == machine))
            });
            if !obj.split(',').any(|kv| kv == "share=on") || !used {
                problems.push(format!(
                    "{}: {obj}: vhost-user needs it shared (share=on) and used as guest RAM",
                    cmd.at
                ));
            }
        }
    }
    problems
}

/// A usage synopsis rather than a command: placeholders in capitals
/// (`PATH`, `LINE`), alternatives (`|`) or repetition (`...`).
fn is_synopsis(cmd: &Cmd) -> bool {
    cmd.words.iter().any(|w| {
        w == "|"
            || w == "..."
            || (!w.is_empty() && w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
    })
}

/// A daemon line's problem, if its binary's clap rejects it.
fn check_daemon(cmd: &Cmd) -> Option<String> {
    if is_synopsis(cmd) {
        println!(
            "{}: a synopsis, not a command: {}",
            cmd.at,
            cmd.words.join(" ")
        );
        return None;
    }
    // `cargo run [--release] -p NAME -- ARGS` runs NAME with ARGS.
    let mut words: Vec<String> = if cmd.words.first().map(String::as_str) == Some("cargo") {
        let p = cmd
            .words
            .iter()
            .position(|w| w == "-p" || w == "--package")?;
        let dashes = cmd.words.iter().position(|w| w == "--")?;
        let mut v = vec![cmd.words.get(p + 1)?.clone()];
        v.extend(cmd.words[dashes + 1..].iter().cloned());
        v
    } else {
        cmd.words.clone()
    };
    let device = DEVICES
        .iter()
        .find(|d| words.first() == Some(&d.binary.to_owned()))?;
    // A trailing `&`; `[--flag value]` is an optional part, checked too.
    words.retain(|w| w != "&");
    let words: Vec<String> = words
        .into_iter()
        .map(|w| w.trim_matches(|c| c == '[' || c == ']').to_owned())
        .collect();
    match (device.command)().try_get_matches_from(&words) {
        Ok(_) => {
            println!("{}: {} parses", cmd.at, words.join(" "));
            None
        }
        Err(e) => Some(format!(
            "{}: `{}` is rejected by {}: {}",
            cmd.at,
            words.join(" "),
            device.binary,
            e.to_string().lines().next().unwrap_or("")
        )),
    }
}

fn all_commands(root: &Path) -> Vec<Cmd> {
    let mut files = Vec::new();
    readmes(root, &mut files);
    let mut cmds = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(root).unwrap().display().to_string();
        cmds.extend(commands(&rel, &std::fs::read_to_string(f).unwrap()));
    }
    for d in DEVICES {
        for (what, text) in [("daemon", d.daemon_example), ("qemu", d.qemu_example)] {
            let block = format!("```\n{text}\n```\n");
            cmds.extend(commands(
                &format!("man page of {} ({what})", d.binary),
                &block,
            ));
        }
    }
    cmds
}

#[test]
fn readme_command_lines_are_the_ones_the_tests_run() {
    let root = workspace_root();
    let scenarios = scenario_devices(&root);
    assert!(
        scenarios.len() >= 10,
        "found the scenarios' devices: {scenarios:?}"
    );
    let cmds = all_commands(&root);
    let mut problems = Vec::new();
    let (mut qemu, mut daemons) = (0, 0);
    for cmd in &cmds {
        let first = cmd.words.first().map_or("", String::as_str);
        if first.starts_with("qemu-system-") {
            qemu += 1;
            problems.extend(check_qemu(cmd, &scenarios));
        } else if first.starts_with("vhost-device-") || first == "cargo" {
            daemons += usize::from(first != "cargo");
            problems.extend(check_daemon(cmd));
        }
    }
    println!("{qemu} QEMU lines, {daemons} daemon lines");
    // Every device's README has its QEMU line, and each README of a device
    // crate is read.
    assert!(qemu >= 10, "only {qemu} QEMU lines found");
    assert!(daemons >= 15, "only {daemons} daemon lines found");
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

#[test]
fn the_checks_catch_drift() {
    let scenarios = vec![(
        device_key("vhost-user-test-device-pci,chardev=x,virtio-id=7,num_vqs=2"),
        "t.rs".to_owned(),
    )];
    let cmd = |line: &str| commands("t", &format!("```sh\n{line}\n```\n")).remove(0);
    let good = cmd("qemu-system-x86_64 -machine q35,memory-backend=mem \\\n  -object memory-backend-memfd,id=mem,size=1G,share=on \\\n  -chardev socket,id=r,path=/tmp/r.sock \\\n  -device vhost-user-test-device-pci,chardev=r,virtio-id=7,num_vqs=2,id=dev ...");
    assert!(check_qemu(&good, &scenarios).is_empty());
    // A property the scenarios do not use, a chardev not declared,
    // memory that is not shared (nor attached the rig's way).
    let drifted = cmd("qemu-system-x86_64 -object memory-backend-memfd,id=mem,size=1G -numa node,memdev=mem -chardev socket,id=r,path=/r -device vhost-user-test-device-pci,chardev=q,virtio-id=7,num_vqs=3");
    let p = check_qemu(&drifted, &scenarios);
    assert_eq!(p.len(), 3, "{p:?}");
    let numa = cmd("qemu-system-x86_64 -object memory-backend-memfd,id=mem,size=1G,share=on -numa node,memdev=mem -chardev socket,id=r,path=/r -device vhost-user-test-device-pci,chardev=r,virtio-id=7,num_vqs=2");
    assert_eq!(check_qemu(&numa, &scenarios).len(), 1);
    // A flag the daemon does not have.
    let bad =
        cmd("vhost-device-i2c --socket-path /tmp/i2c.sock --device-lst sim:0x50=eeprom:256 &");
    assert!(check_daemon(&bad).is_some());
    let synopsis = cmd("vhost-device-gpio sim-get --control PATH LINE ...");
    assert!(is_synopsis(&synopsis) && check_daemon(&synopsis).is_none());
    let ok = cmd("cargo run --release -p vhost-device-i2c -- --socket-path /tmp/i2c.sock --device-list sim:0x50=eeprom:256");
    assert!(check_daemon(&ok).is_none());
    assert_eq!(words("a 'b c' \"d\" ''"), ["a", "b c", "d", ""]);
    let prose = commands(
        "t",
        "the same with `-device vhost-user-test-device-pci,chardev=v,virtio-id=7,num_vqs=3`.\n",
    );
    assert_eq!(
        check_qemu(&prose[0], &scenarios).len(),
        1,
        "a fragment in prose is checked"
    );
}
