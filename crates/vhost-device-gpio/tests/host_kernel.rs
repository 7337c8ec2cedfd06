// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The gpiocdev backend against a real kernel GPIO chip: gpio-sim, set up
//! through configfs inside the rig's guest (this host has no gpio-sim). The
//! backend sets outputs that gpio-sim's sysfs shows, reads inputs that
//! gpio-sim's pull controls drive, and receives the edge events those pulls
//! cause; the device on top of it turns them into edge and level
//! interrupts, and the daemon itself serves the chip to the test frontend.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use vhost_device_common::mock::ChainBuilder;
use vhost_device_common::DescChain;
use vhost_device_gpio::backend::cdev::{find_by_label, CdevChip};
use vhost_device_gpio::backend::{Direction, Edge, Edges, GpioBackend};
use vhost_device_gpio::protocol::{
    IrqType, VirtioGpioRequest, VIRTIO_GPIO_IRQ_STATUS_VALID, VIRTIO_GPIO_MSG_GET_LINE_NAMES,
    VIRTIO_GPIO_MSG_GET_VALUE, VIRTIO_GPIO_MSG_SET_DIRECTION, VIRTIO_GPIO_MSG_SET_IRQ_TYPE,
    VIRTIO_GPIO_MSG_SET_VALUE, VIRTIO_GPIO_STATUS_OK,
};
use vhost_device_gpio::GpioDevice;
use vm_memory::ByteValued;

#[path = "host_kernel/recovery.rs"]
mod recovery;

/// gpio-sim's configfs directory.
const GPIO_SIM: &str = "/sys/kernel/config/gpio-sim";
/// The chip SETUP makes, in it.
const CONFIGFS: &str = "/sys/kernel/config/gpio-sim/vdg";

/// The guest-side setup: a gpio-sim chip with four named lines, labelled so
/// the backend can find it by label.
const SETUP: &str = "\
set -e
d=/sys/kernel/config/gpio-sim/vdg
mkdir $d $d/bank0
echo 4 > $d/bank0/num_lines
echo vdg-bank > $d/bank0/label
for i in 0 1 2 3; do mkdir $d/bank0/line$i; echo vdg-$i > $d/bank0/line$i/name; done
echo 1 > $d/live
cat $d/dev_name $d/bank0/chip_name
";

fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

/// gpio-sim's sysfs directory for `line` of SETUP's chip.
fn sim_line(line: u16) -> PathBuf {
    let dev = read(&Path::new(CONFIGFS).join("dev_name"));
    let chip = read(&Path::new(CONFIGFS).join("bank0/chip_name"));
    PathBuf::from(format!("/sys/devices/platform/{dev}/{chip}/sim_gpio{line}"))
}

fn pull(line: u16, up: bool) {
    let path = sim_line(line).join("pull");
    std::fs::write(&path, if up { "pull-up" } else { "pull-down" })
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn sim_value(line: u16) -> String {
    read(&sim_line(line).join("value"))
}

fn edges(chip: &mut CdevChip, line: u16) -> Vec<(u16, Edge)> {
    assert!(
        chip.wait_edge_event(line, Duration::from_secs(2)).unwrap(),
        "no edge event on line {line}"
    );
    let mut seen = Vec::new();
    chip.read_events(line, &mut |l, e| seen.push((l, e)));
    seen
}

fn no_edges(chip: &mut CdevChip, line: u16) {
    assert!(
        !chip
            .wait_edge_event(line, Duration::from_millis(300))
            .unwrap(),
        "unexpected edge event on line {line}"
    );
}

fn in_guest_backend() {
    let path = find_by_label("vdg-bank").unwrap();
    let mut chip = CdevChip::open(&path).unwrap();
    assert_eq!(chip.num_lines(), 4);
    assert_eq!(chip.line_names(), ["vdg-0", "vdg-1", "vdg-2", "vdg-3"]);

    // Outputs: the value is set before the direction, as Linux does.
    chip.set_value(0, true).unwrap();
    chip.set_direction(0, Direction::Out).unwrap();
    assert_eq!(chip.direction(0).unwrap(), Direction::Out);
    assert_eq!(sim_value(0), "1");
    chip.set_value(0, false).unwrap();
    assert_eq!(sim_value(0), "0");
    assert!(!chip.value(0).unwrap());

    // Inputs driven by gpio-sim's pulls, claimed or not.
    pull(2, true);
    assert!(chip.value(2).unwrap(), "reading an unclaimed line works");
    chip.set_direction(1, Direction::In).unwrap();
    pull(1, true);
    assert!(chip.value(1).unwrap());
    pull(1, false);
    assert!(!chip.value(1).unwrap());

    // Edges the backend caused through the pulls.
    chip.set_edges(1, Edges::Both).unwrap();
    pull(1, true);
    assert_eq!(edges(&mut chip, 1), [(1, Edge::Rising)]);
    pull(1, false);
    assert_eq!(edges(&mut chip, 1), [(1, Edge::Falling)]);
    chip.set_edges(1, Edges::Rising).unwrap();
    pull(1, true);
    assert_eq!(edges(&mut chip, 1), [(1, Edge::Rising)]);
    pull(1, false);
    no_edges(&mut chip, 1);
    chip.set_edges(1, Edges::None).unwrap();
    pull(1, true);
    no_edges(&mut chip, 1);
    // An output refuses edge detection; releasing works.
    chip.set_edges(0, Edges::Both).unwrap_err();
    chip.set_direction(0, Direction::None).unwrap();
    chip.set_direction(1, Direction::None).unwrap();
    pull(1, false);
    assert!(!chip.value(1).unwrap());
}

fn request(kind: u16, gpio: u16, value: u32) -> Vec<u8> {
    VirtioGpioRequest::new(kind, gpio, value)
        .as_slice()
        .to_vec()
}

/// One request-queue request through the daemon; the response bytes.
fn req(
    fe: &mut vhost_device_common::testing::TestFrontend,
    kind: u16,
    gpio: u16,
    value: u32,
) -> Vec<u8> {
    fe.queue(0)
        .unwrap()
        .request(&[&request(kind, gpio, value)], &[2], Duration::from_secs(5))
        .unwrap()
        .data
}

/// The daemon behind `fe` serves SETUP's chip: its 4 lines and their
/// names.
fn serves_setups_chip(fe: &mut vhost_device_common::testing::TestFrontend) {
    let config = fe.get_config(0, 8).unwrap();
    assert_eq!(&config[..2], &[4, 0]);
    let names = b"vdg-0\0vdg-1\0vdg-2\0vdg-3\0";
    let used = fe
        .queue(0)
        .unwrap()
        .request(
            &[&request(VIRTIO_GPIO_MSG_GET_LINE_NAMES, 0, 0)],
            &[1 + names.len() as u32],
            Duration::from_secs(5),
        )
        .unwrap();
    assert_eq!(used.data[0], VIRTIO_GPIO_STATUS_OK);
    assert_eq!(&used.data[1..], names);
}

/// Sets `line`'s interrupt trigger through the device; the reply must be OK.
fn set_irq_type(dev: &mut GpioDevice<CdevChip>, g: &mut ChainBuilder, line: u16, trigger: IrqType) {
    let req = request(VIRTIO_GPIO_MSG_SET_IRQ_TYPE, line, trigger as u32);
    let chain = g.request(&[&req], &[2]);
    assert_eq!(dev.handle_request(&chain, g.memory()), 2);
    assert_eq!(g.written(&chain), [VIRTIO_GPIO_STATUS_OK, 0]);
}

/// Posts an event buffer for `line`; what the device did with it.
fn post(
    dev: &mut GpioDevice<CdevChip>,
    g: &mut ChainBuilder,
    line: u16,
) -> (DescChain, Option<u32>) {
    let event = g.request(&[&line.to_le_bytes()], &[1]);
    let result = dev.handle_event_buffer(event.clone(), g.memory());
    (event, result)
}

/// Waits for the kernel's edge event on `line` and lets the device see it.
fn deliver_edge(dev: &mut GpioDevice<CdevChip>, g: &ChainBuilder, line: u16) {
    assert!(dev
        .backend()
        .wait_edge_event(line, Duration::from_secs(2))
        .unwrap());
    dev.handle_backend_event(line, g.memory());
}

/// The device over the real chip: level interrupts emulated from the
/// kernel's edges plus the line's current value.
fn in_guest_device_level_irq() {
    let path = find_by_label("vdg-bank").unwrap();
    let mut dev = GpioDevice::new(CdevChip::open(&path).unwrap());
    dev.set_irq_negotiated(true);
    let mut g = ChainBuilder::new();
    pull(3, false);
    set_irq_type(&mut dev, &mut g, 3, IrqType::LevelHigh);

    // Low: the buffer is held.
    let (event, result) = post(&mut dev, &mut g, 3);
    assert_eq!(result, None);
    // The host raises the line: the kernel reports the edge, the level fires.
    pull(3, true);
    deliver_edge(&mut dev, &g, 3);
    let fired: Vec<_> = dev.take_fired().collect();
    assert_eq!(fired, [(event.head(), 1)]);
    assert_eq!(g.written(&event), [VIRTIO_GPIO_IRQ_STATUS_VALID]);
    // Still high: each re-posted buffer fires again at once.
    for _ in 0..3 {
        let (event, result) = post(&mut dev, &mut g, 3);
        assert_eq!(result, Some(1));
        assert_eq!(g.written(&event), [VIRTIO_GPIO_IRQ_STATUS_VALID]);
    }
    // Low again: held, and the falling edge does not fire it.
    pull(3, false);
    deliver_edge(&mut dev, &g, 3);
    assert_eq!(post(&mut dev, &mut g, 3).1, None);
    assert_eq!(dev.take_fired().count(), 0);

    // Edge rising on line 2 through the device as well.
    pull(2, false);
    set_irq_type(&mut dev, &mut g, 2, IrqType::EdgeRising);
    let (event, result) = post(&mut dev, &mut g, 2);
    assert_eq!(result, None);
    pull(2, true);
    deliver_edge(&mut dev, &g, 2);
    assert_eq!(dev.take_fired().collect::<Vec<_>>(), [(event.head(), 1)]);
}

/// Where the scenario puts the daemon binary in the guest.
const GUEST_BIN: &str = "/rig/vhost-device-gpio";

/// The real daemon on the real chip, found by label, driven by the test
/// frontend: the chip's line fds on the worker's epoll deliver the edges.
fn in_guest_daemon() {
    use std::process::{Command, Stdio};
    use vhost_device_common::testing::{FrontendOptions, TestFrontend};
    use vhost_device_gpio::protocol::{VIRTIO_GPIO_IRQ_STATUS_INVALID, VIRTIO_GPIO_STATUS_ERR};

    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("gpio.sock");
    let mut child = Command::new(GUEST_BIN)
        .arg("--socket-path")
        .arg(&sock)
        .args(["--device-list", "label=vdg-bank"])
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let opts = FrontendOptions {
        num_queues: Some(2),
        ..Default::default()
    };
    let wait = Duration::from_secs(5);
    let mut fe = TestFrontend::connect_retry(&sock, opts, wait).unwrap();
    serves_setups_chip(&mut fe);
    // Output seen in gpio-sim's sysfs; input read from its pull.
    assert_eq!(
        req(&mut fe, VIRTIO_GPIO_MSG_SET_VALUE, 0, 1),
        [VIRTIO_GPIO_STATUS_OK, 0]
    );
    assert_eq!(
        req(&mut fe, VIRTIO_GPIO_MSG_SET_DIRECTION, 0, 1),
        [VIRTIO_GPIO_STATUS_OK, 0]
    );
    assert_eq!(sim_value(0), "1");
    pull(2, true);
    assert_eq!(
        req(&mut fe, VIRTIO_GPIO_MSG_GET_VALUE, 2, 0),
        [VIRTIO_GPIO_STATUS_OK, 1]
    );
    pull(2, false);
    assert_eq!(
        req(&mut fe, VIRTIO_GPIO_MSG_GET_VALUE, 2, 0),
        [VIRTIO_GPIO_STATUS_OK, 0]
    );
    assert_eq!(
        req(&mut fe, VIRTIO_GPIO_MSG_GET_VALUE, 4, 0),
        [VIRTIO_GPIO_STATUS_ERR, 0]
    );
    // Edge rising on line 1, level high on line 3.
    pull(1, false);
    pull(3, false);
    assert_eq!(
        req(&mut fe, VIRTIO_GPIO_MSG_SET_DIRECTION, 1, 2),
        [VIRTIO_GPIO_STATUS_OK, 0]
    );
    assert_eq!(
        req(
            &mut fe,
            VIRTIO_GPIO_MSG_SET_IRQ_TYPE,
            1,
            IrqType::EdgeRising as u32
        ),
        [VIRTIO_GPIO_STATUS_OK, 0]
    );
    assert_eq!(
        req(
            &mut fe,
            VIRTIO_GPIO_MSG_SET_IRQ_TYPE,
            3,
            IrqType::LevelHigh as u32
        ),
        [VIRTIO_GPIO_STATUS_OK, 0]
    );
    let q = fe.queue(1).unwrap();
    let post = |q: &mut vhost_device_common::testing::TestQueue, line: u16| {
        let head = q.add(&[&line.to_le_bytes()], &[1]).unwrap();
        q.kick().unwrap();
        head
    };
    let quiet = |q: &mut vhost_device_common::testing::TestQueue| {
        std::thread::sleep(Duration::from_millis(300));
        assert!(q.try_used().unwrap().is_none(), "unexpected event");
    };
    let edge = post(q, 1);
    let level = post(q, 3);
    quiet(q);
    pull(1, true);
    let used = q.wait_used(wait).unwrap();
    assert_eq!(
        (used.head, used.data),
        (edge, vec![VIRTIO_GPIO_IRQ_STATUS_VALID])
    );
    pull(3, true);
    let used = q.wait_used(wait).unwrap();
    assert_eq!(
        (used.head, used.data),
        (level, vec![VIRTIO_GPIO_IRQ_STATUS_VALID])
    );
    for _ in 0..3 {
        let level = post(q, 3);
        let used = q.wait_used(wait).unwrap();
        assert_eq!(
            (used.head, used.data),
            (level, vec![VIRTIO_GPIO_IRQ_STATUS_VALID])
        );
    }
    pull(3, false);
    let level = post(q, 3);
    let edge = post(q, 1);
    pull(1, false);
    quiet(q);
    // Disabling returns both buffers unused.
    assert_eq!(
        req(&mut fe, VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 3, 0),
        [VIRTIO_GPIO_STATUS_OK, 0]
    );
    assert_eq!(
        req(&mut fe, VIRTIO_GPIO_MSG_SET_IRQ_TYPE, 1, 0),
        [VIRTIO_GPIO_STATUS_OK, 0]
    );
    let q = fe.queue(1).unwrap();
    let mut returned =
        [q.wait_used(wait).unwrap(), q.wait_used(wait).unwrap()].map(|u| (u.head, u.data));
    returned.sort();
    let mut expected = [
        (level, vec![VIRTIO_GPIO_IRQ_STATUS_INVALID]),
        (edge, vec![VIRTIO_GPIO_IRQ_STATUS_INVALID]),
    ];
    expected.sort();
    assert_eq!(returned, expected);
    fe.disconnect().unwrap();
    // SAFETY: kill() on our own child's pid.
    unsafe { libc::kill(libc::pid_t::try_from(child.id()).unwrap(), libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn host_kernel_gpiocdev_backend() {
    if vhost_device_rig::in_guest() {
        in_guest_backend();
        in_guest_device_level_irq();
        in_guest_daemon();
        recovery::in_guest_chip_goes_away_and_comes_back();
        recovery::in_guest_label_followed_to_another_node();
        recovery::in_guest_path_chip_not_mistaken_for_another();
        return;
    }
    vhost_device_rig::Scenario::host_test(
        "host_kernel_gpiocdev_backend",
        std::env::current_exe().unwrap(),
        "host_kernel_gpiocdev_backend",
    )
    .modules(&["gpio-sim"])
    .guest_file(env!("CARGO_BIN_EXE_vhost-device-gpio"), GUEST_BIN)
    .guest_script(SETUP)
    .timeout(Duration::from_secs(120))
    .run()
    .expect("scenario could not start")
    .assert_success();
}
