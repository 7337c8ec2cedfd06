// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `cargo xtask demo`: one guest (the rig's provisioned QEMU and kernel)
//! with all seven devices on host-free backends. The guest checks that each
//! driver bound and does one thing with it, prints a row per device on its
//! console (so the gpu's screendump shows the table), and the demo prints
//! the same table.

use std::path::PathBuf;
use std::time::Duration;

use vhost_device_rig::{Backend, Scenario, ScenarioResult};

use crate::built_binary;

/// The guest's side: one `DEMO|device|what|PASS or FAIL` row per device.
const SCRIPT: &str = r#"
row() { printf 'DEMO|%s|%s|%s\n' "$1" "$2" "$3" | tee /dev/tty1; }
bound() {
    for d in /sys/bus/virtio/devices/*; do
        [ "$(cat "$d/device")" = "$1" ] && [ -e "$d/driver" ] && { basename "$(readlink "$d/driver")"; return 0; }
    done
    return 1
}
check() {
    name=$1; id=$2; what=$3; shift 3
    drv=$(bound "$id") || { row "$name" "no driver bound to virtio id $id" FAIL; return; }
    if out=$(sh -c "$*" 2>&1); then row "$name" "$drv: $what ($out)" PASS
    else row "$name" "$drv: $what failed: $out" FAIL; fi
}
sleep 2
BUS=$(for d in /sys/bus/i2c/devices/i2c-*; do case "$(cat "$d/name")" in i2c_virtio*) echo "${d##*/i2c-}";; esac; done)
check i2c 0x0022 "EEPROM write 0x5a then read" "/usr/sbin/i2cset -y $BUS 0x50 0x10 0x5a && /usr/sbin/i2cget -y $BUS 0x50 0x10"
check gpio 0x0029 "gpiochip registered" "ls /sys/bus/gpio/devices | tr '\n' ' '"
check sound 0x0019 "ALSA card" "cat /proc/asound/cards | head -1"
check gpu 0x0010 "framebuffer console" "cat /sys/class/graphics/fb0/name"
check can 0x0024 "CAN netdev" "ls /sys/class/net | grep can"
check rpmsg 0x0007 "rpmsg bus" "ls /sys/bus/rpmsg/devices | tr '\n' ' '"
check bluetooth 0x0028 "HCI controller" "ls /sys/class/bluetooth | tr '\n' ' '"
sleep 1
rig-screendump demo
"#;

/// Each device: QEMU chardev id, QEMU device, daemon binary and flags.
const PARTS: &[(&str, &str, &str, &[&str])] = &[
    (
        "i2c",
        "vhost-user-i2c-pci",
        "vhost-device-i2c",
        &["--device-list", "sim:0x50=eeprom:256,sim:0x48=lm75"],
    ),
    (
        "gpio",
        "vhost-user-gpio-pci",
        "vhost-device-gpio",
        &["--device-list", "s8"],
    ),
    (
        "snd",
        "vhost-user-snd-pci",
        "vhost-device-sound",
        &["--backend", "null"],
    ),
    ("gpu", "vhost-user-gpu-pci", "vhost-device-gpu", &[]),
    (
        "can",
        "vhost-user-test-device-pci,virtio-id=36,num_vqs=3,config_size=2",
        "vhost-device-can",
        &[],
    ),
    (
        "rpmsg",
        "vhost-user-test-device-pci,virtio-id=7,num_vqs=2",
        "vhost-device-rpmsg",
        &[],
    ),
    (
        "bt",
        "vhost-user-test-device-pci,virtio-id=40,num_vqs=2,config_size=6",
        "vhost-device-bluetooth",
        &[],
    ),
];

/// Boots the guest and runs the script; `Err` when it could not start.
pub fn run_scenario(name: &str) -> Result<ScenarioResult, String> {
    let mut scenario = Scenario::new(name);
    let mut qemu: Vec<String> = Vec::new();
    for (i, (id, device, bin, flags)) in PARTS.iter().enumerate() {
        eprintln!("demo: [{}/{}] {bin}", i + 1, PARTS.len());
        let mut args = vec!["--socket-path", "{sock}"];
        args.extend_from_slice(flags);
        scenario = scenario.backend_with(Backend::new(built_binary(bin)?).args(&args));
        qemu.extend([
            "-chardev".to_owned(),
            format!("socket,id={id},path={{sock{i}}}"),
            "-device".to_owned(),
            format!("{device},chardev={id}"),
        ]);
    }
    eprintln!("demo: booting the guest (TCG) with {} devices", PARTS.len());
    scenario
        .qemu_args(&qemu)
        .modules(&["i2c-dev", "can-raw", "rpmsg_char", "rpmsg_ctrl"])
        .memory_mb(768)
        .guest_script(SCRIPT)
        .timeout(Duration::from_secs(240))
        .run()
        .map_err(|e| e.to_string())
}

/// The guest's rows: (device, what the guest did, PASS or FAIL).
pub fn rows(result: &ScenarioResult) -> Vec<(String, String, String)> {
    result
        .guest_output
        .lines()
        .filter_map(|l| l.strip_prefix("DEMO|"))
        .filter_map(|l| {
            let mut f = l.splitn(3, '|');
            let device = f.next()?;
            let rest = f.next()?;
            let verdict = f.next()?;
            Some((device.to_owned(), rest.to_owned(), verdict.to_owned()))
        })
        .collect()
}

/// The summary table, in Markdown.
pub fn table(rows: &[(String, String, String)]) -> String {
    let mut out = String::from("| device | what the guest did | result |\n| --- | --- | --- |\n");
    for (device, what, verdict) in rows {
        out.push_str(&format!("| {device} | {what} | {verdict} |\n"));
    }
    out
}

/// `cargo xtask demo`: runs it, prints the table, keeps the screendump
/// and logs in `target/guest-rig/demo/`.
pub fn run() -> Result<(), String> {
    let result = run_scenario("demo")?;
    let rows = rows(&result);
    println!("{}", table(&rows));
    let png: Option<PathBuf> = result.screendump("demo").map(PathBuf::from);
    println!(
        "screendump: {}\nlogs: {}\ntime: {:.1} s",
        png.map_or_else(|| "none".to_owned(), |p| p.display().to_string()),
        result.dir.display(),
        result.duration.as_secs_f64()
    );
    if result.passed() && rows.len() == PARTS.len() && rows.iter().all(|r| r.2 == "PASS") {
        Ok(())
    } else {
        Err(result.report())
    }
}
