// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The host side fails under a running guest and comes back: the chip
//! removed and made live again, at its node or, named by label, at another
//! node; and another chip at the old node is never taken for it. Each
//! round runs the real daemon, with its sandbox (Landlock, seccomp), on
//! gpio-sim.

use std::process::Command;
use std::time::Instant;

use vhost_device_common::testing::{
    default_seccomp_mode, wait_for_default_seccomp, DaemonProcess, FrontendOptions, TestFrontend,
};
use vhost_device_gpio::protocol::{VIRTIO_GPIO_MSG_GET_DIRECTION, VIRTIO_GPIO_STATUS_ERR};

use super::*;

const OK: [u8; 2] = [VIRTIO_GPIO_STATUS_OK, 0];
const ERR: [u8; 2] = [VIRTIO_GPIO_STATUS_ERR, 0];

/// Starts the daemon on `device_list` at `sock`, logging at info level
/// (into `log` if given, where a test reads it).
fn start_daemon(sock: &Path, device_list: &str, log: Option<&Path>) -> DaemonProcess {
    let mut command = Command::new(GUEST_BIN);
    command
        .arg("--socket-path")
        .arg(sock)
        .args(["--device-list", device_list])
        // Its log says whether and how Landlock applied.
        .env("RUST_LOG", "info");
    if let Some(log) = log {
        command.stderr(std::fs::File::create(log).unwrap());
    }
    DaemonProcess::spawn(command, vec![sock.to_owned()]).unwrap()
}

fn connect(sock: &Path) -> TestFrontend {
    let opts = FrontendOptions {
        num_queues: Some(2),
        ..Default::default()
    };
    TestFrontend::connect_retry(sock, opts, Duration::from_secs(5)).unwrap()
}

/// The guest drives line 0 high and waits for a rising edge on line 1
/// (SETUP's chip); the head of its event buffer.
fn output_and_edge_wait(fe: &mut TestFrontend) -> u16 {
    pull(1, false);
    assert_eq!(req(fe, VIRTIO_GPIO_MSG_SET_DIRECTION, 0, 1), OK);
    assert_eq!(req(fe, VIRTIO_GPIO_MSG_SET_VALUE, 0, 1), OK);
    assert_eq!(sim_value(0), "1");
    assert_eq!(req(fe, VIRTIO_GPIO_MSG_SET_DIRECTION, 1, 2), OK);
    let rising = IrqType::EdgeRising as u32;
    assert_eq!(req(fe, VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 1, rising), OK);
    let q = fe.queue(1).unwrap();
    let waiting = q.add(&[&1u16.to_le_bytes()], &[1]).unwrap();
    q.kick().unwrap();
    waiting
}

/// Makes gpio-sim chip `name` (`label`, 4 unnamed lines) live; its node.
fn add_sim_chip(name: &str, label: &str) -> PathBuf {
    let dir = Path::new(GPIO_SIM).join(name);
    std::fs::create_dir(&dir).unwrap();
    std::fs::create_dir(dir.join("bank0")).unwrap();
    std::fs::write(dir.join("bank0/num_lines"), "4").unwrap();
    std::fs::write(dir.join("bank0/label"), label).unwrap();
    set_live(name, true);
    Path::new("/dev").join(read(&dir.join("bank0/chip_name")))
}

fn set_live(name: &str, live: bool) {
    let path = Path::new(GPIO_SIM).join(name).join("live");
    std::fs::write(&path, if live { "1" } else { "0" })
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Removes gpio-sim chip `name`.
fn remove_sim_chip(name: &str) {
    set_live(name, false);
    let dir = Path::new(GPIO_SIM).join(name);
    std::fs::remove_dir(dir.join("bank0")).unwrap();
    std::fs::remove_dir(dir).unwrap();
}

/// Asserts that no line of the chip at `node` is held by anyone.
fn untouched(node: &Path, what: &str) {
    let chip = gpiocdev::Chip::from_path(node).unwrap();
    for line in 0..4 {
        let info = chip.line_info(line).unwrap();
        assert!(
            !info.used,
            "{what}: line {line} of {} was claimed (consumer '{}')",
            node.display(),
            info.consumer
        );
    }
}

/// The guest's lines are back as it left them: its output (line 0) at
/// the 0 it last set and driven again, its input (line 1) still one, and
/// the rising edge it has been waiting for arrives on its buffer.
fn lines_as_the_guest_left_them(fe: &mut TestFrontend, waiting: u16) {
    assert_eq!(sim_value(0), "0");
    assert_eq!(req(fe, VIRTIO_GPIO_MSG_SET_VALUE, 0, 1), OK);
    assert_eq!(sim_value(0), "1");
    for (kind, line, answer) in [
        (VIRTIO_GPIO_MSG_GET_VALUE, 0, 1),
        (VIRTIO_GPIO_MSG_GET_DIRECTION, 0, 1),
        (VIRTIO_GPIO_MSG_GET_DIRECTION, 1, 2),
    ] {
        assert_eq!(req(fe, kind, line, 0), [VIRTIO_GPIO_STATUS_OK, answer]);
    }
    pull(1, true);
    let used = fe
        .queue(1)
        .unwrap()
        .wait_used(Duration::from_secs(5))
        .unwrap();
    assert_eq!(
        (used.head, used.data),
        (waiting, vec![VIRTIO_GPIO_IRQ_STATUS_VALID])
    );
}

/// With another chip at the guest's chip's node, every kind of request
/// fails: on a held line (which the guest sets to 0), on an unclaimed one
/// read, and a new claim; and the other chip's lines stay free.
fn nothing_claimed_on(fe: &mut TestFrontend, other: &Path) {
    for (kind, line, value) in [
        (VIRTIO_GPIO_MSG_GET_VALUE, 0, 0),
        (VIRTIO_GPIO_MSG_SET_VALUE, 0, 0),
        (VIRTIO_GPIO_MSG_GET_VALUE, 2, 0),
        (VIRTIO_GPIO_MSG_GET_DIRECTION, 2, 0),
        (VIRTIO_GPIO_MSG_SET_DIRECTION, 3, 1),
    ] {
        assert_eq!(
            req(fe, kind, line, value),
            ERR,
            "request {kind} line {line}"
        );
    }
    untouched(other, "a chip with another label at the node");
}

/// Sends GET_VALUE for `line` until it answers OK, for up to 5 s; the
/// answer's value, and how many requests failed before.
fn value_once_back(fe: &mut TestFrontend, line: u16) -> (u8, u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut failed = 0;
    loop {
        let answer = req(fe, VIRTIO_GPIO_MSG_GET_VALUE, line, 0);
        if answer[0] == VIRTIO_GPIO_STATUS_OK {
            return (answer[1], failed);
        }
        failed += 1;
        assert!(
            Instant::now() < deadline,
            "line {line} still fails 5 s after the chip came back"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The host side goes away under a running guest, and comes back:
/// gpio-sim's chip is removed (configfs `live` = 0) while the guest holds
/// an output line and waits for an edge interrupt on another. Requests then
/// fail with VIRTIO_GPIO_STATUS_ERR, the daemon neither dies nor spins (the
/// removed chip's line fds report hang-up for ever on the worker's epoll),
/// and it still answers GET_CONFIG. Then the chip is made live again, at
/// the same `/dev` node (a new file, so the daemon's Landlock rule must
/// cover it): the guest's next request claims its lines again as it had
/// set them, values and directions work, and the edge interrupt it kept
/// waiting for arrives.
pub(super) fn in_guest_chip_goes_away_and_comes_back() {
    // SAFETY: landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)
    // only returns the ABI version.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    eprintln!("guest kernel Landlock ABI: {abi}");
    assert!(
        abi >= 5,
        "the guest kernel has no Landlock with device ioctls: the test would not exercise the daemon's ruleset"
    );
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("gpio.sock");
    let node = find_by_label("vdg-bank").unwrap();
    let daemon = start_daemon(&sock, "label=vdg-bank", None);
    let mut fe = connect(&sock);
    let waiting = output_and_edge_wait(&mut fe);

    std::fs::write(Path::new(CONFIGFS).join("live"), "0").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let before = daemon.cpu_ticks().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let ticks = daemon.cpu_ticks().unwrap() - before;
    assert!(
        ticks <= 5,
        "the daemon spins with its chip gone: {ticks} ticks in 0.5 s"
    );
    assert_eq!(
        req(&mut fe, VIRTIO_GPIO_MSG_GET_VALUE, 0, 0),
        ERR,
        "a line of a removed chip"
    );
    assert_eq!(req(&mut fe, VIRTIO_GPIO_MSG_SET_VALUE, 0, 0), ERR);
    assert_eq!(fe.get_config(0, 8).unwrap().len(), 8);
    assert!(
        fe.queue(1).unwrap().try_used().unwrap().is_none(),
        "the interrupt the guest waits for came with the chip gone"
    );
    eprintln!("chip removed under the daemon: {:?}", started.elapsed());

    // The chip comes back. gpio-sim takes the lowest free chip number, so
    // it is the same node, as a new file.
    std::fs::write(Path::new(CONFIGFS).join("live"), "1").unwrap();
    let back = Instant::now();
    assert_eq!(
        find_by_label("vdg-bank").unwrap(),
        node,
        "gpio-sim gave the chip another node"
    );
    // The guest's output was last set to 0 while the chip was gone: the
    // first request claims the lines again as the guest set them.
    assert_eq!(req(&mut fe, VIRTIO_GPIO_MSG_GET_VALUE, 0, 0), OK);
    let recovered = back.elapsed();
    lines_as_the_guest_left_them(&mut fe, waiting);
    // An unclaimed line reads through the chip's new fd, and a new claim
    // works.
    pull(2, true);
    for (kind, line, answer) in [
        (VIRTIO_GPIO_MSG_GET_VALUE, 2, 1),
        (VIRTIO_GPIO_MSG_GET_DIRECTION, 3, 2),
    ] {
        assert_eq!(req(&mut fe, kind, line, 0), [VIRTIO_GPIO_STATUS_OK, answer]);
    }
    assert_eq!(req(&mut fe, VIRTIO_GPIO_MSG_SET_DIRECTION, 3, 1), OK);
    assert_eq!(sim_value(3), "0");
    eprintln!(
        "chip back: first request OK after {recovered:?}, edge interrupt after {:?}",
        back.elapsed()
    );
    fe.disconnect().unwrap();
    assert!(daemon.stop().unwrap().success());
}

/// Waits for the daemon to let go of a removed chip's lines (the epoll
/// reports their fds), so that the kernel frees the chip's number before
/// another chip is made.
fn let_go() {
    std::thread::sleep(Duration::from_millis(300));
}

/// A chip named by label comes back at another node: while it was gone,
/// another chip (another label, as many lines) took its number. The
/// daemon, in its sandbox, does not take that chip for it (its lines stay
/// free, every kind of request fails), finds the labelled chip at its new
/// node by probing the nodes (it cannot list `/dev`), claims the guest's
/// lines there as the guest set them, logs the move once, and a new
/// connection gets the chip at its new node as well.
pub(super) fn in_guest_label_followed_to_another_node() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("gpio.sock");
    let log = dir.path().join("daemon.log");
    let old = find_by_label("vdg-bank").unwrap();
    let daemon = start_daemon(&sock, "label=vdg-bank", Some(&log));
    let mut fe = connect(&sock);
    let waiting = output_and_edge_wait(&mut fe);
    let mode = wait_for_default_seccomp(daemon.pid(), Duration::from_secs(5)).unwrap();
    eprintln!("the daemon's seccomp mode: {mode:?}");
    assert_eq!(mode, default_seccomp_mode());

    set_live("vdg", false);
    let_go();
    let other = add_sim_chip("vdo", "vdg-other");
    assert_eq!(other, old, "the other chip did not take the old node");
    // The first request searched at once; the ones after the pause search
    // again with the other chip in place.
    nothing_claimed_on(&mut fe, &other);
    std::thread::sleep(Duration::from_millis(1100));
    nothing_claimed_on(&mut fe, &other);

    set_live("vdg", true);
    let back = Instant::now();
    let new = find_by_label("vdg-bank").unwrap();
    assert_ne!(new, old, "gpio-sim gave the chip its old node");
    // The guest set its output to 0 while the chip was gone.
    let (value, failed) = value_once_back(&mut fe, 0);
    let recovered = back.elapsed();
    assert_eq!(value, 0);
    lines_as_the_guest_left_them(&mut fe, waiting);
    assert_eq!(req(&mut fe, VIRTIO_GPIO_MSG_SET_DIRECTION, 3, 1), OK);
    assert_eq!(sim_value(3), "0");
    untouched(&other, "a chip with another label at the old node");
    eprintln!(
        "chip back at {} (was {}): first request OK after {recovered:?} ({failed} failed before), \
         edge interrupt after {:?}",
        new.display(),
        old.display(),
        back.elapsed()
    );

    // A new connection finds the chip at its new node, not the other one.
    fe.disconnect().unwrap();
    let mut fe = connect(&sock);
    serves_setups_chip(&mut fe);
    assert_eq!(req(&mut fe, VIRTIO_GPIO_MSG_SET_DIRECTION, 2, 1), OK);
    assert_eq!(sim_value(2), "0");
    untouched(&other, "a chip with another label at the old node");
    fe.disconnect().unwrap();
    assert!(daemon.stop().unwrap().success());
    let log = read(&log);
    eprintln!("daemon log:\n{log}");
    let moved = format!("is at {} now", new.display());
    assert_eq!(log.matches(&moved).count(), 1, "the move is logged once");
    eprintln!("chip followed by label: round took {:?}", started.elapsed());
}

/// A chip named by path is taken back only at its node, and only if it is
/// the same chip: another chip that took its number meanwhile, with as
/// many lines but another label, is not claimed.
pub(super) fn in_guest_path_chip_not_mistaken_for_another() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("gpio.sock");
    let node = find_by_label("vdg-bank").unwrap();
    let daemon = start_daemon(&sock, node.to_str().unwrap(), None);
    let mut fe = connect(&sock);
    let waiting = output_and_edge_wait(&mut fe);

    set_live("vdg", false);
    let_go();
    let third = add_sim_chip("vdt", "vdg-third");
    assert_eq!(third, node, "the other chip did not take the node");
    nothing_claimed_on(&mut fe, &third);

    remove_sim_chip("vdt");
    set_live("vdg", true);
    assert_eq!(find_by_label("vdg-bank").unwrap(), node);
    let (value, failed) = value_once_back(&mut fe, 0);
    assert_eq!(
        (value, failed),
        (0, 0),
        "back at its node: the first request works"
    );
    lines_as_the_guest_left_them(&mut fe, waiting);
    fe.disconnect().unwrap();
    assert!(daemon.stop().unwrap().success());
    eprintln!("chip named by path: round took {:?}", started.elapsed());
}
