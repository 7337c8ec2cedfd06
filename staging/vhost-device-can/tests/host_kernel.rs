// SPDX-License-Identifier: Apache-2.0 OR BSD-3-Clause

//! The SocketCAN backend against the real kernel CAN stack: `vcan`
//! interfaces inside the rig's guest (this host has no CAN), with a second
//! raw socket as the other node on the bus.
//!
//! vcan has no controller, so nothing on it ever goes bus-off by itself.
//! The nearest approximation: the peer socket puts a `CAN_ERR_BUSOFF`
//! error frame on the interface, the frame a real controller's driver
//! emits through `can_bus_off()`. It reaches the backend only because the
//! backend subscribed to bus-off errors with `CAN_RAW_ERR_FILTER`.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use socketcan::{CanFdSocket, Socket};
use vhost_device_can::backend::socketcan::SocketCan;
use vhost_device_can::backend::{BackendEvent, CanBackend, TxAck};
use vhost_device_can::controller::Mode;
use vhost_device_can::frame::CanFrame;
use vhost_device_can::protocol::*;
use vhost_device_can::CanDevice;
use vhost_device_common::mock::{read_region, ChainBuilder};
use vhost_device_common::{DescChain, VirtioDevice};
use vm_memory::ByteValued;

mod support;
use support::{control, send, tx_bytes};

const SETUP: &str = "\
set -e
ip link add dev vcan0 type vcan
ip link set vcan0 up
ip link add dev vcan1 type vcan
ip link set vcan1 mtu 72
ip link set vcan1 up
ip -details link show
";

const ALL: u64 = VIRTIO_CAN_F_CAN_CLASSIC
    | VIRTIO_CAN_F_CAN_FD
    | VIRTIO_CAN_F_RTR_FRAMES
    | VIRTIO_CAN_F_LATE_TX_ACK;
const CAN_EFF_FLAG: u32 = 0x8000_0000;
const CAN_RTR_FLAG: u32 = 0x4000_0000;
const CAN_ERR_FLAG: u32 = 0x2000_0000;
const CAN_ERR_BUSOFF: u32 = 0x40;

/// The other node: a raw socket, frames as raw `struct canfd_frame` bytes.
struct Peer(CanFdSocket);

impl Peer {
    fn open(name: &str) -> Self {
        let s = CanFdSocket::open(name).unwrap();
        s.set_read_timeout(Duration::from_secs(2)).unwrap();
        Peer(s)
    }

    fn write(&self, can_id: u32, data: &[u8], fd: bool) {
        let mut raw = [0u8; 72];
        raw[..4].copy_from_slice(&can_id.to_ne_bytes());
        raw[4] = u8::try_from(data.len()).unwrap();
        raw[8..8 + data.len()].copy_from_slice(data);
        let size = if fd { 72 } else { 16 };
        // SAFETY: writes `size` bytes of `raw`, which holds 72.
        let n = unsafe { libc::write(self.0.as_raw_fd(), raw.as_ptr().cast(), size) };
        assert_eq!(
            usize::try_from(n).ok(),
            Some(size),
            "{}",
            std::io::Error::last_os_error()
        );
    }

    /// (can_id with flags, payload, frame size).
    fn read(&self) -> (u32, Vec<u8>, usize) {
        let mut raw = [0u8; 72];
        // SAFETY: reads at most 72 bytes into `raw`.
        let n = unsafe { libc::read(self.0.as_raw_fd(), raw.as_mut_ptr().cast(), 72) };
        assert!(n > 0, "peer read: {}", std::io::Error::last_os_error());
        let id = u32::from_ne_bytes(raw[..4].try_into().unwrap());
        (id, raw[8..8 + usize::from(raw[4])].to_vec(), n as usize)
    }

    fn nothing(&self) {
        self.0.set_read_timeout(Duration::from_millis(300)).unwrap();
        let mut raw = [0u8; 72];
        // SAFETY: reads at most 72 bytes into `raw`.
        let n = unsafe { libc::read(self.0.as_raw_fd(), raw.as_mut_ptr().cast(), 72) };
        assert!(n < 0, "unexpected frame on the bus");
        self.0.set_read_timeout(Duration::from_secs(2)).unwrap();
    }
}

/// Polls the backend until `want` events came (bounded).
fn events(backend: &mut SocketCan, want: usize) -> Vec<BackendEvent> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(2);
    while out.len() < want && Instant::now() < deadline {
        backend.poll(&mut |e| out.push(e));
        std::thread::sleep(Duration::from_millis(5));
    }
    out
}

fn in_guest_backend() {
    // FD follows the MTU, not the name.
    let mut classic = SocketCan::open("vcan0").unwrap();
    assert!(!classic.capabilities().fd);
    let mut fd = SocketCan::open("vcan1").unwrap();
    assert!(fd.capabilities().fd);
    SocketCan::open("nosuch0").unwrap_err();

    let peer0 = Peer::open("vcan0");
    classic.set_started(true);
    // Classic, extended and RTR out; no echo of its own frames in.
    let f = CanFrame::new(0x123, false, false, &[1, 2, 3]);
    assert_eq!(classic.send(&f).unwrap(), TxAck::Done);
    assert_eq!(peer0.read(), (0x123, vec![1, 2, 3], 16));
    classic
        .send(&CanFrame::new(0x1234_5678, true, false, &[9]))
        .unwrap();
    assert_eq!(peer0.read(), (0x1234_5678 | CAN_EFF_FLAG, vec![9], 16));
    classic.send(&CanFrame::remote(0x55, false, 4)).unwrap();
    let (id, _, _) = peer0.read();
    assert_eq!(id, 0x55 | CAN_RTR_FLAG);
    assert!(events(&mut classic, 1).is_empty(), "own frames not echoed");
    // An FD frame on a classic interface is refused.
    classic
        .send(&CanFrame::new(1, false, true, &[0; 12]))
        .unwrap_err();
    // Frames in.
    peer0.write(0x321, &[4, 5], false);
    peer0.write(0x66 | CAN_RTR_FLAG, &[0, 0], false);
    assert_eq!(
        events(&mut classic, 2),
        [
            BackendEvent::Frame(CanFrame::new(0x321, false, false, &[4, 5])),
            BackendEvent::Frame(CanFrame::remote(0x66, false, 2)),
        ]
    );
    // Stopped: nothing delivered.
    classic.set_started(false);
    peer0.write(0x322, &[], false);
    assert!(events(&mut classic, 1).is_empty());

    // FD both ways on the FD interface.
    let peer1 = Peer::open("vcan1");
    fd.set_started(true);
    let payload: Vec<u8> = (0..64).collect();
    fd.send(&CanFrame::new(0x10, false, true, &payload))
        .unwrap();
    assert_eq!(peer1.read(), (0x10, payload.clone(), 72));
    peer1.write(0x11, &payload[..48], true);
    peer1.write(0x12, &[7], false);
    assert_eq!(
        events(&mut fd, 2),
        [
            BackendEvent::Frame(CanFrame::new(0x11, false, true, &payload[..48])),
            BackendEvent::Frame(CanFrame::new(0x12, false, false, &[7])),
        ]
    );

    // LATE_TX_ACK: the kernel's confirmation of our own frame.
    fd.set_late_tx_ack(true);
    assert_eq!(
        fd.send(&CanFrame::new(0x13, false, false, &[1])).unwrap(),
        TxAck::Later
    );
    assert_eq!(peer1.read().0, 0x13);
    assert_eq!(events(&mut fd, 1), [BackendEvent::Sent(true)]);

    // Bus-off, as a controller driver reports it.
    peer1.write(CAN_ERR_FLAG | CAN_ERR_BUSOFF, &[0; 8], false);
    assert_eq!(events(&mut fd, 1), [BackendEvent::BusOff]);
    // Other error classes are not subscribed.
    peer1.write(CAN_ERR_FLAG | 0x04, &[0; 8], false);
    assert!(events(&mut fd, 1).is_empty());
}

struct Rig {
    dev: CanDevice<SocketCan>,
    chains: ChainBuilder,
}

impl Rig {
    fn written(&self, chain: &DescChain) -> Vec<u8> {
        read_region(self.chains.memory(), chain.writable().get(0).unwrap())
    }

    fn request(&mut self, readable: &[u8]) -> DescChain {
        self.chains.push_readable(readable);
        self.chains.push_writable(1);
        self.chains.chain().unwrap()
    }

    fn control(&mut self, msg_type: u16) -> u8 {
        let chain = self.request(&msg_type.to_le_bytes());
        self.dev.handle_control(&chain, self.chains.memory());
        self.written(&chain)[0]
    }

    /// Lets the device take what its socket has, until `done` or 2 s.
    fn pump(&mut self, mut done: impl FnMut(&mut Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out");
            self.dev.handle_backend(self.chains.memory());
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The whole device over the real socket: LATE_TX_ACK completes on the
/// kernel's confirmation, frames fill RX buffers, and an injected bus-off
/// reaches the config status and fails the pending TX.
fn in_guest_device() {
    let peer = Peer::open("vcan1");
    let mut rig = Rig {
        dev: CanDevice::new(SocketCan::open("vcan1").unwrap(), 16),
        chains: ChainBuilder::new(),
    };
    assert_eq!(rig.dev.features(), ALL);
    rig.dev.set_acked_features(ALL);
    assert_eq!(
        rig.control(VIRTIO_CAN_SET_CTRL_MODE_START),
        VIRTIO_CAN_RESULT_OK
    );

    let chain = rig.request(&tx_bytes(VIRTIO_CAN_FLAGS_FD, 0x200, &[5; 20]));
    assert_eq!(rig.dev.handle_tx(chain.clone(), rig.chains.memory()), None);
    assert_eq!(peer.read(), (0x200, vec![5; 20], 72));
    rig.pump(|r| r.dev.tx_pending() == 0);
    assert_eq!(rig.dev.take_completions().tx, [(chain.head(), 1)]);
    assert_eq!(rig.written(&chain)[0], VIRTIO_CAN_RESULT_OK);

    rig.chains.push_writable(80);
    let buf = rig.chains.chain().unwrap();
    assert_eq!(
        rig.dev.handle_rx_buffer(buf.clone(), rig.chains.memory()),
        None
    );
    peer.write(0x201 | CAN_EFF_FLAG, &[1, 2, 3, 4], false);
    rig.pump(|r| r.dev.rx_buffers() == 0);
    assert_eq!(rig.dev.take_completions().rx, [(buf.head(), 20)]);
    let bytes = rig.written(&buf);
    let header = virtio_can_rx::from_slice(&bytes[..16]).copied().unwrap();
    assert_eq!(header.can_id.to_native(), 0x201);
    assert_eq!(header.flags.to_native(), VIRTIO_CAN_FLAGS_EXTENDED);
    assert_eq!(bytes[16..20], [1, 2, 3, 4]);

    // A frame held for its confirmation when bus-off comes: fail it. The
    // kernel confirms instantly on vcan, so hold it by not pumping.
    let pending = rig.request(&tx_bytes(0, 0x202, &[]));
    assert_eq!(
        rig.dev.handle_tx(pending.clone(), rig.chains.memory()),
        None
    );
    assert_eq!(peer.read().0, 0x202);
    peer.write(CAN_ERR_FLAG | CAN_ERR_BUSOFF, &[0; 8], false);
    rig.pump(|r| r.dev.controller().mode() == Mode::BusOff);
    let status = u16::from_le_bytes([rig.dev.config()[0], rig.dev.config()[1]]);
    assert_eq!(status, VIRTIO_CAN_S_CTRL_BUSOFF);
    let done = rig.dev.take_completions();
    assert!(done.tx.contains(&(pending.head(), 1)), "{done:?}");
    // Off the bus: refused and unsent, until STOP then START.
    let refused = rig.request(&tx_bytes(0, 0x203, &[]));
    assert_eq!(
        rig.dev.handle_tx(refused.clone(), rig.chains.memory()),
        Some(1)
    );
    assert_eq!(rig.written(&refused)[0], VIRTIO_CAN_RESULT_NOT_OK);
    peer.nothing();
    assert_eq!(
        rig.control(VIRTIO_CAN_SET_CTRL_MODE_START),
        VIRTIO_CAN_RESULT_NOT_OK
    );
    assert_eq!(
        rig.control(VIRTIO_CAN_SET_CTRL_MODE_STOP),
        VIRTIO_CAN_RESULT_OK
    );
    assert_eq!(rig.dev.config(), [0, 0]);
    assert_eq!(
        rig.control(VIRTIO_CAN_SET_CTRL_MODE_START),
        VIRTIO_CAN_RESULT_OK
    );
    let again = rig.request(&tx_bytes(0, 0x204, &[]));
    rig.dev.handle_tx(again, rig.chains.memory());
    assert_eq!(peer.read().0, 0x204);
}

const GUEST_BIN: &str = "/rig/vhost-device-can";

/// The daemon itself on two interfaces (`--device-list vcan0,vcan1`),
/// driven by the test frontend: FD offered only where the MTU allows it,
/// LATE_TX_ACK through the kernel, frames both ways, bus-off in the config.
fn in_guest_daemon() {
    use std::process::{Command, Stdio};
    use vhost_device_common::testing::{FrontendOptions, TestFrontend};

    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("can.sock");
    let mut child = Command::new(GUEST_BIN)
        .arg("--socket-path")
        .arg(&sock)
        .args(["--socket-count", "2", "--device-list", "vcan0,vcan1"])
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let connect = |i: usize| {
        let opts = FrontendOptions {
            num_queues: Some(3),
            queue_size: 64,
            ..Default::default()
        };
        let path = dir.path().join(format!("can.sock{i}"));
        TestFrontend::connect_retry(&path, opts, Duration::from_secs(5)).unwrap()
    };
    let (mut fe0, mut fe1) = (connect(0), connect(1));
    assert_eq!(fe0.acked_features() & ALL, ALL & !VIRTIO_CAN_F_CAN_FD);
    assert_eq!(fe1.acked_features() & ALL, ALL);
    let (peer0, peer1) = (Peer::open("vcan0"), Peer::open("vcan1"));
    for fe in [&mut fe0, &mut fe1] {
        assert_eq!(
            control(fe, VIRTIO_CAN_SET_CTRL_MODE_START),
            VIRTIO_CAN_RESULT_OK
        );
    }
    let rx = fe1.queue(RX_QUEUE).unwrap();
    rx.add(&[], &[80]).unwrap();
    rx.add(&[], &[80]).unwrap();
    rx.kick().unwrap();

    assert_eq!(send(&mut fe0, 0, 0x100, &[1]), VIRTIO_CAN_RESULT_OK);
    assert_eq!(peer0.read(), (0x100, vec![1], 16));
    let fd: Vec<u8> = (0..32).collect();
    // Completed only once the kernel confirmed it (LATE_TX_ACK).
    assert_eq!(
        send(&mut fe1, VIRTIO_CAN_FLAGS_FD, 0x101, &fd),
        VIRTIO_CAN_RESULT_OK
    );
    assert_eq!(peer1.read(), (0x101, fd, 72));
    peer1.write(0x102, &[2, 3], false);
    let used = fe1
        .queue(RX_QUEUE)
        .unwrap()
        .wait_used(Duration::from_secs(5))
        .unwrap();
    assert_eq!(used.len, 18);
    let header = virtio_can_rx::from_slice(&used.data[..16])
        .copied()
        .unwrap();
    assert_eq!(header.can_id.to_native(), 0x102);
    assert_eq!(used.data[16..18], [2, 3]);
    // Its own frames never come back.
    std::thread::sleep(Duration::from_millis(300));
    assert!(fe1.queue(RX_QUEUE).unwrap().try_used().unwrap().is_none());

    peer1.write(CAN_ERR_FLAG | CAN_ERR_BUSOFF, &[0; 8], false);
    let deadline = Instant::now() + Duration::from_secs(5);
    while fe1.get_config(0, 2).unwrap() != [1, 0] {
        assert!(Instant::now() < deadline, "BUSOFF never showed");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(send(&mut fe1, 0, 0x103, &[]), VIRTIO_CAN_RESULT_NOT_OK);
    assert_eq!(
        send(&mut fe0, 0, 0x104, &[]),
        VIRTIO_CAN_RESULT_OK,
        "vcan0 unaffected"
    );
    assert_eq!(peer0.read().0, 0x104);
    fe0.disconnect().unwrap();
    fe1.disconnect().unwrap();
    // SAFETY: kill() on our own child's pid.
    unsafe { libc::kill(libc::pid_t::try_from(child.id()).unwrap(), libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

/// Runs `ip ARGS…` in the guest.
fn ip(args: &[&str]) {
    let status = std::process::Command::new("ip")
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "ip {args:?}");
}

/// The daemon's CPU ticks over half a second: a spinning worker shows ~50.
fn ticks_over_half_a_second(daemon: &vhost_device_common::testing::DaemonProcess) -> u64 {
    let before = daemon.cpu_ticks().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    daemon.cpu_ticks().unwrap() - before
}

/// The host side goes away under a running guest: the interface is set
/// down and up again, then deleted and created again. Each time the guest
/// gets VIRTIO_CAN_RESULT_NOT_OK, the daemon neither dies nor spins and
/// still answers the control path; it works again once the interface is
/// back.
fn in_guest_interface_goes_away() {
    use vhost_device_common::testing::{DaemonProcess, FrontendOptions, TestFrontend};

    ip(&["link", "add", "dev", "vcan2", "type", "vcan"]);
    ip(&["link", "set", "vcan2", "up"]);
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("can.sock");
    let started = Instant::now();
    let daemon = DaemonProcess::start(GUEST_BIN, &sock, 1, &["--device-list", "vcan2"]).unwrap();
    let opts = FrontendOptions {
        num_queues: Some(3),
        queue_size: 64,
        ..Default::default()
    };
    let mut fe = TestFrontend::connect_retry(&sock, opts, Duration::from_secs(5)).unwrap();
    assert_eq!(
        control(&mut fe, VIRTIO_CAN_SET_CTRL_MODE_START),
        VIRTIO_CAN_RESULT_OK
    );
    let peer = Peer::open("vcan2");
    assert_eq!(send(&mut fe, 0, 0x200, &[1]), VIRTIO_CAN_RESULT_OK);
    assert_eq!(peer.read().0, 0x200);
    // The peer's socket would report the interface going down too.
    drop(peer);

    ip(&["link", "set", "vcan2", "down"]);
    assert_eq!(
        send(&mut fe, 0, 0x201, &[]),
        VIRTIO_CAN_RESULT_NOT_OK,
        "interface down"
    );
    let ticks = ticks_over_half_a_second(&daemon);
    assert!(
        ticks <= 5,
        "the daemon spins with its interface down: {ticks} ticks in 0.5 s"
    );
    assert_eq!(fe.get_config(0, 2).unwrap().len(), 2);
    ip(&["link", "set", "vcan2", "up"]);
    let peer = Peer::open("vcan2");
    assert_eq!(
        send(&mut fe, 0, 0x202, &[2]),
        VIRTIO_CAN_RESULT_OK,
        "interface up again"
    );
    assert_eq!(peer.read().0, 0x202);
    drop(peer);

    ip(&["link", "del", "dev", "vcan2"]);
    assert_eq!(
        send(&mut fe, 0, 0x203, &[]),
        VIRTIO_CAN_RESULT_NOT_OK,
        "interface deleted"
    );
    let ticks = ticks_over_half_a_second(&daemon);
    assert!(
        ticks <= 5,
        "the daemon spins with its interface gone: {ticks} ticks in 0.5 s"
    );
    assert_eq!(fe.get_config(0, 2).unwrap().len(), 2);
    ip(&["link", "add", "dev", "vcan2", "type", "vcan"]);
    ip(&["link", "set", "vcan2", "up"]);
    let peer = Peer::open("vcan2");
    let result = send(&mut fe, 0, 0x204, &[4]);
    eprintln!("after vcan2 was created again: TX result {result}");
    assert_eq!(result, VIRTIO_CAN_RESULT_OK, "interface created again");
    assert_eq!(peer.read().0, 0x204);
    fe.disconnect().unwrap();
    assert!(daemon.stop().unwrap().success());
    eprintln!(
        "interface down, up, deleted, created: {:?}",
        started.elapsed()
    );
}

#[test]
#[ignore = "guest rig: run via rust-vmm-ci/guest/run-tests.sh or cargo test -- --ignored after provisioning"]
fn host_kernel_socketcan_backend() {
    if vhost_device_rig::in_guest() {
        in_guest_backend();
        in_guest_device();
        in_guest_daemon();
        in_guest_interface_goes_away();
        return;
    }
    vhost_device_rig::Scenario::host_test(
        "host_kernel_socketcan_backend",
        std::env::current_exe().unwrap(),
        "host_kernel_socketcan_backend",
    )
    .modules(&["vcan", "can-raw"])
    .guest_file(env!("CARGO_BIN_EXE_vhost-device-can"), GUEST_BIN)
    .guest_script(SETUP)
    .timeout(Duration::from_secs(120))
    .run()
    .expect("scenario could not start")
    .assert_success();
}
