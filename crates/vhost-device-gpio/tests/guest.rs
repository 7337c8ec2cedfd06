// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The simulated chip behind QEMU's vhost-user-gpio-pci, used by the real
//! Linux gpio-virtio driver and the gpiod tools, while this test drives and
//! watches the lines through the control socket.
//!
//! The host side plays its part from a thread that reacts to what the guest
//! does (a line becoming an output, an interrupt armed, fired and re-armed)
//! rather than sleeping, and signals the guest back through input lines the
//! guest polls with gpioget:
//!
//! | line | role |
//! | --- | --- |
//! | 0 | guest `gpioset`, checked on the host |
//! | 1 | driven high by the host, read with `gpioget` |
//! | 2, 3, 4 | `gpiomon` rising, falling, both |
//! | 5 | level-high interrupt of a tiny kernel module (gpiomon cannot ask for levels) |
//! | 6 | host → guest: "saw your output" |
//! | 7 | host → guest: "edges done" |
//! | 8 | host → guest: "level done" |
//! | 9 | guest → host: "monitors ready" (`gpioset`) |

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use vhost_device_gpio::control::ControlClient;
use vhost_device_rig::{GuestImage, Scenario};

const LINES: u16 = 10;
/// The drive sequence on each edge line: two rising and two falling edges,
/// with repeats in between that change nothing.
const SEQUENCE: [bool; 8] = [true, true, false, false, true, true, false, false];

/// The guest script: `set -e`, every wait bounded.
const SCRIPT: &str = r#"set -e
wait_high() { # line, what
    n=0
    until gpioget -c "$CHIP" "$1" | grep -q '=active'; do
        n=$((n + 1)); [ $n -lt 600 ] || { echo "timed out waiting for $2"; exit 1; }
        sleep 0.1
    done
}
gpiodetect
CHIP=$(gpiodetect | sed -n 's/^\(gpiochip[0-9]*\) \[virtio[0-9]*\] (10 lines)$/\1/p' | head -n1)
LABEL=$(gpiodetect | sed -n 's/^gpiochip[0-9]* \[\(virtio[0-9]*\)\] (10 lines)$/\1/p' | head -n1)
[ -n "$CHIP" ] || { echo "no virtio gpiochip with 10 lines"; exit 1; }
gpioinfo -c "$CHIP"
for i in 0 1 2 3 4 5 6 7 8 9; do gpioinfo -c "$CHIP" | grep -q "\"sim-line-$i\"" ; done
echo "NAMES OK"

# A value the host drives, read by gpioget.
echo "GET1 $(gpioget -c "$CHIP" --numeric 1)"

# An output the host must see; it says so on line 6.
gpioset -c "$CHIP" 0=1 &
SETPID=$!
wait_high 6 "the host to see gpioset"
kill $SETPID; wait $SETPID || true
echo "SET0 SEEN"

# Edges the host drives.
gpiomon -c "$CHIP" -e rising -F 'MON %o %E' 2 &
M1=$!
gpiomon -c "$CHIP" -e falling -F 'MON %o %E' 3 &
M2=$!
gpiomon -c "$CHIP" -e both -F 'MON %o %E' 4 &
M3=$!
# Tell the host once all three are requested. The kernel turns a line's
# edge flags on just after requesting its interrupt, and drops an edge that
# comes in between, so give the requests a moment to finish as well.
n=0
until [ "$(gpioinfo -c "$CHIP" 2 3 4 | grep -c gpiomon)" -eq 3 ]; do
    n=$((n + 1)); [ $n -lt 300 ] || { echo "gpiomon did not start"; exit 1; }
    sleep 0.1
done
sleep 0.5
gpioset -c "$CHIP" 9=1 &
S9=$!
wait_high 7 "the host to finish the edges"
kill $S9; wait $S9 || true
# Nothing changes from here on: no further events may come.
sleep 1
grep -E 'virtio[0-9]+ +[0-9]' /proc/interrupts || true
kill $M1 $M2 $M3
wait $M1 $M2 $M3 || true
echo "MON DONE"

# A level-high interrupt, held by the host until it has seen re-fires.
insmod /rig/gpio_level_probe.ko chip="$LABEL" line=5
wait_high 8 "the host to finish the level"
C1=$(cat /sys/module/gpio_level_probe/parameters/count)
sleep 1
C2=$(cat /sys/module/gpio_level_probe/parameters/count)
echo "LEVEL COUNT $C1 $C2"
echo "IRQS $(grep gpio-level-probe /proc/interrupts)"
rmmod gpio_level_probe
echo "GUEST DONE"
"#;

/// Waits for `cond` on the control socket, up to `limit`.
fn wait_for(
    ctl: &mut ControlClient,
    what: &str,
    limit: Duration,
    mut cond: impl FnMut(&mut ControlClient) -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    while !cond(ctl) {
        if Instant::now() > deadline {
            return Err(format!("timed out waiting for {what}"));
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn field(ctl: &mut ControlClient, line: u16, key: &str) -> String {
    let info = ctl.info(line).unwrap_or_default();
    info.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or("")
        .to_owned()
}

fn fired(ctl: &mut ControlClient, line: u16) -> u32 {
    field(ctl, line, "fired").parse().unwrap_or(0)
}

/// The host's half of the scenario; returns what it observed.
/// The control socket appears once the rig starts the daemon, which may be
/// after a long wait for another guest to finish (the rig runs one at a
/// time): the wait ends when the scenario does.
fn host_side(path: &Path, scenario_over: &AtomicBool) -> Result<Vec<String>, String> {
    let mut log = Vec::new();
    while !path.exists() {
        if scenario_over.load(Ordering::SeqCst) {
            return Err("no control socket".into());
        }
        thread::sleep(Duration::from_millis(20));
    }
    let mut ctl = ControlClient::connect(path).map_err(|e| e.to_string())?;
    let e = |e: vhost_device_gpio::Error| e.to_string();
    ctl.set(1, true).map_err(e)?;

    let boot = Duration::from_secs(120);
    wait_for(&mut ctl, "gpioset on line 0", boot, |c| {
        field(c, 0, "direction") == "out" && c.get(0).unwrap_or(false)
    })?;
    log.push("saw gpioset 0=1".to_owned());
    ctl.set(6, true).map_err(e)?;

    let step = Duration::from_secs(20);
    wait_for(&mut ctl, "the guest's monitors (line 9)", boot, |c| {
        field(c, 9, "direction") == "out" && c.get(9).unwrap_or(false)
    })?;
    for (line, edges) in [(2u16, "rising"), (3, "falling"), (4, "both")] {
        wait_for(&mut ctl, &format!("gpiomon on line {line}"), step, |c| {
            field(c, line, "edges") == edges && field(c, line, "armed") == "1"
        })?;
        let mut level = false;
        for &to in &SEQUENCE {
            let before = fired(&mut ctl, line);
            ctl.set(line, to).map_err(e)?;
            let fires = match edges {
                "rising" => !level && to,
                "falling" => level && !to,
                _ => level != to,
            };
            if fires {
                // Delivered, and re-armed by the guest once it handled it.
                wait_for(&mut ctl, &format!("line {line} {level}->{to}"), step, |c| {
                    fired(c, line) == before + 1 && field(c, line, "armed") == "1"
                })?;
            } else {
                thread::sleep(Duration::from_millis(300));
                let now = fired(&mut ctl, line);
                if now != before {
                    return Err(format!("line {line} {level}->{to}: spurious interrupt"));
                }
            }
            level = to;
        }
        log.push(format!(
            "line {line}: {edges} fired {}",
            fired(&mut ctl, line)
        ));
    }
    ctl.set(7, true).map_err(e)?;

    // Level high on line 5: raise it once the module has armed it, see it
    // fire again and again while held, then drop it and see it stop.
    wait_for(&mut ctl, "the level interrupt armed", step, |c| {
        field(c, 5, "edges") == "both" && field(c, 5, "armed") == "1"
    })?;
    if fired(&mut ctl, 5) != 0 {
        return Err("level fired while low".into());
    }
    ctl.set(5, true).map_err(e)?;
    wait_for(&mut ctl, "the level to re-fire while held", step, |c| {
        fired(c, 5) >= 5
    })?;
    ctl.set(5, false).map_err(e)?;
    wait_for(
        &mut ctl,
        "the level interrupt re-armed while low",
        step,
        |c| field(c, 5, "armed") == "1",
    )?;
    let stopped = fired(&mut ctl, 5);
    thread::sleep(Duration::from_secs(1));
    let later = fired(&mut ctl, 5);
    if later != stopped {
        return Err(format!("level kept firing while low: {stopped} -> {later}"));
    }
    log.push(format!(
        "line 5: level high fired {stopped} times while held, then stopped"
    ));
    ctl.set(8, true).map_err(e)?;
    Ok(log)
}

/// Builds the level-interrupt consumer module against the guest kernel's
/// headers, inside the provisioned root (which has its compiler).
fn build_level_probe(out: &Path) -> PathBuf {
    let image = GuestImage::locate().expect("guest rig not provisioned");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/guest");
    let built = image
        .build_modules(&src, out)
        .expect("building gpio_level_probe.ko");
    built
        .into_iter()
        .find(|p| p.ends_with("gpio_level_probe.ko"))
        .expect("gpio_level_probe.ko was not built")
}

fn count(output: &str, needle: &str) -> usize {
    output.lines().filter(|l| l.trim_end() == needle).count()
}

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn guest_gpio_sim_through_qemu() {
    let tmp = tempfile::Builder::new().prefix("vdgpio").tempdir().unwrap();
    let ko = build_level_probe(tmp.path());
    let ctl = tmp.path().join("ctl");
    let lines = format!("s{LINES}");
    let ctl_arg = ctl.to_str().unwrap().to_owned();

    let (tx, rx) = mpsc::channel();
    let host_ctl = ctl.clone();
    let over = Arc::new(AtomicBool::new(false));
    let host_over = over.clone();
    let host = thread::spawn(move || {
        let result = host_side(&host_ctl, &host_over);
        let _ = tx.send(());
        result
    });
    let result = Scenario::new("guest_gpio_sim_through_qemu")
        .backend(
            env!("CARGO_BIN_EXE_vhost-device-gpio"),
            &[
                "--socket-path",
                "{sock}",
                "--device-list",
                &lines,
                "--sim-control",
                &ctl_arg,
            ],
        )
        .qemu_args(&[
            "-chardev",
            "socket,id=gpio0,path={sock}",
            "-device",
            "vhost-user-gpio-pci,chardev=gpio0,id=gpio",
        ])
        .guest_file(&ko, "/rig/gpio_level_probe.ko")
        .guest_script(SCRIPT)
        .timeout(Duration::from_secs(240))
        .run()
        .expect("scenario could not start");
    over.store(true, Ordering::SeqCst);
    // The host side ends on its own (its waits are bounded).
    let _ = rx.recv_timeout(Duration::from_secs(5));
    let observed = host.join().unwrap();
    let out = &result.guest_output;
    assert!(
        observed.is_ok(),
        "host side: {:?}\n{}",
        observed,
        result.report()
    );
    result.assert_success();
    eprintln!("host side: {:#?}", observed.unwrap());

    assert!(out.contains("NAMES OK"), "{out}");
    assert!(
        out.contains("\"sim-line-9\""),
        "gpioinfo shows the names: {out}"
    );
    assert!(out.lines().any(|l| l.trim() == "GET1 1"), "gpioget: {out}");
    assert!(out.contains("SET0 SEEN"), "{out}");
    // Exactly the edges driven, each reported as the right kind.
    assert_eq!(count(out, "MON 2 rising"), 2, "{out}");
    assert_eq!(count(out, "MON 3 falling"), 2, "{out}");
    assert_eq!(count(out, "MON 4 rising"), 2, "{out}");
    assert_eq!(count(out, "MON 4 falling"), 2, "{out}");
    let events = out
        .lines()
        .filter(|l| l.starts_with("MON ") && !l.starts_with("MON DONE"))
        .count();
    assert_eq!(events, 8, "no spurious edges: {out}");
    // The module's handler ran repeatedly while the level was held, and not
    // at all once it was low.
    let level = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("LEVEL COUNT "))
        .unwrap_or_else(|| panic!("no level count: {out}"));
    let counts: Vec<u32> = level
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(counts[0] >= 5, "level re-fired only {} times", counts[0]);
    assert_eq!(counts[0], counts[1], "level fired while low");
    // The kernel's own count for that interrupt, on the virtio-gpio chip.
    let irqs = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("IRQS "))
        .unwrap_or_else(|| panic!("no /proc/interrupts line: {out}"));
    let fields: Vec<&str> = irqs.split_whitespace().collect();
    assert!(fields.contains(&"gpio-level-probe"), "{irqs}");
    assert!(fields.iter().any(|f| f.starts_with("virtio")), "{irqs}");
    assert!(fields[1].parse::<u32>().unwrap() >= counts[0], "{irqs}");
    assert!(out.contains("GUEST DONE"), "{out}");
}
