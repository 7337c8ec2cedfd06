// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! `cargo xtask demo`: one guest (the rig's provisioned QEMU and kernel)
//! with all seven devices on host-free backends, each used by the guest
//! with the host taking part: the guest reads what the host put in the
//! EEPROM and sees the host toggle a GPIO line, records from and plays into
//! the host's WAV files, sends a CAN frame the host's node answers, talks to
//! the host's rpmsg echo, and finds the host's Bluetooth controller (which
//! finds it back). The guest prints its rows on the gpu's console, and a
//! screendump keeps them; the host adds what it saw to each row, and a row
//! passes only when both sides did.

pub mod files;
pub mod host;
pub mod virgl;

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use vhost_device_rig::{paths::scenario_dir, Backend, Scenario, ScenarioResult};

use crate::built_binary;
use host::{Peers, Saw};
use virgl::VirglGpu;

/// The guest's side.
const SCRIPT: &str = include_str!("demo/guest.sh");

/// The devices, in the guest's order.
pub const DEVICES: [&str; 7] = ["i2c", "gpio", "sound", "gpu", "can", "rpmsg", "bluetooth"];

/// One device's daemon and how QEMU attaches it.
struct Part {
    /// QEMU chardev id.
    id: &'static str,
    /// QEMU `-device` (without `chardev=`).
    device: &'static str,
    bin: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    /// The socket QEMU connects to when the daemon serves several
    /// (`--socket-count 2`, the second for the host's node); else `{sockN}`.
    socket: Option<PathBuf>,
}

fn part(id: &'static str, device: &'static str, bin: &'static str, args: &[&str]) -> Part {
    Part {
        id,
        device,
        bin,
        args: ["--socket-path", "{sock}"]
            .iter()
            .chain(args)
            .map(|s| (*s).to_owned())
            .collect(),
        env: Vec::new(),
        socket: None,
    }
}

/// A daemon serving the guest on `BASE0` and the host's own node on `BASE1`.
fn two_seat_part(id: &'static str, device: &'static str, bin: &'static str, base: &Path) -> Part {
    let base = base.display().to_string();
    Part {
        id,
        device,
        bin,
        args: vec![
            "--socket-path".into(),
            base.clone(),
            "--socket-count".into(),
            "2".into(),
        ],
        env: Vec::new(),
        socket: Some(PathBuf::from(format!("{base}0"))),
    }
}

/// Where the host's files and sockets live during the run.
struct HostFiles {
    tmp: tempfile::TempDir,
}

impl HostFiles {
    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
}

/// The gpu: 2D, or virgl on the host's virglrenderer (with the debug log
/// that shows each SUBMIT_3D).
fn gpu_part(virgl: Option<&VirglGpu>) -> Part {
    match virgl {
        None => part("gpu", "vhost-user-gpu-pci", "vhost-device-gpu", &[]),
        Some(v) => {
            let mut p = part(
                "gpu",
                "vhost-user-gpu-pci",
                "vhost-device-gpu",
                &["--gpu-mode", "virgl"],
            );
            p.env = vec![
                ("LD_LIBRARY_PATH", v.ld_library_path.clone()),
                ("RUST_LOG", "info,vhost_device_gpu=debug".to_owned()),
            ];
            p
        }
    }
}

fn parts(h: &HostFiles, virgl: Option<&VirglGpu>) -> Vec<Part> {
    let s = |name: &str| h.path(name).display().to_string();
    let i2c = format!("sim:0x50=eeprom:256:file={},sim:0x48=lm75", s("eeprom.bin"));
    let snd_in = s("capture.wav");
    let gpio_ctl = s("gpio.ctl");
    let echo = format!("name=demo-echo,addr=0x402,socket={}", s("rpmsg-echo.sock"));
    vec![
        part(
            "i2c",
            "vhost-user-i2c-pci",
            "vhost-device-i2c",
            &["--device-list", &i2c],
        ),
        part(
            "gpio",
            "vhost-user-gpio-pci",
            "vhost-device-gpio",
            &["--device-list", "s8", "--sim-control", &gpio_ctl],
        ),
        part(
            "snd",
            "vhost-user-snd-pci",
            "vhost-device-sound",
            &[
                "--backend",
                "wav",
                "--wav-dir",
                "{dir}",
                "--wav-input",
                &snd_in,
            ],
        ),
        gpu_part(virgl),
        two_seat_part(
            "can",
            "vhost-user-test-device-pci,virtio-id=36,num_vqs=3,config_size=2",
            "vhost-device-can",
            &h.path("can.sock"),
        ),
        part(
            "rpmsg",
            "vhost-user-test-device-pci,virtio-id=7,num_vqs=2",
            "vhost-device-rpmsg",
            &["--channel", &echo],
        ),
        two_seat_part(
            "bt",
            "vhost-user-test-device-pci,virtio-id=40,num_vqs=2,config_size=6",
            "vhost-device-bluetooth",
            &h.path("bt.sock"),
        ),
    ]
}

/// One row of the summary table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub device: String,
    /// What the guest did, and whether it got what it expected.
    pub guest: String,
    pub guest_pass: bool,
    /// What the host saw.
    pub host: Saw,
    /// A step left out on purpose (virgl without `--virgl`).
    pub skipped: bool,
}

impl Row {
    /// Both sides did their part, or the step was left out on purpose.
    pub fn passed(&self) -> bool {
        self.skipped || (self.guest_pass && self.host.ok)
    }
}

/// A finished demo run.
#[derive(Debug)]
pub struct Demo {
    pub result: ScenarioResult,
    pub rows: Vec<Row>,
}

impl Demo {
    /// The guest ran to the end and every device passed on both sides
    /// (the virgl row may be skipped).
    pub fn passed(&self) -> bool {
        let names: Vec<&str> = self.rows.iter().map(|r| r.device.as_str()).collect();
        self.result.passed()
            && names.get(..DEVICES.len()) == Some(&DEVICES[..])
            && names.get(DEVICES.len()..) == Some(&["virgl"][..])
            && self.rows.iter().all(Row::passed)
    }
}

/// Prints the guest's progress from its serial log until `over`: the
/// steps its script announces and each row as it is written.
fn progress(serial: PathBuf, started: Instant, over: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut offset = 0u64;
        let mut pending = String::new();
        while !over.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(200));
            let Ok(mut f) = std::fs::File::open(&serial) else {
                continue;
            };
            let mut buf = String::new();
            if f.seek(SeekFrom::Start(offset)).is_err() || f.read_to_string(&mut buf).is_err() {
                continue;
            }
            offset += buf.len() as u64;
            pending.push_str(&buf);
            while let Some(end) = pending.find('\n') {
                let line: String = pending.drain(..=end).collect();
                let line = line.trim();
                let t = started.elapsed().as_secs_f64();
                if line.contains("@@RIG-START") {
                    eprintln!("demo: [{t:5.1} s] guest booted, its script runs");
                } else if let Some(step) = line.strip_prefix("DEMO-STEP ") {
                    eprintln!("demo: [{t:5.1} s] guest: {step} ...");
                } else if let Some(row) = line.strip_prefix("DEMO|") {
                    let mut f = row.rsplitn(2, '|');
                    let verdict = f.next().unwrap_or("");
                    let device = f.next().and_then(|r| r.split('|').next()).unwrap_or("");
                    eprintln!("demo: [{t:5.1} s] guest: {device} {verdict}");
                }
            }
        }
    })
}

/// Boots the guest with the host's peers running; `Err` when it could not
/// start. With `virgl`, the gpu runs in virgl mode and the guest draws
/// with Mesa's virgl driver too; without, that row is skipped.
pub fn run_scenario(name: &str, virgl: Option<&VirglGpu>) -> Result<Demo, String> {
    let started = Instant::now();
    let h = HostFiles {
        tmp: tempfile::Builder::new()
            .prefix("vddemo")
            .tempdir()
            .map_err(|e| e.to_string())?,
    };
    files::write_eeprom(&h.path("eeprom.bin"), 256)?;
    files::write_input_wav(&h.path("capture.wav"))?;

    let parts = parts(&h, virgl);
    let mut scenario = Scenario::new(name);
    let mut qemu: Vec<String> = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        eprintln!("demo: [{}/{}] {}", i + 1, parts.len(), p.bin);
        let program = match (p.id, virgl) {
            ("gpu", Some(v)) => v.binary.clone(),
            _ => built_binary(p.bin)?,
        };
        let mut backend = Backend::new(program).args(&p.args);
        for (k, v) in &p.env {
            backend = backend.env(k, v);
        }
        let sock = match &p.socket {
            Some(path) => {
                let path = path.display().to_string();
                backend = backend.wait_for_socket(&path);
                path
            }
            None => format!("{{sock{i}}}"),
        };
        scenario = scenario.backend_with(backend);
        qemu.extend([
            "-chardev".to_owned(),
            format!("socket,id={},path={sock}", p.id),
            "-device".to_owned(),
            format!("{},chardev={}", p.device, p.id),
        ]);
    }

    let mut peers = Peers::default();
    let path = |n: &str| h.path(n);
    let (gpio, can, rpmsg, bt) = (
        path("gpio.ctl"),
        path("can.sock1"),
        path("rpmsg-echo.sock"),
        path("bt.sock1"),
    );
    peers.spawn("gpio", move |o| host::gpio_peer(&gpio, o))?;
    peers.spawn("can", move |o| host::can_peer(&can, o))?;
    peers.spawn("rpmsg", move |o| host::rpmsg_echo_peer(&rpmsg, o))?;
    peers.spawn("bluetooth", move |o| host::bluetooth_peer(&bt, o))?;

    // The rig clears the directory when it starts; an old serial log must
    // not show as progress before that.
    let serial = scenario_dir(name).join("serial.log");
    let _ = std::fs::remove_file(&serial);
    let over = Arc::new(AtomicBool::new(false));
    let tail = progress(serial, started, over.clone());
    eprintln!(
        "demo: booting the guest (waiting for the rig's lock if another guest runs), {} devices",
        parts.len()
    );
    let mut scenario = scenario
        .qemu_args(&qemu)
        .modules(&["i2c-dev", "can-raw", "rpmsg_char", "rpmsg_ctrl"])
        .memory_mb(768)
        .guest_script(SCRIPT)
        .timeout(Duration::from_secs(240));
    if virgl.is_some() {
        // Mesa's overlay is about 200 MB unpacked.
        scenario = scenario.gl().memory_mb(1280).guest_env("DEMO_VIRGL", "1");
    }
    let result = scenario.run().map_err(|e| e.to_string());
    over.store(true, Ordering::SeqCst);
    let _ = tail.join();
    let live = peers.finish();
    let result = result?;

    // The host's inputs join its outputs in the demo's directory.
    for f in ["eeprom.bin", "capture.wav"] {
        let _ = std::fs::copy(h.path(f), result.dir.join(f));
    }
    let mut saw: Vec<(&str, Saw)> = live;
    saw.push(("i2c", files::check_eeprom(&result.dir.join("eeprom.bin"))));
    saw.push((
        "sound",
        files::check_output_wav(&result.dir.join("output0.wav")),
    ));
    saw.push(("gpu", files::check_screendump(result.screendump("demo"))));
    let gpu_log = result.dir.join("backend-3-vhost-device-gpu.log");
    saw.push(("virgl", virgl::check(&gpu_log, result.screendump("virgl"))));
    let mut rows = rows(&result.guest_output, &saw);
    if virgl.is_none() {
        rows.push(Row {
            device: "virgl".into(),
            guest: "-".into(),
            guest_pass: false,
            host: Saw::failed(virgl::SKIPPED),
            skipped: true,
        });
    }
    Ok(Demo { result, rows })
}

/// The table's rows: the guest's `DEMO|device|what|verdict` lines, each
/// joined with what the host saw of that device.
pub fn rows(guest_output: &str, saw: &[(&str, Saw)]) -> Vec<Row> {
    guest_output
        .lines()
        .filter_map(|l| l.trim().strip_prefix("DEMO|"))
        .filter_map(|l| {
            let mut f = l.splitn(3, '|');
            let device = f.next()?.to_owned();
            let guest = f.next()?.to_owned();
            let guest_pass = f.next()? == "PASS";
            let host = saw
                .iter()
                .find(|(d, _)| *d == device)
                .map_or_else(|| Saw::failed("the host has no check"), |(_, s)| s.clone());
            Some(Row {
                device,
                guest,
                guest_pass,
                host,
                skipped: false,
            })
        })
        .collect()
}

/// The summary table, in Markdown.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| device | what the guest did | what the host saw | result |\n| --- | --- | --- | --- |\n",
    );
    for r in rows {
        let verdict = match (r.guest_pass, r.host.ok) {
            _ if r.skipped => "SKIP",
            (true, true) => "PASS",
            (false, true) => "FAIL (guest)",
            (true, false) => "FAIL (host)",
            (false, false) => "FAIL (both)",
        };
        out.push_str(&format!(
            "| {} | {} | {} | {verdict} |\n",
            r.device, r.guest, r.host.text
        ));
    }
    out
}

/// `cargo xtask demo [--virgl]`: runs it, prints the table and where the
/// host's files, the screendump and the logs are (`target/guest-rig/demo/`).
pub fn run(with_virgl: bool) -> Result<(), String> {
    let started = Instant::now();
    let virgl = if with_virgl {
        Some(virgl::prepare()?)
    } else {
        None
    };
    let demo = run_scenario("demo", virgl.as_ref())?;
    let table = table(&demo.rows);
    let _ = std::fs::write(demo.result.dir.join("summary.md"), &table);
    println!("{table}");
    let dir = &demo.result.dir;
    let png = demo
        .result
        .screendump("demo")
        .map_or_else(|| "none".to_owned(), |p| p.display().to_string());
    println!(
        "screendump: {png}\n\
         host files: {d}/output0.wav (the guest's playback), {d}/capture.wav (what it recorded), \
         {d}/eeprom.bin, {d}/summary.md\n\
         logs: {d}/serial.log, qemu.log, backend-N-*.log\n\
         time: {:.1} s (guest {:.1} s)",
        started.elapsed().as_secs_f64(),
        demo.result.duration.as_secs_f64(),
        d = dir.display(),
    );
    if demo.passed() {
        Ok(())
    } else {
        Err(format!(
            "{} of {} rows passed on both sides\n{}",
            demo.rows.iter().filter(|r| r.passed()).count(),
            demo.rows.len(),
            demo.result.report()
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn rows_join_both_sides_and_need_both() {
        let out = "noise\nDEMO|i2c|read it|PASS\nDEMO|gpio|no edge|FAIL\nDEMO|can|sent|PASS\n";
        let saw = [
            ("i2c", Saw::ok("file ok")),
            ("gpio", Saw::ok("raised line 2")),
        ];
        let rows = rows(out, &saw);
        assert_eq!(rows.len(), 3);
        assert!(rows[0].passed());
        assert!(!rows[1].passed(), "the guest failed");
        assert!(!rows[2].passed(), "no host check for can");
        let t = table(&rows);
        assert!(t.contains("| i2c | read it | file ok | PASS |"), "{t}");
        assert!(
            t.contains("| gpio | no edge | raised line 2 | FAIL (guest) |"),
            "{t}"
        );
        assert!(
            t.contains("| can | sent | the host has no check | FAIL (host) |"),
            "{t}"
        );
    }

    #[test]
    fn every_device_has_a_part_and_the_guest_tries_it() {
        let h = HostFiles {
            tmp: tempfile::tempdir().unwrap(),
        };
        assert_eq!(parts(&h, None).len(), DEVICES.len());
        for d in DEVICES {
            assert!(SCRIPT.contains(&format!("try {d} ")), "{d}");
        }
    }
}
