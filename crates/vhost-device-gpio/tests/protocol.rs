// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The real daemon on a real socket, driven by the test frontend the way
//! QEMU drives it, with a simulated chip driven through its control socket.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use vhost_device_common::testing::{
    running_with_capabilities, threads_beyond_capabilities, DaemonProcess, FrontendOptions,
    TestFrontend, TestQueue,
};
use vhost_device_gpio::control::ControlClient;
use vhost_device_gpio::protocol::*;
use vm_memory::ByteValued;

const BIN: &str = env!("CARGO_BIN_EXE_vhost-device-gpio");
const WAIT: Duration = Duration::from_secs(5);

/// The daemon on sockets in its own temporary directory.
struct Daemon {
    // Declared first so the process is gone before its directory.
    process: DaemonProcess,
    dir: tempfile::TempDir,
}

impl Daemon {
    fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("gpio.sock");
        let ctl = dir.path().join("gpio.ctl");
        let mut command = Command::new(BIN);
        command
            .arg("--socket-path")
            .arg(&sock)
            .arg("--sim-control")
            .arg(&ctl)
            .args(extra);
        let process = DaemonProcess::spawn(command, vec![sock, ctl]).unwrap();
        Daemon { process, dir }
    }

    fn ctl(&self) -> PathBuf {
        self.dir.path().join("gpio.ctl")
    }

    fn connect(&self) -> TestFrontend {
        let opts = FrontendOptions {
            num_queues: Some(2),
            ..Default::default()
        };
        self.process.connect(0, opts).unwrap()
    }

    fn control(&self) -> ControlClient {
        ControlClient::connect(&self.ctl()).unwrap()
    }

    /// Stops the daemon and returns its exit status code.
    fn stop(self) -> Option<i32> {
        self.process.stop().unwrap().code()
    }
}

fn encode(kind: u16, gpio: u16, value: u32) -> Vec<u8> {
    VirtioGpioRequest::new(kind, gpio, value)
        .as_slice()
        .to_vec()
}

/// One request; returns the response bytes after checking the used length
/// equals what was written.
fn request(fe: &mut TestFrontend, kind: u16, gpio: u16, value: u32) -> Vec<u8> {
    let used = fe
        .queue(0)
        .unwrap()
        .request(&[&encode(kind, gpio, value)], &[2], WAIT)
        .unwrap();
    assert_eq!(used.len as usize, used.data.len());
    used.data
}

fn ok(fe: &mut TestFrontend, kind: u16, gpio: u16, value: u32) -> u8 {
    let reply = request(fe, kind, gpio, value);
    assert_eq!(reply.len(), 2, "request {kind} line {gpio}");
    assert_eq!(
        reply[0], VIRTIO_GPIO_STATUS_OK,
        "request {kind} line {gpio}"
    );
    reply[1]
}

/// Posts an event buffer for `gpio`; returns its head.
fn post(q: &mut TestQueue, gpio: u16) -> u16 {
    let head = q.add(&[&gpio.to_le_bytes()], &[1]).unwrap();
    q.kick().unwrap();
    head
}

/// Asserts that nothing comes back on the queue for a while.
fn assert_quiet(q: &mut TestQueue, what: &str) {
    std::thread::sleep(Duration::from_millis(200));
    if let Some(used) = q.try_used().unwrap() {
        panic!("{what}: unexpected completion {used:?}");
    }
}

fn wait_event(q: &mut TestQueue, head: u16, status: u8) {
    let used = q.wait_used(WAIT).unwrap();
    assert_eq!((used.head, used.len, used.data), (head, 1, vec![status]));
}

fn info_field(ctl: &mut ControlClient, line: u16, key: &str) -> String {
    let info = ctl.info(line).unwrap();
    info.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key} in '{info}'"))
        .to_owned()
}

#[test]
fn features_config_and_names() {
    let d = Daemon::start(&["--device-list", "s5"]);
    let mut fe = d.connect();
    assert_ne!(fe.device_features() & VIRTIO_GPIO_F_IRQ, 0);
    assert_ne!(fe.acked_features() & (1 << 32), 0, "VERSION_1");
    let config = fe.get_config(0, 8).unwrap();
    assert_eq!(&config[..4], &[5, 0, 0, 0]);
    let names_size = u32::from_le_bytes(config[4..8].try_into().unwrap());
    let expected = b"sim-line-0\0sim-line-1\0sim-line-2\0sim-line-3\0sim-line-4\0";
    assert_eq!(names_size as usize, expected.len());
    // Bounds-checked: a read past the end is refused, not served from
    // whatever lies beyond.
    assert!(fe.get_config(4, 8).map_or(true, |c| c.is_empty()));
    let used = fe
        .queue(0)
        .unwrap()
        .request(
            &[&encode(VIRTIO_GPIO_MSG_GET_LINE_NAMES, 0, 0)],
            &[1 + names_size],
            WAIT,
        )
        .unwrap();
    assert_eq!(used.len, 1 + names_size);
    assert_eq!(used.data[0], VIRTIO_GPIO_STATUS_OK);
    assert_eq!(&used.data[1..], expected);
    fe.disconnect().unwrap();
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn outputs_inputs_and_directions() {
    let d = Daemon::start(&["--device-list", "s4"]);
    let mut fe = d.connect();
    let mut ctl = d.control();
    // Linux's order for an output: value first, then direction.
    ok(&mut fe, VIRTIO_GPIO_MSG_SET_VALUE, 1, 1);
    assert!(!ctl.get(1).unwrap(), "not driven until it is an output");
    ok(&mut fe, VIRTIO_GPIO_MSG_SET_DIRECTION, 1, 1);
    assert_eq!(ok(&mut fe, VIRTIO_GPIO_MSG_GET_DIRECTION, 1, 0), 1);
    assert!(ctl.get(1).unwrap(), "the host sees the guest's output");
    ok(&mut fe, VIRTIO_GPIO_MSG_SET_VALUE, 1, 0);
    assert!(!ctl.get(1).unwrap());
    // Inputs the host drives, read by the guest, released or not.
    assert_eq!(ok(&mut fe, VIRTIO_GPIO_MSG_GET_VALUE, 2, 0), 0);
    ctl.set(2, true).unwrap();
    assert_eq!(ok(&mut fe, VIRTIO_GPIO_MSG_GET_VALUE, 2, 0), 1);
    ok(&mut fe, VIRTIO_GPIO_MSG_SET_DIRECTION, 2, 2);
    assert_eq!(ok(&mut fe, VIRTIO_GPIO_MSG_GET_DIRECTION, 2, 0), 2);
    assert_eq!(ok(&mut fe, VIRTIO_GPIO_MSG_GET_VALUE, 2, 0), 1);
    // The CLI subcommands do the same.
    let out = Command::new(BIN)
        .args(["sim-set", "--control"])
        .arg(d.ctl())
        .args(["2=0", "3=1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(ok(&mut fe, VIRTIO_GPIO_MSG_GET_VALUE, 2, 0), 0);
    assert_eq!(ok(&mut fe, VIRTIO_GPIO_MSG_GET_VALUE, 3, 0), 1);
    ok(&mut fe, VIRTIO_GPIO_MSG_SET_VALUE, 0, 1);
    ok(&mut fe, VIRTIO_GPIO_MSG_SET_DIRECTION, 0, 1);
    let out = Command::new(BIN)
        .args(["sim-get", "--control"])
        .arg(d.ctl())
        .args(["0", "2", "3"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "0=1\n2=0\n3=1\n");
    // Errors: out of range, bad direction, unknown type, short request.
    assert_eq!(
        request(&mut fe, VIRTIO_GPIO_MSG_GET_VALUE, 4, 0),
        vec![VIRTIO_GPIO_STATUS_ERR, 0]
    );
    assert_eq!(
        request(&mut fe, VIRTIO_GPIO_MSG_SET_DIRECTION, 0, 7),
        vec![VIRTIO_GPIO_STATUS_ERR, 0]
    );
    assert_eq!(
        request(&mut fe, 0x99, 0, 0),
        vec![VIRTIO_GPIO_STATUS_ERR, 0]
    );
    let used = fe
        .queue(0)
        .unwrap()
        .request(&[&encode(VIRTIO_GPIO_MSG_GET_VALUE, 0, 0)[..7]], &[2], WAIT)
        .unwrap();
    assert_eq!((used.len, used.data), (2, vec![VIRTIO_GPIO_STATUS_ERR, 0]));
    fe.disconnect().unwrap();
}

#[test]
fn edge_interrupts_driven_through_the_control_socket() {
    let d = Daemon::start(&["--device-list", "s8"]);
    let mut fe = d.connect();
    let mut ctl = d.control();

    // Before SET_IRQ_TYPE, a posted buffer comes straight back INVALID.
    let q = fe.queue(1).unwrap();
    let head = post(q, 2);
    wait_event(q, head, VIRTIO_GPIO_IRQ_STATUS_INVALID);

    for (line, trigger) in [
        (2u16, IrqType::EdgeRising),
        (3, IrqType::EdgeFalling),
        (4, IrqType::EdgeBoth),
    ] {
        ok(&mut fe, VIRTIO_GPIO_MSG_SET_DIRECTION, line, 2);
        ok(&mut fe, VIRTIO_GPIO_MSG_SET_IRQ_TYPE, line, trigger as u32);
        let mut level = false;
        for to in [true, true, false, false, true] {
            let q = fe.queue(1).unwrap();
            let head = post(q, line);
            let deadline = Instant::now() + WAIT;
            while info_field(&mut ctl, line, "armed") != "1" {
                assert!(Instant::now() < deadline, "buffer never held");
            }
            ctl.set(line, to).unwrap();
            let fires = match trigger {
                IrqType::EdgeRising => !level && to,
                IrqType::EdgeFalling => level && !to,
                _ => level != to,
            };
            let q = fe.queue(1).unwrap();
            if fires {
                wait_event(q, head, VIRTIO_GPIO_IRQ_STATUS_VALID);
            } else {
                assert_quiet(q, &format!("{trigger:?} {level}->{to}"));
                // Disabling returns the buffer unused; then re-enable.
                ok(&mut fe, VIRTIO_GPIO_MSG_SET_IRQ_TYPE, line, 0);
                let q = fe.queue(1).unwrap();
                wait_event(q, head, VIRTIO_GPIO_IRQ_STATUS_INVALID);
                ok(&mut fe, VIRTIO_GPIO_MSG_SET_IRQ_TYPE, line, trigger as u32);
            }
            level = to;
        }
        let q = fe.queue(1).unwrap();
        assert_quiet(q, "no spurious events");
    }

    // Latched while masked: the edge comes when the buffer does.
    ok(
        &mut fe,
        VIRTIO_GPIO_MSG_SET_IRQ_TYPE,
        5,
        IrqType::EdgeRising as u32,
    );
    ctl.set(5, true).unwrap();
    let q = fe.queue(1).unwrap();
    let head = post(q, 5);
    wait_event(q, head, VIRTIO_GPIO_IRQ_STATUS_VALID);
    assert_eq!(info_field(&mut ctl, 5, "fired"), "1");
    fe.disconnect().unwrap();
}

#[test]
fn level_interrupts_refire_while_held() {
    let d = Daemon::start(&["--device-list", "s2"]);
    let mut fe = d.connect();
    let mut ctl = d.control();
    ok(
        &mut fe,
        VIRTIO_GPIO_MSG_SET_IRQ_TYPE,
        1,
        IrqType::LevelHigh as u32,
    );
    let q = fe.queue(1).unwrap();
    let head = post(q, 1);
    assert_quiet(q, "low level");
    ctl.set(1, true).unwrap();
    wait_event(q, head, VIRTIO_GPIO_IRQ_STATUS_VALID);
    for _ in 0..5 {
        let head = post(q, 1);
        wait_event(q, head, VIRTIO_GPIO_IRQ_STATUS_VALID);
    }
    ctl.set(1, false).unwrap();
    let head = post(q, 1);
    assert_quiet(q, "level dropped");
    // A low pulse on a level-high line is not latched; a new high fires.
    ctl.set(1, true).unwrap();
    wait_event(q, head, VIRTIO_GPIO_IRQ_STATUS_VALID);
    ctl.set(1, false).unwrap();
    let head = post(q, 1);
    assert_quiet(q, "level dropped again");
    ok(&mut fe, VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 1, 0);
    let q = fe.queue(1).unwrap();
    wait_event(q, head, VIRTIO_GPIO_IRQ_STATUS_INVALID);

    // Level low on line 0, which idles low: fires as soon as it is posted.
    ok(
        &mut fe,
        VIRTIO_GPIO_MSG_SET_IRQ_TYPE,
        0,
        IrqType::LevelLow as u32,
    );
    let q = fe.queue(1).unwrap();
    let head = post(q, 0);
    wait_event(q, head, VIRTIO_GPIO_IRQ_STATUS_VALID);
    assert_eq!(info_field(&mut ctl, 0, "fired"), "1");
    fe.disconnect().unwrap();
}

#[test]
fn reconnect_starts_fresh_but_keeps_the_outside_drive() {
    let d = Daemon::start(&["--device-list", "s2"]);
    let mut fe = d.connect();
    let mut ctl = d.control();
    ok(&mut fe, VIRTIO_GPIO_MSG_SET_VALUE, 0, 1);
    ok(&mut fe, VIRTIO_GPIO_MSG_SET_DIRECTION, 0, 1);
    ctl.set(1, true).unwrap();
    fe.disconnect().unwrap();
    let mut fe = d.connect();
    assert_eq!(ok(&mut fe, VIRTIO_GPIO_MSG_GET_DIRECTION, 0, 0), 2);
    assert_eq!(ok(&mut fe, VIRTIO_GPIO_MSG_GET_VALUE, 0, 0), 0);
    assert_eq!(ok(&mut fe, VIRTIO_GPIO_MSG_GET_VALUE, 1, 0), 1);
    fe.disconnect().unwrap();
    let ctl_path = d.ctl();
    assert_eq!(d.stop(), Some(0));
    assert!(!ctl_path.exists(), "control socket removed on exit");
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn assert_one_line_error(out: &Output, needle: &str) {
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains(needle), "'{needle}' not in: {err}");
}

#[test]
fn bad_command_lines_fail_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s");
    let sock = sock.to_str().unwrap();
    for (list, needle) in [
        ("s0", "'s0'"),
        ("s1025", "'s1025'"),
        ("", "empty entry"),
        ("s2::s2", "empty entry"),
        ("no such label", "'no such label'"),
        ("99", "'99'"),
        ("/nonexistent/gpiochip", "/nonexistent/gpiochip"),
        ("label=", "empty label"),
    ] {
        assert_one_line_error(&run(&["--socket-path", sock, "-l", list]), needle);
    }
    assert_one_line_error(
        &run(&["--socket-path", sock, "-l", "s2:s2"]),
        "2 entries for --socket-count 1",
    );
    assert_one_line_error(
        &run(&["--socket-path", sock, "--socket-count", "3", "-l", "s2,s2"]),
        "2 entries for --socket-count 3",
    );
    assert_one_line_error(
        &run(&[
            "--socket-path",
            sock,
            "-l",
            "s2",
            "--sim-control",
            "/nonexistent/dir/ctl",
        ]),
        "/nonexistent/dir/ctl",
    );
    assert_one_line_error(
        &run(&["sim-set", "--control", "/nonexistent/ctl", "1=1"]),
        "/nonexistent/ctl",
    );
    assert_one_line_error(&run(&["sim-set", "--control", "/x", "1=2"]), "'1=2'");
    assert!(!Path::new(sock).exists());
}

#[test]
fn several_guests_each_with_a_control_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("gpio.sock");
    let ctl = dir.path().join("ctl");
    let path = |base: &Path, i: u32| PathBuf::from(format!("{}{i}", base.display()));
    let mut command = Command::new(BIN);
    command
        .arg("--socket-path")
        .arg(&sock)
        .args(["--socket-count", "2", "-l", "s2:s3", "--sim-control"])
        .arg(&ctl);
    let sockets = vec![path(&sock, 0), path(&sock, 1), path(&ctl, 0), path(&ctl, 1)];
    let daemon = DaemonProcess::spawn(command, sockets).unwrap();
    let opts = FrontendOptions {
        num_queues: Some(2),
        ..Default::default()
    };
    let mut fe = daemon.connect(1, opts).unwrap();
    assert_eq!(&fe.get_config(0, 2).unwrap(), &[3, 0]);
    let mut ctl1 = ControlClient::connect(&path(&ctl, 1)).unwrap();
    ctl1.set(2, true).unwrap();
    assert_eq!(ok(&mut fe, VIRTIO_GPIO_MSG_GET_VALUE, 2, 0), 1);
    let mut ctl0 = ControlClient::connect(&path(&ctl, 0)).unwrap();
    ctl0.get(2).unwrap_err();
    fe.disconnect().unwrap();
    assert!(daemon.stop().unwrap().success());
}

#[test]
fn no_thread_keeps_a_capability_not_even_the_control_socket_s() {
    assert!(
        running_with_capabilities(),
        "this test needs capabilities to see them dropped: run it as root (CI does)"
    );
    let d = Daemon::start(&["--device-list", "s4"]);
    // The control socket's thread starts before the sandbox, and a client
    // gets a thread of its own; a frontend starts the vring worker.
    let mut ctl = d.control();
    ctl.set(1, true).unwrap();
    let mut fe = d.connect();
    assert_eq!(ok(&mut fe, VIRTIO_GPIO_MSG_GET_VALUE, 1, 0), 1);
    let (wrong, threads) = threads_beyond_capabilities(d.process.pid(), 0).unwrap();
    assert!(threads >= 4, "main, socket, control, its client: {threads}");
    assert!(wrong.is_empty(), "threads with capabilities: {wrong:#?}");
    // A client that comes after the sandbox is no different.
    let mut late = d.control();
    assert!(late.get(1).unwrap());
    let (wrong, _) = threads_beyond_capabilities(d.process.pid(), 0).unwrap();
    assert!(wrong.is_empty(), "threads with capabilities: {wrong:#?}");
    drop((ctl, late));
    fe.disconnect().unwrap();
    assert_eq!(d.stop(), Some(0));
}
